#pragma once
/// @file kite/core/tensor.hpp
/// tensor_view<T, Rank>: one strided view for the few N-d layouts kite needs (the paged KV
/// cache is [block][kv_head][token][head_dim]). Not a tensor library: indexing and slicing only.

#include <array>
#include <cstddef>
#include <type_traits>

#include "kite/core/config.hpp"

namespace kite {

template <class T, std::size_t Rank>
class tensor_view {
    static_assert(Rank >= 1, "tensor_view needs Rank >= 1");

public:
    using extents_type = std::array<index_t, Rank>;

    constexpr tensor_view() noexcept = default;
    /// A contiguous row-major tensor with the given extents.
    constexpr tensor_view(T* data, const extents_type& extents) noexcept
        : data_(data), extents_(extents) {
        index_t s = 1;
        for (std::size_t i = Rank; i-- > 0;) {
            strides_[i] = s;
            s *= extents_[i];
        }
    }
    constexpr tensor_view(T* data, const extents_type& extents, const extents_type& strides) noexcept
        : data_(data), extents_(extents), strides_(strides) {}

    template <class U>
        requires(std::is_same_v<const U, T> && !std::is_same_v<U, T>)
    constexpr tensor_view(const tensor_view<U, Rank>& o) noexcept
        : data_(o.data()), extents_(o.extents()), strides_(o.strides()) {}

    constexpr T* data() const noexcept { return data_; }
    constexpr const extents_type& extents() const noexcept { return extents_; }
    constexpr const extents_type& strides() const noexcept { return strides_; }
    constexpr index_t extent(std::size_t i) const noexcept { return extents_[i]; }
    constexpr index_t stride(std::size_t i) const noexcept { return strides_[i]; }
    constexpr index_t size() const noexcept {
        index_t s = 1;
        for (auto e : extents_) s *= e;
        return s;
    }

    template <class... I>
        requires(sizeof...(I) == Rank)
    constexpr T& operator()(I... idx) const noexcept {
        const std::array<index_t, Rank> ix{static_cast<index_t>(idx)...};
        index_t off = 0;
        for (std::size_t i = 0; i < Rank; ++i) off += ix[i] * strides_[i];
        return data_[off];
    }
    /// Pointer to the start of the innermost run selected by the leading Rank-1 indices.
    template <class... I>
        requires(sizeof...(I) == Rank - 1)
    constexpr T* ptr(I... idx) const noexcept {
        const std::array<index_t, Rank - 1> ix{static_cast<index_t>(idx)...};
        index_t off = 0;
        for (std::size_t i = 0; i + 1 < Rank; ++i) off += ix[i] * strides_[i];
        return data_ + off;
    }

private:
    T* data_ = nullptr;
    extents_type extents_{};
    extents_type strides_{};
};

}  // namespace kite
