#pragma once
// Test-side helpers shared by kite's tests: one include for Catch2 v2 or v3, fixture paths,
// and seeded random data generators.

#if KITE_CATCH2_MAJOR == 3
#include <catch2/catch_approx.hpp>
#include <catch2/catch_template_test_macros.hpp>
#include <catch2/catch_test_macros.hpp>
#include <catch2/generators/catch_generators.hpp>
#include <catch2/matchers/catch_matchers_floating_point.hpp>
#include <catch2/matchers/catch_matchers_string.hpp>
using Catch::Approx;
#else
#include <catch2/catch.hpp>
#endif

#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <random>
#include <string>
#include <vector>

namespace kite::test {

/// Path of a committed fixture file: tests/fixtures/<rel>.
inline std::filesystem::path fixture(const std::string& rel) {
    return std::filesystem::path(KITE_FIXTURES_DIR) / rel;
}

/// The real-data folder from the KITE_DATA environment variable joined with `rel`, or an empty
/// path when KITE_DATA is unset or the path does not exist (the caller then skips).
inline std::filesystem::path data_path(const std::string& rel) {
    const char* env = std::getenv("KITE_DATA");
    if (env == nullptr || *env == 0) return {};
    auto p = std::filesystem::path(env) / rel;
    return std::filesystem::exists(p) ? p : std::filesystem::path{};
}

/// `n` floats drawn from N(0, 1) with a fixed seed.
inline std::vector<float> randn(std::size_t n, std::uint64_t seed, float scale = 1.0f) {
    std::mt19937_64 g(seed);
    std::normal_distribution<float> d(0.0f, scale);
    std::vector<float> v(n);
    for (auto& x : v) x = d(g);
    return v;
}

/// A fresh, empty temporary directory removed when the object dies.
class temp_dir {
public:
    temp_dir() {
        std::random_device rd;
        path_ = std::filesystem::temp_directory_path() /
                ("kite-test-" + std::to_string(rd()) + std::to_string(rd()));
        std::filesystem::create_directories(path_);
    }
    ~temp_dir() {
        std::error_code ec;
        std::filesystem::remove_all(path_, ec);
    }
    temp_dir(const temp_dir&) = delete;
    temp_dir& operator=(const temp_dir&) = delete;
    const std::filesystem::path& path() const { return path_; }
    std::filesystem::path operator/(const std::string& name) const { return path_ / name; }

private:
    std::filesystem::path path_;
};

}  // namespace kite::test

/// REQUIRE_THROWS_WITH_SUBSTR(expr, ExceptionType, "text"): throws that type and its what()
/// contains the text.
#define KITE_REQUIRE_THROWS_CONTAINING(expr, ExceptionType, text)                        \
    do {                                                                                 \
        bool kite_thrown_ = false;                                                       \
        try {                                                                            \
            (void)(expr);                                                                \
        } catch (const ExceptionType& kite_e_) {                                         \
            kite_thrown_ = true;                                                         \
            INFO("what(): " << kite_e_.what());                                          \
            CHECK(std::string(kite_e_.what()).find(text) != std::string::npos);          \
        }                                                                                \
        CHECK(kite_thrown_);                                                             \
    } while (false)
