#pragma once
/// @file kite/text/sentencepiece_bpe.hpp
/// SentencePiece-style BPE as llama.cpp runs it for GGUF files with tokenizer.ggml.model =
/// "llama" (Llama 1/2, Mistral v0.1, Phi-3, ...): pieces with scores, spaces written as U+2581
/// ("▁"), byte fallback to <0xHH> pieces, and control / user-defined pieces matched in the raw
/// text.
///
///   kite::text::spm_vocabulary v{.tokens = ..., .scores = ..., .types = ...};
///   const auto tok = kite::text::sentencepiece_bpe::from_vocabulary(std::move(v));
///   std::vector<std::int32_t> ids = tok.encode("Hello world");   // no BOS: the caller adds it
///   std::string text = tok.decode(ids);
///
/// Encoding (llama.cpp's llm_tokenizer_spm): the text is cut at the control, unknown and
/// user-defined pieces (control and unknown only when parse_special); each remaining fragment
/// gets a leading space when it starts the text or follows such a piece (add_space_prefix), its
/// spaces become "▁", it is split into UTF-8 characters, and the adjacent pair whose joined text
/// is a piece with the highest score merges first (the leftmost on ties), until no pair joins
/// into a piece. A character that never became part of a piece is emitted as its byte pieces.
/// This differs from llama2c_tokenizer (run.c), which replaces unknown characters by bytes
/// before merging. Merges run on a heap of candidate pairs (detail/pair_merge.hpp): O(n log n).
///
/// Decoding: "▁" becomes a space, <0xHH> its byte, control / unknown / user-defined pieces
/// their text (control and unknown dropped with skip_special), unused pieces nothing; with
/// add_space_prefix one leading space of the result is removed, as the Hugging Face decoder
/// (Strip(1)) does. Invalid UTF-8 in the result becomes U+FFFD.
///
/// Input text must be valid UTF-8 (kite::unicode_error otherwise). Needs only the standard
/// library; encode and decode are const and safe to call from many threads.

#include <array>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "kite/core/error.hpp"
#include "kite/core/string_map.hpp"
#include "kite/text/detail/added_vocab.hpp"
#include "kite/text/detail/pair_merge.hpp"
#include "kite/text/token_type.hpp"
#include "kite/text/utf8.hpp"

namespace kite::text {

/// A SentencePiece vocabulary as GGUF stores it.
struct spm_vocabulary {
    std::vector<std::string> tokens;  ///< id -> piece ("▁" for a space, "<0xHH>" for byte pieces)
    std::vector<float> scores;        ///< id -> score (higher merges first); empty: all 0
    std::vector<token_type> types;    ///< id -> type; empty: normal, and "<0xHH>" pieces byte
    std::int32_t unk_id = -1;         ///< for a byte without a <0xHH> piece (none: such a vocabulary is refused)
    bool add_space_prefix = true;     ///< a space before the text and after each special piece
};

/// SentencePiece-style BPE (see the file comment).
class sentencepiece_bpe {
public:
    /// Builds the tokenizer; kite::config_error naming `source` when sizes disagree, a type is
    /// out of range, or a byte has neither a <0xHH> piece nor an unknown token.
    static sentencepiece_bpe from_vocabulary(spm_vocabulary v, const std::string& source = "spm vocabulary") {
        sentencepiece_bpe t;
        t.load(std::move(v), source);
        return t;
    }

    std::size_t vocab_size() const noexcept { return pieces_.size(); }
    bool add_space_prefix() const noexcept { return add_space_prefix_; }
    /// The stored piece of `id` (kite::invalid_argument when out of range).
    std::string_view id_to_token(std::int32_t id) const {
        check_id(id, "id_to_token");
        return pieces_[static_cast<std::size_t>(id)];
    }
    std::optional<std::int32_t> token_to_id(std::string_view piece) const {
        const auto it = lookup_.find(piece);
        if (it == lookup_.end()) return std::nullopt;
        return it->second;
    }
    float score(std::int32_t id) const {
        check_id(id, "score");
        return scores_[static_cast<std::size_t>(id)];
    }
    token_type type(std::int32_t id) const {
        check_id(id, "type");
        return types_[static_cast<std::size_t>(id)];
    }
    /// Control and unknown pieces (what decode's skip_special drops).
    bool is_special(std::int32_t id) const {
        const token_type t = type(id);
        return t == token_type::control || t == token_type::unknown;
    }

    /// Token ids of `text` (no BOS / EOS). With parse_special = false the text of control and
    /// unknown pieces is plain text; user-defined pieces are matched either way (as llama.cpp).
    std::vector<std::int32_t> encode(std::string_view text, bool parse_special = true) const {
        std::vector<std::int32_t> out;
        append_encoded(text, out, parse_special);
        return out;
    }

    /// encode() appended to `out`.
    void append_encoded(std::string_view text, std::vector<std::int32_t>& out, bool parse_special = true) const {
        utf8::require_valid(text, 0, "sentencepiece_bpe::encode");
        if (text.empty()) return;
        workspace ws;
        bool prev_special = true;  // the text's start counts as following a special piece
        added_.split(
            text, false,
            [&](std::string_view seg, std::int32_t id) {
                if (id >= 0) {
                    out.push_back(id);
                    prev_special = true;
                    return;
                }
                if (seg.empty()) return;
                encode_fragment(seg, add_space_prefix_ && prev_special, ws, out);
                prev_special = false;
            },
            parse_special);
    }

    /// The raw bytes `id` stands for (see the file comment); the view lives as long as the
    /// tokenizer. For streaming, feed these to utf8::stream_decoder.
    std::string_view token_bytes(std::int32_t id) const {
        check_id(id, "token_bytes");
        return bytes_[static_cast<std::size_t>(id)];
    }

    /// The text of `ids`: pieces' bytes joined, one leading space removed (add_space_prefix),
    /// invalid UTF-8 replaced by U+FFFD; control and unknown pieces dropped when skip_special.
    std::string decode(std::span<const std::int32_t> ids, bool skip_special = false) const {
        std::string s;
        for (const std::int32_t id : ids) {
            check_id(id, "decode");
            if (skip_special && is_special(id)) continue;
            s += bytes_[static_cast<std::size_t>(id)];
        }
        if (add_space_prefix_ && !s.empty() && s.front() == ' ') s.erase(0, 1);
        return utf8::lossy(s);
    }

private:
    sentencepiece_bpe() = default;

    struct workspace {
        std::string escaped;
        std::vector<std::int32_t> sym;
        std::vector<std::pair<std::uint32_t, std::uint32_t>> chars;  // [char] offset, length in `escaped`
        std::string buf;
        detail::merge_workspace merge;
    };

    template <class... Args>
    [[noreturn]] static void fail(const std::string& source, const Args&... args) {
        ::kite::detail::raise<config_error>("sentencepiece_bpe: ", source, ": ", args...);
    }


    void load(spm_vocabulary v, const std::string& source) {
        const std::size_t n = v.tokens.size();
        if (n == 0) fail(source, "the vocabulary is empty");
        if (n > static_cast<std::size_t>(INT32_MAX) / 2) fail(source, n, " tokens is too many");
        if (!v.scores.empty() && v.scores.size() != n)
            fail(source, v.scores.size(), " scores for ", n, " tokens; expected one per token");
        if (!v.types.empty() && v.types.size() != n)
            fail(source, v.types.size(), " token types for ", n, " tokens; expected one per token");
        pieces_ = std::move(v.tokens);
        scores_ = v.scores.empty() ? std::vector<float>(n, 0.0f) : std::move(v.scores);
        if (v.types.empty()) {
            types_.assign(n, token_type::normal);
            for (std::size_t i = 0; i < n; ++i)
                if (byte_token_value(pieces_[i]) >= 0) types_[i] = token_type::byte;
        } else {
            types_ = std::move(v.types);
        }
        add_space_prefix_ = v.add_space_prefix;
        lookup_.reserve(n);
        bytes_.resize(n);
        byte_id_.fill(-1);
        for (std::size_t i = 0; i < n; ++i) {
            const auto id = static_cast<std::int32_t>(i);
            const auto t = static_cast<std::int32_t>(types_[i]);
            if (t < 0 || t > 6) fail(source, "token ", i, " has type ", t, "; expected 0..6");
            lookup_.insert_or_assign(pieces_[i], id);  // the later id wins, as llama.cpp's map
            const std::string& p = pieces_[i];
            switch (types_[i]) {
                case token_type::control:
                case token_type::unknown:
                case token_type::user_defined:
                    bytes_[i] = p;
                    if (!p.empty())
                        added_.add({p, id, types_[i] != token_type::user_defined, false, false, false});
                    break;
                case token_type::byte: {
                    const int b = byte_token_value(p);
                    if (b < 0) fail(source, "token ", i, " '", p, "' has type byte but is not <0xHH>");
                    bytes_[i] = std::string(1, static_cast<char>(b));
                    if (byte_id_[static_cast<std::size_t>(b)] < 0) byte_id_[static_cast<std::size_t>(b)] = id;
                    break;
                }
                case token_type::unused: break;
                default: bytes_[i] = unescape(p); break;
            }
        }
        if (v.unk_id >= 0) {
            if (static_cast<std::size_t>(v.unk_id) >= n) fail(source, "unknown-token id ", v.unk_id, " is outside the vocabulary");
            unk_id_ = v.unk_id;
        }
        // A byte without a <0xHH> piece falls back to the piece that is that byte (as llama.cpp),
        // else to the unknown token.
        for (int b = 0; b < 256; ++b) {
            auto& slot = byte_id_[static_cast<std::size_t>(b)];
            if (slot >= 0) continue;
            if (const auto it = lookup_.find(std::string(1, static_cast<char>(b))); it != lookup_.end()) slot = it->second;
            else if (unk_id_ >= 0) slot = unk_id_;
            else fail(source, "byte 0x", "0123456789ABCDEF"[b >> 4], "0123456789ABCDEF"[b & 15],
                      " has no <0xHH> piece and there is no unknown token to stand for it");
        }
    }

    static std::string unescape(std::string_view p) {
        std::string r;
        r.reserve(p.size());
        for (std::size_t i = 0; i < p.size();) {
            if (p.substr(i, 3) == "\xE2\x96\x81") {
                r.push_back(' ');
                i += 3;
            } else {
                r.push_back(p[i++]);
            }
        }
        return r;
    }

    void check_id(std::int32_t id, const char* who) const {
        KITE_REQUIRE(id >= 0 && static_cast<std::size_t>(id) < pieces_.size(), invalid_argument, "sentencepiece_bpe::", who,
                     ": token id ", id, " is outside [0, ", pieces_.size(), ")");
    }

    std::string_view symbol_text(const workspace& ws, std::int32_t s) const {
        const auto n = static_cast<std::int32_t>(pieces_.size());
        if (s < n) return pieces_[static_cast<std::size_t>(s)];
        const auto& c = ws.chars[static_cast<std::size_t>(s - n)];
        return std::string_view(ws.escaped).substr(c.first, c.second);
    }

    void encode_fragment(std::string_view frag, bool space_prefix, workspace& ws, std::vector<std::int32_t>& out) const {
        auto& e = ws.escaped;
        e.clear();
        if (space_prefix) e += "\xE2\x96\x81";
        for (const char c : frag) {
            if (c == ' ') e += "\xE2\x96\x81";
            else e.push_back(c);
        }
        const auto n = static_cast<std::int32_t>(pieces_.size());
        auto& sym = ws.sym;
        sym.clear();
        ws.chars.clear();
        std::size_t i = 0;
        while (i < e.size()) {
            std::size_t j = i;
            utf8::decode(e, j);
            const std::string_view ch = std::string_view(e).substr(i, j - i);
            if (const auto it = lookup_.find(ch); it != lookup_.end()) {
                sym.push_back(it->second);
            } else {
                sym.push_back(n + static_cast<std::int32_t>(ws.chars.size()));
                ws.chars.emplace_back(static_cast<std::uint32_t>(i), static_cast<std::uint32_t>(j - i));
            }
            i = j;
        }
        detail::merge_pairs(sym, ws.merge, [&](std::int32_t a, std::int32_t b) -> std::optional<detail::merge_rule> {
            ws.buf.assign(symbol_text(ws, a));
            ws.buf += symbol_text(ws, b);
            const auto it = lookup_.find(std::string_view(ws.buf));
            if (it == lookup_.end()) return std::nullopt;
            return detail::merge_rule{detail::descending_priority(scores_[static_cast<std::size_t>(it->second)]),
                                      it->second};
        });
        for (const std::int32_t s : sym) {
            if (s < n) {
                out.push_back(s);
                continue;
            }
            for (const char c : symbol_text(ws, s)) out.push_back(byte_id_[static_cast<unsigned char>(c)]);
        }
    }

    std::vector<std::string> pieces_;
    std::vector<float> scores_;
    std::vector<token_type> types_;
    std::vector<std::string> bytes_;  // [vocab] decoded bytes
    string_map<std::int32_t> lookup_;
    detail::added_vocab added_;
    std::array<std::int32_t, 256> byte_id_{};
    std::int32_t unk_id_ = -1;
    bool add_space_prefix_ = true;
};

}  // namespace kite::text
