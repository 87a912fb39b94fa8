#pragma once
/// @file kite/app/judge.hpp
/// decoder_judge: P(yes) for a yes/no question, from one prefill of a kite decoder, the hook
/// kite::app::llm_judge (kite/app/validate.hpp) calls.
///
///   const kite::model::gguf_file file("models/SmolLM2-135M-Instruct.Q4_1.gguf");
///   const kite::model::gguf_tokenizer tok(file);
///   kite::model::gguf_llama_decoder<> model(kite::model::read_gguf(file));
///   kite::app::decoder_judge judge(model, tok);
///   double p = judge("Is Paris the capital of France? Answer yes or no.");   // in (0, 1)
///   kite::app::llm_judge grounded(judge, "Passages: ...\nAnswer: {text}\nIs the answer supported? Answer yes or no.", 0.5);
///
/// The question is rendered as one user turn with the tokenizer's chat template and the
/// generation prompt ([{"user", prompt}], add_generation_prompt = true), prefilled into a fresh
/// cache, and the last position's logits decide: with l_yes the largest logit among the
/// single-token spellings of "yes" ("yes", "Yes", " yes", " Yes", "YES", " YES") and l_no
/// likewise for "no",
///
///   P(yes) = exp(l_yes) / (exp(l_yes) + exp(l_no)) = 1 / (1 + exp(l_no - l_yes)),
///
/// the model's preference between the two answers (probability mass on other tokens is left
/// out). A tokenizer with no single-token "yes" or "no" is a kite::config_error.
///
/// Model: a kite decoder — make_cache(max_tokens), vocab_size(), max_positions() and
/// prefill(cache, seq, tokens, logits [1][vocab]) (with a workspace first when the decoder has
/// one: then each call has its own workspace and judges may run concurrently on one const
/// decoder). Tokenizer: encode(text, add_special) and apply_chat_template(messages, true)
/// (kite::model::gguf_tokenizer). The judge holds references: the model and tokenizer must
/// outlive it.

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <initializer_list>
#include <limits>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "kite/core/error.hpp"
#include "kite/core/matrix.hpp"
#include "kite/kv/concepts.hpp"
#include "kite/text/chat_template.hpp"

namespace kite::app {

/// P(yes) of a yes/no question by a kite decoder (see the file comment).
template <class Model, class Tokenizer>
class decoder_judge {
public:
    decoder_judge(Model& model, const Tokenizer& tokenizer) : model_(&model), tok_(&tokenizer) {
        yes_ = single_tokens({"yes", "Yes", " yes", " Yes", "YES", " YES"});
        no_ = single_tokens({"no", "No", " no", " No", "NO", " NO"});
        KITE_REQUIRE(!yes_.empty() && !no_.empty(), config_error, "decoder_judge: the tokenizer has ", yes_.size(),
                     " single-token spellings of \"yes\" and ", no_.size(),
                     " of \"no\"; expected at least one of each");
    }

    /// The two logits, l_yes and l_no, at the end of the chat-rendered `prompt`.
    std::pair<float, float> logits(std::string_view prompt) const {
        const std::vector<text::chat_message> chat{{"user", std::string(prompt)}};
        const std::vector<std::int32_t> ids = tok_->apply_chat_template(std::span<const text::chat_message>(chat), true);
        KITE_REQUIRE(!ids.empty(), invalid_argument, "decoder_judge: the prompt renders to no tokens");
        const index_t n = ids.size();
        KITE_REQUIRE(model_->max_positions() == 0 || n <= model_->max_positions(), invalid_argument,
                     "decoder_judge: the prompt is ", n, " tokens; expected at most the model's ",
                     model_->max_positions(), " positions");
        auto cache = model_->make_cache(n);
        const auto s = cache.add_sequence();
        KITE_REQUIRE(s.has_value(), invalid_argument, "decoder_judge: no room for a sequence of ", n, " tokens");
        matrix<float> out(1, model_->vocab_size());  // [1][vocab] the last position's logits
        kv::status st;
        if constexpr (requires { typename Model::workspace; }) {
            typename Model::workspace ws;
            st = model_->prefill(ws, cache, *s, std::span<const std::int32_t>(ids), out.view());
        } else {
            st = model_->prefill(cache, *s, std::span<const std::int32_t>(ids), out.view());
        }
        KITE_REQUIRE(st == kv::status::ok, invalid_argument, "decoder_judge: the cache has no room for the ", n,
                     " prompt tokens");
        const auto row = out.row(0);
        const auto best = [&](const std::vector<std::int32_t>& set) {
            float m = -std::numeric_limits<float>::infinity();
            for (const std::int32_t id : set) m = std::max(m, row[static_cast<index_t>(id)]);
            return m;
        };
        return {best(yes_), best(no_)};
    }

    /// P(yes) = 1 / (1 + exp(l_no - l_yes)).
    double operator()(std::string_view prompt) const {
        const auto [y, n] = logits(prompt);
        return 1.0 / (1.0 + std::exp(static_cast<double>(n) - static_cast<double>(y)));
    }

    /// The token ids whose logits stand for "yes" and for "no".
    const std::vector<std::int32_t>& yes_ids() const noexcept { return yes_; }
    const std::vector<std::int32_t>& no_ids() const noexcept { return no_; }

private:
    std::vector<std::int32_t> single_tokens(std::initializer_list<std::string_view> spellings) const {
        std::vector<std::int32_t> ids;
        for (const std::string_view s : spellings) {
            const auto e = tok_->encode(s, false);
            if (e.size() == 1 && e[0] >= 0 && static_cast<index_t>(e[0]) < model_->vocab_size() &&
                std::find(ids.begin(), ids.end(), e[0]) == ids.end())
                ids.push_back(e[0]);
        }
        return ids;
    }

    Model* model_;
    const Tokenizer* tok_;
    std::vector<std::int32_t> yes_, no_;
};

}  // namespace kite::app
