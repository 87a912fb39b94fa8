// kite/model/llama2c.hpp: every array of a synthetic checkpoint lands at the offset run.c reads
// it from; bad headers and sizes are format errors; the real aidreams260K file when KITE_DATA
// is set.

#include <cmath>
#include <cstring>
#include <fstream>
#include <vector>

#include "kite/model/llama2c.hpp"
#include "kite_test.hpp"

using kite::model::llama2c_checkpoint;

namespace {

void write_checkpoint(const std::filesystem::path& p, const std::vector<std::int32_t>& header,
                      std::size_t n_floats, long extra_bytes = 0) {
    std::ofstream f(p, std::ios::binary);
    f.write(reinterpret_cast<const char*>(header.data()), static_cast<std::streamsize>(header.size() * 4));
    std::vector<float> v(n_floats);
    for (std::size_t i = 0; i < n_floats; ++i) v[i] = static_cast<float>(i);
    std::size_t bytes = n_floats * 4;
    if (extra_bytes < 0) bytes -= static_cast<std::size_t>(-extra_bytes);
    f.write(reinterpret_cast<const char*>(v.data()), static_cast<std::streamsize>(bytes));
    for (long i = 0; i < extra_bytes; ++i) f.put('\0');
}

}  // namespace

TEST_CASE("llama2c: array offsets follow run.c's memory_map_weights", "[model][llama2c]") {
    // dim 8, hidden 12, 2 layers, 4 heads, 2 kv heads, vocab 10, seq_len 3
    const std::size_t d = 8, h = 12, L = 2, kv = 4, V = 10, S = 3, hs = 2;
    for (const bool shared : {true, false}) {
        INFO("shared classifier: " << shared);
        const std::size_t n = V * d + L * d + L * d * d + 2 * L * kv * d + L * d * d + L * d + 3 * L * h * d +
                              d + 2 * S * hs / 2 + (shared ? 0 : V * d);
        kite::test::temp_dir tmp;
        const auto p = tmp / "tiny.bin";
        write_checkpoint(p, {8, 12, 2, 4, 2, shared ? 10 : -10, 3}, n);
        llama2c_checkpoint ck(p);
        const auto& c = ck.config();
        CHECK(c.dim == d);
        CHECK(c.kv_dim() == kv);
        CHECK(c.head_size() == hs);
        CHECK(c.vocab_size == V);
        CHECK(c.shared_classifier == shared);
        // The value stored at float index i is i, so each view's first element is its offset.
        std::size_t o = 0;
        CHECK(ck.token_embedding()(0, 0) == o);
        CHECK(ck.token_embedding()(V - 1, d - 1) == o + V * d - 1);
        o += V * d;
        CHECK(ck.rms_att(1)[0] == o + d);
        o += L * d;
        CHECK(ck.wq(1)(0, 0) == o + d * d);
        CHECK(ck.wq(0).rows() == d);
        o += L * d * d;
        CHECK(ck.wk(1)(0, 0) == o + kv * d);
        CHECK(ck.wk(0).rows() == kv);
        o += L * kv * d;
        CHECK(ck.wv(0)(kv - 1, d - 1) == o + kv * d - 1);
        o += L * kv * d;
        CHECK(ck.wo(1)(0, 1) == o + d * d + 1);
        o += L * d * d;
        CHECK(ck.rms_ffn(0)[0] == o);
        o += L * d;
        CHECK(ck.w1(1)(0, 0) == o + h * d);
        CHECK(ck.w1(0).rows() == h);
        o += L * h * d;
        CHECK(ck.w2(0)(1, 0) == o + h);
        CHECK(ck.w2(0).cols() == h);
        o += L * h * d;
        CHECK(ck.w3(0)(0, 0) == o);
        o += L * h * d;
        CHECK(ck.rms_final()[0] == o);
        o += d;
        CHECK(ck.freq_cis_real()(2, 0) == o + 2);
        o += S;
        CHECK(ck.freq_cis_imag()(0, 0) == o);
        o += S;
        CHECK(ck.classifier()(0, 0) == (shared ? 0 : o));
        const auto mc = ck.to_model_config();
        CHECK(mc.num_kv_heads == 2);
        CHECK(mc.head_dim == 2);
        CHECK(mc.rope_interleaved);
        CHECK(mc.tie_word_embeddings == shared);
        CHECK(mc.norm_eps == 1e-5);

        // Off by one byte either way.
        write_checkpoint(p, {8, 12, 2, 4, 2, shared ? 10 : -10, 3}, n, -1);
        KITE_REQUIRE_THROWS_CONTAINING(llama2c_checkpoint(p), kite::format_error, "(truncated)");
        write_checkpoint(p, {8, 12, 2, 4, 2, shared ? 10 : -10, 3}, n, 4);
        KITE_REQUIRE_THROWS_CONTAINING(llama2c_checkpoint(p), kite::format_error, "(trailing bytes)");
    }
}

TEST_CASE("llama2c: bad headers", "[model][llama2c]") {
    kite::test::temp_dir tmp;
    const auto p = tmp / "bad.bin";
    {
        std::ofstream f(p, std::ios::binary);
        f.write("abc", 3);
    }
    KITE_REQUIRE_THROWS_CONTAINING(llama2c_checkpoint(p), kite::format_error, "truncated while reading dim");
    write_checkpoint(p, {0, 12, 2, 4, 2, 10, 3}, 10);
    KITE_REQUIRE_THROWS_CONTAINING(llama2c_checkpoint(p), kite::format_error, "dim = 0");
    write_checkpoint(p, {8, 12, -2, 4, 2, 10, 3}, 10);
    KITE_REQUIRE_THROWS_CONTAINING(llama2c_checkpoint(p), kite::format_error, "n_layers = -2");
    write_checkpoint(p, {8, 12, 2, 3, 3, 10, 3}, 10);
    KITE_REQUIRE_THROWS_CONTAINING(llama2c_checkpoint(p), kite::format_error, "not a multiple of n_heads = 3");
    write_checkpoint(p, {8, 12, 2, 4, 3, 10, 3}, 10);
    KITE_REQUIRE_THROWS_CONTAINING(llama2c_checkpoint(p), kite::format_error, "n_kv_heads = 3");
    write_checkpoint(p, {8, 12, 2, 8, 8, 10, 3}, 10);
    KITE_REQUIRE_THROWS_CONTAINING(llama2c_checkpoint(p), kite::format_error, "is odd");
    write_checkpoint(p, {8, 12, 2, 4, 2, 0, 3}, 10);
    KITE_REQUIRE_THROWS_CONTAINING(llama2c_checkpoint(p), kite::format_error, "vocab_size = 0");
    write_checkpoint(p, {0x616b3432, 1, 0, 0, 0, 0, 0}, 10);
    KITE_REQUIRE_THROWS_CONTAINING(llama2c_checkpoint(p), kite::format_error, "ak42");
    // Sizes that would overflow 64-bit arithmetic are refused, not wrapped.
    write_checkpoint(p, {2147483644, 2147483646, 2147483647, 2, 2, -2147483647, 2147483647}, 10);
    KITE_REQUIRE_THROWS_CONTAINING(llama2c_checkpoint(p), kite::format_error, "overflow");
    write_checkpoint(p, {1 << 20, 1 << 20, 1 << 10, 2, 2, 10, 3}, 10);
    CHECK_THROWS_AS(llama2c_checkpoint(p), kite::format_error);
}

TEST_CASE("llama2c: the real aidreams260K checkpoint", "[model][llama2c][data]") {
    const auto path = kite::test::data_path("aidreams260k/aidreams260K.bin");
    if (path.empty()) {
        SUCCEED("KITE_DATA not set: skipped");
        return;
    }
    llama2c_checkpoint ck(path);
    const auto& c = ck.config();
    CHECK(c.dim == 64);
    CHECK(c.hidden_dim == 172);
    CHECK(c.n_layers == 4);
    CHECK(c.n_heads == 4);
    CHECK(c.n_kv_heads == 4);
    CHECK(c.vocab_size == 512);
    CHECK(c.seq_len == 128);
    CHECK(c.shared_classifier);
    CHECK(ck.classifier().data() == ck.token_embedding().data());
    // The stored RoPE tables are cos/sin of pos * 10000^(-2i / head_size), as export.py wrote them.
    double worst = 0;
    for (std::size_t pos = 0; pos < c.seq_len; ++pos) {
        for (std::size_t i = 0; i < c.head_size() / 2; ++i) {
            const double angle = static_cast<double>(pos) * std::pow(10000.0, -2.0 * static_cast<double>(i) / 16.0);
            worst = std::max(worst, std::abs(ck.freq_cis_real()(pos, i) - std::cos(angle)));
            worst = std::max(worst, std::abs(ck.freq_cis_imag()(pos, i) - std::sin(angle)));
        }
    }
    CHECK(worst < 1e-4);
    // RMSNorm weights of a trained model are O(1) and positive; the embedding is not all zero.
    for (float w : ck.rms_final()) CHECK(std::isfinite(w));
    double norm = 0;
    for (float v : ck.token_embedding().flat()) norm += double(v) * v;
    CHECK(norm > 1.0);
}
