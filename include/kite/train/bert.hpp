#pragma once
/// @file kite/train/bert.hpp
/// A trainable copy of a BERT encoder (kite::model::bert_checkpoint: MiniLM and friends): every
/// parameter in one contiguous vector (so an optimizer step, a gradient norm or a checkpoint is
/// one loop), a forward pass that records what its backward pass needs, and the backward pass
/// that adds d(loss)/d(parameters) for one sequence.
///
///   train::bert_model<float> m(model::read_bert(dir));
///   train::bert_model<float>::tape t;
///   auto e = m.embed(ids, t);                            // mean-pooled last states
///   ... d(loss)/d(e) from train::mnr_loss ...
///   m.backward(t, de, grads);                            // grads += d(loss)/d(parameters)
///   opt.step<float>(m.parameters(), grads, state);
///   model::bert_checkpoint ck = m.to_checkpoint();        // for model::bert_encoder, or saving
///
/// With a classifier head (model::classifier_head: BertForSequenceClassification's pooler and
/// one-output classifier, a cross-encoder), logit() scores a text pair and backward() takes
/// d(loss)/d(logit):
///
///   train::bert_model<float> ce(model::read_bert(dir), head);
///   T z = ce.logit(pair.ids, t, pair.second);            // tokens from `second` on: type 1
///   ce.backward(t, std::span<const T>(&dz, 1), grads);
///
/// Built from kite/train/grad.hpp's parts, sequence by sequence (no padding inside a sequence).
/// Dropout is not applied (the encoder is fine-tuned as sentence-transformers does with
/// dropout 0.1 by default: a documented difference).

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "kite/core/buffer.hpp"
#include "kite/core/config.hpp"
#include "kite/core/error.hpp"
#include "kite/core/matrix.hpp"
#include "kite/model/classifier_head.hpp"
#include "kite/model/encoder.hpp"
#include "kite/train/grad.hpp"

namespace kite::train {

template <class T>
class bert_model {
public:
    /// One parameter tensor: its name (as in the safetensors file, without "bert." prefixes),
    /// where it starts in parameters(), its shape (vectors have one row).
    struct tensor_info {
        std::string name;
        std::size_t offset = 0;
        index_t rows = 0, cols = 0;
    };

    /// What embed() records for backward(): per layer its input, the q/k/v projections, the
    /// attention probabilities, the two LayerNorms and the MLP's pre-activation.
    struct tape {
        struct layer_tape {
            matrix<T> x, qkv, up, act;
            attention_result<T> att;
            layer_norm_result<T> ln1, ln2;
        };
        std::vector<std::int32_t> ids;
        index_t second = 0;  // where token type 1 starts (ids.size(): nowhere)
        layer_norm_result<T> emb_ln;
        std::vector<layer_tape> layers;
        matrix<T> states;
        std::vector<T> pooled;  // logit(): tanh(P states[0] + p); empty after embed()
    };

    /// No second segment: every token is type 0.
    static constexpr index_t npos = static_cast<index_t>(-1);

    /// The encoder of `ck`, and with `head` its pooler and classifier (a cross-encoder).
    explicit bert_model(const model::bert_checkpoint& ck, const model::classifier_head* head = nullptr)
        : config_(ck.config) {
        const model::model_config& c = ck.config;
        KITE_REQUIRE(c.num_kv_heads == c.num_heads, invalid_argument, "train::bert_model: ", ck.source,
                     " has grouped key/value heads; expected a BERT encoder");
        const index_t h = c.hidden_size;
        add("embeddings.word_embeddings.weight", ck.word_embeddings);
        add("embeddings.position_embeddings.weight", ck.position_embeddings);
        add("embeddings.token_type_embeddings.weight", ck.token_type_embeddings);
        add("embeddings.LayerNorm.weight", ck.embedding_norm_weight);
        add("embeddings.LayerNorm.bias", ck.embedding_norm_bias);
        for (std::size_t l = 0; l < ck.layers.size(); ++l) {
            const auto& L = ck.layers[l];
            const std::string p = "encoder.layer." + std::to_string(l) + ".";
            KITE_REQUIRE(L.qkv.rows() == 3 * h && L.qkv_bias.size() == 3 * h && L.o_bias.size() == h &&
                             L.up_bias.size() == L.up.rows() && L.down_bias.size() == h &&
                             L.attn_norm_bias.size() == h && L.mlp_norm_bias.size() == h,
                         invalid_argument, "train::bert_model: ", ck.source, " layer ", l,
                         " lacks a bias or a fused q/k/v of 3 x hidden rows; expected a BERT layer");
            visit_layer(L, [&](const char* name, const auto& tensor) { add(p + name, tensor); });
        }
        layers_ = ck.layers.size();
        if (head != nullptr) {
            KITE_REQUIRE(head->pooler.rows() == h && head->pooler.cols() == h && head->pooler_bias.size() == h &&
                             head->weight.size() == h,
                         shape_error, "train::bert_model: a classifier head for ", head->pooler.rows(),
                         " states; expected ", h);
            KITE_REQUIRE(ck.token_type_embeddings.rows() >= 2, invalid_argument, "train::bert_model: ", ck.source,
                         " has ", ck.token_type_embeddings.rows(), " token type; a cross-encoder needs 2");
            add("pooler.dense.weight", head->pooler);
            add("pooler.dense.bias", head->pooler_bias);
            head_bias_ = {head->bias};
            push("classifier.weight", 1, h, head->weight);
            add("classifier.bias", head_bias_);
            has_head_ = true;
        }
        // Every tensor starts on a 64-byte boundary of one aligned buffer: the rounding of the
        // vectorised kernels must not depend on where an allocation happened to land.
        data_ = aligned_buffer<T>(next_offset_);
        for (std::size_t i = 0; i < info_.size(); ++i)
            for (std::size_t k = 0; k < sources_[i].size(); ++k) data_[info_[i].offset + k] = static_cast<T>(sources_[i][k]);
        sources_.clear();
    }

    const model::model_config& config() const noexcept { return config_; }
    index_t num_layers() const noexcept { return layers_; }
    /// Whether it has a classifier head (logit() and to_head() need one).
    bool has_head() const noexcept { return has_head_; }
    /// Every parameter, in tensors() order (each tensor padded to 64 bytes with zeros that get
    /// no gradient).
    std::span<T> parameters() noexcept { return data_.span(); }
    std::span<const T> parameters() const noexcept { return data_.span(); }
    /// A zeroed gradient buffer of parameters().size(), aligned as the parameters are (results are
    /// then bit-reproducible whatever the heap does).
    aligned_buffer<T> gradient_buffer() const { return aligned_buffer<T>(data_.size()); }
    const std::vector<tensor_info>& tensors() const noexcept { return info_; }

    /// Bytes a tape of an n-token sequence holds (what embed() keeps for backward()): per layer
    /// the input, q/k/v, context, the two LayerNorms' outputs and normalised rows, the MLP's
    /// pre-activation and activation, and heads x n x n attention probabilities.
    std::size_t tape_bytes(std::size_t n) const noexcept {
        const std::size_t h = config_.hidden_size, inter = layers_ > 0 ? info_[base(0) + 6].rows : 0,
                          heads = config_.num_heads;
        const std::size_t per_layer_values = n * (9 * h + 2 * inter + 2) + heads * n * n;
        return sizeof(T) * (layers_ * per_layer_values + n * (3 * h + 1)) + sizeof(std::int32_t) * n;
    }

    /// The last layer's states of one sequence (ids with [CLS] and [SEP]; token type 0, or 1
    /// from `second` on: a text pair), recording into `t` what backward() needs.
    const matrix<T>& states(std::span<const std::int32_t> ids, tape& t, index_t second = npos) const {
        const index_t n = ids.size(), h = config_.hidden_size;
        KITE_REQUIRE(n >= 1 && n <= info_[1].rows, invalid_argument, "train::bert_model: ", n,
                     " tokens; expected 1 to ", info_[1].rows);
        t.second = std::min(second, n);
        KITE_REQUIRE(t.second == n || info_[2].rows >= 2, invalid_argument,
                     "train::bert_model: a text pair needs 2 token types; the model has ", info_[2].rows);
        t.ids.assign(ids.begin(), ids.end());
        t.pooled.clear();
        matrix<T> e = embedding<T>(mat(0), ids);
        const auto pos = mat(1), type = mat(2);
        for (index_t i = 0; i < n; ++i) {
            const index_t s = i < t.second ? 0 : 1;
            for (index_t j = 0; j < h; ++j) e(i, j) += pos(i, j) + type(s, j);
        }
        t.emb_ln = layer_norm<T>(e.view(), vec(3), vec(4), eps());
        t.layers.resize(layers_);
        const matrix<T>* x = &t.emb_ln.y;
        for (index_t l = 0; l < layers_; ++l) {
            auto& L = t.layers[l];
            const index_t b = base(l);
            L.x = x->clone();
            L.qkv = linear<T>(L.x.view(), mat(b), vec(b + 1));
            L.att = attention<T>(cols(L.qkv, 0, h), cols(L.qkv, h, h), cols(L.qkv, 2 * h, h), ones(n),
                                 config_.num_heads);
            matrix<T> a = linear<T>(L.att.context.view(), mat(b + 2), vec(b + 3));
            add_into(a, L.x);
            L.ln1 = layer_norm<T>(a.view(), vec(b + 4), vec(b + 5), eps());
            L.up = linear<T>(L.ln1.y.view(), mat(b + 6), vec(b + 7));
            L.act = gelu<T>(L.up.view());
            matrix<T> f = linear<T>(L.act.view(), mat(b + 8), vec(b + 9));
            add_into(f, L.ln1.y);
            L.ln2 = layer_norm<T>(f.view(), vec(b + 10), vec(b + 11), eps());
            x = &L.ln2.y;
        }
        t.states = x->clone();
        return t.states;
    }

    /// The sentence embedding: the mean of states() over the sequence (sentence-transformers'
    /// mean pooling; normalise it, or let train::mnr_loss take the cosine).
    std::vector<T> embed(std::span<const std::int32_t> ids, tape& t) const {
        const auto& s = states(ids, t);
        return mean_pool<T>(s.view(), ones(s.rows()));
    }

    /// The cross-encoder's logit of one text pair (ids [CLS] a [SEP] b [SEP], b from `second`):
    /// w . tanh(P states[0] + p) + b. Needs a head.
    T logit(std::span<const std::int32_t> ids, tape& t, index_t second) const {
        KITE_REQUIRE(has_head_, invalid_argument, "train::bert_model::logit: the model has no classifier head");
        const auto& s = states(ids, t, second);
        const index_t h = config_.hidden_size, hb = head_base();
        const auto P = mat(hb);
        const auto p = vec(hb + 1), w = vec(hb + 2);
        t.pooled.assign(h, T(0));
        T z = vec(hb + 3)[0];
        for (index_t i = 0; i < h; ++i) {
            T a = p[i];
            for (index_t j = 0; j < h; ++j) a += P(i, j) * s(0, j);
            t.pooled[i] = std::tanh(a);
            z += w[i] * t.pooled[i];
        }
        return z;
    }

    /// grads += d(loss)/d(parameters), given d(loss)/d(output) for the sequence of `t`: the
    /// output is embed()'s embedding ([hidden]) or, after logit(), the logit ([1]).
    void backward(const tape& t, std::span<const T> d_output, std::span<T> grads) const {
        const index_t n = t.states.rows(), h = config_.hidden_size;
        const index_t out = t.pooled.empty() ? h : 1;
        KITE_REQUIRE(d_output.size() == out && grads.size() == data_.size(), shape_error,
                     "train::bert_model::backward: ", d_output.size(), " output gradients and ", grads.size(),
                     " parameter gradients; expected ", out, " and ", data_.size());
        matrix<T> dx(n, h);
        if (t.pooled.empty()) {
            mean_pool_backward<T>(ones(n), d_output, dx.view());
        } else {
            // z = w . u + b, u = tanh(P s0 + p): dw += dz u, db += dz, da = dz w (1 - u^2),
            // dP += da s0^T, dp += da, ds0 = P^T da.
            const index_t hb = head_base();
            const T dz = d_output[0];
            const auto P = mat(hb);
            const auto w = vec(hb + 2);
            auto dP = gmat(grads, hb);
            auto dp = gvec(grads, hb + 1), dw = gvec(grads, hb + 2), db = gvec(grads, hb + 3);
            db[0] += dz;
            for (index_t i = 0; i < h; ++i) {
                const T u = t.pooled[i];
                dw[i] += dz * u;
                const T da = dz * w[i] * (T(1) - u * u);
                dp[i] += da;
                for (index_t j = 0; j < h; ++j) {
                    dP(i, j) += da * t.states(0, j);
                    dx(0, j) += P(i, j) * da;
                }
            }
        }
        backward_states(t, std::move(dx), grads);
    }

    /// grads += d(loss)/d(parameters), given d(loss)/d(states()) for the sequence of `t`.
    void backward_states(const tape& t, matrix<T> dx, std::span<T> grads) const {
        const index_t n = t.states.rows(), h = config_.hidden_size;
        KITE_REQUIRE(dx.rows() == n && dx.cols() == h && grads.size() == data_.size(), shape_error,
                     "train::bert_model::backward_states: gradients of ", dx.rows(), " x ", dx.cols(), " states and ",
                     grads.size(), " parameters; expected ", n, " x ", h, " and ", data_.size());
        for (index_t l = layers_; l-- > 0;) {
            const auto& L = t.layers[l];
            const index_t b = base(l), inter = info_[b + 6].rows;
            // x_out = LN2(f + y), f = down(gelu(up(y))), y = LN1(a + x), a = o(attention(qkv(x)))
            matrix<T> d_sum2(n, h), d_act(n, inter), d_up(n, inter), dy(n, h), d_sum1(n, h), d_ctx(n, h);
            layer_norm_backward<T>(L.ln2, vec(b + 10), dx.view(), d_sum2.view(), gvec(grads, b + 10), gvec(grads, b + 11));
            linear_backward<T>(L.act.view(), mat(b + 8), d_sum2.view(), d_act.view(), gmat(grads, b + 8), gvec(grads, b + 9));
            gelu_backward<T>(L.up.view(), d_act.view(), d_up.view());
            linear_backward<T>(L.ln1.y.view(), mat(b + 6), d_up.view(), dy.view(), gmat(grads, b + 6), gvec(grads, b + 7));
            add_into(dy, d_sum2);  // the residual around the MLP
            layer_norm_backward<T>(L.ln1, vec(b + 4), dy.view(), d_sum1.view(), gvec(grads, b + 4), gvec(grads, b + 5));
            linear_backward<T>(L.att.context.view(), mat(b + 2), d_sum1.view(), d_ctx.view(), gmat(grads, b + 2),
                               gvec(grads, b + 3));
            matrix<T> d_qkv(n, 3 * h);
            attention_backward<T>(L.att, cols(L.qkv, 0, h), cols(L.qkv, h, h), cols(L.qkv, 2 * h, h), d_ctx.view(),
                                  wcols(d_qkv, 0, h), wcols(d_qkv, h, h), wcols(d_qkv, 2 * h, h));
            matrix<T> dxin(n, h);
            linear_backward<T>(L.x.view(), mat(b), d_qkv.view(), dxin.view(), gmat(grads, b), gvec(grads, b + 1));
            add_into(dxin, d_sum1);  // the residual around attention
            dx = std::move(dxin);
        }
        matrix<T> de(n, h);
        layer_norm_backward<T>(t.emb_ln, vec(3), dx.view(), de.view(), gvec(grads, 3), gvec(grads, 4));
        embedding_backward<T>(t.ids, de.view(), gmat(grads, 0));
        auto dpos = gmat(grads, 1);
        auto dtype = gmat(grads, 2);
        for (index_t i = 0; i < n; ++i) {
            const index_t s = i < t.second ? 0 : 1;
            for (index_t j = 0; j < h; ++j) {
                dpos(i, j) += de(i, j);
                dtype(s, j) += de(i, j);
            }
        }
    }

    /// The weights as a float checkpoint (for model::bert_encoder, or to save).
    model::bert_checkpoint to_checkpoint(std::string source = "kite::train::bert_model") const {
        model::bert_checkpoint ck;
        ck.config = config_;
        ck.source = std::move(source);
        ck.word_embeddings = fmat(0);
        ck.position_embeddings = fmat(1);
        ck.token_type_embeddings = fmat(2);
        ck.embedding_norm_weight = fvec(3);
        ck.embedding_norm_bias = fvec(4);
        for (index_t l = 0; l < layers_; ++l) {
            const index_t b = base(l);
            model::block_tensors L;
            index_t i = b;
            visit_layer(L, [&](const char*, auto& tensor) { assign(tensor, i++); });
            ck.layers.push_back(std::move(L));
        }
        return ck;
    }

    /// The pooler and classifier as model::classifier_head (for model::cross_encoder, or to
    /// save). Needs a head.
    model::classifier_head to_head() const {
        KITE_REQUIRE(has_head_, invalid_argument, "train::bert_model::to_head: the model has no classifier head");
        const index_t hb = head_base();
        model::classifier_head hd;
        hd.pooler = fmat(hb);
        hd.pooler_bias = fvec(hb + 1);
        hd.weight = fvec(hb + 2);
        hd.bias = fvec(hb + 3)[0];
        return hd;
    }

private:
    static constexpr index_t per_layer = 12;

    // A layer's tensors in parameters() order, with their names (Hugging Face's, q/k/v fused).
    template <class Block, class F>
    static void visit_layer(Block& L, F&& f) {
        f("attention.self.qkv.weight", L.qkv);
        f("attention.self.qkv.bias", L.qkv_bias);
        f("attention.output.dense.weight", L.o);
        f("attention.output.dense.bias", L.o_bias);
        f("attention.output.LayerNorm.weight", L.attn_norm_weight);
        f("attention.output.LayerNorm.bias", L.attn_norm_bias);
        f("intermediate.dense.weight", L.up);
        f("intermediate.dense.bias", L.up_bias);
        f("output.dense.weight", L.down);
        f("output.dense.bias", L.down_bias);
        f("output.LayerNorm.weight", L.mlp_norm_weight);
        f("output.LayerNorm.bias", L.mlp_norm_bias);
    }
    void assign(matrix<float>& m, index_t i) const { m = fmat(i); }
    void assign(std::vector<float>& v, index_t i) const { v = fvec(i); }
    static index_t base(index_t layer) noexcept { return 5 + per_layer * layer; }
    index_t head_base() const noexcept { return base(layers_); }
    T eps() const noexcept { return static_cast<T>(config_.norm_eps); }

    void add(std::string name, const matrix<float>& m) {
        push(std::move(name), m.rows(), m.cols(), std::span<const float>(m.data(), m.rows() * m.cols()));
    }
    void add(std::string name, const std::vector<float>& v) { push(std::move(name), 1, v.size(), v); }
    void push(std::string name, index_t rows, index_t cols, std::span<const float> values) {
        info_.push_back({std::move(name), next_offset_, rows, cols});
        sources_.push_back(values);
        constexpr std::size_t per_line = 64 / sizeof(T) > 0 ? 64 / sizeof(T) : 1;
        next_offset_ += (values.size() + per_line - 1) / per_line * per_line;
    }

    matrix_view<const T> mat(index_t i) const {
        return {data_.data() + info_[i].offset, info_[i].rows, info_[i].cols};
    }
    std::span<const T> vec(index_t i) const { return {data_.data() + info_[i].offset, info_[i].cols}; }
    matrix_view<T> gmat(std::span<T> g, index_t i) const {
        return {g.data() + info_[i].offset, info_[i].rows, info_[i].cols};
    }
    std::span<T> gvec(std::span<T> g, index_t i) const { return {g.data() + info_[i].offset, info_[i].cols}; }
    matrix<float> fmat(index_t i) const {
        matrix<float> m(info_[i].rows, info_[i].cols);
        for (index_t r = 0; r < m.rows(); ++r)
            for (index_t c = 0; c < m.cols(); ++c) m(r, c) = static_cast<float>(mat(i)(r, c));
        return m;
    }
    std::vector<float> fvec(index_t i) const {
        const auto v = vec(i);
        return {v.begin(), v.end()};
    }

    static matrix_view<const T> cols(const matrix<T>& m, index_t first, index_t count) {
        return {m.data() + first, m.rows(), count, m.cols()};
    }
    static matrix_view<T> wcols(matrix<T>& m, index_t first, index_t count) {
        return {m.data() + first, m.rows(), count, m.cols()};
    }
    static std::vector<T> ones(index_t n) { return std::vector<T>(n, T(1)); }
    static void add_into(matrix<T>& a, const matrix<T>& b) {
        for (std::size_t i = 0; i < a.flat().size(); ++i) a.flat()[i] += b.flat()[i];
    }

    model::model_config config_;
    aligned_buffer<T> data_;
    std::vector<tensor_info> info_;
    std::vector<std::span<const float>> sources_;  // while constructing
    std::size_t next_offset_ = 0;
    index_t layers_ = 0;
    bool has_head_ = false;
    std::vector<float> head_bias_;  // the classifier's bias as a vector, while constructing
};

}  // namespace kite::train
