# The retrieval pipeline: kite-eval (evaluation tool) and the flagship hybrid search.
if(TARGET kite::text)
  kite_add_example(kite-eval kite_eval.cpp LIBS kite::text
    ARGS --data examples/data/notes --retriever hybrid
         --corpus-emb examples/data/notes/corpus_emb.npy --query-emb examples/data/notes/queries_emb.npy)
  if(KITE_BUILD_TESTS)
    add_test(NAME example_kite-eval-bm25-json
             COMMAND kite-eval --data examples/data/notes --retriever bm25 --json
             WORKING_DIRECTORY ${PROJECT_SOURCE_DIR})
    set_tests_properties(example_kite-eval-bm25-json PROPERTIES LABELS example
      PASS_REGULAR_EXPRESSION "\"ndcg@10\":[0-9.]+.*\"qps\"")
  endif()
endif()
