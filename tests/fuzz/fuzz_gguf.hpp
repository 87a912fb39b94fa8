#pragma once
// fuzz_gguf: a GGUF file (kite/model/formats/gguf.hpp) — header, metadata, tensor table — then
// the model configuration and weights read_gguf takes from it (kite/model/formats/gguf_model.hpp).

#include <cstdint>
#include <string>

#include "fuzz_common.hpp"
#include "kite/model/formats/gguf.hpp"
#include "kite/model/formats/gguf_model.hpp"

namespace kite::fuzz {

namespace detail {

/// Every accessor of a value, as a user of the metadata would call them.
inline void touch_gguf_value(const model::gguf_value& v, int depth = 0) {
    const auto quiet = [](auto&& f) {
        try {
            f();
        } catch (const kite::error&) {
        }
    };
    quiet([&] { (void)v.as<std::int64_t>("v"); });
    quiet([&] { (void)v.as<std::uint32_t>("v"); });
    quiet([&] { (void)v.as<double>("v"); });
    quiet([&] { (void)v.as<bool>("v"); });
    quiet([&] { (void)v.as<std::string>("v"); });
    quiet([&] { (void)v.strings("v"); });
    quiet([&] { (void)v.as_vector<std::int32_t>("v"); });
    quiet([&] { (void)v.as_vector<float>("v"); });
    if (v.is_array() && depth < 2) {
        std::size_t i = 0;
        for (const auto& e : v.array()) {
            if (++i > 16) break;
            touch_gguf_value(e, depth + 1);
        }
    }
}

}  // namespace detail

inline int fuzz_gguf(const std::uint8_t* data, std::size_t size) {
    if (size > max_input) return 0;
    const auto path = write_scratch("gguf/in.gguf", as_text(data, size));
    return guarded([&] {
        const model::gguf_file f(path);
        for (const auto& [key, value] : f.metadata()) detail::touch_gguf_value(value);
        std::uint64_t sum = 0;
        for (const auto& t : f.tensors()) {
            // Every view must lie inside the mapping: read its first and last bytes.
            if (!t.data.empty()) sum += static_cast<std::uint8_t>(t.data.front()) + static_cast<std::uint8_t>(t.data.back());
            (void)f.tensor(t.name);
        }
        (void)sum;
        try {
            (void)model::gguf_config(f);
        } catch (const kite::error&) {
        }
        const auto m = model::read_gguf(f);
        (void)m.conversions.size();
    });
}

}  // namespace kite::fuzz
