// The shadow's dot product (monitor.h: shadow_dot) and the canary's sums over probability
// outputs (entropy, KL divergence) and every portion's ambiguity, Highway with runtime dispatch,
// and their plain references. Every product of two floats is exact in double (24 + 24 significant
// bits), so the only rounding is the summation's: the vector version sums in 4 × lanes partial sums
// (FMA or a multiply and an add: the same result, the product being exact), the reference in one.
#undef HWY_TARGET_INCLUDE
#define HWY_TARGET_INCLUDE "monitor/shadow_dot_hwy.cc"
#include <hwy/foreach_target.h>  // IWYU pragma: keep
// clang-format off
#include <hwy/highway.h>
#include <hwy/contrib/math/math-inl.h>
// clang-format on

#include <algorithm>
#include <cmath>
#include <limits>

#include "dynaprec/cpu_features.h"
#include "dynaprec/monitor.h"

HWY_BEFORE_NAMESPACE();
namespace dynaprec::monitor_hwy::HWY_NAMESPACE {
namespace hn = hwy::HWY_NAMESPACE;

double ShadowDot(const float* x, const float* w, size_t n) {
  const hn::ScalableTag<double> dd;
  const hn::Rebind<float, decltype(dd)> df;  // as many floats as dd has lanes
  const size_t lanes = hn::Lanes(dd);
  auto a0 = hn::Zero(dd), a1 = hn::Zero(dd), a2 = hn::Zero(dd), a3 = hn::Zero(dd);
  auto term = [&](size_t j) {
    return std::pair(hn::PromoteTo(dd, hn::LoadU(df, x + j)),
                     hn::PromoteTo(dd, hn::LoadU(df, w + j)));
  };
  size_t j = 0;
  for (; j + 4 * lanes <= n; j += 4 * lanes) {
    const auto [x0, w0] = term(j);
    const auto [x1, w1] = term(j + lanes);
    const auto [x2, w2] = term(j + 2 * lanes);
    const auto [x3, w3] = term(j + 3 * lanes);
    a0 = hn::MulAdd(x0, w0, a0);
    a1 = hn::MulAdd(x1, w1, a1);
    a2 = hn::MulAdd(x2, w2, a2);
    a3 = hn::MulAdd(x3, w3, a3);
  }
  for (; j + lanes <= n; j += lanes) {
    const auto [xv, wv] = term(j);
    a0 = hn::MulAdd(xv, wv, a0);
  }
  double s = hn::GetLane(hn::SumOfLanes(dd, hn::Add(hn::Add(a0, a1), hn::Add(a2, a3))));
  for (; j < n; ++j) s += static_cast<double>(x[j]) * w[j];
  return s;
}

// Σ over i of -p·ln p (p > 0), or with `got`: Σ ref·(ln ref - ln max(got, 1e-30)) (ref > 0), in
// double: each float widened, Highway's Log (a few ulp). A vector with a NaN or inf takes the
// reference's scalar terms, so those propagate as there.
double ProbSum(const float* p, const float* got, size_t n) {
  // One term as the reference writes it (std::log in double): for special values, and the tail.
  auto scalar = [&](size_t j) -> double {
    if (got ? p[j] <= 0 : !(p[j] > 0)) return 0.0;
    return got ? p[j] * (std::log(static_cast<double>(p[j])) -
                         std::log(std::max(static_cast<double>(got[j]), 1e-30)))
               : -p[j] * std::log(static_cast<double>(p[j]));
  };
  const hn::ScalableTag<double> dd;
  const hn::Rebind<float, decltype(dd)> df;
  const size_t lanes = hn::Lanes(dd);
  const auto zero = hn::Zero(dd), one = hn::Set(dd, 1.0), tiny = hn::Set(dd, 1e-30);
  auto acc = zero;
  double s = 0.0;
  size_t j = 0;
  for (; j + lanes <= n; j += lanes) {
    const auto pv = hn::PromoteTo(dd, hn::LoadU(df, p + j));
    const auto gv = got ? hn::PromoteTo(dd, hn::LoadU(df, got + j)) : one;
    if (!hn::AllTrue(dd, hn::And(hn::IsFinite(pv), hn::IsFinite(gv)))) {
      for (size_t i = j; i < j + lanes; ++i) s += scalar(i);  // NaN or inf among them
      continue;
    }
    const auto live = hn::Gt(pv, zero);
    auto t = hn::Log(dd, hn::IfThenElse(live, pv, one));
    t = got ? hn::Sub(t, hn::Log(dd, hn::Max(gv, tiny))) : hn::Neg(t);
    acc = hn::Add(acc, hn::IfThenElseZero(live, hn::Mul(pv, t)));
  }
  s += hn::GetLane(hn::SumOfLanes(dd, acc));
  for (; j < n; ++j) s += scalar(j);
  return s;
}

// Mean over `rows` rows of `last` values of 1 - max p, or NaN when a row is not a probability
// vector (a value negative or NaN, or a sum off 1 by more than 1e-3). Per row four partial sums
// and maxima per lane; the row's tail one by one (a vector load would read past the row).
double MeanAmbiguity(const float* p, size_t rows, size_t last) {
  constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();
  const hn::ScalableTag<float> df;
  const size_t lanes = hn::Lanes(df);
  const auto zero = hn::Zero(df);
  double a = 0;
  for (size_t r = 0; r < rows; ++r, p += last) {
    auto s0 = zero, s1 = zero, s2 = zero, s3 = zero;
    auto m0 = hn::Set(df, -1.0f), m1 = m0, m2 = m0, m3 = m0;
    auto bad = hn::FirstN(df, 0);  // a lane saw a negative value or NaN
    auto step = [&](auto& sum, auto& mx, auto v) {
      bad = hn::Or(bad, hn::Not(hn::Ge(v, zero)));
      sum = hn::Add(sum, v);
      mx = hn::Max(mx, v);
    };
    size_t j = 0;
    for (; j + 4 * lanes <= last; j += 4 * lanes) {
      step(s0, m0, hn::LoadU(df, p + j));
      step(s1, m1, hn::LoadU(df, p + j + lanes));
      step(s2, m2, hn::LoadU(df, p + j + 2 * lanes));
      step(s3, m3, hn::LoadU(df, p + j + 3 * lanes));
    }
    for (; j + lanes <= last; j += lanes) step(s0, m0, hn::LoadU(df, p + j));
    if (!hn::AllFalse(df, bad)) return kNaN;
    float mx = hn::GetLane(hn::MaxOfLanes(df, hn::Max(hn::Max(m0, m1), hn::Max(m2, m3))));
    float sum = hn::GetLane(hn::SumOfLanes(df, hn::Add(hn::Add(s0, s1), hn::Add(s2, s3))));
    for (; j < last; ++j) {
      if (!(p[j] >= 0)) return kNaN;
      sum += p[j];
      mx = std::max(mx, p[j]);
    }
    if (!(std::fabs(sum - 1.0f) <= 1e-3f)) return kNaN;
    a += 1.0 - mx;
  }
  return a / static_cast<double>(rows);
}

}  // namespace dynaprec::monitor_hwy::HWY_NAMESPACE
HWY_AFTER_NAMESPACE();

#if HWY_ONCE
namespace dynaprec {
namespace monitor_hwy {
HWY_EXPORT(ShadowDot);
HWY_EXPORT(ProbSum);
HWY_EXPORT(MeanAmbiguity);
}  // namespace monitor_hwy

double mean_ambiguity(std::span<const float> p, int64_t last) {
  if (last < 2 || p.empty() || p.size() % static_cast<size_t>(last) != 0)
    return std::numeric_limits<double>::quiet_NaN();
  return (void)cpu_features(),
         HWY_DYNAMIC_DISPATCH(monitor_hwy::MeanAmbiguity)(
             p.data(), p.size() / static_cast<size_t>(last), static_cast<size_t>(last));
}

double entropy_sum(const float* p, size_t n) {
  return (void)cpu_features(), HWY_DYNAMIC_DISPATCH(monitor_hwy::ProbSum)(p, nullptr, n);
}
double kl_sum(const float* ref, const float* got, size_t n) {
  return (void)cpu_features(), HWY_DYNAMIC_DISPATCH(monitor_hwy::ProbSum)(ref, got, n);
}

double shadow_dot(const float* x, const float* w, int64_t n) {
  if (n <= 0) return 0;
  return (void)cpu_features(),
         HWY_DYNAMIC_DISPATCH(monitor_hwy::ShadowDot)(x, w, static_cast<size_t>(n));
}

namespace ref {
double mean_ambiguity(std::span<const float> p, int64_t last) {
  if (!looks_like_probabilities(p, last)) return std::numeric_limits<double>::quiet_NaN();
  const size_t rows = p.size() / static_cast<size_t>(last);
  double a = 0;
  for (size_t r = 0; r < rows; ++r) {
    const auto row = p.begin() + static_cast<std::ptrdiff_t>(r * last);
    a += 1.0 - *std::max_element(row, row + last);
  }
  return a / static_cast<double>(rows);
}

double shadow_dot(const float* x, const float* w, int64_t n) {
  double s = 0;
  for (int64_t j = 0; j < n; ++j) s += static_cast<double>(x[j]) * w[j];
  return s;
}
}  // namespace ref
}  // namespace dynaprec
#endif  // HWY_ONCE
