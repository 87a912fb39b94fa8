// KV caches: bookkeeping speed and memory on workloads a server sees.
//
//   kv/workload/<paged|contiguous>/kite/...  512 sequences with mixed lengths (log-normal,
//       median 400 tokens, clipped to [1, 4096]) grow one token per step, round robin, as in
//       continuous-batching decode. Time per append; counters: waste_pct (reserved but unused
//       memory, % of reserved) and blocks. The contiguous cache reserves max_seq_len = 4096
//       per sequence, as a static cache must. K/V values are not written (bookkeeping only).
//   kv/fork/<paged|contiguous>/kite/...  parallel sampling: n children of a filled 1024-token
//       prompt each append one token, then are freed. Paged shares the prompt and copies one
//       partly filled block per child (copy-on-write); contiguous copies the whole prompt.
//       Counter child_MiB: memory the children add.
#include <benchmark/benchmark.h>

#include <algorithm>
#include <cmath>
#include <random>
#include <string>
#include <vector>

#include "bench_util.hpp"
#include "kite/kv.hpp"

namespace {

using namespace kite;

std::vector<index_t> mixed_lengths(index_t n) {
    std::mt19937_64 g(2024);
    std::lognormal_distribution<double> d(std::log(400.0), 1.0);
    std::vector<index_t> lens(n);
    for (auto& l : lens) l = std::clamp<index_t>(static_cast<index_t>(d(g)), 1, 4096);
    return lens;
}

template <class Cache>
void grow_round_robin(Cache& cache, std::vector<kv::seq_id>& ids, const std::vector<index_t>& lens) {
    const index_t longest = *std::max_element(lens.begin(), lens.end());
    for (index_t step = 0; step < longest; ++step)
        for (index_t i = 0; i < ids.size(); ++i)
            if (step < lens[i] && cache.append(ids[i], 1) != kv::status::ok) std::abort();
}

void workload_paged(benchmark::State& st) {
    const auto lens = mixed_lengths(512);
    index_t tokens = 0, blocks = 0;
    for (auto l : lens) {
        tokens += l;
        blocks += (l + 15) / 16;
    }
    kv::memory_stats last;
    for (auto _ : st) {
        kv::paged<16, float> cache({1, 1, 128}, blocks);
        std::vector<kv::seq_id> ids;
        for (index_t i = 0; i < lens.size(); ++i) ids.push_back(*cache.add_sequence());
        grow_round_robin(cache, ids, lens);
        last = cache.stats();
        benchmark::DoNotOptimize(last);
    }
    st.SetItemsProcessed(static_cast<std::int64_t>(st.iterations() * tokens));
    st.counters["waste_pct"] = 100.0 * last.waste_fraction();
    st.counters["blocks"] = double(last.blocks_in_use);
    st.counters["tokens"] = double(tokens);
}

void workload_contiguous(benchmark::State& st) {
    const auto lens = mixed_lengths(512);
    index_t tokens = 0;
    for (auto l : lens) tokens += l;
    kv::memory_stats last;
    for (auto _ : st) {
        kv::contiguous<float> cache({1, 1, 128}, 4096);
        std::vector<kv::seq_id> ids;
        for (index_t i = 0; i < lens.size(); ++i) ids.push_back(*cache.add_sequence());
        grow_round_robin(cache, ids, lens);
        last = cache.stats();
        benchmark::DoNotOptimize(last);
    }
    st.SetItemsProcessed(static_cast<std::int64_t>(st.iterations() * tokens));
    st.counters["waste_pct"] = 100.0 * last.waste_fraction();
    st.counters["tokens"] = double(tokens);
}

constexpr index_t prompt = 1024, n_children = 8;
const kv::cache_shape fork_shape{32, 8, 128};

template <class Cache>
void fill_prompt(Cache& cache, kv::seq_id s) {
    if (cache.append(s, prompt) != kv::status::ok) std::abort();
    const auto k = bench::random_floats(prompt * fork_shape.kv_heads * fork_shape.head_dim, 1);
    for (index_t l = 0; l < fork_shape.layers; ++l)
        cache.write(l, s, 0, tensor_view<const float, 3>(k.data(), {prompt, fork_shape.kv_heads, fork_shape.head_dim}),
                    tensor_view<const float, 3>(k.data(), {prompt, fork_shape.kv_heads, fork_shape.head_dim}));
}

template <class Cache>
void fork_children(benchmark::State& st, Cache& cache, kv::seq_id parent) {
    const index_t before = cache.stats().bytes_reserved;
    index_t added = 0;
    for (auto _ : st) {
        std::vector<kv::seq_id> kids;
        for (index_t i = 0; i < n_children; ++i) {
            kids.push_back(*cache.fork(parent));
            if (cache.append(kids.back(), 1) != kv::status::ok) std::abort();
        }
        added = cache.stats().bytes_reserved - before;
        for (const auto k : kids) cache.free(k);
    }
    st.counters["child_MiB"] = double(added) / 1048576.0;
}

void fork_paged(benchmark::State& st) {
    kv::paged<16, bf16> cache(fork_shape, (prompt + 16) / 16 * (n_children + 1));
    const auto parent = *cache.add_sequence();
    fill_prompt(cache, parent);
    (void)cache.append(parent, 5);  // a partly filled last block, as after a real prompt
    fork_children(st, cache, parent);
}

void fork_contiguous(benchmark::State& st) {
    kv::contiguous<bf16> cache(fork_shape, prompt + 64);
    const auto parent = *cache.add_sequence();
    fill_prompt(cache, parent);
    (void)cache.append(parent, 5);
    fork_children(st, cache, parent);
}

}  // namespace

int main(int argc, char** argv) {
    kite::bench::host_setup(argc, argv);  // --tuning=intel|zen; names the host
    benchmark::RegisterBenchmark("kv/workload/paged/kite/block:16/seqs:512", workload_paged)->Unit(benchmark::kMillisecond);
    benchmark::RegisterBenchmark("kv/workload/contiguous/kite/max:4096/seqs:512", workload_contiguous)
        ->Unit(benchmark::kMillisecond);
    benchmark::RegisterBenchmark("kv/fork/paged/kite/prompt:1024/n:8/layers:32/kvh:8/d:128/kv:bf16", fork_paged)
        ->Unit(benchmark::kMillisecond);
    benchmark::RegisterBenchmark("kv/fork/contiguous/kite/prompt:1024/n:8/layers:32/kvh:8/d:128/kv:bf16", fork_contiguous)
        ->Unit(benchmark::kMillisecond);
    benchmark::Initialize(&argc, argv);
    if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
    benchmark::RunSpecifiedBenchmarks();
    benchmark::Shutdown();
    return 0;
}
