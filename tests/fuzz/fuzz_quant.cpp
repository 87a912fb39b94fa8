// libFuzzer entry of fuzz_quant (fuzz_quant.hpp).
#include "fuzz_quant.hpp"
KITE_FUZZ_ENTRY(quant)
