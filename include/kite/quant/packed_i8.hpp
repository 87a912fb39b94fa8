#pragma once
/// @file kite/quant/packed_i8.hpp
/// packed_i8_weights: int8 weights in VNNI panels multiplied with activations rounded to int8
/// per token at run time ("W8A8 dynamic"): the fast opt-in path of kite's encoder on CPUs with
/// AVX-512 VNNI (one vpdpbusd is 64 multiply-adds, four times the float32 FMA's 16).
///
/// Numerics. Weights: one scale per output row, s_w = max|W[n,:]| / 127, q_w = round(W / s_w)
/// in [-127, 127]. Activations: one scale per token row, s_x = max|x| / 127,
/// q_x = round(x / s_x) in [-127, 127] (round half to even; an all-zero row gets q = 0). Then
///
///     (X W^T)[t][n] ~= s_x[t] s_w[n] sum_k q_x[t][k] q_w[n][k]
///
/// where the sum is exact in int32: the kernel feeds q_x + 128 as unsigned bytes to vpdpbusd
/// and subtracts 128 sum_k q_w[n][k] (precomputed per row). This is the scheme of ONNX Runtime's
/// dynamic quantization and torch.ao's dynamic Linear, with per-token instead of per-tensor
/// activation scales. The error is that of the two roundings (about 1/(127 sqrt 12) relative per
/// value), not float summation order: the result equals quantize-then-multiply in double
/// (reference_gemm below) to float rounding of the final scaling. A row of X holding NaN or inf
/// gives NaN in its output row (and only there).
///
/// Layout: panels of NR = 32 output rows, [panel][K4][NR][4] bytes with K4 = ceil(K / 4) (K is
/// zero-padded to a multiple of 4; padded rows are zero), so one k-step of the micro-kernel loads
/// two vectors of 16 outputs x 4 bytes. The micro-kernel keeps MR x NR int32 accumulators
/// (12 x 32 with AVX-512: 24 registers) over the whole K (int32 cannot overflow: 255 * 127 * K
/// < 2^31 for K < 66000), then applies the float epilogue of kite::quant::gemm_epilogue (bias,
/// GELU, residual, LayerNorm) to the tile. Without AVX-512 VNNI in the translation unit a
/// portable loop computes the same integers.
///
///   auto w = kite::quant::packed_i8_weights(W);                // W [out][in], quantized, packed
///   kite::quant::gemm(w, X, Y, {.bias = b, .gelu = true});     // GELU(X W^T + b), X rounded per token
///
/// kite::quant::w8a8_packed is the matching (data-free) quantization policy, so
/// bert_encoder<w8a8_packed> runs every linear layer this way. Oracle: reference_gemm.
/// Thread safety: const, safe to use from many threads at once.

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <span>

#include "kite/core/buffer.hpp"
#include "kite/core/config.hpp"
#include "kite/core/diagnostics.hpp"
#include "kite/core/error.hpp"
#include "kite/core/matrix.hpp"
#include "kite/core/parallel.hpp"
#include "kite/core/validate.hpp"
#include "kite/quant/packed_f32.hpp"
#include "kite/quant/arch.hpp"
#include "kite/quant/detail/scratch.hpp"

#if KITE_QUANT_AVX512_VNNI
#include <immintrin.h>
#endif

KITE_GCC12_AVX512_UNINIT_BEGIN  // see kite/core/diagnostics.hpp

namespace kite::quant {

namespace detail {
/// Outputs per panel (NR) and tokens per micro-tile (MR) of the int8 kernel.
/// 12 x 32 (24 accumulators, 2 weight loads and 12 broadcasts per 24 vpdpbusd) halves the
/// weight bytes per multiply-add of 6 x 64, whose panel reads from L2 capped it: measured 1.4x
/// faster on MiniLM's shapes (12 x 32, 14 x 32 and 24 x 16 within noise of each other).
inline constexpr index_t i8_nr = 32;
inline constexpr int i8_mr = 12;
/// Bytes of a block of panels meant to stay in L2 while strips of X pass over it.
inline constexpr index_t i8_block_bytes = index_t{768} << 10;

/// Symmetric int8 rounding of n values with the scale of `amax` (the run's max |x|): writes
/// q[i] + 128 (as an unsigned byte) and returns the scale amax / 127. An all-zero run gets
/// scale 0 and levels 128; a run with NaN or inf gets a NaN scale (its products become NaN).
inline float quantize_u8(const float* x, index_t n, float amax, std::uint8_t* u) noexcept {
    if (!(amax <= std::numeric_limits<float>::max())) {  // NaN or inf somewhere in the row
        std::fill_n(u, n, std::uint8_t{128});
        return std::numeric_limits<float>::quiet_NaN();
    }
    if (amax == 0.0f) {
        std::fill_n(u, n, std::uint8_t{128});
        return 0.0f;
    }
    const float inv = 127.0f / amax;
    index_t i = 0;
#if KITE_QUANT_AVX512_VNNI
    const __m512 vinv = _mm512_set1_ps(inv);
    const __m512i off = _mm512_set1_epi32(128);
    for (; i + 16 <= n; i += 16) {
        // cvtps rounds half to even (the default MXCSR mode), as std::nearbyint does.
        const __m512i q = _mm512_cvtps_epi32(_mm512_mul_ps(_mm512_loadu_ps(x + i), vinv));
        const __m512i v = _mm512_min_epi32(_mm512_max_epi32(_mm512_add_epi32(q, off), _mm512_set1_epi32(1)),
                                           _mm512_set1_epi32(255));
        _mm_storeu_si128(reinterpret_cast<__m128i*>(u + i), _mm512_cvtepi32_epi8(v));
    }
#endif
    for (; i < n; ++i) {
        const float q = std::clamp(std::nearbyint(x[i] * inv), -127.0f, 127.0f);
        u[i] = static_cast<std::uint8_t>(static_cast<int>(q) + 128);
    }
    return amax / 127.0f;
}

/// max |x[i]| over n values; NaN when any is NaN.
inline float abs_max(const float* x, index_t n) noexcept {
    float m = 0.0f;
    bool nan = false;
    index_t i = 0;
#if KITE_QUANT_AVX512_VNNI
    __m512 vm = _mm512_setzero_ps();
    __mmask16 bad = 0;
    for (; i + 16 <= n; i += 16) {
        const __m512 v = _mm512_loadu_ps(x + i);
        bad |= _mm512_cmp_ps_mask(v, v, _CMP_UNORD_Q);
        vm = _mm512_max_ps(vm, _mm512_abs_ps(v));
    }
    m = _mm512_reduce_max_ps(vm);
    nan = bad != 0;
#endif
    for (; i < n; ++i) {
        nan |= x[i] != x[i];
        m = std::max(m, std::abs(x[i]));
    }
    return nan ? std::numeric_limits<float>::quiet_NaN() : m;
}
}  // namespace detail

/// Int8 weights (one scale per output row) packed in VNNI panels for kite::quant::gemm (see
/// the file comment).
class packed_i8_weights {
public:
    packed_i8_weights() = default;
    /// Quantizes and packs W [out_features][in_features]; throws on non-finite values.
    explicit packed_i8_weights(matrix_view<const float> w) : rows_(w.rows()), cols_(w.cols()) {
        require_finite(w, "packed_i8_weights: W");
        KITE_REQUIRE(cols_ < 66000, shape_error, "packed_i8_weights: in_features = ", cols_,
                     " would overflow the int32 accumulators (255 * 127 * K); expected < 66000");
        constexpr index_t nr = detail::i8_nr;
        k4_ = (cols_ + 3) / 4;
        panels_ = (rows_ + nr - 1) / nr;
        data_ = aligned_buffer<std::int8_t>(panels_ * k4_ * nr * 4, std::int8_t{0});
        scale_ = aligned_buffer<float>(panels_ * nr, 0.0f);
        offset_ = aligned_buffer<std::int32_t>(panels_ * nr, 0);
        if (cols_ == 0) return;  // scales and offsets stay 0; no offsets into an empty (null) buffer
        for (index_t r = 0; r < rows_; ++r) {
            const float* src = w.row(r).data();
            float amax = 0.0f;
            for (index_t c = 0; c < cols_; ++c) amax = std::max(amax, std::abs(src[c]));
            const float inv = amax > 0.0f ? 127.0f / amax : 0.0f;
            scale_[r] = amax / 127.0f;
            std::int8_t* dst = data_.data() + (r / nr) * k4_ * nr * 4 + (r % nr) * 4;
            std::int32_t sum = 0;
            for (index_t c = 0; c < cols_; ++c) {
                const int q = static_cast<int>(std::clamp(std::nearbyint(src[c] * inv), -127.0f, 127.0f));
                dst[(c / 4) * nr * 4 + c % 4] = static_cast<std::int8_t>(q);
                sum += q;
            }
            offset_[r] = 128 * sum;
        }
    }
    packed_i8_weights(packed_i8_weights&&) noexcept = default;
    packed_i8_weights& operator=(packed_i8_weights&&) noexcept = default;
    packed_i8_weights clone() const {
        packed_i8_weights o;
        o.rows_ = rows_;
        o.cols_ = cols_;
        o.k4_ = k4_;
        o.panels_ = panels_;
        o.data_ = data_.clone();
        o.scale_ = scale_.clone();
        o.offset_ = offset_.clone();
        return o;
    }

    /// Output rows per panel (NR).
    static constexpr index_t panel_width() noexcept { return detail::i8_nr; }
    index_t rows() const noexcept { return rows_; }
    index_t cols() const noexcept { return cols_; }
    /// Groups of four input columns (K padded to a multiple of 4, divided by 4).
    index_t k4() const noexcept { return k4_; }
    index_t panels() const noexcept { return panels_; }
    std::size_t bytes() const noexcept { return data_.size_bytes() + scale_.size_bytes() + offset_.size_bytes(); }
    /// The integer level q_w[r][c] in [-127, 127].
    int level(index_t r, index_t c) const noexcept {
        constexpr index_t nr = detail::i8_nr;
        return data_[(r / nr) * k4_ * nr * 4 + (c / 4) * nr * 4 + (r % nr) * 4 + c % 4];
    }
    /// s_w[r].
    float scale(index_t r) const noexcept { return scale_[r]; }
    /// The dequantized weight s_w[r] q_w[r][c].
    float value(index_t r, index_t c) const noexcept { return scale_[r] * static_cast<float>(level(r, c)); }
    /// Panel p: [K4][NR][4] bytes; its NR scales and NR offsets (128 sum_k q_w).
    const std::int8_t* panel(index_t p) const noexcept { return data_.data() + p * k4_ * detail::i8_nr * 4; }
    const float* panel_scales(index_t p) const noexcept { return scale_.data() + p * detail::i8_nr; }
    const std::int32_t* panel_offsets(index_t p) const noexcept { return offset_.data() + p * detail::i8_nr; }

private:
    index_t rows_ = 0, cols_ = 0, k4_ = 0, panels_ = 0;
    aligned_buffer<std::int8_t> data_;     // [panel][K4][NR][4]
    aligned_buffer<float> scale_;          // [panel * NR]
    aligned_buffer<std::int32_t> offset_;  // [panel * NR]: 128 * sum_k q_w
};

/// Activations of a GEMM rounded to int8 per token: u [rows][4 K4] = q + 128, scale [rows].
struct i8_activations {
    const std::uint8_t* u = nullptr;
    const float* scale = nullptr;
    index_t ld = 0;
};

namespace detail {

/// Rounds X [T][K] per row into u [T][ld] (ld = 4 K4, the padding columns get 128) and scales.
inline void quantize_rows(matrix_view<const float> X, index_t ld, std::uint8_t* u, float* scale, int threads) {
    const index_t K = X.cols();
    parallel_for(
        0, X.rows(),
        [&](std::size_t t) {
            const float* x = X.row(t).data();
            std::uint8_t* ut = u + t * ld;
            scale[t] = quantize_u8(x, K, abs_max(x, K), ut);
            std::fill(ut + K, ut + ld, std::uint8_t{128});
        },
        threads);
}

/// One MR x NR tile (mr <= MR tokens, all NR panel columns) of epilogue(X W^T) into c (rows
/// ldc apart, NR valid columns).
template <int MR>
KITE_FORCE_INLINE void i8_micro(const std::uint8_t* KITE_RESTRICT u, index_t ldu, const float* KITE_RESTRICT sx,
                                const packed_i8_weights& w, index_t pi, float* KITE_RESTRICT c, index_t ldc,
                                const pgemm_tile_epi& epi) noexcept {
    constexpr index_t NR = i8_nr;
    const std::int8_t* p = w.panel(pi);
    const float* sw = w.panel_scales(pi);
    const std::int32_t* off = w.panel_offsets(pi);
    const index_t k4 = w.k4();
#if KITE_QUANT_AVX512_VNNI
    constexpr int NV = NR / 16;
    __m512i acc[MR][NV];
    KITE_QUANT_UNROLL
    for (int r = 0; r < MR; ++r)
        KITE_QUANT_UNROLL
        for (int v = 0; v < NV; ++v) acc[r][v] = _mm512_setzero_si512();
    for (index_t k = 0; k < k4; ++k) {
        __m512i b[NV];
        KITE_QUANT_UNROLL
        for (int v = 0; v < NV; ++v) b[v] = _mm512_load_si512(p + k * NR * 4 + v * 64);
        KITE_QUANT_UNROLL
        for (int r = 0; r < MR; ++r) {
            std::int32_t a4;
            std::memcpy(&a4, u + r * ldu + 4 * k, 4);
            const __m512i a = _mm512_set1_epi32(a4);
            KITE_QUANT_UNROLL
            for (int v = 0; v < NV; ++v) acc[r][v] = _mm512_dpbusd_epi32(acc[r][v], a, b[v]);
        }
    }
    KITE_QUANT_UNROLL
    for (int v = 0; v < NV; ++v) {
        const __m512i o = _mm512_load_si512(off + v * 16);
        const __m512 s = _mm512_load_ps(sw + v * 16);
        const __m512 bias = epi.bias ? _mm512_loadu_ps(epi.bias + v * 16) : _mm512_setzero_ps();
        KITE_QUANT_UNROLL
        for (int r = 0; r < MR; ++r) {
            __m512 y = _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_sub_epi32(acc[r][v], o)),
                                     _mm512_mul_ps(s, _mm512_set1_ps(sx[r])));
            y = _mm512_add_ps(y, bias);
            if (epi.gelu) {
                y = act::detail::gelu_erf(simd::fbatch(y));
            }
            if (epi.res) y = _mm512_add_ps(y, _mm512_loadu_ps(epi.res + r * epi.ldr + v * 16));
            _mm512_storeu_ps(c + r * ldc + v * 16, y);
        }
    }
#else
    for (int r = 0; r < MR; ++r)
        for (index_t j = 0; j < NR; ++j) {
            std::int32_t s = 0;
            for (index_t k = 0; k < 4 * k4; ++k)
                s += static_cast<std::int32_t>(u[r * ldu + k]) * p[(k / 4) * NR * 4 + j * 4 + k % 4];
            float y = static_cast<float>(s - off[j]) * (sw[j] * sx[r]);
            if (epi.bias) y += epi.bias[j];
            if (epi.gelu) y = 0.5f * y * (1.0f + std::erf(y * act::detail::inv_sqrt2));
            if (epi.res) y += epi.res[r * epi.ldr + j];
            c[r * ldc + j] = y;
        }
#endif
}

template <int MR>
KITE_FORCE_INLINE void i8_dispatch(int mr, const std::uint8_t* u, index_t ldu, const float* sx,
                                   const packed_i8_weights& w, index_t pi, float* c, index_t ldc,
                                   const pgemm_tile_epi& epi) noexcept {
    if constexpr (MR > 1) {
        if (mr < MR) return i8_dispatch<MR - 1>(mr, u, ldu, sx, w, pi, c, ldc, epi);
    }
    i8_micro<MR>(u, ldu, sx, w, pi, c, ldc, epi);
}

/// One tile of `mr` tokens against panel columns [j0, j0 + nc); a partial panel (nc < NR) goes
/// through an aligned scratch tile so that nothing past Y's row is read or written.
inline void i8_tile(int mr, const std::uint8_t* u, index_t ldu, const float* sx, const packed_i8_weights& w,
                    index_t pi, float* y, index_t ldy, index_t nc, pgemm_tile_epi epi) noexcept {
    constexpr index_t NR = i8_nr;
    if (nc == NR) return i8_dispatch<i8_mr>(mr, u, ldu, sx, w, pi, y, ldy, epi);
    alignas(64) float tmp[i8_mr * NR];
    alignas(64) float bias_tmp[NR];
    alignas(64) float res_tmp[i8_mr * NR];
    if (epi.bias) {
        std::fill_n(bias_tmp, NR, 0.0f);
        std::memcpy(bias_tmp, epi.bias, nc * sizeof(float));
        epi.bias = bias_tmp;
    }
    if (epi.res) {
        std::fill_n(res_tmp, i8_mr * NR, 0.0f);
        for (int r = 0; r < mr; ++r) std::memcpy(res_tmp + r * NR, epi.res + r * epi.ldr, nc * sizeof(float));
        epi.res = res_tmp;
        epi.ldr = NR;
    }
    i8_dispatch<i8_mr>(mr, u, ldu, sx, w, pi, tmp, NR, epi);
    for (int r = 0; r < mr; ++r) std::memcpy(y + r * ldy, tmp + r * NR, nc * sizeof(float));
}

/// Strips [s0, s1) x panels [p0, p1) of Y = epilogue(X W^T) from the rounded activations; the
/// LayerNorm of the epilogue only when `fuse_norm` (the range then covers every panel).
inline void i8_range(const packed_i8_weights& w, const i8_activations& a, index_t T, matrix_view<float> Y,
                     const gemm_epilogue& e, index_t s0, index_t s1, index_t p0, index_t p1, bool fuse_norm) noexcept {
    constexpr index_t NR = i8_nr;
    const index_t N = w.rows();
    const index_t block = std::max<index_t>(1, i8_block_bytes / (std::max<index_t>(1, w.k4()) * NR * 4));
    for (index_t b0 = p0; b0 < p1; b0 += block) {
        const index_t b1 = std::min(p1, b0 + block);
        for (index_t s = s0; s < s1; ++s) {
            const index_t t0 = s * i8_mr;
            const int mr = static_cast<int>(std::min<index_t>(i8_mr, T - t0));
            for (index_t pi = b0; pi < b1; ++pi) {
                const index_t j0 = pi * NR, nc = std::min(NR, N - j0);
                pgemm_tile_epi epi{};
                epi.bias = e.bias.empty() ? nullptr : e.bias.data() + j0;
                epi.res = e.residual.empty() ? nullptr : e.residual.data() + t0 * e.residual.stride() + j0;
                epi.ldr = e.residual.stride();
                epi.gelu = e.gelu;
                i8_tile(mr, a.u + t0 * a.ld, a.ld, a.scale + t0, w, pi, Y.data() + t0 * Y.stride() + j0, Y.stride(),
                        nc, epi);
            }
            if (fuse_norm && e.norm && b1 == p1) norm_rows(*e.norm, Y, t0, mr);
        }
    }
}

}  // namespace detail

/// Y [tokens][out] = epilogue(X [tokens][in] W^T) with X rounded to int8 per token (see the file
/// comment). Shapes, the bias length and the residual shape are checked; the residual must not
/// overlap Y, nor X overlap Y. Threads split the tokens (or, for few tokens, the panels).
inline void gemm(const packed_i8_weights& w, matrix_view<const float> X, matrix_view<float> Y, const gemm_epilogue& e,
                 int threads = 0) {
    const index_t T = X.rows(), N = w.rows();
    detail::check_gemm(N, w.cols(), X, Y, e);
    if (T == 0 || N == 0) return;
    // The calling thread's scratch holds the rounded activations; workers only read it.
    const index_t ld = 4 * w.k4();
    i8_activations a;
    a.ld = ld;
    std::uint8_t* u = quant::detail::scratch<std::uint8_t, 7>(T * ld + 64);
    float* sx = quant::detail::scratch<float, 7>(T);
    detail::quantize_rows(X, ld, u, sx, threads);
    a.u = u;
    a.scale = sx;
    const index_t strips = (T + detail::i8_mr - 1) / detail::i8_mr, panels = w.panels();
    const int t_max = resolve_threads(threads, strips * panels);
    if (strips >= 2 * static_cast<index_t>(t_max)) {
        parallel_chunks(
            strips, [&](std::size_t s0, std::size_t s1, int) { detail::i8_range(w, a, T, Y, e, s0, s1, 0, panels, true); },
            t_max);
    } else {
        parallel_chunks(
            panels, [&](std::size_t p0, std::size_t p1, int) { detail::i8_range(w, a, T, Y, e, 0, strips, p0, p1, false); },
            t_max);
        if (e.norm) detail::norm_rows(*e.norm, Y, 0, T);
    }
}

/// Y [tokens][out] = X [tokens][in] W^T (X rounded per token).
inline void gemm(const packed_i8_weights& w, matrix_view<const float> X, matrix_view<float> Y, int threads = 0) {
    gemm(w, X, Y, gemm_epilogue{}, threads);
}

/// y [out] = W x [in] (x rounded to int8).
inline void gemv(const packed_i8_weights& w, std::span<const float> x, std::span<float> y, int threads = 0) {
    KITE_REQUIRE(x.size() == w.cols() && y.size() == w.rows(), shape_error, "quant::gemv: x has ", x.size(),
                 " and y ", y.size(), " elements; expected in_features = ", w.cols(), " and out_features = ", w.rows());
    gemm(w, matrix_view<const float>(x.data(), 1, x.size()), matrix_view<float>(y.data(), 1, y.size()), threads);
}

/// The dequantized weights [out][in] (s_w q_w).
inline matrix<float> dequantize(const packed_i8_weights& w) {
    matrix<float> out(w.rows(), w.cols(), uninitialized);
    for (index_t r = 0; r < w.rows(); ++r)
        for (index_t c = 0; c < w.cols(); ++c) out(r, c) = w.value(r, c);
    return out;
}

/// The oracle of gemm(packed_i8_weights): rounds each row of X like the kernel (scalar code),
/// multiplies the integer levels in int64 and scales in double; Y = X W^T only (no epilogue).
inline matrix<float> reference_gemm(const packed_i8_weights& w, matrix_view<const float> X) {
    KITE_REQUIRE(X.cols() == w.cols(), shape_error, "quant::reference_gemm: X has ", X.cols(),
                 " columns; expected in_features = ", w.cols());
    const index_t T = X.rows(), K = X.cols(), N = w.rows();
    matrix<float> Y(T, N);
    std::vector<int> q(K);
    for (index_t t = 0; t < T; ++t) {
        const float* x = X.row(t).data();
        bool finite = true;
        float amax = 0.0f;
        for (index_t k = 0; k < K; ++k) {
            finite &= std::isfinite(x[k]);
            amax = std::max(amax, std::abs(x[k]));
        }
        const float inv = finite && amax > 0.0f ? 127.0f / amax : 0.0f;
        for (index_t k = 0; k < K; ++k)
            q[k] = finite ? static_cast<int>(std::clamp(std::nearbyint(x[k] * inv), -127.0f, 127.0f)) : 0;
        const double sx = finite ? static_cast<double>(amax / 127.0f) : std::numeric_limits<double>::quiet_NaN();
        for (index_t n = 0; n < N; ++n) {
            std::int64_t s = 0;
            for (index_t k = 0; k < K; ++k) s += static_cast<std::int64_t>(q[k]) * w.level(n, k);
            Y(t, n) = static_cast<float>(static_cast<double>(s) * sx * static_cast<double>(w.scale(n)));
        }
    }
    return Y;
}

/// The weights policy "int8 weights per output row, int8 activations per token at run time"
/// (data-free; plugs into make_linear and bert_encoder like any other method).
struct w8a8_packed {
    using format = packed_i8_weights;
    static constexpr const char* name = "w8a8_packed";
    format quantize(matrix_view<const float> w) const { return format(w); }
};

static_assert(weight_format<packed_i8_weights> && data_free_method<w8a8_packed>);

}  // namespace kite::quant

KITE_GCC12_AVX512_UNINIT_END
