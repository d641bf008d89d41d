// Conversions between dynaprec's structs and the protobuf messages of proto/dynaprec.proto
// (docs/protocol.md), and the chunked tensor transfer. Everything that reads a message checks
// every field from the peer and throws Error(kInvalidInput) naming the field; nothing from the
// peer sizes an allocation before it was checked against the limits.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "dynaprec.pb.h"
#include "dynaprec/executor.h"
#include "dynaprec/graph.h"
#include "dynaprec/protocol.h"

namespace dynaprec::remote {

inline constexpr const char* kTokenKey = "x-dynaprec-token";
inline constexpr const char* kClientKey = "x-dynaprec-client";
/// Capabilities (HelloRequest/HelloReply.capabilities).
inline constexpr uint64_t kCapChunkedTensors = 1u << 0;  ///< TensorChunk transfer
inline constexpr uint64_t kCapServerPaths = 1u << 1;     ///< LoadHeader.server_path accepted
inline constexpr uint64_t kCapReplay = 1u << 2;          ///< a retried seq is answered once
inline constexpr uint64_t kCapMonitor = 1u << 3;         ///< quality reports
inline constexpr uint64_t kCapTransfer = 1u << 4;        ///< Plan.io (narrowed inputs/outputs)
inline constexpr uint64_t kOurCaps = kCapChunkedTensors | kCapReplay | kCapMonitor | kCapTransfer;

inline constexpr uint64_t kDefaultChunkBytes = 4u << 20;

void to_wire(wire::Version* v);

// --- tensors ---
/// Element bytes of a tensor of `shape` and `dtype` (int4 rows padded), without allocating;
/// throws Error(kInvalidInput) naming `name` on a negative dim or overflow.
uint64_t element_bytes(const std::vector<int64_t>& shape, DType dtype, const std::string& name);
void to_wire(const TensorMeta& m, wire::TensorMeta* w);
/// Range-checks the enums (format, dtype) and the scale counts against `max_tensor_bytes`.
TensorMeta from_wire(const wire::TensorMeta& w, uint64_t max_tensor_bytes);
/// Splits `t` (made contiguous) into chunks of at most `chunk_bytes` data bytes: fills `*c` with
/// each in turn (the same message, so its buffer is reused rather than allocated per chunk) and
/// calls `send(last)`, `last` being true for the tensor's final chunk. Returns the tensor's bytes
/// (elements + scales).
uint64_t encode_tensor(const Tensor& t, const std::string& name, uint64_t seq, uint64_t chunk_bytes,
                       wire::TensorChunk* c, const std::function<void(bool last)>& send);

/// Receives `count` tensors chunk by chunk, each checked against its metadata (verify_tensor).
class TensorAssembler {
 public:
  TensorAssembler(uint32_t count, uint64_t seq, uint64_t max_tensor_bytes,
                  uint64_t max_total_bytes);
  /// Consumes one chunk (throws Error(kInvalidInput) for anything out of order or malformed).
  void add(const wire::TensorChunk& c);
  bool done() const { return received_ == count_ && !open_; }
  /// The tensors by name (after done()).
  TensorMap take();
  uint64_t tensor_bytes() const { return tensor_bytes_; }

 private:
  uint32_t count_;
  uint64_t seq_, max_tensor_, max_total_;
  uint32_t received_ = 0;
  bool open_ = false;
  TensorMeta meta_;
  Tensor cur_;
  uint64_t filled_ = 0, expected_ = 0, tensor_bytes_ = 0;
  uint32_t crc_ = 0;  // of the element bytes received so far
  TensorMap out_;
  void finish_current();
};

// --- graph description ---
void to_wire(const ValueInfo& v, wire::ValueInfo* w);
ValueInfo from_wire(const wire::ValueInfo& w);
void to_wire(const LayerInfo& l, const std::vector<Format>& ladder, wire::LayerInfo* w);
LayerInfo from_wire(const wire::LayerInfo& w, std::vector<Format>* ladder);

// --- negotiation and plans ---
void to_wire(const PlanProposal& p, wire::PlanProposal* w);
PlanProposal from_wire(const wire::PlanProposal& w);
void to_wire(const PlanReply& r, wire::PlanReply* w);
PlanReply from_wire(const wire::PlanReply& w);
void to_wire(const Plan& p, wire::Plan* w);
Plan from_wire(const wire::Plan& w);

// --- run statistics and quality reports ---
void to_wire(const RunStats& s, wire::RunStats* w);
/// Fills the results of `s` (layers, times, reports); leaves its request flags alone.
void from_wire(const wire::RunStats& w, RunStats* s);
void to_wire(const QualityReport& q, wire::QualityReport* w);
QualityReport from_wire(const wire::QualityReport& w);

/// A format value from the wire, range-checked; `where` names the field in the message.
Format format_from_wire(uint32_t v, const std::string& where);

}  // namespace dynaprec::remote
