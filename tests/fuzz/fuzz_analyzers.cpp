// libFuzzer entry of fuzz_analyzers (fuzz_analyzers.hpp).
#include "fuzz_analyzers.hpp"
KITE_FUZZ_ENTRY(analyzers)
