#pragma once
// fuzz_vecs: the ANN benchmarks' .fvecs / .ivecs files (kite/retrieval/vector_io.hpp).

#include <cstdint>

#include "fuzz_common.hpp"
#include "kite/retrieval/vector_io.hpp"

namespace kite::fuzz {

inline int fuzz_vecs(const std::uint8_t* data, std::size_t size) {
    if (size > max_input) return 0;
    const auto fpath = write_scratch("vecs/in.fvecs", as_text(data, size));
    const auto ipath = write_scratch("vecs/in.ivecs", as_text(data, size));
    guarded([&] { (void)retrieval::read_fvecs(fpath); });
    guarded([&] { (void)retrieval::read_ivecs(ipath); });
    return guarded([&] { (void)retrieval::read_vectors(ipath); });
}

}  // namespace kite::fuzz
