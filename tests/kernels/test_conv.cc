// conv2d: the reference against fp64 (SQNR per format) and against ref::matmul, the CPU conv2d
// against the reference on awkward geometry, and the refusal of bad geometry.
//
// Expected SQNR on Gaussian X and W (derivations as in test_matmul_ref.cc): a convolution
// output is a sum of products just like a matmul output, with zero taps at the border adding
// neither signal nor noise, so the float predictions carry over unchanged: fp16 70.6,
// bf16 52.6, fp8e4m3 31.5, fp8e5m2 25.5 dB, fp32 > 100 dB.
// The int formats depend on the amaxes, so the test derives their predictions from the actual
// data: noise (amax/127)² / 12 (int8) or (amax/7)² / 12 (int4) per element, relative to the
// operand's mean square, X's and W's noise adding up. As a sanity check on the data:
//  * int8: X's one scale covers the whole input (64·20·20 = 25600 values, amax ≈ 4.2σ →
//    40.6 dB), each W row has K = 576 values (amax ≈ 3.2σ → 42.8 dB): ≈ 38 dB together.
//  * int4: the amax of |w| over a group of 32 is ≈ 2.4σ (the expected maximum of 32 |Gaussians|,
//    not the 2.04σ of 32 signed ones that test_matmul_ref.cc's 21.5 dB assumes): ≈ 20.2 dB.
//
// Every CPU implementation (cpu::conv2d_with: auto, oneDNN, im2col, direct) is checked against
// the reference, with tolerances as in test_matmul_kernels.cc: the float formats use the
// reference's products and differ only in summation order: |y - y_ref| <= 2·K·2^-24·Σ|x·w|
// per output (Σ|x·w| in fp64 from the fp32 inputs, times 1.5 for the rounding of the used
// values); an activation multiplies a difference by at most 1.5 (hardswish's slope at 3) and
// adds its own rounding, a few ulps of the result. int8 is exact in int32 and scaled the same
// way: bit-identical, activation included. int4 sums exact per-group integers in another fp32
// order: the same bound. direct does the reference's arithmetic in its order: bit-identical
// in every format.
#include <gtest/gtest.h>

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstring>
#include <functional>
#include <iterator>
#include <random>
#include <string>
#include <tuple>
#include <vector>

#include "dynaprec/conv.h"
#include "dynaprec/convert.h"
#include "dynaprec/cpu_features.h"
#include "dynaprec/error.h"
#include "dynaprec/matmul.h"
#include "kernels/cpu/dwconv_vnni.h"
#include "kernels/cpu/pwconv_vnni.h"
#include "kernels/matmul_util.h"

namespace dynaprec {
namespace {

constexpr Format kAll[] = {Format::kFp32,    Format::kBf16, Format::kFp16, Format::kFp8E4M3,
                           Format::kFp8E5M2, Format::kInt8, Format::kInt4};
constexpr cpu::ConvImpl kImpls[] = {cpu::ConvImpl::kAuto,      cpu::ConvImpl::kOneDnn,
                                    cpu::ConvImpl::kIm2col,    cpu::ConvImpl::kDirect,
                                    cpu::ConvImpl::kDepthwise, cpu::ConvImpl::kPointwise};
constexpr size_t kImplCount = std::size(kImpls);
const char* impl_name(cpu::ConvImpl i) {
  constexpr const char* kNames[] = {"auto", "onednn", "im2col", "direct", "depthwise", "pointwise"};
  return kNames[static_cast<int>(i)];
}

// Direct convolution in double from the fp32 inputs (w: [OC, C/groups, KH, KW]); with
// `absolute`, of |x| and |w| (Σ|x·w| per output, for tolerances). No bias, no activation.
std::vector<double> conv_fp64(const Tensor& x, const Tensor& w, const Conv2dParams& p,
                              const Shape& ys, bool absolute = false) {
  const int64_t c = x.dim(1), h = x.dim(2), wd = x.dim(3);
  const int64_t icg = w.dim(1), kh = w.dim(2), kw = w.dim(3), ocg = ys[1] / p.groups;
  std::vector<double> y(static_cast<size_t>(shape_numel(ys)), 0.0);
  auto val = [&](float v) { return absolute ? std::fabs(double(v)) : double(v); };
  size_t at = 0;
  for (int64_t n = 0; n < ys[0]; ++n)
    for (int64_t oc = 0; oc < ys[1]; ++oc)
      for (int64_t oh = 0; oh < ys[2]; ++oh)
        for (int64_t ow = 0; ow < ys[3]; ++ow, ++at)
          for (int64_t i = 0; i < icg; ++i)
            for (int64_t a = 0; a < kh; ++a)
              for (int64_t b = 0; b < kw; ++b) {
                const int64_t ih = oh * p.stride_h - p.pad_top + a * p.dilation_h;
                const int64_t iw = ow * p.stride_w - p.pad_left + b * p.dilation_w;
                if (ih < 0 || ih >= h || iw < 0 || iw >= wd) continue;
                const int64_t ic = (oc / ocg) * icg + i;
                y[at] += val(x.data_as<float>()[((n * c + ic) * h + ih) * wd + iw]) *
                         val(w.data_as<float>()[((oc * icg + i) * kh + a) * kw + b]);
              }
  return y;
}

double mean_square(const float* v, size_t n) {
  double s = 0;
  for (size_t i = 0; i < n; ++i) s += double(v[i]) * v[i];
  return s / double(n);
}

// Noise-to-signal of symmetric int quantization with step amax/qmax (uniform error, step²/12)
// for an operand of mean square ms.
double int_nsr(double amax, double qmax, double ms) {
  return (amax / qmax) * (amax / qmax) / 12 / ms;
}

TEST(ConvRef, SqnrMatchesWhatEachFormatAllows) {
  Conv2dParams p;
  p.pad_top = p.pad_left = p.pad_bottom = p.pad_right = 1;
  const Tensor x = test::gaussian({1, 64, 20, 20}, 1);
  const Tensor w = test::gaussian({32, 64, 3, 3}, 2, 0.05f);
  const Shape ys = {1, 32, 20, 20};
  const std::vector<double> ideal = conv_fp64(x, w, p, ys);

  // The int predictions from the actual amaxes: X's over all of X, W's per output channel
  // (int8) or per group of 32 along K (int4).
  const int64_t k = 64 * 9;
  const float* xs = x.data_as<float>();
  const float* ws = w.data_as<float>();
  double x_amax = 0, w8_nsr = 0, w4_nsr = 0;
  for (int64_t i = 0; i < x.numel(); ++i) x_amax = std::max(x_amax, std::fabs(double(xs[i])));
  const double x_nsr = int_nsr(x_amax, 127, mean_square(xs, static_cast<size_t>(x.numel())));
  const double w_ms = mean_square(ws, static_cast<size_t>(w.numel()));
  for (int64_t r = 0; r < 32; ++r) {
    double row_amax = 0;
    for (int64_t g0 = 0; g0 < k; g0 += 32) {
      double a = 0;
      for (int64_t q = g0; q < g0 + 32; ++q) a = std::max(a, std::fabs(double(ws[r * k + q])));
      w4_nsr += int_nsr(a, 7, w_ms) / (32.0 * (k / 32));  // mean over all groups
      row_amax = std::max(row_amax, a);
    }
    w8_nsr += int_nsr(row_amax, 127, w_ms) / 32;
  }
  const double int8_predicted = -10 * std::log10(x_nsr + w8_nsr);
  const double int4_predicted = -10 * std::log10(x_nsr + w4_nsr);
  EXPECT_NEAR(int8_predicted, 38.3, 1.0) << "the data's amaxes are not what the header says";
  EXPECT_NEAR(int4_predicted, 20.2, 1.0) << "the data's amaxes are not what the header says";
  RecordProperty("predicted_db_int8", std::to_string(int8_predicted));
  RecordProperty("predicted_db_int4", std::to_string(int4_predicted));

  const struct {
    Format f;
    double predicted;
  } expected[] = {
      {Format::kFp32, 200},  // only summation order: checked as > 100 below
      {Format::kFp16, 6.02 * 10 + 13.46 - 3.01},
      {Format::kBf16, 6.02 * 7 + 13.46 - 3.01},
      {Format::kFp8E4M3, 6.02 * 3 + 13.46},
      {Format::kFp8E5M2, 6.02 * 2 + 13.46},
      {Format::kInt8, int8_predicted},
      {Format::kInt4, int4_predicted},
  };
  for (const auto& e : expected) {
    const ConvWeights cw = conv_weights(w, e.f);
    Tensor y = Tensor::zeros(ys, DType::kF32);
    ref::conv2d(x, cw, nullptr, p, y);
    const double db = test::sqnr_db(ideal, y.data_as<float>(), ideal.size());
    RecordProperty("sqnr_db_" + std::string(format_name(e.f)), std::to_string(db));
    if (e.f == Format::kFp32) {
      EXPECT_GT(db, 100) << "fp32";
      continue;
    }
    EXPECT_NEAR(db, e.predicted, 3.0) << format_name(e.f) << " (below: lost precision; above: "
                                      << "was it really quantized?)";
  }
}

// With a 3×3 kernel, pad 1, stride 1 every input element lands in some patch, so X's amax is
// the patch matrix's: the reference conv must then be ref::matmul on the patches bit for bit,
// for every format (same products, same K order, same int scales).
TEST(ConvRef, EqualsMatmulRefOnPatches) {
  const int64_t c = 5, h = 6, wd = 7, oc = 9, k = c * 9, pix = h * wd;
  Conv2dParams p;
  p.pad_top = p.pad_left = p.pad_bottom = p.pad_right = 1;
  const Tensor x = test::gaussian({1, c, h, wd}, 3);
  const Tensor w = test::gaussian({oc, c, 3, 3}, 4, 0.2f);
  const Tensor bias = test::gaussian({oc}, 5);
  std::vector<float> patches(static_cast<size_t>(pix * k), 0.0f);
  for (int64_t r = 0; r < pix; ++r)
    for (int64_t q = 0; q < k; ++q) {
      const int64_t ih = r / wd - 1 + (q % 9) / 3, iw = r % wd - 1 + q % 3;
      if (ih >= 0 && ih < h && iw >= 0 && iw < wd)
        patches[static_cast<size_t>(r * k + q)] = x.data_as<float>()[(q / 9 * h + ih) * wd + iw];
    }
  for (Format f : kAll) {
    const ConvWeights cw = conv_weights(w, f);
    std::vector<float> want(static_cast<size_t>(pix * oc));
    ref::matmul(patches.data(), pix, cw.matrix, bias.data_as<float>(), want.data());
    Tensor y = Tensor::zeros({1, oc, h, wd}, DType::kF32);
    ref::conv2d(x, cw, bias.data_as<float>(), p, y);
    for (int64_t j = 0; j < oc; ++j)
      for (int64_t r = 0; r < pix; ++r)
        ASSERT_EQ(std::bit_cast<uint32_t>(y.data_as<float>()[j * pix + r]),
                  std::bit_cast<uint32_t>(want[static_cast<size_t>(r * oc + j)]))
            << format_name(f) << " oc " << j << " pixel " << r;
  }
}

// The int scale is over all of X, even where no patch reads the largest value: X = [0.5, 100],
// a 1×1 kernel of stride 2 reads only 0.5. sx = 100/127, 0.5 → code 1, w = 1 → code 127 with
// scale 1/127: y = 127 · (sx · 1/127) = 100/127, not the 0.5 a patch-wise scale would give.
TEST(ConvInt, ActivationScaleIsOverAllOfX) {
  Tensor x = Tensor::zeros({1, 1, 1, 2}, DType::kF32);
  x.data_as<float>()[0] = 0.5f;
  x.data_as<float>()[1] = 100.0f;
  Tensor w = Tensor::zeros({1, 1, 1, 1}, DType::kF32);
  w.data_as<float>()[0] = 1.0f;
  Conv2dParams p;
  p.stride_w = 2;
  for (Format f : {Format::kInt8, Format::kInt4}) {
    const ConvWeights cw = conv_weights(w, f);
    ASSERT_EQ(conv2d_output_shape(x.shape(), cw, p), (Shape{1, 1, 1, 1}));
    Tensor a = Tensor::zeros({1, 1, 1, 1}, DType::kF32), b = a.clone();
    ref::conv2d(x, cw, nullptr, p, a);
    EXPECT_NEAR(a.data_as<float>()[0], 100.0f / 127.0f, 1e-3f) << format_name(f);
    for (cpu::ConvImpl impl : kImpls) {
      b.data_as<float>()[0] = NAN;
      if (!cpu::conv2d_with(impl, x, cw, nullptr, p, b)) continue;
      EXPECT_EQ(a.data_as<float>()[0], b.data_as<float>()[0])
          << format_name(f) << " " << impl_name(impl);
    }
  }
}

// --- the CPU conv2d against the reference -------------------------------------------------------

struct Case {
  const char* name;
  int64_t n, c, h, w, oc, kh, kw;
  Conv2dParams p;
  bool bias;
};

Conv2dParams params(int64_t stride_h, int64_t stride_w, int64_t top, int64_t left, int64_t bottom,
                    int64_t right, int64_t dil_h = 1, int64_t dil_w = 1, int64_t groups = 1,
                    Activation act = Activation::kNone) {
  Conv2dParams p;
  p.stride_h = stride_h;
  p.stride_w = stride_w;
  p.pad_top = top;
  p.pad_left = left;
  p.pad_bottom = bottom;
  p.pad_right = right;
  p.dilation_h = dil_h;
  p.dilation_w = dil_w;
  p.groups = groups;
  p.activation = act;
  p.clip_min = -0.5f;
  p.clip_max = 0.75f;
  return p;
}

const Case kCases[] = {
    {"groups2_3x3", 1, 6, 9, 7, 4, 3, 3, params(1, 1, 1, 1, 1, 1, 1, 1, 2), true},
    {"depthwise_s2", 1, 8, 11, 11, 8, 3, 3, params(2, 2, 1, 1, 1, 1, 1, 1, 8, Activation::kRelu),
     true},
    {"asym_pad", 1, 5, 8, 10, 7, 3, 3, params(1, 1, 0, 1, 2, 0, 1, 1, 1, Activation::kClip), false},
    {"dilation2", 1, 3, 12, 12, 6, 3, 3, params(1, 1, 2, 2, 2, 2, 2, 2, 1, Activation::kSigmoid),
     true},
    {"1x1_batch2", 2, 40, 7, 5, 24, 1, 1, params(1, 1, 0, 0, 0, 0, 1, 1, 1, Activation::kHardSwish),
     false},
    {"5x5", 1, 12, 9, 9, 10, 5, 5, params(1, 1, 2, 2, 2, 2), true},
    {"7x7_s2", 1, 3, 23, 23, 16, 7, 7, params(2, 2, 3, 3, 3, 3, 1, 1, 1, Activation::kRelu), true},
    {"batch2_h_ne_w_c33", 2, 33, 9, 6, 17, 3, 3, params(2, 1, 1, 1, 1, 1), true},
    {"1x1_stride3", 1, 4, 10, 10, 5, 1, 1, params(3, 3, 0, 0, 0, 0), false},
    {"groups3_5x5_dil", 1, 9, 13, 8, 6, 5, 5, params(1, 2, 3, 1, 2, 2, 2, 1, 3), true},
    {"vnni_blocks_k576", 1, 64, 6, 5, 32, 3, 3, params(1, 1, 1, 1, 1, 1), true},
    {"depthwise_mult2_5x5", 1, 6, 10, 10, 12, 5, 5, params(1, 1, 2, 2, 2, 2, 1, 1, 6), false},
    {"k256_1x1_s2", 1, 256, 7, 6, 16, 1, 1, params(2, 2, 0, 0, 0, 0), true},  // whole VNNI blocks
    // Batch 2 through the AMX KxK kernel (int8, C >= 16, stride 1); a 3x3 plane through the
    // pointwise kernels (fewer pixels than one tile row).
    {"batch2_c20_3x3", 2, 20, 6, 9, 12, 3, 3, params(1, 1, 1, 1, 1, 1), true},
    {"1x1_plane3x3_c40", 2, 40, 3, 3, 36, 1, 1, params(1, 1, 0, 0, 0, 0), true},
    // int8 pointwise tiles of 3 rows and part of a vector; C not a multiple of 4.
    {"1x1_oc7_c5", 1, 5, 3, 37, 7, 1, 1, params(1, 1, 0, 0, 0, 0, 1, 1, 1, Activation::kClip),
     true},
    // Pointwise as a plain GEMM (bias and activation fused into oneDNN's matmul where it can),
    // 1x1 planes as a matmul, and a first layer reading NCHW directly (conv_cpu.cc).
    {"1x1_bias_relu", 1, 24, 9, 11, 20, 1, 1, params(1, 1, 0, 0, 0, 0, 1, 1, 1, Activation::kRelu),
     true},
    {"1x1_bias_clip_batch2", 2, 16, 5, 6, 8, 1, 1,
     params(1, 1, 0, 0, 0, 0, 1, 1, 1, Activation::kClip), true},
    {"1x1_planes_se", 3, 48, 1, 1, 12, 1, 1,
     params(1, 1, 0, 0, 0, 0, 1, 1, 1, Activation::kHardSwish), true},
    {"first_layer_c3_s2", 1, 3, 20, 18, 16, 3, 3, params(2, 2, 1, 1, 1, 1), true},
    // 1, 2 and 4 input channels (int8: X's NHWC codes one word per pixel), 37 pixels per row.
    {"first_layer_c1", 1, 1, 9, 37, 5, 3, 3, params(1, 1, 1, 1, 1, 1), true},
    {"first_layer_c2_s2_batch2", 2, 2, 10, 37, 7, 3, 3, params(2, 2, 1, 1, 1, 1), true},
    {"first_layer_c4", 1, 4, 7, 37, 6, 3, 3, params(1, 1, 1, 1, 1, 1), false},
    // Depthwise layers as the OCR models have them (dwconv_hwy.cc): rows of several vectors and
    // a partial one, strides (2,1) and (1,2), asymmetric pads, dilation, a one-column plane.
    {"dw_5x5_rows80", 1, 16, 12, 80, 16, 5, 5,
     params(1, 1, 2, 2, 2, 2, 1, 1, 16, Activation::kHardSwish), true},
    {"dw_s21_asym_batch2", 2, 24, 13, 37, 24, 3, 3, params(2, 1, 1, 0, 0, 2, 1, 1, 24), true},
    {"dw_s12_dil2", 1, 8, 9, 70, 8, 3, 3, params(1, 2, 2, 2, 2, 2, 2, 2, 8, Activation::kRelu),
     false},
    {"dw_one_column", 1, 4, 6, 1, 4, 3, 3, params(2, 2, 1, 1, 1, 1, 1, 1, 4), true},
    // Stride 1 along H: output rows four at a time sharing input rows, then two, then one
    // (11 = 4 + 4 + 2 + 1), with stride 2 along W and dilation along W.
    {"dw_rows_by_four_s12", 1, 6, 11, 41, 6, 3, 5,
     params(1, 2, 1, 2, 1, 2, 1, 2, 6, Activation::kClip), true},
    {"dw_rows_by_four_7x7", 2, 5, 15, 23, 5, 7, 7, params(1, 1, 3, 3, 3, 3, 1, 1, 5), true},
};

// Every implementation of the CPU conv2d on one case and format against the reference;
// counts the implementations that applied in ran[impl].
void check_fast(const Case& cs, Format f, uint32_t seed, size_t* ran) {
  const Tensor x = test::gaussian({cs.n, cs.c, cs.h, cs.w}, seed);
  const Tensor w = test::gaussian({cs.oc, cs.c / cs.p.groups, cs.kh, cs.kw}, seed + 1, 0.2f);
  const Tensor bias = test::gaussian({cs.oc}, seed + 2);
  const float* b = cs.bias ? bias.data_as<float>() : nullptr;
  const ConvWeights cw = conv_weights(w, f);
  const Shape ys = conv2d_output_shape(x.shape(), cw, cs.p);
  Tensor want = Tensor::zeros(ys, DType::kF32), got = Tensor::zeros(ys, DType::kF32);
  ref::conv2d(x, cw, b, cs.p, want);
  const float* r = want.data_as<float>();
  const auto count = static_cast<size_t>(want.numel());
  double total = 0;
  for (size_t i = 0; i < count; ++i) total += std::fabs(r[i]);
  ASSERT_GT(total, 0.0) << cs.name << ": reference is all zeros";  // zero-trust

  // Tolerances per output; for fp32 also the reference's geometry against fp64 here.
  const std::vector<double> mag = conv_fp64(x, w, cs.p, ys, true);
  const std::vector<double> ideal = conv_fp64(x, w, cs.p, ys);
  std::vector<double> tol(count);
  const double k = double(cw.matrix.k);
  const int64_t plane = ys[2] * ys[3];
  for (size_t i = 0; i < count; ++i) {
    tol[i] = 1.5 * (2.0 * k * std::ldexp(1.0, -24) * mag[i] * 1.5) +
             std::ldexp(std::fabs(double(r[i])), -21) + 1e-30;
    if (f != Format::kFp32) continue;
    const int64_t oc = static_cast<int64_t>(i) / plane % ys[1];
    const float v = apply_activation(float(ideal[i] + (b ? b[oc] : 0.0f)), cs.p);
    ASSERT_LE(std::fabs(double(v) - r[i]), tol[i])
        << cs.name << " fp32 reference at " << i << ": " << r[i] << " vs fp64 " << v;
  }
  for (cpu::ConvImpl impl : kImpls) {
    const std::string what =
        std::string(cs.name) + " " + std::string(format_name(f)) + " " + impl_name(impl);
    float* g = got.data_as<float>();
    std::fill_n(g, count, NAN);
    if (!cpu::conv2d_with(impl, x, cw, b, cs.p, got, 2)) {
      for (size_t i = 0; i < count; ++i)
        ASSERT_TRUE(std::isnan(g[i])) << what << ": declined, but wrote the output";
      continue;
    }
    ++ran[static_cast<int>(impl)];
    // int8 everywhere and direct in every format: the reference's arithmetic, bit for bit.
    if (f == Format::kInt8 || impl == cpu::ConvImpl::kDirect) {
      for (size_t i = 0; i < count; ++i)
        ASSERT_EQ(std::bit_cast<uint32_t>(g[i]), std::bit_cast<uint32_t>(r[i]))
            << what << " at " << i << ": " << g[i] << " vs " << r[i];
      continue;
    }
    for (size_t i = 0; i < count; ++i)
      ASSERT_LE(std::fabs(double(g[i]) - r[i]), tol[i])  // false for NaN too
          << what << " at " << i << ": " << g[i] << " vs " << r[i];
  }
}

void expect_every_impl_ran(const size_t* ran) {
  for (cpu::ConvImpl impl : {cpu::ConvImpl::kAuto, cpu::ConvImpl::kIm2col, cpu::ConvImpl::kDirect,
                             cpu::ConvImpl::kDepthwise})
    EXPECT_GT(ran[static_cast<int>(impl)], 0u) << impl_name(impl);
  // oneDNN runs fp32 on any x86 CPU with AVX2 (below that the tests cap it, see conv_cpu.cc).
  if (cpu_features().avx2) {
    EXPECT_GT(ran[static_cast<int>(cpu::ConvImpl::kOneDnn)], 0u);
  }
  const CpuFeatures& f = cpu_features();
  if (f.avx512f && f.avx512bw && f.avx512vl && f.avx512dq && f.avx512_vnni && f.fma) {
    EXPECT_GT(ran[static_cast<int>(cpu::ConvImpl::kPointwise)], 0u);
  }
}

TEST(ConvCpu, MatchesReferenceOnAwkwardGeometry) {
  uint32_t seed = 100;
  size_t ran[kImplCount] = {};
  for (const Case& cs : kCases)
    for (Format f : kAll) {
      check_fast(cs, f, seed += 3, ran);
      if (HasFatalFailure()) return;
    }
  expect_every_impl_ran(ran);
}

TEST(ConvCpu, EveryActivationWithAndWithoutBias) {
  const Activation acts[] = {Activation::kNone, Activation::kRelu, Activation::kClip,
                             Activation::kSigmoid, Activation::kHardSwish};
  uint32_t seed = 500;
  size_t ran[kImplCount] = {};
  for (Activation a : acts)
    for (bool bias : {false, true})
      for (bool affine : {false, true})  // with and without a scalar affine after it
        for (Format f : kAll)
          for (int64_t groups : {1, 10, 0}) {  // dense, depthwise, pointwise (0)
            const int64_t k = groups == 0 ? 1 : 3;
            Case cs{"activation",
                    1,
                    10,
                    7,
                    groups == 0 ? 70 : 6,  // pointwise: 490 pixels, a partial last tile
                    groups == 10 ? 10 : 12,
                    k,
                    k,
                    groups == 0 ? params(1, 1, 0, 0, 0, 0) : params(1, 2, 1, 0, 1, 2, 1, 1, groups),
                    bias};
            cs.p.activation = a;
            cs.p.post_affine = affine;
            cs.p.post_scale = -0.8125f;
            cs.p.post_shift = 0.3125f;
            check_fast(cs, f, seed += 3, ran);
            if (HasFatalFailure()) return;
          }
  expect_every_impl_ran(ran);
}

// X's int8 codes as the reference makes them, with one scale over all of X: (scale, codes).
std::pair<float, std::vector<int8_t>> reference_codes(const Tensor& x) {
  const auto count = static_cast<size_t>(x.numel());
  const float sx = ref::int8_scale(ref::amax(x.data_as<float>(), count));
  std::vector<int8_t> xq(count);
  ref::int8_encode_array(x.data_as<float>(), xq.data(), count, sx);
  return {sx, std::move(xq)};
}

// The int8 pointwise kernel on each instruction set this CPU has (VNNI, AMX), called directly,
// against the reference bit for bit: partial tiles of rows and pixels, C not a multiple of 4 or
// 64, bias and activation with the affine, and a call split over two threads; on VNNI also
// from X's floats (quantized while packed, in chunks of pixels with a partial last one).
TEST(ConvCpu, PointwiseInt8OnEveryIsaMatchesTheReference) {
  const cpu::PwIsa best = cpu::pwconv_int8_isa();
  if (best == cpu::PwIsa::kNone) GTEST_SKIP() << "no AVX-512 VNNI here";
  std::vector<cpu::PwIsa> isas = {cpu::PwIsa::kVnni};
  if (best == cpu::PwIsa::kAmx) isas.push_back(cpu::PwIsa::kAmx);
  struct Shape3 {
    int64_t c, oc, h, w;
  };
  uint32_t seed = 900;
  for (const Shape3 sh : {Shape3{5, 7, 3, 37}, Shape3{64, 32, 4, 8}, Shape3{70, 33, 5, 13},
                          Shape3{240, 48, 12, 80}, Shape3{3, 1, 1, 1}, Shape3{6, 9, 50, 90}})
    for (Activation a : {Activation::kNone, Activation::kHardSwish}) {
      const Tensor x = test::gaussian({1, sh.c, sh.h, sh.w}, seed++);
      const Tensor w = test::gaussian({sh.oc, sh.c, 1, 1}, seed++, 0.3f);
      const Tensor b = test::gaussian({sh.oc}, seed++);
      Conv2dParams p = params(1, 1, 0, 0, 0, 0, 1, 1, 1, a);
      p.post_affine = a != Activation::kNone;
      p.post_scale = 1.5f;
      p.post_shift = -0.25f;
      const ConvWeights cw = conv_weights(w, Format::kInt8);
      const Shape ys = conv2d_output_shape(x.shape(), cw, p);
      Tensor want = Tensor::zeros(ys, DType::kF32);
      ref::conv2d(x, cw, b.data_as<float>(), p, want);
      const auto [sx, xq] = reference_codes(x);
      const cpu::PwInt8Weights pw =
          cpu::pwconv_int8_prepare(cw.matrix.data.data_as<int8_t>(), sh.oc, sh.c);
      for (cpu::PwIsa isa : isas)
        for (int threads : {1, 2})
          for (bool floats : {false, true}) {  // VNNI also from X's floats (xf)
            if (floats && isa != cpu::PwIsa::kVnni) continue;
            Tensor got = Tensor::zeros(ys, DType::kF32);
            cpu::pwconv_int8(floats ? nullptr : xq.data(), sh.h * sh.w, pw,
                             cw.matrix.data.quant().scales.data(), sx, b.data_as<float>(), p,
                             got.data_as<float>(), threads, isa, nullptr,
                             floats ? x.data_as<float>() : nullptr);
            for (int64_t i = 0; i < got.numel(); ++i)
              ASSERT_EQ(std::bit_cast<uint32_t>(got.data_as<float>()[i]),
                        std::bit_cast<uint32_t>(want.data_as<float>()[i]))
                  << (isa == cpu::PwIsa::kAmx ? "amx" : "vnni") << (floats ? " floats" : "") << " c"
                  << sh.c << " oc" << sh.oc << " threads " << threads << " at " << i;
          }
    }
}

// The int8 depthwise plane on VNNI + VBMI, called directly, against sums in int64 bit for bit:
// row widths 1 to 4 quads (kw 1..9 with zero weights filling the last quad), strides 1 and 2
// along the row, 1..3 along H, dilation along H (the shared-row and the per-row blocks),
// output widths with partial vectors and blocks of 1..5 vectors, every activation, and the
// extremes (all codes ±127 with 32x32 taps: sums of ±16.5 M, still exact in fp32).
TEST(ConvCpu, DepthwiseInt8VnniMatchesIntegerSums) {
  if (!cpu::dw_int8_available()) GTEST_SKIP() << "no AVX-512 VNNI + VBMI here";
  struct Geo {
    int64_t kh, kw, sh, sw, dh, oh, ow;
    Activation act;
    bool extreme;
  };
  const Geo geos[] = {
      {3, 3, 1, 1, 1, 11, 41, Activation::kNone, false},
      {5, 5, 1, 1, 1, 12, 80, Activation::kHardSwish, false},
      {1, 1, 1, 1, 1, 3, 17, Activation::kRelu, false},
      {2, 4, 2, 2, 1, 5, 33, Activation::kClip, false},
      {7, 7, 1, 2, 1, 9, 70, Activation::kSigmoid, false},
      {3, 9, 3, 1, 2, 4, 65, Activation::kNone, false},
      {5, 8, 1, 1, 2, 6, 16, Activation::kHardSwish, false},
      {3, 5, 2, 1, 1, 7, 1, Activation::kRelu, false},
      {32, 32, 1, 1, 1, 3, 20, Activation::kNone, true},
  };
  std::mt19937 rng(1400);
  std::uniform_int_distribution<int> code(-127, 127);
  for (const Geo& g : geos) {
    const int64_t rows = (g.oh - 1) * g.sh + (g.kh - 1) * g.dh + 1;
    const int64_t quads = (g.kw + 3) / 4;
    const int64_t cols = (g.ow - 1) * g.sw + 4 * quads + 64;
    std::vector<int8_t> q(static_cast<size_t>(rows * cols)), w(static_cast<size_t>(g.kh * g.kw));
    for (auto& v : q) v = static_cast<int8_t>(g.extreme ? 127 : code(rng));
    for (size_t i = 0; i < w.size(); ++i) w[i] = static_cast<int8_t>(g.extreme ? 127 : code(rng));
    std::vector<uint8_t> xp(q.size());
    for (size_t i = 0; i < q.size(); ++i) xp[i] = static_cast<uint8_t>(q[i] + 128);
    const cpu::DwInt8Weights dw = cpu::dw_int8_prepare(w.data(), 1, g.kh, g.kw);
    Conv2dParams act = params(1, 1, 0, 0, 0, 0, 1, 1, 1, g.act);
    act.post_affine = g.act == Activation::kHardSwish;
    act.post_scale = -0.75f;
    act.post_shift = 0.25f;
    cpu::DwPlaneInt8 p;
    p.xp = xp.data();
    p.xp_stride = cols;
    p.w = dw.w.data();
    p.comp = dw.comp[0];
    p.kh = g.kh;
    p.quads = dw.quads;
    p.sh = g.sh;
    p.sw = g.sw;
    p.dh = g.dh;
    p.oh_n = g.oh;
    p.ow_n = g.ow;
    p.scale = 0.0137f;
    p.bias = -0.5f;
    p.act = &act;
    std::vector<float> y(static_cast<size_t>(g.oh * g.ow + 16), NAN);
    p.y = y.data();
    cpu::dw_plane_int8(p);
    for (int64_t oh = 0; oh < g.oh; ++oh)
      for (int64_t ow = 0; ow < g.ow; ++ow) {
        int64_t sum = 0;
        for (int64_t i = 0; i < g.kh; ++i)
          for (int64_t j = 0; j < g.kw; ++j)
            sum += int64_t{w[static_cast<size_t>(i * g.kw + j)]} *
                   q[static_cast<size_t>((oh * g.sh + i * g.dh) * cols + ow * g.sw + j)];
        ASSERT_LT(std::abs(sum), int64_t{1} << 24);
        const float want = apply_activation(float(sum) * p.scale + p.bias, act);
        const float got = y[static_cast<size_t>(oh * g.ow + ow)];
        ASSERT_EQ(std::bit_cast<uint32_t>(got), std::bit_cast<uint32_t>(want))
            << g.kh << "x" << g.kw << " stride " << g.sh << "," << g.sw << " at " << oh << "," << ow
            << ": " << got << " vs " << want << " (sum " << sum << ")";
      }
    for (size_t i = static_cast<size_t>(g.oh * g.ow); i < y.size(); ++i)
      ASSERT_TRUE(std::isnan(y[i])) << "wrote past the plane";
  }
}

// The bf16 depthwise plane on AVX512_BF16, called directly, against the float kernel's arithmetic
// written out: each output's taps in the reference's order (rows, then columns), each product of
// two bf16 values exact in fp32 and added with one rounding (std::fma), then · scale + bias and
// the activation — bit for bit (no subnormals here). Odd and even row widths (a zero-weight pad
// tap), strides 1 and 2 along the row, 1 and 2 along H, dilation along H, partial vectors.
TEST(ConvCpu, DepthwiseBf16MatchesTheFmaChain) {
  if (!cpu::dw_bf16_available()) GTEST_SKIP() << "no AVX512_BF16 here";
  struct Geo {
    int64_t kh, kw, sh, sw, dh, oh, ow;
    Activation act;
  };
  const Geo geos[] = {{5, 5, 1, 1, 1, 12, 80, Activation::kHardSwish},
                      {3, 3, 2, 2, 1, 5, 33, Activation::kRelu},
                      {3, 4, 1, 1, 2, 6, 17, Activation::kNone},
                      {7, 7, 1, 2, 1, 9, 70, Activation::kSigmoid},
                      {1, 1, 1, 1, 1, 3, 5, Activation::kClip}};
  std::mt19937 rng(1600);
  std::normal_distribution<float> nd(0.0f, 1.0f);
  auto bf16 = [](float v) {  // the code and its value
    uint16_t c;
    encode_float_array(Format::kBf16, &v, &c, 1);
    float back;
    decode_float_array(Format::kBf16, &c, &back, 1);
    return std::pair<uint16_t, float>(c, back);
  };
  for (const Geo& g : geos) {
    const int64_t rows = (g.oh - 1) * g.sh + (g.kh - 1) * g.dh + 1;
    const int64_t pairs = (g.kw + 1) / 2;
    const int64_t cols = (g.ow - 1) * g.sw + 2 * pairs + 32;
    std::vector<uint16_t> xp(static_cast<size_t>(rows * cols)),
        wc(static_cast<size_t>(g.kh * g.kw));
    std::vector<float> xv(xp.size()), wv(wc.size());
    for (size_t i = 0; i < xp.size(); ++i) std::tie(xp[i], xv[i]) = bf16(nd(rng));
    for (size_t i = 0; i < wc.size(); ++i) std::tie(wc[i], wv[i]) = bf16(0.3f * nd(rng));
    const cpu::DwBf16Weights dw = cpu::dw_bf16_prepare(wc.data(), 1, g.kh, g.kw);
    Conv2dParams act = params(1, 1, 0, 0, 0, 0, 1, 1, 1, g.act);
    cpu::DwPlaneBf16 p;
    p.xp = xp.data();
    p.xp_stride = cols;
    p.w = dw.w.data();
    p.kh = g.kh;
    p.pairs = dw.pairs;
    p.sh = g.sh;
    p.sw = g.sw;
    p.dh = g.dh;
    p.oh_n = g.oh;
    p.ow_n = g.ow;
    p.scale = 1.0f;
    p.bias = 0.125f;
    p.act = &act;
    std::vector<float> y(static_cast<size_t>(g.oh * g.ow + 16), NAN);
    p.y = y.data();
    cpu::dw_plane_bf16(p);
    for (int64_t oh = 0; oh < g.oh; ++oh)
      for (int64_t ow = 0; ow < g.ow; ++ow) {
        float acc = 0.0f;
        for (int64_t i = 0; i < g.kh; ++i)
          for (int64_t j = 0; j < g.kw; ++j)
            acc = std::fma(wv[static_cast<size_t>(i * g.kw + j)],
                           xv[static_cast<size_t>((oh * g.sh + i * g.dh) * cols + ow * g.sw + j)],
                           acc);
        const float want = apply_activation(acc * p.scale + p.bias, act);
        const float got = y[static_cast<size_t>(oh * g.ow + ow)];
        ASSERT_EQ(std::bit_cast<uint32_t>(got), std::bit_cast<uint32_t>(want))
            << g.kh << "x" << g.kw << " stride " << g.sh << "," << g.sw << " at " << oh << "," << ow
            << ": " << got << " vs " << want;
      }
    for (size_t i = static_cast<size_t>(g.oh * g.ow); i < y.size(); ++i)
      ASSERT_TRUE(std::isnan(y[i])) << "wrote past the plane";
  }
}

// A KxK test case (stride 1, one group): `images` images of Gaussian X, W and a bias drawn in
// that order from `seed` on, the activation with a scalar affine after it (none without one),
// W in format f, and the reference's output.
struct KxkGeo {
  int64_t c, oc, h, w, kh, kw, pt, pl, pb, pr;
};
struct KxkCase {
  Tensor x, w, b;
  Conv2dParams p;
  ConvWeights cw;
  Shape ys;
  Tensor want;
};
KxkCase kxk_case(const KxkGeo& g, Activation a, Format f, int64_t images, uint32_t& seed) {
  KxkCase k;
  k.x = test::gaussian({images, g.c, g.h, g.w}, seed++);
  k.w = test::gaussian({g.oc, g.c, g.kh, g.kw}, seed++, 0.2f);
  k.b = test::gaussian({g.oc}, seed++);
  k.p = params(1, 1, g.pt, g.pl, g.pb, g.pr, 1, 1, 1, a);
  k.p.post_affine = a != Activation::kNone;
  k.p.post_scale = -1.25f;
  k.p.post_shift = 0.5f;
  k.cw = conv_weights(k.w, f);
  k.ys = conv2d_output_shape(k.x.shape(), k.cw, k.p);
  k.want = Tensor::zeros(k.ys, DType::kF32);
  ref::conv2d(k.x, k.cw, k.b.data_as<float>(), k.p, k.want);
  return k;
}

// The int8 KxK convolutions (stride 1) on each instruction set this CPU has (VNNI, AMX), called
// directly, against the reference bit for bit: kernels 3x3, 5x5, 1x7 and 2x3, symmetric and
// asymmetric padding (and none), C and OC not multiples of the tiles, widths with partial last
// pixel blocks (and several blocks), activation and affine, sigmoid after the store.
TEST(ConvCpu, KxKInt8ConvOnEveryIsaMatchesTheReference) {
  const cpu::PwIsa best = cpu::pwconv_int8_isa();
  if (best == cpu::PwIsa::kNone) GTEST_SKIP() << "no AVX-512 VNNI here";
  uint32_t seed = 1300;
  for (const KxkGeo& g :
       {KxkGeo{64, 64, 9, 40, 3, 3, 1, 1, 1, 1}, KxkGeo{20, 7, 6, 37, 5, 5, 2, 2, 2, 2},
        KxkGeo{70, 33, 5, 13, 1, 7, 0, 3, 0, 3}, KxkGeo{16, 40, 7, 70, 2, 3, 0, 1, 1, 0},
        KxkGeo{96, 24, 4, 33, 3, 3, 0, 0, 0, 0}, KxkGeo{24, 9, 3, 150, 3, 3, 1, 1, 1, 1}})
    for (Activation a : {Activation::kNone, Activation::kHardSwish, Activation::kSigmoid}) {
      const KxkCase kc = kxk_case(g, a, Format::kInt8, 1, seed);
      const Conv2dParams& p = kc.p;
      const ConvWeights& cw = kc.cw;
      const Shape& ys = kc.ys;
      const Tensor &b = kc.b, &want = kc.want;
      const auto [sx, xq] = reference_codes(kc.x);
      const int8_t* codes = cw.matrix.data.data_as<int8_t>();
      const float* wscale = cw.matrix.data.quant().scales.data();
      const int64_t pads[4] = {g.pt, g.pl, g.pb, g.pr};
      for (bool amx : {false, true}) {
        if (amx && best != cpu::PwIsa::kAmx) continue;
        for (int threads : {1, 2}) {
          Tensor got = Tensor::zeros(ys, DType::kF32);
          if (amx)
            cpu::conv_int8_amx(xq.data(), g.h, g.w, pads,
                               cpu::conv_int8_amx_prepare(codes, g.oc, g.c, g.kh, g.kw), wscale, sx,
                               b.data_as<float>(), p, got.data_as<float>(), threads);
          else
            cpu::conv_int8_vnni(xq.data(), g.h, g.w, pads,
                                cpu::conv_int8_vnni_prepare(codes, g.oc, g.c, g.kh, g.kw), wscale,
                                sx, b.data_as<float>(), p, got.data_as<float>(), threads);
          for (int64_t i = 0; i < got.numel(); ++i)
            ASSERT_EQ(std::bit_cast<uint32_t>(got.data_as<float>()[i]),
                      std::bit_cast<uint32_t>(want.data_as<float>()[i]))
                << (amx ? "amx" : "vnni") << " c" << g.c << " oc" << g.oc << " k" << g.kh << "x"
                << g.kw << " threads " << threads << " at " << i;
        }
      }
    }
}

// The float KxK kernel (AVX-512 without AMX; bf16 with AVX512_BF16 and fp32), called directly,
// against the reference: the same products (bf16: of the rounded values) summed in another fp32
// order, so within 2·K·2^-24·Σ|x·w| per output (times 1.5
// for the rounding of the used values, 1.5 for hardswish's slope, 1.25 for the affine) and a few
// ulps of the activation. Odd C (a pair half past C), OC not a multiple of 4, rows not a
// multiple of 16 pixels, asymmetric padding, 1x7 and 5x5, one and two threads; conv2d on two
// images reaches it and matches it bit for bit.
TEST(ConvCpu, KxKFloatConvMatchesTheReference) {
  bool ran = false;
  for (Format f : {Format::kBf16, Format::kFp32}) {
    if (!cpu::conv_float_available(f)) continue;
    ran = true;
    uint32_t seed = 1900;
    for (const KxkGeo& g :
         {KxkGeo{64, 64, 9, 40, 3, 3, 1, 1, 1, 1}, KxkGeo{17, 7, 6, 37, 5, 5, 2, 2, 2, 2},
          KxkGeo{70, 33, 5, 13, 1, 7, 0, 3, 0, 3}, KxkGeo{16, 40, 7, 70, 2, 3, 0, 1, 1, 0},
          KxkGeo{96, 24, 4, 33, 3, 3, 0, 0, 0, 0}, KxkGeo{24, 9, 3, 150, 3, 3, 1, 1, 1, 1}})
      for (Activation a : {Activation::kNone, Activation::kHardSwish, Activation::kSigmoid}) {
        const KxkCase kc = kxk_case(g, a, f, 2, seed);
        const Tensor &x = kc.x, &w = kc.w, &b = kc.b, &want = kc.want;
        const Conv2dParams& p = kc.p;
        const ConvWeights& cw = kc.cw;
        const Shape& ys = kc.ys;
        const std::vector<double> mag = conv_fp64(x, w, p, ys, true);
        const int64_t k = g.c * g.kh * g.kw, image = g.oc * ys[2] * ys[3];
        const int64_t pads[4] = {g.pt, g.pl, g.pb, g.pr};
        const cpu::ConvFloatWeights prepared =
            cpu::conv_float_prepare(f, cw.matrix.data.data(), g.oc, g.c, g.kh, g.kw);
        const std::string what = std::string(format_name(f)) + " c" + std::to_string(g.c) + " oc" +
                                 std::to_string(g.oc) + " k" + std::to_string(g.kh) + "x" +
                                 std::to_string(g.kw) + " act " +
                                 std::to_string(static_cast<int>(a));
        for (int threads : {1, 2}) {
          Tensor got = Tensor::zeros(ys, DType::kF32);
          for (int64_t n = 0; n < 2; ++n)
            cpu::conv_float(x.data_as<float>() + n * g.c * g.h * g.w, g.h, g.w, pads, prepared,
                            b.data_as<float>(), p, got.data_as<float>() + n * image, threads);
          for (int64_t i = 0; i < got.numel(); ++i) {
            const double wv = want.data_as<float>()[i];
            const double tol = 1.5 * 1.25 * 2 * k * 0x1.0p-24 * 1.5 * mag[static_cast<size_t>(i)] +
                               8 * 0x1.0p-24 * (std::fabs(wv) + 1);
            ASSERT_NEAR(got.data_as<float>()[i], wv, tol)
                << what << " threads " << threads << " at " << i;
          }
          if (threads == 2) {  // conv2d picks it (on two images) and adds nothing of its own
            Tensor via = Tensor::zeros(ys, DType::kF32);
            conv2d(x, cw, b.data_as<float>(), p, via, 2);
            for (int64_t i = 0; i < got.numel(); ++i)
              ASSERT_EQ(std::bit_cast<uint32_t>(via.data_as<float>()[i]),
                        std::bit_cast<uint32_t>(got.data_as<float>()[i]))
                  << what << " via conv2d at " << i;
          }
        }
      }
  }
  if (!ran) GTEST_SKIP() << "no AVX-512 here";
}

// ConvHints: a layer told max |X| makes the scale from it and gives the same bits as one that
// takes its own pass (and a different result when told a wrong value: the hint is used); the
// kernels that take max |Y| while storing report exactly max |Y| (sigmoid too, after it), the
// others -1. Pointwise, KxK, depthwise and (oneDNN's) first layers, int8 and bf16, batch 2.
TEST(ConvCpu, HintsCarryTheAmaxBetweenLayers) {
  struct Layer {
    int64_t c, oc, k, groups;
    Activation act;
  };
  uint32_t seed = 1500;
  for (const Layer& l :
       {Layer{32, 24, 1, 1, Activation::kHardSwish}, Layer{20, 16, 3, 1, Activation::kRelu},
        Layer{24, 24, 5, 24, Activation::kNone}, Layer{16, 16, 3, 16, Activation::kSigmoid},
        Layer{3, 16, 3, 1, Activation::kHardSwish},  // a first layer: oneDNN and our epilogue
        Layer{3, 16, 3, 1, Activation::kNone}})      // oneDNN's result as it is: our transpose
    for (Format f : {Format::kInt8, Format::kBf16}) {
      const Tensor x = test::gaussian({2, l.c, 9, 37}, seed++);
      const Tensor w = test::gaussian({l.oc, l.c / l.groups, l.k, l.k}, seed++, 0.2f);
      const Tensor b = test::gaussian({l.oc}, seed++);
      const Conv2dParams p =
          params(1, 1, l.k / 2, l.k / 2, l.k / 2, l.k / 2, 1, 1, l.groups, l.act);
      const ConvWeights cw = conv_weights(w, f);
      const Shape ys = conv2d_output_shape(x.shape(), cw, p);
      Tensor plain = Tensor::zeros(ys, DType::kF32), hinted = Tensor::zeros(ys, DType::kF32);
      conv2d(x, cw, b.data_as<float>(), p, plain, 2);
      float y_amax = -2.0f;
      const ConvHints hints{amax(x.data_as<float>(), static_cast<size_t>(x.numel())), &y_amax};
      conv2d(x, cw, b.data_as<float>(), p, hinted, 2, &hints);
      const std::string what = std::string(format_name(f)) + " k" + std::to_string(l.k) + " g" +
                               std::to_string(l.groups);
      for (int64_t i = 0; i < plain.numel(); ++i)
        ASSERT_EQ(std::bit_cast<uint32_t>(hinted.data_as<float>()[i]),
                  std::bit_cast<uint32_t>(plain.data_as<float>()[i]))
            << what << " at " << i;
      const float want = amax(plain.data_as<float>(), static_cast<size_t>(plain.numel()));
      if (y_amax >= 0.0f)
        EXPECT_EQ(y_amax, want) << what;
      else
        EXPECT_EQ(y_amax, -1.0f) << what;
      // Where this CPU has the VNNI int8 kernels, every int8 layer here reports it.
      if (f == Format::kInt8 && cpu::pwconv_int8_isa() == cpu::PwIsa::kVnni &&
          (l.groups == 1 || cpu::dw_int8_available()))
        EXPECT_GE(y_amax, 0.0f) << what << ": not taken";
      if (f == Format::kInt8) {
        Tensor wrong = Tensor::zeros(ys, DType::kF32);
        const ConvHints twice{2.0f * hints.x_amax, nullptr};
        conv2d(x, cw, b.data_as<float>(), p, wrong, 2, &twice);
        bool differs = false;
        for (int64_t i = 0; i < wrong.numel() && !differs; ++i)
          differs = wrong.data_as<float>()[i] != plain.data_as<float>()[i];
        EXPECT_TRUE(differs) << what << ": the hint was not used";
      }
    }
}

// bf16 pointwise convolutions through oneDNN's matmul keep the fp32 bias: where oneDNN cannot
// add it (2.6 without AMX) it rides in W as three bf16 parts that sum to it exactly, against
// rows of ones appended to each image's X codes. Zero weights leave y = bias bit for bit (one
// or two bf16 parts alone are off by up to 2^-9 or 2^-17 relative); random weights on two
// images (each image's rows of ones; a second bias with the same weights, which the cached
// plan must not keep) against the direct path, which adds the bias in fp32.
TEST(ConvCpu, Bf16PointwiseKeepsTheFp32Bias) {
  const Conv2dParams p = params(1, 1, 0, 0, 0, 0);
  const Tensor x = test::gaussian({2, 12, 5, 7}, 1700);
  Tensor b = test::gaussian({9}, 1701, 2.0f);
  for (int64_t i = 0; i < b.numel(); ++i)  // significant bits beyond bf16's
    b.data_as<float>()[i] = b.data_as<float>()[i] * (1.0f + 0x1.0p-12f) + 0x1.0p-10f;
  const ConvWeights zero = conv_weights(Tensor::zeros({9, 12, 1, 1}, DType::kF32), Format::kBf16);
  const Shape ys = conv2d_output_shape(x.shape(), zero, p);
  Tensor y = Tensor::zeros(ys, DType::kF32);
  if (!cpu::conv2d_with(cpu::ConvImpl::kOneDnn, x, zero, b.data_as<float>(), p, y, 2))
    GTEST_SKIP() << "oneDNN has no bf16 matmul here";
  for (int64_t i = 0; i < y.numel(); ++i)
    ASSERT_EQ(y.data_as<float>()[i], b.data_as<float>()[i / 35 % 9]) << i;
  const Tensor w = test::gaussian({9, 12, 1, 1}, 1702, 0.3f);
  const ConvWeights cw = conv_weights(w, Format::kBf16);
  for (float shift : {0.0f, 1.5f}) {  // the second: another bias with the same weights
    Tensor bb = b.clone();
    for (int64_t i = 0; i < bb.numel(); ++i) bb.data_as<float>()[i] += shift;
    Tensor fast = Tensor::zeros(ys, DType::kF32), direct = Tensor::zeros(ys, DType::kF32);
    ASSERT_TRUE(cpu::conv2d_with(cpu::ConvImpl::kOneDnn, x, cw, bb.data_as<float>(), p, fast, 2));
    ASSERT_TRUE(cpu::conv2d_with(cpu::ConvImpl::kDirect, x, cw, bb.data_as<float>(), p, direct, 2));
    const std::vector<double> mag = conv_fp64(x, w, p, ys, true);
    for (int64_t i = 0; i < fast.numel(); ++i) {
      const double bias = bb.data_as<float>()[i / 35 % 9];
      const double tol = 2 * 16 * 0x1.0p-24 * 1.5 * (mag[static_cast<size_t>(i)] + std::fabs(bias));
      ASSERT_NEAR(fast.data_as<float>()[i], direct.data_as<float>()[i], tol)
          << "shift " << shift << " at " << i;
    }
  }
}

TEST(ConvCpu, ThreadCountDoesNotChangeTheResult) {
  const Tensor x = test::gaussian({2, 16, 12, 10}, 7);
  const Tensor w = test::gaussian({24, 8, 3, 3}, 8, 0.2f);
  const Conv2dParams p = params(1, 1, 1, 1, 1, 1, 1, 1, 2, Activation::kRelu);
  for (Format f : kAll)
    for (cpu::ConvImpl impl : kImpls) {
      if (impl == cpu::ConvImpl::kOneDnn) continue;  // oneDNN's blocking follows the threads
      const ConvWeights cw = conv_weights(w, f);
      const Shape ys = conv2d_output_shape(x.shape(), cw, p);
      Tensor a = Tensor::zeros(ys, DType::kF32), b = Tensor::zeros(ys, DType::kF32);
      cpu::conv2d_with(impl, x, cw, nullptr, p, a, 1);
      cpu::conv2d_with(impl, x, cw, nullptr, p, b, 2);
      cpu::conv2d_with(impl, x, cw, nullptr, p, b, 2);  // again, with the state kept in cw
      EXPECT_EQ(0, std::memcmp(a.data(), b.data(), a.nbytes()))
          << format_name(f) << " " << impl_name(impl);
    }
}

// A non-finite weight (here fp16 overflow) makes 0 · w = NaN at padding taps in the
// reference; every implementation that accepts the weights must agree on NaN and inf.
TEST(ConvCpu, NonFiniteWeightsGiveTheReferencesNaNs) {
  const Tensor x = test::gaussian({1, 3, 6, 5}, 12);
  Tensor w = test::gaussian({4, 3, 3, 3}, 13, 0.2f);
  w.data_as<float>()[5] = 1e6f;  // beyond fp16's 65504: inf
  const Conv2dParams p = params(1, 1, 1, 1, 1, 1);
  const ConvWeights cw = conv_weights(w, Format::kFp16);
  Tensor want = Tensor::zeros({1, 4, 6, 5}, DType::kF32), got = want.clone();
  ref::conv2d(x, cw, nullptr, p, want);
  const float* r = want.data_as<float>();
  size_t nans = 0;
  for (int64_t i = 0; i < want.numel(); ++i) nans += std::isnan(r[i]);
  ASSERT_GT(nans, 0u) << "the padding taps should give NaN";
  for (cpu::ConvImpl impl : kImpls) {
    if (!cpu::conv2d_with(impl, x, cw, nullptr, p, got, 2)) continue;
    const float* g = got.data_as<float>();
    for (int64_t i = 0; i < want.numel(); ++i) {
      if (std::isfinite(r[i])) {
        EXPECT_NEAR(g[i], r[i], 1e-4f * (1 + std::fabs(r[i]))) << impl_name(impl) << " at " << i;
      } else {
        EXPECT_EQ(std::isnan(g[i]), std::isnan(r[i])) << impl_name(impl) << " at " << i;
        if (std::isinf(r[i])) {
          EXPECT_EQ(g[i], r[i]) << impl_name(impl) << " at " << i;
        }
      }
    }
  }
}

// The depthwise kernels keep each thread's padded plane between calls and refill only its
// padding when the layout changes: a layer whose plane has the same rows and columns as the one
// before but fewer input rows (more bottom padding) must not see the earlier layer's last row.
TEST(ConvCpu, DepthwisePlanesRefillPaddingAcrossLayers) {
  uint32_t seed = 2500;
  for (Format f : {Format::kFp32, Format::kBf16, Format::kInt8}) {
    const Tensor w = test::gaussian({8, 1, 3, 3}, seed++, 0.3f);
    const ConvWeights cw = conv_weights(w, f);
    // A: 12 rows, pads 1/1 -> rows 0..13 of the plane, row 12 holds input row 11.
    // B: 11 rows, pads 1/2 -> the same 14 plane rows, row 12 is padding.
    const Tensor xa = test::gaussian({1, 8, 12, 37}, seed++),
                 xb = test::gaussian({1, 8, 11, 37}, seed++);
    const Conv2dParams pa = params(1, 1, 1, 1, 1, 1, 1, 1, 8),
                       pb = params(1, 1, 1, 1, 2, 1, 1, 1, 8);
    Tensor ya = Tensor::zeros(conv2d_output_shape(xa.shape(), cw, pa), DType::kF32);
    Tensor yb = Tensor::zeros(conv2d_output_shape(xb.shape(), cw, pb), DType::kF32);
    Tensor want = Tensor::zeros(yb.shape(), DType::kF32);
    ASSERT_TRUE(cpu::conv2d_with(cpu::ConvImpl::kDepthwise, xa, cw, nullptr, pa, ya, 1));
    ASSERT_TRUE(cpu::conv2d_with(cpu::ConvImpl::kDepthwise, xb, cw, nullptr, pb, yb, 1));
    ref::conv2d(xb, cw, nullptr, pb, want);
    for (int64_t i = 0; i < want.numel(); ++i)
      ASSERT_NEAR(yb.data_as<float>()[i], want.data_as<float>()[i],
                  1e-5f * (1.0f + std::fabs(want.data_as<float>()[i])))
          << format_name(f) << " at " << i;
  }
}

TEST(ConvCpu, NonContiguousInputAndEmptyBatch) {
  // A strided [1, 3, 5, 2] view of a [1, 3, 5, 4] tensor: every other column.
  Tensor base = test::gaussian({1, 3, 5, 4}, 9);
  const Tensor w = test::gaussian({2, 3, 3, 3}, 10, 0.2f);
  const Tensor view =
      Tensor::borrow(base.data_as<float>(), {1, 3, 5, 2}, DType::kF32, {60, 20, 4, 2});
  ASSERT_FALSE(view.is_contiguous());
  const Conv2dParams p = params(1, 1, 1, 1, 1, 1);
  const ConvWeights cw = conv_weights(w, Format::kInt8);
  Tensor a = Tensor::zeros({1, 2, 5, 2}, DType::kF32), b = a.clone();
  ref::conv2d(view.clone(), cw, nullptr, p, a);
  conv2d(view, cw, nullptr, p, b);
  EXPECT_EQ(0, std::memcmp(a.data(), b.data(), a.nbytes()));
  Tensor none = Tensor::zeros({0, 2, 5, 2}, DType::kF32);
  EXPECT_NO_THROW(conv2d(Tensor::zeros({0, 3, 5, 2}, DType::kF32), cw, nullptr, p, none));
  EXPECT_NO_THROW(ref::conv2d(Tensor::zeros({0, 3, 5, 2}, DType::kF32), cw, nullptr, p, none));
}

// --- bad geometry ----------------------------------------------------------------------------

void expect_invalid(const std::function<void()>& fn, const std::string& needle) {
  try {
    fn();
    ADD_FAILURE() << "no error; expected one naming '" << needle << "'";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::kInvalidInput) << e.what();
    EXPECT_NE(std::string(e.what()).find(needle), std::string::npos)
        << "'" << e.what() << "' does not name '" << needle << "'";
  }
}

TEST(ConvGeometry, BadGeometryIsRefusedWithItsReason) {
  const ConvWeights cw = conv_weights(test::gaussian({6, 2, 3, 3}, 11), Format::kFp32);
  const Shape x = {1, 4, 8, 8};  // C = 4 = 2 groups of 2
  Conv2dParams ok = params(1, 1, 1, 1, 1, 1, 1, 1, 2);
  EXPECT_EQ(conv2d_output_shape(x, cw, ok), (Shape{1, 6, 8, 8}));
  const struct {
    Shape x;
    std::function<void(Conv2dParams&)> edit;
    std::string needle;
  } bad[] = {
      {{4, 8, 8}, [](Conv2dParams&) {}, "rank 4"},
      {{1, 4, 8, 8}, [](Conv2dParams& p) { p.groups = 0; }, "groups must be >= 1, got 0"},
      {{1, 5, 8, 8}, [](Conv2dParams&) {}, "C=5 are not divisible by groups=2"},
      {{1, 4, 8, 8}, [](Conv2dParams& p) { p.groups = 1; }, "differ from the weights' 2"},
      {{1, 8, 8, 8}, [](Conv2dParams& p) { p.groups = 4; }, "OC=6 are not divisible"},
      {{1, 4, 8, 8}, [](Conv2dParams& p) { p.stride_w = 0; }, "strides must be >= 1, got 1x0"},
      {{1, 4, 8, 8}, [](Conv2dParams& p) { p.dilation_h = -1; }, "dilations must be >= 1"},
      {{1, 4, 8, 8}, [](Conv2dParams& p) { p.pad_right = -2; }, "right=-2"},
      {{1, 4, 1, 8}, [](Conv2dParams& p) { p.pad_top = p.pad_bottom = 0; }, "padded input 1x10"},
      {{1, 4, 8, 8}, [](Conv2dParams& p) { p.dilation_w = 5; }, "dilated kernel 3x11"},
      {{1, 4, 8, 8},
       [](Conv2dParams& p) {
         p.activation = Activation::kClip;
         p.clip_min = 2.0f;
         p.clip_max = 1.0f;
       },
       "clip_min <= clip_max"},
  };
  for (const auto& b : bad) {
    Conv2dParams p = ok;
    b.edit(p);
    expect_invalid([&] { conv2d_output_shape(b.x, cw, p); }, b.needle);
    // The kernels refuse it the same way before touching any data.
    const Tensor xt = Tensor::zeros(b.x, DType::kF32);
    Tensor y = Tensor::zeros({1, 6, 8, 8}, DType::kF32);
    expect_invalid([&] { ref::conv2d(xt, cw, nullptr, p, y); }, b.needle);
    expect_invalid([&] { conv2d(xt, cw, nullptr, p, y); }, b.needle);
  }
  // A wrong output tensor and wrong weights.
  const Tensor xt = Tensor::zeros(x, DType::kF32);
  Tensor y = Tensor::zeros({1, 6, 8, 7}, DType::kF32);
  expect_invalid([&] { ref::conv2d(xt, cw, nullptr, ok, y); }, "shape (1, 6, 8, 8)");
  expect_invalid([&] { conv2d(xt, cw, nullptr, ok, y); }, "shape (1, 6, 8, 8)");
  expect_invalid(
      [] {
        conv_weights(test::gaussian({6, 2, 3}, 1), Format::kInt8);
      },
      "[OC, C/groups, KH, KW]");
  expect_invalid(
      [] {
        conv_weights(Tensor::zeros({6, 0, 3, 3}, DType::kF32), Format::kFp32);
      },
      "every dimension >= 1");
}

}  // namespace
}  // namespace dynaprec
