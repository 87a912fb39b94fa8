// 02_bm25_beir: BM25 on real retrieval data, scored with trec_eval's definitions.
//   BEIR SciFact (test split): English analyzer, Lucene BM25 (k1 1.2, b 0.75) over title + text;
//   nDCG@10 (published BM25: 0.665-0.690), recall@100.
//   KLUE STS dev as retrieval: CJK bigram analyzer over every sentence2; queries are the
//   sentence1 of paraphrase pairs; hit@1, hit@10, MRR@10.
//
// Usage: kite-bm25-beir [DATA_DIR] [--min-ndcg X]
//   DATA_DIR holds scifact/ and klue-sts/ (default: $KITE_DATA; an error when neither is set).
//   With --min-ndcg the program exits 1 when SciFact nDCG@10 falls below X (a regression test).
#include <kite/retrieval/bm25.hpp>
#include <kite/retrieval/datasets.hpp>
#include <kite/retrieval/eval.hpp>
#include <kite/text.hpp>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <string>
#include <string_view>
#include <vector>

#include "cli.hpp"

namespace fs = std::filesystem;
using namespace kite::retrieval;

namespace {

double seconds_since(std::chrono::steady_clock::time_point t0) {
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

template <class Index>
std::vector<std::vector<kite::scored_id>> run_queries(const Index& index, const data::dataset& ds,
                                                      std::size_t k, double& qps) {
    typename Index::scratch scratch;
    std::vector<std::vector<kite::scored_id>> runs;
    const auto t0 = std::chrono::steady_clock::now();
    for (const auto& q : ds.queries) runs.push_back(index.search(q.text, k, scratch));
    qps = static_cast<double>(ds.queries.size()) / seconds_since(t0);
    return runs;
}

double mean_metric(const std::vector<std::vector<kite::scored_id>>& runs, const data::dataset& ds,
                   std::string_view metric) {
    double sum = 0;
    std::size_t n = 0;
    for (std::size_t q = 0; q < runs.size(); ++q) {
        if (eval::detail::num_relevant(ds.qrels[q]) == 0) continue;
        sum += eval::metric(metric, runs[q], ds.qrels[q]);
        ++n;
    }
    return n ? sum / static_cast<double>(n) : 0.0;
}

}  // namespace

int main(int argc, char** argv) {
    kite::cli::parser cli("kite-bm25-beir", "BM25 on BEIR SciFact and KLUE STS, scored with trec_eval's definitions.");
    auto& dir_arg = cli.positional<fs::path>("DATA_DIR", "folder with scifact/ and klue-sts/ (default: $KITE_DATA)", fs::path());
    auto& min_ndcg = cli.option<double>("--min-ndcg", "X", "exit 1 when SciFact nDCG@10 is below X", -1.0).range(-1.0, 1.0);
    return kite::cli::run(cli, argc, argv, [&]() -> int {
        fs::path dir = *dir_arg;
        if (dir.empty()) {
            const char* env = std::getenv("KITE_DATA");
            if (!env || !*env) throw kite::cli::usage_error("no DATA_DIR given and KITE_DATA is not set");
            dir = env;
        }
        KITE_REQUIRE(fs::exists(dir / "scifact" / "corpus.jsonl") || fs::exists(dir / "klue-sts"), kite::not_found_error,
                     dir.string(), " holds neither scifact/corpus.jsonl nor klue-sts/; expected the evaluation data folder");

        int status = 0;
        if (fs::exists(dir / "scifact" / "corpus.jsonl")) {
            const auto ds = data::load_beir(dir / "scifact", "test");
            std::vector<std::string> texts;
            for (const auto& d : ds.corpus) texts.push_back(d.full_text());
            bm25_index<kite::bm25::lucene, kite::text::english> index({.k1 = 1.2, .b = 0.75});
            const auto t0 = std::chrono::steady_clock::now();
            index.add_all(texts);
            const double build_s = seconds_since(t0);
            double qps = 0;
            const auto runs = run_queries(index, ds, 100, qps);
            const double ndcg = mean_metric(runs, ds, "ndcg@10");
            std::printf("SciFact test: %zu docs, %zu queries, %zu terms; index built in %.3f s, %.0f queries/s (1 thread)\n",
                        ds.corpus.size(), ds.queries.size(), index.vocab().size(), build_s, qps);
            std::printf("  english analyzer, lucene k1 1.2 b 0.75 on title + text:\n");
            std::printf("  nDCG@10 %.4f   recall@100 %.4f   MRR@10 %.4f\n", ndcg,
                        mean_metric(runs, ds, "recall@100"), mean_metric(runs, ds, "mrr@10"));
            if (*min_ndcg >= 0 && ndcg < *min_ndcg) {
                std::printf("  FAIL: nDCG@10 %.4f is below the required %.4f\n", ndcg, *min_ndcg);
                status = 1;
            }
        } else {
            std::printf("no %s: SciFact skipped\n", (dir / "scifact" / "corpus.jsonl").c_str());
        }

        if (fs::exists(dir / "klue-sts")) {
            const auto ds = data::load_klue_sts(dir / "klue-sts");
            std::vector<std::string> texts;
            for (const auto& d : ds.corpus) texts.push_back(d.full_text());
            bm25_index<kite::bm25::lucene, kite::text::cjk_bigram> index;
            index.add_all(texts);
            double qps = 0;
            const auto runs = run_queries(index, ds, 10, qps);
            std::printf("KLUE STS dev as retrieval: %zu sentences, %zu paraphrase queries\n",
                        ds.corpus.size(), ds.queries.size());
            std::printf("  cjk_bigram analyzer, lucene: hit@1 %.4f   hit@10 %.4f   MRR@10 %.4f\n",
                        mean_metric(runs, ds, "hit@1"), mean_metric(runs, ds, "hit@10"),
                        mean_metric(runs, ds, "mrr@10"));
        } else {
            std::printf("no %s: KLUE STS skipped\n", (dir / "klue-sts").c_str());
        }
        return status;
    });
}
