// The Session: portions, constants, carried state (a recurrent model streamed frame by frame
// equals calling it frame by frame), negotiation with a device that lacks formats, the report.
#include "dynaprec/session.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <nlohmann/json.hpp>
#include <random>

#include "dynaprec/error.h"
#include "dynaprec/ops.h"

namespace dynaprec {
namespace {

Tensor randn(Shape s, uint32_t seed, float scale = 1.0f) {
  Tensor t = Tensor::zeros(std::move(s), DType::kF32);
  std::mt19937 g(seed);
  std::normal_distribution<float> d(0.0f, scale);
  for (int64_t i = 0; i < t.numel(); ++i) t.data_as<float>()[i] = d(g);
  return t;
}

ValueInfo value(std::string name, std::vector<Dim> shape, DType t = DType::kF32) {
  return ValueInfo{std::move(name), t, std::move(shape)};
}

// A node of opset 14.
Node node(std::string name, std::string op, std::vector<std::string> inputs,
          std::vector<std::string> outputs) {
  Node n;
  n.name = std::move(name);
  n.op = std::move(op);
  n.opset = 14;
  n.inputs = std::move(inputs);
  n.outputs = std::move(outputs);
  return n;
}

constexpr int64_t kI = 5, kH = 7;

// x [T, 1, I] -> LSTM(h0, c0) -> Y [T, 1, 1, H], Y_h, Y_c [1, 1, H]; then a MatMul head.
Model lstm_model() {
  Model m;
  m.opsets[""] = 14;
  Graph& g = m.graph;
  g.inputs = {value("x", {{-1, "T"}, {1, ""}, {kI, ""}}), value("h0", {{1, ""}, {1, ""}, {kH, ""}}),
              value("c0", {{1, ""}, {1, ""}, {kH, ""}})};
  g.outputs = {value("y", {}), value("yh", {}), value("yc", {})};
  g.initializers["W"] = randn({1, 4 * kH, kI}, 1, 0.4f);
  g.initializers["R"] = randn({1, 4 * kH, kH}, 2, 0.4f);
  g.initializers["B"] = randn({1, 8 * kH}, 3, 0.2f);
  g.initializers["Wo"] = randn({kH, 3}, 4);
  Node l = node("lstm", "LSTM", {"x", "W", "R", "B", "", "h0", "c0"}, {"Y", "yh", "yc"});
  l.attrs["hidden_size"] = kH;
  g.nodes.push_back(l);
  g.nodes.push_back(node("head", "MatMul", {"Y", "Wo"}, {"y"}));
  return m;
}

bool same_bits(const Tensor& a, const Tensor& b) {
  return a.shape() == b.shape() && std::memcmp(a.data(), b.data(), a.nbytes()) == 0;
}

TEST(Session, CarriedStateEqualsCallingFrameByFrame) {
  const Model m = lstm_model();
  const int64_t T = 9;
  const Tensor x = randn({T, 1, kI}, 5);
  SessionOptions o;
  o.carry = {{"yh", "h0"}, {"yc", "c0"}};
  Session s(m, "lstm", o);
  EXPECT_EQ(s.streamed_inputs(), std::vector<std::string>{"x"});
  const TensorMap streamed = s.run_stream({{"x", x}});
  EXPECT_EQ(s.report().portions.size(), static_cast<size_t>(T));
  ASSERT_EQ(streamed.at("y").shape(), (Shape{T, 1, 1, 3}));

  // The same by hand: T calls, each fed the previous call's state (zeros first).
  Executor e(m);
  Tensor h = Tensor::zeros({1, 1, kH}, DType::kF32), c = Tensor::zeros({1, 1, kH}, DType::kF32);
  std::vector<Tensor> ys;
  for (int64_t t = 0; t < T; ++t) {
    TensorMap out = e.run({{"x", slice(x, {t}, {t + 1}, {0})}, {"h0", h}, {"c0", c}});
    h = out.at("yh");
    c = out.at("yc");
    ys.push_back(out.at("y"));
  }
  EXPECT_TRUE(same_bits(streamed.at("y"), concat(ys, 0)));
  EXPECT_TRUE(same_bits(streamed.at("yh"), concat(std::vector<Tensor>(T, h), 0)) ||
              same_bits(slice(streamed.at("yh"), {T - 1}, {T}, {0}), h));

  // And close to one call over the whole sequence (the recurrence is the same; only the input
  // projection's matmul may sum in another order for T rows than for 1).
  const TensorMap whole = e.run({{"x", x},
                                 {"h0", Tensor::zeros({1, 1, kH}, DType::kF32)},
                                 {"c0", Tensor::zeros({1, 1, kH}, DType::kF32)}});
  const Tensor& a = whole.at("y");
  const Tensor& b = streamed.at("y");
  for (int64_t i = 0; i < a.numel(); ++i)
    EXPECT_NEAR(a.data_as<float>()[i], b.data_as<float>()[i], 1e-5);

  // reset_state starts again from zeros.
  s.reset_state();
  const TensorMap again = s.run_stream({{"x", x}});
  EXPECT_TRUE(same_bits(again.at("y"), streamed.at("y")));
}

TEST(Session, ConstInputsAndFirstCarryValue) {
  const Model m = lstm_model();
  const Tensor x = randn({4, 1, kI}, 6), h0 = randn({1, 1, kH}, 7), c0 = randn({1, 1, kH}, 8);
  SessionOptions o;
  o.consts = {{"h0", h0}, {"c0", c0}};  // not carried: every portion starts from them
  Session s(m, "lstm", o);
  const TensorMap out = s.run_stream({{"x", x}});
  Executor e(m);
  for (int64_t t = 0; t < 4; ++t) {
    const TensorMap one = e.run({{"x", slice(x, {t}, {t + 1}, {0})}, {"h0", h0}, {"c0", c0}});
    EXPECT_TRUE(same_bits(one.at("y"), slice(out.at("y"), {t}, {t + 1}, {0})));
  }
  // Carried with a given first value.
  SessionOptions oc;
  oc.consts = {{"h0", h0}, {"c0", c0}};
  oc.carry = {{"yh", "h0"}, {"yc", "c0"}};
  Session sc(m, "lstm", oc);
  const TensorMap cout = sc.run_stream({{"x", x}});
  const TensorMap first = e.run({{"x", slice(x, {0}, {1}, {0})}, {"h0", h0}, {"c0", c0}});
  EXPECT_TRUE(same_bits(first.at("y"), slice(cout.at("y"), {0}, {1}, {0})));
}

TEST(Session, BadOptionsAreRefusedWithWhatToDo) {
  const Model m = lstm_model();
  auto refused = [&](SessionOptions o, const std::string& text) {
    try {
      Session s(m, "lstm", o);
      s.run_stream({{"x", randn({2, 1, kI}, 9)}});
      ADD_FAILURE() << "accepted: " << text;
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find(text), std::string::npos) << e.what();
    }
  };
  SessionOptions a;
  a.carry = {{"nope", "h0"}};
  refused(a, "no output 'nope'");
  SessionOptions b;
  b.consts = {{"zz", randn({1}, 1)}};
  refused(b, "no input of that name");
  SessionOptions c;
  c.pins = {{"not_a_layer", Format::kInt8}};
  refused(c, "no weighted layer");
  SessionOptions d;  // h0, c0 neither streamed as given nor carried: missing
  refused(d, "input h0 is missing");
}

TEST(Session, ReportHasTheContractFields) {
  SessionOptions o;
  o.carry = {{"yh", "h0"}, {"yc", "c0"}};
  o.plan.default_format = Format::kInt8;
  o.pins = {{"head", Format::kBf16}};
  Session s(lstm_model(), "lstm", o);
  s.run_stream({{"x", randn({3, 1, kI}, 10)}});
  const auto j = nlohmann::json::parse(s.report().to_json());
  ASSERT_EQ(j["portions"].size(), 3u);
  const auto& l = j["portions"][0]["layers"];
  ASSERT_EQ(l.size(), 2u);
  EXPECT_EQ(l[0]["name"], "lstm");
  EXPECT_EQ(l[0]["precision"], "int8");
  EXPECT_EQ(l[1]["precision"], "bf16");
  EXPECT_GT(l[0]["macs"].get<int64_t>(), 0);
  EXPECT_LT(l[0]["bytes"].get<int64_t>(), l[0]["bytes_fp32"].get<int64_t>());
  const auto& sum = j["summary"];
  EXPECT_EQ(sum["portions"], 3);
  EXPECT_EQ(sum["switches"], 0);
  EXPECT_LT(sum["bytes_moved"].get<double>(), sum["bytes_moved_fp32"].get<double>());
  EXPECT_GT(sum["energy_uj_model"].get<double>(), 0);
  double share = 0;
  for (auto& [k, v] : sum["precision_share"].items()) share += v.get<double>();
  EXPECT_NEAR(share, 1.0, 1e-9);
}

// x [N, 16] -> MatMul -> Softmax -> p [N, 10]: a classifier's probability output.
Model softmax_model() {
  Model m;
  m.opsets[""] = 14;
  Graph& g = m.graph;
  g.inputs = {value("x", {{-1, "N"}, {16, ""}})};
  g.outputs = {value("p", {})};
  g.initializers["W"] = randn({16, 10}, 5, 0.5f);
  g.nodes.push_back(node("fc", "MatMul", {"x", "W"}, {"z"}));
  g.nodes.push_back(node("softmax", "Softmax", {"z"}, {"p"}));
  return m;
}

// Every portion of a looping run reports how ambiguous its probability output was (what the
// controller's difficulty term reads), computed from the released output; a run without the
// monitor reports none.
TEST(Session, EveryPortionReportsItsOutputAmbiguity) {
  const Tensor x = randn({12, 16}, 21, 2.0f);
  SessionOptions o;
  o.policy.kind = PolicyKind::kDynamic;
  Session s(softmax_model(), "softmax", o);
  const Tensor p = s.run_stream({{"x", x}}).at("p");
  ASSERT_EQ(s.report().portions.size(), 12u);
  for (int64_t i = 0; i < 12; ++i) {
    const auto& om = s.report().portions[static_cast<size_t>(i)].output_metrics;
    ASSERT_TRUE(om.count("ambiguity")) << i;
    const float* row = p.data_as<float>() + i * 10;
    EXPECT_NEAR(om.at("ambiguity"), 1.0 - *std::max_element(row, row + 10), 1e-6) << i;
  }
  const auto j = nlohmann::json::parse(s.report().to_json());
  EXPECT_TRUE(j["portions"][5]["output_metrics"].contains("ambiguity"));

  SessionOptions off;
  off.monitor.rate = 0;
  Session st(softmax_model(), "softmax", off);
  st.run_stream({{"x", x}});
  for (const PortionReport& pr : st.report().portions)
    EXPECT_FALSE(pr.output_metrics.count("ambiguity"));
}

}  // namespace
}  // namespace dynaprec
