// ONNX TensorProto -> dynaprec Tensor, shared by the model importer (initializers, tensor
// attributes) and onnx_read_tensor (include/dynaprec/onnx_tensor.h). Private to src/import/onnx:
// the only files that see ONNX's protobuf types.
#pragma once

#include <onnx/onnx_pb.h>

#include <cstdint>
#include <optional>
#include <string_view>

#include "dynaprec/tensor.h"

namespace dynaprec::onnx_internal {

/// onnx.proto TensorProto.DataType -> our DType, or nullopt for types dynaprec does not hold.
std::optional<DType> dtype_from_onnx(int32_t t);

/// The tensor's values (raw_data or the typed fields) in a new owning Tensor. Throws
/// Error(kInvalidInput) naming `file` for unsupported types, external data and size mismatches.
Tensor tensor_from_onnx(const onnx::TensorProto& t, std::string_view file);

}  // namespace dynaprec::onnx_internal
