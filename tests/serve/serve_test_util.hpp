#pragma once
// Tiny GGUF models for the serving tests: the committed tiny llama / qwen2 fixtures (every
// native ggml type; row-independent kernels), optionally with a small random vocabulary (for
// the chi-square tests of speculative sampling), as decoders with the batch-invariant
// attention kernel over a paged cache.

#include <cstring>
#include <random>
#include <string>

#include "kite/attn/invariant.hpp"
#include "kite/kv/paged.hpp"
#include "kite/model/formats/gguf_model.hpp"
#include "kite_test.hpp"

namespace kite::test {

using serve_llama = kite::model::gguf_llama_decoder<kite::kv::paged<4>, kite::attn::invariant>;
using serve_qwen2 = kite::model::gguf_qwen2_decoder<kite::kv::paged<4>, kite::attn::invariant>;

inline kite::model::gguf_model tiny_gguf(const std::string& name) {
    const kite::model::gguf_file f(fixture("model/gguf/" + name + ".gguf"));
    return kite::model::read_gguf(f);
}

// F32 ggml weights [rows][cols] of N(0, scale^2) values.
inline kite::quant::ggml_weights random_f32(index_t rows, index_t cols, float scale, std::uint64_t seed) {
    kite::aligned_buffer<std::byte> buf(rows * cols * sizeof(float));
    std::mt19937_64 rng(seed);
    std::normal_distribution<float> nd(0.0f, scale);
    for (index_t i = 0; i < rows * cols; ++i) {
        const float v = nd(rng);
        std::memcpy(buf.data() + i * sizeof(float), &v, sizeof(float));
    }
    return kite::quant::ggml_weights::owning(kite::quant::ggml::type::f32, std::move(buf), rows, cols);
}

// The model with a random vocabulary of `vocab` tokens (embedding and classifier) and no
// end-of-generation ids: every draw is a real choice among few tokens.
inline kite::model::gguf_model with_small_vocab(kite::model::gguf_model m, index_t vocab, std::uint64_t seed) {
    const index_t hidden = m.config.hidden_size;
    m.config.vocab_size = vocab;
    m.config.eos_token_ids.clear();
    m.config.bos_token_id.reset();
    m.config.pad_token_id.reset();
    m.embedding = random_f32(vocab, hidden, 1.0f, seed);
    m.lm_head = random_f32(vocab, hidden, 0.02f, seed + 1);
    m.config.tie_word_embeddings = false;
    return m;
}

}  // namespace kite::test
