// Every CPU matmul kernel of the list (src/kernels/cpu/matmul_kernels.h) that this CPU can run,
// against the reference, on awkward shapes, for every format it applies to.
//
// Tolerances: the float formats use the same (exact) products as the reference and differ only
// in summation order, so |y - y_ref| <= 2·K·2^-24·Σ|x·w| per output (the classic bound for
// recursive summation, doubled for the reference's own error). int8 accumulates exactly in
// int32 and scales identically: bit-identical. int4 sums exact per-group integers in a
// different fp32 order: the same bound over Σ|acc_g · s_g|, approximated by Σ|x·w|·sx.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>

#include "dynaprec/convert.h"
#include "dynaprec/cpu_features.h"
#include "dynaprec/error.h"
#include "dynaprec/matmul.h"
#include "kernels/cpu/gemv_hwy.h"
#include "kernels/cpu/matmul_kernels.h"
#include "kernels/matmul_util.h"

namespace dynaprec {
namespace {

constexpr Format kAll[] = {Format::kFp32,    Format::kBf16, Format::kFp16, Format::kFp8E4M3,
                           Format::kFp8E5M2, Format::kInt8, Format::kInt4};

struct Shape3 {
  int64_t m, n, k;
};

void check_kernel(const cpu::MatmulKernel& kern, Format f, Shape3 s, uint32_t seed) {
  const Tensor x = test::gaussian({s.m, s.k}, seed);
  const Tensor w = test::gaussian({s.n, s.k}, seed + 1, 0.1f);
  const Tensor bias = test::gaussian({s.n}, seed + 2);
  const MatmulWeights mw = matmul_weights(w, f);
  std::vector<float> want(static_cast<size_t>(s.m * s.n)), got(want.size(), NAN);
  ref::matmul(x.data_as<float>(), s.m, mw, bias.data_as<float>(), want.data());
  cpu::MatmulProblem p;
  p.x = x.data_as<float>();
  p.m = s.m;
  p.w = &mw;
  p.bias = bias.data_as<float>();
  p.y = got.data();
  p.threads = 2;
  kern.run(p);
  const std::string what = std::string(kern.name) + " " + std::string(format_name(f)) +
                           " M=" + std::to_string(s.m) + " N=" + std::to_string(s.n) +
                           " K=" + std::to_string(s.k);
  if (f == Format::kInt8) {
    for (size_t i = 0; i < want.size(); ++i)
      ASSERT_EQ(std::bit_cast<uint32_t>(got[i]), std::bit_cast<uint32_t>(want[i]))
          << what << " at " << i << ": " << got[i] << " vs " << want[i];
    return;
  }
  // Σ|x·w| per output, from the fp32 inputs (close enough to the used values for a bound).
  size_t nonzero = 0;
  for (int64_t i = 0; i < s.m; ++i)
    for (int64_t j = 0; j < s.n; ++j) {
      double mag = 0;
      for (int64_t q = 0; q < s.k; ++q)
        mag += std::fabs(double(x.data_as<float>()[i * s.k + q]) * w.data_as<float>()[j * s.k + q]);
      const size_t at = static_cast<size_t>(i * s.n + j);
      const double tol = 2.0 * double(s.k) * std::ldexp(1.0, -24) * mag * 1.5 + 1e-30;
      ASSERT_TRUE(std::isfinite(got[at])) << what << " at " << at;
      ASSERT_LE(std::fabs(double(got[at]) - want[at]), tol)
          << what << " at " << at << ": " << got[at] << " vs " << want[at];
      nonzero += got[at] != 0.0f;
    }
  ASSERT_GT(nonzero, want.size() / 2) << what << ": mostly zeros";  // zero-trust
}

TEST(MatmulKernels, EveryAvailableKernelMatchesReference) {
  // GEMV: 8-row passes and single rows, int4 runs of 4 blocks, partial last blocks.
  const Shape3 shapes[] = {{1, 1, 1},     {1, 7, 33}, {1, 33, 1000}, {1, 64, 4096}, {1, 5, 4100},
                           {1, 37, 1500}, {2, 7, 33}, {7, 33, 64},   {3, 16, 260}};
  size_t ran = 0;
  uint32_t seed = 10;
  for (const cpu::MatmulKernel& kern : cpu::matmul_kernels()) {
    if (!kern.available(cpu_features())) continue;
    for (Format f : kAll)
      for (const Shape3& s : shapes) {
        if (!kern.applies(f, s.m, s.n, s.k)) continue;
        check_kernel(kern, f, s, seed += 3);
        if (HasFatalFailure()) return;
        ++ran;
      }
  }
  EXPECT_GT(ran, 50u);
}

// The AVX-512 fp8 GEMV widens codes by two affine byte maps (normal codes) or exact tables (a
// 64-code block with a zero or subnormal code): every finite code, in every position of a block
// and in both paths, must come out as its exact value. x is one-hot, so y[j] = x_p · W[j, p]
// with no rounding; rows 0-127 hold normal codes only (the fast path), the rest every code.
TEST(MatmulKernels, Fp8GemvWidensEveryCodeExactly) {
  if (!cpu_features().avx512_vnni || !cpu::gemv_fp8_avx512_supported())
    GTEST_SKIP() << "needs AVX-512 with GFNI and VBMI";
  for (Format f : {Format::kFp8E4M3, Format::kFp8E5M2}) {
    const uint32_t exp_mask = f == Format::kFp8E4M3 ? 0x78 : 0x7C;
    std::vector<uint8_t> finite, normal;
    for (uint32_t c = 0; c < 256; ++c) {
      if (!std::isfinite(ref::decode_float(f, c))) continue;
      finite.push_back(static_cast<uint8_t>(c));
      if (c & exp_mask) normal.push_back(static_cast<uint8_t>(c));
    }
    constexpr size_t kN = 256, kK = 200;  // 3 full blocks and a partial one
    std::vector<uint8_t> w(kN * kK);
    for (size_t j = 0; j < kN; ++j)
      for (size_t p = 0; p < kK; ++p) {
        const auto& codes = j < 128 ? normal : finite;
        w[j * kK + p] = codes[(j + 7 * p) % codes.size()];
      }
    for (size_t p : {0, 1, 2, 15, 16, 31, 47, 63, 64, 100, 127, 128, 191, 192, 199}) {
      std::vector<float> x(kK, 0.0f);
      x[p] = -1.5f;
      const cpu::Fp8Avx512Input in = cpu::gemv_fp8_prepare_avx512(x.data(), kK);
      std::vector<float> y(kN, NAN);
      cpu::gemv_fp8_rows_avx512(f, in, w.data(), kK, 0, 253, y.data());  // 8-row passes + 5 rows
      cpu::gemv_fp8_rows_avx512(f, in, w.data(), kK, 253, kN, y.data());
      for (size_t j = 0; j < kN; ++j) {
        const float want = -1.5f * ref::decode_float(f, w[j * kK + p]);
        ASSERT_EQ(y[j], want)  // a zero may come out +0 (a sum starting at +0)
            << format_name(f) << " code " << int(w[j * kK + p]) << " at " << p << " row " << j
            << ": " << y[j] << " vs " << want;
      }
    }
  }
}

TEST(MatmulKernels, DispatchPicksTheListOrderAndRefIsLast) {
  const auto list = cpu::matmul_kernels();
  ASSERT_FALSE(list.empty());
  EXPECT_EQ(list.back().name, "matmul__ref");
  for (Format f : kAll) {
    const cpu::MatmulKernel& k1 = cpu::matmul_select(f, 1, 64, 4096);
    EXPECT_NE(k1.name, "matmul__ref") << format_name(f) << ": GEMV must not fall to ref";
  }
  if (cpu_features().avx512_vnni) {
    EXPECT_EQ(cpu::matmul_select(Format::kInt4, 1, 64, 4096).name, "gemv_int__vnni");
  }
  if (cpu_features().avx512_vnni && cpu::gemv_fp8_avx512_supported()) {
    EXPECT_EQ(cpu::matmul_select(Format::kFp8E4M3, 1, 64, 4096).name, "gemv_fp8__avx512");
  }
}

TEST(MatmulKernels, PublicEntryUsesThreadsAndRefusesBadShapes) {
  const Tensor x = test::gaussian({1, 512}, 1);
  const Tensor w = test::gaussian({300, 512}, 2);
  for (Format f : kAll) {
    const MatmulWeights mw = matmul_weights(w, f);
    std::vector<float> a(300), b(300);
    matmul(x.data_as<float>(), 1, mw, nullptr, a.data(), 1);
    matmul(x.data_as<float>(), 1, mw, nullptr, b.data(), 2);
    EXPECT_EQ(0, std::memcmp(a.data(), b.data(), a.size() * 4))
        << format_name(f) << ": thread count changed the result";
  }
  EXPECT_THROW(matmul(x.data_as<float>(), -1, matmul_weights(w, Format::kFp32), nullptr, nullptr),
               Error);
}

}  // namespace
}  // namespace dynaprec
