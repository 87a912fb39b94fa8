# kite/app: the semantic cache's threshold calibration (plain program; KITE_DATA and the
# MiniLM model), see bench/README.md "Semantic cache threshold".
if(TARGET kite::app)
  add_executable(bench_cache_threshold app_cache_threshold.cpp)
  target_link_libraries(bench_cache_threshold PRIVATE kite::kite kite::app benchmark::benchmark)  # host_setup (bench_util.hpp)
  kite_target_flags(bench_cache_threshold)
  if(CMAKE_CXX_COMPILER_ID STREQUAL "GNU" AND CMAKE_CXX_COMPILER_VERSION VERSION_LESS 13)
    target_compile_options(bench_cache_threshold PRIVATE -Wno-maybe-uninitialized)  # GCC bug 105593
  endif()
endif()
