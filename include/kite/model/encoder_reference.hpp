#pragma once
/// @file kite/model/encoder_reference.hpp
/// The oracle of kite::model::bert_encoder: BERT's forward pass for one sequence written as
/// plain loops in double precision over the float32 checkpoint, with separate query, key and
/// value heads, an exact softmax and no fusion, blocking or batching. Slow (O(n^2 d) per head,
/// O(n d^2) per projection, no SIMD) and obviously correct; tests compare the fast encoder with it.
///
///   std::vector<double> s = kite::model::reference::bert_states(ckpt, ids);         // [n][hidden]
///   std::vector<double> e = kite::model::reference::bert_embedding(ckpt, ids);      // [hidden]

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <span>
#include <vector>

#include "kite/core/error.hpp"
#include "kite/model/encoder.hpp"

namespace kite::model::reference {

namespace detail {
// y [n][out] = x [n][in] W^T + b, W [out][in] float.
inline std::vector<double> affine(const std::vector<double>& x, index_t n, const matrix<float>& w,
                                  const std::vector<float>& b, index_t row0 = 0, index_t out = 0) {
    const index_t in = w.cols();
    if (out == 0) out = w.rows();
    std::vector<double> y(n * out);
    for (index_t t = 0; t < n; ++t)
        for (index_t o = 0; o < out; ++o) {
            double s = b.empty() ? 0.0 : b[row0 + o];
            for (index_t i = 0; i < in; ++i) s += x[t * in + i] * static_cast<double>(w(row0 + o, i));
            y[t * out + o] = s;
        }
    return y;
}
// LayerNorm of each row of x [n][d], biased variance (as torch).
inline void layer_norm(std::vector<double>& x, index_t n, const std::vector<float>& g, const std::vector<float>& b,
                       double eps) {
    const index_t d = g.size();
    for (index_t t = 0; t < n; ++t) {
        double* r = x.data() + t * d;
        double mean = 0, var = 0;
        for (index_t i = 0; i < d; ++i) mean += r[i];
        mean /= static_cast<double>(d);
        for (index_t i = 0; i < d; ++i) var += (r[i] - mean) * (r[i] - mean);
        var /= static_cast<double>(d);
        const double inv = 1.0 / std::sqrt(var + eps);
        for (index_t i = 0; i < d; ++i) r[i] = (r[i] - mean) * inv * g[i] + b[i];
    }
}
}  // namespace detail

/// The last layer's states of one sequence `ids`, [n][hidden] row-major; tokens from
/// `second_segment` on take token type 1 (a text pair), the others type 0.
inline std::vector<double> bert_states(const bert_checkpoint& ck, std::span<const std::int32_t> ids,
                                       index_t second_segment = static_cast<index_t>(-1)) {
    const model_config& c = ck.config;
    const index_t n = ids.size(), h = c.hidden_size, heads = c.num_heads, d = c.head_dim;
    KITE_REQUIRE(n >= 1 && n <= ck.position_embeddings.rows(), invalid_argument, "reference::bert_states: ", n,
                 " tokens; expected 1 to ", ck.position_embeddings.rows());
    KITE_REQUIRE(second_segment >= n || ck.token_type_embeddings.rows() >= 2, invalid_argument,
                 "reference::bert_states: a text pair needs 2 token types; the model has ", ck.token_type_embeddings.rows());
    std::vector<double> x(n * h);
    for (index_t t = 0; t < n; ++t) {
        KITE_REQUIRE(ids[t] >= 0 && static_cast<index_t>(ids[t]) < ck.word_embeddings.rows(), invalid_argument,
                     "reference::bert_states: token id ", ids[t], " is outside the vocabulary");
        for (index_t i = 0; i < h; ++i)
            x[t * h + i] = static_cast<double>(ck.word_embeddings(static_cast<index_t>(ids[t]), i)) +
                           ck.token_type_embeddings(t < second_segment ? 0 : 1, i) + ck.position_embeddings(t, i);
    }
    detail::layer_norm(x, n, ck.embedding_norm_weight, ck.embedding_norm_bias, c.norm_eps);
    for (const block_tensors& L : ck.layers) {
        const auto q = detail::affine(x, n, L.qkv, L.qkv_bias, 0, h);
        const auto k = detail::affine(x, n, L.qkv, L.qkv_bias, h, h);
        const auto v = detail::affine(x, n, L.qkv, L.qkv_bias, 2 * h, h);
        std::vector<double> a(n * h, 0.0), p(n);
        const double scale = 1.0 / std::sqrt(static_cast<double>(d));
        for (index_t head = 0; head < heads; ++head)
            for (index_t i = 0; i < n; ++i) {
                double mx = -1e300;
                for (index_t j = 0; j < n; ++j) {
                    double s = 0;
                    for (index_t e = 0; e < d; ++e) s += q[i * h + head * d + e] * k[j * h + head * d + e];
                    p[j] = s * scale;
                    mx = std::max(mx, p[j]);
                }
                double z = 0;
                for (index_t j = 0; j < n; ++j) z += (p[j] = std::exp(p[j] - mx));
                for (index_t j = 0; j < n; ++j)
                    for (index_t e = 0; e < d; ++e) a[i * h + head * d + e] += p[j] / z * v[j * h + head * d + e];
            }
        auto y = detail::affine(a, n, L.o, L.o_bias);
        for (index_t i = 0; i < n * h; ++i) y[i] += x[i];
        detail::layer_norm(y, n, L.attn_norm_weight, L.attn_norm_bias, c.norm_eps);
        auto f = detail::affine(y, n, L.up, L.up_bias);
        for (double& e : f) e = 0.5 * e * (1.0 + std::erf(e / std::sqrt(2.0)));
        x = detail::affine(f, n, L.down, L.down_bias);
        for (index_t i = 0; i < n * h; ++i) x[i] += y[i];
        detail::layer_norm(x, n, L.mlp_norm_weight, L.mlp_norm_bias, c.norm_eps);
    }
    return x;
}

/// The sentence embedding of `ids`: pooled states, L2-normalised when `normalize`.
inline std::vector<double> bert_embedding(const bert_checkpoint& ck, std::span<const std::int32_t> ids,
                                          pooling pool = pooling::mean, bool normalize = true) {
    const index_t n = ids.size(), h = ck.config.hidden_size;
    const std::vector<double> s = bert_states(ck, ids);
    std::vector<double> e(h, 0.0);
    if (pool == pooling::cls) {
        std::copy_n(s.begin(), h, e.begin());
    } else {
        for (index_t t = 0; t < n; ++t)
            for (index_t i = 0; i < h; ++i) e[i] += s[t * h + i];
        for (double& v : e) v /= static_cast<double>(n);
    }
    if (normalize) {
        double nn = 0;
        for (double v : e) nn += v * v;
        const double inv = 1.0 / std::max(std::sqrt(nn), 1e-12);
        for (double& v : e) v *= inv;
    }
    return e;
}

}  // namespace kite::model::reference
