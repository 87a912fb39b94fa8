#pragma once
/// @file kite/pos/alibi.hpp
/// ALiBi (attention with linear biases, Press et al.): no embedding at all; head h adds
/// slope_h * (key_position - query_position) to its attention scores. kite's attention kernels
/// apply the bias inside the kernel from the slopes (kite::attn options.alibi_slopes).
///
/// Slopes follow BLOOM's `_get_alibi_slopes`, including head counts that are not powers of two:
/// the first 2^k heads (2^k the largest power of two <= n) get 2^(-8/2^k * j), j = 1..2^k, and
/// the remaining heads take every other slope of the 2^(k+1) sequence, j = 1, 3, 5, ...

#include <cmath>
#include <cstdint>
#include <span>
#include <vector>

#include "kite/core/error.hpp"
#include "kite/core/matrix.hpp"
#include "kite/pos/concepts.hpp"

namespace kite::pos {

/// BLOOM's ALiBi slopes for `n_heads` heads, [head].
inline std::vector<float> alibi_slopes(index_t n_heads) {
    KITE_REQUIRE(n_heads >= 1, invalid_argument, "alibi_slopes: n_heads = ", n_heads, "; expected >= 1");
    index_t p2 = 1;
    while (p2 * 2 <= n_heads) p2 *= 2;
    // BLOOM: base = 2^(-(2^-(log2(p2) - 3))) = 2^(-8 / p2); slope_j = base^j.
    std::vector<float> s;
    s.reserve(n_heads);
    const double base = std::pow(2.0, -8.0 / static_cast<double>(p2));
    for (index_t j = 1; j <= p2; ++j) s.push_back(static_cast<float>(std::pow(base, static_cast<double>(j))));
    const double extra = std::pow(2.0, -8.0 / static_cast<double>(2 * p2));
    for (index_t j = 1; s.size() < n_heads; j += 2)
        s.push_back(static_cast<float>(std::pow(extra, static_cast<double>(j))));
    return s;
}

/// BLOOM's `build_alibi_tensor`: for a right- or left-padded batch with attention_mask
/// [batch][seq] (1 = token, 0 = padding) returns [batch * n_heads][seq] with
/// slope_h * (number of real tokens before key j) at real keys and 0 at padding. Softmax is
/// shift-invariant per query, so this per-key bias equals the relative slope * (j - i) form
/// for every query that sees key j.
inline matrix<float> alibi_tensor(matrix_view<const std::int64_t> attention_mask, index_t n_heads) {
    const auto slopes = alibi_slopes(n_heads);
    matrix<float> out(attention_mask.rows() * n_heads, attention_mask.cols());  // [batch*head][seq]
    for (index_t b = 0; b < attention_mask.rows(); ++b) {
        std::int64_t cum = 0;
        for (index_t j = 0; j < attention_mask.cols(); ++j) {
            const std::int64_t m = attention_mask(b, j);
            KITE_REQUIRE(m == 0 || m == 1, invalid_argument, "alibi_tensor: attention_mask[", b, "][", j,
                         "] = ", m, "; expected 0 or 1");
            cum += m;
            const float pos = static_cast<float>((cum - 1) * m);
            for (index_t h = 0; h < n_heads; ++h) out(b * n_heads + h, j) = slopes[h] * pos;
        }
    }
    return out;
}

/// The ALiBi position policy: per-head slopes, applied by the attention kernel.
class alibi {
public:
    static constexpr where applies_to = where::score_bias;

    explicit alibi(index_t n_heads) : slopes_(alibi_slopes(n_heads)) {}
    /// One slope per query head, [head].
    std::span<const float> slopes() const noexcept { return slopes_; }
    /// The bias head `h` adds to the score of query position `q` against key position `k`.
    float bias(index_t h, index_t q, index_t k) const noexcept {
        return slopes_[h] * (static_cast<float>(k) - static_cast<float>(q));
    }

private:
    std::vector<float> slopes_;  // [head]
};

static_assert(position_encoding<alibi>);

}  // namespace kite::pos
