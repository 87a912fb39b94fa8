// kite/model/sampling.hpp: the generator matches llama2.c's stream; the distributions equal a
// double-precision oracle of Hugging Face's warpers; draws follow them (chi-square, fixed seeds);
// edge cases and bad input.

#include <algorithm>
#include <cmath>
#include <fstream>
#include <limits>
#include <numeric>
#include <random>
#include <vector>

#include <nlohmann/json.hpp>

#include "kite/model/sampling.hpp"
#include "kite_test.hpp"

using kite::model::sampler;
using kite::model::sampling_params;

namespace {

constexpr float neg_inf = -std::numeric_limits<float>::infinity();

/// The oracle: HF's TemperatureLogitsWarper, TopKLogitsWarper, TopPLogitsWarper and softmax,
/// written directly from their definitions in double precision.
std::vector<double> oracle(const std::vector<float>& logits, const sampling_params& p) {
    const std::size_t n = logits.size();
    std::vector<double> s(n);
    for (std::size_t i = 0; i < n; ++i) s[i] = double(logits[i]) / double(p.temperature);
    if (p.top_k > 0 && p.top_k < n) {
        std::vector<double> sorted = s;
        std::sort(sorted.begin(), sorted.end(), std::greater<>());
        const double kth = sorted[p.top_k - 1];
        for (auto& v : s)
            if (v < kth) v = -INFINITY;
    }
    const double mx = *std::max_element(s.begin(), s.end());
    std::vector<double> pr(n);
    double z = 0;
    for (std::size_t i = 0; i < n; ++i) z += pr[i] = std::exp(s[i] - mx);
    for (auto& v : pr) v /= z;
    if (p.top_p < 1.0f) {
        // Sort ascending; drop tokens whose cumulative mass (from the smallest) <= 1 - top_p,
        // always keeping the most probable one.
        std::vector<std::size_t> idx(n);
        std::iota(idx.begin(), idx.end(), 0);
        std::stable_sort(idx.begin(), idx.end(), [&](auto a, auto b) { return pr[a] < pr[b]; });
        double cum = 0;
        std::vector<bool> drop(n, false);
        for (std::size_t j = 0; j < n; ++j) {
            cum += pr[idx[j]];
            if (cum <= 1.0 - double(p.top_p) && j + 1 < n) drop[idx[j]] = true;
        }
        double z2 = 0;
        for (std::size_t i = 0; i < n; ++i) {
            if (drop[i]) pr[i] = 0;
            z2 += pr[i];
        }
        for (auto& v : pr) v /= z2;
    }
    return pr;
}

/// Pearson's chi-square of `draws` samples against `probs` (cells with p = 0 must stay empty).
double chi_square(sampler& s, const std::vector<float>& logits, const std::vector<double>& probs, int draws) {
    std::vector<int> counts(logits.size(), 0);
    for (int i = 0; i < draws; ++i) ++counts[s.sample(logits)];
    double chi = 0;
    for (std::size_t i = 0; i < probs.size(); ++i) {
        if (probs[i] == 0) {
            CHECK(counts[i] == 0);
            continue;
        }
        const double e = probs[i] * draws;
        chi += (counts[i] - e) * (counts[i] - e) / e;
    }
    return chi;
}

}  // namespace

TEST_CASE("sampling: xorshift* reproduces llama2.c's random_u32 stream", "[model][sampling]") {
    std::ifstream f(kite::test::fixture("model/xorshift.json"));
    const auto j = nlohmann::json::parse(f);
    for (const auto& [seed, values] : j.items()) {
        INFO("seed " << seed);
        kite::model::xorshift_rng r(std::stoull(seed));
        for (const auto& v : values) CHECK(r.next_u32() == v.get<std::uint32_t>());
    }
    kite::model::xorshift_rng r(7);
    for (int i = 0; i < 1000; ++i) {
        const float x = r.next_float();
        CHECK(x >= 0.0f);
        CHECK(x < 1.0f);
    }
}

TEST_CASE("sampling: distributions equal the HF-warper oracle", "[model][sampling]") {
    const std::vector<float> logits = {1.0f, 2.5f, -0.5f, 2.5f, 0.0f, 3.0f, -2.0f, 1.5f, 0.7f, 2.0f, neg_inf, 1.0f};
    const std::vector<sampling_params> configs = {
        {1.0f, 0, 1.0f}, {0.7f, 0, 1.0f},  {1.3f, 5, 1.0f},  {1.0f, 3, 1.0f},   // k=3 has a tie at the 2nd/3rd place
        {1.0f, 0, 0.8f}, {0.5f, 0, 0.95f}, {1.0f, 6, 0.7f},  {2.0f, 4, 0.9f},
        {1.0f, 2, 1.0f}, {1.0f, 0, 0.5f},  {1.0f, 20, 1.0f},
    };
    std::uint64_t seed = 1;
    for (const auto& p : configs) {
        INFO("T=" << p.temperature << " top_k=" << p.top_k << " top_p=" << p.top_p);
        sampler s(p, seed++);
        const auto want = oracle(logits, p);
        std::vector<float> got(logits.size());
        s.distribution(logits, got);
        for (std::size_t i = 0; i < got.size(); ++i) CHECK(got[i] == Approx(want[i]).margin(1e-6));
        // 20000 draws with a fixed seed: chi-square with <= 11 degrees of freedom stays far below
        // 40 (p < 1e-4 for df = 11) unless the sampler is biased.
        const double chi = chi_square(s, logits, want, 20000);
        CHECK(chi < 40.0);
    }
    // top_k keeps ties at the threshold: logits 2.5 and 2.5 are 2nd and 3rd, so k = 2 keeps 3.
    sampler tie({1.0f, 2, 1.0f}, 3);
    std::vector<float> d(logits.size());
    tie.distribution(logits, d);
    CHECK(std::count_if(d.begin(), d.end(), [](float v) { return v > 0; }) == 3);
}

TEST_CASE("sampling: large vocabularies (the nucleus shortcut is exact)", "[model][sampling]") {
    const auto logits = kite::test::randn(32000, 99, 3.0f);
    for (const float top_p : {0.5f, 0.9f, 0.99f}) {
        for (const kite::index_t top_k : {kite::index_t{0}, kite::index_t{50}}) {
            INFO("top_p " << top_p << " top_k " << top_k);
            const sampling_params p{0.9f, top_k, top_p};
            sampler s(p, 5);
            const auto want = oracle(logits, p);
            std::vector<float> got(logits.size());
            s.distribution(logits, got);
            std::size_t kept = 0, kept_oracle = 0;
            for (std::size_t i = 0; i < got.size(); ++i) {
                kept += got[i] > 0;
                kept_oracle += want[i] > 0;
            }
            CHECK(kept == kept_oracle);
            CHECK(kite::test::max_abs_diff(got, want) < 5e-8);  // measured 7.2e-9
        }
    }
}

TEST_CASE("sampling: greedy cases and reproducibility", "[model][sampling]") {
    const std::vector<float> logits = {0.5f, 4.0f, 1.0f, 4.0f, neg_inf};
    CHECK(kite::model::argmax(logits) == 1);  // first of the tied maxima
    sampler t0({0.0f, 0, 1.0f}, 1);
    sampler k1({1.5f, 1, 1.0f}, 1);
    sampler tiny_p({1.0f, 0, 1e-6f}, 1);
    CHECK(t0.greedy());
    CHECK(k1.greedy());
    const std::vector<float> distinct = {0.5f, 4.0f, 1.0f, 3.9f, neg_inf};
    for (int i = 0; i < 200; ++i) {
        CHECK(t0.sample(logits) == 1);
        CHECK(k1.sample(logits) == 1);
        CHECK(tiny_p.sample(distinct) == 1);  // the nucleus is the single most probable token
    }
    // A -inf logit is never drawn, even at high temperature.
    sampler hot({50.0f, 0, 1.0f}, 11);
    for (int i = 0; i < 2000; ++i) CHECK(hot.sample(logits) != 4);
    // Same seed, same tokens; another seed, another stream.
    const auto many = kite::test::randn(100, 3);
    sampler a({1.0f, 0, 0.9f}, 1234), b({1.0f, 0, 0.9f}, 1234), c({1.0f, 0, 0.9f}, 4321);
    std::vector<kite::index_t> ta, tb, tc;
    for (int i = 0; i < 100; ++i) {
        ta.push_back(a.sample(many));
        tb.push_back(b.sample(many));
        tc.push_back(c.sample(many));
    }
    CHECK(ta == tb);
    CHECK(ta != tc);
}

TEST_CASE("sampling: bad input", "[model][sampling]") {
    sampler s({1.0f, 0, 1.0f}, 1);
    const float nan = std::numeric_limits<float>::quiet_NaN();
    const float inf = std::numeric_limits<float>::infinity();
    KITE_REQUIRE_THROWS_CONTAINING(s.sample(std::vector<float>{1.0f, nan}), kite::invalid_argument, "logits[1]");
    KITE_REQUIRE_THROWS_CONTAINING(s.sample(std::vector<float>{inf, 0.0f}), kite::invalid_argument, "logits[0] = inf");
    KITE_REQUIRE_THROWS_CONTAINING(s.sample(std::vector<float>{neg_inf, neg_inf}), kite::invalid_argument, "every logit is -inf");
    KITE_REQUIRE_THROWS_CONTAINING(s.sample(std::vector<float>{}), kite::invalid_argument, "empty");
    KITE_REQUIRE_THROWS_CONTAINING(kite::model::argmax(std::vector<float>{nan}), kite::invalid_argument, "argmax");
    sampler greedy({0.0f, 0, 1.0f}, 1);
    KITE_REQUIRE_THROWS_CONTAINING(greedy.sample(std::vector<float>{0.0f, nan}), kite::invalid_argument, "logits[1]");
    KITE_REQUIRE_THROWS_CONTAINING(sampler({-1.0f, 0, 1.0f}), kite::invalid_argument, "temperature = -1");
    KITE_REQUIRE_THROWS_CONTAINING(sampler({nan, 0, 1.0f}), kite::invalid_argument, "temperature");
    KITE_REQUIRE_THROWS_CONTAINING(sampler({1.0f, 0, 0.0f}), kite::invalid_argument, "top_p = 0");
    KITE_REQUIRE_THROWS_CONTAINING(sampler({1.0f, 0, 1.5f}), kite::invalid_argument, "top_p = 1.5");
    std::vector<float> out(3);
    KITE_REQUIRE_THROWS_CONTAINING(s.distribution(std::vector<float>{1.0f, 2.0f}, out), kite::shape_error, "probs has 3");
}

TEST_CASE("sampling: argmax and the logits check on vocabulary-sized rows (the vector passes)", "[model][sampling]") {
    // The oracle: the first index of the largest value, one scalar comparison at a time.
    const auto first_max = [](const std::vector<float>& v) {
        std::size_t best = 0;
        for (std::size_t i = 1; i < v.size(); ++i)
            if (v[i] > v[best]) best = i;
        return best;
    };
    std::mt19937 rng(3);
    std::uniform_real_distribution<float> u(-8.0f, 8.0f);
    for (const std::size_t n : {1u, 2u, 7u, 15u, 16u, 17u, 31u, 33u, 64u, 100u, 49152u}) {
        for (int trial = 0; trial < 20; ++trial) {
            std::vector<float> v(n);
            for (auto& x : v) x = u(rng);
            // Ties of the maximum at random places (across vector boundaries and in the tail),
            // -inf entries, and signed zeros as the maximum in some trials.
            const std::size_t a = rng() % n, b = rng() % n;
            if (trial % 4 == 1) v[a] = v[b] = 9.0f;
            if (trial % 4 == 2) {
                for (auto& x : v) x = neg_inf;
                v[a] = -0.0f;
                v[b] = 0.0f;
            }
            if (trial % 4 == 3 && n > 1) v[rng() % n] = neg_inf;  // never the only entry
            INFO("n = " << n << ", trial " << trial);
            CHECK(kite::model::argmax(v) == first_max(v));
            CHECK(sampler({0.0f, 0, 1.0f}, 1).sample(v) == first_max(v));
        }
    }
    // A bad entry anywhere in a long row is named, whichever pass finds it.
    const float nan = std::numeric_limits<float>::quiet_NaN();
    std::vector<float> row(49152, 0.5f);
    row[40001] = nan;
    KITE_REQUIRE_THROWS_CONTAINING(kite::model::argmax(row), kite::invalid_argument, "logits[40001] = nan");
    row[40001] = std::numeric_limits<float>::infinity();
    KITE_REQUIRE_THROWS_CONTAINING(kite::model::argmax(row), kite::invalid_argument, "logits[40001] = inf");
    std::fill(row.begin(), row.end(), neg_inf);
    KITE_REQUIRE_THROWS_CONTAINING(kite::model::argmax(row), kite::invalid_argument, "every logit is -inf");
}
