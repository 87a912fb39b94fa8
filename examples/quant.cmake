# Quantization examples.
kite_add_example(kite-quantize 06_quantize.cpp)
# GCC 12 reports its AVX-512 intrinsics, inlined into Eigen's GEMM (used by GPTQ and AWQ), as
# maybe-uninitialized (GCC bug 105593).
if(CMAKE_CXX_COMPILER_ID STREQUAL "GNU" AND CMAKE_CXX_COMPILER_VERSION VERSION_LESS 13)
  target_compile_options(kite-quantize PRIVATE -Wno-maybe-uninitialized)
endif()
