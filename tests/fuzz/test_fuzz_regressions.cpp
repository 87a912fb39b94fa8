// Replays tests/fuzz/corpus/<target>/ (the seeds) and tests/fuzz/regressions/<target>/ (inputs
// that once crashed a fuzz target, minimised) through the fuzz targets' bodies, compiled here
// without libFuzzer, in the normal build: every input must end in success or a kite::error
// (which the bodies swallow), never another exception, a crash or a sanitizer report.

#include <algorithm>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include "kite_test.hpp"

#include "fuzz_beir.hpp"
#include "fuzz_bm25.hpp"
#include "fuzz_chat_template.hpp"
#include "fuzz_config.hpp"
#include "fuzz_faiss.hpp"
#include "fuzz_gguf.hpp"
#include "fuzz_hf_checkpoint.hpp"
#include "fuzz_klue.hpp"
#include "fuzz_llama2c.hpp"
#include "fuzz_llama2c_tokenizer.hpp"
#include "fuzz_npy.hpp"
#include "fuzz_openai.hpp"
#include "fuzz_quant.hpp"
#include "fuzz_safetensors.hpp"
#include "fuzz_vecs.hpp"
#ifdef KITE_WITH_TEXT
#include "fuzz_analyzers.hpp"
#include "fuzz_bpe.hpp"
#include "fuzz_gguf_tokenizer.hpp"
#include "fuzz_wordpiece.hpp"
#endif

namespace {

namespace fs = std::filesystem;
using fuzz_fn = int (*)(const std::uint8_t*, std::size_t);

/// The files of tests/fuzz/<kind>/<target>/, sorted (none when the folder is absent).
std::vector<fs::path> inputs(const char* kind, const std::string& target) {
    std::vector<fs::path> out;
    const fs::path dir = fs::path(KITE_FUZZ_DIR) / kind / target;
    if (!fs::is_directory(dir)) return out;
    for (const auto& e : fs::recursive_directory_iterator(dir))
        if (e.is_regular_file()) out.push_back(e.path());
    std::sort(out.begin(), out.end());
    return out;
}

std::vector<std::uint8_t> read_bytes(const fs::path& p) {
    std::ifstream in(p, std::ios::binary);
    return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

/// Feeds every seed and regression input of `target` to `fn`; returns how many seeds there were.
std::size_t replay(const std::string& target, fuzz_fn fn) {
    std::size_t seeds = 0;
    for (const char* kind : {"corpus", "regressions"}) {
        for (const auto& p : inputs(kind, target)) {
            INFO("input " << p.string());
            const auto bytes = read_bytes(p);
            CHECK_NOTHROW(fn(bytes.data(), bytes.size()));
            if (std::string(kind) == "corpus") ++seeds;
        }
    }
    return seeds;
}

struct target_entry {
    const char* name;
    fuzz_fn fn;
};

}  // namespace

TEST_CASE("fuzz targets accept their seeds and every regression input", "[fuzz]") {
    const target_entry targets[] = {
        {"gguf", kite::fuzz::fuzz_gguf},
        {"npy", kite::fuzz::fuzz_npy},
        {"vecs", kite::fuzz::fuzz_vecs},
        {"faiss", kite::fuzz::fuzz_faiss},
        {"safetensors", kite::fuzz::fuzz_safetensors},
        {"config", kite::fuzz::fuzz_config},
        {"beir", kite::fuzz::fuzz_beir},
        {"klue", kite::fuzz::fuzz_klue},
        {"openai", kite::fuzz::fuzz_openai},
        {"llama2c", kite::fuzz::fuzz_llama2c},
        {"bm25", kite::fuzz::fuzz_bm25},
        {"quant", kite::fuzz::fuzz_quant},
        {"hf_checkpoint", kite::fuzz::fuzz_hf_checkpoint},
        {"chat_template", kite::fuzz::fuzz_chat_template},
        {"llama2c_tokenizer", kite::fuzz::fuzz_llama2c_tokenizer},
#ifdef KITE_WITH_TEXT
        {"gguf_tokenizer", kite::fuzz::fuzz_gguf_tokenizer},
        {"wordpiece", kite::fuzz::fuzz_wordpiece},
        {"bpe", kite::fuzz::fuzz_bpe},
        {"analyzers", kite::fuzz::fuzz_analyzers},
#endif
    };
    for (const auto& t : targets) {
        SECTION(t.name) {
            const std::size_t seeds = replay(t.name, t.fn);
            CHECK(seeds > 0);  // the seed corpus is committed; an empty one means a lost folder
        }
    }
}

TEST_CASE("fuzz targets accept the empty input and short garbage", "[fuzz]") {
    const std::vector<std::vector<std::uint8_t>> inputs = {
        {}, {0}, {'G', 'G', 'U', 'F'}, {'{', '}'}, {0x93, 'N', 'U', 'M', 'P', 'Y'}, {0xFF, 0xFE, 0xC0, 0x80}};
    const fuzz_fn fns[] = {
        kite::fuzz::fuzz_gguf, kite::fuzz::fuzz_npy, kite::fuzz::fuzz_vecs, kite::fuzz::fuzz_faiss,
        kite::fuzz::fuzz_safetensors, kite::fuzz::fuzz_config, kite::fuzz::fuzz_beir, kite::fuzz::fuzz_klue,
        kite::fuzz::fuzz_openai, kite::fuzz::fuzz_llama2c, kite::fuzz::fuzz_bm25, kite::fuzz::fuzz_quant,
        kite::fuzz::fuzz_hf_checkpoint, kite::fuzz::fuzz_chat_template, kite::fuzz::fuzz_llama2c_tokenizer,
#ifdef KITE_WITH_TEXT
        kite::fuzz::fuzz_gguf_tokenizer, kite::fuzz::fuzz_wordpiece, kite::fuzz::fuzz_bpe, kite::fuzz::fuzz_analyzers,
#endif
    };
    for (const auto fn : fns)
        for (const auto& in : inputs) CHECK_NOTHROW(fn(in.data(), in.size()));
}
