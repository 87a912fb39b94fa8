#pragma once
/// @file kite/quant/detail/float_gemm.hpp
/// The register-blocked float32 micro-kernel of kite's panel GEMMs: C [MR][NR] (+)= X [MR][kn] .
/// P [kn][NR], P a k-major panel of NR outputs, with an optional fused epilogue (bias, exact GELU,
/// residual). kite::quant::packed_f32_weights runs it on panels packed once at load; the ggml
/// GEMMs (kite/quant/ggml.hpp) on panels decoded from quantized blocks just before use.
/// Internal: no argument checks.

#include <algorithm>
#include <cmath>
#include <cstring>

#include "kite/core/activations.hpp"
#include "kite/core/config.hpp"
#include "kite/core/diagnostics.hpp"
#include "kite/core/simd.hpp"

KITE_GCC12_AVX512_UNINIT_BEGIN  // see kite/core/diagnostics.hpp

namespace kite::quant::detail {

#if KITE_SIMD_ENABLED
inline constexpr index_t pgemm_lanes = simd::width;
/// Vectors per panel: 4 with 32 registers (AVX-512: 6 x 4 accumulators), 2 with 16 (AVX2).
inline constexpr int pgemm_nv = simd::width >= 16 ? 4 : 2;
#else
inline constexpr index_t pgemm_lanes = 1;
inline constexpr int pgemm_nv = 8;
#endif
/// Tokens per micro-tile.
inline constexpr int pgemm_mr = 6;
/// Outputs per panel (NR).
inline constexpr index_t pgemm_nr = pgemm_lanes * static_cast<index_t>(pgemm_nv);
/// Largest K chunk: an MR x KC strip of X (9 KiB) stays in L1 (measured: 384 beats 512 and
/// 768 at K = 1536).
inline constexpr index_t pgemm_max_kc = 384;
/// Bytes of a block of panels meant to stay in L2 while strips of X pass over it.
inline constexpr index_t pgemm_block_bytes = index_t{1} << 20;

/// Epilogue pointers for one tile (already offset to the tile's first column).
struct pgemm_tile_epi {
    const float* bias;  // [NR] or null
    const float* res;   // [MR][ldr] or null
    index_t ldr;
    bool gelu;
};

/// C [MR][NR] (rows ldc apart) = (load_c ? C : 0) + X [MR][kn] (rows ldx apart) . P [kn][NR],
/// then, when `epi` is given, C = act(C + bias) + res.
template <int MR>
KITE_FORCE_INLINE void pgemm_micro(const float* KITE_RESTRICT x, index_t ldx, const float* KITE_RESTRICT p,
                                   index_t kn, float* KITE_RESTRICT c, index_t ldc, bool load_c,
                                   const pgemm_tile_epi* epi) noexcept {
    constexpr int NV = pgemm_nv;
    constexpr index_t NR = pgemm_nr;
#if KITE_SIMD_ENABLED
    using vec = simd::fbatch;
    constexpr index_t W = pgemm_lanes;
    vec acc[MR][NV];
    if (load_c) {
#pragma GCC unroll 8
        for (int r = 0; r < MR; ++r)
#pragma GCC unroll 4
            for (int v = 0; v < NV; ++v) acc[r][v] = vec::load_unaligned(c + r * ldc + v * W);
    } else {
#pragma GCC unroll 8
        for (int r = 0; r < MR; ++r)
#pragma GCC unroll 4
            for (int v = 0; v < NV; ++v) acc[r][v] = vec(0.0f);
    }
    for (index_t k = 0; k < kn; ++k) {
        vec b[NV];
#pragma GCC unroll 4
        for (int v = 0; v < NV; ++v) b[v] = vec::load_aligned(p + k * NR + v * W);
#pragma GCC unroll 8
        for (int r = 0; r < MR; ++r) {
            const vec a(x[r * ldx + k]);
#pragma GCC unroll 4
            for (int v = 0; v < NV; ++v) acc[r][v] = xsimd::fma(a, b[v], acc[r][v]);
        }
    }
    if (epi) {
        if (epi->bias) {
#pragma GCC unroll 4
            for (int v = 0; v < NV; ++v) {
                const vec bv = vec::load_unaligned(epi->bias + v * W);
#pragma GCC unroll 8
                for (int r = 0; r < MR; ++r) acc[r][v] += bv;
            }
        }
        if (epi->gelu) {
#pragma GCC unroll 8
            for (int r = 0; r < MR; ++r)
#pragma GCC unroll 4
                for (int v = 0; v < NV; ++v)
                    acc[r][v] = kite::act::detail::gelu_erf(acc[r][v]);
        }
        if (epi->res) {
#pragma GCC unroll 8
            for (int r = 0; r < MR; ++r)
#pragma GCC unroll 4
                for (int v = 0; v < NV; ++v) acc[r][v] += vec::load_unaligned(epi->res + r * epi->ldr + v * W);
        }
    }
#pragma GCC unroll 8
    for (int r = 0; r < MR; ++r)
#pragma GCC unroll 4
        for (int v = 0; v < NV; ++v) acc[r][v].store_unaligned(c + r * ldc + v * W);
#else
    for (int r = 0; r < MR; ++r)
        for (index_t j = 0; j < NR; ++j) {
            float s = load_c ? c[r * ldc + j] : 0.0f;
            for (index_t k = 0; k < kn; ++k) s += x[r * ldx + k] * p[k * NR + j];
            if (epi && epi->bias) s += epi->bias[j];
            if (epi && epi->gelu) s = 0.5f * s * (1.0f + std::erf(s * kite::act::detail::inv_sqrt2));
            if (epi && epi->res) s += epi->res[r * epi->ldr + j];
            c[r * ldc + j] = s;
        }
#endif
}

/// pgemm_micro<mr> for a runtime 1 <= mr <= MR.
template <int MR>
KITE_FORCE_INLINE void pgemm_dispatch(int mr, const float* x, index_t ldx, const float* p, index_t kn, float* c,
                                      index_t ldc, bool load_c, const pgemm_tile_epi* epi) noexcept {
    if constexpr (MR > 1) {
        if (mr < MR) return pgemm_dispatch<MR - 1>(mr, x, ldx, p, kn, c, ldc, load_c, epi);
    }
    pgemm_micro<MR>(x, ldx, p, kn, c, ldc, load_c, epi);
}

/// One tile of `mr` (< MR allowed) tokens against panel columns [j0, j0 + nc) (nc < NR allowed:
/// the tile then goes through an aligned scratch copy so that nothing past Y's row is touched).
inline void pgemm_tile(int mr, const float* x, index_t ldx, const float* p, index_t kn, float* y, index_t ldy,
                       index_t nc, bool load_c, const pgemm_tile_epi* epi) noexcept {
    constexpr index_t NR = pgemm_nr;
    float* c = y;
    index_t ldc = ldy;
    alignas(64) float tmp[pgemm_mr * NR];
    alignas(64) float bias_tmp[NR];
    alignas(64) float res_tmp[pgemm_mr * NR];
    pgemm_tile_epi e2;
    const bool partial = nc < NR;
    if (partial) {
        c = tmp;
        ldc = NR;
        std::fill_n(tmp, pgemm_mr * NR, 0.0f);
        if (load_c)
            for (int r = 0; r < mr; ++r) std::memcpy(tmp + r * NR, y + r * ldy, nc * sizeof(float));
        if (epi) {
            e2 = *epi;
            if (epi->bias) {
                std::fill_n(bias_tmp, NR, 0.0f);
                std::memcpy(bias_tmp, epi->bias, nc * sizeof(float));
                e2.bias = bias_tmp;
            }
            if (epi->res) {
                std::fill_n(res_tmp, pgemm_mr * NR, 0.0f);
                for (int r = 0; r < mr; ++r) std::memcpy(res_tmp + r * NR, epi->res + r * epi->ldr, nc * sizeof(float));
                e2.res = res_tmp;
                e2.ldr = NR;
            }
            epi = &e2;
        }
    }
    pgemm_dispatch<pgemm_mr>(mr, x, ldx, p, kn, c, ldc, load_c, epi);
    if (partial)
        for (int r = 0; r < mr; ++r) std::memcpy(y + r * ldy, tmp + r * NR, nc * sizeof(float));
}

}  // namespace kite::quant::detail

KITE_GCC12_AVX512_UNINIT_END
