// Quality reports: what the device-side monitor measures for one layer in one portion, and the
// only thing (besides outputs) that crosses back to the host. Fixed size, no allocation: the
// slots are like Transformer Engine's per-tensor amax/scale metadata (STYLE.md §4).
//
// Metric semantics (all computed on the *sampled* part of the layer's output, NaN when the
// metric does not apply or was not measured):
//   sqnr_db           10·log10(Σ ref² / Σ (ref - got)²) of the layer's output at its format
//                     against a higher-precision shadow (fp32 weights and fp32 input, the same
//                     input values) of the sampled rows/channels. +inf when identical.
//   pred_sqnr_db[f]   predicted SQNR of the layer's output if it ran at format f, from the
//                     weights' quantization noise at f (computed once per layer and format) and
//                     the input's statistics (amax, variance: the activation noise of f), combined
//                     as relative noise powers and calibrated by the measured sqnr_db at the
//                     current format. pred_sqnr_db[current] == sqnr_db when it was measured.
//   amax, variance    of the layer's output sample (fp32 values as produced).
//   entropy           Shannon entropy (nats) of probability outputs (rows that sum to 1 over the
//                     last axis: softmax), averaged over sampled rows.
//   kl                KL(ref ‖ got) in nats for probability outputs, averaged over sampled rows.
//   top1_agree        share of sampled rows whose argmax agrees with the shadow's.
//   saturated         count of input values that hit the format's range (int8/int4: the code
//                     ±max; fp8/fp16: ±max finite) in the sampled part.
//   underflow         count of nonzero inputs that quantize to 0.
//   nan_count, inf_count  in the output sample (a NaN or Inf spreads through the following
//                     layers, so the sample sees it; they decide an immediate raise).
//   custom[i]         user metrics registered by name (register_metric), in registration order.
#pragma once

#include <array>
#include <cmath>
#include <cstdint>
#include <functional>
#include <limits>
#include <span>
#include <string>
#include <vector>

#include "dynaprec/formats.h"

namespace dynaprec {

inline constexpr size_t kMaxCustomMetrics = 8;
inline constexpr float kNoMetric = std::numeric_limits<float>::quiet_NaN();

struct QualityReport {
  uint32_t layer = 0;  ///< index into the executor's layers()
  Format format = Format::kFp32;
  uint32_t sampled = 0;  ///< output values in the sample
  float sqnr_db = kNoMetric;
  std::array<float, kFormatCount> pred_sqnr_db{};
  float amax = kNoMetric, variance = kNoMetric, entropy = kNoMetric, kl = kNoMetric,
        top1_agree = kNoMetric;
  uint32_t saturated = 0, underflow = 0, nan_count = 0, inf_count = 0;
  std::array<float, kMaxCustomMetrics> custom{};
  QualityReport() {
    pred_sqnr_db.fill(kNoMetric);
    custom.fill(kNoMetric);
  }
  bool non_finite() const { return nan_count > 0 || inf_count > 0; }
};

/// A user metric over the sampled output: `ref` is the shadow (higher precision), `got` the
/// layer's output at its format, same length. Returns one number (NaN: not applicable).
using MetricFn = std::function<float(std::span<const float> ref, std::span<const float> got)>;

/// Registers a custom metric under `name` (at most kMaxCustomMetrics; a name registered twice
/// replaces the function). Process-wide; register before sessions start. Returns its slot.
size_t register_metric(const std::string& name, MetricFn fn);
/// Names of the registered metrics, in slot order.
std::vector<std::string> metric_names();
/// The function in `slot` (internal: the monitor calls it).
const MetricFn& metric_fn(size_t slot);
/// How many metrics are registered (cheap; the monitor asks every layer).
size_t custom_metric_count();

}  // namespace dynaprec
