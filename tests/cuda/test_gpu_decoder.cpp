// kite::cuda::decoder against kite::model::decoder (attn::reference, a contiguous cache) on random
// llama-style checkpoints: tiny ones (GQA, MHA, MQA; head_dim 16 .. 128; rotate_half and
// interleaved; partial rotary; tied and untied classifiers; 2-3 layers) and one with
// SmolLM2-135M's shape but 2 layers. Logits at prefill and at every teacher-forced decode step
// (rel_l2), greedy tokens wherever the CPU's top-2 margin is decisive, batch decode equal to
// one-at-a-time, prefill through flash attention (whole prompts, and chunked prompts whose later
// chunks fall back to paged_attention) against both the CPU and the GPU's own paged_attention,
// and policies / options the GPU decoder refuses. GGUF models as stored (Q8_0 / Q4_0 / Q4_1
// projections uploaded block for block, fused projections whose parts differ in type, F32 / F16 /
// BF16 tensors) against kite's CPU GGUF decoder: random in-memory llama models, the GGUF fixture
// files, and (hidden tag [.smollm2], with models/ and a GPU) the real SmolLM2-135M-Instruct.

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <optional>
#include <random>
#include <span>
#include <string>
#include <vector>

#include "gpu_test.hpp"
#include "kite_compare.hpp"
#include "kite/core/buffer.hpp"
#include "kite/cuda/decoder.hpp"
#include "kite/model/decoder.hpp"
#include "kite/model/formats/gguf_model.hpp"
#include "kite/model/formats/gguf_tokenizer.hpp"

namespace kc = kite::cuda;
namespace km = kite::model;
namespace kq = kite::quant;
using kite::index_t;

namespace {

struct model_shape {
    int hidden, heads, kv_heads, head_dim, inter, vocab, layers;
    bool interleaved, tied;
    int rotary_dim = 0;  // 0: head_dim
};

std::vector<float> normal(std::size_t n, std::mt19937& g, float sd) {
    std::normal_distribution<float> d(0.0f, sd);
    std::vector<float> v(n);
    for (auto& x : v) x = d(g);
    return v;
}

kite::matrix<float> normal_matrix(index_t rows, index_t cols, std::mt19937& g, float sd) {
    kite::matrix<float> m(rows, cols);
    const auto v = normal(rows * cols, g, sd);
    std::copy(v.begin(), v.end(), m.flat().begin());
    return m;
}

std::vector<float> norm_weights(int n, std::mt19937& g) {
    std::uniform_real_distribution<float> d(0.8f, 1.2f);
    std::vector<float> v(static_cast<std::size_t>(n));
    for (auto& x : v) x = d(g);
    return v;
}

// The config of a llama-style model of shape s (SwiGLU, RMSNorm, RoPE with theta 10000).
km::model_config llama_config(const model_shape& s, int layers, bool interleaved, int rotary_dim, bool tied) {
    km::model_config c;
    c.arch = km::architecture::llama;
    c.model_type = "llama";
    c.vocab_size = s.vocab;
    c.hidden_size = s.hidden;
    c.intermediate_size = s.inter;
    c.num_layers = static_cast<index_t>(layers);
    c.num_heads = s.heads;
    c.num_kv_heads = s.kv_heads;
    c.head_dim = s.head_dim;
    c.rotary_dim = static_cast<index_t>(rotary_dim);
    c.max_position_embeddings = 4096;
    c.hidden_act = km::activation::silu;
    c.mlp = km::mlp_type::gated;
    c.norm = km::norm_type::rms;
    c.norm_eps = 1e-5;
    c.position = km::position_type::rope;
    c.rope_interleaved = interleaved;
    c.rope_theta = 10000.0;
    c.tie_word_embeddings = tied;
    return c;
}

// A random llama-style checkpoint. Linear weights N(0, 1/sqrt(in)); the embedding (and an untied
// classifier) N(0, 1), so the logits of a normalised state have a spread of ~sqrt(hidden): peaked.
km::checkpoint random_llama(const model_shape& s, std::uint32_t seed) {
    std::mt19937 g(seed);
    km::checkpoint ck;
    km::model_config& c = ck.config;
    c = llama_config(s, s.layers, s.interleaved, s.rotary_dim, s.tied);
    const index_t h = s.hidden, qkv = c.q_dim() + 2 * c.kv_dim();
    km::model_tensors& t = ck.tensors;
    t.embedding = normal_matrix(s.vocab, h, g, 1.0f);
    for (int l = 0; l < s.layers; ++l) {
        km::block_tensors b;
        b.attn_norm_weight = norm_weights(s.hidden, g);
        b.qkv = normal_matrix(qkv, h, g, 1.0f / std::sqrt(static_cast<float>(h)));
        b.o = normal_matrix(h, c.q_dim(), g, 1.0f / std::sqrt(static_cast<float>(c.q_dim())));
        b.mlp_norm_weight = norm_weights(s.hidden, g);
        b.up = normal_matrix(2 * static_cast<index_t>(s.inter), h, g, 1.0f / std::sqrt(static_cast<float>(h)));
        b.down = normal_matrix(h, s.inter, g, 1.0f / std::sqrt(static_cast<float>(s.inter)));
        t.blocks.push_back(std::move(b));
    }
    t.final_norm_weight = norm_weights(s.hidden, g);
    if (!s.tied) t.lm_head = normal_matrix(s.vocab, h, g, 1.0f);
    ck.source = "random llama";
    return ck;
}

std::vector<std::int32_t> random_tokens(int n, int vocab, std::uint32_t seed) {
    std::mt19937 g(seed);
    std::uniform_int_distribution<int> d(0, vocab - 1);
    std::vector<std::int32_t> v(static_cast<std::size_t>(n));
    for (auto& x : v) x = d(g);
    return v;
}

double rel_err(std::span<const float> gpu, std::span<const float> cpu) {
    const std::vector<double> ref(cpu.begin(), cpu.end());
    return kite::test::rel_l2(gpu, ref);
}
double max_abs(std::span<const float> a, std::span<const float> b) {
    kite::test::running_max m;  // a NaN sticks (std::max would drop it)
    for (std::size_t i = 0; i < a.size(); ++i) m.add(std::fabs(static_cast<double>(a[i]) - b[i]), i);
    return m.empty() ? 0.0 : m.value();
}
std::int32_t argmax(std::span<const float> v) {
    return static_cast<std::int32_t>(std::max_element(v.begin(), v.end()) - v.begin());
}
double top2_margin(std::span<const float> v) {
    float a = -INFINITY, b = -INFINITY;
    for (const float x : v) {
        if (x > a) {
            b = a;
            a = x;
        } else if (x > b) {
            b = x;
        }
    }
    return static_cast<double>(a) - b;
}

template <class Layout, class Conv, class CpuWeights = kq::f32, class CpuKv = float>
using cpu_decoder = km::decoder<Layout, kite::pos::rope<Conv>, kite::attn::reference, kite::kv::contiguous<CpuKv>,
                                kite::norm::rms, kite::mlp::swiglu, CpuWeights>;
template <class Layout, class Conv, index_t B = 16>
using gpu_decoder = kc::decoder<Layout, kite::pos::rope<Conv>, kite::norm::rms, kite::mlp::swiglu, B>;

// Prefill `prompt` on both decoders, then `steps` decode steps feeding both the CPU's greedy
// token; the logits of every step compared, the tokens compared wherever the CPU's top-2 margin
// exceeds 10x that step's largest logit difference. f32 runs also check generate().
template <class Cpu, class Gpu>
std::vector<std::int32_t> compare_decoders(const std::string& name, Cpu& cpu, Gpu& gpu, const kc::decoder_options& opt,
                      std::span<const std::int32_t> prompt, int steps, double bar, bool check_tokens) {
    INFO(name);
    REQUIRE(gpu.vocab_size() == cpu.vocab_size());
    const index_t vocab = cpu.vocab_size();
    auto cache = cpu.make_cache(prompt.size() + static_cast<index_t>(steps) + 1);
    const auto cs = *cache.add_sequence();
    const auto gs = gpu.add_sequence();
    kite::matrix<float> c_logits(1, vocab);
    std::vector<float> g_logits(vocab);
    REQUIRE(cpu.prefill(cache, cs, prompt, c_logits.view()) == kite::kv::status::ok);
    REQUIRE(gpu.prefill(gs, prompt, g_logits) == kite::kv::status::ok);
    const double e0 = rel_err(g_logits, c_logits.flat());
    std::printf("kite-gpu-err decoder/%s/prefill %.3e (paged_decode: %s, flash prefill: %s, %zu tokens in chunks of %lld)\n",
                name.c_str(), e0, gpu.uses_paged_decode() ? "yes" : "no", gpu.uses_flash_prefill() ? "yes" : "no",
                static_cast<std::size_t>(prompt.size()), static_cast<long long>(opt.prefill_chunk));
    CHECK(e0 <= bar);
    double worst = 0, min_ratio = INFINITY;
    int decisive = 0, equal = 0;
    std::vector<std::int32_t> greedy;
    const kite::kv::seq_id cseq[1] = {cs};
    const kite::kv::seq_id gseq[1] = {gs};
    for (int step = 0; step < steps; ++step) {
        const std::span<const float> c(c_logits.flat().data(), vocab);
        const std::int32_t tok = argmax(c);
        const double margin = top2_margin(c), diff = max_abs(g_logits, c);
        min_ratio = std::min(min_ratio, margin / std::max(diff, 1e-30));
        if (margin > 10 * diff) {
            ++decisive;
            equal += argmax(g_logits) == tok;
        }
        greedy.push_back(tok);
        const std::int32_t next[1] = {tok};
        REQUIRE(cpu.decode(cache, cseq, next, c_logits.view()) == kite::kv::status::ok);
        REQUIRE(gpu.decode(gseq, next, g_logits) == kite::kv::status::ok);
        const double e = rel_err(g_logits, c_logits.flat());
        worst = std::max(worst, std::isnan(e) ? INFINITY : e);
        INFO("step " << step);
        CHECK(e <= bar);
    }
    std::printf("kite-gpu-err decoder/%s/decode_max %.3e over %d steps; tokens: %d/%d decisive steps equal, "
                "min margin/diff %.1f\n",
                name.c_str(), worst, steps, equal, decisive, min_ratio);
    CHECK(equal == decisive);
    if (check_tokens) {
        // The f32 models' margins dwarf the rounding: every step decides, and generate() agrees.
        CHECK(decisive == steps);
        CHECK(gpu.generate(prompt, static_cast<index_t>(steps)) == greedy);
    }
    CHECK(gpu.length(gs) == prompt.size() + static_cast<index_t>(steps));
    gpu.release(gs);
    return greedy;  // the CPU's greedy tokens
}

template <class Layout, class Conv, class CpuWeights, class CpuKv, index_t B = 16>
void compare(const std::string& name, const km::checkpoint& ck, const kc::decoder_options& opt,
             std::span<const std::int32_t> prompt, int steps, double bar, bool check_tokens) {
    cpu_decoder<Layout, Conv, CpuWeights, CpuKv> cpu(ck);
    gpu_decoder<Layout, Conv, B> gpu(ck, opt);
    compare_decoders(name, cpu, gpu, opt, prompt, steps, bar, check_tokens);
}

// ---- GGUF models as stored ------------------------------------------------------------------

namespace gg = kite::quant::ggml;

// kite's CPU GGUF decoder (float activations, every weight decoded exactly) with the reference
// attention and a contiguous cache of CpuKv.
template <class Conv, class CpuKv = float>
using cpu_gguf = km::decoder<kite::attn::gqa, kite::pos::rope<Conv>, kite::attn::reference,
                             kite::kv::contiguous<CpuKv>, kite::norm::rms, kite::mlp::swiglu, kq::ggml_blocks>;

void put16(std::byte* dst, std::uint16_t v) { std::memcpy(dst, &v, 2); }

// Random ggml weights [rows][cols] of type t whose values have a standard deviation near sd:
// Q8_0 / Q4_0 / Q4_1 blocks with random levels and fp16 scales (Q4_1: a minimum near -7.5 d,
// so the values centre on 0), float types N(0, sd^2) stored in their type.
kq::ggml_weights random_ggml(gg::type t, index_t rows, index_t cols, float sd, std::mt19937& g) {
    const std::size_t rb = gg::row_bytes(t, cols);
    kite::aligned_buffer<std::byte> buf(rows * rb);
    std::uniform_real_distribution<float> jitter(0.7f, 1.3f);
    std::uniform_int_distribution<int> byte(0, 255), level(-127, 127);
    std::normal_distribution<float> nd(0.0f, sd);
    for (index_t r = 0; r < rows; ++r) {
        std::byte* row = buf.data() + r * rb;
        if (t == gg::type::q8_0 || t == gg::type::q4_0 || t == gg::type::q4_1) {
            const std::size_t bb = gg::info(t).block_bytes;
            for (index_t b = 0; b < cols / 32; ++b) {
                std::byte* blk = row + b * bb;
                if (t == gg::type::q8_0) {  // levels uniform in [-127, 127]: sd = 73 d
                    put16(blk, kite::detail::float_to_fp16_bits(sd / 73.3f * jitter(g)));
                    for (int i = 0; i < 32; ++i) blk[2 + i] = static_cast<std::byte>(static_cast<std::int8_t>(level(g)));
                } else {  // levels 0 .. 15 around 8 (Q4_0) or 7.5 (Q4_1): sd = 4.6 d
                    const float d = sd / 4.6f * jitter(g);
                    put16(blk, kite::detail::float_to_fp16_bits(d));
                    std::size_t at = 2;
                    if (t == gg::type::q4_1) {
                        put16(blk + 2, kite::detail::float_to_fp16_bits(-7.5f * d * jitter(g)));
                        at = 4;
                    }
                    for (int i = 0; i < 16; ++i) blk[at + i] = static_cast<std::byte>(byte(g));
                }
            }
        } else {
            for (index_t c = 0; c < cols; ++c) {
                const float v = nd(g);
                if (t == gg::type::f32) {
                    std::memcpy(row + 4 * c, &v, 4);
                } else if (t == gg::type::f16) {
                    put16(row + 2 * c, kite::detail::float_to_fp16_bits(v));
                } else {
                    REQUIRE(t == gg::type::bf16);
                    put16(row + 2 * c, kite::bf16(v).bits);
                }
            }
        }
    }
    return kq::ggml_weights::owning(t, std::move(buf), rows, cols);
}

// The projection types of one layer: q, k, v, o, gate, up, down.
struct gguf_layer_types {
    gg::type q, k, v, o, gate, up, down;
};

// A random llama GGUF model in memory, as kite::model::read_gguf would return it (Q and K used
// as stored, rotating interleaved pairs): linear weights of sd 1/sqrt(in), the embedding (and
// an untied classifier) of sd 1, so the logits are peaked.
km::gguf_model random_gguf_llama(const model_shape& s, const std::vector<gguf_layer_types>& layers, gg::type emb,
                                 std::optional<gg::type> lm_head, std::uint32_t seed) {
    std::mt19937 g(seed);
    km::gguf_model m;
    km::model_config& c = m.config;
    c = llama_config(s, static_cast<int>(layers.size()), true, s.head_dim, !lm_head.has_value());
    const index_t h = s.hidden, qd = c.q_dim(), kvd = c.kv_dim(), I = s.inter;
    const float in_h = 1.0f / std::sqrt(static_cast<float>(h)), in_q = 1.0f / std::sqrt(static_cast<float>(qd)),
                in_i = 1.0f / std::sqrt(static_cast<float>(I));
    m.embedding = random_ggml(emb, s.vocab, h, 1.0f, g);
    for (const gguf_layer_types& t : layers) {
        km::prepared_block<kq::ggml_weights> b;
        b.attn_norm_weight = norm_weights(s.hidden, g);
        b.mlp_norm_weight = norm_weights(s.hidden, g);
        b.qkv = kq::ggml_weights::stack(
            {random_ggml(t.q, qd, h, in_h, g), random_ggml(t.k, kvd, h, in_h, g), random_ggml(t.v, kvd, h, in_h, g)});
        b.o = random_ggml(t.o, h, qd, in_q, g);
        b.up = kq::ggml_weights::stack({random_ggml(t.gate, I, h, in_h, g), random_ggml(t.up, I, h, in_h, g)});
        b.down = random_ggml(t.down, h, I, in_i, g);
        m.blocks.push_back(std::move(b));
    }
    m.final_norm_weight = norm_weights(s.hidden, g);
    if (lm_head) m.lm_head = random_ggml(*lm_head, s.vocab, h, 1.0f, g);
    m.source = "random gguf llama";
    return m;
}

// compare_decoders on a GGUF model; `generate_equal`: also the GPU's own greedy generation
// (generate()) equal to the CPU's greedy tokens, every one of them.
template <class Conv, class CpuKv = float>
void compare_gguf(const std::string& name, const km::gguf_model& m, const kc::decoder_options& opt,
                  std::span<const std::int32_t> prompt, int steps, double bar, bool check_tokens,
                  bool generate_equal = false) {
    cpu_gguf<Conv, CpuKv> cpu(m);
    gpu_decoder<kite::attn::gqa, Conv> gpu(m, opt);
    const auto greedy = compare_decoders(name, cpu, gpu, opt, prompt, steps, bar, check_tokens);
    if (generate_equal) {
        const auto got = gpu.generate(prompt, static_cast<index_t>(steps));
        std::size_t same = 0;
        while (same < got.size() && same < greedy.size() && got[same] == greedy[same]) ++same;
        std::printf("kite-gpu-err decoder/%s/greedy_tokens_equal %zu of %zu\n", name.c_str(), same, greedy.size());
        CHECK(got == greedy);
    }
}

kc::decoder_options f32_opts(index_t max_tokens = 128) {
    kc::decoder_options o;
    o.weights = kc::weight_format::f32;
    o.kv = kc::dtype::f32;
    o.max_tokens = max_tokens;
    o.max_sequences = 3;
    return o;
}

}  // namespace

TEST_CASE("cuda decoder: refuses other policies' configs and bad options without a GPU", "[cuda][decoder]") {
    // Checked before anything reaches the device.
    const km::checkpoint ck = random_llama({64, 4, 2, 16, 96, 256, 2, false, false}, 1);
    using mha_rh = gpu_decoder<kite::attn::mha, kite::pos::rotate_half>;
    KITE_REQUIRE_THROWS_CONTAINING(mha_rh(ck, f32_opts()), kite::config_error, "kite::attn::mha cannot hold");
    using gqa_il = gpu_decoder<kite::attn::gqa, kite::pos::interleaved>;
    KITE_REQUIRE_THROWS_CONTAINING(gqa_il(ck, f32_opts()), kite::config_error, "position policy is kite::pos::rope<interleaved>");
    using gqa_rh = gpu_decoder<kite::attn::gqa, kite::pos::rotate_half>;
    kc::decoder_options bad = f32_opts();
    bad.weights = kc::weight_format::q4_0;  // GGUF formats come from a GGUF file, not a float checkpoint
    REQUIRE_THROWS_AS(gqa_rh(ck, bad), kite::invalid_argument);
    bad = f32_opts();
    bad.max_sequences = 0;
    REQUIRE_THROWS_AS(gqa_rh(ck, bad), kite::invalid_argument);
    const km::checkpoint wide = random_llama({64, 1, 1, 512, 96, 256, 1, false, false}, 1);  // one head of 512
    KITE_REQUIRE_THROWS_CONTAINING(gqa_rh(wide, f32_opts()), kite::config_error, "heads of up to 256 elements");
    km::checkpoint broken = random_llama({64, 4, 2, 16, 96, 256, 2, false, false}, 1);
    broken.tensors.blocks[1].o = kite::matrix<float>(64, 32);  // [hidden][q_dim] expected: [64][64]
    REQUIRE_THROWS_AS(gqa_rh(broken, f32_opts()), kite::format_error);
    // kc::decoder<kite::attn::mha, kite::pos::alibi, kite::norm::layer, kite::mlp::gelu_tanh> fails to compile:
    // "kite::cuda::decoder runs llama-family models (RoPE, RMSNorm, SwiGLU): ...".
}

TEST_CASE("cuda decoder: f32 equals the CPU decoder on tiny random llama models", "[cuda][decoder][gpu]") {
    KITE_NEED_GPU();
    using kite::attn::gqa;
    using kite::attn::mha;
    using kite::attn::mqa;
    using kite::pos::interleaved;
    using kite::pos::rotate_half;
    const double bar = 3e-6;  // f32 on both sides: the H200 measured at most 8.2e-7
    {
        const auto ck = random_llama({64, 4, 2, 16, 96, 256, 2, false, false}, 11);
        const auto prompt = random_tokens(7, 256, 12);
        compare<gqa, rotate_half, kq::f32, float>("gqa4x2_d16_rh_untied", ck, f32_opts(), prompt, 24, bar, true);
    }
    {
        const auto ck = random_llama({128, 4, 4, 32, 160, 256, 3, true, true}, 13);
        const auto prompt = random_tokens(40, 256, 14);
        kc::decoder_options o = f32_opts();
        o.prefill_chunk = 16;  // the prompt in chunks of 16, 16, 8
        compare<mha, interleaved, kq::f32, float>("mha4_d32_il_tied_chunked", ck, o, prompt, 24, bar, true);
    }
    {
        const auto ck = random_llama({128, 4, 1, 32, 128, 256, 2, false, true}, 15);
        const auto prompt = random_tokens(5, 256, 16);
        compare<mqa, rotate_half, kq::f32, float, 8>("mqa4x1_d32_rh_tied_B8", ck, f32_opts(), prompt, 24, bar, true);
    }
    {
        const auto ck = random_llama({256, 8, 2, 64, 384, 256, 2, false, false}, 17);
        const auto prompt = random_tokens(33, 256, 18);
        compare<gqa, rotate_half, kq::f32, float>("gqa8x2_d64_rh_untied", ck, f32_opts(), prompt, 24, bar, true);
        kc::decoder_options o = f32_opts();
        o.paged_decode_kernel = false;  // the same through kite's own paged_attention
        compare<gqa, rotate_half, kq::f32, float>("gqa8x2_d64_rh_untied_own_attention", ck, o, prompt, 24, bar, true);
    }
    {
        const auto ck = random_llama({256, 8, 2, 64, 256, 256, 2, true, false, 32}, 19);  // partial rotary: 32 of 64
        const auto prompt = random_tokens(20, 256, 20);
        compare<gqa, interleaved, kq::f32, float>("gqa8x2_d64_r32_il", ck, f32_opts(), prompt, 24, bar, true);
    }
    {
        const auto ck = random_llama({256, 2, 1, 128, 256, 256, 2, false, true}, 21);
        const auto prompt = random_tokens(17, 256, 22);
        compare<gqa, rotate_half, kq::f32, float>("gqa2x1_d128_rh_tied", ck, f32_opts(), prompt, 24, bar, true);
    }
}

TEST_CASE("cuda decoder: bf16, int8 and int4 weights equal the CPU decoder with the same formats", "[cuda][decoder][gpu]") {
    KITE_NEED_GPU();
    using kite::attn::gqa;
    using kite::pos::rotate_half;
    const auto ck = random_llama({256, 8, 2, 64, 384, 256, 2, false, false}, 23);
    const auto prompt = random_tokens(25, 256, 24);
    kc::decoder_options o = f32_opts();
    o.weights = kc::weight_format::bf16;
    o.kv = kc::dtype::bf16;
    // Same bf16 weights and bf16 cache on both sides; the GPU also rounds q and the attention
    // output to bf16 around paged_decode, and a key rounded from a slightly different float can
    // land one bf16 step away.
    compare<gqa, rotate_half, kq::dense<kite::bf16>, kite::bf16>("gqa8x2_d64_bf16w_bf16kv", ck, o, prompt, 24, 5e-3, false);
    o.paged_decode_kernel = false;
    compare<gqa, rotate_half, kq::dense<kite::bf16>, kite::bf16>("gqa8x2_d64_bf16w_bf16kv_own_attention", ck, o, prompt, 24,
                                                                 5e-3, false);
    // int8 rows: both dequantize the same absmax<8> levels exactly, fp32 everywhere else.
    o = f32_opts();
    o.weights = kc::weight_format::int8_rows;
    compare<gqa, rotate_half, kq::absmax<8>, float>("gqa8x2_d64_int8w_f32kv", ck, o, prompt, 24, 5e-6, true);
    // int4, groups of 128 (symmetric, float scales): likewise the same dequantized weights.
    o.weights = kc::weight_format::int4_g128;
    compare<gqa, rotate_half, kq::absmax<4, 128>, float>("gqa8x2_d64_int4w_f32kv", ck, o, prompt, 24, 5e-6, true);
}

TEST_CASE("cuda decoder: a random model with SmolLM2-135M's shape (2 layers) equals the CPU decoder",
          "[cuda][decoder][gpu]") {
    KITE_NEED_GPU();
    using kite::attn::gqa;
    using kite::pos::rotate_half;
    // hidden 576, 9 heads over 3 kv heads of 64, intermediate 1536, vocab 49152, tied embeddings.
    const auto ck = random_llama({576, 9, 3, 64, 1536, 49152, 2, false, true}, 25);
    const auto prompt = random_tokens(30, 49152, 26);
    compare<gqa, rotate_half, kq::f32, float>("smollm2_shape_f32", ck, f32_opts(256), prompt, 24, 3e-6, true);
    kc::decoder_options o = f32_opts(256);
    o.weights = kc::weight_format::bf16;
    o.kv = kc::dtype::bf16;
    compare<gqa, rotate_half, kq::dense<kite::bf16>, kite::bf16>("smollm2_shape_bf16", ck, o, prompt, 24, 5e-3, false);
}

TEST_CASE("cuda decoder: a batch of 3 sequences of different lengths equals one at a time", "[cuda][decoder][gpu]") {
    KITE_NEED_GPU();
    using kite::attn::gqa;
    using kite::pos::rotate_half;
    const auto ck = random_llama({256, 8, 2, 64, 384, 256, 2, false, false}, 27);
    for (const bool own : {false, true}) {
        kc::decoder_options o = f32_opts();
        o.paged_decode_kernel = !own;
        gpu_decoder<gqa, rotate_half> gpu(ck, o);
        const int lens[3] = {5, 17, 40}, steps = 12;
        std::vector<std::vector<std::int32_t>> prompts, feeds;
        for (int b = 0; b < 3; ++b) {
            prompts.push_back(random_tokens(lens[b], 256, 30u + static_cast<std::uint32_t>(b)));
            feeds.push_back(random_tokens(steps, 256, 40u + static_cast<std::uint32_t>(b)));
        }
        const index_t vocab = gpu.vocab_size();
        // One at a time: logits [b][step][vocab].
        std::vector<std::vector<std::vector<float>>> alone(3);
        for (int b = 0; b < 3; ++b) {
            const auto s = gpu.add_sequence();
            std::vector<float> l(vocab);
            REQUIRE(gpu.prefill(s, prompts[b], l) == kite::kv::status::ok);
            const kite::kv::seq_id one[1] = {s};
            for (int i = 0; i < steps; ++i) {
                const std::int32_t t[1] = {feeds[b][i]};
                REQUIRE(gpu.decode(one, t, l) == kite::kv::status::ok);
                alone[b].push_back(l);
            }
            gpu.release(s);
        }
        // Together: three sequences, one decode call per step.
        std::vector<kite::kv::seq_id> seqs;
        for (int b = 0; b < 3; ++b) {
            seqs.push_back(gpu.add_sequence());
            std::vector<float> l(vocab);
            REQUIRE(gpu.prefill(seqs.back(), prompts[b], l) == kite::kv::status::ok);
        }
        std::vector<float> batch_logits(3 * vocab);
        double worst = 0;
        for (int i = 0; i < steps; ++i) {
            const std::int32_t t[3] = {feeds[0][i], feeds[1][i], feeds[2][i]};
            REQUIRE(gpu.decode(seqs, t, batch_logits) == kite::kv::status::ok);
            for (int b = 0; b < 3; ++b) {
                const double e = rel_err(std::span<const float>(batch_logits).subspan(b * vocab, vocab), alone[b][i]);
                worst = std::max(worst, std::isnan(e) ? INFINITY : e);
            }
        }
        std::printf("kite-gpu-err decoder/batch3_vs_single%s %.3e\n", own ? "_own_attention" : "", worst);
        CHECK(worst <= 1e-6);  // measured 0 (the same kernels, any batch)
        for (int b = 0; b < 3; ++b) CHECK(gpu.length(seqs[b]) == static_cast<index_t>(lens[b] + steps));
        // Bad calls: a repeated sequence, a token outside the vocabulary.
        const kite::kv::seq_id twice[2] = {seqs[0], seqs[0]};
        const std::int32_t two[2] = {1, 2};
        std::vector<float> l2(2 * vocab);
        REQUIRE_THROWS_AS(gpu.decode(twice, two, l2), kite::invalid_argument);
        const std::int32_t out_of_vocab[1] = {static_cast<std::int32_t>(vocab)};
        std::vector<float> l1(vocab);
        REQUIRE_THROWS_AS(gpu.prefill(seqs[0], out_of_vocab, l1), kite::invalid_argument);
    }
}

TEST_CASE("cuda decoder: flash prefill equals the CPU decoder and paged_attention prefill", "[cuda][decoder][gpu]") {
    KITE_NEED_GPU();
    using kite::attn::gqa;
    using kite::pos::interleaved;
    using kite::pos::rotate_half;
    // bf16 weights and cache on both sides, as the bf16 case above: the same 5e-3 bar (measured at most 1.6e-3).
    const auto ck = random_llama({256, 8, 2, 64, 384, 256, 2, false, false}, 51);
    const auto prompt = random_tokens(300, 256, 52);  // > 128 tokens, not a multiple of 64
    kc::decoder_options o = f32_opts(512);
    o.weights = kc::weight_format::bf16;
    o.kv = kc::dtype::bf16;
    o.prefill_chunk = 512;  // the whole prompt in one chunk: flash attention
    compare<gqa, rotate_half, kq::dense<kite::bf16>, kite::bf16>("gqa8x2_d64_bf16_flash_300", ck, o, prompt, 8, 5e-3,
                                                                 false);
    o.prefill_chunk = 128;  // chunks of 128 (flash), 128 and 44 (paged_attention: earlier tokens in the cache)
    compare<gqa, rotate_half, kq::dense<kite::bf16>, kite::bf16>("gqa8x2_d64_bf16_flash_chunks_128_128_44", ck, o,
                                                                 prompt, 8, 5e-3, false);
    o.prefill_chunk = 512;
    o.flash_prefill = false;  // the same through paged_attention only
    compare<gqa, rotate_half, kq::dense<kite::bf16>, kite::bf16>("gqa8x2_d64_bf16_paged_300", ck, o, prompt, 8, 5e-3,
                                                                 false);

    // Flash and paged_attention prefill on the GPU against each other (same bf16 pool).
    {
        kc::decoder_options on = o, off = o;
        on.flash_prefill = true;
        off.flash_prefill = false;
        gpu_decoder<gqa, rotate_half> a(ck, on), b(ck, off);
        REQUIRE(a.uses_flash_prefill());
        REQUIRE_FALSE(b.uses_flash_prefill());
        for (const int len : {1, 63, 64, 65, 300}) {
            const std::span<const std::int32_t> p(prompt.data(), static_cast<std::size_t>(len));
            std::vector<float> la(a.vocab_size()), lb(b.vocab_size());
            const auto sa = a.add_sequence();
            const auto sb = b.add_sequence();
            REQUIRE(a.prefill(sa, p, la) == kite::kv::status::ok);
            REQUIRE(b.prefill(sb, p, lb) == kite::kv::status::ok);
            const double e = rel_err(la, lb);
            std::printf("kite-gpu-err decoder/flash_vs_paged_prefill_len%d %.3e\n", len, e);
            CHECK(e <= 3e-3);
            // One decode step after: both caches hold the same keys (gathered, not recomputed).
            const kite::kv::seq_id one_a[1] = {sa};
            const kite::kv::seq_id one_b[1] = {sb};
            const std::int32_t t[1] = {argmax(lb)};
            REQUIRE(a.decode(one_a, t, la) == kite::kv::status::ok);
            REQUIRE(b.decode(one_b, t, lb) == kite::kv::status::ok);
            const double ed = rel_err(la, lb);
            std::printf("kite-gpu-err decoder/flash_vs_paged_then_decode_len%d %.3e\n", len, ed);
            CHECK(ed <= 3e-3);
            a.release(sa);
            b.release(sb);
        }
    }

    // head_dim 128, an fp16 cache with f32 weights (fp16 rounds ~8x finer than bf16), MQA-like
    // GQA 4x1, interleaved RoPE; 150 tokens in chunks of 96 (flash) and 54 (paged_attention).
    const auto ck128 = random_llama({256, 4, 1, 128, 384, 256, 2, true, true}, 53);
    const auto p150 = random_tokens(150, 256, 54);
    kc::decoder_options h = f32_opts(256);
    h.kv = kc::dtype::fp16;
    h.prefill_chunk = 256;
    compare<gqa, interleaved, kq::f32, kite::fp16>("gqa4x1_d128_il_fp16kv_flash_150", ck128, h, p150, 8, 3e-4, false);
    h.prefill_chunk = 96;
    compare<gqa, interleaved, kq::f32, kite::fp16>("gqa4x1_d128_il_fp16kv_flash_chunks_96_54", ck128, h, p150, 8, 3e-4,
                                                   false);
}

TEST_CASE("cuda decoder: GGUF models are checked as the CPU GGUF decoder checks them, without a GPU",
          "[cuda][decoder]") {
    using gg::type;
    const model_shape s{128, 4, 2, 32, 160, 256, 0, true, false};
    const gguf_layer_types l{type::q8_0, type::q4_0, type::q4_1, type::q4_0, type::q4_1, type::q4_1, type::q8_0};
    const km::gguf_model m = random_gguf_llama(s, {l, l}, type::q8_0, type::q4_0, 61);
    {  // a model the CPU GGUF decoder takes, with finite, peaked logits
        cpu_gguf<kite::pos::interleaved> cpu(m);
        const kite::matrix<float> logits = cpu.forward(random_tokens(5, 256, 60));
        for (const float x : logits.flat()) REQUIRE(std::isfinite(x));
        const std::span<const float> last(logits.row(4).data(), 256);
        std::printf("kite-gpu-err decoder/gguf_random_cpu_logits max %.2f, top-2 margin %.3f\n",
                    static_cast<double>(*std::max_element(last.begin(), last.end())), top2_margin(last));
    }
    // A llama file rotates interleaved pairs: a rotate_half decoder refuses it with the CPU's sentence.
    using gpu_rh = gpu_decoder<kite::attn::gqa, kite::pos::rotate_half>;
    KITE_REQUIRE_THROWS_CONTAINING(gpu_rh(m, f32_opts()), kite::config_error, "rope<kite::pos::interleaved>");
    using gpu_il = gpu_decoder<kite::attn::gqa, kite::pos::interleaved>;
    kc::decoder_options bad = f32_opts();
    bad.weights = kc::weight_format::int8_rows;  // a GGUF model's formats are its own: f32 / bf16 for floats only
    KITE_REQUIRE_THROWS_CONTAINING(gpu_il(m, bad), kite::invalid_argument, "for a GGUF model");
    bad = f32_opts();
    bad.max_tokens = 0;
    REQUIRE_THROWS_AS(gpu_il(m, bad), kite::invalid_argument);
    km::gguf_model broken = m;
    std::mt19937 g(1);
    broken.blocks[1].o = random_ggml(type::q8_0, 128, 64, 0.1f, g);  // [hidden][q_dim] expected: [128][128]
    REQUIRE_THROWS_AS(gpu_il(broken, f32_opts()), kite::format_error);
}

TEST_CASE("cuda decoder: GGUF Q8_0 / Q4_0 / Q4_1 projections as stored equal the CPU GGUF decoder",
          "[cuda][decoder][gpu]") {
    KITE_NEED_GPU();
    using kite::pos::interleaved;
    using gg::type;
    // Layer 0: q|k|v of three types (three device matrices), gate|up of one (one matrix);
    // layer 1: q|k|v of one type, gate|up of two. Head dim 64: paged_decode, and flash prefill
    // with a bf16 cache.
    const model_shape s{256, 8, 2, 64, 384, 512, 0, true, false};
    const std::vector<gguf_layer_types> layers{
        {type::q8_0, type::q4_0, type::q4_1, type::q4_0, type::q4_1, type::q4_1, type::q8_0},
        {type::q4_0, type::q4_0, type::q4_0, type::q8_0, type::q8_0, type::q4_0, type::q4_1}};
    const auto prompt = random_tokens(33, 512, 62);
    // The same weights on both sides, fp32 arithmetic and cache: as close as the f32 checkpoints.
    const double bar = 5e-6;  // the H200 measured at most 1.8e-6
    {
        const km::gguf_model m = random_gguf_llama(s, layers, type::q8_0, type::q4_1, 63);
        REQUIRE(m.blocks[0].qkv.segments().size() == 3);
        compare_gguf<interleaved>("gguf_q8q4q4_untied_q4_1_head", m, f32_opts(), prompt, 16, bar, true);
        kc::decoder_options o = f32_opts();
        o.prefill_chunk = 16;  // chunks of 16, 16, 1: the mixed projections' multi-row path
        compare_gguf<interleaved>("gguf_q8q4q4_untied_chunked", m, o, prompt, 16, bar, true);
        o = f32_opts();
        o.paged_decode_kernel = false;
        compare_gguf<interleaved>("gguf_q8q4q4_untied_own_attention", m, o, prompt, 16, bar, true);
        // A bf16 cache on both sides (flash prefill on the GPU): the bf16 bar of the f32 cases.
        o = f32_opts();
        o.kv = kc::dtype::bf16;
        compare_gguf<interleaved, kite::bf16>("gguf_q8q4q4_untied_bf16kv_flash", m, o, prompt, 16, 5e-3, false);
    }
    {
        // Tied to an F16 embedding: the classifier is that F16 tensor, uploaded as f32 (exact).
        std::vector<gguf_layer_types> mixed = layers;
        mixed[1].k = type::f16;  // q (Q4_0) | k (F16 -> f32) | v (Q4_0): three device matrices
        mixed[1].down = type::bf16;
        const km::gguf_model m = random_gguf_llama(s, mixed, type::f16, std::nullopt, 64);
        compare_gguf<interleaved>("gguf_mixed_floats_tied_f16", m, f32_opts(), prompt, 16, bar, true);
        kc::decoder_options o = f32_opts();
        o.prefill_chunk = 8;
        compare_gguf<interleaved>("gguf_mixed_floats_tied_f16_chunked", m, o, prompt, 16, bar, true);
        // options.weights = bf16: F16 tensors rounded to bf16 on the GPU only (a bf16 step, 2^-8).
        o = f32_opts();
        o.weights = kc::weight_format::bf16;
        compare_gguf<interleaved>("gguf_mixed_floats_tied_f16_as_bf16", m, o, prompt, 16, 5e-3, false);
    }
}

TEST_CASE("cuda decoder: the GGUF fixture files equal the CPU GGUF decoder", "[cuda][decoder][gpu]") {
    KITE_NEED_GPU();
    using kite::pos::interleaved;
    using kite::pos::rotate_half;
    // The committed fixtures; relative to the working directory when the build tree was made
    // elsewhere (a build folder carried to another machine keeps its compiled-in path).
    const auto path = [](const char* name) {
        const std::filesystem::path p = kite::test::fixture(std::string("model/gguf/") + name);
        return std::filesystem::exists(p) ? p : std::filesystem::path("tests/fixtures/model/gguf") / name;
    };
    {
        // F32, F16, BF16, Q8_0, Q4_0 and Q4_1 tensors; head_dim 16 (paged_attention).
        const km::gguf_file f(path("tiny_llama.gguf"));
        const km::gguf_model m = km::read_gguf(f);
        const auto prompt = random_tokens(19, static_cast<int>(m.config.vocab_size), 65);
        compare_gguf<interleaved>("gguf_fixture_tiny_llama", m, f32_opts(), prompt, 16, 5e-6, false);
        kc::decoder_options o = f32_opts();
        o.prefill_chunk = 5;
        compare_gguf<interleaved>("gguf_fixture_tiny_llama_chunked", m, o, prompt, 16, 5e-6, false);
        o = f32_opts();
        o.weights = kc::weight_format::bf16;  // its F16 / F32 matrices rounded to bf16 on the GPU
        compare_gguf<interleaved>("gguf_fixture_tiny_llama_floats_as_bf16", m, o, prompt, 16, 8e-3, false);
    }
    {
        // qwen2: q|k|v biases, a tied Q8_0 embedding, rotate_half.
        const km::gguf_file f(path("tiny_qwen2.gguf"));
        const km::gguf_model m = km::read_gguf(f);
        const auto prompt = random_tokens(19, static_cast<int>(m.config.vocab_size), 66);
        compare_gguf<rotate_half>("gguf_fixture_tiny_qwen2", m, f32_opts(), prompt, 16, 5e-6, false);
        kc::decoder_options o = f32_opts();
        o.prefill_chunk = 4;
        compare_gguf<rotate_half>("gguf_fixture_tiny_qwen2_chunked", m, o, prompt, 16, 5e-6, false);
    }
    {
        // K-quants decoded at load to F16 (the default) and to F32: both float tensors on the GPU.
        const km::gguf_file f(path("tiny_llama_kquants.gguf"));
        for (const gg::type to : {gg::type::f16, gg::type::f32}) {
            const km::gguf_model m = km::read_gguf(f, {.kquants_as = to});
            REQUIRE_FALSE(m.conversions.empty());
            const auto prompt = random_tokens(19, static_cast<int>(m.config.vocab_size), 67);
            compare_gguf<interleaved>("gguf_fixture_kquants_as_" + std::string(gg::name(to)), m, f32_opts(),
                                      prompt, 16, 5e-6, false);
        }
    }
}

TEST_CASE("cuda decoder: SmolLM2-135M-Instruct GGUF on the GPU equals the CPU decoder", "[.smollm2]") {
    KITE_NEED_GPU();  // first: without a GPU the case is skipped even where the model is required
    KITE_NEED_MODEL(path, "SmolLM2-135M-Instruct.Q4_1.gguf", "fetch_smollm2.py");
    using kite::pos::interleaved;
    const km::gguf_file file(path);
    const km::gguf_model m = km::read_gguf(file);
    const km::gguf_tokenizer tok(file);
    const std::vector<kite::text::chat_message> chat{{"user", "What is the capital of France?"}};
    const std::vector<std::int32_t> prompt = tok.apply_chat_template(chat, /*add_generation_prompt=*/true);
    REQUIRE(prompt.size() >= 8);
    // Q4_1 projections, a tied Q8_0 embedding: the same weights on both sides, fp32 elsewhere,
    // over 30 layers. Logits within 1e-4 at every step, the tokens equal wherever the margin is
    // decisive, and the GPU's own greedy generation equal to the CPU's for all 32 tokens (past
    // the end of the answer too: near-ties there would be reported by the margin line).
    kc::decoder_options o = f32_opts(512);
    compare_gguf<interleaved>("smollm2_q4_1_f32kv", m, o, prompt, 32, 1e-4, false, true);
    o.kv = kc::dtype::bf16;  // the serving configuration: bf16 cache (flash prefill, paged_decode)
    compare_gguf<interleaved, kite::bf16>("smollm2_q4_1_bf16kv", m, o, prompt, 32, 5e-2, false);
}
