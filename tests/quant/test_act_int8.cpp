// Integer-activation kernels (gemv_a8 / gemm_a8, VNNI and portable) against their oracle, and
// LLM.int8: its kernel against its element-wise oracle, and its reason to exist: on a layer
// with planted activation outliers, plain vector-wise int8 fails while the decomposition keeps
// the error at the level of rounding the weights alone.
#include <cmath>
#include <limits>
#include <random>
#include <vector>

#include "kite/core/cpu.hpp"
#include "kite/quant.hpp"
#include "kite_test.hpp"
#include "quant_test_util.hpp"

namespace q = kite::quant;
using kite::index_t;

namespace {

kite::matrix<float> random_matrix(index_t r, index_t c, std::uint64_t seed, float scale = 1.0f) {
    kite::matrix<float> m(r, c);
    auto v = kite::test::randn(r * c, seed, scale);
    std::copy(v.begin(), v.end(), m.flat().begin());
    return m;
}

/// Bound for the float rounding of an a8 product: per group and block the kernels scale an
/// exact integer sum of codes times levels and subtract the zero-point term.
template <class F>
double a8_tolerance(const F& w, index_t r, const float* x) {
    double mag = 0;
    for (index_t c = 0; c < w.cols(); ++c) {
        const index_t g = F::group > 0 ? c / index_t(F::group) : 0;
        mag += (std::abs(double(w.value(r, c))) + std::abs(double(w.scale(r, g))) * 400.0) * std::abs(double(x[c]));
    }
    return 4e-6 * std::sqrt(double(w.cols()) + 16) * mag + 1e-30;
}

template <class F, class Arch>
void check_a8(const F& w, index_t b, std::uint64_t seed, int threads, Arch arch) {
    auto X = random_matrix(b, w.cols(), seed);
    if (w.cols() > 130) {  // a zero block and an extreme value
        for (index_t t = 0; t < b; ++t) X(t, 7) = 50.0f;
    }
    kite::matrix<float> Y(b, w.rows(), -1.0f), Yr(b, w.rows());
    if (b == 1) {
        q::gemv_a8(w, X.row(0), Y.row(0), threads, arch);
    } else {
        q::gemm_a8(w, X, Y, threads, arch);
    }
    q::reference::gemm_a8(w, X, Yr);
    const auto worst = kite::test::max_diff(
        Y.view(), Yr.view(),
        [&](std::size_t i, double a, double b) {
            return std::abs(a - b) / a8_tolerance(w, i % w.rows(), X.row(i / w.rows()).data());
        },
        "|y - oracle| / bound");
    INFO("arch " << q::arch::name<Arch>() << ", m = " << w.rows() << ", k = " << w.cols() << ", b = " << b
                 << ", threads " << threads);
    CHECK(worst <= 1.0);
}

double rel_err(const kite::matrix<float>& Y, const kite::matrix<double>& ref) {
    double e = 0, n = 0;
    for (index_t i = 0; i < ref.rows(); ++i)
        for (index_t j = 0; j < ref.cols(); ++j) {
            const double d = Y(i, j) - ref(i, j);
            e += d * d;
            n += ref(i, j) * ref(i, j);
        }
    return std::sqrt(e / n);
}

kite::matrix<double> exact_product(const kite::matrix<float>& X, const kite::matrix<float>& W) {
    kite::matrix<double> out(X.rows(), W.rows());
    for (index_t t = 0; t < X.rows(); ++t)
        for (index_t r = 0; r < W.rows(); ++r) {
            double s = 0;
            for (index_t c = 0; c < X.cols(); ++c) s += double(X(t, c)) * W(r, c);
            out(t, r) = s;
        }
    return out;
}

}  // namespace

TEMPLATE_TEST_CASE("int8-activation kernels equal their oracle", "[quant][a8]", (q::zero_point<4, 128>),
                   (q::absmax<4, 128, kite::fp16>), (q::absmax<4>), (q::absmax<8>), (q::zero_point<8, 128, kite::fp16>),
                   (q::zero_point<8, q::per_tensor>)) {
    static_assert(q::supports_a8<typename TestType::format>);
    const index_t shapes[][2] = {{1, 1}, {3, 60}, {5, 128}, {7, 129}, {9, 200}, {6, 300}, {13, 515}};
    std::uint64_t seed = 500;
    for (const auto& s : shapes) {
        const auto w = q::quantize(TestType{}, kite::test::quant::weights(s[0], s[1], ++seed));
        for (int threads : {1, 2})
            for (index_t b : {1u, 3u, 17u}) {
                check_a8(w, b, ++seed, threads, q::arch::generic{});
                check_a8(w, b, ++seed, threads, q::arch::best{});
                // The VNNI kernel's Zen variant (prefetch into L2), forced whatever the host.
                const kite::cpu::scoped_tuning zen(kite::cpu::tuning::zen);
                check_a8(w, b, ++seed, threads, q::arch::best{});
            }
    }
}

TEST_CASE("int8 activations add little error next to 4-bit weights", "[quant][a8]") {
    const auto W = random_matrix(64, 1024, 1, 0.02f);
    const auto X = random_matrix(16, 1024, 2);
    const auto ref = exact_product(X, W);
    const auto w = q::quantize(q::zero_point<4, 128>{}, W);
    kite::matrix<float> Ye(16, 64), Ya(16, 64);
    q::gemm(w, X, Ye);
    q::gemm_a8(w, X, Ya);
    const double e_exact = rel_err(Ye, ref), e_a8 = rel_err(Ya, ref);
    INFO("relative error: int4 exact activations " << e_exact << ", int4 + int8 activations " << e_a8);
    CHECK(e_a8 < 1.1 * e_exact);
    CHECK(e_a8 > e_exact * 0.9);
}

TEST_CASE("llm_int8 kernel equals its oracle, with static and run-time outlier columns", "[quant][llm_int8]") {
    for (index_t k : {5u, 64u, 130u, 300u}) {
        const auto W = kite::test::quant::weights(11, k, 20 + k);
        auto Xc = random_matrix(32, k, 30 + k);
        for (index_t t : {4u, 9u, 20u}) Xc(t, k / 2) = 9.0f;  // a systematic outlier (3 of 32 tokens) -> 16-bit weights
        const auto w = q::quantize(q::llm_int8{}, W, Xc);
        REQUIRE(w.static_outliers().size() == 1);
        for (index_t b : {1u, 2u, 9u}) {
            auto X = random_matrix(b, k, 40 + k + b);
            X(b - 1, 0) = -7.5f;  // a run-time outlier (int8-dequantized weights)
            kite::matrix<float> Y(b, 11), Yg(b, 11), Yr(b, 11);
            q::gemm(w, X, Y, 2);
            q::gemm(w, X, Yg, 1, q::arch::generic{});
            q::reference::gemm(w, X, Yr);
            for (index_t t = 0; t < b; ++t)
                for (index_t r = 0; r < 11; ++r) {
                    const double tol = 1e-5 * (1 + std::abs(Yr(t, r))) * std::sqrt(double(k));
                    CHECK(std::abs(Y(t, r) - Yr(t, r)) <= tol);
                    CHECK(std::abs(Yg(t, r) - Yr(t, r)) <= tol);
                }
        }
    }
}

TEST_CASE("planted activation outliers: plain int8 fails, llm_int8 stays near weight rounding",
          "[quant][llm_int8]") {
    // A layer whose inputs have systematic outlier features (the paper's emergent features):
    // 6 of 2048 input columns carry magnitudes 20..60 in every token, the rest are N(0, 1).
    const index_t n = 32, k = 2048, m = 128;
    const auto W = random_matrix(m, k, 3, 0.02f);
    auto X = random_matrix(n, k, 4);
    auto Xc = random_matrix(n, k, 5);  // calibration batch with the same outlier features
    std::mt19937 g(6);
    std::uniform_real_distribution<float> mag(20.0f, 60.0f);
    for (index_t c : {7u, 100u, 101u, 260u, 1333u, 2047u})
        for (index_t t = 0; t < n; ++t) {
            X(t, c) = (t % 2 ? 1.0f : -1.0f) * mag(g);
            Xc(t, c) = (t % 3 ? 1.0f : -1.0f) * mag(g);
        }
    const auto ref = exact_product(X, W);
    kite::matrix<float> Y(n, m);
    // weight rounding alone: int8 per-row weights, float activations
    q::gemm(q::quantize(q::absmax<8>{}, W), X, Y);
    const double e_weights = rel_err(Y, ref);
    // plain vector-wise int8 (W8A8), no decomposition
    q::gemm(q::quantize(q::llm_int8{.threshold = std::numeric_limits<float>::infinity()}, W), X, Y);
    const double e_plain = rel_err(Y, ref);
    // LLM.int8: outliers found at run time (int8 weights on the float path)
    q::gemm(q::quantize(q::llm_int8{}, W), X, Y);
    const double e_dyn = rel_err(Y, ref);
    // LLM.int8 with calibration: 16-bit weights for the outlier columns
    q::gemm(q::quantize(q::llm_int8{}, W, Xc), X, Y);
    const double e_cal = rel_err(Y, ref);
    INFO("relative output error: int8 weights + float activations " << e_weights << ", plain int8 " << e_plain
         << ", llm_int8 " << e_dyn << ", llm_int8 calibrated " << e_cal);
    CHECK(e_plain > 5 * e_weights);
    CHECK(e_dyn <= 2 * e_weights);
    CHECK(e_cal <= 2 * e_weights);
}

TEST_CASE("llm_int8 formats satisfy the concepts and check shapes", "[quant][llm_int8]") {
    static_assert(q::weight_format<q::llm_int8_weights>);
    static_assert(q::data_free_method<q::llm_int8>);
    static_assert(q::calibrated_method<q::llm_int8>);
    const auto w = q::quantize(q::llm_int8{}, kite::test::quant::weights(4, 10, 1));
    std::vector<float> x(9), y(4 * 16);  // y is not checked first; its size keeps GCC 12 from a false -Warray-bounds
    KITE_REQUIRE_THROWS_CONTAINING(q::gemv(w, x, y), kite::shape_error, "in_features = 10");
    kite::matrix<float> X(2, 9);
    KITE_REQUIRE_THROWS_CONTAINING(q::quantize(q::llm_int8{}, kite::test::quant::weights(4, 10, 1), X),
                                   kite::shape_error, "in_features = 10");
    // The threshold is a run-time option, checked when quantizing.
    const auto W = kite::test::quant::weights(4, 10, 1);
    KITE_REQUIRE_THROWS_CONTAINING(q::quantize(q::llm_int8{.threshold = 0}, W), kite::invalid_argument, "threshold = 0");
    KITE_REQUIRE_THROWS_CONTAINING(q::quantize(q::llm_int8{.threshold = std::numeric_limits<float>::quiet_NaN()}, W),
                                   kite::invalid_argument, "threshold = nan");
    KITE_REQUIRE_THROWS_CONTAINING(q::quantize(q::llm_int8{.min_fraction = 1.5}, W, kite::matrix<float>(2, 10)),
                                   kite::invalid_argument, "min_fraction = 1.5");
    CHECK(q::quantize(q::llm_int8{.threshold = 2.5f}, W).threshold() == 2.5f);
}
