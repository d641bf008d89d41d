// Reading a serialized onnx.TensorProto (the input_N.pb / output_N.pb files of ONNX's backend
// test data) into a Tensor.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "dynaprec/tensor.h"

namespace dynaprec {

/// Parses a serialized TensorProto: float, double, float16, bfloat16, int8/16/32/64, uint8 and
/// bool, from raw_data or the typed fields, into a new owning Tensor. Other element types
/// (string, uint16/32/64, complex, ...) throw Error(kUnsupported); a malformed message or data
/// that does not match the shape throws Error(kInvalidInput). `name` is used in messages.
Tensor onnx_read_tensor(std::span<const uint8_t> bytes, std::string_view name);
/// Reads and parses a TensorProto file (Error(kIo) when it cannot be read).
Tensor onnx_read_tensor_file(const std::string& path);

/// One node of a model as listed by onnx_list_nodes.
struct OnnxNodeRef {
  std::string domain;  ///< "" for the default domain
  std::string op;
  int64_t opset = 0;  ///< the model's opset for the node's domain (0 if not imported)
};
/// Every node of a model file, subgraphs included, without converting or checking anything
/// else: for tools that classify models the importer refuses (unsupported value types).
/// Throws Error(kIo) when the file cannot be read, Error(kInvalidInput) when it is not ONNX.
std::vector<OnnxNodeRef> onnx_list_nodes(const std::string& path);

}  // namespace dynaprec
