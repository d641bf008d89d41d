// The ONNX importer: reads a model with the official ONNX library (protobuf, checker) and emits
// dynaprec's graph IR. Malformed or truncated files, models the checker rejects, and tensors of
// unsupported types are refused with Error(kInvalidInput) naming the file and the problem.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "dynaprec/graph.h"

namespace dynaprec {

/// Parses and checks a model held in memory; `name` is used in messages.
Model onnx_import(std::span<const uint8_t> bytes, std::string_view name);
/// Reads and imports a model file.
Model onnx_import_file(const std::string& path);

}  // namespace dynaprec
