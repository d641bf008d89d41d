// GEMV row kernels (src/kernels/cpu/gemv_hwy.cc), dispatched to the best SIMD target.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include "dynaprec/formats.h"

namespace dynaprec::cpu {

/// y[j] = Σ_p x[p] · W[j, p] for j in [j0, j1); W rows of k values in float format f (codes).
/// fp8 results are unscaled (the tensor scale is applied by the caller).
void gemv_float_rows(Format f, const float* x, const void* w, size_t k, size_t j0, size_t j1,
                     float* y);

/// acc[j] = Σ_p xq[p] · W[j, p] in int32, W int8.
void gemv_int8_rows(const int8_t* xq, const int8_t* w, size_t k, size_t j0, size_t j1,
                    int32_t* acc);

/// y[j] = Σ_groups float(acc_g) · scale_g for W rows in int4 (without the activation scale).
void gemv_int4_rows(const int8_t* xq, const uint8_t* w, const uint16_t* scales, size_t k, size_t j0,
                    size_t j1, float* y);

// --- AVX-512 VNNI kernels (gemv_vnni.cc); only call when cpu_features().avx512_vnni ---

/// As gemv_int8_rows.
void gemv_int8_rows_vnni(const int8_t* xq, const int8_t* w, size_t k, size_t j0, size_t j1,
                         int32_t* acc);

/// x prepared once per call for the VNNI int4 GEMV: per 64-byte block of a W row (4 groups of
/// 32), the 64 x values that meet the low nibbles (even elements) and the high nibbles (odd
/// elements), and 8·Σx per vpdpbusd lane (16 per block).
struct Int4VnniInput {
  std::vector<int8_t> x_even, x_odd;
  std::vector<int32_t> corr;
  size_t blocks = 0;  ///< 64-byte blocks per row, the last maybe partial: ceil(k / 128)
};
Int4VnniInput gemv_int4_prepare_vnni(const int8_t* xq, size_t k);
/// As gemv_int4_rows.
void gemv_int4_rows_vnni(const Int4VnniInput& in, const int8_t* xq, const uint8_t* w,
                         const uint16_t* scales, size_t k, size_t j0, size_t j1, float* y);

/// int4 GEMM rows: y[i·n + j] = Σ_groups float(acc_g) · scale_g (no activation scale) for X
/// rows i in [i0, i1) (prepared by gemv_int4_prepare_vnni, one per row) and W rows j in
/// [j0, j1). Each W block is unpacked once for four rows of X.
void gemm_int4_vnni(const std::vector<Int4VnniInput>& xs, size_t i0, size_t i1, const uint8_t* w,
                    const uint16_t* scales, size_t k, size_t j0, size_t j1, size_t n, float* y);

}  // namespace dynaprec::cpu
