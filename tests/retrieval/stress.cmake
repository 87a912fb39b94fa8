# Many threads on the indexes and the sentence encoder under their documented locking (label
# threads: the tsan preset runs it under ThreadSanitizer).
if(TARGET kite::text)
  kite_add_test(test_retrieval_stress SOURCES test_retrieval_stress.cpp LIBS kite::text LABELS retrieval threads)
  if(CMAKE_CXX_COMPILER_ID STREQUAL "GNU")
    target_compile_options(test_retrieval_stress PRIVATE -Wno-maybe-uninitialized)
  endif()
endif()
