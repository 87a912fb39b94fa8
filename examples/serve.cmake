# kite-serve: the OpenAI-compatible HTTP server (kite/serve/openai_server.hpp), built and
# installed when cpp-httplib is found (kite::http). Its tests are in tests/serve/.
if(TARGET kite::http AND TARGET kite::text)
  kite_add_example(kite-serve kite_serve.cpp LIBS kite::http kite::text NO_TEST)
  if(CMAKE_CXX_COMPILER_ID STREQUAL "GNU" AND CMAKE_CXX_COMPILER_VERSION VERSION_LESS 13)
    target_compile_options(kite-serve PRIVATE -Wno-maybe-uninitialized)
  endif()
  if(KITE_INSTALL)
    install(TARGETS kite-serve RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR})
  endif()
endif()

# kite-serve as a process with SmolLM2 (skipped without models/): greedy chat equal to
# kite-generate --chat, streaming, disconnect cancellation, SIGTERM drain; the official openai
# client; two replicas behind nginx with one killed mid-test (tests/serve/kite_serve_test.py).
find_package(Python3 COMPONENTS Interpreter QUIET)
if(TARGET kite-serve AND KITE_BUILD_TESTS AND Python3_Interpreter_FOUND)
  set(_ks_py ${Python3_EXECUTABLE} ${PROJECT_SOURCE_DIR}/tests/serve/kite_serve_test.py)
  set(_ks_minilm "${KITE_EXAMPLE_MODELS}/all-MiniLM-L6-v2")
  kite_add_resource_test(kite_serve_protocol NEEDS "${_kite_smollm2}"
    COMMAND ${_ks_py} protocol --serve $<TARGET_FILE:kite-serve> --generate $<TARGET_FILE:kite-generate> --model "${_kite_smollm2}"
    LABELS serve)
  kite_add_resource_test(kite_serve_openai_client NEEDS "${_kite_smollm2}" "${_ks_minilm}"
    COMMAND ${_ks_py} openai --serve $<TARGET_FILE:kite-serve> --model "${_kite_smollm2}" --embedding-model "${_ks_minilm}"
    LABELS serve)
  kite_add_resource_test(kite_serve_nginx NEEDS "${_kite_smollm2}"
    COMMAND ${_ks_py} nginx --serve $<TARGET_FILE:kite-serve> --model "${_kite_smollm2}"
    LABELS serve)
  # Two OpenMP processes on the same cores must not spin against each other (README).
  set_tests_properties(kite_serve_protocol kite_serve_openai_client kite_serve_nginx PROPERTIES
    ENVIRONMENT "OMP_WAIT_POLICY=passive" RUN_SERIAL TRUE)
endif()
