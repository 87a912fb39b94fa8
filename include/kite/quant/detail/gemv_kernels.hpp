#pragma once
/// @file kite/quant/detail/gemv_kernels.hpp
/// Row-range GEMV kernels y[r] = sum_c W[r][c] x[c] for r in [r0, r1), float activations.
///
/// generic: decodes 256-column chunks of a row into L1 scratch and takes xsimd dot products.
/// avx512:  dequantizes in registers, four (4-bit: eight) rows sharing each load of x:
///   4-bit  one 64-byte load per 128 columns; each of its 8 nibble planes (shift by 4) indexes a
///          16-entry table scale * (c - z) held in a register (vpermps), then one FMA. The table
///          entries are exactly the dequantized weights, so only the summation rounds.
///   8-bit  widen 16 bytes to int32 (minus the zero point), convert, FMA; the scale is applied
///          once per group.
///   dense  bf16 widened by a shift, or float, then FMA.
/// Codes are prefetched one tile of rows ahead: a weight matrix streams from DRAM once per call
/// and the conversion work would otherwise stall on it (a fixed distance within each row misses
/// the start of every tile when rows are short, as in a 768-wide model).
///
/// Tunings (kite::cpu): Intel prefetches into L1 (prefetcht0), 4-bit tiles of 8 rows. On AMD
/// Zen the kernels prefetch into L2 (prefetcht1) and take 4-bit tiles of 4 rows: on a Zen 4
/// EPYC, 4096 x 4096 int4-g128, one thread, the L1 prefetch streamed 11-12 GB/s and the L2 one
/// 15-16 GB/s, which is what the kernel computes from cache (its 512-bit permutes, shifts and
/// FMAs each take two 256-bit issue slots there); tiles of 8 rows 14-15.6 GB/s, of 2 rows 14.5.

#include <algorithm>
#include <cstdint>
#include <type_traits>
#include <utility>

#include "kite/core/config.hpp"
#include "kite/core/cpu.hpp"
#include "kite/core/diagnostics.hpp"
#include "kite/core/simd.hpp"
#include "kite/quant/arch.hpp"
#include "kite/quant/detail/decode.hpp"
#include "kite/quant/format.hpp"

#if KITE_QUANT_AVX512
#include <immintrin.h>
#endif

namespace kite::quant::detail {

// ---- generic ----------------------------------------------------------------------------------

template <class F>
void gemv_rows(arch::generic, const F& w, const float* KITE_RESTRICT x, float* KITE_RESTRICT y,
               index_t r0, index_t r1) noexcept {
    constexpr index_t chunk = 256;
    alignas(64) float buf[chunk];
    const index_t k = w.cols();
    for (index_t r = r0; r < r1; ++r) {
        float acc = 0;
        for (index_t c0 = 0; c0 < k; c0 += chunk) {
            const index_t n = std::min(chunk, k - c0);
            decode_row(arch::generic{}, w, r, c0, n, buf);
            acc += simd::dot(buf, x + c0, n);
        }
        y[r] = acc;
    }
}

inline void gemv_rows(arch::generic, const dense_weights<float>& w, const float* KITE_RESTRICT x,
                      float* KITE_RESTRICT y, index_t r0, index_t r1) noexcept {
    for (index_t r = r0; r < r1; ++r) y[r] = simd::dot(w.row(r), x, w.cols());
}

#if KITE_QUANT_AVX512

// GCC 12's AVX-512 intrinsics start from _mm512_undefined_*(), which its -Wmaybe-uninitialized
// reports once inlined (GCC bug 105593); the values are fully defined.
KITE_GCC12_AVX512_UNINIT_BEGIN

KITE_FORCE_INLINE __mmask16 tail_mask(index_t n) noexcept {
    return n >= 16 ? __mmask16(0xffff) : static_cast<__mmask16>((1u << n) - 1u);
}

/// Scales and kernel zero points of the groups of one row that cover a run of columns, staged
/// as floats (fp16 scales converted once per run instead of once per use).
template <class F>
struct group_stage {
    static constexpr index_t max_groups = 64;
    alignas(64) float scale[max_groups];
    alignas(64) float zero[max_groups];

    /// Stages groups [g0, g0 + n) of row r, n <= max_groups.
    KITE_FORCE_INLINE void load(const F& w, index_t r, index_t g0, index_t n) noexcept {
        stage_groups(w, r, g0, n, F::has_zeros ? 0.0f : (F::bits == 4 ? 8.0f : 0.0f), scale, zero);
    }
};

/// Locality hint of the weight prefetches: prefetcht0 (into L1) or prefetcht1 (into L2).
enum class prefetch_to { l1 = 3, l2 = 2 };

/// R rows of a 4-bit matrix starting at r0.
template <int R, prefetch_to P, int G, grid Z, class S>
KITE_FORCE_INLINE void gemv_int4_tile(const packed_weights<4, G, Z, S>& w, index_t r0,
                                      const float* KITE_RESTRICT x, float* KITE_RESTRICT y) noexcept {
    using F = packed_weights<4, G, Z, S>;
    constexpr index_t chunk_blocks = 16;  // 2048 columns: at most 64 groups of 32
    const index_t k = w.cols();
    const index_t nblk = (k + 127) / 128;
    // Rows are contiguous, so the tile's codes are one run of R * row_bytes bytes: each line is
    // prefetched one tile ahead (the same block R rows further), which also covers the start of
    // the next tile -- on short rows (768 columns: 6 lines) a within-row distance would not.
    const index_t ahead = R * w.row_bytes();
    const std::uint8_t* code[R];
    __m512 acc0[R], acc1[R], table[R];
    group_stage<F> st[R];
    KITE_QUANT_UNROLL
    for (int i = 0; i < R; ++i) {
        code[i] = w.row_codes(r0 + i);
        acc0[i] = acc1[i] = _mm512_setzero_ps();
    }
    for (index_t cb = 0; cb < nblk; cb += chunk_blocks) {
        const index_t cb_end = std::min(nblk, cb + chunk_blocks);
        const index_t g_first = G > 0 ? cb * 128 / index_t(G) : 0;
        const index_t g_last = G > 0 ? (std::min(k, cb_end * 128) - 1) / index_t(G) : 0;
        KITE_QUANT_UNROLL
        for (int i = 0; i < R; ++i) st[i].load(w, r0 + i, g_first, g_last - g_first + 1);
        if constexpr (G <= 0) {
            KITE_QUANT_UNROLL
            for (int i = 0; i < R; ++i) table[i] = int4_table(st[i].scale[0], st[i].zero[0]);
        }
        for (index_t b = cb; b < cb_end; ++b) {
            __m512i v[R];
            KITE_QUANT_UNROLL
            for (int i = 0; i < R; ++i) {
                __builtin_prefetch(code[i] + 64 * b + ahead, 0, static_cast<int>(P));
                v[i] = _mm512_loadu_si512(code[i] + 64 * b);
            }
            const float* xb = x + 128 * b;
            const index_t valid = std::min<index_t>(128, k - 128 * b);  // columns of this block
            // One nibble plane: columns 16T..16T+15 of the block (T is a compile-time constant so
            // the 8 planes unroll into straight-line code).
            auto plane = [&]<int T>(std::integral_constant<int, T>, __m512 xv) KITE_QUANT_INLINE_LAMBDA {
                if (index_t(16 * T) >= valid) return;  // past the row's end (and its groups)
                if constexpr (G > 0) {
                    if constexpr ((16 * T) % G == 0) {  // a new group starts at this plane
                        const index_t gi = (128 * b + 16 * T) / index_t(G) - g_first;
                        KITE_QUANT_UNROLL
                        for (int i = 0; i < R; ++i) table[i] = int4_table(st[i].scale[gi], st[i].zero[gi]);
                    }
                }
                KITE_QUANT_UNROLL
                for (int i = 0; i < R; ++i) {
                    const __m512 wv = _mm512_permutexvar_ps(v[i], table[i]);
                    if constexpr (T % 2 == 0 || R > 4) {  // two accumulators per row while registers allow
                        acc0[i] = _mm512_fmadd_ps(wv, xv, acc0[i]);
                    } else {
                        acc1[i] = _mm512_fmadd_ps(wv, xv, acc1[i]);
                    }
                    if constexpr (T < 7) v[i] = _mm512_srli_epi32(v[i], 4);
                }
            };
            if (valid == 128) {
                [&]<int... T>(std::integer_sequence<int, T...>) KITE_QUANT_INLINE_LAMBDA {
                    (plane(std::integral_constant<int, T>{}, _mm512_loadu_ps(xb + 16 * T)), ...);
                }(std::make_integer_sequence<int, 8>{});
            } else {  // the last, partial block: x past the end reads as zero
                [&]<int... T>(std::integer_sequence<int, T...>) KITE_QUANT_INLINE_LAMBDA {
                    (plane(std::integral_constant<int, T>{},
                           _mm512_maskz_loadu_ps(index_t(16 * T) < valid ? tail_mask(valid - 16 * T) : 0, xb + 16 * T)),
                     ...);
                }(std::make_integer_sequence<int, 8>{});
            }
        }
    }
    KITE_QUANT_UNROLL
    for (int i = 0; i < R; ++i) y[r0 + i] = _mm512_reduce_add_ps(_mm512_add_ps(acc0[i], acc1[i]));
}

/// R rows of an 8-bit matrix starting at r0.
template <int R, prefetch_to P, int G, grid Z, class S>
KITE_FORCE_INLINE void gemv_int8_tile(const packed_weights<8, G, Z, S>& w, index_t r0,
                                      const float* KITE_RESTRICT x, float* KITE_RESTRICT y) noexcept {
    using F = packed_weights<8, G, Z, S>;
    const index_t k = w.cols();
    const index_t nfull = k / 16;  // full 16-column units
    const index_t tail = k % 16;
    const index_t upg = G > 0 ? index_t(G) / 16 : nfull + (tail ? 1 : 0);
    const index_t ng = w.groups_per_row();
    const index_t ahead = R * w.row_bytes();  // one tile ahead (see gemv_int4_tile)
    const std::uint8_t* code[R];
    __m512 acc[R];
    group_stage<F> st[R];
    KITE_QUANT_UNROLL
    for (int i = 0; i < R; ++i) {
        code[i] = w.row_codes(r0 + i);
        acc[i] = _mm512_setzero_ps();
    }
    for (index_t g0 = 0; g0 < ng; g0 += group_stage<F>::max_groups) {
        const index_t gn = std::min(group_stage<F>::max_groups, ng - g0);
        KITE_QUANT_UNROLL
        for (int i = 0; i < R; ++i) st[i].load(w, r0 + i, g0, gn);
        for (index_t g = g0; g < g0 + gn; ++g) {
            const index_t u0 = g * upg, u1 = std::min(u0 + upg, nfull);
            __m512 a[R];
            __m512i z[R];
            KITE_QUANT_UNROLL
            for (int i = 0; i < R; ++i) {
                a[i] = _mm512_setzero_ps();
                z[i] = _mm512_set1_epi32(static_cast<int>(st[i].zero[g - g0]));
            }
            auto unit = [&](index_t u, __m512 xv) KITE_QUANT_INLINE_LAMBDA {
                KITE_QUANT_UNROLL
                for (int i = 0; i < R; ++i) {
                    if (u % 4 == 0) __builtin_prefetch(code[i] + 16 * u + ahead, 0, static_cast<int>(P));
                    const __m128i raw = _mm_loadu_si128(reinterpret_cast<const __m128i*>(code[i] + 16 * u));
                    __m512i q;
                    if constexpr (Z == grid::symmetric) {
                        q = _mm512_cvtepi8_epi32(raw);
                    } else {
                        q = _mm512_sub_epi32(_mm512_cvtepu8_epi32(raw), z[i]);
                    }
                    a[i] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(q), xv, a[i]);
                }
            };
            for (index_t u = u0; u < u1; ++u) unit(u, _mm512_loadu_ps(x + 16 * u));
            if (tail && g + 1 == ng) unit(nfull, _mm512_maskz_loadu_ps(tail_mask(tail), x + 16 * nfull));
            KITE_QUANT_UNROLL
            for (int i = 0; i < R; ++i) acc[i] = _mm512_fmadd_ps(a[i], _mm512_set1_ps(st[i].scale[g - g0]), acc[i]);
        }
    }
    KITE_QUANT_UNROLL
    for (int i = 0; i < R; ++i) y[r0 + i] = _mm512_reduce_add_ps(acc[i]);
}

/// R rows of a dense float or bf16 matrix starting at r0.
template <int R, class T>
KITE_FORCE_INLINE void gemv_dense_tile(const dense_weights<T>& w, index_t r0, const float* KITE_RESTRICT x,
                                       float* KITE_RESTRICT y) noexcept {
    const index_t k = w.cols();
    const T* row[R];
    __m512 acc[R];
    KITE_QUANT_UNROLL
    for (int i = 0; i < R; ++i) {
        row[i] = w.row(r0 + i);
        acc[i] = _mm512_setzero_ps();
    }
    auto load_w = [](const T* p, __mmask16 m) KITE_QUANT_INLINE_LAMBDA {
        if constexpr (std::is_same_v<T, float>) {
            return _mm512_maskz_loadu_ps(m, p);
        } else {  // bf16: the top half of a float
            const __m256i h = _mm256_maskz_loadu_epi16(m, p);
            return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
        }
    };
    index_t c = 0;
    for (; c + 16 <= k; c += 16) {
        const __m512 xv = _mm512_loadu_ps(x + c);
        KITE_QUANT_UNROLL
        for (int i = 0; i < R; ++i) acc[i] = _mm512_fmadd_ps(load_w(row[i] + c, 0xffff), xv, acc[i]);
    }
    if (c < k) {
        const __mmask16 m = tail_mask(k - c);
        const __m512 xv = _mm512_maskz_loadu_ps(m, x + c);
        KITE_QUANT_UNROLL
        for (int i = 0; i < R; ++i) acc[i] = _mm512_fmadd_ps(load_w(row[i] + c, m), xv, acc[i]);
    }
    KITE_QUANT_UNROLL
    for (int i = 0; i < R; ++i) y[r0 + i] = _mm512_reduce_add_ps(acc[i]);
}

/// Rows [r0, r1) in tiles of 8 (4-bit: only when Wide4), 4 and 1 rows, prefetching to P.
template <prefetch_to P, bool Wide4, int B, int G, grid Z, class S>
void gemv_rows_as(const packed_weights<B, G, Z, S>& w, const float* KITE_RESTRICT x, float* KITE_RESTRICT y,
                  index_t r0, index_t r1) noexcept {
    index_t r = r0;
    if constexpr (B == 4) {
        // 8 rows per tile: more row streams in flight and fewer x loads per weight; the tables
        // and one accumulator per row still fit the 32 vector registers
        if constexpr (Wide4)
            for (; r + 8 <= r1; r += 8) gemv_int4_tile<8, P>(w, r, x, y);
        for (; r + 4 <= r1; r += 4) gemv_int4_tile<4, P>(w, r, x, y);
        for (; r < r1; ++r) gemv_int4_tile<1, P>(w, r, x, y);
    } else {
        for (; r + 8 <= r1; r += 8) gemv_int8_tile<8, P>(w, r, x, y);
        for (; r + 4 <= r1; r += 4) gemv_int8_tile<4, P>(w, r, x, y);
        for (; r < r1; ++r) gemv_int8_tile<1, P>(w, r, x, y);
    }
}

template <int B, int G, grid Z, class S>
void gemv_rows(arch::avx512, const packed_weights<B, G, Z, S>& w, const float* KITE_RESTRICT x,
               float* KITE_RESTRICT y, index_t r0, index_t r1) noexcept {
    // Zen: prefetch into L2 and 4-bit tiles of at most 4 rows (see the file comment).
    if (kite::cpu::active_tuning() == kite::cpu::tuning::zen)
        gemv_rows_as<prefetch_to::l2, false>(w, x, y, r0, r1);
    else
        gemv_rows_as<prefetch_to::l1, true>(w, x, y, r0, r1);
}

template <class T>
void gemv_rows(arch::avx512, const dense_weights<T>& w, const float* KITE_RESTRICT x,
               float* KITE_RESTRICT y, index_t r0, index_t r1) noexcept {
    index_t r = r0;
    for (; r + 4 <= r1; r += 4) gemv_dense_tile<4>(w, r, x, y);
    for (; r < r1; ++r) gemv_dense_tile<1>(w, r, x, y);
}

KITE_GCC12_AVX512_UNINIT_END

#endif  // KITE_QUANT_AVX512

}  // namespace kite::quant::detail
