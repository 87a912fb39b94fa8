// kite_gpu_bench decode: kite::cuda::paged_decode at the shape (batch 64, 4k context,
// 32 query / 8 kv heads, head_dim 128, bf16, blocks of 16 tokens: 1 GiB of K and V per call) and
// at batch 8 with a 32k context (where the split-K path matters). Each sequence's blocks are a
// random permutation of the pool; calls alternate between two separately allocated pools (2 GiB
// in all, far past the L2), so every call streams its K/V from device memory. Before timing,
// two sequences are checked against a float64 host reference (the "ok" field).
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <numeric>
#include <random>
#include <string>
#include <vector>

#include "gpu_bench.hpp"
#include "kite/core/half.hpp"
#include "kite/cuda/paged_decode.hpp"

namespace kite::bench::gpu {

namespace {

// n bf16 values uniform in [-1, 1) from a xorshift stream (cheap for a GiB of them).
std::vector<std::uint16_t> random_bf16(std::size_t n, std::uint64_t seed) {
    std::vector<std::uint16_t> v(n);
    std::uint64_t s = seed * 0x9e3779b97f4a7c15ull + 1;
    for (std::size_t i = 0; i < n; i += 4) {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        for (std::size_t j = 0; j < 4 && i + j < n; ++j) {
            const float u = static_cast<float>((s >> (16 * j)) & 0xffff) / 32768.0f - 1.0f;
            v[i + j] = kite::detail::float_to_bf16_bits(u);
        }
    }
    return v;
}

float bf(std::uint16_t b) { return kite::detail::bf16_bits_to_float(b); }

void bench_decode_case(int batch, int ctx, int heads, int kv_heads, int d, int block) {
    constexpr int pools = 2;
    const int bps = ctx / block;  // blocks per sequence
    const std::size_t nblocks = static_cast<std::size_t>(batch) * bps;
    const std::size_t elems = nblocks * kv_heads * block * d;  // per pool, K (and the same for V)
    const auto hk = random_bf16(elems, 1), hv = random_bf16(elems, 2);
    const auto hq = random_bf16(static_cast<std::size_t>(batch) * heads * d, 3);

    std::vector<kite::cuda::device_buffer<std::uint16_t>> dk, dv;
    std::vector<kite::cuda::device_buffer<std::int32_t>> dtab;
    std::vector<std::vector<std::int32_t>> tables;
    std::mt19937_64 g(42);
    for (int p = 0; p < pools; ++p) {
        dk.emplace_back(std::span<const std::uint16_t>(hk));
        dv.emplace_back(std::span<const std::uint16_t>(hv));
        std::vector<std::int32_t> t(nblocks);  // [batch][bps]: a random permutation of the pool
        std::iota(t.begin(), t.end(), 0);
        std::shuffle(t.begin(), t.end(), g);
        dtab.emplace_back(std::span<const std::int32_t>(t));
        tables.push_back(std::move(t));
    }
    const std::vector<std::int32_t> lens(batch, ctx);
    kite::cuda::device_buffer<std::int32_t> dlen{std::span<const std::int32_t>(lens)};
    kite::cuda::device_buffer<std::uint16_t> dq{std::span<const std::uint16_t>(hq)};
    kite::cuda::device_buffer<std::uint16_t> dout(static_cast<std::size_t>(batch) * heads * d);

    const float scale = 1.0f / std::sqrt(static_cast<float>(d));
    kite::cuda::paged_decode_args a;
    a.q = dq.data();
    a.o = dout.data();
    a.seq_lens = dlen.data();
    a.batch = batch;
    a.num_heads = heads;
    a.num_kv_heads = kv_heads;
    a.head_dim = d;
    a.block_tokens = block;
    a.max_blocks_per_seq = bps;
    a.max_seq_len = ctx;
    a.scale = scale;
    a.type = kite::cuda::dtype::bf16;
    a.num_splits = 0;
    auto use_pool = [&](int p) {
        a.k_pool = dk[p].data();
        a.v_pool = dv[p].data();
        a.block_table = dtab[p].data();
    };
    use_pool(0);
    const int splits = kite::cuda::paged_decode_splits(a);
    const std::size_t wsn = kite::cuda::paged_decode_workspace_floats(a);
    kite::cuda::device_buffer<float> ws(std::max<std::size_t>(wsn, 1));
    a.workspace = wsn ? ws.data() : nullptr;

    // Check sequences 0 and batch - 1 (every head) against float64 on the host.
    dout.fill_bytes(0xFF);
    kite::cuda::paged_decode(a);
    kite::cuda::synchronize();
    std::vector<std::uint16_t> ho(dout.size());
    dout.download(ho);
    const int group = heads / kv_heads;
    double num = 0, den = 0;
    for (const int b : {0, batch - 1}) {
        for (int h = 0; h < heads; ++h) {
            const int kvh = h / group;
            const std::uint16_t* q = hq.data() + (static_cast<std::size_t>(b) * heads + h) * d;
            std::vector<double> s(ctx), o(d, 0.0);
            double mx = -1e300;
            for (int t = 0; t < ctx; ++t) {
                const std::size_t blk = tables[0][static_cast<std::size_t>(b) * bps + t / block];
                const std::uint16_t* k = hk.data() + ((blk * kv_heads + kvh) * block + t % block) * d;
                double dot = 0;
                for (int i = 0; i < d; ++i) dot += static_cast<double>(bf(q[i])) * bf(k[i]);
                s[t] = scale * dot;
                mx = std::max(mx, s[t]);
            }
            double sum = 0;
            for (int t = 0; t < ctx; ++t) {
                const double p = std::exp(s[t] - mx);
                sum += p;
                const std::size_t blk = tables[0][static_cast<std::size_t>(b) * bps + t / block];
                const std::uint16_t* v = hv.data() + ((blk * kv_heads + kvh) * block + t % block) * d;
                for (int i = 0; i < d; ++i) o[i] += p * bf(v[i]);
            }
            for (int i = 0; i < d; ++i) {
                const double want = o[i] / sum;
                const double got = bf(ho[(static_cast<std::size_t>(b) * heads + h) * d + i]);
                num += (got - want) * (got - want);
                den += want * want;
            }
        }
    }
    const double err = std::sqrt(num / den);
    const bool ok = std::isfinite(err) && err < 1e-2;
    std::fprintf(stderr, "paged_decode batch %d ctx %d: rel_l2 vs float64 %.3e (%d splits)\n", batch, ctx, err, splits);

    const double ms = median_ms(
        [&](int i) {
            use_pool(i % pools);
            kite::cuda::paged_decode(a);
        },
        3, 21, 1);
    const double bytes = 2.0 * static_cast<double>(batch) * ctx * kv_heads * d * 2 +  // K + V
                         2.0 * static_cast<double>(batch) * heads * d * 2;              // q + o
    const std::string params = "batch " + std::to_string(batch) + ", ctx " + std::to_string(ctx) + ", h " +
                               std::to_string(heads) + ", kv " + std::to_string(kv_heads) + ", d " + std::to_string(d) +
                               ", bf16, block " + std::to_string(block) + ", " + std::to_string(splits) + " splits";
    report("paged_decode", params, ms, 0, bytes / (ms * 1e-3) / 1e9, ok);
}

}  // namespace

void bench_paged_decode() {
    bench_decode_case(64, 4096, 32, 8, 128, 16);
    bench_decode_case(8, 32768, 32, 8, 128, 16);
}

}  // namespace kite::bench::gpu
