#pragma once
/// @file kite/model/decoder.hpp
/// decoder<Layout, Position, Kernel, Cache, Norm, Mlp, Weights>: a decoder-only transformer
/// assembled at compile time from one policy per family (DESIGN.md),
///
///   Layout    kite::attn::mha | mqa | gqa                     head layout
///   Position  kite::pos::rope<rotate_half | interleaved> | alibi | learned
///   Kernel    kite::attn::reference | flash<Bq, Bk>            attention kernel
///   Cache     kite::kv::contiguous<T> | paged<BlockTokens, T> KV cache
///   Norm      kite::norm::rms | layer                          (kite::model::rms_norm, layer_norm)
///   Mlp       kite::mlp::swiglu | gelu | gelu_tanh | relu
///   Weights   kite::quant::f32 | dense<bf16> | absmax<8> | zero_point<4, 128> | gptq<4, 128> |
///             awq<4, 128> | llm_int8 | ...                     a quantization method
///
/// and the numbers of a model (dims, heads, vocab) from its config, checked against the policies
/// when the decoder is built: a config the policies cannot run (ALiBi weights into a RoPE
/// decoder, GQA head counts into an MHA layout, LayerNorm into RMSNorm) is a kite::config_error
/// whose message is a sentence saying which.
///
///   using llama_int4 = kite::model::decoder<kite::attn::gqa, kite::pos::rope<kite::pos::rotate_half>,
///       kite::attn::flash<64, 64>, kite::kv::paged<16>, kite::norm::rms, kite::mlp::swiglu,
///       kite::quant::gptq<4, 128>>;
///   llama_int4 model(kite::model::read_checkpoint("models/tiny-llama"), {.calibration = texts});
///   auto cache = model.make_cache(/*max_tokens=*/512);
///   auto s = *cache.add_sequence();
///   model.prefill(cache, s, prompt, logits);           // logits: [1][vocab] (last) or [n][vocab]
///   model.decode(cache, seqs, next_tokens, logits);    // one token of each sequence
///
/// Weights: every linear layer (q|k|v, o, MLP, classifier) is stored in the method's format,
/// quantized from the float checkpoint at construction. Methods that need calibration inputs
/// (GPTQ, AWQ) get them by running the float32 model over options.calibration and capturing the
/// input of every layer. The token embedding stays float32 (decode reads one row of it).
///
/// Thread safety: the decoder is immutable after construction; the forward functions taking a
/// workspace are const and may run concurrently with distinct workspaces and caches. The
/// overloads without a workspace use one the decoder owns (one caller at a time).

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <type_traits>
#include <vector>

#include "kite/attn.hpp"
#include "kite/core/error.hpp"
#include "kite/core/matrix.hpp"
#include "kite/kv.hpp"
#include "kite/model/block.hpp"
#include "kite/model/concepts.hpp"
#include "kite/model/config.hpp"
#include "kite/model/layers.hpp"
#include "kite/model/weights.hpp"
#include "kite/pos.hpp"
#include "kite/quant.hpp"

namespace kite::model {

namespace detail {

constexpr const char* describe(position_type p) noexcept {
    switch (p) {
        case position_type::rope: return "rotary position embeddings (RoPE)";
        case position_type::alibi: return "ALiBi attention biases";
        case position_type::learned: return "learned absolute position embeddings";
    }
    return "?";
}
constexpr const char* describe(norm_type n) noexcept { return n == norm_type::rms ? "RMSNorm" : "LayerNorm"; }

/// How a position policy is checked against a config and built from a checkpoint.
template <class P>
struct position_policy {
    static_assert(sizeof(P) == 0,
                  "kite::model::decoder: the Position policy must be kite::pos::rope<rotate_half | interleaved>, "
                  "kite::pos::alibi or kite::pos::learned");
};
template <pos::rope_convention C>
struct position_policy<pos::rope<C>> {
    static constexpr position_type kind = position_type::rope;
    static std::string name() { return std::string("kite::pos::rope<") + C::name + ">"; }
    static void check(const model_config& c) {
        constexpr bool interleaved = std::is_same_v<C, pos::interleaved>;
        KITE_REQUIRE(c.rope_interleaved == interleaved, config_error, "decoder: the model rotates ",
                     c.rope_interleaved ? "interleaved pairs (2i, 2i+1), as llama2.c and Meta's checkpoints"
                                        : "half-split pairs (i, i + d/2), as Hugging Face's rotate_half",
                     ", but the decoder's position policy is ", name(), "; use kite::pos::rope<kite::pos::",
                     c.rope_interleaved ? "interleaved" : "rotate_half", ">");
    }
    static pos::rope<C> make(const model_config& c, const model_tensors&, index_t max_positions) {
        return pos::rope<C>(c.rope(max_positions));
    }
};
template <>
struct position_policy<pos::alibi> {
    static constexpr position_type kind = position_type::alibi;
    static std::string name() { return "kite::pos::alibi"; }
    static void check(const model_config&) {}
    static pos::alibi make(const model_config& c, const model_tensors&, index_t) { return pos::alibi(c.num_heads); }
};
template <>
struct position_policy<pos::learned> {
    static constexpr position_type kind = position_type::learned;
    static std::string name() { return "kite::pos::learned"; }
    static void check(const model_config&) {}
    static pos::learned make(const model_config&, const model_tensors& t, index_t) { return pos::learned(t.positions.view()); }
};

/// How a cache policy is built for a model and asked for room.
template <class C>
struct cache_policy {
    static_assert(sizeof(C) == 0, "kite::model::decoder: the Cache policy must be kite::kv::contiguous<T> or kite::kv::paged<B, T>");
};
template <storage_scalar T>
struct cache_policy<kv::contiguous<T>> {
    static kv::contiguous<T> make(const kv::cache_shape& s, index_t max_tokens, index_t max_sequences) {
        return kv::contiguous<T>(s, max_tokens, max_tokens * max_sequences);
    }
    static bool has_room(const kv::contiguous<T>& c, std::span<const kv::seq_id> seqs, index_t n) {
        for (const kv::seq_id s : seqs)
            if (c.length(s) + n > c.max_seq_len()) return false;
        return true;
    }
};
template <index_t B, storage_scalar T>
struct cache_policy<kv::paged<B, T>> {
    static kv::paged<B, T> make(const kv::cache_shape& s, index_t max_tokens, index_t max_sequences) {
        return kv::paged<B, T>(s, max_sequences * ((max_tokens + B - 1) / B));
    }
    static bool has_room(const kv::paged<B, T>& c, std::span<const kv::seq_id> seqs, index_t n) {
        index_t need = 0;
        for (const kv::seq_id s : seqs) need += c.blocks_needed(s, n);
        return need <= c.free_blocks();
    }
};

}  // namespace detail

/// Construction options of a decoder.
template <class Weights>
struct decoder_options {
    /// The quantization method, with its runtime options (e.g. gptq{.act_order = true}).
    Weights method{};
    /// Positions the model serves (RoPE table rows): 0 means config.max_position_embeddings
    /// (ALiBi: unlimited). Learned positions cannot exceed their table.
    index_t max_positions = 0;
    /// Token sequences whose activations calibrate GPTQ / AWQ (ignored by data-free methods).
    std::vector<std::vector<std::int32_t>> calibration{};
};

/// A decoder-only transformer assembled from policies; see the file comment.
template <attn::head_layout Layout, pos::position_encoding Position, attn::attention_kernel Kernel, kv::kv_cache Cache,
          norm_layer Norm, mlp_kind Mlp, quant::quant_method Weights = quant::f32>
class decoder {
public:
    using layout = Layout;
    using position_kind = Position;
    using kernel = Kernel;
    using cache_type = Cache;
    using norm = Norm;
    using mlp_policy = Mlp;
    using weights = Weights;
    using format = typename Weights::format;
    using block_type = transformer_block<Layout, Position, Kernel, Norm, Mlp, format>;
    using options = decoder_options<Weights>;

    /// Scratch of a forward pass (one per concurrent caller).
    struct workspace {
        matrix<float> x;                  // [tokens][hidden] residual stream
        matrix<float> h;                  // [rows][hidden] final norm output
        block_workspace block;
        std::vector<index_t> positions;   // [tokens]
        // forward(): the parts' tokens, slices and sequences, and the rows that get logits
        std::vector<std::int32_t> tokens;
        std::vector<ragged_part> parts;
        std::vector<kv::seq_id> seqs;
        matrix<float> sel;
    };

    /// Throws kite::config_error with a sentence naming the first way `c` does not fit the
    /// policies (position kind and RoPE convention, head layout, norm, MLP shape and activation,
    /// decoder vs encoder).
    static void check_config(const model_config& c) {
        using pp = detail::position_policy<Position>;
        KITE_REQUIRE(c.causal, config_error, "decoder: '", c.model_type,
                     "' is a bidirectional encoder; a decoder runs causal language models");
        KITE_REQUIRE(!c.post_norm, config_error, "decoder: '", c.model_type,
                     "' normalises after each residual add (post-norm); kite's decoder blocks are pre-norm");
        KITE_REQUIRE(c.position == pp::kind, config_error, "decoder: the model ('", c.model_type, "') uses ",
                     detail::describe(c.position), ", but the decoder's position policy is ", pp::name(),
                     ", which implements ", detail::describe(pp::kind));
        pp::check(c);
        try {
            Layout::validate(c.num_heads, c.num_kv_heads);
        } catch (const config_error& e) {
            kite::detail::raise<config_error>("decoder: the model ('", c.model_type, "') has ", c.num_heads,
                                              " query heads and ", c.num_kv_heads,
                                              " key/value heads, which the head layout kite::attn::", Layout::name,
                                              " cannot hold (", e.what(), ")");
        }
        KITE_REQUIRE(c.norm == Norm::kind, config_error, "decoder: the model ('", c.model_type, "') uses ",
                     detail::describe(c.norm), ", but the decoder's norm policy is ", detail::describe(Norm::kind));
        KITE_REQUIRE(c.mlp == Mlp::type, config_error, "decoder: the model ('", c.model_type, "') has a ",
                     c.mlp == mlp_type::gated ? "gated (GLU)" : "plain", " MLP, but the decoder's MLP policy is ",
                     Mlp::gated ? "gated (GLU)" : "plain");
        KITE_REQUIRE(c.hidden_act == Mlp::activation::kind, config_error, "decoder: the model ('", c.model_type,
                     "') uses the activation ", to_string(c.hidden_act), ", but the decoder's MLP policy uses ",
                     Mlp::activation::name);
        KITE_REQUIRE(c.vocab_size >= 1 && c.hidden_size >= 1 && c.num_layers >= 1 && c.head_dim >= 1, config_error,
                     "decoder: the model ('", c.model_type, "') has vocab ", c.vocab_size, ", hidden ", c.hidden_size,
                     ", ", c.num_layers, " layers, head_dim ", c.head_dim, "; expected all >= 1");
    }

    /// Builds the decoder from a float checkpoint: validates the config against the policies
    /// and the tensors against the config, then quantizes every linear layer with
    /// options.method (calibrating on options.calibration when the method needs it).
    explicit decoder(const checkpoint& ck, const options& opt = {})
        : cfg_(validated(ck)), max_pos_(context(cfg_, opt)),
          position_(detail::position_policy<Position>::make(cfg_, ck.tensors, max_pos_)),
          emb_(ck.tensors.embedding.view()) {
        const model_tensors& t = ck.tensors;
        const float eps = static_cast<float>(cfg_.norm_eps);
        if (cfg_.embedding_norm) emb_norm_ = Norm::make(t.embedding_norm_weight, t.embedding_norm_bias, eps);
        final_norm_ = Norm::make(t.final_norm_weight, t.final_norm_bias, eps);

        activation_capture cap;
        if constexpr (quant::calibrated_method<Weights>) {
            if constexpr (!quant::data_free_method<Weights>) {
                KITE_REQUIRE(!opt.calibration.empty(), invalid_argument, "decoder: ", Weights::name,
                             " weights need calibration inputs: give token sequences in options.calibration");
            }
            if (!opt.calibration.empty()) {
                // The float32 model supplies each layer's inputs (collected in one pass, as AWQ does).
                using reference = decoder<Layout, Position, Kernel, Cache, Norm, Mlp, quant::f32>;
                decoder_options<quant::f32> ropt;
                ropt.max_positions = opt.max_positions;
                reference f32(ck, ropt);
                for (const auto& seq : opt.calibration) f32.capture(seq, cap);
            }
        }
        const auto calib = [&](index_t layer, linear_input where, index_t cols) -> matrix_view<const float> {
            if (cap.blocks.size() <= layer) return {};
            return activation_capture::rows(cap.blocks[layer][static_cast<std::size_t>(where)], cols);
        };
        const index_t hidden = cfg_.hidden_size, inter = cfg_.intermediate_size;
        blocks_.reserve(t.blocks.size());
        for (index_t l = 0; l < t.blocks.size(); ++l) {
            const block_tensors& b = t.blocks[l];
            auto qkv = make_linear(opt.method, b.qkv.view(), b.qkv_bias, calib(l, linear_input::qkv, hidden));
            auto o = make_linear(opt.method, b.o.view(), b.o_bias, calib(l, linear_input::o, cfg_.q_dim()));
            auto up = make_linear(opt.method, b.up.view(), b.up_bias, calib(l, linear_input::up, hidden));
            auto down = make_linear(opt.method, b.down.view(), b.down_bias, calib(l, linear_input::down, inter));
            blocks_.emplace_back(cfg_, Norm::make(b.attn_norm_weight, b.attn_norm_bias, eps), std::move(qkv), std::move(o),
                                 Norm::make(b.mlp_norm_weight, b.mlp_norm_bias, eps),
                                 feed_forward<Mlp, format>(std::move(up), std::move(down)));
        }
        lm_head_ = make_linear(opt.method, t.classifier(), {}, activation_capture::rows(cap.head, hidden));
    }

    /// Builds the decoder from a model whose weights are already in this decoder's format (a
    /// GGUF model read by kite::model::read_gguf: blocks used as stored, nothing quantized or
    /// copied); options.method and options.calibration are not used.
    explicit decoder(const prepared_model<format>& m, const options& opt = {})
        : cfg_(validated(m)), max_pos_(context(cfg_, opt)),
          position_(detail::position_policy<Position>::make(cfg_, model_tensors{}, max_pos_)),
          emb_(embedding::decoded(m.embedding.clone())) {
        static_assert(Position::applies_to != pos::where::embedding,
                      "kite::model::decoder: prepared (GGUF) models with learned position tables are not supported");
        const float eps = static_cast<float>(cfg_.norm_eps);
        final_norm_ = Norm::make(m.final_norm_weight, m.final_norm_bias, eps);
        blocks_.reserve(m.blocks.size());
        for (const auto& b : m.blocks)
            blocks_.emplace_back(cfg_, Norm::make(b.attn_norm_weight, b.attn_norm_bias, eps),
                                 linear<format>(b.qkv.clone(), b.qkv_bias), linear<format>(b.o.clone(), b.o_bias),
                                 Norm::make(b.mlp_norm_weight, b.mlp_norm_bias, eps),
                                 feed_forward<Mlp, format>(linear<format>(b.up.clone(), b.up_bias),
                                                           linear<format>(b.down.clone(), b.down_bias)));
        lm_head_ = linear<format>(m.classifier().clone());
    }

    decoder(decoder&&) noexcept = default;
    decoder& operator=(decoder&&) noexcept = default;

    const model_config& config() const noexcept { return cfg_; }
    index_t vocab_size() const noexcept { return cfg_.vocab_size; }
    index_t hidden() const noexcept { return cfg_.hidden_size; }
    index_t num_layers() const noexcept { return blocks_.size(); }
    /// Positions the model serves (a sequence holds at most this many tokens); 0: unlimited.
    index_t max_positions() const noexcept { return max_pos_; }
    const Position& position() const noexcept { return position_; }
    const embedding& token_embedding() const noexcept { return emb_; }
    const block_type& block(index_t layer) const noexcept { return blocks_[layer]; }
    const linear<format>& lm_head() const noexcept { return lm_head_; }
    /// Bytes of weights each decoded token reads: every linear layer, the classifier and one
    /// embedding row (the KV cache reads come on top and grow with the context).
    std::size_t weight_bytes() const noexcept {
        std::size_t b = lm_head_.bytes() + hidden() * sizeof(float);
        for (const auto& blk : blocks_) b += blk.weight_bytes();
        return b;
    }
    /// The shape of the K/V this model stores per token.
    kv::cache_shape cache_shape() const noexcept { return {cfg_.num_layers, cfg_.num_kv_heads, cfg_.head_dim}; }

    /// A cache for `max_sequences` sequences of up to `max_tokens` tokens each.
    Cache make_cache(index_t max_tokens, index_t max_sequences = 1) const {
        KITE_REQUIRE(max_tokens >= 1 && max_sequences >= 1, invalid_argument, "decoder::make_cache: max_tokens = ",
                     max_tokens, ", max_sequences = ", max_sequences, "; expected both >= 1");
        return detail::cache_policy<Cache>::make(cache_shape(), max_tokens, max_sequences);
    }

    /// Runs `tokens` of sequence s (appended after what the cache holds for it) and writes the
    /// logits of every token (logits [tokens][vocab]) or of the last one (logits [1][vocab]).
    /// Returns kv::status::out_of_blocks, with the cache unchanged, when it has no room.
    kv::status prefill(workspace& ws, Cache& cache, kv::seq_id s, std::span<const std::int32_t> tokens,
                       matrix_view<float> logits) const {
        const index_t n = tokens.size();
        KITE_REQUIRE(n >= 1, invalid_argument, "decoder::prefill: no tokens; expected at least one");
        KITE_REQUIRE(logits.cols() == vocab_size() && (logits.rows() == n || logits.rows() == 1), shape_error,
                     "decoder::prefill: logits are [", logits.rows(), "][", logits.cols(), "]; expected [", n, "][",
                     vocab_size(), "] (every token) or [1][", vocab_size(), "] (the last)");
        const index_t pos0 = cache.length(s);
        check_positions(pos0 + n, "decoder::prefill");
        ws.positions.resize(n);
        for (index_t t = 0; t < n; ++t) ws.positions[t] = pos0 + t;
        embed(ws, tokens);
        const kv::seq_id one[1] = {s};
        if (!detail::cache_policy<Cache>::has_room(cache, one, n) || cache.append(s, n) != kv::status::ok)
            return kv::status::out_of_blocks;
        for (index_t l = 0; l < blocks_.size(); ++l)
            blocks_[l].prefill(cache, l, s, pos0, ws.x.view(), position_, ws.block);
        classify(ws, ws.x.view().rows_slice(n - logits.rows(), logits.rows()), logits);
        return kv::status::ok;
    }

    /// One decoding step for a batch of distinct sequences: token[b] is appended to seqs[b]
    /// and logits [batch][vocab] receive the next-token logits. Returns out_of_blocks, with
    /// the cache unchanged, when it has no room for one more token of every sequence.
    kv::status decode(workspace& ws, Cache& cache, std::span<const kv::seq_id> seqs, std::span<const std::int32_t> tokens,
                      matrix_view<float> logits) const {
        const index_t batch = seqs.size();
        KITE_REQUIRE(batch >= 1 && tokens.size() == batch, shape_error, "decoder::decode: ", batch, " sequences and ",
                     tokens.size(), " tokens; expected one token per sequence, at least one");
        KITE_REQUIRE(logits.rows() == batch && logits.cols() == vocab_size(), shape_error,
                     "decoder::decode: logits are [", logits.rows(), "][", logits.cols(), "]; expected [", batch, "][",
                     vocab_size(), "]");
        ws.positions.resize(batch);
        for (index_t b = 0; b < batch; ++b) {
            for (index_t c = 0; c < b; ++c)
                KITE_REQUIRE(seqs[c] != seqs[b], invalid_argument, "decoder::decode: sequence ", seqs[b],
                             " appears twice in the batch; expected distinct sequences");
            ws.positions[b] = cache.length(seqs[b]);
            check_positions(ws.positions[b] + 1, "decoder::decode");
        }
        embed(ws, tokens);
        if (!detail::cache_policy<Cache>::has_room(cache, seqs, 1)) return kv::status::out_of_blocks;
        for (const kv::seq_id s : seqs) cache.append(s, 1);
        for (index_t l = 0; l < blocks_.size(); ++l)
            blocks_[l].decode(cache, l, seqs, ws.positions, ws.x.view(), position_, ws.block);
        classify(ws, ws.x.view(), logits);
        return kv::status::ok;
    }

    /// One sequence's new tokens in a ragged batch (forward()): `tokens` are appended to `seq`;
    /// logit_rows is 0 (no logits), 1 (the last token's) or tokens.size() (every token's).
    struct batch_part {
        kv::seq_id seq = 0;
        std::span<const std::int32_t> tokens;
        index_t logit_rows = 1;
    };

    /// A ragged batch: the new tokens of several distinct sequences (prefill chunks, single
    /// decode tokens, a decode token with draft tokens to verify) in one pass, one GEMM per
    /// linear layer over all of them. logits: [sum of logit_rows][vocab], in part order.
    /// Returns kv::status::out_of_blocks, with the cache unchanged, when it has no room. With
    /// Kernel = attn::invariant and row-independent weight kernels (the GGUF formats), every
    /// row equals what prefill() / decode() give the same sequence alone, bit for bit.
    kv::status forward(workspace& ws, Cache& cache, std::span<const batch_part> parts, matrix_view<float> logits) const {
        KITE_REQUIRE(!parts.empty(), invalid_argument, "decoder::forward: no parts; expected at least one sequence");
        index_t rows = 0, out_rows = 0;
        ws.seqs.clear();
        for (index_t i = 0; i < parts.size(); ++i) {
            const batch_part& p = parts[i];
            const index_t n = p.tokens.size();
            KITE_REQUIRE(n >= 1, invalid_argument, "decoder::forward: part ", i, " has no tokens; expected at least one");
            KITE_REQUIRE(p.logit_rows == 0 || p.logit_rows == 1 || p.logit_rows == n, invalid_argument,
                         "decoder::forward: part ", i, " asks for ", p.logit_rows, " logit rows of ", n,
                         " tokens; expected 0, 1 or ", n);
            for (index_t j = 0; j < i; ++j)
                KITE_REQUIRE(parts[j].seq != p.seq, invalid_argument, "decoder::forward: sequence ", p.seq,
                             " appears twice; expected distinct sequences");
            check_positions(cache.length(p.seq) + n, "decoder::forward");
            rows += n;
            out_rows += p.logit_rows;
            ws.seqs.push_back(p.seq);
        }
        KITE_REQUIRE(logits.rows() == out_rows && logits.cols() == vocab_size(), shape_error, "decoder::forward: logits are [",
                     logits.rows(), "][", logits.cols(), "]; expected [", out_rows, "][", vocab_size(), "]");
        if constexpr (requires { cache.blocks_needed(parts[0].seq, index_t{1}); }) {
            index_t need = 0;
            for (const batch_part& p : parts) need += cache.blocks_needed(p.seq, p.tokens.size());
            if (need > cache.free_blocks()) return kv::status::out_of_blocks;
        } else {
            for (const batch_part& p : parts) {
                const kv::seq_id one[1] = {p.seq};
                if (!detail::cache_policy<Cache>::has_room(cache, one, p.tokens.size())) return kv::status::out_of_blocks;
            }
        }
        ws.positions.resize(rows);
        ws.tokens.resize(rows);
        ws.parts.resize(parts.size());
        index_t r = 0;
        for (index_t i = 0; i < parts.size(); ++i) {
            const batch_part& p = parts[i];
            const index_t pos0 = cache.length(p.seq), n = p.tokens.size();
            ws.parts[i] = ragged_part{p.seq, pos0, n, r};
            for (index_t t = 0; t < n; ++t) {
                ws.positions[r + t] = pos0 + t;
                ws.tokens[r + t] = p.tokens[t];
            }
            r += n;
        }
        embed(ws, ws.tokens);
        for (const batch_part& p : parts) {
            const kv::status st = cache.append(p.seq, p.tokens.size());
            KITE_ASSERT(st == kv::status::ok);
            (void)st;
        }
        for (index_t l = 0; l < blocks_.size(); ++l)
            blocks_[l].forward(cache, l, ws.parts, ws.seqs, ws.positions, ws.x.view(), position_, ws.block);
        // The rows whose logits are wanted, gathered (in part order) for one classifier GEMM.
        ws.sel.resize(out_rows, hidden());
        index_t o = 0;
        for (index_t i = 0; i < parts.size(); ++i) {
            const ragged_part& p = ws.parts[i];
            for (index_t t = p.n - parts[i].logit_rows; t < p.n; ++t, ++o)
                std::copy_n(ws.x.row(p.row + t).data(), hidden(), ws.sel.row(o).data());
        }
        if (out_rows > 0) classify(ws, ws.sel.view(), logits);
        return kv::status::ok;
    }

    /// prefill() with the decoder's own workspace (one caller at a time).
    kv::status prefill(Cache& cache, kv::seq_id s, std::span<const std::int32_t> tokens, matrix_view<float> logits) {
        return prefill(ws_, cache, s, tokens, logits);
    }
    /// decode() with the decoder's own workspace (one caller at a time).
    kv::status decode(Cache& cache, std::span<const kv::seq_id> seqs, std::span<const std::int32_t> tokens,
                      matrix_view<float> logits) {
        return decode(ws_, cache, seqs, tokens, logits);
    }

    /// The logits of every position of `tokens` [tokens][vocab], computed from scratch on a
    /// fresh cache (the full-recompute oracle of incremental decoding).
    matrix<float> forward(std::span<const std::int32_t> tokens) {
        matrix<float> logits(tokens.size(), vocab_size());
        run_fresh(tokens, logits.view());
        return logits;
    }

    /// Runs `tokens` on a fresh cache and appends the input of every linear layer to `cap`
    /// (the calibration data of GPTQ and AWQ).
    void capture(std::span<const std::int32_t> tokens, activation_capture& cap) {
        KITE_REQUIRE(!tokens.empty(), invalid_argument, "decoder::capture: no tokens");
        ws_.block.capture = &cap;
        struct reset {
            workspace& w;
            ~reset() { w.block.capture = nullptr; }
        } guard{ws_};
        matrix<float> logits(tokens.size(), vocab_size());  // every row: the classifier's inputs too
        run_fresh(tokens, logits.view());
    }

private:
    static const model_config& validated(const checkpoint& ck) {
        check_config(ck.config);
        detail::check_tensors(ck.config, ck.tensors, ck.source);
        return ck.config;
    }
    static const model_config& validated(const prepared_model<format>& m) {
        check_config(m.config);
        detail::check_prepared(m.config, m);
        return m.config;
    }

    static index_t context(const model_config& c, const options& opt) {
        const index_t cfg_max = c.max_position_embeddings;
        if constexpr (Position::applies_to == pos::where::embedding) {
            KITE_REQUIRE(opt.max_positions <= cfg_max, config_error, "decoder: max_positions = ", opt.max_positions,
                         " exceeds the ", cfg_max, " learned positions of the model");
            return opt.max_positions ? opt.max_positions : cfg_max;
        } else if constexpr (Position::applies_to == pos::where::qk) {
            const index_t m = opt.max_positions ? opt.max_positions : cfg_max;
            KITE_REQUIRE(m >= 1, config_error, "decoder: the model gives no max_position_embeddings; set options.max_positions");
            KITE_REQUIRE(c.rope_scaling != pos::rope_scaling::dynamic_ntk || m <= c.rope_original_max_positions,
                         config_error, "decoder: max_positions = ", m, " exceeds the trained context of ",
                         c.rope_original_max_positions,
                         "; dynamic-NTK RoPE rescales past it, which a KV cache of earlier keys cannot follow");
            return m;
        } else {
            return opt.max_positions;
        }
    }

    void check_positions(index_t end, const char* who) const {
        KITE_REQUIRE(max_pos_ == 0 || end <= max_pos_, invalid_argument, who, ": the sequence would reach ", end,
                     " tokens; the model serves at most max_positions = ", max_pos_);
    }

    // x [tokens][hidden] = embedding (+ learned positions), then the embedding norm.
    void embed(workspace& ws, std::span<const std::int32_t> tokens) const {
        ws.x.resize(tokens.size(), hidden());
        emb_.forward(tokens, ws.x.view());
        if constexpr (Position::applies_to == pos::where::embedding) position_.add(ws.x.view(), ws.positions);
        if (emb_norm_) emb_norm_->forward(ws.x.view(), ws.x.view());
    }

    // logits = classifier(final_norm(x)) for the rows of x given.
    void classify(workspace& ws, matrix_view<const float> x, matrix_view<float> logits) const {
        lm_head_.prefetch();
        ws.h.resize(x.rows(), hidden());
        final_norm_.forward(x, ws.h.view());
        if (ws.block.capture) activation_capture::append(ws.block.capture->head, ws.h.view());
        lm_head_.forward(ws.h.view(), logits);
    }

    void run_fresh(std::span<const std::int32_t> tokens, matrix_view<float> logits) {
        Cache cache = make_cache(std::max<index_t>(tokens.size(), 1));
        const kv::seq_id s = *cache.add_sequence();
        const kv::status st = prefill(ws_, cache, s, tokens, logits);
        KITE_ASSERT(st == kv::status::ok);
        (void)st;
    }

    model_config cfg_;
    index_t max_pos_ = 0;
    Position position_;
    embedding emb_;
    std::optional<Norm> emb_norm_;
    std::vector<block_type> blocks_;
    Norm final_norm_;
    linear<format> lm_head_;  // [vocab][hidden]
    workspace ws_;
};

// ---- the families kite loads ----------------------------------------------------------------

/// Llama / Qwen2 / Mistral-style: GQA, RoPE rotate_half, RMSNorm, SwiGLU.
template <quant::quant_method Weights = quant::f32, kv::kv_cache Cache = kv::contiguous<float>,
          attn::attention_kernel Kernel = attn::flash<64, 64>>
using llama_decoder = decoder<attn::gqa, pos::rope<pos::rotate_half>, Kernel, Cache, norm::rms, mlp::swiglu, Weights>;

/// llama.c checkpoints: as Llama, with RoPE on interleaved pairs.
template <quant::quant_method Weights = quant::f32, kv::kv_cache Cache = kv::contiguous<float>,
          attn::attention_kernel Kernel = attn::flash<64, 64>>
using llama2c_decoder = decoder<attn::gqa, pos::rope<pos::interleaved>, Kernel, Cache, norm::rms, mlp::swiglu, Weights>;

/// BLOOM: MHA, ALiBi, LayerNorm (also after the embedding), GELU-tanh MLP.
template <quant::quant_method Weights = quant::f32, kv::kv_cache Cache = kv::contiguous<float>,
          attn::attention_kernel Kernel = attn::flash<64, 64>>
using bloom_decoder = decoder<attn::mha, pos::alibi, Kernel, Cache, norm::layer, mlp::gelu_tanh, Weights>;

/// GPT-2: MHA, learned positions, LayerNorm, GELU-tanh MLP.
template <quant::quant_method Weights = quant::f32, kv::kv_cache Cache = kv::contiguous<float>,
          attn::attention_kernel Kernel = attn::flash<64, 64>>
using gpt2_decoder = decoder<attn::mha, pos::learned, Kernel, Cache, norm::layer, mlp::gelu_tanh, Weights>;

}  // namespace kite::model
