#pragma once
/// @file kite/train/optim.hpp
/// AdamW (decoupled weight decay, bias correction; torch.optim.AdamW's update), the linear
/// warm-up then linear decay schedule (transformers' get_linear_schedule_with_warmup), and
/// gradient clipping by global norm (torch.nn.utils.clip_grad_norm_).
///
///   train::adamw opt({.lr = 2e-5, .weight_decay = 0.01});
///   train::linear_schedule sched{.warmup_steps = 100, .total_steps = 1000};
///   auto state = train::adamw::state_for(params.size()); // one per parameter tensor
///   train::clip_grad_norm(std::span<const std::span<float>>(grads), 1.0);
///   opt.step(params, grads, state, sched.factor(step));  // lr times the schedule's factor
///
/// Everything is serial and in a fixed order: the same seed and inputs give the same weights.

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <span>
#include <vector>

#include "kite/core/config.hpp"
#include "kite/core/error.hpp"

namespace kite::train {

struct adamw_options {
    double lr = 2e-5;  ///< sentence-transformers' fit() default
    double beta1 = 0.9, beta2 = 0.999;
    double eps = 1e-8;
    double weight_decay = 0.01;
};

/// The first and second moments of one parameter tensor, and its step count.
struct adamw_state {
    std::vector<double> m, v;
    std::uint64_t t = 0;
};

class adamw {
public:
    explicit adamw(adamw_options o = {}) : o_(o) {
        KITE_REQUIRE(o.lr >= 0 && std::isfinite(o.lr), invalid_argument, "train::adamw: lr = ", o.lr,
                     "; expected a finite value >= 0");
        KITE_REQUIRE(o.beta1 >= 0 && o.beta1 < 1 && o.beta2 >= 0 && o.beta2 < 1, invalid_argument,
                     "train::adamw: betas = (", o.beta1, ", ", o.beta2, "); expected each in [0, 1)");
        KITE_REQUIRE(o.eps > 0, invalid_argument, "train::adamw: eps = ", o.eps, "; expected > 0");
        KITE_REQUIRE(o.weight_decay >= 0, invalid_argument, "train::adamw: weight_decay = ", o.weight_decay,
                     "; expected >= 0");
    }
    const adamw_options& options() const noexcept { return o_; }

    /// A fresh state for a tensor of n parameters.
    static adamw_state state_for(std::size_t n) { return {std::vector<double>(n, 0.0), std::vector<double>(n, 0.0), 0}; }

    /// One update of p from its gradient g, with learning rate lr * lr_factor:
    ///   p <- p (1 - lr wd);  m <- b1 m + (1 - b1) g;  v <- b2 v + (1 - b2) g^2;
    ///   p <- p - lr (m / (1 - b1^t)) / (sqrt(v / (1 - b2^t)) + eps).
    /// Moments are kept in double whatever T is. A non-finite gradient is a kite::invalid_argument
    /// naming the element (nothing is updated).
    template <class T>
    void step(std::span<T> p, std::span<const T> g, adamw_state& s, double lr_factor = 1.0) const {
        KITE_REQUIRE(g.size() == p.size() && s.m.size() == p.size() && s.v.size() == p.size(), shape_error,
                     "train::adamw::step: ", p.size(), " parameters, ", g.size(), " gradients, state for ", s.m.size(),
                     "; expected equal");
        for (std::size_t i = 0; i < g.size(); ++i)
            KITE_REQUIRE(std::isfinite(static_cast<double>(g[i])), invalid_argument, "train::adamw::step: gradient[", i,
                         "] = ", g[i], "; expected a finite value (lower the learning rate or clip)");
        ++s.t;
        const double lr = o_.lr * lr_factor;
        const double c1 = 1.0 - std::pow(o_.beta1, static_cast<double>(s.t));
        const double c2 = 1.0 - std::pow(o_.beta2, static_cast<double>(s.t));
        for (std::size_t i = 0; i < p.size(); ++i) {
            const double gi = static_cast<double>(g[i]);
            s.m[i] = o_.beta1 * s.m[i] + (1.0 - o_.beta1) * gi;
            s.v[i] = o_.beta2 * s.v[i] + (1.0 - o_.beta2) * gi * gi;
            double pi = static_cast<double>(p[i]) * (1.0 - lr * o_.weight_decay);
            pi -= lr * (s.m[i] / c1) / (std::sqrt(s.v[i] / c2) + o_.eps);
            p[i] = static_cast<T>(pi);
        }
    }

private:
    adamw_options o_;
};

/// Learning-rate factor: step / warmup during the warm-up, then linear decay to 0 at
/// total_steps (transformers' get_linear_schedule_with_warmup; step counts from 0).
struct linear_schedule {
    std::uint64_t warmup_steps = 0;
    std::uint64_t total_steps = 1;

    double factor(std::uint64_t step) const {
        KITE_REQUIRE(total_steps > 0 && warmup_steps <= total_steps, invalid_argument,
                     "train::linear_schedule: warmup_steps = ", warmup_steps, ", total_steps = ", total_steps,
                     "; expected 0 < total_steps and warmup_steps <= total_steps");
        if (step < warmup_steps) return static_cast<double>(step) / static_cast<double>(warmup_steps);
        if (step >= total_steps) return 0.0;
        return static_cast<double>(total_steps - step) / static_cast<double>(std::max<std::uint64_t>(1, total_steps - warmup_steps));
    }
};

/// Scales every gradient by max_norm / (norm + 1e-6) when the global L2 norm over all of them
/// exceeds max_norm; returns the norm before clipping (torch.nn.utils.clip_grad_norm_).
template <class T>
double clip_grad_norm(std::span<const std::span<T>> grads, double max_norm) {
    KITE_REQUIRE(max_norm > 0, invalid_argument, "train::clip_grad_norm: max_norm = ", max_norm, "; expected > 0");
    double ss = 0;
    for (const auto& g : grads)
        for (const T x : g) ss += static_cast<double>(x) * static_cast<double>(x);
    const double norm = std::sqrt(ss);
    const double coef = max_norm / (norm + 1e-6);
    if (coef < 1.0)
        for (const auto& g : grads)
            for (T& x : g) x = static_cast<T>(static_cast<double>(x) * coef);
    return norm;
}

}  // namespace kite::train
