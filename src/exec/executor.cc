// The graph executor (include/dynaprec/executor.h).
//
// Compilation turns the graph into a list of steps over integer value ids: each step is an op of
// the op table (src/exec/op_table.h), a weighted layer run at the plan's format, or an If whose
// branches are compiled the same way (they read outer values by name). Values are freed after
// their last use, so a portion's peak memory is that of the live activations.
#include "dynaprec/executor.h"

#include <algorithm>
#include <array>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <limits>
#include <set>
#include <type_traits>
#include <unordered_map>

#include "dynaprec/conv.h"
#include "dynaprec/conv_transpose.h"
#include "dynaprec/error.h"
#include "dynaprec/lstm.h"
#include "dynaprec/matmul.h"
#include "dynaprec/monitor.h"
#include "dynaprec/ops.h"
#include "exec/op_table.h"

namespace dynaprec {
namespace {

using exec::attr_float;
using exec::attr_floats;
using exec::attr_int;
using exec::attr_ints;
using exec::attr_string;

[[noreturn]] void bad(const Node& n, const std::string& what) {
  throw Error(ErrorKind::kInvalidInput, n.op + " node '" + n.name + "': " + what);
}

// DYNAPREC_TRACE_LAYERS=1: one line per layer run on stderr (shapes, format, time).
bool trace_layers() {
  static const bool on = [] {
    const char* v = std::getenv("DYNAPREC_TRACE_LAYERS");
    return v && *v && *v != '0';
  }();
  return on;
}

// The DYNAPREC_TRACE_LAYERS line of one layer run.
void trace_layer(const std::string& name, const std::string& op, Format f, const Shape& x,
                 const Shape& w, const Shape& y, double ms) {
  std::fprintf(stderr, "layer %s %s %s x%s w%s -> y%s %.3f ms\n", name.c_str(), op.c_str(),
               std::string(format_name(f)).c_str(), shape_str(x).c_str(), shape_str(w).c_str(),
               shape_str(y).c_str(), ms);
}

const Tensor* const_of(const Graph& g, const std::string& name) {
  if (name.empty()) return nullptr;
  auto it = g.initializers.find(name);
  return it == g.initializers.end() ? nullptr : &it->second;
}

// ---- Layers -------------------------------------------------------------------------------------

enum class LayerKind : uint8_t { kConv, kConvTranspose, kMatMul, kGemm, kLstm };

struct Layer {
  LayerKind kind;
  std::string name, op;
  // The fp32 master weights from which every format is derived on first use.
  Tensor w;       // Conv/ConvTranspose: as ONNX; MatMul/Gemm: [N, K]; LSTM: W
  Tensor r, p;    // LSTM: R and (optional) peepholes
  Tensor b;       // bias (Conv/ConvT/Gemm: [OC]/[N]; LSTM: B) or empty
  Tensor gemm_c;  // Gemm: a C that is not a [N] bias, added after (times beta)
  float gemm_beta = 1.0f;
  bool gemm_trans_a = false;
  Conv2dParams conv;  // Conv: only the fused activation; the rest comes from the node per run
  Shape w_shape;      // Conv: W's shape as in the model
  bool conv1d = false;
  ConvTransposeParams convt;
  LstmParams lstm;
  int64_t groups = 1;
  std::array<std::shared_ptr<void>, kFormatCount> cache;  // per-format weights
  int64_t weight_count = 0;
  // monitor state
  bool have_rho = false;
  std::array<double, kFormatCount> rho_w{};  // relative weight noise per format
  uint64_t visits = 0;
};

// ---- The monitor's shadow: sampled outputs recomputed in fp32 -----------------------------------

// Asks for the cache lines of n floats at p.
void prefetch_floats(const float* p, int64_t n) {
  const auto* b = reinterpret_cast<const char*>(p);
  for (int64_t off = 0; off < n * 4; off += 64) __builtin_prefetch(b + off);
}

// Statistics of a strided sample of the layer input: amax, mean square, and for format f the
// values that saturate its activation range or underflow to 0.
struct InputStats {
  double amax = 0, mean_square = 0;
  uint32_t saturated = 0, underflow = 0;
};

InputStats input_stats(const Tensor& x, uint32_t samples, uint64_t visit, Format f) {
  InputStats st;
  const int64_t count = x.numel();
  if (count == 0) return st;
  // Runs of 32 contiguous values (two cache lines each) at strided starts: cache-friendly.
  constexpr int64_t kRun = 32;
  const int64_t runs_total = std::max<int64_t>(1, count / kRun);
  const auto nruns =
      static_cast<uint32_t>(std::min<int64_t>(runs_total, std::max<uint32_t>(samples / 8, 8)));
  std::vector<int64_t> starts(nruns);
  sample_positions(runs_total, nruns, visit, starts);
  const float* xd = x.data_as<float>();
  // Two passes over the runs (the second from L1), no copy: amax and Σ x² (four independent
  // sums: one chain of dependent double adds cost more than the reads), then the counts that
  // depend on amax.
  double sq[4] = {0, 0, 0, 0};
  float amax = 0;
  int64_t n = 0;
  for (int64_t r : starts) {
    const int64_t lo = r * kRun, hi = std::min(count, lo + kRun);
    n += hi - lo;
    for (int64_t i = lo; i < hi; ++i) {
      const float v = std::fabs(xd[i]);
      if (v <= std::numeric_limits<float>::max()) {  // finite
        amax = std::max(amax, v);
        sq[i & 3] += static_cast<double>(v) * v;
      }
    }
  }
  st.amax = amax;
  st.mean_square = (sq[0] + sq[1] + sq[2] + sq[3]) / static_cast<double>(n);
  const bool integer = f == Format::kInt8 || f == Format::kInt4;
  const float lim = f == Format::kFp16 ? 65504.0f : std::numeric_limits<float>::infinity();
  const double half_step = integer ? static_cast<double>(amax) / 127 / 2 : 0;
  for (int64_t r : starts)
    for (int64_t i = r * kRun; i < std::min(count, (r + 1) * kRun); ++i) {
      const float v = std::fabs(xd[i]);
      st.saturated += v > lim;
      st.underflow += v != 0 && v < half_step;
    }
  return st;
}

void fill_predictions(QualityReport& r, const Layer& l, const InputStats& in) {
  double pred_cur = NAN;
  for (size_t fi = 0; fi < kFormatCount; ++fi) {
    const double p = predicted_sqnr_db(
        l.rho_w[fi], activation_noise(static_cast<Format>(fi), in.amax, in.mean_square));
    r.pred_sqnr_db[fi] = static_cast<float>(p);
    if (static_cast<Format>(fi) == r.format) pred_cur = p;
  }
  // Calibrate by the measurement at the current format (not at fp32: its error is summation
  // order only, which the noise model does not describe).
  if (r.format != Format::kFp32 && std::isfinite(r.sqnr_db) && std::isfinite(pred_cur)) {
    const double off = std::clamp(static_cast<double>(r.sqnr_db) - pred_cur, -12.0, 12.0);
    for (size_t fi = 1; fi < kFormatCount; ++fi)
      if (std::isfinite(r.pred_sqnr_db[fi])) r.pred_sqnr_db[fi] += static_cast<float>(off);
  }
}

template <typename W>
W& cached(Layer& l, Format f, W (*make)(Layer&, Format)) {
  auto& slot = l.cache[static_cast<size_t>(f)];
  if (!slot) slot = std::make_shared<W>(make(l, f));
  return *static_cast<W*>(slot.get());
}

ConvWeights make_conv(Layer& l, Format f) { return conv_weights(l.w, f); }
MatmulWeights make_mm(Layer& l, Format f) { return matmul_weights(l.w, f); }
ConvTransposeWeights make_convt(Layer& l, Format f) {
  return conv_transpose_weights(l.w, l.groups, f);
}
LstmWeights make_lstm(Layer& l, Format f) {
  return lstm_weights(l.w, l.r, l.b.empty() ? nullptr : &l.b, l.p.empty() ? nullptr : &l.p, f);
}

Tensor contiguous_f32(const Tensor& t, const Node& n, const char* what) {
  if (t.dtype() != DType::kF32)
    bad(n, std::string(what) + " must be float32, got " + std::string(dtype_name(t.dtype())));
  return t.is_contiguous() ? t : t.clone();
}

void set_activation(Conv2dParams& p, const Node& act, const Graph& g) {
  if (act.op == "Relu") {
    p.activation = Activation::kRelu;
  } else if (act.op == "Sigmoid") {
    p.activation = Activation::kSigmoid;
  } else if (act.op == "HardSwish") {
    p.activation = Activation::kHardSwish;
  } else if (act.op == "Clip") {
    p.activation = Activation::kClip;
    p.clip_min = -INFINITY;
    p.clip_max = INFINITY;
    if (act.opset < 11) {
      p.clip_min = attr_float(act, "min", -INFINITY);
      p.clip_max = attr_float(act, "max", INFINITY);
    } else {
      if (const Tensor* t = act.inputs.size() > 1 ? const_of(g, act.inputs[1]) : nullptr)
        p.clip_min = *t->data_as<float>();
      if (const Tensor* t = act.inputs.size() > 2 ? const_of(g, act.inputs[2]) : nullptr)
        p.clip_max = *t->data_as<float>();
    }
  }
}

// Whether `act` can run inside the preceding layer: an activation whose parameters are known.
bool fusable_activation(const Node& act, const Graph& g) {
  if (act.op == "Relu" || act.op == "Sigmoid" || act.op == "HardSwish") return true;
  if (act.op != "Clip") return false;
  if (act.opset < 11) return true;
  for (size_t i = 1; i < act.inputs.size(); ++i) {
    if (act.inputs[i].empty()) continue;
    const Tensor* t = const_of(g, act.inputs[i]);
    if (!t || t->dtype() != DType::kF32 || t->numel() != 1) return false;
  }
  return true;
}

// ---- Compiled graphs ----------------------------------------------------------------------------

struct CompiledGraph;

struct Step {
  const Node* node = nullptr;
  exec::OpFn fn = nullptr;
  exec::AmaxOpFn amax_fn = nullptr;  // a fused op that reports max |Y| (used instead of fn)
  int layer = -1;                    // index into Impl::layers, or -1
  std::vector<int> in, out;
  std::vector<int> free_after;                    // value ids whose last use is this step
  std::unique_ptr<CompiledGraph> then_g, else_g;  // If
  // A ConvTranspose layer whose output only the next step, another ConvTranspose layer, reads:
  // the two may run as one (run_convt_chain) where the monitor does not need that output.
  bool chain_next = false;
};

struct CompiledGraph {
  const Graph* graph = nullptr;
  std::vector<std::string> names;
  std::unordered_map<std::string, int> ids;
  std::vector<Tensor> consts;  // by id; set when has_const
  std::vector<char> has_const;
  std::vector<int> outer;  // ids read from the enclosing scope (by name)
  std::vector<int> input_ids, output_ids;
  std::vector<Step> steps;

  int id(const std::string& name) {
    auto [it, fresh] = ids.emplace(name, static_cast<int>(names.size()));
    if (fresh) {
      names.push_back(name);
      consts.emplace_back();
      has_const.push_back(0);
    }
    return it->second;
  }
};

}  // namespace

// ---- Impl ---------------------------------------------------------------------------------------

struct Executor::Impl {
  ExecutorOptions opts;
  Graph graph;  // after folding and fusion
  std::vector<ValueInfo> inputs, outputs;
  std::vector<Layer> layers;
  std::vector<LayerInfo> layer_infos;
  std::unique_ptr<CompiledGraph> main;
  std::map<std::string, int64_t> opsets;

  void fuse(Graph& g);
  void fold(Graph& g);
  std::unique_ptr<CompiledGraph> compile(const Graph& g, const std::set<std::string>& outer_names,
                                         bool top);
  int make_layer(const Node& n, const Graph& g);
  // x_amax: max |X| where known (ConvHints), else negative; y_amax: where given, set to max |Y|
  // where the layer's kernel took it, else -1.
  std::vector<Tensor> run_layer(Layer& l, const Node& n, std::span<const Tensor* const> in,
                                const Plan& plan, RunStats* stats, int index, float x_amax = -1.0f,
                                float* y_amax = nullptr);
  std::vector<Tensor> run_graph(CompiledGraph& cg, std::vector<Tensor>& vals, const Plan& plan,
                                RunStats* stats,
                                const std::function<const Tensor*(const std::string&)>& outer);
  // Layers a and b (Step::chain_next) as one kernel: b's output, or nullopt where the kernel
  // does not take them (then they run one by one). Reports both layers as run_layer would.
  std::optional<Tensor> run_convt_chain(Layer& a, const Node& na, const Tensor* x, Layer& b,
                                        const Plan& plan, RunStats* stats, int ia, int ib);
  std::map<std::string, Node> fused_act;  // layer node name -> the activation fused into it
  // Conv node name -> the scalar affine (scale, shift) after its activation (post_affine)
  std::map<std::string, std::pair<float, float>> fused_affine;
};

namespace {

// Uses of each value name in g's nodes (subgraphs' captured names count as uses too) and outputs.
void count_uses(const Graph& g, std::map<std::string, int>& uses) {
  for (const Node& n : g.nodes) {
    for (const auto& i : n.inputs)
      if (!i.empty()) ++uses[i];
    for (const auto& [k, a] : n.attrs)
      if (const auto* sub = std::get_if<std::shared_ptr<Graph>>(&a)) count_uses(**sub, uses);
  }
  for (const auto& o : g.outputs) ++uses[o.name];
}

// The per-output-channel values of a constant that broadcasts against a conv output of rank
// `rank` with `oc` channels without changing its shape ([], [1], [OC, 1, 1], [1, OC, 1, 1], ...),
// or nothing.
std::optional<std::vector<float>> per_channel(const Tensor* c, int64_t oc, int rank) {
  if (!c || c->dtype() != DType::kF32 || c->rank() > rank) return std::nullopt;
  const Tensor t = c->is_contiguous() ? *c : c->clone();
  if (t.numel() == 1) return std::vector<float>(static_cast<size_t>(oc), *t.data_as<float>());
  // Aligned at the back: axis 1 of the output is axis (1 - (rank - c.rank)) of c.
  const int axis = 1 - (rank - t.rank());
  for (int i = 0; i < t.rank(); ++i)
    if (t.dim(i) != (i == axis ? oc : 1)) return std::nullopt;
  if (axis < 0) return std::nullopt;
  return std::vector<float>(t.data_as<float>(), t.data_as<float>() + oc);
}

float scalar_const(const Graph& g, const std::string& name, bool& ok) {
  const Tensor* t = const_of(g, name);
  ok = t && t->dtype() == DType::kF32 && t->numel() == 1;
  return ok ? *t->data_as<float>() : 0.0f;
}

}  // namespace

// Folds into a preceding Conv with constant weights (whose output has no other use):
// BatchNormalization (inference), and Mul/Add by per-channel constants; then recognizes
// x·clip(x + 3, 0, 6)/6 (HardSwish as exported by paddle2onnx and others) and fuses it and
// Relu/Clip/Sigmoid/HardSwish into the Conv/ConvTranspose. ONNX Runtime's graph optimizer makes
// the same folds (ConvBNFusion, ConvMulFusion, ConvAddFusion).
void Executor::Impl::fuse(Graph& g) {
  std::map<std::string, int> uses;
  count_uses(g, uses);
  std::map<std::string, size_t> producer;
  for (size_t i = 0; i < g.nodes.size(); ++i)
    for (const auto& o : g.nodes[i].outputs) producer[o] = i;
  std::vector<char> dead(g.nodes.size(), 0);
  int fresh = 0;
  // Output channels of a Conv (W [OC, ...]) or ConvTranspose (W [C, OC/group, ...]).
  auto oc_of = [&](const Node& c) -> int64_t {
    const Tensor& w = *const_of(g, c.inputs[1]);
    return c.op == "Conv" ? w.dim(0) : w.dim(1) * attr_int(c, "group", 1);
  };
  // The Conv/ConvTranspose with constant weights (and bias) whose only use is `name`, or null.
  auto conv_of = [&](const std::string& name) -> Node* {
    auto pit = producer.find(name);
    if (pit == producer.end() || dead[pit->second]) return nullptr;
    Node& c = g.nodes[pit->second];
    if ((c.op != "Conv" && c.op != "ConvTranspose") || c.outputs.size() != 1 ||
        uses[c.outputs[0]] != 1 || c.inputs.size() < 2)
      return nullptr;
    if (fused_act.count(c.name)) return nullptr;  // the activation comes after the conv's sums
    const Tensor* w = const_of(g, c.inputs[1]);
    if (!w || w->dtype() != DType::kF32 || w->rank() < 3 || !w->is_contiguous()) return nullptr;
    if (c.op == "ConvTranspose" && w->dim(0) % attr_int(c, "group", 1) != 0) return nullptr;
    if (c.inputs.size() > 2 && !c.inputs[2].empty()) {
      const Tensor* b = const_of(g, c.inputs[2]);
      if (!b || b->dtype() != DType::kF32 || b->numel() != oc_of(c)) return nullptr;
    }
    return &c;
  };
  // W'[oc] = W[oc]·scale[oc], b'[oc] = b[oc]·scale[oc] + shift[oc]; the conv then produces `out`.
  auto fold = [&](Node& conv, const std::vector<float>* scale, const std::vector<float>& shift,
                  const std::string& out) {
    const Tensor& w = *const_of(g, conv.inputs[1]);
    const Tensor* cb = conv.inputs.size() > 2 ? const_of(g, conv.inputs[2]) : nullptr;
    const int64_t oc = oc_of(conv);
    Tensor nw = scale ? w.clone() : w, nb = Tensor::zeros({oc}, DType::kF32);
    const Tensor cbc = cb && !cb->is_contiguous() ? cb->clone() : (cb ? *cb : Tensor());
    if (scale) {
      float* wd = nw.data_as<float>();
      if (conv.op == "Conv") {  // W [OC, C/g, ...]: one row per output channel
        const int64_t per = w.numel() / oc;
        for (int64_t c = 0; c < oc; ++c)
          for (int64_t j = 0; j < per; ++j) wd[c * per + j] *= (*scale)[static_cast<size_t>(c)];
      } else {  // ConvTranspose W [C, OC/g, ...]: input channel ic of group ic / (C/g)
        const int64_t cin = w.dim(0), ocg = w.dim(1), groups = oc / ocg;
        const int64_t per = w.numel() / (cin * ocg), cg = cin / groups;
        for (int64_t ic = 0; ic < cin; ++ic)
          for (int64_t j = 0; j < ocg; ++j)
            for (int64_t t = 0; t < per; ++t)
              wd[(ic * ocg + j) * per + t] *= (*scale)[static_cast<size_t>(ic / cg * ocg + j)];
      }
    }
    for (int64_t c = 0; c < oc; ++c) {
      const float f = scale ? (*scale)[static_cast<size_t>(c)] : 1.0f;
      const float b0 = cb ? cbc.data_as<float>()[c] : 0.0f;
      nb.data_as<float>()[c] = (scale ? b0 * f : b0) + shift[static_cast<size_t>(c)];
    }
    const std::string tag = std::to_string(fresh++);
    conv.inputs.resize(3);
    if (scale) {
      conv.inputs[1] = conv.name + "#w" + tag;
      g.initializers[conv.inputs[1]] = std::move(nw);
    }
    conv.inputs[2] = conv.name + "#b" + tag;
    g.initializers[conv.inputs[2]] = std::move(nb);
    const size_t ci = producer[conv.outputs[0]];
    conv.outputs[0] = out;
    producer[out] = ci;
  };
  for (size_t i = 0; i < g.nodes.size(); ++i) {
    Node& n = g.nodes[i];
    if (n.outputs.size() != 1) continue;
    if (n.op == "BatchNormalization" && n.inputs.size() >= 5 &&
        attr_int(n, "training_mode", 0) == 0) {
      Node* conv = conv_of(n.inputs[0]);
      if (!conv) continue;
      const int64_t oc = oc_of(*conv);
      const int rank = const_of(g, conv->inputs[1])->rank();
      (void)rank;
      // BatchNormalization's parameters are [C] (not numpy-broadcast against [N, C, H, W]).
      auto vec = [&](const std::string& name) -> std::optional<std::vector<float>> {
        const Tensor* t = const_of(g, name);
        if (!t || t->dtype() != DType::kF32 || t->numel() != oc || t->rank() != 1)
          return std::nullopt;
        const Tensor c = t->is_contiguous() ? *t : t->clone();
        return std::vector<float>(c.data_as<float>(), c.data_as<float>() + oc);
      };
      auto s = vec(n.inputs[1]), bb = vec(n.inputs[2]), mean = vec(n.inputs[3]),
           var = vec(n.inputs[4]);
      if (!s || !bb || !mean || !var) continue;
      const float eps = attr_float(n, "epsilon", 1e-5f);
      std::vector<float> scale(static_cast<size_t>(oc)), shift(static_cast<size_t>(oc));
      for (size_t c = 0; c < scale.size(); ++c) {
        scale[c] = (*s)[c] / std::sqrt((*var)[c] + eps);
        shift[c] = (*bb)[c] - (*mean)[c] * scale[c];
      }
      fold(*conv, &scale, shift, n.outputs[0]);
      dead[i] = 1;
    } else if ((n.op == "Mul" || n.op == "Add") && n.inputs.size() == 2) {
      for (int side = 0; side < 2; ++side) {
        Node* conv = conv_of(n.inputs[static_cast<size_t>(side)]);
        if (!conv) continue;
        const Tensor& w = *const_of(g, conv->inputs[1]);
        auto c =
            per_channel(const_of(g, n.inputs[static_cast<size_t>(1 - side)]), w.dim(0), w.rank());
        if (!c) continue;
        if (n.op == "Mul")
          fold(*conv, &*c, std::vector<float>(c->size(), 0.0f), n.outputs[0]);
        else
          fold(*conv, nullptr, *c, n.outputs[0]);
        dead[i] = 1;
        break;
      }
    }
  }
  // HardSwish spelled out: x -> Add(x, 3) -> Clip(0, 6) -> {Div(., 6) -> Mul(x, .) |
  // Mul(x, .) -> Div(., 6)} where x is a conv's output read by exactly those two nodes.
  std::map<std::string, std::vector<size_t>> readers;
  for (size_t i = 0; i < g.nodes.size(); ++i)
    if (!dead[i])
      for (const auto& in : g.nodes[i].inputs) readers[in].push_back(i);
  auto only_reader = [&](const std::string& v) -> Node* {
    auto it = readers.find(v);
    if (it == readers.end() || it->second.size() != 1 || uses[v] != 1) return nullptr;
    return &g.nodes[it->second[0]];
  };
  auto other_input = [](const Node& n, const std::string& v) -> const std::string* {
    if (n.inputs.size() != 2) return nullptr;
    if (n.inputs[0] == v) return &n.inputs[1];
    if (n.inputs[1] == v) return &n.inputs[0];
    return nullptr;
  };
  for (size_t i = 0; i < g.nodes.size(); ++i) {
    if (dead[i] || g.nodes[i].op != "Conv") continue;
    Node& conv = g.nodes[i];
    const std::string x = conv.outputs[0];
    auto rit = readers.find(x);
    if (fused_act.count(conv.name) || rit == readers.end() || rit->second.size() != 2 ||
        uses[x] != 2)
      continue;
    Node* add = nullptr;
    Node* mul = nullptr;
    for (size_t r : rit->second) {
      Node& n = g.nodes[r];
      if (n.op == "Add") add = &n;
      if (n.op == "Mul") mul = &n;
    }
    if (!add || !mul) continue;
    bool ok = false;
    const std::string* three = other_input(*add, x);
    if (!three || scalar_const(g, *three, ok) != 3.0f || !ok) continue;
    Node* clip = only_reader(add->outputs[0]);
    if (!clip || clip->op != "Clip") continue;
    Conv2dParams cp;
    if (!fusable_activation(*clip, g)) continue;
    set_activation(cp, *clip, g);
    if (cp.clip_min != 0.0f || cp.clip_max != 6.0f) continue;
    Node* last = nullptr;
    std::vector<Node*> chain = {add, clip, mul};
    Node* next = only_reader(clip->outputs[0]);
    if (next && next->op == "Div" && next->inputs[0] == clip->outputs[0]) {
      // clip / 6, then x · that
      if (scalar_const(g, next->inputs[1], ok) != 6.0f || !ok) continue;
      if (only_reader(next->outputs[0]) != mul || !other_input(*mul, x) ||
          *other_input(*mul, x) != next->outputs[0])
        continue;
      chain.push_back(next);
      last = mul;
    } else if (next == mul && other_input(*mul, x) && *other_input(*mul, x) == clip->outputs[0]) {
      Node* div = only_reader(mul->outputs[0]);
      if (!div || div->op != "Div" || div->inputs[0] != mul->outputs[0]) continue;
      if (scalar_const(g, div->inputs[1], ok) != 6.0f || !ok) continue;
      chain.push_back(div);
      last = div;
    } else {
      continue;
    }
    Node hs;
    hs.op = "HardSwish";
    hs.name = last->name;
    hs.opset = 14;
    fused_act[conv.name] = hs;
    conv.outputs[0] = last->outputs[0];
    for (Node* c : chain) dead[static_cast<size_t>(c - g.nodes.data())] = 1;
  }
  // Activations: a Relu/Clip/Sigmoid/HardSwish reading only a conv's output runs inside it.
  for (size_t i = 0; i < g.nodes.size(); ++i) {
    if (dead[i]) continue;
    Node& act = g.nodes[i];
    if (act.inputs.empty() || !fusable_activation(act, g)) continue;
    auto pit = producer.find(act.inputs[0]);
    if (pit == producer.end() || dead[pit->second]) continue;
    Node& conv = g.nodes[pit->second];
    if ((conv.op != "Conv" && conv.op != "ConvTranspose") || uses[conv.outputs[0]] != 1 ||
        fused_act.count(conv.name))
      continue;
    if (conv.inputs.size() < 2 || !const_of(g, conv.inputs[1])) continue;
    fused_act[conv.name] = act;
    conv.outputs[0] = act.outputs[0];
    producer[act.outputs[0]] = pit->second;
    dead[i] = 1;
  }
  // A scalar affine after an activated Conv: Mul by a scalar constant, then optionally Add of
  // one (or the Add alone), each node the only reader of its input (Conv2dParams::post_affine).
  // Before the activation, per-channel Mul/Add are folded into the weights above.
  auto scalar_of = [&](const Node& n, const std::string& v, bool& ok) -> float {
    ok = false;
    const std::string* other = other_input(n, v);
    if (!other) return 0.0f;
    const Tensor* t = const_of(g, *other);
    if (!t || t->rank() > 1) return 0.0f;  // a wider rank would broadcast the output's shape
    return scalar_const(g, *other, ok);
  };
  for (size_t i = 0; i < g.nodes.size(); ++i) {
    if (dead[i] || g.nodes[i].op != "Conv" || !fused_act.count(g.nodes[i].name)) continue;
    Node& conv = g.nodes[i];
    float scale = 1.0f, shift = 0.0f;
    bool any = false;
    // The conv's next node if it is `op` by a scalar (its value into `into`): absorbed.
    const auto absorb = [&](const char* op, float& into) {
      Node* next = uses[conv.outputs[0]] == 1 ? only_reader(conv.outputs[0]) : nullptr;
      if (!next || next->op != op || next->outputs.size() != 1) return;
      bool ok = false;
      const float v = scalar_of(*next, conv.outputs[0], ok);
      if (!ok) return;
      into = v;
      any = true;
      conv.outputs[0] = next->outputs[0];
      dead[static_cast<size_t>(next - g.nodes.data())] = 1;
    };
    absorb("Mul", scale);
    absorb("Add", shift);
    if (any) {
      fused_affine[conv.name] = {scale, shift};
      producer[conv.outputs[0]] = i;
    }
  }
  // Add(x, Mul(x, s)) (either order of either), the Mul's output read only there: one pass,
  // AddScaled(x, s) (op_table.h), instead of writing the product and reading it back (the
  // residual of the detector's squeeze-excite blocks, on 160x160 planes).
  for (size_t i = 0; i < g.nodes.size(); ++i) {
    Node& add = g.nodes[i];
    if (dead[i] || add.op != "Add" || add.inputs.size() != 2 || add.outputs.size() != 1 ||
        !add.domain.empty())
      continue;
    for (size_t side = 0; side < 2; ++side) {
      auto pit = producer.find(add.inputs[side]);
      if (pit == producer.end() || dead[pit->second]) continue;
      Node& mul = g.nodes[pit->second];
      const std::string& x = add.inputs[1 - side];
      if (mul.op != "Mul" || mul.inputs.size() != 2 || mul.outputs.size() != 1 ||
          !mul.domain.empty() || uses[mul.outputs[0]] != 1 ||
          (mul.inputs[0] != x && mul.inputs[1] != x))
        continue;
      const std::string s = mul.inputs[0] == x ? mul.inputs[1] : mul.inputs[0];
      add.inputs = {x, s};
      add.op = "AddScaled";
      add.domain = std::string(exec::kFusedDomain);
      dead[pit->second] = 1;
      break;
    }
  }
  // Add(a, Resize(X)) (either order), the resized tensor read only there, Resize of opset 11+:
  // one pass, AddResized (the top-down path of a feature pyramid: the upsampled map is never
  // written).
  for (size_t i = 0; i < g.nodes.size(); ++i) {
    Node& add = g.nodes[i];
    if (dead[i] || add.op != "Add" || add.inputs.size() != 2 || add.outputs.size() != 1 ||
        !add.domain.empty())
      continue;
    for (size_t side = 0; side < 2; ++side) {
      auto pit = producer.find(add.inputs[side]);
      if (pit == producer.end() || dead[pit->second]) continue;
      Node& rs = g.nodes[pit->second];
      if (rs.op != "Resize" || !rs.domain.empty() || rs.opset < 11 || rs.outputs.size() != 1 ||
          uses[rs.outputs[0]] != 1 || rs.inputs.empty())
        continue;
      std::vector<std::string> inputs = {add.inputs[1 - side]};
      inputs.insert(inputs.end(), rs.inputs.begin(), rs.inputs.end());
      add.inputs = std::move(inputs);
      add.attrs = rs.attrs;
      add.attrs["resized_first"] = static_cast<int64_t>(side == 0);
      add.opset = rs.opset;
      add.op = "AddResized";
      add.domain = std::string(exec::kFusedDomain);
      dead[pit->second] = 1;
      break;
    }
  }
  // Concat of Resize outputs read only there (opset 11+, the same plain Resize attributes): one
  // ConcatResized, the upsampled maps written straight into the concatenation (the fused map of
  // a feature pyramid: they are never written on their own and read back).
  auto plain_attrs_equal = [](const Node& a, const Node& b) {
    auto same = [](const Attribute& x, const Attribute& y) {
      if (x.index() != y.index()) return false;
      if (const auto* i = std::get_if<int64_t>(&x)) return *i == std::get<int64_t>(y);
      if (const auto* f = std::get_if<float>(&x)) return *f == std::get<float>(y);
      if (const auto* t = std::get_if<std::string>(&x)) return *t == std::get<std::string>(y);
      return false;  // lists, tensors, graphs: not compared, not fused
    };
    if (a.attrs.size() != b.attrs.size()) return false;
    for (const auto& [k, v] : a.attrs) {
      auto it = b.attrs.find(k);
      if (it == b.attrs.end() || !same(v, it->second)) return false;
    }
    return true;
  };
  for (size_t i = 0; i < g.nodes.size(); ++i) {
    Node& cat = g.nodes[i];
    if (dead[i] || cat.op != "Concat" || !cat.domain.empty() || cat.outputs.size() != 1 ||
        !exec::has_attr(cat, "axis"))
      continue;
    std::vector<std::string> inputs;
    std::vector<int64_t> counts, flags;
    std::vector<size_t> resizes;
    const Node* first = nullptr;
    for (const std::string& in : cat.inputs) {
      auto pit = in.empty() ? producer.end() : producer.find(in);
      const Node* rs = pit == producer.end() || dead[pit->second] ? nullptr : &g.nodes[pit->second];
      if (rs && rs->op == "Resize" && rs->domain.empty() && rs->opset >= 11 &&
          rs->outputs.size() == 1 && uses[in] == 1 && !rs->inputs.empty() &&
          (!first || (rs->opset == first->opset && plain_attrs_equal(*rs, *first)))) {
        if (!first) first = rs;
        inputs.insert(inputs.end(), rs->inputs.begin(), rs->inputs.end());
        counts.push_back(static_cast<int64_t>(rs->inputs.size()));
        flags.push_back(1);
        resizes.push_back(pit->second);
      } else {
        inputs.push_back(in);
        counts.push_back(1);
        flags.push_back(0);
      }
    }
    if (!first) continue;
    const int64_t axis = attr_int(cat, "axis", 0);
    cat.attrs = first->attrs;
    cat.attrs["concat_axis"] = axis;
    cat.attrs["part_inputs"] = counts;
    cat.attrs["resized"] = flags;
    cat.opset = first->opset;
    cat.inputs = std::move(inputs);
    cat.op = "ConcatResized";
    cat.domain = std::string(exec::kFusedDomain);
    for (size_t r : resizes) dead[r] = 1;
  }
  // An AddScaled read only by an AddResized (its addend) or a ConcatResized (a part as it is):
  // computed in that pass (op_table.h a_scaled, resized = 2), its output never written (the
  // squeeze-excite residuals of the detector's pyramid, 96 x 160 x 160 floats at the largest).
  auto scaled_producer = [&](const std::string& v) -> Node* {
    auto pit = v.empty() ? producer.end() : producer.find(v);
    if (pit == producer.end() || dead[pit->second] || uses[v] != 1) return nullptr;
    Node& sc = g.nodes[pit->second];
    return sc.op == "AddScaled" && sc.domain == exec::kFusedDomain && sc.inputs.size() == 2
               ? &sc
               : nullptr;
  };
  for (size_t i = 0; i < g.nodes.size(); ++i) {
    Node& n = g.nodes[i];
    if (dead[i] || n.domain != exec::kFusedDomain) continue;
    if (n.op == "AddResized" && !n.inputs.empty() && !exec::has_attr(n, "a_scaled")) {
      Node* sc = scaled_producer(n.inputs[0]);
      if (!sc) continue;
      n.inputs[0] = sc->inputs[1];
      n.inputs.insert(n.inputs.begin(), sc->inputs[0]);
      n.attrs["a_scaled"] = int64_t{1};
      dead[static_cast<size_t>(sc - g.nodes.data())] = 1;
    } else if (n.op == "ConcatResized") {
      std::vector<int64_t> counts = attr_ints(n, "part_inputs"), flags = attr_ints(n, "resized");
      if (counts.size() != flags.size()) continue;
      std::vector<std::string> inputs;
      size_t at = 0;
      bool any = false;
      for (size_t k = 0; k < counts.size(); ++k) {
        const auto c = static_cast<size_t>(std::max<int64_t>(counts[k], 0));
        Node* sc = flags[k] == 0 && c == 1 && at < n.inputs.size() ? scaled_producer(n.inputs[at])
                                                                   : nullptr;
        if (sc) {
          inputs.insert(inputs.end(), sc->inputs.begin(), sc->inputs.end());
          counts[k] = 2, flags[k] = 2, any = true;
          dead[static_cast<size_t>(sc - g.nodes.data())] = 1;
        } else {
          for (size_t j = 0; j < c && at + j < n.inputs.size(); ++j)
            inputs.push_back(n.inputs[at + j]);
        }
        at += c;
      }
      if (!any) continue;
      n.inputs = std::move(inputs);
      n.attrs["part_inputs"] = counts;
      n.attrs["resized"] = flags;
    }
  }
  std::vector<Node> kept;
  for (size_t i = 0; i < g.nodes.size(); ++i)
    if (!dead[i]) kept.push_back(std::move(g.nodes[i]));
  g.nodes = std::move(kept);
}

// Evaluates nodes whose inputs are all constants; their outputs become initializers.
void Executor::Impl::fold(Graph& g) {
  std::vector<Node> kept;
  std::set<std::string> graph_outputs;
  for (const auto& o : g.outputs) graph_outputs.insert(o.name);
  for (Node& n : g.nodes) {
    exec::OpFn fn = exec::find_op(n.domain, n.op, n.opset);
    bool all_const = fn != nullptr;
    std::vector<const Tensor*> in;
    for (const auto& name : n.inputs) {
      if (name.empty()) {
        in.push_back(nullptr);
        continue;
      }
      const Tensor* t = const_of(g, name);
      if (!t) all_const = false;
      in.push_back(t);
    }
    bool out_is_graph_output = false;
    for (const auto& o : n.outputs) out_is_graph_output |= graph_outputs.count(o) > 0;
    if (!all_const || out_is_graph_output) {
      kept.push_back(std::move(n));
      continue;
    }
    std::vector<Tensor> out = fn(n, in);
    for (size_t i = 0; i < n.outputs.size() && i < out.size(); ++i)
      if (!n.outputs[i].empty()) g.initializers[n.outputs[i]] = std::move(out[i]);
  }
  g.nodes = std::move(kept);
}

int Executor::Impl::make_layer(const Node& n, const Graph& g) {
  auto const_w = [&](size_t i) -> const Tensor* {
    return i < n.inputs.size() ? const_of(g, n.inputs[i]) : nullptr;
  };
  Layer l;
  l.name = n.name;
  l.op = n.op;
  if (n.op == "Conv") {
    const Tensor* w = const_w(1);
    if (!w || w->dtype() != DType::kF32 || (w->rank() != 4 && w->rank() != 3)) return -1;
    if (n.inputs.size() > 2 && !n.inputs[2].empty() && !const_w(2)) return -1;
    l.kind = LayerKind::kConv;
    l.conv1d = w->rank() == 3;
    l.w_shape = w->shape();
    l.w = l.conv1d ? reshape(*w, {w->dim(0), w->dim(1), 1, w->dim(2)}) : *w;
    if (const Tensor* b = const_w(2)) {
      if (b->dtype() != DType::kF32 || b->numel() != w->dim(0))
        bad(n,
            "B must be [" + std::to_string(w->dim(0)) + "] float32, got " + shape_str(b->shape()));
      l.b = *b;
    }
    if (auto it = fused_act.find(n.name); it != fused_act.end())
      set_activation(l.conv, it->second, g);
    if (auto it = fused_affine.find(n.name); it != fused_affine.end()) {
      l.conv.post_affine = true;
      l.conv.post_scale = it->second.first;
      l.conv.post_shift = it->second.second;
    }
    l.weight_count = w->numel();
  } else if (n.op == "ConvTranspose") {
    const Tensor* w = const_w(1);
    if (!w || w->dtype() != DType::kF32 || w->rank() != 4) return -1;
    if (n.inputs.size() > 2 && !n.inputs[2].empty() && !const_w(2)) return -1;
    l.kind = LayerKind::kConvTranspose;
    l.w = *w;
    if (const Tensor* b = const_w(2)) l.b = *b;
    l.groups = attr_int(n, "group", 1);
    l.convt = exec::conv_transpose_params(n, 2);
    if (auto it = fused_act.find(n.name); it != fused_act.end()) {
      Conv2dParams a;
      set_activation(a, it->second, g);
      l.convt.activation = a.activation;
      l.convt.clip_min = a.clip_min;
      l.convt.clip_max = a.clip_max;
    }
    l.weight_count = w->numel();
  } else if (n.op == "MatMul") {
    const Tensor* b = const_w(1);
    if (!b || b->dtype() != DType::kF32 || b->rank() != 2) return -1;
    l.kind = LayerKind::kMatMul;
    l.w = transpose(*b, {1, 0});
    l.weight_count = b->numel();
  } else if (n.op == "Gemm") {
    const Tensor* b = const_w(1);
    if (!b || b->dtype() != DType::kF32 || b->rank() != 2) return -1;
    const Tensor* c = const_w(2);
    if (n.inputs.size() > 2 && !n.inputs[2].empty() && (!c || c->dtype() != DType::kF32)) return -1;
    l.kind = LayerKind::kGemm;
    l.w = attr_int(n, "transB", 0) ? b->clone() : transpose(*b, {1, 0});
    const float alpha = attr_float(n, "alpha", 1.0f);
    if (alpha != 1.0f)
      for (int64_t i = 0; i < l.w.numel(); ++i) l.w.data_as<float>()[i] *= alpha;
    l.gemm_beta = attr_float(n, "beta", 1.0f);
    l.gemm_trans_a = attr_int(n, "transA", 0) != 0;
    const int64_t nn = l.w.dim(0);
    if (c) {
      if (c->numel() == nn && (c->rank() == 1 || (c->rank() == 2 && c->dim(0) == 1))) {
        l.b = Tensor::zeros({nn}, DType::kF32);
        for (int64_t i = 0; i < nn; ++i)
          l.b.data_as<float>()[i] = l.gemm_beta * c->data_as<float>()[i];
      } else {
        l.gemm_c = *c;
      }
    }
    l.weight_count = b->numel();
  } else if (n.op == "LSTM") {
    const Tensor *w = const_w(1), *r = const_w(2);
    if (!w || !r) return -1;
    if (n.inputs.size() > 3 && !n.inputs[3].empty() && !const_w(3)) return -1;
    if (n.inputs.size() > 7 && !n.inputs[7].empty() && !const_w(7)) return -1;
    l.kind = LayerKind::kLstm;
    l.w = *w;
    l.r = *r;
    if (const Tensor* b = const_w(3)) l.b = *b;
    if (const Tensor* p = const_w(7)) l.p = *p;
    l.lstm = exec::lstm_params(n);
    l.weight_count = w->numel() + r->numel();
  } else {
    return -1;
  }
  LayerInfo info;
  info.name = l.name;
  info.op = l.op;
  info.formats = (1u << kFormatCount) - 1;
  info.weight_count = l.weight_count;
  layer_infos.push_back(info);
  layers.push_back(std::move(l));
  return static_cast<int>(layers.size()) - 1;
}

std::unique_ptr<CompiledGraph> Executor::Impl::compile(const Graph& g,
                                                       const std::set<std::string>& outer_names,
                                                       bool top) {
  auto cg = std::make_unique<CompiledGraph>();
  cg->graph = &g;
  for (const auto& [name, t] : g.initializers) {
    const int id = cg->id(name);
    cg->consts[static_cast<size_t>(id)] = t;
    cg->has_const[static_cast<size_t>(id)] = 1;
  }
  std::set<std::string> defined;
  for (const auto& [name, t] : g.initializers) defined.insert(name);
  for (const auto& in : g.inputs) {
    if (defined.count(in.name)) continue;  // an input with an initializer: a constant
    cg->input_ids.push_back(cg->id(in.name));
    defined.insert(in.name);
  }
  std::set<std::string> scope = outer_names;
  for (const auto& d : defined) scope.insert(d);
  std::set<int> outer_ids;
  auto use = [&](const std::string& name, const Node& n) -> int {
    if (name.empty()) return -1;
    if (!defined.count(name)) {
      if (top || !outer_names.count(name)) bad(n, "input '" + name + "' is not defined before it");
      const int id = cg->id(name);
      if (outer_ids.insert(id).second) cg->outer.push_back(id);
      defined.insert(name);
    }
    return cg->id(name);
  };
  for (const Node& n : g.nodes) {
    Step s;
    s.node = &n;
    for (const auto& i : n.inputs) s.in.push_back(use(i, n));
    if (n.op == "If" && (n.domain.empty() || n.domain == "ai.onnx")) {
      auto branch = [&](const char* key) {
        auto it = n.attrs.find(key);
        if (it == n.attrs.end() || !std::holds_alternative<std::shared_ptr<Graph>>(it->second))
          bad(n, std::string("missing subgraph attribute ") + key);
        const Graph& sub = *std::get<std::shared_ptr<Graph>>(it->second);
        auto c = compile(sub, scope, false);
        if (c->output_ids.size() != n.outputs.size())
          bad(n, std::string(key) + " has " + std::to_string(c->output_ids.size()) +
                     " outputs, the node " + std::to_string(n.outputs.size()));
        for (int oid : c->outer) use(c->names[static_cast<size_t>(oid)], n);
        return c;
      };
      s.then_g = branch("then_branch");
      s.else_g = branch("else_branch");
    } else {
      if (top) s.layer = make_layer(n, g);
      if (s.layer < 0) {
        s.fn = n.domain == exec::kFusedDomain ? exec::find_fused_op(n.op)
                                              : exec::find_op(n.domain, n.op, n.opset);
        if (n.domain == exec::kFusedDomain && n.outputs.size() == 1)
          s.amax_fn = exec::find_fused_amax_op(n.op);
        if (!s.fn)
          throw Error(ErrorKind::kUnsupported,
                      "unsupported operator " + n.op + " (domain '" +
                          (n.domain.empty() ? std::string("ai.onnx") : n.domain) + "', opset " +
                          std::to_string(n.opset) + ") in node '" + n.name + "'");
      }
    }
    for (const auto& o : n.outputs) {
      s.out.push_back(o.empty() ? -1 : cg->id(o));
      if (!o.empty()) {
        defined.insert(o);
        scope.insert(o);
      }
    }
    cg->steps.push_back(std::move(s));
  }
  for (const auto& o : g.outputs) {
    if (!defined.count(o.name)) {
      if (top || !outer_names.count(o.name))
        throw Error(ErrorKind::kInvalidInput, "graph output '" + o.name + "' is never computed");
      const int id = cg->id(o.name);
      if (outer_ids.insert(id).second) cg->outer.push_back(id);
    }
    cg->output_ids.push_back(cg->id(o.name));
  }
  // Last uses: free a value after the step that reads it last (never graph outputs/consts).
  std::vector<int> last(cg->names.size(), -1);
  for (size_t si = 0; si < cg->steps.size(); ++si) {
    const Step& s = cg->steps[si];
    for (int id : s.in)
      if (id >= 0) last[static_cast<size_t>(id)] = static_cast<int>(si);
    for (const auto* sub : {s.then_g.get(), s.else_g.get()})
      if (sub)
        for (int oid : sub->outer) last[static_cast<size_t>(cg->id(sub->names[oid]))] = si;
  }
  for (int id : cg->output_ids) last[static_cast<size_t>(id)] = -1;
  for (size_t id = 0; id < last.size(); ++id)
    if (last[id] >= 0 && !cg->has_const[id])
      cg->steps[static_cast<size_t>(last[id])].free_after.push_back(static_cast<int>(id));
  // ConvTranspose -> ConvTranspose with nothing else reading the value between them.
  std::vector<int> readers(cg->names.size(), 0);
  for (const Step& st : cg->steps)
    for (int id : st.in)
      if (id >= 0) ++readers[static_cast<size_t>(id)];
  for (size_t si = 0; si + 1 < cg->steps.size(); ++si) {
    Step& sa = cg->steps[si];
    const Step& sb = cg->steps[si + 1];
    auto is_convt = [&](const Step& st) {
      return st.layer >= 0 &&
             layers[static_cast<size_t>(st.layer)].kind == LayerKind::kConvTranspose;
    };
    if (!is_convt(sa) || !is_convt(sb) || sa.out.size() != 1 || sa.out[0] < 0 || sb.in.empty() ||
        sb.in[0] != sa.out[0] || sb.out.size() != 1 || sb.out[0] < 0)
      continue;
    const auto mid = static_cast<size_t>(sa.out[0]);
    sa.chain_next = opts.fuse && readers[mid] == 1 && last[mid] == static_cast<int>(si + 1);
  }
  return cg;
}

std::vector<Tensor> Executor::Impl::run_layer(Layer& l, const Node& n,
                                              std::span<const Tensor* const> in, const Plan& plan,
                                              RunStats* stats, int index, float x_amax,
                                              float* y_amax) {
  if (y_amax) *y_amax = -1.0f;
  const Format f = plan.at(l.name);
  const auto t0 = std::chrono::steady_clock::now();
  LayerRun rec;
  rec.layer = index;
  rec.format = f;
  std::vector<Tensor> out;
  if (in.empty() || !in[0]) bad(n, "missing input X");
  const Tensor x = contiguous_f32(*in[0], n, "input X");
  const bool monitor = stats && stats->monitor && opts.monitor.rate > 0;
  QualityReport rep;
  rep.layer = static_cast<uint32_t>(index);
  rep.format = f;
  double monitor_ms = 0;
  Tensor monitor_input;
  // Runs the shadow over a sample of `count` outputs: fn(i) -> (reference, got).
  // At fp32 there is no higher-precision shadow: fp32 is the reference precision, so its error
  // against the reference is 0 (sqnr_db +inf) and only the output's statistics are sampled.
  // Convolutions (NCHW outputs: `channels` planes of `plane` values per image): the sample takes
  // runs of consecutive pixels and, for each pixel, the same 8 channels (more where the plane
  // is too small), pixel-major. The shadow of a pixel needs a column of X (a 1x1 conv's column
  // is C values H·W apart) and of a channel a row of the fp32 master weights, both cold:
  // consecutive pixels share the column's cache lines and the channels' rows are fetched once
  // per run, so 16 samples as 2 pixels x 8 channels read half the weight bytes of 1 pixel x 16
  // channels from the same lines of X (4 x 4 cost no less on the recognizer and made the
  // per-portion estimate noisier: more switches).
  // prefetch(i): asks for the cold lines of position i (or nullptr). The position buffers are
  // this thread's, reused: allocating them per layer was a measurable part of the cost.
  auto monitor_sample = [&](int64_t count, Layer& lay, QualityReport& r, const float* ydata,
                            auto&& fn, int64_t channels, int64_t plane, auto&& prefetch) {
    const auto m0 = std::chrono::steady_clock::now();
    const uint32_t s = sample_size(opts.monitor, count);
    thread_local std::vector<int64_t> pos, heads, starts, chan;  // heads: prefetched positions
    pos.assign(s, 0);
    heads.clear();
    if (channels > 1 && plane >= 1 && count % (channels * plane) == 0) {
      const int64_t pixels_total = count / channels;  // images x plane
      const int64_t per_pixel =
          std::min<int64_t>({channels, static_cast<int64_t>(s),
                             std::max<int64_t>(8, (s + pixels_total - 1) / pixels_total)});
      const int64_t run = std::min<int64_t>(plane, (s + per_pixel - 1) / per_pixel);
      const auto nruns = static_cast<uint32_t>((s + per_pixel * run - 1) / (per_pixel * run));
      starts.assign(nruns, 0);
      chan.assign(static_cast<size_t>(per_pixel), 0);
      sample_positions(pixels_total, nruns, lay.visits, starts);
      sample_positions(channels, static_cast<uint32_t>(per_pixel), lay.visits * 7 + 3, chan);
      pos.clear();
      for (int64_t q : starts) {
        if (q < 0) continue;
        const int64_t img = q / plane, off = std::min(q % plane, plane - run);
        for (int64_t j = 0; j < run; ++j)
          for (int64_t c : chan)
            if (pos.size() < s) {
              pos.push_back((img * channels + c) * plane + off + j);
              if (j == 0) heads.push_back(pos.back());
            }
      }
    } else {
      sample_positions(count, s, lay.visits, pos);
      heads.assign(pos.begin(), pos.end());
    }
    SampleStats st;
    const bool shadow = r.format != Format::kFp32;
    // The shadow reads cold lines: the fp32 master weights, which the layer itself did not
    // read, and a strided column of X per pixel. Asking for all of them first lets the misses
    // overlap (one short row after another, the reads waited on each).
    if constexpr (!std::is_null_pointer_v<std::decay_t<decltype(prefetch)>>)
      if (shadow)
        for (int64_t i : heads) prefetch(i);
    const size_t custom = shadow ? custom_metric_count() : 0;
    std::vector<float> refs, gots;
    for (int64_t i : pos) {
      const auto [ref, got] = shadow ? fn(i) : std::pair<float, float>(ydata[i], ydata[i]);
      st.add(ref, got);
      if (custom) {
        refs.push_back(ref);
        gots.push_back(got);
      }
    }
    st.finish(r);
    if (!shadow && r.nan_count == 0 && r.inf_count == 0)
      r.sqnr_db = std::numeric_limits<float>::infinity();
    for (size_t m = 0; m < custom; ++m) r.custom[m] = metric_fn(m)(refs, gots);
    monitor_ms +=
        std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - m0).count();
  };
  auto monitor_weights = [&](Layer& lay, const float* w32, int64_t rows, int64_t cols) {
    if (lay.have_rho) return;
    const auto m0 = std::chrono::steady_clock::now();
    lay.rho_w = weight_noise(w32, rows, cols);
    lay.have_rho = true;
    monitor_ms +=
        std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - m0).count();
  };
  uint64_t act_bytes = static_cast<uint64_t>(x.numel()) * 4, w_bytes = 0, w_bytes32 = 0;
  switch (l.kind) {
    case LayerKind::kConv: {
      Tensor x4 = x;
      if (l.conv1d) {
        if (x.rank() != 3)
          bad(n, "input X must be [N, C, W] for a 1-D conv, got " + shape_str(x.shape()));
        x4 = reshape(x, {x.dim(0), x.dim(1), 1, x.dim(2)});
      } else if (x.rank() != 4) {
        bad(n, "input X must be [N, C, H, W], got " + shape_str(x.shape()));
      }
      Conv2dParams p = exec::conv2d_params(n, x.shape(), l.w_shape);
      p.activation = l.conv.activation;
      p.clip_min = l.conv.clip_min;
      p.clip_max = l.conv.clip_max;
      p.post_affine = l.conv.post_affine;
      p.post_scale = l.conv.post_scale;
      p.post_shift = l.conv.post_shift;
      const ConvWeights& w = cached<ConvWeights>(l, f, make_conv);
      if (x4.dim(1) != w.ic_per_group * p.groups)
        bad(n, "input X has " + std::to_string(x4.dim(1)) + " channels, the weights expect " +
                   std::to_string(w.ic_per_group * p.groups));
      Tensor y = Tensor::empty(conv2d_output_shape(x4.shape(), w, p), DType::kF32);
      // max |X| from the layer that made X (its kernel took it while storing), and max |Y| for
      // the next: an int8 layer then skips its own pass over X for the scale.
      const ConvHints hints{x_amax, y_amax};
      conv2d(x4, w, l.b.empty() ? nullptr : l.b.data_as<float>(), p, y, opts.threads, &hints);
      rec.macs = y.numel() * w.ic_per_group * w.kh * w.kw;
      act_bytes += static_cast<uint64_t>(y.numel()) * 4;
      w_bytes = w.matrix.bytes();
      w_bytes32 = static_cast<uint64_t>(l.w.numel()) * 4;
      if (monitor) {
        // Shadow of sampled outputs: fp32 master weights on the same fp32 input.
        const int64_t oc = y.dim(1), oh = y.dim(2), ow = y.dim(3);
        const int64_t icg = w.ic_per_group, kh = w.kh, kw = w.kw, ocg = oc / p.groups;
        const int64_t h = x4.dim(2), wd = x4.dim(3);
        const float* xd = x4.data_as<float>();
        const float* wf = l.w.data_as<float>();
        const float* yd = y.data_as<float>();
        // The samples come pixel by pixel (monitor_sample): a pixel's receptive field in its
        // group's input channels is copied once, in the weight rows' (ic, ky, kx) order with
        // zeros for the padding, and each sampled channel of the group is then one contiguous
        // dot product with its weight row.
        const int64_t k = icg * kh * kw;
        std::vector<float> column(static_cast<size_t>(k));
        std::vector<int64_t> taps(static_cast<size_t>(kh * kw));
        int64_t column_key = -1;
        monitor_sample(
            y.numel(), l, rep, y.data_as<float>(),
            [&](int64_t i) {
              const int64_t ox = i % ow, oy = (i / ow) % oh, c = (i / (ow * oh)) % oc,
                            b = i / (ow * oh * oc), g = c / ocg;
              const int64_t key = ((b * oh + oy) * ow + ox) * p.groups + g;
              if (key != column_key) {
                // The taps' offsets in a channel plane (-1: padding), then channel by channel.
                for (int64_t ky = 0; ky < kh; ++ky) {
                  const int64_t iy = oy * p.stride_h - p.pad_top + ky * p.dilation_h;
                  for (int64_t kx = 0; kx < kw; ++kx) {
                    const int64_t ix = ox * p.stride_w - p.pad_left + kx * p.dilation_w;
                    taps[static_cast<size_t>(ky * kw + kx)] =
                        iy >= 0 && iy < h && ix >= 0 && ix < wd ? iy * wd + ix : -1;
                  }
                }
                float* col = column.data();
                const float* xp = xd + (b * x4.dim(1) + g * icg) * h * wd;
                for (int64_t ic = 0; ic < icg; ++ic, xp += h * wd)
                  for (const int64_t t : taps) *col++ = t >= 0 ? xp[t] : 0.0f;
                column_key = key;
              }
              const double acc = (l.b.empty() ? 0.0 : l.b.data_as<float>()[c]) +
                                 shadow_dot(column.data(), wf + c * k, k);
              return std::pair<float, float>(apply_activation(static_cast<float>(acc), p), yd[i]);
            },
            oc, oh * ow,
            [&, last_c = int64_t{-1}, last_px = int64_t{-1}](int64_t i) mutable {
              const int64_t px = i % (oh * ow) + i / (oh * ow * oc) * (oh * ow);
              const int64_t c = (i / (ow * oh)) % oc;
              if (c != last_c) prefetch_floats(wf + c * k, k);
              last_c = c;
              if (px == last_px) return;
              last_px = px;
              const int64_t ox = i % ow, oy = (i / ow) % oh, b = i / (ow * oh * oc), g = c / ocg;
              const int64_t ix = std::clamp<int64_t>(ox * p.stride_w - p.pad_left, 0, wd - 1);
              for (int64_t ic = 0; ic < icg; ++ic)
                for (int64_t ky = 0; ky < kh; ++ky) {
                  const int64_t iy = oy * p.stride_h - p.pad_top + ky * p.dilation_h;
                  if (iy >= 0 && iy < h)
                    __builtin_prefetch(xd + ((b * x4.dim(1) + g * icg + ic) * h + iy) * wd + ix);
                }
            });
        monitor_weights(l, l.w.data_as<float>(), l.w.dim(0), l.w.numel() / l.w.dim(0));
        monitor_input = x4;
      }
      if (l.conv1d) y = reshape(y, {y.dim(0), y.dim(1), y.dim(3)});
      out.push_back(std::move(y));
      break;
    }
    case LayerKind::kConvTranspose: {
      if (x.rank() != 4) bad(n, "input X must be [N, C, H, W], got " + shape_str(x.shape()));
      const ConvTransposeWeights& w = cached<ConvTransposeWeights>(l, f, make_convt);
      Tensor y = Tensor::empty(conv_transpose_output_shape(x.shape(), w, l.convt), DType::kF32);
      const ConvHints hints{x_amax, y_amax};
      conv_transpose2d(x, w, l.b.empty() ? nullptr : l.b.data_as<float>(), l.convt, y, opts.threads,
                       &hints);
      if (monitor) {
        const ConvTransposeGeometry geo = conv_transpose_geometry(x.shape(), w, l.convt);
        const int64_t oc = y.dim(1), oh = y.dim(2), ow = y.dim(3), ocg = w.oc_per_group;
        const int64_t cg = x.dim(1) / w.groups, h = x.dim(2), wd = x.dim(3), kh = w.kh, kw = w.kw;
        const ConvTransposeParams& cp = l.convt;
        const float* xd = x.data_as<float>();
        const float* wf = l.w.data_as<float>();
        const float* yd = y.data_as<float>();
        monitor_sample(
            y.numel(), l, rep, y.data_as<float>(),
            [&](int64_t i) {
              const int64_t ox = i % ow, oy = (i / ow) % oh, c = (i / (ow * oh)) % oc,
                            b = i / (ow * oh * oc), g = c / ocg, co = c % ocg;
              double acc = l.b.empty() ? 0.0 : l.b.data_as<float>()[c];
              for (int64_t ky = 0; ky < kh; ++ky) {
                const int64_t ty = oy + geo.pad_top - ky * cp.dilation_h;
                if (ty < 0 || ty % cp.stride_h != 0 || ty / cp.stride_h >= h) continue;
                for (int64_t kx = 0; kx < kw; ++kx) {
                  const int64_t tx = ox + geo.pad_left - kx * cp.dilation_w;
                  if (tx < 0 || tx % cp.stride_w != 0 || tx / cp.stride_w >= wd) continue;
                  for (int64_t ic = 0; ic < cg; ++ic) {
                    const int64_t ci = g * cg + ic;
                    acc +=
                        static_cast<double>(xd[((b * x.dim(1) + ci) * h + ty / cp.stride_h) * wd +
                                               tx / cp.stride_w]) *
                        wf[((ci * ocg + co) * kh + ky) * kw + kx];
                  }
                }
              }
              Conv2dParams ap;
              ap.activation = cp.activation;
              ap.clip_min = cp.clip_min;
              ap.clip_max = cp.clip_max;
              return std::pair<float, float>(apply_activation(static_cast<float>(acc), ap), yd[i]);
            },
            oc, oh * ow, nullptr);
        const MatmulWeights& m32 =
            cached<ConvTransposeWeights>(l, Format::kFp32, make_convt).matrix;
        monitor_weights(l, m32.data.data_as<float>(), m32.n, m32.k);
        monitor_input = x;
      }
      rec.macs = x.numel() * (l.w.numel() / l.w.dim(0));
      act_bytes += static_cast<uint64_t>(y.numel()) * 4;
      w_bytes = w.matrix.bytes();
      w_bytes32 = static_cast<uint64_t>(l.w.numel()) * 4;
      out.push_back(std::move(y));
      break;
    }
    case LayerKind::kMatMul:
    case LayerKind::kGemm: {
      const MatmulWeights& w = cached<MatmulWeights>(l, f, make_mm);
      Tensor a = x;
      if (l.kind == LayerKind::kGemm) {
        if (x.rank() != 2) bad(n, "input A must be 2-D, got " + shape_str(x.shape()));
        if (l.gemm_trans_a) a = transpose(x, {1, 0});
      }
      if (a.rank() < 1 || a.dim(a.rank() - 1) != w.k)
        bad(n, "input has shape " + shape_str(a.shape()) +
                   ", the weights expect K=" + std::to_string(w.k) + " in the last dim");
      if (l.kind == LayerKind::kMatMul && a.rank() == 1) a = reshape(a, {1, w.k});
      Shape ys = a.shape();
      ys.back() = w.n;
      if (l.kind == LayerKind::kMatMul && x.rank() == 1) ys = {w.n};
      Tensor y = Tensor::empty(ys, DType::kF32);
      const int64_t m = a.numel() / w.k;
      matmul(a.data_as<float>(), m, w, l.b.empty() ? nullptr : l.b.data_as<float>(),
             y.data_as<float>(), opts.threads);
      if (monitor) {
        const float* ad = a.data_as<float>();
        const float* wf = l.w.data_as<float>();
        const float* yd = y.data_as<float>();
        const int64_t nn = w.n, kk = w.k;
        if (l.gemm_c.empty())
          monitor_sample(
              y.numel(), l, rep, y.data_as<float>(),
              [&](int64_t i) {
                const int64_t r = i / nn, c = i % nn;
                const double acc = (l.b.empty() ? 0.0 : l.b.data_as<float>()[c]) +
                                   shadow_dot(ad + r * kk, wf + c * kk, kk);
                return std::pair<float, float>(static_cast<float>(acc), yd[i]);
              },
              1, 1,
              [&](int64_t i) {
                prefetch_floats(ad + i / nn * kk, kk);
                prefetch_floats(wf + i % nn * kk, kk);
              });
        monitor_weights(l, wf, nn, kk);
        monitor_input = a;
      }
      if (!l.gemm_c.empty()) {
        Tensor c = l.gemm_c;
        if (l.gemm_beta != 1.0f) {
          c = c.clone();
          for (int64_t i = 0; i < c.numel(); ++i) c.data_as<float>()[i] *= l.gemm_beta;
        }
        y = binary(BinaryOp::kAdd, y, c);
      }
      rec.macs = m * w.n * w.k;
      act_bytes += static_cast<uint64_t>(y.numel()) * 4;
      w_bytes = w.bytes();
      w_bytes32 = static_cast<uint64_t>(w.n * w.k) * 4;
      out.push_back(std::move(y));
      break;
    }
    case LayerKind::kLstm: {
      const LstmWeights& w = cached<LstmWeights>(l, f, make_lstm);
      auto opt = [&](size_t i) -> const Tensor* { return i < in.size() ? in[i] : nullptr; };
      LstmOutputs o = lstm(x, w, l.lstm, opt(4), opt(5), opt(6), opts.threads);
      if (monitor) {
        // No shadow (the recurrence would need the whole sequence again): predictions only.
        monitor_weights(l, l.w.data_as<float>(), l.w.numel() / l.w.dim(l.w.rank() - 1),
                        l.w.dim(l.w.rank() - 1));
        monitor_input = x;
      }
      rec.macs =
          x.numel() / std::max<int64_t>(w.input, 1) * w.dirs * 4 * w.hidden * (w.input + w.hidden);
      act_bytes += static_cast<uint64_t>(o.y.numel() + o.y_h.numel() + o.y_c.numel()) * 4;
      for (int64_t d = 0; d < w.dirs; ++d)
        w_bytes += w.w[static_cast<size_t>(d)].bytes() + w.r[static_cast<size_t>(d)].bytes();
      w_bytes32 = static_cast<uint64_t>(l.w.numel() + l.r.numel()) * 4;
      out.push_back(std::move(o.y));
      out.push_back(std::move(o.y_h));
      out.push_back(std::move(o.y_c));
      break;
    }
  }
  if (monitor) {
    const auto m0 = std::chrono::steady_clock::now();
    const InputStats ist =
        input_stats(monitor_input, sample_size(opts.monitor, monitor_input.numel()), l.visits, f);
    rep.saturated = ist.saturated;
    rep.underflow = ist.underflow;
    fill_predictions(rep, l, ist);
    ++l.visits;
    monitor_ms +=
        std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - m0).count();
    stats->reports.push_back(rep);
    stats->monitor_ms += monitor_ms;
  }
  rec.bytes = act_bytes + w_bytes;
  rec.bytes_fp32 = act_bytes + w_bytes32;
  rec.time_ms =
      std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
  if (trace_layers())
    trace_layer(l.name, l.op, f, x.shape(), l.w.shape(), out[0].shape(), rec.time_ms);
  if (stats) stats->layers.push_back(std::move(rec));
  return out;
}

std::optional<Tensor> Executor::Impl::run_convt_chain(Layer& a, const Node& na, const Tensor* xin,
                                                      Layer& b, const Plan& plan, RunStats* stats,
                                                      int ia, int ib) {
  if (!xin || xin->rank() != 4) return std::nullopt;  // run_layer reports what is wrong
  const Format fa = plan.at(a.name), fb = plan.at(b.name);
  const auto t0 = std::chrono::steady_clock::now();
  const Tensor x = contiguous_f32(*xin, na, "input X");
  const ConvTransposeWeights& wa = cached<ConvTransposeWeights>(a, fa, make_convt);
  const ConvTransposeWeights& wb = cached<ConvTransposeWeights>(b, fb, make_convt);
  const Shape mid = conv_transpose_output_shape(x.shape(), wa, a.convt);
  Tensor y = Tensor::empty(conv_transpose_output_shape(mid, wb, b.convt), DType::kF32);
  if (!conv_transpose2d_chain(x, wa, a.b.empty() ? nullptr : a.b.data_as<float>(), a.convt, wb,
                              b.b.empty() ? nullptr : b.b.data_as<float>(), b.convt, y,
                              opts.threads))
    return std::nullopt;
  const double ms =
      std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
  // Each layer as run_layer reports it, except for A's output, which is neither written nor
  // read (bytes: what the device moved); the time split by MACs.
  uint64_t mid_count = 1;
  for (int64_t d : mid) mid_count *= static_cast<uint64_t>(d);
  LayerRun ra, rb;
  ra.layer = ia, rb.layer = ib;
  ra.chained_with = ib, rb.chained_with = ia;
  ra.format = fa, rb.format = fb;
  ra.macs = x.numel() * (a.w.numel() / a.w.dim(0));
  rb.macs = static_cast<int64_t>(mid_count) * (b.w.numel() / b.w.dim(0));
  const uint64_t xa = static_cast<uint64_t>(x.numel()) * 4,
                 yb = static_cast<uint64_t>(y.numel()) * 4;
  ra.bytes = xa + wa.matrix.bytes();
  ra.bytes_fp32 = xa + static_cast<uint64_t>(a.w.numel()) * 4;
  rb.bytes = yb + wb.matrix.bytes();
  rb.bytes_fp32 = yb + static_cast<uint64_t>(b.w.numel()) * 4;
  const double share =
      static_cast<double>(ra.macs) / static_cast<double>(std::max<int64_t>(1, ra.macs + rb.macs));
  ra.time_ms = ms * share;
  rb.time_ms = ms - ra.time_ms;
  if (trace_layers()) {
    trace_layer(a.name, a.op, fa, x.shape(), a.w.shape(), mid, ra.time_ms);
    trace_layer(b.name, b.op, fb, mid, b.w.shape(), y.shape(), rb.time_ms);
  }
  if (stats) {
    stats->layers.push_back(ra);
    stats->layers.push_back(rb);
  }
  return y;
}

std::vector<Tensor> Executor::Impl::run_graph(
    CompiledGraph& cg, std::vector<Tensor>& vals, const Plan& plan, RunStats* stats,
    const std::function<const Tensor*(const std::string&)>& outer) {
  std::vector<char> set(cg.names.size(), 0);
  for (size_t i = 0; i < cg.names.size(); ++i)
    if (cg.has_const[i]) set[i] = 1;
  for (int id : cg.input_ids) set[static_cast<size_t>(id)] = 1;
  auto value = [&](int id, const Node& n) -> const Tensor* {
    if (id < 0) return nullptr;
    const auto i = static_cast<size_t>(id);
    if (cg.has_const[i]) return &cg.consts[i];
    if (!set[i]) {
      if (const Tensor* t = outer ? outer(cg.names[i]) : nullptr) return t;
      bad(n, "input '" + cg.names[i] + "' has no value");
    }
    return &vals[i];
  };
  std::vector<const Tensor*> in;
  // Per value, max |value| where the layer that made it took it (-1: unknown).
  std::vector<float> amax(cg.names.size(), -1.0f);
  const bool monitoring = stats && stats->monitor && opts.monitor.rate > 0;
  for (size_t si = 0; si < cg.steps.size(); ++si) {
    Step& s = cg.steps[si];
    const Node& n = *s.node;
    in.clear();
    for (int id : s.in) in.push_back(value(id, n));
    if (s.chain_next && !monitoring) {
      Step& s2 = cg.steps[si + 1];
      const auto t0 = std::chrono::steady_clock::now();
      std::optional<Tensor> y =
          run_convt_chain(layers[static_cast<size_t>(s.layer)], n, in.empty() ? nullptr : in[0],
                          layers[static_cast<size_t>(s2.layer)], plan, stats, s.layer, s2.layer);
      if (y) {
        if (stats && stats->profile_ops)
          stats->op_time_ms[n.op] +=
              std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0)
                  .count();
        vals[static_cast<size_t>(s2.out[0])] = std::move(*y);
        set[static_cast<size_t>(s2.out[0])] = 1;
        for (int id : s.free_after) vals[static_cast<size_t>(id)] = Tensor();
        for (int id : s2.free_after) vals[static_cast<size_t>(id)] = Tensor();
        ++si;
        continue;
      }
    }
    std::vector<Tensor> out;
    const bool prof = stats && stats->profile_ops;
    const auto t0 =
        prof ? std::chrono::steady_clock::now() : std::chrono::steady_clock::time_point{};
    if (s.then_g) {
      if (in.empty() || !in[0] || in[0]->dtype() != DType::kBool || in[0]->numel() != 1)
        bad(n, "cond must be a single bool");
      CompiledGraph& sub = *in[0]->data_as<bool>() ? *s.then_g : *s.else_g;
      std::vector<Tensor> sv(sub.names.size());
      auto lookup = [&](const std::string& name) -> const Tensor* {
        auto it = cg.ids.find(name);
        if (it == cg.ids.end()) return outer ? outer(name) : nullptr;
        return value(it->second, n);
      };
      out = run_graph(sub, sv, plan, stats, lookup);
    } else if (s.layer >= 0) {
      const int xi = s.in.empty() ? -1 : s.in[0];
      const float x_amax =
          xi >= 0 && !cg.has_const[static_cast<size_t>(xi)] ? amax[static_cast<size_t>(xi)] : -1.0f;
      float y_amax = -1.0f;
      out = run_layer(layers[static_cast<size_t>(s.layer)], n, in, plan, stats, s.layer, x_amax,
                      &y_amax);
      if (!s.out.empty() && s.out[0] >= 0) amax[static_cast<size_t>(s.out[0])] = y_amax;
    } else {
      while (!in.empty() && !in.back()) in.pop_back();
      if (s.amax_fn) {
        float y_amax = -1.0f;
        out = s.amax_fn(n, in, &y_amax);
        if (!s.out.empty() && s.out[0] >= 0) amax[static_cast<size_t>(s.out[0])] = y_amax;
      } else {
        out = s.fn(n, in);
      }
    }
    if (prof)
      stats->op_time_ms[n.op] +=
          std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
    for (size_t i = 0; i < s.out.size() && i < out.size(); ++i) {
      if (s.out[i] < 0) continue;
      vals[static_cast<size_t>(s.out[i])] = std::move(out[i]);
      set[static_cast<size_t>(s.out[i])] = 1;
    }
    for (size_t i = out.size(); i < s.out.size(); ++i)
      if (s.out[i] >= 0) set[static_cast<size_t>(s.out[i])] = 1;  // omitted optional output
    for (int id : s.free_after) vals[static_cast<size_t>(id)] = Tensor();
  }
  std::vector<Tensor> result;
  for (int id : cg.output_ids) {
    Node dummy;
    dummy.name = cg.graph->name;
    dummy.op = "graph";
    result.push_back(*value(id, dummy));
  }
  return result;
}

// ---- Executor -----------------------------------------------------------------------------------

Executor::Executor(const Model& model, ExecutorOptions opts) : impl_(std::make_unique<Impl>()) {
  Impl& m = *impl_;
  m.opts = opts;
  m.graph = model.graph;
  m.opsets = model.opsets;
  // Refuse unsupported ops before doing any work, naming op, domain and opset.
  std::function<void(const Graph&)> check = [&](const Graph& g) {
    for (const Node& n : g.nodes) {
      if (!exec::op_supported(n.domain, n.op, n.opset))
        throw Error(ErrorKind::kUnsupported,
                    "unsupported operator " + n.op + " (domain '" +
                        (n.domain.empty() ? std::string("ai.onnx") : n.domain) + "', opset " +
                        std::to_string(n.opset) + ") in node '" + n.name + "'");
      for (const auto& [k, a] : n.attrs)
        if (const auto* sub = std::get_if<std::shared_ptr<Graph>>(&a)) check(**sub);
    }
  };
  check(m.graph);
  if (opts.fold_constants) m.fold(m.graph);
  if (opts.fuse) m.fuse(m.graph);
  for (const auto& in : m.graph.inputs)
    if (!m.graph.initializers.count(in.name)) m.inputs.push_back(in);
  m.outputs = m.graph.outputs;
  m.main = m.compile(m.graph, {}, true);
}

Executor::~Executor() = default;

const std::vector<ValueInfo>& Executor::inputs() const { return impl_->inputs; }
const std::vector<ValueInfo>& Executor::outputs() const { return impl_->outputs; }
const std::vector<LayerInfo>& Executor::layers() const { return impl_->layer_infos; }

namespace {

void check_inputs(const std::vector<ValueInfo>& decl, const TensorMap& given) {
  for (const auto& [name, t] : given) {
    bool known = false;
    for (const auto& d : decl) known |= d.name == name;
    if (!known) {
      std::string names;
      for (const auto& d : decl) names += (names.empty() ? "" : ", ") + d.name;
      throw Error(ErrorKind::kInvalidInput,
                  "the model has no input named '" + name + "' (its inputs: " + names + ")");
    }
  }
  std::map<std::string, int64_t> symbols;
  for (const auto& d : decl) {
    auto it = given.find(d.name);
    if (it == given.end()) throw Error(ErrorKind::kInvalidInput, "input " + d.name + " is missing");
    const Tensor& t = it->second;
    if (t.dtype() != d.dtype)
      throw Error(ErrorKind::kInvalidInput,
                  "input " + d.name + " has dtype " + std::string(dtype_name(t.dtype())) +
                      ", the model expects " + std::string(dtype_name(d.dtype)));
    if (!d.shape.empty() || t.rank() == 0) {
      if (static_cast<size_t>(t.rank()) != d.shape.size())
        throw Error(ErrorKind::kInvalidInput,
                    "input " + d.name + " has rank " + std::to_string(t.rank()) + " " +
                        shape_str(t.shape()) + ", the model expects rank " +
                        std::to_string(d.shape.size()));
    }
    for (size_t i = 0; i < d.shape.size() && i < t.shape().size(); ++i) {
      const Dim& dim = d.shape[i];
      const int64_t got = t.shape()[i];
      if (dim.known() && dim.size != got)
        throw Error(ErrorKind::kInvalidInput, "input " + d.name +
                                                  " has mismatch on dim=" + std::to_string(i) +
                                                  ". Expected " + std::to_string(dim.size) +
                                                  ", received " + std::to_string(got));
      if (!dim.known() && !dim.symbol.empty()) {
        auto [s, fresh] = symbols.emplace(dim.symbol, got);
        if (!fresh && s->second != got)
          throw Error(ErrorKind::kInvalidInput,
                      "input " + d.name + " has mismatch on dim=" + std::to_string(i) + " ('" +
                          dim.symbol + "'). Expected " + std::to_string(s->second) +
                          " as bound by an earlier input, received " + std::to_string(got));
      }
    }
  }
}

}  // namespace

TensorMap Executor::run(const TensorMap& inputs, const Plan& plan, RunStats* stats) {
  Impl& m = *impl_;
  check_inputs(m.inputs, inputs);
  const auto t0 = std::chrono::steady_clock::now();
  CompiledGraph& cg = *m.main;
  std::vector<Tensor> vals(cg.names.size());
  for (int id : cg.input_ids) vals[static_cast<size_t>(id)] = inputs.at(cg.names[id]);
  if (stats) {
    stats->layers.clear();
    stats->op_time_ms.clear();
    stats->reports.clear();
    stats->monitor_ms = 0;
  }
  std::vector<Tensor> res = m.run_graph(cg, vals, plan, stats, nullptr);
  TensorMap out;
  for (size_t i = 0; i < res.size(); ++i) out[m.outputs[i].name] = std::move(res[i]);
  if (stats)
    stats->time_ms =
        std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
  return out;
}

}  // namespace dynaprec
