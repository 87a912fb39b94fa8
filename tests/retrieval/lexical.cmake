# Lexical retrieval: postings, BM25 (pretokenized path, no utf8proc), TF-IDF, one-hot; the
# analyzer-based tests need kite::text.
kite_add_test(test_lexical
  SOURCES test_lexical_postings.cpp test_lexical_bm25.cpp test_lexical_tfidf.cpp
  LABELS retrieval lexical)

if(TARGET kite::text)
  # The SciFact and KLUE STS checks are their own entries (test_lexical_text:scifact, :klue).
  kite_add_test(test_lexical_text SOURCES test_lexical_text.cpp LIBS kite::text LABELS retrieval lexical
    RESOURCES scifact klue)
endif()
