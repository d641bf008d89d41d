// The run report (CONTRACT §3) and the energy model behind `energy_uj_model`.
#include <algorithm>
#include <cmath>
#include <fstream>
#include <nlohmann/json.hpp>
#include <stdexcept>

#include "dynaprec/error.h"
#include "dynaprec/session.h"

namespace dynaprec {

namespace {
template <typename V>  // the metrics' vector, const or not
auto metric_slot(V& v, std::string_view name) {
  return std::lower_bound(
      v.begin(), v.end(), name,
      [](const MetricMap::value_type& e, std::string_view n) { return e.first < n; });
}
}  // namespace

double& MetricMap::operator[](std::string_view name) {
  auto it = metric_slot(items_, name);
  if (it == items_.end() || it->first != name) it = items_.emplace(it, std::string(name), 0.0);
  return it->second;
}

MetricMap::const_iterator MetricMap::find(std::string_view name) const {
  auto it = metric_slot(items_, name);
  return it != items_.end() && it->first == name ? it : end();
}

double MetricMap::at(std::string_view name) const {
  const auto it = find(name);
  if (it == end()) throw std::out_of_range("no metric '" + std::string(name) + "'");
  return it->second;
}

// Energy per multiply-accumulate and per DRAM byte. Horowitz, "Computing's energy problem",
// ISSCC 2014 (45 nm): fp32 mult 3.7 pJ + add 0.9; fp16 mult 1.1 + add 0.4; int8 mult 0.2 +
// int32 add 0.1; 32-bit DRAM read 640 pJ (160 pJ/byte). bf16 is taken as fp16 less the
// narrower mantissa multiplier (~0.7 of its multiply), fp8 as int8 plus exponent handling
// (0.45), int4 as a quarter of the int8 multiply plus the int32 add. A model, not a measurement.
EnergyModel EnergyModel::defaults() {
  EnergyModel e{};
  e.pj_per_mac[static_cast<size_t>(Format::kFp32)] = 3.7 + 0.9;
  e.pj_per_mac[static_cast<size_t>(Format::kBf16)] = 0.77 + 0.4;
  e.pj_per_mac[static_cast<size_t>(Format::kFp16)] = 1.1 + 0.4;
  e.pj_per_mac[static_cast<size_t>(Format::kFp8E4M3)] = 0.45;
  e.pj_per_mac[static_cast<size_t>(Format::kFp8E5M2)] = 0.45;
  e.pj_per_mac[static_cast<size_t>(Format::kInt8)] = 0.2 + 0.1;
  e.pj_per_mac[static_cast<size_t>(Format::kInt4)] = 0.05 + 0.1;
  e.pj_per_byte = 160.0;
  e.source = "Horowitz ISSCC 2014 (45 nm), extrapolated for bf16/fp8/int4; a model";
  return e;
}

EnergyModel EnergyModel::from_file(const std::string& path) {
  const std::string where = "--energy-table " + path + ": ";
  std::ifstream f(path);
  if (!f) throw Error(ErrorKind::kInvalidInput, where + "cannot open the file (check the path)");
  nlohmann::json j;
  try {
    f >> j;
  } catch (const std::exception&) {
    throw Error(ErrorKind::kInvalidInput,
                where +
                    "not valid JSON (expected {\"pj_per_mac\": {\"fp32\": 4.6, ...}, "
                    "\"pj_per_byte\": 160})");
  }
  if (!j.is_object()) throw Error(ErrorKind::kInvalidInput, where + "expected a JSON object");
  EnergyModel e = defaults();
  auto positive = [&](const nlohmann::json& v, const std::string& key) {
    if (!v.is_number() || !std::isfinite(v.get<double>()) || v.get<double>() < 0)
      throw Error(ErrorKind::kInvalidInput, where + key + " must be a number >= 0");
    return v.get<double>();
  };
  for (auto it = j.begin(); it != j.end(); ++it) {
    if (it.key() == "pj_per_mac") {
      if (!it.value().is_object())
        throw Error(ErrorKind::kInvalidInput,
                    where + "pj_per_mac must be an object {\"format\": pJ, ...}");
      for (auto m = it.value().begin(); m != it.value().end(); ++m) {
        const auto fmt = format_from_name(m.key());
        if (!fmt)
          throw Error(ErrorKind::kInvalidInput,
                      where + "pj_per_mac: unknown format '" + m.key() +
                          "' (formats: " + std::string(format_names_list()) + ")");
        e.pj_per_mac[static_cast<size_t>(*fmt)] = positive(m.value(), "pj_per_mac." + m.key());
      }
    } else if (it.key() == "pj_per_byte") {
      e.pj_per_byte = positive(it.value(), "pj_per_byte");
    } else if (it.key() == "source") {
      if (!it.value().is_string())
        throw Error(ErrorKind::kInvalidInput, where + "source must be a string");
      e.source = it.value().get<std::string>();
    } else {
      throw Error(ErrorKind::kInvalidInput,
                  where + "unknown key '" + it.key() + "' (keys: pj_per_mac, pj_per_byte, source)");
    }
  }
  if (!j.contains("source")) e.source = "table from " + path + " (a model, not a measurement)";
  return e;
}

int64_t Report::switches() const {
  std::map<std::string, Format> last;
  int64_t n = 0;
  // Counted from the layers' precisions portion to portion (a --guarantee re-run's intermediate
  // plans are in the portion's "switches" but not counted twice).
  for (const auto& p : portions)
    for (const auto& l : p.layers) {
      auto [it, fresh] = last.emplace(l.name, l.precision);
      if (!fresh && it->second != l.precision) {
        ++n;
        it->second = l.precision;
      }
    }
  return n;
}

namespace {
nlohmann::json finite_or_null(double v) {
  return std::isfinite(v) ? nlohmann::json(v) : nlohmann::json(nullptr);
}
}  // namespace

std::string Report::to_json(int indent) const {
  using nlohmann::json;
  json j;
  j["model"] = model;
  j["device"] = json::parse(device_json);
  j["policy"] = json::parse(policy_json);
  json ps = json::array();
  double time = 0, energy_pj = 0;
  uint64_t bytes = 0, bytes32 = 0;
  std::map<std::string, double> macs_by_format;
  double macs_total = 0;
  for (const auto& p : portions) {
    json pj;
    pj["index"] = p.index;
    pj["time_ms"] = p.time_ms;
    pj["bytes_to_device"] = p.bytes_to_device;
    pj["bytes_from_device"] = p.bytes_from_device;
    if (p.output_sqnr_db) pj["output_sqnr_db"] = finite_or_null(*p.output_sqnr_db);
    pj["canary"] = p.canary;
    if (p.reruns) pj["reruns"] = p.reruns;
    pj["monitor_ms"] = p.monitor_ms;
    if (p.canary) pj["canary_ms"] = p.canary_ms;
    if (!p.output_metrics.empty()) {
      json om = json::object();
      for (const auto& [k, v] : p.output_metrics) om[k] = finite_or_null(v);
      pj["output_metrics"] = om;
    }
    if (!p.switches.empty()) {
      json sw = json::array();
      for (const auto& s : p.switches)
        sw.push_back({{"layer", s.layer},
                      {"from", std::string(format_name(s.from))},
                      {"to", std::string(format_name(s.to))},
                      {"reason", s.reason}});
      pj["switches"] = std::move(sw);
    }
    if (!p.negotiation.empty()) pj["negotiation"] = p.negotiation;
    json ls = json::array();
    uint64_t pbytes = 0, pbytes32 = 0;
    for (const auto& l : p.layers) {
      json lj;
      lj["name"] = l.name;
      lj["op"] = l.op;
      lj["precision"] = std::string(format_name(l.precision));
      json mj = json::object();
      for (const auto& [k, v] : l.metrics) mj[k] = finite_or_null(v);
      lj["metrics"] = mj;
      lj["bytes"] = l.bytes;
      lj["bytes_fp32"] = l.bytes_fp32;
      lj["macs"] = l.macs;
      lj["time_ms"] = l.time_ms;
      if (!l.fallback.empty()) lj["fallback"] = l.fallback;
      if (!l.chained_with.empty()) lj["chained_with"] = l.chained_with;
      ls.push_back(std::move(lj));
      pbytes += l.bytes;
      pbytes32 += l.bytes_fp32;
      macs_by_format[std::string(format_name(l.precision))] += static_cast<double>(l.macs);
      macs_total += static_cast<double>(l.macs);
      energy_pj +=
          static_cast<double>(l.macs) * energy.pj_per_mac[static_cast<size_t>(l.precision)] +
          static_cast<double>(l.bytes) * energy.pj_per_byte;
    }
    pj["layers"] = std::move(ls);
    ps.push_back(std::move(pj));
    time += p.time_ms;
    bytes += pbytes + p.bytes_to_device + p.bytes_from_device;
    bytes32 += pbytes32 + p.bytes_to_device + p.bytes_from_device;
    energy_pj += static_cast<double>(p.bytes_to_device + p.bytes_from_device) * energy.pj_per_byte;
  }
  j["portions"] = std::move(ps);
  json share = json::object();
  for (const auto& [f, m] : macs_by_format) share[f] = macs_total > 0 ? m / macs_total : 0.0;
  j["summary"] = {{"portions", portions.size()},
                  {"time_ms", time},
                  {"bytes_moved", bytes},
                  {"bytes_moved_fp32", bytes32},
                  {"energy_uj_model", energy_pj * 1e-6},
                  {"energy_model_source", energy.source},
                  {"precision_share", share},
                  {"switches", switches()}};
  return j.dump(indent);
}

void Report::write(const std::string& path) const {
  std::ofstream f(path);
  if (!f) throw Error(ErrorKind::kIo, "cannot write the report to " + path);
  f << to_json() << "\n";
  if (!f) throw Error(ErrorKind::kIo, "write error on " + path);
}

}  // namespace dynaprec
