#pragma once
/// @file kite/attn/concepts.hpp
/// The concepts of kite::attn: head layouts, the view through which kernels read keys and
/// values (a tensor, a contiguous cache or a paged cache), and attention kernels.
///
/// Layering: kite::kv (caches) and kite::attn (kernels) are siblings above core and do not
/// include each other. The kernels read K/V only through `kv_view`, a structural concept that
/// the kv cache views satisfy without knowing about attn; a model (one layer up) passes
/// `cache.view(layer, seqs)` to `attn::decode`. This keeps paged decode attention in attn,
/// next to the other kernels it shares its tiles and tests with, while the block allocator and
/// block tables stay in kv.

#include <concepts>
#include <span>

#include "kite/core/concepts.hpp"
#include "kite/core/config.hpp"
#include "kite/core/tensor.hpp"

namespace kite::attn {

/// head_layout: how query heads map onto key/value heads (MHA, MQA, GQA).
/// Contract:
///   - `L::name` is a string literal;
///   - `L::validate(n_q, n_kv)` throws kite::config_error naming the counts when the layout
///     cannot hold them (mha: n_q == n_kv; mqa: n_kv == 1; gqa: n_kv divides n_q);
///   - `L::kv_head(h, n_q, n_kv)` is the kv head that query head h reads, O(1) noexcept,
///     and query heads sharing a kv head are consecutive (Hugging Face's repeat_kv).
template <class L>
concept head_layout = requires(index_t n_q, index_t n_kv, index_t h) {
    { L::name } -> std::convertible_to<const char*>;
    L::validate(n_q, n_kv);
    { L::kv_head(h, n_q, n_kv) } noexcept -> std::same_as<index_t>;
};

/// kv_view: read access to the keys and values of a batch of sequences for one layer.
/// Contract (all O(1), noexcept, no allocation):
///   - `V::value_type` is the storage scalar of K and V (float, bf16 or fp16);
///   - batch(), kv_heads(), head_dim(): the sequences, kv heads and elements per head;
///   - length(b): tokens of sequence b;
///   - chunk_tokens() >= 1: keys are stored in chunks of that many consecutive tokens;
///   - token_stride(): elements between consecutive tokens inside a chunk (>= head_dim);
///   - keys(b, h, c) / values(b, h, c): the first key / value row of chunk c of sequence b,
///     kv head h; token t of the sequence is at keys(b, h, t / C) + (t % C) * token_stride(),
///     a row of head_dim contiguous elements.
/// A contiguous cache is one chunk per sequence; a paged cache is one chunk per block and
/// keys() follows the block table; a 4-D tensor [batch][seq][kv_head][dim] is one chunk.
template <class V>
concept kv_view = storage_scalar<typename V::value_type> &&
                  requires(const V& v, index_t b, index_t h, index_t c) {
                      { v.batch() } noexcept -> std::convertible_to<index_t>;
                      { v.kv_heads() } noexcept -> std::convertible_to<index_t>;
                      { v.head_dim() } noexcept -> std::convertible_to<index_t>;
                      { v.length(b) } noexcept -> std::convertible_to<index_t>;
                      { v.chunk_tokens() } noexcept -> std::convertible_to<index_t>;
                      { v.token_stride() } noexcept -> std::convertible_to<index_t>;
                      { v.keys(b, h, c) } noexcept -> std::same_as<const typename V::value_type*>;
                      { v.values(b, h, c) } noexcept -> std::same_as<const typename V::value_type*>;
                  };

/// Score masks of prefill attention.
enum class mask {
    causal,        ///< query at position p sees keys at positions <= p
    bidirectional  ///< every query sees every key of its sequence (encoders)
};

/// Options shared by every kernel entry point.
/// Positions: query i of a sequence with q_len queries and kv_len keys is at position
/// kv_len - q_len + i (the queries are the last tokens; prefill over an empty cache has
/// q_len == kv_len). Padding: per-sequence lengths, keys past length(b) are never read.
struct options {
    attn::mask mask = mask::causal;
    /// Multiplies q·k; 0 means 1/sqrt(head_dim).
    float scale = 0.0f;
    /// ALiBi: one slope per query head ([n_q]), bias slope * (key_pos - query_pos); empty: none.
    std::span<const float> alibi_slopes{};
    /// Threads for the kernel; 0 means kite::max_threads().
    int threads = 0;
};

namespace detail {
/// The smallest type modelling kv_view; used to state the attention_kernel contract.
struct kv_view_archetype {
    using value_type = float;
    index_t batch() const noexcept { return 0; }
    index_t kv_heads() const noexcept { return 0; }
    index_t head_dim() const noexcept { return 0; }
    index_t length(index_t) const noexcept { return 0; }
    index_t chunk_tokens() const noexcept { return 1; }
    index_t token_stride() const noexcept { return 0; }
    const float* keys(index_t, index_t, index_t) const noexcept { return nullptr; }
    const float* values(index_t, index_t, index_t) const noexcept { return nullptr; }
};
/// The archetype head layout (one kv head per query head).
struct layout_archetype {
    static constexpr const char* name = "archetype";
    static void validate(index_t, index_t) {}
    static index_t kv_head(index_t h, index_t, index_t) noexcept { return h; }
};
}  // namespace detail

/// attention_kernel: an algorithm computing softmax(scale * q k^T + bias) v.
/// Contract: `K::name`, and for every head_layout L and kv_view V
///   K::template prefill<L>(q, kv, o, opts, q_lens)  q, o: [batch][q_seq][n_q][head_dim]
///   K::template decode<L>(q, kv, o, opts)           q, o: [batch][n_q][head_dim]
/// validate their arguments once (kite::shape_error / invalid_argument / config_error) and
/// write o. Rows of o past a sequence's q_len are set to zero.
template <class K>
concept attention_kernel =
    requires(tensor_view<const float, 4> q4, tensor_view<float, 4> o4, tensor_view<const float, 3> q3,
             tensor_view<float, 3> o3, const detail::kv_view_archetype& kv, const options& opt,
             std::span<const index_t> lens) {
        { K::name } -> std::convertible_to<const char*>;
        K::template prefill<detail::layout_archetype>(q4, kv, o4, opt, lens);
        K::template decode<detail::layout_archetype>(q3, kv, o3, opt);
    };

static_assert(kv_view<detail::kv_view_archetype> && head_layout<detail::layout_archetype>);

}  // namespace kite::attn
