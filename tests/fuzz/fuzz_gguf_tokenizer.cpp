// libFuzzer entry of fuzz_gguf_tokenizer (fuzz_gguf_tokenizer.hpp).
#include "fuzz_gguf_tokenizer.hpp"
KITE_FUZZ_ENTRY(gguf_tokenizer)
