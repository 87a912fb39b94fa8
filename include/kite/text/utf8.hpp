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

/// Bytes at s[i..] that begin a well-formed UTF-8 sequence but stop short of completing it
/// (at least 1): Unicode's "maximal subpart", the unit String::from_utf8_lossy replaces.
inline std::size_t maximal_subpart(std::string_view s, std::size_t i) noexcept {
    const auto b = [&](std::size_t k) { return static_cast<unsigned char>(s[k]); };
    const unsigned c = b(i);
    std::size_t need = 0;
    unsigned lo = 0x80, hi = 0xBF;
    if (c >= 0xC2 && c <= 0xDF) need = 1;
    else if (c == 0xE0) { need = 2; lo = 0xA0; }
    else if ((c >= 0xE1 && c <= 0xEC) || c == 0xEE || c == 0xEF) need = 2;
    else if (c == 0xED) { need = 2; hi = 0x9F; }
    else if (c == 0xF0) { need = 3; lo = 0x90; }
    else if (c >= 0xF1 && c <= 0xF3) need = 3;
    else if (c == 0xF4) { need = 3; hi = 0x8F; }
    std::size_t len = 1;
    for (std::size_t k = 0; k < need && i + len < s.size(); ++k) {
        const unsigned x = b(i + len);
        if (x < (k == 0 ? lo : 0x80u) || x > (k == 0 ? hi : 0xBFu)) break;
        ++len;
    }
    return len;
}

/// `s` with each maximal subpart of an invalid sequence replaced by U+FFFD (Rust's
/// String::from_utf8_lossy, which Hugging Face tokenizers' decode uses).
inline std::string lossy(std::string_view s) {
    std::string out;
    out.reserve(s.size());
    std::size_t i = 0;
    while (i < s.size()) {
        if (static_cast<unsigned char>(s[i]) < 0x80) {
            out.push_back(s[i++]);
            continue;
        }
        if (const std::size_t len = sequence_length(s, i)) {
            out.append(s.substr(i, len));
            i += len;
            continue;
        }
        out += "\xEF\xBF\xBD";
        i += maximal_subpart(s, i);
    }
    return out;
}

/// Turns a stream of byte chunks (the pieces of tokens decoded one at a time) into valid UTF-8
/// text: a character whose bytes are split across chunks is held back until it is complete;
/// bytes that can never form a character become U+FFFD, as lossy() does on the whole text. So
/// the concatenation of every push() and the final finish() equals lossy(all bytes).
///
///   kite::text::utf8::stream_decoder s;
///   for (id : generated) std::cout << s.push(tokenizer.token_bytes(id));
///   std::cout << s.finish();
class stream_decoder {
public:
    /// Appends `bytes` and returns the text that is now complete (possibly empty).
    std::string push(std::string_view bytes) {
        pending_.append(bytes);
        std::string out;
        std::size_t i = 0;
        const std::size_t n = pending_.size();
        while (i < n) {
            if (static_cast<unsigned char>(pending_[i]) < 0x80) {
                out.push_back(pending_[i++]);
                continue;
            }
            if (const std::size_t len = sequence_length(pending_, i)) {
                out.append(pending_, i, len);
                i += len;
                continue;
            }
            const std::size_t sub = maximal_subpart(pending_, i);
            if (i + sub == n && sub < expected_length(static_cast<unsigned char>(pending_[i]))) break;  // may complete later
            out += "\xEF\xBF\xBD";
            i += sub;
        }
        pending_.erase(0, i);
        return out;
    }
    /// The held-back bytes of an unfinished character as U+FFFD (empty when none), and a reset.
    std::string finish() {
        std::string out = lossy(pending_);
        pending_.clear();
        return out;
    }
    /// Bytes held back (at most 3).
    std::size_t pending() const noexcept { return pending_.size(); }

private:
    static std::size_t expected_length(unsigned c) noexcept {
        if (c >= 0xC2 && c <= 0xDF) return 2;
        if (c >= 0xE0 && c <= 0xEF) return 3;
        if (c >= 0xF0 && c <= 0xF4) return 4;
        return 1;
    }
    std::string pending_;
};

}  // namespace kite::text::utf8
