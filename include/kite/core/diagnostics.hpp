#pragma once
/// @file kite/core/diagnostics.hpp
/// Scoped compiler-warning controls for kite's headers.
///
/// KITE_GCC12_AVX512_UNINIT_BEGIN / _END: GCC 12 reports its own `_mm512_undefined_*()` idiom
/// as uninitialized once AVX-512 intrinsics are inlined into a kernel (GCC bug 105593, fixed
/// in GCC 13); the values are never read. Wrap headers whose kernels inline those intrinsics.

#if defined(__GNUC__) && !defined(__clang__)
#define KITE_GCC12_AVX512_UNINIT_BEGIN                                  \
    _Pragma("GCC diagnostic push") _Pragma("GCC diagnostic ignored \"-Wuninitialized\"") \
        _Pragma("GCC diagnostic ignored \"-Wmaybe-uninitialized\"")
#define KITE_GCC12_AVX512_UNINIT_END _Pragma("GCC diagnostic pop")
#else
#define KITE_GCC12_AVX512_UNINIT_BEGIN
#define KITE_GCC12_AVX512_UNINIT_END
#endif
