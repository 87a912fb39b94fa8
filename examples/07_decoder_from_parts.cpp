// 07 — a decoder from parts.
//
// kite assembles a decoder at compile time from one policy per part: head layout, position
// encoding, attention kernel, KV cache, norm, MLP and weight format. This program loads the four
// tiny random-weight Hugging Face models kite's tests use (Llama, Qwen2, BLOOM, GPT-2; their
// config.json and model.safetensors are in tests/fixtures/model/hf) into the decoder each family
// needs, generates from them (noise: the weights are random; the logits equal transformers'),
// swaps parts (paged cache, int8 weights), samples three continuations that share a prompt's
// cache blocks, and shows what happens when the parts do not fit the model.
//
//   kite-07-decoder [FIXTURES_DIR]      (default: tests/fixtures/model/hf, run from the source tree)
#include <cstdio>
#include <filesystem>
#include <string>
#include <vector>

#include "kite/model/decoder.hpp"
#include "kite/model/generate.hpp"
#include "kite/model/formats/load.hpp"

#include "cli.hpp"

namespace km = kite::model;
namespace kq = kite::quant;
using kite::index_t;

namespace {

std::string join(const std::vector<std::int32_t>& t) {
    std::string s;
    for (const auto x : t) {
        if (!s.empty()) s += ' ';
        s += std::to_string(x);
    }
    return s;
}

template <class Model>
std::vector<std::int32_t> show(const char* family, const char* parts, const km::checkpoint& ck) {
    Model model(ck);
    const auto& c = model.config();
    const std::vector<std::int32_t> prompt{1, 17, 42, 5, 88};
    const auto r = km::generate(model, prompt, {.max_new_tokens = 8, .ignore_stop_tokens = true});
    std::printf("%-6s %-62s %zu layers, %zu/%zu heads, %5.1f KB of weights, %4zu B of K/V per token\n   greedy after [%s]: %s\n",
                family, parts, c.num_layers, c.num_heads, c.num_kv_heads, static_cast<double>(model.weight_bytes()) / 1e3,
                model.cache_shape().layers * 2 * c.kv_dim() * sizeof(float), join(prompt).c_str(), join(r.tokens).c_str());
    return r.tokens;
}

}  // namespace

int main(int argc, char** argv) {
    kite::cli::parser cli("kite-07-decoder", "Decoders assembled from policies, run on tiny Hugging Face models.");
    auto& dir_arg = cli.positional<std::filesystem::path>("MODELS_DIR", "folder with llama/, qwen2/, bloom/, gpt2/",
                                                          std::filesystem::path("tests/fixtures/model/hf"));
    return kite::cli::run(cli, argc, argv, [&]() -> int {
        const std::filesystem::path dir = *dir_arg;
        try {
            const auto llama = km::read_checkpoint(dir / "llama");
            std::printf("1. One decoder type per family, checked against each config.json:\n");
            const auto greedy = show<km::llama_decoder<>>("llama", "gqa, rope<rotate_half>, flash<64,64>, contiguous, rms, swiglu", llama);
            show<km::llama_decoder<>>("qwen2", "the same parts (q/k/v biases are runtime)", km::read_checkpoint(dir / "qwen2"));
            show<km::bloom_decoder<>>("bloom", "mha, alibi, flash<64,64>, contiguous, layer, gelu_tanh", km::read_checkpoint(dir / "bloom"));
            show<km::gpt2_decoder<>>("gpt2", "mha, learned, flash<64,64>, contiguous, layer, gelu_tanh", km::read_checkpoint(dir / "gpt2"));

            std::printf("\n2. Swapping parts of the Llama decoder:\n");
            const auto paged = show<km::llama_decoder<kq::f32, kite::kv::paged<4>>>("llama", "... paged<4> cache", llama);
            show<km::llama_decoder<kq::absmax<8>>>("llama", "... absmax<8> weights (int8, quantized at load)", llama);
            std::printf("   paged cache tokens %s the contiguous cache's\n", paged == greedy ? "equal" : "DIFFER FROM");

            std::printf("\n3. Three samples from one prompt, sharing its cache blocks (paged<4>):\n");
            km::llama_decoder<kq::f32, kite::kv::paged<4>> model(llama);
            auto cache = model.make_cache(32, 3);
            const auto root = *cache.add_sequence();
            const std::vector<std::int32_t> prompt{1, 17, 42, 5, 88, 23, 60, 9};
            kite::matrix<float> logits(1, model.vocab_size());
            // The prompt but its last token goes in once; each sample forks it and goes on from there.
            model.prefill(cache, root, std::span<const std::int32_t>(prompt).first(prompt.size() - 1), logits.view());
            for (std::uint64_t seed = 1; seed <= 3; ++seed) {
                const auto child = seed == 3 ? root : *cache.fork(root);
                const auto r = km::generate(model, cache, child, std::vector<std::int32_t>{prompt.back()},
                                            {.max_new_tokens = 6, .sampling = {.temperature = 1.0f}, .seed = seed, .ignore_stop_tokens = true});
                std::printf("   sample %llu: %s\n", static_cast<unsigned long long>(seed), join(r.tokens).c_str());
            }
            const auto st = cache.stats();
            std::printf("   %zu tokens live in %zu blocks of 4 (%zu copied on write)\n", st.tokens_logical, st.blocks_in_use,
                        cache.copies_on_write());

            std::printf("\n4. Parts that do not fit the model are refused when it loads:\n");
            try {
                km::llama_decoder<> wrong(km::read_checkpoint(dir / "bloom"));
            } catch (const kite::config_error& e) {
                std::printf("   %s\n", e.what());
            }
        } catch (const kite::error& e) {
            std::fprintf(stderr, "kite-07-decoder: %s\n", e.what());
            return 1;
        }
        return 0;
    });
}
