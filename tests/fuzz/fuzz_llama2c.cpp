// libFuzzer entry of fuzz_llama2c (fuzz_llama2c.hpp).
#include "fuzz_llama2c.hpp"
KITE_FUZZ_ENTRY(llama2c)
