#pragma once
// Shared by the flat index tests: data generators and the comparison of a search result with
// the double-precision oracle (kite/retrieval/detail/flat_reference.hpp).

#include <algorithm>
#include <cmath>
#include <random>
#include <string>
#include <unordered_map>
#include <vector>

#include "kite/retrieval/detail/flat_reference.hpp"
#include "kite/retrieval/flat_index.hpp"
#include "kite_test.hpp"

namespace kite::test::flat {

/// Kinds of data the kernels must get right.
enum class data_kind { random, clustered, duplicates, zeros, integers };

inline const char* name(data_kind k) {
    switch (k) {
        case data_kind::random: return "random";
        case data_kind::clustered: return "clustered";
        case data_kind::duplicates: return "duplicates";
        case data_kind::zeros: return "zeros";
        default: return "integers";
    }
}

/// n x d floats of the given kind, fixed seed.
inline kite::matrix<float> make_data(data_kind kind, index_t n, index_t d, std::uint64_t seed) {
    kite::matrix<float> m(n, d);
    std::mt19937_64 g(seed);
    std::normal_distribution<float> nd(0.f, 1.f);
    switch (kind) {
        case data_kind::random:
            for (auto& v : m.flat()) v = nd(g);
            break;
        case data_kind::clustered: {  // 4 tight clusters far from the origin
            std::vector<float> centers(4 * d);
            for (auto& c : centers) c = 10.f * nd(g);
            for (index_t i = 0; i < n; ++i)
                for (index_t j = 0; j < d; ++j) m(i, j) = centers[(i % 4) * d + j] + 1e-2f * nd(g);
            break;
        }
        case data_kind::duplicates: {  // every vector appears several times
            const index_t distinct = std::max<index_t>(1, n / 5);
            std::vector<float> pool(distinct * d);
            for (auto& v : pool) v = nd(g);
            std::uniform_int_distribution<index_t> pick(0, distinct - 1);
            for (index_t i = 0; i < n; ++i) {
                const index_t p = pick(g);
                for (index_t j = 0; j < d; ++j) m(i, j) = pool[p * d + j];
            }
            break;
        }
        case data_kind::zeros:  // zero vectors mixed with random ones
            for (index_t i = 0; i < n; ++i)
                if (i % 3 != 0)
                    for (index_t j = 0; j < d; ++j) m(i, j) = nd(g);
            break;
        case data_kind::integers: {  // small integers: float arithmetic is exact, ties are real
            std::uniform_int_distribution<int> u(-2, 2);
            for (auto& v : m.flat()) v = static_cast<float>(u(g));
            break;
        }
    }
    return m;
}

/// The oracle's view of one (base, queries) pair: every id ranked per query in double
/// precision, and each id's exact score.
template <class Metric>
struct oracle {
    std::vector<std::vector<kite::retrieval::reference::hit>> ranked;  // [query] best first
    std::vector<std::unordered_map<kite::id_t, double>> score;               // [query] id -> score
    std::vector<double> floor;                                         // [query] absolute tolerance
    index_t n = 0;

    oracle(kite::matrix_view<const float> base, std::span<const kite::id_t> ids, kite::matrix_view<const float> queries)
        : n(base.rows()) {
        double max_norm = 0;
        for (index_t i = 0; i < n; ++i) {
            double s = 0;
            for (float v : base.row(i)) s += double(v) * v;
            max_norm = std::max(max_norm, s);
        }
        for (index_t q = 0; q < queries.rows(); ++q) {
            ranked.push_back(kite::retrieval::reference::rank_all<Metric>(base, ids, queries.row(q).data()));
            score.emplace_back();
            for (const auto& h : ranked.back()) score.back()[h.id] = h.score;
            double qn = 0;
            for (float v : queries.row(q)) qn += double(v) * v;
            // Scores near zero are judged against the magnitudes that produced them.
            floor.push_back(Metric::normalizes ? 1e-5 : 1e-5 * (qn + max_norm) + 1e-6);
        }
    }
};

/// Checks `got` against the oracle: same neighbours (a different id only where the oracle's
/// scores tie within the tolerance), distances within 1e-4 relative (plus a floor for scores
/// near zero), ids distinct, padding with -1 and the order's worst value. `exact_ties`: data
/// whose float arithmetic is exact must match id for id (ties broken by the lower id).
template <class Metric>
void check_against_oracle(const oracle<Metric>& o, index_t k, const kite::retrieval::search_result& got,
                          bool exact_ties, const std::string& what) {
    using order = typename Metric::order;
    REQUIRE(got.distances.rows() == o.ranked.size());
    REQUIRE(got.labels.rows() == o.ranked.size());
    REQUIRE(got.labels.cols() == k);
    REQUIRE(got.distances.cols() == k);
    for (index_t q = 0; q < o.ranked.size(); ++q) {
        std::vector<kite::id_t> seen;
        for (index_t i = 0; i < k; ++i) {
            const float d = got.distances(q, i);
            const kite::id_t l = got.labels(q, i);
            if (i >= o.n) {
                if (l != -1 || d != order::worst())
                    FAIL_CHECK(what << " query " << q << " rank " << i << ": got (" << d << ", " << l
                                    << "), expected padding (" << order::worst() << ", -1)");
                continue;
            }
            const auto& ref = o.ranked[q][i];
            const double tol = 1e-4 * std::abs(ref.score) + o.floor[q];
            const auto it = o.score.at(q).find(l);
            bool ok = it != o.score.at(q).end() && std::abs(d - ref.score) <= tol &&
                      std::abs(d - it->second) <= tol &&  // the reported distance is l's own
                      std::find(seen.begin(), seen.end(), l) == seen.end();
            if (ok && l != ref.id) ok = !exact_ties && std::abs(it->second - ref.score) <= tol;
            if (!ok)
                FAIL_CHECK(what << " query " << q << " rank " << i << ": got (" << d << ", " << l
                                << "), oracle (" << ref.score << ", " << ref.id << ")");
            seen.push_back(l);
        }
    }
}

}  // namespace kite::test::flat
