#pragma once
/// @file kite/model.hpp
/// Everything in kite/model: layers (embedding, linear over quantized formats, norms, MLPs),
/// safetensors and llama2.c loaders, config.json parsing, sampling.
/// (The tokenizers live in kite/text: llama2c_tokenizer.hpp and bpe.hpp need only the standard
/// library; wordpiece.hpp needs kite::text.)

#include "kite/model/concepts.hpp"
#include "kite/model/config.hpp"
#include "kite/model/layers.hpp"
#include "kite/model/llama2c.hpp"
#include "kite/model/safetensors.hpp"
#include "kite/model/sampling.hpp"
