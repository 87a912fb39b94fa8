#pragma once
// NaN- and infinity-safe numeric comparisons for kite's tests (included by kite_test.hpp).
//
// `std::max(m, std::abs(a - b))` returns `m` when the difference is NaN, so a kernel that writes
// NaN passes a test built on it; so do `std::min` and `if (x < worst)` bookkeeping. Every
// numeric comparison in the suite goes through these helpers instead:
//
//   CHECK(kite::test::max_abs_diff(got, want) <= 1e-6);          // spans, vectors, matrix views
//   CHECK(kite::test::max_rel_diff(got, want, 1e-3) <= 1e-5);    // |a-b| / max(|b|, floor)
//   CHECK(kite::test::max_ulp_diff(got, want) <= 4);
//   CHECK(kite::test::max_diff(got, want, [&](std::size_t i, double a, double b) {
//       return std::abs(a - b) / scale[i]; }) <= 1.0);            // any per-element error
//
// Rules: a value that is not finite on one side where the other side is finite is a failure;
// NaN against NaN and an infinity against the same infinity are equal (a reference may produce
// them on purpose); +inf against -inf is a failure; sizes (or shapes) that differ are a failure;
// an error function that returns NaN is a failure. A failure makes the `difference` compare
// false with every bound, and Catch prints where it happened and both values.
//
// For a "worst so far" over something else (cosines, per-row errors), `running_max` /
// `running_min` keep the first NaN they see: CHECK(worst.value() >= 0.999) then fails.

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <ostream>
#include <ranges>

#include "kite/core/matrix.hpp"

namespace kite::test {

/// The outcome of comparing two sequences: the largest error, where it is and both values, or
/// the first place where they disagree on finiteness (or that their sizes differ).
struct difference {
    enum class status { ok, nonfinite, nan_error, size };
    static constexpr std::size_t npos = static_cast<std::size_t>(-1);

    status what = status::ok;
    double value = 0;          ///< largest error; +inf when `what != ok`
    std::size_t index = npos;  ///< flat index of the largest error or of the mismatch
    std::size_t cols = 0;      ///< > 0 for matrices: the index is printed as (row, col)
    double a = 0, b = 0;       ///< the two values at `index`
    std::size_t size_a = 0, size_b = 0;
    const char* unit = "|a - b|";

    bool ok() const noexcept { return what == status::ok; }
    friend bool operator<=(const difference& d, double bound) noexcept { return d.ok() && d.value <= bound; }
    friend bool operator<(const difference& d, double bound) noexcept { return d.ok() && d.value < bound; }
    friend bool operator==(const difference& d, double v) noexcept { return d.ok() && d.value == v; }

    /// Prints the index as [i], or as (row, col) for matrices.
    struct where {
        const difference& d;
        friend std::ostream& operator<<(std::ostream& o, const where& w) {
            if (w.d.cols > 0) return o << '(' << w.d.index / w.d.cols << ", " << w.d.index % w.d.cols << ')';
            return o << '[' << w.d.index << ']';
        }
    };

    friend std::ostream& operator<<(std::ostream& os, const difference& d) {
        switch (d.what) {
            case status::size:
                return os << "sizes differ: " << d.size_a << " vs " << d.size_b;
            case status::nonfinite:
                return os << "non-finite mismatch at " << where{d} << ": a = " << d.a << ", b = " << d.b;
            case status::nan_error:
                return os << "error is NaN at " << where{d} << ": a = " << d.a << ", b = " << d.b;
            case status::ok:
                break;
        }
        if (d.index == npos) return os << "max " << d.unit << " = 0 (empty)";
        return os << "max " << d.unit << " = " << d.value << " at " << where{d} << " (a = " << d.a
                  << ", b = " << d.b << ")";
    }
};

namespace detail {

/// Both values are equal as non-finite values (NaN and NaN, or the same infinity).
inline bool same_nonfinite(double a, double b) {
    if (std::isnan(a) && std::isnan(b)) return true;
    return std::isinf(a) && std::isinf(b) && (a > 0) == (b > 0);
}

/// Folds one pair into `d`; returns false once `d` holds a failure (which is then final).
template <class ErrorFn>
bool fold(difference& d, std::size_t i, double a, double b, ErrorFn&& error) {
    const bool fa = std::isfinite(a), fb = std::isfinite(b);
    if (!fa || !fb) {
        if (!fa && !fb && same_nonfinite(a, b)) return true;
        d.what = difference::status::nonfinite;
        d.value = std::numeric_limits<double>::infinity();
        d.index = i, d.a = a, d.b = b;
        return false;
    }
    const double e = error(i, a, b);
    if (std::isnan(e)) {
        d.what = difference::status::nan_error;
        d.value = std::numeric_limits<double>::infinity();
        d.index = i, d.a = a, d.b = b;
        return false;
    }
    if (d.index == difference::npos || e > d.value) d.value = e, d.index = i, d.a = a, d.b = b;
    return true;
}

template <class R>
concept numeric_range = std::ranges::random_access_range<const R> && std::ranges::sized_range<const R> &&
                        std::is_arithmetic_v<std::remove_cvref_t<std::ranges::range_value_t<const R>>>;

}  // namespace detail

/// Largest `error(i, a[i], b[i])` over two equally long ranges (see the rules at the top).
template <class A, class B, class ErrorFn>
    requires detail::numeric_range<A> && detail::numeric_range<B>
difference max_diff(const A& a, const B& b, ErrorFn&& error, const char* unit = "error") {
    difference d;
    d.unit = unit;
    d.size_a = std::ranges::size(a), d.size_b = std::ranges::size(b);
    if (d.size_a != d.size_b) {
        d.what = difference::status::size;
        d.value = std::numeric_limits<double>::infinity();
        return d;
    }
    auto ia = std::ranges::begin(a);
    auto ib = std::ranges::begin(b);
    for (std::size_t i = 0; i < d.size_a; ++i)
        if (!detail::fold(d, i, static_cast<double>(ia[i]), static_cast<double>(ib[i]), error)) break;
    return d;
}

/// The same over two matrix views of equal shape (strides may differ); indices print as (r, c).
template <class T, class U, class ErrorFn>
difference max_diff(matrix_view<T> a, matrix_view<U> b, ErrorFn&& error, const char* unit = "error") {
    difference d;
    d.unit = unit;
    d.cols = a.cols() > 0 ? a.cols() : 1;
    d.size_a = a.size(), d.size_b = b.size();
    if (a.rows() != b.rows() || a.cols() != b.cols()) {
        d.what = difference::status::size;
        d.value = std::numeric_limits<double>::infinity();
        return d;
    }
    for (index_t r = 0; r < a.rows(); ++r)
        for (index_t c = 0; c < a.cols(); ++c)
            if (!detail::fold(d, r * a.cols() + c, static_cast<double>(a(r, c)), static_cast<double>(b(r, c)),
                              error))
                return d;
    return d;
}
template <class T, class U, class ErrorFn>
difference max_diff(const matrix<T>& a, const matrix<U>& b, ErrorFn&& error, const char* unit = "error") {
    return max_diff(a.view(), b.view(), error, unit);
}

/// |a - b| / max(|b|, floor) for one pair: `b` is the reference, `floor` (> 0) keeps values near
/// zero from dominating. NaN when either is NaN (no std::max, which would drop a NaN scale).
inline double relative_error(double a, double b, double floor) {
    const double scale = std::abs(b);
    if (std::isnan(a) || std::isnan(scale)) return std::numeric_limits<double>::quiet_NaN();
    return std::abs(a - b) / (scale > floor ? scale : floor);
}

namespace detail {
inline auto abs_error() {
    return [](std::size_t, double a, double b) { return std::abs(a - b); };
}
inline auto rel_error(double floor) {
    return [floor](std::size_t, double a, double b) { return relative_error(a, b, floor); };
}
}  // namespace detail

/// Largest |a[i] - b[i]|.
template <class A, class B>
difference max_abs_diff(const A& a, const B& b) {
    return max_diff(a, b, detail::abs_error(), "|a - b|");
}
template <class T, class U>
difference max_abs_diff(matrix_view<T> a, matrix_view<U> b) {
    return max_diff(a, b, detail::abs_error(), "|a - b|");
}

/// Largest |a[i] - b[i]| / max(|b[i]|, floor): `b` is the reference; `floor` (> 0) keeps
/// values near zero from dominating.
template <class A, class B>
difference max_rel_diff(const A& a, const B& b, double floor) {
    return max_diff(a, b, detail::rel_error(floor), "|a - b| / max(|b|, floor)");
}
template <class T, class U>
difference max_rel_diff(matrix_view<T> a, matrix_view<U> b, double floor) {
    return max_diff(a, b, detail::rel_error(floor), "|a - b| / max(|b|, floor)");
}

/// Distance in units in the last place between two floats: the number of representable floats
/// between them (0.0 and -0.0 are 0 apart). Infinite when either is NaN.
inline double ulp_distance(float a, float b) {
    if (std::isnan(a) || std::isnan(b)) return std::numeric_limits<double>::infinity();
    auto ordered = [](float x) {
        const auto u = std::bit_cast<std::int32_t>(x);
        return u < 0 ? static_cast<std::int64_t>(std::numeric_limits<std::int32_t>::min()) - u
                     : static_cast<std::int64_t>(u);
    };
    const std::int64_t d = ordered(a) - ordered(b);
    return static_cast<double>(d < 0 ? -d : d);
}

/// Largest ulp_distance over two float ranges.
template <class A, class B>
difference max_ulp_diff(const A& a, const B& b) {
    return max_diff(
        a, b, [](std::size_t, double x, double y) { return ulp_distance(static_cast<float>(x), static_cast<float>(y)); },
        "ulp distance");
}

/// The largest |v[i]| of a range of numbers; NaN when any element is NaN (an oracle's input
/// scale computed with std::max would skip it).
template <class R>
    requires detail::numeric_range<R>
double max_abs_of(const R& v) {
    double m = 0;
    for (const auto x : v) {
        const double a = std::abs(static_cast<double>(x));
        if (std::isnan(a)) return a;
        if (a > m) m = a;
    }
    return m;
}

/// A maximum that a NaN cannot slip past: the first NaN added sticks, and value() returns it
/// (so `CHECK(m.value() <= bound)` fails). `at()` is the index given with the largest value.
class running_max {
public:
    void add(double x, std::size_t at = 0) noexcept {
        if (std::isnan(value_)) return;
        if (!seen_ || std::isnan(x) || x > value_) value_ = x, at_ = at;
        seen_ = true;
    }
    double value() const noexcept { return value_; }
    std::size_t at() const noexcept { return at_; }
    bool empty() const noexcept { return !seen_; }

private:
    double value_ = -std::numeric_limits<double>::infinity();
    std::size_t at_ = 0;
    bool seen_ = false;
};

/// The minimum twin of running_max (the first NaN sticks).
class running_min {
public:
    void add(double x, std::size_t at = 0) noexcept { m_.add(-x, at); }
    double value() const noexcept { return -m_.value(); }
    std::size_t at() const noexcept { return m_.at(); }
    bool empty() const noexcept { return m_.empty(); }

private:
    running_max m_;
};

}  // namespace kite::test
