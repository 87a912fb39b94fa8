#pragma once
/// @file kite/core/error.hpp
/// kite's error hierarchy and the precondition macro used by every public entry point.
///
/// Every error a user can cause with bad input is a kite::error whose message names the bad
/// value and what was expected, e.g. "flat_index::search: k = 0; expected k >= 1".
/// Hot loops never throw: public entry points validate once, then call unchecked kernels.

#include <cstdint>
#include <sstream>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>

namespace kite {

/// Base of every exception kite throws on purpose.
class error : public std::runtime_error {
public:
    using std::runtime_error::runtime_error;
};

/// A value is out of its domain (k = 0, a negative radius, NaN in the input, ...).
class invalid_argument : public error {
public:
    using error::error;
};

/// Dimensions do not fit together (query dim differs from the index dim, ...).
class shape_error : public invalid_argument {
public:
    using invalid_argument::invalid_argument;
};

/// Text is not valid UTF-8; the message names the byte offset.
class unicode_error : public invalid_argument {
public:
    unicode_error(const std::string& what, std::size_t byte_offset)
        : invalid_argument(what), offset_(byte_offset) {}
    /// Byte offset of the first invalid byte in the input.
    std::size_t byte_offset() const noexcept { return offset_; }

private:
    std::size_t offset_;
};

/// The operating system refused an operation on a file (open, read, write, rename).
class io_error : public error {
public:
    using error::error;
};

/// A file or a line has the wrong content: foreign magic, unsupported version, truncation,
/// checksum mismatch, malformed record. The message names the file and position.
class format_error : public error {
public:
    using error::error;
};

/// A model configuration does not match the compile-time policies it is loaded into.
class config_error : public error {
public:
    using error::error;
};

/// A lookup found nothing (unknown id, unknown tensor name).
class not_found_error : public error {
public:
    using error::error;
};

namespace detail {

template <class T>
void append_one(std::ostringstream& os, const T& v) {
    if constexpr (std::is_same_v<T, std::int8_t> || std::is_same_v<T, std::uint8_t>) {
        os << static_cast<int>(v);
    } else if constexpr (std::is_same_v<T, bool>) {
        os << (v ? "true" : "false");
    } else {
        os << v;
    }
}

/// Concatenates the streamable arguments into one message string.
template <class... Args>
std::string concat(const Args&... args) {
    std::ostringstream os;
    os.precision(9);
    (append_one(os, args), ...);
    return std::move(os).str();
}

template <class Error, class... Args>
[[noreturn]] void raise(const Args&... args) {
    throw Error(concat(args...));
}

}  // namespace detail
}  // namespace kite

/// KITE_REQUIRE(condition, error_type, message parts...)
/// Precondition check for public entry points: throws `error_type` with the message parts
/// concatenated when `condition` is false. Use it once at the boundary, never in a hot loop.
#define KITE_REQUIRE(cond, error_type, ...)                          \
    do {                                                             \
        if (!(cond)) [[unlikely]] {                                  \
            ::kite::detail::raise<error_type>(__VA_ARGS__);          \
        }                                                            \
    } while (false)

/// KITE_ASSERT(condition): an internal invariant, checked in debug builds only.
#ifdef NDEBUG
#define KITE_ASSERT(cond) ((void)0)
#else
#include <cassert>
#define KITE_ASSERT(cond) assert(cond)
#endif
