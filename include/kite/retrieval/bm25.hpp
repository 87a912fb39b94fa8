#pragma once
/// @file kite/retrieval/bm25.hpp
/// kite::retrieval::bm25_index<Variant, Analyzer>: BM25 over an inverted index with compressed,
/// block-max postings.
///
///   kite::retrieval::bm25_index<kite::bm25::lucene, kite::text::english> index;   // k1 1.2, b .75
///   index.add_all(documents);                        // strings; ids 0, 1, 2, ... in order
///   auto top = index.search("query text", 10);       // best first: {score, id}
///
/// Variants (kite/retrieval/bm25_variants.hpp): robertson, lucene, atire, bm25l, bm25plus,
/// lucene_classic. Analyzers (kite/text): english, unicode_words, cjk_bigram (need kite::text),
/// or text::pretokenized, whose documents and queries are token ids (no utf8proc needed).
///
/// Ways to score, one set of results:
///   search_pruned()     block-max MaxScore, float (dynamic pruning);
///   search_exhaustive() every posting of every query term, float: the same results, bit for bit;
///   search()            whichever of the two is cheaper for the query;
///   scores()            every document, double, written from bm25s's formulas: the oracle.
/// Top-k holds the best k documents that contain at least one query term, ties broken by the
/// lower id. Query terms that repeat count once per repeat (as bm25s and rank_bm25).
///
/// Thread safety: const members (search, scores, save) may run from many threads; add, remove,
/// compact and optimize need exclusion.

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <limits>
#include <ranges>
#include <span>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

#include "kite/core/config.hpp"
#include "kite/core/error.hpp"
#include "kite/core/io.hpp"
#include "kite/core/parallel.hpp"
#include "kite/core/topk.hpp"
#include "kite/retrieval/bm25_variants.hpp"
#include "kite/retrieval/detail/analyze.hpp"
#include "kite/retrieval/detail/bm25_search.hpp"
#include "kite/retrieval/detail/serialize.hpp"
#include "kite/retrieval/inverted_index.hpp"
#include "kite/retrieval/lexical_concepts.hpp"
#include "kite/retrieval/vocabulary.hpp"

namespace kite::retrieval {

namespace detail {

inline void check_params(const bm25::params& p) {
    KITE_REQUIRE(std::isfinite(p.k1) && p.k1 >= 0, invalid_argument, "bm25: k1 = ", p.k1,
                 "; expected a finite k1 >= 0");
    KITE_REQUIRE(p.b >= 0 && p.b <= 1, invalid_argument, "bm25: b = ", p.b,
                 "; expected 0 <= b <= 1");
    KITE_REQUIRE(std::isfinite(p.delta) && p.delta >= 0, invalid_argument, "bm25: delta = ",
                 p.delta, "; expected a finite delta >= 0");
}

}  // namespace detail

/// A BM25 index over documents analyzed by `Analyzer`, scored by `Variant`.
template <bm25::variant Variant, class Analyzer>
    requires(text::analyzer<Analyzer> || text::token_id_analyzer<Analyzer>)
class bm25_index {
public:
    using variant_type = Variant;
    using analyzer_type = Analyzer;
    /// A document or query: std::string_view (UTF-8) or std::span<const std::uint32_t> (ids).
    using input_type = detail::analyzer_input_t<Analyzer>;

    /// Reusable query buffers: pass one per thread to search() to avoid allocations.
    class scratch {
        friend class bm25_index;
        detail::search_buffers buf_;
        detail::prepared_query query_;
    };

    /// Magic and version of the file format written by save().
    static constexpr std::string_view file_magic = "KITEBM25";
    static constexpr std::uint32_t file_version = 1;

    explicit bm25_index(bm25::params p = {}, Analyzer analyzer = {})
        : params_(checked(p)), analyzer_(std::move(analyzer)), index_(make_shape(p)) {}

    // ---- building ----------------------------------------------------------------------------
    /// Adds one document; returns its id (ids are assigned 0, 1, 2, ... and never reused).
    id_t add(input_type doc) {
        const auto& terms = analyze_for_add(doc);
        const std::uint32_t d = index_.add(terms);
        index_.reserve_terms(vocab_.size());
        return static_cast<id_t>(d);
    }

    /// Adds every document of a range (bulk: block bounds are tightened once at the end).
    /// Returns the id of the first one. If a document throws (invalid UTF-8), the ones before it
    /// stay added and the index stays consistent.
    template <std::ranges::input_range R>
        requires std::convertible_to<std::ranges::range_reference_t<R>, input_type>
    id_t add_all(R&& docs) {
        const auto first = static_cast<id_t>(index_.doc_count());
        try {
            for (auto&& doc : docs) {
                const auto& terms = analyze_for_add(static_cast<input_type>(doc));
                index_.add_unrefreshed(terms);
            }
        } catch (...) {
            index_.reserve_terms(vocab_.size());
            index_.optimize();
            throw;
        }
        index_.reserve_terms(vocab_.size());
        index_.optimize();
        return first;
    }

    /// Removes document `id`; throws not_found_error for an unknown or already removed id.
    void remove(id_t id) {
        KITE_REQUIRE(id >= 0 && static_cast<std::uint64_t>(id) < index_.doc_count(), not_found_error,
                     "bm25_index::remove: id ", id, " does not exist; expected 0 <= id < ",
                     index_.doc_count());
        index_.remove(static_cast<std::uint32_t>(id));
    }
    /// Drops the postings of removed documents.
    void compact() { index_.compact(); }
    /// Packs open posting tails and tightens block bounds (after many single add() calls).
    void optimize() { index_.optimize(); }

    // ---- search ------------------------------------------------------------------------------
    /// The best k documents for `query`, best first. Picks the cheaper exact algorithm: the
    /// exhaustive scan when the query's postings are few next to the number of documents (the
    /// accumulator scan then dominates and pruning cannot pay: SciFact-sized corpora), block-max
    /// MaxScore otherwise. Same results either way.
    std::vector<scored_id> search(input_type query, std::size_t k) const {
        scratch s;
        return search(query, k, s);
    }
    std::vector<scored_id> search(input_type query, std::size_t k, scratch& s) const {
        std::vector<scored_id> out;
        prepare(query, k, s);
        std::uint64_t postings = 0;
        for (const auto& t : s.query_.terms) postings += index_.postings(t.term).size();
        if (postings <= exhaustive_ratio * static_cast<std::uint64_t>(index_.doc_count()))
            detail::search_exhaustive(index_, s.query_, k, s.buf_, out);
        else
            detail::search_maxscore(index_, s.query_, k, s.buf_, out);
        return out;
    }

    /// search() scans exhaustively while the query's postings are at most this many times the
    /// number of documents (measured: MaxScore only wins beyond that; see bench/).
    static constexpr std::uint64_t exhaustive_ratio = 8;

    /// search() with block-max MaxScore always (dynamic pruning).
    std::vector<scored_id> search_pruned(input_type query, std::size_t k) const {
        scratch s;
        return search_pruned(query, k, s);
    }
    std::vector<scored_id> search_pruned(input_type query, std::size_t k, scratch& s) const {
        std::vector<scored_id> out;
        prepare(query, k, s);
        detail::search_maxscore(index_, s.query_, k, s.buf_, out);
        return out;
    }

    /// The same results as search(), by scoring every posting of every query term.
    std::vector<scored_id> search_exhaustive(input_type query, std::size_t k) const {
        scratch s;
        return search_exhaustive(query, k, s);
    }
    std::vector<scored_id> search_exhaustive(input_type query, std::size_t k, scratch& s) const {
        std::vector<scored_id> out;
        prepare(query, k, s);
        detail::search_exhaustive(index_, s.query_, k, s.buf_, out);
        return out;
    }

    /// search() for many queries on `threads` threads (0 = kite::max_threads()).
    std::vector<std::vector<scored_id>> search_batch(std::span<const input_type> queries, std::size_t k,
                                                     int threads = 0) const {
        check_k(k);
        std::vector<std::vector<scored_id>> out(queries.size());
        std::vector<scratch> per_thread(static_cast<std::size_t>(resolve_threads(threads, queries.size())));
        parallel_for_dynamic(
            queries.size(), 4,
            [&](std::size_t i) {
                auto& s = per_thread[static_cast<std::size_t>(thread_index()) % per_thread.size()];
                out[i] = search(queries[i], k, s);
            },
            static_cast<int>(per_thread.size()));
        return out;
    }

    /// The oracle: BM25 of `query` against every document id, in double, straight from the
    /// variant's formulas (O(documents x query terms)). Removed documents get NaN.
    std::vector<double> scores(input_type query) const {
        std::vector<double> out(index_.doc_count(), 0.0);
        const auto n = static_cast<double>(index_.num_docs());
        const double avgdl = index_.avg_length();
        std::vector<std::uint32_t> tf(index_.doc_count());
        for (const auto& [t, qtf] : query_terms(query)) {
            const double idf = Variant::idf(static_cast<double>(index_.doc_freq(t)), n);
            std::fill(tf.begin(), tf.end(), 0u);
            index_.postings(t).for_each([&](std::uint32_t d, std::uint32_t f) { tf[d] = f; });
            for (std::size_t d = 0; d < out.size(); ++d)
                out[d] += qtf * idf *
                          Variant::tfc(tf[d], index_.doc_length(static_cast<std::uint32_t>(d)), avgdl, params_);
        }
        for (std::size_t d = 0; d < out.size(); ++d)
            if (index_.is_deleted(static_cast<std::uint32_t>(d))) out[d] = std::numeric_limits<double>::quiet_NaN();
        return out;
    }

    /// Top k from scores(): the documents holding at least one query term, sorted by the double
    /// score (then the lower id). The oracle of search() in tests.
    std::vector<scored_id> search_reference(input_type query, std::size_t k) const {
        check_k(k);
        const auto s = scores(query);
        std::vector<std::uint8_t> hit(s.size(), 0);
        for (const auto& [t, qtf] : query_terms(query))
            index_.postings(t).for_each([&](std::uint32_t d, std::uint32_t) { hit[d] = 1; });
        std::vector<std::uint32_t> ids;
        for (std::uint32_t d = 0; d < s.size(); ++d)
            if (hit[d] && !index_.is_deleted(d)) ids.push_back(d);
        std::sort(ids.begin(), ids.end(), [&](std::uint32_t x, std::uint32_t y) {
            return s[x] > s[y] || (s[x] == s[y] && x < y);
        });
        if (ids.size() > k) ids.resize(k);
        std::vector<scored_id> out;
        for (const auto d : ids) out.push_back({static_cast<float>(s[d]), static_cast<id_t>(d)});
        return out;
    }

    // ---- inspection --------------------------------------------------------------------------
    /// Live documents.
    std::size_t size() const noexcept { return index_.num_docs(); }
    /// Ids assigned so far (removed ones included).
    std::size_t doc_count() const noexcept { return index_.doc_count(); }
    const bm25::params& params() const noexcept { return params_; }
    const Analyzer& analyzer() const noexcept { return analyzer_; }
    const vocabulary& vocab() const noexcept { return vocab_; }
    const inverted_index& index() const noexcept { return index_; }
    /// Heap bytes of vocabulary and postings.
    std::size_t memory_bytes() const noexcept {
        return index_.memory_bytes() + vocab_.arena().capacity() + vocab_.offsets().size() * 12;
    }

    // ---- persistence -------------------------------------------------------------------------
    /// Writes the index to `path` atomically (temporary file, fsync, rename).
    void save(const std::filesystem::path& path) const {
        detail::byte_sink out;
        out.put_string(Variant::name());
        out.put_string(Analyzer::name());
        out.put<double>(params_.k1);
        out.put<double>(params_.b);
        out.put<double>(params_.delta);
        out.put<std::uint64_t>(vocab_.size());
        out.put_string(vocab_.arena());
        out.put_span(vocab_.offsets());
        index_.serialize(out);
        detail::write_container(path, file_magic, file_version, out.bytes());
    }

    /// Reads an index written by save(). Throws format_error for a foreign, truncated or corrupt
    /// file and config_error when it was built with another variant or analyzer.
    static bm25_index load(const std::filesystem::path& path, Analyzer analyzer = {}) {
        const io::mapped_file f(path);
        const auto payload = detail::open_container(f, file_magic, file_version, "BM25 index");
        io::byte_reader r(payload, f.path());
        const std::string variant = detail::get_string(r, "variant name");
        const std::string an = detail::get_string(r, "analyzer name");
        KITE_REQUIRE(variant == Variant::name(), config_error, f.path(), ": index uses BM25 variant '",
                     variant, "'; expected '", Variant::name(), "'");
        KITE_REQUIRE(an == Analyzer::name(), config_error, f.path(), ": index uses analyzer '", an,
                     "'; expected '", Analyzer::name(), "'");
        bm25::params p;
        p.k1 = r.get<double>("k1");
        p.b = r.get<double>("b");
        p.delta = r.get<double>("delta");
        try {
            detail::check_params(p);
        } catch (const invalid_argument& e) {
            ::kite::detail::raise<format_error>(f.path(), ": ", e.what());
        }
        const auto nterms = r.get<std::uint64_t>("term count");
        std::string arena = detail::get_string(r, "vocabulary");
        KITE_REQUIRE(nterms < r.remaining() / 8, format_error, f.path(), ": term count ", nterms,
                     " does not fit the file");
        std::vector<std::uint64_t> offsets(nterms + 1);
        r.get_into(std::span<std::uint64_t>(offsets), "vocabulary offsets");
        bm25_index ix(p, std::move(analyzer));
        ix.vocab_ = vocabulary::from_arena(std::move(arena), std::move(offsets), f.path());
        ix.index_ = inverted_index::deserialize(r, make_shape(p));
        KITE_REQUIRE(ix.index_.num_terms() == ix.vocab_.size(), format_error, f.path(), ": ",
                     ix.index_.num_terms(), " posting lists for ", ix.vocab_.size(), " terms");
        KITE_REQUIRE(r.remaining() == 0, format_error, f.path(), ": ", r.remaining(),
                     " unexpected bytes after the index");
        return ix;
    }

private:
    static bm25::params checked(const bm25::params& p) {
        detail::check_params(p);
        return p;
    }
    static bound_shape make_shape(const bm25::params& p) {
        const auto s = Variant::shape(p);
        return {static_cast<float>(s.a), static_cast<float>(s.b_num)};
    }
    static void check_k(std::size_t k) {
        KITE_REQUIRE(k >= 1, invalid_argument, "bm25_index::search: k = ", k, "; expected k >= 1");
    }

    const std::vector<term_id>& analyze_for_add(input_type doc) {
        add_terms_.clear();
        detail::for_each_term_key(analyzer_, doc, [&](std::string_view key) {
            add_terms_.push_back(vocab_.insert(key));
        });
        return add_terms_;
    }

    /// Distinct known query terms with their repeat counts, ascending term id; terms no live
    /// document holds are dropped (as bm25s drops tokens outside its vocabulary).
    std::vector<std::pair<term_id, double>> query_terms(input_type query) const {
        std::vector<term_id> t;
        detail::for_each_term_key(analyzer_, query, [&](std::string_view key) {
            const term_id id = vocab_.find(key);
            if (id != vocabulary::npos && index_.doc_freq(id) > 0) t.push_back(id);
        });
        std::sort(t.begin(), t.end());
        std::vector<std::pair<term_id, double>> out;
        for (std::size_t i = 0; i < t.size();) {
            std::size_t j = i;
            while (j < t.size() && t[j] == t[i]) ++j;
            out.emplace_back(t[i], static_cast<double>(j - i));
            i = j;
        }
        return out;
    }

    void prepare(input_type query, std::size_t k, scratch& s) const {
        check_k(k);
        auto& tokens = s.buf_.tokens;
        tokens.clear();
        detail::for_each_term_key(analyzer_, query, [&](std::string_view key) {
            const term_id id = vocab_.find(key);
            if (id != vocabulary::npos && index_.doc_freq(id) > 0) tokens.push_back(id);
        });
        std::sort(tokens.begin(), tokens.end());
        const auto shape = Variant::shape(params_);
        const auto n = static_cast<double>(index_.num_docs());
        auto& q = s.query_;
        q.terms.clear();
        double constant = 0.0;
        for (std::size_t i = 0; i < tokens.size();) {
            std::size_t j = i;
            while (j < tokens.size() && tokens[j] == tokens[i]) ++j;
            const double idf = Variant::idf(static_cast<double>(index_.doc_freq(tokens[i])), n);
            const double qtf = static_cast<double>(j - i);
            q.terms.push_back({tokens[i], static_cast<float>(idf * qtf * shape.w), 0.0});
            constant += idf * qtf * shape.zero;
            i = j;
        }
        detail::order_terms(index_, q);
        q.a = static_cast<float>(shape.a);
        q.b = inverted_index::length_coefficient(static_cast<float>(shape.b_num), index_.avg_length());
        q.constant = static_cast<float>(constant);
    }

    bm25::params params_;
    Analyzer analyzer_;
    vocabulary vocab_;
    inverted_index index_;
    std::vector<term_id> add_terms_;  // scratch of add()
};

}  // namespace kite::retrieval
