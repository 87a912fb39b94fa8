#include <atomic>
#include <map>
#include <string>

#include "kite/retrieval/pipeline.hpp"
#include "kite_test.hpp"

using namespace kite::retrieval;

namespace {
// A deterministic toy retriever: scores doc d by a hash of (salt, query, d) over n docs.
struct toy_retriever {
    std::uint64_t salt;
    kite::id_t n = 200;
    mutable std::atomic<int> calls{0};
    toy_retriever(std::uint64_t s) : salt(s) {}
    toy_retriever(const toy_retriever& o) : salt(o.salt), n(o.n) {}
    ranking search(std::string_view q, std::size_t k) const {
        ++calls;
        kite::topk_heap<kite::larger_first> h(k);
        const auto hq = std::hash<std::string_view>{}(q);
        for (kite::id_t d = 0; d < n; ++d) {
            std::uint64_t x = (hq ^ salt) + static_cast<std::uint64_t>(d) * 0x9E3779B97F4A7C15ull;
            x ^= x >> 29;
            x *= 0xBF58476D1CE4E5B9ull;
            x ^= x >> 32;
            h.push(static_cast<float>(x % 1000) / 10.f, d);
        }
        return h.drain();
    }
};
// Reranker: prefers even ids, then lower ids.
struct even_first {
    std::vector<float> score(std::string_view, std::span<const kite::id_t> ids) const {
        std::vector<float> s;
        for (auto id : ids) s.push_back((id % 2 == 0 ? 1000.f : 0.f) - static_cast<float>(id));
        return s;
    }
};
static_assert(retriever<toy_retriever>);
static_assert(reranker<even_first>);
static_assert(fusion_policy<kite::fusion::rrf<60>>);
static_assert(!retriever<even_first>);
}  // namespace

TEST_CASE("pipeline equals the hand-wired composition of its parts", "[retrieval][pipeline]") {
    const toy_retriever a(1), b(2), c(3);
    pipeline<const toy_retriever&, const toy_retriever&, kite::fusion::rrf<60>> p(a, b);
    static_assert(decltype(p)::num_retrievers == 2);
    for (std::string q : {"alpha", "beta", "a longer query", ""}) {
        for (int threads : {1, 2}) {
            const auto got = p.search(q, 10, threads);
            const std::vector<ranking> lists{a.search(q, 100), b.search(q, 100)};
            const auto fused = kite::fusion::rrf<60>{}.fuse(lists, 20);
            REQUIRE(got.size() == 10);
            for (std::size_t i = 0; i < 10; ++i) {
                CHECK(got[i].id == fused[i].id);
                CHECK(got[i].score == fused[i].score);
            }
        }
    }
    // Depths are honoured, and the seed's K = 5 can be set at run time.
    p.depths().retrieve = 30;
    p.fusion().k = 5;
    const auto t = p.trace("alpha", 3);
    CHECK(t.retrieved[0].size() == 30);
    CHECK(t.fused.size() == 20);
    CHECK(t.final.size() == 3);
    kite::fusion::rrf<60> five;
    five.k = 5;
    const std::vector<ranking> lists{a.search("alpha", 30), b.search("alpha", 30)};
    CHECK(t.final[0].id == five.fuse(lists, 3)[0].id);

    // Three retrievers held by value, weighted fusion with a zero weight.
    pipeline<toy_retriever, toy_retriever, toy_retriever, kite::fusion::weighted_rrf> p3(
        kite::fusion::weighted_rrf{60, {1, 0, 1}}, toy_retriever(1), toy_retriever(2), toy_retriever(3));
    const auto r3 = p3.search("gamma", 10);
    const std::vector<ranking> l3{a.search("gamma", 100), c.search("gamma", 100)};
    const auto f3 = kite::fusion::rrf<60>{}.fuse(l3, 10);
    for (std::size_t i = 0; i < 10; ++i) CHECK(r3[i].id == f3[i].id);
}

TEST_CASE("pipeline with a reranker reranks the fused candidates", "[retrieval][pipeline]") {
    const toy_retriever a(5), b(6);
    pipeline<const toy_retriever&, const toy_retriever&, kite::fusion::rrf<60>, even_first> p(a, b);
    const auto t = p.trace("query", 10);
    REQUIRE(t.fused.size() == 30);  // rerank depth
    REQUIRE(t.final.size() == 10);
    // Expected: candidates sorted by the reranker's score.
    std::vector<kite::id_t> cand;
    for (auto& x : t.fused) cand.push_back(x.id);
    const auto s = even_first{}.score("query", cand);
    std::vector<std::size_t> order(cand.size());
    for (std::size_t i = 0; i < order.size(); ++i) order[i] = i;
    std::stable_sort(order.begin(), order.end(), [&](auto x, auto y) { return s[x] > s[y]; });
    for (std::size_t i = 0; i < 10; ++i) CHECK(t.final[i].id == cand[order[i]]);
}

TEST_CASE("dynamic_pipeline equals the static pipeline", "[retrieval][pipeline]") {
    const toy_retriever a(11), b(12);
    pipeline<const toy_retriever&, const toy_retriever&, kite::fusion::rrf<60>> sp(a, b);
    dynamic_pipeline dp({a, b}, kite::fusion::rrf<60>{});
    const std::vector<std::string> qs{"x", "y", "zz", "kite", "retrieval", "", "q7"};
    const auto sb = sp.search_batch(qs, 10);
    const auto db = dp.search_batch(qs, 10, 2);
    REQUIRE(sb.size() == qs.size());
    for (std::size_t q = 0; q < qs.size(); ++q) {
        REQUIRE(sb[q].size() == db[q].size());
        for (std::size_t i = 0; i < sb[q].size(); ++i) CHECK(sb[q][i].id == db[q][i].id);
    }
    // One retriever: its own ranking, no fusion.
    dynamic_pipeline single({a}, kite::fusion::rrf<60>{});
    const auto one = single.search("x", 5);
    const auto direct = a.search("x", 100);
    for (std::size_t i = 0; i < 5; ++i) CHECK(one[i].id == direct[i].id);
    // A runtime reranker and a different fusion.
    dynamic_pipeline rr({a, b}, kite::fusion::comb_mnz<>{},
                        [](std::string_view q, std::span<const kite::id_t> ids) { return even_first{}.score(q, ids); });
    for (auto& r : rr.search("x", 10)) CHECK(r.id % 2 == 0);
    // Owning references keep the retriever alive.
    auto owned = std::make_shared<const toy_retriever>(11);
    dynamic_pipeline own({retriever_ref(owned)}, kite::fusion::rrf<60>{});
    owned.reset();
    CHECK(own.search("x", 3)[0].id == one[0].id);
    // Errors.
    CHECK_THROWS_AS(dynamic_pipeline{}.search("x", 3), kite::invalid_argument);
    CHECK_THROWS_AS(dp.search("x", 0), kite::invalid_argument);
    dynamic_pipeline broken({a}, kite::fusion::rrf<60>{},
                            [](std::string_view, std::span<const kite::id_t>) { return std::vector<float>(1); });
    KITE_REQUIRE_THROWS_CONTAINING(broken.search("x", 3), kite::shape_error, "reranker returned 1 scores");
}
