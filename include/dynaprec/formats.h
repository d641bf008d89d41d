// The precision formats of dynaprec (CONTRACT §1) as one constexpr table.
//
// Every format is one row of kFormats, indexed by `Format`. The numeric values of `Format`
// travel in the protocol and in files: never renumber or reuse one; retire a value by
// commenting it out. Adding a format = one enum value + one row + its reference conversions
// (src/core/convert_ref.cc); the table test walks every row and checks its invariants.
//
// Bit layouts (sign S, exponent E, mantissa M; OCP 8-bit FP spec v1.0 for fp8):
//   fp32     S.EEEEEEEE.MMMMMMMMMMMMMMMMMMMMMMM   IEEE 754 binary32, bias 127
//   bf16     S.EEEEEEEE.MMMMMMM                   upper half of binary32, bias 127
//   fp16     S.EEEEE.MMMMMMMMMM                   IEEE 754 binary16, bias 15
//   fp8e4m3  S.EEEE.MMM                           OCP E4M3FN, bias 7, no inf, NaN = S.1111.111
//   fp8e5m2  S.EEEEE.MM                           OCP E5M2, bias 15, IEEE-style inf/NaN
//   int8     two's complement, symmetric scale s = amax/127 per tensor or per channel
//   int4     two's complement nibbles (first value in the low nibble), groups of 32 along the
//            last axis, one fp16 scale s = fp16(amax/7) per group
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string_view>

namespace dynaprec {

enum class Format : uint8_t {
  kFp32 = 0,
  kBf16 = 1,
  kFp16 = 2,
  kFp8E4M3 = 3,
  kFp8E5M2 = 4,
  kInt8 = 5,
  kInt4 = 6,
  kCount  // sentinel, not a format
};

inline constexpr size_t kFormatCount = static_cast<size_t>(Format::kCount);

/// Reference (scalar) element conversions, one pair per format, defined in
/// src/core/convert_ref.cc. `scale` is the element's dequantization scale for integer formats
/// (int8: fp32 scale; int4: the fp16 scale widened to float) and ignored for float formats.
/// encode returns the stored bit pattern (integer codes as two's complement in the low bits).
using EncodeRefFn = uint32_t (*)(float x, float scale);
using DecodeRefFn = float (*)(uint32_t code, float scale);
/// Scale from a group's amax (integer formats); the value used for encoding, as float32.
using ScaleRefFn = float (*)(float amax);

namespace ref {
uint32_t encode_fp32(float x, float scale);
float decode_fp32(uint32_t code, float scale);
uint32_t encode_bf16(float x, float scale);
float decode_bf16(uint32_t code, float scale);
uint32_t encode_fp16(float x, float scale);
float decode_fp16(uint32_t code, float scale);
uint32_t encode_fp8e4m3(float x, float scale);
float decode_fp8e4m3(uint32_t code, float scale);
uint32_t encode_fp8e5m2(float x, float scale);
float decode_fp8e5m2(uint32_t code, float scale);
uint32_t encode_int8(float x, float scale);
float decode_int8(uint32_t code, float scale);
float scale_int8(float amax);
uint32_t encode_int4(float x, float scale);
float decode_int4(uint32_t code, float scale);
float scale_int4(float amax);
}  // namespace ref

enum class FormatKind : uint8_t { kFloat, kInteger };

/// What a float format does with values beyond its range and with NaN.
enum class OverflowKind : uint8_t {
  kInfinity,  ///< rounds to +-inf (IEEE): fp32, bf16, fp16
  kSaturate,  ///< clamps to +-max finite; inf input also saturates (fp8e4m3 has no inf)
  kSaturateFiniteKeepInf,  ///< finite values clamp to +-max; +-inf stays inf (fp8e5m2)
  kClamp,                  ///< integer formats: q is clamped to [qmin, qmax]
};

/// How a format's values are scaled.
enum class ScaleKind : uint8_t {
  kNone,                ///< element-wise, no scale (float formats)
  kPerTensorOrChannel,  ///< one fp32 scale per tensor or per channel along an axis (int8)
  kPerGroupFp16,        ///< one fp16 scale per group of `group_size` along the last axis (int4)
};

struct FormatInfo {
  Format format;
  std::string_view name;  ///< lower case, as in CONTRACT §1
  FormatKind kind;
  uint8_t storage_bits;   ///< bits per stored element (4 for int4)
  uint8_t group_size;     ///< values sharing one scale along the last axis; 1 = no groups
  uint8_t exponent_bits;  ///< float formats; 0 for integers
  uint8_t mantissa_bits;  ///< stored mantissa bits (float) or value bits incl. sign (integer)
  int16_t exponent_bias;  ///< float formats
  double max_finite;      ///< largest finite value (integers: qmax)
  int16_t qmin, qmax;     ///< integer formats: clamp range of q; 0 for floats
  bool has_inf;           ///< the format encodes +-inf
  bool has_nan;           ///< the format encodes NaN
  OverflowKind overflow;
  ScaleKind scale;
  uint8_t scale_bits;  ///< bits per stored scale: 32 (fp32), 16 (fp16), 0 (none)
  EncodeRefFn encode_ref;
  DecodeRefFn decode_ref;
  ScaleRefFn scale_ref;  ///< nullptr for float formats
};

inline constexpr std::array<FormatInfo, kFormatCount> kFormats = {{
    // format, name, kind, bits, group, ebits, mbits, bias, max finite, qmin, qmax, inf, nan,
    // overflow, scale, scale bits, reference conversions
    {Format::kFp32, "fp32", FormatKind::kFloat, 32, 1, 8, 23, 127, 3.4028234663852886e38, 0, 0,
     true, true, OverflowKind::kInfinity, ScaleKind::kNone, 0, ref::encode_fp32, ref::decode_fp32,
     nullptr},
    {Format::kBf16, "bf16", FormatKind::kFloat, 16, 1, 8, 7, 127, 3.3895313892515355e38, 0, 0, true,
     true, OverflowKind::kInfinity, ScaleKind::kNone, 0, ref::encode_bf16, ref::decode_bf16,
     nullptr},
    {Format::kFp16, "fp16", FormatKind::kFloat, 16, 1, 5, 10, 15, 65504.0, 0, 0, true, true,
     OverflowKind::kInfinity, ScaleKind::kNone, 0, ref::encode_fp16, ref::decode_fp16, nullptr},
    {Format::kFp8E4M3, "fp8e4m3", FormatKind::kFloat, 8, 1, 4, 3, 7, 448.0, 0, 0, false, true,
     OverflowKind::kSaturate, ScaleKind::kNone, 0, ref::encode_fp8e4m3, ref::decode_fp8e4m3,
     nullptr},
    {Format::kFp8E5M2, "fp8e5m2", FormatKind::kFloat, 8, 1, 5, 2, 15, 57344.0, 0, 0, true, true,
     OverflowKind::kSaturateFiniteKeepInf, ScaleKind::kNone, 0, ref::encode_fp8e5m2,
     ref::decode_fp8e5m2, nullptr},
    {Format::kInt8, "int8", FormatKind::kInteger, 8, 1, 0, 8, 0, 127.0, -127, 127, false, false,
     OverflowKind::kClamp, ScaleKind::kPerTensorOrChannel, 32, ref::encode_int8, ref::decode_int8,
     ref::scale_int8},
    {Format::kInt4, "int4", FormatKind::kInteger, 4, 32, 0, 4, 0, 7.0, -8, 7, false, false,
     OverflowKind::kClamp, ScaleKind::kPerGroupFp16, 16, ref::encode_int4, ref::decode_int4,
     ref::scale_int4},
}};

constexpr const FormatInfo& format_info(Format f) { return kFormats[static_cast<size_t>(f)]; }
constexpr std::string_view format_name(Format f) { return format_info(f).name; }
constexpr bool is_float_format(Format f) { return format_info(f).kind == FormatKind::kFloat; }

/// Bytes needed to store `n` consecutive elements (rounded up to whole bytes), without scales.
constexpr size_t format_storage_bytes(Format f, size_t n) {
  return (n * format_info(f).storage_bits + 7) / 8;
}

/// Parses a lower-case format name; nullopt if unknown.
std::optional<Format> format_from_name(std::string_view name);

/// "fp32, bf16, fp16, ..." for error messages, built from the table.
std::string_view format_names_list();

namespace detail {
constexpr bool table_is_dense() {
  for (size_t i = 0; i < kFormats.size(); ++i)
    if (static_cast<size_t>(kFormats[i].format) != i) return false;
  return true;
}
}  // namespace detail
static_assert(detail::table_is_dense(), "kFormats rows must be in enum order");

}  // namespace dynaprec
