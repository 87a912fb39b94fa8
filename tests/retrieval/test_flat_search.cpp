// flat_index search against the double-precision oracle: every kernel (forced explicitly, so
// each is tested whatever the automatic switch picks), one and two threads, the three metrics,
// d in {1, 3, 16, 100, 384, 768}, k in {1, 10, 100, n, n + 5}, random / clustered / duplicate /
// zero / integer data.
#include <set>

#include "flat_test_util.hpp"
#include "kite/retrieval/detail/flat_eigen.hpp"
#include "kite/retrieval/flat_index.hpp"

namespace {

using kite::index_t;
using kite::retrieval::flat_index;
using kite::retrieval::flat_kernel;
using kite::retrieval::search_options;
namespace kt = kite::test::flat;

// kite's two kernels, the automatic switch, and the opt-in Eigen path (flat_eigen.hpp).
enum class kernel { scan, gemm, automatic, eigen };
constexpr kernel all_kernels[] = {kernel::scan, kernel::gemm, kernel::automatic, kernel::eigen};

const char* kernel_name(kernel k) {
    switch (k) {
        case kernel::scan: return "scan";
        case kernel::gemm: return "gemm";
        case kernel::eigen: return "eigen";
        default: return "automatic";
    }
}

template <class Metric>
kite::retrieval::search_result run(const flat_index<Metric>& index, kite::matrix_view<const float> q, index_t k,
                                   kernel kern, int threads) {
    if (kern == kernel::eigen) return kite::retrieval::detail::search_eigen(index, q, k, {threads});
    const flat_kernel fk = kern == kernel::scan ? flat_kernel::scan
                           : kern == kernel::gemm ? flat_kernel::gemm
                                                  : flat_kernel::automatic;
    return index.search(q, k, search_options{threads, fk});
}

std::vector<kite::id_t> iota_ids(index_t n) {
    std::vector<kite::id_t> ids(n);
    for (index_t i = 0; i < n; ++i) ids[i] = static_cast<kite::id_t>(i);
    return ids;
}

// For duplicated vectors, kite must return the lower ids of a group of equal vectors first:
// whenever id l is returned, every lower id holding the same vector is returned before it.
void check_duplicate_order(kite::matrix_view<const float> base, const kite::retrieval::search_result& r,
                           const std::string& what) {
    for (index_t q = 0; q < r.labels.rows(); ++q) {
        std::set<kite::id_t> got;
        for (index_t i = 0; i < r.labels.cols(); ++i) {
            const kite::id_t l = r.labels(q, i);
            if (l < 0) continue;
            for (kite::id_t m = 0; m < l; ++m) {
                if (!std::equal(base.row(m).begin(), base.row(m).end(), base.row(l).begin())) continue;
                if (!got.count(m))
                    FAIL_CHECK(what << " query " << q << ": id " << l << " returned before its equal, lower id " << m);
            }
            got.insert(l);
        }
    }
}

template <class Metric>
void sweep(index_t n, index_t nq) {
    for (index_t d : {1u, 3u, 16u, 100u, 384u, 768u}) {
        for (auto kind : {kt::data_kind::random, kt::data_kind::clustered, kt::data_kind::duplicates,
                          kt::data_kind::zeros, kt::data_kind::integers}) {
            const auto base = kt::make_data(kind, n, d, 1000 + d);
            auto queries = kt::make_data(kind == kt::data_kind::clustered ? kt::data_kind::clustered : kt::data_kind::random,
                                         nq, d, 2000 + d);
            if (kind == kt::data_kind::integers) queries = kt::make_data(kind, nq, d, 2000 + d);
            if (nq > 2) std::copy_n(base.row(5).data(), d, queries.row(1).data());  // a query equal to a stored vector
            flat_index<Metric> index(d);
            index.add(base.view());
            REQUIRE(index.size() == n);
            const auto ids = iota_ids(n);
            // Cosine compares normalised vectors: the oracle normalises in double itself.
            const kt::oracle<Metric> o(base.view(), ids, queries.view());
            // Exact float arithmetic on small integers: ids must match one for one.
            const bool exact = kind == kt::data_kind::integers && !Metric::normalizes;
            for (index_t k : {index_t{1}, index_t{10}, index_t{100}, n, n + 5}) {
                for (const kernel kern : all_kernels) {
                    for (int threads : {1, 2}) {
                        const std::string what = std::string(Metric::name) + " d=" + std::to_string(d) + " " +
                                                 kt::name(kind) + " k=" + std::to_string(k) + " " +
                                                 kernel_name(kern) + " threads=" + std::to_string(threads);
                        const auto r = run(index, queries.view(), k, kern, threads);
                        kt::check_against_oracle(o, k, r, exact, what);
                        if (kind == kt::data_kind::duplicates && !Metric::normalizes)
                            check_duplicate_order(base.view(), r, what);
                    }
                }
            }
        }
    }
}

}  // namespace

TEST_CASE("flat l2 search equals the oracle for every kernel, shape and data kind", "[retrieval][flat]") {
    sweep<kite::metric::l2>(150, 7);
}

TEST_CASE("flat inner-product search equals the oracle", "[retrieval][flat]") {
    sweep<kite::metric::inner_product>(150, 7);
}

TEST_CASE("flat cosine search equals the oracle", "[retrieval][flat]") {
    sweep<kite::metric::cosine>(131, 5);
}

TEST_CASE("flat search: larger batches take whole query tiles and split queries over threads",
          "[retrieval][flat]") {
    // 400 queries: the GEMM kernel's large tiles (a partial last tile) and, with two threads,
    // the split over queries; 33 rows per slice edge cases via n = 515.
    for (index_t d : {16u, 100u}) {
        const auto base = kt::make_data(kt::data_kind::random, 515, d, 7);
        const auto queries = kt::make_data(kt::data_kind::random, 400, d, 8);
        flat_index<kite::metric::l2> l2(d);
        flat_index<kite::metric::inner_product> ip(d);
        l2.add(base.view());
        ip.add(base.view());
        const auto ids = iota_ids(base.rows());
        const kt::oracle<kite::metric::l2> o2(base.view(), ids, queries.view());
        const kt::oracle<kite::metric::inner_product> oi(base.view(), ids, queries.view());
        for (const kernel kern : all_kernels)
            for (int threads : {1, 2}) {
                const std::string what = std::string(kernel_name(kern)) + " d=" + std::to_string(d) +
                                         " threads=" + std::to_string(threads);
                kt::check_against_oracle(o2, 10, run(l2, queries.view(), 10, kern, threads), false, "l2 " + what);
                kt::check_against_oracle(oi, 10, run(ip, queries.view(), 10, kern, threads), false, "ip " + what);
            }
    }
}

TEST_CASE("flat search: every kernel and thread count gives the same answer on the same data",
          "[retrieval][flat]") {
    const auto base = kt::make_data(kt::data_kind::random, 1000, 64, 3);
    const auto queries = kt::make_data(kt::data_kind::random, 70, 64, 4);
    flat_index<kite::metric::l2> index(64);
    index.add(base.view());
    const auto ref = index.search(queries.view(), 20, {1, flat_kernel::scan});
    for (const kernel kern : all_kernels)
        for (int threads : {1, 2, 3}) {
            INFO(kernel_name(kern) << " threads=" << threads);
            const auto r = run(index, queries.view(), 20, kern, threads);
            // Handlers decide on exact scores, so every kernel agrees bit for bit.
            CHECK(std::equal(r.labels.flat().begin(), r.labels.flat().end(), ref.labels.flat().begin()));
            CHECK(std::equal(r.distances.flat().begin(), r.distances.flat().end(), ref.distances.flat().begin()));
        }
}
