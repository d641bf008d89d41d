// Google Benchmark micro-benchmarks of the conversion kernels (in-cache sizes).
#include <benchmark/benchmark.h>

#include <random>
#include <vector>

#include "dynaprec/convert.h"

namespace {

std::vector<float> gaussian(size_t n) {
  std::mt19937 rng(1);
  std::normal_distribution<float> d;
  std::vector<float> v(n);
  for (auto& x : v) x = d(rng);
  return v;
}

void BM_Encode(benchmark::State& st, dynaprec::Format f) {
  const size_t n = static_cast<size_t>(st.range(0));
  auto x = gaussian(n);
  std::vector<uint32_t> out(n);
  for (auto _ : st) {
    dynaprec::encode_float_array(f, x.data(), out.data(), n);
    benchmark::ClobberMemory();
  }
  st.SetBytesProcessed(int64_t(st.iterations()) * int64_t(n) * 4);
}

void BM_Int8(benchmark::State& st) {
  const size_t n = static_cast<size_t>(st.range(0));
  auto x = gaussian(n);
  std::vector<int8_t> out(n);
  for (auto _ : st) {
    dynaprec::int8_encode_array(x.data(), out.data(), n,
                                dynaprec::ref::int8_scale(dynaprec::amax(x.data(), n)));
    benchmark::ClobberMemory();
  }
  st.SetBytesProcessed(int64_t(st.iterations()) * int64_t(n) * 4);
}

void BM_Int4(benchmark::State& st) {
  const size_t n = static_cast<size_t>(st.range(0));
  auto x = gaussian(n);
  std::vector<uint8_t> out(n / 2);
  std::vector<uint16_t> s(n / 32);
  for (auto _ : st) {
    dynaprec::int4_encode_rows(x.data(), 1, n, out.data(), s.data());
    benchmark::ClobberMemory();
  }
  st.SetBytesProcessed(int64_t(st.iterations()) * int64_t(n) * 4);
}

}  // namespace

BENCHMARK_CAPTURE(BM_Encode, bf16, dynaprec::Format::kBf16)->Arg(1 << 16);
BENCHMARK_CAPTURE(BM_Encode, fp16, dynaprec::Format::kFp16)->Arg(1 << 16);
BENCHMARK_CAPTURE(BM_Encode, fp8e4m3, dynaprec::Format::kFp8E4M3)->Arg(1 << 16);
BENCHMARK_CAPTURE(BM_Encode, fp8e5m2, dynaprec::Format::kFp8E5M2)->Arg(1 << 16);
BENCHMARK(BM_Int8)->Arg(1 << 16);
BENCHMARK(BM_Int4)->Arg(1 << 16);
BENCHMARK_MAIN();
