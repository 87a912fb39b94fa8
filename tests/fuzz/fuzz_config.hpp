#pragma once
// fuzz_config: a Hugging Face config.json (kite/model/config.hpp) parsed into a model_config.

#include <cstdint>

#include "fuzz_common.hpp"
#include "kite/model/config.hpp"

namespace kite::fuzz {

inline int fuzz_config(const std::uint8_t* data, std::size_t size) {
    if (size > max_input) return 0;
    return guarded([&] {
        const auto c = model::parse_config(as_text(data, size), "fuzz config.json");
        (void)c.hidden_size;
    });
}

}  // namespace kite::fuzz
