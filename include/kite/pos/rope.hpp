#pragma once
/// @file kite/pos/rope.hpp
/// Rotary position embedding (RoPE) in the two conventions real checkpoints use:
///
///   rotate_half  — dimension i pairs with i + r/2 (Hugging Face Llama, Qwen2, Mistral, GPT-NeoX);
///   interleaved  — dimension 2i pairs with 2i + 1 (GPT-J, llama.c, Meta's original Llama).
///
/// with base θ, a partial rotary dimension r <= head_dim (GPT-J, GPT-NeoX, Phi) and linear,
/// NTK-aware or dynamic-NTK frequency scaling.
///
///   kite::pos::rope<kite::pos::rotate_half> rope({.head_dim = 128, .base = 500000});
///   rope.apply(q, positions);   // q: [token][head][head_dim], rotated in place
///
/// Numerics follow Hugging Face exactly: inverse frequencies are float32 values computed as
/// 1 / base^(float(2i) / r), the angle is the float32 product position * inv_freq, and cos/sin
/// are taken of that float32 angle. Checkpoints were trained with this rounding; computing the
/// angle in double instead moves cos/sin by up to ~position * 6e-8 (1e-3 at 16k positions).

#include <algorithm>
#include <cmath>
#include <span>
#include <vector>

#include "kite/core/buffer.hpp"
#include "kite/core/config.hpp"
#include "kite/core/error.hpp"
#include "kite/core/parallel.hpp"
#include "kite/core/tensor.hpp"
#include "kite/pos/concepts.hpp"

namespace kite::pos {

/// RoPE convention of Hugging Face's `rotate_half`: pairs (i, i + r/2).
struct rotate_half {
    static constexpr const char* name = "rotate_half";
    /// Rotates x[0, r) in place; cos/sin hold r/2 entries.
    static void rotate(float* KITE_RESTRICT x, const float* KITE_RESTRICT cos,
                       const float* KITE_RESTRICT sin, index_t rotary_dim) noexcept {
        const index_t h = rotary_dim / 2;
        float* KITE_RESTRICT lo = x;
        float* KITE_RESTRICT hi = x + h;
        for (index_t i = 0; i < h; ++i) {
            const float a = lo[i], b = hi[i];
            lo[i] = a * cos[i] - b * sin[i];
            hi[i] = b * cos[i] + a * sin[i];
        }
    }
};

/// RoPE convention of GPT-J's `rotate_every_two` (and Meta's complex-number form): pairs (2i, 2i+1).
struct interleaved {
    static constexpr const char* name = "interleaved";
    /// Rotates x[0, r) in place; cos/sin hold r/2 entries.
    static void rotate(float* KITE_RESTRICT x, const float* KITE_RESTRICT cos,
                       const float* KITE_RESTRICT sin, index_t rotary_dim) noexcept {
        const index_t h = rotary_dim / 2;
        for (index_t i = 0; i < h; ++i) {
            const float a = x[2 * i], b = x[2 * i + 1];
            x[2 * i] = a * cos[i] - b * sin[i];
            x[2 * i + 1] = b * cos[i] + a * sin[i];
        }
    }
};

static_assert(rope_convention<rotate_half> && rope_convention<interleaved>);

/// Frequency scaling for contexts longer than the checkpoint's training length.
enum class rope_scaling {
    none,        ///< inv_freq_i = base^(-2i/r)
    linear,      ///< position interpolation: inv_freq_i / factor (HF rope_type "linear")
    ntk,         ///< NTK-aware: base * factor^(r/(r-2)) (static, the original /u/bloc97 form)
    dynamic_ntk  ///< HF "dynamic": NTK base grown with the context, see rope::set_context
};

/// Runtime configuration of a RoPE table (values from a model's config.json).
struct rope_config {
    index_t head_dim = 0;      ///< elements per head
    index_t rotary_dim = 0;    ///< leading elements rotated (even); 0 means head_dim
    double base = 10000.0;     ///< θ (config.rope_theta)
    rope_scaling scaling = rope_scaling::none;
    double factor = 1.0;       ///< scaling factor (config.rope_scaling.factor)
    index_t original_max_positions = 0;  ///< dynamic_ntk: config.max_position_embeddings
    index_t max_positions = 4096;        ///< table rows precomputed: positions [0, max_positions)
};

/// Inverse frequencies of RoPE as Hugging Face computes them in float32 ([rotary_dim / 2]).
/// `base` is the effective base (after NTK scaling); linear scaling divides afterwards.
inline std::vector<float> rope_inv_freq(double base, index_t rotary_dim, double linear_factor = 1.0) {
    KITE_REQUIRE(rotary_dim >= 2 && rotary_dim % 2 == 0, invalid_argument,
                 "rope_inv_freq: rotary_dim = ", rotary_dim, "; expected an even value >= 2");
    KITE_REQUIRE(base > 1.0 && std::isfinite(base), invalid_argument, "rope_inv_freq: base = ", base,
                 "; expected a finite value > 1");
    KITE_REQUIRE(linear_factor > 0.0 && std::isfinite(linear_factor), invalid_argument,
                 "rope_inv_freq: factor = ", linear_factor, "; expected a finite value > 0");
    std::vector<float> f(rotary_dim / 2);
    for (index_t i = 0; i < f.size(); ++i) {
        // float32 exponent and float32 result of pow, then a float32 reciprocal, as torch does.
        const float e = static_cast<float>(2 * i) / static_cast<float>(rotary_dim);
        const float p = static_cast<float>(std::pow(base, static_cast<double>(e)));
        f[i] = 1.0f / p;
        if (linear_factor != 1.0) f[i] = f[i] / static_cast<float>(linear_factor);
    }
    return f;
}

/// RoPE with convention `Convention`: a cos/sin table over positions and the rotation of
/// query/key rows. Thread-safe for concurrent apply(); set_context/reserve_positions mutate.
template <rope_convention Convention>
class rope {
public:
    using convention = Convention;
    static constexpr where applies_to = where::qk;

    /// Validates `cfg` and precomputes cos/sin for positions [0, cfg.max_positions).
    explicit rope(const rope_config& cfg) : cfg_(cfg) {
        KITE_REQUIRE(cfg.head_dim >= 2, invalid_argument, "rope: head_dim = ", cfg.head_dim,
                     "; expected >= 2");
        if (cfg_.rotary_dim == 0) cfg_.rotary_dim = cfg.head_dim;
        KITE_REQUIRE(cfg_.rotary_dim % 2 == 0 && cfg_.rotary_dim >= 2 && cfg_.rotary_dim <= cfg.head_dim,
                     invalid_argument, "rope: rotary_dim = ", cfg_.rotary_dim,
                     "; expected an even value in [2, head_dim = ", cfg.head_dim, "]");
        KITE_REQUIRE(cfg.base > 1.0 && std::isfinite(cfg.base), invalid_argument, "rope: base = ",
                     cfg.base, "; expected a finite value > 1");
        KITE_REQUIRE(cfg.max_positions >= 1, invalid_argument, "rope: max_positions = ",
                     cfg.max_positions, "; expected >= 1");
        if (cfg.scaling != rope_scaling::none) {
            KITE_REQUIRE(cfg.factor >= 1.0 && std::isfinite(cfg.factor), invalid_argument,
                         "rope: scaling factor = ", cfg.factor, "; expected a finite value >= 1");
        }
        if (cfg.scaling == rope_scaling::dynamic_ntk) {
            KITE_REQUIRE(cfg.original_max_positions >= 1, invalid_argument,
                         "rope: dynamic_ntk needs original_max_positions (max_position_embeddings) >= 1, got ",
                         cfg.original_max_positions);
            KITE_REQUIRE(cfg_.rotary_dim > 2, invalid_argument,
                         "rope: dynamic_ntk needs rotary_dim > 2 (the exponent is r/(r-2)), got ",
                         cfg_.rotary_dim);
        }
        if (cfg.scaling == rope_scaling::ntk) {
            KITE_REQUIRE(cfg_.rotary_dim > 2, invalid_argument,
                         "rope: ntk scaling needs rotary_dim > 2 (the exponent is r/(r-2)), got ",
                         cfg_.rotary_dim);
        }
        context_ = cfg.original_max_positions;
        rebuild();
    }

    index_t head_dim() const noexcept { return cfg_.head_dim; }
    index_t rotary_dim() const noexcept { return cfg_.rotary_dim; }
    index_t max_positions() const noexcept { return cfg_.max_positions; }
    const rope_config& config() const noexcept { return cfg_; }
    /// The effective base after NTK scaling (the configured base otherwise).
    double effective_base() const noexcept { return base_; }
    /// Inverse frequencies, [rotary_dim / 2].
    std::span<const float> inv_freq() const noexcept { return inv_freq_; }
    /// cos of the angles at `position`, [rotary_dim / 2] (unchecked: position < max_positions()).
    const float* cos(index_t position) const noexcept { return table_.data() + position * cfg_.rotary_dim; }
    /// sin of the angles at `position`, [rotary_dim / 2] (unchecked).
    const float* sin(index_t position) const noexcept {
        return table_.data() + position * cfg_.rotary_dim + cfg_.rotary_dim / 2;
    }

    /// Grows the table to cover positions [0, n) (no-op when it already does).
    void reserve_positions(index_t n) {
        if (n <= cfg_.max_positions) return;
        cfg_.max_positions = n;
        rebuild();
    }

    /// dynamic_ntk: sets the current context length (Hugging Face passes max(position_ids) + 1)
    /// and recomputes the frequencies for max(seq_len, original_max_positions). Other scalings
    /// ignore it.
    void set_context(index_t seq_len) {
        if (cfg_.scaling != rope_scaling::dynamic_ntk) return;
        const index_t c = std::max(seq_len, cfg_.original_max_positions);
        if (c == context_) return;
        context_ = c;
        rebuild();
    }

    /// Rotates one row of head_dim elements at `position` (unchecked; for fused callers).
    void apply_row(float* row, index_t position) const noexcept {
        Convention::rotate(row, cos(position), sin(position), cfg_.rotary_dim);
    }

    /// Rotates every head of every token in place. x: [token][head][head_dim] (any strides, the
    /// last one 1); positions: [token], each < max_positions().
    void apply(tensor_view<float, 3> x, std::span<const index_t> positions, int threads = 0) const {
        KITE_REQUIRE(x.extent(0) == positions.size(), shape_error, "rope::apply: x has ", x.extent(0),
                     " tokens but positions has ", positions.size(), "; expected equal");
        KITE_REQUIRE(x.extent(2) == cfg_.head_dim, shape_error, "rope::apply: head size ", x.extent(2),
                     "; expected head_dim = ", cfg_.head_dim);
        KITE_REQUIRE(x.extent(2) <= 1 || x.stride(2) == 1, shape_error, "rope::apply: element stride ",
                     x.stride(2), "; expected 1 (rows must be contiguous)");
        for (index_t t = 0; t < positions.size(); ++t) {
            KITE_REQUIRE(positions[t] < cfg_.max_positions, invalid_argument, "rope::apply: positions[",
                         t, "] = ", positions[t], "; expected < max_positions = ", cfg_.max_positions,
                         " (call reserve_positions)");
        }
        const index_t heads = x.extent(1);
        // Parallel only when the work is worth a thread wake-up.
        const int t = positions.size() * heads * cfg_.rotary_dim >= (index_t{1} << 16) ? threads : 1;
        parallel_for(
            0, positions.size(),
            [&](std::size_t tok) {
                const index_t p = positions[tok];
                for (index_t h = 0; h < heads; ++h) apply_row(x.ptr(tok, h), p);
            },
            t);
    }

private:
    void rebuild() {
        const index_t r = cfg_.rotary_dim;
        base_ = cfg_.base;
        double linear = 1.0;
        const double ex = static_cast<double>(r) / static_cast<double>(r - 2 > 0 ? r - 2 : 1);
        switch (cfg_.scaling) {
            case rope_scaling::none: break;
            case rope_scaling::linear: linear = cfg_.factor; break;
            case rope_scaling::ntk: base_ = cfg_.base * std::pow(cfg_.factor, ex); break;
            case rope_scaling::dynamic_ntk: {
                const double s = static_cast<double>(context_) / static_cast<double>(cfg_.original_max_positions);
                base_ = cfg_.base * std::pow(cfg_.factor * s - (cfg_.factor - 1.0), ex);
                break;
            }
        }
        inv_freq_ = rope_inv_freq(base_, r, linear);
        const index_t h = r / 2;
        aligned_buffer<float> t(cfg_.max_positions * r, uninitialized);  // [pos][cos h | sin h]
        for (index_t p = 0; p < cfg_.max_positions; ++p) {
            float* row = t.data() + p * r;
            for (index_t i = 0; i < h; ++i) {
                const float angle = static_cast<float>(p) * inv_freq_[i];  // float32 product, as HF
                row[i] = static_cast<float>(std::cos(static_cast<double>(angle)));
                row[h + i] = static_cast<float>(std::sin(static_cast<double>(angle)));
            }
        }
        table_ = std::move(t);
    }

    rope_config cfg_;
    double base_ = 0;
    index_t context_ = 0;
    std::vector<float> inv_freq_;  // [rotary_dim / 2]
    aligned_buffer<float> table_;  // [position][cos: rotary_dim/2 | sin: rotary_dim/2]
};

}  // namespace kite::pos
