// Uses kite as a user would, through the umbrella header.
#include <kite/kite.hpp>

#include <cstdio>

int main() {
    kite::matrix<float> m(2, 3, 1.0f);
    const float d = kite::simd::dot(m.row(0), m.row(1));
    const float h = kite::bf16(d).to_float();
    std::printf("kite %s: dot = %g, bf16 = %g\n", KITE_VERSION_STRING, d, h);
    return (d == 3.0f && h == 3.0f) ? 0 : 1;
}
