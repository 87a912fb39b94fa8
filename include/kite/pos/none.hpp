#pragma once
/// @file kite/pos/none.hpp
/// No position encoding (NoPE layers, bag-of-tokens encoders): a policy with nothing to do.

#include "kite/pos/concepts.hpp"

namespace kite::pos {

/// The empty position policy.
struct none {
    static constexpr where applies_to = where::nowhere;
};

static_assert(position_encoding<none>);

}  // namespace kite::pos
