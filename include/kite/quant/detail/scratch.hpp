#pragma once
/// @file kite/quant/detail/scratch.hpp
/// Per-thread scratch memory for the kernels: grows to the largest request and is then reused,
/// so steady-state calls do not allocate (first use on a thread does).

#include <cstddef>

#include "kite/core/buffer.hpp"

namespace kite::quant::detail {

/// `n` elements of per-thread scratch for slot `Slot` (slots let one thread hold several
/// buffers at once). Contents are unspecified; valid until the next call with the same slot on
/// the same thread.
template <class T, int Slot>
T* scratch(std::size_t n) {
    thread_local aligned_buffer<T> buf;
    if (buf.size() < n) buf = aligned_buffer<T>(n + n / 4, uninitialized);
    return buf.data();
}

}  // namespace kite::quant::detail
