// kite::serve on the real SmolLM2-135M-Instruct GGUF (models/, tools/fetch_smollm2.py; the
// test counts as skipped without it): chat requests sharing a system prompt, served together
// under continuous batching with chunked prefill, the prefix cache and prompt-lookup
// speculation, produce exactly the tokens and logits each produces alone; greedy chat output
// equals kite::model::generate with the model's own (flash) attention on the first tokens.

#include <string>
#include <vector>

#include "kite/model/formats/gguf_tokenizer.hpp"
#include "kite/model/generate.hpp"
#include "kite/serve.hpp"
#include "serve_test_util.hpp"

namespace ks = kite::serve;
namespace km = kite::model;
using kite::index_t;

TEST_CASE("serve SmolLM2: batched, chunked, cached and speculative chat equals each request alone", "[serve][.smollm2]") {
    KITE_NEED_MODEL(path, "SmolLM2-135M-Instruct.Q4_1.gguf", "fetch_smollm2.py");
    const km::gguf_file file(path);
    const km::gguf_tokenizer tok(file);
    using model_t = km::gguf_llama_decoder<kite::kv::paged<16>, kite::attn::invariant>;
    const model_t model(km::read_gguf(file));
    const std::string system = "You are a concise assistant. Answer in one short sentence, using the facts given.";
    const char* questions[] = {"What is the capital of France?", "Name a primary color.",
                               "The cat sat on the mat. Where did the cat sit?", "What is 2 + 2?"};
    std::vector<ks::request> reqs;
    for (const char* q : questions) {
        ks::request r;
        const std::vector<kite::text::chat_message> chat = {{"system", system}, {"user", q}};
        r.prompt = tok.apply_chat_template(chat, true);
        r.max_tokens = 12;
        r.sampling.temperature = 0;
        r.record_logits = true;
        reqs.push_back(r);
    }
    const auto detok = [&](std::span<const std::int32_t> ids) { return tok.decode(ids, true); };
    std::vector<ks::result> alone;
    for (const auto& r : reqs) {
        ks::engine<model_t> e(model, {.kv_tokens = 512, .prefix_caching = false, .detokenize = detok});
        alone.push_back(e.generate({r})[0]);
    }
    ks::engine<model_t, ks::continuous_batching, ks::prompt_lookup> e(
        model,
        {.kv_tokens = 2048, .detokenize = detok,
         .chat_template = [&](std::span<const kite::text::chat_message> m) { return tok.apply_chat_template(m, true); }},
        {.token_budget = 48, .chunk = 20, .max_partial_prefills = 2}, {.max_draft = 3});
    // The last request as chat messages, rendered by the engine: the same prompt.
    auto as_chat = reqs;
    as_chat.back().prompt.clear();
    as_chat.back().messages = {{"system", system}, {"user", questions[3]}};
    const auto together = e.generate(as_chat);
    for (index_t i = 0; i < reqs.size(); ++i) {
        INFO("question " << i << ": " << together[i].outputs[0].text);
        CHECK(together[i].outputs[0].tokens == alone[i].outputs[0].tokens);
        CHECK(together[i].outputs[0].logit_digests == alone[i].outputs[0].logit_digests);
    }
    CHECK(e.stats().prefix_hit_tokens > 0);  // the shared system prompt
    CHECK(alone[0].outputs[0].text.find("Paris") != std::string::npos);
    // The engine's greedy tokens equal generate() with the decoder's flash attention on the
    // first tokens (the kernels differ only in rounding; a near-tie could part them later).
    km::gguf_llama_decoder<kite::kv::contiguous<float>> flash_model(km::read_gguf(file));
    const auto g = km::generate(flash_model, reqs[0].prompt, {.max_new_tokens = 6, .sampling = {.temperature = 0}});
    CHECK(std::vector<std::int32_t>(alone[0].outputs[0].tokens.begin(), alone[0].outputs[0].tokens.begin() + 6) == g.tokens);
}
