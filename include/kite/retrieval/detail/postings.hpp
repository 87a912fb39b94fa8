#pragma once
/// @file kite/retrieval/detail/postings.hpp
/// One term's posting list, compressed, and a cursor over it.
///
/// Layout. Postings (doc id, term frequency) sorted by doc id are cut into blocks of 128. A
/// block stores (doc - previous doc - 1) and (tf - 1), each bit-packed at the width of its
/// largest value (block_meta::doc_bits / tf_bits), plus its last doc id (for skipping) and
/// `max_g`, the largest bound-shape value g(tf, dl) = tf / (tf + a + b * dl) of its postings
/// (for block-max pruning; see inverted_index). Postings appended after the last full block stay
/// in an uncompressed tail until 128 of them fill a block; seal() packs a partial tail too, and
/// the next append reopens it.
///
/// Impacts. A list may also hold one float per posting, its "impact" g(tf, dl) computed with the
/// index's exact average length (see inverted_index::impacts_valid): the scorers then read a
/// posting's g instead of its tf and the document length, and skip the division. Blocks are full
/// (128 postings) except the last one, so block b's impacts start at b x 128.

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

#include "kite/core/config.hpp"
#include "kite/retrieval/detail/bitpack.hpp"

namespace kite::retrieval::detail {

inline constexpr std::uint32_t block_size = 128;
/// The doc id of an exhausted cursor (larger than every real doc id).
inline constexpr std::uint32_t no_doc = 0xFFFFFFFFu;

/// The bound shape / impact of one posting, g(tf, dl) = tf / (tf + (a + b * dl)) with b the
/// length coefficient b_num / L. Every scorer and the index compute it with this one expression,
/// so a stored impact equals the value computed on the fly, bit for bit.
KITE_FORCE_INLINE float posting_g(std::uint32_t tf, std::uint32_t dl, float a, float b) noexcept {
    const float f = static_cast<float>(tf);
    return f / (f + (a + b * static_cast<float>(dl)));
}

/// One packed block of a posting list.
struct block_meta {
    std::uint32_t last_doc;  // doc id of the block's last posting
    std::uint32_t offset;    // byte offset of the packed gaps, then tfs, in posting_list::bytes
    std::uint8_t count_m1;   // postings in the block, minus 1 (1..128)
    std::uint8_t doc_bits;   // bits per doc gap
    std::uint8_t tf_bits;    // bits per tf - 1
    std::uint8_t reserved;
    float max_g;             // max bound shape g over the block's postings

    std::uint32_t count() const noexcept { return std::uint32_t{count_m1} + 1; }
    std::size_t packed_size() const noexcept {
        return packed_bytes(count(), doc_bits) + packed_bytes(count(), tf_bits);
    }
};

/// A term's postings: packed blocks plus an open tail.
class posting_list {
public:
    /// Number of postings (deleted documents included until compaction).
    std::uint32_t size() const noexcept { return size_; }
    bool empty() const noexcept { return size_ == 0; }
    /// Doc id of the last posting (no_doc when empty).
    std::uint32_t last_doc() const noexcept {
        if (!tail_docs_.empty()) return tail_docs_.back();
        return blocks_.empty() ? no_doc : blocks_.back().last_doc;
    }
    /// Largest g over all postings.
    float max_g() const noexcept { return max_g_; }

    std::span<const block_meta> blocks() const noexcept { return blocks_; }
    std::span<const std::uint32_t> tail_docs() const noexcept { return tail_docs_; }
    std::span<const std::uint32_t> tail_tfs() const noexcept { return tail_tfs_; }
    float tail_max_g() const noexcept { return tail_max_g_; }
    /// The packed bytes (followed by 8 bytes of zero padding when non-empty).
    std::span<const std::uint8_t> bytes() const noexcept { return bytes_; }

    /// Appends a posting; `doc` must exceed last_doc(). `g` is its bound-shape value.
    void append(std::uint32_t doc, std::uint32_t tf, float g) {
        if (tail_docs_.empty() && !blocks_.empty() && blocks_.back().count() < block_size) reopen();
        tail_docs_.push_back(doc);
        tail_tfs_.push_back(tf);
        tail_max_g_ = std::max(tail_max_g_, g);
        max_g_ = std::max(max_g_, g);
        ++size_;
        if (tail_docs_.size() == block_size) seal();
    }

    /// Releases spare capacity (after a bulk load).
    void shrink_to_fit() {
        blocks_.shrink_to_fit();
        bytes_.shrink_to_fit();
        if (tail_docs_.empty()) {
            tail_docs_.shrink_to_fit();
            tail_tfs_.shrink_to_fit();
        }
    }

    /// Packs the tail (of any length) into a block.
    void seal() {
        const auto n = static_cast<std::uint32_t>(tail_docs_.size());
        if (n == 0) return;
        std::uint32_t gaps[block_size], tfs[block_size];
        std::uint32_t prev = blocks_.empty() ? no_doc : blocks_.back().last_doc;
        std::uint32_t max_gap = 0, max_tf = 0;
        for (std::uint32_t i = 0; i < n; ++i) {
            gaps[i] = tail_docs_[i] - prev - 1;  // prev = no_doc wraps to "doc itself"
            prev = tail_docs_[i];
            tfs[i] = tail_tfs_[i] - 1;
            max_gap = std::max(max_gap, gaps[i]);
            max_tf = std::max(max_tf, tfs[i]);
        }
        block_meta m{};
        m.last_doc = tail_docs_.back();
        m.offset = static_cast<std::uint32_t>(payload_size());
        m.count_m1 = static_cast<std::uint8_t>(n - 1);
        m.doc_bits = static_cast<std::uint8_t>(bit_width(max_gap));
        m.tf_bits = static_cast<std::uint8_t>(bit_width(max_tf));
        m.max_g = tail_max_g_;
        const std::size_t db = packed_bytes(n, m.doc_bits);
        bytes_.resize(m.offset + m.packed_size() + 8, 0);
        pack(gaps, n, m.doc_bits, bytes_.data() + m.offset);
        pack(tfs, n, m.tf_bits, bytes_.data() + m.offset + db);
        blocks_.push_back(m);
        tail_docs_.clear();
        tail_tfs_.clear();
        tail_max_g_ = 0;
        if (n < block_size) {  // a sealed partial tail: the list is probably complete
            tail_docs_.shrink_to_fit();
            tail_tfs_.shrink_to_fit();
        }
    }

    /// Decodes block `b` into docs[0..count) and tfs[0..count) (tfs may be null).
    void decode(std::size_t b, std::uint32_t* docs, std::uint32_t* tfs) const noexcept {
        const block_meta& m = blocks_[b];
        const std::uint32_t n = m.count();
        const std::uint8_t* p = bytes_.data() + m.offset;
        decode_docs(b, docs);
        if (tfs) {
            unpack(p + packed_bytes(n, m.doc_bits), n, m.tf_bits, tfs);
            for (std::uint32_t i = 0; i < n; ++i) tfs[i] += 1;
        }
    }
    void decode_docs(std::size_t b, std::uint32_t* docs) const noexcept {
        const block_meta& m = blocks_[b];
        const std::uint32_t n = m.count();
        unpack(bytes_.data() + m.offset, n, m.doc_bits, docs);
        gaps_to_docs(docs, n, b == 0 ? no_doc : blocks_[b - 1].last_doc);
    }
    void decode_tfs(std::size_t b, std::uint32_t* tfs) const noexcept {
        const block_meta& m = blocks_[b];
        const std::uint32_t n = m.count();
        unpack(bytes_.data() + m.offset + packed_bytes(n, m.doc_bits), n, m.tf_bits, tfs);
        for (std::uint32_t i = 0; i < n; ++i) tfs[i] += 1;
    }

    /// Calls f(doc, tf) for every posting in doc order.
    template <class F>
    void for_each(F&& f) const {
        std::uint32_t docs[block_size], tfs[block_size];
        for (std::size_t b = 0; b < blocks_.size(); ++b) {
            decode(b, docs, tfs);
            for (std::uint32_t i = 0; i < blocks_[b].count(); ++i) f(docs[i], tfs[i]);
        }
        for (std::size_t i = 0; i < tail_docs_.size(); ++i) f(tail_docs_[i], tail_tfs_[i]);
    }

    /// Impacts, one per posting in doc order (meaningful only while the owning index says so).
    std::span<const float> impacts() const noexcept { return impacts_; }

    /// Recomputes every max_g with `bound(tf, doc)` and stores impact(tf, doc) for every posting.
    /// The tail must be sealed.
    template <class G, class I>
    void refresh_bounds_and_impacts(G&& bound, I&& impact) {
        std::uint32_t docs[block_size], tfs[block_size];
        max_g_ = 0;
        impacts_.resize(size_);
        std::size_t at = 0;
        for (std::size_t b = 0; b < blocks_.size(); ++b) {
            decode(b, docs, tfs);
            float m = 0;
            for (std::uint32_t i = 0; i < blocks_[b].count(); ++i) {
                m = std::max(m, bound(tfs[i], docs[i]));
                impacts_[at++] = impact(tfs[i], docs[i]);
            }
            blocks_[b].max_g = m;
            max_g_ = std::max(max_g_, m);
        }
        impacts_.shrink_to_fit();
        tail_max_g_ = 0;
    }

    /// Recomputes every max_g with `g(tf, doc)` (after the bound shape changed).
    template <class G>
    void refresh_bounds(G&& g) {
        std::uint32_t docs[block_size], tfs[block_size];
        max_g_ = 0;
        for (std::size_t b = 0; b < blocks_.size(); ++b) {
            decode(b, docs, tfs);
            float m = 0;
            for (std::uint32_t i = 0; i < blocks_[b].count(); ++i) m = std::max(m, g(tfs[i], docs[i]));
            blocks_[b].max_g = m;
            max_g_ = std::max(max_g_, m);
        }
        tail_max_g_ = 0;
        for (std::size_t i = 0; i < tail_docs_.size(); ++i)
            tail_max_g_ = std::max(tail_max_g_, g(tail_tfs_[i], tail_docs_[i]));
        max_g_ = std::max(max_g_, tail_max_g_);
    }

    /// Installs blocks read from a file (validated by the caller).
    void assign(std::vector<block_meta> blocks, std::vector<std::uint8_t> bytes, std::uint32_t size) {
        blocks_ = std::move(blocks);
        bytes_ = std::move(bytes);
        if (!bytes_.empty()) bytes_.resize(bytes_.size() + 8, 0);
        size_ = size;
        tail_docs_.clear();
        tail_tfs_.clear();
        impacts_.clear();
        tail_max_g_ = max_g_ = 0;
    }

    /// Bytes of packed block data (without the padding).
    std::size_t payload_size() const noexcept { return bytes_.empty() ? 0 : bytes_.size() - 8; }
    /// Heap bytes held (for memory reports).
    std::size_t memory_bytes() const noexcept {
        return blocks_.capacity() * sizeof(block_meta) + bytes_.capacity() +
               (tail_docs_.capacity() + tail_tfs_.capacity()) * sizeof(std::uint32_t) +
               impacts_.capacity() * sizeof(float);
    }

private:
    // Unpacks a partial last block back into the tail so appends continue it.
    void reopen() {
        const block_meta m = blocks_.back();
        const std::uint32_t n = m.count();
        tail_docs_.resize(n);
        tail_tfs_.resize(n);
        decode(blocks_.size() - 1, tail_docs_.data(), tail_tfs_.data());
        tail_max_g_ = m.max_g;
        blocks_.pop_back();
        if (m.offset == 0) {
            bytes_.clear();
        } else {
            bytes_.resize(m.offset);
            bytes_.resize(m.offset + 8, 0);
        }
    }

    std::vector<block_meta> blocks_;
    std::vector<std::uint8_t> bytes_;
    std::vector<std::uint32_t> tail_docs_, tail_tfs_;
    std::vector<float> impacts_;
    float tail_max_g_ = 0;
    float max_g_ = 0;
    std::uint32_t size_ = 0;
};

/// Forward iterator with skipping over one posting list (document-at-a-time scoring).
/// Blocks are decoded on entry (doc ids) and on first tf() (term frequencies).
class posting_cursor {
public:
    void reset(const posting_list& pl) {
        pl_ = &pl;
        nblocks_ = static_cast<std::uint32_t>(pl.blocks().size() + (pl.tail_docs().empty() ? 0 : 1));
        shallow_ = 0;
        load(0);
    }

    /// Current doc id (no_doc when exhausted).
    std::uint32_t doc() const noexcept { return doc_; }
    /// Term frequency at the current posting.
    std::uint32_t tf() noexcept {
        if (!tfs_ready_) {
            if (tail_) {
                tfs_ = pl_->tail_tfs().data();
            } else {
                pl_->decode_tfs(block_, tf_buf_);
                tfs_ = tf_buf_;
            }
            tfs_ready_ = true;
        }
        return tfs_[pos_];
    }
    /// Moves to the next posting.
    void next() noexcept {
        if (++pos_ < count_) {
            doc_ = docs_[pos_];
        } else {
            load(block_ + 1);
        }
    }
    /// Moves to the first posting with doc >= target (no-op when already there).
    void seek(std::uint32_t target) noexcept {
        if (doc_ >= target) return;
        if (target > block_last_) {
            std::uint32_t b = block_ + 1;
            while (b < nblocks_ && last_doc_of(b) < target) ++b;
            load(b);
            if (doc_ >= target) return;
        }
        while (docs_[pos_] < target) ++pos_;  // the block's last doc is >= target
        doc_ = docs_[pos_];
    }
    /// Max g of the block that holds the first posting >= target (0 past the end), found without
    /// decoding; `target` must not decrease between calls.
    float block_max_g(std::uint32_t target) noexcept {
        while (shallow_ < nblocks_ && last_doc_of(shallow_) < target) ++shallow_;
        return shallow_ < nblocks_ ? max_g_of(shallow_) : 0.0f;
    }
    // Bulk access to the current block (for term-at-a-time loops).
    std::uint32_t pos() const noexcept { return pos_; }
    std::uint32_t count() const noexcept { return count_; }
    std::uint32_t block_last() const noexcept { return block_last_; }
    const std::uint32_t* block_docs() const noexcept { return docs_; }
    const std::uint32_t* block_tfs() noexcept {
        (void)tf();
        return tfs_;
    }
    /// Impacts of the current block (a packed block of a list whose impacts are valid).
    const float* block_impacts() const noexcept { return pl_->impacts().data() + std::size_t{block_} * block_size; }
    /// Impact of the current posting (same condition).
    float impact() const noexcept { return block_impacts()[pos_]; }
    /// Moves to position `p` of the current block (the next block when p == count()).
    void jump(std::uint32_t p) noexcept {
        if (p < count_) {
            pos_ = p;
            doc_ = docs_[p];
        } else {
            load(block_ + 1);
        }
    }

    /// Last doc of the block block_max_g() looked at last (no_doc past the end).
    std::uint32_t shallow_last_doc() const noexcept {
        return shallow_ < nblocks_ ? last_doc_of(shallow_) : no_doc;
    }

private:
    std::uint32_t last_doc_of(std::uint32_t b) const noexcept {
        return b < pl_->blocks().size() ? pl_->blocks()[b].last_doc : pl_->tail_docs().back();
    }
    float max_g_of(std::uint32_t b) const noexcept {
        return b < pl_->blocks().size() ? pl_->blocks()[b].max_g : pl_->tail_max_g();
    }
    void load(std::uint32_t b) noexcept {
        block_ = b;
        pos_ = 0;
        tfs_ready_ = false;
        if (b >= nblocks_) {
            doc_ = no_doc;
            block_last_ = no_doc;
            count_ = 0;
            return;
        }
        tail_ = b == pl_->blocks().size();
        if (tail_) {
            docs_ = pl_->tail_docs().data();
            count_ = static_cast<std::uint32_t>(pl_->tail_docs().size());
        } else {
            pl_->decode_docs(b, doc_buf_);
            docs_ = doc_buf_;
            count_ = pl_->blocks()[b].count();
        }
        block_last_ = docs_[count_ - 1];
        doc_ = docs_[0];
    }

    const posting_list* pl_ = nullptr;
    const std::uint32_t* docs_ = nullptr;
    const std::uint32_t* tfs_ = nullptr;
    std::uint32_t nblocks_ = 0, block_ = 0, pos_ = 0, count_ = 0, shallow_ = 0;
    std::uint32_t doc_ = no_doc, block_last_ = no_doc;
    bool tail_ = false, tfs_ready_ = false;
    std::uint32_t doc_buf_[block_size];
    std::uint32_t tf_buf_[block_size];
};

}  // namespace kite::retrieval::detail
