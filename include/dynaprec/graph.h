// dynaprec's own graph IR: what the ONNX importer emits (ONNX types stop at src/import/onnx/).
//
// A Graph is a topologically ordered list of Nodes over named values. Weights are Tensors in
// `initializers` (ONNX initializers and Constant nodes alike). Dimensions may be symbolic (an
// image width "W"), resolved when inputs are bound.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <variant>
#include <vector>

#include "dynaprec/tensor.h"

namespace dynaprec {

/// One dimension: a size, or a symbol (empty symbol and size -1: unknown).
struct Dim {
  int64_t size = -1;
  std::string symbol;
  bool known() const { return size >= 0; }
};

struct ValueInfo {
  std::string name;
  DType dtype = DType::kF32;
  std::vector<Dim> shape;
};

struct Graph;

/// A node attribute. Subgraphs (If's branches) are owned by the node.
using Attribute =
    std::variant<int64_t, float, std::string, std::vector<int64_t>, std::vector<float>,
                 std::vector<std::string>, Tensor, std::shared_ptr<Graph>>;

struct Node {
  std::string name;                 ///< unique in the graph (the importer names unnamed nodes)
  std::string op;                   ///< operator type, e.g. "Conv"
  std::string domain;               ///< "" for the default ONNX domain
  int64_t opset = 0;                ///< the opset version of the node's domain in this model
  std::vector<std::string> inputs;  ///< "" for an omitted optional input
  std::vector<std::string> outputs;
  std::map<std::string, Attribute> attrs;
};

struct Graph {
  std::string name;
  std::vector<ValueInfo> inputs;  ///< graph inputs that are not initializers
  std::vector<ValueInfo> outputs;
  std::vector<Node> nodes;  ///< topological order
  std::map<std::string, Tensor> initializers;
};

struct Model {
  Graph graph;
  std::map<std::string, int64_t> opsets;  ///< domain -> version
  std::string producer;
  int64_t ir_version = 0;
};

}  // namespace dynaprec
