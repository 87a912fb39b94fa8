// libFuzzer entry of fuzz_bpe (fuzz_bpe.hpp).
#include "fuzz_bpe.hpp"
KITE_FUZZ_ENTRY(bpe)
