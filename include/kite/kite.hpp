#pragma once
/// @file kite/kite.hpp
/// Umbrella header: includes every area of kite. Areas that need compiled libraries
/// (kite/text's analyzers and the WordPiece tokenizer: utf8proc, libstemmer; the sentence
/// encoder, which tokenizes with WordPiece) are included only when KITE_WITH_TEXT is defined,
/// which linking kite::text does. Including one area's header (kite/retrieval.hpp,
/// kite/model.hpp, ...) or single headers compiles faster.

#include "kite/core.hpp"
#include "kite/pos.hpp"
#include "kite/attn.hpp"
#include "kite/kv.hpp"
#include "kite/quant.hpp"
#include "kite/model.hpp"
#include "kite/serve.hpp"
#include "kite/retrieval.hpp"
#include "kite/train.hpp"
#include "kite/text/bpe.hpp"
#include "kite/text/llama2c_tokenizer.hpp"

#if defined(KITE_WITH_TEXT)
#include "kite/text.hpp"
#include "kite/text/wordpiece.hpp"
#include "kite/model/sentence_encoder.hpp"
#endif
