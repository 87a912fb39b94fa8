#pragma once
/// @file kite/text/detail/added_vocab.hpp
/// Added tokens of a Hugging Face tokenizer ("added_tokens" in tokenizer.json: specials such as
/// [CLS] or <|endoftext|>), and the cut of a text at them that tokenizers' AddedVocabulary does:
/// leftmost-longest matches, lstrip / rstrip absorbing the whitespace beside a match.

#include <algorithm>
#include <array>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "kite/core/string_map.hpp"
#include "kite/text/utf8.hpp"

namespace kite::text {

/// An entry of tokenizer.json's "added_tokens".
struct added_token {
    std::string content;
    std::int32_t id = 0;
    bool special = false;
    bool lstrip = false;
    bool rstrip = false;
    bool normalized = false;  ///< matched on the normalized text (else on the raw text)
};

namespace detail {

/// Rust's char::is_whitespace (Unicode White_Space), which lstrip / rstrip use.
constexpr bool rust_whitespace(char32_t c) noexcept {
    return (c >= 0x09 && c <= 0x0D) || c == 0x20 || c == 0x85 || c == 0xA0 || c == 0x1680 ||
           (c >= 0x2000 && c <= 0x200A) || c == 0x2028 || c == 0x2029 || c == 0x202F || c == 0x205F ||
           c == 0x3000;
}

/// The added tokens and their matcher.
class added_vocab {
public:
    void add(added_token t) {
        const auto i = static_cast<std::uint32_t>(tokens_.size());
        lookup_.emplace(t.content, t.id);
        auto& list = by_first_byte_[static_cast<unsigned char>(t.content[0])];
        list.push_back(i);
        tokens_.push_back(std::move(t));
        // Longest first, so the first candidate that matches at a position is the longest.
        std::stable_sort(list.begin(), list.end(), [&](std::uint32_t a, std::uint32_t b) {
            return tokens_[a].content.size() > tokens_[b].content.size();
        });
    }
    const std::vector<added_token>& tokens() const noexcept { return tokens_; }
    bool empty() const noexcept { return tokens_.empty(); }
    /// The id of an added token's content, or -1.
    std::int32_t find(std::string_view content) const noexcept {
        const auto it = lookup_.find(content);
        return it == lookup_.end() ? -1 : it->second;
    }

    /// Cuts `s` at the added tokens whose `normalized` flag equals `normalized`; calls
    /// f(segment, -1) for the text between matches (also for an empty `s`) and f(match, id) for
    /// each match, in order. With match_special = false the special tokens are not matched (their
    /// text stays plain text: tokenizers' split_special_tokens, llama.cpp's parse_special = false).
    template <class F>
    void split(std::string_view s, bool normalized, F&& f, bool match_special = true) const {
        std::size_t start = 0;  // first byte not yet emitted
        std::size_t i = 0;
        while (i < s.size()) {
            const added_token* hit = nullptr;
            for (const std::uint32_t c : by_first_byte_[static_cast<unsigned char>(s[i])]) {
                const auto& t = tokens_[c];
                if (t.normalized == normalized && (match_special || !t.special) &&
                    s.compare(i, t.content.size(), t.content) == 0) {
                    hit = &t;
                    break;
                }
            }
            if (!hit) {
                ++i;
                continue;
            }
            std::size_t b = i, e = i + hit->content.size();
            if (hit->lstrip) {
                while (b > start) {
                    std::size_t k = b - 1;
                    while (k > start && (static_cast<unsigned char>(s[k]) & 0xC0) == 0x80) --k;
                    std::size_t kk = k;
                    if (!rust_whitespace(utf8::decode(s, kk))) break;
                    b = k;
                }
            }
            if (hit->rstrip) {
                while (e < s.size()) {
                    std::size_t k = e;
                    if (!rust_whitespace(utf8::decode(s, k))) break;
                    e = k;
                }
            }
            if (b > start) f(s.substr(start, b - start), std::int32_t{-1});
            f(s.substr(b, e - b), hit->id);
            start = i = e;
        }
        if (start < s.size() || s.empty()) f(s.substr(start), std::int32_t{-1});
    }

private:
    std::vector<added_token> tokens_;
    string_map<std::int32_t> lookup_;
    std::array<std::vector<std::uint32_t>, 256> by_first_byte_;
};

}  // namespace detail
}  // namespace kite::text
