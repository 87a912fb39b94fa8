// kite/model/formats/safetensors.hpp: reading files written by the safetensors library, sharded models,
// and refusing corrupt headers (hand-made cases plus seeded random mutations).

#include <cstring>
#include <fstream>
#include <random>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "kite/model/formats/safetensors.hpp"
#include "kite_test.hpp"

using kite::model::dtype;
using kite::model::safetensors_file;
using kite::model::safetensors_weights;
namespace fs = std::filesystem;

namespace {

nlohmann::json read_json(const fs::path& p) {
    std::ifstream f(p);
    return nlohmann::json::parse(f);
}

void write_bytes(const fs::path& p, const std::string& bytes) {
    std::ofstream f(p, std::ios::binary);
    f.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

/// A safetensors file from a header text and a data section.
std::string make_file(const std::string& header, const std::string& data) {
    std::string out(8, '\0');
    const std::uint64_t n = header.size();
    std::memcpy(out.data(), &n, 8);
    return out + header + data;
}

}  // namespace

TEST_CASE("safetensors: a file written by the safetensors library", "[model][safetensors]") {
    const auto path = kite::test::fixture("model/safetensors/small.safetensors");
    const auto expected = read_json(kite::test::fixture("model/safetensors/small.json"));
    safetensors_file f(path);
    CHECK(f.metadata().at("format") == "pt");
    CHECK(f.metadata().at("note") == "kite fixture");
    CHECK(f.tensors().size() == expected["tensors"].size());
    for (const auto& [name, e] : expected["tensors"].items()) {
        INFO(name);
        const auto t = f.tensor(name);
        CHECK(kite::model::to_string(t.dtype()) == e["dtype"].get<std::string>());
        const auto shape = e["shape"].get<std::vector<std::size_t>>();
        CHECK(std::vector<std::size_t>(t.shape().begin(), t.shape().end()) == shape);
        if (!e.contains("values")) {
            KITE_REQUIRE_THROWS_CONTAINING(t.to_float(), kite::invalid_argument, "I64");
            CHECK(t.bytes().size() == t.numel() * 8);
            continue;
        }
        const auto values = t.to_float();
        REQUIRE(values.size() == e["values"].size());
        for (std::size_t i = 0; i < values.size(); ++i) {
            const float want = std::stof(e["values"][i].get<std::string>());
            // Bit-exact: the conversion is exact for every F16/BF16 value, inf included.
            CHECK(std::memcmp(&values[i], &want, 4) == 0);
        }
        if (t.dtype() == dtype::f32) {
            const auto view = t.f32();
            CHECK(view.size() == values.size());
            CHECK(std::equal(view.begin(), view.end(), values.begin()));
        } else {
            KITE_REQUIRE_THROWS_CONTAINING(t.f32(), kite::invalid_argument, name);
        }
    }
    // The scalar has rank 0 and one element; the empty tensor has none.
    CHECK(f.tensor("scalar").numel() == 1);
    CHECK(f.tensor("scalar").f32()[0] == 2.5f);
    CHECK(f.tensor("empty").numel() == 0);
    CHECK(f.tensor("empty").to_float().empty());

    const auto m = f.tensor("embed.weight").require_shape({7, 5}).f32_matrix();
    CHECK(m.rows() == 7);
    CHECK(m.cols() == 5);
    CHECK(m(3, 2) == f.tensor("embed.weight").f32()[3 * 5 + 2]);
    KITE_REQUIRE_THROWS_CONTAINING(f.tensor("embed.weight").require_shape({5, 7}), kite::shape_error,
                                   "has shape [7, 5]; expected [5, 7]");
    KITE_REQUIRE_THROWS_CONTAINING(f.tensor("layer.0.cube").f32_matrix(), kite::shape_error, "rank 2");
    KITE_REQUIRE_THROWS_CONTAINING(f.tensor("no.such.tensor"), kite::not_found_error, "no.such.tensor");
    std::vector<float> wrong(3);
    KITE_REQUIRE_THROWS_CONTAINING(f.tensor("layer.0.bias").to_float(wrong), kite::shape_error, "4 elements");

    // The same file through safetensors_weights.
    safetensors_weights w(path);
    CHECK(w.shard_count() == 1);
    CHECK(w.size() == f.tensors().size());
    CHECK(w.tensor("layer.0.wq").to_float() == f.tensor("layer.0.wq").to_float());
    KITE_REQUIRE_THROWS_CONTAINING(w.tensor("missing"), kite::not_found_error, "missing");
}

TEST_CASE("safetensors: sharded model through model.safetensors.index.json", "[model][safetensors]") {
    const auto dir = kite::test::fixture("model/safetensors/sharded");
    const auto expected = read_json(dir / "expected.json");
    for (const auto& p : {dir, dir / "model.safetensors.index.json"}) {
        safetensors_weights w(p);
        CHECK(w.shard_count() == 4);
        CHECK(w.size() == expected.size());
        for (const auto& [name, e] : expected.items()) {
            INFO(name);
            const auto t = w.tensor(name);
            const auto shape = e["shape"].get<std::vector<std::size_t>>();
            CHECK(std::vector<std::size_t>(t.shape().begin(), t.shape().end()) == shape);
            double sum = 0;
            for (float v : t.f32()) sum += v;
            CHECK(sum == Approx(e["sum"].get<double>()).margin(1e-5));
        }
        const auto names = w.names();
        CHECK(std::is_sorted(names.begin(), names.end()));
    }
}

TEST_CASE("safetensors: bad sharded indexes", "[model][safetensors]") {
    kite::test::temp_dir tmp;
    const auto src = kite::test::fixture("model/safetensors/small.safetensors");
    fs::copy_file(src, tmp / "a.safetensors");
    write_bytes(tmp / "escape.json", R"({"weight_map": {"embed.weight": "../a.safetensors"}})");
    KITE_REQUIRE_THROWS_CONTAINING(safetensors_weights(tmp / "escape.json"), kite::format_error, "same folder");
    write_bytes(tmp / "wrong.json", R"({"weight_map": {"not.there": "a.safetensors"}})");
    KITE_REQUIRE_THROWS_CONTAINING(safetensors_weights(tmp / "wrong.json"), kite::format_error, "not.there");
    write_bytes(tmp / "nomap.json", R"({"metadata": {}})");
    KITE_REQUIRE_THROWS_CONTAINING(safetensors_weights(tmp / "nomap.json"), kite::format_error, "weight_map");
    fs::copy_file(src, tmp / "b.safetensors");
    write_bytes(tmp / "twice.json", R"({"weight_map": {"embed.weight": "a.safetensors", "scalar": "b.safetensors"}})");
    KITE_REQUIRE_THROWS_CONTAINING(safetensors_weights(tmp / "twice.json"), kite::format_error, "stored twice");
    write_bytes(tmp / "absent.json", R"({"weight_map": {"embed.weight": "c.safetensors"}})");
    CHECK_THROWS_AS(safetensors_weights(tmp / "absent.json"), kite::io_error);
    fs::create_directory(tmp / "emptydir");
    KITE_REQUIRE_THROWS_CONTAINING(safetensors_weights(tmp / "emptydir"), kite::not_found_error, "emptydir");
}

TEST_CASE("safetensors: corrupt headers are format errors naming the tensor", "[model][safetensors]") {
    kite::test::temp_dir tmp;
    const auto p = tmp / "bad.safetensors";
    const std::string data16(16, '\x01');
    struct bad_case {
        std::string file;
        std::string message;
    };
    const std::vector<bad_case> cases = {
        {std::string(5, '\0'), "at least 8"},
        {make_file("{}", "").substr(0, 8) + "", ""},  // valid: empty header? no: 8 bytes + nothing
        {[] { std::string s(8, '\0'); s[0] = '\x40'; return s + "{}"; }(), "past the end of the file"},
        {[] { std::string s(8, '\xff'); return s; }(), "exceeds the limit"},
        {make_file("{not json", data16), "not valid JSON"},
        {make_file("[1, 2]", data16), "not an object"},
        {make_file(R"({"a": {"dtype": "F99", "shape": [4], "data_offsets": [0, 16]}})", data16), "tensor 'a': unknown dtype 'F99'"},
        {make_file(R"({"a": {"dtype": "F32", "shape": [4], "data_offsets": [0, 32]}})", data16), "tensor 'a': data_offsets [0, 32) run past"},
        {make_file(R"({"a": {"dtype": "F32", "shape": [5], "data_offsets": [0, 16]}})", data16), "tensor 'a': shape [5] of F32 needs 5 x 4"},
        {make_file(R"({"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}, "b": {"dtype": "F32", "shape": [3], "data_offsets": [4, 16]}})", data16), "tensor 'b' (data_offsets [4, 16)) overlaps tensor 'a'"},
        {make_file(R"({"a": {"dtype": "F32", "shape": [2], "data_offsets": [8, 16]}})", data16), "tensor 'a' starts at data offset 8"},
        {make_file(R"({"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}})", data16), "cover 8 bytes of a data section of 16"},
        {make_file(R"({"a": {"dtype": "F32", "shape": [-4], "data_offsets": [0, 16]}})", data16), "tensor 'a': shape [-4]"},
        {make_file(R"({"a": {"dtype": "F32", "shape": [4.0], "data_offsets": [0, 16]}})", data16), "tensor 'a': shape"},
        {make_file(R"({"a": {"dtype": "F32", "shape": [4294967296, 4294967296, 16], "data_offsets": [0, 16]}})", data16), "overflows"},
        {make_file(R"({"a": {"dtype": "F32", "shape": [4], "data_offsets": [16, 0]}})", data16), "end before they begin"},
        {make_file(R"({"a": {"dtype": "F32", "shape": [4], "data_offsets": [0]}})", data16), "tensor 'a': \"data_offsets\""},
        {make_file(R"({"a": {"dtype": 3, "shape": [4], "data_offsets": [0, 16]}})", data16), "tensor 'a': missing string \"dtype\""},
        {make_file(R"({"a": {"shape": [4], "data_offsets": [0, 16]}})", data16), "tensor 'a': missing string \"dtype\""},
        {make_file(R"({"a": {"dtype": "F32", "data_offsets": [0, 16]}})", data16), "tensor 'a': missing array \"shape\""},
        {make_file(R"({"a": [1]})", data16), "tensor 'a': entry is not an object"},
        {make_file(R"({"__metadata__": {"k": 1}, "a": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]}})", data16), "\"__metadata__\" entry 'k'"},
        {make_file(R"({"__metadata__": [], "a": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]}})", data16), "\"__metadata__\" is not an object"},
    };
    for (std::size_t i = 0; i < cases.size(); ++i) {
        const auto& c = cases[i];
        if (c.message.empty()) continue;
        INFO("case " << i << ": expecting '" << c.message << "'");
        write_bytes(p, c.file);
        KITE_REQUIRE_THROWS_CONTAINING(safetensors_file(p), kite::format_error, c.message);
        KITE_REQUIRE_THROWS_CONTAINING(safetensors_file(p), kite::format_error, p.string());
    }
    // Valid corner cases: an empty header object with no data, whitespace-padded headers.
    write_bytes(p, make_file("{}", ""));
    CHECK(safetensors_file(p).tensors().empty());
    write_bytes(p, make_file(R"({"a": {"dtype": "BF16", "shape": [2, 4], "data_offsets": [0, 16]}}      )", data16));
    CHECK(safetensors_file(p).tensor("a").to_float().size() == 8);
    // A very deeply nested header is refused without exhausting the stack.
    write_bytes(p, make_file(std::string(200000, '[') + std::string(200000, ']'), ""));
    CHECK_THROWS_AS(safetensors_file(p), kite::format_error);
}

TEST_CASE("safetensors: seeded random corruption never crashes", "[model][safetensors]") {
    const std::string good = kite::io::read_text(kite::test::fixture("model/safetensors/small.safetensors"));
    std::uint64_t header_len = 0;
    std::memcpy(&header_len, good.data(), 8);
    kite::test::temp_dir tmp;
    const auto p = tmp / "fuzz.safetensors";
    std::mt19937_64 rng(20240611);
    int loaded = 0, refused = 0;
    for (int iter = 0; iter < 600; ++iter) {
        std::string f = good;
        const int kind = iter % 4;
        if (kind == 0) {
            // flip bytes inside the JSON header (digits, quotes, braces)
            const int flips = 1 + static_cast<int>(rng() % 3);
            for (int k = 0; k < flips; ++k) {
                const std::size_t at = 8 + rng() % header_len;
                f[at] = static_cast<char>(rng() % 256);
            }
        } else if (kind == 1) {
            f.resize(rng() % f.size());  // truncation anywhere
        } else if (kind == 2) {
            // a digit of an offset or shape changed to another digit
            std::vector<std::size_t> digits;
            for (std::size_t i = 8; i < 8 + header_len; ++i)
                if (f[i] >= '0' && f[i] <= '9') digits.push_back(i);
            f[digits[rng() % digits.size()]] = static_cast<char>('0' + rng() % 10);
        } else {
            // a random header length
            const std::uint64_t n = rng() % (f.size() + 64);
            std::memcpy(f.data(), &n, 8);
        }
        write_bytes(p, f);
        try {
            safetensors_file s(p);
            ++loaded;
            // Whatever loads must be internally consistent: every tensor inside the file.
            for (const auto& t : s.tensors()) {
                REQUIRE(t.end <= s.size());
                REQUIRE(t.size_bytes() == t.numel * kite::model::size_of(t.dtype));
                if (kite::model::is_float_convertible(t.dtype)) (void)s.tensor(t).to_float();
            }
        } catch (const kite::format_error&) {
            ++refused;
        }
    }
    CHECK(refused > 300);
    CHECK(loaded + refused == 600);
}
