// The elementwise ops, Cast, reductions, softmax and normalization (include/dynaprec/ops.h)
// against hand-computed values (ONNX's documented examples where there is one), on broadcasting
// and edge cases, and their errors. Each case runs through the public function (fast path where
// one applies) and the reference; tests/kernels/test_ops_fast.cc compares the two on random data
// on every SIMD target.
#include <gtest/gtest.h>

#include <cmath>
#include <limits>

#include "dynaprec/convert.h"
#include "dynaprec/ops.h"
#include "kernels/ops_test_util.h"
#include "test_util.h"

namespace dynaprec {
namespace {

using test::expect_f32;
using test::expect_invalid;
using test::expect_values;
using test::f32;
using test::i64;

constexpr float kInf = std::numeric_limits<float>::infinity();
constexpr float kNaN = std::numeric_limits<float>::quiet_NaN();
constexpr int64_t kI64Max = std::numeric_limits<int64_t>::max();
constexpr int64_t kI64Min = std::numeric_limits<int64_t>::min();

// Both implementations give `want` (within tol).
void both_binary(BinaryOp op, const Tensor& a, const Tensor& b, const Shape& shape,
                 const std::vector<float>& want, float tol = 0.0f) {
  SCOPED_TRACE(std::string(binary_op_name(op)));
  expect_f32(binary(op, a, b), shape, want, tol);
  expect_f32(ref::binary(op, a, b), shape, want, tol);
}

void both_unary(UnaryOp op, const Tensor& x, const std::vector<float>& want, float tol = 0.0f,
                const UnaryParams& p = {}) {
  SCOPED_TRACE(std::string(unary_op_name(op)));
  expect_f32(unary(op, x, p), x.shape(), want, tol);
  expect_f32(ref::unary(op, x, p), x.shape(), want, tol);
}

TEST(OpsBinary, SameShape) {
  const Tensor a = f32({2, 3}, {1, 2, 3, 4, 5, 6}), b = f32({2, 3}, {6, 5, 4, 3, 2, -1});
  both_binary(BinaryOp::kAdd, a, b, {2, 3}, {7, 7, 7, 7, 7, 5});
  both_binary(BinaryOp::kSub, a, b, {2, 3}, {-5, -3, -1, 1, 3, 7});
  both_binary(BinaryOp::kMul, a, b, {2, 3}, {6, 10, 12, 12, 10, -6});
  both_binary(BinaryOp::kDiv, a, b, {2, 3}, {1.0f / 6, 2.0f / 5, 3.0f / 4, 4.0f / 3, 5.0f / 2, -6});
  both_binary(BinaryOp::kMax, a, b, {2, 3}, {6, 5, 4, 4, 5, 6});
  both_binary(BinaryOp::kMin, a, b, {2, 3}, {1, 2, 3, 3, 2, -1});
  both_binary(BinaryOp::kPow, f32({3}, {2, 3, 4}), f32({3}, {3, 2, 0.5f}), {3}, {8, 9, 2});
}

TEST(OpsBinary, Broadcasting) {
  const Tensor m = f32({2, 3}, {1, 2, 3, 4, 5, 6});
  // Scalar (rank 0) on either side: the operand order matters for Sub.
  both_binary(BinaryOp::kSub, m, test::scalar(1), {2, 3}, {0, 1, 2, 3, 4, 5});
  both_binary(BinaryOp::kSub, test::scalar(1), m, {2, 3}, {0, -1, -2, -3, -4, -5});
  both_binary(BinaryOp::kDiv, f32({1}, {12}), m, {2, 3}, {12, 6, 4, 3, 2.4f, 2});
  // Row [3], column [2, 1], both-sided [2, 1] x [1, 3].
  both_binary(BinaryOp::kAdd, m, f32({3}, {10, 20, 30}), {2, 3}, {11, 22, 33, 14, 25, 36});
  both_binary(BinaryOp::kMul, m, f32({2, 1}, {10, -1}), {2, 3}, {10, 20, 30, -4, -5, -6});
  both_binary(BinaryOp::kSub, f32({2, 1}, {1, 2}), f32({1, 3}, {10, 20, 30}), {2, 3},
              {-9, -19, -29, -8, -18, -28});
  // Rank mismatch: (2, 1, 3) against (4, 1) gives (2, 4, 3).
  const Tensor a = f32({2, 1, 3}, {1, 2, 3, 4, 5, 6}), b = f32({4, 1}, {0, 10, 20, 30});
  std::vector<float> want;
  for (int i = 0; i < 2; ++i)
    for (int j = 0; j < 4; ++j)
      for (int k = 0; k < 3; ++k) want.push_back(float(i * 3 + k + 1) + float(j * 10));
  both_binary(BinaryOp::kAdd, a, b, {2, 4, 3}, want);
  both_binary(BinaryOp::kAdd, b, a, {2, 4, 3}, want);
  // ONNX's Add example with broadcast: (3, 4, 5) + (5,).
  const Tensor x = test::random_f32({3, 4, 5}, 1), y = test::random_f32({5}, 2);
  want.clear();
  for (int i = 0; i < 60; ++i) want.push_back(x.data_as<float>()[i] + y.data_as<float>()[i % 5]);
  both_binary(BinaryOp::kAdd, x, y, {3, 4, 5}, want);
}

TEST(OpsBinary, StridedAndEmptyInputs) {
  const Tensor a = test::random_f32({3, 4}, 3), b = test::random_f32({4}, 4);
  const Tensor as = test::strided_copy(a);
  ASSERT_FALSE(as.is_contiguous());
  std::vector<float> want;
  for (int i = 0; i < 12; ++i) want.push_back(a.data_as<float>()[i] * b.data_as<float>()[i % 4]);
  both_binary(BinaryOp::kMul, as, b, {3, 4}, want);
  both_binary(BinaryOp::kAdd, f32({0, 3}, {}), f32({3}, {1, 2, 3}), {0, 3}, {});
  both_binary(BinaryOp::kAdd, f32({1, 0}, {}), f32({3, 1}, {1, 2, 3}), {3, 0}, {});
  both_binary(BinaryOp::kMul, test::scalar(3), test::scalar(-2), {}, {-6});
}

TEST(OpsBinary, NaNAndSpecialValues) {
  const Tensor a = f32({4}, {kNaN, 1, -0.0f, kInf}), b = f32({4}, {1, kNaN, 0.0f, 1});
  both_binary(BinaryOp::kMax, a, b, {4}, {kNaN, kNaN, 0.0f, kInf});
  both_binary(BinaryOp::kMin, a, b, {4}, {kNaN, kNaN, 0.0f, 1});
  both_binary(BinaryOp::kDiv, f32({3}, {1, -1, 0}), f32({3}, {0, 0, 0}), {3}, {kInf, -kInf, kNaN});
  for (auto f : {&binary, &ref::binary}) {
    expect_values<uint8_t>(f(BinaryOp::kEqual, a, b), DType::kBool, {4}, {0, 0, 1, 0});
    expect_values<uint8_t>(f(BinaryOp::kLess, a, b), DType::kBool, {4}, {0, 0, 0, 0});
    expect_values<uint8_t>(f(BinaryOp::kGreater, a, b), DType::kBool, {4}, {0, 0, 0, 1});
  }
}

TEST(OpsBinary, IntegersAndBool) {
  const Tensor a = i64({4}, {-7, 7, kI64Max, 3}), b = i64({4}, {2, -2, 1, 3});
  for (auto f : {&binary, &ref::binary}) {
    expect_values<int64_t>(f(BinaryOp::kDiv, a, b), DType::kI64, {4}, {-3, -3, kI64Max, 1});
    expect_values<int64_t>(f(BinaryOp::kAdd, a, b), DType::kI64, {4}, {-5, 5, kI64Min, 6});
    expect_values<int64_t>(f(BinaryOp::kMax, a, b), DType::kI64, {4}, {2, 7, kI64Max, 3});
    expect_values<int64_t>(f(BinaryOp::kPow, i64({2}, {2, -3}), i64({2}, {10, 3})), DType::kI64,
                           {2}, {1024, -27});
    expect_values<uint8_t>(f(BinaryOp::kLess, a, b), DType::kBool, {4}, {1, 0, 0, 0});
    expect_values<int32_t>(f(BinaryOp::kMul, test::i32({2}, {-3, 4}), test::i32({1}, {5})),
                           DType::kI32, {2}, {-15, 20});
    expect_values<uint8_t>(
        f(BinaryOp::kEqual, test::boolean({3}, {0, 1, 1}), test::boolean({1}, {1})), DType::kBool,
        {3}, {0, 1, 1});
    expect_invalid([&] { f(BinaryOp::kDiv, a, i64({1}, {0})); }, {"Div", "division by zero"});
  }
}

TEST(OpsBinary, Errors) {
  for (auto f : {&binary, &ref::binary}) {
    expect_invalid(
        [&] {
          f(BinaryOp::kAdd, f32({2, 3}, {1, 2, 3, 4, 5, 6}), f32({4}, {1, 2, 3, 4}));
        },
        {"Add", "(2, 3)", "(4,)", "3 vs 4"});
    expect_invalid([&] { f(BinaryOp::kMul, f32({1}, {1}), i64({1}, {1})); },
                   {"Mul", "same dtype", "float32", "int64"});
    expect_invalid([&] { f(BinaryOp::kAdd, test::boolean({1}, {1}), test::boolean({1}, {1})); },
                   {"Add", "bool"});
  }
  EXPECT_EQ(broadcast_shapes({2, 1, 4}, {3, 1}), (Shape{2, 3, 4}));
  EXPECT_EQ(broadcast_shapes({1}, {0}), (Shape{0}));
}

TEST(OpsUnary, HandValues) {
  const Tensor x = f32({5}, {-2, -0.5f, 0, 0.5f, 4});
  both_unary(UnaryOp::kNeg, x, {2, 0.5f, -0.0f, -0.5f, -4});
  both_unary(UnaryOp::kAbs, x, {2, 0.5f, 0, 0.5f, 4});
  both_unary(UnaryOp::kRelu, x, {0, 0, 0, 0.5f, 4});
  both_unary(UnaryOp::kSqrt, f32({3}, {4, 0, -1}), {2, 0, kNaN});
  both_unary(UnaryOp::kExp, f32({4}, {0, 1, -kInf, kNaN}), {1, 2.7182817f, 0, kNaN}, 1e-6f);
  both_unary(UnaryOp::kExp, f32({2}, {100, -200}), {kInf, 0});
  both_unary(UnaryOp::kLog, f32({3}, {1, 0, -1}), {0, -kInf, kNaN});
  both_unary(UnaryOp::kSigmoid, f32({5}, {0, 1, -1, 100, -100}),
             {0.5f, 0.7310586f, 0.26894143f, 1, 3.7200760e-44f}, 1e-6f);
  both_unary(UnaryOp::kTanh, f32({5}, {0, 1, -1, 30, kNaN}), {0, 0.7615942f, -0.7615942f, 1, kNaN},
             1e-6f);
  both_unary(UnaryOp::kErf, f32({3}, {0, 1, -kInf}), {0, 0.8427008f, -1}, 1e-6f);
  // ONNX examples: HardSigmoid(alpha 0.5, beta 0.6), LeakyRelu(alpha 0.1), Clip(-1, 1).
  UnaryParams p;
  p.hard_sigmoid_alpha = 0.5f;
  p.hard_sigmoid_beta = 0.6f;
  both_unary(UnaryOp::kHardSigmoid, f32({3}, {-1, 0, 1}), {0.1f, 0.6f, 1}, 1e-7f, p);
  both_unary(UnaryOp::kHardSigmoid, f32({4}, {-3, 0, 1, 3}), {0, 0.5f, 0.7f, 1}, 1e-7f);
  p.leaky_relu_alpha = 0.1f;
  both_unary(UnaryOp::kLeakyRelu, f32({3}, {-1, 0, 1}), {-0.1f, 0, 1}, 0.0f, p);
  both_unary(UnaryOp::kHardSwish, f32({5}, {-4, -1, 0, 1, 4}), {0, -1.0f / 3, 0, 2.0f / 3, 4},
             1e-6f);
  p.clip_min = -1;
  p.clip_max = 1;
  both_unary(UnaryOp::kClip, f32({4}, {-2, 0, 2, kNaN}), {-1, 0, 1, kNaN}, 0.0f, p);
  p.clip_min = 2;  // min > max: numpy's min(max(x, lo), hi) gives hi
  both_unary(UnaryOp::kClip, f32({2}, {-2, 5}), {1, 1}, 0.0f, p);
  both_unary(UnaryOp::kClip, f32({2}, {-1e30f, 1e30f}), {-1e30f, 1e30f});  // no bounds
}

TEST(OpsUnary, RankZeroEmptyStridedAndOtherDtypes) {
  both_unary(UnaryOp::kRelu, test::scalar(-3), {0});
  both_unary(UnaryOp::kExp, f32({0, 4}, {}), {});
  const Tensor x = test::random_f32({3, 5}, 7);
  std::vector<float> want;
  for (int i = 0; i < 15; ++i) want.push_back(-x.data_as<float>()[i]);
  both_unary(UnaryOp::kNeg, test::strided_copy(x), want);
  for (auto f : {&unary, &ref::unary}) {
    const Tensor a = i64({3}, {kI64Min, -5, 6});
    expect_values<int64_t>(f(UnaryOp::kNeg, a, {}), DType::kI64, {3}, {kI64Min, 5, -6});
    expect_values<int64_t>(f(UnaryOp::kAbs, a, {}), DType::kI64, {3}, {kI64Min, 5, 6});
    expect_values<int64_t>(f(UnaryOp::kRelu, a, {}), DType::kI64, {3}, {0, 0, 6});
    expect_values<uint8_t>(f(UnaryOp::kNot, test::boolean({2}, {0, 1}), {}), DType::kBool, {2},
                           {1, 0});
    expect_invalid([&] { f(UnaryOp::kSqrt, a, {}); }, {"Sqrt", "float32", "int64"});
    expect_invalid([&] { f(UnaryOp::kNot, f32({1}, {1}), {}); }, {"Not", "bool", "float32"});
    UnaryParams p;
    p.clip_min = kNaN;
    expect_invalid([&] { f(UnaryOp::kClip, f32({1}, {1}), p); }, {"Clip", "NaN"});
  }
}

TEST(OpsCast, FloatToIntegerSaturatesAndTruncates) {
  const Tensor x = f32({6}, {1.7f, -1.7f, kNaN, 1e30f, -1e30f, -0.0f});
  for (auto f : {&cast, &ref::cast}) {
    expect_values<int64_t>(f(x, DType::kI64), DType::kI64, {6}, {1, -1, 0, kI64Max, kI64Min, 0});
    expect_values<int32_t>(f(x, DType::kI32), DType::kI32, {6},
                           {1, -1, 0, INT32_MAX, INT32_MIN, 0});
    expect_values<uint8_t>(f(f32({3}, {300, -5, 254.9f}), DType::kU8), DType::kU8, {3},
                           {255, 0, 254});
    expect_values<int8_t>(f(f32({2}, {-200, 127.5f}), DType::kI8), DType::kI8, {2}, {-128, 127});
    expect_values<uint8_t>(f(f32({4}, {0, -0.0f, 2, kNaN}), DType::kBool), DType::kBool, {4},
                           {0, 0, 1, 1});
  }
}

TEST(OpsCast, IntegersBoolAndWidths) {
  for (auto f : {&cast, &ref::cast}) {
    expect_f32(f(test::boolean({2}, {0, 1}), DType::kF32), {2}, {0, 1});
    expect_f32(f(i64({2}, {16777217, -3}), DType::kF32), {2}, {16777216, -3});
    expect_values<int32_t>(f(i64({2}, {(int64_t{1} << 32) + 5, -1}), DType::kI32), DType::kI32, {2},
                           {5, -1});
    expect_values<int64_t>(f(test::i32({2}, {-5, 7}), DType::kI64), DType::kI64, {2}, {-5, 7});
    expect_values<uint8_t>(f(i64({3}, {0, 5, -1}), DType::kBool), DType::kBool, {3}, {0, 1, 1});
    const Tensor d = f(f32({2}, {0.1f, -2}), DType::kF64);
    expect_values<double>(d, DType::kF64, {2}, {double(0.1f), -2.0});
    expect_f32(f(d, DType::kF32), {2}, {0.1f, -2});
    expect_invalid([&] { f(f32({1}, {1}), DType::kF8E4M3); }, {"Cast", "float8_e4m3fn"});
    expect_invalid([&] { f(f32({1}, {1}), DType::kI4); }, {"Cast", "int4"});
  }
}

TEST(OpsCast, HalfFormatsMatchTheBitExactConversions) {
  // Every fp16 and bf16 code to float32 and back, both implementations, bit for bit.
  for (DType h : {DType::kF16, DType::kBF16}) {
    const Format fmt = *format_of(h);
    std::vector<uint16_t> codes(65536);
    for (size_t i = 0; i < codes.size(); ++i) codes[i] = static_cast<uint16_t>(i);
    const Tensor t = test::make<uint16_t>({65536}, h, codes);
    const Tensor fast = cast(t, DType::kF32), slow = ref::cast(t, DType::kF32);
    for (size_t i = 0; i < codes.size(); ++i) {
      const float want = ref::decode_float(fmt, codes[i]);
      ASSERT_TRUE(test::same_bits_or_nan(fast.data_as<float>()[i], want)) << i;
      ASSERT_TRUE(test::same_bits_or_nan(slow.data_as<float>()[i], want)) << i;
    }
    const Tensor x = test::random_f32({1001}, 5, -70000.0f, 70000.0f);
    const std::vector<uint16_t> a = test::values<uint16_t>(cast(x, h));
    const std::vector<uint16_t> b = test::values<uint16_t>(ref::cast(x, h));
    for (size_t i = 0; i < a.size(); ++i) {
      ASSERT_EQ(a[i], ref::encode_float(fmt, x.data_as<float>()[i])) << i;
      ASSERT_EQ(b[i], a[i]) << i;
    }
  }
  expect_values<uint16_t>(cast(f32({3}, {1, 65520, 1.0f / 3}), DType::kF16), DType::kF16, {3},
                          {0x3C00, 0x7C00, 0x3555});
}

// ONNX's ReduceMean example: data (3, 2, 2), axes [1], keepdims 1.
const std::vector<float> kReduceData = {5, 1, 20, 2, 30, 1, 40, 2, 55, 1, 60, 2};

TEST(OpsReduce, OnnxExamplesAndAxes) {
  const Tensor x = f32({3, 2, 2}, kReduceData);
  for (auto f : {&reduce, &ref::reduce}) {
    expect_f32(f(ReduceOp::kMean, x, {1}, true, false), {3, 1, 2},
               {12.5f, 1.5f, 35, 1.5f, 57.5f, 1.5f});
    expect_f32(f(ReduceOp::kMean, x, {-2}, false, false), {3, 2},
               {12.5f, 1.5f, 35, 1.5f, 57.5f, 1.5f});
    expect_f32(f(ReduceOp::kSum, x, {}, true, false), {1, 1, 1}, {219});
    expect_f32(f(ReduceOp::kSum, x, {}, false, false), {}, {219});
    expect_f32(f(ReduceOp::kSum, x, {}, true, true), {3, 2, 2}, kReduceData);  // noop
    expect_f32(f(ReduceOp::kMax, x, {2, 1}, false, false), {3}, {20, 40, 60});
    expect_f32(f(ReduceOp::kMin, x, {0, 2}, true, false), {1, 2, 1}, {1, 2});
    expect_f32(f(ReduceOp::kSum, x, {0}, false, false), {2, 2}, {90, 3, 120, 6});
    expect_f32(f(ReduceOp::kMean, test::strided_copy(x), {2}, false, false), {3, 2},
               {3, 11, 15.5f, 21, 28, 31});
    expect_f32(f(ReduceOp::kSum, test::scalar(4), {}, true, false), {}, {4});
    expect_values<int64_t>(f(ReduceOp::kSum, i64({2, 2}, {1, 2, 3, kI64Max}), {1}, false, false),
                           DType::kI64, {2}, {3, kI64Min + 2});
    expect_values<int64_t>(f(ReduceOp::kMax, i64({2, 2}, {1, 2, 3, -4}), {1}, false, false),
                           DType::kI64, {2}, {2, 3});
    expect_values<int64_t>(f(ReduceOp::kMean, i64({1, 3}, {1, 2, 4}), {1}, false, false),
                           DType::kI64, {1}, {2});
  }
}

TEST(OpsReduce, EmptySetsNaNAndErrors) {
  const Tensor e = f32({0, 3}, {});
  for (auto f : {&reduce, &ref::reduce}) {
    expect_f32(f(ReduceOp::kSum, e, {0}, false, false), {3}, {0, 0, 0});
    expect_f32(f(ReduceOp::kMean, e, {0}, false, false), {3}, {kNaN, kNaN, kNaN});
    expect_f32(f(ReduceOp::kMax, e, {0}, false, false), {3}, {-kInf, -kInf, -kInf});
    expect_f32(f(ReduceOp::kMin, e, {0}, false, false), {3}, {kInf, kInf, kInf});
    expect_f32(f(ReduceOp::kSum, e, {1}, true, false), {0, 1}, {});
    expect_values<int64_t>(f(ReduceOp::kMax, i64({0}, {}), {0}, false, false), DType::kI64, {},
                           {kI64Min});
    const Tensor n = f32({2, 3}, {1, kNaN, 3, -1, -2, -3});
    expect_f32(f(ReduceOp::kMax, n, {1}, false, false), {2}, {kNaN, -1});
    expect_f32(f(ReduceOp::kMin, n, {1}, false, false), {2}, {kNaN, -3});
    expect_f32(f(ReduceOp::kSum, n, {1}, false, false), {2}, {kNaN, -6});
    const Tensor x = f32({3, 2, 2}, kReduceData);
    expect_invalid([&] { f(ReduceOp::kSum, x, {3}, true, false); },
                   {"ReduceSum", "axis 3", "[-3, 2]", "rank 3"});
    expect_invalid([&] { f(ReduceOp::kMax, x, {1, -2}, true, false); }, {"ReduceMax", "repeated"});
    expect_invalid([&] { f(ReduceOp::kMean, test::boolean({1}, {1}), {}, true, false); },
                   {"ReduceMean", "bool"});
  }
}

TEST(OpsReduce, GlobalAveragePoolAndArgMax) {
  const Tensor x = f32({1, 2, 2, 2}, {1, 2, 3, 4, 5, 6, 7, 9});
  for (auto f : {&global_average_pool, &ref::global_average_pool})
    expect_f32(f(x), {1, 2, 1, 1}, {2.5f, 6.75f});
  expect_invalid(
      [&] {
        global_average_pool(f32({2, 2}, {1, 2, 3, 4}));
      },
      {"GlobalAveragePool", "rank >= 3"});
  // ONNX's ArgMax examples: data [[2, 1], [3, 10]].
  const Tensor d = f32({2, 2}, {2, 1, 3, 10});
  for (auto f : {&argmax, &ref::argmax}) {
    expect_values<int64_t>(f(d, 0, true, false), DType::kI64, {1, 2}, {1, 1});
    expect_values<int64_t>(f(d, 1, true, false), DType::kI64, {2, 1}, {0, 1});
    expect_values<int64_t>(f(d, -1, false, false), DType::kI64, {2}, {0, 1});
    const Tensor ties = f32({2, 2}, {2, 2, 3, 10});
    expect_values<int64_t>(f(ties, 1, true, true), DType::kI64, {2, 1}, {1, 1});
    expect_values<int64_t>(f(ties, 1, true, false), DType::kI64, {2, 1}, {0, 1});
    expect_values<int64_t>(f(f32({4}, {1, kNaN, 5, kNaN}), 0, false, false), DType::kI64, {}, {1});
    expect_values<int64_t>(f(f32({4}, {1, kNaN, 5, kNaN}), 0, false, true), DType::kI64, {}, {3});
    expect_values<int64_t>(f(i64({3}, {-5, 7, 7}), 0, false, false), DType::kI64, {}, {1});
    expect_invalid([&] { f(d, 2, true, false); }, {"ArgMax", "axis 2"});
    expect_invalid([&] { f(f32({0, 2}, {}), 0, true, false); }, {"ArgMax", "empty"});
  }
}

TEST(OpsSoftmax, HandValues) {
  // ONNX's Softmax example: [[-1, 0, 1]].
  const std::vector<float> sm = {0.09003057f, 0.24472847f, 0.66524096f};
  const std::vector<float> lsm = {-2.4076059f, -1.4076059f, -0.40760595f};
  for (auto f : {&softmax, &ref::softmax}) {
    expect_f32(f(f32({1, 3}, {-1, 0, 1}), -1), {1, 3}, sm, 1e-7f);
    expect_f32(f(f32({2}, {1000, 1000}), 0), {2}, {0.5f, 0.5f});
    expect_f32(f(f32({3}, {-kInf, 0, -kInf}), 0), {3}, {0, 1, 0});
    expect_f32(f(f32({2}, {kNaN, 0}), 0), {2}, {kNaN, kNaN});
    // Along axis 0 of (3, 2): each column is [-1, 0, 1].
    expect_f32(f(f32({3, 2}, {-1, -1, 0, 0, 1, 1}), 0), {3, 2},
               {sm[0], sm[0], sm[1], sm[1], sm[2], sm[2]}, 1e-7f);
    expect_f32(f(f32({0, 3}, {}), 1), {0, 3}, {});
    expect_invalid([&] { f(f32({2, 2}, {1, 2, 3, 4}), 2); }, {"Softmax", "axis 2", "rank 2"});
    expect_invalid([&] { f(i64({2}, {1, 2}), 0); }, {"Softmax", "int64"});
  }
  for (auto f : {&log_softmax, &ref::log_softmax}) {
    expect_f32(f(f32({3}, {1, 2, 3}), 0), {3}, lsm, 1e-6f);
    expect_f32(f(f32({3, 1}, {1, 2, 3}), -2), {3, 1}, lsm, 1e-6f);
    expect_f32(f(f32({2}, {-kInf, 0}), 0), {2}, {-kInf, 0});
  }
}

TEST(OpsSoftmax, LegacyFlattensFromTheAxis) {
  // (2, 1, 3) with axis 1: each batch's 3 values are one row; axis 0: all 6 are one row.
  const Tensor x = f32({2, 1, 3}, {-1, 0, 1, 1, 1, 1});
  for (auto f : {&softmax_legacy, &ref::softmax_legacy}) {
    expect_f32(f(x, 1), {2, 1, 3},
               {0.09003057f, 0.24472847f, 0.66524096f, 1.0f / 3, 1.0f / 3, 1.0f / 3}, 1e-7f);
    const Tensor all = f(x, 0);
    float total = 0;
    for (float v : test::values<float>(all)) total += v;
    EXPECT_NEAR(total, 1.0f, 1e-6f);
    expect_f32(f(x, 3), {2, 1, 3}, {1, 1, 1, 1, 1, 1});  // axis == rank: rows of one value
    expect_invalid([&] { f(x, 4); }, {"Softmax", "axis 4"});
  }
  for (auto f : {&log_softmax_legacy, &ref::log_softmax_legacy})
    expect_f32(f(f32({1, 3}, {1, 2, 3}), 1), {1, 3}, {-2.4076059f, -1.4076059f, -0.40760595f},
               1e-6f);
}

TEST(OpsNorm, BatchNormOnnxExample) {
  const Tensor x = f32({1, 2, 1, 3}, {-1, 0, 1, 2, 3, 4});
  const Tensor s = f32({2}, {1.0f, 1.5f}), b = f32({2}, {0, 1}), m = f32({2}, {0, 3}),
               v = f32({2}, {1, 1.5f});
  for (auto f : {&batch_norm_inference, &ref::batch_norm_inference}) {
    expect_f32(f(x, s, b, m, v, 1e-5f), {1, 2, 1, 3},
               {-0.999995f, 0, 0.999995f, -0.22474074f, 1, 2.2247407f}, 1e-6f);
    expect_f32(f(f32({2, 2}, {1, 2, 3, 4}), s, b, m, v, 0.0f), {2, 2},
               {1, 1 + 1.5f * (2 - 3) / std::sqrt(1.5f), 3, 1 + 1.5f * (4 - 3) / std::sqrt(1.5f)},
               1e-6f);
    expect_invalid(
        [&] {
          f(x, f32({3}, {1, 1, 1}), b, m, v, 1e-5f);
        },
        {"BatchNormalization", "scale", "[C] = (2,)", "(3,)"});
    expect_invalid(
        [&] {
          f(f32({2}, {1, 2}), s, b, m, v, 1e-5f);
        },
        {"BatchNormalization", "rank >= 2"});
  }
}

TEST(OpsNorm, LayerNormAndInstanceNorm) {
  const Tensor x = f32({2, 3}, {1, 2, 3, 4, 4, 4});
  const Tensor ones = f32({3}, {1, 1, 1}), sc = f32({3}, {1, 2, 3}), bias = f32({3}, {0.5f, 0, -1});
  const float k = 1.2247449f;  // 1 / sqrt(2/3)
  for (auto f : {&layer_norm, &ref::layer_norm}) {
    expect_f32(f(x, ones, nullptr, -1, 0.0f), {2, 3}, {-k, 0, k, kNaN, kNaN, kNaN}, 1e-6f);
    expect_f32(f(x, sc, &bias, 1, 1e-5f), {2, 3}, {0.5f - k, 0, 3 * k - 1, 0.5f, 0, -1}, 1e-4f);
    // axis 0 over (2, 2): all four values; a scale of shape (2,) broadcasts to (2, 2).
    expect_f32(f(f32({2, 2}, {1, 2, 3, 4}), f32({2}, {1, 2}), nullptr, 0, 0.0f), {2, 2},
               {-1.3416408f, -0.4472136f * 2, 0.4472136f, 1.3416408f * 2}, 1e-6f);
    expect_invalid(
        [&] {
          f(x, f32({2}, {1, 1}), nullptr, -1, 1e-5f);
        },
        {"LayerNormalization", "Scale", "(2,)", "(3,)"});
    expect_invalid([&] { f(x, ones, nullptr, 2, 1e-5f); }, {"LayerNormalization", "axis 2"});
  }
  // ONNX's InstanceNormalization example.
  const Tensor xi = f32({1, 2, 1, 3}, {-1, 0, 1, 2, 3, 4});
  for (auto f : {&instance_norm, &ref::instance_norm}) {
    expect_f32(f(xi, f32({2}, {1, 1.5f}), f32({2}, {0, 1}), 1e-5f), {1, 2, 1, 3},
               {-1.2247357f, 0, 1.2247357f, -0.8371035f, 1, 2.8371035f}, 1e-5f);
    expect_invalid(
        [&] {
          f(xi, f32({1}, {1}), f32({2}, {0, 1}), 1e-5f);
        },
        {"InstanceNormalization", "scale", "[C]"});
  }
}

}  // namespace
}  // namespace dynaprec
