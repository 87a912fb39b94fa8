#pragma once
/// @file kite/cuda/decoder.hpp
/// kite::cuda::decoder<Layout, Position, Norm, Mlp>: kite::model::decoder's llama-family models
/// (RoPE, RMSNorm, SwiGLU; MHA, GQA or MQA) on the GPU. The same policy types as the CPU decoder
/// and the same checks of the config against them; the weights are uploaded once, the KV cache
/// is a device pool in kite::kv::paged layout (block tables kept on the host), and every step
/// runs kite::cuda's kernels:
///
///   embed -> per layer: rms_norm, qkv gemv, rope_kv_append, attention, o gemv (+ residual),
///            rms_norm, up gemv, swiglu, down gemv (+ residual) -> final rms_norm -> classifier gemv
///
///   using gpu_llama = kite::cuda::decoder<kite::attn::gqa, kite::pos::rope<kite::pos::rotate_half>,
///                                         kite::norm::rms, kite::mlp::swiglu>;
///   gpu_llama model(ck, {.weights = kite::cuda::weight_format::bf16, .kv = kite::cuda::dtype::bf16,
///                        .max_tokens = 2048, .max_sequences = 8});
///   auto s = model.add_sequence();
///   model.prefill(s, prompt, logits);               // logits [vocab]: the last token's
///   model.decode(seqs, next_tokens, batch_logits);  // [batch][vocab]
///   auto tokens = model.generate(prompt, 32);       // greedy
///
/// Attention: decode steps use kite::cuda::paged_decode (head_dim 64 or 128; its q and o take the
/// pool's dtype, so a bf16 / fp16 cache rounds q and o once) unless options.paged_decode_kernel is
/// false. Prefill runs the prompt in chunks of options.prefill_chunk tokens, each a batch through
/// the same kernels; a chunk that starts its sequence, with a bf16 / fp16 cache and head_dim 64
/// or 128, attends through kite::cuda::flash_forward (q rounded to the pool's dtype, k and v
/// gathered from the pool, o rounded once) unless options.flash_prefill is false. Other chunks,
/// and decode at other head sizes, use kite::cuda::paged_attention, a simple causal kernel over
/// the pool (fp32 q and o, exact rather than fast, O(n^2) per sequence).
///
/// Weights: options.weights picks the device format; the float checkpoint is quantized on the
/// host with kite's own methods (quant::f32, quant::dense<bf16>, quant::absmax<8> for
/// int8_rows, quant::absmax<4, 128> for int4_g128) and uploaded with kite::cuda::upload
/// (gemv_upload.hpp). The token embedding stays float32.
///
/// GGUF models (kite::model::read_gguf, a prepared_model<quant::ggml_weights>) run as stored:
///
///   const kite::model::gguf_file file("models/SmolLM2-135M-Instruct.Q4_1.gguf");
///   kite::cuda::decoder<kite::attn::gqa, kite::pos::rope<kite::pos::interleaved>, kite::norm::rms,
///                       kite::mlp::swiglu> gpu(kite::model::read_gguf(file), {.max_tokens = 2048});
///
/// (llama files rotate interleaved pairs, qwen2 files rotate_half: the config is checked as by
/// kite::model::gguf_llama_decoder / gguf_qwen2_decoder.) Q4_0, Q4_1 and Q8_0 tensors are uploaded
/// block for block (upload(ggml_weights)); float tensors (F32, F16, BF16, and the K-quants read_gguf
/// decoded to F16 or F32) go to f32 when options.weights is f32 (the default: exact, every weight
/// the CPU's float) or to bf16 when it is bf16 (half the bytes; exact for BF16 tensors, F16 and F32
/// ones rounded once). A fused projection whose parts have different types (q|k|v, gate|up) is
/// one device matrix per run of parts of one device format, each gemv writing its rows. The
/// token embedding is decoded to float32 on the host (the CPU decoder's rows, exactly); the
/// classifier (lm_head, or the embedding when tied) is uploaded as stored like a projection.
///
/// Not thread-safe: one caller at a time (every call runs on the default stream and returns
/// after its logits reached the host).

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <optional>
#include <span>
#include <type_traits>
#include <vector>

#include "kite/attn/layout.hpp"
#include "kite/attn/reference.hpp"
#include "kite/core/error.hpp"
#include "kite/cuda/block_table.hpp"
#include "kite/cuda/flash.hpp"
#include "kite/cuda/gemv.hpp"
#include "kite/cuda/gemv_upload.hpp"
#include "kite/cuda/ops.hpp"
#include "kite/cuda/paged_decode.hpp"
#include "kite/cuda/runtime.hpp"
#include "kite/kv/contiguous.hpp"
#include "kite/kv/paged.hpp"
#include "kite/model/decoder.hpp"
#include "kite/model/weights.hpp"
#include "kite/pos/rope.hpp"
#include "kite/quant.hpp"
#include "kite/quant/ggml.hpp"

namespace kite::cuda {

/// Construction options of kite::cuda::decoder.
struct decoder_options {
    /// Device weight format of every linear layer and the classifier: f32, bf16, int8_rows
    /// (kite::quant::absmax<8>) or int4_g128 (kite::quant::absmax<4, 128>). A GGUF model keeps
    /// its Q4_0 / Q4_1 / Q8_0 tensors as stored; this picks the device format of its float
    /// tensors (F32, F16, BF16): f32 (exact) or bf16.
    weight_format weights = weight_format::f32;
    /// Element type of the KV cache pool: f32, bf16 or fp16.
    dtype kv = dtype::f32;
    /// Tokens one sequence may hold (prompt + generated); also capped by the model's
    /// max_position_embeddings.
    index_t max_tokens = 2048;
    /// Sequences the pool holds at max_tokens each, and the largest decode batch.
    index_t max_sequences = 1;
    /// Prompt tokens per prefill pass (sizes the activation scratch).
    index_t prefill_chunk = 256;
    /// Decode attention through kite::cuda::paged_decode where it applies (head_dim 64 / 128);
    /// false: always kite::cuda::paged_attention.
    bool paged_decode_kernel = true;
    /// Prefill attention through kite::cuda::flash_forward where it applies: a bf16 / fp16 KV
    /// cache, head_dim 64 or 128, and a chunk that starts its sequence (no earlier tokens in the
    /// cache: the first chunk of a fresh sequence). Other chunks, and false: paged_attention.
    bool flash_prefill = true;
};

namespace detail {
template <class P>
inline constexpr bool is_rope = false;
template <class C>
inline constexpr bool is_rope<pos::rope<C>> = true;

inline void check_int(index_t v, const char* what) {
    KITE_REQUIRE(v <= static_cast<index_t>(std::numeric_limits<int>::max()), config_error, "cuda::decoder: ", what, " = ",
                 v, "; expected a value that fits an int");
}
}  // namespace detail

/// A llama-family decoder on the GPU; see the file comment. BlockTokens: tokens per KV pool block.
template <attn::head_layout Layout, pos::position_encoding Position, model::norm_layer Norm, model::mlp_kind Mlp,
          index_t BlockTokens = 16>
class decoder {
    static_assert(detail::is_rope<Position>,
                  "kite::cuda::decoder runs llama-family models (RoPE, RMSNorm, SwiGLU): the Position policy must be "
                  "kite::pos::rope<kite::pos::rotate_half> or kite::pos::rope<kite::pos::interleaved>");
    static_assert(std::is_same_v<Norm, model::norm::rms>,
                  "kite::cuda::decoder runs llama-family models (RoPE, RMSNorm, SwiGLU): the Norm policy must be "
                  "kite::norm::rms");
    static_assert(std::is_same_v<Mlp, model::mlp::swiglu>,
                  "kite::cuda::decoder runs llama-family models (RoPE, RMSNorm, SwiGLU): the Mlp policy must be "
                  "kite::mlp::swiglu");
    static_assert(BlockTokens >= 8 && BlockTokens <= 256, "kite::cuda::decoder: BlockTokens must be 8 .. 256");

    using convention = typename Position::convention;
    // The CPU decoder with the same policies: its check_config is the one this decoder applies.
    using cpu_twin = model::decoder<Layout, Position, attn::reference, kv::contiguous<float>, Norm, Mlp, quant::f32>;
    using tables_type = kv::paged<BlockTokens, float>;  // block tables only (a 1 x 1 x 1 shape)

    // A linear layer W [rows][cols] on the device: one matrix, or (a GGUF projection whose parts
    // have different device formats) row ranges [row0, row0 + w.rows()) of their own formats.
    struct projection {
        struct part {
            device_matrix w;
            int row0 = 0;
        };
        std::vector<part> parts;
        int rows = 0, cols = 0;
    };

    struct layer_weights {
        device_buffer<float> attn_norm, mlp_norm;          // [hidden]
        projection qkv, o, up, down;                       // [q_dim + 2 kv_dim][hidden], [hidden][q_dim], [2I][hidden], [hidden][I]
        device_buffer<float> qkv_bias, o_bias, up_bias, down_bias;  // empty when the model has none
    };

public:
    using layout = Layout;
    using position_kind = Position;
    using norm = Norm;
    using mlp_policy = Mlp;
    using options = decoder_options;
    static constexpr index_t block_tokens = BlockTokens;

    /// Checks the config against the policies (as kite::model::decoder does) and the tensors
    /// against the config, quantizes the weights on the host and uploads them once, and
    /// reserves the KV pool (max_sequences x max_tokens tokens) and the scratch.
    explicit decoder(const model::checkpoint& ck, const options& opt = {})
        : cfg_(validated(ck, opt)), opt_(opt),
          tables_({.layers = 1, .kv_heads = 1, .head_dim = 1}, opt.max_sequences * blocks_for(opt.max_tokens)) {
        init_shape();
        const model::model_tensors& t = ck.tensors;
        emb_ = device_buffer<float>(t.embedding.flat());
        if (cfg_.embedding_norm) emb_norm_ = norm_weight(t.embedding_norm_weight, t.embedding_norm_bias);
        final_norm_ = norm_weight(t.final_norm_weight, t.final_norm_bias);
        layers_.reserve(t.blocks.size());
        for (const model::block_tensors& b : t.blocks) {
            layer_weights w;
            w.attn_norm = norm_weight(b.attn_norm_weight, b.attn_norm_bias);
            w.mlp_norm = norm_weight(b.mlp_norm_weight, b.mlp_norm_bias);
            w.qkv = upload_weights(b.qkv.view());
            w.o = upload_weights(b.o.view());
            w.up = upload_weights(b.up.view());
            w.down = upload_weights(b.down.view());
            w.qkv_bias = bias(b.qkv_bias);
            w.o_bias = bias(b.o_bias);
            w.up_bias = bias(b.up_bias);
            w.down_bias = bias(b.down_bias);
            layers_.push_back(std::move(w));
        }
        lm_head_ = upload_weights(t.classifier());
        init_buffers();
    }

    /// A GGUF model (kite::model::read_gguf) as stored; see the file comment. Checks the config
    /// against the policies as kite::model::decoder's prepared-model constructor does (a llama
    /// file needs rope<interleaved>, a qwen2 file rope<rotate_half>) and the tensors' shapes;
    /// options.weights (f32 or bf16) is the device format of the float tensors. The model's
    /// storage (the file's mapping) is read only during construction.
    explicit decoder(const model::prepared_model<quant::ggml_weights>& m, const options& opt = {})
        : cfg_(validated(m, opt)), opt_(opt),
          tables_({.layers = 1, .kv_heads = 1, .head_dim = 1}, opt.max_sequences * blocks_for(opt.max_tokens)) {
        init_shape();
        {  // the embedding rows, decoded as the CPU decoder decodes them on lookup
            const quant::ggml_weights& e = m.embedding;
            std::vector<float> rows(static_cast<std::size_t>(e.rows()) * static_cast<std::size_t>(e.cols()));
            for (index_t r = 0; r < e.rows(); ++r) e.decode_row(r, rows.data() + r * e.cols());
            emb_ = device_buffer<float>(std::span<const float>(rows));
        }
        final_norm_ = norm_weight(m.final_norm_weight, m.final_norm_bias);
        layers_.reserve(m.blocks.size());
        for (const auto& b : m.blocks) {
            layer_weights w;
            w.attn_norm = norm_weight(b.attn_norm_weight, b.attn_norm_bias);
            w.mlp_norm = norm_weight(b.mlp_norm_weight, b.mlp_norm_bias);
            w.qkv = upload_ggml(b.qkv);
            w.o = upload_ggml(b.o);
            w.up = upload_ggml(b.up);
            w.down = upload_ggml(b.down);
            w.qkv_bias = bias(b.qkv_bias);
            w.o_bias = bias(b.o_bias);
            w.up_bias = bias(b.up_bias);
            w.down_bias = bias(b.down_bias);
            layers_.push_back(std::move(w));
        }
        lm_head_ = upload_ggml(m.classifier());
        init_buffers();
    }

    decoder(const decoder&) = delete;
    decoder& operator=(const decoder&) = delete;
    decoder(decoder&&) noexcept = default;
    decoder& operator=(decoder&&) noexcept = default;

    const model::model_config& config() const noexcept { return cfg_; }
    const options& opts() const noexcept { return opt_; }
    index_t vocab_size() const noexcept { return cfg_.vocab_size; }
    index_t hidden() const noexcept { return cfg_.hidden_size; }
    index_t num_layers() const noexcept { return layers_.size(); }
    /// Tokens a sequence may hold: min(max_tokens, max_position_embeddings).
    index_t max_positions() const noexcept { return max_pos_; }
    /// True when decode attention runs through kite::cuda::paged_decode.
    bool uses_paged_decode() const noexcept { return opt_.paged_decode_kernel && (head_dim_ == 64 || head_dim_ == 128); }
    /// True when a prefill chunk that starts its sequence attends through kite::cuda::flash_forward.
    bool uses_flash_prefill() const noexcept {
        return opt_.flash_prefill && opt_.kv != dtype::f32 && (head_dim_ == 64 || head_dim_ == 128);
    }

    /// A new, empty sequence.
    kv::seq_id add_sequence() { return *tables_.add_sequence(); }
    /// Frees a sequence's KV blocks; its id may be reused.
    void release(kv::seq_id s) { tables_.free(s); }
    /// Tokens the cache holds for s.
    index_t length(kv::seq_id s) const { return tables_.length(s); }
    /// Free KV pool blocks (of BlockTokens tokens).
    index_t free_blocks() const noexcept { return tables_.free_blocks(); }

    /// Runs `tokens` of sequence s (after what the cache holds for it) and writes the logits of
    /// the last one (logits_last [vocab]). Returns out_of_blocks, with nothing changed, when
    /// the pool has no room.
    kv::status prefill(kv::seq_id s, std::span<const std::int32_t> tokens, std::span<float> logits_last) {
        const index_t n = tokens.size();
        KITE_REQUIRE(n >= 1, invalid_argument, "cuda::decoder::prefill: no tokens; expected at least one");
        KITE_REQUIRE(logits_last.size() == vocab_size(), shape_error, "cuda::decoder::prefill: logits_last has ",
                     logits_last.size(), " elements; expected vocab = ", vocab_size());
        check_tokens(tokens, "cuda::decoder::prefill");
        const index_t pos0 = tables_.length(s);
        check_positions(pos0 + n, "cuda::decoder::prefill");
        if (tables_.blocks_needed(s, n) > tables_.free_blocks()) return kv::status::out_of_blocks;
        if (tables_.append(s, n) != kv::status::ok) return kv::status::out_of_blocks;
        const kv::seq_id one[1] = {s};
        for (index_t c0 = 0; c0 < n; c0 += static_cast<index_t>(rows_)) {
            const index_t m = std::min<index_t>(static_cast<index_t>(rows_), n - c0);
            host_ids_.assign(tokens.begin() + static_cast<std::ptrdiff_t>(c0),
                             tokens.begin() + static_cast<std::ptrdiff_t>(c0 + m));
            host_pos_.resize(m);
            host_seq_.assign(m, 0);
            for (index_t i = 0; i < m; ++i) host_pos_[i] = static_cast<std::int32_t>(pos0 + c0 + i);
            const bool last = c0 + m == n;
            const bool fresh = pos0 + c0 == 0;  // no earlier tokens: causal attention within the chunk
            step(one, false, last ? static_cast<int>(m) - 1 : -1, last ? logits_last.data() : nullptr, fresh);
        }
        return kv::status::ok;
    }

    /// One decoding step for distinct sequences: tokens[b] is appended to seqs[b] and logits
    /// [batch][vocab] receive the next-token logits. batch <= options.max_sequences. Returns
    /// out_of_blocks, with nothing changed, when the pool has no room for every sequence.
    kv::status decode(std::span<const kv::seq_id> seqs, std::span<const std::int32_t> tokens, std::span<float> logits) {
        const index_t batch = seqs.size();
        KITE_REQUIRE(batch >= 1 && tokens.size() == batch, shape_error, "cuda::decoder::decode: ", batch,
                     " sequences and ", tokens.size(), " tokens; expected one token per sequence, at least one");
        KITE_REQUIRE(batch <= opt_.max_sequences, invalid_argument, "cuda::decoder::decode: a batch of ", batch,
                     " sequences; expected at most options.max_sequences = ", opt_.max_sequences);
        KITE_REQUIRE(logits.size() == batch * vocab_size(), shape_error, "cuda::decoder::decode: logits has ",
                     logits.size(), " elements; expected batch x vocab = ", batch, " x ", vocab_size());
        check_tokens(tokens, "cuda::decoder::decode");
        index_t need = 0;
        for (index_t b = 0; b < batch; ++b) {
            for (index_t c = 0; c < b; ++c)
                KITE_REQUIRE(seqs[c] != seqs[b], invalid_argument, "cuda::decoder::decode: sequence ", seqs[b],
                             " appears twice in the batch; expected distinct sequences");
            check_positions(tables_.length(seqs[b]) + 1, "cuda::decoder::decode");
            need += tables_.blocks_needed(seqs[b], 1);
        }
        if (need > tables_.free_blocks()) return kv::status::out_of_blocks;
        host_ids_.assign(tokens.begin(), tokens.end());
        host_pos_.resize(batch);
        host_seq_.resize(batch);
        for (index_t b = 0; b < batch; ++b) {
            host_pos_[b] = static_cast<std::int32_t>(tables_.length(seqs[b]));
            host_seq_[b] = static_cast<std::int32_t>(b);
            const kv::status st = tables_.append(seqs[b], 1);  // room was checked above
            KITE_REQUIRE(st == kv::status::ok, invalid_argument, "cuda::decoder::decode: no block for sequence ", seqs[b]);
        }
        step(seqs, true, 0, logits.data());
        return kv::status::ok;
    }

    /// Greedy generation: prefills `prompt` in a new sequence, then decodes `n` tokens, each the
    /// argmax of the previous logits (ties: the lowest id), and frees the sequence. Returns the
    /// n new tokens; throws invalid_argument when the pool has no room for them.
    std::vector<std::int32_t> generate(std::span<const std::int32_t> prompt, index_t n) {
        std::vector<std::int32_t> out;
        if (n == 0) return out;
        const kv::seq_id s = add_sequence();
        struct guard {
            decoder& d;
            kv::seq_id s;
            ~guard() { d.release(s); }
        } g{*this, s};
        std::vector<float> logits(vocab_size());
        KITE_REQUIRE(prefill(s, prompt, logits) == kv::status::ok, invalid_argument,
                     "cuda::decoder::generate: no room in the KV pool for a prompt of ", prompt.size(), " tokens");
        const kv::seq_id one[1] = {s};
        for (index_t i = 0; i < n; ++i) {
            const auto best = static_cast<std::int32_t>(std::max_element(logits.begin(), logits.end()) - logits.begin());
            out.push_back(best);
            if (i + 1 == n) break;
            const std::int32_t tok[1] = {best};
            KITE_REQUIRE(decode(one, tok, logits) == kv::status::ok, invalid_argument,
                         "cuda::decoder::generate: no room in the KV pool after ", i + 1, " generated tokens");
        }
        return out;
    }

private:
    static index_t blocks_for(index_t tokens) noexcept { return (tokens + BlockTokens - 1) / BlockTokens; }

    // The options every constructor checks; `gguf`: a GGUF model (options.weights is the
    // format of its float tensors).
    static void check_options(const options& opt, bool gguf) {
        if (gguf) {
            KITE_REQUIRE(opt.weights == weight_format::f32 || opt.weights == weight_format::bf16, invalid_argument,
                         "cuda::decoder: options.weights = ", weight_format_name(opt.weights),
                         " for a GGUF model; expected f32 or bf16 (the device format of its float tensors: its "
                         "Q4_0 / Q4_1 / Q8_0 tensors are used as stored)");
        } else {
            KITE_REQUIRE(opt.weights == weight_format::f32 || opt.weights == weight_format::bf16 ||
                             opt.weights == weight_format::int8_rows || opt.weights == weight_format::int4_g128,
                         invalid_argument, "cuda::decoder: options.weights = ", weight_format_name(opt.weights),
                         "; expected f32, bf16, int8_rows or int4_g128 (the formats it quantizes a float checkpoint to)");
        }
        KITE_REQUIRE(opt.max_tokens >= 1 && opt.max_sequences >= 1 && opt.prefill_chunk >= 1, invalid_argument,
                     "cuda::decoder: max_tokens = ", opt.max_tokens, ", max_sequences = ", opt.max_sequences,
                     ", prefill_chunk = ", opt.prefill_chunk, "; expected all >= 1");
        KITE_REQUIRE(opt.max_tokens <= (index_t{1} << 30) && opt.max_sequences <= 4096 && opt.prefill_chunk <= 65536,
                     invalid_argument, "cuda::decoder: max_tokens = ", opt.max_tokens, ", max_sequences = ",
                     opt.max_sequences, ", prefill_chunk = ", opt.prefill_chunk,
                     "; expected at most 2^30, 4096 and 65536");
    }

    // The GPU decoder's own limits on a config the CPU twin accepted.
    static void check_limits(const model::model_config& c, const options& opt) {
        KITE_REQUIRE(c.head_dim <= 256, config_error, "cuda::decoder: the model ('", c.model_type, "') has head_dim ",
                     c.head_dim, "; the GPU decoder's attention takes heads of up to 256 elements");
        KITE_REQUIRE(c.rope_scaling != pos::rope_scaling::dynamic_ntk || opt.max_tokens <= c.rope_original_max_positions,
                     config_error, "cuda::decoder: max_tokens = ", opt.max_tokens, " exceeds the trained context of ",
                     c.rope_original_max_positions,
                     "; dynamic-NTK RoPE rescales past it, which a KV cache of earlier keys cannot follow");
        detail::check_int(c.vocab_size, "vocab_size");
        detail::check_int(c.q_dim() + 2 * c.kv_dim(), "q_dim + 2 kv_dim");
        detail::check_int(2 * c.intermediate_size, "2 x intermediate_size");
        detail::check_int(c.hidden_size, "hidden_size");
    }

    static const model::model_config& validated(const model::checkpoint& ck, const options& opt) {
        check_options(opt, false);
        const model::model_config& c = ck.config;
        cpu_twin::check_config(c);
        model::detail::check_tensors(c, ck.tensors, ck.source);
        check_limits(c, opt);
        return c;
    }

    // As kite::model::decoder's prepared-model constructor: the config against the policies,
    // then the tensors' shapes and the norms' values.
    static const model::model_config& validated(const model::prepared_model<quant::ggml_weights>& m,
                                                const options& opt) {
        check_options(opt, true);
        const model::model_config& c = m.config;
        cpu_twin::check_config(c);
        model::detail::check_prepared(c, m);
        check_limits(c, opt);
        return c;
    }

    // Sizes from the (validated) config and options.
    void init_shape() {
        hidden_ = static_cast<int>(cfg_.hidden_size);
        heads_ = static_cast<int>(cfg_.num_heads);
        kv_heads_ = static_cast<int>(cfg_.num_kv_heads);
        head_dim_ = static_cast<int>(cfg_.head_dim);
        q_dim_ = heads_ * head_dim_;
        kv_dim_ = kv_heads_ * head_dim_;
        qkv_dim_ = q_dim_ + 2 * kv_dim_;
        inter_ = static_cast<int>(cfg_.intermediate_size);
        vocab_ = static_cast<int>(cfg_.vocab_size);
        eps_ = static_cast<float>(cfg_.norm_eps);
        scale_ = 1.0f / std::sqrt(static_cast<float>(head_dim_));
        max_pos_ = opt_.max_tokens;
        if (cfg_.max_position_embeddings > 0) max_pos_ = std::min(max_pos_, cfg_.max_position_embeddings);
        rows_ = static_cast<int>(std::max(opt_.prefill_chunk, opt_.max_sequences));
        max_blocks_ = static_cast<int>(blocks_for(opt_.max_tokens));
        // RoPE: kite's own frequencies (base, scaling), so both decoders rotate alike.
        const Position rope(cfg_.rope(1));
        rotary_dim_ = static_cast<int>(rope.rotary_dim());
        inv_freq_ = device_buffer<float>(rope.inv_freq());
    }

    // The KV pool and the scratch, once the weights are uploaded.
    void init_buffers() {
        // The KV pool: [layer][k | v][block][kv_head][token][head_dim].
        layer_pool_elems_ = tables_.num_blocks() * static_cast<std::size_t>(kv_heads_) * BlockTokens * head_dim_;
        pool_ = device_buffer<std::uint8_t>(layers_.size() * 2 * layer_pool_elems_ * dtype_bytes(opt_.kv));
        // Scratch for rows_ tokens at a time.
        const auto rows = static_cast<std::size_t>(rows_);
        x_ = device_buffer<float>(rows * hidden_);
        h_ = device_buffer<float>(rows * hidden_);
        proj_ = device_buffer<float>(rows * hidden_);
        qkv_ = device_buffer<float>(rows * qkv_dim_);
        att_ = device_buffer<float>(rows * q_dim_);
        qdense_ = device_buffer<float>(rows * q_dim_);
        gu_ = device_buffer<float>(rows * 2 * inter_);
        act_ = device_buffer<float>(rows * inter_);
        logits_ = device_buffer<float>(static_cast<std::size_t>(opt_.max_sequences) * vocab_);
        if (opt_.kv != dtype::f32) {
            q16_ = device_buffer<std::uint16_t>(rows * q_dim_);
            o16_ = device_buffer<std::uint16_t>(rows * q_dim_);
        }
        if (uses_flash_prefill()) {
            k16_ = device_buffer<std::uint16_t>(rows * kv_dim_);
            v16_ = device_buffer<std::uint16_t>(rows * kv_dim_);
        }
        // Projections in parts write each part's rows [n][part rows] here first (n > 1).
        std::size_t part_rows = 0;
        const auto widest = [&](const projection& p) {
            if (p.parts.size() > 1)
                for (const auto& q : p.parts) part_rows = std::max(part_rows, static_cast<std::size_t>(q.w.rows()));
        };
        for (const layer_weights& w : layers_) {
            widest(w.qkv);
            widest(w.o);
            widest(w.up);
            widest(w.down);
        }
        widest(lm_head_);
        if (part_rows > 0) part_out_ = device_buffer<float>(rows * part_rows);
        // ids, positions, token rows [rows each]; lengths [max_sequences]; tables
        // [max_sequences][max_blocks]; flash's cu_seqlens [2].
        ints_ = device_buffer<std::int32_t>(3 * rows + opt_.max_sequences +
                                            opt_.max_sequences * static_cast<std::size_t>(max_blocks_) + 2);
    }

    static device_buffer<float> norm_weight(const std::vector<float>& w, const std::vector<float>& b) {
        (void)model::rms_norm::make(w, b, 1e-6f);  // RMSNorm's own checks: no bias, finite weights
        return device_buffer<float>(std::span<const float>(w));
    }
    static device_buffer<float> bias(const std::vector<float>& b) {
        if (b.empty()) return {};
        return device_buffer<float>(std::span<const float>(b));
    }

    static projection whole(device_matrix m) {
        projection p;
        p.rows = m.rows();
        p.cols = m.cols();
        p.parts.push_back({std::move(m), 0});
        return p;
    }

    // W [out][in] quantized on the host by kite's method for options.weights, then uploaded.
    projection upload_weights(matrix_view<const float> w) const {
        switch (opt_.weights) {
            case weight_format::f32: return whole(upload(quant::f32{}.quantize(w)));
            case weight_format::bf16: return whole(upload(quant::dense<bf16>{}.quantize(w)));
            case weight_format::int8_rows: return whole(upload(quant::absmax<8>{}.quantize(w)));
            case weight_format::int4_g128: return whole(upload(quant::absmax<4, 128>{}.quantize(w)));
            default: break;
        }
        kite::detail::raise<invalid_argument>("cuda::decoder: weight format ", weight_format_name(opt_.weights),
                                              " is not supported");
    }

    // The device format of a GGUF tensor type: Q4_0 / Q4_1 / Q8_0 as stored, floats as
    // options.weights says (f32, or bf16).
    weight_format device_format(quant::ggml::type t) const {
        namespace gg = quant::ggml;
        switch (t) {
            case gg::type::q4_0: return weight_format::q4_0;
            case gg::type::q4_1: return weight_format::q4_1;
            case gg::type::q8_0: return weight_format::q8_0;
            case gg::type::f32:
            case gg::type::f16:
            case gg::type::bf16: return opt_.weights;
            default: break;
        }
        kite::detail::raise<invalid_argument>("cuda::decoder: a GGUF tensor of type ", gg::name(t),
                                              "; the GPU decoder takes F32, F16, BF16, Q8_0, Q4_0 and Q4_1");
    }

    // GGUF weights as stored: each run of segments (stacked parts) of one device format becomes
    // one device matrix; quantized blocks through upload(ggml_weights), float rows decoded
    // exactly and uploaded as f32 or (rounded) bf16.
    projection upload_ggml(const quant::ggml_weights& w) const {
        KITE_REQUIRE(w.rows() >= 1 && w.cols() >= 1 && !w.segments().empty(), invalid_argument,
                     "cuda::decoder: a GGUF tensor of ", w.rows(), " x ", w.cols(), "; expected a non-empty matrix");
        projection p;
        p.rows = static_cast<int>(w.rows());
        p.cols = static_cast<int>(w.cols());
        const auto& segs = w.segments();
        index_t row0 = 0;
        for (std::size_t i = 0; i < segs.size();) {
            const weight_format f = device_format(segs[i].type);
            std::size_t j = i;
            index_t rows = 0;
            while (j < segs.size() && device_format(segs[j].type) == f) rows += segs[j++].rows;
            if (f == weight_format::f32 || f == weight_format::bf16) {
                matrix<float> dense(rows, w.cols());
                for (index_t r = 0; r < rows; ++r) w.decode_row(row0 + r, dense.row(r).data());
                p.parts.push_back({upload(dense.view(), f), static_cast<int>(row0)});
            } else {
                std::vector<quant::ggml_weights> views;
                for (std::size_t k = i; k < j; ++k)
                    views.emplace_back(segs[k].type,
                                       std::span<const std::byte>(segs[k].data, segs[k].rows * segs[k].row_bytes),
                                       segs[k].rows, w.cols());
                p.parts.push_back({upload(quant::ggml_weights::stack(views)), static_cast<int>(row0)});
            }
            row0 += rows;
            i = j;
        }
        KITE_REQUIRE(row0 == w.rows(), invalid_argument, "cuda::decoder: GGUF parts of ", row0, " rows; expected ",
                     w.rows());
        return p;
    }

    void check_tokens(std::span<const std::int32_t> tokens, const char* who) const {
        for (index_t i = 0; i < tokens.size(); ++i)
            KITE_REQUIRE(tokens[i] >= 0 && static_cast<index_t>(tokens[i]) < vocab_size(), invalid_argument, who,
                         ": token ", i, " = ", tokens[i], "; expected an id in [0, vocab = ", vocab_size(), ")");
    }
    void check_positions(index_t end, const char* who) const {
        KITE_REQUIRE(end <= max_pos_, invalid_argument, who, ": the sequence would reach ", end,
                     " tokens; the decoder serves at most ", max_pos_,
                     " (options.max_tokens, capped by max_position_embeddings)");
    }

    // y [n][v.rows] = x [n][v.cols] W^T (+ bias), in gemv calls of up to 8 vectors.
    static void gemv_rows(const gemv_weights& v, const float* x, float* y, int n, const float* bias) {
        for (int r = 0; r < n; r += 8) {
            const int m = std::min(8, n - r);
            gemv(v, x + static_cast<std::size_t>(r) * v.cols, y + static_cast<std::size_t>(r) * v.rows, m, bias);
        }
    }

    // y [n][p.rows] = x [n][p.cols] W^T (+ bias). A projection in parts: each part's rows go
    // straight into y for one vector, else through part_out_ and a strided copy.
    void linear(const projection& p, const float* x, float* y, int n, const device_buffer<float>& b) {
        const float* bias = b.empty() ? nullptr : b.data();
        if (p.parts.size() == 1) {
            gemv_rows(p.parts.front().w.view(), x, y, n, bias);
            return;
        }
        for (const auto& part : p.parts) {
            const gemv_weights& v = part.w.view();
            const float* pb = bias ? bias + part.row0 : nullptr;
            if (n == 1) {
                gemv_rows(v, x, y + part.row0, 1, pb);
                continue;
            }
            gemv_rows(v, x, part_out_.data(), n, pb);  // [n][v.rows]
            KITE_CUDA_CHECK(cudaMemcpy2DAsync(y + part.row0, static_cast<std::size_t>(p.rows) * sizeof(float),
                                              part_out_.data(), static_cast<std::size_t>(v.rows) * sizeof(float),
                                              static_cast<std::size_t>(v.rows) * sizeof(float),
                                              static_cast<std::size_t>(n), cudaMemcpyDeviceToDevice, nullptr));
        }
    }

    void* pool(std::size_t layer, int which) noexcept {
        return pool_.data() + (layer * 2 + static_cast<std::size_t>(which)) * layer_pool_elems_ * dtype_bytes(opt_.kv);
    }

    // One pass over the tokens in host_ids_ / host_pos_ / host_seq_ (rows of the sequences in
    // `seqs`, whose tables already hold them). decode: one token per sequence, at its last
    // position. logit_row >= 0 (prefill) or decode: logits of that row (all rows) to `logits`.
    // fresh (prefill): the rows are positions 0 .. n-1 of one sequence, the whole of its cache.
    void step(std::span<const kv::seq_id> seqs, bool decode_step, int logit_row, float* logits, bool fresh = false) {
        const int n = static_cast<int>(host_ids_.size());
        const packed_block_tables tab = pack_block_tables(tables_, seqs);
        const int nseq = tab.batch();
        // One upload of every int array: ids, positions, token rows, lengths, tables.
        host_ints_.clear();
        host_ints_.insert(host_ints_.end(), host_ids_.begin(), host_ids_.end());
        host_ints_.insert(host_ints_.end(), host_pos_.begin(), host_pos_.end());
        host_ints_.insert(host_ints_.end(), host_seq_.begin(), host_seq_.end());
        host_ints_.insert(host_ints_.end(), tab.lengths.begin(), tab.lengths.end());
        host_ints_.insert(host_ints_.end(), tab.table.begin(), tab.table.end());
        const bool flash = !decode_step && fresh && nseq == 1 && uses_flash_prefill();
        if (flash) {  // cu_seqlens of one sequence: q and k both rows 0 .. n
            host_ints_.push_back(0);
            host_ints_.push_back(n);
        }
        KITE_REQUIRE(host_ints_.size() <= ints_.size(), invalid_argument, "cuda::decoder: ", host_ints_.size(),
                     " step integers; the buffer holds ", ints_.size());
        KITE_CUDA_CHECK(cudaMemcpy(ints_.data(), host_ints_.data(), host_ints_.size() * sizeof(std::int32_t),
                                   cudaMemcpyHostToDevice));
        const std::int32_t* d_ids = ints_.data();
        const std::int32_t* d_pos = d_ids + n;
        const std::int32_t* d_seq = d_pos + n;
        const std::int32_t* d_len = d_seq + n;
        const std::int32_t* d_table = d_len + nseq;
        const std::int32_t* d_cu = d_table + tab.table.size();  // flash only

        float* x = x_.data();  // [n][hidden] residual stream
        embed(emb_.data(), d_ids, x, n, hidden_);
        if (!emb_norm_.empty()) rms_norm(x, emb_norm_.data(), x, n, hidden_, eps_);
        const bool paged = decode_step && uses_paged_decode();
        for (std::size_t l = 0; l < layers_.size(); ++l) {
            const layer_weights& w = layers_[l];
            rms_norm(x, w.attn_norm.data(), h_.data(), n, hidden_, eps_);
            linear(w.qkv, h_.data(), qkv_.data(), n, w.qkv_bias);  // [n][q | k | v]
            rope_kv_append_args ra;
            ra.q = qkv_.data();
            ra.k = qkv_.data() + q_dim_;
            ra.v = qkv_.data() + q_dim_ + kv_dim_;
            ra.positions = d_pos;
            ra.token_seq = d_seq;
            ra.block_table = d_table;
            ra.k_pool = pool(l, 0);
            ra.v_pool = pool(l, 1);
            ra.inv_freq = inv_freq_.data();
            ra.tokens = n;
            ra.num_heads = heads_;
            ra.num_kv_heads = kv_heads_;
            ra.head_dim = head_dim_;
            ra.rotary_dim = rotary_dim_;
            ra.block_tokens = static_cast<int>(BlockTokens);
            ra.max_blocks_per_seq = tab.max_blocks;
            ra.interleaved = std::is_same_v<convention, pos::interleaved>;
            ra.pool_type = opt_.kv;
            ra.q_stride = qkv_dim_;
            ra.kv_stride = qkv_dim_;
            rope_kv_append(ra);
            if (paged) {
                attend_paged_decode(l, n, tab, d_len, d_table);
            } else if (flash) {
                attend_flash(l, n, tab, d_table, d_cu);
            } else {
                paged_attention_args aa;
                aa.q = qkv_.data();
                aa.o = att_.data();
                aa.positions = d_pos;
                aa.token_seq = d_seq;
                aa.block_table = d_table;
                aa.k_pool = pool(l, 0);
                aa.v_pool = pool(l, 1);
                aa.tokens = n;
                aa.num_heads = heads_;
                aa.num_kv_heads = kv_heads_;
                aa.head_dim = head_dim_;
                aa.block_tokens = static_cast<int>(BlockTokens);
                aa.max_blocks_per_seq = tab.max_blocks;
                aa.scale = scale_;
                aa.pool_type = opt_.kv;
                aa.q_stride = qkv_dim_;
                paged_attention(aa);
            }
            linear(w.o, att_.data(), proj_.data(), n, w.o_bias);
            add_inplace(x, proj_.data(), static_cast<std::int64_t>(n) * hidden_);
            rms_norm(x, w.mlp_norm.data(), h_.data(), n, hidden_, eps_);
            linear(w.up, h_.data(), gu_.data(), n, w.up_bias);  // [n][gate | up]
            swiglu(gu_.data(), act_.data(), n, inter_);
            linear(w.down, act_.data(), proj_.data(), n, w.down_bias);
            add_inplace(x, proj_.data(), static_cast<std::int64_t>(n) * hidden_);
        }
        if (!logits) return;
        const int first = decode_step ? 0 : logit_row;
        const int rows = decode_step ? n : 1;
        rms_norm(x + static_cast<std::size_t>(first) * hidden_, final_norm_.data(), h_.data(), rows, hidden_, eps_);
        linear(lm_head_, h_.data(), logits_.data(), rows, device_buffer<float>{});
        KITE_CUDA_CHECK(cudaMemcpy(logits, logits_.data(), static_cast<std::size_t>(rows) * vocab_ * sizeof(float),
                                   cudaMemcpyDeviceToHost));
    }

    // Decode attention through kite::cuda::paged_decode: q gathered dense from the fused q|k|v
    // rows (and rounded to the pool's dtype when it is not f32), o back to f32.
    void attend_paged_decode(std::size_t layer, int n, const packed_block_tables& tab, const std::int32_t* d_len,
                             const std::int32_t* d_table) {
        KITE_CUDA_CHECK(cudaMemcpy2DAsync(qdense_.data(), static_cast<std::size_t>(q_dim_) * sizeof(float), qkv_.data(),
                                          static_cast<std::size_t>(qkv_dim_) * sizeof(float),
                                          static_cast<std::size_t>(q_dim_) * sizeof(float), static_cast<std::size_t>(n),
                                          cudaMemcpyDeviceToDevice, nullptr));
        const bool f32 = opt_.kv == dtype::f32;
        const std::int64_t elems = static_cast<std::int64_t>(n) * q_dim_;
        if (!f32) convert(qdense_.data(), dtype::f32, q16_.data(), opt_.kv, elems);
        paged_decode_args a;
        a.q = f32 ? static_cast<const void*>(qdense_.data()) : static_cast<const void*>(q16_.data());
        a.k_pool = pool(layer, 0);
        a.v_pool = pool(layer, 1);
        a.o = f32 ? static_cast<void*>(att_.data()) : static_cast<void*>(o16_.data());
        a.block_table = d_table;
        a.seq_lens = d_len;
        a.batch = n;
        a.num_heads = heads_;
        a.num_kv_heads = kv_heads_;
        a.head_dim = head_dim_;
        a.block_tokens = static_cast<int>(BlockTokens);
        a.max_blocks_per_seq = tab.max_blocks;
        a.max_seq_len = tab.max_length;
        a.scale = scale_;
        a.type = opt_.kv;
        a.num_splits = 0;
        const std::size_t ws = paged_decode_workspace_floats(a);
        if (ws > workspace_.size()) workspace_ = device_buffer<float>(ws);
        a.workspace = ws ? workspace_.data() : nullptr;
        paged_decode(a);
        if (!f32) convert(o16_.data(), opt_.kv, att_.data(), dtype::f32, elems);
    }

    // Prefill attention of a fresh sequence's first n tokens through kite::cuda::flash_forward:
    // q (rotated in place by rope_kv_append) gathered dense and rounded to the pool's dtype, k
    // and v copied out of the pool (the values later steps read), o back to f32.
    void attend_flash(std::size_t layer, int n, const packed_block_tables& tab, const std::int32_t* d_table,
                      const std::int32_t* d_cu) {
        KITE_CUDA_CHECK(cudaMemcpy2DAsync(qdense_.data(), static_cast<std::size_t>(q_dim_) * sizeof(float), qkv_.data(),
                                          static_cast<std::size_t>(qkv_dim_) * sizeof(float),
                                          static_cast<std::size_t>(q_dim_) * sizeof(float), static_cast<std::size_t>(n),
                                          cudaMemcpyDeviceToDevice, nullptr));
        const std::int64_t elems = static_cast<std::int64_t>(n) * q_dim_;
        convert(qdense_.data(), dtype::f32, q16_.data(), opt_.kv, elems);
        paged_gather_args g;
        g.k_pool = pool(layer, 0);
        g.v_pool = pool(layer, 1);
        g.k = k16_.data();
        g.v = v16_.data();
        g.block_table = d_table;  // row 0: the only sequence
        g.tokens = n;
        g.num_kv_heads = kv_heads_;
        g.head_dim = head_dim_;
        g.block_tokens = static_cast<int>(BlockTokens);
        g.max_blocks_per_seq = tab.max_blocks;
        g.pool_type = opt_.kv;
        paged_gather(g);
        flash_args a;
        a.q = q16_.data();
        a.k = k16_.data();
        a.v = v16_.data();
        a.o = o16_.data();
        a.cu_seqlens_q = d_cu;
        a.cu_seqlens_k = d_cu;
        a.batch = 1;
        a.max_seqlen_q = n;
        a.max_seqlen_k = n;
        a.num_heads = heads_;
        a.num_kv_heads = kv_heads_;
        a.head_dim = head_dim_;
        a.causal = true;
        a.scale = scale_;
        a.type = opt_.kv;
        flash_forward(a);
        convert(o16_.data(), opt_.kv, att_.data(), dtype::f32, elems);
    }

    model::model_config cfg_;
    options opt_;
    tables_type tables_;
    int hidden_ = 0, heads_ = 0, kv_heads_ = 0, head_dim_ = 0, q_dim_ = 0, kv_dim_ = 0, qkv_dim_ = 0, inter_ = 0,
        vocab_ = 0, rotary_dim_ = 0, rows_ = 0, max_blocks_ = 0;
    float eps_ = 0, scale_ = 0;
    index_t max_pos_ = 0;
    // weights
    device_buffer<float> inv_freq_;    // [rotary_dim / 2]
    device_buffer<float> emb_;         // [vocab][hidden]
    device_buffer<float> emb_norm_;    // [hidden] or empty
    device_buffer<float> final_norm_;  // [hidden]
    std::vector<layer_weights> layers_;
    projection lm_head_;               // [vocab][hidden]
    // KV pool and scratch
    std::size_t layer_pool_elems_ = 0;       // elements of one layer's K (or V) pool
    device_buffer<std::uint8_t> pool_;       // [layer][k | v][block][kv_head][token][head_dim], opt.kv
    device_buffer<float> x_, h_, proj_;      // [rows][hidden]
    device_buffer<float> qkv_;               // [rows][q_dim + 2 kv_dim]
    device_buffer<float> att_, qdense_;      // [rows][q_dim]
    device_buffer<float> gu_;                // [rows][2 I]
    device_buffer<float> act_;               // [rows][I]
    device_buffer<float> logits_;            // [max_sequences][vocab]
    device_buffer<std::uint16_t> q16_, o16_; // [rows][q_dim] bf16 / fp16 (paged_decode, flash with a 16-bit pool)
    device_buffer<std::uint16_t> k16_, v16_; // [rows][kv_dim] (flash prefill)
    device_buffer<float> workspace_;         // paged_decode's split-K partials
    device_buffer<float> part_out_;          // [rows][widest part] (projections in parts)
    device_buffer<std::int32_t> ints_;       // ids, positions, token rows, lengths, tables
    std::vector<std::int32_t> host_ids_, host_pos_, host_seq_, host_ints_;
};

}  // namespace kite::cuda
