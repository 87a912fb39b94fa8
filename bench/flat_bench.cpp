// Flat index search, kite beside its anchors: flat/<impl>/n:<n>/d:<d>/nq:<nq>/k:<k>/threads:<t>.
//
//   impl  kite        automatic kernel choice (what users get)
//         kite-f16    the same with flat_options::f16_scan (float16 copy for the scan kernel,
//                     exact results, 1.5x memory); only batches the scan kernel takes
//         kite-bf16   the same with flat_options::bf16_gemm (bfloat16 copy for the GEMM kernel,
//                     exact results, 1.5x memory, needs AVX512_BF16); only batches the GEMM takes
//         kite-scan   the fused scan kernel, forced
//         kite-gemm   kite's GEMM micro-kernel with fused top-k, forced
//         kite-eigen  Eigen GEMM tiles + top-k, forced (the measured reason for kite-gemm)
//         faiss-deb   Debian's libfaiss 1.7.3 (generic build, reference BLAS), when found;
//                     nq <= 16 only (its BLAS path would take minutes). The anchor that counts
//                     is PyPI faiss-cpu, timed by bench/flat_vs_faiss.py on the same files.
//
// Data: uniform [-1, 1) with fixed seeds, or --flat_data=DIR holding base.npy and
// queries.npy (what flat_vs_faiss.py writes, so kite and FAISS see the same vectors). Each
// iteration is one search call in the steady state (index built once per size, outside the
// timing); single queries and small batches rotate through 1000 queries. Counters: scan_GBps
// (bytes of the rows the kernel reads / time: 4 per component, 2 for kite-f16 and kite-bf16),
// dram_GBps (this machine's read bandwidth at the same thread count, measured here with a
// vector sum over 1 GiB), dram_frac (their ratio), qps, GFLOPs
// (2 n d nq / time).
//
// Memory: one (n, d) index lives at a time (n = 1e6, d = 768 is 3 GB).
//
//   build/release/bench/bench_flat --benchmark_filter='n:100000/' --benchmark_repetitions=5
//       --benchmark_out=flat.json --benchmark_out_format=json    (one command line)
//   python3 bench/ratios.py flat.json
#include <benchmark/benchmark.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstdint>
#include <cstring>
#include <algorithm>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "bench_util.hpp"
#include "kite/core/parallel.hpp"
#include "kite/core/simd.hpp"
#include "kite/retrieval/detail/flat_eigen.hpp"
#include "kite/retrieval/flat_index.hpp"
#include "kite/retrieval/vector_io.hpp"

#if defined(KITE_BENCH_WITH_FAISS)
#include <faiss/IndexFlat.h>
#include <omp.h>
#endif

namespace {

using kite::index_t;
namespace kr = kite::retrieval;

std::string g_data_dir;  // --flat_data=DIR

/// The current (n, d) data set and index; replaced when a benchmark needs another size.
struct dataset {
    index_t n = 0, d = 0;
    kite::matrix<float> queries;  // [1000][d]
    std::unique_ptr<kr::flat_index<kite::metric::l2>> index;
#if defined(KITE_BENCH_WITH_FAISS)
    std::unique_ptr<faiss::IndexFlatL2> faiss_index;
#endif
};
dataset g_data;

dataset& data_for(index_t n, index_t d, bool with_faiss) {
    if (g_data.n != n || g_data.d != d) {
        g_data = dataset{};  // free the previous size first
        g_data.n = n;
        g_data.d = d;
        g_data.index = std::make_unique<kr::flat_index<kite::metric::l2>>(d);
        g_data.index->reserve(n);
        if (!g_data_dir.empty()) {
            const kr::mapped_npy base(g_data_dir + "/base.npy");
            if (base.rows() != n || base.cols() != d) {
                std::fprintf(stderr, "bench_flat: %s/base.npy is %zu x %zu, benchmark wants %zu x %zu\n",
                             g_data_dir.c_str(), base.rows(), base.cols(), n, d);
                std::exit(2);
            }
            g_data.index->add(base.view());
            g_data.queries = kr::read_npy(g_data_dir + "/queries.npy");
        } else {
            const index_t chunk = 65536;
            for (index_t r = 0; r < n; r += chunk) {
                const index_t m = std::min(chunk, n - r);
                auto part = kite::bench::random_floats(m * d, 1000 + r);
                g_data.index->add(kite::matrix_view<const float>(part.data(), m, d));
            }
            auto q = kite::bench::random_floats(1000 * d, 7);
            g_data.queries = kite::matrix<float>(kite::matrix_view<const float>(q.data(), 1000, d));
        }
    }
#if defined(KITE_BENCH_WITH_FAISS)
    if (with_faiss && !g_data.faiss_index) {
        g_data.faiss_index = std::make_unique<faiss::IndexFlatL2>(static_cast<int>(d));
        g_data.faiss_index->add(static_cast<faiss::Index::idx_t>(n), g_data.index->vectors().data());
    }
#else
    (void)with_faiss;
#endif
    return g_data;
}

/// DRAM read bandwidth at `threads`: the best of 5 passes of kite::simd::sum over 1 GiB
/// (huge pages), each thread summing its contiguous share. (bench_util's probe sums with scalar
/// adds, which on this machine is compute-bound at about half the bandwidth; a vector sum is
/// not.) Measured once per thread count.
double dram_gbps(int threads) {
    static std::map<int, double> cache;
    auto it = cache.find(threads);
    if (it != cache.end()) return it->second;
    const std::size_t n = (std::size_t{1} << 30) / sizeof(float);
    kite::aligned_buffer<float> buf(n, kite::uninitialized);
    kite::parallel_chunks(n, [&](std::size_t b, std::size_t e, int) { std::fill(buf.data() + b, buf.data() + e, 1.0f); },
                          threads);
    double best = 0;
    for (int rep = 0; rep < 5; ++rep) {
        std::vector<float> partial(static_cast<std::size_t>(threads), 0.f);
        const auto t0 = std::chrono::steady_clock::now();
        kite::parallel_chunks(
            n, [&](std::size_t b, std::size_t e, int tid) { partial[static_cast<std::size_t>(tid)] = kite::simd::sum(buf.data() + b, e - b); },
            threads);
        const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
        benchmark::DoNotOptimize(partial.data());
        best = std::max(best, static_cast<double>(n * sizeof(float)) / s / 1e9);
    }
    return cache.emplace(threads, best).first->second;
}

/// Rates from the wall time of the timed loop (search runs its own threads, so CPU time of
/// the benchmark thread would not do).
void set_counters(benchmark::State& st, double seconds, index_t n, index_t d, index_t nq, int threads,
                  std::size_t bytes_per_component = sizeof(float)) {
    const double per_call = seconds / static_cast<double>(std::max<benchmark::IterationCount>(st.iterations(), 1));
    const double bytes = static_cast<double>(n * d * bytes_per_component);
    st.counters["qps"] = static_cast<double>(nq) / per_call;
    st.counters["scan_GBps"] = bytes / per_call / 1e9;
    st.counters["GFLOPs"] = 2.0 * static_cast<double>(n) * static_cast<double>(d) * static_cast<double>(nq) / per_call / 1e9;
    st.counters["dram_GBps"] = dram_gbps(threads);
    st.counters["dram_frac"] = bytes / per_call / 1e9 / dram_gbps(threads);
}

using wall = std::chrono::steady_clock;
double since(wall::time_point t0) { return std::chrono::duration<double>(wall::now() - t0).count(); }

void run_kite(benchmark::State& st, index_t n, index_t d, index_t nq, index_t k, int threads, kr::flat_kernel kern,
              bool eigen, bool f16, bool bf16) {
    auto& ds = data_for(n, d, false);
    ds.index->set_f16_scan(f16);  // converts (or frees) the reduced copies outside the timing
    ds.index->set_bf16_gemm(bf16);
    if (f16 && !ds.index->f16_scan()) {
        st.SkipWithError("no float16 conversion instructions on this target");
        return;
    }
    if (bf16 && !ds.index->bf16_gemm()) {
        st.SkipWithError("no AVX512_BF16 on this target");
        return;
    }
    dram_gbps(threads);  // measured before timing
    kr::search_result out{kite::matrix<float>(nq, k), kite::matrix<kite::id_t>(nq, k)};
    const kr::search_options opt{threads, kern};
    index_t at = 0;
    const auto t0 = wall::now();
    for (auto _ : st) {
        const auto q = ds.queries.view().rows_slice(at, nq);
        if (eigen)
            ds.index->search(q, k, out.distances.view(), out.labels.view(), {threads, kr::flat_kernel::scan},
                             kr::detail::eigen_kernel{});
        else
            ds.index->search(q, k, out.distances.view(), out.labels.view(), opt);
        benchmark::DoNotOptimize(out.labels.data());
        at = (at + nq) % (1000 - nq + 1);
    }
    const bool reads_half = (f16 && !eigen && (kern == kr::flat_kernel::scan ||
                                               (kern == kr::flat_kernel::automatic && nq < kr::flat_scan_max_batch))) ||
                            (bf16 && !eigen && (kern == kr::flat_kernel::gemm ||
                                                (kern == kr::flat_kernel::automatic && nq >= kr::flat_scan_max_batch)));
    set_counters(st, since(t0), n, d, nq, threads, reads_half ? sizeof(std::uint16_t) : sizeof(float));
}

#if defined(KITE_BENCH_WITH_FAISS)
void run_faiss(benchmark::State& st, index_t n, index_t d, index_t nq, index_t k, int threads) {
    auto& ds = data_for(n, d, true);
    dram_gbps(threads);
    std::vector<float> dist(nq * k);
    std::vector<faiss::Index::idx_t> lab(nq * k);
    omp_set_num_threads(threads);
    index_t at = 0;
    const auto t0 = wall::now();
    for (auto _ : st) {
        ds.faiss_index->search(static_cast<faiss::Index::idx_t>(nq), ds.queries.row(at).data(),
                               static_cast<faiss::Index::idx_t>(k), dist.data(), lab.data());
        benchmark::DoNotOptimize(lab.data());
        at = (at + nq) % (1000 - nq + 1);
    }
    const double secs = since(t0);
    omp_set_num_threads(kite::max_threads());
    set_counters(st, secs, n, d, nq, threads);
}
#endif

void register_all(const std::vector<index_t>& ns, const std::vector<index_t>& ds, const std::vector<index_t>& nqs) {
    const index_t k = 10;
    struct impl {
        const char* name;
        kr::flat_kernel kernel;
        bool eigen;
        bool f16;
        bool bf16;
    };
    const impl impls[] = {{"kite", kr::flat_kernel::automatic, false, false, false},
                          {"kite-scan", kr::flat_kernel::scan, false, false, false},
                          {"kite-gemm", kr::flat_kernel::gemm, false, false, false},
                          {"kite-eigen", kr::flat_kernel::automatic, true, false, false},
                          {"kite-f16", kr::flat_kernel::automatic, false, true, false},
                          {"kite-bf16", kr::flat_kernel::automatic, false, false, true}};
    for (index_t n : ns)
        for (index_t d : ds)
            for (index_t nq : nqs)
                for (int t : {1, 2}) {
                    const std::string tail = "/n:" + std::to_string(n) + "/d:" + std::to_string(d) +
                                             "/nq:" + std::to_string(nq) + "/k:" + std::to_string(k) +
                                             "/threads:" + std::to_string(t);
                    for (const auto& im : impls) {
                        // The scan kernel at 1000 queries is slow by design; not worth minutes.
                        if (im.kernel == kr::flat_kernel::scan && nq > 16) continue;
                        if (im.f16 && nq >= kr::flat_scan_max_batch) continue;  // the copy serves the scan only
                        if (im.bf16 && nq < kr::flat_scan_max_batch) continue;  // and this one the GEMM only
                        benchmark::RegisterBenchmark(("flat/" + std::string(im.name) + tail).c_str(),
                                                     [=](benchmark::State& st) {
                                                         run_kite(st, n, d, nq, k, t, im.kernel, im.eigen, im.f16, im.bf16);
                                                     })
                            ->UseRealTime()
                            ->Unit(benchmark::kMillisecond);
                    }
#if defined(KITE_BENCH_WITH_FAISS)
                    if (nq <= 16)
                        benchmark::RegisterBenchmark(("flat/faiss-deb" + tail).c_str(),
                                                     [=](benchmark::State& st) { run_faiss(st, n, d, nq, k, t); })
                            ->UseRealTime()
                            ->Unit(benchmark::kMillisecond);
#endif
                }
}

std::vector<index_t> parse_list(const char* s) {
    std::vector<index_t> v;
    for (const char* p = s; *p;) {
        v.push_back(static_cast<index_t>(std::strtoull(p, const_cast<char**>(&p), 10)));
        if (*p == ',') ++p;
    }
    return v;
}

}  // namespace

int main(int argc, char** argv) {
    // kite's own flags, removed before Google Benchmark sees the rest:
    //   --flat_data=DIR   base.npy + queries.npy (sizes come from the file)
    //   --flat_n=LIST     row counts (default 100000,1000000)
    //   --flat_d=LIST     dimensions (default 384,768)
    //   --flat_nq=LIST    batch sizes (default 1,16,1000; at most 1000)
    //   --tuning=intel|zen  force a kernel tuning (default: the host's; kite::cpu)
    kite::bench::host_setup(argc, argv);
    std::vector<index_t> ns = {100000, 1000000}, ds = {384, 768}, nqs = {1, 16, 1000};
    int out = 1;
    for (int i = 1; i < argc; ++i) {
        if (std::strncmp(argv[i], "--flat_data=", 12) == 0) {
            g_data_dir = argv[i] + 12;
        } else if (std::strncmp(argv[i], "--flat_n=", 9) == 0) {
            ns = parse_list(argv[i] + 9);
        } else if (std::strncmp(argv[i], "--flat_d=", 9) == 0) {
            ds = parse_list(argv[i] + 9);
        } else if (std::strncmp(argv[i], "--flat_nq=", 10) == 0) {
            nqs = parse_list(argv[i] + 10);
        } else {
            argv[out++] = argv[i];
        }
    }
    argc = out;
    if (!g_data_dir.empty()) {
        const kr::mapped_npy base(g_data_dir + "/base.npy");
        ns = {base.rows()};
        ds = {base.cols()};
    }
    register_all(ns, ds, nqs);
    benchmark::Initialize(&argc, argv);
    if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
    benchmark::RunSpecifiedBenchmarks();
    benchmark::Shutdown();
    return 0;
}
