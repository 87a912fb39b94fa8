// 05: parallel sampling with a paged KV cache.
//
// n samples continue one prompt. A contiguous cache gives each sample its own reservation of
// max_seq_len tokens and copies the prompt into it. A paged cache (PagedAttention) stores
// tokens in 16-token blocks through a block table: fork() lets every sample point at the
// prompt's blocks (reference counted), and a block is copied only when a sample writes into a
// block it shares that is partly filled — here, once per sample, for the prompt's last block.
// Decode attention reads the blocks through the table; this program checks it computes the
// same thing as over the contiguous copies, and prints the memory both use.
#include <cstdio>
#include <vector>

#include "kite/attn.hpp"
#include "kite/kv.hpp"

#include "cli.hpp"

namespace {

// Deterministic stand-in for a model's K or V projection of token `t` of sample `s`.
void fake_rows(std::vector<float>& out, kite::index_t t, kite::index_t s, float phase) {
    for (kite::index_t i = 0; i < out.size(); ++i)
        out[i] = static_cast<float>(((t * 131 + s * 17 + i * 7) % 211)) / 211.0f - 0.5f + phase;
}

double mib(kite::index_t b) { return static_cast<double>(b) / 1048576.0; }

}  // namespace

int main(int argc, char** argv) {
    kite::cli::parser cli("kite-paged-sampling", "Parallel sampling with a paged KV cache (copy-on-write forks).");
    return kite::cli::run(cli, argc, argv, [&]() -> int {
        using kite::index_t;
        namespace kv = kite::kv;
        const kv::cache_shape shape{2, 4, 64};  // layers, kv heads, head dim (a small model)
        const index_t n_q = 16, prompt = 1000, samples = 8, generate = 45, max_len = 2048;
        const index_t row = shape.kv_heads * shape.head_dim;

        kv::paged<16, float> paged(shape, 1024);
        kv::contiguous<float> contig(shape, max_len);

        // Prefill the prompt once in the paged cache; the contiguous cache needs a copy per sample.
        std::vector<float> k(prompt * row), v(prompt * row);
        const auto parent = *paged.add_sequence();
        if (paged.append(parent, prompt) != kv::status::ok) return 1;
        for (index_t l = 0; l < shape.layers; ++l) {
            fake_rows(k, 0, 0, 0.0f);
            fake_rows(v, 0, 0, 0.25f);
            paged.write(l, parent, 0, kite::tensor_view<const float, 3>(k.data(), {prompt, shape.kv_heads, shape.head_dim}),
                        kite::tensor_view<const float, 3>(v.data(), {prompt, shape.kv_heads, shape.head_dim}));
        }
        std::vector<kv::seq_id> kids, copies;
        for (index_t s = 0; s < samples; ++s) {
            kids.push_back(*paged.fork(parent));
            copies.push_back(*contig.add_sequence());  // a reservation of max_len tokens per sample
            if (contig.append(copies.back(), prompt) != kv::status::ok) return 1;
            for (index_t l = 0; l < shape.layers; ++l)
                contig.write(l, copies.back(), 0,
                             kite::tensor_view<const float, 3>(k.data(), {prompt, shape.kv_heads, shape.head_dim}),
                             kite::tensor_view<const float, 3>(v.data(), {prompt, shape.kv_heads, shape.head_dim}));
        }
        paged.free(parent);  // the samples keep the prompt's blocks alive

        // Decode: every sample appends its own token per step, then attends over its cache.
        std::vector<float> kr(row), vr(row), q(samples * n_q * shape.head_dim), o1(q.size()), o2(q.size());
        float worst = 0;
        for (index_t step = 0; step < generate; ++step) {
            for (index_t s = 0; s < samples; ++s) {
                if (paged.append(kids[s], 1) != kv::status::ok || contig.append(copies[s], 1) != kv::status::ok) {
                    std::printf("out of cache memory at step %zu: a scheduler would preempt a sample here\n", step);
                    return 1;
                }
                for (index_t l = 0; l < shape.layers; ++l) {
                    fake_rows(kr, prompt + step, s + 1, 0.0f);
                    fake_rows(vr, prompt + step, s + 1, 0.25f);
                    paged.write(l, kids[s], prompt + step, kr.data(), vr.data());
                    contig.write(l, copies[s], prompt + step, kr.data(), vr.data());
                }
            }
            fake_rows(q, step, 99, 0.0f);
            const kite::tensor_view<const float, 3> qv(q.data(), {samples, n_q, shape.head_dim});
            for (index_t l = 0; l < shape.layers; ++l) {
                kite::attn::decode<kite::attn::gqa>(qv, paged.view(l, kids),
                                                    kite::tensor_view<float, 3>(o1.data(), {samples, n_q, shape.head_dim}));
                kite::attn::decode<kite::attn::gqa>(qv, contig.view(l, copies),
                                                    kite::tensor_view<float, 3>(o2.data(), {samples, n_q, shape.head_dim}));
                for (index_t i = 0; i < o1.size(); ++i) worst = std::max(worst, std::abs(o1[i] - o2[i]));
            }
        }

        const auto p = paged.stats(), c = contig.stats();
        std::printf("%zu samples of a %zu-token prompt, %zu new tokens each (%zu layers, %zu kv heads, dim %zu)\n\n",
                    samples, prompt, generate, shape.layers, shape.kv_heads, shape.head_dim);
        std::printf("%-28s %12s %12s\n", "", "contiguous", "paged<16>");
        std::printf("%-28s %12zu %12zu\n", "tokens seen by the samples", c.tokens_logical, p.tokens_logical);
        std::printf("%-28s %12zu %12zu\n", "token slots stored", c.tokens_stored, p.tokens_stored);
        std::printf("%-28s %12.1f %12.1f\n", "MiB reserved", mib(c.bytes_reserved), mib(p.bytes_reserved));
        std::printf("%-28s %11.1f%% %11.1f%%\n", "reserved but unused", 100.0 * c.waste_fraction(), 100.0 * p.waste_fraction());
        std::printf("%-28s %12s %12zu\n", "blocks copied on write", "-", paged.copies_on_write());
        std::printf("\nmax |paged - contiguous| over all decode outputs: %.2g\n", static_cast<double>(worst));
        return worst <= 1e-5f ? 0 : 1;
    });
}
