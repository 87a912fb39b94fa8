#pragma once
// fuzz_beir: a BEIR folder (kite/retrieval/datasets.hpp). The input holds the three files
// separated by kite::fuzz::part_separator ("\n#####\n"): corpus.jsonl, queries.jsonl,
// qrels/test.tsv; a file the input does not reach is absent from the folder.

#include <cstdint>

#include "fuzz_common.hpp"
#include "kite/retrieval/datasets.hpp"

namespace kite::fuzz {

inline int fuzz_beir(const std::uint8_t* data, std::size_t size) {
    if (size > max_input) return 0;
    const auto parts = split_parts(as_text(data, size), part_separator);
    const auto dir = fresh_scratch_dir("beir");
    static constexpr const char* names[] = {"corpus.jsonl", "queries.jsonl", "qrels/test.tsv"};
    for (std::size_t i = 0; i < parts.size() && i < 3; ++i) write_scratch(std::string("beir/") + names[i], parts[i]);
    guarded([&] { (void)retrieval::data::load_beir_queries(dir, "test"); });
    return guarded([&] {
        const auto d = retrieval::data::load_beir(dir, "test");
        (void)d.doc_ids();
        for (const auto& doc : d.corpus) (void)doc.full_text();
    });
}

}  // namespace kite::fuzz
