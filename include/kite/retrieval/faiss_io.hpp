#pragma once
/// @file kite/retrieval/faiss_io.hpp
/// flat_index persistence in FAISS's own binary format, so an index written by kite loads with
/// faiss.read_index and the other way round:
///   - IndexFlatL2 ("IxF2") for kite::metric::l2, IndexFlatIP ("IxFI") for inner_product and
///     cosine; the generic IndexFlat ("IxFl") is read when its metric matches;
///   - an index whose ids are not 0..n-1 (add_with_ids, remove_ids) is written as an
///     IndexIDMap ("IxMp") around the flat index; IndexIDMap and IndexIDMap2 ("IxM2") are read.
///
///   kite::retrieval::write_faiss(index, "vectors.faiss");
///   auto back = kite::retrieval::read_faiss<kite::metric::l2>("vectors.faiss");
///
/// Layout (little-endian): fourcc, then the header int32 d, int64 ntotal, two int64 fields FAISS
/// no longer uses (written as 2^20), uint8 is_trained, int32 metric_type (+ float metric_arg
/// when metric_type > 1); then uint64 count = ntotal * d and the floats. An IndexIDMap has its
/// own header, then the whole inner index, then uint64 ntotal and the int64 ids.
///
/// Writes are atomic (temporary file + rename). A truncated, foreign or corrupt file raises
/// kite::format_error naming the file, the field and the offset; nothing is read past the end.

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <limits>
#include <span>
#include <string>
#include <unordered_set>
#include <vector>

#include "kite/core/buffer.hpp"
#include "kite/core/error.hpp"
#include "kite/core/io.hpp"
#include "kite/core/validate.hpp"
#include "kite/retrieval/flat_index.hpp"

namespace kite::retrieval {

namespace detail {

constexpr std::uint32_t faiss_fourcc(const char (&s)[5]) noexcept {
    return static_cast<std::uint32_t>(static_cast<unsigned char>(s[0])) |
           static_cast<std::uint32_t>(static_cast<unsigned char>(s[1])) << 8 |
           static_cast<std::uint32_t>(static_cast<unsigned char>(s[2])) << 16 |
           static_cast<std::uint32_t>(static_cast<unsigned char>(s[3])) << 24;
}

inline std::string fourcc_text(std::uint32_t h) {
    std::string s;
    for (int i = 0; i < 4; ++i) {
        const char c = static_cast<char>((h >> (8 * i)) & 0xff);
        s += (c >= 32 && c < 127) ? std::string(1, c) : "\\x" + std::to_string(static_cast<int>(static_cast<unsigned char>(c)));
    }
    return s;
}

inline const char* faiss_metric_name(std::int32_t m) {
    switch (m) {
        case 0: return "METRIC_INNER_PRODUCT";
        case 1: return "METRIC_L2";
        case 2: return "METRIC_L1";
        case 3: return "METRIC_Linf";
        case 4: return "METRIC_Lp";
        default: return "an unknown metric";
    }
}

inline void write_faiss_header(kite::io::atomic_file& f, index_t d, index_t n, int metric) {
    f.put(static_cast<std::int32_t>(d));
    f.put(static_cast<std::int64_t>(n));
    const std::int64_t unused = std::int64_t{1} << 20;  // FAISS's dummy fields
    f.put(unused);
    f.put(unused);
    f.put(static_cast<std::uint8_t>(1));  // is_trained
    f.put(static_cast<std::int32_t>(metric));
}

struct faiss_header {
    std::int32_t d;
    std::int64_t ntotal;
    std::int32_t metric;
};

inline faiss_header read_faiss_header(kite::io::byte_reader& in) {
    faiss_header h{};
    h.d = in.get<std::int32_t>("header d");
    KITE_REQUIRE(h.d >= 1, format_error, in.source(), ": FAISS header has d = ", h.d,
                 " at offset ", in.offset() - 4, "; expected d >= 1");
    h.ntotal = in.get<std::int64_t>("header ntotal");
    KITE_REQUIRE(h.ntotal >= 0, format_error, in.source(), ": FAISS header has ntotal = ", h.ntotal,
                 "; expected ntotal >= 0");
    in.get<std::int64_t>("header dummy");
    in.get<std::int64_t>("header dummy");
    in.get<std::uint8_t>("header is_trained");
    h.metric = in.get<std::int32_t>("header metric_type");
    if (h.metric > 1) in.get<float>("header metric_arg");
    return h;
}

/// Where a flat index's vectors lie in the file.
struct faiss_flat_layout {
    faiss_header header;
    std::size_t data_offset = 0;  // of ntotal * d floats
};

template <class Metric>
faiss_flat_layout read_faiss_flat(kite::io::byte_reader& in) {
    const std::size_t at = in.offset();
    const auto h4 = in.get<std::uint32_t>("fourcc");
    const bool flat = h4 == faiss_fourcc("IxF2") || h4 == faiss_fourcc("IxFI") || h4 == faiss_fourcc("IxFl");
    KITE_REQUIRE(flat, format_error, in.source(), ": fourcc '", fourcc_text(h4), "' at offset ", at,
                 " is not a FAISS flat index; expected IxF2, IxFI or IxFl");
    faiss_flat_layout l;
    l.header = read_faiss_header(in);
    const auto& hd = l.header;
    KITE_REQUIRE(hd.metric == Metric::faiss_metric, format_error, in.source(), ": the index uses ",
                 faiss_metric_name(hd.metric), "; expected ", faiss_metric_name(Metric::faiss_metric),
                 " for kite::metric::", Metric::name);
    const auto count = in.get<std::uint64_t>("vector count");
    const auto d = static_cast<std::uint64_t>(hd.d);
    const auto n = static_cast<std::uint64_t>(hd.ntotal);
    KITE_REQUIRE(n <= std::numeric_limits<std::uint64_t>::max() / d && count == n * d, format_error,
                 in.source(), ": ", count, " floats stored for ntotal = ", n, " and d = ", d,
                 "; expected ntotal * d");
    KITE_REQUIRE(count <= in.remaining() / sizeof(float), format_error, in.source(),
                 ": truncated: ", count, " floats announced at offset ", in.offset(), " but only ",
                 in.remaining(), " bytes follow");
    l.data_offset = in.offset();
    in.skip(count * sizeof(float), "vectors");
    return l;
}

}  // namespace detail

/// Reads a FAISS index of flat vectors from bytes (`source` names them in errors).
template <vector_metric Metric>
flat_index<Metric> read_faiss(std::span<const std::byte> bytes, const std::string& source = "<memory>") {
    kite::io::byte_reader in(bytes, source);
    KITE_REQUIRE(in.size() >= 4, format_error, source, ": ", in.size(),
                 " bytes are too few for a FAISS index");
    std::uint32_t h4;
    std::memcpy(&h4, bytes.data(), 4);
    const bool idmap = h4 == detail::faiss_fourcc("IxMp") || h4 == detail::faiss_fourcc("IxM2");
    std::vector<id_t> ids;
    detail::faiss_flat_layout flat;
    if (idmap) {
        in.skip(4, "fourcc");
        const auto outer = detail::read_faiss_header(in);
        flat = detail::read_faiss_flat<Metric>(in);
        KITE_REQUIRE(outer.ntotal == flat.header.ntotal && outer.d == flat.header.d, format_error, source,
                     ": IndexIDMap header (d = ", outer.d, ", ntotal = ", outer.ntotal,
                     ") disagrees with its inner index (d = ", flat.header.d, ", ntotal = ",
                     flat.header.ntotal, ")");
        const auto count = in.get<std::uint64_t>("id count");
        KITE_REQUIRE(count == static_cast<std::uint64_t>(flat.header.ntotal), format_error, source,
                     ": ", count, " ids stored for ", flat.header.ntotal, " vectors");
        KITE_REQUIRE(count <= in.remaining() / sizeof(id_t), format_error, source, ": truncated: ", count,
                     " ids announced at offset ", in.offset(), " but only ", in.remaining(), " bytes follow");
        ids.resize(count);
        in.get_into(std::span<id_t>(ids), "ids");
        std::unordered_set<id_t> seen;
        seen.reserve(ids.size());
        for (std::size_t i = 0; i < ids.size(); ++i)
            KITE_REQUIRE(ids[i] >= 0 && ids[i] < std::numeric_limits<id_t>::max() && seen.insert(ids[i]).second,
                         format_error, source, ": id ", i, " = ", ids[i],
                         " is negative or repeated; kite needs unique non-negative ids");
    } else {
        flat = detail::read_faiss_flat<Metric>(in);
    }
    KITE_REQUIRE(in.remaining() == 0, format_error, source, ": ", in.remaining(),
                 " unexpected bytes after the index at offset ", in.offset());

    const index_t d = static_cast<index_t>(flat.header.d);
    const index_t n = static_cast<index_t>(flat.header.ntotal);
    flat_index<Metric> index(d);
    index.reserve(n);
    // Vectors go in through aligned chunks (the file's floats need not be 4-byte aligned).
    const index_t chunk_rows = std::max<index_t>(1, (index_t{4} << 20) / (d * sizeof(float)));
    kite::matrix<float> chunk(std::min(n, chunk_rows), d, kite::uninitialized);
    for (index_t r = 0; r < n; r += chunk_rows) {
        const index_t m = std::min(chunk_rows, n - r);
        std::memcpy(chunk.data(), bytes.data() + flat.data_offset + r * d * sizeof(float), m * d * sizeof(float));
        const auto rows = kite::matrix_view<const float>(chunk.data(), m, d);
        for (index_t i = 0; i < m; ++i) {
            const std::size_t c = kite::find_non_finite(rows.row(i));
            KITE_REQUIRE(c == d, format_error, source, ": vector ", r + i, " component ", c, " is ",
                         rows(i, c), "; expected finite values");
        }
        if (idmap)
            index.add_with_ids(rows, std::span<const id_t>(ids.data() + r, m));
        else
            index.add(rows);
    }
    return index;
}

/// Reads a FAISS IndexFlatL2 / IndexFlatIP / IndexIDMap(flat) file.
template <vector_metric Metric>
flat_index<Metric> read_faiss(const std::filesystem::path& path) {
    const kite::io::mapped_file file(path);
    return read_faiss<Metric>(file.bytes(), path.string());
}

/// Writes `index` in FAISS's format, atomically: IndexFlatL2 / IndexFlatIP when its ids are
/// 0..n-1, otherwise an IndexIDMap around one. Cosine indexes are written as IndexFlatIP
/// holding the normalised vectors.
template <vector_metric Metric>
void write_faiss(const flat_index<Metric>& index, const std::filesystem::path& path) {
    const bool ip = Metric::faiss_metric == 0;
    const index_t n = index.size(), d = index.dim();
    kite::io::atomic_file f(path);
    if (!index.has_sequential_ids()) {
        f.put(detail::faiss_fourcc("IxMp"));
        detail::write_faiss_header(f, d, n, Metric::faiss_metric);
    }
    f.put(ip ? detail::faiss_fourcc("IxFI") : detail::faiss_fourcc("IxF2"));
    detail::write_faiss_header(f, d, n, Metric::faiss_metric);
    f.put(static_cast<std::uint64_t>(n * d));
    f.put_span(index.vectors().flat());
    if (!index.has_sequential_ids()) {
        f.put(static_cast<std::uint64_t>(n));
        f.put_span(index.ids());
    }
    f.commit();
}

}  // namespace kite::retrieval
