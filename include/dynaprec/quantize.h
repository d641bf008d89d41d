// Tensor-level quantization through the precision formats (CONTRACT §1), on the vectorized
// kernels of the CPU backend.
#pragma once

#include <optional>

#include "dynaprec/formats.h"
#include "dynaprec/tensor.h"

namespace dynaprec {

/// Quantizes a float32 tensor (any strides) to format `f`; the result is contiguous, of
/// dtype_of(f), with scales in quant(). `axis` selects per-channel int8 (negative counts from
/// the end); int4 always groups along the last axis (an `axis` naming the last axis is
/// accepted). Throws Error(kInvalidInput) for non-float32 input and for NaN/inf input to int8
/// or int4, Error(kUsage) for an axis out of range or an axis with a format that has none.
Tensor quantize(const Tensor& x, Format f, std::optional<int> axis = std::nullopt);

/// Dequantizes a tensor of any precision-format dtype back to float32.
Tensor dequantize(const Tensor& q);

/// quantize then dequantize: what `dynaprec quantize` writes.
Tensor round_trip(const Tensor& x, Format f, std::optional<int> axis = std::nullopt);

}  // namespace dynaprec
