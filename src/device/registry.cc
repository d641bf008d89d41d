// The device registry: every backend is registered here, explicitly, one line each.
#include <string>

#include "device/cpu/cpu_device.h"
#include "dynaprec/device.h"
#include "dynaprec/error.h"

namespace dynaprec {

std::string_view op_name(OpKind op) {
  switch (op) {
    case OpKind::kConvert:
      return "convert";
    case OpKind::kMatmul:
      return "matmul";
    case OpKind::kConv2d:
      return "conv2d";
    case OpKind::kCount:
      break;
  }
  return "?";
}

std::string Unsupported::message() const {
  static constexpr std::string_view kCodes[] = {"op not implemented", "format not implemented",
                                                "instructions missing", "not faster",
                                                "bad request"};
  const auto i = static_cast<size_t>(code);
  return std::string(i < std::size(kCodes) ? kCodes[i] : "unknown") + ": " + detail;
}

DeviceSpec DeviceSpec::parse(std::string_view spec) {
  DeviceSpec d;
  const size_t colon = spec.find(':');
  d.name = std::string(spec.substr(0, colon));
  if (colon == std::string_view::npos) return d;
  std::string_view rest = spec.substr(colon + 1);
  const auto bad = [&](const std::string& why) {
    return Error(ErrorKind::kUsage, "device spec '" + std::string(spec) + "': " + why +
                                        " (expected name[:key=value]...)");
  };
  while (true) {
    const size_t next = rest.find(':');
    const std::string_view opt = rest.substr(0, next);
    const size_t eq = opt.find('=');
    if (opt.empty()) throw bad("empty option");
    if (eq == std::string_view::npos) throw bad("option '" + std::string(opt) + "' has no '='");
    std::string key(opt.substr(0, eq)), value(opt.substr(eq + 1));
    if (key.empty() || value.empty())
      throw bad("option '" + std::string(opt) + "' needs a key and a value");
    for (const auto& [k, v] : d.options)
      if (k == key) throw bad("option '" + key + "' given twice");
    d.options.emplace_back(std::move(key), std::move(value));
    if (next == std::string_view::npos) break;
    rest = rest.substr(next + 1);
  }
  return d;
}

Registry::Registry() {
  entries_.push_back({"cpu", &open_cpu_device});
  // Later: #ifdef DYNAPREC_WITH_CUDA entries_.push_back({"cuda", &open_cuda_device}); #endif
}

Registry& Registry::instance() {
  static Registry r;
  return r;
}

std::vector<std::string> Registry::names() const {
  std::vector<std::string> v;
  for (const Entry& e : entries_) v.push_back(e.name);
  return v;
}

std::shared_ptr<Device> Registry::open(std::string_view spec, int threads) const {
  const std::string_view name = spec.substr(0, spec.find(':'));
  std::string known;
  for (const Entry& e : entries_) {
    if (e.name == name) return e.open(DeviceSpec::parse(spec), threads);
    known += (known.empty() ? "" : ", ") + e.name;
  }
  throw Error(ErrorKind::kUnsupported,
              "unknown device '" + std::string(name) + "' (this build has: " + known + ")");
}

}  // namespace dynaprec
