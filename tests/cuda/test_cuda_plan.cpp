// The host side of kite::cuda, checked on the CPU (no GPU, no CUDA headers): the flash
// attention grid and its causal tile counts against a brute-force count over the mask, the
// split-K ranges of paged decode attention (they tile each sequence exactly, start on block
// boundaries), the split count heuristic, and block-table packing from a real kite::kv::paged.

#include <algorithm>
#include <cstdint>
#include <vector>

#include "kite/cuda/block_table.hpp"
#include "kite/cuda/plan.hpp"
#include "kite/kv/paged.hpp"
#include "kite_test.hpp"

namespace plan = kite::cuda::plan;

TEST_CASE("flash grid covers the longest sequence and rejects empty shapes", "[cuda][plan]") {
    const auto g = plan::make_flash_grid(3, 16, 4097, 128);
    CHECK(g.m_tiles == 33);
    CHECK(g.heads == 16);
    CHECK(g.batch == 3);
    CHECK(g.blocks() == 33 * 16 * 3);
    CHECK(plan::make_flash_grid(1, 1, 1, 128).m_tiles == 1);
    CHECK(plan::make_flash_grid(1, 1, 128, 128).m_tiles == 1);
    CHECK(plan::make_flash_grid(1, 1, 129, 128).m_tiles == 2);
    CHECK_THROWS_AS(plan::make_flash_grid(0, 1, 1, 128), kite::invalid_argument);
    CHECK_THROWS_AS(plan::make_flash_grid(1, 1, 0, 128), kite::invalid_argument);
    CHECK_THROWS_AS(plan::make_flash_grid(70000, 1, 1, 128), kite::invalid_argument);
}

TEST_CASE("cu_seqlens are checked and give the longest sequence", "[cuda][plan]") {
    const std::vector<std::int32_t> ok{0, 5, 5, 105, 106};
    CHECK(plan::check_cu_seqlens(ok, "cu_seqlens_q") == 100);
    const std::vector<std::int32_t> bad_start{1, 5};
    KITE_REQUIRE_THROWS_CONTAINING(plan::check_cu_seqlens(bad_start, "cu_seqlens_q"), kite::invalid_argument,
                                   "cu_seqlens_q[0] = 1");
    const std::vector<std::int32_t> decreasing{0, 5, 4};
    KITE_REQUIRE_THROWS_CONTAINING(plan::check_cu_seqlens(decreasing, "cu_seqlens_k"), kite::invalid_argument,
                                   "non-decreasing");
    const std::vector<std::int32_t> one{0};
    CHECK_THROWS_AS(plan::check_cu_seqlens(one, "cu_seqlens_k"), kite::shape_error);
}

TEST_CASE("causal key tiles match a brute-force count over the bottom-right mask", "[cuda][plan]") {
    // For every tile shape and (q_len, k_len), the kernel must visit exactly the key tiles that
    // hold at least one key some query of the tile may see.
    for (const std::int64_t bm : {16, 64, 128})
        for (const std::int64_t bn : {32, 64, 128})
            for (const std::int64_t q_len : {1, 17, 63, 64, 65, 128, 200, 300})
                for (const std::int64_t k_len : {1, 17, 64, 100, 128, 129, 300, 513}) {
                    for (std::int64_t m = 0; m < plan::ceil_div(q_len, bm); ++m) {
                        std::int64_t want = 0;  // 1 + the last tile holding a visible key
                        for (std::int64_t i = m * bm; i < std::min(q_len, (m + 1) * bm); ++i)
                            for (std::int64_t j = 0; j < k_len; ++j)
                                if (j <= k_len - q_len + i) want = std::max(want, j / bn + 1);
                        INFO("bm " << bm << " bn " << bn << " q " << q_len << " k " << k_len << " tile " << m);
                        REQUIRE(plan::causal_key_tiles(m, bm, bn, q_len, k_len) == want);
                    }
                }
}

TEST_CASE("split ranges tile each sequence exactly on block boundaries", "[cuda][plan]") {
    for (const std::int64_t bt : {1, 8, 16, 32})
        for (const int splits : {1, 2, 3, 7, 64})
            for (const std::int64_t len : {0, 1, 15, 16, 17, 100, 1000, 4096, 5001}) {
                std::int64_t next = 0;
                for (int s = 0; s < splits; ++s) {
                    const auto r = plan::split_range(len, splits, bt, s);
                    INFO("block " << bt << " splits " << splits << " len " << len << " split " << s);
                    REQUIRE(r.begin == next);        // contiguous, no token twice
                    REQUIRE(r.end >= r.begin);
                    REQUIRE(r.end <= len);
                    if (r.begin < len) REQUIRE(r.begin % bt == 0);  // starts on a block
                    next = r.end;
                }
                REQUIRE(next == len);  // every token read
            }
}

TEST_CASE("decode split count fills the device and respects its bounds", "[cuda][plan]") {
    // 132 SMs (H200): batch 64 x 8 kv heads = 512 blocks already fill it twice: one split.
    CHECK(plan::decode_splits(64 * 8, 4096, 132) == 1);
    // batch 1 x 8 kv heads over 32k: ceil(264 / 8) = 33 splits, each >= 256 tokens.
    CHECK(plan::decode_splits(8, 32768, 132) == 33);
    // short context: no split shorter than min_tokens.
    CHECK(plan::decode_splits(8, 300, 132) == 1);
    CHECK(plan::decode_splits(8, 1024, 132) == 4);
    CHECK(plan::decode_splits(1, 1 << 20, 132) == 64);  // capped at max_splits
    CHECK(plan::decode_splits(8, 0, 132) == 1);
    CHECK_THROWS_AS(plan::decode_splits(0, 10, 132), kite::invalid_argument);
    CHECK_THROWS_AS(plan::decode_splits(8, 10, 0), kite::invalid_argument);
}

TEST_CASE("gemv grid covers every row", "[cuda][plan]") {
    const auto g = plan::make_gemv_grid(11008, 4);
    CHECK(g.blocks == 2752);
    CHECK(g.threads == 128);
    CHECK(plan::make_gemv_grid(7, 4).blocks == 2);
    CHECK_THROWS_AS(plan::make_gemv_grid(0, 4), kite::invalid_argument);
    CHECK_THROWS_AS(plan::make_gemv_grid(8, 33), kite::invalid_argument);
}

TEST_CASE("block tables pack a paged cache's tables, forks and all", "[cuda][plan]") {
    kite::kv::paged<16, float> cache({.layers = 1, .kv_heads = 2, .head_dim = 8}, 64);
    const auto a = *cache.add_sequence();
    const auto b = *cache.add_sequence();
    const auto c = *cache.add_sequence();
    REQUIRE(cache.append(a, 40) == kite::kv::status::ok);  // 3 blocks
    REQUIRE(cache.append(b, 1) == kite::kv::status::ok);   // 1 block
    const auto f = *cache.fork(a, 32);                       // shares a's first 2 blocks
    REQUIRE(cache.append(f, 5) == kite::kv::status::ok);
    const std::vector<kite::kv::seq_id> seqs{a, b, c, f};
    const auto p = kite::cuda::pack_block_tables(cache, seqs);
    REQUIRE(p.batch() == 4);
    REQUIRE(p.max_blocks == 3);
    REQUIRE(p.max_length == 40);
    CHECK(p.lengths == std::vector<std::int32_t>{40, 1, 0, 37});
    for (std::size_t i = 0; i < seqs.size(); ++i) {
        const auto t = cache.block_table(seqs[i]);
        for (std::int32_t j = 0; j < p.max_blocks; ++j) {
            const std::int32_t want = j < static_cast<std::int32_t>(t.size()) ? static_cast<std::int32_t>(t[j]) : -1;
            CHECK(p.table[i * p.max_blocks + j] == want);
        }
    }
    // the fork shares a's first two blocks and owns its third
    CHECK(p.table[3 * 3 + 0] == p.table[0]);
    CHECK(p.table[3 * 3 + 1] == p.table[1]);
    CHECK(p.table[3 * 3 + 2] != p.table[2]);
    CHECK_THROWS_AS(kite::cuda::pack_block_tables(cache, std::span<const kite::kv::seq_id>{}), kite::invalid_argument);
}
