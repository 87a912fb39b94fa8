#pragma once
/// @file kite/kv.hpp
/// KV caches: contiguous (one reservation per sequence) and paged<BlockTokens> (block pool,
/// block tables, reference-counted sharing with copy-on-write, prefix sharing), with memory
/// accounting and an explicit out-of-blocks result. Their view(layer, seqs) is a
/// kite::attn::kv_view, read by kite::attn's decode and prefill kernels.

#include "kite/kv/block_allocator.hpp"
#include "kite/kv/concepts.hpp"
#include "kite/kv/contiguous.hpp"
#include "kite/kv/paged.hpp"
