#pragma once
/// @file kite/retrieval/detail/flat_search.hpp
/// The flat index's search driver: picks a kernel and a thread split for the batch shape, runs
/// the kernel over blocks of queries with one result handler per thread, merges, and writes
/// exact distances.
///
/// Thread split (measured on 2 cores, see bench/flat_bench.cpp):
///   - small batches split the *base*: each thread scans a slice of the rows for every query,
///     so one query scans at the bandwidth of all cores (FAISS threads over queries only, so
///     its single-query search cannot use a second core);
///   - large GEMM batches split the *queries* into whole tiles: each thread streams the base
///     through its own L2 and no per-thread results need merging.

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <span>
#include <type_traits>
#include <vector>

#include "kite/core/buffer.hpp"
#include "kite/core/config.hpp"
#include "kite/core/parallel.hpp"
#include "kite/core/simd.hpp"
#include "kite/core/validate.hpp"
#include "kite/retrieval/detail/flat_common.hpp"
#include "kite/retrieval/detail/flat_gemm.hpp"
#include "kite/retrieval/detail/flat_scan.hpp"

namespace kite::retrieval {

/// The kernel a flat-index search runs. (Eigen's GEMM is a third, opt-in path for comparison:
/// kite/retrieval/detail/flat_eigen.hpp.)
enum class flat_kernel {
    automatic,  ///< scan below flat_scan_max_batch queries, gemm from there on (measured)
    scan,       ///< fused SIMD scan, each base row read once for the batch
    gemm,       ///< kite's register-blocked GEMM micro-kernel with fused top-k
};

/// Options of flat_index::search and range_search.
struct search_options {
    /// Threads to use. 0: automatic, kite::max_threads() but one for small searches, where a
    /// parallel region would cost more than it saves; > 0: that many (fewer only when there are
    /// fewer row slices or query tiles than threads).
    int threads = 0;
    /// Kernel; automatic picks by batch size. Forcing one is for tests and benchmarks.
    flat_kernel kernel = flat_kernel::automatic;
};

/// Batches below this many queries take the scan kernel when the kernel is automatic.
inline constexpr index_t flat_scan_max_batch = 8;

namespace detail {

struct flat_plan {
    flat_kernel kernel = flat_kernel::scan;
    int threads = 1;
    bool split_queries = false;
    index_t tile = 1;  // queries per packed tile (gemm)
};

/// Chooses kernel and threads for `nq` queries against `n` rows of dimension `d`.
inline flat_plan plan_search(index_t n, index_t d, index_t nq, const search_options& opt) {
    flat_plan p;
    p.kernel = opt.kernel;
    if (p.kernel == flat_kernel::automatic)
        p.kernel = nq < flat_scan_max_batch ? flat_kernel::scan : flat_kernel::gemm;
    int t = kite::resolve_threads(opt.threads, n);
    // Automatic thread count: a parallel region costs some microseconds, so below ~2 million
    // multiply-adds one thread is faster (a second thread must never make a search slower).
    // An explicit count is honoured.
    const double work = static_cast<double>(n) * static_cast<double>(d) * static_cast<double>(nq);
    if (opt.threads <= 0 && work < 2e6) t = 1;
    p.threads = t;
    p.tile = p.kernel == flat_kernel::gemm ? gemm_tile_for(nq) : index_t{8};
    p.split_queries = p.kernel != flat_kernel::scan && nq >= p.tile * 4 * static_cast<index_t>(t);
    return p;
}

/// One piece of work for a kernel: rows [b, e) against queries [j_begin, j_end) of a block of
/// nq queries (rows `qstride` floats apart; `packed` holds them in GEMM tiles when planned).
struct flat_work {
    index_t b, e;
    const float* q;
    index_t qstride;
    const float* packed;
    index_t nq, j_begin, j_end;
};

/// kite's kernels, as the plan says. A *runner* is any callable
/// runner(std::bool_constant<L2>, plan, base, work, handler_ref); another one can be passed to
/// search_topk (flat_eigen.hpp does).
struct kite_kernels {
    template <bool L2>
    void operator()(std::bool_constant<L2>, const flat_plan& p, const flat_base& base, const flat_work& w,
                    const handler_ref& h) const {
        if (p.kernel == flat_kernel::gemm)
            gemm_block<L2>(base, w.b, w.e, w.packed, p.tile, w.nq, w.j_begin, w.j_end, h);
        else
            scan_block<L2>(base, w.b, w.e, w.q, w.qstride, w.j_begin, w.j_end, h);
    }
};

/// The base a search runs on. The float16 copy (base.half) is kept only for kite's scan
/// kernel, where the hardware converts float16 in one instruction, and while the widened
/// margin (query_block) stays far from the float range; otherwise the float32 rows are read.
/// Likewise the bfloat16 copy (base.bf16) is kept only for kite's GEMM kernel on CPUs with
/// vdpbf16ps, and only under the Zen tuning: on a Zen 4 EPYC vdpbf16ps retires as fast as a
/// float FMA (3.6 G/s each, twice the multiply-adds), while the Intel Xeon VMs kite was tuned on
/// measured 1.34 G/s against 5.5 G/s for FMA, where the float32 kernel is the faster one. At
/// most one of the two copies survives.
///
/// Large batches (the GEMM's large tile, more than 32 queries) under the Zen tuning take the
/// bfloat16 kernel even without a stored copy: each L2-resident chunk of rows is converted once
/// and multiplied by every query tile (base.bf16_convert), at twice the FMA kernel's rate
/// (nq = 1000, n 100k, d 384 on a Zen 4 EPYC: see bench/README.md "AMD EPYC (Zen 4)"), with the
/// same exact results. (kite::cpu::scoped_tuning(intel) keeps the float32 kernel, for comparison.)
/// Under the Intel tuning, on CPUs whose AMX the OS grants (kite::cpu::amx_active()), large
/// batches take the AMX kernel instead (base.amx), with the same bfloat16 pre-filter and the
/// same exact results; kite::cpu::scoped_amx(false) keeps the float32 kernel.
template <class Runner>
flat_base base_for(const flat_base& base, const flat_plan& p, float max_base_norm, const float* q,
                   index_t qstride, index_t nq) {
    flat_base b = base;
    constexpr bool kite_runner = std::is_same_v<Runner, kite_kernels>;
    const bool zen = kite::cpu::active_tuning() == kite::cpu::tuning::zen;
    const bool gemm = p.kernel == flat_kernel::gemm;
    const bool keep_half = b.half && kite::simd::has_f16_loads && kite_runner && p.kernel == flat_kernel::scan;
    const bool keep_bf16 = b.bf16 && kite::simd::has_bf16_dot && kite_runner && gemm && zen;
    if (!keep_half) b.half = nullptr;
    if (!keep_bf16) b.bf16 = nullptr;
    b.bf16_convert = !b.bf16 && kite::simd::has_bf16_dot && kite_runner && gemm && zen &&
                     p.tile > static_cast<index_t>(gemm_small_v) * kite::simd::width && base.n > 0;
    // Large batches on AMX tiles where the CPU and the OS allow it (under the Intel tuning): the
    // same bfloat16 pre-filter, converted per chunk, at the tile unit's rate.
    if (KITE_FLAT_AMX && kite_runner && gemm && p.tile == amx_tile && base.n > 0 && kite::cpu::amx_active()) {
        b.bf16 = nullptr;
        b.bf16_convert = true;
        b.amx = true;
    }
    if (b.bf16_convert) b.bf16_err = 0x1p-8f * std::sqrt(max_base_norm) + std::sqrt(static_cast<float>(b.d)) * 0x1p-126f;
    if (b.half || b.bf16 || b.bf16_convert) {
        // The widened margins must stay far from the float range.
        float yn = 0;
        for (index_t j = 0; j < nq; ++j) yn = std::max(yn, kite::simd::norm_sq(q + j * qstride, b.d));
        const float err = b.half ? b.half_err : b.bf16_err;
        const float reach = std::sqrt(max_base_norm) + err + (b.half ? 1.0f : 2.0f) * std::sqrt(yn);
        if (!(kite::is_finite_bits(reach * reach) && reach * reach < 1e30f)) {
            b.half = nullptr;
            b.bf16 = nullptr;
            b.bf16_convert = false;
            b.amx = false;
        }
    }
    return b;
}

/// Packs the queries of a block for the GEMM kernel, in the form its base calls for.
inline void pack_for(const flat_base& base, const flat_plan& p, const float* q, index_t nq, index_t qstride,
                     kite::aligned_buffer<float>& packed) {
    if (p.kernel != flat_kernel::gemm) return;
    if (base.amx) {
        packed.resize(amx_packed_size(nq, base.d), kite::uninitialized);
        pack_queries_amx(q, nq, base.d, qstride, reinterpret_cast<std::uint32_t*>(packed.data()));
        return;
    }
    packed.resize(packed_queries_size(nq, base.d, p.tile), kite::uninitialized);
    if (base.bf16 || base.bf16_convert)
        pack_queries_bf16(q, nq, base.d, qstride, p.tile, reinterpret_cast<std::uint32_t*>(packed.data()));
    else
        pack_queries(q, nq, base.d, qstride, p.tile, packed.data());
}

/// Runs the plan over every row for queries [0, nq) of one block. Split over queries, all
/// threads share handlers[0] (their queries are disjoint); split over rows, thread t fills
/// handlers[t].
template <class Metric, class Handler, class Runner>
void execute(const flat_plan& p, const flat_base& base, const float* q, index_t qstride,
             const float* packed, index_t nq, std::vector<Handler>& handlers, const Runner& run) {
    constexpr std::bool_constant<uses_norms<Metric>> key_kind{};
    if (p.split_queries) {
        const index_t unit = p.kernel == flat_kernel::gemm ? p.tile : index_t{1};
        kite::parallel_chunks(
            (nq + unit - 1) / unit,
            [&](std::size_t b, std::size_t e, int) {
                run(key_kind, p, base, flat_work{0, base.n, q, qstride, packed, nq, b * unit, std::min(nq, e * unit)},
                    make_handler_ref(handlers[0]));
            },
            p.threads);
    } else {
        constexpr index_t unit = 64;  // row slices in whole micro-tiles
        kite::parallel_chunks(
            (base.n + unit - 1) / unit,
            [&](std::size_t b, std::size_t e, int tid) {
                run(key_kind, p, base, flat_work{b * unit, std::min(base.n, e * unit), q, qstride, packed, nq, 0, nq},
                    make_handler_ref(handlers[static_cast<std::size_t>(tid)]));
            },
            p.threads);
    }
}

/// Sorts best first by the order, ties by lower id.
template <class Order>
void sort_hits(std::vector<kite::scored_id>& v) {
    std::sort(v.begin(), v.end(), [](const kite::scored_id& a, const kite::scored_id& b) {
        return Order::before(a.score, a.id, b.score, b.id);
    });
}

/// Top-k search of `nq` queries (rows `qstride` floats apart, already normalised for cosine).
/// Writes [nq][k] distances and labels (row strides given). `max_base_norm` is the largest
/// squared norm of a stored vector (it bounds the kernels' rounding).
template <class Metric, class Runner = kite_kernels>
void search_topk(const flat_base& base0, float max_base_norm, const float* queries, index_t qstride,
                 index_t nq, index_t k, float* dist, index_t dist_stride, id_t* labels,
                 index_t label_stride, const search_options& opt, const Runner& run = {}) {
    using order = typename Metric::order;
    if (nq == 0) return;
    const flat_plan p = plan_search(base0.n, base0.d, nq, opt);
    const flat_base base = base_for<Runner>(base0, p, max_base_norm, queries, qstride, nq);
    // Queries per block bound the handlers' memory to about 12 MiB per thread.
    const index_t per_block = std::max<index_t>(
        p.tile, std::min<index_t>(nq, (index_t{1} << 20) / k / p.tile * p.tile));
    std::vector<topk_handler<Metric>> handlers(p.split_queries ? 1 : static_cast<std::size_t>(p.threads));
    kite::aligned_buffer<float> packed;
    for (index_t jb = 0; jb < nq; jb += per_block) {
        const index_t nb = std::min(per_block, nq - jb);
        const float* qb = queries + jb * qstride;
        // A heap never needs more room than there are rows (k may exceed the index size).
        for (auto& h : handlers) h.reset(qb, qstride, nb, std::min(k, std::max<index_t>(base.n, 1)), base, max_base_norm);
        if (base.n > 0) {
            pack_for(base, p, qb, nb, qstride, packed);
            execute<Metric>(p, base, qb, qstride, packed.data(), nb, handlers, run);
        }
        // Merge the per-thread heaps (they hold exact scores, best first after drain).
        auto finish = [&](std::size_t j) {
            auto& h0 = handlers[0].heap(j);
            for (std::size_t t = 1; t < handlers.size(); ++t)
                for (const auto& s : handlers[t].heap(j).unsorted()) h0.push(s.score, s.id);
            const std::vector<kite::scored_id> best = h0.drain();
            float* drow = dist + (jb + j) * dist_stride;
            id_t* lrow = labels + (jb + j) * label_stride;
            index_t i = 0;
            for (; i < best.size(); ++i) {
                drow[i] = best[i].score;
                lrow[i] = best[i].id;
            }
            for (; i < k; ++i) {
                drow[i] = order::worst();
                lrow[i] = -1;
            }
        };
        if (nb * k * base.d > (index_t{1} << 18) && p.threads > 1)
            kite::parallel_for(0, nb, finish, p.threads);
        else
            for (index_t j = 0; j < nb; ++j) finish(j);
    }
}

/// Range search: for each query every row whose score beats `radius`, best first. Results go
/// to `lims` ([nq + 1] offsets), `dist` and `labels`, as FAISS's RangeSearchResult.
template <class Metric>
void search_range(const flat_base& base0, const float* queries, index_t qstride, index_t nq,
                  float radius, float max_base_norm, const search_options& opt,
                  std::vector<index_t>& lims, std::vector<float>& dist, std::vector<id_t>& labels) {
    lims.assign(nq + 1, 0);
    dist.clear();
    labels.clear();
    if (nq == 0 || base0.n == 0) return;
    const flat_plan p = plan_search(base0.n, base0.d, nq, opt);
    const flat_base base = base_for<kite_kernels>(base0, p, max_base_norm, queries, qstride, nq);
    std::vector<range_handler<Metric>> handlers(p.split_queries ? 1 : static_cast<std::size_t>(p.threads));
    for (auto& h : handlers) h.reset(queries, qstride, nq, radius, base, max_base_norm);
    kite::aligned_buffer<float> packed;
    pack_for(base, p, queries, nq, qstride, packed);
    execute<Metric>(p, base, queries, qstride, packed.data(), nq, handlers, kite_kernels{});
    for (index_t j = 0; j < nq; ++j) {
        auto& all = handlers[0].hits(j);
        for (std::size_t t = 1; t < handlers.size(); ++t) {
            auto& more = handlers[t].hits(j);
            all.insert(all.end(), more.begin(), more.end());
        }
        sort_hits<typename Metric::order>(all);
        for (const auto& s : all) {
            dist.push_back(s.score);
            labels.push_back(s.id);
        }
        lims[j + 1] = dist.size();
    }
}

}  // namespace detail
}  // namespace kite::retrieval
