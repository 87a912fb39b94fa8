// kite/model/formats/llama2c.hpp: every array of a synthetic checkpoint lands at the offset run.c reads
// it from; bad headers and sizes are format errors; the real aidreams260K file when KITE_DATA
// is set.

#include <cmath>
#include <cstring>
#include <fstream>
#include <span>
#include <vector>

#include <nlohmann/json.hpp>

#include "kite/model/formats/llama2c.hpp"
#include "kite/model/sampling.hpp"
#include "kite_test.hpp"

using kite::model::llama2c_checkpoint;

namespace {

void write_checkpoint(const std::filesystem::path& p, const std::vector<std::int32_t>& header,
                      std::size_t n_floats, long extra_bytes = 0) {
    std::ofstream f(p, std::ios::binary);
    f.write(reinterpret_cast<const char*>(header.data()), static_cast<std::streamsize>(header.size() * 4));
    std::vector<float> v(n_floats);
    for (std::size_t i = 0; i < n_floats; ++i) v[i] = static_cast<float>(i);
    std::size_t bytes = n_floats * 4;
    if (extra_bytes < 0) bytes -= static_cast<std::size_t>(-extra_bytes);
    f.write(reinterpret_cast<const char*>(v.data()), static_cast<std::streamsize>(bytes));
    for (long i = 0; i < extra_bytes; ++i) f.put('\0');
}

}  // namespace

TEST_CASE("llama2c: array offsets follow run.c's memory_map_weights", "[model][llama2c]") {
    // dim 8, hidden 12, 2 layers, 4 heads, 2 kv heads, vocab 10, seq_len 3
    const std::size_t d = 8, h = 12, L = 2, kv = 4, V = 10, S = 3, hs = 2;
    for (const bool shared : {true, false}) {
        INFO("shared classifier: " << shared);
        const std::size_t n = V * d + L * d + L * d * d + 2 * L * kv * d + L * d * d + L * d + 3 * L * h * d +
                              d + 2 * S * hs / 2 + (shared ? 0 : V * d);
        kite::test::temp_dir tmp;
        const auto p = tmp / "tiny.bin";
        write_checkpoint(p, {8, 12, 2, 4, 2, shared ? 10 : -10, 3}, n);
        llama2c_checkpoint ck(p);
        const auto& c = ck.config();
        CHECK(c.dim == d);
        CHECK(c.kv_dim() == kv);
        CHECK(c.head_size() == hs);
        CHECK(c.vocab_size == V);
        CHECK(c.shared_classifier == shared);
        // The value stored at float index i is i, so each view's first element is its offset.
        std::size_t o = 0;
        CHECK(ck.token_embedding()(0, 0) == o);
        CHECK(ck.token_embedding()(V - 1, d - 1) == o + V * d - 1);
        o += V * d;
        CHECK(ck.rms_att(1)[0] == o + d);
        o += L * d;
        CHECK(ck.wq(1)(0, 0) == o + d * d);
        CHECK(ck.wq(0).rows() == d);
        o += L * d * d;
        CHECK(ck.wk(1)(0, 0) == o + kv * d);
        CHECK(ck.wk(0).rows() == kv);
        o += L * kv * d;
        CHECK(ck.wv(0)(kv - 1, d - 1) == o + kv * d - 1);
        o += L * kv * d;
        CHECK(ck.wo(1)(0, 1) == o + d * d + 1);
        o += L * d * d;
        CHECK(ck.rms_ffn(0)[0] == o);
        o += L * d;
        CHECK(ck.w1(1)(0, 0) == o + h * d);
        CHECK(ck.w1(0).rows() == h);
        o += L * h * d;
        CHECK(ck.w2(0)(1, 0) == o + h);
        CHECK(ck.w2(0).cols() == h);
        o += L * h * d;
        CHECK(ck.w3(0)(0, 0) == o);
        o += L * h * d;
        CHECK(ck.rms_final()[0] == o);
        o += d;
        CHECK(ck.freq_cis_real()(2, 0) == o + 2);
        o += S;
        CHECK(ck.freq_cis_imag()(0, 0) == o);
        o += S;
        CHECK(ck.classifier()(0, 0) == (shared ? 0 : o));
        const auto mc = ck.to_model_config();
        CHECK(mc.num_kv_heads == 2);
        CHECK(mc.head_dim == 2);
        CHECK(mc.rope_interleaved);
        CHECK(mc.tie_word_embeddings == shared);
        CHECK(mc.norm_eps == 1e-5);

        // Off by one byte either way.
        write_checkpoint(p, {8, 12, 2, 4, 2, shared ? 10 : -10, 3}, n, -1);
        KITE_REQUIRE_THROWS_CONTAINING(llama2c_checkpoint(p), kite::format_error, "(truncated)");
        write_checkpoint(p, {8, 12, 2, 4, 2, shared ? 10 : -10, 3}, n, 4);
        KITE_REQUIRE_THROWS_CONTAINING(llama2c_checkpoint(p), kite::format_error, "(trailing bytes)");
    }
}

TEST_CASE("llama2c: bad headers", "[model][llama2c]") {
    kite::test::temp_dir tmp;
    const auto p = tmp / "bad.bin";
    {
        std::ofstream f(p, std::ios::binary);
        f.write("abc", 3);
    }
    KITE_REQUIRE_THROWS_CONTAINING(llama2c_checkpoint(p), kite::format_error, "truncated while reading dim");
    write_checkpoint(p, {0, 12, 2, 4, 2, 10, 3}, 10);
    KITE_REQUIRE_THROWS_CONTAINING(llama2c_checkpoint(p), kite::format_error, "dim = 0");
    write_checkpoint(p, {8, 12, -2, 4, 2, 10, 3}, 10);
    KITE_REQUIRE_THROWS_CONTAINING(llama2c_checkpoint(p), kite::format_error, "n_layers = -2");
    write_checkpoint(p, {8, 12, 2, 3, 3, 10, 3}, 10);
    KITE_REQUIRE_THROWS_CONTAINING(llama2c_checkpoint(p), kite::format_error, "not a multiple of n_heads = 3");
    write_checkpoint(p, {8, 12, 2, 4, 3, 10, 3}, 10);
    KITE_REQUIRE_THROWS_CONTAINING(llama2c_checkpoint(p), kite::format_error, "n_kv_heads = 3");
    write_checkpoint(p, {8, 12, 2, 8, 8, 10, 3}, 10);
    KITE_REQUIRE_THROWS_CONTAINING(llama2c_checkpoint(p), kite::format_error, "is odd");
    write_checkpoint(p, {8, 12, 2, 4, 2, 0, 3}, 10);
    KITE_REQUIRE_THROWS_CONTAINING(llama2c_checkpoint(p), kite::format_error, "vocab_size = 0");
    write_checkpoint(p, {0x616b3432, 1, 0, 0, 0, 0, 0}, 10);
    KITE_REQUIRE_THROWS_CONTAINING(llama2c_checkpoint(p), kite::format_error, "ak42");
    // Sizes that would overflow 64-bit arithmetic are refused, not wrapped.
    write_checkpoint(p, {2147483644, 2147483646, 2147483647, 2, 2, -2147483647, 2147483647}, 10);
    KITE_REQUIRE_THROWS_CONTAINING(llama2c_checkpoint(p), kite::format_error, "overflow");
    write_checkpoint(p, {1 << 20, 1 << 20, 1 << 10, 2, 2, 10, 3}, 10);
    CHECK_THROWS_AS(llama2c_checkpoint(p), kite::format_error);
}

TEST_CASE("llama2c: the real aidreams260K checkpoint", "[model][llama2c][.aidreams]") {
    KITE_NEED_DATA(path, "aidreams260k/aidreams260K.bin");
    llama2c_checkpoint ck(path);
    const auto& c = ck.config();
    CHECK(c.dim == 64);
    CHECK(c.hidden_dim == 172);
    CHECK(c.n_layers == 4);
    CHECK(c.n_heads == 4);
    CHECK(c.n_kv_heads == 4);
    CHECK(c.vocab_size == 512);
    CHECK(c.seq_len == 128);
    CHECK(c.shared_classifier);
    CHECK(ck.classifier().data() == ck.token_embedding().data());
    // The stored RoPE tables are cos/sin of pos * 10000^(-2i / head_size), as export.py wrote them.
    kite::matrix<double> cos_want(c.seq_len, c.head_size() / 2), sin_want(c.seq_len, c.head_size() / 2);
    for (std::size_t pos = 0; pos < c.seq_len; ++pos) {
        for (std::size_t i = 0; i < c.head_size() / 2; ++i) {
            const double angle = static_cast<double>(pos) * std::pow(10000.0, -2.0 * static_cast<double>(i) / 16.0);
            cos_want(pos, i) = std::cos(angle);
            sin_want(pos, i) = std::sin(angle);
        }
    }
    // The tables are float32 (export.py): measured 1.7e-6 from the double-precision values.
    CHECK(kite::test::max_abs_diff(ck.freq_cis_real(), cos_want.view()) < 1e-5);
    CHECK(kite::test::max_abs_diff(ck.freq_cis_imag(), sin_want.view()) < 1e-5);
    // RMSNorm weights of a trained model are O(1) and positive; the embedding is not all zero.
    for (float w : ck.rms_final()) CHECK(std::isfinite(w));
    double norm = 0;
    for (float v : ck.token_embedding().flat()) norm += double(v) * v;
    CHECK(norm > 1.0);
}

namespace {

/// A plain scalar llama2.c forward pass with a KV cache, over the checkpoint's views: the test's
/// own oracle that the views feed a correct model (the NumPy reference recomputes the whole
/// sequence instead). Returns the logits of `token` at `pos`.
struct scalar_llama {
    const llama2c_checkpoint& ck;
    std::vector<float> kcache, vcache;  // [layer][pos][kv_dim]

    explicit scalar_llama(const llama2c_checkpoint& c)
        : ck(c),
          kcache(c.config().n_layers * c.config().seq_len * c.config().kv_dim()),
          vcache(kcache.size()) {}

    static void rmsnorm(std::vector<float>& out, const std::vector<float>& x, std::span<const float> w) {
        double ss = 0;
        for (float v : x) ss += double(v) * v;
        const double inv = 1.0 / std::sqrt(ss / double(x.size()) + 1e-5);
        for (std::size_t i = 0; i < x.size(); ++i) out[i] = float(x[i] * inv) * w[i];
    }
    static void matvec(std::vector<float>& out, kite::matrix_view<const float> w, const std::vector<float>& x) {
        for (std::size_t r = 0; r < w.rows(); ++r) {
            double s = 0;
            for (std::size_t c = 0; c < w.cols(); ++c) s += double(w(r, c)) * x[c];
            out[r] = float(s);
        }
    }

    std::vector<float> step(int token, std::size_t pos) {
        const auto& c = ck.config();
        const std::size_t dim = c.dim, kvd = c.kv_dim(), hs = c.head_size(), heads = c.n_heads;
        const std::size_t group = c.n_heads / c.n_kv_heads;
        std::vector<float> x(ck.token_embedding().row(token).begin(), ck.token_embedding().row(token).end());
        std::vector<float> xb(dim), q(dim), k(kvd), v(kvd), att(dim), h1(c.hidden_dim), h3(c.hidden_dim), o(dim);
        for (std::size_t l = 0; l < c.n_layers; ++l) {
            rmsnorm(xb, x, ck.rms_att(l));
            matvec(q, ck.wq(l), xb);
            matvec(k, ck.wk(l), xb);
            matvec(v, ck.wv(l), xb);
            for (std::size_t i = 0; i < dim; i += 2) {  // interleaved RoPE
                const double freq = std::pow(10000.0, -double(i % hs) / double(hs));
                const double a = double(pos) * freq, cs = std::cos(a), sn = std::sin(a);
                const auto rot = [&](std::vector<float>& t) {
                    const double t0 = t[i], t1 = t[i + 1];
                    t[i] = float(t0 * cs - t1 * sn);
                    t[i + 1] = float(t0 * sn + t1 * cs);
                };
                rot(q);
                if (i < kvd) rot(k);
            }
            float* kc = kcache.data() + (l * c.seq_len) * kvd;
            float* vc = vcache.data() + (l * c.seq_len) * kvd;
            std::copy(k.begin(), k.end(), kc + pos * kvd);
            std::copy(v.begin(), v.end(), vc + pos * kvd);
            for (std::size_t hd = 0; hd < heads; ++hd) {
                const std::size_t kvh = hd / group;
                std::vector<double> s(pos + 1);
                double mx = -1e300;
                for (std::size_t t = 0; t <= pos; ++t) {
                    double d = 0;
                    for (std::size_t e = 0; e < hs; ++e) d += double(q[hd * hs + e]) * kc[t * kvd + kvh * hs + e];
                    s[t] = d / std::sqrt(double(hs));
                    mx = std::max(mx, s[t]);
                }
                double z = 0;
                for (auto& e : s) z += (e = std::exp(e - mx));
                for (std::size_t e = 0; e < hs; ++e) {
                    double acc = 0;
                    for (std::size_t t = 0; t <= pos; ++t) acc += s[t] / z * vc[t * kvd + kvh * hs + e];
                    att[hd * hs + e] = float(acc);
                }
            }
            matvec(o, ck.wo(l), att);
            for (std::size_t i = 0; i < dim; ++i) x[i] += o[i];
            rmsnorm(xb, x, ck.rms_ffn(l));
            matvec(h1, ck.w1(l), xb);
            matvec(h3, ck.w3(l), xb);
            for (std::size_t i = 0; i < h1.size(); ++i) h1[i] = float(h1[i] / (1.0 + std::exp(-double(h1[i]))) * h3[i]);
            matvec(o, ck.w2(l), h1);
            for (std::size_t i = 0; i < dim; ++i) x[i] += o[i];
        }
        rmsnorm(xb, x, ck.rms_final());
        std::vector<float> logits(c.vocab_size);
        matvec(logits, ck.classifier(), xb);
        return logits;
    }
};

}  // namespace

TEST_CASE("llama2c: views drive a forward pass equal to tools/aidreams_reference.py", "[model][llama2c][.aidreams]") {
    KITE_NEED_DATA(path, "aidreams260k/aidreams260K.bin");
    std::ifstream jf(kite::test::fixture("model/aidreams_greedy.json"));
    const auto fx = nlohmann::json::parse(jf);
    const auto tokens = fx["tokens"].get<std::vector<int>>();
    const std::size_t vocab = fx["vocab_size"].get<std::size_t>();
    const std::size_t logit_steps = fx["logits_steps"].get<std::size_t>();
    const std::string raw = kite::io::read_text(kite::test::fixture("model/aidreams_logits.f32"));
    REQUIRE(raw.size() == logit_steps * vocab * 4);
    std::vector<float> want(logit_steps * vocab);
    std::memcpy(want.data(), raw.data(), raw.size());

    llama2c_checkpoint ck(path);
    scalar_llama model(ck);
    std::vector<int> generated = {tokens[0]};
    for (std::size_t pos = 0; pos + 1 < tokens.size(); ++pos) {
        const auto logits = model.step(generated.back(), pos);
        if (pos < logit_steps) {
            INFO("position " << pos);
            CHECK(kite::test::max_abs_diff(std::span<const float>(logits.data(), vocab),
                                           std::span<const float>(want).subspan(pos * vocab, vocab)) < 2e-5);  // measured 3.8e-6
        }
        generated.push_back(static_cast<int>(kite::model::argmax(logits)));
    }
    CHECK(generated == tokens);
}
