#pragma once
/// @file kite/text/wordpiece.hpp
/// BERT's WordPiece tokenizer (uncased by default), equal to Hugging Face tokenizers' BertNormalizer
/// + BertPreTokenizer + WordPiece model + [CLS] ... [SEP] post-processing.
///
///  1. special tokens ([CLS], [MASK], ...) written in the text are cut out first, as tokenizers'
///     added vocabulary does;
///  2. text cleaning: NUL, U+FFFD and control / format / private-use characters (Cc, Cf, Co) are
///     removed, except \t \n \r; whitespace becomes a space;
///  3. each CJK ideograph becomes a word of its own;
///  4. accents stripped (NFD, then nonspacing marks Mn removed) and lower-casing, when enabled;
///  5. words split at whitespace; each punctuation character (ASCII punctuation or Unicode P*)
///     is a word;
///  6. each word becomes the greedy longest-match pieces of the vocabulary, continuations
///     prefixed with "##"; a word with no cover, or longer than 100 characters, is [UNK];
///  7. [CLS] pieces [SEP], truncated to max_length like tokenizers' truncation.
///
/// ASCII characters take a table-driven fast path; other characters go through utf8proc for
/// categories, decomposition and case mapping (canonical ordering of the decomposed marks kept).
/// No allocation per character: buffers are reused across words.
///
///   auto tok = kite::text::wordpiece_tokenizer::from_file("models/all-MiniLM-L6-v2/vocab.txt");
///   std::vector<std::int32_t> ids = tok.encode("Hello, world!", 256);   // [CLS] hello , world ! [SEP]
///
/// Needs utf8proc: link kite::text. encode is const and safe to call from many threads.

#include <algorithm>
#include <array>
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>
#include <utf8proc.h>

#include "kite/core/error.hpp"
#include "kite/core/io.hpp"
#include "kite/core/string_map.hpp"
#include "kite/text/detail/added_vocab.hpp"
#include "kite/text/detail/wordpiece_overrides.hpp"
#include "kite/text/utf8.hpp"

namespace kite::text {

/// How a WordPiece tokenizer normalizes and splits (tokenizers' BertNormalizer and WordPiece).
struct wordpiece_options {
    bool clean_text = true;
    bool handle_chinese_chars = true;
    bool lowercase = true;
    std::optional<bool> strip_accents;  ///< unset: follows lowercase, as in BERT
    std::size_t max_input_chars_per_word = 100;
    std::string unk_token = "[UNK]";
    std::string cls_token = "[CLS]";
    std::string sep_token = "[SEP]";
    std::string pad_token = "[PAD]";
    std::string continuing_subword_prefix = "##";
    /// Tokens recognised in raw text before anything else (when they are in the vocabulary).
    std::vector<std::string> special_tokens = {"[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"};
};

namespace detail {

/// What a character does in BERT's pre-tokenization, after normalization.
enum class bert_cls : std::uint8_t { drop, space, punct, cjk, word };

/// BERT's CJK ideograph ranges (tokenizers' is_chinese_char).
constexpr bool is_bert_cjk(char32_t c) noexcept {
    return (c >= 0x4E00 && c <= 0x9FFF) || (c >= 0x3400 && c <= 0x4DBF) || (c >= 0x20000 && c <= 0x2A6DF) ||
           (c >= 0x2A700 && c <= 0x2B73F) || (c >= 0x2B740 && c <= 0x2B81F) || (c >= 0x2B920 && c <= 0x2CEAF) ||
           (c >= 0xF900 && c <= 0xFAFF) || (c >= 0x2F800 && c <= 0x2FA1F);
}

/// Classes of the ASCII characters: controls other than \t \n \r are dropped, the 32 ASCII
/// punctuation characters ($, +, <, =, >, ^, `, |, ~ included) split.
inline constexpr std::array<bert_cls, 128> bert_ascii = [] {
    std::array<bert_cls, 128> t{};
    for (int c = 0; c < 128; ++c) {
        bert_cls k = bert_cls::word;
        if (c < 0x20 || c == 0x7F) k = bert_cls::drop;
        if (c == '\t' || c == '\n' || c == '\r' || c == ' ') k = bert_cls::space;
        if ((c >= 0x21 && c <= 0x2F) || (c >= 0x3A && c <= 0x40) || (c >= 0x5B && c <= 0x60) || (c >= 0x7B && c <= 0x7E))
            k = bert_cls::punct;
        t[static_cast<std::size_t>(c)] = k;
    }
    return t;
}();

/// What BERT's pipeline does with one non-ASCII code point: its kind (drop, space, punct, mark,
/// word) and its lower-case image. The measured overrides first (see wordpiece_overrides.hpp),
/// else utf8proc's category and simple lower-case mapping.
struct bert_char {
    bert_override::kind_t kind;
    char32_t lower;
    bool listed = false;  ///< from the override table: taken as is, never decomposed
};

inline bert_char bert_props(char32_t c) noexcept {
    const auto it = std::upper_bound(bert_overrides.begin(), bert_overrides.end(), c,
                                     [](char32_t v, const bert_override& r) { return v < r.first; });
    if (it != bert_overrides.begin() && c <= (it - 1)->last)
        return {(it - 1)->kind, static_cast<char32_t>(static_cast<std::int32_t>(c) + (it - 1)->delta), true};
    const auto cat = utf8proc_category(static_cast<utf8proc_int32_t>(c));
    if (c == 0xFFFD || cat == UTF8PROC_CATEGORY_CC || cat == UTF8PROC_CATEGORY_CF || cat == UTF8PROC_CATEGORY_CO ||
        cat == UTF8PROC_CATEGORY_CS)
        return {bert_override::drop, c};
    if (rust_whitespace(c)) return {bert_override::space, c};
    if (cat == UTF8PROC_CATEGORY_MN) return {bert_override::mark, c};
    const auto low = static_cast<char32_t>(utf8proc_tolower(static_cast<utf8proc_int32_t>(c)));
    const auto lcat = utf8proc_category(static_cast<utf8proc_int32_t>(low));
    if (lcat >= UTF8PROC_CATEGORY_PC && lcat <= UTF8PROC_CATEGORY_PO) return {bert_override::punct, low};
    return {bert_override::word, low};
}

}  // namespace detail

/// A WordPiece tokenizer (BERT).
class wordpiece_tokenizer {
public:
    /// vocab.txt (one token per line, id = line number), or tokenizer.json, or a folder with
    /// either (tokenizer.json preferred).
    static wordpiece_tokenizer from_file(const std::filesystem::path& path, const wordpiece_options& opt = {}) {
        std::filesystem::path p = path;
        if (std::filesystem::is_directory(p)) {
            p = std::filesystem::exists(p / "tokenizer.json") ? p / "tokenizer.json" : p / "vocab.txt";
        }
        const std::string text = io::read_text(p);
        if (p.extension() == ".json") {
            const nlohmann::json j = nlohmann::json::parse(text, nullptr, false);
            KITE_REQUIRE(!j.is_discarded(), format_error, "wordpiece: '", p.string(), "' is not valid JSON");
            return from_json(j, p.string());
        }
        return from_vocab_text(text, opt, p.string());
    }

    /// From the text of a vocab.txt.
    static wordpiece_tokenizer from_vocab_text(std::string_view text, const wordpiece_options& opt = {},
                                               const std::string& source = "vocab.txt") {
        wordpiece_tokenizer t;
        t.opt_ = opt;
        t.source_ = source;
        std::size_t id = 0, i = 0;
        while (i < text.size()) {
            std::size_t e = text.find('\n', i);
            if (e == std::string_view::npos) e = text.size();
            std::string_view line = text.substr(i, e - i);
            // Rust's trim_end: trailing whitespace off (ASCII is what vocab files hold).
            while (!line.empty() && (line.back() == ' ' || line.back() == '\r' || line.back() == '\t')) line.remove_suffix(1);
            t.add_vocab(line, static_cast<std::int32_t>(id++));
            i = e + 1;
        }
        t.finish();
        return t;
    }

    /// From a parsed tokenizer.json (model WordPiece, normalizer BertNormalizer). A field of the
    /// wrong JSON type is a kite::config_error naming the source, like any other bad field.
    static wordpiece_tokenizer from_json(const nlohmann::json& j, const std::string& source = "tokenizer.json") {
        try {
            return from_json_fields(j, source);
        } catch (const nlohmann::json::exception& e) {
            kite::detail::raise<config_error>("wordpiece: ", source, ": malformed tokenizer.json: ", e.what());
        }
    }

private:
    /// Ids in tokenizer.json may leave holes, at most this many beyond the token count: a larger
    /// id names a table the file cannot fill, refused before it is allocated.
    static constexpr std::int64_t max_id_slack = 65536;

    /// from_json without the translation of nlohmann::json's own exceptions.
    static wordpiece_tokenizer from_json_fields(const nlohmann::json& j, const std::string& source) {
        wordpiece_tokenizer t;
        t.source_ = source;
        const auto fail = [&](const auto&... args) { kite::detail::raise<config_error>("wordpiece: ", source, ": ", args...); };
        if (!j.is_object() || !j.contains("model") || !j["model"].is_object()) fail("field 'model' is missing");
        const auto& m = j["model"];
        if (m.value("type", std::string()) != "WordPiece") fail("field 'model.type' is not \"WordPiece\"");
        wordpiece_options& o = t.opt_;
        o.special_tokens.clear();
        o.unk_token = m.value("unk_token", o.unk_token);
        o.continuing_subword_prefix = m.value("continuing_subword_prefix", o.continuing_subword_prefix);
        if (const auto w = m.find("max_input_chars_per_word"); w != m.end() && !w->is_null()) {
            // An integer only: a float such as 1e88 would not fit std::size_t (undefined to convert).
            if (!w->is_number_unsigned() || w->get<std::uint64_t>() == 0)
                fail("field 'model.max_input_chars_per_word' = ", w->dump(), "; expected a positive integer");
            o.max_input_chars_per_word = static_cast<std::size_t>(w->get<std::uint64_t>());
        }
        if (const auto n = j.find("normalizer"); n != j.end() && !n->is_null()) {
            if (n->value("type", std::string()) != "BertNormalizer") fail("field 'normalizer' is not a BertNormalizer");
            o.clean_text = n->value("clean_text", true);
            o.handle_chinese_chars = n->value("handle_chinese_chars", true);
            o.lowercase = n->value("lowercase", true);
            const auto sa = n->find("strip_accents");
            if (sa != n->end() && sa->is_boolean()) o.strip_accents = sa->get<bool>();
        } else {
            o.clean_text = o.handle_chinese_chars = o.lowercase = false;
            o.strip_accents = false;
        }
        if (const auto p = j.find("pre_tokenizer"); p != j.end() && !p->is_null() && p->value("type", std::string()) != "BertPreTokenizer")
            fail("field 'pre_tokenizer' is not a BertPreTokenizer");
        const auto v = m.find("vocab");
        if (v == m.end() || !v->is_object()) fail("field 'model.vocab' is missing");
        const std::int64_t id_limit = static_cast<std::int64_t>(v->size()) + max_id_slack;
        for (const auto& [tok, id] : v->items()) {
            if (!id.is_number_integer() || id.get<std::int64_t>() < 0 || id.get<std::int64_t>() > INT32_MAX)
                fail("field 'model.vocab' maps '", tok, "' to ", id.dump(), "; expected a non-negative id");
            if (id.get<std::int64_t>() >= id_limit)
                fail("field 'model.vocab' maps '", tok, "' to ", id.dump(), ", far beyond its ", v->size(),
                     " tokens; expected ids below ", id_limit);
            t.add_vocab(tok, id.get<std::int32_t>());
        }
        if (const auto at = j.find("added_tokens"); at != j.end() && at->is_array()) {
            for (const auto& e : *at) {
                const std::string content = e.value("content", std::string());
                if (e.value("normalized", false) || e.value("lstrip", false) || e.value("rstrip", false) ||
                    e.value("single_word", false))
                    fail("added token '", content, "' is normalized, stripped or single-word; kite's WordPiece matches raw specials only");
                o.special_tokens.push_back(content);
            }
        }
        // [CLS]/[SEP] from the post-processor when it names them.
        if (const auto pp = j.find("post_processor"); pp != j.end() && pp->is_object()) {
            if (pp->value("type", std::string()) == "BertProcessing") {
                // find(), not operator[]: on a const json, operator[] of a missing key is undefined.
                const auto token_of = [&](const char* k) {
                    const auto it = pp->find(k);
                    if (it == pp->end() || !it->is_array() || it->empty() || !(*it)[0].is_string())
                        fail("field 'post_processor.", k, "' is not [token, id]");
                    return (*it)[0].get<std::string>();
                };
                o.cls_token = token_of("cls");
                o.sep_token = token_of("sep");
            }
        }
        t.finish();
        return t;
    }

public:

    const wordpiece_options& options() const noexcept { return opt_; }
    /// One past the largest id.
    std::size_t vocab_size() const noexcept { return id_to_token_.size(); }
    std::int32_t cls_id() const noexcept { return cls_id_; }
    std::int32_t sep_id() const noexcept { return sep_id_; }
    std::int32_t unk_id() const noexcept { return unk_id_; }
    /// The [PAD] id (0 in BERT vocabularies), or -1 when the vocabulary has none.
    std::int32_t pad_id() const noexcept { return pad_id_; }
    std::optional<std::int32_t> token_to_id(std::string_view token) const {
        const auto it = vocab_.find(token);
        if (it == vocab_.end()) return std::nullopt;
        return it->second;
    }
    std::string_view id_to_token(std::int32_t id) const {
        KITE_REQUIRE(id >= 0 && static_cast<std::size_t>(id) < id_to_token_.size(), invalid_argument,
                     "wordpiece: token id ", id, " is outside [0, ", id_to_token_.size(), ")");
        return id_to_token_[static_cast<std::size_t>(id)];
    }

    /// [CLS] pieces [SEP] of `text`; max_length > 0 truncates the pieces so that the whole
    /// sequence has at most max_length ids (>= 2 with the specials).
    std::vector<std::int32_t> encode(std::string_view text, std::size_t max_length = 0,
                                     bool add_special_tokens = true) const {
        std::vector<std::int32_t> out;
        encode_into(text, out, max_length, add_special_tokens);
        return out;
    }

    /// encode() into `out` (cleared first), reusing its capacity.
    void encode_into(std::string_view text, std::vector<std::int32_t>& out, std::size_t max_length = 0,
                     bool add_special_tokens = true) const {
        const std::size_t specials = add_special_tokens ? 2 : 0;
        KITE_REQUIRE(max_length == 0 || max_length >= specials, invalid_argument, "wordpiece::encode: max_length = ",
                     max_length, "; expected 0 (no truncation) or >= ", specials);
        out.clear();
        if (add_special_tokens) out.push_back(cls_id_);
        tokenize(text, out);
        if (max_length) {
            const std::size_t limit = max_length - (add_special_tokens ? 1 : 0);
            if (out.size() > limit) out.resize(limit);
        }
        if (add_special_tokens) out.push_back(sep_id_);
    }

    /// Appends the word-piece ids of `text` to `out` (no specials, no truncation).
    void tokenize(std::string_view text, std::vector<std::int32_t>& out) const {
        utf8::require_valid(text, 0, "wordpiece::encode");
        word_buffers w;
        specials_.split(text, false, [&](std::string_view seg, std::int32_t id) {
            if (id >= 0) out.push_back(id);
            else tokenize_segment(seg, w, out);
        });
    }

    /// The normalized, pre-tokenized words of `text` (for tests and inspection), specials left
    /// in place.
    std::vector<std::string> words(std::string_view text) const {
        utf8::require_valid(text, 0, "wordpiece::words");
        std::vector<std::string> result;
        word_buffers w;
        w.sink = &result;
        std::vector<std::int32_t> ignored;
        specials_.split(text, false, [&](std::string_view seg, std::int32_t id) {
            if (id >= 0) result.emplace_back(seg);
            else tokenize_segment(seg, w, ignored);
        });
        return result;
    }

private:
    wordpiece_tokenizer() = default;

    struct word_buffers {
        std::vector<char32_t> cps;         // normalized characters of the current word
        std::string utf8;                  // the same word in UTF-8
        std::vector<std::uint32_t> starts; // [chars + 1] byte offset of each character in utf8
        std::vector<std::string>* sink = nullptr;  // words() collects here instead of tokenizing
    };

    void add_vocab(std::string_view tok, std::int32_t id) {
        vocab_.insert_or_assign(std::string(tok), id);
        if (static_cast<std::size_t>(id) >= id_to_token_.size()) id_to_token_.resize(static_cast<std::size_t>(id) + 1);
        id_to_token_[static_cast<std::size_t>(id)] = std::string(tok);
    }

    void finish() {
        const auto need = [&](const std::string& tok, const char* what) {
            const auto it = vocab_.find(tok);
            KITE_REQUIRE(it != vocab_.end(), format_error, "wordpiece: ", source_, ": the vocabulary lacks the ", what,
                         " token '", tok, "'");
            return it->second;
        };
        unk_id_ = need(opt_.unk_token, "unknown");
        cls_id_ = need(opt_.cls_token, "CLS");
        sep_id_ = need(opt_.sep_token, "SEP");
        if (const auto it = vocab_.find(opt_.pad_token); it != vocab_.end()) pad_id_ = it->second;
        strip_ = opt_.strip_accents.value_or(opt_.lowercase);
        const std::string& pre = opt_.continuing_subword_prefix;
        for (const auto& [tok, id] : vocab_) {
            max_piece_bytes_ = std::max(max_piece_bytes_, tok.size());
            if (!pre.empty() && tok.size() >= pre.size() && tok.compare(0, pre.size(), pre) == 0)
                continuation_.emplace(tok.substr(pre.size()), id);
        }
        for (const auto& s : opt_.special_tokens) {
            if (s.empty()) continue;
            if (const auto it = vocab_.find(s); it != vocab_.end()) specials_.add({s, it->second, true, false, false, false});
        }
    }

    // ---- normalization and pre-tokenization, one character at a time -----------------------
    void tokenize_segment(std::string_view s, word_buffers& w, std::vector<std::int32_t>& out) const {
        w.cps.clear();
        std::size_t i = 0;
        while (i < s.size()) {
            const auto b = static_cast<unsigned char>(s[i]);
            if (b < 0x80) {
                ++i;
                switch (opt_.clean_text ? detail::bert_ascii[b] : ascii_unclean(b)) {
                    case detail::bert_cls::drop: break;
                    case detail::bert_cls::space: flush(w, out); break;
                    case detail::bert_cls::punct:
                        flush(w, out);
                        w.cps.push_back(b);
                        flush(w, out);
                        break;
                    default: w.cps.push_back(opt_.lowercase && b >= 'A' && b <= 'Z' ? b + 32 : b); break;
                }
                continue;
            }
            const char32_t c = utf8::decode(s, i);
            normalize_char(c, w, out);
        }
        flush(w, out);
    }

    static detail::bert_cls ascii_unclean(unsigned char b) noexcept {
        // Without clean_text nothing is dropped; whitespace still splits (Rust is_whitespace).
        const auto k = detail::bert_ascii[b];
        if (k == detail::bert_cls::drop) return (b >= 0x09 && b <= 0x0D) ? detail::bert_cls::space : detail::bert_cls::word;
        return k;
    }

    // Cleaning and the CJK split look at the character as written; accents are stripped from
    // its canonical decomposition; lower-casing and the punctuation test apply to each part.
    void normalize_char(char32_t c, word_buffers& w, std::vector<std::int32_t>& out) const {
        const detail::bert_char p = detail::bert_props(c);
        if (p.kind == detail::bert_override::drop && opt_.clean_text) return;
        if (p.kind == detail::bert_override::space || (p.kind == detail::bert_override::drop && detail::rust_whitespace(c))) {
            flush(w, out);
            return;
        }
        const bool cjk = opt_.handle_chinese_chars && detail::is_bert_cjk(c);
        if (cjk) flush(w, out);
        utf8proc_int32_t dec[8];
        utf8proc_ssize_t n = 0;
        if (strip_ && !p.listed) {
            int boundclass = 0;
            n = utf8proc_decompose_char(static_cast<utf8proc_int32_t>(c), dec, 8, UTF8PROC_DECOMPOSE, &boundclass);
        }
        if (n >= 1 && n <= 8 && !(n == 1 && static_cast<char32_t>(dec[0]) == c)) {
            for (utf8proc_ssize_t k = 0; k < n; ++k) {
                const char32_t d = static_cast<char32_t>(dec[k]);
                push_part(d, d < 0x80 ? ascii_props(d) : detail::bert_props(d), w, out);
            }
        } else {
            push_part(c, p, w, out);
        }
        if (cjk) flush(w, out);
    }

    static detail::bert_char ascii_props(char32_t d) noexcept {
        const auto k = detail::bert_ascii[d];
        const char32_t low = d >= 'A' && d <= 'Z' ? d + 32 : d;
        switch (k) {
            case detail::bert_cls::drop: return {detail::bert_override::drop, d};
            case detail::bert_cls::space: return {detail::bert_override::space, d};
            case detail::bert_cls::punct: return {detail::bert_override::punct, d};
            default: return {detail::bert_override::word, low};
        }
    }

    // One character after decomposition: stripped when it is a nonspacing mark, else
    // lower-cased, then a split (whitespace), a word of its own (punctuation) or part of a word.
    void push_part(char32_t d, const detail::bert_char& p, word_buffers& w, std::vector<std::int32_t>& out) const {
        if (p.kind == detail::bert_override::mark && strip_) return;
        if (opt_.lowercase && d == 0x130) {  // İ: Rust's full lower-case mapping is i + U+0307
            push_char('i', w);
            push_char(0x307, w);
            return;
        }
        const char32_t c = opt_.lowercase ? p.lower : d;
        if (p.kind == detail::bert_override::space) {
            flush(w, out);
        } else if (p.kind == detail::bert_override::punct) {
            flush(w, out);
            w.cps.push_back(c);
            flush(w, out);
        } else {
            push_char(c, w);
        }
    }

    // Appends to the word, keeping the marks of a decomposition in canonical order: a mark moves
    // before preceding marks of a higher combining class (only NFD reorders).
    void push_char(char32_t c, word_buffers& w) const {
        std::size_t pos = w.cps.size();
        if (strip_ && c >= 0x300) {
            const int ccc = utf8proc_get_property(static_cast<utf8proc_int32_t>(c))->combining_class;
            if (ccc != 0) {
                while (pos > 0 &&
                       utf8proc_get_property(static_cast<utf8proc_int32_t>(w.cps[pos - 1]))->combining_class > ccc)
                    --pos;
            }
        }
        w.cps.insert(w.cps.begin() + static_cast<std::ptrdiff_t>(pos), c);
    }

    // ---- WordPiece ------------------------------------------------------------------------
    void flush(word_buffers& w, std::vector<std::int32_t>& out) const {
        if (w.cps.empty()) return;
        w.utf8.clear();
        w.starts.clear();
        for (const char32_t c : w.cps) {
            w.starts.push_back(static_cast<std::uint32_t>(w.utf8.size()));
            utf8::append(w.utf8, c);
        }
        w.starts.push_back(static_cast<std::uint32_t>(w.utf8.size()));
        const std::size_t chars = w.cps.size();
        w.cps.clear();
        if (w.sink) {
            w.sink->push_back(w.utf8);
            return;
        }
        if (chars > opt_.max_input_chars_per_word) {
            out.push_back(unk_id_);
            return;
        }
        const std::size_t mark = out.size();
        const std::string_view word = w.utf8;
        std::size_t start = 0;  // character index
        while (start < chars) {
            const auto& map = start == 0 ? vocab_ : continuation_;
            // Longest first; pieces longer than the longest vocabulary entry cannot match.
            std::size_t end = chars;
            while (end > start && w.starts[end] - w.starts[start] > max_piece_bytes_) --end;
            std::int32_t found = -1;
            for (; end > start; --end) {
                const auto it = map.find(word.substr(w.starts[start], w.starts[end] - w.starts[start]));
                if (it != map.end()) {
                    found = it->second;
                    break;
                }
            }
            if (found < 0) {
                out.resize(mark);
                out.push_back(unk_id_);
                return;
            }
            out.push_back(found);
            start = end;
        }
    }

    wordpiece_options opt_;
    std::string source_;
    string_map<std::int32_t> vocab_;
    string_map<std::int32_t> continuation_;  // "##xyz" entries keyed by "xyz"
    std::vector<std::string> id_to_token_;
    detail::added_vocab specials_;
    std::size_t max_piece_bytes_ = 0;
    std::int32_t unk_id_ = -1, cls_id_ = -1, sep_id_ = -1, pad_id_ = -1;
    bool strip_ = true;
};

}  // namespace kite::text
