#pragma once
/// @file kite/pos/learned.hpp
/// Learned absolute position embeddings (GPT-2's wpe, BERT's position_embeddings): a trained
/// [position][dim] table loaded from a checkpoint and added to the token embeddings.

#include <span>

#include "kite/core/error.hpp"
#include "kite/core/matrix.hpp"
#include "kite/core/validate.hpp"
#include "kite/pos/concepts.hpp"
#include "kite/pos/sinusoidal.hpp"

namespace kite::pos {

/// A learned absolute position table (owning copy).
class learned {
public:
    static constexpr where applies_to = where::embedding;

    /// Copies `table` ([position][dim]); throws on an empty or non-finite table.
    explicit learned(matrix_view<const float> table) : table_(table) {
        KITE_REQUIRE(table.rows() >= 1 && table.cols() >= 1, shape_error, "learned: table is ",
                     table.rows(), " x ", table.cols(), "; expected at least 1 x 1");
        require_finite(table, "learned: table");
    }

    index_t max_positions() const noexcept { return table_.rows(); }
    index_t dim() const noexcept { return table_.cols(); }
    /// The table, [position][dim].
    matrix_view<const float> table() const noexcept { return table_.view(); }
    /// x[t] += table[positions[t]]; x: [token][dim].
    void add(matrix_view<float> x, std::span<const index_t> positions) const {
        detail::add_position_rows(table_.view(), x, positions, "learned::add");
    }

private:
    matrix<float> table_;  // [position][dim]
};

static_assert(position_encoding<learned>);

}  // namespace kite::pos
