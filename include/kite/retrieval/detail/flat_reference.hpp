#pragma once
/// @file kite/retrieval/detail/flat_reference.hpp
/// The flat index's oracle: brute-force search in double precision, sorted by score with ties
/// broken by the lower id, padded like FAISS. Slow and obvious on purpose; tests compare every
/// kernel with it.

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <limits>
#include <span>
#include <type_traits>
#include <vector>

#include "kite/core/config.hpp"
#include "kite/core/matrix.hpp"
#include "kite/retrieval/concepts.hpp"

namespace kite::retrieval::reference {

/// One result of the reference search, in double precision.
struct hit {
    double score;
    id_t id;
};

/// Exact score of two vectors for the metric (normalising first for cosine).
template <vector_metric Metric>
double score(const float* a, const float* b, index_t d) {
    double s = 0, na = 0, nb = 0;
    for (index_t i = 0; i < d; ++i) {
        if constexpr (std::is_same_v<typename Metric::order, kite::smaller_first>) {
            const double t = static_cast<double>(a[i]) - b[i];
            s += t * t;
        } else {
            s += static_cast<double>(a[i]) * b[i];
        }
        na += static_cast<double>(a[i]) * a[i];
        nb += static_cast<double>(b[i]) * b[i];
    }
    if constexpr (Metric::normalizes) {
        const double den = std::sqrt(na) * std::sqrt(nb);
        s = den > 0 ? s / den : 0.0;
    }
    return s;
}

/// All (score, id) of `base` against query `y`, best first, ties by lower id.
template <vector_metric Metric>
std::vector<hit> rank_all(matrix_view<const float> base, std::span<const id_t> ids, const float* y) {
    std::vector<hit> all(base.rows());
    for (index_t i = 0; i < base.rows(); ++i) all[i] = {score<Metric>(base.row(i).data(), y, base.cols()), ids[i]};
    std::sort(all.begin(), all.end(), [](const hit& a, const hit& b) {
        const bool better = std::is_same_v<typename Metric::order, kite::smaller_first> ? a.score < b.score
                                                                                         : a.score > b.score;
        return better || (a.score == b.score && a.id < b.id);
    });
    return all;
}

/// The k best per query: [nq][k] scores and ids, missing results padded with the order's
/// worst score and id -1.
template <vector_metric Metric>
void search(matrix_view<const float> base, std::span<const id_t> ids, matrix_view<const float> queries,
            index_t k, std::vector<double>& scores, std::vector<id_t>& labels) {
    scores.assign(queries.rows() * k, static_cast<double>(Metric::order::worst()));
    labels.assign(queries.rows() * k, -1);
    for (index_t j = 0; j < queries.rows(); ++j) {
        const auto all = rank_all<Metric>(base, ids, queries.row(j).data());
        for (index_t i = 0; i < std::min(k, all.size()); ++i) {
            scores[j * k + i] = all[i].score;
            labels[j * k + i] = all[i].id;
        }
    }
}

}  // namespace kite::retrieval::reference
