#pragma once
/// @file kite/kv/concepts.hpp
/// The concepts and shared vocabulary of kite::kv: sequence ids, the explicit out-of-space
/// result, memory statistics, and the kv_cache contract both caches satisfy.

#include <concepts>
#include <cstdint>
#include <optional>
#include <span>

#include "kite/core/concepts.hpp"
#include "kite/core/config.hpp"
#include "kite/core/tensor.hpp"

namespace kite::kv {

/// Identifies a sequence inside one cache. Ids of freed sequences are reused.
using seq_id = std::uint32_t;
/// Identifies a block of a paged cache's pool.
using block_id = std::uint32_t;

/// Result of an operation that may run out of cache memory. Not an exception: a scheduler
/// reacts to it (preempts or swaps a sequence) on the hot path.
enum class status {
    ok,            ///< done
    out_of_blocks  ///< not enough free memory (blocks, or a contiguous cache's budget); nothing changed
};

/// Shape of the K/V a cache holds for each token (values from the model config).
struct cache_shape {
    index_t layers = 0;
    index_t kv_heads = 0;
    index_t head_dim = 0;
};

/// Memory accounting of a cache. "Used" counts each stored token once even when several
/// sequences share it; "reserved" is what the cache holds for its live sequences.
struct memory_stats {
    index_t bytes_per_token = 0;  ///< K and V of one token over all layers
    index_t tokens_logical = 0;   ///< sum of sequence lengths (shared tokens counted per sequence)
    index_t tokens_stored = 0;    ///< distinct token slots holding data
    index_t bytes_used = 0;       ///< tokens_stored * bytes_per_token
    index_t bytes_reserved = 0;   ///< memory held for live sequences (blocks in use, or reservations)
    index_t bytes_capacity = 0;   ///< the whole pool / budget
    index_t blocks_in_use = 0;    ///< paged: blocks referenced by some sequence (contiguous: 0)
    index_t blocks_free = 0;      ///< paged: blocks on the free list (contiguous: 0)
    index_t sequences = 0;        ///< live sequences
    /// Reserved but unused bytes.
    index_t bytes_wasted() const noexcept { return bytes_reserved - bytes_used; }
    /// Wasted fraction of the reserved memory (0 when nothing is reserved).
    double waste_fraction() const noexcept {
        return bytes_reserved ? static_cast<double>(bytes_wasted()) / static_cast<double>(bytes_reserved) : 0.0;
    }
};

/// kv_cache: a KV cache a model appends to and attention reads through views.
/// Contract:
///   - add_sequence() -> std::optional<seq_id>: a new empty sequence (nullopt: out of memory);
///   - append(s, n) -> status: room for n more tokens at positions [length, length + n);
///     status::out_of_blocks leaves the cache unchanged;
///   - write(layer, s, pos, k, v): stores token pos's K and V rows, k, v: [kv_head][head_dim];
///   - fork(s) -> std::optional<seq_id>: a child with the same tokens (paged: shared blocks);
///   - free(s): releases the sequence; its id may be reused;
///   - length(s), stats(), and view(layer, seqs): a kite::attn::kv_view over those sequences
///     (valid until the next mutation of the cache).
/// Mutations need external exclusion; views may be read from many threads.
template <class C>
concept kv_cache = storage_scalar<typename C::value_type> &&
                   requires(C& c, const C& cc, seq_id s, index_t n, const float* row,
                            std::span<const seq_id> seqs) {
                       { c.add_sequence() } -> std::same_as<std::optional<seq_id>>;
                       { c.append(s, n) } -> std::same_as<status>;
                       c.write(n, s, n, row, row);
                       { c.fork(s) } -> std::same_as<std::optional<seq_id>>;
                       c.free(s);
                       { cc.length(s) } -> std::convertible_to<index_t>;
                       cc.view(n, seqs);
                       { cc.stats() } -> std::same_as<memory_stats>;
                   };

}  // namespace kite::kv
