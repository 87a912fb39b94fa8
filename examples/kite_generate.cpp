// kite-generate: text generation with a GGUF model (its own tokenizer and chat template) or a
// llama2.c checkpoint and its tokenizer.bin.
//
//   kite-generate --model SmolLM2-135M-Instruct.Q4_1.gguf --chat --prompt "What is the capital of France?"
//   kite-generate --model model.bin --tokenizer tokenizer.bin --prompt "Once upon a time"
//
//   [--chat] [--system TEXT] [--steps N] [--temperature T] [--top-k K] [--top-p P] [--seed S]
//   [--threads N] [--json] [--int8-activations] (GGUF)
//   [--weights f32|int8|int4-rtn|int4-gptq|int4-awq] [--cache contiguous|paged] [--calibration FILE]
//   (llama2.c)
//
// Tokens are printed on stdout as they are made (never a broken UTF-8 character), the speed on
// stderr; with --json nothing is streamed and stdout is one JSON object at the end:
// {"text", "tokens" (generated ids, stop token excluded), "prompt_tokens", "ttft_ms",
// "decode_tokens_per_s", "stop"}. Generation stops at the model's end-of-generation tokens
// (<|im_end|>, </s>, ...), after --steps tokens, or at the end of the context.
//
// GGUF: --chat renders the prompt with the model's chat template (ChatML, Llama 2 or Llama 3,
// recognized from the file; --system replaces the template's default system message); without
// --chat the prompt is continued as plain text. Special-token text typed in the prompt stays
// plain text. --int8-activations rounds activations to int8 as llama.cpp does (faster; logits
// within about 2 of the float path on SmolLM2, see kite/quant/ggml_a8.hpp).
//
// llama2.c: without --model/--tokenizer it runs the aidreams260K model from the data folder
// (KITE_DATA/aidreams260k). Quantized weights are made from the float32 checkpoint at load:
// int8 = absmax per row, int4 = 4-bit groups of 128 with a zero point, by round-to-nearest
// (rtn), GPTQ or AWQ; GPTQ and AWQ calibrate on the activations of the float32 model running over
// --calibration text, or over its own samples when none is given. With quantized weights it also
// reports how often their greedy choices agree with float32's along float32's greedy text.
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iostream>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "kite/core/io.hpp"
#include "kite/core/parallel.hpp"
#include "kite/model/decoder.hpp"
#include "kite/model/formats/gguf_model.hpp"
#include "kite/model/formats/gguf_tokenizer.hpp"
#include "kite/model/generate.hpp"
#include "kite/model/formats/load.hpp"
#include "kite/text/chat_template.hpp"
#include "kite/text/llama2c_tokenizer.hpp"
#include "kite/text/utf8.hpp"

#include "cli.hpp"

namespace {

namespace fs = std::filesystem;
namespace km = kite::model;
namespace kq = kite::quant;
using kite::index_t;

struct args {
    fs::path model, tokenizer, calibration;
    std::string prompt, system;
    bool chat = false, has_system = false, json = false, int8_activations = false;
    index_t steps = 256;
    float temperature = 1.0f, top_p = 1.0f;
    index_t top_k = 0;
    std::uint64_t seed = 0;
    std::string weights = "f32", cache = "contiguous";
    bool weights_given = false, cache_given = false, calibration_given = false;
    int threads = 0;
};

[[noreturn]] void usage(const std::string& error) { throw kite::cli::usage_error(error); }

/// Whether `path` starts with GGUF's magic.
bool is_gguf(const fs::path& path) {
    std::ifstream f(path, std::ios::binary);
    char magic[4] = {};
    return f.read(magic, 4) && std::string_view(magic, 4) == "GGUF";
}

/// Declares the options on `cli`; the returned function reads them once parsed.
std::function<args()> declare(kite::cli::parser& cli) {
    auto& model = cli.option<fs::path>("--model", "FILE", "a GGUF model, or a llama2.c checkpoint (.bin) with --tokenizer");
    auto& checkpoint = cli.option<fs::path>("--checkpoint", "FILE", "the same as --model (llama2.c checkpoints)");
    auto& tokenizer = cli.option<fs::path>("--tokenizer", "FILE", "llama2.c tokenizer.bin (llama2.c checkpoints only)");
    auto& prompt = cli.option<std::string>("--prompt", "TEXT", "text to continue, or the user's message with --chat");
    const bool& chat = cli.flag("--chat", "apply the model's chat template to --prompt (GGUF)");
    auto& system = cli.option<std::string>("--system", "TEXT", "system message with --chat (default: the template's)");
    auto& steps = cli.option<index_t>("--steps", "N", "tokens to generate at most (the context caps it)", 256)
                      .range(1, index_t{1} << 40);
    auto& temperature = cli.option<float>("--temperature", "T", "0 = greedy", 1.0f).range(0.0f, 100.0f);
    auto& top_k = cli.option<index_t>("--top-k", "K", "keep the K most likely tokens (0 = all)", 0)
                      .range(0, index_t{1} << 40);
    auto& top_p = cli.option<float>("--top-p", "P", "nucleus sampling mass", 1.0f).range(0.0f, 1.0f);
    auto& seed = cli.option<std::uint64_t>("--seed", "S", "sampling seed (default: the time)");
    auto& threads = cli.option<int>("--threads", "N", "threads (0: every core)", 0).range(0, 4096);
    const bool& json = cli.flag("--json", "print one JSON object at the end instead of streaming");
    const bool& a8 = cli.flag("--int8-activations", "round activations to int8 per block of 32 (GGUF; faster)");
    auto& weights = cli.option<std::string>("--weights", "W", "weight format (llama2.c)", "f32")
                        .choices({"f32", "int8", "int4-rtn", "int4-gptq", "int4-awq"});
    auto& cache = cli.option<std::string>("--cache", "C", "KV cache (llama2.c)", "contiguous").choices({"contiguous", "paged"});
    auto& calibration = cli.option<fs::path>("--calibration", "FILE", "text that calibrates GPTQ / AWQ (llama2.c)");
    cli.epilog("Without --model: the llama2.c model $KITE_DATA/aidreams260k/{aidreams260K.bin, tok512.bin}.");
    return [&] {
        args a;
        if (model.given() && checkpoint.given()) usage("give --model or --checkpoint, not both");
        a.model = model.given() ? *model : *checkpoint;
        a.tokenizer = *tokenizer, a.calibration = *calibration, a.prompt = *prompt;
        a.chat = chat, a.system = *system, a.has_system = system.given(), a.json = json, a.int8_activations = a8;
        a.steps = *steps, a.temperature = *temperature, a.top_p = *top_p, a.top_k = *top_k;
        a.seed = seed.given() ? *seed : static_cast<std::uint64_t>(std::time(nullptr));
        a.weights = *weights, a.cache = *cache, a.threads = *threads;
        a.weights_given = weights.given(), a.cache_given = cache.given(), a.calibration_given = calibration.given();
        if (a.has_system && !a.chat) usage("--system needs --chat");
        if (a.model.empty() && !a.tokenizer.empty()) usage("--tokenizer needs --model (a llama2.c checkpoint)");
        if (a.model.empty()) {
            const char* data = std::getenv("KITE_DATA");
            if (!data || !*data) usage("no --model given and KITE_DATA is not set");
            a.model = fs::path(data) / "aidreams260k" / "aidreams260K.bin";
            a.tokenizer = fs::path(data) / "aidreams260k" / "tok512.bin";
        }
        return a;
    };
}

km::generation_options generation(const args& a) {
    km::generation_options g;
    g.max_new_tokens = a.steps;
    g.sampling = {.temperature = a.temperature, .top_k = a.top_k, .top_p = a.top_p};
    g.seed = a.seed;
    return g;
}

/// The end of a run: the speed on stderr, or the JSON object on stdout.
void report(const args& a, const km::generation_result& r, const std::string& text, double ttft_ms,
            const std::string& detail) {
    if (a.json) {
        nlohmann::json j;
        j["text"] = text;
        j["tokens"] = r.tokens;
        j["prompt_tokens"] = r.prompt_tokens;
        j["ttft_ms"] = ttft_ms;
        j["decode_tokens_per_s"] = r.decode_tokens_per_second();
        j["stop"] = km::to_string(r.reason);
        std::cout << j.dump() << "\n";
        return;
    }
    std::cout << "\n" << std::flush;
    std::fprintf(stderr, "kite-generate: %zu tokens (%s), prompt %zu tokens, first token after %.1f ms; decode %.1f tokens/s; %s\n",
                 r.tokens.size(), km::to_string(r.reason), r.prompt_tokens, ttft_ms, r.decode_tokens_per_second(),
                 detail.c_str());
}

/// Milliseconds since `t0`.
double ms_since(std::chrono::steady_clock::time_point t0) {
    return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
}

// ---- GGUF ----------------------------------------------------------------------------------

template <class Model>
int run_gguf(const args& a, Model& model, const km::gguf_tokenizer& tok, const std::string& detail) {
    std::vector<std::int32_t> prompt;
    if (a.chat) {
        std::vector<kite::text::chat_message> chat;
        if (a.has_system) chat.push_back({"system", a.system});
        chat.push_back({"user", a.prompt});
        prompt = tok.apply_chat_template(chat, /*add_generation_prompt=*/true);
    } else {
        prompt = tok.encode(a.prompt, /*add_special=*/true, /*parse_special=*/false);
        if (prompt.empty()) usage("--prompt is empty and the model adds no BOS token: nothing to continue");
    }
    if (prompt.size() >= model.max_positions())
        throw kite::invalid_argument("the prompt has " + std::to_string(prompt.size()) +
                                     " tokens; the model's context is " + std::to_string(model.max_positions()));
    auto g = generation(a);
    g.stop_tokens = tok.end_of_generation_ids();
    if (!a.json && !a.chat) std::cout << a.prompt << std::flush;
    kite::text::utf8::stream_decoder out;
    std::string text;
    double ttft_ms = -1;
    const auto t0 = std::chrono::steady_clock::now();
    const auto r = km::generate(model, prompt, g, [&](std::int32_t t) {
        if (ttft_ms < 0) ttft_ms = ms_since(t0);
        const std::string piece = out.push(tok.token_bytes(t));
        text += piece;
        if (!a.json) std::cout << piece << std::flush;
    });
    const std::string rest = out.finish();
    text += rest;
    if (!a.json) std::cout << rest;
    report(a, r, text, ttft_ms, detail);
    return 0;
}

int gguf_main(const args& a) {
    if (!a.tokenizer.empty()) usage("--tokenizer is for llama2.c checkpoints; a GGUF file carries its own");
    if (a.weights_given || a.cache_given || a.calibration_given)
        usage("--weights, --cache and --calibration are for llama2.c checkpoints; a GGUF file is used as stored");
    const km::gguf_file file(a.model);
    const km::gguf_tokenizer tok(file);
    const std::string detail = "GGUF " + a.model.filename().string() + (a.int8_activations ? ", int8 activations" : "");
    return km::with_gguf_decoder(file, a.int8_activations, [&](auto& model) { return run_gguf(a, model, tok, detail); });
}

// ---- llama2.c ------------------------------------------------------------------------------

using f32_model = km::llama2c_decoder<kq::f32>;

/// Calibration token sequences: --calibration text cut into context-sized pieces, or the
/// float32 model's own samples.
std::vector<std::vector<std::int32_t>> calibration(const args& a, f32_model& f32, const kite::text::llama2c_tokenizer& tok) {
    const index_t ctx = f32.max_positions();
    if (!a.calibration.empty()) {
        const auto ids = tok.encode(kite::io::read_text(a.calibration), true);
        std::vector<std::vector<std::int32_t>> out;
        for (index_t i = 0; i < ids.size(); i += ctx)
            out.emplace_back(ids.begin() + static_cast<std::ptrdiff_t>(i),
                             ids.begin() + static_cast<std::ptrdiff_t>(std::min(ids.size(), i + ctx)));
        return out;
    }
    const std::vector<std::int32_t> bos{kite::text::llama2c_tokenizer::bos_id};
    return km::sample_texts(f32, bos, 4, ctx - 1, 0.8f, 1);
}

template <class Weights, class Cache>
int run(const args& a, const km::checkpoint& ck, const kite::text::llama2c_tokenizer& tok) {
    using model_t = km::llama2c_decoder<Weights, Cache>;
    std::optional<f32_model> f32;  // the float32 model: calibration and the agreement check
    if constexpr (!std::is_same_v<Weights, kq::f32>) f32.emplace(ck);
    km::decoder_options<Weights> opt;
    if constexpr (std::is_same_v<Weights, kq::gptq<4, 128>>) opt.method.act_order = true;
    if constexpr (kq::calibrated_method<Weights> && !kq::data_free_method<Weights>) opt.calibration = calibration(a, *f32, tok);
    model_t model(ck, opt);

    const std::vector<std::int32_t> prompt = tok.encode(a.prompt, true);
    if (prompt.size() >= model.max_positions())
        throw kite::invalid_argument("the prompt has " + std::to_string(prompt.size()) +
                                     " tokens; the model's context is " + std::to_string(model.max_positions()));
    if (!a.json) std::cout << tok.decode(prompt) << std::flush;
    std::int32_t prev = prompt.back();
    std::string text;
    double ttft_ms = -1;
    const auto t0 = std::chrono::steady_clock::now();
    const auto r = km::generate(model, prompt, generation(a), [&](std::int32_t t) {
        if (ttft_ms < 0) ttft_ms = ms_since(t0);
        const std::string piece(tok.decode_piece(prev, t));
        text += piece;
        if (!a.json) std::cout << piece << std::flush;
        prev = t;
    });
    char detail[160];
    std::snprintf(detail, sizeof detail, "weights %s (%.2f MB), cache %s", a.weights.c_str(),
                  static_cast<double>(model.weight_bytes()) / 1e6, a.cache.c_str());
    report(a, r, text, ttft_ms, detail);

    if (f32 && !a.json) {
        // Agreement along float32's greedy text: teacher forcing, so one early difference does
        // not make every later token differ.
        const index_t n = std::min<index_t>(a.steps, model.max_positions() - prompt.size());
        const auto ref = km::generate(*f32, prompt, {.max_new_tokens = n, .ignore_stop_tokens = true});
        std::vector<std::int32_t> seq = prompt;
        seq.insert(seq.end(), ref.tokens.begin(), ref.tokens.end());
        const auto logits = model.forward(seq);
        index_t same = 0, prefix = 0;
        bool diverged = false;
        for (index_t i = 0; i < ref.tokens.size(); ++i) {
            const bool eq = static_cast<std::int32_t>(km::argmax(logits.row(prompt.size() - 1 + i))) == ref.tokens[i];
            same += eq;
            diverged |= !eq;
            prefix += !diverged;
        }
        std::fprintf(stderr, "kite-generate: greedy agreement of %s with float32: %.1f%% of %zu tokens (teacher-forced); "
                             "identical for the first %zu\n",
                     a.weights.c_str(), 100.0 * static_cast<double>(same) / static_cast<double>(ref.tokens.size()),
                     ref.tokens.size(), prefix);
    }
    return 0;
}

template <class Weights>
int run_cache(const args& a, const km::checkpoint& ck, const kite::text::llama2c_tokenizer& tok) {
    if (a.cache == "paged") return run<Weights, kite::kv::paged<16>>(a, ck, tok);
    return run<Weights, kite::kv::contiguous<float>>(a, ck, tok);
}

int llama2c_main(const args& a) {
    if (a.tokenizer.empty()) usage("a llama2.c checkpoint needs --tokenizer (its tokenizer.bin)");
    if (a.chat) usage("--chat needs a GGUF model (a llama2.c checkpoint has no chat template)");
    if (a.int8_activations) usage("--int8-activations is for GGUF models; use --weights with a llama2.c checkpoint");
    const km::checkpoint ck = km::read_llama2c(a.model);
    const kite::text::llama2c_tokenizer tok(a.tokenizer, ck.config.vocab_size);
    if (a.weights == "int8") return run_cache<kq::absmax<8>>(a, ck, tok);
    if (a.weights == "int4-rtn") return run_cache<kq::zero_point<4, 128>>(a, ck, tok);
    if (a.weights == "int4-gptq") return run_cache<kq::gptq<4, 128>>(a, ck, tok);
    if (a.weights == "int4-awq") return run_cache<kq::awq<4, 128>>(a, ck, tok);
    return run_cache<kq::f32>(a, ck, tok);
}

}  // namespace

int main(int argc, char** argv) {
    kite::cli::parser cli("kite-generate", "Text generation with a GGUF model, or a llama2.c checkpoint and its tokenizer.bin.");
    const auto args_of = declare(cli);
    return kite::cli::run(cli, argc, argv, [&]() -> int {
        const args a = args_of();
        if (a.threads > 0) kite::set_num_threads(a.threads);
        if (!fs::exists(a.model)) throw kite::not_found_error("--model: " + a.model.string() + " does not exist");
        return is_gguf(a.model) ? gguf_main(a) : llama2c_main(a);
    });
}
