#pragma once
/// @file kite/core/buffer.hpp
/// aligned_buffer<T>: an owning, move-only, aligned array of trivially copyable values.
///
/// Large buffers (>= 2 MiB) are aligned to 2 MiB and, on Linux, advised to use transparent huge
/// pages: first-touch of 4 KiB pages is slow on the virtual machines kite is measured on, and
/// huge pages cut TLB misses in memory-bound scans.

#include <algorithm>
#include <cstddef>
#include <cstdlib>
#include <cstring>
#include <new>
#include <span>
#include <type_traits>
#include <utility>

#include "kite/core/checked.hpp"
#include "kite/core/config.hpp"

#if defined(__linux__)
#include <sys/mman.h>
#endif

namespace kite {

/// Tag selecting construction without initialising the elements.
struct uninitialized_t {
    explicit constexpr uninitialized_t() = default;
};
inline constexpr uninitialized_t uninitialized{};

namespace detail {

inline constexpr std::size_t huge_page_bytes = std::size_t{2} << 20;

/// Memory for `count` elements of `size` bytes; the byte count is checked for overflow (a
/// wrapped-around size would allocate a short buffer).
inline void* aligned_allocate(std::size_t count, std::size_t size, std::size_t align) {
    const std::size_t bytes = checked_mul(count, size, "aligned_buffer of ", count, " elements of ", size, " bytes");
    if (bytes == 0) return nullptr;
    if (bytes >= huge_page_bytes) align = std::max(align, huge_page_bytes);
    const std::size_t rounded = checked_add(bytes, align - 1, "aligned_buffer of ", bytes, " bytes") / align * align;
    void* p = std::aligned_alloc(align, rounded);
    if (p == nullptr) throw std::bad_alloc();
#if defined(__linux__) && defined(MADV_HUGEPAGE)
    if (rounded >= huge_page_bytes) ::madvise(p, rounded, MADV_HUGEPAGE);
#endif
    return p;
}

}  // namespace detail

/// Owning, aligned, move-only array of `T`. Value-initialises (zeroes) by default; pass
/// `kite::uninitialized` to skip that for buffers that are written before they are read.
template <class T, std::size_t Align = 64>
class aligned_buffer {
    static_assert(std::is_trivially_copyable_v<T>,
                  "aligned_buffer holds trivially copyable element types only");
    static_assert(Align >= alignof(T) && (Align & (Align - 1)) == 0,
                  "Align must be a power of two no smaller than alignof(T)");

public:
    using value_type = T;
    using size_type = std::size_t;

    aligned_buffer() noexcept = default;
    explicit aligned_buffer(size_type n) : aligned_buffer(n, uninitialized) {
        if (n) std::memset(static_cast<void*>(data_), 0, n * sizeof(T));
    }
    aligned_buffer(size_type n, uninitialized_t)
        : data_(static_cast<T*>(detail::aligned_allocate(n, sizeof(T), Align))), size_(n),
          capacity_(n) {}
    aligned_buffer(size_type n, const T& value) : aligned_buffer(n, uninitialized) {
        std::fill_n(data_, n, value);
    }
    explicit aligned_buffer(std::span<const T> values) : aligned_buffer(values.size(), uninitialized) {
        if (!values.empty()) std::memcpy(static_cast<void*>(data_), values.data(), values.size_bytes());
    }

    aligned_buffer(const aligned_buffer&) = delete;
    aligned_buffer& operator=(const aligned_buffer&) = delete;
    aligned_buffer(aligned_buffer&& o) noexcept
        : data_(std::exchange(o.data_, nullptr)), size_(std::exchange(o.size_, 0)),
          capacity_(std::exchange(o.capacity_, 0)) {}
    aligned_buffer& operator=(aligned_buffer&& o) noexcept {
        if (this != &o) {
            std::free(data_);
            data_ = std::exchange(o.data_, nullptr);
            size_ = std::exchange(o.size_, 0);
            capacity_ = std::exchange(o.capacity_, 0);
        }
        return *this;
    }
    ~aligned_buffer() { std::free(data_); }

    /// An independent copy (copies are explicit because buffers are usually large).
    aligned_buffer clone() const { return aligned_buffer(std::span<const T>(data_, size_)); }

    T* data() noexcept { return data_; }
    const T* data() const noexcept { return data_; }
    size_type size() const noexcept { return size_; }
    size_type capacity() const noexcept { return capacity_; }
    bool empty() const noexcept { return size_ == 0; }
    size_type size_bytes() const noexcept { return size_ * sizeof(T); }

    T& operator[](size_type i) noexcept { return data_[i]; }
    const T& operator[](size_type i) const noexcept { return data_[i]; }
    T* begin() noexcept { return data_; }
    T* end() noexcept { return data_ + size_; }
    const T* begin() const noexcept { return data_; }
    const T* end() const noexcept { return data_ + size_; }

    std::span<T> span() noexcept { return {data_, size_}; }
    std::span<const T> span() const noexcept { return {data_, size_}; }
    operator std::span<T>() noexcept { return span(); }
    operator std::span<const T>() const noexcept { return span(); }

    /// Ensures room for `n` elements, keeping the first size() elements. Growth is geometric.
    void reserve(size_type n) {
        if (n <= capacity_) return;
        const size_type cap = std::max(n, capacity_ + capacity_ / 2);  // capacity_ / 2 cannot overflow
        T* p = static_cast<T*>(detail::aligned_allocate(cap, sizeof(T), Align));
        if (size_) std::memcpy(static_cast<void*>(p), data_, size_ * sizeof(T));
        std::free(data_);
        data_ = p;
        capacity_ = cap;
    }
    /// Resizes to `n` elements; new elements are zero.
    void resize(size_type n) {
        reserve(n);
        if (n > size_) std::memset(static_cast<void*>(data_ + size_), 0, (n - size_) * sizeof(T));
        size_ = n;
    }
    /// Resizes to `n` elements without initialising new ones.
    void resize(size_type n, uninitialized_t) {
        reserve(n);
        size_ = n;
    }
    /// Appends `values` at the end.
    void append(std::span<const T> values) {
        if (values.empty()) return;
        reserve(size_ + values.size());
        std::memcpy(static_cast<void*>(data_ + size_), values.data(), values.size_bytes());
        size_ += values.size();
    }
    void clear() noexcept { size_ = 0; }
    /// Releases the memory.
    void reset() noexcept {
        std::free(data_);
        data_ = nullptr;
        size_ = capacity_ = 0;
    }

private:
    T* data_ = nullptr;
    size_type size_ = 0;
    size_type capacity_ = 0;
};

}  // namespace kite
