// Quantized GEMV / GEMM beside float32 Eigen in the same binary:
//   quant/<gemv|gemm>/<format>/kite/m:<rows>/k:<cols>/b:<batch>/threads:<t>
// format: f32 (the anchor: Eigen's float GEMV/GEMM), int8 (absmax<8>, per-row float scales),
// int4g128 (zero_point<4, 128>, fp16 scales and zeros, the GPTQ/AWQ storage), int4g128sym
// (absmax<4, 128>), bf16 and f32dense (kite's dense kernels); with activations rounded to int8
// per 128 columns and VNNI integer dot products (not the same numbers as the exact kernels):
// int4g128a8 and int8a8 (gemv_a8 / gemm_a8 on int4g128 / int8), llm_int8 (W8A8 with outlier
// decomposition, threshold 6; the random activations here have no outliers).
// GGUF blocks (b = 1, and on SmolLM2's shapes b = 5, a speculative verification of 4 drafts,
// with weights rotating as for b = 1, b = 16, a serving step of 16 streams, and b = 32, 64 and
// 256, chunks of a prompt; GMAC/s counts their multiply-adds, against the vpdpbusd peak printed at start-up):
// ggml_q4_1 / ggml_q8_0 (kite::quant::ggml_weights, float activations on the blocks as stored),
// ggml_panel_q4_1 / ggml_panel_q8_0 (ggml_panel_weights, float activations on 16-row panels: the
// GGUF decoder's default) and ggml_a8_q4_1 / ggml_a8_q8_0 (ggml_a8_weights, activations rounded to int8 per 32:
// llama.cpp's arithmetic; from 32 tokens on AMX tiles where the CPU grants AMX-INT8, and then
// ggml_a8_vnni_* times the same batch on the VNNI kernels), on the shapes above and on SmolLM2-135M's (576 x 576,
// gate+up 3072 x 576, down 576 x 1536, the Q8_0 output layer 49152 x 576), each beside f32.
//
// Memory-bound cases rotate through copies of the weights totalling at least 512 MB (twice
// DESIGN.md's 256 MB, because these VMs report a 260 MB L3), so no call finds its matrix in
// cache; the f32 anchor rotates the same way. Counters: GB/s = weight bytes streamed per second,
// dram = that as a fraction of the read bandwidth measured at start-up with the same threads
// (a vectorised 1 GiB read, printed first).
// Timings are of the steady state (copies are made and touched before timing).
// KITE_BENCH_COLD=1: the GGUF batches (b >= 16) rotate copies too, so their weights come from
// DRAM as in a model's decode step, and 4096 x 4096 runs at b = 16 as well (28 MB, on huge pages).
//
// amx/interleave/<case> (where the CPU grants AMX-INT8): why ggml_a8's tile kernel works in
// bursts. Per block of 32 columns, 16 tokens x 16 rows: "tiles" (zero, load A and B, tdpbsud,
// store the sums, in groups of 4 blocks), "terms" (the float terms of 16 tokens from stored
// sums, a8_term_at's operations), and three orders of both: each group's tiles then its terms
// (the kernel before bursts), 16 blocks of tiles then their terms (the kernel now), and the
// terms with one tile store among each group's. Times are per block, from L1.
#include <benchmark/benchmark.h>

#include <cctype>
#include <cstdlib>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "bench_util.hpp"
#include "kite/core/parallel.hpp"
#include "kite/core/simd.hpp"
#include "kite/quant.hpp"
#include "kite/quant/ggml.hpp"
#include "kite/quant/ggml_a8.hpp"
#include "kite/quant/ggml_panel.hpp"

namespace {

namespace q = kite::quant;
using kite::index_t;

/// DRAM read bandwidth with vector loads: best of 5 passes summing a 1 GiB buffer with
/// kite::simd::sum, split over `threads`. (bench_util's measure_read_bandwidth_gbs sums with
/// scalar adds, which this CPU cannot issue fast enough to saturate memory from one core.)
double stream_read_gbs(int threads) {
    const std::size_t n = (std::size_t{1} << 30) / sizeof(float);
    static kite::aligned_buffer<float> buf = [&] {
        kite::aligned_buffer<float> b(n, kite::uninitialized);
        kite::parallel_for(0, 64, [&](std::size_t c) { std::fill(b.data() + c * (n / 64), b.data() + (c + 1) * (n / 64), 1.0f); });
        return b;
    }();
    double best = 0;
    for (int rep = 0; rep < 5; ++rep) {
        std::vector<float> partial(2, 0.0f);
        const auto t0 = std::chrono::steady_clock::now();
        kite::parallel_chunks(
            n, [&](std::size_t b, std::size_t e, int tid) { partial[tid] = kite::simd::sum(buf.data() + b, e - b); },
            threads);
        const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
        benchmark::DoNotOptimize(partial.data());
        best = std::max(best, static_cast<double>(n * sizeof(float)) / s / 1e9);
    }
    return best;
}

double dram_gbs(int threads) {
    static double bw[3] = {0, 0, 0};
    if (bw[threads] == 0) bw[threads] = stream_read_gbs(threads);
    return bw[threads];
}

/// KITE_BENCH_COLD set (see the file comment).
bool cold_batches() {
    static const bool on = [] {
        const char* v = std::getenv("KITE_BENCH_COLD");
        return v != nullptr && *v != '\0' && *v != '0';
    }();
    return on;
}

std::size_t copies_for(std::size_t bytes) {
    return std::max<std::size_t>(2, (2 * kite::bench::rotating_bytes + bytes - 1) / bytes);
}

kite::matrix<float> random_weights(index_t m, index_t k) {
    auto v = kite::bench::random_floats(m * k, 42);
    kite::matrix<float> w(m, k, kite::uninitialized);
    for (index_t i = 0; i < m * k; ++i) w.flat()[i] = 0.05f * v[i];
    return w;
}

kite::matrix<float> random_acts(index_t b, index_t k) {
    auto v = kite::bench::random_floats(b * k, 7);
    kite::matrix<float> x(b, k, kite::uninitialized);
    std::copy(v.begin(), v.end(), x.flat().begin());
    return x;
}

void set_counters(benchmark::State& st, std::size_t bytes, int threads) {
    const double per_s = static_cast<double>(st.iterations());
    st.counters["GB/s"] = benchmark::Counter(per_s * static_cast<double>(bytes) / 1e9, benchmark::Counter::kIsRate);
    st.counters["dram"] = benchmark::Counter(per_s * static_cast<double>(bytes) / 1e9 / dram_gbs(threads),
                                             benchmark::Counter::kIsRate);
    st.counters["MB"] = static_cast<double>(bytes) / 1e6;
}

/// kite format F: quantize once, rotate through copies. A8: activations rounded to int8 per
/// 128 columns and integer (VNNI) dot products (gemv_a8 / gemm_a8).
template <class M, bool A8 = false>
void bench_kite(benchmark::State& st, index_t m, index_t k, index_t b, int threads) {
    using F = typename M::format;
    const auto W = random_weights(m, k);
    const F w0 = q::quantize(M{}, W);
    const std::size_t n = b == 1 ? copies_for(w0.bytes()) : 1;  // GEMM at b >= 16 is compute bound
    std::vector<F> ws;
    ws.reserve(n);
    for (std::size_t i = 0; i < n; ++i) ws.push_back(w0.clone());
    const auto X = random_acts(b, k);
    kite::matrix<float> Y(b, m);
    std::size_t i = 0;
    for (auto _ : st) {
        const F& w = ws[i++ % n];
        if constexpr (A8) {
            if (b == 1) {
                q::gemv_a8(w, X.row(0), Y.row(0), threads);
            } else {
                q::gemm_a8(w, X, Y, threads);
            }
        } else if (b == 1) {
            q::gemv(w, X.row(0), Y.row(0), threads);
        } else {
            q::gemm(w, X, Y, threads);
        }
        benchmark::DoNotOptimize(Y.data());
        benchmark::ClobberMemory();
    }
    set_counters(st, w0.bytes(), threads);
}

/// GGUF blocks of type t with random codes and fp16 scales of a realistic size (|w| ~ 0.05), as
/// ggml_weights (F: as stored) or repacked as F = ggml_a8_weights (int8 activations) or
/// ggml_panel_weights (float activations); rotates copies like bench_kite.
/// amx false: the VNNI kernels even where the batched AMX kernel would run.
template <class F>
void bench_ggml(benchmark::State& st, q::ggml::type t, index_t m, index_t k, index_t b, int threads, bool amx = true) {
    const kite::cpu::scoped_amx allow(amx);
    const std::size_t rb = q::ggml::row_bytes(t, k), bb = q::ggml::info(t).block_bytes;
    kite::aligned_buffer<std::byte> raw(m * rb, kite::uninitialized);
    const auto v = kite::bench::random_floats(m * rb, 11);  // uniform [-1, 1)
    auto* p = reinterpret_cast<std::uint8_t*>(raw.data());
    for (std::size_t i = 0; i < m * rb; ++i) p[i] = static_cast<std::uint8_t>(128.0f + 127.0f * v[i]);
    for (std::size_t blk = 0; blk < m * rb / bb; ++blk) {
        const std::uint16_t d = kite::detail::float_to_fp16_bits(t == q::ggml::type::q8_0 ? 0.05f / 127 : 0.1f / 15);
        const std::uint16_t mn = kite::detail::float_to_fp16_bits(-0.05f + 0.01f * v[blk % v.size()]);
        std::memcpy(p + blk * bb, &d, 2);
        if (t == q::ggml::type::q4_1) std::memcpy(p + blk * bb + 2, &mn, 2);
    }
    const auto w0 = q::ggml_weights::owning(t, std::move(raw), m, k);
    constexpr bool repacked = !std::is_same_v<F, q::ggml_weights>;
    std::vector<F> ws;
    const std::size_t bytes = repacked ? F(w0).bytes() : w0.bytes();
    const std::size_t n = b < 16 || cold_batches() ? copies_for(bytes) : 1;  // from cache unless KITE_BENCH_COLD
    ws.reserve(n);
    for (std::size_t i = 0; i < n; ++i) {
        if constexpr (repacked) {
            ws.emplace_back(w0);
        } else {  // a deep copy: clone() shares the bytes
            kite::aligned_buffer<std::byte> c(m * rb, kite::uninitialized);
            std::memcpy(c.data(), w0.segments()[0].data, m * rb);
            ws.push_back(q::ggml_weights::owning(t, std::move(c), m, k));
        }
    }
    const auto X = random_acts(b, k);
    kite::matrix<float> Y(b, m);
    std::size_t i = 0;
    for (auto _ : st) {
        if (b == 1) q::gemv(ws[i++ % n], X.row(0), Y.row(0), threads);
        else q::gemm(ws[i++ % n], X.view(), Y.view(), threads);
        benchmark::DoNotOptimize(Y.data());
        benchmark::ClobberMemory();
    }
    set_counters(st, bytes, threads);
    // Multiply-adds per second (the compute side of a batched step).
    st.counters["GMAC/s"] = benchmark::Counter(static_cast<double>(st.iterations()) * static_cast<double>(m * k * b) / 1e9,
                                               benchmark::Counter::kIsRate);
}

/// Eigen float32: y = W x (row-major W; rows split over threads, Eigen's GEMV is single
/// threaded) and Y = X W^T (Eigen's own OpenMP GEMM with setNbThreads).
void bench_eigen(benchmark::State& st, index_t m, index_t k, index_t b, int threads) {
    const auto W = random_weights(m, k);
    const std::size_t bytes = m * k * sizeof(float);
    const std::size_t n = b == 1 ? copies_for(bytes) : 1;
    std::vector<kite::matrix<float>> ws;
    ws.reserve(n);
    for (std::size_t i = 0; i < n; ++i) ws.push_back(W.clone());
    const auto X = random_acts(b, k);
    kite::matrix<float> Y(b, m);
    Eigen::setNbThreads(threads);
    std::size_t i = 0;
    for (auto _ : st) {
        const auto& w = ws[i++ % n];
        if (b == 1) {
            const Eigen::Map<const Eigen::VectorXf> x(X.data(), static_cast<Eigen::Index>(k));
            kite::parallel_chunks(
                m,
                [&](std::size_t r0, std::size_t r1, int) {
                    const auto wm = kite::as_eigen(w.view().rows_slice(r0, r1 - r0));
                    Eigen::Map<Eigen::VectorXf> y(Y.data() + r0, static_cast<Eigen::Index>(r1 - r0));
                    y.noalias() = wm * x;
                },
                threads);
        } else {
            auto y = kite::as_eigen(Y);
            y.noalias() = kite::as_eigen(X) * kite::as_eigen(w).transpose();
        }
        benchmark::DoNotOptimize(Y.data());
        benchmark::ClobberMemory();
    }
    set_counters(st, bytes, threads);
}

/// Runs f with the benchmark's own thread setting for kite's parallel regions.
template <class Fn>
void reg(const std::string& name, Fn fn) {
    benchmark::RegisterBenchmark(name.c_str(), fn)->Unit(benchmark::kMicrosecond)->UseRealTime();
}

#if KITE_GGML_A8_AMX
/// The amx/interleave cases (see the file comment); `order`: 0 tiles only, 1 terms only, 2 a
/// group's tiles then its terms, 3 sixteen blocks' tiles then their terms, 4 terms with one tile
/// store per group of 4 blocks.
void bench_amx_interleave(benchmark::State& st, int order) {
    constexpr int NB = 16;  // blocks per iteration
    alignas(64) static std::int8_t a[16 * 32 * NB];
    alignas(64) static std::uint8_t b[512 * NB];
    alignas(64) static std::int32_t sums[256 * NB];
    static float dx[16 * NB], sx[16 * NB];
    static std::int32_t off[16 * NB];
    for (int i = 0; i < 16 * NB; ++i) {
        dx[i] = 1e-3f * static_cast<float>(i % 16 + 1);
        sx[i] = 1e-4f * static_cast<float>(i % 7);
        off[i] = 0;
    }
    for (std::size_t i = 0; i < sizeof(a); ++i) a[i] = static_cast<std::int8_t>(i * 7 % 255 - 127);
    for (std::size_t i = 0; i < sizeof(b); ++i) b[i] = static_cast<std::uint8_t>(i * 13 % 16);
    q::detail::a8_amx_load_tiles();  // the kernel's tile shapes
    const long lq = 32 * NB;
    const auto tiles = [&](int g) {  // blocks 4 g .. 4 g + 3
        const std::int8_t* x = a + 128 * g;
        const std::uint8_t* w = b + 2048 * g;
        std::int32_t* c = sums + 1024 * g;
        KITE_AMX_ZERO(0); KITE_AMX_LOAD(4, x, lq); KITE_AMX_LOAD(6, w, 64); KITE_AMX_DPBSUD(0, 4, 6);
        KITE_AMX_ZERO(1); KITE_AMX_LOAD(5, x + 32, lq); KITE_AMX_LOAD(7, w + 512, 64); KITE_AMX_DPBSUD(1, 5, 7);
        KITE_AMX_ZERO(2); KITE_AMX_LOAD(4, x + 64, lq); KITE_AMX_LOAD(6, w + 1024, 64); KITE_AMX_DPBSUD(2, 4, 6);
        KITE_AMX_ZERO(3); KITE_AMX_LOAD(5, x + 96, lq); KITE_AMX_LOAD(7, w + 1536, 64); KITE_AMX_DPBSUD(3, 5, 7);
        KITE_AMX_STORE(0, c, 64); KITE_AMX_STORE(1, c + 256, 64); KITE_AMX_STORE(2, c + 512, 64); KITE_AMX_STORE(3, c + 768, 64);
    };
    __m512 acc[16];
    for (auto& v : acc) v = _mm512_setzero_ps();
    const __m512 d16 = _mm512_set1_ps(1.0001f), m16 = _mm512_set1_ps(-0.5f);
    const auto terms = [&](int blk) {
#pragma GCC unroll 16
        for (int t = 0; t < 16; ++t)
            acc[t] = q::detail::a8_term_at<q::ggml::type::q4_1>(_mm512_load_si512(sums + 256 * blk + 16 * t), d16, m16,
                                                                dx + 16 * blk, sx + 16 * blk, off + 16 * blk, t, acc[t]);
    };
    for (auto _ : st) {
        switch (order) {
            case 0: for (int g = 0; g < NB / 4; ++g) tiles(g); break;
            case 1: for (int k = 0; k < NB; ++k) terms(k); break;
            case 2: for (int g = 0; g < NB / 4; ++g) { tiles(g); for (int k = 4 * g; k < 4 * g + 4; ++k) terms(k); } break;
            case 3: for (int g = 0; g < NB / 4; ++g) tiles(g); for (int k = 0; k < NB; ++k) terms(k); break;
            default:
                for (int g = 0; g < NB / 4; ++g) {
                    KITE_AMX_STORE(0, sums + 1024 * g, 64);
                    for (int k = 4 * g; k < 4 * g + 4; ++k) terms(k);
                }
        }
        benchmark::DoNotOptimize(acc);
        benchmark::ClobberMemory();
    }
    kite::cpu::amx_release();
    st.SetItemsProcessed(static_cast<std::int64_t>(st.iterations()) * NB);  // blocks
    st.counters["s/block"] = benchmark::Counter(static_cast<double>(st.iterations()) * NB,
                                                 benchmark::Counter::kIsRate | benchmark::Counter::kInvert,
                                                 benchmark::Counter::kIs1000);
}
#endif

void register_all() {
#if KITE_GGML_A8_AMX
    if (kite::cpu::amx_int8_active()) {
        const char* names[] = {"tiles", "terms", "tiles_then_terms_by_4", "tiles_then_terms_by_16", "terms_one_store_by_4"};
        for (int o = 0; o < 5; ++o)
            reg(std::string("amx/interleave/") + names[o], [o](benchmark::State& st) { bench_amx_interleave(st, o); });
    }
#endif
    const index_t shapes[][2] = {{4096, 4096}, {11008, 4096}};
    for (index_t b : {1u, 16u, 64u}) {
        for (const auto& s : shapes) {
            const index_t m = s[0], k = s[1];
            for (int t : {1, 2}) {
                const std::string op = b == 1 ? "gemv" : "gemm";
                const std::string tail = "/m:" + std::to_string(m) + "/k:" + std::to_string(k) + "/b:" +
                                         std::to_string(b) + "/threads:" + std::to_string(t);
                auto name = [&](const char* fmt) { return "quant/" + op + "/" + fmt + "/kite" + tail; };
                reg(name("f32"), [=](benchmark::State& st) { bench_eigen(st, m, k, b, t); });
                reg(name("int8"), [=](benchmark::State& st) { bench_kite<q::absmax<8>>(st, m, k, b, t); });
                reg(name("int4g128"), [=](benchmark::State& st) {
                    bench_kite<q::zero_point<4, 128, kite::fp16>>(st, m, k, b, t);
                });
                reg(name("int4g128sym"), [=](benchmark::State& st) {
                    bench_kite<q::absmax<4, 128, kite::fp16>>(st, m, k, b, t);
                });
                reg(name("int4g128a8"), [=](benchmark::State& st) {
                    bench_kite<q::zero_point<4, 128, kite::fp16>, true>(st, m, k, b, t);
                });
                reg(name("int8a8"), [=](benchmark::State& st) { bench_kite<q::absmax<8>, true>(st, m, k, b, t); });
                reg(name("llm_int8"), [=](benchmark::State& st) { bench_kite<q::llm_int8>(st, m, k, b, t); });
                reg(name("bf16"), [=](benchmark::State& st) { bench_kite<q::dense<kite::bf16>>(st, m, k, b, t); });
                reg(name("f32dense"), [=](benchmark::State& st) { bench_kite<q::f32>(st, m, k, b, t); });
            }
        }
    }
    // GGUF blocks, b = 1: the shapes above and SmolLM2-135M's, each with its float32 anchor; b = 5,
    // 16, 32, 64 and 256 on SmolLM2's shapes.
    const index_t gguf_shapes[][2] = {{4096, 4096}, {11008, 4096}, {576, 576}, {3072, 576}, {576, 1536}, {49152, 576}};
    for (const auto& s : gguf_shapes) {
        const index_t m = s[0], k = s[1];
        for (const index_t b : {index_t{1}, index_t{5}, index_t{16}, index_t{32}, index_t{64}, index_t{256}}) {
            if (b > 1 && k == 4096 && !(b == 16 && cold_batches())) continue;
            for (int t : {1, 2}) {
                const std::string tail = "/kite/m:" + std::to_string(m) + "/k:" + std::to_string(k) +
                                         "/b:" + std::to_string(b) + "/threads:" + std::to_string(t);
                const std::string op = b == 1 ? "quant/gemv/" : "quant/gemm/";
                if (k != 4096) reg(op + "f32" + tail, [=](benchmark::State& st) { bench_eigen(st, m, k, b, t); });
                for (const auto ty : {q::ggml::type::q4_1, q::ggml::type::q8_0}) {
                    const std::string tn(q::ggml::name(ty));
                    std::string lower;
                    for (char c : tn) lower += static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
                    reg(op + "ggml_" + lower + tail,
                        [=](benchmark::State& st) { bench_ggml<q::ggml_weights>(st, ty, m, k, b, t); });
                    reg(op + "ggml_panel_" + lower + tail,
                        [=](benchmark::State& st) { bench_ggml<q::ggml_panel_weights>(st, ty, m, k, b, t); });
                    reg(op + "ggml_a8_" + lower + tail,
                        [=](benchmark::State& st) { bench_ggml<q::ggml_a8_weights>(st, ty, m, k, b, t); });
                    // The same batch on the VNNI kernels, where the CPU would take its AMX kernel.
                    if (b >= q::detail::a8_amx_min_tokens && kite::cpu::amx_int8_available())
                        reg(op + "ggml_a8_vnni_" + lower + tail,
                            [=](benchmark::State& st) { bench_ggml<q::ggml_a8_weights>(st, ty, m, k, b, t, false); });
                }
            }
        }
    }
}

}  // namespace

int main(int argc, char** argv) {
    kite::bench::host_setup(argc, argv);  // --tuning=intel|zen; names the host
    register_all();
    benchmark::Initialize(&argc, argv);
    if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
    std::printf("arch: %s; DRAM read bandwidth (vector sum of 1 GiB, best of 5): %.1f GB/s (1 thread), %.1f GB/s "
                "(2 threads); bench_util's scalar probe: %.1f / %.1f GB/s\n",
                q::arch::name<q::arch::best>(), dram_gbs(1), dram_gbs(2), kite::bench::measure_read_bandwidth_gbs(1),
                kite::bench::measure_read_bandwidth_gbs(2));
    // The limit of the batched int8-activation GEMMs (their GMAC/s counter).
    std::printf("int8 multiply-add peak (512-bit vpdpbusd, 12 chains, best of 3): %.1f GMAC/s (1 thread), %.1f (2 threads)\n",
                kite::bench::measure_vnni_peak_gmacs(1), kite::bench::measure_vnni_peak_gmacs(2));
    benchmark::RunSpecifiedBenchmarks();
    benchmark::Shutdown();
    return 0;
}
