// The quality monitor (device side, DESIGN.md): samples a layer's output, recomputes the
// sampled values in fp32 (the shadow: fp32 master weights, the layer's own fp32 input), and fills
// a QualityReport (quality.h). The executor calls it after each monitored layer; only the
// report goes back to the host.
//
// Sampling: S = clamp(ceil(rate · outputs), min_samples, max_samples) output positions, evenly
// strided over the output with an offset that advances every time the layer is monitored (a
// golden-ratio sequence), so every part of the tensor is visited over time. The shadow of one
// position is a dot product of length K (C/groups · KH · KW for a conv), so the monitor costs
// S · K multiply-adds per layer: with the default rate that is far below the layer's own work.
//
// Noise model behind pred_sqnr_db (quality.h): relative noise powers add,
//   1 / SQNR(f) ≈ ρ_w(f) + ρ_x(f)
// with ρ_w(f) = Σ (w − q_f(w))² / Σ w² measured once per layer and format on the real weights,
// and ρ_x(f) the activation rounding of the format's activation rule (matmul.h): for the float
// formats a relative rounding of 2^-(mantissa+1) (uniform, power u²/3 with u the unit roundoff,
// fp8 weights use bf16 activations), for int8/int4 a uniform error of one step Δ = amax/127
// (power Δ²/12) against the input's mean square. The prediction is calibrated by the measured
// SQNR at the layer's current format (an offset in dB, clamped to ±12 dB) when one is measured.
#pragma once

#include <array>
#include <cstdint>
#include <span>

#include "dynaprec/formats.h"
#include "dynaprec/quality.h"

namespace dynaprec {

struct MonitorConfig {
  double rate = 1.0 / 4096;   ///< share of each layer output sampled; 0 turns the monitor off
  uint32_t min_samples = 16;  ///< per layer and portion
  uint32_t max_samples = 32;
};

/// Relative weight noise ρ_w(f) for every format of a [N, K] fp32 weight matrix (row-major).
std::array<double, kFormatCount> weight_noise(const float* w, int64_t n, int64_t k);
/// Relative activation noise ρ_x(f) of the format's activation rule for an input with this
/// amax and mean square.
double activation_noise(Format f, double amax, double mean_square);
/// Predicted SQNR (dB) from the two relative noise powers.
double predicted_sqnr_db(double rho_w, double rho_x);

/// The shadow of one sampled output: Σ x[j] · w[j] over n terms in double (each product exact),
/// vectorized with runtime dispatch; the sum's rounding differs from ref::shadow_dot's only in
/// its order (|difference| <= 2 n · 2^-53 · Σ |x[j] · w[j]|).
double shadow_dot(const float* x, const float* w, int64_t n);
namespace ref {
/// The plain loop: one sum, in order.
double shadow_dot(const float* x, const float* w, int64_t n);
}  // namespace ref

/// Accumulates (ref, got) pairs of one layer's sample and finishes the report.
class SampleStats {
 public:
  void add(float ref, float got);
  /// Fills sqnr_db, amax, variance, nan/inf counts and `sampled` of r.
  void finish(QualityReport& r) const;
  uint32_t count() const { return n_; }

 private:
  double sig_ = 0, err_ = 0, sum_ = 0, sumsq_ = 0;
  float amax_ = 0;
  uint32_t n_ = 0, nan_ = 0, inf_ = 0;
};

/// Sample positions for a tensor of `count` values: `s` positions, stride count/s, with the
/// offset of the `visit`-th visit. Writes min(s, count) positions to `out` (in increasing order).
void sample_positions(int64_t count, uint32_t s, uint64_t visit, std::span<int64_t> out);
/// The sample size for `count` outputs.
uint32_t sample_size(const MonitorConfig& c, int64_t count);

// ---- Metrics of probability outputs (the canary compares model outputs) ----------------------

/// Whether rows of `last` values look like probabilities (nonnegative, each row sums to 1 within
/// 1e-3): the softmax outputs of classifiers and recognizers.
bool looks_like_probabilities(std::span<const float> v, int64_t last);
/// Mean entropy (nats) of the rows of `p`.
double mean_entropy(std::span<const float> p, int64_t last);
/// Mean KL(ref ‖ got) (nats) over rows (terms with ref = 0 are 0; got clamped at 1e-30).
double mean_kl(std::span<const float> ref, std::span<const float> got, int64_t last);
/// The sums behind them, vectorized (Highway's Log in double, a few ulp per term): Σ -p·ln p over
/// p > 0, and Σ ref·(ln ref - ln max(got, 1e-30)) over ref > 0.
double entropy_sum(const float* p, size_t n);
double kl_sum(const float* ref, const float* got, size_t n);
namespace ref {
/// The plain loops (std::log in double), to test the vectorized ones against.
double mean_entropy(std::span<const float> p, int64_t last);
double mean_kl(std::span<const float> ref, std::span<const float> got, int64_t last);
}  // namespace ref
/// How far the rows of a probability output are from a sure choice: the mean over rows of
/// 1 - max p (0: every row certain). Cheap (one vector pass of sums and maxima), so the host
/// takes it from every portion's released output, not only canaries: on a recognizer it tracks
/// how hard the inputs are (near-ties are where low-precision noise turns into output noise).
/// NaN when the rows do not look like probabilities (looks_like_probabilities' test, summed in
/// float: a row sum within 1e-3 of 1 up to float rounding).
double mean_ambiguity(std::span<const float> p, int64_t last);
namespace ref {
/// The plain version: looks_like_probabilities, then std::max_element per row.
double mean_ambiguity(std::span<const float> p, int64_t last);
}  // namespace ref
/// Share of rows whose argmax agrees.
double top1_agreement(std::span<const float> ref, std::span<const float> got, int64_t last);
/// SQNR (dB) of got against ref over all values (+inf when equal, NaN when ref is all 0).
double sqnr_db(std::span<const float> ref, std::span<const float> got);

}  // namespace dynaprec
