#pragma once
// fuzz_hf_checkpoint: a Hugging Face checkpoint folder read by read_hf (decoders:
// kite/model/formats/load.hpp) and read_bert (kite/model/formats/bert_loader.hpp). The input
// holds config.json and model.safetensors separated by kite::fuzz::part_separator.

#include <cstdint>

#include "fuzz_common.hpp"
#include "kite/model/formats/bert_loader.hpp"
#include "kite/model/formats/load.hpp"

namespace kite::fuzz {

inline int fuzz_hf_checkpoint(const std::uint8_t* data, std::size_t size) {
    if (size > max_input) return 0;
    const auto parts = split_parts(as_text(data, size), part_separator);
    const auto dir = fresh_scratch_dir("hf_checkpoint");
    write_scratch("hf_checkpoint/config.json", parts[0]);
    if (parts.size() > 1) write_scratch("hf_checkpoint/model.safetensors", parts[1]);
    guarded([&] { (void)model::read_hf(dir); });
    guarded([&] { (void)model::read_bert(dir); });
    return 0;
}

}  // namespace kite::fuzz
