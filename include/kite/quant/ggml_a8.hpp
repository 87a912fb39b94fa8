#pragma once
/// @file kite/quant/ggml_a8.hpp
/// ggml_a8_weights: Q4_0, Q4_1 and Q8_0 weights repacked losslessly at load for integer dot
/// products with activations rounded to int8 — what llama.cpp does for these formats — through
/// AVX-512 VNNI (vpdpbusd: 64 multiply-adds per instruction). An opt-in speed / precision trade:
/// kite::quant::ggml_weights (float activations, the default) is the one that matches
/// transformers to 1e-4; on SmolLM2-135M this format's logits are within about 2 of transformers'
/// and its argmax agrees at 97% of positions (tests/model/test_gguf_smollm2.cpp measures both).
///
///   auto w = kite::quant::ggml_a8_weights(float_path_weights);     // repack (same values)
///   kite::quant::gemv(w, x, y);                                      // x rounded to int8 per 32
///
/// Activations: each block of 32 values of x is rounded to int8 with its own scale
/// dx = max|x| / 127 (round half to even). Per (row, token) and block b the products of the
/// unsigned weight codes u with the int8 activations are summed exactly in int32 (vpdpbusd),
/// the codes' offset is taken off exactly (Q4_0: u = q + 8, minus 8 sum_i qx_i; Q8_0:
/// u = q + 128, minus 128 sum_i qx_i), and then y = sum_b d_b (dx_b isum_b) (+ Q4_1's
/// m_b dx_b sum_i qx_i), accumulated in float in the order given below. F32, F16 and BF16 rows
/// keep float activations (ggml_weights' kernel).
///
/// Repacked layout: the rows of a segment in blocks of 8 (the last one padded with zero rows),
/// each block one contiguous stretch of memory holding everything its rows need, so that a
/// product reads the weights as a single sequential stream (Zen 4 streams one sequence at the
/// DRAM limit given a prefetch far ahead into L2, but follows several interleaved streams —
/// codes, scales, offsets — poorly). A block holds, in order:
/// - codes [8 rows][F groups]: each row's first 16 F blocks (F = blocks / 16 whole groups) in
///   groups of 16 blocks. A group's codes are 8 slices of 64 bytes, slice s holding elements
///   4s .. 4s+3 of each of the 16 blocks (byte 4 b + e), so one vpdpbusd per slice adds 4
///   products into each block's lane and a group's 8 slices give every block's whole sum with no
///   horizontal reduction. Q4 codes are nibbles: 4 chunks of 64 bytes per group, chunk j holding
///   slice 2j in its low and slice 2j+1 in its high nibbles; Q8_0 codes are bytes q + 128;
/// - the fp16 scales d [8 rows][16 F] (and Q4_1's offsets m [8 rows][16 F]), as the file stored
///   them;
/// - the tail groups [8 / R] and their scales (and offsets) [8 / R][16]: the t = blocks % 16
///   blocks left at the end of each row (SmolLM2's 576 columns: 16 + 2) are not padded to a
///   group of their own, which would cost as much as a whole group for a few blocks: the tails
///   of R consecutive rows share one tail group, R the largest power of two <= min(8, 16 / t)
///   (lane i t + j: block j of the group's row i; lanes past R t are zero);
/// - zero bytes up to a multiple of 64.
/// Activations are laid out to match: whole groups as the weights, and one tail group holding
/// the t last blocks repeated R times.
///
/// Arithmetic, per (row, token), the same for every kernel and batch: lane b of a 16-lane float
/// accumulator takes, for each whole group, f = (integer sum of block b) dx_b, then acc = d f +
/// acc (and Q4_1: acc = m sx_b + acc), fused multiply-adds; the row's sum is the tree
/// ((v0 + v1) + (v2 + v3)) + ((v4 + v5) + (v6 + v7)) of v_i = acc_i + acc_(i+8); the tail lanes
/// are each d f (+ m sx) alone and are summed in order (block 16 F first); y = row sum + tail sum.
/// The integer sums are exact (the codes' offset of Q4_0 / Q8_0 is taken off exactly).
/// dequantize() and decode_row() give exactly ggml's values.
///
/// Arithmetic is one sequence per (row, token), so results do not depend on the batch or the
/// thread count. Kernels need AVX-512 F/BW/VNNI and F16C; elsewhere a portable twin with the
/// same integer arithmetic runs. Batches of a8_amx_min_tokens (32) tokens or more run on AMX
/// tiles where kite::cpu::amx_int8_active() (Intel Sapphire Rapids and later, the OS granting
/// the tile state): each call transposes every 16 rows' codes once into tile operands, one
/// tdpbusd per block gives 16 rows x 16 tokens of the same exact integer sums, and the float
/// epilogue runs the operations above in the same order — the same bits as the VNNI kernels
/// (tests/quant/test_ggml.cpp compares them). Below 32 tokens the VNNI kernels are faster (the
/// transposes and the tile unit's latency are paid whatever the batch; bench/README).
/// Thread safety: immutable after construction.

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <memory>
#include <span>
#include <vector>

#include "kite/core/amx.hpp"
#include "kite/core/buffer.hpp"
#include "kite/core/config.hpp"
#include "kite/core/cpu.hpp"
#include "kite/core/diagnostics.hpp"
#include "kite/core/error.hpp"
#include "kite/core/matrix.hpp"
#include "kite/core/parallel.hpp"
#include "kite/quant/detail/scratch.hpp"
#include "kite/quant/ggml.hpp"

#if defined(__AVX512F__) && defined(__AVX512BW__) && defined(__AVX512VL__) && defined(__AVX512VNNI__) && defined(__F16C__)
#include <immintrin.h>
#define KITE_GGML_A8_VNNI 1
#else
#define KITE_GGML_A8_VNNI 0
#endif

KITE_GCC12_AVX512_UNINIT_BEGIN  // see kite/core/diagnostics.hpp

namespace kite::quant {

/// Q4_0 / Q4_1 / Q8_0 weights repacked for int8-activation dot products (see the file comment);
/// F32 / F16 / BF16 segments are kept as they are.
class ggml_a8_weights {
public:
    static constexpr index_t block_rows = 8;  // rows per contiguous block

    struct segment {
        ggml::type type = ggml::type::f32;
        index_t rows = 0;
        index_t blocks = 0;        // blocks of 32 per row
        index_t full = 0;          // whole groups of 16 blocks per row
        index_t tail = 0;          // blocks % 16: blocks of each row in the tail groups
        index_t tail_rows = 0;     // R: rows sharing a tail group (0 without a tail)
        std::size_t code_bytes = 0;   // per row: full * group_bytes()
        std::size_t d_off = 0, m_off = 0, tail_off = 0, tail_d_off = 0, tail_m_off = 0;  // within a block
        std::size_t block_bytes = 0;  // a multiple of 64
        aligned_buffer<std::uint8_t> data;  // [ceil(rows / 8)][block_bytes]
        ggml_weights plain;                 // float-type rows, or empty
        std::size_t group_bytes() const noexcept { return type == ggml::type::q8_0 ? 512 : 256; }
        index_t tail_groups() const noexcept { return tail ? block_rows / tail_rows : 0; }  // per block
        const std::uint8_t* block(index_t r) const noexcept { return data.data() + (r / block_rows) * block_bytes; }
    };

    /// R for t tail blocks per row: the largest power of two <= min(8, 16 / t).
    static constexpr index_t tail_rows_for(index_t t) noexcept {
        if (t <= 0) return 0;
        index_t r = 1;
        while (2 * r <= block_rows && 2 * r * t <= 16) r *= 2;
        return r;
    }

    ggml_a8_weights() = default;
    /// Repacks `w` (values unchanged).
    explicit ggml_a8_weights(const ggml_weights& w) : rows_(w.rows()), cols_(w.cols()) {
        for (const auto& s : w.segments()) {
            auto seg = std::make_shared<segment>();
            seg->type = s.type;
            seg->rows = s.rows;
            if (s.type == ggml::type::q4_0 || s.type == ggml::type::q4_1 || s.type == ggml::type::q8_0) {
                repack(s, *seg);
            } else {
                seg->plain = slice(w, s);
            }
            segs_.push_back(std::move(seg));
        }
    }
    ggml_a8_weights(ggml_a8_weights&&) noexcept = default;
    ggml_a8_weights& operator=(ggml_a8_weights&&) noexcept = default;
    ggml_a8_weights(const ggml_a8_weights&) = default;
    ggml_a8_weights& operator=(const ggml_a8_weights&) = default;
    /// A copy sharing the (immutable) storage.
    ggml_a8_weights clone() const { return *this; }

    index_t rows() const noexcept { return rows_; }
    index_t cols() const noexcept { return cols_; }
    std::size_t bytes() const noexcept {
        std::size_t b = 0;
        for (const auto& s : segs_) b += s->data.size_bytes() + s->plain.bytes();
        return b;
    }
    const std::vector<std::shared_ptr<const segment>>& segments() const noexcept { return segs_; }

    /// Starts reading the first bytes of the weights into L2 (on CPUs without VNNI it does
    /// nothing), for a caller that knows this matrix comes next — a decoder layer before its
    /// norm or attention: the kernel's own prefetch reaches ahead only once a product has begun,
    /// so without it each product's first blocks arrive at DRAM latency.
    void prefetch() const noexcept;

    /// out [cols] = row r, exactly ggml's values.
    void decode_row(index_t r, float* out) const {
        for (const auto& s : segs_) {
            if (r >= s->rows) {
                r -= s->rows;
                continue;
            }
            if (!s->plain.segments().empty() || s->rows == 0) return s->plain.decode_row(r, out);
            for (index_t b = 0; b < s->blocks; ++b) {
                const float db = kite::detail::fp16_bits_to_float(scale(*s, r, b, false));
                const float mb = s->type == ggml::type::q4_1 ? kite::detail::fp16_bits_to_float(scale(*s, r, b, true)) : 0.0f;
                for (index_t i = 0; i < 32; ++i) {
                    const int q = code(*s, r, b, i);
                    float v;
                    if (s->type == ggml::type::q8_0) {
                        v = static_cast<float>(q - 128) * db;
                    } else if (s->type == ggml::type::q4_0) {
                        v = static_cast<float>(q - 8) * db;
                    } else {
                        v = static_cast<float>(q) * db + mb;
                    }
                    out[32 * b + i] = v;
                }
            }
            return;
        }
        kite::detail::raise<invalid_argument>("ggml_a8_weights::decode_row: row out of range");
    }
    float value(index_t r, index_t c) const {
        std::vector<float> row(cols_);
        decode_row(r, row.data());
        return row[c];
    }

    /// The unsigned code of element i of block b of row r of segment s (see the layout).
    static int code(const segment& s, index_t r, index_t b, index_t i) noexcept {
        const std::uint8_t byte = s.data.data()[code_offset(s, r, b, i)];
        if (s.type == ggml::type::q8_0) return byte;
        return (i / 4) % 2 ? byte >> 4 : byte & 15;
    }
    /// The offset in s.data of the byte holding element i of block b of row r (Q4: the byte whose
    /// nibble it is).
    static std::size_t code_offset(const segment& s, index_t r, index_t b, index_t i) noexcept {
        const index_t sl = i / 4, e = i % 4, in = r % block_rows;
        const std::size_t in_group = 64 * (s.type == ggml::type::q8_0 ? sl : sl / 2) + static_cast<std::size_t>(e);
        const std::size_t blk = (r / block_rows) * s.block_bytes;
        if (b < 16 * s.full)
            return blk + in * s.code_bytes + (b / 16) * s.group_bytes() + in_group + 4 * (b % 16);
        return blk + s.tail_off + (in / s.tail_rows) * s.group_bytes() + in_group + 4 * tail_lane(s, r, b);
    }
    /// The offset in s.data of the fp16 scale d (m: Q4_1's offset m) of block b of row r.
    static std::size_t scale_offset(const segment& s, index_t r, index_t b, bool m) noexcept {
        const index_t in = r % block_rows;
        const std::size_t blk = (r / block_rows) * s.block_bytes;
        if (b < 16 * s.full) return blk + (m ? s.m_off : s.d_off) + 2 * (in * 16 * s.full + b);
        return blk + (m ? s.tail_m_off : s.tail_d_off) + 2 * ((in / s.tail_rows) * 16 + tail_lane(s, r, b));
    }
    /// The fp16 bits of that scale.
    static std::uint16_t scale(const segment& s, index_t r, index_t b, bool m) noexcept {
        std::uint16_t h;
        std::memcpy(&h, s.data.data() + scale_offset(s, r, b, m), 2);
        return h;
    }
    /// The lane of tail block b (>= 16 full) of row r in its tail group.
    static index_t tail_lane(const segment& s, index_t r, index_t b) noexcept {
        return (r % block_rows % s.tail_rows) * s.tail + (b - 16 * s.full);
    }

private:
    static ggml_weights slice(const ggml_weights& w, const ggml_weights::segment& s) {
        return ggml_weights(s.type, std::span<const std::byte>(s.data, s.rows * s.row_bytes), s.rows, w.cols(),
                            std::shared_ptr<const void>(std::make_shared<ggml_weights>(w)));
    }

    void repack(const ggml_weights::segment& s, segment& o) {
        const bool q8 = s.type == ggml::type::q8_0, q41 = s.type == ggml::type::q4_1;
        o.blocks = cols_ / 32;
        o.full = o.blocks / 16;
        o.tail = o.blocks % 16;
        o.tail_rows = tail_rows_for(o.tail);
        o.code_bytes = o.full * o.group_bytes();
        const std::size_t scales = block_rows * 32 * o.full;  // bytes of one block's d (or m)
        o.d_off = block_rows * o.code_bytes;
        o.m_off = o.d_off + scales;
        o.tail_off = o.m_off + (q41 ? scales : 0);
        const std::size_t tg = o.tail_groups();
        o.tail_d_off = o.tail_off + tg * o.group_bytes();
        o.tail_m_off = o.tail_d_off + tg * 32;
        o.block_bytes = (o.tail_m_off + (q41 ? tg * 32 : 0) + 63) / 64 * 64;
        // Zero-filled: padded rows, the unused lanes of tail groups multiply by code 0 and scale 0.
        o.data = aligned_buffer<std::uint8_t>((s.rows + block_rows - 1) / block_rows * o.block_bytes);
        std::uint8_t* out = o.data.data();
        const std::size_t bb = ggml::info(s.type).block_bytes;
        const std::size_t qoff = q41 ? 4 : 2;
        for (index_t r = 0; r < s.rows; ++r) {
            const auto* src = reinterpret_cast<const std::uint8_t*>(s.data) + r * s.row_bytes;
            for (index_t b = 0; b < o.blocks; ++b) {
                const std::uint8_t* blk = src + b * bb;
                std::memcpy(out + scale_offset(o, r, b, false), blk, 2);
                if (q41) std::memcpy(out + scale_offset(o, r, b, true), blk + 2, 2);
                for (index_t i = 0; i < 32; ++i) {
                    std::uint8_t& c = out[code_offset(o, r, b, i)];
                    if (q8) {
                        c = static_cast<std::uint8_t>(static_cast<std::int8_t>(blk[2 + i]) + 128);
                    } else {
                        const std::uint8_t q = i < 16 ? blk[qoff + i] & 15 : blk[qoff + i - 16] >> 4;
                        c |= static_cast<std::uint8_t>(q << (4 * ((i / 4) % 2)));
                    }
                }
            }
        }
    }

    index_t rows_ = 0, cols_ = 0;
    std::vector<std::shared_ptr<const segment>> segs_;
};

namespace detail {

/// One token's activations rounded to int8 per block of 32, in the weights' layout: whole
/// groups q [full][8 slices][16 blocks][4] with per block dx (scale), sq (sum of the int8
/// values) and sx = dx sq [16 full]; the tail group tq [8 slices][16 lanes][4] with tdx, tsq,
/// tsx [16], lane l < R t holding tail block l % t and the lanes past it zero.
struct a8_activations {
    const std::int8_t* q;
    const float* dx;
    const std::int32_t* sq;
    const float* sx;
    const std::int8_t* tq;
    const float* tdx;
    const std::int32_t* tsq;
    const float* tsx;
};

/// Rounds one block of 32 values to int8 (half to even) with scale max|x| / 127: v, the scale and
/// the sum of the int8 values. Every layout below rounds through this one function.
inline void a8_round_block(const float* x, std::int8_t* v, float& scale, std::int32_t& isum) noexcept {
    float amax = 0.0f;
    isum = 0;
#if KITE_GGML_A8_VNNI
    // The scalar loop below, 16 lanes at a time: max_ps(|x|, m) keeps m when |x| is NaN, as
    // std::max(m, |x|) does, and cvtps_epi32 rounds as nearbyint (the current mode).
    const __m512 x0 = _mm512_loadu_ps(x), x1 = _mm512_loadu_ps(x + 16);
    amax = _mm512_reduce_max_ps(_mm512_max_ps(_mm512_abs_ps(x1), _mm512_max_ps(_mm512_abs_ps(x0), _mm512_setzero_ps())));
    const __m512 inv = _mm512_set1_ps(amax > 0.0f ? 127.0f / amax : 0.0f);
    const __m512i i0 = _mm512_cvtps_epi32(_mm512_mul_ps(x0, inv)), i1 = _mm512_cvtps_epi32(_mm512_mul_ps(x1, inv));
    const __m128i v0 = _mm512_cvtepi32_epi8(i0), v1 = _mm512_cvtepi32_epi8(i1);  // |values| <= 127 (NaN: 0)
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(v), _mm256_set_m128i(v1, v0));
    isum = _mm512_reduce_add_epi32(_mm512_add_epi32(_mm512_cvtepi8_epi32(v0), _mm512_cvtepi8_epi32(v1)));
#else
    for (int i = 0; i < 32; ++i) amax = std::max(amax, std::abs(x[i]));
    const float inv = amax > 0.0f ? 127.0f / amax : 0.0f;
    for (int i = 0; i < 32; ++i) {
        v[i] = static_cast<std::int8_t>(static_cast<int>(std::nearbyint(x[i] * inv)));
        isum += v[i];
    }
#endif
    scale = amax / 127.0f;
}

/// Rounds x [32 blocks] into the layout above: q (512 full bytes), dx / sq / sx (16 full), tq
/// (512 bytes), tdx / tsq / tsx (16).
inline void a8_quantize(const float* x, index_t blocks, std::int8_t* q, float* dx, std::int32_t* sq, float* sx,
                        std::int8_t* tq, float* tdx, std::int32_t* tsq, float* tsx) noexcept {
    const index_t full = blocks / 16, tail = blocks % 16, R = ggml_a8_weights::tail_rows_for(tail);
    std::memset(tq, 0, 512);
    std::fill_n(tdx, 16, 0.0f);
    std::fill_n(tsq, 16, 0);
    std::fill_n(tsx, 16, 0.0f);
    alignas(32) std::int8_t v[32];
    for (index_t b = 0; b < blocks; ++b) {
        float scale;
        std::int32_t isum;
        a8_round_block(x + 32 * b, v, scale, isum);
        if (b < 16 * full) {
            for (int k = 0; k < 8; ++k) std::memcpy(q + 512 * (b / 16) + 64 * k + 4 * (b % 16), v + 4 * k, 4);
            dx[b] = scale;
            sq[b] = isum;
            sx[b] = scale * static_cast<float>(isum);
            continue;
        }
        for (index_t lane = b - 16 * full; lane < R * tail; lane += tail) {
            for (int k = 0; k < 8; ++k) std::memcpy(tq + 64 * k + 4 * lane, v + 4 * k, 4);
            tdx[lane] = scale;
            tsq[lane] = isum;
            tsx[lane] = scale * static_cast<float>(isum);
        }
    }
}

#if KITE_GGML_A8_VNNI
/// One group (a whole group of a row, or a tail group) for NT tokens: codes at `c`, its 16 fp16
/// scales d (and Q4_1 offsets m); adds lane by lane into acc[t] (see the file comment).
template <ggml::type T, int NT, bool Tail>
KITE_FORCE_INLINE void a8_group(const std::uint8_t* c, const std::uint16_t* d, const std::uint16_t* m,
                                const a8_activations* a, index_t g, __m512* acc_out) noexcept {
    // Accumulators in locals: through the pointer they could alias the int8 loads and would
    // round-trip memory on every update.
    __m512 acc[NT];
#pragma GCC unroll 8
    for (int t = 0; t < NT; ++t) acc[t] = acc_out[t];
    constexpr int shift = T == ggml::type::q8_0 ? 7 : 3;  // the codes' offset: 128 or 8
    const __m512 d16 = _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(d)));
    __m512i w[8];
    if constexpr (T == ggml::type::q8_0) {
#pragma GCC unroll 8
        for (int sl = 0; sl < 8; ++sl) w[sl] = _mm512_loadu_si512(c + 64 * sl);
    } else if constexpr (NT == 1) {
        // One token: the high nibbles stay in place (16 u), their products go into a chain of
        // their own, shifted back once (exact: every term is a multiple of 16). Fewer operations
        // per group than shifting every chunk (the vector pipes, not memory, bound this loop).
        const __m512i lo = _mm512_set1_epi8(15), hi = _mm512_set1_epi8(static_cast<char>(0xF0));
        const std::int8_t* xq = Tail ? a[0].tq : a[0].q + 512 * g;
        __m512i sl = _mm512_setzero_si512(), sh = _mm512_setzero_si512();
#pragma GCC unroll 4
        for (int j = 0; j < 4; ++j) {
            const __m512i raw = _mm512_loadu_si512(c + 64 * j);
            sl = _mm512_dpbusd_epi32(sl, _mm512_and_si512(raw, lo), _mm512_loadu_si512(xq + 128 * j));
            sh = _mm512_dpbusd_epi32(sh, _mm512_and_si512(raw, hi), _mm512_loadu_si512(xq + 128 * j + 64));
        }
        __m512i isum = _mm512_add_epi32(sl, _mm512_srai_epi32(sh, 4));
        if constexpr (T == ggml::type::q4_0)
            isum = _mm512_sub_epi32(isum, _mm512_slli_epi32(_mm512_loadu_si512(Tail ? a[0].tsq : a[0].sq + 16 * g), shift));
        const float* dx = Tail ? a[0].tdx : a[0].dx + 16 * g;
        acc[0] = _mm512_fmadd_ps(_mm512_mul_ps(_mm512_cvtepi32_ps(isum), _mm512_loadu_ps(dx)), d16, acc[0]);
        if constexpr (T == ggml::type::q4_1) {
            const __m512 m16 = _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(m)));
            acc[0] = _mm512_fmadd_ps(m16, _mm512_loadu_ps(Tail ? a[0].tsx : a[0].sx + 16 * g), acc[0]);
        }
        acc_out[0] = acc[0];
        return;
    } else {
        const __m512i mask = _mm512_set1_epi8(15);
#pragma GCC unroll 4
        for (int j = 0; j < 4; ++j) {
            const __m512i raw = _mm512_loadu_si512(c + 64 * j);
            w[2 * j] = _mm512_and_si512(raw, mask);
            w[2 * j + 1] = _mm512_and_si512(_mm512_srli_epi16(raw, 4), mask);
        }
    }
    [[maybe_unused]] __m512 m16;
    if constexpr (T == ggml::type::q4_1) m16 = _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(m)));
#pragma GCC unroll 8
    for (int t = 0; t < NT; ++t) {
        const std::int8_t* xq = Tail ? a[t].tq : a[t].q + 512 * g;
        const float* dx = Tail ? a[t].tdx : a[t].dx + 16 * g;
        // Four independent chains (integer sums are exact in any order).
        __m512i s0 = _mm512_dpbusd_epi32(_mm512_setzero_si512(), w[0], _mm512_loadu_si512(xq));
        __m512i s1 = _mm512_dpbusd_epi32(_mm512_setzero_si512(), w[1], _mm512_loadu_si512(xq + 64));
        __m512i s2 = _mm512_dpbusd_epi32(_mm512_setzero_si512(), w[2], _mm512_loadu_si512(xq + 128));
        __m512i s3 = _mm512_dpbusd_epi32(_mm512_setzero_si512(), w[3], _mm512_loadu_si512(xq + 192));
        s0 = _mm512_dpbusd_epi32(s0, w[4], _mm512_loadu_si512(xq + 256));
        s1 = _mm512_dpbusd_epi32(s1, w[5], _mm512_loadu_si512(xq + 320));
        s2 = _mm512_dpbusd_epi32(s2, w[6], _mm512_loadu_si512(xq + 384));
        s3 = _mm512_dpbusd_epi32(s3, w[7], _mm512_loadu_si512(xq + 448));
        __m512i isum = _mm512_add_epi32(_mm512_add_epi32(s0, s1), _mm512_add_epi32(s2, s3));
        if constexpr (T != ggml::type::q4_1) {
            const std::int32_t* sq = Tail ? a[t].tsq : a[t].sq + 16 * g;
            isum = _mm512_sub_epi32(isum, _mm512_slli_epi32(_mm512_loadu_si512(sq), shift));
        }
        acc[t] = _mm512_fmadd_ps(_mm512_mul_ps(_mm512_cvtepi32_ps(isum), _mm512_loadu_ps(dx)), d16, acc[t]);
        if constexpr (T == ggml::type::q4_1)
            acc[t] = _mm512_fmadd_ps(m16, _mm512_loadu_ps(Tail ? a[t].tsx : a[t].sx + 16 * g), acc[t]);
    }
#pragma GCC unroll 8
    for (int t = 0; t < NT; ++t) acc_out[t] = acc[t];
}

/// Whole group g of eight rows for one token: the activations' slices, scales and sums are
/// loaded once into registers for the eight (on Zen 4 a 512-bit load takes both load ports, so
/// reloading them per row made this loop load-bound). Rows are `cstride` code bytes and
/// `sstride` scales apart. The same per-lane operations as a8_group<T, 1, false>.
template <ggml::type T>
KITE_FORCE_INLINE void a8_group8(const std::uint8_t* c, std::size_t cstride, const std::uint16_t* d,
                                 const std::uint16_t* m, std::size_t sstride, const a8_activations& a, index_t g,
                                 __m512* acc) noexcept {
    constexpr int shift = T == ggml::type::q8_0 ? 7 : 3;
    const std::int8_t* xq = a.q + 512 * g;
    __m512i x[8];
#pragma GCC unroll 8
    for (int sl = 0; sl < 8; ++sl) x[sl] = _mm512_loadu_si512(xq + 64 * sl);
    const __m512 dx = _mm512_loadu_ps(a.dx + 16 * g);
    [[maybe_unused]] __m512i off;
    [[maybe_unused]] __m512 sx;
    if constexpr (T == ggml::type::q4_1) sx = _mm512_loadu_ps(a.sx + 16 * g);
    else off = _mm512_slli_epi32(_mm512_loadu_si512(a.sq + 16 * g), shift);
    const __m512i lo = _mm512_set1_epi8(15), hi = _mm512_set1_epi8(static_cast<char>(0xF0));
#pragma GCC unroll 8
    for (int i = 0; i < 8; ++i) {
        const std::uint8_t* ci = c + cstride * static_cast<std::size_t>(i);
        __m512i isum;
        if constexpr (T == ggml::type::q8_0) {
            __m512i s0 = _mm512_dpbusd_epi32(_mm512_setzero_si512(), _mm512_loadu_si512(ci), x[0]);
            __m512i s1 = _mm512_dpbusd_epi32(_mm512_setzero_si512(), _mm512_loadu_si512(ci + 64), x[1]);
#pragma GCC unroll 3
            for (int sl = 2; sl < 8; sl += 2) {
                s0 = _mm512_dpbusd_epi32(s0, _mm512_loadu_si512(ci + 64 * sl), x[sl]);
                s1 = _mm512_dpbusd_epi32(s1, _mm512_loadu_si512(ci + 64 * sl + 64), x[sl + 1]);
            }
            isum = _mm512_add_epi32(s0, s1);
        } else {
            __m512i sl = _mm512_setzero_si512(), sh = _mm512_setzero_si512();
#pragma GCC unroll 4
            for (int j = 0; j < 4; ++j) {
                const __m512i raw = _mm512_loadu_si512(ci + 64 * j);
                sl = _mm512_dpbusd_epi32(sl, _mm512_and_si512(raw, lo), x[2 * j]);
                sh = _mm512_dpbusd_epi32(sh, _mm512_and_si512(raw, hi), x[2 * j + 1]);
            }
            isum = _mm512_add_epi32(sl, _mm512_srai_epi32(sh, 4));
        }
        if constexpr (T != ggml::type::q4_1) isum = _mm512_sub_epi32(isum, off);
        const __m512 d16 = _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(d + sstride * i)));
        acc[i] = _mm512_fmadd_ps(_mm512_mul_ps(_mm512_cvtepi32_ps(isum), dx), d16, acc[i]);
        if constexpr (T == ggml::type::q4_1) {
            const __m512 m16 = _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(m + sstride * i)));
            acc[i] = _mm512_fmadd_ps(m16, sx, acc[i]);
        }
    }
}

KITE_FORCE_INLINE __m256 a8_fold(__m512 acc) noexcept {  // v_i = acc_i + acc_(i+8)
    return _mm256_add_ps(_mm512_castps512_ps256(acc), _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(acc), 1)));
}
/// A row's sum of its 16 lanes, in the tree of the file comment.
KITE_FORCE_INLINE float a8_tree(__m512 acc) noexcept {
    const __m256 v = a8_fold(acc);
    const __m256 h = _mm256_hadd_ps(v, v);   // v0+v1, v2+v3, .. | v4+v5, v6+v7, ..
    const __m256 h2 = _mm256_hadd_ps(h, h);  // (v0+v1)+(v2+v3), .. | (v4+v5)+(v6+v7), ..
    return _mm_cvtss_f32(_mm_add_ss(_mm256_castps256_ps128(h2), _mm256_extractf128_ps(h2, 1)));
}
/// The sums of 8 rows' lanes, each in the same tree as a8_tree.
KITE_FORCE_INLINE __m256 a8_tree8(const __m512* acc) noexcept {
    const __m256 q1 = _mm256_hadd_ps(_mm256_hadd_ps(a8_fold(acc[0]), a8_fold(acc[1])),
                                     _mm256_hadd_ps(a8_fold(acc[2]), a8_fold(acc[3])));
    const __m256 q2 = _mm256_hadd_ps(_mm256_hadd_ps(a8_fold(acc[4]), a8_fold(acc[5])),
                                     _mm256_hadd_ps(a8_fold(acc[6]), a8_fold(acc[7])));
    return _mm256_add_ps(_mm256_permute2f128_ps(q1, q2, 0x20), _mm256_permute2f128_ps(q1, q2, 0x31));
}
#endif

/// The lanes of one row's whole groups for NT tokens, summed: y[t ldy + r] = row sum.
template <ggml::type T, int NT>
KITE_FORCE_INLINE void a8_row(const ggml_a8_weights::segment& s, index_t r, const a8_activations* a, float* y,
                              index_t ldy) noexcept {
    const index_t in = r % ggml_a8_weights::block_rows;
    const std::uint8_t* blk = s.block(r);
#if KITE_GGML_A8_VNNI
    const std::uint8_t* c = blk + in * s.code_bytes;
    const auto* d = reinterpret_cast<const std::uint16_t*>(blk + s.d_off) + in * 16 * s.full;
    [[maybe_unused]] const std::uint16_t* m =
        T == ggml::type::q4_1 ? reinterpret_cast<const std::uint16_t*>(blk + s.m_off) + in * 16 * s.full : nullptr;
    __m512 acc[NT];
#pragma GCC unroll 8
    for (int t = 0; t < NT; ++t) acc[t] = _mm512_setzero_ps();
    for (index_t g = 0; g < s.full; ++g)
        a8_group<T, NT, false>(c + s.group_bytes() * g, d + 16 * g, m ? m + 16 * g : nullptr, a, g, acc);
    if constexpr (NT == 8) {  // eight tokens: one transposed reduction (the same tree per token)
        alignas(32) float sums[8];
        _mm256_store_ps(sums, a8_tree8(acc));
#pragma GCC unroll 8
        for (int t = 0; t < NT; ++t) y[t * ldy + r] = sums[t];
    } else {
#pragma GCC unroll 8
        for (int t = 0; t < NT; ++t) y[t * ldy + r] = a8_tree(acc[t]);
    }
#else
    (void)in;
    (void)blk;
    constexpr int shift = T == ggml::type::q8_0 ? 7 : 3;
    for (int t = 0; t < NT; ++t) {
        float acc[16] = {};
        for (index_t b = 0; b < 16 * s.full; ++b) {
            std::int32_t isum = 0;
            for (int i = 0; i < 32; ++i)
                isum += ggml_a8_weights::code(s, r, b, i) * a[t].q[512 * (b / 16) + 64 * (i / 4) + 4 * (b % 16) + i % 4];
            if constexpr (T != ggml::type::q4_1) isum -= a[t].sq[b] * (1 << shift);
            const float f = static_cast<float>(isum) * a[t].dx[b];
            acc[b % 16] = std::fma(f, kite::detail::fp16_bits_to_float(ggml_a8_weights::scale(s, r, b, false)), acc[b % 16]);
            if constexpr (T == ggml::type::q4_1)
                acc[b % 16] = std::fma(kite::detail::fp16_bits_to_float(ggml_a8_weights::scale(s, r, b, true)), a[t].sx[b],
                                       acc[b % 16]);
        }
        float v[8];
        for (int i = 0; i < 8; ++i) v[i] = acc[i] + acc[i + 8];
        y[t * ldy + r] = ((v[0] + v[1]) + (v[2] + v[3])) + ((v[4] + v[5]) + (v[6] + v[7]));
    }
#endif
}

/// Adds the tail sums of rows [lo, hi) of block B (see the file comment) for NT tokens.
template <ggml::type T, int NT>
void a8_tail_block(const ggml_a8_weights::segment& s, index_t B, index_t lo, index_t hi, const a8_activations* a,
                   float* y, index_t ldy) noexcept {
    const index_t R = s.tail_rows, first = B * ggml_a8_weights::block_rows;
    const std::uint8_t* blk = s.data.data() + B * s.block_bytes;
#if KITE_GGML_A8_VNNI
    // Lane i t of the tail group: where row i's tail blocks begin.
    const __m256i lane0 = _mm256_mullo_epi32(_mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7),
                                             _mm256_set1_epi32(static_cast<int>(s.tail)));
#endif
    for (index_t G = (lo - first) / R; first + G * R < hi; ++G) {
        const std::uint8_t* c = blk + s.tail_off + G * s.group_bytes();
#if KITE_GGML_A8_VNNI
        __m512 acc[NT];
#pragma GCC unroll 8
        for (int t = 0; t < NT; ++t) acc[t] = _mm512_setzero_ps();
        a8_group<T, NT, true>(c, reinterpret_cast<const std::uint16_t*>(blk + s.tail_d_off) + 16 * G,
                              T == ggml::type::q4_1 ? reinterpret_cast<const std::uint16_t*>(blk + s.tail_m_off) + 16 * G
                                                    : nullptr,
                              a, 0, acc);
        // Row i of the group sums lanes i t, i t + 1, .. in that order (the portable twin's
        // order), gathered for the R rows at once; rows outside [lo, hi) are masked off.
        const index_t row0 = first + G * R;
        const index_t i0 = std::max(lo, row0) - row0, i1 = std::min(hi, row0 + R) - row0;
        const __mmask8 rows = static_cast<__mmask8>(((1u << i1) - 1u) & ~((1u << i0) - 1u));
#pragma GCC unroll 8
        for (int t = 0; t < NT; ++t) {
            __m256 sum = _mm512_castps512_ps256(_mm512_permutexvar_ps(_mm512_zextsi256_si512(lane0), acc[t]));
            for (index_t j = 1; j < s.tail; ++j) {
                const __m256i lane = _mm256_add_epi32(lane0, _mm256_set1_epi32(static_cast<int>(j)));
                sum = _mm256_add_ps(sum, _mm512_castps512_ps256(_mm512_permutexvar_ps(_mm512_zextsi256_si512(lane), acc[t])));
            }
            float* yt = y + t * ldy + row0;
            _mm256_mask_storeu_ps(yt, rows, _mm256_add_ps(_mm256_maskz_loadu_ps(rows, yt), sum));
        }
#else
        float v[NT][16];
        constexpr int shift = T == ggml::type::q8_0 ? 7 : 3;
        const auto fp16_at = [&](std::size_t off, index_t lane) {
            std::uint16_t h;
            std::memcpy(&h, blk + off + 2 * (16 * G + lane), 2);
            return kite::detail::fp16_bits_to_float(h);
        };
        for (int t = 0; t < NT; ++t)
            for (index_t lane = 0; lane < 16; ++lane) {
                std::int32_t isum = 0;
                for (int i = 0; i < 32; ++i) {
                    const std::uint8_t byte = c[64 * (T == ggml::type::q8_0 ? i / 4 : i / 8) + 4 * lane + i % 4];
                    const int u = T == ggml::type::q8_0 ? byte : ((i / 4) % 2 ? byte >> 4 : byte & 15);
                    isum += u * a[t].tq[64 * (i / 4) + 4 * lane + i % 4];
                }
                if constexpr (T != ggml::type::q4_1) isum -= a[t].tsq[lane] * (1 << shift);
                const float f = static_cast<float>(isum) * a[t].tdx[lane];
                v[t][lane] = std::fma(f, fp16_at(s.tail_d_off, lane), 0.0f);
                if constexpr (T == ggml::type::q4_1) v[t][lane] = std::fma(fp16_at(s.tail_m_off, lane), a[t].tsx[lane], v[t][lane]);
            }
        for (index_t i = 0; i < R; ++i) {
            const index_t row = first + G * R + i;
            if (row < lo) continue;
            if (row >= hi) break;
            for (int t = 0; t < NT; ++t) {
                float sum = v[t][i * s.tail];
                for (index_t j = 1; j < s.tail; ++j) sum += v[t][i * s.tail + j];
                y[t * ldy + row] += sum;
            }
        }
#endif
    }
}

/// Software prefetch of a segment's single stream of blocks: each line into L2 far ahead and
/// into L1 at least two steps (the bytes between two calls of at()) ahead, in that order, on
/// both tunings. On Zen 4 a GEMV that computes while it streams reaches about two thirds of the
/// DRAM bandwidth with its own prefetchers; with these, 90% or more (bench/README, "AMD EPYC").
/// On an Intel Xeon (model 167) the same scheme beat the L1-only prefetch 2 KiB ahead that the
/// Intel tuning used before (SmolLM2 int8 decoding, one thread: bench/README, "Intel Xeon").
struct a8_prefetcher {
    static constexpr std::size_t near_bytes = 6144, far_bytes = 8192;  // far: beyond the near distance
    const char* base = nullptr;
    std::size_t size = 0, near = 0, far = 0, near_at = 0, far_at = 0;

    a8_prefetcher(const ggml_a8_weights::segment& s, std::size_t from, std::size_t step) noexcept
        : base(reinterpret_cast<const char*>(s.data.data())), size(s.data.size_bytes()) {
        near = std::max(near_bytes, 2 * step);
        far = near + far_bytes;
        near_at = from + near;
        far_at = from + far;
    }
    /// The stream is being read at byte `pos`: prefetch up to pos + far (L2), then pos + near (L1).
    KITE_FORCE_INLINE void at([[maybe_unused]] std::size_t pos) noexcept {
#if KITE_GGML_A8_VNNI
        if (far)
            for (const std::size_t e = std::min(size, pos + far); far_at < e; far_at += 64)
                _mm_prefetch(base + far_at, _MM_HINT_T1);
        for (const std::size_t e = std::min(size, pos + near); near_at < e; near_at += 64)
            _mm_prefetch(base + near_at, _MM_HINT_T0);
#endif
    }
};

/// Rows [r0, r1) of one segment for NT tokens: block by block, the whole groups' row sums, then
/// each row's tail sum added (see the file comment).
template <ggml::type T, int NT>
void a8_rows_typed(const ggml_a8_weights::segment& s, index_t r0, index_t r1, const a8_activations* a, float* y,
                   index_t ldy) noexcept {
    constexpr index_t P = ggml_a8_weights::block_rows;
    const bool blockwise = NT == 1 && s.full == 1;  // the eight-row kernel: one call of pf.at() per block
    a8_prefetcher pf(s, static_cast<std::size_t>(r0 / P) * s.block_bytes, blockwise ? s.block_bytes : s.code_bytes);
    for (index_t B = r0 / P; B * P < r1; ++B) {
        const index_t lo = std::max(r0, B * P), hi = std::min(r1, B * P + P);
        const std::uint8_t* blk = s.data.data() + B * s.block_bytes;
        const std::size_t at = B * s.block_bytes;
#if KITE_GGML_A8_VNNI
        if (NT == 1 && s.full > 0 && hi - lo == P) {
            // Eight rows at a time: one transposed reduction for the eight (the same tree per row).
            pf.at(at);
            __m512 acc[P];
            for (index_t i = 0; i < P; ++i) acc[i] = _mm512_setzero_ps();
            const auto* d = reinterpret_cast<const std::uint16_t*>(blk + s.d_off);
            const std::uint16_t* m = T == ggml::type::q4_1 ? reinterpret_cast<const std::uint16_t*>(blk + s.m_off) : nullptr;
            const std::size_t ss = 16 * s.full;
            if (s.full == 1) {
                a8_group8<T>(blk, s.code_bytes, d, m, ss, a[0], 0, acc);
            } else {  // longer rows: one row after the other keeps the codes one sequential stream
                for (index_t i = 0; i < P; ++i) {
                    pf.at(at + i * s.code_bytes);
                    for (index_t g = 0; g < s.full; ++g)
                        a8_group<T, 1, false>(blk + i * s.code_bytes + s.group_bytes() * g, d + i * ss + 16 * g,
                                              m ? m + i * ss + 16 * g : nullptr, a, g, acc + i);
                }
            }
            _mm256_storeu_ps(y + lo, a8_tree8(acc));
        } else {
            for (index_t r = lo; r < hi; ++r) {
                pf.at(at + (r - B * P) * s.code_bytes);
                a8_row<T, NT>(s, r, a, y, ldy);
            }
        }
#else
        (void)blk;
        (void)at;
        for (index_t r = lo; r < hi; ++r) a8_row<T, NT>(s, r, a, y, ldy);
#endif
        if (s.tail) a8_tail_block<T, NT>(s, B, lo, hi, a, y, ldy);
    }
}

template <int NT>
void a8_rows(const ggml_a8_weights::segment& s, index_t r0, index_t r1, const a8_activations* a, float* y,
             index_t ldy) noexcept {
    switch (s.type) {
        case ggml::type::q4_1: a8_rows_typed<ggml::type::q4_1, NT>(s, r0, r1, a, y, ldy); break;
        case ggml::type::q4_0: a8_rows_typed<ggml::type::q4_0, NT>(s, r0, r1, a, y, ldy); break;
        default: a8_rows_typed<ggml::type::q8_0, NT>(s, r0, r1, a, y, ldy); break;
    }
}

// ---- Batches on AMX tiles (Intel, AMX-INT8) ------------------------------------------------------

/// The batched kernel's tile unit: the tile instructions of kite/core/amx.hpp and the VNNI
/// kernels' instruction set for the float epilogue; used at run time only where
/// kite::cpu::amx_int8_active().
#if KITE_GGML_A8_VNNI && KITE_AMX_ASM
#define KITE_GGML_A8_AMX 1
#else
#define KITE_GGML_A8_AMX 0
#endif

/// Tokens from which a product takes the AMX kernel (when active). Below it the VNNI kernels
/// are faster: the tile kernel transposes each row's codes once per call, whatever the batch.
inline constexpr index_t a8_amx_min_tokens = 32;

/// Activations in the AMX kernel's layout: tokens in tiles of 16 (the last one padded with zero
/// tokens); per tile and block kb, the int8 values as a tile operand [8][16 tokens][4] (element
/// 4 kk + e of token n at byte 64 kk + 4 n + e) and dx, sq, sx as [16 tokens] vectors.
struct a8_tiles {
    const std::int8_t* q;       // [tiles][blocks][512]
    const float* dx;            // [tiles][blocks][16]
    const std::int32_t* sq;     // [tiles][blocks][16]
    const float* sx;            // [tiles][blocks][16]
    index_t blocks = 0, tokens = 0;
};

/// Rounds the rows of X into a8_tiles' layout (the same values as a8_quantize: one rounding).
inline void a8_quantize_tiles(matrix_view<const float> X, index_t blocks, std::int8_t* q, float* dx,
                              std::int32_t* sq, float* sx) noexcept {
    const index_t T = X.rows(), tiles = (T + 15) / 16;
    std::memset(q, 0, static_cast<std::size_t>(tiles * blocks) * 512);
    std::fill_n(dx, tiles * blocks * 16, 0.0f);
    std::fill_n(sq, tiles * blocks * 16, 0);
    std::fill_n(sx, tiles * blocks * 16, 0.0f);
    alignas(32) std::int8_t v[32];
    for (index_t t = 0; t < T; ++t) {
        const float* x = X.row(t).data();
        const index_t n = t % 16;
        for (index_t kb = 0; kb < blocks; ++kb) {
            const index_t at = (t / 16) * blocks + kb;
            float scale;
            std::int32_t isum;
            a8_round_block(x + 32 * kb, v, scale, isum);
            for (int kk = 0; kk < 8; ++kk) std::memcpy(q + 512 * at + 64 * kk + 4 * n, v + 4 * kk, 4);
            dx[16 * at + n] = scale;
            sq[16 * at + n] = isum;
            sx[16 * at + n] = scale * static_cast<float>(isum);
        }
    }
}

#if KITE_GGML_A8_AMX
/// The codes of one group (a row's whole group, or a tail group) as its 8 slices: slice s holds
/// element 4 s .. 4 s + 3 of each of the 16 lanes.
template <ggml::type T>
KITE_FORCE_INLINE void a8_slices(const std::uint8_t* c, __m512i* x) noexcept {
    if constexpr (T == ggml::type::q8_0) {
#pragma GCC unroll 8
        for (int s = 0; s < 8; ++s) x[s] = _mm512_loadu_si512(c + 64 * s);
    } else {
        const __m512i mask = _mm512_set1_epi8(15);
#pragma GCC unroll 4
        for (int j = 0; j < 4; ++j) {
            const __m512i raw = _mm512_loadu_si512(c + 64 * j);
            x[2 * j] = _mm512_and_si512(raw, mask);
            x[2 * j + 1] = _mm512_and_si512(_mm512_srli_epi16(raw, 4), mask);
        }
    }
}

/// Transposes 8 slices of 16 lanes (dwords) into lane order: out[p] = lane 2p's 8 dwords (its 32
/// codes in element order) then lane 2p+1's.
KITE_FORCE_INLINE void a8_lanes(const __m512i* x, __m512i* out) noexcept {
    __m512i t[8], u[8];
#pragma GCC unroll 4
    for (int i = 0; i < 4; ++i) {
        t[2 * i] = _mm512_unpacklo_epi32(x[2 * i], x[2 * i + 1]);
        t[2 * i + 1] = _mm512_unpackhi_epi32(x[2 * i], x[2 * i + 1]);
    }
    // u[k] (k < 4): slices 0-3 of lane 4L + k in 128-bit lane L; u[4 + k]: slices 4-7.
#pragma GCC unroll 2
    for (int h = 0; h < 2; ++h) {
        u[4 * h + 0] = _mm512_unpacklo_epi64(t[4 * h + 0], t[4 * h + 2]);
        u[4 * h + 1] = _mm512_unpackhi_epi64(t[4 * h + 0], t[4 * h + 2]);
        u[4 * h + 2] = _mm512_unpacklo_epi64(t[4 * h + 1], t[4 * h + 3]);
        u[4 * h + 3] = _mm512_unpackhi_epi64(t[4 * h + 1], t[4 * h + 3]);
    }
#pragma GCC unroll 2
    for (int k = 0; k < 4; k += 2) {  // lanes (4L + k, 4L + k + 1) for L = 0..3
        const __m512i a = _mm512_shuffle_i32x4(u[k], u[4 + k], 0x88), b = _mm512_shuffle_i32x4(u[k], u[4 + k], 0xDD);
        const __m512i c = _mm512_shuffle_i32x4(u[k + 1], u[5 + k], 0x88), d = _mm512_shuffle_i32x4(u[k + 1], u[5 + k], 0xDD);
        out[k / 2 + 0] = _mm512_shuffle_i32x4(a, c, 0x88);  // L = 0
        out[k / 2 + 4] = _mm512_shuffle_i32x4(a, c, 0xDD);  // L = 2
        out[k / 2 + 2] = _mm512_shuffle_i32x4(b, d, 0x88);  // L = 1
        out[k / 2 + 6] = _mm512_shuffle_i32x4(b, d, 0xDD);  // L = 3
    }
}

/// r[i] (16 floats each) -> r[c] = (r_0[c], .., r_15[c]).
KITE_FORCE_INLINE void a8_transpose16(__m512* r) noexcept {
    __m512 t[16], u[16];
#pragma GCC unroll 8
    for (int i = 0; i < 8; ++i) {
        t[2 * i] = _mm512_unpacklo_ps(r[2 * i], r[2 * i + 1]);
        t[2 * i + 1] = _mm512_unpackhi_ps(r[2 * i], r[2 * i + 1]);
    }
#pragma GCC unroll 4
    for (int q = 0; q < 4; ++q) {  // rows 4q .. 4q + 3: u[4q + k] = column 4L + k of them in lane L
        const __m512d a = _mm512_castps_pd(t[4 * q]), b = _mm512_castps_pd(t[4 * q + 2]);
        const __m512d c = _mm512_castps_pd(t[4 * q + 1]), d = _mm512_castps_pd(t[4 * q + 3]);
        u[4 * q + 0] = _mm512_castpd_ps(_mm512_unpacklo_pd(a, b));
        u[4 * q + 1] = _mm512_castpd_ps(_mm512_unpackhi_pd(a, b));
        u[4 * q + 2] = _mm512_castpd_ps(_mm512_unpacklo_pd(c, d));
        u[4 * q + 3] = _mm512_castpd_ps(_mm512_unpackhi_pd(c, d));
    }
#pragma GCC unroll 4
    for (int k = 0; k < 4; ++k) {
        const __m512 x = _mm512_shuffle_f32x4(u[k], u[4 + k], 0x88), x1 = _mm512_shuffle_f32x4(u[k], u[4 + k], 0xDD);
        const __m512 z = _mm512_shuffle_f32x4(u[8 + k], u[12 + k], 0x88), z1 = _mm512_shuffle_f32x4(u[8 + k], u[12 + k], 0xDD);
        r[k] = _mm512_shuffle_f32x4(x, z, 0x88);
        r[8 + k] = _mm512_shuffle_f32x4(x, z, 0xDD);
        r[4 + k] = _mm512_shuffle_f32x4(x1, z1, 0x88);
        r[12 + k] = _mm512_shuffle_f32x4(x1, z1, 0xDD);
    }
}

/// One block's terms for 16 rows, tokens in the vector: with f = (row i's sums - the codes'
/// offset) dx, acc[i] = fma(f, d_i, acc[i]), then Q4_1's acc[i] = fma(m_i, sx, acc[i]) — the
/// file comment's per-lane operations. sums [16 rows][16 tokens]; `at` indexes the block's
/// activation vectors in a; d and m hold row i's scale at i * stride.
template <ggml::type T>
KITE_FORCE_INLINE void a8_amx_terms(const std::int32_t* sums, const a8_tiles& a, index_t at, const float* d,
                                    const float* m, index_t stride, __m512* acc) noexcept {
    constexpr bool q41 = T == ggml::type::q4_1;
    [[maybe_unused]] __m512i off;
    [[maybe_unused]] __m512 sxv;
    if constexpr (q41) sxv = _mm512_loadu_ps(a.sx + 16 * at);
    else off = _mm512_slli_epi32(_mm512_loadu_si512(a.sq + 16 * at), T == ggml::type::q8_0 ? 7 : 3);
    const __m512 dxv = _mm512_loadu_ps(a.dx + 16 * at);
#pragma GCC unroll 16
    for (int i = 0; i < 16; ++i) {
        __m512i c = _mm512_loadu_si512(sums + 16 * i);
        if constexpr (!q41) c = _mm512_sub_epi32(c, off);
        const __m512 f = _mm512_mul_ps(_mm512_cvtepi32_ps(c), dxv);
        acc[i] = _mm512_fmadd_ps(f, _mm512_set1_ps(d[i * stride]), acc[i]);
        if constexpr (q41) acc[i] = _mm512_fmadd_ps(_mm512_set1_ps(m[i * stride]), sxv, acc[i]);
    }
}

/// Rows [r0, r1) of one segment for every token of `a`, on AMX tiles. Per 16 rows (two blocks of
/// the layout): each row's codes are transposed once into tile operands (row i's 32 codes of
/// block kb contiguous), then per tile of 16 tokens one tdpbusd per block gives the 16 x 16
/// exact integer sums (unsigned codes times int8 activations), and the float epilogue applies,
/// per (row, token), exactly the operations and order of the file comment: the same bits as
/// the VNNI and portable kernels.
template <ggml::type T>
void a8_rows_amx(const ggml_a8_weights::segment& s, index_t r0, index_t r1, const a8_tiles& a, float* y,
                 index_t ldy) noexcept {
    constexpr index_t P = ggml_a8_weights::block_rows;
    constexpr bool q41 = T == ggml::type::q4_1;
    const index_t blocks = s.blocks, full = s.full, tail = s.tail, R = s.tail_rows;
    const index_t nblk = (s.rows + P - 1) / P;  // blocks of 8 rows stored
    // Per thread: the weights' tile operands (whole groups [g][8 lane pairs][16 rows][64 bytes],
    // then tail blocks [j][16 rows][32 bytes]), d and m as float [16 rows][blocks], the integer
    // sums of one token tile [blocks][16 rows][16 tokens], the lanes' accumulators [16][16 rows].
    const std::size_t wfull = static_cast<std::size_t>(full) * 8192, wbytes = wfull + static_cast<std::size_t>(tail) * 512;
    std::uint8_t* wb = scratch<std::uint8_t, 17>(wbytes + 64);
    float* dfl = scratch<float, 18>(static_cast<std::size_t>(16 * blocks) * (q41 ? 2 : 1) + 16);
    float* mfl = dfl + 16 * blocks;
    std::int32_t* cb = scratch<std::int32_t, 19>(static_cast<std::size_t>(blocks) * 256 + 16);
    __m512* accb = reinterpret_cast<__m512*>(scratch<float, 20>(16 * 16 * 16 + 16));
    kite::cpu::amx_config cfg;
    for (int i = 0; i < 4; ++i) cfg.set(i, 16, 64);  // the sums: 16 rows x 16 tokens of int32
    for (int i = 4; i < 6; ++i) cfg.set(i, 16, 32);  // codes: 16 rows x one block
    for (int i = 6; i < 8; ++i) cfg.set(i, 8, 64);   // activations: [8][16 tokens][4]
    cfg.load();
    const auto wtile = [&](index_t kb) -> const std::uint8_t* {
        return kb < 16 * full ? wb + (kb / 16) * 8192 + (kb % 16 / 2) * 1024 + (kb % 2) * 32
                              : wb + wfull + (kb - 16 * full) * 512;
    };
    const auto wstride = [&](index_t kb) -> long { return kb < 16 * full ? 64 : 32; };
    const index_t tiles = (a.tokens + 15) / 16;

    for (index_t c0 = r0 - r0 % P; c0 < r1; c0 += 2 * P) {
        // 1. This chunk's weights as tile operands, its scales as floats (rows past the stored
        // blocks: zero codes, zero scales; their sums are never stored).
        for (index_t h = 0; h < 2; ++h) {
            const index_t B = c0 / P + h;
            if (B >= nblk) {
                for (index_t g = 0; g < full; ++g)
                    for (index_t p = 0; p < 8; ++p)
                        for (index_t in = 0; in < P; ++in)
                            _mm512_storeu_si512(wb + g * 8192 + p * 1024 + (P * h + in) * 64, _mm512_setzero_si512());
                for (index_t j = 0; j < tail; ++j)
                    for (index_t in = 0; in < P; ++in)
                        _mm256_storeu_si256(reinterpret_cast<__m256i*>(wb + wfull + j * 512 + (P * h + in) * 32),
                                            _mm256_setzero_si256());
                for (index_t in = 0; in < P; ++in) {
                    std::fill_n(dfl + (P * h + in) * blocks, blocks, 0.0f);
                    if (q41) std::fill_n(mfl + (P * h + in) * blocks, blocks, 0.0f);
                }
                continue;
            }
            const std::uint8_t* blk = s.data.data() + B * s.block_bytes;
            __m512i x[8], o[8];
            for (index_t in = 0; in < P; ++in) {
                const index_t i = P * h + in;
                for (index_t g = 0; g < full; ++g) {
                    a8_slices<T>(blk + in * s.code_bytes + g * s.group_bytes(), x);
                    a8_lanes(x, o);
#pragma GCC unroll 8
                    for (int p = 0; p < 8; ++p) _mm512_storeu_si512(wb + g * 8192 + p * 1024 + i * 64, o[p]);
                    const auto* d = reinterpret_cast<const std::uint16_t*>(blk + s.d_off) + in * 16 * full + 16 * g;
                    _mm512_storeu_ps(dfl + i * blocks + 16 * g,
                                     _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(d))));
                    if constexpr (q41) {
                        const auto* m = reinterpret_cast<const std::uint16_t*>(blk + s.m_off) + in * 16 * full + 16 * g;
                        _mm512_storeu_ps(mfl + i * blocks + 16 * g,
                                         _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(m))));
                    }
                }
            }
            // Tail groups: lane ri t + j is tail block j of row G R + ri.
            for (index_t G = 0; tail && G < P / R; ++G) {
                a8_slices<T>(blk + s.tail_off + G * s.group_bytes(), x);
                a8_lanes(x, o);
                alignas(64) std::uint8_t lanes[16][32];
#pragma GCC unroll 8
                for (int p = 0; p < 8; ++p) _mm512_store_si512(lanes[2 * p], o[p]);
                alignas(64) float dt[16], mt[16];
                _mm512_store_ps(dt, _mm512_cvtph_ps(_mm256_loadu_si256(
                                        reinterpret_cast<const __m256i*>(blk + s.tail_d_off + 32 * G))));
                if constexpr (q41)
                    _mm512_store_ps(mt, _mm512_cvtph_ps(_mm256_loadu_si256(
                                            reinterpret_cast<const __m256i*>(blk + s.tail_m_off + 32 * G))));
                for (index_t l = 0; l < R * tail; ++l) {
                    const index_t i = P * h + G * R + l / tail, j = l % tail;
                    std::memcpy(wb + wfull + j * 512 + i * 32, lanes[l], 32);
                    dfl[i * blocks + 16 * full + j] = dt[l];
                    if constexpr (q41) mfl[i * blocks + 16 * full + j] = mt[l];
                }
            }
        }
        const index_t lo = std::max(r0, c0), hi = std::min(r1, c0 + 2 * P);
        const __mmask16 rows = static_cast<__mmask16>(((1u << (hi - c0)) - 1u) & ~((1u << (lo - c0)) - 1u));

        for (index_t tt = 0; tt < tiles; ++tt) {
            const index_t ab = tt * blocks;  // this token tile's first block in a
            // 2. The integer sums of every block: block kb into tile kb % 4, its operands into
            // tiles 4 + kb % 2 and 6 + kb % 2, and the sums of block kb - 2 stored after it (tiles
            // are not renamed: each is written again only two blocks after it was read).
            const std::int8_t* aq = a.q + 512 * ab;
            for (index_t kb = 0; kb < blocks + 2; kb += 4) {
#define KITE_A8_STEP(C, A, B, S, j)                                    \
    if (kb + (j) < blocks) {                                           \
        KITE_AMX_LOAD(A, wtile(kb + (j)), wstride(kb + (j)));          \
        KITE_AMX_LOAD(B, aq + 512 * (kb + (j)), 64);                   \
        KITE_AMX_ZERO(C);                                              \
        KITE_AMX_DPBUSD(C, A, B);                                      \
    }                                                                  \
    if (kb + (j) >= 2 && kb + (j) - 2 < blocks) KITE_AMX_STORE(S, cb + 256 * (kb + (j) - 2), 64);
                KITE_A8_STEP(0, 4, 6, 2, 0)
                KITE_A8_STEP(1, 5, 7, 3, 1)
                KITE_A8_STEP(2, 4, 6, 0, 2)
                KITE_A8_STEP(3, 5, 7, 1, 3)
#undef KITE_A8_STEP
            }
            // 3. Per lane b of the whole groups, 16 rows' accumulators (tokens in the vector),
            // through the groups in order; then each row's tree of the 16 lanes.
            __m512 out[16];
            if (full > 0) {
                for (index_t b = 0; b < 16; ++b) {
                    __m512 acc[16];
#pragma GCC unroll 16
                    for (int i = 0; i < 16; ++i) acc[i] = _mm512_setzero_ps();
                    for (index_t kb = b; kb < 16 * full; kb += 16)
                        a8_amx_terms<T>(cb + 256 * kb, a, ab + kb, dfl + kb, mfl + kb, blocks, acc);
#pragma GCC unroll 16
                    for (int i = 0; i < 16; ++i) accb[16 * b + i] = acc[i];
                }
#pragma GCC unroll 16
                for (int i = 0; i < 16; ++i) {
                    __m512 v[8];
#pragma GCC unroll 8
                    for (int j = 0; j < 8; ++j) v[j] = _mm512_add_ps(accb[16 * j + i], accb[16 * (j + 8) + i]);
                    out[i] = _mm512_add_ps(_mm512_add_ps(_mm512_add_ps(v[0], v[1]), _mm512_add_ps(v[2], v[3])),
                                           _mm512_add_ps(_mm512_add_ps(v[4], v[5]), _mm512_add_ps(v[6], v[7])));
                }
            } else {
#pragma GCC unroll 16
                for (int i = 0; i < 16; ++i) out[i] = _mm512_setzero_ps();
            }
            // 4. The tail blocks: each its own terms from zero, summed in order, added to the row
            // sum.
            for (index_t j = 0; j < tail; ++j) {
                const index_t kb = 16 * full + j;
                __m512 v[16];
#pragma GCC unroll 16
                for (int i = 0; i < 16; ++i) v[i] = _mm512_setzero_ps();
                a8_amx_terms<T>(cb + 256 * kb, a, ab + kb, dfl + kb, mfl + kb, blocks, v);
#pragma GCC unroll 16
                for (int i = 0; i < 16; ++i) accb[i] = j == 0 ? v[i] : _mm512_add_ps(accb[i], v[i]);  // tail sums so far
            }
            if (tail) {
#pragma GCC unroll 16
                for (int i = 0; i < 16; ++i) out[i] = _mm512_add_ps(out[i], accb[i]);
            }
            // 5. Tokens back in rows: y[t][c0 + i].
            a8_transpose16(out);
            const index_t nt = std::min<index_t>(16, a.tokens - 16 * tt);
            for (index_t t = 0; t < nt; ++t) _mm512_mask_storeu_ps(y + (16 * tt + t) * ldy + c0, rows, out[t]);
        }
    }
    kite::cpu::amx_release();
}

inline void a8_rows_amx(const ggml_a8_weights::segment& s, index_t r0, index_t r1, const a8_tiles& a, float* y,
                        index_t ldy) noexcept {
    switch (s.type) {
        case ggml::type::q4_1: a8_rows_amx<ggml::type::q4_1>(s, r0, r1, a, y, ldy); break;
        case ggml::type::q4_0: a8_rows_amx<ggml::type::q4_0>(s, r0, r1, a, y, ldy); break;
        default: a8_rows_amx<ggml::type::q8_0>(s, r0, r1, a, y, ldy); break;
    }
}
#endif  // KITE_GGML_A8_AMX

inline void a8_gemm(const ggml_a8_weights& w, matrix_view<const float> X, float* Y, index_t ldy, int threads) {
    const index_t T = X.rows(), m = w.rows(), k = w.cols();
    if (T == 0 || m == 0) return;
    if (k == 0) {
        for (index_t t = 0; t < T; ++t) std::fill_n(Y + t * ldy, m, 0.0f);
        return;
    }
    constexpr index_t chunk = 16;
    // Rows [r0, r1) of every segment, float rows through ggml_weights' kernel, quantized ones
    // through `rows(segment, first, end, y)` (segment-relative rows, y at the segment's column 0).
    const auto each_segment = [&](auto&& rows) {
        parallel_chunks(
            (m + chunk - 1) / chunk,
            [&](std::size_t c0, std::size_t c1, int) {
                const index_t r0 = c0 * chunk, r1 = std::min(m, c1 * chunk);
                index_t base = 0;
                for (const auto& sp : w.segments()) {
                    const auto& s = *sp;
                    const index_t a = std::max(r0, base), e = std::min(r1, base + s.rows);
                    if (a < e) {
                        if (!s.plain.segments().empty())
                            ggml_range(s.plain, X, Y + base, ldy, a - base, e - base);
                        else
                            rows(s, a - base, e - base, Y + base);
                    }
                    base += s.rows;
                }
            },
            threads);
    };
    const index_t blocks = k / 32, full = blocks / 16;
#if KITE_GGML_A8_AMX
    if (T >= a8_amx_min_tokens && kite::cpu::amx_int8_active()) {
        // Tiles of 16 tokens on the tile unit: the activations once per call in its layout.
        const std::size_t n = static_cast<std::size_t>((T + 15) / 16 * blocks);
        std::int8_t* q = scratch<std::int8_t, 21>(512 * n + 64);
        float* dx = scratch<float, 22>(16 * n + 16);
        std::int32_t* sq = scratch<std::int32_t, 23>(16 * n + 16);
        float* sx = scratch<float, 24>(16 * n + 16);
        a8_quantize_tiles(X, blocks, q, dx, sq, sx);
        const a8_tiles at{q, dx, sq, sx, blocks, T};
        each_segment([&](const ggml_a8_weights::segment& s, index_t a, index_t e, float* y) {
            a8_rows_amx(s, a, e, at, y, ldy);
        });
        return;
    }
#endif
    // Every token's int8 activations, once per call: whole groups, then the tail group.
    const index_t qs = 512 * (full + 1), fs = 16 * (full + 1);
    std::int8_t* q = scratch<std::int8_t, 12>(T * qs + 64);
    float* dx = scratch<float, 13>(T * fs + 16);
    float* sx = scratch<float, 14>(T * fs + 16);
    std::int32_t* sq = scratch<std::int32_t, 16>(T * fs + 16);
    a8_activations* acts = scratch<a8_activations, 15>(T);
    for (index_t t = 0; t < T; ++t) {
        std::int8_t* qt = q + t * qs;
        float *dt = dx + t * fs, *xt = sx + t * fs;
        std::int32_t* st = sq + t * fs;
        a8_quantize(X.row(t).data(), blocks, qt, dt, st, xt, qt + 512 * full, dt + 16 * full, st + 16 * full,
                    xt + 16 * full);
        acts[t] = {qt, dt, st, xt, qt + 512 * full, dt + 16 * full, st + 16 * full, xt + 16 * full};
    }
    each_segment([&](const ggml_a8_weights::segment& s, index_t a, index_t e, float* Ys) {
        for (index_t t0 = 0; t0 < T; t0 += ggml_max_nt) {
            const int nt = static_cast<int>(std::min<index_t>(ggml_max_nt, T - t0));
            float* y = Ys + t0 * ldy;
            const a8_activations* at = acts + t0;
            switch (nt) {
                case 8: a8_rows<8>(s, a, e, at, y, ldy); break;
                case 7: a8_rows<7>(s, a, e, at, y, ldy); break;
                case 6: a8_rows<6>(s, a, e, at, y, ldy); break;
                case 5: a8_rows<5>(s, a, e, at, y, ldy); break;
                case 4: a8_rows<4>(s, a, e, at, y, ldy); break;
                case 3: a8_rows<3>(s, a, e, at, y, ldy); break;
                case 2: a8_rows<2>(s, a, e, at, y, ldy); break;
                default: a8_rows<1>(s, a, e, at, y, ldy); break;
            }
        }
    });
}

}  // namespace detail

inline void ggml_a8_weights::prefetch() const noexcept {
#if KITE_GGML_A8_VNNI
    for (const auto& s : segs_) {
        if (s->data.empty()) continue;
        // Up to where the kernel's far prefetch begins (a8_prefetcher).
        const std::size_t n = std::min(s->data.size_bytes(), detail::a8_prefetcher::near_bytes + detail::a8_prefetcher::far_bytes);
        const char* p = reinterpret_cast<const char*>(s->data.data());
        for (std::size_t o = 0; o < n; o += 64) _mm_prefetch(p + o, _MM_HINT_T1);
        return;
    }
#endif
}

/// y = W x with x rounded to int8 per block of 32 (see the file comment).
inline void gemv(const ggml_a8_weights& w, std::span<const float> x, std::span<float> y, int threads = 0) {
    KITE_REQUIRE(x.size() == w.cols() && y.size() == w.rows(), shape_error, "quant::gemv: x has ", x.size(),
                 " and y ", y.size(), " elements; expected in_features = ", w.cols(), " and out_features = ", w.rows());
    detail::a8_gemm(w, matrix_view<const float>(x.data(), 1, x.size()), y.data(), y.size(), threads);
}

/// Y [batch][out] = X [batch][in] W^T, each token's activations rounded to int8 (batch invariant).
inline void gemm(const ggml_a8_weights& w, matrix_view<const float> X, matrix_view<float> Y, int threads = 0) {
    KITE_REQUIRE(X.cols() == w.cols(), shape_error, "quant::gemm: X has ", X.cols(), " columns; expected in_features = ",
                 w.cols());
    KITE_REQUIRE(Y.rows() == X.rows() && Y.cols() == w.rows(), shape_error, "quant::gemm: Y has shape ", Y.rows(), " x ",
                 Y.cols(), "; expected ", X.rows(), " x ", w.rows(), " (batch x out_features)");
    detail::a8_gemm(w, X, Y.data(), Y.stride(), threads);
}

/// The float matrix [out][in] W represents (the same as the ggml_weights it was repacked from).
inline matrix<float> dequantize(const ggml_a8_weights& w) {
    matrix<float> out(w.rows(), w.cols(), uninitialized);
    for (index_t r = 0; r < w.rows(); ++r) w.decode_row(r, out.row(r).data());
    return out;
}

/// The weights policy of GGUF models run with int8 activations (kite::model::read_gguf, then
/// kite::model::convert_weights<ggml_a8_weights>); from float weights it makes Q8_0 and repacks.
struct ggml_blocks_a8 {
    using format = ggml_a8_weights;
    static constexpr const char* name = "ggml_blocks_a8";
    format quantize(matrix_view<const float> w) const { return format(ggml_blocks{}.quantize(w)); }
};

static_assert(weight_format<ggml_a8_weights> && data_free_method<ggml_blocks_a8>);

}  // namespace kite::quant

KITE_GCC12_AVX512_UNINIT_END
