// Helpers shared by the tests.
#pragma once

#include <hwy/targets.h>

#include <bit>
#include <cmath>
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "dynaprec/convert.h"
#include "dynaprec/cpu_features.h"

namespace dynaprec::test {

/// Same value, or both NaN (CONTRACT: NaN positions equal; +0/-0 both fine only where noted).
inline bool same_bits_or_nan(float a, float b) {
  if (std::isnan(a) || std::isnan(b)) return std::isnan(a) && std::isnan(b);
  return std::bit_cast<uint32_t>(a) == std::bit_cast<uint32_t>(b);
}

/// Runs `fn(target_name)` once per SIMD target this CPU supports (capped by DYNAPREC_ISA),
/// with runtime dispatch forced to that target. Restores the previous set afterwards.
inline void for_each_simd_target(const std::function<void(const std::string&)>& fn) {
  (void)cpu_features();  // applies the DYNAPREC_ISA cap first
  const int64_t before = hwy::SupportedTargets();
  for (int64_t rest = before; rest != 0; rest &= rest - 1) {
    const int64_t t = rest & ~(rest - 1);
    hwy::SetSupportedTargetsForTest(t);
    const std::string want = hwy::TargetName(t);
    if (want != simd_target_name()) continue;  // target not compiled into the kernels
    fn(want);
  }
  hwy::SetSupportedTargetsForTest(before);
}

}  // namespace dynaprec::test
