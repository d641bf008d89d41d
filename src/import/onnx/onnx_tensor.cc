// ONNX TensorProto -> Tensor: the conversion the importer uses for initializers and tensor
// attributes (onnx_tensor_internal.h), and onnx_read_tensor for standalone .pb files.
#include "dynaprec/onnx_tensor.h"

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <iterator>
#include <limits>
#include <map>
#include <string>
#include <vector>

#include "dynaprec/error.h"
#include "import/onnx/onnx_tensor_internal.h"

namespace dynaprec {
namespace onnx_internal {
namespace {

[[noreturn]] void fail(std::string_view file, const std::string& what) {
  throw Error(ErrorKind::kInvalidInput, std::string(file) + ": " + what);
}

}  // namespace

// onnx.proto TensorProto.DataType -> our DType (onnx.proto: FLOAT = 1, UINT8 = 2, INT8 = 3,
// INT16 = 5, INT32 = 6, INT64 = 7, BOOL = 9, FLOAT16 = 10, DOUBLE = 11, BFLOAT16 = 16).
std::optional<DType> dtype_from_onnx(int32_t t) {
  switch (t) {
    case onnx::TensorProto::FLOAT:
      return DType::kF32;
    case onnx::TensorProto::UINT8:
      return DType::kU8;
    case onnx::TensorProto::INT8:
      return DType::kI8;
    case onnx::TensorProto::INT16:
      return DType::kI16;
    case onnx::TensorProto::INT32:
      return DType::kI32;
    case onnx::TensorProto::INT64:
      return DType::kI64;
    case onnx::TensorProto::BOOL:
      return DType::kBool;
    case onnx::TensorProto::FLOAT16:
      return DType::kF16;
    case onnx::TensorProto::DOUBLE:
      return DType::kF64;
    case onnx::TensorProto::BFLOAT16:
      return DType::kBF16;
    default:
      return std::nullopt;
  }
}

Tensor tensor_from_onnx(const onnx::TensorProto& t, std::string_view file) {
  const std::string what = "tensor '" + t.name() + "'";
  const auto dt = dtype_from_onnx(t.data_type());
  if (!dt) fail(file, what + " has unsupported data type " + std::to_string(t.data_type()));
  if (t.data_location() == onnx::TensorProto::EXTERNAL)
    fail(file, what + " keeps its data in an external file, which is not supported");
  Shape shape(t.dims().begin(), t.dims().end());
  Tensor out;
  try {
    out = Tensor::zeros(shape, *dt);
  } catch (const Error& e) {
    fail(file, what + ": " + e.what());
  }
  const size_t bytes = out.nbytes();
  const auto n = static_cast<size_t>(out.numel());
  if (t.has_raw_data()) {
    if (t.raw_data().size() != bytes)
      fail(file, what + " has " + std::to_string(t.raw_data().size()) +
                     " bytes of data, its shape " + shape_str(shape) + " needs " +
                     std::to_string(bytes));
    std::memcpy(out.data(), t.raw_data().data(), bytes);
    return out;
  }
  // Typed fields: float_data, int32_data (also int8/16, uint8, bool, float16, bfloat16 bits),
  // int64_data, double_data.
  auto need = [&](size_t have) {
    if (have != n)
      fail(file, what + " has " + std::to_string(have) + " values, its shape " + shape_str(shape) +
                     " needs " + std::to_string(n));
  };
  switch (*dt) {
    case DType::kF32:
      need(static_cast<size_t>(t.float_data_size()));
      std::copy(t.float_data().begin(), t.float_data().end(), out.data_as<float>());
      break;
    case DType::kI64:
      need(static_cast<size_t>(t.int64_data_size()));
      std::copy(t.int64_data().begin(), t.int64_data().end(), out.data_as<int64_t>());
      break;
    case DType::kF64:
      need(static_cast<size_t>(t.double_data_size()));
      std::copy(t.double_data().begin(), t.double_data().end(), out.data_as<double>());
      break;
    case DType::kI32:
      need(static_cast<size_t>(t.int32_data_size()));
      std::copy(t.int32_data().begin(), t.int32_data().end(), out.data_as<int32_t>());
      break;
    default: {  // narrow types stored one per int32
      need(static_cast<size_t>(t.int32_data_size()));
      const size_t es = bytes / std::max<size_t>(n, 1);
      auto* p = static_cast<uint8_t*>(out.data());
      for (size_t i = 0; i < n; ++i) {
        const auto v = static_cast<uint32_t>(t.int32_data(static_cast<int>(i)));
        std::memcpy(p + i * es, &v, es);  // little-endian: the low bytes
      }
    }
  }
  return out;
}

}  // namespace onnx_internal

Tensor onnx_read_tensor(std::span<const uint8_t> bytes, std::string_view name) {
  if (bytes.size() > static_cast<size_t>(std::numeric_limits<int>::max()))
    throw Error(ErrorKind::kInvalidInput,
                std::string(name) + ": tensor larger than 2 GiB (protobuf's limit)");
  onnx::TensorProto proto;
  if (!proto.ParseFromArray(bytes.data(), static_cast<int>(bytes.size())))
    throw Error(ErrorKind::kInvalidInput,
                std::string(name) + ": not a valid ONNX TensorProto (protobuf parse failed)");
  if (!onnx_internal::dtype_from_onnx(proto.data_type()))
    throw Error(ErrorKind::kUnsupported, std::string(name) + ": tensor '" + proto.name() +
                                             "' has unsupported data type " +
                                             std::to_string(proto.data_type()));
  return onnx_internal::tensor_from_onnx(proto, name);
}

namespace {

std::vector<uint8_t> read_file(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  if (!f) throw Error(ErrorKind::kIo, path + ": cannot open: " + std::strerror(errno));
  std::vector<uint8_t> bytes((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
  if (f.bad()) throw Error(ErrorKind::kIo, path + ": read error");
  return bytes;
}

void list_nodes(const onnx::GraphProto& g, const std::map<std::string, int64_t>& opsets,
                std::vector<OnnxNodeRef>& out) {
  for (const auto& n : g.node()) {
    OnnxNodeRef r;
    r.domain = n.domain() == "ai.onnx" ? "" : n.domain();
    r.op = n.op_type();
    const auto it = opsets.find(r.domain);
    r.opset = it == opsets.end() ? 0 : it->second;
    out.push_back(std::move(r));
    for (const auto& a : n.attribute()) {
      if (a.has_g()) list_nodes(a.g(), opsets, out);
      for (const auto& sub : a.graphs()) list_nodes(sub, opsets, out);
    }
  }
}

}  // namespace

Tensor onnx_read_tensor_file(const std::string& path) {
  return onnx_read_tensor(read_file(path), path);
}

std::vector<OnnxNodeRef> onnx_list_nodes(const std::string& path) {
  const std::vector<uint8_t> bytes = read_file(path);
  if (bytes.size() > static_cast<size_t>(std::numeric_limits<int>::max()))
    throw Error(ErrorKind::kInvalidInput, path + ": model larger than 2 GiB (protobuf's limit)");
  onnx::ModelProto proto;
  if (!proto.ParseFromArray(bytes.data(), static_cast<int>(bytes.size())))
    throw Error(ErrorKind::kInvalidInput, path + ": not a valid ONNX model");
  std::map<std::string, int64_t> opsets;
  for (const auto& o : proto.opset_import())
    opsets[o.domain() == "ai.onnx" ? "" : o.domain()] = o.version();
  std::vector<OnnxNodeRef> out;
  list_nodes(proto.graph(), opsets, out);
  return out;
}

}  // namespace dynaprec
