#pragma once
// fuzz_quant: kite's quantized weight files (kite/quant/serialize.hpp, load) for a few
// packed_weights formats and AWQ. The input is the file without its trailing CRC-32C, which
// the harness appends, so the fuzzer explores the format rather than the checksum.

#include <cstdint>
#include <cstring>
#include <span>
#include <string>

#include "fuzz_common.hpp"
#include "kite/core/checksum.hpp"
#include "kite/core/half.hpp"
#include "kite/quant/awq.hpp"
#include "kite/quant/format.hpp"
#include "kite/quant/serialize.hpp"

namespace kite::fuzz {

inline int fuzz_quant(const std::uint8_t* data, std::size_t size) {
    if (size > max_input) return 0;
    std::string file(as_text(data, size));
    const std::uint32_t crc =
        kite::crc32c(std::span<const std::byte>(reinterpret_cast<const std::byte*>(file.data()), file.size()));
    file.append(reinterpret_cast<const char*>(&crc), 4);
    const auto path = write_scratch("quant/w.kq", file);
    namespace q = kite::quant;
    guarded([&] { (void)q::load<q::packed_weights<4, 32, q::grid::symmetric>>(path); });
    guarded([&] { (void)q::load<q::packed_weights<4, 64, q::grid::asymmetric, kite::fp16>>(path); });
    guarded([&] { (void)q::load<q::packed_weights<8, q::per_row, q::grid::symmetric>>(path); });
    guarded([&] { (void)q::load<q::packed_weights<4, q::per_tensor, q::grid::asymmetric>>(path); });
    return guarded([&] {
        (void)q::load<q::awq_weights<q::packed_weights<4, 128, q::grid::asymmetric, kite::fp16>>>(path);
    });
}

}  // namespace kite::fuzz
