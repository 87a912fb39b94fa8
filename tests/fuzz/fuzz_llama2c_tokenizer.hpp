#pragma once
// fuzz_llama2c_tokenizer: llama2.c's tokenizer.bin (kite/text/llama2c_tokenizer.hpp), then
// encode and decode of a fixed text.

#include <cstdint>
#include <string_view>

#include "fuzz_common.hpp"
#include "kite/text/llama2c_tokenizer.hpp"

namespace kite::fuzz {

inline int fuzz_llama2c_tokenizer(const std::uint8_t* data, std::size_t size) {
    if (size > max_input) return 0;
    const auto path = write_scratch("llama2c_tokenizer/tokenizer.bin", as_text(data, size));
    return guarded([&] {
        const text::llama2c_tokenizer t(path);
        static constexpr std::string_view sample = "Once upon a time, caf\xC3\xA9 \xE4\xBD\xA0 42!\n\tend";
        const auto ids = t.encode(sample, true, true);
        (void)t.decode(ids);
    });
}

}  // namespace kite::fuzz
