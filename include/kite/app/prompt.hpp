#pragma once
/// @file kite/app/prompt.hpp
/// Prompt assembly for retrieval-augmented generation: the question and the retrieved
/// passages (numbered, so the answer can cite them) in a template, fitted to a token budget
/// measured with the model's own tokenizer, then rendered with the model's chat template.
///
///   kite::app::prompt_builder build(tokenizer, {.max_prompt_tokens = 1536});
///   kite::app::assembled_prompt p = build("What causes the seasons?", passages);
///   engine.submit({.prompt = p.tokens, ...});   // p.citation_ids[n - 1] is passage [n]
///
/// The budget is for the whole rendered chat prompt (system message, template, passages and
/// the generation prompt) in tokens of `Tokenizer`. Passages go in rank order: each one that
/// fits whole goes in; the first that does not is cut at a sentence boundary (after . ! ? or
/// their CJK forms followed by white space, or a line break) to the largest whole-sentence
/// prefix that fits, and is dropped with everything after it when that prefix would be
/// shorter than min_passage_tokens. Text is only ever cut between sentences, never inside a
/// token or a UTF-8 character. The final count is taken on the rendered prompt itself (BPE
/// merges across passage boundaries make per-passage counts approximate), so
/// tokens.size() <= max_prompt_tokens always holds; when even the question without passages
/// does not fit, build() throws kite::invalid_argument naming both sizes.
///
/// Tokenizer: encode(text, add_special) -> token ids and apply_chat_template(messages,
/// add_generation_prompt) -> token ids, as kite::model::gguf_tokenizer.

#include <algorithm>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "kite/core/error.hpp"
#include "kite/text/chat_template.hpp"
#include "kite/text/utf8.hpp"

namespace kite::app {

/// A retrieved passage offered to the prompt.
struct passage {
    std::string id;      ///< document id (what citations name)
    std::string title;
    std::string text;
    float score = 0;     ///< the retriever's score (logged, not used here)
};

/// How prompts are assembled.
struct prompt_options {
    std::string system =
        "You are a careful assistant. Answer the question using only the numbered passages. "
        "Cite the passages you use by their number in square brackets, for example [1]. "
        "If the passages do not answer the question, say that you do not know.";
    /// The user message; {context} and {question} are replaced (each must appear once).
    std::string user_template = "Passages:\n{context}\nQuestion: {question}";
    /// One passage; {n} (its number from 1), {title} and {text} are replaced.
    std::string passage_template = "[{n}] {title}\n{text}\n\n";
    std::size_t max_prompt_tokens = 1536;  ///< the whole rendered chat prompt
    std::size_t min_passage_tokens = 24;   ///< a cut passage shorter than this is dropped
};

/// What build() produced.
struct assembled_prompt {
    std::vector<std::int32_t> tokens;          ///< chat-templated prompt with the generation prompt
    std::string user_message;                  ///< the rendered user message
    std::vector<std::string> citation_ids;     ///< [n] in the prompt is citation_ids[n - 1]
    std::vector<std::size_t> used;             ///< index in the given passages of each [n]
    std::vector<bool> truncated;               ///< per [n]: cut at a sentence boundary
    std::size_t dropped = 0;                   ///< given passages left out
};

/// Byte offsets where sentences of `text` end (the last is text.size()): after . ! ? and
/// the ideographic full stop / full-width ! ? followed by white space or the end, and after
/// each line break.
inline std::vector<std::size_t> sentence_ends(std::string_view text) {
    std::vector<std::size_t> ends;
    auto is_space = [&](std::size_t i) {
        return i >= text.size() || text[i] == ' ' || text[i] == '\n' || text[i] == '\t' || text[i] == '\r';
    };
    for (std::size_t i = 0; i < text.size(); ++i) {
        const char c = text[i];
        std::size_t end = 0;
        if (c == '\n') {
            end = i + 1;
        } else if ((c == '.' || c == '!' || c == '?') && is_space(i + 1)) {
            end = i + 1;
        } else if (static_cast<unsigned char>(c) == 0xE3 && text.substr(i, 3) == "\xE3\x80\x82") {
            end = i + 3;  // 。
        } else if (static_cast<unsigned char>(c) == 0xEF &&
                   (text.substr(i, 3) == "\xEF\xBC\x81" || text.substr(i, 3) == "\xEF\xBC\x9F")) {
            end = i + 3;  // ！ ？
        }
        if (end != 0 && end < text.size()) {
            // Trailing white space belongs to the sentence it ends.
            while (end < text.size() && (text[end] == ' ' || text[end] == '\t' || text[end] == '\r')) ++end;
            if (ends.empty() || ends.back() != end) ends.push_back(end);
        }
    }
    if (ends.empty() || ends.back() != text.size()) ends.push_back(text.size());
    return ends;
}

namespace detail {

inline std::string substitute(std::string s, std::string_view key, std::string_view value) {
    std::string out;
    std::size_t pos = 0;
    for (;;) {
        const std::size_t at = s.find(key, pos);
        if (at == std::string::npos) break;
        out.append(s, pos, at - pos);
        out.append(value);
        pos = at + key.size();
    }
    out.append(s, pos);
    return out;
}

inline std::size_t count_of(std::string_view s, std::string_view key) {
    std::size_t n = 0;
    for (std::size_t at = s.find(key); at != std::string_view::npos; at = s.find(key, at + key.size())) ++n;
    return n;
}

}  // namespace detail

/// Builds RAG prompts for one tokenizer (see the file comment).
template <class Tokenizer>
class prompt_builder {
public:
    explicit prompt_builder(const Tokenizer& tok, prompt_options opt = {}) : tok_(&tok), opt_(std::move(opt)) {
        KITE_REQUIRE(detail::count_of(opt_.user_template, "{context}") == 1 &&
                         detail::count_of(opt_.user_template, "{question}") == 1,
                     invalid_argument, "prompt_options::user_template: \"", opt_.user_template,
                     "\"; expected {context} and {question} once each");
        KITE_REQUIRE(detail::count_of(opt_.passage_template, "{text}") == 1, invalid_argument,
                     "prompt_options::passage_template: \"", opt_.passage_template, "\"; expected {text} once");
        KITE_REQUIRE(opt_.max_prompt_tokens >= 1, invalid_argument, "prompt_options::max_prompt_tokens = 0; expected >= 1");
        text::utf8::require_valid(opt_.system, 0, "prompt_options::system");
        text::utf8::require_valid(opt_.user_template, 0, "prompt_options::user_template");
        text::utf8::require_valid(opt_.passage_template, 0, "prompt_options::passage_template");
    }

    const prompt_options& options() const noexcept { return opt_; }

    /// Tokens of the rendered chat prompt for `question` with `context` in the template.
    std::vector<std::int32_t> render(std::string_view question, std::string_view context, std::string* user = nullptr) const {
        std::string msg = detail::substitute(opt_.user_template, "{question}", question);
        msg = detail::substitute(std::move(msg), "{context}", context);
        auto ids = render_user(msg);
        if (user) *user = std::move(msg);
        return ids;
    }

    /// Tokens of the chat prompt (system message, then `user_message`, then the generation prompt).
    std::vector<std::int32_t> render_user(std::string_view user_message) const {
        std::vector<text::chat_message> chat;
        if (!opt_.system.empty()) chat.push_back({"system", opt_.system});
        chat.push_back({"user", std::string(user_message)});
        return tok_->apply_chat_template(chat, true);
    }

    /// The prompt for `question` with as many of `passages` (best first) as the budget holds.
    assembled_prompt build(std::string_view question, std::span<const passage> passages) const {
        text::utf8::require_valid(question, 0, "prompt_builder::build: question");
        for (std::size_t i = 0; i < passages.size(); ++i) {
            text::utf8::require_valid(passages[i].text, 0, "prompt_builder::build: passage text");
            text::utf8::require_valid(passages[i].title, 0, "prompt_builder::build: passage title");
        }
        // The question alone must fit.
        const std::size_t base = render(question, "").size();
        KITE_REQUIRE(base <= opt_.max_prompt_tokens, invalid_argument, "prompt_builder::build: the prompt without passages is ",
                     base, " tokens; expected at most max_prompt_tokens = ", opt_.max_prompt_tokens);

        // Greedy fill on per-block counts, then exact correction on the rendered prompt.
        std::vector<std::string> bodies;  // the text (or whole-sentence prefix) of each [n]
        assembled_prompt out;
        std::size_t budget = opt_.max_prompt_tokens - base;
        for (std::size_t i = 0; i < passages.size(); ++i) {
            const std::size_t n = bodies.size() + 1;
            const std::size_t cost = count(format(n, passages[i], passages[i].text));
            if (cost <= budget) {
                budget -= cost;
                bodies.push_back(passages[i].text);
                out.used.push_back(i);
                out.truncated.push_back(false);
                continue;
            }
            // Cut at a sentence boundary.
            std::string cut = fit_prefix(n, passages[i], budget);
            if (!cut.empty()) {
                bodies.push_back(std::move(cut));
                out.used.push_back(i);
                out.truncated.push_back(true);
            }
            break;
        }
        for (;;) {
            std::string context;
            for (std::size_t k = 0; k < bodies.size(); ++k) context += format(k + 1, passages[out.used[k]], bodies[k]);
            out.tokens = render(question, context, &out.user_message);
            if (out.tokens.size() <= opt_.max_prompt_tokens) break;
            // Over by merges across boundaries: shorten the last passage by a sentence, or drop it.
            KITE_ASSERT(!bodies.empty());
            const std::size_t last = bodies.size() - 1;
            const auto ends = sentence_ends(bodies[last]);
            if (ends.size() >= 2) {
                std::string shorter = bodies[last].substr(0, ends[ends.size() - 2]);
                if (count(shorter) >= opt_.min_passage_tokens) {
                    bodies[last] = std::move(shorter);
                    out.truncated[last] = true;
                    continue;
                }
            }
            bodies.pop_back();
            out.used.pop_back();
            out.truncated.pop_back();
        }
        for (std::size_t u : out.used) out.citation_ids.push_back(passages[u].id);
        out.dropped = passages.size() - out.used.size();
        return out;
    }

private:
    std::size_t count(std::string_view s) const { return tok_->encode(s, false).size(); }

    std::string format(std::size_t n, const passage& p, std::string_view body) const {
        std::string b = detail::substitute(opt_.passage_template, "{n}", std::to_string(n));
        b = detail::substitute(std::move(b), "{title}", p.title);
        return detail::substitute(std::move(b), "{text}", body);
    }

    // The longest whole-sentence prefix of p.text whose block costs at most `budget`, or empty
    // when it would be shorter than min_passage_tokens.
    std::string fit_prefix(std::size_t n, const passage& p, std::size_t budget) const {
        const std::size_t overhead = count(format(n, p, ""));
        if (overhead >= budget) return {};
        const std::size_t room = budget - overhead;
        const auto ends = sentence_ends(p.text);
        std::size_t used = 0, best = 0, start = 0;
        for (std::size_t e : ends) {
            const std::size_t c = count(std::string_view(p.text).substr(start, e - start));
            if (used + c > room) break;
            used += c;
            best = e;
            start = e;
        }
        if (best == 0 || used < opt_.min_passage_tokens) return {};
        return p.text.substr(0, best);
    }

    const Tokenizer* tok_;
    prompt_options opt_;
};

}  // namespace kite::app
