#pragma once
/// @file kite/kv/contiguous.hpp
/// contiguous<T>: the classic KV cache. Each sequence reserves room for max_seq_len tokens up
/// front, one buffer laid out [layer][K|V][kv_head][token][head_dim], so decode attention reads
/// each head's keys as one contiguous run. Simple and fast, but the unused tail of every
/// reservation is wasted and fork() copies; kite::kv::paged avoids both.
///
///   kite::kv::contiguous<> cache({.layers = 32, .kv_heads = 8, .head_dim = 128}, 4096);
///   auto s = cache.add_sequence();           // nullopt when the budget is exhausted

#include <algorithm>
#include <cstring>
#include <optional>
#include <span>

#include "kite/core/buffer.hpp"
#include "kite/core/error.hpp"
#include "kite/core/tensor.hpp"
#include "kite/kv/concepts.hpp"
#include "kite/kv/detail/common.hpp"

namespace kite::kv {

/// Per-sequence preallocated KV cache stored as T (float, bf16 or fp16).
template <storage_scalar T = float>
class contiguous {
    struct seq_state {
        aligned_buffer<T> data;  // [layer][K|V][kv_head][token < max_seq_len][head_dim]
        index_t length = 0;
    };

public:
    using value_type = T;

    /// A kite::attn::kv_view of one layer for a batch of sequences (valid until the cache is
    /// next mutated): one chunk per sequence.
    class view_type {
    public:
        using value_type = T;
        view_type() = default;
        index_t batch() const noexcept { return seqs_.size(); }
        index_t kv_heads() const noexcept { return c_->shape_.kv_heads; }
        index_t head_dim() const noexcept { return c_->shape_.head_dim; }
        index_t length(index_t b) const noexcept { return c_->seqs_.at(seqs_[b]).length; }
        index_t chunk_tokens() const noexcept { return c_->max_len_; }
        index_t token_stride() const noexcept { return c_->shape_.head_dim; }
        const T* keys(index_t b, index_t h, index_t c) const noexcept { return row(0, b, h, c); }
        const T* values(index_t b, index_t h, index_t c) const noexcept { return row(1, b, h, c); }

    private:
        friend class contiguous;
        view_type(const contiguous* c, index_t layer, std::span<const seq_id> seqs) noexcept
            : c_(c), layer_(layer), seqs_(seqs) {}
        const T* row(index_t kind, index_t b, index_t h, index_t c) const noexcept {
            return c_->seqs_.at(seqs_[b]).data.data() + c_->offset(layer_, kind, h) + c * c_->max_len_ * c_->shape_.head_dim;
        }
        const contiguous* c_ = nullptr;
        index_t layer_ = 0;
        std::span<const seq_id> seqs_;  // [batch]
    };

    /// Sequences of up to max_seq_len tokens; capacity_tokens (0: unlimited) caps the total
    /// tokens reserved, i.e. at most capacity_tokens / max_seq_len live sequences.
    contiguous(const cache_shape& shape, index_t max_seq_len, index_t capacity_tokens = 0)
        : shape_(shape), max_len_(max_seq_len), capacity_(capacity_tokens) {
        detail::check_shape(shape, "contiguous");
        KITE_REQUIRE(max_seq_len >= 1, invalid_argument, "contiguous: max_seq_len = ", max_seq_len, "; expected >= 1");
        KITE_REQUIRE(capacity_tokens == 0 || capacity_tokens >= max_seq_len, invalid_argument,
                     "contiguous: capacity_tokens = ", capacity_tokens, "; expected 0 (unlimited) or >= max_seq_len = ",
                     max_seq_len);
    }

    const cache_shape& shape() const noexcept { return shape_; }
    index_t max_seq_len() const noexcept { return max_len_; }
    index_t bytes_per_token() const noexcept { return shape_.layers * 2 * shape_.kv_heads * shape_.head_dim * sizeof(T); }

    /// Reserves max_seq_len tokens for a new sequence; nullopt when the budget is exhausted.
    std::optional<seq_id> add_sequence() {
        if (capacity_ != 0 && (seqs_.live() + 1) * max_len_ > capacity_) return std::nullopt;
        seq_state st;
        st.data = aligned_buffer<T>(shape_.layers * 2 * shape_.kv_heads * max_len_ * shape_.head_dim, uninitialized);
        return seqs_.create(std::move(st));
    }

    index_t length(seq_id s) const { return seqs_.get(s, "contiguous::length").length; }

    /// Room for n more tokens; out_of_blocks (nothing changed) past max_seq_len.
    status append(seq_id s, index_t n) {
        seq_state& st = seqs_.get(s, "contiguous::append");
        if (st.length + n > max_len_) return status::out_of_blocks;
        st.length += n;
        return status::ok;
    }

    /// Stores the K and V of token `pos` (< length(s)) for `layer`. k, v: [kv_head][head_dim].
    void write(index_t layer, seq_id s, index_t pos, const float* k, const float* v) {
        write(layer, s, pos, detail::one_token(k, shape_), detail::one_token(v, shape_));
    }

    /// Stores tokens [first, first + k.extent(0)) for `layer`. k, v: [token][kv_head][head_dim].
    void write(index_t layer, seq_id s, index_t first, tensor_view<const float, 3> k, tensor_view<const float, 3> v) {
        seq_state& st = seqs_.get(s, "contiguous::write");
        detail::check_write(layer, s, first, st.length, k, v, shape_, "contiguous::write");
        const index_t d = shape_.head_dim;
        for (index_t t = 0; t < k.extent(0); ++t)
            for (index_t h = 0; h < shape_.kv_heads; ++h) {
                detail::store_row(st.data.data() + offset(layer, 0, h) + (first + t) * d, k.ptr(t, h), d);
                detail::store_row(st.data.data() + offset(layer, 1, h) + (first + t) * d, v.ptr(t, h), d);
            }
    }

    /// A child with a copy of the parent's tokens; nullopt when the budget is exhausted.
    std::optional<seq_id> fork(seq_id parent) {
        seqs_.require(parent, "contiguous::fork");
        const auto child = add_sequence();
        if (!child) return std::nullopt;
        const seq_state& p = seqs_.at(parent);
        seq_state& c = seqs_.get(*child, "contiguous::fork");
        c.length = p.length;
        const index_t d = shape_.head_dim;
        for (index_t layer = 0; layer < shape_.layers; ++layer)
            for (index_t kind = 0; kind < 2; ++kind)
                for (index_t h = 0; h < shape_.kv_heads; ++h) {
                    const index_t off = offset(layer, kind, h);
                    std::memcpy(static_cast<void*>(c.data.data() + off), p.data.data() + off, p.length * d * sizeof(T));
                }
        return child;
    }

    /// Releases s and its reservation.
    void free(seq_id s) {
        seqs_.require(s, "contiguous::free");
        seqs_.destroy(s);
    }

    /// A kv_view of `layer` over the sequences `seqs` (the span must outlive the view).
    view_type view(index_t layer, std::span<const seq_id> seqs) const {
        KITE_REQUIRE(layer < shape_.layers, invalid_argument, "contiguous::view: layer = ", layer, "; expected < ",
                     shape_.layers);
        for (const seq_id s : seqs) seqs_.require(s, "contiguous::view");
        return view_type(this, layer, seqs);
    }

    /// Memory accounting: every live sequence reserves max_seq_len tokens.
    memory_stats stats() const {
        memory_stats m;
        m.bytes_per_token = bytes_per_token();
        m.sequences = seqs_.live();
        seqs_.for_each([&](seq_id, const seq_state& st) { m.tokens_logical += st.length; });
        m.tokens_stored = m.tokens_logical;
        m.bytes_used = m.tokens_stored * m.bytes_per_token;
        m.bytes_reserved = m.sequences * max_len_ * m.bytes_per_token;
        m.bytes_capacity = capacity_ * m.bytes_per_token;
        return m;
    }

private:
    index_t offset(index_t layer, index_t kind, index_t h) const noexcept {
        return ((layer * 2 + kind) * shape_.kv_heads + h) * max_len_ * shape_.head_dim;
    }

    cache_shape shape_;
    index_t max_len_;
    index_t capacity_;
    detail::seq_registry<seq_state> seqs_;
};

static_assert(kv_cache<contiguous<float>>);

}  // namespace kite::kv
