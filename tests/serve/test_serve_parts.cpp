// The parts the serving engine is built from: the batch-invariant attention kernel, the
// decoder's ragged forward pass, the paged cache's truncate / adopt, and the prefix cache.

#include <cstring>
#include <numeric>
#include <tuple>
#include <random>
#include <vector>

#include "kite/attn.hpp"
#include "kite/kv/contiguous.hpp"
#include "kite/kv/paged.hpp"
#include "kite/serve/prefix_cache.hpp"
#include "serve_test_util.hpp"

namespace ka = kite::attn;
namespace kk = kite::kv;
using kite::index_t;
using kite::matrix;

namespace {

std::vector<float> randn(index_t n, std::uint64_t seed) {
    std::mt19937_64 rng(seed);
    std::normal_distribution<float> nd;
    std::vector<float> v(n);
    for (auto& x : v) x = nd(rng);
    return v;
}

bool same_bits(const float* a, const float* b, index_t n) { return std::memcmp(a, b, n * sizeof(float)) == 0; }

}  // namespace

TEST_CASE("invariant attention equals the reference kernel and is bit-identical across chunks, batches, caches and threads",
          "[serve][attn]") {
    // The SIMD path (head_dim a multiple of the vector width, GQA groups of 3, SmolLM2's shape;
    // groups of 8 and head_dim 128, which it serves in several passes of heads) and the generic
    // path (head_dim 40).
    const auto [n_q, n_kv, d, L] = GENERATE(std::tuple<index_t, index_t, index_t, index_t>{9, 3, 64, 70},
                                            std::tuple<index_t, index_t, index_t, index_t>{8, 1, 64, 45},
                                            std::tuple<index_t, index_t, index_t, index_t>{6, 2, 128, 33},
                                            std::tuple<index_t, index_t, index_t, index_t>{6, 2, 40, 37});
    INFO("n_q " << n_q << " n_kv " << n_kv << " head_dim " << d << " tokens " << L);
    const kk::cache_shape shape{1, n_kv, d};
    const auto q = randn(L * n_q * d, 1), k = randn(L * n_kv * d, 2), v = randn(L * n_kv * d, 3);
    const auto tokens = [&, d = d](const std::vector<float>& x, index_t first, index_t n, index_t heads) {
        return kite::tensor_view<const float, 3>(x.data() + first * heads * d, {n, heads, d}, {heads * d, d, 1});
    };
    // Reference: the whole sequence in one prefill.
    kk::contiguous<float> c1(shape, L, L);
    const auto s1 = *c1.add_sequence();
    REQUIRE(c1.append(s1, L) == kk::status::ok);
    c1.write(0, s1, 0, tokens(k, 0, L, n_kv), tokens(v, 0, L, n_kv));
    const kk::seq_id one[1] = {s1};
    std::vector<float> ref(L * n_q * d), whole(L * n_q * d);
    const kite::tensor_view<const float, 4> q4(q.data(), {1, L, n_q, d}, {L * n_q * d, n_q * d, d, 1});
    ka::reference::prefill<ka::gqa>(q4, c1.view(0, one), kite::tensor_view<float, 4>(ref.data(), {1, L, n_q, d}, {L * n_q * d, n_q * d, d, 1}), {});
    ka::invariant::prefill<ka::gqa>(q4, c1.view(0, one), kite::tensor_view<float, 4>(whole.data(), {1, L, n_q, d}, {L * n_q * d, n_q * d, d, 1}), {});
    // Measured max |invariant - reference| 3.6e-7 (head_dim 64) / 4.8e-7 (40): float sums vs double.
    CHECK(kite::test::max_abs_diff(std::span<const float>(whole), std::span<const float>(ref)) <= 1e-6);

    // Paged (block 4), the prompt in chunks of 5, then token by token in a batch with a decoy
    // sequence, on 1 thread: every row bit-identical to the one-call contiguous result.
    kk::paged<4> pc(shape, 128);
    const auto decoy = *pc.add_sequence(), s = *pc.add_sequence();
    std::vector<float> out(L * n_q * d);
    index_t pos = 0;
    for (; pos + 5 <= L - 12; pos += 5) {
        REQUIRE(pc.append(s, 5) == kk::status::ok);
        pc.write(0, s, pos, tokens(k, pos, 5, n_kv), tokens(v, pos, 5, n_kv));
        const kk::seq_id ss[1] = {s};
        ka::invariant::prefill<ka::gqa>(
            kite::tensor_view<const float, 4>(q.data() + pos * n_q * d, {1, 5, n_q, d}, {5 * n_q * d, n_q * d, d, 1}),
            pc.view(0, ss), kite::tensor_view<float, 4>(out.data() + pos * n_q * d, {1, 5, n_q, d}, {5 * n_q * d, n_q * d, d, 1}),
            {.threads = 1});
    }
    const auto dk = randn(n_kv * d, 9);
    for (; pos < L; ++pos) {
        REQUIRE(pc.append(s, 1) == kk::status::ok);
        REQUIRE(pc.append(decoy, 1) == kk::status::ok);
        pc.write(0, s, pos, k.data() + pos * n_kv * d, v.data() + pos * n_kv * d);
        pc.write(0, decoy, pc.length(decoy) - 1, dk.data(), dk.data());
        const kk::seq_id both[2] = {decoy, s};
        std::vector<float> qq(2 * n_q * d), oo(2 * n_q * d);
        std::copy_n(q.data() + pos * n_q * d, n_q * d, qq.data() + n_q * d);
        std::copy_n(q.data(), n_q * d, qq.data());
        ka::invariant::decode<ka::gqa>(kite::tensor_view<const float, 3>(qq.data(), {2, n_q, d}, {n_q * d, d, 1}),
                                       pc.view(0, both), kite::tensor_view<float, 3>(oo.data(), {2, n_q, d}, {n_q * d, d, 1}), {});
        std::copy_n(oo.data() + n_q * d, n_q * d, out.data() + pos * n_q * d);
    }
    for (index_t t = 0; t < L; ++t) {
        INFO("token " << t);
        CHECK(same_bits(out.data() + t * n_q * d, whole.data() + t * n_q * d, n_q * d));
    }
    // A NaN in one query is refused, naming q.
    auto bad = q;
    bad[3] = std::numeric_limits<float>::quiet_NaN();
    const kite::tensor_view<const float, 4> qb(bad.data(), {1, L, n_q, d}, {L * n_q * d, n_q * d, d, 1});
    CHECK_THROWS_AS(ka::invariant::prefill<ka::gqa>(qb, c1.view(0, one), kite::tensor_view<float, 4>(whole.data(), {1, L, n_q, d}, {L * n_q * d, n_q * d, d, 1}), {}),
                    kite::invalid_argument);
}

TEST_CASE("invariant attention on bfloat16 / float16 caches: rows widened in registers, the same bits in any cache layout",
          "[serve][attn]") {
    const index_t n_q = 9, n_kv = 3, d = 64, L = 41;
    const kk::cache_shape shape{1, n_kv, d};
    const auto q = randn(L * n_q * d, 11), k = randn(L * n_kv * d, 12), v = randn(L * n_kv * d, 13);
    const auto run = [&]<class T>(T) {
        kk::contiguous<T> c1(shape, L, L);
        const auto s1 = *c1.add_sequence();
        REQUIRE(c1.append(s1, L) == kk::status::ok);
        c1.write(0, s1, 0, kite::tensor_view<const float, 3>(k.data(), {L, n_kv, d}, {n_kv * d, d, 1}),
                 kite::tensor_view<const float, 3>(v.data(), {L, n_kv, d}, {n_kv * d, d, 1}));
        const kk::seq_id one[1] = {s1};
        const kite::tensor_view<const float, 4> q4(q.data(), {1, L, n_q, d}, {L * n_q * d, n_q * d, d, 1});
        std::vector<float> ref(L * n_q * d), whole(L * n_q * d), paged_out(L * n_q * d);
        ka::reference::prefill<ka::gqa>(q4, c1.view(0, one), kite::tensor_view<float, 4>(ref.data(), {1, L, n_q, d}, {L * n_q * d, n_q * d, d, 1}), {});
        ka::invariant::prefill<ka::gqa>(q4, c1.view(0, one), kite::tensor_view<float, 4>(whole.data(), {1, L, n_q, d}, {L * n_q * d, n_q * d, d, 1}), {});
        // Both read the same stored (rounded) rows: float sums against double, as for float caches.
        CHECK(kite::test::max_abs_diff(std::span<const float>(whole), std::span<const float>(ref)) <= 1e-6);
        // The same rows through a paged cache of 4-token blocks, in one call on one thread.
        kk::paged<4, T> pc(shape, 64);
        const auto s = *pc.add_sequence();
        REQUIRE(pc.append(s, L) == kk::status::ok);
        pc.write(0, s, 0, kite::tensor_view<const float, 3>(k.data(), {L, n_kv, d}, {n_kv * d, d, 1}),
                 kite::tensor_view<const float, 3>(v.data(), {L, n_kv, d}, {n_kv * d, d, 1}));
        const kk::seq_id ss[1] = {s};
        ka::invariant::prefill<ka::gqa>(q4, pc.view(0, ss), kite::tensor_view<float, 4>(paged_out.data(), {1, L, n_q, d}, {L * n_q * d, n_q * d, d, 1}),
                                        {.threads = 1});
        CHECK(same_bits(paged_out.data(), whole.data(), L * n_q * d));
    };
    SECTION("bfloat16") { run(kite::bf16{}); }
    SECTION("float16") { run(kite::fp16{}); }
}

TEST_CASE("decoder::forward: a ragged batch gives every sequence the logits it gets alone, bit for bit", "[serve][model]") {
    const kite::test::serve_llama model(kite::test::tiny_gguf("tiny_llama"));
    const index_t V = model.vocab_size();
    std::vector<std::int32_t> a(19), b(11);
    for (index_t i = 0; i < a.size(); ++i) a[i] = static_cast<std::int32_t>((i * 37 + 5) % V);
    for (index_t i = 0; i < b.size(); ++i) b[i] = static_cast<std::int32_t>((i * 91 + 17) % V);
    // Alone: a in one prefill (every row), b likewise.
    auto c0 = model.make_cache(64, 2);
    typename kite::test::serve_llama::workspace ws0;
    const auto sa = *c0.add_sequence(), sb = *c0.add_sequence();
    matrix<float> la(a.size(), V), lb(b.size(), V);
    REQUIRE(model.prefill(ws0, c0, sa, a, la.view()) == kk::status::ok);
    REQUIRE(model.prefill(ws0, c0, sb, b, lb.view()) == kk::status::ok);
    // Ragged: a's first 6 tokens with b's first 9; then a's next 12 with b's token 9 (one row
    // each); then one decode token of each.
    auto c1 = model.make_cache(64, 2);
    const auto ra = *c1.add_sequence(), rb = *c1.add_sequence();
    typename kite::test::serve_llama::workspace ws;
    using part = kite::test::serve_llama::batch_part;
    const std::span<const std::int32_t> A(a), B(b);
    matrix<float> l1(6 + 9, V);
    const part p1[2] = {{ra, A.first(6), 6}, {rb, B.first(9), 9}};
    REQUIRE(model.forward(ws, c1, p1, l1.view()) == kk::status::ok);
    matrix<float> l2(1 + 12, V);
    const part p2[2] = {{rb, B.subspan(9, 1), 1}, {ra, A.subspan(6, 12), 12}};
    REQUIRE(model.forward(ws, c1, p2, l2.view()) == kk::status::ok);
    matrix<float> l3(2, V);
    const part p3[2] = {{ra, A.subspan(18, 1), 1}, {rb, B.subspan(10, 1), 1}};
    REQUIRE(model.forward(ws, c1, p3, l3.view()) == kk::status::ok);
    for (index_t t = 0; t < 6; ++t) CHECK(same_bits(l1.row(t).data(), la.row(t).data(), V));
    for (index_t t = 0; t < 9; ++t) CHECK(same_bits(l1.row(6 + t).data(), lb.row(t).data(), V));
    CHECK(same_bits(l2.row(0).data(), lb.row(9).data(), V));
    for (index_t t = 0; t < 12; ++t) CHECK(same_bits(l2.row(1 + t).data(), la.row(6 + t).data(), V));
    CHECK(same_bits(l3.row(0).data(), la.row(18).data(), V));
    CHECK(same_bits(l3.row(1).data(), lb.row(10).data(), V));
    // No logits for a part (logit_rows 0) and bad arguments.
    auto c2 = model.make_cache(64, 2);
    const auto x = *c2.add_sequence(), y = *c2.add_sequence();
    matrix<float> l4(1, V);
    const part p4[2] = {{x, A.first(4), 0}, {y, B.first(3), 1}};
    REQUIRE(model.forward(ws, c2, p4, l4.view()) == kk::status::ok);
    CHECK(same_bits(l4.row(0).data(), lb.row(2).data(), V));
    const part dup[2] = {{x, A.first(1), 1}, {x, A.first(1), 1}};
    matrix<float> l5(2, V);
    CHECK_THROWS_AS(model.forward(ws, c2, dup, l5.view()), kite::invalid_argument);
    const part rows3[1] = {{x, A.first(4), 3}};
    CHECK_THROWS_AS(model.forward(ws, c2, rows3, l5.view()), kite::invalid_argument);
    // Out of blocks: nothing changes.
    auto small = model.make_cache(8, 1);
    const auto z = *small.add_sequence();
    const part big[1] = {{z, A.first(12), 1}};
    CHECK(model.forward(ws, small, big, l4.view()) == kk::status::out_of_blocks);
    CHECK(small.length(z) == 0);
    CHECK(small.free_blocks() == small.num_blocks());
}

TEST_CASE("paged cache: truncate releases blocks past the end; adopt shares existing blocks", "[serve][kv]") {
    kk::paged<4> c({1, 1, 2}, 8);
    const auto s = *c.add_sequence();
    REQUIRE(c.append(s, 10) == kk::status::ok);  // 3 blocks
    CHECK(c.free_blocks() == 5);
    c.truncate(s, 5);
    CHECK(c.length(s) == 5);
    CHECK(c.free_blocks() == 6);
    c.truncate(s, 4);
    CHECK(c.free_blocks() == 7);
    CHECK_THROWS_AS(c.truncate(s, 9), kite::invalid_argument);
    const auto t = c.adopt(c.block_table(s), 4);
    CHECK(c.refs(c.block_table(s)[0]) == 2);
    CHECK(c.length(t) == 4);
    REQUIRE(c.append(t, 1) == kk::status::ok);  // a full shared block stays shared: a new block
    CHECK(c.refs(c.block_table(s)[0]) == 2);
    CHECK_THROWS_AS(c.adopt(c.block_table(s), 9), kite::invalid_argument);
    c.free(s);
    c.free(t);
    CHECK(c.free_blocks() == 8);
}

TEST_CASE("prefix cache: full blocks are found by their whole prefix, shared by reference, evicted LRU", "[serve][prefix]") {
    using cache_t = kk::paged<4>;
    cache_t c({1, 1, 2}, 16);
    kite::serve::prefix_cache<cache_t> pc(c);
    std::vector<std::int32_t> p1 = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10};
    // A sequence computes p1: two full blocks are registered.
    const auto s1 = *c.add_sequence();
    REQUIRE(c.append(s1, p1.size()) == kk::status::ok);
    std::vector<std::uint64_t> chain1;
    pc.register_blocks(s1, p1, chain1);
    CHECK(chain1.size() == 2);
    CHECK(pc.cached_blocks() == 2);
    CHECK(c.refs(c.block_table(s1)[0]) == 2);
    // Same first block, different second block: one block hit.
    std::vector<std::int32_t> p2 = {1, 2, 3, 4, 5, 6, 7, 0, 9};
    auto h = pc.match(p2, p2.size() - 1);
    CHECK(h.tokens == 4);
    REQUIRE(h.blocks.size() == 1);
    CHECK(h.blocks[0] == c.block_table(s1)[0]);
    // The same tokens after a different first block: no hit (the prefix differs).
    std::vector<std::int32_t> p3 = {0, 2, 3, 4, 5, 6, 7, 8, 9};
    CHECK(pc.match(p3, p3.size()).tokens == 0);
    // The whole of p1 hits both blocks, but never past max_tokens (the last token is computed).
    CHECK(pc.match(p1, p1.size() - 1).tokens == 8);
    CHECK(pc.match(p1, 7).tokens == 4);
    // In use: nothing to evict. Freed: both blocks evictable, the tail first.
    CHECK(pc.evict(10) == 0);
    pc.release(chain1);
    c.free(s1);
    CHECK(pc.evictable_blocks() == 2);
    CHECK(pc.evict(1) == 1);
    CHECK(pc.match(p1, p1.size()).tokens == 4);  // the head survived
    CHECK(pc.evict(5) == 1);
    CHECK(pc.cached_blocks() == 0);
    CHECK(c.free_blocks() == 16);
}
