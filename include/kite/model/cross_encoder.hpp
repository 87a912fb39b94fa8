#pragma once
/// @file kite/model/cross_encoder.hpp
/// A BERT cross-encoder: query and passage read together in one input, one relevance logit out,
/// as transformers' BertForSequenceClassification with one label (sentence-transformers'
/// CrossEncoder):
///
///   ids    = [CLS] query [SEP] passage [SEP]          token type 0 up to the first [SEP], 1 after
///   states = bert_encoder(ids)
///   logit  = w . tanh(P states[CLS] + p) + b          the pooler (P, p) and the classifier (w, b)
///
///   auto ce = kite::model::cross_encoder<>::load("runs/scifact-cross/epoch-1");
///   std::vector<float> s = ce.score("what causes the seasons?", passages);   // one logit each
///
/// The folder is what kite-train cross writes (and transformers' save_pretrained of a
/// BertForSequenceClassification with num_labels 1): config.json, model.safetensors with the
/// encoder under `bert.` or bare names plus pooler.dense.* and classifier.*, the tokenizer, and
/// sentence_bert_config.json's max_seq_length (else 512) for the pair's word pieces.
/// Pairs longer than that are cut as transformers' truncation="longest_first" cuts them
/// (encode_pair). score() packs the
/// pairs of one query into batches, longest first, with no padding.
///
/// cross_encoder_reranker adapts one to kite::retrieval::reranker (score(query, doc ids)) over
/// the documents' texts, for pipeline<..., Fusion, Reranker> and kite-eval --rerank.

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <numeric>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "kite/core/error.hpp"
#include "kite/core/matrix.hpp"
#include "kite/core/parallel.hpp"
#include "kite/model/classifier_head.hpp"
#include "kite/model/encoder.hpp"
#include "kite/model/formats/bert_loader.hpp"
#include "kite/model/sentence_encoder.hpp"
#include "kite/text/wordpiece.hpp"

namespace kite::model {

/// A text pair's word pieces: [CLS] a [SEP] b [SEP], and where b starts (token type 1).
struct pair_tokens {
    std::vector<std::int32_t> ids;
    index_t second = 0;
};

/// [CLS] a [SEP] b [SEP] with at most max_length ids (0: no limit; else >= 3), cut as Hugging
/// Face tokenizers' truncation="longest_first" cuts a pair: with room m = max_length - 3, the
/// shorter text keeps its n1 pieces and the longer gets m - n1 when n1 <= m / 2; otherwise the
/// shorter keeps m / 2 and the longer m / 2 + m % 2 (b counts as the longer on a tie).
inline pair_tokens encode_pair(const text::wordpiece_tokenizer& tok, std::string_view a, std::string_view b,
                               std::size_t max_length = 0) {
    KITE_REQUIRE(max_length == 0 || max_length >= 3, invalid_argument, "encode_pair: max_length = ", max_length,
                 "; expected 0 (no truncation) or >= 3 ([CLS], [SEP], [SEP])");
    std::vector<std::int32_t> pa, pb;
    tok.tokenize(a, pa);
    tok.tokenize(b, pb);
    std::size_t na = pa.size(), nb = pb.size();
    if (max_length > 0 && na + nb > max_length - 3) {
        const std::size_t m = max_length - 3;
        std::size_t& shorter = na > nb ? nb : na;
        std::size_t& longer = na > nb ? na : nb;
        if (shorter <= m / 2) {
            longer = m - shorter;
        } else {
            shorter = m / 2;
            longer = m / 2 + m % 2;
        }
    }
    pair_tokens out;
    out.ids.reserve(na + nb + 3);
    out.ids.push_back(tok.cls_id());
    out.ids.insert(out.ids.end(), pa.begin(), pa.begin() + static_cast<std::ptrdiff_t>(na));
    out.ids.push_back(tok.sep_id());
    out.second = out.ids.size();
    out.ids.insert(out.ids.end(), pb.begin(), pb.begin() + static_cast<std::ptrdiff_t>(nb));
    out.ids.push_back(tok.sep_id());
    return out;
}

struct cross_encoder_options {
    index_t max_seq_length = 0;  ///< word pieces of a pair; 0: sentence_bert_config.json's, else 512
    index_t batch_size = 32;     ///< pairs per forward pass
    int threads = 0;             ///< 0: kite::max_threads()
};

/// Tokenizer + BERT encoder + classifier head; see the file comment.
template <quant::quant_method Weights = quant::f32_packed, attn::attention_kernel Kernel = attn::flash<64, 64>>
class cross_encoder {
public:
    using encoder_type = bert_encoder<Weights, Kernel>;

    cross_encoder(text::wordpiece_tokenizer tokenizer, encoder_type encoder, classifier_head head,
                  cross_encoder_options opt = {})
        : tok_(std::move(tokenizer)), enc_(std::move(encoder)), head_(std::move(head)), opt_(opt) {
        if (opt_.max_seq_length == 0) opt_.max_seq_length = enc_.max_positions();
        KITE_REQUIRE(opt_.max_seq_length >= 3 && opt_.max_seq_length <= enc_.max_positions(), invalid_argument,
                     "cross_encoder: max_seq_length = ", opt_.max_seq_length, "; expected 3 to max_positions = ",
                     enc_.max_positions());
        KITE_REQUIRE(opt_.batch_size >= 1, invalid_argument, "cross_encoder: batch_size = 0; expected >= 1");
        KITE_REQUIRE(head_.hidden() == enc_.hidden() && head_.pooler.cols() == enc_.hidden() &&
                         head_.pooler_bias.size() == enc_.hidden() && head_.weight.size() == enc_.hidden(),
                     shape_error, "cross_encoder: a head for ", head_.hidden(), " states; expected ", enc_.hidden());
        KITE_REQUIRE(tok_.vocab_size() <= enc_.vocab_size(), config_error, "cross_encoder: the tokenizer has ",
                     tok_.vocab_size(), " tokens but the model's vocabulary only ", enc_.vocab_size());
    }

    /// Loads a cross-encoder folder (see the file comment).
    static cross_encoder load(const std::filesystem::path& folder, cross_encoder_options opt = {}) {
        // The weights first: a sentence encoder's folder is told apart by its missing classifier.
        const bert_checkpoint ckpt = read_bert(folder);
        KITE_REQUIRE(ckpt.token_type_embeddings.rows() >= 2, config_error, "cross_encoder: ", folder.string(),
                     " has type_vocab_size ", ckpt.config.type_vocab_size, "; expected 2 (query and passage)");
        classifier_head head = read_classifier_head(folder, ckpt.config.hidden_size);
        text::wordpiece_tokenizer tok = text::wordpiece_tokenizer::from_file(folder);
        if (opt.max_seq_length == 0)
            opt.max_seq_length = sentence_encoder<>::configured_max_seq_length(folder, ckpt.config);
        return cross_encoder(std::move(tok), encoder_type(ckpt), std::move(head), opt);
    }

    const cross_encoder_options& options() const noexcept { return opt_; }
    const text::wordpiece_tokenizer& tokenizer() const noexcept { return tok_; }
    const classifier_head& head() const noexcept { return head_; }

    /// The pair's word pieces as score() reads them.
    pair_tokens tokenize(std::string_view query, std::string_view passage) const {
        return encode_pair(tok_, query, passage, opt_.max_seq_length);
    }

    /// One logit per passage (larger = more relevant; sigmoid gives the probability).
    std::vector<float> score(std::string_view query, std::span<const std::string> passages) const {
        return score_any(query, passages);
    }
    std::vector<float> score(std::string_view query, std::span<const std::string_view> passages) const {
        return score_any(query, passages);
    }

    /// Logits of tokenized pairs, in their order.
    std::vector<float> score_tokens(std::span<const pair_tokens> pairs) const {
        const index_t n = pairs.size();
        std::vector<float> out(n);
        if (n == 0) return out;
        std::vector<index_t> order(n);
        std::iota(order.begin(), order.end(), index_t{0});
        std::stable_sort(order.begin(), order.end(),
                         [&](index_t a, index_t b) { return pairs[a].ids.size() > pairs[b].ids.size(); });
        auto ws = pool_->take();  // reused between calls: no fresh activations per query
        token_batch batch;
        const index_t h = enc_.hidden();
        for (index_t i0 = 0; i0 < n; i0 += opt_.batch_size) {
            const index_t m = std::min(opt_.batch_size, n - i0);
            batch.clear();
            for (index_t j = 0; j < m; ++j) batch.add(pairs[order[i0 + j]].ids, pairs[order[i0 + j]].second);
            enc_.forward(batch, *ws, opt_.threads);
            for (index_t j = 0; j < m; ++j)
                out[order[i0 + j]] = head_(std::span<const float>(ws->x.row(batch.offset(j)).data(), h));
        }
        pool_->give(std::move(ws));
        return out;
    }

private:
    template <class Text>
    std::vector<float> score_any(std::string_view query, std::span<const Text> passages) const {
        std::vector<pair_tokens> pairs(passages.size());
        for (std::size_t i = 0; i < passages.size(); ++i) pairs[i] = tokenize(query, std::string_view(passages[i]));
        return score_tokens(pairs);
    }

    text::wordpiece_tokenizer tok_;
    encoder_type enc_;
    classifier_head head_;
    cross_encoder_options opt_;
    std::shared_ptr<detail::workspace_pool> pool_ = std::make_shared<detail::workspace_pool>();
};

/// A cross_encoder as a kite::retrieval::reranker over documents' texts (`docs[id]`): the
/// pipeline hands it a query and candidate ids, it returns their logits.
template <class Encoder = cross_encoder<>>
class cross_encoder_reranker {
public:
    cross_encoder_reranker(std::shared_ptr<const Encoder> encoder, std::shared_ptr<const std::vector<std::string>> docs)
        : enc_(std::move(encoder)), docs_(std::move(docs)) {
        KITE_REQUIRE(enc_ && docs_, invalid_argument, "cross_encoder_reranker: a null encoder or document list");
    }

    template <class Id>
    std::vector<float> score(std::string_view query, std::span<const Id> ids) const {
        std::vector<std::string_view> texts;
        texts.reserve(ids.size());
        for (const Id id : ids) {
            KITE_REQUIRE(static_cast<std::size_t>(id) < docs_->size(), invalid_argument, "cross_encoder_reranker: document id ",
                         id, "; expected below ", docs_->size());
            texts.push_back((*docs_)[static_cast<std::size_t>(id)]);
        }
        return enc_->score(query, std::span<const std::string_view>(texts));
    }

private:
    std::shared_ptr<const Encoder> enc_;
    std::shared_ptr<const std::vector<std::string>> docs_;
};

}  // namespace kite::model
