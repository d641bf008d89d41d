#include "device/cpu/cpu_device.h"

#include <cstring>

#include "dynaprec/conv.h"
#include "dynaprec/cpu_features.h"
#include "dynaprec/error.h"
#include "dynaprec/quantize.h"
#include "dynaprec/thread_pool.h"
#include "kernels/cpu/matmul_kernels.h"

namespace dynaprec {
namespace {

constexpr uint32_t bit(Format f) { return 1u << static_cast<unsigned>(f); }
constexpr uint32_t kAllFormats = (1u << kFormatCount) - 1;

std::string spec_disabled(std::string_view spec, OpKind op, Format f) {
  return std::string(op_name(op)) + " " + std::string(format_name(f)) +
         " is disabled by the device spec '" + std::string(spec) + "'";
}

class CpuStream final : public Stream {
 public:
  explicit CpuStream(const DeviceCaps& caps) : caps_(caps), threads_(caps.threads) {}

  DeviceTensor upload(const Tensor& host, Format f) override {
    DeviceTensor t;
    t.format = f;
    t.shape = host.shape();
    t.host_view =
        f == Format::kFp32 && host.dtype() == DType::kF32 ? host.clone() : quantize(host, f);
    t.bytes = t.host_view.nbytes() + t.host_view.scale_bytes();
    return t;
  }

  DeviceWeights upload_weights(const Tensor& w, Format f) override {
    require(OpKind::kMatmul, f);
    DeviceWeights d;
    d.weights = matmul_weights(w, f);
    d.bytes = d.weights.bytes();
    return d;
  }

  DeviceTensor matmul(const DeviceTensor& x, const DeviceWeights& w,
                      const DeviceTensor* bias) override {
    if (x.format != Format::kFp32 || x.shape.size() != 2 || x.shape[1] != w.weights.k)
      throw Error(ErrorKind::kInvalidInput,
                  "matmul: X must be float32 [M, " + std::to_string(w.weights.k) + "], got " +
                      std::string(format_name(x.format)) + " " + shape_str(x.shape));
    if (bias && (bias->format != Format::kFp32 || bias->host_view.numel() != w.weights.n))
      throw Error(ErrorKind::kInvalidInput, "matmul: bias must be float32 with N values");
    DeviceTensor y;
    y.format = Format::kFp32;
    y.shape = {x.shape[0], w.weights.n};
    y.host_view = Tensor::zeros(y.shape, DType::kF32);
    dynaprec::matmul(x.host_view.data_as<float>(), x.shape[0], w.weights,
                     bias ? bias->host_view.data_as<float>() : nullptr,
                     y.host_view.data_as<float>(), threads_);
    y.bytes = y.host_view.nbytes();
    return y;
  }

  DeviceConvWeights upload_conv_weights(const Tensor& w, Format f) override {
    require(OpKind::kConv2d, f);
    DeviceConvWeights d;
    d.weights = conv_weights(w, f);
    d.bytes = d.weights.matrix.bytes();
    return d;
  }

  DeviceTensor conv2d(const DeviceTensor& x, const DeviceConvWeights& w, const DeviceTensor* bias,
                      const Conv2dParams& p) override {
    if (x.format != Format::kFp32)
      throw Error(ErrorKind::kInvalidInput,
                  "conv2d: X must be float32, got " + std::string(format_name(x.format)));
    if (bias && (bias->format != Format::kFp32 || bias->host_view.numel() != w.weights.oc))
      throw Error(ErrorKind::kInvalidInput, "conv2d: bias must be float32 with OC values");
    DeviceTensor y;
    y.format = Format::kFp32;
    y.shape = conv2d_output_shape(x.shape, w.weights, p);
    y.host_view = Tensor::zeros(y.shape, DType::kF32);
    dynaprec::conv2d(x.host_view, w.weights, bias ? bias->host_view.data_as<float>() : nullptr, p,
                     y.host_view, threads_);
    y.bytes = y.host_view.nbytes();
    return y;
  }

  Tensor download(const DeviceTensor& t, size_t* bytes) override {
    if (bytes) *bytes = t.bytes;
    return t.format == Format::kFp32 ? t.host_view.clone() : dequantize(t.host_view);
  }

 private:
  // Weights in a format the device spec disabled are refused: the device really lacks them.
  void require(OpKind op, Format f) const {
    if (f < Format::kCount && !caps_.runs(op, f))
      throw Error(ErrorKind::kUnsupported, spec_disabled(caps_.spec, op, f));
  }

  DeviceCaps caps_;  // a copy: a stream may outlive its device
  int threads_;
};

// The formats a "formats=..." option keeps, as a bit mask; Error(kUsage) for bad names.
uint32_t parse_formats(std::string_view spec, std::string_view list) {
  uint32_t mask = 0;
  while (true) {
    const size_t comma = list.find(',');
    const std::string_view item = list.substr(0, comma);
    const auto f = format_from_name(item);
    if (!f)
      throw Error(ErrorKind::kUsage, "device spec '" + std::string(spec) + "': unknown format '" +
                                         std::string(item) +
                                         "' (valid: " + std::string(format_names_list()) + ")");
    mask |= bit(*f);
    if (comma == std::string_view::npos) break;
    list = list.substr(comma + 1);
  }
  if (!(mask & bit(Format::kFp32)))
    throw Error(ErrorKind::kUsage,
                "device spec '" + std::string(spec) +
                    "': formats must include fp32 (every layer needs a format to fall back to)");
  return mask;
}

class CpuDevice final : public Device {
 public:
  CpuDevice(const DeviceSpec& spec, int threads) {
    uint32_t enabled = kAllFormats;
    std::string canonical = "cpu";
    for (const auto& [key, value] : spec.options) {
      if (key == "formats") {
        enabled = parse_formats(spec_string(spec), value);
        canonical += ":formats=";
        for (const FormatInfo& r : kFormats)
          if (enabled & bit(r.format))
            canonical += std::string(canonical.back() == '=' ? "" : ",") + std::string(r.name);
      } else {
        throw Error(ErrorKind::kUsage, "device spec '" + spec_string(spec) + "': unknown option '" +
                                           key + "' (the cpu device takes: formats)");
      }
    }
    const CpuFeatures& f = cpu_features();
    if (threads > 0) ThreadPool::set_default_threads(threads);
    caps_.name = "cpu";
    caps_.spec = canonical;
    caps_.description = f.brand.empty() ? f.vendor : f.brand;
    caps_.features = f.names();
    caps_.threads = ThreadPool::default_pool().threads();
    caps_.formats[static_cast<size_t>(OpKind::kConvert)] = kAllFormats;
    // Every format has a matmul kernel on any CPU (portable Highway kernels at worst); a
    // "formats=" option keeps only some.
    caps_.formats[static_cast<size_t>(OpKind::kMatmul)] = enabled;
    caps_.formats[static_cast<size_t>(OpKind::kConv2d)] = enabled;
    disabled_ = kAllFormats & ~enabled;
  }

  const DeviceCaps& caps() const override { return caps_; }

  std::optional<Unsupported> supports(OpKind op, std::span<const Format> formats) const override {
    if (op >= OpKind::kCount)
      return Unsupported{UnsupportedCode::kBadRequest,
                         "op value " + std::to_string(static_cast<int>(op)) + " is unknown"};
    for (Format f : formats) {
      if (f >= Format::kCount)
        return Unsupported{UnsupportedCode::kBadRequest,
                           "format value " + std::to_string(static_cast<int>(f)) + " is unknown"};
      if (!caps_.runs(op, f) && op != OpKind::kConvert && (disabled_ & bit(f)))
        return Unsupported{UnsupportedCode::kFormatNotImplemented,
                           spec_disabled(caps_.spec, op, f)};
      if (!caps_.runs(op, f))
        return Unsupported{UnsupportedCode::kFormatNotImplemented,
                           std::string(op_name(op)) + " has no " + std::string(format_name(f)) +
                               " kernel on this CPU"};
    }
    return std::nullopt;
  }

  std::unique_ptr<Stream> open_stream() override { return std::make_unique<CpuStream>(caps_); }

 private:
  static std::string spec_string(const DeviceSpec& spec) {
    std::string s = spec.name;
    for (const auto& [k, v] : spec.options) s += ":" + k + "=" + v;
    return s;
  }

  DeviceCaps caps_;
  uint32_t disabled_ = 0;  ///< formats the device spec turned off for matmul and conv2d
};

}  // namespace

std::shared_ptr<Device> open_cpu_device(int threads) {
  return open_cpu_device(DeviceSpec{"cpu", {}}, threads);
}

std::shared_ptr<Device> open_cpu_device(const DeviceSpec& spec, int threads) {
  return std::make_shared<CpuDevice>(spec, threads);
}

}  // namespace dynaprec
