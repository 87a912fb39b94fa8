# GPU examples (kite::cuda: the cuda preset). kite-12-gpu-generate: greedy generation from a
# GGUF model with kite::cuda::decoder, optionally compared with kite's CPU decoder. It needs a
# CUDA device and a model (models/, tools/fetch_smollm2.py), so only its command line is tested
# (--help, an unknown option: the list of programs in examples/CMakeLists.txt).
kite_add_example(kite-12-gpu-generate 12_gpu_generate.cpp LIBS kite::cuda NO_TEST)
if(CMAKE_CXX_COMPILER_ID STREQUAL "GNU" AND CMAKE_CXX_COMPILER_VERSION VERSION_LESS 13)
  target_compile_options(kite-12-gpu-generate PRIVATE -Wno-maybe-uninitialized)  # GCC bug 105593 in Eigen/xsimd
endif()
