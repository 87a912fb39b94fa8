#pragma once
/// @file kite/model/formats/llama2c.hpp
/// Reader of Karpathy's llama2.c checkpoints in the legacy (version 0) format: the format of the
/// aidreams260K model kite tests against.
///
/// Layout (little-endian): 7 x int32 header (dim, hidden_dim, n_layers, n_heads, n_kv_heads,
/// vocab_size, seq_len), then float32 arrays, each matrix [out_features][in_features]:
///   token_embedding [vocab][dim]      rms_att   [layer][dim]
///   wq [layer][dim][dim]              wk, wv    [layer][kv_dim][dim]
///   wo [layer][dim][dim]              rms_ffn   [layer][dim]
///   w1, w3 [layer][hidden][dim]       w2        [layer][dim][hidden]
///   rms_final [dim]                   freq_cis_real, freq_cis_imag [seq_len][head_size / 2]
///   classifier [vocab][dim]           only when vocab_size in the header is negative
/// The file size must match these sizes exactly; anything else is a kite::format_error.
/// All weights are zero-copy views into the memory-mapped file.
///
/// The model: Llama 2 (RMSNorm with eps 1e-5, SwiGLU, RoPE theta 10000 on interleaved pairs
/// (2i, 2i+1), MHA or GQA), see to_model_config().

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <span>
#include <string>

#include "kite/core/config.hpp"
#include "kite/core/error.hpp"
#include "kite/core/io.hpp"
#include "kite/core/matrix.hpp"
#include "kite/model/config.hpp"

namespace kite::model {

/// The header of a llama2.c checkpoint.
struct llama2c_config {
    index_t dim = 0;
    index_t hidden_dim = 0;
    index_t n_layers = 0;
    index_t n_heads = 0;
    index_t n_kv_heads = 0;
    index_t vocab_size = 0;          ///< absolute value of the header field
    index_t seq_len = 0;
    bool shared_classifier = true;   ///< header vocab_size > 0: logits use the token embedding

    index_t head_size() const noexcept { return dim / n_heads; }
    index_t kv_dim() const noexcept { return dim * n_kv_heads / n_heads; }
};

/// A memory-mapped llama2.c version-0 checkpoint. Move-only; views live as long as it does.
class llama2c_checkpoint {
public:
    /// Maps and validates `path`.
    explicit llama2c_checkpoint(const std::filesystem::path& path) : file_(path) { parse(); }

    const llama2c_config& config() const noexcept { return cfg_; }
    const std::string& path() const noexcept { return file_.path(); }

    /// [vocab][dim]
    matrix_view<const float> token_embedding() const noexcept { return mat(off_.emb, cfg_.vocab_size, cfg_.dim); }
    /// [dim]
    std::span<const float> rms_att(index_t layer) const noexcept { return vec(off_.rms_att + layer * cfg_.dim, cfg_.dim); }
    /// [dim][dim]
    matrix_view<const float> wq(index_t layer) const noexcept { return mat(off_.wq + layer * cfg_.dim * cfg_.dim, cfg_.dim, cfg_.dim); }
    /// [kv_dim][dim]
    matrix_view<const float> wk(index_t layer) const noexcept { return mat(off_.wk + layer * kv() * cfg_.dim, kv(), cfg_.dim); }
    /// [kv_dim][dim]
    matrix_view<const float> wv(index_t layer) const noexcept { return mat(off_.wv + layer * kv() * cfg_.dim, kv(), cfg_.dim); }
    /// [dim][dim]
    matrix_view<const float> wo(index_t layer) const noexcept { return mat(off_.wo + layer * cfg_.dim * cfg_.dim, cfg_.dim, cfg_.dim); }
    /// [dim]
    std::span<const float> rms_ffn(index_t layer) const noexcept { return vec(off_.rms_ffn + layer * cfg_.dim, cfg_.dim); }
    /// gate projection, [hidden][dim]
    matrix_view<const float> w1(index_t layer) const noexcept { return mat(off_.w1 + layer * hid(), cfg_.hidden_dim, cfg_.dim); }
    /// down projection, [dim][hidden]
    matrix_view<const float> w2(index_t layer) const noexcept { return mat(off_.w2 + layer * hid(), cfg_.dim, cfg_.hidden_dim); }
    /// up projection, [hidden][dim]
    matrix_view<const float> w3(index_t layer) const noexcept { return mat(off_.w3 + layer * hid(), cfg_.hidden_dim, cfg_.dim); }
    /// [dim]
    std::span<const float> rms_final() const noexcept { return vec(off_.rms_final, cfg_.dim); }
    /// cos of the RoPE angles the exporter stored, [seq_len][head_size / 2]
    matrix_view<const float> freq_cis_real() const noexcept { return mat(off_.freq_real, cfg_.seq_len, cfg_.head_size() / 2); }
    /// sin of the RoPE angles, [seq_len][head_size / 2]
    matrix_view<const float> freq_cis_imag() const noexcept { return mat(off_.freq_imag, cfg_.seq_len, cfg_.head_size() / 2); }
    /// Output projection to logits, [vocab][dim] (the token embedding when shared).
    matrix_view<const float> classifier() const noexcept { return mat(off_.cls, cfg_.vocab_size, cfg_.dim); }

    /// The model as a model_config (llama family, interleaved RoPE, RMSNorm eps 1e-5, no
    /// biases; max_position_embeddings = seq_len).
    model_config to_model_config() const {
        model_config c;
        c.arch = architecture::llama;
        c.model_type = "llama2.c";
        c.vocab_size = cfg_.vocab_size;
        c.hidden_size = cfg_.dim;
        c.intermediate_size = cfg_.hidden_dim;
        c.num_layers = cfg_.n_layers;
        c.num_heads = cfg_.n_heads;
        c.num_kv_heads = cfg_.n_kv_heads;
        c.head_dim = cfg_.head_size();
        c.max_position_embeddings = cfg_.seq_len;
        c.hidden_act = activation::silu;
        c.mlp = mlp_type::gated;
        c.norm = norm_type::rms;
        c.norm_eps = 1e-5;
        c.position = position_type::rope;
        c.rope_interleaved = true;
        c.rope_theta = 10000.0;
        c.rotary_dim = c.head_dim;
        c.tie_word_embeddings = cfg_.shared_classifier;
        c.bos_token_id = 1;
        c.eos_token_ids = {2};
        return c;
    }

private:
    index_t kv() const noexcept { return cfg_.kv_dim(); }
    index_t hid() const noexcept { return cfg_.hidden_dim * cfg_.dim; }
    const float* base() const noexcept { return reinterpret_cast<const float*>(file_.data() + header_bytes); }
    matrix_view<const float> mat(std::size_t off, index_t r, index_t c) const noexcept { return {base() + off, r, c}; }
    std::span<const float> vec(std::size_t off, index_t n) const noexcept { return {base() + off, n}; }

    template <class... Args>
    [[noreturn]] void fail(const Args&... args) const {
        kite::detail::raise<format_error>("llama2.c checkpoint '", file_.path(), "': ", args...);
    }

    void parse() {
        io::byte_reader r(file_.bytes(), "llama2.c checkpoint '" + file_.path() + "'");
        std::int32_t h[7];
        static constexpr const char* names[7] = {"dim", "hidden_dim", "n_layers", "n_heads",
                                                 "n_kv_heads", "vocab_size", "seq_len"};
        for (int i = 0; i < 7; ++i) h[i] = r.get<std::int32_t>(names[i]);
        // Version 1+ files (export.py --version 1/2) start with the magic "ak42".
        if (static_cast<std::uint32_t>(h[0]) == 0x616b3432u)
            fail("starts with the magic of a version 1+ export (\"ak42\"); kite reads the legacy version 0 format");
        for (int i = 0; i < 7; ++i) {
            if (i == 5) continue;
            if (h[i] <= 0) fail("header field ", names[i], " = ", h[i], "; expected a positive value");
        }
        if (h[5] == 0 || h[5] == INT32_MIN) fail("header field vocab_size = ", h[5], "; expected a non-zero value");
        cfg_.dim = static_cast<index_t>(h[0]);
        cfg_.hidden_dim = static_cast<index_t>(h[1]);
        cfg_.n_layers = static_cast<index_t>(h[2]);
        cfg_.n_heads = static_cast<index_t>(h[3]);
        cfg_.n_kv_heads = static_cast<index_t>(h[4]);
        cfg_.shared_classifier = h[5] > 0;
        cfg_.vocab_size = static_cast<index_t>(h[5] > 0 ? h[5] : -h[5]);
        cfg_.seq_len = static_cast<index_t>(h[6]);
        if (cfg_.dim % cfg_.n_heads != 0)
            fail("dim = ", cfg_.dim, " is not a multiple of n_heads = ", cfg_.n_heads);
        if (cfg_.n_kv_heads > cfg_.n_heads || cfg_.n_heads % cfg_.n_kv_heads != 0)
            fail("n_heads = ", cfg_.n_heads, " is not a multiple of n_kv_heads = ", cfg_.n_kv_heads);
        if (cfg_.head_size() % 2 != 0)
            fail("head size dim / n_heads = ", cfg_.head_size(), " is odd; RoPE needs pairs");

        // Sizes in floats, each product and partial sum checked against 2^62 so nothing wraps
        // (a hostile header can name 2^31-sized dims); an honest file is far below the limit.
        constexpr std::uint64_t limit = std::uint64_t{1} << 62;
        const auto mul = [&](std::uint64_t a, std::uint64_t b) {
            if (a != 0 && b > limit / a) fail("header sizes overflow (", a, " x ", b, " floats)");
            return a * b;
        };
        std::uint64_t o = 0;
        const auto take = [&](std::uint64_t n) {
            const std::uint64_t at = o;
            o += n;
            if (o > limit) fail("header sizes overflow (", o, " floats)");
            return static_cast<std::size_t>(at);
        };
        const std::uint64_t d = cfg_.dim, hd = cfg_.hidden_dim, L = cfg_.n_layers,
                            V = cfg_.vocab_size, S = cfg_.seq_len, kvd = cfg_.kv_dim(),
                            half = cfg_.head_size() / 2;
        off_.emb = take(mul(V, d));
        off_.rms_att = take(mul(L, d));
        off_.wq = take(mul(L, mul(d, d)));
        off_.wk = take(mul(L, mul(kvd, d)));
        off_.wv = take(mul(L, mul(kvd, d)));
        off_.wo = take(mul(L, mul(d, d)));
        off_.rms_ffn = take(mul(L, d));
        off_.w1 = take(mul(L, mul(hd, d)));
        off_.w2 = take(mul(L, mul(d, hd)));
        off_.w3 = take(mul(L, mul(hd, d)));
        off_.rms_final = take(d);
        off_.freq_real = take(mul(S, half));
        off_.freq_imag = take(mul(S, half));
        off_.cls = cfg_.shared_classifier ? off_.emb : take(mul(V, d));
        const std::uint64_t expected = header_bytes + o * sizeof(float);
        if (expected != file_.size())
            fail("the header (dim ", d, ", hidden_dim ", hd, ", n_layers ", L, ", n_heads ", cfg_.n_heads,
                 ", n_kv_heads ", cfg_.n_kv_heads, ", vocab_size ", h[5], ", seq_len ", S, ") needs ", expected,
                 " bytes, but the file has ", file_.size(), file_.size() < expected ? " (truncated)" : " (trailing bytes)");
    }

    static constexpr std::size_t header_bytes = 7 * sizeof(std::int32_t);
    struct offsets {
        std::size_t emb = 0, rms_att = 0, wq = 0, wk = 0, wv = 0, wo = 0, rms_ffn = 0, w1 = 0, w2 = 0,
                    w3 = 0, rms_final = 0, freq_real = 0, freq_imag = 0, cls = 0;
    };
    io::mapped_file file_;
    llama2c_config cfg_;
    offsets off_;
};

}  // namespace kite::model
