// kite-train: fine-tune a sentence encoder (all-MiniLM-L6-v2 or any BERT sentence-transformers
// folder) on a BEIR data set's judged (query, passage) pairs with the multiple-negatives-ranking
// loss (kite/train/mnr.hpp), on the CPU, and write a checkpoint folder after every epoch that
// kite-eval --dense minilm --model DIR and sentence-transformers read.
//
//   kite-train mnr --data $KITE_DATA/scifact --split train --model models/all-MiniLM-L6-v2 \
//                  --out runs/scifact-mnr --epochs 1 --batch 32 --lr 2e-5 --threads 2
//   kite-eval --data $KITE_DATA/scifact --retriever dense --dense minilm --model runs/scifact-mnr/epoch-1
//
// Pairs: every judged (query, document) of qrels/<split>.tsv with relevance > 0; the passage is
// the document's title and text. Progress goes to stderr (step, loss, in-batch accuracy, pairs/s,
// time left); --json prints one summary object per epoch on stdout.
#include <kite/model/formats/bert_loader.hpp>
#include <kite/model/sentence_encoder.hpp>
#include <kite/retrieval/datasets.hpp>
#include <kite/text/wordpiece.hpp>
#include <kite/train.hpp>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "cli.hpp"

namespace fs = std::filesystem;
namespace tr = kite::train;

int main(int argc, char** argv) {
    kite::cli::parser cli("kite-train", "Fine-tune a BERT sentence encoder on a BEIR data set's judged pairs (MNR loss), on the CPU.");
    auto& mode = cli.positional<std::string>("MODE", "what to train: mnr (a bi-encoder with multiple-negatives ranking)").choices({"mnr"});
    auto& data = cli.option<fs::path>("--data", "DIR", "a BEIR folder (corpus.jsonl, queries.jsonl, qrels/SPLIT.tsv)").required();
    auto& split = cli.option<std::string>("--split", "NAME", "the qrels file whose pairs are trained on", std::string("train"));
    auto& model = cli.option<fs::path>("--model", "DIR", "the encoder's folder (config.json, model.safetensors, tokenizer)",
                                       fs::path("models/all-MiniLM-L6-v2"));
    auto& out = cli.option<fs::path>("--out", "DIR", "where epoch-1, epoch-2, ... are written").required();
    auto& epochs = cli.option<std::size_t>("--epochs", "N", "passes over the pairs", 1).range(1, 1000);
    auto& batch = cli.option<std::size_t>("--batch", "N", "pairs per step (the other pairs are the negatives)", 32).range(2, 4096);
    auto& lr = cli.option<double>("--lr", "RATE", "peak learning rate (AdamW; 10% warm-up, then linear decay)", 2e-5);
    auto& max_len = cli.option<std::size_t>("--max-seq-length", "N", "word pieces per text (default: the model's)", 0).range(0, 100000);
    auto& seed = cli.option<std::size_t>("--seed", "N", "shuffling seed", 42);
    auto& threads = cli.option<std::size_t>("--threads", "N", "threads (0: all)", 0).range(0, 1024);
    auto& max_steps = cli.option<std::size_t>("--max-steps", "N", "stop each epoch after N steps (0: no limit; for trials)", 0);
    auto& overwrite = cli.flag("--overwrite", "replace checkpoint folders that exist");
    auto& json = cli.flag("--json", "one JSON summary per epoch on stdout");
    cli.epilog("Exit status: 0 done, 1 a file cannot be read or written, 2 usage.");
    return kite::cli::run(cli, argc, argv, [&] {
        (void)mode;
        if (!(*lr > 0) || !std::isfinite(*lr)) throw kite::cli::usage_error("--lr: expected a finite rate > 0, got " + std::to_string(*lr));
        if (!fs::is_regular_file(*model / "config.json"))
            throw kite::not_found_error("--model: no config.json in " + model->string() +
                                        " (all-MiniLM-L6-v2: python3 tools/fetch_minilm.py)");
        if (*threads > 0) kite::set_num_threads(static_cast<int>(*threads));

        const auto t0 = std::chrono::steady_clock::now();
        const kite::retrieval::data::dataset ds = kite::retrieval::data::load_beir(*data, *split);
        const auto tok = kite::text::wordpiece_tokenizer::from_file(*model);
        const kite::model::bert_checkpoint ck = kite::model::read_bert(*model);
        const std::size_t seq_len = *max_len > 0
                                        ? *max_len
                                        : kite::model::sentence_encoder<>::configured_max_seq_length(*model, ck.config);
        std::vector<tr::text_pair> pairs;
        for (std::size_t q = 0; q < ds.queries.size(); ++q)
            for (const auto& j : ds.qrels[q])
                if (j.relevance > 0)
                    pairs.push_back({tok.encode(ds.queries[q].text, seq_len),
                                     tok.encode(ds.corpus[static_cast<std::size_t>(j.doc)].full_text(), seq_len)});
        if (pairs.size() < 2)
            throw kite::invalid_argument(data->string() + " qrels/" + *split + ".tsv: " + std::to_string(pairs.size()) +
                                         " judged pairs; expected at least 2");
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
        for (std::size_t e = 1; e <= *epochs; ++e) {
            double busy = 0, correct = 0, seen = 0;
            const double mean_loss = trainer.epoch(used, [&](const tr::step_report& s) {
                busy += s.seconds;
                correct += static_cast<double>(s.correct);
                seen += static_cast<double>(s.pairs);
                const std::uint64_t in_epoch = (s.step - 1) % steps + 1;
                const double left = busy / static_cast<double>(in_epoch) * static_cast<double>(s.total_steps - s.step);
                std::fprintf(stderr, "\repoch %zu/%zu  step %llu/%llu  loss %.4f  acc %.3f  %.1f pairs/s  %.0f s left   ", e, *epochs,
                             static_cast<unsigned long long>(in_epoch), static_cast<unsigned long long>(steps), s.loss,
                             static_cast<double>(s.correct) / static_cast<double>(s.pairs), seen / busy, left);
            });
            std::fprintf(stderr, "\n");
            const fs::path dir = *out / ("epoch-" + std::to_string(e));
            fs::create_directories(*out);
            tr::save_bert(dir, m.to_checkpoint(dir.string()), *model, overwrite);
            std::fprintf(stderr, "kite-train: epoch %zu: mean loss %.4f, in-batch accuracy %.3f, %.2f pairs/s; wrote %s\n", e,
                         mean_loss, correct / seen, seen / busy, dir.string().c_str());
            if (json)
                std::printf("%s\n", nlohmann::json{{"epoch", e}, {"mean_loss", mean_loss}, {"accuracy", correct / seen},
                                                   {"pairs_per_second", seen / busy}, {"seconds", busy},
                                                   {"pairs", static_cast<std::size_t>(seen)}, {"checkpoint", dir.string()}}
                                        .dump()
                                        .c_str());
        }
        return 0;
    });
}
