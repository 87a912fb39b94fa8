# Serving benchmarks: bench_serve, a workload generator against kite::serve::engine on a GGUF
# model (one JSON object; bench/serve_figures.sh runs the README's set beside llama.cpp).

add_executable(bench_serve serve.cpp)
target_link_libraries(bench_serve PRIVATE kite::kite nlohmann_json::nlohmann_json benchmark::benchmark)  # host_setup (bench_util.hpp)
kite_target_flags(bench_serve)
if(CMAKE_CXX_COMPILER_ID STREQUAL "GNU" AND CMAKE_CXX_COMPILER_VERSION VERSION_LESS 13)
  target_compile_options(bench_serve PRIVATE -Wno-maybe-uninitialized)
endif()

