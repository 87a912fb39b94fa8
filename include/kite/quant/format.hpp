#pragma once
/// @file kite/quant/format.hpp
/// packed_weights<Bits, Group, Grid, Scale>: a quantized weight matrix W [out_features][in_features]
/// (row-major, like torch.nn.Linear and llama2.c; the layer computes y = W x).
///
/// Layout, version 1 (packed_weights::layout_version; kite/quant/serialize.hpp stores it on disk):
///
///   codes   [rows][row_bytes] bytes. Columns are packed in blocks of block_cols columns that
///           occupy 64 bytes (one cache line); row_bytes = 64 * ceil(cols / block_cols), so every
///           row starts on a 64-byte boundary and the padding past `cols` holds code 0.
///            - Bits = 8: block_cols = 64; byte c holds column c.
///                symmetric:  the byte is a two's-complement int8 level q in [-127, 127];
///                asymmetric: the byte is an unsigned level q in [0, 255].
///            - Bits = 4: block_cols = 128; viewing a block as 16 little-endian 32-bit words,
///              bits 4t..4t+3 of word j hold column 16t + j (t = 0..7, j = 0..15). One 64-byte
///              load then yields, after a shift by 4t, the 16 consecutive columns 16t..16t+15 in
///              the low nibbles of the 16 lanes, which an in-register table lookup (vpermps)
///              turns into floats.
///                symmetric:  the nibble holds q + 8 for a level q in [-7, 7] (offset binary);
///                asymmetric: the nibble is an unsigned level q in [0, 15].
///   scales  [scale_rows][groups_per_row] of Scale (float or kite::fp16). Group g of a row covers
///           columns [g * G, min((g + 1) * G, cols)). Group = per_row: one scale per row;
///           Group = per_tensor: a single scale (scale_rows = 1).
///   zeros   asymmetric grids only: [scale_rows][groups_per_row] bytes, the integer zero point z.
///
///   weight(r, c) = scale(r, g) * float(q(r, c) - z(r, g)),  g = c / G,  z = 0 for symmetric
///   grids (one rounding: every kernel and dequantize() produce exactly this float).
///
/// Thread safety: const member functions may be called from many threads; mutation needs
/// external exclusion.

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <span>
#include <type_traits>

#include "kite/core/buffer.hpp"
#include "kite/core/config.hpp"
#include "kite/core/error.hpp"
#include "kite/core/half.hpp"
#include "kite/core/matrix.hpp"

namespace kite::quant {

/// Group template argument: one scale (and zero) per output row.
inline constexpr int per_row = 0;
/// Group template argument: one scale (and zero) for the whole matrix.
inline constexpr int per_tensor = -1;

/// Quantization grid: symmetric around zero (absmax) or with an integer zero point (min-max).
enum class grid : std::uint8_t { symmetric = 0, asymmetric = 1 };

namespace detail {
template <int Bits>
inline constexpr bool valid_bits = Bits == 4 || Bits == 8;
template <int G>
inline constexpr bool valid_group = G == per_row || G == per_tensor || G == 32 || G == 64 || G == 128;
template <class S>
inline constexpr bool valid_scale = std::is_same_v<S, float> || std::is_same_v<S, fp16>;

/// Scalar type code used on disk and in messages.
template <class S>
inline constexpr std::uint32_t scale_code = std::is_same_v<S, float> ? 0u : 1u;

inline constexpr index_t round_up(index_t n, index_t m) noexcept { return (n + m - 1) / m * m; }
}  // namespace detail

/// A quantized matrix: integer levels packed Bits per value, with scales per tensor, per row or
/// per group of Group input columns. See the file comment for the byte layout.
template <int Bits, int Group = per_row, grid Grid = grid::symmetric, class Scale = float>
class packed_weights {
    static_assert(detail::valid_bits<Bits>, "packed_weights: Bits must be 4 or 8");
    static_assert(detail::valid_group<Group>,
                  "packed_weights: Group must be per_row, per_tensor, 32, 64 or 128");
    static_assert(detail::valid_scale<Scale>, "packed_weights: Scale must be float or kite::fp16");

public:
    static constexpr int bits = Bits;
    static constexpr int group = Group;
    static constexpr grid grid_kind = Grid;
    static constexpr bool has_zeros = Grid == grid::asymmetric;
    /// Version of the byte layout described in the file comment.
    static constexpr std::uint32_t layout_version = 1;
    /// Columns per 64-byte code block.
    static constexpr index_t block_cols = Bits == 4 ? 128 : 64;
    /// Range of the integer levels q.
    static constexpr int min_level = Grid == grid::asymmetric ? 0 : -((1 << (Bits - 1)) - 1);
    static constexpr int max_level = Grid == grid::asymmetric ? (1 << Bits) - 1 : (1 << (Bits - 1)) - 1;
    using scale_type = Scale;

    packed_weights() = default;
    /// Storage for a rows x cols matrix; all levels, scales and zeros are zero.
    packed_weights(index_t rows, index_t cols)
        : rows_(rows), cols_(cols),
          codes_(rows * row_bytes_for(cols)),
          scales_(scale_rows_for(rows) * groups_for(cols)),
          zeros_(has_zeros ? scale_rows_for(rows) * groups_for(cols) : 0) {}

    packed_weights(packed_weights&&) noexcept = default;
    packed_weights& operator=(packed_weights&&) noexcept = default;
    /// A deep copy (explicit, because weights are large).
    packed_weights clone() const {
        packed_weights r;
        r.rows_ = rows_;
        r.cols_ = cols_;
        r.codes_ = codes_.clone();
        r.scales_ = scales_.clone();
        r.zeros_ = zeros_.clone();
        return r;
    }

    index_t rows() const noexcept { return rows_; }
    index_t cols() const noexcept { return cols_; }
    /// Bytes of codes per row (a multiple of 64).
    index_t row_bytes() const noexcept { return row_bytes_for(cols_); }
    /// Scale groups per row: ceil(cols / Group), or 1 for per_row and per_tensor.
    index_t groups_per_row() const noexcept { return groups_for(cols_); }
    /// Columns covered by one group (the whole row for per_row and per_tensor).
    index_t group_cols() const noexcept { return Group > 0 ? index_t(Group) : cols_; }
    /// Rows of the scale and zero tables (1 for per_tensor).
    index_t scale_rows() const noexcept { return scale_rows_for(rows_); }
    /// Storage footprint in bytes: codes, scales and zeros.
    std::size_t bytes() const noexcept {
        return codes_.size_bytes() + scales_.size_bytes() + zeros_.size_bytes();
    }

    /// Codes of row r: row_bytes() bytes.
    const std::uint8_t* row_codes(index_t r) const noexcept { return codes_.data() + r * row_bytes(); }
    std::uint8_t* row_codes(index_t r) noexcept { return codes_.data() + r * row_bytes(); }
    std::span<const std::uint8_t> codes() const noexcept { return codes_.span(); }
    std::span<std::uint8_t> codes() noexcept { return codes_.span(); }
    std::span<const Scale> scales() const noexcept { return scales_.span(); }
    std::span<Scale> scales() noexcept { return scales_.span(); }
    /// Zero points (empty for symmetric grids).
    std::span<const std::uint8_t> zeros() const noexcept { return zeros_.span(); }
    std::span<std::uint8_t> zeros() noexcept { return zeros_.span(); }

    /// Index into scales()/zeros() of group g of row r.
    index_t scale_index(index_t r, index_t g) const noexcept {
        return Group == per_tensor ? 0 : r * groups_per_row() + g;
    }
    float scale(index_t r, index_t g) const noexcept { return to_float(scales_[scale_index(r, g)]); }
    void set_scale(index_t r, index_t g, Scale s) noexcept { scales_[scale_index(r, g)] = s; }
    /// Zero point of group g of row r (0 for symmetric grids).
    int zero(index_t r, index_t g) const noexcept {
        if constexpr (has_zeros) {
            return zeros_[scale_index(r, g)];
        } else {
            (void)r;
            (void)g;
            return 0;
        }
    }
    void set_zero(index_t r, index_t g, int z) noexcept {
        if constexpr (has_zeros) zeros_[scale_index(r, g)] = static_cast<std::uint8_t>(z);
    }

    /// Integer level q of element (r, c).
    int level(index_t r, index_t c) const noexcept { return level_in(row_codes(r), c); }
    /// Sets the level of element (r, c); q must lie in [min_level, max_level].
    void set_level(index_t r, index_t c, int q) noexcept {
        std::uint8_t* row = row_codes(r);
        if constexpr (Bits == 8) {
            row[c] = static_cast<std::uint8_t>(q);
        } else {
            const unsigned nib = static_cast<unsigned>(Grid == grid::symmetric ? q + 8 : q) & 0xfu;
            std::uint8_t& b = row[nibble_byte(c)];
            if (((c / 16) & 1) == 0) {
                b = static_cast<std::uint8_t>((b & 0xf0u) | nib);
            } else {
                b = static_cast<std::uint8_t>((b & 0x0fu) | (nib << 4));
            }
        }
    }
    /// Dequantized value of element (r, c).
    float value(index_t r, index_t c) const noexcept {
        index_t g = 0;
        if constexpr (Group > 0) g = c / index_t(Group);
        return scale(r, g) * static_cast<float>(level(r, c) - zero(r, g));
    }

    /// Level of column c in a row of codes.
    static int level_in(const std::uint8_t* row, index_t c) noexcept {
        if constexpr (Bits == 8) {
            if constexpr (Grid == grid::symmetric) {
                return static_cast<std::int8_t>(row[c]);
            } else {
                return row[c];
            }
        } else {
            const std::uint8_t b = row[nibble_byte(c)];
            const int nib = ((c / 16) & 1) == 0 ? (b & 0xf) : (b >> 4);
            return Grid == grid::symmetric ? nib - 8 : nib;
        }
    }

    /// Byte of a 4-bit row holding column c: block c / 128, word j = c % 16, nibble t = c % 128 / 16
    /// (the low nibble of its byte when t is even).
    static constexpr index_t nibble_byte(index_t c) noexcept {
        return (c / 128) * 64 + (c % 16) * 4 + (c % 128) / 32;
    }
    static constexpr index_t row_bytes_for(index_t cols) noexcept {
        return detail::round_up(cols, block_cols) * Bits / 8;
    }
    static constexpr index_t groups_for(index_t cols) noexcept {
        if constexpr (Group > 0) {
            return (cols + Group - 1) / Group;
        } else {
            return 1;
        }
    }
    static constexpr index_t scale_rows_for(index_t rows) noexcept {
        return Group == per_tensor ? 1 : rows;
    }

private:
    index_t rows_ = 0;
    index_t cols_ = 0;
    aligned_buffer<std::uint8_t> codes_;  // [rows][row_bytes]
    aligned_buffer<Scale> scales_;        // [scale_rows][groups_per_row]
    aligned_buffer<std::uint8_t> zeros_;  // [scale_rows][groups_per_row], asymmetric only
};

/// True for every packed_weights specialization.
template <class T>
inline constexpr bool is_packed_weights = false;
template <int B, int G, grid Z, class S>
inline constexpr bool is_packed_weights<packed_weights<B, G, Z, S>> = true;

/// Dense (unquantized) weights stored as T (float or kite::bf16): the f32 and bf16 formats.
template <class T>
class dense_weights {
    static_assert(std::is_same_v<T, float> || std::is_same_v<T, bf16>,
                  "dense_weights: T must be float or kite::bf16");

public:
    using value_type = T;

    dense_weights() = default;
    dense_weights(index_t rows, index_t cols) : w_(rows, cols) {}
    dense_weights(dense_weights&&) noexcept = default;
    dense_weights& operator=(dense_weights&&) noexcept = default;
    dense_weights clone() const {
        dense_weights r;
        r.w_ = w_.clone();
        return r;
    }

    index_t rows() const noexcept { return w_.rows(); }
    index_t cols() const noexcept { return w_.cols(); }
    std::size_t bytes() const noexcept { return w_.size() * sizeof(T); }
    const T* row(index_t r) const noexcept { return w_.row(r).data(); }
    T* row(index_t r) noexcept { return w_.row(r).data(); }
    float value(index_t r, index_t c) const noexcept { return to_float(w_(r, c)); }
    matrix_view<const T> view() const noexcept { return w_.view(); }
    matrix_view<T> view() noexcept { return w_.view(); }

private:
    matrix<T> w_;  // [out_features][in_features]
};

}  // namespace kite::quant
