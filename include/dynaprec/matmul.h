// Matrix multiplication at every precision format (CONTRACT §1).
//
//   Y[M, N] = X[M, K] · W[N, K]ᵀ (+ bias[N])        X, Y, bias: float32; W: stored in its format
//
// W is laid out like a linear layer's weight: N output rows of K values (K, the reduction axis,
// is the last axis, so int4 groups run along it). What each format does with X (activations are
// quantized on the fly, once per call):
//
//   format   | W storage                               | X as used                   | accumulate
//   fp32     | fp32                                    | fp32                        | fp32
//   bf16     | bf16                                    | rounded to bf16 (RNE)       | fp32
//   fp16     | fp16                                    | rounded to fp16 (RNE)       | fp32
//   fp8e4m3  | fp8 codes + one fp32 scale per tensor   | rounded to bf16 (RNE)       | fp32
//   fp8e5m2  |   (s = amax / max_finite, amax 0 → 1)   |                             |
//   int8     | int8 + one fp32 scale per row (N)       | int8, one scale per call    | int32
//   int4     | int4, groups of 32 along K, fp16 scales | int8, one scale per call    | int32/group
//
// fp8 has no arithmetic on this CPU: fp8 weights run against bf16 activations (every fp8 value
// is exactly a bf16 value) and are widened in registers. int4 weights run against int8
// activations. Products of the used values are exact in fp32 for fp32/bf16/fp16/fp8 (at most
// 22 significant bits); only the summation order differs between kernels. int8 is exact in
// int32: y = float(acc) * (sx * sw[n]). int4: y = sx * Σ_groups (float(acc_g) * sw_g).
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "dynaprec/formats.h"
#include "dynaprec/tensor.h"

namespace dynaprec {

/// A weight matrix W[N, K] stored in a precision format, ready for matmul.
struct MatmulWeights {
  Format format = Format::kFp32;
  int64_t n = 0, k = 0;
  /// dtype_of(format), shape [N, K]; int8: per-row scales in quant().scales (axis 0); int4:
  /// quant().scales_f16 (N × ceil(K/32)); fp8: quant().scales holds the one tensor scale.
  Tensor data;
  /// Bytes a kernel reads to use W once: codes plus scales.
  size_t bytes() const { return data.nbytes() + data.scale_bytes(); }
  /// A kernel's own prepared form of W (e.g. oneDNN's blocked layout), made on first use and
  /// kept with the weights; `prepared_by` names the kernel. Preparing is not thread-safe: the
  /// first call for a given MatmulWeights must not race with another.
  mutable std::shared_ptr<void> prepared;
  mutable std::string prepared_by;
};

/// Stores a float32 [N, K] matrix in format `f` (CONTRACT §1 quantization).
MatmulWeights matmul_weights(const Tensor& w, Format f);

namespace ref {
/// The reference: plain loops, defining the semantics above. x: M×K row-major, y: M×N.
void matmul(const float* x, int64_t m, const MatmulWeights& w, const float* bias, float* y);
}  // namespace ref

/// The fastest kernel of this CPU for the shape (src/kernels/cpu/matmul_kernels.h). `threads`:
/// how many of the default pool's threads to use (<= 0: all). x: M×K, y: M×N, row-major.
void matmul(const float* x, int64_t m, const MatmulWeights& w, const float* bias, float* y,
            int threads = 0);

/// The activation scale int8/int4 layers use for X (one per call): CONTRACT §1 int8 scale of
/// amax(X); X must be finite.
float matmul_activation_scale(const float* x, size_t count);

}  // namespace dynaprec
