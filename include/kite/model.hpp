#pragma once
/// @file kite/model.hpp
/// Everything in kite/model: layers (embedding, linear over quantized formats, norms, MLPs),
/// transformer blocks and decoders assembled from policies, checkpoint loaders (safetensors +
/// config.json for Llama / Qwen2 / BLOOM / GPT-2, llama2.c), sampling and generation; the BERT
/// encoder (bert_encoder, read_bert, packed float32 GEMM panels and the double-precision oracle).
/// (The tokenizers live in kite/text: llama2c_tokenizer.hpp and bpe.hpp need only the standard
/// library; wordpiece.hpp needs kite::text, and so does kite/model/sentence_encoder.hpp, the
/// text -> embedding encoder, and kite/model/cross_encoder.hpp, which are therefore not included
/// here; the cross-encoder's classifier_head is.)

#include "kite/model/formats/bert_loader.hpp"
#include "kite/model/block.hpp"
#include "kite/model/classifier_head.hpp"
#include "kite/model/concepts.hpp"
#include "kite/model/config.hpp"
#include "kite/model/decoder.hpp"
#include "kite/model/encoder.hpp"
#include "kite/model/encoder_reference.hpp"
#include "kite/model/formats/gguf.hpp"
#include "kite/model/formats/gguf_model.hpp"
#include "kite/model/formats/gguf_tokenizer.hpp"
#include "kite/model/generate.hpp"
#include "kite/model/layers.hpp"
#include "kite/model/formats/llama2c.hpp"
#include "kite/model/formats/load.hpp"
#include "kite/model/formats/safetensors.hpp"
#include "kite/model/sampling.hpp"
#include "kite/model/weights.hpp"
