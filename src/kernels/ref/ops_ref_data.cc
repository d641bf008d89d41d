// Reference data movement (include/dynaprec/ops.h): Transpose, Reshape, Flatten, Squeeze,
// Unsqueeze, Concat, Slice, Gather, Pad, Expand, Where, Tile and the shape helpers.
//
// Most of these are a strided view of the input (Transpose permutes strides, Slice offsets and
// scales them, negative steps included, Expand sets them to 0) copied element by element into a
// new contiguous tensor; Pad and Tile map each output coordinate per axis to an input one. The
// copies move raw element bytes, so every dtype but packed int4 works the same way.
#include <algorithm>
#include <cstring>
#include <limits>
#include <optional>
#include <vector>

#include "kernels/ref/ops_ref_util.h"

namespace dynaprec {

using opsutil::describe;
using opsutil::fail;
using opsutil::list_str;
using opsutil::num;

namespace {

// y = the view v of x, element by element.
Tensor view_copy(const Tensor& x, const opsutil::StridedView& v) {
  Tensor y = Tensor::zeros(v.shape, x.dtype());
  const auto* px = static_cast<const uint8_t*>(x.data());
  auto* py = static_cast<uint8_t*>(y.data());
  const auto e = static_cast<int64_t>(v.esize);
  opsutil::for_each_offset<1>(v.shape, {&v.strides}, [&](int64_t i, const auto& off) {
    std::memcpy(py + i * e, px + (v.base + off[0]) * e, v.esize);
  });
  return y;
}

// y[o] = x[maps[0][o_0], ..., maps[r-1][o_r-1]], or `fill` (esize bytes) where a map gives -1.
Tensor map_copy(const Tensor& x, const Shape& out, const std::vector<std::vector<int64_t>>& maps,
                const uint8_t* fill, size_t esize) {
  Tensor y = Tensor::zeros(out, x.dtype());
  if (y.numel() == 0) return y;
  const auto* px = static_cast<const uint8_t*>(x.data());
  auto* py = static_cast<uint8_t*>(y.data());
  std::vector<int64_t> o(out.size(), 0);
  for (int64_t i = 0; i < y.numel(); ++i) {
    int64_t off = 0;
    bool constant = false;
    for (size_t d = 0; d < out.size(); ++d) {
      const int64_t s = maps[d][static_cast<size_t>(o[d])];
      constant = constant || s < 0;
      off += s * x.strides()[d];
    }
    std::memcpy(py + i * static_cast<int64_t>(esize),
                constant ? fill : px + off * static_cast<int64_t>(esize), esize);
    for (size_t d = out.size(); d-- > 0;) {
      if (++o[d] < out[d]) break;
      o[d] = 0;
    }
  }
  return y;
}

// A contiguous copy of x with another shape of the same element count.
Tensor with_shape(std::string_view op, const Tensor& x, const Shape& shape) {
  opsutil::elem_bytes(op, x);
  if (shape_numel(shape) != x.numel())
    fail(op, "cannot reshape " + describe("data", x) + " (" + num(x.numel()) + " elements) to " +
                 shape_str(shape) + " (" + num(shape_numel(shape)) + " elements)");
  const Tensor c = opsutil::contiguous(x);
  Tensor y = Tensor::zeros(shape, x.dtype());
  if (y.nbytes()) std::memcpy(y.data(), c.data(), y.nbytes());
  return y;
}

// Clamps like Slice's start/end with a positive step: negative counts from the back, then
// [0, dim].
int64_t clamp_index(int64_t v, int64_t dim) {
  if (v < 0) v += dim;
  return std::clamp<int64_t>(v, 0, dim);
}

}  // namespace

Tensor shape_of(const Tensor& x, int64_t start, std::optional<int64_t> end) {
  const int64_t r = x.rank();
  const int64_t b = clamp_index(start, r), e = clamp_index(end.value_or(r), r);
  Tensor y = Tensor::zeros({std::max<int64_t>(0, e - b)}, DType::kI64);
  for (int64_t i = b; i < e; ++i) y.data_as<int64_t>()[i - b] = x.dim(static_cast<int>(i));
  return y;
}

std::vector<int64_t> int_values(const Tensor& t) {
  if (t.dtype() != DType::kI64 && t.dtype() != DType::kI32)
    fail("int_values", "needs an int32 or int64 tensor, got " + describe("input", t));
  std::vector<int64_t> v;
  v.reserve(static_cast<size_t>(t.numel()));
  opsutil::for_each_offset<1>(t.shape(), {&t.strides()}, [&](int64_t, const auto& off) {
    v.push_back(t.dtype() == DType::kI64 ? t.data_as<int64_t>()[off[0]]
                                         : t.data_as<int32_t>()[off[0]]);
  });
  return v;
}

Tensor int64_tensor(const std::vector<int64_t>& values) {
  Tensor y = Tensor::zeros({static_cast<int64_t>(values.size())}, DType::kI64);
  if (!values.empty()) std::memcpy(y.data(), values.data(), values.size() * sizeof(int64_t));
  return y;
}

namespace opsutil {

StridedView transpose_view(const Tensor& x, const std::vector<int64_t>& perm_in) {
  const size_t esize = opsutil::elem_bytes("Transpose", x);
  const size_t r = static_cast<size_t>(x.rank());
  std::vector<int64_t> perm = perm_in;
  if (perm.empty())
    for (size_t i = 0; i < r; ++i) perm.push_back(static_cast<int64_t>(r - 1 - i));
  std::vector<bool> seen(r, false);
  bool ok = perm.size() == r;
  for (size_t i = 0; ok && i < r; ++i) {
    ok = perm[i] >= 0 && perm[i] < static_cast<int64_t>(r) && !seen[static_cast<size_t>(perm[i])];
    if (ok) seen[static_cast<size_t>(perm[i])] = true;
  }
  if (!ok)
    fail("Transpose", "perm " + list_str(perm_in) + " is not a permutation of the " +
                          num(static_cast<int64_t>(r)) + " axes of " + describe("data", x));
  Shape shape(r), strides(r);
  for (size_t i = 0; i < r; ++i) {
    shape[i] = x.shape()[static_cast<size_t>(perm[i])];
    strides[i] = x.strides()[static_cast<size_t>(perm[i])];
  }
  return {shape, strides, 0, esize};
}

}  // namespace opsutil

namespace ref {

Tensor transpose(const Tensor& x, const std::vector<int64_t>& perm) {
  return view_copy(x, opsutil::transpose_view(x, perm));
}

Tensor reshape(const Tensor& x, const std::vector<int64_t>& shape, bool allowzero) {
  Shape out(shape.size());
  int64_t infer = -1, known = 1;
  bool has_zero = false;
  for (size_t i = 0; i < shape.size(); ++i) {
    int64_t d = shape[i];
    if (d == 0 && !allowzero) {
      if (i >= static_cast<size_t>(x.rank()))
        fail("Reshape", "shape " + list_str(shape) + " copies dim " + num(static_cast<int64_t>(i)) +
                            " (0) that " + describe("data", x) + " does not have");
      d = x.dim(static_cast<int>(i));
    } else if (d == -1) {
      if (infer >= 0) fail("Reshape", "shape " + list_str(shape) + " has more than one -1");
      infer = static_cast<int64_t>(i);
      continue;
    } else if (d < -1) {
      fail("Reshape", "shape " + list_str(shape) + " has an invalid dim " + num(d));
    }
    has_zero = has_zero || d == 0;
    out[i] = d;
    known *= d;
  }
  if (infer >= 0) {
    if (allowzero && has_zero)
      fail("Reshape", "shape " + list_str(shape) + " has both -1 and 0 with allowzero");
    if (known == 0 || x.numel() % known != 0)
      fail("Reshape", "cannot infer the -1 of shape " + list_str(shape) + " for " +
                          describe("data", x) + " (" + num(x.numel()) + " elements)");
    out[static_cast<size_t>(infer)] = x.numel() / known;
  }
  return with_shape("Reshape", x, out);
}

Tensor flatten(const Tensor& x, int64_t axis) {
  const int64_t a = opsutil::norm_axis("Flatten", axis, x.rank(), true);
  int64_t outer = 1, inner = 1;
  for (int64_t d = 0; d < x.rank(); ++d) (d < a ? outer : inner) *= x.dim(static_cast<int>(d));
  return with_shape("Flatten", x, {outer, inner});
}

Tensor squeeze(const Tensor& x, const std::vector<int64_t>& axes) {
  const std::vector<int64_t> ax = opsutil::norm_axes("Squeeze", axes, x.rank());
  std::vector<bool> drop(static_cast<size_t>(x.rank()), false);
  for (int64_t a : ax) {
    if (x.dim(static_cast<int>(a)) != 1)
      fail("Squeeze", "axis " + num(a) + " of " + describe("data", x) + " has size " +
                          num(x.dim(static_cast<int>(a))) + ", not 1");
    drop[static_cast<size_t>(a)] = true;
  }
  Shape out;
  for (int d = 0; d < x.rank(); ++d)
    if (!(ax.empty() ? x.dim(d) == 1 : drop[static_cast<size_t>(d)])) out.push_back(x.dim(d));
  return with_shape("Squeeze", x, out);
}

Tensor unsqueeze(const Tensor& x, const std::vector<int64_t>& axes) {
  const int64_t r = x.rank() + static_cast<int64_t>(axes.size());
  const std::vector<int64_t> ax = opsutil::norm_axes("Unsqueeze", axes, r);
  std::vector<bool> insert(static_cast<size_t>(r), false);
  for (int64_t a : ax) insert[static_cast<size_t>(a)] = true;
  Shape out;
  int next = 0;
  for (int64_t d = 0; d < r; ++d) out.push_back(insert[static_cast<size_t>(d)] ? 1 : x.dim(next++));
  return with_shape("Unsqueeze", x, out);
}

Tensor concat(const std::vector<Tensor>& xs, int64_t axis) {
  if (xs.empty()) fail("Concat", "needs at least one input");
  const Tensor& x0 = xs[0];
  const size_t esize = opsutil::elem_bytes("Concat", x0, "inputs[0]");
  const size_t a = static_cast<size_t>(opsutil::norm_axis("Concat", axis, x0.rank()));
  Shape out = x0.shape();
  out[a] = 0;
  for (size_t i = 0; i < xs.size(); ++i) {
    const Tensor& x = xs[i];
    const std::string name = "inputs[" + std::to_string(i) + "]";
    bool ok = x.dtype() == x0.dtype() && x.rank() == x0.rank();
    for (size_t d = 0; ok && d < out.size(); ++d) ok = d == a || x.shape()[d] == x0.shape()[d];
    if (!ok)
      fail("Concat", describe(name, x) + " does not match " + describe("inputs[0]", x0) +
                         " (same dtype and rank, equal dims except axis " + num(axis) + ")");
    out[a] += x.shape()[a];
  }
  Tensor y = Tensor::zeros(out, x0.dtype());
  int64_t outer = 1, inner = static_cast<int64_t>(esize);
  for (size_t d = 0; d < a; ++d) outer *= out[d];
  for (size_t d = a + 1; d < out.size(); ++d) inner *= out[d];
  auto* py = static_cast<uint8_t*>(y.data());
  int64_t at = 0;  // byte offset of this input's block within an output row
  for (const Tensor& x : xs) {
    const Tensor c = opsutil::contiguous(x);
    const int64_t block = x.shape()[a] * inner;
    for (int64_t o = 0; o < outer && block > 0; ++o)
      std::memcpy(py + o * out[a] * inner + at, static_cast<const uint8_t*>(c.data()) + o * block,
                  static_cast<size_t>(block));
    at += block;
  }
  return y;
}

}  // namespace ref

namespace opsutil {

StridedView slice_view(const Tensor& x, const std::vector<int64_t>& starts,
                       const std::vector<int64_t>& ends, const std::vector<int64_t>& axes_in,
                       const std::vector<int64_t>& steps) {
  const size_t esize = opsutil::elem_bytes("Slice", x);
  const size_t n = starts.size();
  std::vector<int64_t> axes = axes_in;
  if (axes.empty())
    for (size_t i = 0; i < n; ++i) axes.push_back(static_cast<int64_t>(i));
  if (ends.size() != n || axes.size() != n || (!steps.empty() && steps.size() != n))
    fail("Slice", "starts " + list_str(starts) + ", ends " + list_str(ends) + ", axes " +
                      list_str(axes_in) + " and steps " + list_str(steps) +
                      " must have the same length");
  const std::vector<int64_t> ax = opsutil::norm_axes("Slice", axes, x.rank());
  Shape shape = x.shape(), strides = x.strides();
  int64_t base = 0;
  for (size_t i = 0; i < n; ++i) {
    const size_t d = static_cast<size_t>(ax[i]);
    const int64_t dim = shape[d], step = steps.empty() ? 1 : steps[i];
    if (step == 0) fail("Slice", "steps " + list_str(steps) + " must not contain 0");
    int64_t b = starts[i] < 0 ? starts[i] + dim : starts[i];
    int64_t e = ends[i] < 0 ? ends[i] + dim : ends[i];
    int64_t len;
    if (step > 0) {
      b = std::clamp<int64_t>(b, 0, dim);
      e = std::clamp<int64_t>(e, 0, dim);
      len = e > b ? 1 + (e - b - 1) / step : 0;
    } else {
      b = std::clamp<int64_t>(b, 0, dim - 1);
      e = std::clamp<int64_t>(e, -1, dim - 1);
      // |step| without overflow for INT64_MIN (any |step| >= dim takes at most one element).
      const int64_t mag = step == std::numeric_limits<int64_t>::min() ? dim + 1 : -step;
      len = b > e ? 1 + (b - e - 1) / mag : 0;
    }
    if (len > 0) base += b * strides[d];
    shape[d] = len;
    strides[d] = len > 1 ? strides[d] * step : 0;  // |step| < dim here: no overflow
  }
  return {shape, strides, base, esize};
}

StridedView expand_view(const Tensor& x, const std::vector<int64_t>& shape) {
  const size_t esize = opsutil::elem_bytes("Expand", x);
  for (int64_t d : shape)
    if (d < 0) fail("Expand", "shape " + list_str(shape) + " has a negative dim");
  const Shape out = broadcast_shapes(x.shape(), shape, "Expand");
  return {out, opsutil::broadcast_strides(x, out), 0, esize};
}

}  // namespace opsutil

namespace ref {

Tensor slice(const Tensor& x, const std::vector<int64_t>& starts, const std::vector<int64_t>& ends,
             const std::vector<int64_t>& axes, const std::vector<int64_t>& steps) {
  return view_copy(x, opsutil::slice_view(x, starts, ends, axes, steps));
}

Tensor gather(const Tensor& x, const Tensor& indices, int64_t axis) {
  const size_t esize = opsutil::elem_bytes("Gather", x);
  if (indices.dtype() != DType::kI64 && indices.dtype() != DType::kI32)
    fail("Gather", "indices must be int32 or int64, got " + describe("indices", indices));
  const size_t a = static_cast<size_t>(opsutil::norm_axis("Gather", axis, x.rank()));
  const int64_t dim = x.shape()[a];
  std::vector<int64_t> idx = int_values(indices);
  for (int64_t& i : idx) {
    if (i < -dim || i >= dim)
      fail("Gather", "index " + num(i) + " is out of range [" + num(-dim) + ", " + num(dim - 1) +
                         "] for axis " + num(axis) + " of " + describe("data", x));
    if (i < 0) i += dim;
  }
  Shape out(x.shape().begin(), x.shape().begin() + static_cast<std::ptrdiff_t>(a));
  out.insert(out.end(), indices.shape().begin(), indices.shape().end());
  out.insert(out.end(), x.shape().begin() + static_cast<std::ptrdiff_t>(a) + 1, x.shape().end());
  Tensor y = Tensor::zeros(out, x.dtype());
  int64_t outer = 1, inner = static_cast<int64_t>(esize);
  for (size_t d = 0; d < a; ++d) outer *= x.shape()[d];
  for (size_t d = a + 1; d < x.shape().size(); ++d) inner *= x.shape()[d];
  const Tensor c = opsutil::contiguous(x);
  const auto* px = static_cast<const uint8_t*>(c.data());
  auto* py = static_cast<uint8_t*>(y.data());
  const auto k = static_cast<int64_t>(idx.size());
  for (int64_t o = 0; o < outer && inner > 0; ++o)
    for (int64_t j = 0; j < k; ++j)
      std::memcpy(py + (o * k + j) * inner, px + (o * dim + idx[static_cast<size_t>(j)]) * inner,
                  static_cast<size_t>(inner));
  return y;
}

Tensor pad(const Tensor& x, const std::vector<int64_t>& pads, PadMode mode, double value) {
  const size_t esize = opsutil::elem_bytes("Pad", x, "data");
  const size_t r = static_cast<size_t>(x.rank());
  if (pads.size() != 2 * r)
    fail("Pad", "pads " + list_str(pads) + " must have 2 values per dim of " + describe("data", x));
  // Crop first (negative pads), then pad the cropped view.
  std::vector<int64_t> starts, ends;
  for (size_t d = 0; d < r; ++d) {
    const int64_t dim = x.shape()[d];
    const int64_t b = -std::min<int64_t>(pads[d], 0), e = dim + std::min<int64_t>(pads[r + d], 0);
    if (e < b)
      fail("Pad", "pads " + list_str(pads) + " crop more than the " + num(dim) + " values of dim " +
                      num(static_cast<int64_t>(d)) + " of " + describe("data", x));
    starts.push_back(b);
    ends.push_back(e);
  }
  const Tensor v = pads.empty() ? x : ref::slice(x, starts, ends);
  Shape out(r);
  std::vector<std::vector<int64_t>> maps(r);
  for (size_t d = 0; d < r; ++d) {
    const int64_t n = v.shape()[d];
    const int64_t pb = std::max<int64_t>(pads[d], 0), pe = std::max<int64_t>(pads[r + d], 0);
    const bool padded = pb > 0 || pe > 0;
    if (mode != PadMode::kConstant && padded && n == 0)
      fail("Pad", "cannot pad the empty dim " + num(static_cast<int64_t>(d)) + " of " +
                      describe("data", x) + " in reflect, edge or wrap mode");
    const int64_t period = 2 * (n - 1);  // reflect: mirrored at both ends, numpy-style
    out[d] = n + pb + pe;
    for (int64_t o = 0; o < out[d]; ++o) {
      const int64_t i = o - pb;
      int64_t s = i;
      if (i < 0 || i >= n) {
        switch (mode) {
          case PadMode::kConstant:
            s = -1;
            break;
          case PadMode::kReflect:  // pads beyond the dim keep mirroring, as np.pad does
            s = period == 0 ? 0 : ((i % period) + period) % period;
            s = s < n ? s : period - s;
            break;
          case PadMode::kEdge:
            s = std::clamp<int64_t>(i, 0, n - 1);
            break;
          case PadMode::kWrap:
            s = ((i % n) + n) % n;
            break;
        }
      }
      maps[d].push_back(s);
    }
  }
  // The fill value in data's dtype, with Cast's conversion rules; zero is all-zero bytes in every
  // dtype, including those Cast does not take (fp8).
  Tensor fill = Tensor::zeros({}, DType::kF64);
  *fill.data_as<double>() = value;
  if (value == 0.0)
    fill = Tensor::zeros({}, x.dtype());
  else if (x.dtype() != DType::kF64)
    fill = ref::cast(fill, x.dtype());
  return map_copy(v, out, maps, static_cast<const uint8_t*>(fill.data()), esize);
}

Tensor expand(const Tensor& x, const std::vector<int64_t>& shape) {
  return view_copy(x, opsutil::expand_view(x, shape));
}

Tensor where(const Tensor& cond, const Tensor& a, const Tensor& b) {
  opsutil::expect_dtype("Where", cond, DType::kBool, "condition");
  const size_t esize = opsutil::elem_bytes("Where", a, "X");
  if (a.dtype() != b.dtype())
    fail("Where",
         "X and Y must have the same dtype, got " + describe("X", a) + " and " + describe("Y", b));
  const Shape out =
      broadcast_shapes(broadcast_shapes(cond.shape(), a.shape(), "Where"), b.shape(), "Where");
  Tensor y = Tensor::zeros(out, a.dtype());
  const Shape sc = opsutil::broadcast_strides(cond, out), sa = opsutil::broadcast_strides(a, out),
              sb = opsutil::broadcast_strides(b, out);
  const auto* pc = static_cast<const uint8_t*>(cond.data());
  const auto* pa = static_cast<const uint8_t*>(a.data());
  const auto* pb = static_cast<const uint8_t*>(b.data());
  auto* py = static_cast<uint8_t*>(y.data());
  const auto e = static_cast<int64_t>(esize);
  opsutil::for_each_offset<3>(out, {&sc, &sa, &sb}, [&](int64_t i, const auto& off) {
    std::memcpy(py + i * e, pc[off[0]] ? pa + off[1] * e : pb + off[2] * e, esize);
  });
  return y;
}

Tensor tile(const Tensor& x, const std::vector<int64_t>& repeats) {
  const size_t esize = opsutil::elem_bytes("Tile", x);
  const size_t r = static_cast<size_t>(x.rank());
  if (repeats.size() != r)
    fail("Tile", "repeats " + list_str(repeats) + " must have one value per dim of " +
                     describe("input", x));
  Shape out(r);
  std::vector<std::vector<int64_t>> maps(r);
  for (size_t d = 0; d < r; ++d) {
    if (repeats[d] < 0) fail("Tile", "repeats " + list_str(repeats) + " must be >= 0");
    const int64_t n = x.shape()[d];
    if (n > 0 && repeats[d] > std::numeric_limits<int64_t>::max() / n)
      fail("Tile",
           "repeats " + list_str(repeats) + " overflow the dims of " + describe("input", x));
    out[d] = n * repeats[d];
    for (int64_t o = 0; o < out[d]; ++o) maps[d].push_back(o % n);
  }
  return map_copy(x, out, maps, nullptr, esize);
}

}  // namespace ref
}  // namespace dynaprec
