# kite-train: fine-tune a sentence encoder with the MNR loss, distil a smaller one, or train a
# cross-encoder reranker (kite/train). The example test
# trains all-MiniLM-L6-v2 for two steps on the notes corpus the repository ships (skipped until
# tools/fetch_minilm.py has filled models/), writes the checkpoint, and kite-eval reads it back.
if(NOT TARGET kite::text)
  return()
endif()
kite_add_example(kite-train kite_train.cpp LIBS kite::text NO_TEST)
if(CMAKE_CXX_COMPILER_ID STREQUAL "GNU" AND CMAKE_CXX_COMPILER_VERSION VERSION_LESS 13)
  target_compile_options(kite-train PRIVATE -Wno-maybe-uninitialized)  # GCC bug 105593
endif()
if(KITE_INSTALL)
  install(TARGETS kite-train RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR})
endif()
if(NOT KITE_BUILD_TESTS)
  return()
endif()
set(_kite_minilm_dir "${KITE_EXAMPLE_MODELS}/all-MiniLM-L6-v2")
set(_kite_train_out "${CMAKE_BINARY_DIR}/kite-train-notes")
kite_add_resource_test(example_kite-train-notes NEEDS "${_kite_minilm_dir}/model.safetensors"
  COMMAND $<TARGET_FILE:kite-train> mnr --data examples/data/notes --split test --model "${_kite_minilm_dir}"
          --out "${_kite_train_out}" --batch 4 --max-steps 2 --threads 2 --overwrite --json
  PASS_REGULAR_EXPRESSION "\"epoch\":1.*\"pairs\":8")
if(TARGET kite-eval)
  kite_add_resource_test(example_kite-eval-trained-notes NEEDS "${_kite_minilm_dir}/model.safetensors"
    COMMAND $<TARGET_FILE:kite-eval> --data examples/data/notes --retriever dense --dense minilm
            --model "${_kite_train_out}/epoch-1" --cache-dir "${CMAKE_BINARY_DIR}/kite-train-notes-cache"
    PASS_REGULAR_EXPRESSION "ndcg@10 ")
  set_tests_properties(example_kite-eval-trained-notes PROPERTIES DEPENDS example_kite-train-notes)
endif()
# distil: a two-layer student of MiniLM (layers 0 and 3) for two steps on the notes corpus, then
# kite-eval on it.
set(_kite_distil_out "${CMAKE_BINARY_DIR}/kite-train-distil-notes")
kite_add_resource_test(example_kite-train-distil-notes NEEDS "${_kite_minilm_dir}/model.safetensors"
  COMMAND $<TARGET_FILE:kite-train> distil --data examples/data/notes --split test --teacher "${_kite_minilm_dir}"
          --student-layers 0,3 --out "${_kite_distil_out}" --batch 4 --max-steps 2 --threads 2 --overwrite --json
  PASS_REGULAR_EXPRESSION "\"epoch\":1.*\"texts\":8")
if(TARGET kite-eval)
  kite_add_resource_test(example_kite-eval-distilled-notes NEEDS "${_kite_minilm_dir}/model.safetensors"
    COMMAND $<TARGET_FILE:kite-eval> --data examples/data/notes --retriever dense --dense minilm
            --model "${_kite_distil_out}/epoch-1" --cache-dir "${CMAKE_BINARY_DIR}/kite-train-distil-notes-cache"
    PASS_REGULAR_EXPRESSION "ndcg@10 ")
  set_tests_properties(example_kite-eval-distilled-notes PROPERTIES DEPENDS example_kite-train-distil-notes)
endif()
# cross: a cross-encoder from MiniLM for two steps on the notes corpus (its judged pairs and BM25
# negatives), then kite-eval reranks BM25's top 5 with it; and the reranker that is not a folder.
set(_kite_cross_out "${CMAKE_BINARY_DIR}/kite-train-cross-notes")
kite_add_resource_test(example_kite-train-cross-notes NEEDS "${_kite_minilm_dir}/model.safetensors"
  COMMAND $<TARGET_FILE:kite-train> cross --data examples/data/notes --split test --model "${_kite_minilm_dir}"
          --out "${_kite_cross_out}" --batch 4 --max-steps 2 --negatives 2 --threads 2 --overwrite --json
  PASS_REGULAR_EXPRESSION "\"epoch\":1.*\"pairs\":8")
if(TARGET kite-eval)
  kite_add_resource_test(example_kite-eval-rerank-notes NEEDS "${_kite_minilm_dir}/model.safetensors"
    COMMAND $<TARGET_FILE:kite-eval> --data examples/data/notes --retriever bm25 --rerank "${_kite_cross_out}/epoch-1"
            --rerank-depth 5 --json
    PASS_REGULAR_EXPRESSION "\"reranked\":{.*\"depth\":5.*\"ndcg@10\"")
  set_tests_properties(example_kite-eval-rerank-notes PROPERTIES DEPENDS example_kite-train-cross-notes)
  add_test(NAME cli_eval-rerank-not-a-model COMMAND sh ${PROJECT_SOURCE_DIR}/tests/expect_exit.sh 1
           "--rerank: no config.json in no-such-dir" $<TARGET_FILE:kite-eval> --data examples/data/notes --retriever bm25
           --rerank no-such-dir WORKING_DIRECTORY ${PROJECT_SOURCE_DIR})
  add_test(NAME cli_eval-rerank-depth-alone COMMAND sh ${PROJECT_SOURCE_DIR}/tests/expect_exit.sh 2
           "--rerank-depth needs --rerank" $<TARGET_FILE:kite-eval> --data examples/data/notes --retriever bm25
           --rerank-depth 5 WORKING_DIRECTORY ${PROJECT_SOURCE_DIR})
  add_test(NAME cli_eval-rerank-encoder-folder COMMAND sh ${PROJECT_SOURCE_DIR}/tests/expect_exit.sh 1
           "pooler|classifier" $<TARGET_FILE:kite-eval> --data examples/data/notes --retriever bm25
           --rerank tests/fixtures/model/bert_tiny WORKING_DIRECTORY ${PROJECT_SOURCE_DIR})
  set_tests_properties(cli_eval-rerank-not-a-model cli_eval-rerank-depth-alone cli_eval-rerank-encoder-folder
                       PROPERTIES LABELS "example;cli")
endif()
foreach(_case
    "train-no-data|2|missing required option --data|mnr --out x"
    "train-bad-mode|2|MODE: expected one of mnr.distil|pretrain --data x --out x"
    "train-bad-layers|2|--student-layers: expected layer numbers|distil --data x --out x --student-layers 0,two"
    "train-zero-lr|2|--lr: expected a finite rate > 0|mnr --data x --out x --lr 0"
    "train-batch-one|2|--batch: .*1|mnr --data x --out x --batch 1"
    "train-no-model|1|--model: no config.json in no-such-model|mnr --data examples/data/notes --out x --model no-such-model"
    "train-hard-negatives|2|--hard-negatives: expected one of|mnr --data x --out x --hard-negatives tfidf"
    "train-cross-klue|2|cross: expected --format beir|cross --data x --out x --format klue-sts")
  string(REPLACE "|" ";" _f "${_case}")
  list(GET _f 0 _name)
  list(GET _f 1 _status)
  list(GET _f 2 _regex)
  list(GET _f 3 _args)
  separate_arguments(_args UNIX_COMMAND "${_args}")
  add_test(NAME cli_${_name} COMMAND sh ${PROJECT_SOURCE_DIR}/tests/expect_exit.sh ${_status} "${_regex}"
           $<TARGET_FILE:kite-train> ${_args} WORKING_DIRECTORY ${PROJECT_SOURCE_DIR})
  set_tests_properties(cli_${_name} PROPERTIES LABELS "example;cli")
endforeach()
