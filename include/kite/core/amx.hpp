#pragma once
/// @file kite/core/amx.hpp
/// What every AMX kernel needs, on x86-64 with GNU inline assembly (KITE_AMX_ASM): the tile
/// configuration (palette 1) and the tile instructions as macros over tile numbers. They are
/// written as inline assembly with memory clobbers: GCC 12's intrinsics declare no memory
/// operands for tileloadd / tilestored / ldtilecfg, so stores the tiles read could be reordered
/// or dropped; the assembler needs binutils 2.36 or later. Whether a kernel may run them is
/// kite::cpu::amx_active() (bfloat16) / amx_int8_active() (kite/core/cpu.hpp).
///
///   kite::cpu::amx_config cfg;
///   cfg.set(0, 16, 64);            // tile 0: 16 rows of 64 bytes
///   cfg.load();                    // ldtilecfg, on the thread that runs the tiles
///   KITE_AMX_ZERO(0); KITE_AMX_LOAD(1, p, 64); ... KITE_AMX_DPBSUD(0, 1, 2);
///   kite::cpu::amx_release();      // tilerelease

#include <cstdint>

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define KITE_AMX_ASM 1
#else
#define KITE_AMX_ASM 0
#endif

#if KITE_AMX_ASM
namespace kite::cpu {

/// The 64-byte tile configuration (palette 1): rows and bytes per row of each of the 8 tiles.
struct alignas(64) amx_config {
    std::uint8_t palette = 1;
    std::uint8_t start_row = 0;
    std::uint8_t reserved[14] = {};
    std::uint16_t colsb[16] = {};
    std::uint8_t rows[16] = {};

    void set(int tile, int nrows, int bytes) noexcept {
        rows[tile] = static_cast<std::uint8_t>(nrows);
        colsb[tile] = static_cast<std::uint16_t>(bytes);
    }
    /// ldtilecfg: this thread's tiles take this shape (and are zeroed).
    void load() const noexcept { __asm__ volatile("ldtilecfg %0" ::"m"(*this) : "memory"); }
};
static_assert(sizeof(amx_config) == 64);

/// tilerelease: this thread's tile state back to its initial (unconfigured) state.
inline void amx_release() noexcept { __asm__ volatile("tilerelease" ::: "memory"); }

}  // namespace kite::cpu

/// tmm<t> = rows of memory at p, `stride` bytes apart.
#define KITE_AMX_LOAD(t, p, stride) \
    __asm__ volatile("tileloadd (%0,%1,1), %%tmm" #t ::"r"(p), "r"(static_cast<long>(stride)) : "memory")
/// Rows of memory at p, `stride` bytes apart = tmm<t>.
#define KITE_AMX_STORE(t, p, stride) \
    __asm__ volatile("tilestored %%tmm" #t ", (%0,%1,1)" ::"r"(p), "r"(static_cast<long>(stride)) : "memory")
#define KITE_AMX_ZERO(t) __asm__ volatile("tilezero %%tmm" #t ::)
/// tmm<c> (float) += tmm<a> (bfloat16 pairs) . tmm<b> (bfloat16 pairs).
#define KITE_AMX_DPBF16PS(c, a, b) __asm__ volatile("tdpbf16ps %%tmm" #b ", %%tmm" #a ", %%tmm" #c ::)
/// tmm<c> (int32) += tmm<a> (signed bytes) . tmm<b> (unsigned bytes), exactly.
#define KITE_AMX_DPBSUD(c, a, b) __asm__ volatile("tdpbsud %%tmm" #b ", %%tmm" #a ", %%tmm" #c ::)
#endif
