#pragma once
/// @file kite/retrieval/tfidf.hpp
/// Bag of words and TF-IDF, as scikit-learn's CountVectorizer and TfidfVectorizer with their
/// defaults, over any kite analyzer (or token ids), plus cosine search over TF-IDF vectors.
///
///   count_vectorizer  term counts; features are the fitted vocabulary in sorted order (term
///                     bytes, which is Python's string order; numeric order for token ids)
///   tfidf_vectorizer  count x idf, idf = ln((1 + n) / (1 + df)) + 1 (smooth_idf), no sublinear
///                     tf, rows scaled to unit L2 norm (norm="l2")
///   tfidf_index       the corpus's TF-IDF rows in an inverted index; search() returns the k
///                     rows of highest cosine similarity (= dot product of unit rows) sharing a
///                     term with the query, ties to the lower id; scores() is the double oracle.
///
/// Terms outside the fitted vocabulary are ignored (as scikit-learn does). Thread safety: const
/// members may run from many threads; fit/add need exclusion.

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <numeric>
#include <ranges>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "kite/core/error.hpp"
#include "kite/core/topk.hpp"
#include "kite/retrieval/detail/analyze.hpp"
#include "kite/retrieval/vocabulary.hpp"

namespace kite::retrieval {

/// A sparse vector: strictly increasing feature indices and their values.
struct sparse_vector {
    std::vector<std::uint32_t> indices;
    std::vector<float> values;

    std::size_t nnz() const noexcept { return indices.size(); }
    /// The value of feature `i` (0 when absent).
    float at(std::uint32_t i) const noexcept {
        const auto it = std::lower_bound(indices.begin(), indices.end(), i);
        return it != indices.end() && *it == i ? values[static_cast<std::size_t>(it - indices.begin())] : 0.0f;
    }
    /// Dot product, accumulated in double.
    double dot(const sparse_vector& o) const noexcept {
        double s = 0;
        std::size_t i = 0, j = 0;
        while (i < indices.size() && j < o.indices.size()) {
            if (indices[i] < o.indices[j]) {
                ++i;
            } else if (indices[i] > o.indices[j]) {
                ++j;
            } else {
                s += static_cast<double>(values[i++]) * static_cast<double>(o.values[j++]);
            }
        }
        return s;
    }
};

/// Bag of words: CountVectorizer's defaults (raw counts, min_df = 1, max_df = 1.0).
template <class Analyzer>
    requires(text::analyzer<Analyzer> || text::token_id_analyzer<Analyzer>)
class count_vectorizer {
public:
    using input_type = detail::analyzer_input_t<Analyzer>;

    explicit count_vectorizer(Analyzer analyzer = {}) : analyzer_(std::move(analyzer)) {}

    /// Learns the vocabulary (and document frequencies) of `docs`; replaces an earlier fit.
    template <std::ranges::input_range R>
        requires std::convertible_to<std::ranges::range_reference_t<R>, input_type>
    void fit(R&& docs) {
        vocab_ = vocabulary();
        std::vector<std::uint32_t> df;
        std::vector<std::uint32_t> last_doc;  // [term] last doc counted, for df
        std::uint32_t n = 0;
        for (auto&& doc : docs) {
            detail::for_each_term_key(analyzer_, static_cast<input_type>(doc), [&](std::string_view key) {
                const term_id t = vocab_.insert(key);
                if (t == df.size()) {
                    df.push_back(0);
                    last_doc.push_back(0xFFFFFFFFu);
                }
                if (last_doc[t] != n) {
                    last_doc[t] = n;
                    ++df[t];
                }
            });
            ++n;
        }
        num_docs_ = n;
        // Features in sorted order: term bytes, or numeric order for token ids.
        std::vector<term_id> order(vocab_.size());
        std::iota(order.begin(), order.end(), term_id{0});
        std::sort(order.begin(), order.end(), [&](term_id x, term_id y) { return less(x, y); });
        feature_of_.assign(vocab_.size(), 0);
        term_of_ = order;
        df_.assign(vocab_.size(), 0);
        for (std::uint32_t f = 0; f < order.size(); ++f) {
            feature_of_[order[f]] = f;
            df_[f] = df[order[f]];
        }
    }

    /// Term counts of `doc` over the fitted features.
    sparse_vector transform(input_type doc) const {
        std::vector<std::uint32_t> feats;
        detail::for_each_term_key(analyzer_, doc, [&](std::string_view key) {
            const term_id t = vocab_.find(key);
            if (t != vocabulary::npos) feats.push_back(feature_of_[t]);
        });
        std::sort(feats.begin(), feats.end());
        sparse_vector v;
        for (std::size_t i = 0; i < feats.size();) {
            std::size_t j = i;
            while (j < feats.size() && feats[j] == feats[i]) ++j;
            v.indices.push_back(feats[i]);
            v.values.push_back(static_cast<float>(j - i));
            i = j;
        }
        return v;
    }

    /// fit(docs), then transform() of each.
    template <std::ranges::forward_range R>
        requires std::convertible_to<std::ranges::range_reference_t<R>, input_type>
    std::vector<sparse_vector> fit_transform(R&& docs) {
        fit(docs);
        std::vector<sparse_vector> out;
        for (auto&& d : docs) out.push_back(transform(static_cast<input_type>(d)));
        return out;
    }

    std::size_t num_features() const noexcept { return term_of_.size(); }
    std::size_t num_docs() const noexcept { return num_docs_; }
    /// Documents of the fit containing feature `f`.
    std::uint32_t doc_freq(std::uint32_t f) const noexcept { return df_[f]; }
    /// The term of feature `f` (for token ids: the id's 4 little-endian bytes).
    std::string_view feature_name(std::uint32_t f) const noexcept { return vocab_.term(term_of_[f]); }
    /// The feature of a term key, or vocabulary::npos.
    std::uint32_t feature_of(std::string_view key) const noexcept {
        const term_id t = vocab_.find(key);
        return t == vocabulary::npos ? vocabulary::npos : feature_of_[t];
    }
    const Analyzer& analyzer() const noexcept { return analyzer_; }

private:
    bool less(term_id x, term_id y) const {
        if constexpr (text::token_id_analyzer<Analyzer>) {
            std::uint32_t a, b;
            std::memcpy(&a, vocab_.term(x).data(), 4);
            std::memcpy(&b, vocab_.term(y).data(), 4);
            return a < b;
        } else {
            return vocab_.term(x) < vocab_.term(y);  // byte order == code point order
        }
    }

    Analyzer analyzer_;
    vocabulary vocab_;
    std::vector<std::uint32_t> feature_of_;  // [term id] feature index
    std::vector<term_id> term_of_;           // [feature] term id
    std::vector<std::uint32_t> df_;          // [feature]
    std::uint32_t num_docs_ = 0;
};

/// TF-IDF: TfidfVectorizer's defaults (smooth idf, raw tf, L2-normalized rows).
template <class Analyzer>
    requires(text::analyzer<Analyzer> || text::token_id_analyzer<Analyzer>)
class tfidf_vectorizer {
public:
    using input_type = detail::analyzer_input_t<Analyzer>;

    explicit tfidf_vectorizer(Analyzer analyzer = {}) : counts_(std::move(analyzer)) {}

    /// Learns vocabulary and idf from `docs`.
    template <std::ranges::input_range R>
        requires std::convertible_to<std::ranges::range_reference_t<R>, input_type>
    void fit(R&& docs) {
        counts_.fit(docs);
        idf_.resize(counts_.num_features());
        const double n = static_cast<double>(counts_.num_docs());
        for (std::uint32_t f = 0; f < idf_.size(); ++f)
            idf_[f] = std::log((1.0 + n) / (1.0 + counts_.doc_freq(f))) + 1.0;
    }

    /// The unit-L2 TF-IDF row of `doc` (all zero when it has no known term).
    sparse_vector transform(input_type doc) const {
        sparse_vector v = counts_.transform(doc);
        double sq = 0;
        std::vector<double> w(v.nnz());
        for (std::size_t i = 0; i < v.nnz(); ++i) {
            w[i] = static_cast<double>(v.values[i]) * idf_[v.indices[i]];
            sq += w[i] * w[i];
        }
        const double inv = sq > 0 ? 1.0 / std::sqrt(sq) : 0.0;
        for (std::size_t i = 0; i < v.nnz(); ++i) v.values[i] = static_cast<float>(w[i] * inv);
        return v;
    }

    template <std::ranges::forward_range R>
        requires std::convertible_to<std::ranges::range_reference_t<R>, input_type>
    std::vector<sparse_vector> fit_transform(R&& docs) {
        fit(docs);
        std::vector<sparse_vector> out;
        for (auto&& d : docs) out.push_back(transform(static_cast<input_type>(d)));
        return out;
    }

    /// idf of feature `f`.
    double idf(std::uint32_t f) const noexcept { return idf_[f]; }
    std::size_t num_features() const noexcept { return counts_.num_features(); }
    const count_vectorizer<Analyzer>& counts() const noexcept { return counts_; }

private:
    count_vectorizer<Analyzer> counts_;
    std::vector<double> idf_;  // [feature]
};

/// Cosine search over the TF-IDF rows of a corpus.
template <class Analyzer>
    requires(text::analyzer<Analyzer> || text::token_id_analyzer<Analyzer>)
class tfidf_index {
public:
    using input_type = detail::analyzer_input_t<Analyzer>;

    explicit tfidf_index(Analyzer analyzer = {}) : vec_(std::move(analyzer)) {}

    /// Fits the vectorizer on `docs` and indexes their rows (ids 0, 1, ... in order).
    template <std::ranges::forward_range R>
        requires std::convertible_to<std::ranges::range_reference_t<R>, input_type>
    void fit(R&& docs) {
        vec_.fit(docs);
        postings_.assign(vec_.num_features(), {});
        rows_ = 0;
        for (auto&& d : docs) add(static_cast<input_type>(d));
    }

    /// Indexes one more row with the fitted vocabulary and idf; returns its id.
    id_t add(input_type doc) {
        const sparse_vector v = vec_.transform(doc);
        for (std::size_t i = 0; i < v.nnz(); ++i) postings_[v.indices[i]].push_back({rows_, v.values[i]});
        return static_cast<id_t>(rows_++);
    }

    /// The k rows most cosine-similar to `query` (sharing at least one term), best first.
    std::vector<scored_id> search(input_type query, std::size_t k) const {
        KITE_REQUIRE(k >= 1, invalid_argument, "tfidf_index::search: k = ", k, "; expected k >= 1");
        const sparse_vector q = vec_.transform(query);
        std::vector<float> acc(rows_, -0.0f);  // -0.0f marks untouched rows (see bm25_search.hpp)
        for (std::size_t i = 0; i < q.nnz(); ++i)
            for (const auto& p : postings_[q.indices[i]]) acc[p.row] += q.values[i] * p.weight;
        topk_heap<larger_first> heap(k);
        for (std::uint32_t r = 0; r < rows_; ++r)
            if (!std::signbit(acc[r])) heap.push(acc[r], r);
        return heap.drain();
    }

    /// Cosine similarity of `query` with every row, in double (the oracle).
    std::vector<double> scores(input_type query) const {
        const sparse_vector q = vec_.transform(query);
        std::vector<double> out(rows_, 0.0);
        for (std::size_t i = 0; i < q.nnz(); ++i)
            for (const auto& p : postings_[q.indices[i]])
                out[p.row] += static_cast<double>(q.values[i]) * static_cast<double>(p.weight);
        return out;
    }

    std::size_t size() const noexcept { return rows_; }
    const tfidf_vectorizer<Analyzer>& vectorizer() const noexcept { return vec_; }

private:
    struct posting {
        std::uint32_t row;
        float weight;
    };
    tfidf_vectorizer<Analyzer> vec_;
    std::vector<std::vector<posting>> postings_;  // [feature]
    std::uint32_t rows_ = 0;
};

}  // namespace kite::retrieval
