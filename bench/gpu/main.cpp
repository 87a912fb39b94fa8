// kite_gpu_bench [all|bandwidth|flash|decode|gemv|decoder]...: times kite's CUDA kernels (see gpu_bench.hpp).
#include <cstdio>
#include <string>

#include "gpu_bench.hpp"

namespace kite::bench::gpu {

double bench_bandwidth() {
    const std::size_t bytes = std::size_t(2) << 30;  // 2 GiB each way: far past any L2
    kite::cuda::device_buffer<unsigned char> a(bytes), b(bytes);
    a.fill_bytes(1);
    const double ms = median_ms([&](int) { KITE_CUDA_CHECK(cudaMemcpy(b.data(), a.data(), bytes, cudaMemcpyDeviceToDevice)); },
                                2, 11);
    const double gbps = 2.0 * static_cast<double>(bytes) / (ms * 1e-3) / 1e9;
    report("bandwidth", "d2d copy 2 GiB, read + write", ms, 0, gbps);
    return gbps;
}

}  // namespace kite::bench::gpu

int main(int argc, char** argv) {
    using namespace kite::bench::gpu;
    if (!kite::cuda::device_present()) {
        std::fprintf(stderr, "kite_gpu_bench: no CUDA device\n");
        return 2;
    }
    const auto& d = kite::cuda::current_device();
    std::fprintf(stderr, "kite_gpu_bench on %s (sm_%d%d, %d SMs, %.0f GiB)\n", d.name.c_str(), d.major, d.minor,
                 d.sm_count, static_cast<double>(d.global_bytes) / (1 << 30));
    const auto want = [&](const char* what) {
        if (argc < 2) return true;
        for (int i = 1; i < argc; ++i)
            if (std::string(argv[i]) == what || std::string(argv[i]) == "all") return true;
        return false;
    };
    try {
        if (want("bandwidth")) bench_bandwidth();
        if (want("flash")) bench_flash();
        if (want("decode")) bench_paged_decode();
        if (want("gemv")) bench_gemv();
        if (want("decoder")) bench_decoder();
    } catch (const std::exception& e) {
        std::fprintf(stderr, "kite_gpu_bench: %s\n", e.what());
        return 1;
    }
    return 0;
}
