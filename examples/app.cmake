# kite-log: the summary / JSON Lines export of an LLM application's exchange log
# (kite/app/exchange_log.hpp), built and installed when kite::app is (SQLite 3 and RE2 found).
# Its library tests are tests/app/test_log.cpp; the command-line tests are below and, for
# --help and unknown options, in examples/CMakeLists.txt.
if(NOT TARGET kite::app)
  return()
endif()

kite_add_example(kite-log kite_log.cpp LIBS kite::app NO_TEST)
# kite-rag: questions in, answers with citations out (kite/app/rag.hpp): hybrid retrieval over
# a BEIR folder, SmolLM2 on the serving engine, caches, validation and the log in one SQLite file.
kite_add_example(kite-rag kite_rag.cpp LIBS kite::app NO_TEST)
# The same in under 60 lines of user code, over the notes corpus the repository ships.
kite_add_example(kite-11-rag 11_rag.cpp LIBS kite::app NO_TEST)
foreach(_t kite-rag kite-11-rag)
  if(CMAKE_CXX_COMPILER_ID STREQUAL "GNU" AND CMAKE_CXX_COMPILER_VERSION VERSION_LESS 13)
    target_compile_options(${_t} PRIVATE -Wno-maybe-uninitialized)  # GCC bug 105593
  endif()
endforeach()
if(KITE_INSTALL)
  install(TARGETS kite-log kite-rag RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR})
endif()

if(NOT KITE_BUILD_TESTS)
  return()
endif()
# _kite_log_cli_test(<name> <status> <regex> [args...]): kite-log exits with <status> and its
# output matches <regex> (tests/expect_exit.sh; the same shape as kite_add_cli_test, which
# examples/CMakeLists.txt defines only after this fragment is read).
function(_kite_log_cli_test name status regex)
  add_test(NAME cli_${name} COMMAND sh ${PROJECT_SOURCE_DIR}/tests/expect_exit.sh ${status} "${regex}"
           $<TARGET_FILE:kite-log> ${ARGN} WORKING_DIRECTORY ${PROJECT_SOURCE_DIR})
  set_tests_properties(cli_${name} PROPERTIES LABELS "example;cli;app")
endfunction()
_kite_log_cli_test(log-no-db 2 "missing required option --db")
_kite_log_cli_test(log-missing-file 1 "kite-log: error: .*no-such-log.sqlite does not exist" --db no-such-log.sqlite)
_kite_log_cli_test(log-not-a-database 1 "kite-log: error: .*flat_base.npy.*not a database"
                   --db tests/fixtures/retrieval/flat_base.npy)
_kite_log_cli_test(log-bad-since 2 "--since: expected a finite number, got 'yesterday'" --db x.sqlite --since yesterday)
_kite_log_cli_test(log-empty-window 2 "--until: expected a time after --since" --db x.sqlite --since 10 --until 5)
_kite_log_cli_test(log-tail-and-jsonl-stdout 2 "--tail .* --jsonl -" --db x.sqlite --jsonl - --tail 3)

# End to end: test_app_log's hidden [.kite_log_demo] case writes a 20-exchange log, then
# kite-log summarizes it, tails it and exports it.
if(TARGET test_app_log)
  set(_kite_log_demo "${CMAKE_CURRENT_BINARY_DIR}/kite_log_demo.sqlite")
  add_test(NAME cli_log-demo-write COMMAND test_app_log "[.kite_log_demo]")
  set_tests_properties(cli_log-demo-write PROPERTIES ENVIRONMENT "KITE_LOG_DEMO_DB=${_kite_log_demo}"
    FIXTURES_SETUP kite_log_demo LABELS "example;cli;app")
  _kite_log_cli_test(log-summary 0 "exchanges +20" --db "${_kite_log_demo}")
  _kite_log_cli_test(log-summary-latency 0 "total +20 +10\\.00 +19\\.00 +20\\.00" --db "${_kite_log_demo}")
  _kite_log_cli_test(log-summary-failures 0 "pii +1" --db "${_kite_log_demo}")
  _kite_log_cli_test(log-window 0 "exchanges +5" --db "${_kite_log_demo}" --since 1714557605 --until 1714557610)
  _kite_log_cli_test(log-tail 0 "ERROR: model timed out" --db "${_kite_log_demo}" --tail 10)
  _kite_log_cli_test(log-jsonl-stdout 0 "\"question\":\"Question n° 20" --db "${_kite_log_demo}" --jsonl -)
  set_tests_properties(cli_log-summary cli_log-summary-latency cli_log-summary-failures cli_log-window cli_log-tail
                       cli_log-jsonl-stdout PROPERTIES FIXTURES_REQUIRED kite_log_demo)
endif()

# kite-rag and kite-11-rag end to end on the shipped notes corpus (SmolLM2 and MiniLM from
# models/; skipped without them): two questions in batch mode with --json, then the example.
set(_kite_rag_needs "${KITE_EXAMPLE_MODELS}/SmolLM2-135M-Instruct.Q4_1.gguf" "${KITE_EXAMPLE_MODELS}/all-MiniLM-L6-v2")
kite_add_resource_test(example_kite-rag NEEDS ${_kite_rag_needs}
  COMMAND $<TARGET_FILE:kite-rag> --data examples/data/notes --split test --limit 2 --max-tokens 12 --json
          --db "${CMAKE_CURRENT_BINARY_DIR}/kite_rag_smoke.sqlite"
  LABELS app PASS_REGULAR_EXPRESSION "\"cache\":\"(miss|exact|semantic)\".*\"citations\":\\[.*\"timings_ms\":{")
kite_add_resource_test(example_kite-11-rag NEEDS ${_kite_rag_needs}
  COMMAND $<TARGET_FILE:kite-11-rag> "${CMAKE_CURRENT_BINARY_DIR}/kite_11_rag.sqlite"
  LABELS app PASS_REGULAR_EXPRESSION "cache: (miss|exact|semantic)")
set_tests_properties(example_kite-rag example_kite-11-rag PROPERTIES ENVIRONMENT "OMP_WAIT_POLICY=passive")

# kite-rag's command line: interactive mode reads questions from stdin; bad combinations and
# missing files are one-line errors.
kite_add_resource_test(example_kite-rag-interactive NEEDS ${_kite_rag_needs}
  COMMAND sh ${PROJECT_SOURCE_DIR}/tests/app/stdin.sh "what is BM25\\n\\n" $<TARGET_FILE:kite-rag> --data examples/data/notes
          --max-tokens 8 --db "${CMAKE_CURRENT_BINARY_DIR}/kite_rag_interactive.sqlite"
  LABELS app PASS_REGULAR_EXPRESSION "Q: what is BM25.*citations: .* cache: (miss|exact|semantic)")
set_tests_properties(example_kite-rag-interactive PROPERTIES ENVIRONMENT "OMP_WAIT_POLICY=passive")
function(_kite_rag_cli_test name status regex)
  add_test(NAME cli_${name} COMMAND sh ${PROJECT_SOURCE_DIR}/tests/expect_exit.sh ${status} "${regex}"
           $<TARGET_FILE:kite-rag> ${ARGN} WORKING_DIRECTORY ${PROJECT_SOURCE_DIR})
  set_tests_properties(cli_${name} PROPERTIES LABELS "example;cli;app")
endfunction()
_kite_rag_cli_test(rag-two-modes 2 "give at most one of --question, --queries and --split" --question x --split test)
_kite_rag_cli_test(rag-missing-model 1 "--model: no-such.gguf does not exist" --model no-such.gguf --question x)
_kite_rag_cli_test(rag-zero-k 2 "--k: .*0" --k 0 --question x)
_kite_rag_cli_test(rag-threshold-range 2 "--threshold: .*1.5" --threshold 1.5 --question x)
