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

std::shared_ptr<Device> Registry::open(std::string_view name, int threads) const {
  std::string known;
  for (const Entry& e : entries_) {
    if (e.name == name) return e.open(threads);
    known += (known.empty() ? "" : ", ") + e.name;
  }
  throw Error(ErrorKind::kUnsupported,
              "unknown device '" + std::string(name) + "' (this build has: " + known + ")");
}

}  // namespace dynaprec
