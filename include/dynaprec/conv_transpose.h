// 2-D transposed convolution (ONNX ConvTranspose, NCHW) at every precision format.
//
//   Y[n, oc, oh, ow] = bias[oc] + Σ_{ih, iw, kh, kw: oh = ih·stride_h - pad_top + kh·dilation_h,
//                                                     ow = iw·stride_w - pad_left + kw·dilation_w}
//                        Σ_{c in oc's group} X[n, c, ih, iw] · W[c, oc', kh, kw]
//
// W [C, OC/groups, KH, KW] is stored per group as the matrix W_g[OC/groups·KH·KW, C/groups]
// (row (oc', kh, kw), the reduction over the group's input channels last), the groups' matrices
// stacked into one MatmulWeights of n = OC·KH·KW rows and k = C/groups columns, in its format
// exactly like a matmul weight (include/dynaprec/matmul.h): int8 one scale per row (per
// (oc, kh, kw)), int4 groups of 32 along C/groups, fp8 one tensor scale over all of W.
//
// Per input pixel, each row of W_g gives one "contribution" (an inner product over the group's
// channels), computed with matmul's semantics for the format: X as the format uses it (bf16 /
// fp16 rounded, fp8 → bf16, int8/int4 → int8 codes with ONE scale over the whole call's X, as
// conv.h does, so that the result does not depend on how a kernel splits the work), products
// summed in fp32 (int32 per int4 group for the integer formats) and scaled: int8
// float(acc)·(sx·sw[row]), int4 sx·Σ_groups float(acc_g)·sw_g, fp8 acc·s_w. The contributions
// to an output are then added in fp32 in increasing input pixel order (ih, iw), starting from
// +0; the bias is added last, then the optional activation (conv.h's apply_activation).
//
// Geometry (ONNX): out = stride·(in - 1) + output_padding + (K - 1)·dilation + 1 - pad_begin -
// pad_end per spatial axis. With an explicit output shape (output_h/output_w >= 0), or with
// auto_pad SAME_UPPER / SAME_LOWER (whose output is in·stride), the pads are computed from the
// total padding t = stride·(in - 1) + output_padding + (K - 1)·dilation + 1 - out: SAME_UPPER
// puts t/2 at the beginning and the rest at the end, NOTSET and SAME_LOWER the rest at the
// beginning and t/2 at the end (ONNX's formula). A requested output larger than the natural one
// (t < 0) is padded at the end, as onnxruntime does (t clamped to 0; the extra outputs receive
// no contributions: bias only). VALID: pads 0. Explicit pads are used only with NOTSET and no
// output shape.
#pragma once

#include <cstdint>
#include <memory>

#include "dynaprec/conv.h"
#include "dynaprec/matmul.h"
#include "dynaprec/ops.h"
#include "dynaprec/tensor.h"

namespace dynaprec {

// AutoPad: include/dynaprec/ops.h (shared with pooling).

struct ConvTransposeParams {
  int64_t stride_h = 1, stride_w = 1;
  int64_t pad_top = 0, pad_left = 0, pad_bottom = 0, pad_right = 0;
  int64_t dilation_h = 1, dilation_w = 1;
  int64_t output_padding_h = 0, output_padding_w = 0;
  /// ONNX output_shape (spatial part): both >= 0 to use it, both -1 (the default) not to.
  int64_t output_h = -1, output_w = -1;
  AutoPad auto_pad = AutoPad::kNotSet;
  Activation activation = Activation::kNone;
  float clip_min = 0.0f, clip_max = 6.0f;  ///< for kClip
};

/// ConvTranspose weights in a format: the stacked per-group matrices plus the geometry.
struct ConvTransposeWeights {
  MatmulWeights matrix;  ///< n = OC·KH·KW (groups stacked), k = C/groups
  int64_t c = 0, oc_per_group = 0, kh = 0, kw = 0, groups = 1;
  /// The CPU kernel's state (per-group views of `matrix`), made on first use. Like
  /// MatmulWeights::prepared, not thread-safe while being made: the first call for given
  /// weights must not race another.
  mutable std::shared_ptr<void> prepared;
};

/// Stores float32 W [C, OC/groups, KH, KW] in format f; C must be divisible by groups. Throws
/// Error(kInvalidInput) "ConvTranspose: ..." otherwise.
ConvTransposeWeights conv_transpose_weights(const Tensor& w, int64_t groups, Format f);

/// The geometry of one call after the ONNX padding rules: the pads actually used and the
/// output's spatial size.
struct ConvTransposeGeometry {
  int64_t pad_top = 0, pad_left = 0, pad_bottom = 0, pad_right = 0;
  int64_t oh = 0, ow = 0;
};

/// Resolves pads and output size for input [N, C, H, W]; throws Error(kInvalidInput) with a
/// message starting "ConvTranspose:" on bad shapes or parameters.
ConvTransposeGeometry conv_transpose_geometry(const Shape& x, const ConvTransposeWeights& w,
                                              const ConvTransposeParams& p);

/// [N, OC, OH, OW] for input [N, C, H, W] (conv_transpose_geometry's checks).
Shape conv_transpose_output_shape(const Shape& x, const ConvTransposeWeights& w,
                                  const ConvTransposeParams& p);

namespace ref {
/// The reference: plain loops with the semantics above. x: [N, C, H, W] float32; y preallocated
/// contiguous float32 with conv_transpose_output_shape; bias: OC values or nullptr.
void conv_transpose2d(const Tensor& x, const ConvTransposeWeights& w, const float* bias,
                      const ConvTransposeParams& p, Tensor& y);
}  // namespace ref

/// The CPU kernel (per image and group: X_gᵀ · W_gᵀ with dynaprec::matmul or the int GEMV row
/// kernels, then col2im); same contract. `threads`: of the default pool (<= 0: all). fp32,
/// bf16, fp16, fp8 and int4 differ from the reference by the fp32 summation order of the inner
/// products only; int8 is bit-identical.
/// hints (conv.h ConvHints): an int8 layer takes its scale from x_amax where given; y_amax is
/// set to max |Y| by the 2x2 stride-2 kernel (else -1).
void conv_transpose2d(const Tensor& x, const ConvTransposeWeights& w, const float* bias,
                      const ConvTransposeParams& p, Tensor& y, int threads = 0,
                      const ConvHints* hints = nullptr);

/// Two ConvTransposes in a row, y = B(A(x)), where the CPU kernel can run them as one: both 2x2
/// stride 2 without padding or cropping, one group, A not int4 and B neither int4 nor int8 (its
/// scale would need all of A(x) first) — a DB head's upsampling pair. A's output never exists
/// whole: each input row's two output rows go straight through B. The same bits as the two
/// conv_transpose2d calls. false (nothing written) where it does not apply; errors as the calls.
bool conv_transpose2d_chain(const Tensor& x, const ConvTransposeWeights& wa, const float* ba,
                            const ConvTransposeParams& pa, const ConvTransposeWeights& wb,
                            const float* bb, const ConvTransposeParams& pb, Tensor& y,
                            int threads = 0);

}  // namespace dynaprec
