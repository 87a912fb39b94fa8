#pragma once
/// @file kite/cuda/flash.hpp
/// Flash attention forward on the GPU (FlashAttention-2 style: tiles of queries stay in
/// registers, keys and values stream through shared memory, an online softmax in fp32, the
/// score matrix never reaches device memory). bf16 or fp16 in and out, fp32 accumulation;
/// causal or not; MHA, GQA and MQA (num_heads a multiple of num_kv_heads); head_dim 64 or 128;
/// variable-length batches packed back to back as flash_attn_varlen_func takes them.
///
///   kite::cuda::flash_args a{.q = q, .k = k, .v = v, .o = o,
///       .cu_seqlens_q = cu_q, .cu_seqlens_k = cu_k, .batch = 4, .max_seqlen_q = 4096, .max_seqlen_k = 4096,
///       .num_heads = 32, .num_kv_heads = 8, .head_dim = 128, .causal = true,
///       .scale = 1 / std::sqrt(128.f), .type = kite::cuda::dtype::bf16};
///   kite::cuda::flash_forward(a, stream);
///
/// Layouts (row-major, device memory): q, o [total_q][num_heads][head_dim]; k, v
/// [total_k][num_kv_heads][head_dim]; sequence b owns rows cu_seqlens_q[b] .. cu_seqlens_q[b+1]
/// of q and cu_seqlens_k[b] .. cu_seqlens_k[b+1] of k and v. Causal masking is bottom-right
/// aligned, as kite::attn::reference: query i of a q_len-query sequence sees keys
/// j <= k_len - q_len + i; a query that sees no key gets a zero output row.
/// cu_seqlens live on the device and are trusted: max_seqlen_q and max_seqlen_k must bound them
/// (plan::check_cu_seqlens checks a host copy).

#include <cstdint>

#include "kite/cuda/runtime.hpp"

namespace kite::cuda {

struct flash_args {
    const void* q = nullptr;             ///< [total_q][num_heads][head_dim], `type`
    const void* k = nullptr;             ///< [total_k][num_kv_heads][head_dim], `type`
    const void* v = nullptr;             ///< [total_k][num_kv_heads][head_dim], `type`
    void* o = nullptr;                   ///< [total_q][num_heads][head_dim], `type`
    const std::int32_t* cu_seqlens_q = nullptr;  ///< device [batch + 1]
    const std::int32_t* cu_seqlens_k = nullptr;  ///< device [batch + 1]
    int batch = 0;
    int max_seqlen_q = 0;                ///< the longest q sequence (sizes the grid)
    int max_seqlen_k = 0;
    int num_heads = 0;
    int num_kv_heads = 0;
    int head_dim = 0;                    ///< 64 or 128
    bool causal = false;
    float scale = 0;                     ///< softmax scale, usually 1 / sqrt(head_dim)
    dtype type = dtype::bf16;            ///< bf16 or fp16
    float* lse = nullptr;                ///< optional [num_heads][total_q] natural-log sum-exp of the scaled scores
                                         ///< (-inf for a query that sees no key)
};

/// Checks the arguments (kite::invalid_argument naming the bad one) and launches the kernel on
/// `stream`. Asynchronous: errors inside the kernel surface at the next synchronizing call.
void flash_forward(const flash_args& a, cudaStream_t stream = nullptr);

}  // namespace kite::cuda
