# Flat index example; its smoke tests run on the small fixtures the repository ships (written by
# tools/flat_make_fixtures.py): an .npy base with .npy queries, and an .fvecs base on its own.
kite_add_example(kite-flat-search 01_flat_search.cpp
  ARGS tests/fixtures/retrieval/flat_base.npy tests/fixtures/retrieval/flat_queries.npy 5)
if(KITE_BUILD_TESTS)
  add_test(NAME example_kite-flat-search-fvecs
           COMMAND kite-flat-search tests/fixtures/retrieval/flat_base.fvecs 3
           WORKING_DIRECTORY ${PROJECT_SOURCE_DIR})
  set_tests_properties(example_kite-flat-search-fvecs PROPERTIES LABELS example)
  # The float16 scan copy: each stored vector must still find itself first at distance 0.
  add_test(NAME example_kite-flat-search-f16
           COMMAND kite-flat-search tests/fixtures/retrieval/flat_base.fvecs 3 --f16
           WORKING_DIRECTORY ${PROJECT_SOURCE_DIR})
  set_tests_properties(example_kite-flat-search-f16 PROPERTIES LABELS example)
endif()
