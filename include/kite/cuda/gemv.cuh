#pragma once
/// @file kite/cuda/gemv.cuh
/// The quantized GEMV kernels behind kite::cuda::gemv (gemv.hpp): y [batch][rows] = x W^T.
///
/// Work split: a block of T threads (T = 64 for one vector, else 128) owns `R` consecutive rows
/// (R = 4 for one or two vectors, else 2) and its threads split the row's 16-byte chunks: thread
/// t takes chunks t, t + T, ... of all R rows, so one thread's codes load is R independent 16-byte
/// loads, each x value it loads serves R rows, and each warp load is 512 contiguous bytes of a
/// row. The chunk loop is software-pipelined: the codes and scales of the thread's next chunk are
/// in flight while the current one is multiplied (two register buffers, used in turn). Codes are
/// streamed past L1 (read once); x is read through the read-only cache (shared by every block on
/// the SM). At the end each warp reduces with warp_sum and the block sums its warps in shared
/// memory (a fixed order: the result is deterministic).
/// Batch 1: 64-thread blocks capped at 128 registers (8 blocks, 16 warps per SM), so a 4096-row
/// matrix (1024 blocks) is a single wave on the H200's 132 SMs (1056 resident blocks) -- with
/// 128-thread blocks at 5 per SM it was 1.55 waves, the second one a 55%-full tail -- and each
/// thread runs 5-6 chunks through the pipeline instead of 2-3. When cols is a multiple of a
/// chunk's column span and x is float4-aligned, a variant (V, any batch) loads x without bounds
/// checks or a scalar path (at batch 4 the runtime x_vec test cost a branch per x load, ~3x the
/// loop's instructions), and int4 with fp16 scales gets one without the scale-type branch (H).
///
/// Instruction budget (int4, batch 1, V + H, sm_90 SASS): ~118 instructions per 16-byte chunk of
/// one row (64 FFMA + 32 LOP3 + 4 SHF for the 32 weights, 1 HADD2.F32 + 1 FFMA for the scale,
/// ~8 address, ~3 load; per 2 chunks x 4 rows the loop body is 946 instructions); at 4096 x 11008
/// that is ~5.2 us of issue on 132 SMs at 1.98 GHz, about the ~5.3 us the 22.5 MB of codes and
/// scales take at the H200's copy bandwidth, so the kernel needs both to overlap (single wave,
/// two-stage pipeline, 4 independent FFMA chains per thread, 4 warps per scheduler).
///
/// Dequantization: an integer level q is made a float exactly with the magic-number trick:
/// OR-ing a nibble (or byte) at bit position 4k into 0x4B000000 gives the float 2^23 + 16^k n,
/// and one FMA with 16^-k and -(2^(23-4k) + z) yields n - z exactly. The weights therefore enter
/// the products as the exact integers (q - z); the group's scale (int4: per 128 columns, GGUF: per
/// 32, int8_rows: per row) multiplies the fp32 partial sum of its columns once -- the same
/// arithmetic as kite's CPU int8 kernel -- so scale * (q - z) is never rounded separately and only
/// the summation order differs from the CPU (relative error ~1e-7).
///
/// Chunk geometry (16 bytes of one row):
///   f32        4 columns            bf16       8 columns
///   int8_rows  16 columns           q8_0       16 columns (half a GGUF block; scale = chunk / 2)
///   int4_g128  words j0..j0+3 of a 64-byte block of 128 columns: columns 16t + j0 + i (t = 0..7)
///   q4_0/q4_1  one GGUF block (its 16 qs bytes): byte 4m+i holds column 4m+i (low nibble) and
///              16+4m+i (high nibble)

#include <cstddef>
#include <cstdint>

#include "kite/cuda/common.cuh"
#include "kite/cuda/gemv.hpp"
#include "kite/cuda/plan.hpp"

namespace kite::cuda::dev::gemv_impl {

/// Threads per block: 2 warps for one vector, else 4.
template <int B>
inline constexpr int threads = B == 1 ? 64 : 128;
template <int B>
inline constexpr int warps = threads<B> / 32;

/// Rows per block (each x load serves them all; more rows cost registers for B vectors).
template <int B>
inline constexpr int rows_per_block = B <= 2 ? 4 : 2;
/// Resident blocks per SM asked of the register allocator (__launch_bounds__).
/// One vector: 8 blocks of 64 threads = at most 128 registers (16 warps per SM). A 4096-row
/// matrix is then 1024 blocks, one wave on 132 SMs (1056 resident), instead of 1.55 waves of
/// 128-thread blocks at 5 per SM; each thread has 5-6 chunks of a row (a longer software
/// pipeline) and 2 x 4 x 16 bytes of codes in flight.
/// More vectors: 4 blocks (128 registers) up to four vectors, 3 (168) up to six, then 2.
template <int B, bool Z>
inline constexpr int min_blocks = B == 1 ? 8 : (B <= 4 ? 4 : (B <= 6 ? 3 : 2));

/// Columns spanned by one 16-byte chunk of codes (int4_g128: chunk c lies in the 128-column
/// group c / 4; GGUF q4: one 32-column block). When cols is a multiple of it, every chunk below
/// `chunks` holds only columns < cols.
template <weight_format F>
inline constexpr int span_cols = F == weight_format::f32         ? 4
                                 : F == weight_format::bf16      ? 8
                                 : F == weight_format::int4_g128 ? 128
                                 : (F == weight_format::q4_0 || F == weight_format::q4_1) ? 32
                                                                                          : 16;

struct params {
    const unsigned char* codes = nullptr;  // [rows][row_bytes]
    std::size_t row_bytes = 0;
    const void* scales = nullptr;
    const std::uint8_t* zeros = nullptr;
    const float* x = nullptr;  // [batch][cols]
    float* y = nullptr;        // [batch][rows]
    const float* bias = nullptr;
    int rows = 0, cols = 0;
    int chunks = 0;   // 16-byte chunks per row that hold columns < cols
    int groups = 0;   // scale entries per row (int4: ceil(cols / 128); GGUF: cols / 32)
    bool scales_fp16 = false;
    bool x_vec = false;  // x rows are 16-byte aligned float4 runs (cols % 4 == 0)
};

/// Raw scale / zero of one (row, chunk), loaded with the codes and decoded after they arrive.
struct meta {
    std::uint32_t a = 0, b = 0;
};

__device__ __forceinline__ float half_bits_to_f32(std::uint32_t h) {
    return __half2float(__ushort_as_half(static_cast<unsigned short>(h & 0xffffu)));
}

/// Z: int4_g128 with zero points (asymmetric); without them every zero is 8 (a compile-time constant).
/// H: int4_g128 scales known to be fp16 at compile time (no branch on p.scales_fp16).
template <weight_format F, bool Z, bool H = false>
__device__ __forceinline__ meta load_meta(const params& p, int row, int c) {
    meta m;
    if constexpr (F == weight_format::int4_g128) {
        const std::size_t g = static_cast<std::size_t>(row) * p.groups + (c >> 2);
        m.a = H || p.scales_fp16 ? static_cast<std::uint32_t>(__ldg(static_cast<const unsigned short*>(p.scales) + g))
                            : __ldg(static_cast<const unsigned int*>(p.scales) + g);
        if constexpr (Z) m.b = static_cast<std::uint32_t>(__ldg(p.zeros + g));
    } else if constexpr (F == weight_format::q4_0) {
        m.a = __ldg(static_cast<const unsigned short*>(p.scales) + static_cast<std::size_t>(row) * p.groups + c);
    } else if constexpr (F == weight_format::q4_1) {
        m.a = __ldg(static_cast<const unsigned int*>(p.scales) + static_cast<std::size_t>(row) * p.groups + c);
    } else if constexpr (F == weight_format::q8_0) {
        m.a = __ldg(static_cast<const unsigned short*>(p.scales) + static_cast<std::size_t>(row) * p.groups + (c >> 1));
    }
    return m;
}

/// Four consecutive x values of one vector (xv = its first column) from column col (zero past cols).
/// V: known at compile time that x_vec holds and that every column of every chunk is < cols
/// (cols a multiple of the chunk's column span, span_cols): no bounds check, no scalar path.
template <bool V>
__device__ __forceinline__ float4 load_x4(const params& p, const float* xv, int col) {
    if constexpr (V) return __ldg(reinterpret_cast<const float4*>(xv + col));
    if (p.x_vec) {  // cols % 4 == 0 and col % 4 == 0: the float4 is wholly in or out
        return col < p.cols ? __ldg(reinterpret_cast<const float4*>(xv + col)) : make_float4(0.f, 0.f, 0.f, 0.f);
    }
    float4 r;
    r.x = col < p.cols ? __ldg(xv + col) : 0.f;
    r.y = col + 1 < p.cols ? __ldg(xv + col + 1) : 0.f;
    r.z = col + 2 < p.cols ? __ldg(xv + col + 2) : 0.f;
    r.w = col + 3 < p.cols ? __ldg(xv + col + 3) : 0.f;
    return r;
}

__device__ __forceinline__ float comp(const float4& v, int i) {
    return i == 0 ? v.x : (i == 1 ? v.y : (i == 2 ? v.z : v.w));
}
__device__ __forceinline__ std::uint32_t word(const uint4& v, int i) {
    return i == 0 ? v.x : (i == 1 ? v.y : (i == 2 ? v.z : v.w));
}

/// The nibble at bits 4k..4k+3 of w as the float 2^23 + 16^k n (exact).
/// One LOP3 ((w & mask) | magic): written as PTX because nvcc otherwise splits it into an AND and
/// an OR (LOP3 takes one immediate; ptxas keeps the other constant in a register).
template <int K>
__device__ __forceinline__ float nibble_magic(std::uint32_t w) {
    std::uint32_t r;
    asm("lop3.b32 %0, %1, %2, %3, 0xEA;" : "=r"(r) : "r"(w), "n"(0xfu << (4 * K)), "n"(0x4B000000u));
    return __uint_as_float(r);
}
/// n - z from nibble_magic<K>: one exact FMA (2^(23-4k) + n) - (2^(23-4k) + z).
template <int K>
__device__ __forceinline__ float nibble_level(float magic, float neg_base_z) {
    constexpr float inv = K == 0 ? 1.0f : (K == 1 ? 0.0625f : (K == 2 ? 0.00390625f : 0.000244140625f));
    return fmaf(magic, inv, neg_base_z);
}
/// -(2^(23-4k) + z) for k = 0..3 (exact: z < 256).
__device__ __forceinline__ void neg_bases(float z, float (&nb)[4]) {
    nb[0] = -(8388608.0f + z);
    nb[1] = -(524288.0f + z);
    nb[2] = -(32768.0f + z);
    nb[3] = -(2048.0f + z);
}
/// Signed byte b of w (after w ^= 0x80808080) as the float q: (2^23 + q + 128) - (2^23 + 128).
template <int Byte>
__device__ __forceinline__ float byte_level(std::uint32_t w_flipped) {
    return __uint_as_float(__byte_perm(w_flipped, 0x4B000000u, 0x7540u | Byte)) - 8388736.0f;
}

/// Adds chunk c of the R rows (codes `code`, scales `m`) times x to acc.
template <weight_format F, int B, int R, bool Z, bool V, bool H>
__device__ __forceinline__ void chunk(const params& p, const float* const (&xv)[B], int c, const uint4 (&code)[R],
                                      const meta (&m)[R], float (&acc)[R][B]) {
    if constexpr (F == weight_format::f32) {
        float4 xs[B];
#pragma unroll
        for (int v = 0; v < B; ++v) xs[v] = load_x4<V>(p, xv[v], 4 * c);
#pragma unroll
        for (int r = 0; r < R; ++r)
#pragma unroll
            for (int i = 0; i < 4; ++i) {
                const float w = __uint_as_float(word(code[r], i));
#pragma unroll
                for (int v = 0; v < B; ++v) acc[r][v] = fmaf(w, comp(xs[v], i), acc[r][v]);
            }
    } else if constexpr (F == weight_format::bf16) {
#pragma unroll
        for (int half = 0; half < 2; ++half) {
            float4 xs[B];
#pragma unroll
            for (int v = 0; v < B; ++v) xs[v] = load_x4<V>(p, xv[v], 8 * c + 4 * half);
#pragma unroll
            for (int r = 0; r < R; ++r)
#pragma unroll
                for (int i = 0; i < 2; ++i) {
                    const std::uint32_t w = word(code[r], 2 * half + i);
                    const float lo = __uint_as_float(w << 16), hi = __uint_as_float(w & 0xffff0000u);
#pragma unroll
                    for (int v = 0; v < B; ++v) {
                        acc[r][v] = fmaf(lo, comp(xs[v], 2 * i), acc[r][v]);
                        acc[r][v] = fmaf(hi, comp(xs[v], 2 * i + 1), acc[r][v]);
                    }
                }
        }
    } else if constexpr (F == weight_format::int8_rows || F == weight_format::q8_0) {
        float part[R][B];
#pragma unroll
        for (int r = 0; r < R; ++r)
#pragma unroll
            for (int v = 0; v < B; ++v) part[r][v] = 0.f;
#pragma unroll
        for (int i = 0; i < 4; ++i) {
            float4 xs[B];
#pragma unroll
            for (int v = 0; v < B; ++v) xs[v] = load_x4<V>(p, xv[v], 16 * c + 4 * i);
#pragma unroll
            for (int r = 0; r < R; ++r) {
                const std::uint32_t w = word(code[r], i) ^ 0x80808080u;
                const float q0 = byte_level<0>(w), q1 = byte_level<1>(w), q2 = byte_level<2>(w), q3 = byte_level<3>(w);
#pragma unroll
                for (int v = 0; v < B; ++v) {
                    part[r][v] = fmaf(q0, xs[v].x, part[r][v]);
                    part[r][v] = fmaf(q1, xs[v].y, part[r][v]);
                    part[r][v] = fmaf(q2, xs[v].z, part[r][v]);
                    part[r][v] = fmaf(q3, xs[v].w, part[r][v]);
                }
            }
        }
#pragma unroll
        for (int r = 0; r < R; ++r) {
            if constexpr (F == weight_format::q8_0) {
                const float d = half_bits_to_f32(m[r].a);
#pragma unroll
                for (int v = 0; v < B; ++v) acc[r][v] = fmaf(d, part[r][v], acc[r][v]);
            } else {  // int8_rows: the row's scale is applied once, in the epilogue
#pragma unroll
                for (int v = 0; v < B; ++v) acc[r][v] += part[r][v];
            }
        }
    } else if constexpr (F == weight_format::int4_g128) {
        const int j0 = 4 * (c & 3);
        const int col0 = 128 * (c >> 2) + j0;
        float nb[R][4];
#pragma unroll
        for (int r = 0; r < R; ++r) neg_bases(Z ? static_cast<float>(m[r].b) : 8.0f, nb[r]);
        float part[R][B];  // set by plane 0
        auto plane = [&]<int T>() {
            constexpr int K = T & 3;
            float4 xs[B];
#pragma unroll
            for (int v = 0; v < B; ++v) xs[v] = load_x4<V>(p, xv[v], col0 + 16 * T);
#pragma unroll
            for (int r = 0; r < R; ++r)
#pragma unroll
                for (int i = 0; i < 4; ++i) {
                    const std::uint32_t w = T < 4 ? word(code[r], i) : (word(code[r], i) >> 16);
                    const float q = nibble_level<K>(nibble_magic<K>(w), nb[r][K]);
#pragma unroll
                    for (int v = 0; v < B; ++v)  // the first product starts the sum (no zeroing)
                        part[r][v] = T == 0 && i == 0 ? q * comp(xs[v], i) : fmaf(q, comp(xs[v], i), part[r][v]);
                }
        };
        plane.template operator()<0>();
        plane.template operator()<1>();
        plane.template operator()<2>();
        plane.template operator()<3>();
        plane.template operator()<4>();
        plane.template operator()<5>();
        plane.template operator()<6>();
        plane.template operator()<7>();
#pragma unroll
        for (int r = 0; r < R; ++r) {
            const float s = H || p.scales_fp16 ? half_bits_to_f32(m[r].a) : __uint_as_float(m[r].a);
#pragma unroll
            for (int v = 0; v < B; ++v) acc[r][v] = fmaf(s, part[r][v], acc[r][v]);
        }
    } else if constexpr (F == weight_format::q4_0 || F == weight_format::q4_1) {
        constexpr float z = F == weight_format::q4_0 ? 8.0f : 0.0f;
        float nb[4];
        neg_bases(z, nb);
        const int col0 = 32 * c;
        float part[R][B], xsum[B];
#pragma unroll
        for (int v = 0; v < B; ++v) xsum[v] = 0.f;
#pragma unroll
        for (int r = 0; r < R; ++r)
#pragma unroll
            for (int v = 0; v < B; ++v) part[r][v] = 0.f;
#pragma unroll
        for (int mw = 0; mw < 4; ++mw) {
            float4 xa[B], xb[B];  // columns 4m..4m+3 (low nibbles) and 16+4m.. (high nibbles)
#pragma unroll
            for (int v = 0; v < B; ++v) {
                xa[v] = load_x4<V>(p, xv[v], col0 + 4 * mw);
                xb[v] = load_x4<V>(p, xv[v], col0 + 16 + 4 * mw);
                if constexpr (F == weight_format::q4_1)
                    xsum[v] += ((xa[v].x + xa[v].y) + (xa[v].z + xa[v].w)) + ((xb[v].x + xb[v].y) + (xb[v].z + xb[v].w));
            }
#pragma unroll
            for (int r = 0; r < R; ++r) {
                const std::uint32_t lo = word(code[r], mw), hi = lo >> 16;
                const float q0 = nibble_level<0>(nibble_magic<0>(lo), nb[0]);  // byte 0 low:  column 4m
                const float q1 = nibble_level<1>(nibble_magic<1>(lo), nb[1]);  // byte 0 high: column 16+4m
                const float q2 = nibble_level<2>(nibble_magic<2>(lo), nb[2]);  // byte 1 low:  column 4m+1
                const float q3 = nibble_level<3>(nibble_magic<3>(lo), nb[3]);  // byte 1 high: column 16+4m+1
                const float q4 = nibble_level<0>(nibble_magic<0>(hi), nb[0]);  // byte 2 low:  column 4m+2
                const float q5 = nibble_level<1>(nibble_magic<1>(hi), nb[1]);  // byte 2 high: column 16+4m+2
                const float q6 = nibble_level<2>(nibble_magic<2>(hi), nb[2]);  // byte 3 low:  column 4m+3
                const float q7 = nibble_level<3>(nibble_magic<3>(hi), nb[3]);  // byte 3 high: column 16+4m+3
#pragma unroll
                for (int v = 0; v < B; ++v) {
                    part[r][v] = fmaf(q0, xa[v].x, part[r][v]);
                    part[r][v] = fmaf(q1, xb[v].x, part[r][v]);
                    part[r][v] = fmaf(q2, xa[v].y, part[r][v]);
                    part[r][v] = fmaf(q3, xb[v].y, part[r][v]);
                    part[r][v] = fmaf(q4, xa[v].z, part[r][v]);
                    part[r][v] = fmaf(q5, xb[v].z, part[r][v]);
                    part[r][v] = fmaf(q6, xa[v].w, part[r][v]);
                    part[r][v] = fmaf(q7, xb[v].w, part[r][v]);
                }
            }
        }
#pragma unroll
        for (int r = 0; r < R; ++r) {
            if constexpr (F == weight_format::q4_0) {
                const float d = half_bits_to_f32(m[r].a);
#pragma unroll
                for (int v = 0; v < B; ++v) acc[r][v] = fmaf(d, part[r][v], acc[r][v]);
            } else {  // ggml: d * sum(q x) + m * sum(x)
                const float d = half_bits_to_f32(m[r].a), mm = half_bits_to_f32(m[r].a >> 16);
#pragma unroll
                for (int v = 0; v < B; ++v) {
                    acc[r][v] = fmaf(d, part[r][v], acc[r][v]);
                    acc[r][v] = fmaf(mm, xsum[v], acc[r][v]);
                }
            }
        }
    }
}

/// Codes and scales of chunk c of the block's R rows (c < p.chunks).
template <weight_format F, int R, bool Z, bool H>
__device__ __forceinline__ void load_chunk(const params& p, const unsigned char* const (&rowp)[R], const int (&rowi)[R],
                                           int c, uint4 (&code)[R], meta (&m)[R]) {
#pragma unroll
    for (int r = 0; r < R; ++r) code[r] = load16_stream(rowp[r] + static_cast<std::size_t>(c) * 16);
#pragma unroll
    for (int r = 0; r < R; ++r) m[r] = load_meta<F, Z, H>(p, rowi[r], c);
}

template <weight_format F, int B, bool Z, bool V, bool H = false>
__global__ void __launch_bounds__(threads<B>, min_blocks<B, Z>) gemv_kernel(params p) {
    constexpr int threads = gemv_impl::threads<B>;
    constexpr int warps = gemv_impl::warps<B>;
    constexpr int R = rows_per_block<B>;
    __shared__ float partial[warps][R][B];
    const int tid = static_cast<int>(threadIdx.x);
    const int lane = tid & 31;
    const int warp = tid >> 5;
    const int row0 = static_cast<int>(blockIdx.x) * R;

    // Rows past the end (the last block) read the last row again; their sums are never written.
    int rowi[R];
    const unsigned char* rowp[R];
#pragma unroll
    for (int r = 0; r < R; ++r) {
        rowi[r] = row0 + r < p.rows ? row0 + r : p.rows - 1;
        rowp[r] = p.codes + static_cast<std::size_t>(rowi[r]) * p.row_bytes;
    }
    const float* xv[B];
#pragma unroll
    for (int v = 0; v < B; ++v) xv[v] = p.x + static_cast<std::size_t>(v) * p.cols;
    float acc[R][B];
#pragma unroll
    for (int r = 0; r < R; ++r)
#pragma unroll
        for (int v = 0; v < B; ++v) acc[r][v] = 0.f;

    // Chunks tid, tid + 128, ...: buffer a holds chunk c, buffer b chunk c + 128; each buffer is
    // refilled (two chunks ahead) right after it has been used, so one load is always in flight.
    int c = tid;
    if (c < p.chunks) {
        uint4 code_a[R], code_b[R];
        meta m_a[R], m_b[R];
        load_chunk<F, R, Z, H>(p, rowp, rowi, c, code_a, m_a);
        for (;;) {
            const int cb = c + threads;
            if (cb < p.chunks) load_chunk<F, R, Z, H>(p, rowp, rowi, cb, code_b, m_b);
            chunk<F, B, R, Z, V, H>(p, xv, c, code_a, m_a, acc);
            if (cb >= p.chunks) break;
            const int ca = cb + threads;
            if (ca < p.chunks) load_chunk<F, R, Z, H>(p, rowp, rowi, ca, code_a, m_a);
            chunk<F, B, R, Z, V, H>(p, xv, cb, code_b, m_b, acc);
            if (ca >= p.chunks) break;
            c = ca;
        }
    }

#pragma unroll
    for (int r = 0; r < R; ++r)
#pragma unroll
        for (int v = 0; v < B; ++v) acc[r][v] = warp_sum(acc[r][v]);
    if (lane == 0) {
#pragma unroll
        for (int r = 0; r < R; ++r)
#pragma unroll
            for (int v = 0; v < B; ++v) partial[warp][r][v] = acc[r][v];
    }
    __syncthreads();
    if (tid < R * B) {
        const int r = tid / B, v = tid % B;
        const int row = row0 + r;
        if (row < p.rows) {
            float s = 0.f;
#pragma unroll
            for (int w = 0; w < warps; ++w) s += partial[w][r][v];
            if (F == weight_format::int8_rows) s *= __ldg(static_cast<const float*>(p.scales) + row);
            const float bias = p.bias ? __ldg(p.bias + row) : 0.0f;
            p.y[static_cast<std::size_t>(v) * p.rows + row] = s + bias;
        }
    }
}

/// Launches the kernel for B vectors (asynchronous).
template <weight_format F, int B>
inline void launch_gemv(const params& p, cudaStream_t stream) {
    constexpr int R = rows_per_block<B>;
    const auto blocks = plan::ceil_div(static_cast<std::int64_t>(p.rows), static_cast<std::int64_t>(R));
    const unsigned grid = static_cast<unsigned>(blocks);
    // The unchecked x variant (for GGUF Q4 only at batch 1: with more vectors its hoisted x loads spill).
    constexpr bool q4 = F == weight_format::q4_0 || F == weight_format::q4_1;
    const bool full_x = (B == 1 || !q4) && p.x_vec && p.cols % span_cols<F> == 0;
    if constexpr (F == weight_format::int4_g128) {
        if (p.zeros)
            gemv_kernel<F, B, true, false><<<grid, threads<B>, 0, stream>>>(p);
        else if (full_x && p.scales_fp16)
            gemv_kernel<F, B, false, true, true><<<grid, threads<B>, 0, stream>>>(p);
        else if (full_x)
            gemv_kernel<F, B, false, true><<<grid, threads<B>, 0, stream>>>(p);
        else
            gemv_kernel<F, B, false, false><<<grid, threads<B>, 0, stream>>>(p);
    } else {
        if (full_x)
            gemv_kernel<F, B, false, B == 1 || !q4><<<grid, threads<B>, 0, stream>>>(p);
        else
            gemv_kernel<F, B, false, false><<<grid, threads<B>, 0, stream>>>(p);
    }
    check_launch("kite::cuda::gemv");
}

template <weight_format F>
inline void launch_gemv(const params& p, int batch, cudaStream_t stream) {
    switch (batch) {
        case 1: launch_gemv<F, 1>(p, stream); break;
        case 2: launch_gemv<F, 2>(p, stream); break;
        case 3: launch_gemv<F, 3>(p, stream); break;
        case 4: launch_gemv<F, 4>(p, stream); break;
        case 5: launch_gemv<F, 5>(p, stream); break;
        case 6: launch_gemv<F, 6>(p, stream); break;
        case 7: launch_gemv<F, 7>(p, stream); break;
        default: launch_gemv<F, 8>(p, stream); break;
    }
}

}  // namespace kite::cuda::dev::gemv_impl
