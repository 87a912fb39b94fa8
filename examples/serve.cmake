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
