// Reference conv2d: the semantics of include/dynaprec/conv.h in direct nested loops, plus the
// conv weights and the geometry check that every conv kernel shares. Slow on purpose.
//
// The reference deliberately does not go through im2col or matmul: it walks (ic, kh, kw) in
// the K order of the weight matrix and reads the input where the tap lands, so that it defines
// the semantics independently of the kernels it checks. The arithmetic per output is exactly
// ref::matmul's for the [OC, K] matrix with zero taps where the kernel leaves the input.
#include <cmath>
#include <string>
#include <vector>

#include "dynaprec/conv.h"
#include "dynaprec/convert.h"
#include "dynaprec/error.h"

namespace dynaprec {
namespace {

[[noreturn]] void invalid(const std::string& what) {
  throw Error(ErrorKind::kInvalidInput, "conv2d: " + what);
}

std::string num(int64_t v) { return std::to_string(v); }

}  // namespace

ConvWeights conv_weights(const Tensor& w, Format f) {
  if (w.dtype() != DType::kF32 || w.rank() != 4)
    throw Error(ErrorKind::kInvalidInput,
                "conv weights must be a float32 [OC, C/groups, KH, KW] tensor, got " +
                    std::string(dtype_name(w.dtype())) + " " + shape_str(w.shape()));
  for (int i = 0; i < 4; ++i)
    if (w.dim(i) < 1)
      throw Error(ErrorKind::kInvalidInput,
                  "conv weights must have every dimension >= 1, got " + shape_str(w.shape()));
  // [OC, C/g, KH, KW] in C order is the [OC, K] matrix with K in (ic, kh, kw) order.
  const Tensor c = w.is_contiguous() ? w : w.clone();
  const int64_t k = w.dim(1) * w.dim(2) * w.dim(3);
  const Tensor m = Tensor::borrow(const_cast<void*>(c.data()), {w.dim(0), k}, DType::kF32);
  ConvWeights cw;
  cw.matrix = matmul_weights(m, f);
  cw.oc = w.dim(0);
  cw.ic_per_group = w.dim(1);
  cw.kh = w.dim(2);
  cw.kw = w.dim(3);
  return cw;
}

Shape conv2d_output_shape(const Shape& x, const ConvWeights& w, const Conv2dParams& p) {
  if (x.size() != 4) invalid("input must be rank 4 [N, C, H, W], got " + shape_str(x));
  for (int64_t d : x)
    if (d < 0) invalid("input has a negative dimension: " + shape_str(x));
  if (w.oc < 1 || w.ic_per_group < 1 || w.kh < 1 || w.kw < 1 || w.matrix.n != w.oc ||
      w.matrix.k != w.ic_per_group * w.kh * w.kw)
    invalid("weights are not a conv_weights result (OC=" + num(w.oc) +
            " C/groups=" + num(w.ic_per_group) + " KH=" + num(w.kh) + " KW=" + num(w.kw) +
            ", matrix " + num(w.matrix.n) + "x" + num(w.matrix.k) + ")");
  const int64_t n = x[0], c = x[1], h = x[2], wd = x[3];
  if (p.groups < 1) invalid("groups must be >= 1, got " + num(p.groups));
  if (c % p.groups != 0)
    invalid("input channels C=" + num(c) + " are not divisible by groups=" + num(p.groups));
  if (c / p.groups != w.ic_per_group)
    invalid("input channels per group C/groups=" + num(c) + "/" + num(p.groups) + "=" +
            num(c / p.groups) + " differ from the weights' " + num(w.ic_per_group));
  if (w.oc % p.groups != 0)
    invalid("output channels OC=" + num(w.oc) + " are not divisible by groups=" + num(p.groups));
  if (p.stride_h < 1 || p.stride_w < 1)
    invalid("strides must be >= 1, got " + num(p.stride_h) + "x" + num(p.stride_w));
  if (p.dilation_h < 1 || p.dilation_w < 1)
    invalid("dilations must be >= 1, got " + num(p.dilation_h) + "x" + num(p.dilation_w));
  if (p.pad_top < 0 || p.pad_left < 0 || p.pad_bottom < 0 || p.pad_right < 0)
    invalid("pads must be >= 0, got top=" + num(p.pad_top) + " left=" + num(p.pad_left) +
            " bottom=" + num(p.pad_bottom) + " right=" + num(p.pad_right));
  if (p.activation == Activation::kClip && !(p.clip_min <= p.clip_max))
    invalid("clip needs clip_min <= clip_max, got [" + std::to_string(p.clip_min) + ", " +
            std::to_string(p.clip_max) + "]");
  // Output extent: (padded - dilated kernel extent) / stride + 1, and at least one output.
  const int64_t ext_h = p.dilation_h * (w.kh - 1) + 1, ext_w = p.dilation_w * (w.kw - 1) + 1;
  const int64_t in_h = h + p.pad_top + p.pad_bottom, in_w = wd + p.pad_left + p.pad_right;
  if (in_h < ext_h || in_w < ext_w)
    invalid("output would be empty: padded input " + num(in_h) + "x" + num(in_w) +
            " is smaller than the dilated kernel " + num(ext_h) + "x" + num(ext_w));
  return {n, w.oc, (in_h - ext_h) / p.stride_h + 1, (in_w - ext_w) / p.stride_w + 1};
}

namespace ref {

void conv2d(const Tensor& x, const ConvWeights& w, const float* bias, const Conv2dParams& p,
            Tensor& y) {
  const Shape ys = conv2d_output_shape(x.shape(), w, p);
  if (x.dtype() != DType::kF32) invalid("input must be float32");
  if (y.dtype() != DType::kF32 || y.shape() != ys || !y.is_contiguous())
    invalid("output must be a contiguous float32 tensor of shape " + shape_str(ys) + ", got " +
            std::string(dtype_name(y.dtype())) + " " + shape_str(y.shape()));
  const Tensor xc = x.is_contiguous() ? x : x.clone();
  const int64_t n_img = ys[0], oc_all = ys[1], oh_n = ys[2], ow_n = ys[3];
  const int64_t c_all = x.dim(1), h = x.dim(2), wd = x.dim(3);
  const int64_t icg = w.ic_per_group, ocg = oc_all / p.groups, k = w.matrix.k;
  const auto count = static_cast<size_t>(xc.numel());
  const float* xs = xc.data_as<float>();
  float* yd = y.data_as<float>();
  if (count == 0 || y.numel() == 0) return;

  const Format f = w.matrix.format;
  const bool is_int = f == Format::kInt8 || f == Format::kInt4;
  const bool fp8 = f == Format::kFp8E4M3 || f == Format::kFp8E5M2;
  const QuantParams& qp = w.matrix.data.quant();

  // X as the format uses it, computed once for the whole call (the int scale is over all of X).
  float sx = 1.0f;
  std::vector<int8_t> xq;
  std::vector<float> xr;
  if (is_int) {
    sx = matmul_activation_scale(xs, count);
    xq.resize(count);
    for (size_t i = 0; i < count; ++i) xq[i] = int8_encode(xs[i], sx);
  } else {
    const Format act = fp8 ? Format::kBf16 : f;
    xr.assign(xs, xs + count);
    if (act != Format::kFp32)
      for (float& v : xr) v = decode_float(act, encode_float(act, v));
  }
  // W decoded for float formats; int formats read their codes directly.
  std::vector<float> wdec;
  if (!is_int) {
    wdec.resize(static_cast<size_t>(oc_all * k));
    ref::decode_float_array(f, w.matrix.data.data(), wdec.data(), wdec.size());
  }
  const int64_t row_bytes = (k + 1) / 2, n_groups = (k + 31) / 32;

  for (int64_t n = 0; n < n_img; ++n)
    for (int64_t oc = 0; oc < oc_all; ++oc) {
      const int64_t g = oc / ocg;
      for (int64_t oh = 0; oh < oh_n; ++oh)
        for (int64_t ow = 0; ow < ow_n; ++ow) {
          // Input offset of the tap at K position q, or -1 outside the input (reads 0).
          auto tap = [&](int64_t q) -> int64_t {
            const int64_t icl = q / (w.kh * w.kw), r = q % (w.kh * w.kw);
            const int64_t ih = oh * p.stride_h - p.pad_top + (r / w.kw) * p.dilation_h;
            const int64_t iw = ow * p.stride_w - p.pad_left + (r % w.kw) * p.dilation_w;
            if (ih < 0 || ih >= h || iw < 0 || iw >= wd) return -1;
            return ((n * c_all + g * icg + icl) * h + ih) * wd + iw;
          };
          const float b = bias ? bias[oc] : 0.0f;
          float v;
          if (f == Format::kInt8) {
            const int8_t* wq = w.matrix.data.data_as<int8_t>() + oc * k;
            int32_t acc = 0;
            for (int64_t q = 0; q < k; ++q) {
              const int64_t at = tap(q);
              if (at >= 0) acc += int32_t{xq[static_cast<size_t>(at)]} * int32_t{wq[q]};
            }
            v = static_cast<float>(acc) * (sx * qp.scales[static_cast<size_t>(oc)]) + b;
          } else if (f == Format::kInt4) {
            const uint8_t* wp = w.matrix.data.data_as<uint8_t>() + oc * row_bytes;
            float sum = 0.0f;
            for (int64_t gi = 0; gi < n_groups; ++gi) {
              int32_t acc = 0;
              for (int64_t q = gi * 32; q < std::min(k, gi * 32 + 32); ++q) {
                const int64_t at = tap(q);
                if (at < 0) continue;
                const uint8_t byte = wp[q / 2];
                const int32_t wv =
                    static_cast<int32_t>(((q % 2 ? byte >> 4 : byte) & 0xF) ^ 0x8) - 8;
                acc += int32_t{xq[static_cast<size_t>(at)]} * wv;
              }
              const float s = decode_float(Format::kFp16, qp.scales_f16[oc * n_groups + gi]);
              sum += static_cast<float>(acc) * s;
            }
            v = sum * sx + b;
          } else {
            const float* wr = wdec.data() + oc * k;
            float acc = 0.0f;
            for (int64_t q = 0; q < k; ++q) {
              const int64_t at = tap(q);
              // A tap outside the input adds 0 · w = ±0, which leaves a sum unchanged unless
              // every tap is outside; add it anyway so that the sum is ref::matmul's exactly.
              acc += (at >= 0 ? xr[static_cast<size_t>(at)] : 0.0f) * wr[q];
            }
            v = acc * (fp8 ? qp.scales.at(0) : 1.0f) + b;
          }
          yd[((n * oc_all + oc) * oh_n + oh) * ow_n + ow] = apply_activation(v, p);
        }
    }
}

}  // namespace ref
}  // namespace dynaprec
