#pragma once
/// @file kite/quant/quantize.hpp
/// quantize(method, W[, X]): the single entry point that turns float weights into a format.
///
///   auto q = kite::quant::quantize(kite::quant::zero_point<4, 128>{}, W);
///   auto g = kite::quant::quantize(kite::quant::gptq<4, 128>{.act_order = true}, W, X);

#include "kite/core/matrix.hpp"
#include "kite/quant/concepts.hpp"

namespace kite::quant {

/// Quantizes W [out_features][in_features] with a method that needs no calibration data.
template <quant_method M>
typename M::format quantize(const M& method, matrix_view<const float> w) {
    static_assert(data_free_method<M>,
                  "kite::quant::quantize: this method needs calibration inputs; call "
                  "quantize(method, W, X) with X [tokens][in_features]");
    return method.quantize(w);
}

/// Quantizes W with calibration inputs X [tokens][in_features]; data-free methods ignore X.
template <quant_method M>
typename M::format quantize(const M& method, matrix_view<const float> w, matrix_view<const float> x) {
    if constexpr (calibrated_method<M>) {
        return method.quantize(w, x);
    } else {
        return method.quantize(w);
    }
}

}  // namespace kite::quant
