#include <cmath>
#include <fstream>
#include <sstream>

#include "kite/core/half.hpp"
#include "kite_test.hpp"

namespace {
struct row {
    std::uint32_t f;
    std::uint16_t b;
    std::uint16_t h;
};
std::vector<row> load_fixture() {
    std::ifstream in(kite::test::fixture("core/half_conversions.txt"));
    REQUIRE(in.good());
    std::vector<row> rows;
    std::string line;
    while (std::getline(in, line)) {
        if (line.empty() || line[0] == '#') continue;
        std::istringstream ls(line);
        std::uint32_t f, b, h;
        ls >> std::hex >> f >> b >> h;
        rows.push_back({f, static_cast<std::uint16_t>(b), static_cast<std::uint16_t>(h)});
    }
    return rows;
}
}  // namespace

TEST_CASE("bf16 and fp16 conversions match PyTorch bit for bit", "[core][half][fixture]") {
    const auto rows = load_fixture();
    REQUIRE(rows.size() > 4000);
    std::size_t bf_mismatch = 0, h_mismatch = 0;
    std::ostringstream report;
    for (const auto& r : rows) {
        const float f = std::bit_cast<float>(r.f);
        if (kite::bf16(f).bits != r.b && bf_mismatch++ < 10)
            report << "bf16 of " << std::hex << r.f << " = " << kite::bf16(f).bits << ", torch " << r.b << "\n";
        if (kite::fp16(f).bits != r.h && h_mismatch++ < 10)
            report << "fp16 of " << std::hex << r.f << " = " << kite::fp16(f).bits << ", torch " << r.h << "\n";
    }
    INFO(report.str());
    CHECK(bf_mismatch == 0);
    CHECK(h_mismatch == 0);
}

TEST_CASE("every bf16 and fp16 value round-trips through float", "[core][half]") {
    for (std::uint32_t b = 0; b <= 0xffff; ++b) {
        const auto bits = static_cast<std::uint16_t>(b);
        const float fb = kite::bf16::from_bits(bits).to_float();
        const float fh = kite::fp16::from_bits(bits).to_float();
        if (std::isnan(fb)) {
            CHECK(kite::bf16(fb).bits == 0xffff);
        } else if (kite::bf16(fb).bits != bits) {
            FAIL("bf16 " << b << " does not round-trip");
        }
        if (std::isnan(fh)) {
            CHECK(kite::fp16(fh).bits == (bits | 0x0200));  // quieted, payload kept
        } else if (kite::fp16(fh).bits != bits) {
            FAIL("fp16 " << b << " does not round-trip");
        }
    }
    // Known values.
    CHECK(kite::fp16(1.0f).bits == 0x3c00);
    CHECK(kite::fp16(65504.0f).bits == 0x7bff);
    CHECK(kite::fp16(65520.0f).bits == 0x7c00);     // tie rounds to even -> inf
    CHECK(kite::fp16::from_bits(0x0001).to_float() == std::ldexp(1.0f, -24));
    CHECK(kite::bf16(1.0f).bits == 0x3f80);
    CHECK(kite::bf16::from_bits(0x3f80).to_float() == 1.0f);
    static_assert(kite::bf16(2.0f).bits == 0x4000, "conversions are constexpr");
}

TEST_CASE("convert() checks sizes and converts arrays", "[core][half]") {
    const std::vector<float> src{0.5f, -2.0f, 3.0f};
    std::vector<kite::bf16> dst(3);
    kite::convert<kite::bf16, float>(src, dst);
    CHECK(dst[1].to_float() == -2.0f);
    std::vector<float> back(3);
    kite::convert<float, kite::bf16>(dst, back);
    CHECK(back == src);
    std::vector<kite::fp16> wrong(2);
    CHECK_THROWS_AS((kite::convert<kite::fp16, float>(src, wrong)), kite::shape_error);
}
