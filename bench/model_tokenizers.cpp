// kite's side of bench/model_tokenizers_vs_hf.py: encodes every SciFact document (title + " " +
// text) on one thread and prints one JSON object per tokenizer: documents, ids, an FNV-1a hash
// of all ids (the script checks it against Hugging Face tokenizers'), and the median time of
// --passes passes (after a warm-up pass; documents already in memory).
//   wordpiece: [CLS] ... [SEP], truncated at 256 like sentence-transformers' MiniLM;
//   bpe (with --bpe FILE): a byte-level BPE tokenizer.json, no truncation.
//
// Usage: bench_model_tokenizers DATA_DIR VOCAB [--passes 5] [--max-length 256] [--bpe FILE]
//   DATA_DIR holds scifact/corpus.jsonl; VOCAB is vocab.txt or tokenizer.json (or their folder).
#include <kite/text/bpe.hpp>
#include <kite/text/wordpiece.hpp>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "bench_util.hpp"

namespace {

template <class Encode>
void run(const char* name, const std::vector<std::string>& docs, std::size_t bytes, int passes, Encode&& encode) {
    std::vector<std::int32_t> ids;
    std::uint64_t hash = 1469598103934665603ull;
    std::size_t total_ids = 0;
    for (const auto& d : docs) {  // warm-up pass, also the checksum
        encode(d, ids);
        total_ids += ids.size();
        for (const std::int32_t id : ids) hash = (hash ^ static_cast<std::uint32_t>(id)) * 1099511628211ull;
        hash = (hash ^ 0xFFFFFFFFu) * 1099511628211ull;  // document boundary
    }
    std::vector<double> times;
    for (int p = 0; p < passes; ++p) {
        const auto t0 = std::chrono::steady_clock::now();
        std::size_t n = 0;
        for (const auto& d : docs) {
            encode(d, ids);
            n += ids.size();
        }
        times.push_back(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
        if (n != total_ids) std::exit(3);
    }
    std::sort(times.begin(), times.end());
    const double t = times[times.size() / 2];
    std::printf("{\"engine\": \"kite\", \"tokenizer\": \"%s\", \"documents\": %zu, \"bytes\": %zu, \"ids\": %zu, "
                "\"hash\": \"%016llx\", \"seconds\": %.6f, \"docs_per_s\": %.1f, \"mb_per_s\": %.2f}\n",
                name, docs.size(), bytes, total_ids, static_cast<unsigned long long>(hash), t, docs.size() / t,
                bytes / t / 1e6);
}

}  // namespace

int main(int argc, char** argv) {
    kite::bench::host_setup(argc, argv);  // --tuning=intel|zen; names the host
    if (argc < 3) {
        std::fprintf(stderr, "usage: %s DATA_DIR VOCAB [--passes 5] [--max-length 256]\n", argv[0]);
        return 2;
    }
    int passes = 5;
    std::size_t max_length = 256;
    std::string bpe_path;
    for (int i = 3; i + 1 < argc; i += 2) {
        const std::string a = argv[i];
        if (a == "--passes") passes = std::atoi(argv[i + 1]);
        if (a == "--max-length") max_length = static_cast<std::size_t>(std::atoll(argv[i + 1]));
        if (a == "--bpe") bpe_path = argv[i + 1];
    }
    std::fprintf(stderr, "host: %s\n", kite::cpu::describe().c_str());  // stdout holds only the JSON
    std::ifstream in(std::filesystem::path(argv[1]) / "scifact" / "corpus.jsonl");
    if (!in) {
        std::fprintf(stderr, "cannot read %s/scifact/corpus.jsonl\n", argv[1]);
        return 1;
    }
    std::vector<std::string> docs;
    std::size_t bytes = 0;
    for (std::string line; std::getline(in, line);) {
        const auto j = nlohmann::json::parse(line);
        docs.push_back(j["title"].get<std::string>() + " " + j["text"].get<std::string>());
        bytes += docs.back().size();
    }
    const auto wp = kite::text::wordpiece_tokenizer::from_file(argv[2]);
    run("wordpiece", docs, bytes, passes,
        [&](const std::string& d, std::vector<std::int32_t>& ids) { wp.encode_into(d, ids, max_length); });
    if (!bpe_path.empty()) {
        const kite::text::bpe_tokenizer bpe(bpe_path);
        run("bpe", docs, bytes, passes, [&](const std::string& d, std::vector<std::int32_t>& ids) { bpe.encode_into(d, ids); });
    }
    return 0;
}
