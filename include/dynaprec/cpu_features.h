// What this CPU can do, read once from cpuid/xgetbv (OS support of AVX-512 and AMX state
// included), optionally capped by the environment variable DYNAPREC_ISA so that every path can
// be exercised on any machine:
//   DYNAPREC_ISA=scalar | sse4 | avx2 | avx512 | native (default)
// The cap applies to our feature flags and to Highway's runtime dispatch alike.
#pragma once

#include <string>
#include <vector>

namespace dynaprec {

struct CpuFeatures {
  std::string vendor, brand;
  bool sse4_2 = false, avx = false, avx2 = false, fma = false, f16c = false;
  bool avx512f = false, avx512bw = false, avx512vl = false, avx512dq = false;
  bool avx512_vnni = false, avx512_vbmi = false, avx512_bf16 = false, avx512_fp16 = false;
  bool avx_vnni = false;
  bool amx_tile = false, amx_bf16 = false, amx_int8 = false;
  std::string isa_cap;  ///< the DYNAPREC_ISA value in force ("native" when unset)
  /// Names of the features present, e.g. {"avx2", "avx512f", ...}.
  std::vector<std::string> names() const;
};

/// Detected once (thread-safe); applies the DYNAPREC_ISA cap to Highway on first call.
/// Throws Error(kUsage) if DYNAPREC_ISA holds an unknown value.
const CpuFeatures& cpu_features();

}  // namespace dynaprec
