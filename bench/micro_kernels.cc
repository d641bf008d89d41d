// Google Benchmark micro-benchmarks of the matmul and conv kernels, every format, in-cache
// sizes (dynaprec bench gemv/gemm/conv measure the memory-bound and large cases), and the
// per-portion output metrics of the loop.
#include <benchmark/benchmark.h>

#include <cmath>
#include <random>
#include <vector>

#include "dynaprec/conv.h"
#include "dynaprec/matmul.h"
#include "dynaprec/monitor.h"

namespace {

using dynaprec::Format;

dynaprec::Tensor gaussian(dynaprec::Shape shape, uint32_t seed) {
  dynaprec::Tensor t = dynaprec::Tensor::zeros(std::move(shape), dynaprec::DType::kF32);
  std::mt19937 rng(seed);
  std::normal_distribution<float> d;
  for (int64_t i = 0; i < t.numel(); ++i) t.data_as<float>()[i] = d(rng);
  return t;
}

// Args: M, N, K.
void BM_Matmul(benchmark::State& st, Format f) {
  const int64_t m = st.range(0), n = st.range(1), k = st.range(2);
  const auto x = gaussian({m, k}, 1);
  const auto w = dynaprec::matmul_weights(gaussian({n, k}, 2), f);
  std::vector<float> y(static_cast<size_t>(m * n));
  for (auto _ : st) {
    dynaprec::matmul(x.data_as<float>(), m, w, nullptr, y.data());
    benchmark::ClobberMemory();
  }
  st.counters["GFLOP/s"] =
      benchmark::Counter(2.0 * double(m * n * k), benchmark::Counter::kIsIterationInvariantRate,
                         benchmark::Counter::kIs1000);
}

// 1×64×56×56, 3×3, 64 out, pad 1.
void BM_Conv(benchmark::State& st, Format f) {
  const auto x = gaussian({1, 64, 56, 56}, 3);
  const auto w = dynaprec::conv_weights(gaussian({64, 64, 3, 3}, 4), f);
  dynaprec::Conv2dParams p;
  p.pad_top = p.pad_left = p.pad_bottom = p.pad_right = 1;
  auto y = dynaprec::Tensor::zeros(dynaprec::conv2d_output_shape(x.shape(), w, p),
                                   dynaprec::DType::kF32);
  for (auto _ : st) {
    dynaprec::conv2d(x, w, nullptr, p, y);
    benchmark::ClobberMemory();
  }
  st.counters["GFLOP/s"] =
      benchmark::Counter(2.0 * 64 * 56 * 56 * 64 * 9, benchmark::Counter::kIsIterationInvariantRate,
                         benchmark::Counter::kIs1000);
}

// The recognizer's output: 40 rows of softmax over 6,625 classes. Ambiguity runs on every
// portion of a looping run; entropy on canary portions.
std::vector<float> softmax_rows(int64_t rows, int64_t last) {
  std::vector<float> p(static_cast<size_t>(rows * last));
  std::mt19937 rng(5);
  std::normal_distribution<float> d(0.0f, 4.0f);
  for (int64_t r = 0; r < rows; ++r) {
    double sum = 0;
    for (int64_t j = 0; j < last; ++j)
      sum += p[static_cast<size_t>(r * last + j)] = std::exp(d(rng));
    for (int64_t j = 0; j < last; ++j)
      p[static_cast<size_t>(r * last + j)] =
          static_cast<float>(p[static_cast<size_t>(r * last + j)] / sum);
  }
  return p;
}

void BM_Ambiguity(benchmark::State& st) {
  const auto p = softmax_rows(40, 6625);
  for (auto _ : st) benchmark::DoNotOptimize(dynaprec::mean_ambiguity(p, 6625));
  st.SetBytesProcessed(static_cast<int64_t>(st.iterations() * p.size() * sizeof(float)));
}
BENCHMARK(BM_Ambiguity)->Unit(benchmark::kMicrosecond);

void BM_Entropy(benchmark::State& st) {
  const auto p = softmax_rows(40, 6625);
  for (auto _ : st) benchmark::DoNotOptimize(dynaprec::mean_entropy(p, 6625));
  st.SetBytesProcessed(static_cast<int64_t>(st.iterations() * p.size() * sizeof(float)));
}
BENCHMARK(BM_Entropy)->Unit(benchmark::kMicrosecond);

#define DYNAPREC_FORMATS(X)    \
  X(fp32, Format::kFp32)       \
  X(bf16, Format::kBf16)       \
  X(fp16, Format::kFp16)       \
  X(fp8e4m3, Format::kFp8E4M3) \
  X(fp8e5m2, Format::kFp8E5M2) X(int8, Format::kInt8) X(int4, Format::kInt4)

#define DYNAPREC_REGISTER(name, fmt)                                                            \
  BENCHMARK_CAPTURE(BM_Matmul, gemv_##name, fmt)->Args({1, 1024, 1024})->Args({1, 2048, 8192}); \
  BENCHMARK_CAPTURE(BM_Matmul, gemm_##name, fmt)->Args({256, 256, 256});                        \
  BENCHMARK_CAPTURE(BM_Conv, conv_##name, fmt)->Unit(benchmark::kMicrosecond);
DYNAPREC_FORMATS(DYNAPREC_REGISTER)

}  // namespace

BENCHMARK_MAIN();
