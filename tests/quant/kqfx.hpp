#pragma once
// Reader for the named-array fixtures written by tools/quant_make_fixtures.py (format in that
// script's docstring). Values are returned as double; float16 is decoded exactly.

#include <cstdint>
#include <filesystem>
#include <map>
#include <string>
#include <vector>

#include "kite/core/half.hpp"
#include "kite/core/io.hpp"
#include "kite/core/matrix.hpp"

namespace kite::test::quant {

struct array {
    std::vector<std::uint64_t> dims;
    std::vector<double> values;
    double operator()(std::size_t r, std::size_t c) const { return values[r * dims[1] + c]; }
};

inline std::map<std::string, array> read_kqfx(const std::filesystem::path& path) {
    kite::io::mapped_file f(path);
    kite::io::byte_reader in(f.bytes(), path.string());
    const auto magic = in.take(8, "magic");
    KITE_REQUIRE(std::string(reinterpret_cast<const char*>(magic.data()), 8) == "KQFX0001", kite::format_error,
                 path.string(), ": not a KQFX0001 fixture");
    std::map<std::string, array> out;
    const auto count = in.get<std::uint32_t>("count");
    for (std::uint32_t i = 0; i < count; ++i) {
        const auto len = in.get<std::uint32_t>("name length");
        const auto nb = in.take(len, "name");
        std::string name(reinterpret_cast<const char*>(nb.data()), len);
        const auto dtype = in.get<std::uint8_t>("dtype");
        const auto ndim = in.get<std::uint32_t>("ndim");
        array a;
        std::size_t n = 1;
        for (std::uint32_t d = 0; d < ndim; ++d) {
            a.dims.push_back(in.get<std::uint64_t>("dim"));
            n *= a.dims.back();
        }
        a.values.resize(n);
        for (std::size_t j = 0; j < n; ++j) {
            switch (dtype) {
                case 0: a.values[j] = in.get<float>("f32"); break;
                case 1: a.values[j] = in.get<double>("f64"); break;
                case 2: a.values[j] = in.get<std::int32_t>("i32"); break;
                case 3: a.values[j] = in.get<std::uint8_t>("u8"); break;
                case 4: a.values[j] = in.get<std::int16_t>("i16"); break;
                case 5: a.values[j] = kite::fp16::from_bits(in.get<std::uint16_t>("f16")).to_float(); break;
                default: KITE_REQUIRE(false, kite::format_error, path.string(), ": unknown dtype ", int(dtype));
            }
        }
        out.emplace(std::move(name), std::move(a));
    }
    return out;
}

/// A 2-D fixture array as a float matrix.
inline kite::matrix<float> to_matrix(const array& a) {
    kite::matrix<float> m(a.dims[0], a.dims[1]);
    for (std::size_t i = 0; i < a.values.size(); ++i) m.flat()[i] = static_cast<float>(a.values[i]);
    return m;
}

}  // namespace kite::test::quant
