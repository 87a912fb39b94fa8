#pragma once
/// @file kite/attn/flash.hpp
/// flash<Bq, Bk>: tiled attention with an online softmax (FlashAttention on the CPU).
///
/// Prefill: each work item is one (sequence, query head, tile of Bq queries). Keys and values
/// stream through in tiles of Bk, copied into a packed buffer that the item's sub-tiles then
/// share when the rows need converting (bf16/fp16 storage) or their stride aliases in L1; a running max m and sum l per query rescale the output
/// accumulator, so the [q_len][kv_len] score matrix never exists: scratch is
/// O(threads * (Bq + Bk) * head_dim), independent of the sequence length. Causal tiles above
/// the diagonal are skipped, and only tiles that cross it are masked. Items are handed out
/// largest first over the threads.
///
/// Decode: one query per sequence; each item is (sequence, kv head, split of the context) and
/// serves all query heads of that kv head at once (GQA reads each key once per group). When
/// there are fewer items than threads the context is split and the partial softmax states are
/// merged (flash-decoding). The next step's K/V rows are prefetched (through the block table
/// of a paged cache) while the current step computes.
///
///   kite::attn::flash<64, 64>::prefill<kite::attn::gqa>(q, kv, o, {.mask = kite::attn::mask::causal});

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstring>
#include <limits>
#include <span>
#include <type_traits>
#include <vector>

#include "kite/attn/concepts.hpp"
#include "kite/attn/detail/checks.hpp"
#include "kite/attn/detail/tiles.hpp"
#include "kite/attn/reference.hpp"
#include "kite/core/buffer.hpp"
#include "kite/core/diagnostics.hpp"
#include "kite/core/parallel.hpp"
#include "kite/core/simd_convert.hpp"

KITE_GCC12_AVX512_UNINIT_BEGIN  // see kite/core/diagnostics.hpp

namespace kite::attn {

namespace detail {

inline constexpr float log2e = 1.4426950408889634f;

inline index_t round_up(index_t x, index_t m) noexcept { return (x + m - 1) / m * m; }

/// Runs body(item, thread) for item in [0, n), items handed out one by one in index order
/// (callers order them largest first); `thread` indexes per-thread scratch in [0, threads).
template <class Body>
void dynamic_items(index_t n, int threads, Body&& body) {
    std::atomic<index_t> next{0};
    parallel_chunks(
        static_cast<std::size_t>(threads),
        [&](std::size_t, std::size_t, int tid) {
            for (;;) {
                const index_t i = next.fetch_add(1, std::memory_order_relaxed);
                if (i >= n) break;
                body(i, tid);
            }
        },
        threads);
}

}  // namespace detail

/// FlashAttention-style kernel with query tiles of Bq and key tiles of Bk.
template <index_t Bq = 64, index_t Bk = 64>
struct flash {
    static_assert(Bq % 16 == 0 && Bq >= 16 && Bq <= 128,
                  "flash<Bq, Bk>: Bq must be 16, 32, 48, ..., 128 (queries sit in SIMD lanes)");
    static_assert(Bk >= 8 && Bk <= 512, "flash<Bq, Bk>: Bk must be in [8, 512]");
    static constexpr const char* name = "flash";
    static constexpr index_t query_tile = Bq;
    static constexpr index_t key_tile = Bk;

    /// Prefill attention. q, o: [batch][q_seq][n_q][head_dim]; kv: a kv_view with the same
    /// batch; q_lens: [batch] queries per sequence (empty: q_seq each). Rows of o past q_len
    /// are zeroed.
    template <head_layout L, kv_view KV>
    static void prefill(tensor_view<const float, 4> q, const KV& kv, tensor_view<float, 4> o,
                        const options& opt, std::span<const index_t> q_lens = {}) {
        const float scale = detail::check_prefill<L>("flash::prefill", q, kv, o, opt, q_lens);
#if KITE_SIMD_ENABLED
        run_prefill<L>(q, kv, o, opt, q_lens, scale);
#else
        (void)scale;
        reference::prefill<L>(q, kv, o, opt, q_lens);  // no SIMD: the oracle is the fallback
#endif
    }

    /// Decode attention: one query per sequence at position length(b) - 1, over the whole
    /// cache. q, o: [batch][n_q][head_dim].
    template <head_layout L, kv_view KV>
    static void decode(tensor_view<const float, 3> q, const KV& kv, tensor_view<float, 3> o,
                       const options& opt) {
        const float scale = detail::check_decode<L>("flash::decode", q, kv, o, opt);
#if KITE_SIMD_ENABLED
        run_decode<L>(q, kv, o, opt, scale);
#else
        (void)scale;
        reference::decode<L>(q, kv, o, opt);
#endif
    }

    /// Scratch bytes of a prefill call with `threads` threads (independent of sequence length).
    /// (`converts_kv` no longer matters: every K/V tile is packed, float32 ones included.)
    static index_t prefill_workspace_bytes(index_t head_dim, int threads, [[maybe_unused]] bool converts_kv = false) noexcept {
        return static_cast<index_t>(std::max(threads, 1)) *
               (prefill_floats(head_dim) * sizeof(float) + 2 * Bk * sizeof(const float*));
    }

#if KITE_SIMD_ENABLED
private:
    static constexpr index_t W = detail::lanes;
    static constexpr int NQ = static_cast<int>(Bq / W);
    static_assert(Bq % W == 0, "flash<Bq, Bk>: Bq must be a multiple of the SIMD width");

    /// Query tiles (x heads of a GQA group) that share each K/V tile inside one work item:
    /// the tile is read from memory once and reused from L1/L2 by all of them.
    static constexpr index_t max_subtiles = 8;

    /// Floats of one sub-tile's state: Q^T, O, m, l, alpha.
    static index_t subtile_floats(index_t d) noexcept {
        return d * Bq + Bq * detail::round_up(d, W) + 3 * Bq;
    }
    static index_t prefill_floats(index_t d) noexcept {
        const index_t dp = detail::round_up(d, W);
        // Every term is a multiple of W (Bq is), so each thread's slice stays 64-byte aligned.
        return detail::round_up(max_subtiles * subtile_floats(d) + Bk * Bq + 2 * Bk * dp, W);
    }

    template <head_layout L, kv_view KV>
    static void run_prefill(tensor_view<const float, 4> q, const KV& kv, tensor_view<float, 4> o,
                            const options& opt, std::span<const index_t> q_lens, float scale) {
        using T = typename KV::value_type;
        constexpr bool conv = !std::is_same_v<T, float>;
        const index_t batch = q.extent(0), q_seq = q.extent(1), n_q = q.extent(2), d = q.extent(3);
        const index_t n_kv = kv.kv_heads();
        const index_t dp = detail::round_up(d, W);
        const bool causal = opt.mask == mask::causal;
        const bool alibi = !opt.alibi_slopes.empty();
        const float qscale = scale * detail::log2e;

        // Query heads of kv head k: grouped when the layout keeps them consecutive (its
        // contract); otherwise every query head is its own group.
        index_t G = n_q / n_kv;
        for (index_t h = 0; h < n_q && G > 1; ++h)
            if (L::kv_head(h, n_q, n_kv) != h / G) G = 1;
        const index_t groups = n_q / G;  // head groups
        index_t max_tiles = 0;
        for (index_t b = 0; b < batch; ++b)
            max_tiles = std::max(max_tiles, (detail::q_length(q_lens, q_seq, b) + Bq - 1) / Bq);
        // Sub-tiles per item: the group's heads x R consecutive query tiles, R chosen so an item
        // holds up to 4 sub-tiles (8 for wide GQA groups) while leaving >= 8 items per thread.
        const int t_req = resolve_threads(opt.threads, batch * groups * max_tiles);
        const index_t hs = std::min(G, max_subtiles);  // heads per item
        const index_t head_chunks = (G + hs - 1) / hs;
        index_t R = std::max<index_t>(1, 4 / hs);
        while (R > 1 && batch * groups * head_chunks * ((max_tiles + R - 1) / R) < 8 * static_cast<index_t>(t_req)) R /= 2;

        // Work items (sequence, head group chunk, tile group), the tile groups with most keys first.
        struct item {
            std::uint32_t b, hg, tg;
        };
        const index_t tile_groups = (max_tiles + R - 1) / R;
        std::vector<item> items;
        items.reserve(batch * groups * head_chunks * tile_groups);
        for (index_t tg = tile_groups; tg-- > 0;)
            for (index_t b = 0; b < batch; ++b)
                if (tg * R * Bq < detail::q_length(q_lens, q_seq, b))
                    for (index_t hg = 0; hg < groups * head_chunks; ++hg)
                        items.push_back({static_cast<std::uint32_t>(b), static_cast<std::uint32_t>(hg),
                                         static_cast<std::uint32_t>(tg)});

        const int threads = resolve_threads(opt.threads, std::max<index_t>(items.size(), 1));
        const index_t per_thread = prefill_floats(d);
        aligned_buffer<float> scratch(per_thread * static_cast<index_t>(threads));  // zeroed: pads stay 0
        std::vector<const float*> rows(2 * Bk * static_cast<index_t>(threads));

        struct subtile {
            index_t h, i0, nq, kend, nrows;
            std::int64_t qpos0;
            float slope2;
            float *qt, *acc, *m, *l, *alpha;
        };

        detail::dynamic_items(items.size(), threads, [&](index_t it, int tid) {
            const item w = items[it];
            const index_t b = w.b;
            const index_t grp = w.hg / head_chunks, h_begin = grp * G + (w.hg % head_chunks) * hs;
            const index_t h_end = std::min(grp * G + G, h_begin + hs);
            const index_t kvh = L::kv_head(h_begin, n_q, n_kv);
            const index_t ql = detail::q_length(q_lens, q_seq, b), kl = kv.length(b);
            // Signed: bidirectional prefill may have more queries than keys.
            const std::int64_t off = static_cast<std::int64_t>(kl) - static_cast<std::int64_t>(ql);

            float* ws = scratch.data() + per_thread * static_cast<index_t>(tid);
            float* st = ws + max_subtiles * subtile_floats(d);  // [Bk][Bq]  S^T, then P^T
            float* kc = st + Bk * Bq;                           // [Bk][dp]  packed keys (converted from 16-bit storage)
            float* vc = kc + Bk * dp;                           // [Bk][dp]  packed values
            const float** krow = rows.data() + 2 * Bk * static_cast<index_t>(tid);  // [Bk]
            const float** vrow = krow + Bk;                                          // [Bk]

            subtile sub[max_subtiles];
            index_t n_sub = 0, kend_max = 0;
            for (index_t t = w.tg * R; t < w.tg * R + R && t * Bq < ql; ++t)
                for (index_t h = h_begin; h < h_end; ++h) {
                    subtile& u = sub[n_sub];
                    float* base = ws + n_sub * subtile_floats(d);
                    u.qt = base;                 // [d][Bq]   Q^T, scaled by scale * log2(e)
                    u.acc = u.qt + d * Bq;       // [Bq][dp]  unnormalized output
                    u.m = u.acc + Bq * dp;       // [Bq]      running max (log2 units)
                    u.l = u.m + Bq;              // [Bq]      running sum
                    u.alpha = u.l + Bq;          // [Bq]      rescale factor of the current tile
                    u.h = h;
                    u.i0 = t * Bq;
                    u.nq = std::min(Bq, ql - u.i0);
                    u.qpos0 = off + static_cast<std::int64_t>(u.i0);
                    u.nrows = detail::round_up(u.nq, 4);
                    u.slope2 = alibi ? opt.alibi_slopes[h] * detail::log2e : 0.0f;
                    // Keys this sub-tile can see: all of them, or up to its last query's position.
                    std::int64_t k_end = static_cast<std::int64_t>(kl);
                    if (causal) k_end = std::min<std::int64_t>(k_end, u.qpos0 + static_cast<std::int64_t>(u.nq));
                    u.kend = k_end > 0 ? static_cast<index_t>(k_end) : 0;
                    kend_max = std::max(kend_max, u.kend);
                    // Rows are read sequentially (the strided side stays in L1, in Q^T).
                    for (index_t i = 0; i < Bq; ++i) {
                        const float* row = i < u.nq ? q.ptr(b, u.i0 + i, h) : nullptr;
                        for (index_t k = 0; k < d; ++k) u.qt[k * Bq + i] = row ? row[k] * qscale : 0.0f;
                    }
                    std::fill_n(u.acc, Bq * dp, 0.0f);
                    std::fill_n(u.m, Bq, -std::numeric_limits<float>::max());
                    std::fill_n(u.l, Bq, 0.0f);
                    ++n_sub;
                }

            // Float32 rows are packed only when their stride aliases in L1: rows n_kv * d floats
            // apart (a multiple of 4 KB for MHA at d = 128) all map to the same few sets and
            // would be re-read from L2 by every sub-tile. Short rows at other strides (MiniLM:
            // d = 32, 1.5 KB apart) stay in place: copying them costs more than it saves.
            // (A stride that is a multiple of 1 KB puts the rows on at most 4 distinct set offsets.)
            const bool pack = conv || (static_cast<std::size_t>(kv.token_stride()) * sizeof(T)) % 1024 == 0;
            for (index_t j0 = 0; j0 < kend_max; j0 += Bk) {
                const index_t nk_all = std::min(Bk, kend_max - j0);
                for (index_t j = 0; j < nk_all; ++j) {
                    const T* kr = detail::kv_row<true>(kv, b, kvh, j0 + j);
                    const T* vr = detail::kv_row<false>(kv, b, kvh, j0 + j);
                    if constexpr (conv) {
                        simd::convert_row(kr, kc + j * dp, d);
                        simd::convert_row(vr, vc + j * dp, d);
                        krow[j] = kc + j * dp;
                        vrow[j] = vc + j * dp;
                    } else if (pack) {
                        std::memcpy(kc + j * dp, kr, static_cast<std::size_t>(d) * sizeof(float));
                        std::memcpy(vc + j * dp, vr, static_cast<std::size_t>(d) * sizeof(float));
                        krow[j] = kc + j * dp;
                        vrow[j] = vc + j * dp;
                    } else {
                        krow[j] = kr;
                        vrow[j] = vr;
                    }
                }
                for (index_t si = 0; si < n_sub; ++si) {
                    const subtile& u = sub[si];
                    if (j0 >= u.kend) continue;
                    const index_t nk = std::min(Bk, u.kend - j0);
                    detail::qk_tile<NQ>(krow, nk, u.qt, Bq, d, st);
                    const bool cut = causal && static_cast<std::int64_t>(j0 + nk - 1) > u.qpos0;
                    detail::softmax_tile<NQ>(st, Bq, nk, u.m, u.l, u.alpha, cut, alibi, u.slope2, j0,
                                             static_cast<float>(u.qpos0));
                    if (!conv && d % W != 0) {
                        detail::pv_tile<true>(st, Bq, vrow, nk, d, u.nrows, u.acc, dp, u.alpha);
                    } else {
                        detail::pv_tile<false>(st, Bq, vrow, nk, d, u.nrows, u.acc, dp, u.alpha);
                    }
                }
            }
            for (index_t si = 0; si < n_sub; ++si) {
                const subtile& u = sub[si];
                for (index_t i = 0; i < u.nq; ++i) {
                    float* dst = o.ptr(b, u.i0 + i, u.h);
                    const float inv = u.l[i] > 0.0f ? 1.0f / u.l[i] : 0.0f;
                    const float* src = u.acc + i * dp;
                    for (index_t c = 0; c < d; ++c) dst[c] = src[c] * inv;
                }
            }
        });
        // Query rows past each sequence's length.
        for (index_t b = 0; b < batch; ++b)
            for (index_t i = detail::q_length(q_lens, q_seq, b); i < q_seq; ++i)
                for (index_t h = 0; h < n_q; ++h) std::fill_n(o.ptr(b, i, h), d, 0.0f);
    }

    // ---- decode ------------------------------------------------------------------------------

    static constexpr index_t sub = 64;  // keys per online-softmax step of decode

    template <head_layout L, kv_view KV>
    static void run_decode(tensor_view<const float, 3> q, const KV& kv, tensor_view<float, 3> o,
                           const options& opt, float scale) {
        using T = typename KV::value_type;
        using detail::fbatch;
        const index_t batch = q.extent(0), n_q = q.extent(1), d = q.extent(2);
        const index_t n_kv = kv.kv_heads();
        const index_t G = n_q / n_kv;  // query heads per kv head, consecutive
        const index_t dp = detail::round_up(d, W);
        const index_t nvec = dp / W, tail = d - (nvec - 1) * W;
        const bool alibi = !opt.alibi_slopes.empty();
        const float qscale = scale * detail::log2e;
        // Items serve the query heads [k*G, (k+1)*G) of kv head k: the head_layout contract.
        for (index_t h = 0; h < n_q; ++h)
            KITE_REQUIRE(L::kv_head(h, n_q, n_kv) == h / G, config_error, "flash::decode: layout ", L::name,
                         " maps query head ", h, " to kv head ", L::kv_head(h, n_q, n_kv), "; expected ", h / G,
                         " (query heads sharing a kv head must be consecutive)");

        index_t max_len = 0;
        for (index_t b = 0; b < batch; ++b) max_len = std::max(max_len, kv.length(b));
        const index_t units = std::max<index_t>(batch * n_kv, 1);
        int threads = resolve_threads(opt.threads, units * std::max<index_t>(max_len / 256, 1));
        // Split the context when there are too few (sequence, kv head) units for the threads.
        index_t splits = 1;
        if (units < 4 * static_cast<index_t>(threads))
            splits = std::clamp<index_t>((4 * static_cast<index_t>(threads) + units - 1) / units, 1,
                                         std::max<index_t>(max_len / 512, 1));
        const index_t n_items = units * splits;
        threads = resolve_threads(opt.threads, n_items);

        const index_t sp = detail::round_up(sub, W);
        const index_t per_thread = detail::round_up(G * dp + G * sp + G * dp + 2 * G, W);  // aligned slices
        aligned_buffer<float> scratch(per_thread * static_cast<index_t>(threads));
        std::vector<const T*> rows(4 * sub * static_cast<index_t>(threads));
        // Partial states of split contexts: [batch][n_q][split][m, l, o[dp]].
        const index_t pstride = dp + 2;
        aligned_buffer<float> partial(splits > 1 ? batch * n_q * splits * pstride : 0, uninitialized);

        detail::dynamic_items(n_items, threads, [&](index_t it, int tid) {
            const index_t s_idx = it % splits, u = it / splits;
            const index_t b = u / n_kv, kvh = u % n_kv;
            const index_t len = kv.length(b);
            const index_t per = detail::round_up((len + splits - 1) / splits, sub);
            const index_t t_begin = std::min(len, s_idx * per), t_end = std::min(len, t_begin + per);

            float* ws = scratch.data() + per_thread * static_cast<index_t>(tid);
            float* qs = ws;              // [G][dp] queries, scaled, zero padded
            float* sc = qs + G * dp;     // [G][sp] scores, then probabilities
            float* acc = sc + G * sp;    // [G][dp] unnormalized outputs
            float* m = acc + G * dp;     // [G]
            float* l = m + G;            // [G]
            const T** kp = rows.data() + 4 * sub * static_cast<index_t>(tid);  // [sub] this step
            const T** vp = kp + sub;                                            // [sub]
            const T** kn = vp + sub;  // [sub] the next step's rows, prefetched during this one
            const T** vn = kn + sub;

            for (index_t g = 0; g < G; ++g) {
                const float* src = q.ptr(b, kvh * G + g);
                float* dst = qs + g * dp;
                for (index_t c = 0; c < d; ++c) dst[c] = src[c] * qscale;
                for (index_t c = d; c < dp; ++c) dst[c] = 0.0f;
            }
            std::fill_n(acc, G * dp, 0.0f);
            std::fill_n(m, G, -std::numeric_limits<float>::max());
            std::fill_n(l, G, 0.0f);
            const float qpos = static_cast<float>(len) - 1.0f;
            const index_t C = kv.chunk_tokens(), stride = kv.token_stride();

            // Row pointers of tokens [from, from + n), one chunk (block) at a time.
            const auto row_pointers = [&](index_t from, index_t n, const T** kr, const T** vr) {
                for (index_t j = 0; j < n;) {
                    const index_t t = from + j, c = t / C, in = t % C;
                    const index_t run = std::min(n - j, C - in);
                    const T* kb = kv.keys(b, kvh, c) + in * stride;
                    const T* vb = kv.values(b, kvh, c) + in * stride;
                    for (index_t r = 0; r < run; ++r, ++j) {
                        kr[j] = kb + r * stride;
                        vr[j] = vb + r * stride;
                    }
                }
            };
            const std::size_t row_bytes = static_cast<std::size_t>(d) * sizeof(T);
            if (t_begin < t_end) row_pointers(t_begin, std::min(sub, t_end - t_begin), kn, vn);
            for (index_t t0 = t_begin; t0 < t_end; t0 += sub) {
                const index_t n = std::min(sub, t_end - t0);
                std::swap(kp, kn);
                std::swap(vp, vn);
                // The next step's rows are prefetched while this step computes: a paged cache's
                // blocks lie anywhere, so the hardware prefetcher loses the stream at each one.
                const index_t nn = t0 + sub < t_end ? std::min(sub, t_end - t0 - sub) : 0;
                if (nn) row_pointers(t0 + sub, nn, kn, vn);
                // Scores: the key row is loaded once per vector and reused by every head.
                for (index_t j = 0; j < n; ++j) {
                    if (j < nn) detail::prefetch(kn[j], row_bytes);
                    const T* kr = kp[j];
                    for (index_t g0 = 0; g0 < G; g0 += 4) {
                        const index_t gn = std::min<index_t>(4, G - g0);
                        fbatch a0(0.0f), a1(0.0f), a2(0.0f), a3(0.0f);
                        const float* q0 = qs + g0 * dp;
                        for (index_t v = 0; v < nvec; ++v) {
                            const fbatch kv_ = v + 1 < nvec || tail == W ? simd::load_as_float(kr + v * W)
                                                                         : simd::load_as_float_partial(kr + v * W, tail);
                            a0 = xsimd::fma(kv_, fbatch::load_aligned(q0 + v * W), a0);
                            if (gn > 1) a1 = xsimd::fma(kv_, fbatch::load_aligned(q0 + dp + v * W), a1);
                            if (gn > 2) a2 = xsimd::fma(kv_, fbatch::load_aligned(q0 + 2 * dp + v * W), a2);
                            if (gn > 3) a3 = xsimd::fma(kv_, fbatch::load_aligned(q0 + 3 * dp + v * W), a3);
                        }
                        sc[g0 * sp + j] = simd::reduce_add(a0);
                        if (gn > 1) sc[(g0 + 1) * sp + j] = simd::reduce_add(a1);
                        if (gn > 2) sc[(g0 + 2) * sp + j] = simd::reduce_add(a2);
                        if (gn > 3) sc[(g0 + 3) * sp + j] = simd::reduce_add(a3);
                    }
                }
                // Online softmax per head; scores past n are -inf so whole vectors can be used.
                for (index_t g = 0; g < G; ++g) {
                    float* s = sc + g * sp;
                    if (alibi) {
                        const float s2 = opt.alibi_slopes[kvh * G + g] * detail::log2e;
                        for (index_t j = 0; j < n; ++j) s[j] += s2 * (static_cast<float>(t0 + j) - qpos);
                    }
                    for (index_t j = n; j < detail::round_up(n, W); ++j) s[j] = -std::numeric_limits<float>::infinity();
                    float mx = m[g];
                    for (index_t j = 0; j < n; ++j) mx = std::max(mx, s[j]);
                    fbatch sum(0.0f);
                    for (index_t j = 0; j < n; j += W) {
                        const fbatch p = detail::exp2_nonpos(fbatch::load_aligned(s + j) - fbatch(mx));
                        p.store_aligned(s + j);
                        sum += p;
                    }
                    if (mx > m[g]) {  // rescale only when the max moved
                        alignas(64) float a_[W];
                        detail::exp2_nonpos(fbatch(m[g] - mx)).store_aligned(a_);
                        const float a = a_[0];
                        l[g] *= a;
                        simd::scale(a, acc + g * dp, dp);
                        m[g] = mx;
                    }
                    l[g] += simd::reduce_add(sum);
                }
                // Values: each value row is read once and accumulated into every head.
                for (index_t j = 0; j < n; ++j) {
                    if (j < nn) detail::prefetch(vn[j], row_bytes);
                    const T* vr = vp[j];
                    for (index_t v = 0; v < nvec; ++v) {
                        const fbatch vv = v + 1 < nvec || tail == W ? simd::load_as_float(vr + v * W)
                                                                    : simd::load_as_float_partial(vr + v * W, tail);
                        for (index_t g = 0; g < G; ++g) {
                            float* a = acc + g * dp + v * W;
                            xsimd::fma(fbatch(sc[g * sp + j]), vv, fbatch::load_aligned(a)).store_aligned(a);
                        }
                    }
                }
            }
            for (index_t g = 0; g < G; ++g) {
                const index_t h = kvh * G + g;
                if (splits == 1) {
                    float* dst = o.ptr(b, h);
                    const float inv = l[g] > 0.0f ? 1.0f / l[g] : 0.0f;
                    for (index_t c = 0; c < d; ++c) dst[c] = acc[g * dp + c] * inv;
                } else {
                    float* p = partial.data() + ((b * n_q + h) * splits + s_idx) * pstride;
                    p[0] = m[g];
                    p[1] = l[g];
                    std::memcpy(p + 2, acc + g * dp, d * sizeof(float));
                }
            }
        });
        if (splits == 1) return;
        // Merge the split softmax states: rescale each to the global max and add.
        parallel_for(
            0, batch * n_q,
            [&](std::size_t bh) {
                const float* p = partial.data() + bh * splits * pstride;
                float mx = -std::numeric_limits<float>::max();
                for (index_t s = 0; s < splits; ++s) mx = std::max(mx, p[s * pstride]);
                float* dst = o.ptr(bh / n_q, bh % n_q);
                std::fill_n(dst, d, 0.0f);
                float total = 0.0f;
                for (index_t s = 0; s < splits; ++s) {
                    const float* ps = p + s * pstride;
                    if (ps[1] == 0.0f) continue;
                    const float w = std::exp2(ps[0] - mx);
                    total += w * ps[1];
                    simd::axpy(w, ps + 2, dst, d);
                }
                if (total > 0.0f) simd::scale(1.0f / total, dst, d);
            },
            threads);
    }
#else
    static index_t prefill_floats(index_t) noexcept { return 0; }
#endif
};

static_assert(attention_kernel<flash<64, 64>>);

}  // namespace kite::attn

KITE_GCC12_AVX512_UNINIT_END
