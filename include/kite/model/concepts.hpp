#pragma once
/// @file kite/model/concepts.hpp
/// The concepts of kite::model: the policies a transformer is assembled from (activation,
/// norm, MLP kind, weight format), each with its contract. A decoder or an encoder names one
/// policy per family as a template argument; a wrong type fails here with the concept's name.

#include <concepts>
#include <cstdint>
#include <span>

#include "kite/core/config.hpp"
#include "kite/core/matrix.hpp"
#include "kite/model/config.hpp"
#include "kite/quant/concepts.hpp"

namespace kite::model {

/// activation_function: an elementwise nonlinearity.
/// Contract: `A::kind` is the kite::model::activation it implements (matched against
/// config.json's hidden_act at load), `A::name` a string literal; `A::apply(float) -> float`
/// (scalar) and `A::apply(float* x, index_t n)` (in place over n values, vectorized) agree to
/// float rounding; `A::reference(double) -> double` is the oracle. O(n), noexcept.
template <class A>
concept activation_function = requires(float x, double d, float* p, index_t n) {
    { A::kind } -> std::convertible_to<activation>;
    { A::name } -> std::convertible_to<const char*>;
    { A::apply(x) } noexcept -> std::same_as<float>;
    { A::apply(p, n) } noexcept;
    { A::reference(d) } noexcept -> std::same_as<double>;
};

/// norm_layer: a normalisation over the last dimension of activations.
/// Contract: `N::kind` is the kite::model::norm_type it implements; `N::make(weight, bias, eps)`
/// builds one from a [dim] weight, a [dim] bias or an empty span (a norm without bias refuses a
/// non-empty one with kite::invalid_argument) and an epsilon; n.forward(x [dim], y [dim]) and
/// n.forward(X [tokens][dim], Y [tokens][dim]) normalise (y may alias x). O(tokens * dim).
template <class N>
concept norm_layer = std::movable<N> &&
    requires(const N& n, std::span<const float> w, std::span<const float> x, std::span<float> y,
             matrix_view<const float> X, matrix_view<float> Y, float eps) {
        { N::kind } -> std::convertible_to<norm_type>;
        { N::name } -> std::convertible_to<const char*>;
        { N::make(w, w, eps) } -> std::same_as<N>;
        { n.dim() } -> std::convertible_to<index_t>;
        n.forward(x, y);
        n.forward(X, Y);
    };

/// mlp_kind: the shape of a transformer's feed-forward network.
/// Contract: `M::gated` (true: down(act(gate x) * up x), SwiGLU; false: down(act(up x))),
/// `M::activation` models activation_function, `M::type` is the matching kite::model::mlp_type
/// and `M::name` a string literal.
template <class M>
concept mlp_kind = activation_function<typename M::activation> && requires {
    { M::gated } -> std::convertible_to<bool>;
    { M::type } -> std::convertible_to<mlp_type>;
    { M::name } -> std::convertible_to<const char*>;
};

/// weights_policy: what a model's linear layers store — a kite::quant::weight_format, or a
/// kite::quant::quant_method whose `format` is one (the loader then quantizes float weights with
/// it, calibrating on the model's own activations when the method needs them).
template <class W>
concept weights_policy = quant::weight_format<W> || quant::quant_method<W>;

}  // namespace kite::model
