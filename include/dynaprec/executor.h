// The graph executor: runs a dynaprec graph (graph.h) on the CPU kernels, one portion at a time,
// each weighted layer at the precision a plan gives it. It is device-side code: the CPU device
// runs it in-process, the remote device's server runs it behind gRPC.
//
// At construction the executor compiles the model once:
//   - constant folding: every node whose inputs are all constants (initializers, Constant
//     nodes, Shape of a value whose shape is fully known) is evaluated and becomes a constant;
//   - fusion: Conv + BatchNormalization folded into the conv's weights; Conv/ConvTranspose/Gemm
//     followed by Relu/Clip/Sigmoid/HardSwish (when the conv output has no other use) run the
//     activation inside the layer;
//   - layers: every Conv, ConvTranspose, MatMul or Gemm with a constant weight and every LSTM
//     is a *layer* whose weights are stored per format on first use and cached.
// Everything but the layers' weight arithmetic runs in float32 (or the graph's integer types).
//
// Inputs are checked when bound: names, dtypes, ranks and known dims; a symbolic dim ("W")
// takes its size from the first input that has it and must agree everywhere else.
// Bad models and inputs throw Error(kInvalidInput/kUnsupported) naming the node or input.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "dynaprec/formats.h"
#include "dynaprec/graph.h"
#include "dynaprec/monitor.h"
#include "dynaprec/quality.h"
#include "dynaprec/tensor.h"

namespace dynaprec {

using TensorMap = std::map<std::string, Tensor>;
/// Layer name -> format. Layers not named run at the plan's default.
struct Plan {
  Format default_format = Format::kFp32;
  std::map<std::string, Format> layers;
  /// Graph inputs and outputs that cross the host/device boundary narrowed, with their transfer
  /// format (protocol.h encode_transfer); the executor itself ignores it.
  std::map<std::string, Format> io;
  Format at(const std::string& layer) const {
    auto it = layers.find(layer);
    return it == layers.end() ? default_format : it->second;
  }
};

/// A weighted layer of the compiled model.
struct LayerInfo {
  std::string name;  ///< the ONNX node name (unique)
  std::string op;    ///< "Conv", "ConvTranspose", "MatMul", "Gemm", "LSTM"
  /// Formats this layer can run at on this executor (every format of CONTRACT §1 for
  /// Conv/MatMul/Gemm/ConvTranspose/LSTM on the CPU).
  uint32_t formats = 0;
  int64_t weight_count = 0;  ///< number of weight values (excluding bias)
};

/// What one layer did in one portion.
struct LayerRun {
  int layer = -1;  ///< index into Executor::layers()
  Format format = Format::kFp32;
  int64_t macs = 0;
  uint64_t bytes = 0;       ///< weights in their stored format + activations read and written
  uint64_t bytes_fp32 = 0;  ///< the same work with fp32 weights
  double time_ms = 0;
  std::string fallback;  ///< why the plan's format was not used (empty when it was)
  /// The layer this one ran as one kernel with (a ConvTranspose pair), or -1: time_ms is then
  /// this layer's share of that kernel's time, by MACs.
  int chained_with = -1;
};

struct RunStats {
  std::vector<LayerRun> layers;  ///< in execution order, one per layer executed
  double time_ms = 0;
  /// When set before run(): time per op type (layers under their op name), for profiling.
  bool profile_ops = false;
  std::map<std::string, double> op_time_ms;
  /// When set before run() (and ExecutorOptions::monitor.rate > 0): one QualityReport per layer
  /// run, from the device-side monitor (monitor.h).
  bool monitor = false;
  std::vector<QualityReport> reports;
  double monitor_ms = 0;  ///< time spent in the monitor (included in time_ms)
};

struct ExecutorOptions {
  int threads = 0;   ///< <= 0: the default pool's size
  bool fuse = true;  ///< conv+bn+activation fusion (tests turn it off to compare)
  bool fold_constants = true;
  MonitorConfig monitor;  ///< sampling of the layers' outputs (RunStats::monitor turns it on)
};

class Executor {
 public:
  explicit Executor(const Model& model, ExecutorOptions opts = {});
  ~Executor();
  Executor(const Executor&) = delete;
  Executor& operator=(const Executor&) = delete;

  const std::vector<ValueInfo>& inputs() const;  ///< graph inputs still needed after folding
  const std::vector<ValueInfo>& outputs() const;
  const std::vector<LayerInfo>& layers() const;

  /// Runs the graph on `inputs` (every graph input by name) at `plan`; returns every graph
  /// output by name. `stats` (optional) receives per-layer records. Not reentrant: one run at a
  /// time per Executor.
  TensorMap run(const TensorMap& inputs, const Plan& plan = {}, RunStats* stats = nullptr);

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace dynaprec
