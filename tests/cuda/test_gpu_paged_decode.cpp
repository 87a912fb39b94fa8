// kite::cuda::paged_decode against kite::attn::reference::decode (float64 scores, exact softmax)
// over the same kite::kv::paged<B, T> cache: f32, bf16 and fp16 pools; MHA, GQA, MQA (and groups
// of 3 and 12 query heads: a masked head and two head chunks); head_dim 64 and 128; blocks of 8,
// 12, 16 and 32 tokens; lengths {0, 1, 15, 16, 17, 1000, 5000} in one batch; splits forced to 1
// and 3, and automatic. Each sequence's blocks are scattered over the pool in a random order
// (the free list is shuffled first), the pool slots that hold no token (block tails, spare
// blocks) are NaN, and the outputs and the split workspace are poisoned with NaN, so a kernel
// that reads a token it must not, or leaves an output unwritten, fails.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "gpu_test.hpp"
#include "kite/attn.hpp"
#include "kite/cuda/block_table.hpp"
#include "kite/cuda/paged_decode.hpp"
#include "kite/kv.hpp"

using namespace kite;
namespace kcu = kite::cuda;

namespace {

template <class T>
constexpr kcu::dtype dtype_of() {
    if constexpr (std::is_same_v<T, float>) {
        return kcu::dtype::f32;
    } else if constexpr (std::is_same_v<T, bf16>) {
        return kcu::dtype::bf16;
    } else {
        return kcu::dtype::fp16;
    }
}

template <class T>
T nan_of() {
    if constexpr (std::is_same_v<T, float>) {
        return std::numeric_limits<float>::quiet_NaN();
    } else if constexpr (std::is_same_v<T, bf16>) {
        return bf16::from_bits(0x7fc0);
    } else {
        return fp16::from_bits(0x7e00);
    }
}

struct decode_case {
    index_t n_kv = 1, group = 1, d = 128;
    std::vector<index_t> lens{0, 1, 15, 16, 17, 1000, 5000};
    int splits = 0;  // 0: automatic
    std::uint64_t seed = 1;
};

template <index_t Block, class T>
void check_decode(const decode_case& c, double bar) {
    const index_t batch = c.lens.size(), n_kv = c.n_kv, d = c.d, n_q = n_kv * c.group;
    const std::string label = std::string(kcu::dtype_name(dtype_of<T>())) + " block " + std::to_string(Block) +
                              " n_q " + std::to_string(n_q) + " n_kv " + std::to_string(n_kv) + " d " +
                              std::to_string(d) + " splits " + (c.splits ? std::to_string(c.splits) : "auto");
    INFO(label);
    index_t need = 0;
    for (const index_t l : c.lens) need += (l + Block - 1) / Block;
    kv::paged<Block, T> cache({1, n_kv, d}, need + 3);

    // Shuffle the free list: take every block, give them back in a random order.
    std::mt19937_64 g(c.seed);
    {
        std::vector<kv::seq_id> fillers;
        for (index_t i = 0; i < cache.num_blocks(); ++i) {
            fillers.push_back(*cache.add_sequence());
            REQUIRE(cache.append(fillers.back(), Block) == kv::status::ok);
        }
        std::shuffle(fillers.begin(), fillers.end(), g);
        for (const auto s : fillers) cache.free(s);
    }
    // The sequences grow one block at a time, round robin, so their blocks interleave too.
    std::vector<kv::seq_id> ids;
    for (index_t b = 0; b < batch; ++b) ids.push_back(*cache.add_sequence());
    for (std::vector<index_t> left = c.lens;;) {
        bool any = false;
        for (index_t b = 0; b < batch; ++b) {
            const index_t n = std::min(Block, left[b]);
            if (n == 0) continue;
            REQUIRE(cache.append(ids[b], n) == kv::status::ok);
            left[b] -= n;
            any = true;
        }
        if (!any) break;
    }
    for (index_t b = 0; b < batch; ++b) {
        const index_t len = c.lens[b];
        if (len == 0) continue;
        const auto k = kite::test::randn(len * n_kv * d, c.seed * 100 + 2 * b);
        const auto v = kite::test::randn(len * n_kv * d, c.seed * 100 + 2 * b + 1);
        cache.write(0, ids[b], 0, tensor_view<const float, 3>(k.data(), {len, n_kv, d}),
                    tensor_view<const float, 3>(v.data(), {len, n_kv, d}));
    }

    // The device pools: the cache's rows of every (block, kv head) at the same place, NaN elsewhere.
    const auto view = cache.view(0, std::span<const kv::seq_id>(ids));
    const std::size_t pool_elems = cache.num_blocks() * n_kv * Block * d;
    std::vector<T> kpool(pool_elems, nan_of<T>()), vpool(pool_elems, nan_of<T>());
    for (index_t b = 0; b < batch; ++b) {
        const auto table = cache.block_table(ids[b]);
        for (index_t blk = 0; blk < table.size(); ++blk) {
            const index_t rows = std::min(Block, c.lens[b] - blk * Block);
            for (index_t h = 0; h < n_kv; ++h) {
                const std::size_t at = ((table[blk] * n_kv + h) * Block) * d;
                std::copy_n(view.keys(b, h, blk), rows * d, kpool.begin() + at);
                std::copy_n(view.values(b, h, blk), rows * d, vpool.begin() + at);
            }
        }
    }
    const kcu::packed_block_tables tab = kcu::pack_block_tables(cache, std::span<const kv::seq_id>(ids));

    // q rounded to T once: the kernel and the oracle see the same values.
    const auto q0 = kite::test::randn(batch * n_q * d, c.seed * 7 + 3);
    std::vector<T> q(q0.size());
    std::vector<float> qf(q0.size());
    for (std::size_t i = 0; i < q0.size(); ++i) {
        q[i] = from_float<T>(q0[i]);
        qf[i] = to_float(q[i]);
    }
    const float scale = 1.25f / std::sqrt(static_cast<float>(d));

    kcu::device_buffer<T> dq{std::span<const T>(q)}, dk{std::span<const T>(kpool)}, dv{std::span<const T>(vpool)};
    kcu::device_buffer<T> dout(batch * n_q * d);
    kcu::device_buffer<std::int32_t> dtab{std::span<const std::int32_t>(tab.table)},
        dlen{std::span<const std::int32_t>(tab.lengths)};
    dout.fill_bytes(0xFF);
    kcu::paged_decode_args a;
    a.q = dq.data();
    a.k_pool = dk.data();
    a.v_pool = dv.data();
    a.o = dout.data();
    a.block_table = dtab.data();
    a.seq_lens = dlen.data();
    a.batch = static_cast<int>(batch);
    a.num_heads = static_cast<int>(n_q);
    a.num_kv_heads = static_cast<int>(n_kv);
    a.head_dim = static_cast<int>(d);
    a.block_tokens = static_cast<int>(Block);
    a.max_blocks_per_seq = tab.max_blocks;
    a.max_seq_len = tab.max_length;
    a.scale = scale;
    a.type = dtype_of<T>();
    a.num_splits = c.splits;
    const int splits = kcu::paged_decode_splits(a);
    if (c.splits > 0) CHECK(splits == c.splits);
    const std::size_t ws_floats = kcu::paged_decode_workspace_floats(a);
    CHECK((ws_floats == 0) == (splits == 1));
    kcu::device_buffer<float> ws(std::max<std::size_t>(ws_floats, 1));
    ws.fill_bytes(0xFF);
    a.workspace = ws_floats ? ws.data() : nullptr;
    kcu::paged_decode(a);
    kcu::synchronize();
    std::vector<T> out_t(batch * n_q * d);
    dout.download(out_t);
    std::vector<float> got(out_t.size());
    for (std::size_t i = 0; i < got.size(); ++i) got[i] = to_float(out_t[i]);

    std::vector<float> want(got.size());
    attn::options opt;
    opt.scale = scale;
    attn::reference::decode<attn::gqa>(tensor_view<const float, 3>(qf.data(), {batch, n_q, d}), view,
                                       tensor_view<float, 3>(want.data(), {batch, n_q, d}), opt);
    const std::vector<double> want64(want.begin(), want.end());
    const double err = kite::test::rel_l2(got, want64);
    std::printf("kite-gpu-err paged_decode %s (%d splits) %.3e\n", label.c_str(), splits, err);
    CHECK(err <= bar);
    // Sequences of length 0 attend to nothing: exactly zero.
    for (index_t b = 0; b < batch; ++b) {
        if (c.lens[b] != 0) continue;
        bool zero = true;
        for (index_t i = 0; i < n_q * d; ++i) zero = zero && got[b * n_q * d + i] == 0.0f;
        CHECK(zero);
    }
    // Each sequence on its own, so a bad one is named.
    for (index_t b = 0; b < batch; ++b) {
        const std::span<const float> gb(got.data() + b * n_q * d, n_q * d);
        const std::span<const double> wb(want64.data() + b * n_q * d, n_q * d);
        const double e = kite::test::rel_l2(gb, wb);
        INFO("sequence " << b << " of length " << c.lens[b] << ": rel_l2 " << e);
        // A long sequence's output averages many values: its norm shrinks, the rounding does not
        // (f32 at 5,000 tokens: 6.8e-7 on the H200, against 8e-8 over the batch).
        CHECK(e <= 4 * bar);
    }
}

// f32 math with f32 K/V: the online softmax and the split merge round in fp32 (a host emulation of
// the kernel measured ~7e-8; the H200 at most 8.4e-8).
constexpr double bar_f32 = 3e-7;
// bf16 / fp16 K/V and q are the same values on both sides; o is rounded once to bf16 (8
// significant bits) or fp16 (11 bits): the H200 measured at most 1.01e-3 and 1.33e-4.
constexpr double bar_bf16 = 2e-3;
constexpr double bar_fp16 = 3e-4;

}  // namespace

TEST_CASE("cuda::paged_decode f32: MHA, GQA, MQA; splits 1, 3, auto", "[cuda][paged_decode][gpu]") {
    KITE_NEED_GPU();
    for (const int splits : {1, 3, 0}) {
        check_decode<16, float>({.n_kv = 4, .group = 1, .d = 128, .splits = splits, .seed = 11}, bar_f32);
        check_decode<16, float>({.n_kv = 2, .group = 4, .d = 128, .splits = splits, .seed = 12}, bar_f32);
        check_decode<16, float>({.n_kv = 1, .group = 8, .d = 64, .splits = splits, .seed = 13}, bar_f32);
    }
    check_decode<32, float>({.n_kv = 2, .group = 4, .d = 64, .splits = 0, .seed = 14}, bar_f32);
    check_decode<8, float>({.n_kv = 2, .group = 4, .d = 128, .splits = 3, .seed = 15}, bar_f32);
    check_decode<12, float>({.n_kv = 2, .group = 3, .d = 128, .splits = 0, .seed = 16}, bar_f32);
    check_decode<32, float>({.n_kv = 1, .group = 12, .d = 128, .splits = 1, .seed = 17}, bar_f32);
}

TEST_CASE("cuda::paged_decode bf16: GQA, MHA, MQA, odd blocks", "[cuda][paged_decode][gpu]") {
    KITE_NEED_GPU();
    for (const int splits : {1, 3, 0})
        check_decode<16, bf16>({.n_kv = 2, .group = 4, .d = 128, .splits = splits, .seed = 21}, bar_bf16);
    check_decode<16, bf16>({.n_kv = 1, .group = 12, .d = 128, .splits = 0, .seed = 22}, bar_bf16);
    check_decode<32, bf16>({.n_kv = 4, .group = 1, .d = 64, .splits = 3, .seed = 23}, bar_bf16);
    check_decode<8, bf16>({.n_kv = 2, .group = 4, .d = 64, .splits = 0, .seed = 24}, bar_bf16);
    check_decode<12, bf16>({.n_kv = 2, .group = 4, .d = 128, .splits = 1, .seed = 25}, bar_bf16);
    check_decode<16, bf16>({.n_kv = 1, .group = 8, .d = 64, .splits = 1, .seed = 26}, bar_bf16);
}

TEST_CASE("cuda::paged_decode fp16: GQA, MQA, a group of 3", "[cuda][paged_decode][gpu]") {
    KITE_NEED_GPU();
    for (const int splits : {1, 3, 0})
        check_decode<16, fp16>({.n_kv = 2, .group = 4, .d = 128, .splits = splits, .seed = 31}, bar_fp16);
    check_decode<8, fp16>({.n_kv = 2, .group = 3, .d = 64, .splits = 0, .seed = 32}, bar_fp16);
    check_decode<32, fp16>({.n_kv = 1, .group = 8, .d = 128, .splits = 3, .seed = 33}, bar_fp16);
    check_decode<16, fp16>({.n_kv = 8, .group = 2, .d = 64, .splits = 1, .seed = 34}, bar_fp16);
}

TEST_CASE("cuda::paged_decode rejects bad arguments before any CUDA call", "[cuda][paged_decode]") {
    auto* fake = reinterpret_cast<void*>(std::uintptr_t{4096});
    const auto* ifake = reinterpret_cast<const std::int32_t*>(std::uintptr_t{8192});
    kcu::paged_decode_args good;
    good.q = good.k_pool = good.v_pool = fake;
    good.o = fake;
    good.block_table = good.seq_lens = ifake;
    good.batch = 2;
    good.num_heads = 8;
    good.num_kv_heads = 2;
    good.head_dim = 128;
    good.block_tokens = 16;
    good.max_blocks_per_seq = 4;
    good.max_seq_len = 64;
    good.scale = 0.1f;
    good.type = kcu::dtype::bf16;
    good.num_splits = 3;  // forced: no device query; and no workspace
    REQUIRE_THROWS_AS(kcu::paged_decode(good), kite::invalid_argument);  // splits > 1 without workspace
    // Forced splits are planned without a device: the workspace is [batch][heads][splits][head_dim + 2].
    CHECK(kcu::paged_decode_splits(good) == 3);
    CHECK(kcu::paged_decode_workspace_floats(good) == std::size_t{2} * 8 * 3 * (128 + 2));
    {
        auto one = good;
        one.num_splits = 1;
        CHECK(kcu::paged_decode_workspace_floats(one) == 0);
    }
    auto bad = [&](auto change) {
        kcu::paged_decode_args a = good;
        a.num_splits = 1;
        change(a);
        REQUIRE_THROWS_AS(kcu::paged_decode(a), kite::invalid_argument);
    };
    bad([](kcu::paged_decode_args& a) { a.q = nullptr; });
    bad([](kcu::paged_decode_args& a) { a.k_pool = nullptr; });
    bad([](kcu::paged_decode_args& a) { a.o = nullptr; });
    bad([](kcu::paged_decode_args& a) { a.block_table = nullptr; });
    bad([](kcu::paged_decode_args& a) { a.seq_lens = nullptr; });
    bad([](kcu::paged_decode_args& a) { a.batch = 0; });
    bad([](kcu::paged_decode_args& a) { a.num_kv_heads = 3; });
    bad([](kcu::paged_decode_args& a) { a.head_dim = 96; });
    bad([](kcu::paged_decode_args& a) { a.block_tokens = 0; });
    bad([](kcu::paged_decode_args& a) { a.max_blocks_per_seq = 0; });
    bad([](kcu::paged_decode_args& a) { a.num_splits = -1; });
    bad([](kcu::paged_decode_args& a) { a.scale = -1.0f; });
    bad([](kcu::paged_decode_args& a) { a.k_pool = static_cast<char*>(a.o) + 2; });
    bad([](kcu::paged_decode_args& a) { a.type = static_cast<kcu::dtype>(7); });
}
