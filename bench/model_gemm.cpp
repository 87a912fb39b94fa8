// The encoder's two packed GEMMs on all-MiniLM-L6-v2's shapes (7,680 tokens: a batch of 32
// SciFact documents of 240 word pieces), same data, same run:
//   model/gemm/<impl>/t:<tokens>/k:<in>/n:<out>   impl = f32 (packed_f32_weights) or
//   w8a8 (packed_i8_weights, activations rounded per token inside the timed call).
// The up projection (k 384, n 1536) runs with its GELU epilogue, the others with a bias, as in
// the encoder. items/s = multiply-adds per second.
// Beside them, the exact GELU the epilogues apply, over 64 Ki values (L2-resident), per lane:
//   model/gelu/xsimd      0.5 x (1 + xsimd::erf(x / sqrt 2))   (the anchor, kite's earlier GELU)
//   model/gelu/rational   kite::model::act::detail::gelu_erf     (erf_rational)
// items/s = values per second.
#include <benchmark/benchmark.h>

#include <string>
#include <vector>

#include <xsimd/xsimd.hpp>

#include "bench_util.hpp"
#include "kite/core/matrix.hpp"
#include "kite/quant/packed_f32.hpp"
#include "kite/model/layers.hpp"
#include "kite/quant/packed_i8.hpp"

namespace {

template <class Weights>
void run(benchmark::State& st, kite::index_t t, kite::index_t k, kite::index_t n, bool gelu) {
    const auto xs = kite::bench::random_floats(t * k, 1), ws = kite::bench::random_floats(n * k, 2);
    const kite::matrix_view<const float> x(xs.data(), t, k), w(ws.data(), n, k);
    const Weights packed(w);
    const std::vector<float> bias(n, 0.1f);
    kite::matrix<float> y(t, n);
    const kite::quant::gemm_epilogue e{.bias = bias, .gelu = gelu};
    for (auto _ : st) {
        kite::quant::gemm(packed, x, y.view(), e, static_cast<int>(st.range(0)));
        benchmark::DoNotOptimize(y.data());
    }
    st.SetItemsProcessed(st.iterations() * static_cast<std::int64_t>(t * k * n));
}

#if KITE_SIMD_ENABLED
template <bool Rational>
void gelu(benchmark::State& st) {
    using B = kite::simd::fbatch;
    constexpr std::size_t n = std::size_t{1} << 16;
    auto x = kite::bench::random_floats(n, 3);
    for (float& v : x) v *= 3.0f;  // GELU inputs of BERT's MLP span a few units
    std::vector<float> y(n);
    for (auto _ : st) {
        for (std::size_t i = 0; i < n; i += B::size) {
            const B v = B::load_unaligned(x.data() + i);
            B g;
            if constexpr (Rational) {
                g = kite::model::act::detail::gelu_erf(v);
            } else {
                g = 0.5f * v * (1.0f + xsimd::erf(v * kite::model::act::gelu::inv_sqrt2));
            }
            g.store_unaligned(y.data() + i);
        }
        benchmark::DoNotOptimize(y.data());
        benchmark::ClobberMemory();
    }
    st.SetItemsProcessed(st.iterations() * static_cast<std::int64_t>(n));
}
#endif

void register_all() {
#if KITE_SIMD_ENABLED
    benchmark::RegisterBenchmark("model/gelu/xsimd", gelu<false>);
    benchmark::RegisterBenchmark("model/gelu/rational", gelu<true>);
#endif
    constexpr kite::index_t t = 7680;
    struct shape {
        kite::index_t k, n;
        bool gelu;
    };
    for (const shape s : {shape{384, 1152, false}, shape{384, 384, false}, shape{384, 1536, true}, shape{1536, 384, false}}) {
        const std::string dims = "/t:" + std::to_string(t) + "/k:" + std::to_string(s.k) + "/n:" + std::to_string(s.n);
        benchmark::RegisterBenchmark(("model/gemm/f32" + dims).c_str(), [s](benchmark::State& st) {
            run<kite::quant::packed_f32_weights>(st, t, s.k, s.n, s.gelu);
        })->ArgName("threads")->Arg(1)->Arg(2)->Unit(benchmark::kMillisecond)->UseRealTime();
        benchmark::RegisterBenchmark(("model/gemm/w8a8" + dims).c_str(), [s](benchmark::State& st) {
            run<kite::quant::packed_i8_weights>(st, t, s.k, s.n, s.gelu);
        })->ArgName("threads")->Arg(1)->Arg(2)->Unit(benchmark::kMillisecond)->UseRealTime();
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
