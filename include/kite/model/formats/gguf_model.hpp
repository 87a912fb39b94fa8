#pragma once
/// @file kite/model/formats/gguf_model.hpp
/// read_gguf: a decoder-only model from a GGUF file (architectures `llama` — SmolLM2, TinyLlama,
/// Llama 2 / 3 — and `qwen2`), its configuration from the file's keys and its weights as the
/// file stores them (kite::quant::ggml_weights views into the memory map: F32, F16, BF16, Q8_0,
/// Q4_0, Q4_1 used as stored; the K-quants Q4_K, Q5_K, Q6_K decoded exactly at load into F16 —
/// or F32, see gguf_options — with the added error reported per tensor).
///
///   const kite::model::gguf_file file("models/SmolLM2-135M-Instruct.Q4_1.gguf");
///   const auto m = kite::model::read_gguf(file);                 // prepared_model<ggml_weights>
///   kite::model::gguf_llama_decoder<> model(m);                   // rope<interleaved> for llama
///
/// RoPE: llama.cpp's converter stores a `llama` model's Q and K rows permuted so that its RoPE
/// rotates interleaved pairs (2i, 2i+1); kite uses them as stored with
/// kite::pos::rope<interleaved> (config.rope_interleaved = true). `qwen2` files are not permuted
/// and rotate half-split pairs (kite::pos::rope<rotate_half>). gguf_llama_decoder and
/// gguf_qwen2_decoder name the two types (a decoder of the other kind refuses the config).
///
/// Anything else — another architecture, a tensor type kite cannot read, a RoPE scaling it does
/// not implement, a missing or misshapen tensor — is a kite error naming it.

#include <algorithm>
#include <cmath>
#include <cstring>
#include <cstdint>
#include <string>
#include <vector>

#include "kite/core/error.hpp"
#include "kite/model/config.hpp"
#include "kite/model/decoder.hpp"
#include "kite/model/formats/gguf.hpp"
#include "kite/model/weights.hpp"
#include "kite/quant/ggml.hpp"
#include "kite/quant/ggml_a8.hpp"
#include "kite/quant/ggml_panel.hpp"

namespace kite::model {

/// How read_gguf stores tensors it cannot use as stored (the K-quants).
struct gguf_options {
    /// F16 (default: relative error <= 2^-11 per weight, half the memory of F32) or F32 (exact).
    quant::ggml::type kquants_as = quant::ggml::type::f16;
};

/// A tensor decoded at load (a K-quant) and the error its storage added.
struct gguf_conversion {
    std::string tensor;
    quant::ggml::type from, to;
    double max_abs_error = 0;       ///< largest |stored - decoded|
    double max_rel_error = 0;       ///< largest |stored - decoded| / |decoded| over nonzero weights
};

/// The model of a GGUF file in kite's canonical layout, with what had to be converted.
struct gguf_model : prepared_model<quant::ggml_weights> {
    std::vector<gguf_conversion> conversions;
};

namespace detail {

/// The weights of `t` (rows = ne[1..], cols = ne[0]) as a ggml_weights view, or decoded into
/// opt.kquants_as for a K-quant; anything else is an error naming the tensor and its type.
inline quant::ggml_weights gguf_weights(const gguf_file& f, const gguf_tensor& t, const gguf_options& opt,
                                        std::vector<gguf_conversion>& conv) {
    namespace gg = quant::ggml;
    const index_t rows = static_cast<index_t>(t.rows()), cols = static_cast<index_t>(t.cols());
    if (gg::native(t.type)) return quant::ggml_weights(t.type, t.data, rows, cols, f.mapping());
    KITE_REQUIRE(gg::decodable(t.type), config_error, f.path(), ": tensor '", t.name, "' has type ", t.type_name(),
                 ", which kite does not read; supported: F32, F16, BF16, Q8_0, Q4_0, Q4_1 (used as stored) and "
                 "Q4_K, Q5_K, Q6_K (decoded at load)");
    const gg::type to = opt.kquants_as;
    KITE_REQUIRE(to == gg::type::f16 || to == gg::type::f32, invalid_argument,
                 "gguf_options::kquants_as must be F16 or F32, not ", gg::name(to));
    const std::size_t rb = gg::row_bytes(to, cols), in_rb = gg::row_bytes(t.type, cols);
    aligned_buffer<std::byte> out(rows * rb);
    std::vector<float> row(cols);
    gguf_conversion c{t.name, t.type, to};
    for (index_t r = 0; r < rows; ++r) {
        gg::decode_row(t.type, t.data.data() + r * in_rb, row.data(), cols);
        if (to == gg::type::f32) {
            std::memcpy(out.data() + r * rb, row.data(), cols * sizeof(float));
            continue;
        }
        for (index_t i = 0; i < cols; ++i) {
            const std::uint16_t h = kite::detail::float_to_fp16_bits(row[i]);
            std::memcpy(out.data() + r * rb + 2 * i, &h, 2);
            const double back = kite::detail::fp16_bits_to_float(h), err = std::abs(back - row[i]);
            c.max_abs_error = std::max(c.max_abs_error, err);
            if (row[i] != 0.0f) c.max_rel_error = std::max(c.max_rel_error, err / std::abs(row[i]));
        }
    }
    conv.push_back(c);
    return quant::ggml_weights::owning(to, std::move(out), rows, cols);
}

/// A 1-D F32 (or F16 / BF16) tensor as floats.
inline std::vector<float> gguf_vector(const gguf_file& f, const gguf_tensor& t) {
    KITE_REQUIRE(t.rows() == 1, format_error, f.path(), ": tensor '", t.name, "' has ", t.rows(),
                 " rows; expected a vector");
    KITE_REQUIRE(t.type == quant::ggml::type::f32 || t.type == quant::ggml::type::f16 || t.type == quant::ggml::type::bf16,
                 format_error, f.path(), ": tensor '", t.name, "' has type ", t.type_name(), "; expected F32, F16 or BF16");
    std::vector<float> v(t.cols());
    quant::ggml::decode_row(t.type, t.data.data(), v.data(), v.size());
    return v;
}

}  // namespace detail

/// The model configuration from a GGUF file's keys (`<arch>.block_count`, ...).
inline model_config gguf_config(const gguf_file& f) {
    const std::string arch = f.get<std::string>("general.architecture");
    model_config c;
    if (arch == "llama") {
        c.arch = architecture::llama;
        c.rope_interleaved = true;  // Q and K rows permuted by llama.cpp's converter
    } else if (arch == "qwen2") {
        c.arch = architecture::qwen2;
        c.rope_interleaved = false;
        c.qkv_bias = true;
    } else {
        kite::detail::raise<config_error>(f.path(), ": general.architecture is '", arch,
                                          "'; kite reads GGUF models of the architectures llama and qwen2");
    }
    c.model_type = arch;
    const auto key = [&](const char* k) { return arch + "." + k; };
    const auto need = [&](const char* k) {
        const auto v = f.get<index_t>(key(k));
        KITE_REQUIRE(v >= 1 && v <= (index_t{1} << 24), config_error, f.path(), ": ", key(k), " = ", v,
                     "; expected 1..2^24");
        return v;
    };
    c.num_layers = need("block_count");
    c.hidden_size = need("embedding_length");
    c.intermediate_size = need("feed_forward_length");
    c.num_heads = need("attention.head_count");
    c.num_kv_heads = f.find(key("attention.head_count_kv")) ? need("attention.head_count_kv") : c.num_heads;
    c.max_position_embeddings = f.find(key("context_length")) ? need("context_length") : 4096;
    KITE_REQUIRE(c.hidden_size % c.num_heads == 0, config_error, f.path(), ": embedding_length ", c.hidden_size,
                 " is not a multiple of head_count ", c.num_heads);
    c.head_dim = f.find(key("attention.key_length")) ? need("attention.key_length") : c.hidden_size / c.num_heads;
    if (const auto* v = f.find(key("attention.value_length")))
        KITE_REQUIRE(v->as<index_t>() == c.head_dim, config_error, f.path(), ": ", key("attention.value_length"), " = ",
                     v->as<index_t>(), " differs from the key length ", c.head_dim, "; kite needs them equal");
    c.rotary_dim = f.find(key("rope.dimension_count")) ? need("rope.dimension_count") : c.head_dim;
    KITE_REQUIRE(c.rotary_dim == c.head_dim, config_error, f.path(), ": ", key("rope.dimension_count"), " = ",
                 c.rotary_dim, "; kite's GGUF path rotates whole heads (", c.head_dim, ")");
    c.rope_theta = f.get_or<double>(key("rope.freq_base"), 10000.0);
    c.norm_eps = f.get_or<double>(key("attention.layer_norm_rms_epsilon"), 1e-5);
    KITE_REQUIRE(std::isfinite(c.rope_theta) && c.rope_theta > 1 && std::isfinite(c.norm_eps) && c.norm_eps >= 0,
                 config_error, f.path(), ": rope.freq_base ", c.rope_theta, " or rms epsilon ", c.norm_eps,
                 " out of range");
    const std::string scaling = f.get_or<std::string>(key("rope.scaling.type"), "none");
    if (scaling == "linear") {
        c.rope_scaling = pos::rope_scaling::linear;
        c.rope_factor = f.get<double>(key("rope.scaling.factor"));
    } else if (scaling != "none") {
        kite::detail::raise<config_error>(f.path(), ": ", key("rope.scaling.type"), " is '", scaling,
                                          "'; kite implements none and linear");
    }
    const gguf_tensor& emb = f.tensor("token_embd.weight");
    c.vocab_size = static_cast<index_t>(emb.rows());
    if (const auto* v = f.find(key("vocab_size")))
        KITE_REQUIRE(v->as<index_t>() == c.vocab_size, config_error, f.path(), ": ", key("vocab_size"), " = ",
                     v->as<index_t>(), " but token_embd.weight has ", c.vocab_size, " rows");
    c.hidden_act = activation::silu;
    c.mlp = mlp_type::gated;
    c.norm = norm_type::rms;
    c.position = position_type::rope;
    c.tie_word_embeddings = f.find_tensor("output.weight") == nullptr;
    if (const auto* b = f.find("tokenizer.ggml.bos_token_id")) c.bos_token_id = b->as<std::int64_t>();
    if (const auto* e = f.find("tokenizer.ggml.eos_token_id")) c.eos_token_ids.push_back(e->as<std::int64_t>());
    if (const auto* e = f.find("tokenizer.ggml.eot_token_id"))
        if (std::find(c.eos_token_ids.begin(), c.eos_token_ids.end(), e->as<std::int64_t>()) == c.eos_token_ids.end())
            c.eos_token_ids.push_back(e->as<std::int64_t>());
    if (const auto* p = f.find("tokenizer.ggml.padding_token_id")) c.pad_token_id = p->as<std::int64_t>();
    return c;
}

/// The model of a GGUF file (see the file comment).
inline gguf_model read_gguf(const gguf_file& f, const gguf_options& opt = {}) {
    gguf_model m;
    m.config = gguf_config(f);
    m.source = f.path();
    const model_config& c = m.config;
    const auto w = [&](const std::string& name) { return detail::gguf_weights(f, f.tensor(name), opt, m.conversions); };
    const auto v = [&](const std::string& name) { return detail::gguf_vector(f, f.tensor(name)); };
    m.embedding = w("token_embd.weight");
    if (!c.tie_word_embeddings) m.lm_head = w("output.weight");
    m.final_norm_weight = v("output_norm.weight");
    for (index_t l = 0; l < c.num_layers; ++l) {
        const std::string p = "blk." + std::to_string(l) + ".";
        prepared_block<quant::ggml_weights> b;
        b.attn_norm_weight = v(p + "attn_norm.weight");
        b.mlp_norm_weight = v(p + "ffn_norm.weight");
        b.qkv = quant::ggml_weights::stack({w(p + "attn_q.weight"), w(p + "attn_k.weight"), w(p + "attn_v.weight")});
        if (f.find_tensor(p + "attn_q.bias")) {
            for (const char* n : {"attn_q.bias", "attn_k.bias", "attn_v.bias"}) {
                const auto part = v(p + n);
                b.qkv_bias.insert(b.qkv_bias.end(), part.begin(), part.end());
            }
        }
        b.o = w(p + "attn_output.weight");
        b.up = quant::ggml_weights::stack({w(p + "ffn_gate.weight"), w(p + "ffn_up.weight")});
        b.down = w(p + "ffn_down.weight");
        m.blocks.push_back(std::move(b));
    }
    detail::check_prepared(c, m);
    return m;
}

/// The decoder type of a `llama` GGUF file (RoPE on interleaved pairs).
template <kv::kv_cache Cache = kv::contiguous<float>, attn::attention_kernel Kernel = attn::flash<64, 64>>
using gguf_llama_decoder =
    decoder<attn::gqa, pos::rope<pos::interleaved>, Kernel, Cache, norm::rms, mlp::swiglu, quant::ggml_blocks>;
/// The decoder type of a `qwen2` GGUF file (RoPE rotate_half, q/k/v biases).
template <kv::kv_cache Cache = kv::contiguous<float>, attn::attention_kernel Kernel = attn::flash<64, 64>>
using gguf_qwen2_decoder =
    decoder<attn::gqa, pos::rope<pos::rotate_half>, Kernel, Cache, norm::rms, mlp::swiglu, quant::ggml_blocks>;

/// The model with its Q4_0 / Q4_1 / Q8_0 weights repacked for int8 activations
/// (kite/quant/ggml_a8.hpp: faster, approximately the float path; see there).
inline prepared_model<quant::ggml_a8_weights> with_int8_activations(const prepared_model<quant::ggml_weights>& m) {
    return convert_weights<quant::ggml_a8_weights>(m, [](const quant::ggml_weights& w) { return quant::ggml_a8_weights(w); });
}

/// The decoder types of llama / qwen2 GGUF files with int8 activations.
template <kv::kv_cache Cache = kv::contiguous<float>, attn::attention_kernel Kernel = attn::flash<64, 64>>
using gguf_llama_decoder_a8 =
    decoder<attn::gqa, pos::rope<pos::interleaved>, Kernel, Cache, norm::rms, mlp::swiglu, quant::ggml_blocks_a8>;
template <kv::kv_cache Cache = kv::contiguous<float>, attn::attention_kernel Kernel = attn::flash<64, 64>>
using gguf_qwen2_decoder_a8 =
    decoder<attn::gqa, pos::rope<pos::rotate_half>, Kernel, Cache, norm::rms, mlp::swiglu, quant::ggml_blocks_a8>;

/// The model with its Q4_0 / Q4_1 / Q8_0 weights repacked in panels for float activations
/// (kite/quant/ggml_panel.hpp: the float path's precision, about twice as fast as multiplying
/// the blocks as stored, at the price of a copy instead of the file's mapping).
inline prepared_model<quant::ggml_panel_weights> with_float_panels(const prepared_model<quant::ggml_weights>& m) {
    return convert_weights<quant::ggml_panel_weights>(m, [](const quant::ggml_weights& w) { return quant::ggml_panel_weights(w); });
}

/// The decoder types of llama / qwen2 GGUF files with float activations on repacked panels.
template <kv::kv_cache Cache = kv::contiguous<float>, attn::attention_kernel Kernel = attn::flash<64, 64>>
using gguf_llama_decoder_panel =
    decoder<attn::gqa, pos::rope<pos::interleaved>, Kernel, Cache, norm::rms, mlp::swiglu, quant::ggml_blocks_panel>;
template <kv::kv_cache Cache = kv::contiguous<float>, attn::attention_kernel Kernel = attn::flash<64, 64>>
using gguf_qwen2_decoder_panel =
    decoder<attn::gqa, pos::rope<pos::rotate_half>, Kernel, Cache, norm::rms, mlp::swiglu, quant::ggml_blocks_panel>;

/// Builds the decoder that fits the model of `file` (llama or qwen2; float activations on
/// repacked panels, or int8 ones when `int8_activations`; the Cache and Kernel policies given)
/// and calls f(model) with it, returning what f returns: one call site for the four decoder
/// types (f is a generic lambda, instantiated for each). The file's pages are released once the
/// weights are repacked. (gguf_llama_decoder / gguf_qwen2_decoder multiply the blocks as the
/// file's mapping stores them, without a copy, at about half the float speed.)
///
///   kite::model::with_gguf_decoder(file, false, [&](auto& model) { return generate(model, ids, opt); });
template <kv::kv_cache Cache = kv::contiguous<float>, attn::attention_kernel Kernel = attn::flash<64, 64>, class F>
decltype(auto) with_gguf_decoder(const gguf_file& file, bool int8_activations, F&& f) {
    const auto m = read_gguf(file);
    if (int8_activations) {
        const auto m8 = with_int8_activations(m);
        file.release_pages();
        if (m.config.rope_interleaved) {
            gguf_llama_decoder_a8<Cache, Kernel> model(m8);
            return f(model);
        }
        gguf_qwen2_decoder_a8<Cache, Kernel> model(m8);
        return f(model);
    }
    const auto mp = with_float_panels(m);
    file.release_pages();
    if (m.config.rope_interleaved) {
        gguf_llama_decoder_panel<Cache, Kernel> model(mp);
        return f(model);
    }
    gguf_qwen2_decoder_panel<Cache, Kernel> model(mp);
    return f(model);
}

}  // namespace kite::model
