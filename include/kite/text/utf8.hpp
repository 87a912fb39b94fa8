#pragma once
/// @file kite/text/utf8.hpp
/// UTF-8 validation, decoding and encoding. Needs only the standard library (no utf8proc), so
/// the retrieval core can use it without linking kite::text.
///
/// Validation follows the Unicode standard (table 3-7): no overlong forms, no surrogates
/// (U+D800..U+DFFF), nothing above U+10FFFF, no truncated sequences. Errors are
/// kite::unicode_error naming the byte offset of the first bad byte.

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "kite/core/error.hpp"

namespace kite::text::utf8 {

/// Length of the valid sequence starting at `s[i]`, or 0 when it is invalid. `s[i]` >= 0x80.
inline std::size_t sequence_length(std::string_view s, std::size_t i) noexcept {
    const auto b = [&](std::size_t k) { return static_cast<unsigned char>(s[k]); };
    const std::size_t n = s.size();
    const unsigned c = b(i);
    const auto cont = [&](std::size_t k, unsigned lo = 0x80, unsigned hi = 0xBF) {
        return k < n && b(k) >= lo && b(k) <= hi;
    };
    if (c >= 0xC2 && c <= 0xDF) return cont(i + 1) ? 2 : 0;
    if (c == 0xE0) return cont(i + 1, 0xA0) && cont(i + 2) ? 3 : 0;
    if ((c >= 0xE1 && c <= 0xEC) || c == 0xEE || c == 0xEF) return cont(i + 1) && cont(i + 2) ? 3 : 0;
    if (c == 0xED) return cont(i + 1, 0x80, 0x9F) && cont(i + 2) ? 3 : 0;
    if (c == 0xF0) return cont(i + 1, 0x90) && cont(i + 2) && cont(i + 3) ? 4 : 0;
    if (c >= 0xF1 && c <= 0xF3) return cont(i + 1) && cont(i + 2) && cont(i + 3) ? 4 : 0;
    if (c == 0xF4) return cont(i + 1, 0x80, 0x8F) && cont(i + 2) && cont(i + 3) ? 4 : 0;
    return 0;
}

/// Offset of the first byte that breaks UTF-8 in `s` (the start of the bad sequence), or
/// std::string_view::npos when `s` is valid.
inline std::size_t find_invalid(std::string_view s) noexcept {
    std::size_t i = 0;
    const std::size_t n = s.size();
    while (i < n) {
        if (static_cast<unsigned char>(s[i]) < 0x80) {
            ++i;
            continue;
        }
        const std::size_t len = sequence_length(s, i);
        if (len == 0) return i;
        i += len;
    }
    return std::string_view::npos;
}

/// Throws kite::unicode_error when `s` is not valid UTF-8. `base` is added to the reported
/// offset (for checking a slice of a larger text); `who` names the caller in the message.
inline void require_valid(std::string_view s, std::size_t base = 0, std::string_view who = "text") {
    const std::size_t bad = find_invalid(s);
    if (bad == std::string_view::npos) [[likely]]
        return;
    constexpr char hex[] = "0123456789ABCDEF";
    const auto byte = static_cast<unsigned char>(s[bad]);
    const char shown[3] = {hex[byte >> 4], hex[byte & 15], 0};
    throw unicode_error(::kite::detail::concat(who, ": invalid UTF-8 at byte offset ", base + bad,
                                               " (byte 0x", shown,
                                               "); expected a well-formed UTF-8 sequence"),
                        base + bad);
}

/// Decodes the code point at `s[i]` (which must start a valid sequence) and advances `i`.
inline char32_t decode(std::string_view s, std::size_t& i) noexcept {
    const auto b = [&](std::size_t k) { return static_cast<char32_t>(static_cast<unsigned char>(s[k])); };
    const char32_t c = b(i);
    if (c < 0x80) {
        i += 1;
        return c;
    }
    if (c < 0xE0) {
        const char32_t r = ((c & 0x1F) << 6) | (b(i + 1) & 0x3F);
        i += 2;
        return r;
    }
    if (c < 0xF0) {
        const char32_t r = ((c & 0x0F) << 12) | ((b(i + 1) & 0x3F) << 6) | (b(i + 2) & 0x3F);
        i += 3;
        return r;
    }
    const char32_t r = ((c & 0x07) << 18) | ((b(i + 1) & 0x3F) << 12) | ((b(i + 2) & 0x3F) << 6) |
                       (b(i + 3) & 0x3F);
    i += 4;
    return r;
}

/// Appends the UTF-8 encoding of `cp` (a Unicode scalar value) to `out`.
inline void append(std::string& out, char32_t cp) {
    if (cp < 0x80) {
        out.push_back(static_cast<char>(cp));
    } else if (cp < 0x800) {
        out.push_back(static_cast<char>(0xC0 | (cp >> 6)));
        out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
    } else if (cp < 0x10000) {
        out.push_back(static_cast<char>(0xE0 | (cp >> 12)));
        out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
        out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
    } else {
        out.push_back(static_cast<char>(0xF0 | (cp >> 18)));
        out.push_back(static_cast<char>(0x80 | ((cp >> 12) & 0x3F)));
        out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
        out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
    }
}

}  // namespace kite::text::utf8
