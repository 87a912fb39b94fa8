#pragma once
/// @file kite/cuda/gemv.hpp
/// Quantized matrix-vector products on the GPU, y = W x (+ bias), for a few vectors at once
/// (decode: one token per sequence), reading W as stored on the host:
///
///   f32, bf16          dense rows
///   int8_rows          kite::quant::packed_weights<8, per_row> (absmax<8>): int8 levels, one float scale per row
///   int4_g128          kite::quant::packed_weights<4, 128> (symmetric or asymmetric, float or fp16 scales):
///                      kite's nibble-interleaved 64-byte blocks of 128 columns (kite/quant/format.hpp)
///   q4_0, q4_1, q8_0   GGUF blocks of 32 (kite/quant/ggml_types.hpp), rows of cols / 32 blocks, split by
///                      upload() into 16-byte aligned code rows (each block's qs) and an fp16 scale
///                      array (each block's d; Q4_1: d, m pairs) -- see gemv_upload.hpp
///
/// Each format's dequantized weight is exactly the float its CPU kernels use (one rounding);
/// products accumulate in fp32. The kernel streams W once per call (memory-bound): it is
/// built to run near the device's bandwidth.
///
///   kite::cuda::device_matrix w = kite::cuda::upload(packed);      // host format -> device, once
///   kite::cuda::gemv(w, x, y, batch, stream);                      // x [batch][cols], y [batch][rows]

#include <cstddef>
#include <cstdint>

#include "kite/cuda/runtime.hpp"

namespace kite::cuda {

enum class weight_format : std::uint8_t { f32, bf16, int8_rows, int4_g128, q4_0, q4_1, q8_0 };

constexpr const char* weight_format_name(weight_format f) noexcept {
    switch (f) {
        case weight_format::f32: return "f32";
        case weight_format::bf16: return "bf16";
        case weight_format::int8_rows: return "int8_rows";
        case weight_format::int4_g128: return "int4_g128";
        case weight_format::q4_0: return "q4_0";
        case weight_format::q4_1: return "q4_1";
        case weight_format::q8_0: return "q8_0";
    }
    return "?";
}

/// A non-owning view of a weight matrix in device memory (see device_matrix in gemv_upload.hpp
/// for the owning form).
struct gemv_weights {
    weight_format format = weight_format::f32;
    int rows = 0, cols = 0;
    std::size_t row_bytes = 0;             ///< bytes from one row's codes to the next
    const void* codes = nullptr;           ///< [rows][row_bytes]
    const void* scales = nullptr;          ///< int8_rows: float [rows]; int4_g128: [rows][ceil(cols/128)] float or fp16;
                                           ///< q4_0, q8_0: fp16 [rows][cols/32]; q4_1: fp16 [rows][cols/32][2] (d, m)
    bool scales_fp16 = false;              ///< int4_g128 scales stored as fp16
    const std::uint8_t* zeros = nullptr;   ///< int4_g128 asymmetric: [rows][ceil(cols/128)]; else null
};

/// y [batch][rows] = x [batch][cols] W^T (+ bias [rows]), fp32 vectors in device memory,
/// batch 1 .. 8. Checks the arguments and launches (asynchronous).
void gemv(const gemv_weights& w, const float* x, float* y, int batch, const float* bias = nullptr,
          cudaStream_t stream = nullptr);

namespace detail {
/// Whether int4_g128 symmetric calls take the tensor-core kernel where it applies (else the
/// CUDA-core kernel); process-wide, for benchmarks and tests that compare the two paths.
void set_int4_tensor_cores(bool on);
bool int4_tensor_cores();
}  // namespace detail

}  // namespace kite::cuda
