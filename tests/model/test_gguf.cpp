// kite/model/formats/gguf.hpp and kite/quant/ggml_types.hpp:
//  - every GGUF metadata value type, nested arrays, general.alignment and tensor views, against
//    files written by the `gguf` package (tests/fixtures/model/gguf/meta_all_types*.gguf, made by
//    tools/gguf_make_fixtures.py) and their JSON description;
//  - hostile files built byte by byte here: each is a kite::format_error naming the field, before
//    any large allocation; every truncation of a real file is refused;
//  - ggml block decoding equals the gguf package's NumPy dequantizers bit for bit (NaN-aware) on
//    adversarial and random blocks of F16, BF16, Q8_0, Q4_0, Q4_1, Q4_K, Q5_K and Q6_K.

#include <cstdint>
#include <cstring>
#include <fstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "kite/core/io.hpp"
#include "kite/model/formats/gguf.hpp"
#include "kite/quant/ggml_types.hpp"
#include "kite_test.hpp"

namespace km = kite::model;
namespace gg = kite::quant::ggml;
using nlohmann::json;

namespace {

std::filesystem::path gguf_fixture(const std::string& name) { return kite::test::fixture("model/gguf/" + name); }

json read_json_file(const std::filesystem::path& p) { return json::parse(kite::io::read_text(p)); }

std::vector<float> read_f32(const std::filesystem::path& p) {
    const std::string raw = kite::io::read_text(p);
    REQUIRE(raw.size() % 4 == 0);
    std::vector<float> v(raw.size() / 4);
    std::memcpy(v.data(), raw.data(), raw.size());
    return v;
}

/// Compares a GGUF value with the fixture's JSON value of type name `type`.
void check_value(const km::gguf_value& v, const std::string& type, const json& want, const std::string& key) {
    INFO("key " << key << " type " << type);
    if (type.rfind("ARRAY[", 0) == 0) {
        REQUIRE(v.is_array());
        const std::string inner = type.substr(6, type.size() - 7);
        const auto& a = v.array();
        REQUIRE(a.size() == want.size());
        for (std::size_t i = 0; i < a.size(); ++i) check_value(a[i], inner, want[i], key + "[" + std::to_string(i) + "]");
        return;
    }
    CHECK(std::string(km::to_string(v.type())) == (type == "BOOL" ? "BOOL" : type));
    if (type == "STRING") {
        CHECK(v.as<std::string>() == want.get<std::string>());
    } else if (type == "BOOL") {
        CHECK(v.as<bool>() == want.get<bool>());
    } else if (type == "FLOAT32" || type == "FLOAT64") {
        CHECK(v.as<double>() == want.get<double>());
    } else if (type == "UINT64" || type == "UINT32" || type == "UINT16" || type == "UINT8") {
        CHECK(v.as<std::uint64_t>() == want.get<std::uint64_t>());
    } else {
        CHECK(v.as<std::int64_t>() == want.get<std::int64_t>());
    }
}

// ---- a GGUF writer for hostile files --------------------------------------------------------

struct writer {
    std::string b;
    template <class T>
    writer& put(T v) {
        b.append(reinterpret_cast<const char*>(&v), sizeof v);
        return *this;
    }
    writer& str(std::string_view s) {
        put<std::uint64_t>(s.size());
        b.append(s);
        return *this;
    }
    writer& header(std::uint32_t version, std::uint64_t tensors, std::uint64_t kvs) {
        b.append("GGUF");
        return put(version).put(tensors).put(kvs);
    }
    writer& kv_u32(std::string_view key, std::uint32_t v) { return str(key).put<std::uint32_t>(4).put(v); }
    writer& kv_str(std::string_view key, std::string_view v) { return str(key).put<std::uint32_t>(8).str(v); }
    writer& tensor(std::string_view name, std::vector<std::uint64_t> ne, std::uint32_t type, std::uint64_t offset) {
        str(name).put<std::uint32_t>(static_cast<std::uint32_t>(ne.size()));
        for (auto n : ne) put(n);
        return put(type).put(offset);
    }
    writer& pad(std::size_t align = 32) {
        while (b.size() % align) b.push_back('\0');
        return *this;
    }
    writer& bytes(std::size_t n, char c = 0) {
        b.append(n, c);
        return *this;
    }
};

void write_file(const std::filesystem::path& p, const std::string& bytes) {
    std::ofstream f(p, std::ios::binary);
    f.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

}  // namespace

TEST_CASE("gguf: every metadata value type, nested arrays, alignment and tensors", "[model][gguf]") {
    const json fx = read_json_file(gguf_fixture("meta_all_types.json"));
    for (const auto& fj : fx["files"]) {
        const std::string name = fj["file"];
        INFO(name);
        const km::gguf_file f(gguf_fixture(name));
        CHECK(f.version() == fj["version"].get<std::uint32_t>());
        CHECK(f.alignment() == fj["alignment"].get<std::size_t>());
        CHECK(f.data_offset() == fj["data_offset"].get<std::size_t>());
        CHECK(f.file_size() == fj["file_size"].get<std::size_t>());
        REQUIRE(f.metadata().size() == fj["kv_count"].get<std::size_t>());
        // Every key in file order, with its type and value.
        std::size_t i = 0;
        for (const auto& kv : fx["kv"]) {
            const std::string key = kv["key"];
            if (key == "general.alignment" && !fj["has_alignment_key"].get<bool>()) continue;
            REQUIRE(i < f.metadata().size());
            CHECK(f.metadata()[i].first == key);
            check_value(f.at(key), kv["type"], kv["value"], key);
            ++i;
        }
        CHECK(f.get<std::string>("test.string_with_nul") == std::string("a\0b", 3));
        CHECK(f.get<std::int32_t>("test.int32") == -2147483648);
        CHECK(f.get<std::uint8_t>("test.uint8") == 200);
        CHECK(f.get<double>("test.uint8") == 200.0);  // numbers convert when they fit
        CHECK(f.get_or<std::int32_t>("no.such.key", 7) == 7);
        KITE_REQUIRE_THROWS_CONTAINING(f.get<std::int8_t>("test.uint8"), kite::invalid_argument,
                                       "test.uint8 = 200 does not fit");
        KITE_REQUIRE_THROWS_CONTAINING(f.get<std::string>("test.int32"), kite::invalid_argument,
                                       "test.int32 is a INT32; expected STRING");
        KITE_REQUIRE_THROWS_CONTAINING(f.at("no.such.key"), kite::not_found_error, "no metadata key 'no.such.key'");
        const auto nested = f.at("test.array.nested_int32").array();
        REQUIRE(nested.size() == 3);
        CHECK(nested[0].as_vector<int>() == std::vector<int>{1, 2, 3});
        CHECK(f.at("test.array.nested_int32").element_type() == km::gguf_type::array);
        CHECK(f.at("test.array.string").strings() == std::vector<std::string>{"a", "", "한국어", "🙂"});

        // Tensors: type, shape (ggml order), offset, bytes in the mapping, decoded values.
        REQUIRE(f.tensors().size() == fj["tensor_count"].get<std::size_t>());
        for (const auto& tj : fj["tensors"]) {
            const auto& t = f.tensor(tj["name"].get<std::string>());
            INFO(t.name);
            CHECK(std::string(t.type_name()) == tj["type"].get<std::string>());
            CHECK(static_cast<std::uint32_t>(t.type) == tj["type_id"].get<std::uint32_t>());
            const auto shape = tj["shape"].get<std::vector<std::uint64_t>>();
            REQUIRE(t.n_dims == shape.size());
            for (std::size_t d = 0; d < shape.size(); ++d) CHECK(t.ne[d] == shape[d]);
            CHECK(t.offset == tj["offset"].get<std::uint64_t>());
            CHECK(t.offset % f.alignment() == 0);
            CHECK(t.data.size() == tj["n_bytes"].get<std::size_t>());
            CHECK(t.data.data() == f.mapping()->data() + f.data_offset() + t.offset);  // a view, not a copy
            std::vector<float> got(t.elements());
            gg::decode_row(t.type, t.data.data(), got.data(), got.size());
            const auto want = fx["tensor_values"][t.name].get<std::vector<float>>();
            CHECK(kite::test::max_ulp_diff(got, want) <= 0.0);
        }
        KITE_REQUIRE_THROWS_CONTAINING(f.tensor("missing"), kite::not_found_error, "no tensor 'missing'");
    }
}

TEST_CASE("gguf: every truncation of a real file is a format_error", "[model][gguf][errors]") {
    const std::string whole = kite::io::read_text(gguf_fixture("meta_all_types.gguf"));
    kite::test::temp_dir d;
    const auto p = d / "cut.gguf";
    const km::gguf_file ref(gguf_fixture("meta_all_types.gguf"));
    // The file ends with padding after its last tensor; cutting the padding loses nothing.
    std::size_t end = 0;
    for (const auto& t : ref.tensors()) end = std::max<std::size_t>(end, ref.data_offset() + t.offset + t.data.size());
    REQUIRE(end < whole.size());
    std::size_t refused = 0;
    for (std::size_t n = end; n <= whole.size(); ++n) {
        write_file(p, whole.substr(0, n));
        CHECK(km::gguf_file(p).tensors().size() == 3);
    }
    for (std::size_t n = 0; n < end; ++n) {
        write_file(p, whole.substr(0, n));
        try {
            km::gguf_file f(p);
            FAIL_CHECK("a file cut to " << n << " of " << whole.size() << " bytes was accepted");
        } catch (const kite::format_error& e) {
            ++refused;
            if (n == 0) CHECK(std::string(e.what()).find("not a GGUF file") != std::string::npos);
        }
    }
    CHECK(refused == end);
}

TEST_CASE("gguf: hostile headers are refused naming the field, before large allocations", "[model][gguf][errors]") {
    kite::test::temp_dir d;
    const auto p = d / "bad.gguf";
    const auto refuse = [&](const writer& w, const std::string& text) {
        write_file(p, w.b);
        INFO("expected: " << text);
        KITE_REQUIRE_THROWS_CONTAINING(km::gguf_file(p), kite::format_error, text);
    };
    // Versions and byte order.
    refuse(writer{}.header(1, 0, 0), "GGUF version 1 (32-bit counts) is not supported");
    refuse(writer{}.header(4, 0, 0), "GGUF version 4; expected 2 or 3");
    refuse(writer{}.header(0x03000000, 0, 0), "big-endian GGUF");
    {
        writer w;
        w.b = "GGML";
        w.put<std::uint32_t>(3);
        refuse(w, "not a GGUF file");
    }
    // Absurd counts: refused by the count itself, not by a failed allocation.
    refuse(writer{}.header(3, 0, std::uint64_t{1} << 40), "metadata_kv_count = 1099511627776 is absurd");
    refuse(writer{}.header(3, std::uint64_t{1} << 40, 0), "tensor_count = 1099511627776 is absurd");
    refuse(writer{}.header(3, 0, 1).str("k").put<std::uint32_t>(9).put<std::uint32_t>(5).put<std::uint64_t>(1ull << 50),
           "array 'k' declares 1125899906842624 elements of INT32");
    refuse(writer{}.header(3, 0, 1).str("k").put<std::uint32_t>(8).put<std::uint64_t>(1ull << 62),
           "value of 'k' has length 4611686018427387904");
    refuse(writer{}.header(3, 0, 1).put<std::uint64_t>(70000).bytes(70000, 'k'), "metadata key 0 has length 70000");
    // Types, values and duplicates.
    refuse(writer{}.header(3, 0, 1).str("k").put<std::uint32_t>(13).put<std::uint8_t>(0), "'k' has value type 13");
    refuse(writer{}.header(3, 0, 1).str("k").put<std::uint32_t>(7).put<std::uint8_t>(2), "BOOL of byte 2");
    refuse(writer{}.header(3, 0, 1).str("k").put<std::uint32_t>(9).put<std::uint32_t>(42).put<std::uint64_t>(0),
           "array 'k' has element type 42");
    refuse(writer{}.header(3, 0, 2).kv_u32("a.b", 1).kv_str("a.b", "x"), "duplicate metadata key 'a.b'");
    refuse(writer{}.header(3, 0, 1).str("").put<std::uint32_t>(4).put<std::uint32_t>(0), "metadata key 0 is empty");
    {
        writer w;
        w.header(3, 0, 1).str("deep").put<std::uint32_t>(9);  // an array of arrays of arrays ...
        for (int i = 0; i < 10; ++i) w.put<std::uint32_t>(9).put<std::uint64_t>(1);
        refuse(w, "'deep' nests arrays deeper than 8 levels");
    }
    refuse(writer{}.header(3, 0, 1).kv_str("general.alignment", "64"), "general.alignment is a STRING; expected UINT32");
    refuse(writer{}.header(3, 0, 1).kv_u32("general.alignment", 48), "general.alignment = 48; expected a power of two");
    refuse(writer{}.header(3, 0, 1).kv_u32("general.alignment", 0), "general.alignment = 0");
    // Tensor infos.
    refuse(writer{}.header(3, 1, 0).tensor("t", {4, 0}, 0, 0), "tensor 't' has ne[1] = 0");
    refuse(writer{}.header(3, 1, 0).tensor("t", {4, 1, 1, 1, 1}, 0, 0), "tensor 't' has 5 dimensions");
    refuse(writer{}.header(3, 1, 0).tensor("t", {4}, 99, 0), "tensor 't' has ggml type 99, which ggml does not define");
    refuse(writer{}.header(3, 1, 0).tensor("t", {33}, 8, 0), "rows of 33 elements are not a whole number of Q8_0 blocks");
    refuse(writer{}.header(3, 1, 0).tensor("t", {1ull << 40, 1ull << 40}, 0, 0), "element count");
    refuse(writer{}.header(3, 1, 0).tensor(std::string(65, 'n'), {4}, 0, 0), "name of tensor 0 has length 65");
    refuse(writer{}.header(3, 2, 0).tensor("t", {4}, 0, 0).tensor("t", {4}, 0, 32).pad().bytes(64),
           "duplicate tensor name 't'");
    refuse(writer{}.header(3, 1, 0).tensor("t", {4}, 0, 8).pad().bytes(64), "tensor 't' offset 8 is not a multiple");
    refuse(writer{}.header(3, 1, 0).tensor("t", {16}, 0, 32).pad().bytes(64),
           "tensor 't' (F32, 64 bytes at data offset 32) ends past the end of the file (64 bytes of tensor data)");
    refuse(writer{}.header(3, 1, 0).tensor("t", {4}, 0, 0), "truncated: the tensor data should start at byte");
    // A minimal valid file for contrast (v2 reads like v3).
    for (const std::uint32_t v : {2u, 3u}) {
        writer w;
        w.header(v, 1, 1).kv_str("general.architecture", "x").tensor("t", {4}, 0, 0).pad().put(1.0f).put(2.0f).put(3.0f).put(4.0f);
        write_file(p, w.b);
        const km::gguf_file f(p);
        CHECK(f.version() == v);
        float out[4];
        gg::decode_row(f.tensor("t").type, f.tensor("t").data.data(), out, 4);
        CHECK(out[3] == 4.0f);
    }
}

TEST_CASE("ggml blocks decode exactly as the gguf package's dequantizers", "[model][gguf][quant]") {
    const json manifest = read_json_file(gguf_fixture("manifest.json"));
    const std::pair<const char*, gg::type> types[] = {{"F16", gg::type::f16},   {"BF16", gg::type::bf16},
                                                      {"Q8_0", gg::type::q8_0}, {"Q4_0", gg::type::q4_0},
                                                      {"Q4_1", gg::type::q4_1}, {"Q4_K", gg::type::q4_k},
                                                      {"Q5_K", gg::type::q5_k}, {"Q6_K", gg::type::q6_k}};
    for (const auto& [name, t] : types) {
        INFO(name);
        const auto& mj = manifest["blocks"][name];
        const std::string raw = kite::io::read_text(gguf_fixture(std::string("blocks/") + name + ".bin"));
        const auto want = read_f32(gguf_fixture(std::string("blocks/") + name + ".f32"));
        const auto ti = gg::info(t);
        CHECK(ti.block_bytes == mj["block_bytes"].get<std::uint32_t>());
        CHECK(ti.block_elems == mj["block_elems"].get<std::uint32_t>());
        const std::size_t nb = mj["n_blocks"].get<std::size_t>();
        REQUIRE(raw.size() == nb * ti.block_bytes);
        REQUIRE(want.size() == nb * ti.block_elems);
        std::vector<float> got(want.size());
        gg::decode_row(t, reinterpret_cast<const std::byte*>(raw.data()), got.data(), got.size());
        // Bit for bit (NaN matches any NaN): 0 ulp.
        CHECK(kite::test::max_ulp_diff(got, want) <= 0.0);
        // Block by block, as a row decoder sees them.
        for (std::size_t b = 0; b < nb; b += 7) {
            std::vector<float> one(ti.block_elems);
            gg::decode_row(t, reinterpret_cast<const std::byte*>(raw.data()) + b * ti.block_bytes, one.data(), one.size());
            CHECK(kite::test::max_ulp_diff(one, std::span<const float>(want).subspan(b * ti.block_elems, ti.block_elems)) <= 0.0);
        }
    }
    float out[32];
    const std::byte zeros[64]{};
    KITE_REQUIRE_THROWS_CONTAINING(gg::decode_row(gg::type::iq2_xs, zeros, out, 256), kite::invalid_argument,
                                   "tensor type IQ2_XS is not supported");
    KITE_REQUIRE_THROWS_CONTAINING(gg::decode_row(gg::type::q8_0, zeros, out, 16), kite::invalid_argument,
                                   "16 elements of Q8_0 are not a whole number of blocks of 32");
}
