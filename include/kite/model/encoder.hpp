#pragma once
/// @file kite/model/encoder.hpp
/// bert_encoder<Weights, Kernel>: a BERT encoder (all-MiniLM-L6-v2, BERT-base, ...) assembled
/// from the same parts as kite's decoder,
///
///   x = LayerNorm(word[id] + token_type[s] + position[p])          learned absolute positions;
///                                                                   s = 0, or 1 in a pair's second text
///   per layer (post-LN):
///     q|k|v = x Wqkv^T + b                                          one fused projection
///     a     = attention(q, k, v)                                    bidirectional, per sequence
///     x     = LayerNorm(x + a Wo^T + b)
///     x     = LayerNorm(x + GELU(x Wup^T + b) Wdown^T + b)
///   embedding = normalize(mean over the sequence's tokens of x)    (or the [CLS] row)
///
/// Batches are packed: the sequences of a token_batch sit end to end, [total tokens][hidden], so
/// the linear layers run one GEMM over every token of the batch with no padding at all, and
/// attention runs per sequence over its own keys (the padding mask of a padded batch, without
/// the padding). Only attention needs a whole sequence: the rest of each layer runs over chunks
/// of 256 tokens (output projection, MLP, the next layer's QKV), so the [tokens][intermediate]
/// activations never go to memory and back. Weights: a quantization method
/// (kite::quant::f32_packed, the default, keeps float32 in GEMM panels with fused bias / GELU /
/// residual epilogues; quant::f32, absmax<8>,
/// zero_point<4, 128>, gptq<4, 128>, awq<4, 128>, ... quantize each linear layer at
/// construction; GPTQ and AWQ calibrate on options.calibration, layer by layer, each layer on
/// the activations of the already quantized layers below it). Embedding tables and norms stay
/// float32. kite::quant::w8a8_packed (int8 weights and per-token int8 activations, VNNI) takes
/// the same fused path. Kernel: kite::attn::flash<Bq, Bk> (default) or kite::attn::reference.
///
///   auto ckpt = kite::model::read_bert("models/all-MiniLM-L6-v2");
///   kite::model::bert_encoder<> enc(ckpt);
///   kite::model::token_batch batch;
///   batch.add(ids);                                     // [CLS] ... [SEP] word-piece ids
///   kite::matrix<float> emb(batch.size(), enc.hidden());
///   kite::model::encoder_workspace ws;
///   enc.embed(batch, emb.view(), ws);                   // mean-pooled, L2-normalised
///
/// Thread safety: the encoder is immutable after construction; forward/embed are const and may
/// run concurrently with distinct workspaces.

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <span>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "kite/attn.hpp"
#include "kite/core/error.hpp"
#include "kite/core/matrix.hpp"
#include "kite/core/parallel.hpp"
#include "kite/core/simd.hpp"
#include "kite/core/tensor.hpp"
#include "kite/model/config.hpp"
#include "kite/model/layers.hpp"
#include "kite/quant/packed_f32.hpp"
#include "kite/quant/packed_i8.hpp"
#include "kite/model/weights.hpp"
#include "kite/quant.hpp"

namespace kite::model {

/// A BERT checkpoint in float32. Each layer uses kite's canonical block layout
/// (kite/model/weights.hpp): qkv = [q; k; v] rows, plain MLP; attn_norm is the LayerNorm after
/// the attention residual and mlp_norm the one after the MLP residual (BERT is post-norm).
struct bert_checkpoint {
    model_config config;
    matrix<float> word_embeddings;        // [vocab][hidden]
    matrix<float> position_embeddings;    // [max_positions][hidden]
    matrix<float> token_type_embeddings;  // [type_vocab][hidden]
    std::vector<float> embedding_norm_weight, embedding_norm_bias;  // [hidden]
    std::vector<block_tensors> layers;    // [layer]
    std::string source;                   ///< where it was read from (for messages)
};

/// A batch of token sequences packed end to end: ids [total], offsets [batch + 1], and per
/// sequence where its second segment (token type 1) starts.
class token_batch {
public:
    token_batch() = default;
    /// Appends one sequence (word-piece ids including [CLS] and [SEP]). A text pair
    /// ([CLS] a [SEP] b [SEP], a cross-encoder's input) passes `second_segment`, the position of
    /// b's first token: tokens from there on take token type 1, as BERT's token_type_ids.
    void add(std::span<const std::int32_t> seq, index_t second_segment = npos) {
        ids_.insert(ids_.end(), seq.begin(), seq.end());
        offsets_.push_back(ids_.size());
        segments_.push_back(std::min<index_t>(second_segment, seq.size()));
    }
    void clear() noexcept {
        ids_.clear();
        offsets_.assign(1, 0);
        segments_.clear();
    }
    /// No second segment.
    static constexpr index_t npos = static_cast<index_t>(-1);
    /// Where sequence b's token type 1 starts (its length when it has one segment).
    index_t second_segment(index_t b) const noexcept { return segments_[b]; }
    /// Sequences in the batch.
    index_t size() const noexcept { return offsets_.size() - 1; }
    bool empty() const noexcept { return size() == 0; }
    /// Tokens of all sequences.
    index_t tokens() const noexcept { return ids_.size(); }
    index_t offset(index_t b) const noexcept { return offsets_[b]; }
    index_t length(index_t b) const noexcept { return offsets_[b + 1] - offsets_[b]; }
    std::span<const std::int32_t> sequence(index_t b) const noexcept {
        return {ids_.data() + offsets_[b], length(b)};
    }
    std::span<const std::int32_t> ids() const noexcept { return ids_; }

private:
    std::vector<std::int32_t> ids_;
    std::vector<index_t> offsets_{0};
    std::vector<index_t> segments_;
};

/// How token states become one sentence vector.
enum class pooling : std::uint8_t {
    mean,  ///< average over the sequence's tokens (sentence-transformers' default)
    cls    ///< the first token's state ([CLS])
};

/// Scratch of an encoder forward pass (one per calling thread; buffers keep their capacity).
struct encoder_workspace {
    matrix<float> x;     // [tokens][hidden] residual stream, then the output states
    matrix<float> qkv;   // [tokens][3 hidden]
    matrix<float> att;   // [tokens][hidden]
    matrix<float> proj;  // [tokens][hidden]
    matrix<float> ffn;   // [chunk][intermediate] (whole [tokens][...] only while calibrating)
};

/// Construction options of a bert_encoder.
template <quant::quant_method Weights>
struct encoder_options {
    /// The quantization method, with its runtime options (e.g. gptq<4, 128>{.act_order = true}).
    Weights method{};
    /// Token sequences whose activations calibrate GPTQ / AWQ (ignored by data-free methods).
    std::vector<std::vector<std::int32_t>> calibration{};
};

namespace detail {

/// Where a linear layer sits in a BERT layer (calibration captures each input).
enum class bert_linear : std::uint8_t { qkv, o, up, down };

/// The `before` hook of a plain forward pass: sees nothing, so the token-wise layers may run in
/// chunks of tokens (a calibration hook needs each linear layer's whole input at once).
struct no_hook {
    void operator()(index_t, bert_linear, matrix_view<const float>) const noexcept {}
};

/// Tokens per chunk of the token-wise part of a layer (everything after attention: output
/// projection + LayerNorm, the MLP, + LayerNorm, and the next layer's QKV projection). A chunk's
/// intermediates ([256][1536] floats for MiniLM's MLP: 1.5 MB) stay in cache between the
/// GEMMs instead of a [tokens][intermediate] matrix going to memory and back.
inline constexpr index_t encoder_chunk_tokens = 256;

/// Y = norm(act(X W^T + b) + R) through the format's fastest path: one fused GEMM for formats with a
/// fused epilogue (packed float32 or int8 panels), otherwise the layer's GEMM, then the epilogue.
template <class Format>
void encoder_linear(const linear<Format>& l, matrix_view<const float> x, matrix_view<float> y,
                    matrix_view<const float> residual, bool gelu, const layer_norm* norm, int threads) {
    if constexpr (requires { gemm(l.weights(), x, y, quant::gemm_epilogue{}, threads); }) {
        gemm(l.weights(), x, y,
             quant::gemm_epilogue{.bias = l.bias(), .residual = residual, .gelu = gelu,
                                  .norm = norm ? std::optional(norm->row()) : std::nullopt},
             threads);
    } else {
        l.forward(x, y, threads);
        if (gelu)
            parallel_for(0, y.rows(), [&](std::size_t t) { act::gelu::apply(y.row(t).data(), y.cols()); }, threads);
        if (!residual.empty()) add_residual(y, residual);
        if (norm) norm->forward(y, y);
    }
}

inline void require_bert(const bert_checkpoint& c) {
    const model_config& k = c.config;
    KITE_REQUIRE(k.arch == architecture::bert && !k.causal && k.post_norm && k.norm == norm_type::layer &&
                     k.mlp == mlp_type::plain && k.position == position_type::learned,
                 config_error, "bert_encoder: ", c.source, " is a ", k.model_type,
                 " model; expected a BERT encoder (post-LayerNorm, learned positions, plain MLP)");
    KITE_REQUIRE(k.hidden_act == activation::gelu, config_error, "bert_encoder: ", c.source, " uses ",
                 to_string(k.hidden_act), " activations; kite's BERT encoder implements exact (erf) GELU");
    KITE_REQUIRE(k.num_kv_heads == k.num_heads && k.q_dim() == k.hidden_size, config_error, "bert_encoder: ",
                 c.source, ": ", k.num_heads, " heads x ", k.head_dim, " dims with ", k.num_kv_heads,
                 " kv heads; expected multi-head attention with heads x head_dim = hidden_size = ", k.hidden_size);
    const index_t h = k.hidden_size, I = k.intermediate_size;
    const auto mat = [&](const matrix<float>& m, const char* what, index_t r, index_t cols) {
        KITE_REQUIRE(m.rows() == r && m.cols() == cols, shape_error, "bert_encoder: ", c.source, ": ", what,
                     " is [", m.rows(), "][", m.cols(), "]; expected [", r, "][", cols, "]");
    };
    const auto vec = [&](const std::vector<float>& v, const char* what, index_t n) {
        KITE_REQUIRE(v.size() == n, shape_error, "bert_encoder: ", c.source, ": ", what, " has ", v.size(),
                     " elements; expected ", n);
    };
    mat(c.word_embeddings, "word embeddings", k.vocab_size, h);
    mat(c.position_embeddings, "position embeddings", k.max_position_embeddings, h);
    KITE_REQUIRE(c.token_type_embeddings.rows() >= 1, shape_error, "bert_encoder: ", c.source,
                 ": no token type embeddings; expected [type_vocab >= 1][hidden]");
    mat(c.token_type_embeddings, "token type embeddings", c.token_type_embeddings.rows(), h);
    vec(c.embedding_norm_weight, "embedding LayerNorm weight", h);
    vec(c.embedding_norm_bias, "embedding LayerNorm bias", h);
    KITE_REQUIRE(c.layers.size() == k.num_layers, shape_error, "bert_encoder: ", c.source, " has ", c.layers.size(),
                 " layers; expected num_hidden_layers = ", k.num_layers);
    for (const block_tensors& b : c.layers) {
        mat(b.qkv, "qkv projection", 3 * h, h);
        vec(b.qkv_bias, "qkv bias", 3 * h);
        mat(b.o, "attention output projection", h, h);
        vec(b.o_bias, "attention output bias", h);
        vec(b.attn_norm_weight, "attention LayerNorm weight", h);
        vec(b.attn_norm_bias, "attention LayerNorm bias", h);
        mat(b.up, "intermediate projection", I, h);
        vec(b.up_bias, "intermediate bias", I);
        mat(b.down, "output projection", h, I);
        vec(b.down_bias, "output bias", h);
        vec(b.mlp_norm_weight, "output LayerNorm weight", h);
        vec(b.mlp_norm_bias, "output LayerNorm bias", h);
    }
}

}  // namespace detail

/// A BERT encoder with weights in the format of the quantization method `Weights` and the
/// attention kernel `Kernel`; see the file comment.
template <quant::quant_method Weights = quant::f32_packed, attn::attention_kernel Kernel = attn::flash<64, 64>>
class bert_encoder {
public:
    using weights = Weights;
    using kernel = Kernel;
    using format = typename Weights::format;
    using options = encoder_options<Weights>;

    /// One encoder layer.
    struct layer {
        linear<format> qkv;   // [3 hidden][hidden]
        linear<format> o;     // [hidden][hidden]
        layer_norm attn_norm;
        linear<format> up;    // [intermediate][hidden]
        linear<format> down;  // [hidden][intermediate]
        layer_norm out_norm;
        std::size_t bytes() const noexcept { return qkv.bytes() + o.bytes() + up.bytes() + down.bytes(); }
    };

    bert_encoder() = default;

    /// Builds the encoder from a float32 checkpoint, quantizing every linear layer with
    /// options.method (calibrated methods run the encoder over options.calibration).
    explicit bert_encoder(const bert_checkpoint& ckpt, const options& opt = {})
        : config_(ckpt.config), word_(ckpt.word_embeddings.clone()), position_(ckpt.position_embeddings.clone()),
          token_type_(ckpt.token_type_embeddings.clone()),
          emb_norm_(ckpt.embedding_norm_weight, ckpt.embedding_norm_bias, static_cast<float>(ckpt.config.norm_eps)) {
        detail::require_bert(ckpt);
        require_finite(word_.view(), "bert_encoder: word embeddings");
        require_finite(position_.view(), "bert_encoder: position embeddings");
        require_finite(token_type_.view(), "bert_encoder: token type embeddings");
        const float eps = static_cast<float>(config_.norm_eps);
        layers_.resize(ckpt.layers.size());
        bool calibrate = false;
        if constexpr (quant::calibrated_method<Weights>) {
            KITE_REQUIRE(!opt.calibration.empty(), invalid_argument, "bert_encoder: ", Weights::name,
                         " weights need calibration inputs: give token sequences in options.calibration");
            calibrate = true;
        }
        for (index_t l = 0; l < layers_.size(); ++l) {
            const block_tensors& b = ckpt.layers[l];
            layers_[l].attn_norm = layer_norm(b.attn_norm_weight, b.attn_norm_bias, eps);
            layers_[l].out_norm = layer_norm(b.mlp_norm_weight, b.mlp_norm_bias, eps);
            if (!calibrate) {
                layers_[l].qkv = make_linear(opt.method, b.qkv.view(), b.qkv_bias);
                layers_[l].o = make_linear(opt.method, b.o.view(), b.o_bias);
                layers_[l].up = make_linear(opt.method, b.up.view(), b.up_bias);
                layers_[l].down = make_linear(opt.method, b.down.view(), b.down_bias);
            }
        }
        if (calibrate) calibrate_layers(ckpt, opt);
    }

    const model_config& config() const noexcept { return config_; }
    index_t hidden() const noexcept { return config_.hidden_size; }
    index_t num_layers() const noexcept { return layers_.size(); }
    /// Longest sequence the position table allows.
    index_t max_positions() const noexcept { return position_.rows(); }
    index_t vocab_size() const noexcept { return word_.rows(); }
    const std::vector<layer>& layers() const noexcept { return layers_; }
    /// Bytes of the linear layers' weights (what quantization shrinks).
    std::size_t linear_bytes() const noexcept {
        std::size_t s = 0;
        for (const layer& l : layers_) s += l.bytes();
        return s;
    }

    /// Runs the encoder: afterwards ws.x [batch.tokens()][hidden] holds the last layer's states
    /// of every token, sequences end to end. Throws for an empty sequence, one longer than
    /// max_positions(), or an id outside the vocabulary.
    void forward(const token_batch& batch, encoder_workspace& ws, int threads = 0) const {
        check_batch(batch);
        run(batch, ws, threads, detail::no_hook{});
    }

    /// Sentence embeddings out [batch.size()][hidden]: pooled token states, L2-normalised when
    /// `normalize` (as sentence-transformers' Normalize, eps 1e-12).
    void embed(const token_batch& batch, matrix_view<float> out, encoder_workspace& ws, int threads = 0,
               pooling pool = pooling::mean, bool normalize = true) const {
        require_shape(out, batch.size(), hidden(), "bert_encoder::embed: out");
        forward(batch, ws, threads);
        const index_t h = hidden();
        parallel_for(
            0, batch.size(),
            [&](std::size_t b) {
                float* o = out.row(b).data();
                const index_t n = batch.length(b), t0 = batch.offset(b);
                if (pool == pooling::cls) {
                    std::memcpy(o, ws.x.row(t0).data(), h * sizeof(float));
                } else {
                    std::fill_n(o, h, 0.0f);
                    for (index_t t = 0; t < n; ++t) simd::axpy(1.0f, ws.x.row(t0 + t).data(), o, h);
                    simd::scale(1.0f / static_cast<float>(n), o, h);
                }
                if (normalize) {
                    const float norm = std::sqrt(simd::dot(o, o, h));
                    simd::scale(1.0f / std::max(norm, 1e-12f), o, h);
                }
            },
            threads);
    }

private:
    void check_batch(const token_batch& batch) const {
        for (index_t b = 0; b < batch.size(); ++b) {
            const index_t n = batch.length(b);
            KITE_REQUIRE(n >= 1 && n <= max_positions(), invalid_argument, "bert_encoder: sequence ", b, " has ", n,
                         " tokens; expected 1 to max_position_embeddings = ", max_positions());
            KITE_REQUIRE(batch.second_segment(b) >= n || token_type_.rows() >= 2, invalid_argument,
                         "bert_encoder: sequence ", b, " is a text pair but the model has ", token_type_.rows(),
                         " token type; expected type_vocab_size >= 2");
        }
        const auto ids = batch.ids();
        for (index_t t = 0; t < ids.size(); ++t)
            KITE_REQUIRE(ids[t] >= 0 && static_cast<index_t>(ids[t]) < vocab_size(), invalid_argument,
                         "bert_encoder: token id ", ids[t], " (token ", t, " of the batch) is outside [0, ",
                         vocab_size(), ")");
    }

    // x = LayerNorm(word[id] + token_type[s] + position[p]) for every token (s = 1 from the
    // sequence's second segment on).
    void embed_tokens(const token_batch& batch, encoder_workspace& ws, int threads) const {
        const index_t h = hidden();
        ws.x.resize(batch.tokens(), h);
        parallel_for(
            0, batch.size(),
            [&](std::size_t b) {
                const auto seq = batch.sequence(b);
                const index_t second = batch.second_segment(b);
                for (index_t p = 0; p < seq.size(); ++p) {
                    float* x = ws.x.row(batch.offset(b) + p).data();
                    const float* w = word_.row(static_cast<index_t>(seq[p])).data();
                    const float* pe = position_.row(p).data();
                    const float* type = token_type_.row(p < second ? 0 : 1).data();
                    // (word + type) + position: Hugging Face's order of additions.
                    for (index_t i = 0; i < h; ++i) x[i] = (w[i] + type[i]) + pe[i];
                }
                quant::detail::norm_rows(emb_norm_.row(), ws.x.view(), batch.offset(b), seq.size());
            },
            threads);
    }

    // ws.att = attention(q, k, v) of each sequence over its own tokens.
    void attention(const token_batch& batch, encoder_workspace& ws, int threads) const {
        const index_t nh = config_.num_heads, d = config_.head_dim, h = hidden(), ld = ws.qkv.cols();
        ws.att.resize(batch.tokens(), h);
        const auto one = [&](index_t b, int kernel_threads) {
            const index_t n = batch.length(b), t0 = batch.offset(b);
            const float* base = ws.qkv.row(t0).data();
            const tensor_view<const float, 4> q(base, {1, n, nh, d}, {n * ld, ld, d, 1});      // [1][n][head][d]
            const tensor_view<const float, 4> k(base + h, {1, n, nh, d}, {n * ld, ld, d, 1});
            const tensor_view<const float, 4> v(base + 2 * h, {1, n, nh, d}, {n * ld, ld, d, 1});
            const tensor_view<float, 4> o(ws.att.row(t0).data(), {1, n, nh, d}, {n * h, h, d, 1});
            attn::options opt;
            opt.mask = attn::mask::bidirectional;
            opt.threads = kernel_threads;
            Kernel::template prefill<attn::mha>(q, attn::tensor_kv<float>(k, v), o, opt);
        };
        // Many sequences: one per thread at a time; few: each over all threads.
        const int t = resolve_threads(threads, batch.size());
        if (batch.size() >= 2 * static_cast<index_t>(t)) {
            parallel_for_dynamic(batch.size(), 1, [&](std::size_t b) { one(b, 1); }, t);
        } else {
            for (index_t b = 0; b < batch.size(); ++b) one(b, threads);
        }
    }

    // The layers over ws; `before(l, which, x)` (calibration) sees each linear layer's input
    // just before the layer runs.
    template <class Before>
    void run(const token_batch& batch, encoder_workspace& ws, int threads, Before&& before) const {
        embed_tokens(batch, ws, threads);
        run_layers(batch, ws, threads, before);
    }

    template <class Before>
    void run_layers(const token_batch& batch, encoder_workspace& ws, int threads, Before&& before) const {
        const index_t n = batch.tokens(), h = hidden(), I = config_.intermediate_size;
        ws.qkv.resize(n, 3 * h);
        ws.proj.resize(n, h);
        const matrix_view<const float> none;
        if constexpr (std::is_same_v<std::remove_cvref_t<Before>, detail::no_hook>) {
            // Only attention needs every token of a sequence; the rest of each layer (and the
            // next layer's QKV projection) runs chunk by chunk, the x rows updated in place.
            const index_t chunk = std::min(n, detail::encoder_chunk_tokens);
            ws.ffn.resize(chunk, I);
            if (layers_.empty()) return;
            detail::encoder_linear(layers_[0].qkv, ws.x.view(), ws.qkv.view(), none, false, nullptr, threads);
            for (index_t l = 0; l < layers_.size(); ++l) {
                const layer& L = layers_[l];
                attention(batch, ws, threads);
                for (index_t t0 = 0; t0 < n; t0 += chunk) {
                    const index_t c = std::min(chunk, n - t0);
                    const matrix_view<float> x = ws.x.view().rows_slice(t0, c), p = ws.proj.view().rows_slice(t0, c);
                    const matrix_view<float> f = ws.ffn.view().rows_slice(0, c);
                    detail::encoder_linear(L.o, ws.att.view().rows_slice(t0, c), p, x, false, &L.attn_norm, threads);
                    detail::encoder_linear(L.up, p, f, none, true, nullptr, threads);
                    detail::encoder_linear(L.down, f, x, p, false, &L.out_norm, threads);
                    if (l + 1 < layers_.size())
                        detail::encoder_linear(layers_[l + 1].qkv, x, ws.qkv.view().rows_slice(t0, c), none, false,
                                               nullptr, threads);
                }
            }
            return;
        }
        ws.ffn.resize(n, I);
        for (index_t l = 0; l < layers_.size(); ++l) {
            const layer& L = layers_[l];
            before(l, detail::bert_linear::qkv, ws.x.view());
            detail::encoder_linear(L.qkv, ws.x.view(), ws.qkv.view(), none, false, nullptr, threads);
            attention(batch, ws, threads);
            before(l, detail::bert_linear::o, ws.att.view());
            // x = LayerNorm(x + a Wo^T + b), written to proj and swapped in.
            detail::encoder_linear(L.o, ws.att.view(), ws.proj.view(), ws.x.view(), false, &L.attn_norm, threads);
            std::swap(ws.x, ws.proj);
            before(l, detail::bert_linear::up, ws.x.view());
            detail::encoder_linear(L.up, ws.x.view(), ws.ffn.view(), none, true, nullptr, threads);
            before(l, detail::bert_linear::down, ws.ffn.view());
            detail::encoder_linear(L.down, ws.ffn.view(), ws.proj.view(), ws.x.view(), false, &L.out_norm, threads);
            std::swap(ws.x, ws.proj);
        }
    }

    // GPTQ / AWQ: layer by layer, each linear layer quantized on the inputs it sees when every
    // layer before it (this layer's earlier linears included) is already quantized.
    void calibrate_layers(const bert_checkpoint& ckpt, const options& opt) {
        token_batch batch;
        for (const auto& seq : opt.calibration) {
            KITE_REQUIRE(!seq.empty(), invalid_argument, "bert_encoder: an empty calibration sequence");
            const index_t len = std::min<index_t>(seq.size(), max_positions());
            batch.add(std::span<const std::int32_t>(seq.data(), len));
        }
        check_batch(batch);
        const auto quantize_input = [&](index_t l, detail::bert_linear which, matrix_view<const float> x) {
            const block_tensors& b = ckpt.layers[l];
            layer& L = layers_[l];
            switch (which) {
                case detail::bert_linear::qkv: L.qkv = make_linear(opt.method, b.qkv.view(), b.qkv_bias, x); break;
                case detail::bert_linear::o: L.o = make_linear(opt.method, b.o.view(), b.o_bias, x); break;
                case detail::bert_linear::up: L.up = make_linear(opt.method, b.up.view(), b.up_bias, x); break;
                case detail::bert_linear::down: L.down = make_linear(opt.method, b.down.view(), b.down_bias, x); break;
            }
        };
        encoder_workspace ws;
        run(batch, ws, 0, quantize_input);
    }

    model_config config_;
    matrix<float> word_;        // [vocab][hidden]
    matrix<float> position_;    // [max_positions][hidden]
    matrix<float> token_type_;  // [type_vocab][hidden]
    layer_norm emb_norm_;
    std::vector<layer> layers_;
};

}  // namespace kite::model
