// The host-side Session (include/dynaprec/session.h): portions, constants, carried state, the
// report. The CPU device runs the graph executor in-process.
#include "dynaprec/session.h"

#include <chrono>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <set>

#include "dynaprec/cpu_features.h"
#include "dynaprec/error.h"
#include "dynaprec/onnx_import.h"
#include "dynaprec/ops.h"
#include "dynaprec/protocol.h"
#include "dynaprec/runner.h"
#include "dynaprec/thread_pool.h"

namespace dynaprec {

struct Session::Impl {
  std::string name;
  SessionOptions opts;
  std::unique_ptr<ModelRunner> exec;  // where the model runs (local or remote)
  std::string model_path;             // for a remote device (the file is sent to it)
  std::vector<ValueInfo> all_inputs;
  std::map<std::string, Tensor> state;  // carried inputs, by input name
  Report report;
  int64_t next_index = 0;

  std::optional<ControllerState> control;
  Plan plan;                         // the plan for the next portion (before negotiation)
  std::map<std::string, Format> io;  // transfer formats of streamed inputs and outputs
  uint64_t seq = 0;                  // negotiation sequence
  uint64_t run_seq = 0;              // run sequence (portions, canaries, re-runs)
  double canary_rate = 0;
  double canary_acc = 0;

  void init(const Model& m) {
    if (opts.portion < 1)
      throw Error(ErrorKind::kUsage, "--portion must be >= 1, got " + std::to_string(opts.portion));
    if (opts.threads > 0) ThreadPool::set_default_threads(opts.threads);
    ExecutorOptions eo;
    eo.threads = opts.threads;
    eo.monitor = opts.monitor;
    // DYNAPREC_NO_FUSE=1 (debugging): run the graph as written, without folding or fusion.
    if (const char* v = std::getenv("DYNAPREC_NO_FUSE"); v && *v && *v != '0')
      eo.fuse = eo.fold_constants = false;
    if (opts.device.rfind("grpc://", 0) == 0) {
      if (!remote_runner_factory())
        throw Error(ErrorKind::kUnsupported,
                    "device '" + opts.device + "': this build has no remote (gRPC) backend");
      if (model_path.empty())
        throw Error(ErrorKind::kUsage,
                    "device '" + opts.device + "': a remote device needs the model as a file");
      exec = remote_runner_factory()(opts.device, model_path, eo, opts.device_options);
    } else {
      exec = open_local_runner(m, opts.device, eo);
    }
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
    report.device_json = exec->device_json();
    eo_monitor_check();
    setup_policy();
    reset_state();
  }

  void eo_monitor_check() {
    if (opts.policy.kind != PolicyKind::kStatic && opts.monitor.rate <= 0)
      throw Error(ErrorKind::kUsage, "--policy " + std::string(policy_name(opts.policy.kind)) +
                                         " needs the monitor: --monitor-rate must be > 0");
  }

  static OpKind op_kind(const std::string& op) {
    return op == "Conv" || op == "ConvTranspose" ? OpKind::kConv2d : OpKind::kMatmul;
  }

  static double relative_cost(Format f) {
    switch (f) {
      case Format::kFp32:
        return 1.0;
      case Format::kFp16:
        return 1.0;
      case Format::kBf16:
        return 0.5;
      case Format::kFp8E4M3:
      case Format::kFp8E5M2:
        return 0.45;
      case Format::kInt8:
        return 0.3;
      case Format::kInt4:
        return 0.25;
      default:
        return 1.0;
    }
  }

  void setup_policy() {
    const PolicyConfig& pc = opts.policy;
    plan = opts.plan;
    for (const auto& [layer, f] : opts.pins) plan.layers[layer] = f;
    canary_rate = opts.canary_rate >= 0            ? opts.canary_rate
                  : pc.guarantee                   ? 1.0
                  : pc.kind == PolicyKind::kStatic ? 0.0
                                                   : 0.25;
    if (pc.guarantee) canary_rate = 1.0;
    setup_transfer();
    if (pc.kind == PolicyKind::kStatic) return;
    std::vector<ControlLayer> cls;
    for (size_t i = 0; i < exec->layers().size(); ++i) {
      const LayerInfo& li = exec->layers()[i];
      ControlLayer c;
      c.name = li.name;
      c.op = li.op;
      if (auto it = opts.pins.find(li.name); it != opts.pins.end())
        c.ladder = {it->second};
      else
        c.ladder = exec->ladder(i);
      for (Format f : c.ladder) c.cost.push_back(relative_cost(f));
      cls.push_back(std::move(c));
    }
    control = make_controller(pc, std::move(cls));
    plan = initial_plan(*control);
  }

  void setup_transfer() {
    const Format tf = opts.transfer ? *opts.transfer
                      : opts.policy.kind == PolicyKind::kStatic
                          ? transfer_format(opts.plan.default_format)
                          : Format::kFp32;
    io.clear();
    if (tf == Format::kFp32) return;
    for (const ValueInfo& v : all_inputs)
      if (v.dtype == DType::kF32 && !opts.consts.count(v.name) && !carried(v.name)) io[v.name] = tf;
    for (const ValueInfo& v : exec->outputs()) {
      bool carried_out = false;
      for (const auto& [o, i] : opts.carry) carried_out |= o == v.name;
      if (v.dtype == DType::kF32 && !carried_out) io[v.name] = tf;
    }
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
  impl_->model_path = model_path;
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

  PortionReport pr;
  pr.index = m.next_index;
  const auto t0 = std::chrono::steady_clock::now();

  // Negotiate the plan with the device: each layer's format accepted or countered.
  PlanProposal prop;
  prop.seq = ++m.seq;
  for (const LayerInfo& li : m.exec->layers())
    prop.layers.push_back({li.name, Impl::op_kind(li.op), m.plan.at(li.name)});
  const PlanReply reply = m.exec->negotiate(prop);
  Plan agreed = reply.plan();
  agreed.default_format = m.plan.default_format;
  agreed.io = m.io;
  std::map<std::string, std::string> countered;
  for (const LayerAnswer& a : reply.layers)
    if (!a.reason.empty()) {
      countered[a.layer] = a.reason;
      pr.negotiation.push_back(a.layer + ": " + a.reason);
    }

  const bool looping = m.control.has_value();
  RunStats stats;
  stats.profile_ops = m.opts.profile_ops;
  stats.monitor = looping || m.opts.monitor.rate > 0;
  Traffic traffic;
  TensorMap out = m.exec->run(in, agreed, &stats, ++m.run_seq, &traffic);

  // How hard this portion was for the model: the ambiguity of its probability output (the first
  // such output; monitor.h mean_ambiguity), taken from what is released, on every portion.
  auto ambiguity_of = [&](const TensorMap& got) -> std::optional<double> {
    if (!stats.monitor) return std::nullopt;
    for (const auto& [name, t] : got) {
      if (t.dtype() != DType::kF32 || t.rank() < 1 || t.numel() == 0) continue;
      const double a =
          mean_ambiguity({t.data_as<float>(), static_cast<size_t>(t.numel())}, t.dim(t.rank() - 1));
      if (!std::isnan(a)) return a;
    }
    return std::nullopt;
  };

  // The canary: this portion again in fp32, for the true output SQNR.
  m.canary_acc += m.canary_rate;
  const bool canary = m.canary_rate > 0 && (pr.index == 0 || m.canary_acc >= 1.0);
  TensorMap ref;
  auto output_sqnr = [&](const TensorMap& got) {
    double worst = std::numeric_limits<double>::infinity();
    for (const auto& [name, r] : ref) {
      const Tensor& g = got.at(name);
      if (r.dtype() != DType::kF32 || g.dtype() != DType::kF32 || r.numel() != g.numel()) continue;
      const double db = sqnr_db({r.data_as<float>(), static_cast<size_t>(r.numel())},
                                {g.data_as<float>(), static_cast<size_t>(g.numel())});
      if (!std::isnan(db)) worst = std::min(worst, db);
    }
    return worst;
  };
  if (canary) {
    m.canary_acc -= std::floor(m.canary_acc);
    pr.canary = true;
    const auto c0 = std::chrono::steady_clock::now();
    Plan fp32;
    ref = m.exec->run(in, fp32, nullptr, ++m.run_seq);
    pr.canary_ms =
        std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - c0).count();
    pr.output_sqnr_db = output_sqnr(out);
  }

  Observation obs;
  obs.portion = pr.index;
  obs.layers = stats.reports;
  obs.output_sqnr_db = pr.output_sqnr_db;
  obs.output_ambiguity = ambiguity_of(out);
  if (looping) {
    Decision d = decide(*m.control, obs);
    // --guarantee: a portion below target is run again at the raised plan before release.
    while (d.rerun && pr.reruns < 8 && canary) {
      ++pr.reruns;
      for (const Switch& sw : d.switches)
        pr.switches.push_back({sw.layer, sw.from, sw.to, sw.reason});
      agreed = d.plan;
      agreed.io = m.io;
      stats.reports.clear();
      out = m.exec->run(in, agreed, &stats, ++m.run_seq, &traffic);
      pr.output_sqnr_db = output_sqnr(out);
      obs.layers = stats.reports;
      obs.output_sqnr_db = pr.output_sqnr_db;
      obs.output_ambiguity = ambiguity_of(out);
      d = decide(*m.control, obs);
    }
    for (const Switch& sw : d.switches)
      pr.switches.push_back({sw.layer, sw.from, sw.to, sw.reason});
    m.plan = d.plan;
  }
  pr.time_ms =
      std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
  pr.monitor_ms = stats.monitor_ms;

  if (obs.output_ambiguity) pr.output_metrics["ambiguity"] = *obs.output_ambiguity;
  // End-to-end metrics of probability outputs against the canary.
  if (canary)
    for (const auto& [name, r] : ref) {
      const Tensor& g = out.at(name);
      if (r.dtype() != DType::kF32 || r.rank() < 1 || g.numel() != r.numel()) continue;
      const int64_t last = r.dim(r.rank() - 1);
      const std::span<const float> rs(r.data_as<float>(), static_cast<size_t>(r.numel())),
          gs(g.data_as<float>(), static_cast<size_t>(g.numel()));
      if (!looks_like_probabilities(rs, last)) continue;
      pr.output_metrics["kl"] = mean_kl(rs, gs, last);
      pr.output_metrics["top1_agree"] = top1_agreement(rs, gs, last);
      pr.output_metrics["entropy"] = mean_entropy(gs, last);
      break;
    }

  // What crossed for the released run (the canary is the device's own check: not a transfer).
  pr.bytes_to_device = traffic.to_device;
  pr.bytes_from_device = traffic.from_device;
  const auto& infos = m.exec->layers();
  std::vector<const QualityReport*> by_layer(infos.size(), nullptr);
  for (const QualityReport& q : stats.reports)
    if (q.layer < by_layer.size()) by_layer[q.layer] = &q;
  const auto names = metric_names();
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
    if (r.chained_with >= 0) lr.chained_with = infos[static_cast<size_t>(r.chained_with)].name;
    if (auto it = countered.find(lr.name); it != countered.end()) lr.fallback = it->second;
    if (const QualityReport* qp = by_layer[static_cast<size_t>(r.layer)]) {
      const QualityReport& q = *qp;
      lr.metrics.reserve(10 + names.size());
      auto put = [&](const char* k, double v) {
        if (!std::isnan(v)) lr.metrics[k] = v;
      };
      put("sqnr_db", q.sqnr_db);
      put("amax", q.amax);
      put("variance", q.variance);
      lr.metrics["saturated"] = q.saturated;
      lr.metrics["underflow"] = q.underflow;
      lr.metrics["nan"] = q.nan_count;
      lr.metrics["inf"] = q.inf_count;
      lr.metrics["sampled"] = q.sampled;
      // Predicted SQNR one step lower and higher on the layer's ladder.
      if (m.control) {
        const auto& lad = m.control->layers[static_cast<size_t>(r.layer)].ladder;
        for (size_t k = 0; k < lad.size(); ++k)
          if (lad[k] == r.format) {
            if (k + 1 < lad.size())
              put("pred_sqnr_db_lower", q.pred_sqnr_db[static_cast<size_t>(lad[k + 1])]);
            if (k > 0) put("pred_sqnr_db_higher", q.pred_sqnr_db[static_cast<size_t>(lad[k - 1])]);
          }
      }
      for (size_t c = 0; c < names.size() && c < kMaxCustomMetrics; ++c)
        put(names[c].c_str(), q.custom[c]);
    }
    pr.layers.push_back(std::move(lr));
  }
  if (m.control)  // the controller's cost model learns the layers' work
    for (const LayerRun& r : stats.layers)
      m.control->layers[static_cast<size_t>(r.layer)].macs = r.macs;
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
