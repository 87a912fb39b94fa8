#pragma once
// fuzz_bm25: kite's own BM25 index files (kite/retrieval/bm25.hpp, load). The input is the
// container's payload: the harness writes the 24-byte header with the right magic, version,
// size and CRC-32C around it, so the fuzzer explores the index format rather than the checksum
// (a corrupt file is refused by the checksum before anything else; that path is tested in
// tests/retrieval). A loaded index answers a search and survives a save / load round trip.

#include <cstdint>
#include <cstring>
#include <span>
#include <string>
#include <vector>

#include "fuzz_common.hpp"
#include "kite/core/checksum.hpp"
#include "kite/retrieval/bm25.hpp"
#include "kite/retrieval/bm25_variants.hpp"
#include "kite/text/pretokenized.hpp"

namespace kite::fuzz {

namespace detail {
/// `payload` in kite's container (retrieval/detail/serialize.hpp) with a valid header.
inline std::string bm25_container(std::string_view payload, std::string_view magic, std::uint32_t version) {
    std::string out(24, '\0');
    std::memcpy(out.data(), magic.data(), std::min<std::size_t>(magic.size(), 8));
    const std::uint32_t crc =
        kite::crc32c(std::span<const std::byte>(reinterpret_cast<const std::byte*>(payload.data()), payload.size()));
    const std::uint64_t n = payload.size();
    std::memcpy(out.data() + 8, &version, 4);
    std::memcpy(out.data() + 12, &crc, 4);
    std::memcpy(out.data() + 16, &n, 8);
    out.append(payload);
    return out;
}
}  // namespace detail

inline int fuzz_bm25(const std::uint8_t* data, std::size_t size) {
    if (size > max_input) return 0;
    using index_type = retrieval::bm25_index<bm25::lucene, text::pretokenized>;
    const auto path = write_scratch(
        "bm25/index.kbm25", detail::bm25_container(as_text(data, size), index_type::file_magic, index_type::file_version));
    return guarded([&] {
        const auto ix = index_type::load(path);
        const std::vector<std::uint32_t> q{0, 1, 2, 3, 5, 8};
        (void)ix.search(std::span<const std::uint32_t>(q), 5);
        const auto again = scratch_dir() / "bm25" / "again.kbm25";
        ix.save(again);
        (void)index_type::load(again).search(std::span<const std::uint32_t>(q), 5);
    });
}

}  // namespace kite::fuzz
