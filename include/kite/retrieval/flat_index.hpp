#pragma once
/// @file kite/retrieval/flat_index.hpp
/// flat_index<Metric>: exact (brute-force) k-nearest-neighbour search, FAISS's IndexFlat in a
/// header.
///
///   kite::retrieval::flat_index<kite::metric::l2> index(384);
///   index.add(embeddings);                          // [n][384], ids 0, 1, 2, ...
///   auto r = index.search(queries, 10);             // r.distances, r.labels: [nq][10]
///   kite::retrieval::write_faiss(index, "x.index"); // loads in FAISS (faiss_io.hpp)
///
/// Results are sorted best first with ties broken by the lower id; when fewer than k vectors
/// exist the rest of each row is padded with id -1 and +inf (l2) or -inf (inner product), as
/// FAISS does. Distances are squared L2 (as FAISS reports them) or inner products.
///
/// Ids: add() assigns consecutive ids starting at 0 (after the largest id used so far);
/// add_with_ids() takes the caller's non-negative, unique ids. Unlike FAISS's IndexFlat,
/// remove_ids() keeps the ids of the remaining vectors (FAISS renumbers them); such an index is
/// written to FAISS format as an IndexIDMap around the flat index.
///
/// Memory: 4 bytes per component, plus 2 with flat_options::f16_scan, a float16 copy that
/// single-query and small-batch searches scan at half the bytes, and 2 with
/// flat_options::bf16_gemm, a bfloat16 copy that batch searches multiply at twice the rate
/// (results unchanged with either). Batches of more than 32 queries need no copy for that on
/// some CPUs: on AMD Zen 4 they convert rows to bfloat16 chunk by chunk for vdpbf16ps, and on
/// Intel Xeons whose OS grants AMX (kite::cpu::amx_active()) they multiply on AMX tiles, about
/// 3.8x the float32 kernel at 1,000 queries; the answers are the float32 kernel's, bit for bit.
///
/// Threads: search and range_search are const and safe to call from many threads at once;
/// add, add_with_ids, remove_ids and reset need exclusive access.

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <span>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "kite/core/buffer.hpp"
#include "kite/core/config.hpp"
#include "kite/core/error.hpp"
#include "kite/core/half.hpp"
#include "kite/core/matrix.hpp"
#include "kite/core/simd.hpp"
#include "kite/core/validate.hpp"
#include "kite/retrieval/concepts.hpp"
#include "kite/retrieval/detail/flat_search.hpp"
#include "kite/retrieval/metric.hpp"

namespace kite::retrieval {

/// Results of a k-nearest-neighbour search: row q holds query q's k results, best first.
struct search_result {
    kite::matrix<float> distances;  // [nq][k]
    kite::matrix<id_t> labels;      // [nq][k], -1 where fewer than k results exist
};

/// Results of a range search, laid out as FAISS's RangeSearchResult: query q's results are
/// distances[lims[q] .. lims[q+1]) and labels[...], best first (ties by lower id).
struct range_result {
    std::vector<index_t> lims;  // [nq + 1]
    std::vector<float> distances;
    std::vector<id_t> labels;
};

/// Storage options of a flat index.
struct flat_options {
    /// Also keep an IEEE float16 copy of the vectors for the scan kernel (batches below
    /// flat_scan_max_batch queries) to read: half the bytes per vector, so single-query search,
    /// which DRAM bandwidth bounds, runs up to twice as fast, at 1.5x the memory. Results stay
    /// exactly those of the float32 vectors: the scan only pre-filters with a margin widened by
    /// the largest float16 rounding error of any stored vector, and every candidate is scored
    /// on its float32 vector (flat_common.hpp). Vectors beyond float16's range (|x| > 65504)
    /// stay correct but widen the margin until the copy no longer pays. Where the compiler
    /// target has no float16 conversion instruction (x86 without F16C), no copy is kept.
    bool f16_scan = false;
    /// Also keep a bfloat16 copy of the vectors for the GEMM kernel (batches of
    /// flat_scan_max_batch queries and more) on CPUs with AVX512_BF16 (AMD Zen 4 and later,
    /// Intel Cooper Lake, Sapphire Rapids and later; the compiler target must include it, as
    /// -march=native does there): one vdpbf16ps does twice the multiply-adds of a float FMA, so
    /// large batches, which the FMA rate bounds, run up to twice as fast, and small ones read
    /// half the bytes, at 1.5x the memory. Results stay exactly those of the float32 vectors:
    /// the kernel's keys (rows and queries rounded to bfloat16) only pre-filter, with a margin
    /// widened by both roundings, and every candidate is scored on its float32 vector
    /// (flat_common.hpp). Where the compiler target lacks AVX512_BF16, no copy is kept. Searches
    /// read it under the Zen tuning only (kite::cpu: AMD Zen 4 and later, where vdpbf16ps runs at
    /// the FMA rate); on the Intel Xeons measured so far it retires at a quarter of the FMA rate,
    /// so there the float32 kernel runs and the copy only costs memory. (Batches of more than 32
    /// queries take the bfloat16 kernel under the Zen tuning anyway, converting the rows chunk by
    /// chunk; the copy saves that conversion and halves the bytes smaller batches read.)
    bool bf16_gemm = false;
};

/// Exact vector index over float vectors of a fixed dimension, searched by `Metric`
/// (kite::metric::l2, inner_product or cosine).
template <vector_metric Metric = kite::metric::l2>
class flat_index {
public:
    using metric_type = Metric;
    using order = typename Metric::order;

    /// An index of vectors with `dim` components (dim >= 1).
    explicit flat_index(index_t dim) : d_(dim) {
        KITE_REQUIRE(dim >= 1, invalid_argument, "flat_index: dim = ", dim, "; expected dim >= 1");
    }
    /// An index with storage options (flat_options::f16_scan, bf16_gemm).
    flat_index(index_t dim, const flat_options& opt) : flat_index(dim) {
        set_f16_scan(opt.f16_scan);
        set_bf16_gemm(opt.bf16_gemm);
    }

    flat_index(flat_index&&) noexcept = default;
    flat_index& operator=(flat_index&&) noexcept = default;

    /// Dimension of the vectors.
    index_t dim() const noexcept { return d_; }
    /// Number of vectors stored.
    index_t size() const noexcept { return n_; }
    bool empty() const noexcept { return n_ == 0; }
    /// True when the ids are exactly 0, 1, ..., size() - 1 (a plain FAISS IndexFlat).
    bool has_sequential_ids() const noexcept { return sequential_; }
    /// The id the next add() gives its first vector.
    id_t next_id() const noexcept { return next_id_; }

    /// The stored vectors, [size][dim] (unit length for cosine).
    kite::matrix_view<const float> vectors() const noexcept { return {data_.data(), n_, d_}; }
    /// The id of each stored vector, in storage order.
    std::span<const id_t> ids() const noexcept { return {labels_.data(), n_}; }

    /// Reserves memory for `n` vectors in total.
    void reserve(index_t n) {
        const index_t values = kite::checked_mul(n, d_, "flat_index::reserve(", n, ") of dim ", d_);
        data_.reserve(values);
        norms_.reserve(n);
        labels_.reserve(n);
        if (f16_) half_.reserve(values);
        if (bf16_on_) bf16_.reserve(kite::checked_mul(n, detail::bf16_pairs(d_), "flat_index::reserve(", n, ")"));
    }

    /// Keeps (true) or drops (false) the float16 copy that small-batch searches scan
    /// (flat_options::f16_scan); turning it on converts the stored vectors once.
    void set_f16_scan(bool on) {
        on = on && kite::simd::has_f16_loads;
        if (on == f16_) return;
        f16_ = on;
        half_ = {};
        half_err_ = 0;
        if (on) append_half(0);
    }
    /// True when searches may scan the float16 copy.
    bool f16_scan() const noexcept { return f16_; }
    /// Keeps (true) or drops (false) the bfloat16 copy that the GEMM kernel reads
    /// (flat_options::bf16_gemm); turning it on converts the stored vectors once. Stays off
    /// where the compiler target has no AVX512_BF16.
    void set_bf16_gemm(bool on) {
        on = on && kite::simd::has_bf16_dot;
        if (on == bf16_on_) return;
        bf16_on_ = on;
        bf16_ = {};
        bf16_err_ = 0;
        if (on) append_bf16(0);
    }
    /// True when large-batch searches may read the bfloat16 copy.
    bool bf16_gemm() const noexcept { return bf16_on_; }
    /// Bytes of vector storage: 4 per component, plus 2 with each reduced-precision copy.
    std::size_t memory_bytes() const noexcept {
        return n_ * d_ * sizeof(float) + (f16_ ? n_ * d_ * sizeof(std::uint16_t) : 0) +
               (bf16_on_ ? n_ * detail::bf16_pairs(d_) * sizeof(std::uint32_t) : 0) +
               n_ * (sizeof(float) + sizeof(id_t));
    }

    /// Appends `rows` ([m][dim]) with ids next_id(), next_id() + 1, ...
    void add(kite::matrix_view<const float> rows) {
        check_rows(rows, "flat_index::add");
        const index_t m = rows.rows();
        if (m == 0) return;
        std::vector<id_t> ids(m);
        for (index_t i = 0; i < m; ++i) ids[i] = next_id_ + static_cast<id_t>(i);
        append(rows, ids);
    }
    /// Appends vectors given as one contiguous span of m * dim floats.
    void add(std::span<const float> flat) { add(as_rows(flat, "flat_index::add")); }

    /// Appends `rows` ([m][dim]) with the caller's ids: non-negative and not already present.
    void add_with_ids(kite::matrix_view<const float> rows, std::span<const id_t> ids) {
        check_rows(rows, "flat_index::add_with_ids");
        KITE_REQUIRE(ids.size() == rows.rows(), shape_error, "flat_index::add_with_ids: ",
                     ids.size(), " ids for ", rows.rows(), " vectors; expected one id per vector");
        std::unordered_set<id_t> fresh;
        fresh.reserve(ids.size());
        for (std::size_t i = 0; i < ids.size(); ++i) {
            KITE_REQUIRE(ids[i] >= 0 && ids[i] < std::numeric_limits<id_t>::max(), invalid_argument,
                         "flat_index::add_with_ids: ids[", i, "] = ", ids[i],
                         "; expected a non-negative id below 2^63 - 1 (-1 marks missing results)");
            KITE_REQUIRE(fresh.insert(ids[i]).second && !contains(ids[i]), invalid_argument,
                         "flat_index::add_with_ids: ids[", i, "] = ", ids[i],
                         " is already in use; expected unique ids");
        }
        if (rows.rows() > 0) append(rows, ids);
    }

    /// The k nearest stored vectors of each query ([nq][dim], nq may be 0); k >= 1. The result
    /// has min(k, size()) columns: a k beyond the stored vectors returns them all, and nothing
    /// is allocated for columns that could not be filled (FAISS pads to k with -1; pass your own
    /// [nq][k] views to the overload below for that).
    search_result search(kite::matrix_view<const float> queries, index_t k,
                         const search_options& opt = {}) const {
        KITE_REQUIRE(k >= 1, invalid_argument, "flat_index::search: k = ", k, "; expected k >= 1");
        check_queries(queries, "flat_index::search");
        const index_t cols = std::min(k, n_);
        search_result r{kite::matrix<float>(queries.rows(), cols, kite::uninitialized),
                        kite::matrix<id_t>(queries.rows(), cols, kite::uninitialized)};
        if (cols > 0) search(queries, cols, r.distances.view(), r.labels.view(), opt);
        return r;
    }
    /// Search for one query vector of length dim.
    search_result search(std::span<const float> query, index_t k, const search_options& opt = {}) const {
        return search(as_rows(query, "flat_index::search"), k, opt);
    }
    /// Search writing into caller-owned [nq][k] views (no allocation of results); columns past
    /// size() are padded with id -1, as FAISS does. `run` picks the kernels (kite's by default;
    /// detail/flat_eigen.hpp passes Eigen's).
    template <class Runner = detail::kite_kernels>
    void search(kite::matrix_view<const float> queries, index_t k, kite::matrix_view<float> distances,
                kite::matrix_view<id_t> labels, const search_options& opt = {}, const Runner& run = {}) const {
        KITE_REQUIRE(k >= 1, invalid_argument, "flat_index::search: k = ", k, "; expected k >= 1");
        check_queries(queries, "flat_index::search");
        kite::require_shape(distances, queries.rows(), k, "flat_index::search: distances");
        kite::require_shape(labels, queries.rows(), k, "flat_index::search: labels");
        with_queries(queries, [&](const float* q, index_t stride) {
            detail::search_topk<Metric>(base(), max_norm_, q, stride, queries.rows(), k, distances.data(),
                                        distances.stride(), labels.data(), labels.stride(), opt, run);
        });
    }

    /// Every stored vector within `radius` of each query: squared L2 distance < radius, or
    /// inner product > radius (FAISS's convention).
    range_result range_search(kite::matrix_view<const float> queries, float radius,
                              const search_options& opt = {}) const {
        check_queries(queries, "flat_index::range_search");
        KITE_REQUIRE(kite::is_finite_bits(radius), invalid_argument, "flat_index::range_search: radius = ",
                     radius, "; expected a finite value");
        range_result r;
        with_queries(queries, [&](const float* q, index_t stride) {
            detail::search_range<Metric>(base(), q, stride, queries.rows(), radius, max_norm_, opt,
                                         r.lims, r.distances, r.labels);
        });
        return r;
    }

    /// True when a vector with this id is stored.
    bool contains(id_t id) const noexcept {
        if (sequential_) return id >= 0 && id < static_cast<id_t>(n_);
        return pos_.find(id) != pos_.end();
    }
    /// Copies the stored vector with this id into `out` (length dim); not_found_error if absent.
    void reconstruct(id_t id, std::span<float> out) const {
        KITE_REQUIRE(out.size() == d_, shape_error, "flat_index::reconstruct: output of length ",
                     out.size(), "; expected dim = ", d_);
        KITE_REQUIRE(contains(id), not_found_error, "flat_index::reconstruct: id ", id,
                     " is not in the index");
        const float* x = data_.data() + position(id) * d_;
        std::copy(x, x + d_, out.begin());
    }
    /// The stored vector with this id (unit length for cosine).
    std::vector<float> reconstruct(id_t id) const {
        std::vector<float> v(d_);
        reconstruct(id, v);
        return v;
    }

    /// Removes the vectors with these ids (unknown ids are ignored); returns how many were
    /// removed. The remaining vectors keep their ids and their order.
    index_t remove_ids(std::span<const id_t> ids) {
        std::unordered_set<id_t> drop(ids.begin(), ids.end());
        index_t w = 0;
        for (index_t i = 0; i < n_; ++i) {
            if (drop.count(labels_[i])) continue;
            if (w != i) {
                std::copy_n(data_.data() + i * d_, d_, data_.data() + w * d_);
                if (f16_) std::copy_n(half_.data() + i * d_, d_, half_.data() + w * d_);
                if (bf16_on_) {
                    const index_t d2 = detail::bf16_pairs(d_);
                    std::copy_n(bf16_.data() + i * d2, d2, bf16_.data() + w * d2);
                }
                norms_[w] = norms_[i];
                labels_[w] = labels_[i];
            }
            ++w;
        }
        const index_t removed = n_ - w;
        if (removed == 0) return 0;
        n_ = w;
        data_.resize(n_ * d_, kite::uninitialized);
        norms_.resize(n_, kite::uninitialized);
        labels_.resize(n_, kite::uninitialized);
        rebuild_positions();
        max_norm_ = 0;
        for (index_t i = 0; i < n_; ++i) max_norm_ = std::max(max_norm_, norms_[i]);
        // The float16 rows were compacted with the float32 ones; half_err_ still bounds every
        // kept row (it may be looser than their own maximum, which only widens the margin).
        if (f16_) half_.resize(n_ * d_, kite::uninitialized);
        if (bf16_on_) bf16_.resize(n_ * detail::bf16_pairs(d_), kite::uninitialized);  // bf16_err_ likewise
        return removed;
    }

    /// Removes every vector; the next add() starts again at id 0.
    void reset() noexcept {
        data_.clear();
        norms_.clear();
        labels_.clear();
        half_.clear();
        half_err_ = 0;
        bf16_.clear();
        bf16_err_ = 0;
        pos_.clear();
        n_ = 0;
        next_id_ = 0;
        sequential_ = true;
        max_norm_ = 0;
    }

private:
    detail::flat_base base() const noexcept {
        return {data_.data(), norms_.data(), labels_.data(), n_, d_, f16_ ? half_.data() : nullptr, half_err_,
                bf16_on_ ? bf16_.data() : nullptr, bf16_err_};
    }
    index_t position(id_t id) const noexcept {
        if (sequential_) return static_cast<index_t>(id);
        return pos_.find(id)->second;
    }

    kite::matrix_view<const float> as_rows(std::span<const float> flat, const char* what) const {
        KITE_REQUIRE(flat.size() % d_ == 0, shape_error, what, ": ", flat.size(),
                     " floats are not a whole number of vectors of dim ", d_,
                     "; expected a multiple of ", d_);
        return {flat.data(), flat.size() / d_, d_};
    }
    void check_rows(kite::matrix_view<const float> rows, const char* what) const {
        KITE_REQUIRE(rows.cols() == d_ || rows.rows() == 0, shape_error, what, ": vectors of dim ",
                     rows.cols(), "; expected dim ", d_);
        kite::require_finite(rows, what);
    }
    void check_queries(kite::matrix_view<const float> q, const char* what) const {
        KITE_REQUIRE(q.cols() == d_ || q.rows() == 0, shape_error, what, ": queries of dim ",
                     q.cols(), "; expected dim ", d_);
        kite::require_finite(q, what);
    }

    /// Calls f(queries, stride) with the queries as the kernels need them (normalised for
    /// cosine, which needs a copy).
    template <class F>
    void with_queries(kite::matrix_view<const float> q, F&& f) const {
        if (q.rows() == 0) {
            f(q.data(), d_);
            return;
        }
        if constexpr (Metric::normalizes) {
            kite::matrix<float> copy(q);
            kite::metric::normalize_rows(copy.view());
            f(copy.data(), d_);
        } else {
            f(q.data(), q.stride());
        }
    }

    void append(kite::matrix_view<const float> rows, std::span<const id_t> ids) {
        const index_t m = rows.rows();
        const index_t n1 = n_ + m;
        data_.resize(n1 * d_, kite::uninitialized);
        norms_.resize(n1, kite::uninitialized);
        labels_.resize(n1, kite::uninitialized);
        bool seq = sequential_;
        for (index_t i = 0; i < m; ++i) {
            float* x = data_.data() + (n_ + i) * d_;
            std::copy_n(rows.row(i).data(), d_, x);
            if constexpr (Metric::normalizes) kite::metric::normalize({x, d_});
            norms_[n_ + i] = kite::simd::norm_sq(x, d_);
            max_norm_ = std::max(max_norm_, norms_[n_ + i]);
            labels_[n_ + i] = ids[i];
            seq = seq && ids[i] == static_cast<id_t>(n_ + i);
            next_id_ = std::max(next_id_, ids[i] + 1);
        }
        const index_t old = n_;
        n_ = n1;
        if (f16_) append_half(old);
        if (bf16_on_) append_bf16(old);
        if (!seq && sequential_) {
            sequential_ = false;
            rebuild_positions();
        } else if (!seq) {
            for (index_t i = old; i < n_; ++i) pos_.emplace(labels_[i], i);
        }
    }

    /// Converts stored vectors [from, n) into the float16 copy (round to nearest; beyond the
    /// float16 range, clamped to +-65504 so keys stay finite) and raises half_err_ to bound
    /// their rounding: the Euclidean norm of x - half(x), in double, rounded up.
    void append_half(index_t from) {
        half_.resize(n_ * d_, kite::uninitialized);
        constexpr float top = 65504.0f;
        for (index_t i = from; i < n_; ++i) {
            const float* x = data_.data() + i * d_;
            std::uint16_t* h = half_.data() + i * d_;
            double e2 = 0;
            for (index_t j = 0; j < d_; ++j) {
                h[j] = kite::fp16(std::clamp(x[j], -top, top)).bits;
                const double diff = static_cast<double>(x[j]) - kite::fp16::from_bits(h[j]).to_float();
                e2 += diff * diff;
            }
            // float(sqrt) may round down: the next float up is an upper bound.
            const float e = std::nextafter(static_cast<float>(std::sqrt(e2)), std::numeric_limits<float>::infinity());
            half_err_ = std::max(half_err_, e);
        }
    }

    /// Converts stored vectors [from, n) into the bfloat16 copy (detail::to_bf16_pairs) and
    /// raises bf16_err_ to bound their rounding.
    void append_bf16(index_t from) {
        const index_t d2 = detail::bf16_pairs(d_);
        bf16_.resize(n_ * d2, kite::uninitialized);
        for (index_t i = from; i < n_; ++i)
            bf16_err_ = std::max(bf16_err_, detail::to_bf16_pairs(data_.data() + i * d_, d_, bf16_.data() + i * d2));
    }

    void rebuild_positions() {
        sequential_ = true;
        for (index_t i = 0; i < n_ && sequential_; ++i) sequential_ = labels_[i] == static_cast<id_t>(i);
        pos_.clear();
        if (sequential_) return;
        pos_.reserve(n_);
        for (index_t i = 0; i < n_; ++i) pos_.emplace(labels_[i], i);
    }

    index_t d_;
    index_t n_ = 0;
    kite::aligned_buffer<float> data_;    // [n][d]
    kite::aligned_buffer<float> norms_;   // [n] squared norms, for the l2 key
    kite::aligned_buffer<id_t> labels_;   // [n]
    std::unordered_map<id_t, index_t> pos_;  // id -> row, only when ids are not sequential
    id_t next_id_ = 0;
    bool sequential_ = true;
    float max_norm_ = 0;  // largest squared norm, bounds the kernels' rounding in range search
    bool f16_ = false;                    // keep half_ (flat_options::f16_scan)
    kite::aligned_buffer<std::uint16_t> half_;  // [n][d] float16 copy, when f16_
    float half_err_ = 0;                  // bound on |x - half(x)| over the stored vectors (kept
                                          // through remove_ids, reset by reset / set_f16_scan)
    bool bf16_on_ = false;                        // keep bf16_ (flat_options::bf16_gemm)
    kite::aligned_buffer<std::uint32_t> bf16_;    // [n][bf16_pairs(d)] bfloat16 pairs, when bf16_on_
    float bf16_err_ = 0;                          // bound on |x - bf16(x)|, kept like half_err_
};

}  // namespace kite::retrieval
