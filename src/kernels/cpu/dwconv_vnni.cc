// Depthwise int8 convolution on AVX-512 VNNI + VBMI, and bf16 on AVX512_BF16 (dwconv_vnni.h).
//
// The float kernel (dwconv_hwy.cc) spends one fused multiply-add per tap and 16 output pixels.
// Here one vpdpbusd sums four taps of a row for 16 pixels: lane L (output column ow + L) needs
// the input bytes at ow·sw + L·sw + 4g + t (t < 4) of its row for tap group g, which one 64-byte
// load and one vpermb (VBMI: any byte of the register into any byte) put side by side; the
// weights of the group are one broadcast dword. A 5-wide row takes two vpdpbusd (the second with
// three zero weights) where the float kernel takes five FMAs; a 3-wide row, one instead of three.
// The blocks are dw_plane's: R output rows by V vectors of 16 pixels in int32 accumulators, and
// with stride and dilation 1 along H each permuted input vector serves every output row its taps
// reach. The epilogue (pwconv_vnni.cc's): float(acc - 128·Σw) · scale + bias, the activation in
// registers, a masked store of a partial last vector.
//
// bf16 is the same with pairs of taps: one vpermw puts the two bf16 inputs of each lane side by
// side (the earlier tap in the high half, which vdpbf16ps adds first) and one vdpbf16ps adds
// both products to the fp32 lane; a 5-wide row is three instructions instead of five FMAs.
#include "kernels/cpu/dwconv_vnni.h"

#include <algorithm>
#include <bit>
#include <cstring>

#include "dynaprec/convert.h"
#include "dynaprec/cpu_features.h"
#include "dynaprec/error.h"
#include "kernels/cpu/vnni_common.h"

#define DYNAPREC_VNNI_VBMI \
  __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,avx512vnni,avx512vbmi,fma")))
#define DYNAPREC_BF16 __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,avx512bf16,fma")))

namespace dynaprec::cpu {

namespace {

using vnni::activate;
using vnni::atomic_max;
using vnni::dpbusd;
using vnni::Lanes;
using vnni::max_abs_bits;

// vpermb's byte indices: dword L gets bytes L·SW + t, t < 4, of the loaded 64 bytes.
template <int SW>
DYNAPREC_VNNI_VBMI inline __m512i quad_index() {
  alignas(64) uint8_t idx[64];
  for (int l = 0; l < 16; ++l)
    for (int t = 0; t < 4; ++t) idx[4 * l + t] = static_cast<uint8_t>(l * SW + t);
  return _mm512_load_si512(idx);
}

template <int SW, int R, int V>
DYNAPREC_VNNI_VBMI void block(const DwPlaneInt8& p, const Lanes& e, __m512i idx, int64_t oh,
                              int64_t ow) {
  __m512i acc[R][V];
#pragma GCC unroll 4
  for (int r = 0; r < R; ++r)
#pragma GCC unroll 4
    for (int v = 0; v < V; ++v) acc[r][v] = _mm512_setzero_si512();
  const int64_t quads = p.quads;
  if (p.sh == 1 && p.dh == 1) {
    // Input row oh + q serves output row oh + r through tap row q - r.
    for (int64_t q = 0; q < R + p.kh - 1; ++q) {
      const uint8_t* row = p.xp + (oh + q) * p.xp_stride + ow * SW;
      for (int64_t g = 0; g < quads; ++g) {
        __m512i x[V];
#pragma GCC unroll 4
        for (int v = 0; v < V; ++v)
          x[v] = _mm512_permutexvar_epi8(idx, _mm512_loadu_si512(row + 4 * g + v * 16 * SW));
#pragma GCC unroll 4
        for (int r = 0; r < R; ++r) {
          const int64_t i = q - r;
          if (i < 0 || i >= p.kh) continue;
          const __m512i wb = _mm512_set1_epi32(p.w[i * quads + g]);
#pragma GCC unroll 4
          for (int v = 0; v < V; ++v) acc[r][v] = dpbusd(acc[r][v], x[v], wb);
        }
      }
    }
  } else {
    for (int64_t i = 0; i < p.kh; ++i) {
      for (int64_t g = 0; g < quads; ++g) {
        const __m512i wb = _mm512_set1_epi32(p.w[i * quads + g]);
#pragma GCC unroll 4
        for (int r = 0; r < R; ++r) {
          const uint8_t* row = p.xp + ((oh + r) * p.sh + i * p.dh) * p.xp_stride + ow * SW + 4 * g;
#pragma GCC unroll 4
          for (int v = 0; v < V; ++v)
            acc[r][v] = dpbusd(
                acc[r][v], _mm512_permutexvar_epi8(idx, _mm512_loadu_si512(row + v * 16 * SW)), wb);
        }
      }
    }
  }
  const __m512i comp = _mm512_set1_epi32(p.comp);
  const __m512 s = _mm512_set1_ps(p.scale), b = _mm512_set1_ps(p.bias);
  const bool amax = p.y_amax && e.lanes;  // else dw_plane_int8 takes it after the activation
  __m512i mx = _mm512_setzero_si512();
#pragma GCC unroll 4
  for (int r = 0; r < R; ++r) {
    float* yr = p.y + (oh + r) * p.ow_n + ow;
#pragma GCC unroll 4
    for (int v = 0; v < V; ++v) {
      const int64_t left = p.ow_n - ow - 16 * v;
      const auto m = static_cast<__mmask16>(left >= 16 ? 0xFFFF : (1u << left) - 1);
      const __m512 f = _mm512_cvtepi32_ps(_mm512_sub_epi32(acc[r][v], comp));
      const __m512 o = _mm512_add_ps(_mm512_mul_ps(f, s), b);
      const __m512 out = e.lanes ? activate(o, e) : o;
      _mm512_mask_storeu_ps(yr + 16 * v, m, out);
      if (amax) mx = max_abs_bits(mx, m, out);
    }
  }
  if (amax) atomic_max(p.y_amax, _mm512_reduce_max_epu32(mx));
}

// One band of R output rows: blocks of four vectors, never a last block of one (as dw_plane).
template <int SW, int R>
DYNAPREC_VNNI_VBMI void rows(const DwPlaneInt8& p, const Lanes& e, __m512i idx, int64_t oh) {
  const int64_t vectors = (p.ow_n + 15) / 16;
  int64_t v = 0;
  for (; vectors - v > 4; v += vectors - v == 5 ? 3 : 4) {
    if (vectors - v == 5)
      block<SW, R, 3>(p, e, idx, oh, v * 16);
    else
      block<SW, R, 4>(p, e, idx, oh, v * 16);
  }
  switch (vectors - v) {
    case 4:
      block<SW, R, 4>(p, e, idx, oh, v * 16);
      break;
    case 3:
      block<SW, R, 3>(p, e, idx, oh, v * 16);
      break;
    case 2:
      block<SW, R, 2>(p, e, idx, oh, v * 16);
      break;
    case 1:
      block<SW, R, 1>(p, e, idx, oh, v * 16);
      break;
    default:
      break;
  }
}

template <int SW>
DYNAPREC_VNNI_VBMI void plane(const DwPlaneInt8& p, const Lanes& e) {
  const __m512i idx = quad_index<SW>();
  int64_t oh = 0;
  if (p.sh == 1 && p.dh == 1)
    for (; oh + 4 <= p.oh_n; oh += 4) rows<SW, 4>(p, e, idx, oh);
  for (; oh + 2 <= p.oh_n; oh += 2) rows<SW, 2>(p, e, idx, oh);
  if (oh < p.oh_n) rows<SW, 1>(p, e, idx, oh);
}

// ---- bf16 ----------------------------------------------------------------------------------

// vpermw's indices: dword L gets values L·SW + 1 (low half) and L·SW (high half) of the loaded 32.
template <int SW>
DYNAPREC_BF16 inline __m512i pair_index() {
  alignas(64) uint16_t idx[32];
  for (int l = 0; l < 16; ++l) {
    idx[2 * l] = static_cast<uint16_t>(l * SW + 1);
    idx[2 * l + 1] = static_cast<uint16_t>(l * SW);
  }
  return _mm512_load_si512(idx);
}

DYNAPREC_BF16 inline __m512 dpbf16(__m512 acc, __m512i a, __m512i b) {
  return _mm512_dpbf16_ps(acc, (__m512bh)a, (__m512bh)b);
}

template <int SW, int R, int V>
DYNAPREC_BF16 void block_bf16(const DwPlaneBf16& p, const Lanes& e, __m512i idx, int64_t oh,
                              int64_t ow) {
  __m512 acc[R][V];
#pragma GCC unroll 4
  for (int r = 0; r < R; ++r)
#pragma GCC unroll 4
    for (int v = 0; v < V; ++v) acc[r][v] = _mm512_setzero_ps();
  const int64_t pairs = p.pairs;
  if (p.sh == 1 && p.dh == 1) {
    for (int64_t q = 0; q < R + p.kh - 1; ++q) {
      const uint16_t* row = p.xp + (oh + q) * p.xp_stride + ow * SW;
      for (int64_t g = 0; g < pairs; ++g) {
        __m512i x[V];
#pragma GCC unroll 4
        for (int v = 0; v < V; ++v)
          x[v] = _mm512_permutexvar_epi16(idx, _mm512_loadu_si512(row + 2 * g + v * 16 * SW));
#pragma GCC unroll 4
        for (int r = 0; r < R; ++r) {
          const int64_t i = q - r;
          if (i < 0 || i >= p.kh) continue;
          const __m512i wb = _mm512_set1_epi32(static_cast<int32_t>(p.w[i * pairs + g]));
#pragma GCC unroll 4
          for (int v = 0; v < V; ++v) acc[r][v] = dpbf16(acc[r][v], x[v], wb);
        }
      }
    }
  } else {
    for (int64_t i = 0; i < p.kh; ++i) {
      for (int64_t g = 0; g < pairs; ++g) {
        const __m512i wb = _mm512_set1_epi32(static_cast<int32_t>(p.w[i * pairs + g]));
#pragma GCC unroll 4
        for (int r = 0; r < R; ++r) {
          const uint16_t* row = p.xp + ((oh + r) * p.sh + i * p.dh) * p.xp_stride + ow * SW + 2 * g;
#pragma GCC unroll 4
          for (int v = 0; v < V; ++v)
            acc[r][v] =
                dpbf16(acc[r][v],
                       _mm512_permutexvar_epi16(idx, _mm512_loadu_si512(row + v * 16 * SW)), wb);
        }
      }
    }
  }
  const __m512 s = _mm512_set1_ps(p.scale), b = _mm512_set1_ps(p.bias);
  const bool amax = p.y_amax && e.lanes;  // else dw_plane_bf16 takes it after the activation
  __m512i mx = _mm512_setzero_si512();
#pragma GCC unroll 4
  for (int r = 0; r < R; ++r) {
    float* yr = p.y + (oh + r) * p.ow_n + ow;
#pragma GCC unroll 4
    for (int v = 0; v < V; ++v) {
      const int64_t left = p.ow_n - ow - 16 * v;
      const auto m = static_cast<__mmask16>(left >= 16 ? 0xFFFF : (1u << left) - 1);
      const __m512 o = _mm512_add_ps(_mm512_mul_ps(acc[r][v], s), b);
      const __m512 out = e.lanes ? activate(o, e) : o;
      _mm512_mask_storeu_ps(yr + 16 * v, m, out);
      if (amax) mx = max_abs_bits(mx, m, out);
    }
  }
  if (amax) atomic_max(p.y_amax, _mm512_reduce_max_epu32(mx));
}

template <int SW, int R>
DYNAPREC_BF16 void rows_bf16(const DwPlaneBf16& p, const Lanes& e, __m512i idx, int64_t oh) {
  const int64_t vectors = (p.ow_n + 15) / 16;
  int64_t v = 0;
  for (; vectors - v > 4; v += vectors - v == 5 ? 3 : 4) {
    if (vectors - v == 5)
      block_bf16<SW, R, 3>(p, e, idx, oh, v * 16);
    else
      block_bf16<SW, R, 4>(p, e, idx, oh, v * 16);
  }
  switch (vectors - v) {
    case 4:
      block_bf16<SW, R, 4>(p, e, idx, oh, v * 16);
      break;
    case 3:
      block_bf16<SW, R, 3>(p, e, idx, oh, v * 16);
      break;
    case 2:
      block_bf16<SW, R, 2>(p, e, idx, oh, v * 16);
      break;
    case 1:
      block_bf16<SW, R, 1>(p, e, idx, oh, v * 16);
      break;
    default:
      break;
  }
}

template <int SW>
DYNAPREC_BF16 void plane_bf16(const DwPlaneBf16& p, const Lanes& e) {
  const __m512i idx = pair_index<SW>();
  int64_t oh = 0;
  if (p.sh == 1 && p.dh == 1)
    for (; oh + 4 <= p.oh_n; oh += 4) rows_bf16<SW, 4>(p, e, idx, oh);
  for (; oh + 2 <= p.oh_n; oh += 2) rows_bf16<SW, 2>(p, e, idx, oh);
  if (oh < p.oh_n) rows_bf16<SW, 1>(p, e, idx, oh);
}

}  // namespace

DwInt8Weights dw_int8_prepare(const int8_t* w, int64_t channels, int64_t kh, int64_t kw) {
  DwInt8Weights d;
  d.channels = channels;
  d.kh = kh;
  d.kw = kw;
  d.quads = (kw + 3) / 4;
  d.w.assign(static_cast<size_t>(channels * kh * d.quads), 0);
  d.comp.assign(static_cast<size_t>(channels), 0);
  for (int64_t c = 0; c < channels; ++c)
    for (int64_t i = 0; i < kh; ++i)
      for (int64_t j = 0; j < kw; ++j) {
        const int8_t v = w[(c * kh + i) * kw + j];
        auto* quad = reinterpret_cast<int8_t*>(&d.w[static_cast<size_t>((c * kh + i) * d.quads)]);
        quad[j] = v;  // byte j of the row's quads: group j / 4, byte j % 4 (little-endian)
        d.comp[static_cast<size_t>(c)] += 128 * v;
      }
  return d;
}

bool dw_int8_available() {
  const CpuFeatures& f = cpu_features();
  return f.avx512f && f.avx512bw && f.avx512vl && f.avx512dq && f.avx512_vnni && f.avx512_vbmi &&
         f.fma;
}

void dw_plane_int8(const DwPlaneInt8& p) {
  DP_CHECK(p.sw == 1 || p.sw == 2, "dw_plane_int8: stride along the row must be 1 or 2");
  const Lanes e(p.act ? *p.act : Conv2dParams{});
  if (p.sw == 1)
    plane<1>(p, e);
  else
    plane<2>(p, e);
  if (p.act && !e.lanes) {
    apply_activation_n(p.y, p.oh_n * p.ow_n, *p.act);
    if (p.y_amax)
      atomic_max(p.y_amax,
                 std::bit_cast<uint32_t>(amax(p.y, static_cast<size_t>(p.oh_n * p.ow_n))));
  }
}

DwBf16Weights dw_bf16_prepare(const uint16_t* w, int64_t channels, int64_t kh, int64_t kw) {
  DwBf16Weights d;
  d.channels = channels;
  d.kh = kh;
  d.kw = kw;
  d.pairs = (kw + 1) / 2;
  d.w.assign(static_cast<size_t>(channels * kh * d.pairs), 0);
  for (int64_t c = 0; c < channels; ++c)
    for (int64_t i = 0; i < kh; ++i)
      for (int64_t j = 0; j < kw; ++j) {
        const uint32_t code = w[(c * kh + i) * kw + j];
        // Tap 2g in the high half, tap 2g + 1 in the low half of pair g.
        d.w[static_cast<size_t>((c * kh + i) * d.pairs + j / 2)] |= j % 2 ? code : code << 16;
      }
  return d;
}

bool dw_bf16_available() {
  const CpuFeatures& f = cpu_features();
  return f.avx512f && f.avx512bw && f.avx512vl && f.avx512dq && f.avx512_bf16 && f.fma;
}

void dw_plane_bf16(const DwPlaneBf16& p) {
  DP_CHECK(p.sw == 1 || p.sw == 2, "dw_plane_bf16: stride along the row must be 1 or 2");
  const Lanes e(p.act ? *p.act : Conv2dParams{});
  if (p.sw == 1)
    plane_bf16<1>(p, e);
  else
    plane_bf16<2>(p, e);
  if (p.act && !e.lanes) {
    apply_activation_n(p.y, p.oh_n * p.ow_n, *p.act);
    if (p.y_amax)
      atomic_max(p.y_amax,
                 std::bit_cast<uint32_t>(amax(p.y, static_cast<size_t>(p.oh_n * p.ow_n))));
  }
}

}  // namespace dynaprec::cpu
