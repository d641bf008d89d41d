// dynaprec info [--json]: devices, their ISA features and the formats each supports per op.
#include <fmt/format.h>

#include <iostream>
#include <nlohmann/json.hpp>

#include "cli.h"
#include "dynaprec/convert.h"
#include "dynaprec/cpu_features.h"
#include "dynaprec/device.h"
#include "dynaprec/formats.h"

namespace dynaprec::cli {
namespace {

const char* overflow_name(OverflowKind k) {
  switch (k) {
    case OverflowKind::kInfinity:
      return "inf";
    case OverflowKind::kSaturate:
      return "saturate";
    case OverflowKind::kSaturateFiniteKeepInf:
      return "saturate-finite";
    case OverflowKind::kClamp:
      return "clamp";
  }
  return "?";
}

const char* scale_name(ScaleKind k) {
  switch (k) {
    case ScaleKind::kNone:
      return "none";
    case ScaleKind::kPerTensorOrChannel:
      return "fp32 per tensor or channel";
    case ScaleKind::kPerGroupFp16:
      return "fp16 per group";
  }
  return "?";
}

nlohmann::json info_json() {
  const CpuFeatures& f = cpu_features();
  nlohmann::json formats = nlohmann::json::array();
  std::vector<std::string> all;
  for (const FormatInfo& r : kFormats) {
    all.emplace_back(r.name);
    formats.push_back({{"name", r.name},
                       {"storage_bits", r.storage_bits},
                       {"group_size", r.group_size},
                       {"exponent_bits", r.exponent_bits},
                       {"mantissa_bits", r.mantissa_bits},
                       {"max_finite", r.max_finite},
                       {"overflow", overflow_name(r.overflow)},
                       {"scale", scale_name(r.scale)}});
  }
  nlohmann::json devices = nlohmann::json::array();
  for (const std::string& name : Registry::instance().names()) {
    const auto dev = Registry::instance().open(name);
    const DeviceCaps& caps = dev->caps();
    nlohmann::json ops = nlohmann::json::object(), refused = nlohmann::json::object();
    for (size_t o = 0; o < kOpCount; ++o) {
      const auto op = static_cast<OpKind>(o);
      std::vector<std::string> fl;
      for (const FormatInfo& r : kFormats) {
        const Format one[] = {r.format};
        if (const auto why = dev->supports(op, one))
          refused[std::string(op_name(op))][std::string(r.name)] = why->message();
        else
          fl.emplace_back(r.name);
      }
      ops[std::string(op_name(op))] = fl;
    }
    nlohmann::json d = {{"name", caps.name},
                        {"brand", caps.description},
                        {"features", caps.features},
                        {"threads", caps.threads},
                        {"ops", ops},
                        {"refused", refused}};
    if (name == "cpu") {
      d["vendor"] = f.vendor;
      d["isa_cap"] = f.isa_cap;
      d["simd_target"] = simd_target_name();
    }
    devices.push_back(d);
  }
  (void)all;
  return {{"version", "0.1.0"}, {"devices", devices}, {"formats", formats}};
}

void print_text(const nlohmann::json& j) {
  for (const auto& d : j["devices"]) {
    fmt::print("device {}: {} ({} threads)\n", d["name"].get<std::string>(),
               d["brand"].get<std::string>(), d["threads"].get<int>());
    std::string feats;
    for (const auto& s : d["features"]) feats += s.get<std::string>() + " ";
    fmt::print("  features:    {}\n", feats);
    fmt::print("  simd target: {} (DYNAPREC_ISA={})\n", d["simd_target"].get<std::string>(),
               d["isa_cap"].get<std::string>());
    for (const auto& [op, fl] : d["ops"].items()) {
      std::string names;
      for (const auto& s : fl) names += s.get<std::string>() + " ";
      if (names.empty() && d["refused"].contains(op)) {
        names = "refused: " + d["refused"][op].begin().value().get<std::string>();
      }
      fmt::print("  op {:<10} {}\n", op, names);
    }
  }
  fmt::print("formats:\n  {:<8} {:>4} {:>5} {:>3} {:>3} {:>14}  {:<16} {}\n", "name", "bits",
             "group", "e", "m", "max finite", "overflow", "scale");
  for (const auto& r : j["formats"])
    fmt::print("  {:<8} {:>4} {:>5} {:>3} {:>3} {:>14.6g}  {:<16} {}\n",
               r["name"].get<std::string>(), r["storage_bits"].get<int>(),
               r["group_size"].get<int>(), r["exponent_bits"].get<int>(),
               r["mantissa_bits"].get<int>(), r["max_finite"].get<double>(),
               r["overflow"].get<std::string>(), r["scale"].get<std::string>());
}

}  // namespace

void register_info(CLI::App& app) {
  auto* cmd = app.add_subcommand("info", "devices, ISA features and formats supported per op");
  auto json = std::make_shared<bool>(false);
  cmd->add_flag("--json", *json, "print JSON instead of text");
  cmd->callback([json] {
    const nlohmann::json j = info_json();
    if (*json)
      std::cout << j.dump(2) << "\n";
    else
      print_text(j);
  });
}

}  // namespace dynaprec::cli
