// kite/cuda/ops.hpp against kite's CPU layers: RMSNorm (kite::model::rms_norm), SwiGLU
// (kite::model::act::gated<silu>), the residual add, the embedding gather, RoPE + KV append
// (kite::pos::rope and a kite::kv::paged cache written on the host), the causal paged attention
// (a double-precision loop) and dtype conversion. Outputs are poisoned (0xFF = NaN) first.

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <numeric>
#include <random>
#include <span>
#include <string>
#include <vector>

#include "gpu_test.hpp"
#include "kite/cuda/block_table.hpp"
#include "kite/cuda/ops.hpp"
#include "kite/kv/paged.hpp"
#include "kite/model/layers.hpp"
#include "kite/pos/rope.hpp"

namespace kc = kite::cuda;
using kite::index_t;

namespace {

std::vector<float> uniform(std::size_t n, std::uint32_t seed, float lo = -1.0f, float hi = 1.0f) {
    std::mt19937 g(seed);
    std::uniform_real_distribution<float> d(lo, hi);
    std::vector<float> v(n);
    for (auto& x : v) x = d(g);
    return v;
}

template <class T>
kc::device_buffer<T> to_device(const std::vector<T>& v) {
    return kc::device_buffer<T>(std::span<const T>(v));
}

template <class T>
std::vector<T> to_host(const kc::device_buffer<T>& b) {
    std::vector<T> v(b.size());
    b.download(v);
    return v;
}

std::vector<double> widen(std::span<const float> v) { return {v.begin(), v.end()}; }

double report(const std::string& name, std::span<const float> got, std::span<const double> want) {
    const double err = kite::test::rel_l2(got, want);
    std::printf("kite-gpu-err %s %.3e\n", name.c_str(), err);
    return err;
}

template <class T>
constexpr kc::dtype dtype_of() {
    if constexpr (std::is_same_v<T, float>) return kc::dtype::f32;
    else if constexpr (std::is_same_v<T, kite::bf16>) return kc::dtype::bf16;
    else return kc::dtype::fp16;
}

}  // namespace

TEST_CASE("cuda ops: bad arguments are refused before any launch", "[cuda][ops]") {
    REQUIRE_THROWS_AS(kc::rms_norm(nullptr, nullptr, nullptr, 1, 0, 1e-6f), kite::invalid_argument);
    REQUIRE_THROWS_AS(kc::rms_norm(nullptr, nullptr, nullptr, 1, 8, -1.0f), kite::invalid_argument);
    REQUIRE_THROWS_AS(kc::swiglu(nullptr, nullptr, 1, 0), kite::invalid_argument);
    REQUIRE_THROWS_AS(kc::add_inplace(nullptr, nullptr, -1), kite::invalid_argument);
    REQUIRE_THROWS_AS(kc::embed(nullptr, nullptr, nullptr, 1, 8), kite::invalid_argument);
    kc::rope_kv_append_args r;
    r.tokens = 1;
    r.num_heads = 4;
    r.num_kv_heads = 3;  // not a divisor
    r.head_dim = 16;
    r.rotary_dim = 16;
    r.block_tokens = 16;
    r.max_blocks_per_seq = 1;
    REQUIRE_THROWS_AS(kc::rope_kv_append(r), kite::invalid_argument);
    r.num_kv_heads = 2;
    r.rotary_dim = 17;  // odd
    REQUIRE_THROWS_AS(kc::rope_kv_append(r), kite::invalid_argument);
    r.rotary_dim = 18;  // > head_dim
    REQUIRE_THROWS_AS(kc::rope_kv_append(r), kite::invalid_argument);
    r.rotary_dim = 16;  // valid shape, null pointers
    REQUIRE_THROWS_AS(kc::rope_kv_append(r), kite::invalid_argument);
    kc::paged_attention_args a;
    a.tokens = 1;
    a.num_heads = 2;
    a.num_kv_heads = 1;
    a.head_dim = 300;  // > 256
    a.block_tokens = 16;
    a.max_blocks_per_seq = 1;
    a.scale = 0.1f;
    REQUIRE_THROWS_AS(kc::paged_attention(a), kite::invalid_argument);
    a.head_dim = 64;
    a.scale = 0.0f;
    REQUIRE_THROWS_AS(kc::paged_attention(a), kite::invalid_argument);
    REQUIRE_THROWS_AS(kc::convert(nullptr, kc::dtype::f32, nullptr, kc::dtype::bf16, -1), kite::invalid_argument);
}

TEST_CASE("cuda ops: rms_norm equals kite::model::rms_norm", "[cuda][ops][gpu]") {
    KITE_NEED_GPU();
    struct shape {
        int rows, dim;
    };
    for (const shape s : {shape{1, 1}, shape{3, 64}, shape{5, 576}, shape{7, 1000}, shape{2, 4097}, shape{33, 96}}) {
        INFO("rows " << s.rows << " dim " << s.dim);
        const auto x = uniform(static_cast<std::size_t>(s.rows) * s.dim, 11u + s.dim, -3.0f, 3.0f);
        const auto w = uniform(s.dim, 17u + s.dim, 0.5f, 1.5f);
        const float eps = 1e-5f;
        kite::model::rms_norm cpu(w, eps);
        std::vector<float> want(x.size());
        cpu.forward(kite::matrix_view<const float>(x.data(), s.rows, s.dim),
                    kite::matrix_view<float>(want.data(), s.rows, s.dim));
        auto dx = to_device(x);
        auto dw = to_device(w);
        kc::device_buffer<float> dy(x.size());
        dy.fill_bytes(0xFF);
        kc::rms_norm(dx.data(), dw.data(), dy.data(), s.rows, s.dim, eps);
        const auto got = to_host(dy);
        const double e = kite::test::rel_l2(got, widen(want));
        // In place (y aliases x), as the decoder may call it.
        kc::rms_norm(dx.data(), dw.data(), dx.data(), s.rows, s.dim, eps);
        const double e_inplace = kite::test::rel_l2(to_host(dx), widen(want));
        std::printf("kite-gpu-err rms_norm/%dx%d %.3e (in place %.3e)\n", s.rows, s.dim, e, e_inplace);
        CHECK(e <= 1e-6);
        CHECK(e_inplace <= 1e-6);
    }
}

TEST_CASE("cuda ops: swiglu equals kite's gated silu", "[cuda][ops][gpu]") {
    KITE_NEED_GPU();
    struct shape {
        int rows, inter;
    };
    for (const shape s : {shape{1, 1}, shape{4, 1536}, shape{3, 37}, shape{9, 256}}) {
        INFO("rows " << s.rows << " intermediate " << s.inter);
        const auto gu = uniform(static_cast<std::size_t>(s.rows) * 2 * s.inter, 5u + s.inter, -8.0f, 8.0f);
        std::vector<float> want(static_cast<std::size_t>(s.rows) * s.inter);
        for (int r = 0; r < s.rows; ++r) {
            std::vector<float> g(gu.begin() + static_cast<std::ptrdiff_t>(r) * 2 * s.inter,
                                 gu.begin() + static_cast<std::ptrdiff_t>(r) * 2 * s.inter + s.inter);
            kite::model::act::gated<kite::model::act::silu>(g.data(), gu.data() + static_cast<std::size_t>(r) * 2 * s.inter + s.inter,
                                                            s.inter);
            std::copy(g.begin(), g.end(), want.begin() + static_cast<std::ptrdiff_t>(r) * s.inter);
        }
        auto dgu = to_device(gu);
        kc::device_buffer<float> dout(want.size());
        dout.fill_bytes(0xFF);
        kc::swiglu(dgu.data(), dout.data(), s.rows, s.inter);
        CHECK(report("swiglu/" + std::to_string(s.rows) + "x" + std::to_string(s.inter), to_host(dout), widen(want)) <= 1e-6);
    }
}

TEST_CASE("cuda ops: add_inplace, embed and convert are exact", "[cuda][ops][gpu]") {
    KITE_NEED_GPU();
    for (const std::int64_t n : {std::int64_t{1}, std::int64_t{1000003}}) {
        const auto x = uniform(static_cast<std::size_t>(n), 3), y = uniform(static_cast<std::size_t>(n), 4);
        std::vector<double> want(x.size());
        for (std::size_t i = 0; i < x.size(); ++i) want[i] = static_cast<double>(x[i] + y[i]);
        auto dx = to_device(x);
        auto dy = to_device(y);
        kc::add_inplace(dx.data(), dy.data(), n);
        CHECK(report("add/" + std::to_string(n), to_host(dx), want) == 0.0);
    }
    {
        const int vocab = 50, dim = 70;
        const auto table = uniform(static_cast<std::size_t>(vocab) * dim, 9);
        const std::vector<std::int32_t> ids = {0, 49, 7, 7, 23};
        std::vector<double> want;
        for (const auto id : ids)
            for (int d = 0; d < dim; ++d) want.push_back(table[static_cast<std::size_t>(id) * dim + d]);
        auto dt = to_device(table);
        auto di = to_device(ids);
        kc::device_buffer<float> dout(want.size());
        dout.fill_bytes(0xFF);
        kc::embed(dt.data(), di.data(), dout.data(), static_cast<int>(ids.size()), dim);
        CHECK(report("embed", to_host(dout), want) == 0.0);
    }
    {
        auto x = uniform(4099, 21, -100.0f, 100.0f);
        x[0] = 0.0f;
        x[1] = 1.00390625f;  // a bf16 tie: rounds to even
        auto dx = to_device(x);
        kc::device_buffer<kite::bf16> db(x.size());
        kc::device_buffer<kite::fp16> dh(x.size());
        kc::device_buffer<float> dback(x.size());
        db.fill_bytes(0xFF);
        dh.fill_bytes(0xFF);
        kc::convert(dx.data(), kc::dtype::f32, db.data(), kc::dtype::bf16, static_cast<std::int64_t>(x.size()));
        kc::convert(dx.data(), kc::dtype::f32, dh.data(), kc::dtype::fp16, static_cast<std::int64_t>(x.size()));
        const auto b = to_host(db);
        const auto h = to_host(dh);
        std::size_t bad_b = 0, bad_h = 0;
        for (std::size_t i = 0; i < x.size(); ++i) {
            bad_b += b[i].bits != kite::bf16(x[i]).bits;
            bad_h += h[i].bits != kite::fp16(x[i]).bits;
        }
        std::printf("kite-gpu-err convert/f32->bf16 mismatches %zu, f32->fp16 mismatches %zu\n", bad_b, bad_h);
        CHECK(bad_b == 0);
        CHECK(bad_h == 0);
        dback.fill_bytes(0xFF);
        kc::convert(db.data(), kc::dtype::bf16, dback.data(), kc::dtype::f32, static_cast<std::int64_t>(x.size()));
        std::vector<double> want(x.size());
        for (std::size_t i = 0; i < x.size(); ++i) want[i] = b[i].to_float();
        CHECK(report("convert/bf16->f32", to_host(dback), want) == 0.0);
    }
}

namespace {

struct rope_case {
    int heads, kv_heads, head_dim, rotary_dim;
    bool interleaved, fused;       // fused: q|k|v rows of one [tokens][q_dim + 2 kv_dim] buffer
    std::vector<int> prior, fresh;  // per sequence: tokens already cached, tokens appended now
};

// The device pool must equal a kite::kv::paged<B, T> cache written on the host with the keys
// rotated by kite::pos::rope (same block ids: the GPU uses the host cache's block tables), and
// every slot the step does not write must keep its poison.
template <index_t B, class T, class Convention>
void check_rope_case(const rope_case& c, std::uint32_t seed) {
    const int nseq = static_cast<int>(c.prior.size());
    const int qd = c.heads * c.head_dim, kvd = c.kv_heads * c.head_dim;
    int tokens = 0, longest = 0;
    for (int b = 0; b < nseq; ++b) {
        tokens += c.fresh[b];
        longest = std::max(longest, c.prior[b] + c.fresh[b]);
    }
    const std::string name = std::string("rope_kv_append/") + Convention::name + "/h" + std::to_string(c.heads) + "kv" +
                             std::to_string(c.kv_heads) + "d" + std::to_string(c.head_dim) + "r" +
                             std::to_string(c.rotary_dim) + "/B" + std::to_string(B) + "/" +
                             kc::dtype_name(dtype_of<T>()) + (c.fused ? "/fused" : "/dense");
    INFO(name);
    const std::int64_t ld = c.fused ? qd + 2 * kvd : 0;
    // q, k, v of the new tokens (token-major, sequence after sequence).
    std::vector<float> q = uniform(static_cast<std::size_t>(tokens) * qd, seed, -2.0f, 2.0f);
    std::vector<float> k = uniform(static_cast<std::size_t>(tokens) * kvd, seed + 1, -2.0f, 2.0f);
    std::vector<float> v = uniform(static_cast<std::size_t>(tokens) * kvd, seed + 2, -2.0f, 2.0f);
    std::vector<std::int32_t> positions, token_seq;
    std::vector<index_t> pos_cpu;
    for (int b = 0; b < nseq; ++b)
        for (int i = 0; i < c.fresh[b]; ++i) {
            positions.push_back(c.prior[b] + i);
            pos_cpu.push_back(static_cast<index_t>(c.prior[b] + i));
            token_seq.push_back(b);
        }

    // Host oracle: the rope, then the paged cache.
    kite::pos::rope<Convention> rope({.head_dim = static_cast<index_t>(c.head_dim),
                                      .rotary_dim = static_cast<index_t>(c.rotary_dim),
                                      .base = 10000.0,
                                      .max_positions = static_cast<index_t>(longest)});
    std::vector<float> q_want = q, k_rot = k;
    rope.apply(kite::tensor_view<float, 3>(q_want.data(), {static_cast<index_t>(tokens), static_cast<index_t>(c.heads),
                                                           static_cast<index_t>(c.head_dim)}),
               pos_cpu, 1);
    rope.apply(kite::tensor_view<float, 3>(k_rot.data(), {static_cast<index_t>(tokens), static_cast<index_t>(c.kv_heads),
                                                          static_cast<index_t>(c.head_dim)}),
               pos_cpu, 1);
    const index_t blocks_per_seq = (static_cast<index_t>(longest) + B - 1) / B;
    kite::kv::paged<B, T> cache({.layers = 1, .kv_heads = static_cast<index_t>(c.kv_heads),
                                 .head_dim = static_cast<index_t>(c.head_dim)},
                                blocks_per_seq * nseq + 3);
    std::vector<kite::kv::seq_id> seqs;
    // An unused sequence first, so block ids do not start at 0 for sequence 0.
    const auto pad = *cache.add_sequence();
    REQUIRE(cache.append(pad, 2 * B) == kite::kv::status::ok);
    for (int b = 0; b < nseq; ++b) {
        seqs.push_back(*cache.add_sequence());
        REQUIRE(cache.append(seqs.back(), static_cast<index_t>(c.prior[b] + c.fresh[b])) == kite::kv::status::ok);
    }
    {
        int t = 0;
        for (int b = 0; b < nseq; ++b)
            for (int i = 0; i < c.fresh[b]; ++i, ++t)
                cache.write(0, seqs[b], static_cast<index_t>(c.prior[b] + i), k_rot.data() + static_cast<std::size_t>(t) * kvd,
                            v.data() + static_cast<std::size_t>(t) * kvd);
    }
    const kc::packed_block_tables tables = kc::pack_block_tables(cache, std::span<const kite::kv::seq_id>(seqs));

    // Device inputs: q, k, v dense or inside one fused buffer.
    std::vector<float> qkv;
    if (c.fused) {
        qkv.resize(static_cast<std::size_t>(tokens) * ld);
        for (int t = 0; t < tokens; ++t) {
            std::copy_n(q.data() + static_cast<std::size_t>(t) * qd, qd, qkv.data() + t * ld);
            std::copy_n(k.data() + static_cast<std::size_t>(t) * kvd, kvd, qkv.data() + t * ld + qd);
            std::copy_n(v.data() + static_cast<std::size_t>(t) * kvd, kvd, qkv.data() + t * ld + qd + kvd);
        }
    }
    auto dqkv = to_device(c.fused ? qkv : q);
    auto dk = to_device(k);
    auto dv = to_device(v);
    auto dpos = to_device(positions);
    auto dseq = to_device(token_seq);
    auto dtable = to_device(tables.table);
    const auto inv = rope.inv_freq();
    auto dinv = to_device(std::vector<float>(inv.begin(), inv.end()));
    const std::size_t pool_elems = cache.num_blocks() * static_cast<std::size_t>(c.kv_heads) * B * c.head_dim;
    kc::device_buffer<T> kpool(pool_elems), vpool(pool_elems);
    kpool.fill_bytes(0xFF);
    vpool.fill_bytes(0xFF);

    kc::rope_kv_append_args a;
    a.q = dqkv.data();
    a.k = c.fused ? dqkv.data() + qd : dk.data();
    a.v = c.fused ? dqkv.data() + qd + kvd : dv.data();
    a.positions = dpos.data();
    a.token_seq = dseq.data();
    a.block_table = dtable.data();
    a.k_pool = kpool.data();
    a.v_pool = vpool.data();
    a.inv_freq = dinv.data();
    a.tokens = tokens;
    a.num_heads = c.heads;
    a.num_kv_heads = c.kv_heads;
    a.head_dim = c.head_dim;
    a.rotary_dim = c.rotary_dim;
    a.block_tokens = static_cast<int>(B);
    a.max_blocks_per_seq = tables.max_blocks;
    a.interleaved = std::is_same_v<Convention, kite::pos::interleaved>;
    a.pool_type = dtype_of<T>();
    a.q_stride = ld;
    a.kv_stride = ld;
    kc::rope_kv_append(a);

    // q rotated in place.
    const auto qkv_back = to_host(dqkv);
    std::vector<float> q_got(q.size());
    for (int t = 0; t < tokens; ++t)
        std::copy_n(qkv_back.data() + static_cast<std::size_t>(t) * (c.fused ? ld : qd), qd,
                    q_got.data() + static_cast<std::size_t>(t) * qd);
    const double q_err = kite::test::rel_l2(q_got, widen(q_want));
    CHECK(q_err <= 1e-6);
    if (!c.fused) CHECK(to_host(dk) == k);  // k is read, not rotated in place

    // Pools: written slots against the host cache, the rest still poisoned.
    const auto kp = to_host(kpool);
    const auto vp = to_host(vpool);
    std::vector<float> k_got, v_got;
    std::vector<double> k_want, v_want;
    std::vector<char> written(pool_elems, 0);
    const auto view = cache.view(0, std::span<const kite::kv::seq_id>(seqs));
    for (int b = 0; b < nseq; ++b) {
        const auto table = cache.block_table(seqs[b]);
        for (int i = 0; i < c.fresh[b]; ++i) {
            const index_t p = static_cast<index_t>(c.prior[b] + i);
            for (int h = 0; h < c.kv_heads; ++h)
                for (int d = 0; d < c.head_dim; ++d) {
                    const std::size_t at = ((table[p / B] * static_cast<std::size_t>(c.kv_heads) + h) * B + p % B) * c.head_dim + d;
                    written[at] = 1;
                    k_got.push_back(kite::to_float(kp[at]));
                    v_got.push_back(kite::to_float(vp[at]));
                    k_want.push_back(kite::to_float(view.keys(b, h, p / B)[(p % B) * c.head_dim + d]));
                    v_want.push_back(kite::to_float(view.values(b, h, p / B)[(p % B) * c.head_dim + d]));
                }
        }
    }
    const double k_err = kite::test::rel_l2(k_got, k_want), v_err = kite::test::rel_l2(v_got, v_want);
    CHECK(k_err <= 1e-6);
    CHECK(v_err == 0.0);
    std::size_t stray = 0;
    for (std::size_t i = 0; i < pool_elems; ++i) {
        if (written[i]) continue;
        const float kv = kite::to_float(kp[i]), vv = kite::to_float(vp[i]);
        stray += !std::isnan(kv) || !std::isnan(vv);
    }
    // One line: the worse of q and k (expected 0: the same float operations as the CPU), then each.
    std::printf("kite-gpu-err %s %.3e (q %.3e, k_pool %.3e, v_pool %.3e, stray writes %zu)\n", name.c_str(),
                std::max(q_err, k_err), q_err, k_err, v_err, stray);
    CHECK(stray == 0);
}

}  // namespace

TEST_CASE("cuda ops: rope_kv_append equals kite::pos::rope + kite::kv::paged::write", "[cuda][ops][gpu]") {
    KITE_NEED_GPU();
    using kite::pos::interleaved;
    using kite::pos::rotate_half;
    // GQA, partial rotary, a long prior context (angles at position ~3000), ragged appends.
    const rope_case gqa{8, 2, 64, 64, false, true, {0, 5, 3000}, {7, 1, 20}};
    const rope_case partial{4, 4, 32, 16, false, true, {17, 0}, {1, 33}};
    const rope_case mqa{6, 1, 16, 16, false, false, {2}, {1}};
    const rope_case d128{4, 2, 128, 96, false, true, {100, 31, 0}, {1, 1, 1}};
    check_rope_case<16, float, rotate_half>(gqa, 100);
    check_rope_case<16, float, interleaved>(gqa, 101);
    check_rope_case<16, kite::bf16, rotate_half>(gqa, 102);
    check_rope_case<16, kite::fp16, interleaved>(gqa, 103);
    check_rope_case<5, float, rotate_half>(partial, 104);
    check_rope_case<5, kite::bf16, interleaved>(partial, 105);
    check_rope_case<1, float, interleaved>(mqa, 106);
    check_rope_case<8, float, rotate_half>(mqa, 107);
    check_rope_case<32, kite::bf16, rotate_half>(d128, 108);
    check_rope_case<32, float, interleaved>(d128, 109);
}

namespace {

struct attention_case {
    int heads, kv_heads, head_dim, block_tokens;
    std::vector<int> lengths;  // per sequence: tokens in the cache
    std::vector<int> queries;  // per sequence: queries at its last positions (each <= length)
};

// Random pools (stored as T), shuffled block tables, the queries of each sequence at its last
// positions; oracle: softmax(q k / sqrt(d)) v in double over keys [0, position].
template <class T>
void check_attention_case(const attention_case& c, std::uint32_t seed) {
    const int nseq = static_cast<int>(c.lengths.size());
    const int bt = c.block_tokens, hd = c.head_dim;
    const std::string name = "paged_attention/h" + std::to_string(c.heads) + "kv" + std::to_string(c.kv_heads) + "d" +
                             std::to_string(hd) + "/B" + std::to_string(bt) + "/" + kc::dtype_name(dtype_of<T>());
    INFO(name);
    int max_blocks = 1, total_blocks = 0;
    for (const int len : c.lengths) {
        max_blocks = std::max(max_blocks, (len + bt - 1) / bt);
        total_blocks += (len + bt - 1) / bt;
    }
    const int num_blocks = total_blocks + 2;
    std::vector<std::int32_t> ids(num_blocks);
    std::iota(ids.begin(), ids.end(), 0);
    std::mt19937 g(seed);
    std::shuffle(ids.begin(), ids.end(), g);
    std::vector<std::int32_t> table(static_cast<std::size_t>(nseq) * max_blocks, -1);
    {
        int next = 0;
        for (int b = 0; b < nseq; ++b)
            for (int i = 0; i < (c.lengths[b] + bt - 1) / bt; ++i) table[static_cast<std::size_t>(b) * max_blocks + i] = ids[next++];
    }
    const std::size_t pool_elems = static_cast<std::size_t>(num_blocks) * c.kv_heads * bt * hd;
    const auto kf = uniform(pool_elems, seed + 1, -2.0f, 2.0f), vf = uniform(pool_elems, seed + 2, -1.0f, 1.0f);
    std::vector<T> kpool(pool_elems), vpool(pool_elems);
    for (std::size_t i = 0; i < pool_elems; ++i) {
        kpool[i] = kite::from_float<T>(kf[i]);
        vpool[i] = kite::from_float<T>(vf[i]);
    }
    std::vector<std::int32_t> positions, token_seq;
    for (int b = 0; b < nseq; ++b)
        for (int i = c.lengths[b] - c.queries[b]; i < c.lengths[b]; ++i) {
            positions.push_back(i);
            token_seq.push_back(b);
        }
    const int tokens = static_cast<int>(positions.size());
    const std::int64_t q_stride = static_cast<std::int64_t>(c.heads) * hd + 8;  // not dense: a padded row
    const auto q = uniform(static_cast<std::size_t>(tokens) * q_stride, seed + 3, -1.5f, 1.5f);
    const float scale = 1.0f / std::sqrt(static_cast<float>(hd));

    std::vector<double> want(static_cast<std::size_t>(tokens) * c.heads * hd, 0.0);
    const int group = c.heads / c.kv_heads;
    for (int t = 0; t < tokens; ++t) {
        const int b = token_seq[t], pos = positions[t];
        for (int h = 0; h < c.heads; ++h) {
            const int kvh = h / group;
            const float* qr = q.data() + static_cast<std::size_t>(t) * q_stride + static_cast<std::size_t>(h) * hd;
            std::vector<double> s(pos + 1);
            double mx = -1e300;
            const auto row = [&](int j) {
                const std::int32_t blk = table[static_cast<std::size_t>(b) * max_blocks + j / bt];
                return ((static_cast<std::size_t>(blk) * c.kv_heads + kvh) * bt + j % bt) * hd;
            };
            for (int j = 0; j <= pos; ++j) {
                double dot = 0;
                for (int d = 0; d < hd; ++d) dot += static_cast<double>(qr[d]) * kite::to_float(kpool[row(j) + d]);
                s[j] = dot * scale;
                mx = std::max(mx, s[j]);
            }
            double sum = 0;
            for (int j = 0; j <= pos; ++j) sum += (s[j] = std::exp(s[j] - mx));
            double* o = want.data() + (static_cast<std::size_t>(t) * c.heads + h) * hd;
            for (int j = 0; j <= pos; ++j)
                for (int d = 0; d < hd; ++d) o[d] += s[j] / sum * kite::to_float(vpool[row(j) + d]);
        }
    }

    auto dq = to_device(q);
    auto dk = to_device(kpool);
    auto dv = to_device(vpool);
    auto dpos = to_device(positions);
    auto dseq = to_device(token_seq);
    auto dtable = to_device(table);
    kc::device_buffer<float> dout(want.size());
    dout.fill_bytes(0xFF);
    kc::paged_attention_args a;
    a.q = dq.data();
    a.o = dout.data();
    a.positions = dpos.data();
    a.token_seq = dseq.data();
    a.block_table = dtable.data();
    a.k_pool = dk.data();
    a.v_pool = dv.data();
    a.tokens = tokens;
    a.num_heads = c.heads;
    a.num_kv_heads = c.kv_heads;
    a.head_dim = hd;
    a.block_tokens = bt;
    a.max_blocks_per_seq = max_blocks;
    a.scale = scale;
    a.pool_type = dtype_of<T>();
    a.q_stride = q_stride;
    kc::paged_attention(a);
    CHECK(report(name, to_host(dout), want) <= 2e-6);
}

}  // namespace

TEST_CASE("cuda ops: paged_attention equals causal softmax attention in double", "[cuda][ops][gpu]") {
    KITE_NEED_GPU();
    // A prefill (every position of a sequence), decodes of ragged lengths (1, block boundaries,
    // lengths not multiples of 32 or of the block), GQA / MHA / MQA, head sizes 16 .. 256.
    const attention_case gqa64{4, 2, 64, 16, {1, 16, 17, 100, 333}, {1, 16, 1, 3, 1}};
    const attention_case mha16{3, 3, 16, 8, {40, 9}, {40, 9}};
    const attention_case mqa32{8, 1, 32, 5, {64, 65, 31}, {2, 1, 31}};
    const attention_case d128{4, 1, 128, 32, {1000, 7}, {1, 7}};
    const attention_case d80{2, 2, 80, 16, {50}, {50}};
    const attention_case d256{2, 1, 256, 16, {70, 33}, {1, 33}};
    check_attention_case<float>(gqa64, 200);
    check_attention_case<kite::bf16>(gqa64, 201);
    check_attention_case<float>(mha16, 202);
    check_attention_case<kite::fp16>(mha16, 203);
    check_attention_case<float>(mqa32, 204);
    check_attention_case<kite::bf16>(d128, 205);
    check_attention_case<float>(d128, 206);
    check_attention_case<float>(d80, 207);
    check_attention_case<kite::bf16>(d256, 208);
}
