# Sentence embeddings (kite's BERT encoder; WordPiece needs kite::text).
if(TARGET kite::text)
  # kite's side of bench/embed_vs_st.py (plain program: prints one JSON object).
  add_executable(bench_embed retrieval_embed.cpp)
  target_link_libraries(bench_embed PRIVATE kite::kite kite::text benchmark::benchmark)  # host_setup (bench_util.hpp)
  kite_target_flags(bench_embed)
  if(CMAKE_CXX_COMPILER_ID STREQUAL "GNU" AND CMAKE_CXX_COMPILER_VERSION VERSION_LESS 13)
    target_compile_options(bench_embed PRIVATE -Wno-maybe-uninitialized)  # GCC bug 105593
  endif()
endif()
