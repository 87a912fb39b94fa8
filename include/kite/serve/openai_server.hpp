#pragma once
/// @file kite/serve/openai_server.hpp
/// openai_server<Engine, Tokenizer>: kite's serving engine behind OpenAI's HTTP API, on
/// cpp-httplib (link kite::http). The program kite-serve (examples/kite_serve.cpp) is this
/// class plus a command line; embed it in your own program the same way:
///
///   kite::serve::engine<model_t> eng(model, {.kv_tokens = 16384, .detokenize = ...});
///   eng.start();
///   kite::serve::openai_server srv(eng, tokenizer, {.model_id = "smollm2"});
///   const int port = srv.bind("127.0.0.1", 8080);      // 0: any free port
///   std::thread t([&] { srv.run(); });                  // serves until stop()
///   ...
///   srv.stop(std::chrono::seconds(10));                 // drain, then close
///
/// Endpoints: POST /v1/chat/completions, POST /v1/completions (both also as server-sent
/// events with "stream": true, ending with "data: [DONE]"), POST /v1/embeddings (when an
/// embedding_backend is given), GET /v1/models, GET /health, GET /metrics (Prometheus).
///
/// Errors are OpenAI error objects: 400 for bad JSON, wrong types, unknown fields, values out
/// of range or a prompt longer than the context (param names the field); 401 for a missing or
/// wrong API key (compared in constant time); 404 for an unknown URL; 413 for a body over
/// server_options::max_body_bytes; 429 with Retry-After when the engine's queue is full; 503
/// with Retry-After while draining. A streaming client that goes away cancels its request (its
/// KV blocks return to the pool within a step); a client that stops reading is dropped after
/// write_timeout, and the engine never waits for any client (tokens are buffered per request).
/// Each finished call writes one JSON line to the log (id, endpoint, status, tokens, TTFT,
/// total time; the prompt only with log_prompts).
///
/// Tokenizer needs apply_chat_template(messages, true), encode(text, true, false),
/// token_bytes(id) and is_special(id) (kite::model::gguf_tokenizer has them). The engine must
/// have engine_options::detokenize set to the tokenizer's decode(ids, true) for stop strings.

#include <atomic>
#include <chrono>
#include <cstdint>
#include <ctime>
#include <functional>
#include <iostream>
#include <map>
#include <memory>
#include <mutex>
#include <random>
#include <span>
#include <sstream>
#include <string>
#include <string_view>
#include <thread>
#include <utility>
#include <vector>

#include "kite/serve/engine.hpp"
#include "kite/serve/openai.hpp"
#include "kite/text/utf8.hpp"

// After Eigen (through kite's headers): httplib.h includes <resolv.h>, whose `_res` macro
// breaks Eigen's headers when they come later. Include kite (or Eigen) before httplib.h.
#include <httplib.h>

namespace kite::serve {

/// Options of an openai_server.
struct server_options {
    std::string model_id = "kite";            ///< the id /v1/models lists and responses carry
    std::string api_key{};                    ///< empty: no authentication
    std::size_t max_body_bytes = 1 << 20;     ///< larger request bodies: 413
    std::chrono::seconds read_timeout{10};    ///< a request must arrive within this
    std::chrono::seconds write_timeout{10};   ///< a client must accept data within this
    std::chrono::seconds keep_alive{5};       ///< idle keep-alive connections are closed after this
    std::size_t http_threads = 0;             ///< connection threads (0: queue + running + 8)
    openai::limits limits{};
    bool speculative = true;                  ///< let the engine's drafter work on every request
    index_t retry_after_s = 1;                ///< Retry-After of a 429 / 503
    std::chrono::milliseconds heartbeat{500}; ///< SSE comment while a stream waits (finds dead clients)
    std::ostream* log = &std::cerr;           ///< one JSON line per call (nullptr: none)
    bool log_prompts = false;                 ///< include the prompt text in the log line
};

/// An embedding model for /v1/embeddings.
struct embedding_backend {
    std::string id;
    index_t dim = 0;
    std::function<std::vector<std::vector<float>>(std::span<const std::string>)> encode{};
    std::function<index_t(std::string_view)> count_tokens{};
    explicit operator bool() const noexcept { return static_cast<bool>(encode); }
};

/// The HTTP server; see the file comment.
template <class Engine, class Tokenizer>
class openai_server {
public:
    openai_server(Engine& eng, const Tokenizer& tok, server_options opt = {}, embedding_backend emb = {})
        : eng_(eng), tok_(tok), opt_(std::move(opt)), emb_(std::move(emb)), rng_(std::random_device{}()),
          created_(static_cast<std::int64_t>(std::time(nullptr))) {
        const std::size_t threads = opt_.http_threads
                                        ? opt_.http_threads
                                        : static_cast<std::size_t>(eng_.options().max_queue) + max_running() + 8;
        svr_.new_task_queue = [threads] { return new httplib::ThreadPool(threads); };
        svr_.set_payload_max_length(opt_.max_body_bytes);
        svr_.set_read_timeout(opt_.read_timeout);
        svr_.set_write_timeout(opt_.write_timeout);
        svr_.set_keep_alive_timeout(static_cast<time_t>(opt_.keep_alive.count()));
        svr_.set_pre_routing_handler([this](const httplib::Request& req, httplib::Response& res) {
            if (req.path == "/health" || opt_.api_key.empty() || authorized(req)) return httplib::Server::HandlerResponse::Unhandled;
            count(401);
            send_error(res, openai::api_error(401, "Incorrect API key provided. Pass it as 'Authorization: Bearer <key>'.", {},
                                              "invalid_request_error", "invalid_api_key"));
            return httplib::Server::HandlerResponse::Handled;
        });
        svr_.set_error_handler(httplib::Server::HandlerWithResponse([this](const httplib::Request& req, httplib::Response& res) {
            if (!res.body.empty()) return httplib::Server::HandlerResponse::Unhandled;
            count(res.status);
            if (res.status == 404) {
                send_error(res, openai::api_error(404, "Unknown request URL: " + req.method + " " + req.path + ".", {},
                                                  "invalid_request_error", "unknown_url"));
            } else if (res.status == 413) {
                send_error(res, openai::api_error(413, "The request body is larger than " + std::to_string(opt_.max_body_bytes) +
                                                           " bytes.", {}, "invalid_request_error", "request_too_large"));
            } else {
                send_error(res, openai::api_error(res.status, "The request could not be read.", {}, "invalid_request_error"));
            }
            return httplib::Server::HandlerResponse::Handled;
        }));
        svr_.Get("/health", [this](const httplib::Request&, httplib::Response& res) {
            if (draining_) {
                res.status = 503;
                res.set_header("Retry-After", std::to_string(opt_.retry_after_s));
                res.set_content(R"({"status":"draining"})", "application/json");
            } else {
                res.set_content(R"({"status":"ok"})", "application/json");
            }
        });
        svr_.Get("/metrics", [this](const httplib::Request&, httplib::Response& res) {
            res.set_content(metrics_text(), "text/plain; version=0.0.4");
        });
        svr_.Get("/v1/models", [this](const httplib::Request&, httplib::Response& res) {
            openai::json data = openai::json::array();
            data.push_back({{"id", opt_.model_id}, {"object", "model"}, {"created", created_}, {"owned_by", "kite"}});
            if (emb_) data.push_back({{"id", emb_.id}, {"object", "model"}, {"created", created_}, {"owned_by", "kite"}});
            res.set_content(openai::json{{"object", "list"}, {"data", data}}.dump(), "application/json");
            count(200);
        });
        svr_.Post("/v1/chat/completions", [this](const httplib::Request& req, httplib::Response& res) { generate(req, res, true); });
        svr_.Post("/v1/completions", [this](const httplib::Request& req, httplib::Response& res) { generate(req, res, false); });
        svr_.Post("/v1/embeddings", [this](const httplib::Request& req, httplib::Response& res) { embeddings(req, res); });
    }

    openai_server(const openai_server&) = delete;
    openai_server& operator=(const openai_server&) = delete;
    ~openai_server() { svr_.stop(); }

    /// Binds the listening socket; port 0 picks a free one. Returns the port; kite::io_error
    /// when the address cannot be bound.
    int bind(const std::string& host, int port) {
        const int p = port == 0 ? svr_.bind_to_any_port(host) : (svr_.bind_to_port(host, port) ? port : -1);
        if (p < 0) ::kite::detail::raise<io_error>("openai_server: cannot listen on ", host, ":", port);
        return p;
    }
    /// Serves until stop(); call bind() first.
    void run() { svr_.listen_after_bind(); }

    /// Drains and closes: new calls get 503; calls in flight may finish until `drain` has
    /// passed, then they are cancelled; then the listening socket closes and run() returns.
    void stop(std::chrono::milliseconds drain) {
        draining_ = true;
        const auto deadline = std::chrono::steady_clock::now() + drain;
        while (in_flight_.load() > 0 && std::chrono::steady_clock::now() < deadline)
            std::this_thread::sleep_for(std::chrono::milliseconds(10));
        if (in_flight_.load() > 0) {
            {
                std::lock_guard lk(active_m_);
                for (auto& [id, h] : active_) h.cancel();
            }
            const auto hard = std::chrono::steady_clock::now() + std::chrono::seconds(5);
            while (in_flight_.load() > 0 && std::chrono::steady_clock::now() < hard)
                std::this_thread::sleep_for(std::chrono::milliseconds(10));
        }
        svr_.stop();
    }
    bool draining() const noexcept { return draining_; }
    /// Generation calls being answered now.
    index_t in_flight() const noexcept { return static_cast<index_t>(in_flight_.load()); }

    /// The Prometheus text of GET /metrics.
    std::string metrics_text() const {
        const engine_stats st = eng_.stats();
        std::ostringstream os;
        using openai::metric;
        metric(os, "kite_queue_depth", "gauge", "Requests accepted and waiting to run.", static_cast<double>(st.queue_depth));
        metric(os, "kite_running_sequences", "gauge", "Requests being generated.", static_cast<double>(st.running));
        metric(os, "kite_kv_blocks_total", "gauge", "KV cache blocks in the pool.", static_cast<double>(st.kv_blocks_total));
        metric(os, "kite_kv_blocks_used", "gauge", "KV cache blocks held by sequences or the prefix cache.", static_cast<double>(st.kv_blocks_used));
        metric(os, "kite_kv_blocks_free", "gauge", "KV cache blocks free.", static_cast<double>(st.kv_blocks_free));
        metric(os, "kite_kv_blocks_cached", "gauge", "KV cache blocks held by the prefix cache.", static_cast<double>(st.kv_blocks_cached));
        metric(os, "kite_prefix_cache_hit_rate", "gauge", "Prompt tokens served from the prefix cache / prompt tokens looked up.", st.prefix_hit_rate());
        metric(os, "kite_prefix_cache_hit_tokens_total", "counter", "Prompt tokens served from the prefix cache.", static_cast<double>(st.prefix_hit_tokens));
        metric(os, "kite_prompt_tokens_computed_total", "counter", "Prompt tokens computed.", static_cast<double>(st.prompt_tokens_computed));
        metric(os, "kite_generation_tokens_total", "counter", "Tokens generated.", static_cast<double>(st.generated_tokens));
        metric(os, "kite_tokens_per_second", "gauge", "Tokens generated per second of busy engine time.", st.tokens_per_second());
        metric(os, "kite_decode_tokens_per_second", "gauge", "Tokens per second in decode-only steps.", st.decode_tokens_per_second());
        metric(os, "kite_longest_step_seconds", "gauge", "The slowest engine step so far.", st.longest_step_seconds);
        metric(os, "kite_preemptions_total", "counter", "Sequences preempted for KV blocks.", static_cast<double>(st.preemptions));
        metric(os, "kite_speculative_acceptance_rate", "gauge", "Accepted / drafted tokens.", st.acceptance_rate());
        metric(os, "kite_requests_rejected_total", "counter", "Calls refused with 429 (queue full) or 503 (draining).", static_cast<double>(rejected_.load()));
        metric(os, "kite_requests_cancelled_total", "counter", "Calls cancelled because the client went away.", static_cast<double>(client_gone_.load()));
        metric(os, "kite_requests_in_flight", "gauge", "Generation calls being answered.", static_cast<double>(in_flight_.load()));
        {
            std::lock_guard lk(status_m_);
            os << "# HELP kite_http_responses_total Responses by status code.\n# TYPE kite_http_responses_total counter\n";
            for (const auto& [code, n] : status_counts_) os << "kite_http_responses_total{code=\"" << code << "\"} " << n << '\n';
        }
        ttft_.render(os, "kite_time_to_first_token_seconds", "Time from submission to the first token.");
        tpot_.render(os, "kite_time_per_output_token_seconds", "Time per output token after the first.");
        e2e_.render(os, "kite_request_duration_seconds", "Time from submission to the last token.");
        return os.str();
    }

private:
    using clock = std::chrono::steady_clock;

    index_t max_running() const {
        if constexpr (requires { eng_.scheduler().max_running; }) return eng_.scheduler().max_running;
        else return 64;
    }

    bool authorized(const httplib::Request& req) const {
        const std::string h = req.get_header_value("Authorization");
        const std::string_view prefix = "Bearer ";
        const std::string_view got = h.size() >= prefix.size() && std::string_view(h).substr(0, prefix.size()) == prefix
                                         ? std::string_view(h).substr(prefix.size())
                                         : std::string_view{};
        // Constant time in the key's content: every byte is compared, the length difference folded in.
        const std::string& want = opt_.api_key;
        unsigned diff = got.size() == want.size() ? 0u : 1u;
        for (std::size_t i = 0; i < want.size(); ++i)
            diff |= static_cast<unsigned char>(want[i]) ^ static_cast<unsigned char>(i < got.size() ? got[i] : 0);
        return diff == 0;
    }

    void count(int status) {
        std::lock_guard lk(status_m_);
        ++status_counts_[status];
    }

    void send_error(httplib::Response& res, const openai::api_error& e) {
        res.status = e.status;
        if (e.status == 429 || e.status == 503) res.set_header("Retry-After", std::to_string(opt_.retry_after_s));
        res.set_content(openai::error_body(e).dump(), "application/json");
    }

    std::string new_id(const char* prefix) {
        std::lock_guard lk(rng_m_);
        static constexpr char hex[] = "0123456789abcdef";
        std::string id = prefix;
        for (int i = 0; i < 24; ++i) id += hex[rng_() & 15];
        return id;
    }

    std::uint64_t fresh_seed() {
        std::lock_guard lk(rng_m_);
        return rng_();
    }

    void log_line(openai::json line) {
        if (!opt_.log) return;
        const auto now = std::chrono::system_clock::now();
        line["ts"] = std::chrono::duration<double>(now.time_since_epoch()).count();
        const std::string s = line.dump(-1, ' ', false, openai::json::error_handler_t::replace);
        std::lock_guard lk(log_m_);
        *opt_.log << s << '\n' << std::flush;
    }

    // One call's bookkeeping: in-flight count, the handles (for a forced drain), the log line.
    struct call {
        openai_server* srv;
        std::string id, endpoint;
        clock::time_point t0 = clock::now();
        std::vector<handle> handles;
        std::vector<std::uint64_t> keys;
        index_t prompt_tokens = 0, completion_tokens = 0;
        double ttft_s = -1;
        int status = 200;
        std::string finish, prompt_text;
        std::vector<std::string> stop;
        bool stream = false, logged = false;

        call(openai_server* s, std::string id_, std::string ep) : srv(s), id(std::move(id_)), endpoint(std::move(ep)) {
            ++srv->in_flight_;
        }
        call(const call&) = delete;
        call& operator=(const call&) = delete;
        void track(handle h) {
            const std::uint64_t key = srv->next_key_++;
            {
                std::lock_guard lk(srv->active_m_);
                srv->active_.emplace(key, h);
            }
            keys.push_back(key);
            handles.push_back(std::move(h));
        }
        void cancel_all() {
            for (auto& h : handles) h.cancel();
        }
        void done() {
            if (logged) return;
            logged = true;
            srv->count(status);
            openai::json line = {{"id", id}, {"endpoint", endpoint}, {"status", status}, {"stream", stream},
                                 {"prompt_tokens", prompt_tokens}, {"completion_tokens", completion_tokens},
                                 {"ttft_ms", ttft_s >= 0 ? openai::json(ttft_s * 1e3) : openai::json(nullptr)},
                                 {"total_ms", std::chrono::duration<double, std::milli>(clock::now() - t0).count()}};
            if (!finish.empty()) line["finish"] = finish;
            if (srv->opt_.log_prompts && !prompt_text.empty()) line["prompt"] = prompt_text;
            srv->log_line(std::move(line));
        }
        ~call() {
            for (auto& h : handles)
                if (!h.done()) h.cancel();  // nobody will read it any more
            {
                std::lock_guard lk(srv->active_m_);
                for (const auto k : keys) srv->active_.erase(k);
            }
            done();
            --srv->in_flight_;
        }
    };

    // What one prompt of a call becomes: an engine request (before submission).
    struct prepared {
        request req;
        index_t prompt_tokens = 0;
    };

    prepared prepare(const openai::generation_fields& g, std::vector<std::int32_t> ids, const char* param) {
        const index_t ctx = eng_.context();
        if (ctx != 0 && ids.size() >= ctx)
            throw openai::bad_request(param, "This model's maximum context length is " + std::to_string(ctx) +
                                                 " tokens. However, your " + param + " resulted in " + std::to_string(ids.size()) +
                                                 " tokens (at least one must remain for the answer).",
                                      "context_length_exceeded");
        prepared p;
        p.prompt_tokens = ids.size();
        const index_t room = ctx ? ctx - ids.size() : static_cast<index_t>(g.max_tokens.value_or(4096));
        p.req.prompt = std::move(ids);
        p.req.sampling = g.sampling;
        p.req.max_tokens = std::min(room, g.max_tokens.value_or(room));
        p.req.n = g.n;
        p.req.seed = g.seed ? *g.seed : fresh_seed();
        p.req.stop = g.stop;
        p.req.ignore_eos = g.ignore_eos;
        p.req.speculate = opt_.speculative;
        return p;
    }

    void generate(const httplib::Request& req, httplib::Response& res, bool chat) {
        auto c = std::make_shared<call>(this, new_id(chat ? "chatcmpl-" : "cmpl-"), chat ? "/v1/chat/completions" : "/v1/completions");
        try {
            if (draining_) {
                ++rejected_;
                throw openai::api_error(503, "The server is shutting down; retry on another replica.", {}, "server_error", "unavailable");
            }
            const openai::json body = openai::parse_body(req.body);
            openai::generation_fields g;
            std::vector<prepared> preps;
            if (chat) {
                openai::chat_call cc = openai::parse_chat(body, opt_.limits);
                std::vector<std::int32_t> ids;
                try {
                    ids = tok_.apply_chat_template(cc.messages, true);
                } catch (const error& e) {
                    throw openai::bad_request("messages", std::string("The messages cannot be rendered by the model's chat template: ") + e.what());
                }
                if (opt_.log_prompts)
                    for (const auto& m : cc.messages) c->prompt_text += m.role + ": " + m.content + "\n";
                g = cc;
                preps.push_back(prepare(g, std::move(ids), "messages"));
            } else {
                openai::completion_call cc = openai::parse_completion(body, opt_.limits);
                g = cc;
                for (std::size_t i = 0; i < cc.prompts.size(); ++i) {
                    auto& pr = cc.prompts[i];
                    std::vector<std::int32_t> ids = pr.ids.empty() ? tok_.encode(pr.text, true, false) : pr.ids;
                    if (ids.empty()) throw openai::bad_request("prompt", "The prompt is empty after tokenization.");
                    if (opt_.log_prompts) c->prompt_text += pr.text;
                    preps.push_back(prepare(g, std::move(ids), cc.prompts.size() == 1 ? "prompt" : ("prompt[" + std::to_string(i) + "]").c_str()));
                }
            }
            c->stream = g.stream;
            c->stop = g.stop;
            for (auto& p : preps) {
                c->prompt_tokens += p.prompt_tokens;
                try {
                    c->track(eng_.submit(std::move(p.req)));
                } catch (const queue_full&) {
                    c->cancel_all();
                    ++rejected_;
                    throw openai::api_error(429, "The server is busy: its request queue is full. Retry after " +
                                                     std::to_string(opt_.retry_after_s) + " s.", {}, "requests", "rate_limit_exceeded");
                } catch (const invalid_argument& e) {
                    c->cancel_all();
                    throw openai::bad_request(chat ? "messages" : "prompt", e.what());
                }
            }
            if (g.stream) {
                stream(res, c, g, chat);
            } else {
                respond(res, *c, g, chat);
            }
        } catch (const openai::api_error& e) {
            c->status = e.status;
            send_error(res, e);
        } catch (const std::exception& e) {
            c->status = 500;
            send_error(res, openai::api_error(500, std::string("internal error: ") + e.what(), {}, "server_error"));
        }
    }

    void observe(call& c, const result& r) {
        if (r.outputs.empty() || r.outputs[0].finish == finish_reason::error) return;
        ttft_.observe(r.timings.ttft_s);
        if (r.outputs[0].tokens.size() > 1) tpot_.observe(r.timings.tpot_s);
        e2e_.observe(r.timings.e2e_s);
        if (c.ttft_s < 0 || r.timings.ttft_s < c.ttft_s) c.ttft_s = r.timings.ttft_s;
    }

    openai::json usage(const call& c) const {
        return {{"prompt_tokens", c.prompt_tokens}, {"completion_tokens", c.completion_tokens},
                {"total_tokens", c.prompt_tokens + c.completion_tokens}};
    }

    void respond(httplib::Response& res, call& c, const openai::generation_fields& g, bool chat) {
        openai::json choices = openai::json::array();
        std::string finish;
        for (std::size_t p = 0; p < c.handles.size(); ++p) {
            const result r = c.handles[p].wait();
            if (!r.error.empty()) throw openai::api_error(500, "generation failed: " + r.error, {}, "server_error");
            observe(c, r);
            for (std::size_t j = 0; j < r.outputs.size(); ++j) {
                const auto& o = r.outputs[j];
                if (o.finish == finish_reason::cancelled)
                    throw openai::api_error(503, "The request was cancelled: the server is shutting down.", {}, "server_error", "unavailable");
                c.completion_tokens += o.tokens.size();
                const index_t index = p * g.n + j;
                finish = openai::finish_string(o.finish);
                if (chat) {
                    choices.push_back({{"index", index}, {"message", {{"role", "assistant"}, {"content", o.text}}},
                                       {"logprobs", nullptr}, {"finish_reason", finish}});
                } else {
                    choices.push_back({{"index", index}, {"text", o.text}, {"logprobs", nullptr}, {"finish_reason", finish}});
                }
            }
        }
        c.finish = finish;
        openai::json out = {{"id", c.id}, {"object", chat ? "chat.completion" : "text_completion"},
                            {"created", static_cast<std::int64_t>(std::time(nullptr))}, {"model", opt_.model_id},
                            {"system_fingerprint", "kite-" KITE_VERSION_STRING}, {"choices", std::move(choices)},
                            {"usage", usage(c)}};
        res.set_content(out.dump(-1, ' ', false, openai::json::error_handler_t::replace), "application/json");
    }

    // One streamed choice: UTF-8 reassembly, then the stop-string filter.
    struct choice_stream {
        text::utf8::stream_decoder utf8;
        openai::stop_filter filter;
        bool finished = false;
    };

    void stream(httplib::Response& res, std::shared_ptr<call> c, const openai::generation_fields& g, bool chat) {
        res.set_header("Cache-Control", "no-cache");
        res.set_header("X-Accel-Buffering", "no");  // nginx: do not buffer the event stream
        const std::int64_t created = static_cast<std::int64_t>(std::time(nullptr));
        auto chunk = [this, c, chat, created](openai::json choices) {
            return openai::json{{"id", c->id}, {"object", chat ? "chat.completion.chunk" : "text_completion"},
                                {"created", created}, {"model", opt_.model_id},
                                {"system_fingerprint", "kite-" KITE_VERSION_STRING}, {"choices", std::move(choices)}};
        };
        auto piece = [chat](index_t index, const std::string& text, const char* finish) {
            openai::json ch = {{"index", index}, {"logprobs", nullptr}, {"finish_reason", finish ? openai::json(finish) : openai::json(nullptr)}};
            if (chat) {
                ch["delta"] = finish && text.empty() ? openai::json::object() : openai::json{{"content", text}};
            } else {
                ch["text"] = text;
            }
            return ch;
        };
        const index_t n = g.n;
        const bool include_usage = g.include_usage;
        res.set_chunked_content_provider(
            "text/event-stream",
            [this, c, n, include_usage, chat, chunk, piece](std::size_t, httplib::DataSink& sink) {
                auto last_write = clock::now();
                const auto send = [&](std::string_view s) {
                    last_write = clock::now();
                    return sink.write(s.data(), s.size());
                };
                const auto gone = [&] {
                    ++client_gone_;
                    c->status = 499;  // nginx's "client closed request"
                    c->cancel_all();
                    return false;
                };
                const std::size_t P = c->handles.size();
                std::vector<choice_stream> streams(P * static_cast<std::size_t>(n));
                for (std::size_t p = 0; p < P; ++p)
                    for (index_t j = 0; j < n; ++j) {
                        streams[p * n + j].filter = openai::stop_filter(c->stop);
                    }
                if (chat) {  // the role first, as OpenAI does
                    openai::json first = openai::json::array();
                    for (std::size_t i = 0; i < streams.size(); ++i)
                        first.push_back({{"index", i}, {"delta", {{"role", "assistant"}, {"content", ""}}}, {"logprobs", nullptr}, {"finish_reason", nullptr}});
                    if (!send(openai::sse(chunk(std::move(first))))) return gone();
                }
                std::vector<bool> open(P, true);
                std::size_t remaining = P;
                std::string last_finish;
                while (remaining > 0) {
                    for (std::size_t p = 0; p < P; ++p) {
                        if (!open[p]) continue;
                        token_event ev;
                        const auto wait = P == 1 ? opt_.heartbeat : std::chrono::milliseconds(10);
                        const auto st = c->handles[p].next_for(wait, ev);
                        if (st == handle::poll::token) {
                            if (c->ttft_s < 0) c->ttft_s = std::chrono::duration<double>(clock::now() - c->t0).count();
                            auto& cs = streams[p * n + ev.sample];
                            if (tok_.is_special(ev.token)) continue;
                            const std::string text = cs.filter.push(cs.utf8.push(tok_.token_bytes(ev.token)));
                            if (!text.empty() && !send(openai::sse(chunk(openai::json::array({piece(p * n + ev.sample, text, nullptr)})))))
                                return gone();
                        } else if (st == handle::poll::done) {
                            open[p] = false;
                            --remaining;
                            const result r = c->handles[p].wait();
                            if (!r.error.empty()) {
                                c->status = 500;
                                const openai::api_error e(500, "generation failed: " + r.error, {}, "server_error");
                                send(openai::sse(openai::error_body(e)));
                                send(openai::sse_done);
                                sink.done();
                                return true;
                            }
                            observe(*c, r);
                            openai::json fin = openai::json::array();
                            for (std::size_t j = 0; j < r.outputs.size(); ++j) {
                                const auto& o = r.outputs[j];
                                c->completion_tokens += o.tokens.size();
                                auto& cs = streams[p * n + j];
                                std::string tail = cs.filter.push(cs.utf8.finish());
                                tail += cs.filter.finish(o.text);
                                last_finish = o.finish == finish_reason::cancelled ? "cancelled" : openai::finish_string(o.finish);
                                fin.push_back(piece(p * n + j, tail, last_finish.c_str()));
                            }
                            if (!send(openai::sse(chunk(std::move(fin))))) return gone();
                        }
                    }
                    if (clock::now() - last_write >= opt_.heartbeat && !send(": keep-alive\n\n")) return gone();
                }
                c->finish = last_finish;
                if (include_usage) {
                    openai::json u = chunk(openai::json::array());
                    u["usage"] = usage(*c);
                    if (!send(openai::sse(u))) return gone();
                }
                if (!send(openai::sse_done)) return gone();
                sink.done();
                return true;
            },
            [c](bool) { c->cancel_all(); });
    }

    void embeddings(const httplib::Request& req, httplib::Response& res) {
        call c(this, new_id("emb-"), "/v1/embeddings");
        try {
            if (!emb_) throw openai::api_error(404, "This server has no embedding model (start kite-serve with --embedding-model).", {},
                                               "invalid_request_error", "model_not_found");
            if (draining_) {
                ++rejected_;
                throw openai::api_error(503, "The server is shutting down; retry on another replica.", {}, "server_error", "unavailable");
            }
            const openai::json body = openai::parse_body(req.body);
            const openai::embedding_call e = openai::parse_embedding(body, opt_.limits);
            if (body.contains("dimensions") && !body["dimensions"].is_null() && body["dimensions"].get<std::int64_t>() != static_cast<std::int64_t>(emb_.dim))
                throw openai::bad_request("dimensions", "This model's embeddings have " + std::to_string(emb_.dim) + " dimensions.",
                                          "invalid_value");
            // (Invalid UTF-8 never gets here: the JSON parser refuses it, a 400.)
            for (const auto& s : e.input) c.prompt_tokens += emb_.count_tokens ? emb_.count_tokens(s) : 0;
            const auto vecs = emb_.encode(e.input);
            openai::json data = openai::json::array();
            for (std::size_t i = 0; i < vecs.size(); ++i) {
                openai::json item = {{"object", "embedding"}, {"index", i}};
                if (e.base64) item["embedding"] = openai::base64(vecs[i].data(), vecs[i].size() * sizeof(float));
                else item["embedding"] = vecs[i];
                data.push_back(std::move(item));
            }
            openai::json out = {{"object", "list"}, {"data", std::move(data)}, {"model", emb_.id},
                                {"usage", {{"prompt_tokens", c.prompt_tokens}, {"total_tokens", c.prompt_tokens}}}};
            res.set_content(out.dump(), "application/json");
        } catch (const openai::api_error& e) {
            c.status = e.status;
            send_error(res, e);
        } catch (const std::exception& e) {
            c.status = 500;
            send_error(res, openai::api_error(500, std::string("internal error: ") + e.what(), {}, "server_error"));
        }
    }

    Engine& eng_;
    const Tokenizer& tok_;
    server_options opt_;
    embedding_backend emb_;
    httplib::Server svr_;
    std::mutex rng_m_;
    std::mt19937_64 rng_;
    std::int64_t created_;
    std::atomic<bool> draining_{false};
    std::atomic<std::int64_t> in_flight_{0};
    std::atomic<std::uint64_t> rejected_{0}, client_gone_{0}, next_key_{0};
    std::mutex active_m_;
    std::map<std::uint64_t, handle> active_;
    mutable std::mutex status_m_;
    std::map<int, std::uint64_t> status_counts_;
    std::mutex log_m_;
    openai::histogram ttft_{{0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60}};
    openai::histogram tpot_{{0.001, 0.0025, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1}};
    openai::histogram e2e_{{0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120}};
};

}  // namespace kite::serve
