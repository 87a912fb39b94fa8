#pragma once
// fuzz_bpe: a byte-level BPE tokenizer (kite/text/bpe.hpp) from the bytes read as
// tokenizer.json, then encoding and decoding a fixed text.

#include <cstdint>
#include <string_view>

#include <nlohmann/json.hpp>

#include "fuzz_common.hpp"
#include "kite/text/bpe.hpp"

namespace kite::fuzz {

inline int fuzz_bpe(const std::uint8_t* data, std::size_t size) {
    if (size > max_input) return 0;
    const std::string_view bytes = as_text(data, size);
    const nlohmann::json j = nlohmann::json::parse(bytes.begin(), bytes.end(), nullptr, /*allow_exceptions=*/false);
    if (j.is_discarded()) return 0;  // not JSON: what the caller of from_json checks
    return guarded([&] {
        const auto t = text::bpe_tokenizer::from_json(j, "fuzz tokenizer.json");
        static constexpr std::string_view sample =
            "Hello world!  It's 2024: caf\xC3\xA9 \xE4\xBD\xA0\xE5\xA5\xBD <|endoftext|> <|im_start|>  \n\n x";
        const auto ids = t.encode(sample, true, true);
        const auto plain = t.encode(sample, false, false);
        require_ids_below(ids, t.vocab_size(), "bpe_tokenizer::encode gave an id outside the vocabulary");
        require_ids_below(plain, t.vocab_size(), "bpe_tokenizer::encode gave an id outside the vocabulary");
        for (const std::int32_t id : ids) {
            try {
                (void)t.id_to_token(id);
            } catch (const kite::error&) {
                finding("bpe_tokenizer::encode gave an id that id_to_token does not know");
            }
        }
        (void)t.decode(ids);
        (void)t.decode(ids, true);
    });
}

}  // namespace kite::fuzz
