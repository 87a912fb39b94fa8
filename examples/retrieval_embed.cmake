# Semantic search with kite's own sentence encoder (all-MiniLM-L6-v2 from models/, fetched by
# tools/fetch_minilm.py; without it the example says so and exits 0, and its test is skipped).
set(_kite_minilm "${KITE_EXAMPLE_MODELS}/all-MiniLM-L6-v2/model.safetensors")
if(TARGET kite::text)
  kite_add_example(kite-08-semantic-search 08_semantic_search.cpp LIBS kite::text NEEDS "${_kite_minilm}")
  if(CMAKE_CXX_COMPILER_ID STREQUAL "GNU" AND CMAKE_CXX_COMPILER_VERSION VERSION_LESS 13)
    target_compile_options(kite-08-semantic-search PRIVATE -Wno-maybe-uninitialized)  # GCC bug 105593
  endif()
endif()

# kite-eval with kite's own encoder (--dense minilm; skipped until tools/fetch_minilm.py has
# filled models/): hybrid search on the shipped notes corpus.
if(TARGET kite-eval)
  kite_add_resource_test(example_kite-eval-dense-minilm NEEDS "${_kite_minilm}"
    COMMAND $<TARGET_FILE:kite-eval> --data examples/data/notes --retriever hybrid --dense minilm --json
            --cache-dir ${CMAKE_CURRENT_BINARY_DIR}/emb-cache
    PASS_REGULAR_EXPRESSION "\"ndcg@10\":[0-9.]+.*\"qps\"")
  # A truncated cache file is encoded again, not an error. (add_test directly: the shell
  # snippet's semicolons would split a list passed through kite_add_resource_test.)
  if(KITE_BUILD_TESTS)
    add_test(NAME example_kite-eval-dense-minilm-corrupt-cache
             COMMAND sh ${PROJECT_SOURCE_DIR}/tests/need.sh "${_kite_minilm}" --
                     sh -c "for f in \"$1\"/*.npy; do printf 'x' > \"$f\"; done; exec \"$0\" --data examples/data/notes --retriever dense --dense minilm --json --cache-dir \"$1\""
                     $<TARGET_FILE:kite-eval> ${CMAKE_CURRENT_BINARY_DIR}/emb-cache
             WORKING_DIRECTORY ${PROJECT_SOURCE_DIR})
    set_tests_properties(example_kite-eval-dense-minilm-corrupt-cache PROPERTIES SKIP_RETURN_CODE 77
      LABELS "example;data"
      PASS_REGULAR_EXPRESSION "ignoring cached embeddings: .*encoding again.*\"ndcg@10\":[0-9.]+")
  endif()
  if(KITE_BUILD_TESTS)
    set_tests_properties(example_kite-eval-dense-minilm PROPERTIES FIXTURES_SETUP minilm_cache)
    set_tests_properties(example_kite-eval-dense-minilm-corrupt-cache PROPERTIES FIXTURES_REQUIRED minilm_cache)
  endif()
endif()

# kite-eval refuses bad --dense / --quant flags with a message (no model needed: checked first).
if(TARGET kite-eval AND KITE_BUILD_TESTS)
  add_test(NAME example_kite-eval-bad-dense
           COMMAND kite-eval --data examples/data/notes --retriever dense --dense bert
           WORKING_DIRECTORY ${PROJECT_SOURCE_DIR})
  add_test(NAME example_kite-eval-bad-calibration
           COMMAND kite-eval --data examples/data/notes --retriever dense --dense minilm --quant gptq
                   --calibration-split test
           WORKING_DIRECTORY ${PROJECT_SOURCE_DIR})
  set_tests_properties(example_kite-eval-bad-dense PROPERTIES LABELS example
    PASS_REGULAR_EXPRESSION "--dense: expected one of minilm, got 'bert'")
  set_tests_properties(example_kite-eval-bad-calibration PROPERTIES LABELS example
    PASS_REGULAR_EXPRESSION "--calibration-split must differ from the evaluated --split \\(test\\)")
endif()
