#pragma once
// fuzz_safetensors: a safetensors file (kite/model/formats/safetensors.hpp): the JSON header,
// the tensor table, and every tensor converted to float.

#include <cstdint>

#include "fuzz_common.hpp"
#include "kite/model/formats/safetensors.hpp"

namespace kite::fuzz {

inline int fuzz_safetensors(const std::uint8_t* data, std::size_t size) {
    if (size > max_input) return 0;
    const auto path = write_scratch("safetensors/model.safetensors", as_text(data, size));
    return guarded([&] {
        const model::safetensors_file f(path);
        for (const auto& [k, v] : f.metadata()) (void)(k.size() + v.size());
        for (const auto& t : f.tensors()) {
            const auto r = f.tensor(t.name);
            (void)f.tensor(t);
            guarded([&] {
                const auto v = r.to_float();
                (void)v.size();
            });
            guarded([&] { (void)r.f32(); });
            guarded([&] { (void)r.f32_matrix(); });
        }
        const model::safetensors_weights w(path);
        (void)w.size();
    });
}

}  // namespace kite::fuzz
