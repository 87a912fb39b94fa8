#pragma once
// Helpers shared by kite's benchmarks: deterministic data, working sets larger than the last
// level cache (memory-bound kernels rotate through them), and a DRAM bandwidth probe.

#include <benchmark/benchmark.h>

#include <algorithm>
#include <chrono>
#include <cstddef>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <random>
#include <string>
#include <vector>

#if defined(__AVX512F__) && defined(__AVX512VNNI__)
#include <immintrin.h>
#endif

#include "kite/core/buffer.hpp"
#include "kite/core/cpu.hpp"
#include "kite/core/diagnostics.hpp"
#include "kite/core/parallel.hpp"
#include "kite/core/simd.hpp"

namespace kite::bench {

/// Fills `n` floats with uniform values in [-1, 1) from a fixed seed.
inline kite::aligned_buffer<float> random_floats(std::size_t n, std::uint64_t seed) {
    kite::aligned_buffer<float> v(n, kite::uninitialized);
    std::mt19937_64 g(seed);
    std::uniform_real_distribution<float> d(-1.0f, 1.0f);
    for (auto& x : v) x = d(g);
    return v;
}

/// Bytes a memory-bound benchmark must rotate through so that no copy stays in cache
/// (DESIGN.md: at least 256 MB; the VMs report a host-sized L3).
inline constexpr std::size_t rotating_bytes = std::size_t{256} << 20;

/// Measures the DRAM read bandwidth (GB/s) reachable by `threads` threads reading a 1 GiB
/// buffer: the best of 3 passes each of two loops, one summing with eight scalar accumulators
/// and one with kite::simd::sum (vector loads). Which loop reaches memory speed depends on the
/// CPU: on the Intel Xeon VMs the scalar loop read faster (17.7 against 15.7 GB/s), on the AMD
/// EPYC (Zen 4) VMs only the vector loop does (29 against 7-12 GB/s). Used to state
/// memory-bound kernels as a fraction of the limit.
inline double measure_read_bandwidth_gbs(int threads) {
    const std::size_t n = (std::size_t{1} << 30) / sizeof(float);
    static kite::aligned_buffer<float> buf = [&] {
        kite::aligned_buffer<float> b(n, kite::uninitialized);
        kite::parallel_for(0, 64, [&](std::size_t c) {
            std::fill(b.data() + c * (n / 64), b.data() + (c + 1) * (n / 64), 1.0f);
        });
        return b;
    }();
    double best = 0;
    for (int rep = 0; rep < 6; ++rep) {
        const bool vector = rep % 2 == 1;
        std::vector<float> partial(static_cast<std::size_t>(std::max(threads, 1)), 0.f);
        const auto t0 = std::chrono::steady_clock::now();
        kite::parallel_chunks(
            n,
            [&](std::size_t b, std::size_t e, int tid) {
                const float* p = buf.data();
                if (vector) {
                    partial[static_cast<std::size_t>(tid)] = kite::simd::sum(p + b, e - b);
                    return;
                }
                float s0 = 0, s1 = 0, s2 = 0, s3 = 0, s4 = 0, s5 = 0, s6 = 0, s7 = 0;
                std::size_t i = b;
                for (; i + 8 <= e; i += 8) {
                    s0 += p[i]; s1 += p[i + 1]; s2 += p[i + 2]; s3 += p[i + 3];
                    s4 += p[i + 4]; s5 += p[i + 5]; s6 += p[i + 6]; s7 += p[i + 7];
                }
                partial[static_cast<std::size_t>(tid)] = s0 + s1 + s2 + s3 + s4 + s5 + s6 + s7;
            },
            threads);
        const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
        benchmark::DoNotOptimize(partial.data());
        best = std::max(best, static_cast<double>(n * sizeof(float)) / s / 1e9);
    }
    return best;
}

/// The best of 3 passes of `chain(tid)` on `threads` threads at once (each returns a value kept
/// from the optimizer), in `ops_per_thread` operations per pass and thread / second / 1e9.
template <class Chain>
double peak_rate(int threads, double ops_per_thread, Chain&& chain) {
    const int t = std::max(threads, 1);
    double best = 0;
    for (int rep = 0; rep < 3; ++rep) {
        std::vector<double> sink(static_cast<std::size_t>(t), 0.0);
        const auto t0 = std::chrono::steady_clock::now();
        kite::parallel_chunks(
            static_cast<std::size_t>(t),
            [&](std::size_t, std::size_t, int tid) { sink[static_cast<std::size_t>(tid)] = chain(tid); }, t);
        const double sec = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
        benchmark::DoNotOptimize(sink.data());
        best = std::max(best, ops_per_thread * t / sec / 1e9);
    }
    return best;
}

/// Measures the float32 multiply-add peak (GFLOP/s, one FMA = 2 FLOP) reachable by `threads`
/// threads: each runs 12 independent chains of vector FMAs (kite::simd's native width, enough
/// chains to cover a 4-cycle latency on two pipes) with operands in registers; the best of 3
/// passes. The limit of compute-bound kernels (attention prefill, the encoder's GEMMs, batched
/// decode): they are stated as a fraction of it. On AVX-512 hosts that execute 512-bit FMAs as
/// two 256-bit halves (AMD Zen 4) the probe reads the same as with 256-bit vectors, as it should.
inline double measure_fma_peak_gflops(int threads) {
    using batch = kite::simd::fbatch;
    constexpr int chains = 12;
    constexpr std::size_t iters = std::size_t{1} << 22;
    return peak_rate(threads, 2.0 * double(batch::size) * chains * double(iters), [](int tid) {
        const batch a(0.999999f), b(1e-7f);
        batch acc[chains];
        for (int c = 0; c < chains; ++c) acc[c] = batch(float(c + tid));
        for (std::size_t i = 0; i < iters; ++i)
            for (int c = 0; c < chains; ++c) acc[c] = xsimd::fma(acc[c], a, b);
        batch s = acc[0];
        for (int c = 1; c < chains; ++c) s += acc[c];
        return double(kite::simd::reduce_add(s));
    });
}

/// The int8 multiply-add peak with `threads` threads, GMAC/s: 12 independent chains of 512-bit
/// vpdpbusd (64 multiply-adds each), the instruction of kite's int8-activation GGUF kernels; 0
/// where the build has no AVX-512 VNNI. Best of 3.
KITE_GCC12_AVX512_UNINIT_BEGIN  // _mm512_reduce_add_epi32: see kite/core/diagnostics.hpp
inline double measure_vnni_peak_gmacs(int threads) {
#if defined(__AVX512F__) && defined(__AVX512VNNI__)
    constexpr int chains = 12;
    constexpr std::size_t iters = std::size_t{1} << 22;
    return peak_rate(threads, 64.0 * chains * double(iters), [](int tid) {
        const __m512i u = _mm512_set1_epi8(3), x = _mm512_set1_epi8(static_cast<char>(tid - 2));
        __m512i acc[chains];
        for (int c = 0; c < chains; ++c) acc[c] = _mm512_set1_epi32(c);
        for (std::size_t i = 0; i < iters; ++i)
            for (int c = 0; c < chains; ++c) acc[c] = _mm512_dpbusd_epi32(acc[c], u, x);
        __m512i s = acc[0];
        for (int c = 1; c < chains; ++c) s = _mm512_add_epi32(s, acc[c]);
        return double(_mm512_reduce_add_epi32(s));
    });
#else
    (void)threads;
    return 0;
#endif
}
KITE_GCC12_AVX512_UNINIT_END

/// Every benchmark binary calls this first in main: it takes kite's `--tuning=intel|zen` flag
/// out of argv (forcing that kernel tuning for the whole run, kite::cpu::scoped_tuning) and
/// `--amx=off` (no AMX kernels, kite::cpu::scoped_amx, for before/after figures on AMX hosts),
/// and names the host in Google Benchmark's context ("host: AMD EPYC (AMD, family 25 model 17
/// stepping 1), kernels tuned: zen"), printed above every table and stored in JSON output.
inline void host_setup(int& argc, char** argv) {
    static std::unique_ptr<kite::cpu::scoped_tuning> forced;
    static std::unique_ptr<kite::cpu::scoped_amx> amx;
    int out = 1;
    for (int i = 1; i < argc; ++i) {
        if (std::strncmp(argv[i], "--amx=", 6) == 0) {
            const std::string v = argv[i] + 6;
            if (v != "on" && v != "off") {
                std::fprintf(stderr, "%s: --amx=%s; expected on or off\n", argv[0], v.c_str());
                std::exit(2);
            }
            amx = std::make_unique<kite::cpu::scoped_amx>(v == "on");
        } else if (std::strncmp(argv[i], "--tuning=", 9) == 0) {
            const std::string v = argv[i] + 9;
            if (v != "intel" && v != "zen") {
                std::fprintf(stderr, "%s: --tuning=%s; expected intel or zen\n", argv[0], v.c_str());
                std::exit(2);
            }
            forced = std::make_unique<kite::cpu::scoped_tuning>(v == "zen" ? kite::cpu::tuning::zen : kite::cpu::tuning::intel);
        } else {
            argv[out++] = argv[i];
        }
    }
    argc = out;
    argv[argc] = nullptr;
    benchmark::AddCustomContext("host", kite::cpu::describe());
}

}  // namespace kite::bench
