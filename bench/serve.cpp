// bench_serve: a serving workload against kite::serve::engine on a GGUF model, printing one JSON
// object (the README's serving figures come from it; bench/serve_figures.sh runs the set).
//
//   bench_serve --model models/SmolLM2-135M-Instruct.Q4_1.gguf --policy continuous --requests 64
//               --rate 4 --threads 2 [--prefix-cache on|off] [--speculative off|ngram]
//               [--rag DATA_DIR] [--seed S] [--repeat N] --json
//
// Workload (seeded): requests arrive as a Poisson process of `rate` per second (0: all at once);
// each is a chat (the model's template) of a shared system prompt of --system-tokens tokens and a
// user message of random common words whose token count is lognormal around --prompt-tokens;
// it asks for a lognormal number of new tokens around --output-tokens (ignore_eos: the count is
// exact). --fixed makes both lengths exact and drops the system prompt (llama-batched-bench's
// shape). --rag DATA_DIR builds prompts from SciFact instead: a claim with its judged abstract as
// context, asking for the supporting sentence, greedy, stopping at the end of the answer.
//
// Figures: output tokens per second over the wall time (first arrival to last finish); decode
// tokens per second over the engine's decode-only steps; p50 / p95 of time to first token and
// time per output token; the prefix-cache hit rate; the acceptance rate of speculation; the peak
// KV blocks in use and the paged cache's waste beside what contiguous pre-allocation reserves.
// With --repeat N the workload runs N times on fresh engines and each figure is the median.
// Limits beside them: decode's GFLOP/s (2 per weight per token) as a fraction of the float32 FMA
// peak, and the weights' bytes with the DRAM read bandwidth, both measured on the same threads.

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <optional>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>

#include "kite/core/parallel.hpp"
#include "kite/model/formats/gguf_model.hpp"
#include "kite/model/formats/gguf_tokenizer.hpp"
#include "kite/retrieval/datasets.hpp"
#include "kite/serve.hpp"

#include "../examples/cli.hpp"
#include "bench_util.hpp"

namespace {

namespace ks = kite::serve;
namespace km = kite::model;
using kite::index_t;
using clock_type = std::chrono::steady_clock;

struct config {
    std::string model, policy = "continuous", speculative = "off", rag;
    index_t requests = 64, system_tokens = 256, prompt_tokens = 64, output_tokens = 64, max_running = 16;
    index_t token_budget = 512, chunk = 256, kv_tokens = 32768, repeat = 1, draft = 4, show = 0, ngram_min = 3;
    double rate = 4.0;
    int threads = 2;
    bool prefix_cache = true, fixed = false, int8 = false, prefault = true;
    std::string kv_type = "f16";
    std::uint64_t seed = 1;
};

struct work {
    ks::request req;
    double arrival_s = 0;
};

const char* const words[] = {
    "the", "time", "people", "water", "world", "system", "model", "answer", "question", "city", "river", "light",
    "number", "small", "large", "early", "later", "house", "school", "market", "history", "science", "music", "paper",
    "garden", "winter", "summer", "energy", "simple", "careful", "language", "machine", "story", "friend", "family",
    "morning", "evening", "travel", "country", "north", "south", "mountain", "ocean", "forest", "bright", "quiet",
    "write", "read", "build", "carry", "follow", "explain", "measure", "compare", "choose", "remember", "because",
    "although", "between", "without", "around", "under", "over", "during", "before", "after", "every", "other",
    "data", "memory", "server", "request", "token", "search", "library", "window", "engine", "signal", "table"};

std::string random_words(std::mt19937_64& rng, index_t n) {
    std::string s;
    for (index_t i = 0; i < n; ++i) {
        if (i) s += (rng() % 11 == 0) ? ". " : " ";
        s += words[rng() % std::size(words)];
    }
    return s;
}

// Text of about `tokens` tokens (grown word by word, then the ids cut to the exact count).
std::vector<std::int32_t> text_tokens(const km::gguf_tokenizer& tok, std::mt19937_64& rng, index_t tokens) {
    std::string s = random_words(rng, tokens);
    auto ids = tok.encode(s, false);
    while (ids.size() < tokens) {
        s += " " + random_words(rng, tokens - ids.size());
        ids = tok.encode(s, false);
    }
    ids.resize(tokens);
    return ids;
}

index_t lognormal(std::mt19937_64& rng, double mean, double sigma) {
    // mean of a lognormal = exp(mu + sigma^2 / 2)
    std::lognormal_distribution<double> d(std::log(mean) - sigma * sigma / 2, sigma);
    return std::max<index_t>(1, static_cast<index_t>(std::lround(d(rng))));
}

std::vector<work> make_workload(const config& c, const km::gguf_tokenizer& tok, const std::string& system_text) {
    std::mt19937_64 rng(c.seed);
    std::vector<work> out;
    double t = 0;
    std::exponential_distribution<double> gap(c.rate > 0 ? c.rate : 1.0);
    std::optional<kite::retrieval::data::dataset> ds;
    if (!c.rag.empty()) ds = kite::retrieval::data::load_beir(std::filesystem::path(c.rag) / "scifact", "test");
    for (index_t i = 0; i < c.requests; ++i) {
        work w;
        w.arrival_s = t;
        if (c.rate > 0) t += gap(rng);
        ks::request& r = w.req;
        r.seed = rng();
        if (ds) {
            const index_t q = rng() % ds->queries.size();
            std::string context;
            for (const auto& j : ds->qrels[q]) {
                const auto& d = ds->corpus[j.doc];
                context += d.title + ". " + d.text + "\n";
            }
            const std::vector<kite::text::chat_message> chat = {
                {"system", "Answer from the context only. Quote the sentence of the context that answers the question."},
                {"user", "Context:\n" + context + "\nQuestion: what does the context say about this claim? " + ds->queries[q].text}};
            r.prompt = tok.apply_chat_template(chat, true);
            r.max_tokens = c.output_tokens;
            r.sampling.temperature = 0;
        } else if (c.fixed) {
            r.prompt = text_tokens(tok, rng, c.prompt_tokens);
            r.max_tokens = c.output_tokens;
            r.ignore_eos = true;
            r.sampling.temperature = 0;
        } else {
            const auto user = text_tokens(tok, rng, lognormal(rng, static_cast<double>(c.prompt_tokens), 0.6));
            const std::vector<kite::text::chat_message> chat = {{"system", system_text}, {"user", tok.decode(user)}};
            r.prompt = tok.apply_chat_template(chat, true);
            r.max_tokens = std::min<index_t>(lognormal(rng, static_cast<double>(c.output_tokens), 0.6), 4 * c.output_tokens);
            r.ignore_eos = true;
            r.sampling.temperature = 0;
        }
        out.push_back(std::move(w));
    }
    return out;
}

double percentile(std::vector<double> v, double p) {
    if (v.empty()) return 0;
    std::sort(v.begin(), v.end());
    const double pos = p * static_cast<double>(v.size() - 1);
    const auto lo = static_cast<std::size_t>(std::floor(pos));
    const auto hi = std::min(lo + 1, v.size() - 1);
    return v[lo] + (v[hi] - v[lo]) * (pos - static_cast<double>(lo));
}

double median(std::vector<double> v) { return percentile(std::move(v), 0.5); }

// One run on a fresh engine: arrivals from a submitter (this thread), the engine's loop thread.
template <class Engine>
nlohmann::json run_once(Engine& eng, const std::vector<work>& wl, index_t show) {
    eng.start();
    std::vector<ks::handle> hs;
    const auto t0 = clock_type::now();
    for (const auto& w : wl) {
        std::this_thread::sleep_until(t0 + std::chrono::duration_cast<clock_type::duration>(std::chrono::duration<double>(w.arrival_s)));
        hs.push_back(eng.submit(w.req));
    }
    std::vector<double> ttft, tpot, e2e, queue;
    index_t out_tokens = 0;
    for (auto& h : hs) {
        const auto r = h.wait();
        if (show > 0) {
            --show;
            std::fprintf(stderr, "--- output (%zu tokens): %s\n", r.outputs[0].tokens.size(), r.outputs[0].text.c_str());
        }
        ttft.push_back(r.timings.ttft_s * 1e3);
        e2e.push_back(r.timings.e2e_s * 1e3);
        queue.push_back(r.timings.queue_s * 1e3);
        if (r.outputs[0].tokens.size() > 1) tpot.push_back(r.timings.tpot_s * 1e3);
        for (const auto& o : r.outputs) out_tokens += o.tokens.size();
    }
    const double wall = std::chrono::duration<double>(clock_type::now() - t0).count();
    eng.shutdown();
    const auto st = eng.stats();
    nlohmann::json j;
    j["output_tokens"] = out_tokens;
    j["wall_s"] = wall;
    j["output_tokens_per_s"] = static_cast<double>(out_tokens) / wall;
    j["decode_tokens_per_s"] = st.decode_tokens_per_second();
    j["ttft_p50_ms"] = percentile(ttft, 0.5);
    j["ttft_p95_ms"] = percentile(ttft, 0.95);
    j["tpot_p50_ms"] = percentile(tpot, 0.5);
    j["tpot_p95_ms"] = percentile(tpot, 0.95);
    j["e2e_p50_ms"] = percentile(e2e, 0.5);
    j["queue_p50_ms"] = percentile(queue, 0.5);
    j["prefix_hit_rate"] = st.prefix_hit_rate();
    j["acceptance_rate"] = st.drafted_tokens ? nlohmann::json(st.acceptance_rate()) : nlohmann::json(nullptr);
    j["peak_kv_blocks"] = st.peak_kv_blocks;
    const double paged_tokens = static_cast<double>(st.peak_kv_blocks * Engine::block_tokens);
    j["peak_kv_tokens"] = st.peak_kv_tokens;
    j["contiguous_reserved_tokens"] = st.peak_contiguous_tokens;
    j["paged_waste_pct_of_contiguous"] =
        st.peak_contiguous_tokens ? 100.0 * (paged_tokens - static_cast<double>(st.peak_kv_tokens)) / static_cast<double>(st.peak_contiguous_tokens) : 0.0;
    j["contiguous_waste_pct"] =
        st.peak_contiguous_tokens ? 100.0 * (static_cast<double>(st.peak_contiguous_tokens) - static_cast<double>(st.peak_kv_tokens)) / static_cast<double>(st.peak_contiguous_tokens) : 0.0;
    j["preemptions"] = st.preemptions;
    j["steps"] = st.steps;
    j["longest_step_ms"] = st.longest_step_seconds * 1e3;
    return j;
}

template <class Model, class Policy, class Drafter>
nlohmann::json run_all(const Model& model, const config& c, Policy policy, Drafter drafter, const std::vector<work>& wl,
                       const km::gguf_tokenizer& tok) {
    std::vector<nlohmann::json> runs;
    for (index_t i = 0; i < c.repeat; ++i) {
        ks::engine<Model, Policy, Drafter> eng(
            model, {.kv_tokens = c.kv_tokens, .max_queue = c.requests + 1, .prefix_caching = c.prefix_cache,
                    .prefault_kv = c.prefault, .detokenize = [&](std::span<const std::int32_t> ids) { return tok.decode(ids, true); }},
            policy, drafter);
        runs.push_back(run_once(eng, wl, i == 0 ? c.show : 0));
    }
    nlohmann::json out = runs[0];
    for (auto it = out.begin(); it != out.end(); ++it) {
        if (!it.value().is_number()) continue;
        std::vector<double> v;
        for (const auto& r : runs) v.push_back(r[it.key()].template get<double>());
        it.value() = median(v);
    }
    std::vector<double> tps;
    for (const auto& r : runs) tps.push_back(r["output_tokens_per_s"].template get<double>());
    out["runs_output_tokens_per_s"] = tps;
    return out;
}

}  // namespace

int main(int argc, char** argv) {
    kite::bench::host_setup(argc, argv);  // --tuning=intel|zen; names the host
    kite::cli::parser cli("bench_serve", "a serving workload against kite::serve::engine (one JSON object)");
    config c;
    auto& model = cli.option<std::string>("--model", "FILE", "GGUF model", "models/SmolLM2-135M-Instruct.Q4_1.gguf");
    auto& policy = cli.option<std::string>("--policy", "static|dynamic|continuous", "scheduler (static / dynamic: batches of 16)", "continuous").choices({"static", "dynamic", "continuous"});
    auto& requests = cli.option<index_t>("--requests", "N", "requests", 64).range(1, 100000);
    auto& rate = cli.option<double>("--rate", "R", "Poisson arrivals per second (0: all at once)", 4.0).range(0, 1e6);
    auto& threads = cli.option<int>("--threads", "T", "compute threads", 2).range(1, 1024);
    auto& prefix = cli.option<std::string>("--prefix-cache", "on|off", "automatic prefix caching", "on").choices({"on", "off"});
    auto& spec = cli.option<std::string>("--speculative", "off|ngram", "prompt-lookup speculation", "off").choices({"off", "ngram"});
    auto& draft = cli.option<index_t>("--draft", "K", "draft tokens per step (ngram)", 4).range(1, 64);
    auto& ngram_min = cli.option<index_t>("--ngram-min", "N", "shortest n-gram matched (ngram)", 3).range(1, 16);
    auto& rag = cli.option<std::string>("--rag", "DATA_DIR", "SciFact prompts from DATA_DIR/scifact (KITE_DATA layout)", "");
    auto& seed = cli.option<std::uint64_t>("--seed", "S", "workload seed", 1);
    auto& repeat = cli.option<index_t>("--repeat", "N", "runs on fresh engines; figures are medians", 1).range(1, 100);
    auto& sys_tokens = cli.option<index_t>("--system-tokens", "N", "shared system prompt tokens (0: none)", 256).range(0, 100000);
    auto& p_tokens = cli.option<index_t>("--prompt-tokens", "N", "mean user prompt tokens", 64).range(1, 100000);
    auto& o_tokens = cli.option<index_t>("--output-tokens", "N", "mean new tokens", 64).range(1, 100000);
    auto& fixed = cli.flag("--fixed", "exact prompt / output lengths, no system prompt");
    auto& max_running = cli.option<index_t>("--max-running", "N", "continuous: sequences at once", 16).range(1, 4096);
    auto& budget = cli.option<index_t>("--token-budget", "N", "continuous: tokens per step", 512).range(1, 1 << 20);
    auto& chunk = cli.option<index_t>("--chunk", "N", "continuous: longest prompt chunk per step", 256).range(1, 1 << 20);
    auto& kv = cli.option<index_t>("--kv-tokens", "N", "KV pool in tokens", 32768).range(16, index_t{1} << 30);
    auto& int8 = cli.flag("--int8-activations", "int8 activations (ggml_a8)");
    auto& kv_type = cli.option<std::string>("--kv-type", "f16|f32", "K/V cache storage", "f16").choices({"f16", "f32"});
    auto& prefault = cli.option<std::string>("--prefault", "on|off", "touch the KV pool when the engine starts", "on").choices({"on", "off"});
    auto& show = cli.option<index_t>("--show", "N", "print the first N outputs to stderr", 0).range(0, 100000);
    cli.flag("--json", "print JSON (the only output format)");
    return kite::cli::run(cli, argc, argv, [&] {
        std::fprintf(stderr, "host: %s\n", kite::cpu::describe().c_str());  // stdout holds only the JSON
        c.model = *model;
        c.policy = *policy;
        c.requests = *requests;
        c.rate = *rate;
        c.threads = *threads;
        c.prefix_cache = *prefix == "on";
        c.speculative = *spec;
        c.draft = *draft;
        c.ngram_min = *ngram_min;
        c.rag = *rag;
        c.seed = *seed;
        c.repeat = *repeat;
        c.system_tokens = *sys_tokens;
        c.prompt_tokens = *p_tokens;
        c.output_tokens = *o_tokens;
        c.fixed = fixed;
        c.max_running = *max_running;
        c.token_budget = *budget;
        c.chunk = *chunk;
        c.kv_tokens = *kv;
        c.int8 = int8;
        c.kv_type = *kv_type;
        c.show = *show;
        c.prefault = *prefault == "on";
        kite::set_num_threads(c.threads);
        const km::gguf_file file(c.model);
        const km::gguf_tokenizer tok(file);
        std::mt19937_64 srng(c.seed ^ 0x5eed);
        const std::string system_text =
            c.system_tokens ? tok.decode(text_tokens(tok, srng, c.system_tokens)) : std::string("You are a helpful assistant.");
        const auto wl = make_workload(c, tok, system_text);
        std::size_t weight_bytes = 0;
        const auto serve_model = [&](auto& m) -> nlohmann::json {
                weight_bytes = m.weight_bytes();
                const auto go = [&](auto pol) -> nlohmann::json {
                    if (c.speculative == "ngram")
                        return run_all(m, c, pol, ks::prompt_lookup{.max_draft = c.draft, .min_ngram = c.ngram_min, .max_ngram = std::max<index_t>(3, c.ngram_min)}, wl, tok);
                    return run_all(m, c, pol, ks::no_speculation{}, wl, tok);
                };
                if (c.policy == "static") return go(ks::static_batching<16>{});
                if (c.policy == "dynamic") return go(ks::dynamic_batching<16>{});
                return go(ks::continuous_batching{.token_budget = c.token_budget, .max_running = c.max_running, .chunk = c.chunk});
            };
        // K/V stored as fp16 (llama.cpp's default cache type) or float32.
        nlohmann::json out = c.kv_type == "f16"
                                 ? km::with_gguf_decoder<kite::kv::paged<16, kite::fp16>, kite::attn::invariant>(file, c.int8, serve_model)
                                 : km::with_gguf_decoder<kite::kv::paged<16, float>, kite::attn::invariant>(file, c.int8, serve_model);
        index_t prompt_total = 0;
        for (const auto& w : wl) prompt_total += w.req.prompt.size();
        out["policy"] = c.policy;
        out["requests"] = c.requests;
        out["rate"] = c.rate;
        out["threads"] = c.threads;
        out["prefix_cache"] = c.prefix_cache;
        out["speculative"] = c.speculative;
        out["int8_activations"] = c.int8;
        out["kv_type"] = c.kv_type;
        out["rag"] = !c.rag.empty();
        out["mean_prompt_tokens"] = static_cast<double>(prompt_total) / static_cast<double>(wl.size());
        out["seed"] = c.seed;
        out["repeat"] = c.repeat;
        out["host_cpu"] = kite::cpu::describe();
        // Limits, measured with the same threads: decode's arithmetic (2 FLOP per weight per token,
        // the tied output matrix counted once; attention over the context left out) against the
        // float32 FMA peak, and one step's weight reads (once per step however many sequences
        // it carries) against the DRAM read bandwidth.
        double weights = 0;
        for (const auto& t : file.tensors()) weights += static_cast<double>(t.elements());
        const double peak = kite::bench::measure_fma_peak_gflops(c.threads);
        out["weight_elements"] = weights;
        out["weight_bytes"] = weight_bytes;
        out["fma_peak_gflop_per_s"] = peak;
        out["dram_read_gb_s"] = kite::bench::measure_read_bandwidth_gbs(c.threads);
        out["decode_gflop_per_s"] = out["decode_tokens_per_s"].get<double>() * 2 * weights / 1e9;
        out["decode_of_fma_peak"] = out["decode_gflop_per_s"].get<double>() / peak;
        std::printf("%s\n", out.dump().c_str());
        return 0;
    });
}
