// kite-12-gpu-generate: greedy generation from a GGUF model on the GPU. kite::cuda::decoder takes
// the same policy types as kite's CPU decoder (RoPE convention, head layout, RMSNorm, SwiGLU)
// and the model as the file stores it (Q4_0 / Q4_1 / Q8_0 blocks uploaded as they are); the
// policies select GPU kernels instead of CPU ones.
//
//   kite-12-gpu-generate --model models/SmolLM2-135M-Instruct.Q4_1.gguf [--prompt TEXT] [--tokens N]
//                        [--bf16-cache] [--compare-cpu]
//
// The prompt goes through the model's chat template; the answer is printed with its decode
// speed. --compare-cpu generates on the CPU too (kite::model::gguf_llama_decoder) and says
// whether the greedy tokens match. Without a CUDA device it says so and exits 1.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <iostream>
#include <string>
#include <vector>

#include "kite/cuda/decoder.hpp"
#include "kite/model/formats/gguf_model.hpp"
#include "kite/model/formats/gguf_tokenizer.hpp"
#include "kite/model/generate.hpp"
#include "kite/text/utf8.hpp"

#include "cli.hpp"

namespace {

namespace km = kite::model;
namespace kc = kite::cuda;
using kite::index_t;

// A llama file rotates interleaved pairs, a qwen2 file rotate_half: the same choice as the CPU's
// gguf_llama_decoder / gguf_qwen2_decoder, and the constructor checks it against the file.
template <class Convention>
using gpu_decoder = kc::decoder<kite::attn::gqa, kite::pos::rope<Convention>, kite::norm::rms, kite::mlp::swiglu>;

struct result {
    std::vector<std::int32_t> tokens;  // the stop token excluded
    index_t decode_steps = 0;
    double decode_seconds = 0;
};

template <class Convention>
result generate_gpu(const km::gguf_model& m, const std::vector<std::int32_t>& prompt, index_t n,
                    const std::vector<std::int32_t>& stop, bool bf16_cache) {
    gpu_decoder<Convention> gpu(m, {.weights = kc::weight_format::f32,
                                    .kv = bf16_cache ? kc::dtype::bf16 : kc::dtype::f32,
                                    .max_tokens = static_cast<index_t>(prompt.size()) + n});
    const kite::kv::seq_id seq[1] = {gpu.add_sequence()};
    std::vector<float> logits(gpu.vocab_size());
    if (gpu.prefill(seq[0], prompt, logits) != kite::kv::status::ok)
        throw kite::invalid_argument("no room for the prompt");
    result r;
    const auto t0 = std::chrono::steady_clock::now();
    for (index_t i = 0; i < n; ++i) {
        const std::int32_t next[1] = {static_cast<std::int32_t>(std::max_element(logits.begin(), logits.end()) -
                                                                logits.begin())};  // greedy
        if (std::find(stop.begin(), stop.end(), next[0]) != stop.end()) break;
        r.tokens.push_back(next[0]);
        if (i + 1 == n) break;
        if (gpu.decode(seq, next, logits) != kite::kv::status::ok)
            throw kite::invalid_argument("no room in the KV cache");
        ++r.decode_steps;
    }
    r.decode_seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    return r;
}

}  // namespace

int main(int argc, char** argv) {
    kite::cli::parser cli("kite-12-gpu-generate",
                          "Greedy generation from a GGUF model on the GPU (kite::cuda::decoder).");
    auto& model = cli.option<std::filesystem::path>("--model", "FILE", "a GGUF model (llama or qwen2)").required();
    auto& prompt = cli.option<std::string>("--prompt", "TEXT", "the user message",
                                           std::string("What is the capital of France?"));
    auto& tokens = cli.option<index_t>("--tokens", "N", "tokens to generate at most", 64).range(1, 1 << 20);
    const bool& bf16_cache = cli.flag("--bf16-cache", "keep the KV cache in bf16 (flash prefill)");
    const bool& compare = cli.flag("--compare-cpu", "generate on the CPU too and compare the tokens");
    return kite::cli::run(cli, argc, argv, [&]() -> int {
        if (!kc::device_present()) {
            std::fprintf(stderr, "kite-12-gpu-generate: no CUDA device found; this example needs an NVIDIA GPU\n");
            return 1;
        }
        const km::gguf_file file(*model);
        const km::gguf_tokenizer tok(file);
        const km::gguf_model m = km::read_gguf(file);
        const std::vector<kite::text::chat_message> chat{{"user", *prompt}};
        const std::vector<std::int32_t> ids = tok.apply_chat_template(chat, /*add_generation_prompt=*/true);
        const std::vector<std::int32_t>& stop = tok.end_of_generation_ids();
        const result r = m.config.rope_interleaved
                             ? generate_gpu<kite::pos::interleaved>(m, ids, *tokens, stop, bf16_cache)
                             : generate_gpu<kite::pos::rotate_half>(m, ids, *tokens, stop, bf16_cache);
        kite::text::utf8::stream_decoder text;
        for (const std::int32_t t : r.tokens) std::cout << text.push(tok.token_bytes(t));
        std::cout << text.finish() << "\n";
        std::printf("GPU: %zu prompt tokens, %zu generated, %.1f tokens/s\n", ids.size(), r.tokens.size(),
                    r.decode_seconds > 0 ? static_cast<double>(r.decode_steps) / r.decode_seconds : 0.0);
        if (!compare) return 0;
        km::generation_options g;
        g.max_new_tokens = *tokens;
        g.stop_tokens = stop;
        const auto cpu = km::with_gguf_decoder(file, false, [&](auto& d) { return km::generate(d, ids, g); });
        std::size_t same = 0;
        while (same < std::min(cpu.tokens.size(), r.tokens.size()) && cpu.tokens[same] == r.tokens[same]) ++same;
        const bool match = cpu.tokens == r.tokens;
        std::printf("CPU (%.1f tokens/s): %s", cpu.decode_tokens_per_second(), match ? "the same tokens\n" : "");
        if (!match) std::printf("the first %zu of %zu tokens agree\n", same, cpu.tokens.size());
        return 0;
    });
}
