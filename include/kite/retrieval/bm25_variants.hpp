#pragma once
/// @file kite/retrieval/bm25_variants.hpp
/// BM25 variants as policies (namespace kite::bm25), with the formulas of bm25s (Kamphuis et
/// al., ECIR 2020), which rank_bm25 shares for BM25L and BM25+:
///
///   variant         idf(df, N)                          tf component (nrm = 1 - b + b dl/avgdl)
///   robertson       ln(max(1, (N - df + .5)/(df + .5)))  tf / (tf + k1 nrm)
///   lucene          ln(1 + (N - df + .5)/(df + .5))      tf / (tf + k1 nrm)
///   atire           ln(N / df)                          tf (k1 + 1) / (tf + k1 nrm)
///   bm25l           ln((N + 1)/(df + .5))               (k1 + 1)(c + d) / (k1 + c + d), c = tf / nrm
///   bm25plus        ln((N + 1)/df)                      tf (k1 + 1) / (tf + k1 nrm) + d
///   lucene_classic  as lucene                           as atire
///
/// score(q, D) = sum over query tokens (repeats count) of idf * tf component. BM25L and BM25+
/// give a document without the term idf * tfc(0) too, as bm25s and rank_bm25 do.
/// `lucene` is Lucene >= 8 (and bm25s's default); `lucene_classic` keeps the (k1 + 1) factor
/// that Lucene dropped in 8.0 and is the formula of the seed's BM25 (same ranking as lucene,
/// scores (k1 + 1) times larger).

#include <algorithm>
#include <cmath>
#include <string_view>

#include "kite/retrieval/lexical_concepts.hpp"

namespace kite::bm25 {

namespace detail {
inline double length_norm(double dl, double avgdl, const params& p) noexcept {
    return 1.0 - p.b + p.b * (avgdl > 0 ? dl / avgdl : 0.0);
}
inline double idf_lucene(double df, double n) noexcept { return std::log(1.0 + (n - df + 0.5) / (df + 0.5)); }
inline double tfc_robertson(double tf, double dl, double avgdl, const params& p) noexcept {
    return tf / (p.k1 * length_norm(dl, avgdl, p) + tf);
}
inline double tfc_atire(double tf, double dl, double avgdl, const params& p) noexcept {
    return tf * (p.k1 + 1.0) / (tf + p.k1 * length_norm(dl, avgdl, p));
}
}  // namespace detail

/// Robertson et al.: idf clipped at 0 (bm25s's allow_negative = False).
struct robertson {
    static constexpr std::string_view name() noexcept { return "robertson"; }
    static double idf(double df, double n) noexcept {
        return std::log(std::max(1.0, (n - df + 0.5) / (df + 0.5)));
    }
    static double tfc(double tf, double dl, double avgdl, const params& p) noexcept {
        return detail::tfc_robertson(tf, dl, avgdl, p);
    }
    static constexpr score_shape shape(const params& p) noexcept {
        return {1.0, p.k1 * (1.0 - p.b), p.k1 * p.b, 0.0};
    }
};

/// Lucene (>= 8.0): idf = ln(1 + (N - df + 0.5)/(df + 0.5)); the default.
struct lucene {
    static constexpr std::string_view name() noexcept { return "lucene"; }
    static double idf(double df, double n) noexcept { return detail::idf_lucene(df, n); }
    static double tfc(double tf, double dl, double avgdl, const params& p) noexcept {
        return detail::tfc_robertson(tf, dl, avgdl, p);
    }
    static constexpr score_shape shape(const params& p) noexcept {
        return {1.0, p.k1 * (1.0 - p.b), p.k1 * p.b, 0.0};
    }
};

/// ATIRE (Trotman et al.): idf = ln(N/df), tf component with (k1 + 1).
struct atire {
    static constexpr std::string_view name() noexcept { return "atire"; }
    static double idf(double df, double n) noexcept { return std::log(n / df); }
    static double tfc(double tf, double dl, double avgdl, const params& p) noexcept {
        return detail::tfc_atire(tf, dl, avgdl, p);
    }
    static constexpr score_shape shape(const params& p) noexcept {
        return {p.k1 + 1.0, p.k1 * (1.0 - p.b), p.k1 * p.b, 0.0};
    }
};

/// BM25L (Lv and Zhai): shifts the length-normalized tf by delta.
struct bm25l {
    static constexpr std::string_view name() noexcept { return "bm25l"; }
    static double idf(double df, double n) noexcept { return std::log((n + 1.0) / (df + 0.5)); }
    static double tfc(double tf, double dl, double avgdl, const params& p) noexcept {
        const double c = tf / detail::length_norm(dl, avgdl, p);
        return ((p.k1 + 1.0) * (c + p.delta)) / (p.k1 + c + p.delta);
    }
    static constexpr score_shape shape(const params& p) noexcept {
        // (k1+1)(c+d)/(k1+c+d) - (k1+1)d/(k1+d) = (k1+1)k1/(k1+d) * tf / (tf + (k1+d) nrm)
        const double kd = p.k1 + p.delta;
        return {kd > 0 ? (p.k1 + 1.0) * p.k1 / kd : 0.0, kd * (1.0 - p.b), kd * p.b,
                kd > 0 ? (p.k1 + 1.0) * p.delta / kd : 0.0};
    }
};

/// BM25+ (Lv and Zhai): adds delta to the tf component of every query term.
struct bm25plus {
    static constexpr std::string_view name() noexcept { return "bm25plus"; }
    static double idf(double df, double n) noexcept { return std::log((n + 1.0) / df); }
    static double tfc(double tf, double dl, double avgdl, const params& p) noexcept {
        return detail::tfc_atire(tf, dl, avgdl, p) + p.delta;
    }
    static constexpr score_shape shape(const params& p) noexcept {
        return {p.k1 + 1.0, p.k1 * (1.0 - p.b), p.k1 * p.b, p.delta};
    }
};

/// Lucene's idf with the (k1 + 1) factor Lucene dropped in 8.0: the seed's formula.
struct lucene_classic {
    static constexpr std::string_view name() noexcept { return "lucene_classic"; }
    static double idf(double df, double n) noexcept { return detail::idf_lucene(df, n); }
    static double tfc(double tf, double dl, double avgdl, const params& p) noexcept {
        return detail::tfc_atire(tf, dl, avgdl, p);
    }
    static constexpr score_shape shape(const params& p) noexcept {
        return {p.k1 + 1.0, p.k1 * (1.0 - p.b), p.k1 * p.b, 0.0};
    }
};

static_assert(variant<robertson> && variant<lucene> && variant<atire> && variant<bm25l> &&
              variant<bm25plus> && variant<lucene_classic>);

}  // namespace kite::bm25
