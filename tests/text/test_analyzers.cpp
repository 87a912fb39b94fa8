// kite/text analyzers: golden fixtures (Python unicodedata, PyStemmer), the ASCII fast path
// against the whole-text reference on random text, invalid UTF-8, thread safety.
#include <kite/core/io.hpp>
#include <kite/core/parallel.hpp>
#include <kite/text.hpp>

#include <nlohmann/json.hpp>

#include <random>
#include <string>
#include <vector>

#include "kite_test.hpp"

using kite::text::cjk_bigram;
using kite::text::english;
using kite::text::unicode_words;

static_assert(kite::text::analyzer<unicode_words>);
static_assert(kite::text::analyzer<english>);
static_assert(kite::text::analyzer<cjk_bigram>);
static_assert(kite::text::token_id_analyzer<kite::text::pretokenized>);
static_assert(!kite::text::analyzer<kite::text::pretokenized>);
static_assert(!kite::text::token_id_analyzer<english>);

namespace {
nlohmann::json load_json(const std::string& rel) {
    return nlohmann::json::parse(kite::io::read_text(kite::test::fixture(rel)));
}
std::vector<std::string> strings(const nlohmann::json& j) { return j.get<std::vector<std::string>>(); }
}  // namespace

TEST_CASE("unicode_words and cjk_bigram match the Python unicodedata reference", "[text]") {
    const auto j = load_json("text/analyzers.json");
    REQUIRE(j["cases"].size() >= 10);
    for (const auto& c : j["cases"]) {
        const std::string text = c["text"];
        INFO("text: " << text);
        CHECK(kite::text::terms(unicode_words{}, text) == strings(c["unicode_words"]));
        CHECK(unicode_words::reference_terms(text) == strings(c["unicode_words"]));
        CHECK(kite::text::terms(cjk_bigram{}, text) == strings(c["cjk_bigram"]));
        CHECK(cjk_bigram::reference_terms(text) == strings(c["cjk_bigram"]));
    }
}

TEST_CASE("cjk_bigram turns Hangul and Han runs into overlapping bigrams", "[text]") {
    const std::vector<std::string> want = {"안녕", "녕하", "하세", "세요", "seoul", "서울"};
    CHECK(kite::text::terms(cjk_bigram{}, "안녕하세요 Seoul 서울") == want);
    CHECK(kite::text::terms(cjk_bigram{}, "안") == std::vector<std::string>{"안"});
    CHECK(kite::text::terms(cjk_bigram{}, "東京abc") == std::vector<std::string>{"東京", "abc"});
    CHECK(kite::text::terms(cjk_bigram{}, "").empty());
    CHECK(kite::text::terms(cjk_bigram{}, " ,.!? ").empty());
}

TEST_CASE("english stems like Snowball (PyStemmer) and drops Lucene's stop words", "[text]") {
    const auto j = load_json("text/english_stems.json");
    const auto words = strings(j["words"]);
    const auto stems = strings(j["stems"]);
    REQUIRE(words.size() == stems.size());
    REQUIRE(words.size() > 100);
    const english en;
    for (std::size_t i = 0; i < words.size(); ++i) {
        INFO("word: " << words[i]);
        // Words with an apostrophe are split first ("children's" -> "children", "s").
        if (words[i].find('\'') != std::string::npos) continue;
        const auto t = kite::text::terms(en, words[i]);
        REQUIRE(t.size() == 1);
        CHECK(t[0] == stems[i]);
    }
    CHECK(kite::text::terms(en, "The patients were running in the trials") ==
          std::vector<std::string>{"patient", "were", "run", "trial"});
    CHECK(kite::text::terms(en, "THE AND OF").empty());
    const english custom{"patients"};
    CHECK(kite::text::terms(custom, "the patients") == std::vector<std::string>{"the"});
    CHECK(en.is_stop_word("the"));
    CHECK_FALSE(en.is_stop_word("patient"));
}

TEST_CASE("the ASCII fast path equals whole-text normalization on random text", "[text]") {
    // Pieces chosen to hit the edge cases: ASCII separators that compose with U+0338, leading
    // combining marks, fullwidth forms, case folding that expands, Hangul jamo that compose.
    const std::vector<std::string> pieces = {
        "a", "Z", "q", "7", " ", ",", "-", "'", "=", "<", ">", "_", "\t", ".",
        "\u0301", "\u0338", "\u0308", "é", "ß", "ẞ", "Σ", "ς", "ﬁ", "Ａ", "１", "①", "½",
        "안", "녕", "\u1100", "\u1161", "\u11A8", "漢", "字", "カ", "ｶ", "ﾞ", "ー", "々",
        "К", "ǅ", "İ", "ı", "Å", "\u00AD", "\u200D", "🙂", "№", "㎏", "ℌ", "\u0660"};
    std::mt19937_64 rng(1234);
    std::uniform_int_distribution<std::size_t> pick(0, pieces.size() - 1), len(0, 24);
    for (int iter = 0; iter < 3000; ++iter) {
        std::string s;
        const std::size_t n = len(rng);
        for (std::size_t k = 0; k < n; ++k) s += pieces[pick(rng)];
        INFO("text: " << s);
        REQUIRE(kite::text::terms(unicode_words{}, s) == unicode_words::reference_terms(s));
        REQUIRE(kite::text::terms(cjk_bigram{}, s) == cjk_bigram::reference_terms(s));
    }
}

TEST_CASE("invalid UTF-8 raises unicode_error naming the byte offset", "[text]") {
    struct bad_case {
        std::string text;
        std::size_t offset;
    };
    const std::vector<bad_case> cases = {
        {"abc \x80 def", 4},                  // lone continuation byte
        {"ok \xC0\x80", 3},                   // overlong NUL
        {"\xE0\x80\x80", 0},                  // overlong 3-byte
        {"xy\xED\xA0\x80", 2},                // UTF-16 surrogate
        {"\xF4\x90\x80\x80", 0},              // above U+10FFFF
        {"caf\xC3", 3},                       // truncated at the end
        {"caf\xC3x more", 3},                 // truncated by ASCII
        {"\xFF", 0},                          // never valid
        {"valid 한국 then \xEA\xB0", 18},      // truncated Hangul
    };
    for (const auto& c : cases) {
        INFO("offset " << c.offset);
        CHECK(kite::text::utf8::find_invalid(c.text) == c.offset);
        for (int which = 0; which < 3; ++which) {
            bool thrown = false;
            try {
                if (which == 0) (void)kite::text::terms(unicode_words{}, c.text);
                if (which == 1) (void)kite::text::terms(english{}, c.text);
                if (which == 2) (void)kite::text::terms(cjk_bigram{}, c.text);
            } catch (const kite::unicode_error& e) {
                thrown = true;
                CHECK(e.byte_offset() == c.offset);
                CHECK(std::string(e.what()).find("byte offset " + std::to_string(c.offset)) !=
                      std::string::npos);
            }
            CHECK(thrown);
        }
    }
    CHECK(kite::text::utf8::find_invalid("plain ascii, 한국어, 🙂") == std::string_view::npos);
}

TEST_CASE("utf8 decode and append round-trip every scalar value class", "[text]") {
    for (char32_t cp : {U'\x01', U'a', U'\x7F', U'\x80', U'é', U'\x7FF', U'\x800', U'한',
                        U'\xFFFD', U'\x10000', U'🙂', U'\x10FFFF'}) {
        std::string s;
        kite::text::utf8::append(s, cp);
        CHECK(kite::text::utf8::find_invalid(s) == std::string_view::npos);
        std::size_t i = 0;
        CHECK(kite::text::utf8::decode(s, i) == cp);
        CHECK(i == s.size());
    }
}

TEST_CASE("analyzers are safe to share between threads", "[text]") {
    std::vector<std::string> docs;
    for (int i = 0; i < 64; ++i)
        docs.push_back("Running studies of patients " + std::to_string(i) + " 한국어 문장 " +
                       std::string(static_cast<std::size_t>(i % 7), 'x') + "ing generalizations");
    const english en;
    std::vector<std::vector<std::string>> serial(docs.size()), parallel(docs.size());
    for (std::size_t i = 0; i < docs.size(); ++i) serial[i] = kite::text::terms(en, docs[i]);
    kite::parallel_for(0, docs.size(), [&](std::size_t i) { parallel[i] = kite::text::terms(en, docs[i]); }, 2);
    CHECK(serial == parallel);
}
