#pragma once
/// @file kite/model/layers.hpp
/// The layers transformers are built from, shared by kite's decoder and encoder:
///
///   embedding                 token id -> row of a [vocab][dim] table
///   linear<F>                 y = W x (+ b) over any kite::quant weight format (f32, bf16,
///                             absmax / zero_point, GPTQ, AWQ, LLM.int8) or quantization method
///   rms_norm, layer_norm      normalisation over the last dimension (LayerNorm bias optional)
///   act::silu, gelu, gelu_tanh, relu   activations (GELU exact, with erf)
///   feed_forward<Kind, F>     MLP: mlp::swiglu (gated), mlp::gelu, mlp::gelu_tanh, mlp::relu
///   add_residual              x += y
///
/// Every layer has a single-token form over spans (decode: x [dim]) and a batched form over
/// row-major matrices (prefill and encoders: X [tokens][dim]); both compute the same values.
///
///   auto q = kite::model::make_linear(kite::quant::absmax<8>{}, W, bias);  // quantize W [out][in]
///   q.forward(X, Y);                                                       // Y [t][out] = X W^T + b
///   kite::model::layer_norm ln(gamma, beta, 1e-12f);
///   ln.forward(Y, Y);
///
/// Layers are immutable after construction and safe to call from many threads; the scratch a
/// feed_forward needs is passed in by the caller (one per thread), so steady-state calls do not
/// allocate.

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <functional>
#include <span>
#include <type_traits>
#include <utility>

#include "kite/core/activations.hpp"
#include "kite/core/buffer.hpp"
#include "kite/core/diagnostics.hpp"
#include "kite/core/error.hpp"
#include "kite/core/matrix.hpp"
#include "kite/core/parallel.hpp"
#include "kite/core/simd.hpp"
#include "kite/core/validate.hpp"
#include "kite/model/concepts.hpp"
#include "kite/model/config.hpp"
#include "kite/quant.hpp"

KITE_GCC12_AVX512_UNINIT_BEGIN  // xsimd exp/erf/tanh; see kite/core/diagnostics.hpp

namespace kite::model {

// ---- activations ----------------------------------------------------------------------------

namespace act {

namespace detail {
// The SIMD math lives in kite/core/activations.hpp (the packed GEMM epilogues below model use it too).
using kite::act::detail::map_inplace;
using kite::act::detail::inv_sqrt2;
#if KITE_SIMD_ENABLED
using kite::act::detail::erf_rational;
using kite::act::detail::gelu_erf;
using kite::act::detail::horner;
#endif
}  // namespace detail

/// SiLU (swish): x * sigmoid(x). Llama, Qwen2 (SwiGLU).
struct silu {
    static constexpr activation kind = activation::silu;
    static constexpr const char* name = "silu";
    static float apply(float x) noexcept { return x / (1.0f + std::exp(-x)); }
    static void apply(float* x, index_t n) noexcept {
        detail::map_inplace(x, n, [](float v) { return apply(v); },
                            [](auto v) { return v / (1.0f + xsimd::exp(-v)); });
    }
    static double reference(double x) noexcept { return x / (1.0 + std::exp(-x)); }
};

/// GELU, exact: x * Phi(x) = 0.5 x (1 + erf(x / sqrt 2)). BERT, torch.nn.GELU().
struct gelu {
    static constexpr activation kind = activation::gelu;
    static constexpr const char* name = "gelu";
    static constexpr float inv_sqrt2 = detail::inv_sqrt2;
    static float apply(float x) noexcept { return 0.5f * x * (1.0f + std::erf(x * inv_sqrt2)); }
    static void apply(float* x, index_t n) noexcept {
        detail::map_inplace(x, n, [](float v) { return apply(v); },
                            [](auto v) { return detail::gelu_erf(v); });
    }
    static double reference(double x) noexcept { return 0.5 * x * (1.0 + std::erf(x / std::sqrt(2.0))); }
};

/// GELU, tanh approximation: 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))). GPT-2's
/// "gelu_new", BLOOM, "gelu_pytorch_tanh".
struct gelu_tanh {
    static constexpr activation kind = activation::gelu_tanh;
    static constexpr const char* name = "gelu_tanh";
    static constexpr float k0 = 0.7978845608028654f;  // sqrt(2 / pi)
    static constexpr float k1 = 0.044715f;
    static float apply(float x) noexcept { return 0.5f * x * (1.0f + std::tanh(k0 * (x + k1 * x * x * x))); }
    static void apply(float* x, index_t n) noexcept {
        detail::map_inplace(x, n, [](float v) { return apply(v); },
                            [](auto v) { return 0.5f * v * (1.0f + xsimd::tanh(k0 * (v + k1 * v * v * v))); });
    }
    static double reference(double x) noexcept {
        return 0.5 * x * (1.0 + std::tanh(std::sqrt(2.0 / 3.14159265358979323846) * (x + 0.044715 * x * x * x)));
    }
};

/// ReLU: max(x, 0).
struct relu {
    static constexpr activation kind = activation::relu;
    static constexpr const char* name = "relu";
    static float apply(float x) noexcept { return x > 0.0f ? x : 0.0f; }
    static void apply(float* x, index_t n) noexcept {
        detail::map_inplace(x, n, [](float v) { return apply(v); },
                            [](auto v) { return xsimd::max(v, decltype(v)(0.0f)); });
    }
    static double reference(double x) noexcept { return x > 0.0 ? x : 0.0; }
};

static_assert(activation_function<silu> && activation_function<gelu> && activation_function<gelu_tanh> &&
              activation_function<relu>);

/// gate[i] = A(gate[i]) * up[i] for i < n (the gated linear unit of SwiGLU-style MLPs).
template <activation_function A>
void gated(float* KITE_RESTRICT gate, const float* KITE_RESTRICT up, index_t n) noexcept {
    A::apply(gate, n);
    for (index_t i = 0; i < n; ++i) gate[i] *= up[i];
}

}  // namespace act

// ---- residuals ------------------------------------------------------------------------------

/// x[i] += y[i] (a residual connection); shape_error when the lengths differ.
inline void add_residual(std::span<float> x, std::span<const float> y) {
    KITE_REQUIRE(x.size() == y.size(), shape_error, "add_residual: x has ", x.size(), " elements, y has ",
                 y.size(), "; expected equal");
    simd::axpy(1.0f, y.data(), x.data(), x.size());
}

/// X += Y for [tokens][dim] matrices of equal shape.
inline void add_residual(matrix_view<float> x, matrix_view<const float> y) {
    KITE_REQUIRE(x.rows() == y.rows() && x.cols() == y.cols(), shape_error, "add_residual: x is ", x.rows(),
                 " x ", x.cols(), ", y is ", y.rows(), " x ", y.cols(), "; expected equal shapes");
    for (index_t t = 0; t < x.rows(); ++t) simd::axpy(1.0f, y.row(t).data(), x.row(t).data(), x.cols());
}

// ---- token embedding ------------------------------------------------------------------------

/// A token embedding table [vocab][dim] (float32, owned).
class embedding {
public:
    embedding() = default;
    /// Takes the table [vocab][dim]; throws on an empty or non-finite table.
    explicit embedding(matrix<float> table) : table_(std::move(table)) {
        KITE_REQUIRE(table_.rows() >= 1 && table_.cols() >= 1, shape_error, "embedding: table is ",
                     table_.rows(), " x ", table_.cols(), "; expected [vocab >= 1][dim >= 1]");
        require_finite(table_.view(), "embedding: table");
    }
    /// Copies `table` [vocab][dim].
    explicit embedding(matrix_view<const float> table) : embedding(matrix<float>(table)) {}
    /// A table kept in a weight format (a GGUF file's quantized token embedding, used as
    /// stored): row lookups decode one row each, `decode(id, out)` writing out [dim].
    template <class Format>
        requires requires(const Format& f, index_t r, float* o) { f.decode_row(r, o); }
    static embedding decoded(Format table) {
        embedding e;
        e.vocab_ = table.rows();
        e.dim_ = table.cols();
        KITE_REQUIRE(e.vocab_ >= 1 && e.dim_ >= 1, shape_error, "embedding: table is ", e.vocab_, " x ", e.dim_,
                     "; expected [vocab >= 1][dim >= 1]");
        e.decode_ = [t = std::move(table)](index_t r, float* out) { t.decode_row(r, out); };
        return e;
    }

    index_t vocab_size() const noexcept { return decode_ ? vocab_ : table_.rows(); }
    index_t dim() const noexcept { return decode_ ? dim_ : table_.cols(); }
    /// The float table, [vocab][dim] (empty for a decoded table).
    matrix_view<const float> table() const noexcept { return table_.view(); }

    /// out [dim] = table[id]; invalid_argument for an id outside [0, vocab).
    void forward(std::int32_t id, std::span<float> out) const {
        check_id(id, 0);
        KITE_REQUIRE(out.size() == dim(), shape_error, "embedding::forward: out has ", out.size(),
                     " elements; expected dim = ", dim());
        row(static_cast<index_t>(id), out.data());
    }
    /// out [tokens][dim], row t = table[ids[t]].
    void forward(std::span<const std::int32_t> ids, matrix_view<float> out) const {
        require_shape(out, ids.size(), dim(), "embedding::forward: out");
        for (index_t t = 0; t < ids.size(); ++t) check_id(ids[t], t);
        for (index_t t = 0; t < ids.size(); ++t) row(static_cast<index_t>(ids[t]), out.row(t).data());
    }

private:
    void row(index_t id, float* out) const {
        if (decode_) {
            decode_(id, out);
        } else {
            std::memcpy(out, table_.row(id).data(), dim() * sizeof(float));
        }
    }
    void check_id(std::int32_t id, index_t at) const {
        KITE_REQUIRE(id >= 0 && static_cast<index_t>(id) < vocab_size(), invalid_argument,
                     "embedding: token id ", id, " (at ", at, ") is outside [0, ", vocab_size(), ")");
    }
    matrix<float> table_;  // [vocab][dim]
    index_t vocab_ = 0, dim_ = 0;
    std::function<void(index_t, float*)> decode_;
};

// ---- linear ---------------------------------------------------------------------------------

namespace detail {
template <class T>
struct format_of {
    static_assert(quant::weight_format<T> || quant::quant_method<T>,
                  "kite::model::linear<T>: T must be a kite::quant weight format (dense_weights, packed_weights, "
                  "awq_weights, llm_int8_weights) or a quantization method naming one (f32, absmax<8>, gptq<4, 128>, ...)");
    using type = T;
};
template <class T>
    requires quant::quant_method<T>
struct format_of<T> {
    using type = typename T::format;
};

/// y[i] += b[i] for each row.
inline void add_bias(float* KITE_RESTRICT y, const float* KITE_RESTRICT b, index_t n) noexcept {
    for (index_t i = 0; i < n; ++i) y[i] += b[i];
}
}  // namespace detail

/// The weight format a weights policy stores: the format itself, or a method's format.
template <class T>
using format_t = typename detail::format_of<T>::type;

/// A linear layer y = W x + b, W [out_features][in_features] in weight format `F` (or the format
/// of the quantization method `F`), with an optional float bias [out_features].
template <class F>
class linear {
public:
    using format = format_t<F>;

    linear() = default;
    /// Takes the weights and copies the bias (empty: no bias).
    explicit linear(format w, std::span<const float> bias = {}) : w_(std::move(w)) {
        KITE_REQUIRE(bias.empty() || bias.size() == w_.rows(), shape_error, "linear: bias has ", bias.size(),
                     " elements; expected out_features = ", w_.rows(), " or none");
        if (!bias.empty()) {
            require_finite(bias, "linear: bias");
            bias_ = aligned_buffer<float>(bias);
        }
    }
    linear(linear&&) noexcept = default;
    linear& operator=(linear&&) noexcept = default;

    index_t in_features() const noexcept { return w_.cols(); }
    index_t out_features() const noexcept { return w_.rows(); }
    bool has_bias() const noexcept { return !bias_.empty(); }
    /// [out_features], or empty.
    std::span<const float> bias() const noexcept { return bias_.span(); }
    const format& weights() const noexcept { return w_; }
    /// Bytes of weights and bias (what one forward pass over a token reads).
    std::size_t bytes() const noexcept { return w_.bytes() + bias_.size_bytes(); }
    /// A hint that forward() comes next: formats with a prefetch() start reading their first
    /// weights (ggml_a8_weights); for the others it does nothing.
    void prefetch() const noexcept {
        if constexpr (requires(const format& f) { f.prefetch(); }) w_.prefetch();
    }

    /// y [out] = W x [in] + b. threads = 0: kite::max_threads(), or one thread when the
    /// weights are too small to repay waking the others (below parallel_bytes).
    void forward(std::span<const float> x, std::span<float> y, int threads = 0) const {
        gemv(w_, x, y, pick_threads(threads, 1));  // ADL: the format's kernel (checks the shapes)
        if (has_bias()) detail::add_bias(y.data(), bias_.data(), y.size());
    }
    /// Y [tokens][out] = X [tokens][in] W^T + b.
    void forward(matrix_view<const float> x, matrix_view<float> y, int threads = 0) const {
        gemm(w_, x, y, pick_threads(threads, x.rows()));
        if (has_bias())
            for (index_t t = 0; t < y.rows(); ++t) detail::add_bias(y.row(t).data(), bias_.data(), y.cols());
    }

    /// Weight bytes x tokens below which forward() with threads = 0 runs on one thread: a
    /// parallel region costs microseconds, about what streaming this much data takes.
    static constexpr std::size_t parallel_bytes = std::size_t{128} << 10;

private:
    int pick_threads(int threads, index_t tokens) const noexcept {
        return threads == 0 && bytes() * std::max<index_t>(tokens, 1) < parallel_bytes ? 1 : threads;
    }

    format w_;
    aligned_buffer<float> bias_;  // [out_features] or empty
};

/// A linear layer from float weights W [out][in]: quantized by `method` (quant::f32 keeps
/// float32). Methods that need calibration inputs (GPTQ, AWQ) take `calibration`
/// [tokens][in_features], the activations the layer sees; invalid_argument when it is empty.
template <quant::quant_method M>
linear<typename M::format> make_linear(const M& method, matrix_view<const float> w, std::span<const float> bias = {},
                                       matrix_view<const float> calibration = {}) {
    if (!calibration.empty()) return linear<typename M::format>(quant::quantize(method, w, calibration), bias);
    if constexpr (quant::data_free_method<M>) {
        return linear<typename M::format>(method.quantize(w), bias);
    } else {
        kite::detail::raise<invalid_argument>("make_linear: method ", M::name,
                                              " needs calibration inputs [tokens][", w.cols(),
                                              "]; none were given");
    }
}

// ---- norms ----------------------------------------------------------------------------------

namespace detail {
inline aligned_buffer<float> checked_norm_param(std::span<const float> v, const char* what) {
    KITE_REQUIRE(!v.empty(), shape_error, what, " is empty; expected [dim >= 1]");
    require_finite(v, what);
    return aligned_buffer<float>(v);
}
inline void require_eps(float eps, const char* who) {
    KITE_REQUIRE(std::isfinite(eps) && eps >= 0.0f, invalid_argument, who, ": eps = ", eps,
                 "; expected a finite value >= 0");
}
/// Rows of a [tokens][dim] pair, in parallel when there is enough work.
template <class Row>
void for_rows(index_t rows, index_t dim, Row&& row) {
    const int t = rows * dim >= (index_t{1} << 15) ? 0 : 1;
    parallel_for(0, rows, [&](std::size_t r) { row(r); }, t);
}

/// The checked single-token and batched forms of a row-wise norm; Derived supplies dim() and
/// row(x, y) (unchecked, y may alias x).
template <class Derived>
class row_norm {
public:
    /// y [dim] = norm(x [dim]); y may alias x.
    void forward(std::span<const float> x, std::span<float> y) const {
        check(x.size(), y.size());
        self().row(x.data(), y.data());
    }
    /// Y [tokens][dim] = norm of each row of X; Y may alias X.
    void forward(matrix_view<const float> x, matrix_view<float> y) const {
        KITE_REQUIRE(x.rows() == y.rows(), shape_error, Derived::who, ": x has ", x.rows(), " rows, y ", y.rows(),
                     "; expected equal");
        check(x.cols(), y.cols());
        for_rows(x.rows(), self().dim(), [&](index_t t) { self().row(x.row(t).data(), y.row(t).data()); });
    }

private:
    const Derived& self() const noexcept { return static_cast<const Derived&>(*this); }
    void check(index_t xn, index_t yn) const {
        KITE_REQUIRE(xn == self().dim() && yn == self().dim(), shape_error, Derived::who, ": x has ", xn, " and y ",
                     yn, " elements per row; expected dim = ", self().dim());
    }
};
}  // namespace detail

/// RMSNorm (Zhang & Sennrich 2019): y = x / sqrt(mean(x^2) + eps) * weight. Llama, Qwen2.
class rms_norm : public detail::row_norm<rms_norm> {
public:
    static constexpr norm_type kind = norm_type::rms;
    static constexpr const char* name = "rms";

    rms_norm() = default;
    /// Copies weight [dim].
    rms_norm(std::span<const float> weight, float eps) : w_(detail::checked_norm_param(weight, "rms_norm: weight")), eps_(eps) {
        detail::require_eps(eps, "rms_norm");
    }
    /// The norm_layer factory: `bias` must be empty (RMSNorm has none).
    static rms_norm make(std::span<const float> weight, std::span<const float> bias, float eps) {
        KITE_REQUIRE(bias.empty(), invalid_argument, "rms_norm: given a bias of ", bias.size(),
                     " elements; RMSNorm has none (a config with LayerNorm needs kite::model::layer_norm)");
        return rms_norm(weight, eps);
    }

    index_t dim() const noexcept { return w_.size(); }
    float eps() const noexcept { return eps_; }
    std::span<const float> weight() const noexcept { return w_.span(); }
    // forward(x [dim], y [dim]) and forward(X [tokens][dim], Y [tokens][dim]): detail::row_norm.

private:
    friend class detail::row_norm<rms_norm>;
    static constexpr const char* who = "rms_norm";
    void row(const float* x, float* y) const noexcept {
        const index_t n = dim();
        const float ms = simd::dot(x, x, n) / static_cast<float>(n);
        const float inv = 1.0f / std::sqrt(ms + eps_);
        const float* w = w_.data();
        for (index_t i = 0; i < n; ++i) y[i] = x[i] * inv * w[i];
    }
    aligned_buffer<float> w_;  // [dim]
    float eps_ = 1e-6f;
};

/// LayerNorm (Ba et al. 2016): y = (x - mean) / sqrt(var + eps) * weight + bias, the variance
/// biased (divided by dim, as torch). The bias is optional. BERT, GPT-2, BLOOM.
class layer_norm : public detail::row_norm<layer_norm> {
public:
    static constexpr norm_type kind = norm_type::layer;
    static constexpr const char* name = "layer";

    layer_norm() = default;
    /// Copies weight [dim] and bias [dim] (empty: no bias).
    layer_norm(std::span<const float> weight, std::span<const float> bias, float eps)
        : w_(detail::checked_norm_param(weight, "layer_norm: weight")), eps_(eps) {
        detail::require_eps(eps, "layer_norm");
        KITE_REQUIRE(bias.empty() || bias.size() == weight.size(), shape_error, "layer_norm: bias has ",
                     bias.size(), " elements; expected dim = ", weight.size(), " or none");
        if (!bias.empty()) b_ = detail::checked_norm_param(bias, "layer_norm: bias");
    }
    /// The norm_layer factory.
    static layer_norm make(std::span<const float> weight, std::span<const float> bias, float eps) {
        return layer_norm(weight, bias, eps);
    }

    index_t dim() const noexcept { return w_.size(); }
    float eps() const noexcept { return eps_; }
    std::span<const float> weight() const noexcept { return w_.span(); }
    /// [dim], or empty.
    std::span<const float> bias() const noexcept { return b_.span(); }
    bool has_bias() const noexcept { return !b_.empty(); }
    /// The weights as the fused GEMM epilogue takes them (kite/quant/packed_f32.hpp).
    quant::row_norm row() const noexcept { return {weight(), bias(), eps()}; }
    // forward(x [dim], y [dim]) and forward(X [tokens][dim], Y [tokens][dim]): detail::row_norm.

private:
    friend class detail::row_norm<layer_norm>;
    static constexpr const char* who = "layer_norm";
    void row(const float* x, float* y) const noexcept {
        const index_t n = dim();
        const float mean = simd::sum(x, n) / static_cast<float>(n);
        // Two passes: the variance of centred values does not cancel catastrophically.
        float var = 0.0f;
        for (index_t i = 0; i < n; ++i) {
            const float d = x[i] - mean;
            var += d * d;
        }
        const float inv = 1.0f / std::sqrt(var / static_cast<float>(n) + eps_);
        const float* w = w_.data();
        if (has_bias()) {
            const float* b = b_.data();
            for (index_t i = 0; i < n; ++i) y[i] = (x[i] - mean) * inv * w[i] + b[i];
        } else {
            for (index_t i = 0; i < n; ++i) y[i] = (x[i] - mean) * inv * w[i];
        }
    }
    aligned_buffer<float> w_;  // [dim]
    aligned_buffer<float> b_;  // [dim] or empty
    float eps_ = 1e-5f;
};

/// Norm policies by name: `kite::model::norm::rms`, `kite::model::norm::layer`.
namespace norm {
using rms = rms_norm;
using layer = layer_norm;
}  // namespace norm

static_assert(norm_layer<rms_norm> && norm_layer<layer_norm>);

// ---- MLP ------------------------------------------------------------------------------------

namespace mlp {
/// An MLP kind: gated (down(A(gate x) * up x)) or plain (down(A(up x))) with activation A.
template <activation_function A, bool Gated>
struct kind {
    using activation = A;
    static constexpr bool gated = Gated;
    static constexpr mlp_type type = Gated ? mlp_type::gated : mlp_type::plain;
    static constexpr const char* name = Gated ? "gated" : "plain";
};
/// SwiGLU (Llama, Qwen2): down(silu(gate x) * up x).
using swiglu = kind<act::silu, true>;
/// GELU MLP (BERT): down(gelu(up x)), exact erf GELU.
using gelu = kind<act::gelu, false>;
/// GELU-tanh MLP (GPT-2, BLOOM): down(gelu_tanh(up x)).
using gelu_tanh = kind<act::gelu_tanh, false>;
/// ReLU MLP: down(relu(up x)).
using relu = kind<act::relu, false>;
}  // namespace mlp

static_assert(mlp_kind<mlp::swiglu> && mlp_kind<mlp::gelu> && mlp_kind<mlp::gelu_tanh>);

/// A transformer MLP of kind `Kind` with weights in format `F`.
/// Gated kinds hold gate and up as one fused projection `up` [2 * intermediate][dim] (rows
/// [0, I) the gate, rows [I, 2I) the up projection), so one pass over the input serves both;
/// plain kinds hold up [intermediate][dim]. down is [dim][intermediate].
template <mlp_kind Kind, class F = quant::f32>
class feed_forward {
public:
    using kind = Kind;
    using format = format_t<F>;

    feed_forward() = default;
    /// `up`: the up projection (gated kinds: gate rows then up rows); `down`: back to dim.
    feed_forward(linear<format> up, linear<format> down) : up_(std::move(up)), down_(std::move(down)) {
        const index_t factor = Kind::gated ? 2 : 1;
        KITE_REQUIRE(up_.out_features() % factor == 0 && up_.out_features() / factor == down_.in_features(),
                     shape_error, "feed_forward: up projection has ", up_.out_features(),
                     " outputs and down ", down_.in_features(), " inputs; expected up = ", factor, " x down inputs",
                     Kind::gated ? " (gate and up stacked)" : "");
        KITE_REQUIRE(up_.in_features() == down_.out_features(), shape_error, "feed_forward: up takes ",
                     up_.in_features(), " inputs but down gives ", down_.out_features(), "; expected equal (dim)");
    }

    index_t dim() const noexcept { return up_.in_features(); }
    index_t intermediate() const noexcept { return down_.in_features(); }
    const linear<format>& up() const noexcept { return up_; }
    const linear<format>& down() const noexcept { return down_; }
    std::size_t bytes() const noexcept { return up_.bytes() + down_.bytes(); }

    /// y [dim] = MLP(x [dim]). `scratch` is resized (it keeps its capacity between calls).
    void forward(std::span<const float> x, std::span<float> y, matrix<float>& scratch, int threads = 0) const {
        forward(matrix_view<const float>(x.data(), 1, x.size()), matrix_view<float>(y.data(), 1, y.size()), scratch,
                threads);
    }
    /// Y [tokens][dim] = MLP of each row of X [tokens][dim]; Y must not alias X.
    void forward(matrix_view<const float> x, matrix_view<float> y, matrix<float>& scratch, int threads = 0) const {
        const index_t n = x.rows(), inter = intermediate();
        scratch.resize(n, up_.out_features());
        up_.forward(x, scratch.view(), threads);  // [tokens][(gate |) up]
        hidden(scratch, n, inter);
        down_.forward(matrix_view<const float>(scratch.data(), n, inter, scratch.cols()), y, threads);
    }

    /// The activation fed to `down` from the output of `up` (in place, in the first
    /// intermediate() columns of each row of h [tokens][up outputs]).
    static void hidden(matrix<float>& h, index_t n, index_t inter) noexcept {
        const auto row = [&](std::size_t t) {
            float* r = h.row(t).data();
            if constexpr (Kind::gated) {
                act::gated<typename Kind::activation>(r, r + inter, inter);
            } else {
                Kind::activation::apply(r, inter);
            }
        };
        // An exp per element: rows in parallel from a few thousand elements (a 16-token decode
        // step of SmolLM2 has 16 x 1,536); one row stays on the calling thread.
        parallel_for(0, n, row, n >= 2 && n * inter >= (index_t{1} << 12) ? 0 : 1);
    }

private:
    linear<format> up_;    // [2I or I][dim]
    linear<format> down_;  // [dim][I]
};

}  // namespace kite::model

namespace kite {
/// `kite::norm::rms`, `kite::norm::layer`: the norm policies (DESIGN.md's spelling).
namespace norm = model::norm;
/// `kite::mlp::swiglu`, ...: the MLP policies.
namespace mlp = model::mlp;
}  // namespace kite

KITE_GCC12_AVX512_UNINIT_END
