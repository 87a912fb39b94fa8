# Model-area benchmarks.
if(TARGET kite::text)
  # kite's side of bench/model_tokenizers_vs_hf.py (plain program: prints one JSON object).
  add_executable(bench_model_tokenizers model_tokenizers.cpp)
  target_link_libraries(bench_model_tokenizers PRIVATE kite::kite kite::text)
  kite_target_flags(bench_model_tokenizers)
endif()
