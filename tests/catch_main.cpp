// The Catch2 main for every kite test executable (Catch2 v3 brings its own).
#if KITE_CATCH2_MAJOR == 2
#define CATCH_CONFIG_MAIN
#include <catch2/catch.hpp>
#endif
