// dynaprec run MODEL.onnx --input NAME=FILE.npy ... --output-dir DIR [options]   (CONTRACT §2)
// dynaprec bench model MODEL.onnx --input NAME=FILE.npy ... [--precision F] [--runs N] ...
#include <fmt/format.h>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <nlohmann/json.hpp>

#include "cli.h"
#include "dynaprec/error.h"
#include "dynaprec/html_report.h"
#include "dynaprec/npy.h"
#include "dynaprec/session.h"

namespace dynaprec::cli {
namespace {

std::pair<std::string, std::string> split_eq(const std::string& s, const char* flag) {
  const auto eq = s.find('=');
  if (eq == std::string::npos || eq == 0 || eq + 1 == s.size())
    throw Error(ErrorKind::kUsage, std::string(flag) + " expects NAME=VALUE, got '" + s + "'");
  return {s.substr(0, eq), s.substr(eq + 1)};
}

Format parse_format(const std::string& s, const std::string& where) {
  auto f = format_from_name(s);
  if (!f)
    throw Error(ErrorKind::kUsage, where + ": unknown format '" + s +
                                       "' (formats: " + std::string(format_names_list()) + ")");
  return *f;
}

TensorMap read_inputs(const std::vector<std::string>& specs, const char* flag) {
  TensorMap m;
  for (const auto& s : specs) {
    auto [name, path] = split_eq(s, flag);
    if (m.count(name))
      throw Error(ErrorKind::kUsage, std::string(flag) + " " + name + " given twice");
    m[name] = npy_read(path);
  }
  return m;
}

struct CommonArgs {
  std::string model;
  std::vector<std::string> inputs, consts, carry, pins;
  std::string precision = "fp32", plan_file, policy = "static", device = "cpu", token_file, tls_ca;
  std::string transfer;
  double target_sqnr = 30;
  double monitor_rate = -1;
  double canary_rate = -1;
  double difficulty_knee = PolicyConfig{}.difficulty_knee;
  int threads = 0;
  int64_t portion = 1;
  uint64_t seed = 0;
  bool guarantee = false;

  void add(CLI::App* c, bool stream) {
    c->add_option("model", model, "ONNX model file")->required();
    c->add_option("--input", inputs, "NAME=FILE.npy (repeatable)")->required();
    c->add_option("--const", consts, "NAME=FILE.npy: given whole to every portion");
    if (stream) {
      c->add_option("--carry", carry, "OUT=IN: output OUT of portion i feeds input IN of i+1");
      c->add_option("--portion", portion, "samples per portion (first axis)")
          ->check(CLI::PositiveNumber);
    }
    c->add_option("--precision", precision, "every layer at this format (default fp32)");
    c->add_option("--plan", plan_file, "JSON {\"layer\": \"format\", ...}");
    c->add_option("--pin", pins, "NAME=F: keep layer NAME at format F (repeatable)");
    c->add_option("--policy", policy, "static (default), dynamic or seed");
    c->add_option("--target-sqnr", target_sqnr, "dB, for --policy dynamic/seed");
    c->add_flag("--guarantee", guarantee, "re-run portions below target at higher precision");
    c->add_option("--difficulty-knee", difficulty_knee,
                  "dynamic: inputs whose output ambiguity exceeds this multiple of the stream's "
                  "usual one raise every budget (default 2; 0: off)")
        ->check(CLI::NonNegativeNumber);
    c->add_option("--transfer", transfer,
                  "format streamed float32 inputs and outputs cross to and from the device in "
                  "(default: the --precision of a static run, fp32 with a policy)");
    c->add_option("--device", device, "cpu (default) or grpc://HOST:PORT");
    c->add_option("--token-file", token_file, "token for a grpc:// device");
    c->add_option("--tls-ca", tls_ca,
                  "CA certificate (PEM) to trust for a grpc:// device over TLS");
    c->add_option("--monitor-rate", monitor_rate,
                  "share of each layer output the monitor samples (default 1/4096 with a policy, "
                  "off for static runs; 0 turns it off)");
    c->add_option("--canary-rate", canary_rate,
                  "share of portions also run in fp32 to measure the output SQNR (default 0.25 "
                  "with a policy, 1 with --guarantee)");
    c->add_option("--threads", threads, "compute threads (default: all cores)");
    c->add_option("--seed", seed, "random seed");
  }

  SessionOptions options() const {
    SessionOptions o;
    o.device = device;
    if (!token_file.empty()) o.device_options["token_file"] = token_file;
    if (!tls_ca.empty()) o.device_options["tls_ca"] = tls_ca;
    if (device.rfind("grpc://", 0) == 0 && token_file.empty())
      throw Error(ErrorKind::kUsage,
                  "--device " + device + " needs --token-file F (the server's token)");
    o.threads = threads;
    o.portion = portion;
    o.plan.default_format = parse_format(precision, "--precision");
    const auto kind = policy_from_name(policy);
    if (!kind)
      throw Error(ErrorKind::kUsage,
                  "--policy: unknown policy '" + policy + "' (policies: static, seed, dynamic)");
    o.policy.kind = *kind;
    o.policy.target_sqnr_db = target_sqnr;
    o.policy.guarantee = guarantee;
    o.policy.difficulty_knee = difficulty_knee;
    o.policy.static_format = o.plan.default_format;
    if (guarantee && *kind != PolicyKind::kDynamic)
      throw Error(ErrorKind::kUsage, "--guarantee needs --policy dynamic");
    // The monitor: on for the feedback loop (and wherever a rate is given), off for static runs.
    o.monitor.rate =
        monitor_rate >= 0 ? monitor_rate : (*kind == PolicyKind::kStatic ? 0.0 : o.monitor.rate);
    o.canary_rate = canary_rate;
    if (!transfer.empty()) o.transfer = parse_format(transfer, "--transfer");
    if (!plan_file.empty()) {
      std::ifstream f(plan_file);
      if (!f) throw Error(ErrorKind::kInvalidInput, "--plan: cannot open " + plan_file);
      nlohmann::json j;
      try {
        f >> j;
      } catch (const std::exception& e) {
        throw Error(ErrorKind::kInvalidInput, "--plan " + plan_file + ": not JSON: " + e.what());
      }
      if (!j.is_object())
        throw Error(ErrorKind::kInvalidInput,
                    "--plan " + plan_file + ": expected an object {\"layer\": \"format\"}");
      for (auto it = j.begin(); it != j.end(); ++it) {
        if (!it.value().is_string())
          throw Error(ErrorKind::kInvalidInput,
                      "--plan " + plan_file + ": layer '" + it.key() + "' needs a format name");
        o.plan.layers[it.key()] =
            parse_format(it.value().get<std::string>(), "--plan layer " + it.key());
      }
    }
    for (const auto& p : pins) {
      auto [name, f] = split_eq(p, "--pin");
      o.pins[name] = parse_format(f, "--pin " + name);
    }
    o.consts = read_inputs(consts, "--const");
    for (const auto& c : carry) o.carry.push_back(split_eq(c, "--carry"));
    return o;
  }
};

void run_cmd(const CommonArgs& a, const std::string& out_dir, const std::string& report_path,
             const std::string& html_path, const std::string& energy_table) {
  // The energy table is read first: a bad file is reported before any work is done.
  const EnergyModel energy =
      energy_table.empty() ? EnergyModel::defaults() : EnergyModel::from_file(energy_table);
  TensorMap streamed = read_inputs(a.inputs, "--input");
  Session s(a.model, a.options());
  s.report().energy = energy;
  nlohmann::json pol = {{"name", a.policy}, {"precision", a.precision}};
  if (a.policy != "static") pol["target_sqnr_db"] = a.target_sqnr;
  if (a.policy == "dynamic" && a.difficulty_knee != PolicyConfig{}.difficulty_knee)
    pol["difficulty_knee"] = a.difficulty_knee;  // (as the other front ends: defaults unlisted)
  s.report().policy_json = pol.dump();
  TensorMap out = s.run_stream(streamed);
  std::error_code ec;
  std::filesystem::create_directories(out_dir, ec);
  if (ec) throw Error(ErrorKind::kIo, "--output-dir " + out_dir + ": " + ec.message());
  for (const auto& [name, t] : out) {
    std::string file = name;
    std::replace(file.begin(), file.end(), '/', '_');
    npy_write((std::filesystem::path(out_dir) / (file + ".npy")).string(), t);
  }
  if (!report_path.empty()) s.report().write(report_path);
  if (!html_path.empty()) write_html(s.report(), html_path);
  const auto& ps = s.report().portions;
  double total = 0;
  for (const auto& p : ps) total += p.time_ms;
  std::cerr << fmt::format("dynaprec: {} portion(s), {:.2f} ms, outputs in {}\n", ps.size(), total,
                           out_dir);
}

double median_of(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v.size() % 2 ? v[v.size() / 2] : 0.5 * (v[v.size() / 2 - 1] + v[v.size() / 2]);
}

// The monitor's cost: two sessions of the same model and plan, the monitor off in one and on in
// the other (--monitor-rate, default 1/4096), run alternately (the order swapped every run), so
// that the machine's drift meets both alike.
void bench_monitor(const CommonArgs& a, const TensorMap& in, int runs, int warmup, bool json) {
  SessionOptions off = a.options(), on = off;
  off.monitor.rate = 0;
  on.monitor.rate = a.monitor_rate > 0 ? a.monitor_rate : MonitorConfig{}.rate;
  Session s_off(a.model, off), s_on(a.model, on);
  std::vector<double> t_off, t_on, mon;
  auto time_one = [&](Session& s, std::vector<double>& t, bool keep) {
    const auto t0 = std::chrono::steady_clock::now();
    s.run_portion(in);
    if (keep) {
      t.push_back(
          std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count());
      if (&s == &s_on) mon.push_back(s.report().portions.back().monitor_ms);
    }
    s.report().portions.clear();
  };
  for (int i = 0; i < warmup + runs; ++i) {
    const bool keep = i >= warmup;
    if (i % 2) {
      time_one(s_on, t_on, keep);
      time_one(s_off, t_off, keep);
    } else {
      time_one(s_off, t_off, keep);
      time_one(s_on, t_on, keep);
    }
  }
  const double m_off = median_of(t_off), m_on = median_of(t_on), m_mon = median_of(mon);
  const double overhead = m_on / m_off - 1;
  if (json) {
    std::cout << nlohmann::json({{"model", a.model},
                                 {"precision", a.precision},
                                 {"monitor_rate", on.monitor.rate},
                                 {"median_ms_monitor_off", m_off},
                                 {"median_ms_monitor_on", m_on},
                                 {"median_monitor_ms", m_mon},
                                 {"overhead", overhead},
                                 {"runs", runs}})
                     .dump()
              << "\n";
  } else {
    std::cout << fmt::format(
        "{} at {}: monitor off {:.3f} ms, on {:.3f} ms (rate {:g}; medians of {} alternating "
        "runs): overhead {:+.1f}%, monitor_ms {:.3f}\n",
        a.model, a.precision, m_off, m_on, on.monitor.rate, runs, 100 * overhead, m_mon);
  }
}

void bench_model(const CommonArgs& a, int runs, int warmup, bool json, bool profile,
                 bool monitor_overhead) {
  TensorMap in = read_inputs(a.inputs, "--input");
  if (monitor_overhead) return bench_monitor(a, in, runs, warmup, json);
  SessionOptions so = a.options();
  so.profile_ops = profile;
  Session s(a.model, so);
  std::vector<double> ms;
  std::map<std::string, double> op_ms;
  for (int i = 0; i < warmup + runs; ++i) {
    const auto t0 = std::chrono::steady_clock::now();
    s.run_portion(in);
    const double t =
        std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
    if (i >= warmup) {
      ms.push_back(t);
      for (const auto& [op, v] : s.report().portions.back().op_time_ms) op_ms[op] += v / runs;
    }
    s.report().portions.clear();
  }
  std::sort(ms.begin(), ms.end());
  const double median = median_of(ms);
  if (json) {
    std::cout << nlohmann::json({{"model", a.model},
                                 {"precision", a.precision},
                                 {"median_ms", median},
                                 {"min_ms", ms.front()},
                                 {"max_ms", ms.back()},
                                 {"runs", runs}})
                     .dump()
              << "\n";
  } else {
    std::cout << fmt::format("{} at {}: median {:.3f} ms, min {:.3f}, max {:.3f} ({} runs)\n",
                             a.model, a.precision, median, ms.front(), ms.back(), runs);
    if (profile) {
      std::vector<std::pair<double, std::string>> v;
      for (const auto& [op, t] : op_ms) v.push_back({t, op});
      std::sort(v.rbegin(), v.rend());
      for (const auto& [t, op] : v) std::cout << fmt::format("  {:<24} {:8.3f} ms\n", op, t);
    }
  }
}

}  // namespace

void register_run(CLI::App& app) {
  auto* c = app.add_subcommand("run", "run a model over a stream of inputs, portion by portion");
  auto args = std::make_shared<CommonArgs>();
  auto out_dir = std::make_shared<std::string>();
  auto report = std::make_shared<std::string>();
  auto html = std::make_shared<std::string>();
  auto energy = std::make_shared<std::string>();
  args->add(c, true);
  c->add_option("--output-dir", *out_dir, "where each output NAME is written as NAME.npy")
      ->required();
  c->add_option("--report", *report, "write the JSON report here (CONTRACT §3)");
  c->add_option("--html", *html, "write the HTML report here (one self-contained file)");
  c->add_option("--energy-table", *energy,
                "JSON {\"pj_per_mac\": {\"fp32\": 4.6, ...}, \"pj_per_byte\": 160} overriding "
                "the energy model (docs/report.md)");
  c->callback([=] { run_cmd(*args, *out_dir, *report, *html, *energy); });
}

void register_bench_model(CLI::App& bench) {
  auto* c = bench.add_subcommand("model", "latency of one portion of a model");
  auto args = std::make_shared<CommonArgs>();
  auto runs = std::make_shared<int>(20);
  auto warmup = std::make_shared<int>(3);
  auto json = std::make_shared<bool>(false);
  auto profile = std::make_shared<bool>(false);
  args->add(c, false);
  c->add_flag("--profile", *profile, "print the mean time per op type");
  c->add_option("--runs", *runs, "timed runs (default 20)")->check(CLI::PositiveNumber);
  c->add_option("--warmup", *warmup, "untimed runs first (default 3)")
      ->check(CLI::NonNegativeNumber);
  c->add_flag("--json", *json, "print JSON");
  auto monitor = std::make_shared<bool>(false);
  c->add_flag("--monitor-overhead", *monitor,
              "time the model with the monitor off and on (--monitor-rate, default 1/4096) in "
              "alternating runs and print both and the overhead");
  c->callback([=] { bench_model(*args, *runs, *warmup, *json, *profile, *monitor); });
}

}  // namespace dynaprec::cli
