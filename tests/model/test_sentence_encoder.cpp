// kite/model/sentence_encoder.hpp: text -> embedding.
//  - On the tiny BERT fixture with a made-up vocabulary: e(text) equals the double-precision
//    reference of its word pieces; batched encoding (bucketed by length, any batch size) keeps
//    input order and equals one-by-one encoding; truncation at max_seq_length; option errors.
//  - On the real all-MiniLM-L6-v2 (models/, fetched by tools/fetch_minilm.py; skipped when
//    absent): tokenization equals Hugging Face's on 200 fixture texts and every embedding equals
//    sentence-transformers' element by element to 2e-6 (tests/fixtures/model/minilm_*, made by
//    tools/encoder_make_fixtures.py). About a second in release; under ASan it is slower
//    (the float32 GEMMs of ~10k tokens) but well inside the budget.

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <fstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "kite/model/encoder_reference.hpp"
#include "kite/model/formats/safetensors.hpp"
#include "kite/model/sentence_encoder.hpp"
#include "kite/retrieval/concepts.hpp"
#include "encoder_test_util.hpp"
#include "kite_test.hpp"

namespace km = kite::model;
using kite::index_t;
using kite::matrix;

static_assert(kite::retrieval::embedder<km::sentence_encoder<>>);
static_assert(kite::retrieval::batch_embedder<km::sentence_encoder<>>);

namespace {

// The tiny fixture's 99 ids: specials where BERT has them (0 [PAD], 1 [UNK], 2 [CLS], 3 [SEP],
// 4 [MASK]), then lower-case words.
const char* const tiny_words[] = {"the", "cat", "sat", "on", "mat", "a", "dog", "ran", "far", "away", "and",
                                  "then", "slept", "##s", "##ed", ".", ",", "!", "?", "red", "blue"};

kite::text::wordpiece_tokenizer tiny_tokenizer() {
    std::string vocab = "[PAD]\n[UNK]\n[CLS]\n[SEP]\n[MASK]\n";
    index_t n = 5;
    for (const char* w : tiny_words) {
        vocab += std::string(w) + "\n";
        ++n;
    }
    for (; n < 99; ++n) {
        vocab += 'w';
        vocab += std::to_string(n);
        vocab += '\n';
    }
    return kite::text::wordpiece_tokenizer::from_vocab_text(vocab);
}

const km::bert_checkpoint& tiny_ckpt() {
    static const km::bert_checkpoint c = km::read_bert(kite::test::fixture("model/bert_tiny"));
    return c;
}

km::sentence_encoder<> tiny_encoder(km::sentence_encoder_options opt = {}) {
    return km::sentence_encoder<>(tiny_tokenizer(), km::bert_encoder<>(tiny_ckpt()), opt);
}

}  // namespace

TEST_CASE("sentence_encoder: one text equals the reference, batches keep order and equal one-by-one", "[model][encoder]") {
    const auto enc = tiny_encoder();
    CHECK(enc.dim() == 32);
    CHECK(enc.options().max_seq_length == 40);  // no sentence_bert_config: the position table
    const std::vector<std::string> texts = {
        "the cat sat on the mat.",
        "a dog ran far away, and then slept!",
        "",
        "red",
        "the cats sat on the mats and the dogs ran far far away then slept slept.",
        "?",
        "unknown words become unk",
    };
    const matrix<float> all = enc.encode(texts);
    REQUIRE(all.rows() == texts.size());
    for (index_t i = 0; i < texts.size(); ++i) {
        INFO("text " << i << ": '" << texts[i] << "'");
        const auto ids = enc.tokenize(texts[i]);
        REQUIRE(ids.front() == 2);
        REQUIRE(ids.back() == 3);
        const auto ref = km::reference::bert_embedding(tiny_ckpt(), ids);
        const std::vector<float> one = enc(texts[i]);
        for (index_t d = 0; d < enc.dim(); ++d) {
            CHECK(one[d] == Approx(ref[d]).margin(2e-5));
            CHECK(all(i, d) == Approx(one[d]).margin(1e-6));
        }
    }
    // Any batch size gives the same rows in the same order.
    for (index_t bs : {1u, 2u, 3u, 64u}) {
        const auto e = tiny_encoder({.batch_size = bs}).encode(texts);
        for (index_t i = 0; i < all.size(); ++i) CHECK(e.flat()[i] == Approx(all.flat()[i]).margin(1e-6));
    }
    CHECK(enc.encode(std::vector<std::string>{}).rows() == 0);
}

TEST_CASE("sentence_encoder truncates at max_seq_length word pieces", "[model][encoder]") {
    const auto enc = tiny_encoder({.max_seq_length = 6});
    const std::string longer = "the cat sat on the mat and the dog ran far away";
    const auto ids = enc.tokenize(longer);
    REQUIRE(ids.size() == 6);  // [CLS] the cat sat on [SEP]
    CHECK(ids.back() == 3);
    const auto e = enc(longer);
    const auto prefix = enc("the cat sat on");
    for (index_t d = 0; d < enc.dim(); ++d) CHECK(e[d] == Approx(prefix[d]).margin(1e-6));
    // Texts longer than the position table are truncated too, not refused.
    std::string huge;
    for (int i = 0; i < 100; ++i) huge += "red blue ";
    CHECK(tiny_encoder().tokenize(huge).size() == 40);
    CHECK(tiny_encoder()(huge).size() == 32);
}

TEST_CASE("sentence_encoder options and models are checked", "[model][encoder]") {
    KITE_REQUIRE_THROWS_CONTAINING(tiny_encoder({.max_seq_length = 41}), kite::invalid_argument,
                                   "max_seq_length = 41; expected 2 to max_positions = 40");
    KITE_REQUIRE_THROWS_CONTAINING(tiny_encoder({.max_seq_length = 1}), kite::invalid_argument, "max_seq_length = 1");
    KITE_REQUIRE_THROWS_CONTAINING(tiny_encoder({.batch_size = 0}), kite::invalid_argument, "batch_size = 0");
    std::string vocab = "[PAD]\n[UNK]\n[CLS]\n[SEP]\n";
    for (int i = 4; i < 120; ++i) {
        vocab += 't';
        vocab += std::to_string(i);
        vocab += '\n';
    }
    KITE_REQUIRE_THROWS_CONTAINING(
        (km::sentence_encoder<>(kite::text::wordpiece_tokenizer::from_vocab_text(vocab), km::bert_encoder<>(tiny_ckpt()))),
        kite::config_error, "the tokenizer has 120 tokens but the model's vocabulary only 99");
    kite::test::temp_dir dir;
    {
        std::ofstream(dir / "sentence_bert_config.json") << R"({"max_seq_length": 1000})";
    }
    KITE_REQUIRE_THROWS_CONTAINING(km::sentence_encoder<>::configured_max_seq_length(dir.path(), tiny_ckpt().config),
                                   kite::config_error, "max_seq_length = 1000");
    {
        std::ofstream(dir / "sentence_bert_config.json") << R"({"max_seq_length": 24, "do_lower_case": false})";
    }
    CHECK(km::sentence_encoder<>::configured_max_seq_length(dir.path(), tiny_ckpt().config) == 24);
}

TEST_CASE("all-MiniLM-L6-v2: kite's embeddings equal sentence-transformers'", "[model][encoder][.minilm]") {
    KITE_NEED_MODEL(weights, "all-MiniLM-L6-v2/model.safetensors", "fetch_minilm.py");
    const auto dir = weights.parent_path();
    std::ifstream f(kite::test::fixture("model/minilm_sentences.json"));
    REQUIRE(f.good());
    const auto fx = nlohmann::json::parse(f);
    const auto texts = fx["texts"].get<std::vector<std::string>>();
    const auto ids = fx["ids"].get<std::vector<std::vector<std::int32_t>>>();
    const km::safetensors_file st(kite::test::fixture("model/minilm_embeddings.safetensors"));
    const auto ref = st.tensor("embeddings").require_shape({200, 384}).to_float();
    REQUIRE(texts.size() == 200);

    const auto enc = km::sentence_encoder<>::load(dir);
    CHECK(enc.options().max_seq_length == 256);  // from sentence_bert_config.json
    CHECK(enc.dim() == 384);
    index_t truncated = 0;
    for (index_t i = 0; i < texts.size(); ++i) {
        INFO("text " << i);
        CHECK(enc.tokenize(texts[i]) == ids[i]);
        truncated += ids[i].size() == 256;
    }
    CHECK(truncated >= 10);  // the fixture exercises truncation

#if defined(__SANITIZE_ADDRESS__)
    // Under AddressSanitizer the encoder runs ~50x slower: every 8th text (the same kernels,
    // one long truncated text among them) keeps the sanitizer run to seconds.
    constexpr index_t stride = 8;
#else
    constexpr index_t stride = 1;
#endif
    std::vector<std::string> sample;
    for (index_t i = 0; i < texts.size(); i += stride) sample.push_back(texts[i]);
    const matrix<float> emb = enc.encode(sample);
    kite::test::running_min worst;
    for (index_t j = 0; j < sample.size(); ++j) {
        const index_t i = j * stride;
        const std::span<const float> want(ref.data() + i * 384, 384);
        INFO("text " << i);
        // Measured (release build, 2026-12-03, float32 fixture): max |kite - sentence-transformers|
        // 3.7e-7 over all 200 texts (unit vectors of 384 elements, |e| ~ 0.05); worst 1 - cosine
        // 2.0e-12 (text 64).
        CHECK(kite::test::max_abs_diff(emb.row(j), want) <= 2e-6);
        worst.add(kite::test::cosine(emb.row(j), want), i);
    }
    INFO("worst cosine: 1 - " << 1 - worst.value() << " (text " << worst.at() << ")");
    CHECK(worst.value() >= 1 - 2e-11);
    // The single-text form equals the batched one.
    for (index_t j : {index_t(0), sample.size() / 2, sample.size() - 1}) {
        const auto one = enc(sample[j]);
        for (index_t d = 0; d < 384; ++d) CHECK(one[d] == Approx(emb(j, d)).margin(1e-5));
    }
}

TEST_CASE("all-MiniLM-L6-v2 with w8a8_packed weights stays close to sentence-transformers", "[model][encoder][.minilm][i8]") {
    KITE_NEED_MODEL(weights, "all-MiniLM-L6-v2/model.safetensors", "fetch_minilm.py");
    const auto dir = weights.parent_path();
    std::ifstream f(kite::test::fixture("model/minilm_sentences.json"));
    REQUIRE(f.good());
    const auto texts = nlohmann::json::parse(f)["texts"].get<std::vector<std::string>>();
    const km::safetensors_file st(kite::test::fixture("model/minilm_embeddings.safetensors"));
    const auto ref = st.tensor("embeddings").require_shape({200, 384}).to_float();
#if defined(__SANITIZE_ADDRESS__)
    constexpr index_t stride = 8;
#else
    constexpr index_t stride = 1;
#endif
    std::vector<std::string> sample;
    for (index_t i = 0; i < texts.size(); i += stride) sample.push_back(texts[i]);
    const auto enc = km::sentence_encoder<kite::quant::w8a8_packed>::load(dir);
    const matrix<float> emb = enc.encode(sample);
    kite::test::running_min worst;
    kite::test::running_max worst_abs;
    double sum = 0;
    for (index_t j = 0; j < sample.size(); ++j) {
        const std::span<const float> want(ref.data() + j * stride * 384, 384);
        const double c = kite::test::cosine(emb.row(j), want);
        worst.add(c, j * stride);
        worst_abs.add(kite::test::max_abs_diff(emb.row(j), want).value, j * stride);
        sum += c;
    }
    // Measured when the test was written: worst 0.9839 (a short, unusual fixture text), mean 0.9968;
    // on SciFact documents the worst is 0.9958 (README, benchmark note 8). Element-wise, the
    // largest |kite - sentence-transformers| is 0.031 (measured 2026-12-03).
    INFO("w8a8: worst cosine " << worst.value() << " (text " << worst.at() << "), mean "
                               << sum / static_cast<double>(sample.size()) << ", max abs " << worst_abs.value());
    CHECK(worst.value() >= 0.98);
    CHECK(sum / static_cast<double>(sample.size()) >= 0.995);
    CHECK(worst_abs.value() <= 0.08);
    CHECK(worst.value() < 0.99999);  // int8 really ran
}
