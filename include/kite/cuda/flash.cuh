#pragma once
/// @file kite/cuda/flash.cuh
/// The flash attention forward kernel (FlashAttention-2 style) and its launcher; the checked
/// entry point is kite::cuda::flash_forward (flash.hpp / flash.cu).
///
/// One block of 4 warps owns a tile of 128 queries of one (sequence, head); each warp owns 32
/// query rows (two m16 tiles), so every K and V fragment read from shared memory feeds two
/// tensor-core MMAs. Keys and values stream through double-buffered shared-memory tiles
/// (cp.async, zero-filled past the sequence end) while the scores, the online softmax (fp32,
/// log2 domain) and the output accumulator stay in registers. P is rounded to bf16/fp16 in
/// registers and reused as the A operand of the P*V MMA: the m16n8k16 C fragment of two
/// adjacent n8 tiles is, pair by pair, the A fragment of one k16 step.
///
/// lse (when asked for) is the natural-log sum-exp of the scaled scores of each query row, -inf
/// for a row that sees no key (whose output row is zero).
///
/// Shared memory rows are 16-byte chunks, stored at chunk ^ (row & 7): the 8 row addresses of
/// one ldmatrix phase then hit 8 distinct bank groups (no conflicts), and so do cp.async writes.

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <atomic>
#include <cstdint>

#include "kite/cuda/common.cuh"
#include "kite/cuda/flash.hpp"
#include "kite/cuda/plan.hpp"

namespace kite::cuda::dev::flash {

/// What the kernel reads besides its template parameters (built by launch()).
struct params {
    const void* q;                 // [total_q][num_heads][D]
    const void* k;                 // [total_k][num_kv_heads][D]
    const void* v;                 // [total_k][num_kv_heads][D]
    void* o;                       // [total_q][num_heads][D]
    const std::int32_t* cu_q;      // [batch + 1]
    const std::int32_t* cu_k;      // [batch + 1]
    float* lse;                    // [num_heads][total_q] or null
    int batch;
    int num_heads;
    int num_kv_heads;
    int group;                     // num_heads / num_kv_heads: query heads per kv head
    int m_tiles;                   // gridDim.x
    float scale_log2;              // scale * log2(e)
};

/// Tile shape of one head dimension: 4 warps x 32 query rows, block_n keys per step.
/// q_in_regs: Q fragments loaded once into registers (d 64: 32 registers) instead of being
/// re-read from shared memory at every key tile. At d 128 they would take 64 registers beside
/// O's 128 and S's 64 accumulators (over the 255 limit), so d 128 re-reads Q, as FlashAttention-2
/// does. d 64 with 128-key tiles and Q in registers spills (ptxas), with Q re-read it fills all
/// 255 registers; 64-key tiles with Q in registers leave a margin (about 220).
template <int D>
struct tile_config;
template <>
struct tile_config<64> {
    static constexpr int block_m = 128, block_n = 64;
    static constexpr bool q_in_regs = true;
};
template <>
struct tile_config<128> {
    static constexpr int block_m = 128, block_n = 64;
    static constexpr bool q_in_regs = false;
};

inline constexpr int warps = 4;
inline constexpr int threads = warps * 32;

/// Dynamic shared memory of one block: Q [block_m][D], K and V [2][block_n][D] each.
template <int D>
constexpr int smem_bytes() {
    return (tile_config<D>::block_m + 4 * tile_config<D>::block_n) * D * 2;
}

// ---- PTX wrappers -------------------------------------------------------------------------

__device__ __forceinline__ std::uint32_t smem_u32(const void* p) {
    return static_cast<std::uint32_t>(__cvta_generic_to_shared(p));
}

/// 16-byte global -> shared copy that bypasses L1; writes zeros (reads nothing) when !valid.
__device__ __forceinline__ void cp_async_16(std::uint32_t dst, const void* src, bool valid) {
    const int src_bytes = valid ? 16 : 0;
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(dst), "l"(src), "r"(src_bytes) : "memory");
}
__device__ __forceinline__ void cp_async_commit() { asm volatile("cp.async.commit_group;\n" ::: "memory"); }
/// Waits until at most N of this thread's committed groups are still in flight.
template <int N>
__device__ __forceinline__ void cp_async_wait() {
    asm volatile("cp.async.wait_group %0;\n" ::"n"(N) : "memory");
}

__device__ __forceinline__ void ldmatrix_x4(std::uint32_t (&r)[4], std::uint32_t addr) {
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0, %1, %2, %3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(addr));
}
__device__ __forceinline__ void ldmatrix_x4_trans(std::uint32_t (&r)[4], std::uint32_t addr) {
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0, %1, %2, %3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(addr));
}

/// c += a * b for one m16n8k16 tile (a: row-major 16x16, b: 16x8 "col", c: fp32 16x8).
template <dtype T>
__device__ __forceinline__ void mma_16816(float (&c)[4], const std::uint32_t (&a)[4], std::uint32_t b0, std::uint32_t b1);
template <>
__device__ __forceinline__ void mma_16816<dtype::bf16>(float (&c)[4], const std::uint32_t (&a)[4], std::uint32_t b0,
                                                      std::uint32_t b1) {
    asm volatile(
        "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, "
        "{%0, %1, %2, %3};\n"
        : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}
template <>
__device__ __forceinline__ void mma_16816<dtype::fp16>(float (&c)[4], const std::uint32_t (&a)[4], std::uint32_t b0,
                                                      std::uint32_t b1) {
    asm volatile(
        "mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, "
        "{%0, %1, %2, %3};\n"
        : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

/// Two floats rounded to the 16-bit type, lo in the low half (the lower column index).
template <dtype T>
__device__ __forceinline__ std::uint32_t pack2(float lo, float hi);
template <>
__device__ __forceinline__ std::uint32_t pack2<dtype::bf16>(float lo, float hi) {
    const __nv_bfloat162 h = __floats2bfloat162_rn(lo, hi);
    return *reinterpret_cast<const std::uint32_t*>(&h);
}
template <>
__device__ __forceinline__ std::uint32_t pack2<dtype::fp16>(float lo, float hi) {
    const __half2 h = __floats2half2_rn(lo, hi);
    return *reinterpret_cast<const std::uint32_t*>(&h);
}

/// Makes the compiler finish computing x here: keeps the softmax ahead of the barrier that
/// follows it, where its fp32 scores would otherwise stay live beside the V fragments.
template <int M, int N>
__device__ __forceinline__ void pin(std::uint32_t (&x)[M][N][4]) {
#pragma unroll
    for (int i = 0; i < M; ++i)
#pragma unroll
        for (int j = 0; j < N; ++j)
            asm volatile("" : "+r"(x[i][j][0]), "+r"(x[i][j][1]), "+r"(x[i][j][2]), "+r"(x[i][j][3]));
}

/// 2^x on the SFU; 2^-inf = +0.
__device__ __forceinline__ float exp2_approx(float x) {
    float y;
    asm("ex2.approx.ftz.f32 %0, %1;\n" : "=f"(y) : "f"(x));
    return y;
}

/// Byte offset of 16-byte chunk `chunk` of row `row` in a swizzled [rows][D] tile.
template <int D>
__device__ __forceinline__ std::uint32_t swizzle(int row, int chunk) {
    return static_cast<std::uint32_t>(row * (D * 2) + ((chunk ^ (row & 7)) << 4));
}

/// Copies a [ROWS][D] tile whose row r starts at element base + off + r * stride to shared
/// memory at `s`; rows at or past `valid_rows` are zero-filled (nothing is read for them).
template <int ROWS, int D, class E>
__device__ __forceinline__ void load_tile(std::uint32_t s, const E* base, std::int64_t off, int stride, int valid_rows,
                                          int tid) {
    constexpr int cpr = D / 8;                // 16-byte chunks per row
    constexpr int rows_per_pass = threads / cpr;
    static_assert((ROWS * cpr) % threads == 0, "flash: tile chunks must divide among the threads");
    const int c = tid % cpr;                  // the same chunk on every pass
    const int r0 = tid / cpr;
    const E* src = base + off + static_cast<std::int64_t>(r0) * stride + c * 8;
    const std::int64_t step = static_cast<std::int64_t>(rows_per_pass) * stride;
    std::uint32_t dst = s + swizzle<D>(r0, c);  // r0 + i * rows_per_pass keeps r0 & 7: linear in i
    // Not unrolled: an unrolled loop would keep one 64-bit address per pass live in registers,
    // which the tensor-core loop needs; the copies are issued once per tile.
#pragma unroll 1
    for (int r = r0; r < ROWS; r += rows_per_pass) {
        const bool ok = r < valid_rows;
        cp_async_16(dst, ok ? src : base, ok);
        src += step;
        dst += rows_per_pass * D * 2;
    }
}

// ---- the kernel ---------------------------------------------------------------------------

/// grid (m_tiles, num_heads, batch), block 4 warps. Causal: query tiles run in reverse order
/// (the heaviest, last tile of each head first) so the short tail of the grid is light work.
template <dtype T, int D, bool Causal>
__global__ void __launch_bounds__(threads, 2) flash_fwd_kernel(const params p) {
    using E = storage_t<T>;
    using cfg = tile_config<D>;
    constexpr int BM = cfg::block_m, BN = cfg::block_n;
    constexpr bool q_in_regs = cfg::q_in_regs;
    constexpr int KS = D / 16;   // k16 steps of Q K^T (and d16 pairs of O's n8 tiles)
    constexpr int NT = BN / 8;   // n8 tiles of S per m16 tile
    constexpr int DT = D / 8;    // n8 tiles of O per m16 tile
    constexpr int cpr = D / 8;   // 16-byte chunks per row
    constexpr std::uint32_t kv_tile_bytes = BN * D * 2;
    static_assert(BM == warps * 32, "flash: each warp owns 32 query rows");
    static_assert(BN % 16 == 0 && D % 16 == 0, "flash: tiles must be multiples of 16");

    extern __shared__ __align__(128) unsigned char smem[];  // Q [BM][D] | K [2][BN][D] | V [2][BN][D]

    const int b = blockIdx.z, h = blockIdx.y;
    const int m_tile = Causal ? p.m_tiles - 1 - static_cast<int>(blockIdx.x) : static_cast<int>(blockIdx.x);
    const int q_start = p.cu_q[b], q_len = p.cu_q[b + 1] - q_start;
    const int k_start = p.cu_k[b], k_len = p.cu_k[b + 1] - k_start;
    const int m0 = m_tile * BM;  // first query of the tile, in the sequence
    if (m0 >= q_len) return;     // a shorter sequence's tiles past its end
    const int rows_q = min(BM, q_len - m0);
    const int n_tiles = Causal ? static_cast<int>(plan::causal_key_tiles(m_tile, BM, BN, q_len, k_len))
                               : (k_len + BN - 1) / BN;

    const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31;
    const int hk = h / p.group;
    // q and o (k and v) share one layout, so one element offset serves both; the base pointers
    // stay in the kernel's parameter space instead of registers.
    const int q_stride = p.num_heads * D;      // elements between query rows
    const int kv_stride = p.num_kv_heads * D;  // between key rows
    const std::int64_t q_off = static_cast<std::int64_t>(q_start + m0) * q_stride + h * D;  // [BM rows][D]
    const std::int64_t kv_off = static_cast<std::int64_t>(k_start) * kv_stride + hk * D;    // [k_len rows][D]
    const std::int64_t total_q = p.lse ? p.cu_q[p.batch] : 0;
    E* const og = static_cast<E*>(p.o) + q_off;

    if (n_tiles == 0) {  // no query of the tile sees a key: zero rows, lse = -inf
        for (int i = tid; i < rows_q * cpr; i += threads)
            *reinterpret_cast<uint4*>(og + static_cast<std::int64_t>(i / cpr) * q_stride + (i % cpr) * 8) = make_uint4(0, 0, 0, 0);
        if (p.lse)
            for (int r = tid; r < rows_q; r += threads) p.lse[h * total_q + q_start + m0 + r] = -INFINITY;
        return;
    }

    const std::uint32_t sQ = smem_u32(smem);
    const std::uint32_t sK = sQ + BM * D * 2;
    const std::uint32_t sV = sK + 2 * kv_tile_bytes;

    // Groups in flight, in commit order: Q, K0, V0, then K(j+1), V(j+1) per key tile j.
    load_tile<BM, D>(sQ, static_cast<const E*>(p.q), q_off, q_stride, rows_q, tid);
    cp_async_commit();
    load_tile<BN, D>(sK, static_cast<const E*>(p.k), kv_off, kv_stride, k_len, tid);
    cp_async_commit();
    load_tile<BN, D>(sV, static_cast<const E*>(p.v), kv_off, kv_stride, k_len, tid);
    cp_async_commit();

    // ldmatrix.x4 addresses: lanes 0-15 give rows 0-15 of the 16-row slab at chunk 2s, lanes
    // 16-31 the same rows at chunk 2s+1. Every slab starts at a multiple of 16 rows, so the
    // swizzle term (row & 7) is lane & 7 and the chunk part depends on lane and s only.
    const std::uint32_t lrow = static_cast<std::uint32_t>((lane & 15) * (D * 2));
    // Chunk 2s + (lane >> 4) of row r (r & 7 == lane & 7) is stored at chunk (2s) ^ y with
    // y = (lane & 7) ^ (lane >> 4) < 8; bit 3 of 2s (s >= 4) passes the XOR unchanged, so four
    // registers and an immediate cover every s.
    std::uint32_t lchunk[4];
    {
        const int y = (lane & 7) ^ (lane >> 4);
#pragma unroll
        for (int u = 0; u < 4; ++u) lchunk[u] = static_cast<std::uint32_t>(((2 * u) ^ y) << 4);
    }
    const auto chunk_off = [&](int s) -> std::uint32_t { return lchunk[s & 3] + static_cast<std::uint32_t>((s & 4) << 5); };
    const std::uint32_t sQw = sQ + warp * 32 * (D * 2) + lrow;  // this warp's 32 rows

    cp_async_wait<2>();  // Q has landed (K0, V0 may still be in flight)
    __syncthreads();

    // Q fragments (A operand) of the warp's two m16 tiles: a0..a3 = ldmatrix matrices
    // (rows 0-7, k 0-7), (rows 8-15, k 0-7), (rows 0-7, k 8-15), (rows 8-15, k 8-15).
    std::uint32_t qf[q_in_regs ? 2 : 1][q_in_regs ? KS : 1][4];
    if constexpr (q_in_regs) {
#pragma unroll
        for (int mt = 0; mt < 2; ++mt)
#pragma unroll
            for (int s = 0; s < KS; ++s) ldmatrix_x4(qf[mt][s], sQw + mt * 16 * (D * 2) + chunk_off(s));
    }

    float acc_o[2][DT][4];  // [m16 tile][n8 tile of d][c0..c3]: rows g, g, g+8, g+8
#pragma unroll
    for (int mt = 0; mt < 2; ++mt)
#pragma unroll
        for (int dt = 0; dt < DT; ++dt)
#pragma unroll
            for (int e = 0; e < 4; ++e) acc_o[mt][dt][e] = 0.f;
    float row_max[2][2], row_sum[2][2];  // [mt][half]: raw-score max; this lane's partial sum of p
    const int diag = k_len - q_len;      // query i sees keys j <= diag + i (bottom-right causal)
    const int g = lane >> 2, t = lane & 3;
#pragma unroll
    for (int mt = 0; mt < 2; ++mt)
#pragma unroll
        for (int hf = 0; hf < 2; ++hf) {
            row_max[mt][hf] = -INFINITY;
            row_sum[mt][hf] = 0.f;
        }
    const int causal_limit0 = diag + m0 + warp * 32 + g + 1;  // of the warp's row g, then + 8, + 16, + 24
    const float sl2 = p.scale_log2;
    const int warp_last_row = m0 + warp * 32 + 31;

    for (int j = 0; j < n_tiles; ++j) {
        const std::uint32_t buf = static_cast<std::uint32_t>(j & 1);
        const int n0 = j * BN;
        cp_async_wait<1>();  // K(j) has landed (V(j) may still be in flight)
        // Every warp is past tile j-1 too, so buffer buf^1 (K(j-1), V(j-1)) is free again.
        __syncthreads();
        const std::int64_t next_off = kv_off + static_cast<std::int64_t>(n0 + BN) * kv_stride;
        if (j + 1 < n_tiles)
            load_tile<BN, D>(sK + (buf ^ 1) * kv_tile_bytes, static_cast<const E*>(p.k), next_off, kv_stride, k_len - n0 - BN, tid);
        cp_async_commit();  // possibly empty: keeps the group count uniform
        if (j + 1 < n_tiles)
            load_tile<BN, D>(sV + (buf ^ 1) * kv_tile_bytes, static_cast<const E*>(p.v), next_off, kv_stride, k_len - n0 - BN, tid);
        cp_async_commit();

        // A warp whose rows all precede the tile's first visible key skips the math, not the barriers.
        // (Without causality n0 < k_len always holds; the test still splits the two halves of the
        // loop body for ptxas, which then fits them in 255 registers without spilling.)
        const bool warp_active = Causal ? n0 <= diag + warp_last_row : n0 < k_len;
        // P as the A operand of P V: [mt][k16 step][a0..a3]. The C fragments of n8 tiles 2ks and
        // 2ks+1 are (row g | g+8) x (keys 2t, 2t+1) and (keys 8+2t, 9+2t): exactly a0, a1, a2, a3.
        std::uint32_t p_frag[2][BN / 16][4];
        if (warp_active) {
            float acc_s[2][NT][4];  // [mt][n8 tile of keys][c0..c3]
#pragma unroll
            for (int mt = 0; mt < 2; ++mt)
#pragma unroll
                for (int nt = 0; nt < NT; ++nt)
#pragma unroll
                    for (int e = 0; e < 4; ++e) acc_s[mt][nt][e] = 0.f;

            // S = Q K^T. K rows are keys: ldmatrix (no .trans) of (keys 0-7 | 8-15) x (d 0-7 | 8-15)
            // gives b0 of n8 tile 2np in r0, of 2np+1 in r1, and b1 of them in r2, r3.
            const std::uint32_t sKb = sK + buf * kv_tile_bytes + lrow;
#pragma unroll
            for (int s = 0; s < KS; ++s) {
                std::uint32_t qa[2][4];
                if constexpr (q_in_regs) {
#pragma unroll
                    for (int mt = 0; mt < 2; ++mt)
#pragma unroll
                        for (int e = 0; e < 4; ++e) qa[mt][e] = qf[mt][s][e];
                } else {
#pragma unroll
                    for (int mt = 0; mt < 2; ++mt) ldmatrix_x4(qa[mt], sQw + mt * 16 * (D * 2) + chunk_off(s));
                }
#pragma unroll
                for (int np = 0; np < BN / 16; ++np) {
                    std::uint32_t kb[4];
                    ldmatrix_x4(kb, sKb + np * 16 * (D * 2) + chunk_off(s));
#pragma unroll
                    for (int mt = 0; mt < 2; ++mt) {
                        mma_16816<T>(acc_s[mt][2 * np], qa[mt], kb[0], kb[2]);
                        mma_16816<T>(acc_s[mt][2 * np + 1], qa[mt], kb[1], kb[3]);
                    }
                }
            }

            // Keys past the sequence end or the causal diagonal score -inf.
            const bool need_mask = n0 + BN > k_len || (Causal && n0 + BN - 1 > diag + m0 + warp * 32);
            if (need_mask) {
#pragma unroll
                for (int mt = 0; mt < 2; ++mt)
#pragma unroll
                    for (int nt = 0; nt < NT; ++nt)
#pragma unroll
                        for (int e = 0; e < 4; ++e) {
                            // row m0 + warp * 32 + mt * 16 + (e >> 1) * 8 + g sees keys < its limit
                            const int col = n0 + nt * 8 + 2 * t + (e & 1);
                            const int limit = Causal ? min(k_len, causal_limit0 + mt * 16 + (e >> 1) * 8) : k_len;
                            if (col >= limit) acc_s[mt][nt][e] = -INFINITY;
                        }
            }

            // Online softmax, log2 domain: p = 2^(s * scale * log2(e) - max * scale * log2(e)).
#pragma unroll
            for (int mt = 0; mt < 2; ++mt)
#pragma unroll
                for (int hf = 0; hf < 2; ++hf) {
                    float mx = row_max[mt][hf];
#pragma unroll
                    for (int nt = 0; nt < NT; ++nt)
                        mx = fmaxf(mx, fmaxf(acc_s[mt][nt][2 * hf], acc_s[mt][nt][2 * hf + 1]));
                    // the 4 lanes of a quad hold the same row
                    mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 1));
                    mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 2));
                    // A row that has seen no key yet keeps max -inf; subtract 0 then (no inf - inf).
                    const float m_scaled = mx == -INFINITY ? 0.f : mx * sl2;
                    const float alpha = exp2_approx(row_max[mt][hf] * sl2 - m_scaled);  // old max -inf: 0
                    row_max[mt][hf] = mx;
                    float sum = 0.f;
#pragma unroll
                    for (int nt = 0; nt < NT; ++nt)
#pragma unroll
                        for (int e = 0; e < 2; ++e) {
                            const float pv = exp2_approx(fmaf(acc_s[mt][nt][2 * hf + e], sl2, -m_scaled));
                            acc_s[mt][nt][2 * hf + e] = pv;
                            sum += pv;
                        }
                    row_sum[mt][hf] = row_sum[mt][hf] * alpha + sum;
#pragma unroll
                    for (int dt = 0; dt < DT; ++dt) {
                        acc_o[mt][dt][2 * hf] *= alpha;
                        acc_o[mt][dt][2 * hf + 1] *= alpha;
                    }
                }
#pragma unroll
            for (int mt = 0; mt < 2; ++mt)
#pragma unroll
                for (int ks = 0; ks < BN / 16; ++ks) {
                    p_frag[mt][ks][0] = pack2<T>(acc_s[mt][2 * ks][0], acc_s[mt][2 * ks][1]);
                    p_frag[mt][ks][1] = pack2<T>(acc_s[mt][2 * ks][2], acc_s[mt][2 * ks][3]);
                    p_frag[mt][ks][2] = pack2<T>(acc_s[mt][2 * ks + 1][0], acc_s[mt][2 * ks + 1][1]);
                    p_frag[mt][ks][3] = pack2<T>(acc_s[mt][2 * ks + 1][2], acc_s[mt][2 * ks + 1][3]);
                }
            pin(p_frag);
        }

        cp_async_wait<2>();  // V(j) has landed (K(j+1), V(j+1) may still be in flight)
        __syncthreads();

        if (warp_active) {
            // O += P V. V rows are keys: ldmatrix.trans of (keys 0-7 | 8-15) x (d 0-7 | 8-15) gives
            // b0 of d tile 2dp in r0, b1 of it in r1, b0 and b1 of d tile 2dp+1 in r2, r3.
            const std::uint32_t sVb = sV + buf * kv_tile_bytes + lrow;
#pragma unroll
            for (int ks = 0; ks < BN / 16; ++ks) {
#pragma unroll
                for (int dp = 0; dp < D / 16; ++dp) {
                    std::uint32_t vb[4];
                    ldmatrix_x4_trans(vb, sVb + ks * 16 * (D * 2) + chunk_off(dp));
#pragma unroll
                    for (int mt = 0; mt < 2; ++mt) {
                        mma_16816<T>(acc_o[mt][2 * dp], p_frag[mt][ks], vb[0], vb[1]);
                        mma_16816<T>(acc_o[mt][2 * dp + 1], p_frag[mt][ks], vb[2], vb[3]);
                    }
                }
            }
        }
    }
    cp_async_wait<0>();  // nothing is left in flight (the last groups are empty)

    // Normalize, then stage the warp's 32 output rows in its own (no longer read) rows of the Q
    // tile so that the global stores are whole 16-byte chunks of consecutive rows.
    unsigned char* const sOw = smem + warp * 32 * (D * 2);  // [32][D], swizzled like Q
    __syncwarp();
#pragma unroll
    for (int mt = 0; mt < 2; ++mt)
#pragma unroll
        for (int hf = 0; hf < 2; ++hf) {
            float sum = row_sum[mt][hf];
            sum += __shfl_xor_sync(0xffffffffu, sum, 1);
            sum += __shfl_xor_sync(0xffffffffu, sum, 2);
            const float inv = sum > 0.f ? __frcp_rn(sum) : 0.f;  // a row that saw no key: zeros
            const int r = mt * 16 + hf * 8 + g;               // row within the warp's 32
#pragma unroll
            for (int dt = 0; dt < DT; ++dt)
                *reinterpret_cast<std::uint32_t*>(sOw + swizzle<D>(r, dt) + 4 * t) =
                    pack2<T>(acc_o[mt][dt][2 * hf] * inv, acc_o[mt][dt][2 * hf + 1] * inv);
            const int row = m0 + warp * 32 + r;  // in the sequence
            if (p.lse && t == 0 && row < q_len) {
                const float lse = sum > 0.f ? (row_max[mt][hf] * sl2 + __log2f(sum)) * 0.6931471805599453f : -INFINITY;
                p.lse[h * total_q + q_start + row] = lse;
            }
        }
    __syncwarp();
#pragma unroll
    for (int i = 0; i < cpr; ++i) {
        const int idx = lane + 32 * i;
        const int r = idx / cpr, c = idx % cpr;
        const int row = warp * 32 + r;  // in the tile
        if (row < rows_q)
            *reinterpret_cast<uint4*>(og + static_cast<std::int64_t>(row) * q_stride + c * 8) =
                *reinterpret_cast<const uint4*>(sOw + swizzle<D>(r, c));
    }
}

// ---- launcher -----------------------------------------------------------------------------

/// Launches flash_fwd_kernel for checked arguments (flash_forward checks them).
template <dtype T, int D, bool Causal>
void launch(const flash_args& a, cudaStream_t stream) {
    using cfg = tile_config<D>;
    constexpr int bytes = smem_bytes<D>();
    auto kernel = flash_fwd_kernel<T, D, Causal>;
    // Above 48 KB a kernel must opt in, once per device.
    static std::atomic<std::uint64_t> opted_in{0};
    int dev = 0;
    KITE_CUDA_CHECK(cudaGetDevice(&dev));
    const std::uint64_t bit = std::uint64_t{1} << (dev & 63);
    if (!(opted_in.load(std::memory_order_acquire) & bit)) {
        KITE_CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, bytes));
        opted_in.fetch_or(bit, std::memory_order_release);
    }
    const plan::flash_grid grid = plan::make_flash_grid(a.batch, a.num_heads, a.max_seqlen_q, cfg::block_m);
    params p{};
    p.q = a.q;
    p.k = a.k;
    p.v = a.v;
    p.o = a.o;
    p.cu_q = a.cu_seqlens_q;
    p.cu_k = a.cu_seqlens_k;
    p.lse = a.lse;
    p.batch = a.batch;
    p.num_heads = a.num_heads;
    p.num_kv_heads = a.num_kv_heads;
    p.group = a.num_heads / a.num_kv_heads;
    p.m_tiles = static_cast<int>(grid.m_tiles);
    p.scale_log2 = a.scale * 1.4426950408889634f;
    const dim3 g(static_cast<unsigned>(grid.m_tiles), static_cast<unsigned>(grid.heads), static_cast<unsigned>(grid.batch));
    kernel<<<g, threads, bytes, stream>>>(p);
}

}  // namespace kite::cuda::dev::flash
