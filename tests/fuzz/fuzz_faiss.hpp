#pragma once
// fuzz_faiss: FAISS flat index files (IndexFlatL2 / IP / IDMap, kite/retrieval/faiss_io.hpp),
// read from memory for each metric, then one search when the index is small enough.

#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

#include "fuzz_common.hpp"
#include "kite/retrieval/faiss_io.hpp"
#include "kite/retrieval/flat_index.hpp"
#include "kite/retrieval/metric.hpp"

namespace kite::fuzz {

namespace detail {
template <class Metric>
void read_faiss_and_search(std::span<const std::byte> bytes) {
    guarded([&] {
        const auto index = retrieval::read_faiss<Metric>(bytes, "fuzz.faiss");
        if (index.size() == 0 || index.dim() > 4096) return;
        const std::vector<float> q(index.dim(), 0.5f);
        (void)index.search(std::span<const float>(q), 3);
    });
}
}  // namespace detail

inline int fuzz_faiss(const std::uint8_t* data, std::size_t size) {
    if (size > max_input) return 0;
    const std::span<const std::byte> bytes(reinterpret_cast<const std::byte*>(data), size);
    detail::read_faiss_and_search<metric::l2>(bytes);
    detail::read_faiss_and_search<metric::inner_product>(bytes);
    detail::read_faiss_and_search<metric::cosine>(bytes);
    return 0;
}

}  // namespace kite::fuzz
