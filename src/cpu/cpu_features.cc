#include "dynaprec/cpu_features.h"

#include <cpuid.h>

#include <cstdlib>
#include <cstring>
#include <string_view>

#include <hwy/targets.h>

#include "dynaprec/error.h"

namespace dynaprec {
namespace {

struct Regs {
  unsigned a = 0, b = 0, c = 0, d = 0;
};

Regs cpuid(unsigned leaf, unsigned sub = 0) {
  Regs r;
  __cpuid_count(leaf, sub, r.a, r.b, r.c, r.d);
  return r;
}

uint64_t xgetbv0() {
  uint32_t lo = 0, hi = 0;
  __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
  return (uint64_t{hi} << 32) | lo;
}

bool bit(unsigned v, int i) { return ((v >> i) & 1u) != 0; }

CpuFeatures detect() {
  CpuFeatures f;
  const Regs r0 = cpuid(0);
  char vendor[13] = {};
  std::memcpy(vendor, &r0.b, 4);
  std::memcpy(vendor + 4, &r0.d, 4);
  std::memcpy(vendor + 8, &r0.c, 4);
  f.vendor = vendor;
  if (cpuid(0x80000000).a >= 0x80000004) {
    char brand[49] = {};
    for (unsigned i = 0; i < 3; ++i) {
      const Regs r = cpuid(0x80000002 + i);
      std::memcpy(brand + 16 * i, &r, 16);
    }
    f.brand = brand;
    while (!f.brand.empty() && f.brand.back() == ' ') f.brand.pop_back();
  }
  const unsigned max_leaf = r0.a;
  const Regs r1 = cpuid(1);
  const bool osxsave = bit(r1.c, 27);
  const uint64_t xcr0 = osxsave ? xgetbv0() : 0;
  const bool os_avx = (xcr0 & 0x6) == 0x6;                    // SSE + AVX state
  const bool os_avx512 = os_avx && (xcr0 & 0xE0) == 0xE0;     // opmask, ZMM_Hi256, Hi16_ZMM
  const bool os_amx = (xcr0 & (3ull << 17)) == (3ull << 17);  // XTILECFG + XTILEDATA
  f.sse4_2 = bit(r1.c, 20);
  f.avx = bit(r1.c, 28) && os_avx;
  f.fma = bit(r1.c, 12) && os_avx;
  f.f16c = bit(r1.c, 29) && os_avx;
  if (max_leaf >= 7) {
    const Regs r7 = cpuid(7, 0);
    const Regs r71 = cpuid(7, 1);
    f.avx2 = bit(r7.b, 5) && os_avx;
    f.avx512f = bit(r7.b, 16) && os_avx512;
    f.avx512dq = bit(r7.b, 17) && os_avx512;
    f.avx512bw = bit(r7.b, 30) && os_avx512;
    f.avx512vl = bit(r7.b, 31) && os_avx512;
    f.avx512_vbmi = bit(r7.c, 1) && os_avx512;
    f.avx512_vnni = bit(r7.c, 11) && os_avx512;
    f.avx512_fp16 = bit(r7.d, 23) && os_avx512;
    f.amx_bf16 = bit(r7.d, 22) && os_amx;
    f.amx_tile = bit(r7.d, 24) && os_amx;
    f.amx_int8 = bit(r7.d, 25) && os_amx;
    f.avx512_bf16 = bit(r71.a, 5) && os_avx512;
    f.avx_vnni = bit(r71.a, 4) && os_avx;
  }
  return f;
}

// Caps features and Highway targets at `cap`.
void apply_cap(CpuFeatures& f, std::string_view cap) {
  int64_t allowed = 0;  // Highway targets allowed; 0 = no restriction
  if (cap == "native") return;
  const bool keep_avx512 = cap == "avx512";
  const bool keep_avx2 = keep_avx512 || cap == "avx2";
  const bool keep_sse4 = keep_avx2 || cap == "sse4";
  if (!keep_sse4 && cap != "scalar")
    throw Error(ErrorKind::kUsage, "DYNAPREC_ISA='" + std::string(cap) +
                                       "' is not one of scalar, sse4, avx2, avx512, native");
  if (!keep_avx512) {
    f.avx512f = f.avx512bw = f.avx512vl = f.avx512dq = false;
    f.avx512_vnni = f.avx512_vbmi = f.avx512_bf16 = f.avx512_fp16 = false;
    f.amx_tile = f.amx_bf16 = f.amx_int8 = false;
  }
  if (!keep_avx2) f.avx = f.avx2 = f.fma = f.f16c = f.avx_vnni = false;
  if (!keep_sse4) f.sse4_2 = false;
  allowed = HWY_EMU128 | HWY_SCALAR;
  if (keep_sse4) allowed |= HWY_SSSE3 | HWY_SSE4;
  if (keep_avx2) allowed |= HWY_AVX2;
  if (keep_avx512) allowed |= HWY_AVX3 | HWY_AVX3_DL;
  hwy::SetSupportedTargetsForTest(hwy::SupportedTargets() & allowed);
}

}  // namespace

std::vector<std::string> CpuFeatures::names() const {
  std::vector<std::string> v;
  const std::pair<bool, const char*> all[] = {{sse4_2, "sse4.2"},
                                              {avx, "avx"},
                                              {avx2, "avx2"},
                                              {fma, "fma"},
                                              {f16c, "f16c"},
                                              {avx_vnni, "avx_vnni"},
                                              {avx512f, "avx512f"},
                                              {avx512bw, "avx512bw"},
                                              {avx512vl, "avx512vl"},
                                              {avx512dq, "avx512dq"},
                                              {avx512_vnni, "avx512_vnni"},
                                              {avx512_vbmi, "avx512_vbmi"},
                                              {avx512_bf16, "avx512_bf16"},
                                              {avx512_fp16, "avx512_fp16"},
                                              {amx_tile, "amx_tile"},
                                              {amx_bf16, "amx_bf16"},
                                              {amx_int8, "amx_int8"}};
  for (const auto& [on, name] : all)
    if (on) v.emplace_back(name);
  return v;
}

const CpuFeatures& cpu_features() {
  static const CpuFeatures features = [] {
    CpuFeatures f = detect();
    const char* env = std::getenv("DYNAPREC_ISA");
    f.isa_cap = env && *env ? env : "native";
    apply_cap(f, f.isa_cap);
    return f;
  }();
  return features;
}

}  // namespace dynaprec
