// Shared helpers of the matmul tests: random data, the fp64 ideal, SQNR.
#pragma once

#include <cmath>
#include <random>
#include <vector>

#include "dynaprec/tensor.h"

namespace dynaprec::test {

inline Tensor gaussian(Shape shape, uint32_t seed, float sigma = 1.0f) {
  Tensor t = Tensor::zeros(std::move(shape), DType::kF32);
  std::mt19937 rng(seed);
  std::normal_distribution<float> d(0.0f, sigma);
  for (int64_t i = 0; i < t.numel(); ++i) t.data_as<float>()[i] = d(rng);
  return t;
}

/// X[M,K] · W[N,K]ᵀ in double from the unquantized fp32 inputs.
inline std::vector<double> matmul_fp64(const float* x, const float* w, int64_t m, int64_t n,
                                       int64_t k) {
  std::vector<double> y(static_cast<size_t>(m * n), 0.0);
  for (int64_t i = 0; i < m; ++i)
    for (int64_t j = 0; j < n; ++j) {
      double acc = 0;
      for (int64_t p = 0; p < k; ++p) acc += double(x[i * k + p]) * double(w[j * k + p]);
      y[static_cast<size_t>(i * n + j)] = acc;
    }
  return y;
}

/// 10 log10(Σ ref² / Σ (got - ref)²); +inf for an exact match.
template <class A, class B>
double sqnr_db(const A& ref, const B& got, size_t count) {
  double s = 0, e = 0;
  for (size_t i = 0; i < count; ++i) {
    s += double(ref[i]) * double(ref[i]);
    e += (double(got[i]) - double(ref[i])) * (double(got[i]) - double(ref[i]));
  }
  return e == 0 ? INFINITY : 10.0 * std::log10(s / e);
}

}  // namespace dynaprec::test
