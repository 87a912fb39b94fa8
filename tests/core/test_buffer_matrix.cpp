#include <Eigen/Core>
#include <cstdint>
#include <numeric>
#include <random>
#include <limits>
#include <algorithm>

#include "kite/core/buffer.hpp"
#include "kite/core/matrix.hpp"
#include "kite/core/tensor.hpp"
#include "kite/core/checked.hpp"
#include "kite/core/topk.hpp"
#include "kite_test.hpp"

using kite::index_t;

TEST_CASE("aligned_buffer: alignment, zeroing, growth and moves", "[core][buffer]") {
    kite::aligned_buffer<float> empty;
    CHECK(empty.empty());
    CHECK(empty.data() == nullptr);

    for (std::size_t n : {1u, 3u, 17u, 1000u, (3u << 20) / 4u}) {
        kite::aligned_buffer<float> b(n);
        REQUIRE(b.size() == n);
        CHECK(reinterpret_cast<std::uintptr_t>(b.data()) % 64 == 0);
        CHECK(std::all_of(b.begin(), b.end(), [](float x) { return x == 0.0f; }));
    }
    kite::aligned_buffer<std::int32_t> b(5, 7);
    CHECK(std::all_of(b.begin(), b.end(), [](auto x) { return x == 7; }));
    b.resize(9);
    CHECK(b.size() == 9);
    CHECK(b[4] == 7);
    CHECK(b[8] == 0);
    const std::int32_t more[] = {1, 2, 3};
    b.append(more);
    CHECK(b.size() == 12);
    CHECK(b[11] == 3);

    auto c = b.clone();
    kite::aligned_buffer<std::int32_t> moved(std::move(b));
    CHECK(b.empty());
    CHECK(moved.size() == 12);
    CHECK(std::equal(moved.begin(), moved.end(), c.begin()));
    moved.reset();
    CHECK(moved.empty());
}

TEST_CASE("matrix_view: indexing, rows, blocks, strides", "[core][matrix]") {
    std::vector<float> data(4 * 6);
    std::iota(data.begin(), data.end(), 0.0f);
    kite::matrix_view<float> v(data.data(), 4, 5, 6);  // padded rows
    CHECK(v(0, 0) == 0.0f);
    CHECK(v(2, 3) == 15.0f);
    CHECK(v.row(3)[4] == 22.0f);
    CHECK_FALSE(v.contiguous());
    auto b = v.block(1, 2, 2, 2);
    CHECK(b(0, 0) == 8.0f);
    CHECK(b(1, 1) == 15.0f);
    auto r = v.rows_slice(2, 2);
    CHECK(r.rows() == 2);
    CHECK(r(0, 0) == 12.0f);
    kite::matrix_view<const float> cv = v;  // mutable -> const
    CHECK(cv(1, 1) == 7.0f);

    CHECK_THROWS_AS(kite::matrix_view<float>(std::span<float>(data), 5, 5), kite::shape_error);
    KITE_REQUIRE_THROWS_CONTAINING(kite::require_shape(cv, 3, 5, "queries"), kite::shape_error,
                                   "queries has shape 4 x 5; expected 3 x 5");
}

TEST_CASE("matrix and Eigen interoperate without copies", "[core][matrix][eigen]") {
    kite::matrix<float> m(3, 4);
    for (index_t r = 0; r < 3; ++r)
        for (index_t c = 0; c < 4; ++c) m(r, c) = static_cast<float>(10 * r + c);

    auto e = kite::as_eigen(m);
    CHECK(e.data() == m.data());
    CHECK(e(2, 3) == 23.0f);
    e(1, 1) = -1.0f;  // writes through
    CHECK(m(1, 1) == -1.0f);

    // Eigen::Ref parameters accept the map.
    auto sum_ref = [](const Eigen::Ref<const Eigen::Matrix<float, -1, -1, Eigen::RowMajor>,
                                      0, Eigen::OuterStride<>>& x) { return x.sum(); };
    CHECK(sum_ref(kite::as_eigen(m.view())) == Approx(e.sum()));

    // Views of Eigen row-major objects.
    Eigen::Matrix<float, -1, -1, Eigen::RowMajor> em(5, 7);
    em.setRandom();
    auto v = kite::view(em);
    CHECK(v.data() == em.data());
    CHECK(v.rows() == 5);
    CHECK(v.stride() == 7);
    CHECK(v(4, 6) == em(4, 6));
    auto blk = em.block(1, 2, 3, 4);
    auto vb = kite::view(blk);
    CHECK(vb.stride() == 7);
    CHECK(vb(2, 3) == em(3, 5));
    Eigen::Map<const Eigen::Matrix<float, -1, -1, Eigen::RowMajor>> cmap(em.data(), 5, 7);
    auto vc = kite::view(cmap);
    static_assert(std::is_same_v<decltype(vc), kite::matrix_view<const float>>);
    CHECK(vc(3, 3) == em(3, 3));
    Eigen::VectorXf col(4);
    col << 1, 2, 3, 4;
    auto vcol = kite::view(col);
    CHECK(vcol(3, 0) == 4.0f);

    auto copy = kite::matrix<float>(kite::matrix_view<const float>(v));
    CHECK(copy(4, 6) == em(4, 6));
    CHECK(copy.data() != em.data());
}

TEST_CASE("tensor_view: 4-d strided indexing", "[core][tensor]") {
    // [block][kv_head][token][dim] = [2][3][4][5]
    std::vector<int> data(2 * 3 * 4 * 5);
    std::iota(data.begin(), data.end(), 0);
    kite::tensor_view<int, 4> t(data.data(), {2, 3, 4, 5});
    CHECK(t.size() == data.size());
    CHECK(t.stride(0) == 60);
    CHECK(t.stride(3) == 1);
    CHECK(t(1, 2, 3, 4) == 119);
    CHECK(t(1, 0, 2, 1) == 60 + 10 + 1);
    CHECK(t.ptr(1, 1, 1) == data.data() + 60 + 20 + 5);
    kite::tensor_view<const int, 4> ct = t;
    CHECK(ct(0, 1, 0, 0) == 20);
}

#include "kite/core/topk.hpp"

TEST_CASE("topk_heap keeps the best k with ties broken by lower id", "[core][topk]") {
    std::mt19937 g(7);
    for (std::size_t k : {0u, 1u, 3u, 10u, 50u}) {
        for (std::size_t n : {0u, 1u, 5u, 49u, 200u}) {
            std::vector<kite::scored_id> all;
            for (std::size_t i = 0; i < n; ++i)  // few distinct scores: many ties
                all.push_back({static_cast<float>(g() % 7), static_cast<kite::id_t>(g() % 1000)});
            kite::topk_heap<kite::smaller_first> lo(k);
            kite::topk_heap<kite::larger_first> hi(k);
            for (auto& r : all) {
                lo.push(r.score, r.id);
                hi.push(r.score, r.id);
            }
            auto sorted_lo = all, sorted_hi = all;
            std::sort(sorted_lo.begin(), sorted_lo.end(), [](auto a, auto b) {
                return kite::smaller_first::before(a.score, a.id, b.score, b.id);
            });
            std::sort(sorted_hi.begin(), sorted_hi.end(), [](auto a, auto b) {
                return kite::larger_first::before(a.score, a.id, b.score, b.id);
            });
            std::vector<float> s(k + 2);
            std::vector<kite::id_t> ids(k + 2);
            lo.drain(s, ids);
            for (std::size_t i = 0; i < k + 2; ++i) {
                if (i < std::min(k, n)) {
                    REQUIRE(s[i] == sorted_lo[i].score);
                    REQUIRE(ids[i] == sorted_lo[i].id);
                } else {
                    REQUIRE(ids[i] == -1);
                    REQUIRE(s[i] == std::numeric_limits<float>::infinity());
                }
            }
            auto v = hi.drain();
            REQUIRE(v.size() == std::min(k, n));
            for (std::size_t i = 0; i < v.size(); ++i) {
                REQUIRE(v[i].score == sorted_hi[i].score);
                REQUIRE(v[i].id == sorted_hi[i].id);
            }
        }
    }
    // Merging per-thread partial lists equals one pass.
    std::vector<std::vector<kite::scored_id>> parts(3);
    kite::topk_heap<kite::larger_first> one(4);
    for (int i = 0; i < 30; ++i) {
        const float sc = static_cast<float>((i * 7) % 11);
        kite::topk_heap<kite::larger_first> p(4);
        parts[i % 3].push_back({sc, i});
        one.push(sc, i);
    }
    for (auto& p : parts) {
        kite::topk_heap<kite::larger_first> h(4);
        for (auto& r : p) h.push(r.score, r.id);
        p = h.drain();
    }
    auto merged = kite::merge_topk<kite::larger_first>(parts, 4);
    auto direct = one.drain();
    REQUIRE(merged.size() == direct.size());
    for (std::size_t i = 0; i < merged.size(); ++i) CHECK(merged[i].id == direct[i].id);
}

TEST_CASE("sizes that overflow are refused before anything is allocated", "[core][limits]") {
    constexpr std::size_t max = std::numeric_limits<std::size_t>::max();
    CHECK(kite::checked_mul(6, 7, "x") == 42);
    CHECK(kite::checked_mul(0, max, "x") == 0);
    CHECK(kite::checked_add(max - 1, 1, "x") == max);
    KITE_REQUIRE_THROWS_CONTAINING(kite::checked_mul(std::size_t{1} << 33, std::size_t{1} << 31, "matrix of ", 3),
                                   kite::invalid_argument, "matrix of 3: 8589934592 x 2147483648 overflows");
    KITE_REQUIRE_THROWS_CONTAINING(kite::checked_add(max, 1, "buffer"), kite::invalid_argument, "buffer: ");
    KITE_REQUIRE_THROWS_CONTAINING((kite::checked_mul<kite::format_error>(max, 2, "header")), kite::format_error,
                                   "header: ");
    // Element counts whose byte size wraps to a small number once allocated a short buffer.
    KITE_REQUIRE_THROWS_CONTAINING(kite::aligned_buffer<float>(max / 2), kite::invalid_argument,
                                   "9223372036854775807 x 4 overflows");
    KITE_REQUIRE_THROWS_CONTAINING((kite::matrix<double>(max, 2)), kite::invalid_argument, "matrix of ");
    kite::matrix<float> m(2, 2);
    KITE_REQUIRE_THROWS_CONTAINING(m.resize(std::size_t{1} << 40, std::size_t{1} << 40), kite::invalid_argument,
                                   "overflows");
    CHECK(m.rows() == 2);  // unchanged after the refusal
    kite::aligned_buffer<double> b;
    KITE_REQUIRE_THROWS_CONTAINING(b.reserve(max / 4), kite::invalid_argument, "overflows");
    // A top-k of 10^12 keeps what arrives without reserving 10^12 slots.
    kite::topk_heap<kite::larger_first> h(1000000000000);
    for (int i = 0; i < 5; ++i) h.push(static_cast<float>(i), i);
    CHECK(h.size() == 5);
    CHECK(h.drain().front().id == 4);
}
