# Lexical retrieval: postings, BM25 (pretokenized path, no utf8proc), TF-IDF, one-hot; the
# analyzer-based tests need kite::text.
kite_add_test(test_lexical
  SOURCES test_lexical_postings.cpp test_lexical_bm25.cpp test_lexical_tfidf.cpp
  LABELS retrieval lexical)

if(TARGET kite::text)
  kite_add_test(test_lexical_text SOURCES test_lexical_text.cpp LIBS kite::text LABELS retrieval lexical)
  # The real-data checks read KITE_DATA; point it at shared/data beside the source tree when
  # present (as on the team's machines and in CI), unless the environment already sets it.
  if(NOT DEFINED ENV{KITE_DATA} AND EXISTS "${PROJECT_SOURCE_DIR}/../shared/data/scifact/corpus.jsonl")
    get_filename_component(_kite_data "${PROJECT_SOURCE_DIR}/../shared/data" ABSOLUTE)
    set_tests_properties(test_lexical_text PROPERTIES ENVIRONMENT "KITE_DATA=${_kite_data}")
  endif()
endif()
