#pragma once
/// @file kite/kv/paged.hpp
/// paged<BlockTokens, T>: a PagedAttention KV cache. K and V live in a pool of fixed-size
/// blocks of BlockTokens tokens; each sequence owns a block table (logical block -> pool
/// block). Memory is taken one block at a time, so a sequence wastes at most one partly filled
/// block, and blocks are shared by reference count:
///
///   - fork(s) gives a child the parent's blocks (parallel sampling, beam search);
///   - fork(s, n) shares only the blocks of the first n tokens (a common prompt prefix);
///   - append() copies a block first (copy-on-write) exactly when the sequence is about to
///     write into a block that is shared and partly filled; full shared blocks stay shared.
///
/// Pool layout, per layer and for K and V separately: [block][kv_head][token][head_dim], so
/// one (block, kv head) is BlockTokens contiguous rows that decode attention streams.
///
///   kite::kv::paged<16> cache({.layers = 32, .kv_heads = 8, .head_dim = 128}, 4096);
///   auto s = *cache.add_sequence();
///   if (cache.append(s, prompt_len) == kite::kv::status::out_of_blocks) { /* preempt */ }
///   cache.write(layer, s, 0, k, v);                       // k, v: [token][kv_head][head_dim]
///   kite::attn::decode<kite::attn::gqa>(q, cache.view(layer, seqs), o);

#include <algorithm>
#include <cstring>
#include <optional>
#include <span>
#include <vector>

#include "kite/core/buffer.hpp"
#include "kite/core/error.hpp"
#include "kite/core/tensor.hpp"
#include "kite/kv/block_allocator.hpp"
#include "kite/kv/concepts.hpp"
#include "kite/kv/detail/common.hpp"

namespace kite::kv {

/// Paged KV cache with blocks of BlockTokens tokens stored as T (float, bf16 or fp16).
template <index_t BlockTokens = 16, storage_scalar T = float>
class paged {
    static_assert(BlockTokens >= 1 && BlockTokens <= 4096, "paged<BlockTokens>: BlockTokens must be 1 .. 4096");

    struct seq_state {
        std::vector<block_id> table;  // [logical block] -> pool block
        index_t length = 0;
    };

public:
    using value_type = T;
    static constexpr index_t block_tokens = BlockTokens;

    /// A kite::attn::kv_view of one layer for a batch of sequences (valid until the cache is
    /// next mutated). chunk c of sequence b is its c-th block.
    class view_type {
    public:
        using value_type = T;
        view_type() = default;
        index_t batch() const noexcept { return seqs_.size(); }
        index_t kv_heads() const noexcept { return c_->shape_.kv_heads; }
        index_t head_dim() const noexcept { return c_->shape_.head_dim; }
        index_t length(index_t b) const noexcept { return c_->seqs_.at(seqs_[b]).length; }
        static constexpr index_t chunk_tokens() noexcept { return BlockTokens; }
        index_t token_stride() const noexcept { return c_->shape_.head_dim; }
        const T* keys(index_t b, index_t h, index_t c) const noexcept { return row(k_, b, h, c); }
        const T* values(index_t b, index_t h, index_t c) const noexcept { return row(v_, b, h, c); }

    private:
        friend class paged;
        view_type(const paged* c, const T* k, const T* v, std::span<const seq_id> seqs) noexcept
            : c_(c), k_(k), v_(v), seqs_(seqs) {}
        const T* row(const T* base, index_t b, index_t h, index_t c) const noexcept {
            const block_id blk = c_->seqs_.at(seqs_[b]).table[c];
            return base + blk * c_->block_elems_ + h * BlockTokens * c_->shape_.head_dim;
        }
        const paged* c_ = nullptr;
        const T* k_ = nullptr;  // [block][kv_head][token][head_dim] of this layer
        const T* v_ = nullptr;
        std::span<const seq_id> seqs_;  // [batch]
    };

    /// A pool of `num_blocks` blocks for K/V of the given shape. The pool memory is reserved
    /// up front but not touched (pages are faulted in as blocks are first written; prefault()
    /// touches them all now).
    paged(const cache_shape& shape, index_t num_blocks)
        : shape_(shape), alloc_((detail::check_shape(shape, "paged"), num_blocks)),
          block_elems_(shape.kv_heads * BlockTokens * shape.head_dim),
          pool_(shape.layers * 2 * num_blocks * block_elems_, uninitialized) {}

    /// Writes zeros over the whole pool, so that its pages are faulted in now instead of by the
    /// first write to each block, in the middle of a forward pass (llama.cpp clears its K/V
    /// buffer at context creation for the same effect). Each layer's K and V is a region of its
    /// own, so a pool's first block already touches a (huge) page in every region. Call it
    /// before any sequence is written: it zeroes blocks in use too.
    void prefault() noexcept {
        if (!pool_.empty()) std::memset(static_cast<void*>(pool_.data()), 0, pool_.size_bytes());
    }

    const cache_shape& shape() const noexcept { return shape_; }
    /// Blocks in the pool.
    index_t num_blocks() const noexcept { return alloc_.capacity(); }
    index_t free_blocks() const noexcept { return alloc_.free_blocks(); }
    /// Bytes of K and V for one token over all layers.
    index_t bytes_per_token() const noexcept { return shape_.layers * 2 * shape_.kv_heads * shape_.head_dim * sizeof(T); }
    /// Bytes of one block over all layers.
    index_t bytes_per_block() const noexcept { return bytes_per_token() * BlockTokens; }
    const block_allocator& allocator() const noexcept { return alloc_; }
    /// Number of copy-on-write block copies made so far.
    index_t copies_on_write() const noexcept { return cow_count_; }

    /// A new, empty sequence (takes no block until append). Always succeeds.
    std::optional<seq_id> add_sequence() { return seqs_.create(seq_state{}); }

    index_t length(seq_id s) const { return seqs_.get(s, "paged::length").length; }
    /// The block table of s, [logical block].
    std::span<const block_id> block_table(seq_id s) const { return seqs_.get(s, "paged::block_table").table; }

    /// Free blocks append(s, n) would take (new blocks plus a copy-on-write copy).
    index_t blocks_needed(seq_id s, index_t n) const {
        const seq_state& st = seqs_.get(s, "paged::blocks_needed");
        return plan(st, n);
    }

    /// Makes room for n more tokens: takes new blocks and, when the last block is shared and
    /// partly filled, copies it first. Returns out_of_blocks (and changes nothing) when the
    /// pool cannot supply them.
    status append(seq_id s, index_t n) {
        seq_state& st = seqs_.get(s, "paged::append");
        if (n == 0) return status::ok;
        if (plan(st, n) > alloc_.free_blocks()) return status::out_of_blocks;
        const index_t fill = st.length % BlockTokens;
        if (fill != 0 && alloc_.refs(st.table.back()) > 1) {
            const block_id fresh = *alloc_.allocate();
            copy_block(st.table.back(), fresh, fill);
            alloc_.release(st.table.back());
            st.table.back() = fresh;
            ++cow_count_;
        }
        st.length += n;
        while (st.table.size() * BlockTokens < st.length) st.table.push_back(*alloc_.allocate());
        return status::ok;
    }

    /// Stores the K and V of token `pos` (< length(s)) for `layer`. k, v: [kv_head][head_dim].
    /// The token's block must not be shared (positions before a fork are read-only).
    void write(index_t layer, seq_id s, index_t pos, const float* k, const float* v) {
        write(layer, s, pos, detail::one_token(k, shape_), detail::one_token(v, shape_));
    }

    /// Stores tokens [first, first + k.extent(0)) for `layer`. k, v: [token][kv_head][head_dim].
    void write(index_t layer, seq_id s, index_t first, tensor_view<const float, 3> k, tensor_view<const float, 3> v) {
        const seq_state& st = seqs_.get(s, "paged::write");
        detail::check_write(layer, s, first, st.length, k, v, shape_, "paged::write");
        for (index_t t = 0; t < k.extent(0); ++t) {
            const block_id blk = st.table[(first + t) / BlockTokens];
            KITE_REQUIRE(alloc_.refs(blk) == 1, invalid_argument, "paged::write: position ", first + t,
                         " of sequence ", s, " lies in block ", blk, " shared by ", alloc_.refs(blk),
                         " sequences; expected an unshared block (tokens before a fork are read-only)");
        }
        const index_t d = shape_.head_dim;
        for (index_t t = 0; t < k.extent(0); ++t) {
            const index_t pos = first + t;
            const block_id blk = st.table[pos / BlockTokens];
            const index_t slot = pos % BlockTokens;
            for (index_t h = 0; h < shape_.kv_heads; ++h) {
                const index_t off = blk * block_elems_ + (h * BlockTokens + slot) * d;
                detail::store_row(layer_base(layer, 0) + off, k.ptr(t, h), d);
                detail::store_row(layer_base(layer, 1) + off, v.ptr(t, h), d);
            }
        }
    }

    /// A child sequence sharing all of the parent's blocks (no copy).
    std::optional<seq_id> fork(seq_id parent) { return fork(parent, length(parent)); }

    /// A child sharing the blocks that hold the parent's first `prefix` tokens; the child's
    /// length is `prefix`. Its first append copies the last block if it is partly filled.
    std::optional<seq_id> fork(seq_id parent, index_t prefix) {
        const seq_state& p = seqs_.get(parent, "paged::fork");
        KITE_REQUIRE(prefix <= p.length, invalid_argument, "paged::fork: prefix = ", prefix, " tokens of a sequence of ",
                     p.length, "; expected <= its length");
        seq_state child;
        child.length = prefix;
        child.table.assign(p.table.begin(), p.table.begin() + static_cast<std::ptrdiff_t>((prefix + BlockTokens - 1) / BlockTokens));
        for (const block_id b : child.table) alloc_.retain(b);
        return seqs_.create(std::move(child));
    }

    /// Shortens s to its first `length` tokens (speculative decoding rolls back rejected draft
    /// tokens): blocks past the new end lose s's reference. Data before `length` is untouched.
    void truncate(seq_id s, index_t length) {
        seq_state& st = seqs_.get(s, "paged::truncate");
        KITE_REQUIRE(length <= st.length, invalid_argument, "paged::truncate: length = ", length,
                     " for a sequence of ", st.length, " tokens; expected <= its length");
        const index_t keep = (length + BlockTokens - 1) / BlockTokens;
        for (index_t i = keep; i < st.table.size(); ++i) alloc_.release(st.table[i]);
        st.table.resize(keep);
        st.length = length;
    }

    /// A new sequence of `length` tokens made of existing blocks (a prefix-cache hit): each
    /// block gains a reference; `blocks` must be exactly the blocks `length` tokens occupy.
    seq_id adopt(std::span<const block_id> blocks, index_t length) {
        KITE_REQUIRE(blocks.size() == (length + BlockTokens - 1) / BlockTokens, invalid_argument, "paged::adopt: ",
                     blocks.size(), " blocks for ", length, " tokens; expected ", (length + BlockTokens - 1) / BlockTokens);
        for (const block_id b : blocks)
            KITE_REQUIRE(b < alloc_.capacity() && alloc_.refs(b) > 0, invalid_argument, "paged::adopt: block ", b,
                         " is not in use; expected a block that holds data");
        seq_state st;
        st.length = length;
        st.table.assign(blocks.begin(), blocks.end());
        for (const block_id b : blocks) alloc_.retain(b);
        return seqs_.create(std::move(st));
    }

    /// Reference count of pool block b (0: free). A holder outside the sequences (a prefix
    /// cache) takes its own reference with retain() and drops it with release().
    std::uint32_t refs(block_id b) const noexcept { return alloc_.refs(b); }
    void retain(block_id b) { alloc_.retain(b); }
    void release(block_id b) { alloc_.release(b); }

    /// Releases s: each block loses a reference and returns to the free list at zero.
    void free(seq_id s) {
        const seq_state& st = seqs_.get(s, "paged::free");
        for (const block_id b : st.table) alloc_.release(b);
        seqs_.destroy(s);
    }

    /// A kv_view of `layer` over the sequences `seqs` (the span must outlive the view).
    view_type view(index_t layer, std::span<const seq_id> seqs) const {
        KITE_REQUIRE(layer < shape_.layers, invalid_argument, "paged::view: layer = ", layer, "; expected < ",
                     shape_.layers);
        for (const seq_id s : seqs) seqs_.require(s, "paged::view");
        return view_type(this, layer_base(layer, 0), layer_base(layer, 1), seqs);
    }

    /// Memory accounting: a block's used slots are the most tokens any sequence keeps in it.
    memory_stats stats() const {
        memory_stats m;
        m.bytes_per_token = bytes_per_token();
        m.sequences = seqs_.live();
        std::vector<index_t> fill(alloc_.capacity(), 0);  // [block] slots holding data
        seqs_.for_each([&](seq_id, const seq_state& st) {
            m.tokens_logical += st.length;
            for (index_t i = 0; i < st.table.size(); ++i)
                fill[st.table[i]] = std::max(fill[st.table[i]], std::min(BlockTokens, st.length - i * BlockTokens));
        });
        for (const index_t f : fill) m.tokens_stored += f;
        m.blocks_in_use = alloc_.used_blocks();
        m.blocks_free = alloc_.free_blocks();
        m.bytes_used = m.tokens_stored * m.bytes_per_token;
        m.bytes_reserved = m.blocks_in_use * bytes_per_block();
        m.bytes_capacity = alloc_.capacity() * bytes_per_block();
        return m;
    }

private:
    index_t plan(const seq_state& st, index_t n) const noexcept {
        if (n == 0) return 0;
        const index_t blocks_after = (st.length + n + BlockTokens - 1) / BlockTokens;
        const bool cow = st.length % BlockTokens != 0 && alloc_.refs(st.table.back()) > 1;
        return blocks_after - st.table.size() + (cow ? 1 : 0);
    }
    T* layer_base(index_t layer, index_t kind) noexcept {
        return pool_.data() + (layer * 2 + kind) * alloc_.capacity() * block_elems_;
    }
    const T* layer_base(index_t layer, index_t kind) const noexcept {
        return pool_.data() + (layer * 2 + kind) * alloc_.capacity() * block_elems_;
    }
    /// Copies the first `fill` tokens of every head of every layer (the rest holds no data).
    void copy_block(block_id from, block_id to, index_t fill) noexcept {
        const index_t d = shape_.head_dim;
        for (index_t layer = 0; layer < shape_.layers; ++layer)
            for (index_t kind = 0; kind < 2; ++kind) {
                T* base = layer_base(layer, kind);
                for (index_t h = 0; h < shape_.kv_heads; ++h) {
                    const index_t off = h * BlockTokens * d;
                    std::memcpy(static_cast<void*>(base + to * block_elems_ + off), base + from * block_elems_ + off,
                                fill * d * sizeof(T));
                }
            }
    }

    cache_shape shape_;
    block_allocator alloc_;
    index_t block_elems_;        // kv_heads * BlockTokens * head_dim
    aligned_buffer<T> pool_;     // [layer][K|V][block][kv_head][token][head_dim]
    detail::seq_registry<seq_state> seqs_;
    index_t cow_count_ = 0;
};

static_assert(kv_cache<paged<16, float>>);

}  // namespace kite::kv
