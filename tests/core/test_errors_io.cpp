#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>

#include "kite/core/checksum.hpp"
#include "kite/core/error.hpp"
#include "kite/core/io.hpp"
#include "kite/core/validate.hpp"
#include "kite_test.hpp"

namespace fs = std::filesystem;

TEST_CASE("KITE_REQUIRE throws the named type with the value in the message", "[core][error]") {
    auto f = [](int k) {
        KITE_REQUIRE(k >= 1, kite::invalid_argument, "search: k = ", k, "; expected k >= 1");
        return k;
    };
    CHECK(f(3) == 3);
    KITE_REQUIRE_THROWS_CONTAINING(f(0), kite::invalid_argument, "k = 0; expected k >= 1");
    // The hierarchy: everything is a kite::error, shape errors are invalid arguments.
    CHECK_THROWS_AS(throw kite::shape_error("x"), kite::invalid_argument);
    CHECK_THROWS_AS(throw kite::format_error("x"), kite::error);
    const kite::unicode_error u("bad byte", 17);
    CHECK(u.byte_offset() == 17);
    CHECK(kite::detail::concat("a", 1, '-', 2.5, true) == "a1-2.5true");
}

TEST_CASE("require_finite names the position of NaN and infinity", "[core][error]") {
    std::vector<float> v(1000, 1.0f);
    CHECK_NOTHROW(kite::require_finite(std::span<const float>(v), "x"));
    v[517] = std::numeric_limits<float>::quiet_NaN();
    KITE_REQUIRE_THROWS_CONTAINING(kite::require_finite(std::span<const float>(v), "x"),
                                   kite::invalid_argument, "x[517] = nan");
    v[517] = 1.0f;
    v[999] = -std::numeric_limits<float>::infinity();
    CHECK(kite::find_non_finite(v) == 999);
    kite::matrix_view<const float> m(v.data(), 10, 100);
    KITE_REQUIRE_THROWS_CONTAINING(kite::require_finite(m, "queries"), kite::invalid_argument,
                                   "queries[9][99]");
}

TEST_CASE("atomic_file replaces the target only on commit", "[core][io]") {
    kite::test::temp_dir dir;
    const auto target = dir / "index.bin";
    {
        std::ofstream(target) << "old contents";
    }
    {
        kite::io::atomic_file f(target);
        f.put<std::uint32_t>(0xdeadbeef);
        // no commit: destructor discards the temporary
    }
    CHECK(kite::io::read_text(target) == "old contents");
    CHECK(std::distance(fs::directory_iterator(dir.path()), fs::directory_iterator{}) == 1);
    {
        kite::io::atomic_file f(target);
        const std::uint32_t v[] = {1, 2, 3};
        f.put_span<std::uint32_t>(v);
        CHECK(f.bytes_written() == 12);
        f.commit();
    }
    kite::io::mapped_file m(target);
    REQUIRE(m.size() == 12);
    kite::io::byte_reader r(m.bytes(), m.path());
    CHECK(r.get<std::uint32_t>("a") == 1);
    std::uint32_t rest[2];
    r.get_into<std::uint32_t>(rest, "rest");
    CHECK(rest[1] == 3);
    CHECK(r.remaining() == 0);
    KITE_REQUIRE_THROWS_CONTAINING(r.get<std::uint8_t>("trailer"), kite::format_error,
                                   "truncated while reading trailer");
    CHECK(std::distance(fs::directory_iterator(dir.path()), fs::directory_iterator{}) == 1);

    // Writing into a folder that does not exist is an io_error naming the path.
    CHECK_THROWS_AS(kite::io::atomic_file(dir / "missing" / "x.bin"), kite::io_error);
}

TEST_CASE("mapped_file errors and empty files", "[core][io]") {
    kite::test::temp_dir dir;
    KITE_REQUIRE_THROWS_CONTAINING(kite::io::mapped_file(dir / "nope.bin"), kite::io_error, "nope.bin");
    CHECK_THROWS_AS(kite::io::mapped_file(dir.path()), kite::io_error);  // a directory
    { std::ofstream(dir / "empty.bin"); }
    kite::io::mapped_file e(dir / "empty.bin");
    CHECK(e.size() == 0);
    kite::io::byte_reader r(e.bytes(), "empty.bin");
    KITE_REQUIRE_THROWS_CONTAINING(r.get<std::uint64_t>("magic"), kite::format_error,
                                   "empty.bin: truncated while reading magic");
    std::vector<float> big(std::numeric_limits<std::size_t>::max() / 8 > 0 ? 4 : 0);
    CHECK_THROWS_AS(r.get_into<float>(big, "payload"), kite::format_error);
}

TEST_CASE("crc32c matches the standard check value on both paths", "[core][checksum]") {
    const char* s = "123456789";
    const auto bytes = std::as_bytes(std::span<const char>(s, 9));
    CHECK(kite::crc32c(bytes) == 0xE3069283u);
    CHECK(kite::crc32c_portable(bytes) == 0xE3069283u);
    auto data = kite::test::randn(1001, 5);
    const auto db = std::as_bytes(std::span<const float>(data));
    CHECK(kite::crc32c(db) == kite::crc32c_portable(db));
    // Incremental update equals one pass.
    CHECK(kite::crc32c(db.subspan(100), kite::crc32c(db.first(100))) == kite::crc32c(db));
    CHECK(kite::crc32c(std::span<const std::byte>{}) == 0u);
}
