// Non-overlapping ConvTranspose rows (src/kernels/cpu/convt_hwy.cc), dispatched to the best SIMD
// target: conv_transpose_cpu.cc's direct path for kernel == stride (the 2x2 stride-2 upsampling
// of DB heads), where every output is reached by exactly one tap.
#pragma once

#include <cstdint>

#include "dynaprec/conv.h"

namespace dynaprec::cpu {

/// The output rows one input row of one group makes, from the row's cg channels x[ci·x_stride + i]
/// (as the format rounds them; readable for w + 4·lanes floats). For output channel ocl of the
/// group and tap row kh (output row oh0 + kh, skipped outside [0, oh_n)):
///   y[ocl·plane + (oh0 + kh)·ow + ox] = (0 + (Σ_ci x[ci][(ox + pl) / sw] · w(ocl, kh, kw, ci)) ·
///   s)
///                                       + bias
/// with kw = (ox + pl) % sw (sw <= 4), summed from +0 in ci order with fused multiply-adds (exact
/// for the integer-valued int8 codes while the sums stay below 2^24). The weights and scales come
/// as lane patterns: lane j of phase ph holds tap kw = (ph + j) % sw;
///   wpat[(((ocl·kh_n + kh)·cg + ci)·sw + ph)·lanes + j],  spat[((ocl·kh_n + kh)·sw + ph)·lanes +
///   j].
struct ConvtRows {
  const float* x = nullptr;
  int64_t x_stride = 0, cg = 0;
  const float* wpat = nullptr;
  const float* spat = nullptr;
  const float* bias = nullptr;  // [ocg], or nullptr
  int64_t ocg = 0, kh_n = 0, sw = 1, pl = 0;
  int64_t oh0 = 0, oh_n = 0, ow = 0;
  float* y = nullptr;  // the group's first output plane
  int64_t plane = 0;   // oh_n · ow
};
void convt_rows(const ConvtRows& r);

/// kernel == stride == 2 along both axes, no left pad: the same outputs as convt_rows, computed
/// at input resolution: per vector of input pixels, every tap (kh, kw) of every output channel
/// is its own sum over ci (the weight a broadcast scalar, in ci order from +0 with fused
/// multiply-adds, as convt_rows), and the two column taps of an output row are interleaved into
/// output columns at the end (the input lanes pre-permuted so that the target's in-block
/// interleave yields consecutive columns). No permute per tap, no upsampled duplicates: the
/// DB heads' 24 -> 24 and 24 -> 1 layers. Weights w2[(ocl·cg + ci)·4 + kh·2 + kw], scales
/// s2[ocl·4 + kh·2 + kw] (oc-local to the group; x must be readable for w + 4·lanes floats).
/// false (nothing written) where the target has fewer than 4 float lanes.
struct ConvtRows2 {
  const float* x = nullptr;
  int64_t x_stride = 0, cg = 0, w = 0;
  const float* w2 = nullptr;
  const float* s2 = nullptr;
  const float* bias = nullptr;  // [ocg], or nullptr
  int64_t ocg = 0;
  int64_t oh0 = 0, oh_n = 0, ow = 0;
  float* y = nullptr;                  // the group's first output plane
  int64_t plane = 0;                   // oh_n · ow
  Activation act = Activation::kNone;  // applied in registers, as apply_activation
  float clip_min = 0.0f, clip_max = 6.0f;
  // Where non-null: raised to the largest float bits of |y| over the stored outputs (max |y|,
  // NaN above +inf).
  uint32_t* amax_bits = nullptr;
};
bool convt_rows_k2(const ConvtRows2& r);

/// Float lanes of the dispatched target.
int64_t convt_lanes();

}  // namespace dynaprec::cpu
