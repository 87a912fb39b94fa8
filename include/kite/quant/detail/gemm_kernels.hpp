#pragma once
/// @file kite/quant/detail/gemm_kernels.hpp
/// Batched product Y[t][r] = sum_c X[t][c] W[r][c] for float activations X [b][k] and any
/// weight format with a decode_row (packed or dense).
///
/// Strategy (compute bound once b >= 16): X is packed once per call as X^T [k][b_pad] so that
/// a batch of tokens is one run of vector lanes. Each thread owns a range of row tiles; for every
/// 128-column slice it decodes a tile of RT weight rows into L1 scratch (amortised over all b
/// tokens) and runs an RT x TV register-blocked micro-kernel: per column, TV vector loads of
/// tokens, RT broadcast weights, RT * TV FMAs. Partial sums live in a per-thread [rows][b_pad]
/// buffer between slices, which keeps the X^T slice (128 x b_pad floats) in L1.

#include <algorithm>
#include <cstring>

#include "kite/core/config.hpp"
#include "kite/core/matrix.hpp"
#include "kite/core/parallel.hpp"
#include "kite/core/simd.hpp"
#include "kite/quant/arch.hpp"
#include "kite/quant/detail/decode.hpp"
#include "kite/quant/detail/scratch.hpp"
#include "kite/quant/format.hpp"

namespace kite::quant::detail {

#if KITE_SIMD_ENABLED
inline constexpr index_t gemm_lanes = simd::width;
#else
inline constexpr index_t gemm_lanes = 1;
#endif
/// Columns per slice (a multiple of every block_cols and group size).
inline constexpr index_t gemm_kc = 128;
/// Accumulator registers available to the micro-kernel (32 vector registers with AVX-512).
inline constexpr int gemm_acc_budget = gemm_lanes >= 16 ? 24 : 12;
/// Token vectors per micro-kernel call at most.
inline constexpr int gemm_max_tv = 4;

/// acc[r][v*lanes..] += sum_kk wd[r][kk] * xt[kk][v*lanes..] for RT rows and TV token vectors.
template <int TV, int RT>
void gemm_micro(const float* KITE_RESTRICT wd, index_t ldw, const float* KITE_RESTRICT xt, index_t ldx,
                index_t kn, float* KITE_RESTRICT acc, index_t lda) noexcept {
#if KITE_SIMD_ENABLED
    using vb = simd::fbatch;
    constexpr index_t W = gemm_lanes;
    vb a[RT][TV];
    KITE_QUANT_UNROLL
    for (int r = 0; r < RT; ++r)
        KITE_QUANT_UNROLL
        for (int v = 0; v < TV; ++v) a[r][v] = vb::load_aligned(acc + r * lda + v * W);
    for (index_t kk = 0; kk < kn; ++kk) {
        vb xv[TV];
        KITE_QUANT_UNROLL
        for (int v = 0; v < TV; ++v) xv[v] = vb::load_aligned(xt + kk * ldx + v * W);
        KITE_QUANT_UNROLL
        for (int r = 0; r < RT; ++r) {
            const vb wv(wd[r * ldw + kk]);
            KITE_QUANT_UNROLL
            for (int v = 0; v < TV; ++v) a[r][v] = xsimd::fma(wv, xv[v], a[r][v]);
        }
    }
    KITE_QUANT_UNROLL
    for (int r = 0; r < RT; ++r)
        KITE_QUANT_UNROLL
        for (int v = 0; v < TV; ++v) a[r][v].store_aligned(acc + r * lda + v * W);
#else
    KITE_QUANT_UNROLL
    for (int r = 0; r < RT; ++r)
        KITE_QUANT_UNROLL
        for (int v = 0; v < TV; ++v) {
            float s = acc[r * lda + v];
            for (index_t kk = 0; kk < kn; ++kk) s += wd[r * ldw + kk] * xt[kk * ldx + v];
            acc[r * lda + v] = s;
        }
#endif
}

/// Runs the micro-kernel over all token vectors of one row tile (TV chosen per chunk).
template <int RT>
void gemm_tile_tokens(const float* wd, const float* xt, index_t ldx, index_t kn, float* acc,
                      index_t nv) noexcept {
    constexpr index_t W = gemm_lanes;
    for (index_t v0 = 0; v0 < nv; v0 += gemm_max_tv) {
        const index_t tv = std::min<index_t>(gemm_max_tv, nv - v0);
        const float* x = xt + v0 * W;
        float* a = acc + v0 * W;
        if constexpr (RT * 4 <= gemm_acc_budget) {
            switch (tv) {
                case 4: gemm_micro<4, RT>(wd, gemm_kc, x, ldx, kn, a, ldx); break;
                case 3: gemm_micro<3, RT>(wd, gemm_kc, x, ldx, kn, a, ldx); break;
                case 2: gemm_micro<2, RT>(wd, gemm_kc, x, ldx, kn, a, ldx); break;
                default: gemm_micro<1, RT>(wd, gemm_kc, x, ldx, kn, a, ldx); break;
            }
        } else {  // RT was chosen for nv = tv < 4 token vectors: a single chunk
            constexpr int tvmax = gemm_acc_budget / RT;
            gemm_micro<tvmax, RT>(wd, gemm_kc, x, ldx, kn, a, ldx);
        }
    }
}

/// Y [b][m] = X [b][k] W^T with W of any decodable format.
template <class Arch, class F>
void gemm_rows(Arch, const F& w, matrix_view<const float> X, matrix_view<float> Y, int threads) {
    constexpr index_t W = gemm_lanes;
    const index_t b = X.rows(), k = w.cols(), m = w.rows();
    if (b == 0 || m == 0) return;
    const index_t bpad = round_up(b, W);
    const index_t nv = bpad / W;
    const index_t kpad = round_up(std::max<index_t>(k, 1), gemm_kc);

    // X^T [kpad][bpad], zero outside [k][b], packed once on the calling thread.
    float* xt = scratch<float, 0>(kpad * bpad);
    std::memset(static_cast<void*>(xt), 0, kpad * bpad * sizeof(float));
    for (index_t t = 0; t < b; ++t) {
        const float* xr = X.row(t).data();
        for (index_t c = 0; c < k; ++c) xt[c * bpad + t] = xr[c];
    }

    const auto run = [&]<int RT>() {
        const index_t ntiles = (m + RT - 1) / RT;
        parallel_chunks(
            ntiles,
            [&](std::size_t t0, std::size_t t1, int) {
                const index_t rbase = t0 * RT;
                const index_t nrows = (t1 - t0) * RT;
                float* acc = scratch<float, 1>(nrows * bpad);  // [nrows][bpad]
                float* wd = scratch<float, 2>(index_t(RT) * gemm_kc);  // [RT][kc]
                std::memset(static_cast<void*>(acc), 0, nrows * bpad * sizeof(float));
                for (index_t kb = 0; kb < k; kb += gemm_kc) {
                    const index_t kn = std::min(gemm_kc, k - kb);
                    for (index_t tile = t0; tile < t1; ++tile) {
                        const index_t r0 = tile * RT;
                        const index_t nr = std::min<index_t>(RT, m - r0);
                        for (index_t i = 0; i < nr; ++i) decode_row(Arch{}, w, r0 + i, kb, kn, wd + i * gemm_kc);
                        if (nr < index_t(RT))
                            std::memset(static_cast<void*>(wd + nr * gemm_kc), 0, (RT - nr) * gemm_kc * sizeof(float));
                        gemm_tile_tokens<RT>(wd, xt + kb * bpad, bpad, kn, acc + (r0 - rbase) * bpad, nv);
                    }
                }
                const index_t rend = std::min(m, t1 * RT);
                for (index_t t = 0; t < b; ++t) {
                    float* yr = Y.row(t).data();
                    for (index_t r = rbase; r < rend; ++r) yr[r] = acc[(r - rbase) * bpad + t];
                }
            },
            threads);
    };
    // Rows per tile so that RT x min(nv, 4) accumulators fill the register budget.
    switch (std::min<index_t>(nv, gemm_max_tv)) {
        case 1: run.template operator()<gemm_acc_budget>(); break;
        case 2: run.template operator()<gemm_acc_budget / 2>(); break;
        case 3: run.template operator()<gemm_acc_budget / 3>(); break;
        default: run.template operator()<gemm_acc_budget / 4>(); break;
    }
}

}  // namespace kite::quant::detail
