// ONNX -> dynaprec IR. The only file that sees ONNX's protobuf types.
#include "dynaprec/onnx_import.h"

#include <onnx/checker.h>
#include <onnx/onnx_pb.h>

#include <array>
#include <cstring>
#include <fstream>
#include <limits>
#include <set>

#include "dynaprec/error.h"

namespace dynaprec {
namespace {

[[noreturn]] void fail(std::string_view file, const std::string& what) {
  throw Error(ErrorKind::kInvalidInput, std::string(file) + ": " + what);
}

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

ValueInfo value_from_onnx(const onnx::ValueInfoProto& v, std::string_view file) {
  ValueInfo info;
  info.name = v.name();
  if (!v.type().has_tensor_type()) fail(file, "value '" + v.name() + "' is not a tensor");
  const auto& tt = v.type().tensor_type();
  const auto dt = dtype_from_onnx(tt.elem_type());
  if (!dt)
    fail(file,
         "value '" + v.name() + "' has unsupported element type " + std::to_string(tt.elem_type()));
  info.dtype = *dt;
  if (tt.has_shape())
    for (const auto& d : tt.shape().dim()) {
      Dim dim;
      if (d.has_dim_value()) dim.size = d.dim_value();
      if (d.has_dim_param()) dim.symbol = d.dim_param();
      info.shape.push_back(dim);
    }
  return info;
}

Graph graph_from_onnx(const onnx::GraphProto& g, const std::map<std::string, int64_t>& opsets,
                      std::string_view file);

Attribute attribute_from_onnx(const onnx::AttributeProto& a,
                              const std::map<std::string, int64_t>& opsets, std::string_view file) {
  switch (a.type()) {
    case onnx::AttributeProto::INT:
      return a.i();
    case onnx::AttributeProto::FLOAT:
      return a.f();
    case onnx::AttributeProto::STRING:
      return a.s();
    case onnx::AttributeProto::INTS:
      return std::vector<int64_t>(a.ints().begin(), a.ints().end());
    case onnx::AttributeProto::FLOATS:
      return std::vector<float>(a.floats().begin(), a.floats().end());
    case onnx::AttributeProto::STRINGS:
      return std::vector<std::string>(a.strings().begin(), a.strings().end());
    case onnx::AttributeProto::TENSOR:
      return tensor_from_onnx(a.t(), file);
    case onnx::AttributeProto::GRAPH:
      return std::make_shared<Graph>(graph_from_onnx(a.g(), opsets, file));
    default:
      fail(file, "attribute '" + a.name() + "' has unsupported type " + std::to_string(a.type()));
  }
}

Graph graph_from_onnx(const onnx::GraphProto& g, const std::map<std::string, int64_t>& opsets,
                      std::string_view file) {
  Graph out;
  out.name = g.name();
  for (const auto& t : g.initializer())
    out.initializers.emplace(t.name(), tensor_from_onnx(t, file));
  for (const auto& v : g.input())
    if (!out.initializers.count(v.name())) out.inputs.push_back(value_from_onnx(v, file));
  for (const auto& v : g.output()) out.outputs.push_back(value_from_onnx(v, file));
  std::set<std::string> names;
  size_t unnamed = 0;
  for (const auto& n : g.node()) {
    Node node;
    node.op = n.op_type();
    node.domain = n.domain() == "ai.onnx" ? "" : n.domain();
    const auto it = opsets.find(node.domain);
    node.opset = it == opsets.end() ? 0 : it->second;
    node.name = n.name();
    while (node.name.empty() || names.count(node.name))
      node.name = node.op + "_" + std::to_string(unnamed++);
    names.insert(node.name);
    node.inputs.assign(n.input().begin(), n.input().end());
    node.outputs.assign(n.output().begin(), n.output().end());
    for (const auto& a : n.attribute())
      node.attrs.emplace(a.name(), attribute_from_onnx(a, opsets, file));
    out.nodes.push_back(std::move(node));
  }
  return out;
}

// The operators dynaprec has kernels for (src/kernels: conv, matmul, ops.h), default domain.
// Not yet: ConvTranspose, LSTM, If (the executor and those kernels are issue 4's work).
constexpr std::array<std::string_view, 49> kOps = {
    "Conv",
    "BatchNormalization",
    "MatMul",
    "Gemm",
    "Add",
    "Sub",
    "Mul",
    "Div",
    "Pow",
    "Sqrt",
    "Neg",
    "Log",
    "Exp",
    "Relu",
    "Sigmoid",
    "HardSigmoid",
    "HardSwish",
    "Clip",
    "Softmax",
    "ReduceMean",
    "ReduceSum",
    "ReduceMax",
    "GlobalAveragePool",
    "AveragePool",
    "MaxPool",
    "Resize",
    "Transpose",
    "Reshape",
    "Flatten",
    "Squeeze",
    "Unsqueeze",
    "Concat",
    "Slice",
    "Gather",
    "Shape",
    "Size",
    "Cast",
    "Identity",
    "Constant",
    "ConstantOfShape",
    "Equal",
    "Not",
    "Pad",
    "Tanh",
    "LeakyRelu",
    "Where",
    "Expand",
    "Tile",
    "Abs",
};

}  // namespace

bool onnx_op_supported(std::string_view domain, std::string_view op, int64_t opset) {
  if (!domain.empty() && domain != "ai.onnx") return false;
  if (opset < 7 || opset > 18) return false;  // the opsets our op table is written for
  for (std::string_view o : kOps)
    if (o == op) return true;
  return false;
}

static void collect_unsupported(const Graph& g, std::vector<std::string>& out) {
  for (const Node& n : g.nodes) {
    if (!onnx_op_supported(n.domain, n.op, n.opset))
      out.push_back(n.op + " (domain '" + (n.domain.empty() ? "ai.onnx" : n.domain) + "', opset " +
                    std::to_string(n.opset) + ") in node '" + n.name + "'");
    for (const auto& [k, a] : n.attrs)
      if (const auto* sub = std::get_if<std::shared_ptr<Graph>>(&a))
        collect_unsupported(**sub, out);
  }
}

std::vector<std::string> onnx_unsupported_nodes(const Model& m) {
  std::vector<std::string> out;
  collect_unsupported(m.graph, out);
  return out;
}

Model onnx_import(std::span<const uint8_t> bytes, std::string_view name) {
  if (bytes.size() > static_cast<size_t>(std::numeric_limits<int>::max()))
    fail(name, "model larger than 2 GiB (protobuf's limit)");
  onnx::ModelProto proto;
  if (!proto.ParseFromArray(bytes.data(), static_cast<int>(bytes.size())))
    fail(name, "not a valid ONNX model (protobuf parse failed: truncated or not ONNX)");
  if (!proto.has_graph()) fail(name, "the model has no graph");
  try {
    onnx::checker::check_model(proto);
  } catch (const std::exception& e) {
    std::string msg = e.what();
    if (auto nl = msg.find('\n'); nl != std::string::npos) msg.resize(nl);
    fail(name, "the ONNX checker rejects the model: " + msg);
  }
  Model m;
  m.producer = proto.producer_name();
  m.ir_version = proto.ir_version();
  for (const auto& o : proto.opset_import())
    m.opsets[o.domain() == "ai.onnx" ? "" : o.domain()] = o.version();
  m.graph = graph_from_onnx(proto.graph(), m.opsets, name);
  return m;
}

Model onnx_import_file(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  if (!f) fail(path, std::string("cannot open: ") + std::strerror(errno));
  std::vector<uint8_t> bytes((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
  if (f.bad()) fail(path, "read error");
  return onnx_import(bytes, path);
}

}  // namespace dynaprec
