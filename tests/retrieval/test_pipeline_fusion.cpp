#include <fstream>
#include <nlohmann/json.hpp>

#include "kite/retrieval/fusion.hpp"
#include "kite_test.hpp"

using kite::retrieval::ranking;
namespace fusion = kite::fusion;

namespace {
ranking from_ids(std::initializer_list<kite::id_t> ids, float top = 10.f) {
    ranking r;
    float s = top;
    for (auto id : ids) r.push_back({s--, id});
    return r;
}
std::vector<kite::id_t> ids_of(const ranking& r) {
    std::vector<kite::id_t> v;
    for (auto& x : r) v.push_back(x.id);
    return v;
}
}  // namespace

TEST_CASE("rrf: hand-computed example", "[retrieval][fusion]") {
    // dense: 3, 1, 2   bm25: 1, 4      K = 60
    const std::vector<ranking> lists{from_ids({3, 1, 2}), from_ids({1, 4})};
    const auto f = fusion::rrf<60>{}.fuse(lists, 10);
    REQUIRE(f.size() == 4);
    CHECK(ids_of(f) == std::vector<kite::id_t>{1, 3, 4, 2});
    CHECK(f[0].score == Approx(1.0 / 62 + 1.0 / 61));
    CHECK(f[1].score == Approx(1.0 / 61));
    CHECK(f[2].score == Approx(1.0 / 62));  // doc 4: rank 2 in the second list
    CHECK(f[3].score == Approx(1.0 / 63));  // doc 2: rank 3 in the first list
    // Top-k truncation keeps the best.
    CHECK(ids_of(fusion::rrf<60>{}.fuse(lists, 2)) == std::vector<kite::id_t>{1, 3});
}

TEST_CASE("rrf reproduces the seed's reciprocal_rank_fusion", "[retrieval][fusion][fixture]") {
    std::ifstream in(kite::test::fixture("retrieval/pipeline/seed_rrf.json"));
    REQUIRE(in.good());
    const auto j = nlohmann::json::parse(in);
    for (const auto& c : j["cases"]) {
        std::vector<ranking> lists;
        for (const auto& l : c["lists"]) {
            ranking r;
            float s = 100.f;
            for (const auto& id : l) r.push_back({s--, id.get<kite::id_t>()});
            lists.push_back(r);
        }
        fusion::rrf<60> f;
        f.k = c["k"].get<double>();  // the seed uses k = 5; runtime-settable
        const auto& expected = c["fused"];
        if (expected.empty()) {
            CHECK(f.fuse(lists, 100).empty());
            continue;
        }
        const auto got = f.fuse(lists, expected.size());
        REQUIRE(got.size() == expected.size());
        for (std::size_t i = 0; i < got.size(); ++i) {
            INFO("case k=" << f.k << " position " << i);
            CHECK(got[i].id == expected[i][0].get<kite::id_t>());
            CHECK(got[i].score == Approx(expected[i][1].get<double>()).epsilon(1e-6));
        }
    }
}

TEST_CASE("fusion properties", "[retrieval][fusion]") {
    const std::vector<ranking> lists{from_ids({7, 1, 2, 3}), from_ids({7, 3, 9}), from_ids({7, 2})};
    SECTION("a document first in every list is first") {
        CHECK(fusion::rrf<60>{}.fuse(lists, 5)[0].id == 7);
        CHECK(fusion::weighted_rrf{60, {1, 2, 0.5}}.fuse(lists, 5)[0].id == 7);
        CHECK(fusion::comb_sum<>{}.fuse(lists, 5)[0].id == 7);
        CHECK(fusion::comb_mnz<>{}.fuse(lists, 5)[0].id == 7);
        CHECK(fusion::convex<fusion::normalization::zscore>{{0.3, 0.3, 0.4}}.fuse(lists, 5)[0].id == 7);
    }
    SECTION("a weight of zero removes a retriever") {
        const auto w = fusion::weighted_rrf{60, {1, 0, 0}}.fuse(lists, 10);
        CHECK(ids_of(w) == ids_of(fusion::rrf<60>{}.fuse(std::span(lists).first(1), 10)));
        const auto c = fusion::convex<>{{0, 1, 0}}.fuse(lists, 10);
        CHECK(ids_of(c) == std::vector<kite::id_t>{7, 3, 9});
    }
    SECTION("ties: first appearance (earlier list, better rank) wins, deterministically") {
        const std::vector<ranking> tied{from_ids({5, 6}), from_ids({6, 5})};
        const auto f = fusion::rrf<60>{}.fuse(tied, 2);
        CHECK(f[0].score == f[1].score);
        CHECK(ids_of(f) == std::vector<kite::id_t>{5, 6});
    }
    SECTION("CombMNZ multiplies by the number of lists") {
        const std::vector<ranking> two{ranking{{4.f, 1}, {2.f, 2}}, ranking{{9.f, 2}, {1.f, 3}}};
        // minmax: list0 {1: 1, 2: 0}; list1 {2: 1, 3: 0} -> sum {1: 1, 2: 1, 3: 0}; mnz {1:1, 2:2, 3:0}
        const auto s = fusion::comb_sum<>{}.fuse(two, 3);
        const auto m = fusion::comb_mnz<>{}.fuse(two, 3);
        CHECK(ids_of(s) == std::vector<kite::id_t>{1, 2, 3});
        CHECK(ids_of(m) == std::vector<kite::id_t>{2, 1, 3});
        CHECK(m[0].score == Approx(2.0));
    }
    SECTION("z-score and min-max by hand") {
        const std::vector<ranking> one{ranking{{3.f, 10}, {1.f, 11}}, ranking{{5.f, 11}, {5.f, 12}}};
        // zscore list0: {10: +1, 11: -1}; list1 has no spread -> 0
        const auto z = fusion::comb_sum<fusion::normalization::zscore>{}.fuse(one, 3);
        CHECK(z[0].id == 10);
        CHECK(z[0].score == Approx(1.0));
        // minmax list1 with equal scores -> 1 each: {10: 1, 11: 0 + 1, 12: 1}; ties by first appearance
        const auto mm = fusion::comb_sum<>{}.fuse(one, 3);
        CHECK(ids_of(mm) == std::vector<kite::id_t>{10, 11, 12});
    }
    SECTION("bad input") {
        CHECK_THROWS_AS(fusion::rrf<60>{}.fuse(lists, 0), kite::invalid_argument);
        KITE_REQUIRE_THROWS_CONTAINING(fusion::weighted_rrf({60, {1, 2}}).fuse(lists, 3), kite::shape_error,
                                       "2 weights for 3 rankings");
        KITE_REQUIRE_THROWS_CONTAINING(fusion::weighted_rrf({60, {1, -1, 1}}).fuse(lists, 3),
                                       kite::invalid_argument, "weight[1] = -1");
        const std::vector<ranking> nan{ranking{{std::numeric_limits<float>::quiet_NaN(), 1}}};
        CHECK_THROWS_AS(fusion::comb_sum<>{}.fuse(nan, 3), kite::invalid_argument);
        fusion::rrf<60> bad;
        bad.k = -1;
        CHECK_THROWS_AS(bad.fuse(lists, 3), kite::invalid_argument);
    }
    SECTION("empty input") {
        CHECK(fusion::rrf<60>{}.fuse({}, 5).empty());
        const std::vector<ranking> empties(3);
        CHECK(fusion::comb_mnz<>{}.fuse(empties, 5).empty());
    }
}
