#include <gtest/gtest.h>

#include "dynaprec/error.h"
#include "dynaprec/tensor.h"

namespace dynaprec {
namespace {

TEST(Tensor, ZerosIsContiguousAndOwned) {
  Tensor t = Tensor::zeros({2, 3, 4}, DType::kF32);
  EXPECT_EQ(t.numel(), 24);
  EXPECT_EQ(t.nbytes(), 96u);
  EXPECT_TRUE(t.is_contiguous());
  EXPECT_TRUE(t.owns_storage());
  EXPECT_EQ(t.strides(), (Shape{12, 4, 1}));
  EXPECT_EQ(reinterpret_cast<uintptr_t>(t.data()) % 64, 0u);
  for (int i = 0; i < 24; ++i) EXPECT_EQ(t.data_as<float>()[i], 0.0f);
}

TEST(Tensor, Int4RowsArePaddedToBytes) {
  Tensor t = Tensor::zeros({3, 33}, DType::kI4);
  EXPECT_EQ(t.nbytes(), 3u * 17u);
  Tensor s = Tensor::zeros({}, DType::kI4);
  EXPECT_EQ(s.numel(), 1);
  EXPECT_EQ(s.nbytes(), 1u);
}

TEST(Tensor, BorrowedStridedCloneIsCOrder) {
  float data[6] = {0, 1, 2, 3, 4, 5};  // a 2x3 array viewed transposed as 3x2
  Tensor t = Tensor::borrow(data, {3, 2}, DType::kF32, {1, 3});
  EXPECT_FALSE(t.is_contiguous());
  EXPECT_FALSE(t.owns_storage());
  Tensor c = t.clone();
  EXPECT_TRUE(c.is_contiguous());
  const float want[6] = {0, 3, 1, 4, 2, 5};
  for (int i = 0; i < 6; ++i) EXPECT_EQ(c.data_as<float>()[i], want[i]);
}

TEST(Tensor, BadShapesAreRefused) {
  EXPECT_THROW(Tensor::zeros({-1, 2}, DType::kF32), Error);
  EXPECT_THROW(shape_numel(Shape{int64_t{1} << 40, int64_t{1} << 40}), Error);
  EXPECT_EQ(shape_numel(Shape{0, int64_t{1} << 40}), 0);
  EXPECT_THROW(shape_numel(Shape{0, int64_t{1} << 40, int64_t{1} << 40}), Error);
  EXPECT_EQ(shape_str(Shape{5}), "(5,)");
  EXPECT_EQ(shape_str(Shape{}), "()");
}

TEST(Tensor, DTypeNames) {
  EXPECT_EQ(dtype_name(DType::kF8E4M3), "float8_e4m3fn");
  EXPECT_EQ(dtype_bits(DType::kI4), 4);
  EXPECT_EQ(dtype_of(Format::kInt8), DType::kI8);
  EXPECT_EQ(format_of(DType::kI64), std::nullopt);
}

}  // namespace
}  // namespace dynaprec
