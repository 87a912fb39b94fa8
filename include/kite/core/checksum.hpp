#pragma once
/// @file kite/core/checksum.hpp
/// CRC-32C (Castagnoli), used by kite's own file formats to detect corruption.
/// Uses the SSE4.2 crc32 instruction when the translation unit targets it; a table otherwise.
/// Both paths give identical values (tested against the published check value 0xE3069283).

#include <array>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <span>

#if defined(__SSE4_2__)
#include <nmmintrin.h>
#endif

namespace kite {

namespace detail {
inline constexpr std::array<std::uint32_t, 256> crc32c_table = [] {
    std::array<std::uint32_t, 256> t{};
    for (std::uint32_t i = 0; i < 256; ++i) {
        std::uint32_t c = i;
        for (int k = 0; k < 8; ++k) c = (c & 1u) ? (c >> 1) ^ 0x82F63B78u : c >> 1;
        t[i] = c;
    }
    return t;
}();

inline std::uint32_t crc32c_update_table(std::uint32_t crc, const unsigned char* p, std::size_t n) noexcept {
    for (std::size_t i = 0; i < n; ++i) crc = crc32c_table[(crc ^ p[i]) & 0xffu] ^ (crc >> 8);
    return crc;
}
}  // namespace detail

/// Continues a CRC-32C over `bytes`. Start with crc = 0; the result is final (no extra xor).
inline std::uint32_t crc32c(std::span<const std::byte> bytes, std::uint32_t crc = 0) noexcept {
    const auto* p = reinterpret_cast<const unsigned char*>(bytes.data());
    std::size_t n = bytes.size();
    crc = ~crc;
#if defined(__SSE4_2__) && defined(__x86_64__)
    std::uint64_t c = crc;
    while (n >= 8) {
        std::uint64_t v;
        std::memcpy(&v, p, 8);
        c = _mm_crc32_u64(c, v);
        p += 8;
        n -= 8;
    }
    crc = static_cast<std::uint32_t>(c);
#endif
    crc = detail::crc32c_update_table(crc, p, n);
    return ~crc;
}

/// The table-only CRC-32C (the twin of crc32c for tests).
inline std::uint32_t crc32c_portable(std::span<const std::byte> bytes, std::uint32_t crc = 0) noexcept {
    return ~detail::crc32c_update_table(~crc, reinterpret_cast<const unsigned char*>(bytes.data()),
                                        bytes.size());
}

}  // namespace kite
