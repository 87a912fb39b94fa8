#include <cmath>
#include <fstream>
#include <sstream>

#include <bit>
#include <random>
#include <vector>

#include "kite/core/half.hpp"
#include "kite/core/simd_convert.hpp"
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

TEST_CASE("simd::store_from_float (the vector F16C path) equals from_float bit for bit", "[core][half]") {
    // Every fp16 value, the midpoints between neighbours (ties), one ulp either side of them,
    // the overflow and subnormal edges, NaNs with payloads, and random floats of every exponent.
    std::vector<float> x;
    for (std::uint32_t b = 0; b <= 0xffff; ++b) {
        const float f = kite::fp16::from_bits(static_cast<std::uint16_t>(b)).to_float();
        x.push_back(f);
        if (!std::isfinite(f) || (b & 0x7fff) == 0x7bff) continue;
        const float next = kite::fp16::from_bits(static_cast<std::uint16_t>(b + 1)).to_float();
        if (!std::isfinite(next)) continue;
        const float mid = f + (next - f) / 2;
        x.push_back(mid);
        x.push_back(std::nextafter(mid, 0.0f));
        x.push_back(std::nextafter(mid, 2 * mid));
    }
    for (const float f : {65504.0f, 65519.0f, 65520.0f, 1e30f, -1e30f, 6e-8f, 2.9e-8f, 3.0e-8f, 1e-45f, -0.0f})
        x.push_back(f);
    for (const std::uint32_t nan : {0x7fc00000u, 0x7f800001u, 0xffbfffffu, 0x7fa5a5a5u}) x.push_back(std::bit_cast<float>(nan));
    std::mt19937 rng(7);
    for (int i = 0; i < 100000; ++i) x.push_back(std::bit_cast<float>(static_cast<std::uint32_t>(rng())));
    x.resize(x.size() / 16 * 16 + 11);  // a tail that is not a whole vector
    const auto check = [&]<class T>(T) {
        std::vector<T> got(x.size());
        kite::simd::store_from_float(x.data(), got.data(), x.size());
        std::size_t bad = 0, first = 0;
        for (std::size_t i = 0; i < x.size(); ++i)
            if (got[i].bits != kite::from_float<T>(x[i]).bits && bad++ == 0) first = i;
        INFO(bad << " mismatches; first: float bits " << std::hex << std::bit_cast<std::uint32_t>(x[first]));
        CHECK(bad == 0);
    };
    check(kite::fp16{});
    check(kite::bf16{});
}
