#pragma once
/// @file kite/text/llama2c_tokenizer.hpp
/// The tokenizer of Karpathy's llama2.c (`tokenizer.bin`): SentencePiece-style BPE driven by
/// merge scores, with byte fallback. Needs only the standard library.
///
/// File (little-endian): int32 max_token_length, then per token in id order: float32 score,
/// int32 byte length n, n bytes of the piece. The count is not stored (it is the model's
/// vocab_size); ids 0, 1, 2 are <unk>, BOS, EOS and ids 3..258 the byte pieces <0x00>..<0xFF>.
///
/// encode() gives exactly the tokens of run.c's encode(): BOS, the dummy-prefix token " " (for
/// non-empty text), one token per UTF-8 character or byte-fallback tokens, then repeated merges
/// of the adjacent pair with the best score (leftmost on ties). run.c rescans all pairs per
/// merge (quadratic); here a heap of candidate pairs gives the same merges in O(n log n).
/// encode_reference() is run.c's loop, kept as the oracle.
///
///   kite::text::llama2c_tokenizer tok("tok512.bin");
///   auto ids = tok.encode("Echoes of vectors", /*bos=*/true);
///   std::string text = tok.decode(ids);     // "Echoes of vectors"
///
/// Any byte string is accepted (invalid UTF-8 falls back to byte tokens, as in run.c).
/// encode and decode are const and safe to call from many threads.

#include <array>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "kite/core/error.hpp"
#include "kite/core/io.hpp"
#include "kite/core/string_map.hpp"
#include "kite/text/detail/pair_merge.hpp"
#include "kite/text/token_type.hpp"

namespace kite::text {

/// llama2.c's tokenizer.bin: encode (BPE by merge score, byte fallback) and decode.
class llama2c_tokenizer {
public:
    static constexpr std::int32_t unk_id = 0;
    static constexpr std::int32_t bos_id = 1;
    static constexpr std::int32_t eos_id = 2;
    static constexpr std::int32_t first_byte_id = 3;  ///< <0x00>; <0xFF> is first_byte_id + 255

    /// Reads `path`. With vocab_size = 0 the tokens are counted to the end of the file; else
    /// exactly vocab_size tokens must fill the file. Truncation, trailing bytes, a negative length
    /// or missing byte pieces are kite::format_error naming the file and the token id.
    explicit llama2c_tokenizer(const std::filesystem::path& path, std::size_t vocab_size = 0) {
        const io::mapped_file f(path);
        const std::string src = "llama2.c tokenizer '" + f.path() + "'";
        io::byte_reader r(f.bytes(), src);
        const std::int32_t max_len = r.get<std::int32_t>("max_token_length");
        KITE_REQUIRE(max_len > 0, format_error, src, ": max_token_length = ", max_len, "; expected > 0");
        max_token_length_ = static_cast<std::size_t>(max_len);
        while (vocab_size == 0 ? r.remaining() > 0 : pieces_.size() < vocab_size) {
            const std::size_t id = pieces_.size();
            const std::string what = "token " + std::to_string(id);
            const float score = r.get<float>(what);
            const std::int32_t n = r.get<std::int32_t>(what);
            KITE_REQUIRE(n >= 0 && n <= max_len, format_error, src, ": token ", id, " has length ", n,
                         "; expected 0..max_token_length = ", max_len);
            const auto bytes = r.take(static_cast<std::size_t>(n), what);
            pieces_.emplace_back(reinterpret_cast<const char*>(bytes.data()), bytes.size());
            scores_.push_back(score);
        }
        KITE_REQUIRE(r.remaining() == 0, format_error, src, ": ", r.remaining(), " trailing bytes after ",
                     pieces_.size(), " tokens; expected the file to end");
        KITE_REQUIRE(pieces_.size() >= 259, format_error, src, ": ", pieces_.size(),
                     " tokens; expected at least 259 (<unk>, BOS, EOS and 256 byte pieces)");
        byte_of_.assign(pieces_.size(), -1);
        for (int b = 0; b < 256; ++b) {
            const std::size_t id = static_cast<std::size_t>(first_byte_id + b);
            KITE_REQUIRE(byte_token_value(pieces_[id]) == b, format_error, src, ": token ", id, " is '", pieces_[id],
                         "'; expected the byte piece for 0x", hex2(b));
        }
        for (std::size_t id = 0; id < pieces_.size(); ++id) {
            byte_of_[id] = static_cast<std::int16_t>(byte_token_value(pieces_[id]));
            lookup_.emplace(pieces_[id], static_cast<std::int32_t>(id));  // first id wins on duplicates
        }
        const auto space = lookup_.find(std::string_view(" "));
        space_id_ = space != lookup_.end() ? space->second : first_byte_id + ' ';
    }

    std::size_t vocab_size() const noexcept { return pieces_.size(); }
    std::size_t max_token_length() const noexcept { return max_token_length_; }
    /// The stored piece of `id` (invalid_argument when out of range).
    std::string_view piece(std::int32_t id) const {
        check_id(id, "piece");
        return pieces_[static_cast<std::size_t>(id)];
    }
    float score(std::int32_t id) const {
        check_id(id, "score");
        return scores_[static_cast<std::size_t>(id)];
    }
    /// The id of a piece, if the vocabulary has it.
    std::optional<std::int32_t> find(std::string_view piece) const {
        const auto it = lookup_.find(piece);
        if (it == lookup_.end()) return std::nullopt;
        return it->second;
    }

    /// Token ids of `text`, as run.c's encode(tokenizer, text, bos, eos).
    std::vector<std::int32_t> encode(std::string_view text, bool bos = true, bool eos = false) const {
        std::vector<std::int32_t> out;
        encode_into(text, bos, eos, out);
        return out;
    }

    /// encode() into `out` (cleared first), reusing its capacity.
    void encode_into(std::string_view text, bool bos, bool eos, std::vector<std::int32_t>& out) const {
        out.clear();
        if (bos) out.push_back(bos_id);
        initial_tokens(text, out);
        merge(out);
        if (eos) out.push_back(eos_id);
    }

    /// The oracle: run.c's quadratic merge loop, for tests.
    std::vector<std::int32_t> encode_reference(std::string_view text, bool bos = true, bool eos = false) const {
        std::vector<std::int32_t> t;
        if (bos) t.push_back(bos_id);
        initial_tokens(text, t);
        std::string buf;
        for (;;) {
            float best_score = -1e10f;
            std::int32_t best_id = -1;
            std::size_t best_idx = 0;
            for (std::size_t i = 0; i + 1 < t.size(); ++i) {
                buf.assign(pieces_[static_cast<std::size_t>(t[i])]);
                buf += pieces_[static_cast<std::size_t>(t[i + 1])];
                const auto it = lookup_.find(std::string_view(buf));
                if (it != lookup_.end() && scores_[static_cast<std::size_t>(it->second)] > best_score) {
                    best_score = scores_[static_cast<std::size_t>(it->second)];
                    best_id = it->second;
                    best_idx = i;
                }
            }
            if (best_id < 0) break;
            t[best_idx] = best_id;
            t.erase(t.begin() + static_cast<std::ptrdiff_t>(best_idx) + 1);
        }
        if (eos) t.push_back(eos_id);
        return t;
    }

    /// The text of `id` when it follows `prev`, as run.c's decode(): after BOS the leading space
    /// is dropped; a byte piece <0xHH> is that raw byte. The view lives as long as the tokenizer.
    std::string_view decode_piece(std::int32_t prev, std::int32_t id) const {
        check_id(id, "decode_piece");
        const std::size_t i = static_cast<std::size_t>(id);
        if (byte_of_[i] >= 0) return std::string_view(&byte_chars()[static_cast<std::size_t>(byte_of_[i])], 1);
        std::string_view p = pieces_[i];
        if (prev == bos_id && !p.empty() && p.front() == ' ') p.remove_prefix(1);
        return p;
    }

    /// The bytes of a token sequence. BOS and EOS are control tokens and print nothing (BOS
    /// still drops the leading space of the next piece), so decode(encode(s)) == s.
    std::string decode(std::span<const std::int32_t> ids) const {
        std::string out;
        std::int32_t prev = -1;
        for (const std::int32_t id : ids) {
            if (id != bos_id && id != eos_id) out += decode_piece(prev, id);
            else check_id(id, "decode");
            prev = id;
        }
        return out;
    }

private:
    static char hex_digit(int v) noexcept { return "0123456789ABCDEF"[v & 15]; }
    static std::string hex2(int b) { return {hex_digit(b >> 4), hex_digit(b)}; }
    static const char* byte_chars() noexcept {
        static constexpr auto table = [] {
            std::array<char, 256> t{};
            for (int i = 0; i < 256; ++i) t[static_cast<std::size_t>(i)] = static_cast<char>(i);
            return t;
        }();
        return table.data();
    }

    void check_id(std::int32_t id, const char* who) const {
        KITE_REQUIRE(id >= 0 && static_cast<std::size_t>(id) < pieces_.size(), invalid_argument,
                     "llama2c_tokenizer::", who, ": token id ", id, " is outside [0, ", pieces_.size(), ")");
    }

    // The dummy prefix, then per UTF-8 character (lead byte + up to 3 continuation bytes, cut
    // exactly where run.c cuts) its piece or its byte tokens.
    void initial_tokens(std::string_view text, std::vector<std::int32_t>& out) const {
        if (text.empty()) return;
        out.push_back(space_id_);
        const auto cont = [](char c) { return (static_cast<unsigned char>(c) & 0xC0) == 0x80; };
        std::size_t i = 0;
        while (i < text.size()) {
            std::size_t len = 1;
            while (len < 4 && i + len < text.size() && cont(text[i + len])) ++len;
            const std::string_view ch = text.substr(i, len);
            const auto it = lookup_.find(ch);
            if (it != lookup_.end()) {
                out.push_back(it->second);
            } else {
                for (const char c : ch) out.push_back(first_byte_id + static_cast<unsigned char>(c));
            }
            i += len;
        }
    }

    // Best score first, leftmost on ties; pairs scoring <= -1e10 never merge (run.c's start value).
    void merge(std::vector<std::int32_t>& t) const {
        detail::merge_workspace ws;
        std::string buf;
        detail::merge_pairs(t, ws, [&](std::int32_t a, std::int32_t b) -> std::optional<detail::merge_rule> {
            buf.assign(pieces_[static_cast<std::size_t>(a)]);
            buf += pieces_[static_cast<std::size_t>(b)];
            const auto it = lookup_.find(std::string_view(buf));
            if (it == lookup_.end()) return std::nullopt;
            const float score = scores_[static_cast<std::size_t>(it->second)];
            if (!(score > -1e10f)) return std::nullopt;
            return detail::merge_rule{detail::descending_priority(score), it->second};
        });
    }

    std::vector<std::string> pieces_;      // [vocab]
    std::vector<float> scores_;            // [vocab]
    std::vector<std::int16_t> byte_of_;    // [vocab] byte value of <0xHH> pieces, else -1
    string_map<std::int32_t> lookup_;
    std::size_t max_token_length_ = 0;
    std::int32_t space_id_ = 0;
};

}  // namespace kite::text
