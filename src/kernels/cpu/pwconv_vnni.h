// Pointwise int8 convolution (1x1, stride 1, no padding, one group) on NCHW with AVX-512 VNNI:
// Y[OC, P] = W[OC, C] · X[C, P] per image, straight from and to NCHW, the epilogue (scales,
// bias, activation, affine) on the sums while they are in registers or L1. Against oneDNN's
// convolution it saves the layout reorders of X and Y around it, which cost more than the
// arithmetic at the recognizer's shapes. See pwconv_vnni.cc.
#pragma once

#include <atomic>
#include <cstdint>
#include <vector>

#include "dynaprec/conv.h"

namespace dynaprec::cpu {

/// W as the kernels read it. VNNI: rows padded with zeros to a multiple of 4 (c4), and the
/// compensation 128 · Σ_c W[oc][c]. AMX: rows padded to a multiple of 64 bytes (c64), row count
/// to a multiple of 32.
struct PwInt8Weights {
  int64_t oc = 0, c = 0, c4 = 0, c64 = 0, oc32 = 0;
  std::vector<int8_t> w;      ///< [oc][c4]
  std::vector<int32_t> comp;  ///< [oc]
  std::vector<int8_t> w64;    ///< [oc32][c64] as AMX A tiles (pwconv_vnni.cc amx_a_offset)
};
PwInt8Weights pwconv_int8_prepare(const int8_t* w, int64_t oc, int64_t c);

/// The instruction sets the kernel has: AVX-512 VNNI, and AMX tiles (int8) where the CPU and the
/// OS allow them (Linux asks for the tile state once per process).
enum class PwIsa : uint8_t { kNone, kVnni, kAmx };
/// The best of them on this CPU (under the DYNAPREC_ISA cap).
PwIsa pwconv_int8_isa();

/// One image: xq [C, P] int8 codes of X (one scale sx over all of X); y [OC, P] floats,
/// y = apply_activation(float(Σ_c xq · w) · (sx · wscale[oc]) + bias[oc], p): the reference's
/// arithmetic, bit for bit. bias may be null. Runs on `threads` OpenMP threads with `isa`
/// (kNone: pwconv_int8_isa()); it must be one the CPU has.
/// y_amax, where given: raised to max |y| (as float bits) on the VNNI path (not on AMX).
/// xf, where xq is null (VNNI only): X's floats [C, P] instead, quantized with sx
/// (int8_encode_fast: the reference's codes) a chunk of pixels at a time as they are packed, so
/// that X's NCHW codes are never written and read back.
void pwconv_int8(const int8_t* xq, int64_t pixels, const PwInt8Weights& w, const float* wscale,
                 float sx, const float* bias, const Conv2dParams& p, float* y, int threads,
                 PwIsa isa = PwIsa::kNone, std::atomic<uint32_t>* y_amax = nullptr,
                 const float* xf = nullptr);

/// bf16 on AMX: W's bf16 codes with rows padded to a multiple of 32 values (c32) and the row
/// count to a multiple of 32.
struct PwBf16Weights {
  int64_t oc = 0, c = 0, c32 = 0, oc32 = 0;
  std::vector<uint16_t> w;  ///< [oc32][c32] as AMX A tiles (pwconv_vnni.cc amx_a_offset)
};
PwBf16Weights pwconv_bf16_prepare(const uint16_t* w, int64_t oc, int64_t c);

/// Whether this CPU runs pwconv_bf16 (AMX bf16 tiles, AVX512_BF16, under the DYNAPREC_ISA cap).
bool pwconv_bf16_available();

/// One image: x [C, P] floats, rounded to bf16 as they are packed (round to nearest even; the
/// tiles treat subnormal values as zero); y [OC, P] = apply_activation(Σ_c bf16(x) · w + bias,
/// p) with fp32 sums (products exact, summation order the tiles'). bias may be null.
void pwconv_bf16(const float* x, int64_t pixels, const PwBf16Weights& w, const float* bias,
                 const Conv2dParams& p, float* y, int threads);

/// int8 KxK convolutions with stride 1, dilation 1 and one group on AMX, NCHW in and out (an
/// implicit GEMM: each tap's B tiles are read straight from a zero-padded copy of X's codes,
/// four channels per 32-bit lane). W per tap: [taps][oc32][c64] codes.
struct ConvInt8AmxWeights {
  int64_t oc = 0, c = 0, kh = 0, kw = 0, c64 = 0, oc32 = 0;
  std::vector<int8_t> w;  ///< per tap [oc32][c64] as AMX A tiles (pwconv_vnni.cc amx_a_offset)
};
ConvInt8AmxWeights conv_int8_amx_prepare(const int8_t* w, int64_t oc, int64_t c, int64_t kh,
                                         int64_t kw);

/// One image: xq [C, H, W] codes (scale sx over all of X), padding (top, left, bottom, right),
/// KH · KW <= 49,
/// y [OC, OH, OW] = apply_activation(float(Σ xq · w) · (sx · wscale[oc]) + bias[oc], p) with
/// OH = H + top + bottom - KH + 1 (OW alike): the reference's bits. Needs
/// pwconv_int8_isa() == PwIsa::kAmx.
void conv_int8_amx(const int8_t* xq, int64_t h, int64_t w, const int64_t pads[4],
                   const ConvInt8AmxWeights& cw, const float* wscale, float sx, const float* bias,
                   const Conv2dParams& p, float* y, int threads);

/// The same on AVX-512 VNNI (no AMX): X's codes + 128 padded as for AMX (128 = code 0), tiles of
/// 4 output channels by 64 pixels of one output row summed over the taps and the groups of 4
/// input channels with vpdpbusd, 128 · Σw subtracted at the end. W: [oc][taps][groups] dwords
/// of 4 codes (channels past C zero). Needs pwconv_int8_isa() != PwIsa::kNone; C · KH · KW <=
/// 65536 keeps the sums exact in int32.
struct ConvInt8VnniWeights {
  int64_t oc = 0, c = 0, kh = 0, kw = 0, groups = 0;
  std::vector<int32_t> w;     ///< [oc][kh·kw][groups]
  std::vector<int32_t> comp;  ///< [oc] 128 · Σ w
};
ConvInt8VnniWeights conv_int8_vnni_prepare(const int8_t* w, int64_t oc, int64_t c, int64_t kh,
                                           int64_t kw);
/// y_amax, where given: raised to max |y| (as float bits).
void conv_int8_vnni(const int8_t* xq, int64_t h, int64_t w, const int64_t pads[4],
                    const ConvInt8VnniWeights& cw, const float* wscale, float sx, const float* bias,
                    const Conv2dParams& p, float* y, int threads,
                    std::atomic<uint32_t>* y_amax = nullptr);
/// The same from X's floats, quantized with sx (int8_encode_fast: the reference's codes) row by
/// row as they are packed, so X's NCHW codes are never written.
void conv_int8_vnni_floats(const float* x, int64_t h, int64_t w, const int64_t pads[4],
                           const ConvInt8VnniWeights& cw, const float* wscale, float sx,
                           const float* bias, const Conv2dParams& p, float* y, int threads,
                           std::atomic<uint32_t>* y_amax = nullptr);

/// Float KxK convolutions with stride 1, dilation 1 and one group on AVX-512 without AMX, the
/// int8 walk with fp32 accumulators: fp32 with one channel per 32-bit lane and FMAs; bf16
/// (AVX512_BF16) with X rounded to bf16 (round to nearest even; vdpbf16ps counts subnormal
/// values as zero), two channels per lane and vdpbf16ps. X is packed zero-padded, [hp rows]
/// [groups][wp pixels] lanes; tiles of 4 output channels by 64 pixels of one output row are
/// summed over the taps and the channel groups (products exact, the summation order the
/// tile's). W: [oc][taps][groups] lanes (fp32: the weights' bits; bf16: two codes, channel 2q
/// low, 2q + 1 high, past C zero).
struct ConvFloatWeights {
  Format format = Format::kFp32;  ///< kFp32 or kBf16
  int64_t oc = 0, c = 0, kh = 0, kw = 0;
  int64_t groups = 0;      ///< of channels in a lane: C (fp32) or ceil(C / 2) (bf16)
  std::vector<int32_t> w;  ///< [oc][kh·kw][groups], the lanes' bits
};
/// w: [oc][c][kh][kw] floats (kFp32) or bf16 codes (kBf16).
ConvFloatWeights conv_float_prepare(Format f, const void* w, int64_t oc, int64_t c, int64_t kh,
                                    int64_t kw);
/// Whether this CPU runs conv_float for f (AVX-512 F/BW/DQ/VL with FMA; bf16 also AVX512_BF16;
/// under the DYNAPREC_ISA cap).
bool conv_float_available(Format f);
/// One image: x [C, H, W] floats, padding (top, left, bottom, right), KH · KW <= 49,
/// y [OC, OH, OW] = apply_activation(Σ x'·w + bias[oc], p), x' = x (fp32) or bf16(x). bias may be
/// null. y_amax, where given: raised to max |y| (as float bits).
void conv_float(const float* x, int64_t h, int64_t w, const int64_t pads[4],
                const ConvFloatWeights& cw, const float* bias, const Conv2dParams& p, float* y,
                int threads, std::atomic<uint32_t>* y_amax = nullptr);

}  // namespace dynaprec::cpu
