// The graph executor on graphs built here in dynaprec's IR: fusion and folding do not change
// results, layers run at the plan's format (and really quantize), inputs are checked, If runs
// its branches, unsupported ops are refused at load.
#include "dynaprec/executor.h"

#include <gtest/gtest.h>

#include <array>
#include <bit>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <random>

#include "dynaprec/error.h"
#include "dynaprec/ops.h"
#include "dynaprec/quality.h"

namespace dynaprec {
namespace {

Tensor randn(Shape s, uint32_t seed, float scale = 1.0f) {
  Tensor t = Tensor::zeros(std::move(s), DType::kF32);
  std::mt19937 g(seed);
  std::normal_distribution<float> d(0.0f, scale);
  for (int64_t i = 0; i < t.numel(); ++i) t.data_as<float>()[i] = d(g);
  return t;
}

Tensor positive(Shape s, uint32_t seed) {
  Tensor t = randn(std::move(s), seed);
  for (int64_t i = 0; i < t.numel(); ++i)
    t.data_as<float>()[i] = 0.5f + std::fabs(t.data_as<float>()[i]);
  return t;
}

Node node(std::string op, std::vector<std::string> in, std::vector<std::string> out,
          std::string name = {}) {
  Node n;
  n.op = std::move(op);
  n.opset = 13;
  n.inputs = std::move(in);
  n.outputs = std::move(out);
  n.name = name.empty() ? n.op + "_" + n.outputs[0] : std::move(name);
  return n;
}

ValueInfo value(std::string name, std::vector<Dim> shape, DType t = DType::kF32) {
  return ValueInfo{std::move(name), t, std::move(shape)};
}

double sqnr_db(const Tensor& ref, const Tensor& got) {
  double s = 0, e = 0;
  for (int64_t i = 0; i < ref.numel(); ++i) {
    const double r = ref.data_as<float>()[i], g = got.data_as<float>()[i];
    s += r * r;
    e += (r - g) * (r - g);
  }
  return 10 * std::log10(s / std::max(e, 1e-300));
}

double max_rel(const Tensor& ref, const Tensor& got) {
  double m = 0, d = 0;
  for (int64_t i = 0; i < ref.numel(); ++i) {
    m = std::max(m, static_cast<double>(std::fabs(ref.data_as<float>()[i])));
    d = std::max(d,
                 static_cast<double>(std::fabs(ref.data_as<float>()[i] - got.data_as<float>()[i])));
  }
  return d / m;
}

// The op types one run executed (layers under their op name), in name order: which nodes the
// executor's fusions left.
std::string ops_run(Executor& e, const TensorMap& in, RunStats* stats = nullptr) {
  RunStats own;
  RunStats& st = stats ? *stats : own;
  st.profile_ops = true;
  e.run(in, {}, &st);
  std::string ran;
  for (const auto& [op, t] : st.op_time_ms) ran += op + " ";
  return ran;
}

// x [N, 8, H, W] -> Conv 3x3 (16) -> BatchNorm -> Relu -> Conv 1x1 (4, bias) -> y
Model conv_bn_relu_model() {
  Model m;
  m.opsets[""] = 13;
  Graph& g = m.graph;
  g.inputs = {value("x", {{-1, "N"}, {8, ""}, {-1, "H"}, {-1, "W"}})};
  g.outputs = {value("y", {})};
  g.initializers["w1"] = randn({16, 8, 3, 3}, 1, 0.3f);
  g.initializers["bn_s"] = positive({16}, 2);
  g.initializers["bn_b"] = randn({16}, 3);
  g.initializers["bn_m"] = randn({16}, 4, 0.1f);
  g.initializers["bn_v"] = positive({16}, 5);
  g.initializers["w2"] = randn({4, 16, 1, 1}, 6, 0.3f);
  g.initializers["b2"] = randn({4}, 7);
  Node c1 = node("Conv", {"x", "w1"}, {"c1"}, "conv1");
  c1.attrs["pads"] = std::vector<int64_t>{1, 1, 1, 1};
  g.nodes.push_back(c1);
  g.nodes.push_back(node("BatchNormalization", {"c1", "bn_s", "bn_b", "bn_m", "bn_v"}, {"bn"}));
  g.nodes.push_back(node("Relu", {"bn"}, {"r"}));
  g.nodes.push_back(node("Conv", {"r", "w2", "b2"}, {"y"}, "conv2"));
  return m;
}

TEST(Executor, FusionDoesNotChangeResults) {
  const Model m = conv_bn_relu_model();
  Executor fused(m), plain(m, ExecutorOptions{.fuse = false, .fold_constants = false});
  const Tensor x = randn({2, 8, 9, 13}, 11);
  const Tensor a = fused.run({{"x", x}}).at("y"), b = plain.run({{"x", x}}).at("y");
  ASSERT_EQ(a.shape(), (Shape{2, 4, 9, 13}));
  ASSERT_EQ(b.shape(), a.shape());
  EXPECT_LT(max_rel(b, a), 1e-5);
  ASSERT_EQ(fused.layers().size(), 2u);
  EXPECT_EQ(fused.layers()[0].name, "conv1");
}

TEST(Executor, LayersRunAtThePlanFormatAndReallyQuantize) {
  const Model m = conv_bn_relu_model();
  Executor e(m);
  const Tensor x = randn({1, 8, 16, 16}, 12);
  RunStats s32;
  const Tensor ref = e.run({{"x", x}}, {}, &s32).at("y");
  ASSERT_EQ(s32.layers.size(), 2u);
  EXPECT_EQ(s32.layers[0].macs, 16 * 16 * 16 * 8 * 9);
  EXPECT_EQ(s32.layers[0].bytes, s32.layers[0].bytes_fp32);
  // Expected output SQNR bands of two stacked layers (one layer's bands from the matmul tests,
  // less ~3 dB for two quantized layers in a row).
  const struct {
    Format f;
    double lo, hi;
  } bands[] = {{Format::kBf16, 38, 60},    {Format::kFp16, 55, 80}, {Format::kFp8E4M3, 22, 38},
               {Format::kFp8E5M2, 17, 32}, {Format::kInt8, 28, 45}, {Format::kInt4, 10, 26}};
  for (const auto& b : bands) {
    Plan p;
    p.default_format = b.f;
    RunStats st;
    const Tensor y = e.run({{"x", x}}, p, &st).at("y");
    const double db = sqnr_db(ref, y);
    EXPECT_GT(db, b.lo) << format_name(b.f);
    EXPECT_LT(db, b.hi) << format_name(b.f) << ": too exact to be quantized";
    ASSERT_EQ(st.layers.size(), 2u);
    EXPECT_EQ(st.layers[0].format, b.f);
    EXPECT_LT(st.layers[0].bytes, st.layers[0].bytes_fp32) << format_name(b.f);
    EXPECT_EQ(st.layers[0].bytes_fp32, s32.layers[0].bytes_fp32);
  }
  // A per-layer plan: only conv2 at int4.
  Plan p;
  p.layers["conv2"] = Format::kInt4;
  RunStats st;
  e.run({{"x", x}}, p, &st);
  EXPECT_EQ(st.layers[0].format, Format::kFp32);
  EXPECT_EQ(st.layers[1].format, Format::kInt4);
}

// Shape arithmetic on a symbolic width: x [1, 2, W] -> Reshape to [1, 2*W] via
// Shape -> Gather -> Mul -> Concat -> Reshape, then MatMul against nothing (just Relu).
TEST(Executor, ShapeArithmeticFollowsTheBoundWidth) {
  Model m;
  m.opsets[""] = 13;
  Graph& g = m.graph;
  g.inputs = {value("x", {{1, ""}, {2, ""}, {-1, "W"}})};
  g.outputs = {value("y", {})};
  g.initializers["idx2"] = int64_tensor({2});
  g.initializers["two"] = int64_tensor({2});
  g.initializers["one"] = int64_tensor({1});
  g.nodes.push_back(node("Shape", {"x"}, {"s"}));
  Node ga = node("Gather", {"s", "idx2"}, {"w"});
  g.nodes.push_back(ga);
  g.nodes.push_back(node("Mul", {"w", "two"}, {"w2"}));
  Node cc = node("Concat", {"one", "w2"}, {"shape"});
  cc.attrs["axis"] = int64_t{0};
  g.nodes.push_back(cc);
  g.nodes.push_back(node("Reshape", {"x", "shape"}, {"r"}));
  g.nodes.push_back(node("Relu", {"r"}, {"y"}));
  Executor e(m);
  for (int64_t w : {1, 5, 320}) {
    const Tensor x = randn({1, 2, w}, 13);
    const Tensor y = e.run({{"x", x}}).at("y");
    ASSERT_EQ(y.shape(), (Shape{1, 2 * w}));
    for (int64_t i = 0; i < y.numel(); ++i)
      EXPECT_EQ(y.data_as<float>()[i], std::max(0.0f, x.data_as<float>()[i]));
  }
}

TEST(Executor, ConstantChainsAreFoldedAtLoad) {
  // Constant -> Cast -> Add(initializer) feeding Mul: only Mul remains to run.
  Model m;
  m.opsets[""] = 13;
  Graph& g = m.graph;
  g.inputs = {value("x", {{3, ""}})};
  g.outputs = {value("y", {})};
  Node c = node("Constant", {}, {"c"});
  Tensor ci = Tensor::zeros({3}, DType::kI64);
  for (int i = 0; i < 3; ++i) ci.data_as<int64_t>()[i] = i + 1;
  c.attrs["value"] = ci;
  g.nodes.push_back(c);
  Node cast = node("Cast", {"c"}, {"cf"});
  cast.attrs["to"] = int64_t{1};  // FLOAT
  g.nodes.push_back(cast);
  g.initializers["half"] = randn({3}, 14);
  g.nodes.push_back(node("Add", {"cf", "half"}, {"k"}));
  g.nodes.push_back(node("Mul", {"x", "k"}, {"y"}));
  Executor e(m);
  const Tensor x = randn({3}, 15);
  const Tensor y = e.run({{"x", x}}).at("y");
  for (int i = 0; i < 3; ++i)
    EXPECT_EQ(y.data_as<float>()[i],
              x.data_as<float>()[i] *
                  (static_cast<float>(i + 1) + g.initializers["half"].data_as<float>()[i]));
}

TEST(Executor, IfRunsTheChosenBranchWithOuterValues) {
  Model m;
  m.opsets[""] = 13;
  Graph& g = m.graph;
  g.inputs = {value("x", {{4, ""}}), value("c", {}, DType::kBool)};
  g.outputs = {value("y", {})};
  auto then_g = std::make_shared<Graph>();
  then_g->name = "then";
  then_g->outputs = {value("t", {})};
  then_g->nodes.push_back(node("Neg", {"x"}, {"t"}));
  auto else_g = std::make_shared<Graph>();
  else_g->name = "else";
  else_g->outputs = {value("e", {})};
  else_g->nodes.push_back(node("Relu", {"x"}, {"e"}));
  Node n = node("If", {"c"}, {"y"});
  n.attrs["then_branch"] = then_g;
  n.attrs["else_branch"] = else_g;
  g.nodes.push_back(n);
  Executor e(m);
  const Tensor x = randn({4}, 16);
  for (bool cond : {true, false}) {
    Tensor c = Tensor::zeros({}, DType::kBool);
    *c.data_as<bool>() = cond;
    const Tensor y = e.run({{"x", x}, {"c", c}}).at("y");
    for (int i = 0; i < 4; ++i) {
      const float v = x.data_as<float>()[i];
      EXPECT_EQ(y.data_as<float>()[i], cond ? -v : std::max(0.0f, v));
    }
  }
}

TEST(Executor, BadInputsAreRefusedWithTheirName) {
  Executor e(conv_bn_relu_model());
  auto kind_and_text = [&](const TensorMap& in, const std::string& text) {
    try {
      e.run(in);
      ADD_FAILURE() << "accepted: " << text;
    } catch (const Error& err) {
      EXPECT_EQ(err.kind(), ErrorKind::kInvalidInput);
      EXPECT_NE(std::string(err.what()).find(text), std::string::npos) << err.what();
    }
  };
  kind_and_text({}, "input x is missing");
  kind_and_text({{"x", randn({1, 8, 4, 4}, 1)}, {"z", randn({1}, 1)}}, "no input named 'z'");
  kind_and_text({{"x", randn({1, 7, 4, 4}, 1)}}, "mismatch on dim=1. Expected 8, received 7");
  kind_and_text({{"x", randn({8, 4, 4}, 1)}}, "rank 3");
  kind_and_text({{"x", Tensor::zeros({1, 8, 4, 4}, DType::kI64)}}, "dtype int64");
  // The executor is usable after refusals.
  EXPECT_EQ(e.run({{"x", randn({1, 8, 4, 4}, 1)}}).at("y").shape(), (Shape{1, 4, 4, 4}));
}

TEST(Executor, UnsupportedOpsAreRefusedAtLoad) {
  // An unknown op, and the executor's own fused op named in a model (its domain is internal).
  for (const auto& [op, domain] : {std::pair<std::string, std::string>{"FancyOp", "com.example"},
                                   {"AddScaled", "dynaprec.fused"}}) {
    Model m = conv_bn_relu_model();
    Node n = node(op, {"y", "y"}, {"z"});
    n.domain = domain;
    n.opset = 3;
    m.graph.nodes.push_back(n);
    try {
      Executor e(m);
      FAIL() << op << " accepted";
    } catch (const Error& err) {
      EXPECT_EQ(err.kind(), ErrorKind::kUnsupported);
      EXPECT_NE(std::string(err.what()).find(op + " (domain '" + domain + "', opset 3)"),
                std::string::npos)
          << err.what();
    }
  }
}

// A Resize (opset 13) of `in` by the scales initializer `scales`, asymmetric coordinates, floor.
Node resize_node(const std::string& in, const std::string& scales, const std::string& out,
                 const char* mode = "nearest") {
  Node r = node("Resize", {in, "", scales}, {out});
  r.opset = 13;
  r.attrs["mode"] = std::string(mode);
  r.attrs["coordinate_transformation_mode"] = std::string("asymmetric");
  r.attrs["nearest_mode"] = std::string("floor");
  return r;
}

// The scales initializer {1, 1, s, s} (an upsampling of H and W by s) named `name`.
void upsample_scales(Graph& g, const std::string& name, float s) {
  Tensor t = Tensor::zeros({4}, DType::kF32);
  std::copy_n(std::array<float, 4>{1, 1, s, s}.data(), 4, t.data_as<float>());
  g.initializers[name] = t;
}

// Add(a, Resize(X)) (a feature pyramid's top-down path) runs as one AddResized node with the
// unfused graph's bits, in either operand order; a Resize whose output is also read elsewhere
// stays as written.
TEST(Executor, PyramidAddOfAnUpsampledMapIsOnePass) {
  Model m;
  m.opsets[""] = 13;
  Graph& g = m.graph;
  g.inputs = {value("x", {{1, ""}, {4, ""}, {-1, "H"}, {-1, "W"}}),
              value("a", {{1, ""}, {4, ""}, {-1, "H2"}, {-1, "W2"}})};
  g.outputs = {value("y1", {}), value("y2", {}), value("r3", {})};
  upsample_scales(g, "scales", 2);
  auto resize = [&](const std::string& in, const std::string& out) {
    return resize_node(in, "scales", out);
  };
  g.nodes.push_back(resize("x", "r1"));
  g.nodes.push_back(node("Add", {"a", "r1"}, {"y1"}));
  g.nodes.push_back(resize("x", "r2"));
  g.nodes.push_back(node("Add", {"r2", "y1"}, {"y2"}));
  g.nodes.push_back(resize("x", "r3"));  // r3 is a graph output too
  g.nodes.push_back(node("Add", {"y2", "r3"}, {"y3"}));
  g.outputs.push_back(value("y3", {}));
  Executor fused(m), plain(m, ExecutorOptions{.fuse = false, .fold_constants = false});
  const Tensor x = randn({1, 4, 5, 37}, 71), a = randn({1, 4, 10, 74}, 72);
  const TensorMap f = fused.run({{"x", x}, {"a", a}}), u = plain.run({{"x", x}, {"a", a}});
  for (const char* name : {"y1", "y2", "y3", "r3"})
    for (int64_t i = 0; i < u.at(name).numel(); ++i)
      ASSERT_EQ(std::bit_cast<uint32_t>(f.at(name).data_as<float>()[i]),
                std::bit_cast<uint32_t>(u.at(name).data_as<float>()[i]))
          << name << " at " << i;
  EXPECT_EQ(ops_run(fused, {{"x", x}, {"a", a}}), "Add AddResized Resize ")
      << "the first two pairs fused, the third not";
}

// A squeeze-excite residual (AddScaled) read only by a pyramid Add (AddResized) or a Concat of
// upsampled maps (ConcatResized) is computed in their pass: the unfused graph's bits; one also
// read elsewhere (a graph output here) stays its own node.
TEST(Executor, ScaledResidualGoesIntoThePyramidPass) {
  Model m;
  m.opsets[""] = 13;
  Graph& g = m.graph;
  g.inputs = {value("x", {{1, ""}, {4, ""}, {-1, "H"}, {-1, "W"}}),
              value("a", {{1, ""}, {4, ""}, {-1, "H2"}, {-1, "W2"}}),
              value("s", {{1, ""}, {4, ""}, {1, ""}, {1, ""}})};
  g.outputs = {value("y1", {}), value("y2", {}), value("e2", {})};
  upsample_scales(g, "scales", 2);
  auto resize = [&](const std::string& in, const std::string& out) {
    return resize_node(in, "scales", out);
  };
  auto residual = [&](const std::string& in, const std::string& out) {
    g.nodes.push_back(node("Mul", {in, "s"}, {out + "_m"}));
    g.nodes.push_back(node("Add", {out + "_m", in}, {out}));
  };
  residual("a", "e1");  // read only by the Add below
  g.nodes.push_back(resize("x", "r1"));
  g.nodes.push_back(node("Add", {"r1", "e1"}, {"y1"}));
  residual("y1", "e3");  // read only by the Concat
  residual("a", "e2");   // read by the Concat and a graph output
  g.nodes.push_back(resize("x", "r2"));
  Node cat = node("Concat", {"r2", "e3", "e2", "y1"}, {"y2"});
  cat.attrs["axis"] = int64_t{1};
  g.nodes.push_back(cat);
  Executor fused(m), plain(m, ExecutorOptions{.fuse = false, .fold_constants = false});
  const TensorMap in = {{"x", randn({1, 4, 5, 37}, 91)},
                        {"a", randn({1, 4, 10, 74}, 92)},
                        {"s", randn({1, 4, 1, 1}, 93)}};
  const TensorMap f = fused.run(in), u = plain.run(in);
  for (const char* name : {"y1", "y2", "e2"})
    for (int64_t i = 0; i < u.at(name).numel(); ++i)
      ASSERT_EQ(std::bit_cast<uint32_t>(f.at(name).data_as<float>()[i]),
                std::bit_cast<uint32_t>(u.at(name).data_as<float>()[i]))
          << name << " at " << i;
  EXPECT_EQ(ops_run(fused, in), "AddResized AddScaled ConcatResized ")
      << "e1 and e3 inside the pyramid passes, e2 on its own";
}

// Concat of upsampled maps (a feature pyramid's fused map) runs as one ConcatResized node with
// the unfused graph's bits; a Resize whose output is also read elsewhere, or with other
// attributes than the first fused one, stays as written.
TEST(Executor, ConcatOfUpsampledMapsIsOnePass) {
  Model m;
  m.opsets[""] = 13;
  Graph& g = m.graph;
  g.inputs = {value("p5", {{1, ""}, {3, ""}, {-1, "H"}, {-1, "W"}}),
              value("p4", {{1, ""}, {3, ""}, {-1, "H2"}, {-1, "W2"}}),
              value("p2", {{1, ""}, {2, ""}, {-1, "H8"}, {-1, "W8"}})};
  g.outputs = {value("y", {}), value("r4", {})};
  upsample_scales(g, "s8", 8), upsample_scales(g, "s4", 4), upsample_scales(g, "s2", 2);
  const auto resize = resize_node;
  g.nodes.push_back(resize("p5", "s8", "r5", "nearest"));
  g.nodes.push_back(resize("p4", "s4", "r4", "nearest"));  // also a graph output
  g.nodes.push_back(resize("p5", "s8", "r5b", "linear"));  // other attributes
  g.nodes.push_back(resize("p4", "s2", "r4b", "nearest"));
  Node cat = node("Concat", {"r5", "r4", "p2", "r5b", "r4b", "r5"}, {"y"});
  cat.attrs["axis"] = int64_t{1};
  g.nodes.push_back(cat);
  Executor fused(m), plain(m, ExecutorOptions{.fuse = false, .fold_constants = false});
  const TensorMap in = {{"p5", randn({1, 3, 3, 5}, 81)},
                        {"p4", randn({1, 3, 6, 10}, 82)},
                        {"p2", randn({1, 2, 24, 40}, 83)}};
  // r4b (6x10 by 2 = 12x20) does not fit the 24x40 maps: that Concat must fail alike.
  EXPECT_THROW(plain.run(in), Error);
  EXPECT_THROW(fused.run(in), Error);
  g.nodes[3] = resize("p4", "s4", "r4b", "nearest");
  Executor fused2(m), plain2(m, ExecutorOptions{.fuse = false, .fold_constants = false});
  const TensorMap f = fused2.run(in), u = plain2.run(in);
  ASSERT_EQ(f.at("y").shape(), (Shape{1, 17, 24, 40}));
  for (const char* name : {"y", "r4"})
    for (int64_t i = 0; i < u.at(name).numel(); ++i)
      ASSERT_EQ(std::bit_cast<uint32_t>(f.at(name).data_as<float>()[i]),
                std::bit_cast<uint32_t>(u.at(name).data_as<float>()[i]))
          << name << " at " << i;
  // r5 (read twice by the Concat) and r4 (a graph output) stay; r5b, the first the Concat can
  // take, is fused; r4b (nearest, unlike r5b) stays.
  EXPECT_EQ(ops_run(fused2, in), "ConcatResized Resize ") << "r5b fused; r5, r4, r4b as written";
}

// A DB head's two 2x2 stride-2 ConvTransposes (the first's output read only by the second) run
// as one kernel where the monitor is off and the second is not int8: the bits of the two layers
// run one by one (as they run with the monitor on, which samples the second layer's input), both
// layers in the stats with their formats and MACs; at int8 they run one by one. The unfused
// graph (Relu and Sigmoid as ops) agrees to rounding.
TEST(Executor, UpsamplingPairRunsAsOneKernel) {
  Model m;
  m.opsets[""] = 13;
  Graph& g = m.graph;
  g.inputs = {value("x", {{1, ""}, {16, ""}, {-1, "H"}, {-1, "W"}})};
  g.outputs = {value("y", {})};
  g.initializers["wa"] = randn({16, 16, 2, 2}, 91, 0.3f);
  g.initializers["ba"] = randn({16}, 92);
  g.initializers["wb"] = randn({16, 1, 2, 2}, 93, 0.3f);
  g.initializers["bb"] = randn({1}, 94);
  auto convt = [&](const std::string& in, const std::string& w, const std::string& b,
                   const std::string& out) {
    Node n = node("ConvTranspose", {in, w, b}, {out}, out + "_node");
    n.attrs["strides"] = std::vector<int64_t>{2, 2};
    n.attrs["kernel_shape"] = std::vector<int64_t>{2, 2};
    return n;
  };
  g.nodes.push_back(convt("x", "wa", "ba", "a"));
  g.nodes.push_back(node("Relu", {"a"}, {"r"}));
  g.nodes.push_back(convt("r", "wb", "bb", "c"));
  g.nodes.push_back(node("Sigmoid", {"c"}, {"y"}));
  ExecutorOptions mo;
  mo.monitor.rate = 0.01;
  Executor fused(m, mo), plain(m, ExecutorOptions{.fuse = false, .fold_constants = false});
  const Tensor x = randn({1, 16, 7, 37}, 95);
  for (Format f : {Format::kFp32, Format::kBf16, Format::kInt8}) {
    Plan p;
    p.default_format = f;
    RunStats one_by_one;
    one_by_one.monitor = true;
    const Tensor want = fused.run({{"x", x}}, p, &one_by_one).at("y");
    EXPECT_EQ(one_by_one.reports.size(), 2u);
    for (const LayerRun& r : one_by_one.layers) EXPECT_EQ(r.chained_with, -1);
    RunStats st;
    const Tensor got = fused.run({{"x", x}}, p, &st).at("y");
    const std::string what(format_name(f));
    ASSERT_EQ(got.shape(), (Shape{1, 1, 28, 148})) << what;
    ASSERT_EQ(std::memcmp(got.data(), want.data(), want.nbytes()), 0) << what;
    EXPECT_LT(max_rel(plain.run({{"x", x}}, p).at("y"), got), 1e-5) << what;
    ASSERT_EQ(st.layers.size(), 2u) << what;
    EXPECT_EQ(st.layers[0].macs, 16 * 7 * 37 * 16 * 4) << what;
    EXPECT_EQ(st.layers[1].macs, 16 * 14 * 74 * 4) << what;
    const bool chained = f != Format::kInt8;
    EXPECT_EQ(st.layers[0].chained_with, chained ? 1 : -1) << what;
    EXPECT_EQ(st.layers[1].chained_with, chained ? 0 : -1) << what;
    // Chained, the first layer's output (16 x 14 x 74 floats) is neither written nor read.
    const uint64_t mid_bytes = chained ? 2u * 16 * 14 * 74 * 4 : 0;
    EXPECT_EQ(st.layers[0].bytes + st.layers[1].bytes + mid_bytes,
              one_by_one.layers[0].bytes + one_by_one.layers[1].bytes)
        << what;
    for (const LayerRun& r : st.layers) {
      EXPECT_EQ(r.format, f) << what;
      EXPECT_GT(r.time_ms, 0.0) << what;
    }
  }
}

// Add(x, Mul(x, s)) (a squeeze-excite residual) runs as one AddScaled node with the unfused
// graph's bits, in either operand order; a Mul whose product is also read elsewhere, or whose
// other factor is not the Add's other operand, stays as written.
TEST(Executor, SqueezeExciteResidualIsOnePass) {
  Model m;
  m.opsets[""] = 14;
  Graph& g = m.graph;
  g.inputs = {value("x", {{1, ""}, {5, ""}, {-1, "H"}, {-1, "W"}}),
              value("s", {{1, ""}, {5, ""}, {1, ""}, {1, ""}})};
  g.outputs = {value("y1", {}), value("y2", {}), value("y3", {}), value("m3", {})};
  g.nodes.push_back(node("Mul", {"x", "s"}, {"m1"}));
  g.nodes.push_back(node("Add", {"x", "m1"}, {"y1"}));
  g.nodes.push_back(node("Mul", {"s", "y1"}, {"m2"}));
  g.nodes.push_back(node("Add", {"m2", "y1"}, {"y2"}));
  g.nodes.push_back(node("Mul", {"y2", "s"}, {"m3"}));  // m3 is a graph output too
  g.nodes.push_back(node("Add", {"y2", "m3"}, {"y3"}));
  Executor fused(m), plain(m, ExecutorOptions{.fuse = false, .fold_constants = false});
  const Tensor x = randn({1, 5, 6, 37}, 61), s = randn({1, 5, 1, 1}, 62);
  const TensorMap a = fused.run({{"x", x}, {"s", s}}), b = plain.run({{"x", x}, {"s", s}});
  for (const char* name : {"y1", "y2", "y3", "m3"})
    for (int64_t i = 0; i < b.at(name).numel(); ++i)
      ASSERT_EQ(std::bit_cast<uint32_t>(a.at(name).data_as<float>()[i]),
                std::bit_cast<uint32_t>(b.at(name).data_as<float>()[i]))
          << name << " at " << i;
  EXPECT_EQ(ops_run(fused, {{"x", x}, {"s", s}}), "Add AddScaled Mul ")
      << "the first two pairs fused, the third not";
}

}  // namespace
}  // namespace dynaprec

namespace dynaprec {
namespace {

// Conv -> Mul(scalar) -> Add([1, C, 1, 1]) -> x·clip(x + 3, 0, 6)/6 (as paddle2onnx writes
// HardSwish) and ConvTranspose -> BatchNormalization -> Relu: every fold and fusion on equals
// the graph as written.
TEST(Executor, AffineFoldsAndSpelledOutHardSwishMatchTheGraphAsWritten) {
  Model m;
  m.opsets[""] = 13;
  Graph& g = m.graph;
  g.inputs = {value("x", {{1, ""}, {6, ""}, {-1, "H"}, {-1, "W"}})};
  g.outputs = {value("y", {}), value("z", {})};
  g.initializers["w"] = randn({8, 6, 3, 3}, 21, 0.3f);
  g.initializers["b"] = randn({8}, 22);
  g.initializers["s"] = randn({1}, 23);
  g.initializers["t"] = randn({1, 8, 1, 1}, 24);
  Tensor three = Tensor::zeros({}, DType::kF32), six = Tensor::zeros({}, DType::kF32),
         zero = Tensor::zeros({}, DType::kF32);
  *three.data_as<float>() = 3;
  *six.data_as<float>() = 6;
  g.initializers["three"] = three;
  g.initializers["six"] = six;
  g.initializers["zero"] = zero;
  Node c = node("Conv", {"x", "w", "b"}, {"c"}, "conv");
  c.attrs["pads"] = std::vector<int64_t>{1, 1, 1, 1};
  g.nodes.push_back(c);
  g.nodes.push_back(node("Mul", {"c", "s"}, {"m"}));
  g.nodes.push_back(node("Add", {"t", "m"}, {"a"}));
  g.nodes.push_back(node("Add", {"a", "three"}, {"a3"}));
  g.nodes.push_back(node("Clip", {"a3", "zero", "six"}, {"cl"}));
  g.nodes.push_back(node("Div", {"cl", "six"}, {"d"}));
  g.nodes.push_back(node("Mul", {"a", "d"}, {"y"}));
  // ConvTranspose 2x2 stride 2 (8 -> 4 channels) then BN then Relu.
  g.initializers["wt"] = randn({8, 4, 2, 2}, 25, 0.3f);
  g.initializers["bn_s"] = positive({4}, 26);
  g.initializers["bn_b"] = randn({4}, 27);
  g.initializers["bn_m"] = randn({4}, 28, 0.1f);
  g.initializers["bn_v"] = positive({4}, 29);
  Node ct = node("ConvTranspose", {"y", "wt"}, {"ct"}, "convt");
  ct.attrs["strides"] = std::vector<int64_t>{2, 2};
  g.nodes.push_back(ct);
  g.nodes.push_back(node("BatchNormalization", {"ct", "bn_s", "bn_b", "bn_m", "bn_v"}, {"bn"}));
  g.nodes.push_back(node("Relu", {"bn"}, {"z"}));
  Executor fused(m), plain(m, ExecutorOptions{.fuse = false, .fold_constants = false});
  const Tensor x = randn({1, 6, 7, 10}, 30);
  const TensorMap a = fused.run({{"x", x}}), b = plain.run({{"x", x}});
  EXPECT_LT(max_rel(b.at("y"), a.at("y")), 1e-5);
  EXPECT_LT(max_rel(b.at("z"), a.at("z")), 1e-5);
  ASSERT_EQ(a.at("z").shape(), (Shape{1, 4, 14, 20}));
  // Everything was folded into the two layers: the graph runs only them.
  RunStats st;
  EXPECT_EQ(ops_run(fused, {{"x", x}}, &st), "Conv ConvTranspose ")
      << "ops left outside the layers";
  EXPECT_EQ(st.layers.size(), 2u);
}

// PP-LCNetV3's "learnable affine block" after an activated conv: Conv -> HardSwish ->
// Mul(scalar, .) -> Add(., scalar) runs as one layer (Conv2dParams::post_affine) with the
// unfused graph's values, at every format; a Mul by a non-scalar stays a node of its own.
TEST(Executor, ScalarAffineAfterAnActivatedConvIsFused) {
  Model m;
  m.opsets[""] = 14;
  Graph& g = m.graph;
  g.inputs = {value("x", {{1, ""}, {6, ""}, {-1, "H"}, {-1, "W"}})};
  g.outputs = {value("y", {}), value("z", {})};
  g.initializers["w"] = randn({8, 6, 3, 3}, 41, 0.3f);
  g.initializers["b"] = randn({8}, 42);
  auto scalar = [](float v) {
    Tensor t = Tensor::zeros({1}, DType::kF32);
    *t.data_as<float>() = v;
    return t;
  };
  g.initializers["a"] = scalar(0.75f);
  g.initializers["shift"] = scalar(-0.375f);
  g.initializers["v"] = randn({1, 8, 1, 1}, 43);
  Node c = node("Conv", {"x", "w", "b"}, {"c"}, "conv");
  c.attrs["pads"] = std::vector<int64_t>{1, 1, 1, 1};
  g.nodes.push_back(c);
  Node hs = node("HardSwish", {"c"}, {"h"});
  hs.opset = 14;
  g.nodes.push_back(hs);
  g.nodes.push_back(node("Mul", {"a", "h"}, {"m"}));
  g.nodes.push_back(node("Add", {"m", "shift"}, {"y"}));
  // A second conv whose Mul is per channel after the activation: not a scalar affine.
  Node c2 = node("Conv", {"y", "w2"}, {"c2"}, "conv2");
  g.initializers["w2"] = randn({8, 8, 1, 1}, 44, 0.3f);
  g.nodes.push_back(c2);
  g.nodes.push_back(node("Relu", {"c2"}, {"r2"}));
  g.nodes.push_back(node("Mul", {"r2", "v"}, {"z"}));
  Executor fused(m), plain(m, ExecutorOptions{.fuse = false, .fold_constants = false});
  const Tensor x = randn({1, 6, 9, 11}, 45);
  const TensorMap a = fused.run({{"x", x}}), b = plain.run({{"x", x}});
  EXPECT_LT(max_rel(b.at("y"), a.at("y")), 1e-5);
  EXPECT_LT(max_rel(b.at("z"), a.at("z")), 1e-5);
  EXPECT_EQ(ops_run(fused, {{"x", x}}), "Conv Mul ")
      << "the scalar Mul and Add run inside the conv";
  // The low formats too: the fused affine follows the layer's own output.
  for (Format f : {Format::kBf16, Format::kInt8, Format::kFp16}) {
    Plan plan;
    plan.layers["conv"] = f;
    const Tensor got = fused.run({{"x", x}}, plan).at("y");
    const Tensor want = plain.run({{"x", x}}, plan).at("y");
    EXPECT_LT(max_rel(want, got), 1e-5) << format_name(f);
  }
}

// The monitor: a layer at int8 reports a measured SQNR near its prediction; at fp32 the
// measured SQNR is far above any low format's.
TEST(Executor, MonitorMeasuresAndPredictsLayerSqnr) {
  const Model m = conv_bn_relu_model();
  ExecutorOptions o;
  o.monitor.rate = 0.05;
  Executor e(m, o);
  const Tensor x = randn({1, 8, 16, 16}, 31);
  for (Format f : {Format::kFp32, Format::kBf16, Format::kInt8, Format::kInt4}) {
    Plan p;
    p.default_format = f;
    RunStats st;
    st.monitor = true;
    e.run({{"x", x}}, p, &st);
    ASSERT_EQ(st.reports.size(), 2u);
    const QualityReport& r = st.reports[0];
    EXPECT_EQ(r.format, f);
    EXPECT_GE(r.sampled, 16u);
    if (f == Format::kFp32) {
      EXPECT_TRUE(std::isinf(r.sqnr_db)) << "fp32 is the reference precision";
    } else {
      EXPECT_LT(r.sqnr_db, 80) << format_name(f);
      // Calibrated to the measurement at the current format.
      EXPECT_NEAR(r.pred_sqnr_db[static_cast<size_t>(f)], r.sqnr_db, 0.5) << format_name(f);
    }
    // The uncalibrated order of the predictions follows the formats' precision.
    EXPECT_GT(r.pred_sqnr_db[static_cast<size_t>(Format::kBf16)],
              r.pred_sqnr_db[static_cast<size_t>(Format::kInt4)]);
    EXPECT_EQ(r.nan_count, 0u);
  }
  // NaN in the input shows up in the report (a NaN input channel reaches every output of the
  // first conv; run unfused, so that no activation sits between the conv and its report).
  Tensor bad = x.clone();
  for (int i = 0; i < 16 * 16; ++i) bad.data_as<float>()[3 * 256 + i] = NAN;
  ExecutorOptions uo = o;
  uo.fuse = false;
  Executor unfused(m, uo);
  RunStats st;
  st.monitor = true;
  unfused.run({{"x", bad}}, {}, &st);
  EXPECT_GT(st.reports[0].nan_count + st.reports[1].nan_count, 0u);
}

// One layer on x: Conv 3x3 (pads 1, bias, Relu fused), ConvTranspose 3x3 stride 2 (bias) or
// MatMul [*, 24] x [24, 7].
Model one_layer_model(const std::string& op) {
  Model m;
  m.opsets[""] = 13;
  Graph& g = m.graph;
  g.outputs = {value("y", {})};
  if (op == "MatMul") {
    g.inputs = {value("x", {{5, ""}, {24, ""}})};
    g.initializers["w"] = randn({24, 7}, 41, 0.3f);
    g.nodes.push_back(node("MatMul", {"x", "w"}, {"y"}, "layer"));
    return m;
  }
  g.inputs = {value("x", {{1, ""}, {8, ""}, {-1, "H"}, {-1, "W"}})};
  if (op == "Conv") {
    g.initializers["w"] = randn({12, 8, 3, 3}, 42, 0.3f);
    g.initializers["b"] = randn({12}, 43);
    Node c = node("Conv", {"x", "w", "b"}, {"c"}, "layer");
    c.attrs["pads"] = std::vector<int64_t>{1, 1, 1, 1};
    g.nodes.push_back(c);
    g.nodes.push_back(node("Relu", {"c"}, {"y"}));
  } else {
    g.initializers["w"] = randn({8, 4, 3, 3}, 44, 0.3f);
    g.initializers["b"] = randn({4}, 45);
    Node c = node("ConvTranspose", {"x", "w", "b"}, {"y"}, "layer");
    c.attrs["strides"] = std::vector<int64_t>{2, 2};
    g.nodes.push_back(c);
  }
  return m;
}

// The shadow is the layer's fp32 output: with every output sampled, the sample's values (as a
// custom metric sees them) are the fp32 run's and the int8 run's outputs, and the reported SQNR is
// the whole output's; the custom metric's value lands in the report.
TEST(Executor, MonitorShadowIsTheLayersFp32Output) {
  static std::vector<float> refs, gots;
  const size_t slot =
      register_metric("test_sample_size", [](std::span<const float> r, std::span<const float> g) {
        refs.assign(r.begin(), r.end());
        gots.assign(g.begin(), g.end());
        return static_cast<float>(r.size());
      });
  for (const std::string op : {"Conv", "ConvTranspose", "MatMul"}) {
    SCOPED_TRACE(op);
    const Model m = one_layer_model(op);
    ExecutorOptions o;
    o.monitor.rate = 1;
    o.monitor.max_samples = 1 << 20;
    Executor e(m, o);
    const Tensor x = op == "MatMul" ? randn({5, 24}, 46) : randn({1, 8, 5, 7}, 46);
    const Tensor y32 = e.run({{"x", x}}).at("y");
    Plan p;
    p.default_format = Format::kInt8;
    RunStats st;
    st.monitor = true;
    refs.clear();
    const Tensor y8 = e.run({{"x", x}}, p, &st).at("y");
    ASSERT_EQ(st.reports.size(), 1u);
    const QualityReport& r = st.reports[0];
    ASSERT_EQ(r.sampled, static_cast<uint32_t>(y32.numel()));
    EXPECT_EQ(r.custom[slot], static_cast<float>(y32.numel()));
    EXPECT_NEAR(r.sqnr_db, sqnr_db(y32, y8), 0.01);
    EXPECT_LT(r.sqnr_db, 55) << "int8 is quantized";
    // The same values, in the sample's order.
    std::vector<float> want32(y32.data_as<float>(), y32.data_as<float>() + y32.numel());
    std::vector<float> want8(y8.data_as<float>(), y8.data_as<float>() + y8.numel());
    for (auto* v : {&refs, &gots, &want32, &want8}) std::sort(v->begin(), v->end());
    ASSERT_EQ(refs.size(), want32.size());
    EXPECT_EQ(gots, want8);
    for (size_t i = 0; i < refs.size(); ++i) EXPECT_NEAR(refs[i], want32[i], 1e-5) << i;
  }
}

}  // namespace
}  // namespace dynaprec
