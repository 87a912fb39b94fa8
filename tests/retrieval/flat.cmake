# Flat vector index: search against the oracle, API, vector files and FAISS-format files.
# With libfaiss (Debian's libfaiss-dev, found through its CMake package) the same target also
# runs a round trip through FAISS itself: written by kite, read by FAISS, and back.
kite_add_test(test_flat
  SOURCES test_flat_search.cpp test_flat_api.cpp test_flat_io.cpp
  LABELS retrieval)
# GCC 12 reports a false -Wmaybe-uninitialized inside Eigen's AVX-512 GEMM packing (flat_eigen.hpp).
if(CMAKE_CXX_COMPILER_ID STREQUAL "GNU")
  target_compile_options(test_flat PRIVATE -Wno-maybe-uninitialized)
endif()

if(KITE_WITH_FAISS)
  find_package(faiss CONFIG QUIET)
  if(TARGET faiss)
    message(STATUS "kite: test_flat includes the FAISS round trip (libfaiss ${faiss_VERSION})")
    target_sources(test_flat PRIVATE test_flat_faiss_lib.cpp)
    target_link_libraries(test_flat PRIVATE faiss)
    target_compile_definitions(test_flat PRIVATE KITE_TEST_WITH_FAISS_LIB)
  else()
    message(STATUS "kite: libfaiss not found; test_flat skips the FAISS round trip (install libfaiss-dev)")
  endif()
endif()
