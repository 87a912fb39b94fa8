// The test suite's own comparison helpers (tests/kite_compare.hpp): a NaN, an infinity or a
// size mismatch on either side must fail every bound, and the report must say where.

#include <cmath>
#include <limits>
#include <sstream>
#include <vector>

#include "kite_test.hpp"

namespace kt = kite::test;

namespace {
constexpr double nan_v = std::numeric_limits<double>::quiet_NaN();
constexpr double inf_v = std::numeric_limits<double>::infinity();

std::string text(const kt::difference& d) {
    std::ostringstream os;
    os << d;
    return os.str();
}
}  // namespace

TEST_CASE("max_abs_diff: the largest difference and where it is", "[test-helpers]") {
    const std::vector<float> a{1.0f, 2.0f, 3.0f, 4.0f};
    const std::vector<double> b{1.0, 2.5, 3.0, 3.75};
    const auto d = kt::max_abs_diff(a, b);
    CHECK(d.ok());
    CHECK(d.value == 0.5);
    CHECK(d.index == 1);
    CHECK(d <= 0.5);
    CHECK_FALSE(d < 0.5);
    CHECK_FALSE(d <= 0.49);
    CHECK(text(d).find("at [1]") != std::string::npos);
}

TEST_CASE("max_abs_diff: NaN on either side fails, NaN on both sides is equal", "[test-helpers]") {
    for (int side = 0; side < 2; ++side) {
        std::vector<double> a{0.0, 1.0, 2.0}, b = a;
        (side == 0 ? a : b)[1] = nan_v;
        const auto d = kt::max_abs_diff(a, b);
        CHECK_FALSE(d.ok());
        CHECK(d.what == kt::difference::status::nonfinite);
        CHECK(d.index == 1);
        CHECK_FALSE(d <= 1e300);
        CHECK_FALSE(d <= inf_v);
        CHECK(text(d).find("non-finite mismatch at [1]") != std::string::npos);
    }
    const std::vector<double> both{0.0, nan_v, 2.0};
    CHECK(kt::max_abs_diff(both, both) <= 0.0);
}

TEST_CASE("max_abs_diff: infinities", "[test-helpers]") {
    const std::vector<double> p{inf_v}, n{-inf_v}, f{1e308};
    CHECK(kt::max_abs_diff(p, p) <= 0.0);
    CHECK(kt::max_abs_diff(n, n) <= 0.0);
    CHECK_FALSE(kt::max_abs_diff(p, n) <= 1e300);
    CHECK_FALSE(kt::max_abs_diff(p, f) <= 1e300);
    CHECK_FALSE(kt::max_abs_diff(f, n) <= 1e300);
    // Two finite values whose difference overflows to inf fail the bound but are not "non-finite".
    const std::vector<double> big{1.7e308}, nbig{-1.7e308};
    const auto d = kt::max_abs_diff(big, nbig);
    CHECK(d.ok());
    CHECK_FALSE(d <= 1e308);
}

TEST_CASE("max_abs_diff: -0.0 equals 0.0, empty inputs, sizes that differ", "[test-helpers]") {
    const std::vector<float> z{0.0f}, nz{-0.0f};
    CHECK(kt::max_abs_diff(z, nz) <= 0.0);
    CHECK(kt::max_ulp_diff(z, nz) <= 0.0);
    const std::vector<float> empty;
    const auto e = kt::max_abs_diff(empty, empty);
    CHECK(e <= 0.0);
    CHECK(e.index == kt::difference::npos);
    const std::vector<float> three(3), four(4);
    const auto d = kt::max_abs_diff(three, four);
    CHECK(d.what == kt::difference::status::size);
    CHECK_FALSE(d <= 1e300);
    CHECK(text(d) == "sizes differ: 3 vs 4");
    CHECK_FALSE(kt::max_abs_diff(empty, three) <= 1e300);
}

TEST_CASE("max_abs_diff over matrix views: shapes, strides and (row, col) reports", "[test-helpers]") {
    kite::matrix<float> a(2, 3), b(2, 3);
    for (kite::index_t i = 0; i < 6; ++i) a.data()[i] = b.data()[i] = static_cast<float>(i);
    CHECK(kt::max_abs_diff(a.view(), b.view()) <= 0.0);
    b(1, 2) = 7.0f;
    auto d = kt::max_abs_diff(a.view(), b.view());
    CHECK(d.value == 2.0);
    CHECK(text(d).find("at (1, 2)") != std::string::npos);
    a(0, 1) = std::numeric_limits<float>::quiet_NaN();
    d = kt::max_abs_diff(a.view(), b.view());
    CHECK_FALSE(d <= 1e30);
    CHECK(text(d).find("(0, 1)") != std::string::npos);
    // A strided view of a wider buffer compares only its own columns.
    std::vector<float> wide{0, 1, 99, 3, 4, 98};
    const kite::matrix_view<const float> sv(wide.data(), 2, 2, 3);
    const std::vector<float> want{0, 1, 3, 4};
    CHECK(kt::max_abs_diff(sv, kite::matrix_view<const float>(want.data(), 2, 2)) <= 0.0);
    kite::matrix<float> other(3, 2);
    CHECK_FALSE(kt::max_abs_diff(a.view(), other.view()) <= 1e30);
}

TEST_CASE("max_rel_diff and max_diff with a per-element error", "[test-helpers]") {
    const std::vector<double> got{1.01, 1e-9, 200.0}, want{1.0, 0.0, 100.0};
    const auto r = kt::max_rel_diff(got, want, 1e-3);
    CHECK(r.index == 2);
    CHECK(r.value == Approx(1.0));
    const std::vector<double> scale{1.0, 1.0, 0.0};  // 0 / 0 at index 2 would be NaN: a failure
    const auto z = kt::max_diff(want, want, [&](std::size_t i, double a, double b) { return std::abs(a - b) / scale[i]; });
    CHECK(z.what == kt::difference::status::nan_error);
    CHECK_FALSE(z <= 1.0);
}

TEST_CASE("relative_error: the floor below small references, NaN on either side stays NaN", "[test-helpers]") {
    CHECK(kt::relative_error(3.0, 2.0, 1.0) == 0.5);      // |b| above the floor
    CHECK(kt::relative_error(0.3, 0.1, 1.0) == Approx(0.2));  // the floor
    CHECK(std::isnan(kt::relative_error(1.0, nan_v, 1.0)));  // a NaN reference: std::max(1, NaN) would give 1
    CHECK(std::isnan(kt::relative_error(nan_v, 1.0, 1.0)));
    CHECK(std::isinf(kt::relative_error(inf_v, 1.0, 1.0)));
    kt::running_max worst;
    worst.add(kt::relative_error(1.0, 1.0, 1.0));
    worst.add(kt::relative_error(1.0, nan_v, 1.0));
    CHECK_FALSE(worst.value() <= 1e-6);
}

TEST_CASE("ulp_distance", "[test-helpers]") {
    CHECK(kt::ulp_distance(1.0f, 1.0f) == 0);
    CHECK(kt::ulp_distance(1.0f, std::nextafter(1.0f, 2.0f)) == 1);
    CHECK(kt::ulp_distance(-std::numeric_limits<float>::denorm_min(), std::numeric_limits<float>::denorm_min()) == 2);
    CHECK(kt::ulp_distance(0.0f, -0.0f) == 0);
    CHECK(std::isinf(kt::ulp_distance(std::numeric_limits<float>::quiet_NaN(), 1.0f)));
    const std::vector<float> a{1.0f, 2.0f}, b{1.0f, std::nextafter(2.0f, 0.0f)};
    CHECK(kt::max_ulp_diff(a, b) <= 1.0);
    CHECK_FALSE(kt::max_ulp_diff(a, b) < 1.0);
}

TEST_CASE("running_max and running_min keep the first NaN", "[test-helpers]") {
    kt::running_max m;
    CHECK(m.empty());
    m.add(1.0, 0);
    m.add(3.0, 1);
    m.add(2.0, 2);
    CHECK(m.value() == 3.0);
    CHECK(m.at() == 1);
    m.add(nan_v, 3);
    m.add(5.0, 4);
    CHECK(std::isnan(m.value()));
    CHECK(m.at() == 3);
    CHECK_FALSE(m.value() <= 1e300);

    kt::running_min c;
    c.add(0.99, 0);
    c.add(0.98, 1);
    CHECK(c.value() == 0.98);
    CHECK(c.at() == 1);
    c.add(nan_v, 2);
    c.add(0.5, 3);
    CHECK(std::isnan(c.value()));
    CHECK_FALSE(c.value() >= -1.0);
}

TEST_CASE("max_abs_of keeps NaN", "[test-helpers]") {
    CHECK(kt::max_abs_of(std::vector<float>{1.0f, -3.0f, 2.0f}) == 3.0);
    CHECK(kt::max_abs_of(std::vector<float>{}) == 0.0);
    CHECK(std::isnan(kt::max_abs_of(std::vector<double>{1.0, nan_v, 5.0})));
    CHECK(std::isinf(kt::max_abs_of(std::vector<double>{1.0, -inf_v})));
}
