#pragma once
/// @file kite/model/formats/bert_loader.hpp
/// read_bert(path): a Hugging Face BERT checkpoint (config.json + model.safetensors, or a
/// sharded index) into a float32 kite::model::bert_checkpoint, the input of bert_encoder.
///
///   auto ckpt = kite::model::read_bert("models/all-MiniLM-L6-v2");   // folder or .safetensors
///   kite::model::bert_encoder<> encoder(ckpt);
///
/// Tensor names are BertModel's (`embeddings.*`, `encoder.layer.N.*`), with or without the
/// `bert.` prefix that BertFor* classes add; F32, F16 and BF16 tensors are read. Query, key and
/// value are stacked into kite's fused [q; k; v] projection. Checks: the config must describe
/// a BERT encoder (kite::config_error otherwise), every tensor must exist (kite::not_found_error
/// naming it) with the shape the config implies (kite::shape_error).

#include <filesystem>
#include <string>

#include "kite/core/error.hpp"
#include "kite/core/matrix.hpp"
#include "kite/model/config.hpp"
#include "kite/model/encoder.hpp"
#include "kite/model/formats/load.hpp"
#include "kite/model/formats/safetensors.hpp"

namespace kite::model {

/// Reads a Hugging Face BERT checkpoint: `path` is its folder or its .safetensors file (with
/// config.json beside it).
inline bert_checkpoint read_bert(const std::filesystem::path& path) {
    namespace fs = std::filesystem;
    const fs::path folder = fs::is_directory(path) ? path : path.parent_path();
    bert_checkpoint ck;
    ck.source = path.string();
    ck.config = load_config(folder);
    KITE_REQUIRE(ck.config.arch == architecture::bert, config_error, "read_bert: '", path.string(), "' is a ",
                 ck.config.model_type, " model; expected model_type \"bert\"");
    const model_config& c = ck.config;
    const safetensors_weights w(path);
    const detail::tensor_source src(w, {"bert."});
    const index_t h = c.hidden_size, I = c.intermediate_size;
    ck.word_embeddings = src.mat("embeddings.word_embeddings.weight", c.vocab_size, h);
    ck.position_embeddings = src.mat("embeddings.position_embeddings.weight", c.max_position_embeddings, h);
    // type_vocab_size 0: no segment embeddings; a zero row keeps the forward pass uniform.
    ck.token_type_embeddings = c.type_vocab_size
                                   ? src.mat("embeddings.token_type_embeddings.weight", c.type_vocab_size, h)
                                   : matrix<float>(1, h);
    ck.embedding_norm_weight = src.vec("embeddings.LayerNorm.weight", h);
    ck.embedding_norm_bias = src.vec("embeddings.LayerNorm.bias", h);
    for (index_t l = 0; l < c.num_layers; ++l) {
        const std::string p = "encoder.layer." + std::to_string(l) + ".";
        block_tensors b;
        const auto wq = src.mat(p + "attention.self.query.weight", h, h);
        const auto wk = src.mat(p + "attention.self.key.weight", h, h);
        const auto wv = src.mat(p + "attention.self.value.weight", h, h);
        b.qkv = detail::stack({&wq, &wk, &wv});
        const auto bq = src.vec(p + "attention.self.query.bias", h), bk = src.vec(p + "attention.self.key.bias", h),
                   bv = src.vec(p + "attention.self.value.bias", h);
        b.qkv_bias = detail::concat({&bq, &bk, &bv});
        b.o = src.mat(p + "attention.output.dense.weight", h, h);
        b.o_bias = src.vec(p + "attention.output.dense.bias", h);
        b.attn_norm_weight = src.vec(p + "attention.output.LayerNorm.weight", h);
        b.attn_norm_bias = src.vec(p + "attention.output.LayerNorm.bias", h);
        b.up = src.mat(p + "intermediate.dense.weight", I, h);
        b.up_bias = src.vec(p + "intermediate.dense.bias", I);
        b.down = src.mat(p + "output.dense.weight", h, I);
        b.down_bias = src.vec(p + "output.dense.bias", h);
        b.mlp_norm_weight = src.vec(p + "output.LayerNorm.weight", h);
        b.mlp_norm_bias = src.vec(p + "output.LayerNorm.bias", h);
        ck.layers.push_back(std::move(b));
    }
    detail::require_bert(ck);
    return ck;
}

}  // namespace kite::model
