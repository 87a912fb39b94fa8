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
/// file; runtime switch detail::set_int4_tensor_cores in gemv.hpp).
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
// three bf16 parts x = x1 + x2 + x3 (truncations: x1 = x's leading 8 significant bits, x2 the
// next 8 of x - x1, x3 = x - x1 - x2; exact for normal floats, 3 x 8 significant bits), so every product level * part is exact in
// the mma's fp32 arithmetic. The parts are separate columns ("slots") of the mma's B operand:
// slot 3v + p = part p of vector v, so batch 1 .. 2 needs one m16n8k16 per 16 x 16 weight tile,
// 3 .. 5 two, 6 .. 8 three (M). Each slot's fp32 sum over a 128-column group (8 mma steps)
// is multiplied by the group's scale and added to the slot's fp32 accumulator (as the CUDA-core
// path applies a group scale to the group's fp32 partial sum); the three parts of a vector are
// added in the final reduction. So the tensor core's accumulation (fp32, truncating) acts on 8
// steps per group and slot, and the small parts x2, x3 never share an accumulator with x1.
//
// Work split: a block of 8 warps owns 16 or 32 rows (R m16 tiles); warp w takes the 128-column groups
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
// x is not staged: each lane loads its own B values (fp32) straight from global memory through
// the read-only path (x is L1 / L2 resident after the first touch: every block reads all of it)
// and splits them in registers. Lane (g, i) of mma m holds slot q = 8m + g (vector q / 3, part
// q % 3) and, per tile t, the columns c .. c+3 and c+64 .. c+67, c = 128G + 16t + 4i: b0 / b1 of
// (t, h) = {x_p[c + 2h], x_p[c + 64 + 2h]} / {x_p[c + 2h + 1], x_p[c + 65 + 2h]}. The split is by
// truncation, the same instructions on every lane with lane-dependent masks:
//   u = x - (x & k1), u = u - (u & k2), part = high half of u
// part 0: k1 = k2 = 0 (x1 = x & 0xffff0000); part 1: k1 = 0xffff0000, k2 = 0 (x2 = (x - x1) &
// 0xffff0000); part 2: k1 = k2 = 0xffff0000 (x3 = x - x1 - x2, exact in bf16); lanes of no slot
// (q >= 3 x batch): k1 = 0xffffffff (u = x - x = 0). Every subtraction is exact (it clears
// leading bits), so x = x1 + x2 + x3 exactly for normal floats: 4 instructions per x value and
// one PRMT per bf16 pair.
// Rows: a block has R m16 tiles (16R rows; R = 2 at batch 1 .. 2 when the matrix has >= 32 rows
// per SM): the warp's x parts then serve two tiles (half the split work per weight). Each warp
// sums a group's 8 mma steps in two chains at M = 1 (h = 0 and h = 1: independent mma
// dependencies), adds them, scales by the group's scale and adds to its fp32 accumulator (fixed order: deterministic).
// Software pipeline: codes / scales S groups ahead (S = 4 / 2 / 1 at M = 1 / 2 / 3: registers,
// <= 128 for 2 blocks per SM); at M = 1 the x
// values of the warp's next group are loaded while the current group is split and multiplied
// (per tile t: split t, load t of the next group, dequantize and mma t).
//
// Budget per warp and group at batch 1, R = 2 (32 rows x 128 columns): 16 x 9 split + 8 x loads,
// 2 x (32 LOP3 + 24 SHF + 32 HFMA2) dequant, 16 HMMA, 8 code/scale loads, ~20 other = ~0.09 warp
// instructions per weight (CUDA-core kernel: 0.115; staged TC kernel: 0.06 + staging 11 MB of L2).
// Prediction (H200, 4096 x 11008, batch 1, fp16 scales): 128 blocks of 8 warps (1 per SM), issue
// ~4 us at full rate, memory ~5.3 us: ~6.5 .. 8 us.

inline constexpr int tc_warps = 8;
inline constexpr int tc_threads = 32 * tc_warps;
inline constexpr int tc_rows = 16;  // rows per m16 tile

/// mma per tile for `batch` vectors (3 slots each, 8 slots per mma).
inline int tc_mmas(int batch) { return (3 * batch + 7) / 8; }
/// Code / scale pipeline depth (groups in flight per warp).
template <int M, int R>
inline constexpr int tc_stages = M == 1 ? 4 : (M == 2 ? 2 : 1);
/// Resident blocks per SM asked of the register allocator: 2 (<= 128 registers) for one tile per
/// block, 1 for two (128 blocks of 32 rows at 4096 rows: one per SM).
template <int M, int R>
inline constexpr int tc_min_blocks = R == 2 ? 1 : 2;

__device__ __forceinline__ float mask_f(float x, std::uint32_t k) { return __uint_as_float(__float_as_uint(x) & k); }
/// One slot's bf16 part of the two fp32 values lo, hi (see above): {part(lo), part(hi)}, lo in the low half.
__device__ __forceinline__ std::uint32_t split_pair(float lo, float hi, std::uint32_t k1, std::uint32_t k2) {
    lo -= mask_f(lo, k1);
    hi -= mask_f(hi, k1);
    lo -= mask_f(lo, k2);
    hi -= mask_f(hi, k2);
    return __byte_perm(__float_as_uint(lo), __float_as_uint(hi), 0x7632);
}

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

/// The group's sum of entry (r, m, j) over the CH mma chains.
template <int CH, int R, int M>
__device__ __forceinline__ float sum_chains(const float (&c)[CH][R][M][4], int r, int m, int j) {
    if constexpr (CH == 1) return c[0][r][m][j];
    else return c[0][r][m][j] + c[1][r][m][j];
}

/// H: fp16 scales (else float); M = tc_mmas(batch); R: m16 tiles per block. Requires: no zeros,
/// p.x_vec, p.groups >= tc_warps.
template <bool H, int M, int R>
__global__ void __launch_bounds__(tc_threads, tc_min_blocks<M, R>) tc_int4_kernel(params p, int batch) {
    constexpr int S = tc_stages<M, R>;
    constexpr bool XP = M == 1;  // x of the next group prefetched
    constexpr int CH = M == 1 ? 2 : 1;  // mma accumulation chains per (tile, mma)
    __shared__ float partial[tc_warps][R * tc_rows][8 * M];
    const int tid = static_cast<int>(threadIdx.x);
    const int lane = tid & 31, warp = tid >> 5;
    const int g = lane >> 2, li = lane & 3;
    const int row0 = static_cast<int>(blockIdx.x) * (R * tc_rows);
    const int groups = p.groups, cols = p.cols;

    // The lane's two rows per tile (clamped: rows past the end read the last row, never written).
    // The warp's loads walk its groups in order (warp, warp + 8, ...): pointers advanced per load.
    using scale_t = std::conditional_t<H, unsigned short, unsigned int>;
    const unsigned char* na[R];
    const unsigned char* nb[R];
    const scale_t* nsa[R];
    const scale_t* nsb[R];
#pragma unroll
    for (int r = 0; r < R; ++r) {
        const int ra = min(row0 + tc_rows * r + g, p.rows - 1), rb = min(row0 + tc_rows * r + g + 8, p.rows - 1);
        na[r] = p.codes + static_cast<std::size_t>(ra) * p.row_bytes + 16 * li + 64 * warp;
        nb[r] = p.codes + static_cast<std::size_t>(rb) * p.row_bytes + 16 * li + 64 * warp;
        nsa[r] = static_cast<const scale_t*>(p.scales) + static_cast<std::size_t>(ra) * groups + warp;
        nsb[r] = static_cast<const scale_t*>(p.scales) + static_cast<std::size_t>(rb) * groups + warp;
    }

    uint4 ca[S][R], cb[S][R];
    std::uint32_t sa[S][R], sb[S][R];
    auto load = [&](int s) {  // the warp's next group into stage s
#pragma unroll
        for (int r = 0; r < R; ++r) {
            ca[s][r] = load16_stream(na[r]);
            cb[s][r] = load16_stream(nb[r]);
            sa[s][r] = __ldg(nsa[r]);
            sb[s][r] = __ldg(nsb[r]);
            na[r] += 64 * tc_warps;
            nb[r] += 64 * tc_warps;
            nsa[r] += tc_warps;
            nsb[r] += tc_warps;
        }
    };
#pragma unroll
    for (int s = 0; s < S; ++s)
        if (warp + s * tc_warps < groups) load(s);

    // The lane's slot per mma: its x row and split masks (lanes of no slot read vector 0, masked to 0).
    const float* xr[M];
    std::uint32_t k1[M], k2[M];
#pragma unroll
    for (int m = 0; m < M; ++m) {
        const int q = 8 * m + g;
        const bool valid = q < 3 * batch;
        const int part = q % 3;
        xr[m] = p.x + (valid ? static_cast<std::size_t>(q / 3) * cols : 0) + 4 * li;
        k1[m] = !valid ? 0xffffffffu : (part >= 1 ? 0xffff0000u : 0u);
        k2[m] = valid && part >= 2 ? 0xffff0000u : 0u;
    }
    // x of tile t of group G (columns 128G + 16t + 4i .. +3 and +64 .. +67), zero past cols.
    auto load_x = [&](int m, int t, int G, float4& lo, float4& hi) {
        const int c = 128 * G + 16 * t;
        if (128 * (G + 1) <= cols) {  // warp-uniform: a full group
            lo = __ldg(reinterpret_cast<const float4*>(xr[m] + c));
            hi = __ldg(reinterpret_cast<const float4*>(xr[m] + c + 64));
        } else {  // cols % 4 == 0 (x_vec): each float4 wholly in or out
            const int ci = c + 4 * li;
            lo = ci < cols ? __ldg(reinterpret_cast<const float4*>(xr[m] + c)) : make_float4(0.f, 0.f, 0.f, 0.f);
            hi = ci + 64 < cols ? __ldg(reinterpret_cast<const float4*>(xr[m] + c + 64))
                                : make_float4(0.f, 0.f, 0.f, 0.f);
        }
    };
    float4 xl[XP ? M : 1][4], xh[XP ? M : 1][4];  // prefetched x of the warp's current group (XP)
    if constexpr (XP) {
#pragma unroll
        for (int m = 0; m < M; ++m)
#pragma unroll
            for (int t = 0; t < 4; ++t) load_x(m, t, warp, xl[m][t], xh[m][t]);
    }

    float acc[R][M][4];  // (row g, slot 8m + 2i), (g, 8m + 2i + 1), (g + 8, 8m + 2i), (g + 8, 8m + 2i + 1)
#pragma unroll
    for (int r = 0; r < R; ++r)
#pragma unroll
        for (int m = 0; m < M; ++m)
#pragma unroll
            for (int j = 0; j < 4; ++j) acc[r][m][j] = 0.f;
    for (int base = warp; base < groups; base += S * tc_warps) {
#pragma unroll
        for (int s = 0; s < S; ++s) {
            const int G = base + s * tc_warps;
            if (G < groups) {  // warp-uniform
                const int Gn = G + tc_warps;  // the warp's next group
                float c[CH][R][M][4];  // chains h = 0, 1 (one chain at M >= 2: M independent mma already)
#pragma unroll
                for (int h = 0; h < CH; ++h)
#pragma unroll
                    for (int r = 0; r < R; ++r)
#pragma unroll
                        for (int m = 0; m < M; ++m)
#pragma unroll
                            for (int j = 0; j < 4; ++j) c[h][r][m][j] = 0.f;
                auto tile_t = [&]<int T>() {
                    std::uint32_t b[M][4];  // (h = 0: b0, b1), (h = 1: b0, b1)
#pragma unroll
                    for (int m = 0; m < M; ++m) {
                        float4 lo, hi;
                        if constexpr (XP) {
                            lo = xl[m][T];
                            hi = xh[m][T];
                        } else {
                            load_x(m, T, G, lo, hi);
                        }
                        b[m][0] = split_pair(lo.x, hi.x, k1[m], k2[m]);
                        b[m][1] = split_pair(lo.y, hi.y, k1[m], k2[m]);
                        b[m][2] = split_pair(lo.z, hi.z, k1[m], k2[m]);
                        b[m][3] = split_pair(lo.w, hi.w, k1[m], k2[m]);
                        if constexpr (XP) {
                            if (Gn < groups) load_x(m, T, Gn, xl[m][T], xh[m][T]);
                        }
                    }
#pragma unroll
                    for (int r = 0; r < R; ++r) {
                        {  // h = 0: words 0 (k 2i, 2i+1) and 1 (k 2i+8, 2i+9)
                            const std::uint32_t a0 = level_pair<T>(ca[s][r].x), a1 = level_pair<T>(cb[s][r].x);
                            const std::uint32_t a2 = level_pair<T>(ca[s][r].y), a3 = level_pair<T>(cb[s][r].y);
#pragma unroll
                            for (int m = 0; m < M; ++m) mma_bf16(c[0][r][m], a0, a1, a2, a3, b[m][0], b[m][1]);
                        }
                        {  // h = 1: words 2 and 3
                            const std::uint32_t a0 = level_pair<T>(ca[s][r].z), a1 = level_pair<T>(cb[s][r].z);
                            const std::uint32_t a2 = level_pair<T>(ca[s][r].w), a3 = level_pair<T>(cb[s][r].w);
#pragma unroll
                            for (int m = 0; m < M; ++m) mma_bf16(c[CH - 1][r][m], a0, a1, a2, a3, b[m][2], b[m][3]);
                        }
                    }
                };
                tile_t.template operator()<0>();
                tile_t.template operator()<1>();
                tile_t.template operator()<2>();
                tile_t.template operator()<3>();
#pragma unroll
                for (int r = 0; r < R; ++r) {
                    const float fa = H ? half_bits_to_f32(sa[s][r]) : __uint_as_float(sa[s][r]);
                    const float fb = H ? half_bits_to_f32(sb[s][r]) : __uint_as_float(sb[s][r]);
#pragma unroll
                    for (int m = 0; m < M; ++m) {
                        acc[r][m][0] = fmaf(fa, sum_chains<CH>(c, r, m, 0), acc[r][m][0]);
                        acc[r][m][1] = fmaf(fa, sum_chains<CH>(c, r, m, 1), acc[r][m][1]);
                        acc[r][m][2] = fmaf(fb, sum_chains<CH>(c, r, m, 2), acc[r][m][2]);
                        acc[r][m][3] = fmaf(fb, sum_chains<CH>(c, r, m, 3), acc[r][m][3]);
                    }
                }
                if (G + S * tc_warps < groups) load(s);  // stage s refilled after its use
            }
        }
    }

#pragma unroll
    for (int r = 0; r < R; ++r)
#pragma unroll
        for (int m = 0; m < M; ++m) {
            partial[warp][tc_rows * r + g][8 * m + 2 * li] = acc[r][m][0];
            partial[warp][tc_rows * r + g][8 * m + 2 * li + 1] = acc[r][m][1];
            partial[warp][tc_rows * r + g + 8][8 * m + 2 * li] = acc[r][m][2];
            partial[warp][tc_rows * r + g + 8][8 * m + 2 * li + 1] = acc[r][m][3];
        }
    __syncthreads();
    if (tid < R * tc_rows * 8) {
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

/// Whether two m16 tiles per block (R = 2) serve this call: batch 1 .. 2 and at least one
/// 32-row block per SM.
inline bool tc_two_tiles(const params& p, int batch) {
    return tc_mmas(batch) == 1 && static_cast<std::int64_t>(p.rows) >= 2LL * tc_rows * current_device().sm_count;
}

/// Whether the tensor-core path takes this int4_g128 call: symmetric, float4-aligned x rows,
/// a group for each of the block's 8 warps (cols > 896), and enough 16-row blocks to give every
/// SM one (else the CUDA-core path's 4-row blocks spread the matrix wider).
inline bool tc_int4_usable(const params& p, int batch) {
    if (p.zeros != nullptr || !p.x_vec || batch < 1 || batch > 8 || p.groups < tc_warps) return false;
    const std::int64_t blocks = plan::ceil_div(static_cast<std::int64_t>(p.rows), static_cast<std::int64_t>(tc_rows));
    return blocks >= current_device().sm_count;
}

template <bool H, int M, int R>
inline void launch_tc_int4(const params& p, int batch, cudaStream_t stream) {
    const auto grid = static_cast<unsigned>(
        plan::ceil_div(static_cast<std::int64_t>(p.rows), static_cast<std::int64_t>(R * tc_rows)));
    tc_int4_kernel<H, M, R><<<grid, tc_threads, 0, stream>>>(p, batch);
}

template <bool H>
inline void launch_tc_int4(const params& p, int batch, cudaStream_t stream) {
    const int m = tc_mmas(batch);
    if (m == 1) {
        if (tc_two_tiles(p, batch)) launch_tc_int4<H, 1, 2>(p, batch, stream);
        else launch_tc_int4<H, 1, 1>(p, batch, stream);
    } else if (m == 2) {
        launch_tc_int4<H, 2, 1>(p, batch, stream);
    } else {
        launch_tc_int4<H, 3, 1>(p, batch, stream);
    }
}

/// Launches tc_int4_kernel (asynchronous); the caller checked tc_int4_usable.
inline void launch_tc_int4(const params& p, int batch, cudaStream_t stream) {
    if (p.scales_fp16) launch_tc_int4<true>(p, batch, stream);
    else launch_tc_int4<false>(p, batch, stream);
    check_launch("kite::cuda::gemv (int4 tensor cores)");
}

}  // namespace kite::cuda::dev::gemv_impl
