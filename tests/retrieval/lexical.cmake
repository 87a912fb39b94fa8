# Lexical retrieval: postings, BM25 (pretokenized path, no utf8proc), TF-IDF, one-hot; the
# analyzer-based tests need kite::text.
kite_add_test(test_lexical
  SOURCES test_lexical_postings.cpp test_lexical_bm25.cpp test_lexical_tfidf.cpp
  LABELS retrieval lexical)
