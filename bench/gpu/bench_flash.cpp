// kite_gpu_bench flash: kite::cuda::flash_forward on the shapes of bench/gpu/torch_sdpa.py (bf16,
// 16 heads, MHA; d 128 at 4k x 4 and 16k x 1 tokens, d 64 at 4k x 4; causal and not). FLOPs are
// 4 * batch * heads * seq^2 * d (half of that causal), as FlashAttention counts them. Before
// timing, a few hundred output rows are checked against a host reference on the same data, and
// the case reports ok = false above 2e-2 relative error: the table must not show a fast wrong kernel.

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <string>
#include <vector>

#include "gpu_bench.hpp"
#include "kite/core/half.hpp"
#include "kite/cuda/flash.hpp"

namespace kite::bench::gpu {

namespace {

/// n bf16 values, uniform with variance 1 (splitmix64): fast enough for 10^8 values.
std::vector<std::uint16_t> random_bf16(std::size_t n, std::uint64_t seed) {
    std::vector<std::uint16_t> out(n);
    std::uint64_t state = seed * 0x9e3779b97f4a7c15ull + 1;
    for (auto& x : out) {
        std::uint64_t z = (state += 0x9e3779b97f4a7c15ull);
        z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
        z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
        z ^= z >> 31;
        const float u = static_cast<float>(z >> 40) * (1.0f / 16777216.0f);  // [0, 1)
        x = kite::bf16((2.0f * u - 1.0f) * 1.7320508f).bits;
    }
    return out;
}

float bf(std::uint16_t b) { return kite::bf16::from_bits(b).to_float(); }

/// Relative L2 error of `rows` sampled output rows ([tokens][heads][d] layout, equal q and k
/// lengths per sequence) against softmax(scale q k^T) v in double on the host.
double sampled_error(const std::vector<std::uint16_t>& q, const std::vector<std::uint16_t>& k,
                     const std::vector<std::uint16_t>& v, const std::vector<std::uint16_t>& o, int batch, int seq,
                     int heads, int d, bool causal, float scale, int rows) {
    double num = 0, den = 0;
    std::vector<double> s(seq), acc(d);
    for (int n = 0; n < rows; ++n) {
        // Spread over sequences, heads and positions; include each sequence's first and last row.
        const int b = n % batch, h = (n * 7) % heads;
        const int i = n < 2 * batch ? (n < batch ? 0 : seq - 1)
                                    : static_cast<int>((static_cast<std::int64_t>(n) * 2654435761ll) % seq);
        const std::size_t row = static_cast<std::size_t>(b) * seq + i;
        const int limit = causal ? i + 1 : seq;
        double mx = -1e300;
        for (int j = 0; j < limit; ++j) {
            const std::size_t kr = static_cast<std::size_t>(b) * seq + j;
            double dot = 0;
            for (int e = 0; e < d; ++e) dot += double(bf(q[(row * heads + h) * d + e])) * bf(k[(kr * heads + h) * d + e]);
            s[j] = scale * dot;
            mx = std::max(mx, s[j]);
        }
        double l = 0;
        std::fill(acc.begin(), acc.end(), 0.0);
        for (int j = 0; j < limit; ++j) {
            const double p = std::exp(s[j] - mx);
            l += p;
            const std::size_t kr = static_cast<std::size_t>(b) * seq + j;
            for (int e = 0; e < d; ++e) acc[e] += p * bf(v[(kr * heads + h) * d + e]);
        }
        for (int e = 0; e < d; ++e) {
            const double ref = acc[e] / l, got = bf(o[(row * heads + h) * d + e]);
            num += (got - ref) * (got - ref);
            den += ref * ref;
        }
    }
    if (std::isnan(num) || std::isnan(den) || den == 0) return std::nan("");
    return std::sqrt(num / den);
}

void bench_shape(int batch, int seq, int d, bool causal) {
    constexpr int heads = 16;
    const std::size_t n = static_cast<std::size_t>(batch) * seq * heads * d;
    const auto hq = random_bf16(n, 1), hk = random_bf16(n, 2), hv = random_bf16(n, 3);
    kite::cuda::device_buffer<std::uint16_t> q{std::span<const std::uint16_t>(hq)}, k{std::span<const std::uint16_t>(hk)},
        v{std::span<const std::uint16_t>(hv)}, o(n);
    std::vector<std::int32_t> cu(batch + 1);
    for (int b = 0; b <= batch; ++b) cu[b] = b * seq;
    kite::cuda::device_buffer<std::int32_t> dcu{std::span<const std::int32_t>(cu)};

    kite::cuda::flash_args a;
    a.q = q.data();
    a.k = k.data();
    a.v = v.data();
    a.o = o.data();
    a.cu_seqlens_q = dcu.data();
    a.cu_seqlens_k = dcu.data();
    a.batch = batch;
    a.max_seqlen_q = seq;
    a.max_seqlen_k = seq;
    a.num_heads = heads;
    a.num_kv_heads = heads;
    a.head_dim = d;
    a.causal = causal;
    a.scale = 1.0f / std::sqrt(static_cast<float>(d));
    a.type = kite::cuda::dtype::bf16;

    const std::string params = "bf16 d" + std::to_string(d) + " b" + std::to_string(batch) + " s" + std::to_string(seq) +
                               " h" + std::to_string(heads) + " causal=" + std::to_string(causal ? 1 : 0);
    o.fill_bytes(0xFF);
    kite::cuda::flash_forward(a);
    kite::cuda::synchronize();
    std::vector<std::uint16_t> ho(n);
    o.download(ho);
    const int rows = seq > 8192 ? 96 : 256;
    const double err = sampled_error(hq, hk, hv, ho, batch, seq, heads, d, causal, a.scale, rows);
    const bool ok = err <= 2e-2;  // NaN fails
    std::fprintf(stderr, "flash_fwd %s: rel_l2 %.3e over %d sampled rows%s\n", params.c_str(), err, rows,
                 ok ? "" : " (WRONG OUTPUT)");

    const double ms = median_ms([&](int) { kite::cuda::flash_forward(a); }, 5, 21, 1);
    const double flops = 4.0 * batch * heads * double(seq) * seq * d * (causal ? 0.5 : 1.0);
    report("flash_fwd", params, ms, flops / (ms * 1e-3) / 1e12, 0, ok);
}

}  // namespace

void bench_flash() {
    // (batch, seq, dim, causal): the SHAPES of bench/gpu/torch_sdpa.py, in the same order.
    bench_shape(4, 4096, 128, false);
    bench_shape(4, 4096, 128, true);
    bench_shape(1, 16384, 128, false);
    bench_shape(1, 16384, 128, true);
    bench_shape(4, 4096, 64, false);
    bench_shape(4, 4096, 64, true);
}

}  // namespace kite::bench::gpu
