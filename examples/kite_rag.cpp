// kite-rag: questions in, answers with citations out, over a BEIR-format corpus (SciFact by
// default, from $KITE_DATA): hybrid retrieval (BM25 + all-MiniLM-L6-v2, fused by RRF),
// SmolLM2-135M-Instruct on kite's serving engine, an exact and a semantic answer cache and the
// exchange log in one SQLite file, validation on every stage (PII masked in questions and
// answers, over-long questions refused, passages checked).
//
//   kite-rag --question "Do statins reduce cardiovascular mortality?"
//   kite-rag --queries questions.txt --json          # one JSON object per question on stdout
//   kite-rag --split test --limit 100                # the corpus's own test queries, with the
//                                                    # retrieval metrics of the contexts given
//   kite-rag                                          # interactive: one question per line
//
// The corpus embeddings are computed once and kept beside the database (FILE.sqlite.emb-*.npy).
// A batch ends with a summary on stderr: cache outcomes, per-stage latency p50 / p95 and, with
// --split, hit rate, recall and MRR of the passages the generator received.
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "kite/app/rag.hpp"
#include "kite/core/parallel.hpp"
#include "kite/model/formats/gguf_model.hpp"
#include "kite/model/formats/gguf_tokenizer.hpp"
#include "kite/model/sentence_encoder.hpp"
#include "kite/retrieval/bm25.hpp"
#include "kite/retrieval/datasets.hpp"
#include "kite/retrieval/dense.hpp"
#include "kite/retrieval/pipeline.hpp"
#include "kite/retrieval/vector_io.hpp"
#include "kite/serve.hpp"
#include "kite/text.hpp"

#include "cli.hpp"

namespace {

namespace ka = kite::app;
namespace km = kite::model;
namespace kr = kite::retrieval;
namespace ks = kite::serve;
namespace fs = std::filesystem;

using encoder_t = km::sentence_encoder<>;
using bm25_t = kr::bm25_index<kite::bm25::lucene, kite::text::english>;
using dense_t = kr::dense_retriever<kite::metric::cosine, const encoder_t&>;
using hybrid_t = kr::pipeline<const bm25_t&, const dense_t&, kite::fusion::rrf<60>>;
using semantic_t = ka::semantic_cache<const encoder_t&>;
using tiered_t = ka::tiered_cache<ka::exact_cache&, semantic_t&>;
using checks_t = ka::validator<ka::length_limit, ka::pii_mask, ka::block_list>;

// The caches, or none (--no-cache).
struct optional_cache {
    tiered_t* caches = nullptr;
    std::optional<ka::cache_hit> lookup(std::string_view q, std::string_view scope) {
        return caches ? caches->lookup(q, scope) : std::nullopt;
    }
    void store(std::string_view q, std::string_view scope, std::string_view a, const nlohmann::json& m = {}) {
        if (caches) caches->store(q, scope, a, m);
    }
};

struct question {
    std::string id, text;
    std::vector<kr::eval::judgment> qrels;
};

// FNV-1a over the corpus ids and texts: names the embedding file of this corpus.
std::string corpus_fingerprint(const std::vector<kr::data::document>& docs, const fs::path& encoder) {
    std::uint64_t h = 0xcbf29ce484222325ull;
    auto mix = [&](std::string_view s) {
        for (unsigned char c : s) h = (h ^ c) * 0x100000001b3ull;
        h = (h ^ 0xff) * 0x100000001b3ull;
    };
    mix(fs::absolute(encoder).filename().string());
    for (const auto& d : docs) {
        mix(d.id);
        mix(d.full_text());
    }
    char buf[17];
    std::snprintf(buf, sizeof buf, "%016llx", static_cast<unsigned long long>(h));
    return buf;
}

kite::matrix<float> corpus_embeddings(const encoder_t& enc, const std::vector<kr::data::document>& docs,
                                      const fs::path& db, const fs::path& encoder_dir) {
    const fs::path file = db.string() + ".emb-" + corpus_fingerprint(docs, encoder_dir) + ".npy";
    if (fs::exists(file)) {
        auto m = kr::read_npy<float>(file);
        if (m.rows() == docs.size() && m.cols() == enc.dim()) return m;
    }
    std::fprintf(stderr, "kite-rag: embedding %zu documents (once; kept in %s)\n", docs.size(), file.string().c_str());
    std::vector<std::string> texts;
    for (const auto& d : docs) texts.push_back(d.full_text());
    auto m = enc.encode(texts);
    kr::write_npy<float>(file, m.view());
    return m;
}

double percentile(std::vector<double> v, double p) {
    if (v.empty()) return 0;
    std::sort(v.begin(), v.end());
    const auto rank = static_cast<std::size_t>(std::ceil(p / 100.0 * static_cast<double>(v.size())));
    return v[std::min(v.size() - 1, rank == 0 ? 0 : rank - 1)];
}

}  // namespace

int main(int argc, char** argv) {
    kite::cli::parser cli("kite-rag", "retrieval-augmented answers with citations over a BEIR corpus");
    const char* env = std::getenv("KITE_DATA");
    auto& data = cli.option<std::string>("--data", "DIR", "BEIR folder (corpus.jsonl, queries.jsonl, qrels/)",
                                         env && *env ? (fs::path(env) / "scifact").string() : std::string("scifact"));
    auto& model = cli.option<std::string>("--model", "FILE", "GGUF chat model", "models/SmolLM2-135M-Instruct.Q4_1.gguf");
    auto& encoder = cli.option<std::string>("--encoder", "DIR", "sentence-transformers model", "models/all-MiniLM-L6-v2");
    auto& db = cli.option<std::string>("--db", "FILE", "SQLite file for the caches and the log", "kite-rag.sqlite");
    auto& one = cli.option<std::string>("--question", "TEXT", "answer one question", "");
    auto& queries = cli.option<std::string>("--queries", "FILE", "questions: one per line, or BEIR queries.jsonl", "");
    auto& split = cli.option<std::string>("--split", "NAME", "the corpus's queries with qrels of this split", "");
    auto& limit = cli.option<std::size_t>("--limit", "N", "at most N questions (0: all)", 0);
    auto& no_cache = cli.flag("--no-cache", "neither read nor write the answer caches");
    auto& json = cli.flag("--json", "one JSON object per question on stdout");
    auto& k = cli.option<std::size_t>("--k", "N", "passages retrieved per question", 8).range(1, 100);
    auto& max_tokens = cli.option<std::size_t>("--max-tokens", "N", "new tokens per answer", 128).range(1, 4096);
    auto& budget = cli.option<std::size_t>("--prompt-tokens", "N", "token budget of the whole prompt", 1024).range(64, 8192);
    auto& threshold = cli.option<double>("--threshold", "COS", "semantic cache threshold (cosine)", 0.95).range(-1.0, 1.0);
    auto& threads = cli.option<int>("--threads", "N", "compute threads (0: all cores)", 0).range(0, 1024);
    auto& int8 = cli.flag("--int8-activations", "int8 activations in the model's linear layers (faster)");
    return kite::cli::run(cli, argc, argv, [&]() -> int {
        if (*threads > 0) kite::set_num_threads(*threads);
        const int modes = int(one.given()) + int(queries.given()) + int(split.given());
        if (modes > 1) throw kite::cli::usage_error("give at most one of --question, --queries and --split");
        if (!fs::exists(*model)) throw kite::io_error("--model: " + *model + " does not exist (python3 tools/fetch_smollm2.py)");
        if (!fs::exists(*encoder)) throw kite::io_error("--encoder: " + *encoder + " does not exist (python3 tools/fetch_minilm.py)");

        // The corpus, its two indexes, the hybrid pipeline.
        const kr::data::dataset ds = kr::data::load_beir(*data, split.given() ? *split : "test");
        bm25_t bm25;
        {
            std::vector<std::string> texts;
            for (const auto& d : ds.corpus) texts.push_back(d.full_text());
            bm25.add_all(texts);
        }
        const encoder_t enc = encoder_t::load(*encoder);
        kr::flat_index<kite::metric::cosine> vectors(enc.dim());
        vectors.add(corpus_embeddings(enc, ds.corpus, *db, *encoder).view());
        const dense_t dense(vectors, enc);
        hybrid_t hybrid(bm25, dense);
        hybrid.depths().retrieve = std::max<std::size_t>(20, *k);

        // The questions.
        std::vector<question> qs;
        if (one.given()) qs.push_back({"", *one, {}});
        if (split.given())
            for (std::size_t i = 0; i < ds.queries.size(); ++i) qs.push_back({ds.queries[i].id, ds.queries[i].text, ds.qrels[i]});
        if (queries.given()) {
            std::ifstream in(*queries);
            if (!in) throw kite::io_error("--queries: cannot open " + *queries);
            const bool jsonl = fs::path(*queries).extension() == ".jsonl";
            std::size_t n = 0;
            for (std::string line; std::getline(in, line);) {
                ++n;
                if (line.empty()) continue;
                if (!jsonl) {
                    qs.push_back({"", line, {}});
                    continue;
                }
                const auto j = nlohmann::json::parse(line, nullptr, false);
                if (j.is_discarded() || !j.is_object() || !j.contains("text") || !j["text"].is_string())
                    throw kite::format_error(*queries + ":" + std::to_string(n) + ": expected a JSON object with a \"text\" string");
                qs.push_back({j.value("_id", std::string()), j["text"].get<std::string>(), {}});
            }
        }
        if (*limit > 0 && qs.size() > *limit) qs.resize(*limit);
        const bool interactive = modes == 0;

        // The caches, the checks and the log, all in one SQLite file.
        ka::exact_cache exact(*db);
        semantic_t semantic(*db, enc, {{}, *threshold});
        tiered_t caches(exact, semantic);
        optional_cache cache{no_cache ? nullptr : &caches};
        ka::exchange_log log(*db);

        const km::gguf_file file(*model);
        const km::gguf_tokenizer tok(file);
        ka::length_options lo;
        lo.max_chars = 2000;
        lo.stages = static_cast<unsigned>(ka::stage::question);
        ka::block_list_options bo;  // nothing blocked by default; the rule is there to extend
        const checks_t checks(ka::length_limit(lo), ka::pii_mask{}, ka::block_list(std::vector<std::string>{}, bo));

        return km::with_gguf_decoder<kite::kv::paged<16, kite::fp16>, kite::attn::invariant>(file, int8, [&](auto& m) {
            using model_t = std::remove_cvref_t<decltype(m)>;
            ks::engine<model_t, ks::continuous_batching> eng(m, {.kv_tokens = 16384});
            eng.start();
            ka::engine_generator gen(eng, tok, fs::path(*model).stem().string());
            ka::rag_options ro;
            ro.retrieve_k = *k;
            ro.prompt.max_prompt_tokens = *budget;
            ro.generation.max_tokens = *max_tokens;
            ro.scope_tag = fs::absolute(*data).lexically_normal().string();
            ka::rag<const hybrid_t&, decltype(gen)&, optional_cache&, const checks_t&, ka::exchange_log&> app(
                hybrid, gen, ds.corpus, cache, checks, log, ro);

            std::map<std::string, std::vector<double>> lat;
            std::map<std::string, std::size_t> outcomes;
            double hit = 0, recall = 0, mrr = 0;
            std::size_t judged = 0;
            auto answer = [&](const question& q) {
                if (!json) std::printf("\nQ: %s\nA: ", q.text.c_str());
                std::fflush(stdout);
                const ka::rag_answer a = app.ask(q.text, [&](std::string_view piece) {
                    if (!json) std::fwrite(piece.data(), 1, piece.size(), stdout), std::fflush(stdout);
                });
                if (json) {
                    nlohmann::json j = ka::to_json(a);
                    if (!q.id.empty()) j["query_id"] = q.id;
                    std::printf("%s\n", j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace).c_str());
                } else {
                    std::string cites;
                    for (const auto& c : a.citations) cites += (cites.empty() ? "" : ", ") + c;
                    std::printf("\n   citations: %s | cache: %s | retrieval %.0f ms, prompt %.0f ms, ttft %.0f ms, "
                                "generation %.0f ms, total %.0f ms\n",
                                cites.empty() ? "(none)" : cites.c_str(), ka::to_string(a.cache), a.timings.retrieval,
                                a.timings.prompt, a.timings.ttft, a.timings.generation, a.timings.total);
                }
                std::fflush(stdout);
                ++outcomes[ka::to_string(a.cache)];
                lat["total"].push_back(a.timings.total);
                if (a.cache == ka::cache_outcome::miss && !a.refused) {
                    lat["retrieval"].push_back(a.timings.retrieval);
                    lat["prompt"].push_back(a.timings.prompt);
                    lat["ttft"].push_back(a.timings.ttft);
                    lat["generation"].push_back(a.timings.generation);
                    lat["miss total"].push_back(a.timings.total);
                } else if (a.cache != ka::cache_outcome::miss) {
                    lat["hit total"].push_back(a.timings.total);
                }
                if (!q.qrels.empty() && a.cache == ka::cache_outcome::miss) {
                    ++judged;
                    std::size_t rel = 0, found = 0;
                    double rr = 0;
                    for (const auto& j : q.qrels) rel += j.relevance > 0;
                    for (std::size_t r = 0; r < a.context_ids.size(); ++r)
                        for (const auto& j : q.qrels)
                            if (j.relevance > 0 && ds.corpus[static_cast<std::size_t>(j.doc)].id == a.context_ids[r]) {
                                ++found;
                                if (rr == 0) rr = 1.0 / static_cast<double>(r + 1);
                            }
                    hit += found > 0;
                    recall += rel ? static_cast<double>(found) / static_cast<double>(rel) : 0;
                    mrr += rr;
                }
            };
            if (interactive) {
                const bool tty = isatty(0);
                std::string line;
                while ((tty ? std::fprintf(stderr, "> ") : 0, std::getline(std::cin, line)))
                    if (!line.empty()) answer({"", line, {}});
            } else {
                for (const auto& q : qs) answer(q);
            }
            eng.shutdown();
            log.close();
            if (qs.size() > 1) {
                std::fprintf(stderr, "\nkite-rag: %zu questions;", qs.size());
                for (const auto& [o, n] : outcomes) std::fprintf(stderr, " %s %zu", o.c_str(), n);
                std::fprintf(stderr, "\n  latency ms (p50 / p95):");
                for (const auto& [s, v] : lat)
                    std::fprintf(stderr, "  %s %.0f / %.0f", s.c_str(), percentile(v, 50), percentile(v, 95));
                std::fprintf(stderr, "\n");
                if (judged)
                    std::fprintf(stderr, "  contexts given to the model (%zu judged questions): hit rate %.3f, recall %.3f, MRR %.3f\n",
                                 judged, hit / judged, recall / judged, mrr / judged);
            }
            return 0;
        });
    });
}
