// The host-side controller (DESIGN.md, STYLE.md §5): a pure unit that turns the device's
// quality reports into the next portion's plan, with a reason for every switch. No I/O, no
// device calls; unit-tested on synthetic traces (tests/control/test_controller.cc).
//
// Policies ("recipes", chosen by name):
//   static   every layer at one format (or a fixed per-layer plan); never switches.
//   seed     the loop as first specified, kept for comparison: the whole model moves one step
//            along fp32 → fp16 → int8 → int4 after every portion: down when the one metric (the
//            measured output SQNR, else the worst layer's SQNR) is above the threshold, up when it
//            is below. No hysteresis, no per-layer choice, no warm-up: it oscillates around the
//            threshold, which is what it is kept to show. A layer whose ladder lacks the seed's
//            format runs the nearest format of its ladder at or above it in precision.
//   dynamic  per layer (the default), described below.
//
// Dynamic: the noise model and budgets.
//   Relative noise powers add: a layer at SQNR q dB has relative noise n = 10^(-q/10), and the
//   output's relative noise is predicted as  N_out ≈ gain · Σ_l s_l · n_l.  s_l (sensitivity,
//   start 1) and gain are fitted online from canary portions (those with output_sqnr_db): gain
//   is an EMA in log space of measured N_out / Σ s_l n_l (the first canary sets it; clamped to
//   [gain_min, gain_max]; one canary moves it by at most α · 3 dB, so an outlier canary does not
//   jerk every budget); the log-residual of the previous fit is also attributed to the layers
//   in proportion to their share of the noise (log s_l += sensitivity_rate · share_l · residual,
//   decaying slowly back to 0, s_l in [0.1, 10]). Before any canary gain = 1 and lowering needs
//   warmup_margin_db on top of margin_db (explicit warm-up).
//   Difficulty: with probability outputs the host reports each portion's ambiguity a (mean of
//   1 - max p over the rows, monitor.h mean_ambiguity): output noise grows with it, because a
//   near-tie turns a small logit change into a large probability change (measured on the
//   recognizer: −0.9 dB of output SQNR per dB of ambiguity, static bf16, 200 lines). The model
//   becomes  N_out ≈ gain · D · Σ_l s_l · n_l  with D = max(1, (â / a_usual) / difficulty_knee):
//   â is an EMA (window difficulty_window) of the portions' a, the prediction for the next one;
//   a_usual the stream's usual ambiguity (a slow EMA of log a, updated only by portions not
//   harder than the knee, so a hard stretch does not become the usual). A canary fits gain with
//   its own portion's D. Inputs no harder than knee × usual leave D = 1 (the stream's ordinary
//   spread does not move budgets); harder inputs raise every budget by 10·log10 D at once, which
//   raises the layers without room for it (rule 3) in the portion after the change, and when the
//   inputs turn easy again the budgets fall back and lowering resumes. Such a raise does not
//   count as a failed lowering (no backoff). No ambiguity reported: D = 1.
//   Budget: the target noise N_t = 10^(-target/10) is split into fixed shares w_l ∝ √macs_l
//   (bigger layers save more when lowered, so they may take more noise; unknown macs: the mean
//   of the known ones; pinned layers, with a one-format ladder, get no share). A layer's budget
//   is  gain · D · s_l · n_l ≤ share_l · N_t,  i.e. a budget SQNR  B_l = target + 10·log10(gain ·
//   D · s_l / share_l)  (layer_budget_db()).
//   Estimates: per layer and format, an EMA (window ema_window) of the measured sqnr_db at the
//   format the layer ran and of pred_sqnr_db for the other formats of its ladder. NaN metrics
//   mean "no data": they neither raise nor count as headroom. +inf is capped at 200 dB.
//   Prediction bias: when a layer switches to a format, the mean difference between what it
//   measures there in its first max(ema_window, 2) portions and the estimate it switched on
//   becomes that format's correction (cumulative, ±10 dB), added to later pred_sqnr_db of the
//   format. A lowering that was predicted too optimistically is not repeated on the same
//   prediction: this, not only the backoff, is what stops lower/raise cycles.
//
// Dynamic: the rules, in the order decide() applies them.
//   0. warm-up: the first `warmup` portions keep the whole model at the top of its ladders (the
//      estimates and the gain are still fitted).
//   1. non-finite (nan_count/inf_count > 0): the layer goes to the top of its ladder at once.
//   2. saturation spike (saturated / sampled > saturation_raise; 0 = off): one step up at once.
//   3. the raw measured sqnr_db this portion (or its EMA) below B_l: up to the first rung above
//      whose estimate clears B_l (or the top), at once.
//   4. canary output_sqnr_db < target: the layers contributing the most noise (s_l · n_l) go
//      one step up each, largest first, until the output predicted from the measured one
//      (N_meas · Σ after / Σ before) is within target (at least one layer when any can rise).
//   Raises ignore dwell. Decision::rerun is set in guarantee mode when a raise happened and
//   the portion's output SQNR was below target or a layer produced NaN/Inf.
//   5. lowering, only in a decision without raises: a layer has headroom this portion when a
//      cheaper rung of its ladder has an estimate ≥ B_l + margin (+ warmup_margin_db before the
//      first canary) + volatility_k · σ̂_l, σ̂_l the layer's measured SQNR noise (RMS deviation
//      of the measured sqnr_db from its EMA, each deviation clipped to ±6 dB, window
//      4 · ema_window): a noisy layer needs more room, so its dips rarely reach B_l; headroom
//      portions count only after `dwell` portions since the layer's last switch, a portion without
//      headroom resets the count (no data leaves it). A layer with count ≥ lower_after · backoff_l
//      becomes a candidate for its cheapest such rung (several steps at once when the predictions
//      allow). Candidates are taken greedily, largest cost saving (macs · Δcost) per unit of
//      predicted output noise added first, while the predicted output noise stays ≤ N_t ·
//      10^(-margin/10); a candidate that does not fit tries one step instead. So after a raise a
//      layer comes back down no earlier than dwell + lower_after portions later.
//   Hysteresis: raising happens below B_l (or below target), lowering only with margin above
//   it. Backoff: a layer raised for quality within 2·(lower_after + dwell) portions of being
//   lowered doubles its backoff (at most backoff_max; 0/1 = off); the backoff halves again
//   after every 8·(lower_after + dwell + 1) portions without a switch.
//
// Layer indices: ControlLayer i is the layer whose QualityReport::layer == i (the executor's
// layers() order). Reports naming an unknown index are ignored; a report whose format differs
// from the plan's (a device fallback) feeds that format's estimate only.
#pragma once

#include <array>
#include <cstdint>
#include <limits>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "dynaprec/executor.h"
#include "dynaprec/formats.h"
#include "dynaprec/quality.h"

namespace dynaprec {

enum class PolicyKind : uint8_t { kStatic, kSeed, kDynamic };
std::optional<PolicyKind> policy_from_name(std::string_view name);
std::string_view policy_name(PolicyKind k);

struct PolicyConfig {
  PolicyKind kind = PolicyKind::kDynamic;
  double target_sqnr_db = 30;                 ///< end-to-end output SQNR target
  Format static_format = Format::kFp32;       ///< kStatic: the format; kSeed: the starting format
  std::map<std::string, Format> static_plan;  ///< kStatic: per-layer formats (others: above)
  // dynamic (0 turns a mechanism off where that makes sense):
  double margin_db = 3;            ///< a lower format must be predicted to clear its budget by this
  int lower_after = 3;             ///< portions of sustained headroom before a step down
  int dwell = 4;                   ///< portions after a layer's switch before headroom counts
  int warmup = 1;                  ///< portions at the top of the ladder before any decision
  bool guarantee = false;          ///< re-run a portion below target at higher precision
  int ema_window = 4;              ///< EMA window of the per-layer estimates (0 or 1: raw values)
  double warmup_margin_db = 3;     ///< extra lowering margin until the first canary
  double saturation_raise = 0.01;  ///< share of the sample saturated that raises a step (0: off)
  double sensitivity_rate = 0.1;   ///< learning rate of the per-layer sensitivities (0: off)
  double gain_min = 0.01, gain_max = 100;  ///< clamp of the fitted gain
  double volatility_k = 2;  ///< extra lowering margin: k · measured σ of the layer's SQNR (0: off)
  int backoff_max = 8;      ///< cap of the lower_after multiplier after failed lowerings (0/1: off)
  /// Inputs count as harder only beyond this multiple of the stream's usual output ambiguity
  /// (0: the difficulty term is off).
  double difficulty_knee = 2;
  int difficulty_window = 2;  ///< EMA window of the ambiguity predicting the next portion's
};

/// One layer as the controller sees it.
struct ControlLayer {
  std::string name, op;
  int64_t macs = 0;  ///< per portion (for costs); 0 when unknown
  /// Formats this layer may use, best quality first (fp32 ... lowest): what the device runs
  /// for the op and is faster there. A pinned layer has one entry. Empty: {fp32}.
  std::vector<Format> ladder;
  /// Relative cost of each ladder format (time or bytes per MAC), same order; lower is cheaper.
  /// Empty (or of another length): default_cost() of each format.
  std::vector<double> cost;
};

/// What the host observed after one portion.
struct Observation {
  int64_t portion = 0;
  std::vector<QualityReport> layers;     ///< one per layer that ran (any order)
  std::optional<double> output_sqnr_db;  ///< canary: measured end-to-end SQNR, when run
  /// Mean ambiguity of the portion's probability output (monitor.h mean_ambiguity), when the
  /// model has one.
  std::optional<double> output_ambiguity;
};

/// A switch of one layer with its reason (logged and reported).
struct Switch {
  int64_t portion = 0;  ///< the portion whose observation caused it
  std::string layer;
  Format from = Format::kFp32, to = Format::kFp32;
  std::string reason;  ///< e.g. "raise: measured sqnr 24.1 dB < budget 33.0 dB"
};

struct Decision {
  Plan plan;                     ///< for the next portion; names every layer
  std::vector<Switch> switches;  ///< this decision's changes
  bool rerun = false;  ///< guarantee mode: run the observed portion again at `plan` before release
};

/// The controller's memory between portions (fixed per layer; no growth with the run length).
struct ControllerState {
  PolicyConfig config;
  std::vector<ControlLayer> layers;  ///< normalized: ladder non-empty, one cost per rung
  // per layer (same index as `layers`)
  std::vector<size_t> rung;            ///< index into the layer's ladder
  std::vector<int> since_switch;       ///< portions since the layer's last switch
  std::vector<int> headroom_streak;    ///< consecutive portions with room to step down
  std::vector<double> sensitivity;     ///< gain from the layer's relative noise to the output's
  std::vector<double> share;           ///< fixed share of the target noise (sums to 1 or 0)
  std::vector<int> backoff;            ///< multiplier of lower_after (1: none)
  std::vector<int8_t> last_dir;        ///< last switch: -1 lowered, +1 raised, 0 none
  std::vector<double> volatility_db2;  ///< EMA of the squared deviation of measured sqnr (dB²)
  /// Learned bias of the device's predictions per format (dB, added to pred_sqnr_db).
  std::vector<std::array<float, kFormatCount>> pred_corr_db;
  // since the layer's last switch: its estimate of the new format then, that format's bias
  // correction then, and the sum and count of (measured - estimate) in the first portions
  std::vector<float> entry_est_db;
  std::vector<double> entry_corr_db, entry_sum_db;
  std::vector<int> entry_n;
  /// EMA of the SQNR (dB) per format, indexed by Format; NaN: no data yet.
  std::vector<std::array<float, kFormatCount>> est_sqnr_db;
  int64_t portions_seen = 0;
  int64_t canaries_seen = 0;  ///< portions with a usable output_sqnr_db
  double gain = 1.0;  ///< fitted: output noise ≈ gain · D · Σ sensitivity_l · layer noise_l
  double difficulty = 1.0;  ///< D for the next portion (1: inputs as usual, or no ambiguity)
  double ambiguity_log = std::numeric_limits<double>::quiet_NaN();        ///< log â (EMA)
  double ambiguity_usual_log = std::numeric_limits<double>::quiet_NaN();  ///< log a_usual
  int64_t ambiguity_seen = 0;  ///< portions that reported an ambiguity
  size_t seed_step = 0;        ///< kSeed: index into seed_path()
};

/// A fresh state: every layer at the top of its ladder (seed: at config.static_format's step of
/// the seed path, or the nearest one above; static: config.static_plan/static_format), a layer
/// whose ladder lacks the format taking the nearest format of its ladder at or above it.
ControllerState make_controller(const PolicyConfig& config, std::vector<ControlLayer> layers);

/// The plan for the first portion (names every layer).
Plan initial_plan(const ControllerState& s);

/// Updates the state with one portion's observation and returns the next plan. Pure apart from
/// `s`; deterministic.
Decision decide(ControllerState& s, const Observation& obs);

// --- helpers (also for reports and tests) ---

/// The seed policy's path: fp32, fp16, int8, int4.
const std::array<Format, 4>& seed_path();
/// Precision order of the formats, 0 = most precise: fp32, fp16, bf16, int8, fp8e4m3, fp8e5m2,
/// int4 (by significand bits).
int precision_rank(Format f);
/// Formats of a bit mask (bit i = Format i, as LayerInfo::formats) best quality first.
std::vector<Format> ladder_from_mask(uint32_t formats);
/// Default relative cost of a format: storage bits / 32.
double default_cost(Format f);
/// Index of the ladder's nearest format at or above `f` in precision (0 when there is none).
size_t nearest_rung(const ControlLayer& layer, Format f);
/// Layer l's budget SQNR (dB) under the current gain, difficulty and sensitivity; +inf for a
/// pinned layer.
double layer_budget_db(const ControllerState& s, size_t l);
/// D for a portion whose ambiguity has this log, against the state's usual one (1 when unknown
/// or the term is off).
double difficulty_of(const ControllerState& s, double ambiguity_log);
/// The current plan of `s` (names every layer).
Plan current_plan(const ControllerState& s);

}  // namespace dynaprec
