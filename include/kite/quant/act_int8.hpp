#pragma once
/// @file kite/quant/act_int8.hpp
/// Products with activations rounded to int8 ("W4A8" / "W8A8"): the opt-in fast mode for
/// packed weights (gemv_a8 / gemm_a8) and the integer core of llm_int8.
///
/// Activations are rounded per block of 128 columns (act_block): s = max|x| / 127,
/// q = round(x * (127 / max|x|)) in [-127, 127]; an all-zero (or subnormal) block gets s = 1,
/// q = 0. Then, per weight group and activation block,
///     sum_c s_w (q_w,c - z) * s_x q_x,c = s_w s_x (sum_c u_c q_x,c - z_eff sum_c q_x,c)
/// where u are the stored codes read as unsigned bytes (4-bit nibbles; 8-bit symmetric levels
/// offset by 128, so z_eff = 128), computed exactly in int32 with AVX-512 VNNI (vpdpbusd:
/// 64 multiply-adds per instruction, u8 x s8) or with plain integer loops (arch::generic).
///
/// The result is not the exact-activation product: it equals reference::gemm_a8 (which rounds
/// the activations with quantize_activations(), then multiplies in double) to float rounding.
/// The rounding adds a relative error of about 1/(127 sqrt(12)) per activation, small next to
/// 4-bit weight error. Supported: 4-bit with Group 128, per_row or per_tensor (a VNNI dword
/// then never mixes groups); 8-bit with Group 128, per_row or per_tensor.

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <span>
#include <type_traits>
#include <vector>

#include "kite/core/cpu.hpp"
#include "kite/core/diagnostics.hpp"
#include "kite/core/error.hpp"
#include "kite/core/matrix.hpp"
#include "kite/core/parallel.hpp"
#include "kite/quant/arch.hpp"
#include "kite/quant/detail/decode.hpp"
#include "kite/quant/detail/scratch.hpp"
#include "kite/quant/format.hpp"
#include "kite/quant/kernels.hpp"

#if KITE_QUANT_AVX512_VNNI
#include <immintrin.h>
#endif

namespace kite::quant {

/// Columns that share one activation scale in the int8-activation kernels.
inline constexpr index_t act_block = 128;

/// Formats the int8-activation kernels support.
template <class F>
inline constexpr bool supports_a8 = false;
template <int B, int G, grid Z, class S>
inline constexpr bool supports_a8<packed_weights<B, G, Z, S>> = G == 128 || G == per_row || G == per_tensor;

/// Activations rounded to int8: levels [rows][blocks * 128] in column order (zero past cols)
/// and scales [rows][blocks].
struct int8_activations {
    index_t rows = 0, cols = 0, blocks = 0;
    std::vector<std::int8_t> levels;
    std::vector<float> scales;
};

namespace detail {

/// Rounds one run of values with scale 127 / amax into q (natural order); returns the scale.
inline float round_block(const float* x, index_t n, float amax, std::int8_t* q) noexcept {
    if (!(amax >= std::numeric_limits<float>::min()) || !(amax <= std::numeric_limits<float>::max())) {
        std::fill(q, q + n, std::int8_t{0});
        // 0 and subnormal blocks: exact zeros; inf/NaN: propagate through the scale
        return amax >= std::numeric_limits<float>::min() || amax != amax ? amax / 127.0f : 1.0f;
    }
    const float inv = 127.0f / amax;
    for (index_t i = 0; i < n; ++i)
        q[i] = static_cast<std::int8_t>(std::clamp(std::nearbyint(x[i] * inv), -127.0f, 127.0f));
    return amax / 127.0f;
}

inline float block_amax(const float* x, index_t n, const std::uint8_t* skip) noexcept {
    float a = 0;
    for (index_t i = 0; i < n; ++i) {
        const float v = skip && skip[i] ? 0.0f : std::abs(x[i]);
        a = v > a || v != v ? v : a;  // NaN wins, so it propagates
    }
    return a;
}

/// Quantizes one row of activations for the kernels. per_block: a scale per 128 columns;
/// otherwise one scale for the row (LLM.int8's vector-wise rounding) replicated per block.
/// skip[c] != 0 excludes column c (level 0; LLM.int8's outlier columns). Levels are written in
/// the kernel's byte order: natural for 8-bit weights; for 4-bit weights the nibble-plane
/// order of format.hpp (byte 4j + u: column 32u + j; byte 64 + 4j + u: column 16 + 32u + j).
inline void quantize_row(const float* x, index_t k, bool per_block, const std::uint8_t* skip, bool int4_order,
                         std::int8_t* q, float* scales, std::int32_t* sums) noexcept {
    const index_t nb = (k + act_block - 1) / act_block;
    alignas(64) std::int8_t tmp[act_block];
    alignas(64) float xs[act_block];
    const float row_amax = per_block ? 0.0f : block_amax(x, k, skip);
    for (index_t b = 0; b < nb; ++b) {
        const index_t c0 = b * act_block, n = std::min(act_block, k - c0);
        for (index_t i = 0; i < n; ++i) xs[i] = skip && skip[c0 + i] ? 0.0f : x[c0 + i];
        const float amax = per_block ? block_amax(xs, n, nullptr) : row_amax;
        std::fill(tmp, tmp + act_block, std::int8_t{0});
        scales[b] = round_block(xs, n, amax, tmp);
        std::int32_t s = 0;
        for (index_t i = 0; i < act_block; ++i) s += tmp[i];
        sums[b] = s;
        std::int8_t* out = q + c0;
        if (int4_order) {
            for (index_t j = 0; j < 16; ++j)
                for (index_t u = 0; u < 4; ++u) {
                    out[4 * j + u] = tmp[32 * u + j];
                    out[64 + 4 * j + u] = tmp[16 + 32 * u + j];
                }
        } else {
            std::memcpy(out, tmp, act_block);
        }
    }
}

/// Activations of a batch in kernel order, in per-thread scratch of the calling thread.
struct a8_batch {
    index_t kpad = 0, blocks = 0;
    const std::int8_t* q = nullptr;   // [b][kpad]
    const float* scale = nullptr;     // [b][blocks]
    const std::int32_t* sum = nullptr;  // [b][blocks]
};

inline a8_batch quantize_batch(matrix_view<const float> X, bool per_block, const std::uint8_t* skip, bool int4_order) {
    const index_t b = X.rows(), k = X.cols();
    a8_batch out;
    out.blocks = (k + act_block - 1) / act_block;
    out.kpad = out.blocks * act_block;
    auto* q = scratch<std::int8_t, 5>(b * out.kpad);
    auto* s = scratch<float, 6>(b * out.blocks);
    auto* sm = scratch<std::int32_t, 7>(b * out.blocks);
    for (index_t t = 0; t < b; ++t)
        quantize_row(X.row(t).data(), k, per_block, skip, int4_order, q + t * out.kpad, s + t * out.blocks,
                     sm + t * out.blocks);
    out.q = q;
    out.scale = s;
    out.sum = sm;
    return out;
}

/// Zero point the integer kernels subtract: stored z; 8 for symmetric 4-bit (offset binary);
/// 128 for symmetric 8-bit (levels are read as unsigned after flipping the sign bit).
template <class F>
inline int a8_zero(const F& w, index_t r, index_t g) noexcept {
    if constexpr (F::has_zeros) {
        return w.zero(r, g);
    } else {
        return F::bits == 4 ? 8 : 128;
    }
}

/// Unsigned code of column c as the integer kernels read it.
template <class F>
inline int a8_code(const F& w, index_t r, index_t c) noexcept {
    return w.level(r, c) + (F::has_zeros ? 0 : (F::bits == 4 ? 8 : 128));
}

/// y[t][r] for rows [r0, r1) and every token, generic integer loops.
template <class F>
void a8_rows(arch::generic, const F& w, const a8_batch& xa, index_t b, float* y, index_t ldy, index_t r0,
             index_t r1) noexcept {
    const index_t k = w.cols();
    for (index_t r = r0; r < r1; ++r)
        for (index_t t = 0; t < b; ++t) {
            const std::int8_t* q = xa.q + t * xa.kpad;
            float acc = 0;
            for (index_t blk = 0; blk < xa.blocks; ++blk) {
                const index_t c0 = blk * act_block, c1 = std::min(k, c0 + act_block);
                const index_t g = F::group > 0 ? c0 / index_t(F::group) : 0;
                std::int32_t dot = 0;
                for (index_t c = c0; c < c1; ++c) dot += a8_code(w, r, c) * q[c];  // natural order
                dot -= a8_zero(w, r, g) * xa.sum[t * xa.blocks + blk];
                acc += w.scale(r, g) * xa.scale[t * xa.blocks + blk] * static_cast<float>(dot);
            }
            y[t * ldy + r] = acc;
        }
}

#if KITE_QUANT_AVX512_VNNI

KITE_GCC12_AVX512_UNINIT_BEGIN

/// R rows starting at r0 times token t; VNNI dot products per 128-column block. Weight scales
/// and zero points are staged as floats 64 blocks at a time (fp16 scales converted once).
template <int R, int P, int B, int G, grid Z, class S>
KITE_FORCE_INLINE void a8_tile(const packed_weights<B, G, Z, S>& w, index_t r0, const a8_batch& xa, index_t t,
                               float* KITE_RESTRICT y) noexcept {
    constexpr index_t chunk = 64;
    const std::int8_t* q = xa.q + t * xa.kpad;
    const float* sx = xa.scale + t * xa.blocks;
    const std::int32_t* sum = xa.sum + t * xa.blocks;
    const index_t rb = w.row_bytes();
    // Prefetch one tile ahead: the same line R rows further (rows are contiguous; see
    // gemv_int4_tile).
    const index_t prefetch = R * rb;
    const __m512i low4 = _mm512_set1_epi8(0x0f);
    const __m512i flip = _mm512_set1_epi8(static_cast<char>(0x80));
    const std::uint8_t* code[R];
    __m512 acc[R];
    float corr[R];
    alignas(64) float sw[R][chunk];  // weight scale of each block's group
    alignas(64) float zw[R][chunk];  // its zero point
    alignas(64) float se[R][chunk];  // weight scale * activation scale of each block
    KITE_QUANT_UNROLL
    for (int i = 0; i < R; ++i) {
        code[i] = w.row_codes(r0 + i);
        acc[i] = _mm512_setzero_ps();
        corr[i] = 0;
    }
    for (index_t c0 = 0; c0 < xa.blocks; c0 += chunk) {
        const index_t cn = std::min(chunk, xa.blocks - c0);
        KITE_QUANT_UNROLL
        for (int i = 0; i < R; ++i) {
            if constexpr (G > 0) {  // G = 128: the group of a block is the block
                stage_groups(w, r0 + i, c0, cn, Z == grid::asymmetric ? 0.0f : (B == 4 ? 8.0f : 128.0f), sw[i], zw[i]);
            } else if (c0 == 0) {
                std::fill_n(sw[i], chunk, w.scale(r0 + i, 0));
                std::fill_n(zw[i], chunk, static_cast<float>(a8_zero(w, r0 + i, 0)));
            }
            // per-block scale products, and the zero-point term sum_b s_w s_x z sum_b, in vectors
            // (a scalar loop here would be reduced in order, element by element)
            __m512 cv = _mm512_setzero_ps();
            for (index_t j = 0; j < cn; j += 16) {
                const __mmask16 m = cn - j >= 16 ? __mmask16(0xffff) : static_cast<__mmask16>((1u << (cn - j)) - 1u);
                const __m512 sv = _mm512_mul_ps(_mm512_maskz_loadu_ps(m, sw[i] + j), _mm512_maskz_loadu_ps(m, sx + c0 + j));
                _mm512_store_ps(se[i] + j, sv);
                const __m512 sumv = _mm512_cvtepi32_ps(_mm512_maskz_loadu_epi32(m, sum + c0 + j));
                cv = _mm512_fmadd_ps(_mm512_mul_ps(sv, _mm512_maskz_loadu_ps(m, zw[i] + j)), sumv, cv);
            }
            corr[i] += _mm512_reduce_add_ps(cv);
        }
        for (index_t blk = c0; blk < c0 + cn; ++blk) {
            const __m512i x0 = _mm512_load_si512(q + act_block * blk);
            const __m512i x1 = _mm512_load_si512(q + act_block * blk + 64);
            KITE_QUANT_UNROLL
            for (int i = 0; i < R; ++i) {
                __m512i d = _mm512_setzero_si512();
                if constexpr (B == 4) {
                    __builtin_prefetch(code[i] + 64 * blk + prefetch, 0, P);
                    const __m512i v = _mm512_loadu_si512(code[i] + 64 * blk);
                    d = _mm512_dpbusd_epi32(d, _mm512_and_si512(v, low4), x0);
                    d = _mm512_dpbusd_epi32(d, _mm512_and_si512(_mm512_srli_epi16(v, 4), low4), x1);
                } else {
                    const std::uint8_t* p = code[i] + 128 * blk;
                    __builtin_prefetch(p + prefetch, 0, P);
                    __builtin_prefetch(p + prefetch + 64, 0, P);
                    __m512i v0 = _mm512_loadu_si512(p);
                    if constexpr (Z == grid::symmetric) v0 = _mm512_xor_si512(v0, flip);
                    d = _mm512_dpbusd_epi32(d, v0, x0);
                    if (128 * blk + 64 < rb) {  // the row may end at 64 bytes into this block
                        __m512i v1 = _mm512_loadu_si512(p + 64);
                        if constexpr (Z == grid::symmetric) v1 = _mm512_xor_si512(v1, flip);
                        d = _mm512_dpbusd_epi32(d, v1, x1);
                    }
                }
                acc[i] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(d), _mm512_set1_ps(se[i][blk - c0]), acc[i]);
            }
        }
    }
    KITE_QUANT_UNROLL
    for (int i = 0; i < R; ++i) y[r0 + i] = _mm512_reduce_add_ps(acc[i]) - corr[i];
}

template <int P, int B, int G, grid Z, class S>
void a8_rows_with(const packed_weights<B, G, Z, S>& w, const a8_batch& xa, index_t b, float* y, index_t ldy,
                  index_t r0, index_t r1) noexcept {
    index_t r = r0;
    for (; r + 4 <= r1; r += 4)
        for (index_t t = 0; t < b; ++t) a8_tile<4, P>(w, r, xa, t, y + t * ldy);
    for (; r < r1; ++r)
        for (index_t t = 0; t < b; ++t) a8_tile<1, P>(w, r, xa, t, y + t * ldy);
}

template <int B, int G, grid Z, class S>
void a8_rows(arch::avx512_vnni, const packed_weights<B, G, Z, S>& w, const a8_batch& xa, index_t b, float* y,
             index_t ldy, index_t r0, index_t r1) noexcept {
    // Prefetch locality by tuning (kite::cpu): L1 on Intel, L2 on AMD Zen (as gemv_rows).
    if (kite::cpu::active_tuning() == kite::cpu::tuning::zen) {
        a8_rows_with<2>(w, xa, b, y, ldy, r0, r1);
    } else {
        a8_rows_with<3>(w, xa, b, y, ldy, r0, r1);
    }
}

KITE_GCC12_AVX512_UNINIT_END

#endif  // KITE_QUANT_AVX512_VNNI

/// Whether Arch runs the VNNI kernels (which want 4-bit activations in nibble-plane order).
template <class Arch>
inline constexpr bool uses_vnni = KITE_QUANT_AVX512_VNNI && std::is_base_of_v<arch::avx512_vnni, Arch>;

/// Y = X W^T with X rounded by quantize_batch (already done); rows split over threads.
template <class Arch, class F>
void a8_product(Arch, const F& w, const a8_batch& xa, index_t b, matrix_view<float> Y, int threads) {
    const index_t m = w.rows();
    float* y = Y.data();
    const index_t ldy = Y.stride();
    constexpr index_t tile = 4;
    parallel_chunks(
        (m + tile - 1) / tile,
        [&](std::size_t t0, std::size_t t1, int) { a8_rows(Arch{}, w, xa, b, y, ldy, t0 * tile, std::min(m, t1 * tile)); },
        threads);
}

}  // namespace detail

/// Rounds X [b][k] to int8 per 128-column block (what the a8 kernels compute with).
inline int8_activations quantize_activations(matrix_view<const float> X) {
    int8_activations out;
    out.rows = X.rows();
    out.cols = X.cols();
    out.blocks = (X.cols() + act_block - 1) / act_block;
    out.levels.assign(out.rows * out.blocks * act_block, 0);
    out.scales.assign(out.rows * out.blocks, 0);
    std::vector<std::int32_t> sums(out.blocks);
    for (index_t t = 0; t < out.rows; ++t)
        detail::quantize_row(X.row(t).data(), X.cols(), true, nullptr, false,
                             out.levels.data() + t * out.blocks * act_block, out.scales.data() + t * out.blocks,
                             sums.data());
    return out;
}

/// y = W x with x rounded to int8 per 128 columns and integer dot products (VNNI when compiled
/// for it). Faster than gemv for 4-bit weights; see the file comment for the numerics.
template <class F, class Arch = arch::best>
    requires supports_a8<F>
void gemv_a8(const F& w, std::span<const float> x, std::span<float> y, int threads = 0, Arch = {}) {
    detail::check_gemv_shapes("quant::gemv_a8", w.rows(), w.cols(), x.size(), y.size());
    const matrix_view<const float> X(x.data(), 1, x.size());
    const auto xa = detail::quantize_batch(X, true, nullptr, F::bits == 4 && detail::uses_vnni<Arch>);
    detail::a8_product(Arch{}, w, xa, 1, matrix_view<float>(y.data(), 1, y.size()), threads);
}

/// Y = X W^T with X rounded to int8 per 128 columns (see gemv_a8).
template <class F, class Arch = arch::best>
    requires supports_a8<F>
void gemm_a8(const F& w, matrix_view<const float> X, matrix_view<float> Y, int threads = 0, Arch = {}) {
    detail::check_gemm_shapes("quant::gemm_a8", w.rows(), w.cols(), X, Y);
    if (X.rows() == 0) return;
    const auto xa = detail::quantize_batch(X, true, nullptr, F::bits == 4 && detail::uses_vnni<Arch>);
    detail::a8_product(Arch{}, w, xa, X.rows(), Y, threads);
}

namespace reference {

/// The oracle of gemm_a8: X rounded by quantize_activations(), W dequantized, product in double.
template <class F>
void gemm_a8(const F& w, matrix_view<const float> X, matrix_view<float> Y) {
    kite::quant::detail::check_gemm_shapes("reference::gemm_a8", w.rows(), w.cols(), X, Y);
    const auto xa = quantize_activations(X);
    const index_t kp = xa.blocks * act_block;
    for (index_t t = 0; t < X.rows(); ++t)
        for (index_t r = 0; r < w.rows(); ++r) {
            double s = 0;
            for (index_t c = 0; c < w.cols(); ++c)
                s += static_cast<double>(w.value(r, c)) * xa.scales[t * xa.blocks + c / act_block] *
                     xa.levels[t * kp + c];
            Y(t, r) = static_cast<float>(s);
        }
}

}  // namespace reference

}  // namespace kite::quant
