#pragma once
/// @file kite/core/checked.hpp
/// Size arithmetic on numbers a user or a file controls: a product or a sum that does not fit
/// std::size_t is a kite::invalid_argument naming what was being sized, never a wrapped-around
/// small number (which would turn into a short buffer and a write past its end).
///
///   const std::size_t n = kite::checked_mul(rows, cols, "matrix of ", rows, " x ", cols);
///   const std::size_t bytes = kite::checked_mul(n, sizeof(float), "buffer of ", n, " floats");

#include <cstddef>
#include <limits>

#include "kite/core/error.hpp"

namespace kite {

/// a * b; throws Error "<what...>: <a> x <b> overflows the size type" when it does not fit.
/// Loaders pass kite::format_error (a file's header named the sizes).
template <class Error = invalid_argument, class... What>
std::size_t checked_mul(std::size_t a, std::size_t b, const What&... what) {
    std::size_t r = 0;
    if (__builtin_mul_overflow(a, b, &r)) [[unlikely]]
        detail::raise<Error>(what..., ": ", a, " x ", b, " overflows the size type (at most ",
                             std::numeric_limits<std::size_t>::max(), ")");
    return r;
}

/// a + b; throws Error when it does not fit std::size_t.
template <class Error = invalid_argument, class... What>
std::size_t checked_add(std::size_t a, std::size_t b, const What&... what) {
    std::size_t r = 0;
    if (__builtin_add_overflow(a, b, &r)) [[unlikely]]
        detail::raise<Error>(what..., ": ", a, " + ", b, " overflows the size type (at most ",
                             std::numeric_limits<std::size_t>::max(), ")");
    return r;
}

}  // namespace kite
