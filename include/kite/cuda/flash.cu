/// @file kite/cuda/flash.cu
/// kite::cuda::flash_forward (flash.hpp): argument checks, then the launchers of flash.cuh.

#include <cmath>
#include <cstdint>

#include "kite/cuda/flash.cuh"
#include "kite/cuda/flash.hpp"

namespace kite::cuda {

namespace {

bool aligned16(const void* p) noexcept { return (reinterpret_cast<std::uintptr_t>(p) & 15u) == 0; }

template <dtype T>
void dispatch(const flash_args& a, cudaStream_t stream) {
    namespace fl = dev::flash;
    if (a.head_dim == 64) {
        a.causal ? fl::launch<T, 64, true>(a, stream) : fl::launch<T, 64, false>(a, stream);
    } else {
        a.causal ? fl::launch<T, 128, true>(a, stream) : fl::launch<T, 128, false>(a, stream);
    }
}

}  // namespace

void flash_forward(const flash_args& a, cudaStream_t stream) {
    KITE_REQUIRE(a.type == dtype::bf16 || a.type == dtype::fp16, invalid_argument, "cuda::flash_forward: type = ",
                 dtype_name(a.type), "; expected bf16 or fp16");
    KITE_REQUIRE(a.head_dim == 64 || a.head_dim == 128, invalid_argument, "cuda::flash_forward: head_dim = ",
                 a.head_dim, "; expected 64 or 128");
    KITE_REQUIRE(a.batch >= 1 && a.batch <= 65535, invalid_argument, "cuda::flash_forward: batch = ", a.batch,
                 "; expected 1 <= batch <= 65535");
    KITE_REQUIRE(a.num_heads >= 1 && a.num_heads <= 65535, invalid_argument, "cuda::flash_forward: num_heads = ",
                 a.num_heads, "; expected 1 <= num_heads <= 65535");
    KITE_REQUIRE(a.num_kv_heads >= 1 && a.num_heads % a.num_kv_heads == 0, invalid_argument,
                 "cuda::flash_forward: num_kv_heads = ", a.num_kv_heads, " with num_heads = ", a.num_heads,
                 "; expected num_kv_heads >= 1 dividing num_heads");
    KITE_REQUIRE(a.max_seqlen_q >= 0 && a.max_seqlen_k >= 0, invalid_argument,
                 "cuda::flash_forward: max_seqlen_q = ", a.max_seqlen_q, ", max_seqlen_k = ", a.max_seqlen_k,
                 "; expected >= 0");
    KITE_REQUIRE(std::isfinite(a.scale) && a.scale > 0.0f, invalid_argument, "cuda::flash_forward: scale = ",
                 a.scale, "; expected a finite value > 0");
    KITE_REQUIRE(a.cu_seqlens_q && a.cu_seqlens_k, invalid_argument,
                 "cuda::flash_forward: a null pointer (cu_seqlens_q or cu_seqlens_k); expected device arrays");
    if (a.max_seqlen_q == 0) return;  // every sequence has no query: nothing to write
    KITE_REQUIRE(a.q && a.k && a.v && a.o, invalid_argument,
                 "cuda::flash_forward: a null pointer (q, k, v or o); expected device buffers");
    KITE_REQUIRE(aligned16(a.q) && aligned16(a.k) && aligned16(a.v) && aligned16(a.o), invalid_argument,
                 "cuda::flash_forward: q, k, v and o must be 16-byte aligned (cudaMalloc'd buffers are)");
    if (a.type == dtype::bf16)
        dispatch<dtype::bf16>(a, stream);
    else
        dispatch<dtype::fp16>(a, stream);
    check_launch("cuda::flash_forward");
}

}  // namespace kite::cuda
