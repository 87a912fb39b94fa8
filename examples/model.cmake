# Model examples.
# kite-generate: text generation with a llama2.c checkpoint and tokenizer (the aidreams260K model
# from the data folder). Two smoke tests (skipped without the data folder): greedy float32 text
# equal to the NumPy reference's beginning, and 4-bit GPTQ weights with a paged cache reporting
# their agreement with float32.
kite_add_example(kite-generate kite_generate.cpp NO_TEST)
if(CMAKE_CXX_COMPILER_ID STREQUAL "GNU" AND CMAKE_CXX_COMPILER_VERSION VERSION_LESS 13)
  target_compile_options(kite-generate PRIVATE -Wno-maybe-uninitialized)  # GCC bug 105593 in Eigen/xsimd
endif()
set(_kite_aid "${KITE_EXAMPLE_DATA}/aidreams260k")
kite_add_resource_test(example_kite-generate
  NEEDS "${_kite_aid}/aidreams260K.bin" "${_kite_aid}/tok512.bin"
  COMMAND $<TARGET_FILE:kite-generate> --checkpoint "${_kite_aid}/aidreams260K.bin" --tokenizer "${_kite_aid}/tok512.bin"
          --steps 40 --temperature 0
  PASS_REGULAR_EXPRESSION "Echoes of vectors unfold, a gentle hum of precision")
kite_add_resource_test(example_kite-generate-int4
  NEEDS "${_kite_aid}/aidreams260K.bin" "${_kite_aid}/tok512.bin"
  COMMAND $<TARGET_FILE:kite-generate> --checkpoint "${_kite_aid}/aidreams260K.bin" --tokenizer "${_kite_aid}/tok512.bin"
          --steps 60 --temperature 0 --weights int4-gptq --cache paged
  PASS_REGULAR_EXPRESSION "greedy agreement of int4-gptq with float32: [0-9.]+% of 60 tokens")

# A decoder from parts, on the tiny random-weight models of tests/fixtures/model/hf (no data needed).
kite_add_example(kite-07-decoder 07_decoder_from_parts.cpp)
if(CMAKE_CXX_COMPILER_ID STREQUAL "GNU" AND CMAKE_CXX_COMPILER_VERSION VERSION_LESS 13)
  target_compile_options(kite-07-decoder PRIVATE -Wno-maybe-uninitialized)
endif()
