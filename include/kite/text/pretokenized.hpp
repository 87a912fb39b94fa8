#pragma once
/// @file kite/text/pretokenized.hpp
/// The pre-tokenized path: the caller passes token ids (from a subword tokenizer, say) and each
/// id is a term. Needs only the standard library.

#include <cstdint>
#include <span>
#include <string_view>

namespace kite::text {

/// Token ids in, the same ids out (a token_id_analyzer).
struct pretokenized {
    static constexpr std::string_view name() noexcept { return "pretokenized"; }

    template <class Sink>
    void analyze(std::span<const std::uint32_t> ids, Sink&& sink) const {
        for (const std::uint32_t id : ids) sink(id);
    }
};

}  // namespace kite::text
