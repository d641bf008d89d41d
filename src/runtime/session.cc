// The host-side Session (include/dynaprec/session.h): portions, constants, carried state, the
// report. The CPU device runs the graph executor in-process.
#include "dynaprec/session.h"

#include <chrono>
#include <cstdlib>
#include <cstring>
#include <set>

#include "dynaprec/cpu_features.h"
#include "dynaprec/error.h"
#include "dynaprec/onnx_import.h"
#include "dynaprec/ops.h"
#include "dynaprec/thread_pool.h"

namespace dynaprec {

struct Session::Impl {
  std::string name;
  SessionOptions opts;
  std::unique_ptr<Executor> exec;
  std::vector<ValueInfo> all_inputs;
  std::map<std::string, Tensor> state;  // carried inputs, by input name
  Report report;
  int64_t next_index = 0;

  void init(const Model& m) {
    if (opts.device != "cpu") {
      if (opts.device.rfind("grpc://", 0) == 0)
        throw Error(ErrorKind::kUnsupported,
                    "device '" + opts.device + "': the remote device is not built yet");
      throw Error(ErrorKind::kUnsupported, "unknown device '" + opts.device + "' (known: cpu)");
    }
    if (opts.portion < 1)
      throw Error(ErrorKind::kUsage, "--portion must be >= 1, got " + std::to_string(opts.portion));
    if (opts.threads > 0) ThreadPool::set_default_threads(opts.threads);
    ExecutorOptions eo;
    eo.threads = opts.threads;
    // DYNAPREC_NO_FUSE=1 (debugging): run the graph as written, without folding or fusion.
    if (const char* v = std::getenv("DYNAPREC_NO_FUSE"); v && *v && *v != '0')
      eo.fuse = eo.fold_constants = false;
    exec = std::make_unique<Executor>(m, eo);
    all_inputs = exec->inputs();
    auto declared = [&](const std::string& n) {
      for (const auto& v : all_inputs)
        if (v.name == n) return &v;
      return static_cast<const ValueInfo*>(nullptr);
    };
    std::string names;
    for (const auto& v : all_inputs) names += (names.empty() ? "" : ", ") + v.name;
    for (const auto& [n, t] : opts.consts)
      if (!declared(n))
        throw Error(
            ErrorKind::kInvalidInput,
            "--const " + n + ": the model has no input of that name (its inputs: " + names + ")");
    std::set<std::string> outs;
    for (const auto& o : exec->outputs()) outs.insert(o.name);
    for (const auto& [o, i] : opts.carry) {
      if (!outs.count(o))
        throw Error(ErrorKind::kInvalidInput,
                    "--carry " + o + "=" + i + ": the model has no output '" + o + "'");
      if (!declared(i))
        throw Error(ErrorKind::kInvalidInput, "--carry " + o + "=" + i +
                                                  ": the model has no input '" + i +
                                                  "' (its inputs: " + names + ")");
    }
    for (const auto& [layer, f] : opts.pins) {
      bool found = false;
      for (const auto& l : exec->layers()) found |= l.name == layer;
      if (!found)
        throw Error(ErrorKind::kInvalidInput,
                    "--pin " + layer + ": the model has no weighted layer of that name");
    }
    for (const auto& [layer, f] : opts.plan.layers) {
      bool found = false;
      for (const auto& l : exec->layers()) found |= l.name == layer;
      if (!found)
        throw Error(ErrorKind::kInvalidInput,
                    "plan: the model has no weighted layer named '" + layer + "'");
    }
    report.model = name;
    const CpuFeatures& cf = cpu_features();
    report.device_json =
        std::string("{\"name\": \"cpu\", \"description\": \"") + json_escape(cf.brand) +
        "\", \"threads\": " + std::to_string(ThreadPool::default_pool().threads()) + "}";
    reset_state();
  }

  static std::string json_escape(const std::string& s) {
    std::string o;
    for (char c : s) {
      if (c == '"' || c == '\\') o += '\\';
      if (static_cast<unsigned char>(c) < 0x20) continue;
      o += c;
    }
    return o;
  }

  void reset_state() {
    state.clear();
    for (const auto& [o, i] : opts.carry) {
      if (auto it = opts.consts.find(i); it != opts.consts.end()) {
        state[i] = it->second;
        continue;
      }
      const ValueInfo* v = nullptr;
      for (const auto& d : all_inputs)
        if (d.name == i) v = &d;
      Shape s;
      for (const Dim& d : v->shape) {
        if (!d.known())
          throw Error(ErrorKind::kInvalidInput,
                      "--carry input " + i + " has a symbolic dim ('" + d.symbol +
                          "'): give its first value with --const " + i + "=FILE.npy");
        s.push_back(d.size);
      }
      state[i] = Tensor::zeros(s, v->dtype);
    }
  }

  bool carried(const std::string& in) const {
    for (const auto& [o, i] : opts.carry)
      if (i == in) return true;
    return false;
  }
};

Session::Session(const std::string& model_path, SessionOptions opts)
    : impl_(std::make_unique<Impl>()) {
  impl_->name = model_path;
  impl_->opts = std::move(opts);
  impl_->init(onnx_import_file(model_path));
}

Session::Session(const Model& model, std::string name, SessionOptions opts)
    : impl_(std::make_unique<Impl>()) {
  impl_->name = std::move(name);
  impl_->opts = std::move(opts);
  impl_->init(model);
}

Session::~Session() = default;

const std::vector<ValueInfo>& Session::inputs() const { return impl_->all_inputs; }
const std::vector<ValueInfo>& Session::outputs() const { return impl_->exec->outputs(); }
const std::vector<LayerInfo>& Session::layers() const { return impl_->exec->layers(); }
Report& Session::report() { return impl_->report; }
const Report& Session::report() const { return impl_->report; }
void Session::reset_state() { impl_->reset_state(); }

std::vector<std::string> Session::streamed_inputs() const {
  std::vector<std::string> out;
  for (const auto& v : impl_->all_inputs)
    if (!impl_->opts.consts.count(v.name) && !impl_->carried(v.name)) out.push_back(v.name);
  return out;
}

namespace {
uint64_t tensor_bytes(const Tensor& t) { return t.nbytes() + t.scale_bytes(); }
}  // namespace

TensorMap Session::run_portion(const TensorMap& streamed) {
  Impl& m = *impl_;
  TensorMap in;
  for (const auto& name : streamed_inputs()) {
    auto it = streamed.find(name);
    if (it == streamed.end())
      throw Error(ErrorKind::kInvalidInput,
                  "input " + name + " is missing (give --input " + name + "=FILE.npy)");
    in[name] = it->second;
  }
  for (const auto& [name, t] : streamed)
    if (!in.count(name))
      throw Error(ErrorKind::kInvalidInput,
                  "input " + name + " is not a streamed input of the model" +
                      (m.opts.consts.count(name) || m.carried(name)
                           ? std::string(" (it is given as --const or --carry)")
                           : std::string()));
  for (const auto& [name, t] : m.opts.consts)
    if (!m.carried(name)) in[name] = t;
  for (const auto& [name, t] : m.state) in[name] = t;

  Plan plan = m.opts.plan;
  for (const auto& [layer, f] : m.opts.pins) plan.layers[layer] = f;

  PortionReport pr;
  pr.index = m.next_index;
  for (const auto& [name, t] : in) pr.bytes_to_device += tensor_bytes(t);
  RunStats stats;
  stats.profile_ops = m.opts.profile_ops;
  const auto t0 = std::chrono::steady_clock::now();
  TensorMap out = m.exec->run(in, plan, &stats);
  pr.time_ms =
      std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
  for (const auto& [name, t] : out) pr.bytes_from_device += tensor_bytes(t);
  const auto& infos = m.exec->layers();
  for (const LayerRun& r : stats.layers) {
    LayerReport lr;
    lr.name = infos[static_cast<size_t>(r.layer)].name;
    lr.op = infos[static_cast<size_t>(r.layer)].op;
    lr.precision = r.format;
    lr.bytes = r.bytes;
    lr.bytes_fp32 = r.bytes_fp32;
    lr.macs = r.macs;
    lr.time_ms = r.time_ms;
    lr.fallback = r.fallback;
    pr.layers.push_back(std::move(lr));
  }
  pr.op_time_ms = std::move(stats.op_time_ms);
  for (const auto& [o, i] : m.opts.carry) m.state[i] = out.at(o);
  m.report.portions.push_back(std::move(pr));
  ++m.next_index;
  return out;
}

TensorMap Session::run_stream(const TensorMap& streamed) {
  const auto names = streamed_inputs();
  int64_t length = -1;
  std::string first;
  for (const auto& name : names) {
    auto it = streamed.find(name);
    if (it == streamed.end())
      throw Error(ErrorKind::kInvalidInput,
                  "input " + name + " is missing (give --input " + name + "=FILE.npy)");
    if (it->second.rank() < 1)
      throw Error(ErrorKind::kInvalidInput,
                  "input " + name + " is a scalar: a streamed input needs a first (stream) axis");
    if (length < 0) {
      length = it->second.dim(0);
      first = name;
    } else if (it->second.dim(0) != length) {
      throw Error(ErrorKind::kInvalidInput, "streamed inputs differ in length: " + first + " has " +
                                                std::to_string(length) + " samples, " + name +
                                                " has " + std::to_string(it->second.dim(0)));
    }
  }
  const int64_t p = impl_->opts.portion;
  std::map<std::string, std::vector<Tensor>> parts;
  const int64_t count = length <= 0 ? (names.empty() ? 1 : 0) : (length + p - 1) / p;
  for (int64_t i = 0; i < count; ++i) {
    TensorMap in;
    for (const auto& name : names) {
      const Tensor& t = streamed.at(name);
      in[name] = slice(t, {i * p}, {std::min(length, (i + 1) * p)}, {0});
    }
    TensorMap out = run_portion(in);
    for (auto& [name, t] : out) parts[name].push_back(std::move(t));
  }
  TensorMap result;
  for (auto& [name, ts] : parts) {
    if (ts.size() == 1) {
      result[name] = std::move(ts[0]);
      continue;
    }
    for (const Tensor& t : ts)
      if (t.rank() < 1)
        throw Error(ErrorKind::kInvalidInput,
                    "output " + name + " is a scalar: portions cannot be concatenated");
    result[name] = concat(ts, 0);
  }
  return result;
}

}  // namespace dynaprec
