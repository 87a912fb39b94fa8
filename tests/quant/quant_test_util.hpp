#pragma once
// Helpers shared by kite's quant tests: random weight matrices with adversarial rows, and the
// float-rounding tolerance used to compare kernels with their oracles.

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

/// Float-rounding tolerance for row r of a product with x, from rounding_terms().
inline double tolerance(const kite::matrix<double>& terms, kite::index_t r, const float* x) {
    double mag = 0;
    for (kite::index_t c = 0; c < terms.cols(); ++c) mag += terms(r, c) * std::abs(static_cast<double>(x[c]));
    return 2e-6 * std::sqrt(static_cast<double>(terms.cols()) + 16) * mag + 1e-30;
}

}  // namespace kite::test::quant
