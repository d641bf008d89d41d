// AVX-512 VNNI GEMV kernels for int8 and int4 weights (see gemv_hwy.cc for the others).
//
// vpdpbusd multiplies unsigned bytes by signed bytes and adds groups of four into int32 lanes.
//   int8: x + 128 (unsigned) times W (signed), minus 128 · Σ W, which a second vpdpbusd against a
//     vector of 128s gives. Exact: the int32 result equals Σ xq · W.
//   int4: 64 bytes of a W row hold 4 groups of 32 values (a row's last block may be partial). Low
//   and high nibbles, mapped to
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

// The last block may be partial (k not a multiple of 128): its missing x values are 0, so the
// padding nibbles contribute nothing, and the kernel masks the W bytes and scales it loads.
Int4VnniInput gemv_int4_prepare_vnni(const int8_t* xq, size_t k) {
  Int4VnniInput in;
  in.blocks = (k + 127) / 128;
  in.x_even.assign(in.blocks * 64, 0);
  in.x_odd.assign(in.blocks * 64, 0);
  in.corr.assign(in.blocks * 16, 0);
  for (size_t b = 0; b < in.blocks; ++b)
    for (size_t i = 0; i < 64; ++i) {
      // Byte i of the block: group i / 16, pair i % 16 -> elements 2(i%16) and 2(i%16)+1.
      const size_t e = b * 128 + (i / 16) * 32 + 2 * (i % 16);
      const int8_t xe = e < k ? xq[e] : 0, xo = e + 1 < k ? xq[e + 1] : 0;
      in.x_even[b * 64 + i] = xe;
      in.x_odd[b * 64 + i] = xo;
      in.corr[b * 16 + i / 4] += 8 * (int32_t{xe} + int32_t{xo});
    }
  return in;
}

// One 64-byte block (4 groups) of one W row against the block's x: the fp32 contribution,
// accumulated into fsum.
// `wmask`/`smask`: the W bytes and the group scales that exist in this block (all but in a
// row's partial last block, where the rest would be the next row's data or past the end).
DYNAPREC_VNNI static inline __m512 int4_block(const uint8_t* wrow, const uint16_t* srow, size_t b,
                                              __m512i xe, __m512i xo, __m512i corr, __m512 fsum,
                                              __mmask64 wmask = ~__mmask64{0},
                                              __mmask8 smask = 0xF) {
  const __m512i lo_mask = _mm512_set1_epi8(0x0F);
  const __m512i eight = _mm512_set1_epi8(0x08);
  const __m512i bcast = _mm512_setr_epi32(0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3);
  const __m512i wb = _mm512_maskz_loadu_epi8(wmask, wrow + b * 64);
  const __m512i lo = _mm512_xor_si512(_mm512_and_si512(wb, lo_mask), eight);
  const __m512i hi = _mm512_xor_si512(_mm512_and_si512(_mm512_srli_epi16(wb, 4), lo_mask), eight);
  __m512i acc = _mm512_dpbusd_epi32(_mm512_setzero_si512(), lo, xe);
  acc = _mm512_dpbusd_epi32(acc, hi, xo);
  acc = _mm512_sub_epi32(acc, corr);
  const __m128 s4 = _mm_cvtph_ps(_mm_maskz_loadu_epi16(smask, srow + b * 4));
  const __m512 s16 = _mm512_permutexvar_ps(bcast, _mm512_castps128_ps512(s4));
  return _mm512_fmadd_ps(_mm512_cvtepi32_ps(acc), s16, fsum);
}

// Rows four at a time: each block of x (even, odd, corrections) is loaded once for four rows.
DYNAPREC_VNNI void gemv_int4_rows_vnni(const Int4VnniInput& in, const int8_t* xq, const uint8_t* w,
                                       const uint16_t* scales, size_t k, size_t j0, size_t j1,
                                       float* y) {
  (void)xq;  // everything the kernel needs of x is in `in`
  const size_t row_bytes = (k + 1) / 2, groups = (k + 31) / 32;
  // The partial last block: its bytes and group scales.
  const size_t full = k / 128, last_bytes = row_bytes - full * 64, last_groups = groups - full * 4;
  const __mmask64 wmask = last_bytes >= 64 ? ~__mmask64{0} : (__mmask64{1} << last_bytes) - 1;
  const auto smask = static_cast<__mmask8>((1u << std::min<size_t>(last_groups, 4)) - 1);
  auto block = [&](const uint8_t* row, const uint16_t* srow, size_t b, __m512i xe, __m512i xo,
                   __m512i corr, __m512 f) DYNAPREC_VNNI {
    return b < full ? int4_block(row, srow, b, xe, xo, corr, f)
                    : int4_block(row, srow, b, xe, xo, corr, f, wmask, smask);
  };
  size_t j = j0;
  for (; j + 4 <= j1; j += 4) {
    const uint8_t* r[4];
    const uint16_t* sr[4];
    __m512 f[4];
    for (int i = 0; i < 4; ++i) {
      r[i] = w + (j + i) * row_bytes;
      sr[i] = scales + (j + i) * groups;
      f[i] = _mm512_setzero_ps();
    }
    for (size_t b = 0; b < in.blocks; ++b) {
      const __m512i xe = _mm512_loadu_si512(in.x_even.data() + b * 64);
      const __m512i xo = _mm512_loadu_si512(in.x_odd.data() + b * 64);
      const __m512i corr = _mm512_loadu_si512(in.corr.data() + b * 16);
      for (int i = 0; i < 4; ++i) {
        // Fetch the same place in the row four rows on, which the next pass reads: the rows
        // are short (k/2 bytes), so a fixed distance ahead would start every pass cold.
        _mm_prefetch(reinterpret_cast<const char*>(r[i] + 4 * row_bytes + b * 64), _MM_HINT_T0);
        // The scales are a second stream per row (8 bytes a block): a line every 8 blocks.
        if ((b & 7) == 0)
          _mm_prefetch(reinterpret_cast<const char*>(sr[i] + 4 * groups + b * 4), _MM_HINT_T0);
        f[i] = block(r[i], sr[i], b, xe, xo, corr, f[i]);
      }
    }
    for (int i = 0; i < 4; ++i) y[j + i] = _mm512_reduce_add_ps(f[i]);
  }
  for (; j < j1; ++j) {
    const uint8_t* row = w + j * row_bytes;
    const uint16_t* srow = scales + j * groups;
    __m512 fsum = _mm512_setzero_ps();
    for (size_t b = 0; b < in.blocks; ++b) {
      _mm_prefetch(reinterpret_cast<const char*>(row + b * 64 + 1024), _MM_HINT_T0);
      fsum = block(row, srow, b, _mm512_loadu_si512(in.x_even.data() + b * 64),
                   _mm512_loadu_si512(in.x_odd.data() + b * 64),
                   _mm512_loadu_si512(in.corr.data() + b * 16), fsum);
    }
    y[j] = _mm512_reduce_add_ps(fsum);
  }
}

DYNAPREC_VNNI void gemm_int4_vnni(const std::vector<Int4VnniInput>& xs, size_t i0, size_t i1,
                                  const uint8_t* w, const uint16_t* scales, size_t k, size_t j0,
                                  size_t j1, size_t n, float* y) {
  const size_t row_bytes = (k + 1) / 2, groups = (k + 31) / 32;
  const size_t full = k / 128, last_bytes = row_bytes - full * 64, last_groups = groups - full * 4;
  const __mmask64 wmask = last_bytes >= 64 ? ~__mmask64{0} : (__mmask64{1} << last_bytes) - 1;
  const auto smask = static_cast<__mmask8>((1u << std::min<size_t>(last_groups, 4)) - 1);
  const __m512i lo_mask = _mm512_set1_epi8(0x0F), eight = _mm512_set1_epi8(0x08);
  const __m512i bcast = _mm512_setr_epi32(0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3);
  const size_t blocks = xs.empty() ? 0 : xs[0].blocks;
  for (size_t j = j0; j < j1; ++j) {
    const uint8_t* row = w + j * row_bytes;
    const uint16_t* srow = scales + j * groups;
    size_t i = i0;
    for (; i < i1; i += 4) {
      const size_t rows = std::min<size_t>(4, i1 - i);
      __m512 f[4] = {_mm512_setzero_ps(), _mm512_setzero_ps(), _mm512_setzero_ps(),
                     _mm512_setzero_ps()};
      for (size_t b = 0; b < blocks; ++b) {
        // W's block and its scales, unpacked once for up to four rows of X.
        const bool partial = b >= full;
        const __m512i wb = _mm512_maskz_loadu_epi8(partial ? wmask : ~__mmask64{0}, row + b * 64);
        const __m512i lo = _mm512_xor_si512(_mm512_and_si512(wb, lo_mask), eight);
        const __m512i hi =
            _mm512_xor_si512(_mm512_and_si512(_mm512_srli_epi16(wb, 4), lo_mask), eight);
        const __m128 s4 =
            _mm_cvtph_ps(_mm_maskz_loadu_epi16(partial ? smask : __mmask8{0xF}, srow + b * 4));
        const __m512 s16 = _mm512_permutexvar_ps(bcast, _mm512_castps128_ps512(s4));
        for (size_t t = 0; t < rows; ++t) {
          const Int4VnniInput& in = xs[i + t];
          __m512i acc = _mm512_dpbusd_epi32(_mm512_setzero_si512(), lo,
                                            _mm512_loadu_si512(in.x_even.data() + b * 64));
          acc = _mm512_dpbusd_epi32(acc, hi, _mm512_loadu_si512(in.x_odd.data() + b * 64));
          acc = _mm512_sub_epi32(acc, _mm512_loadu_si512(in.corr.data() + b * 16));
          f[t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(acc), s16, f[t]);
        }
      }
      for (size_t t = 0; t < rows; ++t) y[(i + t) * n + j] = _mm512_reduce_add_ps(f[t]);
    }
  }
}

}  // namespace dynaprec::cpu
