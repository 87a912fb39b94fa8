#pragma once
/// @file kite/retrieval/ranking.hpp
/// The currency of the retrieval pipeline: a ranking is a best-first list of (score, doc id).
/// Retrievers produce rankings, fusion policies combine them, rerankers rescore a prefix.

#include <concepts>
#include <cstddef>
#include <span>
#include <string_view>
#include <vector>

#include "kite/core/config.hpp"
#include "kite/core/topk.hpp"

namespace kite::retrieval {

/// A ranked list, best first. Scores are the producer's own (distance, similarity, BM25...);
/// only the order is comparable across producers.
using ranking = std::vector<scored_id>;

/// retriever<R, Query>: anything that ranks documents for a query.
/// Contract:
///   - r.search(query, k) returns a ranking of at most k entries, best first, ids >= 0,
///     ties broken deterministically (kite's retrievers use the lower id);
///   - search is const and safe to call from several threads at once;
///   - k = 0 is an error (kite::invalid_argument) for kite's retrievers.
/// Models: bm25 and tf-idf indexes over text, dense_retriever<Index, Embedder>.
template <class R, class Query = std::string_view>
concept retriever = requires(const R& r, const Query& q, std::size_t k) {
    { r.search(q, k) } -> std::convertible_to<ranking>;
};

/// reranker<R, Query>: rescoring of candidate documents for a query (e.g. a cross-encoder).
/// Contract: r.score(query, ids) returns one score per id, larger = more relevant; const and
/// thread-safe; cost is whatever the model costs per (query, doc) pair.
template <class R, class Query = std::string_view>
concept reranker = requires(const R& r, const Query& q, std::span<const id_t> ids) {
    { r.score(q, ids) } -> std::convertible_to<std::vector<float>>;
};

/// fusion_policy<F>: combines the rankings of several retrievers into one.
/// Contract: f.fuse(lists, k) returns the best k fused results, best first, deterministic for
/// equal scores (first appearance: earlier list, then better rank). lists[i] is retriever i's
/// ranking, best first. O(total entries x log k).
template <class F>
concept fusion_policy = requires(const F& f, std::span<const ranking> lists, std::size_t k) {
    { f.fuse(lists, k) } -> std::convertible_to<ranking>;
};

/// The reranker that does nothing: the pipeline skips its stage at compile time.
struct no_rerank {};

}  // namespace kite::retrieval
