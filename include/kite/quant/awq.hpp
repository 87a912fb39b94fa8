#pragma once
/// @file kite/quant/awq.hpp
/// AWQ (Lin et al. 2023, "AWQ: Activation-aware Weight Quantization for LLM Compression and
/// Acceleration"): weights that see large activations matter more, so scale each input channel
/// up before round-to-nearest and divide the input by the same factor:
///
///   s_j = max(mean_t |X[t][j]|, ...)^alpha, normalised by sqrt(max s * min s), clamped >= 1e-4
///   alpha searched over {0, 1/20, ..., 19/20} for the lowest mean squared output error on the
///   calibration inputs, || X W^T - X (Q(W diag(s)) diag(s)^-1)^T ||^2
///   stored: Q(W diag(s)) (asymmetric RTN grid) and s; the layer computes Q(W s) (x / s),
///   the same function as W x up to the rounding.
///
/// alpha = 0 gives s = 1, i.e. plain RTN, so on the calibration data AWQ is never worse than RTN.
/// The search runs in double and equals tools/quant_reference.py's awq() except at exact ties.
/// A model can fold 1/s into the preceding RMSNorm weight and use weights() directly.
/// Cost: O(grid_points * n * m * k).

#include <cmath>
#include <limits>
#include <span>
#include <vector>

#include "kite/core/buffer.hpp"
#include "kite/core/error.hpp"
#include "kite/core/matrix.hpp"
#include "kite/core/parallel.hpp"
#include "kite/quant/arch.hpp"
#include "kite/quant/detail/scratch.hpp"
#include "kite/quant/format.hpp"
#include "kite/quant/gptq.hpp"
#include "kite/quant/kernels.hpp"
#include "kite/quant/rtn.hpp"

namespace kite::quant {

/// Packed weights Q(W diag(s)) with their per-input-channel scales s: y = Q(W s) (x / s).
template <class P>
class awq_weights {
    static_assert(is_packed_weights<P>, "awq_weights wraps a packed_weights format");

public:
    using packed_type = P;

    awq_weights() = default;
    awq_weights(P weights, aligned_buffer<float> input_scales, double alpha)
        : w_(std::move(weights)), s_(std::move(input_scales)), alpha_(alpha) {
        KITE_REQUIRE(s_.size() == w_.cols(), shape_error, "awq_weights: ", s_.size(),
                     " input scales; expected in_features = ", w_.cols());
    }
    awq_weights(awq_weights&&) noexcept = default;
    awq_weights& operator=(awq_weights&&) noexcept = default;
    awq_weights clone() const { return awq_weights(w_.clone(), s_.clone(), alpha_); }

    index_t rows() const noexcept { return w_.rows(); }
    index_t cols() const noexcept { return w_.cols(); }
    std::size_t bytes() const noexcept { return w_.bytes() + s_.size_bytes(); }
    /// The weight this format represents: Q(W s)[r][c] / s[c].
    float value(index_t r, index_t c) const noexcept { return w_.value(r, c) / s_[c]; }

    /// The packed, scaled weights Q(W diag(s)).
    const P& weights() const noexcept { return w_; }
    /// Per input channel scales s [in_features]; inputs are divided by them.
    std::span<const float> input_scales() const noexcept { return s_.span(); }
    /// The exponent the search chose.
    double alpha() const noexcept { return alpha_; }

private:
    P w_;
    aligned_buffer<float> s_;
    double alpha_ = 0;
};

template <class T>
inline constexpr bool is_awq_weights = false;
template <class P>
inline constexpr bool is_awq_weights<awq_weights<P>> = true;

/// y = W x: x is divided by the input scales, then multiplied by the packed weights.
template <class P, class Arch = arch::best>
void gemv(const awq_weights<P>& w, std::span<const float> x, std::span<float> y, int threads = 0, Arch = {}) {
    detail::check_gemv_shapes("quant::gemv", w.rows(), w.cols(), x.size(), y.size());
    float* xs = detail::scratch<float, 4>(w.cols());
    const auto s = w.input_scales();
    for (index_t c = 0; c < w.cols(); ++c) xs[c] = x[c] / s[c];
    gemv(w.weights(), std::span<const float>(xs, w.cols()), y, threads, Arch{});
}

/// Y = X W^T for X [batch][in].
template <class P, class Arch = arch::best>
void gemm(const awq_weights<P>& w, matrix_view<const float> X, matrix_view<float> Y, int threads = 0, Arch = {}) {
    detail::check_gemm_shapes("quant::gemm", w.rows(), w.cols(), X, Y);
    const index_t b = X.rows(), k = w.cols();
    float* xs = detail::scratch<float, 4>(b * k);
    const auto s = w.input_scales();
    for (index_t t = 0; t < b; ++t)
        for (index_t c = 0; c < k; ++c) xs[t * k + c] = X(t, c) / s[c];
    gemm(w.weights(), matrix_view<const float>(xs, b, k), Y, threads, Arch{});
}

/// The float matrix [out][in] the weights represent (Q(W s) / s).
template <class P>
matrix<float> dequantize(const awq_weights<P>& w) {
    matrix<float> d = dequantize(w.weights());
    const auto s = w.input_scales();
    for (index_t r = 0; r < d.rows(); ++r)
        for (index_t c = 0; c < d.cols(); ++c) d(r, c) /= s[c];
    return d;
}

namespace detail {

/// RTN of Ws (double) into F and the dequantized result in double (exactly what the
/// reference computes: stored scale * (q - z) in double).
template <class F>
Eigen::MatrixXd rtn_dequantized(const Eigen::Matrix<double, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>& ws,
                                F* packed_out) {
    const index_t m = ws.rows(), k = ws.cols();
    F p = rtn_quantize<F, double>(matrix_view<const double>(ws.data(), m, k));
    Eigen::MatrixXd d(m, k);
    const index_t gc = p.group_cols();
    for (index_t r = 0; r < m; ++r)
        for (index_t c = 0; c < k; ++c) {
            const index_t g = F::group > 0 ? c / gc : 0;
            d(r, c) = static_cast<double>(p.scale(r, g)) * static_cast<double>(p.level(r, c) - p.zero(r, g));
        }
    if (packed_out) *packed_out = std::move(p);
    return d;
}

template <class F>
awq_weights<F> awq_quantize(matrix_view<const float> w, matrix_view<const float> x, int grid_points) {
    require_weights(w, "awq::quantize");
    const index_t k = w.cols();
    require_calibration(x, k, "awq::quantize");
    KITE_REQUIRE(grid_points >= 1, invalid_argument, "awq: grid_points = ", grid_points,
                 "; expected at least 1 (the paper uses 20)");
    using row_major_d = Eigen::Matrix<double, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
    const Eigen::MatrixXd X = to_double(x);  // [n][k]
    const Eigen::MatrixXd W = to_double(w);  // [m][k]
    const Eigen::VectorXd x_mean = X.cwiseAbs().colwise().mean().transpose();  // [k]
    const Eigen::MatrixXd org = X * W.transpose();                              // [n][m]

    // The grid points are independent: evaluate them in parallel (Eigen's products inside run
    // single-threaded in a parallel region, which suits these many medium-sized products).
    std::vector<double> loss(static_cast<std::size_t>(grid_points));
    std::vector<Eigen::VectorXd> candidates(static_cast<std::size_t>(grid_points));
    parallel_for(0, static_cast<std::size_t>(grid_points), [&](std::size_t i) {
        const double ratio = static_cast<double>(i) / grid_points;
        Eigen::VectorXd s(k);
        for (index_t j = 0; j < k; ++j) s[j] = std::max(std::pow(x_mean[j], ratio), 1e-4);
        s /= std::sqrt(s.maxCoeff() * s.minCoeff());
        for (index_t j = 0; j < k; ++j) s[j] = static_cast<double>(static_cast<float>(s[j]));  // stored as float
        const row_major_d ws = W * s.asDiagonal();
        const Eigen::MatrixXd wq = rtn_dequantized<F>(ws, nullptr) * s.cwiseInverse().asDiagonal();
        loss[i] = (org - X * wq.transpose()).squaredNorm() / static_cast<double>(org.size());
        candidates[i] = std::move(s);
    });
    int best_i = 0;  // the first minimum, as a sequential search with a strict < finds it
    for (int i = 1; i < grid_points; ++i)
        if (loss[static_cast<std::size_t>(i)] < loss[static_cast<std::size_t>(best_i)]) best_i = i;
    const Eigen::VectorXd& best_s = candidates[static_cast<std::size_t>(best_i)];
    F packed;
    const row_major_d ws = W * best_s.asDiagonal();
    rtn_dequantized<F>(ws, &packed);
    aligned_buffer<float> scales(k);
    for (index_t j = 0; j < k; ++j) scales[j] = static_cast<float>(best_s[j]);
    return awq_weights<F>(std::move(packed), std::move(scales), static_cast<double>(best_i) / grid_points);
}

}  // namespace detail

/// AWQ: activation-aware per-channel scaling searched on calibration data, then RTN on an
/// asymmetric grid with groups of Group input columns.
template <int Bits, int Group = 128, class Scale = float>
struct awq {
    static_assert(Group == per_row || Group == 32 || Group == 64 || Group == 128,
                  "awq: Group must be per_row, 32, 64 or 128");
    using packed_format = packed_weights<Bits, Group, grid::asymmetric, Scale>;
    using format = awq_weights<packed_format>;
    static constexpr const char* name = "awq";

    /// Points of the alpha grid {0, 1/n, ..., (n-1)/n}.
    int grid_points = 20;

    /// Quantizes W [out][in] with calibration inputs X [tokens][in].
    format quantize(matrix_view<const float> w, matrix_view<const float> x) const {
        return detail::awq_quantize<packed_format>(w, x, grid_points);
    }
};

}  // namespace kite::quant
