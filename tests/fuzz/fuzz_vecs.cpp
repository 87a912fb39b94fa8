// libFuzzer entry of fuzz_vecs (fuzz_vecs.hpp).
#include "fuzz_vecs.hpp"
KITE_FUZZ_ENTRY(vecs)
