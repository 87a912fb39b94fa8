#pragma once
/// @file kite/model/generate.hpp
/// Text generation with any kite decoder: prefill the prompt into the decoder's KV cache
/// (contiguous or paged, the decoder's Cache policy), then decode one token at a time, choosing
/// each with a kite::model::sampler (greedy, temperature, top-k, top-p, seeded), until a stop
/// token, the length limit, the model's context or the callback ends it.
///
///   kite::model::generation_options opt{.max_new_tokens = 64, .sampling = {.temperature = 0.8f, .top_p = 0.9f}, .seed = 7};
///   auto r = kite::model::generate(model, prompt_ids, opt, [&](std::int32_t tok) {
///       std::cout << tokenizer.decode_piece(prev, tok) << std::flush;   // streaming
///       prev = tok;
///   });
///   r.tokens;  r.reason;  r.decode_tokens_per_second();
///
/// The stop token itself is neither reported to the callback nor kept in `tokens`. The callback
/// may return void, or bool (false stops after that token).

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <span>
#include <type_traits>
#include <vector>

#include "kite/core/error.hpp"
#include "kite/core/matrix.hpp"
#include "kite/kv/concepts.hpp"
#include "kite/model/sampling.hpp"

namespace kite::model {

/// Why generation ended.
enum class stop_reason : std::uint8_t {
    stop_token,  ///< the model chose one of the stop tokens
    length,      ///< max_new_tokens were generated
    context,     ///< the sequence reached the model's max_positions or the cache's room
    callback     ///< the callback returned false
};

constexpr const char* to_string(stop_reason r) noexcept {
    constexpr const char* n[] = {"stop_token", "length", "context", "callback"};
    return n[static_cast<int>(r)];
}

/// What generate() does.
struct generation_options {
    index_t max_new_tokens = 128;       ///< tokens to generate at most
    sampling_params sampling{.temperature = 0.0f};  ///< greedy unless changed
    std::uint64_t seed = 0;             ///< the sampler's xorshift seed
    /// Tokens that end generation; empty: the model's eos_token_ids (config.json / checkpoint).
    std::vector<std::int32_t> stop_tokens{};
    /// Generate max_new_tokens whatever is sampled (benchmarks, reference runs).
    bool ignore_stop_tokens = false;
};

/// The outcome of generate().
struct generation_result {
    std::vector<std::int32_t> tokens;  ///< generated tokens (the prompt and stop token excluded)
    stop_reason reason = stop_reason::length;
    index_t prompt_tokens = 0;
    double prefill_seconds = 0;        ///< prompt prefill, with the first token's logits
    double decode_seconds = 0;         ///< every later decode step
    index_t decode_steps = 0;          ///< decode() calls (tokens after the first)

    double decode_tokens_per_second() const noexcept {
        return decode_seconds > 0 ? static_cast<double>(decode_steps) / decode_seconds : 0.0;
    }
};

namespace detail {
template <class F>
bool call_on_token(F& f, std::int32_t token) {
    if constexpr (std::is_same_v<std::invoke_result_t<F&, std::int32_t>, void>) {
        f(token);
        return true;
    } else {
        return static_cast<bool>(f(token));
    }
}
struct no_callback {
    void operator()(std::int32_t) const noexcept {}
};
}  // namespace detail

/// Generates after `prompt` in sequence s of `cache` (which may already hold a prefix of s):
/// the prompt is prefilled, then tokens are sampled and decoded one at a time.
template <class Decoder, class OnToken = detail::no_callback>
generation_result generate(Decoder& model, typename Decoder::cache_type& cache, kv::seq_id s,
                           std::span<const std::int32_t> prompt, const generation_options& opt, OnToken&& on_token = {}) {
    using clock = std::chrono::steady_clock;
    KITE_REQUIRE(!prompt.empty(), invalid_argument, "generate: the prompt is empty; expected at least one token (e.g. BOS)");
    std::vector<std::int32_t> stops = opt.stop_tokens;
    if (stops.empty())
        for (const std::int64_t e : model.config().eos_token_ids) stops.push_back(static_cast<std::int32_t>(e));
    sampler smp(opt.sampling, opt.seed);
    generation_result r;
    r.prompt_tokens = prompt.size();
    matrix<float> logits(1, model.vocab_size());
    const index_t limit = model.max_positions();
    // Reserve what can really be generated: max_new_tokens may be far beyond the context.
    const index_t room = limit == 0 ? opt.max_new_tokens : limit - std::min(limit, cache.length(s));
    r.tokens.reserve(std::min<index_t>({opt.max_new_tokens, room + 1, index_t{1} << 20}));

    const auto t0 = clock::now();
    if (model.prefill(cache, s, prompt, logits.view()) != kv::status::ok) {
        r.reason = stop_reason::context;
        return r;
    }
    r.prefill_seconds = std::chrono::duration<double>(clock::now() - t0).count();
    const auto t1 = clock::now();
    for (;;) {
        if (r.tokens.size() >= opt.max_new_tokens) {
            r.reason = stop_reason::length;
            break;
        }
        const auto next = static_cast<std::int32_t>(smp.sample(logits.row(0)));
        if (!opt.ignore_stop_tokens && std::find(stops.begin(), stops.end(), next) != stops.end()) {
            r.reason = stop_reason::stop_token;
            break;
        }
        r.tokens.push_back(next);
        if (!detail::call_on_token(on_token, next)) {
            r.reason = stop_reason::callback;
            break;
        }
        if (r.tokens.size() >= opt.max_new_tokens) {
            r.reason = stop_reason::length;
            break;
        }
        // The next token's logits need one more position in the model and the cache.
        if (limit != 0 && cache.length(s) >= limit) {
            r.reason = stop_reason::context;
            break;
        }
        const kv::seq_id one[1] = {s};
        if (model.decode(cache, one, std::span<const std::int32_t>(&r.tokens.back(), 1), logits.view()) != kv::status::ok) {
            r.reason = stop_reason::context;
            break;
        }
        ++r.decode_steps;
    }
    r.decode_seconds = std::chrono::duration<double>(clock::now() - t1).count();
    return r;
}

/// Generates after `prompt` in a fresh cache sized for the prompt plus max_new_tokens (capped
/// by the model's max_positions).
template <class Decoder, class OnToken = detail::no_callback>
generation_result generate(Decoder& model, std::span<const std::int32_t> prompt, const generation_options& opt,
                           OnToken&& on_token = {}) {
    index_t room = prompt.size() + opt.max_new_tokens;
    if (model.max_positions() != 0) room = std::min(room, model.max_positions());
    auto cache = model.make_cache(std::max<index_t>(room, 1));
    const kv::seq_id s = *cache.add_sequence();
    return generate(model, cache, s, prompt, opt, std::forward<OnToken>(on_token));
}

/// `count` token sequences sampled from `model` (temperature `temperature`, seeds seed..seed+count-1),
/// each `prompt` followed by up to `length` tokens (stop tokens end one early): calibration text
/// for GPTQ / AWQ when no corpus is at hand, as in data-free quantization (the model's own
/// distribution).
template <class Decoder>
std::vector<std::vector<std::int32_t>> sample_texts(Decoder& model, std::span<const std::int32_t> prompt, index_t count,
                                                    index_t length, float temperature = 0.8f, std::uint64_t seed = 1) {
    std::vector<std::vector<std::int32_t>> out;
    for (index_t i = 0; i < count; ++i) {
        generation_options opt{.max_new_tokens = length, .sampling = {.temperature = temperature}, .seed = seed + i};
        auto r = generate(model, prompt, opt);
        std::vector<std::int32_t> seq(prompt.begin(), prompt.end());
        seq.insert(seq.end(), r.tokens.begin(), r.tokens.end());
        out.push_back(std::move(seq));
    }
    return out;
}

}  // namespace kite::model
