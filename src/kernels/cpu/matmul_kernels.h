// The CPU's matmul kernels: one ordered list, best first, the reference last (oneDNN's impl
// list, XNNPACK's configs). dispatch picks the first entry that is available on this CPU (read
// once from cpu_features()) and applies to the problem's format and shape. Tests iterate the
// list, so a kernel added here is tested against the reference automatically.
//
// Kernel naming: <op>_<weight format>__<implementation>, e.g. gemv_int4__hwy, gemm_bf16__dnnl.
#pragma once

#include <cstdint>
#include <span>
#include <string_view>

#include "dynaprec/cpu_features.h"
#include "dynaprec/matmul.h"

namespace dynaprec::cpu {

struct MatmulProblem {
  const float* x = nullptr;  ///< M×K, row-major
  int64_t m = 0;
  const MatmulWeights* w = nullptr;
  const float* bias = nullptr;  ///< N values or nullptr
  float* y = nullptr;           ///< M×N, row-major
  int threads = 1;              ///< threads the kernel may use (>= 1)
};

struct MatmulKernel {
  std::string_view name;
  /// True when this CPU (after the DYNAPREC_ISA cap) can run the kernel.
  bool (*available)(const CpuFeatures&);
  /// True when the kernel handles this format and shape.
  bool (*applies)(Format f, int64_t m, int64_t n, int64_t k);
  void (*run)(const MatmulProblem&);
};

/// All kernels, best first; the last entry is the reference and applies to everything.
std::span<const MatmulKernel> matmul_kernels();

/// The kernel dispatch would run for this problem.
const MatmulKernel& matmul_select(Format f, int64_t m, int64_t n, int64_t k);

/// Rows [j0, j0 + rows) of a weight matrix as a MatmulWeights sharing its codes (int8 row
/// scales and int4 group scales sliced, the fp8 tensor scale copied): one group of a grouped
/// conv or conv-transpose (src/kernels/cpu/conv_cpu.cc).
MatmulWeights slice_rows(const MatmulWeights& m, int64_t j0, int64_t rows);

/// The matrix's n·k weights as floats: int8 its codes (unscaled), every float format its values
/// decoded exactly (fp8 without its tensor scale). int4 is not taken.
void codes_as_floats(const MatmulWeights& m, float* out);

}  // namespace dynaprec::cpu
