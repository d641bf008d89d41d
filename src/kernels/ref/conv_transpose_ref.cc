// Reference ConvTranspose: the semantics of include/dynaprec/conv_transpose.h in plain loops,
// plus the weights and the geometry (ONNX padding rules) that every kernel shares. Slow on
// purpose.
//
// The loops scatter: per image, group and input pixel (ih, iw) in order, every row (oc', kh, kw)
// of the group's matrix gives one inner product over the group's channels, computed with
// ref::matmul's arithmetic for the format (same rounding of X, same fp32 / int32 sums in
// channel order, same scaling expressions), and is added to the output it lands on.
#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include "dynaprec/conv_transpose.h"
#include "dynaprec/convert.h"
#include "dynaprec/error.h"

namespace dynaprec {
namespace {

[[noreturn]] void invalid(const std::string& what) {
  throw Error(ErrorKind::kInvalidInput, "ConvTranspose: " + what);
}

std::string num(int64_t v) { return std::to_string(v); }

// Values beyond this are refused so that the geometry arithmetic cannot overflow int64.
constexpr int64_t kMaxParam = int64_t{1} << 30;

struct Axis {
  int64_t pad_begin, pad_end, out;
};

// One spatial axis after the ONNX rules (conv_transpose.h).
Axis resolve_axis(const char* name, int64_t in, int64_t k, int64_t stride, int64_t dilation,
                  int64_t pad_begin, int64_t pad_end, int64_t out_pad, int64_t out_req,
                  AutoPad ap) {
  const int64_t full = stride * (in - 1) + out_pad + (k - 1) * dilation + 1;
  auto split = [&](int64_t out) {
    const int64_t total = std::max<int64_t>(0, full - out);
    if (ap == AutoPad::kSameUpper) return Axis{total / 2, total - total / 2, out};
    return Axis{total - total / 2, total / 2, out};
  };
  Axis a{};
  if (out_req >= 0) {
    a = split(out_req);
  } else if (ap == AutoPad::kSameUpper || ap == AutoPad::kSameLower) {
    a = split(in * stride);
  } else if (ap == AutoPad::kValid) {
    a = Axis{0, 0, full};
  } else {
    a = Axis{pad_begin, pad_end, full - pad_begin - pad_end};
  }
  if (a.out < 1)
    invalid(std::string("output ") + name + " would be " + num(a.out) + " (input " + num(in) +
            ", kernel " + num(k) + ", stride " + num(stride) + ", dilation " + num(dilation) +
            ", pads " + num(a.pad_begin) + "+" + num(a.pad_end) + ", output_padding " +
            num(out_pad) + ")");
  return a;
}

}  // namespace

ConvTransposeWeights conv_transpose_weights(const Tensor& w, int64_t groups, Format f) {
  if (w.dtype() != DType::kF32 || w.rank() != 4)
    invalid("weights must be a float32 [C, OC/groups, KH, KW] tensor, got " +
            std::string(dtype_name(w.dtype())) + " " + shape_str(w.shape()));
  for (int i = 0; i < 4; ++i)
    if (w.dim(i) < 1 || w.dim(i) > kMaxParam)
      invalid("weights must have every dimension in [1, 2^30], got " + shape_str(w.shape()));
  if (groups < 1 || groups > kMaxParam) invalid("group must be >= 1, got " + num(groups));
  const int64_t c = w.dim(0), ocg = w.dim(1), kh = w.dim(2), kw = w.dim(3);
  if (c % groups != 0)
    invalid("weight channels C=" + num(c) + " are not divisible by group=" + num(groups));
  const int64_t cg = c / groups, taps = kh * kw, rows = groups * ocg * taps;
  shape_numel(std::vector<int64_t>{rows, cg});  // throws on overflow
  const Tensor wc = w.is_contiguous() ? w : w.clone();
  const float* src = wc.data_as<float>();
  // Row (g, oc', kh, kw), column c' = W[g·Cg + c', oc', kh, kw].
  Tensor m = Tensor::zeros({rows, cg}, DType::kF32);
  float* dst = m.data_as<float>();
  for (int64_t g = 0; g < groups; ++g)
    for (int64_t ci = 0; ci < cg; ++ci)
      for (int64_t j = 0; j < ocg * taps; ++j)
        dst[(g * ocg * taps + j) * cg + ci] = src[((g * cg + ci) * ocg) * taps + j];
  ConvTransposeWeights tw;
  try {
    tw.matrix = matmul_weights(m, f);
  } catch (const Error& e) {
    invalid(e.what());
  }
  tw.c = c;
  tw.oc_per_group = ocg;
  tw.kh = kh;
  tw.kw = kw;
  tw.groups = groups;
  return tw;
}

ConvTransposeGeometry conv_transpose_geometry(const Shape& x, const ConvTransposeWeights& w,
                                              const ConvTransposeParams& p) {
  if (x.size() != 4) invalid("input must be rank 4 [N, C, H, W], got " + shape_str(x));
  if (x[0] < 0 || x[0] > kMaxParam || x[2] < 1 || x[2] > kMaxParam || x[3] < 1 || x[3] > kMaxParam)
    invalid("input must have N >= 0 and H, W in [1, 2^30], got " + shape_str(x));
  if (w.groups < 1 || w.c < 1 || w.oc_per_group < 1 || w.kh < 1 || w.kw < 1 ||
      w.c % w.groups != 0 || w.matrix.k != w.c / w.groups ||
      w.matrix.n != w.groups * w.oc_per_group * w.kh * w.kw)
    invalid("weights are not a conv_transpose_weights result (C=" + num(w.c) +
            " OC/group=" + num(w.oc_per_group) + " KH=" + num(w.kh) + " KW=" + num(w.kw) +
            " group=" + num(w.groups) + ", matrix " + num(w.matrix.n) + "x" + num(w.matrix.k) +
            ")");
  if (x[1] != w.c)
    invalid("input channels C=" + num(x[1]) + " differ from the weights' " + num(w.c));
  auto in_range = [](int64_t v, int64_t lo) { return v >= lo && v <= kMaxParam; };
  if (!in_range(p.stride_h, 1) || !in_range(p.stride_w, 1))
    invalid("strides must be >= 1, got " + num(p.stride_h) + "x" + num(p.stride_w));
  if (!in_range(p.dilation_h, 1) || !in_range(p.dilation_w, 1))
    invalid("dilations must be >= 1, got " + num(p.dilation_h) + "x" + num(p.dilation_w));
  if (!in_range(p.pad_top, 0) || !in_range(p.pad_left, 0) || !in_range(p.pad_bottom, 0) ||
      !in_range(p.pad_right, 0))
    invalid("pads must be >= 0, got top=" + num(p.pad_top) + " left=" + num(p.pad_left) +
            " bottom=" + num(p.pad_bottom) + " right=" + num(p.pad_right));
  if (!in_range(p.output_padding_h, 0) || !in_range(p.output_padding_w, 0))
    invalid("output_padding must be >= 0, got " + num(p.output_padding_h) + "x" +
            num(p.output_padding_w));
  const bool explicit_out = p.output_h != -1 || p.output_w != -1;
  if (explicit_out && (!in_range(p.output_h, 1) || !in_range(p.output_w, 1)))
    invalid("output_shape must be >= 1 in both spatial dimensions, got " + num(p.output_h) + "x" +
            num(p.output_w));
  if (p.activation == Activation::kClip && !(p.clip_min <= p.clip_max))
    invalid("clip needs clip_min <= clip_max, got [" + std::to_string(p.clip_min) + ", " +
            std::to_string(p.clip_max) + "]");
  const Axis h =
      resolve_axis("height", x[2], w.kh, p.stride_h, p.dilation_h, p.pad_top, p.pad_bottom,
                   p.output_padding_h, explicit_out ? p.output_h : -1, p.auto_pad);
  const Axis v =
      resolve_axis("width", x[3], w.kw, p.stride_w, p.dilation_w, p.pad_left, p.pad_right,
                   p.output_padding_w, explicit_out ? p.output_w : -1, p.auto_pad);
  shape_numel(std::vector<int64_t>{x[0], w.groups * w.oc_per_group, h.out, v.out});  // overflow
  return {h.pad_begin, v.pad_begin, h.pad_end, v.pad_end, h.out, v.out};
}

Shape conv_transpose_output_shape(const Shape& x, const ConvTransposeWeights& w,
                                  const ConvTransposeParams& p) {
  const ConvTransposeGeometry g = conv_transpose_geometry(x, w, p);
  return {x[0], w.groups * w.oc_per_group, g.oh, g.ow};
}

namespace ref {

void conv_transpose2d(const Tensor& x, const ConvTransposeWeights& w, const float* bias,
                      const ConvTransposeParams& p, Tensor& y) {
  const ConvTransposeGeometry geo = conv_transpose_geometry(x.shape(), w, p);
  const Shape ys = conv_transpose_output_shape(x.shape(), w, p);
  if (x.dtype() != DType::kF32) invalid("input must be float32");
  if (y.dtype() != DType::kF32 || y.shape() != ys || !y.is_contiguous())
    invalid("output must be a contiguous float32 tensor of shape " + shape_str(ys) + ", got " +
            std::string(dtype_name(y.dtype())) + " " + shape_str(y.shape()));
  if (y.numel() == 0) return;
  const Tensor xc = x.is_contiguous() ? x : x.clone();
  const int64_t n_img = ys[0], oc_all = ys[1], oh_n = ys[2], ow_n = ys[3];
  const int64_t h = x.dim(2), wd = x.dim(3), cg = w.matrix.k, ocg = w.oc_per_group;
  const int64_t taps = w.kh * w.kw;
  const auto count = static_cast<size_t>(xc.numel());
  const float* xs = xc.data_as<float>();
  float* yd = y.data_as<float>();

  const Format f = w.matrix.format;
  const bool is_int = f == Format::kInt8 || f == Format::kInt4;
  const bool fp8 = f == Format::kFp8E4M3 || f == Format::kFp8E5M2;
  const QuantParams& qp = w.matrix.data.quant();

  // X as the format uses it, once for the whole call (the int scale is over all of X).
  float sx = 1.0f;
  std::vector<int8_t> xq;
  std::vector<float> xr;
  if (is_int) {
    const float m = ref::amax(xs, count);
    if (!std::isfinite(m)) invalid("input contains NaN or inf");
    sx = ref::int8_scale(m);
    xq.resize(count);
    for (size_t i = 0; i < count; ++i) xq[i] = int8_encode(xs[i], sx);
  } else {
    const Format act = fp8 ? Format::kBf16 : f;
    xr.assign(xs, xs + count);
    if (act != Format::kFp32)
      for (float& v : xr) v = decode_float(act, encode_float(act, v));
  }
  std::vector<float> wdec;
  if (!is_int) {
    wdec.resize(static_cast<size_t>(w.matrix.n * cg));
    ref::decode_float_array(f, w.matrix.data.data(), wdec.data(), wdec.size());
  }
  const int64_t row_bytes = (cg + 1) / 2, n_sgroups = (cg + 31) / 32;
  const float sw_tensor = fp8 ? qp.scales.at(0) : 1.0f;

  // The inner product of row `row` of the matrix with the group's channels at input offset
  // `at` (channel stride h·wd), exactly as ref::matmul computes one output.
  const int64_t plane = h * wd;
  auto contribution = [&](int64_t row, int64_t at) -> float {
    if (f == Format::kInt8) {
      const int8_t* wq = w.matrix.data.data_as<int8_t>() + row * cg;
      int32_t acc = 0;
      for (int64_t c = 0; c < cg; ++c)
        acc += int32_t{xq[static_cast<size_t>(at + c * plane)]} * int32_t{wq[c]};
      return static_cast<float>(acc) * (sx * qp.scales[static_cast<size_t>(row)]);
    }
    if (f == Format::kInt4) {
      const uint8_t* wp = w.matrix.data.data_as<uint8_t>() + row * row_bytes;
      float sum = 0.0f;
      for (int64_t gi = 0; gi < n_sgroups; ++gi) {
        int32_t acc = 0;
        for (int64_t c = gi * 32; c < std::min(cg, gi * 32 + 32); ++c) {
          const uint8_t byte = wp[c / 2];
          const int32_t wv = static_cast<int32_t>(((c % 2 ? byte >> 4 : byte) & 0xF) ^ 0x8) - 8;
          acc += int32_t{xq[static_cast<size_t>(at + c * plane)]} * wv;
        }
        sum += static_cast<float>(acc) *
               decode_float(Format::kFp16, qp.scales_f16[row * n_sgroups + gi]);
      }
      return sum * sx;
    }
    const float* wr = wdec.data() + row * cg;
    float acc = 0.0f;
    for (int64_t c = 0; c < cg; ++c) acc += xr[static_cast<size_t>(at + c * plane)] * wr[c];
    return acc * sw_tensor;
  };

  std::fill_n(yd, y.numel(), 0.0f);
  for (int64_t n = 0; n < n_img; ++n)
    for (int64_t g = 0; g < w.groups; ++g)
      for (int64_t ih = 0; ih < h; ++ih)
        for (int64_t iw = 0; iw < wd; ++iw) {
          const int64_t at = ((n * w.c + g * cg) * h + ih) * wd + iw;
          for (int64_t ocl = 0; ocl < ocg; ++ocl)
            for (int64_t kh = 0; kh < w.kh; ++kh) {
              const int64_t oh = ih * p.stride_h - geo.pad_top + kh * p.dilation_h;
              if (oh < 0 || oh >= oh_n) continue;
              for (int64_t kw = 0; kw < w.kw; ++kw) {
                const int64_t ow = iw * p.stride_w - geo.pad_left + kw * p.dilation_w;
                if (ow < 0 || ow >= ow_n) continue;
                const int64_t oc = g * ocg + ocl;
                yd[((n * oc_all + oc) * oh_n + oh) * ow_n + ow] +=
                    contribution(oc * taps + kh * w.kw + kw, at);
              }
            }
        }
  Conv2dParams act;
  act.activation = p.activation;
  act.clip_min = p.clip_min;
  act.clip_max = p.clip_max;
  for (int64_t n = 0; n < n_img; ++n)
    for (int64_t oc = 0; oc < oc_all; ++oc) {
      float* yp = yd + (n * oc_all + oc) * oh_n * ow_n;
      const float b = bias ? bias[oc] : 0.0f;
      for (int64_t i = 0; i < oh_n * ow_n; ++i) yp[i] = apply_activation(yp[i] + b, act);
    }
}

}  // namespace ref
}  // namespace dynaprec
