#pragma once
/// @file kite/retrieval/detail/bm25_search.hpp
/// Top-k scoring over an inverted_index: exhaustive term-at-a-time (the float reference) and
/// windowed block-max MaxScore (dynamic pruning). Both return exactly the same results, scores
/// included, because:
///  - a posting's score is w x g with g = posting_g(tf, dl) (stored as the list's impact or
///    computed, the same float either way) and the product rounded before any addition (stored
///    to a buffer in the bulk loops, weighted() in the probes), so no compiler can fuse it with
///    the accumulation into an FMA in one path and not the other;
///  - a document's score is the float sum of its postings' scores in one canonical order of the
///    query terms, by decreasing list upper bound (then term id), in both paths; MaxScore's
///    essential terms are a prefix of that order and its non-essential ones the suffix, so
///    accumulating the first and then probing the second keeps the order;
///  - pruning compares upper bounds, inflated to cover float rounding, with the heap's k-th
///    score; documents are scored in increasing id order, so a document that only ties the
///    k-th cannot enter (topk_heap breaks ties by the lower id) and is safely skipped.

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <span>
#include <vector>

#include "kite/core/config.hpp"
#include "kite/core/topk.hpp"
#include "kite/retrieval/detail/postings.hpp"
#include "kite/retrieval/inverted_index.hpp"

namespace kite::retrieval::detail {

/// A query term with its weight w = idf x query frequency x the variant's factor, and the upper
/// bound of its postings' scores (w x the list's max g).
struct weighted_term {
    term_id term;
    float w;
    double ub;
};

/// A query ready for scoring.
struct prepared_query {
    std::vector<weighted_term> terms;  // canonical order (see order_terms), each term once
    float a = 0.0f;                    // kernel: w * tf / (tf + a + b * dl)
    float b = 0.0f;
    float constant = 0.0f;             // added to every returned score (BM25L, BM25+)
};

/// Sets each term's upper bound and sorts the terms into the canonical order.
inline void order_terms(const inverted_index& ix, prepared_query& q) {
    for (auto& t : q.terms)
        t.ub = static_cast<double>(t.w) * static_cast<double>(ix.postings(t.term).max_g());
    std::sort(q.terms.begin(), q.terms.end(), [](const weighted_term& x, const weighted_term& y) {
        return x.ub > y.ub || (x.ub == y.ub && x.term < y.term);
    });
}

/// w x g rounded to float on its own, before it is added to anything: a compiler may not fuse
/// it with the accumulation into an FMA in one path and not in another.
KITE_FORCE_INLINE float weighted(float w, float g) noexcept {
    float p = w * g;
#if defined(__GNUC__) && (defined(__x86_64__) || defined(__i386__))
    __asm__("" : "+x"(p));
#elif defined(__GNUC__) && defined(__aarch64__)
    __asm__("" : "+w"(p));
#else
    volatile float v = p;
    p = v;
#endif
    return p;
}

/// The score of one posting: w x g(tf, dl), g as the index stores it in its impacts.
KITE_FORCE_INLINE float posting_score(float w, std::uint32_t tf, std::uint32_t dl, float a, float b) noexcept {
    return weighted(w, posting_g(tf, dl, a, b));
}

/// Buffers reused across queries (one per thread).
///
/// The accumulator starts at -0.0f: adding any score (all are >= +0.0f) clears the sign bit,
/// so "touched" needs no separate flag (a flag written per posting would chain the stores of
/// neighbouring documents), and -0.0f + c == 0.0f + c keeps the sums identical.
struct search_buffers {
    std::vector<posting_cursor> cursors;  // [query term]
    std::vector<double> suffix;           // [p] sum of ub of terms p .. m-1 (canonical order)
    std::vector<double> bm;               // [p] block bound of term p at the candidate
    std::vector<float> acc;               // [doc - window start], all -0.0f between calls
    std::vector<term_id> tokens;          // analyzed query terms
    topk_heap<larger_first> heap;
    float scores[block_size];
    std::uint32_t docs[block_size];
};

/// Adds the scores of `c`'s postings with doc < hi to acc[doc - base]; leaves `c` on its first
/// posting >= hi. Impacts: read each posting's stored g (valid impacts) or compute it.
template <bool Impacts>
inline void accumulate(posting_cursor& c, std::uint32_t hi, std::uint32_t base, float w, float a, float b,
                       const std::uint32_t* dl, float* acc, float* tmp) {
    while (c.doc() < hi) {
        const std::uint32_t* docs = c.block_docs();
        const std::uint32_t p = c.pos();
        std::uint32_t end = c.count();
        if (c.block_last() >= hi) end = static_cast<std::uint32_t>(std::lower_bound(docs + p, docs + end, hi) - docs);
        // Scores first (vectorizable; each product is stored, so rounded, before the add), then
        // the scatter.
        if constexpr (Impacts) {
            const float* g = c.block_impacts();
            for (std::uint32_t i = p; i < end; ++i) tmp[i] = w * g[i];
        } else {
            const std::uint32_t* tfs = c.block_tfs();
            for (std::uint32_t i = p; i < end; ++i) tmp[i] = w * posting_g(tfs[i], dl[docs[i]], a, b);
        }
        for (std::uint32_t i = p; i < end; ++i) acc[docs[i] - base] += tmp[i];
        c.jump(end);
    }
}

/// The largest float that is <= x (for cut-offs that must not exceed a double bound).
inline float float_at_most(double x) noexcept {
    float f = static_cast<float>(x);
    if (static_cast<double>(f) > x) f = std::nextafter(f, -std::numeric_limits<float>::infinity());
    return f;
}

/// Accumulator entries scanned per vectorized "anything above the cut?" test.
inline constexpr std::uint32_t scan_chunk = 64;

/// True when some x[i] > cut (a branch-free reduction the compiler vectorizes).
inline bool any_above(const float* x, std::uint32_t n, float cut) noexcept {
    int any = 0;
    for (std::uint32_t i = 0; i < n; ++i) any |= x[i] > cut;
    return any != 0;
}

inline void finish(const prepared_query& q, search_buffers& s, std::vector<scored_id>& out) {
    out = s.heap.drain();
    if (q.constant != 0.0f)
        for (auto& r : out) r.score += q.constant;
}

inline void reserve_window(search_buffers& s, std::size_t n) {
    if (s.acc.size() < n) s.acc.resize(n, -0.0f);
}

/// Exhaustive term-at-a-time scoring of every posting of every query term.
inline void search_exhaustive(const inverted_index& ix, const prepared_query& q, std::size_t k,
                              search_buffers& s, std::vector<scored_id>& out) {
    const std::size_t ndocs = ix.doc_count();
    const std::size_t m = q.terms.size();
    reserve_window(s, ndocs);
    s.cursors.resize(m);
    const std::uint32_t* dl = ix.doc_lengths().data();
    float* acc = s.acc.data();
    if (ix.impacts_valid()) {
        // Block by block, no cursor: decode the doc ids, weight the stored impacts, scatter.
        std::uint32_t* docs = s.docs;
        float* tmp = s.scores;
        for (std::size_t p = 0; p < m; ++p) {
            const posting_list& pl = ix.postings(q.terms[p].term);
            const float w = q.terms[p].w;
            const float* g = pl.impacts().data();
            for (std::size_t b = 0; b < pl.blocks().size(); ++b) {
                const std::uint32_t n = pl.blocks()[b].count();
                pl.decode_docs(b, docs);
                for (std::uint32_t i = 0; i < n; ++i) tmp[i] = w * g[i];
                for (std::uint32_t i = 0; i < n; ++i) acc[docs[i]] += tmp[i];
                g += n;
            }
        }
    } else {
        for (std::size_t p = 0; p < m; ++p) {
            s.cursors[p].reset(ix.postings(q.terms[p].term));
            accumulate<false>(s.cursors[p], no_doc, 0, q.terms[p].w, q.a, q.b, dl, acc, s.scores);
        }
    }
    s.heap.reset(k);
    const std::uint8_t* del = ix.deleted_flags().data();
    // Untouched entries are -0.0f, which no threshold >= 0 lets through, so once the heap is
    // full the branch below is rarely taken. Documents come in increasing id, so one that only
    // ties the k-th cannot enter.
    float theta = -std::numeric_limits<float>::infinity();
    for (std::uint32_t c = 0; m && c < ndocs; c += scan_chunk) {
        const std::uint32_t end = std::min<std::uint32_t>(c + scan_chunk, static_cast<std::uint32_t>(ndocs));
        if (!any_above(acc + c, end - c, theta)) continue;
        for (std::uint32_t d = c; d < end; ++d) {
            const float score = acc[d];
            if (score > theta && !std::signbit(score) && !del[d]) {
                if (s.heap.push(score, d) && s.heap.full()) theta = s.heap.threshold();
            }
        }
    }
    if (m) std::fill(acc, acc + ndocs, -0.0f);
    finish(q, s, out);
}

/// Documents per MaxScore window.
inline constexpr std::uint32_t maxscore_window = 1024;

/// Windowed block-max MaxScore (after Turtle & Flood's MaxScore, in the bulk form of Lucene's
/// MaxScoreBulkScorer). Terms in canonical order p = 0..m-1 have bounds ub_p; the suffix
/// [e, m) whose bounds add up to at most the k-th score is "non-essential": a document found
/// only there cannot enter the top k. Per window of doc ids, the essential lists are scored
/// term-at-a-time into an accumulator; each document touched is then completed by probing the
/// non-essential lists in order, as long as its bound (refined with the lists' block maxima)
/// can still beat the k-th score.
inline void search_maxscore(const inverted_index& ix, const prepared_query& q, std::size_t k,
                            search_buffers& s, std::vector<scored_id>& out) {
    if (!ix.bounds_valid()) return search_exhaustive(ix, q, k, s, out);
    const std::size_t m = q.terms.size();
    const std::uint32_t ndocs = static_cast<std::uint32_t>(ix.doc_count());
    reserve_window(s, maxscore_window);
    s.cursors.resize(m);
    s.suffix.assign(m + 1, 0.0);
    for (std::size_t p = 0; p < m; ++p) s.cursors[p].reset(ix.postings(q.terms[p].term));
    for (std::size_t p = m; p-- > 0;) s.suffix[p] = s.suffix[p + 1] + q.terms[p].ub;
    // Float scores may exceed these double bounds by a few ulps per term.
    const double slack = 1.0 + static_cast<double>(m + 8) * 0x1p-21;

    const std::uint32_t* dl = ix.doc_lengths().data();
    const std::uint8_t* del = ix.deleted_flags().data();
    const bool impacts = ix.impacts_valid();
    posting_cursor* cur = s.cursors.data();
    float* acc = s.acc.data();
    s.bm.resize(m);
    double* bm = s.bm.data();
    s.heap.reset(k);
    double theta = -std::numeric_limits<double>::infinity();
    std::size_t e = m;  // terms [0, e) are essential

    std::uint32_t lo = 0;
    while (e > 0) {
        // Next window starts at the first essential posting.
        std::uint32_t first = no_doc;
        for (std::size_t p = 0; p < e; ++p) first = std::min(first, cur[p].doc());
        if (first == no_doc) break;
        lo = std::max(lo, first);
        const std::uint32_t hi = static_cast<std::uint32_t>(std::min<std::uint64_t>(std::uint64_t{lo} + maxscore_window, ndocs));
        for (std::size_t p = 0; p < e; ++p) {
            if (impacts)
                accumulate<true>(cur[p], hi, lo, q.terms[p].w, q.a, q.b, dl, acc, s.scores);
            else
                accumulate<false>(cur[p], hi, lo, q.terms[p].w, q.a, q.b, dl, acc, s.scores);
        }
        const std::size_t ew = e;  // this window's split
        const double ne_bound = s.suffix[ew];
        // Skip documents with score + ne_bound <= theta (scaled by slack) in one float compare;
        // untouched entries (-0.0f) are filtered by the sign test.
        float cut = float_at_most(theta / slack - ne_bound);
        for (std::uint32_t o = 0; o < hi - lo; ++o) {
            if (o % scan_chunk == 0 && !any_above(acc + o, std::min(scan_chunk, hi - lo - o), cut)) {
                o += scan_chunk - 1;
                continue;
            }
            float score = acc[o];
            if (!(score > cut) || std::signbit(score)) continue;
            const std::uint32_t d = lo + o;
            if (del[d]) continue;
            if (ew < m) {
                // Refine with the block maxima of the non-essential lists at d, then probe them.
                double rem = 0.0;
                for (std::size_t p = ew; p < m; ++p) {
                    bm[p] = static_cast<double>(q.terms[p].w) * static_cast<double>(cur[p].block_max_g(d));
                    rem += bm[p];
                }
                bool alive = true;
                for (std::size_t p = ew; p < m; ++p) {
                    if ((score + rem) * slack <= theta) {
                        alive = false;
                        break;
                    }
                    rem -= bm[p];
                    cur[p].seek(d);
                    if (cur[p].doc() == d)
                        score += impacts ? weighted(q.terms[p].w, cur[p].impact())
                                         : posting_score(q.terms[p].w, cur[p].tf(), dl[d], q.a, q.b);
                }
                if (!alive) continue;
            }
            if (s.heap.push(score, d) && s.heap.full()) {
                theta = s.heap.threshold();
                while (e > 0 && s.suffix[e - 1] * slack <= theta) --e;
                cut = float_at_most(theta / slack - ne_bound);
            }
        }
        std::fill(acc, acc + (hi - lo), -0.0f);
        lo = hi;
    }
    finish(q, s, out);
}

}  // namespace kite::retrieval::detail
