#pragma once
/// @file kite/model/formats/gguf_tokenizer.hpp
/// gguf_tokenizer: the tokenizer and chat template stored in a GGUF file's metadata, giving the
/// token ids Hugging Face gives for the model (and llama.cpp, except where noted below).
///
///   const kite::model::gguf_tokenizer tok(kite::model::gguf_file("SmolLM2-135M-Instruct.Q4_1.gguf"));
///   std::vector<std::int32_t> ids = tok.encode("Hello world");        // user text: specials plain
///   std::vector<kite::text::chat_message> chat{{"user", "What is 2+2?"}};
///   std::vector<std::int32_t> prompt = tok.apply_chat_template(chat, /*add_generation_prompt=*/true);
///   kite::text::utf8::stream_decoder out;                            // streaming generation:
///   for (std::int32_t id : generated) {
///       if (tok.is_end_of_generation(id)) break;                     // <|im_end|>, <|eot_id|>, </s> ...
///       std::cout << out.push(tok.token_bytes(id));                  // never a broken character
///   }
///   std::cout << out.finish();
///
/// Models (`tokenizer.ggml.model`):
///  - "gpt2": byte-level BPE (text::bpe_tokenizer) from tokenizer.ggml.tokens / merges, with the
///    pre-tokenizer `tokenizer.ggml.pre` names: "smollm" (also "starcoder", "refact"): every
///    \p{N} alone, then GPT-2's regex; "gpt-2": GPT-2's regex; "llama-bpe" (also "llama3",
///    "llama-v3"): Llama 3's regex, ignore_merges; "qwen2": Qwen2's regex. Any other pre-tokenizer
///    is a kite::config_error naming it.
///    Note on "smollm": transformers' GGUF converter does not know it and keeps GPT-2's regex
///    without the digit split, so a tokenizer transformers builds from the GGUF file differs from
///    SmolLM2's own tokenizer.json (and from llama.cpp) where whitespace precedes a digit ("a  1":
///    transformers [81, 216, 216, 33], SmolLM2 and kite [81, 256, 33]). kite follows the model's
///    own tokenizer, which is what the model was trained on.
///  - "llama": SentencePiece-style BPE with scores and byte fallback (text::sentencepiece_bpe),
///    with tokenizer.ggml.add_space_prefix (default true).
///
/// Special tokens (tokenizer.ggml.token_type): control and unknown tokens (<|im_start|>, <s>)
/// are matched in text only with parse_special = true; user-defined tokens are always matched;
/// BOS / EOS are added by encode(add_special = true) when tokenizer.ggml.add_bos_token /
/// add_eos_token say so (defaults as llama.cpp: BOS for "llama" and for Llama 3's pre-tokenizer,
/// nothing else). The end-of-generation ids are EOS, EOT and the tokens llama.cpp treats so by
/// their text (<|im_end|>, <|eot_id|>, <|endoftext|>, <end_of_turn>, ...).
///
/// Chat: tokenizer.chat_template is recognized as the chatml, llama2 or llama3 family
/// (text::chat_template) with its default system message. apply_chat_template encodes the
/// template's own text with special tokens matched and the messages' contents as plain text, so
/// "<|im_end|>" typed by a user is never the control token; the pieces of plain text on either
/// side of a content boundary are encoded together, so ids equal encoding the rendered string
/// whenever no content holds special-token text (transformers matches special text even inside
/// user content; kite deliberately does not). A missing or unrecognized template is a
/// kite::config_error when a chat method is called (loading the tokenizer still succeeds);
/// gguf_tokenizer_options::chat_family chooses a family by name instead.
///
/// Decoding: token_bytes(id) is what the token stands for (a byte-level token mapped back to its
/// bytes, "▁" as a space, <0xHH> as the byte, a control token as its text), possibly part of a
/// UTF-8 character: stream them through text::utf8::stream_decoder. decode(ids) joins them
/// (SentencePiece models drop one leading space) and replaces invalid UTF-8 by U+FFFD; with
/// skip_special, control and unknown tokens are left out. Decoding does not clean up spaces
/// before punctuation (llama.cpp's clean_spaces for some gpt2 models).
///
/// Thread safety: immutable after construction; every method is const.

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <variant>
#include <vector>

#include "kite/core/error.hpp"
#include "kite/model/formats/gguf.hpp"
#include "kite/text/bpe.hpp"
#include "kite/text/chat_template.hpp"
#include "kite/text/detail/added_vocab.hpp"
#include "kite/text/sentencepiece_bpe.hpp"
#include "kite/text/token_type.hpp"
#include "kite/text/utf8.hpp"

namespace kite::model {

/// Choices a GGUF file cannot make itself.
struct gguf_tokenizer_options {
    /// Render chats with this family instead of recognizing tokenizer.chat_template (for a file
    /// whose template is missing or not one kite recognizes).
    std::optional<text::chat_family> chat_family;
    /// With chat_family: the chatml default system message (none when unset).
    std::optional<std::string> default_system;
};

/// The tokenizer and chat template of a GGUF file; see the file comment.
class gguf_tokenizer {
public:
    /// Reads the tokenizer.* keys of `file`. kite::not_found_error for a missing required key,
    /// kite::format_error for an inconsistent one (array lengths, an id outside the vocabulary),
    /// kite::config_error for a model or pre-tokenizer kite does not implement.
    explicit gguf_tokenizer(const gguf_file& file, gguf_tokenizer_options options = {}) { load(file, std::move(options)); }
    /// Opens the GGUF file at `path`.
    explicit gguf_tokenizer(const std::filesystem::path& path, gguf_tokenizer_options options = {})
        : gguf_tokenizer(gguf_file(path), std::move(options)) {}

    /// tokenizer.ggml.model: "gpt2" or "llama".
    const std::string& model() const noexcept { return model_; }
    /// tokenizer.ggml.pre ("" when absent).
    const std::string& pre() const noexcept { return pre_; }
    std::size_t vocab_size() const noexcept { return tokens_.size(); }

    /// Token ids of `text`: BOS / EOS added when add_special and the file asks for them; special
    /// token text matched only when parse_special (keep it false for text from users).
    std::vector<std::int32_t> encode(std::string_view text, bool add_special = true, bool parse_special = false) const {
        std::vector<std::int32_t> out;
        append_encoded(text, out, add_special, parse_special);
        return out;
    }
    /// encode() appended to `out`.
    void append_encoded(std::string_view text, std::vector<std::int32_t>& out, bool add_special = true,
                        bool parse_special = false) const {
        text::utf8::require_valid(text, 0, "gguf_tokenizer::encode");
        if (add_special && add_bos_ && bos_ >= 0) out.push_back(bos_);
        encode_plain(text, out, parse_special);
        if (add_special && add_eos_ && eos_ >= 0) out.push_back(eos_);
    }

    /// The text of `ids` (see the file comment); kite::invalid_argument for an id outside the
    /// vocabulary.
    std::string decode(std::span<const std::int32_t> ids, bool skip_special = false) const {
        std::string s;
        for (const std::int32_t id : ids) {
            check_id(id, "decode");
            if (skip_special && is_special(id)) continue;
            s += bytes_[static_cast<std::size_t>(id)];
        }
        if (spm() && std::get<text::sentencepiece_bpe>(impl_).add_space_prefix() && !s.empty() && s.front() == ' ')
            s.erase(0, 1);
        return text::utf8::lossy(s);
    }
    /// The raw bytes token `id` stands for (possibly part of a UTF-8 character); the view lives
    /// as long as the tokenizer.
    std::string_view token_bytes(std::int32_t id) const {
        check_id(id, "token_bytes");
        return bytes_[static_cast<std::size_t>(id)];
    }
    /// The vocabulary string of `id` as the file stores it ("Ġhello", "▁hello", "<|im_end|>").
    std::string_view token_text(std::int32_t id) const {
        check_id(id, "token_text");
        return tokens_[static_cast<std::size_t>(id)];
    }
    /// The id of a vocabulary string (the later id when a string occurs twice).
    std::optional<std::int32_t> token_to_id(std::string_view token) const {
        const auto it = lookup_.find(token);
        if (it == lookup_.end()) return std::nullopt;
        return it->second;
    }
    text::token_type type(std::int32_t id) const {
        check_id(id, "type");
        return types_[static_cast<std::size_t>(id)];
    }
    bool is_control(std::int32_t id) const { return type(id) == text::token_type::control; }
    /// Control or unknown: dropped by decode(skip_special), matched in text only with parse_special.
    bool is_special(std::int32_t id) const {
        const auto t = type(id);
        return t == text::token_type::control || t == text::token_type::unknown;
    }

    /// Special ids, -1 when the file has none.
    std::int32_t bos_id() const noexcept { return bos_; }
    std::int32_t eos_id() const noexcept { return eos_; }
    /// End of turn: tokenizer.ggml.eot_token_id, else the chat family's turn end (<|im_end|>,
    /// <|eot_id|>), else the first of llama.cpp's end-of-turn texts the vocabulary has.
    std::int32_t eot_id() const noexcept { return eot_; }
    std::int32_t unk_id() const noexcept { return unk_; }
    std::int32_t pad_id() const noexcept { return pad_; }
    /// Whether encode(add_special = true) adds BOS / EOS.
    bool add_bos() const noexcept { return add_bos_; }
    bool add_eos() const noexcept { return add_eos_; }
    /// The ids that end generation (ascending): EOS, EOT, EOM and the tokens llama.cpp ends on by
    /// their text.
    const std::vector<std::int32_t>& end_of_generation_ids() const noexcept { return eog_; }
    bool is_end_of_generation(std::int32_t id) const noexcept { return std::binary_search(eog_.begin(), eog_.end(), id); }

    /// tokenizer.chat_template ("" when the file has none).
    const std::string& chat_template_text() const noexcept { return template_text_; }
    /// Whether chat methods can be used (the template was recognized, or a family was chosen).
    bool has_chat_template() const noexcept { return chat_.has_value(); }
    /// The recognized (or chosen) template; kite::config_error naming the file's template when
    /// there is none.
    const text::chat_template& chat_template() const {
        if (!chat_) ::kite::detail::raise<config_error>(chat_error_);
        return *chat_;
    }
    /// The conversation as token ids: the template's text with special tokens matched, the
    /// messages' contents as plain text (see the file comment). No BOS is added beyond what the
    /// template writes.
    std::vector<std::int32_t> apply_chat_template(std::span<const text::chat_message> messages,
                                                  bool add_generation_prompt) const {
        return encode_segments(chat_template().render(messages, add_generation_prompt));
    }
    /// Token ids of rendered segments (chat_template().render(), or a tail of it): special tokens
    /// matched in template text only, contents plain. A chat that keeps its KV cache between
    /// turns encodes just the segments a new turn adds (examples/09_chat.cpp).
    std::vector<std::int32_t> encode_segments(std::span<const text::chat_segment> segments) const {
        std::vector<std::int32_t> out;
        std::string plain;
        const auto flush = [&] {
            if (!plain.empty()) encode_plain(plain, out, false);
            plain.clear();
        };
        for (const auto& seg : segments) {
            if (!seg.is_template_text) {
                plain += seg.text;
                continue;
            }
            specials_.split(seg.text, false, [&](std::string_view part, std::int32_t id) {
                if (id < 0) {
                    plain += part;
                    return;
                }
                flush();
                out.push_back(id);
            });
        }
        flush();
        return out;
    }
    /// The conversation as text (transformers' apply_chat_template(tokenize=False)).
    std::string apply_chat_template_text(std::span<const text::chat_message> messages, bool add_generation_prompt) const {
        return chat_template().render_text(messages, add_generation_prompt);
    }

private:
    bool spm() const noexcept { return std::holds_alternative<text::sentencepiece_bpe>(impl_); }

    void check_id(std::int32_t id, const char* who) const {
        KITE_REQUIRE(id >= 0 && static_cast<std::size_t>(id) < tokens_.size(), invalid_argument, "gguf_tokenizer::", who,
                     ": token id ", id, " is outside [0, ", tokens_.size(), ")");
    }

    void encode_plain(std::string_view text, std::vector<std::int32_t>& out, bool parse_special) const {
        if (const auto* b = std::get_if<text::bpe_tokenizer>(&impl_)) b->append_encoded(text, out, false, parse_special);
        else std::get<text::sentencepiece_bpe>(impl_).append_encoded(text, out, parse_special);
    }

    template <class... Args>
    [[noreturn]] void fail_format(const Args&... args) const {
        ::kite::detail::raise<format_error>(path_, ": ", args...);
    }

    /// The optional id key `key`; -1 when absent; format_error when outside the vocabulary.
    std::int32_t id_key(const gguf_file& f, std::string_view key) const {
        const gguf_value* v = f.find(key);
        if (!v) return -1;
        const auto id = v->as<std::int64_t>(path_ + ": " + std::string(key));
        if (id < 0 || static_cast<std::size_t>(id) >= tokens_.size())
            fail_format(key, " = ", id, " is outside the vocabulary of ", tokens_.size(), " tokens");
        return static_cast<std::int32_t>(id);
    }

    static std::optional<text::bpe_pre_tokenizer> known_pre(std::string_view pre, bool& ignore_merges, bool& bos) {
        ignore_merges = false;
        bos = false;
        if (pre == "smollm" || pre == "starcoder" || pre == "refact") return text::bpe_pre_tokenizer::gpt2_digits;
        if (pre == "gpt-2") return text::bpe_pre_tokenizer::gpt2;
        if (pre == "qwen2") return text::bpe_pre_tokenizer::qwen2;
        if (pre == "llama-bpe" || pre == "llama3" || pre == "llama-v3") {
            ignore_merges = true;
            bos = true;  // llama.cpp's default for Llama 3
            return text::bpe_pre_tokenizer::llama3;
        }
        return std::nullopt;
    }

    void load(const gguf_file& f, gguf_tokenizer_options opt) {
        path_ = f.path();
        model_ = f.get<std::string>("tokenizer.ggml.model");
        pre_ = f.get_or<std::string>("tokenizer.ggml.pre", std::string());
        tokens_ = f.at("tokenizer.ggml.tokens").strings(path_ + ": tokenizer.ggml.tokens");
        const std::size_t n = tokens_.size();
        if (n == 0) fail_format("tokenizer.ggml.tokens is empty");
        if (n > static_cast<std::size_t>(INT32_MAX) / 2) fail_format("tokenizer.ggml.tokens has ", n, " entries");
        types_.assign(n, text::token_type::normal);
        if (const gguf_value* t = f.find("tokenizer.ggml.token_type")) {
            const auto raw = t->as_vector<std::int32_t>(path_ + ": tokenizer.ggml.token_type");
            if (raw.size() != n) fail_format("tokenizer.ggml.token_type has ", raw.size(), " entries for ", n, " tokens");
            for (std::size_t i = 0; i < n; ++i) {
                if (raw[i] < 0 || raw[i] > 6) fail_format("tokenizer.ggml.token_type[", i, "] = ", raw[i], "; expected 0..6");
                types_[i] = static_cast<text::token_type>(raw[i]);
            }
        }
        lookup_.reserve(n);
        for (std::size_t i = 0; i < n; ++i) lookup_.insert_or_assign(tokens_[i], static_cast<std::int32_t>(i));

        bos_ = id_key(f, "tokenizer.ggml.bos_token_id");
        eos_ = id_key(f, "tokenizer.ggml.eos_token_id");
        unk_ = id_key(f, "tokenizer.ggml.unknown_token_id");
        pad_ = id_key(f, "tokenizer.ggml.padding_token_id");
        eot_ = id_key(f, "tokenizer.ggml.eot_token_id");
        const std::int32_t eom = id_key(f, "tokenizer.ggml.eom_token_id");

        // Control, unknown and user-defined tokens are cut out of the text before anything else.
        std::vector<text::added_token> added;
        for (std::size_t i = 0; i < n; ++i) {
            const auto t = types_[i];
            if ((t != text::token_type::control && t != text::token_type::unknown && t != text::token_type::user_defined) ||
                tokens_[i].empty())
                continue;
            text::added_token a;
            a.content = tokens_[i];
            a.id = static_cast<std::int32_t>(i);
            a.special = t != text::token_type::user_defined;
            if (a.special) specials_.add(a);
            added.push_back(std::move(a));
        }

        bytes_.assign(n, std::string());
        const std::string src = "GGUF tokenizer of '" + path_ + "'";
        if (model_ == "gpt2") {
            bool ignore_merges = false, default_bos = false;
            const auto pre = known_pre(pre_, ignore_merges, default_bos);
            if (!pre)
                ::kite::detail::raise<config_error>(
                    path_, ": tokenizer.ggml.pre = \"", pre_,
                    "\" is a pre-tokenizer kite does not implement; expected smollm (starcoder, refact), gpt-2, "
                    "llama-bpe (llama3) or qwen2");
            text::bpe_vocabulary v;
            v.tokens = tokens_;
            v.merges = f.at("tokenizer.ggml.merges").strings(path_ + ": tokenizer.ggml.merges");
            v.pre_tokenizer = *pre;
            v.ignore_merges = ignore_merges;
            v.added = std::move(added);
            v.unk_id = unk_;
            auto bpe = text::bpe_tokenizer::from_vocabulary(v, src);
            for (std::size_t i = 0; i < n; ++i) {
                switch (types_[i]) {
                    case text::token_type::normal:
                    case text::token_type::byte:
                    case text::token_type::undefined: bytes_[i] = bpe.token_bytes(static_cast<std::int32_t>(i)); break;
                    case text::token_type::unused: break;
                    default: bytes_[i] = tokens_[i]; break;  // control, unknown, user-defined: their text
                }
            }
            impl_ = std::move(bpe);
            add_bos_ = default_bos;
        } else if (model_ == "llama") {
            text::spm_vocabulary v;
            v.tokens = tokens_;
            if (const gguf_value* s = f.find("tokenizer.ggml.scores")) {
                v.scores = s->as_vector<float>(path_ + ": tokenizer.ggml.scores");
                if (v.scores.size() != n) fail_format("tokenizer.ggml.scores has ", v.scores.size(), " entries for ", n, " tokens");
            }
            v.types = types_;
            v.unk_id = unk_;
            v.add_space_prefix = f.get_or<bool>("tokenizer.ggml.add_space_prefix", true);
            auto spm = text::sentencepiece_bpe::from_vocabulary(std::move(v), src);
            for (std::size_t i = 0; i < n; ++i) bytes_[i] = std::string(spm.token_bytes(static_cast<std::int32_t>(i)));
            impl_ = std::move(spm);
            add_bos_ = true;
        } else {
            ::kite::detail::raise<config_error>(path_, ": tokenizer.ggml.model = \"", model_,
                                                "\" is a tokenizer kite does not implement; expected gpt2 or llama");
        }
        add_bos_ = f.get_or<bool>("tokenizer.ggml.add_bos_token", add_bos_);
        add_eos_ = f.get_or<bool>("tokenizer.ggml.add_eos_token", false);
        if (add_bos_ && bos_ < 0) fail_format("tokenizer.ggml.add_bos_token is set but there is no bos_token_id");
        if (add_eos_ && eos_ < 0) fail_format("tokenizer.ggml.add_eos_token is set but there is no eos_token_id");

        load_chat(f, std::move(opt));

        if (eot_ < 0 && chat_) {
            if (const auto id = token_to_id(chat_->end_of_turn()); id && *id != bos_) eot_ = *id;
        }
        static constexpr std::string_view eot_texts[] = {"<|eot_id|>", "<|im_end|>", "<|end|>", "<end_of_turn>",
                                                         "<|endoftext|>", "<|end_of_text|>", "<EOT>", "_<EOT>",
                                                         "<\xEF\xBD\x9C" "end\xE2\x96\x81of\xE2\x96\x81sentence\xEF\xBD\x9C>"};
        for (const auto t : eot_texts) {
            if (eot_ >= 0) break;
            if (const auto id = token_to_id(t)) eot_ = *id;
        }
        static constexpr std::string_view eog_texts[] = {
            "<|eot_id|>", "<|im_end|>", "<|end|>", "<end_of_turn>", "<|endoftext|>", "<|eom_id|>", "<EOT>", "_<EOT>",
            "<|end_of_text|>", "<\xEF\xBD\x9C" "end\xE2\x96\x81of\xE2\x96\x81sentence\xEF\xBD\x9C>"};
        for (const std::int32_t id : {eos_, eot_, eom})
            if (id >= 0) eog_.push_back(id);
        for (const auto t : eog_texts)
            if (const auto id = token_to_id(t)) eog_.push_back(*id);
        std::sort(eog_.begin(), eog_.end());
        eog_.erase(std::unique(eog_.begin(), eog_.end()), eog_.end());
    }

    void load_chat(const gguf_file& f, gguf_tokenizer_options opt) {
        if (const gguf_value* t = f.find("tokenizer.chat_template")) template_text_ = t->as<std::string>(path_ + ": tokenizer.chat_template");
        const std::string bos = bos_ >= 0 ? tokens_[static_cast<std::size_t>(bos_)] : std::string();
        const std::string eos = eos_ >= 0 ? tokens_[static_cast<std::size_t>(eos_)] : std::string();
        if (opt.chat_family) {
            chat_.emplace(*opt.chat_family, bos, eos, std::move(opt.default_system));
            return;
        }
        if (template_text_.empty()) {
            chat_error_ = path_ + ": the file has no tokenizer.chat_template; choose a chat family by name "
                                  "(gguf_tokenizer_options::chat_family = kite::text::chat_family::chatml, llama2 or llama3)";
            return;
        }
        try {
            auto info = text::recognize_chat_template(template_text_);
            chat_.emplace(info.family, bos, eos, std::move(info.default_system));
        } catch (const config_error& e) {  // kept for the chat methods: the tokenizer itself is usable
            chat_error_ = path_ + ": tokenizer.chat_template: " + e.what();
        }
    }

    std::string path_, model_, pre_;
    std::vector<std::string> tokens_;
    std::vector<text::token_type> types_;
    std::vector<std::string> bytes_;  // [vocab] what each token decodes to
    string_map<std::int32_t> lookup_;
    text::detail::added_vocab specials_;  // control and unknown tokens, for the chat template's text
    std::variant<std::monostate, text::bpe_tokenizer, text::sentencepiece_bpe> impl_;
    std::int32_t bos_ = -1, eos_ = -1, eot_ = -1, unk_ = -1, pad_ = -1;
    bool add_bos_ = false, add_eos_ = false;
    std::vector<std::int32_t> eog_;
    std::string template_text_;
    std::optional<text::chat_template> chat_;
    std::string chat_error_;
};

}  // namespace kite::model
