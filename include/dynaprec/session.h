// The host-side runtime (DESIGN.md "One portion, end to end"): a Session loads a model onto a
// device, runs a stream portion by portion at a plan, and records every portion in a Report
// (CONTRACT §3).
//
// Streams (CONTRACT §2 `dynaprec run`): the first axis of every streamed input is the stream;
// portion i is samples [i*P, (i+1)*P) (the last portion may be shorter). Constant inputs are
// given whole to every portion; carried state feeds output OUT of portion i as input IN of
// portion i+1 (first value: a constant of that name, or zeros of IN's declared shape).
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "dynaprec/controller.h"
#include "dynaprec/executor.h"
#include "dynaprec/graph.h"
#include "dynaprec/monitor.h"

namespace dynaprec {

inline PolicyConfig static_policy() {
  PolicyConfig p;
  p.kind = PolicyKind::kStatic;
  return p;
}

struct SessionOptions {
  std::string device = "cpu";  ///< "cpu", "cpu:formats=...", or "grpc://HOST:PORT"
  std::map<std::string, std::string> device_options;  ///< remote: token_file, tls_ca, ...
  int threads = 0;                                    ///< <= 0: all cores
  int64_t portion = 1;
  Plan plan;                                               ///< static plan (default fp32)
  std::map<std::string, Format> pins;                      ///< layers kept at a format always
  TensorMap consts;                                        ///< inputs given whole to every portion
  std::vector<std::pair<std::string, std::string>> carry;  ///< (output OUT, input IN)
  bool profile_ops = false;  ///< record time per op type in PortionReport::op_time_ms
  /// The policy: static (at `plan`), seed or dynamic (controller.h).
  PolicyConfig policy = static_policy();
  MonitorConfig monitor;  ///< rate 0: off (the dynamic and seed policies need it on)
  /// Share of portions also run in fp32 to measure output_sqnr_db (the canary). Negative: the
  /// policy's default (static: none; seed, dynamic: 1/4 and the first portion; --guarantee:
  /// every portion).
  double canary_rate = -1;
  /// The format streamed float32 inputs and outputs cross the host/device boundary in
  /// (protocol.h encode_transfer; carried state and constants stay as they are). Unset: the
  /// static policy's transfer_format(plan.default_format) — an int8 run moves int8 tensors —
  /// and fp32 for the seed and dynamic policies. The fp32 canary always crosses in fp32.
  std::optional<Format> transfer;
};

/// A per-layer precision change, as logged in the report.
struct SwitchRecord {
  std::string layer;
  Format from = Format::kFp32, to = Format::kFp32;
  std::string reason;
};

/// Metrics by name, in name order: a sorted vector, not a node-based map (the report holds one
/// per layer and portion; building ~10 map nodes per layer cost more than the monitor's 5 %
/// budget allows on a 5 ms portion).
class MetricMap {
 public:
  using value_type = std::pair<std::string, double>;
  using const_iterator = std::vector<value_type>::const_iterator;

  /// The value of `name`, inserted as 0 if absent.
  double& operator[](std::string_view name);
  const_iterator find(std::string_view name) const;
  bool contains(std::string_view name) const { return find(name) != end(); }
  /// The value of `name`; throws std::out_of_range if absent.
  double at(std::string_view name) const;
  const_iterator begin() const { return items_.begin(); }
  const_iterator end() const { return items_.end(); }
  size_t size() const { return items_.size(); }
  bool empty() const { return items_.empty(); }
  void reserve(size_t n) { items_.reserve(n); }
  friend bool operator==(const MetricMap&, const MetricMap&) = default;

 private:
  std::vector<value_type> items_;
};

/// One layer in one portion (CONTRACT §3 "layers").
struct LayerReport {
  std::string name, op;
  Format precision = Format::kFp32;
  MetricMap metrics;
  uint64_t bytes = 0, bytes_fp32 = 0;
  int64_t macs = 0;
  double time_ms = 0;
  std::string fallback;
  /// The layer this one ran as one kernel with (its time_ms then a MAC share of that kernel's),
  /// or empty.
  std::string chained_with;
};

struct PortionReport {
  int64_t index = 0;
  double time_ms = 0;
  uint64_t bytes_to_device = 0, bytes_from_device = 0;
  std::optional<double> output_sqnr_db;
  std::vector<LayerReport> layers;
  std::map<std::string, double> op_time_ms;      ///< with SessionOptions::profile_ops
  bool canary = false;                           ///< also run in fp32 (output_sqnr_db measured)
  int reruns = 0;                                ///< --guarantee re-runs at higher precision
  double monitor_ms = 0, canary_ms = 0;          ///< included in time_ms
  std::map<std::string, double> output_metrics;  ///< kl, top1_agree, entropy (probabilities)
  std::vector<SwitchRecord> switches;            ///< decided after this portion (for the next)
  std::vector<std::string> negotiation;          ///< counter-offers the device made for it
};

/// Energy per operation and per byte moved, by precision: a model, not a measurement.
struct EnergyModel {
  double pj_per_mac[kFormatCount];  ///< multiply + accumulate at each format
  double pj_per_byte = 0;           ///< DRAM traffic
  std::string source;
  static EnergyModel defaults();
  /// The defaults overridden from a JSON file {"pj_per_mac": {"fp32": 4.6, "int8": 0.3, ...},
  /// "pj_per_byte": 160, "source": "..."} (every key optional; formats not named keep their
  /// default). Throws Error kInvalidInput (exit 2) with a one-line message on a bad file.
  static EnergyModel from_file(const std::string& path);
};

struct Report {
  std::string model;
  std::string device_json = "{}";  ///< the device's description, as JSON text
  std::string policy_json = "{}";  ///< the policy's name and parameters, as JSON text
  std::vector<PortionReport> portions;
  EnergyModel energy = EnergyModel::defaults();

  /// The whole report as JSON text (CONTRACT §3), summary computed from the portions.
  std::string to_json(int indent = 1) const;
  void write(const std::string& path) const;
  /// Per-layer precision changes between consecutive portions, summed over layers.
  int64_t switches() const;
};

class Session {
 public:
  /// Loads the model file onto the device named in `opts`.
  Session(const std::string& model_path, SessionOptions opts);
  Session(const Model& model, std::string name, SessionOptions opts);
  ~Session();

  const std::vector<ValueInfo>& inputs() const;  ///< every model input
  const std::vector<ValueInfo>& outputs() const;
  const std::vector<LayerInfo>& layers() const;
  /// Inputs that are streamed: not constants and not carried.
  std::vector<std::string> streamed_inputs() const;

  /// Runs one portion (streamed inputs only; constants and carried state are added) and
  /// appends it to the report. Returns every model output.
  TensorMap run_portion(const TensorMap& streamed);
  /// Splits the streamed inputs into portions, runs them in order and concatenates each output
  /// along axis 0.
  TensorMap run_stream(const TensorMap& streamed);
  /// Forgets carried state (the next portion starts from the initial state again).
  void reset_state();

  Report& report();
  const Report& report() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace dynaprec
