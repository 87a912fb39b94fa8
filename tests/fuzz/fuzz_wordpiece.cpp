// libFuzzer entry of fuzz_wordpiece (fuzz_wordpiece.hpp).
#include "fuzz_wordpiece.hpp"
KITE_FUZZ_ENTRY(wordpiece)
