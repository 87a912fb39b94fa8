#pragma once
/// @file kite/quant/ggml_types.hpp
/// ggml's tensor types (the block layouts GGUF files store), their sizes, and exact scalar
/// decoding of the types kite reads: F32, F16, BF16, Q8_0, Q4_0, Q4_1 (used as stored by
/// kite::quant::ggml_weights) and the K-quants Q4_K, Q5_K, Q6_K (decoded to float at load).
///
/// Block layouts (little-endian; fp16 = IEEE binary16, widened to float32 before any arithmetic;
/// element i of a block is q[i]):
///
///   Q8_0   34 B / 32:  d fp16 | qs int8[32]                y[i] = qs[i] * d
///   Q4_0   18 B / 32:  d fp16 | qs u8[16]                  y[j] = ((qs[j] & 15) - 8) * d,
///                                                          y[j + 16] = ((qs[j] >> 4) - 8) * d
///   Q4_1   20 B / 32:  d fp16 | m fp16 | qs u8[16]         y[j] = (qs[j] & 15) * d + m,
///                                                          y[j + 16] = (qs[j] >> 4) * d + m
///   Q4_K  144 B / 256: d, dmin fp16 | scales u8[12] | qs u8[128]: 8 sub-blocks of 32 with 6-bit
///                      scales sc and mins m; y = (d * sc) * q - (dmin * m)
///   Q5_K  176 B / 256: as Q4_K plus qh u8[32] holding each value's fifth bit
///   Q6_K  210 B / 256: ql u8[128] | qh u8[64] | scales int8[16] | d fp16; y = (d * sc) * (q - 32)
///
/// The decoders below reproduce ggml's dequantize_row_* (and the `gguf` package's NumPy port) to
/// the bit: each product and sum is one float32 operation in ggml's order (tests compare them
/// with the package's output on adversarial blocks: zero, subnormal, negative, infinite and NaN
/// scales).

#include <array>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <optional>
#include <span>
#include <string_view>

#include "kite/core/config.hpp"
#include "kite/core/error.hpp"
#include "kite/core/half.hpp"

namespace kite::quant::ggml {

/// ggml_type values (ggml.h); the numbers are what GGUF files store.
enum class type : std::uint32_t {
    f32 = 0, f16 = 1, q4_0 = 2, q4_1 = 3, q5_0 = 6, q5_1 = 7, q8_0 = 8, q8_1 = 9,
    q2_k = 10, q3_k = 11, q4_k = 12, q5_k = 13, q6_k = 14, q8_k = 15,
    iq2_xxs = 16, iq2_xs = 17, iq3_xxs = 18, iq1_s = 19, iq4_nl = 20, iq3_s = 21, iq2_s = 22,
    iq4_xs = 23, i8 = 24, i16 = 25, i32 = 26, i64 = 27, f64 = 28, iq1_m = 29, bf16 = 30,
    tq1_0 = 34, tq2_0 = 35, mxfp4 = 39, nvfp4 = 40, q1_0 = 41,
};

/// Elements per block, bytes per block and the name ggml prints.
struct type_info {
    type id;
    std::string_view name;
    std::uint32_t block_elems;
    std::uint32_t block_bytes;
};

inline constexpr std::array<type_info, 34> type_table{{
    {type::f32, "F32", 1, 4},          {type::f16, "F16", 1, 2},          {type::q4_0, "Q4_0", 32, 18},
    {type::q4_1, "Q4_1", 32, 20},      {type::q5_0, "Q5_0", 32, 22},      {type::q5_1, "Q5_1", 32, 24},
    {type::q8_0, "Q8_0", 32, 34},      {type::q8_1, "Q8_1", 32, 40},      {type::q2_k, "Q2_K", 256, 84},
    {type::q3_k, "Q3_K", 256, 110},    {type::q4_k, "Q4_K", 256, 144},    {type::q5_k, "Q5_K", 256, 176},
    {type::q6_k, "Q6_K", 256, 210},    {type::q8_k, "Q8_K", 256, 292},    {type::iq2_xxs, "IQ2_XXS", 256, 66},
    {type::iq2_xs, "IQ2_XS", 256, 74}, {type::iq3_xxs, "IQ3_XXS", 256, 98}, {type::iq1_s, "IQ1_S", 256, 50},
    {type::iq4_nl, "IQ4_NL", 32, 18},  {type::iq3_s, "IQ3_S", 256, 110},  {type::iq2_s, "IQ2_S", 256, 82},
    {type::iq4_xs, "IQ4_XS", 256, 136}, {type::i8, "I8", 1, 1},          {type::i16, "I16", 1, 2},
    {type::i32, "I32", 1, 4},          {type::i64, "I64", 1, 8},          {type::f64, "F64", 1, 8},
    {type::iq1_m, "IQ1_M", 256, 56},   {type::bf16, "BF16", 1, 2},        {type::tq1_0, "TQ1_0", 256, 54},
    {type::tq2_0, "TQ2_0", 256, 66},   {type::mxfp4, "MXFP4", 32, 17},    {type::nvfp4, "NVFP4", 64, 36},
    {type::q1_0, "Q1_0", 128, 18},
}};

/// The table entry of a type id read from a file, or nullopt for an id ggml does not define.
inline std::optional<type_info> info(std::uint32_t id) noexcept {
    for (const auto& t : type_table)
        if (static_cast<std::uint32_t>(t.id) == id) return t;
    return std::nullopt;
}
inline type_info info(type t) noexcept { return *info(static_cast<std::uint32_t>(t)); }
inline std::string_view name(type t) noexcept { return info(t).name; }

/// Types whose blocks kite multiplies as stored (ggml_weights).
constexpr bool native(type t) noexcept {
    return t == type::f32 || t == type::f16 || t == type::bf16 || t == type::q8_0 || t == type::q4_0 ||
           t == type::q4_1;
}
/// Types kite decodes exactly to float (native ones and the K-quants Q4_K, Q5_K, Q6_K).
constexpr bool decodable(type t) noexcept {
    return native(t) || t == type::q4_k || t == type::q5_k || t == type::q6_k;
}

/// Bytes of a row of `n` elements of type t (n a multiple of the block size).
inline std::size_t row_bytes(type t, std::size_t n) noexcept {
    const auto i = info(t);
    return n / i.block_elems * i.block_bytes;
}

namespace detail {

inline float f16_at(const std::uint8_t* p) noexcept {
    std::uint16_t h;
    std::memcpy(&h, p, 2);
    return kite::detail::fp16_bits_to_float(h);
}

// ggml's get_scale_min_k4: the 6-bit scale and min of sub-block j from the 12 packed bytes.
inline void scale_min_k4(int j, const std::uint8_t* q, std::uint8_t& d, std::uint8_t& m) noexcept {
    if (j < 4) {
        d = q[j] & 63;
        m = q[j + 4] & 63;
    } else {
        d = static_cast<std::uint8_t>((q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4));
        m = static_cast<std::uint8_t>((q[j + 4] >> 4) | ((q[j] >> 6) << 4));
    }
}

// Every product and sum below is one float32 operation in ggml's order; without this pragma
// GCC's default -ffp-contract=fast would fuse some of them into FMAs and change the last bit.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC push_options
#pragma GCC optimize("fp-contract=off")
#endif

inline void decode_q8_0(const std::uint8_t* b, float* y) noexcept {
    const float d = f16_at(b);
    for (int i = 0; i < 32; ++i) y[i] = static_cast<float>(static_cast<std::int8_t>(b[2 + i])) * d;
}
inline void decode_q4_0(const std::uint8_t* b, float* y) noexcept {
    const float d = f16_at(b);
    for (int j = 0; j < 16; ++j) {
        y[j] = static_cast<float>((b[2 + j] & 15) - 8) * d;
        y[j + 16] = static_cast<float>((b[2 + j] >> 4) - 8) * d;
    }
}
inline void decode_q4_1(const std::uint8_t* b, float* y) noexcept {
    const float d = f16_at(b), m = f16_at(b + 2);
    for (int j = 0; j < 16; ++j) {
        y[j] = static_cast<float>(b[4 + j] & 15) * d + m;
        y[j + 16] = static_cast<float>(b[4 + j] >> 4) * d + m;
    }
}
inline void decode_q4_k(const std::uint8_t* b, float* y) noexcept {
    const float d = f16_at(b), dmin = f16_at(b + 2);
    const std::uint8_t* scales = b + 4;
    const std::uint8_t* q = b + 16;
    for (int c = 0; c < 4; ++c) {  // 64 values per chunk: low nibbles, then high nibbles
        std::uint8_t sc, m;
        scale_min_k4(2 * c, scales, sc, m);
        const float d1 = d * static_cast<float>(sc), m1 = dmin * static_cast<float>(m);
        scale_min_k4(2 * c + 1, scales, sc, m);
        const float d2 = d * static_cast<float>(sc), m2 = dmin * static_cast<float>(m);
        for (int l = 0; l < 32; ++l) y[l] = d1 * static_cast<float>(q[l] & 0xF) - m1;
        for (int l = 0; l < 32; ++l) y[32 + l] = d2 * static_cast<float>(q[l] >> 4) - m2;
        q += 32;
        y += 64;
    }
}
inline void decode_q5_k(const std::uint8_t* b, float* y) noexcept {
    const float d = f16_at(b), dmin = f16_at(b + 2);
    const std::uint8_t* scales = b + 4;
    const std::uint8_t* qh = b + 16;
    const std::uint8_t* ql = b + 48;
    std::uint8_t u1 = 1, u2 = 2;
    for (int c = 0; c < 4; ++c) {
        std::uint8_t sc, m;
        scale_min_k4(2 * c, scales, sc, m);
        const float d1 = d * static_cast<float>(sc), m1 = dmin * static_cast<float>(m);
        scale_min_k4(2 * c + 1, scales, sc, m);
        const float d2 = d * static_cast<float>(sc), m2 = dmin * static_cast<float>(m);
        for (int l = 0; l < 32; ++l)
            y[l] = d1 * static_cast<float>((ql[l] & 0xF) + ((qh[l] & u1) ? 16 : 0)) - m1;
        for (int l = 0; l < 32; ++l)
            y[32 + l] = d2 * static_cast<float>((ql[l] >> 4) + ((qh[l] & u2) ? 16 : 0)) - m2;
        ql += 32;
        y += 64;
        u1 = static_cast<std::uint8_t>(u1 << 2);
        u2 = static_cast<std::uint8_t>(u2 << 2);
    }
}
inline void decode_q6_k(const std::uint8_t* b, float* y) noexcept {
    const std::uint8_t* ql = b;
    const std::uint8_t* qh = b + 128;
    const auto* sc = reinterpret_cast<const std::int8_t*>(b + 192);
    const float d = f16_at(b + 208);
    for (int h = 0; h < 2; ++h) {
        for (int l = 0; l < 32; ++l) {
            const int is = l / 16;
            const int q1 = static_cast<int>((ql[l] & 0xF) | (((qh[l] >> 0) & 3) << 4)) - 32;
            const int q2 = static_cast<int>((ql[l + 32] & 0xF) | (((qh[l] >> 2) & 3) << 4)) - 32;
            const int q3 = static_cast<int>((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32;
            const int q4 = static_cast<int>((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) - 32;
            y[l] = d * static_cast<float>(sc[is + 0]) * static_cast<float>(q1);
            y[l + 32] = d * static_cast<float>(sc[is + 2]) * static_cast<float>(q2);
            y[l + 64] = d * static_cast<float>(sc[is + 4]) * static_cast<float>(q3);
            y[l + 96] = d * static_cast<float>(sc[is + 6]) * static_cast<float>(q4);
        }
        y += 128;
        ql += 64;
        qh += 32;
        sc += 8;
    }
}

#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC pop_options
#endif

}  // namespace detail

/// Decodes `n` elements of type t starting at `src` (n a multiple of the block size) into
/// float: the exact values ggml's dequantize_row_* gives. Throws kite::invalid_argument for a
/// type kite does not decode or an n that is not a whole number of blocks.
inline void decode_row(type t, const std::byte* src, float* dst, std::size_t n) {
    const auto ti = info(t);
    KITE_REQUIRE(decodable(t), invalid_argument, "ggml: tensor type ", ti.name,
                 " is not supported; kite reads F32, F16, BF16, Q8_0, Q4_0, Q4_1, Q4_K, Q5_K and Q6_K");
    KITE_REQUIRE(n % ti.block_elems == 0, invalid_argument, "ggml: ", n, " elements of ", ti.name,
                 " are not a whole number of blocks of ", ti.block_elems);
    const auto* b = reinterpret_cast<const std::uint8_t*>(src);
    const std::size_t blocks = n / ti.block_elems;
    switch (t) {
        case type::f32:
            std::memcpy(dst, src, n * sizeof(float));
            return;
        case type::f16:
            for (std::size_t i = 0; i < n; ++i) dst[i] = detail::f16_at(b + 2 * i);
            return;
        case type::bf16:
            for (std::size_t i = 0; i < n; ++i) {
                std::uint16_t h;
                std::memcpy(&h, b + 2 * i, 2);
                dst[i] = kite::detail::bf16_bits_to_float(h);
            }
            return;
        case type::q8_0:
            for (std::size_t k = 0; k < blocks; ++k) detail::decode_q8_0(b + 34 * k, dst + 32 * k);
            return;
        case type::q4_0:
            for (std::size_t k = 0; k < blocks; ++k) detail::decode_q4_0(b + 18 * k, dst + 32 * k);
            return;
        case type::q4_1:
            for (std::size_t k = 0; k < blocks; ++k) detail::decode_q4_1(b + 20 * k, dst + 32 * k);
            return;
        case type::q4_k:
            for (std::size_t k = 0; k < blocks; ++k) detail::decode_q4_k(b + 144 * k, dst + 256 * k);
            return;
        case type::q5_k:
            for (std::size_t k = 0; k < blocks; ++k) detail::decode_q5_k(b + 176 * k, dst + 256 * k);
            return;
        case type::q6_k:
            for (std::size_t k = 0; k < blocks; ++k) detail::decode_q6_k(b + 210 * k, dst + 256 * k);
            return;
        default:
            return;  // unreachable: decodable() checked above
    }
}

}  // namespace kite::quant::ggml
