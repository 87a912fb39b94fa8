# Lexical retrieval benchmarks (need kite::text for the analyzers).
if(TARGET kite::text)
  # kite's side of bench/bm25_vs_bm25s.py (plain program: prints one JSON object).
  add_executable(bench_lexical_scifact lexical_scifact.cpp)
  target_link_libraries(bench_lexical_scifact PRIVATE kite::kite kite::text benchmark::benchmark)  # host_setup (bench_util.hpp)
  kite_target_flags(bench_lexical_scifact)
endif()
if(TARGET kite::text)
  # Fast paths beside their slow twins (analyzer, pruned vs exhaustive search).
  kite_add_bench(bench_lexical SOURCES lexical_bm25.cpp LIBS kite::text)
endif()
