// Attention kernels, float32:
//   attn/prefill/<flash|reference>/kite/h:<h>/kvh:<kvh>/d:<d>/s:<s>/causal:<0|1>/threads:<t>
//   attn/decode/<contiguous|paged>/kite/h:<h>/kvh:<kvh>/d:<d>/ctx:<n>[/kv:bf16]/threads:<t>
//   attn/decode/invariant/kite/h:9/kvh:3/d:64/batch:16/ctx:<n>/threads:<t>  (a serving step:
//     attn::invariant, the serving engine's kernel, on 16 sequences of SmolLM2's shape whose
//     paged blocks were appended in turn, so each sequence's blocks are scattered in the pool)
//
// Prefill is compute-bound: GFLOP/s counts 4 * h * d * (visible q·k pairs), and peak_GFLOP/s is
// the float32 FMA peak the machine reaches with the same threads (measured once). The PyTorch anchor
// (scaled_dot_product_attention) runs in bench/attn_vs_torch.py on the same shapes and threads.
// Decode is memory-bound: each iteration decodes one layer of a cache holding >= 256 MB of K/V
// (kite::bench::rotating_bytes) and rotates through the layers, so K/V come from DRAM as in a
// real model; GB/s counts K and V bytes read, and dram_GB/s is the read bandwidth the machine
// reaches with the same threads (measured once) — the limit decode can approach. The paged cache's blocks are placed in shuffled pool order (a pool
// after many allocations), not laid out back to back.
//
// Threads: kite::max_threads() (set OMP_NUM_THREADS).
#include <benchmark/benchmark.h>

#include <algorithm>
#include <map>
#include <numeric>
#include <random>
#include <string>
#include <vector>

#include "bench_util.hpp"
#include "kite/attn.hpp"
#include "kite/kv.hpp"

namespace {

using namespace kite;

std::string tag(index_t h, index_t kvh, index_t d) {
    return "/h:" + std::to_string(h) + "/kvh:" + std::to_string(kvh) + "/d:" + std::to_string(d);
}

// The float32 FMA peak with `threads` threads, measured once per process (the limit prefill can
// approach; bench/attn_vs_torch.py states both engines as a fraction of it).
double fma_peak_gflops(int threads) {
    static std::map<int, double> peak;  // per thread count: one process runs several
    if (!peak.count(threads)) peak[threads] = bench::measure_fma_peak_gflops(threads);
    return peak[threads];
}

template <class Kernel>
void prefill(benchmark::State& st, index_t h, index_t kvh, index_t d, index_t s, bool causal, int threads) {
    const auto q = bench::random_floats(s * h * d, 1);
    const auto k = bench::random_floats(s * kvh * d, 2);
    const auto v = bench::random_floats(s * kvh * d, 3);
    aligned_buffer<float> o(s * h * d);
    const tensor_view<const float, 4> qv(q.data(), {1, s, h, d}), kt(k.data(), {1, s, kvh, d}), vt(v.data(), {1, s, kvh, d});
    const tensor_view<float, 4> ov(o.data(), {1, s, h, d});
    attn::options opt;
    opt.mask = causal ? attn::mask::causal : attn::mask::bidirectional;
    opt.threads = threads;
    for (auto _ : st) {
        attn::prefill<attn::gqa, Kernel>(qv, kt, vt, ov, opt);
        benchmark::DoNotOptimize(o.data());
        benchmark::ClobberMemory();
    }
    const double pairs = causal ? 0.5 * double(s) * double(s + 1) : double(s) * double(s);
    st.counters["GFLOP/s"] = benchmark::Counter(4.0 * double(h) * double(d) * pairs * 1e-9 * double(st.iterations()),
                                                benchmark::Counter::kIsRate);
    st.counters["peak_GFLOP/s"] = fma_peak_gflops(threads);
}

// Fills `layers` layers of one sequence of `ctx` tokens with random K/V.
template <class Cache>
void fill(Cache& cache, kv::seq_id s, index_t layers, index_t ctx, index_t kvh, index_t d) {
    const auto k = bench::random_floats(ctx * kvh * d, 7), v = bench::random_floats(ctx * kvh * d, 8);
    for (index_t l = 0; l < layers; ++l)
        cache.write(l, s, 0, tensor_view<const float, 3>(k.data(), {ctx, kvh, d}),
                    tensor_view<const float, 3>(v.data(), {ctx, kvh, d}));
}

// The machine's read bandwidth with `threads` threads, measured once per process.
double dram_read_gbs(int threads) {
    static std::map<int, double> gbs;  // per thread count: one process runs several
    if (!gbs.count(threads)) gbs[threads] = bench::measure_read_bandwidth_gbs(threads);
    return gbs[threads];
}

// Decodes one query per sequence of `ids` with Kernel, one layer per iteration, rotating
// through `layers` layers (K/V from DRAM); GB/s counts the K and V bytes read.
template <class Kernel = attn::flash<64, 64>, class Cache>
void decode_run(benchmark::State& st, const Cache& cache, const std::vector<kv::seq_id>& ids, index_t layers, index_t h,
                index_t d, index_t ctx, int threads) {
    const double dram_gbs = dram_read_gbs(threads);
    const index_t batch = ids.size();
    const auto q = bench::random_floats(batch * h * d, 4);
    aligned_buffer<float> o(batch * h * d);
    const tensor_view<const float, 3> qv(q.data(), {batch, h, d});
    const tensor_view<float, 3> ov(o.data(), {batch, h, d});
    attn::options opt;
    opt.threads = threads;
    index_t layer = 0;
    for (auto _ : st) {
        attn::decode<attn::gqa, Kernel>(qv, cache.view(layer, ids), ov, opt);
        benchmark::DoNotOptimize(o.data());
        layer = (layer + 1) % layers;
    }
    const double bytes = 2.0 * double(batch) * double(ctx) * double(cache.shape().kv_heads) * double(d) *
                         double(sizeof(typename Cache::value_type));
    st.counters["GB/s"] = benchmark::Counter(bytes * 1e-9 * double(st.iterations()), benchmark::Counter::kIsRate);
    st.counters["layers"] = double(layers);
    st.counters["dram_GB/s"] = dram_gbs;
}

template <class T>
index_t rotation_layers(index_t ctx, index_t kvh, index_t d) {
    const index_t per_layer = 2 * ctx * kvh * d * sizeof(T);
    return std::max<index_t>(2, (bench::rotating_bytes + per_layer - 1) / per_layer);
}

template <class T>
void decode_contiguous(benchmark::State& st, index_t h, index_t kvh, index_t d, index_t ctx, int threads) {
    const index_t layers = rotation_layers<T>(ctx, kvh, d);
    kv::contiguous<T> cache({layers, kvh, d}, ctx);
    const auto s = *cache.add_sequence();
    (void)cache.append(s, ctx);
    fill(cache, s, layers, ctx, kvh, d);
    decode_run(st, cache, {s}, layers, h, d, ctx, threads);
}

template <class T>
void decode_paged(benchmark::State& st, index_t h, index_t kvh, index_t d, index_t ctx, int threads) {
    constexpr index_t B = 16;
    const index_t layers = rotation_layers<T>(ctx, kvh, d);
    const index_t blocks = (ctx + B - 1) / B;
    kv::paged<B, T> cache({layers, kvh, d}, blocks);
    // Shuffle the free list: one-block sequences released in random order.
    std::vector<kv::seq_id> singles;
    for (index_t i = 0; i < blocks; ++i) {
        singles.push_back(*cache.add_sequence());
        (void)cache.append(singles.back(), 1);
    }
    std::shuffle(singles.begin(), singles.end(), std::mt19937_64(42));
    for (const auto s : singles) cache.free(s);
    const auto s = *cache.add_sequence();
    (void)cache.append(s, ctx);
    fill(cache, s, layers, ctx, kvh, d);
    decode_run(st, cache, {s}, layers, h, d, ctx, threads);
}

// A decode step of the serving engine: `batch` sequences of `ctx` tokens in a paged<16> cache,
// their blocks appended in turn (interleaved in the pool), attn::invariant over one layer per
// iteration, layers rotating through >= 256 MB of K/V.
void decode_invariant_batch(benchmark::State& st, index_t h, index_t kvh, index_t d, index_t batch, index_t ctx,
                            int threads) {
    constexpr index_t B = 16;
    const index_t layers = rotation_layers<float>(batch * ctx, kvh, d);
    kv::paged<B, float> cache({layers, kvh, d}, batch * ((ctx + B - 1) / B));
    std::vector<kv::seq_id> ids;
    for (index_t b = 0; b < batch; ++b) ids.push_back(*cache.add_sequence());
    for (index_t t0 = 0; t0 < ctx; t0 += B)
        for (const auto s : ids) (void)cache.append(s, std::min(B, ctx - t0));
    for (const auto s : ids) fill(cache, s, layers, ctx, kvh, d);
    decode_run<attn::invariant>(st, cache, ids, layers, h, d, ctx, threads);
}

void register_all() {
    const int t = kite::max_threads();
    const std::string th = "/threads:" + std::to_string(t);
    // Prefill: the required shapes (batch 1, 32 heads, d 128, causal) and a few neighbours.
    for (index_t s : {1024, 2048, 4096, 8192}) {
        const std::string name = "attn/prefill/flash/kite" + tag(32, 32, 128) + "/s:" + std::to_string(s) + "/causal:1" + th;
        benchmark::RegisterBenchmark(name.c_str(), [=](benchmark::State& st) {
            prefill<attn::flash<64, 64>>(st, 32, 32, 128, s, true, t);
        })->Unit(benchmark::kMillisecond)->UseRealTime();
    }
    benchmark::RegisterBenchmark(("attn/prefill/flash/kite" + tag(32, 32, 128) + "/s:2048/causal:0" + th).c_str(),
                                 [=](benchmark::State& st) { prefill<attn::flash<64, 64>>(st, 32, 32, 128, 2048, false, t); })
        ->Unit(benchmark::kMillisecond)->UseRealTime();
    benchmark::RegisterBenchmark(("attn/prefill/flash/kite" + tag(32, 8, 128) + "/s:2048/causal:1" + th).c_str(),
                                 [=](benchmark::State& st) { prefill<attn::flash<64, 64>>(st, 32, 8, 128, 2048, true, t); })
        ->Unit(benchmark::kMillisecond)->UseRealTime();
    // Tile-size neighbours of the default, to show the choice.
    benchmark::RegisterBenchmark(("attn/prefill/flash_32x64/kite" + tag(32, 32, 128) + "/s:2048/causal:1" + th).c_str(),
                                 [=](benchmark::State& st) { prefill<attn::flash<32, 64>>(st, 32, 32, 128, 2048, true, t); })
        ->Unit(benchmark::kMillisecond)->UseRealTime();
    benchmark::RegisterBenchmark(("attn/prefill/flash_64x128/kite" + tag(32, 32, 128) + "/s:2048/causal:1" + th).c_str(),
                                 [=](benchmark::State& st) { prefill<attn::flash<64, 128>>(st, 32, 32, 128, 2048, true, t); })
        ->Unit(benchmark::kMillisecond)->UseRealTime();
    // The oracle, for scale (double precision, materialized scores).
    benchmark::RegisterBenchmark(("attn/prefill/reference/kite" + tag(32, 32, 128) + "/s:512/causal:1" + th).c_str(),
                                 [=](benchmark::State& st) { prefill<attn::reference>(st, 32, 32, 128, 512, true, t); })
        ->Unit(benchmark::kMillisecond)->UseRealTime();
    benchmark::RegisterBenchmark(("attn/prefill/flash/kite" + tag(32, 32, 128) + "/s:512/causal:1" + th).c_str(),
                                 [=](benchmark::State& st) { prefill<attn::flash<64, 64>>(st, 32, 32, 128, 512, true, t); })
        ->Unit(benchmark::kMillisecond)->UseRealTime();

    // Decode: contiguous vs paged over >= 256 MB of K/V.
    for (index_t ctx : {1024, 4096, 16384}) {
        const std::string shape = tag(32, 8, 128) + "/ctx:" + std::to_string(ctx);
        benchmark::RegisterBenchmark(("attn/decode/contiguous/kite" + shape + th).c_str(), [=](benchmark::State& st) {
            decode_contiguous<float>(st, 32, 8, 128, ctx, t);
        })->Unit(benchmark::kMicrosecond)->UseRealTime();
        benchmark::RegisterBenchmark(("attn/decode/paged/kite" + shape + th).c_str(), [=](benchmark::State& st) {
            decode_paged<float>(st, 32, 8, 128, ctx, t);
        })->Unit(benchmark::kMicrosecond)->UseRealTime();
    }
    const std::string shape = tag(32, 8, 128) + "/ctx:4096/kv:bf16";
    benchmark::RegisterBenchmark(("attn/decode/contiguous/kite" + shape + th).c_str(), [=](benchmark::State& st) {
        decode_contiguous<bf16>(st, 32, 8, 128, 4096, t);
    })->Unit(benchmark::kMicrosecond)->UseRealTime();
    benchmark::RegisterBenchmark(("attn/decode/paged/kite" + shape + th).c_str(), [=](benchmark::State& st) {
        decode_paged<bf16>(st, 32, 8, 128, 4096, t);
    })->Unit(benchmark::kMicrosecond)->UseRealTime();
    // A serving step: 16 sequences of SmolLM2-135M's shape (9 query heads, 3 kv heads of 64).
    for (index_t ctx : {256, 1024}) {
        const std::string step = "attn/decode/invariant/kite" + tag(9, 3, 64) + "/batch:16/ctx:" + std::to_string(ctx) + th;
        benchmark::RegisterBenchmark(step.c_str(), [=](benchmark::State& st) {
            decode_invariant_batch(st, 9, 3, 64, 16, ctx, t);
        })->Unit(benchmark::kMicrosecond)->UseRealTime();
    }
}

}  // namespace

int main(int argc, char** argv) {
    kite::bench::host_setup(argc, argv);  // --tuning=intel|zen; names the host
    register_all();
    benchmark::Initialize(&argc, argv);
    if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
    benchmark::RunSpecifiedBenchmarks();
    benchmark::Shutdown();
    return 0;
}
