// libFuzzer entry of fuzz_chat_template (fuzz_chat_template.hpp).
#include "fuzz_chat_template.hpp"
KITE_FUZZ_ENTRY(chat_template)
