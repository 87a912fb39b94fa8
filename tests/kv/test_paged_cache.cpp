// Paged cache and block allocator: property tests over random fork / append / write / free
// sequences against a shadow model (contents, reference counts, free list, copy-on-write
// exactly when a shared partly filled block is written, atomic out-of-blocks), plus the
// deterministic cases and errors.
#include <algorithm>
#include <map>
#include <random>
#include <set>

#include "kite/kv.hpp"
#include "kite_test.hpp"

using namespace kite;

namespace {

constexpr index_t B = 4;  // tokens per block in these tests
using cache_t = kv::paged<B, float>;
const kv::cache_shape shape{2, 2, 3};

// Value of element c of head h of token `uid`, layer l, K (kind 0) or V (kind 1).
float token_value(std::uint64_t uid, index_t l, index_t kind, index_t h, index_t c) {
    return static_cast<float>(uid % 100003) + 0.25f * static_cast<float>(l) + 0.125f * static_cast<float>(kind) +
           0.0625f * static_cast<float>(h) + 0.001f * static_cast<float>(c);
}

void write_tokens(cache_t& cache, kv::seq_id s, index_t first, const std::vector<std::uint64_t>& uids) {
    const index_t n = uids.size() - first;
    std::vector<float> k(n * shape.kv_heads * shape.head_dim), v(k.size());
    for (index_t l = 0; l < shape.layers; ++l) {
        for (index_t t = 0; t < n; ++t)
            for (index_t h = 0; h < shape.kv_heads; ++h)
                for (index_t c = 0; c < shape.head_dim; ++c) {
                    k[(t * shape.kv_heads + h) * shape.head_dim + c] = token_value(uids[first + t], l, 0, h, c);
                    v[(t * shape.kv_heads + h) * shape.head_dim + c] = token_value(uids[first + t], l, 1, h, c);
                }
        cache.write(l, s, first, tensor_view<const float, 3>(k.data(), {n, shape.kv_heads, shape.head_dim}),
                    tensor_view<const float, 3>(v.data(), {n, shape.kv_heads, shape.head_dim}));
    }
}

// Every invariant the cache promises, checked against the shadow model.
void check_invariants(const cache_t& cache, const std::map<kv::seq_id, std::vector<std::uint64_t>>& shadow) {
    std::map<kv::block_id, std::uint32_t> refs;
    std::vector<kv::seq_id> ids;
    for (const auto& [s, uids] : shadow) {
        ids.push_back(s);
        REQUIRE(cache.length(s) == uids.size());
        const auto table = cache.block_table(s);
        REQUIRE(table.size() == (uids.size() + B - 1) / B);  // no block beyond what the length needs
        std::set<kv::block_id> distinct(table.begin(), table.end());
        REQUIRE(distinct.size() == table.size());
        for (const auto b : table) ++refs[b];
    }
    // Reference counts equal the number of tables holding the block; the rest are free.
    index_t zero = 0;
    for (kv::block_id b = 0; b < cache.num_blocks(); ++b) {
        const auto it = refs.find(b);
        const std::uint32_t want = it == refs.end() ? 0 : it->second;
        REQUIRE(cache.allocator().refs(b) == want);
        zero += want == 0;
    }
    REQUIRE(cache.free_blocks() == zero);
    // Contents through the attention view of every layer.
    for (index_t l = 0; l < shape.layers; ++l) {
        const auto view = cache.view(l, ids);
        for (index_t bi = 0; bi < ids.size(); ++bi) {
            const auto& uids = shadow.at(ids[bi]);
            REQUIRE(view.length(bi) == uids.size());
            for (index_t t = 0; t < uids.size(); ++t)
                for (index_t h = 0; h < shape.kv_heads; ++h) {
                    const float* kr = view.keys(bi, h, t / B) + (t % B) * view.token_stride();
                    const float* vr = view.values(bi, h, t / B) + (t % B) * view.token_stride();
                    for (index_t c = 0; c < shape.head_dim; ++c) {
                        REQUIRE(kr[c] == token_value(uids[t], l, 0, h, c));
                        REQUIRE(vr[c] == token_value(uids[t], l, 1, h, c));
                    }
                }
        }
    }
    // Accounting: stored tokens never exceed logical tokens; the used bytes fit the reservation.
    const auto st = cache.stats();
    index_t logical = 0;
    for (const auto& [s, uids] : shadow) logical += uids.size();
    REQUIRE(st.tokens_logical == logical);
    REQUIRE(st.tokens_stored <= logical);
    REQUIRE(st.bytes_used <= st.bytes_reserved);
    REQUIRE(st.blocks_in_use + st.blocks_free == cache.num_blocks());
}

}  // namespace

TEST_CASE("block allocator: free list, reference counts, double free", "[kv][allocator]") {
    kv::block_allocator a(3);
    const auto b0 = a.allocate(), b1 = a.allocate(), b2 = a.allocate();
    REQUIRE((b0 && b1 && b2));
    CHECK(*b0 == 0);
    CHECK(!a.allocate());  // exhausted: an empty result, not an exception
    a.retain(*b1);
    CHECK(a.refs(*b1) == 2);
    a.release(*b1);
    CHECK(a.free_blocks() == 0);
    a.release(*b1);
    CHECK(a.free_blocks() == 1);
    KITE_REQUIRE_THROWS_CONTAINING(a.release(*b1), invalid_argument, "double free");
    KITE_REQUIRE_THROWS_CONTAINING(a.retain(*b1), invalid_argument, "is not in use");
    CHECK(a.allocate() == b1);
    KITE_REQUIRE_THROWS_CONTAINING(kv::block_allocator(0), invalid_argument, "capacity = 0");
}

TEST_CASE("paged cache: copy-on-write exactly when a shared, partly filled block is written", "[kv][paged][cow]") {
    cache_t cache(shape, 16);
    std::map<kv::seq_id, std::vector<std::uint64_t>> shadow;
    std::uint64_t next_uid = 1;
    auto grow = [&](kv::seq_id s, index_t n) {
        auto& u = shadow[s];
        const index_t first = u.size();
        REQUIRE(cache.append(s, n) == kv::status::ok);
        for (index_t i = 0; i < n; ++i) u.push_back(next_uid++);
        write_tokens(cache, s, first, u);
    };
    const auto parent = *cache.add_sequence();
    grow(parent, 6);  // block 0 full, block 1 holds 2 tokens
    const auto child = *cache.fork(parent);
    shadow[child] = shadow[parent];
    CHECK(cache.block_table(child)[1] == cache.block_table(parent)[1]);
    CHECK(cache.allocator().refs(cache.block_table(parent)[0]) == 2);
    CHECK(cache.copies_on_write() == 0);
    // Forking copies nothing; the child's first write into the shared partial block copies it.
    CHECK(cache.blocks_needed(child, 1) == 1);
    grow(child, 1);
    CHECK(cache.copies_on_write() == 1);
    CHECK(cache.block_table(child)[1] != cache.block_table(parent)[1]);
    CHECK(cache.block_table(child)[0] == cache.block_table(parent)[0]);  // full block stays shared
    // The parent's block is now its own again: no second copy.
    grow(parent, 1);
    CHECK(cache.copies_on_write() == 1);
    check_invariants(cache, shadow);

    // A full shared last block is never copied: new tokens go to a new block.
    const auto p2 = *cache.add_sequence();
    grow(p2, 8);
    const auto c2 = *cache.fork(p2);
    shadow[c2] = shadow[p2];
    grow(c2, 3);
    grow(p2, 2);
    CHECK(cache.copies_on_write() == 1);
    check_invariants(cache, shadow);

    // Prefix sharing: a child of the first 5 tokens shares blocks 0 and 1, copies block 1 on write.
    const auto c3 = *cache.fork(p2, 5);
    shadow[c3] = std::vector<std::uint64_t>(shadow[p2].begin(), shadow[p2].begin() + 5);
    CHECK(cache.length(c3) == 5);
    CHECK(cache.block_table(c3).size() == 2);
    grow(c3, 4);
    CHECK(cache.copies_on_write() == 2);
    check_invariants(cache, shadow);

    // Tokens before a fork are read-only while shared.
    std::vector<float> row(shape.kv_heads * shape.head_dim, 1.0f);
    KITE_REQUIRE_THROWS_CONTAINING(cache.write(0, c2, 0, row.data(), row.data()), invalid_argument,
                                   "shared by 3 sequences");
    for (const auto& [s, u] : shadow) cache.free(s);
    CHECK(cache.free_blocks() == cache.num_blocks());
}

TEST_CASE("paged cache: out of blocks is an explicit result that changes nothing", "[kv][paged]") {
    cache_t cache(shape, 3);
    const auto a = *cache.add_sequence();
    REQUIRE(cache.append(a, 10) == kv::status::ok);  // 3 blocks
    const auto b = *cache.add_sequence();
    CHECK(cache.append(b, 1) == kv::status::out_of_blocks);
    CHECK(cache.length(b) == 0);
    CHECK(cache.append(a, 3) == kv::status::out_of_blocks);  // would need a 4th block
    CHECK(cache.length(a) == 10);
    // A fork needs no block, but writing into the shared partial block needs a copy: refused.
    const auto c = *cache.fork(a);
    CHECK(cache.blocks_needed(c, 1) == 1);
    CHECK(cache.append(c, 1) == kv::status::out_of_blocks);
    CHECK(cache.length(c) == 10);
    CHECK(cache.allocator().refs(cache.block_table(a)[2]) == 2);
    CHECK(cache.copies_on_write() == 0);
    cache.free(c);
    CHECK(cache.append(a, 2) == kv::status::ok);  // fits in its own last block
    CHECK(cache.free_blocks() == 0);
    cache.free(a);
    CHECK(cache.append(b, 9) == kv::status::ok);
    cache.free(b);
    CHECK(cache.free_blocks() == 3);
}

TEST_CASE("paged cache: random fork / append / free sequences keep every invariant", "[kv][paged][property]") {
    for (std::uint64_t seed : {1u, 2u, 3u}) {
        INFO("seed " << seed);
        std::mt19937_64 g(seed);
        cache_t cache(shape, 40);
        std::map<kv::seq_id, std::vector<std::uint64_t>> shadow;
        std::uint64_t next_uid = 1;
        index_t expected_cow = 0, out_of_blocks = 0, forks = 0;
        for (int op = 0; op < 600; ++op) {
            const int kind = std::uniform_int_distribution<int>(0, 9)(g);
            std::vector<kv::seq_id> live;
            for (const auto& [s, u] : shadow) live.push_back(s);
            const auto pick = [&] { return live[std::uniform_int_distribution<std::size_t>(0, live.size() - 1)(g)]; };
            if (live.empty() || kind == 0) {
                shadow[*cache.add_sequence()] = {};
            } else if (kind <= 5) {  // append + write
                const kv::seq_id s = pick();
                const index_t n = std::uniform_int_distribution<index_t>(1, 9)(g);
                const index_t len = shadow[s].size();
                const bool cow = len % B != 0 && cache.allocator().refs(cache.block_table(s).back()) > 1;
                const index_t need = (len + n + B - 1) / B - (len + B - 1) / B + (cow ? 1 : 0);
                REQUIRE(cache.blocks_needed(s, n) == need);
                const index_t free_before = cache.free_blocks();
                const std::vector<kv::block_id> table_before(cache.block_table(s).begin(), cache.block_table(s).end());
                const auto st = cache.append(s, n);
                if (need > free_before) {
                    REQUIRE(st == kv::status::out_of_blocks);
                    REQUIRE(cache.free_blocks() == free_before);
                    REQUIRE(std::equal(table_before.begin(), table_before.end(), cache.block_table(s).begin(),
                                       cache.block_table(s).end()));
                    ++out_of_blocks;
                } else {
                    REQUIRE(st == kv::status::ok);
                    expected_cow += cow;
                    auto& u = shadow[s];
                    for (index_t i = 0; i < n; ++i) u.push_back(next_uid++);
                    write_tokens(cache, s, len, u);
                }
            } else if (kind <= 7) {  // fork, whole or a prefix
                const kv::seq_id s = pick();
                const index_t len = shadow[s].size();
                const index_t prefix = kind == 6 ? len : std::uniform_int_distribution<index_t>(0, len)(g);
                const auto child = cache.fork(s, prefix);
                REQUIRE(child);
                shadow[*child] = std::vector<std::uint64_t>(shadow[s].begin(), shadow[s].begin() + prefix);
                ++forks;
            } else {
                const kv::seq_id s = pick();
                cache.free(s);
                shadow.erase(s);
            }
            REQUIRE(cache.copies_on_write() == expected_cow);
            check_invariants(cache, shadow);
        }
        // The runs exercised every path.
        CHECK(expected_cow > 5);
        CHECK(out_of_blocks > 0);
        CHECK(forks > 20);
        for (const auto& [s, u] : shadow) cache.free(s);
        CHECK(cache.free_blocks() == cache.num_blocks());
        for (kv::block_id b = 0; b < cache.num_blocks(); ++b) CHECK(cache.allocator().refs(b) == 0);
        KITE_REQUIRE_THROWS_CONTAINING(cache.free(0), invalid_argument, "is not live");
    }
}

TEST_CASE("paged cache waste is at most one partly filled block per sequence", "[kv][paged][memory]") {
    kv::paged<16, float> cache({4, 2, 8}, 1000);
    std::mt19937_64 g(5);
    index_t partial_slots = 0;
    for (int i = 0; i < 40; ++i) {
        const index_t len = std::uniform_int_distribution<index_t>(1, 700)(g);
        const auto s = *cache.add_sequence();
        REQUIRE(cache.append(s, len) == kv::status::ok);
        partial_slots += (16 - len % 16) % 16;
    }
    const auto st = cache.stats();
    CHECK(st.bytes_wasted() == partial_slots * st.bytes_per_token);
    CHECK(st.bytes_wasted() <= st.sequences * 15 * st.bytes_per_token);
    CHECK(st.bytes_per_token == 4 * 2 * 2 * 8 * sizeof(float));
}

TEST_CASE("paged cache: prefault zeroes every block and changes nothing else", "[kv][paged]") {
    cache_t cache(shape, 6);
    cache.prefault();
    CHECK(cache.free_blocks() == 6);
    CHECK(cache.stats().sequences == 0);
    // Every block of every layer reads as zeros (a sequence of the whole pool, never written).
    const auto s = *cache.add_sequence();
    REQUIRE(cache.append(s, 6 * B) == kv::status::ok);
    const std::vector<kv::seq_id> ids{s};
    for (index_t l = 0; l < shape.layers; ++l) {
        const auto view = cache.view(l, ids);
        for (index_t t = 0; t < 6 * B; ++t)
            for (index_t h = 0; h < shape.kv_heads; ++h)
                for (index_t c = 0; c < shape.head_dim; ++c) {
                    REQUIRE(view.keys(0, h, t / B)[(t % B) * view.token_stride() + c] == 0.0f);
                    REQUIRE(view.values(0, h, t / B)[(t % B) * view.token_stride() + c] == 0.0f);
                }
    }
    // And writes land as on a pool that was not touched.
    std::map<kv::seq_id, std::vector<std::uint64_t>> shadow;
    cache.free(s);
    const auto s2 = *cache.add_sequence();
    std::vector<std::uint64_t> uids{11, 12, 13, 14, 15};
    REQUIRE(cache.append(s2, uids.size()) == kv::status::ok);
    write_tokens(cache, s2, 0, uids);
    shadow[s2] = uids;
    check_invariants(cache, shadow);
}

TEST_CASE("paged cache rejects bad arguments", "[kv][paged][errors]") {
    cache_t cache(shape, 4);
    const auto s = *cache.add_sequence();
    REQUIRE(cache.append(s, 2) == kv::status::ok);
    std::vector<float> row(shape.kv_heads * shape.head_dim, 0.5f);
    KITE_REQUIRE_THROWS_CONTAINING(cache.write(2, s, 0, row.data(), row.data()), invalid_argument, "layer = 2");
    KITE_REQUIRE_THROWS_CONTAINING(cache.write(0, s, 2, row.data(), row.data()), invalid_argument,
                                   "tokens [2, 3) of sequence 0 of length 2");
    KITE_REQUIRE_THROWS_CONTAINING(cache.write(0, 7, 0, row.data(), row.data()), invalid_argument, "sequence 7");
    row[4] = std::nanf("");
    KITE_REQUIRE_THROWS_CONTAINING(cache.write(0, s, 0, row.data(), row.data()), invalid_argument, "k[1] = nan");
    std::vector<float> wide(2 * 4);
    KITE_REQUIRE_THROWS_CONTAINING(
        cache.write(0, s, 0, tensor_view<const float, 3>(wide.data(), {1, 2, 4}),
                    tensor_view<const float, 3>(wide.data(), {1, 2, 4})),
        shape_error, "expected [kv_heads = 2][head_dim = 3]");
    KITE_REQUIRE_THROWS_CONTAINING(cache.fork(s, 3), invalid_argument, "prefix = 3");
    const std::vector<kv::seq_id> ids{s, 9};
    KITE_REQUIRE_THROWS_CONTAINING(cache.view(0, ids), invalid_argument, "sequence 9 is not live");
    KITE_REQUIRE_THROWS_CONTAINING(cache_t({0, 1, 1}, 4), invalid_argument, "layers = 0");
}

TEST_CASE("contiguous cache: reservations, budget, copying fork", "[kv][contiguous]") {
    kv::contiguous<float> cache(shape, 10, 25);  // room for two sequences of 10 tokens
    const auto a = cache.add_sequence(), b = cache.add_sequence();
    REQUIRE((a && b));
    CHECK(!cache.add_sequence());  // budget exhausted
    CHECK(cache.append(*a, 11) == kv::status::out_of_blocks);
    CHECK(cache.length(*a) == 0);
    REQUIRE(cache.append(*a, 3) == kv::status::ok);
    std::vector<float> k(3 * 6), v(3 * 6);
    for (index_t i = 0; i < k.size(); ++i) {
        k[i] = float(i);
        v[i] = -float(i);
    }
    for (index_t l = 0; l < 2; ++l)
        cache.write(l, *a, 0, tensor_view<const float, 3>(k.data(), {3, 2, 3}),
                    tensor_view<const float, 3>(v.data(), {3, 2, 3}));
    CHECK(!cache.fork(*a));  // a copy needs a reservation
    cache.free(*b);
    const auto c = cache.fork(*a);
    REQUIRE(c);
    const std::vector<kv::seq_id> ids{*a, *c};
    const auto view = cache.view(1, ids);
    for (index_t bi = 0; bi < 2; ++bi)
        for (index_t t = 0; t < 3; ++t)
            for (index_t h = 0; h < 2; ++h)
                for (index_t e = 0; e < 3; ++e) {
                    CHECK(view.keys(bi, h, 0)[t * view.token_stride() + e] == k[(t * 2 + h) * 3 + e]);
                    CHECK(view.values(bi, h, 0)[t * view.token_stride() + e] == v[(t * 2 + h) * 3 + e]);
                }
    const auto st = cache.stats();
    CHECK(st.tokens_logical == 6);
    CHECK(st.bytes_reserved == 20 * st.bytes_per_token);
    CHECK(st.waste_fraction() == Approx(14.0 / 20.0));
    KITE_REQUIRE_THROWS_CONTAINING(kv::contiguous<float>(shape, 10, 5), invalid_argument, "capacity_tokens = 5");
    cache.free(*c);
    KITE_REQUIRE_THROWS_CONTAINING(cache.free(*c), invalid_argument, "is not live");
}
