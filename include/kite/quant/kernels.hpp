#pragma once
/// @file kite/quant/kernels.hpp
/// Matrix products with quantized (or dense f32 / bf16) weights and float activations:
///
///   gemv(W, x, y)   y [m]    = W [m][k] x [k]        (batch-1 decode: memory bound)
///   gemm(W, X, Y)   Y [b][m] = X [b][k] W^T           (prefill / batched decode)
///   dequantize(W)   -> matrix<float> [m][k]
///
/// Work is split over output rows (`threads` = 0: kite::max_threads()). The optional last
/// argument picks the instruction set (arch::best by default; arch::generic forces the portable
/// path). Each kernel has a dequantize-then-multiply oracle in kite/quant/reference.hpp.
/// All functions are safe to call concurrently on the same weights.

#include <algorithm>
#include <span>
#include <type_traits>

#include "kite/core/error.hpp"
#include "kite/core/matrix.hpp"
#include "kite/core/parallel.hpp"
#include "kite/quant/arch.hpp"
#include "kite/quant/detail/decode.hpp"
#include "kite/quant/detail/gemm_kernels.hpp"
#include "kite/quant/detail/gemv_kernels.hpp"
#include "kite/quant/detail/scratch.hpp"
#include "kite/quant/format.hpp"

namespace kite::quant {

namespace detail {

template <class F>
inline constexpr bool is_dense = false;
template <class T>
inline constexpr bool is_dense<dense_weights<T>> = true;

/// Formats whose products live in this header (packed and dense).
template <class F>
concept basic_format = is_packed_weights<F> || is_dense<F>;

inline void check_gemv_shapes(const char* fn, index_t m, index_t k, std::size_t xn, std::size_t yn) {
    KITE_REQUIRE(xn == k, shape_error, fn, ": x has ", xn, " elements; expected in_features = ", k);
    KITE_REQUIRE(yn == m, shape_error, fn, ": y has ", yn, " elements; expected out_features = ", m);
}

inline void check_gemm_shapes(const char* fn, index_t m, index_t k, matrix_view<const float> X,
                              matrix_view<float> Y) {
    KITE_REQUIRE(X.cols() == k, shape_error, fn, ": X has ", X.cols(), " columns; expected in_features = ", k);
    KITE_REQUIRE(Y.rows() == X.rows() && Y.cols() == m, shape_error, fn, ": Y has shape ", Y.rows(), " x ",
                 Y.cols(), "; expected ", X.rows(), " x ", m, " (batch x out_features)");
}

template <class Arch, class F>
void gemv_impl(Arch, const F& w, const float* x, float* y, int threads) {
    const index_t m = w.rows(), k = w.cols();
    if (k == 0) {
        std::fill(y, y + m, 0.0f);
        return;
    }
    constexpr index_t tile = 4;
    parallel_chunks(
        (m + tile - 1) / tile,
        [&](std::size_t t0, std::size_t t1, int) {
            gemv_rows(Arch{}, w, x, y, t0 * tile, std::min(m, t1 * tile));
        },
        threads);
}

}  // namespace detail

/// y = W x for quantized or dense weights W [out][in], x [in], y [out]; threads over rows.
template <class F, class Arch = arch::best>
    requires detail::basic_format<F>
void gemv(const F& w, std::span<const float> x, std::span<float> y, int threads = 0, Arch = {}) {
    detail::check_gemv_shapes("quant::gemv", w.rows(), w.cols(), x.size(), y.size());
    detail::gemv_impl(Arch{}, w, x.data(), y.data(), threads);
}

/// Y = X W^T for X [batch][in], Y [batch][out]; threads over rows of W.
template <class F, class Arch = arch::best>
    requires detail::basic_format<F>
void gemm(const F& w, matrix_view<const float> X, matrix_view<float> Y, int threads = 0, Arch = {}) {
    detail::check_gemm_shapes("quant::gemm", w.rows(), w.cols(), X, Y);
    if (X.rows() == 1) {
        detail::gemv_impl(Arch{}, w, X.row(0).data(), Y.row(0).data(), threads);
        return;
    }
    if (w.cols() == 0) {
        for (index_t t = 0; t < Y.rows(); ++t) std::fill(Y.row(t).begin(), Y.row(t).end(), 0.0f);
        return;
    }
    detail::gemm_rows(Arch{}, w, X, Y, threads);
}

/// The float matrix [out][in] that W represents.
template <class F>
    requires detail::basic_format<F>
matrix<float> dequantize(const F& w) {
    const index_t m = w.rows(), k = w.cols();
    matrix<float> out(m, k, uninitialized);
    parallel_for(0, m, [&](std::size_t r) {
        detail::decode_row(arch::generic{}, w, r, 0, k, out.row(r).data());
    });
    return out;
}

}  // namespace kite::quant
