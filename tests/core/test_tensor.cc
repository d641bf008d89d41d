#include <gtest/gtest.h>
#include <vector>

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

namespace dynaprec {
namespace {

// Storage of 64 KiB and more is kept after its tensor dies and reused for the next tensor of the
// same rounded size; the kept total stays bounded; release_tensor_cache() frees it all.
TEST(TensorStorage, LargeBlocksAreReusedBoundedAndReleased) {
#ifdef __SANITIZE_ADDRESS__
  GTEST_SKIP() << "AddressSanitizer build: storage is freed at once (src/core/tensor.cc)";
#endif
  release_tensor_cache();
  EXPECT_EQ(tensor_cache_bytes(), 0u);
  const void* first = nullptr;
  {
    Tensor a = Tensor::empty({10 << 20}, DType::kF32);  // 40 MiB
    first = a.data();
  }
  EXPECT_EQ(tensor_cache_bytes(), size_t{40} << 20);
  {
    Tensor b = Tensor::zeros({10 << 20}, DType::kF32);  // the same block, zeroed again
    EXPECT_EQ(b.data(), first);
    EXPECT_EQ(tensor_cache_bytes(), 0u);
    for (int64_t i = 0; i < b.numel(); i += 4099) ASSERT_EQ(b.data_as<float>()[i], 0.0f);
  }
  {
    Tensor small = Tensor::empty({4 << 10}, DType::kF32);  // 16 KiB: malloc's business
  }
  EXPECT_EQ(tensor_cache_bytes(), size_t{40} << 20);
  const void* mid = nullptr;
  {
    Tensor a = Tensor::empty({(1 << 20) + 25}, DType::kF32);  // 4 MiB + 100 bytes
    mid = a.data();
  }
  EXPECT_GT(tensor_cache_bytes(), (size_t{44} << 20));
  {
    Tensor b = Tensor::empty({(1 << 20) + 50}, DType::kF32);  // the same rounded size
    EXPECT_EQ(b.data(), mid);
  }
  {
    std::vector<Tensor> many;
    for (int i = 0; i < 20; ++i)
      many.push_back(Tensor::empty({(10 << 20) + i * 1024}, DType::kF32));
  }
  EXPECT_LE(tensor_cache_bytes(), size_t{512} << 20);
  EXPECT_GT(tensor_cache_bytes(), size_t{400} << 20);
  trim_tensor_cache();  // nothing idle for 5 s yet
  EXPECT_GT(tensor_cache_bytes(), 0u);
  release_tensor_cache();
  EXPECT_EQ(tensor_cache_bytes(), 0u);
}

}  // namespace
}  // namespace dynaprec
