#pragma once
/// @file kite/attn.hpp
/// Attention: head layouts (mha, mqa, gqa), the reference kernel (the oracle) and the flash
/// kernel (tiled, online softmax), the batch-invariant kernel (kite::serve) for prefill and
/// decode, over K/V tensors or any kv_view
/// (kite::kv's contiguous and paged caches).

#include "kite/attn/attention.hpp"
#include "kite/attn/concepts.hpp"
#include "kite/attn/flash.hpp"
#include "kite/attn/invariant.hpp"
#include "kite/attn/layout.hpp"
#include "kite/attn/reference.hpp"
#include "kite/attn/tensor_kv.hpp"
