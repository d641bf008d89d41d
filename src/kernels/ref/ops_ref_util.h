// Helpers shared by the reference ops (ops_ref*.cc) and the dispatch in ops_hwy.cc: argument
// checks with ONNX-named messages, axis normalization, broadcast strides and a C-order walk over
// a shape that tracks element offsets into several strided tensors.
#pragma once

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "dynaprec/error.h"
#include "dynaprec/ops.h"
#include "dynaprec/tensor.h"

namespace dynaprec::opsutil {

[[noreturn]] inline void fail(std::string_view op, const std::string& what) {
  throw Error(ErrorKind::kInvalidInput, std::string(op) + ": " + what);
}

inline std::string num(int64_t v) { return std::to_string(v); }

/// "[1, -2, 3]" for attribute lists in messages.
inline std::string list_str(const std::vector<int64_t>& v) {
  std::string s = "[";
  for (size_t i = 0; i < v.size(); ++i) s += (i ? ", " : "") + std::to_string(v[i]);
  return s + "]";
}

/// "input 'x' float32 (2, 3)" for messages.
inline std::string describe(std::string_view name, const Tensor& t) {
  return std::string(name) + " " + std::string(dtype_name(t.dtype())) + " " + shape_str(t.shape());
}

/// axis in [-rank, rank) (or [-rank, rank] with `inclusive`, for Flatten-like axes), made
/// non-negative.
inline int64_t norm_axis(std::string_view op, int64_t axis, int64_t rank, bool inclusive = false) {
  const int64_t hi = inclusive ? rank : rank - 1;
  if (axis < -rank || axis > hi)
    fail(op, "axis " + num(axis) + " is out of range [" + num(-rank) + ", " + num(hi) +
                 "] for rank " + num(rank));
  return axis < 0 ? axis + rank : axis;
}

/// Normalized, checked axes: each in range, no repeats. Keeps the given order.
inline std::vector<int64_t> norm_axes(std::string_view op, const std::vector<int64_t>& axes,
                                      int64_t rank) {
  std::vector<int64_t> out;
  for (int64_t a : axes) {
    const int64_t n = norm_axis(op, a, rank);
    for (int64_t o : out)
      if (o == n) fail(op, "axis " + num(a) + " is repeated in axes " + list_str(axes));
    out.push_back(n);
  }
  return out;
}

/// Bytes per element; int4 (packed) is refused.
inline size_t elem_bytes(std::string_view op, const Tensor& t, std::string_view name = "input") {
  if (t.dtype() == DType::kI4)
    fail(op, std::string(name) + " is int4 (packed), which this op does not take");
  return static_cast<size_t>(dtype_bits(t.dtype()) / 8);
}

inline void expect_dtype(std::string_view op, const Tensor& t, DType want,
                         std::string_view name = "input") {
  if (t.dtype() != want)
    fail(op, std::string(name) + " must be " + std::string(dtype_name(want)) + ", got " +
                 describe(name, t));
}

/// Element strides of t broadcast (numpy rules) to `out`: 0 along dims t lacks or has as 1.
/// The caller has checked that t broadcasts to out.
inline Shape broadcast_strides(const Tensor& t, const Shape& out) {
  Shape s(out.size(), 0);
  const size_t off = out.size() - t.shape().size();
  for (size_t i = 0; i < t.shape().size(); ++i) s[off + i] = t.shape()[i] == 1 ? 0 : t.strides()[i];
  return s;
}

/// Whether t's shape broadcasts unidirectionally to `out` (t has no more dims, each equal or 1).
inline bool broadcasts_to(const Shape& t, const Shape& out) {
  if (t.size() > out.size()) return false;
  const size_t off = out.size() - t.size();
  for (size_t i = 0; i < t.size(); ++i)
    if (t[i] != 1 && t[i] != out[off + i]) return false;
  return true;
}

/// Calls fn(i, off) for every index of `shape` in C order: i is the linear index, off[k] the
/// element offset sum(index · strides[k]) into tensor k. Nothing for an empty shape (numel 0);
/// once for rank 0.
template <size_t K, class Fn>
void for_each_offset(const Shape& shape, const std::array<const Shape*, K>& strides, Fn&& fn) {
  const size_t rank = shape.size();
  for (int64_t d : shape)
    if (d == 0) return;
  std::vector<int64_t> idx(rank, 0);
  std::array<int64_t, K> off{};
  for (int64_t i = 0;; ++i) {
    fn(i, off);
    size_t d = rank;
    for (; d-- > 0;) {
      for (size_t k = 0; k < K; ++k) off[k] += (*strides[k])[d];
      if (++idx[d] < shape[d]) break;
      for (size_t k = 0; k < K; ++k) off[k] -= (*strides[k])[d] * shape[d];
      idx[d] = 0;
    }
    if (d == static_cast<size_t>(-1)) return;
  }
}

/// A strided view of a tensor's elements: element i of the result (row-major over `shape`) is
/// element base + Σ_d idx_d · strides[d] of the tensor's storage (strides in elements, 0 for a
/// broadcast axis, negative for a reversed one), `esize` bytes each. Transpose, Slice and Expand
/// are such views copied into a new contiguous tensor; these build the view, with the ops'
/// checks, for the reference's element-by-element copy and the fast row copy alike.
struct StridedView {
  Shape shape, strides;
  int64_t base = 0;
  size_t esize = 0;
};
StridedView transpose_view(const Tensor& x, const std::vector<int64_t>& perm);
StridedView slice_view(const Tensor& x, const std::vector<int64_t>& starts,
                       const std::vector<int64_t>& ends, const std::vector<int64_t>& axes,
                       const std::vector<int64_t>& steps);
StridedView expand_view(const Tensor& x, const std::vector<int64_t>& shape);

/// BatchNormalization's checked geometry and per-channel constants, shared by the reference
/// and the fast kernel so that both use the very same factor scale / sqrt(var + epsilon).
struct BatchNormPlan {
  int64_t batch = 0, channels = 0, inner = 1;
  std::vector<float> mean, factor, bias;
};

inline BatchNormPlan batch_norm_plan(std::string_view op, const Tensor& x, const Tensor& scale,
                                     const Tensor& bias, const Tensor& mean, const Tensor& var,
                                     float epsilon) {
  expect_dtype(op, x, DType::kF32, "X");
  if (x.rank() < 2) fail(op, "X must be [N, C, ...] (rank >= 2), got " + describe("X", x));
  BatchNormPlan p;
  p.batch = x.dim(0);
  p.channels = x.dim(1);
  for (int d = 2; d < x.rank(); ++d) p.inner *= x.dim(d);
  const Shape c_shape = {p.channels};
  std::vector<float> v[4];
  const std::pair<const Tensor*, const char*> params[] = {
      {&scale, "scale"}, {&bias, "B"}, {&mean, "input_mean"}, {&var, "input_var"}};
  for (size_t i = 0; i < 4; ++i) {
    const auto& [t, name] = params[i];
    expect_dtype(op, *t, DType::kF32, name);
    if (t->shape() != c_shape)
      fail(op, std::string(name) + " must be [C] = " + shape_str(c_shape) + ", got " +
                   describe(name, *t));
    const Tensor c = t->is_contiguous() ? *t : t->clone();
    v[i].assign(c.data_as<float>(), c.data_as<float>() + p.channels);
  }
  p.factor.resize(static_cast<size_t>(p.channels));
  for (size_t c = 0; c < p.factor.size(); ++c) p.factor[c] = v[0][c] / std::sqrt(v[3][c] + epsilon);
  p.bias = std::move(v[1]);
  p.mean = std::move(v[2]);
  return p;
}

/// The checked geometry of one pooling call (MaxPool, AveragePool): per spatial dim the input
/// and output sizes, kernel, strides, dilations and the padding at each end (auto_pad
/// resolved). Throws kInvalidInput naming `op` for a bad one. Shared by ref::max_pool /
/// ref::average_pool and their fast paths, which must agree bit for bit.
struct PoolGeom {
  size_t k = 0;  // spatial dims
  Shape in, out, kernel, strides, dilations, pad_begin, pad_end;
};
PoolGeom pool_geometry(const Shape& x, const PoolParams& p, std::string_view op);

/// x itself if contiguous (a shallow copy sharing storage), else a contiguous clone.
inline Tensor contiguous(const Tensor& x) { return x.is_contiguous() ? x : x.clone(); }

// Resize: the source coordinate of output index o along one axis (ONNX's formulas, in double),
// shared by ref::resize and its fast path, which must agree bit for bit.
inline double resize_source_coord(CoordMode mode, int64_t o, double scale, int64_t in, int64_t out,
                                  double out_width) {
  const double x = static_cast<double>(o);
  switch (mode) {
    case CoordMode::kHalfPixel:
      return (x + 0.5) / scale - 0.5;
    case CoordMode::kAsymmetric:
      return x / scale;
    case CoordMode::kAlignCorners:
      return out_width == 1.0 ? 0.0 : x * static_cast<double>(in - 1) / (out_width - 1.0);
    case CoordMode::kPytorchHalfPixel:
      return out > 1 ? (x + 0.5) / scale - 0.5 : 0.0;
    case CoordMode::kHalfPixelSymmetric: {
      const double adjustment = static_cast<double>(out) / out_width;
      const double offset = static_cast<double>(in) / 2.0 * (1.0 - adjustment);
      return offset + (x + 0.5) / scale - 0.5;
    }
  }
  return 0.0;
}

inline int64_t resize_nearest_index(NearestMode mode, double x, int64_t in) {
  const double f = std::floor(x);
  double r;
  switch (mode) {
    case NearestMode::kRoundPreferFloor:
      r = x - f == 0.5 ? f : std::round(x);
      break;
    case NearestMode::kRoundPreferCeil:
      r = x - f == 0.5 ? f + 1.0 : std::round(x);
      break;
    case NearestMode::kFloor:
      r = f;
      break;
    default:
      r = std::ceil(x);
      break;
  }
  return static_cast<int64_t>(std::clamp(r, 0.0, static_cast<double>(in - 1)));
}

}  // namespace dynaprec::opsutil
