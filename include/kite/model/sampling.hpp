#pragma once
/// @file kite/model/sampling.hpp
/// Choosing the next token from a row of logits: greedy, temperature, top-k, top-p (nucleus)
/// and their combinations, driven by a small seeded generator so a seed gives the same tokens
/// on every platform and compiler.
///
///   kite::model::sampler s({.temperature = 0.8f, .top_k = 40, .top_p = 0.95f}, /*seed=*/42);
///   index_t next = s.sample(logits);              // logits: [vocab]
///
/// Semantics follow Hugging Face's generate() warpers, in its order: divide by the temperature,
/// keep the tokens whose logit is >= the k-th largest (ties at the threshold are kept), then keep
/// the smallest set of most probable tokens whose probability reaches top_p (at least one), and
/// draw from the renormalised rest. Temperature 0 (or top_k 1) is greedy: the first index of the
/// largest logit. Without filtering, the draw walks the tokens in index order exactly as
/// llama2.c's sample_mult; with top-p it walks them by decreasing probability (ties by index).
///
/// Logits may hold -inf (a banned token) but not NaN or +inf: those raise invalid_argument.

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstdint>
#include <functional>
#include <limits>
#include <span>
#include <utility>
#include <vector>

#include "kite/core/config.hpp"
#include "kite/core/error.hpp"
#include "kite/core/simd.hpp"

namespace kite::model {

/// The xorshift* generator of llama2.c (Marsaglia's xorshift64 followed by a 64-bit multiply,
/// upper 32 bits out): tiny, fast, and fully specified by the operations below, so a seed
/// produces the same stream everywhere. Not for cryptography.
class xorshift_rng {
public:
    /// Seed 0 would stay 0 forever; it is replaced by a fixed odd constant.
    explicit constexpr xorshift_rng(std::uint64_t seed) noexcept
        : state_(seed != 0 ? seed : 0x9E3779B97F4A7C15ull) {}
    /// The next 32 random bits (llama2.c random_u32).
    constexpr std::uint32_t next_u32() noexcept {
        state_ ^= state_ >> 12;
        state_ ^= state_ << 25;
        state_ ^= state_ >> 27;
        return static_cast<std::uint32_t>((state_ * 0x2545F4914F6CDD1Dull) >> 32);
    }
    /// A float in [0, 1) with 24 random bits (llama2.c random_f32).
    constexpr float next_float() noexcept {
        return static_cast<float>(next_u32() >> 8) / 16777216.0f;
    }
    constexpr std::uint64_t state() const noexcept { return state_; }

private:
    std::uint64_t state_;
};

/// What a sampler does with the logits.
struct sampling_params {
    float temperature = 1.0f;  ///< 0: greedy; else logits are divided by it (> 0)
    index_t top_k = 0;         ///< keep the k largest logits (0: all)
    float top_p = 1.0f;        ///< nucleus mass in (0, 1] (1: all)
};

namespace detail {

/// Checks a row of logits once: non-empty, no NaN or +inf, at least one finite value.
inline void require_logits(std::span<const float> logits, const char* who) {
    KITE_REQUIRE(!logits.empty(), invalid_argument, who, ": logits are empty; expected one per vocabulary entry");
    // One branch-free pass (the compiler vectorises it); the loop below, which names the first
    // bad entry, runs only when this pass found one.
    std::uint32_t bad = 0, finite = 0;
    for (std::size_t i = 0; i < logits.size(); ++i) {
        const std::uint32_t u = std::bit_cast<std::uint32_t>(logits[i]);
        const std::uint32_t non_finite = (u & 0x7f800000u) == 0x7f800000u;
        bad |= non_finite & static_cast<std::uint32_t>(u != 0xff800000u);
        finite |= non_finite ^ 1u;
    }
    if (bad == 0 && finite != 0) return;
    bool any_finite = false;
    for (std::size_t i = 0; i < logits.size(); ++i) {
        const std::uint32_t u = std::bit_cast<std::uint32_t>(logits[i]);
        const bool non_finite = (u & 0x7f800000u) == 0x7f800000u;
        const bool neg_inf = u == 0xff800000u;
        KITE_REQUIRE(!non_finite || neg_inf, invalid_argument, who, ": logits[", i, "] = ", logits[i],
                     "; expected a finite value or -inf");
        any_finite |= !non_finite;
    }
    KITE_REQUIRE(any_finite, invalid_argument, who, ": every logit is -inf; expected at least one finite value");
}

/// First index of the largest value (unchecked; -inf entries are never chosen over finite ones).
inline index_t argmax_unchecked(std::span<const float> v) noexcept {
    // The largest value (vectorised), then the first index holding it.
    const float m = simd::max(v.data(), v.size());
    index_t i = 0;
#if KITE_SIMD_ENABLED
    constexpr index_t W = simd::width;
    const simd::fbatch vm(m);
    while (i + W <= v.size() && !xsimd::any(simd::fbatch::load_unaligned(v.data() + i) == vm)) i += W;
#endif
    for (; i < v.size(); ++i)
        if (v[i] == m) return i;
    return 0;  // every entry NaN (callers check first)
}

}  // namespace detail

/// Greedy choice: the first index of the largest logit. invalid_argument on NaN / +inf.
inline index_t argmax(std::span<const float> logits) {
    detail::require_logits(logits, "argmax");
    return detail::argmax_unchecked(logits);
}

/// A sampling policy with its own generator and scratch buffers (no allocation per token once
/// warm). Not thread-safe: use one sampler per sequence.
class sampler {
public:
    /// Validates `p` (temperature >= 0, top_p in (0, 1]) and seeds the generator.
    explicit sampler(const sampling_params& p = {}, std::uint64_t seed = 0) : p_(p), rng_(seed) {
        KITE_REQUIRE(std::isfinite(p.temperature) && p.temperature >= 0.0f, invalid_argument,
                     "sampler: temperature = ", p.temperature, "; expected a finite value >= 0");
        KITE_REQUIRE(p.top_p > 0.0f && p.top_p <= 1.0f, invalid_argument, "sampler: top_p = ", p.top_p,
                     "; expected a value in (0, 1]");
    }

    const sampling_params& params() const noexcept { return p_; }
    xorshift_rng& rng() noexcept { return rng_; }
    /// True when sample() always returns the argmax (temperature 0 or top_k 1).
    bool greedy() const noexcept { return p_.temperature == 0.0f || p_.top_k == 1; }

    /// Draws the next token from `logits` ([vocab]).
    index_t sample(std::span<const float> logits) {
        detail::require_logits(logits, "sampler::sample");
        if (greedy()) return detail::argmax_unchecked(logits);
        const double total = filter(logits);
        const double coin = static_cast<double>(rng_.next_float()) * total;
        double cdf = 0.0;
        for (std::size_t j = 0; j < kept_; ++j) {
            cdf += weight_[j];
            if (coin < cdf) return order_[j];
        }
        return order_[kept_ - 1];  // rounding left the coin at the very top
    }

    /// The probabilities sample() draws from, written to `probs` ([vocab]; zero for filtered
    /// tokens; one-hot when greedy). For tests and for callers that mix distributions.
    void distribution(std::span<const float> logits, std::span<float> probs) {
        detail::require_logits(logits, "sampler::distribution");
        KITE_REQUIRE(probs.size() == logits.size(), shape_error, "sampler::distribution: probs has ",
                     probs.size(), " entries; expected ", logits.size());
        std::fill(probs.begin(), probs.end(), 0.0f);
        if (greedy()) {
            probs[detail::argmax_unchecked(logits)] = 1.0f;
            return;
        }
        const double total = filter(logits);
        for (std::size_t j = 0; j < kept_; ++j) probs[order_[j]] = static_cast<float>(weight_[j] / total);
    }

private:
    // Leaves the kept tokens in order_[0, kept_) with unnormalised weights exp((l - max) / T)
    // in weight_[0, kept_); returns their sum.
    double filter(std::span<const float> logits) {
        const std::size_t n = logits.size();
        order_.resize(n);
        weight_.resize(n);
        const float mx = logits[detail::argmax_unchecked(logits)];
        float threshold = -std::numeric_limits<float>::infinity();
        if (p_.top_k > 0 && p_.top_k < n) {
            // The k-th largest logit; every token at or above it stays (ties included, as HF).
            scratch_.assign(logits.begin(), logits.end());
            std::nth_element(scratch_.begin(), scratch_.begin() + static_cast<std::ptrdiff_t>(p_.top_k - 1),
                             scratch_.end(), std::greater<float>());
            threshold = scratch_[p_.top_k - 1];
        }
        const double inv_t = 1.0 / static_cast<double>(p_.temperature);
        std::size_t m = 0;
        double total = 0.0;
        for (std::size_t i = 0; i < n; ++i) {
            const float l = logits[i];
            if (l < threshold || l == -std::numeric_limits<float>::infinity()) continue;
            const double w = std::exp((static_cast<double>(l) - mx) * inv_t);
            order_[m] = static_cast<std::uint32_t>(i);
            weight_[m] = w;
            total += w;
            ++m;
        }
        kept_ = m;
        if (p_.top_p >= 1.0f || m <= 1) return total;

        // Tokens lighter than (1 - p) / (m - 1) of the mass can never enter the nucleus: all of
        // them together weigh less than 1 - p. Dropping them first keeps the sort short.
        const double target = static_cast<double>(p_.top_p) * total;
        const double cutoff = (1.0 - static_cast<double>(p_.top_p)) / static_cast<double>(m - 1) * total;
        std::size_t c = 0;
        for (std::size_t j = 0; j < m; ++j) {
            if (weight_[j] >= cutoff) {
                order_[c] = order_[j];
                weight_[c] = weight_[j];
                ++c;
            }
        }
        pairs_.resize(c);
        for (std::size_t j = 0; j < c; ++j) pairs_[j] = {weight_[j], order_[j]};
        std::sort(pairs_.begin(), pairs_.end(), [](const auto& a, const auto& b) {
            return a.first != b.first ? a.first > b.first : a.second < b.second;
        });
        double cum = 0.0;
        std::size_t keep = 0;
        while (keep < c) {
            cum += pairs_[keep].first;
            order_[keep] = pairs_[keep].second;
            weight_[keep] = pairs_[keep].first;
            ++keep;
            if (cum >= target) break;
        }
        kept_ = keep;
        return cum;
    }

    sampling_params p_;
    xorshift_rng rng_;
    std::vector<std::uint32_t> order_;                    // [kept] token ids
    std::vector<double> weight_;                          // [kept] unnormalised probabilities
    std::vector<float> scratch_;                          // [vocab] for the top-k threshold
    std::vector<std::pair<double, std::uint32_t>> pairs_; // [nucleus candidates]
    std::size_t kept_ = 0;
};

}  // namespace kite::model
