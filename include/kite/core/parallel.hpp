#pragma once
/// @file kite/core/parallel.hpp
/// parallel_for over an index range: OpenMP when kite is built with KITE_WITH_OPENMP, a plain
/// loop otherwise (the serial build must pass the same tests).
///
/// Thread count: `threads == 0` means kite::max_threads(), which is OpenMP's default unless
/// changed with kite::set_num_threads. Exceptions thrown by the body are caught per thread and
/// the first one is rethrown on the calling thread after the loop (kite's own kernels never
/// throw inside a parallel region; this only guards user callbacks).

#include <algorithm>
#include <atomic>
#include <cstddef>
#include <exception>
#include <mutex>

#include "kite/core/config.hpp"

#if defined(KITE_WITH_OPENMP)
#include <omp.h>
#endif

namespace kite {

namespace detail {
/// The count set by set_num_threads() (0: none), for every thread of the process: OpenMP's own
/// setting is per thread, so a thread started later (a server's engine loop) would not see it.
inline std::atomic<int>& thread_count_override() noexcept {
    static std::atomic<int> n{0};
    return n;
}
}  // namespace detail

/// Number of threads parallel regions use by default.
inline int max_threads() noexcept {
#if defined(KITE_WITH_OPENMP)
    const int n = detail::thread_count_override().load(std::memory_order_relaxed);
    return n > 0 ? n : omp_get_max_threads();
#else
    return 1;
#endif
}

/// Sets the default number of threads for later parallel regions, in every thread of the
/// process (no-op in serial builds).
inline void set_num_threads(int n) noexcept {
#if defined(KITE_WITH_OPENMP)
    detail::thread_count_override().store(std::max(1, n), std::memory_order_relaxed);
    omp_set_num_threads(std::max(1, n));
#else
    (void)n;
#endif
}

/// Index of the calling thread inside a kite parallel region (0 outside one).
inline int thread_index() noexcept {
#if defined(KITE_WITH_OPENMP)
    return omp_get_thread_num();
#else
    return 0;
#endif
}

/// True when called from inside an active parallel region.
inline bool in_parallel() noexcept {
#if defined(KITE_WITH_OPENMP)
    return omp_in_parallel() != 0;
#else
    return false;
#endif
}

/// Resolves a requested thread count: 0 -> max_threads(); never more than `work_items`.
inline int resolve_threads(int requested, std::size_t work_items) noexcept {
#if defined(KITE_WITH_OPENMP)
    int t = requested > 0 ? requested : max_threads();
    if (in_parallel()) t = 1;  // no nested parallelism
    if (work_items < static_cast<std::size_t>(t)) t = static_cast<int>(std::max<std::size_t>(work_items, 1));
    return std::max(t, 1);
#else
    (void)requested;
    (void)work_items;
    return 1;  // serial build
#endif
}

namespace detail {
class exception_slot {
public:
    template <class F>
    void run(F&& f) noexcept {
        try {
            f();
        } catch (...) {
            caught_.store(true, std::memory_order_relaxed);
            std::lock_guard<std::mutex> lock(mu_);
            if (!first_) first_ = std::current_exception();
        }
    }
    /// Whether a body has thrown (read after a barrier, it covers every thread's earlier work).
    bool caught() const noexcept { return caught_.load(std::memory_order_relaxed); }
    void rethrow() const {
        if (first_) std::rethrow_exception(first_);
    }

private:
    std::mutex mu_;
    std::exception_ptr first_;
    std::atomic<bool> caught_{false};
};
}  // namespace detail

/// Two phases on one team of threads: `first(begin, end, thread)` on static chunks of [0, n1),
/// a barrier, then `second(begin, end, thread)` on static chunks of [0, n2). Chunk t of n items
/// on T threads covers [n*t/T, n*(t+1)/T) (deterministic; a chunk may be empty and is skipped).
/// One fork / join where two parallel_chunks calls take two, and the first phase's work is
/// shared instead of run by the calling thread alone while the others wait (kite::quant's int8
/// GEMMs round the activations in the first phase). The team has as many threads as
/// parallel_chunks(n2, ...) would use. When the first phase throws, the second does not run;
/// the first exception is rethrown after the join.
template <class First, class Second>
void parallel_chunks2(std::size_t n1, First&& first, std::size_t n2, Second&& second, int threads = 0) {
    const int t = n2 == 0 ? 1 : resolve_threads(threads, n2);
    if (t == 1) {
        if (n1 > 0) first(std::size_t{0}, n1, 0);
        if (n2 > 0) second(std::size_t{0}, n2, 0);
        return;
    }
#if defined(KITE_WITH_OPENMP)
    detail::exception_slot slot;
#pragma omp parallel num_threads(t)
    {
        const auto tid = static_cast<std::size_t>(omp_get_thread_num());
        const auto nt = static_cast<std::size_t>(omp_get_num_threads());
        if (n1 > 0) {  // the same for every thread, so every thread meets the barrier or none
            const std::size_t b1 = n1 * tid / nt, e1 = n1 * (tid + 1) / nt;
            if (b1 < e1) slot.run([&] { first(b1, e1, static_cast<int>(tid)); });
#pragma omp barrier
        }
        const std::size_t b2 = n2 * tid / nt, e2 = n2 * (tid + 1) / nt;
        if (b2 < e2 && !slot.caught()) slot.run([&] { second(b2, e2, static_cast<int>(tid)); });
    }
    slot.rethrow();
#else
    if (n1 > 0) first(std::size_t{0}, n1, 0);
    if (n2 > 0) second(std::size_t{0}, n2, 0);
#endif
}

/// Calls `body(begin, end, thread)` on `threads` contiguous, near-equal chunks of [0, n): the
/// second phase of parallel_chunks2 alone (static and deterministic chunking, no barrier).
template <class Body>
void parallel_chunks(std::size_t n, Body&& body, int threads = 0) {
    parallel_chunks2(0, [](std::size_t, std::size_t, int) {}, n, body, threads);
}

/// Calls `body(i)` for every i in [begin, end), split statically over threads.
template <class Body>
void parallel_for(std::size_t begin, std::size_t end, Body&& body, int threads = 0) {
    if (end <= begin) return;
    parallel_chunks(
        end - begin,
        [&](std::size_t b, std::size_t e, int) {
            for (std::size_t i = b; i < e; ++i) body(begin + i);
        },
        threads);
}

/// Calls `body(i)` for every i in [0, n), handing out items dynamically in chunks of `grain`.
/// Use it when items have very different costs (e.g. queries of different lengths).
template <class Body>
void parallel_for_dynamic(std::size_t n, std::size_t grain, Body&& body, int threads = 0) {
    if (n == 0) return;
    grain = std::max<std::size_t>(grain, 1);
    const int t = resolve_threads(threads, (n + grain - 1) / grain);
    if (t == 1) {
        for (std::size_t i = 0; i < n; ++i) body(i);
        return;
    }
#if defined(KITE_WITH_OPENMP)
    detail::exception_slot slot;
    std::atomic<std::size_t> next{0};
#pragma omp parallel num_threads(t)
    {
        slot.run([&] {
            for (;;) {
                const std::size_t b = next.fetch_add(grain, std::memory_order_relaxed);
                if (b >= n) break;
                const std::size_t e = std::min(n, b + grain);
                for (std::size_t i = b; i < e; ++i) body(i);
            }
        });
    }
    slot.rethrow();
#else
    for (std::size_t i = 0; i < n; ++i) body(i);
#endif
}

}  // namespace kite
