#pragma once
/// @file kite/attn/detail/checks.hpp
/// Argument checks shared by the attention kernels' public entry points (run once per call).

#include <cmath>
#include <span>

#include "kite/attn/concepts.hpp"
#include "kite/core/error.hpp"
#include "kite/core/tensor.hpp"
#include "kite/core/validate.hpp"

namespace kite::attn::detail {

/// Query length of sequence b (q_lens empty: the full q_seq extent).
inline index_t q_length(std::span<const index_t> q_lens, index_t q_seq, index_t b) noexcept {
    return q_lens.empty() ? q_seq : q_lens[b];
}

inline float checked_scale(const options& opt, index_t head_dim, const char* who) {
    KITE_REQUIRE(std::isfinite(opt.scale) && opt.scale >= 0.0f, invalid_argument, who, ": scale = ",
                 opt.scale, "; expected a finite value >= 0 (0 selects 1/sqrt(head_dim))");
    return opt.scale > 0.0f ? opt.scale : 1.0f / std::sqrt(static_cast<float>(head_dim));
}

inline void check_alibi(const options& opt, index_t n_q, const char* who) {
    KITE_REQUIRE(opt.alibi_slopes.empty() || opt.alibi_slopes.size() == n_q, shape_error, who, ": ",
                 opt.alibi_slopes.size(), " ALiBi slopes for ", n_q, " query heads; expected ", n_q, " or none");
    require_finite(opt.alibi_slopes, "alibi_slopes");
}

/// Validates a prefill call; returns the effective softmax scale.
template <head_layout L, kv_view KV>
float check_prefill(const char* who, tensor_view<const float, 4> q, const KV& kv, tensor_view<float, 4> o,
                    const options& opt, std::span<const index_t> q_lens) {
    const index_t batch = q.extent(0), q_seq = q.extent(1), n_q = q.extent(2), d = q.extent(3);
    KITE_REQUIRE(batch == kv.batch(), shape_error, who, ": q has batch ", batch, " but the kv view has ",
                 kv.batch(), " sequences; expected equal");
    KITE_REQUIRE(d >= 1 && d == kv.head_dim(), shape_error, who, ": q head_dim ", d, " but kv head_dim ",
                 kv.head_dim(), "; expected equal and >= 1");
    KITE_REQUIRE(o.extents() == q.extents(), shape_error, who, ": o is [", o.extent(0), "][", o.extent(1), "][",
                 o.extent(2), "][", o.extent(3), "]; expected the shape of q [", batch, "][", q_seq, "][", n_q,
                 "][", d, "]");
    KITE_REQUIRE(d == 1 || (q.stride(3) == 1 && o.stride(3) == 1), shape_error, who,
                 ": head_dim stride of q / o is ", q.stride(3), " / ", o.stride(3), "; expected 1");
    L::validate(n_q, kv.kv_heads());
    KITE_REQUIRE(q_lens.empty() || q_lens.size() == batch, shape_error, who, ": ", q_lens.size(),
                 " q_lens for a batch of ", batch, "; expected one per sequence or none");
    for (index_t b = 0; b < batch; ++b) {
        const index_t ql = q_length(q_lens, q_seq, b);
        KITE_REQUIRE(ql <= q_seq, invalid_argument, who, ": q_lens[", b, "] = ", ql, "; expected <= q_seq = ",
                     q_seq);
        KITE_REQUIRE(opt.mask != mask::causal || ql <= kv.length(b), invalid_argument, who, ": sequence ", b,
                     " has ", ql, " queries but ", kv.length(b),
                     " keys; a causal mask needs q_len <= kv_len (queries are the last positions)");
        for (index_t i = 0; i < ql; ++i)
            for (index_t h = 0; h < n_q; ++h)
                require_finite(std::span<const float>(q.ptr(b, i, h), d), "q");
    }
    check_alibi(opt, n_q, who);
    return checked_scale(opt, d, who);
}

/// Validates a decode call; returns the effective softmax scale.
template <head_layout L, kv_view KV>
float check_decode(const char* who, tensor_view<const float, 3> q, const KV& kv, tensor_view<float, 3> o,
                   const options& opt) {
    const index_t batch = q.extent(0), n_q = q.extent(1), d = q.extent(2);
    KITE_REQUIRE(batch == kv.batch(), shape_error, who, ": q has batch ", batch, " but the kv view has ",
                 kv.batch(), " sequences; expected equal");
    KITE_REQUIRE(d >= 1 && d == kv.head_dim(), shape_error, who, ": q head_dim ", d, " but kv head_dim ",
                 kv.head_dim(), "; expected equal and >= 1");
    KITE_REQUIRE(o.extents() == q.extents(), shape_error, who, ": o is [", o.extent(0), "][", o.extent(1), "][",
                 o.extent(2), "]; expected the shape of q [", batch, "][", n_q, "][", d, "]");
    KITE_REQUIRE(d == 1 || (q.stride(2) == 1 && o.stride(2) == 1), shape_error, who,
                 ": head_dim stride of q / o is ", q.stride(2), " / ", o.stride(2), "; expected 1");
    L::validate(n_q, kv.kv_heads());
    for (index_t b = 0; b < batch; ++b)
        for (index_t h = 0; h < n_q; ++h) require_finite(std::span<const float>(q.ptr(b, h), d), "q");
    check_alibi(opt, n_q, who);
    return checked_scale(opt, d, who);
}

/// Row pointer of token t of sequence b, kv head h (keys or values), through the view's chunks.
template <bool Keys, kv_view KV>
KITE_FORCE_INLINE const typename KV::value_type* kv_row(const KV& kv, index_t b, index_t h, index_t t) noexcept {
    const index_t c = kv.chunk_tokens();
    const auto* base = Keys ? kv.keys(b, h, t / c) : kv.values(b, h, t / c);
    return base + (t % c) * kv.token_stride();
}

/// A decode query [batch][n_q][dim] seen as a prefill query [batch][1][n_q][dim].
template <class T>
tensor_view<T, 4> as_single_query(tensor_view<T, 3> x) noexcept {
    return tensor_view<T, 4>(x.data(), {x.extent(0), 1, x.extent(1), x.extent(2)},
                             {x.stride(0), x.stride(0), x.stride(1), x.stride(2)});
}

}  // namespace kite::attn::detail
