// 2-D convolution (NCHW) at every precision format.
//
//   Y[n, oc, oh, ow] = Σ_{ic in group, kh, kw} X[n, ic, ih, iw] · W[oc, ic', kh, kw] + bias[oc]
//   ih = oh·stride_h - pad_top + kh·dilation_h, iw likewise; out-of-range taps read 0.
//
// W [OC, C/groups, KH, KW] is treated as a matrix W[OC, K] with K = C/groups·KH·KW in that
// order, stored in its format exactly like a matmul weight (include/dynaprec/matmul.h: int8 one
// scale per output channel, int4 groups of 32 along K, fp8 one tensor scale), and X is used as
// matmul.h says for that format (bf16/fp16 rounded, fp8 → bf16, int8/int4 → int8 with one
// scale over the whole call's X). Accumulation in fp32/int32 as for matmul. An optional
// activation is applied after the bias.
#pragma once

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstdint>
#include <limits>
#include <memory>

#include "dynaprec/matmul.h"
#include "dynaprec/tensor.h"

namespace dynaprec {

enum class Activation : uint8_t { kNone, kRelu, kClip, kSigmoid, kHardSwish };

struct Conv2dParams {
  int64_t stride_h = 1, stride_w = 1;
  int64_t pad_top = 0, pad_left = 0, pad_bottom = 0, pad_right = 0;
  int64_t dilation_h = 1, dilation_w = 1;
  int64_t groups = 1;
  Activation activation = Activation::kNone;
  float clip_min = 0.0f, clip_max = 6.0f;  ///< for kClip
  /// A scalar affine after the activation, y = act(v) · post_scale, then + post_shift (two
  /// roundings, as the Mul and Add nodes it stands for: the "learnable affine blocks" that
  /// follow PP-LCNetV3's activated convs). Off by default.
  bool post_affine = false;
  float post_scale = 1.0f, post_shift = 0.0f;
};

/// e^x for the sigmoid activation, from IEEE operations only (no libm, no fused multiply-add),
/// so that a vector form (src/kernels/cpu/activation_hwy-inl.h) gives the very same bits on
/// every SIMD target: n = floor(x·log2 e + 1/2), r = x - n·C1 - n·C2 (Cody-Waite, n·C1 exact),
/// e^r by Cephes' degree-7 expf polynomial, times 2^n as an exponent field. Within 2 ulp of
/// std::exp on [-87, 88]; 0 below -87 (where e^x < 2^-125), +inf above 88, NaN stays NaN.
inline float activation_exp(float x) {
  if (x != x) return x;
  if (x < -87.0f) return 0.0f;
  if (x > 88.0f) return std::numeric_limits<float>::infinity();
  const float n = std::floor(x * 1.44269504088896341f + 0.5f);
  float r = x - n * 0.693359375f;
  r = r - n * -2.12194440e-4f;
  float p = 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  p = p * (r * r);
  p = p + r;
  p = p + 1.0f;
  const auto e = static_cast<uint32_t>(static_cast<int32_t>(n) + 127) << 23;
  return p * std::bit_cast<float>(e);
}

/// The activation of p applied to one biased output v: relu max(v, 0); clip to [clip_min,
/// clip_max]; sigmoid 1 / (1 + activation_exp(-v)); hardswish v · clip(v + 3, 0, 6) / 6. NaN
/// propagates.
/// Inline here so that the reference and the kernels evaluate the very same expression (int8
/// results are compared bit for bit after the activation).
inline float apply_activation(float v, const Conv2dParams& p) {
  switch (p.activation) {
    case Activation::kNone:
      break;
    case Activation::kRelu:
      v = v < 0.0f ? 0.0f : v;
      break;
    case Activation::kClip:
      v = std::min(std::max(v, p.clip_min), p.clip_max);
      break;
    case Activation::kSigmoid:
      v = 1.0f / (1.0f + activation_exp(-v));
      break;
    case Activation::kHardSwish:
      v = v * std::min(std::max(v + 3.0f, 0.0f), 6.0f) / 6.0f;
      break;
  }
  if (p.post_affine) {
    v = v * p.post_scale;
    v = v + p.post_shift;
  }
  return v;
}

/// y[i] = apply_activation(y[i]) for i < n (with these fields), vectorized for the CPU it runs
/// on and bit-identical to the per-value form (src/kernels/cpu/ops_hwy.cc).
void activation_row_f32(float* y, int64_t n, Activation act, float clip_min, float clip_max,
                        bool affine, float scale, float shift);

/// y[i] = apply_activation(y[i]) for i < n. P: any params struct with `activation`,
/// `clip_min`, `clip_max` (and, where it has them, the post_affine fields).
template <class P>
inline void apply_activation_n(float* y, int64_t n, const P& p) {
  if constexpr (requires { p.post_affine; })
    activation_row_f32(y, n, p.activation, p.clip_min, p.clip_max, p.post_affine, p.post_scale,
                       p.post_shift);
  else
    activation_row_f32(y, n, p.activation, p.clip_min, p.clip_max, false, 1.0f, 0.0f);
}

/// Conv weights in a format: the [OC, C/groups·KH·KW] matrix plus the kernel's geometry.
struct ConvWeights {
  MatmulWeights matrix;  ///< n = OC, k = C/groups·KH·KW
  int64_t oc = 0, ic_per_group = 0, kh = 0, kw = 0;
  /// The CPU kernels' state for these weights, made on first use: per-group MatmulWeights
  /// viewing `matrix`'s rows (groups is only known per call), oneDNN's reordered weights per
  /// problem. Like MatmulWeights::prepared, not thread-safe while being made: the first call
  /// for given weights must not race another.
  mutable std::shared_ptr<void> prepared;
};

/// Stores float32 [OC, C/groups, KH, KW] weights in format f.
ConvWeights conv_weights(const Tensor& w, Format f);

/// Output shape for input [N, C, H, W]; throws Error(kInvalidInput) on inconsistent geometry.
Shape conv2d_output_shape(const Shape& x, const ConvWeights& w, const Conv2dParams& p);

namespace ref {
/// The reference: direct loops with the semantics above. x: [N, C, H, W]; y preallocated with
/// conv2d_output_shape; bias: OC values or nullptr.
void conv2d(const Tensor& x, const ConvWeights& w, const float* bias, const Conv2dParams& p,
            Tensor& y);
}  // namespace ref

/// Facts a caller knows or wants beside a conv2d call; they change no result.
struct ConvHints {
  /// max |X| over the whole call's X where the caller knows it exactly (a negative value:
  /// unknown; not finite: X is not): int8 and int4 then take their scale from it instead of a
  /// pass over X of their own.
  float x_amax = -1.0f;
  /// Where non-null, set to max |Y| over the call's output by kernels that can take it while
  /// they store Y (the VNNI int8 kernels and the narrow depthwise ones), else to -1. The next
  /// int8 layer's x_amax (the executor passes it on).
  float* y_amax = nullptr;
};

/// The fastest CPU kernel for the problem (oneDNN or im2col + matmul kernels); same contract.
void conv2d(const Tensor& x, const ConvWeights& w, const float* bias, const Conv2dParams& p,
            Tensor& y, int threads = 0, const ConvHints* hints = nullptr);

namespace cpu {
/// The CPU conv2d's implementations (src/kernels/cpu/conv_cpu.cc), so that tests and benchmarks
/// can run each one on every format; kAuto is conv2d's own choice.
///   kOneDnn  oneDNN's convolution: every format but int4 (int8 needs VNNI; fp16 runs as f32).
///   kIm2col  patch matrix, then dynaprec::matmul (float) or the GEMV row kernels (int).
///   kDirect  taps in K order with output pixels innermost: the reference's arithmetic exactly.
///   kDepthwise  depthwise layers (one channel per group), every format but int4: a plane at a
///            time in registers, the reference's tap order with FMA (int8 bit-identical).
enum class ConvImpl : uint8_t { kAuto, kOneDnn, kIm2col, kDirect, kDepthwise, kPointwise };
/// conv2d with implementation `impl`; returns false, writing nothing, where it does not apply
/// (kOneDnn: int4, or oneDNN lacks the ISA; kDepthwise: not depthwise, int4, stride_w > 2;
/// kPointwise: not int8, not 1x1 / stride 1 / unpadded / one group, or no AVX-512 VNNI;
/// kOneDnn, kDirect and kDepthwise: a non-finite weight, whose
/// 0 · w at padding taps only im2col computes as the reference does).
bool conv2d_with(ConvImpl impl, const Tensor& x, const ConvWeights& w, const float* bias,
                 const Conv2dParams& p, Tensor& y, int threads = 0,
                 const ConvHints* hints = nullptr);
}  // namespace cpu

}  // namespace dynaprec
