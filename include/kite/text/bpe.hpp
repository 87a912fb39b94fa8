#pragma once
/// @file kite/text/bpe.hpp
/// Byte-level BPE from a Hugging Face `tokenizer.json` (GPT-2, Qwen2, Llama 3 style), giving the
/// same ids as the `tokenizers` library.
///
/// The pipeline, as tokenizers runs it:
///  1. added tokens (specials such as <|endoftext|>) are cut out of the raw text, leftmost-longest,
///     with their lstrip / rstrip; the rest is normalized (none, or NFC) and cut again by the
///     added tokens marked "normalized";
///  2. each remaining segment is pre-tokenized by the GPT-2 regex (ByteLevel use_regex) or by a
///     Split on the Qwen2 / Llama 3 regex, matched by hand (detail/bpe_pretokenize.hpp),
///     optionally after Digits(individual_digits) put every \p{N} in a piece of its own
///     (SmolLM2, StarCoder); ByteLevel add_prefix_space puts a space before each segment that
///     lacks one;
///  3. each piece's bytes map to the 256 printable characters of GPT-2's bytes_to_unicode, and the
///     BPE merges apply lowest rank first (leftmost on ties), as tokenizers' Word::merge_all;
///     ignore_merges (Llama 3) takes a piece that is itself in the vocabulary whole;
///  4. the post-processor adds its special tokens (TemplateProcessing, RobertaProcessing).
///
///   kite::text::bpe_tokenizer tok("tokenizer.json");
///   std::vector<std::int32_t> ids = tok.encode("Hello world");
///   std::string text = tok.decode(ids);
///   tok.encode("<|im_start|>", false, /*parse_special=*/false);   // special text as plain text
///
/// The same tokenizer can be built without JSON from a vocabulary, merges and a named
/// pre-tokenizer (bpe_tokenizer::from_vocabulary; a GGUF file stores it so).
///
/// Supported: model BPE (no dropout, no continuing-subword prefix or end-of-word suffix, no byte
/// fallback), normalizer null or NFC (NFC needs utf8proc: link kite::text), the pre-tokenizers
/// above, ByteLevel decoding. Anything else is refused with a kite::config_error naming the
/// field. Input must be valid UTF-8 (kite::unicode_error otherwise). encode/decode are const and
/// safe to call from many threads.

#include <algorithm>
#include <array>
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "kite/core/error.hpp"
#include "kite/core/io.hpp"
#include "kite/core/string_map.hpp"
#include "kite/text/detail/added_vocab.hpp"
#include "kite/text/detail/bpe_pretokenize.hpp"
#include "kite/text/detail/pair_merge.hpp"
#include "kite/text/utf8.hpp"

#ifdef KITE_WITH_TEXT
#include <cstdlib>
#include <utf8proc.h>
#endif

namespace kite::text {

namespace detail {

/// GPT-2's bytes_to_unicode: printable Latin-1 bytes map to themselves, the other 68 bytes to
/// U+0100 onwards, so every byte is a visible character.
inline constexpr std::array<char32_t, 256> byte_to_unicode = [] {
    std::array<char32_t, 256> t{};
    const auto printable = [](int b) { return (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF); };
    int n = 0;
    for (int b = 0; b < 256; ++b) t[static_cast<std::size_t>(b)] = printable(b) ? static_cast<char32_t>(b) : static_cast<char32_t>(256 + n++);
    return t;
}();

/// String::from_utf8_lossy (kept under this name for the callers of bpe.hpp).
inline std::string utf8_lossy(std::string_view s) { return utf8::lossy(s); }

}  // namespace detail

/// How byte-level BPE cuts text into pieces before merging.
enum class bpe_pre_tokenizer : std::uint8_t {
    gpt2,         ///< GPT-2's ByteLevel regex
    gpt2_digits,  ///< every \p{N} alone, then the GPT-2 regex (Digits(individual_digits) + ByteLevel:
                  ///< SmolLM2, StarCoder; llama.cpp's "smollm", "starcoder", "refact")
    qwen2,        ///< Qwen2's Split regex (one \p{N} per piece)
    llama3,       ///< Llama 3's Split regex (\p{N}{1,3})
};

/// A byte-level BPE vocabulary given directly (as a GGUF file holds it) instead of tokenizer.json.
struct bpe_vocabulary {
    std::vector<std::string> tokens;  ///< id -> token: GPT-2 byte alphabet, or an added token's text
    std::vector<std::string> merges;  ///< "left right" (one space), in priority order
    bpe_pre_tokenizer pre_tokenizer = bpe_pre_tokenizer::gpt2;
    bool ignore_merges = false;       ///< a piece that is itself a token is taken whole (Llama 3)
    std::vector<added_token> added;   ///< cut out of the raw text before pre-tokenization
    std::int32_t unk_id = -1;         ///< for bytes without a token (-1: such bytes are dropped)
};

/// A byte-level BPE tokenizer loaded from tokenizer.json (or given as a bpe_vocabulary).
class bpe_tokenizer {
public:
    /// Reads tokenizer.json at `path` (or a folder holding one).
    explicit bpe_tokenizer(const std::filesystem::path& path) {
        std::filesystem::path p = path;
        if (std::filesystem::is_directory(p)) p /= "tokenizer.json";
        const std::string text = io::read_text(p);
        const nlohmann::json j = nlohmann::json::parse(text, nullptr, false);
        KITE_REQUIRE(!j.is_discarded(), format_error, "bpe_tokenizer: '", p.string(), "' is not valid JSON");
        load(j, p.string());
    }
    /// From a parsed tokenizer.json; `source` names it in errors.
    static bpe_tokenizer from_json(const nlohmann::json& j, const std::string& source = "tokenizer.json") {
        bpe_tokenizer t;
        t.load(j, source);
        return t;
    }
    /// From a vocabulary, merges and a named pre-tokenizer (no normalizer, no post-processor);
    /// `source` names it in errors (kite::config_error for a merge of unknown tokens, a bad id).
    /// When a token string occurs twice, the later id is the one text maps to (as llama.cpp).
    static bpe_tokenizer from_vocabulary(const bpe_vocabulary& v, const std::string& source = "bpe vocabulary") {
        bpe_tokenizer t;
        t.load(v, source);
        return t;
    }

    /// One past the largest id (model vocabulary and added tokens).
    std::size_t vocab_size() const noexcept { return id_to_token_.size(); }
    const std::vector<added_token>& added_tokens() const noexcept { return added_.tokens(); }
    /// The id of a token string (byte-level alphabet, or an added token's content).
    std::optional<std::int32_t> token_to_id(std::string_view token) const {
        if (const std::int32_t id = added_.find(token); id >= 0) return id;
        if (const auto it = vocab_.find(token); it != vocab_.end()) return it->second;
        return std::nullopt;
    }
    /// The token string of an id (invalid_argument when unknown).
    std::string_view id_to_token(std::int32_t id) const {
        KITE_REQUIRE(id >= 0 && static_cast<std::size_t>(id) < id_to_token_.size() && has_token_[static_cast<std::size_t>(id)],
                     invalid_argument, "bpe_tokenizer: token id ", id, " is not in the vocabulary");
        return id_to_token_[static_cast<std::size_t>(id)];
    }

    /// Token ids of `text`; with add_special_tokens the post-processor's tokens are added. With
    /// parse_special = false the text of special added tokens (such as "<|im_start|>") is plain
    /// text, tokenized like any other (tokenizers' split_special_tokens; llama.cpp's
    /// parse_special = false); added tokens that are not special are still matched.
    std::vector<std::int32_t> encode(std::string_view text, bool add_special_tokens = true,
                                     bool parse_special = true) const {
        std::vector<std::int32_t> out;
        encode_into(text, out, add_special_tokens, parse_special);
        return out;
    }

    /// encode() into `out` (cleared first), reusing its capacity.
    void encode_into(std::string_view text, std::vector<std::int32_t>& out, bool add_special_tokens = true,
                     bool parse_special = true) const {
        out.clear();
        append_encoded(text, out, add_special_tokens, parse_special);
    }

    /// encode() appended to `out` (kept as it is); for assembling a prompt from parts.
    void append_encoded(std::string_view text, std::vector<std::int32_t>& out, bool add_special_tokens = true,
                        bool parse_special = true) const {
        utf8::require_valid(text, 0, "bpe_tokenizer::encode");
        if (add_special_tokens) out.insert(out.end(), prefix_.begin(), prefix_.end());
        workspace ws;
        added_.split(
            text, false,
            [&](std::string_view seg, std::int32_t added_id) {
                if (added_id >= 0) {
                    out.push_back(added_id);
                    return;
                }
                // norm views seg or ws.normalized, which nothing below writes.
                const std::string_view norm = normalize(seg, ws.normalized);
                added_.split(
                    norm, true,
                    [&](std::string_view s2, std::int32_t id2) {
                        if (id2 >= 0) out.push_back(id2);
                        else encode_segment(s2, ws, out);
                    },
                    parse_special);
            },
            parse_special);
        if (add_special_tokens) out.insert(out.end(), suffix_.begin(), suffix_.end());
    }

    /// The pre-tokenizer in use.
    bpe_pre_tokenizer pre_tokenizer() const noexcept {
        if (split_digits_) return bpe_pre_tokenizer::gpt2_digits;
        switch (pattern_) {
            case detail::bpe_pattern::qwen2: return bpe_pre_tokenizer::qwen2;
            case detail::bpe_pattern::llama3: return bpe_pre_tokenizer::llama3;
            default: return bpe_pre_tokenizer::gpt2;
        }
    }
    /// Whether `id` is an added token marked special (dropped by decode's skip_special_tokens).
    bool is_special(std::int32_t id) const noexcept {
        return id >= 0 && static_cast<std::size_t>(id) < is_special_.size() && is_special_[static_cast<std::size_t>(id)];
    }
    /// The raw bytes `id` stands for (a byte-level token mapped back; an added token's text).
    std::string token_bytes(std::int32_t id) const {
        std::string out;
        append_token_bytes(id_to_token(id), out);
        return out;
    }

    /// Calls sink(piece) for each pre-token of already normalized text without added tokens
    /// (the pieces BPE runs on, before the byte mapping). For tests and inspection.
    template <class Sink>
    void pre_tokenize(std::string_view text, Sink&& sink) const {
        utf8::require_valid(text, 0, "bpe_tokenizer::pre_tokenize");
        std::string with_space;
        std::string_view s = text;
        if (add_prefix_space_ && !s.empty() && s.front() != ' ') {
            with_space = " ";
            with_space += s;
            s = with_space;
        }
        if (!use_regex_) {
            if (!s.empty()) sink(s);
            return;
        }
        if (split_digits_) detail::bpe_split_digits(s, pattern_, sink);
        else detail::bpe_split(s, pattern_, sink);
    }

    /// The text of `ids`, as tokenizers' decode: byte-level tokens back to bytes, invalid UTF-8
    /// replaced by U+FFFD; special added tokens dropped when skip_special_tokens.
    std::string decode(std::span<const std::int32_t> ids, bool skip_special_tokens = false) const {
        return detail::utf8_lossy(decode_bytes(ids, skip_special_tokens));
    }

    /// The raw bytes of `ids` (no replacement of partial UTF-8: for streaming token by token).
    std::string decode_bytes(std::span<const std::int32_t> ids, bool skip_special_tokens = false) const {
        std::string out;
        for (const std::int32_t id : ids) {
            const std::string_view tok = id_to_token(id);
            const std::size_t i = static_cast<std::size_t>(id);
            if (is_added_[i]) {
                if (skip_special_tokens && is_special_[i]) continue;
            }
            append_token_bytes(tok, out);
        }
        return out;
    }

private:
    bpe_tokenizer() = default;

    struct workspace {
        std::string normalized;
        std::string with_space;
        std::string word;                  // byte-level string of a piece (ignore_merges)
        std::vector<std::int32_t> sym;     // [symbols] ids
        detail::merge_workspace merge;
    };

    static std::uint64_t pair_key(std::int32_t a, std::int32_t b) noexcept {
        return (static_cast<std::uint64_t>(static_cast<std::uint32_t>(a)) << 32) | static_cast<std::uint32_t>(b);
    }

    // ---- loading ------------------------------------------------------------------------
    template <class... Args>
    [[noreturn]] void fail(const Args&... args) const {
        kite::detail::raise<config_error>("bpe_tokenizer: ", source_, ": ", args...);
    }

    static bool flag(const nlohmann::json& o, const char* key, bool fallback) {
        const auto it = o.find(key);
        return it == o.end() || !it->is_boolean() ? fallback : it->get<bool>();
    }

    /// Ids in tokenizer.json may leave holes, at most this many beyond the token count: a larger
    /// id names a table the file cannot fill, refused before it is allocated.
    static constexpr std::int64_t max_id_slack = 65536;

    /// A field of the wrong JSON type is a kite::config_error naming the source, like any other.
    void load(const nlohmann::json& j, const std::string& source) {
        source_ = source;
        try {
            load_fields(j);
        } catch (const nlohmann::json::exception& e) {
            fail("malformed tokenizer.json: ", e.what());
        }
    }

    /// load() without the translation of nlohmann::json's own exceptions.
    void load_fields(const nlohmann::json& j) {
        if (!j.is_object()) fail("expected a JSON object");
        const auto m = j.find("model");
        if (m == j.end() || !m->is_object()) fail("field 'model' is missing");
        const std::string type = m->value("type", std::string("BPE"));
        if (type != "BPE") fail("field 'model.type' = \"", type, "\"; expected \"BPE\"");
        if (m->contains("dropout") && !(*m)["dropout"].is_null() && (*m)["dropout"] != 0.0)
            fail("field 'model.dropout' is set; kite's BPE is deterministic");
        for (const char* k : {"continuing_subword_prefix", "end_of_word_suffix"}) {
            if (m->contains(k) && !(*m)[k].is_null() && (*m)[k] != "")
                fail("field 'model.", k, "' = ", (*m)[k].dump(), "; byte-level BPE uses none");
        }
        if (flag(*m, "byte_fallback", false)) fail("field 'model.byte_fallback' = true is not supported");
        ignore_merges_ = flag(*m, "ignore_merges", false);
        fuse_unk_ = flag(*m, "fuse_unk", false);

        const auto v = m->find("vocab");
        if (v == m->end() || !v->is_object()) fail("field 'model.vocab' is missing");
        std::int32_t max_id = -1;
        const auto added_json = j.find("added_tokens");
        const std::size_t n_added = added_json != j.end() && added_json->is_array() ? added_json->size() : 0;
        const std::int64_t id_limit = static_cast<std::int64_t>(v->size() + n_added) + max_id_slack;
        for (const auto& [tok, id] : v->items()) {
            if (!id.is_number_integer() || id.get<std::int64_t>() < 0 || id.get<std::int64_t>() > INT32_MAX)
                fail("field 'model.vocab' maps '", tok, "' to ", id.dump(), "; expected a non-negative id");
            if (id.get<std::int64_t>() >= id_limit)
                fail("field 'model.vocab' maps '", tok, "' to ", id.dump(), ", far beyond its ", v->size() + n_added,
                     " tokens; expected ids below ", id_limit);
            vocab_.emplace(tok, id.get<std::int32_t>());
            max_id = std::max(max_id, id.get<std::int32_t>());
        }
        const auto unk = m->find("unk_token");
        if (unk != m->end() && !unk->is_null()) {
            const auto it = vocab_.find(unk->get<std::string>());
            if (it == vocab_.end()) fail("field 'model.unk_token' = ", unk->dump(), " is not in the vocabulary");
            unk_id_ = it->second;
        }

        const auto merges = m->find("merges");
        if (merges == m->end() || !merges->is_array()) fail("field 'model.merges' is missing");
        merges_.reserve(merges->size());
        std::int32_t rank = 0;
        for (const auto& e : *merges) {
            std::string a, b;
            if (e.is_string()) {
                const std::string& s = e.get_ref<const std::string&>();
                const std::size_t sp = s.find(' ');
                if (sp == std::string::npos || s.find(' ', sp + 1) != std::string::npos)
                    fail("merge ", rank, " = \"", s, "\"; expected two tokens separated by one space");
                a = s.substr(0, sp);
                b = s.substr(sp + 1);
            } else if (e.is_array() && e.size() == 2 && e[0].is_string() && e[1].is_string()) {
                a = e[0].get<std::string>();
                b = e[1].get<std::string>();
            } else {
                fail("merge ", rank, " = ", e.dump(), "; expected \"a b\" or [\"a\", \"b\"]");
            }
            add_merge(a, b, rank);
            ++rank;
        }
        map_bytes();

        if (const auto at = j.find("added_tokens"); at != j.end() && at->is_array()) {
            for (const auto& e : *at) {
                added_token t;
                if (!e.is_object() || !e.contains("content") || !e["content"].is_string() || !e.contains("id") ||
                    !e["id"].is_number_integer())
                    fail("an entry of 'added_tokens' lacks a string content or an integer id: ", e.dump());
                t.content = e["content"].get<std::string>();
                const auto id = e["id"].get<std::int64_t>();
                if (id < 0 || id >= id_limit)
                    fail("added token '", t.content, "' has id ", id, "; expected 0 <= id < ", id_limit);
                t.id = static_cast<std::int32_t>(id);
                t.special = flag(e, "special", false);
                t.lstrip = flag(e, "lstrip", false);
                t.rstrip = flag(e, "rstrip", false);
                t.normalized = flag(e, "normalized", !t.special);
                if (flag(e, "single_word", false))
                    fail("added token '", t.content, "' has single_word = true, which kite does not support");
                if (t.content.empty()) fail("added token ", t.id, " is empty");
                max_id = std::max(max_id, t.id);
                added_.add(std::move(t));
            }
        }

        index_tokens(max_id);
        read_normalizer(j);
        read_pre_tokenizer(j);
        read_post_processor(j);
        // encode() adds these ids: each must be a token of the vocabulary.
        for (const auto* ids : {&prefix_, &suffix_})
            for (const std::int32_t id : *ids)
                if (id < 0 || static_cast<std::size_t>(id) >= has_token_.size() || !has_token_[static_cast<std::size_t>(id)])
                    fail("field 'post_processor' adds token id ", id, ", which the vocabulary does not have");
    }

    void load(const bpe_vocabulary& v, const std::string& source) {
        source_ = source;
        if (v.tokens.empty()) fail("the vocabulary is empty");
        if (v.tokens.size() > static_cast<std::size_t>(INT32_MAX)) fail(v.tokens.size(), " tokens is too many");
        vocab_.reserve(v.tokens.size());
        for (std::size_t id = 0; id < v.tokens.size(); ++id)
            vocab_.insert_or_assign(v.tokens[id], static_cast<std::int32_t>(id));
        const auto max_id = static_cast<std::int32_t>(v.tokens.size() - 1);
        if (v.unk_id >= 0) {
            if (v.unk_id > max_id) fail("unknown-token id ", v.unk_id, " is outside the vocabulary of ", v.tokens.size());
            unk_id_ = v.unk_id;
        }
        ignore_merges_ = v.ignore_merges;
        merges_.reserve(v.merges.size());
        for (std::size_t rank = 0; rank < v.merges.size(); ++rank) {
            const std::string& m = v.merges[rank];
            const std::size_t sp = m.find(' ', 1);  // as llama.cpp: the first space after the first byte
            if (sp == std::string::npos || sp + 1 >= m.size())
                fail("merge ", rank, " = \"", m, "\"; expected two tokens separated by one space");
            add_merge(m.substr(0, sp), m.substr(sp + 1), static_cast<std::int32_t>(rank));
        }
        map_bytes();
        for (const auto& t : v.added) {
            if (t.id < 0 || t.id > max_id) fail("added token '", t.content, "' has id ", t.id, " outside the vocabulary");
            if (t.content.empty()) fail("added token ", t.id, " is empty");
            added_.add(t);
        }
        index_tokens(max_id);
        switch (v.pre_tokenizer) {
            case bpe_pre_tokenizer::gpt2: pattern_ = detail::bpe_pattern::gpt2; break;
            case bpe_pre_tokenizer::gpt2_digits: pattern_ = detail::bpe_pattern::gpt2; split_digits_ = true; break;
            case bpe_pre_tokenizer::qwen2: pattern_ = detail::bpe_pattern::qwen2; break;
            case bpe_pre_tokenizer::llama3: pattern_ = detail::bpe_pattern::llama3; break;
        }
        use_regex_ = true;
        add_prefix_space_ = false;
    }

    void add_merge(const std::string& a, const std::string& b, std::int32_t rank) {
        const auto ia = vocab_.find(a), ib = vocab_.find(b), im = vocab_.find(a + b);
        if (ia == vocab_.end() || ib == vocab_.end() || im == vocab_.end())
            fail("merge ", rank, " (\"", a, "\", \"", b, "\") uses a token that is not in the vocabulary");
        // The first rule for a pair wins, as in tokenizers (later duplicates never apply).
        merges_.emplace(pair_key(ia->second, ib->second), detail::merge_rule{static_cast<std::uint32_t>(rank), im->second});
    }

    void map_bytes() {
        for (int b = 0; b < 256; ++b) {
            std::string ch;
            utf8::append(ch, detail::byte_to_unicode[static_cast<std::size_t>(b)]);
            const auto it = vocab_.find(ch);
            byte_id_[static_cast<std::size_t>(b)] = it == vocab_.end() ? -1 : it->second;
            unicode_to_byte_.emplace(detail::byte_to_unicode[static_cast<std::size_t>(b)], static_cast<unsigned char>(b));
        }
    }

    void index_tokens(std::int32_t max_id) {
        id_to_token_.assign(static_cast<std::size_t>(max_id + 1), std::string());
        has_token_.assign(id_to_token_.size(), false);
        is_added_.assign(id_to_token_.size(), false);
        is_special_.assign(id_to_token_.size(), false);
        for (const auto& [tok, id] : vocab_) {
            id_to_token_[static_cast<std::size_t>(id)] = tok;
            has_token_[static_cast<std::size_t>(id)] = true;
        }
        for (const auto& t : added_.tokens()) {
            const auto i = static_cast<std::size_t>(t.id);
            id_to_token_[i] = t.content;
            has_token_[i] = true;
            is_added_[i] = true;
            is_special_[i] = t.special;
        }
    }

    void read_normalizer(const nlohmann::json& j) {
        const auto n = j.find("normalizer");
        if (n == j.end() || n->is_null()) return;
        const std::string type = n->value("type", std::string());
        if (type == "NFC") {
#ifdef KITE_WITH_TEXT
            nfc_ = true;
            return;
#else
            fail("field 'normalizer' is NFC, which needs utf8proc: link kite::text");
#endif
        }
        fail("field 'normalizer' has type \"", type, "\"; kite supports none or NFC");
    }

    static std::optional<detail::bpe_pattern> known_pattern(std::string_view re) {
        constexpr std::string_view gpt2 = R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)";
        constexpr std::string_view qwen2 = R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";
        constexpr std::string_view llama3 = R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";
        if (re == gpt2) return detail::bpe_pattern::gpt2;
        if (re == qwen2) return detail::bpe_pattern::qwen2;
        if (re == llama3) return detail::bpe_pattern::llama3;
        return std::nullopt;
    }

    void read_byte_level(const nlohmann::json& p, bool allow_regex) {
        add_prefix_space_ = flag(p, "add_prefix_space", false);
        use_regex_ = flag(p, "use_regex", true);
        if (use_regex_ && !allow_regex) fail("a ByteLevel pre-tokenizer after a Split must have use_regex = false");
        pattern_ = detail::bpe_pattern::gpt2;
    }

    void read_pre_tokenizer(const nlohmann::json& j) {
        const auto p = j.find("pre_tokenizer");
        if (p == j.end() || p->is_null() || !p->is_object()) fail("field 'pre_tokenizer' is missing; expected ByteLevel");
        const std::string type = p->value("type", std::string());
        if (type == "ByteLevel") {
            read_byte_level(*p, true);
            return;
        }
        if (type == "Sequence") {
            const auto list = p->find("pretokenizers");
            if (list != p->end() && list->is_array() && list->size() == 2 && (*list)[0].value("type", "") == "Digits" &&
                (*list)[1].value("type", "") == "ByteLevel") {
                // SmolLM2 / StarCoder: every digit alone, then ByteLevel's GPT-2 regex.
                if (!flag((*list)[0], "individual_digits", false))
                    fail("field 'pre_tokenizer.pretokenizers[0]' is Digits without individual_digits = true");
                read_byte_level((*list)[1], true);
                if (!use_regex_) fail("a ByteLevel pre-tokenizer after Digits must have use_regex = true");
                split_digits_ = true;
                return;
            }
            if (list != p->end() && list->is_array() && list->size() == 2 && (*list)[0].value("type", "") == "Split" &&
                (*list)[1].value("type", "") == "ByteLevel") {
                const auto& split = (*list)[0];
                const std::string behavior = split.value("behavior", std::string());
                const auto pat = split.find("pattern");
                std::optional<detail::bpe_pattern> known;
                if (pat != split.end() && pat->is_object() && pat->contains("Regex") && (*pat)["Regex"].is_string())
                    known = known_pattern((*pat)["Regex"].get<std::string>());
                if (!known) fail("field 'pre_tokenizer.pretokenizers[0].pattern' is not the GPT-2, Qwen2 or Llama 3 regex");
                if (behavior != "Isolated" || flag(split, "invert", false))
                    fail("field 'pre_tokenizer.pretokenizers[0]' must be an Isolated, non-inverted Split");
                read_byte_level((*list)[1], false);
                if (add_prefix_space_) fail("ByteLevel add_prefix_space after a Split is not supported");
                use_regex_ = true;
                pattern_ = *known;
                return;
            }
        }
        fail("field 'pre_tokenizer' has type \"", type,
             "\"; kite supports ByteLevel, Sequence[Split(regex), ByteLevel(use_regex=false)] or "
             "Sequence[Digits(individual_digits=true), ByteLevel]");
    }

    void read_post_processor(const nlohmann::json& j) {
        const auto p = j.find("post_processor");
        if (p == j.end() || p->is_null()) return;
        read_processor(*p);
    }
    void read_processor(const nlohmann::json& p) {
        const std::string type = p.value("type", std::string());
        if (type == "ByteLevel") return;  // offsets only
        if (type == "Sequence") {
            for (const auto& e : p.value("processors", nlohmann::json::array())) read_processor(e);
            return;
        }
        if (type == "RobertaProcessing" || type == "BertProcessing") {
            const auto id_of = [&](const char* k) {
                const auto it = p.find(k);
                if (it == p.end() || !it->is_array() || it->size() != 2 || !(*it)[1].is_number_integer())
                    fail("field 'post_processor.", k, "' is not [token, id]");
                return (*it)[1].get<std::int32_t>();
            };
            prefix_ = {id_of("cls")};
            suffix_ = {id_of("sep")};
            return;
        }
        if (type == "TemplateProcessing") {
            const auto single = p.find("single");
            const auto specials = p.find("special_tokens");
            if (single == p.end() || !single->is_array()) fail("field 'post_processor.single' is missing");
            prefix_.clear();
            suffix_.clear();
            bool seen_sequence = false;
            for (const auto& item : *single) {
                if (item.contains("Sequence")) {
                    seen_sequence = true;
                    continue;
                }
                const auto st = item.find("SpecialToken");
                if (st == item.end() || !st->contains("id")) fail("field 'post_processor.single' has an unknown item ", item.dump());
                const std::string name = (*st)["id"].get<std::string>();
                if (specials == p.end() || !specials->contains(name) || !(*specials)[name].contains("ids"))
                    fail("TemplateProcessing names special token '", name, "' without ids");
                for (const auto& id : (*specials)[name]["ids"]) (seen_sequence ? suffix_ : prefix_).push_back(id.get<std::int32_t>());
            }
            return;
        }
        fail("field 'post_processor' has type \"", type, "\"; kite supports ByteLevel, TemplateProcessing, RobertaProcessing");
    }

    // ---- encoding -----------------------------------------------------------------------
    std::string_view normalize(std::string_view s, std::string& buf) const {
#ifdef KITE_WITH_TEXT
        if (nfc_ && std::any_of(s.begin(), s.end(), [](char c) { return static_cast<unsigned char>(c) >= 0x80; })) {
            utf8proc_uint8_t* out = nullptr;
            const utf8proc_ssize_t n = utf8proc_map(reinterpret_cast<const utf8proc_uint8_t*>(s.data()),
                                                    static_cast<utf8proc_ssize_t>(s.size()), &out,
                                                    static_cast<utf8proc_option_t>(UTF8PROC_STABLE | UTF8PROC_COMPOSE));
            KITE_REQUIRE(n >= 0, invalid_argument, "bpe_tokenizer: NFC normalization failed: ", utf8proc_errmsg(n));
            buf.assign(reinterpret_cast<const char*>(out), static_cast<std::size_t>(n));
            std::free(out);
            return buf;
        }
#endif
        (void)buf;
        return s;
    }

    void encode_segment(std::string_view seg, workspace& ws, std::vector<std::int32_t>& out) const {
        if (seg.empty()) return;
        std::string_view s = seg;
        if (add_prefix_space_ && s.front() != ' ') {
            ws.with_space.assign(" ");
            ws.with_space += s;
            s = ws.with_space;
        }
        if (!use_regex_) {
            encode_piece(s, ws, out);
            return;
        }
        const auto piece = [&](std::string_view p) { encode_piece(p, ws, out); };
        if (split_digits_) detail::bpe_split_digits(s, pattern_, piece);
        else detail::bpe_split(s, pattern_, piece);
    }

    void encode_piece(std::string_view piece, workspace& ws, std::vector<std::int32_t>& out) const {
        if (ignore_merges_) {
            ws.word.clear();
            for (const char c : piece) utf8::append(ws.word, detail::byte_to_unicode[static_cast<unsigned char>(c)]);
            if (const auto it = vocab_.find(std::string_view(ws.word)); it != vocab_.end()) {
                out.push_back(it->second);
                return;
            }
        }
        auto& sym = ws.sym;
        sym.clear();
        for (const char c : piece) {
            const std::int32_t id = byte_id_[static_cast<unsigned char>(c)];
            if (id >= 0) {
                sym.push_back(id);
            } else if (unk_id_ >= 0) {
                // tokenizers fuses consecutive unknowns when fuse_unk is set.
                if (!(fuse_unk_ && !sym.empty() && sym.back() == unk_id_)) sym.push_back(unk_id_);
            }
        }
        merge_word(ws);
        for (const std::int32_t id : sym)
            if (id >= 0) out.push_back(id);
    }

    // Lowest merge rank first, leftmost on ties (tokenizers' Word::merge_all).
    void merge_word(workspace& ws) const {
        if (merges_.empty()) return;
        detail::merge_pairs(ws.sym, ws.merge, [&](std::int32_t a, std::int32_t b) -> std::optional<detail::merge_rule> {
            const auto it = merges_.find(pair_key(a, b));
            if (it == merges_.end()) return std::nullopt;
            return it->second;
        });
    }

    void append_token_bytes(std::string_view tok, std::string& out) const {
        // Every character in the byte alphabet: its byte; otherwise the token's own UTF-8 bytes
        // (tokenizers' ByteLevel decoder does the same per token).
        const std::size_t mark = out.size();
        std::size_t i = 0;
        while (i < tok.size()) {
            const char32_t c = utf8::decode(tok, i);
            const auto it = unicode_to_byte_.find(c);
            if (it == unicode_to_byte_.end()) {
                out.resize(mark);
                out.append(tok);
                return;
            }
            out.push_back(static_cast<char>(it->second));
        }
    }

    std::string source_;
    string_map<std::int32_t> vocab_;
    std::unordered_map<std::uint64_t, detail::merge_rule> merges_;
    std::array<std::int32_t, 256> byte_id_{};
    std::unordered_map<char32_t, unsigned char> unicode_to_byte_;
    detail::added_vocab added_;
    std::vector<std::string> id_to_token_;
    std::vector<bool> has_token_, is_added_, is_special_;
    std::vector<std::int32_t> prefix_, suffix_;
    std::int32_t unk_id_ = -1;
    bool fuse_unk_ = false;
    bool ignore_merges_ = false;
    [[maybe_unused]] bool nfc_ = false;  // read only with KITE_WITH_TEXT
    bool add_prefix_space_ = false;
    bool use_regex_ = true;
    bool split_digits_ = false;  // Digits(individual_digits = true) before the pattern
    detail::bpe_pattern pattern_ = detail::bpe_pattern::gpt2;
};

}  // namespace kite::text
