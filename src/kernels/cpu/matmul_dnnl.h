// oneDNN GEMM kernels for the formats oneDNN runs natively on x86: fp32, bf16, int8, and fp8
// (widened to bf16, since oneDNN 2.6 has no fp8). They handle GEMM shapes (M >= 2); GEMV
// (M == 1) is left to other kernels. See matmul_dnnl.cc for what each one does exactly.
#pragma once

#include <span>

#include "kernels/cpu/matmul_kernels.h"

namespace dynaprec::cpu {

/// The oneDNN kernels, best first: gemm_fp32__dnnl, gemm_bf16__dnnl, gemm_int8__dnnl,
/// gemm_fp8e4m3__dnnl, gemm_fp8e5m2__dnnl.
std::span<const MatmulKernel> dnnl_matmul_kernels();

}  // namespace dynaprec::cpu
