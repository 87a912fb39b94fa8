#pragma once
/// @file kite/model/config.hpp
/// Hugging Face `config.json` -> model_config, the runtime description of a model: the numbers
/// (dims, heads, vocab), and the structural choices a decoder or encoder is assembled from
/// (norm, activation, position encoding, biases, fused projections).
///
/// Families: Llama and Qwen2 (RMSNorm, SwiGLU, RoPE rotate_half with GQA, partial rotary,
/// linear / dynamic-NTK scaling; both the `rope_theta` + `rope_scaling` keys of
/// transformers 4 and the `rope_parameters` object of transformers 5), BLOOM (ALiBi, MHA,
/// `n_head` / `n_embed` spellings), GPT-2 (`n_embd`, `n_head`, `n_layer`, `n_positions`, learned
/// positions, fused QKV) and BERT (post-LayerNorm encoder with token types).
///
///   auto cfg = kite::model::load_config("models/all-MiniLM-L6-v2");   // file or folder
///   cfg.num_layers; cfg.head_dim; cfg.norm_eps; ...
///
/// Fields that the family requires (the dimensions) must be present; the others take the
/// defaults transformers gives them. A missing or ill-typed field, or a value out of range, is a
/// kite::config_error naming the field and what was expected; a variant kite does not implement
/// (Llama 3 RoPE scaling, sliding windows, relative position embeddings) is refused the same way.

#include <cmath>
#include <cstdint>
#include <filesystem>
#include <initializer_list>
#include <optional>
#include <string>
#include <string_view>
#include <tuple>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "kite/core/config.hpp"
#include "kite/core/error.hpp"
#include "kite/core/io.hpp"
#include "kite/pos/rope.hpp"

namespace kite::model {

/// Model families kite assembles.
enum class architecture : std::uint8_t { llama, qwen2, bloom, gpt2, bert };
/// MLP activation (`hidden_act` / `activation_function`).
enum class activation : std::uint8_t {
    silu,       ///< "silu", "swish"
    gelu,       ///< "gelu": exact, with erf
    gelu_tanh,  ///< "gelu_new", "gelu_pytorch_tanh", "gelu_fast", and BLOOM's gelu
    relu        ///< "relu"
};
enum class norm_type : std::uint8_t { rms, layer };
enum class position_type : std::uint8_t { rope, alibi, learned };
/// gated: down(act(gate(x)) * up(x)) (SwiGLU); plain: down(act(up(x))).
enum class mlp_type : std::uint8_t { gated, plain };

constexpr std::string_view to_string(architecture a) noexcept {
    constexpr std::string_view n[] = {"llama", "qwen2", "bloom", "gpt2", "bert"};
    return n[static_cast<std::size_t>(a)];
}
constexpr std::string_view to_string(activation a) noexcept {
    constexpr std::string_view n[] = {"silu", "gelu", "gelu_tanh", "relu"};
    return n[static_cast<std::size_t>(a)];
}

/// The runtime description of a model, as parsed from config.json.
struct model_config {
    architecture arch = architecture::llama;
    std::string model_type;                 ///< as written in config.json
    index_t vocab_size = 0;
    index_t hidden_size = 0;
    index_t intermediate_size = 0;          ///< MLP width
    index_t num_layers = 0;
    index_t num_heads = 0;                  ///< query heads
    index_t num_kv_heads = 0;               ///< key/value heads (== num_heads for MHA)
    index_t head_dim = 0;
    index_t max_position_embeddings = 0;    ///< 0: no limit from the architecture (ALiBi)
    activation hidden_act = activation::silu;
    mlp_type mlp = mlp_type::gated;
    norm_type norm = norm_type::rms;
    double norm_eps = 1e-6;
    bool post_norm = false;                 ///< BERT: norm after each residual add (else before)
    bool causal = true;                     ///< decoder (true) or bidirectional encoder (false)
    position_type position = position_type::rope;
    // RoPE (position == rope)
    bool rope_interleaved = false;          ///< pairs (2i, 2i+1) (llama2.c) instead of rotate_half
    double rope_theta = 10000.0;
    pos::rope_scaling rope_scaling = pos::rope_scaling::none;
    double rope_factor = 1.0;
    index_t rotary_dim = 0;                 ///< rotated leading dims of each head (even)
    index_t rope_original_max_positions = 0;///< dynamic NTK: the trained context length
    // structure
    bool tie_word_embeddings = false;       ///< classifier shares the token embedding
    bool qkv_bias = false;                  ///< q, k, v projections have biases
    bool o_bias = false;                    ///< attention output projection has a bias
    bool mlp_bias = false;                  ///< MLP projections have biases
    bool fused_qkv = false;                 ///< one q|k|v projection (GPT-2 c_attn, BLOOM query_key_value)
    bool embedding_norm = false;            ///< a norm right after the embeddings (BLOOM, BERT)
    index_t type_vocab_size = 0;            ///< BERT token types
    std::optional<std::int64_t> bos_token_id;
    std::optional<std::int64_t> pad_token_id;
    std::vector<std::int64_t> eos_token_ids;

    index_t q_dim() const noexcept { return num_heads * head_dim; }
    index_t kv_dim() const noexcept { return num_kv_heads * head_dim; }
    /// Query heads per key/value head.
    index_t group_size() const noexcept { return num_kv_heads ? num_heads / num_kv_heads : 0; }

    /// The RoPE table configuration for kite::pos::rope (config_error unless position == rope).
    pos::rope_config rope(index_t max_positions) const {
        KITE_REQUIRE(position == position_type::rope, config_error, "model_config: ", model_type,
                     " has no rotary position embedding");
        pos::rope_config r;
        r.head_dim = head_dim;
        r.rotary_dim = rotary_dim;
        r.base = rope_theta;
        r.scaling = rope_scaling;
        r.factor = rope_factor;
        r.original_max_positions = rope_original_max_positions;
        r.max_positions = max_positions;
        return r;
    }
};

namespace detail {

/// Typed access to config.json fields; every failure names the field.
class config_reader {
public:
    config_reader(const nlohmann::json& j, std::string source) : j_(j), src_(std::move(source)) {}

    /// The first present, non-null field among `names` (aliases), or nullptr.
    const nlohmann::json* find(std::initializer_list<const char*> names, const char** which = nullptr) const {
        for (const char* n : names) {
            const auto it = j_.find(n);
            if (it != j_.end() && !it->is_null()) {
                if (which) *which = n;
                return &*it;
            }
        }
        return nullptr;
    }

    template <class... Args>
    [[noreturn]] void fail(const Args&... args) const {
        kite::detail::raise<config_error>(src_, ": ", args...);
    }

    /// A positive integer; `fallback` when absent (nullopt: the field is required).
    index_t count(std::initializer_list<const char*> names, std::optional<index_t> fallback = std::nullopt,
                  index_t min_value = 1) const {
        const char* which = *names.begin();
        const nlohmann::json* v = find(names, &which);
        if (!v) {
            if (!fallback) fail("field '", *names.begin(), "' is missing; expected an integer >= ", min_value);
            return *fallback;
        }
        if (!v->is_number_integer() || (v->is_number_unsigned() ? false : v->get<std::int64_t>() < 0))
            fail("field '", which, "' = ", v->dump(), "; expected an integer >= ", min_value);
        const std::uint64_t u = v->get<std::uint64_t>();
        if (u < min_value || u > (std::uint64_t{1} << 40))
            fail("field '", which, "' = ", u, "; expected an integer >= ", min_value);
        return static_cast<index_t>(u);
    }

    /// A finite number > 0 (or >= 0 when `allow_zero`).
    double positive(std::initializer_list<const char*> names, double fallback, bool allow_zero = false) const {
        const char* which = *names.begin();
        const nlohmann::json* v = find(names, &which);
        if (!v) return fallback;
        return positive_value(*v, which, allow_zero);
    }
    double positive_value(const nlohmann::json& v, std::string_view which, bool allow_zero = false) const {
        if (!v.is_number()) fail("field '", which, "' = ", v.dump(), "; expected a number");
        const double d = v.get<double>();
        if (!std::isfinite(d) || d < 0 || (!allow_zero && d == 0))
            fail("field '", which, "' = ", d, allow_zero ? "; expected a finite number >= 0"
                                                          : "; expected a finite number > 0");
        return d;
    }

    bool flag(std::initializer_list<const char*> names, bool fallback) const {
        const char* which = *names.begin();
        const nlohmann::json* v = find(names, &which);
        if (!v) return fallback;
        if (!v->is_boolean()) fail("field '", which, "' = ", v->dump(), "; expected true or false");
        return v->get<bool>();
    }

    std::string text(std::initializer_list<const char*> names, std::optional<std::string> fallback) const {
        const char* which = *names.begin();
        const nlohmann::json* v = find(names, &which);
        if (!v) {
            if (!fallback) fail("field '", *names.begin(), "' is missing; expected a string");
            return *fallback;
        }
        if (!v->is_string()) fail("field '", which, "' = ", v->dump(), "; expected a string");
        return v->get<std::string>();
    }

    std::optional<std::int64_t> token_id(const char* name) const {
        const nlohmann::json* v = find({name});
        if (!v) return std::nullopt;
        if (!v->is_number_integer()) fail("field '", name, "' = ", v->dump(), "; expected an integer token id");
        return v->get<std::int64_t>();
    }
    std::vector<std::int64_t> token_ids(const char* name) const {
        const nlohmann::json* v = find({name});
        std::vector<std::int64_t> out;
        if (!v) return out;
        if (v->is_number_integer()) {
            out.push_back(v->get<std::int64_t>());
        } else if (v->is_array()) {
            for (const auto& e : *v) {
                if (!e.is_number_integer()) fail("field '", name, "' = ", v->dump(), "; expected integer token ids");
                out.push_back(e.get<std::int64_t>());
            }
        } else {
            fail("field '", name, "' = ", v->dump(), "; expected an integer or a list of integers");
        }
        return out;
    }

    activation act(std::initializer_list<const char*> names, std::string_view fallback) const {
        const char* which = *names.begin();
        const nlohmann::json* v = find(names, &which);
        std::string s(fallback);
        if (v) {
            if (!v->is_string()) fail("field '", which, "' = ", v->dump(), "; expected an activation name");
            s = v->get<std::string>();
        }
        if (s == "silu" || s == "swish") return activation::silu;
        if (s == "gelu") return activation::gelu;
        if (s == "gelu_new" || s == "gelu_pytorch_tanh" || s == "gelu_fast") return activation::gelu_tanh;
        if (s == "relu") return activation::relu;
        fail("field '", which, "' = \"", s,
             "\"; expected one of silu, swish, gelu, gelu_new, gelu_pytorch_tanh, gelu_fast, relu");
    }

    const nlohmann::json& json() const noexcept { return j_; }
    const std::string& source() const noexcept { return src_; }

private:
    const nlohmann::json& j_;
    std::string src_;
};

inline void finish_heads(model_config& c, const config_reader& r, bool explicit_head_dim) {
    if (!explicit_head_dim) {
        if (c.hidden_size % c.num_heads != 0)
            r.fail("hidden_size = ", c.hidden_size, " is not a multiple of num_attention_heads = ",
                   c.num_heads, "; expected head_dim = hidden_size / num_attention_heads");
        c.head_dim = c.hidden_size / c.num_heads;
    }
    if (c.num_heads % c.num_kv_heads != 0)
        r.fail("num_attention_heads = ", c.num_heads, " is not a multiple of num_key_value_heads = ",
               c.num_kv_heads, "; grouped-query attention needs whole groups");
}

/// RoPE settings of Llama-family configs, old (rope_theta, rope_scaling, partial_rotary_factor)
/// and new (rope_parameters) spellings; the new object wins where both are present.
inline void read_rope(model_config& c, const config_reader& r) {
    const nlohmann::json* params = r.find({"rope_parameters"});
    const nlohmann::json* scaling = r.find({"rope_scaling"});
    if (params && !params->is_object()) r.fail("field 'rope_parameters' = ", params->dump(), "; expected an object");
    if (scaling && !scaling->is_object()) r.fail("field 'rope_scaling' = ", scaling->dump(), "; expected an object or null");
    if (params && params->contains("full_attention"))
        r.fail("field 'rope_parameters' is given per layer type; kite supports one RoPE for all layers");
    // Look a key up in rope_parameters, then rope_scaling, then the top level.
    const auto lookup = [&](const char* key, bool top_level) -> std::pair<const nlohmann::json*, std::string> {
        for (const nlohmann::json* o : {params, scaling}) {
            if (!o) continue;
            const auto it = o->find(key);
            if (it != o->end() && !it->is_null())
                return {&*it, std::string(o == params ? "rope_parameters." : "rope_scaling.") + key};
        }
        if (top_level) {
            if (const nlohmann::json* v = r.find({key})) return {v, key};
        }
        return {nullptr, key};
    };

    if (auto [v, name] = lookup("rope_theta", true); v) c.rope_theta = r.positive_value(*v, name);
    if (!(c.rope_theta > 1.0)) r.fail("field 'rope_theta' = ", c.rope_theta, "; expected a value > 1");
    double partial = 1.0;
    if (auto [v, name] = lookup("partial_rotary_factor", true); v) partial = r.positive_value(*v, name);
    if (partial > 1.0) r.fail("field 'partial_rotary_factor' = ", partial, "; expected a value in (0, 1]");
    // int(head_dim * factor), as transformers computes it.
    c.rotary_dim = static_cast<index_t>(static_cast<double>(c.head_dim) * partial);
    if (c.rotary_dim < 2 || c.rotary_dim % 2 != 0)
        r.fail("field 'partial_rotary_factor' = ", partial, " gives ", c.rotary_dim,
               " rotary dims of head_dim = ", c.head_dim, "; expected an even number >= 2");

    auto [type_v, type_name] = lookup("rope_type", false);
    if (!type_v) std::tie(type_v, type_name) = lookup("type", false);
    std::string type = "default";
    if (type_v) {
        if (!type_v->is_string()) r.fail("field '", type_name, "' = ", type_v->dump(), "; expected a string");
        type = type_v->get<std::string>();
    }
    if (type == "default") {
        c.rope_scaling = pos::rope_scaling::none;
        return;
    }
    if (type == "linear") {
        c.rope_scaling = pos::rope_scaling::linear;
    } else if (type == "dynamic") {
        c.rope_scaling = pos::rope_scaling::dynamic_ntk;
        c.rope_original_max_positions = c.max_position_embeddings;
        if (c.rotary_dim <= 2) r.fail("dynamic RoPE scaling needs more than 2 rotary dims, got ", c.rotary_dim);
    } else {
        r.fail("field '", type_name, "' = \"", type,
               "\"; kite supports RoPE types default, linear and dynamic (not llama3, yarn, longrope)");
    }
    auto [f, fname] = lookup("factor", false);
    if (!f) r.fail("field 'rope_scaling.factor' is missing; expected a number >= 1 for ", type, " scaling");
    c.rope_factor = r.positive_value(*f, fname);
    if (c.rope_factor < 1.0) r.fail("field '", fname, "' = ", c.rope_factor, "; expected a number >= 1");
}

inline model_config parse_llama_like(const config_reader& r, architecture arch) {
    model_config c;
    c.arch = arch;
    c.vocab_size = r.count({"vocab_size"});
    c.hidden_size = r.count({"hidden_size"});
    c.intermediate_size = r.count({"intermediate_size"});
    c.num_layers = r.count({"num_hidden_layers"});
    c.num_heads = r.count({"num_attention_heads"});
    c.num_kv_heads = r.count({"num_key_value_heads"}, c.num_heads);
    const bool explicit_hd = arch == architecture::llama && r.find({"head_dim"}) != nullptr;
    if (explicit_hd) c.head_dim = r.count({"head_dim"});
    c.max_position_embeddings = r.count({"max_position_embeddings"}, arch == architecture::qwen2 ? 32768 : 2048);
    c.hidden_act = r.act({"hidden_act"}, "silu");
    c.mlp = mlp_type::gated;
    c.norm = norm_type::rms;
    c.norm_eps = r.positive({"rms_norm_eps"}, 1e-6);
    c.position = position_type::rope;
    c.tie_word_embeddings = r.flag({"tie_word_embeddings"}, false);
    if (arch == architecture::llama) {
        c.qkv_bias = c.o_bias = r.flag({"attention_bias"}, false);
        c.mlp_bias = r.flag({"mlp_bias"}, false);
    } else {
        // Qwen2 always has q/k/v biases and none on o_proj or the MLP.
        c.qkv_bias = true;
        if (r.flag({"use_sliding_window"}, false))
            r.fail("field 'use_sliding_window' = true; kite's Qwen2 attends to the whole context");
    }
    finish_heads(c, r, explicit_hd);
    read_rope(c, r);
    return c;
}

/// What BLOOM, GPT-2 and BERT share: MHA, LayerNorm, a plain (ungated) MLP, biases everywhere.
inline void set_classic_block(model_config& c) {
    c.num_kv_heads = c.num_heads;
    c.mlp = mlp_type::plain;
    c.norm = norm_type::layer;
    c.qkv_bias = c.o_bias = c.mlp_bias = true;
}

inline model_config parse_bloom(const config_reader& r) {
    model_config c;
    c.arch = architecture::bloom;
    c.vocab_size = r.count({"vocab_size"}, 250880);
    c.hidden_size = r.count({"hidden_size", "n_embed"});
    c.num_layers = r.count({"n_layer", "num_hidden_layers"});
    c.num_heads = r.count({"n_head", "num_attention_heads"});
    set_classic_block(c);
    c.intermediate_size = 4 * c.hidden_size;
    c.max_position_embeddings = 0;
    c.hidden_act = activation::gelu_tanh;
    c.norm_eps = r.positive({"layer_norm_epsilon"}, 1e-5);
    c.position = position_type::alibi;
    c.tie_word_embeddings = r.flag({"tie_word_embeddings"}, true);
    c.fused_qkv = true;
    c.embedding_norm = true;
    if (r.flag({"apply_residual_connection_post_layernorm"}, false))
        r.fail("field 'apply_residual_connection_post_layernorm' = true; kite's BLOOM adds the residual before the norm");
    finish_heads(c, r, false);
    return c;
}

inline model_config parse_gpt2(const config_reader& r) {
    model_config c;
    c.arch = architecture::gpt2;
    c.vocab_size = r.count({"vocab_size"}, 50257);
    c.hidden_size = r.count({"n_embd", "hidden_size"});
    c.num_layers = r.count({"n_layer", "num_hidden_layers"});
    c.num_heads = r.count({"n_head", "num_attention_heads"});
    set_classic_block(c);
    c.max_position_embeddings = r.count({"n_positions", "max_position_embeddings", "n_ctx"});
    c.intermediate_size = r.count({"n_inner"}, 4 * c.hidden_size);
    c.hidden_act = r.act({"activation_function"}, "gelu_new");
    c.norm_eps = r.positive({"layer_norm_epsilon"}, 1e-5);
    c.position = position_type::learned;
    c.tie_word_embeddings = r.flag({"tie_word_embeddings"}, true);
    c.fused_qkv = true;
    if (!r.flag({"scale_attn_weights"}, true))
        r.fail("field 'scale_attn_weights' = false; kite scales attention scores by 1/sqrt(head_dim)");
    if (r.flag({"scale_attn_by_inverse_layer_idx"}, false))
        r.fail("field 'scale_attn_by_inverse_layer_idx' = true is not supported");
    if (r.flag({"add_cross_attention"}, false))
        r.fail("field 'add_cross_attention' = true is not supported (decoder-only GPT-2)");
    finish_heads(c, r, false);
    return c;
}

inline model_config parse_bert(const config_reader& r) {
    model_config c;
    c.arch = architecture::bert;
    c.vocab_size = r.count({"vocab_size"});
    c.hidden_size = r.count({"hidden_size"});
    c.num_layers = r.count({"num_hidden_layers"});
    c.num_heads = r.count({"num_attention_heads"});
    set_classic_block(c);
    c.intermediate_size = r.count({"intermediate_size"});
    c.max_position_embeddings = r.count({"max_position_embeddings"});
    c.type_vocab_size = r.count({"type_vocab_size"}, 2, 0);
    c.hidden_act = r.act({"hidden_act"}, "gelu");
    c.norm_eps = r.positive({"layer_norm_eps"}, 1e-12);
    c.post_norm = true;
    c.causal = false;
    c.position = position_type::learned;
    c.tie_word_embeddings = r.flag({"tie_word_embeddings"}, true);
    c.embedding_norm = true;
    const std::string pe = r.text({"position_embedding_type"}, "absolute");
    if (pe != "absolute")
        r.fail("field 'position_embedding_type' = \"", pe, "\"; kite's BERT supports \"absolute\" only");
    if (r.flag({"is_decoder"}, false)) r.fail("field 'is_decoder' = true; kite's BERT is an encoder");
    finish_heads(c, r, false);
    return c;
}

}  // namespace detail

/// Parses a config.json object. `source` names it in error messages.
inline model_config parse_config(const nlohmann::json& j, std::string_view source = "config.json") {
    KITE_REQUIRE(j.is_object(), config_error, source, ": expected a JSON object");
    const detail::config_reader r(j, std::string(source));
    const std::string type = r.text({"model_type"}, std::nullopt);
    model_config c;
    if (type == "llama") {
        c = detail::parse_llama_like(r, architecture::llama);
    } else if (type == "qwen2") {
        c = detail::parse_llama_like(r, architecture::qwen2);
    } else if (type == "bloom") {
        c = detail::parse_bloom(r);
    } else if (type == "gpt2") {
        c = detail::parse_gpt2(r);
    } else if (type == "bert") {
        c = detail::parse_bert(r);
    } else {
        r.fail("field 'model_type' = \"", type, "\"; expected one of llama, qwen2, bloom, gpt2, bert");
    }
    c.model_type = type;
    c.bos_token_id = r.token_id("bos_token_id");
    c.pad_token_id = r.token_id("pad_token_id");
    c.eos_token_ids = r.token_ids("eos_token_id");
    return c;
}

/// Parses config.json text.
inline model_config parse_config(std::string_view json_text, std::string_view source) {
    const nlohmann::json j = nlohmann::json::parse(json_text.begin(), json_text.end(), nullptr, false);
    KITE_REQUIRE(!j.is_discarded(), config_error, source, ": not valid JSON");
    return parse_config(j, source);
}

/// Reads `path` (a config.json, or a folder holding one).
inline model_config load_config(const std::filesystem::path& path) {
    std::filesystem::path p = path;
    if (std::filesystem::is_directory(p)) p /= "config.json";
    const std::string text = io::read_text(p);
    return parse_config(std::string_view(text), p.string());
}

}  // namespace kite::model
