// kite-generate: text generation with a llama2.c checkpoint and its tokenizer.bin.
//
//   kite-generate [--checkpoint FILE] [--tokenizer FILE] [--prompt TEXT] [--steps N]
//                 [--temperature T] [--top-k K] [--top-p P] [--seed S]
//                 [--weights f32|int8|int4-rtn|int4-gptq|int4-awq] [--cache contiguous|paged]
//                 [--threads N] [--calibration FILE]
//
// Prints the prompt and the generated text on stdout as the tokens come, and the speed on
// stderr. Without --checkpoint/--tokenizer it runs the aidreams260K model from the data folder
// (KITE_DATA/aidreams260k). --steps is the number of tokens to generate (the model's context
// caps it); temperature 0 is greedy. Quantized weights are made from the float32 checkpoint at
// load: int8 = absmax per row, int4 = 4-bit groups of 128 with a zero point, by round-to-nearest
// (rtn), GPTQ or AWQ; GPTQ and AWQ calibrate on the activations of the float32 model running over
// --calibration text, or over its own samples when none is given. With quantized weights it also
// reports how often their greedy choices agree with float32's along float32's greedy text.
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <filesystem>
#include <functional>
#include <iostream>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "kite/core/io.hpp"
#include "kite/core/parallel.hpp"
#include "kite/model/decoder.hpp"
#include "kite/model/generate.hpp"
#include "kite/model/load.hpp"
#include "kite/text/llama2c_tokenizer.hpp"

#include "cli.hpp"

namespace {

namespace km = kite::model;
namespace kq = kite::quant;
using kite::index_t;

struct args {
    std::filesystem::path checkpoint, tokenizer, calibration;
    std::string prompt;
    index_t steps = 256;
    float temperature = 1.0f, top_p = 1.0f;
    index_t top_k = 0;
    std::uint64_t seed = 0;
    std::string weights = "f32", cache = "contiguous";
    int threads = 0;
};

[[noreturn]] void usage(const std::string& error) { throw kite::cli::usage_error(error); }

/// Declares the options on `cli`; the returned function reads them once parsed.
std::function<args()> declare(kite::cli::parser& cli) {
    auto& checkpoint = cli.option<std::filesystem::path>("--checkpoint", "FILE", "llama2.c checkpoint (.bin)");
    auto& tokenizer = cli.option<std::filesystem::path>("--tokenizer", "FILE", "llama2.c tokenizer.bin");
    auto& prompt = cli.option<std::string>("--prompt", "TEXT", "text to continue");
    auto& steps = cli.option<index_t>("--steps", "N", "tokens to generate (the context caps it)", 256)
                      .range(1, index_t{1} << 40);
    auto& temperature = cli.option<float>("--temperature", "T", "0 = greedy", 1.0f).range(0.0f, 100.0f);
    auto& top_k = cli.option<index_t>("--top-k", "K", "keep the K most likely tokens (0 = all)", 0)
                      .range(0, index_t{1} << 40);
    auto& top_p = cli.option<float>("--top-p", "P", "nucleus sampling mass", 1.0f).range(0.0f, 1.0f);
    auto& seed = cli.option<std::uint64_t>("--seed", "S", "sampling seed (default: the time)");
    auto& weights = cli.option<std::string>("--weights", "W", "weight format", "f32")
                        .choices({"f32", "int8", "int4-rtn", "int4-gptq", "int4-awq"});
    auto& cache = cli.option<std::string>("--cache", "C", "KV cache", "contiguous").choices({"contiguous", "paged"});
    auto& threads = cli.option<int>("--threads", "N", "threads (0: every core)", 0).range(0, 4096);
    auto& calibration = cli.option<std::filesystem::path>("--calibration", "FILE", "text that calibrates GPTQ / AWQ");
    cli.epilog("Without --checkpoint and --tokenizer: $KITE_DATA/aidreams260k/{aidreams260K.bin, tok512.bin}.");
    return [&] {
        args a;
        a.checkpoint = *checkpoint, a.tokenizer = *tokenizer, a.calibration = *calibration, a.prompt = *prompt;
        a.steps = *steps, a.temperature = *temperature, a.top_p = *top_p, a.top_k = *top_k;
        a.seed = seed.given() ? *seed : static_cast<std::uint64_t>(std::time(nullptr));
        a.weights = *weights, a.cache = *cache, a.threads = *threads;
        if (a.checkpoint.empty() != a.tokenizer.empty()) usage("give both --checkpoint and --tokenizer, or neither");
        if (a.checkpoint.empty()) {
            const char* data = std::getenv("KITE_DATA");
            if (!data || !*data) usage("no --checkpoint given and KITE_DATA is not set");
            a.checkpoint = std::filesystem::path(data) / "aidreams260k" / "aidreams260K.bin";
            a.tokenizer = std::filesystem::path(data) / "aidreams260k" / "tok512.bin";
        }
        return a;
    };
}

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
    if (prompt.size() >= model.max_positions()) {
        std::cerr << "kite-generate: the prompt has " << prompt.size() << " tokens; the model's context is "
                  << model.max_positions() << "\n";
        return 2;
    }
    km::generation_options g;
    g.max_new_tokens = a.steps;
    g.sampling = {.temperature = a.temperature, .top_k = a.top_k, .top_p = a.top_p};
    g.seed = a.seed;
    std::cout << tok.decode(prompt) << std::flush;
    std::int32_t prev = prompt.back();
    const auto r = km::generate(model, prompt, g, [&](std::int32_t t) {
        std::cout << tok.decode_piece(prev, t) << std::flush;
        prev = t;
    });
    std::cout << "\n";
    std::fprintf(stderr, "kite-generate: %zu tokens (%s), prompt %zu tokens in %.1f ms; decode %.1f tokens/s; "
                         "weights %s (%.2f MB), cache %s\n",
                 r.tokens.size(), km::to_string(r.reason), r.prompt_tokens, 1e3 * r.prefill_seconds,
                 r.decode_tokens_per_second(), a.weights.c_str(), static_cast<double>(model.weight_bytes()) / 1e6,
                 a.cache.c_str());

    if (f32) {
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

}  // namespace

int main(int argc, char** argv) {
    kite::cli::parser cli("kite-generate", "Text generation with a llama2.c checkpoint and its tokenizer.bin.");
    const auto args_of = declare(cli);
    return kite::cli::run(cli, argc, argv, [&]() -> int {
        const args a = args_of();
        if (a.threads > 0) kite::set_num_threads(a.threads);
        const km::checkpoint ck = km::read_llama2c(a.checkpoint);
        const kite::text::llama2c_tokenizer tok(a.tokenizer, ck.config.vocab_size);
        if (a.weights == "int8") return run_cache<kq::absmax<8>>(a, ck, tok);
        if (a.weights == "int4-rtn") return run_cache<kq::zero_point<4, 128>>(a, ck, tok);
        if (a.weights == "int4-gptq") return run_cache<kq::gptq<4, 128>>(a, ck, tok);
        if (a.weights == "int4-awq") return run_cache<kq::awq<4, 128>>(a, ck, tok);
        return run_cache<kq::f32>(a, ck, tok);
    });
}
