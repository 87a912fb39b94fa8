#pragma once
/// @file kite/attn/layout.hpp
/// Head layouts: multi-head (MHA), multi-query (MQA) and grouped-query (GQA) attention.
/// The policy fixes the indexing at compile time; head counts come from the model config and
/// are validated at run time. MQA and GQA shrink the KV cache by n_q / n_kv.

#include "kite/attn/concepts.hpp"
#include "kite/core/error.hpp"

namespace kite::attn {

/// Multi-head attention: every query head has its own key/value head.
struct mha {
    static constexpr const char* name = "mha";
    static void validate(index_t n_q, index_t n_kv) {
        KITE_REQUIRE(n_q >= 1 && n_kv == n_q, config_error, "mha: n_q = ", n_q, ", n_kv = ", n_kv,
                     "; expected n_kv == n_q >= 1");
    }
    static index_t kv_head(index_t h, index_t, index_t) noexcept { return h; }
};

/// Multi-query attention: all query heads share one key/value head.
struct mqa {
    static constexpr const char* name = "mqa";
    static void validate(index_t n_q, index_t n_kv) {
        KITE_REQUIRE(n_q >= 1 && n_kv == 1, config_error, "mqa: n_q = ", n_q, ", n_kv = ", n_kv,
                     "; expected one kv head (n_kv == 1) and n_q >= 1");
    }
    static index_t kv_head(index_t, index_t, index_t) noexcept { return 0; }
};

/// Grouped-query attention: n_q / n_kv consecutive query heads share a key/value head.
struct gqa {
    static constexpr const char* name = "gqa";
    static void validate(index_t n_q, index_t n_kv) {
        KITE_REQUIRE(n_q >= 1 && n_kv >= 1 && n_q % n_kv == 0, config_error, "gqa: n_q = ", n_q,
                     ", n_kv = ", n_kv, "; expected n_kv >= 1 dividing n_q");
    }
    static index_t kv_head(index_t h, index_t n_q, index_t n_kv) noexcept { return h / (n_q / n_kv); }
};

static_assert(head_layout<mha> && head_layout<mqa> && head_layout<gqa>);

/// Bytes a KV cache needs for `tokens` tokens: 2 (K and V) x layers x kv heads x dim x bytes.
constexpr index_t kv_cache_bytes(index_t tokens, index_t layers, index_t n_kv, index_t head_dim,
                                 index_t bytes_per_scalar) noexcept {
    return 2 * tokens * layers * n_kv * head_dim * bytes_per_scalar;
}

}  // namespace kite::attn
