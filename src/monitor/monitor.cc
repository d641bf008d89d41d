// The quality monitor's arithmetic (include/dynaprec/monitor.h).
#include "dynaprec/monitor.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include "dynaprec/matmul.h"
#include "dynaprec/quantize.h"
#include "dynaprec/tensor.h"

namespace dynaprec {

std::array<double, kFormatCount> weight_noise(const float* w, int64_t n, int64_t k) {
  std::array<double, kFormatCount> rho{};
  Tensor wt = Tensor::borrow(const_cast<float*>(w), {n, k}, DType::kF32);
  double sig = 0;
  for (int64_t i = 0; i < n * k; ++i) sig += static_cast<double>(w[i]) * w[i];
  for (size_t fi = 0; fi < kFormatCount; ++fi) {
    const auto f = static_cast<Format>(fi);
    if (f == Format::kFp32 || sig == 0) {
      rho[fi] = 0;
      continue;
    }
    // Special values first: int8/int4 refuse non-finite weights (quantize throws), and such a
    // layer is not a candidate for them.
    try {
      const MatmulWeights mw = matmul_weights(wt, f);
      const Tensor back = dequantize(mw.data);
      const float* b = back.data_as<float>();
      double err = 0;
      for (int64_t i = 0; i < n * k; ++i) {
        const double d = static_cast<double>(w[i]) - b[i];
        err += d * d;
      }
      rho[fi] = std::isfinite(err) ? err / sig : std::numeric_limits<double>::infinity();
    } catch (const std::exception&) {
      rho[fi] = std::numeric_limits<double>::infinity();
    }
  }
  return rho;
}

double activation_noise(Format f, double amax, double mean_square) {
  if (!(mean_square > 0)) return 0;
  switch (f) {
    case Format::kFp32:
      return 0;
    case Format::kBf16:
    case Format::kFp8E4M3:  // fp8 weights run against bf16 activations (matmul.h)
    case Format::kFp8E5M2: {
      const double u = std::ldexp(1.0, -8);
      return u * u / 3;
    }
    case Format::kFp16: {
      if (amax > 65504) return std::numeric_limits<double>::infinity();  // overflow to inf
      const double u = std::ldexp(1.0, -11);
      return u * u / 3;
    }
    case Format::kInt8:
    case Format::kInt4: {  // int8 activations, one scale per call
      const double step = amax / 127;
      return step * step / 12 / mean_square;
    }
    case Format::kCount:
      break;
  }
  return 0;
}

double predicted_sqnr_db(double rho_w, double rho_x) {
  const double rho = rho_w + rho_x;
  if (rho <= 0) return std::numeric_limits<double>::infinity();
  return -10 * std::log10(rho);
}

void SampleStats::add(float ref, float got) {
  ++n_;
  if (std::isnan(got)) {
    ++nan_;
    return;
  }
  if (std::isinf(got)) {
    ++inf_;
    return;
  }
  const double r = ref, d = static_cast<double>(ref) - got;
  sig_ += r * r;
  err_ += d * d;
  sum_ += got;
  sumsq_ += static_cast<double>(got) * got;
  amax_ = std::max(amax_, std::fabs(got));
}

void SampleStats::finish(QualityReport& r) const {
  r.sampled = n_;
  r.nan_count += nan_;
  r.inf_count += inf_;
  const uint32_t finite = n_ - nan_ - inf_;
  if (finite == 0) return;
  // Special values in order: a sample with NaN/Inf has no meaningful SQNR (it is reported by the
  // counts); an all-zero reference with zero error is exact (+inf); with error, -inf.
  if (nan_ || inf_) {
    r.sqnr_db = -std::numeric_limits<float>::infinity();
  } else if (err_ == 0) {
    r.sqnr_db = std::numeric_limits<float>::infinity();
  } else {
    r.sqnr_db = static_cast<float>(sig_ > 0 ? 10 * std::log10(sig_ / err_)
                                            : -std::numeric_limits<double>::infinity());
  }
  r.amax = amax_;
  const double mean = sum_ / finite;
  r.variance = static_cast<float>(std::max(0.0, sumsq_ / finite - mean * mean));
}

uint32_t sample_size(const MonitorConfig& c, int64_t count) {
  if (c.rate <= 0 || count <= 0) return 0;
  const double s = std::ceil(c.rate * static_cast<double>(count));
  const double lo = c.min_samples, hi = std::max(c.min_samples, c.max_samples);
  return static_cast<uint32_t>(std::min<double>(static_cast<double>(count), std::clamp(s, lo, hi)));
}

void sample_positions(int64_t count, uint32_t s, uint64_t visit, std::span<int64_t> out) {
  const int64_t n =
      std::min<int64_t>({static_cast<int64_t>(s), count, static_cast<int64_t>(out.size())});
  if (n <= 0) return;
  const int64_t stride = count / n;
  // Golden-ratio offsets: successive visits spread evenly over [0, stride).
  const double phi = 0.6180339887498949;
  const double frac = std::fmod(static_cast<double>(visit) * phi, 1.0);
  const auto offset = static_cast<int64_t>(frac * static_cast<double>(stride));
  for (int64_t i = 0; i < n; ++i) out[static_cast<size_t>(i)] = i * stride + offset;
}

}  // namespace dynaprec
