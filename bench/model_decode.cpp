// Decoding speed of kite's decoder beside the memory-bandwidth bound.
//
//   model/decode/<model>/<weights>/kite/threads:<t>
//       steady-state decode of one sequence, one token per iteration, greedy, with the context
//       between 32 and 160 tokens (refilled outside the timing). Counters:
//         tok_s          tokens per second (the time per iteration inverted)
//         MB_per_token   bytes each token reads: every weight once (model.weight_bytes()) plus
//                        the K/V of the average context
//         bound_tok_s    DRAM read bandwidth (a vector-load probe, same thread count) / MB_per_token:
//                        the memory-bound limit of batch-1 decoding
//         of_bound       tok_s / bound_tok_s
//   models: llama100m — a random Llama-shaped model of 110M parameters (vocab 32000, hidden 768,
//           12 layers, 12 heads, SwiGLU 2048, tied embeddings: 85M in the blocks + a 24.6M
//           classifier), weights f32 | int8 (absmax per row) | int4 (RTN, zero point, groups of
//           128 — the format GPTQ and AWQ produce, so it decodes at the same speed);
//           aidreams260k — the real llama2.c model (KITE_DATA or the first argument), f32 | int8 | int4.
//   Working sets below 256 MB rotate through enough replicas of the model (one token each in
//   turn) that no copy stays in the last-level cache; aidreams260k (1 MB) is cache-resident
//   by nature and its bound is stated for reference only.
//
// A summary table (tokens/s, bound, fraction, and int8/int4 speed-up over f32 per thread count)
// is printed after the Google Benchmark output.
//
//   flock -x /tmp/kite-cpu.lock build/release/bench/bench_model_decode [DATA] --benchmark_min_time=3
#include <benchmark/benchmark.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "bench_util.hpp"
#include "kite/model/decoder.hpp"
#include "kite/model/formats/load.hpp"
#include "kite/model/sampling.hpp"
#include "kite/core/simd.hpp"

namespace {

namespace km = kite::model;
namespace kq = kite::quant;
using kite::index_t;
using kite::matrix;

constexpr index_t prompt_tokens = 32, max_context = 160;

/// N(0, scale^2)-ish values from a xorshift generator (sum of 4 uniforms; fast for 100M values).
void fill_random(std::span<float> v, std::uint64_t seed, float scale) {
    kite::parallel_chunks(v.size(), [&](std::size_t b, std::size_t e, int) {
        std::uint64_t s = seed * 0x9E3779B97F4A7C15ull + b + 1;
        for (std::size_t i = b; i < e; ++i) {
            float acc = 0;
            for (int k = 0; k < 4; ++k) {
                s ^= s >> 12;
                s ^= s << 25;
                s ^= s >> 27;
                acc += static_cast<float>((s * 0x2545F4914F6CDD1Dull) >> 40) / 16777216.0f - 0.5f;
            }
            v[i] = acc * 1.7320508f * scale;  // var of the sum of 4 U(-1/2, 1/2) is 1/3
        }
    });
}
matrix<float> random_matrix(index_t r, index_t c, std::uint64_t seed, float scale) {
    matrix<float> m(r, c, kite::uninitialized);
    fill_random(m.flat(), seed, scale);
    return m;
}
std::vector<float> norm_weight(index_t n, std::uint64_t seed) {
    std::vector<float> v(n);
    fill_random(v, seed, 0.1f);
    for (auto& x : v) x += 1.0f;
    return v;
}

/// A Llama-shaped checkpoint with random weights.
km::checkpoint random_llama(index_t vocab, index_t hidden, index_t layers, index_t heads, index_t kv_heads, index_t inter) {
    km::checkpoint ck;
    auto& c = ck.config;
    c.arch = km::architecture::llama;
    c.model_type = "llama (random)";
    c.vocab_size = vocab;
    c.hidden_size = hidden;
    c.intermediate_size = inter;
    c.num_layers = layers;
    c.num_heads = heads;
    c.num_kv_heads = kv_heads;
    c.head_dim = hidden / heads;
    c.rotary_dim = c.head_dim;
    c.max_position_embeddings = 1024;
    c.tie_word_embeddings = true;
    ck.source = "random";
    auto& t = ck.tensors;
    std::uint64_t seed = 1;
    t.embedding = random_matrix(vocab, hidden, seed++, 1.0f);
    const float s_in = 1.0f / std::sqrt(static_cast<float>(hidden)), s_inter = 1.0f / std::sqrt(static_cast<float>(inter));
    for (index_t l = 0; l < layers; ++l) {
        km::block_tensors b;
        b.attn_norm_weight = norm_weight(hidden, seed++);
        b.qkv = random_matrix(c.q_dim() + 2 * c.kv_dim(), hidden, seed++, s_in);
        b.o = random_matrix(hidden, c.q_dim(), seed++, s_in);
        b.mlp_norm_weight = norm_weight(hidden, seed++);
        b.up = random_matrix(2 * inter, hidden, seed++, s_in);
        b.down = random_matrix(hidden, inter, seed++, s_inter);
        t.blocks.push_back(std::move(b));
    }
    t.final_norm_weight = norm_weight(hidden, seed++);
    return ck;
}

/// What the summary prints, per (model, weights, threads).
struct result {
    double tok_s = 0, bound_tok_s = 0, mb_per_token = 0;
};
std::map<std::string, result>& results() {
    static std::map<std::string, result> r;
    return r;
}

/// DRAM read bandwidth (GB/s) with `threads` threads: vector loads (kite::simd::sum) over a
/// 1 GiB buffer, best of 5. bench_util's measure_read_bandwidth_gbs sums with scalar adds,
/// which one core cannot issue fast enough to saturate memory (it reads ~6.5 GB/s here, while
/// the f32 decoder itself streams ~12.8 GB/s on one thread), so the bound uses this probe.
double bandwidth_gbs(int threads) {
    static std::map<int, double> known;
    if (known.count(threads)) return known[threads];
    static const kite::aligned_buffer<float> buf = [] {
        kite::aligned_buffer<float> b((std::size_t{1} << 30) / sizeof(float), kite::uninitialized);
        fill_random(b.span(), 99, 1.0f);  // touched in parallel: no first-touch cost in the timing
        return b;
    }();
    double best = 0;
    for (int pass = 0; pass < 5; ++pass) {
        std::vector<float> sums(static_cast<std::size_t>(threads), 0.0f);
        const auto t0 = std::chrono::steady_clock::now();
        kite::parallel_chunks(
            buf.size(), [&](std::size_t b, std::size_t e, int t) { sums[static_cast<std::size_t>(t)] = kite::simd::sum(buf.data() + b, e - b); },
            threads);
        const double sec = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
        benchmark::DoNotOptimize(sums.data());
        best = std::max(best, static_cast<double>(buf.size_bytes()) / sec / 1e9);
    }
    return known[threads] = best;
}

/// One replica: a decoder with its own cache and sequence.
template <class Model>
struct replica {
    std::unique_ptr<Model> model;
    typename Model::cache_type cache;
    kite::kv::seq_id seq = 0;
    bool live = false;
    matrix<float> logits;
    std::int32_t next = 1;

    index_t limit;  // context at which the sequence restarts

    explicit replica(std::unique_ptr<Model> m)
        : model(std::move(m)), cache(model->make_cache(max_context)), logits(1, model->vocab_size()),
          limit(std::min(max_context, model->max_positions())) {
        restart();
    }
    void restart() {
        if (live) cache.free(seq);
        seq = *cache.add_sequence();
        live = true;
        std::vector<std::int32_t> prompt(prompt_tokens);
        for (index_t i = 0; i < prompt_tokens; ++i) prompt[i] = static_cast<std::int32_t>((i * 7919 + 1) % model->vocab_size());
        if (model->prefill(cache, seq, prompt, logits.view()) != kite::kv::status::ok) std::abort();
        next = static_cast<std::int32_t>(km::argmax(logits.row(0)));
    }
};

template <class Model>
struct model_set {
    std::vector<std::unique_ptr<replica<Model>>> replicas;
    std::size_t weight_bytes = 0;
};

/// Builds the replicas of one model once (the first benchmark that needs them).
template <class Model>
model_set<Model>& models_for(const std::string& key, const km::checkpoint& ck, bool rotate) {
    static std::map<std::string, model_set<Model>> sets;
    auto& set = sets[key];
    if (set.replicas.empty()) {
        auto first = std::make_unique<Model>(ck);
        set.weight_bytes = first->weight_bytes();
        const std::size_t n = rotate ? std::max<std::size_t>(1, (kite::bench::rotating_bytes + set.weight_bytes - 1) / set.weight_bytes) : 1;
        set.replicas.push_back(std::make_unique<replica<Model>>(std::move(first)));
        for (std::size_t i = 1; i < n; ++i)
            set.replicas.push_back(std::make_unique<replica<Model>>(std::make_unique<Model>(ck)));
    }
    return set;
}

template <class Weights>
void decode(benchmark::State& st, const km::checkpoint* ck, std::string model_name, std::string weights, bool rotate) {
    using model_t = km::llama_decoder<Weights>;
    const int threads = static_cast<int>(st.range(0));
    kite::set_num_threads(threads);
    auto& set = models_for<model_t>(model_name + "/" + weights, *ck, rotate);
    auto& reps = set.replicas;
    const auto& cfg = ck->config;
    index_t it = 0, ctx_sum = 0;
    for (auto _ : st) {
        auto& r = *reps[it++ % reps.size()];
        if (r.cache.length(r.seq) >= r.limit) {
            st.PauseTiming();
            r.restart();
            st.ResumeTiming();
        }
        ctx_sum += r.cache.length(r.seq) + 1;
        const kite::kv::seq_id one[1] = {r.seq};
        const std::int32_t tok[1] = {r.next};
        if (r.model->decode(r.cache, one, tok, r.logits.view()) != kite::kv::status::ok) std::abort();
        r.next = static_cast<std::int32_t>(km::argmax(r.logits.row(0)));
        benchmark::DoNotOptimize(r.next);
    }
    const double avg_ctx = static_cast<double>(ctx_sum) / static_cast<double>(std::max<index_t>(it, 1));
    const double kv_bytes = avg_ctx * 2.0 * static_cast<double>(cfg.num_layers * cfg.kv_dim() * sizeof(float));
    const double bytes = static_cast<double>(set.weight_bytes) + kv_bytes;
    const double bound = bandwidth_gbs(threads) * 1e9 / bytes;
    st.SetItemsProcessed(static_cast<std::int64_t>(st.iterations()));
    st.counters["tok_s"] = benchmark::Counter(static_cast<double>(st.iterations()), benchmark::Counter::kIsRate);
    st.counters["MB_per_token"] = bytes / 1e6;
    st.counters["bound_tok_s"] = bound;
    st.counters["replicas"] = static_cast<double>(reps.size());
    // The summary keeps the last (steady) run of each configuration.
    auto& res = results()[model_name + "/" + weights + "/threads:" + std::to_string(threads)];
    res.mb_per_token = bytes / 1e6;
    res.bound_tok_s = bound;
}

void record_rates(const std::vector<benchmark::BenchmarkReporter::Run>& runs) {
    for (const auto& run : runs) {
        if (run.run_type == benchmark::BenchmarkReporter::Run::RT_Aggregate && run.aggregate_name != "median") continue;
        std::string name = run.benchmark_name();
        // model/decode/<model>/<weights>/kite/threads:<t>[_median]
        const auto strip = [&](const std::string& s) {
            const auto p = name.find(s);
            if (p != std::string::npos) name.erase(p, s.size());
        };
        strip("model/decode/");
        strip("/kite");
        strip("_median");
        strip("/real_time");
        const auto it = run.counters.find("tok_s");
        if (it != run.counters.end()) results()[name].tok_s = it->second.value;
    }
}

class summary_reporter : public benchmark::ConsoleReporter {
public:
    void ReportRuns(const std::vector<Run>& runs) override {
        record_rates(runs);
        ConsoleReporter::ReportRuns(runs);
    }
};

void register_model(const km::checkpoint* ck, const std::string& name, bool rotate) {
    const auto reg = [&](const char* w, auto fn) {
        benchmark::RegisterBenchmark(("model/decode/" + name + "/" + w + "/kite").c_str(), fn, ck, name, std::string(w), rotate)
            ->ArgName("threads")
            ->Arg(1)
            ->Arg(2)
            ->Unit(benchmark::kMillisecond)
            ->UseRealTime();
    };
    reg("f32", decode<kq::f32>);
    reg("int8", decode<kq::absmax<8>>);
    reg("int4", decode<kq::zero_point<4, 128>>);
}

}  // namespace

int main(int argc, char** argv) {
    kite::bench::host_setup(argc, argv);  // --tuning=intel|zen; names the host
    benchmark::Initialize(&argc, argv);
    std::string data = argc > 1 ? argv[1] : (std::getenv("KITE_DATA") ? std::getenv("KITE_DATA") : "");
    static const km::checkpoint llama100m = random_llama(32000, 768, 12, 12, 12, 2048);
    std::unique_ptr<km::checkpoint> aidreams;
    const auto aid_path = std::filesystem::path(data) / "aidreams260k" / "aidreams260K.bin";
    if (!data.empty() && std::filesystem::exists(aid_path)) {
        // The llama2.c model uses interleaved RoPE; for speed the convention does not matter,
        // so it runs through the same Llama decoder type after relabelling.
        aidreams = std::make_unique<km::checkpoint>(km::read_checkpoint(aid_path));
        aidreams->config.rope_interleaved = false;
        register_model(aidreams.get(), "aidreams260k", false);
    } else {
        std::fprintf(stderr, "aidreams260k: no data folder (argument or KITE_DATA); skipped\n");
    }
    register_model(&llama100m, "llama100m", true);
    summary_reporter rep;
    benchmark::RunSpecifiedBenchmarks(&rep);

    std::printf("\n%-34s %10s %12s %12s %9s %12s\n", "model/weights/threads", "tok/s", "MB/token", "bound tok/s",
                "of bound", "vs f32");
    for (const auto& [name, r] : results()) {
        const auto slash = name.find('/');
        const auto tail = name.substr(name.rfind('/'));
        const auto f32 = results().find(name.substr(0, slash) + "/f32" + tail);
        const double speedup = f32 != results().end() && f32->second.tok_s > 0 ? r.tok_s / f32->second.tok_s : 0.0;
        std::printf("%-34s %10.1f %12.2f %12.1f %8.0f%% %11.2fx\n", name.c_str(), r.tok_s, r.mb_per_token, r.bound_tok_s,
                    r.bound_tok_s > 0 ? 100.0 * r.tok_s / r.bound_tok_s : 0.0, speedup);
    }
    std::printf("DRAM read bandwidth (vector sum of 1 GiB, best of 5): %.1f GB/s (1 thread), %.1f GB/s (2 threads); "
                "bench_util's scalar probe: %.1f / %.1f GB/s\n",
                bandwidth_gbs(1), bandwidth_gbs(2), kite::bench::measure_read_bandwidth_gbs(1),
                kite::bench::measure_read_bandwidth_gbs(2));
    benchmark::Shutdown();
    return 0;
}
