#pragma once
/// @file kite/model/formats/load.hpp
/// Reading real checkpoints into kite's canonical float32 layout (kite/model/weights.hpp), and
/// building a decoder from them:
///
///   read_hf(folder)         Hugging Face config.json + model.safetensors (or a sharded index):
///                           Llama / Qwen2, BLOOM, GPT-2; F32, F16 and BF16 tensors
///   read_llama2c(file)      a llama2.c version-0 checkpoint (.bin)
///   read_checkpoint(path)   either, by what the path is
///   load<Decoder>(path, options)  read_checkpoint, then Decoder(checkpoint, options)
///
///   using model_t = kite::model::llama_decoder<kite::quant::absmax<8>>;
///   auto model = kite::model::load<model_t>("models/tiny-llama");
///
/// The safetensors files stay memory-mapped only while reading; every tensor's shape is checked
/// against the config (kite::shape_error naming the file and tensor), a missing tensor is a
/// kite::not_found_error naming it. Family specifics handled here:
///   - BLOOM's query_key_value rows are [head][q|k|v][head_dim]; they are regrouped into
///     kite's [q heads | k heads | v heads];
///   - GPT-2's Conv1D weights are stored [in][out] and are transposed; c_attn is already
///     [q | k | v] along its outputs;
///   - tied embeddings (tie_word_embeddings) leave lm_head empty: the classifier is the embedding;
///   - names may carry the "model." / "transformer." prefix of the *ForCausalLM classes or not.

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <initializer_list>
#include <string>
#include <string_view>
#include <vector>

#include "kite/core/error.hpp"
#include "kite/core/matrix.hpp"
#include "kite/model/config.hpp"
#include "kite/model/formats/llama2c.hpp"
#include "kite/model/formats/safetensors.hpp"
#include "kite/model/weights.hpp"

namespace kite::model {

namespace detail {

/// Tensors of one model by name, trying each prefix in turn; shapes checked on every read.
class tensor_source {
public:
    tensor_source(const safetensors_weights& w, std::initializer_list<const char*> prefixes)
        : w_(w), prefixes_(prefixes.begin(), prefixes.end()) {
        prefixes_.push_back("");
    }

    bool has(std::string_view name) const { return find(name) != nullptr; }

    /// A [n] vector.
    std::vector<float> vec(std::string_view name, index_t n) const {
        const tensor_ref t = get(name);
        t.require_shape({n});
        return t.to_float();
    }
    /// A [rows][cols] matrix stored as such.
    matrix<float> mat(std::string_view name, index_t rows, index_t cols) const {
        const tensor_ref t = get(name);
        t.require_shape({rows, cols});
        matrix<float> m(rows, cols, uninitialized);
        t.to_float(m.flat());
        return m;
    }
    /// A [rows][cols] matrix stored transposed, as [cols][rows] (GPT-2's Conv1D).
    matrix<float> mat_transposed(std::string_view name, index_t rows, index_t cols) const {
        const matrix<float> s = mat(name, cols, rows);
        matrix<float> m(rows, cols, uninitialized);
        for (index_t r = 0; r < rows; ++r)
            for (index_t c = 0; c < cols; ++c) m(r, c) = s(c, r);
        return m;
    }

private:
    const tensor_info* find(std::string_view name) const {
        for (const auto& p : prefixes_)
            if (const tensor_info* t = w_.find(p + std::string(name))) return t;
        return nullptr;
    }
    tensor_ref get(std::string_view name) const {
        if (find(name) == nullptr) {
            std::string tried;
            for (const auto& p : prefixes_) tried += (tried.empty() ? "'" : ", '") + p + std::string(name) + "'";
            kite::detail::raise<not_found_error>("checkpoint: no tensor ", tried, "; expected one of them");
        }
        for (const auto& p : prefixes_)
            if (w_.contains(p + std::string(name))) return w_.tensor(p + std::string(name));
        return w_.tensor(name);
    }

    const safetensors_weights& w_;
    std::vector<std::string> prefixes_;
};

/// Rows [r0, r0 + m.rows()) of dst = m.
inline void put_rows(matrix<float>& dst, index_t r0, const matrix<float>& m) {
    for (index_t r = 0; r < m.rows(); ++r) std::copy(m.row(r).begin(), m.row(r).end(), dst.row(r0 + r).begin());
}
/// [a; b; c] stacked by rows.
inline matrix<float> stack(std::initializer_list<const matrix<float>*> parts) {
    index_t rows = 0;
    const index_t cols = (*parts.begin())->cols();
    for (const auto* p : parts) rows += p->rows();
    matrix<float> out(rows, cols, uninitialized);
    index_t r = 0;
    for (const auto* p : parts) {
        put_rows(out, r, *p);
        r += p->rows();
    }
    return out;
}
inline std::vector<float> concat(std::initializer_list<const std::vector<float>*> parts) {
    std::vector<float> out;
    for (const auto* p : parts) out.insert(out.end(), p->begin(), p->end());
    return out;
}

inline matrix<float> read_lm_head(const model_config& c, const tensor_source& src) {
    if (c.tie_word_embeddings) return {};
    return src.mat("lm_head.weight", c.vocab_size, c.hidden_size);
}

/// Llama, Qwen2 (and Mistral-style) names.
inline model_tensors read_llama_family(const model_config& c, const tensor_source& src) {
    model_tensors t;
    const index_t h = c.hidden_size, q = c.q_dim(), kv = c.kv_dim(), I = c.intermediate_size;
    t.embedding = src.mat("embed_tokens.weight", c.vocab_size, h);
    for (index_t l = 0; l < c.num_layers; ++l) {
        const std::string p = "layers." + std::to_string(l) + ".";
        block_tensors b;
        b.attn_norm_weight = src.vec(p + "input_layernorm.weight", h);
        const auto wq = src.mat(p + "self_attn.q_proj.weight", q, h);
        const auto wk = src.mat(p + "self_attn.k_proj.weight", kv, h);
        const auto wv = src.mat(p + "self_attn.v_proj.weight", kv, h);
        b.qkv = stack({&wq, &wk, &wv});
        if (c.qkv_bias) {
            const auto bq = src.vec(p + "self_attn.q_proj.bias", q), bk = src.vec(p + "self_attn.k_proj.bias", kv),
                       bv = src.vec(p + "self_attn.v_proj.bias", kv);
            b.qkv_bias = concat({&bq, &bk, &bv});
        }
        b.o = src.mat(p + "self_attn.o_proj.weight", h, q);
        if (c.o_bias) b.o_bias = src.vec(p + "self_attn.o_proj.bias", h);
        b.mlp_norm_weight = src.vec(p + "post_attention_layernorm.weight", h);
        const auto wg = src.mat(p + "mlp.gate_proj.weight", I, h);
        const auto wu = src.mat(p + "mlp.up_proj.weight", I, h);
        b.up = stack({&wg, &wu});
        b.down = src.mat(p + "mlp.down_proj.weight", h, I);
        if (c.mlp_bias) {
            const auto bg = src.vec(p + "mlp.gate_proj.bias", I), bu = src.vec(p + "mlp.up_proj.bias", I);
            b.up_bias = concat({&bg, &bu});
            b.down_bias = src.vec(p + "mlp.down_proj.bias", h);
        }
        t.blocks.push_back(std::move(b));
    }
    t.final_norm_weight = src.vec("norm.weight", h);
    t.lm_head = read_lm_head(c, src);
    return t;
}

/// BLOOM names; query_key_value regrouped from [head][q|k|v][d] to [q | k | v][head][d].
inline model_tensors read_bloom(const model_config& c, const tensor_source& src) {
    model_tensors t;
    const index_t h = c.hidden_size, n = c.num_heads, d = c.head_dim, I = c.intermediate_size;
    t.embedding = src.mat("word_embeddings.weight", c.vocab_size, h);
    t.embedding_norm_weight = src.vec("word_embeddings_layernorm.weight", h);
    t.embedding_norm_bias = src.vec("word_embeddings_layernorm.bias", h);
    for (index_t l = 0; l < c.num_layers; ++l) {
        const std::string p = "h." + std::to_string(l) + ".";
        block_tensors b;
        b.attn_norm_weight = src.vec(p + "input_layernorm.weight", h);
        b.attn_norm_bias = src.vec(p + "input_layernorm.bias", h);
        const auto w = src.mat(p + "self_attention.query_key_value.weight", 3 * h, h);
        const auto bias = src.vec(p + "self_attention.query_key_value.bias", 3 * h);
        b.qkv = matrix<float>(3 * h, h, uninitialized);
        b.qkv_bias.resize(3 * h);
        for (index_t head = 0; head < n; ++head)
            for (index_t j = 0; j < 3; ++j)      // q, k, v
                for (index_t e = 0; e < d; ++e) {
                    const index_t from = (head * 3 + j) * d + e, to = j * h + head * d + e;
                    std::copy(w.row(from).begin(), w.row(from).end(), b.qkv.row(to).begin());
                    b.qkv_bias[to] = bias[from];
                }
        b.o = src.mat(p + "self_attention.dense.weight", h, h);
        b.o_bias = src.vec(p + "self_attention.dense.bias", h);
        b.mlp_norm_weight = src.vec(p + "post_attention_layernorm.weight", h);
        b.mlp_norm_bias = src.vec(p + "post_attention_layernorm.bias", h);
        b.up = src.mat(p + "mlp.dense_h_to_4h.weight", I, h);
        b.up_bias = src.vec(p + "mlp.dense_h_to_4h.bias", I);
        b.down = src.mat(p + "mlp.dense_4h_to_h.weight", h, I);
        b.down_bias = src.vec(p + "mlp.dense_4h_to_h.bias", h);
        t.blocks.push_back(std::move(b));
    }
    t.final_norm_weight = src.vec("ln_f.weight", h);
    t.final_norm_bias = src.vec("ln_f.bias", h);
    t.lm_head = read_lm_head(c, src);
    return t;
}

/// GPT-2 names; Conv1D weights [in][out] transposed.
inline model_tensors read_gpt2(const model_config& c, const tensor_source& src) {
    model_tensors t;
    const index_t h = c.hidden_size, I = c.intermediate_size;
    t.embedding = src.mat("wte.weight", c.vocab_size, h);
    t.positions = src.mat("wpe.weight", c.max_position_embeddings, h);
    for (index_t l = 0; l < c.num_layers; ++l) {
        const std::string p = "h." + std::to_string(l) + ".";
        block_tensors b;
        b.attn_norm_weight = src.vec(p + "ln_1.weight", h);
        b.attn_norm_bias = src.vec(p + "ln_1.bias", h);
        b.qkv = src.mat_transposed(p + "attn.c_attn.weight", 3 * h, h);
        b.qkv_bias = src.vec(p + "attn.c_attn.bias", 3 * h);
        b.o = src.mat_transposed(p + "attn.c_proj.weight", h, h);
        b.o_bias = src.vec(p + "attn.c_proj.bias", h);
        b.mlp_norm_weight = src.vec(p + "ln_2.weight", h);
        b.mlp_norm_bias = src.vec(p + "ln_2.bias", h);
        b.up = src.mat_transposed(p + "mlp.c_fc.weight", I, h);
        b.up_bias = src.vec(p + "mlp.c_fc.bias", I);
        b.down = src.mat_transposed(p + "mlp.c_proj.weight", h, I);
        b.down_bias = src.vec(p + "mlp.c_proj.bias", h);
        t.blocks.push_back(std::move(b));
    }
    t.final_norm_weight = src.vec("ln_f.weight", h);
    t.final_norm_bias = src.vec("ln_f.bias", h);
    t.lm_head = read_lm_head(c, src);
    return t;
}

}  // namespace detail

/// Reads a Hugging Face decoder checkpoint: `path` is its folder (config.json beside
/// model.safetensors or model.safetensors.index.json) or the .safetensors file itself.
/// Llama, Qwen2, BLOOM and GPT-2; a BERT config is refused (an encoder).
inline checkpoint read_hf(const std::filesystem::path& path) {
    namespace fs = std::filesystem;
    const fs::path folder = fs::is_directory(path) ? path : path.parent_path();
    checkpoint ck;
    ck.source = path.string();
    ck.config = load_config(folder);
    const safetensors_weights w(path);
    switch (ck.config.arch) {
        case architecture::llama:
        case architecture::qwen2: ck.tensors = detail::read_llama_family(ck.config, detail::tensor_source(w, {"model."})); break;
        case architecture::bloom: ck.tensors = detail::read_bloom(ck.config, detail::tensor_source(w, {"transformer."})); break;
        case architecture::gpt2: ck.tensors = detail::read_gpt2(ck.config, detail::tensor_source(w, {"transformer."})); break;
        case architecture::bert:
            kite::detail::raise<config_error>("read_hf: '", path.string(),
                                              "' is a BERT encoder; kite's decoder loaders read Llama, Qwen2, BLOOM and GPT-2");
    }
    detail::check_tensors(ck.config, ck.tensors, ck.source);
    return ck;
}

/// Reads a llama2.c version-0 checkpoint. The config is llama2c_checkpoint::to_model_config(),
/// with BOS added to the stop tokens: llama2.c separates training texts by BOS and its run.c
/// stops generating when the model emits it.
inline checkpoint read_llama2c(const std::filesystem::path& path) {
    const llama2c_checkpoint f(path);
    checkpoint ck;
    ck.source = f.path();
    ck.config = f.to_model_config();
    ck.config.eos_token_ids.push_back(1);
    const model_config& c = ck.config;
    model_tensors& t = ck.tensors;
    t.embedding = matrix<float>(f.token_embedding());
    for (index_t l = 0; l < c.num_layers; ++l) {
        block_tensors b;
        const auto as_vec = [](std::span<const float> s) { return std::vector<float>(s.begin(), s.end()); };
        b.attn_norm_weight = as_vec(f.rms_att(l));
        const matrix<float> wq(f.wq(l)), wk(f.wk(l)), wv(f.wv(l)), w1(f.w1(l)), w3(f.w3(l));
        b.qkv = detail::stack({&wq, &wk, &wv});
        b.o = matrix<float>(f.wo(l));
        b.mlp_norm_weight = as_vec(f.rms_ffn(l));
        b.up = detail::stack({&w1, &w3});  // w1 is the gate, w3 the up projection
        b.down = matrix<float>(f.w2(l));
        t.blocks.push_back(std::move(b));
    }
    t.final_norm_weight.assign(f.rms_final().begin(), f.rms_final().end());
    if (!c.tie_word_embeddings) t.lm_head = matrix<float>(f.classifier());
    detail::check_tensors(ck.config, ck.tensors, ck.source);
    return ck;
}

/// read_llama2c for a regular file that is not .safetensors or .json; read_hf otherwise.
inline checkpoint read_checkpoint(const std::filesystem::path& path) {
    namespace fs = std::filesystem;
    KITE_REQUIRE(fs::exists(path), io_error, "read_checkpoint: '", path.string(), "' does not exist");
    const auto ext = path.extension();
    if (fs::is_regular_file(path) && ext != ".safetensors" && ext != ".json") return read_llama2c(path);
    return read_hf(path);
}

/// Reads the checkpoint at `path` and builds a `Decoder` from it (see decoder's constructor).
template <class Decoder>
Decoder load(const std::filesystem::path& path, const typename Decoder::options& opt = {}) {
    return Decoder(read_checkpoint(path), opt);
}

}  // namespace kite::model
