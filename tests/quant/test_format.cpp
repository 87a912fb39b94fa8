// packed_weights layout, the RTN grids, and the concepts.
#include <algorithm>
#include <cmath>
#include <span>
#include <string>
#include <limits>
#include <type_traits>

#include "kite/quant.hpp"
#include "kite_test.hpp"
#include "quant_test_util.hpp"

namespace q = kite::quant;

static_assert(q::weight_format<q::packed_weights<4, 128, q::grid::asymmetric, kite::fp16>>);
static_assert(q::weight_format<q::dense_weights<kite::bf16>>);
static_assert(q::data_free_method<q::absmax<8>>);
static_assert(q::data_free_method<q::zero_point<4, 128>>);
static_assert(q::data_free_method<q::f32>);
static_assert(!q::calibrated_method<q::absmax<8>>);

TEST_CASE("int4 layout: nibble planes of 64-byte blocks, offset binary for symmetric levels",
          "[quant][format]") {
    q::packed_weights<4, 32, q::grid::symmetric> w(2, 140);
    CHECK(w.row_bytes() == 128);  // 140 columns -> two 128-column blocks of 64 bytes
    CHECK(w.groups_per_row() == 5);
    w.set_level(0, 0, -7);    // word 0, plane 0: byte 0, low nibble
    w.set_level(0, 16, 7);    // word 0, plane 1: byte 0, high nibble
    w.set_level(0, 32, 3);    // word 0, plane 2: byte 1, low nibble
    w.set_level(0, 5, 1);     // word 5, plane 0: byte 20, low nibble
    w.set_level(0, 127, -2);  // word 15, plane 7: byte 63, high nibble
    w.set_level(0, 133, -1);  // block 1, word 5, plane 0: byte 84, low nibble
    w.set_level(1, 139, 0);
    const auto* row = w.row_codes(0);
    CHECK(row[0] == ((7 + 8) << 4 | (-7 + 8)));
    CHECK(row[1] == (3 + 8));  // the high nibble (column 48) was never set
    CHECK(row[20] == (1 + 8));
    CHECK((row[63] >> 4) == (-2 + 8));
    CHECK(row[84] == (-1 + 8));
    CHECK(w.level(0, 0) == -7);
    CHECK(w.level(0, 16) == 7);
    CHECK(w.level(0, 127) == -2);
    CHECK(w.level(0, 133) == -1);
    CHECK(w.level(1, 139) == 0);
    // every position round-trips through set_level/level without disturbing its neighbours
    q::packed_weights<4, 64, q::grid::asymmetric> a(3, 300);
    for (kite::index_t r = 0; r < 3; ++r)
        for (kite::index_t c = 0; c < 300; ++c) a.set_level(r, c, int((r * 7 + c * 5) % 16));
    bool same = true;
    for (kite::index_t r = 0; r < 3; ++r)
        for (kite::index_t c = 0; c < 300; ++c) same = same && a.level(r, c) == int((r * 7 + c * 5) % 16);
    CHECK(same);
}

TEST_CASE("int8 layout: signed bytes for symmetric, unsigned with zero points for asymmetric",
          "[quant][format]") {
    q::packed_weights<8, q::per_row, q::grid::symmetric> s(1, 20);
    CHECK(s.row_bytes() == 64);
    s.set_level(0, 3, -127);
    CHECK(s.row_codes(0)[3] == 0x81);
    CHECK(s.level(0, 3) == -127);
    q::packed_weights<8, 64, q::grid::asymmetric, kite::fp16> a(2, 130);
    CHECK(a.groups_per_row() == 3);
    CHECK(a.zeros().size() == 6);
    CHECK(a.scales().size() == 6);
    CHECK(a.bytes() == 2 * 192 + 6 * 2 + 6);
    q::packed_weights<4, q::per_tensor, q::grid::asymmetric> t(5, 9);
    CHECK(t.scales().size() == 1);
    CHECK(t.zeros().size() == 1);
}

TEMPLATE_TEST_CASE("round-to-nearest reconstructs within half a step and matches the grid formula",
                   "[quant][rtn]", (q::absmax<8>), (q::absmax<4, 32>), (q::zero_point<4, 128>),
                   (q::zero_point<8, 64, kite::fp16>), (q::absmax<4, q::per_tensor>),
                   (q::zero_point<4, q::per_tensor, kite::fp16>)) {
    using F = typename TestType::format;
    const auto W = kite::test::quant::weights(19, 203, 7);
    const F p = q::quantize(TestType{}, W);
    REQUIRE(p.rows() == 19);
    REQUIRE(p.cols() == 203);
    const kite::index_t gc = F::group > 0 ? kite::index_t(F::group) : 203;
    for (kite::index_t r = 0; r < 19; ++r) {
        for (kite::index_t c = 0; c < 203; ++c) {
            const kite::index_t g = F::group > 0 ? c / gc : 0;
            const double s = p.scale(r, g);
            const double w = W(r, c);
            const double v = p.value(r, c);
            INFO("r = " << r << ", c = " << c << ", w = " << w << ", value = " << v << ", s = " << s);
            REQUIRE(p.level(r, c) >= F::min_level);
            REQUIRE(p.level(r, c) <= F::max_level);
            // at most half a step, plus what rounding the scale to its storage type shifts the
            // end of the grid by (levels at the end of the range are clamped)
            const double eps_s = std::is_same_v<typename F::scale_type, float> ? 0x1p-24 : 0x1p-11;
            CHECK(std::abs(v - w) <= (0.5 + (1 << F::bits) * eps_s) * s * (1 + 1e-9));
            // and the level is the nearest one: no neighbour is closer
            const int lv = p.level(r, c), z = p.zero(r, g);
            if (lv > F::min_level) CHECK(std::abs(s * (lv - 1 - z) - w) >= std::abs(v - w) - 1e-9);
            if (lv < F::max_level) CHECK(std::abs(s * (lv + 1 - z) - w) >= std::abs(v - w) - 1e-9);
        }
    }
    // all-zero rows dequantize to exact zeros
    for (kite::index_t c = 0; c < 203; ++c) CHECK(p.value(1, c) == 0.0f);
}

TEST_CASE("absmax grid: the largest magnitude is exact, levels are symmetric", "[quant][rtn]") {
    kite::matrix<float> w(1, 5);
    const float vals[] = {-2.0f, 0.5f, 1.0f, -0.1f, 1.5f};
    std::copy(vals, vals + 5, w.row(0).begin());
    const auto p = q::quantize(q::absmax<8>{}, w);
    CHECK(p.scale(0, 0) == Approx(2.0 / 127).epsilon(1e-7));
    CHECK(p.level(0, 0) == -127);
    CHECK(p.value(0, 0) == Approx(-2.0f).epsilon(1e-6));
    const auto p4 = q::quantize(q::absmax<4>{}, w);
    CHECK(p4.level(0, 0) == -7);
    CHECK(p4.level(0, 2) == std::lround(std::nearbyint(1.0 / double(p4.scale(0, 0)))));
}

TEST_CASE("zero-point grid follows GPTQ's quantizer: range includes 0, zero is an integer",
          "[quant][rtn]") {
    kite::matrix<float> w(1, 4);
    const float vals[] = {0.5f, 1.0f, 2.0f, 3.5f};  // all positive: lo is clamped to 0
    std::copy(vals, vals + 4, w.row(0).begin());
    const auto p = q::quantize(q::zero_point<4>{}, w);
    CHECK(p.zero(0, 0) == 0);
    CHECK(p.scale(0, 0) == Approx(3.5 / 15).epsilon(1e-7));
    CHECK(p.level(0, 3) == 15);
    kite::matrix<float> t(1, 3);
    t(0, 0) = -1.0f;
    t(0, 1) = 2.0f;  // scale = 3/15 = 0.2, zero = 1 / 0.2 = 5
    t(0, 2) = 0.5f;
    const auto pt = q::quantize(q::zero_point<4>{}, t);
    CHECK(pt.zero(0, 0) == 5);
    CHECK(pt.level(0, 0) == 0);
    CHECK(pt.level(0, 1) == 15);
}

TEST_CASE("quantize rejects bad weights with named errors", "[quant][errors]") {
    kite::matrix<float> w(3, 4, 0.5f);
    w(1, 2) = std::numeric_limits<float>::quiet_NaN();
    KITE_REQUIRE_THROWS_CONTAINING(q::quantize(q::absmax<8>{}, w), kite::invalid_argument, "W[1][2]");
    w(1, 2) = std::numeric_limits<float>::infinity();
    KITE_REQUIRE_THROWS_CONTAINING(q::quantize(q::zero_point<4, 32>{}, w), kite::invalid_argument, "finite");
    kite::matrix<float> empty(0, 4);
    KITE_REQUIRE_THROWS_CONTAINING(q::quantize(q::absmax<8>{}, empty), kite::shape_error, "non-empty");
    // an fp16 scale cannot hold the range of huge weights
    kite::matrix<float> big(1, 2, 1e9f);
    KITE_REQUIRE_THROWS_CONTAINING(q::quantize(q::absmax<8, q::per_row, kite::fp16>{}, big),
                                   kite::invalid_argument, "overflows");
}

TEST_CASE("save/load round-trips packed and AWQ weights and rejects damaged files", "[quant][io]") {
    kite::test::temp_dir dir;
    const auto W = kite::test::quant::weights(9, 200, 21);
    const auto p = q::quantize(q::zero_point<4, 64, kite::fp16>{}, W);
    q::save(dir / "w.kq", p);
    const auto r = q::load<q::packed_weights<4, 64, q::grid::asymmetric, kite::fp16>>(dir / "w.kq");
    REQUIRE(r.rows() == 9);
    REQUIRE(r.cols() == 200);
    CHECK(std::equal(p.codes().begin(), p.codes().end(), r.codes().begin()));
    CHECK(std::equal(p.zeros().begin(), p.zeros().end(), r.zeros().begin()));
    for (std::size_t i = 0; i < p.scales().size(); ++i) CHECK(p.scales()[i] == r.scales()[i]);

    kite::matrix<float> X(50, 200);
    auto xv = kite::test::randn(50 * 200, 22);
    std::copy(xv.begin(), xv.end(), X.flat().begin());
    const auto a = q::quantize(q::awq<4, 128>{}, W, X);
    q::save(dir / "a.kq", a);
    const auto ra = q::load<q::awq<4, 128>::format>(dir / "a.kq");
    CHECK(ra.alpha() == a.alpha());
    for (kite::index_t c = 0; c < 200; ++c) CHECK(ra.input_scales()[c] == a.input_scales()[c]);
    CHECK(std::equal(a.weights().codes().begin(), a.weights().codes().end(), ra.weights().codes().begin()));

    // the wrong type, a flipped byte, a truncated file, a missing file
    KITE_REQUIRE_THROWS_CONTAINING((q::load<q::packed_weights<4, 128, q::grid::asymmetric, kite::fp16>>(dir / "w.kq")),
                                   kite::format_error, "expected bits = 4, group = 128");
    KITE_REQUIRE_THROWS_CONTAINING((q::load<q::packed_weights<4, 64, q::grid::asymmetric, kite::fp16>>(dir / "a.kq")),
                                   kite::format_error, "magic");
    auto bytes = kite::io::read_text(dir / "w.kq");
    std::string bad = bytes;
    bad[100] = static_cast<char>(bad[100] ^ 0x10);
    kite::io::write_file_atomic(dir / "bad.kq", std::as_bytes(std::span<const char>(bad.data(), bad.size())));
    KITE_REQUIRE_THROWS_CONTAINING((q::load<q::packed_weights<4, 64, q::grid::asymmetric, kite::fp16>>(dir / "bad.kq")),
                                   kite::format_error, "checksum");
    const std::string cut = bytes.substr(0, bytes.size() / 2);
    kite::io::write_file_atomic(dir / "cut.kq", std::as_bytes(std::span<const char>(cut.data(), cut.size())));
    KITE_REQUIRE_THROWS_CONTAINING((q::load<q::packed_weights<4, 64, q::grid::asymmetric, kite::fp16>>(dir / "cut.kq")),
                                   kite::format_error, "cut.kq");
    KITE_REQUIRE_THROWS_CONTAINING((q::load<q::packed_weights<4, 64, q::grid::asymmetric, kite::fp16>>(dir / "none.kq")),
                                   kite::io_error, "none.kq");
}
