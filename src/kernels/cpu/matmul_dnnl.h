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

/// X quantized to int8 with one scale over all of it, on `threads` OpenMP threads: the codes
/// of ref::int8_encode into `out` (bit-identical), the scale of ref::int8_scale(amax) returned.
/// Throws kInvalidInput "<what> contain NaN or inf" where X does.
float quantize_x_int8(const float* x, size_t count, int8_t* out, int threads, const char* what);

}  // namespace dynaprec::cpu
