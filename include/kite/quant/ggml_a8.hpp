#pragma once
/// @file kite/quant/ggml_a8.hpp
/// ggml_a8_weights: Q4_0, Q4_1 and Q8_0 weights repacked losslessly at load for integer dot
/// products with activations rounded to int8 — what llama.cpp does for these formats — through
/// AVX-512 VNNI (vpdpbusd: 64 multiply-adds per instruction) and, for batches, AMX tiles. An
/// opt-in speed / precision trade: the float-activation formats (ggml_weights as stored, and
/// ggml_panel_weights on these same panels, the default of model::with_gguf_decoder) match
/// transformers to ~1e-4; on SmolLM2-135M this format's logits are within
/// about 2 of transformers' and its argmax agrees at 96-97% of positions
/// (tests/model/test_gguf_smollm2.cpp measures both).
///
///   auto w = kite::quant::ggml_a8_weights(float_path_weights);     // repack (same values)
///   kite::quant::gemv(w, x, y);                                      // x rounded to int8 per 32
///
/// Activations: each block of 32 values of x is rounded to int8 with its own scale
/// dx = max|x| / 127 (round half to even). Per (row, token) and block b the products of the
/// unsigned weight codes u with the int8 activations are summed exactly in int32, the codes'
/// offset is taken off exactly (Q4_0: u = q + 8, minus 8 sum_i qx_i; Q8_0: u = q + 128, minus
/// 128 sum_i qx_i), and the row's value is accumulated block by block, in order, from zero:
///   acc = fma(isum_b dx_b, d_b, acc)        (then Q4_1: acc = fma(m_b, sx_b, acc), sx_b = dx_b sum_i qx_i)
/// with isum_b dx_b one float multiply. Every kernel and batch runs exactly this sequence per
/// (row, token), so results do not depend on the batch, the thread count or the kernel (batch
/// invariance). F32, F16 and BF16 rows keep float activations (ggml_weights' kernel).
///
/// Repacked layout: rows in panels of 16 (the last one padded with zero rows), each panel one
/// contiguous stretch of memory — a product reads the weights as a single sequential stream
/// (Zen 4 streams one sequence at the DRAM limit given a prefetch far ahead into L2, but follows
/// several interleaved streams poorly). A panel holds its blocks in order, each a unit of
/// - codes: the 8 quads (elements 4 q .. 4 q + 3) of the 16 rows' block, quad q of row i at byte
///   4 i of a 64-byte line — one vpdpbusd per quad, with the token's 4 activation bytes broadcast,
///   adds 4 products into each row's lane, so a block's 8 quads give all 16 rows' exact sums with
///   no horizontal reduction; and the lines are AMX's B operand as they stand (16 columns of
///   dwords). Q8_0: 8 lines of bytes q + 128; Q4: 4 lines, line j holding quad j in its low and
///   quad j + 4 in its high nibbles (ggml's own bytes 4 j .. 4 j + 3 of each row);
/// - the 16 rows' fp16 scales d (then Q4_1's offsets m), as the file stored them.
/// A unit is 288 (Q4_0), 320 (Q4_1) or 544 (Q8_0) bytes: the file's bytes, nothing added.
///
/// Kernels (AVX-512 F/BW/VNNI and F16C; elsewhere a portable twin with the same arithmetic):
/// up to 8 tokens at a time share each block's unpacked codes; batches of a8_amx_min_tokens
/// tokens or more run on AMX tiles where kite::cpu::amx_int8_active() (Intel Sapphire Rapids
/// and later, the OS granting the tile state): per 16 tokens and block one tdpbsud (int8
/// activations as A, the unit's lines as B) gives the 16 x 16 exact sums, and the float
/// epilogue is the VNNI kernels' — the same bits (tests/quant/test_ggml.cpp compares them).
/// dequantize() and decode_row() give exactly ggml's values.
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
    static constexpr index_t panel_rows = 16;  // rows per contiguous panel

    struct segment {
        ggml::type type = ggml::type::f32;
        index_t rows = 0;
        index_t blocks = 0;            // blocks of 32 per row
        std::size_t code_bytes = 0;    // per unit (one block of a panel): 256 (Q4) or 512 (Q8_0)
        std::size_t unit_bytes = 0;    // codes, d [16] and Q4_1's m [16]
        std::size_t panel_bytes = 0;   // blocks * unit_bytes
        aligned_buffer<std::uint8_t> data;  // [ceil(rows / 16)][blocks][unit_bytes]
        ggml_weights plain;                 // float-type rows, or empty
        index_t panels() const noexcept { return (rows + panel_rows - 1) / panel_rows; }
        const std::uint8_t* unit(index_t p, index_t b) const noexcept {
            return data.data() + static_cast<std::size_t>(p) * panel_bytes + static_cast<std::size_t>(b) * unit_bytes;
        }
    };

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
        return i >= 16 ? byte >> 4 : byte & 15;
    }
    /// The offset in s.data of the byte holding element i of block b of row r (Q4: the byte whose
    /// nibble it is).
    static std::size_t code_offset(const segment& s, index_t r, index_t b, index_t i) noexcept {
        const index_t quad = i / 4, line = s.type == ggml::type::q8_0 ? quad : quad % 4;
        return static_cast<std::size_t>(r / panel_rows) * s.panel_bytes + static_cast<std::size_t>(b) * s.unit_bytes +
               static_cast<std::size_t>(64 * line + 4 * (r % panel_rows) + i % 4);
    }
    /// The offset in s.data of the fp16 scale d (m: Q4_1's offset m) of block b of row r.
    static std::size_t scale_offset(const segment& s, index_t r, index_t b, bool m) noexcept {
        return static_cast<std::size_t>(r / panel_rows) * s.panel_bytes + static_cast<std::size_t>(b) * s.unit_bytes +
               s.code_bytes + (m ? 32 : 0) + static_cast<std::size_t>(2 * (r % panel_rows));
    }
    /// The fp16 bits of that scale.
    static std::uint16_t scale(const segment& s, index_t r, index_t b, bool m) noexcept {
        std::uint16_t h;
        std::memcpy(&h, s.data.data() + scale_offset(s, r, b, m), 2);
        return h;
    }

private:
    static ggml_weights slice(const ggml_weights& w, const ggml_weights::segment& s) {
        return ggml_weights(s.type, std::span<const std::byte>(s.data, s.rows * s.row_bytes), s.rows, w.cols(),
                            std::shared_ptr<const void>(std::make_shared<ggml_weights>(w)));
    }

    void repack(const ggml_weights::segment& s, segment& o) {
        const bool q8 = s.type == ggml::type::q8_0, q41 = s.type == ggml::type::q4_1;
        o.blocks = cols_ / 32;
        o.code_bytes = q8 ? 512 : 256;
        o.unit_bytes = o.code_bytes + (q41 ? 64 : 32);
        o.panel_bytes = static_cast<std::size_t>(o.blocks) * o.unit_bytes;
        // Zero-filled: padded rows multiply by code 0 and scale 0 (their sums are never stored).
        o.data = aligned_buffer<std::uint8_t>(static_cast<std::size_t>(o.panels()) * o.panel_bytes + 64);
        std::uint8_t* out = o.data.data();
        const std::size_t bb = ggml::info(s.type).block_bytes;
        const std::size_t qoff = q41 ? 4 : 2;
        for (index_t r = 0; r < s.rows; ++r) {
            const auto* src = reinterpret_cast<const std::uint8_t*>(s.data) + r * s.row_bytes;
            for (index_t b = 0; b < o.blocks; ++b) {
                const std::uint8_t* blk = src + b * bb;
                std::memcpy(out + scale_offset(o, r, b, false), blk, 2);
                if (q41) std::memcpy(out + scale_offset(o, r, b, true), blk + 2, 2);
                if (q8) {
                    for (index_t i = 0; i < 32; ++i)
                        out[code_offset(o, r, b, i)] = static_cast<std::uint8_t>(static_cast<std::int8_t>(blk[2 + i]) + 128);
                } else {  // ggml's byte j: element j (low nibble) and j + 16 (high): the same byte here
                    for (index_t j = 0; j < 16; ++j) out[code_offset(o, r, b, j)] = blk[qoff + j];
                }
            }
        }
    }

    index_t rows_ = 0, cols_ = 0;
    std::vector<std::shared_ptr<const segment>> segs_;
};

namespace detail {

/// Every token's activations rounded to int8, once per call: token t's codes at q + t ldq
/// (blocks in order, 32 bytes each), and per block dx (scale), sx = dx sum_i qx_i (Q4_1) and
/// the codes' offsets 8 sum_i qx_i (Q4_0) and 128 sum_i qx_i (Q8_0), at t lds + b for the VNNI
/// kernels, or (the AMX kernel's layout, the others null) at b ldt + t in dxt .. off8t.
struct a8_acts {
    const std::int8_t* q = nullptr;
    const float* dx = nullptr;
    const float* sx = nullptr;
    const std::int32_t* off4 = nullptr;
    const std::int32_t* off8 = nullptr;
    index_t ldq = 0, lds = 0;
    // The AMX kernel's layout of dx, sx, off4 and off8, by block: [blocks][ldt], token t at t
    // (ldt: the tokens padded to a multiple of 16, the padding zero; null below a8_amx_min_tokens).
    const float* dxt = nullptr;
    const float* sxt = nullptr;
    const std::int32_t* off4t = nullptr;
    const std::int32_t* off8t = nullptr;
    index_t ldt = 0;
};

/// The offsets of type T (Q4_0: off4, Q8_0: off8; Q4_1 has none).
template <ggml::type T>
inline const std::int32_t* a8_offsets(const a8_acts& a) noexcept {
    return T == ggml::type::q8_0 ? a.off8 : a.off4;
}

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

/// Rounds blocks [b0, b1) of token x into a8_acts' layout: codes at q + 32 b, and dx, sx, off4,
/// off8 of block b at [b stride] (stride 1: the VNNI kernels' layout by token; the padded token
/// count: the AMX kernel's by block).
inline void a8_quantize(const float* x, index_t b0, index_t b1, std::int8_t* q, float* dx, float* sx,
                        std::int32_t* off4, std::int32_t* off8, index_t stride = 1) noexcept {
    for (index_t b = b0; b < b1; ++b) {
        float scale;
        std::int32_t isum;
        a8_round_block(x + 32 * b, q + 32 * b, scale, isum);
        const index_t at = b * stride;
        dx[at] = scale;
        sx[at] = scale * static_cast<float>(isum);
        off4[at] = 8 * isum;
        off8[at] = 128 * isum;
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

#if KITE_GGML_AVX512
/// The panels of rows [r0, r1) of segment s (segment-relative), tokens [0, ntok) in groups of at
/// most MaxNT: kernel(p, t0, nt, out, prefetcher) computes panel p for tokens t0 .. t0 + nt - 1
/// into out[0, nt) (lane i: row 16 p + i), and the rows in range are stored at y[t ldy + r]. The
/// first group of a panel streams it through the prefetcher; later groups read it from cache
/// (the prefetcher argument is null). The int8 and the float panel kernels share this walk.
template <int MaxNT, class Kernel>
KITE_FORCE_INLINE void a8_walk_panels(const ggml_a8_weights::segment& s, index_t r0, index_t r1, index_t ntok, float* y,
                                      index_t ldy, Kernel&& kernel) noexcept {
    constexpr index_t P = ggml_a8_weights::panel_rows;
    a8_prefetcher pf(s, static_cast<std::size_t>(r0 / P) * s.panel_bytes, s.unit_bytes);
    for (index_t p = r0 / P; p * P < r1; ++p) {
        const index_t lo = std::max(r0, p * P) - p * P, hi = std::min(r1, p * P + P) - p * P;
        const auto rows = static_cast<__mmask16>(((1u << hi) - 1u) & ~((1u << lo) - 1u));
        for (index_t t0 = 0; t0 < ntok; t0 += MaxNT) {
            const int nt = static_cast<int>(std::min<index_t>(MaxNT, ntok - t0));
            __m512 out[MaxNT];
            kernel(p, t0, nt, out, t0 == 0 ? &pf : nullptr);
            for (int t = 0; t < nt; ++t) _mm512_mask_storeu_ps(y + (t0 + t) * ldy + p * P, rows, out[t]);
        }
    }
}
#endif

#if KITE_GGML_A8_VNNI
KITE_FORCE_INLINE std::int32_t a8_load32(const std::int8_t* p) noexcept {
    std::int32_t v;
    std::memcpy(&v, p, 4);
    return v;
}

/// One unit's codes as 8 vectors, w[q] = quad q of the 16 rows (bytes 4 i .. 4 i + 3: row i).
template <ggml::type T>
KITE_FORCE_INLINE void a8_unpack(const std::uint8_t* u, __m512i* w) noexcept {
    if constexpr (T == ggml::type::q8_0) {
#pragma GCC unroll 8
        for (int q = 0; q < 8; ++q) w[q] = _mm512_loadu_si512(u + 64 * q);
    } else {
        const __m512i lo = _mm512_set1_epi8(15);
#pragma GCC unroll 4
        for (int j = 0; j < 4; ++j) {
            const __m512i raw = _mm512_loadu_si512(u + 64 * j);
            w[j] = _mm512_and_si512(raw, lo);
            w[j + 4] = _mm512_and_si512(_mm512_srli_epi16(raw, 4), lo);
        }
    }
}

/// A unit's 16 fp16 scales d as floats (Q4_1: m, its offsets, too; otherwise m = d, unused).
template <ggml::type T>
KITE_FORCE_INLINE void a8_scales(const std::uint8_t* u, std::size_t code_bytes, __m512& d16, __m512& m16) noexcept {
    d16 = _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(u + code_bytes)));
    m16 = d16;
    if constexpr (T == ggml::type::q4_1)
        m16 = _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(u + code_bytes + 32)));
}

/// One block's terms for one token, its 16 rows' exact sums in s: the file comment's operations,
/// with the token's values for the block at dx [i], sx [i] and off [i] (the VNNI kernels index
/// a's arrays by token and block, the AMX kernel its arrays by block and token: one definition
/// of the arithmetic, so both give the same bits).
template <ggml::type T>
KITE_FORCE_INLINE __m512 a8_term_at(__m512i s, __m512 d16, [[maybe_unused]] __m512 m16, const float* dx,
                                    [[maybe_unused]] const float* sx, [[maybe_unused]] const std::int32_t* off,
                                    index_t i, __m512 acc) noexcept {
    if constexpr (T != ggml::type::q4_1) s = _mm512_sub_epi32(s, _mm512_set1_epi32(off[i]));
    acc = _mm512_fmadd_ps(_mm512_mul_ps(_mm512_cvtepi32_ps(s), _mm512_set1_ps(dx[i])), d16, acc);
    if constexpr (T == ggml::type::q4_1) acc = _mm512_fmadd_ps(m16, _mm512_set1_ps(sx[i]), acc);
    return acc;
}

/// Block b's terms for token t of a.
template <ggml::type T>
KITE_FORCE_INLINE __m512 a8_term(__m512i s, __m512 d16, __m512 m16, const a8_acts& a, index_t t, index_t b,
                                 __m512 acc) noexcept {
    return a8_term_at<T>(s, d16, m16, a.dx, a.sx, a8_offsets<T>(a), t * a.lds + b, acc);
}

/// The 16 rows of panel p for tokens t0 .. t0 + NT - 1: out[t] (lane i: row 16 p + i). Each
/// block's codes are unpacked once for the NT tokens.
template <ggml::type T, int NT>
KITE_FORCE_INLINE void a8_panel(const ggml_a8_weights::segment& s, index_t p, const a8_acts& a, index_t t0,
                                __m512* out, a8_prefetcher* pf) noexcept {
    __m512 acc[NT];
#pragma GCC unroll 8
    for (int t = 0; t < NT; ++t) acc[t] = _mm512_setzero_ps();
    const std::uint8_t* u = s.unit(p, 0);
    const std::size_t pos = static_cast<std::size_t>(p) * s.panel_bytes;
    for (index_t b = 0; b < s.blocks; ++b, u += s.unit_bytes) {
        if (pf) pf->at(pos + static_cast<std::size_t>(b) * s.unit_bytes);
        __m512i w[8];
        a8_unpack<T>(u, w);
        __m512 d16, m16;
        a8_scales<T>(u, s.code_bytes, d16, m16);
#pragma GCC unroll 8
        for (int t = 0; t < NT; ++t) {
            const std::int8_t* x = a.q + (t0 + t) * a.ldq + 32 * b;
            __m512i sum;
            if constexpr (NT >= 4) {  // one chain per token: the tokens' chains overlap
                sum = _mm512_dpbusd_epi32(_mm512_setzero_si512(), w[0], _mm512_set1_epi32(a8_load32(x)));
#pragma GCC unroll 7
                for (int q = 1; q < 8; ++q) sum = _mm512_dpbusd_epi32(sum, w[q], _mm512_set1_epi32(a8_load32(x + 4 * q)));
            } else {  // two chains (integer sums are exact in any order)
                __m512i s0 = _mm512_dpbusd_epi32(_mm512_setzero_si512(), w[0], _mm512_set1_epi32(a8_load32(x)));
                __m512i s1 = _mm512_dpbusd_epi32(_mm512_setzero_si512(), w[1], _mm512_set1_epi32(a8_load32(x + 4)));
#pragma GCC unroll 3
                for (int q = 2; q < 8; q += 2) {
                    s0 = _mm512_dpbusd_epi32(s0, w[q], _mm512_set1_epi32(a8_load32(x + 4 * q)));
                    s1 = _mm512_dpbusd_epi32(s1, w[q + 1], _mm512_set1_epi32(a8_load32(x + 4 * q + 4)));
                }
                sum = _mm512_add_epi32(s0, s1);
            }
            acc[t] = a8_term<T>(sum, d16, m16, a, t0 + t, b, acc[t]);
        }
    }
#pragma GCC unroll 8
    for (int t = 0; t < NT; ++t) out[t] = acc[t];
}
#endif

/// Rows [r0, r1) of one segment (segment-relative) for tokens [0, ntok): y[t ldy + r].
template <ggml::type T>
void a8_rows_typed(const ggml_a8_weights::segment& s, index_t r0, index_t r1, const a8_acts& a, index_t ntok, float* y,
                   index_t ldy) noexcept {
#if KITE_GGML_A8_VNNI
    a8_walk_panels<ggml_max_nt>(s, r0, r1, ntok, y, ldy, [&](index_t p, index_t t0, int nt, __m512* out, a8_prefetcher* f) {
        switch (nt) {
            case 8: return a8_panel<T, 8>(s, p, a, t0, out, f);
            case 7: return a8_panel<T, 7>(s, p, a, t0, out, f);
            case 6: return a8_panel<T, 6>(s, p, a, t0, out, f);
            case 5: return a8_panel<T, 5>(s, p, a, t0, out, f);
            case 4: return a8_panel<T, 4>(s, p, a, t0, out, f);
            case 3: return a8_panel<T, 3>(s, p, a, t0, out, f);
            case 2: return a8_panel<T, 2>(s, p, a, t0, out, f);
            default: return a8_panel<T, 1>(s, p, a, t0, out, f);
        }
    });
#else
    // The portable twin: the same integer sums and the same float operations in the same order.
    for (index_t r = r0; r < r1; ++r)
        for (index_t t = 0; t < ntok; ++t) {
            float acc = 0.0f;
            for (index_t b = 0; b < s.blocks; ++b) {
                const std::int8_t* x = a.q + t * a.ldq + 32 * b;
                std::int32_t isum = 0;
                for (index_t i = 0; i < 32; ++i) isum += ggml_a8_weights::code(s, r, b, i) * x[i];
                const index_t at = t * a.lds + b;
                if constexpr (T != ggml::type::q4_1) isum -= a8_offsets<T>(a)[at];
                const float f = static_cast<float>(isum) * a.dx[at];
                acc = std::fma(f, kite::detail::fp16_bits_to_float(ggml_a8_weights::scale(s, r, b, false)), acc);
                if constexpr (T == ggml::type::q4_1)
                    acc = std::fma(kite::detail::fp16_bits_to_float(ggml_a8_weights::scale(s, r, b, true)), a.sx[at], acc);
            }
            y[t * ldy + r] = acc;
        }
#endif
}

inline void a8_rows(const ggml_a8_weights::segment& s, index_t r0, index_t r1, const a8_acts& a, index_t ntok, float* y,
                    index_t ldy) noexcept {
    switch (s.type) {
        case ggml::type::q4_1: a8_rows_typed<ggml::type::q4_1>(s, r0, r1, a, ntok, y, ldy); break;
        case ggml::type::q4_0: a8_rows_typed<ggml::type::q4_0>(s, r0, r1, a, ntok, y, ldy); break;
        default: a8_rows_typed<ggml::type::q8_0>(s, r0, r1, a, ntok, y, ldy); break;
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

/// Tokens from which a product takes the AMX kernel (when active); below it the VNNI kernels
/// are as fast or faster (bench/README, "GGUF int8 kernels on 16-row panels").
inline constexpr index_t a8_amx_min_tokens = 16;
/// Tokens from which a product rounds its activations on all its threads (below, the calling
/// thread rounds them alone before the product: a barrier would cost more).
inline constexpr index_t a8_parallel_round_tokens = 8;
/// Blocks whose tile products the AMX kernel runs before their float terms (a multiple of 4;
/// their sums, 1 KiB a block, stay in L1).
inline constexpr index_t a8_amx_burst = 16;

#if KITE_GGML_A8_AMX
/// Rows [r0, r1) of one segment for tokens [0, ntok) on AMX tiles (ntok rounded up to 16 in a's
/// buffers: the padded tokens are zero). Per panel, bursts of a8_amx_burst blocks: per 16 tokens
/// and 4 blocks, four tdpbsud give the blocks' 16 x 16 exact sums, and each block's terms are
/// applied by a8_term_at, in block order. The weights stream in through a8_prefetcher, its
/// prefetches issued among the float terms (once the tiles ran in bursts, the panels' loads were
/// the kernel's hottest instructions in a 16-stream decode step; bench/README, "Serving").
/// The AMX kernel's tiles, loaded on the calling thread: 0 .. 3 sums (16 tokens x 16 rows of
/// int32), 4 and 5 activations (16 tokens x one block), 6 and 7 codes (8 quads x 16 rows x 4).
inline void a8_amx_load_tiles() noexcept {
    kite::cpu::amx_config cfg;
    for (int i = 0; i < 4; ++i) cfg.set(i, 16, 64);
    cfg.set(4, 16, 32);
    cfg.set(5, 16, 32);
    cfg.set(6, 8, 64);
    cfg.set(7, 8, 64);
    cfg.load();
}

template <ggml::type T>
void a8_rows_amx(const ggml_a8_weights::segment& s, index_t r0, index_t r1, const a8_acts& a, index_t ntok, float* y,
                 index_t ldy) noexcept {
    constexpr index_t P = ggml_a8_weights::panel_rows, NB = a8_amx_burst;
    constexpr bool q8 = T == ggml::type::q8_0;
    const index_t blocks = s.blocks, groups = (ntok + 15) / 16;
    std::uint8_t* wb = q8 ? nullptr : scratch<std::uint8_t, 17>(static_cast<std::size_t>(NB) * 512 + 64);
    auto* cb = scratch<std::int32_t, 19>(256 * static_cast<std::size_t>(NB));
    float* accs = scratch<float, 3>(256 * static_cast<std::size_t>(groups));  // token groups' sums between bursts
    a8_amx_load_tiles();
    const long lq = static_cast<long>(a.ldq);
    a8_prefetcher pf(s, static_cast<std::size_t>(r0 / P) * s.panel_bytes, s.unit_bytes);
    for (index_t p = r0 / P; p * P < r1; ++p) {
        const index_t lo = std::max(r0, p * P) - p * P, hi = std::min(r1, p * P + P) - p * P;
        const auto rows = static_cast<__mmask16>(((1u << hi) - 1u) & ~((1u << lo) - 1u));
        // Bursts of up to NB blocks: the burst's codes unpacked once (Q8_0's units are B operands
        // as stored), then per 16 tokens the tile products of the whole burst (groups of 4
        // blocks on tiles 0 .. 3, block j's sums stored at cb + 256 j), then its float terms in
        // block order. Alternating tile and vector instructions costs far more than either: on an
        // Intel Xeon (model 167) one tile store between blocks of vector code cost ~100 cycles,
        // so a burst switches twice. The burst's codes, sums and activations stay in L1.
        for (index_t b1 = 0; b1 < blocks; b1 += NB) {
            const index_t nb = std::min(NB, blocks - b1);
            if constexpr (!q8)
                for (index_t j = 0; j < nb; ++j) {
                    __m512i w[8];
                    a8_unpack<T>(s.unit(p, b1 + j), w);
#pragma GCC unroll 8
                    for (int q = 0; q < 8; ++q) _mm512_storeu_si512(wb + 512 * j + 64 * q, w[q]);
                }
            const auto codes = [&](index_t j) -> const std::uint8_t* {
                return q8 ? s.unit(p, b1 + j) : wb + 512 * static_cast<std::size_t>(j);
            };
            for (index_t g = 0; g < groups; ++g) {
                const index_t t0 = 16 * g;
                const std::int8_t* xq = a.q + t0 * a.ldq + 32 * b1;
                for (index_t j0 = 0; j0 < nb; j0 += 4) {
                    const index_t n = std::min<index_t>(4, nb - j0);
                    std::int32_t* c = cb + 256 * j0;
                    // Blocks j0 .. j0 + n - 1 of the burst into tiles 0 .. n - 1 (A, B alternating 4 / 6, 5 / 7).
#define KITE_A8_AMX_BLOCK(c, ta, tb) \
    do { \
        KITE_AMX_ZERO(c); \
        KITE_AMX_LOAD(ta, xq + 32 * (j0 + c), lq); \
        KITE_AMX_LOAD(tb, codes(j0 + c), 64); \
        KITE_AMX_DPBSUD(c, ta, tb); \
    } while (0)
                    KITE_A8_AMX_BLOCK(0, 4, 6);
                    if (n > 1) KITE_A8_AMX_BLOCK(1, 5, 7);
                    if (n > 2) KITE_A8_AMX_BLOCK(2, 4, 6);
                    if (n > 3) KITE_A8_AMX_BLOCK(3, 5, 7);
#undef KITE_A8_AMX_BLOCK
                    KITE_AMX_STORE(0, c, 64);
                    if (n > 1) KITE_AMX_STORE(1, c + 256, 64);
                    if (n > 2) KITE_AMX_STORE(2, c + 512, 64);
                    if (n > 3) KITE_AMX_STORE(3, c + 768, 64);
                }
                // The burst's float terms for the group's tokens, rounded up to 4, 8, 12 or 16
                // (padding tokens have zero activations and scales: their sums stay zero and are
                // never stored).
                const index_t tn = std::min<index_t>(16, ntok - t0);  // tokens stored
                const auto terms = [&]<int NT>(std::integral_constant<int, NT>) __attribute__((always_inline)) {
                    float* ga = accs + 256 * g;
                    __m512 acc[NT];
#pragma GCC unroll 16
                    for (int t = 0; t < NT; ++t) acc[t] = b1 == 0 ? _mm512_setzero_ps() : _mm512_load_ps(ga + 16 * t);
                    for (index_t j = 0; j < nb; ++j) {
                        const index_t b = b1 + j;
                        if (g == 0) pf.at(static_cast<std::size_t>(p) * s.panel_bytes + static_cast<std::size_t>(b) * s.unit_bytes);
                        __m512 d16, m16;
                        a8_scales<T>(s.unit(p, b), s.code_bytes, d16, m16);
                        const std::size_t at = static_cast<std::size_t>(b) * a.ldt + t0;
                        const float* dxb = a.dxt + at;
                        const float* sxb = a.sxt + at;
                        const std::int32_t* offb = (q8 ? a.off8t : a.off4t) + at;
#pragma GCC unroll 16
                        for (int t = 0; t < NT; ++t)
                            acc[t] = a8_term_at<T>(_mm512_loadu_si512(cb + 256 * j + 16 * t), d16, m16, dxb, sxb, offb, t, acc[t]);
                    }
                    if (b1 + nb < blocks) {
#pragma GCC unroll 16
                        for (int t = 0; t < NT; ++t) _mm512_store_ps(ga + 16 * t, acc[t]);
                    } else {
                        for (index_t t = 0; t < tn; ++t) _mm512_mask_storeu_ps(y + (t0 + t) * ldy + p * P, rows, acc[t]);
                    }
                };
                if (tn > 12) terms(std::integral_constant<int, 16>{});
                else if (tn > 8) terms(std::integral_constant<int, 12>{});
                else if (tn > 4) terms(std::integral_constant<int, 8>{});
                else terms(std::integral_constant<int, 4>{});
            }
        }
    }
    kite::cpu::amx_release();
}

inline void a8_rows_amx(const ggml_a8_weights::segment& s, index_t r0, index_t r1, const a8_acts& a, index_t ntok, float* y,
                        index_t ldy) noexcept {
    switch (s.type) {
        case ggml::type::q4_1: a8_rows_amx<ggml::type::q4_1>(s, r0, r1, a, ntok, y, ldy); break;
        case ggml::type::q4_0: a8_rows_amx<ggml::type::q4_0>(s, r0, r1, a, ntok, y, ldy); break;
        default: a8_rows_amx<ggml::type::q8_0>(s, r0, r1, a, ntok, y, ldy); break;
    }
}
#endif  // KITE_GGML_A8_AMX

/// The parallel product over the panels of w that a8_gemm and ggml_panel_weights' gemm share:
/// `prepare(i0, i1, thread)` over `items` (the activations' per-token work) first — on every
/// thread before a barrier when `parallel_prepare`, else on the calling thread — then each
/// thread's chunks of 16 rows, segment by segment: float segments through ggml_weights' kernel,
/// the others through rows(segment, a, e, y) (segment-relative rows [a, e), y at the segment's
/// column 0).
template <class Prepare, class Rows>
void a8_product(const ggml_a8_weights& w, matrix_view<const float> X, float* Y, index_t ldy, bool parallel_prepare,
                std::size_t items, Prepare&& prepare, int threads, Rows&& rows) {
    constexpr index_t chunk = ggml_a8_weights::panel_rows;
    const index_t m = w.rows();
    const auto product = [&](std::size_t c0, std::size_t c1, int) {
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
    };
    const std::size_t panels = (m + chunk - 1) / chunk;
    if (parallel_prepare) {
        parallel_chunks2(items, prepare, panels, product, threads);
    } else {
        prepare(std::size_t{0}, items, 0);
        parallel_chunks(panels, product, threads);
    }
}

inline void a8_gemm(const ggml_a8_weights& w, matrix_view<const float> X, float* Y, index_t ldy, int threads) {
    const index_t T = X.rows(), k = w.cols();
    if (ggml_trivial_product(T, w.rows(), k, Y, ldy)) return;
    const index_t blocks = k / 32;
#if KITE_GGML_A8_AMX
    const bool amx = T >= a8_amx_min_tokens && kite::cpu::amx_int8_active();
#else
    constexpr bool amx = false;
#endif
    // Every token's int8 activations, once per call: for the VNNI kernels by token (a8_acts' dx ..
    // off8), for the tiles by block (dxt .. off8t; tokens padded with zeros to a multiple of 16).
    const index_t Tp = amx ? (T + 15) / 16 * 16 : T;
    const index_t ldq = (k + 63) / 64 * 64, lds = blocks;
    std::int8_t* q = scratch<std::int8_t, 12>(static_cast<std::size_t>(Tp * ldq) + 64);
    float* fs = scratch<float, 13>(2 * static_cast<std::size_t>(Tp * lds) + 16);
    std::int32_t* os = scratch<std::int32_t, 16>(2 * static_cast<std::size_t>(Tp * lds) + 16);
    a8_acts acts{.q = q, .ldq = ldq, .lds = lds};
    if (amx) {
        acts.dxt = fs;
        acts.sxt = fs + blocks * Tp;
        acts.off4t = os;
        acts.off8t = os + blocks * Tp;
        acts.ldt = Tp;
    } else {
        acts.dx = fs;
        acts.sx = fs + T * lds;
        acts.off4 = os;
        acts.off8 = os + T * lds;
    }
    // Rounding: items are tokens (VNNI) or blocks (AMX: each thread writes whole lines of the
    // by-block arrays). Small batches round on the calling thread before the product; from
    // a8_parallel_round_tokens tokens on, every thread rounds its share in the product's own
    // parallel region, before a barrier (parallel_chunks2).
    const auto round = [&](std::size_t i0, std::size_t i1, int) {
        if (!amx) {
            for (index_t t = i0; t < i1; ++t)
                a8_quantize(X.row(t).data(), 0, blocks, q + t * ldq, fs + t * lds, fs + (T + t) * lds, os + t * lds,
                            os + (T + t) * lds);
            return;
        }
        for (index_t t = 0; t < Tp; ++t) {
            float* dxt = fs + t;
            float* sxt = fs + blocks * Tp + t;
            std::int32_t* o4 = os + t;
            std::int32_t* o8 = os + blocks * Tp + t;
            if (t < T) {
                a8_quantize(X.row(t).data(), i0, i1, q + t * ldq, dxt, sxt, o4, o8, Tp);
                continue;
            }
            std::memset(q + t * ldq + 32 * i0, 0, 32 * (i1 - i0));  // padding tokens: zero codes and terms
            for (index_t b = i0; b < i1; ++b) {
                dxt[b * Tp] = 0.0f;
                sxt[b * Tp] = 0.0f;
                o4[b * Tp] = 0;
                o8[b * Tp] = 0;
            }
        }
    };
    const std::size_t round_items = amx ? blocks : T;
    a8_product(w, X, Y, ldy, T >= a8_parallel_round_tokens, round_items, round, threads,
               [&](const ggml_a8_weights::segment& s, index_t a, index_t e, float* y) {
#if KITE_GGML_A8_AMX
                   if (amx) return a8_rows_amx(s, a, e, acts, T, y, ldy);
#endif
                   a8_rows(s, a, e, acts, T, y, ldy);
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
    detail::ggml_check_gemv(w.rows(), w.cols(), x.size(), y.size());
    detail::a8_gemm(w, matrix_view<const float>(x.data(), 1, x.size()), y.data(), y.size(), threads);
}

/// Y [batch][out] = X [batch][in] W^T, each token's activations rounded to int8 (batch invariant).
inline void gemm(const ggml_a8_weights& w, matrix_view<const float> X, matrix_view<float> Y, int threads = 0) {
    detail::ggml_check_gemm(w.rows(), w.cols(), X, Y);
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
