/// @file kite/cuda/ops.cu
/// The host functions of kite/cuda/ops.hpp: argument checks, then the launchers of ops.cuh.

#include <cmath>
#include <cstdint>

#include "kite/cuda/ops.cuh"
#include "kite/cuda/ops.hpp"

namespace kite::cuda {

namespace {
constexpr std::int64_t int_max = 2147483647;
}  // namespace

void rms_norm(const float* x, const float* w, float* y, int rows, int dim, float eps, cudaStream_t stream) {
    KITE_REQUIRE(rows >= 0, invalid_argument, "cuda::rms_norm: rows = ", rows, "; expected >= 0");
    KITE_REQUIRE(dim >= 1, invalid_argument, "cuda::rms_norm: dim = ", dim, "; expected >= 1");
    KITE_REQUIRE(std::isfinite(eps) && eps >= 0.0f, invalid_argument, "cuda::rms_norm: eps = ", eps,
                 "; expected a finite value >= 0");
    if (rows == 0) return;
    KITE_REQUIRE(x && w && y, invalid_argument, "cuda::rms_norm: a null pointer (x, w or y); expected device buffers");
    kernels::launch_rms_norm(x, w, y, rows, dim, eps, stream);
    check_launch("cuda::rms_norm");
}

void swiglu(const float* gate_up, float* out, int rows, int intermediate, cudaStream_t stream) {
    KITE_REQUIRE(rows >= 0, invalid_argument, "cuda::swiglu: rows = ", rows, "; expected >= 0");
    KITE_REQUIRE(intermediate >= 1, invalid_argument, "cuda::swiglu: intermediate = ", intermediate, "; expected >= 1");
    if (rows == 0) return;
    KITE_REQUIRE(gate_up && out, invalid_argument, "cuda::swiglu: a null pointer (gate_up or out); expected device buffers");
    kernels::launch_swiglu(gate_up, out, rows, intermediate, stream);
    check_launch("cuda::swiglu");
}

void add_inplace(float* x, const float* y, std::int64_t n, cudaStream_t stream) {
    KITE_REQUIRE(n >= 0, invalid_argument, "cuda::add_inplace: n = ", n, "; expected >= 0");
    if (n == 0) return;
    KITE_REQUIRE(x && y, invalid_argument, "cuda::add_inplace: a null pointer (x or y); expected device buffers");
    kernels::launch_add(x, y, n, stream);
    check_launch("cuda::add_inplace");
}

void embed(const float* table, const std::int32_t* ids, float* out, int n, int dim, cudaStream_t stream) {
    KITE_REQUIRE(n >= 0, invalid_argument, "cuda::embed: n = ", n, "; expected >= 0");
    KITE_REQUIRE(dim >= 1, invalid_argument, "cuda::embed: dim = ", dim, "; expected >= 1");
    if (n == 0) return;
    KITE_REQUIRE(table && ids && out, invalid_argument,
                 "cuda::embed: a null pointer (table, ids or out); expected device buffers");
    kernels::launch_embed(table, ids, out, n, dim, stream);
    check_launch("cuda::embed");
}

void convert(const void* x, dtype x_type, void* y, dtype y_type, std::int64_t n, cudaStream_t stream) {
    KITE_REQUIRE(n >= 0, invalid_argument, "cuda::convert: n = ", n, "; expected >= 0");
    if (n == 0) return;
    KITE_REQUIRE(x && y, invalid_argument, "cuda::convert: a null pointer (x or y); expected device buffers");
    using namespace kernels;
    using bf = __nv_bfloat16;
    switch (x_type) {
        case dtype::f32:
            switch (y_type) {
                case dtype::f32: launch_convert<float, float>(x, y, n, stream); break;
                case dtype::bf16: launch_convert<float, bf>(x, y, n, stream); break;
                case dtype::fp16: launch_convert<float, __half>(x, y, n, stream); break;
            }
            break;
        case dtype::bf16:
            switch (y_type) {
                case dtype::f32: launch_convert<bf, float>(x, y, n, stream); break;
                case dtype::bf16: launch_convert<bf, bf>(x, y, n, stream); break;
                case dtype::fp16: launch_convert<bf, __half>(x, y, n, stream); break;
            }
            break;
        case dtype::fp16:
            switch (y_type) {
                case dtype::f32: launch_convert<__half, float>(x, y, n, stream); break;
                case dtype::bf16: launch_convert<__half, bf>(x, y, n, stream); break;
                case dtype::fp16: launch_convert<__half, __half>(x, y, n, stream); break;
            }
            break;
    }
    check_launch("cuda::convert");
}

void rope_kv_append(const rope_kv_append_args& a, cudaStream_t stream) {
    KITE_REQUIRE(a.tokens >= 0, invalid_argument, "cuda::rope_kv_append: tokens = ", a.tokens, "; expected >= 0");
    if (a.tokens == 0) return;
    KITE_REQUIRE(a.num_heads >= 1 && a.num_kv_heads >= 1 && a.num_heads % a.num_kv_heads == 0, invalid_argument,
                 "cuda::rope_kv_append: num_heads = ", a.num_heads, ", num_kv_heads = ", a.num_kv_heads,
                 "; expected num_heads a positive multiple of num_kv_heads");
    KITE_REQUIRE(a.head_dim >= 2, invalid_argument, "cuda::rope_kv_append: head_dim = ", a.head_dim, "; expected >= 2");
    KITE_REQUIRE(a.rotary_dim >= 2 && a.rotary_dim % 2 == 0 && a.rotary_dim <= a.head_dim, invalid_argument,
                 "cuda::rope_kv_append: rotary_dim = ", a.rotary_dim, "; expected an even value in [2, head_dim = ",
                 a.head_dim, "]");
    KITE_REQUIRE(a.block_tokens >= 1 && a.max_blocks_per_seq >= 1, invalid_argument,
                 "cuda::rope_kv_append: block_tokens = ", a.block_tokens, ", max_blocks_per_seq = ",
                 a.max_blocks_per_seq, "; expected both >= 1");
    const std::int64_t q_dense = static_cast<std::int64_t>(a.num_heads) * a.head_dim;
    const std::int64_t kv_dense = static_cast<std::int64_t>(a.num_kv_heads) * a.head_dim;
    const std::int64_t qs = a.q_stride ? a.q_stride : q_dense;
    const std::int64_t kvs = a.kv_stride ? a.kv_stride : kv_dense;
    KITE_REQUIRE(qs >= q_dense, invalid_argument, "cuda::rope_kv_append: q_stride = ", a.q_stride,
                 "; expected 0 or >= num_heads * head_dim = ", q_dense);
    KITE_REQUIRE(kvs >= kv_dense, invalid_argument, "cuda::rope_kv_append: kv_stride = ", a.kv_stride,
                 "; expected 0 or >= num_kv_heads * head_dim = ", kv_dense);
    KITE_REQUIRE(a.q && a.k && a.v && a.positions && a.token_seq && a.block_table && a.k_pool && a.v_pool && a.inv_freq,
                 invalid_argument,
                 "cuda::rope_kv_append: a null pointer (q, k, v, positions, token_seq, block_table, k_pool, v_pool "
                 "or inv_freq); expected device buffers");
    kernels::rope_params p{a.q,         a.k,        a.v,         a.positions,    a.token_seq,     a.block_table,
                           a.inv_freq,  qs,         kvs,         a.num_heads,    a.num_kv_heads,  a.head_dim,
                           a.rotary_dim, a.block_tokens, a.max_blocks_per_seq, a.interleaved};
    switch (a.pool_type) {
        case dtype::f32: kernels::launch_rope_kv_append<float>(p, a.k_pool, a.v_pool, a.tokens, stream); break;
        case dtype::bf16: kernels::launch_rope_kv_append<__nv_bfloat16>(p, a.k_pool, a.v_pool, a.tokens, stream); break;
        case dtype::fp16: kernels::launch_rope_kv_append<__half>(p, a.k_pool, a.v_pool, a.tokens, stream); break;
    }
    check_launch("cuda::rope_kv_append");
}

void paged_attention(const paged_attention_args& a, cudaStream_t stream) {
    KITE_REQUIRE(a.tokens >= 0, invalid_argument, "cuda::paged_attention: tokens = ", a.tokens, "; expected >= 0");
    if (a.tokens == 0) return;
    KITE_REQUIRE(a.num_heads >= 1 && a.num_kv_heads >= 1 && a.num_heads % a.num_kv_heads == 0, invalid_argument,
                 "cuda::paged_attention: num_heads = ", a.num_heads, ", num_kv_heads = ", a.num_kv_heads,
                 "; expected num_heads a positive multiple of num_kv_heads");
    KITE_REQUIRE(a.head_dim >= 1 && a.head_dim <= kernels::attention_max_dim, invalid_argument,
                 "cuda::paged_attention: head_dim = ", a.head_dim, "; expected 1 .. ", kernels::attention_max_dim);
    KITE_REQUIRE(a.block_tokens >= 1 && a.max_blocks_per_seq >= 1, invalid_argument,
                 "cuda::paged_attention: block_tokens = ", a.block_tokens, ", max_blocks_per_seq = ",
                 a.max_blocks_per_seq, "; expected both >= 1");
    KITE_REQUIRE(std::isfinite(a.scale) && a.scale > 0.0f, invalid_argument, "cuda::paged_attention: scale = ", a.scale,
                 "; expected a finite value > 0");
    KITE_REQUIRE(static_cast<std::int64_t>(a.tokens) * a.num_heads <= int_max * std::int64_t{kernels::attention_warps},
                 invalid_argument, "cuda::paged_attention: ", a.tokens, " tokens x ", a.num_heads,
                 " heads; expected fewer (the grid)");
    const std::int64_t q_dense = static_cast<std::int64_t>(a.num_heads) * a.head_dim;
    const std::int64_t qs = a.q_stride ? a.q_stride : q_dense;
    KITE_REQUIRE(qs >= q_dense, invalid_argument, "cuda::paged_attention: q_stride = ", a.q_stride,
                 "; expected 0 or >= num_heads * head_dim = ", q_dense);
    KITE_REQUIRE(a.q && a.o && a.positions && a.token_seq && a.block_table && a.k_pool && a.v_pool, invalid_argument,
                 "cuda::paged_attention: a null pointer (q, o, positions, token_seq, block_table, k_pool or v_pool); "
                 "expected device buffers");
    kernels::attention_params p{a.q,      a.o,         a.positions,    a.token_seq,    a.block_table,
                                qs,       a.tokens,    a.num_heads,    a.num_kv_heads, a.head_dim,
                                a.block_tokens, a.max_blocks_per_seq, a.scale};
    switch (a.pool_type) {
        case dtype::f32: kernels::launch_paged_attention<float>(p, a.k_pool, a.v_pool, stream); break;
        case dtype::bf16: kernels::launch_paged_attention<__nv_bfloat16>(p, a.k_pool, a.v_pool, stream); break;
        case dtype::fp16: kernels::launch_paged_attention<__half>(p, a.k_pool, a.v_pool, stream); break;
    }
    check_launch("cuda::paged_attention");
}

void paged_gather(const paged_gather_args& a, cudaStream_t stream) {
    KITE_REQUIRE(a.tokens >= 0, invalid_argument, "cuda::paged_gather: tokens = ", a.tokens, "; expected >= 0");
    if (a.tokens == 0) return;
    KITE_REQUIRE(a.num_kv_heads >= 1 && a.head_dim >= 1, invalid_argument, "cuda::paged_gather: num_kv_heads = ",
                 a.num_kv_heads, ", head_dim = ", a.head_dim, "; expected both >= 1");
    KITE_REQUIRE(a.block_tokens >= 1 && a.max_blocks_per_seq >= 1, invalid_argument,
                 "cuda::paged_gather: block_tokens = ", a.block_tokens, ", max_blocks_per_seq = ",
                 a.max_blocks_per_seq, "; expected both >= 1");
    KITE_REQUIRE(static_cast<std::int64_t>(a.tokens) <= static_cast<std::int64_t>(a.block_tokens) * a.max_blocks_per_seq,
                 invalid_argument, "cuda::paged_gather: tokens = ", a.tokens, "; expected at most block_tokens x "
                 "max_blocks_per_seq = ", static_cast<std::int64_t>(a.block_tokens) * a.max_blocks_per_seq);
    KITE_REQUIRE(a.k_pool && a.v_pool && a.k && a.v && a.block_table, invalid_argument,
                 "cuda::paged_gather: a null pointer (k_pool, v_pool, k, v or block_table); expected device buffers");
    const std::int64_t n = static_cast<std::int64_t>(a.tokens) * a.num_kv_heads * a.head_dim;
    switch (a.pool_type) {
        case dtype::f32:
            kernels::launch_paged_gather<float>(a.k_pool, a.v_pool, a.k, a.v, a.block_table, n, a.num_kv_heads,
                                                a.head_dim, a.block_tokens, stream);
            break;
        case dtype::bf16:
        case dtype::fp16:  // a bit copy: the 16-bit types move alike
            kernels::launch_paged_gather<std::uint16_t>(a.k_pool, a.v_pool, a.k, a.v, a.block_table, n,
                                                        a.num_kv_heads, a.head_dim, a.block_tokens, stream);
            break;
    }
    check_launch("cuda::paged_gather");
}

}  // namespace kite::cuda
