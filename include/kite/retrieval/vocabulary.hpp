#pragma once
/// @file kite/retrieval/vocabulary.hpp
/// kite::retrieval::vocabulary: terms (byte strings) <-> dense term ids 0, 1, 2, ... in order of
/// first insertion. An open-addressing hash table over one character arena: no allocation per
/// term, lookups by std::string_view. Needs only the standard library.
///
/// Thread safety: find() and term() may run from many threads; insert() needs exclusion.

#include <cstddef>
#include <cstdint>
#include <functional>
#include <limits>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "kite/core/error.hpp"

namespace kite::retrieval {

/// Identifier of a term in an index's vocabulary (or a token id on the pre-tokenized path).
using term_id = std::uint32_t;

/// A set of terms numbered densely in insertion order.
class vocabulary {
public:
    /// Returned by find() for a term that is not in the vocabulary.
    static constexpr term_id npos = std::numeric_limits<term_id>::max();

    vocabulary() { rehash(64); }

    /// Number of terms.
    std::size_t size() const noexcept { return offsets_.size() - 1; }
    bool empty() const noexcept { return size() == 0; }

    /// The id of `term`, or npos.
    term_id find(std::string_view term) const noexcept {
        const std::uint64_t h = hash(term);
        for (std::size_t s = h & mask_;; s = (s + 1) & mask_) {
            const std::uint32_t slot = slots_[s];
            if (slot == 0) return npos;
            const term_id id = slot - 1;
            if (hashes_[id] == static_cast<std::uint32_t>(h >> 32) && this->term(id) == term) return id;
        }
    }

    /// The id of `term`, inserting it when new.
    term_id insert(std::string_view term) {
        const std::uint64_t h = hash(term);
        std::size_t s = h & mask_;
        for (;; s = (s + 1) & mask_) {
            const std::uint32_t slot = slots_[s];
            if (slot == 0) break;
            const term_id id = slot - 1;
            if (hashes_[id] == static_cast<std::uint32_t>(h >> 32) && this->term(id) == term) return id;
        }
        KITE_REQUIRE(size() < npos - 1, invalid_argument, "vocabulary: more than ", npos - 1,
                     " terms");
        const auto id = static_cast<term_id>(size());
        chars_.append(term);
        offsets_.push_back(chars_.size());
        hashes_.push_back(static_cast<std::uint32_t>(h >> 32));
        slots_[s] = id + 1;
        if (2 * (size() + 1) > slots_.size()) rehash(slots_.size() * 2);
        return id;
    }

    /// The text of term `id` (< size()).
    std::string_view term(term_id id) const noexcept {
        return std::string_view(chars_).substr(offsets_[id], offsets_[id + 1] - offsets_[id]);
    }

    /// All term bytes back to back, and the offsets that cut them (size() + 1 of them): the
    /// serialized form.
    const std::string& arena() const noexcept { return chars_; }
    std::span<const std::uint64_t> offsets() const noexcept { return offsets_; }

    /// Rebuilds a vocabulary from its serialized form. Throws format_error when the offsets do
    /// not cut `arena` into terms, or a term repeats.
    static vocabulary from_arena(std::string arena, std::vector<std::uint64_t> offsets,
                                 std::string_view source) {
        KITE_REQUIRE(!offsets.empty() && offsets.front() == 0 && offsets.back() == arena.size(),
                     format_error, source, ": vocabulary offsets do not span the ", arena.size(),
                     " bytes of terms");
        for (std::size_t i = 1; i < offsets.size(); ++i)
            KITE_REQUIRE(offsets[i - 1] <= offsets[i], format_error, source,
                         ": vocabulary offsets decrease at term ", i - 1);
        vocabulary v;
        v.chars_.reserve(arena.size());
        v.offsets_.reserve(offsets.size());
        v.hashes_.reserve(offsets.size());
        const std::string_view all(arena);
        for (std::size_t i = 0; i + 1 < offsets.size(); ++i) {
            const auto t = all.substr(offsets[i], offsets[i + 1] - offsets[i]);
            KITE_REQUIRE(v.insert(t) == i, format_error, source, ": vocabulary term ", i,
                         " repeats term ", v.find(t));
        }
        return v;
    }

private:
    static std::uint64_t hash(std::string_view s) noexcept {
        // libstdc++'s string hash is 64-bit murmur; the low bits pick the slot, the high 32 are
        // kept per term to reject most mismatches without touching the characters.
        return std::hash<std::string_view>{}(s);
    }
    void rehash(std::size_t capacity) {
        slots_.assign(capacity, 0);
        mask_ = capacity - 1;
        for (term_id id = 0; id < size(); ++id) {
            std::size_t s = hash(term(id)) & mask_;
            while (slots_[s] != 0) s = (s + 1) & mask_;
            slots_[s] = id + 1;
        }
    }

    std::string chars_;                          // all terms, back to back
    std::vector<std::uint64_t> offsets_{0};      // term i = chars_[offsets_[i], offsets_[i+1])
    std::vector<std::uint32_t> hashes_;          // high half of each term's hash
    std::vector<std::uint32_t> slots_;           // 0 = empty, else term id + 1
    std::size_t mask_ = 0;
};

}  // namespace kite::retrieval
