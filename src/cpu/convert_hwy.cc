// Vectorized conversions (Highway, runtime dispatch over every attainable target).
//
// Float formats use integer bit tricks that are exact for every input, so all targets give the
// bits of the reference (src/core/convert_ref.cc):
//   normal range: round the fp32 bit pattern half-to-even at the target's mantissa width (the
//                 carry rolls into the exponent), then rebias the exponent;
//   subnormals:   add a magic power of two whose ulp is the target's subnormal quantum, so the
//                 FPU's RNE addition does the rounding; the low bits are the code;
//   overflow/inf/NaN are selected last, per the format's row in kFormats.
// fp16 uses the F16C/AVX-512 vcvtps2ph/vcvtph2ps instructions on AVX2 and AVX-512 targets.
// Highway 1.0.3's emulated fp16 demotion truncates instead of rounding, so other targets use
// the integer path. bf16 does not use AVX512_BF16's vcvtneps2bf16: it flushes subnormal inputs
// to zero, which CONTRACT §1 forbids; the integer path is four ops and memory-bound anyway.
// Integer quantization divides (x / s) exactly as CONTRACT §1 says; it never multiplies by a
// reciprocal, which would differ in the last bit.

#undef HWY_TARGET_INCLUDE
#define HWY_TARGET_INCLUDE "cpu/convert_hwy.cc"
#include <hwy/foreach_target.h>  // IWYU pragma: keep
// clang-format off
#include <hwy/highway.h>
#include <hwy/cache_control.h>
#include "cpu/float_codes-inl.h"
// clang-format on

#include <algorithm>
#include <bit>
#include <cstring>
#include <type_traits>

#include "dynaprec/convert.h"
#include "dynaprec/cpu_features.h"
#include "dynaprec/error.h"

HWY_BEFORE_NAMESPACE();
namespace dynaprec::cpu::HWY_NAMESPACE {
namespace hn = hwy::HWY_NAMESPACE;

// Converts n elements: `body(const TIn* p)` maps Lanes(df) inputs at p to one vector of dout,
// which is stored at the matching output position. Full vectors run in the main loop and the
// tail through a padded stack buffer.
//
// Memory: a single core's DRAM reads are latency-bound, so the loop prefetches a few KiB ahead
// (without it the arithmetic delays the next misses instead of overlapping them: bf16 took
// 42 ms instead of 30 for 256 MiB). Outputs beyond the caches use non-temporal stores, which
// skip the read-for-ownership of every output line (a quarter more read traffic for fp8).
// `ahead` is the prefetch distance in elements: 8 KiB suits one long array; row kernels fetch the
// next row while they encode this one (measured: fp8 26-27 ms at 8 KiB, 30 at 16 KiB; int8
// rows of 4096 34.6 ms at 8 KiB, 31.5 one row ahead).
//
// `big` says whether the whole output of the caller's call (which may loop over rows) is large
// enough to stream; the caller issues hwy::FlushStream() once at its end (an sfence per row
// would cost more than it saves).
template <typename TIn, typename TOut, class DF, class DOut, class Body>
HWY_INLINE void ConvertLoop(DF df, DOut dout, const TIn* HWY_RESTRICT src, TOut* HWY_RESTRICT dst,
                            size_t n, bool big, Body body, size_t ahead = 8192 / sizeof(TIn)) {
  const size_t N = hn::Lanes(df);
  // Highway rounds partial-vector streams up to 16 bytes: only stream whole 16-byte vectors.
  constexpr bool kStreamable = hn::MaxLanes(dout) * sizeof(TOut) >= 16;
  const bool stream = big && kStreamable && N == hn::MaxLanes(dout) &&
                      reinterpret_cast<uintptr_t>(dst) % (N * sizeof(TOut)) == 0;
  size_t i = 0;
#pragma GCC unroll 4
  for (; i + N <= n; i += N) {
    hwy::Prefetch(src + i + ahead);
    const auto v = body(src + i);
    if (stream) {  // loop-invariant: the compiler unswitches it
      hn::Stream(v, dout, dst + i);
    } else {
      hn::StoreU(v, dout, dst + i);
    }
  }
  if (i < n) {
    HWY_ALIGN TIn in[hn::MaxLanes(df)] = {};
    HWY_ALIGN TOut out[hn::MaxLanes(df)] = {};
    std::memcpy(in, src + i, (n - i) * sizeof(TIn));
    hn::StoreU(body(in), dout, out);
    std::memcpy(dst + i, out, (n - i) * sizeof(TOut));
  }
}

// Outputs of at least this many bytes per call are written with non-temporal stores.
constexpr size_t kStreamMinBytes = size_t{4} << 20;

template <class S, typename TCode>
void EncodeArray(const float* HWY_RESTRICT src, TCode* HWY_RESTRICT dst, size_t n) {
  const hn::ScalableTag<float> df;
  const hn::RebindToSigned<decltype(df)> di;
  const hn::Rebind<TCode, decltype(df)> dc;
  ConvertLoop(df, dc, src, dst, n, n * sizeof(TCode) >= kStreamMinBytes, [&](const float* s) {
    return hn::DemoteTo(dc, hn::BitCast(di, EncodeCodes<S>(df, hn::LoadU(df, s))));
  });
  hwy::FlushStream();
}

template <class S, typename TCode>
void DecodeArray(const TCode* HWY_RESTRICT src, float* HWY_RESTRICT dst, size_t n) {
  const hn::ScalableTag<float> df;
  const hn::RebindToUnsigned<decltype(df)> du;
  const hn::Rebind<TCode, decltype(df)> dc;
  ConvertLoop(df, df, src, dst, n, n * sizeof(float) >= kStreamMinBytes, [&](const TCode* s) {
    return DecodeCodes<S>(df, hn::PromoteTo(du, hn::LoadU(dc, s)));
  });
  hwy::FlushStream();
}

#if HWY_ARCH_X86 && HWY_TARGET <= HWY_AVX2
constexpr bool kHardwareF16 = true;
#else
constexpr bool kHardwareF16 = false;
#endif

#if HWY_ARCH_X86 && HWY_TARGET <= HWY_AVX3
// fp8 through the F16C conversion, on AVX-512: round to odd at fp16 precision (vcvtps2ph
// toward zero, then set the last bit when the conversion was inexact), then round half to even
// on 32 16-bit lanes at once. Rounding to odd first and to the target after is exact whenever
// the first format has at least two more bits than the target (Boldo-Melquiond), here >= 7.
//   e5m2 has fp16's exponent (bias 15): its code is the fp16 code rounded at bit 8.
//   e4m3 (bias 7): x·2^-8 maps e4m3's grid, subnormals included, onto fp16's with the same
//     exponent field, so the code is the fp16 code of x·2^-8 rounded at bit 7. The multiply
//     is exact except below 2^-118, where every rounding gives code 0 anyway.
// Beyond fp16's range the conversion toward zero gives 65504 (inexact, so odd), which rounds
// to the first code past max finite and saturates; inf and NaN are exact and kept or mapped as
// CONTRACT §1 says. The tests compare this with the reference on 10^7 inputs bit for bit.
template <bool kE4M3>
void EncodeFp8Avx512(const float* HWY_RESTRICT src, uint8_t* HWY_RESTRICT dst, size_t n) {
  constexpr int kShift = kE4M3 ? 7 : 8;
  constexpr uint16_t kMax = kE4M3 ? 0x7E : 0x7B;
  const __m512 pre = _mm512_set1_ps(kE4M3 ? 0x1p-8f : 1.0f);
  const __m256i one = _mm256_set1_epi16(1);
  const __m512i abs_mask = _mm512_set1_epi16(0x7FFF), sign_mask = _mm512_set1_epi16(-0x8000);
  const __m512i lsb_mask = _mm512_set1_epi16(1), half = _mm512_set1_epi16((1 << (kShift - 1)) - 1);
  const __m512i max_code = _mm512_set1_epi16(kMax), inf16 = _mm512_set1_epi16(0x7C00);
  const bool stream = n >= kStreamMinBytes && reinterpret_cast<uintptr_t>(dst) % 32 == 0;
  auto rto = [&](__m512 v) {
    if constexpr (kE4M3) v = _mm512_mul_ps(v, pre);
    const __m256i h = _mm512_cvtps_ph(v, _MM_FROUND_TO_ZERO | _MM_FROUND_NO_EXC);
    const __mmask16 inexact = _mm512_cmp_ps_mask(_mm512_cvtph_ps(h), v, _CMP_NEQ_UQ);
    return _mm256_mask_mov_epi16(h, inexact, _mm256_or_si256(h, one));
  };
  size_t i = 0;
  for (; i + 32 <= n; i += 32) {
    _mm_prefetch(reinterpret_cast<const char*>(src + i + 8192), _MM_HINT_T1);
    _mm_prefetch(reinterpret_cast<const char*>(src + i + 8192 + 16), _MM_HINT_T1);
    hwy::Prefetch(src + i + 1024);
    hwy::Prefetch(src + i + 1024 + 16);
    const __m512i h = _mm512_inserti64x4(_mm512_castsi256_si512(rto(_mm512_loadu_ps(src + i))),
                                         rto(_mm512_loadu_ps(src + i + 16)), 1);
    const __m512i a = _mm512_and_si512(h, abs_mask);
    const __m512i lsb = _mm512_and_si512(_mm512_srli_epi16(a, kShift), lsb_mask);
    const __m512i r = _mm512_srli_epi16(_mm512_add_epi16(_mm512_add_epi16(a, half), lsb), kShift);
    __m512i code = _mm512_min_epu16(r, max_code);  // finite beyond max (and e4m3's inf) saturate
    if constexpr (kE4M3) {
      code =
          _mm512_mask_mov_epi16(code, _mm512_cmpgt_epu16_mask(a, inf16), _mm512_set1_epi16(0x7F));
    } else {
      code = _mm512_mask_mov_epi16(code, _mm512_cmpge_epu16_mask(a, inf16),
                                   _mm512_srli_epi16(a, 8));  // inf, and NaN with its payload
    }
    code = _mm512_or_si512(code, _mm512_srli_epi16(_mm512_and_si512(h, sign_mask), 8));
    const __m256i bytes = _mm512_cvtepi16_epi8(code);
    if (stream)
      _mm256_stream_si256(reinterpret_cast<__m256i*>(dst + i), bytes);
    else
      _mm256_storeu_si256(reinterpret_cast<__m256i*>(dst + i), bytes);
  }
  if (stream) hwy::FlushStream();
  if (i < n) EncodeArray<std::conditional_t<kE4M3, SpecE4M3, SpecE5M2>>(src + i, dst + i, n - i);
}
#endif

void EncodeFloat(uint8_t format, const float* HWY_RESTRICT src, void* HWY_RESTRICT dst, size_t n) {
  switch (static_cast<Format>(format)) {
    case Format::kFp32:
      std::memcpy(dst, src, n * sizeof(float));
      return;
    case Format::kBf16:
      return EncodeArray<SpecBf16>(src, static_cast<uint16_t*>(dst), n);
    case Format::kFp16:
      if constexpr (kHardwareF16) {
        const hn::ScalableTag<float> df;
        const hn::Rebind<hwy::float16_t, decltype(df)> dh;
        ConvertLoop(df, dh, src, static_cast<hwy::float16_t*>(dst), n, n * 2 >= kStreamMinBytes,
                    [&](const float* s) { return hn::DemoteTo(dh, hn::LoadU(df, s)); });
        hwy::FlushStream();
        return;
      } else {
        return EncodeArray<SpecFp16>(src, static_cast<uint16_t*>(dst), n);
      }
#if HWY_ARCH_X86 && HWY_TARGET <= HWY_AVX3
    case Format::kFp8E4M3:
      return EncodeFp8Avx512<true>(src, static_cast<uint8_t*>(dst), n);
    case Format::kFp8E5M2:
      return EncodeFp8Avx512<false>(src, static_cast<uint8_t*>(dst), n);
#else
    case Format::kFp8E4M3:
      return EncodeArray<SpecE4M3>(src, static_cast<uint8_t*>(dst), n);
    case Format::kFp8E5M2:
      return EncodeArray<SpecE5M2>(src, static_cast<uint8_t*>(dst), n);
#endif
    default:
      break;
  }
}

void DecodeFloat(uint8_t format, const void* HWY_RESTRICT src, float* HWY_RESTRICT dst, size_t n) {
  switch (static_cast<Format>(format)) {
    case Format::kFp32:
      std::memcpy(dst, src, n * sizeof(float));
      return;
    case Format::kBf16:
      return DecodeArray<SpecBf16>(static_cast<const uint16_t*>(src), dst, n);
    case Format::kFp16:
      if constexpr (kHardwareF16) {
        const hn::ScalableTag<float> df;
        const hn::Rebind<hwy::float16_t, decltype(df)> dh;
        ConvertLoop(df, df, static_cast<const hwy::float16_t*>(src), dst, n,
                    n * 4 >= kStreamMinBytes,
                    [&](const hwy::float16_t* s) { return hn::PromoteTo(df, hn::LoadU(dh, s)); });
        hwy::FlushStream();
        return;
      } else {
        return DecodeArray<SpecFp16>(static_cast<const uint16_t*>(src), dst, n);
      }
    case Format::kFp8E4M3:
      return DecodeArray<SpecE4M3>(static_cast<const uint8_t*>(src), dst, n);
    case Format::kFp8E5M2:
      return DecodeArray<SpecE5M2>(static_cast<const uint8_t*>(src), dst, n);
    default:
      break;
  }
}

float Amax(const float* HWY_RESTRICT src, size_t n) {
  const hn::ScalableTag<float> df;
  const hn::RebindToUnsigned<decltype(df)> du;
  const size_t N = hn::Lanes(df);
  const auto mask = hn::Set(du, 0x7FFFFFFFu);
  auto m0 = hn::Zero(du), m1 = hn::Zero(du);
  size_t i = 0;
  for (; i + 2 * N <= n; i += 2 * N) {
    hwy::Prefetch(src + i + 2048);
    m0 = hn::Max(m0, hn::And(hn::BitCast(du, hn::LoadU(df, src + i)), mask));
    m1 = hn::Max(m1, hn::And(hn::BitCast(du, hn::LoadU(df, src + i + N)), mask));
  }
  uint32_t m = hn::GetLane(hn::MaxOfLanes(du, hn::Max(m0, m1)));
  for (; i < n; ++i) m = std::max(m, std::bit_cast<uint32_t>(src[i]) & 0x7FFFFFFFu);
  return std::bit_cast<float>(m);
}

// rne(y) for |y| <= 256, as int32 lanes. x86 SIMD targets use cvtps2dq (RNE under the default
// MXCSR); elsewhere the magic-number rounding, exact below 2^23 (Highway 1.0.3's emulated Round
// rounds 0.49999997 up).
template <class DF>
HWY_INLINE hn::Vec<hn::RebindToSigned<DF>> RoundSmall(DF df, hn::Vec<DF> y) {
#if HWY_ARCH_X86 && HWY_TARGET <= HWY_SSSE3
  (void)df;
  return hn::NearestInt(y);
#else
  const auto magic = hn::Set(df, 8388608.0f);  // 2^23
  const auto r = hn::CopySign(hn::Sub(hn::Add(hn::Abs(y), magic), magic), y);
  return hn::ConvertTo(hn::RebindToSigned<DF>(), r);
#endif
}

// clamp(rne(x / s), lo, hi) for finite, non-zero s and finite x / s (clamping first is the same
// as clamping after rounding, since lo and hi are integers).
template <class DF>
HWY_INLINE hn::Vec<hn::RebindToSigned<DF>> QuantizeLanesUnchecked(DF df, hn::Vec<DF> x,
                                                                  hn::Vec<DF> s, float lo,
                                                                  float hi) {
  const auto y = hn::Min(hn::Max(hn::Div(x, s), hn::Set(df, lo)), hn::Set(df, hi));
  return RoundSmall(df, y);
}

// The same for any x and s: 0 where s == 0 or x / s is NaN (CONTRACT §1, ref::int8_encode).
template <class DF>
HWY_INLINE hn::Vec<hn::RebindToSigned<DF>> QuantizeLanes(DF df, hn::Vec<DF> x, hn::Vec<DF> s,
                                                         float lo, float hi) {
  const hn::RebindToSigned<DF> di;
  const auto y = hn::Div(x, s);
  const auto bad = hn::Or(hn::IsNaN(y), hn::Eq(s, hn::Zero(df)));
  const auto q = RoundSmall(df, hn::Min(hn::Max(y, hn::Set(df, lo)), hn::Set(df, hi)));
  return hn::IfThenZeroElse(hn::RebindMask(di, bad), q);
}

HWY_INLINE void Int8EncodeImpl(const float* HWY_RESTRICT src, int8_t* HWY_RESTRICT dst, size_t n,
                               float s, bool big, size_t ahead) {
  const hn::ScalableTag<float> df;
  const hn::Rebind<int8_t, decltype(df)> d8;
  const auto sv = hn::Set(df, s);
  ConvertLoop(
      df, d8, src, dst, n, big,
      [&](const float* x) {
        return hn::DemoteTo(d8, QuantizeLanes(df, hn::LoadU(df, x), sv, -127.0f, 127.0f));
      },
      ahead);
}

void Int8Encode(const float* HWY_RESTRICT src, int8_t* HWY_RESTRICT dst, size_t n, float s) {
  Int8EncodeImpl(src, dst, n, s, n >= kStreamMinBytes, 2048);
  hwy::FlushStream();
}

// Rows of k values, one scale per row (per output channel of a weight matrix): each row's amax
// and codes in one pass over memory, the row still in L1 for the codes.
void Int8EncodeRows(const float* HWY_RESTRICT src, int8_t* HWY_RESTRICT dst, size_t rows, size_t k,
                    float* HWY_RESTRICT scales) {
  const bool big = rows * k >= kStreamMinBytes;
  for (size_t r = 0; r < rows; ++r) {
    scales[r] = ref::int8_scale(Amax(src + r * k, k));
    Int8EncodeImpl(src + r * k, dst + r * k, k, scales[r], big, std::max<size_t>(k, 2048));
  }
  hwy::FlushStream();
}

void Int8EncodeScales(const float* HWY_RESTRICT src, int8_t* HWY_RESTRICT dst, size_t n,
                      const float* HWY_RESTRICT s) {
  const hn::ScalableTag<float> df;
  const hn::Rebind<int8_t, decltype(df)> d8;
  const size_t N = hn::Lanes(df);
  size_t i = 0;
  for (; i + N <= n; i += N) {
    const auto q = QuantizeLanes(df, hn::LoadU(df, src + i), hn::LoadU(df, s + i), -127.f, 127.f);
    hn::StoreU(hn::DemoteTo(d8, q), d8, dst + i);
  }
  for (; i < n; ++i) dst[i] = ref::int8_encode(src[i], s[i]);
}

void Int8Decode(const int8_t* HWY_RESTRICT src, float* HWY_RESTRICT dst, size_t n, float s) {
  const hn::ScalableTag<float> df;
  const hn::RebindToSigned<decltype(df)> di;
  const hn::Rebind<int8_t, decltype(df)> d8;
  const auto sv = hn::Set(df, s);
  ConvertLoop(df, df, src, dst, n, n * 4 >= kStreamMinBytes, [&](const int8_t* q) {
    return hn::Mul(hn::ConvertTo(df, hn::PromoteTo(di, hn::LoadU(d8, q))), sv);
  });
  hwy::FlushStream();
}

// Codes of values 2j (in `a`'s lanes) and 2j+1 (in `b`'s) -> one byte per pair, the first in
// the low nibble: even and odd lanes of the pair of vectors (qa, qb) hold consecutive values.
#if HWY_TARGET != HWY_SCALAR
#define DYNAPREC_HAVE_PAIR_NIBBLES 1
template <class DI>
HWY_INLINE hn::Vec<DI> PairNibbles(DI di, hn::Vec<DI> qa, hn::Vec<DI> qb) {
  const auto lo = hn::And(hn::ConcatEven(di, qb, qa), hn::Set(di, 0xF));
  const auto hi = hn::And(hn::ConcatOdd(di, qb, qa), hn::Set(di, 0xF));
  return hn::Or(lo, hn::ShiftLeft<4>(hi));
}
#else
#define DYNAPREC_HAVE_PAIR_NIBBLES 0
#endif

// One row of k values. Full groups of 32 go in blocks of up to kBlock groups: first every
// group's amax, then their fp16 scales in one vector pass (same integer fp16 encoding as
// everywhere else, so bit-identical to ref::int4_scale), then the codes. The last, shorter
// group goes through the reference.
HWY_INLINE void Int4EncodeRow(const float* HWY_RESTRICT src, size_t k, uint8_t* HWY_RESTRICT packed,
                              uint16_t* HWY_RESTRICT scales) {
  size_t gi = 0;
  // Needs pairs of whole vectors inside a group (not the 1-lane SCALAR target).
#if DYNAPREC_HAVE_PAIR_NIBBLES
  const hn::ScalableTag<float> df;
  const hn::RebindToSigned<decltype(df)> di;
  const hn::RebindToUnsigned<decltype(df)> du;
  const hn::Rebind<uint8_t, decltype(df)> d8;
  const size_t N = hn::Lanes(df);
  constexpr size_t kBlock = 64;
  const size_t full = k / 32;
  if (2 * N <= 32 && 32 % (2 * N) == 0) {
    HWY_ALIGN float amax[kBlock];
    HWY_ALIGN float sval[kBlock];
    HWY_ALIGN uint32_t sbits[kBlock];
    const auto abs_mask = hn::Set(du, 0x7FFFFFFFu);
    while (gi < full) {
      const size_t nb = std::min(kBlock, full - gi);
      const float* blk = src + gi * 32;
      for (size_t g = 0; g < nb; ++g) {
        auto m = hn::Zero(du);
        for (size_t j = 0; j < 32; j += N)
          m = hn::Max(m, hn::And(hn::BitCast(du, hn::LoadU(df, blk + g * 32 + j)), abs_mask));
        amax[g] = std::bit_cast<float>(hn::GetLane(hn::MaxOfLanes(du, m)));
      }
      for (size_t g = 0; g < nb; g += N) {  // amax arrays are padded to kBlock, a multiple of N
        const auto a = hn::Load(df, amax + g);
        auto code = EncodeCodes<SpecFp16>(df, hn::Div(a, hn::Set(df, 7.0f)));
        code = hn::IfThenElse(hn::Eq(code, hn::Set(du, 0x7C00u)), hn::Set(du, 0x7BFFu), code);
        code =
            hn::IfThenElse(hn::RebindMask(du, hn::Eq(a, hn::Zero(df))), hn::Set(du, 0x3C00u), code);
        hn::Store(code, du, sbits + g);
        hn::Store(DecodeCodes<SpecFp16>(df, code), df, sval + g);
      }
      for (size_t g = 0; g < nb; ++g) {
        scales[gi + g] = static_cast<uint16_t>(sbits[g]);
        uint8_t* out = packed + (gi + g) * 16;
        // Fetch the next block (2 lines a group) during this, the longer pass, so that its
        // amax pass reads from cache.
        hwy::Prefetch(blk + g * 32 + kBlock * 32);
        hwy::Prefetch(blk + g * 32 + kBlock * 32 + 16);
        // A zero (underflowed) or NaN (NaN input) scale gives code 0 (CONTRACT §1, ref).
        if (!(sval[g] != 0.0f) || std::isnan(sval[g])) {
          std::memset(out, 0, 16);
          continue;
        }
        const auto sv = hn::Set(df, sval[g]);
        const float* x = blk + g * 32;
        for (size_t j = 0; j < 32; j += 2 * N) {
          // Finite, non-zero s from the group's own amax: x / s is never NaN here.
          const auto qa = QuantizeLanesUnchecked(df, hn::LoadU(df, x + j), sv, -8.0f, 7.0f);
          const auto qb = QuantizeLanesUnchecked(df, hn::LoadU(df, x + j + N), sv, -8.0f, 7.0f);
          hn::StoreU(hn::DemoteTo(d8, PairNibbles(di, qa, qb)), d8, out + j / 2);
        }
      }
      gi += nb;
    }
  }
#endif
#undef DYNAPREC_HAVE_PAIR_NIBBLES
  const size_t g0 = gi * 32;
  if (g0 < k) ref::int4_encode_row(src + g0, k - g0, packed + g0 / 2, scales + gi);
}

// Rows of k values: ceil(k/2) packed bytes and ceil(k/32) scales per row. (Non-temporal stores
// of the 16 bytes per group were measured slower here: 42 ms instead of 36 for 256 MiB.)
void Int4EncodeRows(const float* HWY_RESTRICT src, size_t rows, size_t k,
                    uint8_t* HWY_RESTRICT packed, uint16_t* HWY_RESTRICT scales) {
  const size_t row_bytes = (k + 1) / 2, groups = (k + 31) / 32;
  for (size_t r = 0; r < rows; ++r)
    Int4EncodeRow(src + r * k, k, packed + r * row_bytes, scales + r * groups);
}

void Int4DecodeRow(const uint8_t* HWY_RESTRICT packed, const uint16_t* HWY_RESTRICT scales,
                   size_t k, float* HWY_RESTRICT dst) {
  size_t g0 = 0;
  for (; g0 + 32 <= k; g0 += 32) {
    const float s = ref::decode_fp16(scales[g0 / 32], 0.0f);
    const uint8_t* p = packed + g0 / 2;
    for (size_t j = 0; j < 16; ++j) {
      const int lo = static_cast<int8_t>(static_cast<uint8_t>(p[j] << 4)) >> 4;
      const int hi = static_cast<int8_t>(p[j]) >> 4;
      dst[g0 + 2 * j] = static_cast<float>(lo) * s;
      dst[g0 + 2 * j + 1] = static_cast<float>(hi) * s;
    }
  }
  if (g0 < k) ref::int4_decode_row(packed + g0 / 2, scales + g0 / 32, k - g0, dst + g0);
}

int64_t Target() { return HWY_TARGET; }

}  // namespace dynaprec::cpu::HWY_NAMESPACE
HWY_AFTER_NAMESPACE();

#if HWY_ONCE
namespace dynaprec {
namespace cpu {
HWY_EXPORT(EncodeFloat);
HWY_EXPORT(DecodeFloat);
HWY_EXPORT(Amax);
HWY_EXPORT(Int8Encode);
HWY_EXPORT(Int8EncodeScales);
HWY_EXPORT(Int8Decode);
HWY_EXPORT(Int4EncodeRows);
HWY_EXPORT(Int8EncodeRows);
HWY_EXPORT(Int4DecodeRow);
HWY_EXPORT(Target);
}  // namespace cpu

void encode_float_array(Format f, const float* src, void* dst, size_t n) {
  DP_CHECK(is_float_format(f), "encode_float_array needs a float format");
  (void)cpu_features(),
      HWY_DYNAMIC_DISPATCH(cpu::EncodeFloat)(static_cast<uint8_t>(f), src, dst, n);
}
void decode_float_array(Format f, const void* src, float* dst, size_t n) {
  DP_CHECK(is_float_format(f), "decode_float_array needs a float format");
  (void)cpu_features(),
      HWY_DYNAMIC_DISPATCH(cpu::DecodeFloat)(static_cast<uint8_t>(f), src, dst, n);
}
float amax(const float* src, size_t n) {
  return (void)cpu_features(), HWY_DYNAMIC_DISPATCH(cpu::Amax)(src, n);
}
void int8_encode_array(const float* src, int8_t* dst, size_t n, float s) {
  (void)cpu_features(), HWY_DYNAMIC_DISPATCH(cpu::Int8Encode)(src, dst, n, s);
}
void int8_encode_array_scales(const float* src, int8_t* dst, size_t n, const float* s) {
  (void)cpu_features(), HWY_DYNAMIC_DISPATCH(cpu::Int8EncodeScales)(src, dst, n, s);
}
void int8_decode_array(const int8_t* src, float* dst, size_t n, float s) {
  (void)cpu_features(), HWY_DYNAMIC_DISPATCH(cpu::Int8Decode)(src, dst, n, s);
}
void int4_encode_rows(const float* src, size_t rows, size_t k, uint8_t* packed, uint16_t* scales) {
  (void)cpu_features(), HWY_DYNAMIC_DISPATCH(cpu::Int4EncodeRows)(src, rows, k, packed, scales);
}
void int8_encode_rows(const float* src, int8_t* dst, size_t rows, size_t k, float* scales) {
  (void)cpu_features(), HWY_DYNAMIC_DISPATCH(cpu::Int8EncodeRows)(src, dst, rows, k, scales);
}
void int4_decode_row(const uint8_t* packed, const uint16_t* scales, size_t k, float* dst) {
  (void)cpu_features(), HWY_DYNAMIC_DISPATCH(cpu::Int4DecodeRow)(packed, scales, k, dst);
}
const char* simd_target_name() {
  (void)cpu_features();
  return hwy::TargetName(HWY_DYNAMIC_DISPATCH(cpu::Target)());
}

}  // namespace dynaprec
#endif  // HWY_ONCE
