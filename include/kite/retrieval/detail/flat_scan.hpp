#pragma once
/// @file kite/retrieval/detail/flat_scan.hpp
/// The scan kernel of the flat index, for small query batches: it streams each base row once
/// for the whole batch (FAISS rescans the base for every query below its BLAS threshold) and
/// keeps the per-query results in the handler. SIMD lanes run along the dimension, R rows and
/// Q queries at a time, so one query still gets R independent accumulator chains and the scan
/// runs at memory speed.
///
/// That interleaving of rows is the Intel tuning. On AMD Zen (kite::cpu::tuning::zen) the
/// hardware prefetchers follow one sequential stream far better than 16 interleaved ones (at
/// n = 100000, d = 384, one thread on a Zen 4 EPYC: 13 GB/s interleaved against 25-28 GB/s, of
/// 29 measured, in row order), so there the kernel reads rows in order, one at a time, with
/// software prefetch 512 bytes ahead (scan_row_seq). Both variants run on any host (tests force
/// each through kite::cpu::scoped_tuning).

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <type_traits>

#include "kite/core/config.hpp"
#include "kite/core/cpu.hpp"
#include "kite/core/simd.hpp"
#include "kite/retrieval/detail/flat_common.hpp"

namespace kite::retrieval::detail {

/// Most queries one pass of the scan kernel serves; larger batches take several passes over
/// an L2-resident chunk of base rows.
inline constexpr index_t scan_max_queries = 8;

#if KITE_SIMD_ENABLED

/// The rows the scan reads: the float32 rows, or their float16 copy (base.half).
template <class T>
KITE_FORCE_INLINE const T* scan_row(const flat_base& base, index_t i) noexcept {
    if constexpr (std::is_same_v<T, float>) {
        return base.row(i);
    } else {
        return base.half_row(i);
    }
}
template <class T>
KITE_FORCE_INLINE kite::simd::fbatch scan_load(const T* p) noexcept {
    if constexpr (std::is_same_v<T, float>) {
        return kite::simd::fbatch::load_unaligned(p);
    } else {
        return kite::simd::load_f16(p);
    }
}
template <class T>
KITE_FORCE_INLINE kite::simd::fbatch scan_load_partial(const T* p, index_t count) noexcept {
    if constexpr (std::is_same_v<T, float>) {
        return kite::simd::load_partial(p, count);
    } else {
        return kite::simd::load_f16_partial(p, count);
    }
}

/// R rows starting at `r0` against Q queries (pointers `q`, of which the first `qvalid` are
/// real; the rest repeat a real query and are ignored), offering keys to the handler.
template <bool L2, class T, int R, int Q>
KITE_FORCE_INLINE void scan_micro(const flat_base& base, index_t r0, const float* const* q,
                                  index_t j0, index_t qvalid, const handler_ref& h) {
    using vec = kite::simd::fbatch;
    constexpr index_t W = kite::simd::width;
    const index_t d = base.d;
    const T* x = scan_row<T>(base, r0);
    vec acc[R][Q];
#pragma GCC unroll 8
    for (int r = 0; r < R; ++r)
#pragma GCC unroll 8
        for (int i = 0; i < Q; ++i) acc[r][i] = vec(0.f);
    index_t k = 0;
    for (; k + W <= d; k += W) {
        vec xv[R];
#pragma GCC unroll 8
        for (int r = 0; r < R; ++r) xv[r] = scan_load(x + r * d + k);
#pragma GCC unroll 8
        for (int i = 0; i < Q; ++i) {
            const vec qv = vec::load_unaligned(q[i] + k);
#pragma GCC unroll 8
            for (int r = 0; r < R; ++r) acc[r][i] = xsimd::fma(xv[r], qv, acc[r][i]);
        }
    }
    if (k < d) {  // masked tail: never reads past a row, so the last row is safe too
        vec xv[R];
#pragma GCC unroll 8
        for (int r = 0; r < R; ++r) xv[r] = scan_load_partial(x + r * d + k, d - k);
#pragma GCC unroll 8
        for (int i = 0; i < Q; ++i) {
            const vec qv = kite::simd::load_partial(q[i] + k, d - k);
#pragma GCC unroll 8
            for (int r = 0; r < R; ++r) acc[r][i] = xsimd::fma(xv[r], qv, acc[r][i]);
        }
    }
    // Keys for the whole tile first, the handler call (which clobbers vector registers) after.
    float keys[R][Q];  // [row][query]
    bool hit = false;
    const float* thr = h.thresholds;
#pragma GCC unroll 8
    for (int r = 0; r < R; ++r) {
        float xn = 0.f;
        if constexpr (L2) xn = base.norms[r0 + r];
#pragma GCC unroll 8
        for (int i = 0; i < Q; ++i) {
            const float dot = kite::simd::reduce_add(acc[r][i]);
            keys[r][i] = L2 ? xn - 2.0f * dot : dot;
            hit |= passes<L2>(keys[r][i], thr[j0 + i]);
        }
    }
    if (hit) [[unlikely]] {
        for (int r = 0; r < R; ++r)
            for (index_t i = 0; i < qvalid; ++i)
                if (passes<L2>(keys[r][i], thr[j0 + i])) h.add(j0 + i, r0 + r);
    }
}

/// One query, `width` rows at a time (16 on AVX-512): 16 independent FMA chains keep enough
/// loads in flight to stream the base at DRAM speed, and the row sums are gathered into one
/// vector so that norms, keys and the threshold test are one vector operation each.
/// (xsimd::haddp would fold them in fewer instructions, but GCC 12 warns inside its AVX-512
/// shuffles in every including translation unit; the scan is memory-bound either way.)
template <bool L2, class T>
KITE_FORCE_INLINE void scan_micro_one(const flat_base& base, index_t r0, const float* q, index_t j,
                                      const handler_ref& h) {
    using vec = kite::simd::fbatch;
    constexpr index_t W = kite::simd::width;
    const index_t d = base.d;
    const T* x = scan_row<T>(base, r0);
    vec acc[W];
#pragma GCC unroll 16
    for (index_t r = 0; r < W; ++r) acc[r] = vec(0.f);
    index_t k = 0;
    // float16 rows: software prefetch of the next tile of W rows (contiguous, W d 2 bytes),
    // spread over this tile's d / W steps, W * W * 2 / 64 lines per step. Measured at
    // n = 100000, d = 384 / 768, one thread: 2.7x / 1.2x faster than the hardware prefetchers
    // alone, which keep half as many bytes in flight per row stream as for float32 rows (for
    // float32 rows the same prefetch measured slower, so it is left out).
    constexpr bool pf = !std::is_same_v<T, float>;
    constexpr index_t lines = W * W * sizeof(T) / 64;
    std::uintptr_t ahead = reinterpret_cast<std::uintptr_t>(x) + W * d * sizeof(T);  // never dereferenced
    for (; k + W <= d; k += W) {
        const vec qv = vec::load_unaligned(q + k);
        if constexpr (pf) {
#pragma GCC unroll 16
            for (index_t l = 0; l < lines; ++l) __builtin_prefetch(reinterpret_cast<const void*>(ahead + 64 * l), 0, 3);
            ahead += 64 * lines;
        }
#pragma GCC unroll 16
        for (index_t r = 0; r < W; ++r) acc[r] = xsimd::fma(scan_load(x + r * d + k), qv, acc[r]);
    }
    if (k < d) {
        const vec qv = kite::simd::load_partial(q + k, d - k);
#pragma GCC unroll 16
        for (index_t r = 0; r < W; ++r) acc[r] = xsimd::fma(scan_load_partial(x + r * d + k, d - k), qv, acc[r]);
    }
    alignas(64) float sums[W];  // [row]
#pragma GCC unroll 16
    for (index_t r = 0; r < W; ++r) sums[r] = kite::simd::reduce_add(acc[r]);
    const vec dots = vec::load_aligned(sums);
    const vec keys = L2 ? xsimd::fnma(vec(2.0f), dots, vec::load_unaligned(base.norms + r0)) : dots;
    const float* thr = h.thresholds;
    const vec t(thr[j]);
    if (xsimd::any(L2 ? (keys <= t) : (keys >= t))) [[unlikely]] {
        alignas(64) float ks[W];
        keys.store_aligned(ks);
        for (index_t r = 0; r < W; ++r)
            if (passes<L2>(ks[r], thr[j])) h.add(j, r0 + r);
    }
}

template <bool L2, class T, int R, int Q>
void scan_rows(const flat_base& base, index_t b, index_t e, const float* const* q, index_t j0,
               index_t qvalid, const handler_ref& h) {
    index_t r = b;
    if constexpr (Q == 1)
        for (; r + kite::simd::width <= e; r += kite::simd::width) scan_micro_one<L2, T>(base, r, q[0], j0, h);
    for (; r + R <= e; r += R) scan_micro<L2, T, R, Q>(base, r, q, j0, qvalid, h);
    for (; r < e; ++r) scan_micro<L2, T, 1, Q>(base, r, q, j0, qvalid, h);
}

/// Zen tuning: one row against Q queries, the row read in order with A accumulators per query
/// (2 up to two queries, 1 from three on: enough independent FMA chains either way) and a
/// software prefetch 512 bytes ahead of the loads, which runs on into the next rows (the rows
/// are contiguous). Measured on a Zen 4 EPYC at n = 100000, d = 384, one query, one thread,
/// as fractions of the DRAM read rate (3 runs each): A = 2 with 512 bytes 0.87-0.96, A = 4
/// 0.69-0.79, A = 1 0.83-0.90; 256 / 384 / 768 / 1024 bytes ahead no better than 512.
/// Prefetch addresses past the base are never dereferenced (prefetch does not fault).
template <bool L2, class T, int Q>
KITE_FORCE_INLINE void scan_row_seq(const flat_base& base, index_t r, const float* const* q, index_t j0,
                                    index_t qvalid, const handler_ref& h) {
    using vec = kite::simd::fbatch;
    constexpr index_t W = kite::simd::width;
    constexpr int A = Q <= 2 ? 2 : 1;
    constexpr index_t step = A * W;
    constexpr index_t step_bytes = step * sizeof(T);
    constexpr index_t ahead = 512;
    const index_t d = base.d;
    const T* x = scan_row<T>(base, r);
    vec acc[Q][A];
#pragma GCC unroll 8
    for (int i = 0; i < Q; ++i)
#pragma GCC unroll 4
        for (int a = 0; a < A; ++a) acc[i][a] = vec(0.f);
    index_t k = 0;
    for (; k + step <= d; k += step) {
        const std::uintptr_t pf = reinterpret_cast<std::uintptr_t>(x + k) + ahead;
#pragma GCC unroll 4
        for (index_t l = 0; l < (step_bytes + 63) / 64; ++l)
            __builtin_prefetch(reinterpret_cast<const void*>(pf + 64 * l), 0, 3);
        vec xv[A];
#pragma GCC unroll 4
        for (int a = 0; a < A; ++a) xv[a] = scan_load(x + k + a * W);
#pragma GCC unroll 8
        for (int i = 0; i < Q; ++i)
#pragma GCC unroll 4
            for (int a = 0; a < A; ++a) acc[i][a] = xsimd::fma(xv[a], vec::load_unaligned(q[i] + k + a * W), acc[i][a]);
    }
    for (; k + W <= d; k += W) {
        const vec xv = scan_load(x + k);
#pragma GCC unroll 8
        for (int i = 0; i < Q; ++i) acc[i][0] = xsimd::fma(xv, vec::load_unaligned(q[i] + k), acc[i][0]);
    }
    if (k < d) {  // masked tail: never reads past the row
        const vec xv = scan_load_partial(x + k, d - k);
#pragma GCC unroll 8
        for (int i = 0; i < Q; ++i) acc[i][0] = xsimd::fma(xv, kite::simd::load_partial(q[i] + k, d - k), acc[i][0]);
    }
    float xn = 0.f;
    if constexpr (L2) xn = base.norms[r];
    const float* thr = h.thresholds;
#pragma GCC unroll 8
    for (int i = 0; i < Q; ++i) {
        vec s = acc[i][0];
#pragma GCC unroll 4
        for (int a = 1; a < A; ++a) s += acc[i][a];
        const float dot = kite::simd::reduce_add(s);
        const float key = L2 ? xn - 2.0f * dot : dot;
        if (static_cast<index_t>(i) < qvalid && passes<L2>(key, thr[j0 + i])) [[unlikely]]
            h.add(j0 + static_cast<index_t>(i), r);
    }
}

template <bool L2, class T, int Q>
void scan_rows_seq(const flat_base& base, index_t b, index_t e, const float* const* q, index_t j0, index_t qvalid,
                   const handler_ref& h) {
    for (index_t r = b; r < e; ++r) scan_row_seq<L2, T, Q>(base, r, q, j0, qvalid, h);
}

/// scan_block over rows stored as T (the float32 rows or their float16 copy). Base rows are
/// read from memory once per call and served to all the queries from cache.
template <bool L2, class T>
void scan_block_rows(const flat_base& base, index_t b, index_t e, const float* queries, index_t qstride,
                     index_t j_begin, index_t j_end, const handler_ref& h) {
    // A chunk of rows small enough to stay in L2 while every query group passes over it.
    const index_t chunk = std::max<index_t>(64, (index_t{256} << 10) / (base.d * sizeof(T) + 1));
    const bool zen = kite::cpu::active_tuning() == kite::cpu::tuning::zen;
    for (index_t c = b; c < e; c += chunk) {
        const index_t ce = std::min(e, c + chunk);
        for (index_t j0 = j_begin; j0 < j_end; j0 += scan_max_queries) {
            const index_t qn = std::min(scan_max_queries, j_end - j0);
            const float* q[scan_max_queries];
            for (index_t i = 0; i < scan_max_queries; ++i)
                q[i] = queries + (j0 + std::min(i, qn - 1)) * qstride;
            if (zen) {
                if (qn == 1) scan_rows_seq<L2, T, 1>(base, c, ce, q, j0, qn, h);
                else if (qn == 2) scan_rows_seq<L2, T, 2>(base, c, ce, q, j0, qn, h);
                else if (qn <= 4) scan_rows_seq<L2, T, 4>(base, c, ce, q, j0, qn, h);
                else scan_rows_seq<L2, T, 8>(base, c, ce, q, j0, qn, h);
            } else if (qn == 1) {
                scan_rows<L2, T, 8, 1>(base, c, ce, q, j0, qn, h);
            } else if (qn == 2) {
                scan_rows<L2, T, 6, 2>(base, c, ce, q, j0, qn, h);
            } else if (qn <= 4) {
                scan_rows<L2, T, 4, 4>(base, c, ce, q, j0, qn, h);
            } else {
                scan_rows<L2, T, 3, 8>(base, c, ce, q, j0, qn, h);
            }
        }
    }
}

/// Offers rows [b, e) of the base to queries [j_begin, j_end) (rows of `queries`, `qstride`
/// floats apart), reading the float16 copy when the base carries one.
template <bool L2>
void scan_block(const flat_base& base, index_t b, index_t e, const float* queries, index_t qstride,
                index_t j_begin, index_t j_end, const handler_ref& h) {
    if (base.half)
        scan_block_rows<L2, std::uint16_t>(base, b, e, queries, qstride, j_begin, j_end, h);
    else
        scan_block_rows<L2, float>(base, b, e, queries, qstride, j_begin, j_end, h);
}

#else  // no SIMD: the obvious loop (kite's supported targets all have xsimd support)

template <bool L2>
void scan_block(const flat_base& base, index_t b, index_t e, const float* queries, index_t qstride,
                index_t j_begin, index_t j_end, const handler_ref& h) {
    const float* thr = h.thresholds;
    for (index_t r = b; r < e; ++r)
        for (index_t j = j_begin; j < j_end; ++j) {
            const float dot = kite::simd::dot(base.row(r), queries + j * qstride, base.d);
            const float key = L2 ? base.norms[r] - 2.0f * dot : dot;
            if (passes<L2>(key, thr[j])) h.add(j, r);
        }
}

#endif

}  // namespace kite::retrieval::detail
