// Host/device negotiation and per-tensor metadata (DESIGN.md "One portion, end to end",
// STYLE.md §6). The same structs serve the in-process device and, serialized to protobuf, the
// remote one.
//
// Before each portion the host proposes a plan (a format per layer); the device answers with
// the agreed plan: each layer's format accepted, or countered with the nearest format it runs
// for the op in the quality order kQualityOrder (first the nearest better one, else the nearest
// worse one) and the reason. Every tensor that moves carries TensorMeta: name, format, dtype,
// shape, scales (per tensor, per channel with its axis, or fp16 per group with the group size),
// a CRC-32 of the bytes, and the portion's sequence number. A receiver verifies the metadata
// against the bytes before using them (verify_tensor): every field from a peer is checked and
// refused with Error(kInvalidInput) naming the tensor and the field; nothing from a peer is
// asserted on or used to size an allocation.
//
// TensorMeta, field by field (the protobuf message mirrors it; enum values are the wire values):
//   name        the tensor's name (a layer's weight, an input or output)
//   format      Format value (formats.h); kFp32 for plain dtypes (int64 ids, bool)
//   dtype       DType value (tensor.h); dtype_of(format) for precision formats
//   shape       dims, C order, elements contiguous
//   scales      int8: fp32 scales, one (axis -1) or one per channel along `axis`
//   scales_f16  int4: fp16 scale bits, one per group of `group_size` along the last axis,
//               row-major over (rows, groups per row)
//   axis        int8 per-channel axis, -1 per tensor (and for every other dtype)
//   group_size  int4: values per scale group (32); 0 otherwise
//   crc32       CRC-32 (IEEE, as zlib) over the element bytes as stored (little-endian, int4
//               rows packed and padded to whole bytes), then the scales as little-endian
//               float32, then scales_f16 as little-endian uint16
//   seq         the portion's sequence number (checked by the caller, not by verify_tensor)
//   bytes       element bytes + scale bytes
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "dynaprec/device.h"
#include "dynaprec/executor.h"
#include "dynaprec/formats.h"
#include "dynaprec/tensor.h"

namespace dynaprec {

/// Protocol version. A peer is accepted when the majors match and its minor is not newer.
inline constexpr uint32_t kProtocolMajor = 1;
inline constexpr uint32_t kProtocolMinor = 1;  // 1.1: Plan.io (transfer formats)
// The wire values of Format and OpKind are part of the protocol (formats.h, device.h).
static_assert(kFormatCount == 7 && kOpCount == 3, "bump kProtocolMinor when formats/ops grow");

/// Throws Error(kUnsupported) naming both versions unless a peer at `major`.`minor` is accepted
/// (same major, minor not newer than ours).
void check_peer_version(uint32_t major, uint32_t minor);

/// The formats by expected quality (SQNR of a typical layer), best first. Counter-offers move
/// along it: fp16 (10 mantissa bits) beats bf16 (7); int8 per channel (~38 dB) beats fp8e4m3
/// (~33 dB); fp8e5m2 (2 mantissa bits) beats only int4.
inline constexpr std::array<Format, kFormatCount> kQualityOrder = {
    Format::kFp32,    Format::kFp16,    Format::kBf16, Format::kInt8,
    Format::kFp8E4M3, Format::kFp8E5M2, Format::kInt4};
namespace detail {
constexpr bool quality_order_is_complete() {
  uint32_t seen = 0;
  for (Format f : kQualityOrder) seen |= 1u << static_cast<unsigned>(f);
  return seen == (1u << kFormatCount) - 1;
}
}  // namespace detail
static_assert(detail::quality_order_is_complete(), "kQualityOrder must list every format once");

struct TensorMeta {
  std::string name;
  Format format = Format::kFp32;  ///< for plain dtypes (int64 ids, bool): kFp32 and `dtype`
  DType dtype = DType::kF32;
  std::vector<int64_t> shape;
  std::vector<float> scales;         ///< int8 / fp8 scales
  std::vector<uint16_t> scales_f16;  ///< int4 group scales (fp16 bits)
  int32_t axis = -1;                 ///< int8 per-channel axis, -1 per tensor
  uint32_t group_size = 0;           ///< int4: 32
  uint32_t crc32 = 0;                ///< of the element bytes, then the scale bytes
  uint64_t seq = 0;                  ///< the portion's sequence number
  uint64_t bytes = 0;                ///< element bytes + scale bytes
};

/// CRC-32 (IEEE, as zlib) of `n` bytes, continuing from `crc` (0 to start). Runs on ISA-L's
/// carry-less-multiply kernels (libisal), several GB/s on one core.
uint32_t crc32(const void* data, size_t n, uint32_t crc = 0);

// Transfer formats (docs/protocol.md "Transfer formats"). A plan may name graph inputs and
// outputs in Plan::io with the format they cross the host/device boundary in; the in-process
// device and the remote one apply the same two functions, so their results are bit-identical.

/// The format activations travel in when the layers run at `f`: the format the device computes
/// activations in for such layers (fp8 layers take bf16 activations, int4 layers int8).
Format transfer_format(Format f);
/// `t` as it crosses at `f`: a float32 tensor narrowed to `f` (int8 and int4: one scale per
/// tensor / per group as CONTRACT §1). Unchanged: other dtypes, `f` = fp32, and tensors `f`
/// cannot hold (a NaN or inf anywhere, or a magnitude beyond `f`'s largest finite value); the
/// metadata then says fp32, and the receiver sees it.
Tensor encode_transfer(const Tensor& t, Format f);
/// What the receiver computes with: a narrowed tensor back to float32, anything else as it is.
Tensor decode_transfer(const Tensor& t);
/// The metadata of a contiguous tensor (checksum computed). Throws Error(kInvalidInput) for a
/// strided tensor (clone() it first).
TensorMeta tensor_meta(const Tensor& t, const std::string& name, uint64_t seq);
/// Throws Error(kInvalidInput, "tensor 'NAME': <field> ...") when `m` is malformed (unknown
/// format or dtype value, a format that does not store that dtype, scales that do not fit the
/// dtype and shape) or `t` does not match it: format, dtype, rank, shape, axis, group size,
/// scale counts, bytes, checksum (checked in that order). `t` must be contiguous.
/// `element_crc`, when given, is the CRC-32 of t's element bytes as the caller computed it while
/// receiving them (chunk by chunk, while each was in cache); the scales are hashed here.
void verify_tensor(const TensorMeta& m, const Tensor& t, const uint32_t* element_crc = nullptr);

struct LayerOffer {
  std::string layer;
  OpKind op = OpKind::kMatmul;
  Format format = Format::kFp32;
};

struct PlanProposal {
  uint64_t seq = 0;
  std::vector<LayerOffer> layers;
};

struct LayerAnswer {
  std::string layer;
  Format requested = Format::kFp32, agreed = Format::kFp32;
  std::string reason;  ///< empty when accepted as requested
};

struct PlanReply {
  uint64_t seq = 0;
  std::vector<LayerAnswer> layers;  ///< same order as the proposal
  bool all_accepted() const;
  Plan plan() const;  ///< the agreed plan (every layer named)
};

/// The device's side: for each layer, dev.supports(op, {format}) accepts it; otherwise the
/// nearest format the device supports for the op, first better then worse in kQualityOrder, is
/// agreed with the reason "<requested> not supported for <op> on <device>: <why>; using
/// <agreed>". Throws Error(kInvalidInput) for a proposal with unknown op or format values, an
/// unnamed layer or a layer named twice, Error(kUnsupported) naming the layer and op when the
/// device supports no format for it.
PlanReply answer_proposal(const Device& dev, const PlanProposal& p);

}  // namespace dynaprec
