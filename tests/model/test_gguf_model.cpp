// kite/model/formats/gguf_model.hpp: decoders read from GGUF files equal Hugging Face
// transformers loading the same files (tiny random llama / qwen2 / K-quant models whose tensors
// mix F32, F16, BF16, Q8_0, Q4_0, Q4_1, Q4_K, Q5_K and Q6_K; logits made by
// tools/gguf_make_fixtures.py), incremental decoding equals recomputation, a token's logits do
// not depend on the batch, and bad files are refused naming the problem.

#include <cstring>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "decoder_test_util.hpp"
#include "kite/core/io.hpp"
#include "kite/model/formats/gguf_model.hpp"
#include "kite_test.hpp"

namespace km = kite::model;
namespace gg = kite::quant::ggml;
using kite::index_t;
using kite::matrix;

namespace {

std::filesystem::path gguf_fixture(const std::string& name) { return kite::test::fixture("model/gguf/" + name); }

const nlohmann::json& manifest() {
    static const nlohmann::json m = nlohmann::json::parse(kite::io::read_text(gguf_fixture("manifest.json")));
    return m;
}

struct tiny_case {
    std::vector<std::int32_t> ids;
    matrix<float> logits;  // [24][vocab]
};

tiny_case tiny_expected(const std::string& name) {
    const auto& t = manifest()["tiny"][name];
    tiny_case c;
    c.ids = t["input_ids"].get<std::vector<std::int32_t>>();
    const auto shape = t["logits_shape"].get<std::vector<index_t>>();
    const std::string raw = kite::io::read_text(gguf_fixture(t["logits_file"].get<std::string>()));
    REQUIRE(raw.size() == shape[0] * shape[1] * sizeof(float));
    c.logits = matrix<float>(shape[0], shape[1]);
    std::memcpy(c.logits.data(), raw.data(), raw.size());
    return c;
}

template <class Model>
void check_model(Model& model, const tiny_case& want, double bar) {
    const matrix<float> logits = model.forward(want.ids);
    CHECK(kite::test::max_abs_diff(logits.view(), want.logits.view()) <= bar);
    // Incremental decoding with the cache equals recomputing every prefix (measured 1.0e-5:
    // decode and prefill attention sum in different orders).
    kite::test::check_cache_equals_recompute(model, want.ids, 5, 5e-5);
}

}  // namespace

TEST_CASE("GGUF tiny llama (every native type, Q/K permuted) equals transformers", "[model][gguf]") {
    const km::gguf_file f(gguf_fixture("tiny_llama.gguf"));
    const km::gguf_model m = km::read_gguf(f);
    CHECK(m.config.arch == km::architecture::llama);
    CHECK(m.config.rope_interleaved);
    CHECK(m.config.num_layers == 2);
    CHECK(m.config.num_kv_heads == 2);
    CHECK(m.config.head_dim == 16);
    CHECK(m.config.intermediate_size == 160);
    CHECK_FALSE(m.config.tie_word_embeddings);
    CHECK(m.conversions.empty());
    // Used as stored: the projections view the file's bytes, in their own types.
    CHECK(m.blocks[0].qkv.segments().size() == 3);
    CHECK(m.blocks[0].qkv.segments()[0].type == gg::type::q4_0);
    CHECK(m.blocks[0].qkv.segments()[0].data == f.tensor("blk.0.attn_q.weight").data.data());
    CHECK(m.blocks[1].o.segments()[0].type == gg::type::q8_0);
    km::gguf_llama_decoder<> model(m);
    // Measured (release, 2026-12-03): max |kite - transformers| 3.5e-6 on logits up to 4.0.
    check_model(model, tiny_expected("tiny_llama"), 3e-5);
    // A decoder of the other RoPE convention refuses the config with a sentence.
    KITE_REQUIRE_THROWS_CONTAINING(km::gguf_qwen2_decoder<>{m}, kite::config_error, "rope<kite::pos::interleaved>");
}

TEST_CASE("GGUF tiny qwen2 (biases, tied Q8_0 embedding) equals transformers", "[model][gguf]") {
    const km::gguf_file f(gguf_fixture("tiny_qwen2.gguf"));
    const km::gguf_model m = km::read_gguf(f);
    CHECK(m.config.arch == km::architecture::qwen2);
    CHECK_FALSE(m.config.rope_interleaved);
    CHECK(m.config.tie_word_embeddings);
    CHECK(m.config.rope_theta == 1000000.0);
    CHECK(m.blocks[0].qkv_bias.size() == 4 * 16 + 2 * 2 * 16);
    CHECK_FALSE(m.lm_head.has_value());
    km::gguf_qwen2_decoder<kite::kv::paged<4>> model(m);
    check_model(model, tiny_expected("tiny_qwen2"), 1e-4);  // measured 2.0e-5 on logits up to 11.6
}

TEST_CASE("GGUF K-quants decode at load, exactly to F32 or to F16 with the error stated", "[model][gguf]") {
    const km::gguf_file f(gguf_fixture("tiny_llama_kquants.gguf"));
    const auto want = tiny_expected("tiny_llama_kquants");
    {
        const km::gguf_model m = km::read_gguf(f, {.kquants_as = gg::type::f32});
        REQUIRE_FALSE(m.conversions.empty());
        for (const auto& c : m.conversions) {
            INFO(c.tensor);
            CHECK(c.to == gg::type::f32);
            CHECK(c.max_abs_error == 0.0);
        }
        km::gguf_llama_decoder<> model(m);
        check_model(model, want, 4e-5);  // measured 4.3e-6: exact weights, float arithmetic
    }
    {
        const km::gguf_model m = km::read_gguf(f);  // default: F16
        for (const auto& c : m.conversions) {
            INFO(c.tensor << " from " << gg::name(c.from));
            CHECK(c.to == gg::type::f16);
            CHECK(c.max_rel_error <= std::ldexp(1.0, -11));  // half an fp16 ulp (normal range)
            CHECK(c.max_rel_error > 0.0);
        }
        km::gguf_llama_decoder<> model(m);
        // Measured 0.0040 (logits up to 3.9): what rounding the weights to fp16 costs here.
        check_model(model, want, 0.01);
    }
}

TEST_CASE("GGUF decoders: a token's logits do not depend on the batch", "[model][gguf]") {
    const km::gguf_file f(gguf_fixture("tiny_llama.gguf"));
    km::gguf_llama_decoder<kite::kv::paged<8>> model(km::read_gguf(f));
    const auto ids = tiny_expected("tiny_llama").ids;
    auto cache = model.make_cache(64, 3);
    const auto a = *cache.add_sequence(), b = *cache.add_sequence(), c = *cache.add_sequence();
    matrix<float> la(1, model.vocab_size());
    REQUIRE(model.prefill(cache, a, std::span(ids).first(7), la.view()) == kite::kv::status::ok);
    REQUIRE(model.prefill(cache, b, std::span(ids).first(11), la.view()) == kite::kv::status::ok);
    REQUIRE(model.prefill(cache, c, std::span(ids).first(7), la.view()) == kite::kv::status::ok);
    // Step a alone, then a with b in one batch from the twin sequence c: bit-identical logits.
    matrix<float> alone(1, model.vocab_size()), both(2, model.vocab_size());
    const kite::kv::seq_id sa[1] = {a}, sbc[2] = {b, c};
    const std::int32_t ta[1] = {ids[7]}, tbc[2] = {ids[11], ids[7]};
    REQUIRE(model.decode(cache, sa, ta, alone.view()) == kite::kv::status::ok);
    REQUIRE(model.decode(cache, sbc, tbc, both.view()) == kite::kv::status::ok);
    CHECK(std::memcmp(alone.data(), both.row(1).data(), model.vocab_size() * sizeof(float)) == 0);
}

TEST_CASE("GGUF models: bad files are refused naming the problem", "[model][gguf][errors]") {
    // A file that is not a model (the metadata fixture): its architecture is named.
    const km::gguf_file meta(gguf_fixture("meta_all_types.gguf"));
    KITE_REQUIRE_THROWS_CONTAINING(km::read_gguf(meta), kite::config_error,
                                   "general.architecture is 'kite-test'; kite reads GGUF models of the architectures llama and qwen2");
}
