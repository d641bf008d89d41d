// The reference matmul against an fp64 computation: each format's SQNR must be what the format
// allows — not more (a quantization that did not happen is a bug) and not less.
//
// Expected SQNR on Gaussian X and W (derivation):
//  * float formats: RNE to M mantissa bits leaves an error uniform in ±ulp/2, variance ulp²/12
//    with ulp = 2^(e-M) in the binade [2^e, 2^(e+1)). Relative to x² = m²·4^e, averaged over the
//    mantissa m of Gaussian data (close to log-uniform on [1, 2): E[1/m²] = 3/(8 ln 2) = 0.541),
//    the noise is 4^-M · 0.541/12, so SQNR = 6.02 M + 13.46 dB for one rounded operand, 3 dB
//    less for two (X and W). A matmul sums independent errors, so the output keeps it:
//    fp16 (M=10, both) 70.6, bf16 (M=7, both) 52.6, fp8e4m3 (M=3, W only; X in bf16) 31.5,
//    fp8e5m2 (M=2) 25.5 dB.
//  * int8: step = amax/127 with amax ≈ 3.9σ over a row of 4096 (W) and ≈ 4.3σ over X; noise
//    step²/12 each: ≈ 41 + 40 dB → 38 dB together.
//  * int4 groups of 32: the largest |w| of 32 Gaussians ≈ 2.4σ, step = amax/7 → noise
//    step²/12 ≈ 0.0098σ² → 20.2 dB (X's int8 noise is negligible beside it).
//  * fp32: only summation order: > 100 dB.
// Each format must land within ±3 dB of its prediction.
#include <gtest/gtest.h>

#include "dynaprec/matmul.h"
#include "kernels/matmul_util.h"

namespace dynaprec {
namespace {

struct Expect {
  Format f;
  double lo, hi;
};

constexpr double float_prediction(int mantissa_bits, bool both_operands) {
  return 6.02 * mantissa_bits + 13.46 - (both_operands ? 3.01 : 0.0);
}
constexpr Expect around(Format f, double predicted) { return {f, predicted - 3, predicted + 3}; }

constexpr Expect kExpected[] = {
    {Format::kFp32, 100, 1e9},
    around(Format::kFp16, float_prediction(10, true)),
    around(Format::kBf16, float_prediction(7, true)),
    around(Format::kFp8E4M3, float_prediction(3, false)),
    around(Format::kFp8E5M2, float_prediction(2, false)),
    around(Format::kInt8, 38.0),
    around(Format::kInt4, 20.2),
};

TEST(MatmulRef, SqnrMatchesWhatEachFormatAllows) {
  const int64_t m = 4, n = 64, k = 4096;
  const Tensor x = test::gaussian({m, k}, 1);
  const Tensor w = test::gaussian({n, k}, 2, 0.05f);
  const auto ideal = test::matmul_fp64(x.data_as<float>(), w.data_as<float>(), m, n, k);
  for (const Expect& e : kExpected) {
    const MatmulWeights mw = matmul_weights(w, e.f);
    std::vector<float> y(static_cast<size_t>(m * n));
    ref::matmul(x.data_as<float>(), m, mw, nullptr, y.data());
    const double db = test::sqnr_db(ideal, y, y.size());
    EXPECT_GE(db, e.lo) << format_name(e.f);
    EXPECT_LE(db, e.hi) << format_name(e.f)
                        << ": better than the format allows — was it "
                           "really quantized?";
    RecordProperty(std::string("sqnr_db_") + std::string(format_name(e.f)), std::to_string(db));
  }
}

TEST(MatmulRef, WeightsAreStoredInTheirFormat) {
  const Tensor w = test::gaussian({8, 70}, 3);
  EXPECT_EQ(matmul_weights(w, Format::kInt4).bytes(), 8u * 35u + 8u * 3u * 2u);
  EXPECT_EQ(matmul_weights(w, Format::kInt8).bytes(), 8u * 70u + 8u * 4u);
  EXPECT_EQ(matmul_weights(w, Format::kFp8E4M3).bytes(), 8u * 70u + 4u);
  EXPECT_EQ(matmul_weights(w, Format::kBf16).bytes(), 8u * 70u * 2u);
  EXPECT_EQ(matmul_weights(w, Format::kFp32).bytes(), 8u * 70u * 4u);
}

TEST(MatmulRef, BiasAndTinyShapes) {
  const Tensor x = test::gaussian({1, 1}, 4);
  const Tensor w = test::gaussian({1, 1}, 5);
  const float bias = 0.25f;
  float y = 0;
  ref::matmul(x.data_as<float>(), 1, matmul_weights(w, Format::kFp32), &bias, &y);
  EXPECT_EQ(y, x.data_as<float>()[0] * w.data_as<float>()[0] + 0.25f);
}

}  // namespace
}  // namespace dynaprec
