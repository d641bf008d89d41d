// The CPU ConvTranspose: per image and group, the column matrix
//   col[H·W, OC/groups·KH·KW] = X_gᵀ[H·W, C/groups] · W_gᵀ
// then col2im: each column row (one input pixel) scatter-added into the output planes, in
// increasing pixel order as the reference adds its contributions; then bias and activation.
//
// Floats: X_gᵀ (a transpose of the NCHW planes) times the group's rows with dynaprec::matmul,
// which rounds X itself (element-wise, so per call or per tensor is the same). int8/int4 cannot
// call matmul: its activation scale would be the block's, while conv_transpose.h fixes one over
// all of X. So X is quantized once, transposed as codes, and each pixel runs matmul's GEMV row
// kernels (VNNI or Highway), as conv_cpu.cc's im2col path does: int8 bit-identical to the
// reference, int4 up to the kernels' fp32 order of the group sums.
//
// Non-overlapping taps (kernel <= stride, dilation 1: the 2x2 stride-2 upsampling of DB heads)
// skip all of that. kernel == stride (every output reached by exactly one tap):
// conv_transpose_direct, each input row's output rows computed in registers (convt_hwy.h; the
// 2x2 stride-2 case at input resolution, its two column taps interleaved on the way out).
// Otherwise conv_transpose_plain (a GEMM on the NCHW planes, then strided stores).
//
// Threads: with at least as many groups as threads (depthwise-like layers), one task per group
// (images in order inside it), everything inside single-threaded; a task's matmul calls use its
// group's own MatmulWeights, so no two tasks prepare the same weights. Otherwise the (image,
// group) planes run in order, each with all threads: matmul's own threads (floats), pixel blocks
// of GEMV rows (ints), and the col2im scatter split by output channel.
#include <omp.h>

#include <algorithm>
#include <atomic>
#include <bit>
#include <cmath>
#include <cstdint>
#include <mutex>
#include <string>
#include <vector>

#include "dynaprec/conv_transpose.h"
#include "dynaprec/convert.h"
#include "dynaprec/cpu_features.h"
#include "dynaprec/error.h"
#include "dynaprec/thread_pool.h"
#include "kernels/cpu/convt_hwy.h"
#include "kernels/cpu/dnnl_common.h"
#include "kernels/cpu/gemv_hwy.h"
#include "kernels/cpu/matmul_dnnl.h"
#include "kernels/cpu/matmul_kernels.h"
#include "kernels/cpu/vnni_common.h"

namespace dynaprec {
namespace {

bool is_int(Format f) { return f == Format::kInt8 || f == Format::kInt4; }

template <class Fn>
void run_tasks(size_t tasks, int threads, Fn&& fn) {
  if (threads <= 1 || tasks <= 1) {
    for (size_t i = 0; i < tasks; ++i) fn(i);
    return;
  }
  ThreadPool::default_pool().parallel_for(tasks, fn);
}

struct State {
  std::mutex mu;
  Tensor storage;  // keeps the codes the slices point into alive
  std::vector<MatmulWeights> slices;
  cpu::PlainGemmCache gemm;  // the non-overlapping fast path's oneDNN matmuls
  std::vector<float> wpat;   // conv_transpose_direct's weight lane patterns (for wpat_lanes)
  int64_t wpat_lanes = 0;
  std::vector<float> w2;  // the 2x2 stride-2 kernel's weights, [oc][cg][kh·2 + kw]
};

State& state(const ConvTransposeWeights& w) {
  if (!w.prepared) w.prepared = std::make_shared<State>();  // first use: see the header
  return *static_cast<State*>(w.prepared.get());
}

// The group slices (made once; groups == 1 uses the matrix itself, keeping its prepared form).
const std::vector<MatmulWeights>& group_slices(const ConvTransposeWeights& w) {
  State& st = state(w);
  std::lock_guard lock(st.mu);
  if (st.slices.empty() && w.groups > 1) {
    st.storage = w.matrix.data;
    const int64_t rows = w.oc_per_group * w.kh * w.kw;
    for (int64_t g = 0; g < w.groups; ++g)
      st.slices.push_back(cpu::slice_rows(w.matrix, g * rows, rows));
  }
  return st.slices;
}

struct Geom {
  int64_t n, c, h, w, cg, ocg, oc, oh, ow, kh, kw, rows;  // rows = ocg·kh·kw
  int64_t sh, sw, dh, dw, pt, pl;
};

// Adds column rows [r0, r1) (pixels, row-major over (ih, iw)) of one plane's col matrix to the
// output planes of channels [oc0, oc1) of the group (local indices), pixel by pixel in order.
void col2im(const Geom& g, const float* col, int64_t r0, int64_t r1, int64_t oc0, int64_t oc1,
            float* yg) {
  const int64_t taps = g.kh * g.kw;
  for (int64_t ocl = oc0; ocl < oc1; ++ocl) {
    float* yp = yg + ocl * g.oh * g.ow;
    for (int64_t r = r0; r < r1; ++r) {
      const int64_t ih = r / g.w, iw = r % g.w;
      const float* cr = col + (r - r0) * g.rows + ocl * taps;
      for (int64_t kh = 0; kh < g.kh; ++kh) {
        const int64_t oh = ih * g.sh - g.pt + kh * g.dh;
        if (oh < 0 || oh >= g.oh) continue;
        float* yr = yp + oh * g.ow;
        const int64_t ow0 = iw * g.sw - g.pl;
        for (int64_t kw = 0; kw < g.kw; ++kw) {
          const int64_t ow = ow0 + kw * g.dw;
          if (ow >= 0 && ow < g.ow) yr[ow] += cr[kh * g.kw + kw];
        }
      }
    }
  }
}

// One (image, group) plane: y's OC/groups output planes get every contribution (no bias yet).
// xt: the plane's X_gᵀ [H·W, Cg] (floats, or int8 codes in xq_t).
void run_plane(const Geom& g, const ConvTransposeWeights& w, const MatmulWeights& mw, int64_t grp,
               const float* xt, const int8_t* xq_t, float sx, float* yg, int threads) {
  const int64_t pixels = g.h * g.w;
  const Format f = w.matrix.format;
  // Pixel blocks of about 4 MiB of columns (at least 64 pixels, for the GEMM's sake).
  const int64_t block =
      std::clamp<int64_t>((int64_t{1} << 20) / std::max<int64_t>(1, g.rows), 64, pixels);
  thread_local std::vector<float> col_buf;
  if (col_buf.size() < static_cast<size_t>(block * g.rows))
    col_buf.resize(static_cast<size_t>(block * g.rows));
  float* col = col_buf.data();
  const CpuFeatures& cf = cpu_features();
  const bool vnni = cf.avx512_vnni && cf.avx512bw && cf.f16c;  // as matmul_dispatch.cc
  const QuantParams& qp = w.matrix.data.quant();
  const auto k = static_cast<size_t>(g.cg), rows = static_cast<size_t>(g.rows);
  const size_t row0 = static_cast<size_t>(grp) * rows;  // the group's first matrix row
  const size_t row_bytes = (k + 1) / 2, sgroups = (k + 31) / 32;
  for (int64_t r0 = 0; r0 < pixels; r0 += block) {
    const int64_t r1 = std::min(pixels, r0 + block);
    if (!is_int(f)) {
      matmul(xt + r0 * g.cg, r1 - r0, mw, nullptr, col, threads);
    } else {
      constexpr int64_t kSub = 16;  // pixels per task
      const int64_t subs = (r1 - r0 + kSub - 1) / kSub;
      run_tasks(static_cast<size_t>(subs), threads, [&](size_t t) {
        thread_local std::vector<int32_t> acc;
        acc.resize(rows);
        const int64_t a = r0 + static_cast<int64_t>(t) * kSub, b = std::min(r1, a + kSub);
        for (int64_t r = a; r < b; ++r) {
          const int8_t* xr = xq_t + r * g.cg;
          float* out = col + (r - r0) * g.rows;
          if (f == Format::kInt8) {
            const int8_t* wg = w.matrix.data.data_as<int8_t>() + row0 * k;
            if (vnni)
              cpu::gemv_int8_rows_vnni(xr, wg, k, 0, rows, acc.data());
            else
              cpu::gemv_int8_rows(xr, wg, k, 0, rows, acc.data());
            for (size_t j = 0; j < rows; ++j)
              out[j] = static_cast<float>(acc[j]) * (sx * qp.scales[row0 + j]);
          } else {
            const uint8_t* wg = w.matrix.data.data_as<uint8_t>() + row0 * row_bytes;
            const uint16_t* sg = qp.scales_f16.data() + row0 * sgroups;
            if (vnni)
              cpu::gemv_int4_rows_vnni(cpu::gemv_int4_prepare_vnni(xr, k), xr, wg, sg, k, 0, rows,
                                       out);
            else
              cpu::gemv_int4_rows(xr, wg, sg, k, 0, rows, out);
            for (size_t j = 0; j < rows; ++j) out[j] *= sx;
          }
        }
      });
    }
    // Scatter, split by output channel (each task owns whole output planes).
    const int64_t chunks = std::min<int64_t>(g.ocg, threads > 1 ? threads * 4 : 1);
    run_tasks(static_cast<size_t>(chunks), threads, [&](size_t t) {
      const int64_t oc0 = g.ocg * static_cast<int64_t>(t) / chunks;
      const int64_t oc1 = g.ocg * (static_cast<int64_t>(t) + 1) / chunks;
      col2im(g, col, r0, r1, oc0, oc1, yg);
    });
  }
}

// kernel == stride (dilation 1, and pads that crop only: every output reached by exactly one
// tap): per input row, its output rows straight from NCHW to NCHW (convt_hwy.h), no column
// matrix and no scatter. The input row, rounded to the format's activations (int8: its codes),
// is upsampled to the output columns in registers; each output is a dot product over the input
// channels with its tap's weights, which the kernel takes as lane patterns (made once per layer
// for the dispatched target's width). Measured on the detector's 2x2 stride-2 layers (docs).
bool direct_applies(const Geom& g, const ConvTransposeWeights& w) {
  if (w.matrix.format == Format::kInt4 || g.dh != 1 || g.dw != 1 || g.kh != g.sh || g.kw != g.sw ||
      g.sw > 4 || g.pt < 0 || g.pl < 0 || g.h * g.sh - g.pt < g.oh || g.w * g.sw - g.pl < g.ow ||
      g.cg > 1040)
    return false;
  // The patterns: every matrix row's cg weights, sw phases of `lanes` each (bounded: 4 MiB).
  return w.groups * g.rows * g.cg * g.sw * cpu::convt_lanes() <= (int64_t{1} << 20);
}

// The scale of each matrix row's products: int8 sx · the row's scale (the reference's float
// product); fp8 the tensor scale; else 1.
float row_scale(const ConvTransposeWeights& w, int64_t row, float sx) {
  const Format f = w.matrix.format;
  const QuantParams& qp = w.matrix.data.quant();
  return f == Format::kInt8                               ? sx * qp.scales[static_cast<size_t>(row)]
         : f == Format::kFp8E4M3 || f == Format::kFp8E5M2 ? qp.scales.at(0)
                                                          : 1.0f;
}

// The format X's rows are rounded to (fp8 weights run against bf16 activations).
Format act_format(Format f) {
  return f == Format::kFp8E4M3 || f == Format::kFp8E5M2 ? Format::kBf16 : f;
}

// Rows of `len` values `ss` apart as the activations of format f use them (int8: codes with sx)
// into dst, `ds` apart.
void round_rows(Format f, float sx, const float* src, size_t ss, float* dst, size_t ds,
                size_t nrows, size_t len) {
  if (f == Format::kInt8)
    int8_round_rows(src, ss, dst, ds, nrows, len, sx);
  else
    round_float_rows(act_format(f), src, ss, dst, ds, nrows, len);
}

// Row length of the rounded input rows: the row and the kernels' slack (4 lanes past it).
int64_t row_stride(const Geom& g) { return (g.w + 5 * cpu::convt_lanes() + 15) / 16 * 16; }

// 2x2 stride 2 with no left pad (the DB heads' upsampling): convt_rows_k2, at input resolution,
// on targets of 4 lanes or more.
bool k2_applies(const Geom& g, const ConvTransposeWeights& w) {
  const int64_t lanes = cpu::convt_lanes();
  return direct_applies(g, w) && g.kh == 2 && g.kw == 2 && g.sh == 2 && g.sw == 2 && g.pl == 0 &&
         lanes >= 4 && lanes % 4 == 0;
}

// A layer as convt_rows_k2 runs it: its weights [oc][cg][kh·2 + kw] (made once per weights) and
// each matrix row's scale for this call's sx.
struct K2Layer {
  const Geom* g = nullptr;
  const ConvTransposeWeights* w = nullptr;
  const float* w2 = nullptr;
  std::vector<float> s2;
  float sx = 1.0f;
  const float* bias = nullptr;
  const ConvTransposeParams* p = nullptr;
};

K2Layer k2_layer(const Geom& g, const ConvTransposeWeights& w, float sx, const float* bias,
                 const ConvTransposeParams& p) {
  K2Layer k{&g, &w, nullptr, {}, sx, bias, &p};
  const int64_t total_rows = w.groups * g.rows;
  State& st = state(w);
  {
    std::lock_guard lock(st.mu);
    if (st.w2.empty()) {
      const auto count = static_cast<size_t>(total_rows * g.cg);
      std::vector<float> wf(count);
      cpu::codes_as_floats(w.matrix, wf.data());
      st.w2.resize(count);
      // Matrix row oc·4 + kh·2 + kw (oc over all groups) holds that tap's cg weights.
      for (int64_t oc = 0; oc < total_rows / 4; ++oc)
        for (int64_t ci = 0; ci < g.cg; ++ci)
          for (int64_t t = 0; t < 4; ++t)
            st.w2[static_cast<size_t>((oc * g.cg + ci) * 4 + t)] =
                wf[static_cast<size_t>((oc * 4 + t) * g.cg + ci)];
    }
    k.w2 = st.w2.data();
  }
  k.s2.resize(static_cast<size_t>(total_rows));
  for (int64_t row = 0; row < total_rows; ++row)
    k.s2[static_cast<size_t>(row)] = row_scale(w, row, sx);
  return k;
}

// Input row `rows` (group grp's cg rounded channel rows, `stride` apart) into the output rows
// oh0, oh0 + 1 of the group's planes at yg (rows of ow, planes `plane` apart; rows outside
// [0, oh_n) skipped), activation included.
void k2_run(const K2Layer& k, int64_t grp, const float* rows, int64_t stride, float* yg,
            int64_t oh0, int64_t oh_n, int64_t ow, int64_t plane, uint32_t* amax_bits = nullptr) {
  const Geom& g = *k.g;
  cpu::ConvtRows2 r;
  r.x = rows;
  r.x_stride = stride;
  r.cg = g.cg;
  r.w = g.w;
  r.w2 = k.w2 + grp * g.ocg * g.cg * 4;
  r.s2 = k.s2.data() + grp * g.ocg * 4;
  r.bias = k.bias ? k.bias + grp * g.ocg : nullptr;
  r.ocg = g.ocg;
  r.oh0 = oh0;
  r.oh_n = oh_n;
  r.ow = ow;
  r.y = yg;
  r.plane = plane;
  r.act = k.p->activation;
  r.clip_min = k.p->clip_min;
  r.clip_max = k.p->clip_max;
  r.amax_bits = amax_bits;
  if (!cpu::convt_rows_k2(r))
    throw Error(ErrorKind::kInternal, "ConvTranspose: 2x2 kernel declined after the check");
}

// A thread's buffer of n floats, zeroed when it is (re)made for another size: the rows' slack
// past their values stays 0 (only lanes that are never stored read it).
float* thread_buffer(std::vector<float>& buf, int64_t n) {
  if (buf.size() != static_cast<size_t>(n)) buf.assign(static_cast<size_t>(n), 0.0f);
  return buf.data();
}

// y_amax, where non-null: set to max |Y| on the 2x2 path (left as it is otherwise).
bool conv_transpose_direct(const Geom& g, const ConvTransposeWeights& w,
                           const ConvTransposeParams& p, const float* xs, float sx,
                           const float* bias, float* yd, int threads, float* y_amax = nullptr) {
  if (!direct_applies(g, w)) return false;
  const Format f = w.matrix.format;
  const int64_t pixels = g.h * g.w, out_plane = g.oh * g.ow, stride = row_stride(g);
  const auto ss = static_cast<size_t>(pixels), ds = static_cast<size_t>(stride);
  const auto nrows = static_cast<size_t>(g.cg), len = static_cast<size_t>(g.w);
  // Task t: image n, group grp, input row ih, and the group's cg channel rows of that input row
  // (pixels apart in X) as the format rounds them, in this thread's buffer.
  struct TaskRows {
    int64_t n, grp, ih;
    float* rows;
  };
  auto task_rows = [&](size_t t) {
    const auto task = static_cast<int64_t>(t);
    TaskRows r{task / (g.h * w.groups), task / g.h % w.groups, task % g.h, nullptr};
    thread_local std::vector<float> rows_buf;
    r.rows = thread_buffer(rows_buf, g.cg * stride);
    round_rows(f, sx, xs + (r.n * g.c + r.grp * g.cg) * pixels + r.ih * g.w, ss, r.rows, ds, nrows,
               len);
    return r;
  };
  if (k2_applies(g, w)) {
    const K2Layer k = k2_layer(g, w, sx, bias, p);
    std::atomic<uint32_t> amax_bits{0};
    run_tasks(static_cast<size_t>(g.n * w.groups * g.h), threads, [&](size_t t) {
      const auto [n, grp, ih, rows] = task_rows(t);
      uint32_t bits = 0;
      k2_run(k, grp, rows, stride, yd + (n * g.oc + grp * g.ocg) * out_plane, ih * 2 - g.pt, g.oh,
             g.ow, out_plane, y_amax ? &bits : nullptr);
      if (y_amax) cpu::vnni::atomic_max(&amax_bits, bits);
    });
    if (y_amax) *y_amax = std::bit_cast<float>(amax_bits.load());
    return true;
  }
  const int64_t lanes = cpu::convt_lanes(), sw = g.sw, taps = g.kh * g.kw;
  const int64_t total_rows = w.groups * g.rows;
  State& st = state(w);
  const float* wpat = nullptr;
  {
    std::lock_guard lock(st.mu);
    if (st.wpat_lanes != lanes) {
      const auto count = static_cast<size_t>(total_rows * g.cg);
      std::vector<float> wf(count);
      cpu::codes_as_floats(w.matrix, wf.data());
      st.wpat.assign(count * static_cast<size_t>(sw * lanes), 0.0f);
      // Row (grp, ocl, kh, kw) of the matrix is grp·rows + ocl·taps + kh·kw_n + kw.
      for (int64_t grp = 0; grp < w.groups; ++grp)
        for (int64_t ocl = 0; ocl < g.ocg; ++ocl)
          for (int64_t kh = 0; kh < g.kh; ++kh)
            for (int64_t ci = 0; ci < g.cg; ++ci)
              for (int64_t ph = 0; ph < sw; ++ph)
                for (int64_t j = 0; j < lanes; ++j) {
                  const int64_t kw = (ph + j) % sw;
                  const int64_t row = grp * g.rows + ocl * taps + kh * g.kw + kw;
                  const int64_t at =
                      ((((grp * g.ocg + ocl) * g.kh + kh) * g.cg + ci) * sw + ph) * lanes + j;
                  st.wpat[static_cast<size_t>(at)] = wf[static_cast<size_t>(row * g.cg + ci)];
                }
      st.wpat_lanes = lanes;
    }
    wpat = st.wpat.data();
  }
  std::vector<float> spat(static_cast<size_t>(total_rows / g.kw * sw * lanes));
  for (int64_t grp = 0; grp < w.groups; ++grp)
    for (int64_t ocl = 0; ocl < g.ocg; ++ocl)
      for (int64_t kh = 0; kh < g.kh; ++kh)
        for (int64_t ph = 0; ph < sw; ++ph)
          for (int64_t j = 0; j < lanes; ++j)
            spat[static_cast<size_t>(((((grp * g.ocg + ocl) * g.kh + kh) * sw + ph) * lanes) + j)] =
                row_scale(w, grp * g.rows + ocl * taps + kh * g.kw + (ph + j) % sw, sx);
  const int64_t pattern_group = g.ocg * g.kh * g.cg * sw * lanes,
                scale_group = g.ocg * g.kh * sw * lanes;
  run_tasks(static_cast<size_t>(g.n * w.groups * g.h), threads, [&](size_t t) {
    const auto [n, grp, ih, rows] = task_rows(t);
    float* yg = yd + (n * g.oc + grp * g.ocg) * out_plane;
    const int64_t oh0 = ih * g.sh - g.pt;
    cpu::ConvtRows r;
    r.x = rows;
    r.x_stride = stride;
    r.cg = g.cg;
    r.wpat = wpat + grp * pattern_group;
    r.spat = spat.data() + grp * scale_group;
    r.bias = bias ? bias + grp * g.ocg : nullptr;
    r.ocg = g.ocg;
    r.kh_n = g.kh;
    r.sw = sw;
    r.pl = g.pl;
    r.oh0 = oh0;
    r.oh_n = g.oh;
    r.ow = g.ow;
    r.y = yg;
    r.plane = out_plane;
    cpu::convt_rows(r);
    if (p.activation == Activation::kNone) return;
    for (int64_t ocl = 0; ocl < g.ocg; ++ocl)
      for (int64_t kh = 0; kh < g.kh; ++kh) {
        const int64_t oh = oh0 + kh;
        if (oh >= 0 && oh < g.oh) apply_activation_n(yg + ocl * out_plane + oh * g.ow, g.ow, p);
      }
  });
  return true;
}

// Non-overlapping taps (kernel <= stride, dilation 1, e.g. the 2x2 stride-2 upsampling of
// FPN/DB heads), where the reference adds at most one contribution to each output: per (image,
// group) the plain GEMM col[OCg·KH·KW, H·W] = W_g · X_g on NCHW planes (oneDNN, no transposes),
// then each column row, a plane of the tap (oc, kh, kw), lands strided in its output plane as
// apply_activation((0 + contribution) + bias), the reference's expressions (int8: the s32 sum
// times (sx · sw[row]), bit-identical; floats: the GEMM's summation order). Outputs no tap
// reaches (kernel < stride, cropping pads) get apply_activation(0 + bias) first. false where it
// does not apply (nothing written).
bool conv_transpose_plain(const Geom& g, const ConvTransposeWeights& w,
                          const ConvTransposeParams& p, const float* xs, const int8_t* xq, float sx,
                          const float* bias, float* yd, int threads) {
  const Format f = w.matrix.format;
  if (f == Format::kInt4 || !cpu::plain_gemm_supported(f)) return false;
  if (g.dh != 1 || g.dw != 1 || g.kh > g.sh || g.kw > g.sw || g.pt < 0 || g.pl < 0) return false;
  const int64_t pixels = g.h * g.w, out_plane = g.oh * g.ow, taps = g.kh * g.kw;
  const auto count = static_cast<size_t>(g.n * g.c * pixels);
  size_t eb = 4;
  const auto* xu = static_cast<const std::byte*>(cpu::plain_gemm_x(f, xs, xq, count, &eb));
  const std::vector<MatmulWeights>& slices = group_slices(w);
  State& st = state(w);
  thread_local std::vector<float> col_buf;
  col_buf.resize(static_cast<size_t>(g.rows * pixels));
  void* col = col_buf.data();
  const auto* colf = static_cast<const float*>(col);
  const auto* coli = static_cast<const int32_t*>(col);
  const QuantParams& qp = w.matrix.data.quant();
  const bool fp8 = f == Format::kFp8E4M3 || f == Format::kFp8E5M2;
  const float sw_tensor = fp8 ? qp.scales.at(0) : 1.0f;
  // Every output reached by exactly one tap: no prefill needed.
  const bool covered =
      g.kh == g.sh && g.kw == g.sw && g.h * g.sh - g.pt >= g.oh && g.w * g.sw - g.pl >= g.ow;
  for (int64_t n = 0; n < g.n; ++n)
    for (int64_t grp = 0; grp < w.groups; ++grp) {
      const MatmulWeights& mw = w.groups == 1 ? w.matrix : slices[static_cast<size_t>(grp)];
      const std::byte* xg = xu + static_cast<size_t>((n * g.c + grp * g.cg) * pixels) * eb;
      if (!cpu::plain_gemm(st.gemm, mw, xg, g.cg, pixels, col, threads)) {
        if (n == 0 && grp == 0) return false;
        throw Error(ErrorKind::kInternal, "ConvTranspose: oneDNN matmul failed midway");
      }
      const int64_t row0 = grp * g.rows;
#pragma omp parallel for num_threads(threads) schedule(static) if (g.ocg * out_plane > 65536)
      for (int64_t ocl = 0; ocl < g.ocg; ++ocl) {
        const int64_t oc = grp * g.ocg + ocl;
        const float b = bias ? bias[oc] : 0.0f;
        float* yp = yd + (n * g.oc + oc) * out_plane;
        // Each output is reached by one tap at most (kh <= sh, kw <= sw): the taps' values are
        // written row by row, then the activation runs over the plane (apply_activation_n is
        // bit-identical to the per-value form).
        if (!covered) std::fill_n(yp, out_plane, 0.0f + b);
        for (int64_t kh = 0; kh < g.kh; ++kh)
          for (int64_t ih = 0; ih < g.h; ++ih) {
            const int64_t oh = ih * g.sh - g.pt + kh;
            if (oh < 0 || oh >= g.oh) continue;
            for (int64_t kw = 0; kw < g.kw; ++kw) {
              // Input columns whose output column iw·sw - pl + kw lies in [0, OW).
              const int64_t off = kw - g.pl;
              const int64_t lo = off >= 0 ? 0 : (-off + g.sw - 1) / g.sw;
              const int64_t hi = off < g.ow ? std::min(g.w, (g.ow - 1 - off) / g.sw + 1) : 0;
              const int64_t row = ocl * taps + kh * g.kw + kw;
              const float s =
                  f == Format::kInt8 ? sx * qp.scales[static_cast<size_t>(row0 + row)] : sw_tensor;
              float* yr = yp + oh * g.ow + off;
              const int64_t at = row * pixels + ih * g.w;
              const int64_t step = g.sw;
              if (f == Format::kInt8) {
                const int32_t* cr = coli + at;
                for (int64_t iw = lo; iw < hi; ++iw)
                  yr[iw * step] = (0.0f + static_cast<float>(cr[iw]) * s) + b;
              } else {
                const float* cr = colf + at;
                for (int64_t iw = lo; iw < hi; ++iw) yr[iw * step] = (0.0f + cr[iw] * s) + b;
              }
            }
          }
        apply_activation_n(yp, out_plane, p);
      }
    }
  return true;
}

Geom make_geom(const Shape& x, const Shape& ys, const ConvTransposeGeometry& geo,
               const ConvTransposeWeights& w, const ConvTransposeParams& p) {
  return Geom{
      x[0],       x[1],       x[2],         x[3],         w.matrix.k,  w.oc_per_group,
      ys[1],      ys[2],      ys[3],        w.kh,         w.kw,        w.oc_per_group * w.kh * w.kw,
      p.stride_h, p.stride_w, p.dilation_h, p.dilation_w, geo.pad_top, geo.pad_left};
}

}  // namespace

void conv_transpose2d(const Tensor& x, const ConvTransposeWeights& w, const float* bias,
                      const ConvTransposeParams& p, Tensor& y, int threads,
                      const ConvHints* hints) {
  if (hints && hints->y_amax) *hints->y_amax = -1.0f;
  const ConvTransposeGeometry geo = conv_transpose_geometry(x.shape(), w, p);
  const Shape ys = conv_transpose_output_shape(x.shape(), w, p);
  if (x.dtype() != DType::kF32)
    throw Error(ErrorKind::kInvalidInput, "ConvTranspose: input must be float32");
  if (y.dtype() != DType::kF32 || y.shape() != ys || !y.is_contiguous())
    throw Error(ErrorKind::kInvalidInput,
                "ConvTranspose: output must be a contiguous float32 tensor of shape " +
                    shape_str(ys) + ", got " + std::string(dtype_name(y.dtype())) + " " +
                    shape_str(y.shape()));
  if (y.numel() == 0) return;
  cpu_features();  // applies the DYNAPREC_ISA cap before any dispatched kernel runs
  const Tensor xc = x.is_contiguous() ? x : x.clone();
  const int pool = ThreadPool::default_pool().threads();
  const int t = threads > 0 ? std::min(threads, pool) : pool;
  const Geom g = make_geom(x.shape(), ys, geo, w, p);
  const Format f = w.matrix.format;
  const float* xs = xc.data_as<float>();
  float* yd = y.data_as<float>();
  const auto count = static_cast<size_t>(xc.numel());
  const int64_t pixels = g.h * g.w, out_plane = g.oh * g.ow;

  // int formats: X quantized once with one scale over all of it, on the OpenMP threads
  // (bit-identical to the reference's codes).
  // The direct path rounds each input row itself and needs only the scale; the others take the
  // codes, made here.
  std::vector<int8_t> xq;
  float sx = 1.0f;
  const bool direct = direct_applies(g, w);
  // The scale from a known max |X| (ConvHints): what int8_activation_scale would make.
  const bool known = is_int(f) && hints && hints->x_amax >= 0.0f && std::isfinite(hints->x_amax);
  if (known) sx = ref::int8_scale(hints->x_amax);
  if (direct && f == Format::kInt8) {
    if (!known) sx = cpu::int8_activation_scale(xs, count, t, "ConvTranspose: inputs");
  } else if (is_int(f)) {
    xq.resize(count);
    if (known)
      cpu::quantize_x_int8_scaled(xs, count, xq.data(), t, sx);
    else
      sx = cpu::quantize_x_int8(xs, count, xq.data(), t, "ConvTranspose: inputs");
  }
  if (direct &&
      conv_transpose_direct(g, w, p, xs, sx, bias, yd, t, hints ? hints->y_amax : nullptr))
    return;
  if (conv_transpose_plain(g, w, p, xs, xq.data(), sx, bias, yd, t)) return;
  const std::vector<MatmulWeights>& slices = group_slices(w);
  std::fill_n(yd, y.numel(), 0.0f);

  // One (image, group) plane: transpose X_g to [pixels, Cg], then run_plane.
  auto plane = [&](int64_t n, int64_t grp, int inner) {
    const MatmulWeights& mw = w.groups == 1 ? w.matrix : slices[static_cast<size_t>(grp)];
    const int64_t base = (n * g.c + grp * g.cg) * pixels;
    float* yg = yd + (n * g.oc + grp * g.ocg) * out_plane;
    const auto tcount = static_cast<size_t>(pixels * g.cg);
    if (is_int(f)) {
      thread_local std::vector<int8_t> xt;
      xt.resize(tcount);
      for (int64_t c = 0; c < g.cg; ++c)
        for (int64_t r = 0; r < pixels; ++r) xt[r * g.cg + c] = xq[base + c * pixels + r];
      run_plane(g, w, mw, grp, nullptr, xt.data(), sx, yg, inner);
    } else {
      thread_local std::vector<float> xt;
      xt.resize(tcount);
      for (int64_t c = 0; c < g.cg; ++c)
        for (int64_t r = 0; r < pixels; ++r) xt[r * g.cg + c] = xs[base + c * pixels + r];
      run_plane(g, w, mw, grp, xt.data(), nullptr, sx, yg, inner);
    }
  };
  if (w.groups > 1 && w.groups >= t) {
    run_tasks(static_cast<size_t>(w.groups), t, [&](size_t grp) {
      for (int64_t n = 0; n < g.n; ++n) plane(n, static_cast<int64_t>(grp), 1);
    });
  } else {
    for (int64_t n = 0; n < g.n; ++n)
      for (int64_t grp = 0; grp < w.groups; ++grp) plane(n, grp, t);
  }

  // Bias and activation, per output plane.
  Conv2dParams act;
  act.activation = p.activation;
  act.clip_min = p.clip_min;
  act.clip_max = p.clip_max;
  if (!bias && p.activation == Activation::kNone) return;
  run_tasks(static_cast<size_t>(g.n * g.oc), t, [&](size_t i) {
    float* yp = yd + static_cast<int64_t>(i) * out_plane;
    const float b = bias ? bias[static_cast<int64_t>(i) % g.oc] : 0.0f;
    for (int64_t j = 0; j < out_plane; ++j) yp[j] = apply_activation(yp[j] + b, act);
  });
}

bool conv_transpose2d_chain(const Tensor& x, const ConvTransposeWeights& wa, const float* ba,
                            const ConvTransposeParams& pa, const ConvTransposeWeights& wb,
                            const float* bb, const ConvTransposeParams& pb, Tensor& y,
                            int threads) {
  if (x.dtype() != DType::kF32 || x.rank() != 4 || wa.groups != 1 || wb.groups != 1) return false;
  const Shape ya = conv_transpose_output_shape(x.shape(), wa, pa);
  const Shape yb = conv_transpose_output_shape(ya, wb, pb);
  if (y.dtype() != DType::kF32 || y.shape() != yb || !y.is_contiguous() || x.numel() == 0 ||
      y.numel() == 0)
    return false;
  cpu_features();  // applies the DYNAPREC_ISA cap before any dispatched kernel runs
  const Geom ga = make_geom(x.shape(), ya, conv_transpose_geometry(x.shape(), wa, pa), wa, pa);
  const Geom gb = make_geom(ya, yb, conv_transpose_geometry(ya, wb, pb), wb, pb);
  // Both 2x2 stride 2 without padding or cropping: A's two output rows per input row are all B
  // needs for its four.
  for (const auto& [g, w] : {std::pair{&ga, &wa}, std::pair{&gb, &wb}})
    if (!k2_applies(*g, *w) || g->pt != 0 || g->oh != 2 * g->h || g->ow != 2 * g->w) return false;
  const Format fa = wa.matrix.format, fb = wb.matrix.format;
  // int8 B takes its scale from max |A(x)| over all of it: A would run twice (once to find it),
  // which cost more than writing A(x) and reading it back (detector, AMD EPYC).
  if (fb == Format::kInt8) return false;
  const Tensor xc = x.is_contiguous() ? x : x.clone();
  const int pool = ThreadPool::default_pool().threads();
  const int t = threads > 0 ? std::min(threads, pool) : pool;
  const float* xs = xc.data_as<float>();
  const int64_t pixels_a = ga.h * ga.w, sa = row_stride(ga), sb = row_stride(gb);
  const float sxa = fa == Format::kInt8
                        ? cpu::int8_activation_scale(xs, static_cast<size_t>(xc.numel()), t,
                                                     "ConvTranspose: inputs")
                        : 1.0f;
  const K2Layer ka = k2_layer(ga, wa, sxa, ba, pa);
  // A's output rows 2·ih and 2·ih + 1, every channel: [oc][2][ow] in a thread's buffer.
  const int64_t plane_a = 2 * ga.ow;
  auto run_a = [&](int64_t n, int64_t ih) {
    thread_local std::vector<float> rows_buf, out_buf;
    float* rows = thread_buffer(rows_buf, ga.cg * sa);
    float* out = thread_buffer(out_buf, ga.oc * plane_a);
    round_rows(fa, sxa, xs + n * ga.c * pixels_a + ih * ga.w, static_cast<size_t>(pixels_a), rows,
               static_cast<size_t>(sa), static_cast<size_t>(ga.cg), static_cast<size_t>(ga.w));
    k2_run(ka, 0, rows, sa, out, 0, 2, ga.ow, plane_a);
    return out;
  };
  const auto tasks = static_cast<size_t>(ga.n * ga.h);
  const K2Layer kb = k2_layer(gb, wb, 1.0f, bb, pb);
  float* yd = y.data_as<float>();
  const int64_t plane_b = gb.oh * gb.ow;
  run_tasks(tasks, t, [&](size_t task) {
    const auto i = static_cast<int64_t>(task);
    const int64_t n = i / ga.h, ih = i % ga.h;
    const float* out = run_a(n, ih);
    thread_local std::vector<float> rows_buf;
    float* rows = thread_buffer(rows_buf, gb.cg * sb);
    for (int64_t kh = 0; kh < 2; ++kh) {
      round_rows(fb, 1.0f, out + kh * ga.ow, static_cast<size_t>(plane_a), rows,
                 static_cast<size_t>(sb), static_cast<size_t>(gb.cg), static_cast<size_t>(gb.w));
      k2_run(kb, 0, rows, sb, yd + n * gb.oc * plane_b, (2 * ih + kh) * 2, gb.oh, gb.ow, plane_b);
    }
  });
  return true;
}

}  // namespace dynaprec
