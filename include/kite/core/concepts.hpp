#pragma once
/// @file kite/core/concepts.hpp
/// The concepts of kite's core. Every area has one concepts.hpp like this one: each concept is
/// preceded by its contract — what a type must provide, the shapes involved, and the cost —
/// so a wrong policy fails at compile time with the concept's name in the message.

#include <concepts>
#include <cstddef>
#include <span>
#include <type_traits>

#include "kite/core/config.hpp"
#include "kite/core/half.hpp"

namespace kite {

/// storage_scalar: a type that stores one real number and converts to and from float.
/// Contract:
///   - trivially copyable, at most 4 bytes;
///   - kite::to_float(T) -> float and kite::from_float<T>(float) -> T are defined
///     (float itself, bf16 and fp16 qualify; from_float rounds to nearest even);
///   - conversion is O(1) and never throws.
/// Used to choose how weights, KV entries and vectors are stored (a policy on dtype).
template <class T>
concept storage_scalar = std::is_trivially_copyable_v<T> && (sizeof(T) <= 4) &&
                         requires(T t, float f) {
                             { kite::to_float(t) } -> std::same_as<float>;
                             { kite::from_float<T>(f) } -> std::same_as<T>;
                         };

/// row_major_view: a non-owning 2-D view of rows x cols elements, row r starting at
/// data() + r * stride(), stride() >= cols().
/// Contract: data(), rows(), cols(), stride() are O(1) and noexcept; element type is
/// `element_type`. kite::matrix_view<T> is the model; kite::view(eigen_matrix) produces one.
template <class V>
concept row_major_view = requires(const V& v) {
    typename V::element_type;
    { v.data() } -> std::convertible_to<const typename V::element_type*>;
    { v.rows() } -> std::convertible_to<index_t>;
    { v.cols() } -> std::convertible_to<index_t>;
    { v.stride() } -> std::convertible_to<index_t>;
};

/// index_body: a callable run by parallel_for for every index of a range.
/// Contract: body(i) for i in [begin, end) may run concurrently on different threads with
/// different i; it must not throw in kite's own kernels (user callbacks may: the first
/// exception is rethrown on the calling thread).
template <class F>
concept index_body = std::invocable<F&, std::size_t>;

static_assert(storage_scalar<float> && storage_scalar<bf16> && storage_scalar<fp16>);

}  // namespace kite
