#pragma once
/// @file kite/text/detail/pair_merge.hpp
/// The merge loop shared by kite's BPE tokenizers: repeatedly merge the adjacent pair with the
/// best priority (the leftmost on ties) until no pair has a rule. A linked list over the
/// initial symbols and a heap of candidate pairs make it O(n log n); an entry popped from the
/// heap applies only if its pair still has the same rule (stale entries are skipped). This is
/// tokenizers' Word::merge_all, and gives the same merges as llama2.c's rescan of all pairs.

#include <algorithm>
#include <bit>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <utility>
#include <vector>

namespace kite::text::detail {

/// A merge rule: priority (lower merges first) and the merged symbol.
struct merge_rule {
    std::uint32_t priority;
    std::int32_t merged;
};

/// Scratch buffers reused across words.
struct merge_workspace {
    std::vector<std::int32_t> prev, next;
    std::vector<std::pair<std::uint64_t, std::int32_t>> heap;  // ((priority << 32) | position, merged)
};

/// Priority of a score where a higher score merges first (llama2.c's vocab scores): the float
/// order mapped to integers, reversed. -0 counts as +0, as the float comparison does.
inline std::uint32_t descending_priority(float score) noexcept {
    if (score == 0.0f) score = 0.0f;
    const std::uint32_t u = std::bit_cast<std::uint32_t>(score);
    const std::uint32_t ascending = (u & 0x80000000u) ? ~u : (u | 0x80000000u);
    return ~ascending;
}

/// Merges `sym` in place. rule(left, right) -> std::optional<merge_rule>.
template <class Rule>
void merge_pairs(std::vector<std::int32_t>& sym, merge_workspace& ws, Rule&& rule) {
    const std::size_t n = sym.size();
    if (n < 2) return;
    auto& prev = ws.prev;
    auto& next = ws.next;
    prev.resize(n);
    next.resize(n);
    for (std::size_t i = 0; i < n; ++i) {
        prev[i] = static_cast<std::int32_t>(i) - 1;
        next[i] = i + 1 < n ? static_cast<std::int32_t>(i + 1) : -1;
    }
    auto& heap = ws.heap;
    heap.clear();
    const auto later = [](const auto& a, const auto& b) { return a.first > b.first; };  // min-heap
    const auto push = [&](std::size_t pos) {
        const std::int32_t r = next[pos];
        if (r < 0) return;
        if (const std::optional<merge_rule> m = rule(sym[pos], sym[static_cast<std::size_t>(r)])) {
            heap.emplace_back((static_cast<std::uint64_t>(m->priority) << 32) | pos, m->merged);
            std::push_heap(heap.begin(), heap.end(), later);
        }
    };
    for (std::size_t i = 0; i + 1 < n; ++i) push(i);
    while (!heap.empty()) {
        std::pop_heap(heap.begin(), heap.end(), later);
        const auto [key, merged] = heap.back();
        heap.pop_back();
        const std::size_t pos = static_cast<std::uint32_t>(key);
        const std::int32_t r = next[pos];
        if (sym[pos] < 0 || r < 0) continue;
        const std::optional<merge_rule> now = rule(sym[pos], sym[static_cast<std::size_t>(r)]);
        if (!now || now->merged != merged || now->priority != static_cast<std::uint32_t>(key >> 32)) continue;
        sym[pos] = merged;
        sym[static_cast<std::size_t>(r)] = -1;
        const std::int32_t rr = next[static_cast<std::size_t>(r)];
        next[pos] = rr;
        if (rr >= 0) prev[static_cast<std::size_t>(rr)] = static_cast<std::int32_t>(pos);
        if (prev[pos] >= 0) push(static_cast<std::size_t>(prev[pos]));
        push(pos);
    }
    std::size_t w = 0;
    for (std::size_t i = 0; i < n; ++i)
        if (sym[i] >= 0) sym[w++] = sym[i];
    sym.resize(w);
}

}  // namespace kite::text::detail
