#include <fstream>
#include <map>
#include <nlohmann/json.hpp>

#include "kite/retrieval/datasets.hpp"
#include "kite/retrieval/eval.hpp"
#include "kite_test.hpp"

namespace eval = kite::retrieval::eval;
namespace data = kite::retrieval::data;
using kite::retrieval::ranking;

TEST_CASE("metrics equal pytrec_eval (trec_eval definitions) to 1e-9", "[retrieval][eval][fixture]") {
    std::ifstream in(kite::test::fixture("retrieval/pipeline/trec_eval_metrics.json"));
    REQUIRE(in.good());
    const auto j = nlohmann::json::parse(in);
    std::map<std::string, kite::id_t> doc;  // "d17" -> 17
    auto doc_id = [](const std::string& s) { return static_cast<kite::id_t>(std::stol(s.substr(1))); };
    std::vector<ranking> runs;
    std::vector<std::vector<eval::judgment>> qrels;
    std::map<std::string, double> expected_mean;
    std::size_t n = 0;
    for (const auto& [qid, exp] : j["expected"].items()) {
        ranking run;
        for (const auto& e : j["run"][qid]) run.push_back({e[1].get<float>(), doc_id(e[0].get<std::string>())});
        std::vector<eval::judgment> judged;
        for (const auto& [d, rel] : j["qrels"][qid].items()) judged.push_back({doc_id(d), rel.get<int>()});
        for (const auto& [name, value] : exp.items()) {
            INFO(qid << " " << name);
            CHECK(std::abs(eval::metric(name, run, judged) - value.get<double>()) <= 1e-9);
            expected_mean[name] += value.get<double>();
        }
        runs.push_back(std::move(run));
        qrels.push_back(std::move(judged));
        ++n;
    }
    REQUIRE(n == 60);
    const std::vector<std::string> names{"ndcg@10", "ndcg@3", "recall@100", "hit@1", "hit@10", "mrr@10", "map"};
    const auto means = eval::evaluate(runs, qrels, names);
    CHECK(means.at("queries") == 60);
    for (const auto& name : names) CHECK(std::abs(means.at(name) - expected_mean[name] / n) <= 1e-9);
}

TEST_CASE("metrics on hand-made cases", "[retrieval][eval]") {
    const ranking run{{0.9f, 4}, {0.8f, 7}, {0.7f, 1}, {0.6f, 2}};
    const std::vector<eval::judgment> one{{1, 1}};
    CHECK(eval::hit_at(run, one, 2) == 0.0);
    CHECK(eval::hit_at(run, one, 3) == 1.0);
    CHECK(eval::mrr_at(run, one, 10) == Approx(1.0 / 3));
    CHECK(eval::mrr_at(run, one, 2) == 0.0);
    CHECK(eval::recall_at(run, {{{1, 1}, {9, 1}}}, 10) == 0.5);
    CHECK(eval::ndcg_at(run, one, 10) == Approx(1.0 / std::log2(4.0)));
    CHECK(eval::average_precision(run, {{{4, 1}, {2, 1}}}) == Approx((1.0 + 2.0 / 4) / 2));
    CHECK(eval::ndcg_at({}, one, 10) == 0.0);  // empty ranking scores zero
    // A query without relevant judgments is not evaluated.
    const std::vector<ranking> runs{run, run};
    const std::vector<std::vector<eval::judgment>> qrels{one, {{4, 0}}};
    const auto m = eval::evaluate(runs, qrels);
    CHECK(m.at("queries") == 1);
    CHECK(m.at("hit@10") == 1.0);
    KITE_REQUIRE_THROWS_CONTAINING(eval::metric("ndcg@x", run, one), kite::invalid_argument, "bad cutoff");
    CHECK_THROWS_AS(eval::metric("p@10", run, one), kite::invalid_argument);
    CHECK_THROWS_AS(eval::metric("ndcg@0", run, one), kite::invalid_argument);
    CHECK_THROWS_AS(eval::evaluate(runs, std::span(qrels).first(1)), kite::shape_error);
}

TEST_CASE("latency percentiles interpolate like NumPy", "[retrieval][eval]") {
    const std::vector<double> v{5, 1, 4, 2, 3};
    CHECK(eval::percentile(v, 50) == 3.0);
    CHECK(eval::percentile(v, 95) == Approx(4.8));
    CHECK(eval::percentile(v, 0) == 1.0);
    CHECK(eval::percentile({}, 50) == 0.0);
    CHECK_THROWS_AS(eval::percentile(v, 101), kite::invalid_argument);
    const auto s = eval::summarize_latency(v);
    CHECK(s.mean == 3.0);
    CHECK(s.max == 5.0);
}

namespace {
void write(const std::filesystem::path& p, const std::string& s) {
    std::filesystem::create_directories(p.parent_path());
    std::ofstream(p, std::ios::binary) << s;
}
void write_beir(const kite::test::temp_dir& d, const std::string& corpus, const std::string& queries,
                const std::string& qrels) {
    write(d / "corpus.jsonl", corpus);
    write(d / "queries.jsonl", queries);
    write(d / "qrels/test.tsv", qrels);
}
const std::string good_corpus =
    "{\"_id\": \"d1\", \"title\": \"T1\", \"text\": \"alpha beta\"}\n"
    "{\"_id\": \"d2\", \"title\": \"\", \"text\": \"gamma\"}\n"
    "{\"_id\": \"3\", \"title\": \"Q\\\"x\", \"text\": \"\\u00e9t\\u00e9\"}\n";
const std::string good_queries =
    "{\"_id\": \"q1\", \"text\": \"first\"}\n{\"_id\": \"q2\", \"text\": \"second\"}\n{\"_id\": \"q3\", \"text\": \"unjudged\"}\n";
}  // namespace

TEST_CASE("BEIR loader reads folders and names bad lines", "[retrieval][data]") {
    kite::test::temp_dir d;
    write_beir(d, good_corpus, good_queries, "query-id\tcorpus-id\tscore\nq2\td2\t1\nq1\t3\t2\nq1\td1\t0\n");
    const auto ds = data::load_beir(d.path());
    REQUIRE(ds.corpus.size() == 3);
    CHECK(ds.corpus[0].full_text() == "T1 alpha beta");
    CHECK(ds.corpus[1].full_text() == "gamma");
    CHECK(ds.corpus[2].title == "Q\"x");
    CHECK(ds.corpus[2].text == "\xc3\xa9t\xc3\xa9");
    REQUIRE(ds.queries.size() == 2);  // only judged queries, in queries.jsonl order
    CHECK(ds.queries[0].id == "q1");
    CHECK(ds.qrels[0].size() == 2);
    CHECK(ds.qrels[0][0].doc == 2);
    CHECK(ds.qrels[0][0].relevance == 2);
    CHECK(ds.qrels[1][0].doc == 1);

    write_beir(d, good_corpus + "{\"_id\": \"d9\", \"title\": \"x\"\n", good_queries, "q1\td1\t1\n");
    KITE_REQUIRE_THROWS_CONTAINING(data::load_beir(d.path()), kite::format_error, "corpus.jsonl:4: invalid JSON");
    write_beir(d, good_corpus + "{\"title\": \"x\", \"text\": \"y\"}\n", good_queries, "q1\td1\t1\n");
    KITE_REQUIRE_THROWS_CONTAINING(data::load_beir(d.path()), kite::format_error, "corpus.jsonl:4: missing \"_id\"");
    write_beir(d, good_corpus + "{\"_id\": \"d1\", \"text\": \"dup\"}\n", good_queries, "q1\td1\t1\n");
    KITE_REQUIRE_THROWS_CONTAINING(data::load_beir(d.path()), kite::format_error, "duplicate document id \"d1\"");
    write_beir(d, good_corpus, good_queries, "query-id\tcorpus-id\tscore\nq1\td1\n");
    KITE_REQUIRE_THROWS_CONTAINING(data::load_beir(d.path()), kite::format_error, "test.tsv:2: 2 tab-separated fields");
    write_beir(d, good_corpus, good_queries, "q1\tzz\t1\n");
    KITE_REQUIRE_THROWS_CONTAINING(data::load_beir(d.path()), kite::format_error, "test.tsv:1: corpus-id \"zz\"");
    write_beir(d, good_corpus, good_queries, "q1\td1\tyes\n");
    KITE_REQUIRE_THROWS_CONTAINING(data::load_beir(d.path()), kite::format_error, "score 'yes' is not an integer");
    write_beir(d, good_corpus, good_queries, "q7\td1\t1\n");
    KITE_REQUIRE_THROWS_CONTAINING(data::load_beir(d.path()), kite::format_error, "query-id \"q7\" is not in");
    write_beir(d, good_corpus, "{\"_id\": \"q1\", \"text\": [5]}\n", "q1\td1\t1\n");
    KITE_REQUIRE_THROWS_CONTAINING(data::load_beir(d.path()), kite::format_error, "queries.jsonl:1: \"text\" is array");
    CHECK_THROWS_AS(data::load_beir(d.path(), "dev"), kite::io_error);  // no qrels/dev.tsv
    // An empty qrels file (or one with only its header) judges nothing: an error, not all-zero metrics.
    write_beir(d, good_corpus, good_queries, "");
    KITE_REQUIRE_THROWS_CONTAINING(data::load_beir(d.path()), kite::format_error, "test.tsv: no judgments");
    write_beir(d, good_corpus, good_queries, "query-id\tcorpus-id\tscore\n");
    KITE_REQUIRE_THROWS_CONTAINING(data::load_beir(d.path()), kite::format_error, "test.tsv: no judgments");
}

TEST_CASE("BEIR queries-only loader keeps the judged queries and never reads the corpus", "[retrieval][data]") {
    kite::test::temp_dir d;
    // A corrupt corpus: load_beir would fail on it; the queries-only loader does not read it.
    write_beir(d, "not json\n", good_queries, "query-id\tcorpus-id\tscore\nq2\tzz\t1\nq1\td1\t0\nq2\td1\t1\n");
    const auto qs = data::load_beir_queries(d.path());
    REQUIRE(qs.size() == 2);  // judged ones only, in queries.jsonl order, each once
    CHECK(qs[0].id == "q1");
    CHECK(qs[0].text == "first");
    CHECK(qs[1].id == "q2");
    write_beir(d, "", good_queries, "q7\td1\t1\n");
    KITE_REQUIRE_THROWS_CONTAINING(data::load_beir_queries(d.path()), kite::format_error, "query-id \"q7\" is not in");
    write_beir(d, "", good_queries, "q1\td1\n");
    KITE_REQUIRE_THROWS_CONTAINING(data::load_beir_queries(d.path()), kite::format_error, "test.tsv:1: 2 tab-separated fields");
    write_beir(d, "", "{\"_id\": \"q1\", \"text\": \"a\"}\n{\"_id\": \"q1\", \"text\": \"b\"}\n", "q1\td1\t1\n");
    KITE_REQUIRE_THROWS_CONTAINING(data::load_beir_queries(d.path()), kite::format_error, "duplicate query id \"q1\"");
    CHECK_THROWS_AS(data::load_beir_queries(d.path(), "dev"), kite::io_error);
    write_beir(d, "", good_queries, "query-id\tcorpus-id\tscore\n");
    KITE_REQUIRE_THROWS_CONTAINING(data::load_beir_queries(d.path()), kite::format_error, "no judgments");
}

TEST_CASE("KLUE STS loader builds the retrieval task", "[retrieval][data]") {
    kite::test::temp_dir d;
    write(d / "klue-sts-v1.1_dev.json",
          R"([{"guid": "g1", "sentence1": "a", "sentence2": "b", "labels": {"binary-label": 1}},
              {"guid": "g2", "sentence1": "c", "sentence2": "d", "labels": {"binary-label": 0}},
              {"guid": "g3", "sentence1": "e", "sentence2": "f", "labels": {"binary-label": 1}}])");
    const auto ds = data::load_klue_sts(d.path());
    REQUIRE(ds.corpus.size() == 3);
    REQUIRE(ds.queries.size() == 2);
    CHECK(ds.queries[1].text == "e");
    CHECK(ds.qrels[1][0].doc == 2);
    write(d / "klue-sts-v1.1_dev.json", R"([{"guid": "g1", "sentence1": "a", "sentence2": "b", "labels": {"binary-label": 3}}])");
    KITE_REQUIRE_THROWS_CONTAINING(data::load_klue_sts(d.path()), kite::format_error, "pair 0: labels.binary-label is 3");
    write(d / "klue-sts-v1.1_dev.json", R"({"not": "an array"})");
    CHECK_THROWS_AS(data::load_klue_sts(d.path()), kite::format_error);
    // 4294967297 = 2^32 + 1 once wrapped to 1 through an int conversion.
    write(d / "klue-sts-v1.1_dev.json",
          R"([{"guid": "g1", "sentence1": "a", "sentence2": "b", "labels": {"binary-label": 4294967297}}])");
    KITE_REQUIRE_THROWS_CONTAINING(data::load_klue_sts(d.path()), kite::format_error,
                                   "labels.binary-label is 4294967297; expected 0 or 1");
    write(d / "klue-sts-v1.1_dev.json", R"([{"guid": "g1", "sentence1": "a", "sentence2": "b", "labels": {"binary-label": 1.0}}])");
    KITE_REQUIRE_THROWS_CONTAINING(data::load_klue_sts(d.path()), kite::format_error, "expected 0 or 1");
    write(d / "klue-sts-v1.1_dev.json", "[]");
    KITE_REQUIRE_THROWS_CONTAINING(data::load_klue_sts(d.path()), kite::format_error, "no sentence pairs");
    write(d / "klue-sts-v1.1_dev.json", R"([{"guid": "g1", "sentence1": "a", "sentence2": "b", "labels": {"binary-label": 0}}])");
    KITE_REQUIRE_THROWS_CONTAINING(data::load_klue_sts(d.path()), kite::format_error,
                                   "none of the 1 pairs is a paraphrase (binary-label 1)");
}

TEST_CASE("KLUE STS loader: dev-train and dev-test share out the pairs labelled 4 or more", "[retrieval][data]") {
    kite::test::temp_dir d;
    const auto pair = [](int i, double label) {
        return "{\"guid\": \"g" + std::to_string(i) + "\", \"sentence1\": \"s" + std::to_string(i) + "\", \"sentence2\": \"t" +
               std::to_string(i) + "\", \"labels\": {\"label\": " + std::to_string(label) + ", \"binary-label\": " +
               (label >= 3 ? "1" : "0") + "}}";
    };
    // Labels 4.5, 2, 4, 3.9, 5, 4.2: the close paraphrases are pairs 0, 2, 4, 5.
    write(d / "klue-sts-v1.1_dev.json", "[" + pair(0, 4.5) + "," + pair(1, 2) + "," + pair(2, 4) + "," + pair(3, 3.9) + "," +
                                            pair(4, 5) + "," + pair(5, 4.2) + "]");
    const auto all = data::load_klue_sts(d.path());
    const auto train = data::load_klue_sts(d.path(), "dev-train"), test = data::load_klue_sts(d.path(), "dev-test");
    CHECK(all.queries.size() == 5);
    for (const auto* ds : {&train, &test}) REQUIRE(ds->corpus.size() == 6);  // every sentence2 stays a document
    REQUIRE(train.queries.size() == 2);
    REQUIRE(test.queries.size() == 2);
    CHECK(train.queries[0].text == "s0");
    CHECK(train.queries[1].text == "s4");
    CHECK(test.queries[0].text == "s2");
    CHECK(test.queries[1].text == "s5");
    CHECK(test.qrels[1][0].doc == 5);
    KITE_REQUIRE_THROWS_CONTAINING(data::load_klue_sts(d.path(), "test"), kite::invalid_argument,
                                   "split 'test'; expected dev, dev-train or dev-test");
    write(d / "klue-sts-v1.1_dev.json", "[" + pair(0, 4.5) + "]");
    KITE_REQUIRE_THROWS_CONTAINING(data::load_klue_sts(d.path(), "dev-test"), kite::format_error,
                                   "none of the 1 pairs is a close paraphrase (label >= 4) of dev-test");
    write(d / "klue-sts-v1.1_dev.json", R"([{"guid": "g1", "sentence1": "a", "sentence2": "b", "labels": {"binary-label": 1}}])");
    KITE_REQUIRE_THROWS_CONTAINING(data::load_klue_sts(d.path(), "dev-train"), kite::format_error,
                                   "labels.label is missing; expected 0 to 5");
    write(d / "klue-sts-v1.1_dev.json", R"([{"guid": "g1", "sentence1": "a", "sentence2": "b", "labels": {"binary-label": 1, "label": "4"}}])");
    KITE_REQUIRE_THROWS_CONTAINING(data::load_klue_sts(d.path(), "dev-test"), kite::format_error,
                                   "pair 0: labels.label is \"4\"; expected 0 to 5");
    write(d / "klue-sts-v1.1_dev.json", R"([{"guid": "g1", "sentence1": "a", "sentence2": "b", "labels": {"binary-label": 1, "label": 5.5}}])");
    KITE_REQUIRE_THROWS_CONTAINING(data::load_klue_sts(d.path(), "dev-train"), kite::format_error,
                                   "labels.label is 5.5; expected 0 to 5");
    write(d / "klue-sts-v1.1_dev.json", R"([{"guid": "g1", "sentence1": "a", "sentence2": "b", "labels": {"binary-label": 1, "label": -0.1}}])");
    KITE_REQUIRE_THROWS_CONTAINING(data::load_klue_sts(d.path(), "dev-train"), kite::format_error,
                                   "labels.label is -0.1; expected 0 to 5");
}

TEST_CASE("TREC run files", "[retrieval][eval]") {
    kite::test::temp_dir d;
    const std::vector<ranking> runs{{{2.5f, 1}, {1.0f, 0}}, {}};
    const std::vector<std::string> qids{"q1", "q2"}, dids{"docA", "docB"};
    eval::write_trec_run(d / "run.txt", runs, qids, dids, "bm25");
    CHECK(kite::io::read_text(d / "run.txt") == "q1 Q0 docB 1 2.5 bm25\nq1 Q0 docA 2 1 bm25\n");
    const std::vector<ranking> bad{{{1.f, 5}}};
    CHECK_THROWS_AS(eval::write_trec_run(d / "bad.txt", bad, std::span(qids).first(1), dids), kite::invalid_argument);
    CHECK_FALSE(std::filesystem::exists(d / "bad.txt"));
    CHECK_THROWS_AS(eval::write_trec_run(d / "x.txt", runs, qids, dids, "two words"), kite::invalid_argument);
}

TEST_CASE("real data: SciFact loads with the published counts", "[retrieval][.scifact]") {
    KITE_NEED_DATA(corpus, "scifact/corpus.jsonl");
    const auto scifact = corpus.parent_path();
    const auto ds = data::load_beir(scifact, "test");
    CHECK(ds.corpus.size() == 5183);
    CHECK(ds.queries.size() == 300);
    std::size_t n = 0;
    for (const auto& q : ds.qrels) n += q.size();
    CHECK(n == 339);
    const auto train = data::load_beir(scifact, "train");
    CHECK(train.queries.size() == 809);
}

TEST_CASE("real data: KLUE STS loads with the published counts", "[retrieval][.klue]") {
    KITE_NEED_DATA(file, "klue-sts/klue-sts-v1.1_dev.json");
    const auto k = data::load_klue_sts(file.parent_path());
    CHECK(k.corpus.size() == 519);
    CHECK(k.queries.size() == 220);
}
