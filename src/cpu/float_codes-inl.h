// Float format codes <-> fp32 lanes, exact for every input (see src/cpu/convert_hwy.cc for the
// method). A Highway "-inl" header: included once per SIMD target by the files that use it.
//
// Per-target include guard, as Highway's own -inl headers do.
#if defined(DYNAPREC_CPU_FLOAT_CODES_INL_H_) == defined(HWY_TARGET_TOGGLE)
#ifdef DYNAPREC_CPU_FLOAT_CODES_INL_H_
#undef DYNAPREC_CPU_FLOAT_CODES_INL_H_
#else
#define DYNAPREC_CPU_FLOAT_CODES_INL_H_
#endif

#include <hwy/highway.h>

#include <bit>
#include <cstdint>

#include "dynaprec/formats.h"

HWY_BEFORE_NAMESPACE();
namespace dynaprec::cpu::HWY_NAMESPACE {
namespace hn = hwy::HWY_NAMESPACE;

template <int kE, int kM, int kBias, bool kHasInf, OverflowKind kOverflow>
struct FloatSpec {
  static constexpr int E = kE, M = kM, Bias = kBias;
  static constexpr bool HasInf = kHasInf;
  static constexpr OverflowKind Overflow = kOverflow;
  static constexpr uint32_t ExpAll = (1u << E) - 1;
  static constexpr uint32_t InfCode = ExpAll << M;
  static constexpr uint32_t MaxCode =
      HasInf ? ((ExpAll - 1) << M) | ((1u << M) - 1) : (ExpAll << M) | ((1u << M) - 2);
  static constexpr uint32_t NanAll = (1u << (E + M)) - 1;
};

using SpecBf16 = FloatSpec<8, 7, 127, true, OverflowKind::kInfinity>;
using SpecFp16 = FloatSpec<5, 10, 15, true, OverflowKind::kInfinity>;
using SpecE4M3 = FloatSpec<4, 3, 7, false, OverflowKind::kSaturate>;
using SpecE5M2 = FloatSpec<5, 2, 15, true, OverflowKind::kSaturateFiniteKeepInf>;

// Checks that the compile-time specs match the table (one source of truth for the contract).
template <class S>
constexpr bool spec_matches(Format f) {
  const FormatInfo& fi = format_info(f);
  return fi.exponent_bits == S::E && fi.mantissa_bits == S::M && fi.exponent_bias == S::Bias &&
         fi.has_inf == S::HasInf && fi.overflow == S::Overflow;
}
static_assert(spec_matches<SpecBf16>(Format::kBf16) && spec_matches<SpecFp16>(Format::kFp16) &&
              spec_matches<SpecE4M3>(Format::kFp8E4M3) && spec_matches<SpecE5M2>(Format::kFp8E5M2));

constexpr float pow2f(int e) {
  float r = 1.0f;
  for (; e > 0; --e) r *= 2.0f;
  for (; e < 0; ++e) r *= 0.5f;
  return r;
}

// fp32 lanes -> codes of format S in u32 lanes.
template <class S, class DF>
HWY_INLINE hn::Vec<hn::RebindToUnsigned<DF>> EncodeCodes(DF df, hn::Vec<DF> v) {
  const hn::RebindToUnsigned<DF> du;
  const hn::RebindToSigned<DF> di;
  constexpr int kShift = 23 - S::M;
  const auto bits = hn::BitCast(du, v);
  const auto sign = hn::ShiftLeft<S::E + S::M>(hn::ShiftRight<31>(bits));
  const auto a = hn::And(bits, hn::Set(du, 0x7FFFFFFFu));

  // Normal range: RNE on the bit pattern, then rebias.
  const auto lsb = hn::And(hn::ShiftRight<kShift>(a), hn::Set(du, 1u));
  const auto rounded = hn::Add(hn::Add(a, hn::Set(du, (1u << (kShift - 1)) - 1)), lsb);
  const auto normal =
      hn::Sub(hn::ShiftRight<kShift>(rounded), hn::Set(du, uint32_t(127 - S::Bias) << S::M));

  // Subnormal range: |x| + 2^(24 - bias - M) has an ulp equal to the target's subnormal quantum.
  constexpr float kMagic = pow2f(24 - S::Bias - S::M);
  const auto magic = hn::Set(df, kMagic);
  const auto sub =
      hn::Sub(hn::BitCast(du, hn::Add(hn::BitCast(df, a), magic)), hn::BitCast(du, magic));
  const uint32_t kMinNormalBits = std::bit_cast<uint32_t>(pow2f(1 - S::Bias));
  const auto is_sub = hn::Lt(hn::BitCast(di, a), hn::Set(di, int32_t(kMinNormalBits)));
  auto code = hn::IfThenElse(hn::RebindMask(du, is_sub), sub, normal);

  // Codes beyond max finite (only finite a reach here meaningfully; inf lands here too).
  const auto over = hn::Gt(hn::BitCast(di, code), hn::Set(di, int32_t(S::MaxCode)));
  constexpr uint32_t kOverCode = S::Overflow == OverflowKind::kInfinity ? S::InfCode : S::MaxCode;
  code = hn::IfThenElse(hn::RebindMask(du, over), hn::Set(du, kOverCode), code);
  if constexpr (S::Overflow == OverflowKind::kSaturateFiniteKeepInf) {
    code = hn::IfThenElse(hn::Eq(a, hn::Set(du, 0x7F800000u)), hn::Set(du, S::InfCode), code);
  }
  const auto is_nan = hn::Gt(hn::BitCast(di, a), hn::Set(di, int32_t(0x7F800000)));
  hn::Vec<decltype(du)> nan_code;
  if constexpr (S::HasInf) {
    nan_code = hn::Or(hn::Set(du, S::InfCode | (1u << (S::M - 1))),
                      hn::ShiftRight<kShift>(hn::And(a, hn::Set(du, 0x7FFFFFu))));
  } else {
    nan_code = hn::Set(du, S::NanAll);
  }
  code = hn::IfThenElse(hn::RebindMask(du, is_nan), nan_code, code);
  return hn::Or(code, sign);
}

// Codes of format S in u32 lanes -> fp32 lanes.
template <class S, class DF>
HWY_INLINE hn::Vec<DF> DecodeCodes(DF df, hn::Vec<hn::RebindToUnsigned<DF>> code) {
  const hn::RebindToUnsigned<DF> du;
  constexpr int kShift = 23 - S::M;
  const auto sign = hn::ShiftLeft<31>(hn::ShiftRight<S::E + S::M>(code));
  const auto absc = hn::And(code, hn::Set(du, S::NanAll));
  // Placing the code's exponent and mantissa in fp32's fields scales the value by
  // 2^(bias - 127), also for the format's subnormals; one exact multiply undoes it.
  auto value = hn::BitCast(
      du, hn::Mul(hn::BitCast(df, hn::ShiftLeft<kShift>(absc)), hn::Set(df, pow2f(127 - S::Bias))));
  const auto mant = hn::And(absc, hn::Set(du, (1u << S::M) - 1));
  const auto nan_bits = hn::Or(hn::Set(du, 0x7FC00000u), hn::ShiftLeft<kShift>(mant));
  if constexpr (S::HasInf) {
    const auto is_special = hn::Gt(hn::BitCast(hn::RebindToSigned<DF>(), absc),
                                   hn::Set(hn::RebindToSigned<DF>(), int32_t(S::InfCode) - 1));
    const auto is_inf = hn::Eq(absc, hn::Set(du, S::InfCode));
    const auto special = hn::IfThenElse(is_inf, hn::Set(du, 0x7F800000u), nan_bits);
    value = hn::IfThenElse(hn::RebindMask(du, is_special), special, value);
  } else {
    value = hn::IfThenElse(hn::Eq(absc, hn::Set(du, S::NanAll)), nan_bits, value);
  }
  return hn::BitCast(df, hn::Or(value, sign));
}

}  // namespace dynaprec::cpu::HWY_NAMESPACE
HWY_AFTER_NAMESPACE();

#endif  // per-target include guard
