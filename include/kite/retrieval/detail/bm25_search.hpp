#pragma once
/// @file kite/retrieval/detail/bm25_search.hpp
/// Top-k scoring over an inverted_index: exhaustive term-at-a-time (the float reference) and
/// block-max MaxScore (document-at-a-time with dynamic pruning). Both return exactly the same
/// results, scores included:
///  - a posting's score is one expression, posting_score(), ending in a division (so no
///    compiler can fuse it with the accumulation into an FMA in one path and not the other);
///  - a document's score is the sum of its postings' scores in query-term order (ascending
///    term id) in float, in both paths;
///  - pruning compares upper bounds, inflated to cover float rounding, with the heap's k-th
///    score; documents arrive in increasing id order, so a document that only ties the k-th
///    cannot enter (topk_heap breaks ties by the lower id) and is safely skipped.

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <numeric>
#include <span>
#include <vector>

#include "kite/core/config.hpp"
#include "kite/core/topk.hpp"
#include "kite/retrieval/detail/postings.hpp"
#include "kite/retrieval/inverted_index.hpp"

namespace kite::retrieval::detail {

/// A query term with its weight w = idf x query frequency x the variant's factor.
struct weighted_term {
    term_id term;
    float w;
};

/// A query ready for scoring.
struct prepared_query {
    std::vector<weighted_term> terms;  // ascending term id, each term once
    float a = 0.0f;                    // kernel: w * tf / (tf + a + b * dl)
    float b = 0.0f;
    float constant = 0.0f;             // added to every returned score (BM25L, BM25+)
};

/// The score of one posting.
KITE_FORCE_INLINE float posting_score(float w, std::uint32_t tf, std::uint32_t dl, float a, float b) noexcept {
    const float f = static_cast<float>(tf);
    return (w * f) / (f + (a + b * static_cast<float>(dl)));
}

/// Buffers reused across queries (one per thread).
struct search_buffers {
    std::vector<posting_cursor> cursors;  // [query term]
    std::vector<float> contrib;           // [query term] score of the current candidate
    std::vector<double> ub;               // [query term] list upper bound
    std::vector<double> bm;               // [position in order] block upper bound
    std::vector<std::uint32_t> order;     // query terms by ascending upper bound
    std::vector<double> prefix;           // prefix sums of ub in that order
    std::vector<float> acc;               // [doc] exhaustive accumulator, all zero between calls
    std::vector<std::uint8_t> seen;       // [doc] touched flag, all zero between calls
    std::vector<std::uint32_t> touched;
    std::vector<term_id> tokens;          // analyzed query terms
    topk_heap<larger_first> heap;
    std::uint32_t docs[block_size];
    std::uint32_t tfs[block_size];
};

inline void finish(const prepared_query& q, search_buffers& s, std::vector<scored_id>& out) {
    out = s.heap.drain();
    if (q.constant != 0.0f)
        for (auto& r : out) r.score += q.constant;
}

/// Exhaustive term-at-a-time scoring of every posting of every query term.
inline void search_exhaustive(const inverted_index& ix, const prepared_query& q, std::size_t k,
                              search_buffers& s, std::vector<scored_id>& out) {
    const std::size_t ndocs = ix.doc_count();
    if (s.acc.size() < ndocs) {
        s.acc.resize(ndocs, 0.0f);
        s.seen.resize(ndocs, 0);
    }
    s.touched.clear();
    const std::uint32_t* dl = ix.doc_lengths().data();
    const std::uint8_t* del = ix.deleted_flags().data();
    const bool has_del = ix.has_deletions();
    float* acc = s.acc.data();
    std::uint8_t* seen = s.seen.data();
    for (const auto& qt : q.terms) {
        const auto& pl = ix.postings(qt.term);
        const auto visit = [&](const std::uint32_t* docs, const std::uint32_t* tfs, std::uint32_t n) {
            for (std::uint32_t i = 0; i < n; ++i) {
                const std::uint32_t d = docs[i];
                if (has_del && del[d]) continue;
                if (!seen[d]) {
                    seen[d] = 1;
                    s.touched.push_back(d);
                }
                acc[d] += posting_score(qt.w, tfs[i], dl[d], q.a, q.b);
            }
        };
        const auto blocks = pl.blocks();
        for (std::size_t b = 0; b < blocks.size(); ++b) {
            pl.decode(b, s.docs, s.tfs);
            visit(s.docs, s.tfs, blocks[b].count());
        }
        visit(pl.tail_docs().data(), pl.tail_tfs().data(), static_cast<std::uint32_t>(pl.tail_docs().size()));
    }
    s.heap.reset(k);
    for (const std::uint32_t d : s.touched) {
        s.heap.push(acc[d], d);
        acc[d] = 0.0f;
        seen[d] = 0;
    }
    finish(q, s, out);
}

/// Block-max MaxScore: query terms sorted by list upper bound; the low-bound prefix whose bounds
/// add up to at most the k-th score is "non-essential" (a document only in those lists cannot
/// enter the top k). Candidates come from the essential lists; non-essential lists are probed
/// (cheapest bound last) only while the candidate's bound, refined with block maxima, can still
/// beat the k-th score.
inline void search_maxscore(const inverted_index& ix, const prepared_query& q, std::size_t k,
                            search_buffers& s, std::vector<scored_id>& out) {
    const std::size_t m = q.terms.size();
    if (!ix.bounds_valid()) return search_exhaustive(ix, q, k, s, out);
    s.cursors.resize(m);
    s.contrib.assign(m, 0.0f);
    s.ub.resize(m);
    s.bm.resize(m);
    s.order.resize(m);
    s.prefix.resize(m + 1);
    for (std::size_t i = 0; i < m; ++i) {
        const auto& pl = ix.postings(q.terms[i].term);
        s.cursors[i].reset(pl);
        s.ub[i] = static_cast<double>(q.terms[i].w) * static_cast<double>(pl.max_g());
    }
    std::iota(s.order.begin(), s.order.end(), 0u);
    std::stable_sort(s.order.begin(), s.order.end(),
                     [&](std::uint32_t x, std::uint32_t y) { return s.ub[x] < s.ub[y]; });
    s.prefix[0] = 0.0;
    for (std::size_t j = 0; j < m; ++j) s.prefix[j + 1] = s.prefix[j] + s.ub[s.order[j]];
    // Float scores may exceed these double bounds by a few ulps per term.
    const double slack = 1.0 + static_cast<double>(m + 8) * 0x1p-21;

    const std::uint32_t* dl = ix.doc_lengths().data();
    const std::uint8_t* del = ix.deleted_flags().data();
    const bool has_del = ix.has_deletions();
    const std::uint32_t* order = s.order.data();
    posting_cursor* cur = s.cursors.data();
    float* contrib = s.contrib.data();
    double* bm = s.bm.data();
    s.heap.reset(k);
    double theta = -std::numeric_limits<double>::infinity();
    std::size_t ne = 0;  // order[0 .. ne) are non-essential

    for (;;) {
        std::uint32_t d = no_doc;
        for (std::size_t j = ne; j < m; ++j) d = std::min(d, cur[order[j]].doc());
        if (d == no_doc) break;
        double partial = 0.0;
        for (std::size_t j = ne; j < m; ++j) {
            const std::uint32_t i = order[j];
            if (cur[i].doc() == d) {
                const float v = posting_score(q.terms[i].w, cur[i].tf(), dl[d], q.a, q.b);
                contrib[i] = v;
                partial += v;
                cur[i].next();
            }
        }
        bool alive = !(has_del && del[d]);
        if (alive && ne > 0) {
            if ((partial + s.prefix[ne]) * slack <= theta) {
                alive = false;
            } else {
                double rem = 0.0;
                for (std::size_t j = 0; j < ne; ++j) {
                    const std::uint32_t i = order[j];
                    bm[j] = static_cast<double>(q.terms[i].w) * static_cast<double>(cur[i].block_max_g(d));
                    rem += bm[j];
                }
                for (std::size_t j = ne; j-- > 0;) {
                    if ((partial + rem) * slack <= theta) {
                        alive = false;
                        break;
                    }
                    const std::uint32_t i = order[j];
                    cur[i].seek(d);
                    if (cur[i].doc() == d) {
                        const float v = posting_score(q.terms[i].w, cur[i].tf(), dl[d], q.a, q.b);
                        contrib[i] = v;
                        partial += v;
                    }
                    rem -= bm[j];
                }
            }
        }
        if (alive) {
            float score = 0.0f;
            for (std::size_t i = 0; i < m; ++i) score += contrib[i];
            if (s.heap.push(score, d) && s.heap.full()) {
                theta = s.heap.threshold();
                while (ne < m && s.prefix[ne + 1] * slack <= theta) ++ne;
            }
        }
        for (std::size_t i = 0; i < m; ++i) contrib[i] = 0.0f;
    }
    finish(q, s, out);
}

}  // namespace kite::retrieval::detail
