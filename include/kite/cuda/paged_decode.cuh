#pragma once
/// @file kite/cuda/paged_decode.cuh
/// The kernels behind kite::cuda::paged_decode (paged_decode.hpp).
///
/// Grid: one thread block per (sequence, kv head, head chunk, split), 4 warps. A head chunk is
/// up to GH (1, 2, 4 or 8) of the query heads that share the kv head, so each K/V byte is read
/// once for all of them (a group of more than 8 heads takes several chunks).
///
/// A warp walks tiles of its split's tokens (tile t, t + 4, ...; a tile never crosses a pool
/// block): a token row of head_dim elements is CR = head_dim * sizeof(T) / 16 chunks of 16
/// bytes, lane l reads chunk l % CR of token l / CR, so one warp load covers 32 / CR whole rows
/// and a tile is 4 such loads of K and 4 of V (2 KiB each), all issued before any is used; the
/// next tile is prefetched into L2 meanwhile. Scores: the lane's partial dot products for every
/// head of the chunk, reduced over the CR lanes of a row with xor shuffles. Online softmax in
/// fp32 in the log2 domain (q is pre-scaled by scale * log2(e)), one running max per head shared
/// by the warp; each lane accumulates p * v for its row's dims. At the end the token groups of a
/// warp and then the 4 warps (through shared memory) are merged; one split writes o, several
/// write (o / l, max, sum) partials that paged_decode_combine merges.
///
/// Tokens past the sequence (the tail of its last block) are never loaded: the masked lanes
/// keep zero K/V and a score of -inf, so whatever the pool holds there cannot reach the output.

#include <cstddef>
#include <cstdint>

#include "kite/cuda/common.cuh"
#include "kite/cuda/paged_decode.hpp"
#include "kite/cuda/plan.hpp"

namespace kite::cuda::dev::paged_impl {

inline constexpr int warps = 4;
inline constexpr int threads = 32 * warps;
/// Tokens per lane per tile (K and V each: 4 loads of 16 bytes in flight per lane).
inline constexpr int tokens_per_lane = 4;

struct params {
    const void* q = nullptr;       // [batch][num_heads][head_dim]
    const void* k_pool = nullptr;  // [num_blocks][num_kv_heads][block_tokens][head_dim]
    const void* v_pool = nullptr;
    void* o = nullptr;             // [batch][num_heads][head_dim]
    const std::int32_t* table = nullptr;  // [batch][max_blocks]
    const std::int32_t* lens = nullptr;   // [batch]
    float* ws_o = nullptr;   // [batch][num_heads][splits][head_dim]  o / l of each split
    float* ws_ml = nullptr;  // [batch][num_heads][splits][2]         max (log2 domain), sum
    int batch = 0, num_heads = 0, num_kv_heads = 0;
    int group = 0;        // query heads per kv head
    int head_chunks = 0;  // ceil(group / GH)
    int block_tokens = 0, max_blocks = 0, splits = 1;
    float scale_log2 = 0;  // softmax scale * log2(e)
};

__device__ __forceinline__ float neg_inf() { return -__int_as_float(0x7f800000); }

/// The 16 bytes of a chunk as EPL floats.
template <dtype T>
__device__ __forceinline__ void unpack(const uint4& raw, float (&f)[16 / sizeof(storage_t<T>)]) {
    const std::uint32_t w[4] = {raw.x, raw.y, raw.z, raw.w};
    if constexpr (T == dtype::f32) {
#pragma unroll
        for (int i = 0; i < 4; ++i) f[i] = __uint_as_float(w[i]);
    } else if constexpr (T == dtype::bf16) {
#pragma unroll
        for (int i = 0; i < 4; ++i) {
            f[2 * i] = __uint_as_float(w[i] << 16);
            f[2 * i + 1] = __uint_as_float(w[i] & 0xffff0000u);
        }
    } else {
#pragma unroll
        for (int i = 0; i < 4; ++i) {
            const float2 h = __half22float2(*reinterpret_cast<const __half2*>(&w[i]));
            f[2 * i] = h.x;
            f[2 * i + 1] = h.y;
        }
    }
}

/// Where tile t of a split lies: element offset of its (pool block, kv head) rows, its first slot
/// in the block and its valid tokens. False when the tile holds no token (or its block id is bad).
struct tile_pos {
    std::size_t base = 0;
    int off = 0, valid = 0;
};
template <int NT>
__device__ __forceinline__ bool locate_tile(const params& p, const std::int32_t* table, int kvh, int head_dim,
                                            int range_begin, int range_end, int tiles_per_block, int t, tile_pos& tp) {
    const int lb = t / tiles_per_block;                // block within the split
    const int off = (t - lb * tiles_per_block) * NT;   // first slot of the tile in its block
    const int bt = p.block_tokens;
    const int tok0 = range_begin + lb * bt + off;      // first token of the tile
    const int valid = min(min(NT, bt - off), range_end - tok0);
    if (valid <= 0) return false;
    const int blk = __ldg(table + range_begin / bt + lb);
    if (blk < 0) return false;
    tp.base = (static_cast<std::size_t>(blk) * p.num_kv_heads + kvh) * static_cast<std::size_t>(bt) * head_dim;
    tp.off = off;
    tp.valid = valid;
    return true;
}

template <dtype T, int D, int GH>
__global__ void __launch_bounds__(threads, GH <= 4 ? 4 : 2) paged_decode_kernel(params p) {
    using S = storage_t<T>;
    constexpr int EPL = 16 / static_cast<int>(sizeof(S));  // elements per 16-byte chunk: 8 or 4
    constexpr int CR = D / EPL;                            // chunks (lanes) per token row
    static_assert(CR >= 2 && CR <= 32 && 32 % CR == 0, "paged_decode: head_dim must give 2 .. 32 chunks per row");
    constexpr int TPL = 32 / CR;                           // rows per warp load
    constexpr int NI = tokens_per_lane;
    constexpr int NT = NI * TPL;                           // tokens per tile
    static_assert(NT * D * static_cast<int>(sizeof(S)) == 2048, "paged_decode: a tile is 2 KiB of K (16 lines)");

    __shared__ __align__(16) float q_s[GH][D];     // [head][permuted dim]: q * scale * log2(e)
    __shared__ __align__(16) float red_o[warps][GH][D];  // [warp][head][dim]
    __shared__ float red_m[warps][GH], red_l[warps][GH];

    // (sequence, kv head, head chunk, split) of this block
    int bid = static_cast<int>(blockIdx.x);
    const int split = bid % p.splits;
    bid /= p.splits;
    const int hc = bid % p.head_chunks;
    bid /= p.head_chunks;
    const int kvh = bid % p.num_kv_heads;
    const int b = bid / p.num_kv_heads;
    const int h0 = kvh * p.group + hc * GH;   // first query head of the chunk
    const int nh = min(GH, p.group - hc * GH);  // its heads

    int len = __ldg(p.lens + b);
    len = max(0, min(len, p.max_blocks * p.block_tokens));  // never read past the table row
    const plan::token_range range = plan::split_range(len, p.splits, p.block_tokens, split);
    const int rb = static_cast<int>(range.begin), re = static_cast<int>(range.end);

    // q of the chunk's heads, scaled, in the layout the lanes read: chunk c's elements e are at
    // ((e / 4) * CR + c) * 4 + e % 4, so a warp's float4 reads of one head are consecutive.
    const S* q = static_cast<const S*>(p.q);
    for (int i = static_cast<int>(threadIdx.x); i < GH * D; i += threads) {
        const int j = i / D, d = i % D;
        const int c = d / EPL, e = d % EPL;
        const float v = j < nh ? to_f32(q[(static_cast<std::size_t>(b) * p.num_heads + h0 + j) * D + d]) * p.scale_log2 : 0.f;
        q_s[j][((e / 4) * CR + c) * 4 + e % 4] = v;
    }
    __syncthreads();

    const int warp = static_cast<int>(threadIdx.x) >> 5, lane = static_cast<int>(threadIdx.x) & 31;
    const int cl = lane % CR;  // the chunk of a row this lane reads
    const int tg = lane / CR;  // the row within a warp load

    float m[GH], l[GH], acc[GH][EPL];
#pragma unroll
    for (int h = 0; h < GH; ++h) {
        m[h] = neg_inf();
        l[h] = 0.f;
#pragma unroll
        for (int e = 0; e < EPL; ++e) acc[h][e] = 0.f;
    }

    const S* kp = static_cast<const S*>(p.k_pool);
    const S* vp = static_cast<const S*>(p.v_pool);
    const std::int32_t* table = p.table + static_cast<std::size_t>(b) * p.max_blocks;
    const int tpb = (p.block_tokens + NT - 1) / NT;                   // tiles per pool block
    const int nblk = re > rb ? (re - rb + p.block_tokens - 1) / p.block_tokens : 0;
    const int ntiles = nblk * tpb;

    for (int t = warp; t < ntiles; t += warps) {
        tile_pos tp;
        if (!locate_tile<NT>(p, table, kvh, D, rb, re, tpb, t, tp)) continue;  // warp-uniform
        uint4 kr[NI], vr[NI];
#pragma unroll
        for (int i = 0; i < NI; ++i) {
            const int r = i * TPL + tg;  // row of the tile
            const std::size_t e = tp.base + static_cast<std::size_t>(tp.off + r) * D + cl * EPL;
            const bool ok = r < tp.valid;
            kr[i] = ok ? load16_stream(kp + e) : make_uint4(0u, 0u, 0u, 0u);
            vr[i] = ok ? load16_stream(vp + e) : make_uint4(0u, 0u, 0u, 0u);
        }
        // scores s[i][h] = q_h . k_row (log2 domain)
        float s[NI][GH];
#pragma unroll
        for (int i = 0; i < NI; ++i) {
            float kf[EPL];
            unpack<T>(kr[i], kf);
#pragma unroll
            for (int h = 0; h < GH; ++h) {
                float dot = 0.f;
#pragma unroll
                for (int e4 = 0; e4 < EPL / 4; ++e4) {
                    const float4 qv = *reinterpret_cast<const float4*>(&q_s[h][(e4 * CR + cl) * 4]);
                    dot = fmaf(qv.x, kf[4 * e4 + 0], dot);
                    dot = fmaf(qv.y, kf[4 * e4 + 1], dot);
                    dot = fmaf(qv.z, kf[4 * e4 + 2], dot);
                    dot = fmaf(qv.w, kf[4 * e4 + 3], dot);
                }
                s[i][h] = dot;
            }
        }
#pragma unroll
        for (int i = 0; i < NI; ++i)
#pragma unroll
            for (int h = 0; h < GH; ++h) {
#pragma unroll
                for (int o = CR / 2; o >= 1; o >>= 1) s[i][h] += __shfl_xor_sync(0xffffffffu, s[i][h], o);
                if (i * TPL + tg >= tp.valid) s[i][h] = neg_inf();
            }

        // online softmax: the tile's max per head over all rows of the warp
#pragma unroll
        for (int h = 0; h < GH; ++h) {
            float mt = s[0][h];
#pragma unroll
            for (int i = 1; i < NI; ++i) mt = fmaxf(mt, s[i][h]);
#pragma unroll
            for (int o = CR; o < 32; o <<= 1) mt = fmaxf(mt, __shfl_xor_sync(0xffffffffu, mt, o));
            const float mn = fmaxf(m[h], mt);  // finite: row 0 of the tile is valid
            const float alpha = exp2f(m[h] - mn);  // 0 on the first tile (m = -inf)
            m[h] = mn;
            float ps = 0.f;
#pragma unroll
            for (int i = 0; i < NI; ++i) {
                s[i][h] = exp2f(s[i][h] - mn);  // masked rows: exp2(-inf) = 0
                ps += s[i][h];
            }
            l[h] = fmaf(l[h], alpha, ps);
#pragma unroll
            for (int e = 0; e < EPL; ++e) acc[h][e] *= alpha;
        }
        // Prefetch this warp's next tile into L2 while this one finishes (here, where K is dead): its rows are
        // contiguous (NT * D elements of K, the same of V), one 128-byte line per lane.
        if (t + warps < ntiles) {
            tile_pos np;
            if (locate_tile<NT>(p, table, kvh, D, rb, re, tpb, t + warps, np)) {
                constexpr int row_bytes = D * static_cast<int>(sizeof(S));
                const int line = lane & 15;  // lanes 0..15: K, 16..31: V (NT rows = 2 KiB = 16 lines)
                if (line * 128 < np.valid * row_bytes) {
                    const S* src = (lane < 16 ? kp : vp) + np.base + static_cast<std::size_t>(np.off) * D;
                    asm volatile("prefetch.global.L2 [%0];" ::"l"(reinterpret_cast<const char*>(src) + line * 128));
                }
            }
        }

        // o += p v
#pragma unroll
        for (int i = 0; i < NI; ++i) {
            float vf[EPL];
            unpack<T>(vr[i], vf);
#pragma unroll
            for (int h = 0; h < GH; ++h)
#pragma unroll
                for (int e = 0; e < EPL; ++e) acc[h][e] = fmaf(s[i][h], vf[e], acc[h][e]);
        }
    }

    // merge the rows of a warp load (lanes cl, cl + CR, ... hold the same dims of other tokens)
#pragma unroll
    for (int h = 0; h < GH; ++h)
#pragma unroll
        for (int o = CR; o < 32; o <<= 1) {
            l[h] += __shfl_xor_sync(0xffffffffu, l[h], o);
#pragma unroll
            for (int e = 0; e < EPL; ++e) acc[h][e] += __shfl_xor_sync(0xffffffffu, acc[h][e], o);
        }
    if (lane < CR) {
#pragma unroll
        for (int h = 0; h < GH; ++h)
#pragma unroll
            for (int e = 0; e < EPL; ++e) red_o[warp][h][cl * EPL + e] = acc[h][e];
    }
    if (lane == 0) {
#pragma unroll
        for (int h = 0; h < GH; ++h) {
            red_m[warp][h] = m[h];
            red_l[warp][h] = l[h];
        }
    }
    __syncthreads();

    // merge the warps and write o (one split) or this split's partial
    for (int i = static_cast<int>(threadIdx.x); i < GH * D; i += threads) {
        const int h = i / D, d = i % D;
        if (h >= nh) continue;
        float mx = neg_inf();
#pragma unroll
        for (int w = 0; w < warps; ++w) mx = fmaxf(mx, red_m[w][h]);
        float sum = 0.f, out = 0.f;
        if (mx != neg_inf()) {
#pragma unroll
            for (int w = 0; w < warps; ++w) {
                const float f = exp2f(red_m[w][h] - mx);  // 0 for a warp that saw no token
                sum = fmaf(red_l[w][h], f, sum);
                out = fmaf(red_o[w][h][d], f, out);
            }
        }
        const float val = sum > 0.f ? out / sum : 0.f;
        const std::size_t head = static_cast<std::size_t>(b) * p.num_heads + h0 + h;
        if (p.splits == 1) {
            static_cast<S*>(p.o)[head * D + d] = from_f32<S>(val);
        } else {
            const std::size_t slot = head * p.splits + split;
            p.ws_o[slot * D + d] = val;
            if (d == 0) {
                p.ws_ml[2 * slot] = mx;
                p.ws_ml[2 * slot + 1] = sum;
            }
        }
    }
}

/// o [batch][num_heads][D] from the splits' partials: weights l_s * 2^(m_s - max).
template <dtype T, int D>
__global__ void __launch_bounds__(D) paged_decode_combine(const float* ws_o, const float* ws_ml, void* o, int splits) {
    using S = storage_t<T>;
    const std::size_t head = blockIdx.x;  // b * num_heads + h
    const int d = static_cast<int>(threadIdx.x);
    const float* ml = ws_ml + head * splits * 2;
    float mx = neg_inf();
    for (int s = 0; s < splits; ++s)
        if (ml[2 * s + 1] > 0.f) mx = fmaxf(mx, ml[2 * s]);
    float sum = 0.f, out = 0.f;
    for (int s = 0; s < splits; ++s) {
        const float l = ml[2 * s + 1];
        if (!(l > 0.f)) continue;  // an empty split: its o was not computed from any token
        const float w = l * exp2f(ml[2 * s] - mx);
        sum += w;
        out = fmaf(w, ws_o[(head * splits + s) * D + d], out);
    }
    static_cast<S*>(o)[head * D + d] = from_f32<S>(sum > 0.f ? out / sum : 0.f);
}

template <dtype T, int D, int GH>
inline void launch(const params& p, std::int64_t blocks, cudaStream_t stream) {
    paged_decode_kernel<T, D, GH><<<static_cast<unsigned>(blocks), threads, 0, stream>>>(p);
    check_launch("kite::cuda::paged_decode");
    if (p.splits > 1) {
        paged_decode_combine<T, D><<<static_cast<unsigned>(static_cast<std::int64_t>(p.batch) * p.num_heads), D, 0,
                                     stream>>>(p.ws_o, p.ws_ml, p.o, p.splits);
        check_launch("kite::cuda::paged_decode (combine)");
    }
}

template <dtype T, int D>
inline void launch(const params& p, int gh, std::int64_t blocks, cudaStream_t stream) {
    switch (gh) {
        case 1: launch<T, D, 1>(p, blocks, stream); break;
        case 2: launch<T, D, 2>(p, blocks, stream); break;
        case 4: launch<T, D, 4>(p, blocks, stream); break;
        default: launch<T, D, 8>(p, blocks, stream); break;
    }
}

template <dtype T>
inline void launch(const params& p, int head_dim, int gh, std::int64_t blocks, cudaStream_t stream) {
    if (head_dim == 64) {
        launch<T, 64>(p, gh, blocks, stream);
    } else {
        launch<T, 128>(p, gh, blocks, stream);
    }
}

}  // namespace kite::cuda::dev::paged_impl
