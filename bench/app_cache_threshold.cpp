// The semantic cache's threshold, calibrated (bench/README.md "Semantic cache threshold").
//
//   bench_cache_threshold [--data DIR] [--encoder DIR]      (DIR: $KITE_DATA by default)
//
// 1. KLUE STS dev (519 Korean sentence pairs, labels 0-5): cosine of each pair with kite's
//    encoder (all-MiniLM-L6-v2, an English model); "same meaning" = label >= 4, "different" =
//    label <= 2 (pairs in between are left out). Precision and recall of "cosine >= t" for t in
//    0.50 .. 0.99.
// 2. SciFact: the 300 test queries are cached; each of the other 809 queries (every one a
//    different claim) is looked up; a hit is a false hit. The false-hit rate for each t.
// 3. A small English paraphrase set (examples/data/notes/paraphrases.tsv, written for this
//    purpose: a question and its paraphrase per line): recall of paraphrase hits for each t.
// Prints one table and a JSON line with every figure.
#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "bench_util.hpp"
#include "kite/app/llm_cache.hpp"
#include "kite/model/sentence_encoder.hpp"
#include "kite/retrieval/datasets.hpp"

namespace fs = std::filesystem;

namespace {

double dot(const std::vector<float>& a, const std::vector<float>& b) {
    double s = 0;
    for (std::size_t i = 0; i < a.size(); ++i) s += double(a[i]) * b[i];
    return s;
}

std::vector<std::vector<float>> rows(const kite::matrix<float>& m) {
    std::vector<std::vector<float>> out;
    for (kite::index_t r = 0; r < m.rows(); ++r) out.emplace_back(m.row(r).begin(), m.row(r).end());
    return out;
}

}  // namespace

int main(int argc, char** argv) {
    kite::bench::host_setup(argc, argv);  // --tuning=intel|zen; names the host
    const char* env = std::getenv("KITE_DATA");
    fs::path data = env && *env ? fs::path(env) : fs::path("../shared/data");
    fs::path encoder = "models/all-MiniLM-L6-v2";
    fs::path paraphrases = "examples/data/notes/paraphrases.tsv";
    for (int i = 1; i + 1 < argc; i += 2) {
        const std::string a = argv[i];
        if (a == "--data") data = argv[i + 1];
        else if (a == "--encoder") encoder = argv[i + 1];
        else if (a == "--paraphrases") paraphrases = argv[i + 1];
        else {
            std::fprintf(stderr, "usage: bench_cache_threshold [--data DIR] [--encoder DIR] [--paraphrases TSV]\n");
            return 2;
        }
    }
    try {
        const auto enc = kite::model::sentence_encoder<>::load(encoder);

        // 1. KLUE STS dev.
        std::ifstream in(data / "klue-sts" / "klue-sts-v1.1_dev.json");
        if (!in) throw kite::io_error("cannot open " + (data / "klue-sts" / "klue-sts-v1.1_dev.json").string());
        const auto klue = nlohmann::json::parse(in);
        std::vector<std::string> s1, s2;
        std::vector<double> label;
        for (const auto& p : klue) {
            s1.push_back(p["sentence1"].get<std::string>());
            s2.push_back(p["sentence2"].get<std::string>());
            label.push_back(p["labels"]["label"].get<double>());
        }
        const auto e1 = rows(enc.encode(s1)), e2 = rows(enc.encode(s2));
        // How much of Korean the English word-piece vocabulary covers.
        std::size_t pieces = 0, unknown = 0;
        for (const auto* side : {&s1, &s2})
            for (const auto& t : *side)
                for (const auto id : enc.tokenize(t)) {
                    ++pieces;
                    unknown += id == enc.tokenizer().unk_id();
                }
        // A pair's cosine, or -2 when the guard (kite::app::same_polarity) refuses it.
        std::vector<double> pos, neg, pos_g, neg_g;
        for (std::size_t i = 0; i < label.size(); ++i) {
            const double c = dot(e1[i], e2[i]);
            const double cg = kite::app::same_polarity(s1[i], s2[i]) ? c : -2.0;
            if (label[i] >= 4) pos.push_back(c), pos_g.push_back(cg);
            else if (label[i] <= 2) neg.push_back(c), neg_g.push_back(cg);
        }

        // 2. SciFact: nearest cached (test) query of every other query.
        const auto test = kite::retrieval::data::load_beir_queries(data / "scifact", "test");
        std::vector<std::string> test_text, other_text;
        std::vector<std::string> test_ids;
        for (const auto& q : test) {
            test_text.push_back(q.text);
            test_ids.push_back(q.id);
        }
        std::ifstream qin(data / "scifact" / "queries.jsonl");
        for (std::string line; std::getline(qin, line);) {
            if (line.empty()) continue;
            const auto j = nlohmann::json::parse(line);
            const std::string id = j["_id"].get<std::string>();
            if (std::find(test_ids.begin(), test_ids.end(), id) == test_ids.end()) other_text.push_back(j["text"].get<std::string>());
        }
        const auto et = rows(enc.encode(test_text)), eo = rows(enc.encode(other_text));
        // The cosine of the nearest cached query, and of the nearest one the guard lets through.
        std::vector<double> nearest_other, nearest_other_g;
        for (std::size_t i = 0; i < eo.size(); ++i) {
            double best = -1, best_g = -2;
            for (std::size_t j = 0; j < et.size(); ++j) {
                const double c = dot(eo[i], et[j]);
                best = std::max(best, c);
                if (c > best_g && kite::app::same_polarity(other_text[i], test_text[j])) best_g = c;
            }
            nearest_other.push_back(best);
            nearest_other_g.push_back(best_g);
        }

        // 3. English paraphrases.
        std::vector<double> para, para_g;
        std::ifstream pin(paraphrases);
        std::vector<std::string> pa, pb;
        for (std::string line; std::getline(pin, line);) {
            const auto tab = line.find('\t');
            if (line.empty() || line[0] == '#' || tab == std::string::npos) continue;
            pa.push_back(line.substr(0, tab));
            pb.push_back(line.substr(tab + 1));
        }
        if (!pa.empty()) {
            const auto ea = rows(enc.encode(pa)), eb = rows(enc.encode(pb));
            for (std::size_t i = 0; i < ea.size(); ++i) {
                para.push_back(dot(ea[i], eb[i]));
                para_g.push_back(kite::app::same_polarity(pa[i], pb[i]) ? para.back() : -2.0);
            }
        }

        std::printf("host: %s\n", kite::cpu::describe().c_str());
        std::printf("all-MiniLM-L6-v2; KLUE STS dev: %zu same-meaning pairs (label >= 4), %zu different (label <= 2), "
                    "%.1f%% of their word pieces [UNK]; SciFact: %zu cached test queries, %zu other queries; %zu English "
                    "paraphrase pairs\n",
                    pos.size(), neg.size(), 100.0 * static_cast<double>(unknown) / static_cast<double>(pieces), et.size(),
                    eo.size(), para.size());
        std::printf("%6s | %-21s | %-21s | %-21s\n", "", "KLUE precision/recall", "SciFact false hits", "paraphrase recall");
        std::printf("%6s | %10s %10s | %10s %10s | %10s %10s\n", "cosine", "plain", "guarded", "plain", "guarded", "plain",
                    "guarded");
        nlohmann::json out = nlohmann::json::array();
        for (int ti = 50; ti <= 99; ++ti) {
            const double t = ti / 100.0;
            const auto share = [&](const std::vector<double>& v) {
                return v.empty() ? 0.0
                                 : static_cast<double>(std::count_if(v.begin(), v.end(), [&](double c) { return c >= t; })) /
                                       static_cast<double>(v.size());
            };
            const auto precision = [&](const std::vector<double>& p, const std::vector<double>& n) {
                const double tp = share(p) * static_cast<double>(p.size()), fp = share(n) * static_cast<double>(n.size());
                return tp + fp > 0 ? tp / (tp + fp) : 1.0;
            };
            const double prec = precision(pos, neg), prec_g = precision(pos_g, neg_g);
            const double rec = share(pos), rec_g = share(pos_g);
            if (ti % 5 == 0 || ti >= 90)
                std::printf("%6.2f | %4.2f/%5.3f %4.2f/%5.3f | %10.4f %10.4f | %10.3f %10.3f\n", t, prec, rec, prec_g, rec_g,
                            share(nearest_other), share(nearest_other_g), share(para), share(para_g));
            out.push_back({{"t", t}, {"klue_precision", prec}, {"klue_recall", rec}, {"klue_precision_guarded", prec_g},
                           {"klue_recall_guarded", rec_g}, {"scifact_false_hit", share(nearest_other)},
                           {"scifact_false_hit_guarded", share(nearest_other_g)}, {"paraphrase_recall", share(para)},
                           {"paraphrase_recall_guarded", share(para_g)}});
        }
        std::printf("%s\n", out.dump().c_str());
        return 0;
    } catch (const std::exception& e) {
        std::fprintf(stderr, "bench_cache_threshold: error: %s\n", e.what());
        return 1;
    }
}
