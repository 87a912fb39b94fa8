// kite/serve/openai.hpp without a socket: request validation (every error names its field),
// the stop-string filter of streamed text, base64, Prometheus histograms.

#include <string>
#include <vector>

#include "kite/serve/openai.hpp"
#include "kite_test.hpp"

namespace oa = kite::serve::openai;
using oa::json;

namespace {

// The api_error a body raises (status 0 when it parses).
oa::api_error chat_error(const std::string& body) {
    try {
        (void)oa::parse_chat(oa::parse_body(body));
    } catch (const oa::api_error& e) {
        return e;
    }
    return oa::api_error(0, "parsed");
}

// The field a body's error names ("parsed" when it parses).
template <class Parse>
std::string param_of(Parse parse, const std::string& body) {
    try {
        (void)parse(oa::parse_body(body), oa::limits{});
    } catch (const oa::api_error& e) {
        return e.param;
    }
    return "parsed";
}

const std::string msgs = R"("model": "m", "messages": [{"role": "user", "content": "hi"}])";

}  // namespace

TEST_CASE("openai: a chat body becomes a typed call", "[serve][openai]") {
    const auto c = oa::parse_chat(oa::parse_body(R"({"model": "m", "messages": [
        {"role": "developer", "content": "Be brief."},
        {"role": "user", "content": [{"type": "text", "text": "Hello "}, {"type": "text", "text": "there"}]},
        {"role": "assistant", "content": null}, {"role": "user", "content": "again", "name": "bob"}],
        "temperature": 0.5, "top_p": 0.9, "max_tokens": 7, "n": 3, "seed": -5, "stop": "END", "stream": true,
        "stream_options": {"include_usage": true}, "presence_penalty": 0, "user": "u1", "logprobs": false})"));
    REQUIRE(c.messages.size() == 4);
    CHECK(c.messages[0].role == "system");
    CHECK(c.messages[1].content == "Hello there");
    CHECK(c.messages[2].content.empty());
    CHECK(c.sampling.temperature == 0.5f);
    CHECK(c.sampling.top_p == 0.9f);
    CHECK(*c.max_tokens == 7);
    CHECK(c.n == 3);
    CHECK(*c.seed == static_cast<std::uint64_t>(-5));
    CHECK(c.stop == std::vector<std::string>{"END"});
    CHECK(c.stream);
    CHECK(c.include_usage);
    // Defaults.
    const auto d = oa::parse_chat(oa::parse_body("{" + msgs + "}"));
    CHECK(d.sampling.temperature == 1.0f);
    CHECK(!d.max_tokens);
    CHECK(d.n == 1);
    CHECK(!d.seed);
    CHECK(!d.stream);
    // top_p 0 keeps only the most likely token: greedy.
    CHECK(oa::parse_chat(oa::parse_body("{" + msgs + R"(, "top_p": 0})")).sampling.temperature == 0.0f);
}

TEST_CASE("openai: every bad chat body is a 400 naming its field", "[serve][openai]") {
    struct bad {
        std::string body, param, code;
    };
    const std::vector<bad> cases = {
        {R"({"model": "m", "messages": [{"role": "user", "content": "hi"}])", "", "invalid_json"},
        {R"([1, 2])", "", "invalid_json"},
        {"{\"model\": \"m\", \"messages\": [{\"role\": \"user\", \"content\": \"\xC3\x28\"}]}", "", "invalid_json"},  // invalid UTF-8
        {R"({"model": "m"})", "messages", "missing_required_parameter"},
        {R"({"messages": [{"role": "user", "content": "hi"}]})", "model", "missing_required_parameter"},
        {R"({"model": "m", "messages": []})", "messages", "invalid_value"},
        {R"({"model": "m", "messages": "hi"})", "messages", "invalid_type"},
        {R"({"model": "m", "messages": [{"content": "hi"}]})", "messages[0].role", "missing_required_parameter"},
        {R"({"model": "m", "messages": [{"role": "wizard", "content": "hi"}]})", "messages[0].role", "invalid_value"},
        {R"({"model": "m", "messages": [{"role": "user"}]})", "messages[0].content", "missing_required_parameter"},
        {R"({"model": "m", "messages": [{"role": "user", "content": 5}]})", "messages[0].content", "invalid_type"},
        {R"({"model": "m", "messages": [{"role": "user", "content": [{"type": "image_url"}]}]})", "messages[0].content[0].type", "unsupported_content"},
        {R"({"model": "m", "messages": [{"role": "user", "content": "hi", "mood": 1}]})", "messages[0].mood", "unknown_parameter"},
        {"{" + msgs + R"(, "max_tokens": 0})", "max_tokens", "invalid_value"},
        {"{" + msgs + R"(, "max_tokens": -3})", "max_tokens", "invalid_value"},
        {"{" + msgs + R"(, "max_tokens": 2.5})", "max_tokens", "invalid_type"},
        {"{" + msgs + R"(, "max_tokens": "10"})", "max_tokens", "invalid_type"},
        {"{" + msgs + R"(, "temperature": "hot"})", "temperature", "invalid_type"},
        {"{" + msgs + R"(, "temperature": 2.5})", "temperature", "invalid_value"},
        {"{" + msgs + R"(, "top_p": 1.5})", "top_p", "invalid_value"},
        {"{" + msgs + R"(, "n": 0})", "n", "invalid_value"},
        {"{" + msgs + R"(, "n": 17})", "n", "invalid_value"},
        {"{" + msgs + R"(, "stop": ["a", "b", "c", "d", "e"]})", "stop", "invalid_value"},
        {"{" + msgs + R"(, "stop": [""]})", "stop", "invalid_value"},
        {"{" + msgs + R"(, "stop": [1]})", "stop[0]", "invalid_type"},
        {"{" + msgs + R"(, "stream": "yes"})", "stream", "invalid_type"},
        {"{" + msgs + R"(, "stream_options": {"include_usage": true}})", "stream_options", ""},
        {"{" + msgs + R"(, "frequency_penalty": 0.5})", "frequency_penalty", "unsupported_parameter"},
        {"{" + msgs + R"(, "logprobs": true})", "logprobs", "unsupported_parameter"},
        {"{" + msgs + R"(, "tools": [{"type": "function"}]})", "tools", "unsupported_parameter"},
        {"{" + msgs + R"(, "seed": 1e300})", "seed", "invalid_type"},
        {"{" + msgs + R"(, "foo": 1})", "foo", "unknown_parameter"},
    };
    for (const auto& c : cases) {
        INFO(c.body);
        const oa::api_error e = chat_error(c.body);
        CHECK(e.status == 400);
        CHECK(e.param == c.param);
        if (!c.code.empty()) CHECK(e.code == c.code);
        CHECK(e.type == "invalid_request_error");
        // The error object: message, type, param (null when none), code.
        const json j = oa::error_body(e)["error"];
        CHECK(j["message"].get<std::string>() == e.message);
        CHECK((c.param.empty() ? j["param"].is_null() : j["param"] == c.param));
    }
}

TEST_CASE("openai: completion and embedding bodies", "[serve][openai]") {
    const auto one = oa::parse_completion(oa::parse_body(R"({"model": "m", "prompt": "Once"})"));
    REQUIRE(one.prompts.size() == 1);
    CHECK(one.prompts[0].text == "Once");
    CHECK(*one.max_tokens == 16);  // OpenAI's default for completions
    const auto ids = oa::parse_completion(oa::parse_body(R"({"model": "m", "prompt": [5, 6, 7], "max_tokens": 3})"));
    CHECK(ids.prompts[0].ids == std::vector<std::int32_t>{5, 6, 7});
    const auto many = oa::parse_completion(oa::parse_body(R"({"model": "m", "prompt": ["a", [1, 2]], "n": 2, "best_of": 2})"));
    REQUIRE(many.prompts.size() == 2);
    CHECK(many.prompts[1].ids.size() == 2);
    const auto bad = [](const std::string& body) { return param_of(oa::parse_completion, body); };
    CHECK(bad(R"({"model": "m"})") == "prompt");
    CHECK(bad(R"({"model": "m", "prompt": 5})") == "prompt");
    CHECK(bad(R"({"model": "m", "prompt": [-1]})") == "prompt[0]");
    CHECK(bad(R"({"model": "m", "prompt": ["a", 5]})") == "prompt[1]");
    CHECK(bad(R"({"model": "m", "prompt": "a", "echo": true})") == "echo");
    CHECK(bad(R"({"model": "m", "prompt": "a", "best_of": 3})") == "best_of");
    CHECK(bad(R"({"model": "m", "prompt": "a", "messages": []})") == "messages");

    const auto e = oa::parse_embedding(oa::parse_body(R"({"model": "m", "input": ["a", "b"], "encoding_format": "base64"})"));
    CHECK(e.input.size() == 2);
    CHECK(e.base64);
    const auto ebad = [](const std::string& body) { return param_of(oa::parse_embedding, body); };
    CHECK(ebad(R"({"model": "m", "input": [1, 2]})") == "input[0]");
    CHECK(ebad(R"({"model": "m", "input": ""})") == "input");
    CHECK(ebad(R"({"model": "m", "input": "a", "encoding_format": "int8"})") == "encoding_format");
    CHECK(ebad(R"({"input": "a"})") == "model");
}

TEST_CASE("openai: streamed text never shows a stop string and ends where the engine cut", "[serve][openai]") {
    // Pieces arrive token by token; the filter holds back what may begin a stop string.
    oa::stop_filter f({"STOP", "\n\n"});
    std::string sent;
    for (const char* piece : {"Hel", "lo S", "T", "ay", " the", " ST", "O", "P and more"}) sent += f.push(piece);
    CHECK(sent == "Hello STay the ");
    CHECK(f.stopped());
    CHECK(f.finish("Hello STay the ").empty());
    // A held-back prefix that turns out not to be a stop string is released.
    oa::stop_filter g({"STOP"});
    std::string out = g.push("abc ST");
    CHECK(out == "abc ");
    out += g.push("X");
    CHECK(out == "abc STX");
    // Without stop strings everything passes at once; finish() adds what was never pushed.
    oa::stop_filter h;
    CHECK(h.push("a") == "a");
    CHECK(h.finish("ab") == "b");
    // Property: for random pieces and stops, the concatenation equals the text cut at the
    // first occurrence of any stop string.
    std::mt19937 rng(3);
    for (int trial = 0; trial < 300; ++trial) {
        std::string text;
        const int len = 1 + static_cast<int>(rng() % 40);
        for (int i = 0; i < len; ++i) text += static_cast<char>('a' + rng() % 3);
        std::vector<std::string> stops = {std::string(1 + rng() % 3, 'a')};
        stops.push_back(std::string("b") + static_cast<char>('a' + rng() % 3));
        std::size_t cut = text.size();
        for (const auto& s : stops) cut = std::min(cut, text.find(s) == std::string::npos ? text.size() : text.find(s));
        oa::stop_filter s(stops);
        std::string got;
        for (std::size_t i = 0; i < text.size();) {
            const std::size_t step = 1 + rng() % 4;
            got += s.push(text.substr(i, step));
            i += step;
        }
        got += s.finish(text.substr(0, cut));
        INFO(text);
        CHECK(got == text.substr(0, cut));
    }
}

TEST_CASE("openai: base64 and Prometheus histograms", "[serve][openai]") {
    CHECK(oa::base64("", 0).empty());
    CHECK(oa::base64("f", 1) == "Zg==");
    CHECK(oa::base64("fo", 2) == "Zm8=");
    CHECK(oa::base64("foo", 3) == "Zm9v");
    CHECK(oa::base64("foobar", 6) == "Zm9vYmFy");
    const float one = 1.0f;  // 00 00 80 3f
    CHECK(oa::base64(&one, 4) == "AACAPw==");

    oa::histogram h({0.1, 1.0});
    h.observe(0.05);
    h.observe(0.1);  // le is inclusive
    h.observe(0.5);
    h.observe(7.0);
    h.observe(std::nan(""));  // ignored
    std::ostringstream os;
    h.render(os, "x_seconds", "help");
    const std::string s = os.str();
    CHECK(s.find("# TYPE x_seconds histogram\n") != std::string::npos);
    CHECK(s.find("x_seconds_bucket{le=\"0.1\"} 2\n") != std::string::npos);
    CHECK(s.find("x_seconds_bucket{le=\"1\"} 3\n") != std::string::npos);
    CHECK(s.find("x_seconds_bucket{le=\"+Inf\"} 4\n") != std::string::npos);
    CHECK(s.find("x_seconds_sum 7.65\n") != std::string::npos);
    CHECK(s.find("x_seconds_count 4\n") != std::string::npos);
}
