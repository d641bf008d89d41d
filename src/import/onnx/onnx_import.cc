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
#include "import/onnx/onnx_tensor_internal.h"

namespace dynaprec {
namespace {

[[noreturn]] void fail(std::string_view file, const std::string& what) {
  throw Error(ErrorKind::kInvalidInput, std::string(file) + ": " + what);
}

using onnx_internal::dtype_from_onnx;
using onnx_internal::tensor_from_onnx;

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

}  // namespace

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
