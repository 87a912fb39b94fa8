#pragma once
// fuzz_llama2c: a llama2.c version-0 checkpoint (kite/model/formats/llama2c.hpp), read into
// kite's tensors by read_llama2c (kite/model/formats/load.hpp).

#include <cstdint>

#include "fuzz_common.hpp"
#include "kite/model/formats/llama2c.hpp"
#include "kite/model/formats/load.hpp"

namespace kite::fuzz {

inline int fuzz_llama2c(const std::uint8_t* data, std::size_t size) {
    if (size > max_input) return 0;
    const auto path = write_scratch("llama2c/model.bin", as_text(data, size));
    return guarded([&] {
        const model::llama2c_checkpoint f(path);
        (void)f.to_model_config();
        const auto ck = model::read_llama2c(path);
        (void)ck.tensors.blocks.size();
    });
}

}  // namespace kite::fuzz
