#pragma once
/// @file kite/cuda/ops.hpp
/// The element-wise and row-wise steps of a decoder layer on the GPU, fp32 activations:
///
///   rms_norm            y = x / sqrt(mean(x^2) + eps) * w, per row
///   swiglu              out[r][i] = silu(gu[r][i]) * gu[r][I + i]  (gate rows first, as kite's fused `up`)
///   rope_kv_append      rotates q and k of new tokens at their positions (RoPE, rotate_half or
///                       interleaved pairs, rotary_dim <= head_dim), then writes k and v into a
///                       kite::kv::paged pool through the block table: one kernel for both
///   add                 x += y
///   embed               rows of an embedding table for token ids
///   paged_attention     causal attention of fp32 queries over a kite::kv::paged pool: each query
///                       token sees its sequence's keys at positions <= its own (prefill, and
///                       decode for head sizes paged_decode does not take); any head_dim <= 256
///   convert             f32 <-> bf16 / fp16 element conversion (round to nearest even)
///   paged_gather        the first keys and values of one sequence, from a kite::kv::paged pool
///                       into dense [tokens][num_kv_heads][head_dim] arrays (the pool's dtype)

#include <cstdint>

#include "kite/cuda/runtime.hpp"

namespace kite::cuda {

void rms_norm(const float* x, const float* w, float* y, int rows, int dim, float eps, cudaStream_t stream = nullptr);
void swiglu(const float* gate_up, float* out, int rows, int intermediate, cudaStream_t stream = nullptr);
void add_inplace(float* x, const float* y, std::int64_t n, cudaStream_t stream = nullptr);
void embed(const float* table, const std::int32_t* ids, float* out, int n, int dim, cudaStream_t stream = nullptr);

struct rope_kv_append_args {
    float* q = nullptr;                 ///< [tokens][num_heads][head_dim], rotated in place
    const float* k = nullptr;           ///< [tokens][num_kv_heads][head_dim] (rotated on the way into the pool)
    const float* v = nullptr;           ///< [tokens][num_kv_heads][head_dim]
    const std::int32_t* positions = nullptr;  ///< device [tokens]: each token's position in its sequence
    const std::int32_t* token_seq = nullptr;  ///< device [tokens]: each token's row in block_table
    const std::int32_t* block_table = nullptr;  ///< device [batch][max_blocks_per_seq]
    void* k_pool = nullptr;             ///< [num_blocks][num_kv_heads][block_tokens][head_dim], `pool_type`
    void* v_pool = nullptr;
    const float* inv_freq = nullptr;    ///< device [rotary_dim / 2]: theta_i (kite::pos::rope's frequencies)
    int tokens = 0, num_heads = 0, num_kv_heads = 0, head_dim = 0, rotary_dim = 0;
    int block_tokens = 0, max_blocks_per_seq = 0;
    bool interleaved = false;           ///< pairs (2i, 2i+1) instead of (i, i + rotary_dim/2)
    dtype pool_type = dtype::f32;
    /// Elements from one token's row of q (of k and v) to the next; 0: dense (num_heads *
    /// head_dim, num_kv_heads * head_dim). A fused q|k|v projection [tokens][q_dim + 2 kv_dim]
    /// passes q_dim + 2 kv_dim for both.
    std::int64_t q_stride = 0, kv_stride = 0;
};
void rope_kv_append(const rope_kv_append_args& a, cudaStream_t stream = nullptr);

struct paged_attention_args {
    const float* q = nullptr;           ///< [tokens][num_heads][head_dim] (row stride q_stride)
    float* o = nullptr;                 ///< [tokens][num_heads][head_dim], dense
    const std::int32_t* positions = nullptr;    ///< device [tokens]: query t sees keys [0, positions[t]]
    const std::int32_t* token_seq = nullptr;    ///< device [tokens]: each token's row in block_table
    const std::int32_t* block_table = nullptr;  ///< device [batch][max_blocks_per_seq]
    const void* k_pool = nullptr;       ///< [num_blocks][num_kv_heads][block_tokens][head_dim], `pool_type`
    const void* v_pool = nullptr;
    int tokens = 0, num_heads = 0, num_kv_heads = 0, head_dim = 0;  ///< head_dim 1 .. 256
    int block_tokens = 0, max_blocks_per_seq = 0;
    float scale = 0;                    ///< softmax scale (usually 1 / sqrt(head_dim))
    dtype pool_type = dtype::f32;
    std::int64_t q_stride = 0;          ///< 0: dense (num_heads * head_dim)
};
/// o = softmax(q k^T * scale) v per query head, over keys [0, positions[t]] of the token's
/// sequence (query head h reads kv head h / (num_heads / num_kv_heads)). One warp per (token,
/// head), fp32 online softmax: simple and exact rather than fast.
void paged_attention(const paged_attention_args& a, cudaStream_t stream = nullptr);

/// y[i] = x[i] converted from x_type to y_type (device buffers of n elements; round to nearest even).
void convert(const void* x, dtype x_type, void* y, dtype y_type, std::int64_t n, cudaStream_t stream = nullptr);

struct paged_gather_args {
    const void* k_pool = nullptr;       ///< [num_blocks][num_kv_heads][block_tokens][head_dim], `pool_type`
    const void* v_pool = nullptr;
    void* k = nullptr;                  ///< [tokens][num_kv_heads][head_dim], `pool_type`, dense
    void* v = nullptr;
    const std::int32_t* block_table = nullptr;  ///< device [max_blocks_per_seq]: the sequence's row (trusted)
    int tokens = 0, num_kv_heads = 0, head_dim = 0;
    int block_tokens = 0, max_blocks_per_seq = 0;  ///< tokens <= block_tokens * max_blocks_per_seq
    dtype pool_type = dtype::f32;
};
/// Copies positions 0 .. tokens-1 of one sequence's keys and values out of the pool, bit for bit.
void paged_gather(const paged_gather_args& a, cudaStream_t stream = nullptr);

}  // namespace kite::cuda
