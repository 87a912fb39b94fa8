#pragma once
/// @file kite/cuda/block_table.hpp
/// Packs the block tables of a kite::kv::paged cache for a batch of sequences into the dense
/// int32 arrays that kite's paged decode kernel reads: table [batch][max_blocks] (unused
/// entries -1) and lengths [batch]. Plain C++: built on the host, uploaded once per step.

#include <cstdint>
#include <limits>
#include <span>
#include <vector>

#include "kite/core/error.hpp"
#include "kite/kv/concepts.hpp"

namespace kite::cuda {

struct packed_block_tables {
    std::vector<std::int32_t> table;    ///< [batch][max_blocks], -1 past a sequence's blocks
    std::vector<std::int32_t> lengths;  ///< [batch] tokens
    std::int32_t max_blocks = 0;        ///< row stride of table
    std::int32_t max_length = 0;        ///< the longest sequence
    std::int32_t batch() const noexcept { return static_cast<std::int32_t>(lengths.size()); }
};

/// Packs `seqs` of a paged cache (anything with block_table(s), length(s) and block_tokens, as
/// kite::kv::paged). Throws when a block id or a length does not fit an int32, or when a
/// sequence's table is shorter than its length needs.
template <class PagedCache>
packed_block_tables pack_block_tables(const PagedCache& cache, std::span<const kv::seq_id> seqs) {
    constexpr auto bt = static_cast<std::int64_t>(PagedCache::block_tokens);
    KITE_REQUIRE(!seqs.empty(), invalid_argument, "cuda::pack_block_tables: an empty batch; expected at least one sequence");
    packed_block_tables p;
    std::int64_t max_blocks = 0, max_len = 0;
    for (const kv::seq_id s : seqs) {
        const auto t = cache.block_table(s);
        const auto len = static_cast<std::int64_t>(cache.length(s));
        KITE_REQUIRE(static_cast<std::int64_t>(t.size()) * bt >= len, invalid_argument, "cuda::pack_block_tables: sequence ",
                     s, " has ", len, " tokens but ", t.size(), " blocks of ", bt, "; expected enough blocks");
        max_blocks = std::max<std::int64_t>(max_blocks, static_cast<std::int64_t>(t.size()));
        max_len = std::max(max_len, len);
    }
    constexpr std::int64_t lim = std::numeric_limits<std::int32_t>::max();
    KITE_REQUIRE(max_len <= lim && max_blocks * static_cast<std::int64_t>(seqs.size()) <= lim, invalid_argument,
                 "cuda::pack_block_tables: ", max_len, " tokens, ", max_blocks, " blocks x ", seqs.size(),
                 " sequences; expected int32 sizes");
    p.max_blocks = static_cast<std::int32_t>(std::max<std::int64_t>(max_blocks, 1));
    p.max_length = static_cast<std::int32_t>(max_len);
    p.table.assign(seqs.size() * static_cast<std::size_t>(p.max_blocks), -1);
    p.lengths.resize(seqs.size());
    for (std::size_t b = 0; b < seqs.size(); ++b) {
        const auto t = cache.block_table(seqs[b]);
        for (std::size_t i = 0; i < t.size(); ++i) {
            KITE_REQUIRE(static_cast<std::int64_t>(t[i]) <= lim, invalid_argument, "cuda::pack_block_tables: block id ",
                         t[i], " does not fit an int32");
            p.table[b * p.max_blocks + i] = static_cast<std::int32_t>(t[i]);
        }
        p.lengths[b] = static_cast<std::int32_t>(cache.length(seqs[b]));
    }
    return p;
}

}  // namespace kite::cuda
