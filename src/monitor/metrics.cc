// Custom metric registry (quality.h) and the probability-output metrics (monitor.h).
#include <algorithm>
#include <cmath>
#include <limits>
#include <mutex>

#include "dynaprec/error.h"
#include "dynaprec/monitor.h"
#include "dynaprec/quality.h"

namespace dynaprec {
namespace {

struct Registry {
  std::mutex mu;
  std::vector<std::string> names;
  std::vector<MetricFn> fns;
};

Registry& registry() {
  static Registry r;
  return r;
}

}  // namespace

size_t register_metric(const std::string& name, MetricFn fn) {
  if (name.empty() || !fn)
    throw Error(ErrorKind::kUsage, "register_metric: needs a name and a function");
  Registry& r = registry();
  std::lock_guard lock(r.mu);
  for (size_t i = 0; i < r.names.size(); ++i)
    if (r.names[i] == name) {
      r.fns[i] = std::move(fn);
      return i;
    }
  if (r.names.size() >= kMaxCustomMetrics)
    throw Error(ErrorKind::kUsage, "register_metric: at most " + std::to_string(kMaxCustomMetrics) +
                                       " custom metrics");
  r.names.push_back(name);
  r.fns.push_back(std::move(fn));
  return r.names.size() - 1;
}

size_t custom_metric_count() {
  Registry& r = registry();
  std::lock_guard lock(r.mu);
  return r.names.size();
}

std::vector<std::string> metric_names() {
  Registry& r = registry();
  std::lock_guard lock(r.mu);
  return r.names;
}

const MetricFn& metric_fn(size_t slot) {
  Registry& r = registry();
  std::lock_guard lock(r.mu);
  return r.fns.at(slot);
}

bool looks_like_probabilities(std::span<const float> v, int64_t last) {
  if (last < 2 || v.empty() || v.size() % static_cast<size_t>(last) != 0) return false;
  for (size_t row = 0; row < v.size(); row += static_cast<size_t>(last)) {
    double s = 0;
    for (int64_t j = 0; j < last; ++j) {
      const float p = v[row + static_cast<size_t>(j)];
      if (!(p >= 0)) return false;  // negative or NaN
      s += p;
    }
    if (std::fabs(s - 1) > 1e-3) return false;
  }
  return true;
}

double mean_entropy(std::span<const float> p, int64_t last) {
  const size_t rows = p.size() / static_cast<size_t>(last);
  if (rows == 0) return std::numeric_limits<double>::quiet_NaN();
  return entropy_sum(p.data(), p.size()) / static_cast<double>(rows);
}

double mean_kl(std::span<const float> ref, std::span<const float> got, int64_t last) {
  const size_t rows = ref.size() / static_cast<size_t>(last);
  if (rows == 0 || got.size() != ref.size()) return std::numeric_limits<double>::quiet_NaN();
  return kl_sum(ref.data(), got.data(), ref.size()) / static_cast<double>(rows);
}

namespace ref {
double mean_entropy(std::span<const float> p, int64_t last) {
  const size_t rows = p.size() / static_cast<size_t>(last);
  if (rows == 0) return std::numeric_limits<double>::quiet_NaN();
  double h = 0;
  for (size_t i = 0; i < p.size(); ++i)
    if (p[i] > 0) h -= p[i] * std::log(static_cast<double>(p[i]));
  return h / static_cast<double>(rows);
}

double mean_kl(std::span<const float> ref, std::span<const float> got, int64_t last) {
  const size_t rows = ref.size() / static_cast<size_t>(last);
  if (rows == 0 || got.size() != ref.size()) return std::numeric_limits<double>::quiet_NaN();
  double kl = 0;
  for (size_t i = 0; i < ref.size(); ++i) {
    if (ref[i] <= 0) continue;
    const double q = std::max(static_cast<double>(got[i]), 1e-30);
    kl += ref[i] * (std::log(static_cast<double>(ref[i])) - std::log(q));
  }
  return kl / static_cast<double>(rows);
}
}  // namespace ref

double top1_agreement(std::span<const float> ref, std::span<const float> got, int64_t last) {
  const size_t rows = ref.size() / static_cast<size_t>(last);
  if (rows == 0 || got.size() != ref.size()) return std::numeric_limits<double>::quiet_NaN();
  size_t agree = 0;
  for (size_t r = 0; r < rows; ++r) {
    const auto a = ref.begin() + static_cast<std::ptrdiff_t>(r * last),
               b = got.begin() + static_cast<std::ptrdiff_t>(r * last);
    agree += std::max_element(a, a + last) - a == std::max_element(b, b + last) - b;
  }
  return static_cast<double>(agree) / static_cast<double>(rows);
}

double sqnr_db(std::span<const float> ref, std::span<const float> got) {
  double s = 0, e = 0;
  const size_t n = std::min(ref.size(), got.size());
  for (size_t i = 0; i < n; ++i) {
    const double r = ref[i], d = r - got[i];
    s += r * r;
    e += d * d;
  }
  if (std::isnan(e)) return -std::numeric_limits<double>::infinity();
  if (e == 0)
    return s == 0 ? std::numeric_limits<double>::quiet_NaN()
                  : std::numeric_limits<double>::infinity();
  return 10 * std::log10(s / e);
}

}  // namespace dynaprec
