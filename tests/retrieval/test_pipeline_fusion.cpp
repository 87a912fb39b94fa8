#include <fstream>
#include <nlohmann/json.hpp>

#include "kite/retrieval/fusion.hpp"
#include "kite/retrieval/pipeline.hpp"
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
std::vector<float> scores_of(const ranking& r) {
    std::vector<float> v;
    for (auto& x : r) v.push_back(x.score);
    return v;
}
/// A list with explicit scores, best first: {{id, score}, ...}.
ranking scored(std::initializer_list<std::pair<kite::id_t, float>> entries) {
    ranking r;
    for (auto [id, s] : entries) r.push_back({s, id});
    return r;
}
/// A retriever that returns a fixed ranking (to check that a pipeline hands weights through).
struct fixed_retriever {
    ranking list;
    ranking search(std::string_view, std::size_t k) const {
        return ranking(list.begin(),
                       list.begin() + static_cast<std::ptrdiff_t>(std::min(k, list.size())));
    }
};
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

// ---------------------------------------------------------------------------------------------
// Weighted fusion against hand-computed scores. Fused scores are computed in double and returned
// as float, so scores are compared within 1 float ulp of the double value written out here; a
// fusion that ignored a weight, or applied it to another list, is off by far more (and ranks
// differently: each case notes the order that uniform weights would give).

TEST_CASE("weighted_rrf: weights {1, 3} by hand", "[retrieval][fusion][weights]") {
    // list 0 (w = 1): 7, 1, 2, 3      list 1 (w = 3): 3, 9, 7      k = 60, ranks from 1
    const std::vector<ranking> lists{from_ids({7, 1, 2, 3}), from_ids({3, 9, 7})};
    // doc 3: 1/(60+4) + 3/(60+1) = 0.015625    + 0.049180328 = 0.064805328
    // doc 7: 1/(60+1) + 3/(60+3) = 0.016393443 + 0.047619048 = 0.064012490
    // doc 9:            3/(60+2) =                             0.048387097  (only in list 1)
    // doc 1: 1/(60+2)            =                             0.016129032  (only in list 0)
    // doc 2: 1/(60+3)            =                             0.015873016  (only in list 0)
    // (uniform weights would give 7, 3, 1, 9, 2; weights swapped to {3, 1} 7, 3, 1, 2, 9)
    const std::vector<double> want{1.0 / 64 + 3.0 / 61, 1.0 / 61 + 3.0 / 63, 3.0 / 62, 1.0 / 62,
                                   1.0 / 63};
    const fusion::weighted_rrf f{60, {1, 3}};
    const auto got = f.fuse(lists, 10);
    CHECK(ids_of(got) == std::vector<kite::id_t>{3, 7, 9, 1, 2});
    CHECK(kite::test::max_ulp_diff(scores_of(got), want) <= 1);
    // Top-k truncation keeps the best two with the same scores.
    const auto top2 = f.fuse(lists, 2);
    CHECK(ids_of(top2) == std::vector<kite::id_t>{3, 7});
    CHECK(kite::test::max_ulp_diff(scores_of(top2),
                                   std::vector<double>(want.begin(), want.begin() + 2)) <= 1);
    // The default k is 60.
    CHECK(ids_of(fusion::weighted_rrf{.weights = {1, 3}}.fuse(lists, 10)) == ids_of(got));
}

TEST_CASE("weighted_rrf: weights {0.25, 1, 2} by hand", "[retrieval][fusion][weights]") {
    // list 0 (w = 0.25): 1, 2, 3    list 1 (w = 1): 2, 4    list 2 (w = 2): 4, 5, 1    k = 60
    const std::vector<ranking> lists{from_ids({1, 2, 3}), from_ids({2, 4}), from_ids({4, 5, 1})};
    // doc 4:                  1/(60+2) + 2/(60+1) = 0.016129032 + 0.032786885 = 0.048915918
    // doc 1: 0.25/(60+1)               + 2/(60+3) = 0.004098361 + 0.031746032 = 0.035844392
    // doc 5:                             2/(60+2) =                             0.032258065
    // doc 2: 0.25/(60+2) + 1/(60+1)               = 0.004032258 + 0.016393443 = 0.020425701
    // doc 3: 0.25/(60+3)                          =                             0.003968254
    // (uniform weights would give 2, 4, 1, 5, 3)
    const std::vector<double> want{1.0 / 62 + 2.0 / 61, 0.25 / 61 + 2.0 / 63, 2.0 / 62,
                                   0.25 / 62 + 1.0 / 61, 0.25 / 63};
    const fusion::weighted_rrf f{60, {0.25, 1, 2}};
    const auto got = f.fuse(lists, 10);
    CHECK(ids_of(got) == std::vector<kite::id_t>{4, 1, 5, 2, 3});
    CHECK(kite::test::max_ulp_diff(scores_of(got), want) <= 1);
    const auto top3 = f.fuse(lists, 3);
    CHECK(ids_of(top3) == std::vector<kite::id_t>{4, 1, 5});
    CHECK(kite::test::max_ulp_diff(scores_of(top3),
                                   std::vector<double>(want.begin(), want.begin() + 3)) <= 1);
}

TEST_CASE("weighted_rrf: ties under unequal weights follow first appearance",
          "[retrieval][fusion][weights]") {
    // k = 0 makes the contributions w / rank, so exact ties are easy to build.
    SECTION("weights {1, 3}") {
        // list 0 (w = 1): 4, 8, 6      list 1 (w = 3): 9, 5, 8, 7, 2, 4
        const std::vector<ranking> lists{from_ids({4, 8, 6}), from_ids({9, 5, 8, 7, 2, 4})};
        // doc 9:       3/1 = 3
        // doc 4: 1/1 + 3/6 = 1.5   first seen: list 0, rank 1
        // doc 8: 1/2 + 3/3 = 1.5   first seen: list 0, rank 2 (rank 3 in list 1, behind doc 5)
        // doc 5:       3/2 = 1.5   first seen: list 1, rank 2
        // doc 7:       3/4 = 0.75
        // doc 2:       3/5 = 0.6
        // doc 6: 1/3       = 0.333...
        // The tie 4, 8, 5 is neither id order (4, 5, 8) nor list 1's order (5, 8, 4).
        // (uniform weights would give 4, 9, 8, 5, 6, 7, 2)
        const std::vector<double> want{3, 1.5, 1.5, 1.5, 0.75, 0.6, 1.0 / 3};
        const fusion::weighted_rrf f{0, {1, 3}};
        const auto got = f.fuse(lists, 10);
        CHECK(ids_of(got) == std::vector<kite::id_t>{9, 4, 8, 5, 7, 2, 6});
        CHECK(kite::test::max_ulp_diff(scores_of(got), want) <= 1);
        CHECK(got[1].score == got[2].score);
        CHECK(got[2].score == got[3].score);
        // Truncating inside the tie keeps the earlier appearances.
        CHECK(ids_of(f.fuse(lists, 3)) == std::vector<kite::id_t>{9, 4, 8});
        CHECK(ids_of(f.fuse(lists, 4)) == std::vector<kite::id_t>{9, 4, 8, 5});

        // A retriever of weight 0 is removed, also from the tie-break: an earlier zero-weight
        // list holding the tied documents in the opposite order changes nothing.
        const std::vector<ranking> with_zero{from_ids({5, 8, 4}), lists[0], lists[1]};
        const auto z = fusion::weighted_rrf{0, {0, 1, 3}}.fuse(with_zero, 10);
        CHECK(ids_of(z) == ids_of(got));
        CHECK(kite::test::max_ulp_diff(scores_of(z), want) <= 1);
    }
    SECTION("weights {0.25, 1, 2}") {
        // list 0 (w = 0.25): 1, 2
        // list 1 (w = 1):    3, 4, 5, 1
        // list 2 (w = 2):    6, 5, 7, 8, 2, 9, 10, 3
        const std::vector<ranking> lists{from_ids({1, 2}), from_ids({3, 4, 5, 1}),
                                         from_ids({6, 5, 7, 8, 2, 9, 10, 3})};
        // doc 6:                     2/1 = 2
        // doc 5:          1/3      + 2/2 = 1.333...
        // doc 3:          1/1      + 2/8 = 1.25
        // doc 7:                     2/3 = 0.666...
        // doc 2: 0.25/2            + 2/5 = 0.525
        // doc 1: 0.25/1 + 1/4              = 0.5   first seen: list 0, rank 1
        // doc 4:          1/2              = 0.5   first seen: list 1, rank 2
        // doc 8:                     2/4 = 0.5   first seen: list 2, rank 4
        // doc 9:                     2/6 = 0.333...
        // doc 10:                    2/7 = 0.285...
        // (uniform weights would give 1, 3, 6, 5, 2, 4, 7, 8, 9, 10)
        const std::vector<double> want{2,   4.0 / 3, 1.25, 2.0 / 3, 0.525,
                                       0.5, 0.5,     0.5,  1.0 / 3, 2.0 / 7};
        const auto got = fusion::weighted_rrf{0, {0.25, 1, 2}}.fuse(lists, 20);
        CHECK(ids_of(got) == std::vector<kite::id_t>{6, 5, 3, 7, 2, 1, 4, 8, 9, 10});
        CHECK(kite::test::max_ulp_diff(scores_of(got), want) <= 1);
        CHECK(got[5].score == got[6].score);
        CHECK(got[6].score == got[7].score);
        CHECK(ids_of(fusion::weighted_rrf{0, {0.25, 1, 2}}.fuse(lists, 7)) ==
              std::vector<kite::id_t>{6, 5, 3, 7, 2, 1, 4});
    }
}

TEST_CASE("convex<minmax>: unequal weights by hand", "[retrieval][fusion][weights]") {
    SECTION("weights {1, 3}") {
        // list 0 (w = 1): 1:10, 2:6, 3:2  -> minmax 1, 0.5, 0
        // list 1 (w = 3): 3:8, 4:3, 1:0   -> minmax 1, 3/8 = 0.375, 0
        const std::vector<ranking> lists{scored({{1, 10}, {2, 6}, {3, 2}}),
                                         scored({{3, 8}, {4, 3}, {1, 0}})};
        // doc 3: 1*0   + 3*1     = 3
        // doc 4:         3*0.375 = 1.125   (absent from list 0)
        // doc 1: 1*1   + 3*0     = 1
        // doc 2: 1*0.5           = 0.5     (absent from list 1)
        // (uniform weights would give 1, 3, 2, 4; swapped {3, 1}: 1, 2, 3, 4)
        const auto got = fusion::convex<fusion::normalization::minmax>{{1, 3}}.fuse(lists, 10);
        CHECK(ids_of(got) == std::vector<kite::id_t>{3, 4, 1, 2});
        CHECK(kite::test::max_ulp_diff(scores_of(got), std::vector<double>{3, 1.125, 1, 0.5}) <= 1);
        CHECK(ids_of(fusion::convex<>{{1, 3}}.fuse(lists, 2)) == std::vector<kite::id_t>{3, 4});
    }
    SECTION("weights {0.25, 1, 2}, with ties") {
        // list 0 (w = 0.25): 1:5, 20:3, 30:1        -> 1, 0.5, 0
        // list 1 (w = 1):    20:7, 4:7, 5:3         -> 1, 1, 0   (equal scores: both 1)
        // list 2 (w = 2):    5:9, 1:7, 6:5.5, 7:1   -> 1, 6/8 = 0.75, 4.5/8 = 0.5625, 0
        const std::vector<ranking> lists{scored({{1, 5}, {20, 3}, {30, 1}}),
                                         scored({{20, 7}, {4, 7}, {5, 3}}),
                                         scored({{5, 9}, {1, 7}, {6, 5.5f}, {7, 1}})};
        // doc 5:               1*0 + 2*1      = 2
        // doc 1:  0.25*1           + 2*0.75   = 1.75
        // doc 20: 0.25*0.5   + 1*1            = 1.125   first seen: list 0, rank 2
        // doc 6:                     2*0.5625 = 1.125   first seen: list 2, rank 3
        // doc 4:               1*1            = 1
        // doc 30: 0.25*0                      = 0       first seen: list 0, rank 3
        // doc 7:                     2*0      = 0       first seen: list 2, rank 4
        // (uniform weights would give 1, 20, 4, 5, 6, 30, 7)
        const fusion::convex<fusion::normalization::minmax> f{{0.25, 1, 2}};
        const auto got = f.fuse(lists, 10);
        CHECK(ids_of(got) == std::vector<kite::id_t>{5, 1, 20, 6, 4, 30, 7});
        CHECK(kite::test::max_ulp_diff(scores_of(got),
                                       std::vector<double>{2, 1.75, 1.125, 1.125, 1, 0, 0}) <= 1);
        CHECK(got[2].score == got[3].score);
        CHECK(ids_of(f.fuse(lists, 3)) == std::vector<kite::id_t>{5, 1, 20});
    }
}

TEST_CASE("convex<zscore>: unequal weights by hand", "[retrieval][fusion][weights]") {
    SECTION("weights {1, 3}") {
        // list 0 (w = 1): 1:3, 2:1       mean 2, sd 1          -> z +1, -1
        // list 1 (w = 3): 2:6, 3:4, 4:2  mean 4, sd sqrt(8/3)  -> z +r, 0, -r
        //                 r = 2/sqrt(8/3) = 1.2247449
        const std::vector<ranking> lists{scored({{1, 3}, {2, 1}}),
                                         scored({{2, 6}, {3, 4}, {4, 2}})};
        const double r = 2 / std::sqrt(8.0 / 3);
        // doc 2: 1*(-1) + 3*r    = 2.6742346
        // doc 1: 1*(+1)          = 1           (absent from list 1: contributes 0, i.e. the mean)
        // doc 3:          3*0    = 0
        // doc 4:          3*(-r) = -3.6742346
        // (uniform weights would give 1, 2, 3, 4)
        const auto got = fusion::convex<fusion::normalization::zscore>{{1, 3}}.fuse(lists, 10);
        CHECK(ids_of(got) == std::vector<kite::id_t>{2, 1, 3, 4});
        CHECK(kite::test::max_ulp_diff(scores_of(got),
                                       std::vector<double>{-1 + 3 * r, 1, 0, 3 * -r}) <= 1);
    }
    SECTION("weights {0.25, 1, 2}, with a tie") {
        // list 0 (w = 0.25): 1:9, 15:5, 2:1   mean 5,   sd sqrt(32/3)  -> z +a, 0, -a
        // list 1 (w = 1):    3:5, 6:4.5, 1:4  mean 4.5, sd sqrt(0.5/3) -> z +b, 0, -b
        // list 2 (w = 2):    2:8, 4:0         mean 4,   sd 4           -> z +1, -1
        // with a = 4/sqrt(32/3) and b = 0.5/sqrt(0.5/3)
        // (a = b = sqrt(1.5) = 1.2247449 mathematically; written as computed)
        const std::vector<ranking> lists{scored({{1, 9}, {15, 5}, {2, 1}}),
                                         scored({{3, 5}, {6, 4.5f}, {1, 4}}),
                                         scored({{2, 8}, {4, 0}})};
        const double a = 4 / std::sqrt(32.0 / 3), b = 0.5 / std::sqrt(0.5 / 3);
        // doc 2:  0.25*(-a)         + 2*1  = 1.6938138
        // doc 3:             1*b           = 1.2247449
        // doc 15: 0.25*0                   = 0          first seen: list 0, rank 2
        // doc 6:             1*0           = 0          first seen: list 1, rank 2
        // doc 1:  0.25*a   + 1*(-b)        = -0.9185587
        // doc 4:                    2*(-1) = -2
        // (uniform weights would give 3, then 15, 6 and 1 all about 0, 2, 4)
        const fusion::convex<fusion::normalization::zscore> f{{0.25, 1, 2}};
        const auto got = f.fuse(lists, 10);
        CHECK(ids_of(got) == std::vector<kite::id_t>{2, 3, 15, 6, 1, 4});
        CHECK(kite::test::max_ulp_diff(scores_of(got), std::vector<double>{0.25 * -a + 2, b, 0, 0,
                                                                           0.25 * a - b, -2}) <= 1);
        CHECK(ids_of(f.fuse(lists, 3)) == std::vector<kite::id_t>{2, 3, 15});
    }
}

TEST_CASE("convex<none>: raw scores times weights", "[retrieval][fusion][weights]") {
    // list 0 (w = 1): 1:2, 2:1      list 1 (w = 3): 2:0.5, 3:0.25
    const std::vector<ranking> lists{scored({{1, 2}, {2, 1}}), scored({{2, 0.5f}, {3, 0.25f}})};
    // doc 2: 1*1 + 3*0.5 = 2.5;  doc 1: 1*2 = 2;  doc 3: 3*0.25 = 0.75   (uniform: 1, 2, 3)
    const auto got = fusion::convex<fusion::normalization::none>{{1, 3}}.fuse(lists, 10);
    CHECK(ids_of(got) == std::vector<kite::id_t>{2, 1, 3});
    CHECK(kite::test::max_ulp_diff(scores_of(got), std::vector<double>{2.5, 2, 0.75}) <= 1);
}

TEST_CASE("weighted fusion: all-zero weights leave nothing", "[retrieval][fusion][weights]") {
    const std::vector<ranking> lists{from_ids({1, 2}), from_ids({2, 3})};
    CHECK(fusion::weighted_rrf{60, {0, 0}}.fuse(lists, 5).empty());
    CHECK(fusion::convex<>{{0, 0}}.fuse(lists, 5).empty());
}

TEMPLATE_TEST_CASE("weighted fusion rejects bad weights", "[retrieval][fusion][weights]",
                   fusion::weighted_rrf, fusion::convex<fusion::normalization::minmax>,
                   fusion::convex<fusion::normalization::zscore>,
                   fusion::convex<fusion::normalization::none>) {
    const std::vector<ranking> lists{from_ids({7, 1}), from_ids({7, 3}), from_ids({2})};
    const auto with = [](std::vector<double> w) {
        TestType f{};
        f.weights = std::move(w);
        return f;
    };
    const double nan = std::numeric_limits<double>::quiet_NaN();
    const double inf = std::numeric_limits<double>::infinity();
    KITE_REQUIRE_THROWS_CONTAINING(with({1, 3}).fuse(lists, 3), kite::shape_error,
                                   "2 weights for 3 rankings");
    KITE_REQUIRE_THROWS_CONTAINING(with({0.25, 1, 2, 4}).fuse(lists, 3), kite::shape_error,
                                   "4 weights for 3 rankings");
    KITE_REQUIRE_THROWS_CONTAINING(with({1}).fuse({}, 3), kite::shape_error,
                                   "1 weights for 0 rankings");
    KITE_REQUIRE_THROWS_CONTAINING(with({0.25, -1, 2}).fuse(lists, 3), kite::invalid_argument,
                                   "weight[1] = -1");
    KITE_REQUIRE_THROWS_CONTAINING(with({0.25, 1, nan}).fuse(lists, 3), kite::invalid_argument,
                                   "weight[2] = nan; expected a finite weight >= 0");
    KITE_REQUIRE_THROWS_CONTAINING(with({inf, 1, 2}).fuse(lists, 3), kite::invalid_argument,
                                   "weight[0] = inf; expected a finite weight >= 0");
    // A bad weight on a list is an error even when another weight is zero.
    KITE_REQUIRE_THROWS_CONTAINING(with({0, -0.5, 1}).fuse(lists, 3), kite::invalid_argument,
                                   "weight[1] = -0.5");
    // Empty weights mean all 1: the same ranking as explicit ones.
    CHECK(ids_of(with({}).fuse(lists, 5)) == ids_of(with({1, 1, 1}).fuse(lists, 5)));
    CHECK(kite::test::max_ulp_diff(scores_of(with({}).fuse(lists, 5)),
                                   scores_of(with({1, 1, 1}).fuse(lists, 5))) == 0);
}

TEST_CASE("weighted_rrf rejects a bad rank constant", "[retrieval][fusion][weights]") {
    const std::vector<ranking> lists{from_ids({1}), from_ids({2})};
    CHECK_THROWS_AS((fusion::weighted_rrf{-1, {1, 3}}.fuse(lists, 2)), kite::invalid_argument);
    CHECK_THROWS_AS(
        (fusion::weighted_rrf{std::numeric_limits<double>::quiet_NaN(), {1, 3}}.fuse(lists, 2)),
        kite::invalid_argument);
    CHECK_THROWS_AS((fusion::weighted_rrf{60, {1, 3}}.fuse(lists, 0)), kite::invalid_argument);
}

TEST_CASE("pipelines hand the weights to the fusion, list i to retriever i",
          "[retrieval][fusion][weights]") {
    // The lists of "weighted_rrf: weights {1, 3} by hand": expected 3, 7, 9, 1, 2.
    const fixed_retriever a{from_ids({7, 1, 2, 3})}, b{from_ids({3, 9, 7})};
    const std::vector<kite::id_t> want{3, 7, 9, 1, 2};
    kite::retrieval::pipeline<const fixed_retriever&, const fixed_retriever&, fusion::weighted_rrf>
        p(fusion::weighted_rrf{60, {1, 3}}, a, b);
    const auto t = p.trace("q", 5, 1);
    CHECK(ids_of(t.fused) == want);
    CHECK(kite::test::max_ulp_diff(scores_of(t.final),
                                   std::vector<double>{1.0 / 64 + 3.0 / 61, 1.0 / 61 + 3.0 / 63,
                                                       3.0 / 62, 1.0 / 62, 1.0 / 63}) <= 1);
    kite::retrieval::dynamic_pipeline dp({a, b}, fusion::weighted_rrf{60, {1, 3}});
    CHECK(ids_of(dp.search("q", 5, 1)) == want);
    // Swapping the retrievers swaps which list gets weight 3: 7 (3/61 + 1/63) now leads.
    kite::retrieval::dynamic_pipeline swapped({b, a}, fusion::weighted_rrf{60, {1, 3}});
    CHECK(ids_of(swapped.search("q", 5, 1)) == std::vector<kite::id_t>{7, 3, 1, 2, 9});
}
