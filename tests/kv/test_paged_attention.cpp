// Attention through the paged cache: the full product of tests/attn (head layout x mask x ALiBi
// x query kind x K/V storage x head dim, random odd lengths) over blocks scattered in the pool,
// against a float64 oracle; paged decode == contiguous decode (and the reference) on random
// shapes up to 2049 tokens and several block sizes; after forks with shared and copied blocks;
// and prefill over a cached prompt prefix.
#include <algorithm>
#include <iterator>
#include <random>

#include "kite/attn.hpp"
#include "kite/kv.hpp"
#include "kite/pos/alibi.hpp"
#include "attn/attn_test_util.hpp"
#include "kite_test.hpp"

using namespace kite;
using kite::test::max_abs_diff;

namespace {

// Same tokens in a paged and a contiguous cache; decode with both kernels over both views.
template <index_t Block, class T>
void paged_vs_contiguous(const std::vector<index_t>& lens, index_t n_kv, index_t group, index_t d, bool alibi,
                         std::uint64_t seed) {
    INFO("block " << Block << " d " << d << " n_kv " << n_kv << " group " << group << " batch " << lens.size()
                  << " first len " << lens[0] << (alibi ? " alibi" : ""));
    const kv::cache_shape shape{2, n_kv, d};
    index_t total = 0, max_len = 1;
    for (auto l : lens) {
        total += (l + Block - 1) / Block;
        max_len = std::max(max_len, l);
    }
    kv::paged<Block, T> paged(shape, total + 1);
    kv::contiguous<T> contig(shape, max_len);
    std::vector<kv::seq_id> ps, cs;
    for (index_t b = 0; b < lens.size(); ++b) {
        const auto p = *paged.add_sequence();
        const auto c = *contig.add_sequence();
        REQUIRE(paged.append(p, lens[b]) == kv::status::ok);
        REQUIRE(contig.append(c, lens[b]) == kv::status::ok);
        for (index_t layer = 0; layer < 2; ++layer) {
            const auto k = kite::test::randn(lens[b] * n_kv * d, seed + 10 * b + layer);
            const auto v = kite::test::randn(lens[b] * n_kv * d, seed + 10 * b + layer + 5);
            const tensor_view<const float, 3> kt(k.data(), {lens[b], n_kv, d}), vt(v.data(), {lens[b], n_kv, d});
            paged.write(layer, p, 0, kt, vt);
            contig.write(layer, c, 0, kt, vt);
        }
        ps.push_back(p);
        cs.push_back(c);
    }
    const index_t n_q = n_kv * group, batch = lens.size();
    const auto q = kite::test::randn(batch * n_q * d, seed + 99);
    const tensor_view<const float, 3> qv(q.data(), {batch, n_q, d});
    const auto slopes = pos::alibi_slopes(n_q);
    attn::options opt;
    if (alibi) opt.alibi_slopes = slopes;
    std::vector<float> want(q.size()), from_paged(q.size()), from_contig(q.size()), ref_paged(q.size());
    auto ov = [&](std::vector<float>& o) { return tensor_view<float, 3>(o.data(), {batch, n_q, d}); };
    attn::reference::decode<attn::gqa>(qv, contig.view(1, cs), ov(want), opt);
    attn::flash<>::decode<attn::gqa>(qv, contig.view(1, cs), ov(from_contig), opt);
    attn::flash<>::decode<attn::gqa>(qv, paged.view(1, ps), ov(from_paged), opt);
    attn::reference::decode<attn::gqa>(qv, paged.view(1, ps), ov(ref_paged), opt);
    CHECK(ref_paged == want);  // the oracle reads identical values through both layouts
    CHECK(max_abs_diff(from_contig, want) <= 2e-5);
    CHECK(max_abs_diff(from_paged, want) <= 2e-5);
    CHECK(max_abs_diff(from_paged, from_contig) <= 2e-5);
}

// ---- the product of every combination through the paged cache -----------------------------

// A paged cache holding a problem's K/V in layer 1 (as stored), each sequence's blocks in a
// random order over the pool (block i + 1 of a sequence never follows block i in memory), and
// every slot that holds no token (layer 0, the tail of each last block, the spare blocks)
// poisoned with 1e4.
template <index_t Block, class T>
struct paged_copy {
    kv::paged<Block, T> cache;
    std::vector<kv::seq_id> ids;

    static index_t blocks(const std::vector<index_t>& lens) {
        index_t n = 0;
        for (auto l : lens) n += (l + Block - 1) / Block;
        return n;
    }

    paged_copy(const kite::test::attn_problem<T>& p, std::uint64_t seed)
        : cache({2, p.n_kv, p.d}, blocks(p.kv_lens) + 2) {
        const index_t n = cache.num_blocks(), row = p.n_kv * p.d;
        // Take every block (one per filler sequence), poison it, and give them back in a shuffled
        // order such that the allocation order (the reverse: the free list is a stack) never
        // takes block x + 1 right after block x.
        const std::vector<float> poison(Block * row, 1e4f);
        const tensor_view<const float, 3> pv(poison.data(), {Block, p.n_kv, p.d});
        std::vector<kv::seq_id> fillers;
        for (index_t i = 0; i < n; ++i) {
            fillers.push_back(*cache.add_sequence());
            REQUIRE(cache.append(fillers.back(), Block) == kv::status::ok);
            for (index_t layer = 0; layer < 2; ++layer) cache.write(layer, fillers.back(), 0, pv, pv);
        }
        std::mt19937_64 g(seed);
        auto adjacent = [&] {
            for (index_t i = 0; i + 1 < n; ++i)
                if (cache.block_table(fillers[i])[0] == cache.block_table(fillers[i + 1])[0] + 1) return true;
            return false;
        };
        do std::shuffle(fillers.begin(), fillers.end(), g);
        while (adjacent());
        for (const auto s : fillers) cache.free(s);
        std::vector<float> k, v;
        for (index_t b = 0; b < p.batch; ++b) {
            const index_t kl = p.kv_lens[b];
            ids.push_back(*cache.add_sequence());
            REQUIRE(cache.append(ids.back(), kl) == kv::status::ok);
            k.resize(kl * row);
            v.resize(kl * row);
            for (index_t i = 0; i < kl * row; ++i) {
                k[i] = to_float(p.k_row(b, 0, 0)[i]);
                v[i] = to_float(p.v_row(b, 0, 0)[i]);
            }
            cache.write(1, ids.back(), 0, tensor_view<const float, 3>(k.data(), {kl, p.n_kv, p.d}),
                        tensor_view<const float, 3>(v.data(), {kl, p.n_kv, p.d}));
            const auto table = cache.block_table(ids.back());
            index_t adjacent_blocks = 0;
            for (index_t i = 0; i + 1 < table.size(); ++i) adjacent_blocks += table[i + 1] == table[i] + 1;
            CHECK(adjacent_blocks == 0);
        }
    }
    auto view() const { return cache.view(1, ids); }
};

template <class L, index_t Block, class T>
void paged_combination(const kite::test::combination& c) {
    INFO(Block << " tokens per block, " << describe(c));
    const auto p = kite::test::make_problem<T>(c);
    const paged_copy<Block, T> paged(p, c.seed + 7);
    kite::test::check_kernels<L>(c, p, paged.view());
}

// The same with a block size drawn per combination: 1, 7 (divides neither the 64-token decode
// step nor a tile) or 16 tokens.
template <class L, class T>
void paged_combination(const kite::test::combination& c) {
    switch (std::mt19937_64(c.seed + 3)() % 3) {
        case 0: paged_combination<L, 1, T>(c); break;
        case 1: paged_combination<L, 7, T>(c); break;
        default: paged_combination<L, 16, T>(c); break;
    }
}

index_t odd_length(std::mt19937_64& g, index_t max) {
    return 2 * std::uniform_int_distribution<index_t>(0, (max - 1) / 2)(g) + 1;
}

}  // namespace

TEST_CASE("paged decode == contiguous decode on random shapes", "[kv][attn][paged]") {
    paged_vs_contiguous<16, float>({2049, 1}, 2, 4, 128, false, 1);
    paged_vs_contiguous<16, bf16>({1537, 333, 17}, 1, 8, 80, true, 2);
    std::mt19937_64 g(11);
    const index_t dims[] = {32, 64, 80, 128};
    for (int i = 0; i < 16; ++i) {
        std::vector<index_t> lens;
        for (int b = 0; b < 1 + i % 3; ++b) lens.push_back(odd_length(g, i % 4 == 0 ? 2049 : 301));
        const index_t group = index_t{1} << (i % 4), n_kv = 1 + (i / 4) % 2, d = dims[(i / 2) % 4];
        switch (i % 4) {
            case 0: paged_vs_contiguous<16, float>(lens, n_kv, group, d, i % 3 == 0, 100 + i); break;
            case 1: paged_vs_contiguous<1, float>(lens, n_kv, group, d, i % 3 == 0, 100 + i); break;
            case 2: paged_vs_contiguous<7, bf16>(lens, n_kv, group, d, i % 3 == 0, 100 + i); break;
            default: paged_vs_contiguous<32, float>(lens, n_kv, group, d, i % 3 == 0, 100 + i); break;
        }
    }
}

TEST_CASE("decode over forked sequences reads shared and copied blocks correctly", "[kv][attn][paged]") {
    // Parallel sampling: n children of one prompt each decode their own continuation. Attention
    // over the paged cache must equal attention over per-child contiguous copies.
    const kv::cache_shape shape{1, 2, 64};
    kv::paged<16, float> paged(shape, 64);
    kv::contiguous<float> contig(shape, 128);
    const index_t prompt = 37, n = 4, gen = 20;
    const auto parent = *paged.add_sequence();
    REQUIRE(paged.append(parent, prompt) == kv::status::ok);
    const auto pk = kite::test::randn(prompt * 2 * 64, 1), pv = kite::test::randn(prompt * 2 * 64, 2);
    paged.write(0, parent, 0, tensor_view<const float, 3>(pk.data(), {prompt, 2, 64}),
                tensor_view<const float, 3>(pv.data(), {prompt, 2, 64}));
    std::vector<kv::seq_id> kids, copies;
    for (index_t i = 0; i < n; ++i) {
        kids.push_back(*paged.fork(parent));
        copies.push_back(*contig.add_sequence());
        REQUIRE(contig.append(copies.back(), prompt) == kv::status::ok);
        contig.write(0, copies.back(), 0, tensor_view<const float, 3>(pk.data(), {prompt, 2, 64}),
                     tensor_view<const float, 3>(pv.data(), {prompt, 2, 64}));
    }
    paged.free(parent);  // the children keep the prompt blocks alive
    const index_t prompt_blocks = (prompt + 15) / 16;
    CHECK(paged.stats().blocks_in_use == prompt_blocks);
    for (index_t step = 0; step < gen; ++step) {
        for (index_t i = 0; i < n; ++i) {
            REQUIRE(paged.append(kids[i], 1) == kv::status::ok);
            REQUIRE(contig.append(copies[i], 1) == kv::status::ok);
            const auto k = kite::test::randn(2 * 64, 1000 + step * n + i), v = kite::test::randn(2 * 64, 5000 + step * n + i);
            paged.write(0, kids[i], prompt + step, k.data(), v.data());
            contig.write(0, copies[i], prompt + step, k.data(), v.data());
        }
        const auto q = kite::test::randn(n * 4 * 64, 77 + step);
        const tensor_view<const float, 3> qv(q.data(), {n, 4, 64});
        std::vector<float> a(q.size()), b(q.size());
        attn::flash<>::decode<attn::gqa>(qv, paged.view(0, kids), tensor_view<float, 3>(a.data(), {n, 4, 64}), {});
        attn::flash<>::decode<attn::gqa>(qv, contig.view(0, copies), tensor_view<float, 3>(b.data(), {n, 4, 64}), {});
        REQUIRE(max_abs_diff(a, b) <= 2e-5);
    }
    // Each child copied the shared partial prompt block once; full prompt blocks stay shared.
    CHECK(paged.copies_on_write() == n - 1);  // the last child owns the original after the others copied
    const auto st = paged.stats();
    CHECK(st.tokens_logical == n * (prompt + gen));
    CHECK(st.tokens_stored == (prompt / 16) * 16 + n * (prompt % 16 + gen));
}

TEST_CASE("prefill over a cached prefix (chunked prefill) == reference over the full tensors", "[kv][attn][paged]") {
    const kv::cache_shape shape{1, 2, 32};
    kv::paged<16, float> cache(shape, 32);
    const index_t prefix = 45, chunk = 19, total = prefix + chunk;
    const auto k = kite::test::randn(total * 2 * 32, 3), v = kite::test::randn(total * 2 * 32, 4);
    const auto s = *cache.add_sequence();
    REQUIRE(cache.append(s, total) == kv::status::ok);
    cache.write(0, s, 0, tensor_view<const float, 3>(k.data(), {total, 2, 32}),
                tensor_view<const float, 3>(v.data(), {total, 2, 32}));
    const auto q = kite::test::randn(chunk * 8 * 32, 5);
    const tensor_view<const float, 4> qv(q.data(), {1, chunk, 8, 32});
    std::vector<float> a(q.size()), b(q.size());
    const std::vector<kv::seq_id> ids{s};
    attn::prefill<attn::gqa>(qv, cache.view(0, ids), tensor_view<float, 4>(a.data(), {1, chunk, 8, 32}));
    attn::prefill<attn::gqa, attn::reference>(qv, tensor_view<const float, 4>(k.data(), {1, total, 2, 32}),
                                              tensor_view<const float, 4>(v.data(), {1, total, 2, 32}),
                                              tensor_view<float, 4>(b.data(), {1, chunk, 8, 32}));
    CHECK(max_abs_diff(a, b) <= 2e-5);
}

TEST_CASE("decode of an empty sequence returns zeros", "[kv][attn]") {
    kv::paged<16, float> cache({1, 1, 16}, 4);
    const std::vector<kv::seq_id> ids{*cache.add_sequence()};
    std::vector<float> q(2 * 16, 1.0f), o(2 * 16, 9.0f);
    attn::flash<>::decode<attn::mqa>(tensor_view<const float, 3>(q.data(), {1, 2, 16}), cache.view(0, ids),
                                     tensor_view<float, 3>(o.data(), {1, 2, 16}), {});
    CHECK(o == std::vector<float>(2 * 16, 0.0f));
}

TEST_CASE("paged prefill and decode == float64 oracle over every combination", "[kv][attn][paged][product]") {
    // The product of tests/attn/test_flash.cpp (every head layout, mask, ALiBi or not, query
    // kind, K/V storage and head dim, random odd lengths) through a paged cache whose blocks
    // are scattered over the pool.
    using namespace kite::test;
    const queries kinds[] = {queries::full, queries::prefix, queries::decode};
    std::size_t n = 0;
    for_each_combination(kinds, 12001, [&]<class L, class T>(const combination& c) {
        paged_combination<L, T>(c);
        ++n;
    });
    CHECK(n == 5 * 3 * std::size(all_head_dims) * 2 * 2 * 3);
}

TEST_CASE("paged long decode (split context) == float64 oracle over every combination",
          "[kv][attn][paged][product]") {
    // Splits of the context start inside blocks (a split is a multiple of 64 tokens; blocks of 7
    // do not divide it), for every head layout, ALiBi or not and K/V storage.
    using namespace kite::test;
    const queries kinds[] = {queries::long_decode};
    const index_t dims[] = {37, 128};
    std::size_t n = 0;
    for_each_combination(
        kinds, 13001,
        [&]<class L, class T>(const combination& c) {
            paged_combination<L, T>(c);
            ++n;
        },
        dims);
    CHECK(n == 5 * 3 * 2 * 2);
}
