#pragma once
/// @file kite/quant/packed_f32.hpp
/// packed_f32_weights: float32 weights W [out_features][in_features] repacked once, at load
/// time, into panels for a register-blocked GEMM, the fast path of kite's encoder (prefill-shaped
/// products: thousands of tokens against a few hundred or thousand outputs).
///
/// Layout: panels of NR = panel_width() output rows, each stored k-major, [panel][in][NR]
/// (the last panel zero-padded), so one k-step of the micro-kernel loads NR consecutive floats.
/// The micro-kernel keeps an MR x NR tile of Y in registers (6 tokens x 64 outputs with
/// AVX-512: 24 accumulators, 4 vector loads and 6 broadcasts per 24 FMAs); activations X are
/// read in place, row-major, one broadcast at a time. Blocking: K in chunks of at most 384
/// (the MR x KC strip of X stays in L1), panels in blocks of about 1 MiB (they stay in L2 while
/// a thread's strips pass over them). Threads split the tokens; few tokens split the panels.
///
/// The epilogue is fused: Y = LayerNorm(act(X W^T + b) + R), each part optional, the bias, GELU
/// and residual applied to the tile in registers, the LayerNorm to a strip's rows as soon as
/// they are complete (still in L1/L2), so a layer makes one pass over its output.
///
///   auto w = kite::quant::packed_f32_weights(W);              // W [out][in], copied and packed
///   kite::quant::gemm(w, X, Y);                                // Y [t][out] = X [t][in] W^T
///   kite::quant::gemm(w, X, Y, {.bias = b, .gelu = true});     // GELU(X W^T + b)
///   kite::quant::gemm(w, X, Y, {.bias = b, .residual = R, .norm = ln.row()});   // add & norm
///
/// It models kite::quant::weight_format (dequantize, gemv and gemm found by ADL), so
/// kite::model::linear<packed_f32_weights> works like any other format; kite::quant::f32_packed
/// is the matching (data-free) quantization policy. Oracle: kite::quant::reference::gemm.
/// Thread safety: const, safe to use from many threads at once.

#include <algorithm>
#include <cmath>
#include <cstring>
#include <optional>
#include <span>

#include "kite/core/activations.hpp"
#include "kite/core/buffer.hpp"
#include "kite/core/config.hpp"
#include "kite/core/diagnostics.hpp"
#include "kite/core/error.hpp"
#include "kite/core/matrix.hpp"
#include "kite/core/parallel.hpp"
#include "kite/core/simd.hpp"
#include "kite/core/validate.hpp"
#include "kite/quant/concepts.hpp"
#include "kite/quant/detail/float_gemm.hpp"

KITE_GCC12_AVX512_UNINIT_BEGIN  // see kite/core/diagnostics.hpp

namespace kite::quant {


/// Float32 weights packed in k-major panels for kite::quant::gemm (see the file comment).
class packed_f32_weights {
public:
    packed_f32_weights() = default;
    /// Copies and packs W [out_features][in_features]; throws on non-finite values.
    explicit packed_f32_weights(matrix_view<const float> w) : rows_(w.rows()), cols_(w.cols()) {
        require_finite(w, "packed_f32_weights: W");
        constexpr index_t nr = detail::pgemm_nr;
        panels_ = (rows_ + nr - 1) / nr;
        data_ = aligned_buffer<float>(panels_ * cols_ * nr);  // zeroed: padded rows stay 0
        if (cols_ == 0) return;  // nothing to copy, and no offsets into an empty (null) buffer
        for (index_t r = 0; r < rows_; ++r) {
            float* dst = data_.data() + (r / nr) * cols_ * nr + r % nr;
            const float* src = w.row(r).data();
            for (index_t c = 0; c < cols_; ++c) dst[c * nr] = src[c];
        }
    }
    packed_f32_weights(packed_f32_weights&&) noexcept = default;
    packed_f32_weights& operator=(packed_f32_weights&&) noexcept = default;
    packed_f32_weights clone() const {
        packed_f32_weights o;
        o.rows_ = rows_;
        o.cols_ = cols_;
        o.panels_ = panels_;
        o.data_ = data_.clone();
        return o;
    }

    /// Output rows per panel (NR).
    static constexpr index_t panel_width() noexcept { return detail::pgemm_nr; }
    index_t rows() const noexcept { return rows_; }
    index_t cols() const noexcept { return cols_; }
    index_t panels() const noexcept { return panels_; }
    std::size_t bytes() const noexcept { return data_.size_bytes(); }
    /// W[r][c].
    float value(index_t r, index_t c) const noexcept {
        constexpr index_t nr = detail::pgemm_nr;
        return data_[(r / nr) * cols_ * nr + c * nr + r % nr];
    }
    /// Panel p: [in_features][NR].
    const float* panel(index_t p) const noexcept { return data_.data() + p * cols_ * detail::pgemm_nr; }

private:
    index_t rows_ = 0, cols_ = 0, panels_ = 0;
    aligned_buffer<float> data_;  // [panel][in][NR]
};

/// A LayerNorm over rows of dim n: y = (x - mean) / sqrt(var + eps) * weight + bias (bias may be
/// empty). kite::model::layer_norm::row() gives one; the spans must outlive the gemm call.
struct row_norm {
    std::span<const float> weight;
    std::span<const float> bias{};
    float eps = 1e-12f;
};

/// What gemm does to X W^T before storing it:
///
///   Y = norm(act(X W^T + bias) + residual)
///
/// act is GELU (exact, erf) when `gelu` is set; norm is a LayerNorm over each output row when
/// `norm` is given (a post-LN transformer's "add & norm", applied while the row is still in
/// cache). Each part is optional. The residual [tokens][out] must not overlap Y.
struct gemm_epilogue {
    std::span<const float> bias{};        ///< [out_features] or empty
    matrix_view<const float> residual{};  ///< [tokens][out_features] or empty
    bool gelu = false;
    std::optional<row_norm> norm{};       ///< LayerNorm of dim out_features, or none
};

namespace detail {

/// x [n] = LayerNorm(x) in place with weight w, bias b (or null) and eps: the vectorised twin
/// of layer_norm::forward (two passes: the variance of centred values does not cancel).
inline void layer_norm_inplace(float* x, index_t n, const float* w, const float* b, float eps) noexcept {
    const float mean = simd::sum(x, n) / static_cast<float>(n);
    float var = 0.0f;
    index_t i = 0;
#if KITE_SIMD_ENABLED
    using vec = simd::fbatch;
    constexpr index_t W = pgemm_lanes;
    vec acc(0.0f);
    for (; i + W <= n; i += W) {
        const vec d = vec::load_unaligned(x + i) - vec(mean);
        acc = xsimd::fma(d, d, acc);
    }
    var = simd::reduce_add(acc);
#endif
    for (; i < n; ++i) var += (x[i] - mean) * (x[i] - mean);
    const float inv = 1.0f / std::sqrt(var / static_cast<float>(n) + eps);
    i = 0;
#if KITE_SIMD_ENABLED
    for (; i + W <= n; i += W) {
        vec y = (vec::load_unaligned(x + i) - vec(mean)) * vec(inv) * vec::load_unaligned(w + i);
        if (b) y += vec::load_unaligned(b + i);
        y.store_unaligned(x + i);
    }
#endif
    for (; i < n; ++i) x[i] = (x[i] - mean) * inv * w[i] + (b ? b[i] : 0.0f);
}

/// Rows [t0, t0 + n) of Y normalised by `norm` in place.
inline void norm_rows(const row_norm& norm, matrix_view<float> Y, index_t t0, index_t n) noexcept {
    const float* b = norm.bias.empty() ? nullptr : norm.bias.data();
    for (index_t t = t0; t < t0 + n; ++t) layer_norm_inplace(Y.row(t).data(), Y.cols(), norm.weight.data(), b, norm.eps);
}

/// The tokens [s0 * MR, s1 * MR) x panels [p0, p1) of Y = epilogue(X W^T); the LayerNorm of the
/// epilogue only when `fuse_norm` (the range then covers every panel).
inline void pgemm_range(const packed_f32_weights& w, matrix_view<const float> X, matrix_view<float> Y,
                        const gemm_epilogue& e, index_t s0, index_t s1, index_t p0, index_t p1, bool fuse_norm) noexcept {
    constexpr index_t NR = pgemm_nr;
    const index_t T = X.rows(), K = w.cols(), N = w.rows();
    const index_t chunks = (K + pgemm_max_kc - 1) / pgemm_max_kc;
    const index_t kc = (K + chunks - 1) / chunks;
    const index_t block = std::max<index_t>(1, pgemm_block_bytes / (kc * NR * sizeof(float)));
    for (index_t k0 = 0; k0 < K; k0 += kc) {
        const index_t kn = std::min(kc, K - k0);
        const bool first = k0 == 0, last = k0 + kn >= K;
        for (index_t b0 = p0; b0 < p1; b0 += block) {
            const index_t b1 = std::min(p1, b0 + block);
            for (index_t s = s0; s < s1; ++s) {
                const index_t t0 = s * pgemm_mr;
                const int mr = static_cast<int>(std::min<index_t>(pgemm_mr, T - t0));
                const float* x = X.data() + t0 * X.stride() + k0;
                for (index_t pi = b0; pi < b1; ++pi) {
                    const index_t j0 = pi * NR, nc = std::min(NR, N - j0);
                    pgemm_tile_epi epi{};
                    if (last) {
                        epi.bias = e.bias.empty() ? nullptr : e.bias.data() + j0;
                        epi.res = e.residual.empty() ? nullptr : e.residual.data() + t0 * e.residual.stride() + j0;
                        epi.ldr = e.residual.stride();
                        epi.gelu = e.gelu;
                    }
                    pgemm_tile(mr, x, X.stride(), w.panel(pi) + k0 * NR, kn, Y.data() + t0 * Y.stride() + j0,
                               Y.stride(), nc, !first, last ? &epi : nullptr);
                }
                // The strip's rows are complete once the last block of the last K chunk is done.
                if (fuse_norm && e.norm && last && b1 == p1) norm_rows(*e.norm, Y, t0, mr);
            }
        }
    }
}

inline bool overlaps(const float* a, index_t an, const float* b, index_t bn) noexcept {
    return an && bn && a < b + bn && b < a + an;
}

/// The argument checks of every packed gemm: Y [T][N] = epilogue(X [T][K] W^T) with W [N][K].
inline void check_gemm(index_t N, index_t K, matrix_view<const float> X, matrix_view<float> Y,
                       const gemm_epilogue& e) {
    const index_t T = X.rows();
    KITE_REQUIRE(X.cols() == K, shape_error, "quant::gemm: X has ", X.cols(),
                 " columns; expected in_features = ", K);
    KITE_REQUIRE(Y.rows() == T && Y.cols() == N, shape_error, "quant::gemm: Y has shape ", Y.rows(), " x ", Y.cols(),
                 "; expected ", T, " x ", N, " (tokens x out_features)");
    KITE_REQUIRE(e.bias.empty() || e.bias.size() == N, shape_error, "quant::gemm: bias has ", e.bias.size(),
                 " elements; expected out_features = ", N, " or none");
    KITE_REQUIRE(e.residual.empty() || (e.residual.rows() == T && e.residual.cols() == N), shape_error,
                 "quant::gemm: residual has shape ", e.residual.rows(), " x ", e.residual.cols(), "; expected ", T,
                 " x ", N);
    KITE_REQUIRE(!e.norm || e.norm->weight.size() == N, shape_error, "quant::gemm: the epilogue's LayerNorm has dim ",
                 e.norm ? e.norm->weight.size() : 0, "; expected out_features = ", N);
    const auto extent = [](const auto& v) { return v.empty() ? index_t{0} : (v.rows() - 1) * v.stride() + v.cols(); };
    KITE_REQUIRE(!overlaps(Y.data(), extent(Y), X.data(), extent(X)) &&
                     !overlaps(Y.data(), extent(Y), e.residual.data(), extent(e.residual)),
                 invalid_argument, "quant::gemm: Y overlaps X or the residual; expected separate buffers");
}

}  // namespace detail

/// Y [tokens][out] = epilogue(X [tokens][in] W^T). Threads split the tokens (or, for fewer than
/// two strips of tokens per thread, the panels). Shapes, the bias length and the residual shape
/// are checked; the residual must not overlap Y, nor X overlap Y.
inline void gemm(const packed_f32_weights& w, matrix_view<const float> X, matrix_view<float> Y,
                 const gemm_epilogue& e, int threads = 0) {
    const index_t T = X.rows(), N = w.rows();
    detail::check_gemm(w.rows(), w.cols(), X, Y, e);
    if (T == 0 || N == 0) return;
    if (w.cols() == 0) {  // empty sum: only the epilogue remains
        for (index_t t = 0; t < T; ++t) {
            float* y = Y.row(t).data();
            for (index_t j = 0; j < N; ++j)
                y[j] = e.bias.empty() ? 0.0f : e.bias[j];
            if (e.gelu)
                for (index_t j = 0; j < N; ++j) y[j] = 0.5f * y[j] * (1.0f + std::erf(y[j] * act::detail::inv_sqrt2));
            if (!e.residual.empty())
                for (index_t j = 0; j < N; ++j) y[j] += e.residual(t, j);
        }
        if (e.norm) detail::norm_rows(*e.norm, Y, 0, T);
        return;
    }
    const index_t strips = (T + detail::pgemm_mr - 1) / detail::pgemm_mr, panels = w.panels();
    const int t_max = resolve_threads(threads, strips * panels);
    if (strips >= 2 * static_cast<index_t>(t_max)) {
        parallel_chunks(
            strips, [&](std::size_t s0, std::size_t s1, int) { detail::pgemm_range(w, X, Y, e, s0, s1, 0, panels, true); },
            t_max);
    } else {
        parallel_chunks(
            panels, [&](std::size_t p0, std::size_t p1, int) { detail::pgemm_range(w, X, Y, e, 0, strips, p0, p1, false); },
            t_max);
        // Rows may be split across threads: normalise them afterwards (few tokens here).
        if (e.norm) detail::norm_rows(*e.norm, Y, 0, T);
    }
}

/// Y [tokens][out] = X [tokens][in] W^T.
inline void gemm(const packed_f32_weights& w, matrix_view<const float> X, matrix_view<float> Y, int threads = 0) {
    gemm(w, X, Y, gemm_epilogue{}, threads);
}

/// y [out] = W x [in].
inline void gemv(const packed_f32_weights& w, std::span<const float> x, std::span<float> y, int threads = 0) {
    KITE_REQUIRE(x.size() == w.cols() && y.size() == w.rows(), shape_error, "quant::gemv: x has ", x.size(),
                 " and y ", y.size(), " elements; expected in_features = ", w.cols(), " and out_features = ", w.rows());
    gemm(w, matrix_view<const float>(x.data(), 1, x.size()), matrix_view<float>(y.data(), 1, y.size()), threads);
}

/// The float matrix [out][in] the packed weights hold.
inline matrix<float> dequantize(const packed_f32_weights& w) {
    matrix<float> out(w.rows(), w.cols(), uninitialized);
    for (index_t r = 0; r < w.rows(); ++r)
        for (index_t c = 0; c < w.cols(); ++c) out(r, c) = w.value(r, c);
    return out;
}

/// The weights policy that keeps float32 and packs it for kite::quant::gemm (a data-free
/// "quantization" method, so it plugs into make_linear and the encoder like any other).
struct f32_packed {
    using format = packed_f32_weights;
    static constexpr const char* name = "f32_packed";
    format quantize(matrix_view<const float> w) const { return format(w); }
};

static_assert(weight_format<packed_f32_weights> && data_free_method<f32_packed>);

}  // namespace kite::quant

KITE_GCC12_AVX512_UNINIT_END
