// kite/text/llama2c_tokenizer.hpp: equal to an independent Python implementation of llama2.c's
// run.c (tools/model_llama2c_tokenizer.py) on the fixture strings with aidreams260k's tok512.bin;
// the heap merge equals run.c's quadratic loop on a synthetic vocabulary; corrupt files refused.

#include <cstring>
#include <fstream>
#include <random>
#include <string>
#include <vector>

#include "kite/text/llama2c_tokenizer.hpp"
#include "tokenizer_test_util.hpp"

using kite::text::llama2c_tokenizer;

namespace {

struct piece {
    std::string text;
    float score;
};

/// A tokenizer.bin with <unk>, BOS, EOS, the 256 byte pieces and `extra` merged pieces.
void write_tokenizer(const std::filesystem::path& p, const std::vector<piece>& extra, int max_len = 16,
                     int drop_last_bytes = 0) {
    std::string out;
    const auto put = [&](const void* d, std::size_t n) { out.append(static_cast<const char*>(d), n); };
    put(&max_len, 4);
    const auto add = [&](const std::string& s, float score) {
        const std::int32_t n = static_cast<std::int32_t>(s.size());
        put(&score, 4);
        put(&n, 4);
        out += s;
    };
    add("<unk>", 0);
    add("\n<s>\n", 0);
    add("\n</s>\n", 0);
    for (int b = 0; b < 256; ++b) {
        char name[8];
        std::snprintf(name, sizeof name, "<0x%02X>", b);
        add(name, 0);
    }
    for (const auto& e : extra) add(e.text, e.score);
    out.resize(out.size() - static_cast<std::size_t>(drop_last_bytes));
    std::ofstream(p, std::ios::binary).write(out.data(), static_cast<std::streamsize>(out.size()));
}

std::string from_hex(const std::string& h) {
    std::string s;
    for (std::size_t i = 0; i < h.size(); i += 2) s.push_back(static_cast<char>(std::stoi(h.substr(i, 2), nullptr, 16)));
    return s;
}

}  // namespace

TEST_CASE("llama2c tokenizer: equals the Python run.c port on tok512.bin", "[model][tokenizer][llama2c][.aidreams]") {
    KITE_NEED_DATA(path, "aidreams260k/tok512.bin");
    const llama2c_tokenizer tok(path, 512);
    CHECK(tok.vocab_size() == 512);
    CHECK(tok.max_token_length() == 10);
    CHECK(llama2c_tokenizer(path).vocab_size() == 512);  // counted to the end of the file
    CHECK(tok.piece(1) == "\n<s>\n");
    CHECK(tok.find(" a") == 262);

    const auto fx = kite::test::read_json(kite::test::fixture("model/tokenizers/llama2c_tok512.json"));
    const auto& strings = kite::test::tokenizer_strings();
    std::size_t checked = 0;
    for (const auto& c : fx["cases"]) {
        const std::string& text = strings[c["i"].get<std::size_t>()];
        const bool eos = c["eos"].get<bool>();
        const auto want = kite::test::ids_of(c["ids"]);
        INFO("string " << c["i"].get<std::size_t>() << ": '" << text << "'");
        CHECK(tok.encode(text, true, eos) == want);
        CHECK(tok.encode_reference(text, true, eos) == want);
        CHECK(tok.decode(want) == text);  // round trip, the dummy-prefix space dropped after BOS
        ++checked;
    }
    CHECK(checked == strings.size());
    for (const auto& c : fx["bytes"]) {
        const std::string raw = from_hex(c["hex"]);
        INFO("bytes " << c["hex"].get<std::string>());
        const auto want = kite::test::ids_of(c["ids"]);
        CHECK(tok.encode(raw) == want);
        CHECK(tok.decode(want) == raw);  // byte fallback keeps invalid UTF-8 intact
    }
    // Streaming decode: pieces after BOS lose their leading space, byte pieces are raw bytes.
    const auto ids = tok.encode("Hi é", true);
    std::string streamed;
    for (std::size_t i = 1; i < ids.size(); ++i) streamed += tok.decode_piece(ids[i - 1], ids[i]);
    CHECK(streamed == "Hi é");
    CHECK(tok.encode("", true, true) == std::vector<std::int32_t>{1, 2});
    CHECK(tok.encode("", false).empty());
    KITE_REQUIRE_THROWS_CONTAINING(tok.decode(std::vector<std::int32_t>{5, 512}), kite::invalid_argument, "512");
    KITE_REQUIRE_THROWS_CONTAINING(tok.piece(-1), kite::invalid_argument, "-1");
}

TEST_CASE("llama2c tokenizer: heap merges equal run.c's loop on random text", "[model][tokenizer][llama2c]") {
    kite::test::temp_dir tmp;
    const auto p = tmp / "tok.bin";
    // Pieces with ties in score, overlapping merges and multi-byte characters.
    write_tokenizer(p, {{" ", -10}, {"a", -1}, {"b", -1}, {"c", -1}, {"ab", -2}, {"bc", -2}, {"abc", -3},
                        {" a", -2}, {" ab", -4}, {"aa", -2}, {"aaa", -3}, {"é", -1}, {"éa", -2}, {"\xF0\x9F\x98\x80", -1},
                        {"ca", -2}, {" c", -2}, {"cab", -1}, {"bb", -5}, {"bbb", -6}});
    const llama2c_tokenizer tok(p);
    CHECK(tok.vocab_size() == 259 + 19);
    std::mt19937 rng(7);
    const std::vector<std::string> alphabet = {"a", "b", "c", " ", "é", "\xF0\x9F\x98\x80", "x", "\xC3", "\x80", "aa", "  "};
    for (int iter = 0; iter < 400; ++iter) {
        std::string s;
        const int len = static_cast<int>(rng() % 40);
        for (int k = 0; k < len; ++k) s += alphabet[rng() % alphabet.size()];
        INFO("text: '" << s << "'");
        const auto ids = tok.encode(s, iter % 2 == 0, iter % 3 == 0);
        CHECK(ids == tok.encode_reference(s, iter % 2 == 0, iter % 3 == 0));
        if (iter % 2 == 0) CHECK(tok.decode(ids) == s);
    }
}

TEST_CASE("llama2c tokenizer: corrupt files", "[model][tokenizer][llama2c]") {
    kite::test::temp_dir tmp;
    const auto p = tmp / "tok.bin";
    write_tokenizer(p, {{"ab", -1}}, 16, 1);
    KITE_REQUIRE_THROWS_CONTAINING(llama2c_tokenizer(p), kite::format_error, "token 259");
    write_tokenizer(p, {{"ab", -1}});
    KITE_REQUIRE_THROWS_CONTAINING(llama2c_tokenizer(p, 300), kite::format_error, "truncated while reading token 260");
    KITE_REQUIRE_THROWS_CONTAINING(llama2c_tokenizer(p, 259), kite::format_error, "trailing bytes after 259 tokens");
    CHECK(llama2c_tokenizer(p, 260).vocab_size() == 260);
    write_tokenizer(p, {{"much too long a piece", -1}}, 8);
    KITE_REQUIRE_THROWS_CONTAINING(llama2c_tokenizer(p), kite::format_error, "token 259 has length 21");
    write_tokenizer(p, {}, 0);
    KITE_REQUIRE_THROWS_CONTAINING(llama2c_tokenizer(p), kite::format_error, "max_token_length = 0");
    {
        std::ofstream f(p, std::ios::binary);
        const std::int32_t max_len = 8, n = 5;
        const float s = 0;
        f.write(reinterpret_cast<const char*>(&max_len), 4);
        f.write(reinterpret_cast<const char*>(&s), 4);
        f.write(reinterpret_cast<const char*>(&n), 4);
        f.write("<unk>", 5);
    }
    KITE_REQUIRE_THROWS_CONTAINING(llama2c_tokenizer(p), kite::format_error, "expected at least 259");
    // A vocabulary whose byte pieces are not where run.c expects them.
    std::string bytes = kite::io::read_text((write_tokenizer(p, {}), p));
    const auto at = bytes.find("<0x41>");
    bytes[at + 4] = '2';  // "<0x21>" in the slot of 0x41
    std::ofstream(p, std::ios::binary).write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
    KITE_REQUIRE_THROWS_CONTAINING(llama2c_tokenizer(p), kite::format_error, "byte piece for 0x41");
}

TEST_CASE("llama2c tokenizer: round-trips the text aidreams260K generates", "[model][tokenizer][llama2c][.aidreams]") {
    KITE_NEED_DATA(path, "aidreams260k/tok512.bin");
    const llama2c_tokenizer tok(path, 512);
    const auto fx = kite::test::read_json(kite::test::fixture("model/aidreams_greedy.json"));
    const auto tokens = kite::test::ids_of(fx["tokens"]);
    const std::string text = tok.decode(tokens);
    CHECK(text == fx["text"].get<std::string>());  // the Python decode of the reference
    const auto again = tok.encode(text, true);
    CHECK(tok.decode(again) == text);
    // Greedy decoding produced the tokenizer's own segmentation of its text.
    CHECK(again == tokens);
}
