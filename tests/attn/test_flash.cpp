// Attention kernels against a float64 oracle over the full product of head layout (MHA, GQA
// groups 2/4/8, MQA) x mask x ALiBi x query kind (q_len = kv_len, a cached prefix, decode, long
// decode with a split context) x K/V storage (f32, bf16, f16) x head dim, with random odd
// lengths; flash<Bq, Bk> == reference on long sequences (up to 2049), tile boundaries and
// adversarial scores; determinism across thread counts; argument errors.
#include <algorithm>
#include <iterator>
#include <random>
#include <sstream>

#include "attn_test_util.hpp"
#include "kite/pos/alibi.hpp"

using namespace kite;
using kite::test::attn_problem;
using kite::test::difference;
using kite::test::max_abs_diff;

namespace {

struct shape_case {
    index_t batch, n_kv, group, d;
    std::vector<index_t> q_lens, kv_lens;
    attn::mask mask;
    bool alibi, bf16_kv;
    float q_scale = 1.0f;
};

std::string describe(const shape_case& s) {
    std::ostringstream os;
    os << "batch " << s.batch << " n_kv " << s.n_kv << " group " << s.group << " d " << s.d << " q_lens";
    for (auto x : s.q_lens) os << ' ' << x;
    os << " kv_lens";
    for (auto x : s.kv_lens) os << ' ' << x;
    os << (s.mask == attn::mask::causal ? " causal" : " bidirectional") << (s.alibi ? " alibi" : "")
       << (s.bf16_kv ? " bf16" : " f32") << " q_scale " << s.q_scale;
    return os.str();
}

template <class T, class Flash>
difference flash_vs_reference(const shape_case& s, std::uint64_t seed) {
    const attn_problem<T> p(s.batch, s.q_lens, s.kv_lens, s.n_kv * s.group, s.n_kv, s.d, seed, s.q_scale);
    const auto slopes = pos::alibi_slopes(p.n_q);
    attn::options opt;
    opt.mask = s.mask;
    if (s.alibi) opt.alibi_slopes = slopes;
    auto want = p.out(), got = p.out();
    attn::reference::prefill<attn::gqa>(p.qv(), p.kv(), p.ov(want), opt, p.q_lens);
    Flash::template prefill<attn::gqa>(p.qv(), p.kv(), p.ov(got), opt, p.q_lens);
    return max_abs_diff(got, want);
}

difference run(const shape_case& s, std::uint64_t seed) {
    return s.bf16_kv ? flash_vs_reference<bf16, attn::flash<64, 64>>(s, seed)
                     : flash_vs_reference<float, attn::flash<64, 64>>(s, seed);
}

// Odd lengths, mostly short, so that many shapes fit in the test budget.
index_t odd_length(std::mt19937_64& g, index_t max) {
    return 2 * std::uniform_int_distribution<index_t>(0, (max - 1) / 2)(g) + 1;
}

}  // namespace

TEST_CASE("flash == reference on long sequences (up to 2049)", "[attn][flash]") {
    const std::vector<shape_case> cases = {
        {1, 1, 2, 32, {2049}, {2049}, attn::mask::causal, false, false},
        {1, 1, 4, 128, {1025}, {1025}, attn::mask::bidirectional, false, true},
        {1, 1, 8, 80, {777}, {777}, attn::mask::causal, true, false},
        {2, 1, 1, 64, {513, 301}, {513, 301}, attn::mask::causal, false, false},
    };
    std::uint64_t seed = 1000;
    for (const auto& s : cases) {
        INFO(describe(s));
        CHECK(run(s, seed++) <= 2e-5);
    }
}

// The full product: {MHA, GQA groups 2, 4, 8, MQA} x {causal, bidirectional} x {ALiBi or not}
// x {q_len = kv_len, q_len < kv_len; decode} x {f32, bf16, f16 K/V} x every head dim, each
// combination with its own random odd lengths, against the float64 oracle (attn_test_util.hpp).
// The paged path runs the same product in tests/kv/test_paged_attention.cpp.
TEST_CASE("prefill: reference and flash == float64 oracle over every combination", "[attn][flash][product]") {
    using namespace kite::test;
    const queries kinds[] = {queries::full, queries::prefix};
    std::size_t n = 0;
    for_each_combination(kinds, 7001, [&]<class L, class T>(const combination& c) {
        INFO(describe(c));
        const auto p = make_problem<T>(c);
        check_kernels<L>(c, p, p.kv());
        ++n;
    });
    CHECK(n == 5 * 3 * std::size(all_head_dims) * 2 * 2 * 2);
}

TEST_CASE("decode: reference and flash == float64 oracle over every combination", "[attn][flash][decode][product]") {
    using namespace kite::test;
    const queries kinds[] = {queries::decode};
    std::size_t n = 0;
    for_each_combination(kinds, 9001, [&]<class L, class T>(const combination& c) {
        INFO(describe(c));
        const auto p = make_problem<T>(c);
        check_kernels<L>(c, p, p.kv());
        ++n;
    });
    CHECK(n == 5 * 3 * std::size(all_head_dims) * 2 * 2);
}

TEST_CASE("long decode (split context): reference and flash == float64 oracle over every combination",
          "[attn][flash][decode][product]") {
    // Contexts of 1025 .. 2049 keys, split over work items and merged (flash-decoding), for every
    // head layout, ALiBi or not and K/V storage; two head dims (a partial SIMD vector and
    // Llama's) keep it short.
    using namespace kite::test;
    const queries kinds[] = {queries::long_decode};
    const index_t dims[] = {37, 128};
    std::size_t n = 0;
    for_each_combination(
        kinds, 11001,
        [&]<class L, class T>(const combination& c) {
            INFO(describe(c));
            const auto p = make_problem<T>(c);
            check_kernels<L>(c, p, p.kv());
            ++n;
        },
        dims);
    CHECK(n == 5 * 3 * 2 * 2);
}

TEST_CASE("flash == reference at tile boundaries and with other tile sizes", "[attn][flash]") {
    for (index_t len : {1, 2, 15, 16, 17, 63, 64, 65, 127, 129}) {
        const shape_case s{1, 2, 2, 48, {len}, {len}, attn::mask::causal, false, false};
        INFO(describe(s));
        CHECK(flash_vs_reference<float, attn::flash<64, 64>>(s, len) <= 2e-5);
        CHECK(flash_vs_reference<float, attn::flash<16, 8>>(s, len) <= 2e-5);
        CHECK(flash_vs_reference<float, attn::flash<32, 128>>(s, len) <= 2e-5);
        CHECK(flash_vs_reference<bf16, attn::flash<128, 32>>(s, len) <= 2e-5);
    }
    // d not a multiple of the SIMD width exercises the masked tail of the P·V tile.
    const shape_case odd_d{2, 1, 3, 37, {21, 5}, {21, 9}, attn::mask::bidirectional, true, false};
    CHECK(flash_vs_reference<float, attn::flash<64, 64>>(odd_d, 7) <= 2e-5);
    CHECK(flash_vs_reference<bf16, attn::flash<64, 64>>(odd_d, 7) <= 2e-5);
}

TEST_CASE("flash is stable for large scores", "[attn][flash][adversarial]") {
    // Scores in the hundreds: exp would overflow without the running max.
    shape_case s{1, 1, 2, 64, {97}, {97}, attn::mask::causal, false, false, 30.0f};
    INFO(describe(s));
    CHECK(run(s, 31) <= 5e-5);
    s.mask = attn::mask::bidirectional;
    s.alibi = true;
    CHECK(run(s, 32) <= 5e-5);
}

TEST_CASE("flash results do not depend on the thread count", "[attn][flash]") {
    const attn_problem<float> p(2, {77, 130}, {77, 130}, 4, 2, 64, 99);
    attn::options opt;
    auto a = p.out(), b = p.out();
    opt.threads = 1;
    attn::flash<>::prefill<attn::gqa>(p.qv(), p.kv(), p.ov(a), opt, p.q_lens);
    opt.threads = 2;
    attn::flash<>::prefill<attn::gqa>(p.qv(), p.kv(), p.ov(b), opt, p.q_lens);
    CHECK(a == b);  // bit for bit: each tile is computed by one thread in a fixed order
}

TEST_CASE("prefill zeroes padded query rows and handles empty sequences", "[attn][flash]") {
    const attn_problem<float> p(3, {5, 0, 3}, {5, 0, 4}, 2, 2, 32, 3);
    attn::options opt;
    opt.mask = attn::mask::causal;
    for (int kernel = 0; kernel < 2; ++kernel) {
        auto o = p.out();
        if (kernel == 0) {
            attn::flash<>::prefill<attn::mha>(p.qv(), p.kv(), p.ov(o), opt, p.q_lens);
        } else {
            attn::reference::prefill<attn::mha>(p.qv(), p.kv(), p.ov(o), opt, p.q_lens);
        }
        const auto ov = p.ov(o);
        for (index_t b = 0; b < 3; ++b)
            for (index_t i = p.q_lens[b]; i < p.q_seq; ++i)
                for (index_t h = 0; h < 2; ++h)
                    for (index_t c = 0; c < 32; ++c) CHECK(ov(b, i, h, c) == 0.0f);
        CHECK(ov(0, 0, 0, 0) != 0.0f);
    }
}

TEST_CASE("a single visible key returns its value exactly", "[attn][flash]") {
    // Causal query 0 sees only key 0: the output is v[0] whatever the scores.
    const attn_problem<float> p(1, {9}, {9}, 2, 1, 80, 5);
    auto o = p.out();
    attn::flash<>::prefill<attn::mqa>(p.qv(), p.kv(), p.ov(o), {}, p.q_lens);
    for (index_t h = 0; h < 2; ++h)
        for (index_t c = 0; c < 80; ++c) CHECK(p.ov(o)(0, 0, h, c) == Approx(p.v[c]).epsilon(1e-6));
}

TEST_CASE("flash decode == reference decode", "[attn][flash][decode]") {
    std::mt19937_64 g(77);
    for (int i = 0; i < 12; ++i) {
        const index_t d = i == 7 ? 37 : (i % 4 + 1) * 32 - (i % 3 == 0 ? 0 : 16);
        const index_t n_kv = 1 + i % 2, group = index_t{1} << (i % 4);
        std::vector<index_t> kv_lens;
        for (int b = 0; b < 1 + i % 3; ++b) kv_lens.push_back(i == 5 && b == 1 ? 0 : odd_length(g, 3001));
        const std::vector<index_t> ones(kv_lens.size(), 1);
        const attn_problem<float> p(kv_lens.size(), ones, kv_lens, n_kv * group, n_kv, d, 900 + i);
        const auto slopes = pos::alibi_slopes(p.n_q);
        attn::options opt;
        if (i % 3 == 2) opt.alibi_slopes = slopes;
        std::vector<float> want(p.batch * p.n_q * d, 5.0f), got(want.size(), 6.0f);
        const tensor_view<const float, 3> q(p.q.data(), {p.batch, p.n_q, d});
        attn::reference::decode<attn::gqa>(q, p.kv(), tensor_view<float, 3>(want.data(), {p.batch, p.n_q, d}), opt);
        attn::flash<>::decode<attn::gqa>(q, p.kv(), tensor_view<float, 3>(got.data(), {p.batch, p.n_q, d}), opt);
        INFO("decode case " << i << " d " << d << " n_kv " << n_kv << " group " << group);
        CHECK(max_abs_diff(got, want) <= 2e-5);
        // One thread (no context split) gives the same answer.
        opt.threads = 1;
        attn::flash<>::decode<attn::gqa>(q, p.kv(), tensor_view<float, 3>(got.data(), {p.batch, p.n_q, d}), opt);
        CHECK(max_abs_diff(got, want) <= 2e-5);
    }
}

TEST_CASE("head layouts validate head counts", "[attn][layout][errors]") {
    KITE_REQUIRE_THROWS_CONTAINING(attn::mha::validate(8, 4), config_error, "mha: n_q = 8, n_kv = 4");
    KITE_REQUIRE_THROWS_CONTAINING(attn::mqa::validate(8, 2), config_error, "mqa: n_q = 8, n_kv = 2");
    KITE_REQUIRE_THROWS_CONTAINING(attn::gqa::validate(6, 4), config_error, "gqa: n_q = 6, n_kv = 4");
    KITE_REQUIRE_THROWS_CONTAINING(attn::gqa::validate(6, 0), config_error, "n_kv = 0");
    CHECK_NOTHROW(attn::gqa::validate(32, 8));
    CHECK(attn::gqa::kv_head(13, 32, 8) == 3);
    CHECK(attn::mqa::kv_head(13, 32, 1) == 0);
    CHECK(attn::mha::kv_head(13, 32, 32) == 13);
    // The KV-cache size formula the examples print: 2 x tokens x layers x kv_heads x dim x bytes.
    CHECK(attn::kv_cache_bytes(4096, 32, 8, 128, 2) == 2ull * 4096 * 32 * 8 * 128 * 2);
}

TEST_CASE("attention entry points reject bad arguments", "[attn][errors]") {
    const attn_problem<float> p(2, {4, 4}, {4, 3}, 4, 2, 16, 1);
    auto o = p.out();
    attn::options opt;
    // A layout that does not fit the head counts.
    KITE_REQUIRE_THROWS_CONTAINING(attn::flash<>::prefill<attn::mha>(p.qv(), p.kv(), p.ov(o), opt, p.q_lens),
                                   config_error, "mha: n_q = 4, n_kv = 2");
    // Causal with more queries than keys.
    KITE_REQUIRE_THROWS_CONTAINING(attn::flash<>::prefill<attn::gqa>(p.qv(), p.kv(), p.ov(o), opt, p.q_lens),
                                   invalid_argument, "sequence 1 has 4 queries but 3 keys");
    opt.mask = attn::mask::bidirectional;
    CHECK_NOTHROW(attn::flash<>::prefill<attn::gqa>(p.qv(), p.kv(), p.ov(o), opt, p.q_lens));
    // Output shape, q_lens count and values, ALiBi slopes, scale, NaN in q.
    std::vector<float> small(8);
    KITE_REQUIRE_THROWS_CONTAINING(
        attn::reference::prefill<attn::gqa>(p.qv(), p.kv(), tensor_view<float, 4>(small.data(), {2, 4, 4, 1}), opt),
        shape_error, "expected the shape of q");
    const std::vector<index_t> three{1, 1, 1}, too_long{5, 1};
    KITE_REQUIRE_THROWS_CONTAINING(attn::flash<>::prefill<attn::gqa>(p.qv(), p.kv(), p.ov(o), opt, three),
                                   shape_error, "3 q_lens for a batch of 2");
    KITE_REQUIRE_THROWS_CONTAINING(attn::flash<>::prefill<attn::gqa>(p.qv(), p.kv(), p.ov(o), opt, too_long),
                                   invalid_argument, "q_lens[0] = 5; expected <= q_seq = 4");
    const std::vector<float> slopes{0.5f, 0.25f};
    opt.alibi_slopes = slopes;
    KITE_REQUIRE_THROWS_CONTAINING(attn::flash<>::prefill<attn::gqa>(p.qv(), p.kv(), p.ov(o), opt), shape_error,
                                   "2 ALiBi slopes for 4 query heads");
    opt.alibi_slopes = {};
    opt.scale = -1.0f;
    KITE_REQUIRE_THROWS_CONTAINING(attn::flash<>::prefill<attn::gqa>(p.qv(), p.kv(), p.ov(o), opt),
                                   invalid_argument, "scale = -1");
    opt.scale = 0.0f;
    auto bad = p;
    bad.q[17] = std::nanf("");
    KITE_REQUIRE_THROWS_CONTAINING(attn::flash<>::prefill<attn::gqa>(bad.qv(), bad.kv(), bad.ov(o), opt),
                                   invalid_argument, "q[1] = nan");
    // Mismatched head_dim between q and the kv view; lengths longer than the tensor.
    const attn_problem<float> other(2, {4, 4}, {4, 4}, 4, 2, 8, 1);
    KITE_REQUIRE_THROWS_CONTAINING(attn::flash<>::prefill<attn::gqa>(p.qv(), other.kv(), p.ov(o), opt), shape_error,
                                   "q head_dim 16 but kv head_dim 8");
    const std::vector<index_t> long_kv{9, 1};
    KITE_REQUIRE_THROWS_CONTAINING(attn::tensor_kv<float>(p.kv4(), p.vv4(), long_kv), invalid_argument,
                                   "lengths[0] = 9; expected <= seq = 4");
    std::vector<float> dq(2 * 4 * 16), dout(2 * 4 * 16);
    const tensor_view<const float, 3> q3(dq.data(), {2, 4, 16});
    KITE_REQUIRE_THROWS_CONTAINING(
        attn::flash<>::decode<attn::mqa>(q3, p.kv(), tensor_view<float, 3>(dout.data(), {2, 4, 16}), opt), config_error,
        "mqa: n_q = 4, n_kv = 2");
}
