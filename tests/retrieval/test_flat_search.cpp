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
    // Caller-owned [nq][k] outputs, so that k > size() checks FAISS's padding too (the
    // allocating overload returns min(k, size()) columns; test_flat_api checks it).
    kite::retrieval::search_result r{kite::matrix<float>(q.rows(), k), kite::matrix<kite::id_t>(q.rows(), k)};
    index.search(q, k, r.distances.view(), r.labels.view(), search_options{threads, fk});
    const auto alloc = index.search(q, k, search_options{threads, fk});
    REQUIRE(alloc.labels.cols() == std::min(k, index.size()));
    for (index_t i = 0; i < q.rows(); ++i)
        for (index_t j = 0; j < alloc.labels.cols(); ++j) REQUIRE(alloc.labels(i, j) == r.labels(i, j));
    return r;
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
            // The same vectors with the float16 scan copy: every answer must equal the float32
            // index's bit for bit (the copy only pre-filters).
            flat_index<Metric> half_index(d, kite::retrieval::flat_options{.f16_scan = true});
            half_index.add(base.view());
            // Likewise with the bfloat16 copy for the GEMM kernel.
            flat_index<Metric> bf16_index(d, kite::retrieval::flat_options{.bf16_gemm = true});
            bf16_index.add(base.view());
            CHECK(bf16_index.bf16_gemm() == kite::simd::has_bf16_dot);
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
                        if (kern == kernel::scan || kern == kernel::automatic) {
                            const auto rh = run(half_index, queries.view(), k, kern, threads);
                            INFO(what << " f16 scan");
                            CHECK(std::equal(rh.labels.flat().begin(), rh.labels.flat().end(), r.labels.flat().begin()));
                            CHECK(std::equal(rh.distances.flat().begin(), rh.distances.flat().end(),
                                             r.distances.flat().begin()));
                        }
                        if (kern == kernel::gemm || kern == kernel::automatic) {
                            // The bfloat16 GEMM runs under the Zen tuning only: forced, whatever the host.
                            const kite::cpu::scoped_tuning zen(kite::cpu::tuning::zen);
                            const auto rb = run(bf16_index, queries.view(), k, kern, threads);
                            INFO(what << " bf16 gemm");
                            CHECK(std::equal(rb.labels.flat().begin(), rb.labels.flat().end(), r.labels.flat().begin()));
                            CHECK(std::equal(rb.distances.flat().begin(), rb.distances.flat().end(),
                                             r.distances.flat().begin()));
                        }
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

namespace {

// Equal answers, bit for bit, from two indexes over the same vectors.
template <class Metric>
void check_same(const flat_index<Metric>& a, const flat_index<Metric>& b, kite::matrix_view<const float> q, index_t k,
                const std::string& what, flat_kernel kern = flat_kernel::scan) {
    for (int threads : {1, 2}) {
        INFO(what << " threads=" << threads);
        const auto ra = a.search(q, k, search_options{threads, kern});
        const auto rb = b.search(q, k, search_options{threads, kern});
        CHECK(std::equal(ra.labels.flat().begin(), ra.labels.flat().end(), rb.labels.flat().begin()));
        CHECK(std::equal(ra.distances.flat().begin(), ra.distances.flat().end(), rb.distances.flat().begin()));
        const float radius = ra.distances(0, std::min<index_t>(k, a.size()) - 1);
        const auto ga = a.range_search(q, radius, search_options{threads, kern});
        const auto gb = b.range_search(q, radius, search_options{threads, kern});
        CHECK(ga.lims == gb.lims);
        CHECK(ga.labels == gb.labels);
        CHECK(ga.distances == gb.distances);
    }
}

// Vectors float16 cannot tell apart, or cannot hold, in the float16-scan index.
template <class Metric>
void f16_adversarial() {
    std::mt19937_64 g(11);
    std::normal_distribution<float> nd(0.f, 1.f);
    for (index_t d : {3u, 16u, 100u, 384u}) {
        const index_t n = 700;
        kite::matrix<float> base(n, d);
        // Rows 0..99: one vector and copies nudged below float16 resolution (relative 1e-5),
        // so only the float32 scores order them.
        for (index_t j = 0; j < d; ++j) base(0, j) = nd(g);
        for (index_t i = 1; i < 100; ++i)
            for (index_t j = 0; j < d; ++j) base(i, j) = base(0, j) * (1.0f + 1e-5f * nd(g));
        // Rows 100..199: float16 subnormals and underflow; 200..209: beyond float16's range.
        for (index_t i = 100; i < 200; ++i)
            for (index_t j = 0; j < d; ++j) base(i, j) = 1e-6f * nd(g);
        for (index_t i = 200; i < 210; ++i)
            for (index_t j = 0; j < d; ++j) base(i, j) = 1e5f * nd(g);
        for (index_t i = 210; i < n; ++i)
            for (index_t j = 0; j < d; ++j) base(i, j) = nd(g);
        kite::matrix<float> q(6, d);
        for (index_t j = 0; j < d; ++j) {
            q(0, j) = base(0, j);           // among the near-duplicates
            q(1, j) = 1e-6f * nd(g);        // among the tiny vectors
            q(2, j) = base(205, j);         // a huge vector
            q(3, j) = nd(g);
            q(4, j) = 0.0f;                 // the zero query
            q(5, j) = base(50, j) * 0.5f;
        }
        flat_index<Metric> plain(d);
        plain.add(base.view());
        flat_index<Metric> half(d, kite::retrieval::flat_options{.f16_scan = true});
        half.add(base.view());
        const std::string what = std::string(Metric::name) + " d=" + std::to_string(d);
        for (index_t k : {index_t{1}, index_t{10}, index_t{150}}) check_same(plain, half, q.view(), k, what);

        // Only the finite-range, near-duplicate rows: the float16 copy is in use and tight.
        flat_index<Metric> plain2(d), half2(d, kite::retrieval::flat_options{.f16_scan = true});
        plain2.add(base.view().rows_slice(0, 100));
        half2.add(base.view().rows_slice(0, 100));
        check_same(plain2, half2, q.view(), 10, what + " near-duplicates only");
    }
}

}  // namespace

TEST_CASE("flat search with the float16 scan copy: near-duplicates, float16 subnormals, huge vectors",
          "[retrieval][flat][f16]") {
    f16_adversarial<kite::metric::l2>();
    f16_adversarial<kite::metric::inner_product>();
    f16_adversarial<kite::metric::cosine>();
}

TEST_CASE("flat index float16 scan copy follows add, add_with_ids, remove_ids, reset and toggling",
          "[retrieval][flat][f16]") {
    const index_t d = 40;
    const auto a = kt::make_data(kt::data_kind::random, 300, d, 21);
    const auto b = kt::make_data(kt::data_kind::random, 200, d, 22);
    const auto q = kt::make_data(kt::data_kind::random, 5, d, 23);
    flat_index<kite::metric::l2> plain(d), half(d);
    CHECK_FALSE(half.f16_scan());
    half.add(a.view());
    half.set_f16_scan(true);  // converts what is stored
    CHECK(half.f16_scan() == kite::simd::has_f16_loads);
    if (kite::simd::has_f16_loads) CHECK(half.memory_bytes() > plain.memory_bytes());
    plain.add(a.view());
    check_same(plain, half, q.view(), 10, "after enable");
    std::vector<kite::id_t> ids(200);
    for (index_t i = 0; i < 200; ++i) ids[i] = 1000 + 3 * static_cast<kite::id_t>(i);
    plain.add_with_ids(b.view(), ids);
    half.add_with_ids(b.view(), ids);
    check_same(plain, half, q.view(), 10, "after add_with_ids");
    std::vector<kite::id_t> drop;
    for (kite::id_t i = 0; i < 1600; i += 7) drop.push_back(i);
    CHECK(plain.remove_ids(drop) == half.remove_ids(drop));
    check_same(plain, half, q.view(), 25, "after remove_ids");
    half.set_f16_scan(false);
    CHECK_FALSE(half.f16_scan());
    check_same(plain, half, q.view(), 10, "after disable");
    half.set_f16_scan(true);
    half.reset();
    plain.reset();
    CHECK(half.f16_scan() == kite::simd::has_f16_loads);
    half.add(b.view());
    plain.add(b.view());
    check_same(plain, half, q.view(), 10, "after reset");
}

TEST_CASE("flat scan and small GEMM tile: the Intel and Zen tunings both equal the oracle and each other, 1 to 9 queries",
          "[retrieval][flat][tuning]") {
    // Each tuning runs on any host (kite::cpu::scoped_tuning), so both variants are checked here
    // whichever CPU runs the test: batches of 1, 2, 3, 4, 5, 8 and 9 queries take every query
    // count the kernels specialise (9 = a full pass of 8 and one more); the dimensions take
    // masked tails of every kind (d < width, d % width != 0, d % (2 width) != 0); n = 150 leaves
    // rows after the last tile of 16.
    using kite::cpu::tuning;
    for (index_t d : {1u, 3u, 16u, 17u, 33u, 100u, 384u}) {
        const auto base = kt::make_data(kt::data_kind::random, 150, d, 300 + d);
        const auto queries = kt::make_data(kt::data_kind::random, 9, d, 400 + d);
        flat_index<kite::metric::l2> l2(d);
        flat_index<kite::metric::inner_product> ip(d);
        flat_index<kite::metric::l2> l2h(d, kite::retrieval::flat_options{.f16_scan = true});
        l2.add(base.view());
        ip.add(base.view());
        l2h.add(base.view());
        const auto ids = iota_ids(base.rows());
        for (index_t nq : {1u, 2u, 3u, 4u, 5u, 8u, 9u}) {
            const auto q = queries.view().rows_slice(0, nq);
            const kt::oracle<kite::metric::l2> o2(base.view(), ids, q);
            const kt::oracle<kite::metric::inner_product> oi(base.view(), ids, q);
            for (int threads : {1, 2}) {
                kite::retrieval::search_result ref[5];
                for (const tuning t : {tuning::intel, tuning::zen}) {
                    const kite::cpu::scoped_tuning force(t);
                    REQUIRE(kite::cpu::active_tuning() == t);
                    const std::string what = std::string(kite::cpu::name(t)) + " d=" + std::to_string(d) +
                                             " nq=" + std::to_string(nq) + " threads=" + std::to_string(threads);
                    // The GEMM's small tile (these batch sizes) prefetches per tuning too.
                    kite::retrieval::search_result r[5] = {run(l2, q, 10, kernel::scan, threads),
                                                           run(ip, q, 10, kernel::scan, threads),
                                                           run(l2h, q, 10, kernel::scan, threads),
                                                           run(l2, q, 10, kernel::gemm, threads),
                                                           run(ip, q, 10, kernel::gemm, threads)};
                    kt::check_against_oracle(o2, 10, r[0], false, "l2 " + what);
                    kt::check_against_oracle(oi, 10, r[1], false, "ip " + what);
                    kt::check_against_oracle(o2, 10, r[2], false, "l2 f16 " + what);
                    kt::check_against_oracle(o2, 10, r[3], false, "l2 gemm " + what);
                    kt::check_against_oracle(oi, 10, r[4], false, "ip gemm " + what);
                    for (int i = 0; i < 5; ++i) {
                        if (t == tuning::intel) {
                            ref[i] = std::move(r[i]);
                            continue;
                        }
                        INFO(what << " index " << i << ": zen tuning against intel tuning");
                        CHECK(std::equal(r[i].labels.flat().begin(), r[i].labels.flat().end(), ref[i].labels.flat().begin()));
                        CHECK(std::equal(r[i].distances.flat().begin(), r[i].distances.flat().end(),
                                         ref[i].distances.flat().begin()));
                    }
                }
            }
        }
    }
}

namespace {

// Vectors bfloat16 cannot tell apart (8 significant bits), bfloat16 subnormals (which
// vdpbf16ps reads as zero), products that underflow, and vectors whose keys leave the float
// range, in the bfloat16-GEMM index: every answer must equal the float32 index's bit for bit.
// 700 rows of dimension d that bfloat16 handles badly (see bf16_adversarial), and 9 queries.
struct hard_data {
    kite::matrix<float> base, q;
};
hard_data bf16_hard_data(index_t d, std::mt19937_64& g) {
    std::normal_distribution<float> nd(0.f, 1.f);
    const index_t n = 700;
    kite::matrix<float> base(n, d);
    // Rows 0..99: one vector and copies nudged at relative 1e-4, far below bfloat16's
    // resolution (2^-9), so only the float32 scores order them.
    for (index_t j = 0; j < d; ++j) base(0, j) = nd(g);
    for (index_t i = 1; i < 100; ++i)
        for (index_t j = 0; j < d; ++j) base(i, j) = base(0, j) * (1.0f + 1e-4f * nd(g));
    // 100..149: components around 1e-20 (their products, 1e-40, underflow in the kernel);
    // 150..199: float subnormals and the smallest normals (bfloat16 flushes them to zero);
    // 200..209: large (1e15: keys near 1e32, the bfloat16 path must step aside); 210..: ordinary.
    for (index_t i = 100; i < 150; ++i)
        for (index_t j = 0; j < d; ++j) base(i, j) = 1e-20f * nd(g);
    for (index_t i = 150; i < 200; ++i)
        for (index_t j = 0; j < d; ++j) base(i, j) = 1e-38f * nd(g);
    for (index_t i = 200; i < 210; ++i)
        for (index_t j = 0; j < d; ++j) base(i, j) = 1e15f * nd(g);
    for (index_t i = 210; i < n; ++i)
        for (index_t j = 0; j < d; ++j) base(i, j) = nd(g);
    kite::matrix<float> q(9, d);
    for (index_t j = 0; j < d; ++j) {
        q(0, j) = base(0, j);       // among the near-duplicates
        q(1, j) = 1e-20f * nd(g);   // among the tiny vectors
        q(2, j) = 1e-38f * nd(g);   // subnormal components
        q(3, j) = nd(g);
        q(4, j) = 0.0f;             // the zero query
        q(5, j) = base(50, j) * 0.5f;
        q(6, j) = base(7, j);
        q(7, j) = base(205, j);     // a large vector
        q(8, j) = -base(300, j);
    }
    return {std::move(base), std::move(q)};
}

// Vectors bfloat16 cannot tell apart (8 significant bits), bfloat16 subnormals (which
// vdpbf16ps reads as zero), products that underflow, and vectors whose keys leave the float
// range, in the bfloat16-GEMM index: every answer must equal the float32 index's bit for bit.
template <class Metric>
void bf16_adversarial() {
    std::mt19937_64 g(12);
    for (index_t d : {1u, 3u, 16u, 33u, 100u, 384u}) {
        const index_t n = 700;
        auto [base, q] = bf16_hard_data(d, g);
        const std::string what = std::string(Metric::name) + " d=" + std::to_string(d);
        // Without the large rows the copy is in use; with them, searches whose keys could
        // overflow fall back to the float32 kernel. Either way the answers are the same.
        for (const index_t rows : {n - 10, n}) {
            kite::matrix<float> b2(rows, d);
            index_t w = 0;
            for (index_t i = 0; i < n; ++i) {
                if (rows < n && i >= 200 && i < 210) continue;
                std::copy_n(base.row(i).data(), d, b2.row(w++).data());
            }
            flat_index<Metric> plain(d), bf(d, kite::retrieval::flat_options{.bf16_gemm = true});
            plain.add(b2.view());
            bf.add(b2.view());
            const auto qs = rows < n ? q.view().rows_slice(0, 7) : q.view();
            for (index_t k : {index_t{1}, index_t{10}, index_t{150}}) {
                check_same(plain, bf, qs, k, what + " rows=" + std::to_string(rows), flat_kernel::gemm);
                check_same(plain, bf, qs, k, what + " rows=" + std::to_string(rows) + " automatic",
                           flat_kernel::automatic);
            }
            // Only the near-duplicates: the copy is in use and tight around them.
            flat_index<Metric> plain2(d), bf2(d, kite::retrieval::flat_options{.bf16_gemm = true});
            plain2.add(b2.view().rows_slice(0, 100));
            bf2.add(b2.view().rows_slice(0, 100));
            check_same(plain2, bf2, qs, 10, what + " near-duplicates only", flat_kernel::gemm);
        }
    }
}

}  // namespace

TEST_CASE("flat search with the bfloat16 GEMM copy: near-duplicates, underflow, subnormals, large vectors",
          "[retrieval][flat][bf16]") {
    const kite::cpu::scoped_tuning zen(kite::cpu::tuning::zen);  // where the copy is read, on any host
    bf16_adversarial<kite::metric::l2>();
    bf16_adversarial<kite::metric::inner_product>();
    bf16_adversarial<kite::metric::cosine>();
}

TEST_CASE("flat search, batches of more than 32 queries under the Zen tuning: bfloat16 chunks converted on the fly, "
          "answers bit-identical to float32",
          "[retrieval][flat][bf16][tuning]") {
    std::mt19937_64 g(14);
    std::normal_distribution<float> nd(0.f, 1.f);
    for (index_t d : {1u, 5u, 64u, 385u}) {
        auto [base, q9] = bf16_hard_data(d, g);
        // 45 queries: the 9 hard ones, copies of stored rows, and random ones (a tile of 48
        // with a partial end).
        kite::matrix<float> q(45, d);
        for (index_t i = 0; i < 45; ++i)
            for (index_t j = 0; j < d; ++j)
                q(i, j) = i < 9 ? q9(i, j) : i < 25 ? base(3 * i + 50, j) : nd(g);
        for (const index_t rows : {index_t{690}, index_t{700}}) {  // without / with the large rows
            kite::matrix<float> b2(rows, d);
            for (index_t i = 0, w = 0; i < 700; ++i) {
                if (rows < 700 && i >= 200 && i < 210) continue;
                std::copy_n(base.row(i).data(), d, b2.row(w++).data());
            }
            flat_index<kite::metric::l2> l2(d);
            flat_index<kite::metric::inner_product> ip(d);
            flat_index<kite::metric::cosine> cs(d);
            l2.add(b2.view());
            ip.add(b2.view());
            cs.add(b2.view());
            // Without the large rows, no large query either: then the batch does take the
            // conversion under Zen's tuning (where the CPU has it); with them, keys could
            // overflow and it must not.
            kite::matrix<float> qc(q.view());
            if (rows < 700)
                for (index_t j = 0; j < d; ++j) qc(7, j) = nd(g);
            const auto qs = qc.view();
            {
                const kite::cpu::scoped_tuning zen(kite::cpu::tuning::zen);
                const auto p = kite::retrieval::detail::plan_search(rows, d, 45, {1, flat_kernel::gemm});
                kite::retrieval::detail::flat_base b0{};
                b0.d = d;
                b0.n = rows;
                float max_norm = 0;
                for (index_t i = 0; i < rows; ++i) max_norm = std::max(max_norm, kite::simd::norm_sq(b2.row(i).data(), d));
                const bool conv = kite::retrieval::detail::base_for<kite::retrieval::detail::kite_kernels>(
                                      b0, p, max_norm, qc.data(), d, 45)
                                      .bf16_convert;
                CHECK(conv == (kite::simd::has_bf16_dot && rows < 700));
            }
            for (const index_t k : {index_t{1}, index_t{10}, index_t{150}})
                for (const int threads : {1, 2})
                    for (const auto kern : {flat_kernel::gemm, flat_kernel::automatic}) {
                        const search_options opt{threads, kern};
                        const std::string what = "d=" + std::to_string(d) + " rows=" + std::to_string(rows) +
                                                 " k=" + std::to_string(k) + " threads=" + std::to_string(threads);
                        // Intel without AMX (float32), Zen (bfloat16, where the CPU has
                        // vdpbf16ps) and Intel with AMX (bfloat16 tiles, where the CPU and OS
                        // allow it; otherwise float32 again).
                        const auto same = [&](const auto& index, const char* metric) {
                            kite::retrieval::search_result r[3];
                            kite::retrieval::range_result g2[3];
                            for (int i = 0; i < 3; ++i) {
                                const kite::cpu::scoped_tuning force(i == 1 ? kite::cpu::tuning::zen
                                                                            : kite::cpu::tuning::intel);
                                const kite::cpu::scoped_amx amx(i == 2);
                                r[i] = index.search(qs, k, opt);
                                g2[i] = index.range_search(qs, r[0].distances(0, std::min<index_t>(k, rows) - 1), opt);
                            }
                            for (int i = 1; i < 3; ++i) {
                                INFO(metric << " " << what << ": " << (i == 1 ? "Zen (bfloat16)" : "Intel with AMX")
                                            << " against Intel (float32)");
                                CHECK(std::equal(r[0].labels.flat().begin(), r[0].labels.flat().end(),
                                                 r[i].labels.flat().begin()));
                                CHECK(std::equal(r[0].distances.flat().begin(), r[0].distances.flat().end(),
                                                 r[i].distances.flat().begin()));
                                CHECK(g2[0].lims == g2[i].lims);
                                CHECK(g2[0].labels == g2[i].labels);
                            }
                        };
                        same(l2, "l2");
                        same(ip, "ip");
                        same(cs, "cosine");
                    }
        }
    }
}

namespace {

/// Large batches on the float32 kernel, on AMX tiles (where the host has none: float32 again) and
/// with Zen's on-the-fly bfloat16 conversion (where the CPU has vdpbf16ps): the same bits on every
/// data kind, dimension (tails of the 32-component tile step) and k. (The clustered inner-product
/// case at d = 1 caught a bound of 2^-9 |x| for bfloat16 rounding, which is 2^-8 |x|.)
template <class Metric>
void amx_sweep() {
    for (index_t d : {1u, 3u, 17u, 32u, 33u, 100u, 384u}) {
        for (auto kind : {kt::data_kind::random, kt::data_kind::clustered, kt::data_kind::duplicates,
                          kt::data_kind::zeros, kt::data_kind::integers}) {
            const auto base = kt::make_data(kind, 181, d, 3000 + d);
            auto queries = kt::make_data(kind == kt::data_kind::integers ? kind : kt::data_kind::random, 50, d, 4000 + d);
            std::copy_n(base.row(5).data(), d, queries.row(1).data());  // a query equal to a stored vector
            flat_index<Metric> index(d);
            index.add(base.view());
            for (index_t k : {index_t{1}, index_t{10}, index_t{181}})
                for (int threads : {1, 2}) {
                    kite::retrieval::search_result r[3];  // float32, AMX, Zen's bfloat16 conversion
                    for (int i = 0; i < 3; ++i) {
                        const kite::cpu::scoped_tuning t(i == 2 ? kite::cpu::tuning::zen : kite::cpu::tuning::intel);
                        const kite::cpu::scoped_amx amx(i == 1);
                        r[i] = run(index, queries.view(), k, kernel::gemm, threads);
                    }
                    for (int i = 1; i < 3; ++i) {
                        INFO(Metric::name << " d=" << d << " " << kt::name(kind) << " k=" << k << " threads=" << threads
                                          << (i == 1 ? " AMX" : " Zen bfloat16") << " against float32");
                        CHECK(std::equal(r[0].labels.flat().begin(), r[0].labels.flat().end(), r[i].labels.flat().begin()));
                        CHECK(std::equal(r[0].distances.flat().begin(), r[0].distances.flat().end(),
                                         r[i].distances.flat().begin()));
                    }
                }
        }
    }
}

}  // namespace

TEST_CASE("flat search, large batches: AMX tiles, Zen's bfloat16 conversion and the float32 kernel give the same bits",
          "[retrieval][flat][amx][bf16]") {
    amx_sweep<kite::metric::l2>();
    amx_sweep<kite::metric::inner_product>();
    amx_sweep<kite::metric::cosine>();
}

TEST_CASE("flat search multiplies large batches on AMX tiles exactly where kite::cpu::amx_active()",
          "[retrieval][flat][bf16][amx]") {
    // Whether this host has AMX or not, the plan must follow the switches; where it has, the
    // answers are compared with the float32 kernel's by the tests above and below.
    const index_t d = 40;
    const auto queries = kt::make_data(kt::data_kind::random, 100, d, 33);
    kite::retrieval::detail::flat_base b0{};
    b0.d = d;
    b0.n = 500;
    const auto amx_for = [&](index_t nq) {
        const auto p = kite::retrieval::detail::plan_search(500, d, nq, {1, flat_kernel::gemm});
        return kite::retrieval::detail::base_for<kite::retrieval::detail::kite_kernels>(b0, p, 1.0f, queries.data(), d, nq)
            .amx;
    };
    const bool can = KITE_FLAT_AMX && kite::cpu::amx_bf16_available();
    {
        const kite::cpu::scoped_tuning intel(kite::cpu::tuning::intel);
        CHECK(kite::cpu::amx_active() == kite::cpu::amx_bf16_available());
        CHECK(amx_for(100) == can);  // the large tile
        CHECK_FALSE(amx_for(16));    // the small tile streams the base once: the float32 kernel
        const kite::cpu::scoped_amx off(false);
        CHECK_FALSE(kite::cpu::amx_active());
        CHECK_FALSE(amx_for(100));
    }
    const kite::cpu::scoped_tuning zen(kite::cpu::tuning::zen);
    CHECK_FALSE(kite::cpu::amx_active());
    CHECK_FALSE(amx_for(100));
    // Queries near the float range: no bfloat16 pre-filter at all (the margins would overflow).
    kite::matrix<float> big(100, d);
    for (index_t i = 0; i < 100; ++i)
        for (index_t j = 0; j < d; ++j) big(i, j) = 1e18f;
    const kite::cpu::scoped_tuning intel(kite::cpu::tuning::intel);
    const auto p = kite::retrieval::detail::plan_search(500, d, 100, {1, flat_kernel::gemm});
    CHECK_FALSE(kite::retrieval::detail::base_for<kite::retrieval::detail::kite_kernels>(b0, p, 1.0f, big.data(), d, 100).amx);
}

TEST_CASE("flat search reads the bfloat16 copy under the Zen tuning only", "[retrieval][flat][bf16][tuning]") {
    // Under the Intel tuning the float32 kernel runs; under Zen's the bfloat16 one. Both give
    // the float32 index's answers, so what tells them apart is which base the search runs on.
    const index_t d = 64;
    const auto queries = kt::make_data(kt::data_kind::random, 16, d, 32);
    const kite::retrieval::detail::flat_plan p = kite::retrieval::detail::plan_search(200, d, 16, {1, flat_kernel::gemm});
    const auto on = [&](kite::cpu::tuning t) {
        const kite::cpu::scoped_tuning force(t);
        kite::retrieval::detail::flat_base b0{};
        b0.bf16 = reinterpret_cast<const std::uint32_t*>(&d);  // any non-null copy
        b0.d = d;
        return kite::retrieval::detail::base_for<kite::retrieval::detail::kite_kernels>(b0, p, 1.0f, queries.data(), d,
                                                                                        16)
                   .bf16 != nullptr;
    };
    CHECK(on(kite::cpu::tuning::zen) == kite::simd::has_bf16_dot);
    CHECK_FALSE(on(kite::cpu::tuning::intel));
}

TEST_CASE("flat index bfloat16 copy follows add, add_with_ids, remove_ids, reset and toggling",
          "[retrieval][flat][bf16]") {
    const kite::cpu::scoped_tuning zen(kite::cpu::tuning::zen);
    const index_t d = 37;
    const auto base = kt::make_data(kt::data_kind::random, 300, d, 21);
    const auto queries = kt::make_data(kt::data_kind::random, 20, d, 22);
    flat_index<kite::metric::l2> plain(d), bf(d);
    CHECK_FALSE(bf.bf16_gemm());
    plain.add(base.view().rows_slice(0, 100));
    bf.add(base.view().rows_slice(0, 100));
    bf.set_bf16_gemm(true);  // converts what is stored
    CHECK(bf.bf16_gemm() == kite::simd::has_bf16_dot);
    CHECK(bf.memory_bytes() == plain.memory_bytes() + (kite::simd::has_bf16_dot ? 100 * 19 * 4 : 0));
    std::vector<kite::id_t> ids(100);
    for (index_t i = 0; i < 100; ++i) ids[i] = static_cast<kite::id_t>(1000 + 3 * i);
    plain.add_with_ids(base.view().rows_slice(100, 100), ids);
    bf.add_with_ids(base.view().rows_slice(100, 100), ids);
    check_same(plain, bf, queries.view(), 15, "after add_with_ids", flat_kernel::gemm);
    const std::vector<kite::id_t> drop = {0, 5, 99, 1000, 1003, 1297};
    CHECK(plain.remove_ids(drop) == bf.remove_ids(drop));
    check_same(plain, bf, queries.view(), 15, "after remove_ids", flat_kernel::gemm);
    plain.add(base.view().rows_slice(200, 100));
    bf.add(base.view().rows_slice(200, 100));
    check_same(plain, bf, queries.view(), 15, "after a second add", flat_kernel::gemm);
    bf.set_bf16_gemm(false);
    CHECK_FALSE(bf.bf16_gemm());
    check_same(plain, bf, queries.view(), 15, "copy dropped", flat_kernel::gemm);
    bf.set_bf16_gemm(true);
    check_same(plain, bf, queries.view(), 15, "copy rebuilt", flat_kernel::gemm);
    bf.reset();
    plain.reset();
    bf.add(base.view().rows_slice(0, 50));
    plain.add(base.view().rows_slice(0, 50));
    check_same(plain, bf, queries.view(), 15, "after reset", flat_kernel::gemm);
}

TEST_CASE("bfloat16 row conversion: the vector form equals to_bf16_pairs, word for word", "[retrieval][flat][bf16]") {
#if defined(__AVX512BF16__) && defined(__AVX512F__) && defined(__AVX512BW__)
    std::mt19937_64 g(15);
    std::normal_distribution<float> nd(0.f, 1.f);
    for (index_t d = 1; d <= 70; ++d) {
        std::vector<float> x(d);
        for (index_t j = 0; j < d; ++j) {
            const float scale = j % 7 == 3 ? 1e-39f : j % 11 == 5 ? 1e30f : 1.0f;  // subnormals, large values
            x[j] = scale * nd(g);
        }
        if (d > 4) x[4] = -0.0f;
        if (d > 6) x[6] = 1.00390625f;  // halfway between two bfloat16 values: ties to even
        const index_t w = kite::retrieval::detail::bf16_pairs(d);
        std::vector<std::uint32_t> a(w + 1, 0xdeadbeefu), b(w + 1, 0xdeadbeefu);
        kite::retrieval::detail::to_bf16_pairs(x.data(), d, a.data());
        kite::retrieval::detail::row_to_bf16_pairs(x.data(), d, b.data());
        INFO("d = " << d);
        for (index_t i = 0; i < w; ++i) {
            // Signed zeros may differ (a flushed subnormal keeps or drops its sign); values may not.
            for (int h = 0; h < 2; ++h) {
                const std::uint32_t ha = (a[i] >> (16 * h)) & 0xffffu, hb = (b[i] >> (16 * h)) & 0xffffu;
                if ((ha & 0x7fffu) == 0) CHECK((hb & 0x7fffu) == 0);
                else CHECK(ha == hb);
            }
        }
        CHECK(b[w] == 0xdeadbeefu);  // nothing written past the row's words
    }
#else
    SUCCEED("no AVX512_BF16 in this build: the vector conversion is not compiled");
#endif
}
