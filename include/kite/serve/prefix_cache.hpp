#pragma once
/// @file kite/serve/prefix_cache.hpp
/// prefix_cache: automatic prefix caching over a kite::kv::paged cache. Every full block of
/// committed tokens is registered under its whole token prefix (the chain of blocks before it
/// plus its own tokens) and keeps one reference of its own, so a later request starting with
/// the same tokens (a shared system prompt, a RAG preamble, an earlier turn of a chat) adopts
/// those blocks instead of recomputing them.
///
///   kite::serve::prefix_cache<kite::kv::paged<16>> pc(cache);
///   auto hit = pc.match(prompt, prompt.size() - 1);       // the last token is always computed
///   auto s = cache.adopt(hit.blocks, hit.tokens);
///   ... compute the rest of the prompt ...
///   pc.register_blocks(s, tokens, hit.chain);              // blocks that became full
///   pc.evict(needed);                                         // before taking new blocks
///
/// Exactness: an entry stores its parent entry's id (unique, never reused) and its tokens; a
/// lookup walks from the first block and accepts an entry only when both match, so a hash
/// collision can never return the wrong blocks.
///
/// Eviction is lazy and least-recently-used among blocks only the cache still references
/// (reference count 1): evict(n) runs when the engine needs n more free blocks. When a sequence
/// ends, its cached blocks are touched tail first, so a shared head outlives the tails.

#include <cstdint>
#include <algorithm>
#include <set>
#include <span>
#include <unordered_map>
#include <vector>

#include "kite/core/config.hpp"
#include "kite/core/error.hpp"
#include "kite/kv/block_allocator.hpp"
#include "kite/kv/concepts.hpp"

namespace kite::serve {

/// See the file comment. Cache: kite::kv::paged<B, T>.
template <class Cache>
class prefix_cache {
public:
    static constexpr index_t block_tokens = Cache::block_tokens;
    /// The id of "no parent" (the first block of a prompt).
    static constexpr std::uint64_t root = 0;

    /// The longest cached prefix of a token sequence.
    struct hit {
        std::vector<kv::block_id> blocks;   ///< full blocks, in order
        std::vector<std::uint64_t> chain;   ///< entry id of each block (parents of later blocks)
        index_t tokens = 0;                 ///< blocks.size() * block_tokens
    };

    explicit prefix_cache(Cache& cache) : cache_(&cache) {}
    prefix_cache(const prefix_cache&) = delete;
    prefix_cache& operator=(const prefix_cache&) = delete;
    ~prefix_cache() { clear(); }

    /// Blocks the cache holds (each has one reference of the cache's own).
    index_t cached_blocks() const noexcept { return entries_.size(); }
    /// Cached blocks no sequence uses (what evict() can free).
    index_t evictable_blocks() const noexcept {
        index_t n = 0;
        for (const auto& [id, e] : entries_) n += cache_->refs(e.block) == 1;
        return n;
    }

    /// The longest run of cached full blocks that `tokens` starts with, covering at most
    /// `max_tokens` tokens; the blocks are marked used now.
    hit match(std::span<const std::int32_t> tokens, index_t max_tokens) {
        hit h;
        std::uint64_t parent = root;
        for (index_t b = 0; (b + 1) * block_tokens <= std::min<index_t>(max_tokens, tokens.size()); ++b) {
            const auto blk = tokens.subspan(b * block_tokens, block_tokens);
            const auto it = index_.find(key(parent, blk));
            if (it == index_.end()) break;
            entry& e = entries_.at(it->second);
            if (e.parent != parent || !std::equal(blk.begin(), blk.end(), e.tokens.begin())) break;  // collision
            h.blocks.push_back(e.block);
            h.chain.push_back(it->second);
            parent = it->second;
        }
        h.tokens = h.blocks.size() * block_tokens;
        for (index_t i = h.chain.size(); i-- > 0;) touch(h.chain[i]);  // head most recent
        return h;
    }

    /// Registers the full blocks [chain.size(), full) of sequence `seq`, whose first tokens are
    /// `tokens` (committed, never draft tokens); `chain` holds the entry ids of its earlier blocks
    /// and is extended. A block whose prefix is already cached under another block is left out
    /// (its twin serves later lookups), but the chain continues through the twin.
    void register_blocks(kv::seq_id seq, std::span<const std::int32_t> tokens, std::vector<std::uint64_t>& chain) {
        const auto table = cache_->block_table(seq);
        const index_t full = std::min<index_t>(tokens.size(), cache_->length(seq)) / block_tokens;
        while (chain.size() < full) {
            const index_t b = chain.size();
            const std::uint64_t parent = b == 0 ? root : chain.back();
            const auto blk = tokens.subspan(b * block_tokens, block_tokens);
            const std::uint64_t k = key(parent, blk);
            const auto it = index_.find(k);
            if (it != index_.end()) {
                const entry& e = entries_.at(it->second);
                if (e.parent == parent && std::equal(blk.begin(), blk.end(), e.tokens.begin())) {
                    chain.push_back(it->second);  // the same prefix is cached already
                    continue;
                }
                // A 64-bit collision with different tokens: leave this block (and the rest) out.
                chain.push_back(next_id_++);
                continue;
            }
            if (by_block_.count(table[b])) {  // the block is cached under another prefix (cannot happen
                chain.push_back(next_id_++);  // for committed blocks; kept for safety)
                continue;
            }
            const std::uint64_t id = next_id_++;
            entry e{parent, std::vector<std::int32_t>(blk.begin(), blk.end()), table[b], 0};
            cache_->retain(table[b]);
            entries_.emplace(id, std::move(e));
            index_.emplace(k, id);
            by_block_.emplace(table[b], id);
            touch(id);
            chain.push_back(id);
        }
    }

    /// Marks the cached blocks of a finished or preempted sequence used now, tail first (so the
    /// tail is evicted before the shared head).
    void release(std::span<const std::uint64_t> chain) {
        for (index_t i = chain.size(); i-- > 0;)
            if (entries_.count(chain[i])) touch(chain[i]);
    }

    /// Frees up to `n` blocks that only the cache references, least recently used first;
    /// returns how many it freed.
    index_t evict(index_t n) {
        index_t freed = 0;
        for (auto it = lru_.begin(); it != lru_.end() && freed < n;) {
            const std::uint64_t id = it->second;
            entry& e = entries_.at(id);
            if (cache_->refs(e.block) != 1) {
                ++it;
                continue;
            }
            it = lru_.erase(it);
            drop(id, e);
            ++freed;
        }
        return freed;
    }

    /// Drops every entry (their blocks return to the pool unless a sequence still uses them).
    void clear() {
        for (auto& [id, e] : entries_) cache_->release(e.block);
        entries_.clear();
        index_.clear();
        by_block_.clear();
        lru_.clear();
    }

private:
    struct entry {
        std::uint64_t parent;
        std::vector<std::int32_t> tokens;
        kv::block_id block;
        std::uint64_t last_use;
    };

    static std::uint64_t mix(std::uint64_t h, std::uint64_t v) noexcept {
        h ^= v + 0x9E3779B97F4A7C15ull + (h << 6) + (h >> 2);
        h ^= h >> 31;
        h *= 0xBF58476D1CE4E5B9ull;
        return h ^ (h >> 29);
    }
    static std::uint64_t key(std::uint64_t parent, std::span<const std::int32_t> blk) noexcept {
        std::uint64_t h = mix(0x6B697465ull, parent);
        for (const std::int32_t t : blk) h = mix(h, static_cast<std::uint32_t>(t));
        return h;
    }

    void touch(std::uint64_t id) {
        entry& e = entries_.at(id);
        if (e.last_use) lru_.erase({e.last_use, id});
        e.last_use = ++clock_;
        lru_.emplace(e.last_use, id);
    }

    void drop(std::uint64_t id, entry& e) {
        const std::uint64_t k = key(e.parent, e.tokens);
        if (const auto it = index_.find(k); it != index_.end() && it->second == id) index_.erase(it);
        by_block_.erase(e.block);
        cache_->release(e.block);
        entries_.erase(id);
    }

    Cache* cache_;
    std::unordered_map<std::uint64_t, entry> entries_;            // entry id -> entry
    std::unordered_map<std::uint64_t, std::uint64_t> index_;      // key(parent, tokens) -> entry id
    std::unordered_map<kv::block_id, std::uint64_t> by_block_;    // block -> entry id
    std::set<std::pair<std::uint64_t, std::uint64_t>> lru_;         // (last use, entry id)
    std::uint64_t next_id_ = 1, clock_ = 0;
};

}  // namespace kite::serve
