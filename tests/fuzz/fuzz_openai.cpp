// libFuzzer entry of fuzz_openai (fuzz_openai.hpp).
#include "fuzz_openai.hpp"
KITE_FUZZ_ENTRY(openai)
