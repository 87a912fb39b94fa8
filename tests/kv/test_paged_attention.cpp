// Paged decode attention == contiguous decode attention (and the reference) on random shapes:
// context lengths 1 .. 2049 (odd), head dims 32/64/80/128, GQA groups 1/2/4/8, batches of
// different lengths, float and bf16 storage, several block sizes; after forks with shared and
// copied blocks; and prefill over a cached prompt prefix.
#include <random>

#include "kite/attn.hpp"
#include "kite/kv.hpp"
#include "kite/pos/alibi.hpp"
#include "kite_test.hpp"

using namespace kite;

namespace {

double max_abs_diff(const std::vector<float>& a, const std::vector<float>& b) {
    REQUIRE(a.size() == b.size());
    double m = 0;
    for (std::size_t i = 0; i < a.size(); ++i) {
        const double d = std::abs(double(a[i]) - double(b[i]));
        if (!(d <= m)) m = d;
    }
    return m;
}

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
