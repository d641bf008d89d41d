// Reference pooling and Resize (include/dynaprec/ops.h): every output point walks its window (or
// its interpolation corners) tap by tap. Slow on purpose; no fast version exists yet.
//
// Pooling follows onnxruntime where the ONNX text is silent: windows start at o·stride - pad,
// pads must be smaller than the kernel, and ceil_mode drops a last window that would start in the
// end padding. (The ONNX Python reference instead re-centres ceil_mode's extra padding, which
// shifts the windows; onnxruntime and PyTorch do not, and neither do we.)
#include <algorithm>
#include <cmath>
#include <limits>
#include <string>
#include <vector>

#include "kernels/ref/ops_ref_util.h"

namespace dynaprec {

using opsutil::describe;
using opsutil::fail;
using opsutil::list_str;
using opsutil::num;

namespace opsutil {

PoolGeom pool_geometry(const Shape& x, const PoolParams& p, std::string_view op) {
  if (x.size() < 3)
    fail(op, "X must be [N, C, D1, ...] with at least one spatial dim, got " + shape_str(x));
  PoolGeom g;
  g.k = x.size() - 2;
  g.in.assign(x.begin() + 2, x.end());
  auto per_dim = [&](const std::vector<int64_t>& v, const char* what, int64_t dflt) {
    if (v.empty()) return Shape(g.k, dflt);
    if (v.size() != g.k)
      fail(op, std::string(what) + " " + list_str(v) + " must have one value per spatial dim (" +
                   num(static_cast<int64_t>(g.k)) + ")");
    for (int64_t s : v)
      if (s < 1) fail(op, std::string(what) + " " + list_str(v) + " must all be >= 1");
    return Shape(v);
  };
  if (p.kernel.empty()) fail(op, "kernel_shape is required");
  g.kernel = per_dim(p.kernel, "kernel_shape", 1);
  g.strides = per_dim(p.strides, "strides", 1);
  g.dilations = per_dim(p.dilations, "dilations", 1);
  g.pad_begin.assign(g.k, 0);
  g.pad_end.assign(g.k, 0);
  if (p.auto_pad != AutoPad::kNotSet) {
    if (!p.pads.empty()) fail(op, "pads " + list_str(p.pads) + " given together with auto_pad");
    if (p.ceil_mode) fail(op, "ceil_mode is not supported with auto_pad");
  } else if (!p.pads.empty()) {
    if (p.pads.size() != 2 * g.k)
      fail(op, "pads " + list_str(p.pads) + " must have 2 values per spatial dim (" +
                   num(static_cast<int64_t>(2 * g.k)) + ")");
    for (size_t i = 0; i < g.k; ++i) {
      g.pad_begin[i] = p.pads[i];
      g.pad_end[i] = p.pads[g.k + i];
      if (g.pad_begin[i] < 0 || g.pad_end[i] < 0 || g.pad_begin[i] >= g.kernel[i] ||
          g.pad_end[i] >= g.kernel[i])
        fail(op, "pads " + list_str(p.pads) + " must be >= 0 and smaller than kernel_shape " +
                     list_str(g.kernel));
    }
  }
  g.out.resize(g.k);
  for (size_t i = 0; i < g.k; ++i) {
    const int64_t in = g.in[i], s = g.strides[i];
    const int64_t ext = (g.kernel[i] - 1) * g.dilations[i] + 1;
    if (p.auto_pad == AutoPad::kSameUpper || p.auto_pad == AutoPad::kSameLower) {
      g.out[i] = (in + s - 1) / s;
      const int64_t total = std::max<int64_t>(0, (g.out[i] - 1) * s + ext - in);
      const int64_t small = total / 2;
      g.pad_begin[i] = p.auto_pad == AutoPad::kSameUpper ? small : total - small;
      g.pad_end[i] = total - g.pad_begin[i];
      continue;
    }
    const int64_t span = in + g.pad_begin[i] + g.pad_end[i] - ext;
    if (span < 0)
      fail(op, "kernel extent " + num(ext) + " (kernel_shape " + list_str(g.kernel) +
                   ", dilations " + list_str(g.dilations) + ") exceeds the padded input " +
                   num(in + g.pad_begin[i] + g.pad_end[i]) + " in spatial dim " +
                   num(static_cast<int64_t>(i)));
    g.out[i] = (p.ceil_mode ? (span + s - 1) / s : span / s) + 1;
    // A last window that would start in the end padding is dropped (ONNX, PyTorch).
    if (p.ceil_mode && (g.out[i] - 1) * s >= in + g.pad_begin[i]) --g.out[i];
  }
  return g;
}

}  // namespace opsutil

namespace {

using opsutil::pool_geometry;
using opsutil::PoolGeom;

// Steps idx through `shape` in C order; false after the last index.
bool next_index(std::vector<int64_t>& idx, const Shape& shape) {
  for (size_t d = idx.size(); d-- > 0;) {
    if (++idx[d] < shape[d]) return true;
    idx[d] = 0;
  }
  return false;
}

Tensor pool(const Tensor& x, const PoolParams& p, bool is_max) {
  const std::string_view op = is_max ? "MaxPool" : "AveragePool";
  opsutil::expect_dtype(op, x, DType::kF32, "X");
  const PoolGeom g = pool_geometry(x.shape(), p, op);
  Shape out_shape = {x.dim(0), x.dim(1)};
  out_shape.insert(out_shape.end(), g.out.begin(), g.out.end());
  Tensor y = Tensor::zeros(out_shape, DType::kF32);
  if (y.numel() == 0 || x.numel() == 0) return y;
  const Tensor xc = opsutil::contiguous(x);
  const Shape in_strides = contiguous_strides(g.in);
  const int64_t in_size = shape_numel(g.in), out_size = shape_numel(g.out);
  for (int64_t nc = 0; nc < x.dim(0) * x.dim(1); ++nc) {
    const float* plane = xc.data_as<float>() + nc * in_size;
    float* out = y.data_as<float>() + nc * out_size;
    std::vector<int64_t> o(g.k, 0);
    for (int64_t at = 0; at < out_size; ++at, next_index(o, g.out)) {
      double sum = 0;
      int64_t inside = 0, padded = 0;
      bool have = false;
      float m = 0;
      std::vector<int64_t> t(g.k, 0);
      do {
        bool in_x = true, in_pads = true;
        int64_t off = 0;
        for (size_t d = 0; d < g.k; ++d) {
          const int64_t pos = o[d] * g.strides[d] - g.pad_begin[d] + t[d] * g.dilations[d];
          in_x = in_x && pos >= 0 && pos < g.in[d];
          in_pads = in_pads && pos >= -g.pad_begin[d] && pos < g.in[d] + g.pad_end[d];
          off += pos * in_strides[d];
        }
        padded += in_pads;
        if (!in_x) continue;
        ++inside;
        const float v = plane[off];
        sum += v;
        if (!std::isnan(v) && (!have || v > m)) m = v, have = true;
      } while (next_index(t, g.kernel));
      if (is_max)
        out[at] = have ? m : NAN;
      else
        out[at] =
            static_cast<float>(sum / static_cast<double>(p.count_include_pad ? padded : inside));
    }
  }
  return y;
}

// ---- Resize ---------------------------------------------------------------------------------

}  // namespace

Shape pool_output_shape(const Shape& x, const PoolParams& p, std::string_view op) {
  const PoolGeom g = pool_geometry(x, p, op);
  Shape out = {x[0], x[1]};
  out.insert(out.end(), g.out.begin(), g.out.end());
  return out;
}

namespace ref {

Tensor max_pool(const Tensor& x, const PoolParams& p) { return pool(x, p, true); }
Tensor average_pool(const Tensor& x, const PoolParams& p) { return pool(x, p, false); }

Tensor resize(const Tensor& x, const ResizeParams& p) {
  const std::string_view op = "Resize";
  opsutil::expect_dtype(op, x, DType::kF32, "X");
  const size_t r = static_cast<size_t>(x.rank());
  // Each output sums 2^rank interpolation corners (weight-0 ones skipped).
  if (r > 8) fail(op, "supports rank <= 8, got " + describe("X", x));
  if (p.scales.empty() == p.sizes.empty())
    fail(op, "exactly one of scales and sizes must be given (got " +
                 std::string(p.scales.empty() ? "neither" : "both") + ")");
  const size_t given = p.scales.empty() ? p.sizes.size() : p.scales.size();
  if (given != r)
    fail(op, std::string(p.scales.empty() ? "sizes" : "scales") + " must have one value per dim (" +
                 num(static_cast<int64_t>(r)) + ") of " + describe("X", x) + ", got " +
                 num(static_cast<int64_t>(given)));
  Shape out(r);
  std::vector<double> scale(r), out_width(r);
  for (size_t d = 0; d < r; ++d) {
    const int64_t in = x.dim(static_cast<int>(d));
    if (!p.scales.empty()) {
      const float s = p.scales[d];
      if (!(s > 0.0f) || !std::isfinite(s))
        fail(op, "scales must be positive and finite, got " + std::to_string(s) + " for dim " +
                     num(static_cast<int64_t>(d)));
      // floor(in · scale) in float32, as ONNX shape inference and onnxruntime compute it.
      out[d] = static_cast<int64_t>(std::floor(static_cast<float>(in) * s));
      scale[d] = s;
      out_width[d] = static_cast<double>(in) * static_cast<double>(s);
    } else {
      out[d] = p.sizes[d];
      if (out[d] < 0) fail(op, "sizes " + list_str(p.sizes) + " must be >= 0");
      scale[d] = in ? static_cast<double>(out[d]) / static_cast<double>(in) : 0.0;
      out_width[d] = static_cast<double>(out[d]);
    }
    if (in == 0 && out[d] > 0)
      fail(op, "cannot resize the empty dim " + num(static_cast<int64_t>(d)) + " of " +
                   describe("X", x) + " to " + num(out[d]));
  }
  Tensor y = Tensor::zeros(out, DType::kF32);
  if (y.numel() == 0) return y;
  // Per axis and output index: the two source indices and the weight of the second.
  std::vector<std::vector<int64_t>> i0(r), i1(r);
  std::vector<std::vector<double>> w1(r);
  for (size_t d = 0; d < r; ++d) {
    const int64_t in = x.dim(static_cast<int>(d));
    for (int64_t o = 0; o < out[d]; ++o) {
      const double c = opsutil::resize_source_coord(p.coord, o, scale[d], in, out[d], out_width[d]);
      if (p.mode == ResizeMode::kNearest) {
        i0[d].push_back(opsutil::resize_nearest_index(p.nearest, c, in));
        i1[d].push_back(i0[d].back());
        w1[d].push_back(0.0);
      } else {  // linear: clamped to the input, i.e. edge values outside it
        const double cc = std::clamp(c, 0.0, static_cast<double>(in - 1));
        const int64_t lo = static_cast<int64_t>(std::floor(cc));
        i0[d].push_back(lo);
        i1[d].push_back(std::min(lo + 1, in - 1));
        w1[d].push_back(cc - static_cast<double>(lo));
      }
    }
  }
  std::vector<int64_t> o(r, 0);
  float* py = y.data_as<float>();
  const float* px = x.data_as<float>();
  for (int64_t at = 0; at < y.numel(); ++at, next_index(o, out)) {
    double acc = 0;
    for (uint32_t corner = 0; corner < (1u << r); ++corner) {
      double w = 1.0;
      int64_t off = 0;
      for (size_t d = 0; d < r && w != 0.0; ++d) {
        const size_t od = static_cast<size_t>(o[d]);
        const bool hi = (corner >> d) & 1u;
        w *= hi ? w1[d][od] : 1.0 - w1[d][od];
        off += (hi ? i1[d][od] : i0[d][od]) * x.strides()[d];
      }
      if (w != 0.0) acc += w * static_cast<double>(px[off]);
    }
    py[at] = static_cast<float>(acc);
  }
  return y;
}

}  // namespace ref
}  // namespace dynaprec
