// 03_hybrid_search — kite's flagship: hybrid retrieval over a small corpus the repository ships.
//
// BM25 (English analyzer: Unicode normalisation, stop words, Snowball stemming) and dense
// retrieval (all-MiniLM-L6-v2 embeddings, precomputed and shipped as .npy beside the corpus)
// are composed at compile time into one pipeline and fused by reciprocal rank fusion. For each
// query the fused ranking is printed with each retriever's rank and score beside it; then the
// three set-ups are judged on the corpus's relevance labels, with timings.
//
// Usage: kite-quickstart [DATA_DIR]   (default: examples/data/notes)
#include <kite/retrieval/bm25.hpp>
#include <kite/retrieval/datasets.hpp>
#include <kite/retrieval/dense.hpp>
#include <kite/retrieval/eval.hpp>
#include <kite/retrieval/pipeline.hpp>
#include <kite/retrieval/vector_io.hpp>
#include <kite/text.hpp>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <string>

#include "cli.hpp"

namespace kr = kite::retrieval;
using clock_type = std::chrono::steady_clock;

namespace {

double ms_since(clock_type::time_point t0) {
    return std::chrono::duration<double, std::milli>(clock_type::now() - t0).count();
}

// Where retriever `list` put document `id` (rank from 1, 0 when absent), and its score there.
std::pair<std::size_t, float> rank_in(const kr::ranking& list, kite::id_t id) {
    for (std::size_t r = 0; r < list.size(); ++r)
        if (list[r].id == id) return {r + 1, list[r].score};
    return {0, 0.0f};
}

std::string cell(std::pair<std::size_t, float> rs) {
    if (rs.first == 0) return "      -        ";
    char buf[32];
    std::snprintf(buf, sizeof buf, "%3zu (%7.3f)", rs.first, rs.second);
    return buf;
}

}  // namespace

int main(int argc, char** argv) {
    kite::cli::parser cli("kite-quickstart",
                          "Hybrid search (BM25 + dense vectors fused by reciprocal rank) over a small BEIR-style corpus.");
    auto& dir_arg = cli.positional<std::filesystem::path>(
        "DATA_DIR", "corpus.jsonl, queries.jsonl, qrels/test.tsv, corpus_emb.npy, queries_emb.npy",
        std::filesystem::path("examples/data/notes"));
    return kite::cli::run(cli, argc, argv, [&]() -> int {
        const std::filesystem::path dir = *dir_arg;
        try {
            // 1. Data: a BEIR-style folder (corpus.jsonl, queries.jsonl, qrels/test.tsv) and the
            //    MiniLM embeddings of its documents and queries.
            const auto t_load = clock_type::now();
            const kr::data::dataset ds = kr::data::load_beir(dir, "test");
            auto doc_vectors = kr::read_npy<float>(dir / "corpus_emb.npy");    // [doc][384]
            auto query_vectors = kr::read_npy<float>(dir / "queries_emb.npy");  // [query][384]
            std::vector<std::string> query_texts;
            for (const auto& q : ds.queries) query_texts.push_back(q.text);

            // 2. Two retrievers over the same documents.
            const auto t_index = clock_type::now();
            using bm25_t = kr::bm25_index<kite::bm25::lucene, kite::text::english>;
            bm25_t bm25;  // k1 = 1.2, b = 0.75
            std::vector<std::string> texts;
            for (const auto& d : ds.corpus) texts.push_back(d.full_text());
            bm25.add_all(texts);
            kr::flat_index<kite::metric::cosine> vectors(doc_vectors.cols());
            vectors.add(doc_vectors.view());
            using dense_t = kr::dense_retriever<kite::metric::cosine, kr::embedding_table>;
            const dense_t dense(vectors, kr::embedding_table(query_texts, std::move(query_vectors)));
            const double index_ms = ms_since(t_index);

            // 3. The pipeline, composed at compile time: BM25 + dense, fused by RRF (K = 60).
            using hybrid_t = kr::pipeline<const bm25_t&, const dense_t&, kite::fusion::rrf<60>>;
            hybrid_t hybrid(bm25, dense);
            hybrid.depths().retrieve = 20;

            std::printf("kite hybrid search: %zu documents, %zu queries (%s)\n", ds.corpus.size(),
                        ds.queries.size(), dir.string().c_str());
            std::printf("indexed BM25 + %zu-d vectors in %.2f ms (loading took %.2f ms)\n\n",
                        vectors.dim(), index_ms, ms_since(t_load) - index_ms);

            std::vector<kr::ranking> runs_bm25, runs_dense, runs_hybrid;
            double search_ms = 0;
            for (std::size_t q = 0; q < ds.queries.size(); ++q) {
                const auto t0 = clock_type::now();
                const kr::pipeline_trace t = hybrid.trace(ds.queries[q].text, 5);
                search_ms += ms_since(t0);
                std::printf("query: \"%s\"\n", ds.queries[q].text.c_str());
                std::printf("  %-4s %-22s %-9s %-15s %-15s %s\n", "rank", "document", "rrf", "bm25 rank", "dense rank",
                            "relevance");
                for (std::size_t r = 0; r < t.final.size(); ++r) {
                    const auto id = t.final[r].id;
                    const int rel = [&] {
                        for (const auto& j : ds.qrels[q])
                            if (j.doc == id) return j.relevance;
                        return 0;
                    }();
                    std::printf("  %-4zu %-22s %.5f   %s %s %s\n", r + 1, ds.corpus[static_cast<std::size_t>(id)].id.c_str(),
                                t.final[r].score, cell(rank_in(t.retrieved[0], id)).c_str(),
                                cell(rank_in(t.retrieved[1], id)).c_str(), rel ? std::to_string(rel).c_str() : "");
                }
                std::printf("  (bm25 %.3f ms, dense %.3f ms, fusion %.3f ms)\n\n", t.retriever_ms[0], t.retriever_ms[1],
                            t.fusion_ms);
                runs_bm25.push_back(t.retrieved[0]);
                runs_dense.push_back(t.retrieved[1]);
                runs_hybrid.push_back(hybrid.search(ds.queries[q].text, 20));
            }

            // 4. Judge the three set-ups on the corpus's relevance labels (trec_eval definitions).
            const std::vector<std::string> metrics{"ndcg@10", "hit@1", "hit@3", "mrr@10"};
            std::printf("%-8s %8s %8s %8s %8s\n", "", "ndcg@10", "hit@1", "hit@3", "mrr@10");
            for (const auto& [name, runs] : {std::pair{"bm25", &runs_bm25}, std::pair{"dense", &runs_dense},
                                             std::pair{"hybrid", &runs_hybrid}}) {
                const auto m = kr::eval::evaluate(*runs, ds.qrels, metrics);
                std::printf("%-8s %8.3f %8.3f %8.3f %8.3f\n", name, m.at("ndcg@10"), m.at("hit@1"), m.at("hit@3"),
                            m.at("mrr@10"));
            }
            std::printf("\nmean hybrid search time %.3f ms per query (one thread per retriever)\n",
                        search_ms / static_cast<double>(ds.queries.size()));
            return 0;
        } catch (const kite::error& e) {
            std::fprintf(stderr, "kite-quickstart: %s\n(run it from the repository root, or pass the data folder)\n",
                         e.what());
            return 1;
        }
    });
}
