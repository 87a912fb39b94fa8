#pragma once
/// @file kite/retrieval/lexical_concepts.hpp
/// Concepts of kite's lexical retrieval: the BM25 variant policy. (Analyzer concepts live in
/// kite/text/concepts.hpp.)

#include <concepts>
#include <string_view>

namespace kite::bm25 {

/// Runtime BM25 parameters (defaults as bm25s and Lucene, with k1 = 1.2).
struct params {
    double k1 = 1.2;     // term-frequency saturation, >= 0
    double b = 0.75;     // length normalization, in [0, 1]
    double delta = 0.5;  // lower bound of the tf component (bm25l, bm25plus), >= 0
};

/// Every variant's term-frequency component, minus its value at tf = 0, has the shape
///   w * tf / (tf + a + (b_num / avgdl) * dl);
/// `zero` is the component at tf = 0 (which BM25L and BM25+ give to documents without the term).
/// The index scores and bounds postings with this one kernel.
struct score_shape {
    double w;
    double a;
    double b_num;
    double zero;
};

/// variant: a BM25 flavour.
///   V::name()                   a stable name (stored in index files);
///   V::idf(df, n)               inverse document frequency of a term in df of n documents, >= 0;
///   V::tfc(tf, dl, avgdl, p)    the term-frequency component, written literally as in bm25s
///                               (the double-precision oracle uses it);
///   V::shape(p)                 the same component as a score_shape (the fast path uses it).
/// Contract: tfc(tf, dl, avgdl, p) - tfc(0, dl, avgdl, p) == w * tf / (tf + a + b_num * dl / avgdl)
/// and tfc(0, ...) == zero, up to rounding (tests check it for every variant).
template <class V>
concept variant = requires(double x, const params& p) {
    { V::name() } -> std::convertible_to<std::string_view>;
    { V::idf(x, x) } -> std::same_as<double>;
    { V::tfc(x, x, x, p) } -> std::same_as<double>;
    { V::shape(p) } -> std::same_as<score_shape>;
};

}  // namespace kite::bm25
