// dynaprec_conformance: runs ONNX's backend node tests (Debian's libonnx-testdata) through the
// importer and the Executor at its default (fp32) plan.
//
//   dynaprec_conformance [--data DIR] [--filter SUBSTR] [--exclusions FILE] [--verbose]
//
// Each test directory holds model.onnx and test_data_set_N/{input_i.pb, output_i.pb}. A test
// whose model has a node the op table cannot run is skipped; a test listed in the exclusions
// file ("test_name  # reason" per line) is reported as excluded and not run. Outputs are
// compared as ONNX's backend tests do (numpy assert_allclose with rtol 1e-3, atol 1e-7; NaN
// equals NaN), with the dtype and shape required to match. Prints one line per test and a final
// "passed P failed F skipped S excluded E"; exits 1 if any test failed, 2 on bad usage.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <exception>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "dynaprec/convert.h"
#include "dynaprec/error.h"
#include "dynaprec/executor.h"
#include "dynaprec/graph.h"
#include "dynaprec/onnx_import.h"
#include "dynaprec/onnx_tensor.h"
#include "dynaprec/ops.h"
#include "exec/op_table.h"

namespace fs = std::filesystem;
using namespace dynaprec;

namespace {

constexpr double kRtol = 1e-3;
constexpr double kAtol = 1e-7;

struct Options {
  std::string data = "/usr/share/libonnx-testdata/data/node";
  std::string filter;
  std::string exclusions;
  bool verbose = false;
};

/// "test_name  # reason" lines; blank lines and lines starting with '#' are ignored.
std::map<std::string, std::string> read_exclusions(const std::string& path) {
  std::map<std::string, std::string> out;
  std::ifstream f(path);
  if (!f) throw Error(ErrorKind::kIo, path + ": cannot open the exclusions file");
  std::string line;
  while (std::getline(f, line)) {
    const size_t hash = line.find('#');
    std::string name = line.substr(0, hash);
    std::string reason = hash == std::string::npos ? "" : line.substr(hash + 1);
    auto trim = [](std::string& s) {
      const size_t b = s.find_first_not_of(" \t\r");
      const size_t e = s.find_last_not_of(" \t\r");
      s = b == std::string::npos ? "" : s.substr(b, e - b + 1);
    };
    trim(name);
    trim(reason);
    if (!name.empty()) out[name] = reason.empty() ? "(no reason given)" : reason;
  }
  return out;
}

/// The first node of the model file (subgraphs included) the executor cannot run, or "". Read
/// without the importer, so that models it refuses (sequence or string values, ...) for ops
/// we do not have anyway are skipped rather than failed.
std::string first_unsupported(const std::string& model_path) {
  for (const OnnxNodeRef& n : onnx_list_nodes(model_path))
    if (!exec::op_supported(n.domain, n.op, n.opset)) {
      std::string s = n.domain.empty() ? n.op : n.domain + "." + n.op;
      // Name the opset where the op exists at another one (opsets before 7 are not supported).
      for (int64_t v = 7; v <= 18; ++v)
        if (exec::op_supported(n.domain, n.op, v))
          return s + " at opset " + std::to_string(n.opset);
      return s;
    }
  return "";
}

/// Element i of a numeric tensor as double (contiguous copy made by the caller).
double value_at(const Tensor& t, int64_t i) {
  switch (t.dtype()) {
    case DType::kF32:
      return t.data_as<float>()[i];
    case DType::kF64:
      return t.data_as<double>()[i];
    case DType::kI8:
      return t.data_as<int8_t>()[i];
    case DType::kU8:
    case DType::kBool:
      return t.data_as<uint8_t>()[i];
    case DType::kI16:
      return t.data_as<int16_t>()[i];
    case DType::kI32:
      return t.data_as<int32_t>()[i];
    case DType::kI64:
      return static_cast<double>(t.data_as<int64_t>()[i]);
    default:
      return 0;
  }
}

/// "" when `got` matches `want` (dtype, shape, values within tolerance), else why not.
std::string compare(const std::string& name, const Tensor& got, const Tensor& want) {
  if (got.dtype() != want.dtype())
    return "output '" + name + "' has dtype " + std::string(dtype_name(got.dtype())) +
           ", expected " + std::string(dtype_name(want.dtype()));
  if (got.shape() != want.shape())
    return "output '" + name + "' has shape " + shape_str(got.shape()) + ", expected " +
           shape_str(want.shape());
  const bool is_float16 = got.dtype() == DType::kF16 || got.dtype() == DType::kBF16;
  const Tensor g = is_float16 ? cast(got, DType::kF32) : got.clone();
  const Tensor w = is_float16 ? cast(want, DType::kF32) : want.clone();
  const bool exact = g.dtype() != DType::kF32 && g.dtype() != DType::kF64;
  int64_t bad = 0, first = -1;
  double worst = 0;
  for (int64_t i = 0; i < g.numel(); ++i) {
    const double a = value_at(g, i), b = value_at(w, i);
    bool ok;
    if (exact)
      ok = g.dtype() == DType::kI64 ? g.data_as<int64_t>()[i] == w.data_as<int64_t>()[i] : a == b;
    else if (std::isnan(a) || std::isnan(b))
      ok = std::isnan(a) && std::isnan(b);
    else if (std::isinf(a) || std::isinf(b))
      ok = a == b;
    else
      ok = std::fabs(a - b) <= kAtol + kRtol * std::fabs(b);
    if (!ok) {
      if (first < 0) first = i;
      ++bad;
      worst = std::max(worst, std::fabs(a - b));
    }
  }
  if (bad == 0) return "";
  std::ostringstream os;
  os << "output '" << name << "': " << bad << " of " << g.numel() << " values differ (first at "
     << first << ": got " << value_at(g, first) << ", expected " << value_at(w, first)
     << "; max abs diff " << worst << ")";
  return os.str();
}

std::vector<fs::path> numbered(const fs::path& dir, const std::string& stem) {
  std::vector<fs::path> out;
  for (int i = 0;; ++i) {
    fs::path p = dir / (stem + "_" + std::to_string(i) + ".pb");
    if (!fs::exists(p)) break;
    out.push_back(p);
  }
  return out;
}

/// Runs one test directory; returns "" on success, else why it failed.
std::string run_test(const fs::path& dir, const Model& model, bool verbose) {
  std::vector<fs::path> sets;
  for (const auto& e : fs::directory_iterator(dir))
    if (e.is_directory() && e.path().filename().string().rfind("test_data_set_", 0) == 0)
      sets.push_back(e.path());
  std::sort(sets.begin(), sets.end());
  if (sets.empty()) return "no test_data_set_* directory";
  Executor ex(model);
  for (const fs::path& set : sets) {
    const auto in_files = numbered(set, "input");
    const auto out_files = numbered(set, "output");
    // Inputs bind positionally to the graph's inputs that are not initializers.
    const auto& gin = model.graph.inputs;
    if (in_files.size() > gin.size())
      return set.filename().string() + ": " + std::to_string(in_files.size()) +
             " input files for " + std::to_string(gin.size()) + " graph inputs";
    TensorMap inputs;
    for (size_t i = 0; i < in_files.size(); ++i)
      inputs[gin[i].name] = onnx_read_tensor_file(in_files[i].string());
    const auto& gout = model.graph.outputs;
    if (out_files.size() != gout.size())
      return set.filename().string() + ": " + std::to_string(out_files.size()) +
             " output files for " + std::to_string(gout.size()) + " graph outputs";
    const TensorMap got = ex.run(inputs);
    for (size_t i = 0; i < out_files.size(); ++i) {
      const Tensor want = onnx_read_tensor_file(out_files[i].string());
      const auto it = got.find(gout[i].name);
      if (it == got.end()) return "output '" + gout[i].name + "' was not produced";
      std::string why = compare(gout[i].name, it->second, want);
      if (!why.empty()) return set.filename().string() + ": " + why;
    }
    if (verbose)
      std::cout << "  " << dir.filename().string() << "/" << set.filename().string() << ": "
                << out_files.size() << " outputs match\n";
  }
  return "";
}

int usage(const char* why) {
  std::cerr << "dynaprec_conformance: " << why
            << "\nusage: dynaprec_conformance [--data DIR] [--filter SUBSTR] "
               "[--exclusions FILE] [--verbose]\n";
  return 2;
}

}  // namespace

int main(int argc, char** argv) {
  Options opt;
  opt.exclusions = (fs::path(__FILE__).parent_path() / "exclusions.txt").string();
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    auto value = [&]() -> const char* { return i + 1 < argc ? argv[++i] : nullptr; };
    if (a == "--data" || a == "--filter" || a == "--exclusions") {
      const char* v = value();
      if (!v) return usage((a + " needs a value").c_str());
      (a == "--data" ? opt.data : a == "--filter" ? opt.filter : opt.exclusions) = v;
    } else if (a == "--verbose" || a == "-v") {
      opt.verbose = true;
    } else if (a == "--help" || a == "-h") {
      usage("runs ONNX backend node tests");
      return 0;
    } else {
      return usage(("unknown argument '" + a + "'").c_str());
    }
  }
  std::map<std::string, std::string> excluded;
  try {
    excluded = read_exclusions(opt.exclusions);
  } catch (const std::exception& e) {
    std::cerr << "dynaprec_conformance: " << e.what() << "\n";
    return 2;
  }
  if (!fs::is_directory(opt.data)) return usage(("no directory " + opt.data).c_str());
  std::vector<fs::path> tests;
  for (const auto& e : fs::directory_iterator(opt.data))
    if (e.is_directory() && e.path().filename().string().find(opt.filter) != std::string::npos)
      tests.push_back(e.path());
  std::sort(tests.begin(), tests.end());

  int passed = 0, failed = 0, skipped = 0, n_excluded = 0;
  for (const fs::path& dir : tests) {
    const std::string name = dir.filename().string();
    if (const auto it = excluded.find(name); it != excluded.end()) {
      std::cout << "EXCLUDED " << name << ": " << it->second << "\n";
      ++n_excluded;
      continue;
    }
    std::string why;
    try {
      const std::string path = (dir / "model.onnx").string();
      if (const std::string op = first_unsupported(path); !op.empty()) {
        std::cout << "SKIP " << name << " (unsupported: " << op << ")\n";
        ++skipped;
        continue;
      }
      const Model model = onnx_import_file(path);
      why = run_test(dir, model, opt.verbose);
    } catch (const std::exception& e) {
      why = e.what();
      if (why.empty()) why = "exception";
    }
    if (why.empty()) {
      std::cout << "PASS " << name << "\n";
      ++passed;
    } else {
      std::replace(why.begin(), why.end(), '\n', ' ');
      std::cout << "FAIL " << name << ": " << why << "\n";
      ++failed;
    }
    std::cout.flush();
  }
  std::cout << "passed " << passed << " failed " << failed << " skipped " << skipped << " excluded "
            << n_excluded << "\n";
  return failed > 0 ? 1 : 0;
}
