#pragma once
// Shared by the encoder tests.

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <span>

#include "kite/core/config.hpp"
#include "kite/core/matrix.hpp"
#include "kite_test.hpp"

namespace kite::test {

/// Cosine similarity of two float vectors of equal length, in double.
inline double cosine(std::span<const float> a, std::span<const float> b) {
    double ab = 0, aa = 0, bb = 0;
    for (index_t i = 0; i < a.size(); ++i) {
        ab += static_cast<double>(a[i]) * b[i];
        aa += static_cast<double>(a[i]) * a[i];
        bb += static_cast<double>(b[i]) * b[i];
    }
    return ab / std::sqrt(aa * bb);
}

/// An r x c matrix of N(0, scale^2) values (kite::test::randn with `seed`).
inline matrix<float> random_matrix(index_t r, index_t c, std::uint64_t seed, float scale = 1.0f) {
    matrix<float> m(r, c, uninitialized);
    const auto v = randn(r * c, seed, scale);
    std::copy(v.begin(), v.end(), m.data());
    return m;
}

}  // namespace kite::test
