#pragma once
/// @file kite/retrieval/detail/flat_gemm.hpp
/// The GEMM kernel of the flat index, for large query batches: a register-blocked
/// matrix-multiply micro-kernel (MR base rows x V vectors of queries, accumulators in
/// registers) with the top-k selection fused into its epilogue, so distance tiles never go to
/// memory.
///
/// Layout: SIMD lanes run over queries. Queries are packed once per search into tiles of
/// QT = V * width queries, each tile [d][QT] (query-minor), so one k-step loads V vectors; base
/// rows are read in place (row-major) and broadcast one float at a time, so the base is never
/// copied. Cache blocking: a chunk of MC base rows (about 512 KiB) stays in L2 while every query
/// tile passes over it; a tile's [d][QT] panel streams from L1/L2.
///
/// The epilogue turns the MR x QT dot products into keys (|x|^2 - 2 x.y or x.y), compares them
/// with the queries' current thresholds in SIMD, and calls the handler only for lanes that can
/// enter (after the first few thousand rows, almost never).

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <vector>

#include "kite/core/amx.hpp"
#include "kite/core/buffer.hpp"
#include "kite/core/config.hpp"
#include "kite/core/cpu.hpp"
#include "kite/core/simd.hpp"
#include "kite/retrieval/detail/flat_common.hpp"

#if defined(__GNUC__) || defined(__clang__)
#define KITE_PREFETCH(p, locality) __builtin_prefetch((p), 0, (locality))
#else
#define KITE_PREFETCH(p, locality) ((void)0)
#endif

namespace kite::retrieval::detail {

/// Micro-tile shapes (base rows x query vectors), measured on AVX-512 (32 registers): a large
/// batch takes 8 rows x 3 vectors (24 accumulators, 11 loads per 24 FMAs); a small batch, which
/// streams the base from DRAM once, takes 14 rows x 1 vector so that no lane is idle at 16
/// queries. With 16 registers (AVX2, NEON) the tiles shrink to fit.
#if KITE_SIMD_ENABLED
inline constexpr bool gemm_wide_registers = kite::simd::width >= 16;
inline constexpr int gemm_large_mr = gemm_wide_registers ? 8 : 4;
inline constexpr int gemm_large_v = 3;
inline constexpr int gemm_small_mr = gemm_wide_registers ? 14 : 12;
inline constexpr int gemm_small_v = 1;
/// Queries per packed tile for a batch of nq queries.
inline index_t gemm_tile_for(index_t nq) noexcept {
    return static_cast<index_t>(nq <= 2 * kite::simd::width ? gemm_small_v : gemm_large_v) *
           kite::simd::width;
}
#else
inline index_t gemm_tile_for(index_t) noexcept { return 1; }
#endif

/// Floats needed to pack `nq` queries of dimension `d` in tiles of `tile`.
inline index_t packed_queries_size(index_t nq, index_t d, index_t tile) noexcept {
    return (nq + tile - 1) / tile * tile * d;
}

/// Packs queries [nq][d] (rows `stride` floats apart) into tiles [tile][d][QT]; the missing
/// queries of the last tile are zero (their thresholds are closed, so they never count).
inline void pack_queries(const float* q, index_t nq, index_t d, index_t stride, index_t QT,
                         float* out) noexcept {
    const index_t tiles = (nq + QT - 1) / QT;
    for (index_t t = 0; t < tiles; ++t) {
        float* o = out + t * d * QT;  // [d][QT]
        const index_t qn = std::min(QT, nq - t * QT);
        if (qn < QT) std::memset(o, 0, d * QT * sizeof(float));
        for (index_t j = 0; j < qn; ++j) {
            const float* y = q + (t * QT + j) * stride;
            for (index_t k = 0; k < d; ++k) o[k * QT + j] = y[k];
        }
    }
}

/// The bfloat16 form of pack_queries: tiles [tile][dp][QT] of 32-bit words, each a pair of
/// components (bf16(y[2i]) low, bf16(y[2i + 1]) high; a zero after an odd last one), which is
/// the operand layout of vdpbf16ps; dp = bf16_pairs(d) (0: that) or more, the rest zero (the AMX
/// kernel's whole tile steps, pack_queries_amx). Needs no more room than pack_queries at dp = 0.
inline void pack_queries_bf16(const float* q, index_t nq, index_t d, index_t stride, index_t QT,
                              std::uint32_t* out, index_t dp = 0) noexcept {
    const index_t tiles = (nq + QT - 1) / QT;
    const index_t d2 = bf16_pairs(d);
    if (dp == 0) dp = d2;
    std::vector<std::uint32_t> pairs(d2);
    for (index_t t = 0; t < tiles; ++t) {
        std::uint32_t* o = out + t * dp * QT;  // [dp][QT]
        const index_t qn = std::min(QT, nq - t * QT);
        if (qn < QT || dp > d2) std::memset(o, 0, dp * QT * sizeof(std::uint32_t));
        for (index_t j = 0; j < qn; ++j) {
            to_bf16_pairs(q + (t * QT + j) * stride, d, pairs.data());
            for (index_t k = 0; k < d2; ++k) o[k * QT + j] = pairs[k];
        }
    }
}

/// The GEMM's AMX kernel (gemm_block_amx): compiled where the bfloat16 conversions are
/// (AVX512_BF16) on x86-64 with GNU inline assembly, used at run time only where
/// kite::cpu::amx_active() says the CPU and the OS allow it.
#if defined(__AVX512BF16__) && defined(__AVX512F__) && defined(__AVX512BW__) && KITE_AMX_ASM
#define KITE_FLAT_AMX 1
#else
#define KITE_FLAT_AMX 0
#endif

/// Queries per tile of the AMX kernel: the GEMM's large tile (three tiles of 16 queries).
inline constexpr index_t amx_tile = 48;

/// Words (bfloat16 pairs) per row of the AMX kernel's operands: bf16_pairs(d) rounded up to a
/// whole tile step of 16 pairs (32 components), the rest zero.
inline index_t amx_pairs(index_t d) noexcept { return (bf16_pairs(d) + 15) / 16 * 16; }

/// Words needed by pack_queries_amx for `nq` queries of dimension `d`.
inline index_t amx_packed_size(index_t nq, index_t d) noexcept {
    return (nq + amx_tile - 1) / amx_tile * amx_tile * amx_pairs(d);
}

/// pack_queries_bf16 for the AMX kernel: tiles [tile][amx_pairs(d)][amx_tile] of pairs, the
/// padding pairs and the missing queries of the last tile zero.
inline void pack_queries_amx(const float* q, index_t nq, index_t d, index_t stride, std::uint32_t* out) noexcept {
    pack_queries_bf16(q, nq, d, stride, amx_tile, out, amx_pairs(d));
}

#if defined(__AVX512BF16__) && defined(__AVX512F__) && defined(__AVX512BW__)
/// One row x [d] as bfloat16 pairs (bf16_pairs(d) words, the layout of to_bf16_pairs): in memory
/// that is the bfloat16 values in order, a zero after an odd last one. vcvtne2ps2bf16 rounds to
/// nearest even and reads subnormals as zero, as to_bf16_ftz does for every finite x below the
/// largest bfloat16 (the GEMM only converts when keys stay far below the float range).
KITE_FORCE_INLINE void row_to_bf16_pairs(const float* x, index_t d, std::uint32_t* out) noexcept {
    auto* o = reinterpret_cast<__m512i*>(out);
    index_t k = 0;
    for (; k + 32 <= d; k += 32)
        _mm512_storeu_si512(o++, (__m512i)_mm512_cvtne2ps_pbh(_mm512_loadu_ps(x + k + 16), _mm512_loadu_ps(x + k)));
    if (k < d) {
        const index_t left = d - k;  // 1..31 values, then a zero pad to whole words
        const __mmask16 lo = left >= 16 ? __mmask16(0xffff) : static_cast<__mmask16>((1u << left) - 1u);
        const __mmask16 hi = left > 16 ? static_cast<__mmask16>((1u << (left - 16)) - 1u) : __mmask16(0);
        const __m512i v = (__m512i)_mm512_cvtne2ps_pbh(_mm512_maskz_loadu_ps(hi, x + k + 16), _mm512_maskz_loadu_ps(lo, x + k));
        const index_t words = (left + 1) / 2;
        _mm512_mask_storeu_epi32(o, static_cast<__mmask16>((1u << words) - 1u), v);
    }
}
#endif

#if KITE_SIMD_ENABLED

/// MR rows starting at `r0` against one packed query tile `qp` ([d][QT]) whose first query is
/// `j0`. Every row's accumulator sees the same sequence of FMAs whatever MR is, so equal rows
/// get bit-equal keys and ties are broken by id consistently.
///
/// BF: the bfloat16 form (flat_options::bf16_gemm): rows from base.bf16 and a tile packed by
/// pack_queries_bf16, one vdpbf16ps per row and query vector for every two components -- twice
/// the float32 kernel's multiply-adds per instruction (on a Zen 4 EPYC, measured 235 against
/// 116 GFLOP/s of peak and 2.0x the kernel's speed).
template <bool L2, int MR, int V, bool BF = false, int PF = 3>
KITE_FORCE_INLINE void gemm_micro(const flat_base& base, index_t r0, const float* KITE_RESTRICT qp,
                                  index_t j0, index_t nq, const handler_ref& h) {
    using vec = kite::simd::fbatch;
    constexpr index_t W = kite::simd::width;
    constexpr index_t QT = static_cast<index_t>(V) * W;
    const index_t d = base.d;
    vec acc[MR][V];
#pragma GCC unroll 16
    for (int r = 0; r < MR; ++r)
#pragma GCC unroll 4
        for (int v = 0; v < V; ++v) acc[r][v] = vec(0.f);
#if defined(__AVX512BF16__) && defined(__AVX512F__)
    if constexpr (BF) {
        static_assert(W == 16, "the bfloat16 kernel is written for AVX-512");
        const index_t d2 = bf16_pairs(d);
        // base.bf16 holds rows from base.bf16_row0 on (a chunk converted by gemm_block_tiles,
        // or the whole stored copy from row 0).
        const std::uint32_t* KITE_RESTRICT x = base.bf16 + (r0 - base.bf16_row0) * d2;
        const std::uint32_t* KITE_RESTRICT qw = reinterpret_cast<const std::uint32_t*>(qp);
        const std::uint32_t* next = x + 2 * MR * d2;
        __m512 a[MR][V];
#pragma GCC unroll 16
        for (int r = 0; r < MR; ++r)
#pragma GCC unroll 4
            for (int v = 0; v < V; ++v) a[r][v] = _mm512_setzero_ps();
        for (index_t k = 0; k < d2; ++k) {
            if (k % 16 == 0)
#pragma GCC unroll 16
                for (int r = 0; r < MR; ++r) KITE_PREFETCH(next + r * d2 + k, PF);
            __m512i qv[V];
#pragma GCC unroll 4
            for (int v = 0; v < V; ++v) qv[v] = _mm512_load_si512(qw + k * QT + v * W);
#pragma GCC unroll 16
            for (int r = 0; r < MR; ++r) {
                const __m512i xb = _mm512_set1_epi32(static_cast<int>(x[r * d2 + k]));
#pragma GCC unroll 4
                for (int v = 0; v < V; ++v) a[r][v] = _mm512_dpbf16_ps(a[r][v], (__m512bh)xb, (__m512bh)qv[v]);
            }
        }
#pragma GCC unroll 16
        for (int r = 0; r < MR; ++r)
#pragma GCC unroll 4
            for (int v = 0; v < V; ++v) acc[r][v] = vec(a[r][v]);
    } else
#endif
    {
        static_assert(!BF || kite::simd::has_bf16_dot, "the bfloat16 kernel needs AVX512_BF16");
        const float* KITE_RESTRICT x = base.row(r0);
        // One k-step: V query vectors, MR broadcasts of base elements, MR * V FMAs. (Written out
        // twice below rather than as a lambda: a lambda capturing the accumulators by reference
        // made GCC keep them in memory, at half the speed.)
        // The rows two micro-panels ahead are fetched a cache line per row every 16 steps, so a
        // small batch (one pass over the base, straight from DRAM) does not stall on MR
        // interleaved streams.
        const float* next = x + 2 * MR * d;
        index_t k = 0;
        for (; k + 16 <= d; k += 16) {
#pragma GCC unroll 16
            for (int r = 0; r < MR; ++r) KITE_PREFETCH(next + r * d + k, PF);
#pragma GCC unroll 4
            for (index_t kk = k; kk < k + 16; ++kk) {
                vec qv[V];
#pragma GCC unroll 4
                for (int v = 0; v < V; ++v) qv[v] = vec::load_aligned(qp + kk * QT + v * W);
#pragma GCC unroll 16
                for (int r = 0; r < MR; ++r) {
                    const vec xb(x[r * d + kk]);
#pragma GCC unroll 4
                    for (int v = 0; v < V; ++v) acc[r][v] = xsimd::fma(xb, qv[v], acc[r][v]);
                }
            }
        }
        for (; k < d; ++k) {
            vec qv[V];
#pragma GCC unroll 4
            for (int v = 0; v < V; ++v) qv[v] = vec::load_aligned(qp + k * QT + v * W);
#pragma GCC unroll 16
            for (int r = 0; r < MR; ++r) {
                const vec xb(x[r * d + k]);
#pragma GCC unroll 4
                for (int v = 0; v < V; ++v) acc[r][v] = xsimd::fma(xb, qv[v], acc[r][v]);
            }
        }
    }
    // Epilogue: keys and the threshold test for the whole tile first; the handler (a call,
    // which clobbers every vector register) only after all accumulators are dead, so that the
    // accumulators never have to live in memory.
    const float* thr = h.thresholds + j0;
    vec t[V];
#pragma GCC unroll 4
    for (int v = 0; v < V; ++v) t[v] = vec::load_aligned(thr + v * W);
    bool hit = false;
#pragma GCC unroll 16
    for (int r = 0; r < MR; ++r) {
        if constexpr (L2) {
            const vec xn(base.norms[r0 + r]);
#pragma GCC unroll 4
            for (int v = 0; v < V; ++v) acc[r][v] = xsimd::fnma(vec(2.0f), acc[r][v], xn);
        }
#pragma GCC unroll 4
        for (int v = 0; v < V; ++v) hit |= xsimd::any(L2 ? (acc[r][v] <= t[v]) : (acc[r][v] >= t[v]));
    }
    if (hit) [[unlikely]] {
        alignas(64) float keys[MR][V][W];  // [row][query vector][lane]
#pragma GCC unroll 16
        for (int r = 0; r < MR; ++r)
#pragma GCC unroll 4
            for (int v = 0; v < V; ++v) acc[r][v].store_aligned(keys[r][v]);
        for (int r = 0; r < MR; ++r)
            for (int v = 0; v < V; ++v)
                for (index_t l = 0; l < W; ++l) {
                    const index_t jl = static_cast<index_t>(v) * W + l;
                    // thresholds move as results enter, so each lane is tested again
                    if (j0 + jl < nq && passes<L2>(keys[r][v][l], thr[jl])) h.add(j0 + jl, r0 + r);
                }
    }
}

/// Offers rows [b, e) to the query tiles [t_begin, t_end) of `packed`, blocked for the caches.
template <bool L2, int MR, int V, bool BF, int PF>
void gemm_block_tiles(const flat_base& base, index_t b, index_t e, const float* packed, index_t nq,
                      index_t t_begin, index_t t_end, const handler_ref& h) {
    constexpr index_t QT = static_cast<index_t>(V) * kite::simd::width;
    // Words (floats or bfloat16 pairs) per row and per query of a tile.
    const index_t dw = BF ? bf16_pairs(base.d) : base.d;
    // Rows per L2-resident chunk: about 512 KiB, a multiple of MR.
    const index_t mc = std::max<index_t>(MR, (index_t{512} << 10) / (dw * 4) / MR * MR);
    // Without a stored bfloat16 copy (base.bf16_convert), each chunk is converted here, once for
    // all the query tiles that pass over it.
    kite::aligned_buffer<std::uint32_t> chunk_bf16;
    flat_base cb = base;
    for (index_t c = b; c < e; c += mc) {
        const index_t ce = std::min(e, c + mc);
        if constexpr (BF) {
            if (!base.bf16) {
                chunk_bf16.resize((ce - c) * dw, kite::uninitialized);
#if defined(__AVX512BF16__) && defined(__AVX512F__) && defined(__AVX512BW__)
                for (index_t r = c; r < ce; ++r) row_to_bf16_pairs(base.row(r), base.d, chunk_bf16.data() + (r - c) * dw);
#endif
                cb.bf16 = chunk_bf16.data();
                cb.bf16_row0 = c;
            }
        }
        for (index_t t = t_begin; t < t_end; ++t) {
            const float* qp = packed + t * dw * QT;
            const index_t j0 = t * QT;
            index_t r = c;
            for (; r + MR <= ce; r += MR) gemm_micro<L2, MR, V, BF, PF>(cb, r, qp, j0, nq, h);
            for (; r < ce; ++r) gemm_micro<L2, 1, V, BF, PF>(cb, r, qp, j0, nq, h);
        }
    }
}

#if KITE_FLAT_AMX
/// Large batches on AMX tiles (base.amx; flat_search.hpp's base_for decides): the same bfloat16
/// pre-filter as the vdpbf16ps kernel (keys from bfloat16 rows and queries, margins widened by
/// their rounding, exact scores from the float32 rows, so the answers are bit-identical to the
/// float32 kernel's), at the tile unit's rate: one tdpbf16ps does 16 x 16 x 32 multiply-adds.
/// Each L2-resident chunk of rows is converted once into [rows][amx_pairs(d)] words (zero
/// padding to whole tiles of 16 pairs and 16 rows) and multiplied by every query tile of 48
/// (pack_queries_amx): per 16 rows, three accumulator tiles (one per 16 queries), one tile of
/// rows and three of queries per step of 32 components; then keys and thresholds as in
/// gemm_micro. tdpbf16ps, like vdpbf16ps, reads bfloat16 subnormals as zero, flushes subnormal
/// results and rounds each of its d additions once (handlers' margins cover both).
///
/// The tile instructions: kite/core/amx.hpp.
template <bool L2>
void gemm_block_amx(const flat_base& base, index_t b, index_t e, const float* packed_f, index_t nq,
                    index_t t_begin, index_t t_end, const handler_ref& h) {
    constexpr index_t QT = amx_tile, M = 16;
    const index_t d = base.d, d2 = bf16_pairs(d), dp = amx_pairs(d);
    const auto* packed = reinterpret_cast<const std::uint32_t*>(packed_f);
    // Rows per chunk: about 512 KiB, whole tiles of 16.
    const index_t mc = std::max<index_t>(M, (index_t{512} << 10) / (dp * 4) / M * M);
    kite::aligned_buffer<std::uint32_t> chunk(std::min<index_t>(mc, (e - b + M - 1) / M * M) * dp, kite::uninitialized);
    kite::cpu::amx_config cfg;
    for (int i = 0; i < 7; ++i) cfg.set(i, 16, 64);
    cfg.load();
    alignas(64) float keys[M][QT];
    const __m512 two = _mm512_set1_ps(2.0f);
    for (index_t c = b; c < e; c += mc) {
        const index_t ce = std::min(e, c + mc), cp = (ce - c + M - 1) / M * M;
        for (index_t r = c; r < ce; ++r) {
            std::uint32_t* o = chunk.data() + (r - c) * dp;
            row_to_bf16_pairs(base.row(r), d, o);
            std::fill(o + d2, o + dp, 0u);
        }
        std::fill(chunk.data() + (ce - c) * dp, chunk.data() + cp * dp, 0u);
        for (index_t t = t_begin; t < t_end; ++t) {
            const std::uint32_t* qp = packed + t * dp * QT;
            const index_t j0 = t * QT;
            const float* thr = h.thresholds + j0;
            for (index_t r = c; r < ce; r += M) {
                KITE_AMX_ZERO(0);
                KITE_AMX_ZERO(1);
                KITE_AMX_ZERO(2);
                const std::uint32_t* a = chunk.data() + (r - c) * dp;
                for (index_t kb = 0; kb < dp; kb += 16) {
                    const std::uint32_t* q = qp + kb * QT;
                    KITE_AMX_LOAD(3, a + kb, dp * 4);
                    KITE_AMX_LOAD(4, q, QT * 4);
                    KITE_AMX_LOAD(5, q + 16, QT * 4);
                    KITE_AMX_LOAD(6, q + 32, QT * 4);
                    KITE_AMX_DPBF16PS(0, 3, 4);
                    KITE_AMX_DPBF16PS(1, 3, 5);
                    KITE_AMX_DPBF16PS(2, 3, 6);
                }
                KITE_AMX_STORE(0, &keys[0][0], QT * 4);
                KITE_AMX_STORE(1, &keys[0][16], QT * 4);
                KITE_AMX_STORE(2, &keys[0][32], QT * 4);
                // Keys and the threshold test (as gemm_micro's epilogue), rows past the chunk's end
                // (zero padding) left out.
                const index_t mr = std::min(M, ce - r);
                const __m512 t0 = _mm512_load_ps(thr), t1 = _mm512_load_ps(thr + 16), t2 = _mm512_load_ps(thr + 32);
                __mmask16 hit = 0;
                for (index_t i = 0; i < mr; ++i) {
                    __m512 k0 = _mm512_load_ps(&keys[i][0]), k1 = _mm512_load_ps(&keys[i][16]),
                           k2 = _mm512_load_ps(&keys[i][32]);
                    if constexpr (L2) {
                        const __m512 xn = _mm512_set1_ps(base.norms[r + i]);
                        k0 = _mm512_fnmadd_ps(two, k0, xn);
                        k1 = _mm512_fnmadd_ps(two, k1, xn);
                        k2 = _mm512_fnmadd_ps(two, k2, xn);
                        _mm512_store_ps(&keys[i][0], k0);
                        _mm512_store_ps(&keys[i][16], k1);
                        _mm512_store_ps(&keys[i][32], k2);
                        hit |= _mm512_cmp_ps_mask(k0, t0, _CMP_LE_OQ) | _mm512_cmp_ps_mask(k1, t1, _CMP_LE_OQ) |
                               _mm512_cmp_ps_mask(k2, t2, _CMP_LE_OQ);
                    } else {
                        hit |= _mm512_cmp_ps_mask(k0, t0, _CMP_GE_OQ) | _mm512_cmp_ps_mask(k1, t1, _CMP_GE_OQ) |
                               _mm512_cmp_ps_mask(k2, t2, _CMP_GE_OQ);
                    }
                }
                if (hit) [[unlikely]] {
                    for (index_t i = 0; i < mr; ++i)
                        for (index_t jl = 0; jl < QT; ++jl)
                            // thresholds move as results enter, so each lane is tested again
                            if (j0 + jl < nq && passes<L2>(keys[i][jl], thr[jl])) h.add(j0 + jl, r + i);
                }
            }
        }
    }
    kite::cpu::amx_release();
}

#endif  // KITE_FLAT_AMX

/// The small tile streams the base from DRAM once per call: on AMD Zen (kite::cpu::tuning::zen)
/// its rows are prefetched into L2 (prefetcht1) rather than L1, which measured 1.2x faster at
/// nq = 16, n = 100000, d = 384, one thread on a Zen 4 EPYC (float32 1000 -> 1200 qps, bfloat16
/// 1600 -> 2000).
template <bool L2, bool BF>
void gemm_block_as(const flat_base& base, index_t b, index_t e, const float* packed, index_t tile,
                   index_t nq, index_t t_begin, index_t t_end, const handler_ref& h) {
    if (tile == static_cast<index_t>(gemm_small_v) * kite::simd::width) {
        if (kite::cpu::active_tuning() == kite::cpu::tuning::zen)
            gemm_block_tiles<L2, gemm_small_mr, gemm_small_v, BF, 2>(base, b, e, packed, nq, t_begin, t_end, h);
        else
            gemm_block_tiles<L2, gemm_small_mr, gemm_small_v, BF, 3>(base, b, e, packed, nq, t_begin, t_end, h);
    } else {
        gemm_block_tiles<L2, gemm_large_mr, gemm_large_v, BF, 3>(base, b, e, packed, nq, t_begin, t_end, h);
    }
}

/// Offers rows [b, e) to queries [j_begin, j_end) (whole tiles of `tile` queries) of `packed`
/// (packed by pack_queries_bf16 when the base carries the bfloat16 copy, by pack_queries
/// otherwise).
template <bool L2>
void gemm_block(const flat_base& base, index_t b, index_t e, const float* packed, index_t tile,
                index_t nq, index_t j_begin, index_t j_end, const handler_ref& h) {
    const index_t t_begin = j_begin / tile, t_end = (j_end + tile - 1) / tile;
#if KITE_FLAT_AMX
    if (base.amx) {
        gemm_block_amx<L2>(base, b, e, packed, nq, t_begin, t_end, h);
        return;
    }
#endif
    if constexpr (kite::simd::has_bf16_dot) {
        if (base.bf16 || base.bf16_convert) {
            gemm_block_as<L2, true>(base, b, e, packed, tile, nq, t_begin, t_end, h);
            return;
        }
    }
    gemm_block_as<L2, false>(base, b, e, packed, tile, nq, t_begin, t_end, h);
}

#else  // no SIMD: the packed tiles hold one query each

template <bool L2>
void gemm_block(const flat_base& base, index_t b, index_t e, const float* packed, index_t,
                index_t, index_t j_begin, index_t j_end, const handler_ref& h) {
    const float* thr = h.thresholds;
    for (index_t r = b; r < e; ++r)
        for (index_t j = j_begin; j < j_end; ++j) {
            const float dot = kite::simd::dot(base.row(r), packed + j * base.d, base.d);
            const float key = L2 ? base.norms[r] - 2.0f * dot : dot;
            if (passes<L2>(key, thr[j])) h.add(j, r);
        }
}

#endif

}  // namespace kite::retrieval::detail
