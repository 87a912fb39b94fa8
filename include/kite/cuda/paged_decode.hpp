#pragma once
/// @file kite/cuda/paged_decode.hpp
/// Paged decode attention on the GPU: one new query token per sequence attends over that
/// sequence's keys and values in a kite::kv::paged pool, through its block table. GQA (and
/// MHA, MQA): one thread block serves all the query heads of a kv head, so each K/V block is
/// read from device memory once. Long contexts are split (split-K, "flash decoding"): each split
/// writes a partial output with its max and sum, and a second kernel combines them.
///
///   auto tables = kite::cuda::pack_block_tables(cache, seqs);      // host
///   kite::cuda::paged_decode_args a{...};                          // device pointers
///   kite::cuda::device_buffer<float> ws(kite::cuda::paged_decode_workspace_floats(a));
///   a.workspace = ws.data();
///   kite::cuda::paged_decode(a, stream);
///
/// Pool layout (one layer, kite::kv::paged): k_pool, v_pool [num_blocks][num_kv_heads]
/// [block_tokens][head_dim]. Query head h reads kv head h / (num_heads / num_kv_heads). The query
/// is the sequence's last token: it sees all seq_lens[b] tokens (no mask needed).

#include <cstddef>
#include <cstdint>

#include "kite/cuda/runtime.hpp"

namespace kite::cuda {

struct paged_decode_args {
    const void* q = nullptr;       ///< [batch][num_heads][head_dim], `type`
    const void* k_pool = nullptr;  ///< [num_blocks][num_kv_heads][block_tokens][head_dim], `type`
    const void* v_pool = nullptr;  ///< same layout as k_pool
    void* o = nullptr;             ///< [batch][num_heads][head_dim], `type`
    const std::int32_t* block_table = nullptr;  ///< device [batch][max_blocks_per_seq]
    const std::int32_t* seq_lens = nullptr;     ///< device [batch] tokens (>= 0)
    int batch = 0;
    int num_heads = 0;
    int num_kv_heads = 0;
    int head_dim = 0;              ///< 64 or 128
    int block_tokens = 0;          ///< tokens per pool block (kite::kv::paged<B>: B), 8 .. 256
    int max_blocks_per_seq = 0;    ///< row stride of block_table
    int max_seq_len = 0;           ///< an upper bound of seq_lens (host side; plans the splits)
    float scale = 0;               ///< softmax scale
    dtype type = dtype::bf16;      ///< q, pools and o: f32, bf16 or fp16
    int num_splits = 0;            ///< 0: plan::decode_splits chooses; 1: no split
    float* workspace = nullptr;    ///< device, paged_decode_workspace_floats(*this) floats when splits > 1
};

/// The number of splits paged_decode will use for these arguments on the current device.
int paged_decode_splits(const paged_decode_args& a);
/// Floats of workspace paged_decode needs (0 when it will not split).
std::size_t paged_decode_workspace_floats(const paged_decode_args& a);
/// Checks the arguments and launches (asynchronous).
void paged_decode(const paged_decode_args& a, cudaStream_t stream = nullptr);

}  // namespace kite::cuda
