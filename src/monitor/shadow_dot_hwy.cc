// The shadow's dot product (monitor.h: shadow_dot) and the canary's sums over probability
// outputs (entropy, KL divergence), Highway with runtime dispatch, and their plain references.
// Every product of two floats is exact in double (24 + 24 significant bits), so the only rounding
// is the summation's: the vector version sums in 4 × lanes partial sums (FMA or a multiply and an
// add: the same result, the product being exact), the reference in one.
#undef HWY_TARGET_INCLUDE
#define HWY_TARGET_INCLUDE "monitor/shadow_dot_hwy.cc"
#include <hwy/foreach_target.h>  // IWYU pragma: keep
// clang-format off
#include <hwy/highway.h>
#include <hwy/contrib/math/math-inl.h>
// clang-format on

#include <algorithm>
#include <cmath>

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

}  // namespace dynaprec::monitor_hwy::HWY_NAMESPACE
HWY_AFTER_NAMESPACE();

#if HWY_ONCE
namespace dynaprec {
namespace monitor_hwy {
HWY_EXPORT(ShadowDot);
HWY_EXPORT(ProbSum);
}  // namespace monitor_hwy

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
double shadow_dot(const float* x, const float* w, int64_t n) {
  double s = 0;
  for (int64_t j = 0; j < n; ++j) s += static_cast<double>(x[j]) * w[j];
  return s;
}
}  // namespace ref
}  // namespace dynaprec
#endif  // HWY_ONCE
