#pragma once
/// @file kite/core/validate.hpp
/// Input checks used once at public entry points: finiteness of float data (robust under
/// -ffast-math, because it tests the exponent bits rather than calling std::isnan).

#include <bit>
#include <cstddef>
#include <cstdint>
#include <span>

#include "kite/core/error.hpp"
#include "kite/core/matrix.hpp"

namespace kite {

/// True when `x` is neither NaN nor infinite (bitwise test, safe with -ffast-math).
inline bool is_finite_bits(float x) noexcept {
    return (std::bit_cast<std::uint32_t>(x) & 0x7f800000u) != 0x7f800000u;
}

/// Index of the first non-finite value in `v`, or v.size() when all are finite.
inline std::size_t find_non_finite(std::span<const float> v) noexcept {
    // Branch-free OR-reduction per block so the common all-finite case vectorises.
    constexpr std::size_t block = 256;
    for (std::size_t b = 0; b < v.size(); b += block) {
        const std::size_t e = b + block < v.size() ? b + block : v.size();
        std::uint32_t bad = 0;
        for (std::size_t i = b; i < e; ++i) {
            const std::uint32_t u = std::bit_cast<std::uint32_t>(v[i]) & 0x7f800000u;
            bad |= static_cast<std::uint32_t>(u == 0x7f800000u);
        }
        if (bad)
            for (std::size_t i = b; i < e; ++i)
                if (!is_finite_bits(v[i])) return i;
    }
    return v.size();
}

/// Throws invalid_argument naming `what` and the position of the first NaN or infinity.
inline void require_finite(std::span<const float> v, const char* what) {
    const std::size_t i = find_non_finite(v);
    KITE_REQUIRE(i == v.size(), invalid_argument, what, "[", i, "] = ", v[i],
                 "; expected finite values (no NaN or infinity)");
}

/// Matrix form: the message names row and column.
inline void require_finite(matrix_view<const float> m, const char* what) {
    for (index_t r = 0; r < m.rows(); ++r) {
        const auto row = m.row(r);
        const std::size_t c = find_non_finite(row);
        KITE_REQUIRE(c == row.size(), invalid_argument, what, "[", r, "][", c, "] = ", row[c],
                     "; expected finite values (no NaN or infinity)");
    }
}

}  // namespace kite
