// Reference reductions, ArgMax, softmax and normalization (include/dynaprec/ops.h).
//
// Sums of float32 are accumulated in double and rounded once, so the reference is at least as
// accurate as any fp32 summation order the fast kernels may use; they are checked against it
// with a summation-error bound (tests/kernels/test_ops_fast.cc). Max/Min use the NaN-propagating
// compare-and-select of the elementwise ops.
#include <cmath>
#include <limits>
#include <type_traits>
#include <utility>
#include <vector>

#include "kernels/ref/ops_ref_util.h"

namespace dynaprec {

using opsutil::describe;
using opsutil::fail;
using opsutil::for_each_offset;
using opsutil::num;

namespace {

// The kept and the reduced dims of x, with x's strides for each.
struct Split {
  Shape outer, outer_strides, inner, inner_strides, out_shape;
};

Split split_axes(const Tensor& x, const std::vector<bool>& reduced, bool keepdims) {
  Split s;
  for (int d = 0; d < x.rank(); ++d) {
    if (reduced[static_cast<size_t>(d)]) {
      s.inner.push_back(x.dim(d));
      s.inner_strides.push_back(x.strides()[static_cast<size_t>(d)]);
      if (keepdims) s.out_shape.push_back(1);
    } else {
      s.outer.push_back(x.dim(d));
      s.outer_strides.push_back(x.strides()[static_cast<size_t>(d)]);
      s.out_shape.push_back(x.dim(d));
    }
  }
  return s;
}

template <class T>
T reduce_one(ReduceOp op, const T* base, const Split& s) {
  if constexpr (std::is_same_v<T, float>) {
    double sum = 0;
    int64_t count = 0;
    float m = op == ReduceOp::kMax ? -INFINITY : INFINITY;
    for_each_offset<1>(s.inner, {&s.inner_strides}, [&](int64_t, const auto& off) {
      const float v = base[off[0]];
      sum += v;
      ++count;
      if (op == ReduceOp::kMax && (v > m || std::isnan(v))) m = v;
      if (op == ReduceOp::kMin && (v < m || std::isnan(v))) m = v;
    });
    if (op == ReduceOp::kSum) return static_cast<float>(sum);
    if (op == ReduceOp::kMean) return static_cast<float>(sum / static_cast<double>(count));
    return m;
  } else {
    using U = std::make_unsigned_t<T>;
    U sum = 0;  // wrapping, like the elementwise Add
    int64_t count = 0;
    T m = op == ReduceOp::kMax ? std::numeric_limits<T>::min() : std::numeric_limits<T>::max();
    for_each_offset<1>(s.inner, {&s.inner_strides}, [&](int64_t, const auto& off) {
      const T v = base[off[0]];
      sum += static_cast<U>(v);
      ++count;
      if (op == ReduceOp::kMax && v > m) m = v;
      if (op == ReduceOp::kMin && v < m) m = v;
    });
    if (op == ReduceOp::kSum) return static_cast<T>(sum);
    if (op == ReduceOp::kMean)
      return count == 0 ? T{0} : static_cast<T>(static_cast<T>(sum) / count);
    return m;
  }
}

template <class T>
void reduce_typed(ReduceOp op, const Tensor& x, const Split& s, Tensor& y) {
  const T* px = x.data_as<T>();
  T* py = y.data_as<T>();
  for_each_offset<1>(s.outer, {&s.outer_strides}, [&](int64_t i, const auto& off) {
    py[i] = reduce_one<T>(op, px + off[0], s);
  });
}

void expect_numeric(std::string_view op, const Tensor& x) {
  if (x.dtype() != DType::kF32 && x.dtype() != DType::kI32 && x.dtype() != DType::kI64)
    fail(op, "takes float32, int32 or int64, got " + describe("data", x));
}

// Softmax-like ops on x viewed as [outer, len, inner] (contiguous), along the middle dim.
void softmax_3d(const float* x, float* y, int64_t outer, int64_t len, int64_t inner, bool log) {
  for (int64_t o = 0; o < outer; ++o)
    for (int64_t i = 0; i < inner; ++i) {
      const float* px = x + o * len * inner + i;
      float* py = y + o * len * inner + i;
      float m = -INFINITY;
      for (int64_t k = 0; k < len; ++k) {
        const float v = px[k * inner];
        if (v > m || std::isnan(v)) m = v;
      }
      double sum = 0;
      for (int64_t k = 0; k < len; ++k) {
        const float e = std::exp(px[k * inner] - m);
        if (!log) py[k * inner] = e;
        sum += e;
      }
      if (log) {
        const float ls = static_cast<float>(std::log(sum));
        for (int64_t k = 0; k < len; ++k) py[k * inner] = (px[k * inner] - m) - ls;
      } else {
        const float s = static_cast<float>(sum);
        for (int64_t k = 0; k < len; ++k) py[k * inner] = py[k * inner] / s;
      }
    }
}

int64_t prod(const Shape& s, size_t from, size_t to) {
  int64_t p = 1;
  for (size_t i = from; i < to; ++i) p *= s[i];
  return p;
}

Tensor softmax_axis(const Tensor& x, int64_t axis, bool log, bool legacy) {
  const std::string_view name = log ? "LogSoftmax" : "Softmax";
  opsutil::expect_dtype(name, x, DType::kF32);
  const int64_t r = x.rank();
  const size_t ax = static_cast<size_t>(opsutil::norm_axis(name, axis, r, legacy));
  const Tensor c = opsutil::contiguous(x);
  Tensor y = Tensor::zeros(x.shape(), DType::kF32);
  const Shape& s = x.shape();
  if (legacy)  // opset < 13: rows of everything from axis on
    softmax_3d(c.data_as<float>(), y.data_as<float>(), prod(s, 0, ax), prod(s, ax, s.size()), 1,
               log);
  else
    softmax_3d(c.data_as<float>(), y.data_as<float>(), prod(s, 0, ax), s[ax],
               prod(s, ax + 1, s.size()), log);
  return y;
}

// t's values broadcast (unidirectionally) to `to`, in C order.
std::vector<float> broadcast_values(std::string_view op, std::string_view name, const Tensor& t,
                                    const Shape& to) {
  opsutil::expect_dtype(op, t, DType::kF32, name);
  if (!opsutil::broadcasts_to(t.shape(), to))
    fail(op, describe(name, t) + " does not broadcast to the normalized shape " + shape_str(to));
  std::vector<float> v(static_cast<size_t>(shape_numel(to)));
  const Shape st = opsutil::broadcast_strides(t, to);
  for_each_offset<1>(to, {&st}, [&](int64_t i, const auto& off) {
    v[static_cast<size_t>(i)] = t.data_as<float>()[off[0]];
  });
  return v;
}

// Normalizes `rows` rows of `len` values: (x - mean) · inv_std · scale[j] + bias[j], the
// statistics in double. scale/bias index j = k / inner (per channel) or k (per element).
void normalize_rows(const float* x, float* y, int64_t rows, int64_t len, float epsilon,
                    const std::vector<float>& scale, const std::vector<float>& bias,
                    int64_t per_row_channels, int64_t inner) {
  for (int64_t r = 0; r < rows; ++r) {
    const float* px = x + r * len;
    float* py = y + r * len;
    double sum = 0;
    for (int64_t k = 0; k < len; ++k) sum += px[k];
    const double mean = len ? sum / static_cast<double>(len) : 0.0;
    double sq = 0;
    for (int64_t k = 0; k < len; ++k) sq += (px[k] - mean) * (px[k] - mean);
    const double var = len ? sq / static_cast<double>(len) : 0.0;
    const float mean_f = static_cast<float>(mean);
    const float inv = static_cast<float>(1.0 / std::sqrt(var + static_cast<double>(epsilon)));
    for (int64_t k = 0; k < len; ++k) {
      const size_t j = static_cast<size_t>(per_row_channels ? r % per_row_channels : k / inner);
      py[k] = (px[k] - mean_f) * inv * scale[j] + bias[j];
    }
  }
}

}  // namespace

namespace ref {

Tensor reduce(ReduceOp op, const Tensor& x, const std::vector<int64_t>& axes, bool keepdims,
              bool noop_with_empty_axes) {
  const std::string_view name = reduce_op_name(op);
  if (op >= ReduceOp::kCount) fail(name, "unknown op " + num(static_cast<int>(op)));
  expect_numeric(name, x);
  const std::vector<int64_t> ax = opsutil::norm_axes(name, axes, x.rank());
  if (ax.empty() && noop_with_empty_axes) return x.clone();
  std::vector<bool> reduced(static_cast<size_t>(x.rank()), ax.empty());
  for (int64_t a : ax) reduced[static_cast<size_t>(a)] = true;
  const Split s = split_axes(x, reduced, keepdims);
  Tensor y = Tensor::zeros(s.out_shape, x.dtype());
  if (x.dtype() == DType::kF32)
    reduce_typed<float>(op, x, s, y);
  else if (x.dtype() == DType::kI32)
    reduce_typed<int32_t>(op, x, s, y);
  else
    reduce_typed<int64_t>(op, x, s, y);
  return y;
}

Tensor global_average_pool(const Tensor& x) {
  opsutil::expect_dtype("GlobalAveragePool", x, DType::kF32, "X");
  if (x.rank() < 3)
    fail("GlobalAveragePool", "X must be [N, C, D1, ...] (rank >= 3), got " + describe("X", x));
  std::vector<int64_t> axes;
  for (int64_t d = 2; d < x.rank(); ++d) axes.push_back(d);
  return ref::reduce(ReduceOp::kMean, x, axes, true);
}

Tensor argmax(const Tensor& x, int64_t axis, bool keepdims, bool select_last_index) {
  expect_numeric("ArgMax", x);
  const size_t ax = static_cast<size_t>(opsutil::norm_axis("ArgMax", axis, x.rank()));
  const Shape& s = x.shape();
  if (s[ax] == 0)
    fail("ArgMax",
         "cannot take the maximum over an empty axis " + num(axis) + " of " + describe("data", x));
  Shape out = s;
  if (keepdims)
    out[ax] = 1;
  else
    out.erase(out.begin() + static_cast<std::ptrdiff_t>(ax));
  Tensor y = Tensor::zeros(out, DType::kI64);
  // Compare in the input's own type (no conversion), NaN above every number.
  const int64_t outer = prod(s, 0, ax), len = s[ax], inner = prod(s, ax + 1, s.size());
  const Tensor xc = opsutil::contiguous(x);
  auto run = [&](const auto* px) {
    using T = std::remove_cv_t<std::remove_pointer_t<decltype(px)>>;
    auto is_nan = [](T v) {
      if constexpr (std::is_floating_point_v<T>) return std::isnan(v);
      return false;
    };
    int64_t* py = y.data_as<int64_t>();
    for (int64_t o = 0; o < outer; ++o)
      for (int64_t i = 0; i < inner; ++i) {
        const T* p = px + o * len * inner + i;
        int64_t best = 0;
        for (int64_t k = 1; k < len; ++k) {
          const T v = p[k * inner], b = p[best * inner];
          const bool greater = is_nan(v) ? !is_nan(b) : (!is_nan(b) && v > b);
          const bool equal = is_nan(v) ? is_nan(b) : v == b;
          if (greater || (select_last_index && equal)) best = k;
        }
        py[o * inner + i] = best;
      }
  };
  if (x.dtype() == DType::kF32)
    run(xc.data_as<float>());
  else if (x.dtype() == DType::kI32)
    run(xc.data_as<int32_t>());
  else
    run(xc.data_as<int64_t>());
  return y;
}

Tensor softmax(const Tensor& x, int64_t axis) { return softmax_axis(x, axis, false, false); }
Tensor log_softmax(const Tensor& x, int64_t axis) { return softmax_axis(x, axis, true, false); }
Tensor softmax_legacy(const Tensor& x, int64_t axis) { return softmax_axis(x, axis, false, true); }
Tensor log_softmax_legacy(const Tensor& x, int64_t axis) {
  return softmax_axis(x, axis, true, true);
}

Tensor batch_norm_inference(const Tensor& x, const Tensor& scale, const Tensor& bias,
                            const Tensor& mean, const Tensor& var, float epsilon) {
  const std::string_view name = "BatchNormalization";
  const opsutil::BatchNormPlan p =
      opsutil::batch_norm_plan(name, x, scale, bias, mean, var, epsilon);
  const Tensor xc = opsutil::contiguous(x);
  Tensor y = Tensor::zeros(x.shape(), DType::kF32);
  const float* px = xc.data_as<float>();
  float* py = y.data_as<float>();
  for (int64_t n = 0; n < p.batch; ++n)
    for (int64_t c = 0; c < p.channels; ++c) {
      const size_t ci = static_cast<size_t>(c);
      const int64_t base = (n * p.channels + c) * p.inner;
      for (int64_t k = 0; k < p.inner; ++k)
        py[base + k] = (px[base + k] - p.mean[ci]) * p.factor[ci] + p.bias[ci];
    }
  return y;
}

Tensor layer_norm(const Tensor& x, const Tensor& scale, const Tensor* bias, int64_t axis,
                  float epsilon) {
  const std::string_view name = "LayerNormalization";
  opsutil::expect_dtype(name, x, DType::kF32, "X");
  const size_t ax = static_cast<size_t>(opsutil::norm_axis(name, axis, x.rank()));
  const Shape norm_shape(x.shape().begin() + static_cast<std::ptrdiff_t>(ax), x.shape().end());
  const std::vector<float> s = broadcast_values(name, "Scale", scale, norm_shape);
  const std::vector<float> b =
      bias ? broadcast_values(name, "B", *bias, norm_shape) : std::vector<float>(s.size(), 0.0f);
  const Tensor xc = opsutil::contiguous(x);
  Tensor y = Tensor::zeros(x.shape(), DType::kF32);
  normalize_rows(xc.data_as<float>(), y.data_as<float>(), prod(x.shape(), 0, ax),
                 prod(x.shape(), ax, x.shape().size()), epsilon, s, b, 0, 1);
  return y;
}

Tensor instance_norm(const Tensor& x, const Tensor& scale, const Tensor& bias, float epsilon) {
  const std::string_view name = "InstanceNormalization";
  opsutil::expect_dtype(name, x, DType::kF32, "input");
  if (x.rank() < 3)
    fail(name, "input must be [N, C, D1, ...] (rank >= 3), got " + describe("input", x));
  const Shape c_shape = {x.dim(1)};
  for (const auto& [t, what] : {std::pair{&scale, "scale"}, std::pair{&bias, "B"}})
    if (t->shape() != c_shape)
      fail(name, std::string(what) + " must be [C] = " + shape_str(c_shape) + ", got " +
                     describe(what, *t));
  const std::vector<float> s = broadcast_values(name, "scale", scale, c_shape);
  const std::vector<float> b = broadcast_values(name, "B", bias, c_shape);
  const Tensor xc = opsutil::contiguous(x);
  Tensor y = Tensor::zeros(x.shape(), DType::kF32);
  normalize_rows(xc.data_as<float>(), y.data_as<float>(), x.dim(0) * x.dim(1),
                 prod(x.shape(), 2, x.shape().size()), epsilon, s, b, x.dim(1), 1);
  return y;
}

}  // namespace ref
}  // namespace dynaprec
