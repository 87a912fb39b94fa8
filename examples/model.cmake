# Model examples.
# kite-generate: text generation with a llama2.c checkpoint and tokenizer (the aidreams260K model
# from the data folder by default). When a data folder is found (KITE_DATA, or shared/data beside
# the source tree) it runs as two tests: greedy float32 text equal to the NumPy reference's
# beginning, and 4-bit GPTQ weights with a paged cache reporting their agreement with float32.
kite_add_example(kite-generate kite_generate.cpp NO_TEST)
if(CMAKE_CXX_COMPILER_ID STREQUAL "GNU" AND CMAKE_CXX_COMPILER_VERSION VERSION_LESS 13)
  target_compile_options(kite-generate PRIVATE -Wno-maybe-uninitialized)  # GCC bug 105593 in Eigen/xsimd
endif()
set(_kite_model_data "$ENV{KITE_DATA}")
if(NOT _kite_model_data AND EXISTS "${PROJECT_SOURCE_DIR}/../shared/data/aidreams260k/aidreams260K.bin")
  get_filename_component(_kite_model_data "${PROJECT_SOURCE_DIR}/../shared/data" ABSOLUTE)
endif()
if(KITE_BUILD_TESTS AND _kite_model_data AND EXISTS "${_kite_model_data}/aidreams260k/aidreams260K.bin")
  set(_kite_aid "${_kite_model_data}/aidreams260k")
  add_test(NAME example_kite-generate
           COMMAND kite-generate --checkpoint "${_kite_aid}/aidreams260K.bin" --tokenizer "${_kite_aid}/tok512.bin"
                   --steps 40 --temperature 0)
  set_tests_properties(example_kite-generate PROPERTIES LABELS "example;data"
                       PASS_REGULAR_EXPRESSION "Echoes of vectors unfold, a gentle hum of precision")
  add_test(NAME example_kite-generate-int4
           COMMAND kite-generate --checkpoint "${_kite_aid}/aidreams260K.bin" --tokenizer "${_kite_aid}/tok512.bin"
                   --steps 60 --temperature 0 --weights int4-gptq --cache paged)
  set_tests_properties(example_kite-generate-int4 PROPERTIES LABELS "example;data"
                       PASS_REGULAR_EXPRESSION "greedy agreement of int4-gptq with float32: [0-9.]+% of 60 tokens")
endif()

# A decoder from parts, on the tiny random-weight models of tests/fixtures/model/hf (no data needed).
kite_add_example(kite-07-decoder 07_decoder_from_parts.cpp)
if(CMAKE_CXX_COMPILER_ID STREQUAL "GNU" AND CMAKE_CXX_COMPILER_VERSION VERSION_LESS 13)
  target_compile_options(kite-07-decoder PRIVATE -Wno-maybe-uninitialized)
endif()
