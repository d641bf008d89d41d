// The op table (src/exec/op_table.h): opset selection, attribute defaults, input validation with
// messages that name the node, and op results against hand-computed values.
#include <gtest/gtest.h>

#include <cmath>
#include <initializer_list>
#include <string>
#include <vector>

#include "dynaprec/error.h"
#include "exec/op_table.h"
#include "kernels/ops_test_util.h"

namespace dynaprec::exec {
namespace {

using test::expect_f32;
using test::expect_invalid;
using test::expect_values;
using test::f32;
using test::i64;

Node node(const std::string& op, int64_t opset, size_t n_inputs = 1, size_t n_outputs = 1) {
  Node n;
  n.op = op;
  n.name = "my_" + op;
  n.opset = opset;
  for (size_t i = 0; i < n_inputs; ++i) n.inputs.push_back("in" + std::to_string(i));
  for (size_t i = 0; i < n_outputs; ++i) n.outputs.push_back("out" + std::to_string(i));
  return n;
}

/// Runs `n` through find_op; nullptr entries in `in` are omitted optional inputs.
std::vector<Tensor> run(const Node& n, std::initializer_list<const Tensor*> in) {
  OpFn fn = find_op(n.domain, n.op, n.opset);
  if (!fn) throw Error(ErrorKind::kUnsupported, "no op " + n.op);
  std::vector<const Tensor*> v(in);
  return fn(n, v);
}

Tensor run1(const Node& n, std::initializer_list<const Tensor*> in) { return run(n, in).at(0); }

std::vector<float> iota(int n, float from = 0) {
  std::vector<float> v;
  for (int i = 0; i < n; ++i) v.push_back(from + static_cast<float>(i));
  return v;
}

// ---- Lookup and opset selection -------------------------------------------------------------

TEST(OpTableLookup, DomainsOpsetsAndBuiltins) {
  EXPECT_NE(find_op("", "Add", 13), nullptr);
  EXPECT_NE(find_op("ai.onnx", "Add", 13), nullptr);
  EXPECT_EQ(find_op("com.microsoft", "Add", 13), nullptr);
  EXPECT_EQ(find_op("", "NoSuchOp", 13), nullptr);
  EXPECT_EQ(find_op("", "Add", 6), nullptr);  // opsets 7..18 only
  EXPECT_EQ(find_op("", "Add", 19), nullptr);
  EXPECT_EQ(find_op("", "HardSwish", 13), nullptr);  // introduced in 14
  EXPECT_NE(find_op("", "HardSwish", 14), nullptr);
  EXPECT_EQ(find_op("", "LayerNormalization", 16), nullptr);
  EXPECT_NE(find_op("", "LayerNormalization", 17), nullptr);
  EXPECT_NE(find_op("", "Upsample", 9), nullptr);
  EXPECT_EQ(find_op("", "Upsample", 10), nullptr);  // deprecated by Resize
  // Different implementations where semantics changed.
  EXPECT_NE(find_op("", "Softmax", 11), find_op("", "Softmax", 13));
  EXPECT_EQ(find_op("", "Softmax", 13), find_op("", "Softmax", 18));
  EXPECT_NE(find_op("", "Clip", 10), find_op("", "Clip", 11));
  EXPECT_NE(find_op("", "ReduceSum", 12), find_op("", "ReduceSum", 13));
  EXPECT_EQ(find_op("", "ReduceMean", 13), find_op("", "ReduceMean", 17));
  EXPECT_NE(find_op("", "ReduceMean", 17), find_op("", "ReduceMean", 18));
  EXPECT_TRUE(executor_builtin("If"));
  EXPECT_FALSE(executor_builtin("Add"));
  EXPECT_EQ(find_op("", "If", 13), nullptr);
  EXPECT_TRUE(op_supported("", "If", 13));
  EXPECT_TRUE(op_supported("ai.onnx", "Conv", 11));
  EXPECT_FALSE(op_supported("custom", "If", 13));
}

TEST(OpTableOpset, SoftmaxLegacyFlattensButAxisDoesNot) {
  // x [1, 2, 2]: opset 11 (axis 1) normalizes over all 4 values; opset 13 (axis -1) over pairs.
  const Tensor x = f32({1, 2, 2}, {0, 0, 0, 0});
  Node n11 = node("Softmax", 11), n13 = node("Softmax", 13);
  expect_f32(run1(n11, {&x}), {1, 2, 2}, {0.25f, 0.25f, 0.25f, 0.25f}, 1e-6f);
  expect_f32(run1(n13, {&x}), {1, 2, 2}, {0.5f, 0.5f, 0.5f, 0.5f}, 1e-6f);
  // Same explicit axis 1 still differs: legacy flattens dims >= 1, 13 uses dim 1 alone.
  n11.attrs["axis"] = int64_t{1};
  n13.attrs["axis"] = int64_t{1};
  const Tensor y = f32({1, 2, 2}, {0, 0, std::log(3.0f), 0});
  expect_f32(run1(n11, {&y}), {1, 2, 2}, {1 / 6.f, 1 / 6.f, 3 / 6.f, 1 / 6.f}, 1e-6f);
  expect_f32(run1(n13, {&y}), {1, 2, 2}, {0.25f, 0.5f, 0.75f, 0.5f}, 1e-6f);
}

TEST(OpTableOpset, LogSoftmaxLegacyAndAxis) {
  const Tensor x = f32({1, 2, 2}, {0, 0, 0, 0});
  expect_f32(run1(node("LogSoftmax", 12), {&x}), {1, 2, 2}, std::vector<float>(4, std::log(0.25f)),
             1e-6f);
  expect_f32(run1(node("LogSoftmax", 13), {&x}), {1, 2, 2}, std::vector<float>(4, std::log(0.5f)),
             1e-6f);
}

TEST(OpTableOpset, ClipAttributesBeforeElevenInputsAfter) {
  const Tensor x = f32({4}, {-2, -0.5f, 0.5f, 2});
  Node n6 = node("Clip", 10);
  // Defaults: no bound.
  expect_f32(run1(n6, {&x}), {4}, {-2, -0.5f, 0.5f, 2});
  n6.attrs["min"] = -1.0f;
  n6.attrs["max"] = 1.0f;
  expect_f32(run1(n6, {&x}), {4}, {-1, -0.5f, 0.5f, 1});
  // Opset 11 ignores attributes and reads optional inputs; min alone, max alone, both.
  Node n11 = node("Clip", 11, 3);
  n11.attrs = n6.attrs;
  expect_f32(run1(n11, {&x}), {4}, {-2, -0.5f, 0.5f, 2});
  const Tensor lo = test::scalar(0.0f), hi = test::scalar(1.5f);
  expect_f32(run1(n11, {&x, &lo}), {4}, {0, 0, 0.5f, 2});
  expect_f32(run1(n11, {&x, nullptr, &hi}), {4}, {-2, -0.5f, 0.5f, 1.5f});
  expect_f32(run1(n11, {&x, &lo, &hi}), {4}, {0, 0, 0.5f, 1.5f});
  // Opset 10 refuses a second input.
  expect_invalid([&] { run(n6, {&x, &lo}); }, {"Clip node 'my_Clip'", "at most 1"});
}

TEST(OpTableOpset, ClipInt8) {
  const Tensor x = test::make<int8_t>({3}, DType::kI8, {-100, 5, 100});
  const Tensor lo = test::make<int8_t>({}, DType::kI8, {-10});
  Node n = node("Clip", 13, 2);
  expect_values<int8_t>(run1(n, {&x, &lo}), DType::kI8, {3}, {-10, 5, 100});
}

TEST(OpTableOpset, SqueezeAttributeVersusInput) {
  const Tensor x = f32({1, 3, 1}, {1, 2, 3});
  Node n11 = node("Squeeze", 11);
  EXPECT_EQ(run1(n11, {&x}).shape(), (Shape{3}));  // no axes: every 1
  n11.attrs["axes"] = std::vector<int64_t>{0};
  EXPECT_EQ(run1(n11, {&x}).shape(), (Shape{3, 1}));
  Node n13 = node("Squeeze", 13, 2);
  n13.attrs["axes"] = std::vector<int64_t>{0};  // ignored from 13
  EXPECT_EQ(run1(n13, {&x}).shape(), (Shape{3}));
  const Tensor axes = i64({1}, {-1});
  EXPECT_EQ(run1(n13, {&x, &axes}).shape(), (Shape{1, 3}));
  // Unsqueeze: attribute required before 13, input from 13.
  Node u11 = node("Unsqueeze", 11);
  expect_invalid([&] { run(u11, {&x}); }, {"Unsqueeze node 'my_Unsqueeze'", "axes"});
  u11.attrs["axes"] = std::vector<int64_t>{0};
  EXPECT_EQ(run1(u11, {&x}).shape(), (Shape{1, 1, 3, 1}));
  Node u13 = node("Unsqueeze", 13, 2);
  const Tensor ax = i64({2}, {0, 4});
  EXPECT_EQ(run1(u13, {&x, &ax}).shape(), (Shape{1, 1, 3, 1, 1}));
  expect_invalid([&] { run(u13, {&x}); }, {"Unsqueeze node 'my_Unsqueeze'", "required"});
}

TEST(OpTableOpset, SliceAttributesBeforeTenInputsAfter) {
  const Tensor x = f32({2, 4}, iota(8));
  Node n9 = node("Slice", 9);
  n9.attrs["starts"] = std::vector<int64_t>{1};
  n9.attrs["ends"] = std::vector<int64_t>{1000};
  n9.attrs["axes"] = std::vector<int64_t>{1};
  expect_f32(run1(n9, {&x}), {2, 3}, {1, 2, 3, 5, 6, 7});
  Node n10 = node("Slice", 10, 5);
  const Tensor starts = i64({1}, {-1}), ends = i64({1}, {-1000}), axes = i64({1}, {1}),
               steps = i64({1}, {-2});
  expect_f32(run1(n10, {&x, &starts, &ends, &axes, &steps}), {2, 2}, {3, 1, 7, 5});
  // Default axes (0..) and steps.
  const Tensor s0 = i64({1}, {1}), e0 = i64({1}, {2});
  expect_f32(run1(n10, {&x, &s0, &e0}), {1, 4}, {4, 5, 6, 7});
  // Opset 9 without starts: an error naming the node.
  Node bad = node("Slice", 9);
  expect_invalid([&] { run(bad, {&x}); }, {"Slice node 'my_Slice'", "starts"});
}

TEST(OpTableOpset, ReduceAxesAttributeOrInput) {
  const Tensor x = f32({2, 3}, iota(6));
  Node r12 = node("ReduceSum", 12);
  r12.attrs["axes"] = std::vector<int64_t>{1};
  expect_f32(run1(r12, {&x}), {2, 1}, {3, 12});
  Node r13 = node("ReduceSum", 13, 2);
  const Tensor ax = i64({1}, {0});
  expect_f32(run1(r13, {&x, &ax}), {1, 3}, {3, 5, 7});
  r13.attrs["keepdims"] = int64_t{0};
  expect_f32(run1(r13, {&x}), {}, {15});  // no axes: all
  r13.attrs["noop_with_empty_axes"] = int64_t{1};
  expect_f32(run1(r13, {&x}), {2, 3}, iota(6));
  // ReduceMean takes axes as an attribute until 17, as an input from 18.
  Node m17 = node("ReduceMean", 17);
  m17.attrs["axes"] = std::vector<int64_t>{-1};
  m17.attrs["keepdims"] = int64_t{0};
  expect_f32(run1(m17, {&x}), {2}, {1, 4});
  Node m18 = node("ReduceMean", 18, 2);
  expect_f32(run1(m18, {&x, &ax}), {1, 3}, {1.5f, 2.5f, 3.5f});
  expect_invalid([&] { run(m17, {&x, &ax}); }, {"ReduceMean node 'my_ReduceMean'", "at most 1"});
  Node l2 = node("ReduceL2", 13);
  l2.attrs["axes"] = std::vector<int64_t>{1};
  const Tensor y = f32({2, 2}, {3, 4, 6, 8});
  expect_f32(run1(l2, {&y}), {2, 1}, {5, 10}, 1e-6f);
}

TEST(OpTableOpset, SplitAttributeInputAndNumOutputs) {
  const Tensor x = f32({5}, iota(5));
  Node s11 = node("Split", 11, 1, 2);
  s11.attrs["split"] = std::vector<int64_t>{2, 3};
  auto out = run(s11, {&x});
  ASSERT_EQ(out.size(), 2u);
  expect_f32(out[0], {2}, {0, 1});
  expect_f32(out[1], {3}, {2, 3, 4});
  Node s13 = node("Split", 13, 2, 2);
  const Tensor sp = i64({2}, {4, 1});
  out = run(s13, {&x, &sp});
  expect_f32(out[0], {4}, {0, 1, 2, 3});
  expect_f32(out[1], {1}, {4});
  expect_invalid([&] { run(s13, {&x}); }, {"Split node 'my_Split'", "divisible"});
  Node s18 = node("Split", 18, 1, 3);
  s18.attrs["num_outputs"] = int64_t{3};
  out = run(s18, {&x});
  ASSERT_EQ(out.size(), 3u);
  expect_f32(out[0], {2}, {0, 1});
  expect_f32(out[1], {2}, {2, 3});
  expect_f32(out[2], {1}, {4});
}

TEST(OpTableOpset, PadAttributesVersusInputs) {
  const Tensor x = f32({3}, {1, 2, 3});
  Node p2 = node("Pad", 10);
  p2.attrs["pads"] = std::vector<int64_t>{1, 2};
  p2.attrs["value"] = 9.0f;
  expect_f32(run1(p2, {&x}), {6}, {9, 1, 2, 3, 9, 9});
  p2.attrs["mode"] = std::string("reflect");
  expect_f32(run1(p2, {&x}), {6}, {2, 1, 2, 3, 2, 1});
  Node p11 = node("Pad", 11, 3);
  p11.attrs["mode"] = std::string("edge");
  const Tensor pads = i64({2}, {2, 1}), cv = test::scalar(7.0f);
  expect_f32(run1(p11, {&x, &pads}), {6}, {1, 1, 1, 2, 3, 3});
  p11.attrs.clear();
  expect_f32(run1(p11, {&x, &pads, &cv}), {6}, {7, 7, 1, 2, 3, 7});
  Node p18 = node("Pad", 18, 4);
  const Tensor x2 = f32({1, 2}, {1, 2}), pads2 = i64({2}, {1, 0}), axes = i64({1}, {-1});
  expect_f32(run1(p18, {&x2, &pads2, nullptr, &axes}), {1, 3}, {0, 1, 2});
}

// ---- Attribute defaults ---------------------------------------------------------------------

TEST(OpTableAttrs, HelpersAndDefaults) {
  Node n = node("Foo", 13);
  n.attrs["i"] = int64_t{3};
  n.attrs["f"] = 0.5f;
  n.attrs["s"] = std::string("x");
  n.attrs["is"] = std::vector<int64_t>{1, 2};
  n.attrs["fs"] = std::vector<float>{1.5f};
  EXPECT_EQ(attr_int(n, "i", 0), 3);
  EXPECT_EQ(attr_int(n, "missing", 7), 7);
  EXPECT_EQ(attr_float(n, "f", 0), 0.5f);
  EXPECT_EQ(attr_float(n, "i", 0), 3.0f);  // an int where a float is expected is converted
  EXPECT_EQ(attr_string(n, "s", "d"), "x");
  EXPECT_EQ(attr_string(n, "missing", "d"), "d");
  EXPECT_EQ(attr_ints(n, "is"), (std::vector<int64_t>{1, 2}));
  EXPECT_EQ(attr_ints(n, "missing", {4}), (std::vector<int64_t>{4}));
  EXPECT_EQ(attr_floats(n, "fs"), (std::vector<float>{1.5f}));
  EXPECT_TRUE(has_attr(n, "i"));
  EXPECT_FALSE(has_attr(n, "missing"));
  expect_invalid([&] { attr_int(n, "s", 0); }, {"Foo node 'my_Foo'", "attribute 's'", "int"});
  expect_invalid([&] { attr_ints(n, "f"); }, {"attribute 'f'", "list of ints"});
}

TEST(OpTableAttrs, OnnxDefaults) {
  const Tensor x = f32({2}, {-1, 1});
  expect_f32(run1(node("LeakyRelu", 16), {&x}), {2}, {-0.01f, 1});
  expect_f32(run1(node("HardSigmoid", 13), {&x}), {2}, {0.3f, 0.7f}, 1e-6f);
  const Tensor m = f32({2, 3}, {1, 5, 2, 7, 0, 9});
  expect_values<int64_t>(run1(node("ArgMax", 13), {&m}), DType::kI64, {1, 3}, {1, 0, 1});
  const Tensor img = f32({1, 1, 4}, {1, 2, 3, 4});
  Node fl = node("Flatten", 13);
  EXPECT_EQ(run1(fl, {&img}).shape(), (Shape{1, 4}));  // axis 1
  Node g = node("Gemm", 13, 2);                        // alpha 1, beta 1, no transposes, C optional
  const Tensor a = f32({1, 2}, {1, 2}), b = f32({2, 2}, {1, 2, 3, 4});
  expect_f32(run1(g, {&a, &b}), {1, 2}, {7, 10});
  Node bn = node("BatchNormalization", 15, 5);  // epsilon 1e-5
  const Tensor bx = f32({1, 1, 1, 1}, {2}), one = f32({1}, {1}), zero = f32({1}, {0});
  expect_f32(run1(bn, {&bx, &one, &zero, &zero, &one}), {1, 1, 1, 1}, {2 / std::sqrt(1 + 1e-5f)},
             1e-6f);
  Node c = node("Constant", 13, 0);
  c.attrs["value_ints"] = std::vector<int64_t>{3, 4};
  expect_values<int64_t>(run1(c, {}), DType::kI64, {2}, {3, 4});
  Node cs = node("ConstantOfShape", 13);
  const Tensor shape = i64({2}, {2, 1});
  expect_f32(run1(cs, {&shape}), {2, 1}, {0, 0});  // default value: float 0
}

// ---- Bad inputs ------------------------------------------------------------------------------

TEST(OpTableErrors, BadInputsNameTheNode) {
  const Tensor x = f32({2}, {1, 2});
  const Tensor xi = i64({2}, {1, 2});
  expect_invalid([&] { run(node("Add", 14, 2), {&x}); }, {"Add node 'my_Add'", "required"});
  expect_invalid([&] { run(node("Add", 14, 2), {&x, &xi}); }, {"Add node 'my_Add'", "same dtype"});
  expect_invalid([&] { run(node("Relu", 14, 1), {&x, &x}); }, {"Relu node 'my_Relu'", "at most"});
  expect_invalid([&] { run(node("Sqrt", 13), {&xi}); }, {"Sqrt node 'my_Sqrt'", "float"});
  expect_invalid([&] { run(node("Not", 13), {&x}); }, {"Not node 'my_Not'", "bool"});
  // Errors raised inside ops.h get the node prefix too.
  const Tensor y = f32({3}, {1, 2, 3});
  expect_invalid([&] { run(node("Mul", 14, 2), {&x, &y}); }, {"Mul node 'my_Mul'", "broadcast"});
  const Tensor shape = i64({1}, {5});
  expect_invalid([&] { run(node("Reshape", 14, 2), {&x, &shape}); }, {"Reshape node 'my_Reshape'"});
  const Tensor a = f32({2, 3}, iota(6)), b = f32({2, 3}, iota(6));
  expect_invalid(
      [&] {
        run(node("MatMul", 13, 2), {&a, &b});
      },
      {"MatMul node 'my_MatMul'", "inner dims"});
  Node cast = node("Cast", 13);
  expect_invalid([&] { run(cast, {&x}); }, {"Cast node 'my_Cast'", "'to'"});
}

TEST(OpTableErrors, UnsupportedFeaturesAreKUnsupported) {
  const Tensor x = f32({1, 1, 2, 2}, {1, 2, 3, 4});
  Node r = node("Resize", 13, 3);
  r.attrs["mode"] = std::string("cubic");
  const Tensor scales = f32({4}, {1, 1, 2, 2});
  try {
    run(r, {&x, nullptr, &scales});
    ADD_FAILURE() << "cubic resize accepted";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::kUnsupported);
    EXPECT_NE(std::string(e.what()).find("Resize node 'my_Resize'"), std::string::npos);
  }
  Node mp = node("MaxPool", 12, 1, 2);
  mp.attrs["kernel_shape"] = std::vector<int64_t>{2, 2};
  EXPECT_THROW(
      try { run(mp, {&x}); } catch (const Error& e) {
        EXPECT_EQ(e.kind(), ErrorKind::kUnsupported);
        throw;
      },
      Error);
  Node bn = node("BatchNormalization", 15, 5);
  bn.attrs["training_mode"] = int64_t{1};
  const Tensor c = f32({1}, {1});
  EXPECT_THROW(
      try {
        run(bn, {&x, &c, &c, &c, &c});
      } catch (const Error& e) {
        EXPECT_EQ(e.kind(), ErrorKind::kUnsupported);
        throw;
      },
      Error);
}

// ---- Results --------------------------------------------------------------------------------

TEST(OpTableResults, ElementwiseAndTypes) {
  const Tensor a = f32({2, 1}, {1, 2}), b = f32({3}, {10, 20, 30});
  expect_f32(run1(node("Add", 14, 2), {&a, &b}), {2, 3}, {11, 21, 31, 12, 22, 32});
  const Tensor u = test::make<uint8_t>({2}, DType::kU8, {250, 3});
  const Tensor v = test::make<uint8_t>({2}, DType::kU8, {10, 4});
  expect_values<uint8_t>(run1(node("Add", 14, 2), {&u, &v}), DType::kU8, {2}, {4, 7});  // wraps
  expect_values<uint8_t>(run1(node("Div", 14, 2), {&u, &v}), DType::kU8, {2}, {25, 0});
  const Tensor p = f32({2}, {2, 3}), e = i64({2}, {3, 2});
  expect_f32(run1(node("Pow", 15, 2), {&p, &e}), {2}, {8, 9});
  const Tensor m1 = f32({2}, {1, 5}), m2 = f32({2}, {4, 2}), m3 = f32({1}, {3});
  expect_f32(run1(node("Max", 13, 3), {&m1, &m2, &m3}), {2}, {4, 5});
  expect_f32(run1(node("Min", 13, 3), {&m1, &m2, &m3}), {2}, {1, 2});
  expect_f32(run1(node("Sum", 13, 3), {&m1, &m2, &m3}), {2}, {8, 10});
  expect_f32(run1(node("Mean", 13, 2), {&m1, &m2}), {2}, {2.5f, 3.5f});
  expect_values<uint8_t>(run1(node("Less", 13, 2), {&m1, &m2}), DType::kBool, {2}, {1, 0});
  const Tensor d = test::make<double>({2}, DType::kF64, {1.5, -2});
  expect_values<double>(run1(node("Mul", 14, 2), {&d, &d}), DType::kF64, {2}, {2.25, 4});
}

TEST(OpTableResults, MatMulBatchedAndOneD) {
  // [2, 2, 3] x [3, 2] (B broadcast over the batch).
  const Tensor a = f32({2, 2, 3}, iota(12)), b = f32({3, 2}, {1, 0, 0, 1, 1, 1});
  expect_f32(run1(node("MatMul", 13, 2), {&a, &b}), {2, 2, 2}, {2, 3, 8, 9, 14, 15, 20, 21});
  // 1-D x 2-D and 2-D x 1-D.
  const Tensor v = f32({3}, {1, 2, 3});
  const Tensor m = f32({3, 2}, {1, 2, 3, 4, 5, 6});
  expect_f32(run1(node("MatMul", 13, 2), {&v, &m}), {2}, {22, 28});
  const Tensor mt = f32({2, 3}, {1, 3, 5, 2, 4, 6});
  expect_f32(run1(node("MatMul", 13, 2), {&mt, &v}), {2}, {22, 28});
  // Batch broadcast both ways: [2, 1, 1, 2] x [3, 2, 1] -> [2, 3, 1, 1].
  const Tensor x = f32({2, 1, 1, 2}, {1, 2, 3, 4}), y = f32({3, 2, 1}, {1, 1, 0, 1, 1, 0});
  expect_f32(run1(node("MatMul", 13, 2), {&x, &y}), {2, 3, 1, 1}, {3, 2, 1, 7, 4, 3});
}

TEST(OpTableResults, GemmTransposesAlphaBetaAndBias) {
  const Tensor a = f32({2, 1}, {1, 2});        // transA: [1, 2]
  const Tensor b = f32({2, 2}, {1, 2, 3, 4});  // transB: [[1, 3], [2, 4]]
  const Tensor c = f32({2}, {10, 20});
  Node g = node("Gemm", 13, 3);
  g.attrs["transA"] = int64_t{1};
  g.attrs["transB"] = int64_t{1};
  g.attrs["alpha"] = 2.0f;
  g.attrs["beta"] = 0.5f;
  // A' B' = [1*1 + 2*2, 1*3 + 2*4] = [5, 11]; 2·[5, 11] + 0.5·[10, 20] = [15, 32].
  expect_f32(run1(g, {&a, &b, &c}), {1, 2}, {15, 32});
  Node g9 = node("Gemm", 9, 3);  // C required before 11
  expect_invalid([&] { run(g9, {&a, &b}); }, {"Gemm node 'my_Gemm'", "required"});
}

TEST(OpTableResults, ConvOneAndTwoD) {
  // 2-D: 3x3 input, 2x2 ones kernel, pads 1 on the top/left only? Use SAME_UPPER instead.
  const Tensor x = f32({1, 1, 3, 3}, iota(9, 1));
  const Tensor w = f32({1, 1, 2, 2}, {1, 1, 1, 1});
  const Tensor bias = f32({1}, {100});
  Node c = node("Conv", 13, 3);
  expect_f32(run1(c, {&x, &w, &bias}), {1, 1, 2, 2}, {112, 116, 124, 128});
  c.attrs["auto_pad"] = std::string("SAME_UPPER");
  expect_f32(run1(c, {&x, &w}), {1, 1, 3, 3}, {12, 16, 9, 24, 28, 15, 15, 17, 9});
  // 1-D with stride 2 and pads.
  const Tensor x1 = f32({1, 1, 5}, {1, 2, 3, 4, 5}), w1 = f32({1, 1, 3}, {1, 0, -1});
  Node c1 = node("Conv", 13, 2);
  c1.attrs["strides"] = std::vector<int64_t>{2};
  c1.attrs["pads"] = std::vector<int64_t>{1, 1};
  expect_f32(run1(c1, {&x1, &w1}), {1, 1, 3}, {-2, -2, 4});
  const Tensor x3 = f32({1, 1, 1, 1, 1}, {1}), w3 = f32({1, 1, 1, 1, 1}, {1});
  EXPECT_THROW(run(c1, {&x3, &w3}), Error);
}

TEST(OpTableResults, ResizeAndUpsample) {
  const Tensor x = f32({1, 1, 1, 2}, {1, 2});
  Node u = node("Upsample", 7);
  u.attrs["scales"] = std::vector<float>{1, 1, 2, 2};
  expect_f32(run1(u, {&x}), {1, 1, 2, 4}, {1, 1, 2, 2, 1, 1, 2, 2});
  Node r = node("Resize", 13, 4);
  r.attrs["mode"] = std::string("linear");
  r.attrs["coordinate_transformation_mode"] = std::string("align_corners");
  const Tensor sizes = i64({4}, {1, 1, 1, 3});
  expect_f32(run1(r, {&x, nullptr, nullptr, &sizes}), {1, 1, 1, 3}, {1, 1.5f, 2}, 1e-6f);
}

TEST(OpTableResults, ShapeSizeCastDropoutLayerNorm) {
  const Tensor x = f32({2, 3, 4}, iota(24));
  expect_values<int64_t>(run1(node("Shape", 13), {&x}), DType::kI64, {3}, {2, 3, 4});
  Node s15 = node("Shape", 15);
  s15.attrs["start"] = int64_t{1};
  s15.attrs["end"] = int64_t{-1};
  expect_values<int64_t>(run1(s15, {&x}), DType::kI64, {1}, {3});
  expect_values<int64_t>(run1(node("Size", 13), {&x}), DType::kI64, {}, {24});
  Node cast = node("Cast", 13);
  cast.attrs["to"] = int64_t{7};  // INT64
  const Tensor f = f32({3}, {1.7f, -1.7f, 0});
  expect_values<int64_t>(run1(cast, {&f}), DType::kI64, {3}, {1, -1, 0});
  Node d = node("Dropout", 13, 1, 2);
  const auto out = run(d, {&f});
  ASSERT_EQ(out.size(), 2u);
  expect_f32(out[0], {3}, {1.7f, -1.7f, 0});
  expect_values<uint8_t>(out[1], DType::kBool, {3}, {1, 1, 1});
  Node ln = node("LayerNormalization", 17, 3, 3);
  const Tensor lx = f32({1, 2}, {1, 3}), scale = f32({2}, {1, 1}), bias = f32({2}, {0, 1});
  const auto lo = run(ln, {&lx, &scale, &bias});
  ASSERT_EQ(lo.size(), 3u);
  expect_f32(lo[0], {1, 2}, {-1, 2}, 1e-4f);
  expect_f32(lo[1], {1, 1}, {2});
  expect_f32(lo[2], {1, 1}, {1 / std::sqrt(1 + 1e-5f)}, 1e-6f);
}

}  // namespace
}  // namespace dynaprec::exec
