#pragma once
/// @file kite/core/io.hpp
/// File I/O shared by every on-disk format in kite:
///  - mapped_file: read-only memory map (empty files are fine);
///  - atomic_file: writes go to a temporary file in the same folder that is fsync'ed and renamed
///    over the target on commit(), so a crash never leaves a half-written file;
///  - byte_reader: bounds-checked little-endian reads that raise format_error on truncation,
///    naming the file, the field and the offset.

#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <random>
#include <span>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

#include "kite/core/error.hpp"

#include <fcntl.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

namespace kite::io {

namespace detail {
inline std::string errno_text(int e) { return std::strerror(e); }
}  // namespace detail

/// Read-only memory map of a whole file. Move-only; unmaps on destruction.
class mapped_file {
public:
    mapped_file() = default;
    explicit mapped_file(const std::filesystem::path& path) : path_(path.string()) {
        const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
        KITE_REQUIRE(fd >= 0, io_error, "cannot open '", path_, "' for reading: ",
                     detail::errno_text(errno));
        struct stat st {};
        if (::fstat(fd, &st) != 0) {
            const int e = errno;
            ::close(fd);
            kite::detail::raise<io_error>("cannot stat '", path_, "': ", detail::errno_text(e));
        }
        if (!S_ISREG(st.st_mode)) {
            ::close(fd);
            kite::detail::raise<io_error>("'", path_, "' is not a regular file");
        }
        size_ = static_cast<std::size_t>(st.st_size);
        if (size_ > 0) {
            void* p = ::mmap(nullptr, size_, PROT_READ, MAP_PRIVATE, fd, 0);
            const int e = errno;
            ::close(fd);
            KITE_REQUIRE(p != MAP_FAILED, io_error, "cannot map '", path_, "': ", detail::errno_text(e));
            data_ = static_cast<const std::byte*>(p);
        } else {
            ::close(fd);
        }
    }
    mapped_file(const mapped_file&) = delete;
    mapped_file& operator=(const mapped_file&) = delete;
    mapped_file(mapped_file&& o) noexcept
        : path_(std::move(o.path_)), data_(std::exchange(o.data_, nullptr)),
          size_(std::exchange(o.size_, 0)) {}
    mapped_file& operator=(mapped_file&& o) noexcept {
        if (this != &o) {
            unmap();
            path_ = std::move(o.path_);
            data_ = std::exchange(o.data_, nullptr);
            size_ = std::exchange(o.size_, 0);
        }
        return *this;
    }
    ~mapped_file() { unmap(); }

    std::span<const std::byte> bytes() const noexcept { return {data_, size_}; }
    const std::byte* data() const noexcept { return data_; }
    std::size_t size() const noexcept { return size_; }
    const std::string& path() const noexcept { return path_; }

    /// Drops the pages of the map from this process's resident set (madvise MADV_DONTNEED): for
    /// a file whose contents were copied or repacked at load. The map stays valid; a page read
    /// again is read back from the file (the mapping is private and never written).
    void release_pages() const noexcept {
        if (data_) ::madvise(const_cast<std::byte*>(data_), size_, MADV_DONTNEED);
    }

private:
    void unmap() noexcept {
        if (data_) ::munmap(const_cast<std::byte*>(data_), size_);
        data_ = nullptr;
        size_ = 0;
    }
    std::string path_;
    const std::byte* data_ = nullptr;
    std::size_t size_ = 0;
};

/// Reads a whole file into a string (for text formats).
inline std::string read_text(const std::filesystem::path& path) {
    mapped_file f(path);
    return std::string(reinterpret_cast<const char*>(f.data()), f.size());
}

/// A file written through a temporary name and renamed over `path` on commit().
/// Destroying an uncommitted atomic_file removes the temporary; the target is untouched. A
/// writer killed mid-write (SIGKILL, power) leaves the target as it was and its temporary
/// "<name>.tmp-<pid>-<n>"; the next commit() to the same path removes the temporaries whose
/// process no longer exists.
class atomic_file {
public:
    explicit atomic_file(const std::filesystem::path& path) : path_(path) {
        std::random_device rd;
        const auto dir = path.has_parent_path() ? path.parent_path() : std::filesystem::path(".");
        tmp_ = dir / (path.filename().string() + ".tmp-" + std::to_string(::getpid()) + "-" +
                      std::to_string(rd()));
        fd_ = ::open(tmp_.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
        KITE_REQUIRE(fd_ >= 0, io_error, "cannot create '", tmp_.string(), "' to write '",
                     path_.string(), "': ", detail::errno_text(errno));
    }
    atomic_file(const atomic_file&) = delete;
    atomic_file& operator=(const atomic_file&) = delete;
    ~atomic_file() {
        if (fd_ >= 0) {
            ::close(fd_);
            ::unlink(tmp_.c_str());
        }
    }

    /// Appends raw bytes.
    void write(const void* data, std::size_t n) {
        const char* p = static_cast<const char*>(data);
        while (n > 0) {
            const ::ssize_t w = ::write(fd_, p, n);
            if (w < 0 && errno == EINTR) continue;
            KITE_REQUIRE(w > 0, io_error, "write to '", tmp_.string(), "' failed: ",
                         detail::errno_text(errno));
            p += w;
            n -= static_cast<std::size_t>(w);
            written_ += static_cast<std::size_t>(w);
        }
    }
    /// Appends the bytes of a trivially copyable value (native = little-endian on kite's targets).
    template <class T>
        requires std::is_trivially_copyable_v<T>
    void put(const T& v) {
        write(&v, sizeof(T));
    }
    /// Appends the bytes of a span of trivially copyable values.
    template <class T>
        requires std::is_trivially_copyable_v<T>
    void put_span(std::span<const T> v) {
        if (!v.empty()) write(v.data(), v.size_bytes());
    }
    std::size_t bytes_written() const noexcept { return written_; }

    /// Flushes to disk and atomically replaces the target file.
    void commit() {
        KITE_REQUIRE(fd_ >= 0, io_error, "atomic_file for '", path_.string(), "' already committed");
        if (::fsync(fd_) != 0) kite::detail::raise<io_error>("fsync of '", tmp_.string(), "' failed: ", detail::errno_text(errno));
        ::close(fd_);
        fd_ = -1;
        if (::rename(tmp_.c_str(), path_.c_str()) != 0) {
            const int e = errno;
            ::unlink(tmp_.c_str());
            kite::detail::raise<io_error>("cannot rename '", tmp_.string(), "' to '", path_.string(),
                                    "': ", detail::errno_text(e));
        }
        remove_stale_temporaries();
    }

private:
    // Temporaries of this target left by writers that were killed mid-write: "<name>.tmp-<pid>-<n>"
    // whose process no longer exists. Best effort; a temporary of a live process is never touched.
    void remove_stale_temporaries() const noexcept {
        std::error_code ec;
        const auto dir = path_.has_parent_path() ? path_.parent_path() : std::filesystem::path(".");
        const std::string prefix = path_.filename().string() + ".tmp-";
        for (std::filesystem::directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec)) {
            const std::string name = it->path().filename().string();
            if (name.compare(0, prefix.size(), prefix) != 0) continue;
            const std::string rest = name.substr(prefix.size());
            const auto dash = rest.find('-');
            if (dash == 0 || dash == std::string::npos || rest.find_first_not_of("0123456789-") != std::string::npos) continue;
            long pid = 0;
            for (std::size_t i = 0; i < dash && pid < (1L << 30); ++i) pid = pid * 10 + (rest[i] - '0');
            if (pid <= 0 || pid == static_cast<long>(::getpid())) continue;
            if (::kill(static_cast<::pid_t>(pid), 0) != 0 && errno == ESRCH) {
                std::error_code ignore;
                std::filesystem::remove(it->path(), ignore);
            }
        }
    }

public:

private:
    std::filesystem::path path_;
    std::filesystem::path tmp_;
    int fd_ = -1;
    std::size_t written_ = 0;
};

/// Writes `bytes` to `path` atomically.
inline void write_file_atomic(const std::filesystem::path& path, std::span<const std::byte> bytes) {
    atomic_file f(path);
    f.write(bytes.data(), bytes.size());
    f.commit();
}

/// Bounds-checked sequential reader over bytes; errors name `source` (usually a file path).
class byte_reader {
public:
    byte_reader(std::span<const std::byte> bytes, std::string source)
        : bytes_(bytes), source_(std::move(source)) {}

    std::size_t offset() const noexcept { return pos_; }
    std::size_t size() const noexcept { return bytes_.size(); }
    std::size_t remaining() const noexcept { return bytes_.size() - pos_; }
    const std::string& source() const noexcept { return source_; }

    /// Throws format_error unless `n` more bytes are available; `what` names the field.
    void need(std::size_t n, std::string_view what) const {
        KITE_REQUIRE(n <= remaining(), format_error, source_, ": truncated while reading ", what,
                     ": need ", n, " bytes at offset ", pos_, ", but the data has ", bytes_.size(),
                     " bytes");
    }
    template <class T>
        requires std::is_trivially_copyable_v<T>
    T get(std::string_view what) {
        need(sizeof(T), what);
        T v;
        std::memcpy(&v, bytes_.data() + pos_, sizeof(T));
        pos_ += sizeof(T);
        return v;
    }
    /// Returns a view of the next `n` bytes and skips them.
    std::span<const std::byte> take(std::size_t n, std::string_view what) {
        need(n, what);
        auto s = bytes_.subspan(pos_, n);
        pos_ += n;
        return s;
    }
    /// Copies `out.size()` values of T from the stream.
    template <class T>
        requires std::is_trivially_copyable_v<T>
    void get_into(std::span<T> out, std::string_view what) {
        if (out.empty()) return;
        KITE_REQUIRE(out.size() <= remaining() / sizeof(T), format_error, source_,
                     ": truncated while reading ", what, ": need ", out.size(), " x ", sizeof(T),
                     " bytes at offset ", pos_, ", but the data has ", bytes_.size(), " bytes");
        std::memcpy(out.data(), bytes_.data() + pos_, out.size_bytes());
        pos_ += out.size_bytes();
    }
    void skip(std::size_t n, std::string_view what) { take(n, what); }
    void seek(std::size_t off) {
        KITE_REQUIRE(off <= bytes_.size(), format_error, source_, ": offset ", off,
                     " is past the end (", bytes_.size(), " bytes)");
        pos_ = off;
    }

private:
    std::span<const std::byte> bytes_;
    std::string source_;
    std::size_t pos_ = 0;
};

}  // namespace kite::io
