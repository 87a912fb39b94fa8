#pragma once
/// @file kite/core/half.hpp
/// bf16 and fp16 storage types with round-to-nearest-even conversion from float, bit-exact with
/// PyTorch's `tensor.to(torch.bfloat16)` / `.to(torch.float16)` (checked on a fixture).
/// They are storage formats: arithmetic happens in float after conversion.

#include <bit>
#include <cstdint>
#include <cstring>
#include <span>

#include "kite/core/config.hpp"
#include "kite/core/error.hpp"

namespace kite {

namespace detail {

KITE_FORCE_INLINE constexpr std::uint16_t float_to_bf16_bits(float f) noexcept {
    const std::uint32_t x = std::bit_cast<std::uint32_t>(f);
    // Any NaN becomes 0xFFFF, as PyTorch's tensor conversion `.to(torch.bfloat16)` does.
    if ((x & 0x7fffffffu) > 0x7f800000u) return 0xffff;
    const std::uint32_t rounding_bias = 0x7fffu + ((x >> 16) & 1u);
    return static_cast<std::uint16_t>((x + rounding_bias) >> 16);
}

KITE_FORCE_INLINE constexpr float bf16_bits_to_float(std::uint16_t h) noexcept {
    return std::bit_cast<float>(static_cast<std::uint32_t>(h) << 16);
}

KITE_FORCE_INLINE constexpr std::uint16_t float_to_fp16_bits(float f) noexcept {
    const std::uint32_t x = std::bit_cast<std::uint32_t>(f);
    const std::uint16_t sign = static_cast<std::uint16_t>((x >> 16) & 0x8000u);
    const std::uint32_t a = x & 0x7fffffffu;
    if (a >= 0x7f800000u) {
        // inf stays inf; a NaN is quieted and keeps its sign and the top 9 payload bits, as the
        // F16C instruction (and so PyTorch's tensor conversion) does.
        if (a == 0x7f800000u) return static_cast<std::uint16_t>(sign | 0x7c00u);
        return static_cast<std::uint16_t>(sign | 0x7e00u | ((a >> 13) & 0x3ffu));
    }
    const std::uint32_t e = a >> 23;  // biased float exponent
    if (e >= 143) return static_cast<std::uint16_t>(sign | 0x7c00u);  // >= 2^16: overflow
    if (e < 113) {
        // Result is a half subnormal (or zero): value = m * 2^-24.
        const std::uint32_t shift = 126 - e;  // >= 14
        if (shift > 24) return sign;
        const std::uint32_t mant = (a & 0x7fffffu) | 0x800000u;
        std::uint32_t r = mant >> shift;
        const std::uint32_t rem = mant & ((1u << shift) - 1u);
        const std::uint32_t half = 1u << (shift - 1);
        if (rem > half || (rem == half && (r & 1u))) ++r;
        return static_cast<std::uint16_t>(sign | r);
    }
    std::uint32_t r = ((e - 112) << 10) | ((a >> 13) & 0x3ffu);
    const std::uint32_t rem = a & 0x1fffu;
    if (rem > 0x1000u || (rem == 0x1000u && (r & 1u))) ++r;  // carry may reach inf: correct
    return static_cast<std::uint16_t>(sign | r);
}

KITE_FORCE_INLINE constexpr float fp16_bits_to_float(std::uint16_t h) noexcept {
    const std::uint32_t sign = static_cast<std::uint32_t>(h & 0x8000u) << 16;
    const std::uint32_t e = (h >> 10) & 0x1fu;
    std::uint32_t m = h & 0x3ffu;
    if (e == 0x1f) return std::bit_cast<float>(sign | 0x7f800000u | (m << 13));
    if (e != 0) return std::bit_cast<float>(sign | ((e + 112) << 23) | (m << 13));
    if (m == 0) return std::bit_cast<float>(sign);
    // subnormal: normalise
    std::uint32_t exp = 113;
    while ((m & 0x400u) == 0) {
        m <<= 1;
        --exp;
    }
    return std::bit_cast<float>(sign | (exp << 23) | ((m & 0x3ffu) << 13));
}

}  // namespace detail

/// Brain floating point: 1 sign, 8 exponent, 7 mantissa bits (the top half of a float).
struct bf16 {
    std::uint16_t bits = 0;

    constexpr bf16() noexcept = default;
    constexpr explicit bf16(float f) noexcept : bits(detail::float_to_bf16_bits(f)) {}
    static constexpr bf16 from_bits(std::uint16_t b) noexcept {
        bf16 r;
        r.bits = b;
        return r;
    }
    constexpr explicit operator float() const noexcept { return detail::bf16_bits_to_float(bits); }
    constexpr float to_float() const noexcept { return detail::bf16_bits_to_float(bits); }
    friend constexpr bool operator==(bf16 a, bf16 b) noexcept { return a.bits == b.bits; }
};

/// IEEE 754 binary16: 1 sign, 5 exponent, 10 mantissa bits.
struct fp16 {
    std::uint16_t bits = 0;

    constexpr fp16() noexcept = default;
    constexpr explicit fp16(float f) noexcept : bits(detail::float_to_fp16_bits(f)) {}
    static constexpr fp16 from_bits(std::uint16_t b) noexcept {
        fp16 r;
        r.bits = b;
        return r;
    }
    constexpr explicit operator float() const noexcept { return detail::fp16_bits_to_float(bits); }
    constexpr float to_float() const noexcept { return detail::fp16_bits_to_float(bits); }
    friend constexpr bool operator==(fp16 a, fp16 b) noexcept { return a.bits == b.bits; }
};

static_assert(sizeof(bf16) == 2 && sizeof(fp16) == 2);

/// Loads any storage scalar as float (identity for float).
template <class T>
KITE_FORCE_INLINE constexpr float to_float(T v) noexcept {
    if constexpr (std::is_same_v<T, float>) {
        return v;
    } else {
        return v.to_float();
    }
}
/// Stores a float as storage scalar `T` (round-to-nearest-even for bf16/fp16).
template <class T>
KITE_FORCE_INLINE constexpr T from_float(float v) noexcept {
    if constexpr (std::is_same_v<T, float>) {
        return v;
    } else {
        return T(v);
    }
}

/// Converts `src` into `dst` element by element (sizes must match).
template <class To, class From>
void convert(std::span<const From> src, std::span<To> dst) {
    KITE_REQUIRE(src.size() == dst.size(), shape_error, "convert: source has ", src.size(),
                 " elements, destination ", dst.size(), "; expected equal sizes");
    for (std::size_t i = 0; i < src.size(); ++i) dst[i] = from_float<To>(to_float(src[i]));
}

}  // namespace kite
