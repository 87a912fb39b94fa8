// kite's side of bench/bm25_vs_bm25s.py: builds a BM25 index over BEIR SciFact (English
// analyzer, lucene, k1 1.2, b 0.75, title + text) and times top-k queries on one thread,
// query analysis included. Prints one JSON object.
//
// Usage: bench_lexical_scifact DATA_DIR [--k 10] [--builds 5] [--passes 20]
// Build time = median over --builds fresh builds (analysis + indexing, documents already in
// memory as strings). QPS = median over --passes passes over the test queries (after one
// warm-up pass), for the pruned (block-max MaxScore) and the exhaustive path.
#include <kite/retrieval/bm25.hpp>
#include <kite/retrieval/datasets.hpp>
#include <kite/retrieval/eval.hpp>
#include <kite/text.hpp>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <string>
#include <vector>

#include "bench_util.hpp"

namespace {
using clock_type = std::chrono::steady_clock;
double since(clock_type::time_point t0) {
    return std::chrono::duration<double>(clock_type::now() - t0).count();
}
double median(std::vector<double> v) {
    std::sort(v.begin(), v.end());
    return v.empty() ? 0.0 : v[v.size() / 2];
}
}  // namespace

int main(int argc, char** argv) {
    kite::bench::host_setup(argc, argv);  // --tuning=intel|zen; names the host
    if (argc < 2) {
        std::fprintf(stderr, "usage: %s DATA_DIR [--k 10] [--builds 5] [--passes 20]\n", argv[0]);
        return 2;
    }
    const std::filesystem::path dir = argv[1];
    std::size_t k = 10;
    int builds = 5, passes = 20;
    for (int i = 2; i + 1 < argc; i += 2) {
        const std::string a = argv[i];
        if (a == "--k") k = static_cast<std::size_t>(std::atoi(argv[i + 1]));
        if (a == "--builds") builds = std::atoi(argv[i + 1]);
        if (a == "--passes") passes = std::atoi(argv[i + 1]);
    }
    std::fprintf(stderr, "host: %s\n", kite::cpu::describe().c_str());  // stdout holds only the JSON
    kite::set_num_threads(1);
    const auto ds = kite::retrieval::data::load_beir(dir / "scifact", "test");
    std::vector<std::string> texts;
    for (const auto& d : ds.corpus) texts.push_back(d.full_text());

    using index_type = kite::retrieval::bm25_index<kite::bm25::lucene, kite::text::english>;
    const kite::bm25::params params{.k1 = 1.2, .b = 0.75};
    std::vector<double> build_s;
    index_type index(params);
    for (int b = 0; b < builds; ++b) {
        index_type fresh(params);
        const auto t0 = clock_type::now();
        fresh.add_all(texts);
        build_s.push_back(since(t0));
        index = std::move(fresh);
    }

    index_type::scratch scratch;
    const auto time_pass = [&](bool pruned, std::vector<std::vector<kite::scored_id>>* out) {
        const auto t0 = clock_type::now();
        for (const auto& q : ds.queries) {
            auto r = pruned ? index.search(q.text, k, scratch) : index.search_exhaustive(q.text, k, scratch);
            if (out) out->push_back(std::move(r));
        }
        return static_cast<double>(ds.queries.size()) / since(t0);
    };
    std::vector<std::vector<kite::scored_id>> runs;
    time_pass(true, &runs);  // warm-up, and the run that is evaluated
    time_pass(false, nullptr);
    std::vector<double> qps_pruned, qps_exhaustive;
    for (int p = 0; p < passes; ++p) {
        qps_pruned.push_back(time_pass(true, nullptr));
        qps_exhaustive.push_back(time_pass(false, nullptr));
    }
    // Query analysis alone (the part of a query that is not search).
    std::vector<double> qps_analyze;
    for (int p = 0; p < passes; ++p) {
        std::size_t n = 0;
        const auto t0 = clock_type::now();
        for (const auto& q : ds.queries) index.analyzer().analyze(q.text, [&](std::string_view) { ++n; });
        qps_analyze.push_back(static_cast<double>(ds.queries.size()) / since(t0));
        if (n == 0) return 3;
    }
    double ndcg = 0;
    std::size_t nq = 0;
    for (std::size_t q = 0; q < runs.size(); ++q) {
        ndcg += kite::retrieval::eval::ndcg_at(runs[q], ds.qrels[q], 10);
        ++nq;
    }
    std::printf("{\"engine\": \"kite\", \"docs\": %zu, \"queries\": %zu, \"terms\": %zu, \"k\": %zu, "
                "\"build_s\": %.6f, \"qps\": %.1f, \"qps_exhaustive\": %.1f, \"qps_analyze_only\": %.1f, "
                "\"ndcg10\": %.4f, \"index_bytes\": %zu}\n",
                ds.corpus.size(), ds.queries.size(), index.vocab().size(), k, median(build_s),
                median(qps_pruned), median(qps_exhaustive), median(qps_analyze), ndcg / static_cast<double>(nq),
                index.memory_bytes());
    return 0;
}
