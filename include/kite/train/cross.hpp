#pragma once
/// @file kite/train/cross.hpp
/// Training a cross-encoder reranker: a bert_model with a classifier head (pooler + one-output
/// classifier on [CLS], as transformers' BertForSequenceClassification) reads a query and a
/// passage together and learns, with binary cross-entropy on its logit, whether the passage is
/// relevant (sentence-transformers' CrossEncoder with BCEWithLogitsLoss):
///
///   model::classifier_head head = model::new_classifier_head(dir, hidden);   // pooler from the encoder
///   train::bert_model<float> ce(model::read_bert(dir), &head);
///   std::vector<train::cross_example> ex = ...;   // (query, passage, label 1 or 0) as pair tokens
///   train::cross_trainer<float> trainer(ce, {.batch = 32, .lr = 2e-5});
///   trainer.epoch(ex, report);
///   train::save_cross_encoder(out, ce, dir);      // model::cross_encoder::load(out) reads it
///
/// loss = mean over the batch of BCE(sigmoid(z), y) = softplus(z) - y z, computed stably;
/// d(loss)/dz = (sigmoid(z) - y) / B.

#include <cmath>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <span>
#include <vector>

#include "kite/core/config.hpp"
#include "kite/core/error.hpp"
#include "kite/core/matrix.hpp"
#include "kite/model/classifier_head.hpp"
#include "kite/train/bert.hpp"
#include "kite/train/checkpoint.hpp"
#include "kite/train/step.hpp"

namespace kite::train {

/// Binary cross-entropy with logits, averaged over the batch: loss and d(loss)/d(logit) into
/// `d` (same size). `correct` counts logits on the label's side of 0. kite::shape_error for
/// mismatched sizes or an empty batch; kite::invalid_argument for a label outside [0, 1].
template <class T>
batch_loss bce_with_logits(std::span<const T> logits, std::span<const float> labels, std::span<T> d) {
    const std::size_t B = logits.size();
    KITE_REQUIRE(B > 0 && labels.size() == B && d.size() == B, shape_error, "train::bce_with_logits: ", B, " logits, ",
                 labels.size(), " labels and ", d.size(), " gradients; expected equal and non-zero");
    batch_loss r;
    for (std::size_t i = 0; i < B; ++i) {
        const T z = logits[i], y = static_cast<T>(labels[i]);
        KITE_REQUIRE(labels[i] >= 0.0f && labels[i] <= 1.0f, invalid_argument, "train::bce_with_logits: label ", i, " is ",
                     labels[i], "; expected 0 to 1");
        // softplus(z) - y z = max(z, 0) - y z + log1p(exp(-|z|))
        r.loss += static_cast<double>(std::max(z, T(0)) - y * z + std::log1p(std::exp(-std::abs(z))));
        const T p = z >= 0 ? T(1) / (T(1) + std::exp(-z)) : std::exp(z) / (T(1) + std::exp(z));
        d[i] = (p - y) / static_cast<T>(B);
        if ((z > 0) == (y > T(0.5))) ++r.correct;
    }
    r.loss /= static_cast<double>(B);
    return r;
}

/// One training example: [CLS] query [SEP] passage [SEP] (model::encode_pair), where the passage
/// starts, and the label (1 relevant, 0 not).
struct cross_example {
    std::vector<std::int32_t> ids;
    index_t second = 0;
    float label = 0;
};

struct cross_options {
    index_t batch = 32;          ///< pairs per step
    double lr = 2e-5;            ///< peak learning rate
    double weight_decay = 0.01;
    double warmup_ratio = 0.1;   ///< share of all steps spent warming up
    double max_grad_norm = 1.0;  ///< 0: no clipping
    index_t epochs = 1;          ///< for the schedule's length
    std::uint64_t seed = 42;
    int threads = 0;             ///< 0: kite::max_threads()
    std::size_t activation_budget = std::size_t{4} << 30;  ///< see stepper_options
};

template <class T>
class cross_trainer : public example_trainer<T, cross_example> {
    using base = example_trainer<T, cross_example>;

public:
    /// `model` must have a classifier head (kite::invalid_argument otherwise).
    cross_trainer(bert_model<T>& model, cross_options o)
        : base("train::cross_trainer", require_head(model),
               {.lr = o.lr, .weight_decay = o.weight_decay, .max_grad_norm = o.max_grad_norm, .threads = o.threads,
                .activation_budget = o.activation_budget},
               {.batch = o.batch, .min_batch = 1, .epochs = o.epochs, .warmup_ratio = o.warmup_ratio, .seed = o.seed}) {}

    /// One pass over `examples` in a seeded random order; returns the mean loss of its steps.
    /// A report's `correct` counts the pairs whose logit is on their label's side of 0.
    double epoch(std::span<const cross_example> examples, const std::function<void(const step_report&)>& report = {}) {
        return this->run_epoch("train::cross_trainer::epoch", examples,
                               [&](std::span<const cross_example* const> batch, double factor) { return step(batch, factor); },
                               report);
    }

    /// One optimisation step on `batch` with learning rate lr * lr_factor.
    step_report step(std::span<const cross_example* const> batch, double lr_factor) {
        const index_t B = batch.size();
        KITE_REQUIRE(B >= 1, invalid_argument, "train::cross_trainer::step: an empty batch; expected at least 1 pair");
        std::vector<const std::vector<std::int32_t>*> seqs(B);
        std::vector<index_t> second(B);
        std::vector<float> labels(B);
        for (index_t i = 0; i < B; ++i) {
            seqs[i] = &batch[i]->ids;
            second[i] = batch[i]->second;
            labels[i] = batch[i]->label;
        }
        step_report rep = this->stepper_.step(
            seqs,
            [&](matrix_view<const T> z, matrix_view<T> dz) {
                std::vector<T> logits(B), d(B);
                for (index_t i = 0; i < B; ++i) logits[i] = z(i, 0);
                const batch_loss l = bce_with_logits<T>(logits, labels, d);
                for (index_t i = 0; i < B; ++i) dz(i, 0) = d[i];
                return l;
            },
            lr_factor, second);
        rep.pairs = B;
        return rep;
    }

private:
    static bert_model<T>& require_head(bert_model<T>& m) {
        KITE_REQUIRE(m.has_head(), invalid_argument, "train::cross_trainer: the model has no classifier head; expected a "
                     "cross-encoder (bert_model(checkpoint, &head))");
        return m;
    }
};

/// Writes a cross-encoder (`m`, with its head) to `out_dir` as a BertForSequenceClassification
/// folder with one label: save_bert's files (encoder tensors prefixed `bert.`), the pooler and
/// the classifier, config.json with architectures ["BertForSequenceClassification"] and
/// num_labels 1 (transformers and sentence-transformers' CrossEncoder load it). The folder
/// appears whole or not at all.
template <class T>
void save_cross_encoder(const std::filesystem::path& out_dir, const bert_model<T>& m,
                        const std::filesystem::path& original_dir, bool overwrite = false) {
    const model::classifier_head hd = m.to_head();
    save_bert(out_dir, m.to_checkpoint(out_dir.string()), original_dir, overwrite, &hd);
}

}  // namespace kite::train
