// libFuzzer entry of fuzz_hf_checkpoint (fuzz_hf_checkpoint.hpp).
#include "fuzz_hf_checkpoint.hpp"
KITE_FUZZ_ENTRY(hf_checkpoint)
