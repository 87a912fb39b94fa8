#pragma once
// Helpers shared by kite's quant tests: random weight matrices with adversarial rows, the
// float-rounding tolerance used to compare kernels with their oracles, and a float64
// dequantize-then-multiply oracle that keeps its result in double.

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <random>
#include <vector>

#include "kite/core/matrix.hpp"
#include "kite/quant.hpp"
#include "kite_test.hpp"

namespace kite::test::quant {

/// A rows x cols matrix of N(0, scale) values whose first rows are adversarial: all zero,
/// constant, one huge outlier, all positive, all negative.
inline kite::matrix<float> weights(kite::index_t rows, kite::index_t cols, std::uint64_t seed,
                                   float scale = 0.05f) {
    kite::matrix<float> w(rows, cols);
    auto v = kite::test::randn(rows * cols, seed, scale);
    std::copy(v.begin(), v.end(), w.flat().begin());
    for (kite::index_t r = 0; r < rows; ++r) {
        auto row = w.row(r);
        switch (r % 8) {
            case 1: std::fill(row.begin(), row.end(), 0.0f); break;
            case 3: std::fill(row.begin(), row.end(), 0.25f); break;
            case 5: row[cols / 2] = 40.0f; break;
            case 6: for (auto& x : row) x = std::abs(x); break;
            case 7: for (auto& x : row) x = -std::abs(x) - 1e-3f; break;
            default: break;
        }
    }
    return w;
}

/// weights() with every 32-column span of a row multiplied by its own factor (log-uniform in
/// [1/4, 4], the same for all rows), so that neighbouring scale groups get clearly different
/// scales and zero points: a kernel that applies the scale or zero of the wrong group misses by
/// far more than rounding. Rows 1 and 3 (mod 8), all zero and constant, stay as they are.
inline kite::matrix<float> grouped_weights(kite::index_t rows, kite::index_t cols, std::uint64_t seed) {
    auto w = weights(rows, cols, seed);
    std::mt19937_64 g(seed ^ 0x9e3779b97f4a7c15ull);
    std::uniform_real_distribution<float> e(-2.0f, 2.0f);
    std::vector<float> f((cols + 31) / 32);
    for (auto& v : f) v = std::exp2(e(g));
    for (kite::index_t r = 0; r < rows; ++r) {
        if (r % 8 == 1 || r % 8 == 3) continue;
        for (kite::index_t c = 0; c < cols; ++c) w(r, c) *= f[c / 32];
    }
    return w;
}

/// n activations drawn cheaply (a splitmix64 stream; the sum of four uniforms, centred and
/// scaled to unit variance, so roughly N(0, 1) with tails cut at +-3.5): batches of thousands of
/// 7B-wide rows cost little to draw, also under sanitizers.
inline std::vector<float> activations(std::size_t n, std::uint64_t seed) {
    std::uint64_t s = seed * 0x9e3779b97f4a7c15ull + 0x632be59bd9b4e019ull;
    auto next = [&s] {
        std::uint64_t z = (s += 0x9e3779b97f4a7c15ull);
        z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
        z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
        return z ^ (z >> 31);
    };
    std::vector<float> v(n);
    for (auto& x : v) {
        const std::uint64_t r = next();
        double sum = 0;  // four 16-bit uniforms in [0, 1)
        for (int j = 0; j < 4; ++j) sum += static_cast<double>((r >> (16 * j)) & 0xffff) / 65536.0;
        x = static_cast<float>((sum - 2.0) * std::sqrt(3.0));  // variance 4 / 12 -> 1
    }
    return v;
}

/// Per-element magnitudes |w| whose sum against |x| bounds the rounding of the kernels: every
/// kernel multiplies the exactly dequantized weights (or the integer levels, scaled afterwards)
/// by x and only the summation rounds.
template <class F>
kite::matrix<double> rounding_terms(const F& w) {
    kite::matrix<double> t(w.rows(), w.cols());
    for (kite::index_t r = 0; r < w.rows(); ++r)
        for (kite::index_t c = 0; c < w.cols(); ++c) t(r, c) = std::abs(static_cast<double>(w.value(r, c)));
    return t;
}

/// Float-rounding bound of a k-term dot product whose terms sum to `mag` in magnitude
/// (sum |w| |x|): a float summation error grows like sqrt(k) units of rounding of that sum.
inline double rounding_bound(double mag, kite::index_t k) {
    return 2e-6 * std::sqrt(static_cast<double>(k) + 16) * mag + 1e-30;
}

/// Float-rounding tolerance for row r of a product with x, from rounding_terms().
inline double tolerance(const kite::matrix<double>& terms, kite::index_t r, const float* x) {
    double mag = 0;
    for (kite::index_t c = 0; c < terms.cols(); ++c) mag += terms(r, c) * std::abs(static_cast<double>(x[c]));
    return rounding_bound(mag, terms.cols());
}

/// The weights W represents, element by element (format::value), in double. Every value is a
/// float, so the double holds it exactly.
template <class F>
kite::matrix<double> dequantize64(const F& w) {
    kite::matrix<double> d(w.rows(), w.cols());
    for (kite::index_t r = 0; r < w.rows(); ++r)
        for (kite::index_t c = 0; c < w.cols(); ++c) d(r, c) = static_cast<double>(w.value(r, c));
    return d;
}

/// The float64 oracle of Y = X W^T: the exact products summed in double (the result is not
/// rounded to float), and each output's rounding_bound().
struct oracle_product {
    kite::matrix<double> y;      ///< [batch][out_features]
    kite::matrix<double> bound;  ///< [batch][out_features]
};

/// oracle_product of X [batch][k] with the dequantize64() weights d [m][k].
inline oracle_product oracle_gemm(const kite::matrix<double>& d, kite::matrix_view<const float> X) {
    const kite::index_t m = d.rows(), k = d.cols(), b = X.rows();
    oracle_product o{kite::matrix<double>(b, m), kite::matrix<double>(b, m)};
    kite::matrix<double> ad(m, k);  // |d|
    for (kite::index_t r = 0; r < m; ++r)
        for (kite::index_t c = 0; c < k; ++c) ad(r, c) = std::abs(d(r, c));
    std::vector<double> x(k), ax(k);
    // Eight partial sums per output (the order of a double sum of float products does not
    // matter at float precision; independent sums run several times faster than one chain).
    constexpr kite::index_t V = 8;
    auto dot = [k](const double* u, const double* v) {
        double s[V] = {};
        kite::index_t c = 0;
        for (; c + V <= k; c += V)
            for (kite::index_t j = 0; j < V; ++j) s[j] += u[c + j] * v[c + j];
        for (; c < k; ++c) s[0] += u[c] * v[c];
        return ((s[0] + s[1]) + (s[2] + s[3])) + ((s[4] + s[5]) + (s[6] + s[7]));
    };
    for (kite::index_t t = 0; t < b; ++t) {
        for (kite::index_t c = 0; c < k; ++c) {
            x[c] = static_cast<double>(X(t, c));
            ax[c] = std::abs(x[c]);
        }
        for (kite::index_t r = 0; r < m; ++r) {
            o.y(t, r) = dot(d.row(r).data(), x.data());
            o.bound(t, r) = rounding_bound(dot(ad.row(r).data(), ax.data()), k);
        }
    }
    return o;
}

}  // namespace kite::test::quant
