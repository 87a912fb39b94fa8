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

# kite-generate and kite-chat on the real SmolLM2-135M-Instruct GGUF (models/, fetched by
# tools/fetch_smollm2.py; skipped without it): a greedy chat answer naming Paris, the --json
# object, and a two-turn piped chat whose second turn continues the cached conversation.
set(_kite_smollm2 "${KITE_EXAMPLE_MODELS}/SmolLM2-135M-Instruct.Q4_1.gguf")
kite_add_resource_test(example_kite-generate-gguf-chat NEEDS "${_kite_smollm2}"
  COMMAND $<TARGET_FILE:kite-generate> --model "${_kite_smollm2}" --chat --prompt "What is the capital of France?"
          --temperature 0 --steps 32
  PASS_REGULAR_EXPRESSION "^The capital of France is Paris\\.")
kite_add_resource_test(example_kite-generate-gguf-json NEEDS "${_kite_smollm2}"
  COMMAND $<TARGET_FILE:kite-generate> --model "${_kite_smollm2}" --prompt "The first three prime numbers are"
          --temperature 0 --steps 8 --json
  PASS_REGULAR_EXPRESSION "\"decode_tokens_per_s\":[0-9.e+-]+,\"prompt_tokens\":6,\"stop\":\"length\",\"text\":\"[^\"]+\",\"tokens\":\\[[0-9]+(,[0-9]+)+\\],\"ttft_ms\":[0-9]")
kite_add_example(kite-chat 09_chat.cpp NO_TEST)
if(CMAKE_CXX_COMPILER_ID STREQUAL "GNU" AND CMAKE_CXX_COMPILER_VERSION VERSION_LESS 13)
  target_compile_options(kite-chat PRIVATE -Wno-maybe-uninitialized)
endif()
kite_add_resource_test(example_kite-chat NEEDS "${_kite_smollm2}"
  COMMAND sh -c "printf 'What is the capital of France?\\nAnd of Germany?\\n' | \"$1\" --model \"$2\" --temperature 0 --max-tokens 48"
          sh $<TARGET_FILE:kite-chat> "${_kite_smollm2}"
  PASS_REGULAR_EXPRESSION "Paris.*Berlin")

# kite-10-serve: six concurrent chat requests served by kite::serve::engine (continuous batching,
# prefix cache, streaming) from SmolLM2 (skipped without models/): Paris in the first answer, all
# six answered, the engine's counters printed.
kite_add_example(kite-10-serve 10_serve.cpp NO_TEST)
if(CMAKE_CXX_COMPILER_ID STREQUAL "GNU" AND CMAKE_CXX_COMPILER_VERSION VERSION_LESS 13)
  target_compile_options(kite-10-serve PRIVATE -Wno-maybe-uninitialized)
endif()
kite_add_resource_test(example_kite-10-serve NEEDS "${_kite_smollm2}"
  COMMAND $<TARGET_FILE:kite-10-serve> --model "${_kite_smollm2}" --max-tokens 24
  PASS_REGULAR_EXPRESSION "A0: [^\n]*Paris.*A5: .*prefix-cache hit rate [1-9][0-9]*%")
