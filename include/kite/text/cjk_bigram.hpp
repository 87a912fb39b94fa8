#pragma once
/// @file kite/text/cjk_bigram.hpp
/// kite::text::cjk_bigram: the CJK analyzer, after Lucene's CJKAnalyzer. Text is normalized and
/// split as by unicode_words; Latin (and every non-CJK) word is one term; each run of Han,
/// Hiragana, Katakana or Hangul characters becomes its overlapping character bigrams, and a run
/// of one character is kept as a unigram.
///
///   "안녕하세요 Seoul 서울" -> "안녕", "녕하", "하세", "세요", "seoul", "서울"
///
/// Needs utf8proc: link kite::text.

#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "kite/text/concepts.hpp"
#include "kite/text/detail/unicode.hpp"

namespace kite::text {

namespace detail {

/// Splits normalized code points into words and CJK bigrams; calls emit(std::string_view).
template <class Emit>
void split_cjk_bigrams(std::span<const utf8proc_int32_t> cps, std::string& word, std::string& gram,
                       Emit&& emit) {
    word.clear();
    char32_t prev = 0;       // last CJK character of the current run
    std::size_t run = 0;     // length of the current CJK run
    const auto flush_word = [&] {
        if (!word.empty()) {
            emit(std::string_view(word));
            word.clear();
        }
    };
    const auto flush_run = [&] {
        if (run == 1) {  // a lone CJK character is kept as a unigram, as Lucene does
            gram.clear();
            utf8::append(gram, prev);
            emit(std::string_view(gram));
        }
        run = 0;
    };
    for (const auto cp : cps) {
        const auto c = static_cast<char32_t>(cp);
        switch (classify(c)) {
            case char_class::word:
                flush_run();
                utf8::append(word, c);
                break;
            case char_class::mark:
                if (!word.empty()) utf8::append(word, c);  // inside a CJK run: dropped
                break;
            case char_class::cjk:
                flush_word();
                if (run > 0) {
                    gram.clear();
                    utf8::append(gram, prev);
                    utf8::append(gram, c);
                    emit(std::string_view(gram));
                }
                prev = c;
                ++run;
                break;
            case char_class::separator:
                flush_word();
                flush_run();
                break;
        }
    }
    flush_word();
    flush_run();
}

}  // namespace detail

/// The CJK bigram analyzer (a kite::text::analyzer).
struct cjk_bigram {
    static constexpr std::string_view name() noexcept { return "cjk_bigram"; }

    /// Calls sink(std::string_view) for each term. Throws unicode_error on invalid UTF-8.
    template <class Sink>
    void analyze(std::string_view text, Sink&& sink) const {
        detail::scan_buffers buf;
        std::string word, gram;
        detail::scan_segments(
            text, buf, [&](std::string_view w) { sink(w); },
            [&](std::span<const utf8proc_int32_t> cps) {
                detail::split_cjk_bigrams(cps, word, gram, sink);
            },
            "text::cjk_bigram");
    }


    /// The slow reference: whole-text normalization, then splitting (oracle of the fast path).
    static std::vector<std::string> reference_terms(std::string_view text) {
        utf8::require_valid(text, 0, "text::cjk_bigram");
        std::vector<utf8proc_int32_t> cps;
        detail::nfkc_casefold(text, cps);
        std::vector<std::string> out;
        std::string word, gram;
        detail::split_cjk_bigrams(std::span<const utf8proc_int32_t>(cps), word, gram,
                                  [&](std::string_view t) { out.emplace_back(t); });
        return out;
    }
};

}  // namespace kite::text
