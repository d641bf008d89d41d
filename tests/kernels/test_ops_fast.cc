// The Highway kernels (src/kernels/cpu/ops_hwy.cc) against the reference on every SIMD target
// this CPU has (capped by DYNAPREC_ISA): bit for bit where ops_hwy.cc claims it, within its
// stated tolerances elsewhere. Lengths around the vector widths (tails), every broadcast layout,
// strided inputs, special values (NaN, ±inf, ±0, subnormals), and calls large enough to be split
// across the thread pool.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <random>

#include "dynaprec/conv.h"
#include "dynaprec/error.h"
#include "dynaprec/ops.h"
#include "kernels/cpu/ops_hwy.h"
#include "kernels/ops_test_util.h"
#include "test_util.h"

namespace dynaprec {
namespace {

using test::same_bits_or_nan;
using test::ulp_distance;

constexpr float kInf = std::numeric_limits<float>::infinity();
constexpr float kNaN = std::numeric_limits<float>::quiet_NaN();

// Random values with special ones mixed in (every 7th element).
Tensor nasty(Shape shape, uint32_t seed, float range = 8.0f) {
  Tensor t = test::random_f32(std::move(shape), seed, -range, range);
  const float specials[] = {kNaN,    kInf,  -kInf,  0.0f, -0.0f, 1e-40f,
                            -3e-39f, 1e30f, -1e30f, 0.5f, -6.0f};
  std::mt19937 rng(seed + 1000);
  for (int64_t i = 0; i < t.numel(); i += 7)
    t.data_as<float>()[i] = specials[rng() % std::size(specials)];
  return t;
}

void expect_same_bits(const Tensor& got, const Tensor& want, const std::string& what) {
  ASSERT_EQ(got.shape(), want.shape()) << what;
  ASSERT_EQ(got.dtype(), want.dtype()) << what;
  for (int64_t i = 0; i < got.numel(); ++i)
    ASSERT_TRUE(same_bits_or_nan(got.data_as<float>()[i], want.data_as<float>()[i]))
        << what << " at " << i << ": " << got.data_as<float>()[i] << " vs "
        << want.data_as<float>()[i];
}

std::string shapes_str(const Shape& a, const Shape& b) {
  return shape_str(a) + " op " + shape_str(b);
}

TEST(OpsFast, BinaryBroadcastLayoutsBitForBit) {
  const std::vector<std::pair<Shape, Shape>> layouts = {{{17}, {17}},
                                                        {{3, 33}, {3, 33}},
                                                        {{5, 7}, {}},
                                                        {{}, {4, 9}},
                                                        {{6, 31}, {31}},
                                                        {{31}, {6, 31}},
                                                        {{6, 19}, {6, 1}},
                                                        {{6, 1}, {1, 19}},
                                                        {{2, 3, 5, 7}, {3, 1, 1}},
                                                        {{2, 1, 5, 1}, {4, 1, 3}},
                                                        {{1}, {1, 1}},
                                                        {{2, 16, 16}, {16, 1}},
                                                        {{1, 300, 400}, {400}},
                                                        {{70001}, {1}},
                                                        {{2, 40000}, {2, 40000}}};
  const BinaryOp ops[] = {BinaryOp::kAdd, BinaryOp::kSub, BinaryOp::kMul,
                          BinaryOp::kDiv, BinaryOp::kMax, BinaryOp::kMin};
  size_t targets = 0;
  test::for_each_simd_target([&](const std::string& target) {
    ++targets;
    uint32_t seed = 1;
    for (const auto& [sa, sb] : layouts) {
      const Tensor a = nasty(sa, seed++), b = nasty(sb, seed++);
      for (BinaryOp op : ops) {
        const std::string what =
            target + " " + std::string(binary_op_name(op)) + " " + shapes_str(sa, sb);
        const Tensor want = ref::binary(op, a, b);
        expect_same_bits(binary(op, a, b), want, what);
        if (a.rank() >= 2)
          expect_same_bits(binary(op, test::strided_copy(a), b), want, what + " strided");
      }
    }
  });
  EXPECT_GE(targets, 1u);
}

// Pow by a scalar 2 takes the product path: the reference's bits (its square is a product too),
// for exponents shaped [], [1] and [1, 1, 1]; other exponents and a wider exponent rank stay the
// reference's.
TEST(OpsFast, PowBySquareIsTheReferences) {
  const Tensor a = nasty({3, 40, 120}, 91);
  for (const Shape& es : {Shape{}, Shape{1}, Shape{1, 1, 1}, Shape{1, 1, 1, 1}})
    for (float e : {2.0f, 3.0f, 0.5f}) {
      Tensor b = Tensor::zeros(es, DType::kF32);
      b.data_as<float>()[0] = e;
      const Tensor got = binary(BinaryOp::kPow, a, b), want = ref::binary(BinaryOp::kPow, a, b);
      expect_same_bits(got, want, "Pow " + std::to_string(e) + " " + shape_str(es));
    }
}

// add_scaled (a + a·b) on the binary layouts: the reference's Add(a, Mul(a, b)), bit for bit.
TEST(OpsFast, AddScaledIsAddOfMulBitForBit) {
  const std::vector<std::pair<Shape, Shape>> layouts = {{{17}, {17}},
                                                        {{5, 7}, {}},
                                                        {{6, 19}, {6, 1}},
                                                        {{2, 3, 5, 7}, {3, 1, 1}},
                                                        {{1, 96, 9, 41}, {1, 96, 1, 1}},
                                                        {{6, 1}, {1, 19}},
                                                        {{70001}, {1}}};
  test::for_each_simd_target([&](const std::string& target) {
    uint32_t seed = 300;
    for (const auto& [sa, sb] : layouts) {
      const Tensor a = nasty(sa, seed++), b = nasty(sb, seed++);
      const std::string what = target + " AddScaled " + shapes_str(sa, sb);
      const Tensor want = ref::binary(BinaryOp::kAdd, a, ref::binary(BinaryOp::kMul, a, b));
      expect_same_bits(ref::add_scaled(a, b), want, what + " ref");
      expect_same_bits(add_scaled(a, b), want, what);
      if (a.rank() >= 2)
        expect_same_bits(add_scaled(test::strided_copy(a), b), want, what + " strided");
    }
  });
  EXPECT_THROW(add_scaled(Tensor::zeros({3}, DType::kI32), Tensor::zeros({3}, DType::kI32)), Error);
}

TEST(OpsFast, BinaryKernelTails) {
  // Every run layout (vector-vector, vector-scalar, scalar-vector, scalar-scalar) at every
  // length up to 70: the tails of every vector width.
  const Tensor a = nasty({70}, 11), b = nasty({70}, 12);
  const float* pa = a.data_as<float>();
  const float* pb = b.data_as<float>();
  test::for_each_simd_target([&](const std::string& target) {
    for (BinaryOp op : {BinaryOp::kAdd, BinaryOp::kDiv, BinaryOp::kMax, BinaryOp::kMin})
      for (int64_t n = 1; n <= 70; ++n)
        for (int layout = 0; layout < 4; ++layout) {
          const int64_t sa = layout & 1 ? 0 : 1, sb = layout & 2 ? 0 : 1;
          std::vector<float> got(static_cast<size_t>(n) + 1, 42.0f);  // +1: no write past n
          cpu::binary_f32(op, pa, pb, got.data(), {{n}, {sa}, {sb}});
          const Tensor ta = test::f32({sa ? n : 1}, std::vector<float>(pa, pa + (sa ? n : 1)));
          const Tensor tb = test::f32({sb ? n : 1}, std::vector<float>(pb, pb + (sb ? n : 1)));
          const Tensor want = ref::binary(op, ta, tb);
          for (int64_t i = 0; i < n; ++i)
            ASSERT_TRUE(same_bits_or_nan(got[static_cast<size_t>(i)],
                                         want.data_as<float>()[want.numel() == 1 ? 0 : i]))
                << target << " " << binary_op_name(op) << " n=" << n << " layout " << layout;
          ASSERT_EQ(got.back(), 42.0f) << target << " wrote past n=" << n;
        }
  });
}

UnaryParams odd_params() {
  UnaryParams p;
  p.hard_sigmoid_alpha = 0.3f;
  p.hard_sigmoid_beta = 0.45f;
  p.leaky_relu_alpha = 0.07f;
  p.clip_min = -1.5f;
  p.clip_max = 2.25f;
  return p;
}

TEST(OpsFast, ExactUnaryOpsBitForBit) {
  const UnaryOp ops[] = {UnaryOp::kNeg,         UnaryOp::kAbs,       UnaryOp::kSqrt,
                         UnaryOp::kRelu,        UnaryOp::kLeakyRelu, UnaryOp::kClip,
                         UnaryOp::kHardSigmoid, UnaryOp::kHardSwish};
  const Tensor big = nasty({3, 50000}, 21);  // split across the pool
  test::for_each_simd_target([&](const std::string& target) {
    for (UnaryOp op : ops)
      for (const UnaryParams& p : {UnaryParams{}, odd_params()}) {
        const std::string what = target + " " + std::string(unary_op_name(op));
        for (int64_t n = 0; n <= 40; ++n) {
          const Tensor x = nasty({n}, static_cast<uint32_t>(n) + 100);
          expect_same_bits(unary(op, x, p), ref::unary(op, x, p), what + " n=" + std::to_string(n));
        }
        expect_same_bits(unary(op, big, p), ref::unary(op, big, p), what + " big");
        const Tensor s = test::strided_copy(nasty({5, 9}, 7));
        expect_same_bits(unary(op, s, p), ref::unary(op, s, p), what + " strided");
      }
  });
}

// Inputs for the approximated functions: a fine grid over the interesting range, random values
// over the whole float range, and the special values.
std::vector<float> approx_inputs() {
  std::vector<float> v;
  for (float x = -110.0f; x <= 110.0f; x += 0.00731f) v.push_back(x);
  std::mt19937 rng(5);
  for (int i = 0; i < 20000; ++i) {
    v.push_back(std::bit_cast<float>(static_cast<uint32_t>(rng())));  // any bit pattern
    v.push_back(
        std::ldexp(static_cast<float>(rng() % 1000) / 1000.0f, -static_cast<int>(rng() % 140)));
  }
  for (float s : {kNaN, kInf, -kInf, 0.0f, -0.0f, 88.72283f, 88.72284f, 88.7229f, -87.33654f,
                  -103.97208f, -104.0f, -104.1f, 9.01f, -9.01f, 18.72f, 1e-30f, -1e-30f, 1e-45f})
    v.push_back(s);
  return v;
}

TEST(OpsFast, ApproximatedUnaryOpsWithinTheirUlpBounds) {
  // The bounds derived in ops_hwy.cc's header comment.
  const std::pair<UnaryOp, int64_t> ops[] = {
      {UnaryOp::kExp, 2}, {UnaryOp::kSigmoid, 6}, {UnaryOp::kTanh, 6}};
  const std::vector<float> in = approx_inputs();
  const Tensor x = test::f32({static_cast<int64_t>(in.size())}, in);
  test::for_each_simd_target([&](const std::string& target) {
    for (const auto& [op, bound] : ops) {
      const Tensor got = unary(op, x), want = ref::unary(op, x);
      int64_t worst = 0;
      size_t at = 0;
      for (size_t i = 0; i < in.size(); ++i) {
        const int64_t d = ulp_distance(got.data_as<float>()[i], want.data_as<float>()[i]);
        if (d > worst) worst = d, at = i;
      }
      if (std::getenv("OPS_PRINT_ULPS"))
        printf("%s %s worst %lld ulp at x=%g\n", target.c_str(),
               std::string(unary_op_name(op)).c_str(), (long long)worst, in[at]);
      EXPECT_LE(worst, bound) << target << " " << unary_op_name(op) << " at x=" << in[at] << ": "
                              << got.data_as<float>()[at] << " vs " << want.data_as<float>()[at];
    }
  });
}

void check_softmax_rows(const Tensor& got, const Tensor& want, int64_t len, bool log,
                        const std::string& what) {
  ASSERT_EQ(got.shape(), want.shape()) << what;
  const double u = std::ldexp(1.0, -24);
  int64_t nonzero = 0;
  for (int64_t i = 0; i < got.numel(); ++i) {
    const float g = got.data_as<float>()[i], w = want.data_as<float>()[i];
    if (std::isnan(w) || std::isinf(w)) {
      ASSERT_TRUE(same_bits_or_nan(g, w)) << what << " at " << i << ": " << g << " vs " << w;
      continue;
    }
    const double tol = log ? double(len + 8) * u + 2 * u * std::fabs(w)
                           : double(len + 8) * u * std::fabs(w) + 1e-44;
    ASSERT_LE(std::fabs(double(g) - w), tol) << what << " at " << i << ": " << g << " vs " << w;
    nonzero += g != 0.0f;
  }
  if (len > 1) {  // zero-trust (a log-softmax of one value is 0)
    ASSERT_GT(nonzero, got.numel() / 4) << what << ": mostly zeros";
  }
}

TEST(OpsFast, SoftmaxLastAxisWithinTolerance) {
  const std::vector<Shape> shapes = {{1, 1},     {3, 2},    {4, 7},      {2, 16}, {5, 17},
                                     {2, 3, 33}, {1, 1000}, {2, 100000}, {70, 1}};
  test::for_each_simd_target([&](const std::string& target) {
    uint32_t seed = 50;
    for (const Shape& s : shapes)
      for (float range : {1.0f, 30.0f}) {
        const Tensor x = test::random_f32(s, seed++, -range, range);
        const int64_t len = s.back();
        const std::string what = target + " " + shape_str(s) + " range " + std::to_string(range);
        check_softmax_rows(softmax(x, -1), ref::softmax(x, -1), len, false, what);
        check_softmax_rows(log_softmax(x, -1), ref::log_softmax(x, -1), len, true, what + " log");
        if (s.size() == 3) {  // legacy axis 1 flattens (3, 33) into rows of 99
          check_softmax_rows(softmax_legacy(x, 1), ref::softmax_legacy(x, 1), 99, false,
                             what + " legacy");
          check_softmax_rows(softmax(test::strided_copy(x), 2), ref::softmax(x, 2), len, false,
                             what + " strided");
        }
      }
    // Rows with -inf, +inf and NaN entries: the same NaNs, zeros and ones as the reference.
    const Tensor sp = test::f32({4, 3}, {-kInf, 1, 2, kInf, 1, 2, kNaN, 0, 0, -kInf, -kInf, 5});
    const Tensor got = softmax(sp, 1), want = ref::softmax(sp, 1);
    for (int i = 0; i < 12; ++i) {
      const float g = got.data_as<float>()[i], w = want.data_as<float>()[i];
      EXPECT_TRUE(std::isnan(w) ? std::isnan(g) : std::fabs(g - w) <= 1e-6f) << target << " " << i;
    }
  });
}

TEST(OpsFast, ReductionsOverTrailingAxes) {
  struct Case {
    Shape shape;
    std::vector<int64_t> axes;
  };
  const std::vector<Case> cases = {
      {{7}, {0}},      {{3, 17}, {1}},        {{4, 5, 6}, {-1, -2}}, {{2, 3, 4, 5}, {}},
      {{1, 33}, {-1}}, {{65, 1}, {1}},        {{2, 70000}, {1}},     {{300, 300}, {1}},
      {{3, 0}, {1}},   {{2, 8, 4, 4}, {2, 3}}};
  test::for_each_simd_target([&](const std::string& target) {
    uint32_t seed = 70;
    for (const Case& c : cases)
      for (ReduceOp op : {ReduceOp::kSum, ReduceOp::kMean, ReduceOp::kMax, ReduceOp::kMin})
        for (bool special : {false, true}) {
          const Tensor x = special ? nasty(c.shape, seed++) : test::random_f32(c.shape, seed++);
          const std::string what = target + " " + std::string(reduce_op_name(op)) + " " +
                                   shape_str(c.shape) + (special ? " special" : "");
          const Tensor got = reduce(op, x, c.axes, false), want = ref::reduce(op, x, c.axes, false);
          ASSERT_EQ(got.shape(), want.shape()) << what;
          // Σ|x| and the count per output, for the summation bound.
          const int64_t outs = want.numel(),
                        len = outs ? x.numel() / std::max<int64_t>(outs, 1) : 0;
          for (int64_t i = 0; i < outs; ++i) {
            const float g = got.data_as<float>()[i], w = want.data_as<float>()[i];
            if (op == ReduceOp::kMax || op == ReduceOp::kMin || std::isnan(w) || std::isinf(w)) {
              // Exact; only the sign of a zero may differ (+0 and -0 both present).
              ASSERT_TRUE(std::isnan(w) ? std::isnan(g) : g == w)
                  << what << " at " << i << ": " << g << " vs " << w;
              continue;
            }
            double mag = 0;
            for (int64_t k = 0; k < len; ++k)
              mag += std::fabs(double(x.data_as<float>()[i * len + k]));
            if (op == ReduceOp::kMean) mag /= double(len);
            const double tol =
                double(len) * std::ldexp(1.0, -24) * mag + std::ldexp(std::fabs(w), -23);
            ASSERT_LE(std::fabs(double(g) - w), tol)
                << what << " at " << i << ": " << g << " vs " << w;
          }
        }
    const Tensor gap = test::random_f32({2, 3, 7, 5}, 99);
    const Tensor got = global_average_pool(gap), want = ref::global_average_pool(gap);
    for (int64_t i = 0; i < got.numel(); ++i)
      EXPECT_NEAR(got.data_as<float>()[i], want.data_as<float>()[i], 1e-6f) << target;
  });
}

TEST(OpsFast, PoolingBitForBit) {
  // Max and average pooling over two spatial dims against the reference: kernels, strides,
  // dilations, asymmetric pads, auto_pad, ceil_mode, count_include_pad, special values, and a
  // call large enough to be split across the pool; 3-D inputs take the reference itself.
  struct Case {
    Shape x;
    PoolParams p;
  };
  auto pp = [](std::vector<int64_t> k, std::vector<int64_t> s, std::vector<int64_t> pads,
               std::vector<int64_t> d = {}, AutoPad ap = AutoPad::kNotSet, bool ceil = false) {
    PoolParams p;
    p.kernel = std::move(k);
    p.strides = std::move(s);
    p.pads = std::move(pads);
    p.dilations = std::move(d);
    p.auto_pad = ap;
    p.ceil_mode = ceil;
    return p;
  };
  const std::vector<Case> cases = {
      {{1, 480, 3, 80}, pp({3, 2}, {3, 2}, {})},  // the recognizer's AveragePool
      {{2, 3, 7, 9}, pp({3, 3}, {2, 2}, {1, 1, 1, 1})},
      {{1, 4, 8, 5}, pp({2, 3}, {1, 2}, {0, 1, 1, 2})},
      {{1, 2, 9, 9}, pp({3, 2}, {2, 3}, {}, {2, 1})},
      {{1, 3, 10, 7}, pp({3, 3}, {2, 2}, {}, {}, AutoPad::kSameUpper)},
      {{1, 3, 10, 7}, pp({4, 3}, {3, 2}, {}, {}, AutoPad::kSameLower)},
      {{1, 2, 11, 6}, pp({3, 2}, {2, 2}, {1, 0, 1, 1}, {}, AutoPad::kNotSet, true)},
      {{1, 1, 1, 1}, pp({1, 1}, {}, {})},
      {{1, 32, 40, 40}, pp({2, 2}, {2, 2}, {})},  // split across the pool
      {{1, 3, 12}, pp({3}, {2}, {1, 1})},         // one spatial dim: the reference
  };
  int seed = 0;
  for (const Case& c : cases)
    for (bool include_pad : {false, true}) {
      PoolParams p = c.p;
      p.count_include_pad = include_pad;
      const Tensor x = nasty(c.x, static_cast<uint32_t>(500 + seed++));
      const std::string what =
          shape_str(c.x) + " k" + shape_str(p.kernel) + (include_pad ? " include_pad" : "");
      expect_same_bits(max_pool(x, p), ref::max_pool(x, p), "MaxPool " + what);
      expect_same_bits(average_pool(x, p), ref::average_pool(x, p), "AveragePool " + what);
    }
  // A window of NaN only: NaN from both.
  Tensor all_nan = Tensor::zeros({1, 1, 2, 2}, DType::kF32);
  std::fill_n(all_nan.data_as<float>(), 4, kNaN);
  EXPECT_TRUE(std::isnan(max_pool(all_nan, pp({2, 2}, {}, {})).data_as<float>()[0]));
  // Errors are the reference's.
  EXPECT_THROW(average_pool(test::random_f32({1, 1, 4, 4}, 1), pp({5, 5}, {}, {})), Error);
}

TEST(OpsFast, ConvActivationRowsBitForBit) {
  // activation_row_f32 (apply_activation_n) against apply_activation value by value, on every
  // SIMD target: each activation with and without the affine after it, special values, and
  // every length up to 70 (the tails).
  const Tensor x = nasty({1, 70}, 77, 9.0f);
  const Activation acts[] = {Activation::kNone, Activation::kRelu, Activation::kClip,
                             Activation::kSigmoid, Activation::kHardSwish};
  test::for_each_simd_target([&](const std::string& target) {
    for (Activation a : acts)
      for (bool affine : {false, true})
        for (int64_t len = 0; len <= 70; ++len) {
          Conv2dParams p;
          p.activation = a;
          p.clip_min = -0.5f;
          p.clip_max = 2.25f;
          p.post_affine = affine;
          p.post_scale = -0.8125f;
          p.post_shift = 0.3125f;
          std::vector<float> got(x.data_as<float>(), x.data_as<float>() + len);
          apply_activation_n(got.data(), len, p);
          for (int64_t i = 0; i < len; ++i) {
            const float want = apply_activation(x.data_as<float>()[i], p);
            ASSERT_TRUE(same_bits_or_nan(got[static_cast<size_t>(i)], want))
                << target << " activation " << static_cast<int>(a) << " affine " << affine
                << " len " << len << " at " << i << ": " << got[static_cast<size_t>(i)] << " vs "
                << want;
          }
        }
  });
}

TEST(OpsFast, SigmoidExpAccurateAndTheSameOnEveryTarget) {
  // activation_exp against std::exp in double: within 2 ulp on [-87, 88] (every 1/4096), 0 and
  // +inf beyond, NaN kept; and the sigmoid rows bit for bit with the scalar form on every SIMD
  // target over the same sweep (the vector exp is the scalar one operation for operation).
  std::vector<float> xs;
  for (int i = -100 * 4096; i <= 100 * 4096; ++i) xs.push_back(static_cast<float>(i) / 4096.0f);
  for (float v : {0.0f, -0.0f, 1e-30f, -1e-30f, 87.0f, -87.0f, 88.0f, 88.5f, -87.5f,
                  std::numeric_limits<float>::infinity(), -std::numeric_limits<float>::infinity(),
                  std::numeric_limits<float>::quiet_NaN()})
    xs.push_back(v);
  double worst_ulp = 0;
  for (float x : xs) {
    const float got = activation_exp(x);
    if (std::isnan(x)) {
      ASSERT_TRUE(std::isnan(got));
    } else if (x < -87.0f) {
      ASSERT_EQ(got, 0.0f) << x;
    } else if (x > 88.0f) {
      ASSERT_EQ(got, std::numeric_limits<float>::infinity()) << x;
    } else {
      const double want = std::exp(static_cast<double>(x));
      const double ulp =
          std::nextafter(static_cast<float>(want), INFINITY) - static_cast<float>(want);
      worst_ulp = std::max(worst_ulp, std::fabs(got - want) / ulp);
    }
  }
  EXPECT_LE(worst_ulp, 2.0);
  test::for_each_simd_target([&](const std::string& target) {
    Conv2dParams p;
    p.activation = Activation::kSigmoid;
    std::vector<float> got = xs;
    apply_activation_n(got.data(), static_cast<int64_t>(got.size()), p);
    for (size_t i = 0; i < xs.size(); ++i)
      ASSERT_TRUE(same_bits_or_nan(got[i], apply_activation(xs[i], p)))
          << target << " sigmoid(" << xs[i] << "): " << got[i];
  });
}

TEST(OpsFast, RowKernelTails) {
  // Every row length up to 70 (the tails of every vector width), three rows each, straight
  // through the kernels.
  const Tensor x = nasty({3, 70}, 31, 3.0f);
  test::for_each_simd_target([&](const std::string& target) {
    for (int64_t len = 0; len <= 70; ++len) {
      const Tensor rows = ref::slice(x, {0}, {len}, {1});
      const size_t n = static_cast<size_t>(len);
      for (ReduceOp op : {ReduceOp::kMax, ReduceOp::kMin}) {
        float got[4] = {0, 0, 0, 42};
        cpu::reduce_rows_f32(op, rows.data_as<float>(), got, 3, n);
        const Tensor want = ref::reduce(op, rows, {1}, false);
        for (int r = 0; r < 3; ++r) {
          const float w = want.data_as<float>()[r];
          ASSERT_TRUE(std::isnan(w) ? std::isnan(got[r]) : got[r] == w)
              << target << " " << reduce_op_name(op) << " len " << len << " row " << r;
        }
        ASSERT_EQ(got[3], 42.0f);
      }
      if (len == 0) continue;
      const Tensor clean = test::random_f32({3, len}, static_cast<uint32_t>(len));
      std::vector<float> got(3 * n + 1, 42.0f);
      for (bool log : {false, true}) {
        cpu::softmax_rows_f32(clean.data_as<float>(), got.data(), 3, n, log);
        const Tensor want = log ? ref::log_softmax(clean, 1) : ref::softmax(clean, 1);
        check_softmax_rows(test::f32({3, len}, {got.begin(), got.end() - 1}), want, len, log,
                           target + " len " + std::to_string(len));
        ASSERT_EQ(got.back(), 42.0f);
      }
    }
  });
}

TEST(OpsFast, BatchNormBitForBit) {
  const std::vector<Shape> shapes = {{2, 3},     {1, 4, 1, 1},   {2, 3, 5, 7},
                                     {1, 2, 17}, {3, 16, 33, 9}, {1, 3, 200, 200}};
  test::for_each_simd_target([&](const std::string& target) {
    uint32_t seed = 200;
    for (const Shape& s : shapes) {
      const Tensor x = nasty(s, seed++, 5.0f);
      const int64_t c = s[1];
      const Tensor scale = test::random_f32({c}, seed++), bias = test::random_f32({c}, seed++),
                   mean = test::random_f32({c}, seed++),
                   var = test::random_f32({c}, seed++, 0.0f, 3.0f);
      const std::string what = target + " " + shape_str(s);
      const Tensor want = ref::batch_norm_inference(x, scale, bias, mean, var, 1e-3f);
      expect_same_bits(batch_norm_inference(x, scale, bias, mean, var, 1e-3f), want, what);
      if (x.numel() < 100000)
        expect_same_bits(batch_norm_inference(test::strided_copy(x), scale, bias, mean, var, 1e-3f),
                         want, what + " strided");
    }
  });
}

// Resize's fast path (ops_hwy.cc) against the reference, bit for bit: every mode, coordinate
// mode and rounding, up- and downscaling by integer and odd factors on the last two axes (and on
// the channel axis and in rank 3/5, where more than two outer corners blend), sizes and scales,
// special values, strided inputs, and outputs large enough to be split across the pool.
TEST(OpsFast, ResizeMatchesReferenceBitForBit) {
  const CoordMode coords[] = {CoordMode::kHalfPixel, CoordMode::kAsymmetric,
                              CoordMode::kAlignCorners, CoordMode::kPytorchHalfPixel,
                              CoordMode::kHalfPixelSymmetric};
  const NearestMode nmodes[] = {NearestMode::kRoundPreferFloor, NearestMode::kRoundPreferCeil,
                                NearestMode::kFloor, NearestMode::kCeil};
  struct Case {
    Shape shape;
    std::vector<float> scales;
    std::vector<int64_t> sizes;
  };
  const std::vector<Case> cases = {
      {{1, 3, 5, 7}, {1, 1, 2, 2}, {}},
      {{1, 2, 4, 4}, {1, 1, 4, 4}, {}},
      {{2, 3, 3, 5}, {1, 1, 8, 8}, {}},
      {{1, 2, 7, 9}, {1, 1, 0.5f, 0.6f}, {}},
      {{1, 2, 5, 6}, {1, 1, 2.3f, 1.7f}, {}},
      {{1, 1, 6, 6}, {}, {1, 1, 11, 3}},
      {{1, 4, 3, 3}, {1, 2, 2, 2}, {}},  // the channel axis blends too
      {{2, 3, 5}, {1, 1.5f, 3}, {}},
      {{9}, {2.5f}, {}},
      {{1, 2, 2, 3, 4}, {1, 1, 2, 1.5f, 2}, {}},
      {{1, 16, 40, 40}, {1, 1, 2, 2}, {}},  // pool-sized
      {{1, 8, 20, 20}, {1, 1, 4, 4}, {}},
  };
  uint32_t seed = 1;
  for (const Case& c : cases) {
    const Tensor x = nasty(c.shape, seed++);
    for (ResizeMode mode : {ResizeMode::kNearest, ResizeMode::kLinear})
      for (CoordMode coord : coords)
        for (NearestMode nm : nmodes) {
          if (mode == ResizeMode::kLinear && nm != NearestMode::kRoundPreferFloor) continue;
          ResizeParams p;
          p.mode = mode;
          p.coord = coord;
          p.nearest = nm;
          p.scales = c.scales;
          p.sizes = c.sizes;
          const std::string what = shape_str(c.shape) + " mode " + std::to_string(int(mode)) +
                                   " coord " + std::to_string(int(coord)) + " nearest " +
                                   std::to_string(int(nm));
          expect_same_bits(resize(x, p), ref::resize(x, p), what);
          if (c.shape.size() == 4)
            expect_same_bits(resize(test::strided_copy(x), p), ref::resize(x, p),
                             what + " strided");
        }
  }
}

// concat_resized (each Resize written straight into its place in the Concat) against the
// reference's ops, bit for bit, on every SIMD target: nearest by 2, 4 and 8 (the vectorized
// rows, each with source rows repeated: the copy of the previous output row), by 3, linear mode,
// a part of channels that are not resized, batch 2 (the output runs interleave), a concat
// along H, and the fallbacks (along W, the last axis; mismatched shapes throw as the reference).
TEST(OpsFast, ConcatResizedIsResizeThenConcatBitForBit) {
  test::for_each_simd_target([&](const std::string& target) {
    uint32_t seed = 900;
    for (int64_t n : {1, 2})
      for (ResizeMode mode : {ResizeMode::kNearest, ResizeMode::kLinear}) {
        const Tensor a = nasty({n, 3, 5, 9}, seed++), b = nasty({n, 2, 10, 18}, seed++);
        const Tensor c = nasty({n, 4, 20, 36}, seed++), d = nasty({n, 1, 40, 72}, seed++);
        const Tensor e = nasty({n, 2, 8, 15}, seed++);
        auto params = [&](float s) {
          ResizeParams p;
          p.mode = mode;
          p.coord = CoordMode::kAsymmetric;
          p.nearest = NearestMode::kFloor;
          p.scales = {1, 1, s, s};
          return p;
        };
        const ResizeParams p8 = params(8), p4 = params(4), p2 = params(2), p3 = params(3);
        const std::vector<ConcatPart> parts = {
            {&a, &p8}, {&b, &p4}, {&c, &p2}, {&d, nullptr}, {&a, &p8}};
        const std::string what =
            target + " n " + std::to_string(n) + " mode " + std::to_string(static_cast<int>(mode));
        float y_amax = -2.0f;
        const Tensor got = concat_resized(parts, 1, &y_amax);
        expect_same_bits(got, ref::concat_resized(parts, 1), what);
        EXPECT_TRUE(
            same_bits_or_nan(y_amax, amax(got.data_as<float>(), static_cast<size_t>(got.numel()))))
            << what << ": " << y_amax;
        expect_same_bits(concat_resized({{&d, nullptr}, {&c, &p2}}, -3),
                         ref::concat_resized({{&d, nullptr}, {&c, &p2}}, -3), what + " axis -3");
        // Along H (f stretched 3x in H only), along W (the last axis: the two ops), and e (8 x
        // 15 by 3: 24 x 45) next to d (40 x 72): the reference's error.
        const Tensor f = nasty({n, 1, 7, 24}, seed++);
        ResizeParams ph = p3, pw = p3;
        ph.scales = {1, 1, 3, 1};
        pw.scales = {1, 1, 1, 3};
        expect_same_bits(concat_resized({{&f, &ph}, {&f, nullptr}}, 2),
                         ref::concat_resized({{&f, &ph}, {&f, nullptr}}, 2), what + " along H");
        expect_same_bits(concat_resized({{&f, &pw}, {&f, nullptr}}, 3),
                         ref::concat_resized({{&f, &pw}, {&f, nullptr}}, 3), what + " along W");
        EXPECT_THROW(concat_resized({{&e, &p3}, {&d, nullptr}}, 1), Error) << what;
      }
  });
}

// max |Y| from the fused passes on finite data (the largest value in one part only, each part
// in turn; every row of a resized part is measured), on every SIMD target.
TEST(OpsFast, FusedResizePassesReportMaxAbs) {
  test::for_each_simd_target([&](const std::string& target) {
    ResizeParams p2;
    p2.mode = ResizeMode::kNearest;
    p2.coord = CoordMode::kAsymmetric;
    p2.nearest = NearestMode::kFloor;
    p2.scales = {1, 1, 2, 2};
    for (int big = 0; big < 3; ++big)
      for (int64_t at : {0, 17, 59}) {
        Tensor a = test::random_f32({1, 3, 5, 12}, 40 + big, -1, 1);
        Tensor b = test::random_f32({1, 2, 10, 24}, 50 + big, -1, 1);
        Tensor c = test::random_f32({1, 2, 10, 24}, 60 + big, -1, 1);
        Tensor& t = big == 0 ? a : big == 1 ? b : c;
        t.data_as<float>()[at] = -7.5f;
        float y_amax = -2.0f;
        const Tensor y = concat_resized({{&a, &p2}, {&b, nullptr}, {&c, nullptr}}, 1, &y_amax);
        EXPECT_EQ(y_amax, 7.5f) << target << " part " << big << " at " << at;
        const Tensor e = test::random_f32({1, 3, 10, 24}, 70 + big, -1, 1);
        float r_amax = -2.0f;
        add_resized(e, a, p2, false, &r_amax);
        const Tensor want = ref::add_resized(e, a, p2, false);
        EXPECT_EQ(r_amax, amax(want.data_as<float>(), static_cast<size_t>(want.numel())))
            << target << " part " << big << " at " << at;
      }
  });
}

// add_resized (Add after Resize in one pass) against the reference's two ops, bit for bit, on
// every SIMD target: nearest upsampling by 2, 4 and 8 along the row (the vectorized rows, with
// rows longer than a vector and a scalar tail), by 3 and 1.5 (the gather), every rounding, the
// addend first or second, signed zeros and NaN; linear mode and an addend that broadcasts take
// the two ops.
TEST(OpsFast, AddResizedIsResizeThenAddBitForBit) {
  struct Case {
    Shape shape;
    std::vector<float> scales;
    Shape add;  // the addend's shape ({} = the output's)
  };
  const std::vector<Case> cases = {
      {{1, 3, 5, 40}, {1, 1, 2, 2}, {}},
      {{1, 2, 4, 9}, {1, 1, 4, 4}, {}},
      {{2, 3, 3, 21}, {1, 1, 8, 8}, {}},
      {{1, 2, 5, 7}, {1, 1, 3, 3}, {}},
      {{1, 2, 6, 10}, {1, 1, 1.5f, 1.5f}, {}},
      {{1, 16, 40, 40}, {1, 1, 2, 2}, {}},
      {{1, 3, 5, 40}, {1, 1, 2, 2}, {1, 3, 1, 80}},
  };
  test::for_each_simd_target([&](const std::string& target) {
    uint32_t seed = 700;
    for (const Case& c : cases) {
      Tensor x = nasty(c.shape, seed++);
      x.data_as<float>()[0] = -0.0f;
      for (ResizeMode mode : {ResizeMode::kNearest, ResizeMode::kLinear})
        for (NearestMode nm :
             {NearestMode::kRoundPreferFloor, NearestMode::kFloor, NearestMode::kCeil}) {
          ResizeParams p;
          p.mode = mode;
          p.coord = nm == NearestMode::kFloor ? CoordMode::kAsymmetric : CoordMode::kHalfPixel;
          p.nearest = nm;
          p.scales = c.scales;
          const Shape out = ref::resize(x, p).shape();
          Tensor a = nasty(c.add.empty() ? out : c.add, seed++);
          a.data_as<float>()[1] = -0.0f;
          for (bool first : {false, true}) {
            const std::string what = target + " " + shape_str(c.shape) + " mode " +
                                     std::to_string(int(mode)) + " nearest " +
                                     std::to_string(int(nm)) + (first ? " resized first" : "");
            const Tensor want = ref::add_resized(a, x, p, first);
            const Tensor r = ref::resize(x, p);
            expect_same_bits(
                want, first ? ref::binary(BinaryOp::kAdd, r, a) : ref::binary(BinaryOp::kAdd, a, r),
                what + " ref");
            float y_amax = -2.0f;
            const Tensor got = add_resized(a, x, p, first, &y_amax);
            expect_same_bits(got, want, what);
            // max |Y| from the fused pass (nearest, a of the output's shape), else -1; NaN in
            // the inputs gives a non-finite one.
            const float want_amax = amax(want.data_as<float>(), static_cast<size_t>(want.numel()));
            if (mode == ResizeMode::kNearest && c.add.empty())
              EXPECT_TRUE(std::bit_cast<uint32_t>(y_amax) == std::bit_cast<uint32_t>(want_amax) ||
                          (std::isnan(y_amax) && std::isnan(want_amax)))
                  << what << ": " << y_amax << " vs " << want_amax;
            else
              EXPECT_EQ(y_amax, -1.0f) << what;
          }
        }
    }
  });
}

// An AddScaled operand (x + x · s, s a per-row gate: [N, C, 1, 1], [C, 1, 1], [1, C, 1, 1],
// [N, 1, 1, 1]) computed inside add_resized (the addend) and concat_resized (a part as it is):
// the bits of add_scaled then the fused op, max |Y| from the pass, on every SIMD target, with
// NaN, infinities and signed zeros in x and s; a gate that varies along the row ([1, 1, 1, W])
// or widens x's shape takes the separate ops, with the same bits.
TEST(OpsFast, ScaledOperandsAreAddScaledThenTheFusedOpBitForBit) {
  test::for_each_simd_target([&](const std::string& target) {
    uint32_t seed = 1300;
    for (int64_t n : {1, 2})
      for (int64_t w : {5, 37}) {
        ResizeParams p2;
        p2.mode = ResizeMode::kNearest;
        p2.coord = CoordMode::kAsymmetric;
        p2.nearest = NearestMode::kFloor;
        p2.scales = {1, 1, 2, 2};
        const Tensor x = nasty({n, 3, 4, w}, seed++), a = nasty({n, 3, 8, 2 * w}, seed++);
        for (const Shape& gate : std::vector<Shape>{
                 {n, 3, 1, 1}, {3, 1, 1}, {1, 3, 1, 1}, {n, 1, 1, 1}, {1, 1, 1, 2 * w}}) {
          Tensor s = nasty(gate, seed++, 2.0f);
          s.data_as<float>()[0] = -0.0f;
          const std::string what = target + " n " + std::to_string(n) + " w " + std::to_string(w) +
                                   " gate " + shape_str(gate);
          for (bool first : {false, true}) {
            float y_amax = -2.0f;
            const Tensor got = add_resized(a, x, p2, first, &y_amax, &s);
            const Tensor want = ref::add_resized(a, x, p2, first, &s);
            const Tensor r = ref::resize(x, p2), as = ref::add_scaled(a, s);
            expect_same_bits(
                want,
                first ? ref::binary(BinaryOp::kAdd, r, as) : ref::binary(BinaryOp::kAdd, as, r),
                what + " ref");
            expect_same_bits(got, want, what);
            if (gate.back() == 1)
              EXPECT_TRUE(same_bits_or_nan(
                  y_amax, amax(want.data_as<float>(), static_cast<size_t>(want.numel()))))
                  << what << ": " << y_amax;
          }
          // Parts: the scaled map between a resized and a plain one, and twice.
          const Tensor sa = nasty(a.shape(), seed++);
          Tensor gs = nasty(Shape(gate.begin(), gate.end()), seed++, 2.0f);
          const std::vector<ConcatPart> parts = {
              {&x, &p2}, {&sa, nullptr, &gs}, {&a, nullptr}, {&sa, nullptr, &s}};
          float y_amax = -2.0f;
          const Tensor got = concat_resized(parts, 1, &y_amax);
          const Tensor want = ref::concat_resized(parts, 1);
          expect_same_bits(
              want,
              ref::concat({ref::resize(x, p2), ref::add_scaled(sa, gs), a, ref::add_scaled(sa, s)},
                          1),
              what + " concat ref");
          expect_same_bits(got, want, what + " concat");
          if (gate.back() == 1)
            EXPECT_TRUE(same_bits_or_nan(
                y_amax, amax(want.data_as<float>(), static_cast<size_t>(want.numel()))))
                << what << " concat: " << y_amax;
        }
        // A gate wider than the scaled operand: the separate ops (and their error) alike.
        const Tensor wide = nasty({n, 3, 8, 2 * w}, seed++), narrow = nasty({n, 3, 1, 1}, seed++);
        expect_same_bits(add_resized(narrow, x, p2, false, nullptr, &wide),
                         ref::add_resized(narrow, x, p2, false, &wide), "wide gate");
      }
    // Finite values: max |Y| is the scaled part's largest, every row measured.
    const Tensor b = test::random_f32({1, 4, 6, 40}, 5, -1, 1);
    Tensor big = test::random_f32({1, 4, 6, 40}, 6, -1, 1);
    big.data_as<float>()[3 * 240 + 5 * 40 + 39] = 9.0f;  // the last row's last value
    Tensor g = test::random_f32({1, 4, 1, 1}, 7, 0, 1);
    g.data_as<float>()[3] = 0.5f;
    float y_amax = -2.0f;
    concat_resized({{&b, nullptr}, {&big, nullptr, &g}}, 1, &y_amax);
    EXPECT_EQ(y_amax, 13.5f) << target;
  });
}

// Concat's block-copy path against the reference: every axis (negative too), several inputs,
// an empty one, a strided one, other dtypes.
TEST(OpsFast, ConcatMatchesReference) {
  const Tensor a = nasty({2, 3, 4, 5}, 11), b = nasty({2, 3, 4, 5}, 12);
  for (int64_t axis = -4; axis < 4; ++axis) {
    const int64_t ax = axis < 0 ? axis + 4 : axis;
    Shape sc = a.shape();
    sc[static_cast<size_t>(ax)] = 2;
    const Tensor c = nasty(sc, 13 + static_cast<uint32_t>(ax));
    sc[static_cast<size_t>(ax)] = 0;
    const Tensor e = Tensor::zeros(sc, DType::kF32);
    const std::vector<Tensor> in = {a, c, e, test::strided_copy(b)};
    expect_same_bits(concat(in, axis), ref::concat(in, axis), "axis " + std::to_string(axis));
  }
  Tensor i1 = Tensor::zeros({3, 2}, DType::kI64), i2 = Tensor::zeros({3, 1}, DType::kI64);
  for (int64_t i = 0; i < 6; ++i) i1.data_as<int64_t>()[i] = i * 7 - 3;
  for (int64_t i = 0; i < 3; ++i) i2.data_as<int64_t>()[i] = -i;
  const Tensor got = concat({i1, i2}, 1), want = ref::concat({i1, i2}, 1);
  ASSERT_EQ(got.shape(), want.shape());
  ASSERT_EQ(std::memcmp(got.data(), want.data(), want.nbytes()), 0);
  EXPECT_THROW(concat({a, Tensor::zeros({2, 3}, DType::kF32)}, 0), Error);
}

// Transpose, Slice and Expand (row copies of a strided view) against the reference's element
// copies, byte for byte: random ranks 1-6 and permutations, slices with negative starts and
// steps, broadcasts, a strided input, 1-, 2-, 4- and 8-byte dtypes, and copies large enough to
// go over the pool.
TEST(OpsFast, StridedViewsMatchReference) {
  std::mt19937 g(99);
  auto expect_same = [](const Tensor& got, const Tensor& want, const std::string& what) {
    ASSERT_EQ(got.shape(), want.shape()) << what;
    ASSERT_EQ(got.dtype(), want.dtype()) << what;
    ASSERT_EQ(std::memcmp(got.data(), want.data(), want.nbytes()), 0) << what;
  };
  auto as_dtype = [](const Tensor& f, DType dt) {
    Tensor t = Tensor::zeros(f.shape(), dt);
    auto* b = static_cast<uint8_t*>(t.data());
    const auto* src = static_cast<const uint8_t*>(f.data());
    for (size_t i = 0; i < t.nbytes(); ++i) b[i] = src[i % f.nbytes()] ^ static_cast<uint8_t>(i);
    return t;
  };
  for (int trial = 0; trial < 300; ++trial) {
    const int rank = 1 + static_cast<int>(g() % 6);
    Shape shape;
    for (int d = 0; d < rank; ++d) shape.push_back(1 + static_cast<int64_t>(g() % 5));
    const Tensor f = test::random_f32(shape, 500 + static_cast<uint32_t>(trial));
    const DType dts[] = {DType::kF32, DType::kI64, DType::kU8, DType::kF16};
    const DType dt = dts[trial % 4];
    Tensor x = dt == DType::kF32 ? f : as_dtype(f, dt);
    if (trial % 5 == 0 && dt == DType::kF32) x = test::strided_copy(x);
    const std::string what = "trial " + std::to_string(trial) + " " + shape_str(shape);
    std::vector<int64_t> perm(static_cast<size_t>(rank));
    for (int d = 0; d < rank; ++d) perm[static_cast<size_t>(d)] = d;
    std::shuffle(perm.begin(), perm.end(), g);
    expect_same(transpose(x, perm), ref::transpose(x, perm), what + " transpose");
    std::vector<int64_t> starts, ends, axes, steps;
    for (int d = 0; d < rank; ++d) {
      if (g() % 2) continue;
      const int64_t dim = shape[static_cast<size_t>(d)];
      const int64_t step = static_cast<int64_t>(g() % 5) - 2;
      axes.push_back(d);
      starts.push_back(static_cast<int64_t>(g() % static_cast<uint32_t>(2 * dim + 1)) - dim);
      ends.push_back(g() % 4 == 0
                         ? (step < 0 ? -1000 : 1000)
                         : static_cast<int64_t>(g() % static_cast<uint32_t>(2 * dim + 1)) - dim);
      steps.push_back(step == 0 ? 1 : step);
    }
    expect_same(slice(x, starts, ends, axes, steps), ref::slice(x, starts, ends, axes, steps),
                what + " slice");
    std::vector<int64_t> to;
    for (int64_t d : shape)
      to.push_back(d == 1 || g() % 3 == 0 ? 1 + static_cast<int64_t>(g() % 4) : d);
    to.insert(to.begin(), 2);
    for (int64_t& d : to)
      if (d != 1 && g() % 4 == 0) d = 1;  // broadcast back to the input's dim
    bool ok = true;
    for (size_t i = 0; i < shape.size(); ++i) {
      const int64_t a = shape[i], b = to[i + 1];
      ok = ok && (a == b || a == 1 || b == 1);
    }
    if (ok) {
      const std::vector<int64_t> tv(to.begin(), to.end());
      expect_same(expand(x, tv), ref::expand(x, tv), what + " expand");
    }
  }
  // Large enough for the pool: a 2-D transpose and a strided slice of 1 MiB and more.
  const Tensor big = test::random_f32({768, 640}, 7);
  expect_same(transpose(big, {1, 0}), ref::transpose(big, {1, 0}), "big transpose");
  expect_same(slice(big, {700, 0}, {-1000, 640}, {0, 1}, {-1, 3}),
              ref::slice(big, {700, 0}, {-1000, 640}, {0, 1}, {-1, 3}), "big slice");
  expect_same(expand(Tensor(big).clone(), {3, 768, 640}), ref::expand(big, {3, 768, 640}),
              "big expand");
  // Errors are the reference's.
  EXPECT_THROW(transpose(big, {0, 0}), Error);
  EXPECT_THROW(slice(big, {0}, {1}, {0}, {0}), Error);
  EXPECT_THROW(expand(big, {5, 640}), Error);
}

}  // namespace
}  // namespace dynaprec
