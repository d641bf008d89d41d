// Non-overlapping ConvTranspose rows (src/kernels/cpu/convt_hwy.cc), dispatched to the best SIMD
// target: conv_transpose_cpu.cc's direct path for kernel == stride (the 2x2 stride-2 upsampling
// of DB heads), where every output is reached by exactly one tap.
#pragma once

#include <cstdint>

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

/// Float lanes of the dispatched target.
int64_t convt_lanes();

}  // namespace dynaprec::cpu
