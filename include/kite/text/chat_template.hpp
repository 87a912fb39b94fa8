#pragma once
/// @file kite/text/chat_template.hpp
/// Chat templates rendered natively, without a template engine: a model's Jinja
/// `chat_template` (tokenizer_config.json, or `tokenizer.chat_template` in a GGUF file) is
/// recognized as one of three families, and conversations are rendered by C++ code that gives
/// exactly what transformers' apply_chat_template renders with that template:
///
///   chatml  <|im_start|>{role}\n{content}<|im_end|>\n ... <|im_start|>assistant\n
///           (SmolLM2, Qwen2, Hermes; the template's default system message, inserted when the
///           conversation does not start with one, is recognized and kept)
///   llama2  <s>[INST] <<SYS>>\n{system}\n<</SYS>>\n\n{user} [/INST] {assistant} </s>...
///           (Llama-2-chat: roles must alternate user/assistant; contents are strip()ped)
///   llama3  <|begin_of_text|><|start_header_id|>{role}<|end_header_id|>\n\n{content}<|eot_id|>
///           ... <|start_header_id|>assistant<|end_header_id|>\n\n (Meta-Llama-3-Instruct;
///           contents are trim()med)
///
///   const auto info = kite::text::recognize_chat_template(jinja_text);   // family, default system
///   const kite::text::chat_template tpl(info.family, "<s>", "</s>", info.default_system);
///   std::vector<kite::text::chat_message> chat{{"system", "Be brief."}, {"user", "Hi!"}};
///   std::string prompt = tpl.render_text(chat, /*add_generation_prompt=*/true);
///   for (const auto& seg : tpl.render(chat, true)) ...   // {text, is_template_text}
///
/// render() keeps the template's own text (markers such as <|im_start|>, where special tokens
/// belong) apart from the messages' contents, so a tokenizer can match special tokens in the
/// first and keep special-token text inside a user's message plain (see gguf_tokenizer).
///
/// Recognition is by structure, not by bytes: the template is lexed as Jinja does it (with the
/// trim_blocks / lstrip_blocks / "-" whitespace control transformers uses), tags are reduced to
/// their tokens (quote style, `a.b` versus `a['b']`, `'x' + 'y'` versus `'xy'`, literal text versus
/// `{{ 'text' }}` are all the same), and the result is compared with the known templates. A
/// template that is none of them is a kite::config_error naming its first 80 characters; the
/// caller may then choose a family by name (parse_chat_family). Conversations the family cannot
/// express (Llama-2's alternation, an unknown role, an empty conversation) are
/// kite::invalid_argument naming the message; invalid UTF-8 is kite::unicode_error.
///
/// Needs only the standard library. Everything here is immutable after construction and safe to
/// use from many threads.

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "kite/core/error.hpp"
#include "kite/text/utf8.hpp"

namespace kite::text {

/// The chat formats kite renders natively.
enum class chat_family : std::uint8_t { chatml, llama2, llama3 };

/// "chatml", "llama2" or "llama3".
constexpr std::string_view to_string(chat_family f) noexcept {
    switch (f) {
        case chat_family::chatml: return "chatml";
        case chat_family::llama2: return "llama2";
        case chat_family::llama3: return "llama3";
    }
    return "?";
}

/// The family named `name`: "chatml", "llama2" (or "llama-2"), "llama3" (or "llama-3"); any
/// other name is a kite::config_error listing the names.
inline chat_family parse_chat_family(std::string_view name) {
    if (name == "chatml") return chat_family::chatml;
    if (name == "llama2" || name == "llama-2") return chat_family::llama2;
    if (name == "llama3" || name == "llama-3") return chat_family::llama3;
    ::kite::detail::raise<config_error>("chat family '", name, "' is unknown; expected chatml, llama2 or llama3");
}

/// One message of a conversation. `role` is "system", "user" or "assistant".
struct chat_message {
    std::string role;
    std::string content;
};

/// A piece of a rendered conversation: the template's own text (is_template_text) or a
/// message's content (and the default system message is template text: the template holds it).
struct chat_segment {
    std::string text;
    bool is_template_text = true;
    bool operator==(const chat_segment&) const = default;
};

/// What recognize_chat_template found in a template.
struct chat_template_info {
    chat_family family = chat_family::chatml;
    /// The system message the template inserts when a conversation does not start with one.
    std::optional<std::string> default_system;
};

namespace detail {

/// Python's str.isspace (what Jinja's trim filter and str.strip() remove).
constexpr bool python_space(char32_t c) noexcept {
    return (c >= 0x09 && c <= 0x0D) || (c >= 0x1C && c <= 0x20) || c == 0x85 || c == 0xA0 || c == 0x1680 ||
           (c >= 0x2000 && c <= 0x200A) || c == 0x2028 || c == 0x2029 || c == 0x202F || c == 0x205F || c == 0x3000;
}

/// Python's str.strip() applied to the concatenation of `segs` (valid UTF-8): whitespace is
/// removed from its start and end, across segment boundaries; emptied segments are dropped.
inline void strip_segments(std::vector<chat_segment>& segs) {
    // leading
    for (auto& s : segs) {
        std::size_t i = 0;
        while (i < s.text.size()) {
            std::size_t j = i;
            if (!python_space(utf8::decode(s.text, j))) break;
            i = j;
        }
        s.text.erase(0, i);
        if (!s.text.empty()) break;
    }
    // trailing
    for (auto it = segs.rbegin(); it != segs.rend(); ++it) {
        std::string& t = it->text;
        std::size_t end = t.size();
        while (end > 0) {
            std::size_t k = end - 1;
            while (k > 0 && (static_cast<unsigned char>(t[k]) & 0xC0) == 0x80) --k;
            std::size_t kk = k;
            if (!python_space(utf8::decode(t, kk))) break;
            end = k;
        }
        t.resize(end);
        if (!t.empty()) break;
    }
    std::erase_if(segs, [](const chat_segment& s) { return s.text.empty(); });
}

// ---- recognition: Jinja lexed into canonical units ------------------------------------------

/// A token inside a Jinja tag: a name, a string literal (decoded), a number or an operator.
struct jinja_token {
    enum kind_t : std::uint8_t { name, string, number, op } kind;
    std::string text;
    bool operator==(const jinja_token&) const = default;
};

/// Decodes a Python/Jinja string literal body (the characters between the quotes); false when
/// an escape is malformed.
inline bool decode_jinja_string(std::string_view body, std::string& out) {
    out.clear();
    for (std::size_t i = 0; i < body.size(); ++i) {
        const char c = body[i];
        if (c != '\\') {
            if (c == '\r') {  // Jinja normalizes newlines in literals
                out.push_back('\n');
                if (i + 1 < body.size() && body[i + 1] == '\n') ++i;
                continue;
            }
            out.push_back(c);
            continue;
        }
        if (++i >= body.size()) return false;
        const char e = body[i];
        const auto hex = [&](int n) -> bool {
            char32_t v = 0;
            for (int k = 1; k <= n; ++k) {
                if (i + static_cast<std::size_t>(k) >= body.size()) return false;
                const char h = body[i + static_cast<std::size_t>(k)];
                int d = -1;
                if (h >= '0' && h <= '9') d = h - '0';
                else if (h >= 'a' && h <= 'f') d = h - 'a' + 10;
                else if (h >= 'A' && h <= 'F') d = h - 'A' + 10;
                if (d < 0) return false;
                v = v * 16 + static_cast<char32_t>(d);
            }
            if (v > 0x10FFFF || (v >= 0xD800 && v <= 0xDFFF)) return false;
            utf8::append(out, v);
            i += static_cast<std::size_t>(n);
            return true;
        };
        switch (e) {
            case 'n': out.push_back('\n'); break;
            case 't': out.push_back('\t'); break;
            case 'r': out.push_back('\r'); break;
            case '\\': out.push_back('\\'); break;
            case '\'': out.push_back('\''); break;
            case '"': out.push_back('"'); break;
            case 'a': out.push_back('\a'); break;
            case 'b': out.push_back('\b'); break;
            case 'f': out.push_back('\f'); break;
            case 'v': out.push_back('\v'); break;
            case '0': out.push_back('\0'); break;
            case '\n': break;  // line continuation
            case 'x': if (!hex(2)) return false; break;
            case 'u': if (!hex(4)) return false; break;
            case 'U': if (!hex(8)) return false; break;
            default: out.push_back('\\'); out.push_back(e); break;  // Python keeps unknown escapes
        }
    }
    return true;
}

/// Lexes the inside of a tag into tokens; false on an unterminated string or a stray byte.
inline bool lex_jinja_tag(std::string_view s, std::vector<jinja_token>& out) {
    out.clear();
    std::size_t i = 0;
    const auto is_name0 = [](char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_'; };
    const auto is_digit = [](char c) { return c >= '0' && c <= '9'; };
    while (i < s.size()) {
        const char c = s[i];
        if (c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v') {
            ++i;
            continue;
        }
        if (c == '\'' || c == '"') {
            std::size_t j = i + 1;
            while (j < s.size() && s[j] != c) j += s[j] == '\\' ? 2 : 1;
            if (j >= s.size()) return false;
            jinja_token t{jinja_token::string, {}};
            if (!decode_jinja_string(s.substr(i + 1, j - i - 1), t.text)) return false;
            out.push_back(std::move(t));
            i = j + 1;
            continue;
        }
        if (is_name0(c)) {
            std::size_t j = i + 1;
            while (j < s.size() && (is_name0(s[j]) || is_digit(s[j]))) ++j;
            out.push_back({jinja_token::name, std::string(s.substr(i, j - i))});
            i = j;
            continue;
        }
        if (is_digit(c)) {
            std::size_t j = i + 1;
            while (j < s.size() && (is_digit(s[j]) || s[j] == '.' || s[j] == '_')) ++j;
            out.push_back({jinja_token::number, std::string(s.substr(i, j - i))});
            i = j;
            continue;
        }
        static constexpr std::string_view two[] = {"==", "!=", "<=", ">=", "//", "**"};
        bool matched = false;
        for (const auto op : two) {
            if (s.substr(i, 2) == op) {
                out.push_back({jinja_token::op, std::string(op)});
                i += 2;
                matched = true;
                break;
            }
        }
        if (matched) continue;
        if (std::string_view("+-*/%~|.,:;()[]{}<>=!").find(c) == std::string_view::npos) return false;
        out.push_back({jinja_token::op, std::string(1, c)});
        ++i;
    }
    return true;
}

/// Rewrites `a.b` as `a['b']`, and folds `'x' + 'y'` into `'xy'` where precedence allows.
inline void canonicalize_tokens(std::vector<jinja_token>& t) {
    std::vector<jinja_token> r;
    r.reserve(t.size());
    for (std::size_t i = 0; i < t.size(); ++i) {
        if (t[i].kind == jinja_token::op && t[i].text == "." && i + 1 < t.size() && t[i + 1].kind == jinja_token::name &&
            !r.empty() && (r.back().kind == jinja_token::name || r.back().kind == jinja_token::string ||
                           r.back().text == ")" || r.back().text == "]")) {
            r.push_back({jinja_token::op, "["});
            r.push_back({jinja_token::string, t[i + 1].text});
            r.push_back({jinja_token::op, "]"});
            ++i;
            continue;
        }
        r.push_back(std::move(t[i]));
    }
    const auto binds_tighter = [](const jinja_token& x) {
        return x.kind == jinja_token::op && (x.text == "|" || x.text == "." || x.text == "[" || x.text == "(" ||
                                             x.text == "*" || x.text == "/" || x.text == "//" || x.text == "%" ||
                                             x.text == "**" || x.text == "-");
    };
    bool changed = true;
    while (changed) {
        changed = false;
        for (std::size_t i = 0; i + 2 < r.size(); ++i) {
            if (r[i].kind != jinja_token::string || r[i + 1].kind != jinja_token::op || r[i + 1].text != "+" ||
                r[i + 2].kind != jinja_token::string)
                continue;
            if (i > 0 && (binds_tighter(r[i - 1]) || r[i - 1].text == "]" || r[i - 1].text == ")")) continue;
            if (i + 3 < r.size() && binds_tighter(r[i + 3])) continue;
            r[i].text += r[i + 2].text;
            r.erase(r.begin() + static_cast<std::ptrdiff_t>(i) + 1, r.begin() + static_cast<std::ptrdiff_t>(i) + 3);
            changed = true;
            break;
        }
    }
    t = std::move(r);
}

/// One unit of a canonical template: literal output, an output expression, or a statement.
struct jinja_unit {
    enum kind_t : std::uint8_t { literal, output, statement } kind;
    std::string text;                 // literal text
    std::vector<jinja_token> tokens;  // output / statement
};

/// Splits an output expression at top-level + and ~ (both print their operands one after the
/// other when they are strings) unless a looser operator makes that wrong.
inline std::vector<std::vector<jinja_token>> split_output(const std::vector<jinja_token>& t) {
    int depth = 0;
    std::vector<std::size_t> cuts;
    for (std::size_t i = 0; i < t.size(); ++i) {
        const auto& x = t[i];
        if (x.kind == jinja_token::op) {
            if (x.text == "(" || x.text == "[" || x.text == "{") ++depth;
            else if (x.text == ")" || x.text == "]" || x.text == "}") --depth;
            else if (depth == 0 && (x.text == "+" || x.text == "~")) cuts.push_back(i);
            else if (depth == 0 && x.text != "|" && x.text != "." && x.text != "*" && x.text != "/" && x.text != "//" &&
                     x.text != "%" && x.text != "**")
                return {t};  // comparison, minus, ... : keep whole
        } else if (depth == 0 && x.kind == jinja_token::name &&
                   (x.text == "if" || x.text == "else" || x.text == "and" || x.text == "or" || x.text == "not" ||
                    x.text == "in" || x.text == "is")) {
            return {t};
        }
    }
    if (cuts.empty()) return {t};
    std::vector<std::vector<jinja_token>> parts;
    std::size_t start = 0;
    for (const std::size_t c : cuts) {
        if (c == start) return {t};  // unary + or malformed
        parts.emplace_back(t.begin() + static_cast<std::ptrdiff_t>(start), t.begin() + static_cast<std::ptrdiff_t>(c));
        start = c + 1;
    }
    if (start >= t.size()) return {t};
    parts.emplace_back(t.begin() + static_cast<std::ptrdiff_t>(start), t.end());
    return parts;
}

/// The template as canonical units, or nullopt when it does not lex (an unterminated tag,
/// string or comment). Whitespace control follows jinja2's lexer with trim_blocks and
/// lstrip_blocks on and keep_trailing_newline off, as transformers renders chat templates.
inline std::optional<std::vector<jinja_unit>> canonical_units(std::string_view src) {
    std::vector<jinja_unit> units;
    const auto add_literal = [&](std::string text) {
        if (text.empty()) return;
        if (!units.empty() && units.back().kind == jinja_unit::literal) units.back().text += text;
        else units.push_back({jinja_unit::literal, std::move(text), {}});
    };
    const auto add_output = [&](std::vector<jinja_token> toks) {
        canonicalize_tokens(toks);
        for (auto& part : split_output(toks)) {
            if (part.size() == 1 && part[0].kind == jinja_token::string) add_literal(part[0].text);
            else units.push_back({jinja_unit::output, {}, std::move(part)});
        }
    };
    const auto is_space = [](char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v'; };
    const auto normalize_newlines = [](std::string_view s) {
        std::string r;
        r.reserve(s.size());
        for (std::size_t i = 0; i < s.size(); ++i) {
            if (s[i] == '\r') {
                r.push_back('\n');
                if (i + 1 < s.size() && s[i + 1] == '\n') ++i;
            } else {
                r.push_back(s[i]);
            }
        }
        return r;
    };
    // keep_trailing_newline = false: one trailing newline of the source is dropped.
    if (src.ends_with("\r\n")) src.remove_suffix(2);
    else if (src.ends_with('\n') || src.ends_with('\r')) src.remove_suffix(1);

    std::size_t pos = 0;
    bool line_starting = true;
    std::vector<jinja_token> toks;
    while (pos <= src.size()) {
        std::size_t start = pos;
        char kind = 0;
        while (true) {
            start = src.find('{', start);
            if (start == std::string_view::npos || start + 1 >= src.size()) {
                start = std::string_view::npos;
                break;
            }
            const char k = src[start + 1];
            if (k == '{' || k == '%' || k == '#') {
                kind = k;
                break;
            }
            ++start;
        }
        if (start == std::string_view::npos) {
            add_literal(normalize_newlines(src.substr(pos)));
            break;
        }
        std::string_view text = src.substr(pos, start - pos);
        std::size_t p = start + 2;
        const char sign = p < src.size() && (src[p] == '-' || src[p] == '+') ? src[p] : 0;
        if (sign) ++p;
        if (sign == '-') {
            while (!text.empty() && is_space(text.back())) text.remove_suffix(1);
        } else if (sign != '+' && kind != '{') {  // lstrip_blocks
            const std::size_t nl = text.rfind('\n');
            const std::size_t l_pos = nl == std::string_view::npos ? 0 : nl + 1;
            if ((l_pos > 0 || line_starting) && l_pos < text.size() &&
                std::all_of(text.begin() + static_cast<std::ptrdiff_t>(l_pos), text.end(), is_space))
                text = text.substr(0, l_pos);
        }
        add_literal(normalize_newlines(text));

        // The tag body up to its end delimiter, outside strings and brackets.
        const char close = kind == '{' ? '}' : kind == '%' ? '%' : '#';
        std::size_t q = p;
        int depth = 0;
        std::size_t body_end = std::string_view::npos;
        while (q < src.size()) {
            const char c = src[q];
            if (kind != '#') {
                if (c == '\'' || c == '"') {
                    std::size_t j = q + 1;
                    while (j < src.size() && src[j] != c) j += src[j] == '\\' ? 2 : 1;
                    if (j >= src.size()) return std::nullopt;
                    q = j + 1;
                    continue;
                }
                if (c == '(' || c == '[' || c == '{') {
                    ++depth;
                    ++q;
                    continue;
                }
                if ((c == ')' || c == ']' || c == '}') && depth > 0) {
                    --depth;
                    ++q;
                    continue;
                }
            }
            if (depth == 0 && c == close && q + 1 < src.size() && src[q + 1] == '}') {
                body_end = q;
                break;
            }
            ++q;
        }
        if (body_end == std::string_view::npos) return std::nullopt;
        std::size_t b_end = body_end;
        char end_sign = 0;
        if (b_end > p && (src[b_end - 1] == '-' || (src[b_end - 1] == '+' && kind != '{'))) {
            end_sign = src[b_end - 1];
            --b_end;
        }
        const std::string_view body = src.substr(p, b_end > p ? b_end - p : 0);
        pos = body_end + 2;
        if (end_sign == '-') {
            while (pos < src.size() && is_space(src[pos])) ++pos;
        } else if (end_sign != '+' && kind != '{' && pos < src.size() && src[pos] == '\n') {  // trim_blocks
            ++pos;
        }
        line_starting = pos > 0 && src[pos - 1] == '\n';
        if (kind == '#') continue;
        if (!lex_jinja_tag(body, toks)) return std::nullopt;
        if (kind == '{') {
            add_output(toks);
        } else {
            canonicalize_tokens(toks);
            units.push_back({jinja_unit::statement, {}, toks});
        }
        if (pos >= src.size()) break;
    }
    return units;
}

/// Marker for the default system message in the reference templates below.
inline constexpr std::string_view system_marker = "\x1F" "DEFAULT_SYSTEM" "\x1F";

/// The canonical units as one string: literals between \x01 and \x02 (with \\, \x01, \x02
/// escaped), outputs in {{ }}, statements in {% %}, tokens separated by spaces.
inline std::string serialize_units(const std::vector<jinja_unit>& units) {
    std::string s;
    const auto esc = [&](std::string_view t) {
        for (const char c : t) {
            if (c == '\\') s += "\\\\";
            else if (c == '\x01') s += "\\1";
            else if (c == '\x02') s += "\\2";
            else if (c == '\'') s += "\\'";
            else s.push_back(c);
        }
    };
    for (const auto& u : units) {
        if (u.kind == jinja_unit::literal) {
            s.push_back('\x01');
            esc(u.text);
            s.push_back('\x02');
            continue;
        }
        s += u.kind == jinja_unit::output ? "{{" : "{%";
        for (const auto& t : u.tokens) {
            s.push_back(' ');
            if (t.kind == jinja_token::string) {
                s.push_back('\'');
                esc(t.text);
                s.push_back('\'');
            } else {
                s += t.text;
            }
        }
        s += u.kind == jinja_unit::output ? " }}" : " %}";
    }
    return s;
}

/// Inverse of the literal escaping of serialize_units; nullopt when `s` crosses a unit boundary.
inline std::optional<std::string> unescape_literal(std::string_view s) {
    std::string r;
    for (std::size_t i = 0; i < s.size(); ++i) {
        const char c = s[i];
        if (c == '\x01' || c == '\x02' || c == '\'') return std::nullopt;
        if (c != '\\') {
            r.push_back(c);
            continue;
        }
        if (++i >= s.size()) return std::nullopt;
        if (s[i] == '\\') r.push_back('\\');
        else if (s[i] == '1') r.push_back('\x01');
        else if (s[i] == '2') r.push_back('\x02');
        else if (s[i] == '\'') r.push_back('\'');
        else return std::nullopt;
    }
    return r;
}

struct known_template {
    chat_family family;
    std::string_view jinja;  // may hold system_marker where the default system message goes
};

/// The reference templates, verbatim from the model repositories (the default system messages
/// replaced by the marker).
inline constexpr known_template known_templates[] = {
    // SmolLM2-Instruct (GGUF tokenizer.chat_template), Qwen2-Instruct: ChatML with a default system.
    {chat_family::chatml,
     "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}{{ '<|im_start|>system\n"
     "\x1F" "DEFAULT_SYSTEM" "\x1F"
     "<|im_end|>\n' }}{% endif %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}"
     "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"},
    // Plain ChatML (OpenHermes, Hermes-2, many fine-tunes).
    {chat_family::chatml,
     "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + "
     "'\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"},
    // meta-llama/Llama-2-7b-chat-hf
    {chat_family::llama2,
     "{% if messages[0]['role'] == 'system' %}{% set loop_messages = messages[1:] %}{% set system_message = "
     "messages[0]['content'] %}{% else %}{% set loop_messages = messages %}{% set system_message = false %}{% endif "
     "%}{% for message in loop_messages %}{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}{{ "
     "raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}{% if "
     "loop.index0 == 0 and system_message != false %}{% set content = '<<SYS>>\\n' + system_message + "
     "'\\n<</SYS>>\\n\\n' + message['content'] %}{% else %}{% set content = message['content'] %}{% endif %}{% if "
     "message['role'] == 'user' %}{{ bos_token + '[INST] ' + content.strip() + ' [/INST]' }}{% elif message['role'] "
     "== 'assistant' %}{{ ' '  + content.strip() + ' ' + eos_token }}{% endif %}{% endfor %}"},
    // meta-llama/Meta-Llama-3-8B-Instruct
    {chat_family::llama3,
     "{% set loop_messages = messages %}{% for message in loop_messages %}{% set content = '<|start_header_id|>' + "
     "message['role'] + '<|end_header_id|>\n\n'+ message['content'] | trim + '<|eot_id|>' %}{% if loop.index0 == 0 "
     "%}{% set content = bos_token + content %}{% endif %}{{ content }}{% endfor %}{% if add_generation_prompt %}{{ "
     "'<|start_header_id|>assistant<|end_header_id|>\n\n' }}{% endif %}"},
};

/// A no-op preamble some ChatML templates carry; accepted before any known template.
inline constexpr std::string_view optional_preamble =
    "{% if not add_generation_prompt is defined %}{% set add_generation_prompt = false %}{% endif %}";

struct known_serialized {
    chat_family family;
    std::string prefix;  // up to the default-system marker (the whole template when none)
    std::string suffix;  // after the marker
    bool has_system;
};

inline const std::vector<known_serialized>& known_serialized_templates() {
    static const std::vector<known_serialized> all = [] {
        std::vector<known_serialized> v;
        const std::string preamble = serialize_units(*canonical_units(optional_preamble));
        for (const auto& k : known_templates) {
            const std::string s = serialize_units(*canonical_units(k.jinja));
            const std::size_t m = s.find(system_marker);
            for (const bool with_preamble : {false, true}) {
                known_serialized e{k.family, {}, {}, m != std::string::npos};
                const std::string full = with_preamble ? preamble + s : s;
                const std::size_t mm = full.find(system_marker);
                if (mm == std::string::npos) {
                    e.prefix = full;
                } else {
                    e.prefix = full.substr(0, mm);
                    e.suffix = full.substr(mm + system_marker.size());
                }
                v.push_back(std::move(e));
            }
        }
        return v;
    }();
    return all;
}

/// The first `n` characters of `s` for an error message (cut at a character boundary, invalid
/// UTF-8 replaced, newlines shown as \n and other control characters as \xHH).
inline std::string quote_prefix(std::string_view s, std::size_t n = 80) {
    const std::string clean = utf8::lossy(s);
    std::string out;
    std::size_t chars = 0, i = 0;
    while (i < clean.size() && chars < n) {
        std::size_t j = i;
        utf8::decode(clean, j);
        const std::string_view ch = std::string_view(clean).substr(i, j - i);
        if (ch == "\n") {
            out += "\\n";
        } else if (ch.size() == 1 && (static_cast<unsigned char>(ch[0]) < 0x20 || ch[0] == 0x7F)) {
            const auto c = static_cast<unsigned char>(ch[0]);
            out += "\\x";
            out.push_back("0123456789ABCDEF"[c >> 4]);
            out.push_back("0123456789ABCDEF"[c & 15]);
        } else {
            out += ch;
        }
        i = j;
        ++chars;
    }
    if (i < clean.size()) out += "...";
    return out;
}

}  // namespace detail

/// The family (and default system message) of a Jinja chat template, or nullopt when it is
/// none of the templates kite knows (see the file comment).
inline std::optional<chat_template_info> try_recognize_chat_template(std::string_view jinja) {
    const auto units = detail::canonical_units(jinja);
    if (!units) return std::nullopt;
    const std::string s = detail::serialize_units(*units);
    for (const auto& k : detail::known_serialized_templates()) {
        if (!k.has_system) {
            if (s == k.prefix) return chat_template_info{k.family, std::nullopt};
            continue;
        }
        if (s.size() < k.prefix.size() + k.suffix.size() || !s.starts_with(k.prefix) || !s.ends_with(k.suffix)) continue;
        auto sys = detail::unescape_literal(
            std::string_view(s).substr(k.prefix.size(), s.size() - k.prefix.size() - k.suffix.size()));
        if (!sys) continue;
        return chat_template_info{k.family, std::move(*sys)};
    }
    return std::nullopt;
}

/// try_recognize_chat_template, or a kite::config_error naming the template's first 80
/// characters and saying how to choose a family by name.
inline chat_template_info recognize_chat_template(std::string_view jinja) {
    if (auto info = try_recognize_chat_template(jinja)) return *info;
    ::kite::detail::raise<config_error>(
        "chat template not recognized: \"", detail::quote_prefix(jinja),
        "\"; kite renders the chatml, llama2 and llama3 families natively: choose one by name "
        "(kite::text::parse_chat_family(\"chatml\"); for a GGUF file, gguf_tokenizer_options::chat_family)");
}

/// A recognized (or chosen) chat template that renders conversations; see the file comment.
class chat_template {
public:
    /// `bos_token` / `eos_token` are the texts the template's bos_token / eos_token stand for
    /// (Llama-2 and Llama-3 use them); `default_system` is inserted by the chatml family when
    /// the conversation does not start with a system message (the other families have none).
    explicit chat_template(chat_family family, std::string bos_token = {}, std::string eos_token = {},
                           std::optional<std::string> default_system = std::nullopt)
        : family_(family), bos_(std::move(bos_token)), eos_(std::move(eos_token)), default_system_(std::move(default_system)) {
        if (family_ != chat_family::chatml) default_system_.reset();
        if (default_system_) utf8::require_valid(*default_system_, 0, "chat_template: the default system message");
        utf8::require_valid(bos_, 0, "chat_template: bos_token");
        utf8::require_valid(eos_, 0, "chat_template: eos_token");
    }
    /// Recognizes `jinja` (kite::config_error when unknown, see recognize_chat_template).
    static chat_template from_jinja(std::string_view jinja, std::string bos_token = {}, std::string eos_token = {}) {
        auto info = recognize_chat_template(jinja);
        return chat_template(info.family, std::move(bos_token), std::move(eos_token), std::move(info.default_system));
    }

    chat_family family() const noexcept { return family_; }
    const std::optional<std::string>& default_system() const noexcept { return default_system_; }
    const std::string& bos_token() const noexcept { return bos_; }
    const std::string& eos_token() const noexcept { return eos_; }
    /// The text that closes an assistant turn: "<|im_end|>", "<|eot_id|>", or eos_token (llama2).
    std::string_view end_of_turn() const noexcept {
        switch (family_) {
            case chat_family::chatml: return "<|im_end|>";
            case chat_family::llama3: return "<|eot_id|>";
            case chat_family::llama2: return eos_;
        }
        return eos_;
    }

    /// The conversation as segments of template text and message content, in order (adjacent
    /// segments of the same kind merged). Concatenated, they are render_text().
    std::vector<chat_segment> render(std::span<const chat_message> messages, bool add_generation_prompt) const {
        check(messages);
        std::vector<chat_segment> out;
        switch (family_) {
            case chat_family::chatml: render_chatml(messages, add_generation_prompt, out); break;
            case chat_family::llama2: render_llama2(messages, out); break;
            case chat_family::llama3: render_llama3(messages, add_generation_prompt, out); break;
        }
        return out;
    }

    /// The conversation as text, as transformers' apply_chat_template(tokenize=False) gives it.
    std::string render_text(std::span<const chat_message> messages, bool add_generation_prompt) const {
        std::string s;
        for (const auto& seg : render(messages, add_generation_prompt)) s += seg.text;
        return s;
    }

private:
    static void push(std::vector<chat_segment>& out, std::string_view text, bool tmpl) {
        if (text.empty()) return;
        if (!out.empty() && out.back().is_template_text == tmpl) out.back().text += text;
        else out.push_back({std::string(text), tmpl});
    }
    static void append(std::vector<chat_segment>& out, std::vector<chat_segment>&& more) {
        for (auto& s : more) push(out, s.text, s.is_template_text);
    }

    void check(std::span<const chat_message> messages) const {
        KITE_REQUIRE(!messages.empty(), invalid_argument,
                     "chat_template::render: the conversation is empty; expected at least one message");
        for (std::size_t i = 0; i < messages.size(); ++i) {
            const auto& m = messages[i];
            utf8::require_valid(m.role, 0, "chat_template::render: the role of message " + std::to_string(i));
            utf8::require_valid(m.content, 0, "chat_template::render: the content of message " + std::to_string(i));
            KITE_REQUIRE(m.role == "system" || m.role == "user" || m.role == "assistant", invalid_argument,
                         "chat_template::render: message ", i, " has role '", detail::quote_prefix(m.role, 40),
                         "'; expected system, user or assistant");
        }
    }

    void render_chatml(std::span<const chat_message> messages, bool gen, std::vector<chat_segment>& out) const {
        if (default_system_ && messages.front().role != "system")
            push(out, "<|im_start|>system\n" + *default_system_ + "<|im_end|>\n", true);
        for (const auto& m : messages) {
            push(out, "<|im_start|>" + m.role + "\n", true);
            push(out, m.content, false);
            push(out, "<|im_end|>\n", true);
        }
        if (gen) push(out, "<|im_start|>assistant\n", true);
    }

    // Llama-2-chat: a leading system message joins the first user message inside <<SYS>>; the
    // rest must alternate user, assistant, ... (the template's raise_exception otherwise).
    void render_llama2(std::span<const chat_message> messages, std::vector<chat_segment>& out) const {
        const bool has_system = messages.front().role == "system";
        const std::size_t first = has_system ? 1 : 0;
        for (std::size_t i = first; i < messages.size(); ++i) {
            const auto& m = messages[i];
            const std::size_t k = i - first;  // loop.index0
            if ((m.role == "user") != (k % 2 == 0))
                ::kite::detail::raise<invalid_argument>(
                    "chat_template::render (llama2): message ", i, " has role '", m.role,
                    "': Conversation roles must alternate user/assistant/user/assistant/...",
                    has_system ? " (after the leading system message)" : "");
            if (m.role == "system")  // at an odd place: the template would drop it silently
                ::kite::detail::raise<invalid_argument>("chat_template::render (llama2): message ", i,
                                                        " is a system message; the llama2 family allows one only first");
            std::vector<chat_segment> content;
            if (k == 0 && has_system) {
                push(content, "<<SYS>>\n", true);
                push(content, messages.front().content, false);
                push(content, "\n<</SYS>>\n\n", true);
            }
            push(content, m.content, false);
            detail::strip_segments(content);
            if (m.role == "user") {
                push(out, bos_ + "[INST] ", true);
                append(out, std::move(content));
                push(out, " [/INST]", true);
            } else {
                push(out, " ", true);
                append(out, std::move(content));
                push(out, " " + eos_, true);
            }
        }
    }

    void render_llama3(std::span<const chat_message> messages, bool gen, std::vector<chat_segment>& out) const {
        for (std::size_t i = 0; i < messages.size(); ++i) {
            const auto& m = messages[i];
            push(out, (i == 0 ? bos_ : std::string()) + "<|start_header_id|>" + m.role + "<|end_header_id|>\n\n", true);
            std::vector<chat_segment> content{{m.content, false}};
            detail::strip_segments(content);
            append(out, std::move(content));
            push(out, "<|eot_id|>", true);
        }
        if (gen) push(out, "<|start_header_id|>assistant<|end_header_id|>\n\n", true);
    }

    chat_family family_;
    std::string bos_, eos_;
    std::optional<std::string> default_system_;
};

}  // namespace kite::text
