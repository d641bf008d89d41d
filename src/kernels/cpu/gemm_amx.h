// GEMM on AMX tiles for bf16, fp8 (widened to bf16) and int8 weights: Y = X · Wᵀ with both
// operands packed as whole 1 KiB tiles. oneDNN 2.6's brgemm reaches about 30% of the tiles' peak
// at 2048³ on this machine; these kernels keep their operands in L2 and the accumulators in the
// tiles for the whole K. See gemm_amx.cc.
#pragma once

#include <span>

#include "kernels/cpu/matmul_kernels.h"

namespace dynaprec::cpu {

/// gemm_bf16__amx, gemm_int8__amx, gemm_fp8e4m3__amx, gemm_fp8e5m2__amx: M >= 2, the semantics
/// of include/dynaprec/matmul.h (int8 bit for bit; the float formats differ from the reference
/// only in summation order).
std::span<const MatmulKernel> amx_matmul_kernels();

}  // namespace dynaprec::cpu
