#pragma once
/// @file kite/retrieval/concepts.hpp
/// The concepts of kite's retrieval area. Each concept is preceded by its contract, so a wrong
/// policy fails at compile time with the concept's name in the message.

#include <concepts>
#include <cstddef>

#include "kite/core/topk.hpp"

namespace kite::retrieval {

/// vector_metric: a policy that says how a vector index compares vectors.
/// Contract:
///   - `order` is kite::smaller_first (distances) or kite::larger_first (similarities); it
///     decides which results rank first and the padding value of missing results;
///   - `faiss_metric` is FAISS's MetricType code (1 = METRIC_L2, 0 = METRIC_INNER_PRODUCT),
///     used by the FAISS-format reader and writer;
///   - `normalizes` is true when vectors and queries are scaled to unit length (cosine);
///   - `distance(a, b, d)` returns the score of two float arrays of length d, O(d), noexcept;
///     it is what search reports.
/// kite::metric::l2, kite::metric::inner_product and kite::metric::cosine are the models.
template <class M>
concept vector_metric =
    (std::same_as<typename M::order, kite::smaller_first> ||
     std::same_as<typename M::order, kite::larger_first>) &&
    requires(const float* a, std::size_t d) {
        { M::faiss_metric } -> std::convertible_to<int>;
        { M::normalizes } -> std::convertible_to<bool>;
        { M::distance(a, a, d) } noexcept -> std::same_as<float>;
    };

}  // namespace kite::retrieval
