// LSTM (ONNX LSTM, opset 7-14) at every precision format.
//
// Per direction, with gates in ONNX order i, o, f, c (W [4H, I], R [4H, H], B = Wb + Rb):
//   g_t  = X_t · Wᵀ + B  +  H_{t-1} · Rᵀ                          (two matmuls, see below)
//   i = f(clip(g_i + P_i ⊙ C_{t-1}))      f = input_forget ? 1 - i : f(clip(g_f + P_f ⊙ C_{t-1}))
//   c = g(clip(g_c))                      C_t = f ⊙ C_{t-1} + i ⊙ c
//   o = f(clip(g_o + P_o ⊙ C_t))          H_t = o ⊙ h(C_t)
// (clip only when set; it bounds the inputs of the gate activations, not C_t; peepholes P in
// ONNX order i, o, f.) The element-wise part is lstm_cell below, in fp32, shared by every
// implementation so that they evaluate the very same expressions.
//
// Precision (matmul.h's table applies to each matmul call): W and R are stored in the format;
//  * the input projection is ONE matmul call per direction over all of X ([seq·batch, I], rows
//    in (t, b) order, bias B added by the matmul): int8/int4 take one activation scale over the
//    whole X tensor (padding steps past a sequence length included);
//  * the recurrent projection is one matmul call per step over the H_{t-1} rows of the batch
//    entries still running at that step (in batch order): bf16/fp16 round h, fp8 rounds it to
//    bf16, int8/int4 quantize it with one scale over those rows.
//
// Sequence lengths (optional, int32 or int64 [batch], each in [0, seq]): entry b runs
// len_b steps; Y past its length is 0, Y_h / Y_c are its state after its last step (the
// initial state for len_b = 0). The reverse direction runs t = len_b - 1 down to 0. At step s
// (0-based, either direction) the running entries are those with len_b > s.
//
// Layout 0: X [seq, batch, I], initial_h/c [dirs, batch, H], Y [seq, dirs, batch, H],
// Y_h/Y_c [dirs, batch, H]. Layout 1: X [batch, seq, I], initial_h/c [batch, dirs, H],
// Y [batch, seq, dirs, H], Y_h/Y_c [batch, dirs, H].
//
// Errors: Error(kInvalidInput) with messages starting "LSTM: " for bad shapes or values;
// Error(kUnsupported) for an activation function this file does not implement.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <optional>
#include <string_view>
#include <vector>

#include "dynaprec/matmul.h"
#include "dynaprec/tensor.h"

namespace dynaprec {

/// ONNX RNN activation functions.
enum class RnnActivation : uint8_t {
  kSigmoid,
  kTanh,
  kRelu,
  kHardSigmoid,      ///< clamp(alpha·x + beta, 0, 1), defaults 0.2, 0.5
  kLeakyRelu,        ///< x < 0 ? alpha·x : x, default alpha 0.01
  kThresholdedRelu,  ///< x > alpha ? x : 0, default alpha 1
  kAffine,           ///< alpha·x + beta, defaults 1, 0
  kScaledTanh,       ///< alpha·tanh(beta·x), defaults 1, 1
  kElu,              ///< x < 0 ? alpha·(exp(x) - 1) : x, default alpha 1
  kSoftsign,         ///< x / (1 + |x|)
  kSoftplus,         ///< log(1 + exp(x))
};

struct RnnActivationFn {
  RnnActivation kind = RnnActivation::kSigmoid;
  float alpha = 0.0f, beta = 0.0f;
};

/// An ONNX activation by name (case-insensitive, e.g. "Sigmoid", "HardSigmoid"), with ONNX's
/// default alpha/beta where not given. Unknown names: Error(kUnsupported) "LSTM: ...".
RnnActivationFn rnn_activation(std::string_view name, std::optional<float> alpha = std::nullopt,
                               std::optional<float> beta = std::nullopt);

inline float apply_rnn_activation(float x, const RnnActivationFn& a) {
  switch (a.kind) {
    case RnnActivation::kSigmoid:
      return 1.0f / (1.0f + std::exp(-x));
    case RnnActivation::kTanh:
      return std::tanh(x);
    case RnnActivation::kRelu:
      return x < 0.0f ? 0.0f : x;
    case RnnActivation::kHardSigmoid:
      return std::min(std::max(a.alpha * x + a.beta, 0.0f), 1.0f);
    case RnnActivation::kLeakyRelu:
      return x < 0.0f ? a.alpha * x : x;
    case RnnActivation::kThresholdedRelu:
      return x > a.alpha ? x : 0.0f;
    case RnnActivation::kAffine:
      return a.alpha * x + a.beta;
    case RnnActivation::kScaledTanh:
      return a.alpha * std::tanh(a.beta * x);
    case RnnActivation::kElu:
      return x < 0.0f ? a.alpha * (std::exp(x) - 1.0f) : x;
    case RnnActivation::kSoftsign:
      return x / (1.0f + std::fabs(x));
    case RnnActivation::kSoftplus:
      return std::log1p(std::exp(x));
  }
  return x;
}

enum class LstmDirection : uint8_t { kForward, kReverse, kBidirectional };

struct LstmParams {
  LstmDirection direction = LstmDirection::kForward;
  int64_t layout = 0;         ///< 0 or 1, see the header comment
  std::optional<float> clip;  ///< cell clip threshold (>= 0), none by default
  bool input_forget = false;
  /// f, g, h for each direction in turn (3 or 6 entries); empty: Sigmoid, Tanh, Tanh.
  std::vector<RnnActivationFn> activations;
};

/// LSTM weights in a format.
struct LstmWeights {
  std::vector<MatmulWeights> w;  ///< per direction: [4H, I]
  std::vector<MatmulWeights> r;  ///< per direction: [4H, H]
  std::vector<float> bias;       ///< [dirs, 4H]: Wb + Rb in fp32 (zeros without B)
  std::vector<float> peepholes;  ///< [dirs, 3H] (i, o, f), or empty
  int64_t hidden = 0, input = 0, dirs = 0;
};

/// W [dirs, 4H, I], R [dirs, 4H, H], B [dirs, 8H] or nullptr, P [dirs, 3H] or nullptr, all
/// float32, stored in format f. Throws Error(kInvalidInput) "LSTM: ..." on bad shapes.
LstmWeights lstm_weights(const Tensor& w, const Tensor& r, const Tensor* b, const Tensor* p,
                         Format f);

struct LstmOutputs {
  Tensor y, y_h, y_c;
};

namespace ref {
/// The reference: plain loops, the projections through ref::matmul (see the header comment).
/// seq_lens, init_h, init_c: optional (nullptr).
LstmOutputs lstm(const Tensor& x, const LstmWeights& w, const LstmParams& p, const Tensor* seq_lens,
                 const Tensor* init_h, const Tensor* init_c);
}  // namespace ref

/// The CPU LSTM: the projections through dynaprec::matmul (`threads` of the default pool,
/// <= 0: all); same contract as ref::lstm. fp32/floats/int4 differ from the reference by the
/// matmul kernels' fp32 summation order (amplified through the recurrence, and through
/// re-rounding of h for the narrow formats); int8 is bit-identical.
LstmOutputs lstm(const Tensor& x, const LstmWeights& w, const LstmParams& p, const Tensor* seq_lens,
                 const Tensor* init_h, const Tensor* init_c, int threads = 0);

namespace detail {

/// One call's inputs, checked and in layout 0 (shared by the implementations).
struct LstmProblem {
  int64_t seq = 0, batch = 0, input = 0, hidden = 0, dirs = 0;
  std::vector<int64_t> lens;          ///< [batch], each in [0, seq]
  std::vector<float> x;               ///< [seq, batch, I]
  std::vector<float> h0, c0;          ///< [dirs, batch, H], zeros where not given
  std::vector<RnnActivationFn> acts;  ///< 3 per direction
};
/// Checks shapes and values, throws Error "LSTM: ..." on bad ones.
LstmProblem lstm_prepare(const Tensor& x, const LstmWeights& w, const LstmParams& p,
                         const Tensor* seq_lens, const Tensor* init_h, const Tensor* init_c);
/// The outputs in the caller's layout from y [seq, dirs, batch, H], h, c [dirs, batch, H].
LstmOutputs lstm_outputs(const LstmProblem& pb, const LstmParams& p, const std::vector<float>& y,
                         const std::vector<float>& h, const std::vector<float>& c);

/// One step of one batch entry: xw, hr the 4H projections (i, o, f, c), pe the 3H peepholes or
/// nullptr, acts f, g, h; c and h (H values each) updated in place.
inline void lstm_cell(const float* xw, const float* hr, const float* pe, int64_t hidden,
                      const LstmParams& p, const RnnActivationFn* acts, float* c, float* h) {
  const int64_t H = hidden;
  const bool clip = p.clip.has_value();
  const float cl = clip ? *p.clip : 0.0f;
  auto bound = [&](float v) { return clip ? std::min(std::max(v, -cl), cl) : v; };
  for (int64_t j = 0; j < H; ++j) {
    float ai = xw[j] + hr[j];
    if (pe) ai += pe[j] * c[j];
    const float gi = apply_rnn_activation(bound(ai), acts[0]);
    float gf;
    if (p.input_forget) {
      gf = 1.0f - gi;
    } else {
      float af = xw[2 * H + j] + hr[2 * H + j];
      if (pe) af += pe[2 * H + j] * c[j];
      gf = apply_rnn_activation(bound(af), acts[0]);
    }
    const float gc = apply_rnn_activation(bound(xw[3 * H + j] + hr[3 * H + j]), acts[1]);
    const float cn = gf * c[j] + gi * gc;
    float ao = xw[H + j] + hr[H + j];
    if (pe) ao += pe[H + j] * cn;
    const float go = apply_rnn_activation(bound(ao), acts[0]);
    c[j] = cn;
    h[j] = go * apply_rnn_activation(cn, acts[2]);
  }
}

}  // namespace detail

}  // namespace dynaprec
