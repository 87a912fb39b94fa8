#pragma once
/// @file kite/text/unicode_words.hpp
/// kite::text::unicode_words: the Unicode word analyzer. UTF-8 in; NFKC with full case folding
/// (utf8proc); terms are maximal runs of letters and digits (Unicode categories L*, N*), with the
/// combining marks that follow them. Everything else separates terms.
///
///   "Ｃafé's №5" -> "café", "s", "no5"
///
/// Needs utf8proc: link kite::text.

#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "kite/text/concepts.hpp"
#include "kite/text/detail/unicode.hpp"

namespace kite::text {

/// The Unicode word analyzer (a kite::text::analyzer).
struct unicode_words {
    static constexpr std::string_view name() noexcept { return "unicode_words"; }

    /// Calls sink(std::string_view) for each term. Throws unicode_error on invalid UTF-8.
    template <class Sink>
    void analyze(std::string_view text, Sink&& sink) const {
        detail::scan_buffers buf;
        std::string word;
        detail::scan_segments(
            text, buf, [&](std::string_view w) { sink(w); },
            [&](std::span<const utf8proc_int32_t> cps) { detail::split_words(cps, word, sink); },
            "text::unicode_words");
    }


    /// The slow reference: normalizes the whole text with utf8proc, then splits. The oracle of
    /// the ASCII fast path in tests.
    static std::vector<std::string> reference_terms(std::string_view text) {
        utf8::require_valid(text, 0, "text::unicode_words");
        std::vector<utf8proc_int32_t> cps;
        detail::nfkc_casefold(text, cps);
        std::vector<std::string> out;
        std::string word;
        detail::split_words(std::span<const utf8proc_int32_t>(cps), word,
                            [&](std::string_view t) { out.emplace_back(t); });
        return out;
    }
};

}  // namespace kite::text
