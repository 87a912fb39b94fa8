// Every GEMV/GEMM kernel (portable and AVX-512) against the dequantize-then-multiply oracle, on
// odd shapes, adversarial rows, one and two threads.
#include <cmath>
#include <vector>

#include "kite/quant.hpp"
#include "kite_test.hpp"
#include "quant_test_util.hpp"

namespace q = kite::quant;
using kite::index_t;

namespace {

struct shape {
    index_t m, k;
};
const shape shapes[] = {{1, 1}, {3, 7}, {5, 31}, {4, 32}, {7, 33}, {9, 100}, {13, 129}, {17, 200}, {6, 257}, {33, 515}};

template <class F, class Arch>
void check_gemv(const F& w, std::uint64_t seed, int threads, Arch arch) {
    auto x = kite::test::randn(w.cols(), seed);
    if (w.cols() > 4) x[3] = 0.0f;
    std::vector<float> y(w.rows(), -1.0f), yr(w.rows());
    q::gemv(w, x, y, threads, arch);
    q::reference::gemv(w, x, yr);
    const auto terms = kite::test::quant::rounding_terms(w);
    double worst = 0;  // largest error relative to the rounding bound
    index_t worst_r = 0;
    for (index_t r = 0; r < w.rows(); ++r) {
        const double e = std::abs(double(y[r]) - yr[r]) / kite::test::quant::tolerance(terms, r, x.data());
        if (!(e <= worst)) worst = e, worst_r = r;
    }
    INFO("arch " << q::arch::name<Arch>() << ", m = " << w.rows() << ", k = " << w.cols() << ", threads "
                 << threads << ", worst row " << worst_r << ": " << y[worst_r] << " vs " << yr[worst_r]);
    CHECK(worst <= 1.0);
}

template <class F, class Arch>
void check_gemm(const F& w, index_t b, std::uint64_t seed, int threads, Arch arch) {
    kite::matrix<float> X(b, w.cols());
    auto v = kite::test::randn(b * w.cols(), seed);
    std::copy(v.begin(), v.end(), X.flat().begin());
    kite::matrix<float> Y(b, w.rows(), -1.0f), Yr(b, w.rows());
    q::gemm(w, X, Y, threads, arch);
    q::reference::gemm(w, X, Yr);
    const auto terms = kite::test::quant::rounding_terms(w);
    double worst = 0;
    index_t wt = 0, wr = 0;
    for (index_t t = 0; t < b; ++t)
        for (index_t r = 0; r < w.rows(); ++r) {
            const double e = std::abs(double(Y(t, r)) - Yr(t, r)) / kite::test::quant::tolerance(terms, r, X.row(t).data());
            if (!(e <= worst)) worst = e, wt = t, wr = r;
        }
    INFO("arch " << q::arch::name<Arch>() << ", m = " << w.rows() << ", k = " << w.cols() << ", b = " << b
                 << ", threads " << threads << ", worst token " << wt << " row " << wr << ": " << Y(wt, wr)
                 << " vs " << Yr(wt, wr));
    CHECK(worst <= 1.0);
}

}  // namespace

TEMPLATE_TEST_CASE("gemv and gemm equal the dequantize-then-multiply oracle", "[quant][kernels]",
                   (q::absmax<8>), (q::absmax<4, 32, kite::fp16>), (q::zero_point<4, 128>),
                   (q::absmax<4>), (q::zero_point<8, 64, kite::fp16>), (q::zero_point<8, q::per_tensor>),
                   (q::absmax<4, q::per_tensor>), (q::zero_point<4, 64>), (q::f32), (q::dense<kite::bf16>)) {
    std::uint64_t seed = 100;
    for (const auto& s : shapes) {
        const auto W = kite::test::quant::weights(s.m, s.k, ++seed);
        const auto w = q::quantize(TestType{}, W);
        // dequantize() equals the element-wise oracle exactly (same single rounding)
        const auto d = q::dequantize(w);
        const auto dr = q::reference::dequantize(w);
        bool same = true;
        for (index_t r = 0; r < s.m; ++r)
            for (index_t c = 0; c < s.k; ++c) same = same && d(r, c) == dr(r, c);
        CHECK(same);
        for (int threads : {1, 2}) {
            check_gemv(w, ++seed, threads, q::arch::generic{});
            check_gemv(w, ++seed, threads, q::arch::best{});
            for (index_t b : {2u, 3u, 16u, 17u, 70u}) {
                if (b > 16 && s.m * s.k > 20000) continue;  // keep the double-precision oracle cheap
                check_gemm(w, b, ++seed, threads, q::arch::generic{});
                check_gemm(w, b, ++seed, threads, q::arch::best{});
            }
        }
        check_gemm(w, 1, ++seed, 1, q::arch::best{});
    }
}

TEST_CASE("4-bit GEMM on rows shorter than a code block reads no scale or zero past the row", "[quant][kernels]") {
    // 40 columns in groups of 32: a 128-column code block spans groups 0..3 of which the row has
    // 2. The batched path decodes whole blocks; with 64 rows the zero table is exactly 128 bytes,
    // so reading group 3 of the last row would overflow it (AddressSanitizer reports it).
    const auto W = kite::test::quant::weights(64, 40, 7);
    const auto w = q::quantize(q::zero_point<4, 32>{}, W);
    REQUIRE(w.zeros().size() == 128);
    for (index_t b : {1u, 30u, 70u}) {
        check_gemm(w, b, 8 + b, 1, q::arch::best{});
        check_gemm(w, b, 9 + b, 2, q::arch::best{});
    }
    check_gemv(w, 11, 1, q::arch::best{});
}

TEST_CASE("kernels with large activations and long rows stay within float rounding", "[quant][kernels]") {
    // 4096 columns of a per-row int8 matrix and x with a large common offset: the zero-point
    // correction (sum q x - z X) must not lose the signal.
    const auto W = kite::test::quant::weights(8, 4096, 5);
    auto x = kite::test::randn(4096, 6);
    for (auto& v : x) v = v + 30.0f;
    const auto w8 = q::quantize(q::zero_point<8>{}, W);
    const auto w4 = q::quantize(q::zero_point<4, 128, kite::fp16>{}, W);
    check_gemv(w8, 1, 2, q::arch::best{});
    check_gemv(w4, 2, 2, q::arch::best{});
    std::vector<float> y(8), yr(8);
    q::gemv(w8, x, y);
    q::reference::gemv(w8, x, yr);
    const auto terms = kite::test::quant::rounding_terms(w8);
    for (index_t r = 0; r < 8; ++r) CHECK(std::abs(y[r] - yr[r]) <= kite::test::quant::tolerance(terms, r, x.data()));
}

TEST_CASE("kernels check shapes", "[quant][errors]") {
    const auto W = kite::test::quant::weights(4, 10, 1);
    const auto w = q::quantize(q::absmax<4, 32>{}, W);
    std::vector<float> x(9), y(4);
    KITE_REQUIRE_THROWS_CONTAINING(q::gemv(w, x, y), kite::shape_error, "in_features = 10");
    x.resize(10);
    y.resize(5);
    KITE_REQUIRE_THROWS_CONTAINING(q::gemv(w, x, y), kite::shape_error, "out_features = 4");
    kite::matrix<float> X(3, 10), Y(3, 5);
    KITE_REQUIRE_THROWS_CONTAINING(q::gemm(w, X, Y), kite::shape_error, "3 x 4");
    kite::matrix<float> X2(3, 11), Y2(3, 4);
    KITE_REQUIRE_THROWS_CONTAINING(q::gemm(w, X2, Y2), kite::shape_error, "11 columns");
    kite::matrix<float> X0(0, 10), Y0(0, 4);
    q::gemm(w, X0, Y0);  // an empty batch is fine
}
