#pragma once
/// @file kite/text/detail/bpe_pretokenize.hpp
/// The pre-tokenizer regexes of byte-level BPE tokenizers, matched by hand (no regex engine):
///
///   gpt2   's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
///   qwen2  (?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|
///          \s*[\r\n]+|\s+(?!\S)|\s+
///   llama3 the qwen2 pattern with \p{N}{1,3}
///
/// Each alternative is tried in order at the current position with the backtracking semantics
/// of the regex engine (Oniguruma, leftmost alternative first, greedy quantifiers); the
/// comments by each case say how the backtracking resolves. Every character matches some
/// alternative of these patterns, so the pieces cover the text. Classes come from
/// bpe_classes.hpp, measured on the engine itself.

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "kite/text/detail/bpe_classes.hpp"
#include "kite/text/utf8.hpp"

namespace kite::text::detail {

enum class bpe_cls : std::uint8_t { other = 0, letter = 1, number = 2, space = 3 };

/// \p{L}, \p{N}, \s or other, for one code point.
inline bpe_cls classify_bpe(char32_t c) noexcept {
    if (c < 0x80) {
        if ((c | 0x20) >= 'a' && (c | 0x20) <= 'z') return bpe_cls::letter;
        if (c >= '0' && c <= '9') return bpe_cls::number;
        if (c == ' ' || (c >= 0x09 && c <= 0x0D)) return bpe_cls::space;
        return bpe_cls::other;
    }
    const auto it = std::upper_bound(bpe_class_ranges.begin(), bpe_class_ranges.end(), c,
                                     [](char32_t v, const code_point_range& r) { return v < r.first; });
    if (it == bpe_class_ranges.begin()) return bpe_cls::other;
    const auto& r = *(it - 1);
    return c <= r.last ? static_cast<bpe_cls>(r.cls) : bpe_cls::other;
}

/// Which pattern splits the text.
enum class bpe_pattern : std::uint8_t { gpt2, qwen2, llama3 };

/// A cursor over valid UTF-8 that decodes one code point at a time with its class.
struct bpe_cursor {
    std::string_view s;
    /// Code point at byte offset i; `len` receives its byte length. i < s.size().
    char32_t at(std::size_t i, std::size_t& len) const noexcept {
        std::size_t j = i;
        const char32_t c = utf8::decode(s, j);
        len = j - i;
        return c;
    }
    bpe_cls cls_at(std::size_t i) const noexcept {
        std::size_t len;
        return classify_bpe(at(i, len));
    }
    /// End of the run of characters of class `k` starting at i.
    std::size_t run(std::size_t i, bpe_cls k) const noexcept {
        while (i < s.size()) {
            std::size_t len;
            if (classify_bpe(at(i, len)) != k) break;
            i += len;
        }
        return i;
    }
    std::size_t run_n(std::size_t i, bpe_cls k, int max_count) const noexcept {
        for (int n = 0; n < max_count && i < s.size(); ++n) {
            std::size_t len;
            if (classify_bpe(at(i, len)) != k) break;
            i += len;
        }
        return i;
    }
};

inline bool is_cr_lf(char32_t c) noexcept { return c == '\r' || c == '\n'; }

/// 's 't 're 've 'm 'll 'd at i (s[i] == '\''); case-insensitive for qwen2/llama3, where
/// Oniguruma's case folding also takes U+017F (long s) for s. Returns the match end or 0.
inline std::size_t match_contraction(const bpe_cursor& cur, std::size_t i, bool fold) noexcept {
    const std::string_view s = cur.s;
    const auto ch = [&](std::size_t k, char32_t& c, std::size_t& len) {
        if (k >= s.size()) return false;
        c = cur.at(k, len);
        if (fold && c >= 'A' && c <= 'Z') c += 32;
        if (fold && c == 0x17F) c = 's';
        return true;
    };
    char32_t a, b;
    std::size_t la, lb;
    if (!ch(i + 1, a, la)) return 0;
    const std::size_t j = i + 1 + la;
    if (a == 's' || a == 't' || a == 'm' || a == 'd') return j;
    if (!ch(j, b, lb)) return 0;
    if ((a == 'r' && b == 'e') || (a == 'v' && b == 'e') || (a == 'l' && b == 'l')) return j + lb;
    return 0;
}

/// End of the match at i (i < s.size()) of the pattern `p`.
inline std::size_t bpe_match(const bpe_cursor& cur, std::size_t i, bpe_pattern p) noexcept {
    const std::string_view s = cur.s;
    const std::size_t n = s.size();
    std::size_t l0;
    const char32_t c0 = cur.at(i, l0);
    const bpe_cls k0 = classify_bpe(c0);
    const std::size_t i1 = i + l0;
    const bpe_cls k1 = i1 < n ? cur.cls_at(i1) : bpe_cls::other;
    const bool has1 = i1 < n;

    if (c0 == '\'') {
        if (const std::size_t e = match_contraction(cur, i, p != bpe_pattern::gpt2)) return e;
    }
    if (p == bpe_pattern::gpt2) {
        // ` ?\p{L}+`, ` ?\p{N}+`, ` ?[^\s\p{L}\p{N}]+`: the optional space only helps when the
        // class run follows it; otherwise the run must start at i.
        for (const bpe_cls k : {bpe_cls::letter, bpe_cls::number, bpe_cls::other}) {
            if (c0 == ' ' && has1 && k1 == k) return cur.run(i1, k);
            if (k0 == k) return cur.run(i, k);
        }
    } else {
        // `[^\r\n\p{L}\p{N}]?\p{L}+`
        if (k0 != bpe_cls::letter && k0 != bpe_cls::number && !is_cr_lf(c0) && has1 && k1 == bpe_cls::letter)
            return cur.run(i1, bpe_cls::letter);
        if (k0 == bpe_cls::letter) return cur.run(i, bpe_cls::letter);
        // `\p{N}` or `\p{N}{1,3}`
        if (k0 == bpe_cls::number) return cur.run_n(i, bpe_cls::number, p == bpe_pattern::qwen2 ? 1 : 3);
        // ` ?[^\s\p{L}\p{N}]+[\r\n]*`
        std::size_t e = 0;
        if (c0 == ' ' && has1 && k1 == bpe_cls::other) e = cur.run(i1, bpe_cls::other);
        else if (k0 == bpe_cls::other) e = cur.run(i, bpe_cls::other);
        if (e) {
            while (e < n && (s[e] == '\r' || s[e] == '\n')) ++e;
            return e;
        }
        // `\s*[\r\n]+`: \s* backs off to the last \r or \n of the whitespace run, and [\r\n]+
        // takes it (the characters after it in the run are not \r or \n).
        if (k0 == bpe_cls::space) {
            const std::size_t run_end = cur.run(i, bpe_cls::space);
            std::size_t last = n;
            for (std::size_t k = i; k < run_end; ++k)
                if (s[k] == '\r' || s[k] == '\n') last = k;  // ASCII bytes never occur inside a sequence
            if (last != n) return last + 1;
        }
    }
    // `\s+(?!\S)`: the whole run at the end of the text; else the run less its last character
    // (which is followed by non-space), when that leaves at least one.
    // `\s+`: the whole run.
    if (k0 == bpe_cls::space) {
        const std::size_t run_end = cur.run(i, bpe_cls::space);
        if (run_end == n) return run_end;
        std::size_t last = i, k = i;
        while (k < run_end) {
            last = k;
            std::size_t len;
            cur.at(k, len);
            k += len;
        }
        return last > i ? last : run_end;
    }
    return i1;  // unreachable for these patterns: every class is covered above
}

/// Calls sink(piece) for each pre-token of `s` (valid UTF-8) under pattern `p`.
template <class Sink>
void bpe_split(std::string_view s, bpe_pattern p, Sink&& sink) {
    const bpe_cursor cur{s};
    std::size_t i = 0;
    while (i < s.size()) {
        const std::size_t e = bpe_match(cur, i, p);
        sink(s.substr(i, e - i));
        i = e;
    }
}

/// Tokenizers' Digits(individual_digits = true) followed by the pattern: every \p{N} code point
/// is a piece of its own, and `p` splits the text between them. This is the original SmolLM2 /
/// StarCoder tokenizer.json, and llama.cpp's "smollm" / "starcoder" / "refact" pre-tokenizers
/// (regexes "\p{N}", then GPT-2's, each applied to the pieces of the one before).
template <class Sink>
void bpe_split_digits(std::string_view s, bpe_pattern p, Sink&& sink) {
    std::size_t start = 0, i = 0;
    while (i < s.size()) {
        std::size_t j = i;
        const char32_t c = utf8::decode(s, j);
        if (classify_bpe(c) == bpe_cls::number) {
            if (i > start) bpe_split(s.substr(start, i - start), p, sink);
            sink(s.substr(i, j - i));
            start = j;
        }
        i = j;
    }
    if (start < s.size()) bpe_split(s.substr(start), p, sink);
}

}  // namespace kite::text::detail
