// kite::cuda::flash_forward against a double-precision oracle computed from the same bf16/fp16
// inputs: bf16 and fp16, head_dim 64 and 128, causal (bottom-right aligned) and not, MHA, GQA
// and MQA, variable-length batches with lengths around the tile sizes (1, 63, 64, 65, 200, 0),
// fewer queries than keys, more queries than keys (rows that see no key must be zero), and the
// optional log-sum-exp. Outputs are poisoned (NaN) before each launch, so an unwritten row fails.

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "gpu_test.hpp"
#include "kite/core/half.hpp"
#include "kite/cuda/flash.hpp"

namespace {

using kite::cuda::dtype;

struct flash_case {
    dtype type = dtype::bf16;
    int head_dim = 128;
    bool causal = false;
    int heads = 8, kv_heads = 8;
    std::vector<int> q_lens, k_lens;  // per sequence
    bool with_lse = true;
    float scale = 0;                  // 0: 1 / sqrt(head_dim)
    float q_sigma = 1.0f;             // larger: peakier softmax
    std::uint32_t seed = 1;

    std::string name() const {
        std::string s = std::string(kite::cuda::dtype_name(type)) + " d" + std::to_string(head_dim) +
                        (causal ? " causal" : " full") + " h" + std::to_string(heads) + "/" + std::to_string(kv_heads) +
                        " q{";
        for (std::size_t i = 0; i < q_lens.size(); ++i) s += (i ? "," : "") + std::to_string(q_lens[i]);
        s += "} k{";
        for (std::size_t i = 0; i < k_lens.size(); ++i) s += (i ? "," : "") + std::to_string(k_lens[i]);
        return s + "}";
    }
};

std::uint16_t to_bits(dtype t, float x) {
    return t == dtype::bf16 ? kite::bf16(x).bits : kite::fp16(x).bits;
}
float from_bits(dtype t, std::uint16_t b) {
    return t == dtype::bf16 ? kite::bf16::from_bits(b).to_float() : kite::fp16::from_bits(b).to_float();
}

struct flash_result {
    double rel_err = 0;       // ||o - ref|| / ||ref||
    double max_abs = 0;       // max |o - ref|
    double lse_max_abs = 0;   // over rows that see a key
    bool masked_rows_ok = true;  // rows that see no key: exactly zero, lse -inf
    long masked_rows = 0;
};

flash_result run_case(const flash_case& c) {
    const int batch = static_cast<int>(c.q_lens.size());
    const int H = c.heads, KH = c.kv_heads, D = c.head_dim, group = H / KH;
    const float scale = c.scale > 0 ? c.scale : 1.0f / std::sqrt(static_cast<float>(D));
    std::vector<std::int32_t> cu_q(batch + 1, 0), cu_k(batch + 1, 0);
    int max_q = 0, max_k = 0;
    for (int b = 0; b < batch; ++b) {
        cu_q[b + 1] = cu_q[b] + c.q_lens[b];
        cu_k[b + 1] = cu_k[b] + c.k_lens[b];
        max_q = std::max(max_q, c.q_lens[b]);
        max_k = std::max(max_k, c.k_lens[b]);
    }
    const std::size_t total_q = cu_q[batch], total_k = cu_k[batch];

    // Inputs rounded to the 16-bit type once: the kernel and the oracle see the same numbers.
    std::mt19937 rng(c.seed);
    std::normal_distribution<float> nd(0.0f, 1.0f);
    const auto make = [&](std::size_t n, float sigma, std::vector<std::uint16_t>& bits, std::vector<double>& vals) {
        bits.resize(n);
        vals.resize(n);
        for (std::size_t i = 0; i < n; ++i) {
            bits[i] = to_bits(c.type, sigma * nd(rng));
            vals[i] = from_bits(c.type, bits[i]);
        }
    };
    std::vector<std::uint16_t> qb, kb, vb;
    std::vector<double> q, k, v;
    make(total_q * H * D, c.q_sigma, qb, q);  // [total_q][H][D]
    make(total_k * KH * D, 1.0f, kb, k);      // [total_k][KH][D]
    make(total_k * KH * D, 1.0f, vb, v);

    kite::cuda::device_buffer<std::uint16_t> dq(std::max<std::size_t>(qb.size(), 8)), dk(std::max<std::size_t>(kb.size(), 8)),
        dv(std::max<std::size_t>(vb.size(), 8)), dout(std::max<std::size_t>(qb.size(), 8));
    std::vector<std::uint16_t> pad;
    const auto upload = [&](kite::cuda::device_buffer<std::uint16_t>& d, const std::vector<std::uint16_t>& h) {
        pad.assign(d.size(), 0);
        std::copy(h.begin(), h.end(), pad.begin());
        d.upload(pad);
    };
    upload(dq, qb);
    upload(dk, kb);
    upload(dv, vb);
    dout.fill_bytes(0xFF);
    kite::cuda::device_buffer<std::int32_t> dcu_q{std::span<const std::int32_t>(cu_q)};
    kite::cuda::device_buffer<std::int32_t> dcu_k{std::span<const std::int32_t>(cu_k)};
    kite::cuda::device_buffer<float> dlse(std::max<std::size_t>(total_q * H, 1));
    dlse.fill_bytes(0xFF);

    kite::cuda::flash_args a;
    a.q = dq.data();
    a.k = dk.data();
    a.v = dv.data();
    a.o = dout.data();
    a.cu_seqlens_q = dcu_q.data();
    a.cu_seqlens_k = dcu_k.data();
    a.batch = batch;
    a.max_seqlen_q = max_q;
    a.max_seqlen_k = max_k;
    a.num_heads = H;
    a.num_kv_heads = KH;
    a.head_dim = D;
    a.causal = c.causal;
    a.scale = scale;
    a.type = c.type;
    a.lse = c.with_lse ? dlse.data() : nullptr;
    kite::cuda::flash_forward(a);
    kite::cuda::synchronize();

    std::vector<std::uint16_t> ob(dout.size());
    dout.download(ob);
    std::vector<float> lse(dlse.size());
    dlse.download(lse);

    // Oracle: softmax(scale * q k^T) v per (sequence, head, query) in double.
    std::vector<float> out(total_q * H * D);
    std::vector<double> ref(total_q * H * D, 0.0);
    for (std::size_t i = 0; i < out.size(); ++i) out[i] = from_bits(c.type, ob[i]);
    flash_result r;
    std::vector<double> s;
    for (int b = 0; b < batch; ++b) {
        const int ql = c.q_lens[b], kl = c.k_lens[b];
        for (int h = 0; h < H; ++h) {
            const int kh = h / group;
            for (int i = 0; i < ql; ++i) {
                const std::size_t row = static_cast<std::size_t>(cu_q[b] + i);
                const int limit = c.causal ? std::clamp(kl - ql + i + 1, 0, kl) : kl;  // keys j < limit
                const double* qi = &q[(row * H + h) * D];
                double* oi = &ref[(row * H + h) * D];
                if (limit == 0) {
                    ++r.masked_rows;
                    for (int d = 0; d < D; ++d)
                        if (out[(row * H + h) * D + d] != 0.0f) r.masked_rows_ok = false;
                    if (c.with_lse && !(std::isinf(lse[h * total_q + row]) && lse[h * total_q + row] < 0))
                        r.masked_rows_ok = false;
                    continue;
                }
                s.assign(limit, 0.0);
                double mx = -std::numeric_limits<double>::infinity();
                for (int j = 0; j < limit; ++j) {
                    const double* kj = &k[(static_cast<std::size_t>(cu_k[b] + j) * KH + kh) * D];
                    double dot = 0;
                    for (int d = 0; d < D; ++d) dot += qi[d] * kj[d];
                    s[j] = scale * dot;
                    mx = std::max(mx, s[j]);
                }
                double l = 0;
                for (int j = 0; j < limit; ++j) {
                    s[j] = std::exp(s[j] - mx);
                    l += s[j];
                }
                for (int j = 0; j < limit; ++j) {
                    const double* vj = &v[(static_cast<std::size_t>(cu_k[b] + j) * KH + kh) * D];
                    const double w = s[j] / l;
                    for (int d = 0; d < D; ++d) oi[d] += w * vj[d];
                }
                if (c.with_lse) {
                    const double e = std::abs(static_cast<double>(lse[h * total_q + row]) - (mx + std::log(l)));
                    r.lse_max_abs = std::isnan(e) ? e : std::max(r.lse_max_abs, e);
                }
            }
        }
    }
    r.rel_err = kite::test::rel_l2(out, ref);
    for (std::size_t i = 0; i < out.size(); ++i) {
        const double e = std::abs(static_cast<double>(out[i]) - ref[i]);
        r.max_abs = std::isnan(e) ? e : std::max(r.max_abs, e);
        if (std::isnan(e)) break;
    }
    return r;
}

/// Checks one case against the bars of its type and prints the measured errors.
void check_case(const flash_case& c) {
    const flash_result r = run_case(c);
    const std::string n = c.name();
    std::printf("kite-gpu-err flash %s rel_l2 %.3e max_abs %.3e lse %.3e masked_rows %ld\n", n.c_str(), r.rel_err,
                r.max_abs, r.lse_max_abs, r.masked_rows);
    INFO(n << ": rel_l2 " << r.rel_err << ", max_abs " << r.max_abs << ", lse err " << r.lse_max_abs);
    // bf16 keeps 8 significant bits (output rounding alone is ~1e-3 rms relative), fp16 11; P is
    // rounded to the same type before the P V product. lse is computed in fp32 from exact-in-fp32
    // scores, so it is off by fp32 rounding and the SFU's exp2/log2 only.
    // Bars: about twice the largest error measured on an H200 over all cases (bf16 rel_l2 2.2e-3,
    // max abs 9.7e-3; fp16 2.7e-4, 1.2e-3; lse 5.8e-6).
    const double rel_bar = c.type == dtype::bf16 ? 5e-3 : 6e-4;
    const double abs_bar = c.type == dtype::bf16 ? 2e-2 : 3e-3;
    CHECK(r.rel_err <= rel_bar);  // NaN fails
    CHECK(r.max_abs <= abs_bar);
    CHECK(r.masked_rows_ok);
    if (c.with_lse) CHECK(r.lse_max_abs <= 2e-5);
}

}  // namespace

TEST_CASE("cuda::flash_forward matches the double oracle over types, head dims, masks and head groupings",
          "[cuda][gpu][flash]") {
    KITE_NEED_GPU();
    const std::vector<int> lens = {1, 63, 64, 65, 200, 0, 129};
    std::uint32_t seed = 100;
    for (dtype t : {dtype::bf16, dtype::fp16})
        for (int d : {64, 128})
            for (bool causal : {false, true})
                for (int kvh : {8, 2, 1}) {
                    flash_case c;
                    c.type = t;
                    c.head_dim = d;
                    c.causal = causal;
                    c.heads = 8;
                    c.kv_heads = kvh;
                    c.q_lens = lens;
                    c.k_lens = lens;
                    c.with_lse = kvh != 2;  // lse on and off
                    c.seed = seed++;
                    check_case(c);
                }
}

TEST_CASE("cuda::flash_forward with fewer queries than keys (bottom-right causal) and longer sequences",
          "[cuda][gpu][flash]") {
    KITE_NEED_GPU();
    std::uint32_t seed = 200;
    for (dtype t : {dtype::bf16, dtype::fp16})
        for (int d : {64, 128})
            for (bool causal : {false, true}) {
                flash_case c;
                c.type = t;
                c.head_dim = d;
                c.causal = causal;
                c.heads = 4;
                c.kv_heads = 2;
                // q 17 over k 100 (the example of the header), a decode-like single query, a
                // chunked-prefill tail, and a long sequence that crosses many key tiles.
                c.q_lens = {17, 1, 130, 300, 700};
                c.k_lens = {100, 300, 257, 1000, 700};
                c.seed = seed++;
                check_case(c);
            }
    for (dtype t : {dtype::bf16, dtype::fp16}) {  // a peaky softmax keeps its accuracy
        flash_case c;
        c.type = t;
        c.causal = true;
        c.heads = 2;
        c.kv_heads = 1;
        c.q_lens = {300};
        c.k_lens = {300};
        c.q_sigma = 4.0f;  // scores of sd ~4: the running max changes often, rows are nearly one-hot
        c.seed = seed++;
        check_case(c);
    }
}

TEST_CASE("cuda::flash_forward gives zero rows (lse -inf) to queries that see no key", "[cuda][gpu][flash]") {
    KITE_NEED_GPU();
    std::uint32_t seed = 300;
    for (dtype t : {dtype::bf16, dtype::fp16})
        for (int d : {64, 128}) {
            flash_case c;
            c.type = t;
            c.head_dim = d;
            c.causal = true;
            c.heads = 4;
            c.kv_heads = 1;
            // q > k, causal: the first q - k queries see nothing; q 300 over k 20 leaves two whole
            // 128-query tiles without a key. k 0 (non-empty q) sees nothing either.
            c.q_lens = {200, 300, 10, 5};
            c.k_lens = {50, 20, 0, 5};
            c.seed = seed++;
            check_case(c);
            c.causal = false;  // only the k 0 sequence is masked now
            c.seed = seed++;
            check_case(c);
        }
}

TEST_CASE("cuda::flash_forward rejects bad arguments before touching the device", "[cuda][flash]") {
    // Fake but non-null addresses: every call below fails its checks before any CUDA call.
    alignas(16) static std::uint16_t fake[64];
    alignas(16) static std::int32_t fake_cu[2] = {0, 1};
    kite::cuda::flash_args good;
    good.q = fake;
    good.k = fake;
    good.v = fake;
    good.o = fake;
    good.cu_seqlens_q = fake_cu;
    good.cu_seqlens_k = fake_cu;
    good.batch = 1;
    good.max_seqlen_q = 1;
    good.max_seqlen_k = 1;
    good.num_heads = 8;
    good.num_kv_heads = 2;
    good.head_dim = 128;
    good.scale = 0.125f;
    good.type = dtype::bf16;
    const auto bad = [&](auto edit) {
        kite::cuda::flash_args a = good;
        edit(a);
        return a;
    };
    using kite::cuda::flash_forward;
    REQUIRE_THROWS_AS(flash_forward(bad([](auto& a) { a.type = dtype::f32; })), kite::invalid_argument);
    REQUIRE_THROWS_AS(flash_forward(bad([](auto& a) { a.head_dim = 96; })), kite::invalid_argument);
    REQUIRE_THROWS_AS(flash_forward(bad([](auto& a) { a.head_dim = 256; })), kite::invalid_argument);
    REQUIRE_THROWS_AS(flash_forward(bad([](auto& a) { a.num_kv_heads = 3; })), kite::invalid_argument);
    REQUIRE_THROWS_AS(flash_forward(bad([](auto& a) { a.num_kv_heads = 0; })), kite::invalid_argument);
    REQUIRE_THROWS_AS(flash_forward(bad([](auto& a) { a.num_heads = 0; })), kite::invalid_argument);
    REQUIRE_THROWS_AS(flash_forward(bad([](auto& a) { a.batch = 0; })), kite::invalid_argument);
    REQUIRE_THROWS_AS(flash_forward(bad([](auto& a) { a.max_seqlen_q = -1; })), kite::invalid_argument);
    REQUIRE_THROWS_AS(flash_forward(bad([](auto& a) { a.scale = 0.0f; })), kite::invalid_argument);
    REQUIRE_THROWS_AS(flash_forward(bad([](auto& a) { a.scale = -1.0f; })), kite::invalid_argument);
    REQUIRE_THROWS_AS(flash_forward(bad([](auto& a) { a.scale = std::nanf(""); })), kite::invalid_argument);
    REQUIRE_THROWS_AS(flash_forward(bad([](auto& a) { a.scale = std::numeric_limits<float>::infinity(); })),
                      kite::invalid_argument);
    REQUIRE_THROWS_AS(flash_forward(bad([](auto& a) { a.q = nullptr; })), kite::invalid_argument);
    REQUIRE_THROWS_AS(flash_forward(bad([](auto& a) { a.k = nullptr; })), kite::invalid_argument);
    REQUIRE_THROWS_AS(flash_forward(bad([](auto& a) { a.v = nullptr; })), kite::invalid_argument);
    REQUIRE_THROWS_AS(flash_forward(bad([](auto& a) { a.o = nullptr; })), kite::invalid_argument);
    REQUIRE_THROWS_AS(flash_forward(bad([](auto& a) { a.cu_seqlens_q = nullptr; })), kite::invalid_argument);
    REQUIRE_THROWS_AS(flash_forward(bad([](auto& a) { a.cu_seqlens_k = nullptr; })), kite::invalid_argument);
    REQUIRE_THROWS_AS(flash_forward(bad([](auto& a) { a.q = reinterpret_cast<const char*>(fake) + 2; })),
                      kite::invalid_argument);  // not 16-byte aligned
}
