// ALiBi (BLOOM), sinusoidal (DistilBERT, Whisper), learned and none position encodings.
#include <cmath>

#include "fixture_io.hpp"
#include "kite/pos.hpp"
#include "kite_test.hpp"

using namespace kite;

static_assert(pos::position_encoding<pos::alibi> && pos::position_encoding<pos::sinusoidal> &&
              pos::position_encoding<pos::learned> && pos::position_encoding<pos::none>);
static_assert(pos::none::applies_to == pos::where::nowhere && pos::alibi::applies_to == pos::where::score_bias);

TEST_CASE("alibi slopes match BLOOM, including head counts that are not powers of two", "[pos][alibi][fixture]") {
    const auto cases = kite::test::load_cases("pos/alibi.txt");
    int slope_cases = 0;
    for (const auto& c : cases) {
        INFO("case " << c.name);
        if (c.name.rfind("slopes_", 0) == 0) {
            const auto want = c.floats("slopes");
            const auto got = pos::alibi_slopes(c.size("heads"));
            REQUIRE(got.size() == want.size());
            for (index_t h = 0; h < got.size(); ++h) CHECK(got[h] == Approx(want[h]).epsilon(1e-6));
            ++slope_cases;
        } else {
            const index_t batch = c.size("batch"), seq = c.size("seq"), heads = c.size("heads");
            std::vector<std::int64_t> mask;
            for (double m : c.array("mask")) mask.push_back(static_cast<std::int64_t>(m));
            const auto t = pos::alibi_tensor(matrix_view<const std::int64_t>(mask.data(), batch, seq), heads);
            const auto want = c.floats("alibi");
            REQUIRE(t.size() == want.size());
            for (index_t i = 0; i < want.size(); ++i) CHECK(t.flat()[i] == Approx(want[i]).epsilon(1e-6).margin(1e-7));
        }
    }
    CHECK(slope_cases == 18);
}

TEST_CASE("alibi policy biases by relative position", "[pos][alibi]") {
    const pos::alibi a(12);
    REQUIRE(a.slopes().size() == 12);
    CHECK(a.bias(0, 10, 10) == 0.0f);
    CHECK(a.bias(0, 10, 7) == Approx(-3.0 * a.slopes()[0]));
    // Slopes of 8 heads: 2^-1 ... 2^-8 (the paper's geometric sequence).
    const auto s8 = pos::alibi_slopes(8);
    for (index_t h = 0; h < 8; ++h) CHECK(s8[h] == std::ldexp(1.0f, -static_cast<int>(h) - 1));
    KITE_REQUIRE_THROWS_CONTAINING(pos::alibi_slopes(0), invalid_argument, "n_heads = 0");
    std::vector<std::int64_t> bad{1, 2};
    KITE_REQUIRE_THROWS_CONTAINING(pos::alibi_tensor(matrix_view<const std::int64_t>(bad.data(), 1, 2), 2),
                                   invalid_argument, "attention_mask[0][1] = 2");
}

TEST_CASE("sinusoidal tables match DistilBERT and Whisper", "[pos][sinusoidal][fixture]") {
    const auto cases = kite::test::load_cases("pos/sinusoidal.txt");
    REQUIRE(cases.size() == 4);
    for (const auto& c : cases) {
        INFO("case " << c.name);
        pos::sinusoidal_config cfg;
        cfg.dim = c.size("dim");
        cfg.base = c.num("base");
        cfg.layout = c.str("layout") == "interleaved" ? pos::sinusoidal_layout::interleaved
                                                      : pos::sinusoidal_layout::concatenated;
        cfg.timescale = c.str("timescale") == "vaswani" ? pos::sinusoidal_timescale::vaswani
                                                        : pos::sinusoidal_timescale::tensor2tensor;
        const auto positions = c.indices("positions");
        cfg.max_positions = positions.back() + 1;
        const pos::sinusoidal pe(cfg);
        const auto want = c.floats("rows");
        REQUIRE(want.size() == positions.size() * cfg.dim);
        kite::matrix<float> got(positions.size(), cfg.dim);
        for (index_t r = 0; r < positions.size(); ++r)
            for (index_t j = 0; j < cfg.dim; ++j) got(r, j) = pe.table()(positions[r], j);
        CHECK(kite::test::max_abs_diff(got.view(), kite::matrix_view<const float>(want.data(), positions.size(), cfg.dim)) <= 1e-5);
    }
}

TEST_CASE("sinusoidal and learned tables add rows by position", "[pos][embedding]") {
    const pos::sinusoidal pe({.dim = 6, .max_positions = 10});
    std::vector<float> x(3 * 6, 1.0f);
    const std::vector<index_t> positions{0, 9, 4};
    pe.add(matrix_view<float>(x.data(), 3, 6), positions);
    for (index_t t = 0; t < 3; ++t)
        for (index_t j = 0; j < 6; ++j) CHECK(x[t * 6 + j] == 1.0f + pe.table()(positions[t], j));
    // Row 0: sin(0) = 0 and cos(0) = 1 alternate.
    CHECK(pe.table()(0, 0) == 0.0f);
    CHECK(pe.table()(0, 1) == 1.0f);

    std::vector<float> tab(4 * 3);
    for (index_t i = 0; i < tab.size(); ++i) tab[i] = static_cast<float>(i);
    const pos::learned le(matrix_view<const float>(tab.data(), 4, 3));
    std::vector<float> y(2 * 3, 0.5f);
    const std::vector<index_t> p2{3, 1};
    le.add(matrix_view<float>(y.data(), 2, 3), p2);
    CHECK(y == std::vector<float>{9.5f, 10.5f, 11.5f, 3.5f, 4.5f, 5.5f});

    const std::vector<index_t> far{4, 0};
    KITE_REQUIRE_THROWS_CONTAINING(le.add(matrix_view<float>(y.data(), 2, 3), far), invalid_argument,
                                   "positions[0] = 4; expected < max_positions = 4");
    KITE_REQUIRE_THROWS_CONTAINING(le.add(matrix_view<float>(y.data(), 3, 2), p2), shape_error, "x has 3 rows");
    tab[5] = std::nanf("");
    KITE_REQUIRE_THROWS_CONTAINING(pos::learned(matrix_view<const float>(tab.data(), 4, 3)), invalid_argument,
                                   "table[1][2] = nan");
    KITE_REQUIRE_THROWS_CONTAINING(pos::sinusoidal({.dim = 5, .max_positions = 3,
                                                    .layout = pos::sinusoidal_layout::concatenated}),
                                   invalid_argument, "needs an even dim");
}
