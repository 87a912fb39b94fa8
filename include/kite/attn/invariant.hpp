#pragma once
/// @file kite/attn/invariant.hpp
/// invariant: batch-invariant attention. Every (sequence, query, head) is computed alone, in
/// one fixed order that depends only on that query, its position and the keys it sees:
///
///   s_j = scale * (q . k_j) (+ ALiBi)   for keys j = 0 .. end-1 in position order
///   m = max_j s_j;  e_j = exp(s_j - m);  l = sum_j e_j;  o = (sum_j e_j v_j) / l
///
/// so a query's output is bit-identical whether it is decoded alone or in a batch of any size,
/// prefilled in one call or in chunks, read through a contiguous or a paged cache (any block
/// size), or run on any number of threads. This is what the serving engine (kite::serve) needs
/// for its promise that a request's tokens and logits do not depend on what else is running.
///
/// Cost: two passes over the keys per query head (scores, then values) and a score buffer of
/// kv_len floats per thread; no key tile is shared between queries, so long prefills are slower
/// than flash<Bq, Bk> (which reuses each key tile for Bq queries but sums in an order that
/// depends on the tiling). Decode, which reads each key once per query anyway, runs at the
/// same order of speed.
///
///   using engine_model = kite::model::gguf_llama_decoder<kite::kv::paged<16>, kite::attn::invariant>;

#include <algorithm>
#include <cmath>
#include <limits>
#include <span>
#include <type_traits>
#include <vector>

#include "kite/attn/concepts.hpp"
#include "kite/attn/detail/checks.hpp"
#include "kite/core/parallel.hpp"
#include "kite/core/simd.hpp"
#include "kite/core/simd_convert.hpp"

namespace kite::attn {

/// Batch-invariant attention kernel (see the file comment).
struct invariant {
    static constexpr const char* name = "invariant";

    /// Prefill attention. q, o: [batch][q_seq][n_q][head_dim]; kv: a kv_view with the same
    /// batch; q_lens: [batch] queries per sequence (empty: q_seq each). Rows past q_len are zeroed.
    template <head_layout L, kv_view KV>
    static void prefill(tensor_view<const float, 4> q, const KV& kv, tensor_view<float, 4> o, const options& opt,
                        std::span<const index_t> q_lens = {}) {
        const float scale = detail::check_prefill<L>("invariant::prefill", q, kv, o, opt, q_lens);
        run<L>(q, kv, o, opt, q_lens, scale);
    }

    /// Decode attention: one query per sequence at position length(b) - 1. q, o: [batch][n_q][head_dim].
    template <head_layout L, kv_view KV>
    static void decode(tensor_view<const float, 3> q, const KV& kv, tensor_view<float, 3> o, const options& opt) {
        const float scale = detail::check_decode<L>("invariant::decode", q, kv, o, opt);
        run<L>(detail::as_single_query(q), kv, detail::as_single_query(o), opt, {}, scale);
    }

private:
    template <head_layout L, kv_view KV>
    static void run(tensor_view<const float, 4> q, const KV& kv, tensor_view<float, 4> o, const options& opt,
                    std::span<const index_t> q_lens, float scale) {
        const index_t batch = q.extent(0), q_seq = q.extent(1), n_q = q.extent(2), d = q.extent(3);
        const index_t n_kv = kv.kv_heads();
        const bool causal = opt.mask == mask::causal;
        // One item per (sequence, query, head); each is computed by one thread from start to end,
        // so neither the partition of items over threads nor the batch changes any sum.
        parallel_for(
            0, batch * q_seq * n_q,
            [&](std::size_t item) {
                const index_t h = item % n_q, i = (item / n_q) % q_seq, b = item / (n_q * q_seq);
                float* out = o.ptr(b, i, h);
                const index_t ql = detail::q_length(q_lens, q_seq, b), kl = kv.length(b);
                if (i >= ql || kl == 0) {
                    std::fill(out, out + d, 0.0f);
                    return;
                }
                const index_t pos = kl - ql + i;
                const index_t end = causal ? pos + 1 : kl;
                const float slope = opt.alibi_slopes.empty() ? 0.0f : opt.alibi_slopes[h];
                one_query(kv, b, L::kv_head(h, n_q, n_kv), q.ptr(b, i, h), out, d, end, pos, scale, slope);
            },
            opt.threads);
    }

    template <kv_view KV>
    static void one_query(const KV& kv, index_t b, index_t kvh, const float* qrow, float* out, index_t d, index_t end,
                          index_t pos, float scale, float slope) {
        using T = typename KV::value_type;
        thread_local std::vector<float> scores, row;
        scores.resize(end);
        if constexpr (!std::is_same_v<T, float>) row.resize(d);
        const auto as_float = [&](const T* p) -> const float* {
            if constexpr (std::is_same_v<T, float>) {
                return p;
            } else {
                simd::convert_row(p, row.data(), d);
                return row.data();
            }
        };
        for (index_t j = 0; j < end; ++j) {
            const float* k = as_float(detail::kv_row<true>(kv, b, kvh, j));
            float s = simd::dot(qrow, k, d) * scale;
            if (slope != 0.0f) s += slope * static_cast<float>(static_cast<double>(j) - static_cast<double>(pos));
            scores[j] = s;
        }
        const float m = simd::max(scores.data(), end);
        for (index_t j = 0; j < end; ++j) scores[j] = std::exp(scores[j] - m);
        const float l = simd::sum(scores.data(), end);
        std::fill(out, out + d, 0.0f);
        for (index_t j = 0; j < end; ++j) simd::axpy(scores[j], as_float(detail::kv_row<false>(kv, b, kvh, j)), out, d);
        simd::scale(1.0f / l, out, d);
    }
};

static_assert(attention_kernel<invariant>);

}  // namespace kite::attn
