// libFuzzer entry of fuzz_config (fuzz_config.hpp).
#include "fuzz_config.hpp"
KITE_FUZZ_ENTRY(config)
