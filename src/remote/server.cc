// `dynaprec serve`: the gRPC service over DeviceCore (include/dynaprec/remote.h).
#include <grpcpp/grpcpp.h>
#include <grpcpp/security/server_credentials.h>

#include <atomic>
#include <condition_variable>
#include <fstream>
#include <sstream>
#include <thread>

#include "dynaprec.grpc.pb.h"
#include "dynaprec/error.h"
#include "dynaprec/remote.h"
#include "remote/core.h"

namespace dynaprec {
namespace remote {
namespace {

std::string read_file(const std::string& path, const char* what) {
  std::ifstream f(path, std::ios::binary);
  if (!f) throw Error(ErrorKind::kIo, std::string(what) + ": cannot read " + path);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

grpc::Status status_of(ErrorKind k, const std::string& msg) {
  wire::ErrorInfo info;
  info.set_kind(static_cast<uint32_t>(k));
  info.set_message(msg);
  grpc::StatusCode code = grpc::StatusCode::INTERNAL;
  switch (k) {
    case ErrorKind::kInvalidInput:
    case ErrorKind::kUsage:
      code = grpc::StatusCode::INVALID_ARGUMENT;
      break;
    case ErrorKind::kUnsupported:
      code = grpc::StatusCode::UNIMPLEMENTED;
      break;
    default:
      break;
  }
  return grpc::Status(code, msg, info.SerializeAsString());
}

// Runs `fn`, mapping every exception to a status (nothing escapes into gRPC's threads).
template <typename F>
grpc::Status guarded(F&& fn) {
  try {
    fn();
    return grpc::Status::OK;
  } catch (const CallError& e) {
    grpc::StatusCode c = grpc::StatusCode::NOT_FOUND;
    if (e.code() == CallError::kExhausted) c = grpc::StatusCode::RESOURCE_EXHAUSTED;
    if (e.code() == CallError::kPrecondition) c = grpc::StatusCode::FAILED_PRECONDITION;
    if (e.code() == CallError::kPermission) c = grpc::StatusCode::PERMISSION_DENIED;
    return grpc::Status(c, e.what());
  } catch (const Error& e) {
    return status_of(e.kind(), e.what());
  } catch (const std::bad_alloc&) {
    return grpc::Status(grpc::StatusCode::RESOURCE_EXHAUSTED, "out of memory");
  } catch (const std::exception& e) {
    return status_of(ErrorKind::kInternal, e.what());
  }
}

class Service final : public wire::Device::Service {
 public:
  Service(DeviceCore& core, std::string token) : core_(core), token_(std::move(token)) {}
  std::atomic<size_t> active{0};

  grpc::Status Hello(grpc::ServerContext* ctx, const wire::HelloRequest* req,
                     wire::HelloReply* rep) override {
    std::string client;
    if (auto st = auth(ctx, &client); !st.ok()) return st;
    return guarded([&] { *rep = core_.hello(*req); });
  }

  grpc::Status Load(grpc::ServerContext* ctx, grpc::ServerReader<wire::LoadRequest>* reader,
                    wire::LoadReply* rep) override {
    std::string client;
    if (auto st = auth(ctx, &client); !st.ok()) return st;
    Active a(active);
    return guarded([&] {
      wire::LoadRequest m;
      if (!reader->Read(&m) || !m.has_header())
        throw Error(ErrorKind::kInvalidInput, "load: the first message must be a LoadHeader");
      const wire::LoadHeader h = m.header();
      if (h.model_bytes() > core_.options().max_model_bytes)
        throw CallError(CallError::kExhausted, "load: the model (" +
                                                   std::to_string(h.model_bytes()) +
                                                   " bytes) exceeds the limit of " +
                                                   std::to_string(core_.options().max_model_bytes));
      std::string bytes;
      bytes.reserve(h.model_bytes());
      while (reader->Read(&m)) {
        if (m.part_case() != wire::LoadRequest::kChunk)
          throw Error(ErrorKind::kInvalidInput, "load: a second header");
        if (m.chunk().size() > h.model_bytes() - bytes.size())
          throw Error(ErrorKind::kInvalidInput, "load: more bytes than announced");
        bytes += m.chunk();
      }
      if (ctx->IsCancelled()) throw Error(ErrorKind::kIo, "load: the client went away");
      *rep = core_.load(client, h, bytes);
    });
  }

  grpc::Status Negotiate(grpc::ServerContext* ctx, const wire::PlanProposal* req,
                         wire::PlanReply* rep) override {
    std::string client;
    if (auto st = auth(ctx, &client); !st.ok()) return st;
    return guarded([&] { *rep = core_.negotiate(client, *req); });
  }

  grpc::Status Run(grpc::ServerContext* ctx,
                   grpc::ServerReaderWriter<wire::RunReply, wire::RunRequest>* stream) override {
    std::string client;
    if (auto st = auth(ctx, &client); !st.ok()) return st;
    Active a(active);
    std::shared_ptr<const RunReplyData> reply;
    grpc::Status st = guarded([&] {
      wire::RunRequest m;
      if (!stream->Read(&m) || !m.has_header())
        throw Error(ErrorKind::kInvalidInput, "run: the first message must be a RunHeader");
      const wire::RunHeader h = m.header();
      core_.check_session(client, h.session_id());  // refuse before receiving any tensor
      if (h.tensor_count() > 4096) throw Error(ErrorKind::kInvalidInput, "run: too many tensors");
      TensorAssembler as(h.tensor_count(), h.seq(), core_.options().max_tensor_bytes,
                         core_.options().max_call_bytes);
      while (!as.done() && stream->Read(&m)) {
        if (!m.has_chunk()) throw Error(ErrorKind::kInvalidInput, "run: a second header");
        as.add(m.chunk());
      }
      // A client that vanished mid-transfer: the partial tensors are freed here.
      if (!as.done()) throw Error(ErrorKind::kIo, "run: the client went away mid-transfer");
      reply = core_.run(client, h, as.take());
    });
    // A failed call (a client gone mid-transfer, a refused tensor) is not the steady stream the
    // kept tensor storage serves: give its memory back now.
    if (!st.ok()) {
      release_tensor_cache();
      return st;
    }
    wire::RunReply out;
    *out.mutable_result() = reply->result;
    if (!stream->Write(out)) return grpc::Status(grpc::StatusCode::CANCELLED, "client gone");
    bool ok = true;
    out.Clear();  // one message for every chunk: its buffer is reused
    for (const auto& [name, t] : reply->outputs) {
      encode_tensor(
          t, name, reply->seq, core_.options().max_chunk_bytes, out.mutable_chunk(),
          [&](bool) { ok = ok && stream->Write(out, grpc::WriteOptions().set_buffer_hint()); });
      if (!ok) return grpc::Status(grpc::StatusCode::CANCELLED, "client gone");
    }
    return grpc::Status::OK;
  }

  grpc::Status Close(grpc::ServerContext* ctx, const wire::CloseRequest* req,
                     wire::CloseReply*) override {
    std::string client;
    if (auto st = auth(ctx, &client); !st.ok()) return st;
    return guarded([&] { core_.close(client, req->session_id()); });
  }

 private:
  struct Active {
    std::atomic<size_t>& n;
    explicit Active(std::atomic<size_t>& x) : n(x) { ++n; }
    ~Active() { --n; }
  };

  // Every call: the token (constant-time), then a well-formed client id. A refusal says only
  // that the token is missing or wrong.
  grpc::Status auth(grpc::ServerContext* ctx, std::string* client) {
    const auto& md = ctx->client_metadata();
    auto t = md.find(kTokenKey);
    const std::string given =
        t == md.end() ? std::string() : std::string(t->second.data(), t->second.size());
    if (!token_equal(given, token_))
      return grpc::Status(grpc::StatusCode::UNAUTHENTICATED, "missing or wrong token");
    auto c = md.find(kClientKey);
    if (c != md.end()) *client = std::string(c->second.data(), c->second.size());
    if (!valid_client_id(*client))
      return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "missing or malformed client id");
    return grpc::Status::OK;
  }

  DeviceCore& core_;
  std::string token_;
};

class GrpcServer final : public RemoteServer {
 public:
  explicit GrpcServer(const ServeOptions& o) {
    if (o.token.empty()) throw Error(ErrorKind::kUsage, "serve: the token is empty");
    CoreOptions co;
    co.threads = o.threads;
    co.max_chunk_bytes = o.max_chunk_bytes;
    co.max_tensor_bytes = o.max_tensor_bytes;
    co.max_call_bytes = 2 * o.max_tensor_bytes;
    co.max_model_bytes = o.max_model_bytes;
    co.max_sessions_per_client = o.max_sessions_per_client;
    co.max_sessions = o.max_sessions;
    co.idle_timeout_s = o.idle_timeout_s;
    co.model_dir = o.model_dir;
    core_ = std::make_unique<DeviceCore>(co);
    service_ = std::make_unique<Service>(*core_, o.token);

    std::shared_ptr<grpc::ServerCredentials> creds;
    if (!o.tls_cert_file.empty() || !o.tls_key_file.empty()) {
      if (o.tls_cert_file.empty() || o.tls_key_file.empty())
        throw Error(ErrorKind::kUsage, "serve: TLS needs both --tls-cert and --tls-key");
      grpc::SslServerCredentialsOptions so;
      so.pem_key_cert_pairs.push_back(
          {read_file(o.tls_key_file, "--tls-key"), read_file(o.tls_cert_file, "--tls-cert")});
      creds = grpc::SslServerCredentials(so);
    } else {
      creds = grpc::InsecureServerCredentials();
    }
    grpc::ServerBuilder b;
    b.AddListeningPort(o.listen, creds, &port_);
    b.RegisterService(service_.get());
    b.SetMaxReceiveMessageSize(static_cast<int>(o.max_chunk_bytes + (1 << 20)));
    b.SetMaxSendMessageSize(static_cast<int>(o.max_chunk_bytes + (1 << 20)));
    // Dead clients (no FIN) are noticed by keepalive pings.
    b.AddChannelArgument(GRPC_ARG_KEEPALIVE_TIME_MS, 20000);
    b.AddChannelArgument(GRPC_ARG_KEEPALIVE_TIMEOUT_MS, 10000);
    b.AddChannelArgument(GRPC_ARG_KEEPALIVE_PERMIT_WITHOUT_CALLS, 1);
    b.AddChannelArgument(GRPC_ARG_HTTP2_MAX_PINGS_WITHOUT_DATA, 0);
    b.AddChannelArgument(GRPC_ARG_HTTP2_MIN_RECV_PING_INTERVAL_WITHOUT_DATA_MS, 5000);
    server_ = b.BuildAndStart();
    if (!server_ || port_ == 0) throw Error(ErrorKind::kIo, "serve: cannot listen on " + o.listen);
    reaper_ = std::thread([this] {
      std::unique_lock<std::mutex> lk(mu_);
      while (!stop_) {
        cv_.wait_for(lk, std::chrono::seconds(1));
        if (stop_) break;
        core_->reap_idle();
        trim_tensor_cache();  // kept tensor storage idle for 5 s goes back to the system
      }
    });
  }

  ~GrpcServer() override { shutdown(); }

  int port() const override { return port_; }
  void wait() override { server_->Wait(); }
  void shutdown() override {
    {
      std::lock_guard<std::mutex> lk(mu_);
      if (stop_) return;
      stop_ = true;
    }
    cv_.notify_all();
    server_->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(2));
    if (reaper_.joinable()) reaper_.join();
  }
  size_t session_count() const override { return core_->session_count(); }
  size_t active_calls() const override { return service_->active.load(); }

 private:
  std::unique_ptr<DeviceCore> core_;
  std::unique_ptr<Service> service_;
  std::unique_ptr<grpc::Server> server_;
  int port_ = 0;
  std::thread reaper_;
  std::mutex mu_;
  std::condition_variable cv_;
  bool stop_ = false;
};

}  // namespace
}  // namespace remote

std::unique_ptr<RemoteServer> RemoteServer::start(const ServeOptions& o) {
  return std::make_unique<remote::GrpcServer>(o);
}

std::string read_token_file(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  if (!f) throw Error(ErrorKind::kUsage, "--token-file " + path + ": cannot read it");
  std::stringstream ss;
  ss << f.rdbuf();
  std::string s = ss.str();
  const auto b = s.find_first_not_of(" \t\r\n");
  const auto e = s.find_last_not_of(" \t\r\n");
  if (b == std::string::npos) throw Error(ErrorKind::kUsage, "--token-file " + path + ": empty");
  return s.substr(b, e - b + 1);
}

}  // namespace dynaprec
