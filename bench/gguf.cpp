// bench_gguf: kite's decoder on a GGUF model, measured the way llama.cpp's llama-bench measures
// (bench/gguf_vs_llamacpp.py runs both on the same file and prints the ratios).
//
//   bench_gguf --model FILE --threads T [--tg 128] [--pp 512] [--repetitions N] [--json]
//
// After one warm-up of each test, N repetitions of:
//   tg  decode `tg` tokens one at a time from an empty cache (the first through prefill),
//       greedy is not needed: the next token is a fixed pseudo-random id, as llama-bench does;
//       rate = tg / seconds;
//   pp  one prefill of `pp` tokens into an empty cache, logits of the last token only;
//       rate = pp / seconds.
// It also reports the resident set after loading and decoding one token (VmRSS), the bytes of
// weights one decoded token reads, and the DRAM read bandwidth T threads reach (the probe of
// bench_util.hpp), so the caller can state decode speed as a fraction of the memory bound.
// With --json it prints exactly one JSON object on stdout (logs on stderr).
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "../examples/cli.hpp"
#include "bench_util.hpp"
#include "kite/core/parallel.hpp"
#include "kite/model/formats/gguf_model.hpp"

namespace {

namespace km = kite::model;
using kite::index_t;

std::size_t vm_rss_bytes() {
    std::ifstream f("/proc/self/status");
    std::string line;
    while (std::getline(f, line))
        if (line.rfind("VmRSS:", 0) == 0) return std::stoull(line.substr(6)) * 1024;
    return 0;
}

double seconds_since(std::chrono::steady_clock::time_point t0) {
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

template <class Model>
int run(Model& model, int threads, index_t tg, index_t pp, int reps, bool json) {
    const index_t V = model.vocab_size();
    std::uint64_t s = 88172645463325252ull;
    const auto next_token = [&] {
        s ^= s << 13, s ^= s >> 7, s ^= s << 17;
        return static_cast<std::int32_t>(s % V);
    };
    kite::matrix<float> logits(1, V);
    const auto tg_once = [&] {
        auto cache = model.make_cache(std::max<index_t>(tg, 1) + 1);
        const auto seq = *cache.add_sequence();
        const std::int32_t first[1] = {next_token()};
        const auto t0 = std::chrono::steady_clock::now();
        (void)model.prefill(cache, seq, first, logits.view());
        const kite::kv::seq_id seqs[1] = {seq};
        for (index_t i = 1; i < tg; ++i) {
            const std::int32_t t[1] = {next_token()};
            (void)model.decode(cache, seqs, t, logits.view());
        }
        return static_cast<double>(tg) / seconds_since(t0);
    };
    std::vector<std::int32_t> prompt(pp);
    for (auto& t : prompt) t = next_token();
    const auto pp_once = [&] {
        auto cache = model.make_cache(pp + 1);
        const auto seq = *cache.add_sequence();
        const auto t0 = std::chrono::steady_clock::now();
        (void)model.prefill(cache, seq, prompt, logits.view());
        return static_cast<double>(pp) / seconds_since(t0);
    };
    // Resident set after load and one decoded token (every weight read once).
    {
        auto cache = model.make_cache(4);
        const auto seq = *cache.add_sequence();
        const std::int32_t one[1] = {1};
        (void)model.prefill(cache, seq, one, logits.view());
    }
    const std::size_t rss = vm_rss_bytes();
    std::vector<double> tg_rates, pp_rates;
    if (tg > 0) {
        tg_once();
        for (int r = 0; r < reps; ++r) tg_rates.push_back(tg_once());
    }
    if (pp > 0) {
        pp_once();
        for (int r = 0; r < reps; ++r) pp_rates.push_back(pp_once());
    }
    const double bw = kite::bench::measure_read_bandwidth_gbs(threads);
    const std::size_t wbytes = model.weight_bytes();
    const auto median = [](std::vector<double> v) {
        if (v.empty()) return 0.0;
        std::sort(v.begin(), v.end());
        return v.size() % 2 ? v[v.size() / 2] : 0.5 * (v[v.size() / 2 - 1] + v[v.size() / 2]);
    };
    if (json) {
        nlohmann::json j{{"tg_tok_s", tg_rates},
                         {"pp_tok_s", pp_rates},
                         {"rss_after_load_bytes", rss},
                         {"weights_bytes_per_token", wbytes},
                         {"dram_read_gb_s", bw},
                         {"threads", threads}};
        std::printf("%s\n", j.dump().c_str());
    } else {
        std::printf("tg%zu %.1f tok/s, pp%zu %.1f tok/s (medians of %d), %d threads\n", tg, median(tg_rates), pp,
                    median(pp_rates), reps, threads);
        std::printf("weights read per token %.1f MB; DRAM read %.1f GB/s: bound %.0f tok/s (tg at %.0f%%)\n",
                    static_cast<double>(wbytes) / 1e6, bw, bw * 1e9 / static_cast<double>(wbytes),
                    100.0 * median(tg_rates) / (bw * 1e9 / static_cast<double>(wbytes)));
        std::printf("resident set after load: %.1f MiB\n", static_cast<double>(rss) / (1 << 20));
    }
    return 0;
}

}  // namespace

int main(int argc, char** argv) {
    kite::bench::host_setup(argc, argv);  // --tuning=intel|zen; names the host
    kite::cli::parser cli("bench_gguf", "kite's decoder on a GGUF model, measured as llama-bench measures (tg, pp).");
    auto& model_path = cli.option<std::string>("--model", "FILE", "a GGUF model (llama or qwen2)").required();
    auto& threads = cli.option<int>("--threads", "T", "threads (0: every core)", 0).range(0, 4096);
    auto& tg = cli.option<index_t>("--tg", "N", "tokens decoded one at a time (0: skip)", 128).range(0, 65536);
    auto& pp = cli.option<index_t>("--pp", "N", "prompt tokens in one batch (0: skip)", 512).range(0, 65536);
    auto& reps = cli.option<int>("--repetitions", "N", "timed repetitions of each test", 5).range(1, 1000);
    const bool& json = cli.flag("--json", "print one JSON object");
    const bool& a8 = cli.flag("--int8-activations", "round activations to int8 per block of 32 (llama.cpp's way)");
    return kite::cli::run(cli, argc, argv, [&]() -> int {
        // With --json stdout holds only the JSON object.
        std::fprintf(json ? stderr : stdout, "host: %s\n", kite::cpu::describe().c_str());
        if (*threads > 0) kite::set_num_threads(*threads);
        const int t = kite::max_threads();
        const km::gguf_file file(*model_path);
        return km::with_gguf_decoder(file, a8, [&](auto& model) { return run(model, t, *tg, *pp, *reps, json); });
    });
}
