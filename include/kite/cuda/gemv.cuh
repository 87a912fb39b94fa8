#pragma once
/// @file kite/cuda/gemv.cuh
/// The quantized GEMV kernels behind kite::cuda::gemv (gemv.hpp): y [batch][rows] = x W^T.
///
/// Work split: a block of T threads (T = 128; at batch 1 on large matrices 64, see launch_gemv)
/// owns `R` consecutive rows (R = 4 for one or two vectors, else 2) and its threads split the
/// row's 16-byte chunks: thread t takes chunks t, t + T, ... of all R rows, so one thread's codes
/// load is R independent 16-byte loads, each x value it loads serves R rows, and each warp load
/// is 512 contiguous bytes of a row. The chunk loop is software-pipelined: the codes and scales
/// of the thread's next chunk are in flight while the current one is multiplied (two register
/// buffers, used in turn). Codes are streamed past L1 (read once); x is read through the
/// read-only cache (shared by every block on the SM). At the end each warp reduces with
/// warp_sum and the block sums its warps in shared memory (a fixed order: deterministic).
/// Batch 1 with more rows than one wave of 128-thread blocks holds: 64-thread blocks capped at
/// 128 registers (8 blocks, 16 warps per SM), so a 4096-row matrix (1024 blocks) is a single
/// wave on the H200's 132 SMs (1056 resident blocks) -- with 128-thread blocks at 5 per SM it
/// was 1.55 waves, the second one a 55%-full tail -- and each thread runs 5-6 chunks through
/// the pipeline instead of 2-3. When cols is a multiple of a
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
/// int4_g128 symmetric can instead take a tensor-core kernel (tc_int4_kernel, at the end of this
/// file; switch kUseTensorCoreInt4 in gemv.cu).
///
/// Chunk geometry (16 bytes of one row):
///   f32        4 columns            bf16       8 columns
///   int8_rows  16 columns           q8_0       16 columns (half a GGUF block; scale = chunk / 2)
///   int4_g128  words j0..j0+3 of a 64-byte block of 128 columns: columns 16t + j0 + i (t = 0..7)
///   q4_0/q4_1  one GGUF block (its 16 qs bytes): byte 4m+i holds column 4m+i (low nibble) and
///              16+4m+i (high nibble)

#include <cstddef>
#include <cstdint>
#include <type_traits>

#include "kite/cuda/common.cuh"
#include "kite/cuda/gemv.hpp"
#include "kite/cuda/plan.hpp"

namespace kite::cuda::dev::gemv_impl {

/// Threads per block: 4 warps; batch 1 also has a 2-warp shape (T = 64, see min_blocks), chosen
/// per launch by launch_gemv.
inline constexpr int threads_default = 128;

/// Rows per block (each x load serves them all; more rows cost registers for B vectors).
template <int B>
inline constexpr int rows_per_block = B <= 2 ? 4 : 2;
/// Resident blocks per SM asked of the register allocator (__launch_bounds__), for T threads.
/// One vector, T = 128: 5 blocks = at most 102 registers (20 warps per SM); asymmetric int4
/// keeps 16 more live values (the zero-dependent bases) and gets 4 (128 registers).
/// One vector, T = 64: 8 blocks = at most 128 registers (16 warps per SM). A 4096-row matrix is
/// then 1024 blocks, one wave on 132 SMs (1056 resident), instead of 1.55 waves of 128-thread
/// blocks; each thread has 5-6 chunks of a row (a longer software pipeline).
/// More vectors (T = 128): 4 blocks (128 registers) up to four vectors, 3 (168) up to six, then 2.
template <int B, bool Z, int T = threads_default>
inline constexpr int min_blocks = B == 1 ? (T == 64 ? 8 : (Z ? 4 : 5)) : (B <= 4 ? 4 : (B <= 6 ? 3 : 2));

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

template <weight_format F, int B, bool Z, bool V, bool H = false, int T = threads_default>
__global__ void __launch_bounds__(T, min_blocks<B, Z, T>) gemv_kernel(params p) {
    constexpr int threads = T;
    constexpr int warps = T / 32;
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

/// Launches the kernel for B vectors with T-thread blocks.
template <weight_format F, int B, int T>
inline void launch_gemv_shape(const params& p, unsigned grid, cudaStream_t stream) {
    // The unchecked x variant (for GGUF Q4 only at batch 1: with more vectors its hoisted x loads spill).
    constexpr bool q4 = F == weight_format::q4_0 || F == weight_format::q4_1;
    const bool full_x = (B == 1 || !q4) && p.x_vec && p.cols % span_cols<F> == 0;
    if constexpr (F == weight_format::int4_g128) {
        if (p.zeros)
            gemv_kernel<F, B, true, false, false, T><<<grid, T, 0, stream>>>(p);
        else if (full_x && p.scales_fp16)
            gemv_kernel<F, B, false, true, true, T><<<grid, T, 0, stream>>>(p);
        else if (full_x)
            gemv_kernel<F, B, false, true, false, T><<<grid, T, 0, stream>>>(p);
        else
            gemv_kernel<F, B, false, false, false, T><<<grid, T, 0, stream>>>(p);
    } else {
        if (full_x)
            gemv_kernel<F, B, false, B == 1 || !q4, false, T><<<grid, T, 0, stream>>>(p);
        else
            gemv_kernel<F, B, false, false, false, T><<<grid, T, 0, stream>>>(p);
    }
}

/// Launches the kernel for B vectors (asynchronous).
/// Block shape (batch 1): the 64-thread blocks (8 per SM, one wave for up to 8 x sm_count blocks)
/// only when the 128-thread blocks would not fit in one wave (more than min_blocks x sm_count
/// blocks, e.g. 4096 rows = 1024 blocks > 5 x 132): then the single wave beats 1.55 waves with a
/// mostly idle tail. Below that (up to 2640 rows on an H200: SmolLM2's 576 .. 1536-row
/// matrices) the 128-thread blocks put twice the warps (and bytes in flight) on each SM; with
/// 64-thread blocks there, SmolLM2's decode step ran 1.4 .. 1.7x slower.
template <weight_format F, int B>
inline void launch_gemv(const params& p, cudaStream_t stream) {
    constexpr int R = rows_per_block<B>;
    const auto blocks = plan::ceil_div(static_cast<std::int64_t>(p.rows), static_cast<std::int64_t>(R));
    const unsigned grid = static_cast<unsigned>(blocks);
    if constexpr (B == 1) {
        const int per_sm = p.zeros ? min_blocks<1, true> : min_blocks<1, false>;
        const std::int64_t one_wave_128 = static_cast<std::int64_t>(current_device().sm_count) * per_sm;
        if (blocks > one_wave_128)
            launch_gemv_shape<F, B, 64>(p, grid, stream);
        else
            launch_gemv_shape<F, B, threads_default>(p, grid, stream);
    } else {
        launch_gemv_shape<F, B, threads_default>(p, grid, stream);
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

// ---------------------------------------------------------------------------------------------
// Tensor-core path: int4_g128 symmetric (zero 8), batch 1 .. 8 (tc_int4_kernel).
//
// Each weight enters as its exact level n - 8 in [-8, 7] (exact in bf16) and each fp32 x as
// three bf16 parts x = x1 + x2 + x3 (x1 = bf16(x), x2 = bf16(x - x1), x3 = bf16(x - x1 - x2):
// exact for normal floats, 3 x 8 significant bits), so every product level * part is exact in
// the mma's fp32 arithmetic. The parts are separate columns ("slots") of the mma's B operand:
// slot 3v + p = part p of vector v, so batch 1 .. 2 needs one m16n8k16 per 16 x 16 weight tile,
// 3 .. 5 two, 6 .. 8 three (M). Each slot's fp32 sum over a 128-column group (8 mma steps)
// is multiplied by the group's scale and added to the slot's fp32 accumulator (as the CUDA-core
// path applies a group scale to the group's fp32 partial sum); the three parts of a vector are
// added in the final reduction. So the tensor core's accumulation (fp32, truncating) acts on 8
// steps per group and slot, and the small parts x2, x3 never share an accumulator with x1.
//
// Work split: a block of 8 warps owns 16 rows (one m16 tile); warp w takes the 128-column groups
// w, w + 8, ...; the block sums its warps in shared memory (fixed order: deterministic).
// Fragment layout (mma.m16n8k16, lane l: g = l / 4, i = l % 4): A rows g and g + 8, k = 2i, 2i+1
// (a0 / a1) and 2i+8, 2i+9 (a2 / a3); B k likewise for slot 8m + g; C rows g, g + 8 x slots
// 8m + 2i, 8m + 2i + 1. Lane (g, i) loads the 16 bytes of words 4i .. 4i+3 of its two rows'
// 64-byte group block (bits 4t..4t+3 of word j = column 16t + j). The k order inside each
// 16-column tile is free, so tile (t, h) (t = 0..3, h = 0..1) is defined as
//   k = 2i     <-> column 16t + 4i + 2h          k = 2i + 1 <-> column 16(t+4) + 4i + 2h
//   k = 2i + 8 <-> column 16t + 4i + 2h + 1      k = 2i + 9 <-> column 16(t+4) + 4i + 2h + 1
// which makes each A register one LOP3 ((w >> 4t) & 0x000F000F | 0x43004300 = bf16 pair
// 128 + n) and one bf16x2 FMA (- 136) of word 2h (a0 / a1) or 2h + 1 (a2 / a3): no shuffles.
// x is staged once per block in shared memory in the same order: per (slot, group, i) 16 words
// = t x h x e: the bf16 pair {x_p[c], x_p[c + 64]}, c = 128G + 16t + 4i + 2h + e (one 16-byte
// LDS per t); lanes whose slot >= 3 x batch read a zero block.
//
// Budget per warp and group (16 rows x 128 columns, sm_90 SASS at batch 1): 32 LOP3 + 24 SHF +
// 32 HFMA2 (dequant), 8 HMMA, 4 LDS.128, 4 loads, ~4 FFMA + ~20 other = ~0.06 warp instructions
// per weight (the CUDA-core kernel: 0.115), plus the x staging (~10 instructions per x value,
// once per block: +25% at 4096 x 11008).
// Prediction (H200, 4096 x 11008, batch 1, fp16 scales): 256 blocks (2 per SM, 16 warps), issue
// ~3.3 us at full issue rate, memory 22.5 MB at ~4.2 TB/s ~5.3 us: memory-bound, ~7.5 us
// (range 6.5 .. 9) versus 12.8 us on CUDA cores.

inline constexpr int tc_warps = 8;
inline constexpr int tc_threads = 32 * tc_warps;
inline constexpr int tc_rows = 16;
inline constexpr int tc_stages = 4;           // groups in flight per warp
inline constexpr int tc_lane_u4 = 4;          // B uint4 per (slot, group, lane i): one per t
inline constexpr int tc_group_u4 = 4 * tc_lane_u4;  // per (slot, group): 16 uint4 = 256 bytes
/// Dynamic shared memory ceiling of the path (2 blocks per SM on sm_90).
inline constexpr std::size_t tc_max_smem = 100 * 1024;

/// The dynamic shared memory the path may use on the current device: tc_max_smem, less where
/// the device's opt-in limit per block (minus the kernel's <= 12 KB of static shared memory) is
/// smaller. Cached per host thread and device.
inline std::size_t tc_smem_limit() {
    static thread_local int cached_device = -1;
    static thread_local std::size_t limit = 0;
    int dev = 0;
    KITE_CUDA_CHECK(cudaGetDevice(&dev));
    if (dev != cached_device) {
        int optin = 0;
        KITE_CUDA_CHECK(cudaDeviceGetAttribute(&optin, cudaDevAttrMaxSharedMemoryPerBlockOptin, dev));
        const std::size_t room = optin > 16 * 1024 ? static_cast<std::size_t>(optin) - 16 * 1024 : 0;
        limit = room < tc_max_smem ? room : tc_max_smem;
        cached_device = dev;
    }
    return limit;
}

/// mma per tile for `batch` vectors (3 slots each, 8 slots per mma).
inline int tc_mmas(int batch) { return (3 * batch + 7) / 8; }

/// Dynamic shared memory of one block: a zero block + 3 x batch slots x groups x 256 bytes.
inline std::size_t tc_smem_bytes(int batch, int groups) {
    return sizeof(uint4) * static_cast<std::size_t>(tc_group_u4) *
           (1 + 3 * static_cast<std::size_t>(batch) * static_cast<std::size_t>(groups));
}

/// {bf16(lo), bf16(hi)} (round to nearest even) as one word, lo in the low half.
__device__ __forceinline__ std::uint32_t pack_bf16x2(float lo, float hi) {
    std::uint32_t r;
    asm("cvt.rn.bf16x2.f32 %0, %1, %2;" : "=r"(r) : "f"(hi), "f"(lo));
    return r;
}
__device__ __forceinline__ float bf16_lo(std::uint32_t w) { return __uint_as_float(w << 16); }
__device__ __forceinline__ float bf16_hi(std::uint32_t w) { return __uint_as_float(w & 0xffff0000u); }

/// Levels n - 8 of the nibbles at bits 4T and 16 + 4T of w, as a bf16 pair (low, high): exact.
template <int T>
__device__ __forceinline__ std::uint32_t level_pair(std::uint32_t w) {
    std::uint32_t m, r;
    asm("lop3.b32 %0, %1, 0x000F000F, 0x43004300, 0xEA;" : "=r"(m) : "r"(T == 0 ? w : (w >> (4 * T))));
    asm("fma.rn.bf16x2 %0, %1, %2, %3;" : "=r"(r) : "r"(m), "r"(0x3F803F80u), "r"(0xC308C308u));  // * 1 - 136
    return r;
}

/// d += A B (m16n8k16, bf16 in, fp32 accumulate).
__device__ __forceinline__ void mma_bf16(float (&d)[4], std::uint32_t a0, std::uint32_t a1, std::uint32_t a2,
                                         std::uint32_t a3, std::uint32_t b0, std::uint32_t b1) {
    asm("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
        "{%0,%1,%2,%3};"
        : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
        : "r"(a0), "r"(a1), "r"(a2), "r"(a3), "r"(b0), "r"(b1));
}

/// H: fp16 scales (else float); M = tc_mmas(batch). Requires: no zeros, p.x_vec, dynamic shared
/// memory tc_smem_bytes(batch, p.groups).
template <bool H, int M>
__global__ void __launch_bounds__(tc_threads, 2) tc_int4_kernel(params p, int batch) {
    extern __shared__ uint4 tc_smem[];
    __shared__ float partial[tc_warps][tc_rows][8 * M];
    const int tid = static_cast<int>(threadIdx.x);
    const int lane = tid & 31, warp = tid >> 5;
    const int g = lane >> 2, li = lane & 3;
    const int row0 = static_cast<int>(blockIdx.x) * tc_rows;
    const int groups = p.groups;
    const int slots = 3 * batch;

    // The lane's two rows (clamped: rows past the end read the last row, never written). The
    // warp's loads walk its groups in order (warp, warp + 8, ...): four pointers, each advanced
    // by one step per load.
    using scale_t = std::conditional_t<H, unsigned short, unsigned int>;
    const int ra = min(row0 + g, p.rows - 1), rb = min(row0 + g + 8, p.rows - 1);
    const unsigned char* na = p.codes + static_cast<std::size_t>(ra) * p.row_bytes + 16 * li + 64 * warp;
    const unsigned char* nb = p.codes + static_cast<std::size_t>(rb) * p.row_bytes + 16 * li + 64 * warp;
    const scale_t* nsa = static_cast<const scale_t*>(p.scales) + static_cast<std::size_t>(ra) * groups + warp;
    const scale_t* nsb = static_cast<const scale_t*>(p.scales) + static_cast<std::size_t>(rb) * groups + warp;

    uint4 ca[tc_stages], cb[tc_stages];
    std::uint32_t sa[tc_stages], sb[tc_stages];
    auto load = [&](int s) {  // the warp's next group into stage s
        ca[s] = load16_stream(na);
        cb[s] = load16_stream(nb);
        sa[s] = __ldg(nsa);
        sb[s] = __ldg(nsb);
        na += 64 * tc_warps;
        nb += 64 * tc_warps;
        nsa += tc_warps;
        nsb += tc_warps;
    };
    // The first stages' codes are in flight while x is staged.
#pragma unroll
    for (int s = 0; s < tc_stages; ++s)
        if (warp + s * tc_warps < groups) load(s);

    // Stage x: the zero block (tc_smem[0 .. 15]), then slot q = 3v + part, group G, lane i, t at
    // tc_smem[(1 + q * groups + G) * 16 + i * 4 + t] = words (h, e) = (0,0), (0,1), (1,0), (1,1).
    for (int k = tid; k < tc_group_u4; k += tc_threads) tc_smem[k] = make_uint4(0u, 0u, 0u, 0u);
    for (int v = 0; v < batch; ++v) {
        const float* const xv = p.x + static_cast<std::size_t>(v) * p.cols;
        uint4* const x1 = tc_smem + static_cast<std::size_t>(1 + 3 * v * groups) * tc_group_u4;
        uint4* const x2 = x1 + static_cast<std::size_t>(groups) * tc_group_u4;
        uint4* const x3 = x2 + static_cast<std::size_t>(groups) * tc_group_u4;
        // item k: t = k % 4, i = k / 4 % 4, group k / 16; columns c .. c+3 (low halves of the
        // four words) and c+64 .. c+67 (high halves). k is also the item's uint4 index in a slot.
#pragma unroll 2
        for (int k = tid; k < groups * 16; k += tc_threads) {
            const int t = k & 3, i = (k >> 2) & 3, G = k >> 4;
            const int c = 128 * G + 16 * t + 4 * i;
            const float4 lo = c < p.cols ? __ldg(reinterpret_cast<const float4*>(xv + c))
                                         : make_float4(0.f, 0.f, 0.f, 0.f);
            const float4 hi = c + 64 < p.cols ? __ldg(reinterpret_cast<const float4*>(xv + c + 64))
                                              : make_float4(0.f, 0.f, 0.f, 0.f);
            const float l[4] = {lo.x, lo.y, lo.z, lo.w}, h[4] = {hi.x, hi.y, hi.z, hi.w};
            std::uint32_t w1[4], w2[4], w3[4];
#pragma unroll
            for (int e = 0; e < 4; ++e) {  // x = x1 + x2 + x3 exactly (each residual is exact in fp32)
                w1[e] = pack_bf16x2(l[e], h[e]);
                const float l1 = l[e] - bf16_lo(w1[e]), h1 = h[e] - bf16_hi(w1[e]);
                w2[e] = pack_bf16x2(l1, h1);
                w3[e] = pack_bf16x2(l1 - bf16_lo(w2[e]), h1 - bf16_hi(w2[e]));
            }
            x1[k] = make_uint4(w1[0], w1[1], w1[2], w1[3]);
            x2[k] = make_uint4(w2[0], w2[1], w2[2], w2[3]);
            x3[k] = make_uint4(w3[0], w3[1], w3[2], w3[3]);
        }
    }
    __syncthreads();

    // This lane's B operand of mma m, group G: xb[m] + G * xstride[m] (+ t); the zero block when
    // its slot 8m + g >= 3 x batch.
    const uint4* xb[M];
    int xstride[M];
#pragma unroll
    for (int m = 0; m < M; ++m) {
        const int q = 8 * m + g;
        xb[m] = tc_smem + (q < slots ? static_cast<std::size_t>(1 + q * groups) * tc_group_u4 : 0) + li * tc_lane_u4;
        xstride[m] = q < slots ? tc_group_u4 : 0;
    }

    float acc[M][4];  // (row g, slot 8m + 2i), (g, 8m + 2i + 1), (g + 8, 8m + 2i), (g + 8, 8m + 2i + 1)
#pragma unroll
    for (int m = 0; m < M; ++m)
#pragma unroll
        for (int j = 0; j < 4; ++j) acc[m][j] = 0.f;
    for (int base = warp; base < groups; base += tc_stages * tc_warps) {
#pragma unroll
        for (int s = 0; s < tc_stages; ++s) {
            const int G = base + s * tc_warps;
            if (G < groups) {  // warp-uniform
                float c[M][4];
#pragma unroll
                for (int m = 0; m < M; ++m)
#pragma unroll
                    for (int j = 0; j < 4; ++j) c[m][j] = 0.f;
                auto tile_t = [&]<int T>() {
                    uint4 x[M];
#pragma unroll
                    for (int m = 0; m < M; ++m) x[m] = xb[m][static_cast<std::size_t>(G) * xstride[m] + T];
                    {  // h = 0: words 0 (k 2i, 2i+1) and 1 (k 2i+8, 2i+9)
                        const std::uint32_t a0 = level_pair<T>(ca[s].x), a1 = level_pair<T>(cb[s].x);
                        const std::uint32_t a2 = level_pair<T>(ca[s].y), a3 = level_pair<T>(cb[s].y);
#pragma unroll
                        for (int m = 0; m < M; ++m) mma_bf16(c[m], a0, a1, a2, a3, x[m].x, x[m].y);
                    }
                    {  // h = 1: words 2 and 3
                        const std::uint32_t a0 = level_pair<T>(ca[s].z), a1 = level_pair<T>(cb[s].z);
                        const std::uint32_t a2 = level_pair<T>(ca[s].w), a3 = level_pair<T>(cb[s].w);
#pragma unroll
                        for (int m = 0; m < M; ++m) mma_bf16(c[m], a0, a1, a2, a3, x[m].z, x[m].w);
                    }
                };
                tile_t.template operator()<0>();
                tile_t.template operator()<1>();
                tile_t.template operator()<2>();
                tile_t.template operator()<3>();
                const float fa = H ? half_bits_to_f32(sa[s]) : __uint_as_float(sa[s]);
                const float fb = H ? half_bits_to_f32(sb[s]) : __uint_as_float(sb[s]);
#pragma unroll
                for (int m = 0; m < M; ++m) {
                    acc[m][0] = fmaf(fa, c[m][0], acc[m][0]);
                    acc[m][1] = fmaf(fa, c[m][1], acc[m][1]);
                    acc[m][2] = fmaf(fb, c[m][2], acc[m][2]);
                    acc[m][3] = fmaf(fb, c[m][3], acc[m][3]);
                }
                if (G + tc_stages * tc_warps < groups) load(s);  // stage s refilled after its use
            }
        }
    }

#pragma unroll
    for (int m = 0; m < M; ++m) {
        partial[warp][g][8 * m + 2 * li] = acc[m][0];
        partial[warp][g][8 * m + 2 * li + 1] = acc[m][1];
        partial[warp][g + 8][8 * m + 2 * li] = acc[m][2];
        partial[warp][g + 8][8 * m + 2 * li + 1] = acc[m][3];
    }
    __syncthreads();
    if (tid < tc_rows * 8) {
        const int r = tid >> 3, v = tid & 7;
        const int row = row0 + r;
        if (v < batch && row < p.rows) {
            float part[3];
#pragma unroll
            for (int q = 0; q < 3; ++q) {
                part[q] = 0.f;
#pragma unroll
                for (int w = 0; w < tc_warps; ++w) part[q] += partial[w][r][3 * v + q];
            }
            const float bias = p.bias ? __ldg(p.bias + row) : 0.0f;
            p.y[static_cast<std::size_t>(v) * p.rows + row] = (part[0] + (part[1] + part[2])) + bias;
        }
    }
}

/// Whether the tensor-core path takes this int4_g128 call: symmetric, float4-aligned x rows,
/// a group for each of the block's 8 warps (cols > 896), enough 16-row blocks to give every SM
/// one (else the CUDA-core path's 4-row blocks spread the matrix wider), and x's bf16 parts fit
/// in shared memory at 2 blocks per SM (batch 1: up to ~16900 columns; 4: ~4200; 8: ~2100).
inline bool tc_int4_usable(const params& p, int batch) {
    if (p.zeros != nullptr || !p.x_vec || batch < 1 || batch > 8 || p.groups < tc_warps) return false;
    if (tc_smem_bytes(batch, p.groups) > tc_smem_limit()) return false;
    const std::int64_t blocks = plan::ceil_div(static_cast<std::int64_t>(p.rows), static_cast<std::int64_t>(tc_rows));
    return blocks >= current_device().sm_count;
}

template <bool H, int M>
inline void launch_tc_int4(const params& p, int batch, unsigned grid, std::size_t smem, cudaStream_t stream) {
    // Dynamic shared memory above 48 KB needs an opt-in per kernel and device: done once per
    // (host thread, device), for the path's limit (tc_smem_limit), so a launch costs no extra
    // driver call.
    static thread_local int opted_in_device = -1;
    int dev = 0;
    KITE_CUDA_CHECK(cudaGetDevice(&dev));
    if (dev != opted_in_device) {
        KITE_CUDA_CHECK(cudaFuncSetAttribute(tc_int4_kernel<H, M>, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                             static_cast<int>(tc_smem_limit())));
        opted_in_device = dev;
    }
    tc_int4_kernel<H, M><<<grid, tc_threads, smem, stream>>>(p, batch);
}

/// Launches tc_int4_kernel (asynchronous); the caller checked tc_int4_usable.
inline void launch_tc_int4(const params& p, int batch, cudaStream_t stream) {
    const auto grid =
        static_cast<unsigned>(plan::ceil_div(static_cast<std::int64_t>(p.rows), static_cast<std::int64_t>(tc_rows)));
    const std::size_t smem = tc_smem_bytes(batch, p.groups);
    const int m = tc_mmas(batch);
    if (p.scales_fp16) {
        if (m == 1) launch_tc_int4<true, 1>(p, batch, grid, smem, stream);
        else if (m == 2) launch_tc_int4<true, 2>(p, batch, grid, smem, stream);
        else launch_tc_int4<true, 3>(p, batch, grid, smem, stream);
    } else {
        if (m == 1) launch_tc_int4<false, 1>(p, batch, grid, smem, stream);
        else if (m == 2) launch_tc_int4<false, 2>(p, batch, grid, smem, stream);
        else launch_tc_int4<false, 3>(p, batch, grid, smem, stream);
    }
    check_launch("kite::cuda::gemv (int4 tensor cores)");
}

}  // namespace kite::cuda::dev::gemv_impl
