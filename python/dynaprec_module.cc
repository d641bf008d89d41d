// The `dynaprec` Python module (pybind11): Session over NumPy arrays (docs/api.md "Python").
//
//   import dynaprec, numpy as np
//   s = dynaprec.Session("model.onnx", policy="dynamic", target_sqnr=30)
//   out = s.run({"x": x})          # dict name -> np.ndarray, streamed like `dynaprec run`
//   s.report()                     # CONTRACT §3 report as a dict
//
// Options mean what the CLI's flags of the same name mean (tools/cli/cmd_run.cc builds
// SessionOptions the same way), so a Session given the same model, inputs and options as
// `dynaprec run` returns the same outputs, bit for bit.
//
// Copies: a C-contiguous, native-endian input array of a supported dtype is borrowed (its memory
// is read in place; the array is kept alive while the run lasts). Others are made contiguous
// first (one copy). Outputs are handed to NumPy without a copy: each array keeps the tensor
// that owns its memory alive. Constants (`consts`) are copied once, when the Session is made,
// so later changes to the caller's arrays do not change them.
//
// Errors: dynaprec::Error of kind invalid input or usage -> ValueError; unsupported ->
// NotImplementedError; anything else -> RuntimeError (all with dynaprec's message).
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <algorithm>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "dynaprec/error.h"
#include "dynaprec/formats.h"
#include "dynaprec/html_report.h"
#include "dynaprec/npy.h"
#if DYNAPREC_WITH_REMOTE
#include "dynaprec/remote.h"
#endif
#include "dynaprec/session.h"

namespace py = pybind11;
using namespace dynaprec;

namespace {

std::string join(const std::vector<std::string>& v) {
  std::string s;
  for (const auto& x : v) s += (s.empty() ? "" : ", ") + x;
  return s.empty() ? "none" : s;
}

[[noreturn]] void fail(ErrorKind kind, const std::string& msg) { throw Error(kind, msg); }

Format parse_format(const std::string& s, const std::string& where) {
  auto f = format_from_name(s);
  if (!f)
    fail(ErrorKind::kUsage, where + ": unknown format '" + s +
                                "' (formats: " + std::string(format_names_list()) + ")");
  return *f;
}

// NumPy dtype <-> DType (the dtypes .npy files hold, npy.h).
std::optional<DType> dtype_from_numpy(const py::dtype& dt) {
  const char kind = dt.kind();
  const auto size = dt.itemsize();
  if (kind == 'f' && size == 4) return DType::kF32;
  if (kind == 'f' && size == 2) return DType::kF16;
  if (kind == 'f' && size == 8) return DType::kF64;
  if (kind == 'i' && size == 1) return DType::kI8;
  if (kind == 'i' && size == 2) return DType::kI16;
  if (kind == 'i' && size == 4) return DType::kI32;
  if (kind == 'i' && size == 8) return DType::kI64;
  if (kind == 'u' && size == 1) return DType::kU8;
  if (kind == 'b' && size == 1) return DType::kBool;
  return std::nullopt;
}

const char* numpy_format(DType t) {
  switch (t) {
    case DType::kF32:
      return "float32";
    case DType::kF16:
      return "float16";
    case DType::kF64:
      return "float64";
    case DType::kI8:
      return "int8";
    case DType::kI16:
      return "int16";
    case DType::kI32:
      return "int32";
    case DType::kI64:
      return "int64";
    case DType::kU8:
      return "uint8";
    case DType::kBool:
      return "bool";
    default:
      return nullptr;
  }
}

// Inputs converted for one call: the tensors borrow from `keep`, which holds the arrays alive.
struct Borrowed {
  TensorMap tensors;
  std::vector<py::object> keep;
};

Tensor borrow_array(const std::string& name, py::handle obj, std::vector<py::object>& keep) {
  py::module_ np = py::module_::import("numpy");
  py::array a = py::isinstance<py::array>(obj) ? py::reinterpret_borrow<py::array>(obj)
                                               : py::array(np.attr("asarray")(obj));
  py::dtype dt = a.dtype();
  const auto dtype = dtype_from_numpy(dt);
  if (!dtype)
    fail(ErrorKind::kInvalidInput,
         "input " + name + ": unsupported dtype " + std::string(py::str(dt)) +
             " (float32, float16, float64, int8, int16, int32, int64, uint8, bool)");
  const char order = dt.attr("byteorder").cast<std::string>()[0];
  const bool native = order == '=' || order == '|' || order == '<';  // x86-64: little-endian
  if (!native || !(a.flags() & py::array::c_style))
    a = py::array(np.attr("ascontiguousarray")(a, dt.attr("newbyteorder")("=")));
  Shape shape(a.shape(), a.shape() + a.ndim());
  Tensor t = Tensor::borrow(const_cast<void*>(a.data()), std::move(shape), *dtype);
  keep.push_back(std::move(a));
  return t;
}

Borrowed borrow_inputs(const py::dict& inputs) {
  Borrowed b;
  for (auto [k, v] : inputs) {
    if (!py::isinstance<py::str>(k))
      fail(ErrorKind::kInvalidInput,
           "input names must be strings, got " + std::string(py::str(py::type::of(k))));
    const auto name = k.cast<std::string>();
    b.tensors[name] = borrow_array(name, v, b.keep);
  }
  return b;
}

py::array to_numpy(Tensor t, const std::string& name) {
  const char* fmt = numpy_format(t.dtype());
  if (!fmt)
    fail(ErrorKind::kUnsupported, "output " + name + " has dtype " +
                                      std::string(dtype_name(t.dtype())) + ", which NumPy lacks");
  if (!t.owns_storage()) t = t.clone();  // a view of memory we do not control: copy it
  auto* held = new Tensor(std::move(t));
  py::capsule owner(held, [](void* p) { delete static_cast<Tensor*>(p); });
  const auto item = static_cast<py::ssize_t>(dtype_bits(held->dtype()) / 8);
  std::vector<py::ssize_t> shape(held->shape().begin(), held->shape().end());
  std::vector<py::ssize_t> strides;
  for (int64_t s : held->strides()) strides.push_back(static_cast<py::ssize_t>(s) * item);
  return py::array(py::dtype(fmt), std::move(shape), std::move(strides), held->data(), owner);
}

py::dict to_dict(TensorMap&& m) {
  py::dict d;
  for (auto& [name, t] : m) d[py::str(name)] = to_numpy(std::move(t), name);
  return d;
}

py::object json_loads(const std::string& s) { return py::module_::import("json").attr("loads")(s); }

// What the CLI's `run` puts in the report's "policy".
std::string policy_json(const std::string& policy, const std::string& precision, double target) {
  nlohmann::json pol = {{"name", policy}, {"precision", precision}};
  if (policy != "static") pol["target_sqnr_db"] = target;
  return pol.dump();
}

class PySession {
 public:
  PySession(const py::object& model, const std::string& policy, double target_sqnr,
            const std::string& precision, int64_t portion, int threads,
            std::optional<double> monitor_rate, std::optional<double> canary_rate,
            const std::string& device, std::optional<std::map<std::string, std::string>> pins,
            std::optional<py::dict> consts, std::optional<py::object> carry,
            std::optional<std::map<std::string, std::string>> plan, bool guarantee,
            bool profile_ops, std::optional<std::string> token_file,
            std::optional<std::string> tls_ca, std::optional<std::string> energy_table) {
    const std::string path = py::str(py::module_::import("os").attr("fspath")(model));
    // As the CLI: a bad energy table is reported before any work is done.
    const EnergyModel energy =
        energy_table ? EnergyModel::from_file(*energy_table) : EnergyModel::defaults();
    // The same construction as the CLI's CommonArgs::options() (tools/cli/cmd_run.cc).
    SessionOptions o;
    o.device = device;
    if (token_file) o.device_options["token_file"] = *token_file;
    if (tls_ca) o.device_options["tls_ca"] = *tls_ca;
    if (device.rfind("grpc://", 0) == 0 && !token_file)
      fail(ErrorKind::kUsage, "device " + device + " needs token_file (the server's token)");
    o.threads = threads;
    if (portion < 1)
      fail(ErrorKind::kUsage, "portion must be at least 1, got " + std::to_string(portion));
    o.portion = portion;
    o.plan.default_format = parse_format(precision, "precision");
    const auto kind = policy_from_name(policy);
    if (!kind)
      fail(ErrorKind::kUsage,
           "policy: unknown policy '" + policy + "' (policies: static, seed, dynamic)");
    o.policy.kind = *kind;
    o.policy.target_sqnr_db = target_sqnr;
    o.policy.guarantee = guarantee;
    o.policy.static_format = o.plan.default_format;
    if (guarantee && *kind != PolicyKind::kDynamic)
      fail(ErrorKind::kUsage, "guarantee needs policy='dynamic'");
    if (monitor_rate && *monitor_rate < 0) fail(ErrorKind::kUsage, "monitor_rate must be >= 0");
    o.monitor.rate =
        monitor_rate ? *monitor_rate : (*kind == PolicyKind::kStatic ? 0.0 : o.monitor.rate);
    o.canary_rate = canary_rate ? *canary_rate : -1;
    o.profile_ops = profile_ops;
    if (plan)
      for (const auto& [layer, f] : *plan)
        o.plan.layers[layer] = parse_format(f, "plan layer " + layer);
    if (pins)
      for (const auto& [layer, f] : *pins) o.pins[layer] = parse_format(f, "pin " + layer);
    if (consts) {
      std::vector<py::object> keep;
      for (auto [k, v] : *consts) {
        const auto name = k.cast<std::string>();
        o.consts[name] = borrow_array(name, v, keep).clone();  // the Session keeps its own copy
      }
    }
    if (carry) {
      py::object c = *carry;
      if (py::isinstance<py::dict>(c)) c = c.attr("items")();
      for (py::handle pair : c) {
        auto t =
            py::reinterpret_borrow<py::object>(pair).cast<std::pair<std::string, std::string>>();
        o.carry.push_back(std::move(t));
      }
    }
    {
      py::gil_scoped_release nogil;
      session_ = std::make_unique<Session>(path, std::move(o));
    }
    session_->report().energy = energy;
    session_->report().policy_json = policy_json(policy, precision, target_sqnr);
  }

  py::dict run(const py::object& inputs, bool portion) {
    Borrowed b = borrow_inputs(as_dict(inputs));
    // run_stream takes the streamed inputs it needs; a name it would pass over is a mistake.
    const auto names = session_->streamed_inputs();
    for (const auto& [name, t] : b.tensors)
      if (std::find(names.begin(), names.end(), name) == names.end())
        fail(ErrorKind::kInvalidInput,
             "input " + name + " is not a streamed input of the model (streamed: " + join(names) +
                 ")");
    TensorMap out;
    {
      py::gil_scoped_release nogil;
      std::lock_guard<std::mutex> lock(mu_);  // one run at a time per Session
      out = portion ? session_->run_portion(b.tensors) : session_->run_stream(b.tensors);
    }
    return to_dict(std::move(out));
  }

  void reset_state() {
    std::lock_guard<std::mutex> lock(mu_);
    session_->reset_state();
  }
  std::string report_json(int indent) {
    std::lock_guard<std::mutex> lock(mu_);
    return session_->report().to_json(indent);
  }
  void write_report(const std::string& path) {
    std::lock_guard<std::mutex> lock(mu_);
    session_->report().write(path);
  }
  void write_html(const std::string& path, const std::string& title) {
    std::lock_guard<std::mutex> lock(mu_);
    dynaprec::write_html(session_->report(), path, title);
  }
  void clear_report() {
    std::lock_guard<std::mutex> lock(mu_);
    session_->report().portions.clear();
  }
  int64_t switches() {
    std::lock_guard<std::mutex> lock(mu_);
    return session_->report().switches();
  }

  py::list values(const std::vector<ValueInfo>& vs) const {
    py::list l;
    for (const auto& v : vs) {
      py::list shape;
      for (const auto& d : v.shape) {
        if (d.known())
          shape.append(d.size);
        else if (!d.symbol.empty())
          shape.append(d.symbol);
        else
          shape.append(py::none());
      }
      py::dict d;
      d["name"] = v.name;
      const char* fmt = numpy_format(v.dtype);
      d["dtype"] = fmt ? std::string(fmt) : std::string(dtype_name(v.dtype));
      d["shape"] = shape;
      l.append(d);
    }
    return l;
  }
  py::list inputs() const { return values(session_->inputs()); }
  py::list outputs() const { return values(session_->outputs()); }
  py::list layers() const {
    py::list l;
    for (const auto& li : session_->layers()) {
      py::list formats;
      for (size_t f = 0; f < kFormatCount; ++f)
        if (li.formats & (1u << f))
          formats.append(std::string(format_name(static_cast<Format>(f))));
      py::dict d;
      d["name"] = li.name;
      d["op"] = li.op;
      d["formats"] = formats;
      d["weight_count"] = li.weight_count;
      l.append(d);
    }
    return l;
  }
  std::vector<std::string> streamed_inputs() const { return session_->streamed_inputs(); }

 private:
  // A dict of inputs, or one array when the model has exactly one streamed input.
  py::dict as_dict(const py::object& inputs) const {
    if (py::isinstance<py::dict>(inputs)) return py::reinterpret_borrow<py::dict>(inputs);
    const auto names = session_->streamed_inputs();
    if (names.size() != 1)
      fail(ErrorKind::kInvalidInput, "inputs must be a dict name -> array (the model streams " +
                                         std::to_string(names.size()) + " inputs)");
    py::dict d;
    d[py::str(names[0])] = inputs;
    return d;
  }

  std::unique_ptr<Session> session_;
  std::mutex mu_;
};

}  // namespace

PYBIND11_MODULE(dynaprec, m) {
  m.doc() =
      "dynaprec: runs ONNX models at a per-layer precision chosen while they run.\n"
      "See docs/api.md (Python) and Session.__init__.";
  m.attr("__version__") = DYNAPREC_VERSION;
#if DYNAPREC_WITH_REMOTE
  install_remote_backend();  // device="grpc://HOST:PORT" (token_file=..., tls_ca=...)
#endif
  py::list formats;
  for (size_t f = 0; f < kFormatCount; ++f)
    formats.append(std::string(format_name(static_cast<Format>(f))));
  m.attr("formats") = formats;
  m.attr("policies") = py::make_tuple("static", "seed", "dynamic");

  py::register_exception_translator([](std::exception_ptr p) {
    try {
      if (p) std::rethrow_exception(p);
    } catch (const Error& e) {
      switch (e.kind()) {
        case ErrorKind::kInvalidInput:
        case ErrorKind::kUsage:
          PyErr_SetString(PyExc_ValueError, e.what());
          break;
        case ErrorKind::kUnsupported:
          PyErr_SetString(PyExc_NotImplementedError, e.what());
          break;
        default:
          PyErr_SetString(PyExc_RuntimeError, e.what());
          break;
      }
    }
  });

  py::class_<PySession>(m, "Session", R"doc(
A model loaded onto a device, run portion by portion under a precision policy.

Session(model, policy="dynamic", target_sqnr=30.0, precision="fp32", portion=1, threads=0,
        monitor_rate=None, canary_rate=None, device="cpu", pins=None, consts=None, carry=None,
        plan=None, guarantee=False, profile_ops=False, token_file=None, tls_ca=None,
        energy_table=None)

The keywords are the `dynaprec run` flags of the same names: policy "static" (every layer at
`precision`, or `plan`), "seed" or "dynamic" (per layer, keeping the output SQNR >= target_sqnr
dB); portion: samples per portion (first axis); monitor_rate / canary_rate: None for the
policy's default; pins: {layer: format} kept always; consts: {input: array} given whole to
every portion (copied once); carry: {output: input} (or pairs) fed from one portion to the
next; plan: {layer: format} for the static policy; energy_table: a JSON file overriding the
report's energy model (--energy-table). Note the default policy here is "dynamic"
(the CLI's is "static").)doc")
      .def(py::init<const py::object&, const std::string&, double, const std::string&, int64_t, int,
                    std::optional<double>, std::optional<double>, const std::string&,
                    std::optional<std::map<std::string, std::string>>, std::optional<py::dict>,
                    std::optional<py::object>, std::optional<std::map<std::string, std::string>>,
                    bool, bool, std::optional<std::string>, std::optional<std::string>,
                    std::optional<std::string>>(),
           py::arg("model"), py::kw_only(), py::arg("policy") = "dynamic",
           py::arg("target_sqnr") = 30.0, py::arg("precision") = "fp32", py::arg("portion") = 1,
           py::arg("threads") = 0, py::arg("monitor_rate") = py::none(),
           py::arg("canary_rate") = py::none(), py::arg("device") = "cpu",
           py::arg("pins") = py::none(), py::arg("consts") = py::none(),
           py::arg("carry") = py::none(), py::arg("plan") = py::none(),
           py::arg("guarantee") = false, py::arg("profile_ops") = false,
           py::arg("token_file") = py::none(), py::arg("tls_ca") = py::none(),
           py::arg("energy_table") = py::none())
      .def(
          "run", [](PySession& s, const py::object& in) { return s.run(in, false); },
          py::arg("inputs"),
          "Runs a stream: splits the streamed inputs (dict name -> array, or one array) along "
          "axis 0 into portions, runs them in order, returns every output (dict name -> "
          "array) concatenated along axis 0.")
      .def(
          "run_portion", [](PySession& s, const py::object& in) { return s.run(in, true); },
          py::arg("inputs"), "Runs one portion (the arrays whole) and returns every output.")
      .def("reset_state", &PySession::reset_state,
           "Forgets carried state: the next portion starts from the initial state again.")
      .def(
          "report", [](PySession& s) { return json_loads(s.report_json(-1)); },
          "The report of every portion run so far (CONTRACT §3), as a dict.")
      .def("report_json", &PySession::report_json, py::arg("indent") = 1,
           "The report as JSON text (what `dynaprec run --report` writes).")
      .def("write_report", &PySession::write_report, py::arg("path"))
      .def("write_html", &PySession::write_html, py::arg("path"), py::arg("title") = "",
           "Writes the HTML report (one self-contained file), as `dynaprec run --html`.")
      .def("clear_report", &PySession::clear_report,
           "Forgets the portions recorded so far (the policy's state is kept).")
      .def("switches", &PySession::switches,
           "Per-layer precision changes between consecutive portions, summed over layers.")
      .def_property_readonly("inputs", &PySession::inputs,
                             "Every model input: [{name, dtype, shape}] (None or a symbol for "
                             "dims not fixed).")
      .def_property_readonly("outputs", &PySession::outputs)
      .def_property_readonly("layers", &PySession::layers,
                             "The weighted layers: [{name, op, formats, weight_count}].")
      .def_property_readonly("streamed_inputs", &PySession::streamed_inputs,
                             "Inputs that are streamed: not constants and not carried.");

  m.def(
      "load_npy", [](const std::string& path) { return to_numpy(npy_read(path), path); },
      py::arg("path"), "Reads a .npy file with dynaprec's reader (a NumPy array).");
  m.def(
      "save_npy",
      [](const std::string& path, const py::object& a) {
        std::vector<py::object> keep;
        npy_write(path, borrow_array(path, a, keep));
      },
      py::arg("path"), py::arg("array"), "Writes an array as .npy with dynaprec's writer.");
}
