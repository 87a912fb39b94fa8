#pragma once
// Shared by kite's GPU tests (label gpu). KITE_NEED_GPU() at the top of a test case returns
// early when no CUDA device is present; the case counts as skipped (the program exits 77, ctest
// reports it skipped with the message below). KITE_REQUIRE_GPU=1 (bench/gpu/run.sh sets it)
// makes a missing device a failure instead, so a GPU run cannot pass by skipping.

#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <random>
#include <span>
#include <string_view>
#include <vector>

#include "kite/cuda/runtime.hpp"
#include "kite/core/half.hpp"
#include "kite_test.hpp"

namespace kite::test {

inline bool gpu_available() {
    if (kite::cuda::device_present()) return true;
    const char* env = std::getenv("KITE_REQUIRE_GPU");
    if (env && std::string_view(env) == "1") {
        FAIL_CHECK("no CUDA device, and KITE_REQUIRE_GPU=1");
        return false;
    }
    WARN("SKIPPED: no CUDA device present (GPU tests need one; they run in bench/gpu/run.sh)");
    ++skipped_cases();
    return false;
}

/// ||a - b|| / ||b|| in double; NaN when either holds a NaN (so it fails any bar).
inline double rel_l2(std::span<const float> a, std::span<const double> b) {
    double num = 0, den = 0;
    for (std::size_t i = 0; i < a.size(); ++i) {
        const double d = static_cast<double>(a[i]) - b[i];
        num += d * d;
        den += b[i] * b[i];
    }
    if (std::isnan(num) || std::isnan(den)) return std::nan("");
    return den > 0 ? std::sqrt(num / den) : std::sqrt(num);
}

}  // namespace kite::test

#define KITE_NEED_GPU()                          \
    do {                                         \
        if (!::kite::test::gpu_available()) return; \
    } while (false)
