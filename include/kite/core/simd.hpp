#pragma once
/// @file kite/core/simd.hpp
/// Vector kernels on float arrays through xsimd (the architecture is the one the including
/// translation unit is compiled for), each with a scalar twin in kite::simd::scalar that
/// accumulates in double and serves as the oracle in tests.
///
///   float d = kite::simd::dot(a, b);          // spans of equal length
///   float e = kite::simd::l2_sq(a.data(), b.data(), n);   // unchecked pointer form

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <span>
#include <type_traits>

#include <xsimd/xsimd.hpp>

#if defined(__AVX2__) || defined(__AVX512F__)
#include <immintrin.h>
#endif

#include "kite/core/config.hpp"
#include "kite/core/error.hpp"
#include "kite/core/half.hpp"

namespace kite::simd {

#if defined(XSIMD_NO_SUPPORTED_ARCHITECTURE)
#define KITE_SIMD_ENABLED 0
#else
#define KITE_SIMD_ENABLED 1
/// The float batch of the architecture this translation unit targets.
using fbatch = xsimd::batch<float>;
/// Number of floats in one fbatch.
inline constexpr std::size_t width = fbatch::size;
/// fbatch, spelled so that it depends on a width parameter: in a branch `if constexpr (Wd == 8)`
/// that an AVX-512 build discards, `fbatch_w<Wd>(__m256)` is checked only if taken (clang checks
/// a non-dependent `fbatch(__m256)` where it is written and rejects it; GCC does not).
template <std::size_t Wd>
using fbatch_w = std::conditional_t<Wd == width, fbatch, fbatch>;

/// Horizontal sum of a batch (xsimd renamed hadd to reduce_add in version 9).
KITE_FORCE_INLINE float reduce_add(const fbatch& b) noexcept {
#if XSIMD_VERSION_MAJOR >= 9
    return xsimd::reduce_add(b);
#else
    return xsimd::hadd(b);
#endif
}
/// Loads the first `count` (< width) floats at `p` into a batch, zeros elsewhere, without
/// touching memory past p + count (masked loads on AVX-512 and AVX2).
template <std::size_t Wd = width>  // a template so the untaken branches are discarded
KITE_FORCE_INLINE fbatch load_partial(const float* p, std::size_t count) noexcept {
#if defined(__AVX512F__)
    if constexpr (Wd == 16) {
        return fbatch(_mm512_maskz_loadu_ps(static_cast<__mmask16>((1u << count) - 1u), p));
    }
#endif
#if defined(__AVX2__)
    if constexpr (Wd == 8) {
        const __m256i idx = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
        const __m256i mask = _mm256_cmpgt_epi32(_mm256_set1_epi32(static_cast<int>(count)), idx);
        return fbatch_w<Wd>(_mm256_maskload_ps(p, mask));
    }
#endif
    alignas(64) float tmp[Wd] = {};
    for (std::size_t i = 0; i < count; ++i) tmp[i] = p[i];
    return fbatch::load_aligned(tmp);
}

/// Loads `width` IEEE float16 values (bit patterns) at `p` as floats.
template <std::size_t Wd = width>
KITE_FORCE_INLINE fbatch load_f16(const std::uint16_t* p) noexcept {
#if defined(__AVX512F__)
    if constexpr (Wd == 16) return fbatch(_mm512_maskz_cvtph_ps(static_cast<__mmask16>(0xffff), _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p))));
#endif
#if defined(__F16C__) && defined(__AVX2__)
    if constexpr (Wd == 8) return fbatch_w<Wd>(_mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p))));
#endif
    alignas(64) float tmp[Wd];
    for (std::size_t i = 0; i < Wd; ++i) tmp[i] = kite::detail::fp16_bits_to_float(p[i]);
    return fbatch::load_aligned(tmp);
}
/// The first `count` (< width) float16 values at `p` as floats, zeros elsewhere, without
/// touching memory past p + count.
template <std::size_t Wd = width>
KITE_FORCE_INLINE fbatch load_f16_partial(const std::uint16_t* p, std::size_t count) noexcept {
#if defined(__AVX512F__) && defined(__AVX512BW__) && defined(__AVX512VL__)
    if constexpr (Wd == 16)
        return fbatch(_mm512_maskz_cvtph_ps(static_cast<__mmask16>(0xffff), _mm256_maskz_loadu_epi16(static_cast<__mmask16>((1u << count) - 1u), p)));
#endif
    alignas(64) std::uint16_t tmp[Wd] = {};
    for (std::size_t i = 0; i < count; ++i) tmp[i] = p[i];
    return load_f16<Wd>(tmp);
}

/// Horizontal maximum of a batch.
KITE_FORCE_INLINE float reduce_max(const fbatch& b) noexcept {
    alignas(64) float tmp[width];
    b.store_aligned(tmp);
    float m = tmp[0];
    for (std::size_t i = 1; i < width; ++i) m = tmp[i] > m ? tmp[i] : m;
    return m;
}
#endif

/// True when this translation unit converts IEEE float16 to float in hardware (AVX-512 with
/// BW and VL, or F16C with AVX2): load_f16 / load_f16_partial then cost one instruction per
/// batch (otherwise they convert in software, slowly).
#if KITE_SIMD_ENABLED && ((defined(__AVX512F__) && defined(__AVX512BW__) && defined(__AVX512VL__)) || \
                          (defined(__F16C__) && defined(__AVX2__)))
inline constexpr bool has_f16_loads = true;
#else
inline constexpr bool has_f16_loads = false;
#endif

/// True when this translation unit has AVX512_BF16's dot product (vdpbf16ps: 32 bfloat16
/// products per instruction, summed pairwise into 16 float lanes), which the flat index's
/// bfloat16 GEMM kernel uses (flat_options::bf16_gemm).
#if KITE_SIMD_ENABLED && defined(__AVX512BF16__) && defined(__AVX512F__) && defined(__AVX512BW__)
inline constexpr bool has_bf16_dot = true;
#else
inline constexpr bool has_bf16_dot = false;
#endif

/// Scalar twins: obvious loops accumulating in double. Oracles for tests, fallbacks elsewhere.
namespace scalar {
inline float dot(const float* a, const float* b, std::size_t n) noexcept {
    double s = 0;
    for (std::size_t i = 0; i < n; ++i) s += static_cast<double>(a[i]) * b[i];
    return static_cast<float>(s);
}
inline float l2_sq(const float* a, const float* b, std::size_t n) noexcept {
    double s = 0;
    for (std::size_t i = 0; i < n; ++i) {
        const double d = static_cast<double>(a[i]) - b[i];
        s += d * d;
    }
    return static_cast<float>(s);
}
inline float norm_sq(const float* a, std::size_t n) noexcept { return dot(a, a, n); }
inline float sum(const float* a, std::size_t n) noexcept {
    double s = 0;
    for (std::size_t i = 0; i < n; ++i) s += a[i];
    return static_cast<float>(s);
}
inline float max(const float* a, std::size_t n) noexcept {
    float m = -std::numeric_limits<float>::infinity();
    for (std::size_t i = 0; i < n; ++i) m = a[i] > m ? a[i] : m;
    return m;
}
}  // namespace scalar

/// Dot product of two float arrays of length n.
inline float dot(const float* KITE_RESTRICT a, const float* KITE_RESTRICT b, std::size_t n) noexcept {
#if KITE_SIMD_ENABLED
    constexpr std::size_t W = width;
    if (n <= W) return reduce_add(load_partial(a, n) * load_partial(b, n));  // short vectors
    fbatch s0(0.f), s1(0.f), s2(0.f), s3(0.f);
    std::size_t i = 0;
    for (; i + 4 * W <= n; i += 4 * W) {  // four accumulators hide the FMA latency
        s0 = xsimd::fma(fbatch::load_unaligned(a + i), fbatch::load_unaligned(b + i), s0);
        s1 = xsimd::fma(fbatch::load_unaligned(a + i + W), fbatch::load_unaligned(b + i + W), s1);
        s2 = xsimd::fma(fbatch::load_unaligned(a + i + 2 * W), fbatch::load_unaligned(b + i + 2 * W), s2);
        s3 = xsimd::fma(fbatch::load_unaligned(a + i + 3 * W), fbatch::load_unaligned(b + i + 3 * W), s3);
    }
    for (; i + W <= n; i += W) s0 = xsimd::fma(fbatch::load_unaligned(a + i), fbatch::load_unaligned(b + i), s0);
    if (i < n) s1 = xsimd::fma(load_partial(a + i, n - i), load_partial(b + i, n - i), s1);
    return reduce_add((s0 + s1) + (s2 + s3));
#else
    float r = 0;
    for (std::size_t i = 0; i < n; ++i) r += a[i] * b[i];
    return r;
#endif
}

/// Squared Euclidean distance between two float arrays of length n.
inline float l2_sq(const float* KITE_RESTRICT a, const float* KITE_RESTRICT b, std::size_t n) noexcept {
#if KITE_SIMD_ENABLED
    constexpr std::size_t W = width;
    if (n <= W) {  // short vectors
        const fbatch d = load_partial(a, n) - load_partial(b, n);
        return reduce_add(d * d);
    }
    fbatch s0(0.f), s1(0.f), s2(0.f), s3(0.f);
    std::size_t i = 0;
    for (; i + 4 * W <= n; i += 4 * W) {
        const fbatch d0 = fbatch::load_unaligned(a + i) - fbatch::load_unaligned(b + i);
        const fbatch d1 = fbatch::load_unaligned(a + i + W) - fbatch::load_unaligned(b + i + W);
        const fbatch d2 = fbatch::load_unaligned(a + i + 2 * W) - fbatch::load_unaligned(b + i + 2 * W);
        const fbatch d3 = fbatch::load_unaligned(a + i + 3 * W) - fbatch::load_unaligned(b + i + 3 * W);
        s0 = xsimd::fma(d0, d0, s0);
        s1 = xsimd::fma(d1, d1, s1);
        s2 = xsimd::fma(d2, d2, s2);
        s3 = xsimd::fma(d3, d3, s3);
    }
    for (; i + W <= n; i += W) {
        const fbatch d = fbatch::load_unaligned(a + i) - fbatch::load_unaligned(b + i);
        s0 = xsimd::fma(d, d, s0);
    }
    if (i < n) {
        const fbatch d = load_partial(a + i, n - i) - load_partial(b + i, n - i);
        s1 = xsimd::fma(d, d, s1);
    }
    return reduce_add((s0 + s1) + (s2 + s3));
#else
    float r = 0;
    for (std::size_t i = 0; i < n; ++i) r += (a[i] - b[i]) * (a[i] - b[i]);
    return r;
#endif
}

/// Squared Euclidean norm.
inline float norm_sq(const float* a, std::size_t n) noexcept { return dot(a, a, n); }

/// Sum of the elements.
inline float sum(const float* a, std::size_t n) noexcept {
#if KITE_SIMD_ENABLED
    constexpr std::size_t W = width;
    fbatch s0(0.f), s1(0.f);
    std::size_t i = 0;
    for (; i + 2 * W <= n; i += 2 * W) {
        s0 += fbatch::load_unaligned(a + i);
        s1 += fbatch::load_unaligned(a + i + W);
    }
    for (; i + W <= n; i += W) s0 += fbatch::load_unaligned(a + i);
    if (i < n) s1 += load_partial(a + i, n - i);
    return reduce_add(s0 + s1);
#else
    return scalar::sum(a, n);
#endif
}

/// Maximum element (-inf for an empty array). NaN elements are ignored.
inline float max(const float* a, std::size_t n) noexcept {
    float r = -std::numeric_limits<float>::infinity();
    std::size_t i = 0;
#if KITE_SIMD_ENABLED
    constexpr std::size_t W = width;
    if (n >= W) {
        fbatch m(r);
        for (; i + W <= n; i += W) {
            const fbatch v = fbatch::load_unaligned(a + i);
            m = xsimd::select(v > m, v, m);  // a NaN compares false and is skipped
        }
        r = reduce_max(m);
    }
#endif
    for (; i < n; ++i) r = a[i] > r ? a[i] : r;
    return r;
}

/// y[i] += alpha * x[i].
inline void axpy(float alpha, const float* KITE_RESTRICT x, float* KITE_RESTRICT y, std::size_t n) noexcept {
    std::size_t i = 0;
#if KITE_SIMD_ENABLED
    constexpr std::size_t W = width;
    const fbatch va(alpha);
    for (; i + W <= n; i += W) {
        xsimd::fma(va, fbatch::load_unaligned(x + i), fbatch::load_unaligned(y + i)).store_unaligned(y + i);
    }
#endif
    for (; i < n; ++i) y[i] += alpha * x[i];
}

/// x[i] *= alpha.
inline void scale(float alpha, float* x, std::size_t n) noexcept {
    std::size_t i = 0;
#if KITE_SIMD_ENABLED
    constexpr std::size_t W = width;
    const fbatch va(alpha);
    for (; i + W <= n; i += W) (fbatch::load_unaligned(x + i) * va).store_unaligned(x + i);
#endif
    for (; i < n; ++i) x[i] *= alpha;
}

// ---- checked span forms ----------------------------------------------------------------------

namespace detail {
inline void require_same_length(std::size_t a, std::size_t b, const char* fn) {
    KITE_REQUIRE(a == b, shape_error, "simd::", fn, ": operands have lengths ", a, " and ", b,
                 "; expected equal lengths");
}
}  // namespace detail

inline float dot(std::span<const float> a, std::span<const float> b) {
    detail::require_same_length(a.size(), b.size(), "dot");
    return dot(a.data(), b.data(), a.size());
}
inline float l2_sq(std::span<const float> a, std::span<const float> b) {
    detail::require_same_length(a.size(), b.size(), "l2_sq");
    return l2_sq(a.data(), b.data(), a.size());
}
inline float norm_sq(std::span<const float> a) noexcept { return norm_sq(a.data(), a.size()); }
inline float sum(std::span<const float> a) noexcept { return sum(a.data(), a.size()); }
inline float max(std::span<const float> a) noexcept { return max(a.data(), a.size()); }

}  // namespace kite::simd
