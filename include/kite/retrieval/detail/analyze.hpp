#pragma once
/// @file kite/retrieval/detail/analyze.hpp
/// How lexical indexes turn a document or query into vocabulary keys, for text analyzers and
/// for the pre-tokenized path alike.

#include <cstdint>
#include <cstring>
#include <span>
#include <string_view>
#include <type_traits>

#include "kite/text/concepts.hpp"
#include "kite/text/pretokenized.hpp"

namespace kite::retrieval::detail {

/// What documents and queries are for an analyzer: text, or token ids.
template <class Analyzer>
using analyzer_input_t = std::conditional_t<text::token_id_analyzer<Analyzer>,
                                            std::span<const std::uint32_t>, std::string_view>;

/// Calls f(key) for each term of `input`: the term text, or a token id's 4 little-endian bytes.
template <class Analyzer, class F>
void for_each_term_key(const Analyzer& a, analyzer_input_t<Analyzer> input, F&& f) {
    if constexpr (text::token_id_analyzer<Analyzer>) {
        a.analyze(input, [&](std::uint32_t id) {
            char key[4];
            std::memcpy(key, &id, 4);
            f(std::string_view(key, 4));
        });
    } else {
        a.analyze(input, [&](std::string_view t) { f(t); });
    }
}

}  // namespace kite::retrieval::detail
