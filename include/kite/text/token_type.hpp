#pragma once
/// @file kite/text/token_type.hpp
/// The kinds of vocabulary entries SentencePiece defines and GGUF files store per token
/// (`tokenizer.ggml.token_type`, the same numbers as llama.cpp's llama_token_type).
///
///   if (types[id] == kite::text::token_type::control) ...   // <s>, <|im_end|>: never plain text

#include <cstdint>
#include <string_view>

namespace kite::text {

/// What a vocabulary entry is.
enum class token_type : std::int32_t {
    undefined = 0,
    normal = 1,        ///< an ordinary piece of text
    unknown = 2,       ///< <unk>
    control = 3,       ///< <s>, </s>, <|im_start|>: matched in text only when asked (parse_special)
    user_defined = 4,  ///< added text, always matched in text as a whole
    unused = 5,
    byte = 6,          ///< <0xHH>: one raw byte (byte fallback)
};

/// "normal", "control", ... ("undefined" for values outside the enum).
constexpr std::string_view to_string(token_type t) noexcept {
    switch (t) {
        case token_type::normal: return "normal";
        case token_type::unknown: return "unknown";
        case token_type::control: return "control";
        case token_type::user_defined: return "user_defined";
        case token_type::unused: return "unused";
        case token_type::byte: return "byte";
        default: return "undefined";
    }
}

/// 0..255 when `piece` is exactly "<0xHH>" (a byte-fallback piece; hex digits of either case),
/// else -1.
constexpr int byte_token_value(std::string_view piece) noexcept {
    if (piece.size() != 6 || piece.substr(0, 3) != "<0x" || piece[5] != '>') return -1;
    const auto hex = [](char c) {
        if (c >= '0' && c <= '9') return c - '0';
        if (c >= 'A' && c <= 'F') return c - 'A' + 10;
        if (c >= 'a' && c <= 'f') return c - 'a' + 10;
        return -1;
    };
    const int hi = hex(piece[3]), lo = hex(piece[4]);
    return hi < 0 || lo < 0 ? -1 : hi * 16 + lo;
}

}  // namespace kite::text
