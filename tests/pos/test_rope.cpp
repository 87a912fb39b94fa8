// RoPE: agreement with Hugging Face (Llama / GPT-NeoX rotate_half, GPT-J interleaved, scaled
// variants), rotation properties, layouts and argument errors.
#include <cmath>
#include <numeric>

#include "fixture_io.hpp"
#include "kite/pos.hpp"
#include "kite_test.hpp"

using namespace kite;
using kite::test::fixture_case;

namespace {

pos::rope_scaling parse_scaling(const std::string& s) {
    if (s == "linear") return pos::rope_scaling::linear;
    if (s == "ntk") return pos::rope_scaling::ntk;
    if (s == "dynamic_ntk") return pos::rope_scaling::dynamic_ntk;
    REQUIRE(s == "none");
    return pos::rope_scaling::none;
}

template <class Convention>
void check_case(const fixture_case& c, bool check_inv_freq) {
    INFO("case " << c.name);
    const index_t hd = c.size("head_dim"), heads = c.size("heads");
    const auto positions = c.indices("positions");
    pos::rope_config cfg;
    cfg.head_dim = hd;
    cfg.rotary_dim = c.size("rotary_dim");
    cfg.base = c.num("base");
    if (c.params.count("scaling")) {
        cfg.scaling = parse_scaling(c.str("scaling"));
        cfg.factor = c.num("factor");
        cfg.original_max_positions = c.size("original_max_positions");
    }
    cfg.max_positions = *std::max_element(positions.begin(), positions.end()) + 1;
    pos::rope<Convention> r(cfg);
    if (c.params.count("context")) r.set_context(c.size("context"));

    if (check_inv_freq) {
        const auto want = c.floats("inv_freq");
        REQUIRE(r.inv_freq().size() == want.size());
        for (index_t i = 0; i < want.size(); ++i) {
            INFO("inv_freq[" << i << "]");
            CHECK(r.inv_freq()[i] == Approx(want[i]).epsilon(2e-7));
        }
    }
    auto x = kite::test::lcg_floats(positions.size() * heads * hd, c.size("seed"));
    r.apply(tensor_view<float, 3>(x.data(), {positions.size(), heads, hd}), positions);
    const auto want = c.floats("out");
    REQUIRE(want.size() == x.size());
    CHECK(kite::test::max_abs_diff(x, want) <= 1e-6);  // measured 1.2e-7 against PyTorch (2026-12-03)
}

template <class Convention>
pos::rope<Convention> make(index_t hd, index_t rd = 0, index_t max_pos = 64) {
    return pos::rope<Convention>({.head_dim = hd, .rotary_dim = rd, .base = 10000.0, .max_positions = max_pos});
}

}  // namespace

static_assert(pos::position_encoding<pos::rope<pos::rotate_half>>);
static_assert(pos::position_encoding<pos::rope<pos::interleaved>>);

TEST_CASE("rope rotate_half matches Hugging Face Llama and GPT-NeoX", "[pos][rope][fixture]") {
    const auto cases = kite::test::load_cases("pos/rope_rotate_half.txt");
    REQUIRE(cases.size() == 6);
    for (const auto& c : cases) check_case<pos::rotate_half>(c, true);
}

TEST_CASE("rope interleaved matches GPT-J", "[pos][rope][fixture]") {
    const auto cases = kite::test::load_cases("pos/rope_interleaved.txt");
    REQUIRE(cases.size() == 2);
    for (const auto& c : cases) check_case<pos::interleaved>(c, false);
}

TEMPLATE_TEST_CASE("rope is a rotation whose scores depend only on relative position", "[pos][rope]",
                   pos::rotate_half, pos::interleaved) {
    const index_t hd = 64;
    auto r = make<TestType>(hd, 48, 256);
    const auto q0 = kite::test::lcg_floats(hd, 5), k0 = kite::test::lcg_floats(hd, 6);
    auto rotated = [&](std::vector<float> v, index_t p) {
        r.apply_row(v.data(), p);
        return v;
    };
    // Position 0 is the identity; the norm is preserved; elements past rotary_dim pass through.
    CHECK(rotated(q0, 0) == q0);
    const auto q7 = rotated(q0, 7);
    const double n0 = std::inner_product(q0.begin(), q0.end(), q0.begin(), 0.0);
    const double n7 = std::inner_product(q7.begin(), q7.end(), q7.begin(), 0.0);
    CHECK(n7 == Approx(n0).epsilon(1e-6));
    for (index_t i = 48; i < hd; ++i) CHECK(q7[i] == q0[i]);
    CHECK(q7 != q0);
    // <R(m) q, R(n) k> depends on m - n only.
    auto score = [&](index_t m, index_t n) {
        const auto a = rotated(q0, m), b = rotated(k0, n);
        return std::inner_product(a.begin(), a.end(), b.begin(), 0.0);
    };
    CHECK(score(10, 3) == Approx(score(107, 100)).margin(1e-4));
    CHECK(score(0, 0) == Approx(score(200, 200)).margin(1e-4));
    CHECK(std::abs(score(10, 3) - score(10, 4)) > 1e-4);
}

TEST_CASE("rope apply works on any [token][head][dim] strides", "[pos][rope]") {
    const index_t tokens = 5, heads = 3, hd = 16;
    auto r = make<pos::rotate_half>(hd);
    const std::vector<index_t> positions{4, 0, 9, 2, 31};
    // Storage [head][token][dim] (PyTorch's transposed layout), viewed as [token][head][dim].
    auto a = kite::test::lcg_floats(heads * tokens * hd, 9);
    auto b = a;
    r.apply(tensor_view<float, 3>(a.data(), {tokens, heads, hd}, {hd, tokens * hd, 1}), positions);
    for (index_t h = 0; h < heads; ++h)
        for (index_t t = 0; t < tokens; ++t) r.apply_row(b.data() + (h * tokens + t) * hd, positions[t]);
    CHECK(a == b);
}

TEST_CASE("rope scaling: linear divides positions, dynamic NTK grows the base", "[pos][rope]") {
    pos::rope<pos::rotate_half> plain({.head_dim = 32, .max_positions = 400});
    pos::rope<pos::rotate_half> lin({.head_dim = 32, .scaling = pos::rope_scaling::linear, .factor = 4.0,
                                     .max_positions = 400});
    // Linear: inv_freq / 4 in float32, as HF computes it; the angle at 4p equals the plain one at p.
    for (index_t i = 0; i < 16; ++i) CHECK(lin.inv_freq()[i] == plain.inv_freq()[i] / 4.0f);
    CHECK(lin.cos(100)[3] == Approx(plain.cos(25)[3]).margin(2e-6));

    pos::rope<pos::rotate_half> dyn({.head_dim = 32, .scaling = pos::rope_scaling::dynamic_ntk, .factor = 2.0,
                                     .original_max_positions = 128, .max_positions = 400});
    CHECK(dyn.effective_base() == 10000.0);  // no change within the trained length
    dyn.set_context(100);
    CHECK(dyn.effective_base() == 10000.0);
    dyn.set_context(256);
    CHECK(dyn.effective_base() == Approx(10000.0 * std::pow(3.0, 32.0 / 30.0)));
    CHECK(dyn.inv_freq()[5] < plain.inv_freq()[5]);
    dyn.set_context(10);  // back within the trained length: the original frequencies
    CHECK(dyn.inv_freq()[5] == plain.inv_freq()[5]);
}

TEST_CASE("rope reserve_positions grows the table", "[pos][rope]") {
    auto r = make<pos::interleaved>(8, 0, 4);
    std::vector<float> x(8, 1.0f);
    const std::vector<index_t> far{100};
    KITE_REQUIRE_THROWS_CONTAINING(r.apply(tensor_view<float, 3>(x.data(), {1, 1, 8}), far), invalid_argument,
                                   "positions[0] = 100; expected < max_positions = 4");
    r.reserve_positions(101);
    r.apply(tensor_view<float, 3>(x.data(), {1, 1, 8}), far);
    auto y = std::vector<float>(8, 1.0f);
    make<pos::interleaved>(8, 0, 101).apply_row(y.data(), 100);
    CHECK(x == y);
}

TEST_CASE("rope rejects bad configurations and shapes", "[pos][rope][errors]") {
    using R = pos::rope<pos::rotate_half>;
    KITE_REQUIRE_THROWS_CONTAINING(R({.head_dim = 64, .rotary_dim = 7}), invalid_argument, "rotary_dim = 7");
    KITE_REQUIRE_THROWS_CONTAINING(R({.head_dim = 64, .rotary_dim = 66}), invalid_argument, "rotary_dim = 66");
    KITE_REQUIRE_THROWS_CONTAINING(R({.head_dim = 64, .base = 1.0}), invalid_argument, "base = 1");
    KITE_REQUIRE_THROWS_CONTAINING(R({.head_dim = 64, .base = std::nan("")}), invalid_argument, "base = nan");
    KITE_REQUIRE_THROWS_CONTAINING(R({.head_dim = 0}), invalid_argument, "head_dim = 0");
    KITE_REQUIRE_THROWS_CONTAINING(R({.head_dim = 64, .scaling = pos::rope_scaling::linear, .factor = 0.5}),
                                   invalid_argument, "factor = 0.5");
    KITE_REQUIRE_THROWS_CONTAINING(R({.head_dim = 64, .scaling = pos::rope_scaling::dynamic_ntk, .factor = 2.0}),
                                   invalid_argument, "original_max_positions");
    R r({.head_dim = 16, .max_positions = 8});
    std::vector<float> x(2 * 3 * 16);
    const std::vector<index_t> two{1, 2};
    KITE_REQUIRE_THROWS_CONTAINING(r.apply(tensor_view<float, 3>(x.data(), {2, 2, 15}), two), shape_error,
                                   "head size 15; expected head_dim = 16");
    const std::vector<index_t> three{1, 2, 3};
    KITE_REQUIRE_THROWS_CONTAINING(r.apply(tensor_view<float, 3>(x.data(), {2, 3, 16}), three), shape_error,
                                   "x has 2 tokens but positions has 3");
}
