// The op table (STYLE.md §7): ONNX operators of the default domain keyed by name, with one
// implementation per opset version where semantics changed; the newest implementation at or
// below the model's opset is chosen. Every op here runs in float32 (or the graph's integer and
// bool types) on the host-visible CPU through include/dynaprec/ops.h (and matmul/conv in fp32
// where the weights are not constants). Weighted layers at a plan's precision (Conv, MatMul,
// Gemm, ConvTranspose, LSTM with constant weights) are run by the executor itself, not here;
// the If operator too (it runs subgraphs).
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "dynaprec/conv.h"
#include "dynaprec/conv_transpose.h"
#include "dynaprec/graph.h"
#include "dynaprec/lstm.h"
#include "dynaprec/tensor.h"

namespace dynaprec::exec {

/// Runs `node` on its inputs (nullptr for an omitted optional input; trailing omitted inputs
/// may be absent from the span). Returns one Tensor per node output (an omitted optional
/// output may get an empty Tensor). Throws Error(kInvalidInput) naming the node on bad
/// attributes, shapes or dtypes.
using OpFn = std::vector<Tensor> (*)(const Node& node, std::span<const Tensor* const> inputs);

/// The implementation for (domain, op) at `opset` (domain "" or "ai.onnx"), or nullptr.
OpFn find_op(std::string_view domain, std::string_view op, int64_t opset);

/// The domain of the nodes the executor's fusion makes (never accepted from a model: find_op
/// does not know it), and their implementations:
///   AddScaled(a, b) = Add(a, Mul(a, b))   (ops.h add_scaled; any dtype Add and Mul take)
///   AddResized(a, X, roi, scales, sizes) = Add(a, Resize(X, roi, scales, sizes)) with the
///     Resize's (opset 11+) attributes, or Add(Resize(...), a) with resized_first = 1
///     (ops.h add_resized); with a_scaled = 1, AddResized(a, s, X, ...) adds AddScaled(a, s)
///   ConcatResized(parts...) = Concat(..., Resize(X, roi, scales, sizes), ...) with attributes
///     concat_axis, part_inputs (node inputs per part), resized (1 for a Resize part, 2 for an
///     AddScaled(x, s) part) and the Resize's (opset 11+) attributes, shared by every resized
///     part (ops.h concat_resized)
inline constexpr std::string_view kFusedDomain = "dynaprec.fused";
OpFn find_fused_op(std::string_view op);

/// A fused op that also reports max |Y| where its pass took it (else -1; ops.h add_resized), for
/// the next int8 layer's scale.
using AmaxOpFn = std::vector<Tensor> (*)(const Node& node, std::span<const Tensor* const> inputs,
                                         float* y_amax);
/// AddResized and ConcatResized; nullptr for the others.
AmaxOpFn find_fused_amax_op(std::string_view op);

/// Ops the executor runs itself (If), which find_op does not list.
bool executor_builtin(std::string_view op);

/// Whether the executor can run (domain, op, opset): find_op or a builtin.
inline bool op_supported(std::string_view domain, std::string_view op, int64_t opset) {
  return find_op(domain, op, opset) != nullptr ||
         ((domain.empty() || domain == "ai.onnx") && executor_builtin(op));
}

/// Nodes of the graph (and its subgraphs) the executor cannot run, as "op (domain 'd', opset n)
/// in node 'name'".
std::vector<std::string> unsupported_nodes(const Graph& g);

// ---- Parameters of the layer ops (shared with the executor's layers) ---------------------------

/// Conv's attributes for input shape x and weight shape w (1-D: rank 3, run as H = 1), with
/// auto_pad resolved; checks kernel_shape, channels and groups.
Conv2dParams conv2d_params(const Node& n, const Shape& x, const Shape& w);
/// ConvTranspose's attributes for `spatial` (1 or 2) dims; 1-D is run as H = 1.
ConvTransposeParams conv_transpose_params(const Node& n, int spatial);
/// LSTM's attributes.
LstmParams lstm_params(const Node& n);

// ---- Attribute access with ONNX defaults (shared by the executor) ----------------------------

int64_t attr_int(const Node& n, const std::string& name, int64_t def);
float attr_float(const Node& n, const std::string& name, float def);
std::string attr_string(const Node& n, const std::string& name, const std::string& def);
std::vector<int64_t> attr_ints(const Node& n, const std::string& name,
                               const std::vector<int64_t>& def = {});
std::vector<float> attr_floats(const Node& n, const std::string& name,
                               const std::vector<float>& def = {});
std::vector<std::string> attr_strings(const Node& n, const std::string& name,
                                      const std::vector<std::string>& def = {});
bool has_attr(const Node& n, const std::string& name);

}  // namespace dynaprec::exec
