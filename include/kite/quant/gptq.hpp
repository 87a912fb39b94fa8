#pragma once
/// @file kite/quant/gptq.hpp
/// GPTQ (Frantar et al. 2022, "GPTQ: Accurate Post-Training Quantization for Generative
/// Pre-trained Transformers", Algorithm 1): quantize W column by column and spread each
/// column's rounding error over the columns not yet quantized, weighted by the inverse Hessian
/// of the layer's squared output error on calibration inputs X.
///
///   H = 2 X^T X + lambda I,  lambda = damp * mean(diag(2 X^T X))  (damp = 0.01)
///   U = upper Cholesky factor of H^-1
///   for each block of 128 columns (lazy batch), for each column j in it:
///       q_j = quant(w_j);  e_j = (w_j - q_j) / U[j][j]
///       w_{j+1..block end} -= e_j U[j][j+1..block end]
///   after the block: W[:, block end:] -= E U[block, block end:]
///
/// plus groups (a grid per G columns, computed when the group's first column is reached, from
/// the already-updated weights) and act-order (columns in order of descending diag(H); with
/// groups, the grids are fixed from W before the loop — "static groups" — so groups stay
/// contiguous in the original column order and the packed layout needs no permutation).
/// Dead inputs (diag(H) = 0) get H[j][j] = 1 and W[:, j] = 0. Everything runs in double; the
/// result equals tools/quant_reference.py's gptq() except at exact rounding ties.
/// Cost: O(n k^2) for H, O(k^3) for the factorisations, O(m k^2) for the updates.

#include <algorithm>
#include <cmath>
#include <numeric>
#include <vector>

#include "kite/core/diagnostics.hpp"
#include "kite/core/error.hpp"
#include "kite/core/matrix.hpp"
#include "kite/core/validate.hpp"
#include "kite/quant/format.hpp"
#include "kite/quant/grid.hpp"
#include "kite/quant/rtn.hpp"

// Eigen/Core comes through kite/core/matrix.hpp inside the GCC 12 region; Cholesky likewise.
KITE_GCC12_AVX512_UNINIT_BEGIN
#include <Eigen/Cholesky>
KITE_GCC12_AVX512_UNINIT_END

namespace kite::quant {

namespace detail {

/// Checks calibration inputs X [n][k] against k input features.
inline void require_calibration(matrix_view<const float> x, index_t k, const char* method) {
    KITE_REQUIRE(x.cols() == k, shape_error, method, ": calibration X has ", x.cols(),
                 " columns; expected in_features = ", k);
    KITE_REQUIRE(x.rows() > 0, shape_error, method, ": calibration X has no rows; expected at least one token");
    require_finite(x, "quantize: calibration X");
}

/// X [n][k] as a column-major double matrix.
inline Eigen::MatrixXd to_double(matrix_view<const float> x) {
    Eigen::MatrixXd d(x.rows(), x.cols());
    for (index_t r = 0; r < x.rows(); ++r)
        for (index_t c = 0; c < x.cols(); ++c) d(r, c) = x(r, c);
    return d;
}

/// GPTQ into packed format F; see the file comment.
template <class F>
F gptq_quantize(matrix_view<const float> w, matrix_view<const float> x, bool act_order, double damp,
                index_t block) {
    constexpr int B = F::bits;
    constexpr grid Z = F::grid_kind;
    using S = typename F::scale_type;
    require_weights(w, "gptq::quantize");
    const index_t m = w.rows(), k = w.cols();
    require_calibration(x, k, "gptq::quantize");
    KITE_REQUIRE(damp > 0 && std::isfinite(damp), invalid_argument, "gptq: damp = ", damp,
                 "; expected a positive fraction of the mean Hessian diagonal (0.01 in the paper)");
    KITE_REQUIRE(block > 0 && (F::group <= 0 || block % index_t(F::group) == 0), invalid_argument,
                 "gptq: block_size = ", block, "; expected a positive multiple of the group size ", F::group);

    Eigen::MatrixXd W = to_double(w);  // [m][k], column-major: columns are the unit of work
    Eigen::MatrixXd H = Eigen::MatrixXd::Zero(k, k);
    {
        const Eigen::MatrixXd Xd = to_double(x);  // [n][k]
        H.selfadjointView<Eigen::Lower>().rankUpdate(Xd.transpose(), 2.0);
        H.triangularView<Eigen::StrictlyUpper>() = H.transpose();
    }
    for (index_t j = 0; j < k; ++j) {
        if (H(j, j) == 0) {  // an input that is always zero: its weights do not matter
            H(j, j) = 1;
            W.col(j).setZero();
        }
    }

    const index_t gc = F::group > 0 ? index_t(F::group) : k;
    const index_t ng = F::group > 0 ? (k + gc - 1) / gc : 1;
    std::vector<group_grid> grids(m * ng);  // [row][group]
    const bool static_grids = F::group <= 0 || act_order;
    if (static_grids) {
        for (index_t r = 0; r < m; ++r)
            for (index_t g = 0; g < ng; ++g)
                grids[r * ng + g] = find_grid<B, Z, S>(W.data() + r + g * gc * m, std::min(gc, k - g * gc), m);
    }

    std::vector<index_t> perm(k);  // perm[j] = original column processed at step j
    std::iota(perm.begin(), perm.end(), index_t{0});
    if (act_order) {
        std::stable_sort(perm.begin(), perm.end(), [&](index_t a, index_t b) { return H(a, a) > H(b, b); });
        Eigen::MatrixXd Wp(m, k), Hp(k, k);
        for (index_t j = 0; j < k; ++j) Wp.col(j) = W.col(perm[j]);
        for (index_t i = 0; i < k; ++i)
            for (index_t j = 0; j < k; ++j) Hp(i, j) = H(perm[i], perm[j]);
        W = std::move(Wp);
        H = std::move(Hp);
    }

    H.diagonal().array() += damp * H.diagonal().mean();
    Eigen::LLT<Eigen::MatrixXd> llt(H);
    KITE_REQUIRE(llt.info() == Eigen::Success, invalid_argument,
                 "gptq: H + lambda I is not positive definite with damp = ", damp, "; expected a larger damp");
    const Eigen::MatrixXd Hinv = llt.solve(Eigen::MatrixXd::Identity(k, k));
    Eigen::LLT<Eigen::MatrixXd> llt_inv(Hinv);
    KITE_REQUIRE(llt_inv.info() == Eigen::Success, invalid_argument,
                 "gptq: H^-1 is not positive definite with damp = ", damp, "; expected a larger damp");
    const Eigen::MatrixXd U = llt_inv.matrixU();

    F out(m, k);
    Eigen::MatrixXd err(m, block);
    for (index_t i1 = 0; i1 < k; i1 += block) {
        const index_t i2 = std::min(i1 + block, k), count = i2 - i1;
        for (index_t i = 0; i < count; ++i) {
            const index_t j = i1 + i, col = perm[j], g = col / gc;
            if (!static_grids && col % gc == 0) {
                for (index_t r = 0; r < m; ++r)
                    grids[r * ng + g] = find_grid<B, Z, S>(W.data() + r + j * m, std::min(gc, count - i), m);
            }
            const double d = U(j, j);
            for (index_t r = 0; r < m; ++r) {
                const group_grid& gg = grids[r * ng + g];
                const double wv = W(r, j);
                const int q = quantize_level<B, Z>(wv, gg);
                out.set_level(r, col, q);
                err(r, i) = (wv - dequantize_level(q, gg)) / d;
            }
            if (j + 1 < i2)
                W.block(0, j + 1, m, i2 - j - 1).noalias() -= err.col(i) * U.block(j, j + 1, 1, i2 - j - 1);
        }
        if (i2 < k) W.rightCols(k - i2).noalias() -= err.leftCols(count) * U.block(i1, i2, count, k - i2);
    }
    for (index_t r = 0; r < out.scale_rows(); ++r)
        for (index_t g = 0; g < ng; ++g) store_grid(out, r, g, grids[r * ng + g]);
    return out;
}

}  // namespace detail

/// GPTQ with Bits-bit levels, groups of Group input columns (or per_row), a symmetric or
/// asymmetric grid (asymmetric by default, as in the paper's experiments) and Scale storage.
/// Runtime options are public members: `gptq<4, 128>{.act_order = true}`.
template <int Bits, int Group = 128, grid Grid = grid::asymmetric, class Scale = float>
struct gptq {
    static_assert(Group == per_row || Group == 32 || Group == 64 || Group == 128,
                  "gptq: Group must be per_row, 32, 64 or 128 (per_tensor has no use with GPTQ)");
    using format = packed_weights<Bits, Group, Grid, Scale>;
    static constexpr const char* name = "gptq";

    /// Quantize columns in order of descending Hessian diagonal (with static group grids).
    bool act_order = false;
    /// lambda = damp * mean(diag(H)).
    double damp = 0.01;
    /// Columns per lazy batch (a multiple of Group).
    index_t block_size = 128;

    /// Quantizes W [out][in] with calibration inputs X [tokens][in].
    format quantize(matrix_view<const float> w, matrix_view<const float> x) const {
        return detail::gptq_quantize<format>(w, x, act_order, damp, block_size);
    }
};

}  // namespace kite::quant
