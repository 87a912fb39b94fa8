#pragma once
/// @file kite/train/grad.hpp
/// Forward and backward passes of the sentence encoder's parts, written as plainly as the math:
/// the oracles that faster training kernels will be checked against, and what
/// kite::train's first trainers run on. Scalar type T is float or double (the tests run both:
/// double against finite differences to ~1e-9, float within float rounding).
///
///   auto y  = train::linear(x, w, b);                       // y = x W^T + b (torch.nn.Linear layout)
///   train::linear_backward(x, w, dy, dx, dw, db);           // dx = dy W; dw += dy^T x; db += sum dy
///   auto g  = train::gelu(y);            train::gelu_backward(y, dg, dy);
///   auto ln = train::layer_norm(x, gamma, beta, 1e-12);     // keeps what its backward needs
///   train::layer_norm_backward(ln, gamma, dy, dx, dgamma, dbeta);
///   auto p  = train::mean_pool(h, mask); train::mean_pool_backward(mask, dp, dh);
///   auto u  = train::l2_normalize(v);    train::l2_normalize_backward(v, u, du, dv);
///   auto e  = train::embedding(table, ids);   train::embedding_backward(ids, de, dtable);
///   auto at = train::attention(q, k, v, mask, heads);      // softmax(q k^T / sqrt d) v per head
///   train::attention_backward(at, q, k, v, dctx, dq, dk, dv);
///
/// Conventions (PyTorch's): parameter gradients accumulate (+=) so that micro-batches add up;
/// input gradients are overwritten. Shapes are checked (kite::shape_error naming them).

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <numbers>
#include <span>
#include <type_traits>
#include <vector>

#include "kite/core/activations.hpp"
#include "kite/core/config.hpp"
#include "kite/core/error.hpp"
#include "kite/core/matrix.hpp"
#include "kite/core/simd.hpp"

namespace kite::train {

namespace detail {


template <class T>
void check_linear(matrix_view<const T> x, matrix_view<const T> w, std::span<const T> b) {
    KITE_REQUIRE(x.cols() == w.cols(), shape_error, "train::linear: x has ", x.cols(), " columns, W has ", w.cols(),
                 "; expected equal (W is out x in)");
    KITE_REQUIRE(b.empty() || b.size() == w.rows(), shape_error, "train::linear: bias has ", b.size(),
                 " entries; expected ", w.rows());
}

template <class T>
void check_linear_backward(matrix_view<const T> x, matrix_view<const T> w, matrix_view<const T> dy,
                           matrix_view<T> dx, matrix_view<T> dw, std::span<T> db) {
    require_shape(dy, x.rows(), w.rows(), "train::linear_backward: dy");
    require_shape(dx, x.rows(), x.cols(), "train::linear_backward: dx");
    require_shape(dw, w.rows(), w.cols(), "train::linear_backward: dW");
    KITE_REQUIRE(db.empty() || db.size() == w.rows(), shape_error, "train::linear_backward: db has ", db.size(),
                 " entries; expected ", w.rows());
}

}  // namespace detail

// ---- linear ---------------------------------------------------------------------------------

namespace reference {
/// linear() written as loops: the oracle of the Eigen version.
template <class T>
matrix<T> linear_loops(matrix_view<const T> x, matrix_view<const T> w, std::span<const T> b = {}) {
    detail::check_linear(x, w, b);
    matrix<T> y(x.rows(), w.rows());
    for (index_t i = 0; i < x.rows(); ++i)
        for (index_t o = 0; o < w.rows(); ++o) {
            T s = b.empty() ? T(0) : b[o];
            for (index_t k = 0; k < x.cols(); ++k) s += x(i, k) * w(o, k);
            y(i, o) = s;
        }
    return y;
}

/// linear_backward() written as loops: the oracle of the Eigen version.
template <class T>
void linear_backward_loops(matrix_view<const T> x, matrix_view<const T> w, matrix_view<const T> dy,
                           matrix_view<T> dx, matrix_view<T> dw, std::span<T> db = {}) {
    detail::check_linear_backward(x, w, dy, dx, dw, db);
    for (index_t i = 0; i < x.rows(); ++i)
        for (index_t k = 0; k < x.cols(); ++k) {
            T s = 0;
            for (index_t o = 0; o < w.rows(); ++o) s += dy(i, o) * w(o, k);
            dx(i, k) = s;
        }
    for (index_t o = 0; o < w.rows(); ++o)
        for (index_t k = 0; k < w.cols(); ++k) {
            T s = 0;
            for (index_t i = 0; i < x.rows(); ++i) s += dy(i, o) * x(i, k);
            dw(o, k) += s;
        }
    if (!db.empty())
        for (index_t o = 0; o < w.rows(); ++o) {
            T s = 0;
            for (index_t i = 0; i < x.rows(); ++i) s += dy(i, o);
            db[o] += s;
        }
}

}  // namespace reference

/// y = x W^T + b: x is n x in, W is out x in (torch.nn.Linear's layout), b has out entries (or
/// none: no bias). Eigen's GEMM; reference::linear_loops is its oracle.
template <class T>
matrix<T> linear(matrix_view<const T> x, matrix_view<const T> w, std::span<const T> b = {}) {
    detail::check_linear(x, w, b);
    matrix<T> y(x.rows(), w.rows());
    auto Y = as_eigen(y);
    Y.noalias() = as_eigen(x) * as_eigen(w).transpose();
    if (!b.empty())
        Y.rowwise() += Eigen::Map<const Eigen::Matrix<T, 1, Eigen::Dynamic>>(b.data(), static_cast<Eigen::Index>(b.size()));
    return y;
}

/// Gradients of linear(): dx = dy W (overwritten), dW += dy^T x, db += column sums of dy (db may
/// be empty when there is no bias). Eigen's GEMM; reference::linear_backward_loops is its oracle.
template <class T>
void linear_backward(matrix_view<const T> x, matrix_view<const T> w, matrix_view<const T> dy, matrix_view<T> dx,
                     matrix_view<T> dw, std::span<T> db = {}) {
    detail::check_linear_backward(x, w, dy, dx, dw, db);
    const auto DY = as_eigen(dy);
    as_eigen(dx).noalias() = DY * as_eigen(w);
    as_eigen(dw).noalias() += DY.transpose() * as_eigen(x);
    // Column sums in row order by hand: Eigen's reduction peels to the operands' alignment, which
    // would make the rounding depend on where the buffers happen to lie.
    if (!db.empty())
        for (index_t i = 0; i < dy.rows(); ++i)
            for (index_t o = 0; o < w.rows(); ++o) db[o] += dy(i, o);
}

// ---- GELU (erf form, BERT's) -----------------------------------------------------------------

namespace reference {
/// gelu() with std::erf, element by element: the oracle of the vectorised float version.
template <class T>
matrix<T> gelu_exact(matrix_view<const T> x) {
    matrix<T> y(x.rows(), x.cols());
    for (index_t i = 0; i < x.rows(); ++i)
        for (index_t j = 0; j < x.cols(); ++j) {
            const T v = x(i, j);
            y(i, j) = T(0.5) * v * (T(1) + std::erf(v * T(std::numbers::sqrt2 / 2)));
        }
    return y;
}

/// gelu_backward() with std::erf and std::exp: the oracle of the vectorised float version.
template <class T>
void gelu_backward_exact(matrix_view<const T> x, matrix_view<const T> dy, matrix_view<T> dx) {
    require_shape(dy, x.rows(), x.cols(), "train::gelu_backward: dy");
    require_shape(dx, x.rows(), x.cols(), "train::gelu_backward: dx");
    const T inv_sqrt_2pi = T(std::numbers::inv_sqrtpi / std::numbers::sqrt2);
    for (index_t i = 0; i < x.rows(); ++i)
        for (index_t j = 0; j < x.cols(); ++j) {
            const T v = x(i, j);
            const T cdf = T(0.5) * (T(1) + std::erf(v * T(std::numbers::sqrt2 / 2)));
            const T pdf = inv_sqrt_2pi * std::exp(T(-0.5) * v * v);
            dx(i, j) = dy(i, j) * (cdf + v * pdf);
        }
}
}  // namespace reference

/// gelu(x) = x Phi(x) = x (1 + erf(x / sqrt 2)) / 2, element-wise. In float with SIMD, erf is
/// kite's rational fit (|error| <= 4.1e-7, the inference encoder's); otherwise std::erf
/// (reference::gelu_exact).
template <class T>
matrix<T> gelu(matrix_view<const T> x) {
#if KITE_SIMD_ENABLED
    if constexpr (std::is_same_v<T, float>) {
        using B = simd::fbatch;
        constexpr index_t W = simd::width;
        matrix<T> y(x.rows(), x.cols(), uninitialized);
        for (index_t i = 0; i < x.rows(); ++i) {
            const float* src = &x(i, 0);
            float* dst = &y(i, 0);
            index_t j = 0;
            for (; j + W <= x.cols(); j += W) act::detail::gelu_erf(B::load_unaligned(src + j)).store_unaligned(dst + j);
            for (; j < x.cols(); ++j) {
                const B r = act::detail::gelu_erf(B(src[j]));
                dst[j] = r.get(0);
            }
        }
        return y;
    }
#endif
    return reference::gelu_exact<T>(x);
}

/// dx = dy * gelu'(x), gelu'(x) = Phi(x) + x phi(x) (vectorised in float as gelu() is).
template <class T>
void gelu_backward(matrix_view<const T> x, matrix_view<const T> dy, matrix_view<T> dx) {
#if KITE_SIMD_ENABLED
    if constexpr (std::is_same_v<T, float>) {
        require_shape(dy, x.rows(), x.cols(), "train::gelu_backward: dy");
        require_shape(dx, x.rows(), x.cols(), "train::gelu_backward: dx");
        using B = simd::fbatch;
        constexpr index_t W = simd::width;
        const auto one = [](B v, B d) {
            const B cdf = 0.5f * (1.0f + act::detail::erf_rational(v * B(act::detail::inv_sqrt2)));
            const B pdf = B(0.3989422804014327f) * xsimd::exp(B(-0.5f) * v * v);
            return d * (cdf + v * pdf);
        };
        for (index_t i = 0; i < x.rows(); ++i) {
            const float* xs = &x(i, 0);
            const float* ds = &dy(i, 0);
            float* out = &dx(i, 0);
            index_t j = 0;
            for (; j + W <= x.cols(); j += W) one(B::load_unaligned(xs + j), B::load_unaligned(ds + j)).store_unaligned(out + j);
            for (; j < x.cols(); ++j) out[j] = one(B(xs[j]), B(ds[j])).get(0);
        }
        return;
    }
#endif
    reference::gelu_backward_exact<T>(x, dy, dx);
}

// ---- LayerNorm ------------------------------------------------------------------------------

/// The output of layer_norm() and what its backward pass needs: the normalised rows x_hat and
/// 1 / sqrt(var + eps) per row.
template <class T>
struct layer_norm_result {
    matrix<T> y, x_hat;
    std::vector<T> inv_std;
};

/// Each row normalised to mean 0 and (biased) variance 1, then scaled by gamma and shifted by beta.
template <class T>
layer_norm_result<T> layer_norm(matrix_view<const T> x, std::span<const T> gamma, std::span<const T> beta, T eps) {
    KITE_REQUIRE(gamma.size() == x.cols() && beta.size() == x.cols(), shape_error, "train::layer_norm: gamma has ",
                 gamma.size(), " and beta ", beta.size(), " entries; expected ", x.cols());
    KITE_REQUIRE(eps > 0, invalid_argument, "train::layer_norm: eps = ", eps, "; expected > 0");
    layer_norm_result<T> r{matrix<T>(x.rows(), x.cols()), matrix<T>(x.rows(), x.cols()), std::vector<T>(x.rows())};
    const T n = static_cast<T>(x.cols());
    for (index_t i = 0; i < x.rows(); ++i) {
        T mean = 0;
        for (index_t j = 0; j < x.cols(); ++j) mean += x(i, j);
        mean /= n;
        T var = 0;
        for (index_t j = 0; j < x.cols(); ++j) var += (x(i, j) - mean) * (x(i, j) - mean);
        var /= n;
        const T inv = T(1) / std::sqrt(var + eps);
        r.inv_std[i] = inv;
        for (index_t j = 0; j < x.cols(); ++j) {
            r.x_hat(i, j) = (x(i, j) - mean) * inv;
            r.y(i, j) = r.x_hat(i, j) * gamma[j] + beta[j];
        }
    }
    return r;
}

/// dx = inv_std (dx_hat - mean(dx_hat) - x_hat mean(dx_hat x_hat)) with dx_hat = dy gamma
/// (overwritten); dgamma += sum dy x_hat, dbeta += sum dy over the rows.
template <class T>
void layer_norm_backward(const layer_norm_result<T>& fwd, std::span<const T> gamma, matrix_view<const T> dy,
                         matrix_view<T> dx, std::span<T> dgamma, std::span<T> dbeta) {
    const index_t rows = fwd.x_hat.rows(), cols = fwd.x_hat.cols();
    require_shape(dy, rows, cols, "train::layer_norm_backward: dy");
    require_shape(dx, rows, cols, "train::layer_norm_backward: dx");
    KITE_REQUIRE(gamma.size() == cols && dgamma.size() == cols && dbeta.size() == cols, shape_error,
                 "train::layer_norm_backward: gamma, dgamma, dbeta have ", gamma.size(), ", ", dgamma.size(), ", ",
                 dbeta.size(), " entries; expected ", cols);
    const T n = static_cast<T>(cols);
    for (index_t i = 0; i < rows; ++i) {
        T mean_d = 0, mean_dx = 0;
        for (index_t j = 0; j < cols; ++j) {
            const T d = dy(i, j) * gamma[j];
            mean_d += d;
            mean_dx += d * fwd.x_hat(i, j);
            dgamma[j] += dy(i, j) * fwd.x_hat(i, j);
            dbeta[j] += dy(i, j);
        }
        mean_d /= n;
        mean_dx /= n;
        for (index_t j = 0; j < cols; ++j)
            dx(i, j) = fwd.inv_std[i] * (dy(i, j) * gamma[j] - mean_d - fwd.x_hat(i, j) * mean_dx);
    }
}

// ---- mean pooling over a padding mask ---------------------------------------------------------

/// The mean of the rows of h (tokens x d) whose mask entry is nonzero (sentence-transformers'
/// mean pooling); a sequence with no token gives zeros (its denominator is clamped at 1e-9, as
/// there).
template <class T>
std::vector<T> mean_pool(matrix_view<const T> h, std::span<const T> mask) {
    KITE_REQUIRE(mask.size() == h.rows(), shape_error, "train::mean_pool: mask has ", mask.size(),
                 " entries; expected one per token (", h.rows(), ")");
    std::vector<T> p(h.cols(), T(0));
    T count = 0;
    for (index_t t = 0; t < h.rows(); ++t) {
        count += mask[t];
        for (index_t j = 0; j < h.cols(); ++j) p[j] += mask[t] * h(t, j);
    }
    const T denom = std::max(count, T(1e-9));
    for (auto& v : p) v /= denom;
    return p;
}

/// dh(t, j) = mask[t] dp[j] / max(sum mask, 1e-9) (overwritten).
template <class T>
void mean_pool_backward(std::span<const T> mask, std::span<const T> dp, matrix_view<T> dh) {
    KITE_REQUIRE(mask.size() == dh.rows() && dp.size() == dh.cols(), shape_error, "train::mean_pool_backward: dh is ",
                 dh.rows(), " x ", dh.cols(), "; expected ", mask.size(), " x ", dp.size());
    T count = 0;
    for (const T m : mask) count += m;
    const T denom = std::max(count, T(1e-9));
    for (index_t t = 0; t < dh.rows(); ++t)
        for (index_t j = 0; j < dh.cols(); ++j) dh(t, j) = mask[t] * dp[j] / denom;
}

// ---- L2 normalisation -------------------------------------------------------------------------

/// u = v / max(|v|, 1e-12) (torch.nn.functional.normalize).
template <class T>
std::vector<T> l2_normalize(std::span<const T> v) {
    T ss = 0;
    for (const T x : v) ss += x * x;
    const T norm = std::max(std::sqrt(ss), T(1e-12));
    std::vector<T> u(v.size());
    for (std::size_t i = 0; i < v.size(); ++i) u[i] = v[i] / norm;
    return u;
}

/// dv = (du - u (u . du)) / |v| (overwritten); below the 1e-12 clamp, dv = du / 1e-12.
template <class T>
void l2_normalize_backward(std::span<const T> v, std::span<const T> u, std::span<const T> du, std::span<T> dv) {
    KITE_REQUIRE(u.size() == v.size() && du.size() == v.size() && dv.size() == v.size(), shape_error,
                 "train::l2_normalize_backward: v, u, du, dv have ", v.size(), ", ", u.size(), ", ", du.size(), ", ",
                 dv.size(), " entries; expected equal");
    T ss = 0, dot = 0;
    for (std::size_t i = 0; i < v.size(); ++i) {
        ss += v[i] * v[i];
        dot += u[i] * du[i];
    }
    const T norm = std::sqrt(ss);
    if (norm <= T(1e-12)) {
        for (std::size_t i = 0; i < v.size(); ++i) dv[i] = du[i] / T(1e-12);
        return;
    }
    for (std::size_t i = 0; i < v.size(); ++i) dv[i] = (du[i] - u[i] * dot) / norm;
}

// ---- embeddings ---------------------------------------------------------------------------------

/// Rows of the table E (vocab x d) for each id: out(t) = E(ids[t]). kite::invalid_argument for an
/// id outside the table.
template <class T>
matrix<T> embedding(matrix_view<const T> table, std::span<const std::int32_t> ids) {
    matrix<T> out(ids.size(), table.cols());
    for (index_t t = 0; t < ids.size(); ++t) {
        KITE_REQUIRE(ids[t] >= 0 && static_cast<index_t>(ids[t]) < table.rows(), invalid_argument,
                     "train::embedding: ids[", t, "] = ", ids[t], "; expected 0 <= id < ", table.rows());
        for (index_t j = 0; j < table.cols(); ++j) out(t, j) = table(static_cast<index_t>(ids[t]), j);
    }
    return out;
}

/// dE(ids[t]) += dy(t): rows of repeated ids add up; rows of ids not used are untouched.
template <class T>
void embedding_backward(std::span<const std::int32_t> ids, matrix_view<const T> dy, matrix_view<T> dtable) {
    KITE_REQUIRE(dy.rows() == ids.size() && dy.cols() == dtable.cols(), shape_error, "train::embedding_backward: dy is ",
                 dy.rows(), " x ", dy.cols(), "; expected ", ids.size(), " x ", dtable.cols());
    for (index_t t = 0; t < ids.size(); ++t) {
        KITE_REQUIRE(ids[t] >= 0 && static_cast<index_t>(ids[t]) < dtable.rows(), invalid_argument,
                     "train::embedding_backward: ids[", t, "] = ", ids[t], "; expected 0 <= id < ", dtable.rows());
        for (index_t j = 0; j < dy.cols(); ++j) dtable(static_cast<index_t>(ids[t]), j) += dy(t, j);
    }
}

// ---- self-attention over a padding mask --------------------------------------------------------

/// What attention() keeps for its backward pass: the softmax probabilities per head, head h in
/// rows h n .. h n + n - 1 of `probs` ((heads * tokens) x tokens).
template <class T>
struct attention_result {
    matrix<T> context;  ///< tokens x (heads * head_dim)
    matrix<T> probs;
    index_t heads = 0;
};

namespace detail {

template <class T>
index_t check_attention(matrix_view<const T> q, matrix_view<const T> k, matrix_view<const T> v,
                        std::span<const T> key_mask, index_t heads) {
    const index_t n = q.rows(), width = q.cols();
    KITE_REQUIRE(heads > 0 && width % heads == 0, invalid_argument, "train::attention: ", width,
                 " columns do not split into ", heads, " heads");
    require_shape(k, n, width, "train::attention: k");
    require_shape(v, n, width, "train::attention: v");
    KITE_REQUIRE(key_mask.size() == n, shape_error, "train::attention: the mask has ", key_mask.size(),
                 " entries; expected one per token (", n, ")");
    return width / heads;
}

template <class T>
void check_attention_backward(const attention_result<T>& fwd, matrix_view<const T> q, matrix_view<const T> dcontext,
                              matrix_view<T> dq, matrix_view<T> dk, matrix_view<T> dv) {
    const index_t n = q.rows(), width = q.cols();
    require_shape(dcontext, n, width, "train::attention_backward: dcontext");
    require_shape(dq, n, width, "train::attention_backward: dq");
    require_shape(dk, n, width, "train::attention_backward: dk");
    require_shape(dv, n, width, "train::attention_backward: dv");
    KITE_REQUIRE(fwd.heads > 0 && width % fwd.heads == 0 && fwd.probs.rows() == fwd.heads * n && fwd.probs.cols() == n,
                 shape_error, "train::attention_backward: the forward pass was for another shape");
}

/// Columns first .. first + count - 1 of m (one head's slice of q, k, v or the context).
template <class T>
matrix_view<T> head(matrix_view<T> m, index_t first, index_t count) {
    return {m.data() + first, m.rows(), count, m.stride()};
}

}  // namespace detail

namespace reference {

/// attention() written as loops over tokens and columns: the oracle of the GEMM version.
template <class T>
attention_result<T> attention_loops(matrix_view<const T> q, matrix_view<const T> k, matrix_view<const T> v,
                                    std::span<const T> key_mask, index_t heads) {
    const index_t n = q.rows(), width = q.cols(), hd = detail::check_attention(q, k, v, key_mask, heads);
    const T scale = T(1) / std::sqrt(static_cast<T>(hd));
    attention_result<T> r{matrix<T>(n, width, T(0)), matrix<T>(heads * n, n, T(0)), heads};
    for (index_t h = 0; h < heads; ++h) {
        const index_t c0 = h * hd;
        for (index_t i = 0; i < n; ++i) {
            T* p = &r.probs(h * n + i, 0);
            T best = -std::numeric_limits<T>::infinity();
            for (index_t j = 0; j < n; ++j) {
                if (key_mask[j] == T(0)) continue;
                T s = 0;
                for (index_t c = 0; c < hd; ++c) s += q(i, c0 + c) * k(j, c0 + c);
                p[j] = s * scale;
                best = std::max(best, p[j]);
            }
            if (best == -std::numeric_limits<T>::infinity()) continue;  // every key masked
            T z = 0;
            for (index_t j = 0; j < n; ++j)
                if (key_mask[j] != T(0)) z += (p[j] = std::exp(p[j] - best));
            for (index_t j = 0; j < n; ++j) p[j] = key_mask[j] != T(0) ? p[j] / z : T(0);
            for (index_t j = 0; j < n; ++j)
                if (p[j] != T(0))
                    for (index_t c = 0; c < hd; ++c) r.context(i, c0 + c) += p[j] * v(j, c0 + c);
        }
    }
    return r;
}

/// attention_backward() written as loops: the oracle of the GEMM version.
template <class T>
void attention_backward_loops(const attention_result<T>& fwd, matrix_view<const T> q, matrix_view<const T> k,
                              matrix_view<const T> v, matrix_view<const T> dcontext, matrix_view<T> dq,
                              matrix_view<T> dk, matrix_view<T> dv) {
    detail::check_attention_backward(fwd, q, dcontext, dq, dk, dv);
    const index_t n = q.rows(), width = q.cols(), heads = fwd.heads, hd = width / heads;
    const T scale = T(1) / std::sqrt(static_cast<T>(hd));
    for (index_t i = 0; i < n; ++i)
        for (index_t c = 0; c < width; ++c) dq(i, c) = dk(i, c) = dv(i, c) = T(0);
    std::vector<T> ds(n);
    for (index_t h = 0; h < heads; ++h) {
        const index_t c0 = h * hd;
        for (index_t i = 0; i < n; ++i) {
            const T* p = &fwd.probs(h * n + i, 0);
            T dot = 0;
            for (index_t j = 0; j < n; ++j) {
                T dp = 0;
                for (index_t c = 0; c < hd; ++c) dp += dcontext(i, c0 + c) * v(j, c0 + c);
                ds[j] = dp;
                dot += dp * p[j];
            }
            for (index_t j = 0; j < n; ++j) {
                ds[j] = p[j] * (ds[j] - dot) * scale;
                if (p[j] == T(0)) continue;
                for (index_t c = 0; c < hd; ++c) {
                    dq(i, c0 + c) += ds[j] * k(j, c0 + c);
                    dk(j, c0 + c) += ds[j] * q(i, c0 + c);
                    dv(j, c0 + c) += p[j] * dcontext(i, c0 + c);
                }
            }
        }
    }
}

}  // namespace reference

/// BERT's multi-head self-attention core on projected q, k, v (tokens x heads * head_dim each):
/// per head, softmax(q k^T / sqrt(head_dim)) over the keys whose mask entry is nonzero, times v.
/// A query row whose keys are all masked attends to nothing (zeros; torch would give NaN).
/// Per head two of Eigen's GEMMs (scores, context); reference::attention_loops is its oracle.
template <class T>
attention_result<T> attention(matrix_view<const T> q, matrix_view<const T> k, matrix_view<const T> v,
                              std::span<const T> key_mask, index_t heads) {
    const index_t n = q.rows(), width = q.cols(), hd = detail::check_attention(q, k, v, key_mask, heads);
    const T scale = T(1) / std::sqrt(static_cast<T>(hd));
    attention_result<T> r{matrix<T>(n, width, uninitialized), matrix<T>(heads * n, n, uninitialized), heads};
    bool all_keys = true;
    for (const T m : key_mask) all_keys = all_keys && m != T(0);
    for (index_t h = 0; h < heads; ++h) {
        const index_t c0 = h * hd;
        auto P = as_eigen(r.probs.view().rows_slice(h * n, n));
        P.noalias() = as_eigen(detail::head(q, c0, hd)) * as_eigen(detail::head(k, c0, hd)).transpose();
        for (index_t i = 0; i < n; ++i) {
            T* p = &r.probs(h * n + i, 0);
            T best = -std::numeric_limits<T>::infinity();
            for (index_t j = 0; j < n; ++j)
                if (all_keys || key_mask[j] != T(0)) best = std::max(best, p[j] * scale);
            if (best == -std::numeric_limits<T>::infinity()) {  // every key masked
                std::fill(p, p + n, T(0));
                continue;
            }
            T z = 0;
            for (index_t j = 0; j < n; ++j) {
                p[j] = all_keys || key_mask[j] != T(0) ? std::exp(p[j] * scale - best) : T(0);
                z += p[j];
            }
            const T inv = T(1) / z;
            for (index_t j = 0; j < n; ++j) p[j] *= inv;
        }
        as_eigen(detail::head(r.context.view(), c0, hd)).noalias() = P * as_eigen(detail::head(v, c0, hd));
    }
    return r;
}

/// Gradients of attention() with respect to q, k and v (overwritten):
///   dP = dC v^T,  dS = P .* (dP - rowsum(dP .* P)),  dq = dS k / sqrt(hd),  dk = dS^T q / sqrt(hd),
///   dv = P^T dC, per head (five GEMMs; reference::attention_backward_loops is the oracle).
template <class T>
void attention_backward(const attention_result<T>& fwd, matrix_view<const T> q, matrix_view<const T> k,
                        matrix_view<const T> v, matrix_view<const T> dcontext, matrix_view<T> dq, matrix_view<T> dk,
                        matrix_view<T> dv) {
    detail::check_attention_backward(fwd, q, dcontext, dq, dk, dv);
    const index_t n = q.rows(), width = q.cols(), heads = fwd.heads, hd = width / heads;
    const T scale = T(1) / std::sqrt(static_cast<T>(hd));
    matrix<T> ds(n, n, uninitialized);
    auto DS = as_eigen(ds);
    for (index_t h = 0; h < heads; ++h) {
        const index_t c0 = h * hd;
        const auto P = as_eigen(fwd.probs.view().rows_slice(h * n, n));
        const auto DC = as_eigen(detail::head(dcontext, c0, hd));
        DS.noalias() = DC * as_eigen(detail::head(v, c0, hd)).transpose();  // dP
        for (index_t i = 0; i < n; ++i) {
            const T* p = &fwd.probs(h * n + i, 0);
            T* d = &ds(i, 0);
            T dot = 0;
            for (index_t j = 0; j < n; ++j) dot += d[j] * p[j];
            for (index_t j = 0; j < n; ++j) d[j] = p[j] * (d[j] - dot) * scale;
        }
        as_eigen(detail::head(dq, c0, hd)).noalias() = DS * as_eigen(detail::head(k, c0, hd));
        as_eigen(detail::head(dk, c0, hd)).noalias() = DS.transpose() * as_eigen(detail::head(q, c0, hd));
        as_eigen(detail::head(dv, c0, hd)).noalias() = P.transpose() * DC;
    }
}

}  // namespace kite::train
