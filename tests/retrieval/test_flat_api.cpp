// flat_index API: ids, add_with_ids, remove_ids, reconstruct, reset, range_search, padding,
// errors on bad input, cosine normalisation and concurrent searches.
#include <cmath>
#include <limits>
#include <thread>

#include "flat_test_util.hpp"
#include "kite/retrieval/flat_index.hpp"

namespace {

using kite::index_t;
using kite::retrieval::flat_index;
using kite::retrieval::flat_kernel;
using kite::retrieval::search_options;
namespace kt = kite::test::flat;

constexpr flat_kernel kernels[] = {flat_kernel::scan, flat_kernel::gemm, flat_kernel::automatic};

}  // namespace

TEST_CASE("flat_index assigns ids like FAISS; k beyond size() returns every vector", "[retrieval][flat]") {
    flat_index<kite::metric::l2> index(2);
    CHECK(index.dim() == 2);
    CHECK(index.empty());
    const std::vector<float> v = {0, 0, 1, 0, 3, 0};
    index.add(v);
    CHECK(index.size() == 3);
    CHECK(index.has_sequential_ids());
    CHECK(index.ids()[2] == 2);
    const std::vector<float> q = {0.9f, 0};
    for (const auto kern : kernels) {
        const auto r = index.search(q, 5, {1, kern});
        REQUIRE(r.labels.cols() == 3);  // min(k, size())
        CHECK(r.labels(0, 0) == 1);
        CHECK(r.labels(0, 1) == 0);
        CHECK(r.labels(0, 2) == 2);
        CHECK(r.distances(0, 0) == Approx(0.01f));
        CHECK(r.distances(0, 1) == Approx(0.81f));
        CHECK(r.distances(0, 2) == Approx(4.41f));
        // Caller-owned [nq][k] outputs are padded as FAISS pads: id -1, the worst distance.
        kite::matrix<float> d(1, 5);
        kite::matrix<kite::id_t> l(1, 5);
        index.search(kite::matrix_view<const float>(q.data(), 1, 2), 5, d.view(), l.view(), {1, kern});
        CHECK(l(0, 2) == 2);
        CHECK(l(0, 3) == -1);
        CHECK(l(0, 4) == -1);
        CHECK(d(0, 3) == std::numeric_limits<float>::infinity());
    }
    flat_index<kite::metric::inner_product> ip(2);
    ip.add(v);
    kite::matrix<float> d(1, 4);
    kite::matrix<kite::id_t> l(1, 4);
    ip.search(kite::matrix_view<const float>(q.data(), 1, 2), 4, d.view(), l.view());
    CHECK(l(0, 0) == 2);
    CHECK(d(0, 0) == Approx(2.7f));
    CHECK(l(0, 3) == -1);
    CHECK(d(0, 3) == -std::numeric_limits<float>::infinity());
    CHECK(ip.search(q, 4).labels.cols() == 3);
}

TEST_CASE("flat_index: a huge k is capped before anything is allocated", "[retrieval][flat][limits]") {
    flat_index<kite::metric::l2> index(3);
    index.add(kt::make_data(kt::data_kind::random, 7, 3, 5).view());
    const auto q = kt::make_data(kt::data_kind::random, 2, 3, 6);
    // SIZE_MAX once wrapped the result size to a small buffer that the top-k wrote past.
    for (const kite::index_t k : {kite::index_t{8}, kite::index_t{1000000000000}, std::numeric_limits<kite::index_t>::max()}) {
        const auto r = index.search(q.view(), k);
        CHECK(r.labels.rows() == 2);
        CHECK(r.labels.cols() == 7);
        CHECK(r.distances.cols() == 7);
        const auto ref = index.search(q.view(), 7);
        CHECK(std::equal(r.labels.flat().begin(), r.labels.flat().end(), ref.labels.flat().begin()));
    }
    // Caller-owned outputs of a shape that cannot exist are refused by their shape check, and a
    // matrix whose element count overflows is refused before allocating.
    KITE_REQUIRE_THROWS_CONTAINING((kite::matrix<float>(std::numeric_limits<kite::index_t>::max(), 3)),
                                   kite::invalid_argument, "overflows");
    KITE_REQUIRE_THROWS_CONTAINING((kite::matrix<float>(std::size_t{1} << 62, 1)), kite::invalid_argument,
                                   "aligned_buffer of 4611686018427387904 elements of 4 bytes");
}

TEST_CASE("flat_index: empty index, empty batch, caller-owned outputs", "[retrieval][flat]") {
    flat_index<kite::metric::l2> index(4);
    const auto q = kt::make_data(kt::data_kind::random, 3, 4, 1);
    const auto r = index.search(q.view(), 2);
    REQUIRE(r.labels.rows() == 3);
    CHECK(r.labels.cols() == 0);  // nothing stored: nothing to return
    kite::matrix<float> pad_d(3, 2);
    kite::matrix<kite::id_t> pad_l(3, 2);
    index.search(q.view(), 2, pad_d.view(), pad_l.view());
    for (kite::id_t l : pad_l.flat()) CHECK(l == -1);
    for (float d : pad_d.flat()) CHECK(d == std::numeric_limits<float>::infinity());
    index.add(kt::make_data(kt::data_kind::random, 10, 4, 2).view());
    const auto none = index.search(kite::matrix_view<const float>(nullptr, 0, 4), 3);
    CHECK(none.labels.rows() == 0);
    CHECK(index.range_search(kite::matrix_view<const float>(nullptr, 0, 4), 1.0f).lims.size() == 1);
    // Into strided, caller-owned views.
    kite::matrix<float> dist(3, 8, -7.f);
    kite::matrix<kite::id_t> lab(3, 8, kite::id_t{-7});
    index.search(q.view(), 3, dist.view().block(0, 0, 3, 3), lab.view().block(0, 2, 3, 3));
    const auto ref = index.search(q.view(), 3);
    for (index_t i = 0; i < 3; ++i)
        for (index_t j = 0; j < 3; ++j) {
            CHECK(dist(i, j) == ref.distances(i, j));
            CHECK(lab(i, j + 2) == ref.labels(i, j));
        }
    CHECK(dist(0, 3) == -7.f);  // nothing written outside the view
    CHECK(lab(0, 0) == -7);
}

TEST_CASE("flat_index rejects bad input with kite errors", "[retrieval][flat]") {
    KITE_REQUIRE_THROWS_CONTAINING(flat_index<kite::metric::l2>(0), kite::invalid_argument, "dim = 0");
    flat_index<kite::metric::l2> index(3);
    const auto x = kt::make_data(kt::data_kind::random, 4, 3, 1);
    index.add(x.view());
    const auto wrong = kt::make_data(kt::data_kind::random, 2, 5, 1);
    KITE_REQUIRE_THROWS_CONTAINING(index.add(wrong.view()), kite::shape_error, "expected dim 3");
    KITE_REQUIRE_THROWS_CONTAINING(index.search(wrong.view(), 1), kite::shape_error, "queries of dim 5");
    KITE_REQUIRE_THROWS_CONTAINING(index.range_search(wrong.view(), 1.f), kite::shape_error, "expected dim 3");
    KITE_REQUIRE_THROWS_CONTAINING(index.search(x.view(), 0), kite::invalid_argument, "k = 0");
    KITE_REQUIRE_THROWS_CONTAINING(index.add(std::vector<float>(4, 1.f)), kite::shape_error, "multiple of 3");
    auto bad = x.clone();
    bad(2, 1) = std::numeric_limits<float>::quiet_NaN();
    KITE_REQUIRE_THROWS_CONTAINING(index.add(bad.view()), kite::invalid_argument, "[2][1]");
    KITE_REQUIRE_THROWS_CONTAINING(index.search(bad.view(), 1), kite::invalid_argument, "finite");
    bad(2, 1) = std::numeric_limits<float>::infinity();
    KITE_REQUIRE_THROWS_CONTAINING(index.search(bad.view(), 1), kite::invalid_argument, "finite");
    KITE_REQUIRE_THROWS_CONTAINING(index.range_search(x.view(), std::nanf("")), kite::invalid_argument, "radius");
    CHECK(index.size() == 4);  // failed calls change nothing
    kite::matrix<float> d(4, 2);
    kite::matrix<kite::id_t> l(4, 3);
    KITE_REQUIRE_THROWS_CONTAINING(index.search(x.view(), 2, d.view(), l.view()), kite::shape_error, "labels");
    const std::vector<kite::id_t> dup = {7, 7};
    KITE_REQUIRE_THROWS_CONTAINING(index.add_with_ids(x.view().rows_slice(0, 2), dup), kite::invalid_argument,
                                   "already in use");
    const std::vector<kite::id_t> taken = {1, 9};
    KITE_REQUIRE_THROWS_CONTAINING(index.add_with_ids(x.view().rows_slice(0, 2), taken), kite::invalid_argument,
                                   "ids[0] = 1");
    const std::vector<kite::id_t> neg = {-1};
    KITE_REQUIRE_THROWS_CONTAINING(index.add_with_ids(x.view().rows_slice(0, 1), neg), kite::invalid_argument,
                                   "non-negative");
    KITE_REQUIRE_THROWS_CONTAINING(index.add_with_ids(x.view().rows_slice(0, 2), neg), kite::shape_error,
                                   "one id per vector");
    KITE_REQUIRE_THROWS_CONTAINING(index.reconstruct(99), kite::not_found_error, "id 99");
    CHECK(index.size() == 4);
    CHECK(index.has_sequential_ids());
}

TEST_CASE("flat_index add_with_ids, reconstruct, remove_ids and reset", "[retrieval][flat]") {
    const index_t d = 5;
    const auto x = kt::make_data(kt::data_kind::random, 40, d, 11);
    flat_index<kite::metric::l2> index(d);
    index.add(x.view().rows_slice(0, 10));                     // ids 0..9
    std::vector<kite::id_t> ids;
    for (index_t i = 0; i < 20; ++i) ids.push_back(1000 - 7 * static_cast<kite::id_t>(i));  // descending ids
    index.add_with_ids(x.view().rows_slice(10, 20), ids);
    CHECK_FALSE(index.has_sequential_ids());
    CHECK(index.next_id() == 1001);
    index.add(x.view().rows_slice(30, 10));                    // ids 1001..1010
    REQUIRE(index.size() == 40);
    CHECK(index.ids()[39] == 1010);
    CHECK(index.contains(1000 - 7 * 19));
    CHECK_FALSE(index.contains(11));
    const auto v = index.reconstruct(1000 - 7 * 4);
    CHECK(std::equal(v.begin(), v.end(), x.row(14).begin()));
    CHECK(index.reconstruct(1005) == std::vector<float>(x.row(34).begin(), x.row(34).end()));

    // Search reports the caller's ids; the oracle sees the same ids.
    std::vector<kite::id_t> all_ids(index.ids().begin(), index.ids().end());
    const auto q = kt::make_data(kt::data_kind::random, 9, d, 12);
    const kt::oracle<kite::metric::l2> o(x.view(), all_ids, q.view());
    for (const auto kern : kernels)
        for (int t : {1, 2}) kt::check_against_oracle(o, 12, index.search(q.view(), 12, {t, kern}), false, "ids");

    // Ties between equal vectors are broken by the lower id, not by insertion order.
    flat_index<kite::metric::l2> tie(2);
    const std::vector<float> same = {1, 1, 1, 1, 1, 1};
    const std::vector<kite::id_t> tie_ids = {50, 20, 30};
    tie.add_with_ids(kite::matrix_view<const float>(same.data(), 3, 2), tie_ids);
    for (const auto kern : kernels) {
        const auto r = tie.search(std::vector<float>{0, 0}, 2, {1, kern});
        CHECK(r.labels(0, 0) == 20);
        CHECK(r.labels(0, 1) == 30);
    }

    // remove_ids keeps the remaining ids and their order; unknown ids are ignored.
    const std::vector<kite::id_t> drop = {3, 1000, 1010, 123456};
    CHECK(index.remove_ids(drop) == 3);
    CHECK(index.size() == 37);
    CHECK_FALSE(index.contains(3));
    CHECK(index.contains(4));
    CHECK(index.reconstruct(4) == std::vector<float>(x.row(4).begin(), x.row(4).end()));
    CHECK(index.reconstruct(1009) == std::vector<float>(x.row(38).begin(), x.row(38).end()));
    kite::matrix<float> kept(37, d);
    std::vector<kite::id_t> kept_ids;
    for (index_t i = 0, w = 0; i < 40; ++i) {
        if (all_ids[i] == 3 || all_ids[i] == 1000 || all_ids[i] == 1010) continue;
        std::copy_n(x.row(i).data(), d, kept.row(w++).data());
        kept_ids.push_back(all_ids[i]);
    }
    CHECK(std::equal(kept_ids.begin(), kept_ids.end(), index.ids().begin()));
    const kt::oracle<kite::metric::l2> o2(kept.view(), kept_ids, q.view());
    // 37 vectors remain; caller-owned [nq][40] outputs show the padding of the last three.
    kite::retrieval::search_result padded{kite::matrix<float>(9, 40), kite::matrix<kite::id_t>(9, 40)};
    index.search(q.view(), 40, padded.distances.view(), padded.labels.view());
    kt::check_against_oracle(o2, 40, padded, false, "after remove");
    CHECK(index.search(q.view(), 40).labels.cols() == 37);

    // Removing the tail of a sequential index keeps it sequential (plain FAISS format).
    flat_index<kite::metric::l2> seq(d);
    seq.add(x.view());
    const std::vector<kite::id_t> tail = {39, 38};
    CHECK(seq.remove_ids(tail) == 2);
    CHECK(seq.has_sequential_ids());
    CHECK(seq.next_id() == 40);  // ids are never reused
    const std::vector<kite::id_t> mid = {5};
    seq.remove_ids(mid);
    CHECK_FALSE(seq.has_sequential_ids());

    index.reset();
    CHECK(index.size() == 0);
    CHECK(index.has_sequential_ids());
    index.add(x.view().rows_slice(0, 2));
    CHECK(index.ids()[0] == 0);
    CHECK(index.ids()[1] == 1);
}

TEST_CASE("flat range_search equals the oracle for every kernel", "[retrieval][flat]") {
    const index_t d = 24;
    const auto x = kt::make_data(kt::data_kind::clustered, 300, d, 21);
    auto q = kt::make_data(kt::data_kind::random, 40, d, 22);
    for (index_t j = 0; j < q.rows(); ++j)  // queries near stored vectors: clusters are in range
        for (index_t c = 0; c < d; ++c) q(j, c) = x(j * 7, c) + 5e-3f * q(j, c);
    std::vector<kite::id_t> ids(300);
    for (index_t i = 0; i < 300; ++i) ids[i] = static_cast<kite::id_t>(i);
    auto check = [&](auto index) {
        using M = typename decltype(index)::metric_type;
        constexpr bool l2 = std::is_same_v<M, kite::metric::l2>;
        // The radius sits in the widest gap of the oracle's scores, far from any boundary case.
        std::vector<std::vector<kite::retrieval::reference::hit>> ranked;
        std::vector<double> scores;
        for (index_t j = 0; j < q.rows(); ++j) {
            ranked.push_back(kite::retrieval::reference::rank_all<M>(x.view(), ids, q.row(j).data()));
            for (const auto& h : ranked.back()) scores.push_back(h.score);
        }
        std::sort(scores.begin(), scores.end());
        std::size_t gap = scores.size() / 8;
        for (std::size_t i = scores.size() / 8; i < scores.size() * 7 / 8; ++i)
            if (scores[i + 1] - scores[i] > scores[gap + 1] - scores[gap]) gap = i;
        const float radius = static_cast<float>((scores[gap] + scores[gap + 1]) / 2);
        index.add(x.view());
        for (const auto kern : kernels)
            for (int t : {1, 2}) {
                INFO(M::name << " kernel " << static_cast<int>(kern) << " threads " << t << " radius " << radius);
                const auto r = index.range_search(q.view(), radius, {t, kern});
                REQUIRE(r.lims.size() == q.rows() + 1);
                std::size_t total = 0;
                for (index_t j = 0; j < q.rows(); ++j) {
                    std::vector<kite::id_t> want;
                    for (const auto& h : ranked[j])
                        if (l2 ? h.score < radius : h.score > radius) want.push_back(h.id);
                    std::vector<kite::id_t> got(r.labels.begin() + static_cast<std::ptrdiff_t>(r.lims[j]),
                                                r.labels.begin() + static_cast<std::ptrdiff_t>(r.lims[j + 1]));
                    for (std::size_t i = r.lims[j]; i < r.lims[j + 1]; ++i) {
                        double ref = 0;  // the oracle's score of the returned id
                        for (const auto& h : ranked[j])
                            if (h.id == r.labels[i]) ref = h.score;
                        CHECK(r.distances[i] == Approx(ref).epsilon(1e-4).margin(1e-4));
                        if (i > r.lims[j]) {  // best first by kite's own scores, ties by lower id
                            const float a = r.distances[i - 1], b = r.distances[i];
                            CHECK((l2 ? a < b : a > b) | (a == b && r.labels[i - 1] < r.labels[i]));
                        }
                    }
                    std::sort(got.begin(), got.end());
                    std::sort(want.begin(), want.end());
                    CHECK(got == want);  // the same set as the oracle
                    total += want.size();
                }
                CHECK(total > 0);
                CHECK(total < 300 * 40);
                CHECK(r.distances.size() == total);
            }
    };
    check(flat_index<kite::metric::l2>(d));
    check(flat_index<kite::metric::inner_product>(d));
}

TEST_CASE("flat cosine normalises on add and on search", "[retrieval][flat]") {
    flat_index<kite::metric::cosine> index(3);
    const std::vector<float> v = {3, 0, 0, 0, 5, 0, 1, 1, 0, 0, 0, 0};
    index.add(v);
    const auto r0 = index.reconstruct(0);
    CHECK(r0[0] == Approx(1.0f));
    CHECK(index.reconstruct(3) == std::vector<float>(3, 0.f));  // zero stays zero
    const auto r = index.search(std::vector<float>{10, 10, 0}, 4);
    CHECK(r.labels(0, 0) == 2);
    CHECK(r.distances(0, 0) == Approx(1.0f));
    CHECK(r.distances(0, 1) == Approx(std::sqrt(0.5f)));
    CHECK(r.labels(0, 1) == 0);  // tie with id 1 broken by the lower id
    CHECK(r.labels(0, 2) == 1);
    CHECK(r.labels(0, 3) == 3);
    CHECK(r.distances(0, 3) == 0.f);
    std::vector<float> u = {3, 4};
    kite::metric::normalize(u);
    CHECK(u[0] == Approx(0.6f));
    CHECK(u[1] == Approx(0.8f));
    // Squared norms that underflow (denormal components) or overflow float still normalise.
    for (const float scale : {1e-40f, 1e-25f, 1e25f, 3e38f}) {
        std::vector<float> w = {0.6f * scale, 0.8f * scale};
        kite::metric::normalize(w);
        CHECK(w[0] == Approx(0.6f).epsilon(1e-3));
        CHECK(w[1] == Approx(0.8f).epsilon(1e-3));
    }
}

TEST_CASE("flat search is safe from several threads at once", "[retrieval][flat]") {
    const index_t d = 48;
    const auto x = kt::make_data(kt::data_kind::random, 2000, d, 31);
    const auto q = kt::make_data(kt::data_kind::random, 64, d, 32);
    flat_index<kite::metric::l2> index(d);
    index.add(x.view());
    const auto ref = index.search(q.view(), 10, {1, flat_kernel::scan});
    std::vector<int> ok(8, 0);
    std::vector<std::thread> pool;
    for (int t = 0; t < 8; ++t)
        pool.emplace_back([&, t] {
            // Mixed kernels, batch sizes and inner thread counts, all at once.
            const flat_kernel kern = kernels[t % 3];
            const index_t nq = t % 2 ? 64 : 3;
            bool all = true;
            for (int rep = 0; rep < 5; ++rep) {
                const auto r = index.search(q.view().rows_slice(0, nq), 10, {1 + t % 2, kern});
                for (index_t i = 0; i < nq * 10; ++i)
                    all = all && r.labels.flat()[i] == ref.labels.flat()[i] &&
                          r.distances.flat()[i] == ref.distances.flat()[i];
            }
            ok[static_cast<std::size_t>(t)] = all ? 1 : 0;
        });
    for (auto& th : pool) th.join();
    for (int t = 0; t < 8; ++t) CHECK(ok[static_cast<std::size_t>(t)] == 1);
}
