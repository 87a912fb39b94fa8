// Core SIMD helpers beside Eigen's equivalents: core/<op>/<impl>/n:<n>.
// Vectors are cache resident (the same pair is reused), so this measures the kernels' compute
// throughput, not memory bandwidth.
#include <Eigen/Core>
#include <benchmark/benchmark.h>

#include "bench_util.hpp"
#include "kite/core/simd.hpp"

namespace {

using vmap = Eigen::Map<const Eigen::VectorXf>;

template <class F>
void run(benchmark::State& st, std::size_t n, F&& f) {
    auto a = kite::bench::random_floats(n, 1), b = kite::bench::random_floats(n, 2);
    for (auto _ : st) {
        float r = f(a.data(), b.data(), n);
        benchmark::DoNotOptimize(r);
    }
    st.SetItemsProcessed(static_cast<std::int64_t>(st.iterations() * n));
    st.SetBytesProcessed(static_cast<std::int64_t>(st.iterations() * n * 2 * sizeof(float)));
}

void register_all() {
    for (std::size_t n : {16u, 100u, 384u, 768u, 4096u, 65536u}) {
        const std::string s = "/n:" + std::to_string(n);
        benchmark::RegisterBenchmark(("core/dot/kite" + s).c_str(), [n](benchmark::State& st) {
            run(st, n, [](const float* a, const float* b, std::size_t m) { return kite::simd::dot(a, b, m); });
        });
        benchmark::RegisterBenchmark(("core/dot/eigen" + s).c_str(), [n](benchmark::State& st) {
            run(st, n, [](const float* a, const float* b, std::size_t m) {
                return vmap(a, static_cast<Eigen::Index>(m)).dot(vmap(b, static_cast<Eigen::Index>(m)));
            });
        });
        benchmark::RegisterBenchmark(("core/l2sq/kite" + s).c_str(), [n](benchmark::State& st) {
            run(st, n, [](const float* a, const float* b, std::size_t m) { return kite::simd::l2_sq(a, b, m); });
        });
        benchmark::RegisterBenchmark(("core/l2sq/eigen" + s).c_str(), [n](benchmark::State& st) {
            run(st, n, [](const float* a, const float* b, std::size_t m) {
                return (vmap(a, static_cast<Eigen::Index>(m)) - vmap(b, static_cast<Eigen::Index>(m))).squaredNorm();
            });
        });
        benchmark::RegisterBenchmark(("core/sum/kite" + s).c_str(), [n](benchmark::State& st) {
            run(st, n, [](const float* a, const float*, std::size_t m) { return kite::simd::sum(a, m); });
        });
        benchmark::RegisterBenchmark(("core/sum/eigen" + s).c_str(), [n](benchmark::State& st) {
            run(st, n, [](const float* a, const float*, std::size_t m) { return vmap(a, static_cast<Eigen::Index>(m)).sum(); });
        });
    }
}

}  // namespace

int main(int argc, char** argv) {
    kite::bench::host_setup(argc, argv);  // --tuning=intel|zen; names the host
    register_all();
    benchmark::Initialize(&argc, argv);
    if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
    benchmark::RunSpecifiedBenchmarks();
    benchmark::Shutdown();
    return 0;
}
