#pragma once
/// @file kite/train/loss.hpp
/// The multiple-negatives-ranking (MNR) loss of sentence-transformers'
/// MultipleNegativesRankingLoss: for a batch of B (anchor, positive) pairs, anchor i should
/// score its own positive above every other candidate of the batch (the other positives and any
/// hard negatives appended after them). Scores are cosine similarities times `scale` (20 by
/// default), the loss is the mean cross-entropy with target i for row i.
///
///   auto r = train::mnr_loss(anchors, candidates);   // B x d, C x d (C >= B; rows B.. are hard negatives)
///   r.loss;  r.d_anchors;  r.d_candidates;            // gradients with respect to the inputs
///
/// Inputs are the raw (unnormalised) sentence embeddings: the cosine is taken inside, as
/// sentence-transformers' cos_sim does, and the gradients flow back through the normalisation.

#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "kite/core/config.hpp"
#include "kite/core/error.hpp"
#include "kite/core/matrix.hpp"
#include "kite/train/grad.hpp"

namespace kite::train {

template <class T>
struct mnr_result {
    T loss = 0;
    matrix<T> d_anchors, d_candidates;
    /// Rows whose own positive scored highest (in-batch accuracy), for progress reports.
    index_t correct = 0;
};

/// MNR loss and its gradients. anchors: B x d, candidates: C x d with C >= B, candidate i the
/// positive of anchor i. kite::shape_error for mismatched shapes or an empty batch;
/// kite::invalid_argument for a scale that is not finite and positive.
template <class T>
mnr_result<T> mnr_loss(matrix_view<const T> anchors, matrix_view<const T> candidates, T scale = T(20)) {
    const index_t B = anchors.rows(), C = candidates.rows(), d = anchors.cols();
    KITE_REQUIRE(B > 0, shape_error, "train::mnr_loss: the batch is empty; expected at least one pair");
    KITE_REQUIRE(candidates.cols() == d, shape_error, "train::mnr_loss: anchors have ", d, " columns, candidates ",
                 candidates.cols(), "; expected equal");
    KITE_REQUIRE(C >= B, shape_error, "train::mnr_loss: ", C, " candidates for ", B,
                 " anchors; expected at least one (the positive) per anchor");
    KITE_REQUIRE(std::isfinite(scale) && scale > 0, invalid_argument, "train::mnr_loss: scale = ", scale,
                 "; expected a finite value > 0");
    // Normalise every row.
    const auto normalize_rows = [d](matrix_view<const T> x) {
        matrix<T> u(x.rows(), d);
        for (index_t i = 0; i < x.rows(); ++i) {
            const auto r = l2_normalize(std::span<const T>(&x(i, 0), d));
            std::copy(r.begin(), r.end(), &u(i, 0));
        }
        return u;
    };
    const matrix<T> a = normalize_rows(anchors), c = normalize_rows(candidates);
    // Scores, softmax per row, loss.
    mnr_result<T> r{T(0), matrix<T>(B, d, T(0)), matrix<T>(C, d, T(0)), 0};
    matrix<T> ds(B, C);  // dLoss / dScore
    for (index_t i = 0; i < B; ++i) {
        std::vector<T> s(C);
        T best = -std::numeric_limits<T>::infinity();
        index_t arg = 0;
        for (index_t j = 0; j < C; ++j) {
            T dot = 0;
            for (index_t k = 0; k < d; ++k) dot += a(i, k) * c(j, k);
            s[j] = scale * dot;
            if (s[j] > best) best = s[j], arg = j;
        }
        r.correct += arg == i;
        // log-sum-exp as best + log1p(sum of the others): exact when one score dominates.
        T rest = 0;
        for (index_t j = 0; j < C; ++j)
            if (j != arg) rest += std::exp(s[j] - best);
        const T z = T(1) + rest;
        r.loss += (best - s[i]) + std::log1p(rest);
        for (index_t j = 0; j < C; ++j) ds(i, j) = (std::exp(s[j] - best) / z - (j == i ? T(1) : T(0))) / T(B);
    }
    r.loss /= T(B);
    // Through the scores: dA_hat = scale dS C_hat, dC_hat = scale dS^T A_hat; then through the
    // normalisation, row by row. `weight(row, other)` reads dS for one side or its transpose.
    std::vector<T> du(d), dv(d);
    const auto back = [&](matrix_view<const T> raw, const matrix<T>& unit, const matrix<T>& other, auto weight,
                          matrix<T>& out) {
        for (index_t row = 0; row < raw.rows(); ++row) {
            for (index_t k = 0; k < d; ++k) {
                T s = 0;
                for (index_t o = 0; o < other.rows(); ++o) s += weight(row, o) * other(o, k);
                du[k] = scale * s;
            }
            l2_normalize_backward(std::span<const T>(&raw(row, 0), d), std::span<const T>(&unit(row, 0), d),
                                  std::span<const T>(du), std::span<T>(dv));
            std::copy(dv.begin(), dv.end(), &out(row, 0));
        }
    };
    back(anchors, a, c, [&](index_t i, index_t j) { return ds(i, j); }, r.d_anchors);
    back(candidates, c, a, [&](index_t j, index_t i) { return ds(i, j); }, r.d_candidates);
    return r;
}

}  // namespace kite::train
