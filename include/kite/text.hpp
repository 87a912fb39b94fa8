#pragma once
/// @file kite/text.hpp
/// Everything in kite/text: the analyzer concept, UTF-8 helpers, and the analyzers
/// (unicode_words, english, cjk_bigram, pretokenized). Needs utf8proc and libstemmer: link
/// kite::text, which defines KITE_WITH_TEXT.

#include "kite/text/cjk_bigram.hpp"
#include "kite/text/concepts.hpp"
#include "kite/text/english.hpp"
#include "kite/text/pretokenized.hpp"
#include "kite/text/unicode_words.hpp"
#include "kite/text/utf8.hpp"
