#pragma once
/// @file kite/retrieval/inverted_index.hpp
/// kite::retrieval::inverted_index: the core of kite's lexical indexes. Works on term ids only
/// (no text, no utf8proc): per term a compressed posting list (see detail/postings.hpp); per
/// document its length (number of terms) and a deleted flag; live document frequencies and
/// length totals; a forward list of each document's distinct terms, varint-coded (so remove()
/// can fix the document frequencies).
///
/// Block-max bounds. Each block keeps max over its postings of the bound shape
///   g(tf, dl) = tf / (tf + a + (b_num / L) * dl),
/// where (a, b_num) come from the scoring model (every BM25 variant's per-posting score is
/// W * g with the true average length in place of L) and L = bound_avgdl() >= the current
/// average document length. g grows with L, so bounds stay valid while the average length does
/// not pass L; when it does, all bounds are recomputed with L = 1.0625 x average (amortized:
/// L must be outgrown by 6% before the next refresh). optimize() recomputes them with the exact
/// average (tightest bounds) and packs open tails; bulk loaders call it at the end. Removing
/// documents only makes bounds looser, never wrong.
///
/// Thread safety: const members may run from many threads; add/remove/compact/optimize need
/// exclusion.
///
/// Impacts. optimize() (and so bulk loading, compact() and deserialize()) also stores every
/// posting's g(tf, dl) with the exact average length, the very float the scorers would compute
/// from tf and dl (same expression, same coefficient b_num / avgdl), so scoring reads one float
/// per posting instead of a tf, a document length and a division. Any add or remove makes them
/// stale (impacts_valid() turns false and scorers compute g again) until the next optimize();
/// results are bit for bit the same either way. Cost: 4 bytes per posting.
///
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cmath>
#include <cstring>
#include <limits>
#include <span>
#include <string>
#include <vector>

#include "kite/core/error.hpp"
#include "kite/core/io.hpp"
#include "kite/retrieval/detail/postings.hpp"
#include "kite/retrieval/detail/serialize.hpp"
#include "kite/retrieval/vocabulary.hpp"

namespace kite::retrieval {

/// Parameters of the bound shape g(tf, dl) = tf / (tf + a + (b_num / L) * dl).
struct bound_shape {
    float a = 0.0f;
    float b_num = 0.0f;
};

/// Term-id posting lists with document lengths, deletions and block-max bounds.
class inverted_index {
public:
    /// Largest number of documents (doc ids are u32; one value marks "no document").
    static constexpr std::uint64_t max_docs = detail::no_doc - 1;

    inverted_index() = default;
    explicit inverted_index(bound_shape shape) : shape_(shape) {}

    // ---- statistics --------------------------------------------------------------------------
    /// Documents ever added (ids 0 .. doc_count()-1, removed ones included).
    std::size_t doc_count() const noexcept { return doc_len_.size(); }
    /// Live (not removed) documents.
    std::size_t num_docs() const noexcept { return live_docs_; }
    /// Sum of the live documents' lengths.
    std::uint64_t total_length() const noexcept { return live_length_; }
    /// Average live document length (0 when empty).
    double avg_length() const noexcept {
        return live_docs_ ? static_cast<double>(live_length_) / static_cast<double>(live_docs_) : 0.0;
    }
    /// Number of posting lists (terms that ever occurred, plus empty slots below the largest).
    std::size_t num_terms() const noexcept { return lists_.size(); }
    /// Live documents containing term `t` (0 for unknown terms).
    std::uint32_t doc_freq(term_id t) const noexcept { return t < df_.size() ? df_[t] : 0; }
    /// Length (number of terms) of document `d`.
    std::uint32_t doc_length(std::uint32_t d) const noexcept { return doc_len_[d]; }
    std::span<const std::uint32_t> doc_lengths() const noexcept { return doc_len_; }
    bool is_deleted(std::uint32_t d) const noexcept { return deleted_[d] != 0; }
    bool has_deletions() const noexcept { return live_docs_ != doc_len_.size(); }
    /// The deleted flags, one byte per doc id.
    std::span<const std::uint8_t> deleted_flags() const noexcept { return deleted_; }
    /// True when every list's impacts hold g(tf, dl) for the current statistics (see above).
    bool impacts_valid() const noexcept { return impacts_valid_; }
    /// Posting list of term `t` (< num_terms()).
    const detail::posting_list& postings(term_id t) const noexcept { return lists_[t]; }
    /// Calls f(term) for each distinct term of document `d`, in increasing term id.
    template <class F>
    void for_each_doc_term(std::uint32_t d, F&& f) const {
        const std::uint8_t* p = fwd_bytes_.data() + fwd_off_[d];
        const std::uint8_t* end = fwd_bytes_.data() + fwd_off_[d + 1];
        term_id t = 0;
        while (p < end) {
            std::uint32_t v = 0;
            for (int shift = 0;; shift += 7) {  // LEB128 varint of the gap to the previous term
                const std::uint8_t byte = *p++;
                v |= static_cast<std::uint32_t>(byte & 0x7F) << shift;
                if (!(byte & 0x80)) break;
            }
            t += v;
            f(t);
        }
    }

    /// The bound shape and the L its block bounds were computed with.
    bound_shape shape() const noexcept { return shape_; }
    float bound_avgdl() const noexcept { return bound_avgdl_; }
    /// b_num / L as a float, computed the way scorers compute b_num / avgdl (so that a smaller
    /// average gives a coefficient that is not smaller).
    static float length_coefficient(float b_num, double avgdl) noexcept {
        return avgdl > 0 ? b_num / static_cast<float>(avgdl) : 0.0f;
    }

    /// Heap bytes held by postings, lengths and forward lists.
    std::size_t memory_bytes() const noexcept {
        std::size_t n = doc_len_.capacity() * 4 + deleted_.capacity() + fwd_bytes_.capacity() +
                        fwd_off_.capacity() * 8 + df_.capacity() * 4 +
                        lists_.capacity() * sizeof(detail::posting_list);
        for (const auto& l : lists_) n += l.memory_bytes();
        return n;
    }

    // ---- mutation ----------------------------------------------------------------------------
    /// Adds a document given as its terms (repeats count as term frequency, any order). Returns
    /// its doc id. O(terms), plus an occasional bound refresh (see the file comment).
    std::uint32_t add(std::span<const term_id> terms) {
        const std::uint32_t d = add_unrefreshed(terms);
        maybe_refresh();
        return d;
    }

    /// add() without the bound check; call optimize() after the last one (bulk loading).
    std::uint32_t add_unrefreshed(std::span<const term_id> terms) {
        KITE_REQUIRE(doc_len_.size() < max_docs, invalid_argument, "inverted_index::add: the index holds ",
                     doc_len_.size(), " documents; expected at most ", max_docs);
        KITE_REQUIRE(terms.size() <= 0xFFFFFFFFu, invalid_argument, "inverted_index::add: document of ",
                     terms.size(), " terms; expected at most 2^32 - 1");
        const auto d = static_cast<std::uint32_t>(doc_len_.size());
        const auto dl = static_cast<std::uint32_t>(terms.size());
        impacts_valid_ = false;
        term_id max_t = 0;
        for (const term_id t : terms) max_t = std::max(max_t, t);
        if (!terms.empty() && max_t >= lists_.size()) grow_terms(std::size_t{max_t} + 1);
        // Count term frequencies with a dense counter; collect the distinct terms.
        distinct_.clear();
        for (const term_id t : terms)
            if (count_[t]++ == 0) distinct_.push_back(t);
        std::sort(distinct_.begin(), distinct_.end());
        const float coef = length_coefficient(shape_.b_num, bound_avgdl_);
        term_id prev = 0;
        for (const term_id t : distinct_) {
            const std::uint32_t tf = count_[t];
            count_[t] = 0;
            lists_[t].append(d, tf, g(tf, dl, coef));
            ++df_[t];
            put_varint(t - prev);
            prev = t;
        }
        fwd_off_.push_back(fwd_bytes_.size());
        doc_len_.push_back(dl);
        deleted_.push_back(0);
        ++live_docs_;
        live_length_ += dl;
        if (bound_avgdl_ == 0.0f && dl > 0) refresh_bounds(avg_length());
        return d;
    }

    /// Removes document `d`: it is never returned again and no longer counts in N, the average
    /// length or any document frequency. Its postings stay (skipped) until compact().
    /// Throws not_found_error for an unknown or already removed id.
    void remove(std::uint32_t d) {
        KITE_REQUIRE(d < doc_len_.size(), not_found_error, "inverted_index::remove: doc id ", d,
                     " does not exist; expected an id below ", doc_len_.size());
        KITE_REQUIRE(!deleted_[d], not_found_error, "inverted_index::remove: doc id ", d,
                     " was already removed");
        deleted_[d] = 1;
        impacts_valid_ = false;
        --live_docs_;
        live_length_ -= doc_len_[d];
        for_each_doc_term(d, [&](term_id t) { --df_[t]; });
        maybe_refresh();
    }

    /// Drops removed documents' postings from the lists (their ids stay retired).
    void compact() {
        if (!has_deletions()) return;
        const float coef = length_coefficient(shape_.b_num, bound_avgdl_);
        for (auto& l : lists_) {
            if (l.empty()) continue;
            detail::posting_list fresh;
            l.for_each([&](std::uint32_t doc, std::uint32_t tf) {
                if (!deleted_[doc]) fresh.append(doc, tf, g(tf, doc_len_[doc], coef));
            });
            fresh.seal();
            l = std::move(fresh);
        }
        // Forward lists of removed documents are no longer needed.
        std::vector<std::uint8_t> bytes;
        std::vector<std::uint64_t> off{0};
        bytes.reserve(fwd_bytes_.size());
        off.reserve(fwd_off_.size());
        for (std::size_t d = 0; d < doc_len_.size(); ++d) {
            if (!deleted_[d])
                bytes.insert(bytes.end(), fwd_bytes_.begin() + static_cast<std::ptrdiff_t>(fwd_off_[d]),
                             fwd_bytes_.begin() + static_cast<std::ptrdiff_t>(fwd_off_[d + 1]));
            off.push_back(bytes.size());
        }
        fwd_bytes_ = std::move(bytes);
        fwd_off_ = std::move(off);
        optimize();
    }

    /// True when every block bound is valid for the current average length (false only between
    /// add_unrefreshed() and optimize()). Pruned search falls back to exhaustive when false.
    bool bounds_valid() const noexcept { return avg_length() <= static_cast<double>(bound_avgdl_); }

    /// Makes num_terms() at least `n` (empty lists), e.g. to match a vocabulary.
    void reserve_terms(std::size_t n) {
        if (n > lists_.size()) grow_terms(n);
    }

    /// Packs every open tail, recomputes block bounds with the exact average length and stores
    /// the impacts.
    void optimize() {
        for (auto& l : lists_) {
            l.seal();
            l.shrink_to_fit();
        }
        fwd_bytes_.shrink_to_fit();
        refresh_bounds_and_impacts();
    }

    /// Recomputes every block bound with L = `avgdl`.
    void refresh_bounds(double avgdl) {
        const float coef = set_bound_length(avgdl);
        for (auto& l : lists_)
            l.refresh_bounds([&](std::uint32_t tf, std::uint32_t doc) { return g(tf, doc_len_[doc], coef); });
    }

    /// g(tf, dl) for a given coefficient b_num / L.
    float g(std::uint32_t tf, std::uint32_t dl, float coef) const noexcept {
        return detail::posting_g(tf, dl, shape_.a, coef);
    }

    // ---- serialization -----------------------------------------------------------------------
    /// Appends the index to `out` (open tails are written as packed blocks).
    void serialize(detail::byte_sink& out) const {
        out.put<std::uint64_t>(doc_len_.size());
        out.put_span(std::span<const std::uint32_t>(doc_len_));
        out.put_span(std::span<const std::uint8_t>(deleted_));
        out.put<std::uint64_t>(lists_.size());
        for (const auto& l0 : lists_) {
            const detail::posting_list* l = &l0;
            detail::posting_list sealed;
            if (!l0.tail_docs().empty()) {  // pack a copy; the index itself stays untouched
                sealed = l0;
                sealed.seal();
                l = &sealed;
            }
            out.put<std::uint32_t>(l->size());
            out.put<std::uint32_t>(static_cast<std::uint32_t>(l->blocks().size()));
            for (const auto& m : l->blocks()) {
                out.put<std::uint32_t>(m.last_doc);
                out.put<std::uint8_t>(m.count_m1);
                out.put<std::uint8_t>(m.doc_bits);
                out.put<std::uint8_t>(m.tf_bits);
                out.put<std::uint8_t>(0);
            }
            out.put<std::uint64_t>(l->payload_size());
            out.put_span(l->bytes().first(l->payload_size()));
        }
    }

    /// Reads an index written by serialize(), validating every field: sizes against the data
    /// left, block widths, doc ids (increasing, in range), term frequencies (>= 1) and that
    /// each document's term frequencies add up to its length. Throws format_error naming
    /// `r.source()` and what is wrong.
    static inverted_index deserialize(io::byte_reader& r, bound_shape shape) {
        inverted_index ix(shape);
        const std::string& src = r.source();
        const auto ndocs = r.get<std::uint64_t>("document count");
        KITE_REQUIRE(ndocs <= max_docs && ndocs <= r.remaining() / 5, format_error, src,
                     ": document count ", ndocs, " does not fit the file (", r.remaining(),
                     " bytes left)");
        ix.doc_len_.resize(ndocs);
        ix.deleted_.resize(ndocs);
        r.get_into(std::span<std::uint32_t>(ix.doc_len_), "document lengths");
        r.get_into(std::span<std::uint8_t>(ix.deleted_), "deleted flags");
        for (std::size_t d = 0; d < ndocs; ++d) {
            KITE_REQUIRE(ix.deleted_[d] <= 1, format_error, src, ": deleted flag of doc ", d,
                         " is ", int{ix.deleted_[d]}, "; expected 0 or 1");
            if (!ix.deleted_[d]) {
                ++ix.live_docs_;
                ix.live_length_ += ix.doc_len_[d];
            }
        }
        const auto nlists = r.get<std::uint64_t>("term count");
        KITE_REQUIRE(nlists <= r.remaining() / 16, format_error, src, ": term count ", nlists,
                     " does not fit the file (", r.remaining(), " bytes left)");
        ix.grow_terms(nlists);
        std::vector<std::uint64_t> tf_sum(ndocs, 0);
        std::vector<std::uint32_t> docs(detail::block_size), tfs(detail::block_size);
        std::vector<std::uint64_t> doc_nterms(ndocs + 1, 0);
        for (std::size_t t = 0; t < nlists; ++t) {
            const auto size = r.get<std::uint32_t>("posting count");
            const auto nblocks = r.get<std::uint32_t>("block count");
            KITE_REQUIRE(nblocks <= r.remaining() / 8, format_error, src, ": term ", t, " has ",
                         nblocks, " blocks, more than the file holds");
            std::vector<detail::block_meta> blocks(nblocks);
            std::uint64_t offset = 0, count = 0;
            for (auto& m : blocks) {
                m.last_doc = r.get<std::uint32_t>("block last doc");
                m.count_m1 = r.get<std::uint8_t>("block count");
                m.doc_bits = r.get<std::uint8_t>("block doc bits");
                m.tf_bits = r.get<std::uint8_t>("block tf bits");
                (void)r.get<std::uint8_t>("block reserved byte");
                KITE_REQUIRE(m.doc_bits <= 32 && m.tf_bits <= 32, format_error, src, ": term ", t,
                             " has a block with ", int{m.doc_bits}, "/", int{m.tf_bits},
                             " bits per value; expected at most 32");
                m.offset = static_cast<std::uint32_t>(offset);
                m.max_g = 0;
                offset += m.packed_size();
                count += m.count();
                KITE_REQUIRE(offset <= 0xFFFFFFFFull, format_error, src, ": term ", t,
                             " has more than 4 GiB of postings");
            }
            for (std::size_t b = 0; b + 1 < blocks.size(); ++b)
                KITE_REQUIRE(blocks[b].count() == detail::block_size, format_error, src, ": term ", t,
                             " block ", b, " holds ", blocks[b].count(), " postings; expected ",
                             detail::block_size, " in every block but the last");
            const auto nbytes = r.get<std::uint64_t>("posting bytes");
            KITE_REQUIRE(nbytes == offset && count == size, format_error, src, ": term ", t,
                         " declares ", size, " postings in ", nbytes, " bytes, but its blocks hold ",
                         count, " postings in ", offset, " bytes");
            const auto raw = r.take(static_cast<std::size_t>(nbytes), "postings");
            std::vector<std::uint8_t> bytes(nbytes);
            if (nbytes) std::memcpy(bytes.data(), raw.data(), nbytes);
            auto& l = ix.lists_[t];
            l.assign(std::move(blocks), std::move(bytes), size);
            std::uint64_t prev = 0;
            bool first = true;
            for (std::size_t b = 0; b < l.blocks().size(); ++b) {
                const std::uint32_t n = l.blocks()[b].count();
                // Decode gaps without the running sum first: a corrupt gap must not wrap.
                detail::unpack(l.bytes().data() + l.blocks()[b].offset, n, l.blocks()[b].doc_bits, docs.data());
                l.decode_tfs(b, tfs.data());
                for (std::uint32_t i = 0; i < n; ++i) {
                    const std::uint64_t doc = (first ? 0 : prev + 1) + docs[i];
                    KITE_REQUIRE(doc < ndocs, format_error, src, ": term ", t, " lists doc ", doc,
                                 "; expected ids below ", ndocs);
                    KITE_REQUIRE(tfs[i] != 0, format_error, src, ": term ", t,
                                 " has a term frequency of 2^32");
                    prev = doc;
                    first = false;
                    tf_sum[doc] += tfs[i];
                    ++doc_nterms[doc + 1];
                    if (!ix.deleted_[doc]) ++ix.df_[t];
                }
                KITE_REQUIRE(prev == l.blocks()[b].last_doc, format_error, src, ": term ", t,
                             " block ", b, " ends at doc ", prev, " but records ",
                             l.blocks()[b].last_doc);
            }
        }
        for (std::size_t d = 0; d < ndocs; ++d)
            KITE_REQUIRE(tf_sum[d] == ix.doc_len_[d], format_error, src, ": doc ", d, " has length ",
                         ix.doc_len_[d], " but its term frequencies add up to ", tf_sum[d]);
        // Forward lists by a counting pass over the postings (terms come out ascending).
        for (std::size_t d = 0; d < ndocs; ++d) doc_nterms[d + 1] += doc_nterms[d];
        std::vector<term_id> terms(doc_nterms[ndocs]);
        std::vector<std::uint64_t> fill(doc_nterms.begin(), doc_nterms.end() - 1);
        for (std::size_t t = 0; t < nlists; ++t)
            ix.lists_[t].for_each([&](std::uint32_t doc, std::uint32_t) {
                terms[fill[doc]++] = static_cast<term_id>(t);
            });
        ix.fwd_off_.assign(1, 0);
        for (std::size_t d = 0; d < ndocs; ++d) {
            term_id prev = 0;
            for (std::uint64_t i = doc_nterms[d]; i < doc_nterms[d + 1]; ++i) {
                ix.put_varint(terms[i] - prev);
                prev = terms[i];
            }
            ix.fwd_off_.push_back(ix.fwd_bytes_.size());
        }
        ix.refresh_bounds_and_impacts();
        return ix;
    }

private:
    void grow_terms(std::size_t n) {
        lists_.resize(n);
        df_.resize(n, 0);
        count_.resize(n, 0);
    }
    void put_varint(std::uint32_t v) {
        while (v >= 0x80) {
            fwd_bytes_.push_back(static_cast<std::uint8_t>(v | 0x80));
            v >>= 7;
        }
        fwd_bytes_.push_back(static_cast<std::uint8_t>(v));
    }
    /// Sets L (bound_avgdl_) to `avgdl` rounded up to a float and returns b_num / L.
    float set_bound_length(double avgdl) noexcept {
        // Round up: L must not be below the true average, or bounds_valid() would fail at once.
        float l = static_cast<float>(avgdl);
        if (static_cast<double>(l) < avgdl) l = std::nextafter(l, std::numeric_limits<float>::infinity());
        bound_avgdl_ = l;
        return length_coefficient(shape_.b_num, bound_avgdl_);
    }
    /// refresh_bounds(avg_length()) plus impacts (every tail must be sealed).
    void refresh_bounds_and_impacts() {
        const double avgdl = avg_length();
        const float coef = set_bound_length(avgdl);
        const float exact = length_coefficient(shape_.b_num, avgdl);  // what queries use
        for (auto& list : lists_)
            list.refresh_bounds_and_impacts(
                [&](std::uint32_t tf, std::uint32_t doc) { return g(tf, doc_len_[doc], coef); },
                [&](std::uint32_t tf, std::uint32_t doc) { return g(tf, doc_len_[doc], exact); });
        impacts_valid_ = true;
    }
    void maybe_refresh() {
        const double avg = avg_length();
        if (avg > bound_avgdl_) refresh_bounds(avg * 1.0625);
    }

    bound_shape shape_{};
    float bound_avgdl_ = 0.0f;
    std::vector<detail::posting_list> lists_;   // [term]
    std::vector<std::uint32_t> df_;             // [term] live document frequency
    std::vector<std::uint32_t> count_;          // [term] scratch of add(), all zero between calls
    std::vector<std::uint32_t> doc_len_;        // [doc]
    std::vector<std::uint8_t> deleted_;         // [doc]
    std::vector<term_id> distinct_;             // scratch of add()
    std::vector<std::uint8_t> fwd_bytes_;       // doc d's distinct terms, ascending, as varint gaps
                                                // at [fwd_off_[d], fwd_off_[d+1])
    std::vector<std::uint64_t> fwd_off_{0};     // [doc + 1]
    std::size_t live_docs_ = 0;
    std::uint64_t live_length_ = 0;
    bool impacts_valid_ = false;
};

}  // namespace kite::retrieval
