#pragma once
/// @file kite/app/validate.hpp
/// Validation policies for an LLM application: checks on the user's question, the retrieved
/// passages, the assembled prompt and the model's output, composed at compile time.
///
///   using namespace kite::app;
///   validator v(pii_mask{},                                                   // [EMAIL] [PHONE] [CARD]
///               block_list::words({"bomb", "nerve agent"}),                  // refuse, whole words
///               length_limit({.max_chars = 4000}),
///               required_pattern(R"(\[[^\]]+\])", {.description = "a citation like [1]"}),
///               llm_judge(hook, "Is this answer supported?\n{text}\nAnswer yes or no.", 0.5));
///   decision d = v.check(stage::output, answer);
///   if (!d.usable()) return d.verdict == action::retry ? ask_again() : refuse(to_json(d));
///   send(d.text);                                                             // masked where PII was
///
/// A rule is any type with `check(stage, std::string& text, std::vector<finding>& out) const`
/// (it may rewrite text: masks) and `stages()` (a mask of the stages it runs on); the rules
/// here are block_list, required_pattern, pii_mask, length_limit, language_check,
/// topic_filter<Embedder> and llm_judge (kite/app/judge.hpp turns a kite decoder into its hook).
/// validator<Rules...>::check runs the rules of a stage in order, so a masking rule's output is
/// what the next rule sees, and the verdict is the most severe action among the findings
/// (pass < flag < mask < retry < refuse); check(s, text, stop_at) skips the remaining rules
/// once the verdict reaches stop_at (a refused question need not reach the judge).
///
/// Defaults (each rule's options set `on_fail`, `stages` and the `name` its findings carry):
///   block_list        refuse  every stage        required_pattern  retry   output
///   pii_mask          mask    every stage        length_limit      refuse  every stage
///   language_check    flag    question, output   topic_filter      refuse  question, output
///   llm_judge         retry   output
///
/// Invalid UTF-8: validator::check never throws on it. The text is left as is, no rule runs,
/// and the decision holds one finding, rule "utf8", action refuse, naming the byte offset.
/// Rules called directly expect valid UTF-8 (they do not crash on invalid bytes, but their
/// measures are then unspecified).
///
/// Regular expressions are RE2 (linear time in the text, no backtracking: `(a+)+$` on 100 000
/// 'a's and a '!' returns at once), each compiled once at construction under a memory budget
/// (max_mem); an invalid pattern is a kite::invalid_argument naming it and RE2's error. Every
/// rule is linear in the text (the topic and judge rules add the cost of their model call).
/// Thread safety: rules and validators are immutable after construction; check() is const
/// and may run concurrently when the embedders and hooks they call may.
/// Needs RE2 and utf8proc (link kite::app).

#include <re2/re2.h>
#include <re2/set.h>
#include <utf8proc.h>

#include <algorithm>
#include <cmath>
#include <concepts>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <initializer_list>
#include <limits>
#include <memory>
#include <string>
#include <string_view>
#include <tuple>
#include <type_traits>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "kite/core/error.hpp"
#include "kite/text/utf8.hpp"

namespace kite::app {

// ---------------------------------------------------------------------------------------------
// Stages, actions, findings, decisions

/// Where in a RAG exchange a check runs; values are bits, so a rule's stages() is a mask.
enum class stage : unsigned { question = 1, passage = 2, prompt = 4, output = 8 };
/// Every stage.
constexpr unsigned all_stages = 15;

/// A mask of two stages: `stage::question | stage::output`.
constexpr unsigned operator|(stage a, stage b) noexcept { return static_cast<unsigned>(a) | static_cast<unsigned>(b); }
constexpr unsigned operator|(unsigned a, stage b) noexcept { return a | static_cast<unsigned>(b); }

/// What a failed check asks for, ordered by severity.
enum class action { pass, flag, mask, retry, refuse };

constexpr const char* to_string(action a) noexcept {
    switch (a) {
        case action::pass: return "pass";
        case action::flag: return "flag";
        case action::mask: return "mask";
        case action::retry: return "retry";
        case action::refuse: return "refuse";
    }
    return "unknown";
}

constexpr const char* to_string(stage s) noexcept {
    switch (s) {
        case stage::question: return "question";
        case stage::passage: return "passage";
        case stage::prompt: return "prompt";
        case stage::output: return "output";
    }
    return "unknown";
}

/// The action named `name` ("pass", "flag", "mask", "retry", "refuse"; configuration files).
inline action parse_action(std::string_view name) {
    for (const action a : {action::pass, action::flag, action::mask, action::retry, action::refuse})
        if (name == to_string(a)) return a;
    ::kite::detail::raise<invalid_argument>("parse_action: '", name,
                                            "'; expected pass, flag, mask, retry or refuse");
}

/// The stage named `name` ("question", "passage", "prompt", "output").
inline stage parse_stage(std::string_view name) {
    for (const stage s : {stage::question, stage::passage, stage::prompt, stage::output})
        if (name == to_string(s)) return s;
    ::kite::detail::raise<invalid_argument>("parse_stage: '", name,
                                            "'; expected question, passage, prompt or output");
}

/// One failed check: which rule, why (a sentence naming the measured value), what it asks for,
/// and the rule's measure (a cosine, a probability, a count, a share; 0 when none).
struct finding {
    std::string rule;
    std::string reason;
    action act = action::flag;
    double score = 0;
};

/// The outcome of validating one text.
struct decision {
    action verdict = action::pass;          ///< the most severe action among findings (pass when none)
    std::string text;                       ///< the checked text; with mask findings, the masked text
    std::vector<finding> findings;
    /// The text may be used as is (pass, flag or mask).
    bool usable() const noexcept { return verdict <= action::mask; }
};

/// {"verdict": "...", "findings": [{"rule", "reason", "action", "score"}]} (the text is left out:
/// logs should not copy what a mask removed).
inline nlohmann::json to_json(const decision& d) {
    nlohmann::json fs = nlohmann::json::array();
    for (const auto& f : d.findings)
        fs.push_back({{"rule", f.rule}, {"reason", f.reason}, {"action", to_string(f.act)}, {"score", f.score}});
    return {{"verdict", to_string(d.verdict)}, {"findings", std::move(fs)}};
}

// ---------------------------------------------------------------------------------------------
// Concepts

/// A validation rule:
///   r.check(s, text, out) -> void   runs on `text` (valid UTF-8) at stage s; may rewrite text
///                                   (masks) and appends its findings to out; const
///   r.stages() -> unsigned          the stages (a mask of stage bits) it runs on
/// Linear in the text, apart from model calls.
template <class R>
concept validation_rule = std::move_constructible<R> &&
    requires(const R& r, stage s, std::string& text, std::vector<finding>& out) {
        { r.check(s, text, out) } -> std::same_as<void>;
        { r.stages() } -> std::convertible_to<unsigned>;
    };

/// A validation policy (what the RAG layer takes): p.check(s, text) -> decision.
template <class P>
concept validation_policy = requires(const P& p, stage s, std::string_view text) {
    { p.check(s, text) } -> std::same_as<decision>;
};

/// An embedder for topic_filter: e(text) -> std::vector<float> (kite::model::sentence_encoder,
/// a lambda, or std::cref of either).
template <class E>
concept text_embedder = requires(const E& e, std::string_view text) {
    { std::invoke(e, text) } -> std::convertible_to<std::vector<float>>;
};

// ---------------------------------------------------------------------------------------------
// Helpers

namespace detail {

inline bool ascii_digit(char c) noexcept { return c >= '0' && c <= '9'; }
inline bool ascii_word_char(char c) noexcept {
    return ascii_digit(c) || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_';
}

/// The code point at s[i] and its length; an invalid byte reads as U+FFFD of length 1.
inline char32_t next_code_point(std::string_view s, std::size_t& i) noexcept {
    const auto b = static_cast<unsigned char>(s[i]);
    if (b < 0x80) {
        ++i;
        return b;
    }
    if (text::utf8::sequence_length(s, i) == 0) {
        ++i;
        return U'\uFFFD';
    }
    return text::utf8::decode(s, i);
}

/// Unicode code points in s (bytes that are not continuation bytes).
inline std::size_t count_code_points(std::string_view s) noexcept {
    std::size_t n = 0;
    for (const char c : s) n += (static_cast<unsigned char>(c) & 0xC0) != 0x80;
    return n;
}

inline RE2::Options re2_options(std::int64_t max_mem) {
    RE2::Options o;
    o.set_encoding(RE2::Options::EncodingUTF8);
    o.set_log_errors(false);
    o.set_max_mem(max_mem);
    return o;
}

/// Compiles `pattern`, or throws kite::invalid_argument naming it and RE2's error.
inline std::unique_ptr<RE2> compile(const std::string& pattern, std::int64_t max_mem, std::string_view who) {
    KITE_REQUIRE(max_mem > 0, invalid_argument, who, ": max_mem = ", max_mem, "; expected > 0 bytes");
    auto re = std::make_unique<RE2>(pattern, re2_options(max_mem));
    KITE_REQUIRE(re->ok(), invalid_argument, who, ": invalid pattern \"", pattern, "\": ", re->error(),
                 "; expected RE2 syntax (github.com/google/re2/wiki/Syntax) within max_mem = ", max_mem, " bytes");
    // A pattern that matches the empty text and other probes anywhere (a*, x?, \b?) would block
    // every text, or require nothing.
    KITE_REQUIRE(!RE2::PartialMatch("", *re) || !RE2::PartialMatch("\x01 \n", *re) ||
                     !RE2::PartialMatch("abc def", *re),
                 invalid_argument, who, ": pattern \"", pattern,
                 "\" matches every text (even the empty one); expected a pattern that needs characters");
    return re;
}

/// Replaces each match of `re` in `text` (the span of capture group `group`) by `with`;
/// returns how many. Linear: every search resumes where the last replaced span ended.
inline std::size_t replace_all(std::string& text, const RE2& re, int group, std::string_view with) {
    const std::string_view in(text);
    re2::StringPiece m[2];
    std::string out;
    std::size_t pos = 0, copied = 0, count = 0;
    while (pos <= in.size() &&
           re.Match(in, pos, in.size(), RE2::UNANCHORED, m, group + 1)) {
        const re2::StringPiece& g = m[group];
        const auto b = static_cast<std::size_t>(g.data() - in.data());
        const std::size_t e = b + g.size();
        if (g.empty()) {  // a span of nothing: nothing to hide; step past it
            pos = static_cast<std::size_t>(m[0].data() - in.data()) + std::max<std::size_t>(m[0].size(), 1);
            continue;
        }
        out.append(in.substr(copied, b - copied));
        out.append(with);
        copied = e;
        pos = e;
        ++count;
    }
    if (count == 0) return 0;
    out.append(in.substr(copied));
    text = std::move(out);
    return count;
}

/// Whether a word edge needs a word boundary: letters and digits of scripts written with spaces
/// between words. Thai, Lao, Khmer, Myanmar, Hangul, Han and Kana edges match inside words
/// (those languages write no spaces, or attach particles to words).
inline bool needs_boundary(char32_t c) noexcept {
    if (c < 0x80) return ascii_word_char(static_cast<char>(c));
    const bool spaced = c < 0x0E00 || (c >= 0x1E00 && c < 0x2000) || (c >= 0x2C00 && c < 0x2E00) ||
                        (c >= 0xA640 && c < 0xA800);
    if (!spaced) return false;
    const auto cat = utf8proc_category(static_cast<utf8proc_int32_t>(c));
    return (cat >= UTF8PROC_CATEGORY_LU && cat <= UTF8PROC_CATEGORY_LO) ||
           (cat >= UTF8PROC_CATEGORY_ND && cat <= UTF8PROC_CATEGORY_NO) ||
           (cat >= UTF8PROC_CATEGORY_MN && cat <= UTF8PROC_CATEGORY_ME);
}

}  // namespace detail

/// The RE2 pattern of a literal word or phrase: metacharacters escaped, case-insensitive, runs
/// of whitespace matching any whitespace, and word-bounded (Unicode letters, digits, marks and
/// '_' count as word characters, so "ass" does not match "class" and "cafe" does not match
/// "cafes") on each edge that is a letter or digit of a space-separated script. Capture group 1
/// is the word itself (what block_list masks). kite::invalid_argument for an empty word or
/// invalid UTF-8.
inline std::string word_pattern(std::string_view word) {
    text::utf8::require_valid(word, 0, "word_pattern");
    std::vector<std::string_view> parts;
    std::size_t i = 0;
    const auto space = [](char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v'; };
    while (i < word.size()) {
        while (i < word.size() && space(word[i])) ++i;
        const std::size_t b = i;
        while (i < word.size() && !space(word[i])) ++i;
        if (i > b) parts.push_back(word.substr(b, i - b));
    }
    KITE_REQUIRE(!parts.empty(), invalid_argument, "word_pattern: \"", word, "\" is empty; expected a word or phrase");
    std::string body;
    for (std::size_t k = 0; k < parts.size(); ++k) {
        if (k) body += "\\s+";
        body += RE2::QuoteMeta(re2::StringPiece(parts[k].data(), parts[k].size()));
    }
    const std::string_view first = parts.front(), last = parts.back();
    std::size_t p = 0;
    const char32_t c0 = detail::next_code_point(first, p);
    char32_t c1 = 0;
    for (std::size_t q = 0; q < last.size();) c1 = detail::next_code_point(last, q);
    constexpr std::string_view nonword = "[^\\pL\\pN\\pM_]";
    std::string pat;
    if (detail::needs_boundary(c0)) pat += "(?:^|" + std::string(nonword) + ")";
    pat += "((?i:" + body + "))";
    if (detail::needs_boundary(c1)) pat += "(?:" + std::string(nonword) + "|$)";
    return pat;
}

/// Luhn's mod-10 check of a card number; spaces and dashes are skipped, any other character
/// (or no digit at all) fails it.
constexpr bool luhn_valid(std::string_view number) noexcept {
    int sum = 0, digits = 0;
    bool twice = false;
    for (std::size_t k = number.size(); k-- > 0;) {
        const char c = number[k];
        if (c == ' ' || c == '-') continue;
        if (c < '0' || c > '9') return false;
        int d = c - '0';
        if (twice) {
            d *= 2;
            if (d > 9) d -= 9;
        }
        sum += d;
        twice = !twice;
        ++digits;
    }
    return digits > 0 && sum % 10 == 0;
}

// ---------------------------------------------------------------------------------------------
// block_list

/// Options of block_list.
struct block_list_options {
    action on_fail = action::refuse;
    unsigned stages = all_stages;
    std::string name = "block_list";          ///< finding.rule
    /// With on_fail == action::mask, each match (a word_pattern's word) is replaced by this.
    std::string replacement = "[BLOCKED]";
    std::int64_t max_mem = 8 << 20;           ///< RE2's memory budget per pattern and for the set
};

/// Patterns that must not occur: compiled once into an RE2::Set (one pass over the text finds
/// every pattern that matches); a finding per matched pattern, naming it. With on_fail ==
/// action::mask the matched spans are replaced (options.replacement) instead.
///
///   auto bl = block_list::words({"bomb", "nerve agent"});           // literal, whole words
///   block_list re({R"(\bpass(word)?\s*[:=])"}, {.on_fail = action::flag});   // RE2 syntax
class block_list {
public:
    /// `patterns` in RE2 syntax (unanchored: a match anywhere counts); kite::invalid_argument
    /// naming an invalid pattern, or one that matches the empty string.
    explicit block_list(std::vector<std::string> patterns, block_list_options opt = {})
        : block_list(std::move(patterns), {}, false, std::move(opt)) {}

    /// Literal words or phrases (word_pattern: escaped, case-insensitive, word-bounded); a
    /// finding names the word.
    static block_list words(std::vector<std::string> words, block_list_options opt = {}) {
        std::vector<std::string> pats;
        pats.reserve(words.size());
        for (const auto& w : words) pats.push_back(word_pattern(w));
        return block_list(std::move(pats), std::move(words), true, std::move(opt));
    }

    unsigned stages() const noexcept { return opt_.stages; }
    const block_list_options& options() const noexcept { return opt_; }
    std::size_t size() const noexcept { return c_->labels.size(); }
    /// What findings call pattern i (the word, or the pattern itself).
    const std::string& label(std::size_t i) const { return c_->labels.at(i); }

    /// Indices of the patterns that occur in `text`, ascending.
    std::vector<std::size_t> matches(std::string_view text) const {
        std::vector<std::size_t> hit;
        if (size() == 0) return hit;
        std::vector<int> v;
        RE2::Set::ErrorInfo err{RE2::Set::kNoError};
        if (c_->set.Match(re2::StringPiece(text.data(), text.size()), &v, &err)) {
            for (const int k : v) hit.push_back(static_cast<std::size_t>(k));
        } else if (err.kind != RE2::Set::kNoError) {
            // The set's DFA ran out of its budget on this text: the patterns one by one (each
            // falls back on RE2's NFA, still linear).
            for (std::size_t k = 0; k < size(); ++k)
                if (RE2::PartialMatch(re2::StringPiece(text.data(), text.size()), *c_->one[k])) hit.push_back(k);
        }
        std::sort(hit.begin(), hit.end());
        return hit;
    }

    void check(stage, std::string& text, std::vector<finding>& out) const {
        for (const std::size_t k : matches(text)) {
            if (opt_.on_fail == action::mask) {
                const std::size_t n = detail::replace_all(text, *c_->one[k], 1, opt_.replacement);
                if (n == 0) continue;  // an earlier mask covered it
                out.push_back({opt_.name, ::kite::detail::concat("masked ", n, " match", n == 1 ? "" : "es", " of \"",
                                                                 c_->labels[k], "\" as ", opt_.replacement),
                               opt_.on_fail, static_cast<double>(n)});
            } else {
                out.push_back({opt_.name, "matched blocked \"" + c_->labels[k] + "\"", opt_.on_fail, 1.0});
            }
        }
    }

private:
    struct compiled {
        RE2::Set set;
        std::vector<std::unique_ptr<RE2>> one;  // [pattern] for reporting spans (masks) and the fallback
        std::vector<std::string> labels;        // [pattern]
        explicit compiled(const RE2::Options& o) : set(o, RE2::UNANCHORED) {}
    };

    block_list(std::vector<std::string> patterns, std::vector<std::string> labels, bool from_words,
               block_list_options opt)
        : opt_(std::move(opt)) {
        auto c = std::make_shared<compiled>(detail::re2_options(opt_.max_mem > 0 ? opt_.max_mem : 1));
        if (labels.empty()) labels = patterns;
        for (std::size_t k = 0; k < patterns.size(); ++k) {
            // Validate the pattern alone first, so that a pattern such as "a)|(b" cannot close
            // the group it is wrapped in below.
            detail::compile(patterns[k], opt_.max_mem, "block_list");
            // Group 1 is what a mask replaces: word_pattern's word, or the whole match.
            const std::string wrapped = from_words ? patterns[k] : "(" + patterns[k] + ")";
            c->one.push_back(detail::compile(wrapped, opt_.max_mem, "block_list"));
            std::string error;
            const int id = c->set.Add(re2::StringPiece(wrapped), &error);
            KITE_REQUIRE(id == static_cast<int>(k), invalid_argument, "block_list: invalid pattern \"", patterns[k],
                         "\": ", error, "; expected RE2 syntax");
        }
        KITE_REQUIRE(patterns.empty() || c->set.Compile(), invalid_argument, "block_list: the set of ", patterns.size(),
                     " patterns does not fit max_mem = ", opt_.max_mem, " bytes; expected fewer patterns or a larger budget");
        c->labels = std::move(labels);
        c_ = std::move(c);
    }

    block_list_options opt_;
    std::shared_ptr<const compiled> c_;  // immutable, shared by copies
};

// ---------------------------------------------------------------------------------------------
// required_pattern

/// Options of required_pattern.
struct required_pattern_options {
    action on_fail = action::retry;
    unsigned stages = static_cast<unsigned>(stage::output);
    std::string name = "required_pattern";
    std::string description = "";              ///< what the pattern stands for, in the reason
    std::int64_t max_mem = 8 << 20;
};

/// The text must contain a match of a pattern (RE2 syntax, unanchored), e.g. an answer must
/// cite a passage: required_pattern(R"(\[[^\]]+\])", {.description = "a citation like [1]"}).
class required_pattern {
public:
    explicit required_pattern(std::string pattern, required_pattern_options opt = {})
        : opt_(std::move(opt)), pattern_(std::move(pattern)) {
        re_ = detail::compile(pattern_, opt_.max_mem, "required_pattern");
    }
    unsigned stages() const noexcept { return opt_.stages; }
    const std::string& pattern() const noexcept { return pattern_; }
    bool matches(std::string_view text) const {
        return RE2::PartialMatch(re2::StringPiece(text.data(), text.size()), *re_);
    }
    void check(stage, std::string& text, std::vector<finding>& out) const {
        if (matches(text)) return;
        out.push_back({opt_.name,
                       "no match of required pattern \"" + pattern_ + "\"" +
                           (opt_.description.empty() ? std::string() : " (" + opt_.description + ")"),
                       opt_.on_fail, 0.0});
    }

private:
    required_pattern_options opt_;
    std::string pattern_;
    std::shared_ptr<const RE2> re_;
};

// ---------------------------------------------------------------------------------------------
// pii_mask

/// Options of pii_mask: which kinds of personal data to find.
struct pii_options {
    bool email = true;
    bool phone = true;
    bool card = true;
    /// Cards must start with an issuer digit 2-6 (Visa, Mastercard, Amex, Discover, JCB, Diners,
    /// UnionPay, Maestro), which keeps ISBN-13s (978/979) and most identifiers out.
    bool card_issuer_prefix = true;
    action on_fail = action::mask;             ///< mask rewrites the text; any other action only reports
    unsigned stages = all_stages;
    std::string name = "pii";
    std::int64_t max_mem = 8 << 20;
};

/// Finds e-mail addresses, phone numbers and payment card numbers and, with on_fail ==
/// action::mask (the default), replaces them by [EMAIL], [PHONE] and [CARD], leaving every
/// other byte as it was. One finding per kind found, its score the count.
///
/// What is covered (ASCII digits and addresses; a match must not touch a letter or digit):
///  - email: local part of letters, digits and . _ % + - (plus addressing), '@', a domain of
///    dot-separated labels (subdomains) ending in a letter TLD of 2+ characters. Internationalized
///    addresses are not covered.
///  - phone: (a) international: '+', country code, then 8-15 digits in all, in groups split
///    by single spaces, dots or dashes, with an optional "(0)" and parenthesized area code
///    (+1 415 555 2671, +44 (0)20 7946 0958, +82-10-1234-5678, +14155552671); (b) North
///    American: (415) 555-2671, 415-555-2671, 415.555.2671, 1-415-555-2671; (c) national with a
///    trunk 0: 9-12 digits in 2-5 groups split by one kind of separator, spaces or dashes
///    (020 7946 0958, 010-1234-5678, 01 23 45 67 89, 030 1234567, (030) 1234567). Unseparated
///    national numbers (0201234567) are not covered: they cannot be told from identifiers.
///  - card: 13-19 digits, unseparated or in groups split by one kind of separator (spaces or
///    dashes) whose first group has 4 digits and the others 3-6 (4-4-4-4, 4-6-5, 4-4-4-4-3),
///    accepted only when the Luhn check passes (and, by default, the first digit is 2-6). A
///    card may be a part of a longer run of digit groups ("ref 12 4111 1111 1111 1111").
/// Dates, ISBNs, times, amounts and order numbers are left alone unless they take one of
/// these shapes (an order number of 13-19 digits that passes Luhn is indistinguishable from a
/// card and is masked).
class pii_mask {
public:
    explicit pii_mask(pii_options opt = {}) : opt_(std::move(opt)) {
        auto c = std::make_shared<compiled>();
        c->email = detail::compile(
            R"([A-Za-z0-9._%+\-]+@(?:[A-Za-z0-9](?:[A-Za-z0-9\-]*[A-Za-z0-9])?\.)+[A-Za-z]{2,})", opt_.max_mem,
            "pii_mask");
        c->phone = detail::compile(
            // (1) international, (2) North American, (3) national with a trunk 0: spaces or dashes
            R"((\+[1-9][0-9]{0,2}(?:[ .\-]?\(0\))?(?:[ .\-]?(?:\([0-9]{1,4}\)|[0-9]{1,6})){1,7}))"
            R"(|((?:1[ .\-])?(?:\([2-9][0-9]{2}\) ?|[2-9][0-9]{2}[ .\-])[0-9]{3}[ .\-][0-9]{4}))"
            R"(|((?:\(0[0-9]{1,4}\) ?|0[0-9]{1,4}[ ])[0-9]{2,8}(?: [0-9]{2,8}){0,3}|0[0-9]{1,4}(?:-[0-9]{2,8}){1,4}))",
            opt_.max_mem, "pii_mask");
        c_ = std::move(c);
    }

    unsigned stages() const noexcept { return opt_.stages; }
    const pii_options& options() const noexcept { return opt_; }

    /// How many of each kind `text` holds, and the text with them masked.
    struct result {
        std::string text;
        std::size_t emails = 0, phones = 0, cards = 0;
    };
    result scan(std::string_view text) const {
        result r{std::string(text)};
        if (opt_.email) r.emails = mask_emails(r.text);
        if (opt_.card) r.cards = mask_cards(r.text, opt_.card_issuer_prefix);
        if (opt_.phone) r.phones = mask_phones(r.text);
        return r;
    }

    void check(stage, std::string& text, std::vector<finding>& out) const {
        result r = scan(text);
        const bool mask = opt_.on_fail == action::mask;
        const auto report = [&](std::size_t n, const char* kind, const char* plural, const char* tag) {
            if (n == 0) return;
            out.push_back({opt_.name,
                           ::kite::detail::concat(kind, ": ", n, " ", n == 1 ? kind : plural,
                                                  mask ? std::string(" masked as ") + tag : std::string(" found")),
                           opt_.on_fail, static_cast<double>(n)});
        };
        report(r.emails, "email", "emails", "[EMAIL]");
        report(r.phones, "phone", "phones", "[PHONE]");
        report(r.cards, "card", "cards", "[CARD]");
        if (mask) text = std::move(r.text);
    }

private:
    struct compiled {
        std::unique_ptr<RE2> email, phone;
    };

    // The byte before `b` and the byte at `e` do not continue a word or a number.
    static bool left_free(std::string_view s, std::size_t b) noexcept {
        if (b == 0) return true;
        const char c = s[b - 1];
        if (detail::ascii_word_char(c)) return false;
        return !((c == '.' || c == ',' || c == '-' || c == '/') && b >= 2 && detail::ascii_digit(s[b - 2]));
    }
    static bool right_free(std::string_view s, std::size_t e) noexcept {
        if (e >= s.size()) return true;
        const char c = s[e];
        if (detail::ascii_word_char(c)) return false;
        return !((c == '.' || c == ',' || c == '-' || c == '/') && e + 1 < s.size() && detail::ascii_digit(s[e + 1]));
    }

    template <class Accept>
    static std::size_t mask_matches(std::string& text, const RE2& re, int groups, std::string_view tag, Accept accept) {
        const std::string_view in(text);
        re2::StringPiece m[4];
        std::string out;
        std::size_t pos = 0, copied = 0, count = 0;
        while (pos < in.size() && re.Match(in, pos, in.size(), RE2::UNANCHORED, m, groups + 1)) {
            const auto b = static_cast<std::size_t>(m[0].data() - in.data());
            const std::size_t e = b + m[0].size();
            pos = std::max(e, b + 1);
            if (!accept(in, b, e, m)) continue;
            out.append(in.substr(copied, b - copied));
            out.append(tag);
            copied = e;
            ++count;
        }
        if (count == 0) return 0;
        out.append(in.substr(copied));
        text = std::move(out);
        return count;
    }

    std::size_t mask_emails(std::string& text) const {
        return mask_matches(text, *c_->email, 0, "[EMAIL]", [](std::string_view, std::size_t, std::size_t,
                                                               const re2::StringPiece*) { return true; });
    }

    std::size_t mask_phones(std::string& text) const {
        return mask_matches(text, *c_->phone, 3, "[PHONE]",
                            [](std::string_view s, std::size_t b, std::size_t e, const re2::StringPiece* m) {
                                if (!left_free(s, b) || !right_free(s, e)) return false;
                                std::size_t digits = 0;
                                for (std::size_t k = b; k < e; ++k) digits += detail::ascii_digit(s[k]);
                                if (m[1].data() != nullptr) {  // international; a "(0)" trunk does not count
                                    if (s.substr(b, e - b).find("(0)") != std::string_view::npos) --digits;
                                    return digits >= 8 && digits <= 15;
                                }
                                if (m[2].data() != nullptr) return true;  // North American: shape is exact
                                return digits >= 9 && digits <= 12;       // national
                            });
    }

    // A hand-written scanner: card candidates are runs of digit groups, searched for the
    // longest Luhn-valid span of groups at each group (at most 19 digits: linear).
    static std::size_t mask_cards(std::string& text, bool issuer_prefix) {
        const std::string_view in(text);
        const std::size_t n = in.size();
        struct group {
            std::size_t b, e;
            char sep;  // the separator before the group (0 for the first)
        };
        std::vector<group> g;
        std::string out;
        std::size_t i = 0, copied = 0, count = 0;
        while (i < n) {
            if (!detail::ascii_digit(in[i])) {
                ++i;
                continue;
            }
            g.clear();
            std::size_t j = i;
            char sep = 0;
            for (;;) {
                const std::size_t b = j;
                while (j < n && detail::ascii_digit(in[j])) ++j;
                g.push_back({b, j, sep});
                if (j + 1 < n && (in[j] == ' ' || in[j] == '-') && detail::ascii_digit(in[j + 1])) {
                    sep = in[j++];
                    continue;
                }
                break;
            }
            const bool run_left = left_free(in, i), run_right = right_free(in, j);
            for (std::size_t a = 0; a < g.size();) {
                std::size_t best = g.size(), digits = 0;
                char buf[19];
                for (std::size_t z = a; z < g.size(); ++z) {
                    const std::size_t len = g[z].e - g[z].b;
                    if (z > a) {
                        if (z == a + 1 && g[a].e - g[a].b != 4) break;
                        if (z > a + 1 && g[z].sep != g[a + 1].sep) break;
                        if (len < 3 || len > 6) break;
                    }
                    if (digits + len > 19) break;
                    std::copy(in.begin() + static_cast<std::ptrdiff_t>(g[z].b),
                              in.begin() + static_cast<std::ptrdiff_t>(g[z].e), buf + digits);
                    digits += len;
                    if (digits >= 13 && (a > 0 || run_left) && (z + 1 < g.size() || run_right) &&
                        (!issuer_prefix || (buf[0] >= '2' && buf[0] <= '6')) &&
                        luhn_valid(std::string_view(buf, digits)))
                        best = z;
                }
                if (best == g.size()) {
                    ++a;
                    continue;
                }
                out.append(in.substr(copied, g[a].b - copied));
                out.append("[CARD]");
                copied = g[best].e;
                ++count;
                a = best + 1;
            }
            i = j;
        }
        if (count == 0) return 0;
        out.append(in.substr(copied));
        text = std::move(out);
        return count;
    }

    pii_options opt_;
    std::shared_ptr<const compiled> c_;
};

// ---------------------------------------------------------------------------------------------
// length_limit

/// Options of length_limit (characters are Unicode code points, not bytes).
struct length_options {
    std::size_t min_chars = 0;
    std::size_t max_chars = std::numeric_limits<std::size_t>::max();
    std::size_t max_tokens = std::numeric_limits<std::size_t>::max();  ///< needs count_tokens
    std::function<std::size_t(std::string_view)> count_tokens{};       ///< e.g. a tokenizer's encode().size()
    action on_fail = action::refuse;
    unsigned stages = all_stages;
    std::string name = "length";
};

/// Minimum and maximum length in code points ("안녕하세요" is 5, not 15 bytes), and optionally a
/// maximum token count through a counter. One finding per bound broken, its score the measure.
///
///   length_limit({.max_chars = 4000, .max_tokens = 512, .count_tokens = [&](auto t) { return tok.encode(t).size(); }})
class length_limit {
public:
    explicit length_limit(length_options opt) : opt_(std::move(opt)) {
        KITE_REQUIRE(opt_.min_chars <= opt_.max_chars, invalid_argument, "length_limit: min_chars = ", opt_.min_chars,
                     ", max_chars = ", opt_.max_chars, "; expected min_chars <= max_chars");
        KITE_REQUIRE(opt_.max_tokens == std::numeric_limits<std::size_t>::max() || opt_.count_tokens,
                     invalid_argument, "length_limit: max_tokens = ", opt_.max_tokens,
                     " without count_tokens; expected a token counter");
    }
    unsigned stages() const noexcept { return opt_.stages; }

    void check(stage, std::string& text, std::vector<finding>& out) const {
        const std::size_t n = detail::count_code_points(text);
        if (n < opt_.min_chars)
            out.push_back({opt_.name, ::kite::detail::concat(n, " characters; expected at least ", opt_.min_chars),
                           opt_.on_fail, static_cast<double>(n)});
        if (n > opt_.max_chars)
            out.push_back({opt_.name, ::kite::detail::concat(n, " characters; expected at most ", opt_.max_chars),
                           opt_.on_fail, static_cast<double>(n)});
        if (opt_.max_tokens != std::numeric_limits<std::size_t>::max()) {
            const std::size_t t = opt_.count_tokens(text);
            if (t > opt_.max_tokens)
                out.push_back({opt_.name, ::kite::detail::concat(t, " tokens; expected at most ", opt_.max_tokens),
                               opt_.on_fail, static_cast<double>(t)});
        }
    }

private:
    length_options opt_;
};

// ---------------------------------------------------------------------------------------------
// language_check

/// Writing systems language_check tells apart (bits, so a set of them is a mask).
enum class script : unsigned {
    latin = 1u << 0, greek = 1u << 1, cyrillic = 1u << 2, armenian = 1u << 3, hebrew = 1u << 4,
    arabic = 1u << 5, devanagari = 1u << 6, thai = 1u << 7, hangul = 1u << 8, han = 1u << 9,
    hiragana = 1u << 10, katakana = 1u << 11, other = 1u << 31
};

constexpr const char* to_string(script s) noexcept {
    switch (s) {
        case script::latin: return "latin";
        case script::greek: return "greek";
        case script::cyrillic: return "cyrillic";
        case script::armenian: return "armenian";
        case script::hebrew: return "hebrew";
        case script::arabic: return "arabic";
        case script::devanagari: return "devanagari";
        case script::thai: return "thai";
        case script::hangul: return "hangul";
        case script::han: return "han";
        case script::hiragana: return "hiragana";
        case script::katakana: return "katakana";
        case script::other: return "other";
    }
    return "unknown";
}

/// The script of a letter by its Unicode block (the main blocks and their extensions).
constexpr script script_of(char32_t c) noexcept {
    const auto in = [c](char32_t lo, char32_t hi) { return c >= lo && c <= hi; };
    if (in(0x41, 0x5A) || in(0x61, 0x7A) || c == 0xAA || c == 0xBA || in(0xC0, 0x2AF) || in(0x1D00, 0x1DBF) ||
        in(0x1E00, 0x1EFF) || in(0x2C60, 0x2C7F) || in(0xA720, 0xA7FF) || in(0xAB30, 0xAB6F) ||
        in(0xFB00, 0xFB06) || in(0xFF21, 0xFF3A) || in(0xFF41, 0xFF5A))
        return script::latin;
    if (in(0x370, 0x3FF) || in(0x1F00, 0x1FFF)) return script::greek;
    if (in(0x400, 0x52F) || in(0x1C80, 0x1C8F) || in(0x2DE0, 0x2DFF) || in(0xA640, 0xA69F)) return script::cyrillic;
    if (in(0x530, 0x58F) || in(0xFB13, 0xFB17)) return script::armenian;
    if (in(0x590, 0x5FF) || in(0xFB1D, 0xFB4F)) return script::hebrew;
    if (in(0x600, 0x6FF) || in(0x750, 0x77F) || in(0x8A0, 0x8FF) || in(0xFB50, 0xFDFF) || in(0xFE70, 0xFEFF))
        return script::arabic;
    if (in(0x900, 0x97F) || in(0xA8E0, 0xA8FF)) return script::devanagari;
    if (in(0xE00, 0xE7F)) return script::thai;
    if (in(0x1100, 0x11FF) || in(0x3130, 0x318F) || in(0xA960, 0xA97F) || in(0xAC00, 0xD7FF) || in(0xFFA0, 0xFFDC))
        return script::hangul;
    if (in(0x3040, 0x309F) || in(0x1B001, 0x1B11F)) return script::hiragana;
    if (in(0x30A0, 0x30FF) || in(0x31F0, 0x31FF) || in(0xFF66, 0xFF9F) || c == 0x1B000) return script::katakana;
    if (in(0x2E80, 0x2FDF) || c == 0x3005 || c == 0x3007 || in(0x3021, 0x3029) || in(0x3038, 0x303B) ||
        in(0x3400, 0x4DBF) || in(0x4E00, 0x9FFF) || in(0xF900, 0xFAFF) || in(0x20000, 0x3134F))
        return script::han;
    return script::other;
}

/// Options of language_check.
struct language_options {
    double min_share = 0.5;      ///< the share of letters in the expected scripts must be >= this
    std::size_t min_letters = 20;  ///< texts with fewer letters pass (too short to judge)
    action on_fail = action::flag;
    unsigned stages = stage::question | stage::output;
    std::string name = "language";
};

/// The share of letters (Unicode categories L*) that belong to the expected scripts must reach
/// min_share: `language_check({script::hangul}, {.min_share = 0.6})` for a Korean service (add
/// script::han for Hanja, script::latin to allow English terms). The score is the share.
class language_check {
public:
    language_check(std::initializer_list<script> expected, language_options opt = {}) : opt_(std::move(opt)) {
        for (const script s : expected) mask_ |= static_cast<unsigned>(s);
        KITE_REQUIRE(mask_ != 0, invalid_argument, "language_check: no expected script; expected at least one");
        KITE_REQUIRE(opt_.min_share >= 0 && opt_.min_share <= 1, invalid_argument, "language_check: min_share = ",
                     opt_.min_share, "; expected a share in [0, 1]");
    }
    unsigned stages() const noexcept { return opt_.stages; }

    /// Letters in `text`, and how many of them are in the expected scripts.
    struct measure {
        std::size_t letters = 0, expected = 0;
        double share() const noexcept { return letters ? static_cast<double>(expected) / static_cast<double>(letters) : 1.0; }
    };
    measure measure_text(std::string_view text) const {
        measure m;
        for (std::size_t i = 0; i < text.size();) {
            const auto b = static_cast<unsigned char>(text[i]);
            if (b < 0x80) {  // ASCII: letters are Latin
                ++i;
                if ((b | 0x20) >= 'a' && (b | 0x20) <= 'z') {
                    ++m.letters;
                    m.expected += (mask_ & static_cast<unsigned>(script::latin)) != 0;
                }
                continue;
            }
            const char32_t c = detail::next_code_point(text, i);
            const auto cat = utf8proc_category(static_cast<utf8proc_int32_t>(c));
            if (cat < UTF8PROC_CATEGORY_LU || cat > UTF8PROC_CATEGORY_LO) continue;
            ++m.letters;
            m.expected += (mask_ & static_cast<unsigned>(script_of(c))) != 0;
        }
        return m;
    }

    void check(stage, std::string& text, std::vector<finding>& out) const {
        const measure m = measure_text(text);
        if (m.letters < opt_.min_letters || m.share() >= opt_.min_share) return;
        out.push_back({opt_.name,
                       ::kite::detail::concat(m.expected, " of ", m.letters, " letters (", m.share(),
                                              ") in the expected scripts (", describe(), "); expected a share >= ",
                                              opt_.min_share),
                       opt_.on_fail, m.share()});
    }

private:
    std::string describe() const {
        std::string s;
        for (unsigned bit = 0; bit < 32; ++bit)
            if (mask_ & (1u << bit)) s += (s.empty() ? "" : ", ") + std::string(to_string(static_cast<script>(1u << bit)));
        return s;
    }

    language_options opt_;
    unsigned mask_ = 0;
};

// ---------------------------------------------------------------------------------------------
// topic_filter

/// Options of topic_filter.
struct topic_options {
    action on_fail = action::refuse;
    unsigned stages = stage::question | stage::output;
    std::string name = "topic";
};

/// Forbidden topics by meaning: each description is embedded once; a text whose embedding has
/// cosine >= threshold to one of them gets a finding naming the closest topic, its score the
/// cosine. One embedder call per check.
///
///   auto enc = kite::model::sentence_encoder<>::load("models/all-MiniLM-L6-v2");
///   topic_filter tf(std::cref(enc), {"instructions for making weapons or explosives"}, 0.45);
template <text_embedder Embedder>
class topic_filter {
public:
    topic_filter(Embedder embed, std::vector<std::string> topics, double threshold, topic_options opt = {})
        : embed_(std::move(embed)), opt_(std::move(opt)), threshold_(threshold) {
        KITE_REQUIRE(!topics.empty(), invalid_argument, "topic_filter: no topics; expected at least one description");
        KITE_REQUIRE(threshold >= -1 && threshold <= 1, invalid_argument, "topic_filter: threshold = ", threshold,
                     "; expected a cosine in [-1, 1]");
        auto t = std::make_shared<table>();
        for (auto& d : topics) {
            KITE_REQUIRE(!d.empty(), invalid_argument, "topic_filter: an empty topic description; expected text");
            std::vector<float> v = std::invoke(embed_, std::string_view(d));
            KITE_REQUIRE(!v.empty() && (t->vectors.empty() || v.size() == t->vectors.front().size()), shape_error,
                         "topic_filter: topic \"", d, "\" embeds to ", v.size(), " dimensions; expected ",
                         t->vectors.empty() ? std::string(">= 1") : std::to_string(t->vectors.front().size()));
            t->norms.push_back(norm(v));
            t->vectors.push_back(std::move(v));
            t->topics.push_back(std::move(d));
        }
        t_ = std::move(t);
    }
    unsigned stages() const noexcept { return opt_.stages; }
    double threshold() const noexcept { return threshold_; }

    /// The closest topic's index and cosine.
    std::pair<std::size_t, double> closest(std::string_view text) const {
        const std::vector<float> v = std::invoke(embed_, text);
        KITE_REQUIRE(v.size() == t_->vectors.front().size(), shape_error, "topic_filter: the text embeds to ",
                     v.size(), " dimensions; expected ", t_->vectors.front().size(), " (the topics')");
        const double nv = norm(v);
        std::pair<std::size_t, double> best{0, -2.0};
        for (std::size_t k = 0; k < t_->vectors.size(); ++k) {
            double dot = 0;
            for (std::size_t d = 0; d < v.size(); ++d)
                dot += static_cast<double>(v[d]) * static_cast<double>(t_->vectors[k][d]);
            const double cos = nv > 0 && t_->norms[k] > 0 ? dot / (nv * t_->norms[k]) : 0.0;
            if (cos > best.second) best = {k, cos};
        }
        return best;
    }
    const std::string& topic(std::size_t k) const { return t_->topics.at(k); }

    void check(stage, std::string& text, std::vector<finding>& out) const {
        const auto [k, cos] = closest(text);
        if (cos < threshold_) return;
        out.push_back({opt_.name,
                       ::kite::detail::concat("close to forbidden topic \"", t_->topics[k], "\" (cosine ", cos,
                                              " >= ", threshold_, ")"),
                       opt_.on_fail, cos});
    }

private:
    struct table {
        std::vector<std::string> topics;
        std::vector<std::vector<float>> vectors;  // [topic][dim]
        std::vector<double> norms;                // [topic]
    };
    static double norm(const std::vector<float>& v) {
        double s = 0;
        for (const float x : v) s += static_cast<double>(x) * static_cast<double>(x);
        return std::sqrt(s);
    }

    Embedder embed_;
    topic_options opt_;
    double threshold_;
    std::shared_ptr<const table> t_;
};

// ---------------------------------------------------------------------------------------------
// llm_judge

/// Options of llm_judge.
struct judge_options {
    /// false: fail when P(yes) < threshold ("is this answer supported by the passages?");
    /// true: fail when P(yes) >= threshold ("is this request harmful?").
    bool fail_when_yes = false;
    action on_fail = action::retry;
    unsigned stages = static_cast<unsigned>(stage::output);
    std::string name = "judge";
};

/// A yes/no question to a language model about the text: the prompt template's "{text}" (every
/// occurrence) is replaced by the text, the hook returns P(yes) (kite::app::decoder_judge in
/// kite/app/judge.hpp computes it with a kite decoder), and the finding's score is P(yes).
///
///   llm_judge j(decoder_judge(model, tok), "Does this answer cite its sources?\n\n{text}\n\nAnswer yes or no.", 0.5);
class llm_judge {
public:
    llm_judge(std::function<double(std::string_view prompt)> p_yes, std::string prompt_template, double threshold,
              judge_options opt = {})
        : p_yes_(std::move(p_yes)), template_(std::move(prompt_template)), threshold_(threshold), opt_(std::move(opt)) {
        KITE_REQUIRE(static_cast<bool>(p_yes_), invalid_argument, "llm_judge: no hook; expected a P(yes) function");
        KITE_REQUIRE(template_.find("{text}") != std::string::npos, invalid_argument, "llm_judge: prompt template \"",
                     template_, "\" has no {text}; expected the place of the checked text");
        KITE_REQUIRE(threshold >= 0 && threshold <= 1, invalid_argument, "llm_judge: threshold = ", threshold,
                     "; expected a probability in [0, 1]");
    }
    unsigned stages() const noexcept { return opt_.stages; }

    /// The prompt the hook receives for `text`.
    std::string render(std::string_view text) const {
        std::string out;
        out.reserve(template_.size() + text.size());
        std::size_t k = 0;
        for (std::size_t p; (p = template_.find("{text}", k)) != std::string::npos; k = p + 6) {
            out.append(template_, k, p - k);
            out.append(text);
        }
        out.append(template_, k);
        return out;
    }

    /// kite::invalid_argument when the hook returns something that is not a probability.
    void check(stage, std::string& text, std::vector<finding>& out) const {
        const double p = p_yes_(render(text));
        KITE_REQUIRE(p >= 0 && p <= 1, invalid_argument, "llm_judge: the hook returned P(yes) = ", p,
                     "; expected a probability in [0, 1]");
        const bool fail = opt_.fail_when_yes ? p >= threshold_ : p < threshold_;
        if (!fail) return;
        out.push_back({opt_.name,
                       ::kite::detail::concat("P(yes) = ", p, opt_.fail_when_yes ? " >= " : " < ", threshold_),
                       opt_.on_fail, p});
    }

private:
    std::function<double(std::string_view)> p_yes_;
    std::string template_;
    double threshold_;
    judge_options opt_;
};

// ---------------------------------------------------------------------------------------------
// validator

/// Rules composed at compile time. check(s, text) runs, in order, the rules whose stages()
/// include s; a masking rule's output is what the next rule sees. Invalid UTF-8 is a "utf8"
/// finding with action refuse (see the file comment).
template <validation_rule... Rules>
class validator {
public:
    explicit validator(Rules... rules) : rules_(std::move(rules)...) {}

    decision check(stage s, std::string_view text) const { return run(s, text, action::refuse, false); }

    /// As check(s, text), but once the verdict reaches `stop_at` the remaining rules are
    /// skipped (saves a judge's model call when a block list has already refused).
    decision check(stage s, std::string_view text, action stop_at) const { return run(s, text, stop_at, true); }

    const std::tuple<Rules...>& rules() const noexcept { return rules_; }

private:
    decision run(stage s, std::string_view text, action stop_at, bool stop) const {
        decision d;
        d.text.assign(text);
        if (const std::size_t bad = text::utf8::find_invalid(text); bad != std::string_view::npos) {
            constexpr char hex[] = "0123456789ABCDEF";
            const auto byte = static_cast<unsigned char>(text[bad]);
            d.findings.push_back({"utf8",
                                  ::kite::detail::concat("invalid UTF-8 at byte offset ", bad, " (byte 0x",
                                                         hex[byte >> 4], hex[byte & 15],
                                                         "); expected a well-formed UTF-8 sequence"),
                                  action::refuse, static_cast<double>(bad)});
            d.verdict = action::refuse;
            return d;
        }
        std::apply(
            [&](const auto&... r) {
                [[maybe_unused]] const auto one = [&](const auto& rule) {
                    if ((rule.stages() & static_cast<unsigned>(s)) == 0) return;
                    if (stop && d.verdict >= stop_at) return;
                    const std::size_t before = d.findings.size();
                    rule.check(s, d.text, d.findings);
                    for (std::size_t k = before; k < d.findings.size(); ++k)
                        d.verdict = std::max(d.verdict, d.findings[k].act);
                };
                (one(r), ...);
            },
            rules_);
        return d;
    }

    std::tuple<Rules...> rules_;
};

/// The do-nothing policy (verdict pass, text unchanged).
struct no_validation {
    decision check(stage, std::string_view text) const { return {action::pass, std::string(text), {}}; }
};

}  // namespace kite::app
