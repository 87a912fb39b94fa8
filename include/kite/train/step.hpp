#pragma once
/// @file kite/train/step.hpp
/// One optimisation step of a sentence encoder on a batch of token sequences, for any loss of
/// their embeddings: what kite::train's trainers (mnr_trainer, distil_trainer) share.
///
///   train::embedding_stepper<float> s(model, {.lr = 2e-5, .threads = 2});
///   auto rep = s.step(seqs, [](matrix_view<const float> emb, matrix_view<float> d_emb) {
///       ... d(loss)/d(emb) into d_emb ...; return train::batch_loss{loss, correct};
///   }, lr_factor);
///
/// embed every sequence (mean-pooled states) -> the loss and d(loss)/d(embedding) -> backward
/// into per-thread gradient buffers -> their sum clipped by global norm -> AdamW.
///
/// A cross-encoder (a bert_model with a classifier head) steps on text pairs: pass where each
/// pair's second text starts, and the loss gets one logit per pair (a [pairs][1] matrix):
///
///   s.step(seqs, bce_loss, lr_factor, seconds);
///
/// Memory: the activations the backward pass needs (bert_model::tape_bytes per sequence) are
/// kept for the whole batch when they fit in `activation_budget` (4 GiB by default: a batch of
/// 32 query/passage pairs of MiniLM at 256 word pieces needs about 2 GiB). Beyond it the step
/// switches to gradient caching (as sentence-transformers' CachedMultipleNegativesRankingLoss):
/// every sequence is first embedded without keeping activations, the loss gives
/// d(loss)/d(embedding) for each, and each sequence is run again with its tape and
/// back-propagated, so memory stays at one tape per thread whatever the batch, for one extra
/// forward pass per sequence. Both give the same gradients bit for bit.
///
/// Determinism: each of the `threads` gradient buffers takes a fixed set of the batch's sequences
/// (longest first to the least loaded buffer) and they are summed in buffer order, and every
/// buffer is 64-byte aligned, so one build run with the same batches and thread count gives the
/// same weights every time. (Another build, or the same math inlined elsewhere, may round
/// differently: compilers fuse multiply-adds freely.)

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
#include "kite/train/optim.hpp"

namespace kite::train {

/// What a trainer's epoch() callback gets after each step.
struct step_report {
    std::uint64_t step = 0, total_steps = 0;
    double loss = 0, grad_norm = 0, lr = 0;
    index_t pairs = 0;    ///< examples in the step (pairs for MNR, texts for distillation)
    index_t correct = 0;  ///< MNR: anchors whose positive scored highest
    double cosine = 0;    ///< distillation: mean cosine of the student's embeddings to the teacher's
    double seconds = 0;   ///< wall time of the step
    bool kept_activations = false;  ///< false: the batch was over the budget and recomputed
};

/// A loss function's answer to embedding_stepper::step.
struct batch_loss {
    double loss = 0;
    index_t correct = 0;
    double cosine = 0;
};

struct stepper_options {
    double lr = 2e-5;            ///< peak learning rate
    double weight_decay = 0.01;
    double max_grad_norm = 1.0;  ///< 0: no clipping
    int threads = 0;             ///< 0: kite::max_threads()
    /// Bytes of activations a step may keep for its backward pass; a batch that needs more is
    /// recomputed sequence by sequence (gradient caching). 0: always recompute.
    std::size_t activation_budget = std::size_t{4} << 30;
};

template <class T>
class embedding_stepper {
public:
    embedding_stepper(bert_model<T>& model, stepper_options o)
        : m_(model), o_(o), opt_({.lr = o.lr, .weight_decay = o.weight_decay}) {
        state_ = adamw::state_for(m_.parameters().size());
    }

    /// One step on `seqs`; `loss(emb, d_emb)` gets their embeddings (row i for seqs[i]) and writes
    /// d(loss)/d(emb) into d_emb (zeroed), returning a batch_loss. The report's `pairs` is left
    /// for the caller.
    template <class Loss>
    step_report step(std::span<const std::vector<std::int32_t>* const> seqs, Loss&& loss, double lr_factor,
                     std::span<const index_t> second = {}) {
        const auto t0 = std::chrono::steady_clock::now();
        const bool pairs = !second.empty();
        KITE_REQUIRE(!pairs || (second.size() == seqs.size() && m_.has_head()), invalid_argument,
                     "embedding_stepper::step: ", second.size(), " pair boundaries for ", seqs.size(), " sequences",
                     m_.has_head() ? "" : " and a model without a classifier head",
                     "; expected one per sequence and a cross-encoder");
        const index_t n = seqs.size(), d = pairs ? 1 : m_.config().hidden_size;
        // 1. Embeddings, with their tapes when the batch's activations fit in the budget.
        matrix<T> emb(n, d);
        std::size_t need = 0;
        for (const auto* s : seqs) need += m_.tape_bytes(s->size());
        const bool keep = need <= o_.activation_budget;
        std::vector<typename bert_model<T>::tape> tapes(keep ? n : 0);
        parallel_for_dynamic(n, 1, [&](std::size_t i) {  // texts of very different lengths
            typename bert_model<T>::tape scratch;
            auto& t = keep ? tapes[i] : scratch;
            if (pairs) {
                emb(i, 0) = m_.logit(*seqs[i], t, second[i]);
            } else {
                const auto e = m_.embed(*seqs[i], t);
                std::copy(e.begin(), e.end(), &emb(i, 0));
            }
        }, o_.threads);
        // 2. The loss and its gradient per embedding.
        matrix<T> d_emb(n, d, T(0));
        const batch_loss l = loss(matrix_view<const T>(emb.view()), d_emb.view());
        // 3. Each sequence back-propagated into a gradient buffer ("slot"; run again first with
        //    its tape when the tapes were not kept). Slots take whole sequences, longest first to
        //    the least loaded (ties: the lower one), and add them up in batch order.
        const int threads = resolve_threads(o_.threads, n);
        if (grads_.size() != static_cast<std::size_t>(threads)) {
            grads_.clear();
            for (int t = 0; t < threads; ++t) grads_.push_back(m_.gradient_buffer());
        } else {
            parallel_for(0, grads_.size(), [&](std::size_t t) { std::fill(grads_[t].begin(), grads_[t].end(), T(0)); },
                         threads);
        }
        std::vector<std::size_t> longest(n);
        std::iota(longest.begin(), longest.end(), std::size_t{0});
        std::stable_sort(longest.begin(), longest.end(),
                         [&](std::size_t x, std::size_t y) { return seqs[x]->size() > seqs[y]->size(); });
        std::vector<std::vector<std::size_t>> slots(static_cast<std::size_t>(threads));
        std::vector<std::size_t> load(static_cast<std::size_t>(threads), 0);
        for (const std::size_t i : longest) {
            const auto t = static_cast<std::size_t>(std::min_element(load.begin(), load.end()) - load.begin());
            slots[t].push_back(i);
            load[t] += seqs[i]->size();
        }
        parallel_for_dynamic(slots.size(), 1, [&](std::size_t t) {
            std::sort(slots[t].begin(), slots[t].end());
            for (const std::size_t i : slots[t]) {
                typename bert_model<T>::tape scratch;
                if (!keep && pairs) (void)m_.logit(*seqs[i], scratch, second[i]);
                else if (!keep) (void)m_.embed(*seqs[i], scratch);
                m_.backward(keep ? tapes[i] : scratch, std::span<const T>(&d_emb(i, 0), d), grads_[t].span());
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
        rep.loss = l.loss;
        rep.correct = l.correct;
        rep.cosine = l.cosine;
        rep.grad_norm = norm;
        rep.lr = o_.lr * lr_factor;
        rep.kept_activations = keep;
        rep.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
        return rep;
    }

    /// The gradient of the last step (after clipping), in parameters() order.
    std::span<const T> gradient() const noexcept {
        return grads_.empty() ? std::span<const T>() : std::span<const T>(grads_[0].span());
    }
    bert_model<T>& model() noexcept { return m_; }

private:
    bert_model<T>& m_;
    stepper_options o_;
    adamw opt_;
    adamw_state state_;
    std::vector<aligned_buffer<T>> grads_;
};

/// How a trainer walks its examples: `batch` per step (the last, smaller batch is kept when it
/// has at least `min_batch`), `epochs` passes for the schedule's length (linear warm-up over
/// `warmup_ratio` of all steps, then linear decay), each pass in an order shuffled with
/// seed + the pass's number.
struct epoch_plan {
    index_t batch = 32, min_batch = 1, epochs = 1;
    double warmup_ratio = 0.1;
    std::uint64_t seed = 42;

    std::uint64_t steps_per_epoch(std::size_t n) const {
        const std::uint64_t full = n / batch, rest = n % batch;
        return full + (rest >= min_batch && rest > 0 ? 1 : 0);
    }
};

namespace detail {

/// One pass over `items` as `plan` says: step(batch of item pointers, lr factor) -> step_report
/// per batch, numbered by `steps_done`, reported; returns the mean loss of the steps.
template <class Item, class Step, class Report>
double shuffled_epoch(std::span<const Item> items, const epoch_plan& plan, std::uint64_t& steps_done,
                      std::uint64_t& epochs_done, Step&& step, const Report& report) {
    const std::uint64_t per_epoch = plan.steps_per_epoch(items.size());
    const linear_schedule sched{static_cast<std::uint64_t>(plan.warmup_ratio * double(per_epoch * plan.epochs)),
                                per_epoch * plan.epochs};
    std::vector<std::size_t> order(items.size());
    std::iota(order.begin(), order.end(), std::size_t{0});
    std::mt19937_64 rng(plan.seed + epochs_done);
    std::shuffle(order.begin(), order.end(), rng);
    double sum = 0;
    for (std::uint64_t s = 0; s < per_epoch; ++s) {
        const std::size_t first = s * plan.batch, count = std::min<std::size_t>(plan.batch, items.size() - first);
        std::vector<const Item*> batch;
        for (std::size_t i = 0; i < count; ++i) batch.push_back(&items[order[first + i]]);
        step_report r = step(std::span<const Item* const>(batch), sched.factor(steps_done));
        r.step = ++steps_done;
        r.total_steps = sched.total_steps;
        sum += r.loss;
        if (report) report(r);
    }
    ++epochs_done;
    return per_epoch > 0 ? sum / static_cast<double>(per_epoch) : 0.0;
}

}  // namespace detail

/// What mnr_trainer and distil_trainer share: options checked, an embedding_stepper, the step
/// and epoch counters, and epoch() over items of type Item in shuffled batches.
template <class T, class Item>
class example_trainer {
public:
    /// Steps per epoch for `n` examples.
    std::uint64_t steps_per_epoch(std::size_t n) const { return plan_.steps_per_epoch(n); }
    /// The gradient of the last step (after clipping), in parameters() order.
    std::span<const T> gradient() const noexcept { return stepper_.gradient(); }

protected:
    example_trainer(const char* who, bert_model<T>& model, stepper_options so, epoch_plan plan)
        : stepper_(model, so), plan_(plan) {
        KITE_REQUIRE(plan.batch >= plan.min_batch, invalid_argument, who, ": batch = ", plan.batch, "; expected >= ",
                     plan.min_batch, plan.min_batch > 1 ? " (the other pairs of a batch are the negatives)" : "");
        KITE_REQUIRE(plan.epochs >= 1, invalid_argument, who, ": epochs = 0; expected >= 1");
        KITE_REQUIRE(plan.warmup_ratio >= 0 && plan.warmup_ratio <= 1, invalid_argument, who,
                     ": warmup_ratio = ", plan.warmup_ratio, "; expected 0 to 1");
    }

    /// One pass over `items` (at least min_batch of them), step(batch, lr factor) per batch.
    template <class Step>
    double run_epoch(const char* who, std::span<const Item> items, Step&& step,
                     const std::function<void(const step_report&)>& report) {
        KITE_REQUIRE(items.size() >= std::max<index_t>(plan_.min_batch, 1), invalid_argument, who, ": ", items.size(),
                     " examples; expected at least ", std::max<index_t>(plan_.min_batch, 1));
        return detail::shuffled_epoch<Item>(items, plan_, steps_, epochs_, step, report);
    }

    embedding_stepper<T> stepper_;
    epoch_plan plan_;
    std::uint64_t steps_ = 0, epochs_ = 0;
};

}  // namespace kite::train
