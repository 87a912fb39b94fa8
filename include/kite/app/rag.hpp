#pragma once
/// @file kite/app/rag.hpp
/// Retrieval-augmented generation composed at compile time: a kite retriever (BM25, dense,
/// hybrid, reranked pipeline: anything with search(text, k) -> ranking), a generator (the
/// serving engine or a decoder, through engine_generator / decoder_generator), and three
/// policies: an answer cache (kite/app/llm_cache.hpp), a validator (kite/app/validate.hpp) and
/// an exchange log (kite/app/exchange_log.hpp).
///
///   kite::app::engine_generator gen(engine, tokenizer, "SmolLM2-135M-Instruct.Q4_1");
///   kite::app::rag<const hybrid_t&, decltype(gen)&, tiered_cache<...>&, validator<...>&, exchange_log&>
///       app(hybrid, gen, corpus, caches, checks, log, {.retrieve_k = 8});
///   kite::app::rag_answer a = app.ask("Do statins reduce mortality?", [](std::string_view piece) {
///       std::cout << piece << std::flush;                 // streamed as it is generated
///   });
///   a.answer; a.citations; a.cache; a.timings.ttft_ms;     // to_json(a) for the whole record
///
/// One ask():
///   1. the question is validated (stage::question): refused questions get options.refusal and
///      go no further; a masked question is what the rest sees (and what the log keeps);
///   2. the cache is asked (scope: model id, sampling parameters, retrieve_k, prompt budget and
///      options.scope_tag, e.g. the corpus name): a hit is returned as stored;
///   3. retrieve_k passages are retrieved and validated (stage::passage: refused ones dropped,
///      masked ones used masked);
///   4. the prompt is assembled within the token budget (kite/app/prompt.hpp) and validated
///      (stage::prompt);
///   5. the answer is generated, streamed to the callback, and validated (stage::output): a
///      retry regenerates with options.retry_temperature and the next seed (at most
///      max_retries times, then the answer is refused), a mask replaces it by the masked text,
///      a refusal by options.refusal. The callback streams the raw generation: when output
///      rules may mask or refuse, show the final rag_answer::answer instead;
///   6. a usable, complete answer is stored in the cache; the exchange is logged.
/// citations are the document ids of the passages the answer cites as [n] (numbers outside
/// the prompt's passages are ignored); context_ids are all passages the generator received.
/// Timings (milliseconds): retrieval, prompt (assembly and tokenization), ttft (from the start
/// of generation to the first token), generation (start to last token), total (the whole
/// ask()), plus cache and validation.
/// Thread safety: ask() may run on many threads when the policies are thread-safe (kite's
/// caches, validators and exchange_log are; the engine is).

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <functional>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "kite/app/exchange_log.hpp"
#include "kite/app/llm_cache.hpp"
#include "kite/app/prompt.hpp"
#include "kite/app/validate.hpp"
#include "kite/core/error.hpp"
#include "kite/model/generate.hpp"
#include "kite/model/sampling.hpp"
#include "kite/retrieval/concepts.hpp"
#include "kite/retrieval/datasets.hpp"
#include "kite/serve/request.hpp"
#include "kite/text/utf8.hpp"

namespace kite::app {

/// What a generator is asked for.
struct generate_params {
    model::sampling_params sampling{.temperature = 0.0f};  ///< greedy by default
    index_t max_tokens = 256;
    std::uint64_t seed = 0;
};

/// What a generator returns.
struct generation {
    std::string text;
    std::size_t prompt_tokens = 0, cached_prompt_tokens = 0, generated_tokens = 0;
    std::string finish;          ///< "stop", "length", "context", ...
    double ttft_ms = 0;          ///< start to first token
    double generation_ms = 0;    ///< start to last token
};

using text_callback = std::function<void(std::string_view)>;

/// A generator: generate(prompt ids, params, on_text) -> generation, tokenizer(), model_id().
template <class G>
concept generator = requires(G& g, std::span<const std::int32_t> p, const generate_params& gp, const text_callback& f) {
    { g.generate(p, gp, f) } -> std::same_as<generation>;
    g.tokenizer();
    { g.model_id() } -> std::convertible_to<std::string>;
};

/// A retriever: search(text, k) -> retrieval::ranking (ids index the corpus).
template <class R>
concept text_retriever = requires(const R& r, std::string_view q, index_t k) {
    { r.search(q, k) } -> std::convertible_to<retrieval::ranking>;
};

/// A log: write(exchange).
template <class L>
concept exchange_sink = requires(L& l, exchange e) { l.write(std::move(e)); };

/// Logs nothing.
struct no_log {
    bool write(exchange) noexcept { return true; }
};

namespace detail {

using rag_clock = std::chrono::steady_clock;
inline double ms_between(rag_clock::time_point a, rag_clock::time_point b) {
    return std::chrono::duration<double, std::milli>(b - a).count();
}

/// Streams token ids as text (whole UTF-8 characters only).
template <class Tokenizer>
class text_stream {
public:
    explicit text_stream(const Tokenizer& tok, const text_callback& cb) : tok_(tok), cb_(cb) {}
    void push(std::int32_t id) { emit(utf8_.push(tok_.token_bytes(id))); }
    void finish() { emit(utf8_.finish()); }
    std::string& text() noexcept { return text_; }

private:
    void emit(const std::string& piece) {
        if (piece.empty()) return;
        text_ += piece;
        if (cb_) cb_(piece);
    }
    const Tokenizer& tok_;
    const text_callback& cb_;
    text::utf8::stream_decoder utf8_;
    std::string text_;
};

}  // namespace detail

/// A generator on the serving engine (kite/serve/engine.hpp): every ask() is one request,
/// batched with whatever else the engine runs, its prompt prefix shared through the prefix cache.
template <class Engine, class Tokenizer>
class engine_generator {
public:
    engine_generator(Engine& engine, const Tokenizer& tok, std::string model_id)
        : eng_(&engine), tok_(&tok), id_(std::move(model_id)) {}

    generation generate(std::span<const std::int32_t> prompt, const generate_params& p, const text_callback& on_text) {
        serve::request r;
        r.prompt.assign(prompt.begin(), prompt.end());
        r.sampling = p.sampling;
        r.max_tokens = p.max_tokens;
        r.seed = p.seed;
        const auto t0 = detail::rag_clock::now();
        auto h = eng_->submit(std::move(r));
        detail::text_stream<Tokenizer> out(*tok_, on_text);
        generation g;
        bool first = true;
        while (auto ev = h.next()) {
            if (first) g.ttft_ms = detail::ms_between(t0, detail::rag_clock::now());
            first = false;
            out.push(ev->token);
        }
        out.finish();
        const serve::result res = h.wait();
        g.generation_ms = detail::ms_between(t0, detail::rag_clock::now());
        KITE_REQUIRE(!res.outputs.empty() && res.outputs[0].finish != serve::finish_reason::error, error,
                     "engine_generator: the engine failed the request: ", res.error);
        g.text = std::move(out.text());
        g.prompt_tokens = static_cast<std::size_t>(res.prompt_tokens);
        g.cached_prompt_tokens = static_cast<std::size_t>(res.cached_prompt_tokens);
        g.generated_tokens = res.outputs[0].tokens.size();
        g.finish = serve::to_string(res.outputs[0].finish);
        return g;
    }
    const Tokenizer& tokenizer() const noexcept { return *tok_; }
    const std::string& model_id() const noexcept { return id_; }

private:
    Engine* eng_;
    const Tokenizer* tok_;
    std::string id_;
};

/// A generator on a decoder alone (kite::model::generate; one request at a time).
template <class Model, class Tokenizer>
class decoder_generator {
public:
    decoder_generator(Model& model, const Tokenizer& tok, std::string model_id)
        : model_(&model), tok_(&tok), id_(std::move(model_id)) {}

    generation generate(std::span<const std::int32_t> prompt, const generate_params& p, const text_callback& on_text) {
        model::generation_options opt{.max_new_tokens = p.max_tokens, .sampling = p.sampling, .seed = p.seed};
        const auto t0 = detail::rag_clock::now();
        detail::text_stream<Tokenizer> out(*tok_, on_text);
        generation g;
        bool first = true;
        const auto r = model::generate(*model_, prompt, opt, [&](std::int32_t id) {
            if (first) g.ttft_ms = detail::ms_between(t0, detail::rag_clock::now());
            first = false;
            out.push(id);
        });
        out.finish();
        g.generation_ms = detail::ms_between(t0, detail::rag_clock::now());
        g.text = std::move(out.text());
        g.prompt_tokens = static_cast<std::size_t>(r.prompt_tokens);
        g.generated_tokens = r.tokens.size();
        g.finish = r.reason == model::stop_reason::stop_token ? "stop" : model::to_string(r.reason);
        return g;
    }
    const Tokenizer& tokenizer() const noexcept { return *tok_; }
    const std::string& model_id() const noexcept { return id_; }

private:
    Model* model_;
    const Tokenizer* tok_;
    std::string id_;
};

/// rag<> options.
struct rag_options {
    index_t retrieve_k = 8;                   ///< passages retrieved (the prompt keeps what fits)
    prompt_options prompt{};
    generate_params generation{};
    index_t max_retries = 1;                  ///< output retries before the answer is refused
    float retry_temperature = 0.7f;
    std::string refusal = "I cannot answer that.";
    std::string scope_tag{};                  ///< part of the cache scope (e.g. the corpus name)
};

/// Per-stage timings of one ask(), in milliseconds.
struct rag_timings {
    double validation = 0, cache = 0, retrieval = 0, prompt = 0, ttft = 0, generation = 0, total = 0;
};

/// The answer to one question.
struct rag_answer {
    std::string request_id;
    std::string question;                     ///< as validated (masked when a rule masked it)
    std::string answer;
    std::vector<std::string> citations;       ///< document ids cited as [n] in the answer
    std::vector<std::string> context_ids;     ///< document ids of the passages in the prompt
    std::vector<retrieved_passage> retrieved; ///< what the retriever returned, with scores
    cache_outcome cache = cache_outcome::miss;
    double cache_similarity = 0;              ///< for semantic hits
    std::vector<std::pair<stage, decision>> validation;
    rag_timings timings;
    std::size_t prompt_tokens = 0, generated_tokens = 0, attempts = 0;
    std::string finish;                       ///< generation's finish reason ("cached", "refused" otherwise)
    bool refused = false;
};

/// The numbers n of every [n] / [n, m] marker in `text` that are in 1..count, in order of first
/// appearance, without repeats.
inline std::vector<std::size_t> cited_numbers(std::string_view text, std::size_t count) {
    std::vector<std::size_t> out;
    for (std::size_t i = 0; i < text.size(); ++i) {
        if (text[i] != '[') continue;
        std::size_t j = i + 1;
        std::vector<std::size_t> nums;
        bool ok = false;
        for (;;) {
            std::size_t v = 0, digits = 0;
            while (j < text.size() && text[j] >= '0' && text[j] <= '9' && digits < 6) {
                v = v * 10 + static_cast<std::size_t>(text[j] - '0');
                ++j;
                ++digits;
            }
            if (digits == 0) break;
            nums.push_back(v);
            while (j < text.size() && text[j] == ' ') ++j;
            if (j < text.size() && text[j] == ']') {
                ok = true;
                break;
            }
            if (j < text.size() && text[j] == ',') {
                ++j;
                while (j < text.size() && text[j] == ' ') ++j;
                continue;
            }
            break;
        }
        if (!ok) continue;
        for (std::size_t v : nums)
            if (v >= 1 && v <= count && std::find(out.begin(), out.end(), v) == out.end()) out.push_back(v);
    }
    return out;
}

/// The answer as JSON: request_id, question, answer, citations, context_ids, retrieved
/// ([{id, score}]), cache, cache_similarity, validation ([{stage, verdict, findings}]),
/// timings_ms {validation, cache, retrieval, prompt, ttft, generation, total}, prompt_tokens,
/// generated_tokens, attempts, finish.
inline nlohmann::json to_json(const rag_answer& a) {
    nlohmann::json v = nlohmann::json::array();
    for (const auto& [s, d] : a.validation) {
        nlohmann::json j = to_json(d);
        j["stage"] = to_string(s);
        v.push_back(std::move(j));
    }
    nlohmann::json r = nlohmann::json::array();
    for (const auto& p : a.retrieved) r.push_back({{"id", p.doc_id}, {"score", p.score}});
    return {{"request_id", a.request_id},
            {"question", a.question},
            {"answer", a.answer},
            {"citations", a.citations},
            {"context_ids", a.context_ids},
            {"retrieved", std::move(r)},
            {"cache", to_string(a.cache)},
            {"cache_similarity", a.cache_similarity},
            {"validation", std::move(v)},
            {"timings_ms",
             {{"validation", a.timings.validation},
              {"cache", a.timings.cache},
              {"retrieval", a.timings.retrieval},
              {"prompt", a.timings.prompt},
              {"ttft", a.timings.ttft},
              {"generation", a.timings.generation},
              {"total", a.timings.total}}},
            {"prompt_tokens", a.prompt_tokens},
            {"generated_tokens", a.generated_tokens},
            {"attempts", a.attempts},
            {"finish", a.finish}};
}

/// RAG over a corpus (see the file comment). Template arguments may be references to share
/// components (const pipeline&, exact_cache&, exchange_log&).
template <class Retriever, class Generator, class Cache = no_cache, class Validator = no_validation, class Log = no_log>
    requires text_retriever<std::remove_cvref_t<Retriever>> && generator<std::remove_cvref_t<Generator>> &&
             answer_cache<std::remove_cvref_t<Cache>> && exchange_sink<std::remove_cvref_t<Log>>
class rag {
public:
    using tokenizer_type = std::remove_cvref_t<decltype(std::declval<std::remove_cvref_t<Generator>&>().tokenizer())>;

    rag(Retriever retriever, Generator gen, std::span<const retrieval::data::document> corpus, Cache cache = {},
        Validator validator = {}, Log log = {}, rag_options opt = {})
        : retriever_(std::forward<Retriever>(retriever)),
          gen_(std::forward<Generator>(gen)),
          corpus_(corpus),
          cache_(std::forward<Cache>(cache)),
          validator_(std::forward<Validator>(validator)),
          log_(std::forward<Log>(log)),
          opt_(std::move(opt)),
          prompt_(gen_.tokenizer(), opt_.prompt) {
        KITE_REQUIRE(opt_.retrieve_k >= 1, invalid_argument, "rag_options::retrieve_k = 0; expected >= 1");
        KITE_REQUIRE(opt_.generation.max_tokens >= 1, invalid_argument,
                     "rag_options::generation.max_tokens = 0; expected >= 1");
        nlohmann::json params = {{"temperature", opt_.generation.sampling.temperature},
                                 {"top_k", opt_.generation.sampling.top_k},
                                 {"top_p", opt_.generation.sampling.top_p},
                                 {"max_tokens", opt_.generation.max_tokens},
                                 {"seed", opt_.generation.seed},
                                 {"retrieve_k", opt_.retrieve_k},
                                 {"max_prompt_tokens", opt_.prompt.max_prompt_tokens},
                                 {"scope", opt_.scope_tag}};
        params_ = params;
        scope_ = cache_scope(std::string(gen_.model_id()), params);
    }

    /// Answers `question` (see the file comment); `on_text` receives the generation as it comes.
    rag_answer ask(std::string_view question, const text_callback& on_text = {}) {
        const auto t0 = detail::rag_clock::now();
        rag_answer a;
        a.request_id = detail::random_request_id();
        exchange ex;
        ex.request_id = a.request_id;
        ex.model = std::string(gen_.model_id());
        ex.params = params_;
        auto finish = [&] {
            a.timings.total = detail::ms_between(t0, detail::rag_clock::now());
            ex.question = a.question;
            ex.answer = a.answer;
            ex.cache = to_string(a.cache);
            ex.retrieved = a.retrieved;
            nlohmann::json j = to_json(a);
            ex.validation = std::move(j["validation"]);
            ex.timings_ms = std::move(j["timings_ms"]);
            log_.write(std::move(ex));
            return std::move(a);
        };

        // 1. The question.
        auto tv = detail::rag_clock::now();
        decision dq = validator_.check(stage::question, question);
        a.timings.validation += detail::ms_between(tv, detail::rag_clock::now());
        a.question = dq.text;  // masked where a rule masked (also what is logged when refused)
        const bool q_ok = dq.usable();
        if (dq.verdict != action::pass) a.validation.emplace_back(stage::question, std::move(dq));
        if (!q_ok) {
            a.answer = opt_.refusal;
            a.refused = true;
            a.finish = "refused";
            return finish();
        }

        // 2. The cache.
        const auto tc = detail::rag_clock::now();
        std::optional<cache_hit> hit = cache_.lookup(a.question, scope_);
        a.timings.cache = detail::ms_between(tc, detail::rag_clock::now());
        if (hit) {
            a.answer = std::move(hit->response);
            a.cache = hit->outcome;
            a.cache_similarity = hit->similarity;
            const auto& m = hit->metadata;
            if (m.contains("citations")) a.citations = m["citations"].template get<std::vector<std::string>>();
            if (m.contains("context_ids")) a.context_ids = m["context_ids"].template get<std::vector<std::string>>();
            a.finish = "cached";
            if (on_text) on_text(a.answer);
            return finish();
        }

        try {
            // 3. Retrieval and the passages' validation.
            const auto tr = detail::rag_clock::now();
            const retrieval::ranking ranked = retriever_.search(a.question, opt_.retrieve_k);
            a.timings.retrieval = detail::ms_between(tr, detail::rag_clock::now());
            std::vector<passage> passages;
            for (const auto& hitr : ranked) {
                KITE_REQUIRE(hitr.id >= 0 && static_cast<std::size_t>(hitr.id) < corpus_.size(), invalid_argument,
                             "rag: the retriever returned id ", hitr.id, "; the corpus has ", corpus_.size(), " documents");
                const auto& d = corpus_[static_cast<std::size_t>(hitr.id)];
                a.retrieved.push_back({d.id, hitr.score});
                tv = detail::rag_clock::now();
                decision dp = validator_.check(stage::passage, d.text);
                a.timings.validation += detail::ms_between(tv, detail::rag_clock::now());
                const bool ok = dp.usable();
                std::string body = ok ? dp.text : std::string();
                if (dp.verdict != action::pass) a.validation.emplace_back(stage::passage, std::move(dp));
                if (ok) passages.push_back({d.id, d.title, std::move(body), hitr.score});
            }

            // 4. The prompt.
            const auto tp = detail::rag_clock::now();
            assembled_prompt prompt = prompt_.build(a.question, passages);
            a.timings.prompt = detail::ms_between(tp, detail::rag_clock::now());
            a.context_ids = prompt.citation_ids;
            a.prompt_tokens = prompt.tokens.size();
            ex.prompt = prompt.user_message;
            tv = detail::rag_clock::now();
            decision dpr = validator_.check(stage::prompt, prompt.user_message);
            a.timings.validation += detail::ms_between(tv, detail::rag_clock::now());
            const bool p_ok = dpr.usable();
            if (dpr.verdict != action::pass) {
                if (dpr.verdict == action::mask) {
                    prompt.tokens = prompt_.render_user(dpr.text);  // the masked message
                    ex.prompt = dpr.text;
                }
                a.validation.emplace_back(stage::prompt, std::move(dpr));
            }
            if (!p_ok) {
                a.answer = opt_.refusal;
                a.refused = true;
                a.finish = "refused";
                return finish();
            }

            // 5. Generation and the output's validation.
            generate_params gp = opt_.generation;
            for (;;) {
                ++a.attempts;
                generation g = gen_.generate(prompt.tokens, gp, on_text);
                if (a.attempts == 1) {
                    a.timings.ttft = g.ttft_ms;
                    a.timings.generation = g.generation_ms;
                } else {
                    a.timings.generation += g.generation_ms;
                }
                a.generated_tokens += g.generated_tokens;
                a.finish = g.finish;
                tv = detail::rag_clock::now();
                decision dout = validator_.check(stage::output, g.text);
                a.timings.validation += detail::ms_between(tv, detail::rag_clock::now());
                const action verdict = dout.verdict;
                const std::string checked = dout.text;
                if (verdict != action::pass) a.validation.emplace_back(stage::output, std::move(dout));
                if (verdict == action::retry && a.attempts <= static_cast<std::size_t>(opt_.max_retries)) {
                    gp.sampling.temperature = std::max(gp.sampling.temperature, opt_.retry_temperature);
                    gp.seed += 1;
                    continue;
                }
                if (verdict <= action::mask) {
                    a.answer = checked;
                } else {
                    a.answer = opt_.refusal;
                    a.refused = true;
                }
                break;
            }
            for (std::size_t n : cited_numbers(a.answer, a.context_ids.size())) a.citations.push_back(a.context_ids[n - 1]);

            // 6. Cache a usable, complete answer.
            if (!a.refused && (a.finish == "stop" || a.finish == "length")) {
                cache_.store(a.question, scope_, a.answer, {{"citations", a.citations}, {"context_ids", a.context_ids}});
            }
            return finish();
        } catch (const std::exception& e) {
            // The exchange is logged with its error, then the caller gets the exception.
            ex.error = e.what();
            a.finish = "error";
            finish();
            throw;
        }
    }

    const std::string& cache_scope_string() const noexcept { return scope_; }
    const rag_options& options() const noexcept { return opt_; }
    const prompt_builder<tokenizer_type>& prompts() const noexcept { return prompt_; }

private:
    Retriever retriever_;
    Generator gen_;
    std::span<const retrieval::data::document> corpus_;
    Cache cache_;
    Validator validator_;
    Log log_;
    rag_options opt_;
    prompt_builder<tokenizer_type> prompt_;
    nlohmann::json params_;
    std::string scope_;
};

}  // namespace kite::app
