# Quantization benchmarks: quantized GEMV/GEMM beside float32 Eigen (bench_quant_matmul) and
# the method x bits x group quality table on real weights (bench_quant_quality, needs KITE_DATA
# or the checkpoint path as argument).
kite_add_bench(bench_quant_matmul SOURCES quant_matmul.cpp)
# GCC 12 reports its AVX-512 intrinsics, inlined into Eigen's GEMM, as maybe-uninitialized
# (GCC bug 105593).
if(CMAKE_CXX_COMPILER_ID STREQUAL "GNU" AND CMAKE_CXX_COMPILER_VERSION VERSION_LESS 13)
  target_compile_options(bench_quant_matmul PRIVATE -Wno-maybe-uninitialized)
endif()
kite_add_bench(bench_quant_quality SOURCES quant_quality.cpp)
if(CMAKE_CXX_COMPILER_ID STREQUAL "GNU" AND CMAKE_CXX_COMPILER_VERSION VERSION_LESS 13)
  target_compile_options(bench_quant_quality PRIVATE -Wno-maybe-uninitialized)
endif()
