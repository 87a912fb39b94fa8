#pragma once
// The aidreams260K checkpoint (llama2.c format, see the data README) and a plain forward pass
// that records the inputs of every linear layer, for calibrating and evaluating quantization
// on real trained weights. Test/benchmark code, independent of kite/model.
//
// Text comes from the model itself: sequences sampled at temperature 1 from BOS with a fixed
// seed (and a portable RNG, so every platform gets the same tokens).

#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include "kite/core/error.hpp"
#include "kite/core/io.hpp"
#include "kite/core/matrix.hpp"

namespace kite::test::aidreams {

struct config {
    int dim, hidden, layers, heads, kv_heads, vocab, seq_len;
};

/// Weights as float matrices [out][in]; per layer l.
struct model {
    config cfg{};
    kite::matrix<float> emb;  // [vocab][dim]
    std::vector<std::vector<float>> rms_att, rms_ffn;
    std::vector<kite::matrix<float>> wq, wk, wv, wo, w1, w2, w3;
    std::vector<float> rms_final;
};

/// Path of the checkpoint from KITE_DATA (the folder holding aidreams260k/), if set and present.
inline std::optional<std::filesystem::path> checkpoint_from_env() {
    const char* d = std::getenv("KITE_DATA");
    if (!d || !*d) return std::nullopt;
    auto p = std::filesystem::path(d) / "aidreams260k" / "aidreams260K.bin";
    if (!std::filesystem::exists(p)) return std::nullopt;
    return p;
}

inline model load(const std::filesystem::path& path) {
    kite::io::mapped_file f(path);
    kite::io::byte_reader in(f.bytes(), path.string());
    model m;
    auto& c = m.cfg;
    c.dim = in.get<std::int32_t>("dim");
    c.hidden = in.get<std::int32_t>("hidden_dim");
    c.layers = in.get<std::int32_t>("n_layers");
    c.heads = in.get<std::int32_t>("n_heads");
    c.kv_heads = in.get<std::int32_t>("n_kv_heads");
    c.vocab = in.get<std::int32_t>("vocab_size");
    c.seq_len = in.get<std::int32_t>("seq_len");
    KITE_REQUIRE(c.dim > 0 && c.hidden > 0 && c.layers > 0 && c.heads > 0 && c.kv_heads > 0 && c.vocab > 0 &&
                     c.seq_len > 0 && c.dim % c.heads == 0,
                 kite::format_error, path.string(), ": implausible llama2.c header");
    const std::size_t D = c.dim, H = c.hidden, L = c.layers, V = c.vocab, hs = D / c.heads,
                      KV = D * c.kv_heads / c.heads;
    const std::size_t floats = V * D + L * D + L * D * D + 2 * L * KV * D + L * D * D + L * D + 3 * L * H * D + D +
                               std::size_t(c.seq_len) * hs;
    KITE_REQUIRE(in.remaining() == floats * sizeof(float), kite::format_error, path.string(), ": ", in.remaining(),
                 " bytes of weights; expected ", floats * sizeof(float), " for this header");
    auto mat = [&](std::size_t r, std::size_t cc, const char* what) {
        kite::matrix<float> x(r, cc);
        in.get_into(x.flat(), what);
        return x;
    };
    auto vec = [&](std::size_t n, const char* what) {
        std::vector<float> v(n);
        in.get_into(std::span<float>(v), what);
        return v;
    };
    m.emb = mat(V, D, "token_embedding");
    for (std::size_t l = 0; l < L; ++l) m.rms_att.push_back(vec(D, "rms_att"));
    for (std::size_t l = 0; l < L; ++l) m.wq.push_back(mat(D, D, "wq"));
    for (std::size_t l = 0; l < L; ++l) m.wk.push_back(mat(KV, D, "wk"));
    for (std::size_t l = 0; l < L; ++l) m.wv.push_back(mat(KV, D, "wv"));
    for (std::size_t l = 0; l < L; ++l) m.wo.push_back(mat(D, D, "wo"));
    for (std::size_t l = 0; l < L; ++l) m.rms_ffn.push_back(vec(D, "rms_ffn"));
    for (std::size_t l = 0; l < L; ++l) m.w1.push_back(mat(H, D, "w1"));
    for (std::size_t l = 0; l < L; ++l) m.w2.push_back(mat(D, H, "w2"));
    for (std::size_t l = 0; l < L; ++l) m.w3.push_back(mat(H, D, "w3"));
    m.rms_final = vec(D, "rms_final");
    return m;
}

/// Inputs seen by the linear layers of layer l, one row per token position.
struct layer_inputs {
    std::vector<float> attn_in;   // rmsnorm'd hidden state: input of wq, wk, wv  [n][dim]
    std::vector<float> attn_out;  // attention output: input of wo             [n][dim]
    std::vector<float> ffn_in;    // rmsnorm'd hidden state: input of w1, w3   [n][dim]
    std::vector<float> ffn_mid;   // silu(w1 x) * w3 x: input of w2            [n][hidden]
};

namespace detail {
inline void matvec(const kite::matrix<float>& w, const float* x, float* y) {
    for (std::size_t r = 0; r < w.rows(); ++r) {
        double s = 0;
        for (std::size_t c = 0; c < w.cols(); ++c) s += double(w(r, c)) * x[c];
        y[r] = static_cast<float>(s);
    }
}
inline void rmsnorm(const float* x, const float* g, std::size_t n, float* out) {
    double ss = 0;
    for (std::size_t i = 0; i < n; ++i) ss += double(x[i]) * x[i];
    const float inv = 1.0f / std::sqrt(static_cast<float>(ss / n) + 1e-5f);
    for (std::size_t i = 0; i < n; ++i) out[i] = g[i] * (x[i] * inv);
}
}  // namespace detail

/// Samples `n_seq` sequences of seq_len tokens from BOS (at `temperature`; 0 = greedy) and
/// records the linear layers' inputs at every position. `tokens`, if given, receives the tokens.
inline std::vector<layer_inputs> collect(const model& m, int n_seq, std::uint64_t seed, double temperature = 1.0,
                                         std::vector<int>* tokens = nullptr) {
    const auto& c = m.cfg;
    const std::size_t D = c.dim, H = c.hidden, hs = D / c.heads, KV = D * c.kv_heads / c.heads;
    const std::size_t kv_mul = c.heads / c.kv_heads;
    std::vector<layer_inputs> out(c.layers);
    std::uint64_t state = seed * 0x9E3779B97F4A7C15ull + 1;
    auto uniform = [&] {  // splitmix64 -> [0, 1)
        std::uint64_t z = (state += 0x9E3779B97F4A7C15ull);
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
        z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
        return static_cast<double>((z ^ (z >> 31)) >> 11) * 0x1.0p-53;
    };
    std::vector<float> x(D), xb(D), xb2(D), q(D), hb(H), hb2(H), logits(c.vocab);
    std::vector<float> kcache(c.layers * c.seq_len * KV), vcache(c.layers * c.seq_len * KV), att(c.seq_len);
    for (int s = 0; s < n_seq; ++s) {
        int token = 1;  // BOS
        for (int pos = 0; pos < c.seq_len; ++pos) {
            for (std::size_t i = 0; i < D; ++i) x[i] = m.emb(token, i);
            for (int l = 0; l < c.layers; ++l) {
                auto& rec = out[l];
                detail::rmsnorm(x.data(), m.rms_att[l].data(), D, xb.data());
                rec.attn_in.insert(rec.attn_in.end(), xb.begin(), xb.end());
                float* kc = kcache.data() + (std::size_t(l) * c.seq_len + pos) * KV;
                float* vc = vcache.data() + (std::size_t(l) * c.seq_len + pos) * KV;
                detail::matvec(m.wq[l], xb.data(), q.data());
                detail::matvec(m.wk[l], xb.data(), kc);
                detail::matvec(m.wv[l], xb.data(), vc);
                for (std::size_t i = 0; i < D; i += 2) {  // RoPE, llama2.c's pairing of (i, i + 1)
                    const float freq = 1.0f / std::pow(10000.0f, float(i % hs) / float(hs));
                    const float cs = std::cos(pos * freq), sn = std::sin(pos * freq);
                    for (int v = 0; v < (i < KV ? 2 : 1); ++v) {
                        float* p = v == 0 ? q.data() : kc;
                        const float a = p[i], b = p[i + 1];
                        p[i] = a * cs - b * sn;
                        p[i + 1] = a * sn + b * cs;
                    }
                }
                for (int h = 0; h < c.heads; ++h) {
                    const float* qh = q.data() + h * hs;
                    float mx = -1e30f;
                    for (int t = 0; t <= pos; ++t) {
                        const float* kt = kcache.data() + (std::size_t(l) * c.seq_len + t) * KV + (h / kv_mul) * hs;
                        double sc = 0;
                        for (std::size_t i = 0; i < hs; ++i) sc += double(qh[i]) * kt[i];
                        att[t] = static_cast<float>(sc / std::sqrt(double(hs)));
                        mx = std::max(mx, att[t]);
                    }
                    double z = 0;
                    for (int t = 0; t <= pos; ++t) z += (att[t] = std::exp(att[t] - mx));
                    for (std::size_t i = 0; i < hs; ++i) {
                        double a = 0;
                        for (int t = 0; t <= pos; ++t)
                            a += att[t] / z * vcache[(std::size_t(l) * c.seq_len + t) * KV + (h / kv_mul) * hs + i];
                        xb2[h * hs + i] = static_cast<float>(a);
                    }
                }
                rec.attn_out.insert(rec.attn_out.end(), xb2.begin(), xb2.end());
                detail::matvec(m.wo[l], xb2.data(), xb.data());
                for (std::size_t i = 0; i < D; ++i) x[i] += xb[i];
                detail::rmsnorm(x.data(), m.rms_ffn[l].data(), D, xb.data());
                rec.ffn_in.insert(rec.ffn_in.end(), xb.begin(), xb.end());
                detail::matvec(m.w1[l], xb.data(), hb.data());
                detail::matvec(m.w3[l], xb.data(), hb2.data());
                for (std::size_t i = 0; i < H; ++i) hb[i] = hb[i] / (1.0f + std::exp(-hb[i])) * hb2[i];
                rec.ffn_mid.insert(rec.ffn_mid.end(), hb.begin(), hb.end());
                detail::matvec(m.w2[l], hb.data(), xb.data());
                for (std::size_t i = 0; i < D; ++i) x[i] += xb[i];
            }
            detail::rmsnorm(x.data(), m.rms_final.data(), D, xb.data());
            double mx = -1e300, z = 0;
            int best = 0;
            for (int v = 0; v < c.vocab; ++v) {
                double sc = 0;
                for (std::size_t i = 0; i < D; ++i) sc += double(m.emb(v, i)) * xb[i];
                logits[v] = static_cast<float>(sc);
                if (sc > mx) mx = sc, best = v;
            }
            int next = best;
            if (temperature > 0) {
                for (int v = 0; v < c.vocab; ++v) z += std::exp((logits[v] - mx) / temperature);
                double u = uniform() * z, acc = 0;
                next = c.vocab - 1;
                for (int v = 0; v < c.vocab; ++v) {
                    acc += std::exp((logits[v] - mx) / temperature);
                    if (acc > u) {
                        next = v;
                        break;
                    }
                }
            }
            token = next;
            if (tokens) tokens->push_back(token);
        }
    }
    return out;
}

/// One linear layer of the model with its calibration and evaluation inputs.
struct linear_case {
    std::string name;                                     // e.g. "L0.wq"
    const kite::matrix<float>* w;                         // [out][in]
    kite::matrix_view<const float> calib, eval;           // [tokens][in]
};

/// The 7 linear layers of every transformer layer.
inline std::vector<linear_case> cases(const model& m, const std::vector<layer_inputs>& cal,
                                      const std::vector<layer_inputs>& ev) {
    std::vector<linear_case> out;
    const std::size_t D = m.cfg.dim, H = m.cfg.hidden;
    auto view = [](const std::vector<float>& v, std::size_t cols) {
        return kite::matrix_view<const float>(v.data(), v.size() / cols, cols);
    };
    for (int l = 0; l < m.cfg.layers; ++l) {
        std::string p = "L";  // built by appending: GCC 12 warns falsely on operator+ (bug 105651)
        p.append(std::to_string(l)).append(".");
        out.push_back({p + "wq", &m.wq[l], view(cal[l].attn_in, D), view(ev[l].attn_in, D)});
        out.push_back({p + "wk", &m.wk[l], view(cal[l].attn_in, D), view(ev[l].attn_in, D)});
        out.push_back({p + "wv", &m.wv[l], view(cal[l].attn_in, D), view(ev[l].attn_in, D)});
        out.push_back({p + "wo", &m.wo[l], view(cal[l].attn_out, D), view(ev[l].attn_out, D)});
        out.push_back({p + "w1", &m.w1[l], view(cal[l].ffn_in, D), view(ev[l].ffn_in, D)});
        out.push_back({p + "w3", &m.w3[l], view(cal[l].ffn_in, D), view(ev[l].ffn_in, D)});
        out.push_back({p + "w2", &m.w2[l], view(cal[l].ffn_mid, H), view(ev[l].ffn_mid, H)});
    }
    return out;
}

/// Squared output error ||X (W - Wq)^T||^2 and squared output ||X W^T||^2 over the rows of X
/// (in double).
inline std::pair<double, double> output_error(const kite::matrix<float>& w, const kite::matrix<float>& wq,
                                              kite::matrix_view<const float> x) {
    const Eigen::MatrixXd X = kite::as_eigen(x).cast<double>();
    const Eigen::MatrixXd W = kite::as_eigen(w).cast<double>();
    const Eigen::MatrixXd D = W - kite::as_eigen(wq).cast<double>();
    return {(X * D.transpose()).squaredNorm(), (X * W.transpose()).squaredNorm()};
}

}  // namespace kite::test::aidreams
