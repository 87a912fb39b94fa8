#pragma once
/// @file kite/retrieval/ranking.hpp
/// The currency of the retrieval pipeline: a ranking is a best-first list of (score, doc id).
/// Retrievers produce rankings, fusion policies combine them, rerankers rescore a prefix.

#include <concepts>
#include <cstddef>
#include <span>
#include <string_view>
#include <vector>

#include "kite/core/config.hpp"
#include "kite/core/topk.hpp"
#include "kite/retrieval/concepts.hpp"

namespace kite::retrieval {

/// The reranker that does nothing: the pipeline skips its stage at compile time.
struct no_rerank {};

}  // namespace kite::retrieval
