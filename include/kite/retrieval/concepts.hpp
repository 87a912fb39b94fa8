#pragma once
/// @file kite/retrieval/concepts.hpp
/// The concepts of kite's retrieval area. Each concept is preceded by its contract, so a wrong
/// policy fails at compile time with the concept's name in the message.

#include <concepts>
#include <cstddef>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "kite/core/matrix.hpp"
#include "kite/core/topk.hpp"

namespace kite::retrieval {

/// vector_metric: a policy that says how a vector index compares vectors.
/// Contract:
///   - `order` is kite::smaller_first (distances) or kite::larger_first (similarities); it
///     decides which results rank first and the padding value of missing results;
///   - `faiss_metric` is FAISS's MetricType code (1 = METRIC_L2, 0 = METRIC_INNER_PRODUCT),
///     used by the FAISS-format reader and writer;
///   - `normalizes` is true when vectors and queries are scaled to unit length (cosine);
///   - `distance(a, b, d)` returns the score of two float arrays of length d, O(d), noexcept;
///     it is what search reports.
/// kite::metric::l2, kite::metric::inner_product and kite::metric::cosine are the models.
template <class M>
concept vector_metric =
    (std::same_as<typename M::order, kite::smaller_first> ||
     std::same_as<typename M::order, kite::larger_first>) &&
    requires(const float* a, std::size_t d) {
        { M::faiss_metric } -> std::convertible_to<int>;
        { M::normalizes } -> std::convertible_to<bool>;
        { M::distance(a, a, d) } noexcept -> std::same_as<float>;
    };

/// A ranked list, best first. Scores are "larger is better" (a dense retriever over squared L2
/// reports the negated distance); their scales differ across producers, so fusion either uses
/// ranks only (RRF) or normalises the scores first.
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

/// embedder<E>: turns text into a dense vector ("text -> vector").
/// Contract: e(text) returns the embedding as std::vector<float> (fixed dimension for a given
/// embedder); const and thread-safe; cost is the model's forward pass. kite's MiniLM encoder,
/// a table of precomputed query embeddings and any lambda qualify.
template <class E>
concept embedder = requires(const E& e, std::string_view text) {
    { e(text) } -> std::convertible_to<std::vector<float>>;
};

/// batch_embedder<E>: an embedder that also embeds many texts in one call, one forward pass per
/// batch instead of one per text (what embedding a corpus needs).
/// Contract: e.encode(texts) returns a kite::matrix<float> [texts.size()][dim], row i equal to
/// e(texts[i]) up to float rounding; const and thread-safe. kite::model::sentence_encoder
/// qualifies.
template <class E>
concept batch_embedder = embedder<E> && requires(const E& e, std::span<const std::string> texts) {
    { e.encode(texts) } -> std::convertible_to<kite::matrix<float>>;
};

}  // namespace kite::retrieval
