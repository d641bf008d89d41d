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

#include <cstdint>

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
};

/// Conv weights in a format: the [OC, C/groups·KH·KW] matrix plus the kernel's geometry.
struct ConvWeights {
  MatmulWeights matrix;  ///< n = OC, k = C/groups·KH·KW
  int64_t oc = 0, ic_per_group = 0, kh = 0, kw = 0;
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

/// The fastest CPU kernel for the problem (oneDNN or im2col + matmul kernels); same contract.
void conv2d(const Tensor& x, const ConvWeights& w, const float* bias, const Conv2dParams& p,
            Tensor& y, int threads = 0);

}  // namespace dynaprec
