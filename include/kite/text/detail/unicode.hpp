#pragma once
/// @file kite/text/detail/unicode.hpp
/// The scanning machinery under kite's analyzers: NFKC + full case folding (utf8proc), character
/// classes, and a segmenter with an ASCII fast path.
///
/// Needs utf8proc: link kite::text (which defines KITE_WITH_TEXT).
///
/// Fast path, and why it is exact. NFKC and case folding map ASCII to ASCII (A-Z to a-z, the rest
/// unchanged), and the only compositions that involve an ASCII character are '<', '=', '>'
/// followed by U+0338, which compose to math symbols (separators). So the text is cut at ASCII
/// separators into segments; a segment of ASCII letters and digits only is lower-cased in place,
/// and every other segment goes through utf8proc on its own. A combining mark that begins a
/// segment is dropped, exactly as it is when the whole text is normalized at once (it either
/// follows a separator or composes with one into a symbol). tests/text checks the two paths
/// agree on random text.

#include <array>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include <utf8proc.h>

#include "kite/core/error.hpp"
#include "kite/text/utf8.hpp"

namespace kite::text::detail {

/// 1 for ASCII letters and digits.
inline constexpr std::array<std::uint8_t, 256> ascii_alnum_table = [] {
    std::array<std::uint8_t, 256> t{};
    for (int c = '0'; c <= '9'; ++c) t[static_cast<std::size_t>(c)] = 1;
    for (int c = 'a'; c <= 'z'; ++c) t[static_cast<std::size_t>(c)] = 1;
    for (int c = 'A'; c <= 'Z'; ++c) t[static_cast<std::size_t>(c)] = 1;
    return t;
}();

/// ASCII letters lower-cased, every other byte unchanged.
inline constexpr std::array<char, 256> ascii_lower_table = [] {
    std::array<char, 256> t{};
    for (int c = 0; c < 256; ++c)
        t[static_cast<std::size_t>(c)] = static_cast<char>(c >= 'A' && c <= 'Z' ? c + 32 : c);
    return t;
}();

/// What a (normalized) code point does to a token.
enum class char_class : std::uint8_t {
    separator,  // ends the current token
    word,       // letter or number (Unicode categories L*, N*)
    mark,       // combining mark (M*): continues a word, dropped elsewhere
    cjk,        // Han, Hiragana, Katakana or Hangul: bigrammed by the CJK analyzer
};

/// True for the scripts Lucene's CJKBigramFilter bigrams: Han, Hiragana, Katakana, Hangul.
constexpr bool is_cjk(char32_t c) noexcept {
    return (c >= 0x1100 && c <= 0x11FF) ||    // Hangul Jamo
           (c >= 0x2E80 && c <= 0x2FDF) ||    // CJK radicals, Kangxi radicals
           (c >= 0x3005 && c <= 0x3007) ||    // 々 〆 〇
           (c >= 0x3021 && c <= 0x3029) ||    // Hangzhou numerals
           (c >= 0x3031 && c <= 0x3035) ||    // kana repeat marks
           (c >= 0x3038 && c <= 0x303B) ||    //
           (c >= 0x3041 && c <= 0x30FF) ||    // Hiragana, Katakana (incl. ー)
           (c >= 0x3130 && c <= 0x318F) ||    // Hangul Compatibility Jamo
           (c >= 0x31F0 && c <= 0x31FF) ||    // Katakana Phonetic Extensions
           (c >= 0x3400 && c <= 0x4DBF) ||    // CJK Extension A
           (c >= 0x4E00 && c <= 0x9FFF) ||    // CJK Unified Ideographs
           (c >= 0xA960 && c <= 0xA97F) ||    // Hangul Jamo Extended-A
           (c >= 0xAC00 && c <= 0xD7AF) ||    // Hangul Syllables
           (c >= 0xD7B0 && c <= 0xD7FF) ||    // Hangul Jamo Extended-B
           (c >= 0xF900 && c <= 0xFAFF) ||    // CJK Compatibility Ideographs
           (c >= 0x1B000 && c <= 0x1B16F) ||  // Kana Supplement / Extended-A
           (c >= 0x20000 && c <= 0x3134F);    // CJK Extensions B..G, compatibility supplement
}

/// Class of a code point (after normalization). CJK ranges are tested first; they are letters.
inline char_class classify(char32_t c) noexcept {
    if (c < 0x80) return ascii_alnum_table[c] ? char_class::word : char_class::separator;
    if (is_cjk(c)) {
        // Marks and symbols inside the CJK blocks (e.g. U+3099 voicing marks) keep their class.
        const auto cat = utf8proc_category(static_cast<utf8proc_int32_t>(c));
        if (cat >= UTF8PROC_CATEGORY_LU && cat <= UTF8PROC_CATEGORY_LO) return char_class::cjk;
        if (cat >= UTF8PROC_CATEGORY_MN && cat <= UTF8PROC_CATEGORY_ME) return char_class::mark;
        if (cat >= UTF8PROC_CATEGORY_ND && cat <= UTF8PROC_CATEGORY_NO) return char_class::cjk;
        return char_class::separator;
    }
    const auto cat = utf8proc_category(static_cast<utf8proc_int32_t>(c));
    if (cat >= UTF8PROC_CATEGORY_LU && cat <= UTF8PROC_CATEGORY_LO) return char_class::word;
    if (cat >= UTF8PROC_CATEGORY_MN && cat <= UTF8PROC_CATEGORY_ME) return char_class::mark;
    if (cat >= UTF8PROC_CATEGORY_ND && cat <= UTF8PROC_CATEGORY_NO) return char_class::word;
    return char_class::separator;
}

/// utf8proc options for NFKC with full case folding, dropping default-ignorable code points
/// (soft hyphen, zero-width joiners): Unicode's NFKC_Casefold, as utf8proc_NFKC_Casefold.
inline constexpr auto nfkc_casefold_options = static_cast<utf8proc_option_t>(
    UTF8PROC_STABLE | UTF8PROC_COMPOSE | UTF8PROC_COMPAT | UTF8PROC_CASEFOLD | UTF8PROC_IGNORE);

/// Writes NFKC_Casefold(`s`) as code points into `out` (resized). `s` must be valid UTF-8.
inline void nfkc_casefold(std::string_view s, std::vector<utf8proc_int32_t>& out) {
    if (out.size() < s.size() + 16) out.resize(s.size() + 16);
    for (;;) {
        const auto n = utf8proc_decompose(reinterpret_cast<const utf8proc_uint8_t*>(s.data()),
                                          static_cast<utf8proc_ssize_t>(s.size()), out.data(),
                                          static_cast<utf8proc_ssize_t>(out.size()),
                                          nfkc_casefold_options);
        if (n < 0) {
            // Only reachable for invalid input, which callers reject first.
            ::kite::detail::raise<invalid_argument>("utf8proc: ", utf8proc_errmsg(n));
        }
        if (static_cast<std::size_t>(n) <= out.size()) {
            const auto m = utf8proc_normalize_utf32(out.data(), n, nfkc_casefold_options);
            if (m < 0) ::kite::detail::raise<invalid_argument>("utf8proc: ", utf8proc_errmsg(m));
            out.resize(static_cast<std::size_t>(m));
            return;
        }
        out.resize(static_cast<std::size_t>(n));
    }
}

/// Reusable buffers of one analyze() call.
struct scan_buffers {
    std::string word;                         // the ASCII word being lower-cased
    std::vector<utf8proc_int32_t> codepoints;  // a normalized non-ASCII segment
};

/// Cuts valid-or-not UTF-8 `text` at ASCII separators. Calls `ascii_word(std::string_view)` with
/// each lower-cased all-ASCII segment, and `unicode_segment(std::span<const utf8proc_int32_t>)`
/// with NFKC_Casefold of every other segment. Throws unicode_error on invalid UTF-8 (the offset
/// is the first bad byte of the whole text); tokens before it have been emitted by then.
template <class AsciiWord, class UnicodeSegment>
void scan_segments(std::string_view text, scan_buffers& buf, AsciiWord&& ascii_word,
                   UnicodeSegment&& unicode_segment, std::string_view who) {
    const auto* p = reinterpret_cast<const unsigned char*>(text.data());
    const std::size_t n = text.size();
    std::size_t i = 0;
    while (i < n) {
        if (p[i] < 0x80 && !ascii_alnum_table[p[i]]) {
            ++i;
            continue;
        }
        const std::size_t start = i;
        bool ascii = true;
        while (i < n && (p[i] >= 0x80 || ascii_alnum_table[p[i]])) {
            ascii &= p[i] < 0x80;
            ++i;
        }
        if (ascii) {
            buf.word.resize(i - start);
            for (std::size_t k = start; k < i; ++k) buf.word[k - start] = ascii_lower_table[p[k]];
            ascii_word(std::string_view(buf.word));
        } else {
            const std::string_view seg = text.substr(start, i - start);
            utf8::require_valid(seg, start, who);
            nfkc_casefold(seg, buf.codepoints);
            unicode_segment(std::span<const utf8proc_int32_t>(buf.codepoints));
        }
    }
}

/// Splits normalized code points into words (letters/digits, with combining marks that follow
/// them); calls `emit(std::string_view)` per word. `word` is scratch.
template <class Emit>
void split_words(std::span<const utf8proc_int32_t> cps, std::string& word, Emit&& emit) {
    word.clear();
    for (const auto cp : cps) {
        const auto c = static_cast<char32_t>(cp);
        switch (classify(c)) {
            case char_class::word:
            case char_class::cjk:
                utf8::append(word, c);
                break;
            case char_class::mark:
                if (!word.empty()) utf8::append(word, c);
                break;
            case char_class::separator:
                if (!word.empty()) {
                    emit(std::string_view(word));
                    word.clear();
                }
                break;
        }
    }
    if (!word.empty()) {
        emit(std::string_view(word));
        word.clear();
    }
}

}  // namespace kite::text::detail
