#pragma once
/// @file kite/core/simd_convert.hpp
/// Loading stored half-precision values (bf16, fp16) straight into float batches, so kernels
/// can keep K/V or weights in 16-bit storage and compute in float without a conversion pass.
///
///   fbatch k = kite::simd::load_as_float(row + c);        // row: const bf16*, W elements
///   kite::simd::convert_row(row, tmp, n);                 // n elements to float
///   kite::simd::store_from_float(x, row, n);               // n floats stored as bf16 / fp16

#include <cstddef>
#include <cstring>
#include <type_traits>

#include "kite/core/diagnostics.hpp"
#include "kite/core/half.hpp"
#include "kite/core/simd.hpp"

KITE_GCC12_AVX512_UNINIT_BEGIN  // see kite/core/diagnostics.hpp

namespace kite::simd {

/// Converts n stored scalars to float (vectorised for bf16 and fp16 where the ISA allows).
template <class T>
inline void convert_row(const T* KITE_RESTRICT src, float* KITE_RESTRICT dst, std::size_t n) noexcept;

#if KITE_SIMD_ENABLED

/// Loads `width` stored scalars at p as a float batch.
template <class T, std::size_t Wd = width>  // Wd: so the untaken width's branch is discarded
KITE_FORCE_INLINE fbatch load_as_float(const T* p) noexcept {
    if constexpr (std::is_same_v<T, float>) {
        return fbatch::load_unaligned(p);
    } else {
#if defined(__AVX512F__)
        if constexpr (Wd == 16) {
            const __m256i h = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p));
            if constexpr (std::is_same_v<T, bf16>) {
                return fbatch(_mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16)));
            } else if constexpr (std::is_same_v<T, fp16>) {
                return fbatch(_mm512_cvtph_ps(h));
            }
        }
#endif
#if defined(__AVX2__)
        if constexpr (Wd == 8) {
            const __m128i h = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p));
            if constexpr (std::is_same_v<T, bf16>) {
                return fbatch_w<Wd>(_mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16)));
            }
#if defined(__F16C__)
            if constexpr (std::is_same_v<T, fp16>) return fbatch_w<Wd>(_mm256_cvtph_ps(h));
#endif
        }
#endif
        alignas(64) float tmp[width];
        for (std::size_t i = 0; i < width; ++i) tmp[i] = to_float(p[i]);
        return fbatch::load_aligned(tmp);
    }
}

/// Loads the first `count` (< width) stored scalars at p, zeros elsewhere, reading nothing past
/// p + count.
template <class T>
KITE_FORCE_INLINE fbatch load_as_float_partial(const T* p, std::size_t count) noexcept {
    if constexpr (std::is_same_v<T, float>) {
        return load_partial(p, count);
    } else {
        alignas(64) float tmp[width] = {};
        for (std::size_t i = 0; i < count; ++i) tmp[i] = to_float(p[i]);
        return fbatch::load_aligned(tmp);
    }
}

#endif  // KITE_SIMD_ENABLED

template <class T>
inline void convert_row(const T* KITE_RESTRICT src, float* KITE_RESTRICT dst, std::size_t n) noexcept {
    if constexpr (std::is_same_v<T, float>) {
        if (n) std::memcpy(dst, src, n * sizeof(float));
    } else {
        std::size_t i = 0;
#if KITE_SIMD_ENABLED
        for (; i + width <= n; i += width) load_as_float(src + i).store_unaligned(dst + i);
#endif
        for (; i < n; ++i) dst[i] = to_float(src[i]);
    }
}

/// Stores n floats as T, bit-identical to kite::from_float<T> element by element (round to
/// nearest even; fp16 through the F16C / AVX-512 conversion, which from_float mirrors).
template <class T>
inline void store_from_float(const float* KITE_RESTRICT src, T* KITE_RESTRICT dst, std::size_t n) noexcept {
    if constexpr (std::is_same_v<T, float>) {
        if (n) std::memcpy(dst, src, n * sizeof(float));
    } else {
        std::size_t i = 0;
        if constexpr (std::is_same_v<T, fp16>) {
#if defined(__AVX512F__)
            for (; i + 16 <= n; i += 16)
                _mm256_storeu_si256(reinterpret_cast<__m256i*>(dst + i),
                                    _mm512_cvtps_ph(_mm512_loadu_ps(src + i), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
#endif
#if defined(__F16C__) && (defined(__AVX2__) || defined(__AVX512F__))
            for (; i + 8 <= n; i += 8)
                _mm_storeu_si128(reinterpret_cast<__m128i*>(dst + i),
                                 _mm256_cvtps_ph(_mm256_loadu_ps(src + i), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
#endif
        }
        for (; i < n; ++i) dst[i] = from_float<T>(src[i]);  // bf16: GCC 12 at -O3 vectorises this loop
    }
}

}  // namespace kite::simd

KITE_GCC12_AVX512_UNINIT_END
