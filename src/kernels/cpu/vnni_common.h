// AVX-512 pieces that the int8 VNNI convolution kernels share (pwconv_vnni.cc, dwconv_vnni.cc):
// the target attribute, vpdpbusd on accumulators kept in registers, and the activation epilogue
// on 16 float lanes.
#pragma once

#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"
#include <immintrin.h>
#pragma GCC diagnostic pop

#include <atomic>
#include <cstdint>

#include "dynaprec/conv.h"

#define DYNAPREC_VNNI __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,avx512vnni,fma")))

namespace dynaprec::cpu::vnni {

// apply_activation on 16 lanes, bit for bit (as ops_hwy.cc's ActivationRowF32: compare + select
// for std::max/min, the affine as a product then a sum), for every activation but sigmoid
// (whose exp stays the scalar call: `lanes` false, the caller runs apply_activation_n after
// storing). Applied to the sums while they are in registers: a call per short row cost more
// than the arithmetic.
struct Lanes {
  bool lanes, affine;
  Activation act;
  float lo, hi, a, b;
  explicit Lanes(const Conv2dParams& p)
      : lanes(p.activation != Activation::kSigmoid),
        affine(p.post_affine),
        act(p.activation),
        lo(p.clip_min),
        hi(p.clip_max),
        a(p.post_scale),
        b(p.post_shift) {}
};
__attribute__((target("avx512f"), always_inline)) inline __m512 activate(__m512 v, const Lanes& e) {
  const __m512 zero = _mm512_setzero_ps();
  switch (e.act) {
    case Activation::kRelu:
      v = _mm512_mask_blend_ps(_mm512_cmp_ps_mask(v, zero, _CMP_LT_OQ), v, zero);
      break;
    case Activation::kClip: {
      const __m512 lo = _mm512_set1_ps(e.lo), hi = _mm512_set1_ps(e.hi);
      v = _mm512_mask_blend_ps(_mm512_cmp_ps_mask(v, lo, _CMP_LT_OQ), v, lo);
      v = _mm512_mask_blend_ps(_mm512_cmp_ps_mask(hi, v, _CMP_LT_OQ), v, hi);
      break;
    }
    case Activation::kHardSwish: {
      const __m512 six = _mm512_set1_ps(6.0f);
      __m512 t = _mm512_add_ps(v, _mm512_set1_ps(3.0f));
      t = _mm512_mask_blend_ps(_mm512_cmp_ps_mask(t, zero, _CMP_LT_OQ), t, zero);
      t = _mm512_mask_blend_ps(_mm512_cmp_ps_mask(six, t, _CMP_LT_OQ), t, six);
      v = _mm512_div_ps(_mm512_mul_ps(v, t), six);
      break;
    }
    default:
      break;
  }
  if (e.affine) v = _mm512_add_ps(_mm512_mul_ps(v, _mm512_set1_ps(e.a)), _mm512_set1_ps(e.b));
  return v;
}

// acc += Σ4 a (unsigned bytes) · b (signed bytes), in place: GCC 12 copies the accumulators
// around _mm512_dpbusd_epi32 (and spills them) in this loop; the asm keeps each in its register.
DYNAPREC_VNNI inline __m512i dpbusd(__m512i acc, __m512i a, __m512i b) {
  asm("vpdpbusd %2, %1, %0" : "+v"(acc) : "v"(a), "v"(b));
  return acc;
}

// mx (unsigned lanes) raised to |v|'s bits in the lanes of m: for floats, the order of the bits
// of |v| is the order of the values, with +inf above every finite value and NaN above +inf.
__attribute__((target("avx512f"), always_inline)) inline __m512i max_abs_bits(__m512i mx,
                                                                              __mmask16 m,
                                                                              __m512 v) {
  const __m512i bits = _mm512_and_si512(_mm512_castps_si512(v), _mm512_set1_epi32(0x7FFFFFFF));
  return _mm512_mask_max_epu32(mx, m, mx, bits);
}

// *a = max(*a, v), from any thread.
inline void atomic_max(std::atomic<uint32_t>* a, uint32_t v) {
  uint32_t cur = a->load(std::memory_order_relaxed);
  while (v > cur && !a->compare_exchange_weak(cur, v, std::memory_order_relaxed)) {
  }
}

}  // namespace dynaprec::cpu::vnni
