#pragma once
/// @file kite/pos/sinusoidal.hpp
/// Fixed sinusoidal position embeddings, added to the token embeddings.
///
/// Two layouts and two frequency conventions cover the models that use them:
///   layout interleaved  + timescale vaswani        — "Attention Is All You Need", DistilBERT;
///   layout concatenated + timescale tensor2tensor  — tensor2tensor, fairseq, Whisper.
/// Tables are computed in double and rounded once to float.
///
///   kite::pos::sinusoidal pe({.dim = 512, .max_positions = 2048});
///   pe.add(x, positions);   // x: [token][dim] += table[positions[token]]

#include <cmath>
#include <span>
#include <vector>

#include "kite/core/config.hpp"
#include "kite/core/error.hpp"
#include "kite/core/matrix.hpp"
#include "kite/pos/concepts.hpp"

namespace kite::pos {

/// Where sine and cosine of frequency i go in a row of `dim` elements.
enum class sinusoidal_layout {
    interleaved,   ///< row[2i] = sin, row[2i+1] = cos (an odd last element is a sine)
    concatenated   ///< row[i] = sin, row[dim/2 + i] = cos (dim even)
};

/// How frequency i is derived from the base.
enum class sinusoidal_timescale {
    vaswani,       ///< ω_i = base^(-2i / dim)
    tensor2tensor  ///< ω_i = base^(-i / (dim/2 - 1)) (the last frequency is exactly 1/base)
};

/// Runtime configuration of a sinusoidal table.
struct sinusoidal_config {
    index_t dim = 0;             ///< embedding size
    index_t max_positions = 0;   ///< rows of the table
    double base = 10000.0;       ///< max timescale
    sinusoidal_layout layout = sinusoidal_layout::interleaved;
    sinusoidal_timescale timescale = sinusoidal_timescale::vaswani;
};

/// Builds the table [position][dim] described by `cfg`.
inline matrix<float> sinusoidal_table(const sinusoidal_config& cfg) {
    KITE_REQUIRE(cfg.dim >= 1, invalid_argument, "sinusoidal_table: dim = ", cfg.dim, "; expected >= 1");
    KITE_REQUIRE(cfg.max_positions >= 1, invalid_argument, "sinusoidal_table: max_positions = ",
                 cfg.max_positions, "; expected >= 1");
    KITE_REQUIRE(cfg.base > 0.0 && std::isfinite(cfg.base), invalid_argument, "sinusoidal_table: base = ",
                 cfg.base, "; expected a finite value > 0");
    const bool concat = cfg.layout == sinusoidal_layout::concatenated;
    KITE_REQUIRE(!concat || cfg.dim % 2 == 0, invalid_argument, "sinusoidal_table: dim = ", cfg.dim,
                 "; the concatenated layout needs an even dim");
    const index_t n_freq = (cfg.dim + 1) / 2;
    const bool t2t = cfg.timescale == sinusoidal_timescale::tensor2tensor;
    KITE_REQUIRE(!t2t || n_freq >= 2, invalid_argument, "sinusoidal_table: dim = ", cfg.dim,
                 "; the tensor2tensor timescale needs dim >= 4");
    std::vector<double> omega(n_freq);  // [frequency]
    for (index_t i = 0; i < n_freq; ++i) {
        const double e = t2t ? static_cast<double>(i) / static_cast<double>(n_freq - 1)
                             : 2.0 * static_cast<double>(i) / static_cast<double>(cfg.dim);
        omega[i] = std::pow(cfg.base, -e);
    }
    matrix<float> t(cfg.max_positions, cfg.dim, uninitialized);  // [position][dim]
    for (index_t p = 0; p < cfg.max_positions; ++p) {
        float* row = t.row(p).data();
        for (index_t i = 0; i < n_freq; ++i) {
            const double a = static_cast<double>(p) * omega[i];
            if (concat) {
                row[i] = static_cast<float>(std::sin(a));
                row[n_freq + i] = static_cast<float>(std::cos(a));
            } else {
                row[2 * i] = static_cast<float>(std::sin(a));
                if (2 * i + 1 < cfg.dim) row[2 * i + 1] = static_cast<float>(std::cos(a));
            }
        }
    }
    return t;
}

namespace detail {
/// x[t] += table[positions[t]] for every token, validating shapes and positions once.
inline void add_position_rows(matrix_view<const float> table, matrix_view<float> x,
                              std::span<const index_t> positions, const char* who) {
    KITE_REQUIRE(x.rows() == positions.size(), shape_error, who, ": x has ", x.rows(),
                 " rows but positions has ", positions.size(), "; expected equal");
    KITE_REQUIRE(x.cols() == table.cols(), shape_error, who, ": x has ", x.cols(),
                 " columns; expected dim = ", table.cols());
    for (index_t t = 0; t < positions.size(); ++t) {
        KITE_REQUIRE(positions[t] < table.rows(), invalid_argument, who, ": positions[", t, "] = ",
                     positions[t], "; expected < max_positions = ", table.rows());
    }
    for (index_t t = 0; t < positions.size(); ++t) {
        const float* KITE_RESTRICT src = table.row(positions[t]).data();
        float* KITE_RESTRICT dst = x.row(t).data();
        for (index_t c = 0; c < table.cols(); ++c) dst[c] += src[c];
    }
}
}  // namespace detail

/// Sinusoidal position embedding: a precomputed table added to the token embeddings.
class sinusoidal {
public:
    static constexpr where applies_to = where::embedding;

    explicit sinusoidal(const sinusoidal_config& cfg) : cfg_(cfg), table_(sinusoidal_table(cfg)) {}

    const sinusoidal_config& config() const noexcept { return cfg_; }
    /// The table, [position][dim].
    matrix_view<const float> table() const noexcept { return table_.view(); }
    /// x[t] += table[positions[t]]; x: [token][dim].
    void add(matrix_view<float> x, std::span<const index_t> positions) const {
        detail::add_position_rows(table_.view(), x, positions, "sinusoidal::add");
    }

private:
    sinusoidal_config cfg_;
    matrix<float> table_;  // [position][dim]
};

static_assert(position_encoding<sinusoidal>);

}  // namespace kite::pos
