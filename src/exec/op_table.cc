// The op table (op_table.h): every ONNX operator the executor runs in float32 (or the graph's
// integer and bool types), keyed by name, one implementation per opset version where the
// operator's semantics changed. Most ops are thin wrappers over include/dynaprec/ops.h that read
// the node's attributes (with ONNX's defaults) and optional inputs; the rest (MatMul, Gemm,
// Conv with non-constant weights, Split, Size, Constant, ...) are written here in terms of
// those ops, the fp32 matmul/conv kernels, or small loops.
//
// dtypes: ops.h runs float32 (and int32/int64/bool where ONNX graphs do shape arithmetic).
// Where ONNX allows more types and a test or model uses them, this file adds them: the
// elementwise binary ops and Max/Min/Sum/Mean/Clip run any of f32, f64, i8, u8, i16, i32, i64
// through typed loops (f16/bf16 through float32, which holds them exactly); MaxPool runs
// int8/uint8 through float32 (exact). Float-only ops refuse other dtypes with kInvalidInput.
//
// Errors: every op function throws Error(kInvalidInput) (or kUnsupported for a valid model
// feature that is not implemented) whose message starts with "<op> node '<name>': ". Errors
// from ops.h are caught at the table's boundary (named<>) and prefixed the same way.
#include "exec/op_table.h"

#include <algorithm>
#include <array>
#include <cmath>
#include <cstring>
#include <limits>
#include <map>
#include <optional>
#include <type_traits>
#include <utility>

#include "dynaprec/conv.h"
#include "dynaprec/conv_transpose.h"
#include "dynaprec/error.h"
#include "dynaprec/lstm.h"
#include "dynaprec/matmul.h"
#include "dynaprec/ops.h"
#include "kernels/ref/ops_ref_util.h"

namespace dynaprec::exec {
namespace {

using Inputs = std::span<const Tensor* const>;
using Outputs = std::vector<Tensor>;
using opsutil::for_each_offset;

// ---- Messages and input access ----------------------------------------------------------------

std::string prefix(const Node& n) { return n.op + " node '" + n.name + "': "; }

[[noreturn]] void bad(const Node& n, const std::string& what) {
  throw Error(ErrorKind::kInvalidInput, prefix(n) + what);
}
[[noreturn]] void unsupported(const Node& n, const std::string& what) {
  throw Error(ErrorKind::kUnsupported, prefix(n) + what);
}

std::string in_name(const Node& n, size_t i) {
  std::string s = "input " + std::to_string(i);
  if (i < n.inputs.size() && !n.inputs[i].empty()) s += " ('" + n.inputs[i] + "')";
  return s;
}

std::string describe(const Node& n, size_t i, const Tensor& t) {
  return in_name(n, i) + " " + std::string(dtype_name(t.dtype())) + " " + shape_str(t.shape());
}

/// Checks that inputs [0, lo) are present and none at or past `hi` is given.
void check_inputs(const Node& n, Inputs in, size_t lo, size_t hi) {
  size_t given = 0;
  for (size_t i = 0; i < in.size(); ++i)
    if (in[i]) given = i + 1;
  if (given > hi)
    bad(n, "takes at most " + std::to_string(hi) + " inputs, got " + std::to_string(given));
  for (size_t i = 0; i < lo; ++i)
    if (i >= in.size() || !in[i])
      bad(n, in_name(n, i) + " is required (takes " + std::to_string(lo) +
                 (lo == hi ? "" : " to " + std::to_string(hi)) + " inputs)");
}

const Tensor* opt_in(Inputs in, size_t i) { return i < in.size() ? in[i] : nullptr; }
const Tensor& req_in(const Node& n, Inputs in, size_t i) {
  const Tensor* t = opt_in(in, i);
  if (!t) bad(n, in_name(n, i) + " is required");
  return *t;
}

bool is_float(DType t) {
  return t == DType::kF32 || t == DType::kF64 || t == DType::kF16 || t == DType::kBF16;
}
bool is_int(DType t) {
  return t == DType::kI8 || t == DType::kU8 || t == DType::kI16 || t == DType::kI32 ||
         t == DType::kI64;
}

/// A float32 view of a float input (f16/bf16/f64 converted); other dtypes are refused.
Tensor as_f32(const Node& n, Inputs in, size_t i) {
  const Tensor& t = req_in(n, in, i);
  if (t.dtype() == DType::kF32) return t;
  if (is_float(t.dtype())) return cast(t, DType::kF32);
  bad(n, in_name(n, i) + " must be a float tensor, got " + describe(n, i, t));
}
/// y (float32) converted back to `dt` (a float dtype).
Tensor back_to(const Tensor& y, DType dt) { return dt == DType::kF32 ? y : cast(y, dt); }

/// Values of an int32/int64 input (shape tensors: axes, pads, repeats, ...).
std::vector<int64_t> ints_of(const Node& n, Inputs in, size_t i) {
  const Tensor& t = req_in(n, in, i);
  if (t.dtype() != DType::kI64 && t.dtype() != DType::kI32)
    bad(n, in_name(n, i) + " must be int64, got " + describe(n, i, t));
  return int_values(t);
}

/// The single value of a scalar (or one-element) input, as double.
double scalar_of(const Node& n, Inputs in, size_t i) {
  const Tensor& t = req_in(n, in, i);
  if (t.numel() != 1) bad(n, in_name(n, i) + " must be a scalar, got " + describe(n, i, t));
  if (t.dtype() == DType::kI4) bad(n, in_name(n, i) + " must not be int4");
  const Tensor d = cast(t, DType::kF64);
  return d.data_as<double>()[0];
}

/// The input shared (no copy) when it owns its storage, else a contiguous copy.
Tensor share(const Tensor& t) { return t.owns_storage() ? t : t.clone(); }

/// Runs F and prefixes errors from ops.h with the node's op and name.
template <OpFn F>
Outputs named(const Node& n, Inputs in) {
  try {
    return F(n, in);
  } catch (const Error& e) {
    const std::string p = prefix(n);
    const std::string what = e.what();
    if (what.compare(0, p.size(), p) == 0) throw;
    throw Error(e.kind(), p + what);
  }
}

// ---- Typed loops for dtypes ops.h does not take ----------------------------------------------

template <class Fn>
decltype(auto) dispatch(DType dt, Fn&& fn) {
  switch (dt) {
    case DType::kF32:
      return fn(float{});
    case DType::kF64:
      return fn(double{});
    case DType::kI8:
      return fn(int8_t{});
    case DType::kU8:
    case DType::kBool:
      return fn(uint8_t{});
    case DType::kI16:
      return fn(int16_t{});
    case DType::kI32:
      return fn(int32_t{});
    default:
      return fn(int64_t{});
  }
}

bool is_cmp(BinaryOp op) {
  return op == BinaryOp::kEqual || op == BinaryOp::kLess || op == BinaryOp::kGreater;
}

template <class T>
T arith(const Node& n, BinaryOp op, T a, T b) {
  if constexpr (std::is_floating_point_v<T>) {
    switch (op) {
      case BinaryOp::kAdd:
        return a + b;
      case BinaryOp::kSub:
        return a - b;
      case BinaryOp::kMul:
        return a * b;
      case BinaryOp::kDiv:
        return a / b;
      case BinaryOp::kPow:  // squares and cubes as products, as ops_ref.cc (and onnxruntime)
        if (b == T(2)) return a * a;
        if (b == T(3)) return a * a * a;
        return static_cast<T>(std::pow(a, b));
      case BinaryOp::kMax:
        if (std::isnan(a) || std::isnan(b)) return std::numeric_limits<T>::quiet_NaN();
        return a < b ? b : a;
      case BinaryOp::kMin:
        if (std::isnan(a) || std::isnan(b)) return std::numeric_limits<T>::quiet_NaN();
        return b < a ? b : a;
      default:
        return T{};
    }
  } else {
    // Two's-complement wrapping through uint64 (no signed overflow, no int promotion traps).
    const auto ua = static_cast<uint64_t>(a), ub = static_cast<uint64_t>(b);
    switch (op) {
      case BinaryOp::kAdd:
        return static_cast<T>(ua + ub);
      case BinaryOp::kSub:
        return static_cast<T>(ua - ub);
      case BinaryOp::kMul:
        return static_cast<T>(ua * ub);
      case BinaryOp::kDiv:
        if (b == 0) bad(n, "integer division by zero");
        if (std::is_signed_v<T> && b == T(-1)) return static_cast<T>(uint64_t{0} - ua);
        return static_cast<T>(a / b);
      case BinaryOp::kPow: {
        const double p = std::pow(static_cast<double>(a), static_cast<double>(b));
        if (std::isnan(p)) return T{};
        if (p <= static_cast<double>(std::numeric_limits<T>::min()))
          return std::numeric_limits<T>::min();
        if (p >= static_cast<double>(std::numeric_limits<T>::max()))
          return std::numeric_limits<T>::max();
        return static_cast<T>(p);
      }
      case BinaryOp::kMax:
        return a < b ? b : a;
      case BinaryOp::kMin:
        return b < a ? b : a;
      default:
        return T{};
    }
  }
}

template <class T>
bool compare(BinaryOp op, T a, T b) {
  switch (op) {
    case BinaryOp::kEqual:
      return a == b;
    case BinaryOp::kLess:
      return a < b;
    default:
      return a > b;
  }
}

/// a `op` b with numpy broadcasting for any of f32, f64, f16, bf16, i8, u8, i16, i32, i64 (and
/// bool for Equal); same dtypes. The float32/int32/int64 cases go through dynaprec::binary.
Tensor ew_binary(const Node& n, BinaryOp op, const Tensor& a, const Tensor& b) {
  if (a.dtype() != b.dtype())
    bad(n, "inputs must have the same dtype, got " + std::string(dtype_name(a.dtype())) + " " +
               shape_str(a.shape()) + " and " + std::string(dtype_name(b.dtype())) + " " +
               shape_str(b.shape()));
  const DType dt = a.dtype();
  if (dt == DType::kBool && op != BinaryOp::kEqual)
    bad(n, "bool inputs are only allowed for Equal, got " + shape_str(a.shape()));
  if (!is_float(dt) && !is_int(dt) && dt != DType::kBool)
    bad(n, "unsupported input dtype " + std::string(dtype_name(dt)));
  if (dt == DType::kF32 || dt == DType::kI32 || dt == DType::kI64 || dt == DType::kBool)
    return binary(op, a, b);
  if (dt == DType::kF16 || dt == DType::kBF16) {
    Tensor y = binary(op, cast(a, DType::kF32), cast(b, DType::kF32));
    return is_cmp(op) ? y : cast(y, dt);
  }
  const Shape out = broadcast_shapes(a.shape(), b.shape(), n.op);
  Tensor y = Tensor::zeros(out, is_cmp(op) ? DType::kBool : dt);
  const Shape sa = opsutil::broadcast_strides(a, out), sb = opsutil::broadcast_strides(b, out);
  dispatch(dt, [&](auto tag) {
    using T = decltype(tag);
    const T* pa = a.data_as<T>();
    const T* pb = b.data_as<T>();
    if (is_cmp(op)) {
      auto* py = y.data_as<uint8_t>();
      for_each_offset<2>(out, {&sa, &sb}, [&](int64_t i, const std::array<int64_t, 2>& o) {
        py[i] = compare(op, pa[o[0]], pb[o[1]]) ? 1 : 0;
      });
    } else {
      T* py = y.data_as<T>();
      for_each_offset<2>(out, {&sa, &sb}, [&](int64_t i, const std::array<int64_t, 2>& o) {
        py[i] = arith<T>(n, op, pa[o[0]], pb[o[1]]);
      });
    }
  });
  return y;
}

// ---- Elementwise ops --------------------------------------------------------------------------

template <BinaryOp B>
Outputs op_binary(const Node& n, Inputs in) {
  check_inputs(n, in, 2, 2);
  return {ew_binary(n, B, *in[0], *in[1])};
}

Outputs op_pow(const Node& n, Inputs in) {
  check_inputs(n, in, 2, 2);
  const Tensor& a = *in[0];
  const Tensor& b = *in[1];
  if (a.dtype() == b.dtype()) return {ew_binary(n, BinaryOp::kPow, a, b)};
  // Opset 12+: the exponent may have another numeric type; computed in double, result in a's.
  for (size_t i = 0; i < 2; ++i)
    if (!is_float(in[i]->dtype()) && !is_int(in[i]->dtype()))
      bad(n, in_name(n, i) + " must be numeric, got " + describe(n, i, *in[i]));
  const Tensor y = ew_binary(n, BinaryOp::kPow, cast(a, DType::kF64), cast(b, DType::kF64));
  return {cast(y, a.dtype())};
}

/// Variadic Max/Min/Sum/Mean: folds the binary op over 1+ inputs.
template <BinaryOp B, bool kMean = false>
Outputs op_variadic(const Node& n, Inputs in) {
  if (in.empty() || !in[0]) bad(n, "needs at least one input");
  for (size_t i = 0; i < in.size(); ++i)
    if (!in[i]) bad(n, in_name(n, i) + " is missing");
  Tensor acc = in[0]->clone();
  for (size_t i = 1; i < in.size(); ++i) acc = ew_binary(n, B, acc, *in[i]);
  if (kMean) {
    if (!is_float(acc.dtype())) bad(n, "inputs must be float, got " + describe(n, 0, *in[0]));
    Tensor d = Tensor::zeros({}, DType::kF64);
    d.data_as<double>()[0] = static_cast<double>(in.size());
    acc = ew_binary(n, BinaryOp::kDiv, acc, cast(d, acc.dtype()));
  }
  return {acc};
}

Tensor unary_f(const Node& n, Inputs in, UnaryOp op, const UnaryParams& p = {}) {
  check_inputs(n, in, 1, 1);
  const Tensor& x = *in[0];
  if ((op == UnaryOp::kNeg || op == UnaryOp::kAbs || op == UnaryOp::kRelu) &&
      (x.dtype() == DType::kI32 || x.dtype() == DType::kI64))
    return unary(op, x, p);
  return back_to(unary(op, as_f32(n, in, 0), p), x.dtype());
}

template <UnaryOp U>
Outputs op_unary(const Node& n, Inputs in) {
  return {unary_f(n, in, U)};
}

Outputs op_leaky_relu(const Node& n, Inputs in) {
  UnaryParams p;
  p.leaky_relu_alpha = attr_float(n, "alpha", 0.01f);
  return {unary_f(n, in, UnaryOp::kLeakyRelu, p)};
}

Outputs op_hard_sigmoid(const Node& n, Inputs in) {
  UnaryParams p;
  p.hard_sigmoid_alpha = attr_float(n, "alpha", 0.2f);
  p.hard_sigmoid_beta = attr_float(n, "beta", 0.5f);
  return {unary_f(n, in, UnaryOp::kHardSigmoid, p)};
}

Outputs op_not(const Node& n, Inputs in) {
  check_inputs(n, in, 1, 1);
  if (in[0]->dtype() != DType::kBool) bad(n, "input must be bool, got " + describe(n, 0, *in[0]));
  return {unary(UnaryOp::kNot, *in[0])};
}

/// Clip of any numeric dtype with bounds lo/hi (nullopt: unbounded).
Tensor clip_any(const Node& n, const Tensor& x, std::optional<double> lo,
                std::optional<double> hi) {
  if (x.dtype() == DType::kF32 || x.dtype() == DType::kF16 || x.dtype() == DType::kBF16) {
    UnaryParams p;
    if (lo) p.clip_min = static_cast<float>(*lo);
    if (hi) p.clip_max = static_cast<float>(*hi);
    const Tensor xf = x.dtype() == DType::kF32 ? x : cast(x, DType::kF32);
    return back_to(unary(UnaryOp::kClip, xf, p), x.dtype());
  }
  if (!is_float(x.dtype()) && !is_int(x.dtype()))
    bad(n, "input must be numeric, got " + describe(n, 0, x));
  Tensor y = x.clone();
  dispatch(x.dtype(), [&](auto tag) {
    using T = decltype(tag);
    T* p = y.data_as<T>();
    const T l = lo ? static_cast<T>(*lo) : std::numeric_limits<T>::lowest();
    const T h = hi ? static_cast<T>(*hi) : std::numeric_limits<T>::max();
    for (int64_t i = 0; i < y.numel(); ++i) {
      if constexpr (std::is_floating_point_v<T>)
        if (std::isnan(p[i])) continue;
      p[i] = std::min(std::max(p[i], l), h);
    }
  });
  return y;
}

Outputs op_clip_7(const Node& n, Inputs in) {
  check_inputs(n, in, 1, 1);
  return {clip_any(n, *in[0], attr_float(n, "min", std::numeric_limits<float>::lowest()),
                   attr_float(n, "max", std::numeric_limits<float>::max()))};
}

Outputs op_clip_11(const Node& n, Inputs in) {
  check_inputs(n, in, 1, 3);
  std::optional<double> lo, hi;
  for (size_t i = 1; i < 3; ++i)
    if (const Tensor* t = opt_in(in, i)) {
      if (t->dtype() != in[0]->dtype())
        bad(n, in_name(n, i) + " must have the input's dtype " +
                   std::string(dtype_name(in[0]->dtype())) + ", got " + describe(n, i, *t));
      (i == 1 ? lo : hi) = scalar_of(n, in, i);
    }
  return {clip_any(n, *in[0], lo, hi)};
}

// ---- Softmax ---------------------------------------------------------------------------------

template <bool kLog, bool kLegacy>
Outputs op_softmax(const Node& n, Inputs in) {
  check_inputs(n, in, 1, 1);
  const Tensor x = as_f32(n, in, 0);
  const int64_t axis = attr_int(n, "axis", kLegacy ? 1 : -1);
  Tensor y;
  if (kLegacy)
    y = kLog ? log_softmax_legacy(x, axis) : softmax_legacy(x, axis);
  else
    y = kLog ? log_softmax(x, axis) : softmax(x, axis);
  return {back_to(y, in[0]->dtype())};
}

// ---- Reductions ------------------------------------------------------------------------------

enum class Red : uint8_t { kSum, kMean, kMax, kMin, kL2 };

/// kAxesInput: axes come from input 1 (with noop_with_empty_axes), else from the attribute.
template <Red R, bool kAxesInput>
Outputs op_reduce(const Node& n, Inputs in) {
  check_inputs(n, in, 1, kAxesInput ? 2 : 1);
  const Tensor& x = *in[0];
  std::vector<int64_t> axes;
  bool noop = false;
  if (kAxesInput) {
    if (opt_in(in, 1)) axes = ints_of(n, in, 1);
    noop = attr_int(n, "noop_with_empty_axes", 0) != 0;
  } else {
    axes = attr_ints(n, "axes");
  }
  const bool keep = attr_int(n, "keepdims", 1) != 0;
  if (x.dtype() != DType::kF32 && x.dtype() != DType::kI32 && x.dtype() != DType::kI64 &&
      !is_float(x.dtype()))
    bad(n, "input must be float, int32 or int64, got " + describe(n, 0, x));
  const bool conv = x.dtype() != DType::kF32 && is_float(x.dtype());
  const Tensor xx = conv ? cast(x, DType::kF32) : x;
  Tensor y;
  switch (R) {
    case Red::kSum:
      y = reduce(ReduceOp::kSum, xx, axes, keep, noop);
      break;
    case Red::kMean:
      y = reduce(ReduceOp::kMean, xx, axes, keep, noop);
      break;
    case Red::kMax:
      y = reduce(ReduceOp::kMax, xx, axes, keep, noop);
      break;
    case Red::kMin:
      y = reduce(ReduceOp::kMin, xx, axes, keep, noop);
      break;
    case Red::kL2:
      if (noop && axes.empty()) {
        y = xx.clone();
        if (y.dtype() == DType::kF32)
          for (int64_t i = 0; i < y.numel(); ++i)
            y.data_as<float>()[i] = std::fabs(y.data_as<float>()[i]);
        else
          y = unary(UnaryOp::kAbs, y);
        break;
      }
      y = reduce(ReduceOp::kSum, binary(BinaryOp::kMul, xx, xx), axes, keep, false);
      if (y.dtype() == DType::kF32) {
        y = unary(UnaryOp::kSqrt, y);
      } else {  // integers: sqrt in double, truncated
        y = cast(y, DType::kF64);
        for (int64_t i = 0; i < y.numel(); ++i)
          y.data_as<double>()[i] = std::sqrt(y.data_as<double>()[i]);
        y = cast(y, x.dtype());
      }
      break;
  }
  return {conv ? cast(y, x.dtype()) : y};
}

Outputs op_argmax(const Node& n, Inputs in) {
  check_inputs(n, in, 1, 1);
  const Tensor& x = *in[0];
  const Tensor xx = is_float(x.dtype()) && x.dtype() != DType::kF32 ? cast(x, DType::kF32) : x;
  if (xx.dtype() != DType::kF32 && xx.dtype() != DType::kI32 && xx.dtype() != DType::kI64)
    bad(n, "input must be float, int32 or int64, got " + describe(n, 0, x));
  return {argmax(xx, attr_int(n, "axis", 0), attr_int(n, "keepdims", 1) != 0,
                 attr_int(n, "select_last_index", 0) != 0)};
}

// ---- Pooling ---------------------------------------------------------------------------------

AutoPad auto_pad_of(const Node& n) {
  const std::string s = attr_string(n, "auto_pad", "NOTSET");
  if (s == "NOTSET") return AutoPad::kNotSet;
  if (s == "VALID") return AutoPad::kValid;
  if (s == "SAME_UPPER") return AutoPad::kSameUpper;
  if (s == "SAME_LOWER") return AutoPad::kSameLower;
  bad(n, "auto_pad '" + s + "' is not one of NOTSET, VALID, SAME_UPPER, SAME_LOWER");
}

PoolParams pool_params(const Node& n, const Tensor& x) {
  if (x.rank() < 3) bad(n, "X must be [N, C, D1, ...] (rank >= 3), got " + describe(n, 0, x));
  PoolParams p;
  p.kernel = attr_ints(n, "kernel_shape");
  if (!has_attr(n, "kernel_shape")) bad(n, "attribute 'kernel_shape' is required");
  if (p.kernel.size() != static_cast<size_t>(x.rank() - 2))
    bad(n, "kernel_shape has " + std::to_string(p.kernel.size()) + " dims, X has " +
               std::to_string(x.rank() - 2) + " spatial dims");
  p.strides = attr_ints(n, "strides");
  p.pads = attr_ints(n, "pads");
  p.dilations = attr_ints(n, "dilations");
  p.auto_pad = auto_pad_of(n);
  p.ceil_mode = attr_int(n, "ceil_mode", 0) != 0;
  p.count_include_pad = attr_int(n, "count_include_pad", 0) != 0;
  if (p.auto_pad != AutoPad::kNotSet) p.pads.clear();
  return p;
}

Outputs op_max_pool(const Node& n, Inputs in) {
  check_inputs(n, in, 1, 1);
  if (n.outputs.size() > 1 && !n.outputs[1].empty())
    unsupported(n, "the Indices output of MaxPool is not supported");
  if (attr_int(n, "storage_order", 0) != 0) unsupported(n, "storage_order 1 is not supported");
  const Tensor& x = *in[0];
  const PoolParams p = pool_params(n, x);
  if (x.dtype() == DType::kI8 || x.dtype() == DType::kU8)  // exact in float32
    return {cast(max_pool(cast(x, DType::kF32), p), x.dtype())};
  return {back_to(max_pool(as_f32(n, in, 0), p), x.dtype())};
}

Outputs op_average_pool(const Node& n, Inputs in) {
  check_inputs(n, in, 1, 1);
  const PoolParams p = pool_params(n, *in[0]);
  return {back_to(average_pool(as_f32(n, in, 0), p), in[0]->dtype())};
}

Outputs op_global_average_pool(const Node& n, Inputs in) {
  check_inputs(n, in, 1, 1);
  return {back_to(global_average_pool(as_f32(n, in, 0)), in[0]->dtype())};
}

// ---- Normalization ---------------------------------------------------------------------------

Outputs op_batch_norm(const Node& n, Inputs in) {
  check_inputs(n, in, 5, 5);
  if (attr_int(n, "training_mode", 0) != 0)
    unsupported(n, "training_mode=1 (training BatchNormalization) is not supported");
  if (n.opset < 9 && attr_int(n, "spatial", 1) == 0) unsupported(n, "spatial=0 is not supported");
  for (size_t i = 1; i < n.outputs.size(); ++i)
    if (!n.outputs[i].empty())
      unsupported(n, "the training outputs (mean, var, saved_mean, saved_var) are not supported");
  const float eps = attr_float(n, "epsilon", 1e-5f);
  const Tensor x = as_f32(n, in, 0);
  return {back_to(batch_norm_inference(x, as_f32(n, in, 1), as_f32(n, in, 2), as_f32(n, in, 3),
                                       as_f32(n, in, 4), eps),
                  in[0]->dtype())};
}

Outputs op_instance_norm(const Node& n, Inputs in) {
  check_inputs(n, in, 3, 3);
  return {back_to(instance_norm(as_f32(n, in, 0), as_f32(n, in, 1), as_f32(n, in, 2),
                                attr_float(n, "epsilon", 1e-5f)),
                  in[0]->dtype())};
}

Outputs op_layer_norm(const Node& n, Inputs in) {
  check_inputs(n, in, 2, 3);
  const Tensor x = opsutil::contiguous(as_f32(n, in, 0));
  const int64_t axis_attr = attr_int(n, "axis", -1);
  const float eps = attr_float(n, "epsilon", 1e-5f);
  Tensor bias;
  if (opt_in(in, 2)) bias = as_f32(n, in, 2);
  Outputs out;
  out.push_back(
      back_to(layer_norm(x, as_f32(n, in, 1), opt_in(in, 2) ? &bias : nullptr, axis_attr, eps),
              in[0]->dtype()));
  const bool want_mean = n.outputs.size() > 1 && !n.outputs[1].empty();
  const bool want_inv = n.outputs.size() > 2 && !n.outputs[2].empty();
  if (want_mean || want_inv) {
    const int64_t axis = opsutil::norm_axis(n.op, axis_attr, x.rank());
    Shape st = x.shape();
    int64_t outer = 1, inner = 1;
    for (int64_t d = 0; d < x.rank(); ++d) {
      if (d < axis)
        outer *= x.dim(static_cast<int>(d));
      else {
        inner *= x.dim(static_cast<int>(d));
        st[static_cast<size_t>(d)] = 1;
      }
    }
    Tensor mean = Tensor::zeros(st, DType::kF32), inv = Tensor::zeros(st, DType::kF32);
    const float* px = x.data_as<float>();
    for (int64_t o = 0; o < outer; ++o) {
      double s = 0, s2 = 0;
      for (int64_t i = 0; i < inner; ++i) s += px[o * inner + i];
      const double m = s / static_cast<double>(inner);
      for (int64_t i = 0; i < inner; ++i) {
        const double d = px[o * inner + i] - m;
        s2 += d * d;
      }
      mean.data_as<float>()[o] = static_cast<float>(m);
      inv.data_as<float>()[o] =
          static_cast<float>(1.0 / std::sqrt(s2 / static_cast<double>(inner) + eps));
    }
    out.push_back(want_mean ? mean : Tensor());
    if (want_inv) out.push_back(inv);
  }
  return out;
}

// ---- Resize / Upsample -----------------------------------------------------------------------

ResizeMode resize_mode(const Node& n) {
  const std::string m = attr_string(n, "mode", "nearest");
  if (m == "nearest") return ResizeMode::kNearest;
  if (m == "linear" || m == "bilinear") return ResizeMode::kLinear;
  if (m == "cubic") unsupported(n, "mode 'cubic' is not supported");
  bad(n, "mode '" + m + "' is not one of nearest, linear, cubic");
}

std::vector<float> floats_of(const Node& n, Inputs in, size_t i) {
  const Tensor t = cast(req_in(n, in, i), DType::kF32);
  return {t.data_as<float>(), t.data_as<float>() + t.numel()};
}

/// Upsample (7-9) and Resize-10: scales only, asymmetric coordinates, nearest rounds down.
template <bool kScalesInput>
Outputs op_upsample(const Node& n, Inputs in) {
  check_inputs(n, in, kScalesInput ? 2 : 1, kScalesInput ? 2 : 1);
  ResizeParams p;
  p.mode = resize_mode(n);
  p.coord = CoordMode::kAsymmetric;
  p.nearest = NearestMode::kFloor;
  p.scales = kScalesInput ? floats_of(n, in, 1) : attr_floats(n, "scales");
  if (p.scales.size() != static_cast<size_t>(in[0]->rank()))
    bad(n, "scales has " + std::to_string(p.scales.size()) + " values, X has rank " +
               std::to_string(in[0]->rank()));
  return {back_to(resize(as_f32(n, in, 0), p), in[0]->dtype())};
}

// Resize-11+'s parameters for inputs (X, roi, scales, sizes).
ResizeParams resize11_params(const Node& n, Inputs in) {
  check_inputs(n, in, 1, 4);
  ResizeParams p;
  p.mode = resize_mode(n);
  const std::string c = attr_string(n, "coordinate_transformation_mode", "half_pixel");
  if (c == "half_pixel")
    p.coord = CoordMode::kHalfPixel;
  else if (c == "asymmetric")
    p.coord = CoordMode::kAsymmetric;
  else if (c == "align_corners")
    p.coord = CoordMode::kAlignCorners;
  else if (c == "pytorch_half_pixel")
    p.coord = CoordMode::kPytorchHalfPixel;
  else if (c == "half_pixel_symmetric")
    p.coord = CoordMode::kHalfPixelSymmetric;
  else if (c == "tf_crop_and_resize" || c == "tf_half_pixel_for_nn")
    unsupported(n, "coordinate_transformation_mode '" + c + "' is not supported");
  else
    bad(n, "unknown coordinate_transformation_mode '" + c + "'");
  const std::string nm = attr_string(n, "nearest_mode", "round_prefer_floor");
  if (nm == "round_prefer_floor")
    p.nearest = NearestMode::kRoundPreferFloor;
  else if (nm == "round_prefer_ceil")
    p.nearest = NearestMode::kRoundPreferCeil;
  else if (nm == "floor")
    p.nearest = NearestMode::kFloor;
  else if (nm == "ceil")
    p.nearest = NearestMode::kCeil;
  else
    bad(n, "unknown nearest_mode '" + nm + "'");
  if (attr_int(n, "antialias", 0) != 0) unsupported(n, "antialias=1 is not supported");
  if (has_attr(n, "axes")) unsupported(n, "the axes attribute is not supported");
  if (attr_string(n, "keep_aspect_ratio_policy", "stretch") != "stretch")
    unsupported(n, "keep_aspect_ratio_policy other than 'stretch' is not supported");
  const Tensor* scales = opt_in(in, 2);
  const Tensor* sizes = opt_in(in, 3);
  const size_t rank = static_cast<size_t>(in[0]->rank());
  if (scales && scales->numel() > 0) {
    if (sizes && sizes->numel() > 0) bad(n, "only one of scales and sizes may be given");
    p.scales = floats_of(n, in, 2);
    if (p.scales.size() != rank)
      bad(n, "scales has " + std::to_string(p.scales.size()) + " values, X has rank " +
                 std::to_string(rank));
  } else if (sizes && sizes->numel() > 0) {
    p.sizes = ints_of(n, in, 3);
    if (p.sizes.size() != rank)
      bad(n, "sizes has " + std::to_string(p.sizes.size()) + " values, X has rank " +
                 std::to_string(rank));
  } else {
    bad(n, "one of scales and sizes must be given");
  }
  return p;
}

Outputs op_resize_11(const Node& n, Inputs in) {
  const ResizeParams p = resize11_params(n, in);
  return {back_to(resize(as_f32(n, in, 0), p), in[0]->dtype())};
}

// ---- Data movement ---------------------------------------------------------------------------

Outputs op_transpose(const Node& n, Inputs in) {
  check_inputs(n, in, 1, 1);
  return {transpose(*in[0], attr_ints(n, "perm"))};
}

Outputs op_reshape(const Node& n, Inputs in) {
  check_inputs(n, in, 2, 2);
  return {reshape(*in[0], ints_of(n, in, 1), attr_int(n, "allowzero", 0) != 0)};
}

Outputs op_flatten(const Node& n, Inputs in) {
  check_inputs(n, in, 1, 1);
  return {flatten(*in[0], attr_int(n, "axis", 1))};
}

template <bool kInput>
Outputs op_squeeze(const Node& n, Inputs in) {
  check_inputs(n, in, 1, kInput ? 2 : 1);
  std::vector<int64_t> axes;
  if (kInput) {
    if (opt_in(in, 1)) axes = ints_of(n, in, 1);
  } else {
    axes = attr_ints(n, "axes");
  }
  return {squeeze(*in[0], axes)};
}

template <bool kInput>
Outputs op_unsqueeze(const Node& n, Inputs in) {
  check_inputs(n, in, kInput ? 2 : 1, kInput ? 2 : 1);
  if (!kInput && !has_attr(n, "axes")) bad(n, "attribute 'axes' is required");
  return {unsqueeze(*in[0], kInput ? ints_of(n, in, 1) : attr_ints(n, "axes"))};
}

Outputs op_concat(const Node& n, Inputs in) {
  if (in.empty()) bad(n, "needs at least one input");
  if (!has_attr(n, "axis")) bad(n, "attribute 'axis' is required");
  std::vector<Tensor> xs;
  for (size_t i = 0; i < in.size(); ++i) {
    if (!in[i]) bad(n, in_name(n, i) + " is missing");
    xs.push_back(*in[i]);
  }
  return {concat(xs, attr_int(n, "axis", 0))};
}

/// Split: kVersion 7 (split attribute), 13 (split input), 18 (num_outputs).
template <int kVersion>
Outputs op_split(const Node& n, Inputs in) {
  check_inputs(n, in, 1, kVersion >= 13 ? 2 : 1);
  const Tensor& x = *in[0];
  if (x.rank() == 0) bad(n, "input must have rank >= 1, got a scalar");
  const int64_t axis = opsutil::norm_axis(n.op, attr_int(n, "axis", 0), x.rank());
  const int64_t dim = x.dim(static_cast<int>(axis));
  const size_t outs = n.outputs.size();
  if (outs == 0) bad(n, "has no outputs");
  std::vector<int64_t> split;
  if (kVersion >= 13) {
    if (opt_in(in, 1)) split = ints_of(n, in, 1);
  } else {
    split = attr_ints(n, "split");
  }
  if (!split.empty()) {
    if (split.size() != outs)
      bad(n, "split has " + std::to_string(split.size()) + " sizes for " + std::to_string(outs) +
                 " outputs");
    int64_t sum = 0;
    for (int64_t s : split) {
      if (s < 0) bad(n, "split sizes must be >= 0, got " + opsutil::list_str(split));
      sum += s;
    }
    if (sum != dim)
      bad(n, "split sizes " + opsutil::list_str(split) + " sum to " + std::to_string(sum) +
                 ", the axis has " + std::to_string(dim));
  } else {
    const auto k = static_cast<int64_t>(outs);
    if (kVersion >= 18 && has_attr(n, "num_outputs")) {
      if (attr_int(n, "num_outputs", 0) != k)
        bad(n, "num_outputs " + std::to_string(attr_int(n, "num_outputs", 0)) + " but " +
                   std::to_string(k) + " outputs");
      const int64_t chunk = (dim + k - 1) / k;
      for (int64_t i = 0; i < k; ++i)
        split.push_back(std::max<int64_t>(0, std::min(chunk, dim - i * chunk)));
    } else {
      if (dim % k != 0)
        bad(n, "the axis has " + std::to_string(dim) + " elements, not divisible into " +
                   std::to_string(k) + " equal parts");
      split.assign(outs, dim / k);
    }
  }
  Outputs out;
  int64_t start = 0;
  for (int64_t s : split) {
    out.push_back(slice(x, {start}, {start + s}, {axis}));
    start += s;
  }
  return out;
}

Outputs op_slice_1(const Node& n, Inputs in) {
  check_inputs(n, in, 1, 1);
  if (!has_attr(n, "starts") || !has_attr(n, "ends"))
    bad(n, "attributes 'starts' and 'ends' are required");
  return {slice(*in[0], attr_ints(n, "starts"), attr_ints(n, "ends"), attr_ints(n, "axes"))};
}

Outputs op_slice_10(const Node& n, Inputs in) {
  check_inputs(n, in, 3, 5);
  std::vector<int64_t> axes, steps;
  if (opt_in(in, 3)) axes = ints_of(n, in, 3);
  if (opt_in(in, 4)) steps = ints_of(n, in, 4);
  return {slice(*in[0], ints_of(n, in, 1), ints_of(n, in, 2), axes, steps)};
}

Outputs op_gather(const Node& n, Inputs in) {
  check_inputs(n, in, 2, 2);
  if (in[1]->dtype() != DType::kI32 && in[1]->dtype() != DType::kI64)
    bad(n, "indices must be int32 or int64, got " + describe(n, 1, *in[1]));
  return {gather(*in[0], *in[1], attr_int(n, "axis", 0))};
}

template <bool kStartEnd>
Outputs op_shape(const Node& n, Inputs in) {
  check_inputs(n, in, 1, 1);
  if (!kStartEnd) return {shape_of(*in[0])};
  std::optional<int64_t> end;
  if (has_attr(n, "end")) end = attr_int(n, "end", 0);
  return {shape_of(*in[0], attr_int(n, "start", 0), end)};
}

Outputs op_size(const Node& n, Inputs in) {
  check_inputs(n, in, 1, 1);
  Tensor y = Tensor::zeros({}, DType::kI64);
  y.data_as<int64_t>()[0] = in[0]->numel();
  return {y};
}

std::optional<DType> dtype_of_onnx(int64_t t) {
  switch (t) {
    case 1:
      return DType::kF32;
    case 2:
      return DType::kU8;
    case 3:
      return DType::kI8;
    case 5:
      return DType::kI16;
    case 6:
      return DType::kI32;
    case 7:
      return DType::kI64;
    case 9:
      return DType::kBool;
    case 10:
      return DType::kF16;
    case 11:
      return DType::kF64;
    case 16:
      return DType::kBF16;
    default:
      return std::nullopt;
  }
}

Outputs op_cast(const Node& n, Inputs in) {
  check_inputs(n, in, 1, 1);
  if (!has_attr(n, "to")) bad(n, "attribute 'to' is required");
  const int64_t to = attr_int(n, "to", 0);
  const auto dt = dtype_of_onnx(to);
  if (!dt) unsupported(n, "cast to ONNX data type " + std::to_string(to) + " is not supported");
  if (in[0]->dtype() == *dt) return {share(*in[0])};
  return {cast(*in[0], *dt)};
}

Outputs op_identity(const Node& n, Inputs in) {
  check_inputs(n, in, 1, 1);
  return {share(*in[0])};
}

Outputs op_constant(const Node& n, Inputs in) {
  check_inputs(n, in, 0, 0);
  if (n.attrs.size() != 1)
    bad(n, "must have exactly one attribute, got " + std::to_string(n.attrs.size()));
  const auto& [name, a] = *n.attrs.begin();
  if (name == "value") {
    const auto* t = std::get_if<Tensor>(&a);
    if (!t) bad(n, "attribute 'value' must be a tensor");
    return {share(*t)};
  }
  if (name == "value_float") {
    Tensor y = Tensor::zeros({}, DType::kF32);
    y.data_as<float>()[0] = attr_float(n, name, 0);
    return {y};
  }
  if (name == "value_int") {
    Tensor y = Tensor::zeros({}, DType::kI64);
    y.data_as<int64_t>()[0] = attr_int(n, name, 0);
    return {y};
  }
  if (name == "value_floats") {
    const auto v = attr_floats(n, name);
    Tensor y = Tensor::zeros({static_cast<int64_t>(v.size())}, DType::kF32);
    std::copy(v.begin(), v.end(), y.data_as<float>());
    return {y};
  }
  if (name == "value_ints") return {int64_tensor(attr_ints(n, name))};
  unsupported(n, "attribute '" + name + "' is not supported (value, value_float(s), value_int(s))");
}

Outputs op_constant_of_shape(const Node& n, Inputs in) {
  check_inputs(n, in, 1, 1);
  const std::vector<int64_t> shape = ints_of(n, in, 0);
  for (int64_t d : shape)
    if (d < 0) bad(n, "shape must not have negative dims, got " + opsutil::list_str(shape));
  Tensor value = Tensor::zeros({1}, DType::kF32);
  if (has_attr(n, "value")) {
    const auto* t = std::get_if<Tensor>(&n.attrs.at("value"));
    if (!t) bad(n, "attribute 'value' must be a tensor");
    if (t->numel() != 1) bad(n, "attribute 'value' must have one element");
    value = t->clone();
  }
  if (value.dtype() == DType::kI4) bad(n, "int4 value is not supported");
  Tensor y = Tensor::empty(shape, value.dtype());
  // The value's bit pattern repeated, a whole element at a time (a byte-wise copy per element
  // took 60 ms for 128 MiB).
  const auto count = static_cast<size_t>(y.numel());
  auto fill = [&](auto bits) {
    std::memcpy(&bits, value.data(), sizeof bits);
    std::fill_n(static_cast<decltype(bits)*>(y.data()), count, bits);
  };
  switch (dtype_bits(value.dtype())) {
    case 8:
      fill(uint8_t{});
      break;
    case 16:
      fill(uint16_t{});
      break;
    case 32:
      fill(uint32_t{});
      break;
    default:
      fill(uint64_t{});
      break;
  }
  return {y};
}

Outputs op_where(const Node& n, Inputs in) {
  check_inputs(n, in, 3, 3);
  if (in[0]->dtype() != DType::kBool)
    bad(n, "condition must be bool, got " + describe(n, 0, *in[0]));
  if (in[1]->dtype() != in[2]->dtype())
    bad(n, "X and Y must have the same dtype, got " + describe(n, 1, *in[1]) + " and " +
               describe(n, 2, *in[2]));
  return {where(*in[0], *in[1], *in[2])};
}

Outputs op_expand(const Node& n, Inputs in) {
  check_inputs(n, in, 2, 2);
  return {expand(*in[0], ints_of(n, in, 1))};
}

Outputs op_tile(const Node& n, Inputs in) {
  check_inputs(n, in, 2, 2);
  return {tile(*in[0], ints_of(n, in, 1))};
}

PadMode pad_mode(const Node& n) {
  const std::string m = attr_string(n, "mode", "constant");
  if (m == "constant") return PadMode::kConstant;
  if (m == "reflect") return PadMode::kReflect;
  if (m == "edge") return PadMode::kEdge;
  if (m == "wrap" && n.opset >= 19) return PadMode::kWrap;
  bad(n, "mode '" + m + "' is not one of constant, reflect, edge");
}

Outputs op_pad_2(const Node& n, Inputs in) {
  check_inputs(n, in, 1, 1);
  if (!has_attr(n, "pads")) bad(n, "attribute 'pads' is required");
  return {pad(*in[0], attr_ints(n, "pads"), pad_mode(n), attr_float(n, "value", 0.0f))};
}

Outputs op_pad_11(const Node& n, Inputs in) {
  check_inputs(n, in, 2, n.opset >= 18 ? 4 : 3);
  const Tensor& x = *in[0];
  std::vector<int64_t> pads = ints_of(n, in, 1);
  double value = 0.0;
  if (opt_in(in, 2)) {
    if (in[2]->dtype() != x.dtype())
      bad(n, "constant_value must have the input's dtype, got " + describe(n, 2, *in[2]));
    if (in[2]->numel() != 0) value = scalar_of(n, in, 2);
  }
  if (opt_in(in, 3)) {
    const std::vector<int64_t> axes = opsutil::norm_axes(n.op, ints_of(n, in, 3), x.rank());
    if (pads.size() != 2 * axes.size())
      bad(n, "pads has " + std::to_string(pads.size()) + " values for " +
                 std::to_string(axes.size()) + " axes (needs 2 per axis)");
    std::vector<int64_t> full(2 * static_cast<size_t>(x.rank()), 0);
    for (size_t i = 0; i < axes.size(); ++i) {
      full[static_cast<size_t>(axes[i])] = pads[i];
      full[static_cast<size_t>(axes[i] + x.rank())] = pads[i + axes.size()];
    }
    pads = full;
  }
  return {pad(x, pads, pad_mode(n), value)};
}

template <bool kV12>
Outputs op_dropout(const Node& n, Inputs in) {
  check_inputs(n, in, 1, kV12 ? 3 : 1);
  const Tensor& x = *in[0];
  if (kV12 && opt_in(in, 2) && scalar_of(n, in, 2) != 0.0) {
    const double ratio = opt_in(in, 1) ? scalar_of(n, in, 1) : 0.5;
    if (ratio != 0.0) unsupported(n, "training_mode=true with a non-zero ratio is not supported");
  }
  Outputs out{share(x)};
  if (n.outputs.size() > 1 && !n.outputs[1].empty()) {
    // Inference: nothing is dropped. The mask is bool from opset 10, x's type before.
    const DType mt = n.opset >= 10 ? DType::kBool : x.dtype();
    Tensor ones = Tensor::zeros({}, DType::kF64);
    ones.data_as<double>()[0] = 1.0;
    out.push_back(expand(cast(ones, mt), x.shape()));
  }
  return out;
}

// ---- MatMul / Gemm / Conv (activation x activation, fp32) -------------------------------------

/// W [N, K] = transpose of the [K, N] matrix at b (row stride ldb).
Tensor transposed(const float* b, int64_t k, int64_t nn, int64_t ldb) {
  Tensor w = Tensor::zeros({nn, k}, DType::kF32);
  float* pw = w.data_as<float>();
  for (int64_t i = 0; i < k; ++i)
    for (int64_t j = 0; j < nn; ++j) pw[j * k + i] = b[i * ldb + j];
  return w;
}

/// y[M, N] = x[M, K] · W[N, K]ᵀ in fp32 (W contiguous [N, K]).
void mm(const float* x, int64_t m, const Tensor& w, float* y) {
  const int64_t nn = w.dim(0), k = w.dim(1);
  if (m == 0 || nn == 0) return;
  if (k == 0) {
    std::fill(y, y + m * nn, 0.0f);
    return;
  }
  const MatmulWeights mw = matmul_weights(w, Format::kFp32);
  matmul(x, m, mw, nullptr, y);
}

Outputs op_matmul(const Node& n, Inputs in) {
  check_inputs(n, in, 2, 2);
  for (size_t i = 0; i < 2; ++i) {
    if (!is_float(in[i]->dtype()))
      bad(n, in_name(n, i) + " must be float, got " + describe(n, i, *in[i]));
    if (in[i]->rank() == 0) bad(n, in_name(n, i) + " must not be a scalar");
  }
  if (in[0]->dtype() != in[1]->dtype())
    bad(n, "A and B must have the same dtype, got " + describe(n, 0, *in[0]) + " and " +
               describe(n, 1, *in[1]));
  const Tensor a = opsutil::contiguous(as_f32(n, in, 0));
  const Tensor b = opsutil::contiguous(as_f32(n, in, 1));
  Shape as = a.shape(), bs = b.shape();
  const bool a1 = as.size() == 1, b1 = bs.size() == 1;
  if (a1) as.insert(as.begin(), 1);
  if (b1) bs.push_back(1);
  const int64_t m = as[as.size() - 2], k = as.back(), kb = bs[bs.size() - 2], nn = bs.back();
  if (k != kb)
    bad(n, "inner dims differ: A " + shape_str(a.shape()) + " and B " + shape_str(b.shape()));
  const Shape ab(as.begin(), as.end() - 2), bb(bs.begin(), bs.end() - 2);
  const Shape batch = broadcast_shapes(ab, bb, n.op);
  // Element strides of each operand's matrices along the broadcast batch dims.
  auto batch_strides = [&](const Shape& own) {
    Shape s(batch.size(), 0);
    const size_t off = batch.size() - own.size();
    int64_t stride = 1;
    for (size_t i = own.size(); i-- > 0;) {
      s[off + i] = own[i] == 1 ? 0 : stride;
      stride *= own[i];
    }
    return s;
  };
  const Shape sa = batch_strides(ab), sb = batch_strides(bb);
  Shape out = batch;
  if (!a1) out.push_back(m);
  if (!b1) out.push_back(nn);
  Tensor y = Tensor::zeros(out, DType::kF32);
  const float* pa = a.data_as<float>();
  const float* pb = b.data_as<float>();
  float* py = y.data_as<float>();
  int64_t last_b = -1;
  Tensor w;
  for_each_offset<2>(batch, {&sa, &sb}, [&](int64_t i, const std::array<int64_t, 2>& o) {
    if (o[1] != last_b) {
      w = transposed(pb + o[1] * k * nn, k, nn, nn);
      last_b = o[1];
    }
    mm(pa + o[0] * m * k, m, w, py + i * m * nn);
  });
  return {back_to(y, in[0]->dtype())};
}

Outputs op_gemm(const Node& n, Inputs in) {
  check_inputs(n, in, n.opset < 11 ? 3 : 2, 3);
  for (size_t i = 0; i < 2; ++i)
    if (in[i]->rank() != 2) bad(n, in_name(n, i) + " must be 2-D, got " + describe(n, i, *in[i]));
  const Tensor a = opsutil::contiguous(as_f32(n, in, 0));
  const Tensor b = opsutil::contiguous(as_f32(n, in, 1));
  const bool ta = attr_int(n, "transA", 0) != 0, tb = attr_int(n, "transB", 0) != 0;
  const float alpha = attr_float(n, "alpha", 1.0f), beta = attr_float(n, "beta", 1.0f);
  const int64_t m = ta ? a.dim(1) : a.dim(0), k = ta ? a.dim(0) : a.dim(1);
  const int64_t kb = tb ? b.dim(1) : b.dim(0), nn = tb ? b.dim(0) : b.dim(1);
  if (k != kb)
    bad(n, "inner dims differ: A " + shape_str(a.shape()) + (ta ? " (transposed)" : "") +
               " and B " + shape_str(b.shape()) + (tb ? " (transposed)" : ""));
  const Tensor x = ta ? transposed(a.data_as<float>(), k, m, m) : a;
  const Tensor w = tb ? b : transposed(b.data_as<float>(), k, nn, nn);
  Tensor y = Tensor::zeros({m, nn}, DType::kF32);
  mm(x.data_as<float>(), m, w, y.data_as<float>());
  if (alpha != 1.0f)
    for (int64_t i = 0; i < y.numel(); ++i) y.data_as<float>()[i] *= alpha;
  if (const Tensor* c = opt_in(in, 2); c && beta != 0.0f) {
    const Tensor cf = as_f32(n, in, 2);
    if (!opsutil::broadcasts_to(cf.shape(), y.shape()))
      bad(n, "C " + shape_str(cf.shape()) + " does not broadcast to " + shape_str(y.shape()));
    Tensor cb = cf;
    if (beta != 1.0f) {
      Tensor s = Tensor::zeros({}, DType::kF32);
      s.data_as<float>()[0] = beta;
      cb = binary(BinaryOp::kMul, cf, s);
    }
    y = binary(BinaryOp::kAdd, y, cb);
  }
  return {back_to(y, in[0]->dtype())};
}

}  // namespace

Conv2dParams conv2d_params(const Node& n, const Shape& x, const Shape& w) {
  if (x.size() != 3 && x.size() != 4)
    throw Error(ErrorKind::kUnsupported,
                prefix(n) + "only 1-D and 2-D convolutions are supported, X is " + shape_str(x));
  if (w.size() != x.size())
    bad(n, "W must have X's rank, got W " + shape_str(w) + " for X " + shape_str(x));
  const bool one_d = x.size() == 3;
  const size_t sd = one_d ? 1 : 2;
  auto per_dim = [&](const char* name, int64_t def) {
    std::vector<int64_t> v = attr_ints(n, name);
    if (v.empty()) v.assign(sd, def);
    if (v.size() != sd)
      bad(n, std::string(name) + " has " + std::to_string(v.size()) + " values for " +
                 std::to_string(sd) + " spatial dims");
    for (int64_t e : v)
      if (e < 1) bad(n, std::string(name) + " must be >= 1, got " + opsutil::list_str(v));
    return v;
  };
  const std::vector<int64_t> strides = per_dim("strides", 1), dil = per_dim("dilations", 1);
  std::vector<int64_t> kernel = attr_ints(n, "kernel_shape");
  for (size_t i = 0; i < kernel.size() && i < sd; ++i)
    if (kernel[i] != w[2 + i])
      bad(n, "kernel_shape " + opsutil::list_str(kernel) + " does not match W " + shape_str(w));
  std::vector<int64_t> pads = attr_ints(n, "pads");
  const AutoPad ap = auto_pad_of(n);
  if (ap != AutoPad::kNotSet || pads.empty()) pads.assign(2 * sd, 0);
  if (pads.size() != 2 * sd)
    bad(n, "pads has " + std::to_string(pads.size()) + " values, needs " + std::to_string(2 * sd));
  for (int64_t e : pads)
    if (e < 0) bad(n, "pads must be >= 0, got " + opsutil::list_str(pads));
  if (ap == AutoPad::kSameUpper || ap == AutoPad::kSameLower) {
    for (size_t i = 0; i < sd; ++i) {
      const int64_t in_d = x[2 + i], kd = w[2 + i];
      const int64_t out_d = (in_d + strides[i] - 1) / strides[i];
      const int64_t total =
          std::max<int64_t>(0, (out_d - 1) * strides[i] + (kd - 1) * dil[i] + 1 - in_d);
      const int64_t small = total / 2, big = total - small;
      pads[i] = ap == AutoPad::kSameUpper ? small : big;
      pads[i + sd] = ap == AutoPad::kSameUpper ? big : small;
    }
  }
  Conv2dParams p;
  p.groups = attr_int(n, "group", 1);
  if (p.groups < 1) bad(n, "group must be >= 1");
  if (one_d) {
    p.stride_w = strides[0];
    p.dilation_w = dil[0];
    p.pad_left = pads[0];
    p.pad_right = pads[1];
  } else {
    p.stride_h = strides[0];
    p.stride_w = strides[1];
    p.dilation_h = dil[0];
    p.dilation_w = dil[1];
    p.pad_top = pads[0];
    p.pad_left = pads[1];
    p.pad_bottom = pads[2];
    p.pad_right = pads[3];
  }
  if (x[1] != w[1] * p.groups)
    bad(n, "X has " + std::to_string(x[1]) + " channels, W " + shape_str(w) + " with group " +
               std::to_string(p.groups) + " needs " + std::to_string(w[1] * p.groups));
  if (w[0] % p.groups != 0)
    bad(n, "W's output channels " + std::to_string(w[0]) + " are not divisible by group " +
               std::to_string(p.groups));
  return p;
}

ConvTransposeParams conv_transpose_params(const Node& n, int spatial) {
  const auto sd = static_cast<size_t>(spatial);
  auto per_dim = [&](const char* name, int64_t def, int64_t lo) {
    std::vector<int64_t> v = attr_ints(n, name);
    if (v.empty()) v.assign(sd, def);
    if (v.size() != sd)
      bad(n, std::string(name) + " has " + std::to_string(v.size()) + " values for " +
                 std::to_string(sd) + " spatial dims");
    for (int64_t e : v)
      if (e < lo) bad(n, std::string(name) + " must be >= " + std::to_string(lo));
    return v;
  };
  const auto strides = per_dim("strides", 1, 1), dil = per_dim("dilations", 1, 1),
             outpad = per_dim("output_padding", 0, 0);
  std::vector<int64_t> pads = attr_ints(n, "pads");
  if (pads.empty()) pads.assign(2 * sd, 0);
  if (pads.size() != 2 * sd)
    bad(n, "pads has " + std::to_string(pads.size()) + " values, needs " + std::to_string(2 * sd));
  const auto os = attr_ints(n, "output_shape");
  if (!os.empty() && os.size() != sd && os.size() != sd + 2)
    bad(n, "output_shape must have one value per spatial dim");
  const size_t o0 = os.size() == sd + 2 ? 2 : 0;  // a full [N, C, ...] shape is accepted too
  ConvTransposeParams p;
  const size_t w = sd - 1;
  if (sd == 2) {
    p.stride_h = strides[0];
    p.dilation_h = dil[0];
    p.output_padding_h = outpad[0];
    p.pad_top = pads[0];
    p.pad_bottom = pads[2];
    if (!os.empty()) p.output_h = os[o0];
  } else if (!os.empty()) {
    p.output_h = 1;
  }
  p.stride_w = strides[w];
  p.dilation_w = dil[w];
  p.output_padding_w = outpad[w];
  p.pad_left = pads[w];
  p.pad_right = pads[sd + w];
  if (!os.empty()) p.output_w = os[o0 + w];
  p.auto_pad = auto_pad_of(n);
  return p;
}

LstmParams lstm_params(const Node& n) {
  LstmParams p;
  const std::string dir = attr_string(n, "direction", "forward");
  if (dir == "forward")
    p.direction = LstmDirection::kForward;
  else if (dir == "reverse")
    p.direction = LstmDirection::kReverse;
  else if (dir == "bidirectional")
    p.direction = LstmDirection::kBidirectional;
  else
    bad(n, "direction '" + dir + "' is not forward, reverse or bidirectional");
  p.layout = attr_int(n, "layout", 0);
  if (has_attr(n, "clip")) p.clip = attr_float(n, "clip", 0.0f);
  p.input_forget = attr_int(n, "input_forget", 0) != 0;
  const auto names = attr_strings(n, "activations", {});
  const auto alphas = attr_floats(n, "activation_alpha", {});
  const auto betas = attr_floats(n, "activation_beta", {});
  for (size_t i = 0; i < names.size(); ++i)
    p.activations.push_back(
        rnn_activation(names[i], i < alphas.size() ? std::optional<float>(alphas[i]) : std::nullopt,
                       i < betas.size() ? std::optional<float>(betas[i]) : std::nullopt));
  return p;
}

namespace {

Outputs op_conv(const Node& n, Inputs in) {
  check_inputs(n, in, 2, 3);
  Tensor x = opsutil::contiguous(as_f32(n, in, 0));
  Tensor w = opsutil::contiguous(as_f32(n, in, 1));
  const Conv2dParams p = conv2d_params(n, x.shape(), w.shape());
  const bool one_d = x.rank() == 3;
  if (one_d) {
    x = reshape(x, {x.dim(0), x.dim(1), 1, x.dim(2)});
    w = reshape(w, {w.dim(0), w.dim(1), 1, w.dim(2)});
  }
  Tensor bias;
  if (opt_in(in, 2)) {
    bias = opsutil::contiguous(as_f32(n, in, 2));
    if (bias.shape() != Shape{w.dim(0)})
      bad(n, "B must be [" + std::to_string(w.dim(0)) + "], got " + describe(n, 2, *in[2]));
  }
  const ConvWeights cw = conv_weights(w, Format::kFp32);
  Tensor y = Tensor::zeros(conv2d_output_shape(x.shape(), cw, p), DType::kF32);
  if (y.numel() > 0) conv2d(x, cw, opt_in(in, 2) ? bias.data_as<float>() : nullptr, p, y);
  if (one_d) y = reshape(y, {y.dim(0), y.dim(1), y.dim(3)});
  return {back_to(y, in[0]->dtype())};
}

Outputs op_conv_transpose(const Node& n, Inputs in) {
  check_inputs(n, in, 2, 3);
  Tensor x = opsutil::contiguous(as_f32(n, in, 0));
  Tensor w = opsutil::contiguous(as_f32(n, in, 1));
  if (x.rank() != 3 && x.rank() != 4)
    unsupported(n,
                "only 1-D and 2-D transposed convolutions are supported, got " + describe(n, 0, x));
  if (w.rank() != x.rank()) bad(n, "W must have X's rank, got " + describe(n, 1, w));
  const bool one_d = x.rank() == 3;
  const ConvTransposeParams p = conv_transpose_params(n, one_d ? 1 : 2);
  if (one_d) {
    x = reshape(x, {x.dim(0), x.dim(1), 1, x.dim(2)});
    w = reshape(w, {w.dim(0), w.dim(1), 1, w.dim(2)});
  }
  const int64_t groups = attr_int(n, "group", 1);
  if (groups < 1) bad(n, "group must be >= 1");
  const ConvTransposeWeights cw = conv_transpose_weights(w, groups, Format::kFp32);
  Tensor bias;
  if (opt_in(in, 2)) {
    bias = opsutil::contiguous(as_f32(n, in, 2));
    if (bias.numel() != cw.oc_per_group * groups)
      bad(n, "B must have one value per output channel, got " + describe(n, 2, *in[2]));
  }
  Tensor y = Tensor::empty(conv_transpose_output_shape(x.shape(), cw, p), DType::kF32);
  conv_transpose2d(x, cw, opt_in(in, 2) ? bias.data_as<float>() : nullptr, p, y);
  if (one_d) y = reshape(y, {y.dim(0), y.dim(1), y.dim(3)});
  return {back_to(y, in[0]->dtype())};
}

Outputs op_lstm(const Node& n, Inputs in) {
  check_inputs(n, in, 3, 8);
  const Tensor x = opsutil::contiguous(as_f32(n, in, 0));
  const LstmParams p = lstm_params(n);
  const Tensor w = opsutil::contiguous(as_f32(n, in, 1)), r = opsutil::contiguous(as_f32(n, in, 2));
  Tensor b, pp, h0, c0;
  if (opt_in(in, 3)) b = opsutil::contiguous(as_f32(n, in, 3));
  if (opt_in(in, 5)) h0 = opsutil::contiguous(as_f32(n, in, 5));
  if (opt_in(in, 6)) c0 = opsutil::contiguous(as_f32(n, in, 6));
  if (opt_in(in, 7)) pp = opsutil::contiguous(as_f32(n, in, 7));
  if (has_attr(n, "hidden_size") && r.rank() == 3 && attr_int(n, "hidden_size", 0) != r.dim(2))
    bad(n, "hidden_size " + std::to_string(attr_int(n, "hidden_size", 0)) + " does not match R " +
               shape_str(r.shape()));
  const LstmWeights lw = lstm_weights(w, r, opt_in(in, 3) ? &b : nullptr,
                                      opt_in(in, 7) ? &pp : nullptr, Format::kFp32);
  LstmOutputs o =
      lstm(x, lw, p, opt_in(in, 4), opt_in(in, 5) ? &h0 : nullptr, opt_in(in, 6) ? &c0 : nullptr);
  return {std::move(o.y), std::move(o.y_h), std::move(o.y_c)};
}

// ---- The table -------------------------------------------------------------------------------

struct Entry {
  int64_t since;
  OpFn fn;  ///< nullptr: the op was removed at `since`
};
using Table = std::map<std::string, std::vector<Entry>, std::less<>>;

Table make_table() {
  Table t;
  auto add = [&](const char* op, int64_t since, OpFn fn) { t[op].push_back({since, fn}); };
  add("Add", 7, &named<op_binary<BinaryOp::kAdd>>);
  add("Sub", 7, &named<op_binary<BinaryOp::kSub>>);
  add("Mul", 7, &named<op_binary<BinaryOp::kMul>>);
  add("Div", 7, &named<op_binary<BinaryOp::kDiv>>);
  add("Pow", 7, &named<op_pow>);
  add("Equal", 7, &named<op_binary<BinaryOp::kEqual>>);
  add("Less", 7, &named<op_binary<BinaryOp::kLess>>);
  add("Greater", 7, &named<op_binary<BinaryOp::kGreater>>);
  add("Max", 7, &named<op_variadic<BinaryOp::kMax>>);
  add("Min", 7, &named<op_variadic<BinaryOp::kMin>>);
  add("Sum", 7, &named<op_variadic<BinaryOp::kAdd>>);
  add("Mean", 7, &named<op_variadic<BinaryOp::kAdd, true>>);
  add("Sqrt", 7, &named<op_unary<UnaryOp::kSqrt>>);
  add("Neg", 7, &named<op_unary<UnaryOp::kNeg>>);
  add("Abs", 7, &named<op_unary<UnaryOp::kAbs>>);
  add("Log", 7, &named<op_unary<UnaryOp::kLog>>);
  add("Exp", 7, &named<op_unary<UnaryOp::kExp>>);
  add("Relu", 7, &named<op_unary<UnaryOp::kRelu>>);
  add("Sigmoid", 7, &named<op_unary<UnaryOp::kSigmoid>>);
  add("Tanh", 7, &named<op_unary<UnaryOp::kTanh>>);
  add("Erf", 9, &named<op_unary<UnaryOp::kErf>>);
  add("HardSwish", 14, &named<op_unary<UnaryOp::kHardSwish>>);
  add("LeakyRelu", 7, &named<op_leaky_relu>);
  add("HardSigmoid", 7, &named<op_hard_sigmoid>);
  add("Not", 7, &named<op_not>);
  add("Clip", 7, &named<op_clip_7>);
  add("Clip", 11, &named<op_clip_11>);
  add("Softmax", 7, &named<op_softmax<false, true>>);
  add("Softmax", 13, &named<op_softmax<false, false>>);
  add("LogSoftmax", 7, &named<op_softmax<true, true>>);
  add("LogSoftmax", 13, &named<op_softmax<true, false>>);
  add("ReduceSum", 7, &named<op_reduce<Red::kSum, false>>);
  add("ReduceSum", 13, &named<op_reduce<Red::kSum, true>>);
  add("ReduceMean", 7, &named<op_reduce<Red::kMean, false>>);
  add("ReduceMean", 18, &named<op_reduce<Red::kMean, true>>);
  add("ReduceMax", 7, &named<op_reduce<Red::kMax, false>>);
  add("ReduceMax", 18, &named<op_reduce<Red::kMax, true>>);
  add("ReduceMin", 7, &named<op_reduce<Red::kMin, false>>);
  add("ReduceMin", 18, &named<op_reduce<Red::kMin, true>>);
  add("ReduceL2", 7, &named<op_reduce<Red::kL2, false>>);
  add("ReduceL2", 18, &named<op_reduce<Red::kL2, true>>);
  add("ArgMax", 7, &named<op_argmax>);
  add("GlobalAveragePool", 7, &named<op_global_average_pool>);
  add("AveragePool", 7, &named<op_average_pool>);
  add("MaxPool", 7, &named<op_max_pool>);
  add("BatchNormalization", 7, &named<op_batch_norm>);
  add("InstanceNormalization", 7, &named<op_instance_norm>);
  add("LayerNormalization", 17, &named<op_layer_norm>);
  add("Upsample", 7, &named<op_upsample<false>>);
  add("Upsample", 9, &named<op_upsample<true>>);
  add("Upsample", 10, nullptr);  // deprecated in favour of Resize
  add("Resize", 10, &named<op_upsample<true>>);
  add("Resize", 11, &named<op_resize_11>);
  add("Transpose", 7, &named<op_transpose>);
  add("Reshape", 7, &named<op_reshape>);
  add("Flatten", 7, &named<op_flatten>);
  add("Squeeze", 7, &named<op_squeeze<false>>);
  add("Squeeze", 13, &named<op_squeeze<true>>);
  add("Unsqueeze", 7, &named<op_unsqueeze<false>>);
  add("Unsqueeze", 13, &named<op_unsqueeze<true>>);
  add("Concat", 7, &named<op_concat>);
  add("Split", 7, &named<op_split<7>>);
  add("Split", 13, &named<op_split<13>>);
  add("Split", 18, &named<op_split<18>>);
  add("Slice", 7, &named<op_slice_1>);
  add("Slice", 10, &named<op_slice_10>);
  add("Gather", 7, &named<op_gather>);
  add("Shape", 7, &named<op_shape<false>>);
  add("Shape", 15, &named<op_shape<true>>);
  add("Size", 7, &named<op_size>);
  add("Cast", 7, &named<op_cast>);
  add("Identity", 7, &named<op_identity>);
  add("Constant", 7, &named<op_constant>);
  add("ConstantOfShape", 9, &named<op_constant_of_shape>);
  add("Where", 9, &named<op_where>);
  add("Expand", 8, &named<op_expand>);
  add("Tile", 7, &named<op_tile>);
  add("Pad", 7, &named<op_pad_2>);
  add("Pad", 11, &named<op_pad_11>);
  add("Dropout", 7, &named<op_dropout<false>>);
  add("Dropout", 12, &named<op_dropout<true>>);
  add("MatMul", 7, &named<op_matmul>);
  add("Gemm", 7, &named<op_gemm>);
  add("Conv", 7, &named<op_conv>);
  add("ConvTranspose", 7, &named<op_conv_transpose>);
  add("LSTM", 7, &named<op_lstm>);
  return t;
}

const Table& table() {
  static const Table t = make_table();
  return t;
}

// ---- Attribute access ------------------------------------------------------------------------

const char* attr_type_name(const Attribute& a) {
  constexpr const char* kNames[] = {"int",    "float",   "string", "ints",
                                    "floats", "strings", "tensor", "graph"};
  return kNames[a.index()];
}

template <class T>
const T* get_attr(const Node& n, const std::string& name, const char* want) {
  const auto it = n.attrs.find(name);
  if (it == n.attrs.end()) return nullptr;
  const T* v = std::get_if<T>(&it->second);
  if (!v)
    bad(n, "attribute '" + name + "' must be " + want + ", got " + attr_type_name(it->second));
  return v;
}

}  // namespace

OpFn find_op(std::string_view domain, std::string_view op, int64_t opset) {
  if (!domain.empty() && domain != "ai.onnx") return nullptr;
  if (opset < 7 || opset > 18) return nullptr;
  const auto it = table().find(op);
  if (it == table().end()) return nullptr;
  OpFn best = nullptr;
  int64_t best_since = -1;
  for (const Entry& e : it->second)
    if (e.since <= opset && e.since > best_since) {
      best = e.fn;
      best_since = e.since;
    }
  return best;
}

namespace {
// a + a · b (AddScaled, and the scaled operands of AddResized and ConcatResized).
Tensor scaled(const Node& n, const Tensor& a, const Tensor& b) {
  if (a.dtype() == DType::kF32 && b.dtype() == DType::kF32) return add_scaled(a, b);
  return ew_binary(n, BinaryOp::kAdd, a, ew_binary(n, BinaryOp::kMul, a, b));
}

Outputs op_add_scaled(const Node& n, Inputs in) {
  check_inputs(n, in, 2, 2);
  return {scaled(n, *in[0], *in[1])};
}

// AddResized(a, X, roi, scales, sizes) with Resize-11's attributes and resized_first:
// Add(a, Resize(X, ...)) (Add(Resize(...), a) with resized_first = 1). With a_scaled = 1 the
// inputs are (a, s, X, roi, scales, sizes) and the addend AddScaled(a, s).
Outputs op_add_resized_amax(const Node& n, Inputs in, float* y_amax) {
  if (y_amax) *y_amax = -1.0f;
  const bool a_scaled = attr_int(n, "a_scaled", 0) != 0;
  const size_t lead = a_scaled ? 2 : 1;
  check_inputs(n, in, lead + 1, lead + 4);
  const Inputs rin = in.subspan(lead);
  const ResizeParams p = resize11_params(n, rin);
  const bool first = attr_int(n, "resized_first", 0) != 0;
  const Tensor& a = *in[0];
  const Tensor* s = a_scaled ? in[1] : nullptr;
  if (a_scaled && !s) bad(n, "input 1 (the scale) is missing");
  if (a.dtype() == DType::kF32 && rin[0]->dtype() == DType::kF32 &&
      (!s || s->dtype() == DType::kF32))
    return {add_resized(a, *rin[0], p, first, y_amax, s)};
  const Tensor addend = s ? scaled(n, a, *s) : a;
  const Tensor r = back_to(resize(as_f32(n, rin, 0), p), rin[0]->dtype());
  return {first ? ew_binary(n, BinaryOp::kAdd, r, addend)
                : ew_binary(n, BinaryOp::kAdd, addend, r)};
}
Outputs op_add_resized(const Node& n, Inputs in) { return op_add_resized_amax(n, in, nullptr); }

// ConcatResized(parts...) with concat_axis, part_inputs (the node inputs of each part) and
// resized (1 where the part is Resize(X, roi, scales, sizes) with the node's Resize attributes,
// 2 where it is AddScaled(x, s), 0 for a plain input): Concat(..., Resize(...), ...) with the
// resized and scaled parts written straight into the output.
Outputs op_concat_resized_amax(const Node& n, Inputs in, float* y_amax) {
  if (y_amax) *y_amax = -1.0f;
  const std::vector<int64_t> counts = attr_ints(n, "part_inputs");
  const std::vector<int64_t> resized = attr_ints(n, "resized");
  if (counts.empty() || counts.size() != resized.size())
    bad(n, "part_inputs and resized must list the same parts");
  std::vector<std::vector<const Tensor*>> spans;
  size_t at = 0;
  for (int64_t c : counts) {
    if (c < 1) bad(n, "a part needs at least one input");
    std::vector<const Tensor*> v;
    for (int64_t j = 0; j < c; ++j, ++at) v.push_back(at < in.size() ? in[at] : nullptr);
    if (!v[0]) bad(n, "input " + std::to_string(spans.size()) + " is missing");
    spans.push_back(std::move(v));
  }
  std::vector<ResizeParams> params(spans.size());
  bool f32 = true;
  for (size_t k = 0; k < spans.size(); ++k) {
    if (resized[k] < 0 || resized[k] > 2) bad(n, "resized lists 0, 1 or 2 per part");
    if (resized[k] == 2 && (spans[k].size() != 2 || !spans[k][1]))
      bad(n, "a scaled part takes two inputs (x, s)");
    f32 = f32 && spans[k][0]->dtype() == DType::kF32 &&
          (resized[k] != 2 || spans[k][1]->dtype() == DType::kF32);
    if (resized[k] == 1) params[k] = resize11_params(n, spans[k]);
  }
  const int64_t axis = attr_int(n, "concat_axis", 0);
  if (f32) {
    std::vector<ConcatPart> parts;
    for (size_t k = 0; k < spans.size(); ++k)
      parts.push_back({spans[k][0], resized[k] == 1 ? &params[k] : nullptr,
                       resized[k] == 2 ? spans[k][1] : nullptr});
    return {concat_resized(parts, axis, y_amax)};
  }
  std::vector<Tensor> xs;
  for (size_t k = 0; k < spans.size(); ++k)
    xs.push_back(resized[k] == 1
                     ? back_to(resize(as_f32(n, spans[k], 0), params[k]), spans[k][0]->dtype())
                 : resized[k] == 2 ? scaled(n, *spans[k][0], *spans[k][1])
                                   : *spans[k][0]);
  return {concat(xs, axis)};
}
Outputs op_concat_resized(const Node& n, Inputs in) {
  return op_concat_resized_amax(n, in, nullptr);
}
}  // namespace

AmaxOpFn find_fused_amax_op(std::string_view op) {
  if (op == "AddResized") return &op_add_resized_amax;
  if (op == "ConcatResized") return &op_concat_resized_amax;
  return nullptr;
}

OpFn find_fused_op(std::string_view op) {
  if (op == "AddScaled") return &op_add_scaled;
  if (op == "AddResized") return &op_add_resized;
  if (op == "ConcatResized") return &op_concat_resized;
  return nullptr;
}

bool executor_builtin(std::string_view op) { return op == "If"; }

bool has_attr(const Node& n, const std::string& name) { return n.attrs.count(name) != 0; }

int64_t attr_int(const Node& n, const std::string& name, int64_t def) {
  const auto* v = get_attr<int64_t>(n, name, "an int");
  return v ? *v : def;
}

float attr_float(const Node& n, const std::string& name, float def) {
  const auto it = n.attrs.find(name);
  if (it != n.attrs.end())
    if (const auto* i = std::get_if<int64_t>(&it->second)) return static_cast<float>(*i);
  const auto* v = get_attr<float>(n, name, "a float");
  return v ? *v : def;
}

std::string attr_string(const Node& n, const std::string& name, const std::string& def) {
  const auto* v = get_attr<std::string>(n, name, "a string");
  return v ? *v : def;
}

std::vector<int64_t> attr_ints(const Node& n, const std::string& name,
                               const std::vector<int64_t>& def) {
  const auto* v = get_attr<std::vector<int64_t>>(n, name, "a list of ints");
  return v ? *v : def;
}

std::vector<float> attr_floats(const Node& n, const std::string& name,
                               const std::vector<float>& def) {
  const auto* v = get_attr<std::vector<float>>(n, name, "a list of floats");
  return v ? *v : def;
}

std::vector<std::string> attr_strings(const Node& n, const std::string& name,
                                      const std::vector<std::string>& def) {
  const auto* v = get_attr<std::vector<std::string>>(n, name, "a list of strings");
  return v ? *v : def;
}

std::vector<std::string> unsupported_nodes(const Graph& g) {
  std::vector<std::string> out;
  for (const Node& n : g.nodes) {
    if (!op_supported(n.domain, n.op, n.opset))
      out.push_back(n.op + " (domain '" + (n.domain.empty() ? "ai.onnx" : n.domain) + "', opset " +
                    std::to_string(n.opset) + ") in node '" + n.name + "'");
    for (const auto& [k, a] : n.attrs)
      if (const auto* sub = std::get_if<std::shared_ptr<Graph>>(&a))
        for (auto& s : unsupported_nodes(**sub)) out.push_back(std::move(s));
  }
  return out;
}

}  // namespace dynaprec::exec
