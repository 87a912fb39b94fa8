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
/// Memory: the activations a backward pass needs (bert_model::tape_bytes per sequence) are kept
/// for the whole batch when they fit in `activation_budget` (4 GiB by default: a batch of 32
/// query/passage pairs of MiniLM at 256 word pieces needs about 2 GiB). Beyond it the step
/// switches to gradient caching (as sentence-transformers' CachedMultipleNegativesRankingLoss):
/// every sequence is first embedded without keeping activations, the loss gives
/// d(loss)/d(embedding) for each, and each sequence is run again with its tape and
/// back-propagated, so memory stays at one tape per thread whatever the batch, for one extra
/// forward pass per sequence. Both give the same gradients bit for bit (those of plain MNR; no
/// dropout here).
///
/// Determinism: the batches are shuffled with `seed`, each of the `threads` gradient buffers takes
/// a fixed set of the batch's sequences (longest first to the least loaded) and they are summed in
/// buffer order, and every buffer is 64-byte aligned, so one build
/// run with a seed and a thread count gives the same weights every time. (Another build, or the
/// same math inlined elsewhere, may round differently: compilers fuse multiply-adds freely.)

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

namespace kite::train {

/// One training example: token ids of the anchor (a query) and of its positive (a passage),
/// each with [CLS] and [SEP].
struct text_pair {
    std::vector<std::int32_t> anchor, positive;
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

/// What the callback of epoch() gets after each step.
struct step_report {
    std::uint64_t step = 0, total_steps = 0;
    double loss = 0, grad_norm = 0, lr = 0;
    index_t pairs = 0, correct = 0;  ///< pairs in the step, anchors whose positive scored highest
    double seconds = 0;              ///< wall time of the step
    bool kept_activations = false;   ///< false: the batch was over the budget and recomputed
};

template <class T>
class mnr_trainer {
public:
    mnr_trainer(bert_model<T>& model, mnr_options o) : m_(model), o_(o), opt_({.lr = o.lr, .weight_decay = o.weight_decay}) {
        KITE_REQUIRE(o.batch >= 2, invalid_argument, "train::mnr_trainer: batch = ", o.batch,
                     "; expected >= 2 (the other pairs of a batch are the negatives)");
        KITE_REQUIRE(o.epochs >= 1, invalid_argument, "train::mnr_trainer: epochs = 0; expected >= 1");
        KITE_REQUIRE(o.warmup_ratio >= 0 && o.warmup_ratio <= 1, invalid_argument, "train::mnr_trainer: warmup_ratio = ",
                     o.warmup_ratio, "; expected 0 to 1");
        state_ = adamw::state_for(m_.parameters().size());
    }

    /// Steps per epoch for `pairs` pairs (the last, smaller batch is kept when it has >= 2 pairs).
    std::uint64_t steps_per_epoch(std::size_t pairs) const {
        const std::uint64_t full = pairs / o_.batch, rest = pairs % o_.batch;
        return full + (rest >= 2 ? 1 : 0);
    }

    /// One pass over `pairs` in a seeded random order; returns the mean loss of its steps.
    double epoch(std::span<const text_pair> pairs, const std::function<void(const step_report&)>& report = {}) {
        KITE_REQUIRE(pairs.size() >= 2, invalid_argument, "train::mnr_trainer::epoch: ", pairs.size(),
                     " pairs; expected at least 2");
        const std::uint64_t per_epoch = steps_per_epoch(pairs.size());
        const linear_schedule sched{static_cast<std::uint64_t>(o_.warmup_ratio * double(per_epoch * o_.epochs)),
                                    per_epoch * o_.epochs};
        std::vector<std::size_t> order(pairs.size());
        std::iota(order.begin(), order.end(), std::size_t{0});
        std::mt19937_64 rng(o_.seed + epochs_done_);
        std::shuffle(order.begin(), order.end(), rng);
        double sum = 0;
        for (std::uint64_t s = 0; s < per_epoch; ++s) {
            const std::size_t first = s * o_.batch, count = std::min<std::size_t>(o_.batch, pairs.size() - first);
            std::vector<const text_pair*> batch;
            for (std::size_t i = 0; i < count; ++i) batch.push_back(&pairs[order[first + i]]);
            const double factor = sched.factor(step_);
            step_report r = step(batch, factor);
            r.step = ++step_;
            r.total_steps = sched.total_steps;
            sum += r.loss;
            if (report) report(r);
        }
        ++epochs_done_;
        return sum / static_cast<double>(per_epoch);
    }

    /// One optimisation step on `batch` with learning rate lr * lr_factor.
    step_report step(std::span<const text_pair* const> batch, double lr_factor) {
        const auto t0 = std::chrono::steady_clock::now();
        const index_t B = batch.size(), d = m_.config().hidden_size;
        KITE_REQUIRE(B >= 2, invalid_argument, "train::mnr_trainer::step: ", B, " pairs; expected at least 2");
        // 1. Embeddings (anchors in rows 0..B-1, positives in B..2B-1), with their tapes when
        //    the batch's activations fit in the budget.
        matrix<T> emb(2 * B, d);
        const auto seq = [&](index_t i) -> const std::vector<std::int32_t>& {
            return i < B ? batch[i]->anchor : batch[i - B]->positive;
        };
        std::size_t need = 0;
        for (index_t i = 0; i < 2 * B; ++i) need += m_.tape_bytes(seq(i).size());
        const bool keep = need <= o_.activation_budget;
        std::vector<typename bert_model<T>::tape> tapes(keep ? 2 * B : 0);
        parallel_for_dynamic(2 * B, 1, [&](std::size_t i) {  // queries are short, passages long
            typename bert_model<T>::tape scratch;
            const auto e = m_.embed(seq(i), keep ? tapes[i] : scratch);
            std::copy(e.begin(), e.end(), &emb(i, 0));
        }, o_.threads);
        // 2. The loss and its gradient per embedding.
        const auto r = mnr_loss<T>(emb.view().rows_slice(0, B), emb.view().rows_slice(B, B), static_cast<T>(o_.scale));
        // 3. Each sequence back-propagated into its thread's buffer (run again first with its tape
        //    when the tapes were not kept).
        const int threads = resolve_threads(o_.threads, 2 * B);
        if (grads_.size() != static_cast<std::size_t>(threads)) {
            grads_.clear();
            for (int t = 0; t < threads; ++t) grads_.push_back(m_.gradient_buffer());
        } else {
            parallel_for(0, grads_.size(), [&](std::size_t t) { std::fill(grads_[t].begin(), grads_[t].end(), T(0)); }, threads);
        }
        // Each gradient buffer ("slot") takes whole sequences, longest first to the least loaded
        // slot (ties: the lower one), and adds them up in batch order: balanced between the
        // threads, and the same sums in the same order for a batch and a thread count.
        std::vector<std::size_t> longest(2 * B);
        std::iota(longest.begin(), longest.end(), std::size_t{0});
        std::stable_sort(longest.begin(), longest.end(),
                         [&](std::size_t x, std::size_t y) { return seq(x).size() > seq(y).size(); });
        std::vector<std::vector<std::size_t>> slots(static_cast<std::size_t>(threads));
        std::vector<std::size_t> load(static_cast<std::size_t>(threads), 0);
        for (const std::size_t i : longest) {
            const std::size_t t = static_cast<std::size_t>(std::min_element(load.begin(), load.end()) - load.begin());
            slots[t].push_back(i);
            load[t] += seq(i).size();
        }
        parallel_for_dynamic(slots.size(), 1, [&](std::size_t t) {
            std::sort(slots[t].begin(), slots[t].end());
            for (const std::size_t i : slots[t]) {
                typename bert_model<T>::tape scratch;
                if (!keep) (void)m_.embed(seq(i), scratch);
                const T* de = i < B ? &r.d_anchors(i, 0) : &r.d_candidates(i - B, 0);
                m_.backward(keep ? tapes[i] : scratch, std::span<const T>(de, d), grads_[t].span());
                if (keep) tapes[i] = {};
            }
        }, threads);
        for (std::size_t t = 1; t < grads_.size(); ++t)
            for (std::size_t k = 0; k < grads_[0].size(); ++k) grads_[0][k] += grads_[t][k];
        // 4. Clip, step.
        std::span<T> g = grads_[0].span();
        double norm = 0;
        if (o_.max_grad_norm > 0) {
            const std::span<T> all[1] = {g};
            norm = clip_grad_norm<T>(std::span<const std::span<T>>(all), o_.max_grad_norm);
        }
        opt_.step<T>(m_.parameters(), g, state_, lr_factor);
        step_report rep;
        rep.loss = static_cast<double>(r.loss);
        rep.grad_norm = norm;
        rep.lr = o_.lr * lr_factor;
        rep.pairs = B;
        rep.correct = r.correct;
        rep.kept_activations = keep;
        rep.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
        return rep;
    }

    /// The gradient of the last step (after clipping), in parameters() order.
    std::span<const T> gradient() const noexcept {
        return grads_.empty() ? std::span<const T>() : std::span<const T>(grads_[0].span());
    }

private:
    bert_model<T>& m_;
    mnr_options o_;
    adamw opt_;
    adamw_state state_;
    std::vector<aligned_buffer<T>> grads_;
    std::uint64_t step_ = 0, epochs_done_ = 0;
};

}  // namespace kite::train
