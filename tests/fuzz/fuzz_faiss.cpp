// libFuzzer entry of fuzz_faiss (fuzz_faiss.hpp).
#include "fuzz_faiss.hpp"
KITE_FUZZ_ENTRY(faiss)
