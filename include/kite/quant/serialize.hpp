#pragma once
/// @file kite/quant/serialize.hpp
/// On-disk format of packed weights (and of AWQ weights, which add their input scales).
///
///   offset  field
///   0       magic "KITEQW01" (packed_weights) or "KITEQA01" (awq_weights)
///   8       u32 layout_version (packed_weights::layout_version, 1)
///   12      u32 bits, i32 group (0 per_row, -1 per_tensor), u32 grid (0 symmetric,
///           1 asymmetric), u32 scale type (0 float, 1 fp16)
///   28      u64 rows, u64 cols, u64 code bytes, u64 scale count, u64 zero count
///   68      codes, scales, zeros (the in-memory layout of format.hpp, little-endian)
///           [awq only: u64 n, then n float input scales]
///   end-4   u32 CRC-32C of every byte before it
///
/// Files are written atomically (temporary name, fsync, rename). load() checks the magic, the
/// version, that the stored parameters are those of the requested type, every size against
/// the file length, the checksum, and that scales are finite; any mismatch is a
/// kite::format_error naming the file and the field.

#include <cstdint>
#include <cstring>
#include <filesystem>
#include <span>
#include <string>
#include <vector>

#include "kite/core/buffer.hpp"
#include "kite/core/checksum.hpp"
#include "kite/core/error.hpp"
#include "kite/core/io.hpp"
#include "kite/core/validate.hpp"
#include "kite/quant/awq.hpp"
#include "kite/quant/format.hpp"

namespace kite::quant {

namespace detail {

inline constexpr char magic_packed[9] = "KITEQW01";
inline constexpr char magic_awq[9] = "KITEQA01";

/// Appends bytes to a buffer while keeping the running CRC.
class crc_writer {
public:
    explicit crc_writer(io::atomic_file& f) : f_(f) {}
    void write(const void* p, std::size_t n) {
        f_.write(p, n);
        crc_ = crc32c(std::span<const std::byte>(static_cast<const std::byte*>(p), n), crc_);
    }
    template <class T>
    void put(const T& v) {
        write(&v, sizeof(T));
    }
    std::uint32_t crc() const noexcept { return crc_; }

private:
    io::atomic_file& f_;
    std::uint32_t crc_ = 0;
};

template <class F>
void write_packed(crc_writer& w, const F& p, const char* magic) {
    w.write(magic, 8);
    w.put<std::uint32_t>(F::layout_version);
    w.put<std::uint32_t>(F::bits);
    w.put<std::int32_t>(F::group);
    w.put<std::uint32_t>(static_cast<std::uint32_t>(F::grid_kind));
    w.put<std::uint32_t>(scale_code<typename F::scale_type>);
    w.put<std::uint64_t>(p.rows());
    w.put<std::uint64_t>(p.cols());
    w.put<std::uint64_t>(p.codes().size());
    w.put<std::uint64_t>(p.scales().size());
    w.put<std::uint64_t>(p.zeros().size());
    w.write(p.codes().data(), p.codes().size_bytes());
    w.write(p.scales().data(), p.scales().size_bytes());
    w.write(p.zeros().data(), p.zeros().size_bytes());
}

template <class F>
F read_packed(io::byte_reader& in, const char* magic) {
    const std::string& src = in.source();
    const auto m = in.take(8, "magic");
    KITE_REQUIRE(std::memcmp(m.data(), magic, 8) == 0, format_error, src, ": magic '",
                 std::string(reinterpret_cast<const char*>(m.data()), 8), "'; expected '", magic, "'");
    const auto version = in.get<std::uint32_t>("layout_version");
    KITE_REQUIRE(version == F::layout_version, format_error, src, ": layout version ", version,
                 "; this build reads version ", F::layout_version);
    const auto bits = in.get<std::uint32_t>("bits");
    const auto group = in.get<std::int32_t>("group");
    const auto grid_v = in.get<std::uint32_t>("grid");
    const auto scale_v = in.get<std::uint32_t>("scale type");
    KITE_REQUIRE(bits == F::bits && group == F::group && grid_v == static_cast<std::uint32_t>(F::grid_kind) &&
                     scale_v == scale_code<typename F::scale_type>,
                 format_error, src, ": stored format bits = ", bits, ", group = ", group, ", grid = ", grid_v,
                 ", scale type = ", scale_v, "; expected bits = ", F::bits, ", group = ", F::group,
                 ", grid = ", static_cast<int>(F::grid_kind), ", scale type = ",
                 scale_code<typename F::scale_type>);
    const auto rows = in.get<std::uint64_t>("rows");
    const auto cols = in.get<std::uint64_t>("cols");
    const auto n_codes = in.get<std::uint64_t>("code bytes");
    const auto n_scales = in.get<std::uint64_t>("scale count");
    const auto n_zeros = in.get<std::uint64_t>("zero count");
    // sizes follow from rows and cols; check them before allocating anything
    const index_t rb = cols <= 8 * in.size() ? F::row_bytes_for(cols) : 0;
    KITE_REQUIRE(cols <= 8 * in.size() && (rb == 0 || rows <= in.size() / rb), format_error, src, ": ", rows,
                 " x ", cols, " weights cannot fit in a file of ", in.size(), " bytes");
    const index_t ng = F::groups_for(cols), sr = F::scale_rows_for(rows);
    KITE_REQUIRE(n_codes == rows * rb && n_scales == sr * ng &&
                     n_zeros == (F::has_zeros ? sr * ng : 0),
                 format_error, src, ": section sizes ", n_codes, ", ", n_scales, ", ", n_zeros,
                 " do not match ", rows, " x ", cols, " (expected ", rows * rb, ", ", sr * ng,
                 ", ", (F::has_zeros ? sr * ng : 0), ")");
    in.need(n_codes + n_scales * sizeof(typename F::scale_type) + n_zeros, "codes, scales and zeros");
    F p(rows, cols);
    in.get_into(p.codes(), "codes");
    in.get_into(p.scales(), "scales");
    in.get_into(p.zeros(), "zeros");
    for (std::size_t i = 0; i < p.scales().size(); ++i) {
        const float s = to_float(p.scales()[i]);
        KITE_REQUIRE(is_finite_bits(s), format_error, src, ": scale ", i, " = ", s, "; expected a finite value");
    }
    return p;
}

/// Checks the trailing CRC-32C of a whole file.
inline void check_crc(const io::mapped_file& f) {
    KITE_REQUIRE(f.size() >= 4, format_error, f.path(), ": ", f.size(), " bytes; too short for a kite weight file");
    std::uint32_t stored;
    std::memcpy(&stored, f.data() + f.size() - 4, 4);
    const std::uint32_t crc = crc32c(f.bytes().first(f.size() - 4));
    KITE_REQUIRE(crc == stored, format_error, f.path(), ": checksum ", crc, " does not match the stored ", stored,
                 " (the file is corrupt)");
}

inline void require_end(const io::byte_reader& in) {
    KITE_REQUIRE(in.remaining() == 4, format_error, in.source(), ": ", in.remaining() - 4,
                 " unexpected bytes before the checksum");
}

}  // namespace detail

/// Writes packed weights to `path` atomically.
template <int B, int G, grid Z, class S>
void save(const std::filesystem::path& path, const packed_weights<B, G, Z, S>& p) {
    io::atomic_file f(path);
    detail::crc_writer w(f);
    detail::write_packed(w, p, detail::magic_packed);
    const std::uint32_t crc = w.crc();
    f.put(crc);
    f.commit();
}

/// Writes AWQ weights (packed weights and input scales) to `path` atomically.
template <class P>
void save(const std::filesystem::path& path, const awq_weights<P>& a) {
    io::atomic_file f(path);
    detail::crc_writer w(f);
    detail::write_packed(w, a.weights(), detail::magic_awq);
    w.put<std::uint64_t>(a.input_scales().size());
    w.write(a.input_scales().data(), a.input_scales().size_bytes());
    w.put<double>(a.alpha());
    const std::uint32_t crc = w.crc();
    f.put(crc);
    f.commit();
}

/// Reads weights of format F (packed_weights<...> or awq_weights<...>) saved by save().
template <class F>
F load(const std::filesystem::path& path) {
    io::mapped_file f(path);
    detail::check_crc(f);
    io::byte_reader in(f.bytes(), f.path());
    if constexpr (is_awq_weights<F>) {
        using P = typename F::packed_type;
        P p = detail::read_packed<P>(in, detail::magic_awq);
        const auto n = in.get<std::uint64_t>("input scale count");
        KITE_REQUIRE(n == p.cols(), format_error, f.path(), ": ", n, " input scales; expected ", p.cols());
        aligned_buffer<float> s(p.cols());
        in.get_into(s.span(), "input scales");
        for (std::size_t i = 0; i < s.size(); ++i)
            KITE_REQUIRE(is_finite_bits(s[i]) && s[i] > 0, format_error, f.path(), ": input scale ", i, " = ", s[i],
                         "; expected a positive finite value");
        const auto alpha = in.get<double>("alpha");
        detail::require_end(in);
        return F(std::move(p), std::move(s), alpha);
    } else {
        static_assert(is_packed_weights<F>, "kite::quant::load reads packed_weights or awq_weights");
        F p = detail::read_packed<F>(in, detail::magic_packed);
        detail::require_end(in);
        return p;
    }
}

}  // namespace kite::quant
