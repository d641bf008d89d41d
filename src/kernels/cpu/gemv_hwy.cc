// GEMV (batch 1) kernels: y[j] = Σ_p x[p] · W[j, p] for a range of rows j, W in any format.
// Memory-bound by design: each weight byte is read once, widened in registers and consumed.
//
//   fp32/bf16/fp16/fp8: W widened to fp32 lanes, FMA into fp32 accumulators (two per row).
//     fp16 uses vcvtph2ps (F16C) on AVX2/AVX-512 targets. fp8 goes through fp16 there: an
//     e5m2 code is the upper byte of an fp16; an e4m3 code with its exponent field moved down
//     is an fp16 worth 2^-8 of the value (also for e4m3's subnormals, which are fp16 normals);
//     the 2^8 is applied once per row. That skips e4m3's NaN code, which weights never hold
//     (matmul_weights refuses non-finite weights). Other targets decode exactly with integer
//     ops (float_codes-inl.h). AVX-512 machines with GFNI and VBMI use gemv_vnni.cc instead.
//   int8: x quantized once per call; int32 dot products, widened to int16 and multiplied in
//     pairs (vpmaddwd). AVX-512 VNNI machines use gemv_vnni.cc instead.
//   int4: a plain loop per group (portable fallback); AVX-512 VNNI: gemv_vnni.cc.
#undef HWY_TARGET_INCLUDE
#define HWY_TARGET_INCLUDE "kernels/cpu/gemv_hwy.cc"
#include <hwy/foreach_target.h>  // IWYU pragma: keep
// clang-format off
#include <hwy/highway.h>
#include <hwy/cache_control.h>
#include "cpu/float_codes-inl.h"
// clang-format on

#include <cstring>

#include "dynaprec/convert.h"
#include "kernels/cpu/gemv_hwy.h"

HWY_BEFORE_NAMESPACE();
namespace dynaprec::cpu::HWY_NAMESPACE {
namespace hn = hwy::HWY_NAMESPACE;

#if HWY_ARCH_X86 && HWY_TARGET <= HWY_AVX2
constexpr bool kF16C = true;
#else
constexpr bool kF16C = false;
#endif

// Widens N stored weights at p to fp32 lanes, times kScale (undone per row by the caller).
template <Format F>
struct Widen;

// Widens 2N weights at p into two fp32 vectors (lo: the first N). The default is two Loads;
// the fp8 formats override it to do their bit work once on a full vector of 2N 16-bit lanes.
template <class W, class DF>
HWY_INLINE void Load2Default(DF df, const typename W::T* p, hn::Vec<DF>& lo, hn::Vec<DF>& hi) {
  lo = W::Load(df, p);
  hi = W::Load(df, p + hn::Lanes(df));
}

// Load2 as two Loads, for the formats without a wider widening step.
template <class Self>
struct TwoLoads {
  template <class DF, typename TW>  // TW: Self::T (Self is incomplete here)
  static HWY_INLINE void Load2(DF df, const TW* p, hn::Vec<DF>& lo, hn::Vec<DF>& hi) {
    Load2Default<Self>(df, p, lo, hi);
  }
};

#if HWY_ARCH_X86 && HWY_TARGET <= HWY_AVX2  // kF16C
// fp8 codes (2N bytes at p) -> fp16 bit patterns in 2N u16 lanes -> two fp32 vectors.
template <class DF, class Fn>
HWY_INLINE void Fp8ViaFp16(DF df, const uint8_t* p, hn::Vec<DF>& lo, hn::Vec<DF>& hi, Fn to_f16) {
  const hn::Repartition<uint16_t, DF> d16;  // 2N lanes
  const hn::Rebind<uint8_t, decltype(d16)> d8;
  const hn::Half<decltype(d16)> d16h;  // N lanes
  const hn::Rebind<hwy::float16_t, decltype(d16h)> dh;
  const auto h = to_f16(d16, hn::PromoteTo(d16, hn::LoadU(d8, p)));
  lo = hn::PromoteTo(df, hn::BitCast(dh, hn::LowerHalf(d16h, h)));
  hi = hn::PromoteTo(df, hn::BitCast(dh, hn::UpperHalf(d16h, h)));
}
#endif

template <>
struct Widen<Format::kFp32> : TwoLoads<Widen<Format::kFp32>> {
  using T = float;
  static constexpr float kScale = 1.0f;
  template <class DF>
  static HWY_INLINE hn::Vec<DF> Load(DF df, const T* p) {
    return hn::LoadU(df, p);
  }
};

template <>
struct Widen<Format::kBf16> : TwoLoads<Widen<Format::kBf16>> {
  using T = uint16_t;
  static constexpr float kScale = 1.0f;
  template <class DF>
  static HWY_INLINE hn::Vec<DF> Load(DF df, const T* p) {
    const hn::RebindToUnsigned<DF> du;
    const hn::Rebind<uint16_t, DF> d16;
    return hn::BitCast(df, hn::ShiftLeft<16>(hn::PromoteTo(du, hn::LoadU(d16, p))));
  }
};

template <>
struct Widen<Format::kFp16> : TwoLoads<Widen<Format::kFp16>> {
  using T = uint16_t;
  static constexpr float kScale = 1.0f;
  template <class DF>
  static HWY_INLINE hn::Vec<DF> Load(DF df, const T* p) {
    if constexpr (kF16C) {
      const hn::Rebind<hwy::float16_t, DF> dh;
      return hn::PromoteTo(df, hn::LoadU(dh, reinterpret_cast<const hwy::float16_t*>(p)));
    } else {
      const hn::RebindToUnsigned<DF> du;
      const hn::Rebind<uint16_t, DF> d16;
      return DecodeCodes<SpecFp16>(df, hn::PromoteTo(du, hn::LoadU(d16, p)));
    }
  }
};

// The fp8 formats: one code-to-fp16 rule each (Self::ToF16, on AVX2/AVX-512 targets), the
// exact integer decode (Spec) elsewhere.
template <class Self, class Spec>
struct Fp8Widen {
  using T = uint8_t;
  template <class DF>
  static HWY_INLINE void Load2(DF df, const T* p, hn::Vec<DF>& lo, hn::Vec<DF>& hi) {
    if constexpr (kF16C) {
      Fp8ViaFp16(df, p, lo, hi, [](auto d16, auto b) { return Self::ToF16(d16, b); });
    } else {
      Load2Default<Self>(df, p, lo, hi);
    }
  }
  template <class DF>
  static HWY_INLINE hn::Vec<DF> Load(DF df, const T* p) {
    const hn::RebindToUnsigned<DF> du;
    const hn::Rebind<uint8_t, DF> d8;
    if constexpr (kF16C) {
      const hn::Rebind<uint16_t, DF> d16;
      const hn::Rebind<hwy::float16_t, DF> dh;
      const auto h = Self::ToF16(d16, hn::PromoteTo(d16, hn::LoadU(d8, p)));
      return hn::PromoteTo(df, hn::BitCast(dh, h));
    } else {
      return DecodeCodes<Spec>(df, hn::PromoteTo(du, hn::LoadU(d8, p)));
    }
  }
};

template <>
struct Widen<Format::kFp8E5M2> : Fp8Widen<Widen<Format::kFp8E5M2>, SpecE5M2> {
  static constexpr float kScale = 1.0f;
  // An e5m2 code is the upper byte of an fp16.
  template <class D16>
  static HWY_INLINE hn::Vec<D16> ToF16(D16, hn::Vec<D16> b) {
    return hn::ShiftLeft<8>(b);
  }
};

template <>
struct Widen<Format::kFp8E4M3> : Fp8Widen<Widen<Format::kFp8E4M3>, SpecE4M3> {
  static constexpr float kScale = kF16C ? 256.0f : 1.0f;
  // An e4m3 code with its exponent field moved down is an fp16 worth 2^-8 of the value:
  // (b & 0x7F) << 7 | (b & 0x80) << 8, as (b << 7 & 0x3F80) | (b << 8 & 0x8000).
  template <class D16>
  static HWY_INLINE hn::Vec<D16> ToF16(D16 d16, hn::Vec<D16> b) {
    return hn::OrAnd(hn::And(hn::ShiftLeft<7>(b), hn::Set(d16, uint16_t{0x3F80})),
                     hn::ShiftLeft<8>(b), hn::Set(d16, uint16_t{0x8000}));
  }
};

// Rows are taken R at a time (8 where there are 32 vector registers, else 4): each x vector is
// loaded once for R rows of W, which cuts the x traffic (x is fp32: 2-4 times the bytes of a
// bf16/fp16/fp8 weight row) by R and gives 2R independent FMA chains. Prefetch, once per cache
// line of each row: into L2 the same place R rows on, which the next pass reads (a fixed distance
// ahead in the row would leave the start of every pass cold), and into L1 a few lines ahead.
#if HWY_TARGET <= HWY_AVX3
constexpr int kRowsPerPass = 8;
#else
constexpr int kRowsPerPass = 4;
#endif
constexpr size_t kL1AheadBytes = 256;

template <Format F, int R>
HWY_INLINE void DotPass(const float* HWY_RESTRICT x, const typename Widen<F>::T* HWY_RESTRICT w,
                        size_t k, float* HWY_RESTRICT y) {
  using W = Widen<F>;
  using T = typename W::T;
  const hn::ScalableTag<float> df;
  const size_t N = hn::Lanes(df);
  hn::Vec<decltype(df)> a[R], b[R];
  for (int i = 0; i < R; ++i) a[i] = b[i] = hn::Zero(df);
  size_t p = 0;
  for (; p + 2 * N <= k; p += 2 * N) {
    if ((p * sizeof(T)) % 64 < 2 * N * sizeof(T)) {  // once per cache line of each row
      for (int i = 0; i < R; ++i) {
        const auto* here = reinterpret_cast<const char*>(w + i * k + p);
        __builtin_prefetch(here + R * k * sizeof(T), 0, 2);  // prefetcht1 on x86
        __builtin_prefetch(here + kL1AheadBytes, 0, 3);      // prefetcht0
      }
    }
    const auto x0 = hn::LoadU(df, x + p), x1 = hn::LoadU(df, x + p + N);
    for (int i = 0; i < R; ++i) {
      hn::Vec<decltype(df)> lo, hi;
      W::Load2(df, w + i * k + p, lo, hi);
      a[i] = hn::MulAdd(x0, lo, a[i]);
      b[i] = hn::MulAdd(x1, hi, b[i]);
    }
  }
  const size_t p_vec = p;
  // The last k % N values: zero-padded copies, one more vector (a per-element decode here had
  // cost more than the whole row at K = 60: 113 against 4 us for a bf16 480 x 60).
  const size_t p_tail = p_vec + (k - p_vec) / N * N, tail = k - p_tail;
  HWY_ALIGN float xt[hn::MaxLanes(df)] = {};
  if (tail) std::memcpy(xt, x + p_tail, tail * sizeof(float));
  for (int i = 0; i < R; ++i) {
    const T* row = w + i * k;
    for (p = p_vec; p + N <= k; p += N)
      a[i] = hn::MulAdd(hn::LoadU(df, x + p), W::Load(df, row + p), a[i]);
    if (tail) {
      HWY_ALIGN T wt[hn::MaxLanes(df)] = {};
      std::memcpy(wt, row + p_tail, tail * sizeof(T));
      b[i] = hn::MulAdd(hn::Load(df, xt), W::Load(df, wt), b[i]);
    }
    y[i] = hn::GetLane(hn::SumOfLanes(df, hn::Add(a[i], b[i]))) * W::kScale;
  }
}

template <Format F>
void DotRows(const float* HWY_RESTRICT x, const void* HWY_RESTRICT wv, size_t k, size_t j0,
             size_t j1, float* HWY_RESTRICT y) {
  const auto* w = static_cast<const typename Widen<F>::T*>(wv);
  size_t j = j0;
  for (; j + kRowsPerPass <= j1; j += kRowsPerPass)
    DotPass<F, kRowsPerPass>(x, w + j * k, k, y + j);
  for (; j < j1; ++j) DotPass<F, 1>(x, w + j * k, k, y + j);
}

void GemvFloatRows(uint8_t format, const float* HWY_RESTRICT x, const void* HWY_RESTRICT w,
                   size_t k, size_t j0, size_t j1, float* HWY_RESTRICT y) {
  switch (static_cast<Format>(format)) {
    case Format::kFp32:
      return DotRows<Format::kFp32>(x, w, k, j0, j1, y);
    case Format::kBf16:
      return DotRows<Format::kBf16>(x, w, k, j0, j1, y);
    case Format::kFp16:
      return DotRows<Format::kFp16>(x, w, k, j0, j1, y);
    case Format::kFp8E4M3:
      return DotRows<Format::kFp8E4M3>(x, w, k, j0, j1, y);
    case Format::kFp8E5M2:
      return DotRows<Format::kFp8E5M2>(x, w, k, j0, j1, y);
    default:
      break;
  }
}

void GemvInt8Rows(const int8_t* HWY_RESTRICT xq, const int8_t* HWY_RESTRICT w, size_t k, size_t j0,
                  size_t j1, int32_t* HWY_RESTRICT acc_out) {
  const hn::ScalableTag<int16_t> d16;
  const hn::Repartition<int32_t, decltype(d16)> d32;
  const hn::Rebind<int8_t, decltype(d16)> d8;
  const size_t N = hn::Lanes(d16);
  for (size_t j = j0; j < j1; ++j) {
    const int8_t* row = w + j * k;
    auto s0 = hn::Zero(d32), s1 = hn::Zero(d32);
    size_t p = 0;
    for (; p + N <= k; p += N) {
      const auto xv = hn::PromoteTo(d16, hn::LoadU(d8, xq + p));
      const auto wv = hn::PromoteTo(d16, hn::LoadU(d8, row + p));
      s0 = hn::ReorderWidenMulAccumulate(d32, xv, wv, s0, s1);
    }
    int32_t total = hn::GetLane(hn::SumOfLanes(d32, hn::RearrangeToOddPlusEven(s0, s1)));
    for (; p < k; ++p) total += int32_t{xq[p]} * int32_t{row[p]};
    acc_out[j] = total;
  }
}

// Σ over the groups of row j: float(acc_g) * scale_g (scalar, one group).
inline float Int4GroupScalar(const int8_t* xq, const uint8_t* packed, size_t p0, size_t p1,
                             float scale) {
  int32_t acc = 0;
  for (size_t p = p0; p < p1; ++p) {
    const uint8_t b = packed[p / 2];
    const int32_t q = static_cast<int32_t>(((p % 2 ? b >> 4 : b) & 0xF) ^ 0x8) - 8;
    acc += int32_t{xq[p]} * q;
  }
  return static_cast<float>(acc) * scale;
}

void GemvInt4Rows(const int8_t* HWY_RESTRICT xq, const uint8_t* HWY_RESTRICT w,
                  const uint16_t* HWY_RESTRICT scales, size_t k, size_t j0, size_t j1,
                  float* HWY_RESTRICT y) {
  const size_t row_bytes = (k + 1) / 2, groups = (k + 31) / 32;
  for (size_t j = j0; j < j1; ++j) {
    const uint8_t* row = w + j * row_bytes;
    const uint16_t* srow = scales + j * groups;
    float sum = 0.0f;
    for (size_t g = 0; g < groups; ++g) {
      const float s = ref::decode_float(Format::kFp16, srow[g]);
      sum += Int4GroupScalar(xq, row, g * 32, std::min(k, g * 32 + 32), s);
    }
    y[j] = sum;
  }
}

}  // namespace dynaprec::cpu::HWY_NAMESPACE
HWY_AFTER_NAMESPACE();

#if HWY_ONCE
namespace dynaprec::cpu {
HWY_EXPORT(GemvFloatRows);
HWY_EXPORT(GemvInt8Rows);
HWY_EXPORT(GemvInt4Rows);

void gemv_float_rows(Format f, const float* x, const void* w, size_t k, size_t j0, size_t j1,
                     float* y) {
  HWY_DYNAMIC_DISPATCH(GemvFloatRows)(static_cast<uint8_t>(f), x, w, k, j0, j1, y);
}
void gemv_int8_rows(const int8_t* xq, const int8_t* w, size_t k, size_t j0, size_t j1,
                    int32_t* acc) {
  HWY_DYNAMIC_DISPATCH(GemvInt8Rows)(xq, w, k, j0, j1, acc);
}
void gemv_int4_rows(const int8_t* xq, const uint8_t* w, const uint16_t* scales, size_t k, size_t j0,
                    size_t j1, float* y) {
  HWY_DYNAMIC_DISPATCH(GemvInt4Rows)(xq, w, scales, k, j0, j1, y);
}

}  // namespace dynaprec::cpu
#endif
