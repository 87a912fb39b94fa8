#pragma once
/// @file kite/serve/request.hpp
/// What a client asks the serving engine for, and what it gets back.
///
///   kite::serve::request r;
///   r.prompt = tokenizer.apply_chat_template(chat, true);   // or any token ids, or
///   r.messages = chat;                                      //   (engine_options::chat_template)
///   r.sampling = {.temperature = 0.7f, .top_p = 0.9f};
///   r.max_tokens = 128;  r.n = 2;  r.seed = 42;  r.stop = {"\n\n"};
///   kite::serve::result out = engine.generate({r})[0];
///   out.outputs[0].tokens;  out.outputs[0].finish;  out.timings.ttft_s;
///
/// Timings (seconds, steady clock): queue = submission until the engine first schedules the
/// request; ttft = submission until its first output token; tpot = (end to end - ttft) / (output
/// tokens - 1) of its longest sample; e2e = submission until its last sample finished.

#include <cstdint>
#include <limits>
#include <string>
#include <vector>

#include "kite/core/config.hpp"
#include "kite/model/sampling.hpp"
#include "kite/text/chat_template.hpp"

namespace kite::serve {

/// Why a sample stopped.
enum class finish_reason : std::uint8_t {
    stop,       ///< a stop token (end of generation) or a stop string
    length,     ///< max_tokens reached
    context,    ///< the model's context (max_positions) is full
    cancelled,  ///< the client cancelled the request
    error       ///< the request could not run (result::error says why)
};

inline const char* to_string(finish_reason r) noexcept {
    switch (r) {
        case finish_reason::stop: return "stop";
        case finish_reason::length: return "length";
        case finish_reason::context: return "context";
        case finish_reason::cancelled: return "cancelled";
        case finish_reason::error: return "error";
    }
    return "?";
}

/// A generation request (token level; chat messages go through the model's template first).
struct request {
    std::vector<std::int32_t> prompt{};        ///< token ids, at least one (or messages)
    /// A chat instead of token ids (prompt empty): rendered by engine_options::chat_template.
    std::vector<text::chat_message> messages{};
    model::sampling_params sampling{};         ///< temperature 0: greedy
    index_t max_tokens = 128;                  ///< new tokens per sample, >= 1
    std::vector<std::int32_t> stop_tokens{};   ///< added to the engine's end-of-generation ids
    std::vector<std::string> stop{};           ///< stop strings (need engine_options::detokenize)
    bool ignore_eos = false;                   ///< do not stop at the engine's end-of-generation ids
    index_t n = 1;                             ///< parallel samples sharing the prompt's KV blocks
    std::uint64_t seed = 0;                    ///< sample i draws with seed + i
    bool speculate = true;                     ///< let the engine's drafter propose tokens
    bool record_logits = false;                ///< keep a 64-bit digest of every step's logits (tests)
};

/// One sample's output.
struct sample_output {
    std::vector<std::int32_t> tokens;          ///< generated ids (a stop token is not included)
    std::string text;                          ///< detokenized tokens, cut before a stop string
    finish_reason finish = finish_reason::length;
    std::vector<std::uint64_t> logit_digests;  ///< [tokens] with request::record_logits
};

/// Per-request timings, in seconds (see the file comment).
struct request_timings {
    double queue_s = 0, ttft_s = 0, tpot_s = 0, e2e_s = 0;
};

/// The finished request.
struct result {
    std::vector<sample_output> outputs;        ///< [n]
    request_timings timings;
    index_t prompt_tokens = 0;
    index_t cached_prompt_tokens = 0;          ///< served from the prefix cache at first admission
    index_t preemptions = 0;                   ///< times one of its samples was preempted
    index_t drafted_tokens = 0, accepted_tokens = 0;
    std::string error;                         ///< why, when finish == error
};

/// A token as it is streamed to an online client.
struct token_event {
    index_t sample = 0;                        ///< which of the n samples
    std::int32_t token = 0;
};

/// Engine counters (a metrics endpoint reads them; see engine::stats()).
struct engine_stats {
    index_t queue_depth = 0, running = 0;
    index_t kv_blocks_total = 0, kv_blocks_used = 0, kv_blocks_free = 0, kv_blocks_cached = 0, peak_kv_blocks = 0;
    std::uint64_t prefix_lookup_tokens = 0, prefix_hit_tokens = 0;
    std::uint64_t prompt_tokens_computed = 0, generated_tokens = 0;
    std::uint64_t steps = 0, preemptions = 0, rejected = 0, cancelled = 0, finished = 0;
    std::uint64_t drafted_tokens = 0, accepted_tokens = 0;
    double busy_seconds = 0;                   ///< time spent in steps that had work
    double longest_step_seconds = 0;           ///< the slowest step (a stall shows here)
    /// Steps in which every sequence decoded (no prompt token): their time and output tokens.
    double decode_seconds = 0;
    std::uint64_t decode_tokens = 0;
    /// At the step with the most KV blocks in use by sequences (peak_kv_blocks): the tokens
    /// those blocks hold, and what a contiguous cache would have reserved for the same
    /// sequences (prompt + max_tokens each, capped by the context).
    index_t peak_kv_tokens = 0, peak_contiguous_tokens = 0;

    double prefix_hit_rate() const noexcept {
        return prefix_lookup_tokens ? static_cast<double>(prefix_hit_tokens) / static_cast<double>(prefix_lookup_tokens) : 0.0;
    }
    double acceptance_rate() const noexcept {
        return drafted_tokens ? static_cast<double>(accepted_tokens) / static_cast<double>(drafted_tokens) : 0.0;
    }
    double tokens_per_second() const noexcept {
        return busy_seconds > 0 ? static_cast<double>(generated_tokens) / busy_seconds : 0.0;
    }
    double decode_tokens_per_second() const noexcept {
        return decode_seconds > 0 ? static_cast<double>(decode_tokens) / decode_seconds : 0.0;
    }
};

}  // namespace kite::serve
