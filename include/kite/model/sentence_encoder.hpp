#pragma once
/// @file kite/model/sentence_encoder.hpp
/// sentence_encoder<Weights, Kernel>: text -> sentence embedding, the whole sentence-transformers
/// path in C++: BERT WordPiece (kite::text::wordpiece_tokenizer), truncation to max_seq_length
/// word pieces, the bert_encoder, mean pooling over the tokens and L2 normalisation.
///
///   auto st = kite::model::sentence_encoder<>::load("models/all-MiniLM-L6-v2");
///   std::vector<float> q = st("What causes the seasons?");   // [384], unit length
///   kite::matrix<float> docs = st.encode(texts);              // [texts][384], batched
///
/// Weights picks how the linear layers compute: kite::quant::f32_packed (default; cosine to
/// sentence-transformers >= 0.9999) or kite::quant::w8a8_packed (int8 weights, activations
/// rounded to int8 per token, AVX-512 VNNI; about 1.7x faster, cosine to float32 about 0.997,
/// SciFact nDCG@10 0.6430 against 0.6451), or any kite::quant method:
///
///   auto fast = kite::model::sentence_encoder<kite::quant::w8a8_packed>::load(dir);
///
/// It models kite::retrieval::embedder (e(text) -> std::vector<float>) and
/// kite::retrieval::batch_embedder (e.encode(texts) -> kite::matrix<float>), so a flat index,
/// a dense_retriever or a pipeline take their vectors from it directly.
///
/// Batched encoding buckets by length: texts are tokenized (in parallel), sorted by word-piece
/// count (longest first, as sentence-transformers does) and encoded batch_size at a time; a
/// batch is packed end to end, so it costs what its tokens cost and nothing for padding. Rows
/// of the result follow the order of the input.
///
/// load() reads the folder of a sentence-transformers model: tokenizer.json (or vocab.txt),
/// config.json, model.safetensors and, when present, sentence_bert_config.json for
/// max_seq_length (256 for all-MiniLM-L6-v2). Needs utf8proc (link kite::text).
/// Scratch: forward passes reuse workspaces kept by the encoder (a few, handed out under a
/// mutex), so steady-state calls do not touch fresh memory; release_scratch() frees them.
/// Thread safety: const members are safe to call from many threads (each call holds its own
/// workspace while it runs).

#include <algorithm>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <mutex>
#include <numeric>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "kite/core/error.hpp"
#include "kite/core/io.hpp"
#include "kite/core/matrix.hpp"
#include "kite/core/parallel.hpp"
#include "kite/model/formats/bert_loader.hpp"
#include "kite/model/encoder.hpp"
#include "kite/text/wordpiece.hpp"

namespace kite::model {

/// Options of a sentence_encoder.
struct sentence_encoder_options {
    /// Word pieces per text including [CLS] and [SEP]; longer texts are truncated. 0: the model
    /// folder's sentence_bert_config.json max_seq_length, else max_position_embeddings.
    index_t max_seq_length = 0;
    /// Texts per forward pass of encode().
    index_t batch_size = 32;
    pooling pool = pooling::mean;
    bool normalize = true;
    /// Threads of each forward pass (0: kite::max_threads()).
    int threads = 0;
};

namespace detail {
/// Workspaces shared by the calls of one sentence_encoder (and its copies).
class workspace_pool {
public:
    /// A workspace to use, and return with give().
    std::unique_ptr<encoder_workspace> take() {
        std::lock_guard<std::mutex> lock(mu_);
        if (free_.empty()) return std::make_unique<encoder_workspace>();
        auto w = std::move(free_.back());
        free_.pop_back();
        return w;
    }
    void give(std::unique_ptr<encoder_workspace> w) {
        std::lock_guard<std::mutex> lock(mu_);
        if (free_.size() < max_kept) free_.push_back(std::move(w));
    }
    void clear() {
        std::lock_guard<std::mutex> lock(mu_);
        free_.clear();
    }

private:
    static constexpr std::size_t max_kept = 4;
    std::mutex mu_;
    std::vector<std::unique_ptr<encoder_workspace>> free_;
};
}  // namespace detail

/// Tokenizer + BERT encoder + pooling; see the file comment.
template <quant::quant_method Weights = quant::f32_packed, attn::attention_kernel Kernel = attn::flash<64, 64>>
class sentence_encoder {
public:
    using encoder_type = bert_encoder<Weights, Kernel>;

    /// Assembles one from its parts; max_seq_length 0 becomes the encoder's max_positions().
    sentence_encoder(text::wordpiece_tokenizer tokenizer, encoder_type encoder, sentence_encoder_options opt = {})
        : tok_(std::move(tokenizer)), enc_(std::move(encoder)), opt_(opt) {
        if (opt_.max_seq_length == 0) opt_.max_seq_length = enc_.max_positions();
        KITE_REQUIRE(opt_.max_seq_length >= 2 && opt_.max_seq_length <= enc_.max_positions(), invalid_argument,
                     "sentence_encoder: max_seq_length = ", opt_.max_seq_length, "; expected 2 to max_positions = ",
                     enc_.max_positions());
        KITE_REQUIRE(opt_.batch_size >= 1, invalid_argument, "sentence_encoder: batch_size = 0; expected >= 1");
        KITE_REQUIRE(tok_.vocab_size() <= enc_.vocab_size(), config_error, "sentence_encoder: the tokenizer has ",
                     tok_.vocab_size(), " tokens but the model's vocabulary only ", enc_.vocab_size());
    }

    /// Loads a sentence-transformers model folder (see the file comment). Calibrated weights
    /// (GPTQ, AWQ) need `calibration_texts`, tokenized like any input; others ignore them.
    static sentence_encoder load(const std::filesystem::path& folder, sentence_encoder_options opt = {},
                                 Weights method = {}, std::span<const std::string> calibration_texts = {}) {
        text::wordpiece_tokenizer tok = text::wordpiece_tokenizer::from_file(folder);
        const bert_checkpoint ckpt = read_bert(folder);
        if (opt.max_seq_length == 0) opt.max_seq_length = configured_max_seq_length(folder, ckpt.config);
        encoder_options<Weights> eo{std::move(method), {}};
        if constexpr (quant::calibrated_method<Weights>) {
            eo.calibration.resize(calibration_texts.size());
            parallel_for(0, calibration_texts.size(), [&](std::size_t i) {
                tok.encode_into(calibration_texts[i], eo.calibration[i], opt.max_seq_length);
            });
        }
        return sentence_encoder(std::move(tok), encoder_type(ckpt, eo), opt);
    }

    /// Embedding dimension.
    index_t dim() const noexcept { return enc_.hidden(); }
    const sentence_encoder_options& options() const noexcept { return opt_; }
    const text::wordpiece_tokenizer& tokenizer() const noexcept { return tok_; }
    const encoder_type& encoder() const noexcept { return enc_; }

    /// Word-piece ids of `text` as the encoder sees them: [CLS] pieces [SEP], truncated.
    std::vector<std::int32_t> tokenize(std::string_view text) const { return tok_.encode(text, opt_.max_seq_length); }

    /// The embedding of one text, [dim()] (the retrieval::embedder form).
    std::vector<float> operator()(std::string_view text) const {
        const std::string_view one[1] = {text};
        const matrix<float> m = encode(std::span<const std::string_view>(one));
        return {m.row(0).begin(), m.row(0).end()};
    }

    /// Embeddings of many texts, [texts][dim()], row i for texts[i].
    matrix<float> encode(std::span<const std::string> texts) const { return encode_any(texts); }
    matrix<float> encode(std::span<const std::string_view> texts) const { return encode_any(texts); }

    /// encode() into out [texts][dim()].
    template <class Text>
    void encode_into(std::span<const Text> texts, matrix_view<float> out) const {
        require_shape(out, texts.size(), dim(), "sentence_encoder::encode: out");
        const index_t n = texts.size();
        if (n == 0) return;
        std::vector<std::vector<std::int32_t>> ids(n);
        parallel_for(
            0, n, [&](std::size_t i) { tok_.encode_into(std::string_view(texts[i]), ids[i], opt_.max_seq_length); },
            opt_.threads);
        // Longest first; equal lengths keep input order, so results do not depend on the sort.
        std::vector<index_t> order(n);
        std::iota(order.begin(), order.end(), index_t{0});
        std::stable_sort(order.begin(), order.end(), [&](index_t a, index_t b) { return ids[a].size() > ids[b].size(); });
        auto ws = pool_->take();
        token_batch batch;
        matrix<float> emb(std::min(opt_.batch_size, n), dim(), uninitialized);
        for (index_t i0 = 0; i0 < n; i0 += opt_.batch_size) {
            const index_t m = std::min(opt_.batch_size, n - i0);
            batch.clear();
            for (index_t j = 0; j < m; ++j) batch.add(ids[order[i0 + j]]);
            const matrix_view<float> e = emb.view().rows_slice(0, m);
            enc_.embed(batch, e, *ws, opt_.threads, opt_.pool, opt_.normalize);
            for (index_t j = 0; j < m; ++j) std::copy(e.row(j).begin(), e.row(j).end(), out.row(order[i0 + j]).begin());
        }
        pool_->give(std::move(ws));  // not on an exception: the pool then simply makes a new one
    }

    /// Frees the scratch memory kept between calls (tens of MB after a batch of long texts).
    void release_scratch() const { pool_->clear(); }

    /// sentence_bert_config.json's max_seq_length in `folder`, else max_position_embeddings.
    static index_t configured_max_seq_length(const std::filesystem::path& folder, const model_config& c) {
        const std::filesystem::path p = folder / "sentence_bert_config.json";
        if (!std::filesystem::is_regular_file(p)) return c.max_position_embeddings;
        const nlohmann::json j = nlohmann::json::parse(io::read_text(p), nullptr, false);
        KITE_REQUIRE(!j.is_discarded() && j.is_object(), format_error, "sentence_encoder: '", p.string(),
                     "' is not a JSON object");
        const auto it = j.find("max_seq_length");
        if (it == j.end() || it->is_null()) return c.max_position_embeddings;
        KITE_REQUIRE(it->is_number_integer() && it->get<std::int64_t>() >= 2 &&
                         static_cast<index_t>(it->get<std::int64_t>()) <= c.max_position_embeddings,
                     config_error, "sentence_encoder: '", p.string(), "': max_seq_length = ", it->dump(),
                     "; expected an integer in [2, max_position_embeddings = ", c.max_position_embeddings, "]");
        return static_cast<index_t>(it->get<std::int64_t>());
    }

private:
    template <class Text>
    matrix<float> encode_any(std::span<const Text> texts) const {
        matrix<float> out(texts.size(), dim(), uninitialized);
        encode_into(texts, out.view());
        return out;
    }

    text::wordpiece_tokenizer tok_;
    encoder_type enc_;
    sentence_encoder_options opt_;
    std::shared_ptr<detail::workspace_pool> pool_ = std::make_shared<detail::workspace_pool>();
};

}  // namespace kite::model
