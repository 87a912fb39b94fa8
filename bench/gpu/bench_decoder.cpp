// kite::cuda::decoder end to end on a random model with SmolLM2-135M-Instruct's shape (30 layers,
// hidden 576, 9 heads over 3 kv heads of 64, intermediate 1536, vocab 49152, tied embeddings,
// RoPE theta 100000, rotate_half), bf16 KV cache, with bf16 and with int8_rows weights:
//   prefill   one 512-token prompt (one chunk: flash attention), wall time of prefill() including
//             the upload of the ids and the copy of the last logits to the host; median of 5
//   decode    64 greedy steps at batch 1 and 8 after a 128-token prompt per sequence; wall time of
//             each decode() call (every step copies batch x 49152 logits to the host, as a user
//             gets them); the median step, and the total / steps
// Times are host wall clocks (std::chrono::steady_clock): every decoder call returns after its
// logits reached the host, so they measure what a caller waits for. ms in the JSON line is per
// prefill or per decode step; tokens/s goes into params and onto stderr.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <span>
#include <string>
#include <vector>

#include "gpu_bench.hpp"
#include "kite/cuda/decoder.hpp"

namespace kite::bench::gpu {

namespace {

namespace km = kite::model;

// xorshift64*: cheap uniform floats in [-a, a) (~134M weights to draw).
struct cheap_rng {
    std::uint64_t s;
    float uniform(float a) {
        s ^= s >> 12;
        s ^= s << 25;
        s ^= s >> 27;
        const std::uint64_t r = s * 0x2545F4914F6CDD1DULL;
        return (static_cast<float>(r >> 40) * (1.0f / 16777216.0f) * 2.0f - 1.0f) * a;
    }
};

kite::matrix<float> random_matrix(index_t rows, index_t cols, cheap_rng& g, float sd) {
    kite::matrix<float> m(rows, cols);
    const float a = sd * std::sqrt(3.0f);  // uniform with standard deviation sd
    for (float& x : m.flat()) x = g.uniform(a);
    return m;
}

km::checkpoint smollm2_shape() {
    constexpr int hidden = 576, heads = 9, kv_heads = 3, head_dim = 64, inter = 1536, vocab = 49152, layers = 30;
    cheap_rng g{0x9E3779B97F4A7C15ULL};
    km::checkpoint ck;
    km::model_config& c = ck.config;
    c.arch = km::architecture::llama;
    c.model_type = "llama";
    c.vocab_size = vocab;
    c.hidden_size = hidden;
    c.intermediate_size = inter;
    c.num_layers = layers;
    c.num_heads = heads;
    c.num_kv_heads = kv_heads;
    c.head_dim = head_dim;
    c.max_position_embeddings = 8192;
    c.hidden_act = km::activation::silu;
    c.mlp = km::mlp_type::gated;
    c.norm = km::norm_type::rms;
    c.norm_eps = 1e-5;
    c.position = km::position_type::rope;
    c.rope_interleaved = false;
    c.rope_theta = 100000.0;
    c.tie_word_embeddings = true;
    const index_t h = hidden, qkv = c.q_dim() + 2 * c.kv_dim();
    const float in_h = 1.0f / std::sqrt(static_cast<float>(hidden));
    km::model_tensors& t = ck.tensors;
    t.embedding = random_matrix(vocab, h, g, 1.0f);
    for (int l = 0; l < layers; ++l) {
        km::block_tensors b;
        b.attn_norm_weight.assign(hidden, 1.0f);
        b.qkv = random_matrix(qkv, h, g, in_h);
        b.o = random_matrix(h, c.q_dim(), g, 1.0f / std::sqrt(static_cast<float>(c.q_dim())));
        b.mlp_norm_weight.assign(hidden, 1.0f);
        b.up = random_matrix(2 * static_cast<index_t>(inter), h, g, in_h);
        b.down = random_matrix(h, inter, g, 1.0f / std::sqrt(static_cast<float>(inter)));
        t.blocks.push_back(std::move(b));
    }
    t.final_norm_weight.assign(hidden, 1.0f);
    ck.source = "random SmolLM2-135M shape";
    return ck;
}

using gpu_llama = kite::cuda::decoder<kite::attn::gqa, kite::pos::rope<kite::pos::rotate_half>, kite::norm::rms,
                                      kite::mlp::swiglu>;

double now_ms() {
    return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

std::vector<std::int32_t> tokens(int n, std::uint32_t seed, int vocab) {
    std::vector<std::int32_t> v(static_cast<std::size_t>(n));
    std::uint32_t s = seed * 2654435761u + 1u;
    for (auto& x : v) {
        s = s * 1664525u + 1013904223u;
        x = static_cast<std::int32_t>((s >> 8) % static_cast<std::uint32_t>(vocab));
    }
    return v;
}

double median(std::vector<double> v) {
    std::sort(v.begin(), v.end());
    return v[v.size() / 2];
}

void run_format(const km::checkpoint& ck, kite::cuda::weight_format wf) {
    const std::string wname = kite::cuda::weight_format_name(wf);
    const double t0 = now_ms();
    gpu_llama model(ck, {.weights = wf,
                         .kv = kite::cuda::dtype::bf16,
                         .max_tokens = 1024,
                         .max_sequences = 8,
                         .prefill_chunk = 512,
                         .paged_decode_kernel = true,
                         .flash_prefill = true});
    kite::cuda::synchronize();
    std::fprintf(stderr, "decoder bench: %s weights quantized and uploaded in %.1f s (flash prefill: %s)\n",
                 wname.c_str(), (now_ms() - t0) / 1e3, model.uses_flash_prefill() ? "yes" : "no");
    const int vocab = static_cast<int>(model.vocab_size());
    const std::string base = "smollm2-135m shape, 30 layers, " + wname + " weights, bf16 kv";

    // (a) prefill of 512 tokens: one warm-up, then the median of 5 fresh sequences.
    {
        constexpr int n = 512;
        const auto prompt = tokens(n, 1, vocab);
        std::vector<float> logits(static_cast<std::size_t>(vocab));
        std::vector<double> ms;
        for (int rep = 0; rep < 6; ++rep) {
            const kite::kv::seq_id s = model.add_sequence();
            const double a = now_ms();
            if (model.prefill(s, prompt, logits) != kite::kv::status::ok)
                std::fprintf(stderr, "decoder bench: prefill out of blocks\n");
            const double b = now_ms();
            if (rep > 0) ms.push_back(b - a);
            model.release(s);
        }
        const double m = median(ms);
        const double tps = n / (m * 1e-3);
        char params[256];
        std::snprintf(params, sizeof params, "%s, prefill %d tokens, %.0f tokens/s", base.c_str(), n, tps);
        report("decoder", params, m, 0, 0);
        std::fprintf(stderr, "decoder bench: %s prefill %d tokens: %.2f ms, %.0f tokens/s\n", wname.c_str(), n, m, tps);
    }

    // (b) greedy decode at batch 1 and 8: 64 steps after a 128-token prompt per sequence.
    for (const int batch : {1, 8}) {
        constexpr int prompt_len = 128, steps = 64;
        std::vector<kite::kv::seq_id> seqs;
        std::vector<float> logits(static_cast<std::size_t>(batch) * vocab);
        std::vector<std::int32_t> next(static_cast<std::size_t>(batch));
        std::vector<float> one(static_cast<std::size_t>(vocab));
        for (int b = 0; b < batch; ++b) {
            seqs.push_back(model.add_sequence());
            const auto prompt = tokens(prompt_len, 100u + static_cast<std::uint32_t>(b), vocab);
            if (model.prefill(seqs.back(), prompt, one) != kite::kv::status::ok)
                std::fprintf(stderr, "decoder bench: prefill out of blocks\n");
            next[static_cast<std::size_t>(b)] =
                static_cast<std::int32_t>(std::max_element(one.begin(), one.end()) - one.begin());
        }
        std::vector<double> ms;
        const double start = now_ms();
        for (int i = 0; i < steps; ++i) {
            const double a = now_ms();
            if (model.decode(seqs, next, logits) != kite::kv::status::ok)
                std::fprintf(stderr, "decoder bench: decode out of blocks\n");
            ms.push_back(now_ms() - a);
            for (int b = 0; b < batch; ++b) {  // greedy: the caller's argmax (outside the step's time)
                const auto row = std::span<const float>(logits).subspan(static_cast<std::size_t>(b) * vocab,
                                                                         static_cast<std::size_t>(vocab));
                next[static_cast<std::size_t>(b)] =
                    static_cast<std::int32_t>(std::max_element(row.begin(), row.end()) - row.begin());
            }
        }
        const double total = now_ms() - start;
        const double m = median(ms);
        const double tps = batch / (m * 1e-3);
        const double tps_total = static_cast<double>(batch) * steps / (total * 1e-3);
        char params[320];
        std::snprintf(params, sizeof params,
                      "%s, decode batch %d after %d-token prompts, %d steps, %.0f tokens/s (median step), "
                      "%.0f tokens/s (total incl. argmax)",
                      base.c_str(), batch, prompt_len, steps, tps, tps_total);
        report("decoder", params, m, 0, 0);
        std::fprintf(stderr,
                     "decoder bench: %s decode batch %d: %.3f ms/step median, %.0f tokens/s; %.1f ms for %d steps "
                     "(with the host argmax), %.0f tokens/s\n",
                     wname.c_str(), batch, m, tps, total, steps, tps_total);
        for (const auto s : seqs) model.release(s);
    }
}

}  // namespace

void bench_decoder() {
    const double t0 = now_ms();
    const km::checkpoint ck = smollm2_shape();
    std::fprintf(stderr, "decoder bench: random model built on the host in %.1f s\n", (now_ms() - t0) / 1e3);
    run_format(ck, kite::cuda::weight_format::bf16);
    run_format(ck, kite::cuda::weight_format::int8_rows);
    std::fprintf(stderr, "decoder bench: %.1f s in all\n", (now_ms() - t0) / 1e3);
}

}  // namespace kite::bench::gpu
