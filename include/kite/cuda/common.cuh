#pragma once
/// @file kite/cuda/common.cuh
/// Device-side helpers shared by kite's kernels: the element types (f32, bf16, fp16) and
/// their conversions, 16-byte vector loads, warp reductions. Included by the .cuh kernel files.

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstdint>

#include "kite/cuda/runtime.hpp"

namespace kite::cuda::dev {

/// The device type of a kite::cuda::dtype.
template <dtype T>
struct storage;
template <>
struct storage<dtype::f32> { using type = float; };
template <>
struct storage<dtype::bf16> { using type = __nv_bfloat16; };
template <>
struct storage<dtype::fp16> { using type = __half; };
template <dtype T>
using storage_t = typename storage<T>::type;

__device__ __forceinline__ float to_f32(float x) { return x; }
__device__ __forceinline__ float to_f32(__nv_bfloat16 x) { return __bfloat162float(x); }
__device__ __forceinline__ float to_f32(__half x) { return __half2float(x); }

template <class T>
__device__ __forceinline__ T from_f32(float x);
template <>
__device__ __forceinline__ float from_f32<float>(float x) { return x; }
template <>
__device__ __forceinline__ __nv_bfloat16 from_f32<__nv_bfloat16>(float x) { return __float2bfloat16_rn(x); }
template <>
__device__ __forceinline__ __half from_f32<__half>(float x) { return __float2half_rn(x); }

/// Sum over the 32 lanes of a warp (every lane gets the result).
__device__ __forceinline__ float warp_sum(float v) {
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}
/// Max over the 32 lanes of a warp (every lane gets the result).
__device__ __forceinline__ float warp_max(float v) {
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
    return v;
}

/// 16-byte load through the read-only path (p must be 16-byte aligned).
__device__ __forceinline__ uint4 load16(const void* p) { return __ldg(static_cast<const uint4*>(p)); }
/// 16-byte load that does not stay in L1 (streamed data read once: weights, KV blocks).
__device__ __forceinline__ uint4 load16_stream(const void* p) {
    uint4 r;
    asm volatile("ld.global.nc.L1::no_allocate.v4.u32 {%0,%1,%2,%3}, [%4];"
                 : "=r"(r.x), "=r"(r.y), "=r"(r.z), "=r"(r.w)
                 : "l"(p));
    return r;
}

}  // namespace kite::cuda::dev
