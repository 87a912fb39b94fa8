// kite/quant/packed_f32.hpp, encoder.hpp, bert_loader.hpp, encoder_reference.hpp:
//  - the packed float32 GEMM and its fused epilogues against a double-precision oracle on random
//    and adversarial shapes (tails in every dimension, K chunking, strided views, threads);
//  - the BERT encoder against transformers on a tiny random BertModel (one padded batch with an
//    attention mask in transformers, packed sequences in kite), against kite's own double
//    precision reference, batch invariance, quantized and calibrated variants, and errors.

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <fstream>
#include <vector>

#include <nlohmann/json.hpp>

#include "kite/model/formats/bert_loader.hpp"
#include "kite/model/encoder.hpp"
#include "kite/model/encoder_reference.hpp"
#include "kite/quant/packed_f32.hpp"
#include "kite/quant/reference.hpp"
#include "encoder_test_util.hpp"
#include "kite_test.hpp"

namespace km = kite::model;
namespace kq = kite::quant;
using kite::index_t;
using kite::matrix;
using kite::test::random_matrix;

namespace {

nlohmann::json read_json(const std::filesystem::path& p) {
    std::ifstream f(p);
    REQUIRE(f.good());
    return nlohmann::json::parse(f);
}

/// Y = norm(act(X W^T + b) + R) in double, with a per-element error scale: the sum of the
/// |x w| terms and |b| (the float sum's rounding, which GELU passes on with slope <= 1.13), plus
/// |y| (before the norm), or the row's standard deviation (after it).
void oracle(kite::matrix_view<const float> x, const matrix<float>& w, const std::vector<float>& bias,
            kite::matrix_view<const float> res, bool gelu, const km::layer_norm* norm, std::vector<double>& y,
            std::vector<double>& mag) {
    const index_t T = x.rows(), N = w.rows(), K = w.cols();
    y.assign(T * N, 0.0);
    mag.assign(T * N, 0.0);
    for (index_t t = 0; t < T; ++t) {
        for (index_t n = 0; n < N; ++n) {
            double s = 0, m = 0;
            for (index_t k = 0; k < K; ++k) {
                s += static_cast<double>(x(t, k)) * w(n, k);
                m += std::abs(static_cast<double>(x(t, k)) * w(n, k));
            }
            if (!bias.empty()) {
                s += bias[n];
                m += std::abs(static_cast<double>(bias[n]));
            }
            if (gelu) s = km::act::gelu::reference(s);
            if (!res.empty()) s += res(t, n);
            y[t * N + n] = s;
            mag[t * N + n] = m + std::abs(s);
        }
        if (norm) {
            double mean = 0, var = 0, scale = 0;
            for (index_t n = 0; n < N; ++n) mean += y[t * N + n] / static_cast<double>(N);
            for (index_t n = 0; n < N; ++n) var += (y[t * N + n] - mean) * (y[t * N + n] - mean) / static_cast<double>(N);
            for (index_t n = 0; n < N; ++n) scale = std::max(scale, mag[t * N + n]);
            const double inv = 1.0 / std::sqrt(var + norm->eps());
            for (index_t n = 0; n < N; ++n) {
                y[t * N + n] = (y[t * N + n] - mean) * inv * norm->weight()[n] + norm->bias()[n];
                mag[t * N + n] = (scale + 1) * inv * (std::abs(norm->weight()[n]) + 1);  // errors scale by inv
            }
        }
    }
}

}  // namespace

TEST_CASE("packed_f32 gemm equals the double oracle on tails, K chunks, strides and epilogues", "[model][encoder][gemm]") {
    const index_t Ts[] = {1, 5, 6, 7, 13, 61};
    const index_t Ks[] = {1, 3, 17, 384, 385, 800};
    const index_t Ns[] = {1, 15, 64, 65, 130};
    std::uint64_t seed = 1;
    for (index_t K : Ks)
        for (index_t N : Ns) {
            const matrix<float> w = random_matrix(N, K, seed++, 1.0f / std::sqrt(static_cast<float>(K)));
            const auto bias = kite::test::randn(N, seed++);
            const kite::quant::packed_f32_weights pw(w.view());
            REQUIRE(pw.rows() == N);
            REQUIRE(pw.cols() == K);
            CHECK(pw.panels() == (N + pw.panel_width() - 1) / pw.panel_width());
            CHECK(pw.value(N - 1, K - 1) == w(N - 1, K - 1));
            const matrix<float> deq = dequantize(pw);
            CHECK(std::equal(deq.flat().begin(), deq.flat().end(), w.flat().begin()));
            for (index_t T : Ts) {
                // X and Y as strided views into wider buffers (stride > cols).
                const matrix<float> xbuf = random_matrix(T, K + 3, seed++);
                const kite::matrix_view<const float> x(xbuf.data(), T, K, K + 3);
                const matrix<float> rbuf = random_matrix(T, N + 1, seed++);
                const kite::matrix_view<const float> res(rbuf.data(), T, N, N + 1);
                const km::layer_norm norm(kite::test::randn(N, seed + 100, 0.5f), kite::test::randn(N, seed + 200), 1e-5f);
                for (int mode = 0; mode < 6; ++mode) {
                    // none, bias, bias + GELU, bias + residual, bias + GELU + residual + norm, residual + norm
                    const bool has_bias = mode >= 1 && mode <= 4, gelu = mode == 2 || mode == 4,
                               has_res = mode >= 3, has_norm = mode >= 4;
                    matrix<float> ybuf(T, N + 5, 7.0f);
                    const kite::matrix_view<float> y(ybuf.data(), T, N, N + 5);
                    kite::quant::gemm_epilogue e;
                    if (has_bias) e.bias = bias;
                    if (has_res) e.residual = res;
                    e.gelu = gelu;
                    if (has_norm) e.norm = norm.row();
                    const int threads = static_cast<int>(seed % 2) + 1;
                    kite::quant::gemm(pw, x, y, e, threads);
                    std::vector<double> ref, mag;
                    oracle(x, w, has_bias ? bias : std::vector<float>{}, has_res ? res : kite::matrix_view<const float>{},
                           gelu, has_norm ? &norm : nullptr, ref, mag);
                    const auto worst = kite::test::max_diff(
                        y, kite::matrix_view<const double>(ref.data(), T, N),
                        [&](std::size_t i, double a, double b) { return std::abs(a - b) / (mag[i] + 1e-30); },
                        "|y - oracle| / scale");
                    INFO("T " << T << " K " << K << " N " << N << " mode " << mode << " threads " << threads);
                    CHECK(worst < 4e-6);
                    // The padding columns of Y past N are never written.
                    for (index_t t = 0; t < T; ++t)
                        for (index_t c = N; c < N + 5; ++c) CHECK(ybuf(t, c) == 7.0f);
                }
            }
        }
}

TEST_CASE("packed_f32 gemm agrees with quant's oracle, gemv and linear<>", "[model][encoder][gemm]") {
    const matrix<float> w = random_matrix(200, 96, 11);
    const auto bias = kite::test::randn(200, 12);
    const matrix<float> x = random_matrix(37, 96, 13);
    const kite::quant::packed_f32_weights pw(w.view());
    matrix<float> y(37, 200), r(37, 200);
    kite::quant::gemm(pw, x.view(), y.view());
    kq::reference::gemm(pw, x.view(), r.view());
    for (index_t i = 0; i < y.size(); ++i) CHECK(y.flat()[i] == Approx(r.flat()[i]).margin(1e-4));
    std::vector<float> gy(200), gr(200);
    kite::quant::gemv(pw, x.row(3), gy);
    kq::reference::gemv(pw, x.row(3), gr);
    for (index_t i = 0; i < 200; ++i) CHECK(gy[i] == Approx(gr[i]).margin(1e-4));
    // A linear layer over packed weights equals one over dense float32 weights.
    const auto lp = km::make_linear(kite::quant::f32_packed{}, w.view(), bias);
    const auto ld = km::make_linear(kq::f32{}, w.view(), bias);
    matrix<float> yp(37, 200), yd(37, 200);
    lp.forward(x.view(), yp.view());
    ld.forward(x.view(), yd.view());
    for (index_t i = 0; i < yp.size(); ++i) CHECK(yp.flat()[i] == Approx(yd.flat()[i]).margin(1e-4));
}

TEST_CASE("packed_f32 gemm rejects bad shapes, overlap and non-finite weights", "[model][encoder][gemm]") {
    const matrix<float> w = random_matrix(8, 4, 1);
    const kite::quant::packed_f32_weights pw(w.view());
    matrix<float> x(3, 4), y(3, 8), bad(3, 7);
    KITE_REQUIRE_THROWS_CONTAINING(kite::quant::gemm(pw, matrix<float>(3, 5).view(), y.view()), kite::shape_error,
                                   "expected in_features = 4");
    KITE_REQUIRE_THROWS_CONTAINING(kite::quant::gemm(pw, x.view(), bad.view()), kite::shape_error, "expected 3 x 8");
    std::vector<float> b3(3);
    KITE_REQUIRE_THROWS_CONTAINING(kite::quant::gemm(pw, x.view(), y.view(), kite::quant::gemm_epilogue{.bias = b3}), kite::shape_error,
                                   "bias has 3 elements");
    KITE_REQUIRE_THROWS_CONTAINING(kite::quant::gemm(pw, x.view(), y.view(), kite::quant::gemm_epilogue{.residual = y.view()}),
                                   kite::invalid_argument, "overlaps");
    const km::layer_norm ln7(std::vector<float>(7, 1.0f), {}, 1e-5f);
    KITE_REQUIRE_THROWS_CONTAINING(kite::quant::gemm(pw, x.view(), y.view(), kite::quant::gemm_epilogue{.norm = ln7.row()}), kite::shape_error,
                                   "LayerNorm has dim 7; expected out_features = 8");
    matrix<float> wn = random_matrix(8, 4, 2);
    wn(5, 2) = std::nanf("");
    KITE_REQUIRE_THROWS_CONTAINING(kite::quant::packed_f32_weights(wn.view()), kite::invalid_argument, "[5][2]");
    // Zero tokens and zero inner dimension are well defined.
    kite::quant::gemm(pw, matrix<float>(0, 4).view(), matrix<float>(0, 8).view());
    const kite::quant::packed_f32_weights empty_k(matrix<float>(8, 0).view());
    std::vector<float> b8(8, 0.5f);
    matrix<float> y0(2, 8);
    kite::quant::gemm(empty_k, matrix<float>(2, 0).view(), y0.view(), kite::quant::gemm_epilogue{.bias = b8});
    CHECK(y0(1, 7) == 0.5f);
}

// ---- encoder ------------------------------------------------------------------------------

namespace {

struct tiny_fixture {
    km::bert_checkpoint ckpt = km::read_bert(kite::test::fixture("model/bert_tiny"));
    nlohmann::json expected = read_json(kite::test::fixture("model/bert_tiny/expected.json"));
    std::vector<std::vector<std::int32_t>> sequences() const {
        return expected["sequences"].get<std::vector<std::vector<std::int32_t>>>();
    }
};

const tiny_fixture& tiny() {
    static const tiny_fixture f;
    return f;
}

km::token_batch batch_of(const std::vector<std::vector<std::int32_t>>& seqs) {
    km::token_batch b;
    for (const auto& s : seqs) b.add(s);
    return b;
}

template <class Encoder>
void check_against_transformers(const Encoder& enc, double tol) {
    const auto& f = tiny();
    const auto seqs = f.sequences();
    const km::token_batch batch = batch_of(seqs);
    km::encoder_workspace ws;
    enc.forward(batch, ws);
    const index_t h = enc.hidden();
    for (index_t b = 0; b < seqs.size(); ++b) {
        const auto states = f.expected["states"][b].template get<std::vector<double>>();
        REQUIRE(states.size() == seqs[b].size() * h);
        const auto worst = kite::test::max_abs_diff(ws.x.view().rows_slice(batch.offset(b), seqs[b].size()),
                                                    kite::matrix_view<const double>(states.data(), seqs[b].size(), h));
        INFO("sequence " << b << " of length " << seqs[b].size());
        CHECK(worst < tol);
    }
    matrix<float> emb(seqs.size(), h);
    enc.embed(batch, emb.view(), ws);
    for (index_t b = 0; b < seqs.size(); ++b) {
        const auto e = f.expected["embeddings"][b].template get<std::vector<double>>();
        for (index_t i = 0; i < h; ++i) CHECK(emb(b, i) == Approx(e[i]).margin(tol));
    }
}

}  // namespace

TEST_CASE("read_bert reads a tiny transformers BertModel", "[model][encoder]") {
    const auto& ck = tiny().ckpt;
    CHECK(ck.config.arch == km::architecture::bert);
    CHECK(ck.layers.size() == 2);
    CHECK(ck.word_embeddings.rows() == 99);
    CHECK(ck.position_embeddings.rows() == 40);
    CHECK(ck.token_type_embeddings.rows() == 2);
    CHECK(ck.layers[1].qkv.rows() == 96);
    CHECK(ck.layers[1].up.rows() == 64);
    // A decoder checkpoint is refused with a sentence.
    KITE_REQUIRE_THROWS_CONTAINING(km::read_bert(kite::test::fixture("model/hf/gpt2")), kite::config_error,
                                   "expected model_type \"bert\"");
}

TEST_CASE("bert_encoder equals transformers on a padded batch (packed f32 + flash, dense f32 + reference)", "[model][encoder]") {
    // Measured (release, 2026-12-03): max |kite - transformers| 1.1e-6 over every hidden state.
    check_against_transformers(km::bert_encoder<>(tiny().ckpt), 5e-6);
    check_against_transformers(km::bert_encoder<kq::f32, kite::attn::reference>(tiny().ckpt), 5e-6);
    check_against_transformers(km::bert_encoder<kite::quant::f32_packed, kite::attn::flash<16, 8>>(tiny().ckpt), 5e-6);
}

TEST_CASE("bert_encoder equals the double-precision reference and does not depend on the batch", "[model][encoder]") {
    const auto& ck = tiny().ckpt;
    const km::bert_encoder<> enc(ck);
    // Adversarial lengths: 1 token, a full position table (40), tile edges of flash (16, 17).
    std::vector<std::vector<std::int32_t>> seqs;
    for (index_t n : {1u, 40u, 16u, 17u, 2u, 33u, 7u}) {
        std::vector<std::int32_t> s(n);
        for (index_t i = 0; i < n; ++i) s[i] = static_cast<std::int32_t>((13 * i + 5 * n) % 99);
        seqs.push_back(s);
    }
    const km::token_batch batch = batch_of(seqs);
    km::encoder_workspace ws;
    matrix<float> emb(seqs.size(), enc.hidden()), cls(seqs.size(), enc.hidden()), raw(seqs.size(), enc.hidden());
    enc.embed(batch, emb.view(), ws, 2);
    enc.embed(batch, cls.view(), ws, 1, km::pooling::cls, false);
    enc.embed(batch, raw.view(), ws, 1, km::pooling::mean, false);
    for (index_t b = 0; b < seqs.size(); ++b) {
        const auto ref = km::reference::bert_embedding(ck, seqs[b]);
        const auto ref_cls = km::reference::bert_embedding(ck, seqs[b], km::pooling::cls, false);
        const auto ref_raw = km::reference::bert_embedding(ck, seqs[b], km::pooling::mean, false);
        INFO("sequence " << b << " of length " << seqs[b].size());
        for (index_t i = 0; i < enc.hidden(); ++i) {
            CHECK(emb(b, i) == Approx(ref[i]).margin(2e-5));
            CHECK(cls(b, i) == Approx(ref_cls[i]).margin(5e-5));
            CHECK(raw(b, i) == Approx(ref_raw[i]).margin(5e-5));
        }
        // Alone, or in another batch, a sequence gets the same embedding (no padding leaks).
        const km::token_batch alone = batch_of({seqs[b]});
        matrix<float> one(1, enc.hidden());
        enc.embed(alone, one.view(), ws, 1);
        for (index_t i = 0; i < enc.hidden(); ++i) CHECK(one(0, i) == Approx(emb(b, i)).margin(1e-6));
    }
    // A batch of more tokens than a chunk of the token-wise layers (encoder_chunk_tokens): two
    // full chunks and a tail, sequences straddling the chunk edges.
    std::vector<std::vector<std::int32_t>> many;
    index_t total = 0;
    for (index_t j = 0; total <= 2 * km::detail::encoder_chunk_tokens + 20; ++j) {
        const index_t n = 1 + (j * 17) % 40;
        std::vector<std::int32_t> s(n);
        for (index_t i = 0; i < n; ++i) s[i] = static_cast<std::int32_t>((7 * i + 3 * j + 1) % 99);
        many.push_back(s);
        total += n;
    }
    const km::token_batch big = batch_of(many);
    REQUIRE(big.tokens() > 2 * km::detail::encoder_chunk_tokens);
    REQUIRE(big.tokens() % km::detail::encoder_chunk_tokens != 0);
    matrix<float> memb(many.size(), enc.hidden());
    enc.embed(big, memb.view(), ws, 2);
    for (index_t b = 0; b < many.size(); ++b) {
        const auto ref = km::reference::bert_embedding(ck, many[b]);
        INFO("sequence " << b);
        CHECK(kite::test::max_abs_diff(memb.row(b), ref) < 1e-6);  // measured 1.2e-7
    }
}

TEST_CASE("bert_encoder refuses bad batches and bad checkpoints", "[model][encoder]") {
    const auto& ck = tiny().ckpt;
    const km::bert_encoder<> enc(ck);
    km::encoder_workspace ws;
    KITE_REQUIRE_THROWS_CONTAINING(enc.forward(batch_of({{2, 3}, {}}), ws), kite::invalid_argument,
                                   "sequence 1 has 0 tokens");
    KITE_REQUIRE_THROWS_CONTAINING(enc.forward(batch_of({std::vector<std::int32_t>(41, 5)}), ws), kite::invalid_argument,
                                   "41 tokens; expected 1 to max_position_embeddings = 40");
    KITE_REQUIRE_THROWS_CONTAINING(enc.forward(batch_of({{2, 99, 3}}), ws), kite::invalid_argument,
                                   "token id 99 (token 1 of the batch)");
    KITE_REQUIRE_THROWS_CONTAINING(enc.forward(batch_of({{2, -1}}), ws), kite::invalid_argument, "token id -1");
    matrix<float> out(2, 31);
    KITE_REQUIRE_THROWS_CONTAINING(enc.embed(batch_of({{2, 3}, {2, 3}}), out.view(), ws), kite::shape_error,
                                   "expected 2 x 32");

    km::bert_checkpoint bad;
    bad.config = ck.config;
    bad.source = "hand-made";
    bad.word_embeddings = ck.word_embeddings.clone();
    bad.position_embeddings = ck.position_embeddings.clone();
    bad.token_type_embeddings = ck.token_type_embeddings.clone();
    bad.embedding_norm_weight = ck.embedding_norm_weight;
    bad.embedding_norm_bias = ck.embedding_norm_bias;
    KITE_REQUIRE_THROWS_CONTAINING(km::bert_encoder<>{bad}, kite::shape_error, "0 layers; expected num_hidden_layers = 2");
    for (const auto& l : ck.layers) {
        km::block_tensors b;
        b.qkv = l.qkv.clone();
        b.qkv_bias = l.qkv_bias;
        b.o = l.o.clone();
        b.o_bias = l.o_bias;
        b.attn_norm_weight = l.attn_norm_weight;
        b.attn_norm_bias = l.attn_norm_bias;
        b.up = l.up.clone();
        b.up_bias = l.up_bias;
        b.down = l.down.clone();
        b.down_bias = std::vector<float>(31);  // wrong length
        b.mlp_norm_weight = l.mlp_norm_weight;
        b.mlp_norm_bias = l.mlp_norm_bias;
        bad.layers.push_back(std::move(b));
    }
    KITE_REQUIRE_THROWS_CONTAINING(km::bert_encoder<>{bad}, kite::shape_error, "output bias has 31 elements; expected 32");
    bad.config.hidden_act = km::activation::gelu_tanh;
    KITE_REQUIRE_THROWS_CONTAINING(km::bert_encoder<>{bad}, kite::config_error, "exact (erf) GELU");
    bad.config.causal = true;
    KITE_REQUIRE_THROWS_CONTAINING(km::bert_encoder<>{bad}, kite::config_error, "expected a BERT encoder");
}

TEST_CASE("quantized bert_encoders: int8, int4 RTN, and GPTQ / AWQ calibrated layer by layer", "[model][encoder][quant]") {
    const auto& ck = tiny().ckpt;
    const auto seqs = tiny().sequences();
    const km::token_batch batch = batch_of(seqs);
    km::encoder_workspace ws;
    const km::bert_encoder<> f32(ck);
    matrix<float> ref(seqs.size(), f32.hidden());
    f32.embed(batch, ref.view(), ws);
    // Calibration: sequences other than the evaluated ones.
    std::vector<std::vector<std::int32_t>> calib;
    for (int s = 0; s < 24; ++s) {
        std::vector<std::int32_t> q(8 + s % 20);
        for (index_t i = 0; i < q.size(); ++i) q[i] = static_cast<std::int32_t>((31 * s + 17 * i + 1) % 99);
        calib.push_back(q);
    }
    const auto check = [&](const auto& enc, double min_cos, const char* what) {
        matrix<float> e(seqs.size(), enc.hidden());
        enc.embed(batch, e.view(), ws);
        kite::test::running_min worst;
        for (index_t b = 0; b < seqs.size(); ++b) worst.add(kite::test::cosine(e.row(b), ref.row(b)), b);
        INFO(what << ": worst cosine to float32 " << worst.value() << " (sequence " << worst.at() << ")");
        CHECK(worst.value() >= min_cos);
        CHECK(worst.value() < 1.0);  // the weights really changed
        CHECK(enc.linear_bytes() < f32.linear_bytes());
    };
    check(km::bert_encoder<kq::absmax<8>>(ck), 0.9995, "int8 absmax");
    check(km::bert_encoder<kq::zero_point<4, 32>>(ck), 0.99, "int4 RTN g32");
    using gptq_t = kq::gptq<4, 32>;
    check(km::bert_encoder<gptq_t>(ck, {.method = {}, .calibration = calib}), 0.99, "GPTQ 4-bit g32");
    using awq_t = kq::awq<4, 32>;
    check(km::bert_encoder<awq_t>(ck, {.method = {}, .calibration = calib}), 0.99, "AWQ 4-bit g32");
    KITE_REQUIRE_THROWS_CONTAINING(km::bert_encoder<gptq_t>(ck), kite::invalid_argument, "need calibration inputs");
}
