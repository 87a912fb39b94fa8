#pragma once
/// @file kite/attn/attention.hpp
/// Entry points choosing a head layout and a kernel at compile time:
///
///   namespace ka = kite::attn;
///   // q, o: [batch][seq][n_q][dim]; k, v: [batch][seq][n_kv][dim]
///   ka::prefill<ka::gqa, ka::flash<64, 64>>(q, k, v, o, {.mask = ka::mask::causal}, q_lens, kv_lens);
///   // q, o: [batch][n_q][dim]; cache: any kv_view (kite::kv caches provide one per layer)
///   ka::decode<ka::gqa>(q, cache.view(layer, seqs), o);

#include <span>

#include "kite/attn/concepts.hpp"
#include "kite/attn/flash.hpp"
#include "kite/attn/reference.hpp"
#include "kite/attn/tensor_kv.hpp"

namespace kite::attn {

/// Prefill over K/V tensors [batch][seq][n_kv][dim] with optional per-sequence query and key
/// lengths (padding). q, o: [batch][q_seq][n_q][dim].
template <head_layout L, attention_kernel Kernel = flash<64, 64>, storage_scalar T>
void prefill(tensor_view<const float, 4> q, tensor_view<const T, 4> k, tensor_view<const T, 4> v,
             tensor_view<float, 4> o, const options& opt = {}, std::span<const index_t> q_lens = {},
             std::span<const index_t> kv_lens = {}) {
    Kernel::template prefill<L>(q, tensor_kv<T>(k, v, kv_lens), o, opt, q_lens);
}

/// Prefill over any kv_view (e.g. a cache that already holds a prompt prefix).
template <head_layout L, attention_kernel Kernel = flash<64, 64>, kv_view KV>
void prefill(tensor_view<const float, 4> q, const KV& kv, tensor_view<float, 4> o, const options& opt = {},
             std::span<const index_t> q_lens = {}) {
    Kernel::template prefill<L>(q, kv, o, opt, q_lens);
}

/// Decode: one query per sequence over a kv_view. q, o: [batch][n_q][dim].
template <head_layout L, attention_kernel Kernel = flash<64, 64>, kv_view KV>
void decode(tensor_view<const float, 3> q, const KV& kv, tensor_view<float, 3> o, const options& opt = {}) {
    Kernel::template decode<L>(q, kv, o, opt);
}

}  // namespace kite::attn
