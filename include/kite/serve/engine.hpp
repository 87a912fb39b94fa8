#pragma once
/// @file kite/serve/engine.hpp
/// engine<Model, Scheduler, Drafter>: serves many requests from one decoder over a paged KV
/// cache, with a scheduling policy (kite/serve/scheduler.hpp), automatic prefix caching
/// (kite/serve/prefix_cache.hpp), parallel sampling by copy-on-write forks and optional
/// speculative decoding (kite/serve/speculative.hpp).
///
///   using model_t = kite::model::gguf_llama_decoder<kite::kv::paged<16>, kite::attn::invariant>;
///   model_t model(kite::model::read_gguf(file));
///   kite::serve::engine<model_t> eng(model, {.kv_tokens = 16384});
///   auto results = eng.generate(requests);                   // offline: all at once
///
///   eng.start();                                              // online: a loop thread
///   auto h = eng.submit(r);                                   // kite::serve::queue_full when full
///   while (auto ev = h.next()) std::cout << tok.token_bytes(ev->token);
///   kite::serve::result res = h.wait();                       // h.cancel() frees its blocks
///   eng.shutdown();                                           // finishes what was accepted
///
/// One step: every sequence has tokens (prompt + output so far) and a count of those whose K/V
/// is cached ("computed"); the scheduler gives each running sequence its next slice of
/// uncomputed tokens (a prompt chunk, or the newest token plus draft tokens), admits waiting
/// sequences (after a prefix-cache lookup), makes room in the pool (evicting unused cached
/// blocks, then preempting), runs the whole step as one ragged forward pass, and samples a token
/// for every sequence whose slice reached its end. Preempted sequences keep their tokens and
/// sampler state and are recomputed later.
///
/// Batch invariance: with Model's attention kernel kite::attn::invariant and the GGUF weight
/// formats (row-independent kernels), every logit a request sees is bit-identical to running it
/// alone, whatever else is batched with it, however its prompt is chunked, whether it hits the
/// prefix cache or is preempted and recomputed. Sampled requests then draw the same tokens too
/// (each sample's generator depends only on its seed).
///
/// Thread safety: submit(), handles, stats() and shutdown() may be called from any thread;
/// generate() and step() only when no loop thread runs (start() not called, or after shutdown()).

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <cstring>
#include <deque>
#include <functional>
#include <limits>
#include <memory>
#include <mutex>
#include <optional>
#include <span>
#include <string>
#include <thread>
#include <vector>

#include "kite/core/error.hpp"
#include "kite/core/matrix.hpp"
#include "kite/kv/paged.hpp"
#include "kite/model/sampling.hpp"
#include "kite/serve/prefix_cache.hpp"
#include "kite/serve/request.hpp"
#include "kite/serve/scheduler.hpp"
#include "kite/serve/speculative.hpp"

namespace kite::serve {

/// submit() on a full queue (or after shutdown): the client should retry later.
class queue_full : public error {
public:
    using error::error;
};

/// Construction options of an engine.
struct engine_options {
    /// KV pool capacity in tokens (rounded up to whole blocks); every request must fit alone.
    index_t kv_tokens = 8192;
    /// Requests accepted but not yet running, at most (submit() refuses more with queue_full).
    index_t max_queue = 256;
    /// Automatic prefix caching of full KV blocks.
    bool prefix_caching = true;
    /// Touch the whole KV pool at construction (kite::kv::paged::prefault) instead of when a
    /// step first writes each block: no step stalls on page faults, at the price of the pool's
    /// full resident size from the start (as llama.cpp, which clears its K/V buffer up front).
    bool prefault_kv = true;
    /// End-of-generation token ids (empty: the model's config.eos_token_ids).
    std::vector<std::int32_t> stop_tokens{};
    /// Token ids -> text, for stop strings and sample_output::text (optional).
    std::function<std::string(std::span<const std::int32_t>)> detokenize{};
    /// Tokens a sequence may hold, prompt included (0: the model's max_positions).
    index_t max_context = 0;
    /// Chat messages -> prompt ids with the generation prompt (for request::messages), e.g.
    /// [&](auto m) { return tokenizer.apply_chat_template(m, true); }.
    std::function<std::vector<std::int32_t>(std::span<const text::chat_message>)> chat_template{};
};

namespace detail {

/// 64-bit digest of a logits row (FNV-1a over the float bits): equal rows, equal digests.
inline std::uint64_t digest(std::span<const float> row) noexcept {
    std::uint64_t h = 0xcbf29ce484222325ull;
    for (const float f : row) {
        std::uint32_t u;
        std::memcpy(&u, &f, 4);
        h = (h ^ u) * 0x100000001b3ull;
    }
    return h;
}

/// What the engine and a client's handle share about one request.
struct request_state {
    using clock = std::chrono::steady_clock;
    request req;
    std::uint64_t order = 0;  // arrival order
    clock::time_point arrival, scheduled, first_token, finished_at;
    bool was_scheduled = false, had_token = false;
    std::atomic<bool> cancel{false};

    std::mutex m;
    std::condition_variable cv;
    std::deque<token_event> events;  // streamed tokens not yet read
    bool done = false;
    result res;
};

}  // namespace detail

/// A client's view of a submitted request.
class handle {
public:
    handle() = default;
    explicit handle(std::shared_ptr<detail::request_state> s) : s_(std::move(s)) {}

    /// The next generated token (blocks until one arrives); nullopt once the request is done
    /// and every token was read.
    std::optional<token_event> next() {
        std::unique_lock lk(s_->m);
        s_->cv.wait(lk, [&] { return !s_->events.empty() || s_->done; });
        if (s_->events.empty()) return std::nullopt;
        const token_event e = s_->events.front();
        s_->events.pop_front();
        return e;
    }
    /// What next_for() found.
    enum class poll { token, timeout, done };
    /// Like next(), waiting at most `timeout`: poll::token (written to `out`), poll::timeout, or
    /// poll::done once the request is done and every token was read. A server uses it to notice
    /// a client that went away while its request waits.
    template <class Rep, class Period>
    poll next_for(std::chrono::duration<Rep, Period> timeout, token_event& out) {
        std::unique_lock lk(s_->m);
        if (!s_->cv.wait_for(lk, timeout, [&] { return !s_->events.empty() || s_->done; })) return poll::timeout;
        if (s_->events.empty()) return poll::done;
        out = s_->events.front();
        s_->events.pop_front();
        return poll::token;
    }
    /// Blocks until the request is done and returns its result.
    result wait() {
        std::unique_lock lk(s_->m);
        s_->cv.wait(lk, [&] { return s_->done; });
        return s_->res;
    }
    bool done() const {
        std::lock_guard lk(s_->m);
        return s_->done;
    }
    /// Asks the engine to stop the request; its KV blocks return to the pool at the next step.
    void cancel() noexcept { s_->cancel.store(true, std::memory_order_relaxed); }
    bool valid() const noexcept { return static_cast<bool>(s_); }

private:
    std::shared_ptr<detail::request_state> s_;
};

/// The serving engine; see the file comment.
template <class Model, class Scheduler = continuous_batching, class Drafter = no_speculation>
class engine {
public:
    using model_type = Model;
    using cache_type = typename Model::cache_type;
    using scheduler_type = Scheduler;
    using drafter_type = Drafter;
    using clock = std::chrono::steady_clock;
    static constexpr index_t block_tokens = cache_type::block_tokens;

    engine(const Model& model, engine_options opt = {}, Scheduler sched = {}, Drafter drafter = {})
        : m_(&model), opt_(std::move(opt)), sched_(std::move(sched)), drafter_(std::move(drafter)),
          cache_(model.cache_shape(), blocks_for(opt_.kv_tokens)), prefix_(cache_) {
        detail::validate_scheduler(sched_);
        if constexpr (requires { drafter_.validate(); }) drafter_.validate();
        if constexpr (requires { drafter_.vocab_size(); })
            KITE_REQUIRE(drafter_.vocab_size() == model.vocab_size(), config_error, "serve::engine: the draft model has ",
                         drafter_.vocab_size(), " tokens in its vocabulary, the target ", model.vocab_size(),
                         "; a draft model must share the target's vocabulary");
        KITE_REQUIRE(opt_.max_queue >= 1, invalid_argument, "serve::engine: max_queue = 0; expected >= 1");
        if (opt_.stop_tokens.empty())
            for (const auto id : model.config().eos_token_ids) opt_.stop_tokens.push_back(static_cast<std::int32_t>(id));
        context_ = model.max_positions();
        if (opt_.max_context != 0) context_ = context_ ? std::min(context_, opt_.max_context) : opt_.max_context;
        c_.kv_blocks_total = stats_.kv_blocks_total = cache_.num_blocks();
        if constexpr (requires { cache_.prefault(); })
            if (opt_.prefault_kv) cache_.prefault();
    }
    engine(const engine&) = delete;
    engine& operator=(const engine&) = delete;
    ~engine() { shutdown(false); }

    const Scheduler& scheduler() const noexcept { return sched_; }
    const engine_options& options() const noexcept { return opt_; }
    /// The KV cache (for inspection when no loop thread runs).
    const cache_type& cache() const noexcept { return cache_; }
    /// Tokens a sequence may hold (0: unlimited).
    index_t context() const noexcept { return context_; }

    // ---- offline ------------------------------------------------------------------------------

    /// Runs every request to completion and returns their results in order. Invalid requests
    /// are a kite::invalid_argument naming the request and the field.
    std::vector<result> generate(std::vector<request> reqs) {
        KITE_REQUIRE(!loop_.joinable(), invalid_argument,
                     "serve::engine::generate: the loop thread runs (start()); use submit() or shutdown() first");
        std::vector<std::shared_ptr<detail::request_state>> states;
        for (index_t i = 0; i < reqs.size(); ++i) {
            render(reqs[i], "request " + std::to_string(i));
            check(reqs[i], "request " + std::to_string(i));
        }
        for (auto& r : reqs) states.push_back(admit_new(std::move(r)));
        draining_ = true;
        while (true) {
            bool all = true;
            for (const auto& s : states) all = all && s->done;
            if (all) break;
            if (!step() && waiting_.empty() && running_.empty() && incoming_empty()) break;
        }
        draining_ = false;
        std::vector<result> out;
        for (const auto& s : states) out.push_back(s->res);
        return out;
    }

    // ---- online -------------------------------------------------------------------------------

    /// Starts the loop thread that runs steps while there is work.
    void start() {
        KITE_REQUIRE(!loop_.joinable(), invalid_argument, "serve::engine::start: already started");
        stopping_ = false;
        accepting_ = true;
        loop_ = std::thread([this] { loop(); });
    }

    /// Queues a request; its tokens stream through the handle. kite::invalid_argument for an
    /// invalid request, kite::serve::queue_full when max_queue requests wait or the engine is
    /// shutting down.
    handle submit(request r) {
        render(r, "submit");
        check(r, "submit");
        {
            std::lock_guard lk(mu_);
            if (!accepting_ || incoming_.size() + queued_ >= opt_.max_queue) {
                ++stats_.rejected;
                kite::detail::raise<queue_full>("serve::engine::submit: ", accepting_ ? "the queue is full (" : "the engine is shutting down (",
                                                incoming_.size() + queued_, " waiting, max_queue = ", opt_.max_queue,
                                                "); retry later");
            }
        }
        auto st = make_state(std::move(r));
        {
            std::lock_guard lk(mu_);
            incoming_.push_back(st);
        }
        wake_.notify_one();
        return handle(st);
    }

    /// Stops the loop thread: with `drain`, after every accepted request has finished; without,
    /// cancelling what is queued or running. New submissions are refused from now on.
    void shutdown(bool drain = true) {
        {
            std::lock_guard lk(mu_);
            accepting_ = false;
            drain_on_stop_ = drain;
            stopping_ = true;
        }
        wake_.notify_all();
        if (loop_.joinable()) loop_.join();
        if (!drain) cancel_everything();
    }

    /// A snapshot of the counters.
    engine_stats stats() const {
        std::lock_guard lk(mu_);
        return stats_;
    }

    // ---- one step -----------------------------------------------------------------------------

    /// Runs one scheduling step; false when there was nothing to compute.
    bool step() {
        const auto t0 = clock::now();
        intake();
        handle_cancellations();
        plan();
        if (items_.empty()) {
            publish_idle();
            return false;
        }
        bool decode_only = true;
        for (const item& it : items_) decode_only = decode_only && it.s->computed >= it.s->prompt_len && it.sample;
        const std::uint64_t generated = c_.generated_tokens;
        execute();
        const double dt = std::chrono::duration<double>(clock::now() - t0).count();
        if (decode_only) {
            c_.decode_seconds += dt;
            c_.decode_tokens += c_.generated_tokens - generated;
        }
        publish(dt);
        return true;
    }

private:
    struct sequence {
        std::shared_ptr<detail::request_state> rq;
        index_t sample = 0;
        std::vector<std::int32_t> tokens;  // prompt + output
        index_t prompt_len = 0;
        index_t computed = 0;              // tokens whose K/V is in the cache
        std::optional<kv::seq_id> cs;      // cache sequence while admitted
        std::vector<std::uint64_t> chain;  // prefix-cache entries of its full blocks
        model::sampler smp;
        bool finished = false;
        std::string text;  // the output cut before a stop string (cut == true)
        bool cut = false;
        std::vector<std::uint64_t> digests;
        index_t draft_k = 0;               // draft tokens to ask for next (adapts to acceptance)
        index_t outputs() const noexcept { return tokens.size() - prompt_len; }
        std::uint64_t key() const noexcept { return rq->order * 1024 + sample; }
    };
    struct item {
        sequence* s;
        index_t n;        // tokens fed (from s->computed), drafts included
        draft d;          // drafted tokens (fed after the newest token)
        bool sample;      // the slice ends at the last token: logits wanted
    };

    static index_t blocks_for(index_t tokens) {
        KITE_REQUIRE(tokens >= 1, invalid_argument, "serve::engine: kv_tokens = 0; expected >= 1");
        return (tokens + block_tokens - 1) / block_tokens;
    }

    // request::messages -> request::prompt through engine_options::chat_template.
    void render(request& r, const std::string& who) const {
        if (r.messages.empty()) return;
        KITE_REQUIRE(r.prompt.empty(), invalid_argument, who, ": both prompt and messages are set; expected one");
        KITE_REQUIRE(static_cast<bool>(opt_.chat_template), invalid_argument, who,
                     ": messages need engine_options::chat_template");
        r.prompt = opt_.chat_template(r.messages);
    }

    void check(const request& r, const std::string& who) const {
        KITE_REQUIRE(!r.prompt.empty(), invalid_argument, who, ": prompt is empty; expected at least one token");
        for (index_t i = 0; i < r.prompt.size(); ++i)
            KITE_REQUIRE(r.prompt[i] >= 0 && static_cast<index_t>(r.prompt[i]) < m_->vocab_size(), invalid_argument, who,
                         ": prompt[", i, "] = ", r.prompt[i], "; expected a token id in [0, ", m_->vocab_size(), ")");
        KITE_REQUIRE(r.max_tokens >= 1, invalid_argument, who, ": max_tokens = ", r.max_tokens, "; expected >= 1");
        KITE_REQUIRE(r.n >= 1 && r.n <= 1024, invalid_argument, who, ": n = ", r.n, "; expected 1 .. 1024");
        KITE_REQUIRE(context_ == 0 || r.prompt.size() < context_, invalid_argument, who, ": the prompt has ", r.prompt.size(),
                     " tokens; the context holds ", context_, " (prompt and at least one new token)");
        const index_t need = std::min(r.prompt.size() + r.max_tokens, context_ ? context_ : r.prompt.size() + r.max_tokens);
        KITE_REQUIRE(blocks_for(need) <= cache_.num_blocks(), invalid_argument, who, ": prompt (", r.prompt.size(),
                     ") + max_tokens (", r.max_tokens, ") = ", need, " tokens; the KV pool holds ",
                     cache_.num_blocks() * block_tokens, " (engine_options::kv_tokens)");
        KITE_REQUIRE(r.stop.empty() || static_cast<bool>(opt_.detokenize), invalid_argument, who,
                     ": stop strings need engine_options::detokenize");
        for (const auto& s : r.stop)
            KITE_REQUIRE(!s.empty(), invalid_argument, who, ": an empty stop string; expected non-empty strings");
        for (const auto t : r.stop_tokens)
            KITE_REQUIRE(t >= 0 && static_cast<index_t>(t) < m_->vocab_size(), invalid_argument, who, ": stop token ", t,
                         " outside the vocabulary");
        model::sampler probe(r.sampling, r.seed);  // validates temperature / top_p
        (void)probe;
    }

    std::shared_ptr<detail::request_state> make_state(request r) {
        auto st = std::make_shared<detail::request_state>();
        st->req = std::move(r);
        st->arrival = clock::now();
        st->res.prompt_tokens = st->req.prompt.size();
        return st;
    }

    std::shared_ptr<detail::request_state> admit_new(request r) {
        auto st = make_state(std::move(r));
        std::lock_guard lk(mu_);
        incoming_.push_back(st);
        return st;
    }

    bool incoming_empty() const {
        std::lock_guard lk(mu_);
        return incoming_.empty();
    }

    // Moves submitted requests into the waiting queue (their first sample).
    void intake() {
        std::deque<std::shared_ptr<detail::request_state>> in;
        {
            std::lock_guard lk(mu_);
            in.swap(incoming_);
            queued_.fetch_add(in.size(), std::memory_order_relaxed);
        }
        for (auto& st : in) {
            st->order = next_order_++;
            auto s = std::make_unique<sequence>();
            s->rq = st;
            s->tokens = st->req.prompt;
            s->prompt_len = st->req.prompt.size();
            s->smp = model::sampler(st->req.sampling, st->req.seed);
            waiting_.push_back(s.get());
            seqs_.push_back(std::move(s));
            st->res.outputs.resize(st->req.n);
            live_[st.get()] = 1;
        }
    }

    void handle_cancellations() {
        for (auto& up : seqs_) {
            sequence* s = up.get();
            if (s->finished || !s->rq->cancel.load(std::memory_order_relaxed)) continue;
            finish(s, finish_reason::cancelled);
        }
        sweep();
    }

    // ---- planning -----------------------------------------------------------------------------

    void plan() {
        items_.clear();
        const auto now = clock::now();
        index_t budget = std::numeric_limits<index_t>::max();
        if constexpr (Scheduler::iteration_level) budget = sched_.token_budget;
        // Running sequences: decode slices first, then prompt chunks.
        index_t partial = 0;
        for (int pass = 0; pass < 2; ++pass)
            for (sequence* s : running_) {
                const index_t pending = s->tokens.size() - s->computed;
                const bool decode = pending == 1;
                if ((pass == 0) != decode || budget == 0) continue;
                add_item(s, pending, budget, partial);
            }
        // Admissions.
        if constexpr (Scheduler::iteration_level) {
            while (!waiting_.empty() && budget > 0 && running_.size() < sched_.max_running &&
                   partial < sched_.max_partial_prefills) {
                sequence* s = waiting_.front();
                waiting_.pop_front();
                bind(s, now);
                running_.push_back(s);
                add_item(s, s->tokens.size() - s->computed, budget, partial);
            }
        } else {
            if (running_.empty() && !waiting_.empty() &&
                sched_.start_batch(waiting_.size(), now - waiting_.front()->rq->arrival, draining_ || stopping_)) {
                for (index_t i = 0; i < Scheduler::batch && !waiting_.empty(); ++i) {
                    sequence* s = waiting_.front();
                    waiting_.pop_front();
                    bind(s, now);
                    running_.push_back(s);
                    add_item(s, s->tokens.size() - s->computed, budget, partial);
                }
            }
        }
        make_room();
    }

    void add_item(sequence* s, index_t pending, index_t& budget, index_t& partial) {
        index_t n = pending;
        if constexpr (Scheduler::iteration_level) {
            if (pending > 1) {
                if (partial >= sched_.max_partial_prefills) return;
                n = std::min({pending, sched_.chunk, budget});
                ++partial;
            }
        }
        item it{s, n, {}, n == pending};
        if constexpr (Drafter::enabled) {
            if (pending == 1 && s->rq->req.speculate && budget > 1) {
                if (s->draft_k == 0) s->draft_k = drafter_k();
                index_t k = std::min(s->draft_k, budget - 1);
                k = std::min(k, s->rq->req.max_tokens - s->outputs() - 1);
                if (context_) k = std::min(k, context_ > s->tokens.size() ? context_ - s->tokens.size() : index_t{0});
                if (k > 0) drafter_.propose(s->key(), s->tokens, k, s->smp, it.d);
                it.n += it.d.tokens.size();
            }
        }
        budget -= std::min(budget, it.n);
        items_.push_back(std::move(it));
    }

    index_t drafter_k() const {
        if constexpr (!Drafter::enabled) return 0;
        else return drafter_.max_draft_tokens();
    }

    // Gives an admitted sequence its cache sequence, adopting cached prefix blocks.
    void bind(sequence* s, clock::time_point now) {
        auto& rq = *s->rq;
        if (!rq.was_scheduled) {
            rq.was_scheduled = true;
            rq.scheduled = now;
            queued_.fetch_sub(1, std::memory_order_relaxed);
        }
        if (s->cs) return;
        if (opt_.prefix_caching) {
            auto h = prefix_.match(s->tokens, s->tokens.size() - 1);
            c_.prefix_lookup_tokens += s->tokens.size();
            c_.prefix_hit_tokens += h.tokens;
            if (s->sample == 0 && s->outputs() == 0 && rq.res.cached_prompt_tokens == 0) rq.res.cached_prompt_tokens = h.tokens;
            if (!h.blocks.empty()) {
                s->cs = cache_.adopt(h.blocks, h.tokens);
                s->computed = h.tokens;
                s->chain = std::move(h.chain);
                return;
            }
        }
        s->cs = *cache_.add_sequence();
        s->computed = 0;
        s->chain.clear();
    }

    // Evicts cached blocks, drops drafts, then preempts until the step fits in the pool.
    void make_room() {
        for (int round = 0;; ++round) {
            index_t need = 0;
            for (const item& it : items_) need += cache_.blocks_needed(*it.s->cs, it.n);
            const index_t free = cache_.free_blocks();
            if (need <= free) return;
            if (opt_.prefix_caching && prefix_.evict(need - free) > 0) continue;
            bool dropped = false;
            for (item& it : items_)
                if (!it.d.tokens.empty()) {
                    it.n -= it.d.tokens.size();
                    it.d.clear();
                    dropped = true;
                }
            if (dropped) continue;
            // Preempt the running sequence that loses least work: fewest computed tokens, newest on ties.
            sequence* victim = nullptr;
            for (sequence* s : running_)
                if (!victim || s->computed < victim->computed ||
                    (s->computed == victim->computed && s->rq->order * 1024 + s->sample > victim->rq->order * 1024 + victim->sample))
                    victim = s;
            KITE_ASSERT(victim != nullptr);
            if (running_.size() == 1) {
                // Alone and still too big: cannot happen for requests check() accepted, because the
                // whole pool is then free or evictable. Fail the request rather than loop.
                fail(victim, "the KV pool cannot hold the sequence");
                items_.clear();
                return;
            }
            preempt(victim);
        }
    }

    void preempt(sequence* s) {
        items_.erase(std::remove_if(items_.begin(), items_.end(), [&](const item& it) { return it.s == s; }), items_.end());
        release_cache(s);
        s->computed = 0;
        running_.erase(std::find(running_.begin(), running_.end(), s));
        // Back to the queue in arrival order (it keeps its place).
        auto pos = std::find_if(waiting_.begin(), waiting_.end(), [&](const sequence* w) {
            return w->rq->order > s->rq->order || (w->rq->order == s->rq->order && w->sample > s->sample);
        });
        waiting_.insert(pos, s);
        ++s->rq->res.preemptions;
        ++c_.preemptions;
    }

    void release_cache(sequence* s) {
        if (!s->cs) return;
        if (opt_.prefix_caching) prefix_.release(s->chain);
        cache_.free(*s->cs);
        s->cs.reset();
        s->chain.clear();
        if constexpr (Drafter::enabled) drafter_.release(s->key());
    }

    // ---- execution ----------------------------------------------------------------------------

    void execute() {
        // Single-token slices first so that the model runs them as one decode call.
        std::stable_partition(items_.begin(), items_.end(), [](const item& it) { return it.n == 1; });
        parts_.clear();
        feeds_.resize(items_.size());
        index_t rows = 0;
        for (index_t i = 0; i < items_.size(); ++i) {
            const item& it = items_[i];
            sequence* s = it.s;
            auto& f = feeds_[i];
            f.assign(s->tokens.begin() + static_cast<std::ptrdiff_t>(s->computed),
                     s->tokens.begin() + static_cast<std::ptrdiff_t>(s->computed + it.n - it.d.tokens.size()));
            f.insert(f.end(), it.d.tokens.begin(), it.d.tokens.end());
            const index_t lr = !it.sample ? 0 : (it.d.tokens.empty() ? 1 : it.n);
            parts_.push_back({*s->cs, f, lr});
            rows += lr;
        }
        logits_.resize(rows, m_->vocab_size());
        const kv::status st = m_->forward(ws_, cache_, parts_, logits_.view());
        KITE_ASSERT(st == kv::status::ok);
        (void)st;
        const auto now = clock::now();
        index_t row = 0;
        for (index_t i = 0; i < items_.size(); ++i) {
            item& it = items_[i];
            sequence* s = it.s;
            const index_t lr = parts_[i].logit_rows;
            const index_t k = it.d.tokens.size();
            if (s->computed < s->prompt_len)
                c_.prompt_tokens_computed += std::min(s->prompt_len, s->computed + it.n) - s->computed;
            if (!it.sample) {
                s->computed += it.n;
                register_blocks(s);
                row += lr;
                continue;
            }
            const auto rows_of = logits_.view().rows_slice(row, lr);
            row += lr;
            const bool first_prompt = s->sample == 0 && s->outputs() == 0 && !s->rq->had_token;
            if (k == 0) {
                s->computed += it.n;
                register_blocks(s);
                const auto next = static_cast<std::int32_t>(s->smp.sample(rows_of.row(0)));
                if (first_prompt) fork_samples(s, rows_of.row(0), now);
                commit(s, next, rows_of.row(0), now);
            } else {
                const verdict v = verify(s->smp, rows_of, it.d.tokens, it.d.q, scratch_);
                // Recent acceptance steers the draft length: all accepted asks for one more next
                // time, a rejection for one more than were accepted.
                s->draft_k = v.accepted == k ? std::min(drafter_k(), k + 1) : std::max<index_t>(1, v.accepted + 1);
                c_.drafted_tokens += k;
                c_.accepted_tokens += v.accepted;
                s->rq->res.drafted_tokens += k;
                s->rq->res.accepted_tokens += v.accepted;
                const index_t valid = s->computed + 1 + v.accepted;
                cache_.truncate(*s->cs, valid);
                s->computed = valid;
                for (index_t j = 0; j < v.accepted && !s->finished; ++j) commit(s, it.d.tokens[j], rows_of.row(j), now);
                if (!s->finished) commit(s, v.next, rows_of.row(v.accepted), now);
                if (!s->finished) register_blocks(s);
            }
        }
        sweep();
    }

    void register_blocks(sequence* s) {
        if (!opt_.prefix_caching || !s->cs) return;
        const index_t committed = std::min<index_t>(s->computed, s->tokens.size());
        prefix_.register_blocks(*s->cs, std::span<const std::int32_t>(s->tokens).first(committed), s->chain);
    }

    // n > 1: the other samples fork the prompt's blocks and draw their first token from the
    // same logits.
    void fork_samples(sequence* s0, std::span<const float> logits, clock::time_point now) {
        auto& rq = *s0->rq;
        for (index_t i = 1; i < rq.req.n; ++i) {
            auto c = std::make_unique<sequence>();
            c->rq = s0->rq;
            c->sample = i;
            c->tokens = s0->tokens;
            c->prompt_len = s0->prompt_len;
            c->computed = s0->computed;
            c->cs = *cache_.fork(*s0->cs);
            c->chain = s0->chain;
            c->smp = model::sampler(rq.req.sampling, rq.req.seed + i);
            const auto next = static_cast<std::int32_t>(c->smp.sample(logits));
            sequence* raw = c.get();
            seqs_.push_back(std::move(c));
            running_.push_back(raw);
            ++live_[s0->rq.get()];
            commit(raw, next, logits, now);
        }
    }

    bool is_stop_token(const sequence* s, std::int32_t t) const {
        const auto& r = s->rq->req;
        if (!r.ignore_eos && std::find(opt_.stop_tokens.begin(), opt_.stop_tokens.end(), t) != opt_.stop_tokens.end())
            return true;
        return std::find(r.stop_tokens.begin(), r.stop_tokens.end(), t) != r.stop_tokens.end();
    }

    // Appends a sampled token to s (or finishes s on a stop condition).
    void commit(sequence* s, std::int32_t t, std::span<const float> logits, clock::time_point now) {
        auto& rq = *s->rq;
        if (is_stop_token(s, t)) {
            finish(s, finish_reason::stop);
            return;
        }
        s->tokens.push_back(t);
        if (rq.req.record_logits) s->digests.push_back(detail::digest(logits));
        if (!rq.had_token) {
            rq.had_token = true;
            rq.first_token = now;
        }
        ++c_.generated_tokens;
        {
            std::lock_guard lk(rq.m);
            rq.events.push_back({s->sample, t});
        }
        rq.cv.notify_all();
        if (!rq.req.stop.empty() && stop_string_hit(s)) {
            finish(s, finish_reason::stop);
            return;
        }
        if (s->outputs() >= rq.req.max_tokens) {
            finish(s, finish_reason::length);
            return;
        }
        if (context_ && s->tokens.size() >= context_) finish(s, finish_reason::context);
    }

    bool stop_string_hit(sequence* s) {
        const std::string text = opt_.detokenize(std::span<const std::int32_t>(s->tokens).subspan(s->prompt_len));
        std::size_t cut = std::string::npos;
        for (const auto& stop : s->rq->req.stop) cut = std::min(cut, text.find(stop));
        if (cut == std::string::npos) return false;
        s->text = text.substr(0, cut);
        s->cut = true;
        return true;
    }

    void fail(sequence* s, const std::string& why) {
        s->rq->res.error = why;
        finish(s, finish_reason::error);
    }

    // Ends a sample: frees its blocks, stores its output; the request is done with its last sample.
    void finish(sequence* s, finish_reason why) {
        if (s->finished) return;
        s->finished = true;
        release_cache(s);
        auto& rq = *s->rq;
        sample_output& out = rq.res.outputs[s->sample];
        out.tokens.assign(s->tokens.begin() + static_cast<std::ptrdiff_t>(s->prompt_len), s->tokens.end());
        out.finish = why;
        out.logit_digests = std::move(s->digests);
        if (s->cut)
            out.text = s->text;
        else if (opt_.detokenize)
            out.text = opt_.detokenize(out.tokens);
        if (why == finish_reason::cancelled) ++c_.cancelled;
        // n > 1 samples not yet forked (the prompt never completed) end with sample 0.
        if (s->sample == 0 && !rq.had_token && rq.req.n > 1)
            for (index_t i = 1; i < rq.req.n; ++i) rq.res.outputs[i].finish = why;
        if (--live_[&rq] == 0) complete(s->rq);
    }

    // Fills in the result; the waiting handle learns of it in release_done(), after the counters
    // that include this request are published (a client that reads stats() after its result
    // sees its own tokens counted).
    void complete(const std::shared_ptr<detail::request_state>& st) {
        auto& rq = *st;
        live_.erase(&rq);
        rq.finished_at = clock::now();
        auto& t = rq.res.timings;
        const auto secs = [](clock::duration d) { return std::chrono::duration<double>(d).count(); };
        t.queue_s = rq.was_scheduled ? secs(rq.scheduled - rq.arrival) : secs(rq.finished_at - rq.arrival);
        t.e2e_s = secs(rq.finished_at - rq.arrival);
        t.ttft_s = rq.had_token ? secs(rq.first_token - rq.arrival) : t.e2e_s;
        index_t longest = 0;
        for (const auto& o : rq.res.outputs) longest = std::max<index_t>(longest, o.tokens.size());
        t.tpot_s = longest > 1 ? (t.e2e_s - t.ttft_s) / static_cast<double>(longest - 1) : 0.0;
        ++c_.finished;
        completed_.push_back(st);
    }

    void release_done() {
        for (const auto& st : completed_) {
            {
                std::lock_guard lk(st->m);
                st->done = true;
            }
            st->cv.notify_all();
        }
        completed_.clear();
    }

    // Drops finished sequences from the queues and the store.
    void sweep() {
        const auto gone = [](const sequence* s) { return s->finished; };
        running_.erase(std::remove_if(running_.begin(), running_.end(), gone), running_.end());
        waiting_.erase(std::remove_if(waiting_.begin(), waiting_.end(), [&](const sequence* s) {
                           if (!s->finished) return false;
                           if (!s->rq->was_scheduled) {
                               s->rq->was_scheduled = true;  // counted out of the queue
                               s->rq->scheduled = clock::now();
                               queued_.fetch_sub(1, std::memory_order_relaxed);
                           }
                           return true;
                       }),
                       waiting_.end());
        seqs_.erase(std::remove_if(seqs_.begin(), seqs_.end(), [](const auto& p) { return p->finished; }), seqs_.end());
    }

    void cancel_everything() {
        intake();
        for (auto& up : seqs_) finish(up.get(), finish_reason::cancelled);
        sweep();
        publish_idle();
    }

    // ---- the loop thread ----------------------------------------------------------------------

    void loop() {
        for (;;) {
            bool worked = false;
            try {
                worked = step();
            } catch (const std::exception& e) {
                // A failure inside a step fails the requests in flight, not the process.
                for (auto& up : seqs_) fail(up.get(), e.what());
                sweep();
                publish_idle();
            }
            std::unique_lock lk(mu_);
            if (stopping_) {
                if (!drain_on_stop_) break;
                if (incoming_.empty() && waiting_.empty() && running_.empty()) break;
                if (worked) continue;
            }
            if (worked) continue;
            if (!incoming_.empty()) continue;
            // Idle, or waiting for a static / dynamic batch to fill: sleep until a submission
            // (or the dynamic window's end).
            wake_.wait_for(lk, std::chrono::milliseconds(waiting_.empty() ? 100 : 1));
        }
    }

    // ---- counters -----------------------------------------------------------------------------

    // The loop thread counts in c_; stats() reads the copy published here after each step.
    void publish(double dt, bool worked = true) {
        c_.steps += worked;
        c_.busy_seconds += dt;
        if (worked) c_.longest_step_seconds = std::max(c_.longest_step_seconds, dt);
        c_.kv_blocks_free = cache_.free_blocks();
        c_.kv_blocks_used = cache_.num_blocks() - cache_.free_blocks();
        c_.kv_blocks_cached = prefix_.cached_blocks();
        const index_t evictable = opt_.prefix_caching ? prefix_.evictable_blocks() : 0;
        if (worked && c_.kv_blocks_used - evictable > c_.peak_kv_blocks) {
            c_.peak_kv_blocks = c_.kv_blocks_used - evictable;
            c_.peak_kv_tokens = cache_.stats().tokens_stored;
            c_.peak_contiguous_tokens = 0;
            for (const sequence* s : running_) {
                const index_t want = s->prompt_len + s->rq->req.max_tokens;
                c_.peak_contiguous_tokens += context_ ? std::min(want, context_) : want;
            }
        }
        c_.running = running_.size();
        {
            std::lock_guard lk(mu_);
            const auto rejected = stats_.rejected;
            stats_ = c_;
            stats_.rejected = rejected;
            stats_.queue_depth = waiting_.size() + incoming_.size();
        }
        release_done();
    }
    void publish_idle() { publish(0.0, false); }

    const Model* m_;
    engine_options opt_;
    Scheduler sched_;
    Drafter drafter_;
    cache_type cache_;
    prefix_cache<cache_type> prefix_;
    index_t context_ = 0;

    typename Model::workspace ws_;
    std::vector<typename Model::batch_part> parts_;
    std::vector<std::vector<std::int32_t>> feeds_;
    matrix<float> logits_;
    std::vector<float> scratch_;
    std::vector<item> items_;

    std::vector<std::unique_ptr<sequence>> seqs_;
    std::deque<sequence*> waiting_;
    std::vector<sequence*> running_;
    std::unordered_map<detail::request_state*, index_t> live_;  // request -> samples not finished
    std::vector<std::shared_ptr<detail::request_state>> completed_;  // results not yet released
    std::uint64_t next_order_ = 0;
    engine_stats c_;  // the loop thread's counters

    mutable std::mutex mu_;
    std::condition_variable wake_;
    std::deque<std::shared_ptr<detail::request_state>> incoming_;
    std::atomic<index_t> queued_{0};  // moved to waiting_ but never scheduled (for max_queue)
    engine_stats stats_;
    bool accepting_ = true, drain_on_stop_ = true, draining_ = false;  // accepting_, drain_on_stop_: under mu_
    std::atomic<bool> stopping_{false};  // read by the loop thread's planning without the lock
    std::thread loop_;
};

}  // namespace kite::serve
