#pragma once
/// @file kite/train/distil.hpp
/// Knowledge distillation of a sentence encoder: a student made from some of the teacher's layers
/// learns to reproduce the teacher's embeddings (mean squared error), as sentence-transformers'
/// model-distillation recipe does (layer reduction, MSELoss on the teacher's embeddings):
///
///   const auto teacher = model::read_bert(dir);
///   const index_t keep[] = {0, 2, 5};                  // MiniLM's first, third and last
///   train::bert_model<float> student(train::keep_layers(teacher, keep));
///   std::vector<train::distil_example> data = ...;   // token ids + the teacher's embedding
///   train::distil_trainer<float> trainer(student, {.batch = 32, .lr = 3e-4});
///   trainer.epoch(data, report);
///   train::save_bert(out, student.to_checkpoint(), dir);   // config.json gets 3 layers
///
/// The student's embedding is its mean-pooled last states, L2-normalised when `normalize` is set
/// (the teacher's targets then are its normalised embeddings, as all-MiniLM-L6-v2 gives them);
/// the loss is the mean over the batch and the dimensions of (student - teacher)^2 (torch's
/// MSELoss). Steps, threads, memory and determinism: train::embedding_stepper's.

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <functional>
#include <span>
#include <vector>

#include "kite/core/config.hpp"
#include "kite/core/error.hpp"
#include "kite/core/matrix.hpp"
#include "kite/model/encoder.hpp"
#include "kite/train/bert.hpp"
#include "kite/train/grad.hpp"
#include "kite/train/step.hpp"

namespace kite::train {

/// A checkpoint with only the listed layers of `ck` (in the order given, each once), its
/// embeddings and everything else as they were: the usual start of a distilled student (about
/// every other layer of the teacher, keeping its first and last). kite::invalid_argument for an
/// empty list, a repeated layer or one outside the checkpoint.
inline model::bert_checkpoint keep_layers(const model::bert_checkpoint& ck, std::span<const index_t> layers) {
    KITE_REQUIRE(!layers.empty(), invalid_argument, "train::keep_layers: no layers; expected at least one of ",
                 ck.layers.size());
    model::bert_checkpoint out{ck.config,           ck.word_embeddings.clone(), ck.position_embeddings.clone(),
                               ck.token_type_embeddings.clone(), ck.embedding_norm_weight, ck.embedding_norm_bias,
                               {},                  ck.source};
    std::vector<bool> seen(ck.layers.size(), false);
    for (const index_t l : layers) {
        KITE_REQUIRE(l < ck.layers.size(), invalid_argument, "train::keep_layers: layer ", l, "; expected 0 to ",
                     ck.layers.size() - 1, " (", ck.source, " has ", ck.layers.size(), " layers)");
        KITE_REQUIRE(!seen[l], invalid_argument, "train::keep_layers: layer ", l, " listed twice");
        seen[l] = true;
        out.layers.push_back(ck.layers[l].clone());
    }
    out.config.num_layers = layers.size();
    return out;
}

/// One distillation example: a text's token ids ([CLS] ... [SEP]) and the teacher's embedding.
struct distil_example {
    std::vector<std::int32_t> ids;
    std::vector<float> target;
};

struct distil_options {
    index_t batch = 32;          ///< texts per step
    double lr = 3e-4;            ///< peak learning rate (SciFact: 3e-4 beat 1e-4; bench/README "Training")
    double weight_decay = 0.01;
    double warmup_ratio = 0.1;   ///< share of all steps spent warming up
    double max_grad_norm = 1.0;  ///< 0: no clipping
    bool normalize = true;       ///< compare L2-normalised embeddings (the targets must be too)
    index_t epochs = 1;          ///< for the schedule's length
    std::uint64_t seed = 42;
    int threads = 0;             ///< 0: kite::max_threads()
    std::size_t activation_budget = std::size_t{4} << 30;  ///< see embedding_stepper
};

/// The distillation loss of a batch: mean over rows and columns of (u - target)^2 with u the
/// (normalised) student embeddings, and d(loss)/d(raw embeddings) into d_emb; also the mean cosine
/// of u to the targets.
template <class T>
batch_loss mse_embedding_loss(matrix_view<const T> emb, std::span<const std::vector<float>* const> targets, bool normalize,
                              matrix_view<T> d_emb) {
    const index_t n = emb.rows(), d = emb.cols();
    KITE_REQUIRE(targets.size() == n, shape_error, "train::mse_embedding_loss: ", targets.size(), " targets for ", n,
                 " embeddings");
    require_shape(d_emb, n, d, "train::mse_embedding_loss: d_emb");
    batch_loss out;
    const T inv = T(2) / static_cast<T>(n * d);
    std::vector<T> u(d), du(d), row(d);
    double loss = 0, cos = 0;
    for (index_t i = 0; i < n; ++i) {
        const auto& t = *targets[i];
        KITE_REQUIRE(t.size() == d, shape_error, "train::mse_embedding_loss: target ", i, " has ", t.size(),
                     " entries; expected ", d);
        std::copy(&emb(i, 0), &emb(i, 0) + d, row.begin());
        u = normalize ? l2_normalize<T>(row) : row;
        double dot = 0, tt = 0, uu = 0;
        for (index_t j = 0; j < d; ++j) {
            const T e = u[j] - static_cast<T>(t[j]);
            loss += static_cast<double>(e) * static_cast<double>(e);
            du[j] = inv * e;
            dot += static_cast<double>(u[j]) * t[j];
            tt += static_cast<double>(t[j]) * t[j];
            uu += static_cast<double>(u[j]) * u[j];
        }
        cos += tt > 0 && uu > 0 ? dot / std::sqrt(tt * uu) : 0.0;
        std::span<T> out_row(&d_emb(i, 0), d);
        if (normalize)
            l2_normalize_backward<T>(row, u, du, out_row);
        else
            std::copy(du.begin(), du.end(), out_row.begin());
    }
    out.loss = loss / static_cast<double>(n * d);
    out.cosine = cos / static_cast<double>(n);
    return out;
}

/// Trains `student` to reproduce the targets of distil_examples (see the file comment).
template <class T>
class distil_trainer : public example_trainer<T, distil_example> {
    using base = example_trainer<T, distil_example>;

public:
    distil_trainer(bert_model<T>& student, distil_options o)
        : base("train::distil_trainer", student,
               {.lr = o.lr, .weight_decay = o.weight_decay, .max_grad_norm = o.max_grad_norm, .threads = o.threads,
                .activation_budget = o.activation_budget},
               {.batch = o.batch, .min_batch = 1, .epochs = o.epochs, .warmup_ratio = o.warmup_ratio, .seed = o.seed}),
          normalize_(o.normalize) {}

    /// One pass over `data` in a seeded random order; returns the mean loss of its steps.
    double epoch(std::span<const distil_example> data, const std::function<void(const step_report&)>& report = {}) {
        return this->run_epoch("train::distil_trainer::epoch", data,
                               [&](std::span<const distil_example* const> batch, double factor) { return step(batch, factor); },
                               report);
    }

    /// One optimisation step on `batch` with learning rate lr * lr_factor.
    step_report step(std::span<const distil_example* const> batch, double lr_factor) {
        KITE_REQUIRE(!batch.empty(), invalid_argument, "train::distil_trainer::step: no examples");
        std::vector<const std::vector<std::int32_t>*> seqs;
        std::vector<const std::vector<float>*> targets;
        for (const auto* e : batch) {
            seqs.push_back(&e->ids);
            targets.push_back(&e->target);
        }
        step_report rep = this->stepper_.step(seqs, [&](matrix_view<const T> emb, matrix_view<T> d_emb) {
            return mse_embedding_loss<T>(emb, targets, normalize_, d_emb);
        }, lr_factor);
        rep.pairs = batch.size();
        return rep;
    }

private:
    bool normalize_;
};

}  // namespace kite::train
