// Vector files (.npy, .fvecs, .ivecs) and FAISS-format persistence of flat_index: fixtures
// written by NumPy and faiss-cpu (tools/flat_make_fixtures.py), round trips, and truncated,
// foreign or corrupt files, which must raise kite::format_error and never crash.
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>

#include "flat_test_util.hpp"
#include "kite/retrieval/faiss_io.hpp"
#include "kite/retrieval/vector_io.hpp"

namespace {

using kite::index_t;
using kite::retrieval::flat_index;
namespace kr = kite::retrieval;
namespace kt = kite::test::flat;

std::filesystem::path fx(const std::string& name) { return kite::test::fixture("retrieval/" + name); }

std::vector<std::byte> read_bytes(const std::filesystem::path& p) {
    std::ifstream f(p, std::ios::binary);
    std::vector<char> c((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
    std::vector<std::byte> b(c.size());
    std::memcpy(b.data(), c.data(), c.size());
    return b;
}

void write_bytes(const std::filesystem::path& p, std::span<const std::byte> b) {
    std::ofstream f(p, std::ios::binary | std::ios::trunc);
    f.write(reinterpret_cast<const char*>(b.data()), static_cast<std::streamsize>(b.size()));
}

// FAISS's results for the fixture queries must equal kite's, up to the order of exact ties
// (FAISS's inner-product heap does not order equal scores by id; kite does).
void check_same_as_faiss(const kr::search_result& r, const std::string& name, bool larger_first) {
    const auto D = kr::read_npy<float>(fx("flat_" + name + "_D.npy"));
    const auto I = kr::read_npy<std::int64_t>(fx("flat_" + name + "_I.npy"));
    REQUIRE(r.labels.rows() == I.rows());
    REQUIRE(r.labels.cols() == I.cols());
    for (index_t q = 0; q < I.rows(); ++q)
        for (index_t i = 0; i < I.cols(); ++i) {
            INFO(name << " query " << q << " rank " << i);
            CHECK(r.distances(q, i) == Approx(D(q, i)).epsilon(1e-5).margin(1e-4));
            if (r.labels(q, i) != I(q, i)) {
                // only inside a group of equal scores
                bool tie = (i > 0 && D(q, i - 1) == D(q, i)) || (i + 1 < I.cols() && D(q, i + 1) == D(q, i));
                CHECK(tie);
            }
            if (i > 0) CHECK((larger_first ? r.distances(q, i - 1) >= r.distances(q, i) : r.distances(q, i - 1) <= r.distances(q, i)));
        }
}

}  // namespace

TEST_CASE(".npy files: NumPy fixtures, round trips and bad files", "[retrieval][flat][io]") {
    const auto base = kr::read_npy(fx("flat_base.npy"));
    CHECK(base.rows() == 200);
    CHECK(base.cols() == 16);
    const auto v2 = kr::read_npy<std::int32_t>(fx("flat_i4_v2.npy"));  // 1-D, format version 2.0
    REQUIRE(v2.rows() == 1);
    REQUIRE(v2.cols() == 7);
    for (index_t i = 0; i < 7; ++i) CHECK(v2(0, i) == static_cast<std::int32_t>(i));
    KITE_REQUIRE_THROWS_CONTAINING(kr::read_npy<float>(fx("flat_i4_v2.npy")), kite::format_error, "dtype '<i4'");
    KITE_REQUIRE_THROWS_CONTAINING(kr::read_npy<float>(fx("flat_l2_I.npy")), kite::format_error, "expected '<f4'");

    kite::test::temp_dir tmp;
    kr::write_npy(tmp / "a.npy", base);
    const auto back = kr::read_npy(tmp / "a.npy");
    CHECK(std::equal(back.flat().begin(), back.flat().end(), base.flat().begin(), base.flat().end()));
    CHECK(read_bytes(tmp / "a.npy") == read_bytes(fx("flat_base.npy")));  // byte-identical to NumPy's
    kite::matrix<std::int64_t> ids(3, 2);
    for (index_t i = 0; i < 6; ++i) ids.flat()[i] = static_cast<std::int64_t>(i) - 3;
    kr::write_npy(tmp / "i.npy", ids);
    CHECK(kr::read_npy<std::int64_t>(tmp / "i.npy")(0, 0) == -3);
    kr::write_npy(tmp / "e.npy", kite::matrix<float>(0, 5));
    CHECK(kr::read_npy(tmp / "e.npy").rows() == 0);

    auto bytes = read_bytes(fx("flat_base.npy"));
    auto with = [&](auto edit) {
        auto b = bytes;
        edit(b);
        write_bytes(tmp / "bad.npy", b);
        return tmp / "bad.npy";
    };
    auto header_replace = [&](const std::string& from, const std::string& to) {
        return with([&](std::vector<std::byte>& b) {
            std::string s(reinterpret_cast<const char*>(b.data()), b.size());
            const auto p = s.find(from);
            REQUIRE(p != std::string::npos);
            REQUIRE(from.size() == to.size());
            std::memcpy(b.data() + p, to.data(), to.size());
        });
    };
    KITE_REQUIRE_THROWS_CONTAINING(kr::read_npy(with([](auto& b) { b[1] = std::byte{'X'}; })), kite::format_error, "bad magic");
    KITE_REQUIRE_THROWS_CONTAINING(kr::read_npy(with([](auto& b) { b[6] = std::byte{9}; })), kite::format_error, "version 9");
    KITE_REQUIRE_THROWS_CONTAINING(kr::read_npy(header_replace("False", "True ")), kite::format_error, "Fortran");
    KITE_REQUIRE_THROWS_CONTAINING(kr::read_npy(header_replace("'<f4'", "'>f4'")), kite::format_error, "'>f4'");
    KITE_REQUIRE_THROWS_CONTAINING(kr::read_npy(header_replace("(200, 16)", "(2,10,16)")), kite::format_error, "3 dimensions");
    KITE_REQUIRE_THROWS_CONTAINING(kr::read_npy(header_replace("(200, 16)", "(201, 16)")), kite::format_error, "needs more data");
    KITE_REQUIRE_THROWS_CONTAINING(kr::read_npy(header_replace("(200, 16)", "(100, 16)")), kite::format_error, "bytes of data");
    KITE_REQUIRE_THROWS_CONTAINING(kr::read_npy(header_replace("(200, 16)", "(200, x6)")), kite::format_error, "tuple of integers");
    KITE_REQUIRE_THROWS_CONTAINING(kr::read_npy(with([](auto& b) { b.push_back(std::byte{0}); })), kite::format_error, "bytes of data");
    KITE_REQUIRE_THROWS_CONTAINING(kr::read_npy(with([](auto& b) { b[8] = std::byte{0xff}; b[9] = std::byte{0xff}; })), kite::format_error, "truncated");
    // Every truncation fails cleanly.
    for (std::size_t len = 0; len < bytes.size(); len += (len < 200 ? 1 : 997)) {
        write_bytes(tmp / "t.npy", std::span<const std::byte>(bytes.data(), len));
        CHECK_THROWS_AS(kr::read_npy(tmp / "t.npy"), kite::format_error);
    }
    CHECK_THROWS_AS(kr::read_npy(tmp / "missing.npy"), kite::io_error);
}

TEST_CASE("mapped_npy views a .npy file in place", "[retrieval][flat][io]") {
    const kr::mapped_npy m(fx("flat_base.npy"));
    const auto copy = kr::read_npy(fx("flat_base.npy"));
    REQUIRE(m.rows() == 200);
    REQUIRE(m.cols() == 16);
    CHECK(std::equal(m.view().flat().begin(), m.view().flat().end(), copy.flat().begin(), copy.flat().end()));
    flat_index<kite::metric::l2> index(16);
    index.add(m.view());
    CHECK(index.size() == 200);
    KITE_REQUIRE_THROWS_CONTAINING(kr::mapped_npy(fx("flat_l2_I.npy")), kite::format_error, "expected '<f4'");
}

TEST_CASE(".fvecs and .ivecs files", "[retrieval][flat][io]") {
    const auto base = kr::read_npy(fx("flat_base.npy"));
    const auto fv = kr::read_fvecs(fx("flat_base.fvecs"));
    CHECK(std::equal(fv.flat().begin(), fv.flat().end(), base.flat().begin(), base.flat().end()));
    CHECK(kr::read_vectors(fx("flat_base.fvecs")).rows() == 200);
    CHECK(kr::read_vectors(fx("flat_base.npy")).cols() == 16);
    const auto gt = kr::read_ivecs(fx("flat_gt.ivecs"));
    const auto I = kr::read_npy<std::int64_t>(fx("flat_l2_I.npy"));
    REQUIRE(gt.rows() == 5);
    REQUIRE(gt.cols() == 10);
    for (index_t i = 0; i < 50; ++i) CHECK(gt.flat()[i] == I.flat()[i]);
    KITE_REQUIRE_THROWS_CONTAINING(kr::read_vectors("x.bin"), kite::invalid_argument, "extension");

    kite::test::temp_dir tmp;
    kr::write_fvecs(tmp / "a.fvecs", base.view());
    CHECK(read_bytes(tmp / "a.fvecs") == read_bytes(fx("flat_base.fvecs")));
    kr::write_ivecs(tmp / "a.ivecs", gt.view());
    CHECK(read_bytes(tmp / "a.ivecs") == read_bytes(fx("flat_gt.ivecs")));
    std::ofstream(tmp / "empty.fvecs").close();
    CHECK(kr::read_fvecs(tmp / "empty.fvecs").rows() == 0);

    auto bytes = read_bytes(fx("flat_base.fvecs"));
    auto b = bytes;
    b.pop_back();
    write_bytes(tmp / "b.fvecs", b);
    KITE_REQUIRE_THROWS_CONTAINING(kr::read_fvecs(tmp / "b.fvecs"), kite::format_error, "whole number");
    b = bytes;
    const std::int32_t other = 15;
    std::memcpy(b.data() + 68 * 5, &other, 4);  // vector 5 claims another dimension
    write_bytes(tmp / "c.fvecs", b);
    KITE_REQUIRE_THROWS_CONTAINING(kr::read_fvecs(tmp / "c.fvecs"), kite::format_error, "vector 5 has dimension 15");
    const std::int32_t zero = 0;
    std::memcpy(b.data(), &zero, 4);
    write_bytes(tmp / "d.fvecs", b);
    KITE_REQUIRE_THROWS_CONTAINING(kr::read_fvecs(tmp / "d.fvecs"), kite::format_error, "dimension 0");
    for (std::size_t len = 1; len < 300; ++len) {
        write_bytes(tmp / "t.fvecs", std::span<const std::byte>(bytes.data(), len));
        if (len % 68 != 0) CHECK_THROWS_AS(kr::read_fvecs(tmp / "t.fvecs"), kite::format_error);
    }
}

TEST_CASE("FAISS files written by faiss-cpu load in kite with the same search results", "[retrieval][flat][io]") {
    const auto queries = kr::read_npy(fx("flat_queries.npy"));
    const auto base = kr::read_npy(fx("flat_base.npy"));

    const auto l2 = kr::read_faiss<kite::metric::l2>(fx("flat_l2.faiss"));
    CHECK(l2.size() == 200);
    CHECK(l2.dim() == 16);
    CHECK(l2.has_sequential_ids());
    CHECK(std::equal(l2.vectors().flat().begin(), l2.vectors().flat().end(), base.flat().begin()));
    check_same_as_faiss(l2.search(queries.view(), 10), "l2", false);

    const auto ip = kr::read_faiss<kite::metric::inner_product>(fx("flat_ip.faiss"));
    check_same_as_faiss(ip.search(queries.view(), 10), "ip", true);

    const auto idmap = kr::read_faiss<kite::metric::l2>(fx("flat_idmap.faiss"));
    CHECK_FALSE(idmap.has_sequential_ids());
    CHECK(idmap.ids()[7] == 1021);
    check_same_as_faiss(idmap.search(queries.view(), 10), "idmap", false);

    // The metric must match the file's.
    KITE_REQUIRE_THROWS_CONTAINING(kr::read_faiss<kite::metric::l2>(fx("flat_ip.faiss")), kite::format_error,
                                   "METRIC_INNER_PRODUCT");
    KITE_REQUIRE_THROWS_CONTAINING(kr::read_faiss<kite::metric::inner_product>(fx("flat_l2.faiss")), kite::format_error,
                                   "expected METRIC_INNER_PRODUCT");
    // A file that is no FAISS index.
    KITE_REQUIRE_THROWS_CONTAINING(kr::read_faiss<kite::metric::l2>(fx("flat_base.npy")), kite::format_error,
                                   "not a FAISS flat index");
}

TEST_CASE("kite writes FAISS files byte for byte as faiss-cpu does", "[retrieval][flat][io]") {
    const auto base = kr::read_npy(fx("flat_base.npy"));
    kite::test::temp_dir tmp;
    flat_index<kite::metric::l2> l2(16);
    l2.add(base.view());
    kr::write_faiss(l2, tmp / "l2.faiss");
    CHECK(read_bytes(tmp / "l2.faiss") == read_bytes(fx("flat_l2.faiss")));
    flat_index<kite::metric::inner_product> ip(16);
    ip.add(base.view());
    kr::write_faiss(ip, tmp / "ip.faiss");
    CHECK(read_bytes(tmp / "ip.faiss") == read_bytes(fx("flat_ip.faiss")));
    flat_index<kite::metric::l2> idmap(16);
    std::vector<kite::id_t> ids(200);
    for (index_t i = 0; i < 200; ++i) ids[i] = 1000 + 3 * static_cast<kite::id_t>(i);
    idmap.add_with_ids(base.view(), ids);
    kr::write_faiss(idmap, tmp / "idmap.faiss");
    CHECK(read_bytes(tmp / "idmap.faiss") == read_bytes(fx("flat_idmap.faiss")));
    // No temporary file is left behind, and a second write replaces the file.
    kr::write_faiss(l2, tmp / "l2.faiss");
    std::size_t files = 0;
    for (const auto& e : std::filesystem::directory_iterator(tmp.path())) {
        (void)e;
        ++files;
    }
    CHECK(files == 3);
    CHECK_THROWS_AS(kr::write_faiss(l2, tmp / "no-such-dir" / "x.faiss"), kite::io_error);
}

TEST_CASE("FAISS-format round trips keep vectors, ids and results", "[retrieval][flat][io]") {
    kite::test::temp_dir tmp;
    const auto x = kt::make_data(kt::data_kind::random, 300, 33, 41);
    const auto q = kt::make_data(kt::data_kind::random, 12, 33, 42);
    auto round_trip = [&](auto index, const std::string& name) {
        using M = typename decltype(index)::metric_type;
        kr::write_faiss(index, tmp / name);
        const auto back = kr::read_faiss<M>(tmp / name);
        REQUIRE(back.size() == index.size());
        CHECK(back.has_sequential_ids() == index.has_sequential_ids());
        CHECK(std::equal(back.ids().begin(), back.ids().end(), index.ids().begin(), index.ids().end()));
        const auto a = index.search(q.view(), 7), b = back.search(q.view(), 7);
        CHECK(std::equal(a.labels.flat().begin(), a.labels.flat().end(), b.labels.flat().begin()));
        for (index_t i = 0; i < a.distances.size(); ++i)
            CHECK(b.distances.flat()[i] == Approx(a.distances.flat()[i]).epsilon(1e-6));
    };
    flat_index<kite::metric::l2> l2(33);
    l2.add(x.view());
    round_trip(std::move(l2), "l2");
    flat_index<kite::metric::cosine> cos(33);
    cos.add(x.view());
    round_trip(std::move(cos), "cos");
    flat_index<kite::metric::inner_product> removed(33);
    removed.add(x.view());
    const std::vector<kite::id_t> drop = {0, 5, 250};
    removed.remove_ids(drop);
    round_trip(std::move(removed), "removed");
    round_trip(flat_index<kite::metric::l2>(33), "empty");
}

TEST_CASE("truncated, foreign or corrupt FAISS files raise format_error", "[retrieval][flat][io]") {
    const auto good = read_bytes(fx("flat_idmap.faiss"));
    using L2 = kite::metric::l2;
    // Every prefix of a valid file is rejected (IndexIDMap: outer header, inner index, ids).
    for (std::size_t len = 0; len < good.size(); len += (len < 120 ? 1 : 61))
        CHECK_THROWS_AS(kr::read_faiss<L2>(std::span<const std::byte>(good.data(), len)), kite::format_error);
    const auto flat = read_bytes(fx("flat_l2.faiss"));
    for (std::size_t len = 0; len < flat.size(); len += (len < 80 ? 1 : 53))
        CHECK_THROWS_AS(kr::read_faiss<L2>(std::span<const std::byte>(flat.data(), len)), kite::format_error);

    auto patched = [](std::vector<std::byte> b, std::size_t at, auto value) {
        std::memcpy(b.data() + at, &value, sizeof(value));
        return b;
    };
    auto expect = [](const std::vector<std::byte>& b, const char* text) {
        KITE_REQUIRE_THROWS_CONTAINING(kr::read_faiss<L2>(std::span<const std::byte>(b)), kite::format_error, text);
    };
    // flat_l2.faiss: fourcc @0, d @4, ntotal @8, dummies @16/@24, is_trained @32, metric @33, count @37, floats @45
    expect(patched(flat, 0, std::uint32_t{0x58585858}), "fourcc 'XXXX'");
    expect(patched(flat, 4, std::int32_t{0}), "d = 0");
    expect(patched(flat, 4, std::int32_t{-3}), "d = -3");
    expect(patched(flat, 8, std::int64_t{-1}), "ntotal = -1");
    expect(patched(flat, 8, std::int64_t{201}), "expected ntotal * d");
    expect(patched(flat, 8, std::int64_t{1} << 61), "expected ntotal * d");
    expect(patched(flat, 33, std::int32_t{2}), "METRIC_L1");
    expect(patched(flat, 37, std::uint64_t{3199}), "expected ntotal * d");
    expect(patched(flat, 45 + 4 * 37, std::numeric_limits<float>::quiet_NaN()), "vector 2 component 5");
    auto longer = flat;
    longer.push_back(std::byte{1});
    expect(longer, "unexpected bytes");
    // flat_idmap.faiss: outer header to 37, inner index 37..37+12845, then count and ids.
    const std::size_t ids_at = 37 + flat.size();
    expect(patched(good, ids_at, std::uint64_t{199}), "199 ids stored for 200 vectors");
    expect(patched(good, ids_at + 8 + 8 * 4, std::int64_t{1000}), "repeated");
    expect(patched(good, ids_at + 8, std::int64_t{-5}), "negative");
    expect(patched(good, 8, std::int64_t{100}), "disagrees with its inner index");
    expect(patched(good, 37, std::uint32_t{0x704d7849}), "not a FAISS flat index");  // IxMp inside IxMp
}
