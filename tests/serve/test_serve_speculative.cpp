#include "kite_test.hpp"
