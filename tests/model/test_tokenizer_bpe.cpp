// kite/text/bpe.hpp: ids equal Hugging Face tokenizers' on the fixture strings for byte-level BPE
// tokenizers of each style (trained by tools/model_tokenizer_fixtures.py); the hand-written
// GPT-2 regex cuts the text where tokenizers does; bad tokenizer.json files are refused.

#include <string>
#include <vector>

#include "kite/text/bpe.hpp"
#include "tokenizer_test_util.hpp"

using kite::text::bpe_tokenizer;

namespace {

void check_style(const std::string& style) {
    const auto dir = kite::test::fixture("model/tokenizers");
    const bpe_tokenizer tok(dir / ("bpe_" + style + ".json"));
    const auto fx = kite::test::read_json(dir / ("bpe_" + style + "_ids.json"));
    const auto& strings = kite::test::tokenizer_strings();
    const auto& cases = fx["cases"];
    REQUIRE(cases.size() <= strings.size());
    std::vector<std::int32_t> ids;
    std::size_t mismatches = 0;
    for (std::size_t i = 0; i < cases.size(); ++i) {
        const auto& c = cases[i];
        const std::string& text = strings[i];
        INFO(style << " string " << i << ": '" << text << "'");
        const auto want = kite::test::ids_of(c["ids"]);
        tok.encode_into(text, ids);
        CHECK(ids == want);
        mismatches += ids != want;
        const std::string decoded = c.contains("decoded") ? c["decoded"].get<std::string>() : text;
        const std::string skipped = c.contains("decoded_skip") ? c["decoded_skip"].get<std::string>() : decoded;
        CHECK(tok.decode(want) == decoded);
        CHECK(tok.decode(want, true) == skipped);
        if (c.contains("pieces")) {
            std::vector<std::size_t> cuts;
            tok.pre_tokenize(text, [&](std::string_view p) { cuts.push_back(p.size()); });
            CHECK(cuts == c["pieces"].get<std::vector<std::size_t>>());
        }
    }
    CHECK(mismatches == 0);
}

}  // namespace

TEST_CASE("bpe: GPT-2 style (ByteLevel regex) equals tokenizers", "[model][tokenizer][bpe]") {
    check_style("gpt2");
    check_style("gpt2_prefix");
}

TEST_CASE("bpe: Llama 3 style (Split regex, \\p{N}{1,3}, ignore_merges, template) equals tokenizers",
          "[model][tokenizer][bpe]") {
    check_style("llama3");
    const bpe_tokenizer tok(kite::test::fixture("model/tokenizers/bpe_llama3.json"));
    CHECK(tok.encode("hi").front() == *tok.token_to_id("<|begin_of_text|>"));
    CHECK(tok.encode("hi", false).front() != *tok.token_to_id("<|begin_of_text|>"));
}

#ifdef KITE_WITH_TEXT
TEST_CASE("bpe: Qwen2 style (NFC, Split regex, added tokens) equals tokenizers", "[model][tokenizer][bpe]") {
    check_style("qwen2");
}
#else
TEST_CASE("bpe: the NFC normalizer needs kite::text", "[model][tokenizer][bpe]") {
    KITE_REQUIRE_THROWS_CONTAINING(bpe_tokenizer(kite::test::fixture("model/tokenizers/bpe_qwen2.json")),
                                   kite::config_error, "utf8proc");
}
#endif

TEST_CASE("bpe: vocabulary access, errors and bad tokenizer.json", "[model][tokenizer][bpe]") {
    const auto path = kite::test::fixture("model/tokenizers/bpe_gpt2.json");
    const bpe_tokenizer tok(path);
    CHECK(tok.vocab_size() == 700);
    const auto eot = tok.token_to_id("<|endoftext|>");
    REQUIRE(eot.has_value());
    CHECK(tok.id_to_token(*eot) == "<|endoftext|>");
    CHECK(tok.encode("a<|endoftext|>b") ==
          std::vector<std::int32_t>{*tok.token_to_id("a"), *eot, *tok.token_to_id("b")});
    CHECK(tok.decode(std::vector<std::int32_t>{*eot}, true).empty());
    KITE_REQUIRE_THROWS_CONTAINING(tok.id_to_token(700), kite::invalid_argument, "700");
    KITE_REQUIRE_THROWS_CONTAINING(tok.encode("ok \xC3("), kite::unicode_error, "byte offset 3");
    // Partial UTF-8 decodes to U+FFFD, as tokenizers' from_utf8_lossy.
    const auto ids = tok.encode("\u0F00");  // U+0F00: three bytes the small vocabulary never merged
    REQUIRE(ids.size() == 3);
    CHECK(tok.decode(std::vector<std::int32_t>{ids[0], ids[1]}) == "\xEF\xBF\xBD");
    CHECK(tok.decode(std::vector<std::int32_t>{ids[1], ids[0]}) == "\xEF\xBF\xBD\xEF\xBF\xBD");
    CHECK(tok.decode_bytes(std::vector<std::int32_t>{ids[0]}) == "\xE0");
    CHECK(tok.decode(ids) == "\u0F00");

    const auto base = kite::test::read_json(path);
    const auto refused = [&](const std::function<void(nlohmann::json&)>& edit, const char* message) {
        auto j = base;
        edit(j);
        KITE_REQUIRE_THROWS_CONTAINING(bpe_tokenizer::from_json(j, "edited.json"), kite::config_error, message);
    };
    refused([](auto& j) { j["model"]["type"] = "WordPiece"; }, "\"WordPiece\"");
    refused([](auto& j) { j["model"]["dropout"] = 0.1; }, "dropout");
    refused([](auto& j) { j["model"]["byte_fallback"] = true; }, "byte_fallback");
    refused([](auto& j) { j["model"]["merges"][0] = "nospace"; }, "merge 0");
    refused([](auto& j) { j["model"]["merges"].push_back(nlohmann::json::array({"zz", "qq"})); }, "not in the vocabulary");
    refused([](auto& j) { j["model"]["vocab"]["x"] = -1; }, "'x'");
    refused([](auto& j) { j["normalizer"] = {{"type", "Lowercase"}}; }, "\"Lowercase\"");
    refused([](auto& j) { j["pre_tokenizer"] = {{"type", "Whitespace"}}; }, "\"Whitespace\"");
    refused([](auto& j) { j["pre_tokenizer"] = nullptr; }, "pre_tokenizer");
    refused([](auto& j) { j["added_tokens"][0]["single_word"] = true; }, "single_word");
    refused([](auto& j) { j["post_processor"] = {{"type", "Weird"}}; }, "\"Weird\"");
    auto qwen = kite::test::read_json(kite::test::fixture("model/tokenizers/bpe_qwen2.json"));
    qwen.erase("normalizer");
    qwen["pre_tokenizer"]["pretokenizers"][0]["pattern"]["Regex"] = "\\w+";
    KITE_REQUIRE_THROWS_CONTAINING(bpe_tokenizer::from_json(qwen, "q.json"), kite::config_error, "not the GPT-2, Qwen2 or Llama 3 regex");
}

TEST_CASE("bpe: lstrip and rstrip added tokens", "[model][tokenizer][bpe]") {
    auto j = kite::test::read_json(kite::test::fixture("model/tokenizers/bpe_gpt2.json"));
    j["added_tokens"][0]["lstrip"] = true;
    j["added_tokens"][0]["rstrip"] = true;
    const bpe_tokenizer tok = bpe_tokenizer::from_json(j);
    const std::int32_t eot = *tok.token_to_id("<|endoftext|>");
    // The spaces around the token are absorbed by it.
    CHECK(tok.encode("a  <|endoftext|> \u00a0b") ==
          std::vector<std::int32_t>{*tok.token_to_id("a"), eot, *tok.token_to_id("b")});
}
