// kite::serve::openai_server on loopback, over the tiny GGUF llama (committed fixture) and a
// one-letter-per-token test tokenizer: every endpoint, the SSE framing, every error status
// (400 / 401 / 404 / 413 / 429 / 503), a client that disconnects mid-stream (its request is
// cancelled and its KV blocks return to the pool), draining on stop(), the metrics text.
// Every wait is bounded.

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <future>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "kite/serve.hpp"
#include "kite/serve/openai_server.hpp"
#include "serve_test_util.hpp"

namespace ks = kite::serve;
using nlohmann::json;
using namespace std::chrono_literals;

namespace {

// Token t is the letter 'a' + t % 26; text maps back letter by letter.
struct letter_tokenizer {
    kite::index_t vocab = 320;
    std::vector<std::string> letters = [] {
        std::vector<std::string> v;
        for (int t = 0; t < 320; ++t) v.emplace_back(1, static_cast<char>('a' + t % 26));
        return v;
    }();
    std::vector<std::int32_t> encode(std::string_view s, bool, bool) const {
        std::vector<std::int32_t> ids;
        for (const char c : s) ids.push_back(static_cast<std::int32_t>(static_cast<unsigned char>(c) % 26));
        return ids;
    }
    std::vector<std::int32_t> apply_chat_template(std::span<const kite::text::chat_message> m, bool) const {
        std::string all;
        for (const auto& x : m) all += x.role + ":" + x.content + ";";
        return encode(all, true, false);
    }
    std::string_view token_bytes(std::int32_t id) const { return letters.at(static_cast<std::size_t>(id)); }
    bool is_special(std::int32_t) const { return false; }
    std::string decode(std::span<const std::int32_t> ids, bool) const {
        std::string s;
        for (const auto t : ids) s += letters.at(static_cast<std::size_t>(t));
        return s;
    }
};

// The tiny llama, slowed to about `delay` per forward pass so that a client can act while its
// request is still running.
struct slow_llama : kite::test::serve_llama {
    using kite::test::serve_llama::serve_llama;
    std::chrono::microseconds delay{0};
    template <class... A>
    decltype(auto) forward(A&&... a) const {
        if (delay.count()) std::this_thread::sleep_for(delay);
        return kite::test::serve_llama::forward(std::forward<A>(a)...);
    }
};

using engine_t = ks::engine<slow_llama, ks::continuous_batching, ks::prompt_lookup>;
using server_t = ks::openai_server<engine_t, letter_tokenizer>;

struct fixture {
    letter_tokenizer tok;
    slow_llama model{kite::test::tiny_gguf("tiny_llama")};
    std::unique_ptr<engine_t> eng;
    std::unique_ptr<server_t> srv;
    std::thread loop;
    int port = 0;

    explicit fixture(ks::server_options so = {}, kite::index_t max_queue = 64, std::chrono::microseconds delay = {},
                     bool start_engine = true, ks::embedding_backend emb = {}) {
        model.delay = delay;
        eng = std::make_unique<engine_t>(model, ks::engine_options{.kv_tokens = 1024, .max_queue = max_queue,
                                                                   .stop_tokens = {}, .detokenize = [this](std::span<const std::int32_t> ids) { return tok.decode(ids, true); },
                                                                   .max_context = 128},
                                         ks::continuous_batching{.max_running = 4});
        if (start_engine) eng->start();
        if (so.log == &std::cerr) so.log = nullptr;
        if (so.model_id == "kite") so.model_id = "tiny";
        so.heartbeat = 20ms;
        srv = std::make_unique<server_t>(*eng, tok, so, std::move(emb));
        port = srv->bind("127.0.0.1", 0);
        loop = std::thread([this] { srv->run(); });
    }
    ~fixture() {
        srv->stop(0ms);
        loop.join();
        eng->shutdown(false);
    }
    httplib::Client client() const {
        httplib::Client c("127.0.0.1", port);
        c.set_read_timeout(20, 0);
        c.set_connection_timeout(5, 0);
        return c;
    }
    httplib::Result post(const std::string& path, const std::string& body, httplib::Headers h = {}) const {
        auto c = client();
        return c.Post(path.c_str(), h, body, "application/json");
    }
};

json body_of(const httplib::Result& r) { return json::parse(r->body); }

std::string chat(const std::string& extra = "") {
    return R"({"model": "tiny", "messages": [{"role": "user", "content": "hello there"}], "temperature": 0)" + extra + "}";
}

// The SSE events of a body: every block is "data: <json>" (or a ": comment"), the last is [DONE].
std::vector<json> events(const std::string& body, bool& done_last) {
    std::vector<json> out;
    done_last = false;
    std::size_t i = 0;
    while (i < body.size()) {
        const std::size_t end = body.find("\n\n", i);
        REQUIRE(end != std::string::npos);
        const std::string block = body.substr(i, end - i);
        i = end + 2;
        if (block.rfind(':', 0) == 0) continue;  // heartbeat comment
        REQUIRE(block.rfind("data: ", 0) == 0);
        const std::string payload = block.substr(6);
        CHECK(!done_last);  // nothing after [DONE]
        if (payload == "[DONE]") {
            done_last = true;
            continue;
        }
        out.push_back(json::parse(payload));
    }
    return out;
}

// A raw connection: sends a request, reads until `until` appears, then closes the socket.
std::string raw_then_close(int port, const std::string& path, const std::string& body, const std::string& until) {
    const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
    REQUIRE(fd >= 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(static_cast<std::uint16_t>(port));
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    REQUIRE(::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0);
    timeval tv{5, 0};
    ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    const std::string req = "POST " + path + " HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: " +
                            std::to_string(body.size()) + "\r\n\r\n" + body;
    REQUIRE(::send(fd, req.data(), req.size(), MSG_NOSIGNAL) == static_cast<ssize_t>(req.size()));
    std::string got;
    char buf[4096];
    while (got.find(until) == std::string::npos) {
        const ssize_t n = ::recv(fd, buf, sizeof buf, 0);
        if (n <= 0) break;
        got.append(buf, static_cast<std::size_t>(n));
    }
    ::close(fd);
    return got;
}

template <class F>
bool eventually(F f, std::chrono::milliseconds limit = 5000ms) {
    const auto end = std::chrono::steady_clock::now() + limit;
    while (std::chrono::steady_clock::now() < end) {
        if (f()) return true;
        std::this_thread::sleep_for(5ms);
    }
    return f();
}

}  // namespace

TEST_CASE("openai_server: health, models, chat and completions answer like the engine", "[serve][http]") {
    fixture fx;
    auto h = fx.client().Get("/health");
    REQUIRE(h);
    CHECK(h->status == 200);
    CHECK(body_of(h)["status"] == "ok");
    auto m = fx.client().Get("/v1/models");
    REQUIRE(m);
    CHECK(body_of(m)["data"][0]["id"] == "tiny");

    // Greedy chat: exactly what the engine gives the same prompt alone.
    auto r = fx.post("/v1/chat/completions", chat(R"(, "max_tokens": 12, "ignore_eos": true)"));
    REQUIRE(r);
    REQUIRE(r->status == 200);
    const json j = body_of(r);
    CHECK(j["object"] == "chat.completion");
    CHECK(j["model"] == "tiny");
    CHECK(j["id"].get<std::string>().rfind("chatcmpl-", 0) == 0);
    const std::vector<kite::text::chat_message> msgs = {{"user", "hello there"}};
    ks::request direct;
    direct.prompt = fx.tok.apply_chat_template(msgs, true);
    direct.sampling.temperature = 0;
    direct.max_tokens = 12;
    direct.ignore_eos = true;
    const ks::result want = fx.eng->submit(direct).wait();
    CHECK(j["choices"][0]["message"]["content"] == fx.tok.decode(want.outputs[0].tokens, true));
    CHECK(j["choices"][0]["message"]["role"] == "assistant");
    CHECK(j["choices"][0]["finish_reason"] == "length");
    CHECK(j["usage"]["prompt_tokens"] == direct.prompt.size());
    CHECK(j["usage"]["completion_tokens"] == 12);
    CHECK(j["usage"]["total_tokens"] == direct.prompt.size() + 12);

    // n = 3 sampled choices with a seed: reproducible, indexed 0..2.
    auto s1 = fx.post("/v1/chat/completions", R"({"model": "tiny", "messages": [{"role": "user", "content": "hi"}], "n": 3, "seed": 9, "max_tokens": 6, "ignore_eos": true})");
    auto s2 = fx.post("/v1/chat/completions", R"({"model": "tiny", "messages": [{"role": "user", "content": "hi"}], "n": 3, "seed": 9, "max_tokens": 6, "ignore_eos": true})");
    REQUIRE((s1 && s2));
    const json a = body_of(s1), b = body_of(s2);
    REQUIRE(a["choices"].size() == 3);
    for (int i = 0; i < 3; ++i) {
        CHECK(a["choices"][i]["index"] == i);
        CHECK(a["choices"][i]["message"]["content"] == b["choices"][i]["message"]["content"]);
    }
    CHECK(a["usage"]["completion_tokens"] == 18);

    // Completions: text, token ids, several prompts.
    auto c = fx.post("/v1/completions", R"({"model": "tiny", "prompt": "abc", "max_tokens": 5, "temperature": 0, "ignore_eos": true})");
    REQUIRE(c);
    REQUIRE(c->status == 200);
    const json cj = body_of(c);
    CHECK(cj["object"] == "text_completion");
    CHECK(cj["choices"][0]["text"].get<std::string>().size() == 5);
    auto c2 = fx.post("/v1/completions", R"({"model": "tiny", "prompt": [19, 20, 21], "max_tokens": 5, "temperature": 0, "ignore_eos": true})");
    REQUIRE(c2);
    CHECK(body_of(c2)["choices"][0]["text"] == cj["choices"][0]["text"]);  // "abc" is ids 19, 20, 21 ('a' = 97)
    auto c3 = fx.post("/v1/completions", R"({"model": "tiny", "prompt": ["abc", "xyz"], "n": 2, "max_tokens": 4, "temperature": 0, "ignore_eos": true})");
    REQUIRE(c3);
    const json c3j = body_of(c3);
    REQUIRE(c3j["choices"].size() == 4);
    CHECK(c3j["choices"][3]["index"] == 3);
    CHECK(c3j["choices"][0]["text"] == c3j["choices"][1]["text"]);  // greedy: both samples alike
    CHECK(c3j["usage"]["completion_tokens"] == 16);
}

TEST_CASE("openai_server: streaming is well-framed SSE and adds up to the non-streamed answer", "[serve][http]") {
    fixture fx;
    auto whole = fx.post("/v1/chat/completions", chat(R"(, "max_tokens": 20, "ignore_eos": true)"));
    REQUIRE(whole);
    const std::string text = body_of(whole)["choices"][0]["message"]["content"];
    auto r = fx.post("/v1/chat/completions", chat(R"(, "max_tokens": 20, "ignore_eos": true, "stream": true, "stream_options": {"include_usage": true})"));
    REQUIRE(r);
    REQUIRE(r->status == 200);
    CHECK(r->get_header_value("Content-Type").rfind("text/event-stream", 0) == 0);
    bool done = false;
    const auto ev = events(r->body, done);
    CHECK(done);
    REQUIRE(ev.size() >= 3);
    CHECK(ev[0]["choices"][0]["delta"]["role"] == "assistant");
    std::string streamed;
    int finishes = 0;
    for (std::size_t i = 0; i + 1 < ev.size(); ++i) {
        CHECK(ev[i]["object"] == "chat.completion.chunk");
        CHECK(ev[i]["id"] == ev[0]["id"]);
        const json& ch = ev[i]["choices"][0];
        if (ch["delta"].contains("content")) streamed += ch["delta"]["content"].get<std::string>();
        if (!ch["finish_reason"].is_null()) {
            ++finishes;
            CHECK(ch["finish_reason"] == "length");
        }
    }
    CHECK(finishes == 1);
    CHECK(streamed == text);
    CHECK(ev.back()["choices"].empty());
    CHECK(ev.back()["usage"]["completion_tokens"] == 20);

    // A stop string: cut in both modes, never streamed.
    REQUIRE(text.size() >= 8);
    const std::string stop = text.substr(5, 2);
    const std::string cut = text.substr(0, text.find(stop));
    const std::string with_stop = R"(, "max_tokens": 20, "ignore_eos": true, "stop": [")" + stop + "\"]";
    auto ns = fx.post("/v1/chat/completions", chat(with_stop));
    REQUIRE(ns);
    CHECK(body_of(ns)["choices"][0]["message"]["content"] == cut);
    CHECK(body_of(ns)["choices"][0]["finish_reason"] == "stop");
    auto st = fx.post("/v1/chat/completions", chat(with_stop + R"(, "stream": true)"));
    REQUIRE(st);
    std::string got;
    for (const auto& e : events(st->body, done))
        if (e["choices"][0]["delta"].contains("content")) got += e["choices"][0]["delta"]["content"].get<std::string>();
    CHECK(got == cut);

    // Streamed completions with n = 2: every choice index finishes once.
    auto sc = fx.post("/v1/completions", R"({"model": "tiny", "prompt": "ab", "n": 2, "max_tokens": 5, "seed": 4, "stream": true, "ignore_eos": true})");
    REQUIRE(sc);
    int fin[2] = {0, 0};
    std::string texts[2];
    for (const auto& e : events(sc->body, done)) {
        CHECK(e["object"] == "text_completion");
        for (const auto& ch : e["choices"]) {
            texts[ch["index"].get<int>()] += ch["text"].get<std::string>();
            if (!ch["finish_reason"].is_null()) ++fin[ch["index"].get<int>()];
        }
    }
    CHECK(done);
    CHECK((fin[0] == 1 && fin[1] == 1));
    CHECK((texts[0].size() == 5 && texts[1].size() == 5));
}

TEST_CASE("openai_server: error statuses carry OpenAI error objects", "[serve][http]") {
    ks::server_options so;
    so.max_body_bytes = 4096;
    fixture fx(so);
    const auto expect = [&](const httplib::Result& r, int status, const std::string& param) {
        REQUIRE(r);
        CHECK(r->status == status);
        const json e = body_of(r)["error"];
        CHECK(e["message"].is_string());
        CHECK(e["type"].is_string());
        if (!param.empty()) CHECK(e["param"] == param);
    };
    expect(fx.post("/v1/chat/completions", "{not json"), 400, "");
    expect(fx.post("/v1/chat/completions", chat(R"(, "temperature": "hot")")), 400, "temperature");
    expect(fx.post("/v1/chat/completions", chat(R"(, "max_tokens": 0)")), 400, "max_tokens");
    expect(fx.post("/v1/chat/completions", chat(R"(, "max_tokens": -1)")), 400, "max_tokens");
    expect(fx.post("/v1/chat/completions", chat(R"(, "frobnicate": true)")), 400, "frobnicate");
    // Longer than the context (128 tokens here): 400 naming messages / prompt.
    const std::string long_text(300, 'x');
    auto lc = fx.post("/v1/chat/completions", R"({"model": "t", "messages": [{"role": "user", "content": ")" + long_text + "\"}]}");
    expect(lc, 400, "messages");
    CHECK(body_of(lc)["error"]["code"] == "context_length_exceeded");
    expect(fx.post("/v1/completions", R"({"model": "t", "prompt": ")" + long_text + "\"}"), 400, "prompt");
    expect(fx.post("/v1/completions", R"({"model": "t", "prompt": [999]})"), 400, "prompt");  // outside the vocabulary
    expect(fx.client().Get("/v1/nothing"), 404, "");
    expect(fx.post("/v1/embeddings", R"({"model": "t", "input": "x"})"), 404, "");  // no embedding model
    // Over the body limit: 413.
    auto big = fx.post("/v1/chat/completions", chat(R"(, "user": ")" + std::string(5000, 'u') + "\""));
    expect(big, 413, "");
    // The server still answers normally afterwards.
    auto ok = fx.post("/v1/chat/completions", chat(R"(, "max_tokens": 2)"));
    REQUIRE(ok);
    CHECK(ok->status == 200);
}

TEST_CASE("openai_server: an API key is required when set", "[serve][http]") {
    ks::server_options so;
    so.api_key = "s3cret-key";
    fixture fx(so);
    const auto status = [&](httplib::Headers h) {
        auto r = fx.post("/v1/chat/completions", chat(R"(, "max_tokens": 2)"), std::move(h));
        REQUIRE(r);
        return r->status;
    };
    CHECK(status({}) == 401);
    CHECK(status({{"Authorization", "Bearer wrong"}}) == 401);
    CHECK(status({{"Authorization", "Bearer s3cret-ke"}}) == 401);
    CHECK(status({{"Authorization", "Bearer s3cret-key2"}}) == 401);
    CHECK(status({{"Authorization", "s3cret-key"}}) == 401);
    CHECK(status({{"Authorization", "Bearer s3cret-key"}}) == 200);
    auto unauth = fx.post("/v1/chat/completions", chat(), {});
    CHECK(body_of(unauth)["error"]["code"] == "invalid_api_key");
    auto models = fx.client().Get("/v1/models");
    CHECK(models->status == 401);
    auto health = fx.client().Get("/health");  // load balancers probe it without a key
    CHECK(health->status == 200);
}

TEST_CASE("openai_server: a full queue answers 429 with Retry-After", "[serve][http]") {
    // The engine loop is not started: the first request waits in the queue (max_queue 1).
    fixture fx({}, /*max_queue=*/1, {}, /*start_engine=*/false);
    auto first = std::async(std::launch::async, [&] { return fx.post("/v1/chat/completions", chat(R"(, "max_tokens": 3)")); });
    REQUIRE(eventually([&] { return fx.srv->in_flight() == 1; }));
    std::this_thread::sleep_for(20ms);  // it has been submitted (in_flight counts from the call's start)
    auto second = fx.post("/v1/chat/completions", chat(R"(, "max_tokens": 3)"));
    REQUIRE(second);
    CHECK(second->status == 429);
    CHECK(second->get_header_value("Retry-After") == "1");
    CHECK(body_of(second)["error"]["code"] == "rate_limit_exceeded");
    fx.eng->start();
    auto r = first.get();
    REQUIRE(r);
    CHECK(r->status == 200);
    const std::string metrics = fx.srv->metrics_text();
    CHECK(metrics.find("kite_requests_rejected_total 1\n") != std::string::npos);
    CHECK(metrics.find("kite_http_responses_total{code=\"429\"} 1\n") != std::string::npos);
}

TEST_CASE("openai_server: a client that disconnects mid-stream cancels its request", "[serve][http]") {
    fixture fx({}, 64, /*delay=*/2ms);
    const auto before = fx.eng->stats();
    // 120 tokens at >= 2 ms a step; the client reads the first token and hangs up.
    const std::string got = raw_then_close(fx.port, "/v1/chat/completions",
                                           chat(R"(, "max_tokens": 120, "ignore_eos": true, "stream": true)"), "\"content\":\"");
    CHECK(got.find("200 OK") != std::string::npos);
    // Wait for the cancellation itself: the counters published before the request's first step
    // also read running == 0.
    REQUIRE(eventually([&] {
        const auto st = fx.eng->stats();
        return st.cancelled > before.cancelled && st.running == 0 && st.queue_depth == 0 && fx.srv->in_flight() == 0;
    }));
    const auto after = fx.eng->stats();
    CHECK(after.cancelled == before.cancelled + 1);
    CHECK(after.generated_tokens - before.generated_tokens < 100);
    // Every block is back: only the prefix cache holds some (those are free to evict).
    CHECK(after.kv_blocks_used == after.kv_blocks_cached);
    CHECK(fx.srv->metrics_text().find("kite_requests_cancelled_total 1\n") != std::string::npos);
}

TEST_CASE("openai_server: stop() drains the calls in flight and refuses new ones", "[serve][http]") {
    // About 90 steps of >= 5 ms: the call is still running while the checks below are made
    // (the listening socket closes only after it has finished).
    auto fx = std::make_unique<fixture>(ks::server_options{}, 64, /*delay=*/5ms);
    auto running = std::async(std::launch::async, [&] {
        return fx->post("/v1/chat/completions", chat(R"(, "max_tokens": 90, "ignore_eos": true)"));
    });
    REQUIRE(eventually([&] { return fx->srv->in_flight() == 1; }));
    auto stopper = std::async(std::launch::async, [&] { fx->srv->stop(10s); });
    REQUIRE(eventually([&] { return fx->srv->draining(); }));
    CHECK(fx->srv->in_flight() == 1);
    auto refused = fx->post("/v1/chat/completions", chat(R"(, "max_tokens": 2)"));
    REQUIRE(refused);
    CHECK(refused->status == 503);
    CHECK(refused->get_header_value("Retry-After") == "1");
    auto health = fx->client().Get("/health");
    REQUIRE(health);
    CHECK(health->status == 503);
    auto r = running.get();
    REQUIRE(r);
    CHECK(r->status == 200);
    CHECK(body_of(r)["usage"]["completion_tokens"] == 90);
    stopper.get();
}

TEST_CASE("openai_server: embeddings as floats and base64, and the metrics text", "[serve][http]") {
    ks::embedding_backend emb;
    emb.id = "toy-embed";
    emb.dim = 3;
    emb.encode = [](std::span<const std::string> texts) {
        std::vector<std::vector<float>> out;
        for (const auto& t : texts) out.push_back({static_cast<float>(t.size()), 0.5f, -1.25f});
        return out;
    };
    emb.count_tokens = [](std::string_view s) { return static_cast<kite::index_t>(s.size()); };
    fixture fx({}, 64, {}, true, emb);
    auto r = fx.post("/v1/embeddings", R"({"model": "toy-embed", "input": ["abc", "de"]})");
    REQUIRE(r);
    REQUIRE(r->status == 200);
    const json j = body_of(r);
    REQUIRE(j["data"].size() == 2);
    CHECK(j["data"][1]["index"] == 1);
    CHECK(j["data"][0]["embedding"] == json::array({3.0, 0.5, -1.25}));
    CHECK(j["usage"]["prompt_tokens"] == 5);
    auto b = fx.post("/v1/embeddings", R"({"model": "toy-embed", "input": "abc", "encoding_format": "base64"})");
    REQUIRE(b);
    const float v[3] = {3.0f, 0.5f, -1.25f};
    CHECK(body_of(b)["data"][0]["embedding"] == ks::openai::base64(v, sizeof v));
    auto bad = fx.post("/v1/embeddings", R"({"model": "toy-embed", "input": "abc", "dimensions": 8})");
    CHECK(bad->status == 400);
    auto bad_utf8 = fx.post("/v1/embeddings", "{\"model\": \"toy-embed\", \"input\": \"ab\xFF\"}");
    REQUIRE(bad_utf8);
    CHECK(bad_utf8->status == 400);
    CHECK(body_of(bad_utf8)["error"]["code"] == "invalid_json");
    auto models = fx.client().Get("/v1/models");
    CHECK(body_of(models)["data"][1]["id"] == "toy-embed");

    REQUIRE(fx.post("/v1/chat/completions", chat(R"(, "max_tokens": 4, "ignore_eos": true)"))->status == 200);
    auto m = fx.client().Get("/metrics");
    REQUIRE(m);
    CHECK(m->status == 200);
    for (const char* line : {"# TYPE kite_queue_depth gauge", "kite_running_sequences 0", "kite_kv_blocks_free ",
                             "kite_prefix_cache_hit_rate ", "kite_generation_tokens_total 4",
                             "kite_time_to_first_token_seconds_count 1", "kite_time_per_output_token_seconds_count 1",
                             "kite_time_to_first_token_seconds_bucket{le=\"+Inf\"} 1", "kite_requests_rejected_total 0",
                             "kite_http_responses_total{code=\"200\"} "})
        CHECK(m->body.find(line) != std::string::npos);
}

TEST_CASE("openai_server: one JSON log line per call, the prompt only when asked", "[serve][http]") {
    for (const bool with_prompts : {false, true}) {
        std::ostringstream log;
        ks::server_options so;
        so.log = &log;
        so.log_prompts = with_prompts;
        {
            fixture fx(so);
            REQUIRE(fx.post("/v1/chat/completions", chat(R"(, "max_tokens": 3, "ignore_eos": true)"))->status == 200);
            REQUIRE(fx.post("/v1/chat/completions", chat(R"(, "max_tokens": 0)"))->status == 400);
        }
        std::istringstream lines(log.str());
        std::vector<json> entries;
        for (std::string line; std::getline(lines, line);) entries.push_back(json::parse(line));
        REQUIRE(entries.size() == 2);
        CHECK(entries[0]["status"] == 200);
        CHECK(entries[0]["endpoint"] == "/v1/chat/completions");
        CHECK(entries[0]["completion_tokens"] == 3);
        CHECK(entries[0]["prompt_tokens"].get<int>() > 0);
        CHECK(entries[0]["ttft_ms"].is_number());
        CHECK(entries[0]["total_ms"].is_number());
        CHECK(entries[0]["id"].get<std::string>().rfind("chatcmpl-", 0) == 0);
        CHECK(entries[1]["status"] == 400);
        CHECK(entries[0].contains("prompt") == with_prompts);
        if (with_prompts) CHECK(entries[0]["prompt"].get<std::string>().find("hello there") != std::string::npos);
    }
}

TEST_CASE("openai_server: a client that does not read its stream holds nobody else up", "[serve][http]") {
    fixture fx({}, 64, /*delay=*/1ms);
    // A raw connection asks for a long stream and never reads it.
    const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
    REQUIRE(fd >= 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(static_cast<std::uint16_t>(fx.port));
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    REQUIRE(::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0);
    const std::string body = chat(R"(, "max_tokens": 100, "ignore_eos": true, "stream": true)");
    const std::string req = "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: " +
                            std::to_string(body.size()) + "\r\n\r\n" + body;
    REQUIRE(::send(fd, req.data(), req.size(), MSG_NOSIGNAL) == static_cast<ssize_t>(req.size()));
    // Others are served meanwhile, and the engine finishes the unread request too.
    for (int i = 0; i < 3; ++i) {
        auto r = fx.post("/v1/chat/completions", chat(R"(, "max_tokens": 5, "ignore_eos": true)"));
        REQUIRE(r);
        CHECK(r->status == 200);
    }
    CHECK(eventually([&] { return fx.eng->stats().running == 0 && fx.eng->stats().generated_tokens >= 115; }));
    ::close(fd);
}
