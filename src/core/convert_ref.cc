// Scalar reference conversions (CONTRACT §1). Written for clarity, not speed: float formats
// are rounded in double arithmetic (exact for every step used here) straight from the format's
// parameters in kFormats, so one generic routine serves every float row. The vectorized
// kernels (src/cpu/convert_hwy.cc) use integer bit tricks instead and are tested against this.
#include <bit>
#include <cmath>
#include <cstring>

#include "dynaprec/convert.h"
#include "dynaprec/error.h"

namespace dynaprec::ref {
namespace {

struct FloatLayout {
  int e, m, bias;
  uint32_t sign_code, exp_all, inf_code, max_code;
};

FloatLayout layout_of(const FormatInfo& fi) {
  FloatLayout l{};
  l.e = fi.exponent_bits;
  l.m = fi.mantissa_bits;
  l.bias = fi.exponent_bias;
  l.sign_code = 1u << (l.e + l.m);
  l.exp_all = (1u << l.e) - 1;
  l.inf_code = l.exp_all << l.m;
  // Formats with inf reserve the all-ones exponent; E4M3FN only reserves S.1111.111 for NaN.
  l.max_code = fi.has_inf ? ((l.exp_all - 1) << l.m) | ((1u << l.m) - 1)
                          : (l.exp_all << l.m) | ((1u << l.m) - 2);
  return l;
}

uint32_t encode_generic(const FormatInfo& fi, float x) {
  const FloatLayout l = layout_of(fi);
  const uint32_t bits = std::bit_cast<uint32_t>(x);
  const uint32_t sign = (bits >> 31) ? l.sign_code : 0;
  if (std::isnan(x)) {
    if (!fi.has_inf) return sign | (l.sign_code - 1);  // S.1111.111
    // Quiet NaN keeping the top payload bits, as the F16C/AVX-512 instructions do.
    const uint32_t payload = (bits & 0x7FFFFFu) >> (23 - l.m);
    return sign | l.inf_code | (1u << (l.m - 1)) | payload;
  }
  if (std::isinf(x))
    return sign | (fi.overflow == OverflowKind::kSaturate ? l.max_code : l.inf_code);
  const double a = std::fabs(static_cast<double>(x));
  if (a == 0.0) return sign;
  const int emin = 1 - l.bias;
  int e = 0;
  std::frexp(a, &e);  // a in [2^(e-1), 2^e)
  e = std::max(e - 1, emin);
  // Round to a multiple of the quantum of a's binade (subnormals share emin's quantum).
  // a / q is exact (power-of-two scaling in double) and nearbyint rounds half to even.
  const double q = std::ldexp(1.0, e - l.m);
  const double r = std::nearbyint(a / q) * q;
  if (r > fi.max_finite)
    return sign | (fi.overflow == OverflowKind::kInfinity ? l.inf_code : l.max_code);
  const double min_normal = std::ldexp(1.0, emin);
  if (r < min_normal) return sign | static_cast<uint32_t>(r / std::ldexp(1.0, emin - l.m));
  int er = 0;
  std::frexp(r, &er);
  er -= 1;
  const auto mant = static_cast<uint32_t>((r / std::ldexp(1.0, er) - 1.0) * std::ldexp(1.0, l.m));
  return sign | (static_cast<uint32_t>(er + l.bias) << l.m) | mant;
}

float decode_generic(const FormatInfo& fi, uint32_t code) {
  const FloatLayout l = layout_of(fi);
  const bool neg = (code & l.sign_code) != 0;
  const uint32_t expf = (code >> l.m) & l.exp_all;
  const uint32_t mant = code & ((1u << l.m) - 1);
  const uint32_t sign32 = neg ? 0x80000000u : 0u;
  const bool is_nan = fi.has_inf ? (expf == l.exp_all && mant != 0)
                                 : (expf == l.exp_all && mant == (1u << l.m) - 1);
  if (is_nan) return std::bit_cast<float>(sign32 | 0x7FC00000u | (mant << (23 - l.m)));
  if (fi.has_inf && expf == l.exp_all) return std::bit_cast<float>(sign32 | 0x7F800000u);
  const double v = expf == 0 ? std::ldexp(static_cast<double>(mant), 1 - l.bias - l.m)
                             : std::ldexp(1.0 + std::ldexp(static_cast<double>(mant), -l.m),
                                          static_cast<int>(expf) - l.bias);
  return static_cast<float>(neg ? -v : v);  // exact: every value of these formats is a float
}

float clamp_rne(float v, float lo, float hi) {
  const float r = std::nearbyint(v);
  return r < lo ? lo : (r > hi ? hi : r);
}

}  // namespace

// --- per-format element conversions (the table's reference functions) ---

uint32_t encode_fp32(float x, float) { return std::bit_cast<uint32_t>(x); }
float decode_fp32(uint32_t code, float) { return std::bit_cast<float>(code); }
uint32_t encode_bf16(float x, float) { return encode_generic(format_info(Format::kBf16), x); }
float decode_bf16(uint32_t c, float) { return decode_generic(format_info(Format::kBf16), c); }
uint32_t encode_fp16(float x, float) { return encode_generic(format_info(Format::kFp16), x); }
float decode_fp16(uint32_t c, float) { return decode_generic(format_info(Format::kFp16), c); }
uint32_t encode_fp8e4m3(float x, float) { return encode_generic(format_info(Format::kFp8E4M3), x); }
float decode_fp8e4m3(uint32_t c, float) { return decode_generic(format_info(Format::kFp8E4M3), c); }
uint32_t encode_fp8e5m2(float x, float) { return encode_generic(format_info(Format::kFp8E5M2), x); }
float decode_fp8e5m2(uint32_t c, float) { return decode_generic(format_info(Format::kFp8E5M2), c); }

float scale_int8(float amax) { return amax == 0.0f ? 1.0f : amax / 127.0f; }

uint32_t encode_int8(float x, float s) {
  // An underflowed scale (s == 0) dequantizes everything to 0 (CONTRACT §1). NaN has no code;
  // callers refuse it before encoding; 0 (also for a NaN scale) keeps this function total.
  const float y = x / s;
  if (s == 0.0f || std::isnan(y)) return 0;
  return static_cast<uint8_t>(static_cast<int8_t>(clamp_rne(y, -127.0f, 127.0f)));
}
float decode_int8(uint32_t code, float s) {
  return static_cast<float>(static_cast<int8_t>(static_cast<uint8_t>(code))) * s;
}

float scale_int4(float amax) { return decode_fp16(int4_scale(amax), 0.0f); }

uint32_t encode_int4(float x, float s) {
  const float y = x / s;
  if (s == 0.0f || std::isnan(y)) return 0;
  return static_cast<uint32_t>(static_cast<int32_t>(clamp_rne(y, -8.0f, 7.0f))) & 0xFu;
}
float decode_int4(uint32_t code, float s) {
  const int32_t q = static_cast<int32_t>((code & 0xFu) ^ 0x8u) - 8;  // sign-extend the nibble
  return static_cast<float>(q) * s;
}

// --- convenience entry points ---

uint32_t encode_float(Format f, float x) {
  DP_CHECK(is_float_format(f), "encode_float needs a float format");
  return format_info(f).encode_ref(x, 0.0f);
}
float decode_float(Format f, uint32_t code) {
  DP_CHECK(is_float_format(f), "decode_float needs a float format");
  return format_info(f).decode_ref(code, 0.0f);
}

float int8_scale(float amax) { return scale_int8(amax); }
int8_t int8_encode(float x, float s) { return static_cast<int8_t>(encode_int8(x, s)); }

uint16_t int4_scale(float amax) {
  if (amax == 0.0f) return 0x3C00;  // 1.0
  uint32_t h = encode_fp16(amax / 7.0f, 0.0f);
  if (h == 0x7C00u) h = 0x7BFFu;  // the fp16 scale saturates at 65504
  return static_cast<uint16_t>(h);
}
int8_t int4_encode(float x, float s) {
  const uint32_t c = encode_int4(x, s);
  return static_cast<int8_t>(static_cast<int32_t>(c ^ 0x8u) - 8);
}

// --- arrays ---

void encode_float_array(Format f, const float* src, void* dst, size_t n) {
  const FormatInfo& fi = format_info(f);
  DP_CHECK(fi.kind == FormatKind::kFloat, "encode_float_array needs a float format");
  for (size_t i = 0; i < n; ++i) {
    const uint32_t c = fi.encode_ref(src[i], 0.0f);
    switch (fi.storage_bits) {
      case 32:
        static_cast<uint32_t*>(dst)[i] = c;
        break;
      case 16:
        static_cast<uint16_t*>(dst)[i] = static_cast<uint16_t>(c);
        break;
      default:
        static_cast<uint8_t*>(dst)[i] = static_cast<uint8_t>(c);
        break;
    }
  }
}

void decode_float_array(Format f, const void* src, float* dst, size_t n) {
  const FormatInfo& fi = format_info(f);
  DP_CHECK(fi.kind == FormatKind::kFloat, "decode_float_array needs a float format");
  for (size_t i = 0; i < n; ++i) {
    uint32_t c = 0;
    switch (fi.storage_bits) {
      case 32:
        c = static_cast<const uint32_t*>(src)[i];
        break;
      case 16:
        c = static_cast<const uint16_t*>(src)[i];
        break;
      default:
        c = static_cast<const uint8_t*>(src)[i];
        break;
    }
    dst[i] = fi.decode_ref(c, 0.0f);
  }
}

float amax(const float* src, size_t n) {
  // Max over |x| by bit pattern: for non-negative floats the order of bits is the order of
  // values, and any inf/NaN (bits >= 0x7F800000) wins, so callers see non-finite input.
  uint32_t m = 0;
  for (size_t i = 0; i < n; ++i) m = std::max(m, std::bit_cast<uint32_t>(src[i]) & 0x7FFFFFFFu);
  return std::bit_cast<float>(m);
}

void int8_encode_array(const float* src, int8_t* dst, size_t n, float s) {
  for (size_t i = 0; i < n; ++i) dst[i] = int8_encode(src[i], s);
}
void int8_decode_array(const int8_t* src, float* dst, size_t n, float s) {
  for (size_t i = 0; i < n; ++i) dst[i] = static_cast<float>(src[i]) * s;
}

void int8_encode_rows(const float* src, int8_t* dst, size_t rows, size_t k, float* scales) {
  for (size_t r = 0; r < rows; ++r) {
    scales[r] = int8_scale(amax(src + r * k, k));
    int8_encode_array(src + r * k, dst + r * k, k, scales[r]);
  }
}

void int4_encode_row(const float* src, size_t k, uint8_t* packed, uint16_t* scales) {
  std::memset(packed, 0, (k + 1) / 2);
  for (size_t g0 = 0, gi = 0; g0 < k; g0 += 32, ++gi) {
    const size_t len = std::min<size_t>(32, k - g0);
    const uint16_t sbits = int4_scale(amax(src + g0, len));
    scales[gi] = sbits;
    const float s = decode_fp16(sbits, 0.0f);
    for (size_t i = g0; i < g0 + len; ++i) {
      const uint32_t c = encode_int4(src[i], s);
      packed[i / 2] |= static_cast<uint8_t>(i % 2 == 0 ? c : c << 4);
    }
  }
}

void int4_decode_row(const uint8_t* packed, const uint16_t* scales, size_t k, float* dst) {
  for (size_t i = 0; i < k; ++i) {
    const uint32_t c = i % 2 == 0 ? packed[i / 2] & 0xFu : packed[i / 2] >> 4;
    dst[i] = decode_int4(c, decode_fp16(scales[i / 32], 0.0f));
  }
}

}  // namespace dynaprec::ref
