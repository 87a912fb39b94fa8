#include <atomic>
#include <stdexcept>
#include <vector>

#include "kite/core/parallel.hpp"
#include "kite_test.hpp"

TEST_CASE("parallel_for visits every index exactly once", "[core][parallel]") {
    for (std::size_t n : {0u, 1u, 2u, 3u, 17u, 1000u}) {
        for (int threads : {0, 1, 2, 3, 8}) {
            std::vector<std::atomic<int>> hits(n);
            kite::parallel_for(0, n, [&](std::size_t i) { hits[i].fetch_add(1); }, threads);
            for (std::size_t i = 0; i < n; ++i) REQUIRE(hits[i].load() == 1);
        }
    }
    std::vector<std::atomic<int>> hits(10);
    kite::parallel_for(5, 10, [&](std::size_t i) { hits[i].fetch_add(1); });
    for (std::size_t i = 0; i < 10; ++i) CHECK(hits[i].load() == (i >= 5 ? 1 : 0));
}

TEST_CASE("parallel_chunks partitions the range statically", "[core][parallel]") {
    const std::size_t n = 1001;
    std::vector<std::atomic<int>> hits(n);
    std::atomic<std::size_t> chunks{0};
    kite::parallel_chunks(
        n,
        [&](std::size_t b, std::size_t e, int tid) {
            CHECK(b < e);
            CHECK(tid >= 0);
            chunks.fetch_add(1);
            for (std::size_t i = b; i < e; ++i) hits[i].fetch_add(1);
        },
        2);
    for (auto& h : hits) REQUIRE(h.load() == 1);
    CHECK(chunks.load() == static_cast<std::size_t>(kite::resolve_threads(2, n)));
}

TEST_CASE("parallel_chunks2 runs its second phase after the whole first", "[core][parallel]") {
    for (std::size_t n1 : {0u, 1u, 5u, 1000u})
        for (std::size_t n2 : {0u, 1u, 3u, 1000u})
            for (int threads : {1, 2, 3, 8}) {
                std::vector<std::atomic<int>> first(n1), second(n2);
                std::atomic<int> incomplete{0};
                kite::parallel_chunks2(
                    n1, [&](std::size_t b, std::size_t e, int) { for (std::size_t i = b; i < e; ++i) first[i].fetch_add(1); },
                    n2,
                    [&](std::size_t b, std::size_t e, int) {
                        // Every chunk of the second phase sees every item of the first done.
                        for (auto& f : first)
                            if (f.load() != 1) incomplete.fetch_add(1);
                        for (std::size_t i = b; i < e; ++i) second[i].fetch_add(1);
                    },
                    threads);
                INFO("n1 " << n1 << ", n2 " << n2 << ", threads " << threads);
                for (auto& f : first) REQUIRE(f.load() == 1);
                for (auto& s : second) REQUIRE(s.load() == 1);
                CHECK(incomplete.load() == 0);
            }
    // A first-phase exception reaches the caller and the second phase does not run.
    std::atomic<int> ran{0};
    CHECK_THROWS_AS(kite::parallel_chunks2(
                        100,
                        [](std::size_t b, std::size_t e, int) {
                            for (std::size_t i = b; i < e; ++i)
                                if (i == 70) throw std::runtime_error("boom");
                        },
                        100, [&](std::size_t, std::size_t, int) { ran.fetch_add(1); }, 2),
                    std::runtime_error);
    CHECK(ran.load() == 0);
}

TEST_CASE("parallel_for_dynamic covers the range with any grain", "[core][parallel]") {
    for (std::size_t grain : {1u, 7u, 64u, 5000u}) {
        std::vector<std::atomic<int>> hits(777);
        kite::parallel_for_dynamic(hits.size(), grain, [&](std::size_t i) { hits[i].fetch_add(1); });
        for (auto& h : hits) REQUIRE(h.load() == 1);
    }
}

TEST_CASE("exceptions in a parallel body reach the caller", "[core][parallel]") {
    CHECK_THROWS_AS(kite::parallel_for(
                        0, 100,
                        [](std::size_t i) {
                            if (i == 63) throw std::runtime_error("boom");
                        },
                        2),
                    std::runtime_error);
    CHECK_THROWS_AS(kite::parallel_for_dynamic(100, 3,
                                               [](std::size_t i) {
                                                   if (i % 10 == 9) throw std::logic_error("x");
                                               }),
                    std::logic_error);
}

TEST_CASE("thread count helpers", "[core][parallel]") {
    CHECK(kite::max_threads() >= 1);
    CHECK(kite::resolve_threads(4, 1) == 1);
    CHECK(kite::resolve_threads(0, 0) == 1);
    CHECK_FALSE(kite::in_parallel());
#if defined(KITE_WITH_OPENMP)
    const int before = kite::max_threads();
    kite::set_num_threads(1);
    CHECK(kite::max_threads() == 1);
    kite::set_num_threads(before);
    // No nested parallelism: inside a region, kite runs serially.
    std::atomic<int> inner_threads{0};
    kite::parallel_for(0, 2, [&](std::size_t) {
        inner_threads.store(kite::resolve_threads(0, 100));
    }, 2);
    if (kite::max_threads() > 1) CHECK(inner_threads.load() == 1);
#endif
}
