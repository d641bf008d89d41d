// GEMV row kernels (src/kernels/cpu/gemv_hwy.cc), dispatched to the best SIMD target.
#pragma once

#include <array>
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

// --- AVX-512 kernels (gemv_vnni.cc); only call when cpu_features().avx512_vnni ---

/// x prepared once per call for the VNNI int8 GEMV: xq zero-padded to whole 64-byte blocks,
/// and -128·Σx per vpdpbusd lane (the elements p with (p % 64) / 4 == lane), where sums start.
struct Int8VnniInput {
  std::vector<int8_t> x;
  std::array<int32_t, 16> start{};
  size_t blocks = 0;  ///< ceil(k / 64)
};
Int8VnniInput gemv_int8_prepare_vnni(const int8_t* xq, size_t k);
void gemv_int8_rows_vnni(const Int8VnniInput& in, const int8_t* w, size_t k, size_t j0, size_t j1,
                         int32_t* acc);
/// As gemv_int8_rows (prepares x on every call).
void gemv_int8_rows_vnni(const int8_t* xq, const int8_t* w, size_t k, size_t j0, size_t j1,
                         int32_t* acc);

/// x prepared once per call for the VNNI int4 GEMV: per 64-byte block of a W row (4 groups of
/// 32), the 64 x values that meet the low nibbles (even elements) and the high nibbles (odd
/// elements), and -8·Σx per vpdpbusd lane (16 per block), where the lane's sum starts.
struct Int4VnniInput {
  std::vector<int8_t> x_even, x_odd;
  std::vector<int32_t> neg_corr;
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

/// Whether the fp8 GEMV below can run: AVX-512 VNNI level plus GFNI and VBMI (cpuid).
bool gemv_fp8_avx512_supported();
/// x prepared once per call for the fp8 GEMV: the bf16-rounded x, per 64-element block in the
/// order in which the kernel widens a block of W's codes, zero past k (whole blocks).
struct Fp8Avx512Input {
  std::vector<float> x;
  size_t blocks = 0;  ///< ceil(k / 64)
};
Fp8Avx512Input gemv_fp8_prepare_avx512(const float* xr, size_t k);
/// As gemv_float_rows for fp8e4m3/fp8e5m2 (unscaled sums); only when gemv_fp8_avx512_supported.
void gemv_fp8_rows_avx512(Format f, const Fp8Avx512Input& in, const uint8_t* w, size_t k, size_t j0,
                          size_t j1, float* y);

}  // namespace dynaprec::cpu
