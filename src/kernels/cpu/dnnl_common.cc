#include "kernels/cpu/dnnl_common.h"

#include <optional>

#include "dynaprec/cpu_features.h"

namespace dynaprec::cpu {
namespace {

// oneDNN's ISA for a DYNAPREC_ISA cap below avx512; nullopt: no cap (our "avx512" keeps AMX).
std::optional<dnnl::cpu_isa> onednn_cap(const CpuFeatures& f) {
  if (f.isa_cap == "native" || f.isa_cap == "avx512") return std::nullopt;
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
