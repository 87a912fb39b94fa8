// libFuzzer entry of fuzz_npy (fuzz_npy.hpp).
#include "fuzz_npy.hpp"
KITE_FUZZ_ENTRY(npy)
