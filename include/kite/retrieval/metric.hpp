#pragma once
/// @file kite/retrieval/metric.hpp
/// Metric policies for kite's vector indexes, named as FAISS names them:
///   kite::metric::l2             squared Euclidean distance, smaller is better (METRIC_L2);
///   kite::metric::inner_product  dot product, larger is better (METRIC_INNER_PRODUCT);
///   kite::metric::cosine         inner product of L2-normalised vectors: the index normalises
///                                every vector on add and every query on search.
/// Plus the cosine helpers kite::metric::normalize / normalize_rows for users who prefer to
/// normalise themselves and use inner_product.

#include <cmath>
#include <cstddef>
#include <span>

#include "kite/core/matrix.hpp"
#include "kite/core/simd.hpp"
#include "kite/core/topk.hpp"

namespace kite::metric {

/// Squared L2 distance, as FAISS's IndexFlatL2 reports it (no square root).
struct l2 {
    /// Smaller distances rank first.
    using order = kite::smaller_first;
    /// FAISS's MetricType value (METRIC_L2).
    static constexpr int faiss_metric = 1;
    /// Vectors are stored and searched as given.
    static constexpr bool normalizes = false;
    static constexpr const char* name = "l2";
    /// The distance between two vectors of length d.
    static float distance(const float* a, const float* b, std::size_t d) noexcept {
        return kite::simd::l2_sq(a, b, d);
    }
};

/// Inner product (a similarity: larger ranks first), as FAISS's IndexFlatIP.
struct inner_product {
    using order = kite::larger_first;
    static constexpr int faiss_metric = 0;  // METRIC_INNER_PRODUCT
    static constexpr bool normalizes = false;
    static constexpr const char* name = "inner_product";
    static float distance(const float* a, const float* b, std::size_t d) noexcept {
        return kite::simd::dot(a, b, d);
    }
};

/// Cosine similarity: inner product on vectors normalised to unit length on add and on search.
/// Persisted in FAISS format as an IndexFlatIP holding the normalised vectors. A zero vector
/// stays zero (as faiss.normalize_L2 leaves it), so its similarity to everything is 0.
struct cosine : inner_product {
    static constexpr bool normalizes = true;
    static constexpr const char* name = "cosine";
};

/// Scales `v` to unit L2 norm in place; a zero vector is left unchanged. Any finite vector
/// works: where the squared norm would underflow or overflow in float, it is taken in double.
inline void normalize(std::span<float> v) noexcept {
    const float n2 = kite::simd::norm_sq(v.data(), v.size());
    if (n2 >= 0x1p-100f && n2 <= 0x1p100f) {
        kite::simd::scale(1.0f / std::sqrt(n2), v.data(), v.size());
        return;
    }
    double s = 0;
    for (const float x : v) s += static_cast<double>(x) * x;
    if (s <= 0) return;
    const double inv = 1.0 / std::sqrt(s);
    for (float& x : v) x = static_cast<float>(x * inv);
}

/// Normalises every row of `m` to unit L2 norm in place (zero rows are left unchanged).
inline void normalize_rows(matrix_view<float> m) noexcept {
    for (index_t r = 0; r < m.rows(); ++r) normalize(m.row(r));
}

}  // namespace kite::metric
