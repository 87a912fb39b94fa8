#pragma once
// fuzz_npy: NumPy .npy files (kite/retrieval/vector_io.hpp) read as float32, int32 and int64
// matrices, and mapped in place.

#include <cstdint>

#include "fuzz_common.hpp"
#include "kite/retrieval/vector_io.hpp"

namespace kite::fuzz {

inline int fuzz_npy(const std::uint8_t* data, std::size_t size) {
    if (size > max_input) return 0;
    const auto path = write_scratch("npy/in.npy", as_text(data, size));
    guarded([&] {
        const auto m = retrieval::read_npy<float>(path);
        float s = 0;
        for (index_t i = 0; i < m.size(); ++i) s += m.flat()[i];
        (void)s;
    });
    guarded([&] { (void)retrieval::read_npy<std::int32_t>(path); });
    guarded([&] { (void)retrieval::read_npy<std::int64_t>(path); });
    guarded([&] {
        const retrieval::mapped_npy m(path);
        float s = 0;
        // Rows only when there are columns: shape (2^63 - 1, 0) is a valid, empty array.
        if (m.cols() > 0)
            for (index_t r = 0; r < m.rows(); ++r)
                for (const float x : m.view().row(r)) s += x;
        (void)s;
    });
    return guarded([&] { (void)retrieval::read_vectors(path); });
}

}  // namespace kite::fuzz
