// kite/text/wordpiece.hpp: ids equal all-MiniLM-L6-v2's Hugging Face tokenizer on the fixture
// strings, with a reduced vocabulary (committed) and with the real vocab.txt / tokenizer.json
// when tools/fetch_minilm.py has put them in models/.

#include <cstdlib>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "kite/text/wordpiece.hpp"
#include "tokenizer_test_util.hpp"

using kite::text::wordpiece_tokenizer;

namespace {

void check_fixture(const wordpiece_tokenizer& tok, const std::string& what) {
    const auto fx = kite::test::read_json(kite::test::fixture("model/tokenizers/wordpiece_minilm_ids.json"));
    const auto& strings = kite::test::tokenizer_strings();
    REQUIRE(fx["cases"].size() == strings.size());
    std::vector<std::int32_t> ids;
    std::size_t mismatches = 0;
    for (std::size_t i = 0; i < strings.size(); ++i) {
        INFO(what << ", string " << i << ": '" << strings[i] << "'");
        const auto want = kite::test::ids_of(fx["cases"][i]["ids"]);
        tok.encode_into(strings[i], ids);
        CHECK(ids == want);
        mismatches += ids != want;
    }
    CHECK(mismatches == 0);
    for (const auto& t : fx["truncation"]) {
        const auto max_len = t["max_length"].get<std::size_t>();
        INFO(what << ", truncation to " << max_len);
        CHECK(tok.encode(t["text"].get<std::string>(), max_len) == kite::test::ids_of(t["ids"]));
    }
}

}  // namespace

TEST_CASE("wordpiece: equals tokenizers (reduced MiniLM vocabulary)", "[model][tokenizer][wordpiece]") {
    const auto tok = wordpiece_tokenizer::from_file(kite::test::fixture("model/tokenizers/wordpiece_minilm_reduced.json"));
    CHECK(tok.cls_id() == 101);
    CHECK(tok.sep_id() == 102);
    CHECK(tok.unk_id() == 100);
    CHECK(tok.pad_id() == 0);
    check_fixture(tok, "reduced vocabulary");
}

TEST_CASE("wordpiece: equals tokenizers (full all-MiniLM-L6-v2 files)", "[model][tokenizer][wordpiece][.minilm]") {
    KITE_NEED_MODEL(vocab, "all-MiniLM-L6-v2/vocab.txt", "fetch_minilm.py");
    const auto dir = vocab.parent_path();
    const auto from_vocab = wordpiece_tokenizer::from_file(dir / "vocab.txt");
    CHECK(from_vocab.vocab_size() == 30522);
    check_fixture(from_vocab, "vocab.txt");
    check_fixture(wordpiece_tokenizer::from_file(dir), "tokenizer.json");
}

TEST_CASE("wordpiece: normalization and pre-tokenization", "[model][tokenizer][wordpiece]") {
    const auto tok = wordpiece_tokenizer::from_vocab_text("[PAD]\n[UNK]\n[CLS]\n[SEP]\n[MASK]\nhello\nworld\n##s\n,\n!\n");
    using words = std::vector<std::string>;
    CHECK(tok.words("Hello, World!") == words{"hello", ",", "world", "!"});
    CHECK(tok.words("  Café\tNAÏVE\u00a0x") == words{"cafe", "naive", "x"});
    CHECK(tok.words("a\u200bb c\x01" "d") == words{"ab", "cd"});              // format and control characters removed
    CHECK(tok.words("日本語") == words{"日", "本", "語"});                     // one word per CJK ideograph
    CHECK(tok.words("x[MASK]y") == words{"x", "[MASK]", "y"});               // specials before anything else
    CHECK(tok.words("\u0130stanbul") == words{"istanbul"});
    CHECK(tok.words("e\u0301\u0327") == words{"e"});
    CHECK(tok.words("\u037e") == words{";"});  // Greek question mark: NFD gives ';', punctuation
    CHECK(tok.encode("hello worlds") == std::vector<std::int32_t>{2, 5, 6, 7, 3});
    CHECK(tok.encode("hello xyz") == std::vector<std::int32_t>{2, 5, 1, 3});
    CHECK(tok.encode("hello", 0, false) == std::vector<std::int32_t>{5});
    CHECK(tok.encode(std::string(101, 'a')) == std::vector<std::int32_t>{2, 1, 3});
    CHECK(tok.encode("hello world hello", 3) == std::vector<std::int32_t>{2, 5, 3});
    CHECK(tok.encode("hello world hello", 2) == std::vector<std::int32_t>{2, 3});
    CHECK(tok.encode("") == std::vector<std::int32_t>{2, 3});
    KITE_REQUIRE_THROWS_CONTAINING(tok.encode("hello", 1), kite::invalid_argument, "max_length = 1");
    KITE_REQUIRE_THROWS_CONTAINING(tok.encode("bad \xFF"), kite::unicode_error, "byte offset 4");
    KITE_REQUIRE_THROWS_CONTAINING(wordpiece_tokenizer::from_vocab_text("a\nb\n", {}, "tiny.txt"), kite::format_error,
                                   "tiny.txt: the vocabulary lacks the unknown token '[UNK]'");
    KITE_REQUIRE_THROWS_CONTAINING(tok.id_to_token(10), kite::invalid_argument, "10");
    CHECK(tok.id_to_token(7) == "##s");
    // max_input_chars_per_word must be a positive integer (fuzzing found 1e88, which no size_t holds).
    for (const char* bad : {"1.1e88", "-5", "0", "2.5", "\"many\""}) {
        const auto j = nlohmann::json::parse(std::string(R"({"model": {"type": "WordPiece", "unk_token": "[UNK]", "vocab": {"[UNK]": 0}, "max_input_chars_per_word": )") +
                                             bad + "}}");
        KITE_REQUIRE_THROWS_CONTAINING(wordpiece_tokenizer::from_json(j, "bad.json"), kite::config_error,
                                       "max_input_chars_per_word");
    }
}
