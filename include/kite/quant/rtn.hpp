#pragma once
/// @file kite/quant/rtn.hpp
/// Round-to-nearest methods, and the dense formats:
///
///   absmax<Bits, Group, Scale>      symmetric grid, scale = max|w| / (2^(Bits-1) - 1)
///   zero_point<Bits, Group, Scale>  asymmetric min-max grid with an integer zero point
///   dense<T>                        no quantization: float (f32) or kite::bf16 storage
///
/// Group is per_tensor, per_row (default) or 32 / 64 / 128 input columns; Scale is float or
/// kite::fp16. The grids are defined in kite/quant/grid.hpp.

#include <algorithm>
#include <type_traits>

#include "kite/core/matrix.hpp"
#include "kite/core/parallel.hpp"
#include "kite/core/validate.hpp"
#include "kite/quant/format.hpp"
#include "kite/quant/grid.hpp"

namespace kite::quant {

namespace detail {

inline void require_weights(matrix_view<const float> w, const char* method) {
    KITE_REQUIRE(w.rows() > 0 && w.cols() > 0, shape_error, method, ": W has shape ", w.rows(), " x ",
                 w.cols(), "; expected a non-empty [out_features][in_features] matrix");
    require_finite(w, "quantize: W");
}

/// Round-to-nearest quantization of W (float or double) into packed format F.
template <class F, class T>
F rtn_quantize(matrix_view<const T> w) {
    constexpr int B = F::bits;
    constexpr grid Z = F::grid_kind;
    using S = typename F::scale_type;
    const index_t m = w.rows(), k = w.cols();
    F out(m, k);
    if constexpr (F::group == per_tensor) {
        double lo = 0, hi = 0;
        for (index_t r = 0; r < m; ++r)
            for (const T v : w.row(r)) {
                lo = std::min(lo, static_cast<double>(v));
                hi = std::max(hi, static_cast<double>(v));
            }
        const group_grid g = grid_from_range<B, Z, S>(lo, hi);
        store_grid(out, 0, 0, g);
        parallel_for(0, m, [&](std::size_t r) {
            for (index_t c = 0; c < k; ++c) out.set_level(r, c, quantize_level<B, Z>(w(r, c), g));
        });
    } else {
        const index_t gc = out.group_cols();
        parallel_for(0, m, [&](std::size_t r) {
            const T* row = w.row(r).data();
            for (index_t gi = 0, c0 = 0; c0 < k; ++gi, c0 += gc) {
                const index_t n = std::min(gc, k - c0);
                const group_grid g = find_grid<B, Z, S>(row + c0, n);
                store_grid(out, r, gi, g);
                for (index_t c = c0; c < c0 + n; ++c) out.set_level(r, c, quantize_level<B, Z>(row[c], g));
            }
        });
    }
    return out;
}

}  // namespace detail

/// Round-to-nearest on a symmetric absmax grid (levels -qmax..qmax, qmax = 2^(Bits-1) - 1).
template <int Bits, int Group = per_row, class Scale = float>
struct absmax {
    using format = packed_weights<Bits, Group, grid::symmetric, Scale>;
    static constexpr const char* name = "absmax";
    /// Quantizes W [out][in]; throws invalid_argument on NaN or infinity.
    format quantize(matrix_view<const float> w) const {
        detail::require_weights(w, "absmax::quantize");
        return detail::rtn_quantize<format, float>(w);
    }
};

/// Round-to-nearest on an asymmetric min-max grid with an integer zero point.
template <int Bits, int Group = per_row, class Scale = float>
struct zero_point {
    using format = packed_weights<Bits, Group, grid::asymmetric, Scale>;
    static constexpr const char* name = "zero_point";
    /// Quantizes W [out][in]; throws invalid_argument on NaN or infinity.
    format quantize(matrix_view<const float> w) const {
        detail::require_weights(w, "zero_point::quantize");
        return detail::rtn_quantize<format, float>(w);
    }
};

/// No quantization: weights stored as T (float, or kite::bf16 rounded to nearest even).
template <class T>
struct dense {
    using format = dense_weights<T>;
    static constexpr const char* name = std::is_same_v<T, float> ? "f32" : "bf16";
    format quantize(matrix_view<const float> w) const {
        detail::require_weights(w, "dense::quantize");
        format out(w.rows(), w.cols());
        for (index_t r = 0; r < w.rows(); ++r)
            for (index_t c = 0; c < w.cols(); ++c) out.row(r)[c] = from_float<T>(w(r, c));
        return out;
    }
};

/// The float32 "format": dense<float>.
using f32 = dense<float>;

}  // namespace kite::quant
