// Reference LSTM: the semantics of include/dynaprec/lstm.h in plain loops, plus the weights,
// the activation names and the input checks that every implementation shares. Slow on purpose:
// the projections go through ref::matmul (the definition of each format's arithmetic), one
// call per direction for X and one per step for the running entries' h.
#include <cctype>
#include <cmath>
#include <string>
#include <vector>

#include "dynaprec/error.h"
#include "dynaprec/lstm.h"

namespace dynaprec {
namespace {

[[noreturn]] void invalid(const std::string& what) {
  throw Error(ErrorKind::kInvalidInput, "LSTM: " + what);
}

std::string num(int64_t v) { return std::to_string(v); }

std::string desc(const Tensor& t) {
  return std::string(dtype_name(t.dtype())) + " " + shape_str(t.shape());
}

void want(const Tensor& t, const char* name, const Shape& shape) {
  if (t.dtype() != DType::kF32 || t.shape() != shape)
    invalid(std::string(name) + " must be float32 " + shape_str(shape) + ", got " + desc(t));
}

std::vector<float> contiguous_values(const Tensor& t) {
  const Tensor c = t.is_contiguous() ? t : t.clone();
  return std::vector<float>(c.data_as<float>(), c.data_as<float>() + c.numel());
}

}  // namespace

RnnActivationFn rnn_activation(std::string_view name, std::optional<float> alpha,
                               std::optional<float> beta) {
  std::string n;
  for (char ch : name) n += static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
  struct Entry {
    const char* name;
    RnnActivation kind;
    float alpha, beta;
  };
  static constexpr Entry kTable[] = {
      {"sigmoid", RnnActivation::kSigmoid, 0.0f, 0.0f},
      {"tanh", RnnActivation::kTanh, 0.0f, 0.0f},
      {"relu", RnnActivation::kRelu, 0.0f, 0.0f},
      {"hardsigmoid", RnnActivation::kHardSigmoid, 0.2f, 0.5f},
      {"leakyrelu", RnnActivation::kLeakyRelu, 0.01f, 0.0f},
      {"thresholdedrelu", RnnActivation::kThresholdedRelu, 1.0f, 0.0f},
      {"affine", RnnActivation::kAffine, 1.0f, 0.0f},
      {"scaledtanh", RnnActivation::kScaledTanh, 1.0f, 1.0f},
      {"elu", RnnActivation::kElu, 1.0f, 0.0f},
      {"softsign", RnnActivation::kSoftsign, 0.0f, 0.0f},
      {"softplus", RnnActivation::kSoftplus, 0.0f, 0.0f},
  };
  for (const Entry& e : kTable)
    if (n == e.name) return {e.kind, alpha.value_or(e.alpha), beta.value_or(e.beta)};
  throw Error(ErrorKind::kUnsupported,
              "LSTM: activation '" + std::string(name) +
                  "' is not supported (Sigmoid, Tanh, Relu, HardSigmoid, LeakyRelu, "
                  "ThresholdedRelu, Affine, ScaledTanh, Elu, Softsign, Softplus)");
}

LstmWeights lstm_weights(const Tensor& w, const Tensor& r, const Tensor* b, const Tensor* p,
                         Format f) {
  if (w.dtype() != DType::kF32 || w.rank() != 3)
    invalid("W must be float32 [num_directions, 4*hidden_size, input_size], got " + desc(w));
  const int64_t dirs = w.dim(0), g4 = w.dim(1), in = w.dim(2);
  if (dirs != 1 && dirs != 2) invalid("W's num_directions must be 1 or 2, got " + desc(w));
  if (g4 < 4 || g4 % 4 != 0 || in < 1)
    invalid(
        "W must be [num_directions, 4*hidden_size, input_size] with hidden_size, "
        "input_size >= 1, got " +
        shape_str(w.shape()));
  const int64_t hid = g4 / 4;
  want(r, "R", {dirs, g4, hid});
  if (b) want(*b, "B", {dirs, 2 * g4});
  if (p) want(*p, "P", {dirs, 3 * hid});
  const std::vector<float> wv = contiguous_values(w), rv = contiguous_values(r);
  LstmWeights lw;
  lw.hidden = hid;
  lw.input = in;
  lw.dirs = dirs;
  try {
    for (int64_t d = 0; d < dirs; ++d) {
      const Tensor wd =
          Tensor::borrow(const_cast<float*>(wv.data()) + d * g4 * in, {g4, in}, DType::kF32);
      const Tensor rd =
          Tensor::borrow(const_cast<float*>(rv.data()) + d * g4 * hid, {g4, hid}, DType::kF32);
      lw.w.push_back(matmul_weights(wd, f));
      lw.r.push_back(matmul_weights(rd, f));
    }
  } catch (const Error& e) {
    invalid(e.what());
  }
  lw.bias.assign(static_cast<size_t>(dirs * g4), 0.0f);
  if (b) {
    const std::vector<float> bv = contiguous_values(*b);
    for (int64_t d = 0; d < dirs; ++d)
      for (int64_t j = 0; j < g4; ++j)
        lw.bias[d * g4 + j] = bv[d * 2 * g4 + j] + bv[d * 2 * g4 + g4 + j];
  }
  if (p) lw.peepholes = contiguous_values(*p);
  return lw;
}

namespace detail {

LstmProblem lstm_prepare(const Tensor& x, const LstmWeights& w, const LstmParams& p,
                         const Tensor* seq_lens, const Tensor* init_h, const Tensor* init_c) {
  if (p.layout != 0 && p.layout != 1) invalid("layout must be 0 or 1, got " + num(p.layout));
  const int64_t dirs = p.direction == LstmDirection::kBidirectional ? 2 : 1;
  if (w.dirs != dirs || static_cast<int64_t>(w.w.size()) != dirs ||
      static_cast<int64_t>(w.r.size()) != dirs)
    invalid("the weights have " + num(w.dirs) + " direction(s), the direction attribute wants " +
            num(dirs));
  const int64_t H = w.hidden, I = w.input;
  if (H < 1 || I < 1 || static_cast<int64_t>(w.bias.size()) != dirs * 4 * H ||
      (!w.peepholes.empty() && static_cast<int64_t>(w.peepholes.size()) != dirs * 3 * H))
    invalid("weights are not an lstm_weights result");
  for (int64_t d = 0; d < dirs; ++d)
    if (w.w[d].n != 4 * H || w.w[d].k != I || w.r[d].n != 4 * H || w.r[d].k != H)
      invalid("weights are not an lstm_weights result");
  if (x.dtype() != DType::kF32 || x.rank() != 3)
    invalid("X must be float32 rank 3, got " + desc(x));
  if (x.dim(2) != I)
    invalid("X's input_size " + num(x.dim(2)) + " differs from W's " + num(I) + " (X " +
            shape_str(x.shape()) + ")");
  LstmProblem pb;
  pb.seq = p.layout == 0 ? x.dim(0) : x.dim(1);
  pb.batch = p.layout == 0 ? x.dim(1) : x.dim(0);
  pb.input = I;
  pb.hidden = H;
  pb.dirs = dirs;
  const int64_t S = pb.seq, B = pb.batch;
  if (S < 0 || B < 0) invalid("X has a negative dimension: " + shape_str(x.shape()));
  shape_numel(std::vector<int64_t>{S, dirs, B, 4 * H});  // overflow
  if (p.clip && !(*p.clip >= 0.0f))
    invalid("clip must be a non-negative threshold, got " + std::to_string(*p.clip));
  if (p.activations.empty()) {
    for (int64_t d = 0; d < dirs; ++d)
      pb.acts.insert(pb.acts.end(), {{RnnActivation::kSigmoid, 0, 0},
                                     {RnnActivation::kTanh, 0, 0},
                                     {RnnActivation::kTanh, 0, 0}});
  } else if (static_cast<int64_t>(p.activations.size()) == 3 * dirs) {
    pb.acts = p.activations;
  } else {
    invalid("activations must list 3 functions per direction (" + num(3 * dirs) + "), got " +
            num(static_cast<int64_t>(p.activations.size())));
  }
  // X in layout 0.
  const std::vector<float> xv = contiguous_values(x);
  if (p.layout == 0) {
    pb.x = xv;
  } else {
    pb.x.resize(xv.size());
    for (int64_t b = 0; b < B; ++b)
      for (int64_t t = 0; t < S; ++t)
        std::copy_n(xv.data() + (b * S + t) * I, I, pb.x.data() + (t * B + b) * I);
  }
  // Sequence lengths.
  pb.lens.assign(static_cast<size_t>(B), S);
  if (seq_lens) {
    if ((seq_lens->dtype() != DType::kI32 && seq_lens->dtype() != DType::kI64) ||
        seq_lens->shape() != Shape{B})
      invalid("sequence_lens must be int32 [batch_size] = " + shape_str(Shape{B}) + ", got " +
              desc(*seq_lens));
    const Tensor sl = seq_lens->is_contiguous() ? *seq_lens : seq_lens->clone();
    for (int64_t b = 0; b < B; ++b) {
      const int64_t v =
          sl.dtype() == DType::kI32 ? sl.data_as<int32_t>()[b] : sl.data_as<int64_t>()[b];
      if (v < 0 || v > S)
        invalid("sequence_lens[" + num(b) + "] = " + num(v) + " is outside [0, " + num(S) + "]");
      pb.lens[static_cast<size_t>(b)] = v;
    }
  }
  // Initial states in layout 0.
  auto state = [&](const Tensor* t, const char* name, std::vector<float>& out) {
    out.assign(static_cast<size_t>(dirs * B * H), 0.0f);
    if (!t) return;
    const Shape want_shape = p.layout == 0 ? Shape{dirs, B, H} : Shape{B, dirs, H};
    want(*t, name, want_shape);
    const std::vector<float> v = contiguous_values(*t);
    for (int64_t d = 0; d < dirs; ++d)
      for (int64_t b = 0; b < B; ++b)
        std::copy_n(v.data() + (p.layout == 0 ? d * B + b : b * dirs + d) * H, H,
                    out.data() + (d * B + b) * H);
  };
  state(init_h, "initial_h", pb.h0);
  state(init_c, "initial_c", pb.c0);
  return pb;
}

LstmOutputs lstm_outputs(const LstmProblem& pb, const LstmParams& p, const std::vector<float>& y,
                         const std::vector<float>& h, const std::vector<float>& c) {
  const int64_t S = pb.seq, D = pb.dirs, B = pb.batch, H = pb.hidden;
  LstmOutputs out;
  if (p.layout == 0) {
    out.y = Tensor::zeros({S, D, B, H}, DType::kF32);
    out.y_h = Tensor::zeros({D, B, H}, DType::kF32);
    out.y_c = Tensor::zeros({D, B, H}, DType::kF32);
    std::copy(y.begin(), y.end(), out.y.data_as<float>());
    std::copy(h.begin(), h.end(), out.y_h.data_as<float>());
    std::copy(c.begin(), c.end(), out.y_c.data_as<float>());
    return out;
  }
  out.y = Tensor::zeros({B, S, D, H}, DType::kF32);
  out.y_h = Tensor::zeros({B, D, H}, DType::kF32);
  out.y_c = Tensor::zeros({B, D, H}, DType::kF32);
  for (int64_t t = 0; t < S; ++t)
    for (int64_t d = 0; d < D; ++d)
      for (int64_t b = 0; b < B; ++b)
        std::copy_n(y.data() + ((t * D + d) * B + b) * H, H,
                    out.y.data_as<float>() + ((b * S + t) * D + d) * H);
  for (int64_t d = 0; d < D; ++d)
    for (int64_t b = 0; b < B; ++b) {
      std::copy_n(h.data() + (d * B + b) * H, H, out.y_h.data_as<float>() + (b * D + d) * H);
      std::copy_n(c.data() + (d * B + b) * H, H, out.y_c.data_as<float>() + (b * D + d) * H);
    }
  return out;
}

}  // namespace detail

namespace ref {

LstmOutputs lstm(const Tensor& x, const LstmWeights& w, const LstmParams& p, const Tensor* seq_lens,
                 const Tensor* init_h, const Tensor* init_c) {
  const detail::LstmProblem pb = detail::lstm_prepare(x, w, p, seq_lens, init_h, init_c);
  const int64_t S = pb.seq, D = pb.dirs, B = pb.batch, H = pb.hidden, G = 4 * H;
  std::vector<float> y(static_cast<size_t>(S * D * B * H), 0.0f);
  std::vector<float> h = pb.h0, c = pb.c0;
  if (S == 0 || B == 0) return detail::lstm_outputs(pb, p, y, h, c);
  std::vector<float> xw(static_cast<size_t>(S * B * G)), hin, hr;
  try {
    for (int64_t d = 0; d < D; ++d) {
      const bool reverse = p.direction == LstmDirection::kReverse || d == 1;
      ref::matmul(pb.x.data(), S * B, w.w[d], w.bias.data() + d * G, xw.data());
      const float* pe = w.peepholes.empty() ? nullptr : w.peepholes.data() + d * 3 * H;
      float* hd = h.data() + d * B * H;
      float* cd = c.data() + d * B * H;
      for (int64_t s = 0; s < S; ++s) {
        // The entries still running, and their h as the recurrent matmul's X.
        std::vector<int64_t> run;
        for (int64_t b = 0; b < B; ++b)
          if (pb.lens[b] > s) run.push_back(b);
        if (run.empty()) break;
        const auto m = static_cast<int64_t>(run.size());
        hin.resize(static_cast<size_t>(m * H));
        hr.resize(static_cast<size_t>(m * G));
        for (int64_t a = 0; a < m; ++a) std::copy_n(hd + run[a] * H, H, hin.data() + a * H);
        ref::matmul(hin.data(), m, w.r[d], nullptr, hr.data());
        for (int64_t a = 0; a < m; ++a) {
          const int64_t b = run[a], t = reverse ? pb.lens[b] - 1 - s : s;
          detail::lstm_cell(xw.data() + (t * B + b) * G, hr.data() + a * G, pe, H, p,
                            pb.acts.data() + 3 * d, cd + b * H, hd + b * H);
          std::copy_n(hd + b * H, H, y.data() + ((t * D + d) * B + b) * H);
        }
      }
    }
  } catch (const Error& e) {
    if (e.kind() != ErrorKind::kInvalidInput) throw;
    invalid(e.what());  // e.g. NaN in X or h with an int format
  }
  return detail::lstm_outputs(pb, p, y, h, c);
}

}  // namespace ref
}  // namespace dynaprec
