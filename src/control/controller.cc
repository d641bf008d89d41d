// Policies static / seed / dynamic (include/dynaprec/controller.h describes the rules).
#include "dynaprec/controller.h"

#include <algorithm>
#include <cmath>
#include <cstdarg>
#include <cstdio>
#include <limits>

namespace dynaprec {
namespace {

constexpr double kInf = std::numeric_limits<double>::infinity();
constexpr float kNaNf = std::numeric_limits<float>::quiet_NaN();
constexpr double kMaxDb = 200;  // +inf SQNR (identical outputs) is capped here
constexpr double kMinDb = -50;
constexpr int kSinceCap = 1 << 28;
constexpr double kSensMin = 0.1, kSensMax = 10, kSensDecay = 0.02;
constexpr double kCorrMaxDb = 10;  // prediction-bias corrections are clamped to ±this
constexpr double kVolClampDb = 6;  // one deviation counts at most this much
constexpr double kGainStep = 0.6907755278982137;  // ln 2: a canary moves log(gain) ≤ α·3 dB
constexpr double kAmbiguityFloor = 1e-6;          // a portion whose every row is certain
constexpr int kUsualFirst = 8;            // the usual ambiguity: the plain mean of the first ones,
constexpr double kUsualAlpha = 2.0 / 33;  // then an EMA of the portions no harder than the knee
constexpr double kDifficultyMax = 1000;   // D ≤ 30 dB

double clamp_db(double db) { return std::clamp(db, kMinDb, kMaxDb); }
double noise_of(double db) { return std::pow(10.0, -db / 10.0); }
double db_of(double n) { return n <= 0 ? kInf : -10.0 * std::log10(n); }

std::string strf(const char* fmt, ...) __attribute__((format(printf, 1, 2)));
std::string strf(const char* fmt, ...) {
  char buf[512];
  va_list ap;
  va_start(ap, fmt);
  std::vsnprintf(buf, sizeof buf, fmt, ap);
  va_end(ap);
  return buf;
}

const char* fname(Format f) { return format_name(f).data(); }  // names are literals

Format at_rung(const ControllerState& s, size_t l) { return s.layers[l].ladder[s.rung[l]]; }

float& est(ControllerState& s, size_t l, Format f) {
  return s.est_sqnr_db[l][static_cast<size_t>(f)];
}
float est(const ControllerState& s, size_t l, size_t rung) {
  return s.est_sqnr_db[l][static_cast<size_t>(s.layers[l].ladder[rung])];
}

// Extra lowering margin from the layer's measured volatility: volatility_k · σ̂ (dB).
double noise_margin(const ControllerState& s, size_t l) {
  return s.config.volatility_k > 0 ? s.config.volatility_k * std::sqrt(s.volatility_db2[l]) : 0;
}

void ema(float& slot, double value, double alpha) {
  value = clamp_db(value);
  slot = std::isnan(slot) ? static_cast<float>(value)
                          : static_cast<float>(slot + alpha * (value - slot));
}

void add_switch(ControllerState& s, Decision& d, size_t l, size_t to, int64_t portion,
                std::string reason) {
  const size_t from = s.rung[l];
  d.switches.push_back({portion, s.layers[l].name, s.layers[l].ladder[from], s.layers[l].ladder[to],
                        std::move(reason)});
  s.rung[l] = to;
  s.since_switch[l] = 0;
  s.headroom_streak[l] = 0;
  s.last_dir[l] = to < from ? int8_t{1} : int8_t{-1};
  // Learn how far the prediction for the new format was off in its first measured portions.
  const size_t f = static_cast<size_t>(s.layers[l].ladder[to]);
  s.entry_est_db[l] = s.est_sqnr_db[l][f];
  s.entry_corr_db[l] = s.pred_corr_db[l][f];
  s.entry_sum_db[l] = 0;
  s.entry_n[l] = 0;
}

// ---------------------------------------------------------------------------------------------
// seed

Decision decide_seed(ControllerState& s, const Observation& obs) {
  Decision d;
  const double target = s.config.target_sqnr_db;
  double metric = kNaNf;
  std::string label;
  if (obs.output_sqnr_db && !std::isnan(*obs.output_sqnr_db)) {
    metric = *obs.output_sqnr_db;
    label = "output sqnr";
  } else {
    for (const QualityReport& r : obs.layers) {
      if (std::isnan(r.sqnr_db) || (!std::isnan(metric) && r.sqnr_db >= metric)) continue;
      metric = r.sqnr_db;
      label = r.layer < s.layers.size() ? "worst layer sqnr (" + s.layers[r.layer].name + ")"
                                        : std::string("worst layer sqnr");
    }
  }
  const size_t last = seed_path().size() - 1;
  size_t step = s.seed_step;
  if (!std::isnan(metric)) {
    if (metric > target && step < last) ++step;
    if (metric < target && step > 0) --step;
  }
  if (step != s.seed_step) {
    const std::string why =
        strf("seed: %s %.1f dB %s target %.1f dB: whole model one step %s, %s -> %s", label.c_str(),
             metric, metric > target ? ">" : "<", target, step > s.seed_step ? "down" : "up",
             fname(seed_path()[s.seed_step]), fname(seed_path()[step]));
    s.seed_step = step;
    for (size_t l = 0; l < s.layers.size(); ++l) {
      const size_t to = nearest_rung(s.layers[l], seed_path()[step]);
      if (to != s.rung[l]) add_switch(s, d, l, to, obs.portion, why);
    }
  }
  d.plan = current_plan(s);
  return d;
}

// ---------------------------------------------------------------------------------------------
// dynamic

struct LayerObs {
  double raw = kNaNf;  // measured sqnr at the current rung this portion
  uint32_t nan = 0, inf = 0;
  double sat = 0;  // largest saturated share of a report
  bool data = false;
};

Decision decide_dynamic(ControllerState& s, const Observation& obs) {
  Decision d;
  const PolicyConfig& c = s.config;
  const size_t n_layers = s.layers.size();
  const double alpha = c.ema_window > 1 ? 2.0 / (c.ema_window + 1) : 1.0;
  const double vol_alpha = 2.0 / (4 * std::max(c.ema_window, 1) + 1);
  const int entry_portions = std::max(c.ema_window, 2);
  const double target = c.target_sqnr_db;
  const double n_target = noise_of(target);

  // 1. Gather the reports; update the per-format estimates.
  std::vector<LayerObs> ob(n_layers);
  for (const QualityReport& r : obs.layers) {
    if (r.layer >= n_layers) continue;
    const size_t l = r.layer;
    LayerObs& o = ob[l];
    o.nan += r.nan_count;
    o.inf += r.inf_count;
    if (r.sampled > 0) o.sat = std::max(o.sat, static_cast<double>(r.saturated) / r.sampled);
    if (r.non_finite()) continue;  // its metrics are not to be trusted
    const ControlLayer& layer = s.layers[l];
    if (!std::isnan(r.sqnr_db)) {
      if (r.format == at_rung(s, l)) {
        const double m = clamp_db(r.sqnr_db);
        const float prev = est(s, l, r.format);
        if (!std::isnan(prev) && c.volatility_k > 0) {  // robust: one spike moves it little
          const double dev = std::clamp(m - prev, -kVolClampDb, kVolClampDb);
          s.volatility_db2[l] += vol_alpha * (dev * dev - s.volatility_db2[l]);
        }
        if (!std::isnan(s.entry_est_db[l]) && s.entry_n[l] < entry_portions) {
          s.entry_sum_db[l] += m - s.entry_est_db[l];
          ++s.entry_n[l];
          s.pred_corr_db[l][static_cast<size_t>(r.format)] = static_cast<float>(std::clamp(
              s.entry_corr_db[l] + s.entry_sum_db[l] / s.entry_n[l], -kCorrMaxDb, kCorrMaxDb));
        }
        o.raw = std::isnan(o.raw) ? m : std::min(o.raw, m);
        o.data = true;
      }
      if (std::find(layer.ladder.begin(), layer.ladder.end(), r.format) != layer.ladder.end())
        ema(est(s, l, r.format), r.sqnr_db, alpha);
    }
    for (Format g : layer.ladder) {
      const float p = r.pred_sqnr_db[static_cast<size_t>(g)];
      if (g != r.format && !std::isnan(p))
        ema(est(s, l, g), p + s.pred_corr_db[l][static_cast<size_t>(g)], alpha);
    }
  }
  // 1b. Difficulty: this portion's ambiguity against the stream's usual one (D of the canary
  // fit), then the prediction for the next portion (D of its budgets).
  double d_obs = 1;
  if (obs.output_ambiguity && std::isfinite(*obs.output_ambiguity) && *obs.output_ambiguity >= 0) {
    const double la = std::log(std::max(*obs.output_ambiguity, kAmbiguityFloor));
    d_obs = difficulty_of(s, la);
    const double a_alpha = c.difficulty_window > 1 ? 2.0 / (c.difficulty_window + 1) : 1.0;
    s.ambiguity_log =
        std::isnan(s.ambiguity_log) ? la : s.ambiguity_log + a_alpha * (la - s.ambiguity_log);
    ++s.ambiguity_seen;
    if (s.ambiguity_seen <= kUsualFirst)
      s.ambiguity_usual_log =
          s.ambiguity_seen == 1
              ? la
              : s.ambiguity_usual_log + (la - s.ambiguity_usual_log) / double(s.ambiguity_seen);
    else if (d_obs <= 1)
      s.ambiguity_usual_log +=
          kUsualAlpha * std::clamp(la - s.ambiguity_usual_log, -kGainStep, kGainStep);
  }
  auto cur_noise = [&](size_t l) {  // s_l-free noise at the current rung; 0 when unknown
    const double q = !std::isnan(ob[l].raw) ? ob[l].raw : est(s, l, s.rung[l]);
    return std::isnan(q) ? 0.0 : noise_of(q);
  };

  // 2. Canary: fit gain and sensitivities.
  const bool have_out = obs.output_sqnr_db && !std::isnan(*obs.output_sqnr_db);
  const double out = have_out ? clamp_db(*obs.output_sqnr_db) : kNaNf;
  double p_before = 0;  // Σ s_l n_l at the observed rungs
  for (size_t l = 0; l < n_layers; ++l) p_before += s.sensitivity[l] * cur_noise(l);
  if (have_out) {
    const double n_meas = noise_of(out);
    if (p_before > 0 && out < kMaxDb) {
      const double ratio = std::clamp(n_meas / (d_obs * p_before), c.gain_min, c.gain_max);
      const double resid = std::clamp(std::log(ratio) - std::log(s.gain), -kGainStep, kGainStep);
      if (s.canaries_seen == 0) {
        s.gain = ratio;
      } else {
        s.gain = std::clamp(std::exp(std::log(s.gain) + alpha * resid), c.gain_min, c.gain_max);
        if (c.sensitivity_rate > 0) {
          for (size_t l = 0; l < n_layers; ++l) {
            const double share = s.sensitivity[l] * cur_noise(l) / p_before;
            const double ls =
                (1 - kSensDecay) * std::log(s.sensitivity[l]) + c.sensitivity_rate * share * resid;
            s.sensitivity[l] = std::clamp(std::exp(ls), kSensMin, kSensMax);
          }
        }
      }
    }
    ++s.canaries_seen;
  }

  s.difficulty = std::isnan(s.ambiguity_log) ? 1.0 : difficulty_of(s, s.ambiguity_log);
  const double harder_db = 10 * std::log10(s.difficulty);  // what D adds to every budget

  // Backoff decays after long quiet stretches.
  const int quiet = 8 * (std::max(c.lower_after, 0) + std::max(c.dwell, 0) + 1);
  for (size_t l = 0; l < n_layers; ++l)
    if (s.backoff[l] > 1 && s.since_switch[l] > 0 && s.since_switch[l] % quiet == 0)
      s.backoff[l] /= 2;

  // 0. Warm-up: stay at the top, keep fitting.
  if (s.portions_seen <= c.warmup) {
    d.plan = current_plan(s);
    return d;
  }

  // 3. Raises.
  const int recent = 2 * (std::max(c.lower_after, 0) + std::max(c.dwell, 0));
  const int cap = std::max(c.backoff_max, 1);
  bool raised_any = false, nonfinite_any = false;
  std::vector<char> raised(n_layers, 0);
  auto raise = [&](size_t l, size_t to, bool quality, std::string why) {
    if (quality && s.last_dir[l] < 0 && s.since_switch[l] <= recent)
      s.backoff[l] = std::min(s.backoff[l] * 2, cap);
    add_switch(s, d, l, to, obs.portion, std::move(why));
    raised[l] = 1;
    raised_any = true;
  };
  for (size_t l = 0; l < n_layers; ++l) {
    const LayerObs& o = ob[l];
    const size_t r = s.rung[l];
    if (o.nan + o.inf > 0) {
      nonfinite_any = true;
      s.headroom_streak[l] = 0;
      if (r > 0)
        raise(l, 0, false,
              strf("raise to top: %u NaN, %u Inf in the output sample at %s", o.nan, o.inf,
                   fname(at_rung(s, l))));
      continue;
    }
    if (c.saturation_raise > 0 && o.sat > c.saturation_raise) {
      s.headroom_streak[l] = 0;
      if (r > 0)
        raise(l, r - 1, true,
              strf("raise: %.2f%% of the sample saturated at %s > %.2f%%", 100 * o.sat,
                   fname(at_rung(s, l)), 100 * c.saturation_raise));
      continue;
    }
    const double budget = layer_budget_db(s, l);
    const double smooth = est(s, l, r);
    const bool short_raw = !std::isnan(o.raw) && o.raw < budget;
    const bool short_ema = o.data && !std::isnan(smooth) && smooth < budget;
    if (!short_raw && !short_ema) continue;
    s.headroom_streak[l] = 0;
    if (r == 0) continue;
    size_t to = r - 1;
    while (to > 0 && !std::isnan(est(s, l, to)) && est(s, l, to) < budget) --to;
    // Short only because the inputs turned harder: not a failed lowering (no backoff).
    const double calm = budget - harder_db;
    const bool harder = harder_db > 0 && !(!std::isnan(o.raw) && o.raw < calm) &&
                        !(o.data && !std::isnan(smooth) && smooth < calm);
    const std::string why = strf("raise: measured sqnr %.1f dB (ema %.1f) at %s < budget %.1f dB",
                                 o.raw, smooth, fname(s.layers[l].ladder[r]), budget);
    raise(l, to, !harder,
          harder ? strf("%s (inputs harder: ambiguity %.1fx the stream's usual, budgets +%.1f dB)",
                        why.c_str(), std::exp(s.ambiguity_log - s.ambiguity_usual_log), harder_db)
                 : why);
  }

  // 4. Canary shortfall: raise the largest contributors until the output is predicted in target.
  const bool short_out = have_out && out < target;
  if (short_out) {
    const double n_meas = noise_of(out);
    std::vector<double> contrib(n_layers);
    double p_now = 0;
    for (size_t l = 0; l < n_layers; ++l) {
      double n = cur_noise(l);
      if (raised[l]) {
        const double q = est(s, l, s.rung[l]);
        n = std::isnan(q) ? n * 0.1 : noise_of(q);
      }
      contrib[l] = s.sensitivity[l] * n;
      p_now += contrib[l];
    }
    std::vector<char> bumped(n_layers, 0);
    bool first = !raised_any;  // at least one raise when nothing else rose
    auto predicted = [&] { return p_before > 0 ? n_meas * p_now / p_before : n_meas; };
    while (first || predicted() > n_target) {
      size_t best = n_layers;
      for (size_t l = 0; l < n_layers; ++l) {
        if (bumped[l] || s.rung[l] == 0) continue;
        if (best == n_layers || contrib[l] > contrib[best] ||
            (contrib[l] == contrib[best] && s.rung[l] > s.rung[best]))
          best = l;
      }
      if (best == n_layers) break;
      const size_t l = best, to = s.rung[l] - 1;
      const double q = est(s, l, to);
      const double n_new = s.sensitivity[l] * (std::isnan(q) ? cur_noise(l) * 0.1 : noise_of(q));
      const double share = p_now > 0 ? contrib[l] / p_now : 0;
      p_now += n_new - contrib[l];
      contrib[l] = n_new;
      bumped[l] = 1;
      raise(l, to, true,
            strf("raise: output sqnr %.1f dB < target %.1f dB; %s has %.0f%% of the predicted "
                 "noise, predicted output after raises %.1f dB",
                 out, target, s.layers[l].name.c_str(), 100 * share, db_of(predicted())));
      first = false;
    }
    for (size_t l = 0; l < n_layers; ++l) s.headroom_streak[l] = 0;
  }
  d.rerun = c.guarantee && raised_any && (short_out || nonfinite_any);

  // 5. Lowering.
  const double margin =
      std::max(c.margin_db, 0.0) + (s.canaries_seen == 0 ? std::max(c.warmup_margin_db, 0.0) : 0);
  struct Cand {
    size_t l, to, step;  // best rung, one-step rung (npos: not qualifying)
    double ratio;
  };
  std::vector<Cand> cands;
  if (!short_out) {
    for (size_t l = 0; l < n_layers; ++l) {
      const ControlLayer& layer = s.layers[l];
      const size_t r = s.rung[l];
      if (raised[l]) continue;
      if (r + 1 >= layer.ladder.size()) {
        s.headroom_streak[l] = 0;
        continue;
      }
      if (!ob[l].data) continue;  // no data: neither headroom nor its absence
      const double need = layer_budget_db(s, l) + margin + noise_margin(s, l);
      size_t to = SIZE_MAX, step = SIZE_MAX;
      for (size_t k = r + 1; k < layer.ladder.size(); ++k) {
        const float q = est(s, l, k);
        if (std::isnan(q) || q < need || !(layer.cost[k] < layer.cost[r])) continue;
        if (k == r + 1) step = k;
        if (to == SIZE_MAX || layer.cost[k] < layer.cost[to]) to = k;
      }
      if (to == SIZE_MAX) {
        s.headroom_streak[l] = 0;
        continue;
      }
      if (s.since_switch[l] > std::max(c.dwell, 0)) ++s.headroom_streak[l];
      const int required = std::max(c.lower_after, 0) * s.backoff[l];
      if (raised_any || s.since_switch[l] <= std::max(c.dwell, 0) ||
          s.headroom_streak[l] < std::max(required, 1))
        continue;
      const double macs = static_cast<double>(std::max<int64_t>(layer.macs, 1));
      const double dn = s.sensitivity[l] * (noise_of(est(s, l, to)) - cur_noise(l));
      const double saving = macs * (layer.cost[r] - layer.cost[to]);
      cands.push_back({l, to, step, dn > 0 ? saving / dn : kInf});
    }
  }
  if (!cands.empty()) {
    std::stable_sort(cands.begin(), cands.end(),
                     [](const Cand& a, const Cand& b) { return a.ratio > b.ratio; });
    double total = 0;  // gain · Σ s_l n_l from the estimates
    for (size_t l = 0; l < n_layers; ++l) {
      const float q = est(s, l, s.rung[l]);
      if (!std::isnan(q)) total += s.gain * s.difficulty * s.sensitivity[l] * noise_of(q);
    }
    const double limit = n_target * noise_of(margin);
    for (const Cand& cd : cands) {
      const size_t l = cd.l;
      const float q_now = est(s, l, s.rung[l]);
      const double n_now = std::isnan(q_now) ? 0 : noise_of(q_now);
      for (size_t to : {cd.to, cd.step}) {
        if (to == SIZE_MAX) continue;
        const double add =
            s.gain * s.difficulty * s.sensitivity[l] * (noise_of(est(s, l, to)) - n_now);
        if (total + add > limit) continue;
        total += add;
        const std::string why = strf(
            "lower: predicted sqnr %.1f dB (bias correction %+.1f) at %s >= budget %.1f + margin "
            "%.1f + noise %.1f dB "
            "after %d portions of headroom; predicted output %.1f dB",
            est(s, l, to), s.pred_corr_db[l][static_cast<size_t>(s.layers[l].ladder[to])],
            fname(s.layers[l].ladder[to]), layer_budget_db(s, l), margin, noise_margin(s, l),
            s.headroom_streak[l], db_of(total));
        add_switch(s, d, l, to, obs.portion, why);
        break;
      }
    }
  }
  d.plan = current_plan(s);
  return d;
}

}  // namespace

// ---------------------------------------------------------------------------------------------

std::optional<PolicyKind> policy_from_name(std::string_view name) {
  if (name == "static") return PolicyKind::kStatic;
  if (name == "seed") return PolicyKind::kSeed;
  if (name == "dynamic") return PolicyKind::kDynamic;
  return std::nullopt;
}

std::string_view policy_name(PolicyKind k) {
  switch (k) {
    case PolicyKind::kStatic:
      return "static";
    case PolicyKind::kSeed:
      return "seed";
    case PolicyKind::kDynamic:
      return "dynamic";
  }
  return "?";
}

const std::array<Format, 4>& seed_path() {
  static constexpr std::array<Format, 4> kPath = {Format::kFp32, Format::kFp16, Format::kInt8,
                                                  Format::kInt4};
  return kPath;
}

int precision_rank(Format f) {
  switch (f) {
    case Format::kFp32:
      return 0;
    case Format::kFp16:
      return 1;
    case Format::kBf16:
      return 2;
    case Format::kInt8:
      return 3;
    case Format::kFp8E4M3:
      return 4;
    case Format::kFp8E5M2:
      return 5;
    case Format::kInt4:
      return 6;
    case Format::kCount:
      break;
  }
  return 7;
}

std::vector<Format> ladder_from_mask(uint32_t formats) {
  std::vector<Format> out;
  for (size_t i = 0; i < kFormatCount; ++i)
    if (formats & (1u << i)) out.push_back(static_cast<Format>(i));
  std::stable_sort(out.begin(), out.end(),
                   [](Format a, Format b) { return precision_rank(a) < precision_rank(b); });
  return out;
}

double default_cost(Format f) { return format_info(f).storage_bits / 32.0; }

size_t nearest_rung(const ControlLayer& layer, Format f) {
  size_t best = SIZE_MAX;
  for (size_t i = 0; i < layer.ladder.size(); ++i) {
    const int r = precision_rank(layer.ladder[i]);
    if (r > precision_rank(f)) continue;
    if (best == SIZE_MAX || r > precision_rank(layer.ladder[best])) best = i;
  }
  return best == SIZE_MAX ? 0 : best;
}

double layer_budget_db(const ControllerState& s, size_t l) {
  if (s.share[l] <= 0) return kInf;
  return s.config.target_sqnr_db +
         10.0 * std::log10(s.gain * s.difficulty * s.sensitivity[l] / s.share[l]);
}

double difficulty_of(const ControllerState& s, double ambiguity_log) {
  const double knee = s.config.difficulty_knee;
  if (!(knee > 0) || std::isnan(ambiguity_log) || std::isnan(s.ambiguity_usual_log)) return 1.0;
  return std::clamp(std::exp(ambiguity_log - s.ambiguity_usual_log) / knee, 1.0, kDifficultyMax);
}

Plan current_plan(const ControllerState& s) {
  Plan p;
  p.default_format = Format::kFp32;
  for (size_t l = 0; l < s.layers.size(); ++l) p.layers.emplace(s.layers[l].name, at_rung(s, l));
  return p;
}

ControllerState make_controller(const PolicyConfig& config, std::vector<ControlLayer> layers) {
  ControllerState s;
  s.config = config;
  const size_t n = layers.size();
  for (ControlLayer& layer : layers) {
    if (layer.ladder.empty()) layer.ladder = {Format::kFp32};
    if (layer.cost.size() != layer.ladder.size()) {
      layer.cost.clear();
      for (Format f : layer.ladder) layer.cost.push_back(default_cost(f));
    }
  }
  s.layers = std::move(layers);
  s.rung.assign(n, 0);
  s.since_switch.assign(n, kSinceCap);
  s.headroom_streak.assign(n, 0);
  s.sensitivity.assign(n, 1.0);
  s.backoff.assign(n, 1);
  s.last_dir.assign(n, 0);
  s.volatility_db2.assign(n, 0.0);
  std::array<float, kFormatCount> zero;
  zero.fill(0.0f);
  s.pred_corr_db.assign(n, zero);
  s.entry_est_db.assign(n, kNaNf);
  s.entry_corr_db.assign(n, 0.0);
  s.entry_sum_db.assign(n, 0.0);
  s.entry_n.assign(n, 0);
  std::array<float, kFormatCount> none;
  none.fill(kNaNf);
  s.est_sqnr_db.assign(n, none);

  // Budget shares ∝ √macs over the layers that can move; unknown macs: the mean of the known.
  double known = 0;
  size_t n_known = 0;
  for (const ControlLayer& layer : s.layers)
    if (layer.macs > 0) known += static_cast<double>(layer.macs), ++n_known;
  const double fill = n_known ? known / n_known : 1.0;
  s.share.assign(n, 0.0);
  double sum = 0;
  for (size_t l = 0; l < n; ++l) {
    if (s.layers[l].ladder.size() < 2) continue;
    const double macs = s.layers[l].macs > 0 ? static_cast<double>(s.layers[l].macs) : fill;
    s.share[l] = std::sqrt(macs);
    sum += s.share[l];
  }
  if (sum > 0)
    for (double& w : s.share) w /= sum;

  for (size_t l = 0; l < n; ++l) {
    switch (config.kind) {
      case PolicyKind::kStatic: {
        auto it = config.static_plan.find(s.layers[l].name);
        s.rung[l] = nearest_rung(
            s.layers[l], it != config.static_plan.end() ? it->second : config.static_format);
        break;
      }
      case PolicyKind::kSeed:
        break;  // below
      case PolicyKind::kDynamic:
        s.rung[l] = 0;
        break;
    }
  }
  if (config.kind == PolicyKind::kSeed) {
    // The start: the path's nearest step at or above static_format in precision.
    s.seed_step = 0;
    for (size_t i = 0; i < seed_path().size(); ++i)
      if (precision_rank(seed_path()[i]) <= precision_rank(config.static_format)) s.seed_step = i;
    for (size_t l = 0; l < n; ++l) s.rung[l] = nearest_rung(s.layers[l], seed_path()[s.seed_step]);
  }
  return s;
}

Plan initial_plan(const ControllerState& s) { return current_plan(s); }

Decision decide(ControllerState& s, const Observation& obs) {
  ++s.portions_seen;
  for (int& k : s.since_switch) k = std::min(k + 1, kSinceCap);
  switch (s.config.kind) {
    case PolicyKind::kStatic: {
      Decision d;
      d.plan = current_plan(s);
      return d;
    }
    case PolicyKind::kSeed:
      return decide_seed(s, obs);
    case PolicyKind::kDynamic:
      break;
  }
  return decide_dynamic(s, obs);
}

}  // namespace dynaprec
