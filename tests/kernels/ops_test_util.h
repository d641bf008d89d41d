// Helpers shared by the ops tests (test_ops*.cc): tensors from literal values, checks of shape
// and values, error checks, random data and the ulp distance.
#pragma once

#include <gtest/gtest.h>

#include <bit>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <deque>
#include <functional>
#include <random>
#include <string>
#include <vector>

#include "dynaprec/error.h"
#include "dynaprec/ops.h"
#include "dynaprec/tensor.h"

namespace dynaprec::test {

template <class T>
Tensor make(Shape shape, DType dtype, const std::vector<T>& v) {
  Tensor t = Tensor::zeros(std::move(shape), dtype);
  EXPECT_EQ(static_cast<size_t>(t.numel()), v.size()) << "test data size";
  if (!v.empty()) std::memcpy(t.data(), v.data(), v.size() * sizeof(T));
  return t;
}
inline Tensor f32(Shape s, const std::vector<float>& v) {
  return make(std::move(s), DType::kF32, v);
}
inline Tensor i64(Shape s, const std::vector<int64_t>& v) {
  return make(std::move(s), DType::kI64, v);
}
inline Tensor i32(Shape s, const std::vector<int32_t>& v) {
  return make(std::move(s), DType::kI32, v);
}
inline Tensor boolean(Shape s, const std::vector<uint8_t>& v) {
  return make(std::move(s), DType::kBool, v);
}
inline Tensor scalar(float v) { return f32({}, {v}); }

/// The values of a tensor (any strides) in C order.
template <class T>
std::vector<T> values(const Tensor& t) {
  const Tensor c = t.clone();
  const T* p = c.data_as<T>();
  return std::vector<T>(p, p + c.numel());
}

/// Shape, dtype and values, floats within `tol` (NaN must meet NaN).
inline void expect_f32(const Tensor& t, const Shape& shape, const std::vector<float>& want,
                       float tol = 0.0f) {
  ASSERT_EQ(t.dtype(), DType::kF32);
  ASSERT_EQ(t.shape(), shape);
  ASSERT_TRUE(t.is_contiguous() && t.owns_storage());
  const std::vector<float> got = values<float>(t);
  ASSERT_EQ(got.size(), want.size());
  for (size_t i = 0; i < got.size(); ++i) {
    if (std::isnan(want[i])) {
      EXPECT_TRUE(std::isnan(got[i])) << "at " << i << ": " << got[i];
    } else if (tol == 0.0f) {
      EXPECT_EQ(got[i], want[i]) << "at " << i;
    } else {
      EXPECT_NEAR(got[i], want[i], tol) << "at " << i;
    }
  }
}

template <class T>
void expect_values(const Tensor& t, DType dtype, const Shape& shape, const std::vector<T>& want) {
  ASSERT_EQ(t.dtype(), dtype);
  ASSERT_EQ(t.shape(), shape);
  EXPECT_EQ(values<T>(t), want);
}

/// fn throws Error(kInvalidInput) whose message contains each of `parts`.
inline void expect_invalid(const std::function<void()>& fn, const std::vector<std::string>& parts) {
  try {
    fn();
    ADD_FAILURE() << "no error; expected one containing '" << parts.front() << "'";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::kInvalidInput) << e.what();
    for (const std::string& p : parts)
      EXPECT_NE(std::string(e.what()).find(p), std::string::npos)
          << "message '" << e.what() << "' lacks '" << p << "'";
  }
}

inline Tensor random_f32(Shape shape, uint32_t seed, float lo = -4.0f, float hi = 4.0f) {
  Tensor t = Tensor::zeros(std::move(shape), DType::kF32);
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> d(lo, hi);
  for (int64_t i = 0; i < t.numel(); ++i) t.data_as<float>()[i] = d(rng);
  return t;
}

/// Distance between two floats in units in the last place: how far apart they are in the ordered
/// list of floats (+0 and -0 count as equal). Both NaN: 0; one NaN: INT64_MAX.
inline int64_t ulp_distance(float a, float b) {
  if (std::isnan(a) || std::isnan(b)) return std::isnan(a) && std::isnan(b) ? 0 : INT64_MAX;
  if (a == b) return 0;
  auto ordered = [](float f) {
    const int64_t bits = std::bit_cast<int32_t>(f);
    return bits < 0 ? -(bits & 0x7FFFFFFF) : bits;
  };
  const int64_t d = ordered(a) - ordered(b);
  return d < 0 ? -d : d;
}

/// A strided (non-contiguous) view of the same values: a transposed copy viewed back.
inline Tensor strided_copy(const Tensor& x) {
  // Storage holds x in reversed-axis order; the view's strides walk it back into x's order.
  const Shape& s = x.shape();
  std::vector<int64_t> perm;
  for (size_t i = s.size(); i-- > 0;) perm.push_back(static_cast<int64_t>(i));
  // The view does not own its storage: the last 16 copies stay alive here, enough for the tests,
  // which use each view within a few statements.
  static std::deque<Tensor> keep;
  keep.push_back(ref::transpose(x, perm));
  if (keep.size() > 16) keep.pop_front();
  const Tensor& t = keep.back();
  Shape strides(s.size());
  for (size_t i = 0; i < s.size(); ++i) strides[i] = t.strides()[s.size() - 1 - i];
  return Tensor::borrow(const_cast<void*>(t.data()), s, x.dtype(), strides);
}

}  // namespace dynaprec::test
