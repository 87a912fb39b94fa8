# Lexical retrieval examples (need kite::text for the analyzers).
if(TARGET kite::text)
  kite_add_example(kite-bm25 02_bm25.cpp LIBS kite::text)
  # Real data (BEIR SciFact, KLUE STS): run with the data folder as argument or KITE_DATA set.
  # When a data folder is found (KITE_DATA, or shared/data beside the source tree), it also
  # runs as a test that fails if SciFact nDCG@10 drops below 0.665.
  kite_add_example(kite-bm25-beir 02_bm25_beir.cpp LIBS kite::text NO_TEST)
  set(_kite_lexical_data "$ENV{KITE_DATA}")
  if(NOT _kite_lexical_data AND EXISTS "${PROJECT_SOURCE_DIR}/../shared/data/scifact/corpus.jsonl")
    get_filename_component(_kite_lexical_data "${PROJECT_SOURCE_DIR}/../shared/data" ABSOLUTE)
  endif()
  if(KITE_BUILD_TESTS AND _kite_lexical_data AND EXISTS "${_kite_lexical_data}/scifact/corpus.jsonl")
    add_test(NAME example_kite-bm25-beir COMMAND kite-bm25-beir "${_kite_lexical_data}" --min-ndcg 0.665)
    set_tests_properties(example_kite-bm25-beir PROPERTIES LABELS "example;data")
  endif()
endif()
