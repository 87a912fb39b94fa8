#pragma once
/// @file kite/core/config.hpp
/// Version numbers and the few portability macros every kite header uses.

#define KITE_VERSION_MAJOR 0
#define KITE_VERSION_MINOR 1
#define KITE_VERSION_PATCH 0
#define KITE_VERSION_STRING "0.1.0"

#if defined(__GNUC__) || defined(__clang__)
#define KITE_FORCE_INLINE inline __attribute__((always_inline))
#define KITE_RESTRICT __restrict__
#define KITE_LIKELY(x) __builtin_expect(!!(x), 1)
#define KITE_UNLIKELY(x) __builtin_expect(!!(x), 0)
#else
#define KITE_FORCE_INLINE inline
#define KITE_RESTRICT
#define KITE_LIKELY(x) (x)
#define KITE_UNLIKELY(x) (x)
#endif

#include <cstddef>
#include <cstdint>

namespace kite {

/// Index type for sizes and dimensions.
using index_t = std::size_t;
/// Identifier of a stored item (vector, document); -1 marks "no result", as in FAISS.
using id_t = std::int64_t;

}  // namespace kite
