// kite/model/config.hpp: config.json files written by transformers' config classes (and older
// spellings) parse to the values transformers itself uses; bad fields are config_errors.

#include <fstream>
#include <string>

#include <nlohmann/json.hpp>

#include "kite/model/config.hpp"
#include "kite_test.hpp"

using namespace kite::model;

namespace {

nlohmann::json read_json(const std::filesystem::path& p) {
    std::ifstream f(p);
    return nlohmann::json::parse(f);
}

std::string act_name_of(const std::string& hf) {
    if (hf == "silu" || hf == "swish") return "silu";
    if (hf == "gelu") return "gelu";
    if (hf == "relu") return "relu";
    return "gelu_tanh";
}

}  // namespace

TEST_CASE("config: transformers-written configs of every family", "[model][config]") {
    const auto dir = kite::test::fixture("model/configs");
    const auto expected = read_json(dir / "expected.json");
    REQUIRE(expected.size() == 9);
    for (const auto& [name, e] : expected.items()) {
        INFO(name);
        const model_config c = load_config(dir / (name + ".json"));
        CHECK(c.model_type == e["model_type"].get<std::string>());
        CHECK(c.vocab_size == e["vocab_size"].get<std::size_t>());
        CHECK(c.hidden_size == e["hidden_size"].get<std::size_t>());
        CHECK(c.intermediate_size == e["intermediate_size"].get<std::size_t>());
        CHECK(c.num_layers == e["num_layers"].get<std::size_t>());
        CHECK(c.num_heads == e["num_heads"].get<std::size_t>());
        CHECK(c.num_kv_heads == e["num_kv_heads"].get<std::size_t>());
        CHECK(c.head_dim == e["head_dim"].get<std::size_t>());
        CHECK(c.norm_eps == e["norm_eps"].get<double>());
        if (e.contains("max_position_embeddings"))
            CHECK(c.max_position_embeddings == e["max_position_embeddings"].get<std::size_t>());
        if (e.contains("tie_word_embeddings")) CHECK(c.tie_word_embeddings == e["tie_word_embeddings"].get<bool>());
        if (e.contains("hidden_act")) CHECK(to_string(c.hidden_act) == act_name_of(e["hidden_act"]));
        if (c.arch == architecture::llama || c.arch == architecture::qwen2) {
            CHECK(c.position == position_type::rope);
            CHECK(c.norm == norm_type::rms);
            CHECK(c.mlp == mlp_type::gated);
            CHECK(c.causal);
            CHECK_FALSE(c.rope_interleaved);
            CHECK(c.rope_theta == e["rope_theta"].get<double>());
            CHECK(c.rotary_dim == e["rotary_dim"].get<std::size_t>());
            CHECK(c.rope_factor == e["rope_factor"].get<double>());
            const std::string type = e["rope_type"];
            const auto want = type == "linear"    ? kite::pos::rope_scaling::linear
                              : type == "dynamic" ? kite::pos::rope_scaling::dynamic_ntk
                                                  : kite::pos::rope_scaling::none;
            CHECK(c.rope_scaling == want);
            if (want == kite::pos::rope_scaling::dynamic_ntk)
                CHECK(c.rope_original_max_positions == c.max_position_embeddings);
            const auto r = c.rope(1024);
            CHECK(r.head_dim == c.head_dim);
            CHECK(r.rotary_dim == c.rotary_dim);
            CHECK(r.base == c.rope_theta);
            CHECK(r.max_positions == 1024);
            CHECK(c.qkv_bias == (c.arch == architecture::qwen2));
            CHECK_FALSE(c.o_bias);
        } else {
            KITE_REQUIRE_THROWS_CONTAINING(c.rope(16), kite::config_error, "no rotary");
        }
        if (c.arch == architecture::bloom) {
            CHECK(c.position == position_type::alibi);
            CHECK(c.norm == norm_type::layer);
            CHECK(c.hidden_act == activation::gelu_tanh);
            CHECK(c.fused_qkv);
            CHECK(c.embedding_norm);
        }
        if (c.arch == architecture::gpt2) {
            CHECK(c.position == position_type::learned);
            CHECK(c.fused_qkv);
            CHECK(c.mlp == mlp_type::plain);
            CHECK_FALSE(c.post_norm);
        }
        if (c.arch == architecture::bert) {
            CHECK(c.position == position_type::learned);
            CHECK(c.post_norm);
            CHECK_FALSE(c.causal);
            CHECK(c.type_vocab_size == e["type_vocab_size"].get<std::size_t>());
            CHECK(c.hidden_act == activation::gelu);
        }
    }
    // Token ids: a list of eos ids, and null pad ids.
    const auto v4 = load_config(dir / "llama_v4_dynamic.json");
    CHECK(v4.eos_token_ids == std::vector<std::int64_t>{2, 32000});
    CHECK(v4.bos_token_id == 1);
    CHECK_FALSE(v4.pad_token_id.has_value());
    CHECK(v4.group_size() == 4);
    CHECK(v4.kv_dim() == 8 * 128);
    // A folder holding config.json.
    kite::test::temp_dir tmp;
    std::filesystem::copy_file(dir / "gpt2.json", tmp / "config.json");
    CHECK(load_config(tmp.path()).num_layers == 2);
}

TEST_CASE("config: missing, ill-typed and unsupported fields", "[model][config]") {
    const auto base = read_json(kite::test::fixture("model/configs/llama_gqa.json"));
    const auto with = [&](const std::string& key, const nlohmann::json& value) {
        auto j = base;
        j[key] = value;
        return j;
    };
    const auto without = [&](const std::string& key) {
        auto j = base;
        j.erase(key);
        return j;
    };
    CHECK(parse_config(base).num_kv_heads == 2);
    KITE_REQUIRE_THROWS_CONTAINING(parse_config(without("hidden_size")), kite::config_error, "'hidden_size' is missing");
    KITE_REQUIRE_THROWS_CONTAINING(parse_config(without("model_type")), kite::config_error, "'model_type' is missing");
    KITE_REQUIRE_THROWS_CONTAINING(parse_config(with("hidden_size", "256")), kite::config_error, "'hidden_size' = \"256\"");
    KITE_REQUIRE_THROWS_CONTAINING(parse_config(with("hidden_size", 256.5)), kite::config_error, "'hidden_size' = 256.5");
    KITE_REQUIRE_THROWS_CONTAINING(parse_config(with("num_hidden_layers", 0)), kite::config_error, "'num_hidden_layers' = 0");
    KITE_REQUIRE_THROWS_CONTAINING(parse_config(with("num_hidden_layers", -2)), kite::config_error, "'num_hidden_layers' = -2");
    KITE_REQUIRE_THROWS_CONTAINING(parse_config(with("num_key_value_heads", 3)), kite::config_error,
                                   "num_attention_heads = 8 is not a multiple of num_key_value_heads = 3");
    auto no_hd = with("num_attention_heads", 7);
    no_hd.erase("head_dim");
    KITE_REQUIRE_THROWS_CONTAINING(parse_config(no_hd), kite::config_error,
                                   "hidden_size = 256 is not a multiple of num_attention_heads = 7");
    KITE_REQUIRE_THROWS_CONTAINING(parse_config(with("rms_norm_eps", -1)), kite::config_error, "'rms_norm_eps'");
    KITE_REQUIRE_THROWS_CONTAINING(parse_config(with("rms_norm_eps", "1e-5")), kite::config_error, "'rms_norm_eps'");
    KITE_REQUIRE_THROWS_CONTAINING(parse_config(with("tie_word_embeddings", 1)), kite::config_error, "'tie_word_embeddings' = 1");
    KITE_REQUIRE_THROWS_CONTAINING(parse_config(with("hidden_act", "mish")), kite::config_error, "'hidden_act' = \"mish\"");
    KITE_REQUIRE_THROWS_CONTAINING(parse_config(with("model_type", "t5")), kite::config_error, "'model_type' = \"t5\"");
    KITE_REQUIRE_THROWS_CONTAINING(parse_config(with("eos_token_id", "2")), kite::config_error, "'eos_token_id'");
    KITE_REQUIRE_THROWS_CONTAINING(parse_config(with("rope_parameters", {{"rope_type", "llama3"}, {"factor", 8.0}, {"rope_theta", 5e5}})),
                                   kite::config_error, "\"llama3\"");
    KITE_REQUIRE_THROWS_CONTAINING(parse_config(with("rope_parameters", {{"rope_type", "linear"}, {"rope_theta", 5e5}})),
                                   kite::config_error, "factor' is missing");
    KITE_REQUIRE_THROWS_CONTAINING(parse_config(with("rope_parameters", {{"rope_type", "linear"}, {"factor", 0.5}, {"rope_theta", 5e5}})),
                                   kite::config_error, "factor' = 0.5");
    KITE_REQUIRE_THROWS_CONTAINING(parse_config(with("rope_parameters", {{"rope_theta", 1e4}, {"partial_rotary_factor", 0.3}})),
                                   kite::config_error, "'partial_rotary_factor' = 0.3");
    KITE_REQUIRE_THROWS_CONTAINING(parse_config(with("rope_parameters", 5)), kite::config_error, "'rope_parameters' = 5");
    KITE_REQUIRE_THROWS_CONTAINING(parse_config(with("rope_parameters", {{"rope_theta", "big"}})), kite::config_error,
                                   "'rope_parameters.rope_theta' = \"big\"");
    // transformers 4 spelling: rope_theta at the top, rope_scaling object.
    auto old = without("rope_parameters");
    old["rope_theta"] = 250000.0;
    old["rope_scaling"] = {{"type", "linear"}, {"factor", 2.0}};
    const auto oc = parse_config(old);
    CHECK(oc.rope_theta == 250000.0);
    CHECK(oc.rope_scaling == kite::pos::rope_scaling::linear);
    CHECK(oc.rope_factor == 2.0);
    old["rope_scaling"] = nullptr;  // null: no scaling
    CHECK(parse_config(old).rope_scaling == kite::pos::rope_scaling::none);
    // head_dim given explicitly (Llama allows head_dim * heads != hidden_size).
    auto hd = base;
    hd["head_dim"] = 64;
    CHECK(parse_config(hd).head_dim == 64);
    CHECK(parse_config(hd).q_dim() == 8 * 64);

    // Family-specific refusals.
    auto q = read_json(kite::test::fixture("model/configs/qwen2.json"));
    q["use_sliding_window"] = true;
    KITE_REQUIRE_THROWS_CONTAINING(parse_config(q), kite::config_error, "use_sliding_window");
    auto b = read_json(kite::test::fixture("model/configs/bert.json"));
    b["position_embedding_type"] = "relative_key";
    KITE_REQUIRE_THROWS_CONTAINING(parse_config(b), kite::config_error, "\"relative_key\"");
    b.erase("position_embedding_type");
    b.erase("intermediate_size");
    KITE_REQUIRE_THROWS_CONTAINING(parse_config(b), kite::config_error, "'intermediate_size' is missing");
    auto g = read_json(kite::test::fixture("model/configs/gpt2.json"));
    g["scale_attn_by_inverse_layer_idx"] = true;
    KITE_REQUIRE_THROWS_CONTAINING(parse_config(g), kite::config_error, "scale_attn_by_inverse_layer_idx");
    g.erase("scale_attn_by_inverse_layer_idx");
    g.erase("n_embd");
    KITE_REQUIRE_THROWS_CONTAINING(parse_config(g), kite::config_error, "'n_embd' is missing");
    auto bl = read_json(kite::test::fixture("model/configs/bloom.json"));
    bl["apply_residual_connection_post_layernorm"] = true;
    KITE_REQUIRE_THROWS_CONTAINING(parse_config(bl), kite::config_error, "apply_residual_connection_post_layernorm");

    // Text and file entry points.
    KITE_REQUIRE_THROWS_CONTAINING(parse_config(std::string_view("{oops"), "x/config.json"), kite::config_error,
                                   "x/config.json: not valid JSON");
    KITE_REQUIRE_THROWS_CONTAINING(parse_config(nlohmann::json::array()), kite::config_error, "JSON object");
    CHECK_THROWS_AS(load_config("/nonexistent/config.json"), kite::io_error);
}
