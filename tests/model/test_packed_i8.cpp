// kite/quant/packed_i8.hpp: the int8 (W8A8, per-token activation scales) GEMM
//  - against its oracle reference_gemm (integer levels multiplied exactly, scaled in double) plus
//    a double-precision epilogue, on tails in every dimension, strided views and 1-2 threads;
//  - the quantization itself: levels are round-half-even of W / s_w, ties and extremes exact,
//    the error against the float product within the bound of the two roundings;
//  - adversarial rows (zeros, NaN, inf, the largest sums), bad shapes, and the encoder built
//    on it (bert_encoder<w8a8_packed>) against float32.

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <vector>

#include "kite/model/formats/bert_loader.hpp"
#include "kite/model/encoder.hpp"
#include "kite/quant/packed_i8.hpp"
#include "encoder_test_util.hpp"
#include "kite_test.hpp"

namespace km = kite::model;
using kite::index_t;
using kite::matrix;
using kite::test::random_matrix;

namespace {

/// The epilogue in double on the oracle's product p [T][N]; mag gets each element's error scale
/// (|terms| of the product plus |bias|, whose float sum's rounding GELU passes on, or the row's
/// 1/std after a LayerNorm).
void epilogue_oracle(const matrix<float>& p, const matrix<double>& terms, const std::vector<float>& bias,
                     kite::matrix_view<const float> res, bool gelu, const km::layer_norm* norm, std::vector<double>& y,
                     std::vector<double>& mag) {
    const index_t T = p.rows(), N = p.cols();
    y.assign(T * N, 0.0);
    mag.assign(T * N, 0.0);
    for (index_t t = 0; t < T; ++t) {
        for (index_t n = 0; n < N; ++n) {
            double s = p(t, n), m = terms(t, n);
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
                mag[t * N + n] = (scale + 1) * inv * (std::abs(norm->weight()[n]) + 1);
            }
        }
    }
}

/// sum_k |s_x q_x s_w q_w| per output: the scale of the float rounding in the kernel's result.
matrix<double> term_magnitudes(const kite::quant::packed_i8_weights& w, kite::matrix_view<const float> x) {
    matrix<double> m(x.rows(), w.rows());
    for (index_t t = 0; t < x.rows(); ++t) {
        const double amax = kite::test::max_abs_of(x.row(t));
        for (index_t n = 0; n < w.rows(); ++n) {
            double s = 0;
            for (index_t k = 0; k < x.cols(); ++k) s += 127.0 * std::abs(w.level(n, k));
            m(t, n) = s * amax / 127.0 * w.scale(n);
        }
    }
    return m;
}

}  // namespace

TEST_CASE("packed_i8 gemm equals its integer oracle on tails, strides, threads and epilogues", "[model][gemm][i8]") {
    const index_t Ts[] = {1, 5, 11, 12, 13, 40};
    const index_t Ks[] = {1, 3, 4, 17, 384, 389};
    const index_t Ns[] = {1, 15, 64, 65, 130};
    std::uint64_t seed = 500;
    for (index_t K : Ks)
        for (index_t N : Ns) {
            const matrix<float> w = random_matrix(N, K, seed++, 1.0f / std::sqrt(static_cast<float>(K)));
            const auto bias = kite::test::randn(N, seed++);
            const kite::quant::packed_i8_weights pw(w.view());
            REQUIRE(pw.rows() == N);
            REQUIRE(pw.cols() == K);
            CHECK(pw.k4() == (K + 3) / 4);
            CHECK(pw.panels() == (N + pw.panel_width() - 1) / pw.panel_width());
            // Levels are round(W / s_w) with s_w = max |row| / 127; the largest is +-127.
            for (index_t n = 0; n < N; ++n) {
                const auto amax = static_cast<float>(kite::test::max_abs_of(w.row(n)));
                CHECK(pw.scale(n) == amax / 127.0f);
                int top = 0;
                for (index_t k = 0; k < K; ++k) {
                    CHECK(pw.level(n, k) == static_cast<int>(std::nearbyint(w(n, k) * (127.0f / amax))));
                    top = std::max(top, std::abs(pw.level(n, k)));
                }
                CHECK(top == 127);
            }
            const matrix<float> deq = dequantize(pw);
            for (index_t n = 0; n < N; ++n)
                for (index_t k = 0; k < K; ++k) CHECK(std::abs(deq(n, k) - w(n, k)) <= 0.5001f * pw.scale(n));
            for (index_t T : Ts) {
                const matrix<float> xbuf = random_matrix(T, K + 3, seed++);
                const kite::matrix_view<const float> x(xbuf.data(), T, K, K + 3);
                const matrix<float> rbuf = random_matrix(T, N + 1, seed++);
                const kite::matrix_view<const float> res(rbuf.data(), T, N, N + 1);
                const km::layer_norm norm(kite::test::randn(N, seed + 100, 0.5f), kite::test::randn(N, seed + 200), 1e-5f);
                const matrix<float> prod = kite::quant::reference_gemm(pw, x);
                const matrix<double> terms = term_magnitudes(pw, x);
                for (int mode = 0; mode < 6; ++mode) {
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
                    epilogue_oracle(prod, terms, has_bias ? bias : std::vector<float>{},
                                    has_res ? res : kite::matrix_view<const float>{}, gelu, has_norm ? &norm : nullptr,
                                    ref, mag);
                    const auto worst = kite::test::max_diff(
                        y, kite::matrix_view<const double>(ref.data(), T, N),
                        [&](std::size_t i, double a, double b) { return std::abs(a - b) / (mag[i] + 1e-30); },
                        "|y - oracle| / scale");
                    INFO("T " << T << " K " << K << " N " << N << " mode " << mode << " threads " << threads);
                    CHECK(worst < 8e-6);  // float scaling and the rational erf on top of exact integers
                    for (index_t t = 0; t < T; ++t)
                        for (index_t c = N; c < N + 5; ++c) CHECK(ybuf(t, c) == 7.0f);
                }
            }
        }
}

TEST_CASE("packed_i8 gemm stays within the rounding bound of the float product", "[model][gemm][i8]") {
    // |x.w - s_x q_x . s_w q_w| <= sum_k (|x_k| s_w / 2 + |w_k| s_x / 2 + s_x s_w / 4).
    for (const index_t K : {8, 96, 384, 1536}) {
        const matrix<float> w = random_matrix(70, K, 40 + K, 0.05f);
        matrix<float> x = random_matrix(9, K, 41 + K, 3.0f);
        for (index_t k = 0; k < K; k += 7) x(2, k) *= 30.0f;  // an outlier-heavy token
        const kite::quant::packed_i8_weights pw(w.view());
        matrix<float> y(9, 70);
        kite::quant::gemm(pw, x.view(), y.view(), 2);
        for (index_t t = 0; t < 9; ++t) {
            const double sx = kite::test::max_abs_of(x.row(t)) / 127.0;
            for (index_t n = 0; n < 70; ++n) {
                double exact = 0, bound = 0;
                for (index_t k = 0; k < K; ++k) {
                    exact += static_cast<double>(x(t, k)) * w(n, k);
                    bound += std::abs(x(t, k)) * pw.scale(n) / 2 + std::abs(w(n, k)) * sx / 2 + sx * pw.scale(n) / 4;
                }
                CHECK(std::abs(y(t, n) - exact) <= bound * 1.0001 + 1e-6);
            }
        }
    }
}

TEST_CASE("packed_i8 gemm: ties, zero rows, NaN and inf rows, extreme sums, K = 0", "[model][gemm][i8]") {
    SECTION("ties round half to even, like the oracle") {
        // amax = 127, so x = k + 0.5 lands exactly on a tie of the activation grid.
        const index_t K = 64;
        matrix<float> x(2, K);
        for (index_t k = 0; k < K; ++k) x(0, k) = static_cast<float>(k % 8) - 3.5f;
        x(0, 0) = 127.0f;
        for (index_t k = 0; k < K; ++k) x(1, k) = -x(0, k);
        matrix<float> w(3, K, 0.0f);
        for (index_t k = 0; k < K; ++k) w(0, k) = 1.0f;     // sums the levels
        for (index_t k = 1; k < K; ++k) w(1, k) = k % 2 ? 1.0f : -1.0f;
        w(2, 5) = 127.0f;
        const kite::quant::packed_i8_weights pw(w.view());
        matrix<float> y(2, 3);
        kite::quant::gemm(pw, x.view(), y.view());
        const matrix<float> r = kite::quant::reference_gemm(pw, x.view());
        for (index_t i = 0; i < y.size(); ++i) CHECK(y.flat()[i] == Approx(r.flat()[i]).epsilon(1e-6).margin(1e-6));
        // Levels of row 0: 127, then round-half-even of k % 8 - 3.5: -4, -2, -2, 0, 0, 2, 2, 4 ...
        double levels = 127;
        for (index_t k = 1; k < K; ++k) levels += std::nearbyint(static_cast<double>(k % 8) - 3.5);
        // W row 0 is all ones: s_w = 1 / 127, levels 127; s_x = 1. So y = the sum of the levels.
        CHECK(y(0, 0) == Approx(levels).epsilon(1e-6));
        CHECK(y(1, 0) == Approx(-y(0, 0)).epsilon(1e-6));
    }
    SECTION("zero rows give the bias; NaN and inf poison only their own row") {
        const matrix<float> w = random_matrix(70, 33, 3);
        const auto bias = kite::test::randn(70, 4);
        matrix<float> x = random_matrix(8, 33, 5);
        std::fill_n(x.row(1).data(), 33, 0.0f);
        x(3, 7) = std::numeric_limits<float>::quiet_NaN();
        x(5, 30) = -std::numeric_limits<float>::infinity();
        const kite::quant::packed_i8_weights pw(w.view());
        matrix<float> y(8, 70);
        kite::quant::gemm(pw, x.view(), y.view(), kite::quant::gemm_epilogue{.bias = bias}, 2);
        for (index_t n = 0; n < 70; ++n) {
            CHECK(y(1, n) == bias[n]);
            CHECK(std::isnan(y(3, n)));
            CHECK(std::isnan(y(5, n)));
            for (index_t t : {0, 2, 4, 6, 7}) CHECK(std::isfinite(y(t, n)));
        }
        const matrix<float> r = kite::quant::reference_gemm(pw, x.view());
        CHECK(std::isnan(r(3, 0)));
        CHECK(std::isnan(r(5, 69)));
        CHECK(r(1, 4) == 0.0f);
    }
    SECTION("the largest sums do not overflow and the +128 offset cancels exactly") {
        for (const index_t K : {4, 1000, 8192}) {
            matrix<float> x(7, K, 2.0f), w(65, K, -0.5f);
            for (index_t k = 0; k < K; k += 2) x(3, k) = -2.0f;
            const kite::quant::packed_i8_weights pw(w.view());
            matrix<float> y(7, 65);
            kite::quant::gemm(pw, x.view(), y.view());
            const double full = -1.0 * static_cast<double>(K);  // 2 * -0.5 * K
            CHECK(y(0, 0) == Approx(full).epsilon(1e-6));
            CHECK(y(6, 64) == Approx(full).epsilon(1e-6));
            CHECK(y(3, 10) == Approx(K % 2 ? 1.0 : 0.0).margin(1e-4));
        }
    }
    SECTION("K = 0 leaves the epilogue; T = 0 is a no-op") {
        const kite::quant::packed_i8_weights empty_k(matrix<float>(8, 0).view());
        std::vector<float> b8(8, 0.5f);
        matrix<float> y0(2, 8);
        kite::quant::gemm(empty_k, matrix<float>(2, 0).view(), y0.view(), kite::quant::gemm_epilogue{.bias = b8, .gelu = true});
        CHECK(y0(1, 7) == Approx(km::act::gelu::reference(0.5)).epsilon(1e-6));
        const kite::quant::packed_i8_weights pw(random_matrix(8, 4, 1).view());
        kite::quant::gemm(pw, matrix<float>(0, 4).view(), matrix<float>(0, 8).view());
        const kite::quant::packed_i8_weights zero_row(matrix<float>(3, 5, 0.0f).view());
        CHECK(zero_row.scale(2) == 0.0f);
        matrix<float> yz(1, 3, 9.0f);
        kite::quant::gemm(zero_row, random_matrix(1, 5, 2).view(), yz.view());
        CHECK(yz(0, 1) == 0.0f);
    }
}

TEST_CASE("packed_i8 gemm rejects bad shapes, overlap and non-finite weights", "[model][gemm][i8]") {
    const matrix<float> w = random_matrix(8, 4, 1);
    const kite::quant::packed_i8_weights pw(w.view());
    matrix<float> x(3, 4), y(3, 8), bad(3, 7);
    KITE_REQUIRE_THROWS_CONTAINING(kite::quant::gemm(pw, matrix<float>(3, 5).view(), y.view()), kite::shape_error,
                                   "expected in_features = 4");
    KITE_REQUIRE_THROWS_CONTAINING(kite::quant::gemm(pw, x.view(), bad.view()), kite::shape_error, "expected 3 x 8");
    std::vector<float> b3(3);
    KITE_REQUIRE_THROWS_CONTAINING(kite::quant::gemm(pw, x.view(), y.view(), kite::quant::gemm_epilogue{.bias = b3}), kite::shape_error,
                                   "bias has 3 elements");
    KITE_REQUIRE_THROWS_CONTAINING(kite::quant::gemm(pw, x.view(), y.view(), kite::quant::gemm_epilogue{.residual = y.view()}),
                                   kite::invalid_argument, "overlaps");
    matrix<float> wn = random_matrix(8, 4, 2);
    wn(5, 2) = std::numeric_limits<float>::infinity();
    KITE_REQUIRE_THROWS_CONTAINING(kite::quant::packed_i8_weights(wn.view()), kite::invalid_argument, "[5][2]");
    std::vector<float> gy(8);
    KITE_REQUIRE_THROWS_CONTAINING(kite::quant::gemv(pw, std::vector<float>(5), gy), kite::shape_error, "in_features = 4");
}

TEST_CASE("bert_encoder<w8a8_packed> stays close to float32 and is batch invariant", "[model][encoder][i8]") {
    const km::bert_checkpoint ck = km::read_bert(kite::test::fixture("model/bert_tiny"));
    const km::bert_encoder<> f32(ck);
    const km::bert_encoder<kite::quant::w8a8_packed> i8(ck);
    CHECK(i8.linear_bytes() < f32.linear_bytes() / 3);
    std::vector<std::vector<std::int32_t>> seqs;
    for (int s = 0; s < 9; ++s) {
        std::vector<std::int32_t> q(3 + 4 * s);  // up to 35 tokens (the tiny model has 40 positions)
        for (index_t i = 0; i < q.size(); ++i) q[i] = static_cast<std::int32_t>((13 * s + 7 * i + 2) % 99);
        seqs.push_back(q);
    }
    km::token_batch batch;
    for (const auto& s : seqs) batch.add(s);
    km::encoder_workspace ws;
    matrix<float> ef(seqs.size(), f32.hidden()), ei(seqs.size(), f32.hidden());
    f32.embed(batch, ef.view(), ws);
    i8.embed(batch, ei.view(), ws, 2);
    kite::test::running_min worst;  // NaN-safe: a NaN cosine sticks and fails
    for (index_t b = 0; b < seqs.size(); ++b) worst.add(kite::test::cosine(ei.row(b), ef.row(b)), b);
    INFO("worst cosine to float32 " << worst.value() << " (sequence " << worst.at() << ")");
    CHECK(worst.value() >= 0.999);
    CHECK(worst.value() < 1.0);
    // Per-token scales: a sequence's embedding does not depend on what else is in the batch.
    for (index_t b = 0; b < seqs.size(); b += 4) {
        km::token_batch one;
        one.add(seqs[b]);
        matrix<float> e1(1, f32.hidden());
        i8.embed(one, e1.view(), ws, 1);
        for (index_t i = 0; i < f32.hidden(); ++i) CHECK(e1(0, i) == Approx(ei(b, i)).margin(1e-6));
    }
}
