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

[[noreturn]] void usage(const std::string& error) {
    std::cerr << "kite-generate: " << error << "\n"
              << "usage: kite-generate [--checkpoint FILE] [--tokenizer FILE] [--prompt TEXT] [--steps N]\n"
                 "                     [--temperature T] [--top-k K] [--top-p P] [--seed S]\n"
                 "                     [--weights f32|int8|int4-rtn|int4-gptq|int4-awq] [--cache contiguous|paged]\n"
                 "                     [--threads N] [--calibration FILE]\n"
                 "Without --checkpoint and --tokenizer: KITE_DATA/aidreams260k/{aidreams260K.bin, tok512.bin}.\n";
    std::exit(2);
}

template <class T>
T number(std::string_view flag, const char* text) {
    try {
        std::size_t used = 0;
        const std::string s(text);
        T v{};
        if constexpr (std::is_floating_point_v<T>) {
            v = static_cast<T>(std::stod(s, &used));
        } else {
            if (!s.empty() && s[0] == '-') throw std::invalid_argument("negative");
            v = static_cast<T>(std::stoull(s, &used));
        }
        if (used != s.size()) throw std::invalid_argument("trailing characters");
        return v;
    } catch (const std::exception&) {
        usage(std::string(flag) + " expects a " + (std::is_floating_point_v<T> ? "number" : "non-negative integer") +
              ", got '" + text + "'");
    }
}

args parse(int argc, char** argv) {
    args a;
    bool seeded = false;
    for (int i = 1; i < argc; ++i) {
        const std::string_view f = argv[i];
        if (f == "-h" || f == "--help") usage("help");
        if (i + 1 >= argc) usage(std::string(f) + " needs a value");
        const char* v = argv[++i];
        if (f == "--checkpoint") a.checkpoint = v;
        else if (f == "--tokenizer") a.tokenizer = v;
        else if (f == "--prompt") a.prompt = v;
        else if (f == "--steps") a.steps = number<index_t>(f, v);
        else if (f == "--temperature") a.temperature = number<float>(f, v);
        else if (f == "--top-k") a.top_k = number<index_t>(f, v);
        else if (f == "--top-p") a.top_p = number<float>(f, v);
        else if (f == "--seed") { a.seed = number<std::uint64_t>(f, v); seeded = true; }
        else if (f == "--weights") a.weights = v;
        else if (f == "--cache") a.cache = v;
        else if (f == "--threads") a.threads = static_cast<int>(number<index_t>(f, v));
        else if (f == "--calibration") a.calibration = v;
        else usage("unknown option " + std::string(f));
    }
    if (!seeded) a.seed = static_cast<std::uint64_t>(std::time(nullptr));
    if (a.checkpoint.empty() != a.tokenizer.empty()) usage("give both --checkpoint and --tokenizer, or neither");
    if (a.checkpoint.empty()) {
        const char* data = std::getenv("KITE_DATA");
        if (!data || !*data) usage("no --checkpoint given and KITE_DATA is not set");
        a.checkpoint = std::filesystem::path(data) / "aidreams260k" / "aidreams260K.bin";
        a.tokenizer = std::filesystem::path(data) / "aidreams260k" / "tok512.bin";
    }
    if (a.cache != "contiguous" && a.cache != "paged") usage("--cache must be contiguous or paged, got '" + a.cache + "'");
    if (a.steps == 0) usage("--steps must be at least 1");
    return a;
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
    const args a = parse(argc, argv);
    try {
        if (a.threads > 0) kite::set_num_threads(a.threads);
        const km::checkpoint ck = km::read_llama2c(a.checkpoint);
        const kite::text::llama2c_tokenizer tok(a.tokenizer, ck.config.vocab_size);
        if (a.weights == "f32") return run_cache<kq::f32>(a, ck, tok);
        if (a.weights == "int8") return run_cache<kq::absmax<8>>(a, ck, tok);
        if (a.weights == "int4-rtn") return run_cache<kq::zero_point<4, 128>>(a, ck, tok);
        if (a.weights == "int4-gptq") return run_cache<kq::gptq<4, 128>>(a, ck, tok);
        if (a.weights == "int4-awq") return run_cache<kq::awq<4, 128>>(a, ck, tok);
        usage("--weights must be f32, int8, int4-rtn, int4-gptq or int4-awq, got '" + a.weights + "'");
    } catch (const kite::error& e) {
        std::cerr << "kite-generate: " << e.what() << "\n";
        return 1;
    }
}
