#pragma once
// Helpers shared by the decoder tests: logit comparisons and the KV-cache-versus-recompute check.

#include <span>

#include "kite/kv/concepts.hpp"
#include "kite/model/decoder.hpp"
#include "kite_test.hpp"

namespace kite::test {

// Decodes `tokens` one at a time after a prefill of the first `split` and compares the logits of
// every step with the full recompute of the same prefix.
template <class Model>
void check_cache_equals_recompute(Model& model, std::span<const std::int32_t> tokens, kite::index_t split, double tol) {
    const kite::matrix<float> full = model.forward(tokens);
    auto cache = model.make_cache(tokens.size());
    const auto s = *cache.add_sequence();
    kite::matrix<float> pre(split, model.vocab_size());
    REQUIRE(model.prefill(cache, s, tokens.first(split), pre.view()) == kite::kv::status::ok);
    CHECK(max_abs_diff(pre.view(), full.view().rows_slice(0, split)) <= tol);
    kite::matrix<float> step(1, model.vocab_size());
    const kite::kv::seq_id seqs[1] = {s};
    for (kite::index_t t = split; t < tokens.size(); ++t) {
        REQUIRE(model.decode(cache, seqs, tokens.subspan(t, 1), step.view()) == kite::kv::status::ok);
        INFO("position " << t);
        CHECK(max_abs_diff(step.view(), full.view().rows_slice(t, 1)) <= tol);
    }
    CHECK(cache.length(s) == tokens.size());
}

}  // namespace kite::test
