// libFuzzer entry of fuzz_bm25 (fuzz_bm25.hpp).
#include "fuzz_bm25.hpp"
KITE_FUZZ_ENTRY(bm25)
