#pragma once
/// @file kite/retrieval/detail/flat_eigen.hpp
/// The flat index's GEMM path through Eigen, opt-in: distance tiles [query][row] = Q * X^T
/// computed by Eigen's GEMM into a bounded scratch tile (1 MiB per thread), then filtered into
/// the same result handlers as kite's kernels, so results are identical. It is the
/// library-backed twin of kite's own micro-kernel (flat_gemm.hpp) and the measured reason that
/// kernel exists; bench_flat times it as kite-eigen. Not included by flat_index.hpp because
/// Eigen's GEMM costs every translation unit about ten seconds of compile time.
///
///   #include <kite/retrieval/detail/flat_eigen.hpp>
///   auto r = kite::retrieval::detail::search_eigen(index, queries, k, {threads});

#include <Eigen/Core>
#include <algorithm>
#include <cstddef>

#include "kite/core/config.hpp"
#include "kite/core/matrix.hpp"
#include "kite/retrieval/detail/flat_common.hpp"
#include "kite/retrieval/detail/flat_search.hpp"
#include "kite/retrieval/flat_index.hpp"

#if defined(KITE_WITH_OPENMP)
#include <omp.h>
#endif

namespace kite::retrieval::detail {

/// Rows and queries per Eigen tile (a 1 MiB scratch tile per thread).
inline constexpr index_t eigen_tile_rows = 1024;
inline constexpr index_t eigen_tile_queries = 256;

/// Runs `f` so that Eigen's GEMM inside it stays on the calling thread: kite decides the thread
/// count, and Eigen would otherwise start its own OpenMP team. omp_set_num_threads inside a
/// one-thread region changes only that region's setting, never the caller's.
template <class F>
void eigen_single_threaded(F&& f) {
#if defined(KITE_WITH_OPENMP)
    if (!omp_in_parallel()) {
#pragma omp parallel num_threads(1)
        {
            omp_set_num_threads(1);
            f();
        }
        return;
    }
#endif
    f();
}

/// Offers rows [b, e) to queries [j_begin, j_end) through Eigen GEMM tiles.
template <bool L2>
void eigen_block(const flat_base& base, index_t b, index_t e, const float* queries, index_t qstride,
                 index_t j_begin, index_t j_end, const handler_ref& h) {
    using rmat = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
    using cmap = Eigen::Map<const rmat, Eigen::Unaligned, Eigen::OuterStride<>>;
    const auto d = static_cast<Eigen::Index>(base.d);
    rmat tile(eigen_tile_queries, eigen_tile_rows);  // [query][row] scratch
    eigen_single_threaded([&] {
        for (index_t c = b; c < e; c += eigen_tile_rows) {
            const index_t nr = std::min(eigen_tile_rows, e - c);
            const cmap x(base.row(c), static_cast<Eigen::Index>(nr), d, Eigen::OuterStride<>(d));
            for (index_t j0 = j_begin; j0 < j_end; j0 += eigen_tile_queries) {
                const index_t nj = std::min(eigen_tile_queries, j_end - j0);
                const cmap y(queries + j0 * qstride, static_cast<Eigen::Index>(nj), d,
                             Eigen::OuterStride<>(static_cast<Eigen::Index>(qstride)));
                auto t = tile.topLeftCorner(static_cast<Eigen::Index>(nj), static_cast<Eigen::Index>(nr));
                t.noalias() = y * x.transpose();
                const float* thr = h.thresholds;
                for (index_t j = 0; j < nj; ++j) {
                    const float* row = tile.data() + j * eigen_tile_rows;
                    for (index_t r = 0; r < nr; ++r) {
                        const float key = L2 ? base.norms[c + r] - 2.0f * row[r] : row[r];
                        if (passes<L2>(key, thr[j0 + j])) h.add(j0 + j, c + r);
                    }
                }
            }
        }
    });
}

/// Runner for search_topk: Eigen tiles instead of kite's kernels.
struct eigen_kernel {
    template <bool L2>
    void operator()(std::bool_constant<L2>, const flat_plan&, const flat_base& base, const flat_work& w,
                    const handler_ref& h) const {
        eigen_block<L2>(base, w.b, w.e, w.q, w.qstride, w.j_begin, w.j_end, h);
    }
};

/// flat_index::search through Eigen's GEMM (opt.kernel is ignored).
template <class Metric>
search_result search_eigen(const flat_index<Metric>& index, kite::matrix_view<const float> queries, index_t k,
                           search_options opt = {}) {
    opt.kernel = flat_kernel::scan;  // plans like the scan: no packed tiles, split by rows or queries
    search_result r{kite::matrix<float>(queries.rows(), k, kite::uninitialized),
                    kite::matrix<id_t>(queries.rows(), k, kite::uninitialized)};
    index.search(queries, k, r.distances.view(), r.labels.view(), opt, eigen_kernel{});
    return r;
}

}  // namespace kite::retrieval::detail
