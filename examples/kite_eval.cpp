// kite-eval: evaluate lexical, dense and hybrid retrieval on a data folder, with trec_eval's
// metric definitions.
//
//   kite-eval --data DIR [--format beir|klue-sts] [--split test]
//             --retriever bm25|tfidf|dense|hybrid [--lexical bm25|tfidf]
//             [--analyzer english|words|cjk] [--variant lucene|robertson|atire|bm25l|bm25plus]
//             [--k1 X] [--b X] [--delta X]
//             [--fusion rrf|weighted-rrf|minmax|zscore|combsum|combmnz] [--rrf-k N]
//             [--weights W1,W2] [--depth N] [--metric cosine|ip|l2]
//             [--corpus-emb F.npy --query-emb F.npy] [--threads N] [--json] [--run FILE]
//             [--dense minilm [--model DIR] [--quant f32|int8|w8a8|int4|gptq|awq] [--cache-dir DIR]
//              [--calibration-split train]] [--rerank DIR [--rerank-depth 30]]
//
// Dense retrieval reads precomputed embeddings: row i of --corpus-emb embeds document i (corpus
// order), row i of --query-emb embeds the i-th evaluated query (queries.jsonl order, judged
// queries of the split only; for KLUE STS the sentence1 of each paraphrase pair).
// With --dense minilm, kite's own encoder (kite/model/sentence_encoder.hpp, all-MiniLM-L6-v2 from
// --model, default models/all-MiniLM-L6-v2: tools/fetch_minilm.py) embeds the corpus in batches
// and each query at search time (the query's encoding is inside its measured latency). The corpus
// embeddings are cached as .npy in --cache-dir (default .cache/emb), named by --quant and a
// hash of the texts, the model files' contents and the settings, so a second run skips
// encoding; an unreadable cache file is encoded again. --quant quantizes the
// encoder's linear layers: int8 (absmax<8>), w8a8 (int8 weights and per-token int8
// activations, kite::quant::w8a8_packed), int4 (RTN zero_point<4, 128>), gptq (gptq<4, 128>),
// awq (awq<4, 128>); GPTQ and AWQ calibrate on the queries of --calibration-split (BEIR data,
// default train; never the evaluated split).
// hybrid = the lexical retriever (bm25 by default) + dense, fused.
// --rerank DIR rescores the top --rerank-depth results of every query with the cross-encoder in
// DIR (kite-train cross; kite/model/cross_encoder.hpp) and prints the metrics before and after
// and the reranking time per query (each query's pairs in one batch on one thread, queries in
// parallel); the results below that depth keep their order after the reranked ones.
#include <kite/core/checksum.hpp>
#include <kite/core/io.hpp>
#include <kite/model/cross_encoder.hpp>
#include <kite/model/sentence_encoder.hpp>
#include <kite/retrieval/bm25.hpp>
#include <kite/retrieval/datasets.hpp>
#include <kite/retrieval/dense.hpp>
#include <kite/retrieval/eval.hpp>
#include <kite/retrieval/flat_index.hpp>
#include <kite/retrieval/fusion.hpp>
#include <kite/retrieval/pipeline.hpp>
#include <kite/retrieval/tfidf.hpp>
#include <kite/retrieval/vector_io.hpp>
#include <kite/text.hpp>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <unistd.h>
#include <vector>

#include "cli.hpp"

namespace fs = std::filesystem;
namespace kr = kite::retrieval;

namespace {

struct options {
    fs::path data;
    std::string format = "beir", split = "test", retriever, lexical = "bm25", analyzer, variant = "lucene";
    std::string fusion = "rrf", metric = "cosine";
    double k1 = 1.2, b = 0.75, delta = 0.5, rrf_k = 60;
    std::vector<double> weights;
    std::size_t depth = 100;
    fs::path corpus_emb, query_emb, run_file;
    int threads = 0;
    bool json = false;
    std::string dense_model, quant = "f32", calibration_split = "train";
    fs::path model_dir = "models/all-MiniLM-L6-v2", cache_dir = ".cache/emb";
    fs::path rerank;
    std::size_t rerank_depth = 30;
};

[[noreturn]] void usage(const std::string& why) { throw kite::cli::usage_error(why); }

/// Declares kite-eval's options on `cli`; the returned function reads them, once parsed.
std::function<options()> declare(kite::cli::parser& cli) {
    auto& data = cli.option<fs::path>("--data", "DIR", "BEIR folder (corpus.jsonl, queries.jsonl, qrels/) or KLUE STS folder").required();
    auto& format = cli.option<std::string>("--format", "F", "data layout", "beir").choices({"beir", "klue-sts"});
    auto& split = cli.option<std::string>("--split", "S", "qrels split to evaluate (BEIR; KLUE STS: dev, dev-train, dev-test)",
                                          "test");
    auto& retriever = cli.option<std::string>("--retriever", "R", "what to evaluate").choices({"bm25", "tfidf", "dense", "hybrid"}).required();
    auto& lexical = cli.option<std::string>("--lexical", "L", "the lexical retriever of hybrid", "bm25").choices({"bm25", "tfidf"});
    auto& analyzer = cli.option<std::string>("--analyzer", "A", "text analyzer (default: english, cjk for KLUE)").choices({"english", "words", "cjk"});
    auto& variant = cli.option<std::string>("--variant", "V", "BM25 variant", "lucene").choices({"lucene", "robertson", "atire", "bm25l", "bm25plus"});
    auto& k1 = cli.option<double>("--k1", "X", "BM25 k1", 1.2).range(0.0, 100.0);
    auto& b = cli.option<double>("--b", "X", "BM25 b", 0.75).range(0.0, 1.0);
    auto& delta = cli.option<double>("--delta", "X", "BM25L / BM25+ delta", 0.5).range(0.0, 100.0);
    auto& fusion = cli.option<std::string>("--fusion", "F", "how hybrid fuses", "rrf").choices({"rrf", "weighted-rrf", "minmax", "zscore", "combsum", "combmnz"});
    auto& rrf_k = cli.option<double>("--rrf-k", "N", "RRF constant k", 60.0).range(0.0, 1e6);
    auto& weights = cli.option<std::string>("--weights", "W1,W2", "fusion weights (lexical, dense)");
    auto& depth = cli.option<std::size_t>("--depth", "N", "documents each retriever returns", 100).range(1, 1000000);
    auto& metric = cli.option<std::string>("--metric", "M", "dense similarity", "cosine").choices({"cosine", "ip", "l2"});
    auto& corpus_emb = cli.option<fs::path>("--corpus-emb", "F.npy", "precomputed document embeddings");
    auto& query_emb = cli.option<fs::path>("--query-emb", "F.npy", "precomputed query embeddings");
    auto& threads = cli.option<int>("--threads", "N", "threads (0: every core)", 0).range(0, 4096);
    const bool& json = cli.flag("--json", "print one JSON object");
    auto& run_file = cli.option<fs::path>("--run", "FILE", "write a TREC run file");
    auto& dense = cli.option<std::string>("--dense", "minilm", "embed with kite's own encoder").choices({"minilm"});
    auto& model = cli.option<fs::path>("--model", "DIR", "the encoder's folder", fs::path("models/all-MiniLM-L6-v2"));
    auto& quant = cli.option<std::string>("--quant", "Q", "encoder weights", "f32").choices({"f32", "int8", "w8a8", "int4", "gptq", "awq"});
    auto& cache_dir = cli.option<fs::path>("--cache-dir", "DIR", "corpus embedding cache", fs::path(".cache/emb"));
    auto& calibration_split = cli.option<std::string>("--calibration-split", "S", "queries that calibrate gptq / awq", "train");
    auto& rerank = cli.option<fs::path>("--rerank", "DIR", "rerank with this cross-encoder (kite-train cross)");
    auto& rerank_depth = cli.option<std::size_t>("--rerank-depth", "N", "results per query the cross-encoder rescores", 30)
                             .range(1, 100000);
    return [&] {
        options o;
        o.data = *data, o.format = *format, o.split = *split, o.retriever = *retriever, o.lexical = *lexical;
        o.analyzer = *analyzer, o.variant = *variant, o.k1 = *k1, o.b = *b, o.delta = *delta, o.fusion = *fusion;
        o.rrf_k = *rrf_k, o.depth = *depth, o.metric = *metric, o.corpus_emb = *corpus_emb, o.query_emb = *query_emb;
        o.threads = *threads, o.json = json, o.run_file = *run_file, o.dense_model = *dense, o.model_dir = *model;
        o.quant = *quant, o.cache_dir = *cache_dir, o.calibration_split = *calibration_split;
        o.rerank = *rerank, o.rerank_depth = *rerank_depth;
        if (rerank_depth.given() && o.rerank.empty()) usage("--rerank-depth needs --rerank DIR");
        if (!o.rerank.empty() && !fs::is_regular_file(o.rerank / "config.json"))
            throw kite::not_found_error("--rerank: no config.json in " + o.rerank.string() +
                                        "; expected a cross-encoder folder (kite-train cross --out DIR writes DIR/epoch-N)");
        for (std::size_t p = 0; weights.given() && p <= weights->size();) {
            const std::size_t c = std::min(weights->find(',', p), weights->size());
            o.weights.push_back(kite::cli::detail::parse_value<double>("--weights", std::string_view(*weights).substr(p, c - p)));
            if (o.weights.back() < 0) usage("--weights: expected weights >= 0, got '" + *weights + "'");
            p = c + 1;
        }
        if (o.analyzer.empty()) o.analyzer = o.format == "klue-sts" ? "cjk" : "english";
        if (o.format == "klue-sts" && split.given() && o.split != "dev" && o.split != "dev-train" && o.split != "dev-test")
            usage("--split: KLUE STS has dev, dev-train and dev-test (alternate pairs labelled >= 4), got '" + o.split + "'");
        if (o.format == "klue-sts" && !split.given()) o.split = "dev";
        const bool dense_needed = o.retriever == "dense" || o.retriever == "hybrid";
        if (dense_needed && o.dense_model.empty() && (o.corpus_emb.empty() || o.query_emb.empty()))
            usage("--retriever " + o.retriever + " needs --corpus-emb and --query-emb, or --dense minilm");
        if ((o.quant == "gptq" || o.quant == "awq") && o.calibration_split == o.split)
            usage("--calibration-split must differ from the evaluated --split (" + o.split + ")");
        if (o.dense_model == "minilm" && dense_needed && !fs::exists(o.model_dir / "model.safetensors"))
            throw kite::not_found_error("--dense minilm: no all-MiniLM-L6-v2 in " + o.model_dir.string() +
                                        " (model.safetensors missing); fetch it with: python3 tools/fetch_minilm.py");
        return o;
    };
}

/// A progress bar on stderr while indexing (plain lines when stderr is not a terminal).
class progress {
public:
    progress(std::string what, std::size_t total) : what_(std::move(what)), total_(total), tty_(isatty(2)) {}
    void update(std::size_t done) {
        const int pct = total_ ? static_cast<int>(100 * done / total_) : 100;
        if (pct == last_) return;
        last_ = pct;
        if (tty_) {
            const int bar = pct * 30 / 100;
            std::fprintf(stderr, "\r%-18s [%.*s%*s] %3d%% (%zu/%zu)", what_.c_str(), bar,
                         "==============================", 30 - bar, "", pct, done, total_);
            if (done == total_) std::fprintf(stderr, "\n");
        } else if (pct % 25 == 0) {
            std::fprintf(stderr, "%s: %d%% (%zu/%zu)\n", what_.c_str(), pct, done, total_);
        }
    }

private:
    std::string what_;
    std::size_t total_;
    bool tty_;
    int last_ = -1;
};

double seconds_since(std::chrono::steady_clock::time_point t0) {
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

/// Builds one lexical retriever; returns it shared so the pipeline can hold a reference.
template <class Index, class Docs>
std::shared_ptr<const Index> build_indexed(Index idx, const Docs& docs, const char* what) {
    auto index = std::make_shared<Index>(std::move(idx));
    progress bar(what, docs.size());
    const std::size_t chunk = std::max<std::size_t>(docs.size() / 10, 1);  // few bulk adds
    for (std::size_t i = 0; i < docs.size(); i += chunk) {
        const std::size_t e = std::min(docs.size(), i + chunk);
        index->add_all(std::span<const std::string>(docs).subspan(i, e - i));
        bar.update(e);
    }
    return index;
}

template <class Analyzer>
kr::retriever_ref make_bm25_variant(const options& o, const std::vector<std::string>& docs) {
    const kite::bm25::params p{o.k1, o.b, o.delta};
    auto make = [&](auto variant) -> kr::retriever_ref {
        using V = decltype(variant);
        return kr::retriever_ref(std::shared_ptr<const kr::bm25_index<V, Analyzer>>(
            build_indexed(kr::bm25_index<V, Analyzer>(p), docs, "indexing (bm25)")));
    };
    if (o.variant == "lucene") return make(kite::bm25::lucene{});
    if (o.variant == "robertson") return make(kite::bm25::robertson{});
    if (o.variant == "atire") return make(kite::bm25::atire{});
    if (o.variant == "bm25l") return make(kite::bm25::bm25l{});
    if (o.variant == "bm25plus") return make(kite::bm25::bm25plus{});
    usage("--variant must be lucene, robertson, atire, bm25l or bm25plus, not '" + o.variant + "'");
}

template <class Analyzer>
kr::retriever_ref make_tfidf(const std::vector<std::string>& docs) {
    auto index = std::make_shared<kr::tfidf_index<Analyzer>>();
    progress bar("indexing (tfidf)", docs.size());
    index->fit(docs);
    bar.update(docs.size());
    return kr::retriever_ref(std::shared_ptr<const kr::tfidf_index<Analyzer>>(index));
}

template <class Analyzer>
kr::retriever_ref make_lexical(const options& o, const std::vector<std::string>& docs) {
    if (o.lexical == "bm25") return make_bm25_variant<Analyzer>(o, docs);
    if (o.lexical == "tfidf") return make_tfidf<Analyzer>(docs);
    usage("--lexical must be bm25 or tfidf, not '" + o.lexical + "'");
}

kr::retriever_ref lexical_retriever(const options& o, const std::vector<std::string>& docs) {
    if (o.analyzer == "english") return make_lexical<kite::text::english>(o, docs);
    if (o.analyzer == "words") return make_lexical<kite::text::unicode_words>(o, docs);
    if (o.analyzer == "cjk") return make_lexical<kite::text::cjk_bigram>(o, docs);
    usage("--analyzer must be english, words or cjk, not '" + o.analyzer + "'");
}

template <class Metric>
kr::retriever_ref make_dense(const options& o, const kr::data::dataset& ds) {
    auto corpus = kr::read_npy<float>(o.corpus_emb);
    auto queries = kr::read_npy<float>(o.query_emb);
    KITE_REQUIRE(corpus.rows() == ds.corpus.size(), kite::shape_error, o.corpus_emb.string(), " has ",
                 corpus.rows(), " rows; expected one per document (", ds.corpus.size(), ")");
    KITE_REQUIRE(queries.rows() == ds.queries.size(), kite::shape_error, o.query_emb.string(), " has ",
                 queries.rows(), " rows; expected one per evaluated query (", ds.queries.size(), ")");
    auto index = std::make_shared<kr::flat_index<Metric>>(corpus.cols());
    progress bar("indexing (dense)", corpus.rows());
    index->add(corpus.view());
    bar.update(corpus.rows());
    std::vector<std::string> texts;
    for (const auto& q : ds.queries) texts.push_back(q.text);
    using dense_t = kr::dense_retriever<Metric, kr::embedding_table>;
    // The retriever refers to the index: keep both alive together.
    struct holder {
        std::shared_ptr<kr::flat_index<Metric>> index;
        dense_t dense;
        kr::ranking search(std::string_view q, std::size_t k) const { return dense.search(q, k); }
    };
    auto h = std::make_shared<const holder>(holder{index, dense_t(*index, kr::embedding_table(texts, std::move(queries)))});
    return kr::retriever_ref(h);
}

// ---- --dense minilm: kite's own sentence encoder ------------------------------------------

/// FNV-1a over bytes, for cache file names.
std::uint64_t fnv1a(std::string_view s, std::uint64_t h = 1469598103934665603ull) {
    for (const unsigned char c : s) h = (h ^ c) * 1099511628211ull;
    return h;
}

/// The calibration texts of GPTQ / AWQ: the queries of another split of the same BEIR folder.
std::vector<std::string> calibration_texts(const options& o) {
    if (o.format != "beir") usage("--quant " + o.quant + " needs calibration queries: BEIR data (--format beir)");
    std::vector<std::string> texts;
    for (auto& q : kr::data::load_beir_queries(o.data, o.calibration_split)) texts.push_back(std::move(q.text));
    return texts;
}

/// A sentence encoder shared by the corpus pass and the query embedder.
template <class W>
struct minilm_embedder {
    std::shared_ptr<const kite::model::sentence_encoder<W>> enc;
    std::vector<float> operator()(std::string_view text) const { return (*enc)(text); }
};

/// Corpus embeddings [docs][dim]: from the cache when a file for the same texts, model and
/// settings exists, else encoded (with a progress bar) and cached.
template <class W>
kite::matrix<float> corpus_embeddings(const options& o, const kite::model::sentence_encoder<W>& enc,
                                      const std::vector<std::string>& docs) {
    std::uint64_t h = fnv1a(o.quant);
    for (const auto& d : docs) h = fnv1a(d, fnv1a("\x1f", h));
    h = fnv1a(std::to_string(enc.options().max_seq_length), h);
    for (const char* f : {"config.json", "model.safetensors", "tokenizer.json", "vocab.txt"})
        if (fs::exists(o.model_dir / f)) {  // contents, not sizes: another model of equal size
            const kite::io::mapped_file m(o.model_dir / f);
            h = fnv1a(std::to_string(kite::crc32c(m.bytes())), fnv1a(f, h));
        }
    if (o.quant == "gptq" || o.quant == "awq") h = fnv1a(o.calibration_split, h);
    char name[96];
    std::snprintf(name, sizeof name, "minilm-%s-%zu-%016llx.npy", o.quant.c_str(), docs.size(),
                  static_cast<unsigned long long>(h));
    const fs::path cached = o.cache_dir / name;
    if (fs::exists(cached)) {
        try {
            auto m = kr::read_npy<float>(cached);
            if (m.rows() == docs.size() && m.cols() == enc.dim()) return m;
            std::fprintf(stderr, "kite-eval: %s holds %zu x %zu embeddings, expected %zu x %zu; encoding again\n",
                         cached.string().c_str(), static_cast<std::size_t>(m.rows()),
                         static_cast<std::size_t>(m.cols()), docs.size(), static_cast<std::size_t>(enc.dim()));
        } catch (const kite::error& e) {  // truncated or corrupt cache file: rebuild it
            std::fprintf(stderr, "kite-eval: ignoring cached embeddings: %s; encoding again\n", e.what());
        }
    }
    kite::matrix<float> emb(docs.size(), enc.dim(), kite::uninitialized);
    progress bar("encoding (minilm)", docs.size());
    const std::size_t chunk = 256;  // texts per progress step (several batches)
    for (std::size_t i = 0; i < docs.size(); i += chunk) {
        const std::size_t e = std::min(docs.size(), i + chunk);
        enc.encode_into(std::span<const std::string>(docs).subspan(i, e - i), emb.view().rows_slice(i, e - i));
        bar.update(e);
    }
    fs::create_directories(o.cache_dir);
    kr::write_npy(cached, emb);
    return emb;
}

template <class Metric, class W>
kr::retriever_ref make_minilm(const options& o, const std::vector<std::string>& docs, W method) {
    const std::vector<std::string> calib =
        kite::quant::calibrated_method<W> ? calibration_texts(o) : std::vector<std::string>{};
    auto enc = std::make_shared<const kite::model::sentence_encoder<W>>(
        kite::model::sentence_encoder<W>::load(o.model_dir, {.threads = o.threads}, method, calib));
    const kite::matrix<float> corpus = corpus_embeddings(o, *enc, docs);
    auto index = std::make_shared<kr::flat_index<Metric>>(corpus.cols());
    index->add(corpus.view());
    using dense_t = kr::dense_retriever<Metric, minilm_embedder<W>>;
    struct holder {
        std::shared_ptr<kr::flat_index<Metric>> index;
        dense_t dense;
        kr::ranking search(std::string_view q, std::size_t k) const { return dense.search(q, k); }
    };
    auto h = std::make_shared<const holder>(holder{index, dense_t(*index, minilm_embedder<W>{enc})});
    return kr::retriever_ref(h);
}

template <class Metric>
kr::retriever_ref make_minilm(const options& o, const std::vector<std::string>& docs) {
    namespace q = kite::quant;
    if (o.quant == "f32") return make_minilm<Metric>(o, docs, kite::quant::f32_packed{});
    if (o.quant == "int8") return make_minilm<Metric>(o, docs, q::absmax<8>{});
    if (o.quant == "w8a8") return make_minilm<Metric>(o, docs, kite::quant::w8a8_packed{});
    if (o.quant == "int4") return make_minilm<Metric>(o, docs, q::zero_point<4, 128>{});
    if (o.quant == "gptq") return make_minilm<Metric>(o, docs, q::gptq<4, 128>{});
    return make_minilm<Metric>(o, docs, q::awq<4, 128>{});
}

kr::retriever_ref dense_retriever(const options& o, const kr::data::dataset& ds, const std::vector<std::string>& docs) {
    if (!o.dense_model.empty()) {
        // The encoder's embeddings have unit length, so cosine, inner product and L2 rank alike;
        // one metric keeps the five encoder instantiations from tripling.
        if (o.metric != "cosine" && o.metric != "ip" && o.metric != "l2")
            usage("--metric must be cosine, ip or l2, not '" + o.metric + "'");
        return make_minilm<kite::metric::cosine>(o, docs);
    }
    if (o.metric == "cosine") return make_dense<kite::metric::cosine>(o, ds);
    if (o.metric == "ip") return make_dense<kite::metric::inner_product>(o, ds);
    if (o.metric == "l2") return make_dense<kite::metric::l2>(o, ds);
    usage("--metric must be cosine, ip or l2, not '" + o.metric + "'");
}

kr::any_fusion fusion_of(const options& o) {
    using N = kite::fusion::normalization;
    if (o.fusion == "rrf") {
        kite::fusion::rrf<60> f;
        f.k = o.rrf_k;
        return f;
    }
    if (o.fusion == "weighted-rrf") return kite::fusion::weighted_rrf{o.rrf_k, o.weights};
    if (o.fusion == "minmax") return kite::fusion::convex<N::minmax>{o.weights};
    if (o.fusion == "zscore") return kite::fusion::convex<N::zscore>{o.weights};
    if (o.fusion == "combsum") return kite::fusion::comb_sum<N::minmax>{};
    if (o.fusion == "combmnz") return kite::fusion::comb_mnz<N::minmax>{};
    usage("--fusion must be rrf, weighted-rrf, minmax, zscore, combsum or combmnz, not '" + o.fusion + "'");
}

int run(const options& o) {
    const auto t_load = std::chrono::steady_clock::now();
    const kr::data::dataset ds = o.format == "beir" ? kr::data::load_beir(o.data, o.split)
                                                    : kr::data::load_klue_sts(o.data, o.split);
    const double load_s = seconds_since(t_load);
    std::vector<std::string> docs;
    docs.reserve(ds.corpus.size());
    for (const auto& d : ds.corpus) docs.push_back(d.full_text());

    const auto t_index = std::chrono::steady_clock::now();
    kr::dynamic_pipeline pipe;
    if (o.retriever == "bm25" || o.retriever == "tfidf" || o.retriever == "hybrid") {
        options lex = o;
        if (o.retriever != "hybrid") lex.lexical = o.retriever;
        pipe.add(lexical_retriever(lex, docs));
    }
    if (o.retriever == "dense" || o.retriever == "hybrid") pipe.add(dense_retriever(o, ds, docs));
    const double index_s = seconds_since(t_index);
    pipe.fusion() = fusion_of(o);
    pipe.depths().retrieve = o.depth;
    pipe.depths().fuse = o.depth;

    // Search: queries spread over threads, per-query latency measured where it runs.
    std::vector<kr::ranking> runs(ds.queries.size());
    std::vector<double> latency_ms(ds.queries.size());
    const auto t_search = std::chrono::steady_clock::now();
    kite::parallel_for_dynamic(
        ds.queries.size(), 1,
        [&](std::size_t q) {
            const auto t0 = std::chrono::steady_clock::now();
            runs[q] = pipe.search(ds.queries[q].text, o.depth, 1);
            latency_ms[q] = seconds_since(t0) * 1e3;
        },
        o.threads);
    const double search_s = seconds_since(t_search);
    const double qps = static_cast<double>(ds.queries.size()) / search_s;

    const auto metrics = kr::eval::evaluate(runs, ds.qrels);
    const auto lat = kr::eval::summarize_latency(latency_ms);

    // --rerank: the cross-encoder rescores each query's top rerank_depth.
    std::map<std::string, double> reranked;
    kr::eval::latency_summary rerank_lat{};
    double rerank_s = 0;
    if (!o.rerank.empty()) {
        const auto ce = kite::model::cross_encoder<>::load(o.rerank, {.threads = 1});
        std::vector<double> rerank_ms(ds.queries.size());
        const auto t_rerank = std::chrono::steady_clock::now();
        kite::parallel_for_dynamic(
            ds.queries.size(), 1,
            [&](std::size_t q) {
                const auto t0 = std::chrono::steady_clock::now();
                kr::ranking& r = runs[q];
                const std::size_t n = std::min(o.rerank_depth, r.size());
                std::vector<std::string_view> texts(n);
                for (std::size_t i = 0; i < n; ++i) texts[i] = docs[static_cast<std::size_t>(r[i].id)];
                const std::vector<float> s = ce.score(ds.queries[q].text, std::span<const std::string_view>(texts));
                std::vector<std::size_t> order(n);
                for (std::size_t i = 0; i < n; ++i) order[i] = i;
                std::stable_sort(order.begin(), order.end(), [&](std::size_t a, std::size_t b) { return s[a] > s[b]; });
                kr::ranking out;
                out.reserve(r.size());
                for (const std::size_t i : order) out.push_back({s[i], r[i].id});
                // Below the reranked depth: the first stage's order, scored below every logit.
                const float floor = n > 0 ? s[order.back()] : 0.0f;
                for (std::size_t i = n; i < r.size(); ++i) out.push_back({floor - static_cast<float>(i - n + 1), r[i].id});
                r = std::move(out);
                rerank_ms[q] = seconds_since(t0) * 1e3;
            },
            o.threads);
        rerank_s = seconds_since(t_rerank);
        reranked = kr::eval::evaluate(runs, ds.qrels);
        rerank_lat = kr::eval::summarize_latency(rerank_ms);
    }
    if (!o.run_file.empty()) {
        const auto qids = ds.query_ids();
        const auto dids = ds.doc_ids();
        kr::eval::write_trec_run(o.run_file, runs, qids, dids, "kite-" + o.retriever);
    }

    const int threads = kite::resolve_threads(o.threads, ds.queries.size());
    if (o.json) {
        nlohmann::json j;
        for (const auto& name : kr::eval::default_metrics()) j[name] = metrics.at(name);
        j["qps"] = qps;
        j["queries"] = static_cast<std::size_t>(metrics.at("queries"));
        j["docs"] = ds.corpus.size();
        j["latency_ms_p50"] = lat.p50;
        j["latency_ms_p95"] = lat.p95;
        j["index_seconds"] = index_s;
        j["threads"] = threads;
        j["config"] = {{"data", ds.name},       {"split", o.split},   {"retriever", o.retriever},
                       {"analyzer", o.analyzer}, {"variant", o.variant}, {"k1", o.k1},
                       {"b", o.b},               {"fusion", o.fusion}, {"rrf_k", o.rrf_k},
                       {"depth", o.depth}};
        if (!o.dense_model.empty()) j["config"]["dense"] = {{"model", o.dense_model}, {"quant", o.quant}};
        if (!o.rerank.empty()) {
            nlohmann::json r;
            for (const auto& name : kr::eval::default_metrics()) r[name] = reranked.at(name);
            r["depth"] = o.rerank_depth;
            r["model"] = o.rerank.string();
            r["seconds"] = rerank_s;
            r["ms_per_query_p50"] = rerank_lat.p50;
            r["ms_per_query_p95"] = rerank_lat.p95;
            j["reranked"] = r;
        }
        std::printf("%s\n", j.dump().c_str());
        return 0;
    }
    std::printf("kite-eval: %s (%s split), %zu documents, %zu queries evaluated\n", ds.name.c_str(),
                o.format == "beir" ? o.split.c_str() : "dev", ds.corpus.size(),
                static_cast<std::size_t>(metrics.at("queries")));
    std::printf("retriever %s", o.retriever.c_str());
    if (o.retriever != "dense") std::printf(", analyzer %s", o.analyzer.c_str());
    if (o.retriever == "bm25" || (o.retriever == "hybrid" && o.lexical == "bm25"))
        std::printf(", %s k1 %.2f b %.2f", o.variant.c_str(), o.k1, o.b);
    if (o.retriever == "hybrid") std::printf(", fusion %s (k %.0f)", o.fusion.c_str(), o.rrf_k);
    if (!o.dense_model.empty() && o.retriever != "bm25" && o.retriever != "tfidf")
        std::printf(", dense %s (%s, kite encoder)", o.dense_model.c_str(), o.quant.c_str());
    std::printf(", depth %zu, %d thread(s)\n\n", o.depth, threads);
    if (o.rerank.empty()) {
        std::printf("  %-12s %8s\n", "metric", "value");
        for (const auto& name : kr::eval::default_metrics()) std::printf("  %-12s %8.4f\n", name.c_str(), metrics.at(name));
    } else {
        std::printf("  %-12s %8s %9s\n", "metric", "first", "reranked");
        for (const auto& name : kr::eval::default_metrics())
            std::printf("  %-12s %8.4f %9.4f\n", name.c_str(), metrics.at(name), reranked.at(name));
    }
    std::printf("\n  load %.2f s, index %.2f s, search %.3f s: %.0f queries/s, latency p50 %.3f ms, p95 %.3f ms\n",
                load_s, index_s, search_s, qps, lat.p50, lat.p95);
    if (!o.rerank.empty())
        std::printf("  rerank (top %zu, %s): %.1f s, per query p50 %.0f ms, p95 %.0f ms on one thread each\n", o.rerank_depth,
                    o.rerank.string().c_str(), rerank_s, rerank_lat.p50, rerank_lat.p95);
    if (!o.run_file.empty()) std::printf("  run written to %s\n", o.run_file.string().c_str());
    return 0;
}

}  // namespace

int main(int argc, char** argv) {
    kite::cli::parser cli("kite-eval", "Evaluate lexical, dense and hybrid retrieval with trec_eval's metric definitions.");
    const auto options_of = declare(cli);
    return kite::cli::run(cli, argc, argv, [&] { return run(options_of()); });
}
