#pragma once
/// @file kite/retrieval/dense.hpp
/// Dense retrieval as a retriever: text -> embedder -> flat index -> ranking.
///
///   kite::retrieval::flat_index<kite::metric::cosine> index(384);
///   index.add(corpus_embeddings);                        // [n][384]
///   auto dense = kite::retrieval::dense_retriever(index, my_embedder);
///   kite::retrieval::ranking r = dense.search("query text", 100);
///
/// Rankings are "larger is better": squared L2 distances are negated, similarities kept.
/// embedding_table is an embedder over precomputed vectors (e.g. a queries .npy file), keyed by
/// the text they were computed from.

#include <concepts>
#include <cstddef>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include "kite/core/error.hpp"
#include "kite/core/matrix.hpp"
#include "kite/retrieval/concepts.hpp"
#include "kite/retrieval/flat_index.hpp"

namespace kite::retrieval {

/// A retriever over a flat_index (held by reference: the index must outlive the retriever)
/// and an embedder for the query text.
template <vector_metric Metric, embedder Embedder>
class dense_retriever {
public:
    dense_retriever(const flat_index<Metric>& index, Embedder embed)
        : index_(&index), embed_(std::move(embed)) {}

    /// The k nearest documents of the embedded query, best first (score larger = closer).
    ranking search(std::string_view query, std::size_t k) const {
        const std::vector<float> q = embed_(query);
        KITE_REQUIRE(q.size() == index_->dim(), shape_error, "dense_retriever: the embedder returned ",
                     q.size(), " values; expected the index dimension ", index_->dim());
        return search_vector(q, k);
    }
    /// The same for an already embedded query.
    ranking search_vector(std::span<const float> q, std::size_t k) const {
        KITE_REQUIRE(k >= 1, invalid_argument, "dense_retriever::search: k = 0; expected k >= 1");
        const auto r = index_->search(q, k);  // min(k, size()) columns
        ranking out;
        out.reserve(r.labels.cols());
        for (std::size_t i = 0; i < r.labels.cols(); ++i) {
            const id_t id = r.labels(0, i);
            const float d = r.distances(0, i);
            out.push_back({std::same_as<typename Metric::order, smaller_first> ? -d : d, id});
        }
        return out;
    }
    const flat_index<Metric>& index() const noexcept { return *index_; }
    const Embedder& embedder_fn() const noexcept { return embed_; }

private:
    const flat_index<Metric>* index_;
    Embedder embed_;
};

/// An embedder backed by precomputed vectors: row i of `vectors` is the embedding of texts[i].
/// Looking up a text that is not in the table throws not_found_error.
class embedding_table {
public:
    embedding_table(std::span<const std::string> texts, kite::matrix<float> vectors)
        : vectors_(std::make_shared<kite::matrix<float>>(std::move(vectors))) {
        KITE_REQUIRE(texts.size() == vectors_->rows(), shape_error, "embedding_table: ", texts.size(),
                     " texts for ", vectors_->rows(), " embeddings; expected one embedding per text");
        for (std::size_t i = 0; i < texts.size(); ++i) rows_->emplace(texts[i], i);  // first wins
    }
    std::vector<float> operator()(std::string_view text) const {
        const auto it = rows_->find(std::string(text));
        KITE_REQUIRE(it != rows_->end(), not_found_error, "embedding_table: no embedding for the text \"",
                     text.substr(0, 60), text.size() > 60 ? "...\"" : "\"");
        const auto row = vectors_->row(it->second);
        return {row.begin(), row.end()};
    }
    std::size_t dim() const noexcept { return vectors_->cols(); }
    std::size_t size() const noexcept { return vectors_->rows(); }

private:
    std::shared_ptr<kite::matrix<float>> vectors_;
    std::shared_ptr<std::unordered_map<std::string, std::size_t>> rows_ =
        std::make_shared<std::unordered_map<std::string, std::size_t>>();
};

static_assert(embedder<embedding_table>);

}  // namespace kite::retrieval
