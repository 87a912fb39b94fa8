// The serving engine under concurrent clients: threads submit, stream, poll, cancel and walk
// away (drop their handle unread) at random moments while the engine loop runs. Nothing may
// race (this file is what the tsan preset runs), deadlock (every wait is bounded by the
// request's own length) or leak: at the end every request is accounted for and every KV block
// is back in the pool. Non-cancelled greedy requests still get exactly what they get alone.

#include <atomic>
#include <chrono>
#include <map>
#include <mutex>
#include <random>
#include <thread>
#include <vector>

#include "kite/serve.hpp"
#include "serve_test_util.hpp"

namespace ks = kite::serve;
using kite::index_t;
using model_t = kite::test::serve_llama;
using namespace std::chrono_literals;

namespace {

const model_t& stress_model() {
    static const model_t m(kite::test::tiny_gguf("tiny_llama"));
    return m;
}

ks::request random_request(std::mt19937_64& rng, index_t vocab) {
    ks::request r;
    const index_t len = 1 + rng() % 14;
    // A shared 5-token prefix half of the time, so the prefix cache is exercised too.
    if (rng() % 2) r.prompt = {3, 1, 4, 1, 5};
    for (index_t i = 0; i < len; ++i) r.prompt.push_back(static_cast<std::int32_t>(rng() % vocab));
    r.max_tokens = 1 + rng() % 24;
    r.sampling.temperature = rng() % 3 == 0 ? 0.8f : 0.0f;
    r.seed = rng();
    r.n = 1 + rng() % 2;
    r.ignore_eos = rng() % 2 == 0;
    return r;
}

}  // namespace

TEST_CASE("serve stress: client threads submit, stream, poll, cancel and walk away at random", "[serve][stress]") {
    const bool reduced = kite::test::reduced_run();
    const int clients = 4;
    const int per_client = reduced ? 12 : 40;
    const auto& m = stress_model();
    ks::engine<model_t> reference(m, {.kv_tokens = 512});
    for (int round = 0; round < (reduced ? 1 : 3); ++round) {
        INFO("round " << round);
        ks::engine<model_t> e(m, {.kv_tokens = 96 + 32 * static_cast<index_t>(round), .max_queue = 16},
                              {.token_budget = 12 + 8 * static_cast<index_t>(round), .max_running = 3 + static_cast<index_t>(round), .chunk = 5});
        e.start();
        std::atomic<std::uint64_t> submitted{0}, refused{0}, errors{0};
        std::mutex mu;
        std::vector<std::pair<ks::request, ks::result>> finished_greedy;  // checked against `reference`
        std::vector<std::thread> ts;
        for (int c = 0; c < clients; ++c) {
            ts.emplace_back([&, c] {
                std::mt19937_64 rng(1000 * static_cast<std::uint64_t>(round) + static_cast<std::uint64_t>(c));
                for (int i = 0; i < per_client; ++i) {
                    ks::request r = random_request(rng, m.vocab_size());
                    ks::handle h;
                    try {
                        h = e.submit(r);
                        ++submitted;
                    } catch (const ks::queue_full&) {
                        ++refused;
                        std::this_thread::sleep_for(1ms);
                        continue;
                    }
                    switch (rng() % 4) {
                        case 0: {  // read everything, then the result
                            while (h.next()) {
                            }
                            const ks::result res = h.wait();
                            for (const auto& o : res.outputs) errors += o.finish == ks::finish_reason::error;
                            if (r.sampling.temperature == 0.0f) {
                                std::lock_guard lk(mu);
                                finished_greedy.emplace_back(r, res);
                            }
                            break;
                        }
                        case 1: {  // read a few tokens, then cancel
                            const int k = static_cast<int>(rng() % 4);
                            for (int j = 0; j < k && h.next(); ++j) {
                            }
                            h.cancel();
                            for (const auto& o : h.wait().outputs) errors += o.finish == ks::finish_reason::error;
                            break;
                        }
                        case 2:  // walk away: the handle is dropped unread (a client that hung up)
                            if (rng() % 2) h.cancel();
                            break;
                        default: {  // poll with short timeouts, cancel after a few polls
                            ks::token_event ev;
                            for (int j = 0; j < 6; ++j)
                                if (h.next_for(200us, ev) == ks::handle::poll::done) break;
                            h.cancel();
                            for (const auto& o : h.wait().outputs) errors += o.finish == ks::finish_reason::error;
                        }
                    }
                }
            });
        }
        for (auto& t : ts) t.join();
        e.shutdown();  // drains what walked away
        const auto st = e.stats();
        INFO(submitted << " accepted, " << refused << " refused, " << st.cancelled << " cancelled");
        CHECK(errors == 0);
        CHECK(submitted >= static_cast<std::uint64_t>(clients * per_client / 2));
        CHECK(st.cancelled > 0);
        CHECK(submitted + refused == static_cast<std::uint64_t>(clients * per_client));
        CHECK(st.finished == submitted.load());
        CHECK(st.rejected == refused.load());
        CHECK(st.running == 0);
        CHECK(st.kv_blocks_used == st.kv_blocks_cached);
        CHECK(e.cache().stats().sequences == 0);
        // Whatever else ran beside them, greedy requests read to the end got what they get alone.
        REQUIRE_FALSE(finished_greedy.empty());
        for (const auto& [req, res] : finished_greedy) {
            const auto want = reference.generate({req})[0];
            for (std::size_t j = 0; j < res.outputs.size(); ++j) CHECK(res.outputs[j].tokens == want.outputs[j].tokens);
        }
    }
}
