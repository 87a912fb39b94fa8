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
/// together (GQA reads each row once per group; up to 16 / (head_dim / vector width) heads per
/// pass, so that their accumulators stay in registers), and a score buffer of kv_len floats per
/// head and thread; no key tile is shared between queries, so long prefills are slower than
/// flash<Bq, Bk> (which reuses each key tile for Bq queries but sums in an order that depends
/// on the tiling). Decode reads each key once per query anyway. Rows are walked block by block
/// with software prefetch two blocks ahead (a paged cache's blocks are scattered); bf16 / fp16
/// rows are widened to float in registers as they are read (half the bytes of float32, the
/// same arithmetic on the stored values).
///
///   using engine_model = kite::model::gguf_llama_decoder<kite::kv::paged<16, kite::fp16>, kite::attn::invariant>;

#include <algorithm>
#include <cmath>
#include <limits>
#include <span>
#include <type_traits>
#include <vector>

#include "kite/attn/concepts.hpp"
#include "kite/attn/detail/checks.hpp"
#include "kite/core/diagnostics.hpp"
#include "kite/core/parallel.hpp"
#include "kite/core/simd.hpp"
#include "kite/core/simd_convert.hpp"

KITE_GCC12_AVX512_UNINIT_BEGIN  // see kite/core/diagnostics.hpp

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
        // Decode items (one query each) cost alike and go out in static chunks; with prompt
        // chunks in the step (q_seq > 1) items are handed out dynamically, since a chunk's
        // queries see many more keys than a decoding sequence's one query and a static split left
        // one thread waiting. An item's result does not depend on which thread runs it.
        const index_t G = n_q / n_kv;
        const auto item_fn = [&](std::size_t item) {
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
        };
        if (q_seq == 1) parallel_for(0, batch * n_kv, item_fn, opt.threads);
        else parallel_for_dynamic(batch * q_seq * n_kv, 1, item_fn, opt.threads);
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

    // Rows [0, end) of one kv head in position order, read chunk by chunk: the chunk's base
    // pointer is looked up once per chunk (a paged cache's block table), not once per row.
    // Reading row r of chunk i prefetches row r of chunk i + ahead_chunks (a paged cache's
    // blocks lie anywhere in the pool, so the hardware prefetcher restarts at each of them) and,
    // for keys, the value row of the same position (read by the value pass right after). The
    // value walk prefetches ahead as well although the key walk touched its rows: without it
    // 16 sequences x 1,024 keys from DRAM ran 9% slower (bench_attn, Intel Xeon model 167).
    static constexpr index_t ahead_chunks = 2;
    template <bool Keys, kv_view KV>
    struct row_walk {
        using T = typename KV::value_type;
        const KV& kv;
        index_t b, h, c, ts, end, chunk = 0, off = 0;
        std::size_t row_bytes;
        const T* base;
        const T* ahead;   // chunk + ahead_chunks, or nullptr past the end
        const T* vbase;   // keys: the values of this chunk
        row_walk(const KV& v, index_t b_, index_t h_, index_t end_) noexcept
            : kv(v), b(b_), h(h_), c(v.chunk_tokens()), ts(v.token_stride()), end(end_),
              row_bytes(static_cast<std::size_t>(v.head_dim()) * sizeof(T)), base(at_chunk(0, Keys)),
              ahead(at_chunk(ahead_chunks, Keys)), vbase(Keys ? at_chunk(0, false) : nullptr) {
            // The chunks before the first prefetched one.
            for (index_t ch = 1; ch < ahead_chunks; ++ch)
                if (const T* p = at_chunk(ch, Keys))
                    for (index_t r = 0; r < std::min(c, end - ch * c); ++r) prefetch(p + r * ts);
        }
        const T* at_chunk(index_t ch, bool keys) const noexcept {
            if (ch * c >= end) return nullptr;
            return keys ? kv.keys(b, h, ch) : kv.values(b, h, ch);
        }
        KITE_FORCE_INLINE void prefetch(const T* row) const noexcept {
            for (std::size_t o = 0; o < row_bytes; o += 64) __builtin_prefetch(reinterpret_cast<const char*>(row) + o, 0, 3);
        }
        KITE_FORCE_INLINE const T* next() noexcept {
            if (off == c) {
                ++chunk;
                base = at_chunk(chunk, Keys);
                ahead = at_chunk(chunk + ahead_chunks, Keys);
                if constexpr (Keys) vbase = at_chunk(chunk, false);
                off = 0;
            }
            if (ahead) prefetch(ahead + off * ts);
            if constexpr (Keys) prefetch(vbase + off * ts);
            return base + (off++) * ts;
        }
    };

    template <kv_view KV>
    static void group(const KV& kv, index_t b, index_t kvh, tensor_view<const float, 4> q, tensor_view<float, 4> o,
                      index_t qb, index_t qi, index_t h0, index_t gh, index_t d, index_t end, index_t pos, float scale,
                      std::span<const float> slopes) {
#if KITE_SIMD_ENABLED
        constexpr index_t W = simd::width;
        if (d % W == 0 && d <= 8 * W) {
            switch (d / W) {
                case 1: return group_fixed<1>(kv, b, kvh, q, o, qb, qi, h0, gh, end, pos, scale, slopes);
                case 2: return group_fixed<2>(kv, b, kvh, q, o, qb, qi, h0, gh, end, pos, scale, slopes);
                case 3: return group_fixed<3>(kv, b, kvh, q, o, qb, qi, h0, gh, end, pos, scale, slopes);
                case 4: return group_fixed<4>(kv, b, kvh, q, o, qb, qi, h0, gh, end, pos, scale, slopes);
                case 5: return group_fixed<5>(kv, b, kvh, q, o, qb, qi, h0, gh, end, pos, scale, slopes);
                case 6: return group_fixed<6>(kv, b, kvh, q, o, qb, qi, h0, gh, end, pos, scale, slopes);
                case 7: return group_fixed<7>(kv, b, kvh, q, o, qb, qi, h0, gh, end, pos, scale, slopes);
                default: return group_fixed<8>(kv, b, kvh, q, o, qb, qi, h0, gh, end, pos, scale, slopes);
            }
        }
#endif
        group_any(kv, b, kvh, q, o, qb, qi, h0, gh, d, end, pos, scale, slopes);
    }

    // A float pointer to a row of T (converted into a thread's buffer when T is not float).
    template <class T>
    static const float* as_float(const T* p, index_t d) {
        if constexpr (std::is_same_v<T, float>) {
            (void)d;
            return p;
        } else {
            thread_local std::vector<float> row;
            row.resize(d);
            simd::convert_row(p, row.data(), d);
            return row.data();
        }
    }

#if KITE_SIMD_ENABLED
    // head_dim = NV vectors. Heads go in passes of at most HG (their NV-vector accumulators stay
    // in registers; every pass reads the keys and values again, from cache). Per head:
    // scores: per key, NV lane-wise FMAs into one vector; every W keys the vectors are summed
    // across lanes at once (transpose_sum: a fixed tree per vector, so a key's score does not
    // depend on its neighbours); values: o_h = sum_j e_hj v_j in key order. The same operations
    // for every head whatever the pass, batch or thread.
    template <index_t NV, kv_view KV>
    static void group_fixed(const KV& kv, index_t b, index_t kvh, tensor_view<const float, 4> q,
                            tensor_view<float, 4> o, index_t qb, index_t qi, index_t h0, index_t gh, index_t end,
                            index_t pos, float scale, std::span<const float> slopes) {
        constexpr index_t W = simd::width;  // head_dim = NV * W
        constexpr index_t HG = std::max<index_t>(1, std::min<index_t>(max_group, 16 / NV));
        using vec = simd::fbatch;
        const index_t stride = (end + 15) / 16 * 16;
        thread_local std::vector<float> scores;
        scores.resize(HG * stride);
        for (index_t p0 = 0; p0 < gh; p0 += HG) {
            const index_t n_h = std::min<index_t>(HG, gh - p0), hp = h0 + p0;
            vec qv[HG][NV];
#pragma GCC unroll 16
            for (index_t h = 0; h < HG; ++h) {
                if (h >= n_h) break;
                const float* qh = q.ptr(qb, qi, hp + h);
#pragma GCC unroll 8
                for (index_t c = 0; c < NV; ++c) qv[h][c] = vec::load_unaligned(qh + c * W);
            }
            alignas(64) vec part[HG][W];
            row_walk<true, KV> keys(kv, b, kvh, end);
            for (index_t j0 = 0; j0 < end; j0 += W) {
                const index_t n = std::min<index_t>(W, end - j0);
                for (index_t t = 0; t < W; ++t) {
                    if (t >= n) {
                        for (index_t h = 0; h < n_h; ++h) part[h][t] = vec(0.0f);
                        continue;
                    }
                    const auto* k = keys.next();  // stored T, widened to float in registers
                    vec kr[NV];
#pragma GCC unroll 8
                    for (index_t c = 0; c < NV; ++c) kr[c] = simd::load_as_float(k + c * W);
#pragma GCC unroll 16
                    for (index_t h = 0; h < HG; ++h) {
                        if (h >= n_h) break;
                        vec acc = qv[h][0] * kr[0];
#pragma GCC unroll 8
                        for (index_t c = 1; c < NV; ++c) acc = xsimd::fma(qv[h][c], kr[c], acc);
                        part[h][t] = acc;
                    }
                }
                for (index_t h = 0; h < n_h; ++h) {
                    float* sc = scores.data() + h * stride + j0;
                    transpose_sum(part[h], sc);
                    (vec::load_unaligned(sc) * vec(scale)).store_unaligned(sc);
                }
            }
            add_alibi(scores.data(), stride, n_h, hp, end, pos, slopes);
            float sums[HG];
            softmax_rows(scores.data(), stride, n_h, end, sums);
            vec acc[HG][NV];
#pragma GCC unroll 16
            for (index_t h = 0; h < HG; ++h)
#pragma GCC unroll 8
                for (index_t c = 0; c < NV; ++c) acc[h][c] = vec(0.0f);
            row_walk<false, KV> values(kv, b, kvh, end);
            const float* e = scores.data();
            for (index_t j = 0; j < end; ++j) {
                const auto* v = values.next();
#pragma GCC unroll 8
                for (index_t c = 0; c < NV; ++c) {
                    const vec vv = simd::load_as_float(v + c * W);
#pragma GCC unroll 16
                    for (index_t h = 0; h < HG; ++h)
                        if (h < n_h) acc[h][c] = xsimd::fma(vec(e[h * stride + j]), vv, acc[h][c]);
                }
            }
            for (index_t h = 0; h < n_h; ++h) {
                const vec inv(1.0f / sums[h]);
                float* out = o.ptr(qb, qi, hp + h);
#pragma GCC unroll 8
                for (index_t c = 0; c < NV; ++c) (acc[h][c] * inv).store_unaligned(out + c * W);
            }
        }
    }
#endif

    // Any head_dim: one dot product per (head, key), the same order for every query.
    template <kv_view KV>
    static void group_any(const KV& kv, index_t b, index_t kvh, tensor_view<const float, 4> q,
                          tensor_view<float, 4> o, index_t qb, index_t qi, index_t h0, index_t gh, index_t d,
                          index_t end, index_t pos, float scale, std::span<const float> slopes) {
        const index_t stride = (end + 15) / 16 * 16;
        thread_local std::vector<float> scores;
        scores.resize(gh * stride);
        const float* qh[max_group];
        for (index_t h = 0; h < gh; ++h) qh[h] = q.ptr(qb, qi, h0 + h);
        row_walk<true, KV> keys(kv, b, kvh, end);
        for (index_t j = 0; j < end; ++j) {
            const float* k = as_float(keys.next(), d);
            for (index_t h = 0; h < gh; ++h) scores[h * stride + j] = simd::dot(qh[h], k, d) * scale;
        }
        add_alibi(scores.data(), stride, gh, h0, end, pos, slopes);
        float sums[max_group];
        softmax_rows(scores.data(), stride, gh, end, sums);
        for (index_t h = 0; h < gh; ++h) std::fill(o.ptr(qb, qi, h0 + h), o.ptr(qb, qi, h0 + h) + d, 0.0f);
        row_walk<false, KV> values(kv, b, kvh, end);
        for (index_t j = 0; j < end; ++j) {
            const float* v = as_float(values.next(), d);
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

KITE_GCC12_AVX512_UNINIT_END
