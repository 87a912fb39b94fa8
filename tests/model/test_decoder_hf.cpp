// kite/model/decoder.hpp + load.hpp on tiny random-weight Hugging Face models (one per family,
// made by tools/model_hf_fixtures.py with transformers): logits within 5e-5 of transformers,
// greedy continuations equal to generate(), KV-cache decoding equal to full recompute with
// contiguous and paged caches, and configs that do not fit the policies refused.

#include <cmath>
#include <limits>
#include <cstdint>
#include <fstream>
#include <span>
#include <vector>

#include <nlohmann/json.hpp>

#include "kite/model/decoder.hpp"
#include "kite/model/generate.hpp"
#include "kite/model/formats/load.hpp"
#include "decoder_test_util.hpp"
#include "kite_test.hpp"

namespace km = kite::model;
namespace kq = kite::quant;
using kite::index_t;
using kite::matrix;

namespace {

struct hf_fixture {
    km::checkpoint ck;
    std::vector<std::vector<std::int32_t>> prompts, greedy;
    std::vector<double> gaps;
    std::vector<matrix<float>> logits;  // per prompt [len][vocab]
};

hf_fixture load_fixture(const std::string& family) {
    const auto dir = kite::test::fixture("model/hf/" + family);
    hf_fixture f{km::read_checkpoint(dir), {}, {}, {}, {}};
    const auto j = nlohmann::json::parse(std::ifstream(dir / "expected.json"));
    const index_t vocab = j.at("vocab_size").get<index_t>();
    std::ifstream bin(dir / j.at("logits_file").get<std::string>(), std::ios::binary);
    for (std::size_t i = 0; i < j.at("prompts").size(); ++i) {
        f.prompts.push_back(j["prompts"][i].get<std::vector<std::int32_t>>());
        f.greedy.push_back(j["greedy"][i].get<std::vector<std::int32_t>>());
        f.gaps.push_back(j["min_top2_gap"][i].get<double>());
        matrix<float> m(f.prompts.back().size(), vocab);
        bin.read(reinterpret_cast<char*>(m.data()), static_cast<std::streamsize>(m.size() * sizeof(float)));
        REQUIRE(bin.good());
        f.logits.push_back(std::move(m));
    }
    return f;
}

template <class Model>
void check_family(const std::string& family) {
    INFO("family " << family);
    const hf_fixture f = load_fixture(family);
    Model model(f.ck);
    for (std::size_t i = 0; i < f.prompts.size(); ++i) {
        INFO("prompt " << i);
        const matrix<float> logits = model.forward(f.prompts[i]);
        CHECK(kite::test::max_abs_diff(logits.view(), f.logits[i].view()) <= 5e-5);  // measured 7.6e-6
        // Greedy continuation equals transformers' generate() (its smallest top-2 gap is >= 0.02).
        REQUIRE(f.gaps[i] > 1e-3);
        km::generation_options opt{.max_new_tokens = f.greedy[i].size(), .ignore_stop_tokens = true};
        const auto r = km::generate(model, f.prompts[i], opt);
        CHECK(r.tokens == f.greedy[i]);
        CHECK(r.reason == km::stop_reason::length);
        // Incremental decoding with the cache equals recomputing every prefix.
        std::vector<std::int32_t> seq = f.prompts[i];
        seq.insert(seq.end(), f.greedy[i].begin(), f.greedy[i].end());
        kite::test::check_cache_equals_recompute(model, seq, 3, 2e-5);
    }
}

}  // namespace

TEST_CASE("decoder: Llama (GQA, RoPE rotate_half, linear scaling) equals transformers", "[model][decoder]") {
    check_family<km::llama_decoder<>>("llama");
    check_family<km::llama_decoder<kq::f32, kite::kv::paged<4>>>("llama");
    check_family<km::llama_decoder<kq::f32, kite::kv::contiguous<float>, kite::attn::reference>>("llama");
}

TEST_CASE("decoder: Qwen2 (q/k/v biases, one kv head, tied embeddings, BF16 file) equals transformers",
          "[model][decoder]") {
    check_family<km::llama_decoder<>>("qwen2");
    check_family<km::llama_decoder<kq::f32, kite::kv::paged<2>>>("qwen2");
}

TEST_CASE("decoder: BLOOM (ALiBi, fused per-head qkv, embedding LayerNorm, F16 file) equals transformers",
          "[model][decoder]") {
    check_family<km::bloom_decoder<>>("bloom");
    check_family<km::bloom_decoder<kq::f32, kite::kv::paged<16>>>("bloom");
}

TEST_CASE("decoder: GPT-2 (learned positions, Conv1D weights, fused c_attn) equals transformers", "[model][decoder]") {
    check_family<km::gpt2_decoder<>>("gpt2");
    check_family<km::gpt2_decoder<kq::f32, kite::kv::paged<8>>>("gpt2");
}

TEST_CASE("decoder: a config the policies cannot run is refused with a sentence", "[model][decoder]") {
    const auto ck = [](const char* f) { return km::read_checkpoint(kite::test::fixture(std::string("model/hf/") + f)); };
    KITE_REQUIRE_THROWS_CONTAINING(km::llama_decoder<>(ck("bloom")), kite::config_error,
                                   "uses ALiBi attention biases, but the decoder's position policy is "
                                   "kite::pos::rope<rotate_half>");
    KITE_REQUIRE_THROWS_CONTAINING(km::bloom_decoder<>(ck("gpt2")), kite::config_error,
                                   "uses learned absolute position embeddings, but the decoder's position policy is kite::pos::alibi");
    // The Llama fixture has 4 query heads over 2 kv heads: GQA, which an MHA layout forbids.
    using llama_mha = km::decoder<kite::attn::mha, kite::pos::rope<kite::pos::rotate_half>, kite::attn::flash<64, 64>,
                                  kite::kv::contiguous<float>, kite::norm::rms, kite::mlp::swiglu>;
    KITE_REQUIRE_THROWS_CONTAINING(llama_mha(ck("llama")), kite::config_error,
                                   "has 4 query heads and 2 key/value heads, which the head layout kite::attn::mha cannot hold");
    using llama_mqa = km::decoder<kite::attn::mqa, kite::pos::rope<kite::pos::rotate_half>, kite::attn::flash<64, 64>,
                                  kite::kv::contiguous<float>, kite::norm::rms, kite::mlp::swiglu>;
    KITE_REQUIRE_THROWS_CONTAINING(llama_mqa(ck("llama")), kite::config_error, "kite::attn::mqa cannot hold");
    CHECK_NOTHROW(llama_mqa(ck("qwen2")));  // one kv head: MQA fits
    KITE_REQUIRE_THROWS_CONTAINING(km::llama2c_decoder<>(ck("llama")), kite::config_error,
                                   "rotates half-split pairs (i, i + d/2), as Hugging Face's rotate_half, but the decoder's "
                                   "position policy is kite::pos::rope<interleaved>");
    using bloom_rms = km::decoder<kite::attn::mha, kite::pos::alibi, kite::attn::flash<64, 64>, kite::kv::contiguous<float>,
                                  kite::norm::rms, kite::mlp::gelu_tanh>;
    KITE_REQUIRE_THROWS_CONTAINING(bloom_rms(ck("bloom")), kite::config_error,
                                   "uses LayerNorm, but the decoder's norm policy is RMSNorm");
    using gpt2_erf = km::decoder<kite::attn::mha, kite::pos::learned, kite::attn::flash<64, 64>, kite::kv::contiguous<float>,
                                 kite::norm::layer, kite::mlp::gelu>;
    KITE_REQUIRE_THROWS_CONTAINING(gpt2_erf(ck("gpt2")), kite::config_error,
                                   "uses the activation gelu_tanh, but the decoder's MLP policy uses gelu");
    using llama_plain = km::decoder<kite::attn::gqa, kite::pos::rope<kite::pos::rotate_half>, kite::attn::flash<64, 64>,
                                    kite::kv::contiguous<float>, kite::norm::rms, kite::mlp::relu>;
    KITE_REQUIRE_THROWS_CONTAINING(llama_plain(ck("llama")), kite::config_error,
                                   "has a gated (GLU) MLP, but the decoder's MLP policy is plain");
    // A BERT config is an encoder.
    km::checkpoint bert = ck("llama");
    bert.config.causal = false;
    bert.config.model_type = "bert";
    KITE_REQUIRE_THROWS_CONTAINING(km::llama_decoder<>(bert), kite::config_error, "is a bidirectional encoder");
}

TEST_CASE("decoder: bad checkpoints and inputs", "[model][decoder]") {
    km::checkpoint ck = km::read_checkpoint(kite::test::fixture("model/hf/llama"));
    {
        km::checkpoint bad = km::read_checkpoint(kite::test::fixture("model/hf/llama"));
        bad.tensors.blocks[1].o = matrix<float>(32, 31);
        KITE_REQUIRE_THROWS_CONTAINING(km::llama_decoder<>(bad), kite::format_error,
                                       "layer 1 output projection has shape [32][31]; expected [32][32]");
    }
    {
        // NaN in a weight names the checkpoint, the layer, the tensor and the element, whatever
        // the weight format (it was "quantize: W[5][3] = nan" for quantized ones).
        km::checkpoint bad = km::read_checkpoint(kite::test::fixture("model/hf/llama"));
        bad.tensors.blocks[1].qkv(5, 3) = std::numeric_limits<float>::quiet_NaN();
        KITE_REQUIRE_THROWS_CONTAINING(km::llama_decoder<>(bad), kite::format_error,
                                       "layer 1 qkv projection[5][3] = nan; expected finite weights");
        KITE_REQUIRE_THROWS_CONTAINING(km::llama_decoder<kq::absmax<8>>(bad), kite::format_error,
                                       "layer 1 qkv projection[5][3] = nan");
        bad.tensors.blocks[1].qkv(5, 3) = 0.0f;
        bad.tensors.final_norm_weight[7] = std::numeric_limits<float>::infinity();
        KITE_REQUIRE_THROWS_CONTAINING(km::llama_decoder<>(bad), kite::format_error, "final norm weight[7] = inf");
    }
    km::llama_decoder<> model(ck);
    CHECK(model.max_positions() == 64);
    std::vector<std::int32_t> toks{1, 2, 96};
    KITE_REQUIRE_THROWS_CONTAINING(model.forward(toks), kite::invalid_argument, "token id 96");
    std::vector<std::int32_t> long_prompt(65, 3);
    KITE_REQUIRE_THROWS_CONTAINING(model.forward(long_prompt), kite::invalid_argument,
                                   "would reach 65 tokens; the model serves at most max_positions = 64");
    // A paged cache that runs out of blocks says so and keeps its state.
    km::llama_decoder<kq::f32, kite::kv::paged<4>> paged(ck);
    auto cache = paged.make_cache(8);  // two blocks
    const auto s = *cache.add_sequence();
    matrix<float> logits(1, 96);
    const std::vector<std::int32_t> six{1, 2, 3, 4, 5, 6}, three{7, 8, 9};
    REQUIRE(paged.prefill(cache, s, six, logits.view()) == kite::kv::status::ok);
    CHECK(paged.prefill(cache, s, three, logits.view()) == kite::kv::status::out_of_blocks);
    CHECK(cache.length(s) == 6);
    const kite::kv::seq_id seqs[2] = {s, s};
    const std::int32_t two[2] = {1, 1};
    matrix<float> l2(2, 96);
    KITE_REQUIRE_THROWS_CONTAINING(paged.decode(cache, seqs, two, l2.view()), kite::invalid_argument, "appears twice");
    // A folder without config.json, a missing tensor, a tensor of the wrong shape: each named.
    KITE_REQUIRE_THROWS_CONTAINING(km::read_checkpoint(kite::test::fixture("model/safetensors/small.safetensors")),
                                   kite::error, "config.json");
    kite::test::temp_dir tmp;
    const auto hf = kite::test::fixture("model/hf");
    std::filesystem::copy_file(hf / "llama" / "config.json", tmp / "config.json");
    std::filesystem::copy_file(hf / "bloom" / "model.safetensors", tmp / "model.safetensors");
    KITE_REQUIRE_THROWS_CONTAINING(km::read_checkpoint(tmp.path()), kite::not_found_error,
                                   "no tensor 'model.embed_tokens.weight', 'embed_tokens.weight'");
    std::filesystem::copy_file(hf / "qwen2" / "model.safetensors", tmp / "model.safetensors",
                               std::filesystem::copy_options::overwrite_existing);
    KITE_REQUIRE_THROWS_CONTAINING(km::read_checkpoint(tmp.path()), kite::shape_error,
                                   "tensor 'model.layers.0.self_attn.k_proj.weight' has shape [8, 32]; expected [16, 32]");
}

TEST_CASE("decoder: K/V stored as bf16 or fp16 stay close to float32", "[model][decoder]") {
    const hf_fixture f = load_fixture("bloom");
    km::bloom_decoder<kq::f32, kite::kv::paged<8, kite::bf16>> bf(f.ck);
    km::bloom_decoder<kq::f32, kite::kv::contiguous<kite::fp16>> hf(f.ck);
    for (std::size_t i = 0; i < f.prompts.size(); ++i) {
        // bf16 keeps 8 bits of mantissa: logits of magnitude ~30 move by a few hundredths.
        CHECK(kite::test::max_abs_diff(bf.forward(f.prompts[i]).view(), f.logits[i].view()) <= 0.25);
        CHECK(kite::test::max_abs_diff(hf.forward(f.prompts[i]).view(), f.logits[i].view()) <= 0.05);
        std::vector<std::int32_t> seq = f.prompts[i];
        seq.insert(seq.end(), f.greedy[i].begin(), f.greedy[i].end());
        kite::test::check_cache_equals_recompute(bf, seq, 2, 1e-4);
    }
}

TEST_CASE("decoder: a batch of sequences decodes as each alone", "[model][decoder]") {
    const hf_fixture f = load_fixture("llama");
    km::llama_decoder<kq::f32, kite::kv::paged<4>> model(f.ck);
    auto cache = model.make_cache(32, 2);
    const auto a = *cache.add_sequence(), b = *cache.add_sequence();
    matrix<float> la(1, 96), lb(1, 96);
    REQUIRE(model.prefill(cache, a, f.prompts[0], la.view()) == kite::kv::status::ok);
    REQUIRE(model.prefill(cache, b, f.prompts[1], lb.view()) == kite::kv::status::ok);
    std::vector<std::int32_t> sa = f.prompts[0], sb = f.prompts[1];
    const kite::kv::seq_id seqs[2] = {a, b};
    matrix<float> step(2, 96);
    for (int t = 0; t < 5; ++t) {
        const std::int32_t next[2] = {static_cast<std::int32_t>(km::argmax(step.row(0)) % 96),
                                      static_cast<std::int32_t>((t * 7 + 3) % 96)};
        sa.push_back(next[0]);
        sb.push_back(next[1]);
        REQUIRE(model.decode(cache, seqs, next, step.view()) == kite::kv::status::ok);
        const auto fa = model.forward(sa), fb = model.forward(sb);
        // Measured 9.5e-7 (2026-12-03).
        CHECK(kite::test::max_abs_diff(step.view().rows_slice(0, 1), fa.view().rows_slice(sa.size() - 1, 1)) <= 5e-6);
        CHECK(kite::test::max_abs_diff(step.view().rows_slice(1, 1), fb.view().rows_slice(sb.size() - 1, 1)) <= 5e-6);
    }
}
