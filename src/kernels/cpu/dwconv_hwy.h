// Depthwise convolution of one channel plane (src/kernels/cpu/dwconv_hwy.cc), dispatched to the
// best SIMD target. conv_cpu.cc pads the plane and picks this kernel for depthwise layers.
#pragma once

#include <cstdint>

#include "dynaprec/conv.h"

namespace dynaprec::cpu {

/// One output plane of a depthwise convolution over an input plane padded with zeros:
///   y[oh·ow_n + ow] = (Σ_{i<kh, j<kw} w[i·kw + j] · xp[(oh·sh + i·dh)·xp_stride + ow·sw + j·dw])
///                     · scale + bias
/// summed in tap order from +0 with fused multiply-adds (the reference's order; its rounding up
/// to FMA's, exact for integer-valued sums below 2^24), then one multiply and one add. xp must
/// be readable for (ow_n + lanes)·sw + (kw-1)·dw
/// floats in every row it reads (the caller pads the rows with slack); sw is 1 or 2. Where `act`
/// is given and its activation is not sigmoid, the activation (and the post-affine) of
/// apply_activation follow in registers, bit for bit; otherwise y is left for apply_activation_n.
struct DwPlane {
  const float* xp = nullptr;
  int64_t xp_stride = 0;
  const float* w = nullptr;
  int64_t kh = 0, kw = 0, sh = 1, sw = 1, dh = 1, dw = 1;
  int64_t oh_n = 0, ow_n = 0;
  float scale = 1.0f, bias = 0.0f;
  const Conv2dParams* act = nullptr;
  float* y = nullptr;
};

/// Whether dw_plane applies p's activation itself.
inline bool dw_plane_activates(const Conv2dParams& p) {
  return p.activation != Activation::kSigmoid;
}
void dw_plane(const DwPlane& p);

/// Float lanes of the dispatched target (the row slack dw_plane needs is 2·lanes·sw floats).
int64_t dw_lanes();

}  // namespace dynaprec::cpu
