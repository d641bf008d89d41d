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
// Integer quantization computes the float32 quotient x / s of CONTRACT §1 exactly: by division,
// or where an FMA is native by a reciprocal with Markstein's correction step (see Quotient); a
// plain multiply by the reciprocal would differ in the last bit.

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
#include <cmath>
#include <cstring>
#include <type_traits>

#include "dynaprec/convert.h"
#include "dynaprec/cpu_features.h"
#include "dynaprec/error.h"

HWY_BEFORE_NAMESPACE();
namespace dynaprec::cpu::HWY_NAMESPACE {
namespace hn = hwy::HWY_NAMESPACE;

// Large arrays are converted as kStreams equal regions, interleaved a few cache lines at a
// time. On one core the DRAM reads are bound by how many misses are in flight: the L2 streamer
// runs a limited distance ahead of each stream and stops at 4 KiB pages, so four streams keep
// about four times as many lines coming, and the arithmetic between the loads no longer delays
// the next misses. Each stream also prefetches its own lines kAheadBytes ahead (the software
// prefetch crosses the page boundaries the streamer does not). Measured on the development VM
// (256 MiB, one thread): fp8e4m3 29 -> 20 ms; 1 KiB ahead beat 0.5, 2 and 4 KiB (4 KiB: 21-22
// ms) and no software prefetch (24 ms); 2 or 8 streams were slower than 4.
constexpr size_t kStreams = 4;
constexpr size_t kAheadBytes = 1024;
// Arrays of at least this many input bytes are interleaved (smaller ones fit in L2 anyway).
constexpr size_t kInterleaveMinBytes = size_t{1} << 20;
// Outputs of at least this many bytes per call are written with non-temporal stores.
constexpr size_t kStreamMinBytes = size_t{4} << 20;

// Calls step(i) for every chunk offset i of kStreams equal regions of whole chunks, round
// robin over the regions; returns how many leading elements that covered (the caller does the
// rest).
template <class Step>
HWY_INLINE size_t Interleave(size_t n, size_t chunk, const Step& step) {
  const size_t per = n / (kStreams * chunk) * chunk;
  for (size_t off = 0; off < per; off += chunk) {
    for (size_t s = 0; s < kStreams; ++s) step(s * per + off);
  }
  return kStreams * per;
}

// Prefetches the cache lines of `bytes` bytes at p + kAheadBytes.
HWY_INLINE void PrefetchAhead(const void* p, size_t bytes) {
  for (size_t b = 0; b < bytes; b += 64)
    hwy::Prefetch(static_cast<const uint8_t*>(p) + b + kAheadBytes);
}

// Converts n elements: `body(const TIn* p)` maps Lanes(df) inputs at p to one vector of dout,
// which is stored at the matching output position. Whole chunks of 256 input bytes go through
// Interleave (large arrays) or in order; the remaining vectors in order and the tail through a
// padded stack buffer.
//
// Outputs beyond the caches use non-temporal stores, which skip the read-for-ownership of every
// output line (a quarter more read traffic for fp8). `big` says whether the whole output of the
// caller's call (which may loop over rows) is large enough to stream; the caller issues
// hwy::FlushStream() once at its end (an sfence per row would cost more than it saves).
template <typename TIn, typename TOut, class DF, class DOut, class Body>
HWY_INLINE void ConvertLoop(DF df, DOut dout, const TIn* HWY_RESTRICT src, TOut* HWY_RESTRICT dst,
                            size_t n, bool big, Body body) {
  const size_t N = hn::Lanes(df);
  // Highway rounds partial-vector streams up to 16 bytes: only stream whole 16-byte vectors.
  constexpr bool kStreamable = hn::MaxLanes(dout) * sizeof(TOut) >= 16;
  const bool stream = big && kStreamable && N == hn::MaxLanes(dout) &&
                      reinterpret_cast<uintptr_t>(dst) % (N * sizeof(TOut)) == 0;
  const size_t chunk = std::max<size_t>(1, 256 / sizeof(TIn) / N) * N;
  auto run = [&](size_t i) {
    PrefetchAhead(src + i, chunk * sizeof(TIn));
    for (size_t j = i; j < i + chunk; j += N) {
      const auto v = body(src + j);
      if (stream) {  // loop-invariant: the compiler unswitches it
        hn::Stream(v, dout, dst + j);
      } else {
        hn::StoreU(v, dout, dst + j);
      }
    }
  };
  size_t i = n * sizeof(TIn) >= kInterleaveMinBytes ? Interleave(n, chunk, run) : 0;
  for (; i + chunk <= n; i += chunk) run(i);
  for (; i + N <= n; i += N) hn::StoreU(body(src + i), dout, dst + i);
  if (i < n) {
    HWY_ALIGN TIn in[hn::MaxLanes(df)] = {};
    HWY_ALIGN TOut out[hn::MaxLanes(df)] = {};
    std::memcpy(in, src + i, (n - i) * sizeof(TIn));
    hn::StoreU(body(in), dout, out);
    std::memcpy(dst + i, out, (n - i) * sizeof(TOut));
  }
}

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
  auto rto = [&](__m512 v) {
    if constexpr (kE4M3) v = _mm512_mul_ps(v, pre);
    const __m256i h = _mm512_cvtps_ph(v, _MM_FROUND_TO_ZERO | _MM_FROUND_NO_EXC);
    const __mmask16 inexact = _mm512_cmp_ps_mask(_mm512_cvtph_ps(h), v, _CMP_NEQ_UQ);
    return _mm256_mask_mov_epi16(h, inexact, _mm256_or_si256(h, one));
  };
  auto encode32 = [&](const float* p) {
    const __m512i h = _mm512_inserti64x4(_mm512_castsi256_si512(rto(_mm512_loadu_ps(p))),
                                         rto(_mm512_loadu_ps(p + 16)), 1);
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
    return _mm512_cvtepi16_epi8(code);
  };
  // 64 values (four input lines) -> one output line.
  const bool stream = n >= kStreamMinBytes && reinterpret_cast<uintptr_t>(dst) % 64 == 0;
  auto run = [&](size_t i) {
    PrefetchAhead(src + i, 256);
    const __m512i v =
        _mm512_inserti64x4(_mm512_castsi256_si512(encode32(src + i)), encode32(src + i + 32), 1);
    if (stream) {
      _mm512_stream_si512(reinterpret_cast<__m512i*>(dst + i), v);
    } else {
      _mm512_storeu_si512(dst + i, v);
    }
  };
  size_t i = n * sizeof(float) >= kInterleaveMinBytes ? Interleave(n, 64, run) : 0;
  for (; i + 64 <= n; i += 64) run(i);
  if (stream) hwy::FlushStream();
  if (i < n) EncodeArray<std::conditional_t<kE4M3, SpecE4M3, SpecE5M2>>(src + i, dst + i, n - i);
}
#endif

// bf16 shares fp32's exponent field, so decode(encode(x)) is x's bits rounded to the upper 16
// (round half to even: add 0x7FFF plus the kept part's last bit, then clear the lower half;
// subnormals, the carry into the exponent and the overflow to inf all come out right), except
// NaN, whose code keeps the top 7 mantissa bits and is quiet: (bits & 0xFFFF0000) | 2^22.
template <class DU>
HWY_INLINE hn::Vec<DU> Bf16RoundedBits(DU du, hn::Vec<DU> bits) {
  const hn::RebindToSigned<DU> di;
  const auto upper = hn::Set(du, 0xFFFF0000u);
  const auto lsb = hn::And(hn::ShiftRight<16>(bits), hn::Set(du, 1u));
  const auto rounded = hn::And(hn::Add(hn::Add(bits, hn::Set(du, 0x7FFFu)), lsb), upper);
  const auto is_nan = hn::Gt(hn::BitCast(di, hn::And(bits, hn::Set(du, 0x7FFFFFFFu))),
                             hn::Set(di, int32_t{0x7F800000}));
  const auto nan = hn::Or(hn::And(bits, upper), hn::Set(du, 0x00400000u));
  return hn::IfThenElse(hn::RebindMask(du, is_nan), nan, rounded);
}

// bf16 codes: RoundBf16's bits, the upper 16 kept.
template <class D16, class DF>
HWY_INLINE hn::Vec<D16> Bf16Codes(D16 d16, DF df, const float* p) {
  const hn::RebindToUnsigned<DF> du;
  const hn::RebindToSigned<DF> di;
  const auto code = hn::ShiftRight<16>(Bf16RoundedBits(du, hn::BitCast(du, hn::LoadU(df, p))));
  return hn::DemoteTo(d16, hn::BitCast(di, code));  // < 2^16: the demotion is exact
}

// The floats of bf16 codes: the code in the upper 16 bits, NaN made quiet (as DecodeCodes).
template <class DF, class D16>
HWY_INLINE hn::Vec<DF> Bf16Values(DF df, D16 d16, const uint16_t* p) {
  const hn::RebindToUnsigned<DF> du;
  const hn::RebindToSigned<DF> di;
  const auto bits = hn::ShiftLeft<16>(hn::PromoteTo(du, hn::LoadU(d16, p)));
  const auto is_nan = hn::Gt(hn::BitCast(di, hn::And(bits, hn::Set(du, 0x7FFFFFFFu))),
                             hn::Set(di, int32_t{0x7F800000}));
  return hn::BitCast(
      df, hn::IfThenElse(hn::RebindMask(du, is_nan), hn::Or(bits, hn::Set(du, 0x00400000u)), bits));
}

void EncodeFloat(uint8_t format, const float* HWY_RESTRICT src, void* HWY_RESTRICT dst, size_t n) {
  switch (static_cast<Format>(format)) {
    case Format::kFp32:
      std::memcpy(dst, src, n * sizeof(float));
      return;
    case Format::kBf16: {  // Bf16RoundedBits: a few integer ops, the same codes as SpecBf16's
      const hn::ScalableTag<float> df;
      const hn::Rebind<uint16_t, decltype(df)> d16;
      ConvertLoop(df, d16, src, static_cast<uint16_t*>(dst), n, n * 2 >= kStreamMinBytes,
                  [&](const float* p) { return Bf16Codes(d16, df, p); });
      hwy::FlushStream();
      return;
    }
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
    case Format::kBf16: {
      const hn::ScalableTag<float> df;
      const hn::Rebind<uint16_t, decltype(df)> d16;
      ConvertLoop(df, df, static_cast<const uint16_t*>(src), dst, n, n * 4 >= kStreamMinBytes,
                  [&](const uint16_t* p) { return Bf16Values(df, d16, p); });
      hwy::FlushStream();
      return;
    }
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
  const size_t chunk = std::max<size_t>(2, 64 / N) * N;  // 256 bytes
  auto run = [&](size_t i) {
    PrefetchAhead(src + i, chunk * sizeof(float));
    for (size_t j = i; j < i + chunk; j += 2 * N) {
      m0 = hn::Max(m0, hn::And(hn::BitCast(du, hn::LoadU(df, src + j)), mask));
      m1 = hn::Max(m1, hn::And(hn::BitCast(du, hn::LoadU(df, src + j + N)), mask));
    }
  };
  size_t i = n * sizeof(float) >= kInterleaveMinBytes ? Interleave(n, chunk, run) : 0;
  for (; i + chunk <= n; i += chunk) run(i);
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

// The quotient x / s without a division (vdivps takes ~10 cycles per 16 lanes here and was the
// slowest instruction of these loops): with r = RN(1/s), computed once per scale,
//   y = RN(x·r),  e = x - y·s (exact with an FMA),  q = RN(y + e·r)
// is RN(x / s) (Markstein's correction step) when s is a normal number away from the exponent
// limits and nothing in between under- or overflows. The callers guarantee 2^-64 <= s <= 2^64
// (QuotientScaleOk) and |x / s| <= 2^8 (int8: |x| <= amax or x clamped to ±128·s; int4: |x| <=
// amax <= 7·s, or at most 2^113 with a saturated scale); for |x| so small that y or e is
// subnormal, |x / s| < 2^-60 and every path gives code 0. Evidence (tests/core/test_convert.cc):
// every s significand (2^23, scaling by powers of two in the allowed range changes no rounding)
// with x within ±8 ulps of every (k + 1/2)·s, |k| <= 127 — the only quotients whose rounding
// to an integer can depend on the last bit — gives the same codes (1.8·10^10 cases, opt-in
// test); 10^9 random normal x and s (|x / s| in [2^-40, 2^40]) gave the same float32 quotient
// bit for bit (a one-off check, 2026-11-28); the unit tests run 10^7 near-half-integer cases
// through every kernel.
#undef DYNAPREC_FMA_QUOTIENT
#if HWY_NATIVE_FMA && HWY_TARGET != HWY_SCALAR
#define DYNAPREC_FMA_QUOTIENT 1
template <class V>
HWY_INLINE V Quotient(V x, V s, V r) {
  const V y = hn::Mul(x, r);
  return hn::MulAdd(hn::NegMulAdd(y, s, x), r, y);
}
#else
#define DYNAPREC_FMA_QUOTIENT 0
#endif
HWY_INLINE bool QuotientScaleOk(float s) { return s >= 0x1p-64f && s <= 0x1p64f; }

// The int8 codes of src with scale s, each vector of codes (int32 lanes) passed through
// finish(codes) into dst's type: DemoteTo int8 (Int8Encode) or ConvertTo float (Int8Round).
template <class DOut, typename TOut, class Finish>
HWY_INLINE void Int8CodeLoop(DOut dout, const float* HWY_RESTRICT src, TOut* HWY_RESTRICT dst,
                             size_t n, float s, bool big, const Finish& finish) {
  const hn::ScalableTag<float> df;
  const auto sv = hn::Set(df, s);
#if DYNAPREC_FMA_QUOTIENT
  if (QuotientScaleOk(s)) {
    const hn::RebindToSigned<decltype(df)> di;
    // x clamped to ±128·s (exact) first: beyond it every code is ±127 anyway, and the quotient
    // stays small. NaN x gives 0, as x / s would.
    const auto r = hn::Set(df, 1.0f / s), lim = hn::Set(df, 128.0f * s);
    const auto lo = hn::Set(df, -127.0f), hi = hn::Set(df, 127.0f);
    ConvertLoop(df, dout, src, dst, n, big, [&](const float* p) {
      const auto x = hn::LoadU(df, p);
      const auto q = Quotient(hn::Min(hn::Max(x, hn::Neg(lim)), lim), sv, r);
      const auto c = RoundSmall(df, hn::Min(hn::Max(q, lo), hi));
      return finish(hn::IfThenZeroElse(hn::RebindMask(di, hn::IsNaN(x)), c));
    });
    return;
  }
#endif
  ConvertLoop(df, dout, src, dst, n, big, [&](const float* x) {
    return finish(QuantizeLanes(df, hn::LoadU(df, x), sv, -127.0f, 127.0f));
  });
}

HWY_INLINE void Int8EncodeImpl(const float* HWY_RESTRICT src, int8_t* HWY_RESTRICT dst, size_t n,
                               float s, bool big) {
  const hn::Rebind<int8_t, hn::ScalableTag<float>> d8;
  Int8CodeLoop(d8, src, dst, n, s, big, [&](auto c) { return hn::DemoteTo(d8, c); });
}

// The codes as floats (exact small integers), one pass: what a kernel that widens codes to
// float lanes reads, without the int8 array in between.
void Int8Round(const float* HWY_RESTRICT src, float* HWY_RESTRICT dst, size_t n, float s) {
  const hn::ScalableTag<float> df;
  Int8CodeLoop(df, src, dst, n, s, false, [&](auto c) { return hn::ConvertTo(df, c); });
}

// The codes + 128 as unsigned bytes (the unsigned operand of VNNI's vpdpbusd), one pass.
void Int8BiasedRows(const float* src, size_t src_stride, uint8_t* dst, size_t dst_stride,
                    size_t rows, size_t n, float s) {
  const hn::Rebind<uint8_t, hn::ScalableTag<float>> du8;
  const hn::RebindToSigned<hn::ScalableTag<float>> di;
  const auto bias = hn::Set(di, 128);
  for (size_t r = 0; r < rows; ++r)
    Int8CodeLoop(du8, src + r * src_stride, dst + r * dst_stride, n, s, false,
                 [&](auto c) { return hn::DemoteTo(du8, hn::Add(c, bias)); });
}

// decode(encode(x)) per element in one pass: x rounded to a float format, kept as float.
template <class S>
void RoundArray(const float* HWY_RESTRICT src, float* HWY_RESTRICT dst, size_t n) {
  const hn::ScalableTag<float> df;
  ConvertLoop(df, df, src, dst, n, false, [&](const float* p) {
    return DecodeCodes<S>(df, EncodeCodes<S>(df, hn::LoadU(df, p)));
  });
}

void RoundBf16(const float* HWY_RESTRICT src, float* HWY_RESTRICT dst, size_t n) {
  const hn::ScalableTag<float> df;
  const hn::RebindToUnsigned<decltype(df)> du;
  ConvertLoop(df, df, src, dst, n, false, [&](const float* p) {
    return hn::BitCast(df, Bf16RoundedBits(du, hn::BitCast(du, hn::LoadU(df, p))));
  });
}

void RoundFloat(uint8_t format, const float* HWY_RESTRICT src, float* HWY_RESTRICT dst, size_t n) {
  switch (static_cast<Format>(format)) {
    case Format::kBf16:
      return RoundBf16(src, dst, n);
    case Format::kFp16:
      if constexpr (kHardwareF16) {  // as EncodeFloat and DecodeFloat do
        const hn::ScalableTag<float> df;
        const hn::Rebind<hwy::float16_t, decltype(df)> dh;
        ConvertLoop(df, df, src, dst, n, false, [&](const float* p) {
          return hn::PromoteTo(df, hn::DemoteTo(dh, hn::LoadU(df, p)));
        });
        return;
      } else {
        return RoundArray<SpecFp16>(src, dst, n);
      }
    case Format::kFp8E4M3:
      return RoundArray<SpecE4M3>(src, dst, n);
    case Format::kFp8E5M2:
      return RoundArray<SpecE5M2>(src, dst, n);
    default:
      if (src != dst) std::memmove(dst, src, n * sizeof(float));
      return;
  }
}

// bf16 codes of `rows` rows (RoundBf16's rounding, the upper 16 bits kept as the code): what
// the bf16 depthwise kernel reads.
void Bf16Rows(const float* src, size_t src_stride, uint16_t* dst, size_t dst_stride, size_t rows,
              size_t n) {
  const hn::ScalableTag<float> df;
  const hn::Rebind<uint16_t, decltype(df)> d16;
  for (size_t r = 0; r < rows; ++r)
    ConvertLoop(df, d16, src + r * src_stride, dst + r * dst_stride, n, false,
                [&](const float* p) { return Bf16Codes(d16, df, p); });
}

// Rows of both (a depthwise plane's rows into its padded buffer: one call per plane).
void RoundFloatRows(uint8_t format, const float* src, size_t src_stride, float* dst,
                    size_t dst_stride, size_t rows, size_t n) {
  for (size_t r = 0; r < rows; ++r)
    RoundFloat(format, src + r * src_stride, dst + r * dst_stride, n);
}
void Int8RoundRows(const float* src, size_t src_stride, float* dst, size_t dst_stride, size_t rows,
                   size_t n, float s) {
  for (size_t r = 0; r < rows; ++r) Int8Round(src + r * src_stride, dst + r * dst_stride, n, s);
}

void Int8Encode(const float* HWY_RESTRICT src, int8_t* HWY_RESTRICT dst, size_t n, float s) {
  Int8EncodeImpl(src, dst, n, s, n >= kStreamMinBytes);
  hwy::FlushStream();
}

#if HWY_ARCH_X86 && HWY_TARGET <= HWY_AVX3
// Four int32 vectors of codes in [-128, 127] -> 64 bytes in order.
HWY_INLINE __m512i PackCodes(__m512i a, __m512i b, __m512i c, __m512i d) {
  const __m512i v = _mm512_packs_epi16(_mm512_packs_epi32(a, b), _mm512_packs_epi32(c, d));
  // Each 128-bit lane j now holds dwords (a_j, b_j, c_j, d_j); put a's four first, and so on.
  return _mm512_permutexvar_epi32(
      _mm512_setr_epi32(0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15), v);
}

// int8 rows on AVX-512: kStreams groups of consecutive rows, interleaved 64 values at a time
// (see Interleave), software-pipelined: while one row of each stream is read from memory for
// its amax, the previous row of the stream (still in L1/L2) is encoded. Needs k % 64 == 0 and
// at least kStreams rows; returns the number of rows done (a multiple of kStreams).
size_t Int8EncodeRowsAvx512(const float* HWY_RESTRICT src, int8_t* HWY_RESTRICT dst, size_t rows,
                            size_t k, float* HWY_RESTRICT scales) {
  const size_t per = rows / kStreams, chunks = k / 64;
  const bool stream = rows * k >= kStreamMinBytes && reinterpret_cast<uintptr_t>(dst) % 64 == 0;
  const __m512i abs_mask = _mm512_set1_epi32(0x7FFFFFFF);
  const __m512 lo = _mm512_set1_ps(-127.0f), hi = _mm512_set1_ps(127.0f);
  __m512 sv[kStreams], rv[kStreams];
  int mode[kStreams];  // 0: corrected quotient, 1: division, 2: every code 0
  auto set_scale = [&](size_t st, float s) {
    sv[st] = _mm512_set1_ps(s);
    rv[st] = _mm512_set1_ps(1.0f / s);
    // s = amax / 127 of the row itself, so |x / s| <= 127 (1 + 2^-23): no NaN or overflow
    // unless s is 0 (underflow), inf or NaN (a non-finite element), where ref gives 0 codes.
    mode[st] = QuotientScaleOk(s) ? 0 : (s != 0.0f && std::isfinite(s) ? 1 : 2);
  };
  auto codes16 = [&](const float* p, size_t st) {
    const __m512 x = _mm512_loadu_ps(p);
    if (HWY_LIKELY(mode[st] == 0)) {
      // |x| <= amax and s = RN(amax / 127), a normal number: |x / s| <= 127 (1 + 2^-23), so
      // the code needs no clamp.
      const __m512 y = _mm512_mul_ps(x, rv[st]);
      return _mm512_cvtps_epi32(_mm512_fmadd_ps(_mm512_fnmadd_ps(y, sv[st], x), rv[st], y));
    }
    const __m512 q = mode[st] == 1 ? _mm512_div_ps(x, sv[st]) : _mm512_setzero_ps();
    return _mm512_cvtps_epi32(_mm512_min_ps(_mm512_max_ps(q, lo), hi));
  };
  auto step = [&](size_t t, auto has_next, auto has_cur) {
    __m512i m[kStreams];
    for (size_t st = 0; st < kStreams; ++st) m[st] = _mm512_setzero_si512();
    for (size_t c = 0; c < chunks; ++c) {
#pragma GCC unroll 4
      for (size_t st = 0; st < kStreams; ++st) {
        if constexpr (decltype(has_next)::value) {
          const float* p = src + (st * per + t) * k + c * 64;
          PrefetchAhead(p, 256);
          const __m512i a = _mm512_max_epu32(
              _mm512_and_si512(_mm512_castps_si512(_mm512_loadu_ps(p)), abs_mask),
              _mm512_and_si512(_mm512_castps_si512(_mm512_loadu_ps(p + 16)), abs_mask));
          const __m512i b = _mm512_max_epu32(
              _mm512_and_si512(_mm512_castps_si512(_mm512_loadu_ps(p + 32)), abs_mask),
              _mm512_and_si512(_mm512_castps_si512(_mm512_loadu_ps(p + 48)), abs_mask));
          m[st] = _mm512_max_epu32(m[st], _mm512_max_epu32(a, b));
        }
        if constexpr (decltype(has_cur)::value) {
          const size_t off = (st * per + t - 1) * k + c * 64;
          const float* p = src + off;
          const __m512i v = PackCodes(codes16(p, st), codes16(p + 16, st), codes16(p + 32, st),
                                      codes16(p + 48, st));
          if (stream) {
            _mm512_stream_si512(reinterpret_cast<__m512i*>(dst + off), v);
          } else {
            _mm512_storeu_si512(dst + off, v);
          }
        }
      }
    }
    if constexpr (decltype(has_next)::value) {
      for (size_t st = 0; st < kStreams; ++st) {
        const float s = ref::int8_scale(
            std::bit_cast<float>(static_cast<uint32_t>(_mm512_reduce_max_epu32(m[st]))));
        scales[st * per + t] = s;
        set_scale(st, s);
      }
    }
  };
  using Yes = std::true_type;
  using No = std::false_type;
  step(0, Yes(), No());
  for (size_t t = 1; t < per; ++t) step(t, Yes(), Yes());
  step(per, No(), Yes());
  if (stream) hwy::FlushStream();
  // Stream st's rows are st * per .. st * per + per - 1: all of the first kStreams * per rows.
  return kStreams * per;
}
#endif

// Rows of k values, one scale per row (per output channel of a weight matrix): each row's amax
// and codes in one pass over memory, the row still in L1 for the codes.
void Int8EncodeRows(const float* HWY_RESTRICT src, int8_t* HWY_RESTRICT dst, size_t rows, size_t k,
                    float* HWY_RESTRICT scales) {
  size_t r = 0;
#if HWY_ARCH_X86 && HWY_TARGET <= HWY_AVX3
  // Two rows of each stream must stay in L2 (2 MiB here) while they are encoded.
  if (k % 64 == 0 && k > 0 && k <= 16384 && rows >= kStreams)
    r = Int8EncodeRowsAvx512(src, dst, rows, k, scales);
#endif
  const bool big = rows * k >= kStreamMinBytes;
  for (; r < rows; ++r) {
    scales[r] = ref::int8_scale(Amax(src + r * k, k));
    Int8EncodeImpl(src + r * k, dst + r * k, k, scales[r], big);
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

#if HWY_ARCH_X86 && HWY_TARGET <= HWY_AVX3
// int4 on AVX-512 over `groups` consecutive groups of 32 (rows whose length is a multiple of 32
// are one long run of groups): blocks of 16 groups, kStreams streams of consecutive blocks
// interleaved 64 values at a time and software-pipelined like the int8 rows: while block t of
// each stream is read from memory for its group amaxes, block t - 1 (in L1) is encoded.
// The 16 amaxes of a block come from a transposing max-reduction (15 shuffle pairs instead of
// a horizontal reduction per group), their fp16 scales from one vcvtps2ph (RNE, as the
// reference's integer encoding; inf -> 65504, amax 0 -> 1) and the codes from the corrected
// quotient (Quotient: every scale of a non-zero fp16 lies in [2^-24, 65504]). Groups with a
// zero, NaN or saturated scale or an infinite amax (rare) go through the reference. Returns the
// number of groups done (a multiple of 16 * kStreams).
size_t Int4EncodeGroupsAvx512(const float* HWY_RESTRICT src, size_t groups,
                              uint8_t* HWY_RESTRICT packed, uint16_t* HWY_RESTRICT scales) {
  const size_t per = groups / (16 * kStreams);  // blocks per stream
  const __m512i abs_mask = _mm512_set1_epi32(0x7FFFFFFF);
  const __m512i lo8 = _mm512_set1_epi8(-8), hi8 = _mm512_set1_epi8(7);
  const __m512i nib_lo = _mm512_set1_epi16(0x000F);
  const __m512i order = _mm512_setr_epi32(0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15);
  HWY_ALIGN float sval[kStreams][16], rval[kStreams][16];
  HWY_ALIGN __m512i part[kStreams][8];  // per stream: 8 vectors holding two groups' maxima
  uint32_t special[kStreams] = {};
  auto encode_pair = [&](size_t st, size_t g, const float* x, uint8_t* out) {  // groups g, g+1
    if (HWY_UNLIKELY((special[st] >> g) & 3)) {
      for (size_t h = 0; h < 2; ++h) {
        for (size_t j = 0; j < 16; ++j) {
          const float sc = sval[st][g + h];
          const auto c0 = static_cast<uint8_t>(ref::int4_encode(x[32 * h + 2 * j], sc) & 0xF);
          const auto c1 = static_cast<uint8_t>(ref::int4_encode(x[32 * h + 2 * j + 1], sc) & 0xF);
          out[16 * h + j] = static_cast<uint8_t>(c0 | (c1 << 4));
        }
      }
      return;
    }
    __m512i q[4];
    for (size_t v = 0; v < 4; ++v) {
      const __m512 sv = _mm512_set1_ps(sval[st][g + v / 2]),
                   rv = _mm512_set1_ps(rval[st][g + v / 2]);
      const __m512 xv = _mm512_loadu_ps(x + 16 * v);
      const __m512 y = _mm512_mul_ps(xv, rv);
      q[v] = _mm512_cvtps_epi32(_mm512_fmadd_ps(_mm512_fnmadd_ps(y, sv, xv), rv, y));
    }
    // |x / s| <= 7·2^10 here (the scale is not saturated, and at least 2^-24 when amax/7 is
    // below fp16's normal range), so the codes fit in int32 and the byte packing saturates them
    // without changing the clamp to [-8, 7] done on the bytes.
    const __m512i b = _mm512_max_epi8(_mm512_min_epi8(PackCodes(q[0], q[1], q[2], q[3]), hi8), lo8);
    // 64 codes as bytes in order; each 16-bit lane (codes 2j, 2j+1) -> low | high << 4.
    const __m512i nib = _mm512_ternarylogic_epi32(b, _mm512_srli_epi16(b, 4), nib_lo, 0xE4);
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(out), _mm512_cvtepi16_epi8(nib));
  };
  auto finish_block = [&](size_t st, size_t block) {  // amaxes of 16 groups -> scales
    __m512i l2[4];
    for (size_t j = 0; j < 4; ++j) {
      const __m512i x = part[st][2 * j], y = part[st][2 * j + 1];
      l2[j] = _mm512_max_epu32(_mm512_shuffle_i32x4(x, y, 0x88), _mm512_shuffle_i32x4(x, y, 0xDD));
    }
    __m512i l3[2];
    for (size_t j = 0; j < 2; ++j) {
      const __m512i x = l2[2 * j], y = l2[2 * j + 1];
      l3[j] = _mm512_max_epu32(_mm512_unpacklo_epi64(x, y), _mm512_unpackhi_epi64(x, y));
    }
    const __m512 x3 = _mm512_castsi512_ps(l3[0]), y3 = _mm512_castsi512_ps(l3[1]);
    const __m512i l4 =
        _mm512_max_epu32(_mm512_castps_si512(_mm512_shuffle_ps(x3, y3, _MM_SHUFFLE(2, 0, 2, 0))),
                         _mm512_castps_si512(_mm512_shuffle_ps(x3, y3, _MM_SHUFFLE(3, 1, 3, 1))));
    // Lane 4q + i holds group 4i + q.
    const __m512i amax_bits = _mm512_permutexvar_epi32(order, l4);
    const __m512 amax = _mm512_castsi512_ps(amax_bits);
    __m256i code = _mm512_cvtps_ph(_mm512_div_ps(amax, _mm512_set1_ps(7.0f)),
                                   _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    code = _mm256_mask_mov_epi16(code, _mm256_cmpeq_epi16_mask(code, _mm256_set1_epi16(0x7C00)),
                                 _mm256_set1_epi16(0x7BFF));
    code = _mm256_mask_mov_epi16(code, _mm512_cmpeq_epi32_mask(amax_bits, _mm512_setzero_si512()),
                                 _mm256_set1_epi16(0x3C00));
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(scales + block * 16), code);
    const __m512 sv = _mm512_cvtph_ps(code);
    _mm512_store_ps(sval[st], sv);
    _mm512_store_ps(rval[st], _mm512_div_ps(_mm512_set1_ps(1.0f), sv));
    // Zero or NaN scale (underflow or NaN input), an infinite element (amax inf), or a scale at
    // fp16's maximum (saturated: x / s unbounded).
    special[st] =
        static_cast<uint32_t>(_mm512_cmp_ps_mask(sv, _mm512_setzero_ps(), _CMP_NGT_UQ) |
                              _mm512_cmpge_epu32_mask(amax_bits, _mm512_set1_epi32(0x7F800000)) |
                              _mm256_cmpeq_epi16_mask(code, _mm256_set1_epi16(0x7BFF)));
  };
  auto step = [&](size_t t, auto has_next, auto has_cur) {
    for (size_t c = 0; c < 8; ++c) {  // 64 values: groups 2c, 2c+1 of the block
#pragma GCC unroll 4
      for (size_t st = 0; st < kStreams; ++st) {
        if constexpr (decltype(has_next)::value) {
          const float* p = src + ((st * per + t) * 16 + 2 * c) * 32;
          PrefetchAhead(p, 256);
          auto abs16 = [&](size_t v) {
            return _mm512_and_si512(_mm512_castps_si512(_mm512_loadu_ps(p + 16 * v)), abs_mask);
          };
          const __m512i a = _mm512_max_epu32(abs16(0), abs16(1));
          const __m512i b = _mm512_max_epu32(abs16(2), abs16(3));
          // Halve each group's 16 lanes: group 2c in the low 256 bits, 2c + 1 in the high.
          part[st][c] =
              _mm512_max_epu32(_mm512_shuffle_i32x4(a, b, 0x44), _mm512_shuffle_i32x4(a, b, 0xEE));
        }
        if constexpr (decltype(has_cur)::value) {
          const size_t g = (st * per + t - 1) * 16 + 2 * c;
          encode_pair(st, 2 * c, src + g * 32, packed + g * 16);
        }
      }
    }
    if constexpr (decltype(has_next)::value) {
      for (size_t st = 0; st < kStreams; ++st) finish_block(st, st * per + t);
    }
  };
  if (per == 0) return 0;
  using Yes = std::true_type;
  using No = std::false_type;
  step(0, Yes(), No());
  for (size_t t = 1; t < per; ++t) step(t, Yes(), Yes());
  step(per, No(), Yes());
  return 16 * kStreams * per;
}
#endif

// Rows of k values: ceil(k/2) packed bytes and ceil(k/32) scales per row. (Non-temporal stores
// of the packed bytes were measured slower in the per-row loop, 42 ms instead of 36 for
// 256 MiB, and no faster in the AVX-512 kernel.)
void Int4EncodeRows(const float* HWY_RESTRICT src, size_t rows, size_t k,
                    uint8_t* HWY_RESTRICT packed, uint16_t* HWY_RESTRICT scales) {
  const size_t row_bytes = (k + 1) / 2, groups = (k + 31) / 32;
#if HWY_ARCH_X86 && HWY_TARGET <= HWY_AVX3
  if (k % 32 == 0 && rows * k * sizeof(float) >= kInterleaveMinBytes) {
    // Whole rows of whole groups: one run of rows * k / 32 groups, packed and scales contiguous.
    const size_t all = rows * groups;
    const size_t done = Int4EncodeGroupsAvx512(src, all, packed, scales);
    if (done < all)
      Int4EncodeRow(src + done * 32, (all - done) * 32, packed + done * 16, scales + done);
    return;
  }
#endif
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
HWY_EXPORT(Int8Round);
HWY_EXPORT(RoundFloat);
HWY_EXPORT(RoundFloatRows);
HWY_EXPORT(Int8RoundRows);
HWY_EXPORT(Int8BiasedRows);
HWY_EXPORT(Bf16Rows);
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
void int8_round_array(const float* src, float* dst, size_t n, float s) {
  (void)cpu_features(), HWY_DYNAMIC_DISPATCH(cpu::Int8Round)(src, dst, n, s);
}
void round_float_rows(Format f, const float* src, size_t src_stride, float* dst, size_t dst_stride,
                      size_t rows, size_t n) {
  DP_CHECK(is_float_format(f), "round_float_rows needs a float format");
  (void)cpu_features(), HWY_DYNAMIC_DISPATCH(cpu::RoundFloatRows)(
                            static_cast<uint8_t>(f), src, src_stride, dst, dst_stride, rows, n);
}
void int8_round_rows(const float* src, size_t src_stride, float* dst, size_t dst_stride,
                     size_t rows, size_t n, float s) {
  (void)cpu_features(),
      HWY_DYNAMIC_DISPATCH(cpu::Int8RoundRows)(src, src_stride, dst, dst_stride, rows, n, s);
}
void bf16_encode_rows(const float* src, size_t src_stride, uint16_t* dst, size_t dst_stride,
                      size_t rows, size_t n) {
  (void)cpu_features(),
      HWY_DYNAMIC_DISPATCH(cpu::Bf16Rows)(src, src_stride, dst, dst_stride, rows, n);
}
void int8_biased_rows(const float* src, size_t src_stride, uint8_t* dst, size_t dst_stride,
                      size_t rows, size_t n, float s) {
  (void)cpu_features(),
      HWY_DYNAMIC_DISPATCH(cpu::Int8BiasedRows)(src, src_stride, dst, dst_stride, rows, n, s);
}
void round_float_array(Format f, const float* src, float* dst, size_t n) {
  DP_CHECK(is_float_format(f), "round_float_array needs a float format");
  (void)cpu_features(), HWY_DYNAMIC_DISPATCH(cpu::RoundFloat)(static_cast<uint8_t>(f), src, dst, n);
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
