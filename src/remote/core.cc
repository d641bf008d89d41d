// The remote device's logic without the transport (src/remote/core.h).
#include "remote/core.h"

#include <filesystem>
#include <fstream>
#include <random>
#include <span>

#include "dynaprec/device.h"
#include "dynaprec/error.h"
#include "dynaprec/onnx_import.h"
#include "dynaprec/thread_pool.h"

namespace dynaprec::remote {

struct DeviceCore::Session {
  std::string client, id;
  std::unique_ptr<ModelRunner> runner;
  std::mutex mu;  // one call at a time per session
  std::chrono::steady_clock::time_point last_used;
  uint64_t last_seq = 0;
  std::shared_ptr<const RunReplyData> last_reply;
};

bool valid_client_id(const std::string& id) {
  if (id.empty() || id.size() > 64) return false;
  for (char c : id)
    if (!(std::isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '-')) return false;
  return true;
}

bool token_equal(const std::string& given, const std::string& expected) {
  volatile unsigned char d = given.size() != expected.size();
  const size_t n = given.size();
  for (size_t i = 0; i < expected.size(); ++i) {
    const unsigned char g = n ? static_cast<unsigned char>(given[i % n]) : 0;
    d = d | (g ^ static_cast<unsigned char>(expected[i]));
  }
  return d == 0;
}

std::string random_id() {
  std::random_device rd;  // getrandom(2)
  static const char* hex = "0123456789abcdef";
  std::string s;
  for (int i = 0; i < 4; ++i) {
    uint32_t v = rd();
    for (int j = 0; j < 8; ++j, v >>= 4) s += hex[v & 15];
  }
  return s;
}

DeviceCore::DeviceCore(CoreOptions o) : opts_(std::move(o)) {
  // The device description, as a session's runner gives it (local_runner.cc).
  // The pool is sized once, before any session: opening a device with threads > 0 resizes the
  // process-wide pool, which must not happen while another session's kernels run.
  if (opts_.threads > 0) ThreadPool::set_default_threads(opts_.threads);
  const auto dev = Registry::instance().open("cpu", 0);
  const DeviceCaps& c = dev->caps();
  auto esc = [](const std::string& x) {
    std::string o;
    for (char ch : x) {
      if (ch == '"' || ch == '\\') o += '\\';
      if (static_cast<unsigned char>(ch) >= 0x20) o += ch;
    }
    return o;
  };
  device_json_ = "{\"name\": \"" + esc(c.name) + "\", \"spec\": \"" + esc(c.spec) +
                 "\", \"description\": \"" + esc(c.description) + "\"}";
}

DeviceCore::~DeviceCore() = default;

std::string DeviceCore::device_json() const { return device_json_; }

wire::HelloReply DeviceCore::hello(const wire::HelloRequest& r) const {
  try {
    check_peer_version(r.version().major(), r.version().minor());
  } catch (const Error& e) {
    throw CallError(CallError::kPrecondition, e.what());
  }
  wire::HelloReply out;
  to_wire(out.mutable_version());
  out.set_capabilities(kOurCaps | (opts_.model_dir.empty() ? 0 : kCapServerPaths));
  out.set_device_json(device_json_);
  auto* l = out.mutable_limits();
  l->set_max_chunk_bytes(opts_.max_chunk_bytes);
  l->set_max_tensor_bytes(opts_.max_tensor_bytes);
  l->set_max_model_bytes(opts_.max_model_bytes);
  l->set_max_sessions_per_client(opts_.max_sessions_per_client);
  l->set_idle_timeout_s(opts_.idle_timeout_s);
  return out;
}

wire::LoadReply DeviceCore::load(const std::string& client, const wire::LoadHeader& h,
                                 const std::string& bytes) {
  {
    std::lock_guard<std::mutex> lk(mu_);
    size_t mine = 0;
    for (const auto& [id, s] : sessions_) mine += s->client == client;
    if (mine >= opts_.max_sessions_per_client)
      throw CallError(CallError::kExhausted, "this client has " + std::to_string(mine) +
                                                 " sessions open (the limit): close one first");
    if (sessions_.size() >= opts_.max_sessions)
      throw CallError(CallError::kExhausted, "the server has the most sessions it allows open");
  }
  const auto& mc = h.monitor();
  if (!(mc.rate() >= 0 && mc.rate() <= 1) || mc.min_samples() > mc.max_samples() ||
      mc.max_samples() > (1u << 20))
    throw Error(ErrorKind::kInvalidInput, "load: monitor configuration out of range");
  std::string name = h.name().substr(0, 200);
  if (name.empty()) name = "model";
  Model model;
  if (!h.server_path().empty()) {
    if (opts_.model_dir.empty())
      throw CallError(CallError::kPermission,
                      "load: this server does not open models by path (serve --model-dir)");
    namespace fs = std::filesystem;
    std::error_code ec;
    const fs::path root = fs::canonical(opts_.model_dir, ec);
    const fs::path p = fs::weakly_canonical(root / h.server_path(), ec);
    const std::string rs = root.string() + "/";
    if (ec || p.string().rfind(rs, 0) != 0 || !fs::is_regular_file(p, ec))
      throw CallError(CallError::kNotFound, "load: no model '" + h.server_path().substr(0, 200) +
                                                "' under the server's model directory");
    if (fs::file_size(p, ec) > opts_.max_model_bytes)
      throw CallError(CallError::kExhausted, "load: the model exceeds the size limit");
    model = onnx_import_file(p.string());
  } else {
    if (bytes.size() != h.model_bytes())
      throw Error(ErrorKind::kInvalidInput, "load: got " + std::to_string(bytes.size()) +
                                                " model bytes, the header announced " +
                                                std::to_string(h.model_bytes()));
    if (crc32(bytes.data(), bytes.size()) != h.model_crc32())
      throw Error(ErrorKind::kInvalidInput, "load: the model's checksum does not match");
    model = onnx_import(
        std::span<const uint8_t>(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size()),
        name);
  }
  ExecutorOptions eo;
  eo.threads = 0;  // the pool sized in the constructor
  eo.monitor.rate = mc.rate();
  eo.monitor.min_samples = mc.min_samples();
  eo.monitor.max_samples = mc.max_samples();
  if (h.no_fuse()) eo.fuse = eo.fold_constants = false;
  auto s = std::make_shared<Session>();
  s->client = client;
  s->id = random_id();
  s->runner = open_local_runner(model, "cpu", eo);
  s->last_used = std::chrono::steady_clock::now();

  wire::LoadReply out;
  out.set_session_id(s->id);
  for (const auto& v : s->runner->inputs()) to_wire(v, out.add_inputs());
  for (const auto& v : s->runner->outputs()) to_wire(v, out.add_outputs());
  const auto& ls = s->runner->layers();
  for (size_t i = 0; i < ls.size(); ++i) to_wire(ls[i], s->runner->ladder(i), out.add_layers());
  out.set_device_json(s->runner->device_json());
  {
    std::lock_guard<std::mutex> lk(mu_);
    size_t mine = 0;
    for (const auto& [id, x] : sessions_) mine += x->client == client;
    if (mine >= opts_.max_sessions_per_client || sessions_.size() >= opts_.max_sessions)
      throw CallError(CallError::kExhausted, "too many sessions open");
    sessions_[s->id] = s;
  }
  return out;
}

std::shared_ptr<DeviceCore::Session> DeviceCore::find(const std::string& client,
                                                      const std::string& id) {
  std::lock_guard<std::mutex> lk(mu_);
  auto it = sessions_.find(id);
  // Another client's session is answered exactly as a missing one: nothing is revealed.
  if (it == sessions_.end() || it->second->client != client)
    throw CallError(CallError::kNotFound,
                    "no such session for this client (closed, timed out, or the server restarted)");
  it->second->last_used = std::chrono::steady_clock::now();
  return it->second;
}

void DeviceCore::check_session(const std::string& client, const std::string& session_id) {
  find(client, session_id);
}

wire::PlanReply DeviceCore::negotiate(const std::string& client, const wire::PlanProposal& p) {
  auto s = find(client, p.session_id());
  std::lock_guard<std::mutex> lk(s->mu);
  wire::PlanReply out;
  to_wire(s->runner->negotiate(from_wire(p)), &out);
  return out;
}

std::shared_ptr<const RunReplyData> DeviceCore::run(const std::string& client,
                                                    const wire::RunHeader& h, TensorMap inputs) {
  auto s = find(client, h.session_id());
  std::lock_guard<std::mutex> lk(s->mu);
  if (h.seq() == 0)
    throw Error(ErrorKind::kInvalidInput, "run: seq 0 (sequence numbers start at 1)");
  if (s->last_reply && h.seq() == s->last_seq) {  // a retry: the same outputs, computed once
    auto r = std::make_shared<RunReplyData>(*s->last_reply);
    r->result.set_replayed(true);
    return r;
  }
  if (h.seq() < s->last_seq)
    throw CallError(CallError::kPrecondition, "run: seq " + std::to_string(h.seq()) +
                                                  " is older than the last run (" +
                                                  std::to_string(s->last_seq) + ")");
  Plan plan = from_wire(h.plan());
  // Narrowed inputs back to what the layers compute with; the runner gets them as they are
  // (the crossing happened on the wire: plan.io is not applied twice).
  std::map<std::string, Format> io;
  io.swap(plan.io);
  for (auto& [name, t] : inputs)
    if (io.count(name)) t = decode_transfer(t);
  RunStats stats;
  stats.monitor = h.monitor();
  stats.profile_ops = h.profile_ops();
  TensorMap out;
  {
    std::lock_guard<std::mutex> dk(device_mu_);
    out = s->runner->run(inputs, plan, &stats, h.seq());
  }
  inputs.clear();
  auto r = std::make_shared<RunReplyData>();
  r->result.set_seq(h.seq());
  r->seq = h.seq();
  to_wire(stats, r->result.mutable_stats());
  r->result.set_tensor_count(static_cast<uint32_t>(out.size()));
  for (auto& [name, t] : out) {
    auto it = io.find(name);
    r->outputs.emplace_back(name, it == io.end() ? t : encode_transfer(t, it->second));
  }
  s->last_seq = h.seq();
  s->last_reply = r;
  return r;
}

void DeviceCore::close(const std::string& client, const std::string& session_id) {
  auto s = find(client, session_id);
  std::lock_guard<std::mutex> lk(mu_);
  sessions_.erase(session_id);
}

size_t DeviceCore::reap_idle() {
  const auto now = std::chrono::steady_clock::now();
  std::vector<std::shared_ptr<Session>> dead;  // destroyed outside the lock
  std::lock_guard<std::mutex> lk(mu_);
  for (auto it = sessions_.begin(); it != sessions_.end();) {
    if (now - it->second->last_used > std::chrono::seconds(opts_.idle_timeout_s)) {
      dead.push_back(it->second);
      it = sessions_.erase(it);
    } else {
      ++it;
    }
  }
  return dead.size();
}

size_t DeviceCore::session_count() const {
  std::lock_guard<std::mutex> lk(mu_);
  return sessions_.size();
}

}  // namespace dynaprec::remote
