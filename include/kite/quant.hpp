#pragma once
/// @file kite/quant.hpp
/// Everything in kite/quant: packed weight formats, quantization methods (absmax, zero_point,
/// llm_int8, gptq, awq, dense f32/bf16), GEMV/GEMM kernels with their oracles, and the on-disk
/// format.

#include "kite/quant/act_int8.hpp"
#include "kite/quant/arch.hpp"
#include "kite/quant/awq.hpp"
#include "kite/quant/concepts.hpp"
#include "kite/quant/format.hpp"
#include "kite/quant/ggml.hpp"
#include "kite/quant/ggml_a8.hpp"
#include "kite/quant/ggml_panel.hpp"
#include "kite/quant/ggml_types.hpp"
#include "kite/quant/gptq.hpp"
#include "kite/quant/grid.hpp"
#include "kite/quant/kernels.hpp"
#include "kite/quant/llm_int8.hpp"
#include "kite/quant/packed_f32.hpp"
#include "kite/quant/packed_i8.hpp"
#include "kite/quant/quantize.hpp"
#include "kite/quant/reference.hpp"
#include "kite/quant/rtn.hpp"
#include "kite/quant/serialize.hpp"
