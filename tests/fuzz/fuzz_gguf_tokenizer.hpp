#pragma once
// fuzz_gguf_tokenizer: the tokenizer and chat template in a GGUF file's metadata
// (kite/model/formats/gguf_tokenizer.hpp), then encode / decode of a short fixed text.

#include <algorithm>
#include <cstdint>
#include <string>
#include <vector>

#include "fuzz_common.hpp"
#include "kite/model/formats/gguf.hpp"
#include "kite/model/formats/gguf_tokenizer.hpp"

namespace kite::fuzz {

inline int fuzz_gguf_tokenizer(const std::uint8_t* data, std::size_t size) {
    if (size > max_input) return 0;
    const auto path = write_scratch("gguf_tokenizer/in.gguf", as_text(data, size));
    return guarded([&] {
        const model::gguf_file f(path);
        const model::gguf_tokenizer tok(f);
        static constexpr std::string_view sample =
            "Hello world! 12345 caf\xC3\xA9 \xE4\xBD\xA0\xE5\xA5\xBD <|im_start|>user\n<s> </s>  \t tabs";
        const auto ids = tok.encode(sample, true, false);
        const auto ids_special = tok.encode(sample, true, true);
        require_ids_below(ids, tok.vocab_size(), "gguf_tokenizer::encode gave an id outside the vocabulary");
        require_ids_below(ids_special, tok.vocab_size(), "gguf_tokenizer::encode gave an id outside the vocabulary");
        (void)tok.decode(ids);
        (void)tok.decode(ids_special, true);
        const std::size_t n = std::min<std::size_t>(tok.vocab_size(), 512);
        std::vector<std::int32_t> all(n);
        for (std::size_t i = 0; i < n; ++i) {
            all[i] = static_cast<std::int32_t>(i);
            (void)tok.token_bytes(all[i]);
            (void)tok.is_special(all[i]);
        }
        (void)tok.decode(all);
        if (tok.has_chat_template()) {
            const std::vector<text::chat_message> chat{{"system", "Be brief."}, {"user", "What is 2+2? <|im_end|>"},
                                                       {"assistant", "4"}, {"user", "And 3+3?"}};
            require_ids_below(tok.apply_chat_template(chat, true), tok.vocab_size(),
                              "gguf_tokenizer::apply_chat_template gave an id outside the vocabulary");
            (void)tok.apply_chat_template_text(chat, false);
        }
    });
}

}  // namespace kite::fuzz
