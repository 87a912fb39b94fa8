#pragma once
// fuzz_wordpiece: a WordPiece tokenizer (kite/text/wordpiece.hpp) from the bytes read as
// tokenizer.json and as vocab.txt, then encoding a fixed text.

#include <cstdint>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "fuzz_common.hpp"
#include "kite/text/wordpiece.hpp"

namespace kite::fuzz {

namespace detail {
inline void use_wordpiece(const text::wordpiece_tokenizer& t) {
    static constexpr std::string_view sample =
        "Hello, World! unaffable [CLS] [MASK] caf\xC3\xA9 \xE4\xBD\xA0\xE5\xA5\xBD 12345 don't \t\n end";
    const auto ids = t.encode(sample);
    require_ids_below(ids, t.vocab_size(), "wordpiece::encode gave an id outside the vocabulary");
    require_ids_below(t.encode(sample, 8), t.vocab_size(), "wordpiece::encode gave an id outside the vocabulary");
    for (const std::int32_t id : ids) (void)t.id_to_token(id);
}
}  // namespace detail

inline int fuzz_wordpiece(const std::uint8_t* data, std::size_t size) {
    if (size > max_input) return 0;
    const std::string_view bytes = as_text(data, size);
    guarded([&] { detail::use_wordpiece(text::wordpiece_tokenizer::from_vocab_text(bytes)); });
    const nlohmann::json j = nlohmann::json::parse(bytes.begin(), bytes.end(), nullptr, /*allow_exceptions=*/false);
    if (j.is_discarded()) return 0;  // not JSON: what the caller of from_json checks
    return guarded([&] { detail::use_wordpiece(text::wordpiece_tokenizer::from_json(j, "fuzz tokenizer.json")); });
}

}  // namespace kite::fuzz
