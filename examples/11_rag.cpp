// kite-11-rag: retrieval-augmented generation in a few typed lines — hybrid retrieval (BM25 +
// MiniLM, RRF) over the notes corpus the repository ships, SmolLM2-135M-Instruct on the serving
// engine, an exact and a semantic cache, PII masking and an exchange log, all in one SQLite file.
//
//   kite-11-rag [DB_FILE]          (default kite-11-rag.sqlite; models from tools/fetch_*.py)
//
// Ask it twice: the second run answers from the cache. `kite-log --db DB_FILE` summarises the log.
#include <cstdio>
#include <string>
#include <vector>

#include "kite/app/rag.hpp"
#include "kite/model/formats/gguf_model.hpp"
#include "kite/model/formats/gguf_tokenizer.hpp"
#include "kite/model/sentence_encoder.hpp"
#include "kite/retrieval/bm25.hpp"
#include "kite/retrieval/dense.hpp"
#include "kite/retrieval/pipeline.hpp"
#include "kite/serve.hpp"
#include "kite/text.hpp"

namespace ka = kite::app;
namespace kr = kite::retrieval;
using encoder_t = kite::model::sentence_encoder<>;
using bm25_t = kr::bm25_index<kite::bm25::lucene, kite::text::english>;
using dense_t = kr::dense_retriever<kite::metric::cosine, const encoder_t&>;
using hybrid_t = kr::pipeline<const bm25_t&, const dense_t&, kite::fusion::rrf<60>>;

int main(int argc, char** argv) try {
    const std::string db = argc > 1 ? argv[1] : "kite-11-rag.sqlite";
    // Retrieval: BM25 and MiniLM vectors over the same documents, fused by RRF.
    const auto corpus = kr::data::load_beir("examples/data/notes").corpus;
    std::vector<std::string> texts;
    for (const auto& d : corpus) texts.push_back(d.full_text());
    bm25_t bm25;
    bm25.add_all(texts);
    const auto enc = encoder_t::load("models/all-MiniLM-L6-v2");
    kr::flat_index<kite::metric::cosine> vectors(enc.dim());
    vectors.add(enc.encode(texts).view());
    const dense_t dense(vectors, enc);
    const hybrid_t hybrid(bm25, dense);

    // Generation: SmolLM2 on the engine (continuous batching, prefix cache).
    const kite::model::gguf_file file("models/SmolLM2-135M-Instruct.Q4_1.gguf");
    const kite::model::gguf_tokenizer tok(file);
    return kite::model::with_gguf_decoder<kite::kv::paged<16, kite::fp16>, kite::attn::invariant>(file, false, [&](auto& m) {
        kite::serve::engine<std::remove_cvref_t<decltype(m)>, kite::serve::continuous_batching> eng(m);
        eng.start();
        ka::engine_generator gen(eng, tok, "SmolLM2-135M-Instruct.Q4_1");

        // Caches, checks and the log, in one SQLite file.
        ka::exact_cache exact(db);
        ka::semantic_cache<const encoder_t&> semantic(db, enc);
        ka::tiered_cache caches(exact, semantic);
        ka::validator<ka::pii_mask> checks(ka::pii_mask{});
        ka::exchange_log log(db);
        ka::rag<const hybrid_t&, decltype(gen)&, decltype(caches)&, decltype(checks)&, ka::exchange_log&> app(
            hybrid, gen, corpus, caches, checks, log, {.retrieve_k = 4, .generation = {.max_tokens = 64}});

        for (const char* q : {"Why does the KV cache use so much memory?", "What is reciprocal rank fusion?",
                              "Why does the KV cache use so much memory?"}) {
            std::printf("\nQ: %s\nA: ", q);
            const ka::rag_answer a = app.ask(q, [](std::string_view piece) { std::printf("%.*s", int(piece.size()), piece.data()); });
            std::printf("\n   cache: %s, passages:", ka::to_string(a.cache));
            for (const auto& id : a.context_ids) std::printf(" %s", id.c_str());
            std::printf(", cited: %zu, ttft %.0f ms, total %.1f ms\n", a.citations.size(), a.timings.ttft, a.timings.total);
        }
        eng.shutdown();
        return 0;
    });
} catch (const std::exception& e) {
    std::fprintf(stderr, "kite-11-rag: error: %s\n", e.what());
    return 1;
}
