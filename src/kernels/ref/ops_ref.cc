// Reference elementwise ops and Cast (include/dynaprec/ops.h), plus the op names and the
// broadcast rule: one output element at a time, in C order, straight from the definitions. Slow
// on purpose. (Reductions, softmax and normalization: ops_ref_reduce.cc; pooling and Resize:
// ops_ref_pool.cc; data movement: ops_ref_data.cc.)
//
// The float expressions here are the contract that src/kernels/cpu/ops_hwy.cc reproduces: where
// it claims bit-identical results (Add..Min, Neg, Abs, Sqrt, Relu, Clip, HardSigmoid, HardSwish,
// LeakyRelu) it evaluates these very expressions, in this order, with no FMA contraction
// (-ffp-contract=off). Max/Min are written as compares and selects, not std::max, so that
// NaN and ±0 behave the same on every SIMD target.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <iterator>
#include <limits>
#include <string>
#include <type_traits>

#include "dynaprec/convert.h"
#include "kernels/ref/ops_ref_util.h"

namespace dynaprec {

using opsutil::describe;
using opsutil::fail;
using opsutil::num;

std::string_view binary_op_name(BinaryOp op) {
  constexpr std::string_view kNames[] = {"Add", "Sub", "Mul",   "Div",  "Pow",
                                         "Max", "Min", "Equal", "Less", "Greater"};
  static_assert(std::size(kNames) == static_cast<size_t>(BinaryOp::kCount));
  return op < BinaryOp::kCount ? kNames[static_cast<size_t>(op)] : "BinaryOp(?)";
}

std::string_view unary_op_name(UnaryOp op) {
  constexpr std::string_view kNames[] = {"Neg",       "Abs",       "Sqrt", "Exp", "Log",
                                         "Relu",      "Sigmoid",   "Tanh", "Erf", "HardSigmoid",
                                         "HardSwish", "LeakyRelu", "Clip", "Not"};
  static_assert(std::size(kNames) == static_cast<size_t>(UnaryOp::kCount));
  return op < UnaryOp::kCount ? kNames[static_cast<size_t>(op)] : "UnaryOp(?)";
}

std::string_view reduce_op_name(ReduceOp op) {
  constexpr std::string_view kNames[] = {"ReduceSum", "ReduceMean", "ReduceMax", "ReduceMin"};
  static_assert(std::size(kNames) == static_cast<size_t>(ReduceOp::kCount));
  return op < ReduceOp::kCount ? kNames[static_cast<size_t>(op)] : "ReduceOp(?)";
}

Shape broadcast_shapes(const Shape& a, const Shape& b, std::string_view op) {
  const size_t r = std::max(a.size(), b.size());
  Shape out(r);
  for (size_t i = 0; i < r; ++i) {
    const int64_t da = i < r - a.size() ? 1 : a[i - (r - a.size())];
    const int64_t db = i < r - b.size() ? 1 : b[i - (r - b.size())];
    if (da != db && da != 1 && db != 1)
      fail(op, "cannot broadcast shapes " + shape_str(a) + " and " + shape_str(b) + ": dim " +
                   num(static_cast<int64_t>(i) - static_cast<int64_t>(r)) + " is " + num(da) +
                   " vs " + num(db) + " (must be equal or 1)");
    out[i] = da == 1 ? db : da;  // 1 against 0 gives 0, as in numpy
  }
  return out;
}

namespace {

using opsutil::broadcast_strides;
using opsutil::for_each_offset;

bool is_compare(BinaryOp op) {
  return op == BinaryOp::kEqual || op == BinaryOp::kLess || op == BinaryOp::kGreater;
}

// Two's-complement wrapping arithmetic (signed overflow is undefined in C++).
template <class T>
T wrap(std::make_unsigned_t<T> v) {
  return static_cast<T>(v);
}
template <class T>
using U = std::make_unsigned_t<T>;

/// Float to integer T: truncation, saturated, NaN to 0.
template <class T>
T saturate(double d) {
  if (std::isnan(d)) return 0;
  if (d <= static_cast<double>(std::numeric_limits<T>::min())) return std::numeric_limits<T>::min();
  if (d >= static_cast<double>(std::numeric_limits<T>::max())) return std::numeric_limits<T>::max();
  return static_cast<T>(d);
}

float binary_f32(BinaryOp op, float a, float b) {
  switch (op) {
    case BinaryOp::kAdd:
      return a + b;
    case BinaryOp::kSub:
      return a - b;
    case BinaryOp::kMul:
      return a * b;
    case BinaryOp::kDiv:
      return a / b;
    case BinaryOp::kPow:
      // Squares and cubes as products, as onnxruntime computes them (correctly rounded for
      // squares, where powf may round a tie the other way).
      if (b == 2.0f) return a * a;
      if (b == 3.0f) return a * a * a;
      return std::pow(a, b);
    case BinaryOp::kMax:
      return (a > b || std::isnan(a)) ? a : b;
    case BinaryOp::kMin:
      return (a < b || std::isnan(a)) ? a : b;
    default:
      return 0.0f;
  }
}

template <class T>
T binary_int(BinaryOp op, T a, T b) {
  switch (op) {
    case BinaryOp::kAdd:
      return wrap<T>(U<T>(a) + U<T>(b));
    case BinaryOp::kSub:
      return wrap<T>(U<T>(a) - U<T>(b));
    case BinaryOp::kMul:
      return wrap<T>(U<T>(a) * U<T>(b));
    case BinaryOp::kDiv:
      if (b == 0) fail("Div", "integer division by zero");
      if (a == std::numeric_limits<T>::min() && b == -1) return a;  // wraps
      return a / b;
    case BinaryOp::kPow:
      return saturate<T>(std::pow(static_cast<double>(a), static_cast<double>(b)));
    case BinaryOp::kMax:
      return a > b ? a : b;
    case BinaryOp::kMin:
      return a < b ? a : b;
    default:
      return 0;
  }
}

template <class T>
bool compare(BinaryOp op, T a, T b) {
  return op == BinaryOp::kEqual ? a == b : op == BinaryOp::kLess ? a < b : a > b;
}

template <class T, class F>
void binary_loop(const Tensor& a, const Tensor& b, Tensor& y, F f) {
  const Shape sa = broadcast_strides(a, y.shape()), sb = broadcast_strides(b, y.shape());
  const T* pa = a.data_as<T>();
  const T* pb = b.data_as<T>();
  using Out = decltype(f(T{}, T{}));
  Out* py = y.data_as<Out>();
  for_each_offset<2>(y.shape(), {&sa, &sb},
                     [&](int64_t i, const auto& off) { py[i] = f(pa[off[0]], pb[off[1]]); });
}

template <class T>
void binary_typed(BinaryOp op, const Tensor& a, const Tensor& b, Tensor& y) {
  if (is_compare(op)) {
    binary_loop<T>(a, b, y, [op](T u, T v) { return uint8_t{compare(op, u, v)}; });
  } else if constexpr (std::is_same_v<T, float>) {
    binary_loop<T>(a, b, y, [op](T u, T v) { return binary_f32(op, u, v); });
  } else {
    binary_loop<T>(a, b, y, [op](T u, T v) { return binary_int(op, u, v); });
  }
}

float unary_f32(UnaryOp op, float x, const UnaryParams& p) {
  switch (op) {
    case UnaryOp::kNeg:
      return -x;
    case UnaryOp::kAbs:
      return std::fabs(x);
    case UnaryOp::kSqrt:
      return std::sqrt(x);
    case UnaryOp::kExp:
      return std::exp(x);
    case UnaryOp::kLog:
      return std::log(x);
    case UnaryOp::kRelu:
      return x < 0.0f ? 0.0f : x;
    case UnaryOp::kSigmoid:
      return 1.0f / (1.0f + std::exp(-x));
    case UnaryOp::kTanh:
      return std::tanh(x);
    case UnaryOp::kErf:
      return std::erf(x);
    case UnaryOp::kHardSigmoid:
    case UnaryOp::kHardSwish: {
      const bool swish = op == UnaryOp::kHardSwish;
      const float alpha = swish ? 1.0f / 6.0f : p.hard_sigmoid_alpha;
      const float beta = swish ? 0.5f : p.hard_sigmoid_beta;
      float t = alpha * x + beta;
      t = t > 1.0f ? 1.0f : t;
      t = t < 0.0f ? 0.0f : t;
      return swish ? x * t : t;
    }
    case UnaryOp::kLeakyRelu:
      return x < 0.0f ? p.leaky_relu_alpha * x : x;
    case UnaryOp::kClip: {
      const float t = x < p.clip_min ? p.clip_min : x;
      return t > p.clip_max ? p.clip_max : t;
    }
    default:
      return 0.0f;
  }
}

template <class T>
T unary_int(UnaryOp op, T x) {
  switch (op) {
    case UnaryOp::kNeg:
      return wrap<T>(U<T>(0) - U<T>(x));
    case UnaryOp::kAbs:
      return x < 0 ? wrap<T>(U<T>(0) - U<T>(x)) : x;
    default:  // kRelu
      return x < 0 ? T{0} : x;
  }
}

template <class T, class F>
void unary_loop(const Tensor& x, Tensor& y, F f) {
  const T* px = x.data_as<T>();
  T* py = y.data_as<T>();
  for_each_offset<1>(x.shape(), {&x.strides()},
                     [&](int64_t i, const auto& off) { py[i] = f(px[off[0]]); });
}

}  // namespace

namespace ref {

Tensor add_resized(const Tensor& a, const Tensor& x, const ResizeParams& p, bool resized_first,
                   const Tensor* a_scale) {
  const Tensor r = ref::resize(x, p);
  const Tensor addend = a_scale ? ref::add_scaled(a, *a_scale) : a;
  return resized_first ? ref::binary(BinaryOp::kAdd, r, addend)
                       : ref::binary(BinaryOp::kAdd, addend, r);
}

Tensor concat_resized(const std::vector<ConcatPart>& parts, int64_t axis) {
  std::vector<Tensor> xs;
  for (const ConcatPart& part : parts)
    xs.push_back(part.resize  ? ref::resize(*part.x, *part.resize)
                 : part.scale ? ref::add_scaled(*part.x, *part.scale)
                              : *part.x);
  return ref::concat(xs, axis);
}

Tensor add_scaled(const Tensor& a, const Tensor& b) {
  if (a.dtype() != DType::kF32 || b.dtype() != DType::kF32)
    fail("AddScaled", "takes float32, got " + describe("A", a) + " and " + describe("B", b));
  return ref::binary(BinaryOp::kAdd, a, ref::binary(BinaryOp::kMul, a, b));
}

Tensor binary(BinaryOp op, const Tensor& a, const Tensor& b) {
  const std::string_view name = binary_op_name(op);
  if (op >= BinaryOp::kCount) fail(name, "unknown op " + num(static_cast<int>(op)));
  if (a.dtype() != b.dtype())
    fail(name,
         "inputs must have the same dtype, got " + describe("A", a) + " and " + describe("B", b));
  const DType t = a.dtype();
  const bool ok = t == DType::kF32 || t == DType::kI32 || t == DType::kI64 ||
                  (t == DType::kBool && op == BinaryOp::kEqual);
  if (!ok)
    fail(name, "takes float32, int32 or int64" +
                   std::string(op == BinaryOp::kEqual ? " or bool" : "") + ", got " +
                   describe("A", a));
  Tensor y = Tensor::zeros(broadcast_shapes(a.shape(), b.shape(), name),
                           is_compare(op) ? DType::kBool : t);
  switch (t) {
    case DType::kF32:
      binary_typed<float>(op, a, b, y);
      break;
    case DType::kI32:
      binary_typed<int32_t>(op, a, b, y);
      break;
    case DType::kI64:
      binary_typed<int64_t>(op, a, b, y);
      break;
    default:  // bool Equal: any non-zero byte is true
      binary_loop<uint8_t>(a, b, y,
                           [](uint8_t u, uint8_t v) { return uint8_t{(u != 0) == (v != 0)}; });
      break;
  }
  return y;
}

Tensor unary(UnaryOp op, const Tensor& x, const UnaryParams& p) {
  const std::string_view name = unary_op_name(op);
  if (op >= UnaryOp::kCount) fail(name, "unknown op " + num(static_cast<int>(op)));
  const DType t = x.dtype();
  if (op == UnaryOp::kNot) {
    opsutil::expect_dtype(name, x, DType::kBool, "X");
    Tensor y = Tensor::zeros(x.shape(), t);
    unary_loop<uint8_t>(x, y, [](uint8_t v) { return uint8_t{v == 0}; });
    return y;
  }
  const bool int_ok = op == UnaryOp::kNeg || op == UnaryOp::kAbs || op == UnaryOp::kRelu;
  if (int_ok && (t == DType::kI32 || t == DType::kI64)) {
    Tensor y = Tensor::zeros(x.shape(), t);
    if (t == DType::kI32)
      unary_loop<int32_t>(x, y, [op](int32_t v) { return unary_int(op, v); });
    else
      unary_loop<int64_t>(x, y, [op](int64_t v) { return unary_int(op, v); });
    return y;
  }
  if (t != DType::kF32)
    fail(name, std::string("takes float32") + (int_ok ? ", int32 or int64" : "") + ", got " +
                   describe("X", x));
  if (op == UnaryOp::kClip && (std::isnan(p.clip_min) || std::isnan(p.clip_max)))
    fail(name, "min and max must not be NaN");
  Tensor y = Tensor::zeros(x.shape(), t);
  unary_loop<float>(x, y, [op, &p](float v) { return unary_f32(op, v, p); });
  return y;
}

}  // namespace ref

// ---- Cast -----------------------------------------------------------------------------------

namespace {

bool castable(DType t) {
  switch (t) {
    case DType::kF32:
    case DType::kF64:
    case DType::kF16:
    case DType::kBF16:
    case DType::kI8:
    case DType::kU8:
    case DType::kI16:
    case DType::kI32:
    case DType::kI64:
    case DType::kBool:
      return true;
    default:
      return false;
  }
}

bool is_float(DType t) {
  return t == DType::kF32 || t == DType::kF64 || t == DType::kF16 || t == DType::kBF16;
}

// One value in transit: floats as double (exact for every source float), integers as int64.
struct Value {
  double f = 0;
  int64_t i = 0;
};

template <class T>
T load(const uint8_t* p) {
  T v;
  std::memcpy(&v, p, sizeof(T));
  return v;
}
template <class T>
void store(uint8_t* p, T v) {
  std::memcpy(p, &v, sizeof(T));
}

Value read(DType t, const uint8_t* p) {
  switch (t) {
    case DType::kF32:
      return {load<float>(p), 0};
    case DType::kF64:
      return {load<double>(p), 0};
    case DType::kF16:
      return {ref::decode_float(Format::kFp16, load<uint16_t>(p)), 0};
    case DType::kBF16:
      return {ref::decode_float(Format::kBf16, load<uint16_t>(p)), 0};
    case DType::kI8:
      return {0, load<int8_t>(p)};
    case DType::kU8:
      return {0, load<uint8_t>(p)};
    case DType::kI16:
      return {0, load<int16_t>(p)};
    case DType::kI32:
      return {0, load<int32_t>(p)};
    case DType::kI64:
      return {0, load<int64_t>(p)};
    default:  // kBool
      return {0, load<uint8_t>(p) != 0};
  }
}

template <class T>
void store_int(uint8_t* p, const Value& v, bool from_float) {
  store<T>(p, from_float ? saturate<T>(v.f) : static_cast<T>(v.i));  // int -> int wraps
}

void write(DType t, uint8_t* p, const Value& v, bool from_float) {
  // Integers reach float types through one rounding (static_cast), floats keep their value.
  const double d = from_float ? v.f : static_cast<double>(v.i);
  const float f = from_float ? static_cast<float>(v.f) : static_cast<float>(v.i);
  switch (t) {
    case DType::kF32:
      return store<float>(p, f);
    case DType::kF64:
      return store<double>(p, d);
    case DType::kF16:
      return store<uint16_t>(p, static_cast<uint16_t>(ref::encode_float(Format::kFp16, f)));
    case DType::kBF16:
      return store<uint16_t>(p, static_cast<uint16_t>(ref::encode_float(Format::kBf16, f)));
    case DType::kI8:
      return store_int<int8_t>(p, v, from_float);
    case DType::kU8:
      return store_int<uint8_t>(p, v, from_float);
    case DType::kI16:
      return store_int<int16_t>(p, v, from_float);
    case DType::kI32:
      return store_int<int32_t>(p, v, from_float);
    case DType::kI64:
      return store_int<int64_t>(p, v, from_float);
    default:  // kBool
      return store<uint8_t>(p, from_float ? v.f != 0.0 || std::isnan(v.f) : v.i != 0);
  }
}

}  // namespace

namespace ref {

Tensor cast(const Tensor& x, DType to) {
  if (!castable(x.dtype()) || !castable(to))
    fail("Cast",
         "casts between float32, float64, float16, bfloat16, int8, uint8, int16, int32, "
         "int64 and bool; got " +
             describe("input", x) + " to " + std::string(dtype_name(to)));
  Tensor y = Tensor::zeros(x.shape(), to);
  const size_t in_bytes = static_cast<size_t>(dtype_bits(x.dtype()) / 8);
  const size_t out_bytes = static_cast<size_t>(dtype_bits(to) / 8);
  const auto* px = static_cast<const uint8_t*>(x.data());
  auto* py = static_cast<uint8_t*>(y.data());
  const bool from_float = is_float(x.dtype());
  for_each_offset<1>(x.shape(), {&x.strides()}, [&](int64_t i, const auto& off) {
    const Value v = read(x.dtype(), px + off[0] * static_cast<int64_t>(in_bytes));
    write(to, py + i * static_cast<int64_t>(out_bytes), v, from_float);
  });
  return y;
}

}  // namespace ref
}  // namespace dynaprec
