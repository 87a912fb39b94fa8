#pragma once
/// @file kite/retrieval/eval.hpp
/// Retrieval evaluation (namespace kite::retrieval::eval): per-query metrics with trec_eval's
/// definitions, their means, latency percentiles, and TREC run files.
///
/// Metrics of one query, given its ranking (best first, doc indices) and its judgments
/// (doc index, graded relevance; relevance >= 1 means relevant, as trec_eval's default):
///   hit@k        1 if any of the top k is relevant (the seed's hit rate; trec_eval success.k)
///   recall@k     relevant in the top k / all relevant
///   mrr@k        1 / rank of the first relevant within the top k, else 0
///   ndcg@k       sum_{r<=k} gain_r / log2(r + 1) over the ideal ordering's value, gain =
///                relevance (trec_eval ndcg_cut.k)
///   ap           sum over relevant retrieved of precision at its rank / all relevant (MAP)
/// Rankings are evaluated in the order given (trec_eval re-sorts by score and breaks score ties
/// by document id; write distinct scores to compare). A query with no relevant judgment is not
/// evaluated; a query with an empty ranking scores 0.

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstddef>
#include <filesystem>
#include <map>
#include <span>
#include <string>
#include <string_view>
#include <unordered_set>
#include <vector>

#include "kite/core/error.hpp"
#include "kite/core/io.hpp"
#include "kite/retrieval/ranking.hpp"

namespace kite::retrieval::eval {

/// One relevance judgment of a query: document index and graded relevance.
struct judgment {
    id_t doc;
    int relevance;
};

namespace detail {
inline bool relevant(int rel) noexcept { return rel >= 1; }

inline int relevance_of(id_t doc, std::span<const judgment> qrels) noexcept {
    for (const auto& j : qrels)
        if (j.doc == doc) return j.relevance;
    return 0;
}
inline std::size_t num_relevant(std::span<const judgment> qrels) noexcept {
    std::size_t n = 0;
    for (const auto& j : qrels) n += relevant(j.relevance);
    return n;
}
}  // namespace detail

/// hit@k: 1 when any of the first k results is relevant.
inline double hit_at(std::span<const scored_id> run, std::span<const judgment> qrels, std::size_t k) {
    for (std::size_t r = 0; r < std::min(k, run.size()); ++r)
        if (detail::relevant(detail::relevance_of(run[r].id, qrels))) return 1.0;
    return 0.0;
}

/// recall@k: the share of the relevant documents found in the first k results.
inline double recall_at(std::span<const scored_id> run, std::span<const judgment> qrels, std::size_t k) {
    const std::size_t nrel = detail::num_relevant(qrels);
    if (nrel == 0) return 0.0;
    std::size_t found = 0;
    for (std::size_t r = 0; r < std::min(k, run.size()); ++r)
        found += detail::relevant(detail::relevance_of(run[r].id, qrels));
    return static_cast<double>(found) / static_cast<double>(nrel);
}

/// mrr@k: reciprocal rank of the first relevant result within the first k.
inline double mrr_at(std::span<const scored_id> run, std::span<const judgment> qrels, std::size_t k) {
    for (std::size_t r = 0; r < std::min(k, run.size()); ++r)
        if (detail::relevant(detail::relevance_of(run[r].id, qrels))) return 1.0 / static_cast<double>(r + 1);
    return 0.0;
}

/// ndcg@k with gain = relevance (trec_eval's ndcg_cut).
inline double ndcg_at(std::span<const scored_id> run, std::span<const judgment> qrels, std::size_t k) {
    double dcg = 0;
    for (std::size_t r = 0; r < std::min(k, run.size()); ++r) {
        const int rel = detail::relevance_of(run[r].id, qrels);
        if (rel > 0) dcg += rel / std::log2(static_cast<double>(r) + 2.0);
    }
    std::vector<int> gains;
    for (const auto& j : qrels)
        if (j.relevance > 0) gains.push_back(j.relevance);
    std::sort(gains.begin(), gains.end(), std::greater<>());
    double idcg = 0;
    for (std::size_t r = 0; r < std::min(k, gains.size()); ++r)
        idcg += gains[r] / std::log2(static_cast<double>(r) + 2.0);
    return idcg > 0 ? dcg / idcg : 0.0;
}

/// Average precision over the whole ranking (trec_eval's map for one query).
inline double average_precision(std::span<const scored_id> run, std::span<const judgment> qrels) {
    const std::size_t nrel = detail::num_relevant(qrels);
    if (nrel == 0) return 0.0;
    double sum = 0;
    std::size_t found = 0;
    for (std::size_t r = 0; r < run.size(); ++r) {
        if (detail::relevant(detail::relevance_of(run[r].id, qrels))) {
            ++found;
            sum += static_cast<double>(found) / static_cast<double>(r + 1);
        }
    }
    return sum / static_cast<double>(nrel);
}

/// A metric named as in kite-eval's output: "ndcg@10", "recall@100", "hit@1", "mrr@10", "map".
inline double metric(std::string_view name, std::span<const scored_id> run, std::span<const judgment> qrels) {
    if (name == "map") return average_precision(run, qrels);
    const auto at = name.find('@');
    KITE_REQUIRE(at != std::string_view::npos && at + 1 < name.size(), invalid_argument,
                 "eval: unknown metric '", name, "'; expected map or <ndcg|recall|hit|mrr>@k");
    std::size_t k = 0;
    for (char c : name.substr(at + 1)) {
        KITE_REQUIRE(c >= '0' && c <= '9', invalid_argument, "eval: metric '", name,
                     "' has a bad cutoff; expected digits after @");
        k = k * 10 + static_cast<std::size_t>(c - '0');
    }
    KITE_REQUIRE(k >= 1, invalid_argument, "eval: metric '", name, "' has cutoff 0; expected >= 1");
    const auto base = name.substr(0, at);
    if (base == "ndcg") return ndcg_at(run, qrels, k);
    if (base == "recall") return recall_at(run, qrels, k);
    if (base == "hit") return hit_at(run, qrels, k);
    if (base == "mrr") return mrr_at(run, qrels, k);
    kite::detail::raise<invalid_argument>("eval: unknown metric '", name,
                                    "'; expected map or <ndcg|recall|hit|mrr>@k");
}

/// The metrics kite-eval reports.
inline const std::vector<std::string>& default_metrics() {
    static const std::vector<std::string> m{"ndcg@10", "recall@100", "hit@1", "hit@10", "mrr@10", "map"};
    return m;
}

/// Means of `metrics` over every query that has at least one relevant judgment.
/// runs[q] and qrels[q] belong to query q. Returns name -> mean, plus "queries" (evaluated).
inline std::map<std::string, double> evaluate(std::span<const ranking> runs,
                                              std::span<const std::vector<judgment>> qrels,
                                              std::span<const std::string> metrics = default_metrics()) {
    KITE_REQUIRE(runs.size() == qrels.size(), shape_error, "eval::evaluate: ", runs.size(),
                 " rankings for ", qrels.size(), " queries; expected one ranking per query");
    std::map<std::string, double> sum;
    for (const auto& m : metrics) sum[m] = 0;
    std::size_t evaluated = 0;
    for (std::size_t q = 0; q < runs.size(); ++q) {
        if (detail::num_relevant(qrels[q]) == 0) continue;
        ++evaluated;
        for (const auto& m : metrics) sum[m] += metric(m, runs[q], qrels[q]);
    }
    for (auto& [name, v] : sum) v = evaluated ? v / static_cast<double>(evaluated) : 0.0;
    sum["queries"] = static_cast<double>(evaluated);
    return sum;
}

/// Latency summary in milliseconds.
struct latency_summary {
    double p50 = 0, p95 = 0, mean = 0, max = 0;
};

/// Percentile `p` in [0, 100] with linear interpolation between closest ranks (NumPy's default).
inline double percentile(std::vector<double> values, double p) {
    KITE_REQUIRE(p >= 0 && p <= 100, invalid_argument, "percentile: p = ", p, "; expected 0 <= p <= 100");
    if (values.empty()) return 0.0;
    std::sort(values.begin(), values.end());
    const double pos = p / 100.0 * static_cast<double>(values.size() - 1);
    const auto lo = static_cast<std::size_t>(std::floor(pos));
    const std::size_t hi = std::min(lo + 1, values.size() - 1);
    return values[lo] + (values[hi] - values[lo]) * (pos - static_cast<double>(lo));
}

inline latency_summary summarize_latency(const std::vector<double>& ms) {
    latency_summary s;
    if (ms.empty()) return s;
    s.p50 = percentile(ms, 50);
    s.p95 = percentile(ms, 95);
    for (double x : ms) s.mean += x;
    s.mean /= static_cast<double>(ms.size());
    s.max = *std::max_element(ms.begin(), ms.end());
    return s;
}

/// Writes rankings as a TREC run file ("qid Q0 docid rank score tag", ranks from 1), readable
/// by trec_eval, pytrec_eval and ranx. Written atomically. query_ids[q] names runs[q];
/// doc_ids[i] names document index i.
inline void write_trec_run(const std::filesystem::path& path, std::span<const ranking> runs,
                           std::span<const std::string> query_ids,
                           std::span<const std::string> doc_ids, std::string_view tag = "kite") {
    KITE_REQUIRE(runs.size() == query_ids.size(), shape_error, "write_trec_run: ", runs.size(),
                 " rankings for ", query_ids.size(), " query ids; expected equal counts");
    KITE_REQUIRE(!tag.empty() && tag.find_first_of(" \t\n") == std::string_view::npos, invalid_argument,
                 "write_trec_run: tag '", tag, "'; expected one word without spaces");
    std::string out;
    char num[64];
    for (std::size_t q = 0; q < runs.size(); ++q) {
        for (std::size_t r = 0; r < runs[q].size(); ++r) {
            const id_t d = runs[q][r].id;
            KITE_REQUIRE(d >= 0 && static_cast<std::size_t>(d) < doc_ids.size(), invalid_argument,
                         "write_trec_run: query ", query_ids[q], " ranks document index ", d,
                         "; expected an index below ", doc_ids.size());
            out += query_ids[q];
            out += " Q0 ";
            out += doc_ids[static_cast<std::size_t>(d)];
            std::snprintf(num, sizeof num, " %zu %.9g ", r + 1, static_cast<double>(runs[q][r].score));
            out += num;
            out += tag;
            out += '\n';
        }
    }
    io::write_file_atomic(path, std::as_bytes(std::span<const char>(out.data(), out.size())));
}

}  // namespace kite::retrieval::eval
