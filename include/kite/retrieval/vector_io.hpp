#pragma once
/// @file kite/retrieval/vector_io.hpp
/// Readers and writers for the files embeddings usually come in:
///   - NumPy .npy: 1-D or 2-D arrays in C order of float32 ('<f4'), int32 ('<i4') or int64
///     ('<i8'); a 1-D array reads as one row;
///   - the ANN benchmarks' .fvecs / .ivecs: per vector, an int32 dimension then the values.
///
///   auto emb = kite::retrieval::read_npy("embeddings.npy");     // kite::matrix<float>
///   auto gt  = kite::retrieval::read_ivecs("sift_groundtruth.ivecs");
///
/// Readers check the magic, version, header and sizes against the file length before reading
/// and raise kite::format_error naming the file and the problem. Writers are atomic.

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <limits>
#include <span>
#include <string>
#include <string_view>
#include <type_traits>
#include <vector>

#include "kite/core/error.hpp"
#include "kite/core/io.hpp"
#include "kite/core/matrix.hpp"

namespace kite::retrieval {

namespace detail {

template <class T>
constexpr const char* npy_descr() {
    if constexpr (std::is_same_v<T, float>) {
        return "<f4";
    } else if constexpr (std::is_same_v<T, std::int32_t>) {
        return "<i4";
    } else {
        static_assert(std::is_same_v<T, std::int64_t>, "read_npy / write_npy support float, int32_t and int64_t");
        return "<i8";
    }
}

/// The value of `key` in a .npy header dict, as raw text up to the next top-level comma or brace.
inline std::string_view npy_field(std::string_view header, std::string_view key, const std::string& src) {
    std::size_t p = std::string_view::npos;
    for (const char q : {'\'', '"'}) {
        std::string k;  // built by append: GCC 12 misreports operator+ chains here (-Wrestrict)
        k.reserve(key.size() + 2);
        k.push_back(q);
        k.append(key);
        k.push_back(q);
        p = header.find(k);
        if (p != std::string_view::npos) {
            p += k.size();
            break;
        }
    }
    KITE_REQUIRE(p != std::string_view::npos, format_error, src, ": .npy header has no '", key,
                 "' field: ", header);
    p = header.find(':', p);
    KITE_REQUIRE(p != std::string_view::npos, format_error, src, ": malformed .npy header: ", header);
    ++p;
    while (p < header.size() && header[p] == ' ') ++p;
    std::size_t e = p;
    if (p < header.size() && header[p] == '(') {  // a tuple: up to its closing parenthesis
        e = header.find(')', p);
        KITE_REQUIRE(e != std::string_view::npos, format_error, src, ": malformed .npy header: ", header);
        ++e;
    } else {
        while (e < header.size() && header[e] != ',' && header[e] != '}') ++e;
        while (e > p && header[e - 1] == ' ') --e;
    }
    return header.substr(p, e - p);
}

inline std::vector<std::uint64_t> npy_shape(std::string_view s, const std::string& src) {
    KITE_REQUIRE(s.size() >= 2 && s.front() == '(' && s.back() == ')', format_error, src,
                 ": .npy shape '", s, "' is not a tuple");
    std::vector<std::uint64_t> dims;
    std::size_t i = 1;
    while (i + 1 < s.size()) {
        while (i + 1 < s.size() && (s[i] == ' ' || s[i] == ',')) ++i;
        if (i + 1 >= s.size()) break;
        std::uint64_t v = 0;
        std::size_t digits = 0;
        while (i + 1 < s.size() && s[i] >= '0' && s[i] <= '9') {
            KITE_REQUIRE(v <= (std::numeric_limits<std::uint64_t>::max() - 9) / 10, format_error, src,
                         ": .npy shape '", s, "' overflows");
            v = v * 10 + static_cast<std::uint64_t>(s[i] - '0');
            ++i;
            ++digits;
        }
        KITE_REQUIRE(digits > 0, format_error, src, ": .npy shape '", s, "' is not a tuple of integers");
        dims.push_back(v);
    }
    return dims;
}

}  // namespace detail

namespace detail {

/// Shape and data offset of a validated .npy file of T.
struct npy_layout {
    index_t rows = 0;
    index_t cols = 0;
    std::size_t data_offset = 0;
};

template <class T>
npy_layout parse_npy(std::span<const std::byte> bytes, const std::string& src) {
    kite::io::byte_reader in(bytes, src);
    const auto magic = in.take(6, ".npy magic");
    KITE_REQUIRE(std::memcmp(magic.data(), "\x93NUMPY", 6) == 0, format_error, src,
                 ": not a .npy file (bad magic); expected \\x93NUMPY");
    const auto major = in.get<std::uint8_t>(".npy major version");
    in.get<std::uint8_t>(".npy minor version");
    KITE_REQUIRE(major >= 1 && major <= 3, format_error, src, ": .npy version ", major,
                 " is not supported; expected 1, 2 or 3");
    const std::size_t hlen = major == 1 ? in.get<std::uint16_t>(".npy header length")
                                        : in.get<std::uint32_t>(".npy header length");
    const auto hbytes = in.take(hlen, ".npy header");
    const std::string_view header(reinterpret_cast<const char*>(hbytes.data()), hbytes.size());

    std::string_view descr = npy_field(header, "descr", src);
    KITE_REQUIRE(descr.size() >= 2 && (descr.front() == '\'' || descr.front() == '"'), format_error,
                 src, ": .npy descr ", descr, " is not a simple type");
    descr = descr.substr(1, descr.size() - 2);
    const std::string want = npy_descr<T>();
    const bool ok_descr = descr == want || (descr.size() == 3 && descr[0] == '=' && descr.substr(1) == want.substr(1));
    KITE_REQUIRE(ok_descr, format_error, src, ": .npy dtype '", descr, "'; expected '", want, "'");
    const std::string_view fortran = npy_field(header, "fortran_order", src);
    KITE_REQUIRE(fortran == "False", format_error, src, ": .npy array in Fortran order; expected C order");
    const auto dims = npy_shape(npy_field(header, "shape", src), src);
    KITE_REQUIRE(dims.size() == 1 || dims.size() == 2, format_error, src, ": .npy array has ",
                 dims.size(), " dimensions; expected 1 or 2");
    const std::uint64_t rows = dims.size() == 2 ? dims[0] : 1;
    const std::uint64_t cols = dims.size() == 2 ? dims[1] : dims[0];
    const std::uint64_t avail = in.remaining() / sizeof(T);
    KITE_REQUIRE(cols == 0 || rows <= avail / cols, format_error, src, ": .npy shape ", rows, " x ",
                 cols, " needs more data than the ", in.remaining(), " bytes after the header");
    KITE_REQUIRE(in.remaining() == rows * cols * sizeof(T), format_error, src, ": ", in.remaining(),
                 " bytes of data for shape ", rows, " x ", cols, "; expected ", rows * cols * sizeof(T));
    return {static_cast<index_t>(rows), static_cast<index_t>(cols), in.offset()};
}

}  // namespace detail

/// Reads a .npy array of T (float, int32_t or int64_t) in C order, 1-D (as one row) or 2-D.
template <class T = float>
kite::matrix<T> read_npy(const std::filesystem::path& path) {
    const kite::io::mapped_file file(path);
    const auto l = detail::parse_npy<T>(file.bytes(), path.string());
    kite::matrix<T> m(l.rows, l.cols, kite::uninitialized);
    if (m.size()) std::memcpy(m.data(), file.data() + l.data_offset, m.size() * sizeof(T));
    return m;
}

/// A .npy file of float32 vectors mapped into memory and viewed in place, without a copy:
/// for embedding files larger than one wants to hold twice (the OS pages them in on demand).
class mapped_npy {
public:
    explicit mapped_npy(const std::filesystem::path& path) : file_(path) {
        const auto l = detail::parse_npy<float>(file_.bytes(), path.string());
        // NumPy pads the header to 64 bytes, so the data is aligned; a file that is not gets
        // copied by read_npy instead.
        KITE_REQUIRE(l.data_offset % alignof(float) == 0, format_error, path.string(),
                     ": .npy data at offset ", l.data_offset, " is not 4-byte aligned; use read_npy");
        view_ = {reinterpret_cast<const float*>(file_.data() + l.data_offset), l.rows, l.cols};
    }
    /// The vectors, [rows][cols].
    kite::matrix_view<const float> view() const noexcept { return view_; }
    index_t rows() const noexcept { return view_.rows(); }
    index_t cols() const noexcept { return view_.cols(); }

private:
    kite::io::mapped_file file_;
    kite::matrix_view<const float> view_;
};

/// Writes `m` as a 2-D .npy array (version 1.0, C order), atomically.
template <class T>
void write_npy(const std::filesystem::path& path, kite::matrix_view<const T> m) {
    std::string header = std::string("{'descr': '") + detail::npy_descr<T>() +
                         "', 'fortran_order': False, 'shape': (" + std::to_string(m.rows()) + ", " +
                         std::to_string(m.cols()) + "), }";
    const std::size_t total = 10 + header.size() + 1;
    header.append((64 - total % 64) % 64, ' ');
    header.push_back('\n');
    KITE_REQUIRE(header.size() <= 65535, invalid_argument, "write_npy: header too long");
    kite::io::atomic_file f(path);
    f.write("\x93NUMPY\x01\x00", 8);
    f.put(static_cast<std::uint16_t>(header.size()));
    f.write(header.data(), header.size());
    for (index_t r = 0; r < m.rows(); ++r) f.put_span(std::span<const T>(m.row(r)));
    f.commit();
}
template <class T>
void write_npy(const std::filesystem::path& path, const kite::matrix<T>& m) {
    write_npy(path, kite::matrix_view<const T>(m.view()));
}

namespace detail {

template <class T>
kite::matrix<T> read_vecs(const std::filesystem::path& path, const char* kind) {
    const kite::io::mapped_file file(path);
    kite::io::byte_reader in(file.bytes(), path.string());
    if (in.size() == 0) return kite::matrix<T>(0, 0);
    const std::int32_t d = in.get<std::int32_t>("dimension of vector 0");
    KITE_REQUIRE(d >= 1, format_error, in.source(), ": ", kind, " vector 0 has dimension ", d,
                 "; expected >= 1");
    const std::size_t record = 4 + sizeof(T) * static_cast<std::size_t>(d);
    KITE_REQUIRE(in.size() % record == 0, format_error, in.source(), ": ", in.size(), " bytes are not a whole number of ",
                 kind, " records of dimension ", d, " (", record, " bytes each)");
    const index_t n = in.size() / record;
    kite::matrix<T> m(n, static_cast<index_t>(d), kite::uninitialized);
    in.seek(0);
    for (index_t i = 0; i < n; ++i) {
        const auto di = in.get<std::int32_t>("vector dimension");
        KITE_REQUIRE(di == d, format_error, in.source(), ": ", kind, " vector ", i, " has dimension ",
                     di, "; expected ", d, " like vector 0");
        in.get_into(m.row(i), "vector values");
    }
    return m;
}

template <class T>
void write_vecs(const std::filesystem::path& path, kite::matrix_view<const T> m) {
    kite::io::atomic_file f(path);
    for (index_t r = 0; r < m.rows(); ++r) {
        f.put(static_cast<std::int32_t>(m.cols()));
        f.put_span(std::span<const T>(m.row(r)));
    }
    f.commit();
}

}  // namespace detail

/// Reads an .fvecs file (float32 vectors, each preceded by its int32 dimension).
inline kite::matrix<float> read_fvecs(const std::filesystem::path& path) {
    return detail::read_vecs<float>(path, ".fvecs");
}
/// Reads an .ivecs file (int32 vectors, e.g. ground-truth neighbour ids).
inline kite::matrix<std::int32_t> read_ivecs(const std::filesystem::path& path) {
    return detail::read_vecs<std::int32_t>(path, ".ivecs");
}
/// Writes an .fvecs file, atomically.
inline void write_fvecs(const std::filesystem::path& path, kite::matrix_view<const float> m) {
    detail::write_vecs<float>(path, m);
}
/// Writes an .ivecs file, atomically.
inline void write_ivecs(const std::filesystem::path& path, kite::matrix_view<const std::int32_t> m) {
    detail::write_vecs<std::int32_t>(path, m);
}

/// Reads vectors from a .npy, .fvecs or .ivecs file (by extension; ivecs converted to float).
inline kite::matrix<float> read_vectors(const std::filesystem::path& path) {
    const auto ext = path.extension().string();
    if (ext == ".fvecs") return read_fvecs(path);
    if (ext == ".npy") return read_npy<float>(path);
    if (ext == ".ivecs") {
        const auto iv = read_ivecs(path);
        kite::matrix<float> m(iv.rows(), iv.cols(), kite::uninitialized);
        for (index_t i = 0; i < iv.size(); ++i) m.flat()[i] = static_cast<float>(iv.flat()[i]);
        return m;
    }
    kite::detail::raise<invalid_argument>("read_vectors: '", path.string(), "' has extension '", ext,
                                          "'; expected .npy, .fvecs or .ivecs");
}

}  // namespace kite::retrieval
