// Where a Session's model runs (DESIGN.md: the device side of one portion): in-process on a
// local device (the graph executor on the CPU), or on a remote device over gRPC
// (`dynaprec serve`). Same calls, same results; the controller always stays with the Session on
// the host.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "dynaprec/executor.h"
#include "dynaprec/graph.h"
#include "dynaprec/protocol.h"

namespace dynaprec {

/// Bytes that crossed between host and device in one call.
struct Traffic {
  uint64_t to_device = 0, from_device = 0;
};

class ModelRunner {
 public:
  virtual ~ModelRunner() = default;
  virtual const std::vector<ValueInfo>& inputs() const = 0;  ///< still needed after folding
  virtual const std::vector<ValueInfo>& outputs() const = 0;
  virtual const std::vector<LayerInfo>& layers() const = 0;
  /// The device's description as JSON text (for the report).
  virtual std::string device_json() const = 0;
  /// The device's answer to a plan proposal (accept or counter per layer).
  virtual PlanReply negotiate(const PlanProposal& p) = 0;
  /// The formats worth having for layer `i` on this device, best quality first: what it runs
  /// for the op, without those that are not faster there than a better one.
  virtual std::vector<Format> ladder(size_t layer) const = 0;
  /// Runs one portion (sequence number `seq`, unique per portion and attempt) at the agreed
  /// plan. `stats` as Executor::run (quality reports when stats->monitor). `traffic` receives
  /// the bytes that crossed (tensors with their metadata; for a remote device, on the wire).
  virtual TensorMap run(const TensorMap& inputs, const Plan& plan, RunStats* stats, uint64_t seq,
                        Traffic* traffic = nullptr) = 0;
};

/// Opens the model on a local device: `spec` as Registry::open ("cpu", "cpu:formats=...").
std::unique_ptr<ModelRunner> open_local_runner(const Model& m, const std::string& spec,
                                               const ExecutorOptions& eo);

/// Opens a model file on a remote device; `url` is "grpc://HOST:PORT". Options (token, TLS)
/// ride in `options` as key=value strings understood by the remote backend.
using RemoteRunnerFactory = std::function<std::unique_ptr<ModelRunner>(
    const std::string& url, const std::string& model_path, const ExecutorOptions& eo,
    const std::map<std::string, std::string>& options)>;
/// Installs the remote backend (the gRPC library calls this; the runtime does not link gRPC).
void set_remote_runner_factory(RemoteRunnerFactory f);
/// The installed factory, or an empty function.
const RemoteRunnerFactory& remote_runner_factory();

}  // namespace dynaprec
