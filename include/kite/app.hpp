#pragma once
/// @file kite/app.hpp
/// The application layer (link kite::app: SQLite 3, RE2, utf8proc): retrieval-augmented
/// generation (rag<Retriever, Generator, Cache, Validator, Log>, prompt assembly within a token
/// budget), LLM caches persisted in SQLite (exact, semantic, tiered), validation rules (RE2
/// block lists and patterns, PII masks, length, language, topics, an LLM judge) and the
/// exchange log with its reader.

#include "kite/app/exchange_log.hpp"
#include "kite/app/judge.hpp"
#include "kite/app/llm_cache.hpp"
#include "kite/app/prompt.hpp"
#include "kite/app/rag.hpp"
#include "kite/app/sqlite.hpp"
#include "kite/app/validate.hpp"
