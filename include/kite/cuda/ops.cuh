#pragma once
/// @file kite/cuda/ops.cuh
/// Kernels of the element-wise and row-wise steps of a decoder layer (declared for the host in
/// kite/cuda/ops.hpp): RMSNorm, SwiGLU, the residual add, the embedding gather, RoPE fused with
/// the KV-cache append, a simple causal paged attention, and dtype conversion. fp32 activations;
/// the KV pools may be f32, bf16 or fp16.
///
/// Numerics follow kite's CPU layers (kite/model/layers.hpp, kite/pos/rope.hpp):
///   rms_norm   y = x * (1 / sqrt(sum(x^2) / n + eps)) * w, all in float (no (1 + w) offset);
///   swiglu     silu(g) * u with silu(x) = x / (1 + exp(-x));
///   RoPE       angle = float(pos) * inv_freq[i] (one float32 product), cos/sin of that angle
///              taken in double and rounded to float (as kite's table), and the products of the
///              rotation rounded separately (__fmul_rn: no fused multiply-add), so the rotated
///              rows equal the CPU's bit for bit when the CPU does not contract either.

#include <cstdint>

#include "kite/cuda/common.cuh"

namespace kite::cuda::kernels {

using dev::from_f32;
using dev::storage_t;
using dev::to_f32;
using dev::warp_max;
using dev::warp_sum;

// ---- rms_norm: one block per row --------------------------------------------------------------

template <int Threads>
__global__ void __launch_bounds__(Threads) rms_norm_kernel(const float* x, const float* __restrict__ w, float* y,
                                                           int dim, float eps) {
    __shared__ float partial[Threads / 32];
    const std::int64_t row = blockIdx.x;
    const float* xr = x + row * dim;
    float* yr = y + row * dim;
    float ss = 0.0f;
    for (int i = threadIdx.x; i < dim; i += Threads) {
        const float v = xr[i];
        ss = fmaf(v, v, ss);
    }
    ss = warp_sum(ss);
    if ((threadIdx.x & 31) == 0) partial[threadIdx.x >> 5] = ss;
    __syncthreads();
    float total = 0.0f;
#pragma unroll
    for (int i = 0; i < Threads / 32; ++i) total += partial[i];
    const float ms = total / static_cast<float>(dim);
    const float inv = 1.0f / sqrtf(ms + eps);
    // y may alias x: each thread rewrites only the elements it read above, after the barrier.
    for (int i = threadIdx.x; i < dim; i += Threads) yr[i] = __fmul_rn(__fmul_rn(xr[i], inv), w[i]);
}

inline void launch_rms_norm(const float* x, const float* w, float* y, int rows, int dim, float eps, cudaStream_t s) {
    constexpr int threads = 256;
    rms_norm_kernel<threads><<<rows, threads, 0, s>>>(x, w, y, dim, eps);
}

// ---- swiglu -------------------------------------------------------------------------------------

__global__ void swiglu_kernel(const float* __restrict__ gate_up, float* __restrict__ out, std::int64_t total,
                              int intermediate) {
    for (std::int64_t idx = blockIdx.x * static_cast<std::int64_t>(blockDim.x) + threadIdx.x; idx < total;
         idx += static_cast<std::int64_t>(gridDim.x) * blockDim.x) {
        const std::int64_t r = idx / intermediate, i = idx % intermediate;
        const float g = gate_up[r * 2 * intermediate + i];
        const float u = gate_up[r * 2 * intermediate + intermediate + i];
        const float act = g / (1.0f + expf(-g));
        out[idx] = __fmul_rn(act, u);
    }
}

inline int grid_for(std::int64_t n, int threads) {
    const std::int64_t b = (n + threads - 1) / threads;
    return static_cast<int>(b < 65535 * 8 ? (b < 1 ? 1 : b) : 65535 * 8);
}

inline void launch_swiglu(const float* gate_up, float* out, int rows, int intermediate, cudaStream_t s) {
    const std::int64_t total = static_cast<std::int64_t>(rows) * intermediate;
    swiglu_kernel<<<grid_for(total, 256), 256, 0, s>>>(gate_up, out, total, intermediate);
}

// ---- add, embed, convert ------------------------------------------------------------------------

__global__ void add_kernel(float* x, const float* __restrict__ y, std::int64_t n) {
    for (std::int64_t i = blockIdx.x * static_cast<std::int64_t>(blockDim.x) + threadIdx.x; i < n;
         i += static_cast<std::int64_t>(gridDim.x) * blockDim.x)
        x[i] += y[i];
}

inline void launch_add(float* x, const float* y, std::int64_t n, cudaStream_t s) {
    add_kernel<<<grid_for(n, 256), 256, 0, s>>>(x, y, n);
}

// One block per token: row ids[t] of the table.
__global__ void embed_kernel(const float* __restrict__ table, const std::int32_t* __restrict__ ids,
                             float* __restrict__ out, int dim) {
    const std::int64_t t = blockIdx.x;
    const float* src = table + static_cast<std::int64_t>(ids[t]) * dim;
    float* dst = out + t * dim;
    for (int i = threadIdx.x; i < dim; i += blockDim.x) dst[i] = src[i];
}

inline void launch_embed(const float* table, const std::int32_t* ids, float* out, int n, int dim, cudaStream_t s) {
    embed_kernel<<<n, 128, 0, s>>>(table, ids, out, dim);
}

template <class In, class Out>
__global__ void convert_kernel(const In* __restrict__ x, Out* __restrict__ y, std::int64_t n) {
    for (std::int64_t i = blockIdx.x * static_cast<std::int64_t>(blockDim.x) + threadIdx.x; i < n;
         i += static_cast<std::int64_t>(gridDim.x) * blockDim.x)
        y[i] = from_f32<Out>(to_f32(x[i]));
}

template <class In, class Out>
inline void launch_convert(const void* x, void* y, std::int64_t n, cudaStream_t s) {
    convert_kernel<In, Out><<<grid_for(n, 256), 256, 0, s>>>(static_cast<const In*>(x), static_cast<Out*>(y), n);
}

// ---- RoPE + KV append: one block per token ------------------------------------------------------

struct rope_params {
    float* q;
    const float* k;
    const float* v;
    const std::int32_t* positions;
    const std::int32_t* token_seq;
    const std::int32_t* block_table;
    const float* inv_freq;
    std::int64_t q_stride, kv_stride;
    int num_heads, num_kv_heads, head_dim, rotary_dim, block_tokens, max_blocks_per_seq;
    bool interleaved;
};

/// cos and sin of the float32 angle pos * inv_freq, each rounded once from double (kite's table).
__device__ __forceinline__ void rope_angle(int pos, float inv_freq, float& c, float& s) {
    const float angle = __fmul_rn(static_cast<float>(pos), inv_freq);
    double sd, cd;
    sincos(static_cast<double>(angle), &sd, &cd);
    c = static_cast<float>(cd);
    s = static_cast<float>(sd);
}

template <class T>
__global__ void rope_kv_append_kernel(rope_params p, T* __restrict__ k_pool, T* __restrict__ v_pool) {
    const std::int64_t t = blockIdx.x;
    const int pos = p.positions[t];
    const int half = p.rotary_dim / 2;
    const int hd = p.head_dim;
    // q: rotate each (head, pair) in place.
    float* qrow = p.q + t * p.q_stride;
    for (int idx = threadIdx.x; idx < p.num_heads * half; idx += blockDim.x) {
        const int h = idx / half, i = idx % half;
        float c, s;
        rope_angle(pos, p.inv_freq[i], c, s);
        const int ia = p.interleaved ? 2 * i : i;
        const int ib = p.interleaved ? 2 * i + 1 : i + half;
        float* x = qrow + static_cast<std::int64_t>(h) * hd;
        const float a = x[ia], b = x[ib];
        x[ia] = __fsub_rn(__fmul_rn(a, c), __fmul_rn(b, s));
        x[ib] = __fadd_rn(__fmul_rn(b, c), __fmul_rn(a, s));
    }
    const int seq = p.token_seq[t];
    const std::int32_t blk = p.block_table[static_cast<std::int64_t>(seq) * p.max_blocks_per_seq + pos / p.block_tokens];
    if (blk < 0) return;  // no block mapped: the host did not allocate one (nothing to write)
    const int slot = pos % p.block_tokens;
    const float* krow = p.k + t * p.kv_stride;
    const float* vrow = p.v + t * p.kv_stride;
    // Row of (blk, kv head h, slot) in the pool: [block][kv_head][token][head_dim].
    const auto dst = [&](int h) {
        return ((static_cast<std::int64_t>(blk) * p.num_kv_heads + h) * p.block_tokens + slot) * hd;
    };
    for (int idx = threadIdx.x; idx < p.num_kv_heads * half; idx += blockDim.x) {
        const int h = idx / half, i = idx % half;
        float c, s;
        rope_angle(pos, p.inv_freq[i], c, s);
        const int ia = p.interleaved ? 2 * i : i;
        const int ib = p.interleaved ? 2 * i + 1 : i + half;
        const float* x = krow + static_cast<std::int64_t>(h) * hd;
        const float a = x[ia], b = x[ib];
        const std::int64_t o = dst(h);
        k_pool[o + ia] = from_f32<T>(__fsub_rn(__fmul_rn(a, c), __fmul_rn(b, s)));
        k_pool[o + ib] = from_f32<T>(__fadd_rn(__fmul_rn(b, c), __fmul_rn(a, s)));
    }
    const int rest = hd - p.rotary_dim;  // dims past the rotary part are copied as they are
    if (rest > 0) {
        for (int idx = threadIdx.x; idx < p.num_kv_heads * rest; idx += blockDim.x) {
            const int h = idx / rest, d = p.rotary_dim + idx % rest;
            k_pool[dst(h) + d] = from_f32<T>(krow[static_cast<std::int64_t>(h) * hd + d]);
        }
    }
    for (int idx = threadIdx.x; idx < p.num_kv_heads * hd; idx += blockDim.x) {
        const int h = idx / hd, d = idx % hd;
        v_pool[dst(h) + d] = from_f32<T>(vrow[static_cast<std::int64_t>(h) * hd + d]);
    }
}

template <class T>
inline void launch_rope_kv_append(const rope_params& p, void* k_pool, void* v_pool, int tokens, cudaStream_t s) {
    rope_kv_append_kernel<T><<<tokens, 128, 0, s>>>(p, static_cast<T*>(k_pool), static_cast<T*>(v_pool));
}

// ---- causal paged attention: one warp per (token, query head) -----------------------------------

struct attention_params {
    const float* q;
    float* o;
    const std::int32_t* positions;
    const std::int32_t* token_seq;
    const std::int32_t* block_table;
    std::int64_t q_stride;
    int tokens, num_heads, num_kv_heads, head_dim, block_tokens, max_blocks_per_seq;
    float scale;
};

inline constexpr int attention_warps = 4;  // warps per block
inline constexpr int attention_max_dim = 256;

// E: elements of the head each lane owns (dims lane + 32 e), ceil(head_dim / 32).
// Keys go 32 at a time: lane j scores key base + j (a whole row dot product against q in
// shared memory), the chunk's max and sum update the online softmax, then every lane adds the
// 32 weighted value rows over its own dims (coalesced reads of each value row).
template <class T, int E>
__global__ void __launch_bounds__(attention_warps * 32)
    paged_attention_kernel(attention_params p, const T* __restrict__ k_pool, const T* __restrict__ v_pool) {
    __shared__ float qs[attention_warps][E * 32];
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    const std::int64_t item = static_cast<std::int64_t>(blockIdx.x) * attention_warps + warp;  // token * heads + head
    if (item >= static_cast<std::int64_t>(p.tokens) * p.num_heads) return;  // whole warps exit together
    const std::int64_t t = item / p.num_heads;
    const int h = static_cast<int>(item % p.num_heads);
    const int kvh = h / (p.num_heads / p.num_kv_heads);
    const int hd = p.head_dim;
    const float* qrow = p.q + t * p.q_stride + static_cast<std::int64_t>(h) * hd;
    for (int d = lane; d < E * 32; d += 32) qs[warp][d] = d < hd ? qrow[d] : 0.0f;
    __syncwarp();
    const int pos = p.positions[t];
    const int n_keys = pos + 1;
    const std::int32_t* table = p.block_table + static_cast<std::int64_t>(p.token_seq[t]) * p.max_blocks_per_seq;

    float acc[E];
#pragma unroll
    for (int e = 0; e < E; ++e) acc[e] = 0.0f;
    float m = -INFINITY, l = 0.0f;
    for (int base = 0; base < n_keys; base += 32) {
        const int j = base + lane;
        const bool valid = j < n_keys;
        std::int64_t row = 0;  // element offset of key j's row in the pool
        float sc = -INFINITY;
        if (valid) {
            const std::int32_t blk = table[j / p.block_tokens];
            row = ((static_cast<std::int64_t>(blk) * p.num_kv_heads + kvh) * p.block_tokens + j % p.block_tokens) * hd;
            const T* kr = k_pool + row;
            float dot = 0.0f;
#pragma unroll 4
            for (int d = 0; d < hd; ++d) dot = fmaf(qs[warp][d], to_f32(kr[d]), dot);
            sc = dot * p.scale;
        }
        const float m_new = fmaxf(m, warp_max(sc));  // finite: key base is always valid
        const float corr = expf(m - m_new);           // 0 on the first chunk (m = -inf)
        const float pr = valid ? expf(sc - m_new) : 0.0f;
        l = l * corr + warp_sum(pr);
#pragma unroll
        for (int e = 0; e < E; ++e) acc[e] *= corr;
        m = m_new;
        const int n = min(32, n_keys - base);
        for (int jj = 0; jj < n; ++jj) {
            const float pj = __shfl_sync(0xffffffffu, pr, jj);
            const std::int64_t rj = __shfl_sync(0xffffffffu, row, jj);
            const T* vr = v_pool + rj;
#pragma unroll
            for (int e = 0; e < E; ++e) {
                const int d = lane + 32 * e;
                if (d < hd) acc[e] = fmaf(pj, to_f32(vr[d]), acc[e]);
            }
        }
    }
    const float inv = 1.0f / l;
    float* orow = p.o + (t * p.num_heads + h) * static_cast<std::int64_t>(hd);
#pragma unroll
    for (int e = 0; e < E; ++e) {
        const int d = lane + 32 * e;
        if (d < hd) orow[d] = acc[e] * inv;
    }
}

template <class T>
inline void launch_paged_attention(const attention_params& p, const void* k_pool, const void* v_pool, cudaStream_t s) {
    const std::int64_t items = static_cast<std::int64_t>(p.tokens) * p.num_heads;
    const unsigned blocks = static_cast<unsigned>((items + attention_warps - 1) / attention_warps);
    const T* k = static_cast<const T*>(k_pool);
    const T* v = static_cast<const T*>(v_pool);
    constexpr unsigned threads = attention_warps * 32;
    if (p.head_dim <= 32) {
        paged_attention_kernel<T, 1><<<blocks, threads, 0, s>>>(p, k, v);
    } else if (p.head_dim <= 64) {
        paged_attention_kernel<T, 2><<<blocks, threads, 0, s>>>(p, k, v);
    } else if (p.head_dim <= 128) {
        paged_attention_kernel<T, 4><<<blocks, threads, 0, s>>>(p, k, v);
    } else {
        paged_attention_kernel<T, 8><<<blocks, threads, 0, s>>>(p, k, v);
    }
}

// ---- gather of one sequence's first keys and values: one thread per element -----------------------

template <class T>
__global__ void paged_gather_kernel(const T* __restrict__ k_pool, const T* __restrict__ v_pool, T* __restrict__ k,
                                    T* __restrict__ v, const std::int32_t* __restrict__ table, std::int64_t n,
                                    int num_kv_heads, int head_dim, int block_tokens) {
    for (std::int64_t i = blockIdx.x * static_cast<std::int64_t>(blockDim.x) + threadIdx.x; i < n;
         i += static_cast<std::int64_t>(gridDim.x) * blockDim.x) {
        // i = (t * num_kv_heads + h) * head_dim + d
        const int d = static_cast<int>(i % head_dim);
        const std::int64_t th = i / head_dim;
        const int h = static_cast<int>(th % num_kv_heads);
        const int t = static_cast<int>(th / num_kv_heads);
        const std::int32_t blk = table[t / block_tokens];
        const std::int64_t src =
            ((static_cast<std::int64_t>(blk) * num_kv_heads + h) * block_tokens + t % block_tokens) * head_dim + d;
        k[i] = k_pool[src];
        v[i] = v_pool[src];
    }
}

template <class T>
inline void launch_paged_gather(const void* k_pool, const void* v_pool, void* k, void* v, const std::int32_t* table,
                                std::int64_t n, int num_kv_heads, int head_dim, int block_tokens, cudaStream_t s) {
    paged_gather_kernel<T><<<grid_for(n, 256), 256, 0, s>>>(static_cast<const T*>(k_pool), static_cast<const T*>(v_pool),
                                                            static_cast<T*>(k), static_cast<T*>(v), table, n,
                                                            num_kv_heads, head_dim, block_tokens);
}

}  // namespace kite::cuda::kernels
