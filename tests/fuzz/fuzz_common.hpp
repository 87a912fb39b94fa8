#pragma once
// Shared by kite's fuzz targets (tests/fuzz/fuzz_*.hpp). Each target is a function
//   int fuzz_<name>(const std::uint8_t* data, std::size_t size)
// that feeds the bytes to one of kite's readers. A kite::error (any subclass) is the expected
// answer to bad input and is swallowed by guarded(); anything else escapes: another exception
// (std::terminate under libFuzzer, a failed test case in test_fuzz_regressions), a crash, a
// sanitizer report or a hang is a finding.
//
// The same functions are compiled twice: into libFuzzer executables (fuzz_<name>.cpp, clang,
// KITE_BUILD_FUZZ) and into the Catch2 program test_fuzz_regressions (the normal build), which
// replays tests/fuzz/corpus/<name>/ and tests/fuzz/regressions/<name>/ through them.

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>
#include <string_view>
#include <system_error>
#include <vector>

#include <unistd.h>

#include "kite/core/error.hpp"

namespace kite::fuzz {

/// Inputs above this size are ignored: real files are larger, but the bugs a fuzzer finds are
/// in headers and tables, and a 1 MiB cap keeps every execution fast.
inline constexpr std::size_t max_input = std::size_t{1} << 20;

/// The bytes as a string_view.
inline std::string_view as_text(const std::uint8_t* data, std::size_t size) noexcept {
    return {reinterpret_cast<const char*>(data), size};
}

/// KITE_FUZZ_VERBOSE=1 in the environment: print the kite::error each input ends in (to see
/// how far the seeds get).
inline bool verbose() {
    static const bool v = [] {
        const char* e = std::getenv("KITE_FUZZ_VERBOSE");
        return e != nullptr && *e != 0 && *e != '0';
    }();
    return v;
}

/// Runs f() and answers 0; a kite::error is the expected outcome for bad input.
template <class F>
int guarded(F&& f) {
    try {
        f();
    } catch (const kite::error& e) {
        if (verbose()) std::fprintf(stderr, "kite fuzz: kite::error: %.300s\n", e.what());
    }
    return 0;
}

/// Reports a broken invariant (not a kite::error: kite answered, but wrongly) and aborts.
[[noreturn]] inline void finding(const char* what) {
    std::fprintf(stderr, "kite fuzz: %s\n", what);
    std::abort();
}

/// Every id a tokenizer produced must be a token of its vocabulary [0, n).
inline void require_ids_below(const std::vector<std::int32_t>& ids, std::size_t n, const char* what) {
    for (const std::int32_t id : ids)
        if (id < 0 || static_cast<std::size_t>(id) >= n) finding(what);
}

/// A folder of this process's own under the system temp folder, removed at exit. Loaders that
/// take paths read files written here, rewritten on each input.
inline const std::filesystem::path& scratch_dir() {
    static const std::filesystem::path dir = [] {
        namespace fs = std::filesystem;
        fs::path d = fs::temp_directory_path() / ("kite_fuzz_" + std::to_string(::getpid()));
        fs::create_directories(d);
        static const std::string keep = d.string();
        std::atexit([] {
            std::error_code ec;
            std::filesystem::remove_all(keep, ec);
        });
        return d;
    }();
    return dir;
}

/// Writes `bytes` to `name` (relative to scratch_dir(), parent folders created) and returns
/// its path.
inline std::filesystem::path write_scratch(const std::string& name, std::string_view bytes) {
    const std::filesystem::path p = scratch_dir() / name;
    if (p.has_parent_path()) std::filesystem::create_directories(p.parent_path());
    std::ofstream out(p, std::ios::binary | std::ios::trunc);
    out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
    out.close();
    if (!out) {
        std::fprintf(stderr, "kite fuzz: cannot write %s\n", p.c_str());
        std::abort();  // the harness, not kite: stop loudly
    }
    return p;
}

/// An empty scratch sub-folder `name` (its previous contents removed).
inline std::filesystem::path fresh_scratch_dir(const std::string& name) {
    const std::filesystem::path p = scratch_dir() / name;
    std::error_code ec;
    std::filesystem::remove_all(p, ec);
    std::filesystem::create_directories(p);
    return p;
}

/// Splits `s` at every occurrence of `sep` (multi-file inputs: "corpus\n###\nqueries...").
inline std::vector<std::string_view> split_parts(std::string_view s, std::string_view sep) {
    std::vector<std::string_view> out;
    for (;;) {
        const std::size_t p = s.find(sep);
        if (p == std::string_view::npos) {
            out.push_back(s);
            return out;
        }
        out.push_back(s.substr(0, p));
        s.remove_prefix(p + sep.size());
    }
}

/// The separator of multi-file inputs.
inline constexpr std::string_view part_separator = "\n#####\n";

}  // namespace kite::fuzz

/// KITE_FUZZ_ENTRY(name): the libFuzzer entry point calling fuzz_<name> (one per executable).
#define KITE_FUZZ_ENTRY(name)                                                        \
    extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) { \
        return ::kite::fuzz::fuzz_##name(data, size);                                \
    }
