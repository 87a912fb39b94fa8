#pragma once
/// @file kite/quant/llm_int8.hpp
/// LLM.int8() (Dettmers et al. 2022, "LLM.int8(): 8-bit Matrix Multiplication for Transformers
/// at Scale"): vector-wise int8 with mixed-precision decomposition.
///
///   weights      int8, one absmax scale per output row ("per column of W" in the paper's
///                [in][out] notation);
///   activations  int8, one absmax scale per row of X (per token), computed over the
///                non-outlier columns;
///   outliers     input feature columns where any |X[t][c]| >= Threshold (6.0 by default) in
///                the batch go through a float path: Y += X[:, O] W[:, O]^T, with 16-bit weights
///                kept for the systematic outlier columns of the calibration data (quantize(W, X):
///                |x| >= Threshold in at least 6% of the tokens) and the int8-dequantized weights
///                for columns that turn out to be outliers only at run time (as bitsandbytes
///                does).
///   Y[t][r] = s_w[r] s_x[t] sum_{c not in O} q_w[r][c] q_x[t][c] + sum_{c in O} X[t][c] W16[r][c]
///
/// The integer part runs on AVX-512 VNNI (kite/quant/act_int8.hpp). Threshold = infinity turns
/// the decomposition off: plain vector-wise int8 (W8A8), which large activation outliers ruin.

#include <cmath>
#include <cstdint>
#include <limits>
#include <span>
#include <vector>

#include "kite/core/error.hpp"
#include "kite/core/half.hpp"
#include "kite/core/matrix.hpp"
#include "kite/core/parallel.hpp"
#include "kite/core/simd.hpp"
#include "kite/quant/act_int8.hpp"
#include "kite/quant/arch.hpp"
#include "kite/quant/detail/scratch.hpp"
#include "kite/quant/format.hpp"
#include "kite/quant/gptq.hpp"
#include "kite/quant/rtn.hpp"

namespace kite::quant {

/// Weights of an llm_int8 layer: per-row int8 plus 16-bit copies of the calibration outlier
/// columns. See the file comment.
class llm_int8_weights {
public:
    using packed_type = packed_weights<8, per_row, grid::symmetric, float>;

    llm_int8_weights() = default;
    /// `cols` are the static outlier columns (sorted, unique), `w16` their weights, one row per
    /// outlier column: [cols.size()][rows].
    llm_int8_weights(packed_type w, float threshold, std::vector<std::uint32_t> cols, matrix<fp16> w16)
        : w_(std::move(w)), threshold_(threshold), cols_(std::move(cols)), w16_(std::move(w16)),
          slot_(w_.cols(), -1) {
        KITE_REQUIRE(w16_.rows() == cols_.size() && (cols_.empty() || w16_.cols() == w_.rows()),
                     shape_error, "llm_int8_weights: outlier weights have shape ", w16_.rows(), " x ", w16_.cols(),
                     "; expected ", cols_.size(), " x ", w_.rows());
        for (std::size_t i = 0; i < cols_.size(); ++i) {
            KITE_REQUIRE(cols_[i] < w_.cols() && (i == 0 || cols_[i] > cols_[i - 1]), invalid_argument,
                         "llm_int8_weights: outlier column ", cols_[i], "; expected sorted unique columns < ", w_.cols());
            slot_[cols_[i]] = static_cast<std::int32_t>(i);
        }
    }
    llm_int8_weights(llm_int8_weights&&) noexcept = default;
    llm_int8_weights& operator=(llm_int8_weights&&) noexcept = default;
    llm_int8_weights clone() const { return llm_int8_weights(w_.clone(), threshold_, cols_, w16_.clone()); }

    index_t rows() const noexcept { return w_.rows(); }
    index_t cols() const noexcept { return w_.cols(); }
    std::size_t bytes() const noexcept {
        return w_.bytes() + w16_.size() * sizeof(fp16) + cols_.size() * sizeof(std::uint32_t);
    }
    /// The weight used for (r, c): the 16-bit copy for a calibration outlier column, else int8.
    float value(index_t r, index_t c) const noexcept {
        return slot_[c] >= 0 ? w16_(static_cast<index_t>(slot_[c]), r).to_float() : w_.value(r, c);
    }

    const packed_type& weights() const noexcept { return w_; }
    float threshold() const noexcept { return threshold_; }
    /// Columns whose 16-bit weights are stored (outliers in the calibration data).
    std::span<const std::uint32_t> static_outliers() const noexcept { return cols_; }

    /// The weights of column c as the float path uses them, for all rows: out [rows].
    void outlier_column(index_t c, float* out) const noexcept {
        if (slot_[c] >= 0) {
            detail::fp16_to_float(w16_.row(static_cast<index_t>(slot_[c])).data(), out, rows());
        } else {
            for (index_t r = 0; r < rows(); ++r) out[r] = w_.value(r, c);
        }
    }

    /// mask[c] = 1 for the columns that take the float path for this batch: the static ones and
    /// those with |X[t][c]| >= threshold in some row t.
    void outlier_mask(matrix_view<const float> X, std::uint8_t* mask) const noexcept {
        const index_t k = cols();
        for (index_t c = 0; c < k; ++c) mask[c] = slot_[c] >= 0;
        for (index_t t = 0; t < X.rows(); ++t) {
            const float* x = X.row(t).data();
            for (index_t c = 0; c < k; ++c) mask[c] |= static_cast<std::uint8_t>(std::abs(x[c]) >= threshold_);
        }
    }

private:
    packed_type w_;
    float threshold_ = 6.0f;
    std::vector<std::uint32_t> cols_;
    matrix<fp16> w16_;               // [static outliers][rows]
    std::vector<std::int32_t> slot_;  // [cols]: index into cols_, or -1
};

/// Y = X W^T with LLM.int8's decomposition; threads over rows of W.
template <class Arch = arch::best>
void gemm(const llm_int8_weights& w, matrix_view<const float> X, matrix_view<float> Y, int threads = 0, Arch = {}) {
    detail::check_gemm_shapes("quant::gemm", w.rows(), w.cols(), X, Y);
    const index_t b = X.rows(), k = w.cols(), m = w.rows();
    if (b == 0) return;
    std::uint8_t* mask = detail::scratch<std::uint8_t, 8>(k);
    w.outlier_mask(X, mask);
    const auto xa = detail::quantize_batch(X, false, mask, false);
    detail::a8_product(Arch{}, w.weights(), xa, b, Y, threads);
    // the float path: one weight column at a time, added to every token's output
    float* wcol = detail::scratch<float, 9>(m);
    for (index_t c = 0; c < k; ++c) {
        if (!mask[c]) continue;
        w.outlier_column(c, wcol);
        for (index_t t = 0; t < b; ++t) simd::axpy(X(t, c), wcol, Y.row(t).data(), m);
    }
}

/// y = W x with LLM.int8's decomposition.
template <class Arch = arch::best>
void gemv(const llm_int8_weights& w, std::span<const float> x, std::span<float> y, int threads = 0, Arch = {}) {
    detail::check_gemv_shapes("quant::gemv", w.rows(), w.cols(), x.size(), y.size());
    gemm(w, matrix_view<const float>(x.data(), 1, x.size()), matrix_view<float>(y.data(), 1, y.size()), threads,
         Arch{});
}

/// The weights the layer uses (16-bit copies for static outlier columns, int8 elsewhere).
inline matrix<float> dequantize(const llm_int8_weights& w) {
    matrix<float> d(w.rows(), w.cols(), uninitialized);
    for (index_t r = 0; r < w.rows(); ++r)
        for (index_t c = 0; c < w.cols(); ++c) d(r, c) = w.value(r, c);
    return d;
}

namespace reference {

/// The oracle of llm_int8's gemm: the decomposition written out element by element in double.
inline void gemm(const llm_int8_weights& w, matrix_view<const float> X, matrix_view<float> Y) {
    kite::quant::detail::check_gemm_shapes("reference::gemm", w.rows(), w.cols(), X, Y);
    const index_t k = w.cols();
    std::vector<std::uint8_t> mask(k);
    w.outlier_mask(X, mask.data());
    const auto& p = w.weights();
    for (index_t t = 0; t < X.rows(); ++t) {
        float amax = 0;
        for (index_t c = 0; c < k; ++c)
            if (!mask[c]) amax = std::max(amax, std::abs(X(t, c)));
        const bool zero = !(amax >= std::numeric_limits<float>::min());
        const float inv = zero ? 0.0f : 127.0f / amax;
        const double sx = zero ? 1.0 : static_cast<double>(amax / 127.0f);
        for (index_t r = 0; r < w.rows(); ++r) {
            double s = 0;
            for (index_t c = 0; c < k; ++c) {
                if (mask[c]) {
                    s += static_cast<double>(X(t, c)) * w.value(r, c);
                } else {
                    const double q = std::clamp(std::nearbyint(X(t, c) * inv), -127.0f, 127.0f);
                    s += static_cast<double>(p.scale(r, 0)) * p.level(r, c) * sx * q;
                }
            }
            Y(t, r) = static_cast<float>(s);
        }
    }
}

/// y = W x through reference::gemm.
inline void gemv(const llm_int8_weights& w, std::span<const float> x, std::span<float> y) {
    gemm(w, matrix_view<const float>(x.data(), 1, x.size()), matrix_view<float>(y.data(), 1, y.size()));
}

}  // namespace reference

/// LLM.int8: per-row int8 weights; activation columns whose magnitude reaches `threshold` (the
/// paper's 6.0; infinity disables the decomposition) are multiplied with 16-bit weights. The
/// threshold is a member rather than a template argument so that compilers without float
/// non-type template arguments (clang before 15, Debian 12's clang) read this header:
///   quantize(llm_int8{}, W)   quantize(llm_int8{.threshold = 4.0f}, W, X)
struct llm_int8 {
    using format = llm_int8_weights;
    static constexpr const char* name = "llm_int8";

    /// Activations at or above this magnitude are outliers (any value > 0; infinity: none).
    float threshold = 6.0f;
    /// A calibration column is a systematic outlier (16-bit weights kept) when at least this
    /// fraction of its tokens reach the threshold (the paper's 6% of sequence positions).
    double min_fraction = 0.06;

    /// Per-row int8 weights; outlier columns are found at run time from the activations.
    format quantize(matrix_view<const float> w) const {
        check_options();
        detail::require_weights(w, "llm_int8::quantize");
        return format(detail::rtn_quantize<format::packed_type, float>(w), threshold, {}, matrix<fp16>(0, w.rows()));
    }

    /// As quantize(W), and columns where the calibration inputs X reach the threshold in at least
    /// min_fraction of the tokens keep 16-bit weights.
    format quantize(matrix_view<const float> w, matrix_view<const float> x) const {
        check_options();
        detail::require_weights(w, "llm_int8::quantize");
        detail::require_calibration(x, w.cols(), "llm_int8::quantize");
        std::vector<std::uint32_t> cols;
        for (index_t c = 0; c < w.cols(); ++c) {
            index_t hits = 0;
            for (index_t t = 0; t < x.rows(); ++t) hits += std::abs(x(t, c)) >= threshold;
            if (static_cast<double>(hits) >= min_fraction * static_cast<double>(x.rows()) && hits > 0)
                cols.push_back(static_cast<std::uint32_t>(c));
        }
        matrix<fp16> w16(cols.size(), w.rows());
        for (std::size_t i = 0; i < cols.size(); ++i)
            for (index_t r = 0; r < w.rows(); ++r) w16(i, r) = fp16(w(r, cols[i]));
        return format(detail::rtn_quantize<format::packed_type, float>(w), threshold, std::move(cols), std::move(w16));
    }

private:
    void check_options() const {
        KITE_REQUIRE(threshold > 0, invalid_argument, "llm_int8: threshold = ", threshold,
                     "; expected a value > 0 (infinity disables the outlier decomposition)");
        KITE_REQUIRE(min_fraction >= 0 && min_fraction <= 1, invalid_argument, "llm_int8: min_fraction = ",
                     min_fraction, "; expected 0 <= min_fraction <= 1");
    }
};

}  // namespace kite::quant
