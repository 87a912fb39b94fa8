#pragma once
/// @file kite/serve/scheduler.hpp
/// Scheduling policies of kite::serve::engine, chosen at compile time:
///
///   static_batching<B>    wait until B requests are queued (or no more will come), run them
///                         all to completion, then take the next B. Sequences that finish early
///                         leave their slot idle until the whole batch is done.
///   dynamic_batching<B>   as static, but a batch also starts when its oldest request has waited
///                         `window`, with however many (<= B) are queued by then.
///   continuous_batching   iteration-level: every step retires finished sequences and admits
///                         waiting ones (first come, first served) while a token budget, the
///                         running-sequence limit and the KV pool allow; decode tokens first,
///                         then prompt chunks (long prompts are prefilled in chunks of at most
///                         `chunk` tokens, so one long prompt cannot stall everyone's next
///                         token), with at most `max_partial_prefills` prompts in flight.
///
/// Every policy shares the engine's preemption: when the KV pool cannot hold a step, the
/// running sequence that loses least work (fewest computed tokens; the newest on ties) gives
/// its blocks back and returns to the front of the queue, keeping its place by arrival order;
/// it is recomputed later (bit-identically: see kite::attn::invariant).
///
///   kite::serve::engine<Model, kite::serve::continuous_batching> e(model, {}, {.token_budget = 256});

#include <chrono>
#include <limits>

#include "kite/core/config.hpp"
#include "kite/core/error.hpp"

namespace kite::serve {

/// Run-to-completion batches of up to B requests gathered within a time window.
template <index_t B>
struct dynamic_batching {
    static_assert(B >= 1, "dynamic_batching<B> / static_batching<B>: B must be >= 1");
    static constexpr const char* name = "dynamic";
    static constexpr bool iteration_level = false;
    static constexpr index_t batch = B;
    /// How long the oldest queued request may wait for the batch to fill.
    std::chrono::microseconds window{std::chrono::milliseconds(50)};

    /// Whether a new batch starts now: `waiting` queued, the oldest for `oldest_wait`;
    /// `draining`: no more requests will come (offline generate(), shutdown).
    bool start_batch(index_t waiting, std::chrono::steady_clock::duration oldest_wait, bool draining) const noexcept {
        return waiting >= B || (waiting > 0 && (draining || oldest_wait >= window));
    }
};

/// Run-to-completion batches of exactly B requests (fewer only when no more will come): a
/// dynamic batch with an endless window.
template <index_t B>
struct static_batching : dynamic_batching<B> {
    static constexpr const char* name = "static";
    static_batching() noexcept { this->window = std::chrono::microseconds::max(); }
};

/// Iteration-level scheduling (see the file comment).
struct continuous_batching {
    static constexpr const char* name = "continuous";
    static constexpr bool iteration_level = true;
    /// Tokens one step may compute (decode tokens, draft tokens and prompt chunks together).
    index_t token_budget = 512;
    /// Sequences running at once.
    index_t max_running = 64;
    /// Longest prompt chunk of one sequence in one step.
    index_t chunk = 256;
    /// Prompts being prefilled at once (later arrivals wait; keeps time to first token fair).
    index_t max_partial_prefills = 4;

    void validate() const {
        KITE_REQUIRE(token_budget >= 1 && max_running >= 1 && chunk >= 1 && max_partial_prefills >= 1, invalid_argument,
                     "continuous_batching: token_budget = ", token_budget, ", max_running = ", max_running,
                     ", chunk = ", chunk, ", max_partial_prefills = ", max_partial_prefills, "; expected all >= 1");
    }
};

namespace detail {
template <class S>
void validate_scheduler(const S& s) {
    if constexpr (requires { s.validate(); }) s.validate();
}
}  // namespace detail

}  // namespace kite::serve
