#pragma once
/// @file kite/model/formats/safetensors.hpp
/// Memory-mapped reader of Hugging Face safetensors files, single or sharded.
///
/// Layout of a file: u64 little-endian N, then N bytes of JSON header, then the data section.
/// The header maps each tensor name to {"dtype", "shape", "data_offsets": [begin, end)}
/// (offsets relative to the data section) and may hold "__metadata__" (string -> string).
///
/// Everything is checked once, when the file is opened, exactly as strictly as the reference
/// Rust implementation: header length within the file, valid JSON, known dtypes, shapes whose
/// byte size equals the offsets, tensors that neither overlap nor leave holes and that cover the
/// data section to its last byte. Any violation is a kite::format_error naming the file and the
/// tensor. After that, access is a pointer into the map: F32 tensors are zero-copy, F16 and BF16
/// are converted to float on request.
///
///   kite::model::safetensors_weights w("models/all-MiniLM-L6-v2");   // file, folder or index
///   auto emb = w.tensor("embeddings.word_embeddings.weight").require_shape({30522, 384});
///   std::vector<float> v = emb.to_float();              // any of F32, F16, BF16
///   kite::matrix_view<const float> m = emb.f32_matrix(); // zero-copy, F32 only
///
/// Thread safety: every accessor is const and safe to call from many threads.

#include <algorithm>
#include <bit>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <functional>
#include <initializer_list>
#include <map>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "kite/core/config.hpp"
#include "kite/core/error.hpp"
#include "kite/core/half.hpp"
#include "kite/core/io.hpp"
#include "kite/core/matrix.hpp"
#include "kite/core/string_map.hpp"

namespace kite::model {

static_assert(std::endian::native == std::endian::little,
              "kite's safetensors reader maps little-endian data in place");

/// Element types a safetensors header can name (the sub-byte and exotic F8 variants of newer
/// writers are refused as unknown).
enum class dtype : std::uint8_t { boolean, u8, i8, f8_e4m3, f8_e5m2, u16, i16, f16, bf16,
                                  u32, i32, f32, u64, i64, f64 };

/// The header spelling of a dtype ("F32", "BF16", ...).
constexpr std::string_view to_string(dtype t) noexcept {
    constexpr std::string_view names[] = {"BOOL", "U8",  "I8",  "F8_E4M3", "F8_E5M2",
                                          "U16",  "I16", "F16", "BF16",    "U32",
                                          "I32",  "F32", "U64", "I64",     "F64"};
    return names[static_cast<std::size_t>(t)];
}

/// Bytes per element.
constexpr std::size_t size_of(dtype t) noexcept {
    constexpr std::size_t sizes[] = {1, 1, 1, 1, 1, 2, 2, 2, 2, 4, 4, 4, 8, 8, 8};
    return sizes[static_cast<std::size_t>(t)];
}

/// True for the dtypes tensor_ref::to_float converts (F32, F16, BF16).
constexpr bool is_float_convertible(dtype t) noexcept {
    return t == dtype::f32 || t == dtype::f16 || t == dtype::bf16;
}

/// The dtype spelled `s` in a header, or nothing when it is unknown.
constexpr std::optional<dtype> parse_dtype(std::string_view s) noexcept {
    for (std::uint8_t i = 0; i <= static_cast<std::uint8_t>(dtype::f64); ++i)
        if (to_string(static_cast<dtype>(i)) == s) return static_cast<dtype>(i);
    return std::nullopt;
}

/// One tensor entry of a header, validated.
struct tensor_info {
    std::string name;
    model::dtype dtype = model::dtype::f32;
    std::vector<index_t> shape;  ///< empty for a scalar
    index_t numel = 1;           ///< product of shape
    std::size_t begin = 0;       ///< byte offset in the file (not the data section)
    std::size_t end = 0;         ///< one past the last byte, in the file
    std::size_t shard = 0;       ///< which file of a sharded model holds it
    std::size_t size_bytes() const noexcept { return end - begin; }
};

namespace detail {

inline std::string shape_string(std::span<const index_t> shape) {
    std::string s = "[";
    for (std::size_t i = 0; i < shape.size(); ++i) {
        if (i) s += ", ";
        s += std::to_string(shape[i]);
    }
    return s + "]";
}

}  // namespace detail

/// A view of one stored tensor; valid while the safetensors_file / safetensors_weights that
/// produced it is alive. Cheap to copy.
class tensor_ref {
public:
    tensor_ref(const tensor_info& info, const std::byte* file_data, const std::string& file) noexcept
        : info_(&info), data_(file_data + info.begin), file_(&file) {}

    const tensor_info& info() const noexcept { return *info_; }
    const std::string& name() const noexcept { return info_->name; }
    model::dtype dtype() const noexcept { return info_->dtype; }
    std::span<const index_t> shape() const noexcept { return info_->shape; }
    index_t numel() const noexcept { return info_->numel; }
    /// The path of the file that holds the tensor.
    const std::string& file() const noexcept { return *file_; }
    /// The raw little-endian bytes of the tensor, in the mapped file.
    std::span<const std::byte> bytes() const noexcept { return {data_, info_->size_bytes()}; }

    /// Throws shape_error unless the shape equals `expected`; returns *this for chaining.
    const tensor_ref& require_shape(std::initializer_list<index_t> expected) const {
        return require_shape(std::span<const index_t>(expected.begin(), expected.size()));
    }
    const tensor_ref& require_shape(std::span<const index_t> expected) const {
        KITE_REQUIRE(std::equal(expected.begin(), expected.end(), info_->shape.begin(),
                                info_->shape.end()),
                     shape_error, "safetensors: '", *file_, "': tensor '", info_->name,
                     "' has shape ", detail::shape_string(info_->shape), "; expected ",
                     detail::shape_string(expected));
        return *this;
    }

    /// Zero-copy view of an F32 tensor (invalid_argument for another dtype, or when the
    /// writer left the data unaligned for float).
    std::span<const float> f32() const {
        KITE_REQUIRE(info_->dtype == dtype::f32, invalid_argument, "safetensors: '", *file_,
                     "': tensor '", info_->name, "' has dtype ", to_string(info_->dtype),
                     "; f32() needs F32 (use to_float() to convert F16/BF16)");
        KITE_REQUIRE(reinterpret_cast<std::uintptr_t>(data_) % alignof(float) == 0,
                     invalid_argument, "safetensors: '", *file_, "': tensor '", info_->name,
                     "' is not 4-byte aligned in the file; use to_float()");
        return {reinterpret_cast<const float*>(data_), info_->numel};
    }

    /// Zero-copy [rows][cols] view of a rank-2 F32 tensor.
    matrix_view<const float> f32_matrix() const {
        KITE_REQUIRE(info_->shape.size() == 2, shape_error, "safetensors: '", *file_,
                     "': tensor '", info_->name, "' has shape ", detail::shape_string(info_->shape),
                     "; expected a matrix (rank 2)");
        return {f32().data(), info_->shape[0], info_->shape[1]};
    }

    /// Converts an F32, F16 or BF16 tensor into `out` (out.size() must equal numel()).
    void to_float(std::span<float> out) const {
        KITE_REQUIRE(is_float_convertible(info_->dtype), invalid_argument, "safetensors: '",
                     *file_, "': tensor '", info_->name, "' has dtype ", to_string(info_->dtype),
                     "; expected F32, F16 or BF16 to read it as float");
        KITE_REQUIRE(out.size() == info_->numel, shape_error, "safetensors: tensor '",
                     info_->name, "' has ", info_->numel, " elements; the output holds ",
                     out.size());
        const std::size_t n = info_->numel;
        if (info_->dtype == dtype::f32) {
            if (n) std::memcpy(out.data(), data_, n * sizeof(float));
            return;
        }
        // Two-byte formats: memcpy each element because the data may be unaligned.
        const bool bf = info_->dtype == dtype::bf16;
        for (std::size_t i = 0; i < n; ++i) {
            std::uint16_t h;
            std::memcpy(&h, data_ + 2 * i, 2);
            out[i] = bf ? kite::detail::bf16_bits_to_float(h) : kite::detail::fp16_bits_to_float(h);
        }
    }
    /// The tensor as a new vector of float.
    std::vector<float> to_float() const {
        std::vector<float> v(info_->numel);
        to_float(std::span<float>(v));
        return v;
    }

private:
    const tensor_info* info_;
    const std::byte* data_;
    const std::string* file_;
};

/// One safetensors file, mapped and validated on construction. Move-only.
class safetensors_file {
public:
    /// Largest header accepted (the reference implementation's limit).
    static constexpr std::uint64_t max_header_bytes = 100'000'000;

    explicit safetensors_file(const std::filesystem::path& path, std::size_t shard = 0)
        : file_(path) {
        parse(shard);
    }

    const std::string& path() const noexcept { return file_.path(); }
    /// Size of the whole file in bytes.
    std::size_t size() const noexcept { return file_.size(); }
    /// Every tensor, in data-offset order.
    std::span<const tensor_info> tensors() const noexcept { return tensors_; }
    /// The "__metadata__" map (empty when absent).
    const std::map<std::string, std::string, std::less<>>& metadata() const noexcept {
        return metadata_;
    }
    /// The entry named `name`, or nullptr.
    const tensor_info* find(std::string_view name) const noexcept {
        const auto it = index_.find(name);
        return it == index_.end() ? nullptr : &tensors_[it->second];
    }
    bool contains(std::string_view name) const noexcept { return find(name) != nullptr; }
    /// The tensor named `name`; not_found_error when the file has none.
    tensor_ref tensor(std::string_view name) const {
        const tensor_info* t = find(name);
        KITE_REQUIRE(t != nullptr, not_found_error, "safetensors: '", path(), "' has no tensor '",
                     name, "'");
        return tensor_ref(*t, file_.data(), file_.path());
    }
    /// The tensor of an entry of this file (from tensors() or find()).
    tensor_ref tensor(const tensor_info& t) const noexcept {
        return tensor_ref(t, file_.data(), file_.path());
    }

private:
    template <class... Args>
    [[noreturn]] void fail(const Args&... args) const {
        kite::detail::raise<format_error>("safetensors: '", file_.path(), "': ", args...);
    }

    void parse(std::size_t shard) {
        const std::size_t fsize = file_.size();
        if (fsize < 8) fail("file has ", fsize, " bytes; expected at least 8 (the header length)");
        std::uint64_t n = 0;
        std::memcpy(&n, file_.data(), 8);
        if (n > max_header_bytes)
            fail("header length ", n, " exceeds the limit of ", max_header_bytes, " bytes");
        if (n > fsize - 8)
            fail("header length ", n, " is past the end of the file (", fsize, " bytes)");
        const char* h = reinterpret_cast<const char*>(file_.data()) + 8;
        // The parser is iterative, so a hostile, deeply nested header cannot exhaust the stack.
        const nlohmann::json j = nlohmann::json::parse(h, h + n, nullptr, /*allow_exceptions=*/false);
        if (j.is_discarded()) fail("header is not valid JSON");
        if (!j.is_object()) fail("header is JSON but not an object");

        const std::size_t data_begin = 8 + static_cast<std::size_t>(n);
        const std::size_t data_size = fsize - data_begin;
        tensors_.reserve(j.size());
        for (const auto& [key, value] : j.items()) {
            if (key == "__metadata__") {
                read_metadata(value);
                continue;
            }
            tensors_.push_back(read_entry(key, value, data_size));
            tensors_.back().shard = shard;
        }

        // Sort by offsets and demand a gap-free, overlap-free cover of the data section.
        std::sort(tensors_.begin(), tensors_.end(), [](const tensor_info& a, const tensor_info& b) {
            return a.begin != b.begin ? a.begin < b.begin : a.end < b.end;
        });
        std::size_t covered = 0;
        for (std::size_t i = 0; i < tensors_.size(); ++i) {
            const tensor_info& t = tensors_[i];
            if (t.begin < covered)
                fail("tensor '", t.name, "' (data_offsets [", t.begin, ", ", t.end,
                     ")) overlaps tensor '", tensors_[i - 1].name, "' (ending at ", covered, ")");
            if (t.begin > covered)
                fail("tensor '", t.name, "' starts at data offset ", t.begin, " but the tensors before it end at ",
                     covered, "; expected no gap in the data section");
            covered = t.end;
        }
        if (covered != data_size)
            fail("tensors cover ", covered, " bytes of a data section of ", data_size,
                 " bytes; expected them to cover it exactly");
        for (auto& t : tensors_) {
            t.begin += data_begin;
            t.end += data_begin;
        }
        index_.reserve(tensors_.size());
        for (std::size_t i = 0; i < tensors_.size(); ++i) index_.emplace(tensors_[i].name, i);
    }

    void read_metadata(const nlohmann::json& value) {
        if (!value.is_object()) fail("\"__metadata__\" is not an object");
        for (const auto& [k, v] : value.items()) {
            if (!v.is_string()) fail("\"__metadata__\" entry '", k, "' is not a string");
            metadata_.emplace(k, v.get<std::string>());
        }
    }

    tensor_info read_entry(const std::string& name, const nlohmann::json& e, std::size_t data_size) const {
        if (!e.is_object()) fail("tensor '", name, "': entry is not an object");
        tensor_info t;
        t.name = name;

        const auto dt = e.find("dtype");
        if (dt == e.end() || !dt->is_string()) fail("tensor '", name, "': missing string \"dtype\"");
        const auto& dts = dt->get_ref<const std::string&>();
        const auto parsed = parse_dtype(dts);
        if (!parsed) fail("tensor '", name, "': unknown dtype '", dts, "'");
        t.dtype = *parsed;

        const auto sh = e.find("shape");
        if (sh == e.end() || !sh->is_array()) fail("tensor '", name, "': missing array \"shape\"");
        std::uint64_t numel = 1;
        for (const auto& d : *sh) {
            if (!d.is_number_unsigned()) fail("tensor '", name, "': shape ", sh->dump(), " has an entry that is not a non-negative integer");
            const std::uint64_t v = d.get<std::uint64_t>();
            if (v != 0 && numel > UINT64_MAX / v) fail("tensor '", name, "': shape ", sh->dump(), " overflows");
            numel *= v;
            t.shape.push_back(static_cast<index_t>(v));
        }
        t.numel = static_cast<index_t>(numel);

        const auto off = e.find("data_offsets");
        if (off == e.end() || !off->is_array() || off->size() != 2 ||
            !(*off)[0].is_number_unsigned() || !(*off)[1].is_number_unsigned())
            fail("tensor '", name, "': \"data_offsets\" is not a pair of non-negative integers");
        const std::uint64_t b = (*off)[0].get<std::uint64_t>();
        const std::uint64_t en = (*off)[1].get<std::uint64_t>();
        if (b > en) fail("tensor '", name, "': data_offsets [", b, ", ", en, ") end before they begin");
        if (en > data_size)
            fail("tensor '", name, "': data_offsets [", b, ", ", en, ") run past the data section of ",
                 data_size, " bytes");
        const std::uint64_t elem = size_of(t.dtype);
        if (numel > UINT64_MAX / elem || numel * elem != en - b)
            fail("tensor '", name, "': shape ", sh->dump(), " of ", dts, " needs ", numel, " x ", elem,
                 " bytes, but data_offsets [", b, ", ", en, ") span ", en - b);
        t.begin = static_cast<std::size_t>(b);
        t.end = static_cast<std::size_t>(en);
        return t;
    }

    io::mapped_file file_;
    std::vector<tensor_info> tensors_;
    string_map<std::size_t> index_;
    std::map<std::string, std::string, std::less<>> metadata_;
};

/// The weights of a model: one safetensors file, or the shards listed by a
/// `model.safetensors.index.json` ({"weight_map": {tensor name: shard file name}}).
class safetensors_weights {
public:
    /// Opens `path`: a .safetensors file, an index .json, or a folder holding
    /// model.safetensors or model.safetensors.index.json.
    explicit safetensors_weights(const std::filesystem::path& path) {
        namespace fs = std::filesystem;
        fs::path p = path;
        if (fs::is_directory(p)) {
            if (fs::exists(p / "model.safetensors")) {
                p = p / "model.safetensors";
            } else if (fs::exists(p / "model.safetensors.index.json")) {
                p = p / "model.safetensors.index.json";
            } else {
                kite::detail::raise<not_found_error>(
                    "safetensors: folder '", path.string(),
                    "' holds neither model.safetensors nor model.safetensors.index.json");
            }
        }
        if (p.extension() == ".json") {
            open_index(p);
        } else {
            shards_.push_back(std::make_unique<safetensors_file>(p, 0));
        }
        build_index();
    }

    std::size_t shard_count() const noexcept { return shards_.size(); }
    const safetensors_file& shard(std::size_t i) const { return *shards_.at(i); }
    /// Number of tensors over all shards.
    std::size_t size() const noexcept { return index_.size(); }
    /// All tensor names, sorted.
    std::vector<std::string_view> names() const {
        std::vector<std::string_view> v;
        v.reserve(index_.size());
        for (const auto& [k, t] : index_) v.push_back(k);
        std::sort(v.begin(), v.end());
        return v;
    }
    const tensor_info* find(std::string_view name) const noexcept {
        const auto it = index_.find(name);
        return it == index_.end() ? nullptr : it->second;
    }
    bool contains(std::string_view name) const noexcept { return find(name) != nullptr; }
    /// The tensor named `name`; not_found_error naming the model when absent.
    tensor_ref tensor(std::string_view name) const {
        const tensor_info* t = find(name);
        KITE_REQUIRE(t != nullptr, not_found_error, "safetensors: '", source_, "' has no tensor '",
                     name, "'");
        return shards_[t->shard]->tensor(*t);
    }

private:
    void open_index(const std::filesystem::path& p) {
        source_ = p.string();
        const std::string text = io::read_text(p);
        const nlohmann::json j = nlohmann::json::parse(text, nullptr, false);
        KITE_REQUIRE(!j.is_discarded() && j.is_object(), format_error, "safetensors index '",
                     source_, "' is not a JSON object");
        const auto wm = j.find("weight_map");
        KITE_REQUIRE(wm != j.end() && wm->is_object(), format_error, "safetensors index '", source_,
                     "' has no \"weight_map\" object");
        std::map<std::string, std::size_t> shard_of_file;
        std::vector<std::pair<std::string, std::string>> expected;  // (tensor, shard file)
        for (const auto& [name, file] : wm->items()) {
            KITE_REQUIRE(file.is_string(), format_error, "safetensors index '", source_,
                         "': weight_map entry '", name, "' is not a file name");
            const auto& f = file.get_ref<const std::string&>();
            // Shards must sit beside the index: refuse paths that would leave the folder.
            KITE_REQUIRE(!f.empty() && f.find('/') == std::string::npos &&
                             f.find('\\') == std::string::npos && f != "." && f != "..",
                         format_error, "safetensors index '", source_, "': weight_map entry '",
                         name, "' names '", f, "'; expected a file name in the same folder");
            if (!shard_of_file.count(f)) {
                shard_of_file.emplace(f, shards_.size());
                shards_.push_back(std::make_unique<safetensors_file>(p.parent_path() / f, shards_.size()));
            }
            expected.emplace_back(name, f);
        }
        for (const auto& [name, f] : expected) {
            KITE_REQUIRE(shards_[shard_of_file[f]]->contains(name), format_error,
                         "safetensors index '", source_, "' maps tensor '", name, "' to '", f,
                         "', which has no such tensor");
        }
    }

    void build_index() {
        if (source_.empty()) source_ = shards_.front()->path();
        for (const auto& s : shards_) {
            for (const auto& t : s->tensors()) {
                const auto [it, inserted] = index_.emplace(t.name, &t);
                KITE_REQUIRE(inserted, format_error, "safetensors: tensor '", t.name,
                             "' is stored twice: in '", shards_[it->second->shard]->path(),
                             "' and in '", s->path(), "'");
            }
        }
    }

    std::string source_;
    // unique_ptr keeps each file (and the tensor_info the index points to) at a fixed address.
    std::vector<std::unique_ptr<safetensors_file>> shards_;
    string_map<const tensor_info*> index_;
};

}  // namespace kite::model
