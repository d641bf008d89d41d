// What the oneDNN kernels (matmul_dnnl.cc, conv_cpu.cc) share: one engine, one stream per
// thread, the DYNAPREC_ISA cap applied to oneDNN once, and the OpenMP thread count per call.
#pragma once

#include <omp.h>

#include <oneapi/dnnl/dnnl.hpp>

namespace dynaprec::cpu {

/// oneDNN's effective ISA as its feature mask (the cpu_isa values nest: avx512_core_amx
/// includes avx512_core_bf16's bits, and so on), after capping it by DYNAPREC_ISA once, before
/// anything JITs. 0 when the cap could not be applied (oneDNN was used before us): then oneDNN
/// might run instructions the cap forbids, and the kernels report themselves unavailable.
unsigned onednn_isa();

/// Whether oneDNN will run `isa`'s code. Checked besides our flags because oneDNN has its own
/// cap (DNNL_MAX_CPU_ISA): int8 without VNNI is not just slow but wrong in 2.6 — with
/// DNNL_MAX_CPU_ISA=AVX2 the tests saw gemm:jit outputs off by up to ~30% (most likely the
/// int16 saturation of vpmaddubsw's pair sums).
bool onednn_has(dnnl::cpu_isa isa);

/// The one CPU engine (created after the ISA cap).
const dnnl::engine& onednn_engine();

/// A CPU stream is cheap, but not meant to be shared between threads: one per thread.
dnnl::stream& onednn_stream();

/// oneDNN with OpenMP sizes its work by omp_get_max_threads() of the calling thread (at
/// primitive creation and at execution), so the thread count is that thread's OpenMP ICV for
/// the duration of one call.
class OmpThreads {
 public:
  explicit OmpThreads(int n) : saved_(omp_get_max_threads()) { omp_set_num_threads(n); }
  ~OmpThreads() { omp_set_num_threads(saved_); }
  OmpThreads(const OmpThreads&) = delete;
  OmpThreads& operator=(const OmpThreads&) = delete;

 private:
  int saved_;
};

}  // namespace dynaprec::cpu
