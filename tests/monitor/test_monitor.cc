// The monitor's own arithmetic: the shadow's dot product against its plain reference and an
// extended-precision sum (every dispatch target: the isa_* tests run these capped), and the
// sample positions.
#include "dynaprec/monitor.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <random>
#include <set>
#include <vector>

namespace dynaprec {
namespace {

// The canary's probability metrics (vectorized logs) against the plain std::log loops: rows of
// softmax outputs of several widths (a partial last vector), zeros, tiny values, and NaN / inf /
// negative entries, which must come out as the reference's (NaN stays NaN).
TEST(MonitorKernel, ProbabilityMetricsMatchTheReference) {
  std::mt19937 g(11);
  std::normal_distribution<float> d(0.0f, 3.0f);
  for (int64_t last : {2, 7, 40, 6625}) {
    const int64_t rows = last > 100 ? 6 : 9;
    std::vector<float> p(static_cast<size_t>(rows * last)), q(p.size());
    for (auto* v : {&p, &q})
      for (int64_t r = 0; r < rows; ++r) {
        double sum = 0;
        for (int64_t j = 0; j < last; ++j) {
          const float e = std::exp(d(g) * 4.0f);  // a wide spread: many tiny probabilities
          (*v)[static_cast<size_t>(r * last + j)] = e;
          sum += e;
        }
        for (int64_t j = 0; j < last; ++j)
          (*v)[static_cast<size_t>(r * last + j)] =
              static_cast<float>((*v)[static_cast<size_t>(r * last + j)] / sum);
      }
    // Ambiguity: mean of 1 - max p (the vector pass against std::max_element), in (0, 1).
    const double amb = mean_ambiguity(p, last);
    EXPECT_NEAR(amb, ref::mean_ambiguity(p, last), 1e-12) << last;
    EXPECT_GT(amb, 0.0) << last;
    EXPECT_LT(amb, 1.0 - 1.0 / static_cast<double>(last) + 1e-9) << last;
    {
      std::vector<float> sure(p.size(), 0.0f);  // every row certain, the 1 at its last place
      for (int64_t r = 0; r < rows; ++r) sure[static_cast<size_t>(r * last + last - 1)] = 1.0f;
      EXPECT_EQ(mean_ambiguity(sure, last), 0.0) << last;
      std::vector<float> flat(p.size(), 1.0f / static_cast<float>(last));
      EXPECT_NEAR(mean_ambiguity(flat, last), 1.0 - 1.0 / static_cast<double>(last), 1e-6);
      std::vector<float> half = p;  // a row that does not sum to 1: not probabilities
      for (int64_t j = 0; j < last; ++j) half[static_cast<size_t>(last + j)] *= 0.5f;
      EXPECT_TRUE(std::isnan(mean_ambiguity(half, last))) << last;
      EXPECT_TRUE(std::isnan(ref::mean_ambiguity(half, last))) << last;
      EXPECT_TRUE(std::isnan(mean_ambiguity(std::span<const float>(p).first(p.size() - 1), last)));
    }
    p[1] = 0.0f;
    q[2] = 0.0f;
    const auto rel = [](double a, double b) {
      return std::fabs(a - b) / std::max(1e-300, std::fabs(b));
    };
    EXPECT_LT(rel(mean_entropy(p, last), ref::mean_entropy(p, last)), 1e-12) << last;
    EXPECT_LT(rel(mean_kl(p, q, last), ref::mean_kl(p, q, last)), 1e-12) << last;
    EXPECT_GT(mean_kl(p, q, last), 0.0) << last;
    // Special values.
    for (const float bad : {std::numeric_limits<float>::quiet_NaN(),
                            std::numeric_limits<float>::infinity(), -0.25f}) {
      std::vector<float> pb = p, qb = q;
      pb[3] = bad;
      qb[5] = bad;
      const double e = mean_entropy(pb, last), we = ref::mean_entropy(pb, last);
      const double k = mean_kl(pb, qb, last), wk = ref::mean_kl(pb, qb, last);
      const auto same = [&](double a, double b) {
        return std::isnan(a) ? std::isnan(b) : a == b || rel(a, b) < 1e-12;
      };
      EXPECT_TRUE(same(e, we)) << last << " " << bad << ": " << e << " vs " << we;
      EXPECT_TRUE(same(k, wk)) << last << " " << bad << ": " << k << " vs " << wk;
      if (!std::isinf(bad)) {  // negative or NaN: not probabilities, in both
        EXPECT_TRUE(std::isnan(mean_ambiguity(pb, last))) << last << " " << bad;
        EXPECT_TRUE(std::isnan(ref::mean_ambiguity(pb, last))) << last << " " << bad;
      }
    }
  }
}

TEST(MonitorKernel, ShadowDotMatchesTheReference) {
  std::mt19937 g(7);
  std::normal_distribution<float> d(0.0f, 1.0f);
  for (int64_t n : {0, 1, 3, 7, 8, 15, 16, 33, 63, 64, 65, 480, 1000, 2880, 4097}) {
    std::vector<float> x(static_cast<size_t>(n)), w(static_cast<size_t>(n));
    for (int64_t j = 0; j < n; ++j) {
      // Magnitudes over several decades, so that the order of the sum matters.
      x[static_cast<size_t>(j)] = d(g) * std::ldexp(1.0f, static_cast<int>(j % 13) - 6);
      w[static_cast<size_t>(j)] = d(g);
    }
    long double exact = 0, mag = 0;
    for (int64_t j = 0; j < n; ++j) {
      const long double p = static_cast<long double>(x[static_cast<size_t>(j)]) *
                            static_cast<long double>(w[static_cast<size_t>(j)]);
      exact += p;
      mag += std::fabs(p);
    }
    const double got = shadow_dot(x.data(), w.data(), n);
    const double want = ref::shadow_dot(x.data(), w.data(), n);
    const double bound =
        2.0 * static_cast<double>(n) * std::ldexp(1.0, -53) * static_cast<double>(mag);
    EXPECT_LE(std::fabs(got - want), bound) << "n=" << n;
    EXPECT_LE(std::fabs(got - static_cast<double>(exact)), bound) << "n=" << n;
    EXPECT_LE(std::fabs(want - static_cast<double>(exact)), bound) << "n=" << n;
    if (n == 0) {
      EXPECT_EQ(got, 0.0);
    }
  }
  // Special values go through like the reference's.
  std::vector<float> x(37, 1.0f), w(37, 2.0f);
  EXPECT_EQ(shadow_dot(x.data(), w.data(), 37), 74.0);
  x[5] = std::numeric_limits<float>::quiet_NaN();
  EXPECT_TRUE(std::isnan(shadow_dot(x.data(), w.data(), 37)));
  x[5] = std::numeric_limits<float>::infinity();
  EXPECT_EQ(shadow_dot(x.data(), w.data(), 37), std::numeric_limits<double>::infinity());
  x[36] = -std::numeric_limits<float>::infinity();  // the tail: inf - inf
  EXPECT_TRUE(std::isnan(shadow_dot(x.data(), w.data(), 37)));
}

// S positions in increasing order inside the tensor, a different offset each visit, and every
// position visited over enough visits.
TEST(MonitorSampling, PositionsSpreadAndVisitEverything) {
  const MonitorConfig c;
  EXPECT_EQ(sample_size(c, 0), 0u);
  EXPECT_EQ(sample_size(c, 10), 10u);       // fewer outputs than min_samples: all of them
  EXPECT_EQ(sample_size(c, 1000), 16u);     // at least min_samples
  EXPECT_EQ(sample_size(c, 1 << 20), 32u);  // at most max_samples
  EXPECT_EQ(sample_size(MonitorConfig{.rate = 0}, 1000), 0u);
  const int64_t count = 1000;
  std::set<int64_t> seen, offsets;
  for (uint64_t visit = 0; visit < 400; ++visit) {
    std::vector<int64_t> pos(16, -1);
    sample_positions(count, 16, visit, pos);
    for (size_t i = 0; i < pos.size(); ++i) {
      ASSERT_GE(pos[i], 0);
      ASSERT_LT(pos[i], count);
      if (i > 0) {
        ASSERT_GT(pos[i], pos[i - 1]);
      }
      seen.insert(pos[i]);
    }
    offsets.insert(pos[0]);
  }
  EXPECT_GT(offsets.size(), 50u) << "the offset advances";
  EXPECT_GE(seen.size(), static_cast<size_t>(count) * 99 / 100) << "everything is visited";
}

}  // namespace
}  // namespace dynaprec
