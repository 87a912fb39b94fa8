/// @file kite/cuda/paged_decode.cu
/// The host functions of kite/cuda/paged_decode.hpp: argument checks, split planning, then the
/// launchers of paged_decode.cuh.

#include <cmath>
#include <cstdint>

#include "kite/cuda/paged_decode.cuh"
#include "kite/cuda/paged_decode.hpp"
#include "kite/cuda/plan.hpp"

namespace kite::cuda {

namespace {

constexpr std::int64_t int_max = 2147483647;
constexpr int max_splits = 1024;

bool aligned16(const void* p) noexcept { return reinterpret_cast<std::uintptr_t>(p) % 16 == 0; }

/// Query heads per pass over a kv head's blocks (a power of two, at most 8).
int heads_per_chunk(int group) noexcept { return group <= 1 ? 1 : group <= 2 ? 2 : group <= 4 ? 4 : 8; }

/// Checks everything but the workspace; the shape checks come first so that bad arguments throw
/// before any CUDA call.
void check_args(const paged_decode_args& a, const char* fn) {
    KITE_REQUIRE(a.type == dtype::f32 || a.type == dtype::bf16 || a.type == dtype::fp16, invalid_argument, fn,
                 ": type = ", static_cast<int>(a.type), "; expected f32, bf16 or fp16");
    KITE_REQUIRE(a.batch >= 1, invalid_argument, fn, ": batch = ", a.batch, "; expected >= 1 sequences");
    KITE_REQUIRE(a.num_heads >= 1 && a.num_kv_heads >= 1 && a.num_heads % a.num_kv_heads == 0, invalid_argument, fn,
                 ": num_heads = ", a.num_heads, ", num_kv_heads = ", a.num_kv_heads,
                 "; expected num_kv_heads >= 1 dividing num_heads");
    KITE_REQUIRE(static_cast<std::int64_t>(a.batch) * a.num_heads <= int_max, invalid_argument, fn, ": batch = ",
                 a.batch, " x num_heads = ", a.num_heads, "; expected fewer than 2^31 query rows");
    KITE_REQUIRE(a.head_dim == 64 || a.head_dim == 128, invalid_argument, fn, ": head_dim = ", a.head_dim,
                 "; expected 64 or 128");
    KITE_REQUIRE(a.block_tokens >= 1 && a.block_tokens <= 4096, invalid_argument, fn, ": block_tokens = ",
                 a.block_tokens, "; expected 1 .. 4096 tokens per pool block");
    KITE_REQUIRE(a.max_blocks_per_seq >= 1, invalid_argument, fn, ": max_blocks_per_seq = ", a.max_blocks_per_seq,
                 "; expected >= 1 (the row stride of block_table)");
    KITE_REQUIRE(static_cast<std::int64_t>(a.max_blocks_per_seq) * a.block_tokens <= int_max &&
                     static_cast<std::int64_t>(a.max_blocks_per_seq) * a.batch <= int_max,
                 invalid_argument, fn, ": max_blocks_per_seq = ", a.max_blocks_per_seq, " x block_tokens = ",
                 a.block_tokens, " x batch = ", a.batch, "; expected int32 token and table sizes");
    KITE_REQUIRE(a.max_seq_len >= 0, invalid_argument, fn, ": max_seq_len = ", a.max_seq_len, "; expected >= 0");
    KITE_REQUIRE(std::isfinite(a.scale) && a.scale >= 0.0f, invalid_argument, fn, ": scale = ", a.scale,
                 "; expected a finite value >= 0 (0 selects 1/sqrt(head_dim))");
    KITE_REQUIRE(a.num_splits >= 0 && a.num_splits <= max_splits, invalid_argument, fn, ": num_splits = ",
                 a.num_splits, "; expected 0 (automatic) .. ", max_splits);
    KITE_REQUIRE(a.q && a.k_pool && a.v_pool && a.o && a.block_table && a.seq_lens, invalid_argument, fn,
                 ": a null pointer (q, k_pool, v_pool, o, block_table or seq_lens); expected device buffers");
    KITE_REQUIRE(aligned16(a.k_pool) && aligned16(a.v_pool), invalid_argument, fn,
                 ": k_pool / v_pool not 16-byte aligned; expected cudaMalloc'd pools");
}

int splits_of(const paged_decode_args& a) {
    if (a.num_splits > 0) return a.num_splits;
    const int group = a.num_heads / a.num_kv_heads;
    const int gh = heads_per_chunk(group);
    const std::int64_t chunks = (group + gh - 1) / gh;
    return plan::decode_splits(static_cast<std::int64_t>(a.batch) * a.num_kv_heads * chunks, a.max_seq_len,
                               current_device().sm_count);
}

}  // namespace

int paged_decode_splits(const paged_decode_args& a) {
    check_args(a, "cuda::paged_decode_splits");
    return splits_of(a);
}

std::size_t paged_decode_workspace_floats(const paged_decode_args& a) {
    check_args(a, "cuda::paged_decode_workspace_floats");
    const int s = splits_of(a);
    if (s <= 1) return 0;
    return static_cast<std::size_t>(a.batch) * a.num_heads * s * (a.head_dim + 2);
}

void paged_decode(const paged_decode_args& a, cudaStream_t stream) {
    check_args(a, "cuda::paged_decode");
    const int group = a.num_heads / a.num_kv_heads;
    const int gh = heads_per_chunk(group);
    const int chunks = (group + gh - 1) / gh;
    const int splits = splits_of(a);
    const std::int64_t blocks = static_cast<std::int64_t>(a.batch) * a.num_kv_heads * chunks * splits;
    KITE_REQUIRE(blocks <= int_max, invalid_argument, "cuda::paged_decode: ", blocks,
                 " thread blocks (batch x kv heads x head chunks x splits); expected < 2^31");
    KITE_REQUIRE(splits == 1 || a.workspace != nullptr, invalid_argument, "cuda::paged_decode: ", splits,
                 " splits and workspace = null; expected paged_decode_workspace_floats(a) = ",
                 static_cast<std::size_t>(a.batch) * a.num_heads * splits * (a.head_dim + 2), " floats");

    dev::paged_impl::params p;
    p.q = a.q;
    p.k_pool = a.k_pool;
    p.v_pool = a.v_pool;
    p.o = a.o;
    p.table = a.block_table;
    p.lens = a.seq_lens;
    p.batch = a.batch;
    p.num_heads = a.num_heads;
    p.num_kv_heads = a.num_kv_heads;
    p.group = group;
    p.head_chunks = chunks;
    p.block_tokens = a.block_tokens;
    p.max_blocks = a.max_blocks_per_seq;
    p.splits = splits;
    const float scale = a.scale > 0.0f ? a.scale : 1.0f / std::sqrt(static_cast<float>(a.head_dim));
    p.scale_log2 = scale * 1.4426950408889634f;
    if (splits > 1) {
        p.ws_o = a.workspace;
        p.ws_ml = a.workspace + static_cast<std::size_t>(a.batch) * a.num_heads * splits * a.head_dim;
    }
    using namespace dev::paged_impl;
    switch (a.type) {
        case dtype::f32: launch<dtype::f32>(p, a.head_dim, gh, blocks, stream); break;
        case dtype::bf16: launch<dtype::bf16>(p, a.head_dim, gh, blocks, stream); break;
        case dtype::fp16: launch<dtype::fp16>(p, a.head_dim, gh, blocks, stream); break;
    }
}

}  // namespace kite::cuda
