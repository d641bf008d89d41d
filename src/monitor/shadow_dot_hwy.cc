// The shadow's dot product (monitor.h: shadow_dot), Highway with runtime dispatch, and its plain
// reference. Every product of two floats is exact in double (24 + 24 significant bits), so the
// only rounding is the summation's: the vector version sums in 4 × lanes partial sums (FMA or a
// multiply and an add: the same result, the product being exact), the reference in one.
#undef HWY_TARGET_INCLUDE
#define HWY_TARGET_INCLUDE "monitor/shadow_dot_hwy.cc"
#include <hwy/foreach_target.h>  // IWYU pragma: keep
// clang-format off
#include <hwy/highway.h>
// clang-format on

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

}  // namespace dynaprec::monitor_hwy::HWY_NAMESPACE
HWY_AFTER_NAMESPACE();

#if HWY_ONCE
namespace dynaprec {
namespace monitor_hwy {
HWY_EXPORT(ShadowDot);
}  // namespace monitor_hwy

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
