# Lexical retrieval examples (need kite::text for the analyzers).
if(TARGET kite::text)
  kite_add_example(kite-bm25 02_bm25.cpp LIBS kite::text)
  # Real data (BEIR SciFact, KLUE STS): run with the data folder as argument or KITE_DATA set.
  # Its smoke test fails if SciFact nDCG@10 drops below 0.665 (skipped without the data folder).
  kite_add_example(kite-bm25-beir 02_bm25_beir.cpp LIBS kite::text
    NEEDS "${KITE_EXAMPLE_DATA}/scifact/corpus.jsonl" "${KITE_EXAMPLE_DATA}/klue-sts/klue-sts-v1.1_dev.json"
    ARGS "${KITE_EXAMPLE_DATA}" --min-ndcg 0.665)
endif()
