// What the oneDNN kernels (matmul_dnnl.cc, conv_cpu.cc) share: one engine, one stream per
// thread, the DYNAPREC_ISA cap applied to oneDNN once, and the OpenMP thread count per call.
#pragma once

#include <omp.h>

#include <array>
#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <oneapi/dnnl/dnnl.hpp>
#include <vector>

#include "dynaprec/matmul.h"

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

/// Y[rows, P] = W[rows, K] · X[K, P] on row-major operands with oneDNN's matmul (conv_cpu.cc),
/// for weights of conv/ConvTranspose kind: the [rows, K] matrix of a MatmulWeights, whose
/// format picks the types as conv_cpu.cc's oneDNN convolution does (f32 for fp32/fp16 and
/// where bf16 is not native, bf16 for bf16/fp8, s8·s8 -> s32 for int8 with VNNI). The raw sums
/// land in y: f32 (fp8: not yet times the tensor scale) or, for int8, s32. X is passed as the
/// format uses it: see plain_gemm_x. A cache per weights, for the primitives and the widened W.
struct PlainGemmCache {
  std::mutex mu;
  std::map<std::array<int64_t, 4>, std::shared_ptr<const void>> plans;   // (rows, K, P, threads)
  std::map<const void*, std::shared_ptr<std::vector<std::byte>>> codes;  // W as oneDNN reads it
};
/// Whether plain_gemm can run format f here (the oneDNN ISA and our features allow it).
bool plain_gemm_supported(Format f);
/// X as plain_gemm reads it for format f: int8 -> the codes xq; fp32 -> x; bf16/fp8 with native
/// bf16 -> bf16 codes; else the values rounded as the format uses them, as f32 (thread-local
/// buffers, valid until the next call on this thread).
const void* plain_gemm_x(Format f, const float* x, const int8_t* xq, size_t count,
                         size_t* elem_bytes);
/// Returns false (writing nothing) where oneDNN has only a slow implementation for the shape.
bool plain_gemm(PlainGemmCache& cache, const MatmulWeights& w, const void* x_used, int64_t k,
                int64_t p, void* y, int threads);

}  // namespace dynaprec::cpu
