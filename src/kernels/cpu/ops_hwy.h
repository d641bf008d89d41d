// The Highway kernels behind the public ops (src/kernels/cpu/ops_hwy.cc), on contiguous float32
// arrays, runtime-dispatched to the best SIMD target. The public functions of
// include/dynaprec/ops.h call them when they apply; the tests call them directly too, on awkward
// lengths, against the reference on every SIMD target. Large calls split across
// ThreadPool::default_pool() (so never call them from one of its tasks: its parallel_for is not
// reentrant); every element is computed the same way whatever the split.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include "dynaprec/ops.h"

namespace dynaprec::cpu {

/// Whether binary_f32 / unary_f32 implement op (the others run the reference).
bool binary_f32_supported(BinaryOp op);
bool unary_f32_supported(UnaryOp op);

/// A broadcast binary op as runs: the output (contiguous, C order) has dims `dims`, and operand
/// a (b) element (i_0, ..., i_k) sits at sum(i_j · a_strides[j]). The innermost strides must be
/// 0 (a broadcast scalar along the run) or 1 (a contiguous run).
struct BinaryPlan {
  std::vector<int64_t> dims, a_strides, b_strides;
};
/// y = op(a, b) over the plan; op must be binary_f32_supported. Bit-identical to ref::binary.
void binary_f32(BinaryOp op, const float* a, const float* b, float* y, const BinaryPlan& plan);
/// y[j] = (a_j +) src[j / k] + 0.0f for j < n (+ a_j after it with add_last; add may be null),
/// a_j = add[j], or add[j] + add[j] · *add_scale where add_scale is given (an AddScaled addend):
/// a row of nearest upsampling by the integer factor k, vectorized for k = 1, 2, 4, 8. Where
/// amax_bits is given, raised to max |y| as float bits (NaN above inf).
void upsample_row_f32(const float* src, const float* add, const float* add_scale, bool add_last,
                      float* y, size_t n, size_t k, uint32_t* amax_bits = nullptr);
/// y[j] = x[j] + x[j] · s for j < n (add_scaled with a scale constant along the row); where
/// amax_bits is given, raised to max |y| as float bits (NaN above inf).
void scaled_row_f32(const float* x, float s, float* y, size_t n, uint32_t* amax_bits);
/// y = a + a · b over the plan (add_scaled), the same checks as binary_f32.
void add_scaled_f32(const float* a, const float* b, float* y, const BinaryPlan& plan);

/// y[i] = op(x[i]) for n values; op must be unary_f32_supported. Bit-identical to ref::unary but
/// for Exp, Sigmoid and Tanh (tolerances in ops_hwy.cc).
void unary_f32(UnaryOp op, const UnaryParams& p, const float* x, float* y, size_t n);

/// Softmax (log: LogSoftmax) of each of `rows` contiguous rows of `len` values.
void softmax_rows_f32(const float* x, float* y, size_t rows, size_t len, bool log);

/// y[r] = op over row r of `rows` contiguous rows of `len` values.
void reduce_rows_f32(ReduceOp op, const float* x, float* y, size_t rows, size_t len);

/// Batch norm inference on x [batch, channels, inner]: y = (x - mean[c]) · factor[c] + bias[c].
void batch_norm_f32(const float* x, float* y, size_t batch, size_t channels, size_t inner,
                    const float* mean, const float* factor, const float* bias);

}  // namespace dynaprec::cpu
