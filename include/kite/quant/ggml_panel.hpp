#pragma once
/// @file kite/quant/ggml_panel.hpp
/// ggml_panel_weights: Q4_0, Q4_1 and Q8_0 weights in ggml_a8_weights' panels of 16 rows (the
/// same lossless repack, the same bytes), multiplied with float activations — the float path's
/// precision, faster than multiplying the blocks as stored. ggml_weights widens each row's block
/// to 32 floats and reduces them across lanes; here a vector lane is a row, so every weight is
/// one byte shuffle, one convert and one FMA with a broadcast activation, and there is no
/// reduction across lanes at all (SmolLM2's 3072 x 576 Q4_1 product, one thread, Intel Xeon:
/// 2.1-2.5x faster from cache, 1.4x with the weights from DRAM; decoding ~1.7-2x).
///
///   auto w = kite::quant::ggml_panel_weights(as_stored);     // repack (same values)
///   kite::quant::gemv(w, x, y);                               // float x, float y
///
/// Arithmetic (one definition for every kernel, batch and thread count): per (row, token),
/// blocks in order, from acc = 0. In block b, four chains c_0 .. c_3 start at zero; chain r takes
/// the block's elements i with i % 4 == r: for Q4 by quad j = 0 .. 3, c_r = fma(u_(4j+r), x_(4j+r),
/// c_r) then c_r = fma(u_(4j+16+r), x_(4j+16+r), c_r); for Q8_0 by quad j = 0 .. 7, c_r =
/// fma(u_(4j+r), x_(4j+r), c_r). u are the stored unsigned codes as floats (exact). Then
///   s = (c_0 + c_1) + (c_2 + c_3);  acc = fma(s, d_b, acc);  acc = fma(o_b, sx_b, acc)
/// with the block's fp16 scale d_b and offset o_b = m_b (Q4_1), -8 d_b (Q4_0) or -128 d_b
/// (Q8_0), both exact in float, and sx_b the sum of the token's 32 values of the block in a
/// fixed tree: t_i = x_i + x_(i+16) (i < 16), then t_i + t_(i+8) (i < 8), then + t_(i+4),
/// (t_0 + t_2) + (t_1 + t_3). The AVX-512 kernel (F, BW, F16C) runs it with a row per lane; the
/// portable twin runs the same operations one row at a time and gives the same bits
/// (tests/quant/test_ggml_panel.cpp). F32 / F16 / BF16 segments use ggml_weights' kernel.
/// Oracle: dequantize-then-multiply in double (reference::gemm over dequantize()).
///
/// Thread safety: immutable after construction; shares its storage with ggml_a8_weights copies.

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <span>

#include "kite/core/config.hpp"
#include "kite/core/diagnostics.hpp"
#include "kite/core/error.hpp"
#include "kite/core/matrix.hpp"
#include "kite/core/parallel.hpp"
#include "kite/quant/concepts.hpp"
#include "kite/quant/detail/scratch.hpp"
#include "kite/quant/ggml.hpp"
#include "kite/quant/ggml_a8.hpp"

KITE_GCC12_AVX512_UNINIT_BEGIN  // see kite/core/diagnostics.hpp

namespace kite::quant {

/// ggml blocks repacked in panels of 16 rows, multiplied with float activations (file comment).
class ggml_panel_weights {
public:
    ggml_panel_weights() = default;
    /// Repacks `w` (values unchanged).
    explicit ggml_panel_weights(const ggml_weights& w) : p_(w) {}
    /// The panels of `w` (shared, not copied).
    explicit ggml_panel_weights(const ggml_a8_weights& w) : p_(w) {}

    /// A copy sharing the (immutable) storage.
    ggml_panel_weights clone() const { return *this; }

    index_t rows() const noexcept { return p_.rows(); }
    index_t cols() const noexcept { return p_.cols(); }
    std::size_t bytes() const noexcept { return p_.bytes(); }
    /// The repacked storage (ggml_a8_weights' layout).
    const ggml_a8_weights& panels() const noexcept { return p_; }
    /// See ggml_a8_weights::prefetch.
    void prefetch() const noexcept { p_.prefetch(); }
    /// out [cols] = row r, exactly ggml's values.
    void decode_row(index_t r, float* out) const { p_.decode_row(r, out); }
    float value(index_t r, index_t c) const { return p_.value(r, c); }

private:
    ggml_a8_weights p_;
};

namespace detail {

/// The file comment's sx_b: the sum of x [0, 32) in a fixed tree (the same bits on every path).
KITE_FORCE_INLINE float panel_block_sum(const float* x) noexcept {
#if KITE_GGML_AVX512
    const __m512 t16 = _mm512_add_ps(_mm512_loadu_ps(x), _mm512_loadu_ps(x + 16));
    const __m256 t8 = _mm256_add_ps(_mm512_castps512_ps256(t16),  // (AVX-512 F: no DQ extract)
                                    _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(t16), 1)));
    const __m128 t4 = _mm_add_ps(_mm256_castps256_ps128(t8), _mm256_extractf128_ps(t8, 1));
    const __m128 t2 = _mm_add_ps(t4, _mm_movehl_ps(t4, t4));  // (t0 + t2, t1 + t3)
    return _mm_cvtss_f32(_mm_add_ss(t2, _mm_shuffle_ps(t2, t2, 1)));
#else
    float t[16];
    for (int i = 0; i < 16; ++i) t[i] = x[i] + x[i + 16];
    for (int i = 0; i < 8; ++i) t[i] = t[i] + t[i + 8];
    for (int i = 0; i < 4; ++i) t[i] = t[i] + t[i + 4];
    return (t[0] + t[2]) + (t[1] + t[3]);
#endif
}

/// The block's offset o_b (file comment) from its fp16 scale d and Q4_1's fp16 offset m.
template <ggml::type T>
KITE_FORCE_INLINE float panel_offset(float d, float m) noexcept {
    if constexpr (T == ggml::type::q4_1) return m;
    else if constexpr (T == ggml::type::q4_0) return -8.0f * d;
    else return -128.0f * d;
}

/// Rows [r0, r1) of segment s for tokens [0, T), one row at a time: the portable twin of the
/// vector kernel (the same operations in the same order). x: token t at x + t ldx; sx: its
/// block sums at sx + t blocks.
template <ggml::type T>
void panel_rows_portable(const ggml_a8_weights::segment& s, index_t r0, index_t r1, const float* x, index_t ldx,
                         const float* sx, index_t T_, float* y, index_t ldy) noexcept {
    constexpr bool q8 = T == ggml::type::q8_0;
    constexpr int quads = q8 ? 8 : 4;
    for (index_t r = r0; r < r1; ++r)
        for (index_t t = 0; t < T_; ++t) {
            const float* xt = x + t * ldx;
            float acc = 0.0f;
            for (index_t b = 0; b < s.blocks; ++b) {
                const float* xb = xt + 32 * b;
                float c[4] = {0.0f, 0.0f, 0.0f, 0.0f};
                for (int j = 0; j < quads; ++j)
                    for (int q = 0; q < 4; ++q) {
                        const index_t i = 4 * j + q;
                        c[q] = std::fma(static_cast<float>(ggml_a8_weights::code(s, r, b, i)), xb[i], c[q]);
                        if constexpr (!q8)
                            c[q] = std::fma(static_cast<float>(ggml_a8_weights::code(s, r, b, i + 16)), xb[i + 16], c[q]);
                    }
                const float sv = (c[0] + c[1]) + (c[2] + c[3]);
                const float d = kite::detail::fp16_bits_to_float(ggml_a8_weights::scale(s, r, b, false));
                const float m = T == ggml::type::q4_1 ? kite::detail::fp16_bits_to_float(ggml_a8_weights::scale(s, r, b, true)) : 0.0f;
                acc = std::fma(sv, d, acc);
                acc = std::fma(panel_offset<T>(d, m), sx[t * s.blocks + b], acc);
            }
            y[t * ldy + r] = acc;
        }
}

#if KITE_GGML_AVX512
/// Tokens per pass of the vector kernel (each quad's codes are widened once for them; more
/// chains than this spill registers).
inline constexpr int panel_max_nt = 4;

/// The 16 rows of panel p for tokens t0 .. t0 + NT - 1 (lane i: row 16 p + i).
template <ggml::type T, int NT>
KITE_FORCE_INLINE void panel_kernel(const ggml_a8_weights::segment& s, index_t p, const float* x, index_t ldx,
                                    const float* sx, index_t t0, __m512* out, a8_prefetcher* pf) noexcept {
    constexpr bool q8 = T == ggml::type::q8_0;
    constexpr int quads = q8 ? 8 : 4;
    // Byte q of each dword to its low byte, the others zero (vpshufb indexes bytes within each
    // 128-bit lane: dword k of a lane starts at byte 4 k).
    const __m512i sh1 = _mm512_set4_epi32(static_cast<int>(0x8080800Du), static_cast<int>(0x80808009u),
                                          static_cast<int>(0x80808005u), static_cast<int>(0x80808001u)),
                  sh2 = _mm512_set4_epi32(static_cast<int>(0x8080800Eu), static_cast<int>(0x8080800Au),
                                          static_cast<int>(0x80808006u), static_cast<int>(0x80808002u));
    const __m512i lowbyte = _mm512_set1_epi32(0xFF), nib = _mm512_set1_epi8(15);
    __m512 acc[NT];
#pragma GCC unroll 8
    for (int t = 0; t < NT; ++t) acc[t] = _mm512_setzero_ps();
    const std::uint8_t* u = s.unit(p, 0);
    const std::size_t pos = static_cast<std::size_t>(p) * s.panel_bytes;
    for (index_t b = 0; b < s.blocks; ++b, u += s.unit_bytes) {
        if (pf) pf->at(pos + static_cast<std::size_t>(b) * s.unit_bytes);
        __m512 c[NT][4];
#pragma GCC unroll 8
        for (int t = 0; t < NT; ++t)
#pragma GCC unroll 4
            for (int q = 0; q < 4; ++q) c[t][q] = _mm512_setzero_ps();
        const auto widen = [&](__m512i v, __m512* w) {  // the dwords' four bytes as floats
            w[0] = _mm512_cvtepi32_ps(_mm512_and_si512(v, lowbyte));
            w[1] = _mm512_cvtepi32_ps(_mm512_shuffle_epi8(v, sh1));
            w[2] = _mm512_cvtepi32_ps(_mm512_shuffle_epi8(v, sh2));
            w[3] = _mm512_cvtepi32_ps(_mm512_srli_epi32(v, 24));
        };
#pragma GCC unroll 8
        for (int j = 0; j < quads; ++j) {
            const __m512i raw = _mm512_loadu_si512(u + 64 * j);
            __m512 lo[4], hi[4];
            if constexpr (q8) {
                widen(raw, lo);
            } else {
                widen(_mm512_and_si512(raw, nib), lo);
                widen(_mm512_and_si512(_mm512_srli_epi16(raw, 4), nib), hi);
            }
#pragma GCC unroll 8
            for (int t = 0; t < NT; ++t) {
                const float* xb = x + (t0 + t) * ldx + 32 * b + 4 * j;
#pragma GCC unroll 4
                for (int q = 0; q < 4; ++q) {
                    c[t][q] = _mm512_fmadd_ps(lo[q], _mm512_set1_ps(xb[q]), c[t][q]);
                    if constexpr (!q8) c[t][q] = _mm512_fmadd_ps(hi[q], _mm512_set1_ps(xb[16 + q]), c[t][q]);
                }
            }
        }
        const __m512 d16 = _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(u + s.code_bytes)));
        __m512 o16;
        if constexpr (T == ggml::type::q4_1)
            o16 = _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(u + s.code_bytes + 32)));
        else
            o16 = _mm512_mul_ps(d16, _mm512_set1_ps(q8 ? -128.0f : -8.0f));
#pragma GCC unroll 8
        for (int t = 0; t < NT; ++t) {
            const __m512 sv = _mm512_add_ps(_mm512_add_ps(c[t][0], c[t][1]), _mm512_add_ps(c[t][2], c[t][3]));
            acc[t] = _mm512_fmadd_ps(sv, d16, acc[t]);
            acc[t] = _mm512_fmadd_ps(o16, _mm512_set1_ps(sx[(t0 + t) * s.blocks + b]), acc[t]);
        }
    }
#pragma GCC unroll 8
    for (int t = 0; t < NT; ++t) out[t] = acc[t];
}
#endif

/// Rows [r0, r1) of one segment (segment-relative) for tokens [0, T): y[t ldy + r].
template <ggml::type T>
void panel_rows(const ggml_a8_weights::segment& s, index_t r0, index_t r1, const float* x, index_t ldx, const float* sx,
                index_t T_, float* y, index_t ldy) noexcept {
#if KITE_GGML_AVX512
    a8_walk_panels<panel_max_nt>(s, r0, r1, T_, y, ldy, [&](index_t p, index_t t0, int nt, __m512* out, a8_prefetcher* f) {
        switch (nt) {
            case 4: return panel_kernel<T, 4>(s, p, x, ldx, sx, t0, out, f);
            case 3: return panel_kernel<T, 3>(s, p, x, ldx, sx, t0, out, f);
            case 2: return panel_kernel<T, 2>(s, p, x, ldx, sx, t0, out, f);
            default: return panel_kernel<T, 1>(s, p, x, ldx, sx, t0, out, f);
        }
    });
#else
    panel_rows_portable<T>(s, r0, r1, x, ldx, sx, T_, y, ldy);
#endif
}

inline void panel_rows_any(const ggml_a8_weights::segment& s, index_t r0, index_t r1, const float* x, index_t ldx,
                           const float* sx, index_t T_, float* y, index_t ldy) noexcept {
    switch (s.type) {
        case ggml::type::q4_1: panel_rows<ggml::type::q4_1>(s, r0, r1, x, ldx, sx, T_, y, ldy); break;
        case ggml::type::q4_0: panel_rows<ggml::type::q4_0>(s, r0, r1, x, ldx, sx, T_, y, ldy); break;
        default: panel_rows<ggml::type::q8_0>(s, r0, r1, x, ldx, sx, T_, y, ldy); break;
    }
}

/// Tokens from which the block sums are computed on every thread (in the product's parallel
/// region) instead of on the calling thread first.
inline constexpr index_t panel_parallel_sum_tokens = 8;

inline void panel_gemm(const ggml_panel_weights& w, matrix_view<const float> X, float* Y, index_t ldy, int threads) {
    const index_t T = X.rows(), k = w.cols();
    if (ggml_trivial_product(T, w.rows(), k, Y, ldy)) return;
    const index_t blocks = k / 32;
    float* sx = scratch<float, 20>(static_cast<std::size_t>(T * blocks) + 16);
    const auto sums = [&](std::size_t t0, std::size_t t1, int) {
        for (index_t t = t0; t < t1; ++t)
            for (index_t b = 0; b < blocks; ++b) sx[t * blocks + b] = panel_block_sum(X.row(t).data() + 32 * b);
    };
    // The kernels read token t at X.data() + t X.stride().
    a8_product(w.panels(), X, Y, ldy, T >= panel_parallel_sum_tokens, T, sums, threads,
               [&](const ggml_a8_weights::segment& s, index_t a, index_t e, float* y) {
                   panel_rows_any(s, a, e, X.data(), X.stride(), sx, T, y, ldy);
               });
}

}  // namespace detail

/// y = W x with float activations (see the file comment).
inline void gemv(const ggml_panel_weights& w, std::span<const float> x, std::span<float> y, int threads = 0) {
    detail::ggml_check_gemv(w.rows(), w.cols(), x.size(), y.size());
    detail::panel_gemm(w, matrix_view<const float>(x.data(), 1, x.size()), y.data(), y.size(), threads);
}

/// Y [batch][out] = X [batch][in] W^T; each token's outputs equal its gemv (batch invariant).
inline void gemm(const ggml_panel_weights& w, matrix_view<const float> X, matrix_view<float> Y, int threads = 0) {
    detail::ggml_check_gemm(w.rows(), w.cols(), X, Y);
    detail::panel_gemm(w, X, Y.data(), Y.stride(), threads);
}

/// The float matrix [out][in] W represents (the same as the ggml_weights it was repacked from).
inline matrix<float> dequantize(const ggml_panel_weights& w) { return dequantize(w.panels()); }

/// The weights policy of GGUF models run with float activations on repacked panels
/// (kite::model::read_gguf, then kite::model::with_float_panels); from float weights it makes
/// Q8_0 and repacks.
struct ggml_blocks_panel {
    using format = ggml_panel_weights;
    static constexpr const char* name = "ggml_blocks_panel";
    format quantize(matrix_view<const float> w) const { return format(ggml_blocks{}.quantize(w)); }
};

static_assert(weight_format<ggml_panel_weights> && data_free_method<ggml_blocks_panel>);

}  // namespace kite::quant

KITE_GCC12_AVX512_UNINIT_END
