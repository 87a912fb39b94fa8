#pragma once
/// @file kite/pos.hpp
/// Position encodings: sinusoidal and learned tables (added to embeddings), RoPE in the
/// rotate_half and interleaved conventions (applied to queries and keys), ALiBi slopes
/// (applied to attention scores by kite::attn), and none.

#include "kite/pos/alibi.hpp"
#include "kite/pos/concepts.hpp"
#include "kite/pos/learned.hpp"
#include "kite/pos/none.hpp"
#include "kite/pos/rope.hpp"
#include "kite/pos/sinusoidal.hpp"
