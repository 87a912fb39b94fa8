// ODR check: this file and odr_b.cpp both include the umbrella header and are linked together;
// a non-inline definition in any kite header breaks the link.
#include <kite/kite.hpp>

#include "kite_test.hpp"

float odr_b_dot(const float* a, const float* b, std::size_t n);

TEST_CASE("two translation units including kite.hpp link and agree", "[package][odr]") {
    const float a[] = {1, 2, 3}, b[] = {4, 5, 6};
    CHECK(kite::simd::dot(a, b, 3) == odr_b_dot(a, b, 3));
}
