// The formats table: every row is self-consistent and matches CONTRACT §1.
#include <gtest/gtest.h>

#include <cmath>
#include <set>

#include "dynaprec/convert.h"
#include "dynaprec/formats.h"
#include "dynaprec/tensor.h"

namespace dynaprec {
namespace {

TEST(FormatsTable, RowsAreDenseAndNamesUnique) {
  std::set<std::string_view> names;
  for (size_t i = 0; i < kFormats.size(); ++i) {
    const FormatInfo& r = kFormats[i];
    EXPECT_EQ(static_cast<size_t>(r.format), i);
    EXPECT_TRUE(names.insert(r.name).second) << r.name;
    EXPECT_EQ(format_from_name(r.name), r.format);
    ASSERT_NE(r.encode_ref, nullptr) << r.name;
    ASSERT_NE(r.decode_ref, nullptr) << r.name;
    EXPECT_GT(r.storage_bits, 0);
    EXPECT_GE(r.group_size, 1);
    EXPECT_EQ(dtype_bits(dtype_of(r.format)), r.storage_bits) << r.name;
    EXPECT_EQ(format_of(dtype_of(r.format)), r.format);
  }
  EXPECT_EQ(format_from_name("FP16"), std::nullopt);  // names are lower case
  EXPECT_EQ(format_from_name("fp64"), std::nullopt);
  EXPECT_EQ(format_from_name(""), std::nullopt);
}

TEST(FormatsTable, FloatRowsMaxFiniteFollowsFromBits) {
  for (const FormatInfo& r : kFormats) {
    if (r.kind != FormatKind::kFloat) continue;
    EXPECT_EQ(r.storage_bits, 1 + r.exponent_bits + r.mantissa_bits) << r.name;
    EXPECT_EQ(r.scale_ref, nullptr);
    // Largest exponent field usable for finite values, and the largest mantissa there.
    const int emax_field = (1 << r.exponent_bits) - (r.has_inf ? 2 : 1);
    const int top_mant = (1 << r.mantissa_bits) - (r.has_inf ? 1 : 2);
    const double mx = std::ldexp(1.0 + std::ldexp(double(top_mant), -r.mantissa_bits),
                                 emax_field - r.exponent_bias);
    EXPECT_EQ(mx, r.max_finite) << r.name;
    // And the reference encoder maps max_finite to itself.
    const uint32_t c = r.encode_ref(static_cast<float>(r.max_finite), 0.f);
    EXPECT_EQ(r.decode_ref(c, 0.f), static_cast<float>(r.max_finite)) << r.name;
  }
}

TEST(FormatsTable, ContractValues) {
  EXPECT_EQ(format_info(Format::kFp8E4M3).max_finite, 448.0);
  EXPECT_EQ(format_info(Format::kFp8E5M2).max_finite, 57344.0);
  EXPECT_EQ(format_info(Format::kFp16).max_finite, 65504.0);
  EXPECT_FALSE(format_info(Format::kFp8E4M3).has_inf);
  EXPECT_EQ(format_info(Format::kInt4).group_size, 32);
  EXPECT_EQ(format_info(Format::kInt8).qmin, -127);
  EXPECT_EQ(format_info(Format::kInt4).qmin, -8);
  EXPECT_EQ(format_info(Format::kInt4).qmax, 7);
  EXPECT_EQ(format_storage_bytes(Format::kInt4, 33), 17u);
  EXPECT_EQ(std::string(format_names_list()), "fp32, bf16, fp16, fp8e4m3, fp8e5m2, int8, int4");
}

TEST(FormatsTable, IntegerRowsHaveScales) {
  for (const FormatInfo& r : kFormats) {
    if (r.kind != FormatKind::kInteger) continue;
    ASSERT_NE(r.scale_ref, nullptr) << r.name;
    EXPECT_EQ(r.scale_ref(0.0f), 1.0f) << r.name;  // amax = 0 gives s = 1
    EXPECT_EQ(r.max_finite, r.qmax);
    // Every code decodes to q * s and encodes back to itself.
    const float s = r.scale_ref(10.0f);
    for (int q = r.qmin; q <= r.qmax; ++q) {
      const uint32_t code = r.encode_ref(float(q) * s, s);
      EXPECT_EQ(r.decode_ref(code, s), float(q) * s) << r.name << " q=" << q;
    }
  }
}

}  // namespace
}  // namespace dynaprec
