// dynaprec inspect MODEL.onnx [--json]: inputs, outputs, op histogram, parameters, and which
// nodes the runtime can run.
#include <fmt/format.h>

#include <iostream>
#include <map>
#include <nlohmann/json.hpp>

#include "cli.h"
#include "dynaprec/onnx_import.h"
#include "exec/op_table.h"

namespace dynaprec::cli {
namespace {

nlohmann::json values_json(const std::vector<ValueInfo>& vs) {
  nlohmann::json a = nlohmann::json::array();
  for (const ValueInfo& v : vs) {
    nlohmann::json shape = nlohmann::json::array();
    for (const Dim& d : v.shape) {
      if (d.known())
        shape.push_back(d.size);
      else
        shape.push_back(d.symbol.empty() ? "?" : d.symbol);
    }
    a.push_back({{"name", v.name}, {"dtype", std::string(dtype_name(v.dtype))}, {"shape", shape}});
  }
  return a;
}

void count_ops(const Graph& g, std::map<std::string, int>& hist, size_t& nodes) {
  for (const Node& n : g.nodes) {
    ++hist[n.op];
    ++nodes;
    for (const auto& [k, a] : n.attrs)
      if (const auto* sub = std::get_if<std::shared_ptr<Graph>>(&a)) count_ops(**sub, hist, nodes);
  }
}

nlohmann::json inspect_json(const std::string& path) {
  const Model m = onnx_import_file(path);
  std::map<std::string, int> hist;
  size_t nodes = 0;
  count_ops(m.graph, hist, nodes);
  int64_t params = 0;
  size_t param_bytes = 0;
  for (const auto& [name, t] : m.graph.initializers) {
    params += t.numel();
    param_bytes += t.nbytes();
  }
  for (const Node& n : m.graph.nodes)  // Constant nodes hold weights too
    if (n.op == "Constant")
      for (const auto& [k, a] : n.attrs)
        if (const auto* t = std::get_if<Tensor>(&a)) {
          params += t->numel();
          param_bytes += t->nbytes();
        }
  const std::vector<std::string> unsupported = exec::unsupported_nodes(m.graph);
  nlohmann::json opsets = nlohmann::json::object();
  for (const auto& [d, v] : m.opsets) opsets[d.empty() ? "ai.onnx" : d] = v;
  return {{"model", path},
          {"producer", m.producer},
          {"ir_version", m.ir_version},
          {"opsets", opsets},
          {"inputs", values_json(m.graph.inputs)},
          {"outputs", values_json(m.graph.outputs)},
          {"nodes", nodes},
          {"ops", hist},
          {"parameters", params},
          {"parameter_bytes", param_bytes},
          {"runnable", unsupported.empty()},
          {"unsupported", unsupported}};
}

void print_text(const nlohmann::json& j) {
  fmt::print("model {} (producer {}, IR {}, opset {})\n", j["model"].get<std::string>(),
             j["producer"].get<std::string>(), j["ir_version"].get<int64_t>(), j["opsets"].dump());
  for (const char* side : {"inputs", "outputs"})
    for (const auto& v : j[side])
      fmt::print("  {:<7} {} {} {}\n", std::string(side) == "inputs" ? "input" : "output",
                 v["name"].get<std::string>(), v["dtype"].get<std::string>(), v["shape"].dump());
  fmt::print("  {} nodes, {} parameters ({:.2f} MiB)\n", j["nodes"].get<size_t>(),
             j["parameters"].get<int64_t>(), j["parameter_bytes"].get<double>() / (1 << 20));
  std::string ops;
  for (const auto& [op, count] : j["ops"].items())
    ops += fmt::format("{}×{} ", op, count.get<int>());
  fmt::print("  ops: {}\n", ops);
  if (j["runnable"].get<bool>()) {
    fmt::print("  every node's op has a dynaprec kernel\n");
  } else {
    fmt::print("  {} node(s) have no dynaprec kernel yet:\n", j["unsupported"].size());
    for (const auto& u : j["unsupported"]) fmt::print("    {}\n", u.get<std::string>());
  }
}

}  // namespace

void register_inspect(CLI::App& app) {
  auto* cmd = app.add_subcommand("inspect", "inputs, outputs, ops and parameters of an ONNX model");
  auto path = std::make_shared<std::string>();
  auto json = std::make_shared<bool>(false);
  cmd->add_option("MODEL", *path, "the .onnx file")->required();
  cmd->add_flag("--json", *json, "print JSON");
  cmd->callback([path, json] {
    const nlohmann::json j = inspect_json(*path);
    if (*json)
      std::cout << j.dump(2) << "\n";
    else
      print_text(j);
  });
}

}  // namespace dynaprec::cli
