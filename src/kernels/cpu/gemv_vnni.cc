// AVX-512 VNNI GEMV kernels for int8 and int4 weights (see gemv_hwy.cc for the others).
//
// vpdpbusd multiplies unsigned bytes by signed bytes and adds groups of four into int32 lanes.
//   int8: x + 128 (unsigned) times W (signed), minus 128 · Σ W, which a second vpdpbusd against a
//     vector of 128s gives. Exact: the int32 result equals Σ xq · W.
//   int4: 64 bytes of a W row hold 4 groups of 32 values. Low and high nibbles, mapped to
//     q + 8 in [0, 15], are the unsigned operand; x, rearranged per block into the elements that
//     meet the low nibbles (even) and the high nibbles (odd), the signed one. 8 · Σ x per lane is
//     subtracted, each group's 4 lanes are scaled by its fp16 scale, and all is summed in fp32.
// Functions carry their own target attribute (Highway 1.0.3's AVX3_DL target string lacks
// avx512vnni), and are only called when the CPU has it.
#include <immintrin.h>

#include <algorithm>

#include "dynaprec/convert.h"
#include "kernels/cpu/gemv_hwy.h"

#define DYNAPREC_VNNI \
  __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,avx512vnni,f16c,fma")))

namespace dynaprec::cpu {

DYNAPREC_VNNI void gemv_int8_rows_vnni(const int8_t* xq, const int8_t* w, size_t k, size_t j0,
                                       size_t j1, int32_t* acc_out) {
  std::vector<uint8_t> xu(k);
  for (size_t p = 0; p < k; ++p) xu[p] = static_cast<uint8_t>(xq[p] ^ 0x80);
  const __m512i k128 = _mm512_set1_epi8(static_cast<char>(0x80));
  for (size_t j = j0; j < j1; ++j) {
    const int8_t* row = w + j * k;
    __m512i acc = _mm512_setzero_si512(), corr = _mm512_setzero_si512();
    __m512i acc2 = _mm512_setzero_si512(), corr2 = _mm512_setzero_si512();
    size_t p = 0;
    for (; p + 128 <= k; p += 128) {
      _mm_prefetch(reinterpret_cast<const char*>(row + p + 2048), _MM_HINT_T0);
      _mm_prefetch(reinterpret_cast<const char*>(row + p + 2048 + 64), _MM_HINT_T0);
      const __m512i w0 = _mm512_loadu_si512(row + p);
      const __m512i w1 = _mm512_loadu_si512(row + p + 64);
      acc = _mm512_dpbusd_epi32(acc, _mm512_loadu_si512(xu.data() + p), w0);
      corr = _mm512_dpbusd_epi32(corr, k128, w0);
      acc2 = _mm512_dpbusd_epi32(acc2, _mm512_loadu_si512(xu.data() + p + 64), w1);
      corr2 = _mm512_dpbusd_epi32(corr2, k128, w1);
    }
    for (; p < k; p += 64) {
      const size_t left = k - p;
      const __mmask64 m = left >= 64 ? ~__mmask64{0} : (__mmask64{1} << left) - 1;
      const __m512i w0 = _mm512_maskz_loadu_epi8(m, row + p);
      acc = _mm512_dpbusd_epi32(acc, _mm512_maskz_loadu_epi8(m, xu.data() + p), w0);
      corr = _mm512_dpbusd_epi32(corr, k128, w0);
    }
    acc = _mm512_add_epi32(acc, acc2);
    corr = _mm512_add_epi32(corr, corr2);
    acc_out[j] = _mm512_reduce_add_epi32(_mm512_sub_epi32(acc, corr));
  }
}

Int4VnniInput gemv_int4_prepare_vnni(const int8_t* xq, size_t k) {
  Int4VnniInput in;
  in.blocks = k / 128;
  in.x_even.resize(in.blocks * 64);
  in.x_odd.resize(in.blocks * 64);
  in.corr.resize(in.blocks * 16);
  for (size_t b = 0; b < in.blocks; ++b)
    for (size_t i = 0; i < 64; ++i) {
      // Byte i of the block: group i / 16, pair i % 16 -> elements 2(i%16) and 2(i%16)+1.
      const size_t e = b * 128 + (i / 16) * 32 + 2 * (i % 16);
      in.x_even[b * 64 + i] = xq[e];
      in.x_odd[b * 64 + i] = xq[e + 1];
      in.corr[b * 16 + i / 4] += 8 * (int32_t{xq[e]} + int32_t{xq[e + 1]});
    }
  return in;
}

DYNAPREC_VNNI void gemv_int4_rows_vnni(const Int4VnniInput& in, const int8_t* xq, const uint8_t* w,
                                       const uint16_t* scales, size_t k, size_t j0, size_t j1,
                                       float* y) {
  const size_t row_bytes = (k + 1) / 2, groups = (k + 31) / 32;
  const __m512i lo_mask = _mm512_set1_epi8(0x0F);
  const __m512i eight = _mm512_set1_epi8(0x08);
  const __m512i bcast = _mm512_setr_epi32(0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3);
  for (size_t j = j0; j < j1; ++j) {
    const uint8_t* row = w + j * row_bytes;
    const uint16_t* srow = scales + j * groups;
    __m512 fsum = _mm512_setzero_ps();
    for (size_t b = 0; b < in.blocks; ++b) {
      _mm_prefetch(reinterpret_cast<const char*>(row + b * 64 + 1024), _MM_HINT_T0);
      const __m512i wb = _mm512_loadu_si512(row + b * 64);
      const __m512i lo = _mm512_xor_si512(_mm512_and_si512(wb, lo_mask), eight);
      const __m512i hi =
          _mm512_xor_si512(_mm512_and_si512(_mm512_srli_epi16(wb, 4), lo_mask), eight);
      __m512i acc = _mm512_dpbusd_epi32(_mm512_setzero_si512(), lo,
                                        _mm512_loadu_si512(in.x_even.data() + b * 64));
      acc = _mm512_dpbusd_epi32(acc, hi, _mm512_loadu_si512(in.x_odd.data() + b * 64));
      acc = _mm512_sub_epi32(acc, _mm512_loadu_si512(in.corr.data() + b * 16));
      const __m128 s4 =
          _mm_cvtph_ps(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(srow + b * 4)));
      const __m512 s16 = _mm512_permutexvar_ps(bcast, _mm512_castps128_ps512(s4));
      fsum = _mm512_fmadd_ps(_mm512_cvtepi32_ps(acc), s16, fsum);
    }
    float sum = _mm512_reduce_add_ps(fsum);
    for (size_t g = in.blocks * 4; g < groups; ++g) {
      int32_t acc = 0;
      for (size_t p = g * 32; p < std::min(k, g * 32 + 32); ++p) {
        const uint8_t byte = row[p / 2];
        acc += int32_t{xq[p]} * (static_cast<int32_t>(((p % 2 ? byte >> 4 : byte) & 0xF) ^ 8) - 8);
      }
      sum += static_cast<float>(acc) * ref::decode_float(Format::kFp16, srow[g]);
    }
    y[j] = sum;
  }
}

}  // namespace dynaprec::cpu
