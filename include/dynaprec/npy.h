// NumPy .npy reader and writer (format versions 1.0, 2.0 and 3.0; C order; little-endian).
//
// Supported dtypes: float32 (<f4), float16 (<f2), float64 (<f8), int8 (|i1), int16 (<i2),
// int32 (<i4), int64 (<i8), uint8 (|u1), bool (|b1). Fortran order, big-endian data, unknown
// dtypes, truncated or lying headers, trailing bytes after the data, and shapes whose byte size
// overflows are refused with Error(kInvalidInput) whose message names the file and the problem.
// Reading never crashes and never allocates more than the input's size (plus a small header).
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "dynaprec/tensor.h"

namespace dynaprec {

/// Parses a whole .npy file held in memory. `name` is used in error messages.
Tensor npy_parse(std::span<const uint8_t> bytes, std::string_view name);
/// Reads and parses a .npy file.
Tensor npy_read(const std::string& path);

/// Serializes a tensor (any strides; written in C order) as .npy, version 1.0 when the header
/// fits, else 2.0. The header is padded so that the data starts at a multiple of 64 bytes.
/// Throws Error(kUnsupported) for dtypes .npy cannot hold (bf16, fp8, int4).
std::vector<uint8_t> npy_serialize(const Tensor& t);
/// Writes `t` to `path` (atomically: a temporary file renamed into place).
void npy_write(const std::string& path, const Tensor& t);

}  // namespace dynaprec
