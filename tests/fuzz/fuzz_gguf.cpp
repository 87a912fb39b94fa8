// libFuzzer entry of fuzz_gguf (fuzz_gguf.hpp).
#include "fuzz_gguf.hpp"
KITE_FUZZ_ENTRY(gguf)
