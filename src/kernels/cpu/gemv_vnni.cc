// AVX-512 GEMV kernels with their own target attributes: int8 and int4 weights on VNNI, fp8
// weights on GFNI/VBMI (see gemv_hwy.cc for the others).
//
// vpdpbusd multiplies unsigned bytes by signed bytes and adds groups of four into int32 lanes.
//   int8: W with its sign bit flipped, w + 128 (unsigned), times x (signed); each lane's sum
//     starts at -128 · Σ x of the elements it meets (prepared once per call). Exact: the int32
//     result equals Σ xq · W.
//   int4: 64 bytes of a W row hold 4 groups of 32 values (a row's last block may be partial). Low
//     and high nibbles, mapped to q + 8 in [0, 15], are the unsigned operand; x, rearranged per
//     block into the elements that meet the low nibbles (even) and the high nibbles (odd), the
//     signed one. Each lane's sum starts at -8 · Σ x of its elements, so it ends exact (Σ q · x);
//     each group's 4 lanes are scaled by its fp16 scale and all is summed in fp32. The nibbles
//     take one GFNI affine byte map each (a bit move and the XOR with 8) where the CPU has GFNI;
//     the scales of 4 blocks (16 groups) are converted at once.
//   fp8: each code is widened to the top 16 bits of an fp32 (a bf16 pattern) worth 2^8 (e4m3) or
//     2^16 (e5m2) times its value: two GFNI affine byte maps give the pattern's two bytes (the
//     exponent rebias is an OR there because the fp8 exponent field lands below a fixed 1 bit),
//     byte unpacks pair them, and a shift or a mask puts each in an fp32 lane for the FMA. The
//     map is only right for normal codes; a 64-code block with a zero or subnormal code (rare in
//     trained weights) takes exact 128-entry byte tables (vpermt2b) instead. Every fp8 value is
//     exact in bf16, products with bf16-rounded x are exact in fp32; the power of two is undone
//     per row.
// Functions carry their own target attribute (Highway 1.0.3's AVX3_DL target string lacks
// avx512vnni), and are only called when the CPU has it.

// GCC 12 flags the undefined pass-through operand of AVX-512 intrinsics (_mm512_undefined_*)
// once they are inlined into loops: a false positive, silenced for the header's lines only.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"
#include <immintrin.h>
#pragma GCC diagnostic pop
#include <algorithm>
#include <bit>
#include <cmath>

#include "dynaprec/convert.h"
#include "kernels/cpu/gemv_hwy.h"

#define DYNAPREC_VNNI \
  __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,avx512vnni,f16c,fma")))
#define DYNAPREC_FP8 \
  __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,avx512vbmi,gfni,fma")))

namespace dynaprec::cpu {

namespace {

// The prefetches of every GEMV kernel here: the rows are taken R at a time, and each R-row pass
// fetches into L2 the same place R rows on (which the next pass reads; the rows are short, so a
// fixed distance ahead would start every pass cold), and into L1 a few lines ahead in its own
// rows. With R = 8 this keeps the L1 for the lines in use and x, and two cores read W at
// 94-97% of the STREAM triad (R = 4 with both into L1: 83-88%; docs/benchmarks.md).
constexpr size_t kL1Ahead = 256;

inline void prefetch_rows(const void* here, size_t next_pass_bytes) {
  const auto* p = static_cast<const char*>(here);
  _mm_prefetch(p + next_pass_bytes, _MM_HINT_T1);
  _mm_prefetch(p + kL1Ahead, _MM_HINT_T0);
}

// int8: R rows of W against x, 64 bytes at a time (the last block masked). W's bytes with the
// sign bit flipped are w + 128 (unsigned), times x (signed); each lane's sum starts at -128 Σ x
// over the elements it meets, so it ends at Σ x · w, exactly (int32 wraps, the result fits).
template <int R>
DYNAPREC_VNNI inline void int8_pass(const int8_t* xp, __m512i start, size_t blocks, size_t full,
                                    __mmask64 tail, const int8_t* w, size_t k, int32_t* out) {
  const __m512i flip = _mm512_set1_epi8(static_cast<char>(0x80));
  __m512i acc[R];
  for (int i = 0; i < R; ++i) acc[i] = start;
  for (size_t b = 0; b < blocks; ++b) {
    const __m512i xv = _mm512_loadu_si512(xp + b * 64);
#pragma GCC unroll 8
    for (int i = 0; i < R; ++i) {
      const int8_t* row = w + i * k + b * 64;
      prefetch_rows(row, R * k);
      const __m512i wv = b < full ? _mm512_loadu_si512(row) : _mm512_maskz_loadu_epi8(tail, row);
      acc[i] = _mm512_dpbusd_epi32(acc[i], _mm512_xor_si512(wv, flip), xv);
    }
  }
  for (int i = 0; i < R; ++i) out[i] = _mm512_reduce_add_epi32(acc[i]);
}

}  // namespace

Int8VnniInput gemv_int8_prepare_vnni(const int8_t* xq, size_t k) {
  Int8VnniInput in;
  in.blocks = (k + 63) / 64;
  in.x.assign(in.blocks * 64, 0);
  for (size_t p = 0; p < k; ++p) {
    in.x[p] = xq[p];
    in.start[(p % 64) / 4] -= 128 * int32_t{xq[p]};
  }
  return in;
}

DYNAPREC_VNNI void gemv_int8_rows_vnni(const Int8VnniInput& in, const int8_t* w, size_t k,
                                       size_t j0, size_t j1, int32_t* acc_out) {
  const size_t full = k / 64;
  const __mmask64 tail = (__mmask64{1} << (k % 64)) - 1;  // unused when k % 64 == 0
  const __m512i sv = _mm512_loadu_si512(in.start.data());
  const int8_t* xp = in.x.data();
  size_t j = j0;
  for (; j + 8 <= j1; j += 8)
    int8_pass<8>(xp, sv, in.blocks, full, tail, w + j * k, k, acc_out + j);
  for (; j < j1; ++j) int8_pass<1>(xp, sv, in.blocks, full, tail, w + j * k, k, acc_out + j);
}

void gemv_int8_rows_vnni(const int8_t* xq, const int8_t* w, size_t k, size_t j0, size_t j1,
                         int32_t* acc) {
  gemv_int8_rows_vnni(gemv_int8_prepare_vnni(xq, k), w, k, j0, j1, acc);
}

namespace {

bool has_gfni() {
  static const bool yes = __builtin_cpu_supports("gfni");
  return yes;
}

// vgf2p8affineqb for the int4 kernels, which also run without GFNI (Cascade Lake): inline
// assembly keeps the instruction out of the compiler's target checks, and it only runs when
// has_gfni(). Each byte of x -> A · x ⊕ kImm over GF(2), A: 8 rows (row i at byte 7 - i).
template <int kImm>
DYNAPREC_VNNI inline __m512i gf_affine(__m512i x, __m512i a) {
  __m512i r;
  asm("vgf2p8affineqb %3, %2, %1, %0" : "=v"(r) : "v"(x), "v"(a), "i"(kImm));
  return r;
}

// The unsigned operands of a W block: low and high nibbles, each q + 8 = nibble ^ 8.
template <bool kGfni>
DYNAPREC_VNNI inline void int4_nibbles(__m512i wb, __m512i& lo, __m512i& hi) {
  if constexpr (kGfni) {
    lo = gf_affine<0x08>(wb, _mm512_set1_epi64(0x0102040800000000));  // bits 3:0 -> 3:0
    hi = gf_affine<0x08>(wb, _mm512_set1_epi64(0x1020408000000000));  // bits 7:4 -> 3:0
  } else {
    const __m512i low4 = _mm512_set1_epi8(0x0F), eight = _mm512_set1_epi8(0x08);
    lo = _mm512_ternarylogic_epi32(wb, low4, eight, 0x6A);  // (a & b) ^ c
    hi = _mm512_ternarylogic_epi32(_mm512_srli_epi16(wb, 4), low4, eight, 0x6A);
  }
}

// Group g's scale in lanes 4g..4g+3 for the 4 groups of a block (`smask`: the groups that exist).
DYNAPREC_VNNI inline __m512 int4_scales4(const uint16_t* s, __mmask8 smask) {
  const __m512i bcast = _mm512_setr_epi32(0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3);
  const __m128 s4 = _mm_cvtph_ps(_mm_maskz_loadu_epi16(smask, s));
  return _mm512_permutexvar_ps(bcast, _mm512_castps128_ps512(s4));
}

// Block b's exact per-lane sums Σ q · x of one W row (`wmask`: the bytes that exist).
template <bool kGfni>
DYNAPREC_VNNI inline __m512i int4_dot(const uint8_t* wrow, size_t b, __m512i xe, __m512i xo,
                                      __m512i neg_corr, __mmask64 wmask) {
  __m512i lo, hi;
  int4_nibbles<kGfni>(_mm512_maskz_loadu_epi8(wmask, wrow + b * 64), lo, hi);
  return _mm512_dpbusd_epi32(_mm512_dpbusd_epi32(neg_corr, lo, xe), hi, xo);
}

// The partial last block of a row: its bytes and group scales.
struct Int4Tail {
  size_t full;  ///< blocks with all 128 values
  __mmask64 wmask;
  __mmask8 smask;
};
Int4Tail int4_tail(size_t k) {
  const size_t row_bytes = (k + 1) / 2, groups = (k + 31) / 32, full = k / 128;
  const size_t last_bytes = row_bytes - full * 64, last_groups = groups - full * 4;
  return {full, last_bytes >= 64 ? ~__mmask64{0} : (__mmask64{1} << last_bytes) - 1,
          static_cast<__mmask8>((1u << std::min<size_t>(last_groups, 4)) - 1)};
}

// R rows of W. Full blocks go in runs of four (16 groups): per run and row, the scales are
// converted with one vcvtph2ps and spread to each block's lanes with one permute; x's blocks
// (even, odd, corrections) are reloaded for every row from L1, which keeps the registers for R
// accumulators. The rest (up to 3 full blocks and a partial one) goes block by block.
template <int R, bool kGfni>
DYNAPREC_VNNI inline void int4_pass(const Int4VnniInput& in, const Int4Tail& tail, const uint8_t* w,
                                    const uint16_t* s, size_t row_bytes, size_t groups, float* y) {
  const int8_t* xe = in.x_even.data();
  const int8_t* xo = in.x_odd.data();
  const int32_t* nc = in.neg_corr.data();
  __m512 f[R];
  for (int i = 0; i < R; ++i) f[i] = _mm512_setzero_ps();
  const size_t runs = tail.full / 4;
  for (size_t run = 0; run < runs; ++run) {
    const size_t b0 = 4 * run;
#pragma GCC unroll 8
    for (int i = 0; i < R; ++i) {
      const uint8_t* row = w + i * row_bytes;
      const uint16_t* srow = s + i * groups + b0 * 4;
      // The scales are a second stream per row (8 bytes a block): a line every 8 blocks.
      if (run % 2 == 0) _mm_prefetch(reinterpret_cast<const char*>(srow + R * groups), _MM_HINT_T1);
      const __m512 s16 =
          _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(srow)));
#pragma GCC unroll 4
      for (int bb = 0; bb < 4; ++bb) {
        const size_t b = b0 + bb;
        // Block bb's lanes 4g..4g+3 <- scale 4·bb + g of the run.
        const __m512i spread =
            _mm512_add_epi32(_mm512_set1_epi32(4 * bb),
                             _mm512_setr_epi32(0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3));
        prefetch_rows(row + b * 64, R * row_bytes);
        __m512i lo, hi;
        int4_nibbles<kGfni>(_mm512_loadu_si512(row + b * 64), lo, hi);
        __m512i acc = _mm512_dpbusd_epi32(_mm512_loadu_si512(nc + b * 16), lo,
                                          _mm512_loadu_si512(xe + b * 64));
        acc = _mm512_dpbusd_epi32(acc, hi, _mm512_loadu_si512(xo + b * 64));
        f[i] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(acc), _mm512_permutexvar_ps(spread, s16), f[i]);
      }
    }
  }
  for (size_t b = 4 * runs; b < in.blocks; ++b) {
    const bool partial = b >= tail.full;
    for (int i = 0; i < R; ++i) {
      const uint8_t* row = w + i * row_bytes;
      prefetch_rows(row + b * 64, R * row_bytes);
      const __m512i acc =
          int4_dot<kGfni>(row, b, _mm512_loadu_si512(xe + b * 64), _mm512_loadu_si512(xo + b * 64),
                          _mm512_loadu_si512(nc + b * 16), partial ? tail.wmask : ~__mmask64{0});
      f[i] =
          _mm512_fmadd_ps(_mm512_cvtepi32_ps(acc),
                          int4_scales4(s + i * groups + b * 4, partial ? tail.smask : 0xF), f[i]);
    }
  }
  for (int i = 0; i < R; ++i) y[i] = _mm512_reduce_add_ps(f[i]);
}

template <bool kGfni>
DYNAPREC_VNNI void int4_rows(const Int4VnniInput& in, const uint8_t* w, const uint16_t* scales,
                             size_t k, size_t j0, size_t j1, float* y) {
  const size_t row_bytes = (k + 1) / 2, groups = (k + 31) / 32;
  const Int4Tail tail = int4_tail(k);
  size_t j = j0;
  for (; j + 8 <= j1; j += 8)
    int4_pass<8, kGfni>(in, tail, w + j * row_bytes, scales + j * groups, row_bytes, groups, y + j);
  for (; j < j1; ++j)
    int4_pass<1, kGfni>(in, tail, w + j * row_bytes, scales + j * groups, row_bytes, groups, y + j);
}

template <bool kGfni>
DYNAPREC_VNNI void int4_gemm(const std::vector<Int4VnniInput>& xs, size_t i0, size_t i1,
                             const uint8_t* w, const uint16_t* scales, size_t k, size_t j0,
                             size_t j1, size_t n, float* y) {
  const size_t row_bytes = (k + 1) / 2, groups = (k + 31) / 32;
  const Int4Tail tail = int4_tail(k);
  const size_t blocks = xs.empty() ? 0 : xs[0].blocks;
  for (size_t j = j0; j < j1; ++j) {
    const uint8_t* row = w + j * row_bytes;
    const uint16_t* srow = scales + j * groups;
    for (size_t i = i0; i < i1; i += 4) {
      const size_t rows = std::min<size_t>(4, i1 - i);
      __m512 f[4] = {_mm512_setzero_ps(), _mm512_setzero_ps(), _mm512_setzero_ps(),
                     _mm512_setzero_ps()};
      for (size_t b = 0; b < blocks; ++b) {
        // W's block and its scales, unpacked once for up to four rows of X.
        const bool partial = b >= tail.full;
        __m512i lo, hi;
        int4_nibbles<kGfni>(
            _mm512_maskz_loadu_epi8(partial ? tail.wmask : ~__mmask64{0}, row + b * 64), lo, hi);
        const __m512 s16 = int4_scales4(srow + b * 4, partial ? tail.smask : 0xF);
        for (size_t t = 0; t < rows; ++t) {
          const Int4VnniInput& in = xs[i + t];
          __m512i acc = _mm512_dpbusd_epi32(_mm512_loadu_si512(in.neg_corr.data() + b * 16), lo,
                                            _mm512_loadu_si512(in.x_even.data() + b * 64));
          acc = _mm512_dpbusd_epi32(acc, hi, _mm512_loadu_si512(in.x_odd.data() + b * 64));
          f[t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(acc), s16, f[t]);
        }
      }
      for (size_t t = 0; t < rows; ++t) y[(i + t) * n + j] = _mm512_reduce_add_ps(f[t]);
    }
  }
}

}  // namespace

// The last block may be partial (k not a multiple of 128): its missing x values are 0, so the
// padding nibbles contribute nothing, and the kernel masks the W bytes and scales it loads.
// Byte j of a row (block j / 64, group (j % 64) / 16) holds elements 2j and 2j + 1: x_even and
// x_odd are x deinterleaved, and lane j / 4 meets bytes 4 (j / 4) .. 4 (j / 4) + 3.
Int4VnniInput gemv_int4_prepare_vnni(const int8_t* xq, size_t k) {
  Int4VnniInput in;
  in.blocks = (k + 127) / 128;
  in.x_even.assign(in.blocks * 64, 0);
  in.x_odd.assign(in.blocks * 64, 0);
  in.neg_corr.assign(in.blocks * 16, 0);
  const size_t pairs = k / 2;
  for (size_t j = 0; j < pairs; ++j) {
    in.x_even[j] = xq[2 * j];
    in.x_odd[j] = xq[2 * j + 1];
  }
  if (k % 2) in.x_even[pairs] = xq[k - 1];
  for (size_t j = 0; j < (k + 1) / 2; ++j)
    in.neg_corr[j / 4] -= 8 * (int32_t{in.x_even[j]} + int32_t{in.x_odd[j]});
  return in;
}

void gemv_int4_rows_vnni(const Int4VnniInput& in, const int8_t* xq, const uint8_t* w,
                         const uint16_t* scales, size_t k, size_t j0, size_t j1, float* y) {
  (void)xq;  // everything the kernel needs of x is in `in`
  if (has_gfni())
    int4_rows<true>(in, w, scales, k, j0, j1, y);
  else
    int4_rows<false>(in, w, scales, k, j0, j1, y);
}

void gemm_int4_vnni(const std::vector<Int4VnniInput>& xs, size_t i0, size_t i1, const uint8_t* w,
                    const uint16_t* scales, size_t k, size_t j0, size_t j1, size_t n, float* y) {
  if (has_gfni())
    int4_gemm<true>(xs, i0, i1, w, scales, k, j0, j1, n, y);
  else
    int4_gemm<false>(xs, i0, i1, w, scales, k, j0, j1, n, y);
}

// --- fp8 -------------------------------------------------------------------------------------

namespace {

// Per format: the exact tables (the bf16 pattern of code c's value times 2^shift, for the 128
// magnitudes: low bytes, high bytes without the sign), the two affine maps for normal codes, the
// exponent-field mask (a code with a zero field takes the tables) and 2^-shift.
struct Fp8Consts {
  alignas(64) uint8_t lo[128];
  alignas(64) uint8_t hi[128];
  uint64_t a_hi, a_lo;
  uint8_t exp_mask;
  float unscale;
};

// An affine map's matrix: output bit `to` takes input bit `from` (row i at byte 7 - i).
constexpr uint64_t bit_map(std::initializer_list<std::pair<int, int>> moves) {
  uint64_t a = 0;
  for (const auto& [to, from] : moves) a |= uint64_t{1} << (8 * (7 - to) + from);
  return a;
}

Fp8Consts make_fp8_consts(Format f) {
  Fp8Consts c{};
  // The bf16 exponent field of a normal code is 0x80 + e, an OR below bit 7 (e < 16 or 32):
  // worth 2^(e + 1) · (1 + m), i.e. 2^8 (e4m3, bias 7) or 2^16 (e5m2, bias 15) times the value.
  // High byte: the sign, then exponent bits 7..1 (1, 0, 0, then e4m3: 0, e3, e2, e1; e5m2: e4,
  // e3, e2, e1), the 1 being the affine map's constant 0x40; low byte: e0, then the mantissa.
  const bool e4 = f == Format::kFp8E4M3;
  const int shift = e4 ? 8 : 16;
  c.unscale = std::ldexp(1.0f, -shift);
  c.exp_mask = e4 ? 0x78 : 0x7C;
  c.a_hi = e4 ? bit_map({{7, 7}, {2, 6}, {1, 5}, {0, 4}})
              : bit_map({{7, 7}, {3, 6}, {2, 5}, {1, 4}, {0, 3}});
  c.a_lo = e4 ? bit_map({{7, 3}, {6, 2}, {5, 1}, {4, 0}}) : bit_map({{7, 2}, {6, 1}, {5, 0}});
  for (uint32_t code = 0; code < 128; ++code) {
    const float v = ref::decode_float(f, code);
    // Codes weights never hold (NaN; inf for e5m2): a NaN pattern.
    const uint32_t bits =
        std::isfinite(v) ? std::bit_cast<uint32_t>(std::ldexp(v, shift)) : 0x7FC00000u;
    c.lo[code] = static_cast<uint8_t>(bits >> 16);
    c.hi[code] = static_cast<uint8_t>(bits >> 24);
  }
  return c;
}

const Fp8Consts& fp8_consts(Format f) {
  static const Fp8Consts e4 = make_fp8_consts(Format::kFp8E4M3);
  static const Fp8Consts e5 = make_fp8_consts(Format::kFp8E5M2);
  return f == Format::kFp8E4M3 ? e4 : e5;
}

struct Fp8Regs {
  __m512i lo0, lo1, hi0, hi1, a_hi, a_lo, exp_mask;
};

// 64 codes -> four fp32 vectors (times 2^shift), in the order gemv_fp8_prepare_avx512 puts x:
// v0/v1 the even/odd codes of the unpacked low halves of each 16-byte lane, v2/v3 of the high.
DYNAPREC_FP8 inline void fp8_widen(const Fp8Regs& c, __m512i wb, __m512& v0, __m512& v1, __m512& v2,
                                   __m512& v3) {
  __m512i h2, h3;
  if (__builtin_expect(_mm512_testn_epi8_mask(wb, c.exp_mask) == 0, 1)) {
    h3 = _mm512_gf2p8affine_epi64_epi8(wb, c.a_hi, 0x40);
    h2 = _mm512_gf2p8affine_epi64_epi8(wb, c.a_lo, 0);
  } else {  // a zero or subnormal code: the tables (which ignore bit 7), then the sign
    h2 = _mm512_permutex2var_epi8(c.lo0, wb, c.lo1);
    h3 = _mm512_ternarylogic_epi32(_mm512_permutex2var_epi8(c.hi0, wb, c.hi1), wb,
                                   _mm512_set1_epi8(static_cast<char>(0x80)), 0xF8);  // a|(b&c)
  }
  const __m512i top = _mm512_set1_epi32(static_cast<int>(0xFFFF0000u));
  const __m512i l = _mm512_unpacklo_epi8(h2, h3), h = _mm512_unpackhi_epi8(h2, h3);
  v0 = _mm512_castsi512_ps(_mm512_slli_epi32(l, 16));
  v1 = _mm512_castsi512_ps(_mm512_and_si512(l, top));
  v2 = _mm512_castsi512_ps(_mm512_slli_epi32(h, 16));
  v3 = _mm512_castsi512_ps(_mm512_and_si512(h, top));
}

// Block blk of R rows of W (x loaded once for R rows), into one FMA chain per row for R = 8, two
// below; kPartial: the last block, of k % 64 codes (`tail`).
template <int R, bool kPartial>
DYNAPREC_FP8 inline void fp8_block(const Fp8Regs& c, const float* xb, const uint8_t* w, size_t k,
                                   __mmask64 tail, __m512* a, __m512* b) {
  constexpr bool kTwo = R < 8;
  const __m512 x0 = _mm512_loadu_ps(xb), x1 = _mm512_loadu_ps(xb + 16);
  const __m512 x2 = _mm512_loadu_ps(xb + 32), x3 = _mm512_loadu_ps(xb + 48);
#pragma GCC unroll 8  // the accumulators stay in registers
  for (int i = 0; i < R; ++i) {
    const uint8_t* row = w + i * k;
    prefetch_rows(row, R * k);
    const __m512i wb = kPartial ? _mm512_maskz_loadu_epi8(tail, row) : _mm512_loadu_si512(row);
    __m512 v0, v1, v2, v3;
    fp8_widen(c, wb, v0, v1, v2, v3);
    __m512& odd = kTwo ? b[i] : a[i];
    a[i] = _mm512_fmadd_ps(x0, v0, a[i]);
    odd = _mm512_fmadd_ps(x1, v1, odd);
    a[i] = _mm512_fmadd_ps(x2, v2, a[i]);
    odd = _mm512_fmadd_ps(x3, v3, odd);
  }
}

template <int R>
DYNAPREC_FP8 inline void fp8_pass(const Fp8Regs& c, const float* x, size_t blocks, size_t full,
                                  __mmask64 tail, const uint8_t* w, size_t k, float unscale,
                                  float* y) {
  __m512 a[R], b[R];
  for (int i = 0; i < R; ++i) a[i] = b[i] = _mm512_setzero_ps();
  for (size_t blk = 0; blk < full; ++blk)
    fp8_block<R, false>(c, x + blk * 64, w + blk * 64, k, tail, a, b);
  if (full < blocks) fp8_block<R, true>(c, x + full * 64, w + full * 64, k, tail, a, b);
  for (int i = 0; i < R; ++i) y[i] = _mm512_reduce_add_ps(_mm512_add_ps(a[i], b[i])) * unscale;
}

DYNAPREC_FP8 void fp8_rows(const Fp8Consts& cst, const Fp8Avx512Input& in, const uint8_t* w,
                           size_t k, size_t j0, size_t j1, float* y) {
  const Fp8Regs c{_mm512_load_si512(cst.lo),
                  _mm512_load_si512(cst.lo + 64),
                  _mm512_load_si512(cst.hi),
                  _mm512_load_si512(cst.hi + 64),
                  _mm512_set1_epi64(cst.a_hi),
                  _mm512_set1_epi64(cst.a_lo),
                  _mm512_set1_epi8(static_cast<char>(cst.exp_mask))};
  const size_t full = k / 64;  // blocks with 64 codes; a partial one is masked
  const __mmask64 tail = (__mmask64{1} << (k % 64)) - 1;
  size_t j = j0;
  for (; j + 8 <= j1; j += 8)
    fp8_pass<8>(c, in.x.data(), in.blocks, full, tail, w + j * k, k, cst.unscale, y + j);
  for (; j < j1; ++j)
    fp8_pass<1>(c, in.x.data(), in.blocks, full, tail, w + j * k, k, cst.unscale, y + j);
}

}  // namespace

bool gemv_fp8_avx512_supported() {
  static const bool yes = __builtin_cpu_supports("gfni") && __builtin_cpu_supports("avx512vbmi");
  return yes;
}

// Code c of a block sits in vector 2h + o, lane 4L + q, for c = 16L + 8h + 2q + o (fp8_widen).
Fp8Avx512Input gemv_fp8_prepare_avx512(const float* xr, size_t k) {
  Fp8Avx512Input in;
  in.blocks = (k + 63) / 64;
  in.x.assign(in.blocks * 64, 0.0f);
  for (size_t p = 0; p < k; ++p) {
    const size_t c = p % 64, lane16 = c / 16, half = (c % 16) / 8, pair = (c % 8) / 2, odd = c % 2;
    in.x[p - c + 16 * (2 * half + odd) + 4 * lane16 + pair] = xr[p];
  }
  return in;
}

void gemv_fp8_rows_avx512(Format f, const Fp8Avx512Input& in, const uint8_t* w, size_t k, size_t j0,
                          size_t j1, float* y) {
  fp8_rows(fp8_consts(f), in, w, k, j0, j1, y);
}

}  // namespace dynaprec::cpu
