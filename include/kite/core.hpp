#pragma once
/// @file kite/core.hpp
/// Everything in kite/core: buffers, matrix views, bf16/fp16, parallel_for, simd helpers,
/// errors, file I/O, checksums.

#include "kite/core/buffer.hpp"
#include "kite/core/checksum.hpp"
#include "kite/core/topk.hpp"
#include "kite/core/concepts.hpp"
#include "kite/core/config.hpp"
#include "kite/core/error.hpp"
#include "kite/core/half.hpp"
#include "kite/core/io.hpp"
#include "kite/core/matrix.hpp"
#include "kite/core/parallel.hpp"
#include "kite/core/simd.hpp"
#include "kite/core/tensor.hpp"
#include "kite/core/validate.hpp"
