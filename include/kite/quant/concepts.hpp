#pragma once
/// @file kite/quant/concepts.hpp
/// The two concept families of kite/quant: weight formats (what a linear layer stores and
/// multiplies by) and quantization methods (policies that turn float weights into a format).
/// A model layer is written against these, e.g. `template <quant_method M> class linear`.

#include <concepts>
#include <cstddef>
#include <span>

#include "kite/core/config.hpp"
#include "kite/core/matrix.hpp"

namespace kite::quant {

/// weight_format: weights of a linear layer y = W x, W [out_features][in_features].
/// Contract:
///   - movable (weights are large; copies are explicit through clone());
///   - rows() = out_features, cols() = in_features, bytes() = storage footprint;
///   - value(r, c) -> float: the weight the format represents, O(1);
///   - free functions found by ADL, each safe to call concurrently on the same weights:
///       dequantize(w) -> matrix<float> [out][in]                          O(out * in)
///       gemv(w, x [in], y [out], threads)          y = W x                 O(out * in)
///       gemm(w, X [b][in], Y [b][out], threads)    Y = X W^T               O(b * out * in)
///     with float activations, shape errors raised as kite::shape_error, and results equal to
///     reference::gemv / reference::gemm (dequantize, then multiply in double) to float rounding
///     (llm_int8 additionally rounds activations to int8 by design; see its header).
/// Models: packed_weights<Bits, G, Grid, Scale>, dense_weights<T>, awq_weights<P>,
/// llm_int8_weights.
template <class F>
concept weight_format = std::movable<F> &&
    requires(const F& f, std::span<const float> x, std::span<float> y, matrix_view<const float> X,
             matrix_view<float> Y, index_t i) {
        { f.rows() } -> std::convertible_to<index_t>;
        { f.cols() } -> std::convertible_to<index_t>;
        { f.bytes() } -> std::convertible_to<std::size_t>;
        { f.value(i, i) } -> std::convertible_to<float>;
        { dequantize(f) } -> std::same_as<matrix<float>>;
        gemv(f, x, y, 0);
        gemm(f, X, Y, 0);
    };

/// quant_method: a policy type naming the format it produces.
/// Contract: `typename M::format` models weight_format; `M::name` is a short C string; the
/// policy is default constructible (runtime options, if any, are public members with defaults).
template <class M>
concept quant_method = std::default_initializable<M> && requires {
    typename M::format;
    { M::name } -> std::convertible_to<const char*>;
} && weight_format<typename M::format>;

/// data_free_method: quantizes from the weights alone (round-to-nearest, llm_int8).
/// Contract: m.quantize(W [out][in]) -> format; O(out * in); throws kite::invalid_argument on
/// empty or non-finite W.
template <class M>
concept data_free_method = quant_method<M> && requires(const M& m, matrix_view<const float> w) {
    { m.quantize(w) } -> std::same_as<typename M::format>;
};

/// calibrated_method: needs calibration inputs X [tokens][in_features] (the activations the layer
/// sees), e.g. GPTQ (Hessian 2 X^T X) and AWQ (activation magnitudes).
/// Contract: m.quantize(W [out][in], X [n][in]) -> format; throws kite::shape_error when X's
/// width differs from in_features and kite::invalid_argument on non-finite input.
template <class M>
concept calibrated_method = quant_method<M> &&
    requires(const M& m, matrix_view<const float> w, matrix_view<const float> x) {
        { m.quantize(w, x) } -> std::same_as<typename M::format>;
    };

}  // namespace kite::quant
