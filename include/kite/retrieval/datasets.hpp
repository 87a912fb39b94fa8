#pragma once
/// @file kite/retrieval/datasets.hpp
/// Loaders for evaluation data sets (namespace kite::retrieval::data):
///   load_beir(dir, split)   a BEIR folder: corpus.jsonl, queries.jsonl, qrels/<split>.tsv
///   load_beir_queries(dir, split)  only the queries judged in a split (no corpus read)
///   load_klue_sts(path)     KLUE STS (klue-sts-v1.1_dev.json) as a retrieval task: the corpus is
///                           every sentence2, the queries are the sentence1 of the pairs whose
///                           binary label is 1, and each query's relevant document is its own
///                           sentence2. load_klue_sts(path, "dev-train" | "dev-test"): the same
///                           corpus, queries from the pairs labelled 4 or more (close
///                           paraphrases), alternately one to dev-train and the next to
///                           dev-test (a fine-tuning split that keeps the evaluated pairs out).
/// A malformed line raises kite::format_error naming the file and the line number.

#include <cstddef>
#include <filesystem>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include <nlohmann/json.hpp>

#include "kite/core/error.hpp"
#include "kite/core/io.hpp"
#include "kite/retrieval/eval.hpp"

namespace kite::retrieval::data {

struct document {
    std::string id;
    std::string title;
    std::string text;
    /// Title and text joined by one space (what lexical indexes usually index).
    std::string full_text() const { return title.empty() ? text : title + " " + text; }
};

struct query {
    std::string id;
    std::string text;
};

/// A retrieval data set: corpus, queries and, per query, its judgments (doc = corpus index).
struct dataset {
    std::string name;
    std::vector<document> corpus;
    std::vector<query> queries;
    std::vector<std::vector<eval::judgment>> qrels;  // qrels[q] for queries[q]

    /// Corpus ids in corpus order (for run files).
    std::vector<std::string> doc_ids() const {
        std::vector<std::string> v;
        v.reserve(corpus.size());
        for (const auto& d : corpus) v.push_back(d.id);
        return v;
    }
    std::vector<std::string> query_ids() const {
        std::vector<std::string> v;
        v.reserve(queries.size());
        for (const auto& q : queries) v.push_back(q.id);
        return v;
    }
};

namespace detail {

/// Calls f(line, line_number) for every non-empty line of a text file (1-based numbers).
template <class F>
void for_each_line(const std::string& text, F&& f) {
    std::size_t pos = 0, line_no = 0;
    while (pos < text.size()) {
        std::size_t end = text.find('\n', pos);
        if (end == std::string::npos) end = text.size();
        ++line_no;
        std::string_view line(text.data() + pos, end - pos);
        if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
        if (!line.empty()) f(line, line_no);
        pos = end + 1;
    }
}

inline std::string json_string(const nlohmann::json& obj, const char* key, const std::string& where,
                               bool required = true) {
    const auto it = obj.find(key);
    if (it == obj.end() || it->is_null()) {
        KITE_REQUIRE(!required, format_error, where, ": missing \"", key, "\"");
        return {};
    }
    if (it->is_number_integer()) return std::to_string(it->get<long long>());
    KITE_REQUIRE(it->is_string(), format_error, where, ": \"", key, "\" is ", it->type_name(),
                 "; expected a string");
    return it->get<std::string>();
}

inline nlohmann::json parse_json(std::string_view text, const std::string& where) {
    try {
        return nlohmann::json::parse(text);
    } catch (const nlohmann::json::exception& e) {  // parse_error, and out_of_range for 1e999
        kite::detail::raise<format_error>(where, ": invalid JSON: ", e.what());
    }
}

inline std::string where(const std::filesystem::path& p, std::size_t line) {
    return p.string() + ":" + std::to_string(line);
}

/// The tab-separated fields of a line.
inline std::vector<std::string_view> tab_fields(std::string_view line) {
    std::vector<std::string_view> f;
    std::size_t p = 0;
    while (p <= line.size()) {
        std::size_t t = line.find('\t', p);
        if (t == std::string_view::npos) t = line.size();
        f.push_back(line.substr(p, t - p));
        p = t + 1;
    }
    return f;
}

/// Calls f(fields, where) for each judgment line of a BEIR qrels file (header skipped; 3 or 4
/// fields checked).
template <class F>
void for_each_qrel(const std::filesystem::path& qrels_path, F&& f) {
    const std::string qrels_text = io::read_text(qrels_path);
    for_each_line(qrels_text, [&](std::string_view line, std::size_t n) {
        const auto w = where(qrels_path, n);
        const auto fields = tab_fields(line);
        // BEIR qrels have a header; TREC-style qrels have 4 columns (qid 0 docid rel).
        if (n == 1 && fields.size() >= 3 && fields[0] == "query-id") return;
        KITE_REQUIRE(fields.size() == 3 || fields.size() == 4, format_error, w, ": ", fields.size(),
                     " tab-separated fields; expected query-id, corpus-id, score");
        f(fields, w);
    });
}

/// Calls f(query) for each query of a BEIR queries.jsonl (ids checked unique).
template <class F>
void for_each_query(const std::filesystem::path& queries_path, F&& f) {
    const std::string queries_text = io::read_text(queries_path);
    std::unordered_map<std::string, bool> seen;
    for_each_line(queries_text, [&](std::string_view line, std::size_t n) {
        const auto w = where(queries_path, n);
        const auto j = parse_json(line, w);
        KITE_REQUIRE(j.is_object(), format_error, w, ": expected a JSON object");
        query q{json_string(j, "_id", w), json_string(j, "text", w)};
        KITE_REQUIRE(seen.emplace(q.id, true).second, format_error, w, ": duplicate query id \"", q.id, "\"");
        f(std::move(q));
    });
}

}  // namespace detail

/// The queries of a BEIR folder judged in qrels/<split>.tsv, in queries.jsonl order, without
/// reading the corpus (calibration sets, query logs). Judged query ids missing from
/// queries.jsonl are a format_error, as in load_beir.
inline std::vector<query> load_beir_queries(const std::filesystem::path& dir, const std::string& split = "test") {
    const auto qrels_path = dir / "qrels" / (split + ".tsv");
    const auto queries_path = dir / "queries.jsonl";
    std::unordered_map<std::string, bool> judged;  // id -> found in queries.jsonl
    std::vector<std::string> judged_order;
    detail::for_each_qrel(qrels_path, [&](const std::vector<std::string_view>& f, const std::string&) {
        if (judged.try_emplace(std::string(f[0]), false).second) judged_order.emplace_back(f[0]);
    });
    KITE_REQUIRE(!judged_order.empty(), format_error, qrels_path.string(),
                 ": no judgments; expected at least one query-id / corpus-id / score line");
    std::vector<query> out;
    detail::for_each_query(queries_path, [&](query q) {
        const auto it = judged.find(q.id);
        if (it == judged.end()) return;
        it->second = true;
        out.push_back(std::move(q));
    });
    for (const auto& qid : judged_order)
        KITE_REQUIRE(judged[qid], format_error, qrels_path.string(), ": query-id \"", qid, "\" is not in ",
                     queries_path.string());
    return out;
}

/// Loads a BEIR folder. Only queries judged in qrels/<split>.tsv are kept, in queries.jsonl
/// order. Judgments with relevance 0 are kept (they count for nothing but are not errors).
inline dataset load_beir(const std::filesystem::path& dir, const std::string& split = "test") {
    dataset ds;
    ds.name = dir.filename().string();
    std::unordered_map<std::string, std::size_t> doc_index;

    const auto corpus_path = dir / "corpus.jsonl";
    const std::string corpus_text = io::read_text(corpus_path);
    detail::for_each_line(corpus_text, [&](std::string_view line, std::size_t n) {
        const auto w = detail::where(corpus_path, n);
        const auto j = detail::parse_json(line, w);
        KITE_REQUIRE(j.is_object(), format_error, w, ": expected a JSON object");
        document d{detail::json_string(j, "_id", w), detail::json_string(j, "title", w, false),
                   detail::json_string(j, "text", w)};
        KITE_REQUIRE(doc_index.emplace(d.id, ds.corpus.size()).second, format_error, w,
                     ": duplicate document id \"", d.id, "\"");
        ds.corpus.push_back(std::move(d));
    });

    const auto qrels_path = dir / "qrels" / (split + ".tsv");
    std::unordered_map<std::string, std::vector<eval::judgment>> judged;
    std::vector<std::string> judged_order;
    detail::for_each_qrel(qrels_path, [&](const std::vector<std::string_view>& f, const std::string& w) {
        const std::string qid(f[0]);
        const std::string did(f.size() == 3 ? f[1] : f[2]);
        const std::string_view rel_s = f.size() == 3 ? f[2] : f[3];
        int rel = 0;
        try {
            std::size_t used = 0;
            rel = std::stoi(std::string(rel_s), &used);
            KITE_REQUIRE(used == rel_s.size(), format_error, w, ": score '", rel_s, "' is not an integer");
        } catch (const std::logic_error&) {
            kite::detail::raise<format_error>(w, ": score '", rel_s, "' is not an integer");
        }
        const auto it = doc_index.find(did);
        KITE_REQUIRE(it != doc_index.end(), format_error, w, ": corpus-id \"", did,
                     "\" is not in ", corpus_path.string());
        auto [jt, fresh] = judged.try_emplace(qid);
        if (fresh) judged_order.push_back(qid);
        for (const auto& existing : jt->second)
            KITE_REQUIRE(existing.doc != static_cast<id_t>(it->second), format_error, w,
                         ": query \"", qid, "\" judges document \"", did, "\" twice");
        jt->second.push_back({static_cast<id_t>(it->second), rel});
    });
    KITE_REQUIRE(!judged_order.empty(), format_error, qrels_path.string(),
                 ": no judgments; expected at least one query-id / corpus-id / score line");

    const auto queries_path = dir / "queries.jsonl";
    std::unordered_map<std::string, bool> seen;
    detail::for_each_query(queries_path, [&](query q) {
        seen.emplace(q.id, true);
        const auto it = judged.find(q.id);
        if (it == judged.end()) return;
        ds.qrels.push_back(std::move(it->second));
        ds.queries.push_back(std::move(q));
    });
    for (const auto& qid : judged_order)
        KITE_REQUIRE(seen.count(qid), format_error, qrels_path.string(), ": query-id \"", qid,
                     "\" is not in ", queries_path.string());
    return ds;
}

/// Loads KLUE STS as a retrieval task (see the file comment). `path` is the JSON file or the
/// folder holding klue-sts-v1.1_dev.json; `split` is "dev" (every paraphrase pair), "dev-train"
/// or "dev-test" (alternate pairs labelled >= 4). kite::invalid_argument for another split.
inline dataset load_klue_sts(const std::filesystem::path& path, const std::string& split = "dev") {
    KITE_REQUIRE(split == "dev" || split == "dev-train" || split == "dev-test", invalid_argument, "load_klue_sts: split '",
                 split, "'; expected dev, dev-train or dev-test");
    auto file = path;
    if (std::filesystem::is_directory(file)) file /= "klue-sts-v1.1_dev.json";
    const auto j = detail::parse_json(io::read_text(file), file.string());
    KITE_REQUIRE(j.is_array(), format_error, file.string(), ": expected a JSON array of sentence pairs");
    dataset ds;
    ds.name = "klue-sts";
    std::size_t strong = 0;  // pairs labelled >= 4 so far
    for (std::size_t i = 0; i < j.size(); ++i) {
        const auto w = file.string() + ": pair " + std::to_string(i);
        const auto& p = j[i];
        KITE_REQUIRE(p.is_object(), format_error, w, ": expected a JSON object");
        const std::string guid = detail::json_string(p, "guid", w);
        ds.corpus.push_back({guid, "", detail::json_string(p, "sentence2", w)});
        const auto labels = p.find("labels");
        KITE_REQUIRE(labels != p.end() && labels->is_object() && labels->contains("binary-label"),
                     format_error, w, ": missing labels.binary-label");
        const auto& bl = (*labels)["binary-label"];
        // Compared as JSON numbers: get<int>() would wrap 4294967297 to 1.
        KITE_REQUIRE(bl.is_number_integer() && (bl == 0 || bl == 1), format_error, w,
                     ": labels.binary-label is ", bl.dump(), "; expected 0 or 1");
        bool query = bl == 1;
        if (split != "dev") {
            // find, not operator[]: a const json's operator[] on a missing key is undefined (an assert).
            const auto label = labels->find("label");
            KITE_REQUIRE(label != labels->end() && label->is_number() && *label >= 0 && *label <= 5, format_error, w,
                         ": labels.label is ", label != labels->end() ? label->dump() : "missing", "; expected 0 to 5");
            query = false;
            if (label->get<double>() >= 4.0) query = (strong++ % 2 == 0) == (split == "dev-train");
        }
        if (query) {
            ds.queries.push_back({guid, detail::json_string(p, "sentence1", w)});
            ds.qrels.push_back({{static_cast<id_t>(ds.corpus.size() - 1), 1}});
        }
    }
    KITE_REQUIRE(!ds.corpus.empty(), format_error, file.string(), ": no sentence pairs; expected a non-empty array");
    KITE_REQUIRE(!ds.queries.empty(), format_error, file.string(), ": none of the ", ds.corpus.size(), " pairs is a ",
                 split == "dev" ? "paraphrase (binary-label 1)" : "close paraphrase (label >= 4) of " + split,
                 "; expected at least one pair to evaluate");
    return ds;
}

}  // namespace kite::retrieval::data
