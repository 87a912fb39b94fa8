// kite-10-serve: a handful of concurrent chat requests served by kite::serve::engine from one
// GGUF model — continuous batching, the shared system prompt computed once (prefix cache), each
// answer streamed as its tokens come, and the engine's counters at the end.
//
//   kite-10-serve --model models/SmolLM2-135M-Instruct.Q4_1.gguf [--threads N] [--int8-activations]
//                 [--speculative ngram] [--max-tokens N]
//
// Every answer is exactly what the same request produces alone (batch invariance): try
// --max-running 1 and compare.
#include <cstdio>
#include <string>
#include <thread>
#include <vector>

#include "kite/core/parallel.hpp"
#include "kite/model/formats/gguf_model.hpp"
#include "kite/model/formats/gguf_tokenizer.hpp"
#include "kite/serve.hpp"
#include "kite/text/utf8.hpp"

#include "cli.hpp"

namespace {

namespace km = kite::model;
namespace ks = kite::serve;

const char* const questions[] = {
    "What is the capital of France?",
    "Name three primary colors.",
    "Explain in one sentence what a KV cache is.",
    "What is 12 times 12?",
    "Write a haiku about the sea.",
    "Who wrote Romeo and Juliet?",
};

template <class Model, class Drafter>
int serve(const Model& model, const km::gguf_tokenizer& tok, std::size_t max_running, std::size_t max_tokens,
          Drafter drafter) {
    ks::engine<Model, ks::continuous_batching, Drafter> eng(
        model, {.kv_tokens = 8192, .detokenize = [&](std::span<const std::int32_t> ids) { return tok.decode(ids, true); }},
        {.max_running = max_running}, drafter);
    eng.start();
    const std::string system = "You are a friendly assistant. Answer briefly and precisely.";
    std::vector<ks::handle> handles;
    for (const char* q : questions) {
        const std::vector<kite::text::chat_message> chat = {{"system", system}, {"user", q}};
        ks::request r;
        r.prompt = tok.apply_chat_template(chat, true);
        r.sampling.temperature = 0;
        r.max_tokens = max_tokens;
        handles.push_back(eng.submit(std::move(r)));
    }
    // One reader thread per request streams its answer (lines may interleave; each answer is
    // printed whole at the end as well).
    std::vector<std::thread> readers;
    for (std::size_t i = 0; i < handles.size(); ++i)
        readers.emplace_back([&, i] {
            std::size_t n = 0;
            while (auto ev = handles[i].next()) ++n;
            std::printf("[request %zu streamed %zu tokens]\n", i, n);
        });
    for (auto& t : readers) t.join();
    for (std::size_t i = 0; i < handles.size(); ++i) {
        const ks::result r = handles[i].wait();
        std::printf("\nQ%zu: %s\nA%zu: %s\n   (%zu tokens, %s; queue %.0f ms, first token %.0f ms, %.1f ms/token; %zu prompt tokens from the cache)\n",
                    i, questions[i], i, r.outputs[0].text.c_str(), r.outputs[0].tokens.size(),
                    ks::to_string(r.outputs[0].finish), r.timings.queue_s * 1e3, r.timings.ttft_s * 1e3,
                    r.timings.tpot_s * 1e3, static_cast<std::size_t>(r.cached_prompt_tokens));
    }
    eng.shutdown();
    const ks::engine_stats st = eng.stats();
    std::printf("\nengine: %llu steps, %llu tokens generated at %.1f tokens/s, prefix-cache hit rate %.0f%%, "
                "peak %zu KV blocks of 16 tokens, %llu preemptions",
                static_cast<unsigned long long>(st.steps), static_cast<unsigned long long>(st.generated_tokens),
                st.tokens_per_second(), 100.0 * st.prefix_hit_rate(), static_cast<std::size_t>(st.peak_kv_blocks),
                static_cast<unsigned long long>(st.preemptions));
    if (st.drafted_tokens) std::printf(", speculation acceptance %.0f%%", 100.0 * st.acceptance_rate());
    std::printf("\n");
    return 0;
}

}  // namespace

int main(int argc, char** argv) {
    kite::cli::parser cli("kite-10-serve", "concurrent chat requests served by kite::serve::engine");
    auto& model = cli.option<std::string>("--model", "FILE", "GGUF chat model", "models/SmolLM2-135M-Instruct.Q4_1.gguf");
    auto& threads = cli.option<int>("--threads", "N", "compute threads (0: all cores)", 0).range(0, 1024);
    auto& running = cli.option<std::size_t>("--max-running", "N", "sequences decoded together", 8).range(1, 1024);
    auto& max_tokens = cli.option<std::size_t>("--max-tokens", "N", "new tokens per answer", 48).range(1, 4096);
    auto& spec = cli.option<std::string>("--speculative", "off|ngram", "prompt-lookup speculation", "off").choices({"off", "ngram"});
    auto& int8 = cli.flag("--int8-activations", "int8 activations (faster, approximately the float path)");
    return kite::cli::run(cli, argc, argv, [&] {
        if (*threads > 0) kite::set_num_threads(*threads);
        const km::gguf_file file(*model);
        const km::gguf_tokenizer tok(file);
        // K/V in 16-token blocks stored as float16 (half the memory and the reads of float32).
        return km::with_gguf_decoder<kite::kv::paged<16, kite::fp16>, kite::attn::invariant>(file, int8, [&](auto& m) {
            if (*spec == "ngram") return serve(m, tok, *running, *max_tokens, ks::prompt_lookup{});
            return serve(m, tok, *running, *max_tokens, ks::no_speculation{});
        });
    });
}
