// libFuzzer entry of fuzz_klue (fuzz_klue.hpp).
#include "fuzz_klue.hpp"
KITE_FUZZ_ENTRY(klue)
