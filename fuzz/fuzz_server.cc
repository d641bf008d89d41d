// libFuzzer target for the remote device's message handling (scripts/fuzz.sh 60 server): the
// messages a client can send (HelloRequest, LoadHeader + model bytes, PlanProposal, RunHeader +
// TensorChunks) parsed from fuzz bytes and handed to the server's logic (src/remote/core.cc,
// wire.cc) exactly as the gRPC service does, against a session on a small real model. Every
// message must be answered or refused with dynaprec::Error / CallError; anything else (another
// exception, a crash, a sanitizer report, a leak) is a finding.
//
// Input: a sequence of records [kind: 1 byte][length: 2 bytes LE][message bytes]. kind % 4:
// 0 Hello, 1 Load (the rest of the record after a LoadHeader of `length` bytes is the model),
// 2 Negotiate, 3 Run (the RunHeader; the following records are its TensorChunks).
#include <onnx/onnx_pb.h>

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <memory>

#include "dynaprec/error.h"
#include "remote/core.h"
#include "remote/wire.h"

namespace {

using namespace dynaprec;
using namespace dynaprec::remote;

std::string tiny_model() {
  onnx::ModelProto m;
  m.set_ir_version(8);
  auto* op = m.add_opset_import();
  op->set_domain("");
  op->set_version(13);
  auto* g = m.mutable_graph();
  g->set_name("tiny");
  auto value = [](onnx::ValueInfoProto* v, const char* name, int64_t k) {
    v->set_name(name);
    auto* t = v->mutable_type()->mutable_tensor_type();
    t->set_elem_type(onnx::TensorProto::FLOAT);
    t->mutable_shape()->add_dim()->set_dim_param("N");
    t->mutable_shape()->add_dim()->set_dim_value(k);
  };
  value(g->add_input(), "x", 4);
  auto* w = g->add_initializer();
  w->set_name("W");
  w->set_data_type(onnx::TensorProto::FLOAT);
  w->add_dims(4);
  w->add_dims(3);
  for (int i = 0; i < 12; ++i) w->add_float_data(0.25f * static_cast<float>(i - 6));
  auto* n = g->add_node();
  n->set_name("fc");
  n->set_op_type("MatMul");
  n->add_input("x");
  n->add_input("W");
  n->add_output("y");
  value(g->add_output(), "y", 3);
  std::string s;
  m.SerializeToString(&s);
  return s;
}

struct Fixture {
  std::unique_ptr<DeviceCore> core;
  std::string sid;
  Fixture() {
    CoreOptions o;
    o.threads = 1;
    o.max_tensor_bytes = 1 << 16;
    o.max_call_bytes = 1 << 17;
    o.max_model_bytes = 1 << 16;
    o.max_chunk_bytes = 1 << 12;
    o.max_sessions_per_client = 2;
    core = std::make_unique<DeviceCore>(o);
    const std::string m = tiny_model();
    wire::LoadHeader h;
    h.set_model_bytes(m.size());
    h.set_model_crc32(crc32(m.data(), m.size()));
    sid = core->load("fuzz", h, m).session_id();
  }
};

struct Reader {
  const uint8_t* p;
  size_t n;
  bool next(uint8_t* kind, std::string* msg) {
    if (n < 3) return false;
    *kind = p[0];
    size_t len = p[1] | (size_t(p[2]) << 8);
    p += 3;
    n -= 3;
    len = std::min(len, n);
    msg->assign(reinterpret_cast<const char*>(p), len);
    p += len;
    n -= len;
    return true;
  }
};

void one(Fixture& f, Reader& r, uint8_t kind, const std::string& msg) {
  switch (kind % 4) {
    case 0: {
      wire::HelloRequest h;
      if (h.ParseFromString(msg)) f.core->hello(h);
      break;
    }
    case 1: {
      wire::LoadHeader h;
      std::string model;
      uint8_t k2;
      if (!h.ParseFromString(msg)) break;
      r.next(&k2, &model);
      if (h.model_bytes() > f.core->options().max_model_bytes) break;  // as the service
      if (h.server_path().size() > 0) h.clear_server_path();
      auto rep = f.core->load("fuzz-load", h, model);
      f.core->close("fuzz-load", rep.session_id());
      break;
    }
    case 2: {
      wire::PlanProposal p;
      if (!p.ParseFromString(msg)) break;
      if (p.session_id().empty()) p.set_session_id(f.sid);
      f.core->negotiate("fuzz", p);
      break;
    }
    case 3: {
      wire::RunHeader h;
      if (!h.ParseFromString(msg)) break;
      if (h.session_id().empty()) h.set_session_id(f.sid);
      f.core->check_session("fuzz", h.session_id());
      if (h.tensor_count() > 4096) break;  // as the service
      TensorAssembler as(h.tensor_count(), h.seq(), f.core->options().max_tensor_bytes,
                         f.core->options().max_call_bytes);
      uint8_t k2;
      std::string c;
      while (!as.done() && r.next(&k2, &c)) {
        wire::TensorChunk ch;
        if (!ch.ParseFromString(c)) return;
        as.add(ch);
      }
      auto reply = f.core->run("fuzz", h, as.take());
      (void)reply;
      break;
    }
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static Fixture f;
  Reader r{data, size};
  uint8_t kind;
  std::string msg;
  while (r.next(&kind, &msg)) {
    try {
      one(f, r, kind, msg);
    } catch (const dynaprec::Error&) {
    } catch (const CallError&) {
    }
  }
  return 0;
}
