#pragma once
/// @file kite/quant/grid.hpp
/// The round-to-nearest quantizer shared by every method (RTN, GPTQ, AWQ), in double precision
/// so that its integer levels agree with the float64 PyTorch reference in tools/quant_reference.py
/// except at exact rounding ties.
///
///   symmetric  (absmax):  scale = max|w| / qmax, qmax = 2^(Bits-1) - 1;
///                         q = clamp(round(w / scale), -qmax, qmax);            w' = scale * q
///   asymmetric (min-max): lo = min(min w, 0), hi = max(max w, 0) (GPTQ's quantizer: the range
///                         always contains 0, so 0 is exactly representable);
///                         scale = (hi - lo) / (2^Bits - 1); z = round(-lo / scale);
///                         q = clamp(round(w / scale) + z, 0, 2^Bits - 1);        w' = scale * (q - z)
///
/// round() is round-half-to-even (torch.round). The scale is rounded to its storage type (float
/// or fp16) before z and q are computed, so the stored scale is the one the levels were chosen
/// for. An all-zero group gets lo = -1, hi = 1 (asymmetric) or max|w| = 1 (symmetric), as GPTQ's
/// quantizer does; its levels are then exactly the zero level.

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <limits>

#include "kite/core/error.hpp"
#include "kite/core/half.hpp"
#include "kite/quant/format.hpp"

namespace kite::quant {

/// Scale and zero point of one quantization group.
struct group_grid {
    double scale = 1.0;
    int zero = 0;
};

namespace detail {

/// torch.round: nearest integer, ties to even (the default floating-point rounding mode).
inline double round_even(double v) noexcept { return std::nearbyint(v); }

/// Rounds a scale to storage type S and back; throws when it cannot be represented.
template <class S>
double storage_round(double s) {
    const float f = static_cast<float>(s);
    double r = static_cast<double>(to_float(from_float<S>(f)));
    if (r == 0.0) {
        // A group of tiny weights: use the smallest positive scale S can hold (levels saturate
        // towards zero, which is the best that storage type can do).
        r = std::is_same_v<S, float> ? static_cast<double>(std::numeric_limits<float>::min())
                                     : static_cast<double>(fp16::from_bits(1).to_float());
    }
    KITE_REQUIRE(std::isfinite(r), invalid_argument, "quantization scale ", s,
                 " overflows the scale storage type; expected weights whose group range fits it");
    return r;
}

}  // namespace detail

/// Grid for values whose minimum and maximum, both extended to include 0, are lo <= 0 <= hi.
template <int Bits, grid Grid, class S>
group_grid grid_from_range(double lo, double hi) {
    if constexpr (Grid == grid::symmetric) {
        constexpr double qmax = (1 << (Bits - 1)) - 1;
        double amax = std::max(-lo, hi);
        if (amax == 0) amax = 1;
        return {detail::storage_round<S>(amax / qmax), 0};
    } else {
        constexpr double maxq = (1 << Bits) - 1;
        if (lo == 0 && hi == 0) {
            lo = -1;
            hi = 1;
        }
        const double s = detail::storage_round<S>((hi - lo) / maxq);
        const double z = std::clamp(detail::round_even(-lo / s), 0.0, maxq);
        return {s, static_cast<int>(z)};
    }
}

/// Grid of one group of n values at w[0], w[stride], ... (symmetric or asymmetric, Bits bits,
/// scale rounded to storage type S).
template <int Bits, grid Grid, class S, class T>
group_grid find_grid(const T* w, std::size_t n, std::size_t stride = 1) {
    double lo = 0, hi = 0;
    for (std::size_t i = 0; i < n; ++i) {
        const double v = static_cast<double>(w[i * stride]);
        lo = std::min(lo, v);
        hi = std::max(hi, v);
    }
    return grid_from_range<Bits, Grid, S>(lo, hi);
}

/// Integer level of w on grid g.
template <int Bits, grid Grid>
inline int quantize_level(double w, const group_grid& g) noexcept {
    if constexpr (Grid == grid::symmetric) {
        constexpr double qmax = (1 << (Bits - 1)) - 1;
        return static_cast<int>(std::clamp(detail::round_even(w / g.scale), -qmax, qmax));
    } else {
        constexpr double maxq = (1 << Bits) - 1;
        return static_cast<int>(std::clamp(detail::round_even(w / g.scale) + g.zero, 0.0, maxq));
    }
}

/// Value represented by level q on grid g.
inline double dequantize_level(int q, const group_grid& g) noexcept {
    return g.scale * static_cast<double>(q - g.zero);
}

/// Stores grid g as group `group` of row r of a packed matrix.
template <class F>
void store_grid(F& out, index_t r, index_t group, const group_grid& g) {
    out.set_scale(r, group, from_float<typename F::scale_type>(static_cast<float>(g.scale)));
    out.set_zero(r, group, g.zero);
}

}  // namespace kite::quant
