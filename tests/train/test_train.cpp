// kite/train: every backward pass against central finite differences in double (the bars sit
// near the measured agreement), the same code in float within float rounding, the MNR loss on
// values known by hand, AdamW's defining properties, the schedule and clipping, and a tiny
// projection trained with MNR that learns to match pairs.
#include <algorithm>
#include <cmath>
#include <functional>
#include <random>
#include <vector>

#include "kite/train.hpp"
#include "kite_test.hpp"

namespace {

using kite::index_t;
using kite::matrix;
using kite::matrix_view;
namespace tr = kite::train;

template <class T>
matrix<T> randm(index_t r, index_t c, std::uint64_t seed, T scale = T(1)) {
    std::mt19937_64 rng(seed);
    std::normal_distribution<double> nd;
    matrix<T> m(r, c);
    for (auto& v : m.flat()) v = static_cast<T>(nd(rng) * static_cast<double>(scale));
    return m;
}

template <class T>
std::vector<T> randv(index_t n, std::uint64_t seed) {
    std::mt19937_64 rng(seed);
    std::normal_distribution<double> nd;
    std::vector<T> v(n);
    for (auto& x : v) x = static_cast<T>(nd(rng));
    return v;
}

// Largest |analytic - numeric| / max(1, |numeric|) over every element of `x`, where numeric is
// the central difference of the scalar f() with step h.
double worst_fd(std::span<double> x, std::span<const double> analytic, const std::function<double()>& f, double h = 1e-5) {
    REQUIRE(x.size() == analytic.size());
    kite::test::running_max worst;
    for (std::size_t i = 0; i < x.size(); ++i) {
        const double keep = x[i];
        x[i] = keep + h;
        const double up = f();
        x[i] = keep - h;
        const double down = f();
        x[i] = keep;
        const double num = (up - down) / (2 * h);
        worst.add(kite::test::relative_error(analytic[i], num, 1.0));
    }
    return worst.value();
}

// A fixed random "upstream gradient" R: the scalar loss is sum(R .* y), so dy = R.
double dot(const matrix<double>& a, const matrix<double>& r) {
    double s = 0;
    for (std::size_t i = 0; i < a.flat().size(); ++i) s += a.flat()[i] * r.flat()[i];
    return s;
}

}  // namespace

TEST_CASE("train: linear, GELU and LayerNorm backward passes equal finite differences", "[train][grad]") {
    const index_t n = 5, in = 7, out = 4;
    auto x = randm<double>(n, in, 1), w = randm<double>(out, in, 2);
    auto b = randv<double>(out, 3);
    const auto R = randm<double>(n, out, 4);
    {
        matrix<double> dx(n, in), dw(out, in, 0.0);
        std::vector<double> db(out, 0.0);
        tr::linear_backward<double>(x, w, R, dx, dw, db);
        const auto f = [&] { return dot(tr::linear<double>(x, w, b), R); };
        CHECK(worst_fd(x.flat(), dx.flat(), f) < 1e-9);
        CHECK(worst_fd(w.flat(), dw.flat(), f) < 1e-9);
        CHECK(worst_fd(b, db, f) < 1e-9);
        // Parameter gradients accumulate.
        tr::linear_backward<double>(x, w, R, dx, dw, db);
        matrix<double> dx1(n, in), dw1(out, in, 0.0);
        tr::linear_backward<double>(x, w, R, dx1, dw1);
        for (std::size_t i = 0; i < dw.flat().size(); ++i) CHECK(dw.flat()[i] == Approx(2 * dw1.flat()[i]).epsilon(1e-12));
    }
    {
        auto z = randm<double>(n, in, 5, 2.0);
        const auto Rz = randm<double>(n, in, 6);
        matrix<double> dz(n, in);
        tr::gelu_backward<double>(z, Rz, dz);
        CHECK(worst_fd(z.flat(), dz.flat(), [&] { return dot(tr::gelu<double>(z), Rz); }) < 1e-9);
        CHECK(tr::gelu<double>(matrix<double>(1, 1, 1.0))(0, 0) == Approx(0.8413447460685429).epsilon(1e-14));
    }
    {
        auto z = randm<double>(n, in, 7, 3.0);
        auto g = randv<double>(in, 8), be = randv<double>(in, 9);
        const auto Rz = randm<double>(n, in, 10);
        const auto fwd = tr::layer_norm<double>(z, g, be, 1e-12);
        matrix<double> dz(n, in);
        std::vector<double> dg(in, 0.0), dbe(in, 0.0);
        tr::layer_norm_backward<double>(fwd, g, Rz, dz, dg, dbe);
        const auto f = [&] { return dot(tr::layer_norm<double>(z, g, be, 1e-12).y, Rz); };
        CHECK(worst_fd(z.flat(), dz.flat(), f) < 1e-9);
        CHECK(worst_fd(g, dg, f) < 1e-9);
        CHECK(worst_fd(be, dbe, f) < 1e-9);
        // The normalised rows have mean 0 and variance 1.
        double mean = 0, var = 0;
        for (index_t j = 0; j < in; ++j) mean += fwd.x_hat(0, j);
        mean /= in;
        for (index_t j = 0; j < in; ++j) var += (fwd.x_hat(0, j) - mean) * (fwd.x_hat(0, j) - mean);
        CHECK(std::abs(mean) < 1e-14);
        CHECK(var / in == Approx(1.0).epsilon(1e-10));
    }
}

TEST_CASE("train: linear and its backward pass (Eigen) equal their loop oracles on odd and empty shapes", "[train][grad]") {
    struct shape {
        index_t n, in, out;
    };
    std::uint64_t seed = 60;
    for (const shape sh : {shape{0, 3, 2}, shape{1, 1, 1}, shape{3, 17, 5}, shape{33, 64, 31}, shape{7, 384, 96}}) {
        INFO(sh.n << " x " << sh.in << " -> " << sh.out);
        const auto x = randm<float>(sh.n, sh.in, ++seed), w = randm<float>(sh.out, sh.in, ++seed);
        const auto b = randv<float>(sh.out, ++seed);
        const auto dy = randm<float>(sh.n, sh.out, ++seed);
        const auto y = tr::linear<float>(x, w, b), y0 = tr::reference::linear_loops<float>(x, w, b);
        matrix<float> dx(sh.n, sh.in), dx0(sh.n, sh.in), dw(sh.out, sh.in, 1.0f), dw0(sh.out, sh.in, 1.0f);
        std::vector<float> db(sh.out, 0.5f), db0(sh.out, 0.5f);
        tr::linear_backward<float>(x, w, dy, dx, dw, db);
        tr::reference::linear_backward_loops<float>(x, w, dy, dx0, dw0, db0);
        // Float rounding of sums of up to 384 products of unit normals in another order,
        // relative to max(1, |value|): measured at most 5.8e-6 (the n eps bound is 2.3e-5).
        const auto close = [](std::span<const float> a, std::span<const float> c) {
            kite::test::running_max worst;
            for (std::size_t i = 0; i < a.size(); ++i)
                worst.add(std::abs(double(a[i]) - double(c[i])) / std::max(1.0, std::abs(double(c[i]))));
            return worst.value();
        };
        CHECK(close(y.flat(), y0.flat()) < 1e-5);
        CHECK(close(dx.flat(), dx0.flat()) < 1e-5);
        CHECK(close(dw.flat(), dw0.flat()) < 1e-5);
        CHECK(close(db, db0) < 1e-5);
    }
    // Strided views (columns of a wider matrix), as bert_model passes q, k and v.
    const auto wide = randm<float>(4, 12, 70);
    const kite::matrix_view<const float> mid(wide.data() + 4, 4, 4, 12);
    const auto w = randm<float>(3, 4, 71);
    const auto y = tr::linear<float>(mid, w), y0 = tr::reference::linear_loops<float>(mid, w);
    for (std::size_t i = 0; i < y.flat().size(); ++i) CHECK(y.flat()[i] == Approx(y0.flat()[i]).margin(1e-5));
}

namespace {

// Largest |a - c| / max(1, |c|) over two equally long ranges.
template <class T>
double worst_rel(std::span<const T> a, std::span<const T> c) {
    REQUIRE(a.size() == c.size());
    kite::test::running_max worst;
    for (std::size_t i = 0; i < a.size(); ++i) {
        const double mag = std::abs(double(c[i]));  // a NaN reference stays NaN in the ratio
        worst.add(std::abs(double(a[i]) - double(c[i])) / (std::isnan(mag) || mag > 1.0 ? mag : 1.0));
    }
    return worst.value();
}

// attention() and attention_backward() (per-head GEMMs) against their loop oracles on one shape:
// q, k, v and dq, dk, dv are column blocks of wider q/k/v matrices, as bert_model passes them.
// Returns the worst relative disagreement over context, probabilities and the three gradients.
template <class T>
double attention_vs_loops(index_t n, index_t heads, index_t hd, const std::vector<T>& mask, std::uint64_t seed,
                          T scale) {
    const index_t w = heads * hd;
    const auto qkv = randm<T>(n, 3 * w, seed, scale);
    const matrix_view<const T> q(qkv.data(), n, w, 3 * w), k(qkv.data() + w, n, w, 3 * w), v(qkv.data() + 2 * w, n, w, 3 * w);
    const auto dc = randm<T>(n, w, seed + 1);
    const auto fast = tr::attention<T>(q, k, v, mask, heads);
    const auto slow = tr::reference::attention_loops<T>(q, k, v, mask, heads);
    matrix<T> d1(n, 3 * w, T(7)), d0(n, 3 * w, T(7));  // stale values must be overwritten
    const auto cols = [&](matrix<T>& m, index_t b) { return matrix_view<T>(m.data() + b * w, n, w, 3 * w); };
    tr::attention_backward<T>(fast, q, k, v, dc, cols(d1, 0), cols(d1, 1), cols(d1, 2));
    tr::reference::attention_backward_loops<T>(slow, q, k, v, dc, cols(d0, 0), cols(d0, 1), cols(d0, 2));
    kite::test::running_max worst;
    worst.add(worst_rel<T>(fast.context.flat(), slow.context.flat()));
    worst.add(worst_rel<T>(fast.probs.flat(), slow.probs.flat()));
    worst.add(worst_rel<T>(d1.flat(), d0.flat()));
    return worst.value();
}

}  // namespace

TEST_CASE("train: attention (per-head GEMMs) equals its loop oracle on odd shapes, masks and strided views", "[train][grad]") {
    struct shape {
        index_t n, heads, hd;
    };
    std::uint64_t seed = 300;
    for (const shape sh : {shape{1, 1, 1}, shape{2, 3, 5}, shape{7, 2, 3}, shape{33, 4, 8}, shape{70, 12, 32}}) {
        std::vector<std::vector<double>> masks = {std::vector<double>(sh.n, 1.0), std::vector<double>(sh.n, 0.0)};
        std::vector<double> some(sh.n, 1.0);
        for (index_t j = 0; j < sh.n; j += 3) some[j] = 0.0;  // the first key and every third masked
        masks.push_back(some);
        for (const auto& mask : masks) {
            INFO(sh.n << " tokens, " << sh.heads << " heads of " << sh.hd << ", " << std::count(mask.begin(), mask.end(), 0.0)
                      << " keys masked");
            // Double: the same sums in another order (measured at most 1.2e-15).
            CHECK(attention_vs_loops<double>(sh.n, sh.heads, sh.hd, mask, ++seed, 1.0) < 5e-15);
            // Float with q, k, v of standard deviation 3 (scores up to ~50 before scaling, a
            // sharply peaked softmax): measured at most 2.7e-5, at 70 tokens and 12 heads of 32.
            const std::vector<float> fmask(mask.begin(), mask.end());
            CHECK(attention_vs_loops<float>(sh.n, sh.heads, sh.hd, fmask, ++seed, 3.0f) < 6e-5);
        }
    }
}

TEST_CASE("train: GELU and its backward pass in float (rational erf, SIMD) equal std::erf's", "[train][grad]") {
    // Every float width of the SIMD loop plus a tail, values from -12 to 12, tiny ones, zeros.
    matrix<float> x(3, 37);
    std::mt19937_64 rng(400);
    std::uniform_real_distribution<float> u(-6.0f, 6.0f);
    for (auto& v : x.flat()) v = u(rng);
    x(0, 0) = 0.0f;
    x(0, 1) = -0.0f;
    x(0, 2) = 1e-30f;
    x(0, 3) = -12.0f;
    x(0, 4) = 12.0f;
    x(0, 5) = -3.0f;
    const auto dy = randm<float>(3, 37, 401);
    const auto y = tr::gelu<float>(x), y0 = tr::reference::gelu_exact<float>(x);
    matrix<float> dx(3, 37), dx0(3, 37);
    tr::gelu_backward<float>(x, dy, dx);
    tr::reference::gelu_backward_exact<float>(x, dy, dx0);
    // erf's fit is within 4.1e-7 in float; |x| / 2 scales it (6 / 2 * 4.1e-7 = 1.2e-6):
    // measured 4.8e-7 (forward) and 1.1e-6 (backward, relative to max(1, |dx|)).
    CHECK(worst_rel<float>(y.flat(), y0.flat()) < 2e-6);
    CHECK(worst_rel<float>(dx.flat(), dx0.flat()) < 3e-6);
    CHECK(y(0, 0) == 0.0f);
    CHECK(y(0, 3) == 0.0f);   // x Phi(x) underflows far left
    CHECK(y(0, 4) == 12.0f);  // and is x far right
    // NaN stays NaN.
    matrix<float> bad(1, 20, 1.0f);
    bad(0, 3) = std::nanf("");
    bad(0, 19) = std::nanf("");  // in the scalar tail
    const auto g = tr::gelu<float>(bad);
    CHECK(std::isnan(g(0, 3)));
    CHECK(std::isnan(g(0, 19)));
    CHECK(g(0, 2) == Approx(0.8413447f));
    matrix<float> gd(1, 20);
    tr::gelu_backward<float>(bad, matrix<float>(1, 20, 1.0f), gd);
    CHECK(std::isnan(gd(0, 3)));
    CHECK(std::isnan(gd(0, 19)));
}

TEST_CASE("train: backward passes name a gradient of the wrong shape", "[train][grad][errors]") {
    const auto x = randm<double>(3, 4, 80), w = randm<double>(5, 4, 81);
    const auto dy = randm<double>(3, 5, 82);
    matrix<double> dx(3, 4), dw(5, 4), bad(3, 3);
    std::vector<double> db(5);
    KITE_REQUIRE_THROWS_CONTAINING(tr::linear_backward<double>(x, w, randm<double>(3, 4, 83), dx, dw, db),
                                   kite::shape_error, "linear_backward: dy has shape 3 x 4; expected 3 x 5");
    KITE_REQUIRE_THROWS_CONTAINING(tr::linear_backward<double>(x, w, dy, bad, dw, db), kite::shape_error,
                                   "linear_backward: dx has shape 3 x 3; expected 3 x 4");
    KITE_REQUIRE_THROWS_CONTAINING(tr::linear_backward<double>(x, w, dy, dx, bad, db), kite::shape_error,
                                   "linear_backward: dW has shape 3 x 3; expected 5 x 4");
    KITE_REQUIRE_THROWS_CONTAINING(tr::gelu_backward<double>(x, dy, dx), kite::shape_error,
                                   "gelu_backward: dy has shape 3 x 5; expected 3 x 4");
    KITE_REQUIRE_THROWS_CONTAINING(tr::gelu_backward<double>(x, x, bad), kite::shape_error,
                                   "gelu_backward: dx has shape 3 x 3; expected 3 x 4");
    const auto q = randm<double>(3, 4, 84);
    const std::vector<double> mask(3, 1.0);
    KITE_REQUIRE_THROWS_CONTAINING(tr::attention<double>(q, randm<double>(2, 4, 85), q, mask, 2), kite::shape_error,
                                   "attention: k has shape 2 x 4; expected 3 x 4");
    const auto fwd = tr::attention<double>(q, q, q, mask, 2);
    matrix<double> dq(3, 4), dk(3, 4), dv(3, 4);
    KITE_REQUIRE_THROWS_CONTAINING(tr::attention_backward<double>(fwd, q, q, q, q, dq, dk, bad), kite::shape_error,
                                   "attention_backward: dv has shape 3 x 3; expected 3 x 4");
}

TEST_CASE("train: mean pooling and L2 normalisation backward passes equal finite differences", "[train][grad]") {
    const index_t tokens = 6, d = 5;
    auto h = randm<double>(tokens, d, 11);
    const std::vector<double> mask = {1, 1, 0, 1, 0, 0};  // padding positions 2, 4, 5
    const auto R = randv<double>(d, 12);
    std::vector<double> dp = R;
    matrix<double> dh(tokens, d);
    tr::mean_pool_backward<double>(mask, dp, dh);
    const auto fp = [&] {
        const auto p = tr::mean_pool<double>(h, mask);
        double s = 0;
        for (index_t j = 0; j < d; ++j) s += p[j] * R[j];
        return s;
    };
    CHECK(worst_fd(h.flat(), dh.flat(), fp) < 1e-9);
    // Padding contributes nothing.
    for (index_t j = 0; j < d; ++j) CHECK(dh(2, j) == 0.0);
    const auto p = tr::mean_pool<double>(h, mask);
    CHECK(p[0] == Approx((h(0, 0) + h(1, 0) + h(3, 0)) / 3).epsilon(1e-14));

    auto v = randv<double>(d, 13);
    const auto u = tr::l2_normalize<double>(v);
    std::vector<double> dv(d);
    tr::l2_normalize_backward<double>(v, u, R, dv);
    const auto fu = [&] {
        const auto uu = tr::l2_normalize<double>(v);
        double s = 0;
        for (index_t j = 0; j < d; ++j) s += uu[j] * R[j];
        return s;
    };
    CHECK(worst_fd(v, dv, fu) < 1e-9);
    double norm = 0;
    for (const double x : u) norm += x * x;
    CHECK(norm == Approx(1.0).epsilon(1e-14));
}

TEST_CASE("train: embedding and masked multi-head attention backward passes equal finite differences", "[train][grad]") {
    // Embedding: repeated ids add their gradients; an unused row gets none.
    auto table = randm<double>(6, 3, 41);
    const std::vector<std::int32_t> ids = {2, 0, 2, 5};
    const auto Re = randm<double>(4, 3, 42);
    matrix<double> dt(6, 3, 0.0);
    tr::embedding_backward<double>(ids, Re, dt);
    CHECK(worst_fd(table.flat(), dt.flat(), [&] { return dot(tr::embedding<double>(table, ids), Re); }) < 1e-9);
    for (index_t j = 0; j < 3; ++j) CHECK(dt(1, j) == 0.0);
    KITE_REQUIRE_THROWS_CONTAINING(tr::embedding<double>(table, std::vector<std::int32_t>{6}), kite::invalid_argument,
                                   "ids[0] = 6");

    // Attention: 5 tokens of which the last 2 are padding, 2 heads of 3.
    const index_t n = 5, heads = 2, width = 6;
    auto q = randm<double>(n, width, 43), k = randm<double>(n, width, 44), v = randm<double>(n, width, 45);
    const std::vector<double> mask = {1, 1, 1, 0, 0};
    const auto R = randm<double>(n, width, 46);
    const auto fwd = tr::attention<double>(q, k, v, mask, heads);
    matrix<double> dq(n, width), dk(n, width), dv(n, width);
    tr::attention_backward<double>(fwd, q, k, v, R, dq, dk, dv);
    const auto f = [&] { return dot(tr::attention<double>(q, k, v, mask, heads).context, R); };
    CHECK(worst_fd(q.flat(), dq.flat(), f) < 1e-9);
    CHECK(worst_fd(k.flat(), dk.flat(), f) < 1e-9);
    CHECK(worst_fd(v.flat(), dv.flat(), f) < 1e-9);
    // Padding keys get no gradient and no weight.
    for (index_t c = 0; c < width; ++c) {
        CHECK(dk(3, c) == 0.0);
        CHECK(dv(4, c) == 0.0);
    }
    // With q = 0 every unmasked key weighs the same: the context is the mean of their values.
    const auto flat = tr::attention<double>(matrix<double>(n, width, 0.0), k, v, mask, heads);
    CHECK(flat.context(1, 4) == Approx((v(0, 4) + v(1, 4) + v(2, 4)) / 3).epsilon(1e-14));
    // A row whose keys are all masked attends to nothing.
    CHECK(tr::attention<double>(q, k, v, std::vector<double>(n, 0.0), heads).context(0, 0) == 0.0);
    KITE_REQUIRE_THROWS_CONTAINING(tr::attention<double>(q, k, v, mask, 4), kite::invalid_argument, "4 heads");
}

TEST_CASE("train: the distillation loss (MSE of normalised embeddings) and its gradient", "[train][loss]") {
    for (const bool normalize : {true, false}) {
        INFO("normalize " << normalize);
        auto emb = randm<double>(3, 5, 500);
        std::vector<std::vector<float>> t(3);
        for (std::size_t i = 0; i < 3; ++i) {
            const auto v = randv<double>(5, 510 + i);
            const auto u = tr::l2_normalize<double>(v);
            t[i].assign(u.begin(), u.end());
        }
        const std::vector<const std::vector<float>*> targets = {&t[0], &t[1], &t[2]};
        matrix<double> d(3, 5, 9.0);
        const auto r = tr::mse_embedding_loss<double>(emb, targets, normalize, d);
        // By hand: mean over 15 entries of (u - t)^2.
        double expect = 0, cos = 0;
        for (index_t i = 0; i < 3; ++i) {
            std::vector<double> row(emb.row(i).begin(), emb.row(i).end());
            const auto u = normalize ? tr::l2_normalize<double>(row) : row;
            double dot = 0, uu = 0;
            for (index_t j = 0; j < 5; ++j) {
                expect += (u[j] - double(t[i][j])) * (u[j] - double(t[i][j]));
                dot += u[j] * double(t[i][j]);
                uu += u[j] * u[j];
            }
            cos += dot / std::sqrt(uu);  // targets have norm 1 (to float rounding)
        }
        CHECK(r.loss == Approx(expect / 15).epsilon(1e-12));
        CHECK(r.cosine == Approx(cos / 3).epsilon(1e-6));
        const auto f = [&] {
            matrix<double> scratch(3, 5);
            return tr::mse_embedding_loss<double>(emb, targets, normalize, scratch).loss;
        };
        CHECK(worst_fd(emb.flat(), d.flat(), f) < 1e-9);
    }
    matrix<double> emb(2, 5), d(2, 5);
    std::vector<float> short_target(4, 0.0f);
    const std::vector<const std::vector<float>*> bad = {&short_target, &short_target};
    KITE_REQUIRE_THROWS_CONTAINING(tr::mse_embedding_loss<double>(emb, bad, true, d), kite::shape_error,
                                   "target 0 has 4 entries; expected 5");
}

TEST_CASE("train: MNR loss on known values and against finite differences, with hard negatives", "[train][loss]") {
    // Orthonormal anchors equal to their positives: scores are 20 on the diagonal and 0 elsewhere,
    // so each row's loss is log(1 + (B - 1) e^-20).
    matrix<double> e(3, 4, 0.0);
    for (index_t i = 0; i < 3; ++i) e(i, i) = 2.0 + i;  // unnormalised on purpose
    const auto r0 = tr::mnr_loss<double>(e, e);
    CHECK(r0.loss == Approx(std::log1p(2 * std::exp(-20.0))).epsilon(1e-12));
    CHECK(r0.correct == 3);
    // Swapped positives: every anchor prefers another row.
    matrix<double> swapped(3, 4, 0.0);
    swapped(0, 1) = swapped(1, 2) = swapped(2, 0) = 1.0;
    CHECK(tr::mnr_loss<double>(e, swapped).correct == 0);

    const index_t B = 4, C = 6, d = 5;  // two hard negatives
    auto a = randm<double>(B, d, 21), c = randm<double>(C, d, 22);
    for (const double scale : {1.0, 20.0}) {
        const auto r = tr::mnr_loss<double>(a, c, scale);
        const auto f = [&] { return tr::mnr_loss<double>(a, c, scale).loss; };
        INFO("scale " << scale);
        CHECK(worst_fd(a.flat(), r.d_anchors.flat(), f) < 5e-9);
        CHECK(worst_fd(c.flat(), r.d_candidates.flat(), f) < 5e-9);
    }
    // The float version agrees with the double one within float rounding.
    matrix<float> af(B, d), cf(C, d);
    for (std::size_t i = 0; i < a.flat().size(); ++i) af.flat()[i] = static_cast<float>(a.flat()[i]);
    for (std::size_t i = 0; i < c.flat().size(); ++i) cf.flat()[i] = static_cast<float>(c.flat()[i]);
    const auto rf = tr::mnr_loss<float>(af, cf);
    const auto rd = tr::mnr_loss<double>(a, c);
    CHECK(std::abs(rf.loss - rd.loss) < 1e-5 * std::max(1.0, rd.loss));
    kite::test::running_max worst;
    for (std::size_t i = 0; i < rd.d_anchors.flat().size(); ++i)
        worst.add(std::abs(rf.d_anchors.flat()[i] - rd.d_anchors.flat()[i]));
    CHECK(worst.value() < 1e-5);

    KITE_REQUIRE_THROWS_CONTAINING(tr::mnr_loss<double>(a, randm<double>(3, d, 1)), kite::shape_error, "3 candidates for 4 anchors");
    KITE_REQUIRE_THROWS_CONTAINING(tr::mnr_loss<double>(a, randm<double>(C, d + 1, 1)), kite::shape_error, "columns");
    KITE_REQUIRE_THROWS_CONTAINING(tr::mnr_loss<double>(a, c, 0.0), kite::invalid_argument, "scale = 0");
    KITE_REQUIRE_THROWS_CONTAINING(tr::mnr_loss<double>(matrix<double>(0, d), c), kite::shape_error, "empty");
}

TEST_CASE("train: AdamW steps, the warm-up / decay schedule and global-norm clipping", "[train][optim]") {
    // Adam's first step moves every parameter by lr against the sign of its gradient (m_hat = g,
    // v_hat = g^2), after the decoupled decay p (1 - lr wd).
    tr::adamw opt({.lr = 0.1, .weight_decay = 0.5});
    std::vector<double> p = {1.0, -2.0, 3.0};
    const std::vector<double> g = {0.5, -4.0, 1e-3};
    auto st = tr::adamw::state_for(p.size());
    opt.step<double>(p, g, st);
    const double decay = 1 - 0.1 * 0.5;
    CHECK(p[0] == Approx(1.0 * decay - 0.1).epsilon(1e-7));
    CHECK(p[1] == Approx(-2.0 * decay + 0.1).epsilon(1e-7));
    CHECK(p[2] == Approx(3.0 * decay - 0.1 * 1e-3 / (1e-3 + 1e-8)).epsilon(1e-9));
    // With a constant gradient the bias-corrected step stays lr at every step.
    tr::adamw plain({.lr = 0.01, .weight_decay = 0});
    std::vector<double> q = {0.0};
    auto sq = tr::adamw::state_for(1);
    for (int t = 0; t < 5; ++t) plain.step<double>(q, std::vector<double>{2.0}, sq);
    CHECK(q[0] == Approx(-0.05).epsilon(1e-6));
    CHECK(sq.t == 5);
    // It minimises a quadratic.
    std::vector<float> x = {5.0f, -3.0f};
    auto sx = tr::adamw::state_for(2);
    tr::adamw fast({.lr = 0.1, .weight_decay = 0});
    for (int t = 0; t < 500; ++t) {
        const std::vector<float> gx = {2 * (x[0] - 1.0f), 2 * (x[1] + 2.0f)};
        fast.step<float>(x, gx, sx);
    }
    CHECK(x[0] == Approx(1.0f).margin(1e-2));
    CHECK(x[1] == Approx(-2.0f).margin(1e-2));
    // Bad input names the element; nothing moves.
    std::vector<double> y = {1.0, 2.0};
    auto sy = tr::adamw::state_for(2);
    KITE_REQUIRE_THROWS_CONTAINING(opt.step<double>(y, std::vector<double>{0.0, NAN}, sy), kite::invalid_argument,
                                   "gradient[1] = nan");
    CHECK(y[0] == 1.0);
    CHECK(sy.t == 0);
    KITE_REQUIRE_THROWS_CONTAINING(opt.step<double>(y, std::vector<double>{0.0}, sy), kite::shape_error, "1 gradients");
    KITE_REQUIRE_THROWS_CONTAINING(tr::adamw({.beta2 = 1.0}), kite::invalid_argument, "betas");

    // Schedule: 0 -> 1 over the warm-up, then down to 0 at the end.
    const tr::linear_schedule s{.warmup_steps = 10, .total_steps = 110};
    CHECK(s.factor(0) == 0.0);
    CHECK(s.factor(5) == 0.5);
    CHECK(s.factor(10) == 1.0);
    CHECK(s.factor(60) == 0.5);
    CHECK(s.factor(110) == 0.0);
    CHECK(s.factor(500) == 0.0);
    KITE_REQUIRE_THROWS_CONTAINING((tr::linear_schedule{.warmup_steps = 5, .total_steps = 2}.factor(0)),
                                   kite::invalid_argument, "warmup_steps = 5");

    // Clipping: the global norm over all tensors, returned before scaling.
    std::vector<float> g1 = {3.0f, 0.0f}, g2 = {4.0f};
    std::vector<std::span<float>> both = {g1, g2};
    CHECK(tr::clip_grad_norm<float>(both, 1.0) == Approx(5.0));
    CHECK(g1[0] == Approx(0.6f).epsilon(1e-5));
    CHECK(g2[0] == Approx(0.8f).epsilon(1e-5));
    CHECK(tr::clip_grad_norm<float>(both, 10.0) == Approx(1.0).epsilon(1e-5));  // under the bar: unchanged
    CHECK(g2[0] == Approx(0.8f).epsilon(1e-5));
}

TEST_CASE("train: a linear projection trained with MNR learns to match pairs", "[train][loss][optim]") {
    // Pairs (x_i, y_i) where y_i = M x_i + noise for a hidden mixing M: an identity projection
    // of x scores the pairs poorly; W trained with the MNR loss on x -> W x against y must make
    // each x pick its own y out of the batch.
    const index_t d = 8, pairs = 64, batch = 16;
    const auto M = randm<float>(d, d, 31);
    const auto X = randm<float>(pairs, d, 32);
    auto Y = tr::linear<float>(X, M);
    const auto noise = randm<float>(pairs, d, 33, 0.1f);
    for (std::size_t i = 0; i < Y.flat().size(); ++i) Y.flat()[i] += noise.flat()[i];

    matrix<float> W(d, d, 0.0f);
    for (index_t i = 0; i < d; ++i) W(i, i) = 1.0f;
    tr::adamw opt({.lr = 0.05, .weight_decay = 0});
    auto st = tr::adamw::state_for(W.flat().size());
    const auto epoch = [&](bool train) {
        double loss = 0;
        index_t correct = 0;
        for (index_t b0 = 0; b0 < pairs; b0 += batch) {
            const auto xb = kite::matrix_view<const float>(X.data(), X.rows(), d).rows_slice(b0, batch);
            const auto yb = kite::matrix_view<const float>(Y.data(), Y.rows(), d).rows_slice(b0, batch);
            const auto a = tr::linear<float>(xb, W);
            const auto r = tr::mnr_loss<float>(a, yb);
            loss += r.loss;
            correct += r.correct;
            if (!train) continue;
            matrix<float> dx(batch, d), dW(d, d, 0.0f);
            tr::linear_backward<float>(xb, W, r.d_anchors, dx, dW);
            opt.step<float>(W.flat(), dW.flat(), st);
        }
        return std::pair{loss / (pairs / batch), correct};
    };
    const auto [loss0, correct0] = epoch(false);
    for (int e = 0; e < 60; ++e) epoch(true);
    const auto [loss1, correct1] = epoch(false);
    INFO("loss " << loss0 << " -> " << loss1 << ", in-batch accuracy " << correct0 << " -> " << correct1 << " of " << pairs);
    CHECK(loss1 < 0.25 * loss0);
    CHECK(correct1 >= pairs - 2);
    CHECK(correct1 > correct0);
}
