// libFuzzer entry of fuzz_llama2c_tokenizer (fuzz_llama2c_tokenizer.hpp).
#include "fuzz_llama2c_tokenizer.hpp"
KITE_FUZZ_ENTRY(llama2c_tokenizer)
