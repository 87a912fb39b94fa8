#pragma once
/// @file kite/cuda/plan.hpp
/// Launch planning for kite's CUDA kernels, in plain C++ (no CUDA headers): how a flash
/// attention grid covers a variable-length batch, how many splits paged decode attention uses
/// over long contexts and which tokens each split reads, how a GEMV grid covers the rows. The
/// kernels call these on the host; the CPU tests check them without a GPU.

#include <algorithm>
#include <cstdint>
#include <span>

#include "kite/core/config.hpp"
#include "kite/core/error.hpp"

namespace kite::cuda::plan {

/// Ceiling division for non-negative integers.
constexpr std::int64_t ceil_div(std::int64_t a, std::int64_t b) noexcept { return (a + b - 1) / b; }

// ---- flash attention ------------------------------------------------------------------------

/// A flash attention forward grid: one block per (query tile, head, sequence), tiles of
/// block_m queries. Tiles past a shorter sequence's end exit at once.
struct flash_grid {
    std::int64_t m_tiles = 0;  ///< x: ceil(max_seqlen_q / block_m)
    std::int64_t heads = 0;    ///< y
    std::int64_t batch = 0;    ///< z
    std::int64_t blocks() const noexcept { return m_tiles * heads * batch; }
};

inline flash_grid make_flash_grid(std::int64_t batch, std::int64_t heads, std::int64_t max_seqlen_q, std::int64_t block_m) {
    KITE_REQUIRE(batch >= 1 && heads >= 1 && max_seqlen_q >= 1 && block_m >= 1, invalid_argument,
                 "cuda::plan::make_flash_grid: batch = ", batch, ", heads = ", heads, ", max_seqlen_q = ", max_seqlen_q,
                 ", block_m = ", block_m, "; expected all >= 1");
    KITE_REQUIRE(batch <= 65535 && heads <= 65535, invalid_argument, "cuda::plan::make_flash_grid: batch = ", batch,
                 ", heads = ", heads, "; expected at most 65535 each (grid y and z)");
    return {ceil_div(max_seqlen_q, block_m), heads, batch};
}

/// Checks cumulative sequence lengths [batch + 1] (0, then non-decreasing) and returns the
/// longest sequence. `what` names them in the error ("cu_seqlens_q").
inline std::int64_t check_cu_seqlens(std::span<const std::int32_t> cu, const char* what) {
    KITE_REQUIRE(cu.size() >= 2, shape_error, "cuda: ", what, " has ", cu.size(),
                 " entries; expected batch + 1 >= 2 offsets");
    KITE_REQUIRE(cu[0] == 0, invalid_argument, "cuda: ", what, "[0] = ", cu[0], "; expected 0");
    std::int64_t longest = 0;
    for (std::size_t i = 1; i < cu.size(); ++i) {
        KITE_REQUIRE(cu[i] >= cu[i - 1], invalid_argument, "cuda: ", what, "[", i, "] = ", cu[i], " < ", what, "[",
                     i - 1, "] = ", cu[i - 1], "; expected non-decreasing offsets");
        longest = std::max<std::int64_t>(longest, cu[i] - cu[i - 1]);
    }
    return longest;
}

/// For causal attention with q_len queries over k_len keys (bottom-right aligned: query i sees
/// keys j <= k_len - q_len + i), the number of key tiles of block_n keys that query tile m_tile
/// (block_m queries) must visit; 0 when every query of the tile sees no key.
constexpr std::int64_t causal_key_tiles(std::int64_t m_tile, std::int64_t block_m, std::int64_t block_n,
                                        std::int64_t q_len, std::int64_t k_len) noexcept {
    const std::int64_t last_q = std::min(q_len, (m_tile + 1) * block_m) - 1;
    const std::int64_t last_key = k_len - q_len + last_q;  // the last key the tile's last query sees
    if (last_key < 0) return 0;
    return std::min(ceil_div(k_len, block_n), last_key / block_n + 1);
}

// ---- paged decode attention -----------------------------------------------------------------

/// How many splits of the context decode attention uses: enough (batch x kv_heads x splits)
/// blocks to fill the device about twice, each split at least min_tokens long, at most
/// max_splits. One split when the batch alone fills the device.
inline int decode_splits(std::int64_t batch_kv_heads, std::int64_t max_seq_len, int sm_count,
                         std::int64_t min_tokens = 256, int max_splits = 64) {
    KITE_REQUIRE(batch_kv_heads >= 1 && max_seq_len >= 0 && sm_count >= 1 && min_tokens >= 1 && max_splits >= 1,
                 invalid_argument, "cuda::plan::decode_splits: batch x kv_heads = ", batch_kv_heads,
                 ", max_seq_len = ", max_seq_len, ", sm_count = ", sm_count, "; expected positive values");
    const std::int64_t target = 2LL * sm_count;
    if (batch_kv_heads >= target) return 1;
    std::int64_t s = ceil_div(target, batch_kv_heads);
    s = std::min<std::int64_t>(s, std::max<std::int64_t>(1, max_seq_len / min_tokens));
    return static_cast<int>(std::clamp<std::int64_t>(s, 1, max_splits));
}

/// The tokens [begin, end) of a sequence of `len` tokens that split `s` of `splits` reads. Splits
/// start on block boundaries (block_tokens) so that no block is read twice; trailing splits of a
/// short sequence are empty (begin == end).
struct token_range {
    std::int64_t begin = 0, end = 0;
    constexpr std::int64_t size() const noexcept { return end - begin; }
};
constexpr token_range split_range(std::int64_t len, int splits, std::int64_t block_tokens, int s) noexcept {
    const std::int64_t blocks = ceil_div(len, block_tokens);
    const std::int64_t per = ceil_div(blocks, splits);  // blocks per split
    const std::int64_t b = std::min(len, s * per * block_tokens);
    const std::int64_t e = std::min(len, (s + 1) * per * block_tokens);
    return {b, e};
}

// ---- GEMV -----------------------------------------------------------------------------------

/// A GEMV grid: `rows_per_block` output rows per block (one warp each), enough blocks for all rows.
struct gemv_grid {
    std::int64_t blocks = 0;
    int threads = 0;
};
inline gemv_grid make_gemv_grid(std::int64_t rows, int rows_per_block) {
    KITE_REQUIRE(rows >= 1 && rows_per_block >= 1 && rows_per_block <= 32, invalid_argument,
                 "cuda::plan::make_gemv_grid: rows = ", rows, ", rows_per_block = ", rows_per_block,
                 "; expected rows >= 1 and 1 <= rows_per_block <= 32");
    return {ceil_div(rows, rows_per_block), 32 * rows_per_block};
}

}  // namespace kite::cuda::plan
