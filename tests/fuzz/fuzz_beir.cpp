// libFuzzer entry of fuzz_beir (fuzz_beir.hpp).
#include "fuzz_beir.hpp"
KITE_FUZZ_ENTRY(beir)
