// Lexical retrieval micro-benchmarks, each fast path beside its slow twin in the same binary:
//   lexical/analyze/<kite|reference>      english-like text through unicode_words: the ASCII
//                                         fast path vs whole-text utf8proc normalization
//   lexical/search/<pruned|exhaustive>    top-10 BM25 (lucene) on a synthetic Zipf corpus of
//                                         N documents (cache-resident at 20k, larger at 300k)
// The anchors outside kite (bm25s, rank_bm25) are in bench/bm25_vs_bm25s.py.
#include <kite/retrieval/bm25.hpp>
#include <kite/text.hpp>

#include <benchmark/benchmark.h>

#include <cmath>
#include <map>
#include <type_traits>
#include <random>
#include <string>
#include <vector>

#include "bench_util.hpp"

namespace {

std::string sample_text(std::size_t words) {
    static const char* vocab[] = {"Patients", "with", "type", "2", "diabetes", "were", "randomized",
                                  "to", "receive", "insulin", "or", "placebo;", "the", "primary",
                                  "outcome", "(HbA1c)", "improved", "by", "0.5%", "in", "treated",
                                  "groups", "naïve", "café"};
    std::mt19937_64 rng(1);
    std::string s;
    for (std::size_t i = 0; i < words; ++i) {
        s += vocab[rng() % (sizeof(vocab) / sizeof(vocab[0]))];
        s += ' ';
    }
    return s;
}

void analyze_kite(benchmark::State& st) {
    const std::string text = sample_text(20000);
    std::size_t n = 0;
    for (auto _ : st) kite::text::unicode_words{}.analyze(text, [&](std::string_view t) { n += t.size(); });
    benchmark::DoNotOptimize(n);
    st.SetBytesProcessed(static_cast<std::int64_t>(st.iterations() * text.size()));
}
void analyze_reference(benchmark::State& st) {
    const std::string text = sample_text(20000);
    for (auto _ : st) benchmark::DoNotOptimize(kite::text::unicode_words::reference_terms(text));
    st.SetBytesProcessed(static_cast<std::int64_t>(st.iterations() * text.size()));
}

struct corpus {
    kite::retrieval::bm25_index<kite::bm25::lucene, kite::text::pretokenized> index;
    std::vector<std::vector<std::uint32_t>> queries;
};

const corpus& zipf(std::size_t n) {
    static std::map<std::size_t, corpus> cache;
    auto [it, fresh] = cache.try_emplace(n);
    if (!fresh) return it->second;
    const std::uint32_t vocab = 100000;
    std::vector<double> w(vocab);
    for (std::uint32_t r = 0; r < vocab; ++r) w[r] = 1.0 / (r + 1.0);
    std::discrete_distribution<std::uint32_t> term(w.begin(), w.end());
    std::mt19937_64 rng(7);
    std::vector<std::vector<std::uint32_t>> docs(n);
    for (auto& d : docs) {
        d.resize(20 + rng() % 100);
        for (auto& t : d) t = term(rng);
    }
    it->second.index.add_all(std::vector<std::span<const std::uint32_t>>(docs.begin(), docs.end()));
    it->second.queries.resize(256);
    for (auto& q : it->second.queries) {
        q.resize(3 + rng() % 8);
        for (auto& t : q) t = term(rng);
    }
    return it->second;
}

template <bool Pruned>
void search(benchmark::State& st) {
    const auto& c = zipf(static_cast<std::size_t>(st.range(0)));
    typename std::remove_cvref_t<decltype(c.index)>::scratch s;
    std::size_t i = 0;
    for (auto _ : st) {
        const auto& q = c.queries[i++ % c.queries.size()];
        benchmark::DoNotOptimize(Pruned ? c.index.search_pruned(q, 10, s) : c.index.search_exhaustive(q, 10, s));
    }
    st.SetItemsProcessed(static_cast<std::int64_t>(st.iterations()));
}

}  // namespace

BENCHMARK(analyze_kite)->Name("lexical/analyze/kite");
BENCHMARK(analyze_reference)->Name("lexical/analyze/reference");
BENCHMARK(search<true>)->Name("lexical/search/pruned")->Arg(20000)->Arg(300000)->Unit(benchmark::kMicrosecond);
BENCHMARK(search<false>)->Name("lexical/search/exhaustive")->Arg(20000)->Arg(300000)->Unit(benchmark::kMicrosecond);

int main(int argc, char** argv) {
    kite::bench::host_setup(argc, argv);  // --tuning=intel|zen; names the host
    benchmark::Initialize(&argc, argv);
    if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
    benchmark::RunSpecifiedBenchmarks();
    benchmark::Shutdown();
    return 0;
}
