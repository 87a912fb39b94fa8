#pragma once
/// @file kite/pos/concepts.hpp
/// The concepts of kite::pos. A position encoding acts in one of three places of a transformer,
/// and a model picks the code path from `P::applies_to` at compile time:
///
///   where::embedding  — a [pos][dim] table added to the token embeddings (sinusoidal, learned);
///   where::qk         — a rotation of every query and key row by its position (rope);
///   where::score_bias — a per-head linear bias on the attention scores (alibi);
///   where::nowhere    — no position information at all (none; e.g. NoPE layers).

#include <concepts>
#include <span>

#include "kite/core/config.hpp"
#include "kite/core/matrix.hpp"
#include "kite/core/tensor.hpp"

namespace kite::pos {

/// Where a position encoding acts (see the file comment).
enum class where { embedding, qk, score_bias, nowhere };

/// rope_convention: how RoPE pairs the dimensions of a head before rotating each pair.
/// Contract:
///   - `C::name` is a string literal naming the convention;
///   - `C::rotate(x, cos, sin, rotary_dim)` rotates the first `rotary_dim` (even) elements of
///     the row `x` in place, pair i by the angle whose cosine/sine are cos[i], sin[i]
///     (i < rotary_dim / 2); elements past rotary_dim are untouched. O(rotary_dim), noexcept.
/// Models: kite::pos::rotate_half (pairs i, i + r/2) and kite::pos::interleaved (pairs 2i, 2i+1).
template <class C>
concept rope_convention = requires(float* x, const float* c, const float* s, index_t r) {
    { C::name } -> std::convertible_to<const char*>;
    { C::rotate(x, c, s, r) } noexcept;
};

/// position_encoding: a position policy a model can be assembled from.
/// Contract: `P::applies_to` is a kite::pos::where constant. In addition
///   - where::qk:         p.apply(x, positions) rotates x: [token][head][head_dim] in place;
///   - where::embedding:  p.add(x, positions) adds the table rows to x: [token][dim];
///   - where::score_bias: p.slopes() -> std::span<const float>, one slope per head.
/// All of them validate once per call and run O(elements) without allocating.
template <class P>
concept position_encoding =
    requires {
        { P::applies_to } -> std::convertible_to<where>;
    } &&
    (P::applies_to != where::qk ||
     requires(const P& p, tensor_view<float, 3> x, std::span<const index_t> positions) {
         p.apply(x, positions);
     }) &&
    (P::applies_to != where::embedding ||
     requires(const P& p, matrix_view<float> x, std::span<const index_t> positions) {
         p.add(x, positions);
     }) &&
    (P::applies_to != where::score_bias || requires(const P& p) {
        { p.slopes() } -> std::convertible_to<std::span<const float>>;
    });

}  // namespace kite::pos
