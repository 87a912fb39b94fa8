#pragma once
/// @file kite/retrieval/detail/bitpack.hpp
/// Fixed-width bit packing of up to 128 unsigned 32-bit values (LSB first), the codec of kite's
/// posting blocks. Unpacking reads 8 bytes at a time, so every packed buffer must be followed by
/// at least 8 readable bytes (posting lists keep 8 zero bytes of padding at their end).

#include <cstddef>
#include <cstdint>
#include <cstring>

#include "kite/core/config.hpp"

#if defined(__AVX512F__)
#include <immintrin.h>
#endif

namespace kite::retrieval::detail {

/// Bits needed to store `v` (0 for 0).
constexpr std::uint32_t bit_width(std::uint32_t v) noexcept {
    std::uint32_t b = 0;
    while (v) {
        ++b;
        v >>= 1;
    }
    return b;
}

/// Bytes that `n` values of `bits` bits occupy.
constexpr std::size_t packed_bytes(std::uint32_t n, std::uint32_t bits) noexcept {
    return (static_cast<std::size_t>(n) * bits + 7) / 8;
}

/// ORs `n` values of `bits` bits into `out` (which must be zeroed, with 8 bytes of slack).
inline void pack(const std::uint32_t* in, std::uint32_t n, std::uint32_t bits, std::uint8_t* out) noexcept {
    if (bits == 0) return;
    std::uint64_t pos = 0;
    for (std::uint32_t i = 0; i < n; ++i, pos += bits) {
        std::uint64_t w;
        std::memcpy(&w, out + (pos >> 3), 8);
        w |= static_cast<std::uint64_t>(in[i]) << (pos & 7);
        std::memcpy(out + (pos >> 3), &w, 8);
    }
}

template <std::uint32_t Bits>
KITE_FORCE_INLINE void unpack_fixed(const std::uint8_t* in, std::uint32_t n, std::uint32_t* out) noexcept {
    if constexpr (Bits == 0) {
        for (std::uint32_t i = 0; i < n; ++i) out[i] = 0;
    } else {
        constexpr std::uint64_t mask = Bits == 32 ? 0xFFFFFFFFull : (std::uint64_t{1} << Bits) - 1;
        // Eight values span exactly `Bits` bytes, so the inner shifts are compile-time constants.
        std::uint32_t i = 0;
        for (; i + 8 <= n; i += 8, in += Bits) {
            for (std::uint32_t j = 0; j < 8; ++j) {
                std::uint64_t w;
                std::memcpy(&w, in + (j * Bits) / 8, 8);
                out[i + j] = static_cast<std::uint32_t>((w >> ((j * Bits) % 8)) & mask);
            }
        }
        for (std::uint32_t j = 0; i < n; ++i, ++j) {
            std::uint64_t w;
            std::memcpy(&w, in + (j * Bits) / 8, 8);
            out[i] = static_cast<std::uint32_t>((w >> ((j * Bits) % 8)) & mask);
        }
    }
}

/// Reads `n` values of `bits` bits (0..32) from `in` into `out`.
inline void unpack(const std::uint8_t* in, std::uint32_t n, std::uint32_t bits, std::uint32_t* out) noexcept {
    switch (bits) {
#define KITE_UNPACK_CASE(B) \
    case B:                 \
        unpack_fixed<B>(in, n, out); \
        return;
        KITE_UNPACK_CASE(0) KITE_UNPACK_CASE(1) KITE_UNPACK_CASE(2) KITE_UNPACK_CASE(3)
        KITE_UNPACK_CASE(4) KITE_UNPACK_CASE(5) KITE_UNPACK_CASE(6) KITE_UNPACK_CASE(7)
        KITE_UNPACK_CASE(8) KITE_UNPACK_CASE(9) KITE_UNPACK_CASE(10) KITE_UNPACK_CASE(11)
        KITE_UNPACK_CASE(12) KITE_UNPACK_CASE(13) KITE_UNPACK_CASE(14) KITE_UNPACK_CASE(15)
        KITE_UNPACK_CASE(16) KITE_UNPACK_CASE(17) KITE_UNPACK_CASE(18) KITE_UNPACK_CASE(19)
        KITE_UNPACK_CASE(20) KITE_UNPACK_CASE(21) KITE_UNPACK_CASE(22) KITE_UNPACK_CASE(23)
        KITE_UNPACK_CASE(24) KITE_UNPACK_CASE(25) KITE_UNPACK_CASE(26) KITE_UNPACK_CASE(27)
        KITE_UNPACK_CASE(28) KITE_UNPACK_CASE(29) KITE_UNPACK_CASE(30) KITE_UNPACK_CASE(31)
        KITE_UNPACK_CASE(32)
#undef KITE_UNPACK_CASE
        default:
            return;
    }
}

/// Turns `n` doc-id gaps (doc - previous doc - 1) into doc ids, in place; `prev` is the doc id
/// before the first (no_doc = 0xFFFFFFFF before a list's first posting: the sum wraps to it).
inline void gaps_to_docs(std::uint32_t* v, std::uint32_t n, std::uint32_t prev) noexcept {
    std::uint32_t i = 0;
#if defined(__AVX512F__)
    // In-register inclusive scan of 16 lanes (log steps), then the running carry: chunks scan
    // independently, so only one add and one broadcast per 16 values sit on the carry chain.
    const __m512i zero = _mm512_setzero_si512(), one = _mm512_set1_epi32(1);
    const __m512i last = _mm512_set1_epi32(15);
    const __mmask16 all = 0xFFFF;  // (the maskz forms: GCC 12 warns on the unmasked ones)
    __m512i carry = _mm512_set1_epi32(static_cast<int>(prev));
    for (; i + 16 <= n; i += 16) {
        __m512i x = _mm512_add_epi32(_mm512_loadu_si512(v + i), one);
        x = _mm512_add_epi32(x, _mm512_maskz_alignr_epi32(all, x, zero, 15));
        x = _mm512_add_epi32(x, _mm512_maskz_alignr_epi32(all, x, zero, 14));
        x = _mm512_add_epi32(x, _mm512_maskz_alignr_epi32(all, x, zero, 12));
        x = _mm512_add_epi32(x, _mm512_maskz_alignr_epi32(all, x, zero, 8));
        x = _mm512_add_epi32(x, carry);
        _mm512_storeu_si512(v + i, x);
        carry = _mm512_maskz_permutexvar_epi32(all, last, x);
    }
    if (i) prev = v[i - 1];
#endif
    for (; i < n; ++i) prev = v[i] = prev + v[i] + 1;
}

/// The obvious bit-at-a-time reader (the oracle of unpack in tests).
inline std::uint32_t unpack_one_reference(const std::uint8_t* in, std::uint32_t i, std::uint32_t bits) noexcept {
    std::uint32_t v = 0;
    for (std::uint32_t b = 0; b < bits; ++b) {
        const std::uint64_t pos = static_cast<std::uint64_t>(i) * bits + b;
        v |= static_cast<std::uint32_t>((in[pos >> 3] >> (pos & 7)) & 1u) << b;
    }
    return v;
}

}  // namespace kite::retrieval::detail
