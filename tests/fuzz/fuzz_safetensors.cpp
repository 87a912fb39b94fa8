// libFuzzer entry of fuzz_safetensors (fuzz_safetensors.hpp).
#include "fuzz_safetensors.hpp"
KITE_FUZZ_ENTRY(safetensors)
