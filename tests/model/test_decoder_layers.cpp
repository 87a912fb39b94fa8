// kite/model/layers.hpp: every layer against an obvious double-precision twin, single-token and
// batched forms equal, bad shapes and ids refused.

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <span>
#include <vector>

#include "kite/model/layers.hpp"
#include "kite_test.hpp"

namespace km = kite::model;
namespace kq = kite::quant;
using kite::index_t;
using kite::matrix;
using kite::matrix_view;

namespace {

matrix<float> random_matrix(index_t r, index_t c, std::uint64_t seed, float scale = 1.0f) {
    matrix<float> m(r, c);
    const auto v = kite::test::randn(r * c, seed, scale);
    std::copy(v.begin(), v.end(), m.data());
    return m;
}

// y = W x + b in double from the weights the format represents (format::value).
template <class F>
std::vector<double> reference_linear(const F& w, std::span<const float> bias, std::span<const float> x) {
    std::vector<double> y(w.rows());
    for (index_t r = 0; r < w.rows(); ++r) {
        double s = bias.empty() ? 0.0 : bias[r];
        for (index_t c = 0; c < w.cols(); ++c) s += static_cast<double>(w.value(r, c)) * x[c];
        y[r] = s;
    }
    return y;
}

template <class M>
void check_linear(const M& method, bool calibrate) {
    INFO("method " << M::name);
    const index_t in = 200, out = 37, batch = 5;  // in is not a multiple of any block or group
    const auto w = random_matrix(out, in, 1, 0.1f);
    const auto bias = kite::test::randn(out, 2);
    const auto x = random_matrix(batch, in, 3);
    const auto calib = random_matrix(64, in, 4);
    auto lin = calibrate ? km::make_linear(method, w.view(), bias, calib.view()) : km::make_linear(method, w.view(), bias);
    REQUIRE(lin.in_features() == in);
    REQUIRE(lin.out_features() == out);
    CHECK(lin.has_bias());
    CHECK(lin.bytes() >= out * sizeof(float));

    matrix<float> y(batch, out);
    lin.forward(x.view(), y.view());
    std::vector<float> y1(out);
    for (index_t t = 0; t < batch; ++t) {
        const auto ref = reference_linear(lin.weights(), bias, x.row(t));
        lin.forward(x.row(t), y1);
        for (index_t r = 0; r < out; ++r) {
            // llm_int8 rounds the activations to int8 by design; everything else is exact math.
            const double tol = 1e-4 * (1.0 + std::abs(ref[r]));
            CHECK(std::abs(y(t, r) - ref[r]) <= tol);
            CHECK(std::abs(y1[r] - ref[r]) <= tol);
        }
    }
    // Without bias: the plain product.
    auto nob = km::make_linear(method, w.view(), {}, calibrate ? calib.view() : matrix_view<const float>{});
    CHECK_FALSE(nob.has_bias());
    nob.forward(x.row(0), y1);
    const auto ref = reference_linear(nob.weights(), {}, x.row(0));
    for (index_t r = 0; r < out; ++r) CHECK(std::abs(y1[r] - ref[r]) <= 1e-4 * (1.0 + std::abs(ref[r])));
}

}  // namespace

TEST_CASE("layers: activations equal their double twins", "[model][layers]") {
    std::vector<float> xs;
    for (int i = -400; i <= 400; ++i) xs.push_back(static_cast<float>(i) * 0.05f);  // [-20, 20]
    for (float v : {-88.0f, -50.0f, -1e-6f, 0.0f, 1e-6f, 50.0f, 88.0f}) xs.push_back(v);
    const auto check = [&]<class A>() {
        INFO(A::name);
        std::vector<float> v = xs;
        A::apply(v.data(), v.size());  // vector path plus a scalar tail (size is not a multiple of 16)
        for (std::size_t i = 0; i < xs.size(); ++i) {
            const double ref = A::reference(xs[i]);
            CHECK(std::abs(v[i] - ref) <= 2e-6 * (1.0 + std::abs(ref)));
            CHECK(std::abs(A::apply(xs[i]) - ref) <= 2e-6 * (1.0 + std::abs(ref)));
        }
    };
    check.operator()<km::act::silu>();
    check.operator()<km::act::gelu>();
    check.operator()<km::act::gelu_tanh>();
    check.operator()<km::act::relu>();
    // Values worth knowing by heart: Phi(1) = 0.841344746..., sigmoid(1) = 0.731058578...
    CHECK(km::act::gelu::reference(1.0) == Approx(0.8413447460685429).epsilon(1e-12));
    CHECK(km::act::gelu_tanh::reference(1.0) == Approx(0.8411919906082768).epsilon(1e-12));
    CHECK(km::act::silu::reference(1.0) == Approx(0.7310585786300049).epsilon(1e-12));
}

#if KITE_SIMD_ENABLED
TEST_CASE("layers: the rational erf of the GELU kernels equals erf", "[model][layers]") {
    using B = kite::simd::fbatch;
    const auto erf1 = [](float v) {
        alignas(64) float r[B::size];
        km::act::detail::erf_rational(B(v)).store_aligned(r);
        return r[0];
    };
    kite::test::running_max worst;
    int above_one = 0, not_odd = 0;
    for (int i = -800000; i <= 800000; ++i) {  // [-8, 8], step 1e-5
        const float v = static_cast<float>(i) * 1e-5f;
        const float e = erf1(v);
        worst.add(std::abs(static_cast<double>(e) - std::erf(static_cast<double>(v))));
        above_one += std::abs(e) > 1.0f;
        not_odd += erf1(-v) != -e;
    }
    CHECK(above_one == 0);
    CHECK(not_odd == 0);
    CHECK(worst.value() <= 4.5e-7);
    CHECK(worst.value() > 0.0);  // it is an approximation; a test that compares std::erf with itself cannot fail
    // Every lane on its own, relative accuracy near 0, saturation, signed zero, NaN.
    alignas(64) float xs[B::size], r[B::size];
    for (std::size_t l = 0; l < B::size; ++l) xs[l] = -3.0f + 0.4f * static_cast<float>(l);
    km::act::detail::erf_rational(B::load_aligned(xs)).store_aligned(r);
    for (std::size_t l = 0; l < B::size; ++l) CHECK(std::abs(r[l] - std::erf(static_cast<double>(xs[l]))) <= 4.5e-7);
    CHECK(erf1(1e-30f) == Approx(std::erf(1e-30)).epsilon(1e-6));
    CHECK(erf1(3.925f) == 1.0f);
    CHECK(erf1(1e30f) == 1.0f);
    CHECK(erf1(-std::numeric_limits<float>::infinity()) == -1.0f);
    CHECK(erf1(std::numeric_limits<float>::infinity()) == 1.0f);
    CHECK(std::signbit(erf1(-0.0f)));
    CHECK(std::isnan(erf1(std::numeric_limits<float>::quiet_NaN())));
}
#endif

TEST_CASE("layers: embedding rows and bad ids", "[model][layers]") {
    const auto table = random_matrix(10, 6, 5);
    km::embedding emb(table.view());
    CHECK(emb.vocab_size() == 10);
    CHECK(emb.dim() == 6);
    const std::vector<std::int32_t> ids{3, 0, 9, 3};
    matrix<float> out(4, 6);
    emb.forward(ids, out.view());
    for (index_t t = 0; t < ids.size(); ++t)
        for (index_t c = 0; c < 6; ++c) CHECK(out(t, c) == table(static_cast<index_t>(ids[t]), c));
    std::vector<float> one(6);
    emb.forward(9, one);
    CHECK(one[5] == table(9, 5));
    KITE_REQUIRE_THROWS_CONTAINING(emb.forward(10, one), kite::invalid_argument, "token id 10");
    const std::vector<std::int32_t> bad{1, -1};
    matrix<float> out2(2, 6);
    KITE_REQUIRE_THROWS_CONTAINING(emb.forward(bad, out2.view()), kite::invalid_argument, "token id -1 (at 1)");
    KITE_REQUIRE_THROWS_CONTAINING(emb.forward(ids, out2.view()), kite::shape_error, "expected 4 x 6");
    matrix<float> nan_table(2, 2);
    nan_table(1, 1) = std::nanf("");
    CHECK_THROWS_AS(km::embedding(nan_table.view()), kite::invalid_argument);
}

TEST_CASE("layers: linear over every weight format equals dequantize-then-multiply", "[model][layers]") {
    check_linear(kq::f32{}, false);
    check_linear(kq::dense<kite::bf16>{}, false);
    check_linear(kq::absmax<8>{}, false);
    check_linear(kq::absmax<4, 32>{}, false);
    check_linear(kq::zero_point<4, 128>{}, false);
    check_linear(kq::gptq<4, 128>{}, true);
    check_linear(kq::awq<4, 64>{.grid_points = 4}, true);
    // The class can also be named by its format.
    static_assert(std::is_same_v<km::linear<kq::gptq<4, 128>>::format, kq::packed_weights<4, 128, kq::grid::asymmetric>>);
    static_assert(std::is_same_v<km::linear<kq::dense_weights<float>>::format, kq::dense_weights<float>>);
}

TEST_CASE("layers: linear refuses bad shapes and missing calibration", "[model][layers]") {
    const auto w = random_matrix(4, 8, 6);
    const std::vector<float> b3(3);
    KITE_REQUIRE_THROWS_CONTAINING(km::make_linear(kq::f32{}, w.view(), b3), kite::shape_error,
                                   "bias has 3 elements; expected out_features = 4");
    KITE_REQUIRE_THROWS_CONTAINING(km::make_linear(kq::gptq<4, 128>{}, w.view()), kite::invalid_argument,
                                   "gptq needs calibration inputs");
    auto lin = km::make_linear(kq::f32{}, w.view());
    std::vector<float> x(7), y(4);
    CHECK_THROWS_AS(lin.forward(x, y), kite::shape_error);
    std::vector<float> x8(8), y5(5);
    CHECK_THROWS_AS(lin.forward(x8, y5), kite::shape_error);
}

TEST_CASE("layers: rms_norm and layer_norm equal their double twins", "[model][layers]") {
    for (const index_t dim : {index_t{1}, index_t{7}, index_t{64}, index_t{333}}) {
        INFO("dim " << dim);
        const auto x = random_matrix(3, dim, 7 + dim, 3.0f);
        auto w = kite::test::randn(dim, 8);
        auto b = kite::test::randn(dim, 9);
        // An offset mean stresses the variance of LayerNorm.
        matrix<float> xs = x.clone();
        for (index_t t = 0; t < 3; ++t)
            for (auto& v : xs.row(t)) v += 100.0f;

        km::rms_norm rms(w, 1e-5f);
        km::layer_norm ln(w, b, 1e-5f);
        km::layer_norm ln_nob(w, {}, 1e-5f);
        CHECK(ln.has_bias());
        CHECK_FALSE(ln_nob.has_bias());
        matrix<float> yr(3, dim), yl(3, dim), yn(3, dim);
        rms.forward(x.view(), yr.view());
        ln.forward(xs.view(), yl.view());
        ln_nob.forward(xs.view(), yn.view());
        for (index_t t = 0; t < 3; ++t) {
            double ss = 0, mean = 0;
            for (index_t c = 0; c < dim; ++c) ss += double(x(t, c)) * x(t, c);
            for (index_t c = 0; c < dim; ++c) mean += xs(t, c);
            mean /= double(dim);
            double var = 0;
            for (index_t c = 0; c < dim; ++c) var += (xs(t, c) - mean) * (xs(t, c) - mean);
            var /= double(dim);
            const double inv_rms = 1.0 / std::sqrt(ss / double(dim) + 1e-5);
            const double inv_std = 1.0 / std::sqrt(var + 1e-5);
            for (index_t c = 0; c < dim; ++c) {
                const double r = x(t, c) * inv_rms * w[c];
                const double l = (xs(t, c) - mean) * inv_std * w[c];
                CHECK(std::abs(yr(t, c) - r) <= 1e-5 * (1 + std::abs(r)));
                // x ~ 100 in float32 carries an absolute error of ~1e-5 into (x - mean).
                CHECK(std::abs(yl(t, c) - (l + b[c])) <= 2e-4 * (1 + std::abs(l)));
                CHECK(std::abs(yn(t, c) - l) <= 2e-4 * (1 + std::abs(l)));
            }
        }
        // Single-token form equals the batched one, also in place.
        std::vector<float> row(x.row(1).begin(), x.row(1).end());
        rms.forward(row, row);
        for (index_t c = 0; c < dim; ++c) CHECK(row[c] == yr(1, c));
        std::vector<float> lrow(xs.row(2).begin(), xs.row(2).end());
        ln.forward(lrow, lrow);
        for (index_t c = 0; c < dim; ++c) CHECK(lrow[c] == yl(2, c));
    }
}

TEST_CASE("layers: norms refuse bad parameters", "[model][layers]") {
    const std::vector<float> w(4, 1.0f), b3(3);
    KITE_REQUIRE_THROWS_CONTAINING(km::rms_norm::make(w, w, 1e-5f), kite::invalid_argument, "RMSNorm has none");
    KITE_REQUIRE_THROWS_CONTAINING(km::layer_norm(w, b3, 1e-5f), kite::shape_error, "bias has 3 elements");
    KITE_REQUIRE_THROWS_CONTAINING(km::rms_norm({}, 1e-5f), kite::shape_error, "weight is empty");
    KITE_REQUIRE_THROWS_CONTAINING(km::rms_norm(w, -1.0f), kite::invalid_argument, "eps = -1");
    km::rms_norm n(w, 1e-6f);
    std::vector<float> x5(5), y4(4);
    KITE_REQUIRE_THROWS_CONTAINING(n.forward(x5, y4), kite::shape_error, "expected dim = 4");
    static_assert(std::is_same_v<kite::norm::rms, km::rms_norm> && std::is_same_v<kite::norm::layer, km::layer_norm>);
}

TEST_CASE("layers: feed_forward kinds equal the written-out MLP", "[model][layers]") {
    const index_t dim = 24, inter = 40, n = 3;
    const auto wg = random_matrix(inter, dim, 11, 0.3f);
    const auto wu = random_matrix(inter, dim, 12, 0.3f);
    const auto wd = random_matrix(dim, inter, 13, 0.3f);
    const auto bu = kite::test::randn(inter, 14);
    const auto bd = kite::test::randn(dim, 15);
    const auto x = random_matrix(n, dim, 16);

    const auto run = [&]<class Kind>(bool with_bias) {
        INFO(Kind::name << " " << Kind::activation::name << " bias " << with_bias);
        matrix<float> up_w = Kind::gated ? matrix<float>(2 * inter, dim) : wu.clone();
        std::vector<float> up_b;
        if constexpr (Kind::gated) {
            for (index_t r = 0; r < inter; ++r)
                for (index_t c = 0; c < dim; ++c) {
                    up_w(r, c) = wg(r, c);
                    up_w(inter + r, c) = wu(r, c);
                }
            if (with_bias) {
                up_b = bu;
                up_b.insert(up_b.end(), bu.rbegin(), bu.rend());
            }
        } else if (with_bias) {
            up_b = bu;
        }
        km::feed_forward<Kind> ff(km::make_linear(kq::f32{}, up_w.view(), up_b),
                                  km::make_linear(kq::f32{}, wd.view(), with_bias ? std::span<const float>(bd) : std::span<const float>{}));
        CHECK(ff.dim() == dim);
        CHECK(ff.intermediate() == inter);
        matrix<float> y(n, dim), scratch;
        ff.forward(x.view(), y.view(), scratch);
        std::vector<float> y1(dim);
        ff.forward(x.row(n - 1), y1, scratch);
        for (index_t t = 0; t < n; ++t) {
            std::vector<double> h(inter);
            for (index_t i = 0; i < inter; ++i) {
                // Gated: the gate rows carry bu, the up rows bu reversed.
                double u = with_bias ? (Kind::gated ? bu[inter - 1 - i] : bu[i]) : 0.0;
                for (index_t c = 0; c < dim; ++c) u += double(wu(i, c)) * x(t, c);
                if constexpr (Kind::gated) {
                    double g = with_bias ? bu[i] : 0.0;
                    for (index_t c = 0; c < dim; ++c) g += double(wg(i, c)) * x(t, c);
                    h[i] = Kind::activation::reference(g) * u;
                } else {
                    h[i] = Kind::activation::reference(u);
                }
            }
            for (index_t o = 0; o < dim; ++o) {
                double s = with_bias ? bd[o] : 0.0;
                for (index_t i = 0; i < inter; ++i) s += double(wd(o, i)) * h[i];
                CHECK(std::abs(y(t, o) - s) <= 1e-4 * (1 + std::abs(s)));
                if (t == n - 1) CHECK(std::abs(y1[o] - s) <= 1e-4 * (1 + std::abs(s)));
            }
        }
    };
    for (const bool bias : {false, true}) {
        run.operator()<km::mlp::swiglu>(bias);
        run.operator()<km::mlp::gelu>(bias);
        run.operator()<km::mlp::gelu_tanh>(bias);
        run.operator()<km::mlp::relu>(bias);
    }
    // Mismatched projections are refused.
    const auto wrong = random_matrix(inter, dim, 17);
    KITE_REQUIRE_THROWS_CONTAINING((km::feed_forward<km::mlp::swiglu>(km::make_linear(kq::f32{}, wrong.view()),
                                                                      km::make_linear(kq::f32{}, wd.view()))),
                                   kite::shape_error, "gate and up stacked");
}

TEST_CASE("layers: add_residual", "[model][layers]") {
    std::vector<float> x{1, 2, 3}, y{10, 20, 30};
    km::add_residual(std::span<float>(x), y);
    CHECK(x == std::vector<float>{11, 22, 33});
    matrix<float> a(2, 3, 1.0f), b(2, 3, 2.0f), c(3, 3);
    km::add_residual(a.view(), b.view());
    CHECK(a(1, 2) == 3.0f);
    CHECK_THROWS_AS(km::add_residual(a.view(), c.view()), kite::shape_error);
}
