// oneDNN GEMM kernels for the formats oneDNN runs natively on x86: fp32, bf16, int8, and fp8
// (widened to bf16, since oneDNN 2.6 has no fp8). They handle GEMM shapes (M >= 2); GEMV
// (M == 1) is left to other kernels. See matmul_dnnl.cc for what each one does exactly.
#pragma once

#include <atomic>
#include <cstdint>
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

/// n values of X -> their codes with scale sx, ref::int8_encode bit for bit, on one thread:
/// AVX-512 where the CPU has it (5 % faster than int8_encode_array in the AMX GEMM's packing of
/// X), int8_encode_array elsewhere.
void int8_encode_fast(const float* x, int8_t* out, size_t n, float sx);

/// The scale alone, ref::int8_scale(amax(X)), on `threads` threads (same errors).
float int8_activation_scale(const float* x, size_t count, int threads, const char* what);
/// X's int8 codes with a scale already known (ref::int8_scale of X's max |x|): the codes of
/// quantize_x_int8, on `threads` threads.
void quantize_x_int8_scaled(const float* x, size_t count, int8_t* out, int threads, float sx);

/// X [N, C, HW] floats -> its codes with scale sx in NHWC order, out [N, HW, C]: ref::int8_encode
/// bit for bit, on `threads` OpenMP threads. false (nothing written) without AVX-512 or for a
/// scale below 2^-125.
bool quantize_int8_nhwc(const float* x, int64_t n, int64_t c, int64_t hw, float sx, int8_t* out,
                        int threads);

/// Y [N, HW, C] floats (oneDNN's NHWC result) -> y [N, C, HW], on `threads` OpenMP threads, 16 x 16
/// blocks transposed in registers; where amax is given, raised to max |y| (as float bits, NaN
/// above inf) on the way, so that the next int8 layer needs no pass of its own. false (nothing
/// written) without AVX-512 or for C not a multiple of 16.
bool nhwc_to_nchw_f32(const float* x, int64_t n, int64_t c, int64_t hw, float* y, int threads,
                      std::atomic<uint32_t>* amax = nullptr);

}  // namespace dynaprec::cpu
