#pragma once
// Test-side helpers shared by kite's tests: one include for Catch2 v2 or v3, fixture paths,
// real data and models that count as skipped (never passed) when absent, NaN-safe numeric
// comparisons (kite_compare.hpp) and seeded random data generators.
//
// Tests on real data or models carry a hidden resource tag and say what they need first:
//
//   TEST_CASE("decoder agrees with llama2.c on the real checkpoint", "[decoder][.aidreams]") {
//       const auto path = KITE_NEED_DATA("aidreams260k/aidreams260K.bin");
//       ...
//
// kite_add_test(... RESOURCES aidreams) registers them as their own ctest entry
// (`test_decoder:aidreams`, tag filter `[aidreams]`). When the resource is missing the test
// case returns early, the test program exits with kite::test::skip_exit_code and ctest counts
// the entry as skipped; with KITE_REQUIRE_DATA=1 in the environment (CI) it fails instead.

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
#include <iostream>
#include <random>
#include <string>
#include <vector>

#include "kite_compare.hpp"

namespace kite::test {

/// Exit status of a test program in which a test case was skipped for a missing resource
/// (ctest's SKIP_RETURN_CODE; 77 as in Automake).
inline constexpr int skip_exit_code = 77;

/// How many test cases of this program were skipped for a missing resource.
inline int& skipped_cases() {
    static int n = 0;
    return n;
}

/// KITE_REQUIRE_DATA=1: a missing resource is a failure, not a skip.
inline bool resources_required() {
    const char* env = std::getenv("KITE_REQUIRE_DATA");
    return env != nullptr && *env != 0 && std::string(env) != "0";
}

/// KITE_TEST_REDUCED=1 (the asan preset): the slowest real-model cases run a subset of their
/// inputs (the release run covers them all); what they check is unchanged.
inline bool reduced_run() {
    const char* env = std::getenv("KITE_TEST_REDUCED");
    return env != nullptr && *env != 0 && std::string(env) != "0";
}

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

/// The model folder (KITE_MODELS, else the repository's models/, filled by tools/fetch_*.py)
/// joined with `rel`, or an empty path when it does not exist.
inline std::filesystem::path model_path(const std::string& rel) {
    const char* env = std::getenv("KITE_MODELS");
    const std::filesystem::path root =
        env != nullptr && *env != 0 ? std::filesystem::path(env) : std::filesystem::path(KITE_MODELS_DIR);
    auto p = root / rel;
    return std::filesystem::exists(p) ? p : std::filesystem::path{};
}

/// `path` unchanged when it is not empty; otherwise records a skip (or, under
/// KITE_REQUIRE_DATA=1, a failure) naming `what` and how to get it, and returns it empty.
inline std::filesystem::path need_resource(std::filesystem::path path, const std::string& what,
                                           const std::string& how) {
    if (!path.empty()) return path;
    if (resources_required()) {
        FAIL_CHECK("missing " << what << " (" << how << ") and KITE_REQUIRE_DATA is set");
    } else {
        ++skipped_cases();
        WARN("SKIPPED: missing " << what << " (" << how << ")");
    }
    return path;
}

}  // namespace kite::test

/// Inside a test case: declares `var`, the path of `rel` under KITE_DATA, or returns from the
/// test case, which then counts as skipped (a failure under KITE_REQUIRE_DATA=1).
#define KITE_NEED_DATA(var, rel)                                                                    \
    const std::filesystem::path var = kite::test::need_resource(                                    \
        kite::test::data_path(rel), std::string("$KITE_DATA/") + (rel),                             \
        "set KITE_DATA to the evaluation data folder");                                             \
    if (var.empty()) return

/// The same for `rel` under models/, fetched by `tools/<fetch_script>`.
#define KITE_NEED_MODEL(var, rel, fetch_script)                                                     \
    const std::filesystem::path var = kite::test::need_resource(                                    \
        kite::test::model_path(rel), std::string("models/") + (rel),                                \
        std::string("run python3 tools/") + (fetch_script));                                        \
    if (var.empty()) return

namespace kite::test {

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
