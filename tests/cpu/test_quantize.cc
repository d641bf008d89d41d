// Tensor-level quantization against a naive, independent implementation of CONTRACT §1 written
// here (loops over the definition), on random shapes, every axis, and the edge cases.
#include <gtest/gtest.h>

#include <bit>
#include <cmath>
#include <cstring>
#include <optional>
#include <random>
#include <string>

#include "dynaprec/convert.h"
#include "dynaprec/error.h"
#include "dynaprec/quantize.h"
#include "test_util.h"

namespace dynaprec {
namespace {

Tensor random_tensor(const Shape& shape, std::mt19937& rng, float scale) {
  Tensor t = Tensor::zeros(shape, DType::kF32);
  std::normal_distribution<float> d(0.f, scale);
  for (int64_t i = 0; i < t.numel(); ++i) t.data_as<float>()[i] = d(rng);
  return t;
}

// CONTRACT §1, int8, written directly from the text.
std::vector<float> naive_int8(const Tensor& x, int axis) {
  const auto& sh = x.shape();
  const float* p = x.data_as<float>();
  std::vector<float> out(static_cast<size_t>(x.numel()));
  auto channel = [&](int64_t i) -> int64_t {
    if (axis < 0) return 0;
    int64_t inner = 1;
    for (size_t a = static_cast<size_t>(axis) + 1; a < sh.size(); ++a) inner *= sh[a];
    return (i / inner) % sh[static_cast<size_t>(axis)];
  };
  const int64_t nch = axis < 0 ? 1 : sh[static_cast<size_t>(axis)];
  std::vector<float> amax(static_cast<size_t>(nch), 0.f);
  for (int64_t i = 0; i < x.numel(); ++i)
    amax[channel(i)] = std::max(amax[channel(i)], std::fabs(p[i]));
  for (int64_t i = 0; i < x.numel(); ++i) {
    const float a = amax[channel(i)];
    const float s = a == 0.f ? 1.f : a / 127.f;
    float q = s == 0.f ? 0.f : std::nearbyint(p[i] / s);
    q = std::min(127.f, std::max(-127.f, q));
    out[i] = q * s;
  }
  return out;
}

// CONTRACT §1, int4.
std::vector<float> naive_int4(const Tensor& x) {
  const int64_t k = x.rank() == 0 ? 1 : x.shape().back();
  const float* p = x.data_as<float>();
  std::vector<float> out(static_cast<size_t>(x.numel()));
  for (int64_t r = 0; k > 0 && r < x.numel() / k; ++r)
    for (int64_t g = 0; g < k; g += 32) {
      const int64_t len = std::min<int64_t>(32, k - g);
      float a = 0;
      for (int64_t j = 0; j < len; ++j) a = std::max(a, std::fabs(p[r * k + g + j]));
      float s = 1.f;
      if (a != 0.f) {
        s = ref::decode_float(Format::kFp16, ref::encode_float(Format::kFp16, a / 7.f));
        if (std::isinf(s)) s = 65504.f;
      }
      for (int64_t j = 0; j < len; ++j) {
        float q = s == 0.f ? 0.f : std::nearbyint(p[r * k + g + j] / s);
        q = std::min(7.f, std::max(-8.f, q));
        out[r * k + g + j] = q * s;
      }
    }
  return out;
}

void expect_equal(const Tensor& got, const std::vector<float>& want, const std::string& what) {
  ASSERT_EQ(got.dtype(), DType::kF32);
  ASSERT_EQ(static_cast<size_t>(got.numel()), want.size());
  for (size_t i = 0; i < want.size(); ++i)
    ASSERT_TRUE(test::same_bits_or_nan(got.data_as<float>()[i], want[i]) ||
                (got.data_as<float>()[i] == 0.f && want[i] == 0.f))
        << what << " at " << i << ": got " << got.data_as<float>()[i] << " want " << want[i];
}

const std::vector<Shape> kShapes = {{},        {1},        {7},          {33},     {1000},
                                    {0},       {3, 0},     {1, 1},       {7, 33},  {33, 7},
                                    {2, 3, 5}, {4, 1, 65}, {2, 3, 4, 5}, {64, 100}};

TEST(Quantize, Int8PerTensorAndEveryAxisMatchesContract) {
  std::mt19937 rng(3);
  for (const Shape& sh : kShapes) {
    for (float scale : {1.f, 1e-30f, 1e30f, 1e-42f}) {
      const Tensor x = random_tensor(sh, rng, scale);
      expect_equal(round_trip(x, Format::kInt8), naive_int8(x, -1),
                   "int8 per tensor " + shape_str(sh));
      for (int a = 0; a < x.rank(); ++a) {
        expect_equal(round_trip(x, Format::kInt8, a), naive_int8(x, a),
                     "int8 axis " + std::to_string(a) + " " + shape_str(sh));
        expect_equal(round_trip(x, Format::kInt8, a - x.rank()), naive_int8(x, a),
                     "int8 negative axis " + shape_str(sh));
      }
    }
  }
}

TEST(Quantize, Int4MatchesContract) {
  std::mt19937 rng(4);
  for (const Shape& sh : kShapes) {
    for (float scale : {1.f, 1e-9f, 1e6f, 3e-5f}) {
      const Tensor x = random_tensor(sh, rng, scale);
      expect_equal(round_trip(x, Format::kInt4), naive_int4(x), "int4 " + shape_str(sh));
    }
  }
}

TEST(Quantize, FloatFormatsElementwise) {
  std::mt19937 rng(5);
  const Tensor x = random_tensor({5, 37}, rng, 1000.f);
  for (Format f :
       {Format::kFp32, Format::kBf16, Format::kFp16, Format::kFp8E4M3, Format::kFp8E5M2}) {
    std::vector<float> want(static_cast<size_t>(x.numel()));
    for (size_t i = 0; i < want.size(); ++i)
      want[i] = ref::decode_float(f, ref::encode_float(f, x.data_as<float>()[i]));
    expect_equal(round_trip(x, f), want, std::string(format_name(f)));
  }
}

TEST(Quantize, QuantizedTensorCarriesScalesAndRealStorage) {
  std::mt19937 rng(6);
  const Tensor x = random_tensor({4, 70}, rng, 2.f);
  const Tensor q8 = quantize(x, Format::kInt8, 0);
  EXPECT_EQ(q8.dtype(), DType::kI8);
  EXPECT_EQ(q8.nbytes(), 280u);
  EXPECT_EQ(q8.quant().scales.size(), 4u);
  EXPECT_EQ(q8.quant().axis, 0);
  const Tensor q4 = quantize(x, Format::kInt4);
  EXPECT_EQ(q4.dtype(), DType::kI4);
  EXPECT_EQ(q4.nbytes(), 4u * 35u);
  EXPECT_EQ(q4.quant().scales_f16.size(), 4u * 3u);
  EXPECT_EQ(q4.quant().group_size, 32);
  const Tensor q1 = quantize(x, Format::kFp8E4M3);
  EXPECT_EQ(q1.nbytes(), 280u);
}

TEST(Quantize, StridedInputIsHandled) {
  std::mt19937 rng(7);
  const Tensor x = random_tensor({6, 40}, rng, 1.f);
  // Transposed view (40, 6).
  Tensor t = Tensor::borrow(const_cast<void*>(x.data()), {40, 6}, DType::kF32, {1, 40});
  const Tensor c = t.clone();
  expect_equal(round_trip(t, Format::kInt4), naive_int4(c), "strided int4");
  expect_equal(round_trip(t, Format::kInt8, 1), naive_int8(c, 1), "strided int8");
}

TEST(Quantize, RefusesBadInput) {
  Tensor x = Tensor::zeros({4}, DType::kF32);
  x.data_as<float>()[2] = std::nanf("");
  for (Format f : {Format::kInt8, Format::kInt4}) {
    try {
      (void)quantize(x, f);
      FAIL() << "NaN accepted for " << format_name(f);
    } catch (const Error& e) {
      EXPECT_EQ(e.kind(), ErrorKind::kInvalidInput);
      EXPECT_NE(std::string(e.what()).find("element 2 is nan"), std::string::npos) << e.what();
    }
  }
  x.data_as<float>()[2] = INFINITY;
  EXPECT_THROW((void)quantize(x, Format::kInt8, 0), Error);
  // Float formats take NaN and inf.
  EXPECT_NO_THROW((void)round_trip(x, Format::kFp8E4M3));
  Tensor y = Tensor::zeros({2, 3}, DType::kF32);
  EXPECT_THROW((void)quantize(y, Format::kInt8, 2), Error);
  EXPECT_THROW((void)quantize(y, Format::kInt8, -3), Error);
  EXPECT_THROW((void)quantize(y, Format::kFp16, 0), Error);
  EXPECT_THROW((void)quantize(y, Format::kInt4, 0), Error);
  EXPECT_NO_THROW((void)quantize(y, Format::kInt4, 1));
  EXPECT_THROW((void)quantize(Tensor::zeros({2}, DType::kF64), Format::kFp16), Error);
  EXPECT_THROW((void)quantize(Tensor::zeros({}, DType::kF32), Format::kInt8, 0), Error);
}

// int8 per row and int4 find non-finite input from the scales they compute (no pass of their
// own): every position of a NaN or an inf, next to huge finite values that saturate int4's scale.
TEST(Quantize, RefusesNonFiniteFoundThroughScales) {
  std::mt19937 rng(9);
  for (int64_t k : {int64_t{4096}, int64_t{100}}) {
    const Tensor base = random_tensor({64, k}, rng, 1.f);
    for (int which = 0; which < 3; ++which) {
      Tensor x = base.clone();
      float* p = x.data_as<float>();
      const size_t at = static_cast<size_t>(rng() % (64 * k));
      for (int64_t i = 0; i < k; ++i) p[(at / k) * k + i] *= 1e30f;  // saturates int4's scale
      if (which == 0) p[at] = std::nanf("");
      if (which == 1) p[at] = -INFINITY;
      const std::string want = "element " + std::to_string(at) + " is ";
      for (Format f : {Format::kInt8, Format::kInt4}) {
        const std::optional<int> axis = f == Format::kInt8 ? std::optional<int>(0) : std::nullopt;
        if (which == 2) {
          EXPECT_NO_THROW((void)quantize(x, f, axis)) << format_name(f) << " k=" << k;
          continue;
        }
        try {
          (void)quantize(x, f, axis);
          ADD_FAILURE() << "non-finite accepted for " << format_name(f) << " k=" << k;
        } catch (const Error& e) {
          EXPECT_EQ(e.kind(), ErrorKind::kInvalidInput);
          EXPECT_NE(std::string(e.what()).find(want), std::string::npos) << e.what();
        }
      }
    }
  }
}

}  // namespace
}  // namespace dynaprec
