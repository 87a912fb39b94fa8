#pragma once
// fuzz_klue: KLUE STS's JSON file (kite/retrieval/datasets.hpp, load_klue_sts).

#include <cstdint>

#include "fuzz_common.hpp"
#include "kite/retrieval/datasets.hpp"

namespace kite::fuzz {

inline int fuzz_klue(const std::uint8_t* data, std::size_t size) {
    if (size > max_input) return 0;
    const auto path = write_scratch("klue/klue-sts-v1.1_dev.json", as_text(data, size));
    (void)guarded([&] {  // the labelled split reads labels.label too
        const auto d = retrieval::data::load_klue_sts(path, "dev-test");
        (void)d.query_ids();
    });
    return guarded([&] {
        const auto d = retrieval::data::load_klue_sts(path);
        (void)d.query_ids();
    });
}

}  // namespace kite::fuzz
