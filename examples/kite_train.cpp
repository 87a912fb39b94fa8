// kite-train: train a sentence encoder (all-MiniLM-L6-v2 or any BERT sentence-transformers folder)
// on the CPU, and write a checkpoint folder after every epoch that kite-eval --dense minilm
// --model DIR and sentence-transformers read.
//
//   mnr     fine-tune on a BEIR data set's judged (query, passage) pairs with the
//           multiple-negatives-ranking loss (kite/train/mnr.hpp)
//   distil  a student made of some of the teacher's layers learns the teacher's embeddings of the
//           corpus (its documents and their sentences; kite/train/distil.hpp)
//   cross   a cross-encoder reranker (query and passage in one input, a classifier on [CLS])
//           starts from the encoder and learns, with binary cross-entropy, the judged pairs
//           (label 1) from BM25-mined negatives (label 0; kite/train/cross.hpp)
//
//   kite-train mnr --data $KITE_DATA/scifact --split train --model models/all-MiniLM-L6-v2
//                  --out runs/scifact-mnr --epochs 1 --batch 32 --lr 2e-5 --threads 2
//   kite-train distil --data $KITE_DATA/scifact --teacher models/all-MiniLM-L6-v2
//                  --student-layers 0,2,5 --out runs/scifact-l3 --epochs 2 --max-texts 24000
//   kite-train cross --data $KITE_DATA/scifact --model models/all-MiniLM-L6-v2 --out runs/scifact-cross
//                  --epochs 1 --negatives 4
//   kite-eval --data $KITE_DATA/scifact --retriever dense --dense minilm --model runs/scifact-mnr/epoch-1
//   kite-eval --data $KITE_DATA/scifact --retriever hybrid --dense minilm --rerank runs/scifact-cross/epoch-1
//
// mnr pairs: every judged (query, document) of qrels/<split>.tsv with relevance > 0; the passage
// is the document's title and text. Progress goes to stderr (step, loss, in-batch accuracy or
// cosine to the teacher, examples/s, time left); --json prints one summary object per epoch on
// stdout.
#include <kite/model/cross_encoder.hpp>
#include <kite/model/formats/bert_loader.hpp>
#include <kite/model/sentence_encoder.hpp>
#include <kite/retrieval/bm25.hpp>
#include <kite/retrieval/datasets.hpp>
#include <kite/text/english.hpp>
#include <kite/text/wordpiece.hpp>
#include <kite/train.hpp>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <random>
#include <filesystem>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "cli.hpp"

namespace fs = std::filesystem;
namespace tr = kite::train;

namespace {

// "0,2,4" -> {0, 2, 4}.
std::vector<kite::index_t> parse_layers(const std::string& text) {
    std::vector<kite::index_t> out;
    std::size_t i = 0;
    while (i <= text.size()) {
        const std::size_t comma = std::min(text.find(',', i), text.size());
        const std::string item = text.substr(i, comma - i);
        if (item.empty() || item.find_first_not_of("0123456789") != std::string::npos || item.size() > 6)
            throw kite::cli::usage_error("--student-layers: expected layer numbers separated by commas (0,2,4), got '" + text + "'");
        out.push_back(static_cast<kite::index_t>(std::stoul(item)));
        i = comma + 1;
    }
    return out;
}

// A document and its sentences (split after . ! ? followed by a space; sentences of fewer than
// four words are dropped).
void add_texts(const std::string& doc, std::vector<std::string>& out) {
    out.push_back(doc);
    std::size_t start = 0;
    const auto flush = [&](std::size_t end) {
        const std::string s = doc.substr(start, end - start);
        std::size_t words = 0;
        bool in_word = false;
        for (const char c : s) {
            const bool space = c == ' ' || c == '\t' || c == '\n';
            if (!space && !in_word) ++words;
            in_word = !space;
        }
        if (words >= 4 && s.size() < doc.size()) out.push_back(s);
    };
    for (std::size_t i = 0; i + 1 < doc.size(); ++i)
        if ((doc[i] == '.' || doc[i] == '!' || doc[i] == '?') && doc[i + 1] == ' ') {
            flush(i + 1);
            start = i + 2;
        }
    if (start > 0) flush(doc.size());
}

int distil(const fs::path& data, const std::string& format, const std::string& split, const fs::path& teacher_dir,
           const std::vector<kite::index_t>& layers, const std::string& layers_text,
           std::size_t max_texts, const fs::path& out, std::size_t epochs, std::size_t batch, double lr, std::size_t max_len,
           std::size_t seed, std::size_t threads, std::size_t max_steps, bool overwrite, bool json) {
    const auto t0 = std::chrono::steady_clock::now();
    const kite::retrieval::data::dataset ds = format == "klue-sts" ? kite::retrieval::data::load_klue_sts(data, split)
                                                                   : kite::retrieval::data::load_beir(data, split);
    const kite::model::bert_checkpoint ck = kite::model::read_bert(teacher_dir);
    tr::bert_model<float> student(tr::keep_layers(ck, layers));
    kite::model::sentence_encoder_options eo;
    eo.max_seq_length = max_len;
    const auto teacher = kite::model::sentence_encoder<>::load(teacher_dir, eo);
    std::vector<std::string> texts;
    for (const auto& d : ds.corpus) add_texts(d.full_text(), texts);
    const std::size_t all = texts.size();
    if (max_texts > 0 && texts.size() > max_texts) {
        std::mt19937_64 rng(seed);
        std::shuffle(texts.begin(), texts.end(), rng);
        texts.resize(max_texts);
    }
    std::fprintf(stderr, "kite-train: %zu texts (of %zu: %zu documents and their sentences) of %s, %zu word pieces at most; "
                 "teacher %s (%zu layers), student layers %s\n", texts.size(), all, ds.corpus.size(), data.string().c_str(),
                 teacher.options().max_seq_length, teacher_dir.string().c_str(), ck.layers.size(), layers_text.c_str());
    const auto t1 = std::chrono::steady_clock::now();
    const kite::matrix<float> targets = teacher.encode(std::span<const std::string>(texts));
    std::vector<tr::distil_example> examples(texts.size());
    for (std::size_t i = 0; i < texts.size(); ++i) {
        examples[i].ids = teacher.tokenize(texts[i]);
        examples[i].target.assign(targets.row(i).begin(), targets.row(i).end());
    }
    const double teacher_seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t1).count();
    tr::distil_trainer<float> trainer(student, {.batch = batch, .lr = lr, .epochs = epochs, .seed = seed,
                                                .threads = static_cast<int>(threads)});
    if (max_steps > 0 && examples.size() > max_steps * batch) examples.resize(max_steps * batch);
    const std::uint64_t steps = trainer.steps_per_epoch(examples.size());
    std::fprintf(stderr, "kite-train: teacher embeddings in %.1f s; student of %zu parameters, %llu steps per epoch of %zu texts "
                 "(load %.1f s)\n", teacher_seconds, student.parameters().size(), static_cast<unsigned long long>(steps), batch,
                 std::chrono::duration<double>(t1 - t0).count());
    for (std::size_t e = 1; e <= epochs; ++e) {
        double busy = 0, cosine = 0, seen = 0;
        const double mean_loss = trainer.epoch(examples, [&](const tr::step_report& s) {
            busy += s.seconds;
            cosine += s.cosine * static_cast<double>(s.pairs);
            seen += static_cast<double>(s.pairs);
            const std::uint64_t in_epoch = (s.step - 1) % steps + 1;
            const double left = busy / static_cast<double>(in_epoch) * static_cast<double>(s.total_steps - s.step);
            std::fprintf(stderr, "\repoch %zu/%zu  step %llu/%llu  loss %.3g  cosine %.4f  %.1f texts/s  %.0f s left   ", e, epochs,
                         static_cast<unsigned long long>(in_epoch), static_cast<unsigned long long>(steps), s.loss, s.cosine,
                         seen / busy, left);
        });
        std::fprintf(stderr, "\n");
        const fs::path dir = out / ("epoch-" + std::to_string(e));
        fs::create_directories(out);
        tr::save_bert(dir, student.to_checkpoint(dir.string()), teacher_dir, overwrite);
        std::fprintf(stderr, "kite-train: epoch %zu: mean loss %.4g, cosine to the teacher %.4f, %.2f texts/s; wrote %s\n", e,
                     mean_loss, cosine / seen, seen / busy, dir.string().c_str());
        if (json)
            std::printf("%s\n", nlohmann::json{{"epoch", e}, {"mean_loss", mean_loss}, {"cosine", cosine / seen},
                                               {"texts_per_second", seen / busy}, {"seconds", busy},
                                               {"texts", static_cast<std::size_t>(seen)}, {"teacher_seconds", teacher_seconds},
                                               {"checkpoint", dir.string()}}
                                    .dump()
                                    .c_str());
    }
    return 0;
}

// `epochs` passes of a trainer over pairs (mnr, cross) with progress on stderr (step, loss, the
// share of the step's pairs it got right, pairs/s, time left); after each, save(out/epoch-N) and,
// with --json, one summary line on stdout.
template <class Trainer, class Items, class Save>
void pair_epochs(Trainer& trainer, const Items& examples, std::size_t epochs, std::uint64_t steps, const fs::path& out,
                 const char* accuracy, bool json, Save&& save) {
    for (std::size_t e = 1; e <= epochs; ++e) {
        double busy = 0, correct = 0, seen = 0;
        const double mean_loss = trainer.epoch(examples, [&](const tr::step_report& s) {
            busy += s.seconds;
            correct += static_cast<double>(s.correct);
            seen += static_cast<double>(s.pairs);
            const std::uint64_t in_epoch = (s.step - 1) % steps + 1;
            const double left = busy / static_cast<double>(in_epoch) * static_cast<double>(s.total_steps - s.step);
            std::fprintf(stderr, "\repoch %zu/%zu  step %llu/%llu  loss %.4f  acc %.3f  %.1f pairs/s  %.0f s left   ", e, epochs,
                         static_cast<unsigned long long>(in_epoch), static_cast<unsigned long long>(steps), s.loss,
                         static_cast<double>(s.correct) / static_cast<double>(s.pairs), seen / busy, left);
        });
        std::fprintf(stderr, "\n");
        const fs::path dir = out / ("epoch-" + std::to_string(e));
        fs::create_directories(out);
        save(dir);
        std::fprintf(stderr, "kite-train: epoch %zu: mean loss %.4f, %s %.3f, %.2f pairs/s; wrote %s\n", e, mean_loss, accuracy,
                     correct / seen, seen / busy, dir.string().c_str());
        if (json)
            std::printf("%s\n", nlohmann::json{{"epoch", e}, {"mean_loss", mean_loss}, {"accuracy", correct / seen},
                                               {"pairs_per_second", seen / busy}, {"seconds", busy},
                                               {"pairs", static_cast<std::size_t>(seen)}, {"checkpoint", dir.string()}}
                                    .dump()
                                    .c_str());
    }
}

// The best `count` BM25 hits (English analyzer, Lucene's BM25) of each query that the split does
// not judge relevant to it.
std::vector<std::vector<kite::id_t>> bm25_negatives(const kite::retrieval::data::dataset& ds, std::size_t count) {
    std::vector<std::vector<kite::id_t>> out(ds.queries.size());
    if (count == 0) return out;
    kite::retrieval::bm25_index<kite::bm25::lucene, kite::text::english> bm25;
    std::vector<std::string> docs;
    for (const auto& d : ds.corpus) docs.push_back(d.full_text());
    bm25.add_all(docs);
    kite::parallel_for(0, ds.queries.size(), [&](std::size_t q) {
        for (const auto& hit : bm25.search(ds.queries[q].text, count + ds.qrels[q].size())) {
            const bool judged = std::any_of(ds.qrels[q].begin(), ds.qrels[q].end(),
                                            [&](const auto& j) { return j.doc == hit.id && j.relevance > 0; });
            if (!judged && out[q].size() < count) out[q].push_back(hit.id);
        }
    });
    return out;
}

// `count` documents per query drawn uniformly (seeded) among those the split does not judge
// relevant to it.
std::vector<std::vector<kite::id_t>> random_negatives(const kite::retrieval::data::dataset& ds, std::size_t count,
                                                      std::uint64_t seed) {
    std::vector<std::vector<kite::id_t>> out(ds.queries.size());
    std::mt19937_64 rng(seed);
    for (std::size_t q = 0; q < ds.queries.size() && ds.corpus.size() > ds.qrels[q].size(); ++q)
        while (out[q].size() < count) {
            const auto id = static_cast<kite::id_t>(rng() % ds.corpus.size());
            const bool judged = std::any_of(ds.qrels[q].begin(), ds.qrels[q].end(),
                                            [&](const auto& j) { return j.doc == id && j.relevance > 0; });
            if (!judged && std::find(out[q].begin(), out[q].end(), id) == out[q].end()) out[q].push_back(id);
            if (out[q].size() + ds.qrels[q].size() >= ds.corpus.size()) break;
        }
    return out;
}

int cross(const fs::path& data, const std::string& split, const fs::path& model_dir, const fs::path& out,
          std::size_t epochs, std::size_t batch, double lr, std::size_t max_len, std::size_t negatives,
          std::size_t random_count, std::size_t seed, std::size_t threads, std::size_t max_steps, bool overwrite, bool json) {
    const auto t0 = std::chrono::steady_clock::now();
    const kite::retrieval::data::dataset ds = kite::retrieval::data::load_beir(data, split);
    const auto tok = kite::text::wordpiece_tokenizer::from_file(model_dir);
    const kite::model::bert_checkpoint ck = kite::model::read_bert(model_dir);
    const std::size_t seq_len =
        max_len > 0 ? max_len : kite::model::sentence_encoder<>::configured_max_seq_length(model_dir, ck.config);
    if (seq_len < 3) throw kite::cli::usage_error("--max-seq-length: a pair needs at least 3 word pieces");
    const auto mined = bm25_negatives(ds, negatives);
    const auto drawn = random_negatives(ds, random_count, seed);
    std::vector<tr::cross_example> examples;
    std::size_t positives = 0;
    const auto add = [&](std::size_t q, kite::id_t doc, float label) {
        auto p = kite::model::encode_pair(tok, ds.queries[q].text, ds.corpus[static_cast<std::size_t>(doc)].full_text(), seq_len);
        examples.push_back({std::move(p.ids), p.second, label});
    };
    for (std::size_t q = 0; q < ds.queries.size(); ++q) {
        for (const auto& j : ds.qrels[q])
            if (j.relevance > 0) {
                add(q, j.doc, 1.0f);
                ++positives;
            }
        for (const kite::id_t d : mined[q]) add(q, d, 0.0f);
        for (const kite::id_t d : drawn[q])
            if (std::find(mined[q].begin(), mined[q].end(), d) == mined[q].end()) add(q, d, 0.0f);
    }
    if (positives == 0)
        throw kite::invalid_argument(data.string() + " qrels/" + split + ".tsv: no judged pairs; expected at least 1");
    std::fprintf(stderr, "kite-train: %zu pairs from %zu queries of %s (%s): %zu relevant, %zu negatives (BM25 and random); "
                 "%zu word pieces a pair at most; %s\n", examples.size(), ds.queries.size(), data.string().c_str(), split.c_str(),
                 positives, examples.size() - positives, seq_len, model_dir.string().c_str());
    const kite::model::classifier_head head = kite::model::new_classifier_head(model_dir, ck.config.hidden_size, seed);
    tr::bert_model<float> m(ck, &head);
    tr::cross_trainer<float> trainer(m, {.batch = batch, .lr = lr, .epochs = epochs, .seed = seed,
                                         .threads = static_cast<int>(threads)});
    if (max_steps > 0 && examples.size() > max_steps * batch) examples.resize(max_steps * batch);
    const std::uint64_t steps = trainer.steps_per_epoch(examples.size());
    std::fprintf(stderr, "kite-train: %zu parameters, %llu steps per epoch of %zu pairs (load %.1f s)\n",
                 m.parameters().size(), static_cast<unsigned long long>(steps), batch,
                 std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
    pair_epochs(trainer, examples, epochs, steps, out, "accuracy", json,
                [&](const fs::path& dir) { tr::save_cross_encoder(dir, m, model_dir, overwrite); });
    return 0;
}

}  // namespace

int main(int argc, char** argv) {
    kite::cli::parser cli("kite-train", "Fine-tune a BERT sentence encoder on a BEIR data set's judged pairs (MNR loss), on the CPU.");
    auto& mode = cli.positional<std::string>("MODE", "what to train: mnr (a bi-encoder with multiple-negatives ranking) or "
                                             "distil (a smaller student from a teacher) or cross (a cross-encoder reranker)").choices({"mnr", "distil", "cross"});
    auto& data = cli.option<fs::path>("--data", "DIR", "a BEIR folder (corpus.jsonl, queries.jsonl, qrels/SPLIT.tsv)").required();
    auto& format = cli.option<std::string>("--format", "F", "data layout", std::string("beir")).choices({"beir", "klue-sts"});
    auto& split = cli.option<std::string>("--split", "NAME", "the qrels file whose pairs are trained on (KLUE STS: dev-train, "
                                          "alternate pairs labelled >= 4)", std::string("train"));
    auto& model = cli.option<fs::path>("--model", "DIR", "the encoder's folder (config.json, model.safetensors, tokenizer)",
                                       fs::path("models/all-MiniLM-L6-v2"));
    auto& teacher = cli.option<fs::path>("--teacher", "DIR", "distil: the teacher's folder", fs::path("models/all-MiniLM-L6-v2"));
    auto& student_layers = cli.option<std::string>("--student-layers", "LIST",
                                                   "distil: the teacher's layers the student keeps (0-based; the first and the last "
                                                   "start closest to the teacher)", std::string("0,2,5"));
    auto& max_texts = cli.option<std::size_t>("--max-texts", "N", "distil: texts sampled from the corpus (0: all)", 0);
    auto& out = cli.option<fs::path>("--out", "DIR", "where epoch-1, epoch-2, ... are written").required();
    auto& epochs = cli.option<std::size_t>("--epochs", "N", "passes over the pairs", 1).range(1, 1000);
    auto& batch = cli.option<std::size_t>("--batch", "N", "pairs (mnr: the other pairs are the negatives) or texts per step", 32)
                      .range(2, 4096);
    auto& lr = cli.option<double>("--lr", "RATE", "peak learning rate (AdamW; 10% warm-up, then linear decay; distil's "
                                  "default is 3e-4)", 2e-5);
    auto& max_len = cli.option<std::size_t>("--max-seq-length", "N", "word pieces per text (default: the model's)", 0).range(0, 100000);
    auto& seed = cli.option<std::size_t>("--seed", "N", "shuffling seed", 42);
    auto& threads = cli.option<std::size_t>("--threads", "N", "threads (0: all)", 0).range(0, 1024);
    auto& hard_negatives = cli.option<std::string>("--hard-negatives", "HOW",
                                                   "mnr: add one hard negative per pair, the best BM25 hit of its query that "
                                                   "is not judged relevant", std::string("none")).choices({"none", "bm25"});
    auto& negatives = cli.option<std::size_t>("--negatives", "N", "cross: BM25-mined negatives per query (label 0)", 4)
                          .range(0, 1000);
    auto& random_negatives = cli.option<std::size_t>("--random-negatives", "N",
                                                     "cross: negatives per query drawn at random from the corpus", 0)
                                 .range(0, 1000);
    auto& max_steps = cli.option<std::size_t>("--max-steps", "N", "stop each epoch after N steps (0: no limit; for trials)", 0);
    auto& overwrite = cli.flag("--overwrite", "replace checkpoint folders that exist");
    auto& json = cli.flag("--json", "one JSON summary per epoch on stdout");
    cli.epilog("Exit status: 0 done, 1 a file cannot be read or written, 2 usage.");
    return kite::cli::run(cli, argc, argv, [&] {
        if (!(*lr > 0) || !std::isfinite(*lr)) throw kite::cli::usage_error("--lr: expected a finite rate > 0, got " + std::to_string(*lr));
        if (*mode == "cross" && *format != "beir")
            throw kite::cli::usage_error("cross: expected --format beir (judged query-passage pairs)");
        const std::vector<kite::index_t> layers = *mode == "distil" ? parse_layers(*student_layers) : std::vector<kite::index_t>{};
        const fs::path& source = *mode == "distil" ? *teacher : *model;
        if (!fs::is_regular_file(source / "config.json"))
            throw kite::not_found_error(std::string(*mode == "distil" ? "--teacher" : "--model") + ": no config.json in " +
                                        source.string() + " (all-MiniLM-L6-v2: python3 tools/fetch_minilm.py)");
        if (*threads > 0) kite::set_num_threads(static_cast<int>(*threads));
        if (*mode == "cross")
            return cross(*data, *split, *model, *out, *epochs, *batch, *lr, *max_len, *negatives, *random_negatives, *seed,
                         *threads, *max_steps, overwrite, json);
        if (*mode == "distil")
            return distil(*data, *format, *format == "klue-sts" && !split.given() ? std::string("dev") : *split, *teacher, layers, *student_layers, *max_texts, *out, *epochs, *batch, lr.given() ? *lr : 3e-4,
                          *max_len, *seed, *threads, *max_steps, overwrite, json);

        const auto t0 = std::chrono::steady_clock::now();
        const kite::retrieval::data::dataset ds = *format == "klue-sts" ? kite::retrieval::data::load_klue_sts(*data, *split)
                                                                        : kite::retrieval::data::load_beir(*data, *split);
        const auto tok = kite::text::wordpiece_tokenizer::from_file(*model);
        const kite::model::bert_checkpoint ck = kite::model::read_bert(*model);
        const std::size_t seq_len = *max_len > 0
                                        ? *max_len
                                        : kite::model::sentence_encoder<>::configured_max_seq_length(*model, ck.config);
        // Hard negatives: the best BM25 hit of each query that the split does not judge relevant.
        const auto mined = bm25_negatives(ds, *hard_negatives == "bm25" ? 1 : 0);
        std::vector<tr::text_pair> pairs;
        std::size_t negatives = 0;
        for (std::size_t q = 0; q < ds.queries.size(); ++q)
            for (const auto& j : ds.qrels[q])
                if (j.relevance > 0) {
                    tr::text_pair p{tok.encode(ds.queries[q].text, seq_len),
                                    tok.encode(ds.corpus[static_cast<std::size_t>(j.doc)].full_text(), seq_len), {}};
                    if (!mined[q].empty()) {
                        p.negative = tok.encode(ds.corpus[static_cast<std::size_t>(mined[q][0])].full_text(), seq_len);
                        ++negatives;
                    }
                    pairs.push_back(std::move(p));
                }
        if (pairs.size() < 2)
            throw kite::invalid_argument(data->string() + " qrels/" + *split + ".tsv: " + std::to_string(pairs.size()) +
                                         " judged pairs; expected at least 2");
        if (*hard_negatives == "bm25") std::fprintf(stderr, "kite-train: %zu pairs with a BM25 hard negative\n", negatives);
        std::fprintf(stderr, "kite-train: %zu pairs from %zu queries of %s (%s), %zu word pieces at most; %s\n", pairs.size(),
                     ds.queries.size(), data->string().c_str(), split->c_str(), seq_len, model->string().c_str());

        tr::bert_model<float> m(ck);
        tr::mnr_trainer<float> trainer(m, {.batch = *batch, .lr = *lr, .epochs = *epochs, .seed = *seed,
                                           .threads = static_cast<int>(*threads)});
        std::vector<tr::text_pair> used = pairs;
        if (*max_steps > 0 && used.size() > *max_steps * *batch) used.resize(*max_steps * *batch);
        const std::uint64_t steps = trainer.steps_per_epoch(used.size());
        std::fprintf(stderr, "kite-train: %zu parameters, %llu steps per epoch of %zu pairs (load %.1f s)\n",
                     m.parameters().size(), static_cast<unsigned long long>(steps), *batch,
                     std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
        pair_epochs(trainer, used, *epochs, steps, *out, "in-batch accuracy", json,
                    [&](const fs::path& dir) { tr::save_bert(dir, m.to_checkpoint(dir.string()), *model, overwrite); });
        return 0;
    });
}
