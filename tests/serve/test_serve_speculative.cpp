// Speculative decoding in kite::serve: greedy output equals the target's token for token (draft
// model and prompt lookup); with sampling, a chi-square test on a 4-token vocabulary shows the
// output distribution equals the target's; the acceptance rule on hand-made distributions.

#include <cmath>
#include <map>
#include <vector>

#include "kite/serve.hpp"
#include "serve_test_util.hpp"

namespace ks = kite::serve;
namespace km = kite::model;
using kite::index_t;
using kite::matrix;
using target_t = kite::test::serve_llama;
using draft_t = kite::test::serve_qwen2;

namespace {

// Upper 0.1% point of the chi-square distribution (Wilson-Hilferty; within 1% for df >= 10).
double chi2_critical(double df) {
    const double z = 3.090232, a = 2.0 / (9.0 * df);
    return df * std::pow(1.0 - a + z * std::sqrt(a), 3.0);
}

// Pearson's statistic of observed counts against probabilities, cells with expectation < 5
// pooled; returns {statistic, degrees of freedom}.
std::pair<double, double> chi2(const std::vector<double>& p, const std::vector<double>& counts, double n) {
    double stat = 0, pooled_e = 0, pooled_o = 0;
    index_t cells = 0;
    for (index_t i = 0; i < p.size(); ++i) {
        const double e = p[i] * n;
        if (e < 5) {
            pooled_e += e;
            pooled_o += counts[i];
            continue;
        }
        stat += (counts[i] - e) * (counts[i] - e) / e;
        ++cells;
    }
    if (pooled_e > 0) {
        stat += (pooled_o - pooled_e) * (pooled_o - pooled_e) / pooled_e;
        ++cells;
    }
    return {stat, static_cast<double>(cells - 1)};
}

std::vector<std::int32_t> repetitive_prompt(index_t V) {
    std::vector<std::int32_t> p;
    for (int rep = 0; rep < 3; ++rep)
        for (std::int32_t t : {7, 21, 42, 99, 13, 5, 64, 8}) p.push_back(t % static_cast<std::int32_t>(V));
    return p;
}

}  // namespace

TEST_CASE("speculative: verify() accepts by the exact rule", "[serve][speculative]") {
    // Rows of logits for a 3-token vocabulary; greedy accepts while the draft is the argmax.
    matrix<float> rows(3, 3);
    const float l[9] = {0, 2, 1, 3, 0, 0, 0, 0, 5};
    std::copy(l, l + 9, rows.data());
    std::vector<float> scratch;
    km::sampler greedy({.temperature = 0});
    const std::int32_t d1[2] = {1, 0};
    auto v = ks::verify(greedy, rows.view(), d1, {}, scratch);
    CHECK(v.accepted == 2);
    CHECK(v.next == 2);
    const std::int32_t d2[2] = {1, 2};
    v = ks::verify(greedy, rows.view(), d2, {}, scratch);
    CHECK(v.accepted == 1);
    CHECK(v.next == 0);
    // Sampling: a draft the target gives probability 0 (top_k 2 drops token 0) is always
    // rejected and the correction comes from the rest (p(1) = 0.73, p(2) = 0.27); q equal to
    // p is always accepted.
    km::sampler topk2({.temperature = 1.0f, .top_k = 2}, 3);
    const std::int32_t d3[2] = {0, 1};
    int ones = 0;
    for (int i = 0; i < 200; ++i) {
        v = ks::verify(topk2, rows.view(), d3, {}, scratch);
        CHECK(v.accepted == 0);
        CHECK(v.next != 0);
        ones += v.next == 1;
    }
    CHECK(ones > 120);
    CHECK(ones < 180);
    km::sampler t1({.temperature = 1.0f}, 5);
    std::vector<std::vector<float>> q(2, std::vector<float>(3));
    t1.distribution(rows.row(0), q[0]);
    t1.distribution(rows.row(1), q[1]);
    for (int i = 0; i < 50; ++i) CHECK(ks::verify(t1, rows.view(), d3, q, scratch).accepted == 2);
    CHECK_THROWS_AS(ks::verify(t1, rows.view().rows_slice(0, 2), d3, q, scratch), kite::shape_error);
}

TEST_CASE("speculative: greedy output equals the target's, token for token and logit for logit", "[serve][speculative]") {
    const target_t target(kite::test::tiny_gguf("tiny_llama"));
    const draft_t draft(kite::test::tiny_gguf("tiny_qwen2"));
    const index_t V = target.vocab_size();
    std::vector<ks::request> reqs;
    for (index_t i = 0; i < 6; ++i) {
        ks::request r;
        r.prompt = repetitive_prompt(V);
        r.prompt.push_back(static_cast<std::int32_t>((i * 31) % V));
        r.max_tokens = 40;
        r.sampling.temperature = 0;
        r.ignore_eos = true;
        r.record_logits = true;
        reqs.push_back(r);
    }
    ks::engine<target_t> plain(target, {.kv_tokens = 1024});
    const auto want = plain.generate(reqs);
    ks::engine<target_t, ks::continuous_batching, ks::prompt_lookup> ngram(target, {.kv_tokens = 1024}, {}, {.max_draft = 4});
    const auto got_ngram = ngram.generate(reqs);
    ks::engine<target_t, ks::continuous_batching, ks::draft_model<draft_t>> dm(target, {.kv_tokens = 1024}, {},
                                                                               ks::draft_model<draft_t>(draft, 3, 128, 8));
    const auto got_dm = dm.generate(reqs);
    for (index_t i = 0; i < reqs.size(); ++i) {
        INFO("request " << i);
        CHECK(got_ngram[i].outputs[0].tokens == want[i].outputs[0].tokens);
        CHECK(got_ngram[i].outputs[0].logit_digests == want[i].outputs[0].logit_digests);
        CHECK(got_dm[i].outputs[0].tokens == want[i].outputs[0].tokens);
        CHECK(got_dm[i].outputs[0].logit_digests == want[i].outputs[0].logit_digests);
    }
    // Prompt lookup proposes and the target accepts some; fewer steps than tokens.
    const auto sn = ngram.stats();
    CHECK(sn.drafted_tokens > 0);
    CHECK(sn.accepted_tokens > 0);
    CHECK(dm.stats().drafted_tokens > 0);
    INFO("ngram acceptance " << sn.acceptance_rate() << ", draft-model acceptance " << dm.stats().acceptance_rate());
    CHECK(ngram.cache().stats().sequences == 0);
}

TEST_CASE("speculative: with sampling the output distribution equals the target's (chi-square)", "[serve][speculative]") {
    const index_t V = 4;
    const target_t target(kite::test::with_small_vocab(kite::test::tiny_gguf("tiny_llama"), V, 11));
    const draft_t draft(kite::test::with_small_vocab(kite::test::tiny_gguf("tiny_qwen2"), V, 23));
    const km::sampling_params sp{.temperature = 0.9f, .top_p = 0.95f};
    const std::vector<std::int32_t> prompt = {1, 3, 1, 3, 1, 2, 0};
    // Exact distribution of the next three tokens under the target (the sampler's warpers).
    std::vector<double> exact(V * V * V, 0.0);
    km::sampler dist(sp);
    std::vector<float> p1(V), p2(V), p3(V);
    target_t& tm = const_cast<target_t&>(target);
    const auto l1 = tm.forward(prompt);
    dist.distribution(l1.row(prompt.size() - 1), p1);
    for (index_t a = 0; a < V; ++a) {
        auto pa = prompt;
        pa.push_back(static_cast<std::int32_t>(a));
        const auto l2 = tm.forward(pa);
        dist.distribution(l2.row(pa.size() - 1), p2);
        for (index_t b = 0; b < V; ++b) {
            auto pb = pa;
            pb.push_back(static_cast<std::int32_t>(b));
            const auto l3 = tm.forward(pb);
            dist.distribution(l3.row(pb.size() - 1), p3);
            for (index_t c = 0; c < V; ++c) exact[(a * V + b) * V + c] = double(p1[a]) * p2[b] * p3[c];
        }
    }
    double top = 0;
    for (const double x : exact) top = std::max(top, x);
    INFO("p1 " << p1[0] << " " << p1[1] << " " << p1[2] << " " << p1[3] << "; largest cell " << top);
    REQUIRE(top < 0.2);  // a real spread of outcomes
    const index_t N = 3000;
    std::vector<ks::request> reqs(N);
    for (index_t i = 0; i < N; ++i) {
        reqs[i].prompt = prompt;
        reqs[i].max_tokens = 3;
        reqs[i].sampling = sp;
        reqs[i].seed = 1000 + i;
        reqs[i].ignore_eos = true;
    }
    const auto count = [&](const std::vector<ks::result>& res) {
        std::vector<double> c(V * V * V, 0.0);
        for (const auto& r : res) {
            const auto& t = r.outputs[0].tokens;
            REQUIRE(t.size() == 3);
            c[(t[0] * V + t[1]) * V + t[2]] += 1;
        }
        return c;
    };
    SECTION("draft model") {
        ks::engine<target_t, ks::continuous_batching, ks::draft_model<draft_t>> e(
            target, {.kv_tokens = 4096}, {.token_budget = 512, .max_running = 64}, ks::draft_model<draft_t>(draft, 2, 16, 64));
        const auto [stat, df] = chi2(exact, count(e.generate(reqs)), N);
        INFO("chi2 " << stat << " df " << df << " critical " << chi2_critical(df) << " acceptance " << e.stats().acceptance_rate());
        CHECK(e.stats().drafted_tokens > 0);
        CHECK(e.stats().accepted_tokens > 0);
        CHECK(e.stats().accepted_tokens < e.stats().drafted_tokens);
        CHECK(stat < chi2_critical(df));
    }
    SECTION("prompt lookup") {
        ks::engine<target_t, ks::continuous_batching, ks::prompt_lookup> e(target, {.kv_tokens = 4096},
                                                                           {.token_budget = 512, .max_running = 64},
                                                                           {.max_draft = 2, .min_ngram = 1, .max_ngram = 2});
        const auto [stat, df] = chi2(exact, count(e.generate(reqs)), N);
        INFO("chi2 " << stat << " df " << df << " critical " << chi2_critical(df) << " acceptance " << e.stats().acceptance_rate());
        CHECK(e.stats().drafted_tokens > 0);
        CHECK(e.stats().accepted_tokens > 0);
        CHECK(stat < chi2_critical(df));
    }
    SECTION("no speculation (the same test's control)") {
        ks::engine<target_t> e(target, {.kv_tokens = 4096}, {.token_budget = 512, .max_running = 64});
        const auto [stat, df] = chi2(exact, count(e.generate(reqs)), N);
        INFO("chi2 " << stat << " df " << df << " critical " << chi2_critical(df));
        CHECK(stat < chi2_critical(df));
    }
}
