#pragma once
/// @file kite/train/mnr.hpp
/// Fine-tuning a bi-encoder with the multiple-negatives-ranking loss, as sentence-transformers'
/// fit() with MultipleNegativesRankingLoss does (AdamW, linear warm-up then decay, gradient norm
/// clipped at 1, scale 20), on (anchor, positive) pairs of token ids:
///
///   train::bert_model<float> m(model::read_bert(dir));
///   train::mnr_trainer<float> trainer(m, {.batch = 32, .lr = 2e-5});
///   for (std::size_t e = 0; e < epochs; ++e)
///       trainer.epoch(pairs, [](const train::step_report& s) { ... progress ... });
///
/// The step itself (tapes kept within `activation_budget` or recomputed, threads, determinism)
/// is train::embedding_stepper's (kite/train/step.hpp); batches are shuffled with `seed`.

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <functional>
#include <numeric>
#include <random>
#include <span>
#include <vector>

#include "kite/core/buffer.hpp"
#include "kite/core/config.hpp"
#include "kite/core/error.hpp"
#include "kite/core/matrix.hpp"
#include "kite/core/parallel.hpp"
#include "kite/train/bert.hpp"
#include "kite/train/loss.hpp"
#include "kite/train/optim.hpp"
#include "kite/train/step.hpp"

namespace kite::train {

/// One training example: token ids of the anchor (a query) and of its positive (a passage),
/// each with [CLS] and [SEP], and optionally a hard negative (a passage that looks relevant but
/// is not, e.g. mined with BM25; empty: none). A batch's hard negatives join the candidates
/// every anchor is scored against, after the positives.
struct text_pair {
    std::vector<std::int32_t> anchor, positive, negative;
};

struct mnr_options {
    index_t batch = 32;          ///< pairs per step (the in-batch negatives are the other B - 1)
    double lr = 2e-5;            ///< peak learning rate
    double weight_decay = 0.01;
    double warmup_ratio = 0.1;   ///< share of all steps spent warming up
    double max_grad_norm = 1.0;  ///< 0: no clipping
    float scale = 20.0f;
    index_t epochs = 1;          ///< for the schedule's length
    std::uint64_t seed = 42;
    int threads = 0;             ///< 0: kite::max_threads()
    /// Bytes of activations a step may keep for its backward pass; a batch that needs more is
    /// recomputed sequence by sequence (gradient caching). 0: always recompute.
    std::size_t activation_budget = std::size_t{4} << 30;
};

template <class T>
class mnr_trainer : public example_trainer<T, text_pair> {
    using base = example_trainer<T, text_pair>;

public:
    mnr_trainer(bert_model<T>& model, mnr_options o)
        : base("train::mnr_trainer", model,
               {.lr = o.lr, .weight_decay = o.weight_decay, .max_grad_norm = o.max_grad_norm, .threads = o.threads,
                .activation_budget = o.activation_budget},
               {.batch = o.batch, .min_batch = 2, .epochs = o.epochs, .warmup_ratio = o.warmup_ratio, .seed = o.seed}),
          scale_(o.scale) {}

    /// One pass over `pairs` in a seeded random order; returns the mean loss of its steps.
    double epoch(std::span<const text_pair> pairs, const std::function<void(const step_report&)>& report = {}) {
        return this->run_epoch("train::mnr_trainer::epoch", pairs,
                               [&](std::span<const text_pair* const> batch, double factor) { return step(batch, factor); },
                               report);
    }

    /// One optimisation step on `batch` with learning rate lr * lr_factor.
    step_report step(std::span<const text_pair* const> batch, double lr_factor) {
        const index_t B = batch.size();
        KITE_REQUIRE(B >= 2, invalid_argument, "train::mnr_trainer::step: ", B, " pairs; expected at least 2");
        // Anchors in rows 0..B-1, positives in B..2B-1, then the hard negatives there are.
        std::vector<const std::vector<std::int32_t>*> seqs(2 * B);
        for (index_t i = 0; i < B; ++i) {
            seqs[i] = &batch[i]->anchor;
            seqs[B + i] = &batch[i]->positive;
        }
        for (index_t i = 0; i < B; ++i)
            if (!batch[i]->negative.empty()) seqs.push_back(&batch[i]->negative);
        const index_t C = seqs.size() - B;
        step_report rep = this->stepper_.step(seqs, [&](matrix_view<const T> emb, matrix_view<T> d_emb) {
            const auto r = mnr_loss<T>(emb.rows_slice(0, B), emb.rows_slice(B, C), static_cast<T>(scale_));
            for (index_t j = 0; j < emb.cols(); ++j) {
                for (index_t i = 0; i < B; ++i) d_emb(i, j) = r.d_anchors(i, j);
                for (index_t i = 0; i < C; ++i) d_emb(B + i, j) = r.d_candidates(i, j);
            }
            return batch_loss{static_cast<double>(r.loss), r.correct, 0.0};
        }, lr_factor);
        rep.pairs = B;
        return rep;
    }

private:
    float scale_;
};

}  // namespace kite::train
