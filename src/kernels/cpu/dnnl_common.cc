#include "kernels/cpu/dnnl_common.h"

#include <optional>

#include "dynaprec/cpu_features.h"

namespace dynaprec::cpu {
namespace {

#if defined(__SANITIZE_ADDRESS__)
constexpr bool kAsan = true;
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
constexpr bool kAsan = true;
#else
constexpr bool kAsan = false;
#endif
#else
constexpr bool kAsan = false;
#endif

// oneDNN's ISA for a DYNAPREC_ISA cap below avx512; nullopt: no cap (our "avx512" keeps AMX).
//
// Under AddressSanitizer oneDNN stops below AMX: oneDNN 2.6.3 (Debian 12), creating its AMX
// brgemm convolution, reads one 8-byte element past the end of a small heap array (a loop that
// fetches the next iteration's index before testing for the end; the value is never used).
// With glibc's malloc the next chunk's header is always there, so the read is harmless; ASan's
// allocator can end a size-class region right after the array, and then the read faults
// (reproduced: 1 run in ~10 with a changed environment size; deterministically under
// Electric Fence for every brgconv:avx512_core_amx_bf16 created). Our own AMX kernels are
// unaffected by this cap and stay tested under ASan.
std::optional<dnnl::cpu_isa> onednn_cap(const CpuFeatures& f) {
  if (f.isa_cap == "native" || f.isa_cap == "avx512") {
    if (kAsan) return dnnl::cpu_isa::avx512_core_bf16;
    return std::nullopt;
  }
  if (f.isa_cap == "avx2") return f.avx_vnni ? dnnl::cpu_isa::avx2_vnni : dnnl::cpu_isa::avx2;
  return dnnl::cpu_isa::sse41;  // sse4, scalar: oneDNN has nothing lower
}

}  // namespace

unsigned onednn_isa() {
  static const unsigned isa = [] {
    const std::optional<dnnl::cpu_isa> cap = onednn_cap(cpu_features());
    if (cap) dnnl::set_max_cpu_isa(*cap);  // a status, no throw: checked below
    const auto effective = static_cast<unsigned>(dnnl::get_effective_cpu_isa());
    return cap && (effective & ~static_cast<unsigned>(*cap)) != 0 ? 0u : effective;
  }();
  return isa;
}

bool onednn_has(dnnl::cpu_isa isa) {
  const auto bits = static_cast<unsigned>(isa);
  return (onednn_isa() & bits) == bits;
}

const dnnl::engine& onednn_engine() {
  static const dnnl::engine e = [] {
    (void)onednn_isa();
    return dnnl::engine(dnnl::engine::kind::cpu, 0);
  }();
  return e;
}

dnnl::stream& onednn_stream() {
  thread_local dnnl::stream s(onednn_engine());
  return s;
}

}  // namespace dynaprec::cpu
