#pragma once
/// @file kite/retrieval/detail/flat_common.hpp
/// What the flat-index kernels share: the views they read and the result handlers they feed.
///
/// Every kernel computes a *key* per (query, base row) and offers the row to a handler only when
/// the key passes the query's threshold: key <= threshold[q] for smaller_first orders,
/// key >= threshold[q] for larger_first ones. The keys are
///   l2:             |x|^2 - 2 x.y  (the query norm is the same for every row: left out);
///   inner product:  x.y.
/// Handlers own the thresholds and decide on exact scores (see query_block), so one kernel
/// serves top-k search and range search alike (the result-handler design of FAISS's
/// ResultHandler.h).

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstdint>
#include <cstddef>
#include <limits>
#include <type_traits>
#include <vector>

#include "kite/core/buffer.hpp"
#include "kite/core/config.hpp"
#include "kite/core/half.hpp"
#include "kite/core/simd.hpp"
#include "kite/core/topk.hpp"
#include "kite/retrieval/concepts.hpp"

namespace kite::retrieval::detail {

/// The stored vectors as the kernels see them.
struct flat_base {
    const float* data = nullptr;   // [n][d] row-major, rows d floats apart
    const float* norms = nullptr;  // [n] squared L2 norms (read only for l2)
    const id_t* labels = nullptr;  // [n] the user-visible id of each row
    index_t n = 0;
    index_t d = 0;
    /// Optional float16 copy of the rows for the scan kernel ([n][d] bit patterns), or null.
    /// half_err bounds |x - half(x)| (Euclidean) over every row; the handlers widen their
    /// margins by it, so results stay those of the float32 rows (see query_block).
    const std::uint16_t* half = nullptr;
    float half_err = 0;
    /// Optional bfloat16 copy of the rows for the GEMM kernel, as pairs of components
    /// ([n][bf16_pairs(d)] words, bf16(x[2i]) in the low half, bf16(x[2i + 1]) in the high half,
    /// a zero after an odd last component), or null. bf16_err bounds |x - bf16(x)| over every
    /// row; the queries are rounded too and the handlers widen their margins by both.
    const std::uint32_t* bf16 = nullptr;
    float bf16_err = 0;
    /// No stored copy, but the GEMM converts each L2-resident chunk of rows to bfloat16 pairs
    /// itself (large batches under the Zen tuning; flat_search.hpp's base_for). bf16_err then
    /// holds a bound from the norms: 2^-8 |x| + sqrt(d) 2^-126 (rounding to bfloat16's 8
    /// significant bits moves a component by at most 2^-8 of it; flushed subnormals).
    bool bf16_convert = false;
    /// With bf16_convert: the chunks are multiplied on AMX tiles (kite::cpu::amx_active(): Intel
    /// Xeon Sapphire Rapids and later, where the OS grants the tile state), padded to whole tiles
    /// (flat_gemm.hpp's gemm_block_amx; the queries packed by pack_queries_amx).
    bool amx = false;
    /// The first row the bfloat16 rows at `bf16` belong to (0 for the stored copy).
    index_t bf16_row0 = 0;
    const float* row(index_t i) const noexcept { return data + i * d; }
    const std::uint16_t* half_row(index_t i) const noexcept { return half + i * d; }
};

/// Words (bfloat16 pairs) per row of a bfloat16 copy of dimension d.
constexpr index_t bf16_pairs(index_t d) noexcept { return (d + 1) / 2; }

/// x rounded to bfloat16 as the bfloat16 GEMM kernel needs it: to nearest even (kite's bf16
/// conversion), clamped to the largest finite bfloat16 (so keys stay finite), and values below
/// the smallest normal flushed to zero (vdpbf16ps reads bfloat16 subnormals as zero). x must be
/// finite.
KITE_FORCE_INLINE std::uint16_t to_bf16_ftz(float x) noexcept {
    constexpr float top = 0x1.fep127f;  // largest finite bfloat16
    const float c = std::clamp(x, -top, top);
    const std::uint32_t b = std::bit_cast<std::uint32_t>(c);
    if ((b & 0x7fffffffu) < 0x00800000u) return static_cast<std::uint16_t>((b >> 16) & 0x8000u);  // +-0
    return kite::detail::float_to_bf16_bits(c);
}

/// (x - to_bf16_ftz(x))^2 in double: one component's share of a row's rounding error.
KITE_FORCE_INLINE double bf16_error_sq(float x, std::uint16_t b) noexcept {
    const double diff = static_cast<double>(x) - static_cast<double>(kite::detail::bf16_bits_to_float(b));
    return diff * diff;
}

/// A Euclidean error from its square, rounded up to the next float.
inline float error_bound(double e2) noexcept {
    return std::nextafter(static_cast<float>(std::sqrt(e2)), std::numeric_limits<float>::infinity());
}

/// Writes x [d] as bfloat16 pairs (bf16_pairs(d) words) and returns |x - bf16(x)| (Euclidean,
/// in double, rounded up to the next float).
inline float to_bf16_pairs(const float* x, index_t d, std::uint32_t* out) noexcept {
    double e2 = 0;
    for (index_t i = 0; i < bf16_pairs(d); ++i) {
        std::uint32_t w = 0;
        for (index_t h = 0; h < 2 && 2 * i + h < d; ++h) {
            const std::uint16_t b = to_bf16_ftz(x[2 * i + h]);
            e2 += bf16_error_sq(x[2 * i + h], b);
            w |= std::uint32_t{b} << (16 * h);
        }
        out[i] = w;
    }
    return error_bound(e2);
}

/// |y - bf16(y)| for a query of dimension d (what to_bf16_pairs returns, without the copy).
inline float bf16_error(const float* y, index_t d) noexcept {
    double e2 = 0;
    for (index_t j = 0; j < d; ++j) e2 += bf16_error_sq(y[j], to_bf16_ftz(y[j]));
    return error_bound(e2);
}

/// True when the metric ranks by the |x|^2 - 2 x.y key (l2) rather than by x.y. Kernels are
/// instantiated per key kind only (cosine shares inner product's), which keeps compile time
/// down.
template <class Metric>
inline constexpr bool uses_norms = std::is_same_v<typename Metric::order, kite::smaller_first>;

/// "key passes threshold" for a key kind (ties pass).
template <bool L2>
KITE_FORCE_INLINE bool passes(float key, float thr) noexcept {
    if constexpr (L2) {
        return key <= thr;
    } else {
        return key >= thr;
    }
}

/// The threshold of a query slot that must never accept anything (padding lanes).
template <bool L2>
constexpr float closed_threshold() noexcept {
    return L2 ? -std::numeric_limits<float>::infinity() : std::numeric_limits<float>::infinity();
}

/// What a kernel sees of a result handler: the key thresholds it compares with (updated in
/// place by the handler) and a callback for the rows that pass. The callback is type-erased:
/// it runs only for candidates (a few per query after the first rows), while the hot loops
/// stay fully typed.
struct handler_ref {
    float* thresholds = nullptr;
    void* self = nullptr;
    void (*add_fn)(void*, index_t, index_t) = nullptr;
    /// Offers row `pos` to query `j`.
    void add(index_t j, index_t pos) const { add_fn(self, j, pos); }
};

template <class Handler>
handler_ref make_handler_ref(Handler& h) noexcept {
    return {h.thresholds(), &h, [](void* self, index_t j, index_t pos) { static_cast<Handler*>(self)->add(j, pos); }};
}

/// Threshold slots for nq queries: whole SIMD tiles (up to 64 queries) may be read past nq.
inline index_t padded_slots(index_t nq) noexcept { return (nq + 63) / 64 * 64 + 64; }

/// What every handler knows about its block of queries: where they are, and how to translate
/// an exact score bound into a bound on the kernels' keys.
///
/// Kernels round differently from one another (summation order, FMA contraction, Eigen's
/// blocking), so their keys only *pre-filter*: a row is offered when its key is within
/// `margin` of the bound, and the handler decides on the exact score, computed by
/// Metric::distance (one fixed routine). The margin is a worst-case bound on the rounding of a
/// length-d float dot product, (d + 16) * 2^-24 * |x| |y| per product, taken four times over
/// (|x| + |y|)^2. Every row whose exact score can enter is therefore offered, and results are
/// the same, bit for bit, whatever the kernel or the thread split: ties are real ties of the
/// exact score, broken by the lower id.
///
/// When the scan kernel reads the float16 copy (base.half), its keys use x~ = half(x) with
/// |x - x~| <= E = base.half_err: x.y and x~.y differ by at most E |y|, so the margin grows by
/// 2 E |y| (l2 key: -2 x.y) or E |y| (inner product), and the rounding term uses |x| + E. The
/// keys still only pre-filter; exact scores come from the float32 rows.
///
/// When the GEMM kernel reads the bfloat16 copy (base.bf16), the query is rounded as well,
/// y~ = bf16(y) with |y - y~| = F (computed per query): |x.y - x~.y~| <= E (|y| + F) + |x| F, so
/// the margin grows by twice (l2) or once that, the rounding term uses |y| + F, and vdpbf16ps's
/// flushing of subnormal products and sums adds at most 2 d 2^-126. (Its products of two
/// bfloat16 values are exact in float; its d additions round as a float dot product's do.)
template <class Metric>
class query_block {
public:
    void reset(const float* queries, index_t qstride, index_t nq, const flat_base& base, float max_base_norm) {
        q_ = queries;
        qstride_ = qstride;
        nq_ = nq;
        base_ = base;
        ynorm_.resize(nq, kite::uninitialized);
        margin_.resize(nq, kite::uninitialized);
        const float eps = static_cast<float>(base.d + 16) * 0x1p-24f;
        const bool bf = base.bf16 || base.bf16_convert;
        const float he = base.half ? base.half_err : bf ? base.bf16_err : 0.0f;
        const float xn = std::sqrt(max_base_norm) + he;
        const float ftz = bf ? 2.0f * static_cast<float>(base.d) * 0x1p-126f : 0.0f;
        for (index_t j = 0; j < nq; ++j) {
            const float yn2 = kite::simd::norm_sq(query(j), base.d);
            const float ye = bf ? bf16_error(query(j), base.d) : 0.0f;
            const float yn = std::sqrt(yn2) + ye;
            ynorm_[j] = yn2;
            margin_[j] = uses_norms<Metric> ? 4.0f * eps * (xn + yn) * (xn + yn) : 4.0f * eps * xn * yn;
            // (1 + 2^-10) covers the rounding of these float products with room to spare.
            if (base.half || bf)
                margin_[j] += (uses_norms<Metric> ? 2.0f : 1.0f) * (he * yn + xn * ye + ftz) * (1.0f + 0x1p-10f);
        }
        thr_.resize(padded_slots(nq), kite::uninitialized);
        std::fill(thr_.data() + nq, thr_.data() + thr_.size(), closed_threshold<uses_norms<Metric>>());
    }
    float* thresholds() noexcept { return thr_.data(); }
    const float* query(index_t j) const noexcept { return q_ + j * qstride_; }
    /// The exact score of row `pos` for query `j`.
    float exact(index_t j, index_t pos) const noexcept { return Metric::distance(base_.row(pos), query(j), base_.d); }
    id_t label(index_t pos) const noexcept { return base_.labels[pos]; }

protected:
    /// Sets query j's key threshold from a bound on the exact score (inclusive).
    void set_bound(index_t j, float score) noexcept {
        float t;
        if constexpr (uses_norms<Metric>) {
            t = score - ynorm_[j] + margin_[j];  // key = |x|^2 - 2x.y = distance - |y|^2
        } else {
            t = score - margin_[j];
        }
        // inf - inf (vectors near the float range) must not close the query: offer everything.
        // (A bit test: std::isnan may be folded away under -ffast-math.)
        const bool nan = (std::bit_cast<std::uint32_t>(t) & 0x7fffffffu) > 0x7f800000u;
        thr_[j] = nan ? Metric::order::worst() : t;
    }

    const float* q_ = nullptr;
    index_t qstride_ = 0, nq_ = 0;
    flat_base base_{};
    kite::aligned_buffer<float> ynorm_, margin_;  // [nq]
    kite::aligned_buffer<float> thr_;             // [padded_slots(nq)] key thresholds
};

/// Collects the best k rows per query of a block, one heap of exact scores per query.
template <class Metric>
class topk_handler : public query_block<Metric> {
public:
    using order = typename Metric::order;

    void reset(const float* queries, index_t qstride, index_t nq, index_t k, const flat_base& base,
               float max_base_norm) {
        query_block<Metric>::reset(queries, qstride, nq, base, max_base_norm);
        if (heaps_.size() < nq) heaps_.resize(nq);
        for (index_t j = 0; j < nq; ++j) heaps_[j].reset(k);
        std::fill_n(this->thr_.data(), nq, order::worst());
    }
    /// Offers row `pos` to query `j` (its key passed the threshold).
    void add(index_t j, index_t pos) {
        auto& h = heaps_[j];
        if (h.push(this->exact(j, pos), this->label(pos)) && h.full()) this->set_bound(j, h.threshold());
    }
    kite::topk_heap<order>& heap(index_t j) noexcept { return heaps_[j]; }

private:
    std::vector<kite::topk_heap<order>> heaps_;
};

/// Collects every row whose exact score beats `radius` (l2: distance < radius; inner product:
/// similarity > radius, as FAISS's range_search).
template <class Metric>
class range_handler : public query_block<Metric> {
public:
    void reset(const float* queries, index_t qstride, index_t nq, float radius, const flat_base& base,
               float max_base_norm) {
        query_block<Metric>::reset(queries, qstride, nq, base, max_base_norm);
        radius_ = radius;
        hits_.assign(nq, {});
        for (index_t j = 0; j < nq; ++j) this->set_bound(j, radius);
    }
    void add(index_t j, index_t pos) {
        const float s = this->exact(j, pos);
        const bool in = uses_norms<Metric> ? s < radius_ : s > radius_;
        if (in) hits_[j].push_back({s, this->label(pos)});
    }
    std::vector<kite::scored_id>& hits(index_t j) noexcept { return hits_[j]; }

private:
    float radius_ = 0;
    std::vector<std::vector<kite::scored_id>> hits_;
};

}  // namespace kite::retrieval::detail
