#include <cmath>
#include <limits>
#include <numeric>

#include "kite/core/simd.hpp"
#include "kite_test.hpp"

namespace {
// |error| bound for a float dot product of length n relative to sum |a_i b_i|.
double tol(std::size_t n, double mag) { return (n + 4) * 1.2e-7 * mag + 1e-30; }
}  // namespace

TEST_CASE("simd helpers equal their scalar twins on odd lengths", "[core][simd]") {
    for (std::size_t n : {0u, 1u, 2u, 3u, 15u, 16u, 17u, 31u, 33u, 63u, 64u, 65u, 127u, 1000u, 4099u}) {
        for (std::size_t offset : {0u, 1u, 3u}) {  // unaligned starts
            auto a = kite::test::randn(n + offset, 11 + n);
            auto b = kite::test::randn(n + offset, 97 + n);
            const float* pa = a.data() + offset;
            const float* pb = b.data() + offset;
            const std::size_t m = n;
            double mag_dot = 0, mag_l2 = 0, mag_sum = 0;
            for (std::size_t i = 0; i < m; ++i) {
                mag_dot += std::abs(double(pa[i]) * pb[i]);
                mag_l2 += (double(pa[i]) - pb[i]) * (double(pa[i]) - pb[i]);
                mag_sum += std::abs(pa[i]);
            }
            INFO("n = " << m << ", offset = " << offset);
            CHECK(std::abs(kite::simd::dot(pa, pb, m) - kite::simd::scalar::dot(pa, pb, m)) <= tol(m, mag_dot));
            CHECK(std::abs(kite::simd::l2_sq(pa, pb, m) - kite::simd::scalar::l2_sq(pa, pb, m)) <= tol(m, mag_l2));
            CHECK(std::abs(kite::simd::norm_sq(pa, m) - kite::simd::scalar::norm_sq(pa, m)) <= tol(m, mag_l2 + 1));
            CHECK(std::abs(kite::simd::sum(pa, m) - kite::simd::scalar::sum(pa, m)) <= tol(m, mag_sum));
            CHECK(kite::simd::max(pa, m) == kite::simd::scalar::max(pa, m));
        }
    }
}

TEST_CASE("simd helpers on adversarial values", "[core][simd]") {
    // Large magnitudes with cancellation: l2 of identical vectors is exactly zero.
    std::vector<float> big(1000, 3.0e18f);
    CHECK(kite::simd::l2_sq(big, big) == 0.0f);
    // max: maximum in the tail, in the vector body, all negative, NaNs skipped.
    std::vector<float> v(37, -5.0f);
    v[36] = 2.0f;
    CHECK(kite::simd::max(v) == 2.0f);
    v[36] = -5.0f;
    v[3] = 1.5f;
    CHECK(kite::simd::max(v) == 1.5f);
    v[3] = std::numeric_limits<float>::quiet_NaN();
    CHECK(kite::simd::max(v) == -5.0f);
    CHECK(kite::simd::max(std::span<const float>{}) == -std::numeric_limits<float>::infinity());
    CHECK(kite::simd::sum(std::span<const float>{}) == 0.0f);
    // axpy and scale against loops.
    auto x = kite::test::randn(53, 1), y = kite::test::randn(53, 2), y0 = y;
    kite::simd::axpy(0.5f, x.data(), y.data(), y.size());
    for (std::size_t i = 0; i < y.size(); ++i) CHECK(y[i] == Approx(y0[i] + 0.5f * x[i]));
    kite::simd::scale(2.0f, y.data(), y.size());
    for (std::size_t i = 0; i < y.size(); ++i) CHECK(y[i] == Approx(2.0f * (y0[i] + 0.5f * x[i])));
}

TEST_CASE("span forms check lengths", "[core][simd]") {
    std::vector<float> a(5, 1.0f), b(6, 1.0f);
    KITE_REQUIRE_THROWS_CONTAINING(kite::simd::dot(a, b), kite::shape_error, "lengths 5 and 6");
    CHECK_THROWS_AS(kite::simd::l2_sq(a, b), kite::shape_error);
    CHECK(kite::simd::dot(a, a) == 5.0f);
}
