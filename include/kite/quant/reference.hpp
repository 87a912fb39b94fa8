#pragma once
/// @file kite/quant/reference.hpp
/// The oracles: dequantize element by element (format::value), then multiply, accumulating in
/// double. Obviously correct and slow; the fast kernels in kite/quant/kernels.hpp are tested
/// against them.

#include <span>

#include "kite/core/matrix.hpp"
#include "kite/quant/kernels.hpp"

namespace kite::quant::reference {

/// Element-by-element dequantization.
template <class F>
matrix<float> dequantize(const F& w) {
    matrix<float> out(w.rows(), w.cols(), uninitialized);
    for (index_t r = 0; r < w.rows(); ++r)
        for (index_t c = 0; c < w.cols(); ++c) out(r, c) = w.value(r, c);
    return out;
}

/// y = W x in double from the dequantized weights.
template <class F>
void gemv(const F& w, std::span<const float> x, std::span<float> y) {
    detail::check_gemv_shapes("reference::gemv", w.rows(), w.cols(), x.size(), y.size());
    for (index_t r = 0; r < w.rows(); ++r) {
        double s = 0;
        for (index_t c = 0; c < w.cols(); ++c) s += static_cast<double>(w.value(r, c)) * x[c];
        y[r] = static_cast<float>(s);
    }
}

/// Y = X W^T in double from the dequantized weights.
template <class F>
void gemm(const F& w, matrix_view<const float> X, matrix_view<float> Y) {
    detail::check_gemm_shapes("reference::gemm", w.rows(), w.cols(), X, Y);
    const matrix<float> d = dequantize(w);
    for (index_t t = 0; t < X.rows(); ++t)
        for (index_t r = 0; r < w.rows(); ++r) {
            double s = 0;
            for (index_t c = 0; c < w.cols(); ++c) s += static_cast<double>(d(r, c)) * X(t, c);
            Y(t, r) = static_cast<float>(s);
        }
}

}  // namespace kite::quant::reference
