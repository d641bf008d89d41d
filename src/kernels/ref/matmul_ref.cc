// Reference matmul: the semantics of include/dynaprec/matmul.h in plain loops. Slow on purpose.
#include <cmath>
#include <cstring>
#include <vector>

#include "dynaprec/convert.h"
#include "dynaprec/error.h"
#include "dynaprec/matmul.h"
#include "dynaprec/quantize.h"

namespace dynaprec {

MatmulWeights matmul_weights(const Tensor& w, Format f) {
  if (w.dtype() != DType::kF32 || w.rank() != 2)
    throw Error(ErrorKind::kInvalidInput, "matmul weights must be a float32 [N, K] matrix, got " +
                                              std::string(dtype_name(w.dtype())) + " " +
                                              shape_str(w.shape()));
  MatmulWeights mw;
  mw.format = f;
  mw.n = w.dim(0);
  mw.k = w.dim(1);
  if (f == Format::kFp8E4M3 || f == Format::kFp8E5M2) {
    // One fp32 scale per tensor puts the largest weight at the format's max finite value, so
    // that small weights do not fall into fp8's subnormals (CONTRACT §1 allows a device scale).
    const Tensor c = w.is_contiguous() ? w : w.clone();
    const auto n = static_cast<size_t>(c.numel());
    const float m = ref::amax(c.data_as<float>(), n);
    if (!std::isfinite(m))
      throw Error(ErrorKind::kInvalidInput, "matmul weights contain NaN or inf");
    const float s = m == 0.0f ? 1.0f : m / static_cast<float>(format_info(f).max_finite);
    Tensor scaled = Tensor::zeros(c.shape(), DType::kF32);
    for (size_t i = 0; i < n; ++i) scaled.data_as<float>()[i] = c.data_as<float>()[i] / s;
    mw.data = quantize(scaled, f);
    mw.data.quant().scales = {s};
    return mw;
  }
  mw.data = quantize(w, f, f == Format::kInt8 ? std::optional<int>(0) : std::nullopt);
  return mw;
}

float matmul_activation_scale(const float* x, size_t count) {
  const float m = ref::amax(x, count);
  if (!std::isfinite(m))
    throw Error(ErrorKind::kInvalidInput, "matmul activations contain NaN or inf");
  return ref::int8_scale(m);
}

namespace ref {
namespace {

// X rounded to format `f` and back, as the kernels use it.
std::vector<float> round_activations(const float* x, size_t count, Format f) {
  std::vector<float> out(x, x + count);
  if (f == Format::kFp32) return out;
  for (auto& v : out) v = decode_float(f, encode_float(f, v));
  return out;
}

}  // namespace

void matmul(const float* x, int64_t m, const MatmulWeights& w, const float* bias, float* y) {
  const int64_t n = w.n, k = w.k;
  const auto count = static_cast<size_t>(m * k);
  const Format f = w.format;
  const QuantParams& qp = w.data.quant();
  if (f == Format::kInt8 || f == Format::kInt4) {
    const float sx = matmul_activation_scale(x, count);
    std::vector<int8_t> xq(count);
    for (size_t i = 0; i < count; ++i) xq[i] = int8_encode(x[i], sx);
    if (f == Format::kInt8) {
      const auto* wq = w.data.data_as<int8_t>();
      for (int64_t i = 0; i < m; ++i)
        for (int64_t j = 0; j < n; ++j) {
          int32_t acc = 0;
          for (int64_t p = 0; p < k; ++p) acc += int32_t{xq[i * k + p]} * int32_t{wq[j * k + p]};
          const float s = sx * qp.scales[static_cast<size_t>(j)];
          y[i * n + j] = static_cast<float>(acc) * s + (bias ? bias[j] : 0.0f);
        }
      return;
    }
    const auto* wp = w.data.data_as<uint8_t>();
    const int64_t row_bytes = (k + 1) / 2, groups = (k + 31) / 32;
    for (int64_t i = 0; i < m; ++i)
      for (int64_t j = 0; j < n; ++j) {
        float sum = 0.0f;
        for (int64_t g = 0; g < groups; ++g) {
          int32_t acc = 0;
          for (int64_t p = g * 32; p < std::min(k, g * 32 + 32); ++p) {
            const uint8_t b = wp[j * row_bytes + p / 2];
            const int32_t q = static_cast<int32_t>(((p % 2 ? b >> 4 : b) & 0xF) ^ 0x8) - 8;
            acc += int32_t{xq[i * k + p]} * q;
          }
          const float sw = decode_float(Format::kFp16, qp.scales_f16[j * groups + g]);
          sum += static_cast<float>(acc) * sw;
        }
        y[i * n + j] = sum * sx + (bias ? bias[j] : 0.0f);
      }
    return;
  }
  // Float formats: X rounded as the table says, W decoded exactly, fp32 products and sums.
  const bool fp8 = f == Format::kFp8E4M3 || f == Format::kFp8E5M2;
  const std::vector<float> xr = round_activations(x, count, fp8 ? Format::kBf16 : f);
  std::vector<float> wd(static_cast<size_t>(n * k));
  ref::decode_float_array(f, w.data.data(), wd.data(), wd.size());
  const float sw = fp8 ? qp.scales.at(0) : 1.0f;
  for (int64_t i = 0; i < m; ++i)
    for (int64_t j = 0; j < n; ++j) {
      float acc = 0.0f;
      for (int64_t p = 0; p < k; ++p) acc += xr[i * k + p] * wd[j * k + p];
      y[i * n + j] = acc * sw + (bias ? bias[j] : 0.0f);
    }
}

}  // namespace ref
}  // namespace dynaprec
