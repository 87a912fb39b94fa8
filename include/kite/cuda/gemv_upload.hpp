#pragma once
/// @file kite/cuda/gemv_upload.hpp
/// device_matrix: a weight matrix uploaded once to device memory in the layout kite::cuda::gemv
/// reads, and upload() from each host format kite stores. Host-only C++ (any compiler).
///
///   auto w = kite::cuda::upload(kite::quant::absmax<4, 128, kite::fp16>{}.quantize(W));
///   kite::cuda::gemv(w.view(), x, y, batch);                    // y [batch][rows] = x W^T
///
/// Device layouts (gemv_weights fields):
///   f32, bf16    codes [rows][row_bytes], rows zero-padded to a multiple of 64 bytes
///   int8_rows    packed_weights<8, per_row> as stored: codes [rows][row_bytes], scales float [rows]
///   int4_g128    packed_weights<4, 128, Z, S> as stored: codes [rows][row_bytes] (nibble-interleaved
///                64-byte blocks), scales [rows][ceil(cols / 128)] float or fp16, zeros (asymmetric)
///                [rows][ceil(cols / 128)] bytes
///   q4_0, q8_0   GGUF blocks split in two arrays so that every row is 16-byte aligned: codes
///                [rows][cols / 32][16 or 32] (each block's qs bytes, in order), scales
///                [rows][cols / 32] fp16 (each block's d)
///   q4_1         as q4_0, scales [rows][cols / 32][2] fp16 (each block's d, m)
/// The values are the bytes of the host format, so every dequantized weight is the CPU's float.

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <limits>
#include <span>
#include <type_traits>
#include <vector>

#include "kite/core/error.hpp"
#include "kite/core/half.hpp"
#include "kite/core/matrix.hpp"
#include "kite/cuda/gemv.hpp"
#include "kite/cuda/runtime.hpp"
#include "kite/quant/format.hpp"
#include "kite/quant/ggml.hpp"

namespace kite::cuda {

/// A weight matrix in device memory (owns its buffers) and the gemv_weights view of it.
/// Move-only; the view stays valid across moves.
class device_matrix {
public:
    device_matrix() = default;
    /// Uploads a matrix already in a device layout (see the file comment): `codes` holds
    /// rows x row_bytes bytes; `scales` and `zeros` the raw bytes of their arrays (may be empty).
    device_matrix(weight_format f, index_t rows, index_t cols, std::size_t row_bytes, std::span<const std::uint8_t> codes,
                  std::span<const std::uint8_t> scales = {}, std::span<const std::uint8_t> zeros = {},
                  bool scales_fp16 = false) {
        constexpr auto lim = static_cast<index_t>(std::numeric_limits<int>::max());
        KITE_REQUIRE(rows >= 1 && cols >= 1 && rows <= lim && cols <= lim, invalid_argument, "cuda::device_matrix: ",
                     rows, " x ", cols, "; expected 1 .. 2^31 - 1 rows and columns");
        KITE_REQUIRE(codes.size() == rows * row_bytes, invalid_argument, "cuda::device_matrix: ", codes.size(),
                     " code bytes; expected rows x row_bytes = ", rows * row_bytes);
        codes_ = device_buffer<std::uint8_t>(codes);
        if (!scales.empty()) scales_ = device_buffer<std::uint8_t>(scales);
        if (!zeros.empty()) zeros_ = device_buffer<std::uint8_t>(zeros);
        view_.format = f;
        view_.rows = static_cast<int>(rows);
        view_.cols = static_cast<int>(cols);
        view_.row_bytes = row_bytes;
        view_.codes = codes_.data();
        view_.scales = scales_.empty() ? nullptr : scales_.data();
        view_.scales_fp16 = scales_fp16;
        view_.zeros = zeros_.empty() ? nullptr : zeros_.data();
    }

    /// The non-owning view gemv() takes.
    const gemv_weights& view() const noexcept { return view_; }
    operator const gemv_weights&() const noexcept { return view_; }
    weight_format format() const noexcept { return view_.format; }
    int rows() const noexcept { return view_.rows; }
    int cols() const noexcept { return view_.cols; }
    bool empty() const noexcept { return codes_.empty(); }
    /// Device bytes of codes, scales and zeros (what one gemv call streams).
    std::size_t bytes() const noexcept { return codes_.bytes() + scales_.bytes() + zeros_.bytes(); }

private:
    device_buffer<std::uint8_t> codes_, scales_, zeros_;
    gemv_weights view_;
};

namespace detail {

inline std::size_t round_up_bytes(std::size_t n, std::size_t m) noexcept { return (n + m - 1) / m * m; }

template <class T>
std::span<const std::uint8_t> as_bytes_of(std::span<const T> s) noexcept {
    return {reinterpret_cast<const std::uint8_t*>(s.data()), s.size_bytes()};
}

/// Dense rows (float or bf16 bits per element) padded to 64 bytes.
template <class T, class Get>
device_matrix upload_dense(weight_format f, index_t rows, index_t cols, Get get) {
    const std::size_t rb = round_up_bytes(cols * sizeof(T), 64);
    std::vector<std::uint8_t> codes(rows * rb, 0);
    for (index_t r = 0; r < rows; ++r)
        for (index_t c = 0; c < cols; ++c) {
            const T v = get(r, c);
            std::memcpy(codes.data() + r * rb + c * sizeof(T), &v, sizeof(T));
        }
    return device_matrix(f, rows, cols, rb, codes);
}

}  // namespace detail

/// Dense float weights W [out][in] as f32, or rounded (to nearest even) to bf16.
inline device_matrix upload(matrix_view<const float> w, weight_format f = weight_format::f32) {
    KITE_REQUIRE(f == weight_format::f32 || f == weight_format::bf16, invalid_argument, "cuda::upload: format ",
                 weight_format_name(f), " from float weights; expected f32 or bf16 (quantize on the host first)");
    KITE_REQUIRE(w.rows() >= 1 && w.cols() >= 1, invalid_argument, "cuda::upload: W is ", w.rows(), " x ", w.cols(),
                 "; expected a non-empty matrix");
    if (f == weight_format::f32)
        return detail::upload_dense<float>(f, w.rows(), w.cols(), [&](index_t r, index_t c) { return w(r, c); });
    return detail::upload_dense<std::uint16_t>(f, w.rows(), w.cols(),
                                               [&](index_t r, index_t c) { return bf16(w(r, c)).bits; });
}
inline device_matrix upload(const matrix<float>& w, weight_format f = weight_format::f32) { return upload(w.view(), f); }

/// kite::quant::dense<float> / dense<bf16> weights (f32 / bf16).
inline device_matrix upload(const quant::dense_weights<float>& w) { return upload(w.view(), weight_format::f32); }
inline device_matrix upload(const quant::dense_weights<bf16>& w) {
    KITE_REQUIRE(w.rows() >= 1 && w.cols() >= 1, invalid_argument, "cuda::upload: W is ", w.rows(), " x ", w.cols(),
                 "; expected a non-empty matrix");
    return detail::upload_dense<std::uint16_t>(weight_format::bf16, w.rows(), w.cols(),
                                               [&](index_t r, index_t c) { return w.row(r)[c].bits; });
}

/// int8 levels with one float scale per row (kite::quant::absmax<8>): int8_rows, bytes as stored.
inline device_matrix upload(const quant::packed_weights<8, quant::per_row, quant::grid::symmetric, float>& w) {
    KITE_REQUIRE(w.rows() >= 1 && w.cols() >= 1, invalid_argument, "cuda::upload: W is ", w.rows(), " x ", w.cols(),
                 "; expected a non-empty matrix");
    return device_matrix(weight_format::int8_rows, w.rows(), w.cols(), w.row_bytes(), w.codes(),
                         detail::as_bytes_of(w.scales()));
}

/// int4 levels in groups of 128 columns (kite::quant::absmax<4, 128> / zero_point<4, 128>, float
/// or fp16 scales): int4_g128, bytes as stored.
template <quant::grid Z, class S>
device_matrix upload(const quant::packed_weights<4, 128, Z, S>& w) {
    KITE_REQUIRE(w.rows() >= 1 && w.cols() >= 1, invalid_argument, "cuda::upload: W is ", w.rows(), " x ", w.cols(),
                 "; expected a non-empty matrix");
    return device_matrix(weight_format::int4_g128, w.rows(), w.cols(), w.row_bytes(), w.codes(),
                         detail::as_bytes_of(w.scales()), w.zeros(), std::is_same_v<S, fp16>);
}

/// GGUF weights (kite::quant::ggml_weights) of type Q4_0, Q4_1 or Q8_0 (every part the same type):
/// the blocks' qs bytes and scales split into the arrays of the file comment.
inline device_matrix upload(const quant::ggml_weights& w) {
    namespace gg = quant::ggml;
    KITE_REQUIRE(w.rows() >= 1 && w.cols() >= 1 && !w.segments().empty(), invalid_argument, "cuda::upload: W is ",
                 w.rows(), " x ", w.cols(), "; expected a non-empty matrix");
    const gg::type t = w.segments().front().type;
    KITE_REQUIRE(t == gg::type::q4_0 || t == gg::type::q4_1 || t == gg::type::q8_0, invalid_argument,
                 "cuda::upload: GGUF type ", gg::name(t), "; expected Q4_0, Q4_1 or Q8_0");
    for (const auto& s : w.segments())
        KITE_REQUIRE(s.type == t, invalid_argument, "cuda::upload: GGUF parts of types ", gg::name(t), " and ",
                     gg::name(s.type), "; expected one type (upload the parts separately)");
    const weight_format f = t == gg::type::q4_0 ? weight_format::q4_0
                            : t == gg::type::q4_1 ? weight_format::q4_1
                                                  : weight_format::q8_0;
    const std::size_t qs = t == gg::type::q8_0 ? 32 : 16;    // code bytes per block
    const std::size_t hdr = t == gg::type::q4_1 ? 4 : 2;     // d (and m) bytes per block
    const std::size_t bb = gg::info(t).block_bytes;          // hdr + qs
    const std::size_t nb = w.cols() / 32;                    // blocks per row
    const std::size_t rb = nb * qs;
    std::vector<std::uint8_t> codes(w.rows() * rb), scales(w.rows() * nb * hdr);
    index_t r0 = 0;
    for (const auto& s : w.segments()) {
        for (index_t lr = 0; lr < s.rows; ++lr) {
            const auto* src = reinterpret_cast<const std::uint8_t*>(s.data) + lr * s.row_bytes;
            const index_t r = r0 + lr;
            for (std::size_t b = 0; b < nb; ++b) {
                std::memcpy(scales.data() + (r * nb + b) * hdr, src + b * bb, hdr);
                std::memcpy(codes.data() + r * rb + b * qs, src + b * bb + hdr, qs);
            }
        }
        r0 += s.rows;
    }
    return device_matrix(f, w.rows(), w.cols(), rb, codes, scales, {}, true);
}

}  // namespace kite::cuda
