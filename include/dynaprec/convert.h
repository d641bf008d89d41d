// Conversions between float32 and the precision formats (CONTRACT §1).
//
// Two implementations with one contract:
//   dynaprec::ref::*  — scalar references (src/core/convert_ref.cc): obviously correct, slow;
//   dynaprec::*       — vectorized (src/cpu/convert_hwy.cc, Highway, runtime CPU dispatch).
// Both produce bit-identical results for every input; the tests enforce it.
//
// Encoded storage: fp32 as float, bf16/fp16 as uint16_t bits, fp8 as uint8_t bits, int8 as
// int8_t, int4 as packed nibbles (first value in the low nibble).
// NaN encodes with its sign, the format's quiet bit set and the top payload bits kept
// (fp8e4m3: S.1111.111). Decoding a NaN gives a quiet float32 NaN with that payload.
#pragma once

#include <cstddef>
#include <cstdint>

#include "dynaprec/formats.h"

namespace dynaprec {

namespace ref {

/// Encodes one float32 in float format `f` (not int8/int4): the format's bit pattern.
uint32_t encode_float(Format f, float x);
/// Decodes one bit pattern of float format `f` to float32 (exact).
float decode_float(Format f, uint32_t code);

/// int8 scale from a non-negative finite amax: amax / 127 (float32); amax == 0 gives 1.
float int8_scale(float amax);
/// int8 code: clamp(rne(x / s), -127, 127); 0 when s == 0 (underflowed scale).
int8_t int8_encode(float x, float s);

/// int4 scale bits (fp16) from a non-negative finite amax: fp16(amax / 7) saturated at 65504;
/// amax == 0 gives fp16(1).
uint16_t int4_scale(float amax);
/// int4 code in [-8, 7]: clamp(rne(x / s), -8, 7); 0 when s == 0.
int8_t int4_encode(float x, float s);

// Array versions (the reference loops the vectorized code must match).
void encode_float_array(Format f, const float* src, void* dst, size_t n);
void decode_float_array(Format f, const void* src, float* dst, size_t n);
/// Max |x| over src, as float bits order: returns +inf/NaN if any element is not finite.
float amax(const float* src, size_t n);
void int8_encode_array(const float* src, int8_t* dst, size_t n, float s);
void int8_decode_array(const int8_t* src, float* dst, size_t n, float s);
/// One row of k values: ceil(k/2) packed bytes and ceil(k/32) fp16 scales.
void int4_encode_row(const float* src, size_t k, uint8_t* packed, uint16_t* scales);
void int4_decode_row(const uint8_t* packed, const uint16_t* scales, size_t k, float* dst);
/// `rows` rows of k values, one int8 scale per row (per output channel): scales[r] =
/// int8_scale(amax(row r)).
void int8_encode_rows(const float* src, int8_t* dst, size_t rows, size_t k, float* scales);

}  // namespace ref

// Vectorized versions, same contracts as ref:: above.
void encode_float_array(Format f, const float* src, void* dst, size_t n);
void decode_float_array(Format f, const void* src, float* dst, size_t n);
float amax(const float* src, size_t n);
void int8_encode_array(const float* src, int8_t* dst, size_t n, float s);
/// Per-element scales (int8 per channel along the last axis): dst[i] = code(src[i], s[i]).
void int8_encode_array_scales(const float* src, int8_t* dst, size_t n, const float* s);
void int8_decode_array(const int8_t* src, float* dst, size_t n, float s);
/// decode_float_array(f, encode_float_array(f, src)) in one pass: src rounded to format f, kept
/// as floats.
void round_float_array(Format f, const float* src, float* dst, size_t n);
/// The int8 codes of src with scale s (int8_encode_array's), as floats, in one pass.
void int8_round_array(const float* src, float* dst, size_t n, float s);
/// round_float_array and int8_round_array over `rows` rows of n values (row r from
/// src + r·src_stride to dst + r·dst_stride), in one dispatched call.
void round_float_rows(Format f, const float* src, size_t src_stride, float* dst, size_t dst_stride,
                      size_t rows, size_t n);
void int8_round_rows(const float* src, size_t src_stride, float* dst, size_t dst_stride,
                     size_t rows, size_t n, float s);
/// encode_float_array(kBf16)'s codes of `rows` rows, as round_float_rows.
void bf16_encode_rows(const float* src, size_t src_stride, uint16_t* dst, size_t dst_stride,
                      size_t rows, size_t n);
/// int8_encode_array's codes + 128 as unsigned bytes (what VNNI's vpdpbusd multiplies), over
/// `rows` rows as round_float_rows.
void int8_biased_rows(const float* src, size_t src_stride, uint8_t* dst, size_t dst_stride,
                      size_t rows, size_t n, float s);
void int8_encode_rows(const float* src, int8_t* dst, size_t rows, size_t k, float* scales);
/// `rows` rows of k values, each as ref::int4_encode_row: row r's bytes start at
/// packed + r * ceil(k/2), its scales at scales + r * ceil(k/32).
void int4_encode_rows(const float* src, size_t rows, size_t k, uint8_t* packed, uint16_t* scales);
void int4_decode_row(const uint8_t* packed, const uint16_t* scales, size_t k, float* dst);

/// Name of the SIMD target the vectorized functions dispatch to now (e.g. "AVX3_DL").
const char* simd_target_name();

}  // namespace dynaprec
