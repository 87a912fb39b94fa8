// 08_semantic_search — semantic and hybrid search with kite's own sentence encoder: no Python,
// no precomputed vectors. all-MiniLM-L6-v2 (fetched by tools/fetch_minilm.py into models/) turns
// the documents and each query into 384-d vectors in C++ (WordPiece, BERT, mean pooling), a flat
// index searches them, and a pipeline fuses that with BM25 by reciprocal rank.
//
// It prints each query's top documents from the hybrid pipeline, the quality of BM25, dense and
// hybrid on the corpus's relevance labels, and how close kite's document vectors are to the
// sentence-transformers vectors shipped beside the corpus.
//
// Usage: kite-08-semantic-search [MODEL_DIR] [DATA_DIR]
//        (defaults: models/all-MiniLM-L6-v2 and examples/data/notes; without the model it says
//        how to fetch it and exits 0)
#include <kite/model/sentence_encoder.hpp>
#include <kite/retrieval/bm25.hpp>
#include <kite/retrieval/datasets.hpp>
#include <kite/retrieval/dense.hpp>
#include <kite/retrieval/eval.hpp>
#include <kite/retrieval/pipeline.hpp>
#include <kite/retrieval/vector_io.hpp>
#include <kite/text.hpp>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <string>
#include <vector>

#include "cli.hpp"

namespace kr = kite::retrieval;
namespace km = kite::model;
using clock_type = std::chrono::steady_clock;

namespace {
double ms_since(clock_type::time_point t0) {
    return std::chrono::duration<double, std::milli>(clock_type::now() - t0).count();
}
}  // namespace

int main(int argc, char** argv) {
    kite::cli::parser cli("kite-08-semantic-search", "Semantic search with kite's own all-MiniLM-L6-v2 sentence encoder.");
    auto& model_arg = cli.positional<std::filesystem::path>("MODEL_DIR", "all-MiniLM-L6-v2 folder (tools/fetch_minilm.py)",
                                                            std::filesystem::path("models/all-MiniLM-L6-v2"));
    auto& dir_arg = cli.positional<std::filesystem::path>("DATA_DIR", "BEIR-style corpus folder",
                                                          std::filesystem::path("examples/data/notes"));
    return kite::cli::run(cli, argc, argv, [&]() -> int {
        const std::filesystem::path model = *model_arg, dir = *dir_arg;
        if (!std::filesystem::exists(model / "model.safetensors")) {
            std::printf("kite-08-semantic-search: no model in %s; fetch it with: python3 tools/fetch_minilm.py\n",
                        model.string().c_str());
            return 0;
        }
        try {
            // 1. The encoder: tokenizer.json, config.json, model.safetensors, max_seq_length 256.
            const auto t_load = clock_type::now();
            const auto encoder = km::sentence_encoder<>::load(model);
            const double load_ms = ms_since(t_load);

            // 2. Documents -> vectors in one batched call (bucketed by length), into a flat index.
            const kr::data::dataset ds = kr::data::load_beir(dir, "test");
            std::vector<std::string> texts;
            for (const auto& d : ds.corpus) texts.push_back(d.full_text());
            const auto t_embed = clock_type::now();
            const kite::matrix<float> doc_vectors = encoder.encode(texts);  // [doc][384]
            const double embed_ms = ms_since(t_embed);
            kr::flat_index<kite::metric::cosine> vectors(encoder.dim());
            vectors.add(doc_vectors.view());

            // 3. Retrievers: dense (queries embedded by the same encoder at search time) and BM25,
            //    fused by RRF in a pipeline composed at compile time.
            const auto embed = [&encoder](std::string_view q) { return encoder(q); };
            const kr::dense_retriever<kite::metric::cosine, decltype(embed)> dense(vectors, embed);
            using bm25_t = kr::bm25_index<kite::bm25::lucene, kite::text::english>;
            bm25_t bm25;
            bm25.add_all(texts);
            kr::pipeline<const bm25_t&, const decltype(dense)&, kite::fusion::rrf<60>> hybrid(bm25, dense);
            hybrid.depths().retrieve = 20;

            std::printf("kite semantic search: all-MiniLM-L6-v2 loaded in %.0f ms; %zu documents embedded in %.0f ms\n\n",
                        load_ms, texts.size(), embed_ms);
            std::vector<kr::ranking> runs_bm25, runs_dense, runs_hybrid;
            double query_ms = 0;
            for (const auto& q : ds.queries) {
                const auto t0 = clock_type::now();
                const kr::ranking top = hybrid.search(q.text, 3);
                query_ms += ms_since(t0);
                std::printf("query: \"%s\"\n", q.text.c_str());
                for (const auto& r : top) {
                    const std::string& t = ds.corpus[static_cast<std::size_t>(r.id)].text;
                    std::printf("  %-10s %.60s%s\n", ds.corpus[static_cast<std::size_t>(r.id)].id.c_str(), t.c_str(),
                                t.size() > 60 ? "..." : "");
                }
                runs_bm25.push_back(bm25.search(q.text, 20));
                runs_dense.push_back(dense.search(q.text, 20));
                runs_hybrid.push_back(hybrid.search(q.text, 20));
            }

            // 4. Quality on the corpus's labels, and agreement with sentence-transformers' vectors.
            std::printf("\n%-8s %8s %8s %8s\n", "", "ndcg@10", "hit@1", "mrr@10");
            const std::vector<std::string> metrics{"ndcg@10", "hit@1", "mrr@10"};
            for (const auto& [name, runs] : {std::pair{"bm25", &runs_bm25}, std::pair{"dense", &runs_dense},
                                             std::pair{"hybrid", &runs_hybrid}}) {
                const auto m = kr::eval::evaluate(*runs, ds.qrels, metrics);
                std::printf("%-8s %8.3f %8.3f %8.3f\n", name, m.at("ndcg@10"), m.at("hit@1"), m.at("mrr@10"));
            }
            std::printf("\nmean hybrid query time %.2f ms (query encoding included)\n",
                        query_ms / static_cast<double>(ds.queries.size()));
            if (std::filesystem::exists(dir / "corpus_emb.npy")) {
                const auto st = kr::read_npy<float>(dir / "corpus_emb.npy");  // sentence-transformers, [doc][384]
                double worst = 1;
                for (kite::index_t i = 0; i < st.rows() && i < doc_vectors.rows(); ++i) {
                    double ab = 0, aa = 0, bb = 0;
                    for (kite::index_t d = 0; d < st.cols(); ++d) {
                        ab += static_cast<double>(st(i, d)) * doc_vectors(i, d);
                        aa += static_cast<double>(st(i, d)) * st(i, d);
                        bb += static_cast<double>(doc_vectors(i, d)) * doc_vectors(i, d);
                    }
                    worst = std::min(worst, ab / std::sqrt(aa * bb));
                }
                std::printf("kite vs sentence-transformers document vectors: lowest cosine %.6f\n", worst);
            }
            return 0;
        } catch (const kite::error& e) {
            std::fprintf(stderr, "kite-08-semantic-search: %s\n", e.what());
            return 1;
        }
    });
}
