#pragma once
/// @file kite/text/concepts.hpp
/// The analyzer contract shared by every text analyzer and by the retrieval indexes that take
/// one as a policy. Needs only the standard library.

#include <concepts>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace kite::text {

namespace detail {
/// Stand-in for the callable an analyzer feeds (used only to state the concept).
struct term_sink_archetype {
    void operator()(std::string_view) const noexcept {}
};
/// Stand-in for the callable a token-id analyzer feeds.
struct id_sink_archetype {
    void operator()(std::uint32_t) const noexcept {}
};
}  // namespace detail

/// analyzer: turns UTF-8 text into terms.
///   A::name()                      a short stable name, stored in index files;
///   a.analyze(text, sink)          calls sink(std::string_view term) once per term, in text
///                                  order; the view is valid only during the call. Throws
///                                  kite::unicode_error (naming the byte offset) on invalid UTF-8.
/// analyze() is const and safe to call from many threads at once. Cost: linear in the text.
template <class A>
concept analyzer = requires(const A& a, std::string_view text, detail::term_sink_archetype sink) {
    { A::name() } -> std::convertible_to<std::string_view>;
    a.analyze(text, sink);
};

/// token_id_analyzer: the pre-tokenized path. Documents and queries arrive as token ids from the
/// caller's own tokenizer (a subword tokenizer, say), and the ids are the terms.
///   A::name()                      as above;
///   a.analyze(ids, sink)           calls sink(std::uint32_t id) once per token.
template <class A>
concept token_id_analyzer =
    requires(const A& a, std::span<const std::uint32_t> ids, detail::id_sink_archetype sink) {
        { A::name() } -> std::convertible_to<std::string_view>;
        a.analyze(ids, sink);
    };

/// The terms of `text` as strings (a convenience; analyze() avoids the copies).
template <analyzer A>
std::vector<std::string> terms(const A& a, std::string_view text) {
    std::vector<std::string> out;
    a.analyze(text, [&](std::string_view t) { out.emplace_back(t); });
    return out;
}

}  // namespace kite::text
