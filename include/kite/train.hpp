#pragma once
/// @file kite/train.hpp
/// Training the small encoders kite runs, on a CPU (work in progress; see kite/train/*.hpp):
/// forward and backward passes of the encoder's parts checked against finite differences, a
/// trainable BERT encoder (bert_model), the multiple-negatives-ranking loss, AdamW with a linear
/// warm-up / decay schedule and gradient clipping, the trainers built on them (mnr_trainer:
/// fine-tuning on pairs; distil_trainer: a smaller student learning a teacher's embeddings) and
/// save_bert. Nothing below kite/train depends on it.

#include "kite/train/bert.hpp"
#include "kite/train/checkpoint.hpp"
#include "kite/train/cross.hpp"
#include "kite/train/distil.hpp"
#include "kite/train/grad.hpp"
#include "kite/train/loss.hpp"
#include "kite/train/mnr.hpp"
#include "kite/train/optim.hpp"
#include "kite/train/step.hpp"
