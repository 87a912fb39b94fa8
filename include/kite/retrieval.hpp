#pragma once
/// @file kite/retrieval.hpp
/// Everything in kite/retrieval: the flat vector index (FAISS-compatible files, .npy/.fvecs),
/// BM25 over an inverted index, TF-IDF / bag of words / one-hot, dense retrieval, rank fusion,
/// the retrieval pipeline, evaluation and data set loaders. The analyzers that turn text into
/// terms are in kite/text.hpp (link kite::text).

#include "kite/retrieval/bm25.hpp"
#include "kite/retrieval/concepts.hpp"
#include "kite/retrieval/datasets.hpp"
#include "kite/retrieval/dense.hpp"
#include "kite/retrieval/eval.hpp"
#include "kite/retrieval/faiss_io.hpp"
#include "kite/retrieval/flat_index.hpp"
#include "kite/retrieval/fusion.hpp"
#include "kite/retrieval/inverted_index.hpp"
#include "kite/retrieval/metric.hpp"
#include "kite/retrieval/one_hot.hpp"
#include "kite/retrieval/pipeline.hpp"
#include "kite/retrieval/ranking.hpp"
#include "kite/retrieval/tfidf.hpp"
#include "kite/retrieval/vector_io.hpp"
#include "kite/retrieval/vocabulary.hpp"
