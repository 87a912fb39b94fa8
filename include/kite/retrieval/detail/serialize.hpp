#pragma once
/// @file kite/retrieval/detail/serialize.hpp
/// The container kite's lexical indexes are saved in, and a little-endian byte sink.
///
///   offset  size  field
///   0       8     magic (e.g. "KITEBM25")
///   8       4     format version (u32)
///   12      4     crc32c of the payload (u32)
///   16      8     payload size in bytes (u64); must equal file size - 24
///   24      ...   payload
///
/// Files are written through io::atomic_file (temporary name, fsync, rename).

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <span>
#include <string>
#include <string_view>
#include <type_traits>
#include <vector>

#include "kite/core/checksum.hpp"
#include "kite/core/error.hpp"
#include "kite/core/io.hpp"

namespace kite::retrieval::detail {

/// Appends little-endian values to a byte buffer (kite's targets are little-endian).
class byte_sink {
public:
    template <class T>
        requires std::is_trivially_copyable_v<T>
    void put(const T& v) {
        const auto* p = reinterpret_cast<const std::byte*>(&v);
        bytes_.insert(bytes_.end(), p, p + sizeof(T));
    }
    template <class T>
        requires std::is_trivially_copyable_v<T>
    void put_span(std::span<const T> v) {
        const auto* p = reinterpret_cast<const std::byte*>(v.data());
        bytes_.insert(bytes_.end(), p, p + v.size_bytes());
    }
    /// u64 length, then the bytes.
    void put_string(std::string_view s) {
        put<std::uint64_t>(s.size());
        put_span(std::span<const char>(s.data(), s.size()));
    }
    std::span<const std::byte> bytes() const noexcept { return bytes_; }

private:
    std::vector<std::byte> bytes_;
};

/// Reads a u64-length-prefixed string written by byte_sink::put_string.
inline std::string get_string(io::byte_reader& r, std::string_view what) {
    const auto n = r.get<std::uint64_t>(what);
    const auto s = r.take(static_cast<std::size_t>(std::min<std::uint64_t>(n, r.remaining() + 1)), what);
    return std::string(reinterpret_cast<const char*>(s.data()), s.size());
}

inline constexpr std::size_t container_header_size = 24;

/// Writes magic + version + crc + size + payload to `path` atomically.
inline void write_container(const std::filesystem::path& path, std::string_view magic,
                            std::uint32_t version, std::span<const std::byte> payload) {
    io::atomic_file f(path);
    char m[8] = {};
    std::memcpy(m, magic.data(), std::min<std::size_t>(magic.size(), 8));
    f.write(m, 8);
    f.put<std::uint32_t>(version);
    f.put<std::uint32_t>(crc32c(payload));
    f.put<std::uint64_t>(payload.size());
    f.write(payload.data(), payload.size());
    f.commit();
}

/// Checks magic, version, size and checksum of a mapped container; returns the payload.
inline std::span<const std::byte> open_container(const io::mapped_file& f, std::string_view magic,
                                                 std::uint32_t version, std::string_view kind) {
    io::byte_reader r(f.bytes(), f.path());
    const auto head = r.take(8, "magic");
    char want[8] = {};
    std::memcpy(want, magic.data(), std::min<std::size_t>(magic.size(), 8));
    KITE_REQUIRE(std::memcmp(head.data(), want, 8) == 0, format_error, f.path(), ": not a kite ",
                 kind, " file (magic differs from '", magic, "')");
    const auto v = r.get<std::uint32_t>("version");
    KITE_REQUIRE(v == version, format_error, f.path(), ": ", kind, " format version ", v,
                 " is not supported; expected version ", version);
    const auto crc = r.get<std::uint32_t>("checksum");
    const auto size = r.get<std::uint64_t>("payload size");
    KITE_REQUIRE(size == r.remaining(), format_error, f.path(), ": payload size ", size,
                 " disagrees with the file (", r.remaining(), " bytes after the header)");
    const auto payload = f.bytes().subspan(container_header_size);
    const auto got = crc32c(payload);
    KITE_REQUIRE(got == crc, format_error, f.path(), ": checksum mismatch (stored ", crc,
                 ", computed ", got, "); the file is corrupt");
    return payload;
}

}  // namespace kite::retrieval::detail
