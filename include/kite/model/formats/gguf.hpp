#pragma once
/// @file kite/model/formats/gguf.hpp
/// gguf_file: a GGUF file (llama.cpp's model format, versions 2 and 3), memory-mapped. Its
/// metadata is parsed into typed values; its tensors stay in the mapping and are viewed, never
/// copied.
///
///   const kite::model::gguf_file f("models/SmolLM2-135M-Instruct.Q4_1.gguf");
///   f.get<std::string>("general.architecture");            // "llama"
///   f.get<std::uint32_t>("llama.block_count");             // 30 (any integer type that fits)
///   f.at("tokenizer.ggml.tokens").strings();               // std::vector<std::string>
///   const auto& t = f.tensor("blk.0.attn_q.weight");       // type Q4_1, ne {576, 576}, bytes
///
/// Layout (little-endian): "GGUF", u32 version, u64 tensor_count, u64 kv_count; kv_count pairs
/// (string key, u32 value type, value); tensor_count infos (string name, u32 n_dims, u64
/// ne[n_dims], u32 ggml type, u64 offset); padding to `general.alignment` (default 32); the
/// tensor data, each tensor at data_offset + offset. Strings are u64 length + bytes; arrays are
/// u32 element type + u64 count + elements (arrays of arrays and of strings included).
///
/// Every size is checked against the file before anything is allocated or read: a truncated or
/// misaligned file, an offset or size outside the file, a duplicate key or tensor name, an
/// unknown type, an absurd count or nesting depth is a kite::format_error naming the file, the
/// field and the byte offset. v1 files (32-bit counts) and big-endian files are refused with a
/// sentence saying so. Tensor types outside ggml's list are refused at load; types kite cannot
/// decode are refused when a tensor of that type is used, naming the type and the tensor.
///
/// Thread safety: a gguf_file is immutable after construction.

#include <algorithm>
#include <array>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <type_traits>
#include <unordered_map>
#include <utility>
#include <variant>
#include <vector>

#include "kite/core/checked.hpp"
#include "kite/core/error.hpp"
#include "kite/core/io.hpp"
#include "kite/quant/ggml_types.hpp"

namespace kite::model {

/// GGUF metadata value types (gguf_type in ggml's gguf.h).
enum class gguf_type : std::uint32_t {
    uint8 = 0, int8 = 1, uint16 = 2, int16 = 3, uint32 = 4, int32 = 5, float32 = 6, boolean = 7,
    string = 8, array = 9, uint64 = 10, int64 = 11, float64 = 12,
};

/// The name GGUF's documentation uses ("UINT32", "ARRAY", ...).
inline std::string_view to_string(gguf_type t) noexcept {
    static constexpr std::array<std::string_view, 13> names{"UINT8",   "INT8",   "UINT16", "INT16", "UINT32",
                                                            "INT32",   "FLOAT32", "BOOL",  "STRING", "ARRAY",
                                                            "UINT64",  "INT64",  "FLOAT64"};
    const auto i = static_cast<std::uint32_t>(t);
    return i < names.size() ? names[i] : std::string_view("?");
}

/// One metadata value: a scalar, a string or an array (whose elements share one type and may
/// themselves be arrays).
class gguf_value {
public:
    using array_type = std::vector<gguf_value>;
    using storage = std::variant<std::uint64_t, std::int64_t, double, bool, std::string, array_type>;

    gguf_value() = default;
    gguf_value(gguf_type t, storage v, gguf_type element = gguf_type::uint8)
        : type_(t), element_(element), v_(std::move(v)) {}

    gguf_type type() const noexcept { return type_; }
    /// The element type of an array (meaningless for scalars).
    gguf_type element_type() const noexcept { return element_; }
    bool is_array() const noexcept { return type_ == gguf_type::array; }
    bool is_string() const noexcept { return type_ == gguf_type::string; }
    bool is_integer() const noexcept {
        return std::holds_alternative<std::uint64_t>(v_) || std::holds_alternative<std::int64_t>(v_);
    }
    bool is_number() const noexcept { return is_integer() || std::holds_alternative<double>(v_); }
    /// The elements of an array; kite::invalid_argument naming `what` for a scalar.
    const array_type& array(std::string_view what = "value") const {
        KITE_REQUIRE(is_array(), invalid_argument, "gguf: ", what, " is a ", to_string(type_), "; expected an array");
        return std::get<array_type>(v_);
    }
    std::size_t size() const noexcept { return is_array() ? std::get<array_type>(v_).size() : 1; }

    /// The value as T: an integer type it fits (any integer GGUF type), float / double (any
    /// number), bool or std::string. kite::invalid_argument naming `what` otherwise.
    template <class T>
    T as(std::string_view what = "value") const {
        if constexpr (std::is_same_v<T, std::string>) {
            KITE_REQUIRE(is_string(), invalid_argument, "gguf: ", what, " is a ", to_string(type_), "; expected STRING");
            return std::get<std::string>(v_);
        } else if constexpr (std::is_same_v<T, bool>) {
            KITE_REQUIRE(type_ == gguf_type::boolean, invalid_argument, "gguf: ", what, " is a ", to_string(type_),
                         "; expected BOOL");
            return std::get<bool>(v_);
        } else if constexpr (std::is_floating_point_v<T>) {
            KITE_REQUIRE(is_number(), invalid_argument, "gguf: ", what, " is a ", to_string(type_), "; expected a number");
            if (const auto* d = std::get_if<double>(&v_)) return static_cast<T>(*d);
            if (const auto* u = std::get_if<std::uint64_t>(&v_)) return static_cast<T>(*u);
            return static_cast<T>(std::get<std::int64_t>(v_));
        } else {
            static_assert(std::is_integral_v<T>, "gguf_value::as<T>: T is an integer, float, bool or std::string");
            KITE_REQUIRE(is_integer(), invalid_argument, "gguf: ", what, " is a ", to_string(type_),
                         "; expected an integer");
            if (const auto* u = std::get_if<std::uint64_t>(&v_)) {
                KITE_REQUIRE(std::in_range<T>(*u), invalid_argument, "gguf: ", what, " = ", *u,
                             " does not fit the integer type asked for");
                return static_cast<T>(*u);
            }
            const std::int64_t s = std::get<std::int64_t>(v_);
            KITE_REQUIRE(std::in_range<T>(s), invalid_argument, "gguf: ", what, " = ", s,
                         " does not fit the integer type asked for");
            return static_cast<T>(s);
        }
    }
    /// An array's elements as T each (see as()).
    template <class T>
    std::vector<T> as_vector(std::string_view what = "value") const {
        const auto& a = array(what);
        std::vector<T> out;
        out.reserve(a.size());
        for (const auto& e : a) out.push_back(e.as<T>(what));
        return out;
    }
    /// An array of strings.
    std::vector<std::string> strings(std::string_view what = "value") const { return as_vector<std::string>(what); }

    const storage& raw() const noexcept { return v_; }

private:
    gguf_type type_ = gguf_type::uint8;
    gguf_type element_ = gguf_type::uint8;
    storage v_{std::uint64_t{0}};
};

/// A tensor of the file: its name, ggml type, shape and bytes in the mapping.
struct gguf_tensor {
    std::string name;
    quant::ggml::type type = quant::ggml::type::f32;
    std::uint32_t n_dims = 0;
    std::array<std::uint64_t, 4> ne{1, 1, 1, 1};  // ggml order: ne[0] is the row length
    std::uint64_t offset = 0;                     // relative to the data section
    std::span<const std::byte> data;              // offset .. offset + bytes in the mapping

    /// Elements per row (ne[0]).
    std::uint64_t cols() const noexcept { return ne[0]; }
    /// Rows: the product of ne[1..].
    std::uint64_t rows() const noexcept { return ne[1] * ne[2] * ne[3]; }
    std::uint64_t elements() const noexcept { return cols() * rows(); }
    std::string_view type_name() const noexcept { return quant::ggml::name(type); }
};

/// A GGUF file, memory-mapped and validated; see the file comment.
class gguf_file {
public:
    /// Limits on counts a file may declare (far above any real model), checked before reading.
    static constexpr std::uint64_t max_kv = std::uint64_t{1} << 20;
    static constexpr std::uint64_t max_tensors = std::uint64_t{1} << 20;
    static constexpr int max_depth = 8;                          // nesting of arrays
    static constexpr std::uint64_t max_name_bytes = 64;          // tensor names (GGML_MAX_NAME)
    static constexpr std::uint64_t max_key_bytes = 65535;        // metadata keys

    explicit gguf_file(const std::filesystem::path& path)
        : map_(std::make_shared<io::mapped_file>(path)), path_(path.string()) {
        parse();
    }

    const std::string& path() const noexcept { return path_; }
    std::uint32_t version() const noexcept { return version_; }
    /// general.alignment, or 32 when the file does not set it.
    std::size_t alignment() const noexcept { return alignment_; }
    /// File offset of the tensor data section.
    std::size_t data_offset() const noexcept { return data_offset_; }
    std::size_t file_size() const noexcept { return map_->size(); }
    /// The mapping (keep it to keep tensor views valid beyond the gguf_file).
    std::shared_ptr<const io::mapped_file> mapping() const noexcept { return map_; }
    /// The file's pages out of the resident set (io::mapped_file::release_pages): call it after
    /// building a model whose weights were repacked at load (with_int8_activations), so that the
    /// file is not resident beside the repacked copy. Views into the map stay valid.
    void release_pages() const noexcept { map_->release_pages(); }

    /// Every key and value, in file order.
    const std::vector<std::pair<std::string, gguf_value>>& metadata() const noexcept { return kv_; }
    const gguf_value* find(std::string_view key) const noexcept {
        const auto it = kv_index_.find(std::string(key));
        return it == kv_index_.end() ? nullptr : &kv_[it->second].second;
    }
    /// The value of `key`; kite::not_found_error naming the key and the file when absent.
    const gguf_value& at(std::string_view key) const {
        const gguf_value* v = find(key);
        KITE_REQUIRE(v != nullptr, not_found_error, path_, ": no metadata key '", key, "'");
        return *v;
    }
    /// at(key).as<T>(), with the key and the file in any error.
    template <class T>
    T get(std::string_view key) const {
        return at(key).as<T>(path_ + ": " + std::string(key));
    }
    /// get<T>(key), or `fallback` when the key is absent.
    template <class T>
    T get_or(std::string_view key, T fallback) const {
        const gguf_value* v = find(key);
        return v ? v->as<T>(path_ + ": " + std::string(key)) : fallback;
    }

    const std::vector<gguf_tensor>& tensors() const noexcept { return tensors_; }
    const gguf_tensor* find_tensor(std::string_view name) const noexcept {
        const auto it = tensor_index_.find(std::string(name));
        return it == tensor_index_.end() ? nullptr : &tensors_[it->second];
    }
    /// The tensor `name`; kite::not_found_error naming it and the file when absent.
    const gguf_tensor& tensor(std::string_view name) const {
        const gguf_tensor* t = find_tensor(name);
        KITE_REQUIRE(t != nullptr, not_found_error, path_, ": no tensor '", name, "'");
        return *t;
    }

private:
    template <class... Args>
    [[noreturn]] void fail(const io::byte_reader& in, const Args&... args) const {
        kite::detail::raise<format_error>(path_, ": ", args..., " (at byte ", in.offset(), ")");
    }

    std::string read_string(io::byte_reader& in, std::string_view what, std::uint64_t max_bytes) {
        const std::size_t at = in.offset();
        const auto n = in.get<std::uint64_t>(what);
        if (n > max_bytes) {
            in.seek(at);
            fail(in, what, " has length ", n, "; expected at most ", max_bytes, " bytes");
        }
        if (n > in.remaining()) {
            in.seek(at);
            fail(in, "truncated while reading ", what, ": its length is ", n, " bytes but ", in.remaining() - 8,
                 " remain");
        }
        const auto s = in.take(static_cast<std::size_t>(n), what);
        return std::string(reinterpret_cast<const char*>(s.data()), s.size());
    }

    /// Smallest encoded size of one value of type t (a bound for counts: a declared count whose
    /// elements cannot fit in the bytes left is refused before anything is reserved).
    static std::uint64_t min_bytes(gguf_type t) noexcept {
        switch (t) {
            case gguf_type::uint8: case gguf_type::int8: case gguf_type::boolean: return 1;
            case gguf_type::uint16: case gguf_type::int16: return 2;
            case gguf_type::uint32: case gguf_type::int32: case gguf_type::float32: return 4;
            case gguf_type::uint64: case gguf_type::int64: case gguf_type::float64: return 8;
            case gguf_type::string: return 8;
            case gguf_type::array: return 12;
        }
        return 1;
    }

    gguf_value read_value(io::byte_reader& in, gguf_type t, const std::string& key, int depth) {
        switch (t) {
            case gguf_type::uint8: return {t, std::uint64_t{in.get<std::uint8_t>(key)}};
            case gguf_type::int8: return {t, std::int64_t{in.get<std::int8_t>(key)}};
            case gguf_type::uint16: return {t, std::uint64_t{in.get<std::uint16_t>(key)}};
            case gguf_type::int16: return {t, std::int64_t{in.get<std::int16_t>(key)}};
            case gguf_type::uint32: return {t, std::uint64_t{in.get<std::uint32_t>(key)}};
            case gguf_type::int32: return {t, std::int64_t{in.get<std::int32_t>(key)}};
            case gguf_type::uint64: return {t, in.get<std::uint64_t>(key)};
            case gguf_type::int64: return {t, in.get<std::int64_t>(key)};
            case gguf_type::float32: return {t, static_cast<double>(in.get<float>(key))};
            case gguf_type::float64: return {t, in.get<double>(key)};
            case gguf_type::boolean: {
                const auto b = in.get<std::uint8_t>(key);
                if (b > 1) fail(in, "value of '", key, "' is a BOOL of byte ", int{b}, "; expected 0 or 1");
                return {t, b == 1};
            }
            case gguf_type::string: return {t, read_string(in, "value of '" + key + "'", in.size())};
            case gguf_type::array: {
                if (depth >= max_depth) fail(in, "'", key, "' nests arrays deeper than ", max_depth, " levels");
                const auto et_raw = in.get<std::uint32_t>(key);
                if (et_raw > static_cast<std::uint32_t>(gguf_type::float64))
                    fail(in, "array '", key, "' has element type ", et_raw, "; expected 0..12");
                const auto et = static_cast<gguf_type>(et_raw);
                const auto count = in.get<std::uint64_t>(key);
                if (count > in.remaining() / min_bytes(et))
                    fail(in, "array '", key, "' declares ", count, " elements of ", to_string(et), ", but only ",
                         in.remaining(), " bytes remain");
                gguf_value::array_type a;
                a.reserve(static_cast<std::size_t>(count));
                for (std::uint64_t i = 0; i < count; ++i) a.push_back(read_value(in, et, key, depth + 1));
                return {t, std::move(a), et};
            }
        }
        fail(in, "'", key, "' has value type ", static_cast<std::uint32_t>(t), "; expected 0..12");
    }

    void parse() {
        io::byte_reader in(map_->bytes(), path_);
        if (map_->size() < 4 || std::memcmp(map_->data(), "GGUF", 4) != 0)
            kite::detail::raise<format_error>(path_, ": not a GGUF file (the first bytes are not \"GGUF\")");
        in.skip(4, "magic");
        version_ = in.get<std::uint32_t>("version");
        if (version_ == 1)
            fail(in, "GGUF version 1 (32-bit counts) is not supported; expected version 2 or 3 (convert the file "
                     "with a current llama.cpp)");
        if (version_ > 0xFFFF && (version_ >> 24) >= 1 && (version_ >> 24) <= 3)
            fail(in, "a big-endian GGUF file (version bytes ", version_, "); kite reads little-endian GGUF");
        if (version_ != 2 && version_ != 3) fail(in, "GGUF version ", version_, "; expected 2 or 3");
        const auto n_tensors = in.get<std::uint64_t>("tensor_count");
        const auto n_kv = in.get<std::uint64_t>("metadata_kv_count");
        if (n_kv > max_kv || n_kv > in.remaining() / 13)
            fail(in, "metadata_kv_count = ", n_kv, " is absurd for a file of ", map_->size(), " bytes");
        if (n_tensors > max_tensors || n_tensors > in.remaining() / 24)
            fail(in, "tensor_count = ", n_tensors, " is absurd for a file of ", map_->size(), " bytes");

        kv_.reserve(static_cast<std::size_t>(n_kv));
        for (std::uint64_t i = 0; i < n_kv; ++i) {
            const std::size_t at = in.offset();
            std::string key = read_string(in, "metadata key " + std::to_string(i), max_key_bytes);
            if (key.empty()) {
                in.seek(at);
                fail(in, "metadata key ", i, " is empty");
            }
            const auto t_raw = in.get<std::uint32_t>("value type of '" + key + "'");
            if (t_raw > static_cast<std::uint32_t>(gguf_type::float64))
                fail(in, "'", key, "' has value type ", t_raw, "; expected 0..12");
            gguf_value v = read_value(in, static_cast<gguf_type>(t_raw), key, 0);
            if (!kv_index_.emplace(key, kv_.size()).second) {
                in.seek(at);
                fail(in, "duplicate metadata key '", key, "'");
            }
            kv_.emplace_back(std::move(key), std::move(v));
        }

        if (const gguf_value* a = find("general.alignment")) {
            if (a->type() != gguf_type::uint32)
                kite::detail::raise<format_error>(path_, ": general.alignment is a ", to_string(a->type()),
                                                  "; expected UINT32");
            const auto al = a->as<std::uint64_t>();
            if (al == 0 || (al & (al - 1)) != 0 || al > 65536)
                kite::detail::raise<format_error>(path_, ": general.alignment = ", al,
                                                  "; expected a power of two up to 65536");
            alignment_ = static_cast<std::size_t>(al);
        }

        tensors_.reserve(static_cast<std::size_t>(n_tensors));
        std::vector<std::uint64_t> sizes;
        sizes.reserve(static_cast<std::size_t>(n_tensors));
        for (std::uint64_t i = 0; i < n_tensors; ++i) {
            const std::size_t at = in.offset();
            gguf_tensor t;
            t.name = read_string(in, "name of tensor " + std::to_string(i), max_name_bytes);
            const std::string what = "tensor '" + t.name + "'";
            t.n_dims = in.get<std::uint32_t>(what + " n_dims");
            if (t.n_dims < 1 || t.n_dims > 4) fail(in, what, " has ", t.n_dims, " dimensions; expected 1..4");
            std::uint64_t elements = 1;
            for (std::uint32_t d = 0; d < t.n_dims; ++d) {
                t.ne[d] = in.get<std::uint64_t>(what + " ne");
                if (t.ne[d] == 0 || t.ne[d] > (std::uint64_t{1} << 40))
                    fail(in, what, " has ne[", d, "] = ", t.ne[d], "; expected 1..2^40");
                elements = checked_mul<format_error>(elements, t.ne[d], path_, ": ", what, " element count");
            }
            const auto type_raw = in.get<std::uint32_t>(what + " type");
            const auto ti = quant::ggml::info(type_raw);
            if (!ti) fail(in, what, " has ggml type ", type_raw, ", which ggml does not define");
            t.type = ti->id;
            if (t.ne[0] % ti->block_elems != 0)
                fail(in, what, " rows of ", t.ne[0], " elements are not a whole number of ", ti->name, " blocks of ",
                     ti->block_elems);
            t.offset = in.get<std::uint64_t>(what + " offset");
            const std::uint64_t bytes = checked_mul<format_error>(elements / ti->block_elems, ti->block_bytes, path_,
                                                                  ": ", what, " byte size");
            sizes.push_back(bytes);  // placed in the mapping once the data offset is known
            if (!tensor_index_.emplace(t.name, tensors_.size()).second) {
                in.seek(at);
                fail(in, "duplicate tensor name '", t.name, "'");
            }
            tensors_.push_back(std::move(t));
        }

        const std::size_t end_of_infos = in.offset();
        data_offset_ = checked_add<format_error>(end_of_infos, alignment_ - 1, path_, ": data offset") / alignment_ *
                       alignment_;
        if (!tensors_.empty() && data_offset_ > map_->size())
            kite::detail::raise<format_error>(path_, ": truncated: the tensor data should start at byte ", data_offset_,
                                              " but the file has ", map_->size(), " bytes");
        const std::uint64_t data_bytes = map_->size() > data_offset_ ? map_->size() - data_offset_ : 0;
        for (std::size_t i = 0; i < tensors_.size(); ++i) {
            auto& t = tensors_[i];
            const std::uint64_t bytes = sizes[i];
            if (t.offset % alignment_ != 0)
                kite::detail::raise<format_error>(path_, ": tensor '", t.name, "' offset ", t.offset,
                                                  " is not a multiple of the alignment ", alignment_);
            if (t.offset > data_bytes || bytes > data_bytes - t.offset)
                kite::detail::raise<format_error>(path_, ": tensor '", t.name, "' (", t.type_name(), ", ", bytes,
                                                  " bytes at data offset ", t.offset, ") ends past the end of the file (",
                                                  data_bytes, " bytes of tensor data)");
            t.data = map_->bytes().subspan(data_offset_ + static_cast<std::size_t>(t.offset),
                                           static_cast<std::size_t>(bytes));
        }
    }

    std::shared_ptr<io::mapped_file> map_;
    std::string path_;
    std::uint32_t version_ = 0;
    std::size_t alignment_ = 32;
    std::size_t data_offset_ = 0;
    std::vector<std::pair<std::string, gguf_value>> kv_;
    std::unordered_map<std::string, std::size_t> kv_index_;
    std::vector<gguf_tensor> tensors_;
    std::unordered_map<std::string, std::size_t> tensor_index_;
};

}  // namespace kite::model
