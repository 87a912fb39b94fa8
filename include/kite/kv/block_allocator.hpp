#pragma once
/// @file kite/kv/block_allocator.hpp
/// block_allocator: the bookkeeping of a paged KV cache's block pool — a free list and a
/// reference count per block. It owns no K/V memory; kite::kv::paged pairs it with the pool.
///
/// Blocks are shared by reference: fork() retains every block of the parent, free() releases
/// them, and a block returns to the free list when its count reaches zero. Releasing a free
/// block (a double free) throws instead of corrupting the free list.

#include <optional>
#include <vector>

#include "kite/core/error.hpp"
#include "kite/kv/concepts.hpp"

namespace kite::kv {

/// Free list and reference counts of `capacity` blocks.
class block_allocator {
public:
    explicit block_allocator(index_t capacity) : refs_(capacity, 0) {
        KITE_REQUIRE(capacity >= 1 && capacity <= 0xffffffffu, invalid_argument, "block_allocator: capacity = ",
                     capacity, "; expected 1 .. 2^32 - 1 blocks");
        free_.reserve(capacity);
        // Low ids on top so a fresh cache fills the pool from its start.
        for (index_t b = capacity; b-- > 0;) free_.push_back(static_cast<block_id>(b));
    }

    index_t capacity() const noexcept { return refs_.size(); }
    index_t free_blocks() const noexcept { return free_.size(); }
    index_t used_blocks() const noexcept { return refs_.size() - free_.size(); }
    /// Reference count of block b (0 when free).
    std::uint32_t refs(block_id b) const noexcept { return refs_[b]; }

    /// Takes a free block with reference count 1; nullopt when none is left.
    std::optional<block_id> allocate() noexcept {
        if (free_.empty()) return std::nullopt;
        const block_id b = free_.back();
        free_.pop_back();
        refs_[b] = 1;
        return b;
    }
    /// One more reference to a block in use.
    void retain(block_id b) {
        KITE_REQUIRE(b < refs_.size() && refs_[b] > 0, invalid_argument, "block_allocator::retain: block ", b,
                     " is not in use; expected an allocated block");
        ++refs_[b];
    }
    /// Drops one reference; the block returns to the free list at zero.
    void release(block_id b) {
        KITE_REQUIRE(b < refs_.size() && refs_[b] > 0, invalid_argument, "block_allocator::release: block ", b,
                     " is not in use (double free); expected an allocated block");
        if (--refs_[b] == 0) free_.push_back(b);
    }

private:
    std::vector<std::uint32_t> refs_;  // [block]
    std::vector<block_id> free_;       // stack of free blocks
};

}  // namespace kite::kv
