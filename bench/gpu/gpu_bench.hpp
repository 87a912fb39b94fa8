#pragma once
// kite_gpu_bench's harness: median time of a device function over many launches, measured with
// CUDA events, printed as one JSON line per case:
//   {"case": "flash_fwd", "params": "...", "ms": 1.23, "tflops": 300.1, "gbps": 0, "ok": true}
// Each area's file (bench_<area>.cpp) defines one entry function declared below.

#include <algorithm>
#include <cstdio>
#include <functional>
#include <string>
#include <vector>

#include "kite/cuda/runtime.hpp"

namespace kite::bench::gpu {

/// Median milliseconds of one call of `fn` (which launches device work on the default stream),
/// after `warmup` calls; each sample times `per_sample` back-to-back calls between two events.
inline double median_ms(const std::function<void(int)>& fn, int warmup = 5, int samples = 21, int per_sample = 1) {
    for (int i = 0; i < warmup; ++i) fn(i);
    kite::cuda::synchronize();
    kite::cuda::event_timer t;
    std::vector<double> ms;
    int call = 0;
    for (int s = 0; s < samples; ++s) {
        t.start();
        for (int i = 0; i < per_sample; ++i) fn(call++);
        ms.push_back(static_cast<double>(t.stop()) / per_sample);
    }
    std::sort(ms.begin(), ms.end());
    return ms[ms.size() / 2];
}

/// One JSON line on stdout. tflops / gbps: 0 when not meaningful for the case.
inline void report(const std::string& name, const std::string& params, double ms, double tflops, double gbps,
                   bool ok = true) {
    std::printf("{\"case\": \"%s\", \"params\": \"%s\", \"ms\": %.6f, \"tflops\": %.3f, \"gbps\": %.1f, \"ok\": %s}\n",
                name.c_str(), params.c_str(), ms, tflops, gbps, ok ? "true" : "false");
    std::fflush(stdout);
}

/// The device's copy bandwidth in GB/s (bytes read + written), measured with cudaMemcpy of a
/// buffer well past the L2: the ceiling memory-bound kernels are compared with.
double bench_bandwidth();
void bench_flash();          // bench_flash.cpp
void bench_paged_decode();   // bench_decode.cpp
void bench_gemv();           // bench_gemv.cpp
void bench_decoder();        // bench_decoder.cpp

}  // namespace kite::bench::gpu
