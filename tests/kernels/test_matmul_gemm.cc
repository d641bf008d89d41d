// The GEMM kernels (oneDNN's and our AMX ones) against the reference matmul, for every kernel
// this CPU can run.
//
// Tolerances:
//  * float formats (fp32, bf16, fp8): a kernel uses the same X and W values as the reference
//    (X rounded to bf16 where the format says so, W decoded exactly) and every product is exact
//    in fp32, so only the summation order differs. Each order's result is within
//    γ_K · S ≈ K · u · S of the exact sum (u = 2^-24, S = Σ_p |x_p w_p|), so two orders differ
//    by at most K · eps32 · S (eps32 = 2u); the scale and the bias add two roundings of at
//    most eps32 · |value| each. Per output:
//        |got - ref| <= (K + 4) · eps32 · (sw · S + |bias|)
//    That worst case grows like K while real errors grow like √K, so it alone would not notice
//    an X that was not rounded to bf16 (a 2^-9 relative error per product). The SQNR of the
//    kernel against the reference does: a different summation order stays above 100 dB (124 dB
//    at worst here), while an X truncated instead of rounded to bf16 measured 52 dB. We require
//    >= 90 dB.
//  * int8: the accumulator is exact in int32 and the kernel applies float(acc) * (sx * sw[n])
//    and then + bias[n] as two separate fp32 operations, like the reference: bit-exact.
#include <gtest/gtest.h>

#include <bit>

#include <omp.h>
#include <atomic>

#include <algorithm>
#include <array>
#include <cmath>
#include <limits>
#include <oneapi/dnnl/dnnl.hpp>
#include <random>
#include <string>
#include <vector>

#include "dynaprec/convert.h"
#include "dynaprec/cpu_features.h"
#include "dynaprec/error.h"
#include "dynaprec/matmul.h"
#include "kernels/cpu/gemm_amx.h"
#include "kernels/cpu/matmul_dnnl.h"
#include "kernels/matmul_util.h"

namespace dynaprec {
namespace {

using cpu::MatmulKernel;
using cpu::MatmulProblem;

struct Shape3 {
  int64_t m, n, k;
};

// Every combination of the small sizes, 1000 in each position, and one larger GEMM.
std::vector<Shape3> test_shapes() {
  std::vector<Shape3> v;
  const int64_t small[] = {2, 7, 33, 64};
  for (int64_t m : small)
    for (int64_t n : small)
      for (int64_t k : small) v.push_back({m, n, k});
  v.insert(v.end(), {{1000, 7, 33},
                     {7, 1000, 33},
                     {33, 7, 1000},
                     {64, 1000, 1000},
                     {1000, 64, 1000},
                     {1000, 1000, 33},
                     {2, 64, 1000},
                     {256, 512, 1024},
                     {70, 40, 9000}});  // AMX: one row block per group, several K chunks
  return v;
}

Format format_of(const MatmulKernel& kern) {
  for (size_t i = 0; i < kFormatCount; ++i) {
    const auto f = static_cast<Format>(i);
    if (kern.applies(f, 64, 64, 64)) return f;
  }
  ADD_FAILURE() << kern.name << " applies to no format";
  return Format::kFp32;
}

bool is_fp8(Format f) { return f == Format::kFp8E4M3 || f == Format::kFp8E5M2; }

std::vector<float> run_kernel(const MatmulKernel& kern, const Tensor& x, int64_t m,
                              const MatmulWeights& w, const float* bias, int threads = 2) {
  std::vector<float> y(static_cast<size_t>(m * w.n), std::nanf(""));
  MatmulProblem p;
  p.x = x.data_as<float>();
  p.m = m;
  p.w = &w;
  p.bias = bias;
  p.y = y.data();
  p.threads = threads;
  kern.run(p);
  return y;
}

// Checks `got` against ref::matmul as the header comment says.
void expect_matches_ref(const Tensor& x, int64_t m, const MatmulWeights& w, const float* bias,
                        const std::vector<float>& got) {
  const int64_t n = w.n, k = w.k;
  std::vector<float> want(got.size());
  ref::matmul(x.data_as<float>(), m, w, bias, want.data());
  if (w.format == Format::kInt8) {
    int64_t bad = 0;
    for (size_t i = 0; i < got.size(); ++i)
      if (got[i] != want[i] && bad++ < 5)
        ADD_FAILURE() << "y[" << i / n << "][" << i % n << "] = " << got[i] << ", want " << want[i];
    EXPECT_EQ(bad, 0) << "of " << got.size() << " outputs differ";
    return;
  }
  // X and W as the kernel uses them, for S = Σ |x_p w_p|.
  const Format xf = is_fp8(w.format) ? Format::kBf16 : w.format;
  std::vector<float> xr(static_cast<size_t>(m * k)), wd(static_cast<size_t>(n * k));
  for (size_t i = 0; i < xr.size(); ++i)
    xr[i] = ref::decode_float(xf, ref::encode_float(xf, x.data_as<float>()[i]));
  ref::decode_float_array(w.format, w.data.data(), wd.data(), wd.size());
  const double sw = is_fp8(w.format) ? w.data.quant().scales.at(0) : 1.0;
  const double eps = std::numeric_limits<float>::epsilon();
  int64_t bad = 0;
  double worst = 0;
  for (int64_t i = 0; i < m; ++i)
    for (int64_t j = 0; j < n; ++j) {
      double s = 0;
      for (int64_t p = 0; p < k; ++p) s += std::fabs(double(xr[i * k + p]) * double(wd[j * k + p]));
      const double b = bias ? std::fabs(bias[j]) : 0.0;
      const double tol = double(k + 4) * eps * (sw * s + b);
      const size_t o = static_cast<size_t>(i * n + j);
      const double diff = std::fabs(double(got[o]) - double(want[o]));
      worst = std::max(worst, tol > 0 ? diff / tol : diff);
      if (!(diff <= tol) && bad++ < 5)
        ADD_FAILURE() << "y[" << i << "][" << j << "] = " << got[o] << ", want " << want[o] << " ± "
                      << tol;
    }
  EXPECT_EQ(bad, 0) << "of " << got.size() << " outputs outside the bound (worst " << worst
                    << " of it)";
  EXPECT_GE(test::sqnr_db(want, got, got.size()), 90.0);
}

// oneDNN's kernels, then the AMX ones.
const std::vector<MatmulKernel>& gemm_kernels() {
  static const std::vector<MatmulKernel> v = [] {
    std::vector<MatmulKernel> all;
    for (const MatmulKernel& k : cpu::dnnl_matmul_kernels()) all.push_back(k);
    for (const MatmulKernel& k : cpu::amx_matmul_kernels()) all.push_back(k);
    return all;
  }();
  return v;
}

class GemmKernel : public ::testing::TestWithParam<size_t> {
 protected:
  const MatmulKernel& kern() const { return gemm_kernels()[GetParam()]; }
  void SetUp() override {
    if (!kern().available(cpu_features()))
      GTEST_SKIP() << kern().name
                   << " is not available on this CPU (DYNAPREC_ISA=" << cpu_features().isa_cap
                   << ")";
  }
};

TEST_P(GemmKernel, MatchesReferenceOnAllShapes) {
  const Format f = format_of(kern());
  uint32_t seed = 100;
  for (const Shape3& s : test_shapes()) {
    SCOPED_TRACE(testing::Message() << kern().name << " M=" << s.m << " N=" << s.n << " K=" << s.k);
    const Tensor x = test::gaussian({s.m, s.k}, seed++);
    const MatmulWeights w = matmul_weights(test::gaussian({s.n, s.k}, seed++, 0.05f), f);
    const Tensor bias = test::gaussian({s.n}, seed++);
    ASSERT_TRUE(kern().applies(f, s.m, s.n, s.k));
    // With and without bias on the same weights: the second call reuses the prepared form.
    expect_matches_ref(x, s.m, w, nullptr, run_kernel(kern(), x, s.m, w, nullptr));
    expect_matches_ref(x, s.m, w, bias.data_as<float>(),
                       run_kernel(kern(), x, s.m, w, bias.data_as<float>()));
    if (HasFailure()) return;
  }
}

TEST_P(GemmKernel, PreparesWeightsOnceAcrossBatchSizesAndThreads) {
  const Format f = format_of(kern());
  const MatmulWeights w = matmul_weights(test::gaussian({96, 200}, 7, 0.05f), f);
  const Tensor bias = test::gaussian({96}, 8);
  const void* prepared = nullptr;
  uint32_t seed = 9;
  for (int64_t m : {2, 5, 64, 300, 3})
    for (int threads : {1, 2}) {
      SCOPED_TRACE(testing::Message() << "M=" << m << " threads=" << threads);
      const Tensor x = test::gaussian({m, 200}, seed++);
      const int before = omp_get_max_threads();
      const std::vector<float> y = run_kernel(kern(), x, m, w, bias.data_as<float>(), threads);
      EXPECT_EQ(omp_get_max_threads(), before) << "the caller's OpenMP thread count changed";
      expect_matches_ref(x, m, w, bias.data_as<float>(), y);
      EXPECT_EQ(w.prepared_by, kern().name);
      ASSERT_NE(w.prepared, nullptr);
      if (!prepared) prepared = w.prepared.get();
      EXPECT_EQ(w.prepared.get(), prepared) << "weights were prepared again";
    }
}

TEST_P(GemmKernel, AppliesToGemmOfItsFormatOnly) {
  const Format f = format_of(kern());
  EXPECT_FALSE(kern().applies(f, 1, 64, 64)) << "M == 1 is GEMV, for other kernels";
  EXPECT_TRUE(kern().applies(f, 2, 1, 1));
  for (size_t i = 0; i < kFormatCount; ++i)
    if (static_cast<Format>(i) != f) {
      EXPECT_FALSE(kern().applies(static_cast<Format>(i), 8, 8, 8));
    }
}

// int8 quantizes X without a division per element where it can prove the code equal to
// rne(fl(x / s)) (matmul_dnnl.cc), and divides elsewhere. Odd rows: values at and a few ulps
// around every half-integer multiple of a scale that is not a power of two (the divided vectors:
// ties must go to even); even rows: values 2^-11 to 2^-9 of a step from such a point (the
// multiplied vectors, near the margin that decides). All codes must be the reference's.
TEST_P(GemmKernel, Int8CodesNearTiesMatchTheReference) {
  const Format f = format_of(kern());
  if (f != Format::kInt8) GTEST_SKIP() << "int8 only";
  const int64_t m = 40, n = 16, k = 1024;
  Tensor x = Tensor::zeros({m, k}, DType::kF32);
  float* xv = x.data_as<float>();
  const float amax = 100.0f, s = ref::int8_scale(amax);
  std::mt19937 rng(5);
  for (int64_t i = 0; i < m * k; ++i) {
    const float half = static_cast<float>(static_cast<int>(rng() % 253) - 126) + 0.5f;
    float v;
    if ((i / k) % 2 == 1) {
      v = half * s;
      for (int step = static_cast<int>(rng() % 9) - 4; step != 0; step += step > 0 ? -1 : 1)
        v = std::nextafter(v, step > 0 ? INFINITY : -INFINITY);
    } else {
      const float off = std::ldexp(1.0f + static_cast<float>(rng() % 4) / 4, -11 + int(rng() % 2));
      v = (half + (rng() % 2 ? off : -off)) * s;
    }
    xv[i] = std::clamp(v, -amax, amax);
  }
  xv[0] = amax;
  const MatmulWeights w = matmul_weights(test::gaussian({n, k}, 3, 0.05f), f);
  expect_matches_ref(x, m, w, nullptr, run_kernel(kern(), x, m, w, nullptr));
}

// Every code at ±127: s8 · s8 on x86 runs as u8 (x + 128) · s8, and without VNNI a pair of such
// products (up to 2 · 255 · 127) overflows vpmaddubsw's int16 and saturates. Gaussian data
// rarely gets there; this does, on every output.
TEST_P(GemmKernel, ExtremeCodesAreExact) {
  const Format f = format_of(kern());
  const int64_t m = 33, n = 64, k = 1000;
  Tensor x = Tensor::zeros({m, k}, DType::kF32), w = Tensor::zeros({n, k}, DType::kF32);
  for (int64_t i = 0; i < m * k; ++i) x.data_as<float>()[i] = (i % 3 == 0) ? -1.0f : 1.0f;
  for (int64_t i = 0; i < n * k; ++i) w.data_as<float>()[i] = (i % 5 < 2) ? -0.5f : 0.5f;
  const MatmulWeights mw = matmul_weights(w, f);
  expect_matches_ref(x, m, mw, nullptr, run_kernel(kern(), x, m, mw, nullptr));
}

// A NaN in X: int8 refuses it (no scale exists), the float formats carry it into its row only.
TEST_P(GemmKernel, NonFiniteActivationsLikeTheReference) {
  const Format f = format_of(kern());
  const MatmulWeights w = matmul_weights(test::gaussian({8, 16}, 10), f);
  Tensor x = test::gaussian({4, 16}, 11);
  x.data_as<float>()[37] = std::nanf("");  // row 2
  if (f == Format::kInt8) {
    try {
      run_kernel(kern(), x, 4, w, nullptr);
      ADD_FAILURE() << "no error";
    } catch (const Error& e) {
      EXPECT_EQ(e.kind(), ErrorKind::kInvalidInput) << e.what();
    }
    return;
  }
  const std::vector<float> y = run_kernel(kern(), x, 4, w, nullptr);
  for (size_t i = 0; i < y.size(); ++i) EXPECT_EQ(std::isnan(y[i]), i / 8 == 2) << "y[" << i << "]";
}

INSTANTIATE_TEST_SUITE_P(Gemm, GemmKernel, ::testing::Range<size_t>(0, gemm_kernels().size()),
                         [](const testing::TestParamInfo<size_t>& i) {
                           return std::string(gemm_kernels()[i.param].name);
                         });

TEST(MatmulDnnlList, NamesAndOrder) {
  std::vector<std::string> names;
  for (const MatmulKernel& k : cpu::dnnl_matmul_kernels()) names.emplace_back(k.name);
  EXPECT_EQ(names, (std::vector<std::string>{"gemm_fp32__dnnl", "gemm_bf16__dnnl",
                                             "gemm_int8__dnnl", "gemm_fp8e4m3__dnnl",
                                             "gemm_fp8e5m2__dnnl", "gemm_fp16__dnnl"}));
}

// Under DYNAPREC_ISA below avx512 the kernels must not use what the cap removes: bf16/fp8 are
// unavailable, and oneDNN itself is capped (no AVX-512, no AMX) for fp32 and int8.
TEST(MatmulDnnlIsaCap, KernelsAndOneDnnStayUnderTheCap) {
  const CpuFeatures& f = cpu_features();
  const auto kernels = cpu::dnnl_matmul_kernels();
  if (f.isa_cap == "native" || f.isa_cap == "avx512")
    GTEST_SKIP() << "run with DYNAPREC_ISA=avx2 (or sse4, scalar) to test the cap";
  for (const MatmulKernel& k : kernels) {
    const Format fmt = format_of(k);
    if (fmt == Format::kBf16 || is_fp8(fmt)) {
      EXPECT_FALSE(k.available(f)) << k.name;
    } else if (fmt == Format::kFp32 || fmt == Format::kFp16) {  // fp16 runs as f32 (widened)
      EXPECT_EQ(k.available(f), f.avx2) << k.name;
    } else {
      EXPECT_EQ(k.available(f), f.avx_vnni) << k.name;  // int8: VNNI or nothing
    }
  }
  for (const MatmulKernel& k : cpu::amx_matmul_kernels()) EXPECT_FALSE(k.available(f)) << k.name;
  const auto isa = static_cast<unsigned>(dnnl::get_effective_cpu_isa());
  const auto cap =
      static_cast<unsigned>(f.avx_vnni ? dnnl::cpu_isa::avx2_vnni : dnnl::cpu_isa::avx2);
  EXPECT_EQ(isa & ~cap, 0u) << "oneDNN's effective ISA is above DYNAPREC_ISA";
}

}  // namespace
}  // namespace dynaprec

namespace dynaprec {
namespace {

// quantize_int8_nhwc (oneDNN's int8 convolution input, quantized straight into NHWC): the
// reference's codes, transposed, on awkward channel and pixel counts, with values at and next
// to the rounding ties.
TEST(QuantizeNhwc, CodesAreTheReferencesTransposed) {
  const CpuFeatures& cf = cpu_features();
  if (!(cf.avx512f && cf.avx512bw && cf.avx512dq && cf.avx512vl)) GTEST_SKIP() << "AVX-512 only";
  std::mt19937 rng(11);
  for (const auto [n, c, hw] : {std::array<int64_t, 3>{1, 64, 25600},
                                {2, 5, 37},
                                {1, 33, 17},
                                {1, 16, 16},
                                {3, 1, 1},
                                {1, 130, 300}}) {
    const auto count = static_cast<size_t>(n * c * hw);
    std::vector<float> x(count);
    const float amax = 10.0f, s = ref::int8_scale(amax);
    for (size_t i = 0; i < count; ++i) {
      const float half = static_cast<float>(static_cast<int>(rng() % 253) - 126) + 0.5f;
      float v = half * s;
      for (int step = static_cast<int>(rng() % 5) - 2; step != 0; step += step > 0 ? -1 : 1)
        v = std::nextafter(v, step > 0 ? INFINITY : -INFINITY);
      x[i] = i % 3 == 0 ? std::clamp(v, -amax, amax)
                        : std::uniform_real_distribution<float>(-amax, amax)(rng);
    }
    x[0] = amax;
    std::vector<int8_t> got(count, 99);
    ASSERT_TRUE(cpu::quantize_int8_nhwc(x.data(), n, c, hw, s, got.data(), 2));
    for (int64_t i = 0; i < n; ++i)
      for (int64_t ch = 0; ch < c; ++ch)
        for (int64_t p = 0; p < hw; ++p)
          ASSERT_EQ(got[static_cast<size_t>((i * hw + p) * c + ch)],
                    ref::int8_encode(x[static_cast<size_t>((i * c + ch) * hw + p)], s))
              << "n" << n << " c" << c << " hw" << hw << " at " << i << "," << ch << "," << p;
  }
  // A scale too small for the reciprocal: refused, nothing written.
  std::vector<float> tiny(16, 1e-40f);
  std::vector<int8_t> out(16, 7);
  EXPECT_FALSE(cpu::quantize_int8_nhwc(tiny.data(), 1, 1, 16, 0x1p-130f, out.data(), 1));
  EXPECT_EQ(out[0], 7);
}

// nhwc_to_nchw_f32 (oneDNN's NHWC convolution result back to NCHW): every value moved bit for
// bit, channel counts of 16 and 48, pixel counts with partial 16-pixel blocks and tasks, one and
// two images and threads; max |y| on the way (the largest value in each position of a 16 x 16
// block in turn, NaN above inf, -0); C not a multiple of 16 refused, nothing written.
TEST(QuantizeNhwc, NchwFromNhwcMovesEveryValueAndTakesMaxAbs) {
  const CpuFeatures& cf = cpu_features();
  if (!(cf.avx512f && cf.avx512bw && cf.avx512dq && cf.avx512vl)) GTEST_SKIP() << "AVX-512 only";
  std::mt19937 rng(12);
  for (const auto [n, c, hw] : {std::array<int64_t, 3>{1, 16, 16},
                                {1, 16, 1},
                                {2, 16, 37},
                                {1, 48, 300},
                                {1, 16, 102400 / 16 + 5}})
    for (int threads : {1, 2})
      for (int64_t big = 0; big < 40; big += 7) {
        const auto count = static_cast<size_t>(n * c * hw);
        std::vector<float> x(count);
        for (float& v : x) v = std::uniform_real_distribution<float>(-1.0f, 1.0f)(rng);
        x[static_cast<size_t>(big * 13) % count] = -5.5f;
        std::vector<float> y(count, 99.0f);
        std::atomic<uint32_t> bits{0};
        ASSERT_TRUE(cpu::nhwc_to_nchw_f32(x.data(), n, c, hw, y.data(), threads, &bits));
        for (int64_t i = 0; i < n; ++i)
          for (int64_t ch = 0; ch < c; ++ch)
            for (int64_t p = 0; p < hw; ++p)
              ASSERT_EQ(std::bit_cast<uint32_t>(y[static_cast<size_t>((i * c + ch) * hw + p)]),
                        std::bit_cast<uint32_t>(x[static_cast<size_t>((i * hw + p) * c + ch)]))
                  << "n" << n << " c" << c << " hw" << hw << " at " << i << "," << ch << "," << p;
        EXPECT_EQ(std::bit_cast<float>(bits.load()), 5.5f) << "c" << c << " hw" << hw;
      }
  std::vector<float> x(64, -0.0f), y(64, 1.0f);
  std::atomic<uint32_t> bits{0};
  ASSERT_TRUE(cpu::nhwc_to_nchw_f32(x.data(), 1, 16, 4, y.data(), 1, &bits));
  EXPECT_EQ(bits.load(), 0u);
  EXPECT_TRUE(std::signbit(y[5]));
  x[17] = std::numeric_limits<float>::infinity();
  x[40] = std::numeric_limits<float>::quiet_NaN();
  ASSERT_TRUE(cpu::nhwc_to_nchw_f32(x.data(), 1, 16, 4, y.data(), 1, &bits));
  EXPECT_TRUE(std::isnan(std::bit_cast<float>(bits.load())));
  std::vector<float> z(12 * 5, 3.0f);
  EXPECT_FALSE(cpu::nhwc_to_nchw_f32(x.data(), 1, 12, 5, z.data(), 1, nullptr));
  EXPECT_EQ(z[0], 3.0f);
}

}  // namespace
}  // namespace dynaprec
