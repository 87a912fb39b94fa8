// kite_gpu_bench gemv: kite::cuda::gemv at 4096 x 11008 (rows x cols; a 7B model's down
// projection), batch 1, for int4_g128 (symmetric, fp16 scales), int8_rows and GGUF Q4_0, plus
// int4 at batch 4; int4 runs on CUDA cores and (params ", tensor cores") on the tensor-core
// kernel (detail::set_int4_tensor_cores). Eight separately uploaded copies of W are used in turn (8 x 22 MB for int4,
// past the 60 MB L2 of an H200), and each sample times 40 launches back to back so that launch
// gaps are amortized. GB/s counts codes + scales + x + y. Before timing, 64 rows of each format
// are checked against a float64 host product of the CPU's dequantized weights (the "ok" field).
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <functional>
#include <random>
#include <string>
#include <vector>

#include "gpu_bench.hpp"
#include "kite/cuda/gemv.hpp"
#include "kite/cuda/gemv_upload.hpp"
#include "kite/quant/rtn.hpp"

namespace kite::bench::gpu {

namespace {

constexpr int rows = 4096, cols = 11008, copies = 8;

// n values roughly N(0, scale) from a xorshift stream (sum of two uniforms).
std::vector<float> random_floats(std::size_t n, std::uint64_t seed, float scale) {
    std::vector<float> v(n);
    std::uint64_t s = seed * 0x9e3779b97f4a7c15ull + 1;
    for (auto& x : v) {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        const float u = static_cast<float>(s & 0xffffff) / 16777216.0f + static_cast<float>((s >> 24) & 0xffffff) / 16777216.0f;
        x = (u - 1.0f) * 2.45f * scale;
    }
    return v;
}

// Q4_0 blocks quantized from w as ggml's quantize_row_q4_0 does (d = max / -8, q = x / d + 8.5).
quant::ggml_weights q4_0_of(const matrix<float>& w) {
    const std::size_t nb = w.cols() / 32, rb = nb * 18;
    aligned_buffer<std::byte> bytes(w.rows() * rb);
    for (index_t r = 0; r < w.rows(); ++r)
        for (std::size_t b = 0; b < nb; ++b) {
            const float* x = w.row(r).data() + 32 * b;
            float amax = 0, mx = 0;
            for (int i = 0; i < 32; ++i)
                if (std::abs(x[i]) > amax) {
                    amax = std::abs(x[i]);
                    mx = x[i];
                }
            const float d = mx / -8.0f, id = d != 0.0f ? 1.0f / d : 0.0f;
            auto* blk = reinterpret_cast<std::uint8_t*>(bytes.data() + r * rb + b * 18);
            const std::uint16_t dh = fp16(d).bits;
            std::memcpy(blk, &dh, 2);
            for (int j = 0; j < 16; ++j) {
                const int lo = std::min(15, static_cast<int>(x[j] * id + 8.5f));
                const int hi = std::min(15, static_cast<int>(x[j + 16] * id + 8.5f));
                blk[2 + j] = static_cast<std::uint8_t>(lo | (hi << 4));
            }
        }
    return quant::ggml_weights::owning(quant::ggml::type::q4_0, std::move(bytes), w.rows(), w.cols());
}

// y rows [0, 64) of W x in double, from the host format's own floats (row_value(r, out) fills a row).
bool validate(const kite::cuda::gemv_weights& w, const std::vector<float>& x, int batch,
              const std::function<void(index_t, float*)>& row_value, const char* name) {
    kite::cuda::device_buffer<float> dx{std::span<const float>(x)}, dy(static_cast<std::size_t>(batch) * rows);
    dy.fill_bytes(0xFF);
    kite::cuda::gemv(w, dx.data(), dy.data(), batch);
    kite::cuda::synchronize();
    std::vector<float> y(dy.size());
    dy.download(y);
    std::vector<float> wr(cols);
    double num = 0, den = 0;
    for (index_t r = 0; r < 64; ++r) {
        row_value(r, wr.data());
        for (int t = 0; t < batch; ++t) {
            double want = 0;
            for (int c = 0; c < cols; ++c) want += static_cast<double>(wr[c]) * x[static_cast<std::size_t>(t) * cols + c];
            const double got = y[static_cast<std::size_t>(t) * rows + r];
            num += (got - want) * (got - want);
            den += want * want;
        }
    }
    const double err = std::sqrt(num / den);
    std::fprintf(stderr, "gemv %s: rel_l2 of 64 rows vs float64 %.3e\n", name, err);
    return std::isfinite(err) && err < 1e-5;
}

// suffix: appended to the params string (", tensor cores" for the int4 tensor-core path).
template <class HostFormat>
void bench_format(const char* name, const HostFormat& host, int batch,
                  const std::function<void(index_t, float*)>& row_value, const std::string& suffix = "") {
    std::vector<kite::cuda::device_matrix> w;
    for (int i = 0; i < copies; ++i) w.push_back(kite::cuda::upload(host));
    const auto x = random_floats(static_cast<std::size_t>(batch) * cols, 7, 1.0f);
    const bool ok = validate(w[0].view(), x, batch, row_value, name);
    kite::cuda::device_buffer<float> dx{std::span<const float>(x)}, dy(static_cast<std::size_t>(batch) * rows);
    const double ms = median_ms([&](int i) { kite::cuda::gemv(w[i % copies].view(), dx.data(), dy.data(), batch); },
                                5 * copies, 21, 40);
    const double bytes = static_cast<double>(w[0].bytes()) + 4.0 * batch * (static_cast<double>(rows) + cols);
    const std::string params = std::string(name) + " " + std::to_string(rows) + "x" + std::to_string(cols) + " batch " +
                               std::to_string(batch) + ", " + std::to_string(copies) + " copies of W" + suffix;
    report("gemv", params, ms, 0, bytes / (ms * 1e-3) / 1e9, ok);
}

}  // namespace

void bench_gemv() {
    matrix<float> w(rows, cols, uninitialized);
    const auto v = random_floats(static_cast<std::size_t>(rows) * cols, 1, 0.02f);
    std::copy(v.begin(), v.end(), w.flat().begin());

    {
        const auto q = quant::absmax<4, 128, fp16>{}.quantize(w.view());
        auto row = [&](index_t r, float* out) {
            for (index_t c = 0; c < cols; ++c) out[c] = q.value(r, c);
        };
        // Both int4 paths in one process (detail::set_int4_tensor_cores), the setting restored after.
        const bool was = kite::cuda::detail::int4_tensor_cores();
        for (const int batch : {1, 4}) {
            kite::cuda::detail::set_int4_tensor_cores(false);
            bench_format("int4_g128 symmetric fp16", q, batch, row);
            kite::cuda::detail::set_int4_tensor_cores(true);
            bench_format("int4_g128 symmetric fp16", q, batch, row, ", tensor cores");
        }
        kite::cuda::detail::set_int4_tensor_cores(was);
    }
    {
        const auto q = quant::absmax<8>{}.quantize(w.view());
        bench_format("int8_rows", q, 1, [&](index_t r, float* out) {
            for (index_t c = 0; c < cols; ++c) out[c] = q.value(r, c);
        });
    }
    {
        const auto q = q4_0_of(w);
        bench_format("q4_0", q, 1, [&](index_t r, float* out) { q.decode_row(r, out); });
    }
}

}  // namespace kite::bench::gpu
