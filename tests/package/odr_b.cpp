#include <kite/kite.hpp>

float odr_b_dot(const float* a, const float* b, std::size_t n) { return kite::simd::dot(a, b, n); }
