# Flat index benchmarks: kite's kernels beside Debian's libfaiss (optional; the PyPI faiss-cpu
# anchor is timed by bench/flat_vs_faiss.py on the same data files).
kite_add_bench(bench_flat SOURCES flat_bench.cpp)
if(KITE_WITH_FAISS)
  find_package(faiss CONFIG QUIET)
  if(TARGET faiss)
    target_link_libraries(bench_flat PRIVATE faiss)
    target_compile_definitions(bench_flat PRIVATE KITE_BENCH_WITH_FAISS)
  endif()
endif()
if(CMAKE_CXX_COMPILER_ID STREQUAL "GNU")  # GCC 12: false positive inside Eigen's AVX-512 GEMM
  target_compile_options(bench_flat PRIVATE -Wno-maybe-uninitialized)
endif()
