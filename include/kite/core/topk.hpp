#pragma once
/// @file kite/core/topk.hpp
/// Bounded top-k collection of (score, id) pairs, the result handler shared by the flat index,
/// BM25, fusion and rerankers. The order is a policy:
///   kite::smaller_first  keeps the k smallest scores (distances: L2);
///   kite::larger_first   keeps the k largest scores (similarities: inner product, BM25).
/// Ties are broken deterministically by the lower id, so results never depend on thread
/// scheduling or scan order.

#include <algorithm>
#include <cstddef>
#include <limits>
#include <span>
#include <utility>
#include <vector>

#include "kite/core/config.hpp"

namespace kite {

/// Order policy: smaller scores are better (distances).
struct smaller_first {
    /// True when (a, ia) ranks before (b, ib).
    static constexpr bool before(float a, id_t ia, float b, id_t ib) noexcept {
        return a < b || (a == b && ia < ib);
    }
    /// The score that ranks after everything (padding of missing results, as FAISS does).
    static constexpr float worst() noexcept { return std::numeric_limits<float>::infinity(); }
};

/// Order policy: larger scores are better (similarities).
struct larger_first {
    static constexpr bool before(float a, id_t ia, float b, id_t ib) noexcept {
        return a > b || (a == b && ia < ib);
    }
    static constexpr float worst() noexcept { return -std::numeric_limits<float>::infinity(); }
};

/// One scored result.
struct scored_id {
    float score;
    id_t id;
};

/// Keeps the best k of the (score, id) pairs pushed into it, as a binary heap whose root is the
/// worst kept element. push() is O(1) when the candidate cannot enter, O(log k) otherwise.
template <class Order>
class topk_heap {
public:
    topk_heap() = default;
    explicit topk_heap(std::size_t k) { reset(k); }

    /// Empties the heap and sets its capacity (reuses memory).
    void reset(std::size_t k) {
        k_ = k;
        heap_.clear();
        // k may exceed what can ever be pushed (a k of 10^12 over 1,000 documents): reserve a
        // bounded amount and let the vector grow with what really arrives.
        heap_.reserve(std::min<std::size_t>(k, reserve_limit));
    }
    /// The most elements reset() reserves up front.
    static constexpr std::size_t reserve_limit = 4096;
    std::size_t k() const noexcept { return k_; }
    std::size_t size() const noexcept { return heap_.size(); }
    bool full() const noexcept { return heap_.size() == k_; }

    /// The score a new candidate must beat to enter (worst() until the heap is full).
    float threshold() const noexcept { return full() && k_ ? heap_.front().score : Order::worst(); }

    /// Offers a candidate; returns true if it was kept.
    bool push(float score, id_t id) {
        if (heap_.size() < k_) {
            heap_.push_back({score, id});
            std::push_heap(heap_.begin(), heap_.end(), cmp);
            return true;
        }
        if (k_ == 0 || !Order::before(score, id, heap_.front().score, heap_.front().id)) return false;
        replace_root({score, id});
        return true;
    }

    /// Sorts the kept results best first and writes them to `scores` / `ids` (length k); slots
    /// beyond size() are padded with Order::worst() and id -1. The heap is left empty.
    void drain(std::span<float> scores, std::span<id_t> ids) {
        std::sort_heap(heap_.begin(), heap_.end(), cmp);  // ascending by cmp = best first
        std::size_t i = 0;
        for (; i < heap_.size() && i < scores.size(); ++i) {
            scores[i] = heap_[i].score;
            ids[i] = heap_[i].id;
        }
        for (; i < scores.size(); ++i) {
            scores[i] = Order::worst();
            ids[i] = -1;
        }
        heap_.clear();
    }
    /// Sorted best first, as a vector (no padding). The heap is left empty.
    std::vector<scored_id> drain() {
        std::sort_heap(heap_.begin(), heap_.end(), cmp);
        std::vector<scored_id> out(heap_.begin(), heap_.end());
        heap_.clear();
        return out;
    }
    /// The kept results in heap order (unsorted).
    std::span<const scored_id> unsorted() const noexcept { return heap_; }

private:
    // Heap comparator: "a ranks before b" makes the root the worst kept element. A function
    // object, not a function pointer, so the heap algorithms inline it.
    struct compare {
        bool operator()(const scored_id& a, const scored_id& b) const noexcept {
            return Order::before(a.score, a.id, b.score, b.id);
        }
    };
    static constexpr compare cmp{};

    // Replaces the root (the worst kept element) by `x` and sifts it down: one pass, where
    // pop_heap + push_heap take two.
    void replace_root(scored_id x) noexcept {
        const std::size_t n = heap_.size();
        scored_id* h = heap_.data();
        std::size_t i = 0;
        for (;;) {
            std::size_t c = 2 * i + 1;
            if (c >= n) break;
            // The child that ranks after the other (the worse one) moves up.
            if (c + 1 < n && cmp(h[c], h[c + 1])) ++c;
            if (!cmp(x, h[c])) break;
            h[i] = h[c];
            i = c;
        }
        h[i] = x;
    }
    std::size_t k_ = 0;
    std::vector<scored_id> heap_;
};

/// Merges several best-first lists into the best k overall (used to combine per-thread
/// partial results). Deterministic for any split of the input.
template <class Order>
std::vector<scored_id> merge_topk(std::span<const std::vector<scored_id>> lists, std::size_t k) {
    topk_heap<Order> h(k);
    for (const auto& l : lists)
        for (const auto& r : l) h.push(r.score, r.id);
    return h.drain();
}

}  // namespace kite
