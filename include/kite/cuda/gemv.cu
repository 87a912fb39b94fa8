/// @file kite/cuda/gemv.cu
/// The host function of kite/cuda/gemv.hpp: argument checks, then the launchers of gemv.cuh.

#include <atomic>
#include <cstdint>
#include <string_view>

#include "kite/cuda/gemv.cuh"
#include "kite/cuda/gemv.hpp"

namespace kite::cuda {

namespace {

/// int4_g128 symmetric through the tensor cores (gemv.cuh, tc_int4_kernel) where it applies
/// (tc_int4_usable: symmetric, x float4-aligned, cols > 896, rows >= 16 x SMs); off: every int4
/// call takes the CUDA-core kernel (gemv_kernel). Measured on the H200 at 4096 x 11008, batch 1,
/// fp16 scales, with the x-staging version of the kernel: 13.7 us against 12.9 us on CUDA cores;
/// the kernel now splits x in registers (no staging). Off until it is measured to win.
std::atomic<bool> g_int4_tensor_cores{false};

bool aligned(const void* p, std::size_t a) noexcept { return reinterpret_cast<std::uintptr_t>(p) % a == 0; }

/// 16-byte chunks of a row that hold columns < cols.
std::int64_t chunks_per_row(weight_format f, std::int64_t cols) noexcept {
    switch (f) {
        case weight_format::f32: return plan::ceil_div(cols, 4);
        case weight_format::bf16: return plan::ceil_div(cols, 8);
        case weight_format::int8_rows: return plan::ceil_div(cols, 16);
        case weight_format::int4_g128: return 4 * plan::ceil_div(cols, 128);
        case weight_format::q4_0:
        case weight_format::q4_1: return cols / 32;
        case weight_format::q8_0: return cols / 16;
    }
    return 0;
}

}  // namespace

void gemv(const gemv_weights& w, const float* x, float* y, int batch, const float* bias, cudaStream_t stream) {
    const char* fmt = weight_format_name(w.format);
    KITE_REQUIRE(batch >= 1 && batch <= 8, invalid_argument, "cuda::gemv: batch = ", batch, "; expected 1 .. 8 vectors");
    KITE_REQUIRE(x != nullptr && y != nullptr, invalid_argument,
                 "cuda::gemv: a null pointer (x or y); expected device buffers [batch][cols] and [batch][rows]");
    KITE_REQUIRE(w.codes != nullptr, invalid_argument, "cuda::gemv: w.codes = null; expected the device weights");
    KITE_REQUIRE(w.rows >= 1 && w.cols >= 1, invalid_argument, "cuda::gemv: w is ", w.rows, " x ", w.cols,
                 "; expected rows >= 1 and cols >= 1");
    KITE_REQUIRE(std::string_view(fmt) != "?", invalid_argument, "cuda::gemv: w.format = ",
                 static_cast<int>(w.format), "; expected a kite::cuda::weight_format");
    KITE_REQUIRE(aligned(w.codes, 16) && w.row_bytes % 16 == 0, invalid_argument, "cuda::gemv: ", fmt,
                 " codes at a ", (reinterpret_cast<std::uintptr_t>(w.codes) % 16 == 0 ? "16-byte aligned" : "misaligned"),
                 " address with row_bytes = ", w.row_bytes, "; expected 16-byte aligned rows (kite::cuda::upload)");
    const bool gguf = w.format == weight_format::q4_0 || w.format == weight_format::q4_1 || w.format == weight_format::q8_0;
    if (gguf)
        KITE_REQUIRE(w.cols % 32 == 0, invalid_argument, "cuda::gemv: ", fmt, " rows of ", w.cols,
                     " columns; expected a multiple of 32 (GGUF blocks)");
    const std::int64_t chunks = chunks_per_row(w.format, w.cols);
    KITE_REQUIRE(static_cast<std::int64_t>(w.row_bytes) >= 16 * chunks, invalid_argument, "cuda::gemv: ", fmt, " rows of ",
                 w.cols, " columns in row_bytes = ", w.row_bytes, "; expected at least ", 16 * chunks);
    const bool quantized = w.format != weight_format::f32 && w.format != weight_format::bf16;
    KITE_REQUIRE(!quantized || w.scales != nullptr, invalid_argument, "cuda::gemv: ", fmt,
                 " weights with w.scales = null; expected the device scales");
    KITE_REQUIRE(w.zeros == nullptr || w.format == weight_format::int4_g128, invalid_argument, "cuda::gemv: ", fmt,
                 " weights with zero points; expected zeros only for int4_g128 (asymmetric)");
    if (w.format == weight_format::q4_1)
        KITE_REQUIRE(aligned(w.scales, 4), invalid_argument,
                     "cuda::gemv: q4_1 scales not 4-byte aligned; expected [rows][cols / 32] fp16 pairs {d, m}");
    if (w.format == weight_format::int4_g128 && !w.scales_fp16)
        KITE_REQUIRE(aligned(w.scales, 4), invalid_argument, "cuda::gemv: int4_g128 float scales not 4-byte aligned");
    if (w.format == weight_format::int8_rows)
        KITE_REQUIRE(aligned(w.scales, 4), invalid_argument, "cuda::gemv: int8_rows float scales not 4-byte aligned");

    dev::gemv_impl::params p;
    p.codes = static_cast<const unsigned char*>(w.codes);
    p.row_bytes = w.row_bytes;
    p.scales = w.scales;
    p.zeros = w.zeros;
    p.x = x;
    p.y = y;
    p.bias = bias;
    p.rows = w.rows;
    p.cols = w.cols;
    p.chunks = static_cast<int>(chunks);
    p.groups = w.format == weight_format::int4_g128 ? static_cast<int>(plan::ceil_div(w.cols, 128)) : w.cols / 32;
    p.scales_fp16 = w.scales_fp16;
    p.x_vec = w.cols % 4 == 0 && aligned(x, 16);

    using namespace dev::gemv_impl;
    if (w.format == weight_format::int4_g128 && g_int4_tensor_cores.load(std::memory_order_relaxed) &&
        tc_int4_usable(p, batch)) {
        launch_tc_int4(p, batch, stream);
        return;
    }
    switch (w.format) {
        case weight_format::f32: launch_gemv<weight_format::f32>(p, batch, stream); break;
        case weight_format::bf16: launch_gemv<weight_format::bf16>(p, batch, stream); break;
        case weight_format::int8_rows: launch_gemv<weight_format::int8_rows>(p, batch, stream); break;
        case weight_format::int4_g128: launch_gemv<weight_format::int4_g128>(p, batch, stream); break;
        case weight_format::q4_0: launch_gemv<weight_format::q4_0>(p, batch, stream); break;
        case weight_format::q4_1: launch_gemv<weight_format::q4_1>(p, batch, stream); break;
        case weight_format::q8_0: launch_gemv<weight_format::q8_0>(p, batch, stream); break;
    }
}

namespace detail {
void set_int4_tensor_cores(bool on) { g_int4_tensor_cores.store(on, std::memory_order_relaxed); }
bool int4_tensor_cores() { return g_int4_tensor_cores.load(std::memory_order_relaxed); }
}  // namespace detail

}  // namespace kite::cuda
