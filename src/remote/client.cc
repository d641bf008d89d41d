// The remote device backend: a ModelRunner whose model runs on `dynaprec serve` over gRPC
// (include/dynaprec/remote.h, docs/protocol.md). The controller stays with the Session on the
// host; this class only moves plans, tensors and reports, and survives a server that dies
// mid-run (reconnect with back-off, new session, the same seq again).
#include <grpcpp/grpcpp.h>

#include <atomic>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <sstream>
#include <thread>

#include "dynaprec.grpc.pb.h"
#include "dynaprec/error.h"
#include "dynaprec/remote.h"
#include "dynaprec/runner.h"
#include "remote/core.h"
#include "remote/wire.h"

namespace dynaprec {
namespace remote {
namespace {

std::atomic<uint64_t> g_reconnects{0}, g_replays{0};

std::string read_all(const std::string& path, const char* what) {
  std::ifstream f(path, std::ios::binary);
  if (!f) throw Error(ErrorKind::kIo, std::string(what) + ": cannot read " + path);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

struct Broken {};  // a stream write failed: Finish() tells why

class RemoteRunner final : public ModelRunner {
 public:
  RemoteRunner(const std::string& url, const std::string& model_path, const ExecutorOptions& eo,
               const std::map<std::string, std::string>& options)
      : url_(url), eo_(eo), client_id_(random_id()) {
    target_ = url.substr(7);  // "grpc://"
    if (target_.empty() || target_.find(':') == std::string::npos)
      throw Error(ErrorKind::kUsage, "--device " + url + ": expected grpc://HOST:PORT");
    auto opt = [&](const char* k) {
      auto it = options.find(k);
      return it == options.end() ? std::string() : it->second;
    };
    if (opt("token_file").empty())
      throw Error(ErrorKind::kUsage,
                  "--device " + url + " needs --token-file F (the server's token)");
    token_ = read_token_file(opt("token_file"));
    if (!opt("retries").empty()) retries_ = std::stoi(opt("retries"));
    if (!opt("timeout_s").empty()) timeout_s_ = std::stod(opt("timeout_s"));
    quiet_ = opt("quiet") == "1";
    model_ = read_all(model_path, "model");
    model_name_ = std::filesystem::path(model_path).filename().string();
    tls_ = !opt("tls_ca").empty();
    std::shared_ptr<grpc::ChannelCredentials> creds;
    if (tls_) {
      grpc::SslCredentialsOptions so;
      so.pem_root_certs = read_all(opt("tls_ca"), "--tls-ca");
      creds = grpc::SslCredentials(so);
    } else {
      creds = grpc::InsecureChannelCredentials();
    }
    grpc::ChannelArguments args;
    args.SetMaxReceiveMessageSize(-1);
    args.SetMaxSendMessageSize(-1);
    args.SetInt(GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS, 100);
    args.SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, 1000);
    if (!opt("tls_name").empty()) args.SetSslTargetNameOverride(opt("tls_name"));
    channel_ = grpc::CreateCustomChannel(target_, creds, args);
    stub_ = wire::Device::NewStub(channel_);
    grpc::Status st = connect();
    for (int i = 0; !st.ok() && retryable(st) && i < 2; ++i) {  // a server still starting
      std::this_thread::sleep_for(std::chrono::milliseconds(200 << i));
      st = connect();
    }
    if (!st.ok()) fail(st, "connect");
  }

  ~RemoteRunner() override {
    grpc::ClientContext ctx;
    prepare(&ctx, 2);
    wire::CloseRequest r;
    r.set_session_id(session_);
    wire::CloseReply rep;
    stub_->Close(&ctx, r, &rep);  // best effort
  }

  const std::vector<ValueInfo>& inputs() const override { return inputs_; }
  const std::vector<ValueInfo>& outputs() const override { return outputs_; }
  const std::vector<LayerInfo>& layers() const override { return layers_; }
  std::string device_json() const override { return device_json_; }
  std::vector<Format> ladder(size_t layer) const override { return ladders_.at(layer); }

  PlanReply negotiate(const PlanProposal& p) override {
    // The device's answer depends only on the (layer, op, format) list: ask once per list.
    std::string key;
    for (const LayerOffer& o : p.layers)
      key += o.layer + '\0' + char('0' + static_cast<int>(o.op)) +
             char('0' + static_cast<int>(o.format));
    if (auto it = negotiated_.find(key); it != negotiated_.end()) {
      PlanReply r = it->second;
      r.seq = p.seq;
      return r;
    }
    wire::PlanProposal w;
    to_wire(p, &w);
    PlanReply r;
    with_retries("negotiate", [&]() -> grpc::Status {
      w.set_session_id(session_);
      grpc::ClientContext ctx;
      prepare(&ctx, timeout_s_);
      wire::PlanReply rep;
      grpc::Status st = stub_->Negotiate(&ctx, w, &rep);
      if (st.ok()) r = from_wire(rep);
      return st;
    });
    if (r.layers.size() != p.layers.size())
      throw Error(ErrorKind::kInvalidInput, url_ + ": the plan reply does not answer every layer");
    if (negotiated_.size() > 64) negotiated_.clear();
    negotiated_[key] = r;
    return r;
  }

  TensorMap run(const TensorMap& in, const Plan& plan, RunStats* stats, uint64_t seq,
                Traffic* traffic) override {
    TensorMap out;
    with_retries("run",
                 [&]() -> grpc::Status { return attempt(in, plan, stats, seq, traffic, &out); });
    return out;
  }

 private:
  void prepare(grpc::ClientContext* ctx, double seconds) const {
    ctx->AddMetadata(kTokenKey, token_);
    ctx->AddMetadata(kClientKey, client_id_);
    ctx->set_deadline(std::chrono::system_clock::now() +
                      std::chrono::milliseconds(static_cast<int64_t>(seconds * 1000)));
  }

  static bool retryable(const grpc::Status& st) {
    switch (st.error_code()) {
      case grpc::StatusCode::UNAVAILABLE:
      case grpc::StatusCode::NOT_FOUND:  // the session is gone: the server restarted
      case grpc::StatusCode::ABORTED:
      case grpc::StatusCode::CANCELLED:
      case grpc::StatusCode::UNKNOWN:
        return true;
      case grpc::StatusCode::INTERNAL:  // a transport failure, not a dynaprec error
        return st.error_details().empty();
      default:
        return false;
    }
  }

  [[noreturn]] void fail(const grpc::Status& st, const std::string& what) const {
    const std::string where = url_ + " (" + what + "): ";
    switch (st.error_code()) {
      case grpc::StatusCode::UNAUTHENTICATED:
        throw Error(ErrorKind::kUsage, where + "the server refused the token (" +
                                           st.error_message() + "): check --token-file");
      case grpc::StatusCode::UNAVAILABLE:
        throw Error(ErrorKind::kIo,
                    where + "cannot reach the server" +
                        (tls_ ? " over TLS (is its certificate signed by the CA in --tls-ca, and "
                                "issued for this host name?)"
                              : " (is it running? if it uses TLS, give --tls-ca)") +
                        ": " + st.error_message());
      case grpc::StatusCode::RESOURCE_EXHAUSTED:
        throw Error(ErrorKind::kUnsupported, where + "a server limit: " + st.error_message());
      default:
        break;
    }
    wire::ErrorInfo info;
    if (!st.error_details().empty() && info.ParseFromString(st.error_details()) &&
        info.kind() <= static_cast<uint32_t>(ErrorKind::kInternal))
      throw Error(static_cast<ErrorKind>(info.kind()), where + info.message());
    const ErrorKind k = st.error_code() == grpc::StatusCode::INVALID_ARGUMENT
                            ? ErrorKind::kInvalidInput
                        : st.error_code() == grpc::StatusCode::UNIMPLEMENTED ||
                                st.error_code() == grpc::StatusCode::FAILED_PRECONDITION ||
                                st.error_code() == grpc::StatusCode::PERMISSION_DENIED
                            ? ErrorKind::kUnsupported
                            : ErrorKind::kIo;
    throw Error(k, where + st.error_message());
  }

  // Hello (versions) and Load (a new session on the model).
  grpc::Status connect() {
    {
      grpc::ClientContext ctx;
      prepare(&ctx, 10);
      wire::HelloRequest r;
      to_wire(r.mutable_version());
      r.set_capabilities(kOurCaps);
      wire::HelloReply rep;
      grpc::Status st = stub_->Hello(&ctx, r, &rep);
      if (!st.ok()) return st;
      check_peer_version(rep.version().major(), rep.version().minor());
      server_caps_ = rep.capabilities();
      chunk_ = rep.limits().max_chunk_bytes()
                   ? std::min<uint64_t>(rep.limits().max_chunk_bytes(), kDefaultChunkBytes)
                   : kDefaultChunkBytes;
    }
    grpc::ClientContext ctx;
    prepare(&ctx, timeout_s_);
    wire::LoadReply rep;
    auto w = stub_->Load(&ctx, &rep);
    wire::LoadRequest m;
    auto* h = m.mutable_header();
    h->set_model_bytes(model_.size());
    h->set_model_crc32(crc32(model_.data(), model_.size()));
    h->mutable_monitor()->set_rate(eo_.monitor.rate);
    h->mutable_monitor()->set_min_samples(eo_.monitor.min_samples);
    h->mutable_monitor()->set_max_samples(eo_.monitor.max_samples);
    h->set_no_fuse(!eo_.fuse);
    h->set_name(model_name_);
    bool ok = w->Write(m);
    for (size_t off = 0; ok && off < model_.size(); off += chunk_) {
      wire::LoadRequest c;
      c.set_chunk(model_.substr(off, chunk_));
      ok = w->Write(c);
    }
    w->WritesDone();
    grpc::Status st = w->Finish();
    if (!st.ok()) return st;
    std::vector<ValueInfo> ins, outs;
    std::vector<LayerInfo> ls;
    std::vector<std::vector<Format>> lad;
    for (const auto& v : rep.inputs()) ins.push_back(from_wire(v));
    for (const auto& v : rep.outputs()) outs.push_back(from_wire(v));
    for (const auto& l : rep.layers()) {
      std::vector<Format> f;
      ls.push_back(from_wire(l, &f));
      lad.push_back(std::move(f));
    }
    if (!session_.empty() && (ls.size() != layers_.size() || ins.size() != inputs_.size()))
      throw Error(ErrorKind::kInternal, url_ + ": the model changed shape on reconnect");
    inputs_ = std::move(ins);
    outputs_ = std::move(outs);
    layers_ = std::move(ls);
    ladders_ = std::move(lad);
    session_ = rep.session_id();
    std::string dj = rep.device_json();
    const auto close = dj.rfind('}');
    if (close != std::string::npos) dj.insert(close, ", \"remote\": \"" + url_ + "\"");
    device_json_ = dj;
    return grpc::Status::OK;
  }

  // Runs `call`; on a lost server, reconnects (bounded retries with back-off) and calls again.
  void with_retries(const char* what, const std::function<grpc::Status()>& call) {
    grpc::Status st = call();
    if (st.ok() || !retryable(st)) {
      if (!st.ok()) fail(st, what);
      return;
    }
    if (!quiet_)
      std::cerr << "dynaprec: " << url_ << ": lost the device (" << st.error_message()
                << "); reconnecting\n";
    int delay_ms = 100;
    for (int i = 1; i <= retries_; ++i) {
      std::this_thread::sleep_for(std::chrono::milliseconds(delay_ms));
      delay_ms = std::min(delay_ms * 2, 2000);
      grpc::Status c = connect();
      if (!c.ok()) {
        if (!retryable(c)) fail(c, "reconnect");
        st = c;
        continue;
      }
      ++g_reconnects;
      st = call();
      if (st.ok()) {
        if (!quiet_)
          std::cerr << "dynaprec: " << url_ << ": reconnected (attempt " << i << " of " << retries_
                    << "), session re-established\n";
        return;
      }
      if (!retryable(st)) fail(st, what);
    }
    fail(st, std::string(what) + ", after " + std::to_string(retries_) + " reconnect attempts");
  }

  grpc::Status attempt(const TensorMap& in, const Plan& plan0, RunStats* stats, uint64_t seq,
                       Traffic* traffic, TensorMap* out) {
    // Transfer formats need a server that knows them (1.1); an older one gets fp32 tensors.
    Plan plan = plan0;
    if (!(server_caps_ & kCapTransfer)) plan.io.clear();
    grpc::ClientContext ctx;
    prepare(&ctx, timeout_s_);
    auto s = stub_->Run(&ctx);
    uint64_t sent = 0, got = 0;
    try {
      wire::RunRequest m;
      auto* h = m.mutable_header();
      h->set_session_id(session_);
      h->set_seq(seq);
      to_wire(plan, h->mutable_plan());
      h->set_monitor(stats && stats->monitor);
      h->set_profile_ops(stats && stats->profile_ops);
      h->set_tensor_count(static_cast<uint32_t>(in.size()));
      // Every message but the last is buffered: small portions go out in one write. One
      // message carries every chunk in turn (its buffer is reused).
      auto write = [&](const wire::RunRequest& msg, bool last) {
        sent += msg.ByteSizeLong();
        if (!s->Write(msg, last ? grpc::WriteOptions().set_last_message()
                                : grpc::WriteOptions().set_buffer_hint()))
          throw Broken{};
      };
      write(m, in.empty());
      wire::RunRequest c;
      size_t left = in.size();
      for (const auto& [name, t0] : in) {
        auto f = plan.io.find(name);
        const Tensor t = f == plan.io.end() ? t0 : encode_transfer(t0, f->second);
        --left;
        encode_tensor(t, name, seq, chunk_, c.mutable_chunk(),
                      [&](bool last) { write(c, last && left == 0); });
      }
    } catch (const Broken&) {
      return s->Finish();
    }
    wire::RunReply r;
    if (!s->Read(&r) || !r.has_result()) {
      grpc::Status st = s->Finish();
      return st.ok() ? grpc::Status(grpc::StatusCode::INTERNAL, "run: no result") : st;
    }
    got += r.ByteSizeLong();
    const wire::RunResult res = r.result();
    if (res.seq() != seq) {
      ctx.TryCancel();
      s->Finish();
      throw Error(
          ErrorKind::kInvalidInput,
          url_ + ": run answered seq " + std::to_string(res.seq()) + " for " + std::to_string(seq));
    }
    TensorAssembler as(res.tensor_count(), seq, 1ull << 40, 1ull << 41);
    try {
      while (!as.done() && s->Read(&r)) {
        got += r.ByteSizeLong();
        if (!r.has_chunk()) throw Error(ErrorKind::kInvalidInput, "run: a second result");
        as.add(r.chunk());
      }
    } catch (...) {
      ctx.TryCancel();
      s->Finish();
      throw;
    }
    grpc::Status st = s->Finish();
    if (!st.ok()) return st;
    *out = as.take();
    for (auto& [name, t] : *out)
      if (plan.io.count(name)) t = decode_transfer(t);
    if (stats) {
      from_wire(res.stats(), stats);
      for (const LayerRun& l : stats->layers)
        if (l.layer < 0 || static_cast<size_t>(l.layer) >= layers_.size())
          throw Error(ErrorKind::kInvalidInput, url_ + ": run stats name an unknown layer");
      for (const QualityReport& q : stats->reports)
        if (q.layer >= layers_.size())
          throw Error(ErrorKind::kInvalidInput, url_ + ": a quality report names an unknown layer");
    }
    for (const ValueInfo& v : outputs_)
      if (!out->count(v.name))
        throw Error(ErrorKind::kInvalidInput, url_ + ": output '" + v.name + "' missing");
    if (res.replayed()) ++g_replays;
    if (traffic) {
      traffic->to_device = sent;
      traffic->from_device = got;
    }
    return grpc::Status::OK;
  }

  std::string url_, target_, token_, model_, model_name_;
  ExecutorOptions eo_;
  std::string client_id_, session_;
  bool tls_ = false, quiet_ = false;
  int retries_ = 20;
  double timeout_s_ = 300;
  uint64_t chunk_ = kDefaultChunkBytes;
  uint64_t server_caps_ = 0;
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<wire::Device::Stub> stub_;
  std::vector<ValueInfo> inputs_, outputs_;
  std::vector<LayerInfo> layers_;
  std::vector<std::vector<Format>> ladders_;
  std::string device_json_;
  std::map<std::string, PlanReply> negotiated_;
};

}  // namespace
}  // namespace remote

void install_remote_backend() {
  set_remote_runner_factory([](const std::string& url, const std::string& model_path,
                               const ExecutorOptions& eo,
                               const std::map<std::string, std::string>& options) {
    return std::unique_ptr<ModelRunner>(
        std::make_unique<remote::RemoteRunner>(url, model_path, eo, options));
  });
}

RemoteClientStats remote_client_stats() {
  return {remote::g_reconnects.load(), remote::g_replays.load()};
}

}  // namespace dynaprec
