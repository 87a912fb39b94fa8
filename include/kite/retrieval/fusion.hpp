#pragma once
/// @file kite/retrieval/fusion.hpp
/// Rank fusion policies (namespace kite::fusion), each a fusion_policy:
///   rrf<K>        reciprocal rank fusion, score = sum_i 1 / (k + rank_i), ranks from 1
///                 (Cormack et al. 2009); K = 60 by default, `k` settable at run time
///                 (the seed's example uses 5);
///   weighted_rrf  sum_i w_i / (k + rank_i); a weight of zero removes a retriever;
///   convex<N>     sum_i w_i * norm_i(score) with normalisation N (minmax or zscore);
///   comb_sum<N>   sum_i norm_i(score);  comb_mnz<N>  comb_sum x number of lists containing it.
/// Input scores must be "larger is better" (kite's retrievers guarantee it). Documents absent
/// from a list contribute nothing from it. Equal fused scores are ordered by first appearance:
/// the earlier list, then the better rank in it — deterministic, and the order the seed's
/// Python (a stable sort over insertion order) produces.

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <span>
#include <vector>

#include "kite/core/error.hpp"
#include "kite/retrieval/ranking.hpp"

namespace kite::fusion {

using kite::retrieval::ranking;

/// How per-list scores are made comparable before they are combined.
enum class normalization {
    none,    ///< raw scores
    minmax,  ///< (s - min) / (max - min); 1 when all scores of the list are equal
    zscore,  ///< (s - mean) / stddev (population); 0 when the list has no spread
};

namespace detail {

struct contribution {
    id_t id;
    double value;
    std::size_t first;  // order of first appearance: list-major, rank-minor
};

/// Sums contributions per id, counts lists per id, sorts by (score desc, first appearance).
/// `mnz` multiplies each sum by the number of lists that contained the id.
inline ranking combine(std::vector<contribution>& items, std::size_t k, bool mnz) {
    std::sort(items.begin(), items.end(), [](const contribution& a, const contribution& b) {
        return a.id < b.id || (a.id == b.id && a.first < b.first);
    });
    struct acc {
        id_t id;
        double score;
        std::size_t first;
    };
    std::vector<acc> docs;
    docs.reserve(items.size());
    for (std::size_t i = 0; i < items.size();) {
        std::size_t j = i;
        double s = 0;
        while (j < items.size() && items[j].id == items[i].id) s += items[j++].value;
        if (mnz) s *= static_cast<double>(j - i);
        docs.push_back({items[i].id, s, items[i].first});
        i = j;
    }
    const auto better = [](const acc& a, const acc& b) {
        return a.score > b.score || (a.score == b.score && a.first < b.first);
    };
    const std::size_t n = std::min(k, docs.size());
    std::partial_sort(docs.begin(), docs.begin() + static_cast<std::ptrdiff_t>(n), docs.end(), better);
    ranking out(n);
    for (std::size_t i = 0; i < n; ++i) out[i] = {static_cast<float>(docs[i].score), docs[i].id};
    return out;
}

inline void require_k(std::size_t k, const char* who) {
    KITE_REQUIRE(k >= 1, invalid_argument, who, ": k = 0; expected k >= 1");
}

inline void require_weights(std::span<const double> w, std::size_t lists, const char* who) {
    KITE_REQUIRE(w.empty() || w.size() == lists, shape_error, who, ": ", w.size(),
                 " weights for ", lists, " rankings; expected one weight per ranking");
    for (std::size_t i = 0; i < w.size(); ++i)
        KITE_REQUIRE(std::isfinite(w[i]) && w[i] >= 0, invalid_argument, who, ": weight[", i,
                     "] = ", w[i], "; expected a finite weight >= 0");
}

inline std::vector<contribution> reciprocal_ranks(std::span<const ranking> lists, double k,
                                                  std::span<const double> weights) {
    std::vector<contribution> items;
    std::size_t order = 0;
    for (std::size_t l = 0; l < lists.size(); ++l) {
        const double w = weights.empty() ? 1.0 : weights[l];
        if (w == 0) {
            order += lists[l].size();
            continue;
        }
        for (std::size_t r = 0; r < lists[l].size(); ++r)
            items.push_back({lists[l][r].id, w / (k + static_cast<double>(r + 1)), order++});
    }
    return items;
}

inline std::vector<double> normalized(const ranking& list, normalization n) {
    std::vector<double> s(list.size());
    for (std::size_t i = 0; i < list.size(); ++i) s[i] = list[i].score;
    if (s.empty() || n == normalization::none) return s;
    if (n == normalization::minmax) {
        const auto [lo, hi] = std::minmax_element(s.begin(), s.end());
        const double a = *lo, b = *hi;
        for (auto& x : s) x = b > a ? (x - a) / (b - a) : 1.0;
    } else {
        double mean = 0;
        for (double x : s) mean += x;
        mean /= static_cast<double>(s.size());
        double var = 0;
        for (double x : s) var += (x - mean) * (x - mean);
        const double sd = std::sqrt(var / static_cast<double>(s.size()));
        for (auto& x : s) x = sd > 0 ? (x - mean) / sd : 0.0;
    }
    return s;
}

inline std::vector<contribution> normalized_scores(std::span<const ranking> lists, normalization n,
                                                   std::span<const double> weights) {
    std::vector<contribution> items;
    std::size_t order = 0;
    for (std::size_t l = 0; l < lists.size(); ++l) {
        const double w = weights.empty() ? 1.0 : weights[l];
        if (w == 0) {
            order += lists[l].size();
            continue;
        }
        const auto s = normalized(lists[l], n);
        for (std::size_t r = 0; r < s.size(); ++r) {
            KITE_REQUIRE(std::isfinite(lists[l][r].score), invalid_argument, "score fusion: ranking ",
                         l, " has score ", lists[l][r].score, " at rank ", r + 1,
                         "; expected finite scores");
            items.push_back({lists[l][r].id, w * s[r], order++});
        }
    }
    return items;
}

}  // namespace detail

/// Reciprocal rank fusion with constant K (default 60); `k` can be changed at run time.
template <int K = 60>
struct rrf {
    static_assert(K >= 0, "rrf<K>: K must be >= 0");
    double k = K;  ///< the rank constant actually used

    /// Fused top `top` of `lists` (each best first).
    ranking fuse(std::span<const ranking> lists, std::size_t top) const {
        detail::require_k(top, "rrf::fuse");
        KITE_REQUIRE(std::isfinite(k) && k >= 0, invalid_argument, "rrf: k = ", k,
                     "; expected a finite constant >= 0");
        auto items = detail::reciprocal_ranks(lists, k, {});
        return detail::combine(items, top, false);
    }
};

/// Reciprocal rank fusion with one weight per retriever (empty weights = all 1).
struct weighted_rrf {
    double k = 60;
    std::vector<double> weights;

    ranking fuse(std::span<const ranking> lists, std::size_t top) const {
        detail::require_k(top, "weighted_rrf::fuse");
        detail::require_weights(weights, lists.size(), "weighted_rrf");
        KITE_REQUIRE(std::isfinite(k) && k >= 0, invalid_argument, "weighted_rrf: k = ", k,
                     "; expected a finite constant >= 0");
        auto items = detail::reciprocal_ranks(lists, k, weights);
        return detail::combine(items, top, false);
    }
};

/// Convex combination of normalised scores: sum_i w_i * norm(s_i) (empty weights = all 1).
template <normalization N = normalization::minmax>
struct convex {
    std::vector<double> weights;

    ranking fuse(std::span<const ranking> lists, std::size_t top) const {
        detail::require_k(top, "convex::fuse");
        detail::require_weights(weights, lists.size(), "convex");
        auto items = detail::normalized_scores(lists, N, weights);
        return detail::combine(items, top, false);
    }
};

/// CombSUM (Fox & Shaw 1994): sum of normalised scores.
template <normalization N = normalization::minmax>
struct comb_sum {
    ranking fuse(std::span<const ranking> lists, std::size_t top) const {
        detail::require_k(top, "comb_sum::fuse");
        auto items = detail::normalized_scores(lists, N, {});
        return detail::combine(items, top, false);
    }
};

/// CombMNZ (Fox & Shaw 1994): CombSUM times the number of lists that retrieved the document.
template <normalization N = normalization::minmax>
struct comb_mnz {
    ranking fuse(std::span<const ranking> lists, std::size_t top) const {
        detail::require_k(top, "comb_mnz::fuse");
        auto items = detail::normalized_scores(lists, N, {});
        return detail::combine(items, top, true);
    }
};

}  // namespace kite::fusion
