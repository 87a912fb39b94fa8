#pragma once
/// @file kite/quant/arch.hpp
/// Instruction-set tags for the quantized kernels, in the style of xsimd: each tag inherits from
/// the one below it, kernels take the tag as their first argument, and overload resolution picks
/// the most specific kernel compiled into the translation unit, falling back by inheritance.
///
///   arch::generic      portable C++ and xsimd batches of the architecture the translation unit
///                      targets (scalar loops where xsimd has none); always available
///   arch::avx512       AVX-512 F/BW/VL intrinsics: fused dequantize-and-FMA for 4- and 8-bit codes
///   arch::avx512_vnni  adds vpdpbusd int8 dot products (llm_int8's W8A8 path)
///
/// arch::best is the most specific tag the compiler flags allow (users choose the flags; kite
/// never adds -march options to its library target).

#include <type_traits>

namespace kite::quant::arch {

/// Portable kernels.
struct generic {};
/// AVX-512 F + BW + VL kernels (used only when the translation unit is compiled for them).
struct avx512 : generic {};
/// AVX-512 VNNI int8 dot products.
struct avx512_vnni : avx512 {};

#if defined(__AVX512F__) && defined(__AVX512BW__) && defined(__AVX512VL__)
#define KITE_QUANT_AVX512 1
#else
#define KITE_QUANT_AVX512 0
#endif
#if KITE_QUANT_AVX512 && defined(__AVX512VNNI__)
#define KITE_QUANT_AVX512_VNNI 1
#else
#define KITE_QUANT_AVX512_VNNI 0
#endif

#if defined(__GNUC__) || defined(__clang__)
/// Marks a lambda always-inline (kernel inner loops written as local lambdas).
#define KITE_QUANT_INLINE_LAMBDA __attribute__((always_inline))
#else
#define KITE_QUANT_INLINE_LAMBDA
#endif

/// Fully unrolls the next loop (over the rows or registers of a tile) even at -O2, so that the
/// arrays of vector registers it indexes stay in registers.
#if defined(__clang__)
#define KITE_QUANT_UNROLL _Pragma("unroll")
#elif defined(__GNUC__)
#define KITE_QUANT_UNROLL _Pragma("GCC unroll 32")
#else
#define KITE_QUANT_UNROLL
#endif

#if KITE_QUANT_AVX512_VNNI
using best = avx512_vnni;
#elif KITE_QUANT_AVX512
using best = avx512;
#else
using best = generic;
#endif

/// Name of a tag, for benchmark labels and messages.
template <class A>
constexpr const char* name() noexcept {
    if constexpr (std::is_same_v<A, avx512_vnni>) {
        return "avx512_vnni";
    } else if constexpr (std::is_same_v<A, avx512>) {
        return "avx512";
    } else {
        return "generic";
    }
}

}  // namespace kite::quant::arch
