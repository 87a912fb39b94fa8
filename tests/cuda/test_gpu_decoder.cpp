// kite::cuda::decoder against kite::model::decoder (attn::reference, a contiguous cache) on random
// llama-style checkpoints: tiny ones (GQA, MHA, MQA; head_dim 16 .. 128; rotate_half and
// interleaved; partial rotary; tied and untied classifiers; 2-3 layers) and one with
// SmolLM2-135M's shape but 2 layers. Logits at prefill and at every teacher-forced decode step
// (rel_l2), greedy tokens wherever the CPU's top-2 margin is decisive, batch decode equal to
// one-at-a-time, and policies / options the GPU decoder refuses.

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <random>
#include <span>
#include <string>
#include <vector>

#include "gpu_test.hpp"
#include "kite/cuda/decoder.hpp"
#include "kite/model/decoder.hpp"

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

// A random llama-style checkpoint. Linear weights N(0, 1/sqrt(in)); the embedding (and an untied
// classifier) N(0, 1), so the logits of a normalised state have a spread of ~sqrt(hidden): peaked.
km::checkpoint random_llama(const model_shape& s, std::uint32_t seed) {
    std::mt19937 g(seed);
    km::checkpoint ck;
    km::model_config& c = ck.config;
    c.arch = km::architecture::llama;
    c.model_type = "llama";
    c.vocab_size = s.vocab;
    c.hidden_size = s.hidden;
    c.intermediate_size = s.inter;
    c.num_layers = s.layers;
    c.num_heads = s.heads;
    c.num_kv_heads = s.kv_heads;
    c.head_dim = s.head_dim;
    c.max_position_embeddings = 4096;
    c.hidden_act = km::activation::silu;
    c.mlp = km::mlp_type::gated;
    c.norm = km::norm_type::rms;
    c.norm_eps = 1e-5;
    c.position = km::position_type::rope;
    c.rope_interleaved = s.interleaved;
    c.rope_theta = 10000.0;
    c.rotary_dim = static_cast<index_t>(s.rotary_dim);
    c.tie_word_embeddings = s.tied;
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
    double m = 0;
    for (std::size_t i = 0; i < a.size(); ++i) m = std::max(m, std::fabs(static_cast<double>(a[i]) - b[i]));
    return m;
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
template <class Layout, class Conv, class CpuWeights, class CpuKv, index_t B = 16>
void compare(const std::string& name, const km::checkpoint& ck, const kc::decoder_options& opt,
             std::span<const std::int32_t> prompt, int steps, double bar, bool check_tokens) {
    INFO(name);
    cpu_decoder<Layout, Conv, CpuWeights, CpuKv> cpu(ck);
    gpu_decoder<Layout, Conv, B> gpu(ck, opt);
    const index_t vocab = cpu.vocab_size();
    auto cache = cpu.make_cache(prompt.size() + static_cast<index_t>(steps) + 1);
    const auto cs = *cache.add_sequence();
    const auto gs = gpu.add_sequence();
    kite::matrix<float> c_logits(1, vocab);
    std::vector<float> g_logits(vocab);
    REQUIRE(cpu.prefill(cache, cs, prompt, c_logits.view()) == kite::kv::status::ok);
    REQUIRE(gpu.prefill(gs, prompt, g_logits) == kite::kv::status::ok);
    const double e0 = rel_err(g_logits, c_logits.flat());
    std::printf("kite-gpu-err decoder/%s/prefill %.3e (paged_decode: %s)\n", name.c_str(), e0,
                gpu.uses_paged_decode() ? "yes" : "no");
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
    const double bar = 1e-5;
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
    compare<gqa, rotate_half, kq::dense<kite::bf16>, kite::bf16>("gqa8x2_d64_bf16w_bf16kv", ck, o, prompt, 24, 2e-2, false);
    o.paged_decode_kernel = false;
    compare<gqa, rotate_half, kq::dense<kite::bf16>, kite::bf16>("gqa8x2_d64_bf16w_bf16kv_own_attention", ck, o, prompt, 24,
                                                                 2e-2, false);
    // int8 rows: both dequantize the same absmax<8> levels exactly, fp32 everywhere else.
    o = f32_opts();
    o.weights = kc::weight_format::int8_rows;
    compare<gqa, rotate_half, kq::absmax<8>, float>("gqa8x2_d64_int8w_f32kv", ck, o, prompt, 24, 2e-5, true);
    // int4, groups of 128 (symmetric, float scales): likewise the same dequantized weights.
    o.weights = kc::weight_format::int4_g128;
    compare<gqa, rotate_half, kq::absmax<4, 128>, float>("gqa8x2_d64_int4w_f32kv", ck, o, prompt, 24, 2e-5, true);
}

TEST_CASE("cuda decoder: a random model with SmolLM2-135M's shape (2 layers) equals the CPU decoder",
          "[cuda][decoder][gpu]") {
    KITE_NEED_GPU();
    using kite::attn::gqa;
    using kite::pos::rotate_half;
    // hidden 576, 9 heads over 3 kv heads of 64, intermediate 1536, vocab 49152, tied embeddings.
    const auto ck = random_llama({576, 9, 3, 64, 1536, 49152, 2, false, true}, 25);
    const auto prompt = random_tokens(30, 49152, 26);
    compare<gqa, rotate_half, kq::f32, float>("smollm2_shape_f32", ck, f32_opts(256), prompt, 24, 1e-5, true);
    kc::decoder_options o = f32_opts(256);
    o.weights = kc::weight_format::bf16;
    o.kv = kc::dtype::bf16;
    compare<gqa, rotate_half, kq::dense<kite::bf16>, kite::bf16>("smollm2_shape_bf16", ck, o, prompt, 24, 2e-2, false);
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
        CHECK(worst <= 1e-5);
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
