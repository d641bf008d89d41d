// Data movement, pooling and Resize (include/dynaprec/ops.h) against hand-computed values (ONNX's
// documented examples where there is one), edge cases and errors, through the public functions
// and the reference alike.
#include <gtest/gtest.h>

#include <limits>

#include "dynaprec/ops.h"
#include "kernels/ops_test_util.h"

namespace dynaprec {
namespace {

using test::expect_f32;
using test::expect_invalid;
using test::expect_values;
using test::f32;
using test::i64;

constexpr float kNaN = std::numeric_limits<float>::quiet_NaN();
constexpr int64_t kI64Max = std::numeric_limits<int64_t>::max();
constexpr int64_t kI64Min = std::numeric_limits<int64_t>::min();

std::vector<float> iota(int n, float from = 1) {
  std::vector<float> v;
  for (int i = 0; i < n; ++i) v.push_back(from + float(i));
  return v;
}

TEST(OpsTranspose, PermsRanksAndDtypes) {
  const Tensor x = f32({2, 3}, iota(6));
  const Tensor x3 = test::random_f32({2, 3, 4}, 1);
  std::vector<float> want3;
  for (int k = 0; k < 4; ++k)
    for (int j = 0; j < 3; ++j)
      for (int i = 0; i < 2; ++i) want3.push_back(x3.data_as<float>()[i * 12 + j * 4 + k]);
  // Rank 6: y[a, b, c, d, e, f] = x[f, d, b, a, c, e] for perm {3, 2, 4, 1, 5, 0}.
  const Shape s6 = {2, 1, 3, 2, 2, 3};
  const Tensor x6 = test::random_f32(s6, 2);
  const Tensor y6 = transpose(x6, {3, 2, 4, 1, 5, 0});
  for (auto f : {&transpose, &ref::transpose}) {
    expect_f32(f(x, {1, 0}), {3, 2}, {1, 4, 2, 5, 3, 6});
    expect_f32(f(x3, {}), {4, 3, 2}, want3);
    expect_f32(f(test::strided_copy(x3), {}), {4, 3, 2}, want3);
    expect_f32(f(test::scalar(5), {}), {}, {5});
    expect_values<int64_t>(f(i64({2, 2}, {1, 2, 3, 4}), {1, 0}), DType::kI64, {2, 2}, {1, 3, 2, 4});
    expect_values<uint8_t>(f(test::boolean({1, 2}, {1, 0}), {1, 0}), DType::kBool, {2, 1}, {1, 0});
    expect_invalid([&] { f(x, {0, 0}); }, {"Transpose", "perm [0, 0]", "not a permutation"});
    expect_invalid([&] { f(x, {0, 1, 2}); }, {"Transpose", "(2, 3)"});
  }
  ASSERT_EQ(y6.shape(), (Shape{2, 3, 2, 1, 3, 2}));
  const Shape ys = contiguous_strides(y6.shape()), xs = contiguous_strides(s6);
  for (int64_t a = 0; a < 2; ++a)
    for (int64_t b = 0; b < 3; ++b)
      for (int64_t c = 0; c < 2; ++c)
        for (int64_t d = 0; d < 1; ++d)
          for (int64_t e = 0; e < 3; ++e)
            for (int64_t f = 0; f < 2; ++f)
              ASSERT_EQ(y6.data_as<float>()[a * ys[0] + b * ys[1] + c * ys[2] + d * ys[3] +
                                            e * ys[4] + f * ys[5]],
                        x6.data_as<float>()[f * xs[0] + d * xs[1] + b * xs[2] + a * xs[3] +
                                            c * xs[4] + e * xs[5]]);
}

TEST(OpsShape, ReshapeFlattenSqueezeUnsqueeze) {
  const Tensor x = f32({2, 3, 4}, iota(24));
  for (auto f : {&reshape, &ref::reshape}) {
    expect_f32(f(x, {4, 0, -1}, false), {4, 3, 2}, iota(24));  // 0 copies dim 1 (3)
    expect_f32(f(x, {-1}, false), {24}, iota(24));
    expect_f32(f(test::strided_copy(x), {6, 4}, false), {6, 4}, iota(24));
    expect_f32(f(f32({0, 3}, {}), {3, 0}, true), {3, 0}, {});
    expect_f32(f(f32({0, 3}, {}), {0, 3}, false), {0, 3}, {});
    expect_f32(f(test::scalar(2), {1, 1}, false), {1, 1}, {2});
    expect_invalid([&] { f(x, {-1, -1}, false); }, {"Reshape", "more than one -1"});
    expect_invalid([&] { f(x, {5, -1}, false); }, {"Reshape", "cannot infer", "24 elements"});
    expect_invalid([&] { f(x, {2, 3, 5}, false); }, {"Reshape", "(2, 3, 4)", "30 elements"});
    expect_invalid([&] { f(x, {0, 0, 0, 0}, false); }, {"Reshape", "copies dim 3"});
    expect_invalid([&] { f(f32({0, 3}, {}), {0, -1}, true); }, {"Reshape", "-1 and 0"});
  }
  for (auto f : {&flatten, &ref::flatten}) {
    expect_f32(f(x, 0), {1, 24}, iota(24));
    expect_f32(f(x, 2), {6, 4}, iota(24));
    expect_f32(f(x, -1), {6, 4}, iota(24));
    expect_f32(f(x, 3), {24, 1}, iota(24));
    expect_invalid([&] { f(x, 4); }, {"Flatten", "axis 4", "[-3, 3]"});
  }
  const Tensor s = f32({1, 3, 1, 2}, iota(6));
  for (auto f : {&squeeze, &ref::squeeze}) {
    expect_f32(f(s, {}), {3, 2}, iota(6));
    expect_f32(f(s, {0}), {3, 1, 2}, iota(6));
    expect_f32(f(s, {-2, 0}), {3, 2}, iota(6));
    expect_invalid([&] { f(s, {1}); }, {"Squeeze", "axis 1", "size 3"});
    expect_invalid([&] { f(s, {0, -4}); }, {"Squeeze", "repeated"});
  }
  for (auto f : {&unsqueeze, &ref::unsqueeze}) {
    expect_f32(f(f32({3, 4}, iota(12)), {0, 3}), {1, 3, 4, 1}, iota(12));
    expect_f32(f(f32({3, 4, 5}, iota(60)), {2, 0}), {1, 3, 1, 4, 5}, iota(60));
    expect_f32(f(f32({3}, iota(3)), {-1}), {3, 1}, iota(3));
    expect_f32(f(test::scalar(7), {0}), {1}, {7});
    expect_invalid([&] { f(f32({3}, iota(3)), {0, 0}); }, {"Unsqueeze", "repeated"});
    expect_invalid([&] { f(f32({3}, iota(3)), {2}); }, {"Unsqueeze", "axis 2"});
  }
}

TEST(OpsShape, ShapeOfAndIntValues) {
  const Tensor x = f32({2, 3, 4}, iota(24));
  expect_values<int64_t>(shape_of(x), DType::kI64, {3}, {2, 3, 4});
  expect_values<int64_t>(shape_of(x, 1), DType::kI64, {2}, {3, 4});
  expect_values<int64_t>(shape_of(x, 0, -1), DType::kI64, {2}, {2, 3});
  expect_values<int64_t>(shape_of(x, -1), DType::kI64, {1}, {4});
  expect_values<int64_t>(shape_of(x, 5), DType::kI64, {0}, {});
  EXPECT_EQ(int_values(test::i32({2, 1}, {-3, 9})), (std::vector<int64_t>{-3, 9}));
  EXPECT_EQ(int_values(int64_tensor({5, 6})), (std::vector<int64_t>{5, 6}));
  expect_invalid([&] { int_values(x); }, {"int32 or int64", "float32"});
  // Shape arithmetic as models do it: Gather a dim, Concat with a constant, Reshape by it.
  const Tensor dim0 = gather(shape_of(x), i64({1}, {0}), 0);
  const Tensor target = concat({dim0, int64_tensor({-1})}, 0);
  expect_values<int64_t>(target, DType::kI64, {2}, {2, -1});
  expect_f32(reshape(x, int_values(target)), {2, 12}, iota(24));
}

TEST(OpsConcat, AxesDtypesAndErrors) {
  const Tensor a = f32({2, 2}, {1, 2, 3, 4}), b = f32({2, 2}, {5, 6, 7, 8});
  for (auto f : {&concat, &ref::concat}) {
    expect_f32(f({a, b}, 0), {4, 2}, iota(8));
    expect_f32(f({a, b}, 1), {2, 4}, {1, 2, 5, 6, 3, 4, 7, 8});
    expect_f32(f({a, test::strided_copy(b), f32({2, 0}, {})}, -1), {2, 4},
               {1, 2, 5, 6, 3, 4, 7, 8});
    expect_f32(f({f32({1, 3}, {9, 9, 9}), f32({2, 3}, iota(6))}, 0), {3, 3},
               {9, 9, 9, 1, 2, 3, 4, 5, 6});
    expect_values<int64_t>(f({i64({2}, {1, 2}), i64({0}, {}), i64({1}, {3})}, 0), DType::kI64, {3},
                           {1, 2, 3});
    expect_invalid([&] { f({a, f32({2, 3}, iota(6))}, 0); }, {"Concat", "inputs[1]", "(2, 3)"});
    expect_invalid([&] { f({a, i64({2, 2}, {1, 2, 3, 4})}, 0); }, {"Concat", "int64"});
    expect_invalid([&] { f({a, b}, 2); }, {"Concat", "axis 2"});
    expect_invalid([&] { f({}, 0); }, {"Concat", "at least one"});
  }
}

TEST(OpsSlice, OnnxRulesNegativeStepsAndClamping) {
  const Tensor v = f32({10}, iota(10, 0));  // 0..9
  const Tensor m = f32({3, 4}, iota(12, 0));
  for (auto f : {&slice, &ref::slice}) {
    expect_f32(f(v, {2}, {7}, {}, {}), {5}, {2, 3, 4, 5, 6});
    expect_f32(f(v, {1}, {1000}, {}, {}), {9}, iota(9, 1));  // end clamped to 10
    expect_f32(f(v, {-1000}, {3}, {}, {}), {3}, {0, 1, 2});  // start clamped to 0
    expect_f32(f(v, {-3}, {kI64Max}, {0}, {}), {3}, {7, 8, 9});
    expect_f32(f(v, {8}, {2}, {0}, {-2}), {3}, {8, 6, 4});
    expect_f32(f(v, {-1}, {-1000}, {0}, {-1}), {10}, {9, 8, 7, 6, 5, 4, 3, 2, 1, 0});
    expect_f32(f(v, {100}, {kI64Min}, {0}, {-4}), {3}, {9, 5, 1});  // start clamped to 9
    expect_f32(f(v, {5}, {2}, {}, {}), {0}, {});                    // empty
    expect_f32(f(v, {2}, {9}, {}, {kI64Max}), {1}, {2});
    expect_f32(f(v, {9}, {0}, {}, {kI64Min}), {1}, {9});
    // ONNX's slice_neg_steps pattern on (3, 4): starts clamp to dim - 1, ends to -1:
    // rows 3 -> 2 down to 1 (end 0), cols 4 -> 3 then 0 (end -5 -> -1), step -3.
    expect_f32(f(m, {3, 4}, {0, -5}, {0, 1}, {-1, -3}), {2, 2}, {11, 8, 7, 4});
    expect_f32(f(m, {3, 4}, {0, 0}, {0, 1}, {-1, -3}), {2, 1}, {11, 7});
    expect_f32(f(m, {1}, {1000}, {-1}, {}), {3, 3}, {1, 2, 3, 5, 6, 7, 9, 10, 11});
    expect_f32(f(test::strided_copy(m), {0, 1}, {2, 3}, {}, {}), {2, 2}, {1, 2, 5, 6});
    expect_values<int64_t>(f(i64({4}, {4, 3, 2, 1}), {1}, {-1}, {}, {}), DType::kI64, {2}, {3, 2});
    expect_invalid([&] { f(v, {0}, {5}, {}, {0}); }, {"Slice", "steps [0]", "0"});
    expect_invalid([&] { f(m, {0, 0}, {1, 1}, {1, -1}, {}); }, {"Slice", "repeated"});
    expect_invalid([&] { f(m, {0, 0}, {1}, {}, {}); }, {"Slice", "same length"});
    expect_invalid([&] { f(m, {0}, {1}, {2}, {}); }, {"Slice", "axis 2"});
  }
}

TEST(OpsGather, OnnxExamples) {
  const Tensor d0 = f32({3, 2}, {1.0f, 1.2f, 2.3f, 3.4f, 4.5f, 5.7f});
  const Tensor d1 = f32({3, 3}, {1.0f, 1.2f, 1.9f, 2.3f, 3.4f, 3.9f, 4.5f, 5.7f, 5.9f});
  for (auto f : {&gather, &ref::gather}) {
    expect_f32(f(d0, i64({2, 2}, {0, 1, 1, 2}), 0), {2, 2, 2},
               {1.0f, 1.2f, 2.3f, 3.4f, 2.3f, 3.4f, 4.5f, 5.7f});
    expect_f32(f(d1, i64({1, 2}, {0, 2}), 1), {3, 1, 2}, {1.0f, 1.9f, 2.3f, 3.9f, 4.5f, 5.9f});
    expect_f32(f(d0, i64({}, {-1}), 0), {2}, {4.5f, 5.7f});  // scalar index drops the axis
    expect_f32(f(d0, test::i32({2}, {1, -2}), -1), {3, 2}, {1.2f, 1.0f, 3.4f, 2.3f, 5.7f, 4.5f});
    expect_f32(f(d0, i64({0}, {}), 0), {0, 2}, {});
    expect_invalid([&] { f(d0, i64({1}, {3}), 0); }, {"Gather", "index 3", "[-3, 2]"});
    expect_invalid([&] { f(d0, f32({1}, {0}), 0); }, {"Gather", "int32 or int64", "float32"});
    expect_invalid([&] { f(test::scalar(1), i64({1}, {0}), 0); }, {"Gather", "axis 0"});
  }
}

TEST(OpsPad, ModesAndCropping) {
  // ONNX's Pad examples: x (3, 2), pads [0, 2, 0, 0].
  const Tensor x = f32({3, 2}, {1.0f, 1.2f, 2.3f, 3.4f, 4.5f, 5.7f});
  const std::vector<int64_t> p = {0, 2, 0, 0};
  for (auto f : {&pad, &ref::pad}) {
    expect_f32(f(x, p, PadMode::kConstant, 0.0), {3, 4},
               {0, 0, 1.0f, 1.2f, 0, 0, 2.3f, 3.4f, 0, 0, 4.5f, 5.7f});
    expect_f32(f(x, p, PadMode::kReflect, 0.0), {3, 4},
               {1.0f, 1.2f, 1.0f, 1.2f, 2.3f, 3.4f, 2.3f, 3.4f, 4.5f, 5.7f, 4.5f, 5.7f});
    expect_f32(f(x, p, PadMode::kEdge, 0.0), {3, 4},
               {1.0f, 1.0f, 1.0f, 1.2f, 2.3f, 2.3f, 2.3f, 3.4f, 4.5f, 4.5f, 4.5f, 5.7f});
    // Opset 19's wrap example: pads [2, 1, 1, 1].
    const std::vector<float> r0 = {3.4f, 2.3f, 3.4f, 2.3f}, r1 = {5.7f, 4.5f, 5.7f, 4.5f},
                             r2 = {1.2f, 1.0f, 1.2f, 1.0f};
    std::vector<float> want;
    for (const auto* r : {&r0, &r1, &r2, &r0, &r1, &r2})
      want.insert(want.end(), r->begin(), r->end());
    expect_f32(f(x, {2, 1, 1, 1}, PadMode::kWrap, 0.0), {6, 4}, want);
    const Tensor v = f32({5}, iota(5));
    expect_f32(f(f32({3}, iota(3)), {2, 2}, PadMode::kReflect, 0.0), {7}, {3, 2, 1, 2, 3, 2, 1});
    expect_f32(f(v, {-1, 2}, PadMode::kConstant, 9.0), {6}, {2, 3, 4, 5, 9, 9});
    expect_f32(f(v, {-1, 2}, PadMode::kReflect, 0.0), {6}, {2, 3, 4, 5, 4, 3});
    expect_f32(f(v, {-2, -3}, PadMode::kEdge, 0.0), {0}, {});
    expect_f32(f(test::strided_copy(x), {1, 0, 0, 0}, PadMode::kConstant, -1.0), {4, 2},
               {-1, -1, 1.0f, 1.2f, 2.3f, 3.4f, 4.5f, 5.7f});
    expect_f32(f(f32({0}, {}), {1, 1}, PadMode::kConstant, 2.0), {2}, {2, 2});
    expect_values<int64_t>(f(i64({2}, {1, 2}), {1, 0}, PadMode::kConstant, 7.0), DType::kI64, {3},
                           {7, 1, 2});
    // Zero fill also for dtypes Cast does not take (fp8: bytes).
    expect_values<uint8_t>(
        f(test::make<uint8_t>({2}, DType::kF8E4M3, {0x38, 0xB8}), {1, 1}, PadMode::kConstant, 0.0),
        DType::kF8E4M3, {4}, {0, 0x38, 0xB8, 0});
    // Reflect pads beyond the dim keep mirroring (numpy's np.pad, the ONNX reference); a dim of
    // one value reflects to itself.
    expect_f32(f(f32({3}, iota(3)), {5, 0}, PadMode::kReflect, 0.0), {8}, {2, 1, 2, 3, 2, 1, 2, 3});
    expect_f32(f(f32({1}, {5}), {2, 1}, PadMode::kReflect, 0.0), {4}, {5, 5, 5, 5});
    expect_f32(f(f32({2}, {1, 2}), {3, 3}, PadMode::kWrap, 0.0), {8}, {2, 1, 2, 1, 2, 1, 2, 1});
  }
  expect_invalid([&] { pad(x, {0, 1}, PadMode::kConstant); }, {"Pad", "2 values per dim"});
  expect_invalid([&] { pad(x, {-2, 0, -2, 0}, PadMode::kConstant); }, {"Pad", "crop more"});
  expect_invalid([&] { pad(f32({0}, {}), {1, 0}, PadMode::kEdge); }, {"Pad", "empty dim 0"});
  expect_invalid([&] { pad(f32({0}, {}), {1, 0}, PadMode::kReflect); }, {"Pad", "empty dim 0"});
}

TEST(OpsBroadcast, ExpandWhereTile) {
  const Tensor c = f32({3, 1}, {1, 2, 3});
  for (auto f : {&expand, &ref::expand}) {
    expect_f32(f(c, {2, 1, 6}), {2, 3, 6}, [] {
      std::vector<float> w;
      for (int i = 0; i < 2; ++i)
        for (float v : {1.0f, 2.0f, 3.0f})
          for (int k = 0; k < 6; ++k) w.push_back(v);
      return w;
    }());
    expect_f32(f(c, {3, 4}), {3, 4}, {1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3});
    expect_f32(f(c, {1, 1}), {3, 1}, {1, 2, 3});
    expect_f32(f(test::scalar(5), {2}), {2}, {5, 5});
    expect_invalid([&] { f(f32({3}, iota(3)), {2}); }, {"Expand", "(3,)", "(2,)"});
    expect_invalid([&] { f(c, {-1}); }, {"Expand", "negative"});
  }
  // ONNX's Where example, then broadcasting of all three.
  const Tensor cond = test::boolean({2, 2}, {1, 0, 1, 1});
  for (auto f : {&where, &ref::where}) {
    expect_f32(f(cond, f32({2, 2}, {1, 2, 3, 4}), f32({2, 2}, {9, 8, 7, 6})), {2, 2}, {1, 8, 3, 4});
    expect_f32(f(test::boolean({2, 1}, {1, 0}), test::scalar(-1), f32({1, 3}, {7, 8, 9})), {2, 3},
               {-1, -1, -1, 7, 8, 9});
    expect_values<int64_t>(f(test::boolean({2}, {0, 1}), i64({2}, {1, 2}), i64({1}, {0})),
                           DType::kI64, {2}, {0, 2});
    expect_invalid([&] { f(f32({1}, {1}), test::scalar(1), test::scalar(2)); },
                   {"Where", "bool", "float32"});
    expect_invalid([&] { f(cond, test::scalar(1), i64({}, {2})); }, {"Where", "same dtype"});
    expect_invalid([&] { f(cond, f32({3}, iota(3)), test::scalar(0)); },
                   {"Where", "(2, 2)", "(3,)"});
  }
  // ONNX's Tile example: [[0, 1], [2, 3]] tiled [2, 2].
  for (auto f : {&tile, &ref::tile}) {
    expect_f32(f(f32({2, 2}, {0, 1, 2, 3}), {2, 2}), {4, 4},
               {0, 1, 0, 1, 2, 3, 2, 3, 0, 1, 0, 1, 2, 3, 2, 3});
    expect_f32(f(f32({2}, {4, 5}), {0}), {0}, {});
    expect_values<int64_t>(f(i64({1, 2}, {1, 2}), {3, 1}), DType::kI64, {3, 2}, {1, 2, 1, 2, 1, 2});
    expect_invalid([&] { f(f32({2}, {4, 5}), {1, 1}); }, {"Tile", "repeats [1, 1]"});
    expect_invalid([&] { f(f32({2}, {4, 5}), {-1}); }, {"Tile", ">= 0"});
  }
}

PoolParams pool2(std::vector<int64_t> kernel, std::vector<int64_t> strides = {},
                 std::vector<int64_t> pads = {}) {
  PoolParams p;
  p.kernel = std::move(kernel);
  p.strides = std::move(strides);
  p.pads = std::move(pads);
  return p;
}

TEST(OpsPool, MaxPool) {
  const Tensor x = f32({1, 1, 4, 4}, iota(16));
  const Tensor x5 = f32({1, 1, 5, 5}, iota(25));
  for (auto f : {&max_pool, &ref::max_pool}) {
    expect_f32(f(x, pool2({2, 2}, {2, 2})), {1, 1, 2, 2}, {6, 8, 14, 16});
    PoolParams p = pool2({3, 3}, {2, 2});  // ONNX maxpool_2d_ceil
    p.ceil_mode = true;
    expect_f32(f(x, p), {1, 1, 2, 2}, {11, 12, 15, 16});
    p = pool2({2, 2}, {1, 1});  // ONNX maxpool_2d_dilations
    p.dilations = {2, 2};
    expect_f32(f(x, p), {1, 1, 2, 2}, {11, 12, 15, 16});
    // Pads 2 with a 3x3 kernel on 5x5: the max sits at (min(i, 4), min(j, 4)).
    std::vector<float> want;
    for (int i = 0; i < 7; ++i)
      for (int j = 0; j < 7; ++j) want.push_back(float(5 * std::min(i, 4) + std::min(j, 4) + 1));
    expect_f32(f(x5, pool2({3, 3}, {}, {2, 2, 2, 2})), {1, 1, 7, 7}, want);
    // ceil_mode drops a window that would start in the end padding: 3 values, kernel 2,
    // stride 2, pads 1/1 give 2 outputs, not ceil(3/2) + 1 = 3.
    p = pool2({2}, {2}, {1, 1});
    p.ceil_mode = true;
    expect_f32(f(f32({1, 1, 3}, {5, 7, 6}), p), {1, 1, 2}, {5, 7});
    p.pads = {};  // 5 values: the last window hangs over the end
    expect_f32(f(f32({1, 1, 5}, iota(5)), p), {1, 1, 3}, {2, 4, 5});
    p = pool2({2});
    p.auto_pad = AutoPad::kSameUpper;
    expect_f32(f(f32({1, 1, 5}, iota(5)), p), {1, 1, 5}, {2, 3, 4, 5, 5});
    p.auto_pad = AutoPad::kSameLower;
    expect_f32(f(f32({1, 1, 5}, iota(5)), p), {1, 1, 5}, {1, 2, 3, 4, 5});
    p.auto_pad = AutoPad::kValid;
    expect_f32(f(f32({1, 1, 5}, iota(5)), p), {1, 1, 4}, {2, 3, 4, 5});
    // NaN inputs are skipped (onnxruntime and the ONNX reference); 3-D; two channels.
    expect_f32(f(f32({1, 1, 4}, {kNaN, 1, kNaN, kNaN}), pool2({2}, {2})), {1, 1, 2}, {1, kNaN});
    expect_f32(f(f32({1, 1, 2, 2, 2}, iota(8)), pool2({2, 2, 2})), {1, 1, 1, 1, 1}, {8});
    expect_f32(f(f32({1, 2, 1, 2}, {1, 2, 4, 3}), pool2({1, 2})), {1, 2, 1, 1}, {2, 4});
    expect_f32(f(f32({0, 1, 2}, {}), pool2({2})), {0, 1, 1}, {});
  }
}

TEST(OpsPool, AveragePoolAndErrors) {
  const Tensor x = f32({1, 1, 4, 4}, iota(16));
  for (auto f : {&average_pool, &ref::average_pool}) {
    PoolParams p = pool2({3, 3}, {2, 2});  // ONNX averagepool_2d_ceil
    p.ceil_mode = true;
    expect_f32(f(x, p), {1, 1, 2, 2}, {6, 7.5f, 12, 13.5f});
    // Pads: excluded from the count by default, included with count_include_pad.
    p = pool2({3}, {1}, {1, 1});
    expect_f32(f(f32({1, 1, 4}, iota(4)), p), {1, 1, 4}, {1.5f, 2, 3, 3.5f});
    p.count_include_pad = true;
    expect_f32(f(f32({1, 1, 4}, iota(4)), p), {1, 1, 4}, {1, 2, 3, 7.0f / 3}, 1e-6f);
    // ceil_mode's overhang never counts, even with count_include_pad (as in PyTorch).
    p = pool2({2}, {2});
    p.ceil_mode = true;
    p.count_include_pad = true;
    expect_f32(f(f32({1, 1, 5}, iota(5)), p), {1, 1, 3}, {1.5f, 3.5f, 5});
    p = pool2({2, 2});
    p.dilations = {1, 2};
    expect_f32(f(x, p), {1, 1, 3, 2}, {4, 5, 8, 9, 12, 13});
  }
  EXPECT_EQ(pool_output_shape({2, 3, 10, 7}, pool2({3, 2}, {2, 2}, {1, 0, 1, 1})),
            (Shape{2, 3, 5, 4}));
  expect_invalid(
      [&] {
        max_pool(x, pool2({2, 2}, {}, {2, 0, 0, 0}));
      },
      {"MaxPool", "pads [2, 0, 0, 0]", "smaller than kernel_shape"});
  expect_invalid([&] { average_pool(x, pool2({2})); }, {"AveragePool", "kernel_shape [2]", "(2)"});
  expect_invalid([&] { max_pool(x, pool2({})); }, {"MaxPool", "kernel_shape is required"});
  expect_invalid([&] { max_pool(x, pool2({2, 2}, {0, 1})); }, {"MaxPool", "strides [0, 1]"});
  expect_invalid([&] { max_pool(f32({2, 2}, iota(4)), pool2({2})); }, {"MaxPool", "(2, 2)"});
  expect_invalid([&] { max_pool(x, pool2({5, 1})); }, {"MaxPool", "kernel extent 5", "4"});
  PoolParams p = pool2({2, 2});
  p.auto_pad = AutoPad::kSameUpper;
  p.ceil_mode = true;
  expect_invalid([&] { max_pool(x, p); }, {"MaxPool", "ceil_mode", "auto_pad"});
}

ResizeParams rp(ResizeMode mode, CoordMode coord, std::vector<float> scales,
                std::vector<int64_t> sizes = {},
                NearestMode nearest = NearestMode::kRoundPreferFloor) {
  ResizeParams p;
  p.mode = mode;
  p.coord = coord;
  p.scales = std::move(scales);
  p.sizes = std::move(sizes);
  p.nearest = nearest;
  return p;
}

TEST(OpsResize, OnnxNearestExamples) {
  const Tensor x22 = f32({1, 1, 2, 2}, {1, 2, 3, 4});
  const Tensor x24 = f32({1, 1, 2, 4}, iota(8));
  const Tensor x44 = f32({1, 1, 4, 4}, iota(16));
  const auto nearest = ResizeMode::kNearest;
  for (auto f : {&resize, &ref::resize}) {
    expect_f32(f(x22, rp(nearest, CoordMode::kHalfPixel, {1, 1, 2, 3})), {1, 1, 4, 6},
               {1, 1, 1, 2, 2, 2, 1, 1, 1, 2, 2, 2, 3, 3, 3, 4, 4, 4, 3, 3, 3, 4, 4, 4});
    expect_f32(f(x24, rp(nearest, CoordMode::kHalfPixel, {1, 1, 0.6f, 0.6f})), {1, 1, 1, 2},
               {1, 3});
    expect_f32(f(x24, rp(nearest, CoordMode::kHalfPixel, {}, {1, 1, 1, 3})), {1, 1, 1, 3},
               {1, 2, 4});
    // sizes 8x8 from 4x4 with three coordinate/rounding pairs: rows and columns pick the same
    // source indices, listed per case.
    const std::pair<ResizeParams, std::vector<int>> cases[] = {
        {rp(nearest, CoordMode::kAsymmetric, {}, {1, 1, 8, 8}, NearestMode::kRoundPreferCeil),
         {0, 1, 1, 2, 2, 3, 3, 3}},
        {rp(nearest, CoordMode::kAlignCorners, {}, {1, 1, 8, 8}, NearestMode::kFloor),
         {0, 0, 0, 1, 1, 2, 2, 3}},
        {rp(nearest, CoordMode::kHalfPixel, {}, {1, 1, 8, 8}, NearestMode::kCeil),
         {0, 1, 1, 2, 2, 3, 3, 3}},
        {rp(nearest, CoordMode::kHalfPixel, {}, {1, 1, 8, 8}, NearestMode::kRoundPreferFloor),
         {0, 0, 1, 1, 2, 2, 3, 3}},
    };
    for (const auto& [p, idx] : cases) {
      std::vector<float> want;
      for (int i : idx)
        for (int j : idx) want.push_back(float(i * 4 + j + 1));
      expect_f32(f(x44, p), {1, 1, 8, 8}, want);
    }
  }
}

TEST(OpsResize, OnnxLinearExamplesAndCoordinateModes) {
  const Tensor x22 = f32({1, 1, 2, 2}, {1, 2, 3, 4});
  const Tensor x24 = f32({1, 1, 2, 4}, iota(8));
  const auto linear = ResizeMode::kLinear;
  const float t = 1.0f / 3;
  for (auto f : {&resize, &ref::resize}) {
    expect_f32(f(x22, rp(linear, CoordMode::kHalfPixel, {1, 1, 2, 2})), {1, 1, 4, 4},
               {1, 1.25f, 1.75f, 2, 1.5f, 1.75f, 2.25f, 2.5f, 2.5f, 2.75f, 3.25f, 3.5f, 3, 3.25f,
                3.75f, 4});
    expect_f32(f(x22, rp(linear, CoordMode::kAlignCorners, {1, 1, 2, 2})), {1, 1, 4, 4},
               {1, 1 + t, 1 + 2 * t, 2, 1 + 2 * t, 2, 2 + t, 2 + 2 * t, 2 + t, 2 + 2 * t, 3, 3 + t,
                3, 3 + t, 3 + 2 * t, 4},
               1e-6f);
    expect_f32(f(x24, rp(linear, CoordMode::kHalfPixel, {1, 1, 0.6f, 0.6f})), {1, 1, 1, 2},
               {2.6666665f, 4.3333331f}, 1e-6f);
    // align_corners with scales that do not divide: the ONNX reference's 3.142857.
    expect_f32(f(x24, rp(linear, CoordMode::kAlignCorners, {1, 1, 0.6f, 0.6f})), {1, 1, 1, 2},
               {1, 3.142857f}, 1e-5f);
    expect_f32(
        f(f32({1, 1, 1, 4}, iota(4)), rp(linear, CoordMode::kHalfPixelSymmetric, {1, 1, 1, 0.6f})),
        {1, 1, 1, 2}, {1.6666666f, 3.3333333f}, 1e-5f);
    expect_f32(f(x22, rp(linear, CoordMode::kHalfPixelSymmetric, {1, 1, 2.3f, 2.94f})),
               {1, 1, 4, 5}, {1,           1.15986395f, 1.5f,        1.84013605f, 2,
                              1.56521738f, 1.72508133f, 2.06521738f, 2.40535343f, 2.56521738f,
                              2.43478262f, 2.59464657f, 2.93478262f, 3.27491867f, 3.43478262f,
                              3,           3.15986395f, 3.5f,        3.84013605f, 4},
               1e-5f);
    // An output length of 1: pytorch_half_pixel samples 0, half_pixel the centre.
    expect_f32(f(f32({1, 4}, iota(4)), rp(linear, CoordMode::kPytorchHalfPixel, {}, {1, 1})),
               {1, 1}, {1});
    expect_f32(f(f32({1, 4}, iota(4)), rp(linear, CoordMode::kHalfPixel, {}, {1, 1})), {1, 1},
               {2.5f});
    expect_f32(f(f32({3}, {0, 10, 20}), rp(linear, CoordMode::kAsymmetric, {2})), {6},
               {0, 5, 10, 15, 20, 20});
    expect_f32(f(test::strided_copy(x22), rp(linear, CoordMode::kHalfPixel, {1, 1, 1, 1})),
               {1, 1, 2, 2}, {1, 2, 3, 4});
    expect_f32(f(x22, rp(linear, CoordMode::kHalfPixel, {1, 1, 0.4f, 1})), {1, 1, 0, 2}, {});
    expect_invalid(
        [&] {
          f(x22, rp(linear, CoordMode::kHalfPixel, {1, 1, 2, 2}, {1, 1, 4, 4}));
        },
        {"Resize", "exactly one"});
    expect_invalid(
        [&] {
          f(x22, rp(linear, CoordMode::kHalfPixel, {2, 2}));
        },
        {"Resize", "scales", "one value per dim (4)"});
    expect_invalid(
        [&] {
          f(x22, rp(linear, CoordMode::kHalfPixel, {1, 1, 0, 2}));
        },
        {"Resize", "positive"});
    expect_invalid([&] { f(i64({1}, {1}), rp(linear, CoordMode::kHalfPixel, {2})); },
                   {"Resize", "float32"});
  }
}

}  // namespace
}  // namespace dynaprec
