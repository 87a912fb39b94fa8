#pragma once
// Shared by the encoder tests.

#include <cmath>
#include <span>

#include "kite/core/config.hpp"

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

}  // namespace kite::test
