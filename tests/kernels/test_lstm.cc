// LSTM: two tiny cases checked by hand, the fp32 reference against a float64 implementation
// (every option: directions, sequence lengths, initial states, peepholes, clip, input_forget,
// activations, layout 1), the CPU LSTM against the reference in every format, state carry
// across calls, and the refusal of bad inputs.
//
// Tolerances (u = 2^-24, A = a bound on Σ|terms| of any gate pre-activation, computed from the
// data: max|x|·max row Σ|W| + max|h|·max row Σ|R| + max|Wb + Rb| + max|P|·max|c|):
//  * fp32 reference vs float64: each pre-activation is two fp32 inner products (I and H terms)
//    plus bias and peephole: within (I + H + 4)·u·A; the activations (slopes <= 1 for those
//    tested with the float64 run except Affine/ScaledTanh/Elu with alpha <= 1.5) and the cell
//    update add a few u per step, and an error carries into later steps through h and c with a
//    gain below about 2 per step for these small weights. The test allows
//    4·seq·(I + H + 8)·u·max(A, 1).
//  * CPU vs reference: the same, doubled (both sides' summation errors), plus for the formats
//    that re-round h each step a possible flip of a rounding: one quantum q of h (bf16 and fp8,
//    which use bf16 activations: 2^-7·max|h|; fp16: 2^-10·max|h|; int4: max|h|/127, plus the
//    scale's own change, again at most that) times max row Σ|R| changes a pre-activation; the
//    allowance is 2·seq·q·max row Σ|R| (the factor 2 for such a flip in the input projection's
//    rounding of X as well, bounded the same way with Σ|W| and max|x|: we take the larger). fp32
//    has q = 0. That allowance is loose (a flip of every h element at every step); as flips
//    are rare, the test also asks that all but 5% of the outputs (at least 2 allowed) meet the
//    summation-only bound. int8 runs exact int32 matmuls with identical scaling: bit-identical.
//  * State carry (T calls of length 1 vs one call of length T): bit-identical in fp32 for the
//    reference, whose matmul rows do not depend on each other, and for the CPU LSTM where the
//    matmul layer computes a row of X·Wᵀ the same whatever M (it does on AVX-512 here; under
//    DYNAPREC_ISA=avx2 it picks another kernel for M = batch than for M = T·batch, and the test
//    falls back to the fp32 bound above).
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <functional>
#include <iostream>
#include <optional>
#include <random>
#include <string>
#include <vector>

#include "dynaprec/error.h"
#include "dynaprec/lstm.h"
#include "kernels/matmul_util.h"

namespace dynaprec {
namespace {

constexpr Format kAll[] = {Format::kFp32,    Format::kBf16, Format::kFp16, Format::kFp8E4M3,
                           Format::kFp8E5M2, Format::kInt8, Format::kInt4};

Tensor values(Shape shape, std::vector<float> v) {
  Tensor t = Tensor::zeros(std::move(shape), DType::kF32);
  EXPECT_EQ(static_cast<size_t>(t.numel()), v.size());
  std::copy(v.begin(), v.end(), t.data_as<float>());
  return t;
}

const float* f32(const Tensor& t) { return t.data_as<float>(); }

TEST(LstmRef, HandCheckedExact) {
  // H = I = 1, two steps, f = HardSigmoid(0.25, 0.5), g = h = Relu: every value below is a
  // short binary fraction, so fp32 computes it exactly.
  // W = (i 0.5, o 0.5, f -1, c 2), R = (0.5, 1, 0, -1), Wb = (0, 0.5, 1, 0), Rb = (0.25, 0, 0,
  // 0.5) → bias (0.25, 0.5, 1, 0.5); P = (i 0, o 0.25, f -0.5); h0 = 0.5, c0 = 1; X = (1, -2).
  // Step 1 (x = 1, h = 0.5, c = 1):
  //   i: 0.5 + 0.25 + 0.25 + 0 = 1          → 0.25·1 + 0.5 = 0.75
  //   f: -1 + 0 + 1 - 0.5·1 = -0.5          → -0.125 + 0.5 = 0.375
  //   c: 2 - 0.5 + 0.5 = 2                  → relu 2
  //   C1 = 0.375·1 + 0.75·2 = 1.875
  //   o: 0.5 + 0.5 + 0.5 + 0.25·1.875 = 1.96875 → 0.4921875 + 0.5 = 0.9921875
  //   H1 = 0.9921875 · 1.875 = 1.8603515625
  // Step 2 (x = -2, h = 1.8603515625, c = 1.875):
  //   i: -1 + 0.93017578125 + 0.25 = 0.18017578125 → 0.0450439453125 + 0.5 = 0.5450439453125
  //   f: 2 + 0 + 1 - 0.9375 = 2.0625        → 1.015625, clamped to 1
  //   c: -4 - 1.8603515625 + 0.5 = -5.3603515625 → relu 0
  //   C2 = 1·1.875 + 0.545…·0 = 1.875
  //   o: -1 + 1.8603515625 + 0.5 + 0.46875 = 1.8291015625 → 0.457275390625 + 0.5 = 0.957275390625
  //   H2 = 0.957275390625 · 1.875 = 1.794891357421875
  const Tensor w = values({1, 4, 1}, {0.5f, 0.5f, -1, 2});
  const Tensor r = values({1, 4, 1}, {0.5f, 1, 0, -1});
  const Tensor b = values({1, 8}, {0, 0.5f, 1, 0, 0.25f, 0, 0, 0.5f});
  const Tensor p = values({1, 3}, {0, 0.25f, -0.5f});
  const Tensor x = values({2, 1, 1}, {1, -2});
  const Tensor h0 = values({1, 1, 1}, {0.5f}), c0 = values({1, 1, 1}, {1});
  LstmParams lp;
  lp.activations = {rnn_activation("HardSigmoid", 0.25f, 0.5f), rnn_activation("Relu"),
                    rnn_activation("relu")};
  const LstmWeights lw = lstm_weights(w, r, &b, &p, Format::kFp32);
  for (int impl = 0; impl < 2; ++impl) {
    const LstmOutputs o =
        impl == 0 ? ref::lstm(x, lw, lp, nullptr, &h0, &c0) : lstm(x, lw, lp, nullptr, &h0, &c0);
    ASSERT_EQ(o.y.shape(), (Shape{2, 1, 1, 1}));
    EXPECT_EQ(f32(o.y)[0], 1.8603515625f) << impl;
    EXPECT_EQ(f32(o.y)[1], 1.794891357421875f) << impl;
    EXPECT_EQ(f32(o.y_h)[0], 1.794891357421875f) << impl;
    EXPECT_EQ(f32(o.y_c)[0], 1.875f) << impl;
  }
}

TEST(LstmRef, HandCheckedDefaultActivationsInputForget) {
  // H = I = 1, default activations (Sigmoid, Tanh, Tanh), input_forget, W = (1, 1, 1, 1),
  // R = 0, no bias, zero initial state, X = (1, 0):
  // Step 1: i = σ(1) = 0.7310585786, f = 1 - i (unused: C0 = 0), c~ = tanh(1) = 0.7615941560,
  //   C1 = i·c~ = 0.5567699411, o = σ(1) = 0.7310585786, H1 = o·tanh(C1) = 0.7310585786 ·
  //   0.5055769315 = 0.3696063529.
  // Step 2 (x = 0, R = 0: every pre-activation 0): i = 0.5, f = 1 - i = 0.5, c~ = 0,
  //   C2 = 0.5·C1 = 0.2783849706, o = 0.5, H2 = 0.5·tanh(C2) = 0.5·0.2714096762 = 0.1357048381.
  const Tensor w = values({1, 4, 1}, {1, 1, 1, 1});
  const Tensor r = values({1, 4, 1}, {0, 0, 0, 0});
  const Tensor x = values({2, 1, 1}, {1, 0});
  LstmParams lp;
  lp.input_forget = true;
  const LstmWeights lw = lstm_weights(w, r, nullptr, nullptr, Format::kFp32);
  for (int impl = 0; impl < 2; ++impl) {
    const LstmOutputs o = impl == 0 ? ref::lstm(x, lw, lp, nullptr, nullptr, nullptr)
                                    : lstm(x, lw, lp, nullptr, nullptr, nullptr);
    EXPECT_NEAR(f32(o.y)[0], 0.3696063529, 1e-6) << impl;
    EXPECT_NEAR(f32(o.y)[1], 0.1357048381, 1e-6) << impl;
    EXPECT_NEAR(f32(o.y_h)[0], 0.1357048381, 1e-6) << impl;
    EXPECT_NEAR(f32(o.y_c)[0], 0.2783849706, 1e-6) << impl;
  }
}

// --- random problems ---------------------------------------------------------------------------

struct LCase {
  const char* name;
  int64_t seq, batch, input, hidden;
  LstmDirection dir;
  bool bias, peep, init, lens, input_forget;
  std::optional<float> clip;
  std::vector<const char*> acts;  // f, g, h (repeated for a second direction), empty: default
  int64_t layout = 0;
};

std::vector<LCase> lcases() {
  using D = LstmDirection;
  return {
      {"forward", 5, 3, 4, 6, D::kForward, false, false, false, false, false, {}, {}},
      {"forward_all", 4, 3, 5, 8, D::kForward, true, true, true, false, false, {}, {}},
      {"reverse_lens", 6, 4, 3, 5, D::kReverse, true, false, true, true, false, {}, {}},
      {"bidir", 4, 2, 7, 4, D::kBidirectional, true, true, true, false, false, {}, {}},
      {"bidir_lens", 5, 5, 4, 3, D::kBidirectional, true, true, false, true, false, {}, {}},
      {"clip", 4, 2, 4, 4, D::kForward, true, false, true, false, false, 0.7f, {}},
      {"input_forget", 4, 3, 3, 5, D::kReverse, true, true, true, true, true, {}, {}},
      {"acts",
       4,
       2,
       3,
       4,
       D::kBidirectional,
       true,
       true,
       true,
       true,
       false,
       2.0f,
       {"HardSigmoid", "Relu", "Tanh", "Sigmoid", "Softsign", "LeakyRelu"}},
      {"acts2",
       3,
       2,
       3,
       3,
       D::kForward,
       true,
       false,
       true,
       false,
       false,
       {},
       {"Sigmoid", "Elu", "ScaledTanh"}},
      {"acts3",
       3,
       2,
       3,
       3,
       D::kForward,
       true,
       false,
       true,
       false,
       false,
       {},
       {"Softplus", "Affine", "ThresholdedRelu"}},
      {"layout1", 4, 3, 4, 5, D::kBidirectional, true, true, true, true, false, {}, {}, 1},
      {"wide", 3, 2, 40, 36, D::kForward, true, true, true, false, false, {}, {}},  // int4 groups
  };
}

struct LProblem {
  Tensor x, w, r, b, p, h0, c0, lens;
  LstmParams lp;
  int64_t dirs;
};

LProblem make(const LCase& cs, uint32_t seed) {
  LProblem pr;
  pr.dirs = cs.dir == LstmDirection::kBidirectional ? 2 : 1;
  const int64_t D = pr.dirs, H = cs.hidden, I = cs.input, S = cs.seq, B = cs.batch;
  pr.x = cs.layout == 0 ? test::gaussian({S, B, I}, seed) : test::gaussian({B, S, I}, seed);
  pr.w = test::gaussian({D, 4 * H, I}, seed + 1, 0.7f / std::sqrt(float(I)));
  pr.r = test::gaussian({D, 4 * H, H}, seed + 2, 0.7f / std::sqrt(float(H)));
  pr.b = test::gaussian({D, 8 * H}, seed + 3, 0.3f);
  pr.p = test::gaussian({D, 3 * H}, seed + 4, 0.3f);
  pr.h0 = cs.layout == 0 ? test::gaussian({D, B, H}, seed + 5, 0.5f)
                         : test::gaussian({B, D, H}, seed + 5, 0.5f);
  pr.c0 = cs.layout == 0 ? test::gaussian({D, B, H}, seed + 6, 0.5f)
                         : test::gaussian({B, D, H}, seed + 6, 0.5f);
  pr.lens = Tensor::zeros({B}, DType::kI32);
  std::mt19937 rng(seed + 7);
  for (int64_t b = 0; b < B; ++b)  // 0, the full length and values in between
    pr.lens.data_as<int32_t>()[b] = b == 0   ? static_cast<int32_t>(S)
                                    : b == 1 ? 0
                                             : static_cast<int32_t>(rng() % (S + 1));
  pr.lp.direction = cs.dir;
  pr.lp.layout = cs.layout;
  pr.lp.clip = cs.clip;
  pr.lp.input_forget = cs.input_forget;
  for (int64_t d = 0; d < D && !cs.acts.empty(); ++d)
    for (int i = 0; i < 3; ++i)
      pr.lp.activations.push_back(rnn_activation(cs.acts[d * 3 % cs.acts.size() + i]));
  return pr;
}

struct Args {
  const Tensor *b, *p, *h0, *c0, *lens;
};
Args args(const LCase& cs, const LProblem& pr) {
  return {cs.bias ? &pr.b : nullptr, cs.peep ? &pr.p : nullptr, cs.init ? &pr.h0 : nullptr,
          cs.init ? &pr.c0 : nullptr, cs.lens ? &pr.lens : nullptr};
}

double act64(double x, const RnnActivationFn& a) {
  const double al = a.alpha, be = a.beta;
  switch (a.kind) {
    case RnnActivation::kSigmoid:
      return 1 / (1 + std::exp(-x));
    case RnnActivation::kTanh:
      return std::tanh(x);
    case RnnActivation::kRelu:
      return std::max(x, 0.0);
    case RnnActivation::kHardSigmoid:
      return std::clamp(al * x + be, 0.0, 1.0);
    case RnnActivation::kLeakyRelu:
      return x < 0 ? al * x : x;
    case RnnActivation::kThresholdedRelu:
      return x > al ? x : 0;
    case RnnActivation::kAffine:
      return al * x + be;
    case RnnActivation::kScaledTanh:
      return al * std::tanh(be * x);
    case RnnActivation::kElu:
      return x < 0 ? al * (std::exp(x) - 1) : x;
    case RnnActivation::kSoftsign:
      return x / (1 + std::fabs(x));
    case RnnActivation::kSoftplus:
      return std::log(1 + std::exp(x));
  }
  return x;
}

// The ONNX LSTM in double, straight from the operator's equations, layout 0 in and out
// (the caller converts). Returns y [S, D, B, H], then y_h, y_c [D, B, H].
struct Out64 {
  std::vector<double> y, yh, yc;
  double hmax = 0, cmax = 0;
};
Out64 lstm64(const LCase& cs, const LProblem& pr) {
  const int64_t S = cs.seq, B = cs.batch, I = cs.input, H = cs.hidden, D = pr.dirs;
  auto X = [&](int64_t t, int64_t b, int64_t i) {
    return double(cs.layout == 0 ? f32(pr.x)[(t * B + b) * I + i] : f32(pr.x)[(b * S + t) * I + i]);
  };
  auto state0 = [&](const Tensor& t, int64_t d, int64_t b, int64_t j) {
    if (!cs.init) return 0.0;
    return double(cs.layout == 0 ? f32(t)[(d * B + b) * H + j] : f32(t)[(b * D + d) * H + j]);
  };
  std::vector<RnnActivationFn> acts = pr.lp.activations;
  if (acts.empty())
    for (int64_t d = 0; d < D; ++d)
      acts.insert(acts.end(),
                  {rnn_activation("Sigmoid"), rnn_activation("Tanh"), rnn_activation("Tanh")});
  Out64 o;
  o.y.assign(static_cast<size_t>(S * D * B * H), 0.0);
  o.yh.assign(static_cast<size_t>(D * B * H), 0.0);
  o.yc = o.yh;
  for (int64_t d = 0; d < D; ++d) {
    const bool rev = cs.dir == LstmDirection::kReverse || d == 1;
    const float* W = f32(pr.w) + d * 4 * H * I;
    const float* R = f32(pr.r) + d * 4 * H * H;
    const float* Bb = f32(pr.b) + d * 8 * H;
    const float* P = f32(pr.p) + d * 3 * H;
    const RnnActivationFn* a = acts.data() + 3 * d;
    for (int64_t b = 0; b < B; ++b) {
      const int64_t len = cs.lens ? pr.lens.data_as<int32_t>()[b] : S;
      std::vector<double> h(H), c(H), g(4 * H);
      for (int64_t j = 0; j < H; ++j) h[j] = state0(pr.h0, d, b, j), c[j] = state0(pr.c0, d, b, j);
      for (int64_t s = 0; s < len; ++s) {
        const int64_t t = rev ? len - 1 - s : s;
        for (int64_t q = 0; q < 4 * H; ++q) {
          double v = cs.bias ? double(Bb[q]) + double(Bb[4 * H + q]) : 0.0;
          for (int64_t i = 0; i < I; ++i) v += X(t, b, i) * double(W[q * I + i]);
          for (int64_t k = 0; k < H; ++k) v += h[k] * double(R[q * H + k]);
          g[q] = v;
        }
        auto clip = [&](double v) {
          return cs.clip ? std::clamp(v, -double(*cs.clip), double(*cs.clip)) : v;
        };
        for (int64_t j = 0; j < H; ++j) {
          const double pi = cs.peep ? P[j] : 0, po = cs.peep ? P[H + j] : 0,
                       pf = cs.peep ? P[2 * H + j] : 0;
          const double it = act64(clip(g[j] + pi * c[j]), a[0]);
          const double ft = cs.input_forget ? 1 - it : act64(clip(g[2 * H + j] + pf * c[j]), a[0]);
          const double ct = act64(clip(g[3 * H + j]), a[1]);
          c[j] = ft * c[j] + it * ct;
          const double ot = act64(clip(g[H + j] + po * c[j]), a[0]);
          h[j] = ot * act64(c[j], a[2]);
          o.y[((t * D + d) * B + b) * H + j] = h[j];
          o.hmax = std::max(o.hmax, std::fabs(h[j]));
          o.cmax = std::max(o.cmax, std::fabs(c[j]));
        }
      }
      for (int64_t j = 0; j < H; ++j) {
        o.yh[(d * B + b) * H + j] = h[j];
        o.yc[(d * B + b) * H + j] = c[j];
        o.hmax = std::max(o.hmax, std::fabs(h[j]));
      }
    }
  }
  return o;
}

// Output element i of y / y_h in the caller's layout → its layout-0 index.
size_t y_index0(const LCase& cs, int64_t dirs, size_t i) {
  if (cs.layout == 0) return i;
  const int64_t H = cs.hidden, S = cs.seq, B = cs.batch;
  const auto v = static_cast<int64_t>(i);
  const int64_t j = v % H, d = v / H % dirs, t = v / H / dirs % S, b = v / H / dirs / S;
  return static_cast<size_t>(((t * dirs + d) * B + b) * H + j);
}
size_t state_index0(const LCase& cs, int64_t dirs, size_t i) {
  if (cs.layout == 0) return i;
  const int64_t H = cs.hidden, B = cs.batch;
  const auto v = static_cast<int64_t>(i);
  const int64_t j = v % H, d = v / H % dirs, b = v / H / dirs;
  return static_cast<size_t>((d * B + b) * H + j);
}

double max_abs(const Tensor& t) {
  double m = 0;
  for (int64_t i = 0; i < t.numel(); ++i) m = std::max(m, std::fabs(double(f32(t)[i])));
  return m;
}
double max_row_abs_sum(const Tensor& t) {  // rows along the last axis
  const int64_t k = t.dim(t.rank() - 1);
  double m = 0;
  for (int64_t r = 0; r < t.numel() / k; ++r) {
    double s = 0;
    for (int64_t i = 0; i < k; ++i) s += std::fabs(double(f32(t)[r * k + i]));
    m = std::max(m, s);
  }
  return m;
}

// A: the bound on Σ|terms| of a pre-activation (see the header comment).
double term_bound(const LProblem& pr, const Out64& o) {
  return max_abs(pr.x) * max_row_abs_sum(pr.w) +
         std::max(o.hmax, max_abs(pr.h0)) * max_row_abs_sum(pr.r) + 2 * max_abs(pr.b) +
         max_abs(pr.p) * std::max(o.cmax, max_abs(pr.c0));
}

TEST(LstmRef, Fp32MatchesFloat64) {
  uint32_t seed = 10;
  for (const LCase& cs : lcases()) {
    const LProblem pr = make(cs, seed += 11);
    const Args a = args(cs, pr);
    const LstmWeights lw = lstm_weights(pr.w, pr.r, a.b, a.p, Format::kFp32);
    const LstmOutputs got = ref::lstm(pr.x, lw, pr.lp, a.lens, a.h0, a.c0);
    const Out64 want = lstm64(cs, pr);
    const double tol = 4.0 * double(cs.seq) * double(cs.input + cs.hidden + 8) * 0x1p-24 *
                       std::max(1.0, term_bound(pr, want));
    ASSERT_EQ(static_cast<size_t>(got.y.numel()), want.y.size()) << cs.name;
    for (size_t i = 0; i < want.y.size(); ++i)
      ASSERT_NEAR(f32(got.y)[i], want.y[y_index0(cs, pr.dirs, i)], tol) << cs.name << " y " << i;
    for (size_t i = 0; i < want.yh.size(); ++i) {
      ASSERT_NEAR(f32(got.y_h)[i], want.yh[state_index0(cs, pr.dirs, i)], tol)
          << cs.name << " y_h " << i;
      ASSERT_NEAR(f32(got.y_c)[i], want.yc[state_index0(cs, pr.dirs, i)], tol)
          << cs.name << " y_c " << i;
    }
  }
}

double quantum(Format f, double hmax) {
  switch (f) {
    case Format::kFp32:
      return 0;
    case Format::kFp16:
      return 0x1p-10 * hmax;
    case Format::kInt8:
    case Format::kInt4:
      return hmax / 127;
    default:  // bf16, and fp8 (bf16 activations)
      return 0x1p-7 * hmax;
  }
}

TEST(LstmCpu, MatchesReferenceEveryFormat) {
  uint32_t seed = 1000;
  for (const LCase& cs : lcases())
    for (Format f : kAll) {
      const LProblem pr = make(cs, seed += 13);
      const Args a = args(cs, pr);
      const LstmWeights lw = lstm_weights(pr.w, pr.r, a.b, a.p, f);
      const LstmOutputs want = ref::lstm(pr.x, lw, pr.lp, a.lens, a.h0, a.c0);
      const LstmOutputs got = lstm(pr.x, lw, pr.lp, a.lens, a.h0, a.c0);
      const std::string what = std::string(cs.name) + " " + std::string(format_name(f));
      ASSERT_EQ(got.y.shape(), want.y.shape()) << what;
      ASSERT_EQ(got.y_h.shape(), want.y_h.shape()) << what;
      if (f == Format::kInt8) {
        EXPECT_EQ(std::memcmp(got.y.data(), want.y.data(), got.y.nbytes()), 0) << what;
        EXPECT_EQ(std::memcmp(got.y_h.data(), want.y_h.data(), got.y_h.nbytes()), 0) << what;
        EXPECT_EQ(std::memcmp(got.y_c.data(), want.y_c.data(), got.y_c.nbytes()), 0) << what;
        continue;
      }
      const Out64 o = lstm64(cs, pr);
      const double hmax = std::max({o.hmax, max_abs(pr.h0), max_abs(want.y)});
      const double flip = std::max(quantum(f, hmax) * max_row_abs_sum(pr.r),
                                   quantum(f, max_abs(pr.x)) * max_row_abs_sum(pr.w));
      const double tight = 8.0 * double(cs.seq) * double(cs.input + cs.hidden + 8) * 0x1p-24 *
                           std::max(1.0, term_bound(pr, o));
      const double tol = tight + 2.0 * double(cs.seq) * flip;
      auto check = [&](const Tensor& g, const Tensor& w, const char* name) {
        int64_t beyond_tight = 0;
        for (int64_t i = 0; i < g.numel(); ++i) {
          ASSERT_NEAR(f32(g)[i], f32(w)[i], tol) << what << " " << name << " " << i;
          beyond_tight += std::fabs(double(f32(g)[i]) - double(f32(w)[i])) > tight;
        }
        // A flip is a rare event: most outputs must meet the summation-only bound.
        EXPECT_LE(beyond_tight, std::max<int64_t>(2, g.numel() / 20)) << what << " " << name;
      };
      check(got.y, want.y, "y");
      check(got.y_h, want.y_h, "y_h");
      check(got.y_c, want.y_c, "y_c");
    }
}

TEST(LstmCpu, Layout1IsLayout0Transposed) {
  LCase cs = lcases()[10];
  ASSERT_EQ(cs.layout, 1);
  for (Format f : {Format::kFp32, Format::kInt8}) {
    const LProblem pr = make(cs, 77);
    const Args a = args(cs, pr);
    const LstmWeights lw = lstm_weights(pr.w, pr.r, a.b, a.p, f);
    const int64_t S = cs.seq, B = cs.batch, I = cs.input, H = cs.hidden, D = pr.dirs;
    Tensor x0 = Tensor::zeros({S, B, I}, DType::kF32), h0 = Tensor::zeros({D, B, H}, DType::kF32),
           c0 = Tensor::zeros({D, B, H}, DType::kF32);
    for (int64_t b = 0; b < B; ++b) {
      for (int64_t t = 0; t < S; ++t)
        std::copy_n(f32(pr.x) + (b * S + t) * I, I, x0.data_as<float>() + (t * B + b) * I);
      for (int64_t d = 0; d < D; ++d) {
        std::copy_n(f32(pr.h0) + (b * D + d) * H, H, h0.data_as<float>() + (d * B + b) * H);
        std::copy_n(f32(pr.c0) + (b * D + d) * H, H, c0.data_as<float>() + (d * B + b) * H);
      }
    }
    LstmParams lp0 = pr.lp;
    lp0.layout = 0;
    for (int impl = 0; impl < 2; ++impl) {
      auto run = [&](const Tensor& x, const LstmParams& lp, const Tensor* h, const Tensor* c) {
        return impl == 0 ? ref::lstm(x, lw, lp, a.lens, h, c) : lstm(x, lw, lp, a.lens, h, c);
      };
      const LstmOutputs o1 = run(pr.x, pr.lp, &pr.h0, &pr.c0), o0 = run(x0, lp0, &h0, &c0);
      ASSERT_EQ(o1.y.shape(), (Shape{B, S, D, H}));
      ASSERT_EQ(o1.y_h.shape(), (Shape{B, D, H}));
      for (int64_t i = 0; i < o1.y.numel(); ++i)
        ASSERT_EQ(f32(o1.y)[i], f32(o0.y)[y_index0(cs, D, static_cast<size_t>(i))]) << impl;
      for (int64_t i = 0; i < o1.y_h.numel(); ++i) {
        ASSERT_EQ(f32(o1.y_h)[i], f32(o0.y_h)[state_index0(cs, D, static_cast<size_t>(i))]);
        ASSERT_EQ(f32(o1.y_c)[i], f32(o0.y_c)[state_index0(cs, D, static_cast<size_t>(i))]);
      }
    }
  }
}

// Whether dynaprec::matmul computes X·Wᵀ's rows the same with all S·B rows in one call as with
// B rows per call (the matmul layer may pick another kernel, with another summation order, for
// another M: under DYNAPREC_ISA=avx2 it does for these shapes).
bool rows_independent(const float* x, int64_t s, int64_t b, const MatmulWeights& w,
                      const float* bias) {
  std::vector<float> all(static_cast<size_t>(s * b * w.n)), part(static_cast<size_t>(b * w.n));
  matmul(x, s * b, w, bias, all.data());
  for (int64_t t = 0; t < s; ++t) {
    matmul(x + t * b * w.k, b, w, bias, part.data());
    if (std::memcmp(part.data(), all.data() + t * b * w.n, part.size() * sizeof(float)) != 0)
      return false;
  }
  return true;
}

TEST(LstmCpu, StateCarryBitIdentical) {
  // One call of length T equals T calls of length 1, each starting from the previous Y_h, Y_c
  // (fp32): bit-identical for the reference, whose matmul rows do not depend on each other, and
  // for the CPU LSTM wherever the matmul layer computes the input projection's rows alike for
  // M = T·batch and M = batch (checked first); where it does not, within the fp32 bound of
  // LstmRef.Fp32MatchesFloat64.
  for (const LstmDirection dir : {LstmDirection::kForward, LstmDirection::kReverse}) {
    LCase cs{"carry", 5, 3, 6, 7, dir, true, true, true, false, false, {}, {}};
    const LProblem pr = make(cs, 4242);
    const LstmWeights lw = lstm_weights(pr.w, pr.r, &pr.b, &pr.p, Format::kFp32);
    const int64_t S = cs.seq, B = cs.batch, I = cs.input, H = cs.hidden;
    const double tol = 4.0 * double(S) * double(I + H + 8) * 0x1p-24 *
                       std::max(1.0, term_bound(pr, lstm64(cs, pr)));
    for (int impl = 0; impl < 2; ++impl) {
      const bool exact = impl == 0 || rows_independent(f32(pr.x), S, B, lw.w[0], lw.bias.data());
      if (!exact)
        std::cout << "note: matmul rows depend on M here; carry checked within " << tol << "\n";
      auto same = [&](const float* a, const float* b, int64_t n, const std::string& what) {
        if (exact) {
          ASSERT_EQ(std::memcmp(a, b, static_cast<size_t>(n) * sizeof(float)), 0) << what;
          return;
        }
        for (int64_t i = 0; i < n; ++i) ASSERT_NEAR(a[i], b[i], tol) << what << " " << i;
      };
      auto run = [&](const Tensor& x, const Tensor* h, const Tensor* c) {
        return impl == 0 ? ref::lstm(x, lw, pr.lp, nullptr, h, c)
                         : lstm(x, lw, pr.lp, nullptr, h, c);
      };
      const LstmOutputs whole = run(pr.x, &pr.h0, &pr.c0);
      Tensor h = pr.h0.clone(), c = pr.c0.clone();
      for (int64_t s = 0; s < S; ++s) {
        // Reverse runs t = S-1 .. 0: feed the steps in that order.
        const int64_t t = dir == LstmDirection::kReverse ? S - 1 - s : s;
        const Tensor xt =
            Tensor::borrow(const_cast<float*>(f32(pr.x)) + t * B * I, {1, B, I}, DType::kF32);
        const LstmOutputs step = run(xt, &h, &c);
        same(f32(step.y), f32(whole.y) + t * B * H, B * H,
             "impl " + std::to_string(impl) + " step " + std::to_string(s));
        h = step.y_h;
        c = step.y_c;
      }
      same(f32(h), f32(whole.y_h), B * H, "y_h impl " + std::to_string(impl));
      same(f32(c), f32(whole.y_c), B * H, "y_c impl " + std::to_string(impl));
    }
  }
}

TEST(LstmCpu, EmptyAndZeroLengths) {
  // seq 0 or batch 0: empty Y, the initial state (or zeros) as Y_h; all lengths 0 likewise.
  const LstmWeights lw = lstm_weights(test::gaussian({1, 8, 3}, 1), test::gaussian({1, 8, 2}, 2),
                                      nullptr, nullptr, Format::kInt8);
  const Tensor h0 = test::gaussian({1, 2, 2}, 3), c0 = test::gaussian({1, 2, 2}, 4);
  for (int impl = 0; impl < 2; ++impl) {
    auto run = [&](const Tensor& x, const Tensor* lens, const Tensor* h, const Tensor* c) {
      return impl == 0 ? ref::lstm(x, lw, {}, lens, h, c) : lstm(x, lw, {}, lens, h, c);
    };
    LstmOutputs o = run(Tensor::zeros({0, 2, 3}, DType::kF32), nullptr, &h0, &c0);
    EXPECT_EQ(o.y.shape(), (Shape{0, 1, 2, 2}));
    EXPECT_EQ(std::memcmp(o.y_h.data(), h0.data(), h0.nbytes()), 0);
    o = run(Tensor::zeros({3, 0, 3}, DType::kF32), nullptr, nullptr, nullptr);
    EXPECT_EQ(o.y_h.shape(), (Shape{1, 0, 2}));
    const Tensor lens = Tensor::zeros({2}, DType::kI32);
    o = run(test::gaussian({3, 2, 3}, 5), &lens, &h0, &c0);
    EXPECT_EQ(max_abs(o.y), 0.0);
    EXPECT_EQ(std::memcmp(o.y_c.data(), c0.data(), c0.nbytes()), 0);
  }
}

void expect_error(ErrorKind kind, const std::function<void()>& fn, const std::string& what) {
  try {
    fn();
    ADD_FAILURE() << what << ": no error";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), kind) << what << ": " << e.what();
    EXPECT_EQ(std::string(e.what()).rfind("LSTM: ", 0), 0u) << what << ": " << e.what();
  }
}

TEST(LstmRef, RefusesBadInputs) {
  const auto bad = ErrorKind::kInvalidInput;
  const Tensor w = test::gaussian({1, 8, 3}, 1), r = test::gaussian({1, 8, 2}, 2);
  const Tensor b = test::gaussian({1, 16}, 3), p = test::gaussian({1, 6}, 4);
  expect_error(
      bad,
      [&] {
        lstm_weights(test::gaussian({8, 3}, 1), r, nullptr, nullptr, Format::kFp32);
      },
      "W rank");
  expect_error(
      bad,
      [&] {
        lstm_weights(test::gaussian({1, 7, 3}, 1), r, nullptr, nullptr, Format::kFp32);
      },
      "4H");
  expect_error(
      bad,
      [&] {
        lstm_weights(test::gaussian({3, 8, 3}, 1), r, nullptr, nullptr, Format::kFp32);
      },
      "dirs 3");
  expect_error(
      bad,
      [&] {
        lstm_weights(w, test::gaussian({1, 8, 3}, 2), nullptr, nullptr, Format::kFp32);
      },
      "R shape");
  expect_error(
      bad, [&] { lstm_weights(w, r, &p, nullptr, Format::kFp32); }, "B shape");
  expect_error(
      bad, [&] { lstm_weights(w, r, nullptr, &b, Format::kFp32); }, "P shape");
  expect_error(
      ErrorKind::kUnsupported, [&] { rnn_activation("Gelu"); }, "unknown activation");

  const LstmWeights lw = lstm_weights(w, r, &b, &p, Format::kInt8);
  const Tensor x = test::gaussian({4, 2, 3}, 5);
  auto both = [&](const std::string& what, const Tensor& xx, const LstmParams& lp,
                  const Tensor* lens, const Tensor* h, const Tensor* c) {
    expect_error(
        bad, [&] { ref::lstm(xx, lw, lp, lens, h, c); }, "ref: " + what);
    expect_error(
        bad, [&] { lstm(xx, lw, lp, lens, h, c); }, "cpu: " + what);
  };
  LstmParams lp;
  both("X input size", test::gaussian({4, 2, 4}, 5), lp, nullptr, nullptr, nullptr);
  both("X rank", test::gaussian({4, 6}, 5), lp, nullptr, nullptr, nullptr);
  const Tensor h_bad = test::gaussian({1, 3, 2}, 6);
  both("initial_h shape", x, lp, nullptr, &h_bad, nullptr);
  both("initial_c shape", x, lp, nullptr, nullptr, &h_bad);
  Tensor lens = Tensor::zeros({2}, DType::kI32);
  lens.data_as<int32_t>()[1] = 5;
  both("length > seq", x, lp, &lens, nullptr, nullptr);
  lens.data_as<int32_t>()[1] = -1;
  both("negative length", x, lp, &lens, nullptr, nullptr);
  const Tensor lens_f = Tensor::zeros({2}, DType::kF32), lens_3 = Tensor::zeros({3}, DType::kI32);
  both("lengths dtype", x, lp, &lens_f, nullptr, nullptr);
  both("lengths shape", x, lp, &lens_3, nullptr, nullptr);
  lp.direction = LstmDirection::kBidirectional;
  both("directions", x, lp, nullptr, nullptr, nullptr);
  lp = {};
  lp.activations = {rnn_activation("Sigmoid")};
  both("activation count", x, lp, nullptr, nullptr, nullptr);
  lp = {};
  lp.clip = -1.0f;
  both("negative clip", x, lp, nullptr, nullptr, nullptr);
  lp = {};
  lp.layout = 2;
  both("layout 2", x, lp, nullptr, nullptr, nullptr);
  lp = {};
  Tensor xn = x.clone();
  xn.data_as<float>()[3] = NAN;
  both("NaN X with int8", xn, lp, nullptr, nullptr, nullptr);
}

}  // namespace
}  // namespace dynaprec
