#pragma once
/// @file kite/quant/detail/decode.hpp
/// Dequantization of a run of columns of one row into floats: the building block of
/// dequantize(), of the portable GEMV and of the GEMM (which decodes tiles into L1 scratch).
/// Every path computes scale * float(q - z) with one rounding, so all paths produce identical
/// floats.

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <type_traits>

#include "kite/core/config.hpp"
#include "kite/core/diagnostics.hpp"
#include "kite/core/half.hpp"
#include "kite/quant/arch.hpp"
#include "kite/quant/format.hpp"

#if KITE_QUANT_AVX512 || defined(__F16C__)
#include <immintrin.h>
#endif

namespace kite::quant::detail {

/// out[i] = float(src[i]) for n fp16 values (F16C when the target has it).
inline void fp16_to_float(const fp16* KITE_RESTRICT src, float* KITE_RESTRICT out, index_t n) noexcept {
    index_t i = 0;
#if defined(__F16C__)
    for (; i + 8 <= n; i += 8)
        _mm256_storeu_ps(out + i, _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(src + i))));
#endif
    for (; i < n; ++i) out[i] = src[i].to_float();
}

/// Writes the dequantized values of columns [c0, c0 + n) of row r to out[0, n).
template <int B, int G, grid Z, class S>
void decode_row(arch::generic, const packed_weights<B, G, Z, S>& w, index_t r, index_t c0,
                index_t n, float* KITE_RESTRICT out) noexcept {
    using F = packed_weights<B, G, Z, S>;
    const std::uint8_t* row = w.row_codes(r);
    const index_t end = c0 + n;
    index_t c = c0;
    while (c < end) {
        const index_t g = G > 0 ? c / index_t(G) : 0;
        const index_t gend = G > 0 ? std::min(end, (g + 1) * index_t(G)) : end;
        const float s = w.scale(r, g);
        const int z = w.zero(r, g);
        for (; c < gend; ++c) *out++ = s * static_cast<float>(F::level_in(row, c) - z);
    }
}

template <class T>
void decode_row(arch::generic, const dense_weights<T>& w, index_t r, index_t c0, index_t n,
                float* KITE_RESTRICT out) noexcept {
    const T* row = w.row(r) + c0;
    for (index_t i = 0; i < n; ++i) out[i] = to_float(row[i]);
}

#if KITE_QUANT_AVX512

// GCC 12's AVX-512 intrinsics start from _mm512_undefined_*(), which its -Wmaybe-uninitialized
// reports once inlined (GCC bug 105593); the values are fully defined.
KITE_GCC12_AVX512_UNINIT_BEGIN

/// The 16-entry table of a 4-bit group: table[c] = scale * float(c - z) (z = 8 for the
/// offset-binary symmetric levels), computed with one rounding like packed_weights::value().
KITE_FORCE_INLINE __m512 int4_table(float scale, float zero) noexcept {
    const __m512 iota = _mm512_setr_ps(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
    return _mm512_mul_ps(_mm512_sub_ps(iota, _mm512_set1_ps(zero)), _mm512_set1_ps(scale));
}

/// Zero point of group g as the kernels use it: the stored z, or 8 for symmetric 4-bit codes
/// (offset binary), or 0 for symmetric 8-bit codes (signed bytes).
template <class F>
KITE_FORCE_INLINE int kernel_zero(const F& w, index_t r, index_t g) noexcept {
    if constexpr (F::has_zeros) {
        return w.zero(r, g);
    } else {
        return F::bits == 4 ? 8 : 0;
    }
}

/// Scales and kernel zero points of groups [g0, g0 + n) of row r as floats (fp16 scales converted
/// 16 at a time with vcvtph2ps: a per-element software conversion would cost more than the
/// dot products it feeds). `zero_offset` is added to each zero (the symmetric kernels' constant).
template <class F>
KITE_FORCE_INLINE void stage_groups(const F& w, index_t r, index_t g0, index_t n, float zero_offset,
                                    float* KITE_RESTRICT scale, float* KITE_RESTRICT zero) noexcept {
    const index_t si = w.scale_index(r, g0);
    for (index_t j = 0; j < n; j += 16) {
        const __mmask16 m = n - j >= 16 ? __mmask16(0xffff) : static_cast<__mmask16>((1u << (n - j)) - 1u);
        if constexpr (std::is_same_v<typename F::scale_type, float>) {
            _mm512_mask_storeu_ps(scale + j, m, _mm512_maskz_loadu_ps(m, w.scales().data() + si + j));
        } else {
            const auto* h = reinterpret_cast<const std::uint16_t*>(w.scales().data() + si + j);
            _mm512_mask_storeu_ps(scale + j, m, _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(m, h)));
        }
        __m512 z = _mm512_set1_ps(zero_offset);
        if constexpr (F::has_zeros)
            z = _mm512_add_ps(z, _mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(_mm_maskz_loadu_epi8(m, w.zeros().data() + si + j))));
        _mm512_mask_storeu_ps(zero + j, m, z);
    }
}

/// AVX-512 decode. c0 must be a multiple of block_cols; whole blocks are written, so out must
/// have room for round_up(n, block_cols) floats (values past the row's end are finite).
template <int B, int G, grid Z, class S>
void decode_row(arch::avx512, const packed_weights<B, G, Z, S>& w, index_t r, index_t c0,
                index_t n, float* KITE_RESTRICT out) noexcept {
    using F = packed_weights<B, G, Z, S>;
    constexpr index_t bc = F::block_cols;
    const std::uint8_t* row = w.row_codes(r);
    const index_t b_end = (c0 + n + bc - 1) / bc;
    // Columns past the row's end (the padding of its last block) take the last group's scale, so
    // they stay finite and no scale or zero past the row's own is read.
    const index_t last_group = w.groups_per_row() - 1;
    auto group_of = [last_group](index_t col) { return G > 0 ? std::min(col / index_t(G), last_group) : index_t(0); };
    for (index_t b = c0 / bc; b < b_end; ++b) {
        if constexpr (B == 4) {
            __m512i v = _mm512_loadu_si512(row + 64 * b);
            index_t gcur = ~index_t(0);
            __m512 table = _mm512_setzero_ps();
            for (index_t t = 0; t < 8; ++t) {
                const index_t g = group_of(bc * b + 16 * t);
                if (g != gcur) {
                    table = int4_table(w.scale(r, g), float(kernel_zero(w, r, g)));
                    gcur = g;
                }
                _mm512_storeu_ps(out + 16 * t, _mm512_permutexvar_ps(v, table));
                v = _mm512_srli_epi32(v, 4);
            }
        } else {
            for (index_t t = 0; t < 4; ++t) {
                const index_t g = group_of(bc * b + 16 * t);
                const __m128i raw = _mm_loadu_si128(reinterpret_cast<const __m128i*>(row + 64 * b + 16 * t));
                __m512i q = Z == grid::symmetric ? _mm512_cvtepi8_epi32(raw) : _mm512_cvtepu8_epi32(raw);
                if constexpr (Z == grid::asymmetric) q = _mm512_sub_epi32(q, _mm512_set1_epi32(w.zero(r, g)));
                _mm512_storeu_ps(out + 16 * t, _mm512_mul_ps(_mm512_set1_ps(w.scale(r, g)), _mm512_cvtepi32_ps(q)));
            }
        }
        out += bc;
    }
}

template <class T>
void decode_row(arch::avx512, const dense_weights<T>& w, index_t r, index_t c0, index_t n,
                float* KITE_RESTRICT out) noexcept {
    decode_row(arch::generic{}, w, r, c0, n, out);
}

KITE_GCC12_AVX512_UNINIT_END

#endif  // KITE_QUANT_AVX512

}  // namespace kite::quant::detail
