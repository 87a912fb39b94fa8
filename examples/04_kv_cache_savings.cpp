// 04: how much a KV cache costs, and why MQA and GQA exist.
//
// Decoding token t attends over the keys and values of tokens 0..t. Recomputing them every
// step would cost O(t) projections per token, so models cache them: per token, each layer
// stores one key and one value row per KV head. The cache holds
//     2 (K and V) x tokens x layers x kv_heads x head_dim x bytes per number
// and with multi-head attention (kv_heads == heads) it dominates memory at long contexts.
// Multi-query attention keeps one KV head, grouped-query attention a few; query heads share
// them. This program prints the sizes for real model shapes, then checks on a small problem
// that GQA over the small cache computes exactly what MHA computes over a cache in which every
// KV head is repeated for its query group (what the model "sees"), at a fraction of the memory.
#include <cstdio>
#include <vector>

#include "kite/attn.hpp"
#include "kite/core/half.hpp"
#include "kite/kv.hpp"

#include "cli.hpp"

namespace {

struct model_shape {
    const char* name;
    kite::index_t layers, heads, kv_heads, head_dim;
    const char* layout;
};

double gib(kite::index_t bytes) { return static_cast<double>(bytes) / (1024.0 * 1024.0 * 1024.0); }

}  // namespace

int main(int argc, char** argv) {
    kite::cli::parser cli("kite-kv-cache-savings", "How much a KV cache costs, and why MQA and GQA exist.");
    return kite::cli::run(cli, argc, argv, [&]() -> int {
        using kite::index_t;
        const model_shape models[] = {
            {"Llama-2-7B", 32, 32, 32, 128, "MHA"},
            {"Llama-2-70B", 80, 64, 8, 128, "GQA 8"},
            {"Llama-3-8B", 32, 32, 8, 128, "GQA 8"},
            {"Mistral-7B", 32, 32, 8, 128, "GQA 8"},
            {"Qwen2-7B", 28, 28, 4, 128, "GQA 4"},
            {"Falcon-7B", 32, 71, 1, 64, "MQA"},
        };
        const index_t tokens = 4096;
        std::printf("KV cache for one sequence of %zu tokens, bf16 (2 bytes per number)\n\n", tokens);
        std::printf("%-12s %-6s %6s %6s %8s %8s %12s %14s\n", "model", "layout", "layers", "heads", "kv_heads",
                    "head_dim", "cache (GiB)", "as MHA (GiB)");
        for (const auto& m : models) {
            const index_t bytes = kite::attn::kv_cache_bytes(tokens, m.layers, m.kv_heads, m.head_dim, 2);
            const index_t mha = kite::attn::kv_cache_bytes(tokens, m.layers, m.heads, m.head_dim, 2);
            std::printf("%-12s %-6s %6zu %6zu %8zu %8zu %12.3f %14.3f\n", m.name, m.layout, m.layers, m.heads, m.kv_heads,
                        m.head_dim, gib(bytes), gib(mha));
        }

        // GQA over a cache of n_kv heads == MHA over the cache with each KV head repeated n_q / n_kv
        // times. A small problem: 1 layer, 8 query heads, 2 KV heads, 300 cached tokens.
        const index_t n_q = 8, n_kv = 2, d = 64, ctx = 300, group = n_q / n_kv;
        kite::kv::contiguous<kite::bf16> gqa_cache({1, n_kv, d}, ctx);
        kite::kv::contiguous<kite::bf16> mha_cache({1, n_q, d}, ctx);
        const auto s_gqa = *gqa_cache.add_sequence();
        const auto s_mha = *mha_cache.add_sequence();
        (void)gqa_cache.append(s_gqa, ctx);
        (void)mha_cache.append(s_mha, ctx);
        std::vector<float> k(ctx * n_kv * d), v(k.size()), k_rep(ctx * n_q * d), v_rep(k_rep.size());
        for (index_t i = 0; i < k.size(); ++i) {
            k[i] = static_cast<float>((i * 37) % 101) / 101.0f - 0.5f;
            v[i] = static_cast<float>((i * 53) % 97) / 97.0f - 0.5f;
        }
        for (index_t t = 0; t < ctx; ++t)
            for (index_t h = 0; h < n_q; ++h)
                for (index_t c = 0; c < d; ++c) {
                    k_rep[(t * n_q + h) * d + c] = k[(t * n_kv + h / group) * d + c];
                    v_rep[(t * n_q + h) * d + c] = v[(t * n_kv + h / group) * d + c];
                }
        gqa_cache.write(0, s_gqa, 0, kite::tensor_view<const float, 3>(k.data(), {ctx, n_kv, d}),
                        kite::tensor_view<const float, 3>(v.data(), {ctx, n_kv, d}));
        mha_cache.write(0, s_mha, 0, kite::tensor_view<const float, 3>(k_rep.data(), {ctx, n_q, d}),
                        kite::tensor_view<const float, 3>(v_rep.data(), {ctx, n_q, d}));

        std::vector<float> q(n_q * d), o_gqa(n_q * d), o_mha(n_q * d);
        for (index_t i = 0; i < q.size(); ++i) q[i] = static_cast<float>((i * 29) % 89) / 89.0f - 0.5f;
        const kite::tensor_view<const float, 3> qv(q.data(), {1, n_q, d});
        const std::vector<kite::kv::seq_id> g{s_gqa}, m{s_mha};
        kite::attn::decode<kite::attn::gqa>(qv, gqa_cache.view(0, g), kite::tensor_view<float, 3>(o_gqa.data(), {1, n_q, d}));
        kite::attn::decode<kite::attn::mha>(qv, mha_cache.view(0, m), kite::tensor_view<float, 3>(o_mha.data(), {1, n_q, d}));
        float worst = 0;
        for (index_t i = 0; i < o_gqa.size(); ++i) worst = std::max(worst, std::abs(o_gqa[i] - o_mha[i]));
        std::printf("\nGQA (%zu query heads on %zu KV heads) vs MHA on the repeated cache, %zu tokens:\n", n_q, n_kv, ctx);
        std::printf("  cache bytes: GQA %zu, MHA %zu (%.0fx smaller); max |difference| of the outputs: %.2g\n",
                    gqa_cache.stats().bytes_used, mha_cache.stats().bytes_used,
                    static_cast<double>(mha_cache.stats().bytes_used) / static_cast<double>(gqa_cache.stats().bytes_used),
                    static_cast<double>(worst));
        return worst <= 1e-5f ? 0 : 1;
    });
}
