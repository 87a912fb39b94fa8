#pragma once
/// @file kite/kite.hpp
/// Umbrella header: includes every area of kite. Areas that need compiled libraries
/// (kite/text: utf8proc, libstemmer) are included only when KITE_WITH_TEXT is defined,
/// which linking kite::text does.

#include "kite/core.hpp"
