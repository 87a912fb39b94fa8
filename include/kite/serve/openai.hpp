#pragma once
/// @file kite/serve/openai.hpp
/// The OpenAI HTTP protocol without the HTTP: request bodies parsed and validated into typed
/// calls, response and stream-chunk objects, error objects, stop-string-safe streaming text and
/// the Prometheus metrics text. kite/serve/openai_server.hpp puts it on a socket; this header
/// needs only nlohmann/json, so it is tested (and usable behind any other HTTP stack) alone.
///
///   auto body = kite::serve::openai::parse_body(text);                 // api_error on bad JSON
///   kite::serve::openai::chat_call c = kite::serve::openai::parse_chat(body, {.max_n = 16});
///   // c.messages, c.sampling, c.max_tokens, c.n, c.seed, c.stop, c.stream, c.include_usage
///
/// Validation follows OpenAI's API: a malformed body, a field of the wrong type, a value out
/// of range or an unrecognized field is an api_error (HTTP 400, type invalid_request_error)
/// whose `param` names the field ("messages[2].content", "max_tokens", ...). Fields OpenAI
/// accepts that kite does not implement are accepted at their neutral value (presence_penalty
/// 0, logprobs false, ...) and refused otherwise, naming the field, rather than ignored.

#include <algorithm>
#include <array>
#include <atomic>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <mutex>
#include <optional>
#include <sstream>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "kite/core/config.hpp"
#include "kite/model/sampling.hpp"
#include "kite/serve/request.hpp"
#include "kite/text/chat_template.hpp"

namespace kite::serve::openai {

using json = nlohmann::json;

/// An error answered to the client: HTTP status and OpenAI's error object.
struct api_error : std::exception {
    int status = 400;
    std::string message;
    std::string type = "invalid_request_error";
    std::string param;  ///< the offending field (empty: none)
    std::string code;   ///< OpenAI's code string (empty: null)

    api_error(int status_, std::string message_, std::string param_ = {}, std::string type_ = "invalid_request_error",
              std::string code_ = {})
        : status(status_), message(std::move(message_)), type(std::move(type_)), param(std::move(param_)),
          code(std::move(code_)) {}
    const char* what() const noexcept override { return message.c_str(); }
};

/// {"error": {"message", "type", "param", "code"}} (param and code null when empty).
inline json error_body(const api_error& e) {
    json err = {{"message", e.message}, {"type", e.type}, {"param", nullptr}, {"code", nullptr}};
    if (!e.param.empty()) err["param"] = e.param;
    if (!e.code.empty()) err["code"] = e.code;
    return json{{"error", std::move(err)}};
}

inline api_error bad_request(std::string param, std::string message, std::string code = {}) {
    return api_error(400, std::move(message), std::move(param), "invalid_request_error", std::move(code));
}

/// The request body as JSON; a malformed body (or one that is not an object) is a 400.
inline json parse_body(std::string_view body) {
    json j = json::parse(body.begin(), body.end(), nullptr, /*allow_exceptions=*/false);
    if (j.is_discarded())
        throw api_error(400, "We could not parse the JSON body of your request: it is not valid JSON.", {},
                        "invalid_request_error", "invalid_json");
    if (!j.is_object()) throw api_error(400, "The request body must be a JSON object.", {}, "invalid_request_error", "invalid_json");
    return j;
}

/// Server-side bounds on what one call may ask for.
struct limits {
    index_t max_n = 16;              ///< choices per prompt
    index_t max_stop = 4;            ///< stop strings (OpenAI's limit)
    std::size_t max_stop_bytes = 256;
    std::size_t max_messages = 1024;
    std::size_t max_prompts = 16;    ///< prompts in one /v1/completions call
    std::size_t max_inputs = 2048;   ///< texts in one /v1/embeddings call (OpenAI's limit)
};

/// The sampling and length fields shared by chat and text completions.
struct generation_fields {
    std::string model;
    model::sampling_params sampling{};       ///< temperature 1, top_p 1 unless given
    std::optional<index_t> max_tokens{};     ///< absent: up to the context
    index_t n = 1;
    std::optional<std::uint64_t> seed{};     ///< absent: the server picks one per call
    std::vector<std::string> stop{};
    bool stream = false;
    bool include_usage = false;              ///< stream_options.include_usage
    bool ignore_eos = false;                 ///< extension (llama.cpp's name): do not stop at end-of-generation
    index_t top_k = 0;                       ///< extension: top-k sampling (0: off)
};

/// POST /v1/chat/completions
struct chat_call : generation_fields {
    std::vector<text::chat_message> messages;
};

/// A prompt of /v1/completions: text, or token ids.
struct completion_prompt {
    std::string text;
    std::vector<std::int32_t> ids;           ///< used when non-empty
};

/// POST /v1/completions
struct completion_call : generation_fields {
    std::vector<completion_prompt> prompts;  ///< one call may carry several (choices n per prompt)
};

/// POST /v1/embeddings
struct embedding_call {
    std::string model;
    std::vector<std::string> input;
    bool base64 = false;                     ///< encoding_format "base64" (little-endian float32)
};

namespace detail {

inline const char* kind(const json& v) {
    switch (v.type()) {
        case json::value_t::null: return "null";
        case json::value_t::boolean: return "a boolean";
        case json::value_t::string: return "a string";
        case json::value_t::array: return "an array";
        case json::value_t::object: return "an object";
        case json::value_t::number_float: return "a number";
        default: return "an integer";
    }
}

inline api_error wrong_type(const std::string& param, const json& v, const char* expected) {
    return bad_request(param, "Invalid type for '" + param + "': expected " + expected + ", but got " + kind(v) + ".",
                       "invalid_type");
}

inline api_error out_of_range(const std::string& param, const std::string& got, const char* expected) {
    return bad_request(param, "Invalid value for '" + param + "': " + got + "; expected " + expected + ".",
                       "invalid_value");
}

inline std::string show(double v) {
    std::ostringstream os;
    os << v;
    return os.str();
}

inline bool as_bool(const json& v, const std::string& p) {
    if (!v.is_boolean()) throw wrong_type(p, v, "a boolean");
    return v.get<bool>();
}

inline double as_number(const json& v, const std::string& p) {
    if (!v.is_number()) throw wrong_type(p, v, "a number");
    const double d = v.get<double>();
    if (!std::isfinite(d)) throw out_of_range(p, show(d), "a finite number");
    return d;
}

inline std::int64_t as_integer(const json& v, const std::string& p) {
    if (v.is_number_integer()) return v.get<std::int64_t>();
    if (v.is_number_unsigned()) {
        const auto u = v.get<std::uint64_t>();
        if (u > static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max()))
            throw out_of_range(p, std::to_string(u), "an integer below 2^63");
        return static_cast<std::int64_t>(u);
    }
    // 3.0 is an integer to OpenAI's validator too; 3.5 is not.
    if (v.is_number_float()) {
        const double d = v.get<double>();
        if (std::isfinite(d) && d == std::floor(d) && std::fabs(d) < 9.0e15) return static_cast<std::int64_t>(d);
    }
    throw wrong_type(p, v, "an integer");
}

inline const std::string& as_string(const json& v, const std::string& p) {
    if (!v.is_string()) throw wrong_type(p, v, "a string");
    return v.get_ref<const std::string&>();
}

inline std::vector<std::string> stop_strings(const json& v, const limits& lim) {
    std::vector<std::string> out;
    if (v.is_string()) {
        out.push_back(v.get<std::string>());
    } else if (v.is_array()) {
        for (std::size_t i = 0; i < v.size(); ++i) out.push_back(as_string(v[i], "stop[" + std::to_string(i) + "]"));
    } else {
        throw wrong_type("stop", v, "a string or an array of strings");
    }
    if (out.size() > lim.max_stop)
        throw out_of_range("stop", std::to_string(out.size()) + " stop strings",
                           ("at most " + std::to_string(lim.max_stop)).c_str());
    for (std::size_t i = 0; i < out.size(); ++i) {
        if (out[i].empty()) throw out_of_range("stop", "an empty string", "non-empty stop strings");
        if (out[i].size() > lim.max_stop_bytes) throw out_of_range("stop", "a stop string of " + std::to_string(out[i].size()) + " bytes", "at most 256 bytes");
    }
    return out;
}

/// Requires `v` to be null or the neutral value `ok(v)` accepts; names the field otherwise.
template <class Ok>
void neutral_only(const json& v, const std::string& p, Ok ok, const char* neutral) {
    if (v.is_null() || ok(v)) return;
    throw bad_request(p, "'" + p + "' is not supported by this server (kite); only " + neutral + " is accepted.",
                      "unsupported_parameter");
}

/// Parses one generation field into `g`; false when `key` is not one of them.
inline bool generation_field(const std::string& key, const json& v, generation_fields& g, const limits& lim) {
    if (key == "model") {
        g.model = as_string(v, key);
    } else if (key == "temperature") {
        if (v.is_null()) return true;
        const double t = as_number(v, key);
        if (t < 0 || t > 2) throw out_of_range(key, show(t), "a number from 0 to 2");
        g.sampling.temperature = static_cast<float>(t);
    } else if (key == "top_p") {
        if (v.is_null()) return true;
        const double p = as_number(v, key);
        if (p < 0 || p > 1) throw out_of_range(key, show(p), "a number from 0 to 1");
        g.sampling.top_p = static_cast<float>(p);
    } else if (key == "top_k") {
        if (v.is_null()) return true;
        const auto k = as_integer(v, key);
        if (k < 0 || k > (1 << 20)) throw out_of_range(key, std::to_string(k), "an integer from 0 (off) to 2^20");
        g.top_k = static_cast<index_t>(k);
    } else if (key == "max_tokens" || key == "max_completion_tokens") {
        if (v.is_null()) return true;
        const auto m = as_integer(v, key);
        if (m < 1) throw out_of_range(key, std::to_string(m), "an integer >= 1");
        g.max_tokens = static_cast<index_t>(std::min<std::int64_t>(m, std::numeric_limits<std::int32_t>::max()));
    } else if (key == "n") {
        if (v.is_null()) return true;
        const auto n = as_integer(v, key);
        if (n < 1 || n > static_cast<std::int64_t>(lim.max_n))
            throw out_of_range(key, std::to_string(n), ("an integer from 1 to " + std::to_string(lim.max_n)).c_str());
        g.n = static_cast<index_t>(n);
    } else if (key == "seed") {
        if (v.is_null()) return true;
        g.seed = static_cast<std::uint64_t>(as_integer(v, key));
    } else if (key == "stop") {
        if (v.is_null()) return true;
        g.stop = stop_strings(v, lim);
    } else if (key == "stream") {
        if (v.is_null()) return true;
        g.stream = as_bool(v, key);
    } else if (key == "stream_options") {
        if (v.is_null()) return true;
        if (!v.is_object()) throw wrong_type(key, v, "an object");
        for (const auto& [k, x] : v.items()) {
            if (k == "include_usage") {
                g.include_usage = x.is_null() ? false : as_bool(x, "stream_options.include_usage");
            } else {
                throw bad_request("stream_options." + k, "Unrecognized request argument supplied: stream_options." + k,
                                  "unknown_parameter");
            }
        }
    } else if (key == "ignore_eos") {
        if (v.is_null()) return true;
        g.ignore_eos = as_bool(v, key);
    } else if (key == "presence_penalty" || key == "frequency_penalty") {
        if (!v.is_null()) {
            const double x = as_number(v, key);
            if (x < -2 || x > 2) throw out_of_range(key, show(x), "a number from -2 to 2");
            neutral_only(v, key, [](const json& y) { return y.get<double>() == 0.0; }, "0");
        }
    } else if (key == "logit_bias") {
        if (!v.is_null() && !v.is_object()) throw wrong_type(key, v, "an object");
        neutral_only(v, key, [](const json& y) { return y.empty(); }, "an empty object");
    } else if (key == "user" || key == "service_tier") {
        if (!v.is_null()) as_string(v, key);
    } else if (key == "metadata") {
        if (!v.is_null() && !v.is_object()) throw wrong_type(key, v, "an object");
    } else if (key == "store") {
        if (!v.is_null()) as_bool(v, key);
    } else {
        return false;
    }
    return true;
}

/// An array field of 1 .. `most` elements (`noun` names them in the message).
inline void require_count(const json& v, const std::string& key, std::size_t most, const char* noun) {
    if (v.empty()) throw out_of_range(key, "an empty array", (std::string("at least one ") + noun).c_str());
    if (v.size() > most)
        throw out_of_range(key, std::to_string(v.size()) + " " + noun + "s", ("at most " + std::to_string(most)).c_str());
}

inline api_error unknown(const std::string& key) {
    return bad_request(key, "Unrecognized request argument supplied: " + key, "unknown_parameter");
}

inline void finish_generation(const json& body, generation_fields& g) {
    if (!body.contains("model")) throw bad_request("model", "You must provide a model parameter.", "missing_required_parameter");
    if (g.include_usage && !g.stream)
        throw bad_request("stream_options", "The 'stream_options' parameter is only allowed when 'stream' is enabled.");
    // top_p 0 keeps only the most likely token: greedy (kite's sampler wants top_p in (0, 1]).
    if (g.sampling.top_p == 0.0f) {
        g.sampling.temperature = 0.0f;
        g.sampling.top_p = 1.0f;
    }
    g.sampling.top_k = g.top_k;
}

inline std::string message_content(const json& c, const std::string& p) {
    if (c.is_string()) return c.get<std::string>();
    if (c.is_array()) {  // [{"type": "text", "text": "..."}]
        std::string out;
        for (std::size_t i = 0; i < c.size(); ++i) {
            const std::string pi = p + "[" + std::to_string(i) + "]";
            const json& part = c[i];
            if (!part.is_object()) throw wrong_type(pi, part, "an object");
            if (!part.contains("type")) throw bad_request(pi + ".type", "Missing required parameter: '" + pi + ".type'.");
            const std::string& type = as_string(part["type"], pi + ".type");
            if (type != "text")
                throw bad_request(pi + ".type", "Content parts of type '" + type + "' are not supported by this model; expected 'text'.",
                                  "unsupported_content");
            for (const auto& [k, x] : part.items())
                if (k != "type" && k != "text") throw unknown(pi + "." + k);
            if (!part.contains("text")) throw bad_request(pi + ".text", "Missing required parameter: '" + pi + ".text'.");
            out += as_string(part["text"], pi + ".text");
        }
        return out;
    }
    throw wrong_type(p, c, "a string or an array of content parts");
}

}  // namespace detail

/// Validates a /v1/chat/completions body.
inline chat_call parse_chat(const json& body, const limits& lim = {}) {
    chat_call c;
    bool have_messages = false;
    for (const auto& [key, v] : body.items()) {
        if (detail::generation_field(key, v, c, lim)) continue;
        if (key == "messages") {
            if (!v.is_array()) throw detail::wrong_type(key, v, "an array");
            detail::require_count(v, key, lim.max_messages, "message");
            for (std::size_t i = 0; i < v.size(); ++i) {
                const std::string p = "messages[" + std::to_string(i) + "]";
                const json& m = v[i];
                if (!m.is_object()) throw detail::wrong_type(p, m, "an object");
                text::chat_message msg;
                bool have_role = false, have_content = false;
                for (const auto& [k, x] : m.items()) {
                    if (k == "role") {
                        msg.role = detail::as_string(x, p + ".role");
                        have_role = true;
                    } else if (k == "content") {
                        if (!x.is_null()) {
                            msg.content = detail::message_content(x, p + ".content");
                            have_content = true;
                        }
                    } else if (k == "name") {
                        detail::as_string(x, p + ".name");
                    } else {
                        throw detail::unknown(p + "." + k);
                    }
                }
                if (!have_role) throw bad_request(p + ".role", "Missing required parameter: '" + p + ".role'.", "missing_required_parameter");
                if (msg.role == "developer") msg.role = "system";  // OpenAI's newer name for it
                if (msg.role != "system" && msg.role != "user" && msg.role != "assistant")
                    throw bad_request(p + ".role", "Invalid value: '" + msg.role + "'. Supported values are: 'system', 'developer', 'user' and 'assistant'.",
                                      "invalid_value");
                if (!have_content && msg.role != "assistant")
                    throw bad_request(p + ".content", "Missing required parameter: '" + p + ".content'.", "missing_required_parameter");
                c.messages.push_back(std::move(msg));
            }
            have_messages = true;
        } else if (key == "logprobs") {
            if (!v.is_null()) detail::as_bool(v, key);
            detail::neutral_only(v, key, [](const json& y) { return !y.get<bool>(); }, "false");
        } else if (key == "top_logprobs") {
            detail::neutral_only(v, key, [](const json&) { return false; }, "null");
        } else if (key == "response_format") {
            detail::neutral_only(v, key, [](const json& y) { return y.is_object() && y.size() == 1 && y.value("type", "") == "text"; },
                                 "{\"type\": \"text\"}");
        } else if (key == "tools" || key == "functions") {
            detail::neutral_only(v, key, [](const json& y) { return y.is_array() && y.empty(); }, "an empty list");
        } else if (key == "tool_choice" || key == "function_call") {
            detail::neutral_only(v, key, [](const json& y) { return y.is_string() && y.get<std::string>() == "none"; }, "\"none\"");
        } else if (key == "parallel_tool_calls") {
            if (!v.is_null()) detail::as_bool(v, key);
        } else {
            throw detail::unknown(key);
        }
    }
    if (!have_messages) throw bad_request("messages", "Missing required parameter: 'messages'.", "missing_required_parameter");
    detail::finish_generation(body, c);
    return c;
}

/// Validates a /v1/completions body. Unlike chat, max_tokens defaults to 16 (as OpenAI's).
inline completion_call parse_completion(const json& body, const limits& lim = {}) {
    completion_call c;
    bool have_prompt = false;
    std::optional<std::int64_t> best_of;
    for (const auto& [key, v] : body.items()) {
        if (detail::generation_field(key, v, c, lim)) continue;
        if (key == "prompt") {
            const auto token_list = [&](const json& a, const std::string& p) {
                completion_prompt cp;
                for (std::size_t i = 0; i < a.size(); ++i) {
                    const auto t = detail::as_integer(a[i], p + "[" + std::to_string(i) + "]");
                    if (t < 0 || t > std::numeric_limits<std::int32_t>::max())
                        throw detail::out_of_range(p + "[" + std::to_string(i) + "]", std::to_string(t), "a token id");
                    cp.ids.push_back(static_cast<std::int32_t>(t));
                }
                if (cp.ids.empty()) throw detail::out_of_range(p, "an empty token list", "at least one token");
                return cp;
            };
            if (v.is_string()) {
                c.prompts.push_back({v.get<std::string>(), {}});
            } else if (v.is_array() && !v.empty() && v[0].is_number()) {
                c.prompts.push_back(token_list(v, "prompt"));
            } else if (v.is_array()) {
                detail::require_count(v, key, lim.max_prompts, "prompt");
                for (std::size_t i = 0; i < v.size(); ++i) {
                    const std::string p = "prompt[" + std::to_string(i) + "]";
                    if (v[i].is_string()) {
                        c.prompts.push_back({v[i].get<std::string>(), {}});
                    } else if (v[i].is_array()) {
                        c.prompts.push_back(token_list(v[i], p));
                    } else {
                        throw detail::wrong_type(p, v[i], "a string or an array of token ids");
                    }
                }
            } else {
                throw detail::wrong_type(key, v, "a string, an array of strings or an array of token ids");
            }
            have_prompt = true;
        } else if (key == "echo") {
            if (!v.is_null()) detail::as_bool(v, key);
            detail::neutral_only(v, key, [](const json& y) { return !y.get<bool>(); }, "false");
        } else if (key == "suffix" || key == "logprobs") {
            detail::neutral_only(v, key, [](const json&) { return false; }, "null");
        } else if (key == "best_of") {
            if (!v.is_null()) best_of = detail::as_integer(v, key);
        } else {
            throw detail::unknown(key);
        }
    }
    if (!have_prompt) throw bad_request("prompt", "Missing required parameter: 'prompt'.", "missing_required_parameter");
    if (best_of && *best_of != static_cast<std::int64_t>(c.n))
        throw bad_request("best_of", "'best_of' other than n is not supported by this server (kite).", "unsupported_parameter");
    if (!c.max_tokens) c.max_tokens = 16;
    detail::finish_generation(body, c);
    return c;
}

/// Validates a /v1/embeddings body.
inline embedding_call parse_embedding(const json& body, const limits& lim = {}) {
    embedding_call e;
    bool have_input = false;
    for (const auto& [key, v] : body.items()) {
        if (key == "model") {
            e.model = detail::as_string(v, key);
        } else if (key == "input") {
            if (v.is_string()) {
                e.input.push_back(v.get<std::string>());
            } else if (v.is_array()) {
                detail::require_count(v, key, lim.max_inputs, "input");
                for (std::size_t i = 0; i < v.size(); ++i) {
                    const std::string p = "input[" + std::to_string(i) + "]";
                    if (!v[i].is_string())
                        throw bad_request(p, "Invalid type for '" + p + "': expected a string (token-id input is not supported by this server), but got " +
                                                 detail::kind(v[i]) + ".", "invalid_type");
                    e.input.push_back(v[i].get<std::string>());
                }
            } else {
                throw detail::wrong_type(key, v, "a string or an array of strings");
            }
            for (std::size_t i = 0; i < e.input.size(); ++i)
                if (e.input[i].empty())
                    throw detail::out_of_range(e.input.size() == 1 && v.is_string() ? "input" : "input[" + std::to_string(i) + "]",
                                               "an empty string", "non-empty text");
            have_input = true;
        } else if (key == "encoding_format") {
            if (v.is_null()) continue;
            const std::string& f = detail::as_string(v, key);
            if (f != "float" && f != "base64") throw detail::out_of_range(key, "'" + f + "'", "'float' or 'base64'");
            e.base64 = f == "base64";
        } else if (key == "dimensions") {
            if (!v.is_null()) detail::as_integer(v, key);  // checked against the model by the server
        } else if (key == "user") {
            if (!v.is_null()) detail::as_string(v, key);
        } else {
            throw detail::unknown(key);
        }
    }
    if (!body.contains("model")) throw bad_request("model", "You must provide a model parameter.", "missing_required_parameter");
    if (!have_input) throw bad_request("input", "Missing required parameter: 'input'.", "missing_required_parameter");
    return e;
}

/// OpenAI's finish_reason for a kite finish_reason ("context" is "length" to OpenAI).
inline const char* finish_string(finish_reason r) noexcept {
    switch (r) {
        case finish_reason::stop: return "stop";
        case finish_reason::length:
        case finish_reason::context: return "length";
        case finish_reason::cancelled: return "cancelled";
        case finish_reason::error: return "error";
    }
    return "stop";
}

/// Standard base64 (RFC 4648, padded).
inline std::string base64(const void* data, std::size_t n) {
    static constexpr char tab[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    const auto* p = static_cast<const unsigned char*>(data);
    std::string out;
    out.reserve((n + 2) / 3 * 4);
    std::size_t i = 0;
    for (; i + 3 <= n; i += 3) {
        const std::uint32_t v = (std::uint32_t{p[i]} << 16) | (std::uint32_t{p[i + 1]} << 8) | p[i + 2];
        out += tab[v >> 18], out += tab[(v >> 12) & 63], out += tab[(v >> 6) & 63], out += tab[v & 63];
    }
    if (n - i == 1) {
        const std::uint32_t v = std::uint32_t{p[i]} << 16;
        out += tab[v >> 18], out += tab[(v >> 12) & 63], out += "==";
    } else if (n - i == 2) {
        const std::uint32_t v = (std::uint32_t{p[i]} << 16) | (std::uint32_t{p[i + 1]} << 8);
        out += tab[v >> 18], out += tab[(v >> 12) & 63], out += tab[(v >> 6) & 63], out += '=';
    }
    return out;
}

/// One "data: ..." server-sent event.
inline std::string sse(const json& j) { return "data: " + j.dump() + "\n\n"; }
inline constexpr std::string_view sse_done = "data: [DONE]\n\n";

/// Streams a sample's text so that no stop string ever reaches the client: text that could
/// still be the start of a stop string is held back until it cannot, and the text is cut
/// where a stop string begins. push() takes the next token's bytes (a whole UTF-8 character is
/// never split: the caller passes them through kite::text::utf8::stream_decoder).
class stop_filter {
public:
    explicit stop_filter(std::vector<std::string> stops = {}) : stops_(std::move(stops)) {}

    /// Text that is now safe to send (possibly empty).
    std::string push(std::string_view piece) {
        if (stopped_) return {};
        text_.append(piece);
        std::size_t safe = text_.size();
        for (const auto& s : stops_) {
            if (const auto at = text_.find(s, sent_); at != std::string::npos) {
                safe = std::min(safe, at);
                stopped_ = true;
            }
        }
        if (!stopped_) {
            for (const auto& s : stops_) {  // longest suffix of the text that begins a stop string
                for (std::size_t k = std::min(s.size() - 1, text_.size()); k > 0; --k) {
                    if (text_.compare(text_.size() - k, k, s, 0, k) == 0) {
                        safe = std::min(safe, text_.size() - k);
                        break;
                    }
                }
            }
        }
        return take(std::max(safe, sent_));
    }
    /// At the end: whatever of `final_text` (the engine's text, already cut before a stop
    /// string) was not sent yet.
    std::string finish(std::string_view final_text) {
        if (final_text.size() <= sent_ || final_text.compare(0, sent_, text_, 0, sent_) != 0) return {};
        std::string out(final_text.substr(sent_));
        sent_ = final_text.size();
        return out;
    }
    bool stopped() const noexcept { return stopped_; }

private:
    std::string take(std::size_t upto) {
        std::string out = text_.substr(sent_, upto - sent_);
        sent_ = upto;
        return out;
    }
    std::vector<std::string> stops_;
    std::string text_;
    std::size_t sent_ = 0;
    bool stopped_ = false;
};

/// A Prometheus histogram with fixed upper bounds (seconds); observe() from any thread.
class histogram {
public:
    explicit histogram(std::vector<double> bounds) : bounds_(std::move(bounds)), counts_(bounds_.size() + 1, 0) {}
    void observe(double v) {
        if (!std::isfinite(v)) return;
        std::lock_guard lk(m_);
        const auto i = static_cast<std::size_t>(std::lower_bound(bounds_.begin(), bounds_.end(), v) - bounds_.begin());
        ++counts_[i];
        sum_ += v;
        ++count_;
    }
    std::uint64_t count() const {
        std::lock_guard lk(m_);
        return count_;
    }
    /// The metric's lines in Prometheus text format (cumulative buckets, +Inf, _sum, _count).
    void render(std::ostream& os, const std::string& name, const std::string& help) const {
        std::lock_guard lk(m_);
        os << "# HELP " << name << ' ' << help << "\n# TYPE " << name << " histogram\n";
        std::uint64_t cum = 0;
        for (std::size_t i = 0; i < bounds_.size(); ++i) {
            cum += counts_[i];
            os << name << "_bucket{le=\"" << bounds_[i] << "\"} " << cum << '\n';
        }
        os << name << "_bucket{le=\"+Inf\"} " << count_ << '\n' << name << "_sum " << sum_ << '\n' << name << "_count " << count_ << '\n';
    }

private:
    std::vector<double> bounds_;
    mutable std::mutex m_;
    std::vector<std::uint64_t> counts_;
    double sum_ = 0;
    std::uint64_t count_ = 0;
};

/// One gauge or counter in Prometheus text format.
inline void metric(std::ostream& os, const std::string& name, const char* type, const std::string& help, double value) {
    os << "# HELP " << name << ' ' << help << "\n# TYPE " << name << ' ' << type << '\n' << name << ' ' << value << '\n';
}

}  // namespace kite::serve::openai
