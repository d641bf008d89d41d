// Depthwise convolution of one channel plane in narrow arithmetic (dwconv_vnni.cc): int8 on
// AVX-512 VNNI + VBMI, four taps per instruction, and bf16 on AVX512_BF16, two taps per
// instruction; the forms of dw_plane (dwconv_hwy.h) for those formats.
#pragma once

#include <atomic>
#include <cstdint>
#include <vector>

#include "dynaprec/conv.h"

namespace dynaprec::cpu {

/// W as the kernel reads it: each channel's taps row by row, a row padded with zero weights to
/// a multiple of 4 taps (`quads` groups of 4 per row), and 128 · Σ w per channel.
struct DwInt8Weights {
  int64_t channels = 0, kh = 0, kw = 0, quads = 0;
  std::vector<int32_t> w;     ///< [channels][kh][quads], 4 signed bytes each
  std::vector<int32_t> comp;  ///< [channels]
};
/// w: [channels][kh·kw] int8 codes.
DwInt8Weights dw_int8_prepare(const int8_t* w, int64_t channels, int64_t kh, int64_t kw);

/// One output plane:
///   y[oh·ow_n + ow] = float(Σ_{i<kh, j<kw} w[i·kw + j] · q[(oh·sh + i·dh)·xp_stride + ow·sw + j])
///                     · scale + bias
/// with q the int8 codes, stored as xp = q + 128 (unsigned; the padding is 128, code 0). The
/// sum is exact in int32 (Σ (q + 128)·w, then 128·Σw subtracted), so while it is below 2^24 in
/// magnitude (kh·kw <= 1040) y is the reference's value bit for bit, as dw_plane's. Every row
/// of xp must be readable for (ow_n - 1)·sw + 4·quads + 64 bytes. sw is 1 or 2; no dilation
/// along the row. Where `act` is given and is not sigmoid, the activation (and the post-affine)
/// follow in registers, bit for bit; otherwise y is left for apply_activation_n.
struct DwPlaneInt8 {
  const uint8_t* xp = nullptr;
  int64_t xp_stride = 0;
  const int32_t* w = nullptr;  ///< the channel's [kh][quads] (DwInt8Weights::w)
  int32_t comp = 0;
  int64_t kh = 0, quads = 0, sh = 1, sw = 1, dh = 1;
  int64_t oh_n = 0, ow_n = 0;
  float scale = 1.0f, bias = 0.0f;
  const Conv2dParams* act = nullptr;
  float* y = nullptr;
  std::atomic<uint32_t>* y_amax = nullptr;  ///< where given: raised to max |y| (as float bits)
};

/// Whether this CPU runs dw_plane_int8 (AVX-512 with VNNI and VBMI, under the DYNAPREC_ISA cap).
bool dw_int8_available();
void dw_plane_int8(const DwPlaneInt8& p);

/// bf16 W as the bf16 kernel reads it: each channel's taps row by row in pairs, one dword per
/// pair with the earlier tap in the high half (vdpbf16ps adds the high product first), a row
/// padded with a zero weight to an even count.
struct DwBf16Weights {
  int64_t channels = 0, kh = 0, kw = 0, pairs = 0;
  std::vector<uint32_t> w;  ///< [channels][kh][pairs]
};
/// w: [channels][kh·kw] bf16 codes.
DwBf16Weights dw_bf16_prepare(const uint16_t* w, int64_t channels, int64_t kh, int64_t kw);

/// One output plane of bf16 codes xp (X rounded to bf16; the padding +0):
///   y[oh·ow_n + ow] = (Σ_{i<kh, j<kw} w[i·kw + j] · x[(oh·sh + i·dh)·xp_stride + ow·sw + j])
///                     · scale + bias
/// the taps in the reference's order (rows, then columns), each product exact in fp32 and added
/// with one rounding, as the float kernel's fused multiply-adds do (but vdpbf16ps treats
/// subnormal inputs and results as zero). Every row of xp must be readable for
/// (ow_n - 1)·sw + 2·pairs + 32 values. sw is 1 or 2; no dilation along the row. `act` as for
/// dw_plane_int8.
struct DwPlaneBf16 {
  const uint16_t* xp = nullptr;
  int64_t xp_stride = 0;
  const uint32_t* w = nullptr;  ///< the channel's [kh][pairs] (DwBf16Weights::w)
  int64_t kh = 0, pairs = 0, sh = 1, sw = 1, dh = 1;
  int64_t oh_n = 0, ow_n = 0;
  float scale = 1.0f, bias = 0.0f;
  const Conv2dParams* act = nullptr;
  float* y = nullptr;
  std::atomic<uint32_t>* y_amax = nullptr;  ///< where given: raised to max |y| (as float bits)
};

/// Whether this CPU runs dw_plane_bf16 (AVX-512 with AVX512_BF16, under the DYNAPREC_ISA cap).
bool dw_bf16_available();
void dw_plane_bf16(const DwPlaneBf16& p);

}  // namespace dynaprec::cpu
