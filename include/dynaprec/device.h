// The accelerator interface (DESIGN.md, STYLE.md §2): Registry -> Device -> Stream.
//
// A Device advertises what it can run as a plain capabilities struct and answers
// supports(op, formats) with nullopt (yes) or an Unsupported reason the CLI can print. Data the
// host hands over is copied into device-owned memory in the agreed format — that copy is the
// "transfer" whose bytes the runtime counts — and results come back as float32.
//
// Every virtual method says whether it is optional and what the default does. The CPU device is
// the first backend; a CUDA device and a remote (gRPC) device implement the same classes.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "dynaprec/conv.h"
#include "dynaprec/formats.h"
#include "dynaprec/matmul.h"
#include "dynaprec/tensor.h"

namespace dynaprec {

/// Operations a device may run. Values travel in the protocol: never renumber or reuse one.
enum class OpKind : uint8_t {
  kConvert = 0,  ///< fp32 <-> format conversion (transfers)
  kMatmul = 1,   ///< Y = X·Wᵀ (+ bias), include/dynaprec/matmul.h
  kConv2d = 2,   ///< 2-D convolution, NCHW
  kCount
};
inline constexpr size_t kOpCount = static_cast<size_t>(OpKind::kCount);
std::string_view op_name(OpKind op);

/// Why a device refuses an op/format combination. Values are stable (they travel).
enum class UnsupportedCode : uint8_t {
  kOpNotImplemented = 0,      ///< the device has no kernel for this op at all
  kFormatNotImplemented = 1,  ///< the op exists, but not for this format
  kIsaMissing = 2,            ///< the hardware lacks the instructions (or DYNAPREC_ISA caps them)
  kNotFaster = 3,             ///< runs, but no faster than a higher precision: not a step down
  kBadRequest = 4,            ///< malformed request (unknown op or format value)
};

struct Unsupported {
  UnsupportedCode code;
  std::string detail;  ///< one line naming the op, the format and what is missing
  std::string message() const;
};

/// Plain capabilities of a device; filled once when it is opened.
struct DeviceCaps {
  std::string name;                   ///< registry name, e.g. "cpu"
  std::string spec;                   ///< the spec it was opened with, e.g. "cpu:formats=fp32,int8"
  std::string description;            ///< e.g. the CPU's brand string
  std::vector<std::string> features;  ///< ISA features in force
  int threads = 1;                    ///< compute threads the device uses
  bool async = false;                 ///< streams return before work finishes (CPU: no)
  bool host_visible = true;  ///< device buffers are readable by the host directly (CPU: yes)
  /// Per op, the formats it runs: bit (1 << Format) set when supported.
  std::array<uint32_t, kOpCount> formats{};
  bool runs(OpKind op, Format f) const {
    return (formats[static_cast<size_t>(op)] >> static_cast<unsigned>(f)) & 1u;
  }
};

/// A tensor that lives on a device, in a format, with its metadata.
struct DeviceTensor {
  Format format = Format::kFp32;
  Shape shape;
  /// Device-owned storage. On host-visible devices a Tensor of dtype_of(format) with scales;
  /// other backends keep their own handle and leave this empty.
  Tensor host_view;
  std::shared_ptr<void> handle;  ///< backend-specific storage (optional)
  size_t bytes = 0;              ///< bytes the device holds: codes + scales
};

/// Weights of a matmul layer resident on a device.
struct DeviceWeights {
  MatmulWeights weights;  ///< on the CPU, the weights themselves
  std::shared_ptr<void> handle;
  size_t bytes = 0;
};

/// Weights of a conv2d layer resident on a device.
struct DeviceConvWeights {
  ConvWeights weights;  ///< on the CPU, the weights themselves
  std::shared_ptr<void> handle;
  size_t bytes = 0;
};

/// An ordered queue of work on one device.
class Stream {
 public:
  virtual ~Stream() = default;
  /// Required. Copies float32 host data into device memory in format `f` (quantizing on the
  /// way, CONTRACT §1); returns the device tensor. Its `bytes` is what crossed.
  virtual DeviceTensor upload(const Tensor& host_f32, Format f) = 0;
  /// Required. Stores a float32 [N, K] weight matrix on the device in format `f`.
  virtual DeviceWeights upload_weights(const Tensor& w_f32, Format f) = 0;
  /// Required. Y = X·Wᵀ + bias on the device; X float32 [M, K] device tensor, bias optional.
  /// Returns Y as a float32 device tensor [M, N].
  virtual DeviceTensor matmul(const DeviceTensor& x, const DeviceWeights& w,
                              const DeviceTensor* bias) = 0;
  /// Required. Stores float32 [OC, C/groups, KH, KW] conv weights on the device in format `f`.
  virtual DeviceConvWeights upload_conv_weights(const Tensor& w_f32, Format f) = 0;
  /// Required. 2-D convolution (include/dynaprec/conv.h) of a float32 NCHW device tensor;
  /// bias optional (OC values). Returns Y as a float32 device tensor.
  virtual DeviceTensor conv2d(const DeviceTensor& x, const DeviceConvWeights& w,
                              const DeviceTensor* bias, const Conv2dParams& p) = 0;
  /// Required. Copies a device tensor back to the host as float32; returns bytes that crossed.
  virtual Tensor download(const DeviceTensor& t, size_t* bytes = nullptr) = 0;
  /// Optional (default: nothing, for synchronous devices). Waits for queued work.
  virtual void synchronize() {}
};

class Device {
 public:
  virtual ~Device() = default;
  /// Required. The capabilities, filled when the device was opened.
  virtual const DeviceCaps& caps() const = 0;
  /// Required. nullopt when the device runs `op` with all `formats` (the layer's weight format
  /// first); otherwise why not. Never runs anything.
  virtual std::optional<Unsupported> supports(OpKind op, std::span<const Format> formats) const = 0;
  /// Required. A new stream on this device.
  virtual std::unique_ptr<Stream> open_stream() = 0;
  /// Optional (default: nullopt). Device memory in bytes, when known.
  virtual std::optional<uint64_t> memory_bytes() const { return std::nullopt; }
};

/// A device spec: the registry name, optionally followed by options, each `:key=value`:
///   "cpu"                        the CPU with everything it has
///   "cpu:formats=fp32,bf16,int8" the CPU running matmul and conv2d in these formats only
/// Which keys exist is up to the backend; each refuses the ones it does not know.
struct DeviceSpec {
  std::string name;
  std::vector<std::pair<std::string, std::string>> options;  ///< in spec order
  /// Splits a spec. Throws Error(kUsage) for an empty option, a key without '=' or an empty
  /// key or value, or a key given twice. Does not check the name or the keys.
  static DeviceSpec parse(std::string_view spec);
};

/// The devices this build knows, registered explicitly in one place (src/device/registry.cc).
class Registry {
 public:
  static Registry& instance();
  /// Names of the registered backends, e.g. {"cpu"}.
  std::vector<std::string> names() const;
  /// Opens a device by spec (a plain name or "name:key=value...", see DeviceSpec). Throws
  /// Error(kUnsupported) naming the known devices if the name is unknown, Error(kUsage) naming
  /// the valid keys or values for a malformed spec or an option the backend does not take.
  std::shared_ptr<Device> open(std::string_view spec, int threads = 0) const;

 private:
  Registry();
  struct Entry {
    std::string name;
    std::shared_ptr<Device> (*open)(const DeviceSpec& spec, int threads);
  };
  std::vector<Entry> entries_;
};

}  // namespace dynaprec
