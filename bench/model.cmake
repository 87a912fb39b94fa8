# Model-area benchmarks.
if(TARGET kite::text)
  # kite's side of bench/model_tokenizers_vs_hf.py (plain program: prints one JSON object).
  add_executable(bench_model_tokenizers model_tokenizers.cpp)
  target_link_libraries(bench_model_tokenizers PRIVATE kite::kite kite::text benchmark::benchmark)  # host_setup (bench_util.hpp)
  kite_target_flags(bench_model_tokenizers)
endif()

# Decoding tokens/s of kite's decoder (aidreams260K and a random 110M Llama; f32 / int8 / int4;
# 1 and 2 threads) beside the memory-bandwidth bound.
kite_add_bench(bench_model_decode SOURCES model_decode.cpp)
if(CMAKE_CXX_COMPILER_ID STREQUAL "GNU" AND CMAKE_CXX_COMPILER_VERSION VERSION_LESS 13)
  target_compile_options(bench_model_decode PRIVATE -Wno-maybe-uninitialized)
endif()

# The encoder's packed GEMMs, float32 beside int8 (w8a8), on MiniLM's shapes.
kite_add_bench(bench_model_gemm SOURCES model_gemm.cpp)

# kite's decoder on a GGUF model as llama-bench measures it (tg / pp tokens per second, resident
# set, weight bytes per token, DRAM bandwidth); bench/gguf_vs_llamacpp.py runs it beside llama.cpp.
add_executable(bench_gguf gguf.cpp)
target_link_libraries(bench_gguf PRIVATE kite::kite nlohmann_json::nlohmann_json benchmark::benchmark)
kite_target_flags(bench_gguf)
