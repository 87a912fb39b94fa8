#pragma once
/// @file kite/attn/tensor_kv.hpp
/// tensor_kv<T>: keys and values held in two 4-D tensors, [batch][seq][kv_head][head_dim]
/// (any strides with a unit last stride; [batch][kv_head][seq][dim], PyTorch's layout, is the
/// same view with permuted strides), seen as a kv_view. Used for prefill over freshly projected
/// K/V and for tests.

#include <span>

#include "kite/attn/concepts.hpp"
#include "kite/core/error.hpp"
#include "kite/core/tensor.hpp"

namespace kite::attn {

/// K and V tensors with optional per-sequence lengths (padding), as a kv_view.
template <storage_scalar T>
class tensor_kv {
public:
    using value_type = T;

    /// k, v: [batch][seq][kv_head][head_dim], same extents and strides. lengths: [batch]
    /// (each <= seq) or empty for "every sequence is seq tokens long".
    tensor_kv(tensor_view<const T, 4> k, tensor_view<const T, 4> v, std::span<const index_t> lengths = {})
        : k_(k), v_(v), lengths_(lengths) {
        KITE_REQUIRE(k.extents() == v.extents(), shape_error, "tensor_kv: k is [", k.extent(0), "][",
                     k.extent(1), "][", k.extent(2), "][", k.extent(3), "] but v is [", v.extent(0), "][",
                     v.extent(1), "][", v.extent(2), "][", v.extent(3), "]; expected equal shapes");
        KITE_REQUIRE(k.strides() == v.strides(), shape_error,
                     "tensor_kv: k and v have different strides; expected the same memory layout");
        KITE_REQUIRE(k.extent(3) <= 1 || k.stride(3) == 1, shape_error, "tensor_kv: head_dim stride ",
                     k.stride(3), "; expected 1");
        KITE_REQUIRE(lengths.empty() || lengths.size() == k.extent(0), shape_error, "tensor_kv: ",
                     lengths.size(), " lengths for a batch of ", k.extent(0), "; expected one per sequence");
        for (index_t b = 0; b < lengths.size(); ++b) {
            KITE_REQUIRE(lengths[b] <= k.extent(1), invalid_argument, "tensor_kv: lengths[", b, "] = ",
                         lengths[b], "; expected <= seq = ", k.extent(1));
        }
    }

    index_t batch() const noexcept { return k_.extent(0); }
    index_t kv_heads() const noexcept { return k_.extent(2); }
    index_t head_dim() const noexcept { return k_.extent(3); }
    index_t length(index_t b) const noexcept { return lengths_.empty() ? k_.extent(1) : lengths_[b]; }
    index_t chunk_tokens() const noexcept { return k_.extent(1) > 0 ? k_.extent(1) : 1; }
    index_t token_stride() const noexcept { return k_.stride(1); }
    const T* keys(index_t b, index_t h, index_t c) const noexcept {
        return k_.data() + b * k_.stride(0) + c * chunk_tokens() * k_.stride(1) + h * k_.stride(2);
    }
    const T* values(index_t b, index_t h, index_t c) const noexcept {
        return v_.data() + b * v_.stride(0) + c * chunk_tokens() * v_.stride(1) + h * v_.stride(2);
    }
    tensor_view<const T, 4> k() const noexcept { return k_; }
    tensor_view<const T, 4> v() const noexcept { return v_; }

private:
    tensor_view<const T, 4> k_;  // [batch][seq][kv_head][head_dim]
    tensor_view<const T, 4> v_;  // [batch][seq][kv_head][head_dim]
    std::span<const index_t> lengths_;  // [batch]
};

static_assert(kv_view<tensor_kv<float>>);

}  // namespace kite::attn
