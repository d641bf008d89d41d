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

/// max |x| of a contiguous float32 tensor (convert.h amax's value: NaN above inf).
float max_abs(const Tensor& x);

/// quantize(x, f) for a per-tensor format (any but int4) where max |x| is known, finite and
/// (floats) within the format (`x_amax`, max_abs(x)'s value): the same codes and scale without a
/// pass of its own for them (the transfer's encode, protocol.h, checks the amax first).
Tensor quantize_per_tensor(const Tensor& x, Format f, float x_amax);

/// Dequantizes a tensor of any precision-format dtype back to float32.
Tensor dequantize(const Tensor& q);

// The per-tensor formats (the float formats and int8 without an axis) are encoded and decoded in
// pieces on the default pool's threads: the same bits however it is split (element-wise work).

/// quantize then dequantize: what `dynaprec quantize` writes.
Tensor round_trip(const Tensor& x, Format f, std::optional<int> axis = std::nullopt);

}  // namespace dynaprec
