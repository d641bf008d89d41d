// The remote device's logic without the transport (docs/protocol.md): sessions, model loading,
// negotiation, runs with replay of a retried sequence number, limits and idle time-outs. The
// gRPC service (server.cc) and the fuzz target (fuzz/fuzz_server.cc) both drive it.
#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <string>
#include <vector>

#include "dynaprec/runner.h"
#include "remote/wire.h"

namespace dynaprec::remote {

struct CoreOptions {
  int threads = 0;  ///< compute threads (<= 0: all cores)
  uint64_t max_chunk_bytes = kDefaultChunkBytes;
  uint64_t max_tensor_bytes = 1ull << 30;  ///< one tensor
  uint64_t max_call_bytes = 2ull << 30;    ///< all tensors of one call
  uint64_t max_model_bytes = 1ull << 30;
  uint32_t max_sessions_per_client = 4;
  uint32_t max_sessions = 64;  ///< all clients together
  uint32_t idle_timeout_s = 600;
  std::string model_dir;  ///< non-empty: LoadHeader.server_path allowed below it
};

/// A refusal with a gRPC-like code (the service maps it to a status).
class CallError : public std::runtime_error {
 public:
  enum Code { kNotFound, kExhausted, kPrecondition, kPermission };
  CallError(Code c, const std::string& what) : std::runtime_error(what), code_(c) {}
  Code code() const { return code_; }

 private:
  Code code_;
};

/// A run's reply: the result message and the output tensors as they go on the wire (encoded at
/// their transfer formats), kept for a replay of the same seq. write_outputs() cuts them into
/// chunks while writing.
struct RunReplyData {
  wire::RunResult result;
  uint64_t seq = 0;
  std::vector<std::pair<std::string, Tensor>> outputs;
};

class DeviceCore {
 public:
  explicit DeviceCore(CoreOptions o);
  ~DeviceCore();

  const CoreOptions& options() const { return opts_; }
  /// Throws CallError(kPrecondition) naming both versions when the peer is not accepted.
  wire::HelloReply hello(const wire::HelloRequest& r) const;
  /// Opens a session for `client` on a model (ONNX bytes, or header.server_path).
  wire::LoadReply load(const std::string& client, const wire::LoadHeader& h,
                       const std::string& bytes);
  wire::PlanReply negotiate(const std::string& client, const wire::PlanProposal& p);
  /// Checks that `client` owns the session (CallError(kNotFound) otherwise, the same answer as
  /// for a session that does not exist).
  void check_session(const std::string& client, const std::string& session_id);
  /// Runs one portion. A repeated seq (a retry) is answered from the cache without running.
  std::shared_ptr<const RunReplyData> run(const std::string& client, const wire::RunHeader& h,
                                          TensorMap inputs);
  void close(const std::string& client, const std::string& session_id);
  /// Closes sessions idle longer than the time-out; returns how many.
  size_t reap_idle();
  size_t session_count() const;
  std::string device_json() const;

 private:
  struct Session;
  std::shared_ptr<Session> find(const std::string& client, const std::string& id);
  CoreOptions opts_;
  mutable std::mutex mu_;
  std::map<std::string, std::shared_ptr<Session>> sessions_;
  std::mutex device_mu_;  // one run at a time on the device
  std::string device_json_;
};

/// Validates a client id from the metadata: 1 to 64 characters [0-9A-Za-z_-].
bool valid_client_id(const std::string& id);
/// Constant-time comparison (time depends only on the length of `expected`).
bool token_equal(const std::string& given, const std::string& expected);
/// 128 random bits as 32 hex digits.
std::string random_id();

}  // namespace dynaprec::remote
