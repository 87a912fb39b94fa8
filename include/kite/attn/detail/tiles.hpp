#pragma once
/// @file kite/attn/detail/tiles.hpp
/// Register-blocked tile kernels of flash attention (xsimd batches; AVX-512 on the machines
/// kite is measured on) and a fast base-2 exponential.
///
/// The score tile is kept transposed, S^T: [key][query], so that
///   - Q is packed once per query tile (Q^T: [dim][Bq], pre-scaled by scale * log2(e)) and every
///     key row is read straight from the cache through a row pointer (no K packing, and paged
///     blocks cost nothing extra);
///   - the online softmax runs down the key axis with the queries in the vector lanes, so row
///     maxima and sums are plain vector max/add, never horizontal reductions;
///   - P·V broadcasts P^T[key][query] and streams V rows, again without transposing anything.

#include <cstddef>
#include <limits>

#include "kite/core/config.hpp"
#include "kite/core/diagnostics.hpp"
#include "kite/core/simd.hpp"

#if KITE_SIMD_ENABLED

KITE_GCC12_AVX512_UNINIT_BEGIN  // see kite/core/diagnostics.hpp

namespace kite::attn::detail {

using simd::fbatch;
inline constexpr index_t lanes = simd::width;

/// Hints that `bytes` bytes at `p` will be read soon (every cache line they touch), into L2: a
/// decode step reads more K/V than L1 holds.
KITE_FORCE_INLINE void prefetch(const void* p, std::size_t bytes) noexcept {
#if defined(__GNUC__)
    const char* c = static_cast<const char*>(p);
    for (std::size_t o = 0; o < bytes; o += 64) __builtin_prefetch(c + o, 0, 2);
    if (bytes) __builtin_prefetch(c + bytes - 1, 0, 2);  // a row that straddles one more line
#else
    (void)p;
    (void)bytes;
#endif
}

/// 2^x for x <= 0 (values above 0 are clamped at 127 and never occur here). Returns exactly 0
/// for x <= -127, including -inf, so masked scores vanish without NaN. Max relative error
/// about 2e-7 (degree-7 Taylor polynomial of 2^f on [-0.5, 0.5]).
KITE_FORCE_INLINE fbatch exp2_nonpos(fbatch x) noexcept {
    x = xsimd::min(xsimd::max(x, fbatch(-127.0f)), fbatch(127.0f));
    const fbatch n = xsimd::nearbyint(x);
    const fbatch f = x - n;  // [-0.5, 0.5]
    fbatch p(1.5252733804059841e-05f);             // ln2^7 / 7!
    p = xsimd::fma(p, f, fbatch(1.5403530393381606e-04f));  // ln2^6 / 6!
    p = xsimd::fma(p, f, fbatch(1.3333558146428443e-03f));  // ln2^5 / 5!
    p = xsimd::fma(p, f, fbatch(9.6181291076284772e-03f));  // ln2^4 / 4!
    p = xsimd::fma(p, f, fbatch(5.5504108664821580e-02f));  // ln2^3 / 3!
    p = xsimd::fma(p, f, fbatch(2.4022650695910071e-01f));  // ln2^2 / 2!
    p = xsimd::fma(p, f, fbatch(6.9314718055994531e-01f));  // ln2
    p = xsimd::fma(p, f, fbatch(1.0f));
    // 2^n through the exponent field; n = -127 gives the bit pattern of +0.
    using ibatch = xsimd::batch<std::int32_t>;
    const ibatch e = (xsimd::to_int(n) + ibatch(127)) << 23;
    return p * xsimd::bitwise_cast<fbatch>(e);
}

/// S^T[r][0, NQ*lanes) = sum_k K[r][k] * Q^T[k][...] for MR keys. krow: MR key rows;
/// qt: [d][bq] packed, scaled queries; st: MR rows of stride bq.
template <int MR, int NQ>
inline void qk_block(const float* const* krow, const float* KITE_RESTRICT qt, index_t bq, index_t d,
                     float* KITE_RESTRICT st) noexcept {
    fbatch acc[MR][NQ];
    const float* kp[MR];
#pragma GCC unroll 16
    for (int r = 0; r < MR; ++r) {
        kp[r] = krow[r];
#pragma GCC unroll 16
        for (int v = 0; v < NQ; ++v) acc[r][v] = fbatch(0.0f);
    }
    for (index_t k = 0; k < d; ++k) {
        const float* qrow = qt + k * bq;
        fbatch qv[NQ];
#pragma GCC unroll 16
        for (int v = 0; v < NQ; ++v) qv[v] = fbatch::load_aligned(qrow + v * lanes);
#pragma GCC unroll 16
        for (int r = 0; r < MR; ++r) {
            const fbatch kb(kp[r][k]);
#pragma GCC unroll 16
            for (int v = 0; v < NQ; ++v) acc[r][v] = xsimd::fma(kb, qv[v], acc[r][v]);
        }
    }
#pragma GCC unroll 16
    for (int r = 0; r < MR; ++r)
#pragma GCC unroll 16
        for (int v = 0; v < NQ; ++v) acc[r][v].store_aligned(st + r * bq + v * lanes);
}

/// S^T rows [0, nk) for all NQ*lanes query columns; keys in blocks of MR with a tail.
template <int NQ>
inline void qk_tile(const float* const* krow, index_t nk, const float* qt, index_t bq, index_t d,
                    float* st) noexcept {
    constexpr int MR = NQ >= 4 ? 24 / NQ : (NQ == 1 ? 12 : 8);
    index_t j = 0;
    for (; j + MR <= nk; j += MR) qk_block<MR, NQ>(krow + j, qt, bq, d, st + j * bq);
    const index_t rest = nk - j;
    if (rest == 0) return;
    krow += j;
    st += j * bq;
    // Tails run the same kernel with fewer rows (at most MR - 1 of them).
    switch (rest) {
        case 1: qk_block<1, NQ>(krow, qt, bq, d, st); break;
        case 2: qk_block<2, NQ>(krow, qt, bq, d, st); break;
        case 3: qk_block<3, NQ>(krow, qt, bq, d, st); break;
        case 4: if constexpr (MR > 4) qk_block<4, NQ>(krow, qt, bq, d, st); break;
        case 5: if constexpr (MR > 5) qk_block<5, NQ>(krow, qt, bq, d, st); break;
        case 6: if constexpr (MR > 6) qk_block<6, NQ>(krow, qt, bq, d, st); break;
        case 7: if constexpr (MR > 7) qk_block<7, NQ>(krow, qt, bq, d, st); break;
        default:
            // MR > 8 (one query vector): split the remainder into blocks of 4 and the rest.
            if constexpr (MR > 8) {
                index_t r = 0;
                for (; r + 4 <= rest; r += 4) qk_block<4, NQ>(krow + r, qt, bq, d, st + r * bq);
                for (; r < rest; ++r) qk_block<1, NQ>(krow + r, qt, bq, d, st + r * bq);
            }
            break;
    }
}

/// O[r][c0, c0 + NV*lanes) = alpha[r] * O[r][...] + sum_j P^T[j][r] * V[j][c0 ...] for MR query
/// rows. pt: P^T at the first row's column, row stride bq; vrow: nk value rows; o: first row,
/// stride ostride. Tail: the last vector of V holds only `tail` elements (the row ends there).
template <int MR, int NV, bool Tail>
inline void pv_block(const float* KITE_RESTRICT pt, index_t bq, const float* const* vrow, index_t nk,
                     index_t c0, index_t tail, float* KITE_RESTRICT o, index_t ostride,
                     const float* KITE_RESTRICT alpha) noexcept {
    fbatch acc[MR][NV];
#pragma GCC unroll 16
    for (int r = 0; r < MR; ++r) {
        const fbatch a(alpha[r]);
#pragma GCC unroll 16
        for (int v = 0; v < NV; ++v) acc[r][v] = fbatch::load_aligned(o + r * ostride + v * lanes) * a;
    }
    for (index_t j = 0; j < nk; ++j) {
        const float* vr = vrow[j] + c0;
        fbatch vv[NV];
#pragma GCC unroll 16
        for (int v = 0; v < NV; ++v) {
            if (Tail && v == NV - 1) {
                vv[v] = simd::load_partial(vr + v * lanes, tail);
            } else {
                vv[v] = fbatch::load_unaligned(vr + v * lanes);
            }
        }
        const float* pj = pt + j * bq;
#pragma GCC unroll 16
        for (int r = 0; r < MR; ++r) {
            const fbatch p(pj[r]);
#pragma GCC unroll 16
            for (int v = 0; v < NV; ++v) acc[r][v] = xsimd::fma(p, vv[v], acc[r][v]);
        }
    }
#pragma GCC unroll 16
    for (int r = 0; r < MR; ++r)
#pragma GCC unroll 16
        for (int v = 0; v < NV; ++v) acc[r][v].store_aligned(o + r * ostride + v * lanes);
}

/// pv_block for MR rows and a runtime number nv (1..4) of vectors.
template <int MR, bool Tail>
inline void pv_rows(index_t nv, const float* pt, index_t bq, const float* const* vrow, index_t nk, index_t c0,
                    index_t tail, float* o, index_t ostride, const float* alpha) noexcept {
    switch (nv) {
        case 1: pv_block<MR, 1, Tail>(pt, bq, vrow, nk, c0, tail, o, ostride, alpha); break;
        case 2: pv_block<MR, 2, Tail>(pt, bq, vrow, nk, c0, tail, o, ostride, alpha); break;
        case 3: pv_block<MR, 3, Tail>(pt, bq, vrow, nk, c0, tail, o, ostride, alpha); break;
        default: pv_block<MR, 4, Tail>(pt, bq, vrow, nk, c0, tail, o, ostride, alpha); break;
    }
}

/// Rows [0, nrows) (a multiple of 4) of O += P^T V over the whole head dimension d.
/// Blocks of 6 rows x 4 vectors keep 24 accumulators in registers; 4- and 2-row tails.
template <bool Tail>
inline void pv_tile(const float* pt, index_t bq, const float* const* vrow, index_t nk, index_t d,
                    index_t nrows, float* o, index_t ostride, const float* alpha) noexcept {
    const index_t nvec = (d + lanes - 1) / lanes;
    const index_t tail = d - (nvec - 1) * lanes;  // elements in the last vector, 1..lanes
    for (index_t c = 0; c < nvec; c += 4) {
        const index_t nv = nvec - c < 4 ? nvec - c : 4;
        // The tail variant only where this chunk holds the row's last, partial vector.
        const bool tail_here = Tail && c + nv == nvec;
        const index_t c0 = c * lanes;
        auto rows = [&]<int MR>(index_t r) {
            if (tail_here) {
                pv_rows<MR, true>(nv, pt + r, bq, vrow, nk, c0, tail, o + r * ostride + c0, ostride, alpha + r);
            } else {
                pv_rows<MR, false>(nv, pt + r, bq, vrow, nk, c0, tail, o + r * ostride + c0, ostride, alpha + r);
            }
        };
        index_t r = 0;
        for (; r + 6 <= nrows; r += 6) rows.template operator()<6>(r);
        if (nrows - r == 4) rows.template operator()<4>(r);
        if (nrows - r == 2) rows.template operator()<2>(r);
    }
}

/// Online softmax over one score tile, column by column (queries in lanes).
/// st: S^T [nk][bq] in log2 units; rewritten with P = 2^(S - m_new). m, l: running max and sum
/// per query; alpha receives 2^(m_old - m_new) for rescaling O. Keys are at positions
/// j0 + j, query column i at qpos0 + i (qpos0 may be negative: bidirectional q_len > kv_len). Causal: keys past a query's position are masked.
/// ALiBi: slope2 * (key_pos - query_pos) is added (slope2 = slope * log2(e)).
template <int NQ>
inline void softmax_tile(float* KITE_RESTRICT st, index_t bq, index_t nk, float* KITE_RESTRICT m,
                         float* KITE_RESTRICT l, float* KITE_RESTRICT alpha, bool causal_cut, bool alibi,
                         float slope2, index_t j0, float qpos0) noexcept {
    alignas(64) float iota_a[lanes];
    for (index_t i = 0; i < lanes; ++i) iota_a[i] = static_cast<float>(i);
    const fbatch iota = fbatch::load_aligned(iota_a);
    const fbatch ninf(-std::numeric_limits<float>::infinity());
    for (int v = 0; v < NQ; ++v) {
        // Positions as floats: exact below 2^24 tokens.
        const fbatch qpos = fbatch(qpos0 + static_cast<float>(v * lanes)) + iota;
        const fbatch m_old = fbatch::load_aligned(m + v * lanes);
        fbatch mx = m_old;
        float* col = st + v * lanes;
        if (causal_cut || alibi) {
            const fbatch s2(slope2);
            for (index_t j = 0; j < nk; ++j) {
                const fbatch kpos(static_cast<float>(j0 + j));
                fbatch s = fbatch::load_aligned(col + j * bq);
                if (alibi) s = xsimd::fma(s2, kpos - qpos, s);
                if (causal_cut) s = xsimd::select(kpos > qpos, ninf, s);
                s.store_aligned(col + j * bq);
                mx = xsimd::max(mx, s);
            }
        } else {
            for (index_t j = 0; j < nk; ++j) mx = xsimd::max(mx, fbatch::load_aligned(col + j * bq));
        }
        fbatch sum0(0.0f), sum1(0.0f);
        index_t j = 0;
        for (; j + 2 <= nk; j += 2) {  // two chains hide the exp latency
            const fbatch p0 = exp2_nonpos(fbatch::load_aligned(col + j * bq) - mx);
            const fbatch p1 = exp2_nonpos(fbatch::load_aligned(col + (j + 1) * bq) - mx);
            p0.store_aligned(col + j * bq);
            p1.store_aligned(col + (j + 1) * bq);
            sum0 += p0;
            sum1 += p1;
        }
        if (j < nk) {
            const fbatch p0 = exp2_nonpos(fbatch::load_aligned(col + j * bq) - mx);
            p0.store_aligned(col + j * bq);
            sum0 += p0;
        }
        const fbatch a = exp2_nonpos(m_old - mx);
        a.store_aligned(alpha + v * lanes);
        (fbatch::load_aligned(l + v * lanes) * a + (sum0 + sum1)).store_aligned(l + v * lanes);
        mx.store_aligned(m + v * lanes);
    }
}

}  // namespace kite::attn::detail

KITE_GCC12_AVX512_UNINIT_END

#endif  // KITE_SIMD_ENABLED
