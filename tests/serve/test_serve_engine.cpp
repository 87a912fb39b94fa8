// kite::serve::engine on tiny GGUF models: every scheduler gives each request exactly the
// tokens and logits it gets alone (batch invariance through chunked prefill, prefix-cache hits
// and preemption), blocks all return to the pool, parallel samples equal single requests with
// their seeds, and the online interface streams, cancels, refuses and shuts down cleanly.

#include <algorithm>
#include <map>
#include <random>
#include <thread>
#include <vector>

#include "kite/serve.hpp"
#include "serve_test_util.hpp"

namespace ks = kite::serve;
using kite::index_t;
using model_t = kite::test::serve_llama;

namespace {

const model_t& tiny_model() {
    static const model_t m(kite::test::tiny_gguf("tiny_llama"));
    return m;
}

// Requests with a shared 9-token system prefix, prompts of 3..30 tokens, 4..20 new tokens.
std::vector<ks::request> workload(index_t count, std::uint64_t seed, bool sampled = false) {
    std::mt19937_64 rng(seed);
    const index_t V = tiny_model().vocab_size();
    std::vector<ks::request> out;
    for (index_t i = 0; i < count; ++i) {
        ks::request r;
        const index_t len = 3 + rng() % 28;
        if (i % 2 == 0)
            for (std::int32_t t : {11, 12, 13, 14, 15, 16, 17, 18, 19}) r.prompt.push_back(t);
        while (r.prompt.size() < len) r.prompt.push_back(static_cast<std::int32_t>(rng() % V));
        r.max_tokens = 4 + rng() % 17;
        r.sampling.temperature = sampled ? 0.9f : 0.0f;
        r.seed = rng();
        r.ignore_eos = true;
        r.record_logits = true;
        out.push_back(std::move(r));
    }
    return out;
}

// Each request run alone on a fresh engine (no prefix cache, whole prompt in one step).
std::vector<ks::result> alone(const std::vector<ks::request>& reqs) {
    std::vector<ks::result> out;
    for (const auto& r : reqs) {
        ks::engine<model_t> e(tiny_model(), {.kv_tokens = 256, .prefix_caching = false});
        out.push_back(e.generate({r})[0]);
    }
    return out;
}

void check_equal(const std::vector<ks::result>& got, const std::vector<ks::result>& want) {
    REQUIRE(got.size() == want.size());
    for (index_t i = 0; i < got.size(); ++i) {
        INFO("request " << i);
        REQUIRE(got[i].outputs.size() == want[i].outputs.size());
        for (index_t j = 0; j < got[i].outputs.size(); ++j) {
            CHECK(got[i].outputs[j].tokens == want[i].outputs[j].tokens);
            CHECK(got[i].outputs[j].logit_digests == want[i].outputs[j].logit_digests);
            CHECK(got[i].outputs[j].finish == want[i].outputs[j].finish);
        }
    }
}

template <class E>
void check_pool_clean(const E& e) {
    const auto st = e.stats();
    CHECK(st.running == 0);
    // Only the prefix cache may still hold blocks, each with its own single reference.
    CHECK(st.kv_blocks_used == st.kv_blocks_cached);
    CHECK(e.cache().stats().sequences == 0);
}

}  // namespace

TEST_CASE("serve: every scheduler gives each request the tokens and logits it gets alone", "[serve][engine]") {
    const bool sampled = GENERATE(false, true);
    INFO((sampled ? "sampled" : "greedy"));
    const auto reqs = workload(12, sampled ? 5 : 4, sampled);
    const auto want = alone(reqs);
    SECTION("continuous, small budget and chunks, prefix cache, a pool that forces preemption") {
        ks::engine<model_t> e(tiny_model(), {.kv_tokens = 96}, {.token_budget = 24, .max_running = 8, .chunk = 7, .max_partial_prefills = 2});
        check_equal(e.generate(reqs), want);
        const auto st = e.stats();
        CHECK(st.preemptions > 0);
        CHECK(st.prefix_hit_tokens > 0);
        check_pool_clean(e);
    }
    SECTION("continuous, roomy") {
        ks::engine<model_t> e(tiny_model(), {.kv_tokens = 1024});
        check_equal(e.generate(reqs), want);
        const auto st = e.stats();
        CHECK(st.preemptions == 0);
        CHECK(st.longest_step_seconds > 0);
        CHECK(st.longest_step_seconds <= st.busy_seconds);
        check_pool_clean(e);
    }
    SECTION("continuous, roomy, the pool not prefaulted") {
        ks::engine<model_t> e(tiny_model(), {.kv_tokens = 1024, .prefault_kv = false});
        check_equal(e.generate(reqs), want);
        check_pool_clean(e);
    }
    SECTION("static batches of 5") {
        ks::engine<model_t, ks::static_batching<5>> e(tiny_model(), {.kv_tokens = 512});
        check_equal(e.generate(reqs), want);
        check_pool_clean(e);
    }
    SECTION("dynamic batches of up to 4") {
        ks::engine<model_t, ks::dynamic_batching<4>> e(tiny_model(), {.kv_tokens = 512, .prefix_caching = false});
        check_equal(e.generate(reqs), want);
        check_pool_clean(e);
    }
}

namespace {
// Eight requests alone, then together through a small pool with chunks and preemption, on the
// tiny model with int8 activations and the given KV storage.
template <class Storage>
void int8_alone_vs_together(std::uint64_t seed) {
    using a8_t = kite::model::gguf_llama_decoder_a8<kite::kv::paged<4, Storage>, kite::attn::invariant>;
    const a8_t m(kite::model::with_int8_activations(kite::test::tiny_gguf("tiny_llama")));
    const auto reqs = workload(8, seed);
    std::vector<ks::result> want;
    for (const auto& r : reqs) {
        ks::engine<a8_t> e(m, {.kv_tokens = 256, .prefix_caching = false});
        want.push_back(e.generate({r})[0]);
    }
    ks::engine<a8_t> e(m, {.kv_tokens = 96}, {.token_budget = 20, .max_running = 6, .chunk = 5});
    check_equal(e.generate(reqs), want);
    CHECK(e.stats().preemptions > 0);
    CHECK(e.stats().prefix_hit_tokens > 0);
    check_pool_clean(e);
}
}  // namespace

TEST_CASE("serve: with int8 activations (ggml_a8) each request still gets exactly what it gets alone", "[serve][engine]") {
    int8_alone_vs_together<float>(77);
}

TEST_CASE("serve: with a float16 KV cache (kite-serve's default) each request still gets exactly what it gets alone",
          "[serve][engine]") {
    int8_alone_vs_together<kite::fp16>(78);
}

TEST_CASE("serve: random request streams with cancellations and preemptions leave every block back in the pool",
          "[serve][engine]") {
    for (std::uint64_t round = 0; round < 6; ++round) {
        INFO("round " << round);
        std::mt19937_64 rng(100 + round);
        ks::engine<model_t> e(tiny_model(), {.kv_tokens = 64 + 8 * (rng() % 8), .max_queue = 64},
                              {.token_budget = 8 + rng() % 40, .max_running = 1 + rng() % 8, .chunk = 1 + rng() % 12});
        e.start();
        auto reqs = workload(10, 200 + round, round % 2 == 1);
        std::vector<ks::handle> hs;
        for (auto& r : reqs) {
            r.n = 1 + rng() % 3;
            hs.push_back(e.submit(r));
        }
        std::vector<bool> cancelled(hs.size());
        for (index_t i = 0; i < hs.size(); ++i)
            if (rng() % 3 == 0) {
                hs[i].cancel();
                cancelled[i] = true;
            }
        const auto want = alone(reqs);
        for (index_t i = 0; i < hs.size(); ++i) {
            const auto res = hs[i].wait();
            for (const auto& o : res.outputs) CHECK(o.finish != ks::finish_reason::error);
            // What was not cancelled is exactly what the request gives alone (arrival order,
            // batch, chunks, cache hits and preemptions are random here).
            if (cancelled[i]) continue;
            INFO("request " << i);
            for (index_t j = 0; j < res.outputs.size(); ++j) {
                CHECK(res.outputs[j].tokens == want[i].outputs[j].tokens);
                CHECK(res.outputs[j].logit_digests == want[i].outputs[j].logit_digests);
            }
        }
        e.shutdown();
        check_pool_clean(e);
        const auto st = e.stats();
        CHECK(st.finished == hs.size());
    }
}

TEST_CASE("serve: n parallel samples share the prompt's blocks and equal single requests with seeds seed + i",
          "[serve][engine]") {
    auto reqs = workload(3, 9, true);
    std::vector<ks::request> singles;
    for (auto& r : reqs) {
        r.n = 3;
        for (index_t i = 0; i < 3; ++i) {
            ks::request s = r;
            s.n = 1;
            s.seed = r.seed + i;
            singles.push_back(s);
        }
    }
    ks::engine<model_t> e(tiny_model(), {.kv_tokens = 512});
    const auto got = e.generate(reqs);
    const auto want = alone(singles);
    for (index_t i = 0; i < reqs.size(); ++i)
        for (index_t j = 0; j < 3; ++j) {
            INFO("request " << i << " sample " << j);
            CHECK(got[i].outputs[j].tokens == want[i * 3 + j].outputs[0].tokens);
            CHECK(got[i].outputs[j].logit_digests == want[i * 3 + j].outputs[0].logit_digests);
        }
    CHECK(e.cache().copies_on_write() > 0);  // the forks shared the prompt's last block
    check_pool_clean(e);
}

TEST_CASE("serve: stop tokens, stop strings, max_tokens, context and the prefix-cache hit rate", "[serve][engine]") {
    const auto& m = tiny_model();
    // A detokenizer writing token t as "<t>".
    const auto detok = [](std::span<const std::int32_t> ids) {
        std::string s;
        for (auto t : ids) {  // (appended piecewise: GCC 12's -Wrestrict misfires on "<" + str)
            s += '<';
            s += std::to_string(t);
            s += '>';
        }
        return s;
    };
    ks::engine<model_t> probe(m, {.kv_tokens = 512, .prefix_caching = false});
    ks::request r;
    r.prompt = {5, 6, 7, 8, 9, 10, 11, 12, 13};
    r.max_tokens = 12;
    r.sampling.temperature = 0;
    r.ignore_eos = true;
    const auto base = probe.generate({r})[0].outputs[0];
    REQUIRE(base.tokens.size() == 12);
    CHECK(base.finish == ks::finish_reason::length);

    ks::engine<model_t> e(m, {.kv_tokens = 512, .detokenize = detok, .max_context = 64});
    ks::request a = r;
    a.stop_tokens = {base.tokens[4]};
    const auto first = std::find(base.tokens.begin(), base.tokens.end(), base.tokens[4]) - base.tokens.begin();
    auto out = e.generate({a})[0].outputs[0];
    CHECK(out.finish == ks::finish_reason::stop);
    CHECK(out.tokens == std::vector<std::int32_t>(base.tokens.begin(), base.tokens.begin() + first));
    ks::request b = r;
    const std::string stop = detok(std::span<const std::int32_t>(base.tokens).subspan(2, 2));
    b.stop = {stop};
    out = e.generate({b})[0].outputs[0];
    CHECK(out.finish == ks::finish_reason::stop);
    CHECK(out.text.find(stop) == std::string::npos);
    CHECK(detok(base.tokens).rfind(out.text, 0) == 0);  // a prefix of the full text
    ks::request c = r;
    c.max_tokens = 100;
    c.prompt.assign(60, 3);
    out = e.generate({c})[0].outputs[0];
    CHECK(out.finish == ks::finish_reason::context);
    CHECK(out.tokens.size() == 4);
    // The same prompt twice: the second is served from the prefix cache (two full blocks of 4).
    const auto before = e.stats();
    const auto res = e.generate({r})[0];
    CHECK(res.cached_prompt_tokens == 8);
    CHECK(res.outputs[0].tokens == base.tokens);
    CHECK(e.stats().prefix_hit_tokens - before.prefix_hit_tokens == 8);
    CHECK(e.stats().prefix_hit_rate() > 0);
    // Bad requests name the field.
    ks::request bad = r;
    bad.max_tokens = 0;
    KITE_REQUIRE_THROWS_CONTAINING(e.generate({bad}), kite::invalid_argument, "max_tokens");
    bad = r;
    bad.prompt.assign(64, 1);
    KITE_REQUIRE_THROWS_CONTAINING(e.generate({bad}), kite::invalid_argument, "context");
    bad = r;
    bad.prompt = {static_cast<std::int32_t>(m.vocab_size())};
    KITE_REQUIRE_THROWS_CONTAINING(e.generate({bad}), kite::invalid_argument, "prompt[0]");
    bad = r;
    bad.stop = {"x"};
    ks::engine<model_t> no_detok(m, {.kv_tokens = 512});
    KITE_REQUIRE_THROWS_CONTAINING(no_detok.generate({bad}), kite::invalid_argument, "detokenize");
    bad = r;
    bad.prompt.clear();
    bad.messages = {{"user", "hi"}};
    KITE_REQUIRE_THROWS_CONTAINING(no_detok.generate({bad}), kite::invalid_argument, "chat_template");
    ks::engine<model_t> chat(m, {.kv_tokens = 512,
                                 .chat_template = [](std::span<const kite::text::chat_message> msgs) {
                                     return std::vector<std::int32_t>(msgs.size() + 2, 7);
                                 }});
    CHECK(chat.generate({bad})[0].prompt_tokens == 3);  // rendered by the engine's template
    bad.prompt = {1};
    KITE_REQUIRE_THROWS_CONTAINING(chat.generate({bad}), kite::invalid_argument, "both prompt and messages");
    ks::engine<model_t> tiny_pool(m, {.kv_tokens = 16});
    KITE_REQUIRE_THROWS_CONTAINING(tiny_pool.generate({r}), kite::invalid_argument, "kv_tokens");
}

TEST_CASE("serve: online submit streams tokens, cancels, refuses when full and shuts down cleanly", "[serve][engine]") {
    const auto& m = tiny_model();
    ks::request r;
    r.prompt = {1, 2, 3, 4, 5};
    r.max_tokens = 30;
    r.sampling.temperature = 0;
    r.ignore_eos = true;
    ks::engine<model_t> ref(m, {.kv_tokens = 256});
    const auto want = ref.generate({r})[0].outputs[0].tokens;

    ks::engine<model_t> e(m, {.kv_tokens = 256, .max_queue = 2});
    // Not started: the queue fills and refuses.
    auto h1 = e.submit(r);
    auto h2 = e.submit(r);
    CHECK_THROWS_AS(e.submit(r), ks::queue_full);
    CHECK(e.stats().rejected == 1);
    e.start();
    std::vector<std::int32_t> streamed;
    while (auto ev = h1.next()) streamed.push_back(ev->token);
    CHECK(streamed == want);
    CHECK(h1.wait().outputs[0].tokens == want);
    CHECK(h2.wait().outputs[0].tokens == want);
    const auto t = h1.wait().timings;
    CHECK(t.ttft_s > 0);
    CHECK(t.e2e_s >= t.ttft_s);
    // Cancel mid-stream: the request ends cancelled, its blocks come back. The tiny model can
    // decode all 200 tokens before the cancel lands when this thread is descheduled (a loaded
    // machine): such a request must end whole (length), and the test tries again.
    ks::request longer = r;
    longer.max_tokens = 200;
    bool cancelled = false;
    for (int attempt = 0; attempt < 50 && !cancelled; ++attempt) {
        auto h3 = e.submit(longer);
        REQUIRE(h3.next().has_value());
        h3.cancel();
        const auto res = h3.wait();
        if (res.outputs[0].finish == ks::finish_reason::cancelled) {
            cancelled = true;
            CHECK(res.outputs[0].tokens.size() < 200);
        } else {
            CHECK(res.outputs[0].finish == ks::finish_reason::length);
            CHECK(res.outputs[0].tokens.size() == 200);
        }
    }
    CHECK(cancelled);
    e.shutdown();
    CHECK_THROWS_AS(e.submit(r), ks::queue_full);
    check_pool_clean(e);
    // Shutdown without draining cancels what is queued.
    ks::engine<model_t> f(m, {.kv_tokens = 256});
    auto h4 = f.submit(longer);
    f.shutdown(false);
    CHECK(h4.wait().outputs[0].finish == ks::finish_reason::cancelled);
}

TEST_CASE("serve: a result is released only after the counters that include it are published", "[serve][engine]") {
    // A client that reads stats() (GET /metrics) right after its result must see its own
    // tokens counted and its sequence no longer running.
    const auto& m = tiny_model();
    ks::engine<model_t> e(m, {.kv_tokens = 256});
    e.start();
    std::uint64_t tokens = 0, finished = 0;
    for (int i = 0; i < 200; ++i) {
        ks::request r;
        r.prompt = {1, 2, 3, static_cast<std::int32_t>(4 + i % 50)};
        r.max_tokens = 1 + i % 4;
        r.sampling.temperature = 0;
        r.ignore_eos = true;
        const auto res = e.submit(r).wait();
        tokens += res.outputs[0].tokens.size();
        ++finished;
        const auto st = e.stats();
        INFO("request " << i);
        REQUIRE(st.running == 0);
        REQUIRE(st.generated_tokens == tokens);
        REQUIRE(st.finished == finished);
    }
    e.shutdown();
}
