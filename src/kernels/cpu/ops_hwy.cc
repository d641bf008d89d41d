// Vectorized float32 ops (Highway, runtime dispatch over every attainable target) and the public
// functions of include/dynaprec/ops.h, which use them where they apply and the reference
// (src/kernels/ref/ops_ref*.cc) everywhere else.
//
// Bit-identical to the reference: Add, Sub, Mul, Div, Max, Min (any broadcast), Neg, Abs, Sqrt,
// Relu, LeakyRelu, Clip, HardSigmoid, HardSwish, batch norm, ReduceMax/ReduceMin. They evaluate
// the reference's expressions with the same IEEE operations in the same order (no FMA), and the
// vector tails run through a padded buffer, so every element takes the same path. Max/Min are
// compare + select (not vmaxps, whose NaN and ±0 rules differ from Highway's emulated targets).
// The only freedom left: a ReduceMax/Min over both +0 and -0 may return either zero.
//
// Within a tolerance (in ulps: the distance between the two floats' positions in the ordered
// list of floats; the tests check these bounds on every target, and the maxima observed over
// 6.6 million inputs, every 1021st float bit pattern plus a 1e-4 grid over [-120, 120], are
// given in brackets):
//   Exp      <= 2 ulp [1]: Highway documents its Exp within 1 ulp of std::exp (its test measures
//            against the C library) for x in [-FLT_MAX, 104]; we clamp to [-105, 89] first, which
//            keeps 0 below and +inf above the finite range, and restore NaN, which Exp maps to 0.
//            One more ulp of margin because that documented bound comes from sampling.
//   Sigmoid  <= 6 ulp [4]: 1 / (1 + e), e = Exp(-x). e differs from expf's by <= 1 ulp, i.e. a
//            relative 2^-23, which 1 + e passes on scaled by e / (1 + e) < 1; the addition and
//            the division round on both sides (4 · 2^-24 together): a relative 3 · 2^-23, which
//            is at most 6 ulps of the result (an ulp is 2^-24 to 2^-23 of a float's magnitude).
//   Tanh     <= 6 ulp [4]: Highway documents 4 ulp against std::tanh; 2 of margin as for Exp. We
//            clamp to [-20, 20] (tanh is ±1 in float beyond 9.01) and restore NaN.
//   Softmax  |y - y_ref| <= (len + 8) · 2^-24 · y_ref: each exponential within a relative
//            2^-23 of expf's (as for Exp), the fp32 sum of len positive terms within
//            (len - 1) · 2^-24 (the reference sums in double and rounds once), a division on
//            both sides: (len + 6) · 2^-24 together, plus margin.
//   LogSoftmax |y - y_ref| <= (len + 8) · 2^-24 + 2^-23 · |y_ref|: x - max is computed alike;
//            log of the sum is off by about the sum's relative error (above) plus its rounding,
//            and the final subtraction rounds on both sides.
//   ReduceSum/Mean |y - y_ref| <= len · 2^-24 · Σ|x| (+ 1 ulp): fp32 accumulation in lanes
//            against the reference's double sum.
#undef HWY_TARGET_INCLUDE
#define HWY_TARGET_INCLUDE "kernels/cpu/ops_hwy.cc"
#include <hwy/foreach_target.h>  // IWYU pragma: keep
// clang-format off
#include <hwy/highway.h>
#include <hwy/contrib/math/math-inl.h>
// clang-format on

#include <algorithm>
#include <atomic>
#include <bit>
#include <cmath>
#include <cstring>
#include <optional>

#include "dynaprec/conv.h"
#include "dynaprec/convert.h"
#include "dynaprec/cpu_features.h"
#include "dynaprec/thread_pool.h"
#include "kernels/cpu/activation_hwy-inl.h"
#include "kernels/cpu/ops_hwy.h"
#include "kernels/cpu/vnni_common.h"
#include "kernels/ref/ops_ref_util.h"

HWY_BEFORE_NAMESPACE();
namespace dynaprec::cpu::HWY_NAMESPACE {
namespace hn = hwy::HWY_NAMESPACE;
// Internal linkage for everything here, so that no helper can collide with another Highway file's
// in the shared dynaprec::cpu::HWY_NAMESPACE (HWY_EXPORT still finds the entry points).
namespace {
using DF = hn::ScalableTag<float>;
using VF = hn::Vec<DF>;

// Elements per parallel task; calls with fewer than two tasks' worth stay on the caller.
constexpr size_t kGrain = size_t{1} << 15;

template <class Fn>
void ForTasks(size_t tasks, size_t elements, const Fn& fn) {
  if (tasks <= 1 || elements < 2 * kGrain) {
    for (size_t t = 0; t < tasks; ++t) fn(t);
    return;
  }
  ThreadPool::default_pool().parallel_for(tasks, [&](size_t t) { fn(t); });
}

// fn(begin, end) over [0, n) in kGrain pieces.
template <class Fn>
void ForChunks(size_t n, const Fn& fn) {
  ForTasks((n + kGrain - 1) / kGrain, n,
           [&](size_t t) { fn(t * kGrain, std::min(n, (t + 1) * kGrain)); });
}

// y[i] = f(x[i]) for i < n. The tail goes through a padded buffer, so that every element takes
// the vector path (and gets the same bits as it would in a full vector).
template <class F>
HWY_INLINE void Map1(const float* x, float* y, size_t n, const F& f) {
  const DF d;
  const size_t N = hn::Lanes(d);
  size_t i = 0;
  for (; i + N <= n; i += N) hn::StoreU(f(hn::LoadU(d, x + i)), d, y + i);
  if (i < n) {
    HWY_ALIGN float in[hn::MaxLanes(d)] = {};
    HWY_ALIGN float out[hn::MaxLanes(d)];
    std::memcpy(in, x + i, (n - i) * sizeof(float));
    hn::Store(f(hn::Load(d, in)), d, out);
    std::memcpy(y + i, out, (n - i) * sizeof(float));
  }
}

// y[i] = f(a[i], b[i]) for i < n, the tail as in Map1.
template <class F>
HWY_INLINE void Map2(const float* a, const float* b, float* y, size_t n, const F& f) {
  const DF d;
  const size_t N = hn::Lanes(d);
  size_t i = 0;
  for (; i + N <= n; i += N) hn::StoreU(f(hn::LoadU(d, a + i), hn::LoadU(d, b + i)), d, y + i);
  if (i < n) {
    HWY_ALIGN float ia[hn::MaxLanes(d)] = {};
    HWY_ALIGN float ib[hn::MaxLanes(d)] = {};
    HWY_ALIGN float out[hn::MaxLanes(d)];
    std::memcpy(ia, a + i, (n - i) * sizeof(float));
    std::memcpy(ib, b + i, (n - i) * sizeof(float));
    hn::Store(f(hn::Load(d, ia), hn::Load(d, ib)), d, out);
    std::memcpy(y + i, out, (n - i) * sizeof(float));
  }
}

// The reference's NaN-propagating selects: (a > b || isnan(a)) ? a : b and the mirror.
HWY_INLINE VF MaxNaN(VF a, VF b) {
  return hn::IfThenElse(hn::Or(hn::Gt(a, b), hn::IsNaN(a)), a, b);
}
HWY_INLINE VF MinNaN(VF a, VF b) {
  return hn::IfThenElse(hn::Or(hn::Lt(a, b), hn::IsNaN(a)), a, b);
}

// e^x for every float x (see the header comment for the clamp and the NaN restore).
HWY_INLINE VF ExpF(DF d, VF x) {
  const VF xc = hn::Min(hn::Max(x, hn::Set(d, -105.0f)), hn::Set(d, 89.0f));
  return hn::IfThenElse(hn::IsNaN(x), x, hn::Exp(d, xc));
}

HWY_INLINE VF TanhF(DF d, VF x) {
  const VF xc = hn::Min(hn::Max(x, hn::Set(d, -20.0f)), hn::Set(d, 20.0f));
  return hn::IfThenElse(hn::IsNaN(x), x, hn::Tanh(d, xc));
}

// ---- Binary ---------------------------------------------------------------------------------

// One run of n outputs; sa/sb are the operands' strides along it (0: a repeated scalar, 1).
template <class Op>
void Run(const Op& op, const float* a, int64_t sa, const float* b, int64_t sb, float* y, size_t n) {
  const DF d;
  if (sa && sb) {
    Map2(a, b, y, n, op);
  } else if (sa) {
    const VF vb = hn::Set(d, *b);
    Map1(a, y, n, [&](VF va) { return op(va, vb); });
  } else if (sb) {
    const VF va = hn::Set(d, *a);
    Map1(b, y, n, [&](VF vb) { return op(va, vb); });
  } else {
    std::fill(y, y + n, hn::GetLane(op(hn::Set(d, *a), hn::Set(d, *b))));
  }
}

template <class Op>
void BinaryPlanned(const Op& op, const float* a, const float* b, float* y, const BinaryPlan& p) {
  const size_t rank = p.dims.size();
  const int64_t len = p.dims[rank - 1], sa = p.a_strides[rank - 1], sb = p.b_strides[rank - 1];
  int64_t runs = 1;
  for (size_t k = 0; k + 1 < rank; ++k) runs *= p.dims[k];
  const size_t total = static_cast<size_t>(runs * len);
  // The operands' offsets of the first element of run r (r in C order over the outer dims).
  auto offsets = [&](int64_t r, int64_t& oa, int64_t& ob) {
    oa = ob = 0;
    for (size_t k = rank - 1; k-- > 0;) {
      const int64_t i = r % p.dims[k];
      r /= p.dims[k];
      oa += i * p.a_strides[k];
      ob += i * p.b_strides[k];
    }
  };
  const auto grain = static_cast<int64_t>(kGrain);
  if (len >= grain) {  // long runs: split each run
    const int64_t pieces = (len + grain - 1) / grain;
    ForTasks(static_cast<size_t>(runs * pieces), total, [&](size_t t) {
      const int64_t r = static_cast<int64_t>(t) / pieces,
                    b0 = static_cast<int64_t>(t) % pieces * grain;
      int64_t oa, ob;
      offsets(r, oa, ob);
      Run(op, a + oa + b0 * sa, sa, b + ob + b0 * sb, sb, y + r * len + b0,
          static_cast<size_t>(std::min(len - b0, grain)));
    });
  } else {  // short runs: several per task
    const int64_t per = std::max<int64_t>(1, grain / std::max<int64_t>(len, 1));
    ForTasks(static_cast<size_t>((runs + per - 1) / per), total, [&](size_t t) {
      const int64_t r0 = static_cast<int64_t>(t) * per, r1 = std::min(runs, r0 + per);
      for (int64_t r = r0; r < r1; ++r) {
        int64_t oa, ob;
        offsets(r, oa, ob);
        Run(op, a + oa, sa, b + ob, sb, y + r * len, static_cast<size_t>(len));
      }
    });
  }
}

void BinaryF32(BinaryOp op, const float* a, const float* b, float* y, const BinaryPlan& p) {
  switch (op) {
    case BinaryOp::kAdd:
      return BinaryPlanned([](VF u, VF v) { return hn::Add(u, v); }, a, b, y, p);
    case BinaryOp::kSub:
      return BinaryPlanned([](VF u, VF v) { return hn::Sub(u, v); }, a, b, y, p);
    case BinaryOp::kMul:
      return BinaryPlanned([](VF u, VF v) { return hn::Mul(u, v); }, a, b, y, p);
    case BinaryOp::kDiv:
      return BinaryPlanned([](VF u, VF v) { return hn::Div(u, v); }, a, b, y, p);
    case BinaryOp::kMax:
      return BinaryPlanned([](VF u, VF v) { return MaxNaN(u, v); }, a, b, y, p);
    case BinaryOp::kMin:
      return BinaryPlanned([](VF u, VF v) { return MinNaN(u, v); }, a, b, y, p);
    default:
      HWY_ASSERT(false);
  }
}

// a + a·b: the product rounded, then the sum (ops.h add_scaled; no contraction, see CMakeLists).
void AddScaledF32(const float* a, const float* b, float* y, const BinaryPlan& p) {
  BinaryPlanned([](VF u, VF v) { return hn::Add(u, hn::Mul(u, v)); }, a, b, y, p);
}

// ---- Nearest upsampling rows (resize, add_resized) --------------------------------------------

// y[j] = r_j, or a_j + r_j (r_j + a_j with add_last), for j < n, where r_j = src[j / k] + 0.0f
// and a_j = add[j], or add[j] + add[j] · *add_scale where add_scale is given: a row of nearest
// upsampling by the integer factor k (1, 2, 4 or 8 here) along the row, the reference's "0.0 + x"
// (-0 becomes +0) and, with an addend, the Add after it (and the addend's AddScaled before it).
// max |y| (as float bits) into *amax_bits where given, taken while the row is stored.
void UpsampleRowF32(const float* HWY_RESTRICT src, const float* HWY_RESTRICT add,
                    const float* add_scale, bool add_last, float* HWY_RESTRICT y, size_t n,
                    size_t k, uint32_t* amax_bits) {
  const DF d;
  const hn::RebindToUnsigned<DF> du;
  const size_t N = hn::Lanes(d);
  const float s = add_scale ? *add_scale : 0.0f;
  const auto mask = hn::Set(du, 0x7FFFFFFFu);
  auto mx = hn::Zero(du);
  size_t j = 0;
  if (k <= N && N % k == 0) {
    HWY_ALIGN int32_t idx[hn::MaxLanes(d)];
    for (size_t i = 0; i < N; ++i) idx[i] = static_cast<int32_t>(i / k);
    const auto tbl = hn::SetTableIndices(d, idx);
    const VF zero = hn::Zero(d), sv = hn::Set(d, s);
    // Source vectors are read whole (N floats from src + j / k): only while they stay inside
    // the source row, n / k floats long.
    for (; j + N <= n && j / k + N <= (n + k - 1) / k; j += N) {
      const VF r = hn::Add(hn::TableLookupLanes(hn::LoadU(d, src + j / k), tbl), zero);
      VF out = r;
      if (add) {
        VF a = hn::LoadU(d, add + j);
        if (add_scale) a = hn::Add(a, hn::Mul(a, sv));
        out = add_last ? hn::Add(r, a) : hn::Add(a, r);
      }
      hn::StoreU(out, d, y + j);
      if (amax_bits) mx = hn::Max(mx, hn::And(hn::BitCast(du, out), mask));
    }
  }
  uint32_t m = hn::GetLane(hn::MaxOfLanes(du, mx));
  for (; j < n; ++j) {
    const float r = src[j / k] + 0.0f;
    const float a = add ? (add_scale ? add[j] + add[j] * s : add[j]) : 0.0f;
    y[j] = add ? (add_last ? r + a : a + r) : r;
    m = std::max(m, std::bit_cast<uint32_t>(y[j]) & 0x7FFFFFFFu);
  }
  if (amax_bits) *amax_bits = std::max(*amax_bits, m);
}

// y[j] = x[j] + x[j] · s for j < n (add_scaled by a scale constant along the row), max |y| (as
// float bits) into *amax_bits where given.
void ScaledRowF32(const float* HWY_RESTRICT x, float s, float* HWY_RESTRICT y, size_t n,
                  uint32_t* amax_bits) {
  const DF d;
  const hn::RebindToUnsigned<DF> du;
  const size_t N = hn::Lanes(d);
  const VF sv = hn::Set(d, s);
  const auto mask = hn::Set(du, 0x7FFFFFFFu);
  auto mx = hn::Zero(du);
  size_t j = 0;
  for (; j + N <= n; j += N) {
    const VF v = hn::LoadU(d, x + j);
    const VF out = hn::Add(v, hn::Mul(v, sv));
    hn::StoreU(out, d, y + j);
    mx = hn::Max(mx, hn::And(hn::BitCast(du, out), mask));
  }
  uint32_t m = hn::GetLane(hn::MaxOfLanes(du, mx));
  for (; j < n; ++j) {
    y[j] = x[j] + x[j] * s;
    m = std::max(m, std::bit_cast<uint32_t>(y[j]) & 0x7FFFFFFFu);
  }
  if (amax_bits) *amax_bits = std::max(*amax_bits, m);
}

// ---- Unary ----------------------------------------------------------------------------------

template <class F>
void UnaryMap(const float* x, float* y, size_t n, const F& f) {
  ForChunks(n, [&](size_t b0, size_t b1) { Map1(x + b0, y + b0, b1 - b0, f); });
}

// max(0, min(1, alpha·x + beta)) as the reference writes it: mul, add, two selects.
HWY_INLINE VF HardSigmoidV(DF d, VF x, float alpha, float beta) {
  VF t = hn::Add(hn::Mul(hn::Set(d, alpha), x), hn::Set(d, beta));
  t = hn::IfThenElse(hn::Gt(t, hn::Set(d, 1.0f)), hn::Set(d, 1.0f), t);
  return hn::IfThenElse(hn::Lt(t, hn::Zero(d)), hn::Zero(d), t);
}

void UnaryF32(UnaryOp op, const UnaryParams& p, const float* x, float* y, size_t n) {
  const DF d;
  switch (op) {
    case UnaryOp::kNeg:
      return UnaryMap(x, y, n, [](VF v) { return hn::Neg(v); });
    case UnaryOp::kAbs:
      return UnaryMap(x, y, n, [](VF v) { return hn::Abs(v); });
    case UnaryOp::kSqrt:
      return UnaryMap(x, y, n, [](VF v) { return hn::Sqrt(v); });
    case UnaryOp::kRelu:
      return UnaryMap(x, y, n,
                      [d](VF v) { return hn::IfThenElse(hn::Lt(v, hn::Zero(d)), hn::Zero(d), v); });
    case UnaryOp::kLeakyRelu:
      return UnaryMap(x, y, n, [d, a = p.leaky_relu_alpha](VF v) {
        return hn::IfThenElse(hn::Lt(v, hn::Zero(d)), hn::Mul(hn::Set(d, a), v), v);
      });
    case UnaryOp::kClip:
      return UnaryMap(x, y, n, [d, lo = p.clip_min, hi = p.clip_max](VF v) {
        const VF t = hn::IfThenElse(hn::Lt(v, hn::Set(d, lo)), hn::Set(d, lo), v);
        return hn::IfThenElse(hn::Gt(t, hn::Set(d, hi)), hn::Set(d, hi), t);
      });
    case UnaryOp::kHardSigmoid:
      return UnaryMap(x, y, n, [d, a = p.hard_sigmoid_alpha, b = p.hard_sigmoid_beta](VF v) {
        return HardSigmoidV(d, v, a, b);
      });
    case UnaryOp::kHardSwish:
      return UnaryMap(x, y, n,
                      [d](VF v) { return hn::Mul(v, HardSigmoidV(d, v, 1.0f / 6.0f, 0.5f)); });
    case UnaryOp::kExp:
      return UnaryMap(x, y, n, [d](VF v) { return ExpF(d, v); });
    case UnaryOp::kSigmoid:
      return UnaryMap(x, y, n, [d](VF v) {
        const VF one = hn::Set(d, 1.0f);
        return hn::Div(one, hn::Add(one, ExpF(d, hn::Neg(v))));
      });
    case UnaryOp::kTanh:
      return UnaryMap(x, y, n, [d](VF v) { return TanhF(d, v); });
    default:
      HWY_ASSERT(false);
  }
}

// ---- Rows: softmax and reductions -----------------------------------------------------------

// fn(r) for each of `rows` rows of `len` values, several rows per task when rows are short.
template <class Fn>
void ForRows(size_t rows, size_t len, const Fn& fn) {
  const size_t per = std::max<size_t>(1, kGrain / std::max<size_t>(len, 1));
  ForTasks((rows + per - 1) / per, rows * len, [&](size_t t) {
    for (size_t r = t * per; r < std::min(rows, (t + 1) * per); ++r) fn(r);
  });
}

// Folds the lanes of v with the NaN-propagating max (or min), in lane order.
HWY_INLINE float FoldLanes(DF d, VF v, bool is_max) {
  HWY_ALIGN float lanes[hn::MaxLanes(d)];
  hn::Store(v, d, lanes);
  float m = lanes[0];
  for (size_t i = 1; i < hn::Lanes(d); ++i) {
    const float u = lanes[i];
    if (is_max ? (u > m || std::isnan(u)) : (u < m || std::isnan(u))) m = u;
  }
  return m;
}

// Max (is_max) or min of n values; the tail padded with the identity (-inf or +inf).
HWY_INLINE float Extreme(const float* x, size_t n, bool is_max) {
  const DF d;
  const size_t N = hn::Lanes(d);
  const float id = is_max ? -INFINITY : INFINITY;
  VF m0 = hn::Set(d, id), m1 = m0;
  size_t i = 0;
  auto step = [is_max](VF m, VF v) { return is_max ? MaxNaN(v, m) : MinNaN(v, m); };
  for (; i + 2 * N <= n; i += 2 * N) {
    m0 = step(m0, hn::LoadU(d, x + i));
    m1 = step(m1, hn::LoadU(d, x + i + N));
  }
  for (; i + N <= n; i += N) m0 = step(m0, hn::LoadU(d, x + i));
  if (i < n) {
    HWY_ALIGN float in[hn::MaxLanes(d)];
    std::fill(in, in + N, id);
    std::memcpy(in, x + i, (n - i) * sizeof(float));
    m1 = step(m1, hn::Load(d, in));
  }
  return FoldLanes(d, step(m0, m1), is_max);
}

HWY_INLINE float Sum(const float* x, size_t n) {
  const DF d;
  const size_t N = hn::Lanes(d);
  VF s0 = hn::Zero(d), s1 = s0, s2 = s0, s3 = s0;
  size_t i = 0;
  for (; i + 4 * N <= n; i += 4 * N) {
    s0 = hn::Add(s0, hn::LoadU(d, x + i));
    s1 = hn::Add(s1, hn::LoadU(d, x + i + N));
    s2 = hn::Add(s2, hn::LoadU(d, x + i + 2 * N));
    s3 = hn::Add(s3, hn::LoadU(d, x + i + 3 * N));
  }
  for (; i + N <= n; i += N) s0 = hn::Add(s0, hn::LoadU(d, x + i));
  if (i < n) {
    HWY_ALIGN float in[hn::MaxLanes(d)] = {};
    std::memcpy(in, x + i, (n - i) * sizeof(float));
    s1 = hn::Add(s1, hn::Load(d, in));
  }
  return hn::GetLane(hn::SumOfLanes(d, hn::Add(hn::Add(s0, s1), hn::Add(s2, s3))));
}

void ReduceRowsF32(ReduceOp op, const float* x, float* y, size_t rows, size_t len) {
  ForRows(rows, len, [&](size_t r) {
    const float* row = x + r * len;
    switch (op) {
      case ReduceOp::kSum:
        y[r] = Sum(row, len);
        break;
      case ReduceOp::kMean:
        y[r] = Sum(row, len) / static_cast<float>(len);
        break;
      default:
        y[r] = Extreme(row, len, op == ReduceOp::kMax);
        break;
    }
  });
}

void SoftmaxRowsF32(const float* x, float* y, size_t rows, size_t len, bool log) {
  const DF d;
  const size_t N = hn::Lanes(d);
  ForRows(rows, len, [&](size_t r) {
    const float* px = x + r * len;
    float* py = y + r * len;
    const VF m = hn::Set(d, Extreme(px, len, true));
    // Σ exp(x - m), storing the exponentials unless log; the tail's padding lanes masked off.
    VF s0 = hn::Zero(d), s1 = s0;
    size_t i = 0;
    for (; i + N <= len; i += N) {
      const VF e = ExpF(d, hn::Sub(hn::LoadU(d, px + i), m));
      if (!log) hn::StoreU(e, d, py + i);
      s0 = hn::Add(s0, e);
    }
    if (i < len) {
      HWY_ALIGN float in[hn::MaxLanes(d)] = {};
      HWY_ALIGN float out[hn::MaxLanes(d)];
      std::memcpy(in, px + i, (len - i) * sizeof(float));
      const VF e = hn::IfThenElseZero(hn::FirstN(d, len - i), ExpF(d, hn::Sub(hn::Load(d, in), m)));
      hn::Store(e, d, out);
      if (!log) std::memcpy(py + i, out, (len - i) * sizeof(float));
      s1 = hn::Add(s1, e);
    }
    const float sum = hn::GetLane(hn::SumOfLanes(d, hn::Add(s0, s1)));
    if (log) {
      const VF ls = hn::Set(d, std::log(sum));
      Map1(px, py, len, [&](VF v) { return hn::Sub(hn::Sub(v, m), ls); });
    } else {
      const VF s = hn::Set(d, sum);
      Map1(py, py, len, [&](VF e) { return hn::Div(e, s); });
    }
  });
}

// ---- Batch norm -----------------------------------------------------------------------------

void BatchNormF32(const float* x, float* y, size_t batch, size_t channels, size_t inner,
                  const float* mean, const float* factor, const float* bias) {
  const DF d;
  ForRows(batch * channels, inner, [&](size_t plane) {
    const size_t c = plane % channels;
    const VF m = hn::Set(d, mean[c]), f = hn::Set(d, factor[c]), b = hn::Set(d, bias[c]);
    Map1(x + plane * inner, y + plane * inner, inner,
         [&](VF v) { return hn::Add(hn::Mul(hn::Sub(v, m), f), b); });
  });
}

// ---- Conv activations (apply_activation_n) --------------------------------------------------

// apply_activation's expressions lane by lane, bit for bit (activation_hwy-inl.h). One row, on
// the caller's thread.
void ActivationRowF32(float* y, size_t n, Activation act, float lo, float hi, bool affine,
                      float scale, float shift) {
  const DF d;
  const size_t lanes = hn::Lanes(d);
  const VecActivation<DF> activate(d, act, lo, hi, affine, scale, shift);
  size_t i = 0;
  for (; i + lanes <= n; i += lanes) hn::StoreU(activate(hn::LoadU(d, y + i)), d, y + i);
  Conv2dParams p;
  p.activation = act;
  p.clip_min = lo;
  p.clip_max = hi;
  p.post_affine = affine;
  p.post_scale = scale;
  p.post_shift = shift;
  for (; i < n; ++i) y[i] = apply_activation(y[i], p);
}

}  // namespace
}  // namespace dynaprec::cpu::HWY_NAMESPACE
HWY_AFTER_NAMESPACE();

#if HWY_ONCE
namespace dynaprec {
namespace cpu {
HWY_EXPORT(BinaryF32);
HWY_EXPORT(AddScaledF32);
HWY_EXPORT(UpsampleRowF32);
HWY_EXPORT(ScaledRowF32);
HWY_EXPORT(UnaryF32);
HWY_EXPORT(ReduceRowsF32);
HWY_EXPORT(SoftmaxRowsF32);
HWY_EXPORT(BatchNormF32);
HWY_EXPORT(ActivationRowF32);

bool binary_f32_supported(BinaryOp op) {
  switch (op) {
    case BinaryOp::kAdd:
    case BinaryOp::kSub:
    case BinaryOp::kMul:
    case BinaryOp::kDiv:
    case BinaryOp::kMax:
    case BinaryOp::kMin:
      return true;
    default:
      return false;
  }
}

bool unary_f32_supported(UnaryOp op) {
  switch (op) {
    case UnaryOp::kNeg:
    case UnaryOp::kAbs:
    case UnaryOp::kSqrt:
    case UnaryOp::kRelu:
    case UnaryOp::kLeakyRelu:
    case UnaryOp::kClip:
    case UnaryOp::kHardSigmoid:
    case UnaryOp::kHardSwish:
    case UnaryOp::kExp:
    case UnaryOp::kSigmoid:
    case UnaryOp::kTanh:
      return true;
    default:
      return false;
  }
}

namespace {
void check_plan(const BinaryPlan& plan) {
  DP_CHECK(!plan.dims.empty() && plan.a_strides.size() == plan.dims.size() &&
               plan.b_strides.size() == plan.dims.size(),
           "binary_f32: malformed plan");
  const int64_t ia = plan.a_strides.back(), ib = plan.b_strides.back();
  DP_CHECK((ia == 0 || ia == 1) && (ib == 0 || ib == 1), "binary_f32: inner strides not 0/1");
}
}  // namespace

void binary_f32(BinaryOp op, const float* a, const float* b, float* y, const BinaryPlan& plan) {
  DP_CHECK(binary_f32_supported(op), "binary_f32: unsupported op");
  check_plan(plan);
  (void)cpu_features(), HWY_DYNAMIC_DISPATCH(BinaryF32)(op, a, b, y, plan);
}
void upsample_row_f32(const float* src, const float* add, const float* add_scale, bool add_last,
                      float* y, size_t n, size_t k, uint32_t* amax_bits) {
  (void)cpu_features(),
      HWY_DYNAMIC_DISPATCH(UpsampleRowF32)(src, add, add_scale, add_last, y, n, k, amax_bits);
}
void scaled_row_f32(const float* x, float s, float* y, size_t n, uint32_t* amax_bits) {
  (void)cpu_features(), HWY_DYNAMIC_DISPATCH(ScaledRowF32)(x, s, y, n, amax_bits);
}
void add_scaled_f32(const float* a, const float* b, float* y, const BinaryPlan& plan) {
  check_plan(plan);
  (void)cpu_features(), HWY_DYNAMIC_DISPATCH(AddScaledF32)(a, b, y, plan);
}
void unary_f32(UnaryOp op, const UnaryParams& p, const float* x, float* y, size_t n) {
  DP_CHECK(unary_f32_supported(op), "unary_f32: unsupported op");
  (void)cpu_features(), HWY_DYNAMIC_DISPATCH(UnaryF32)(op, p, x, y, n);
}
void softmax_rows_f32(const float* x, float* y, size_t rows, size_t len, bool log) {
  (void)cpu_features(), HWY_DYNAMIC_DISPATCH(SoftmaxRowsF32)(x, y, rows, len, log);
}
void reduce_rows_f32(ReduceOp op, const float* x, float* y, size_t rows, size_t len) {
  DP_CHECK(op < ReduceOp::kCount, "reduce_rows_f32: unknown op");
  (void)cpu_features(), HWY_DYNAMIC_DISPATCH(ReduceRowsF32)(op, x, y, rows, len);
}
void batch_norm_f32(const float* x, float* y, size_t batch, size_t channels, size_t inner,
                    const float* mean, const float* factor, const float* bias) {
  (void)cpu_features(),
      HWY_DYNAMIC_DISPATCH(BatchNormF32)(x, y, batch, channels, inner, mean, factor, bias);
}

}  // namespace cpu

void activation_row_f32(float* y, int64_t n, Activation act, float clip_min, float clip_max,
                        bool affine, float scale, float shift) {
  if (n <= 0 || (act == Activation::kNone && !affine)) return;
  (void)cpu_features(),
      HWY_DYNAMIC_DISPATCH(cpu::ActivationRowF32)(y, static_cast<size_t>(n), act, clip_min,
                                                  clip_max, affine, scale, shift);
}

// ---- The public functions: the fast path where it applies, else the reference ---------------

namespace {

using opsutil::contiguous;

int64_t prod(const Shape& s, size_t from, size_t to) {
  int64_t p = 1;
  for (size_t i = from; i < to; ++i) p *= s[i];
  return p;
}

// The runs of a broadcast binary op: size-1 dims dropped, neighbours merged where both operands
// step through them as one (stride[outer] == stride[inner] · dim[inner]).
cpu::BinaryPlan plan_binary(const Tensor& a, const Tensor& b, const Shape& out) {
  const Shape sa = opsutil::broadcast_strides(a, out), sb = opsutil::broadcast_strides(b, out);
  cpu::BinaryPlan p;
  for (size_t d = 0; d < out.size(); ++d) {
    if (out[d] == 1) continue;
    if (!p.dims.empty() && p.a_strides.back() == sa[d] * out[d] &&
        p.b_strides.back() == sb[d] * out[d]) {
      p.dims.back() *= out[d];
      p.a_strides.back() = sa[d];
      p.b_strides.back() = sb[d];
    } else {
      p.dims.push_back(out[d]);
      p.a_strides.push_back(sa[d]);
      p.b_strides.push_back(sb[d]);
    }
  }
  if (p.dims.empty()) p = {{1}, {0}, {0}};  // one element
  return p;
}

}  // namespace

Tensor add_scaled(const Tensor& a, const Tensor& b) {
  if (a.dtype() != DType::kF32 || b.dtype() != DType::kF32) return ref::add_scaled(a, b);
  Tensor y = Tensor::empty(broadcast_shapes(a.shape(), b.shape(), "AddScaled"), DType::kF32);
  if (y.numel() == 0) return y;
  const Tensor ac = contiguous(a), bc = contiguous(b);
  const cpu::BinaryPlan plan = plan_binary(ac, bc, y.shape());
  const int64_t ia = plan.a_strides.back(), ib = plan.b_strides.back();
  if ((ia != 0 && ia != 1) || (ib != 0 && ib != 1)) return ref::add_scaled(a, b);
  cpu::add_scaled_f32(ac.data_as<float>(), bc.data_as<float>(), y.data_as<float>(), plan);
  return y;
}

Tensor binary(BinaryOp op, const Tensor& a, const Tensor& b) {
  // Pow by a scalar 2 (LayerNorm's variance as exported): the reference's square is a product.
  if (op == BinaryOp::kPow && a.dtype() == DType::kF32 && b.dtype() == DType::kF32 &&
      b.numel() == 1 && b.rank() <= a.rank() && contiguous(b).data_as<float>()[0] == 2.0f)
    return binary(BinaryOp::kMul, a, a);
  if (a.dtype() != DType::kF32 || b.dtype() != DType::kF32 || !cpu::binary_f32_supported(op))
    return ref::binary(op, a, b);
  Tensor y = Tensor::empty(broadcast_shapes(a.shape(), b.shape(), binary_op_name(op)), DType::kF32);
  if (y.numel() == 0) return y;
  // Strided inputs are copied first: then every run is contiguous or a broadcast scalar.
  const Tensor ac = contiguous(a), bc = contiguous(b);
  const cpu::BinaryPlan plan = plan_binary(ac, bc, y.shape());
  const int64_t ia = plan.a_strides.back(), ib = plan.b_strides.back();
  if ((ia != 0 && ia != 1) || (ib != 0 && ib != 1)) return ref::binary(op, a, b);
  cpu::binary_f32(op, ac.data_as<float>(), bc.data_as<float>(), y.data_as<float>(), plan);
  return y;
}

Tensor unary(UnaryOp op, const Tensor& x, const UnaryParams& p) {
  if (x.dtype() != DType::kF32 || !cpu::unary_f32_supported(op) ||
      (op == UnaryOp::kClip && (std::isnan(p.clip_min) || std::isnan(p.clip_max))))
    return ref::unary(op, x, p);  // which also reports the errors
  const Tensor xc = contiguous(x);
  Tensor y = Tensor::empty(x.shape(), DType::kF32);
  cpu::unary_f32(op, p, xc.data_as<float>(), y.data_as<float>(), static_cast<size_t>(x.numel()));
  return y;
}

Tensor cast(const Tensor& x, DType to) {
  // float32 <-> float16/bfloat16: the vectorized conversions, bit-identical to ref (convert.h).
  const bool half = to == DType::kF16 || to == DType::kBF16;
  const bool from_half = x.dtype() == DType::kF16 || x.dtype() == DType::kBF16;
  if (x.dtype() == DType::kF32 && half) {
    const Tensor xc = contiguous(x);
    Tensor y = Tensor::empty(x.shape(), to);
    encode_float_array(*format_of(to), xc.data_as<float>(), y.data(),
                       static_cast<size_t>(x.numel()));
    return y;
  }
  if (from_half && to == DType::kF32) {
    const Tensor xc = contiguous(x);
    Tensor y = Tensor::empty(x.shape(), to);
    decode_float_array(*format_of(x.dtype()), xc.data(), y.data_as<float>(),
                       static_cast<size_t>(x.numel()));
    return y;
  }
  return ref::cast(x, to);
}

Tensor reduce(ReduceOp op, const Tensor& x, const std::vector<int64_t>& axes, bool keepdims,
              bool noop_with_empty_axes) {
  if (x.dtype() != DType::kF32 || op >= ReduceOp::kCount || (axes.empty() && noop_with_empty_axes))
    return ref::reduce(op, x, axes, keepdims, noop_with_empty_axes);
  const size_t r = static_cast<size_t>(x.rank());
  std::vector<int64_t> ax = opsutil::norm_axes(reduce_op_name(op), axes, x.rank());
  if (ax.empty())
    for (size_t d = 0; d < r; ++d) ax.push_back(static_cast<int64_t>(d));
  // Fast only when the reduced axes are the trailing ones: rows of contiguous values.
  std::sort(ax.begin(), ax.end());
  const size_t first = r - ax.size();
  for (size_t i = 0; i < ax.size(); ++i)
    if (ax[i] != static_cast<int64_t>(first + i))
      return ref::reduce(op, x, axes, keepdims, noop_with_empty_axes);
  Shape out(x.shape().begin(), x.shape().begin() + static_cast<std::ptrdiff_t>(first));
  if (keepdims) out.resize(r, 1);
  Tensor y = Tensor::zeros(out, DType::kF32);
  const Tensor xc = contiguous(x);
  cpu::reduce_rows_f32(op, xc.data_as<float>(), y.data_as<float>(),
                       static_cast<size_t>(prod(x.shape(), 0, first)),
                       static_cast<size_t>(prod(x.shape(), first, r)));
  return y;
}

Tensor global_average_pool(const Tensor& x) {
  if (x.dtype() != DType::kF32 || x.rank() < 3) return ref::global_average_pool(x);
  std::vector<int64_t> axes;
  for (int64_t d = 2; d < x.rank(); ++d) axes.push_back(d);
  return reduce(ReduceOp::kMean, x, axes, true);
}

Tensor argmax(const Tensor& x, int64_t axis, bool keepdims, bool select_last_index) {
  return ref::argmax(x, axis, keepdims, select_last_index);
}

namespace {

// Softmax over rows when the axis is the last one (or legacy flattening makes it so).
Tensor softmax_fast(const Tensor& x, int64_t axis, bool log, bool legacy) {
  const std::string_view name = log ? "LogSoftmax" : "Softmax";
  opsutil::expect_dtype(name, x, DType::kF32);
  const size_t ax = static_cast<size_t>(opsutil::norm_axis(name, axis, x.rank(), legacy));
  const size_t r = x.shape().size();
  if (!legacy && ax + 1 != r) return log ? ref::log_softmax(x, axis) : ref::softmax(x, axis);
  const Tensor xc = contiguous(x);
  Tensor y = Tensor::empty(x.shape(), DType::kF32);  // softmax_rows_f32 writes every row whole
  if (y.numel() == 0) return y;
  cpu::softmax_rows_f32(xc.data_as<float>(), y.data_as<float>(),
                        static_cast<size_t>(prod(x.shape(), 0, ax)),
                        static_cast<size_t>(prod(x.shape(), ax, r)), log);
  return y;
}

}  // namespace

Tensor softmax(const Tensor& x, int64_t axis) { return softmax_fast(x, axis, false, false); }
Tensor log_softmax(const Tensor& x, int64_t axis) { return softmax_fast(x, axis, true, false); }
Tensor softmax_legacy(const Tensor& x, int64_t axis) { return softmax_fast(x, axis, false, true); }
Tensor log_softmax_legacy(const Tensor& x, int64_t axis) {
  return softmax_fast(x, axis, true, true);
}

Tensor batch_norm_inference(const Tensor& x, const Tensor& scale, const Tensor& bias,
                            const Tensor& mean, const Tensor& var, float epsilon) {
  const opsutil::BatchNormPlan p =
      opsutil::batch_norm_plan("BatchNormalization", x, scale, bias, mean, var, epsilon);
  const Tensor xc = contiguous(x);
  Tensor y = Tensor::empty(x.shape(), DType::kF32);
  if (y.numel() == 0) return y;
  cpu::batch_norm_f32(xc.data_as<float>(), y.data_as<float>(), static_cast<size_t>(p.batch),
                      static_cast<size_t>(p.channels), static_cast<size_t>(p.inner), p.mean.data(),
                      p.factor.data(), p.bias.data());
  return y;
}

// No fast versions yet: the reference.
Tensor layer_norm(const Tensor& x, const Tensor& scale, const Tensor* bias, int64_t axis,
                  float epsilon) {
  return ref::layer_norm(x, scale, bias, axis, epsilon);
}
Tensor instance_norm(const Tensor& x, const Tensor& scale, const Tensor& bias, float epsilon) {
  return ref::instance_norm(x, scale, bias, epsilon);
}
namespace {

// MaxPool / AveragePool over two spatial dims: the reference's arithmetic output by output (taps
// in the same order, double sums, NaN skipped by max), without its per-output index vectors or
// per-tap bounds checks: the taps inside the input form a contiguous range per output row and per
// output column (computed once), and the counts of taps inside and inside-or-padding are
// products of the two axes' counts. Planes go over the pool in chunks of about 2^15 taps.
struct PoolAxis {
  int64_t lo, hi;  // taps a in [lo, hi) land inside the input
  int64_t padded;  // taps that land inside the input or its padding
};
std::vector<PoolAxis> pool_axis(int64_t out, int64_t in, int64_t k, int64_t s, int64_t d,
                                int64_t pad, int64_t pad_end) {
  std::vector<PoolAxis> v(static_cast<size_t>(out));
  for (int64_t o = 0; o < out; ++o) {
    PoolAxis& a = v[static_cast<size_t>(o)];
    a.lo = k;
    a.hi = 0;
    a.padded = 0;
    for (int64_t t = 0; t < k; ++t) {
      const int64_t i = o * s - pad + t * d;
      if (i >= 0 && i < in) {
        a.lo = std::min(a.lo, t);
        a.hi = t + 1;
      }
      a.padded += i >= -pad && i < in + pad_end;
    }
    if (a.hi <= a.lo) a.lo = a.hi = 0;
  }
  return v;
}

template <bool kMax>
void pool_planes(const float* xs, float* ys, size_t p0, size_t p1, int64_t ih, int64_t iw,
                 int64_t oh, int64_t ow, const opsutil::PoolGeom& g,
                 const std::vector<PoolAxis>& rows, const std::vector<PoolAxis>& cols,
                 bool include_pad) {
  const int64_t sh = g.strides[0], sw = g.strides[1], dh = g.dilations[0], dw = g.dilations[1];
  const int64_t ph = g.pad_begin[0], pw = g.pad_begin[1];
  for (size_t pl = p0; pl < p1; ++pl) {
    const float* plane = xs + static_cast<int64_t>(pl) * ih * iw;
    float* out = ys + static_cast<int64_t>(pl) * oh * ow;
    for (int64_t r = 0; r < oh; ++r) {
      const PoolAxis& ra = rows[static_cast<size_t>(r)];
      for (int64_t c = 0; c < ow; ++c) {
        const PoolAxis& ca = cols[static_cast<size_t>(c)];
        const int64_t at = (r * sh - ph) * iw + (c * sw - pw);  // may lie before the plane
        if constexpr (kMax) {
          bool have = false;
          float m = 0;
          for (int64_t a = ra.lo; a < ra.hi; ++a)
            for (int64_t b = ca.lo; b < ca.hi; ++b) {
              const float v = plane[at + a * dh * iw + b * dw];
              if (!std::isnan(v) && (!have || v > m)) m = v, have = true;
            }
          out[r * ow + c] = have ? m : NAN;
        } else {
          double sum = 0;
          for (int64_t a = ra.lo; a < ra.hi; ++a)
            for (int64_t b = ca.lo; b < ca.hi; ++b) sum += plane[at + a * dh * iw + b * dw];
          const int64_t n = include_pad ? ra.padded * ca.padded : (ra.hi - ra.lo) * (ca.hi - ca.lo);
          out[r * ow + c] = static_cast<float>(sum / static_cast<double>(n));
        }
      }
    }
  }
}

Tensor pool2d_fast(const Tensor& x, const PoolParams& p, bool is_max) {
  const std::string_view op = is_max ? "MaxPool" : "AveragePool";
  if (x.dtype() != DType::kF32 || x.rank() != 4)
    return is_max ? ref::max_pool(x, p) : ref::average_pool(x, p);
  const opsutil::PoolGeom g = opsutil::pool_geometry(x.shape(), p, op);
  Tensor y = Tensor::empty({x.dim(0), x.dim(1), g.out[0], g.out[1]}, DType::kF32);
  if (y.numel() == 0) return y;
  if (x.numel() == 0) {
    std::fill_n(y.data_as<float>(), y.numel(), 0.0f);
    return y;
  }
  const Tensor xc = contiguous(x);
  const int64_t ih = g.in[0], iw = g.in[1], oh = g.out[0], ow = g.out[1];
  const std::vector<PoolAxis> rows =
      pool_axis(oh, ih, g.kernel[0], g.strides[0], g.dilations[0], g.pad_begin[0], g.pad_end[0]);
  const std::vector<PoolAxis> cols =
      pool_axis(ow, iw, g.kernel[1], g.strides[1], g.dilations[1], g.pad_begin[1], g.pad_end[1]);
  const auto planes = static_cast<size_t>(x.dim(0) * x.dim(1));
  const float* xs = xc.data_as<float>();
  float* ys = y.data_as<float>();
  auto run = [&](size_t p0, size_t p1) {
    if (is_max)
      pool_planes<true>(xs, ys, p0, p1, ih, iw, oh, ow, g, rows, cols, p.count_include_pad);
    else
      pool_planes<false>(xs, ys, p0, p1, ih, iw, oh, ow, g, rows, cols, p.count_include_pad);
  };
  const int64_t taps = y.numel() * g.kernel[0] * g.kernel[1];
  const auto tasks =
      static_cast<size_t>(std::clamp<int64_t>(taps >> 15, 1, static_cast<int64_t>(planes)));
  if (tasks > 1)
    ThreadPool::default_pool().parallel_for(
        tasks, [&](size_t t) { run(planes * t / tasks, planes * (t + 1) / tasks); });
  else
    run(0, planes);
  return y;
}

}  // namespace

Tensor max_pool(const Tensor& x, const PoolParams& p) { return pool2d_fast(x, p, true); }
Tensor average_pool(const Tensor& x, const PoolParams& p) { return pool2d_fast(x, p, false); }

namespace {

// A strided view copied row by row (opsutil::StridedView; the reference copies element by
// element): unit axes dropped, axes merged where one steps exactly over the next, then the last
// axis copied as a block (stride 1) or in a typed strided loop, the rest counted like an odometer.
// Bit for bit the reference's: the same bytes to the same places. Large copies go in row ranges
// over the pool.
Tensor strided_copy(const Tensor& x, const opsutil::StridedView& v) {
  Tensor y = Tensor::empty(v.shape, x.dtype());
  if (y.numel() == 0) return y;
  Shape shape, strides;
  for (size_t d = 0; d < v.shape.size(); ++d) {
    if (v.shape[d] == 1) continue;
    if (!shape.empty() && strides.back() == v.strides[d] * v.shape[d]) {
      shape.back() *= v.shape[d];
      strides.back() = v.strides[d];
    } else {
      shape.push_back(v.shape[d]);
      strides.push_back(v.strides[d]);
    }
  }
  if (shape.empty()) {  // one element
    shape.push_back(1);
    strides.push_back(0);
  }
  const size_t r = shape.size();
  const int64_t len = shape[r - 1], step = strides[r - 1];
  const int64_t rows = y.numel() / len;
  const auto* px = static_cast<const std::byte*>(x.data()) + v.base * static_cast<int64_t>(v.esize);
  auto* py = static_cast<std::byte*>(y.data());
  const size_t es = v.esize;
  DP_CHECK(es == 1 || es == 2 || es == 4 || es == 8,
           "strided_copy: elements of 1, 2, 4 or 8 bytes");
  // Rows [r0, r1): the first row's offset from its coordinates, then the odometer.
  auto copy_rows = [&](int64_t r0, int64_t r1) {
    std::vector<int64_t> idx(r, 0);
    int64_t off = 0;
    for (size_t d = r - 1, rem = static_cast<size_t>(r0); d-- > 0;) {
      idx[d] = static_cast<int64_t>(rem % static_cast<size_t>(shape[d]));
      rem /= static_cast<size_t>(shape[d]);
      off += idx[d] * strides[d];
    }
    for (int64_t row = r0; row < r1; ++row) {
      const std::byte* src = px + off * static_cast<int64_t>(es);
      std::byte* dst = py + row * len * static_cast<int64_t>(es);
      if (step == 1) {
        std::memcpy(dst, src, static_cast<size_t>(len) * es);
      } else {
        auto strided = [&](auto tag) {  // whole elements of sizeof(tag) bytes
          constexpr auto n = static_cast<int64_t>(sizeof(tag));
          for (int64_t i = 0; i < len; ++i) std::memcpy(dst + i * n, src + i * step * n, n);
        };
        switch (es) {
          case 1:
            strided(uint8_t{});
            break;
          case 2:
            strided(uint16_t{});
            break;
          case 4:
            strided(uint32_t{});
            break;
          default:
            strided(uint64_t{});
        }
      }
      for (size_t d = r - 1; d-- > 0;) {
        off += strides[d];
        if (++idx[d] < shape[d]) break;
        off -= strides[d] * shape[d];
        idx[d] = 0;
      }
    }
  };
  constexpr int64_t kTaskBytes = int64_t{1} << 18;
  const int64_t bytes = y.numel() * static_cast<int64_t>(es);
  const int64_t tasks = std::min(rows, bytes / kTaskBytes);
  if (tasks < 2) {
    copy_rows(0, rows);
  } else {
    ThreadPool::default_pool().parallel_for(static_cast<size_t>(tasks), [&](size_t t) {
      const auto ti = static_cast<int64_t>(t);
      copy_rows(rows * ti / tasks, rows * (ti + 1) / tasks);
    });
  }
  return y;
}

}  // namespace

Tensor transpose(const Tensor& x, const std::vector<int64_t>& perm) {
  return strided_copy(x, opsutil::transpose_view(x, perm));
}
Tensor reshape(const Tensor& x, const std::vector<int64_t>& shape, bool allowzero) {
  return ref::reshape(x, shape, allowzero);
}
Tensor flatten(const Tensor& x, int64_t axis) { return ref::flatten(x, axis); }
Tensor squeeze(const Tensor& x, const std::vector<int64_t>& axes) { return ref::squeeze(x, axes); }
Tensor unsqueeze(const Tensor& x, const std::vector<int64_t>& axes) {
  return ref::unsqueeze(x, axes);
}
// Concat: block copies (outer index, then each input's contiguous run), so bit-identical to
// the reference; unusual inputs (errors, sub-byte or quantized dtypes) are the reference's.
Tensor concat(const std::vector<Tensor>& xs, int64_t axis) {
  if (xs.empty()) return ref::concat(xs, axis);
  const DType dt = xs[0].dtype();
  const int64_t r = xs[0].rank();
  const bool plain = dt == DType::kF32 || dt == DType::kF64 || dt == DType::kI32 ||
                     dt == DType::kI64 || dt == DType::kBool || dt == DType::kU8 ||
                     dt == DType::kF16 || dt == DType::kBF16 || dt == DType::kI16;
  const int64_t ax = axis < 0 ? axis + r : axis;
  if (!plain || r == 0 || ax < 0 || ax >= r) return ref::concat(xs, axis);
  Shape out = xs[0].shape();
  out[static_cast<size_t>(ax)] = 0;
  for (const Tensor& x : xs) {
    if (x.dtype() != dt || x.rank() != r || x.quant().scales.size() || x.quant().scales_f16.size())
      return ref::concat(xs, axis);
    for (int64_t d = 0; d < r; ++d)
      if (d != ax && x.dim(static_cast<int>(d)) != out[static_cast<size_t>(d)])
        return ref::concat(xs, axis);
    out[static_cast<size_t>(ax)] += x.dim(static_cast<int>(ax));
  }
  Tensor y = Tensor::empty(out, dt);
  if (y.numel() == 0) return y;
  const size_t es = static_cast<size_t>(dtype_bits(dt) / 8);
  const int64_t outer = prod(out, 0, static_cast<size_t>(ax));
  const int64_t inner = prod(out, static_cast<size_t>(ax) + 1, out.size());
  std::vector<Tensor> cs;
  cs.reserve(xs.size());
  for (const Tensor& x : xs) cs.push_back(contiguous(x));
  auto* dst = static_cast<std::byte*>(y.data());
  for (int64_t o = 0; o < outer; ++o)
    for (const Tensor& x : cs) {
      const size_t run = static_cast<size_t>(x.dim(static_cast<int>(ax)) * inner) * es;
      if (run == 0) continue;
      std::memcpy(dst, static_cast<const std::byte*>(x.data()) + static_cast<size_t>(o) * run, run);
      dst += run;
    }
  return y;
}
Tensor slice(const Tensor& x, const std::vector<int64_t>& starts, const std::vector<int64_t>& ends,
             const std::vector<int64_t>& axes, const std::vector<int64_t>& steps) {
  return strided_copy(x, opsutil::slice_view(x, starts, ends, axes, steps));
}
Tensor gather(const Tensor& x, const Tensor& indices, int64_t axis) {
  return ref::gather(x, indices, axis);
}
Tensor pad(const Tensor& x, const std::vector<int64_t>& pads, PadMode mode, double value) {
  return ref::pad(x, pads, mode, value);
}
Tensor expand(const Tensor& x, const std::vector<int64_t>& shape) {
  return strided_copy(x, opsutil::expand_view(x, shape));
}
Tensor where(const Tensor& cond, const Tensor& a, const Tensor& b) {
  return ref::where(cond, a, b);
}
Tensor tile(const Tensor& x, const std::vector<int64_t>& repeats) { return ref::tile(x, repeats); }

// ---- Resize -----------------------------------------------------------------------------------
// The reference's arithmetic exactly, reorganized: per axis the same (double) source indices and
// weights; per output row (all axes but the last) the corners of the outer axes with their
// weight products, in the reference's corner order (axis 0 the lowest bit, so every outer
// corner with the last axis low comes before any with it high), zero weights skipped as there.
// Nearest is a gather (each value as 0.0 + x in double, i.e. x + 0.0f), and an output row whose
// source row equals the previous one's is copied from it.

namespace {
// The output geometry of resize(x, p) where the fast path takes them; nullopt for anything
// unusual (errors included), which is the reference's to handle.
struct ResizeGeom {
  Shape out;
  std::vector<double> scale, out_width;
};
std::optional<ResizeGeom> resize_geom(const Tensor& x, const ResizeParams& p) {
  const size_t r = static_cast<size_t>(x.rank());
  if (x.dtype() != DType::kF32 || r < 1 || r > 8 || p.scales.empty() == p.sizes.empty() ||
      (p.scales.empty() ? p.sizes.size() : p.scales.size()) != r)
    return std::nullopt;
  ResizeGeom g{Shape(r), std::vector<double>(r), std::vector<double>(r)};
  for (size_t d = 0; d < r; ++d) {
    const int64_t in = x.dim(static_cast<int>(d));
    if (!p.scales.empty()) {
      const float s = p.scales[d];
      if (!(s > 0.0f) || !std::isfinite(s)) return std::nullopt;
      g.out[d] = static_cast<int64_t>(std::floor(static_cast<float>(in) * s));
      g.scale[d] = s;
      g.out_width[d] = static_cast<double>(in) * static_cast<double>(s);
    } else {
      g.out[d] = p.sizes[d];
      if (g.out[d] < 0) return std::nullopt;
      g.scale[d] = in ? static_cast<double>(g.out[d]) / static_cast<double>(in) : 0.0;
      g.out_width[d] = static_cast<double>(g.out[d]);
    }
    if (in == 0 && g.out[d] > 0) return std::nullopt;
  }
  return g;
}

// Where resize_impl writes instead of a new tensor: element e of the resized tensor (row-major)
// goes to base[(e / run) · out_run + e % run] (its place in a concatenation along an axis before
// the last: run = the part's elements per outer index, out_run = the output's).
struct ResizeInto {
  float* base;
  int64_t run, out_run;
};

// The scale of each row (run along the last axis) of a tensor of `shape` multiplied by s under
// broadcasting, where s is float32, constant along the last axis and broadcasts to `shape` (a
// squeeze-excite gate [N, C, 1, 1] over [N, C, H, W]); nullopt otherwise.
std::optional<std::vector<float>> row_scales(const Tensor& s, const Shape& shape) {
  const size_t r = shape.size();
  if (s.dtype() != DType::kF32 || r == 0 || static_cast<size_t>(s.rank()) > r ||
      s.quant().scales.size())
    return std::nullopt;
  Shape sd(r, 1);  // s's dims right-aligned
  for (int d = 0; d < s.rank(); ++d) sd[r - static_cast<size_t>(s.rank()) + d] = s.dim(d);
  if (sd[r - 1] != 1) return std::nullopt;
  for (size_t d = 0; d < r; ++d)
    if (sd[d] != 1 && sd[d] != shape[d]) return std::nullopt;
  const Tensor sc = contiguous(s);
  const float* ps = sc.data_as<float>();
  const int64_t rows = prod(shape, 0, r - 1);
  std::vector<float> out(static_cast<size_t>(rows));
  std::vector<int64_t> o(r - 1, 0);
  for (int64_t row = 0; row < rows; ++row) {
    int64_t at = 0;
    for (size_t d = 0; d + 1 < r; ++d) at = at * sd[d] + (sd[d] == 1 ? 0 : o[d]);
    out[static_cast<size_t>(row)] = ps[at];
    for (size_t d = r - 1; d-- > 0;) {
      if (++o[d] < shape[d]) break;
      o[d] = 0;
    }
  }
  return out;
}

// resize, and with `add` (f32, the output's shape; nearest mode only) add + resize(x) in the
// same pass (resized + add with add_last), or with `into` straight into a concatenation's
// output (an empty Tensor back); nothing where it declines (only with `add` or `into`).
// add_scale, with `add`: one scale per output row, the addend add + add · add_scale[row].
// amax_bits, where non-null: raised to the largest float bits of |y| over the rows written (max
// |y|, NaN above inf), each row measured while it is in L1.
std::optional<Tensor> resize_impl(const Tensor& x, const ResizeParams& p, const Tensor* add,
                                  bool add_last, const ResizeInto* into = nullptr,
                                  std::atomic<uint32_t>* amax_bits = nullptr,
                                  const float* add_scale = nullptr) {
  const size_t r = static_cast<size_t>(x.rank());
  std::optional<ResizeGeom> geo = resize_geom(x, p);
  if (!geo) return add || into ? std::nullopt : std::optional<Tensor>(ref::resize(x, p));
  const Shape& out = geo->out;
  const std::vector<double>& scale = geo->scale;
  const std::vector<double>& out_width = geo->out_width;
  if (add && (add->shape() != out || p.mode != ResizeMode::kNearest)) return std::nullopt;
  Tensor y = into ? Tensor() : Tensor::empty(out, DType::kF32);
  const int64_t count = prod(out, 0, r);
  if (count == 0) return y;
  const Tensor xc = contiguous(x);
  const bool nearest = p.mode == ResizeMode::kNearest;
  const float* pa = add ? add->data_as<float>() : nullptr;
  // Per axis and output index: the two source indices and the weight of the second.
  std::vector<std::vector<int64_t>> i0(r), i1(r);
  std::vector<std::vector<double>> w1(r);
  for (size_t d = 0; d < r; ++d) {
    const int64_t in = x.dim(static_cast<int>(d));
    const auto n = static_cast<size_t>(out[d]);
    i0[d].resize(n), i1[d].resize(n), w1[d].resize(n);
    for (int64_t o = 0; o < out[d]; ++o) {
      const auto oi = static_cast<size_t>(o);
      const double c = opsutil::resize_source_coord(p.coord, o, scale[d], in, out[d], out_width[d]);
      if (nearest) {
        i0[d][oi] = i1[d][oi] = opsutil::resize_nearest_index(p.nearest, c, in);
        w1[d][oi] = 0.0;
      } else {
        const double cc = std::clamp(c, 0.0, static_cast<double>(in - 1));
        const auto lo = static_cast<int64_t>(std::floor(cc));
        i0[d][oi] = lo;
        i1[d][oi] = std::min(lo + 1, in - 1);
        w1[d][oi] = cc - static_cast<double>(lo);
      }
    }
  }
  const Shape xs = xc.strides();
  const size_t last = r - 1;
  const int64_t row_len = out[last], in_last = x.dim(static_cast<int>(last));
  const int64_t rows = count / row_len;
  const float* px = xc.data_as<float>();
  float* py = into ? nullptr : y.data_as<float>();
  auto row_ptr = [&](int64_t row) {
    if (!into) return py + row * row_len;
    const int64_t e = row * row_len;
    return into->base + e / into->run * into->out_run + e % into->run;
  };
  const int64_t* li0 = i0[last].data();
  const int64_t* li1 = i1[last].data();
  const double* lw1 = w1[last].data();
  // The last axis unchanged with unit weights: rows are whole (possibly blended) source rows.
  bool last_identity = in_last == row_len;
  for (int64_t o = 0; o < row_len && last_identity; ++o)
    last_identity = li0[o] == o && lw1[o] == 0.0;
  // Nearest along the last axis by an integer factor k (source column j / k): the vectorized
  // rows (upsample_row_f32); 0 where the columns follow another pattern.
  int64_t up_k = nearest && in_last > 0 && row_len % in_last == 0 ? row_len / in_last : 0;
  for (int64_t o = 0; o < row_len && up_k > 0; ++o)
    if (li0[o] != o / up_k) up_k = 0;
  // Output rows in blocks; each block walks its rows' outer multi-index.
  const int64_t block = std::max<int64_t>(1, 16384 / row_len);
  const int64_t tasks = (rows + block - 1) / block;
  auto run = [&](size_t t) {
    const int64_t r0 = static_cast<int64_t>(t) * block, r1 = std::min(rows, r0 + block);
    std::vector<int64_t> o(last, 0);
    for (size_t d = last, rem = static_cast<size_t>(r0); d-- > 0;) {
      o[d] = static_cast<int64_t>(rem % static_cast<size_t>(out[d]));
      rem /= static_cast<size_t>(out[d]);
    }
    std::vector<double> cw;
    std::vector<int64_t> coff;
    int64_t prev_off = -1;
    const float* prev_yr = nullptr;
    uint32_t task_max = 0;
    for (int64_t row = r0; row < r1; ++row) {
      float* yr = row_ptr(row);
      cw.clear(), coff.clear();
      for (uint32_t corner = 0; corner < (1u << last); ++corner) {
        double w = 1.0;
        int64_t off = 0;
        for (size_t d = 0; d < last && w != 0.0; ++d) {
          const auto od = static_cast<size_t>(o[d]);
          const bool hi = (corner >> d) & 1u;
          w *= hi ? w1[d][od] : 1.0 - w1[d][od];
          off += (hi ? i1[d][od] : i0[d][od]) * xs[d];
        }
        if (w != 0.0) cw.push_back(w), coff.push_back(off);
        if (nearest) break;  // every other corner has weight 0
      }
      // Where the row's max |y| is taken already (a copied row's is its source's).
      bool measured = false;
      if (nearest) {
        const float* ar = pa ? pa + row * row_len : nullptr;
        if (!ar && coff[0] == prev_off && row > r0) {
          std::memcpy(yr, prev_yr, static_cast<size_t>(row_len) * sizeof(float));
          measured = true;
        } else {
          const float* src = px + coff[0];
          const float* as = ar && add_scale ? add_scale + row : nullptr;
          if (up_k > 0) {
            cpu::upsample_row_f32(src, ar, as, add_last, yr, static_cast<size_t>(row_len),
                                  static_cast<size_t>(up_k), amax_bits ? &task_max : nullptr);
            measured = true;
          } else {
            for (int64_t j = 0; j < row_len; ++j) {
              const float v = src[li0[j]] + 0.0f;
              const float a = ar ? (as ? ar[j] + ar[j] * *as : ar[j]) : 0.0f;
              yr[j] = ar ? (add_last ? v + a : a + v) : v;
            }
          }
        }
        prev_off = coff[0];
        prev_yr = yr;
      } else if (cw.size() == 1 && last_identity && cw[0] == 1.0) {
        const float* src = px + coff[0];
        for (int64_t j = 0; j < row_len; ++j)
          yr[j] = static_cast<float>(0.0 + static_cast<double>(src[j]));
      } else if (cw.size() == 1) {
        const double wc = cw[0];
        const float* src = px + coff[0];
        for (int64_t j = 0; j < row_len; ++j) {
          double acc = 0.0;
          const double wa = wc * (1.0 - lw1[j]), wb = wc * lw1[j];
          if (wa != 0.0) acc += wa * static_cast<double>(src[li0[j]]);
          if (wb != 0.0) acc += wb * static_cast<double>(src[li1[j]]);
          yr[j] = static_cast<float>(acc);
        }
      } else if (cw.size() == 2) {
        const double wc0 = cw[0], wc1 = cw[1];
        const float* s0 = px + coff[0];
        const float* s1 = px + coff[1];
        for (int64_t j = 0; j < row_len; ++j) {
          double acc = 0.0;
          const double lo = 1.0 - lw1[j], hi = lw1[j];
          const int64_t a = li0[j], b = li1[j];
          double w;
          if ((w = wc0 * lo) != 0.0) acc += w * static_cast<double>(s0[a]);
          if ((w = wc1 * lo) != 0.0) acc += w * static_cast<double>(s1[a]);
          if ((w = wc0 * hi) != 0.0) acc += w * static_cast<double>(s0[b]);
          if ((w = wc1 * hi) != 0.0) acc += w * static_cast<double>(s1[b]);
          yr[j] = static_cast<float>(acc);
        }
      } else {
        for (int64_t j = 0; j < row_len; ++j) {
          double acc = 0.0;
          const double lo = 1.0 - lw1[j], hi = lw1[j];
          for (size_t c = 0; c < cw.size(); ++c) {
            const double w = cw[c] * lo;
            if (w != 0.0) acc += w * static_cast<double>(px[coff[c] + li0[j]]);
          }
          for (size_t c = 0; c < cw.size(); ++c) {
            const double w = cw[c] * hi;
            if (w != 0.0) acc += w * static_cast<double>(px[coff[c] + li1[j]]);
          }
          yr[j] = static_cast<float>(acc);
        }
      }
      if (amax_bits && !measured)
        task_max =
            std::max(task_max, std::bit_cast<uint32_t>(amax(yr, static_cast<size_t>(row_len))));
      for (size_t d = last; d-- > 0;) {  // next outer multi-index
        if (++o[d] < out[d]) break;
        o[d] = 0;
      }
    }
    if (amax_bits) cpu::vnni::atomic_max(amax_bits, task_max);
  };
  if (tasks > 1 && count >= 65536)
    ThreadPool::default_pool().parallel_for(static_cast<size_t>(tasks), run);
  else
    for (int64_t t = 0; t < tasks; ++t) run(static_cast<size_t>(t));
  return y;
}
}  // namespace

Tensor resize(const Tensor& x, const ResizeParams& p) { return *resize_impl(x, p, nullptr, false); }

Tensor add_resized(const Tensor& a, const Tensor& x, const ResizeParams& p, bool resized_first,
                   float* y_amax, const Tensor* a_scale) {
  if (y_amax) *y_amax = -1.0f;
  auto unfused = [&] {
    const Tensor r = resize(x, p);
    const Tensor addend = a_scale ? add_scaled(a, *a_scale) : a;
    return resized_first ? binary(BinaryOp::kAdd, r, addend) : binary(BinaryOp::kAdd, addend, r);
  };
  if (p.mode != ResizeMode::kNearest || a.dtype() != DType::kF32 || x.dtype() != DType::kF32 ||
      a.rank() != x.rank())
    return unfused();
  std::optional<std::vector<float>> scales;
  if (a_scale && !(scales = row_scales(*a_scale, a.shape()))) return unfused();
  // The fused pass needs a in the output's shape (no broadcast); resize_impl checks it once the
  // output shape is known and declines otherwise.
  const Tensor ac = contiguous(a);
  std::atomic<uint32_t> bits{0};
  std::optional<Tensor> y = resize_impl(x, p, &ac, resized_first, nullptr, y_amax ? &bits : nullptr,
                                        scales ? scales->data() : nullptr);
  if (!y) return unfused();
  if (y_amax) *y_amax = std::bit_cast<float>(bits.load());
  return std::move(*y);
}

Tensor concat_resized(const std::vector<ConcatPart>& parts, int64_t axis, float* y_amax) {
  if (y_amax) *y_amax = -1.0f;
  auto unfused = [&] {
    std::vector<Tensor> xs;
    for (const ConcatPart& part : parts)
      xs.push_back(part.resize  ? resize(*part.x, *part.resize)
                   : part.scale ? add_scaled(*part.x, *part.scale)
                                : *part.x);
    return concat(xs, axis);
  };
  if (parts.empty()) return unfused();
  // The scaled parts' per-row scales.
  std::vector<std::vector<float>> scales(parts.size());
  for (size_t i = 0; i < parts.size(); ++i) {
    if (!parts[i].scale) continue;
    if (parts[i].resize) return unfused();  // not a form the executor makes
    std::optional<std::vector<float>> s = row_scales(*parts[i].scale, parts[i].x->shape());
    if (!s) return unfused();
    scales[i] = std::move(*s);
  }
  // Every part's shape (the resized ones' from their geometry), float32 and plain.
  std::vector<Shape> shapes;
  for (const ConcatPart& part : parts) {
    if (part.x->dtype() != DType::kF32 || part.x->quant().scales.size()) return unfused();
    if (!part.resize) {
      shapes.push_back(part.x->shape());
      continue;
    }
    std::optional<ResizeGeom> geo = resize_geom(*part.x, *part.resize);
    if (!geo) return unfused();
    shapes.push_back(geo->out);
  }
  const auto r = static_cast<int64_t>(shapes[0].size());
  const int64_t ax = axis < 0 ? axis + r : axis;
  // The axis before the last: every resized row lands whole in one output run.
  if (ax < 0 || ax >= r - 1) return unfused();
  Shape out = shapes[0];
  out[static_cast<size_t>(ax)] = 0;
  for (const Shape& sh : shapes) {
    if (static_cast<int64_t>(sh.size()) != r) return unfused();
    for (int64_t d = 0; d < r; ++d)
      if (d != ax && sh[static_cast<size_t>(d)] != out[static_cast<size_t>(d)]) return unfused();
    out[static_cast<size_t>(ax)] += sh[static_cast<size_t>(ax)];
  }
  Tensor y = Tensor::empty(out, DType::kF32);
  if (y.numel() == 0) return y;
  const int64_t outer = prod(out, 0, static_cast<size_t>(ax));
  const int64_t inner = prod(out, static_cast<size_t>(ax) + 1, out.size());
  const int64_t out_run = out[static_cast<size_t>(ax)] * inner;
  float* py = y.data_as<float>();
  std::atomic<uint32_t> bits{0};
  std::atomic<uint32_t>* track = y_amax ? &bits : nullptr;
  int64_t off = 0;
  for (size_t i = 0; i < parts.size(); ++i) {
    const int64_t run = shapes[i][static_cast<size_t>(ax)] * inner;
    if (run == 0) continue;
    if (parts[i].resize) {
      const ResizeInto into{py + off, run, out_run};
      if (!resize_impl(*parts[i].x, *parts[i].resize, nullptr, false, &into, track))
        throw Error(ErrorKind::kInternal, "concat_resized: resize declined after its geometry");
    } else if (parts[i].scale) {
      // Row by row (rows of the last axis, the scale's unit), in parallel over blocks of rows.
      const Tensor xc = contiguous(*parts[i].x);
      const float* px = xc.data_as<float>();
      const int64_t row_len = shapes[i].back(), rows = run / row_len * outer;
      const int64_t per_outer = run / row_len, block = std::max<int64_t>(1, 16384 / row_len);
      const int64_t tasks = (rows + block - 1) / block;
      const float* rs = scales[i].data();
      auto task = [&](size_t t) {
        uint32_t m = 0;
        for (int64_t row = static_cast<int64_t>(t) * block;
             row < std::min(rows, (static_cast<int64_t>(t) + 1) * block); ++row) {
          float* yr = py + row / per_outer * out_run + off + row % per_outer * row_len;
          cpu::scaled_row_f32(px + row * row_len, rs[row], yr, static_cast<size_t>(row_len),
                              track ? &m : nullptr);
        }
        if (track) cpu::vnni::atomic_max(&bits, m);
      };
      if (tasks > 1 && rows * row_len >= 65536)
        ThreadPool::default_pool().parallel_for(static_cast<size_t>(tasks), task);
      else
        for (int64_t t = 0; t < tasks; ++t) task(static_cast<size_t>(t));
    } else {
      const Tensor xc = contiguous(*parts[i].x);
      const float* px = xc.data_as<float>();
      for (int64_t o = 0; o < outer; ++o) {
        std::memcpy(py + o * out_run + off, px + o * run, static_cast<size_t>(run) * sizeof(float));
        if (track)
          cpu::vnni::atomic_max(
              &bits, std::bit_cast<uint32_t>(amax(px + o * run, static_cast<size_t>(run))));
      }
    }
    off += run;
  }
  if (y_amax) *y_amax = std::bit_cast<float>(bits.load());
  return y;
}

}  // namespace dynaprec
#endif  // HWY_ONCE
