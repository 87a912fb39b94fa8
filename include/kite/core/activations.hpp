#pragma once
/// @file kite/core/activations.hpp
/// The vectorised math of kite's activation functions, shared by the model layers
/// (kite::model::act) and the fused GEMM epilogues in kite/quant: an in-place map over floats,
/// Horner's rule, a rational erf fitted for kite and the exact GELU built on it.

#include <cstddef>

#include "kite/core/config.hpp"
#include "kite/core/diagnostics.hpp"
#include "kite/core/simd.hpp"

namespace kite::act::detail {

/// Applies F to n floats in place: SIMD batches, then the scalar tail.
template <class Scalar, class Batch>
KITE_FORCE_INLINE void map_inplace(float* x, index_t n, Scalar&& scalar, Batch&& batch) noexcept {
    index_t i = 0;
#if KITE_SIMD_ENABLED
    using simd::fbatch;
    constexpr index_t W = simd::width;
    for (; i + W <= n; i += W) batch(fbatch::load_unaligned(x + i)).store_unaligned(x + i);
#else
    (void)batch;
#endif
    for (; i < n; ++i) x[i] = scalar(x[i]);
}

inline constexpr float inv_sqrt2 = 0.70710678118654752f;

#if KITE_SIMD_ENABLED
/// c[0] + c[1] t + ... + c[N-1] t^(N-1), by Horner's rule with fused multiply-adds.
template <class B, std::size_t N>
KITE_FORCE_INLINE B horner(B t, const float (&c)[N]) noexcept {
    B r(c[N - 1]);
    for (std::size_t i = N - 1; i-- > 0;) r = xsimd::fma(r, t, B(c[i]));
    return r;
}

/// erf of each lane: x P(x^2) / Q(x^2) for |x| < 3.925, sign(x) beyond (1 - erf(3.925) =
/// 2.8e-8, under half a float ulp of 1), NaN for NaN. A rational fit made for kite
/// (tools/fit_erf.py): |error| <= 2.4e-8 in exact arithmetic, <= 4.1e-7 evaluated in float32.
/// GELU through it runs 2.4x faster than through xsimd::erf (bench_model_gemm's
/// model/gelu rows), which evaluates three ranges and an exp for every lane; the exact-GELU
/// epilogues of the encoder's GEMMs call it.
template <class B>
KITE_FORCE_INLINE B erf_rational(B x) noexcept {
    static constexpr float p[] = {1.128378987312317f,     0.19357368350028992f,   0.05316228047013283f,
                                  0.003902292577549815f,  0.00028807169292122126f, 2.0256029529264197e-06f};
    static constexpr float q[] = {1.0f,                   0.5048815608024597f,    0.11541471630334854f,
                                  0.015239546075463295f,  0.0011960957199335098f, 3.800870763370767e-05f};
    const B a = xsimd::abs(x);
    const B c(3.925f);
    const B u = xsimd::min(a, c);
    const B t = u * u;
    const B r = xsimd::select(a < c, xsimd::min(u * detail::horner(t, p) / detail::horner(t, q), B(1.0f)), B(1.0f));  // |erf| <= 1
    return xsimd::select(xsimd::isnan(x), x, xsimd::copysign(r, x));
}

/// Exact GELU of each lane: 0.5 x (1 + erf(x / sqrt 2)), with erf_rational.
template <class B>
KITE_FORCE_INLINE B gelu_erf(B x) noexcept {
    return 0.5f * x * (1.0f + detail::erf_rational(x * B(inv_sqrt2)));
}
#endif

}  // namespace kite::act::detail
