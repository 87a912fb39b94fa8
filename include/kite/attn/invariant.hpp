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
/// Cost: two passes over the keys per (query, kv head), serving the kv head's query heads
/// together (GQA reads each row once per group), and a score buffer of kv_len floats per head
/// and thread; no key tile is shared between queries, so long prefills are slower than
/// flash<Bq, Bk> (which reuses each key tile for Bq queries but sums in an order that depends
/// on the tiling). Decode reads each key once per query anyway.
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
        // Query heads sharing a kv head are consecutive (head_layout contract): one item per
        // (sequence, query, kv head) reads each key and value row once for its G heads. Each
        // head's arithmetic is the same whatever the grouping, batch or thread partition.
        const index_t G = n_q / n_kv;
        parallel_for(
            0, batch * q_seq * n_kv,
            [&](std::size_t item) {
                const index_t g = item % n_kv, i = (item / n_kv) % q_seq, b = item / (n_kv * q_seq);
                const index_t ql = detail::q_length(q_lens, q_seq, b), kl = kv.length(b);
                if (i >= ql || kl == 0) {
                    for (index_t h = g * G; h < (g + 1) * G; ++h) std::fill(o.ptr(b, i, h), o.ptr(b, i, h) + d, 0.0f);
                    return;
                }
                const index_t pos = kl - ql + i;
                const index_t end = causal ? pos + 1 : kl;
                for (index_t h0 = g * G; h0 < (g + 1) * G; h0 += max_group) {
                    const index_t gh = std::min<index_t>(max_group, (g + 1) * G - h0);
                    group(kv, b, L::kv_head(h0, n_q, n_kv), q, o, b, i, h0, gh, d, end, pos, scale, opt.alibi_slopes);
                }
            },
            opt.threads);
    }

    static constexpr index_t max_group = 8;  // query heads handled together (larger groups split)

#if KITE_SIMD_ENABLED
    // out[r] = the sum of the lanes of rows[r], r < width: one fixed addition tree per row that
    // never mixes rows, so a row's sum does not depend on the others (zero rows are harmless).
    // (xsimd 8's haddp permutes lanes 2-5 and 10-13 on AVX-512, hence this one.)
    static void transpose_sum(const simd::fbatch* rows, float* out) noexcept {
#if defined(__AVX512F__)
        if constexpr (simd::width == 16) {
            __m512 t[8], v[4];
            for (int i = 0; i < 8; ++i) {
                const __m512 a = rows[2 * i], b = rows[2 * i + 1];
                t[i] = _mm512_add_ps(_mm512_unpacklo_ps(a, b), _mm512_unpackhi_ps(a, b));
            }
            for (int i = 0; i < 4; ++i) {
                const __m512d a = _mm512_castps_pd(t[2 * i]), b = _mm512_castps_pd(t[2 * i + 1]);
                v[i] = _mm512_add_ps(_mm512_castpd_ps(_mm512_unpacklo_pd(a, b)), _mm512_castpd_ps(_mm512_unpackhi_pd(a, b)));
            }
            const __m512 x = _mm512_add_ps(_mm512_shuffle_f32x4(v[0], v[1], 0x88), _mm512_shuffle_f32x4(v[0], v[1], 0xDD));
            const __m512 y = _mm512_add_ps(_mm512_shuffle_f32x4(v[2], v[3], 0x88), _mm512_shuffle_f32x4(v[2], v[3], 0xDD));
            _mm512_storeu_ps(out, _mm512_add_ps(_mm512_shuffle_f32x4(x, y, 0x88), _mm512_shuffle_f32x4(x, y, 0xDD)));
            return;
        }
#endif
        for (index_t r = 0; r < simd::width; ++r) out[r] = simd::reduce_add(rows[r]);
    }
#endif

    // The softmax of scores[h][0, end) in place (unnormalised weights) and their sums. Every
    // head: m = max, e_j = exp(s_j - m) (vector exp, lanes independent), l = sum in a fixed order.
    static void softmax_rows(float* scores, index_t stride, index_t gh, index_t end, float* sums) noexcept {
        for (index_t h = 0; h < gh; ++h) {
            float* s = scores + h * stride;
            const float m = simd::max(s, end);
#if KITE_SIMD_ENABLED
            constexpr index_t W = simd::width;
            const simd::fbatch vm(m);
            index_t j = 0;
            for (; j + W <= end; j += W) xsimd::exp(simd::fbatch::load_unaligned(s + j) - vm).store_unaligned(s + j);
            for (; j < end; ++j) s[j] = std::exp(s[j] - m);
#else
            for (index_t j = 0; j < end; ++j) s[j] = std::exp(s[j] - m);
#endif
            sums[h] = simd::sum(s, end);
        }
    }

    template <kv_view KV>
    static void group(const KV& kv, index_t b, index_t kvh, tensor_view<const float, 4> q, tensor_view<float, 4> o,
                      index_t qb, index_t qi, index_t h0, index_t gh, index_t d, index_t end, index_t pos, float scale,
                      std::span<const float> slopes) {
        using T = typename KV::value_type;
        const index_t stride = (end + 15) / 16 * 16;
        thread_local std::vector<float> scores, row;
        scores.resize(gh * stride);
        if constexpr (!std::is_same_v<T, float>) row.resize(d);
        const auto as_float = [&](const T* p) -> const float* {
            if constexpr (std::is_same_v<T, float>) {
                return p;
            } else {
                simd::convert_row(p, row.data(), d);
                return row.data();
            }
        };
        const float* qh[max_group];
        for (index_t h = 0; h < gh; ++h) qh[h] = q.ptr(qb, qi, h0 + h);
#if KITE_SIMD_ENABLED
        constexpr index_t W = simd::width;
        using vec = simd::fbatch;
        if (d % W == 0 && d <= 8 * W) {
            // Scores: per head and key, d/W lane-wise FMAs into one vector; every W keys the
            // vectors are summed across lanes at once (transpose_sum: a fixed tree per vector,
            // so a key's score does not depend on its neighbours).
            const index_t nv = d / W;
            vec qv[max_group][8];
            for (index_t h = 0; h < gh; ++h)
                for (index_t c = 0; c < nv; ++c) qv[h][c] = vec::load_unaligned(qh[h] + c * W);
            alignas(64) vec part[max_group][W];
            for (index_t j0 = 0; j0 < end; j0 += W) {
                const index_t n = std::min<index_t>(W, end - j0);
                for (index_t t = 0; t < W; ++t) {
                    if (t >= n) {
                        for (index_t h = 0; h < gh; ++h) part[h][t] = vec(0.0f);
                        continue;
                    }
                    const float* k = as_float(detail::kv_row<true>(kv, b, kvh, j0 + t));
                    for (index_t h = 0; h < gh; ++h) {
                        vec acc = qv[h][0] * vec::load_unaligned(k);
                        for (index_t c = 1; c < nv; ++c) acc = xsimd::fma(qv[h][c], vec::load_unaligned(k + c * W), acc);
                        part[h][t] = acc;
                    }
                }
                for (index_t h = 0; h < gh; ++h) {
                    float* sc = scores.data() + h * stride + j0;
                    transpose_sum(part[h], sc);
                    (vec::load_unaligned(sc) * vec(scale)).store_unaligned(sc);
                }
            }
            add_alibi(scores.data(), stride, gh, h0, end, pos, slopes);
            float sums[max_group];
            softmax_rows(scores.data(), stride, gh, end, sums);
            // Values: o_h = sum_j e_hj v_j in key order, accumulated in registers.
            vec acc[max_group][8];
            for (index_t h = 0; h < gh; ++h)
                for (index_t c = 0; c < nv; ++c) acc[h][c] = vec(0.0f);
            for (index_t j = 0; j < end; ++j) {
                const float* v = as_float(detail::kv_row<false>(kv, b, kvh, j));
                for (index_t c = 0; c < nv; ++c) {
                    const vec vv = vec::load_unaligned(v + c * W);
                    for (index_t h = 0; h < gh; ++h) acc[h][c] = xsimd::fma(vec(scores[h * stride + j]), vv, acc[h][c]);
                }
            }
            for (index_t h = 0; h < gh; ++h) {
                const vec inv(1.0f / sums[h]);
                float* out = o.ptr(qb, qi, h0 + h);
                for (index_t c = 0; c < nv; ++c) (acc[h][c] * inv).store_unaligned(out + c * W);
            }
            return;
        }
#endif
        // Any head_dim: one dot product per (head, key), the same order for every query.
        for (index_t j = 0; j < end; ++j) {
            const float* k = as_float(detail::kv_row<true>(kv, b, kvh, j));
            for (index_t h = 0; h < gh; ++h) scores[h * stride + j] = simd::dot(qh[h], k, d) * scale;
        }
        add_alibi(scores.data(), stride, gh, h0, end, pos, slopes);
        float sums[max_group];
        softmax_rows(scores.data(), stride, gh, end, sums);
        for (index_t h = 0; h < gh; ++h) std::fill(o.ptr(qb, qi, h0 + h), o.ptr(qb, qi, h0 + h) + d, 0.0f);
        for (index_t j = 0; j < end; ++j) {
            const float* v = as_float(detail::kv_row<false>(kv, b, kvh, j));
            for (index_t h = 0; h < gh; ++h) simd::axpy(scores[h * stride + j], v, o.ptr(qb, qi, h0 + h), d);
        }
        for (index_t h = 0; h < gh; ++h) simd::scale(1.0f / sums[h], o.ptr(qb, qi, h0 + h), d);
    }

    // ALiBi: slope_h * (key_pos - query_pos) added to the scores.
    static void add_alibi(float* scores, index_t stride, index_t gh, index_t h0, index_t end, index_t pos,
                          std::span<const float> slopes) noexcept {
        if (slopes.empty()) return;
        for (index_t h = 0; h < gh; ++h)
            for (index_t j = 0; j < end; ++j)
                scores[h * stride + j] += slopes[h0 + h] * static_cast<float>(static_cast<double>(j) - static_cast<double>(pos));
    }
};

static_assert(attention_kernel<invariant>);

}  // namespace kite::attn
