# Lexical retrieval examples (need kite::text for the analyzers).
if(TARGET kite::text)
  kite_add_example(kite-bm25-beir 02_bm25_beir.cpp LIBS kite::text NO_TEST)
endif()
