#pragma once
/// @file kite/kv/detail/common.hpp
/// Pieces shared by the caches: a registry of live sequences with reusable ids, and the
/// argument checks of write().

#include <span>
#include <vector>

#include "kite/core/error.hpp"
#include "kite/core/half.hpp"
#include "kite/core/simd_convert.hpp"
#include "kite/core/tensor.hpp"
#include "kite/core/validate.hpp"
#include "kite/kv/concepts.hpp"

namespace kite::kv::detail {

/// Live sequences, each with a State, addressed by reusable seq_ids.
template <class State>
class seq_registry {
public:
    seq_id create(State s) {
        if (!free_ids_.empty()) {
            const seq_id id = free_ids_.back();
            free_ids_.pop_back();
            slots_[id] = std::move(s);
            alive_[id] = true;
            return id;
        }
        KITE_REQUIRE(slots_.size() < 0xffffffffu, invalid_argument, "kv cache: too many sequences");
        slots_.push_back(std::move(s));
        alive_.push_back(true);
        return static_cast<seq_id>(slots_.size() - 1);
    }
    bool alive(seq_id id) const noexcept { return id < alive_.size() && alive_[id]; }
    State& get(seq_id id, const char* who) {
        require(id, who);
        return slots_[id];
    }
    const State& get(seq_id id, const char* who) const {
        require(id, who);
        return slots_[id];
    }
    /// Unchecked access for views (ids were checked when the view was made).
    const State& at(seq_id id) const noexcept { return slots_[id]; }
    void destroy(seq_id id) {
        slots_[id] = State{};
        alive_[id] = false;
        free_ids_.push_back(id);
    }
    index_t live() const noexcept { return slots_.size() - free_ids_.size(); }
    template <class F>
    void for_each(F&& f) const {
        for (index_t i = 0; i < slots_.size(); ++i)
            if (alive_[i]) f(static_cast<seq_id>(i), slots_[i]);
    }
    void require(seq_id id, const char* who) const {
        KITE_REQUIRE(alive(id), invalid_argument, who, ": sequence ", id,
                     " is not live; expected an id returned by add_sequence/fork and not yet freed");
    }

private:
    std::vector<State> slots_;
    std::vector<bool> alive_;
    std::vector<seq_id> free_ids_;
};

/// Checks a bulk write: k, v: [token][kv_head][head_dim] with contiguous rows, finite values.
inline void check_rows(tensor_view<const float, 3> k, tensor_view<const float, 3> v, const cache_shape& s,
                       const char* who) {
    KITE_REQUIRE(k.extents() == v.extents(), shape_error, who, ": k is [", k.extent(0), "][", k.extent(1), "][",
                 k.extent(2), "] but v is [", v.extent(0), "][", v.extent(1), "][", v.extent(2),
                 "]; expected equal shapes");
    KITE_REQUIRE(k.extent(1) == s.kv_heads && k.extent(2) == s.head_dim, shape_error, who, ": rows are [",
                 k.extent(1), "][", k.extent(2), "]; expected [kv_heads = ", s.kv_heads, "][head_dim = ",
                 s.head_dim, "]");
    KITE_REQUIRE(s.head_dim <= 1 || (k.stride(2) == 1 && v.stride(2) == 1), shape_error, who,
                 ": head_dim stride of k / v is ", k.stride(2), " / ", v.stride(2), "; expected 1");
    for (index_t t = 0; t < k.extent(0); ++t)
        for (index_t h = 0; h < s.kv_heads; ++h) {
            require_finite(std::span<const float>(k.ptr(t, h), s.head_dim), "k");
            require_finite(std::span<const float>(v.ptr(t, h), s.head_dim), "v");
        }
}

/// One token's rows [kv_head][head_dim] at p, as a [1][kv_head][head_dim] tensor.
inline tensor_view<const float, 3> one_token(const float* p, const cache_shape& s) noexcept {
    return tensor_view<const float, 3>(p, {1, s.kv_heads, s.head_dim}, {s.kv_heads * s.head_dim, s.head_dim, 1});
}

/// Checks a write of k.extent(0) tokens from `first` into a sequence of `length` tokens.
inline void check_write(index_t layer, seq_id s, index_t first, index_t length, tensor_view<const float, 3> k,
                        tensor_view<const float, 3> v, const cache_shape& shape, const char* who) {
    KITE_REQUIRE(layer < shape.layers, invalid_argument, who, ": layer = ", layer, "; expected < ", shape.layers);
    KITE_REQUIRE(first + k.extent(0) <= length, invalid_argument, who, ": tokens [", first, ", ", first + k.extent(0),
                 ") of sequence ", s, " of length ", length, "; expected positions below the length (call append first)");
    check_rows(k, v, shape, who);
}

inline void check_shape(const cache_shape& s, const char* who) {
    KITE_REQUIRE(s.layers >= 1 && s.kv_heads >= 1 && s.head_dim >= 1, invalid_argument, who, ": layers = ",
                 s.layers, ", kv_heads = ", s.kv_heads, ", head_dim = ", s.head_dim, "; expected all >= 1");
}

/// Stores n floats as T.
template <class T>
inline void store_row(T* KITE_RESTRICT dst, const float* KITE_RESTRICT src, index_t n) noexcept {
    simd::store_from_float(src, dst, n);
}

}  // namespace kite::kv::detail
