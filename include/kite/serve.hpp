#pragma once
/// @file kite/serve.hpp
/// Serving many requests from one decoder: requests and results, scheduling policies (static,
/// dynamic, continuous batching), automatic prefix caching, speculative decoding (prompt lookup,
/// draft model) and the engine that runs them (offline generate(), online submit()).

#include "kite/serve/engine.hpp"
#include "kite/serve/prefix_cache.hpp"
#include "kite/serve/request.hpp"
#include "kite/serve/scheduler.hpp"
#include "kite/serve/speculative.hpp"
