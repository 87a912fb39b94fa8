#pragma once
/// @file kite/model/weights.hpp
/// A checkpoint in kite's canonical float32 layout: what every loader (Hugging Face Llama /
/// Qwen2 / BLOOM / GPT-2 safetensors, llama2.c) produces and what a decoder is built from,
/// whatever weight format it stores. Fused projections follow one convention:
///
///   qkv   [q_dim + 2 kv_dim][hidden]: the query rows (head-major), then the key rows, then the
///         value rows (GPT-2's c_attn after transposing; BLOOM's per-head q|k|v is regrouped);
///   up    gated MLPs: [2 intermediate][hidden], the gate rows then the up rows;
///         plain MLPs: [intermediate][hidden];
///   every matrix is [out_features][in_features] (GPT-2's Conv1D weights are transposed).
///
/// Biases and norm biases are empty when the model has none.

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "kite/core/error.hpp"
#include "kite/core/matrix.hpp"
#include "kite/core/validate.hpp"
#include "kite/model/config.hpp"

namespace kite::model {

/// One transformer block, float32, canonical layout (see the file comment).
struct block_tensors {
    std::vector<float> attn_norm_weight, attn_norm_bias;  // [hidden], bias may be empty
    matrix<float> qkv;                                    // [q_dim + 2 kv_dim][hidden]
    std::vector<float> qkv_bias;                          // [q_dim + 2 kv_dim] or empty
    matrix<float> o;                                      // [hidden][q_dim]
    std::vector<float> o_bias;                            // [hidden] or empty
    std::vector<float> mlp_norm_weight, mlp_norm_bias;    // [hidden], bias may be empty
    matrix<float> up;                                     // [2I or I][hidden]
    std::vector<float> up_bias;                           // [2I or I] or empty
    matrix<float> down;                                   // [hidden][I]
    std::vector<float> down_bias;                         // [hidden] or empty

    /// A deep copy (matrices are move-only).
    block_tensors clone() const {
        return {attn_norm_weight, attn_norm_bias, qkv.clone(), qkv_bias, o.clone(), o_bias,
                mlp_norm_weight, mlp_norm_bias, up.clone(), up_bias, down.clone(), down_bias};
    }
};

/// All tensors of a decoder-only model, float32, canonical layout.
struct model_tensors {
    matrix<float> embedding;                              // [vocab][hidden]
    matrix<float> positions;                              // learned positions [max_pos][hidden], else empty
    std::vector<float> embedding_norm_weight, embedding_norm_bias;  // BLOOM, else empty
    std::vector<block_tensors> blocks;                    // [layer]
    std::vector<float> final_norm_weight, final_norm_bias;  // [hidden], bias may be empty
    matrix<float> lm_head;                                // [vocab][hidden]; empty when tied to embedding

    /// The classifier: lm_head, or the embedding when the two are tied.
    matrix_view<const float> classifier() const noexcept {
        return lm_head.empty() ? embedding.view() : lm_head.view();
    }
};

/// A model's configuration and its float32 tensors.
struct checkpoint {
    model_config config;
    model_tensors tensors;
    std::string source;  ///< the path it was read from (for messages)
};

/// One transformer block whose projections are already in weight format F (a GGUF file's
/// blocks, used as stored), in the canonical layout of block_tensors.
template <class F>
struct prepared_block {
    std::vector<float> attn_norm_weight, attn_norm_bias;  // [hidden], bias may be empty
    F qkv;                                                // [q_dim + 2 kv_dim][hidden]
    std::vector<float> qkv_bias;                          // [q_dim + 2 kv_dim] or empty
    F o;                                                  // [hidden][q_dim]
    std::vector<float> o_bias;
    std::vector<float> mlp_norm_weight, mlp_norm_bias;
    F up;                                                 // [2I or I][hidden]
    std::vector<float> up_bias;
    F down;                                               // [hidden][I]
    std::vector<float> down_bias;
};

/// A decoder-only model in weight format F: what kite::model::read_gguf produces and a
/// decoder<..., Weights> with Weights::format == F is built from, without quantizing anything.
/// The token embedding is kept in F too (rows are decoded on lookup); lm_head empty = tied.
template <class F>
struct prepared_model {
    model_config config;
    F embedding;                                          // [vocab][hidden]
    std::vector<prepared_block<F>> blocks;
    std::vector<float> final_norm_weight, final_norm_bias;
    std::optional<F> lm_head;                             // [vocab][hidden]; empty: the embedding
    std::string source;

    const F& classifier() const noexcept { return lm_head ? *lm_head : embedding; }
};

namespace detail {

/// A norm or bias vector of n finite values (or empty, when optional); `what` names it.
inline void check_vector(const std::string& source, const std::vector<float>& v, const std::string& what, index_t n,
                         bool optional) {
    if (optional && v.empty()) return;
    if (v.size() != n) kite::detail::raise<format_error>(source, ": ", what, " has ", v.size(), " elements; expected ", n);
    const std::size_t i = find_non_finite(v);
    if (i != v.size())
        kite::detail::raise<format_error>(source, ": ", what, "[", i, "] = ", v[i],
                                          "; expected finite weights (no NaN or infinity)");
}

/// The walk check_tensors and check_prepared share: every block's tensors, named with their
/// layer, against the shapes `c` implies. mat(tensor, what, rows, cols) checks a matrix.
template <class Block, class Mat>
void check_blocks(const model_config& c, const std::vector<Block>& blocks, const std::string& source, Mat&& mat) {
    const auto vec = [&](const std::vector<float>& v, const std::string& what, index_t n, bool optional) {
        check_vector(source, v, what, n, optional);
    };
    const index_t h = c.hidden_size, qkv = c.q_dim() + 2 * c.kv_dim(),
                  up = c.mlp == mlp_type::gated ? 2 * c.intermediate_size : c.intermediate_size;
    if (blocks.size() != c.num_layers)
        kite::detail::raise<format_error>(source, ": ", blocks.size(), " blocks; expected num_layers = ", c.num_layers);
    for (index_t l = 0; l < blocks.size(); ++l) {
        const Block& b = blocks[l];
        const std::string p = "layer " + std::to_string(l) + " ";
        vec(b.attn_norm_weight, p + "attention norm weight", h, false);
        vec(b.attn_norm_bias, p + "attention norm bias", h, true);
        mat(b.qkv, p + "qkv projection", qkv, h);
        vec(b.qkv_bias, p + "qkv bias", qkv, true);
        mat(b.o, p + "output projection", h, c.q_dim());
        vec(b.o_bias, p + "output bias", h, true);
        vec(b.mlp_norm_weight, p + "MLP norm weight", h, false);
        vec(b.mlp_norm_bias, p + "MLP norm bias", h, true);
        mat(b.up, p + (c.mlp == mlp_type::gated ? "gate|up projection" : "up projection"), up, h);
        vec(b.up_bias, p + "up bias", up, true);
        mat(b.down, p + "down projection", h, c.intermediate_size);
        vec(b.down_bias, p + "down bias", h, true);
    }
}

/// Checks that every tensor of `t` has the shape `c` implies and holds only finite values;
/// `source` names the checkpoint, and a message names the tensor (with its layer) and the
/// first bad element.
inline void check_tensors(const model_config& c, const model_tensors& t, const std::string& source) {
    const auto fail_if = [&](bool bad, const std::string& what, index_t r, index_t cols, index_t er, index_t ec) {
        if (bad)
            kite::detail::raise<format_error>(source, ": ", what, " has shape [", r, "][", cols, "]; expected [", er,
                                              "][", ec, "]");
    };
    const auto finite = [&](std::span<const float> v, index_t cols, const std::string& what) {
        const std::size_t i = find_non_finite(v);
        if (i == v.size()) return;
        if (cols > 0)
            kite::detail::raise<format_error>(source, ": ", what, "[", i / cols, "][", i % cols, "] = ", v[i],
                                              "; expected finite weights (no NaN or infinity)");
        kite::detail::raise<format_error>(source, ": ", what, "[", i, "] = ", v[i],
                                          "; expected finite weights (no NaN or infinity)");
    };
    const auto mat = [&](const matrix<float>& m, const std::string& what, index_t er, index_t ec) {
        fail_if(m.rows() != er || m.cols() != ec, what, m.rows(), m.cols(), er, ec);
        finite(m.flat(), m.cols(), what);
    };
    const auto vec = [&](const std::vector<float>& v, const std::string& what, index_t n, bool optional) {
        check_vector(source, v, what, n, optional);
    };
    const index_t h = c.hidden_size;
    mat(t.embedding, "token embedding", c.vocab_size, h);
    if (c.position == position_type::learned) mat(t.positions, "position embedding", c.max_position_embeddings, h);
    if (c.embedding_norm) vec(t.embedding_norm_weight, "embedding norm weight", h, false);
    vec(t.embedding_norm_bias, "embedding norm bias", h, true);
    check_blocks(c, t.blocks, source, mat);
    vec(t.final_norm_weight, "final norm weight", h, false);
    vec(t.final_norm_bias, "final norm bias", h, true);
    if (!t.lm_head.empty()) mat(t.lm_head, "lm_head", c.vocab_size, h);
}

}  // namespace detail

/// The same model with every weight matrix converted by `to` (F -> G, e.g. the repack of
/// ggml blocks for int8 activations); norms, biases and the config are copied.
template <class G, class F, class Convert>
prepared_model<G> convert_weights(const prepared_model<F>& m, Convert&& to) {
    prepared_model<G> out;
    out.config = m.config;
    out.source = m.source;
    out.embedding = to(m.embedding);
    if (m.lm_head) out.lm_head = to(*m.lm_head);
    out.final_norm_weight = m.final_norm_weight;
    out.final_norm_bias = m.final_norm_bias;
    out.blocks.reserve(m.blocks.size());
    for (const auto& b : m.blocks) {
        prepared_block<G> c;
        c.attn_norm_weight = b.attn_norm_weight;
        c.attn_norm_bias = b.attn_norm_bias;
        c.qkv = to(b.qkv);
        c.qkv_bias = b.qkv_bias;
        c.o = to(b.o);
        c.o_bias = b.o_bias;
        c.mlp_norm_weight = b.mlp_norm_weight;
        c.mlp_norm_bias = b.mlp_norm_bias;
        c.up = to(b.up);
        c.up_bias = b.up_bias;
        c.down = to(b.down);
        c.down_bias = b.down_bias;
        out.blocks.push_back(std::move(c));
    }
    return out;
}

namespace detail {

/// check_tensors for a prepared model: shapes from the config, finite norms and biases.
template <class F>
void check_prepared(const model_config& c, const prepared_model<F>& m) {
    const std::string& source = m.source;
    const auto mat = [&](const F& w, const std::string& what, index_t er, index_t ec) {
        if (w.rows() != er || w.cols() != ec)
            kite::detail::raise<format_error>(source, ": ", what, " has shape [", w.rows(), "][", w.cols(),
                                              "]; expected [", er, "][", ec, "]");
    };
    const index_t h = c.hidden_size;
    mat(m.embedding, "token embedding", c.vocab_size, h);
    check_blocks(c, m.blocks, source, mat);
    check_vector(source, m.final_norm_weight, "final norm weight", h, false);
    check_vector(source, m.final_norm_bias, "final norm bias", h, true);
    if (m.lm_head) mat(*m.lm_head, "lm_head", c.vocab_size, h);
}

}  // namespace detail

}  // namespace kite::model
