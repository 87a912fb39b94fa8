#pragma once
/// @file kite/text/english.hpp
/// kite::text::english: unicode_words, then English stop words removed, then the Snowball
/// English (Porter2) stemmer from libstemmer.
///
///   "The patients were running trials" -> "patient", "were", "run", "trial"
///
/// The default stop words are Lucene's EnglishAnalyzer set (33 words; bm25s's "en" list is the
/// same). Stems are cached per thread (libstemmer's stemmer objects are not thread-safe, and a
/// corpus repeats its words), so analyze() is safe to call from many threads.
///
/// Needs utf8proc and libstemmer: link kite::text.

#include <algorithm>
#include <cstddef>
#include <functional>
#include <initializer_list>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <unordered_set>
#include <utility>
#include <vector>

#include <libstemmer.h>

#include "kite/core/error.hpp"
#include "kite/text/unicode_words.hpp"

namespace kite::text {

namespace detail {

/// Hash for heterogeneous (std::string_view) lookup in unordered containers of std::string.
struct string_hash {
    using is_transparent = void;
    std::size_t operator()(std::string_view s) const noexcept { return std::hash<std::string_view>{}(s); }
};

/// One thread's Snowball English stemmer and its cache of stems.
class english_stemmer {
public:
    english_stemmer() : stemmer_(sb_stemmer_new("english", "UTF_8")) {
        KITE_REQUIRE(stemmer_ != nullptr, error,
                     "libstemmer: sb_stemmer_new(\"english\", \"UTF_8\") failed");
    }
    english_stemmer(const english_stemmer&) = delete;
    english_stemmer& operator=(const english_stemmer&) = delete;
    ~english_stemmer() { sb_stemmer_delete(stemmer_); }

    /// The stem of a lower-cased word (valid until the next call on this thread).
    std::string_view stem(std::string_view word) {
        if (auto it = cache_.find(word); it != cache_.end()) return it->second;
        const sb_symbol* s = sb_stemmer_stem(
            stemmer_, reinterpret_cast<const sb_symbol*>(word.data()), static_cast<int>(word.size()));
        KITE_REQUIRE(s != nullptr, error, "libstemmer: out of memory while stemming");
        std::string stemmed(reinterpret_cast<const char*>(s),
                            static_cast<std::size_t>(sb_stemmer_length(stemmer_)));
        // Bounded: a stream of unique words (ids, numbers) must not grow memory without end.
        if (cache_.size() >= max_cached) cache_.clear();
        return cache_.emplace(std::string(word), std::move(stemmed)).first->second;
    }

    /// The calling thread's stemmer.
    static english_stemmer& local() {
        thread_local english_stemmer s;
        return s;
    }

private:
    static constexpr std::size_t max_cached = std::size_t{1} << 18;
    sb_stemmer* stemmer_;
    std::unordered_map<std::string, std::string, string_hash, std::equal_to<>> cache_;
};

}  // namespace detail

/// English analyzer (a kite::text::analyzer): unicode_words + stop words + Snowball stemmer.
class english {
public:
    /// Lucene's English stop words.
    static constexpr std::string_view default_stop_words[] = {
        "a",    "an",   "and",  "are",   "as",    "at",    "be",   "but",  "by",
        "for",  "if",   "in",   "into",  "is",    "it",    "no",   "not",  "of",
        "on",   "or",   "such", "that",  "the",   "their", "then", "there", "these",
        "they", "this", "to",   "was",   "will",  "with"};

    english() : english(std::span<const std::string_view>(default_stop_words)) {}
    /// Custom stop words (matched after case folding, before stemming).
    explicit english(std::span<const std::string_view> stop_words)
        : stop_(make_set(stop_words)), longest_stop_(longest(stop_words)) {}
    explicit english(std::initializer_list<std::string_view> stop_words)
        : english(std::span<const std::string_view>(stop_words.begin(), stop_words.size())) {}

    static constexpr std::string_view name() noexcept { return "english"; }

    /// Calls sink(std::string_view) for each stemmed, non-stop-word term.
    template <class Sink>
    void analyze(std::string_view text, Sink&& sink) const {
        auto& stemmer = detail::english_stemmer::local();
        unicode_words{}.analyze(text, [&](std::string_view w) {
            if (is_stop_word(w)) return;
            sink(stemmer.stem(w));
        });
    }

    /// True when `word` (already case-folded) is a stop word.
    bool is_stop_word(std::string_view word) const {
        return word.size() <= longest_stop_ && stop_->find(word) != stop_->end();  // most words: no hash
    }

private:
    using stop_set = std::unordered_set<std::string, detail::string_hash, std::equal_to<>>;
    static std::shared_ptr<const stop_set> make_set(std::span<const std::string_view> words) {
        auto set = std::make_shared<stop_set>();
        for (const auto w : words) set->emplace(w);
        return set;
    }
    static std::size_t longest(std::span<const std::string_view> words) {
        std::size_t n = 0;
        for (const auto w : words) n = std::max(n, w.size());
        return n;
    }
    std::shared_ptr<const stop_set> stop_;  // shared: analyzers are copied into indexes
    std::size_t longest_stop_ = 0;          // bytes of the longest stop word
};

}  // namespace kite::text
