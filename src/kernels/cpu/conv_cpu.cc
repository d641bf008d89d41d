// The CPU conv2d: three implementations with the contract of ref::conv2d (conv.h).
//
// oneDNN (all but int4): its convolution primitive on X as the format uses it (rounded by our
//   own RNE encoder; int8 codes with the one scale over all of X), W reordered once into the
//   primitive's layout and kept in ConvWeights::prepared (see dnnl_types for bf16/fp8/fp16).
//   It only convolves: the fp32 sums (s32 for int8, exact) get the scales, bias and
//   activation in our epilogue with the reference's expressions, so int8 is bit-identical and
//   the floats differ by summation order (and oneDNN's FMA, within the same bound). int8 only
//   with VNNI: without it oneDNN's s8 kernels saturate int16 pair sums (matmul_dnnl.cc). bf16
//   on AMX / AVX512-BF16 treats bf16 subnormals as 0.
//   Layouts: a pointwise conv (1x1, stride 1, no pads, one group) is a plain GEMM on NCHW,
//   Y[OC, HW] = W[OC, C] · X[C, HW], run as oneDNN's matmul on row-major operands, so neither
//   X nor Y is reordered (NCHW -> blocked -> NCHW cost as much as the conv itself); a first
//   layer (C <= 4, f32) reads NCHW directly; 1x1 planes (squeeze-excite) call dynaprec::matmul.
//   For float outputs (not fp8) oneDNN adds the bias and applies relu/clip/hardswish as
//   post-ops where its fast kernel accepts them (DnnlPlan::fused), leaving no epilogue pass.
// im2col: per image and group, the [OH·OW, K] patch matrix (a row per output pixel, K in
//   (ic, kh, kw) order, zeros outside the input) times the group's [OC/groups, K] rows.
//   Floats call dynaprec::matmul, which rounds X itself (element-wise: rounding patches is
//   rounding X). int8/int4 cannot: matmul takes its activation scale from the matrix it gets,
//   and a patch matrix holds one group's channels and, with stride > kernel, misses pixels,
//   while conv.h fixes one scale over all of X. So X is quantized once, the patches are built
//   from its codes, and each pixel row runs matmul's GEMV row kernels (VNNI or Highway): int8
//   bit-identical, int4 up to the kernels' fp32 order of the group sums.
// depthwise (one input and one output channel per group, all formats but int4): one plane at a
//   time, padded with zeros into a small buffer, each output row summed in registers over the
//   taps with FMA (dwconv_hwy.cc); floats on X rounded to the format, int8 on the codes
//   widened to fp32 lanes, where the sums of at most 1040 products of |q| <= 127 are exact
//   integers (int8 bit-identical to the reference). With AVX-512 VNNI and VBMI, int8 runs on
//   the codes as bytes instead (dwconv_vnni.h): four taps of a row per vpdpbusd, exact int32
//   sums, the same result bit for bit. oneDNN wants a blocked layout here, and the reorders
//   around it cost more than the convolution.
// direct: per output channel, taps in K order, output pixels innermost (vectorized). Skipping
//   taps outside the input, where the reference adds 0 · w = ±0 (a sum that starts at +0
//   never becomes -0), is the reference bit for bit with finite weights. It wins with little
//   work per pixel (depthwise: a GEMV call per pixel costs more than its 9 multiply-adds).
#include <omp.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <bit>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <map>
#include <memory>
#include <mutex>
#include <oneapi/dnnl/dnnl.hpp>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

#include "dynaprec/conv.h"
#include "dynaprec/convert.h"
#include "dynaprec/cpu_features.h"
#include "dynaprec/error.h"
#include "dynaprec/thread_pool.h"
#include "kernels/cpu/dnnl_common.h"
#include "kernels/cpu/dwconv_hwy.h"
#include "kernels/cpu/dwconv_vnni.h"
#include "kernels/cpu/gemv_hwy.h"
#include "kernels/cpu/matmul_dnnl.h"
#include "kernels/cpu/matmul_kernels.h"
#include "kernels/cpu/pwconv_vnni.h"
#include "kernels/cpu/scratch_buffer.h"
#include "kernels/cpu/vnni_common.h"

namespace dynaprec {
namespace cpu {
namespace {

using dt = dnnl::memory::data_type;
using tag = dnnl::memory::format_tag;
using dnnl::memory;

// Geometry of one call, validated by conv2d_output_shape.
struct Geom {
  int64_t n, c, h, w;  // input
  int64_t oc, oh, ow;  // output
  int64_t kh, kw, icg, ocg, groups;
  int64_t k, pixels;  // K = icg·kh·kw, pixels = oh·ow
  const Conv2dParams* p;
  // Where non-null, the caller wants max |Y| (ConvHints::y_amax): a kernel that takes it while
  // storing raises *amax to it (as float bits) and sets *amax_taken.
  std::atomic<uint32_t>* amax = nullptr;
  bool* amax_taken = nullptr;
};

// The kernel's accumulator for max |Y| where the caller wants it (and notes that it was taken).
std::atomic<uint32_t>* take_amax(const Geom& gm) {
  if (gm.amax_taken) *gm.amax_taken = gm.amax != nullptr;
  return gm.amax;
}

bool is_int(Format f) { return f == Format::kInt8 || f == Format::kInt4; }
bool is_fp8(Format f) { return f == Format::kFp8E4M3 || f == Format::kFp8E5M2; }

// Runs fn(i) for i in [0, tasks) on the default pool, or inline for one thread or task.
template <class Fn>
void run_tasks(size_t tasks, int threads, Fn&& fn) {
  if (threads <= 1 || tasks <= 1) {
    for (size_t i = 0; i < tasks; ++i) fn(i);
    return;
  }
  ThreadPool::default_pool().parallel_for(tasks, fn);
}

// --- per-weights state: group slices and oneDNN plans ------------------------------------------

struct DnnlPlan {
  bool ok = false;  // false: oneDNN has no (non-reference) implementation for this problem
  dnnl::convolution_forward conv;
  memory::desc src_user, src, dst_user, dst, scratch;
  std::optional<dnnl::reorder> src_reorder, dst_reorder;
  // dst is f32 NHWC with channels in 16s: nhwc_to_nchw_f32 instead of dst_reorder where it can
  // (max |Y| on the way, for the next int8 layer).
  bool dst_nhwc = false;
  // bf16 X in a blocked layout: the reorder reads the f32 NCHW input and rounds it to bf16 on
  // the way, one pass instead of two. Round to nearest even and quiet NaNs as
  // encode_float_array, except that it flushes subnormal inputs (|x| < 2^-126) to zero, which
  // changes no result: the bf16 dot products (AMX, AVX512_BF16) treat them as zero anyway.
  bool src_from_f32 = false;
  memory wei;  // W in the primitive's layout, reordered once
  // A 1x1 convolution (stride 1, no padding, one group) as the plain GEMM that it is on NCHW:
  // Y[OC, HW] = W[OC, C] · X[C, HW] per image, oneDNN's matmul on row-major operands (W as
  // "src", X as "weights"), so that neither X nor Y is reordered.
  bool gemm = false;
  dnnl::matmul mm;
  memory::desc mm_w, mm_x, mm_y;
  std::vector<std::byte> w_used;  // W as oneDNN reads it where it is not the matrix's codes
  const void* w_codes = nullptr;
  // Float outputs: oneDNN adds the bias and applies the activation (post-op), so that no
  // epilogue pass over Y is left (floats differ from the reference by summation order anyway).
  bool fused = false;
  memory::desc bias;
  // bf16 matmuls whose bias oneDNN cannot add (2.6's brgemm without AMX sends a per-row binary
  // add to its reference; a sum post-op on a Y filled with the bias measured slower than our
  // epilogue): the bias as kBiasColumns more columns of W, three bf16 parts whose sum is the
  // fp32 bias exactly (8 significant bits each; parts below 2^-126 count as zero in the bf16
  // dot products) and a zero, against rows of ones appended to X's codes. bias_in_k holds the
  // bias that W was made with.
  std::vector<float> bias_in_k;
  // int8 with float outputs: oneDNN's post-ops also turn the s32 sums into floats, times
  // sx · sw[oc] (a per-channel binary multiply, post-op 0, whose factors are given per call:
  // oneDNN 2.6's convolutions take no run-time output scales), then add the bias (binary add,
  // post-op 1) and apply the activation: y = act(float(acc) · s[oc] + b[oc]), the epilogue's
  // formula, in one pass over Y instead of an s32 result, its reorder and our epilogue.
  bool scaled = false;
  memory::desc scale;
  // Whether the activation is among the fused post-ops: not where oneDNN's differs from
  // apply_activation in the last bit (hard-swish, sigmoid) and int8 promises the reference's
  // bits; the epilogue then applies only the activation.
  bool activation_fused = false;
};

// Whether oneDNN applies bias and activation itself (DnnlPlan::fused): float outputs without a
// tensor scale (fp8 keeps our epilogue), activations oneDNN evaluates like apply_activation up
// to rounding (sigmoid stays ours: oneDNN's logistic is an approximation).
bool fuse_epilogue(Format f, dt out, const Conv2dParams& p) {
  return out == dt::f32 && !is_fp8(f) && p.activation != Activation::kSigmoid;
}

// The activation of p as a oneDNN post-op (none: empty).
dnnl::post_ops activation_post_ops(const Conv2dParams& p) {
  dnnl::post_ops ops;
  switch (p.activation) {
    case Activation::kRelu:
      ops.append_eltwise(1.0f, dnnl::algorithm::eltwise_relu, 0.0f, 0.0f);
      break;
    case Activation::kClip:
      ops.append_eltwise(1.0f, dnnl::algorithm::eltwise_clip_v2, p.clip_min, p.clip_max);
      break;
    case Activation::kHardSwish:
      ops.append_eltwise(1.0f, dnnl::algorithm::eltwise_hardswish, 0.0f, 0.0f);
      break;
    default:
      break;
  }
  return ops;
}
using PlanKey = std::array<int64_t, 18>;

// Two floats' bits as one key entry.
int64_t float_pair_key(float a, float b) {
  return static_cast<int64_t>(uint64_t{std::bit_cast<uint32_t>(a)} << 32 |
                              std::bit_cast<uint32_t>(b));
}

struct ConvState {
  std::mutex mu;
  std::optional<bool> finite;  // every weight finite (see weights_finite)
  Tensor storage;              // shares the matrix's codes, which the group slices point into
  std::map<int64_t, std::vector<MatmulWeights>> slices;  // by groups; never invalidated
  std::map<PlanKey, std::shared_ptr<const DnnlPlan>> plans;
  std::optional<PwInt8Weights> pointwise;       // conv_pointwise's form of W (int8)
  std::optional<PwBf16Weights> pointwise_bf16;  // (bf16)
  std::optional<ConvInt8AmxWeights> amx;        // conv_amx's form of W
  std::optional<ConvInt8VnniWeights> kxk_vnni;  // conv_kxk_vnni's
  std::optional<ConvFloatWeights> kxk_float;    // conv_kxk_float's
  std::optional<DwInt8Weights> dw_int8;         // conv_depthwise's on VNNI (int8)
  std::optional<DwBf16Weights> dw_bf16;         // and on AVX512_BF16 (bf16)
  std::vector<float> w_float;                   // weights_as_floats
};

ConvState& state(const ConvWeights& w) {
  if (!w.prepared) w.prepared = std::make_shared<ConvState>();  // first use: see conv.h
  return *static_cast<ConvState*>(w.prepared.get());
}

// Whether every weight is finite (fp16 overflow, inf or NaN in fp32/bf16 weights). Where one
// is not, the reference's 0 · w at padding taps is NaN, and only im2col computes those
// products: oneDNN and direct skip padding taps.
bool weights_finite(const ConvWeights& w) {
  ConvState& st = state(w);
  std::lock_guard lock(st.mu);
  if (!st.finite) {
    st.finite = true;
    const Format f = w.matrix.format;
    const auto n = static_cast<size_t>(w.matrix.n * w.matrix.k);
    const size_t bytes = format_storage_bytes(f, 1);
    float tmp[1024];
    for (size_t i = 0; i < n && !is_int(f) && *st.finite; i += std::size(tmp)) {
      const size_t len = std::min(std::size(tmp), n - i);
      decode_float_array(f, static_cast<const uint8_t*>(w.matrix.data.data()) + i * bytes, tmp,
                         len);
      for (size_t j = 0; j < len; ++j) *st.finite = *st.finite && std::isfinite(tmp[j]);
    }
  }
  return *st.finite;
}

// Group g's rows. groups == 1: the matrix itself, so that a matmul kernel's prepared form of
// it (MatmulWeights::prepared) is kept; else a slice kept in the state for the same reason.
const MatmulWeights& group_weights(const ConvWeights& w, int64_t groups, int64_t g) {
  if (groups == 1) return w.matrix;
  ConvState& st = state(w);
  std::lock_guard lock(st.mu);
  auto& views = st.slices[groups];
  if (views.empty()) {
    st.storage = w.matrix.data;
    for (int64_t i = 0; i < groups; ++i)
      views.push_back(slice_rows(w.matrix, i * (w.oc / groups), w.oc / groups));
  }
  return views[static_cast<size_t>(g)];
}

// W's values as floats (int8: its codes, exact; not int4), made once per weights: the direct
// and depthwise kernels' form of W.
const float* weights_as_floats(const ConvWeights& w) {
  ConvState& st = state(w);
  std::lock_guard lock(st.mu);
  const auto n = static_cast<size_t>(w.matrix.n * w.matrix.k);
  if (st.w_float.size() != n) {
    st.w_float.resize(n);
    codes_as_floats(w.matrix, st.w_float.data());
  }
  return st.w_float.data();
}

// --- oneDNN --------------------------------------------------------------------------------

// X's and Y's oneDNN types for a format, or nullopt where we do not use oneDNN. The ISA
// conditions are matmul_dnnl.cc's: f32 from AVX2 up (below, our kernels), bf16 only with
// native bf16 dot products (oneDNN's emulation is slow), int8 only with VNNI (exact). fp16,
// and bf16/fp8 without native bf16, run as f32 on the values as used: products of fp16·fp16
// (22 bits), bf16·bf16 (16) and bf16·fp8 (12) are exact in fp32, as the reference's are.
std::optional<std::pair<dt, dt>> dnnl_types(Format f) {
  const CpuFeatures& c = cpu_features();
  const bool bf16 = onednn_has(dnnl::cpu_isa::avx512_core_bf16) && (c.avx512_bf16 || c.amx_bf16);
  const bool vnni =
      onednn_has(dnnl::cpu_isa::avx512_core_vnni) || onednn_has(dnnl::cpu_isa::avx2_vnni);
  if (f == Format::kInt8 && vnni && (c.avx512_vnni || c.amx_int8 || c.avx_vnni))
    return std::pair{dt::s8, dt::s32};
  if ((f == Format::kBf16 || is_fp8(f)) && bf16) return std::pair{dt::bf16, dt::f32};
  if (!is_int(f) && onednn_has(dnnl::cpu_isa::avx2) && c.avx2 && c.fma)
    return std::pair{dt::f32, dt::f32};
  return std::nullopt;
}

// W's codes as oneDNN takes them for `act`: our [OC, K] rows are oneDNN's plain oihw / goihw,
// decoded to f32 (exact) where oneDNN runs f32 for a narrower format, fp8 widened to bf16
// (exact) where it runs bf16. Returns the matrix's own codes or `keep`'s.
const void* dnnl_weight_codes(const ConvWeights& w, dt act, std::vector<std::byte>& keep) {
  const Format f = w.matrix.format;
  const void* codes = w.matrix.data.data();
  if (f == Format::kFp32 || f == Format::kInt8 || (f == Format::kBf16 && act == dt::bf16))
    return codes;
  const auto n = static_cast<size_t>(w.matrix.n * w.matrix.k);
  std::vector<float> f32(n);
  decode_float_array(f, codes, f32.data(), n);
  if (act == dt::bf16) {
    keep.resize(n * 2);
    encode_float_array(Format::kBf16, f32.data(), keep.data(), n);
  } else {
    keep.resize(n * 4);
    std::memcpy(keep.data(), f32.data(), n * 4);
  }
  return keep.data();
}

}  // namespace

// (matmul_kernels.h)
MatmulWeights slice_rows(const MatmulWeights& m, int64_t j0, int64_t rows) {
  MatmulWeights s;
  s.format = m.format;
  s.n = rows;
  s.k = m.k;
  const size_t row_bytes = format_storage_bytes(m.format, static_cast<size_t>(m.k));
  auto* base = static_cast<uint8_t*>(const_cast<void*>(m.data.data()));
  s.data = Tensor::borrow(base + static_cast<size_t>(j0) * row_bytes, {rows, m.k}, m.data.dtype());
  const QuantParams& q = m.data.quant();
  QuantParams& sq = s.data.quant();
  sq.axis = q.axis;
  sq.group_size = q.group_size;
  if (m.format == Format::kInt8) {
    sq.scales.assign(q.scales.begin() + j0, q.scales.begin() + j0 + rows);
  } else if (m.format == Format::kInt4) {
    const int64_t per_row = (m.k + 31) / 32;
    sq.scales_f16.assign(q.scales_f16.begin() + j0 * per_row,
                         q.scales_f16.begin() + (j0 + rows) * per_row);
  } else {
    sq.scales = q.scales;
  }
  return s;
}

// (matmul_kernels.h)
void codes_as_floats(const MatmulWeights& m, float* out) {
  const auto n = static_cast<size_t>(m.n * m.k);
  DP_CHECK(m.format != Format::kInt4, "codes_as_floats: int4 is not taken");
  if (m.format == Format::kInt8)
    int8_decode_array(m.data.data_as<int8_t>(), out, n, 1.0f);
  else
    decode_float_array(m.format, m.data.data(), out, n);
}

bool plain_gemm_supported(Format f) { return dnnl_types(f).has_value(); }

const void* plain_gemm_x(Format f, const float* x, const int8_t* xq, size_t count,
                         size_t* elem_bytes) {
  const auto types = dnnl_types(f);
  if (!types) return nullptr;
  *elem_bytes = types->first == dt::s8 ? 1 : types->first == dt::bf16 ? 2 : 4;
  if (types->first == dt::s8) return xq;
  const Format x_format = is_fp8(f) ? Format::kBf16 : f;
  if (x_format == Format::kFp32) return x;
  thread_local ScratchBuffer x16, xr;
  uint16_t* codes = x16.get<uint16_t>(count);
  encode_float_array(x_format, x, codes, count);
  if (types->first == dt::bf16) return codes;
  float* r = xr.get<float>(count);
  decode_float_array(x_format, codes, r, count);
  return r;
}

namespace {
struct PlainGemmPlan {
  bool ok = false;  // false: oneDNN has only a slow implementation
  dnnl::matmul mm;
  memory::desc w, x, y, scratch;
};
}  // namespace

bool plain_gemm(PlainGemmCache& cache, const MatmulWeights& w, const void* x_used, int64_t k,
                int64_t p, void* y, int threads) {
  const auto types = dnnl_types(w.format);
  if (!types) return false;
  const auto [act, out] = *types;
  if (act == dt::s8 && k > 65536) return false;  // exact in int32 (see conv_dnnl_impl)
  const OmpThreads omp_scope(threads);
  const std::array<int64_t, 4> key{w.n, k, p, threads};
  std::shared_ptr<const PlainGemmPlan> plan;
  std::shared_ptr<std::vector<std::byte>> codes;
  {
    std::lock_guard lock(cache.mu);
    if (auto it = cache.plans.find(key); it != cache.plans.end())
      plan = std::static_pointer_cast<const PlainGemmPlan>(it->second);
    if (auto it = cache.codes.find(w.data.data()); it != cache.codes.end()) codes = it->second;
  }
  try {
    if (!plan) {
      auto made = std::make_shared<PlainGemmPlan>();
      made->w = memory::desc({w.n, k}, act, tag::ab);
      made->x = memory::desc({k, p}, act, tag::ab);
      made->y = memory::desc({w.n, p}, out, tag::ab);
      dnnl::primitive_attr attr;
      attr.set_scratchpad_mode(dnnl::scratchpad_mode::user);
      const dnnl::matmul::primitive_desc pd(dnnl::matmul::desc(made->w, made->x, made->y), attr,
                                            onednn_engine());
      const std::string impl = pd.impl_info_str();
      if (impl.rfind("ref", 0) != 0 && impl.find("gemm") == std::string::npos) {
        made->scratch = pd.scratchpad_desc();
        made->mm = dnnl::matmul(pd);
        made->ok = true;
      }
      plan = made;
      std::lock_guard lock(cache.mu);
      if (cache.plans.size() >= 64) cache.plans.clear();
      cache.plans[key] = plan;
    }
    if (!plan->ok) return false;
    if (!codes) {
      auto c = std::make_shared<std::vector<std::byte>>();
      ConvWeights cw;  // dnnl_weight_codes reads only the matrix
      cw.matrix = w;
      dnnl_weight_codes(cw, act, *c);  // empty where oneDNN reads the matrix's own codes
      std::lock_guard lock(cache.mu);
      codes = cache.codes[w.data.data()] = c;
    }
  } catch (const dnnl::error& e) {
    if (e.status != dnnl_unimplemented)
      throw Error(ErrorKind::kInternal, std::string("oneDNN matmul failed: ") + e.what());
    return false;
  }
  thread_local ScratchBuffer scratch_buf;
  const dnnl::engine& eng = onednn_engine();
  dnnl::stream& s = onednn_stream();
  const void* wc = codes->empty() ? w.data.data() : codes->data();
  memory wm(plan->w, eng, const_cast<void*>(wc));
  memory xm(plan->x, eng, const_cast<void*>(x_used));
  memory ym(plan->y, eng, y);
  memory scratch(plan->scratch, eng, scratch_buf.get<std::byte>(plan->scratch.get_size()));
  try {
    plan->mm.execute(s, {{DNNL_ARG_SRC, wm},
                         {DNNL_ARG_WEIGHTS, xm},
                         {DNNL_ARG_DST, ym},
                         {DNNL_ARG_SCRATCHPAD, scratch}});
    s.wait();
  } catch (const dnnl::error& e) {
    throw Error(ErrorKind::kInternal, std::string("oneDNN matmul failed: ") + e.what());
  }
  return true;
}

namespace {

// Whether the problem is a plain GEMM on NCHW (see DnnlPlan::gemm).
bool is_pointwise(const Geom& gm) {
  const Conv2dParams& p = *gm.p;
  return gm.kh == 1 && gm.kw == 1 && gm.groups == 1 && p.stride_h == 1 && p.stride_w == 1 &&
         p.pad_top == 0 && p.pad_left == 0 && p.pad_bottom == 0 && p.pad_right == 0;
}

// The matmul plan of a pointwise convolution; ok = false where oneDNN has only its reference.
// The post-ops of a fused plan: the per-channel scale (scaled plans), the bias (as a binary add
// where `bias_op`; a convolution's own bias argument otherwise), the activation. per_oc: the
// shape of a per-channel operand that broadcasts over Y.
dnnl::post_ops fused_post_ops(DnnlPlan& plan, const memory::desc& per_oc, bool has_bias,
                              bool bias_op, const Conv2dParams& p) {
  dnnl::post_ops ops;
  if (plan.scaled) {
    plan.scale = per_oc;
    ops.append_binary(dnnl::algorithm::binary_mul, per_oc);
  }
  if (has_bias && bias_op) {
    plan.bias = per_oc;
    ops.append_binary(dnnl::algorithm::binary_add, per_oc);
  }
  plan.activation_fused = !plan.scaled || (!p.post_affine && (p.activation == Activation::kRelu ||
                                                              p.activation == Activation::kClip ||
                                                              p.activation == Activation::kNone));
  if (!plan.activation_fused) return ops;
  const dnnl::post_ops a = activation_post_ops(p);
  for (int i = 0; i < a.len(); ++i) {
    float scale, alpha, beta;
    dnnl::algorithm alg;
    a.get_params_eltwise(i, scale, alg, alpha, beta);
    ops.append_eltwise(scale, alg, alpha, beta);
  }
  // Float outputs only (int8 keeps the two roundings of apply_activation in our epilogue): one
  // a·y + b, perhaps with one rounding, within an ulp of the Mul and Add it stands for. (Two
  // eltwise_linear post-ops in a row, a·y + 0 then y + b, came out wrong in oneDNN 2.6 here: the
  // second one ran with the first one's constants.)
  if (p.post_affine)
    ops.append_eltwise(1.0f, dnnl::algorithm::eltwise_linear, p.post_scale, p.post_shift);
  return ops;
}

// Whether a scaled plan may use this implementation: the AVX-512 ones (AMX, VNNI) apply the
// per-channel binary post-ops exactly; oneDNN 2.6's AVX2 int8 convolution wrote zeros for some
// channels here, and the s32 path serves it instead.
bool scaled_impl_ok(const std::string& impl) { return impl.find("avx512") != std::string::npos; }

// W's bf16 codes [OC, C] with the bias as kBiasColumns more columns (DnnlPlan::bias_in_k): b
// split into three bf16 parts, each the rounding of what the ones before left (exact
// subtractions), then a zero. Empty where b is not finite (inf - inf would be a NaN part).
constexpr int64_t kBiasColumns = 4;
std::vector<std::byte> bias_in_k_weights(const ConvWeights& w, const float* bias) {
  std::vector<std::byte> plain;
  const auto* wc = static_cast<const uint16_t*>(dnnl_weight_codes(w, dt::bf16, plain));
  const int64_t oc = w.matrix.n, c = w.matrix.k, k = c + kBiasColumns;
  std::vector<std::byte> out(static_cast<size_t>(oc * k) * sizeof(uint16_t));
  auto* o = reinterpret_cast<uint16_t*>(out.data());
  for (int64_t r = 0; r < oc; ++r) {
    if (!std::isfinite(bias[r])) return {};
    std::memcpy(o + r * k, wc + r * c, static_cast<size_t>(c) * sizeof(uint16_t));
    float rest = bias[r];
    for (int64_t j = 0; j < 3; ++j) {
      const uint32_t code = ref::encode_float(Format::kBf16, rest);
      const float part = ref::decode_float(Format::kBf16, code);
      if (!std::isfinite(part)) return {};  // |b| rounds up past bf16's largest
      o[r * k + c + j] = static_cast<uint16_t>(code);
      rest -= part;
    }
    o[r * k + c + 3] = 0;
  }
  return out;
}

// `scaled`: an int8 plan with float outputs (DnnlPlan::scaled; out must be f32).
DnnlPlan make_gemm_plan(const Geom& gm, const ConvWeights& w, dt act, dt out, const float* bias,
                        bool scaled) {
  const bool has_bias = bias != nullptr;
  // Tries: bias and activation fused (bias as a per-row binary add, which oneDNN 2.6's brgemm
  // matmul accepts where a [OC, 1] bias argument sends it to its reference), then bf16 with the
  // bias in K (DnnlPlan::bias_in_k), then neither.
  enum class Try { kBinaryBias, kBiasInK, kUnfused };
  const bool fusable = scaled || fuse_epilogue(w.matrix.format, out, *gm.p);
  for (const Try t : {Try::kBinaryBias, Try::kBiasInK, Try::kUnfused}) {
    const bool fuse = t != Try::kUnfused;
    if (scaled && !fuse) break;
    if (fuse && !fusable) continue;
    if (t == Try::kBiasInK && (scaled || !has_bias || act != dt::bf16)) continue;
    DnnlPlan plan;
    try {
      const int64_t k = gm.c + (t == Try::kBiasInK ? kBiasColumns : 0);
      plan.mm_w = memory::desc({gm.oc, k}, act, tag::ab);
      plan.mm_x = memory::desc({k, gm.pixels}, act, tag::ab);
      plan.mm_y = memory::desc({gm.oc, gm.pixels}, out, tag::ab);
      plan.fused = fuse;
      plan.scaled = scaled;
      dnnl::primitive_attr attr;
      attr.set_scratchpad_mode(dnnl::scratchpad_mode::user);
      if (fuse)
        attr.set_post_ops(fused_post_ops(plan, memory::desc({gm.oc, 1}, dt::f32, tag::ab),
                                         has_bias && t != Try::kBiasInK, true, *gm.p));
      const dnnl::matmul::primitive_desc pd(dnnl::matmul::desc(plan.mm_w, plan.mm_x, plan.mm_y),
                                            attr, onednn_engine());
      const std::string impl = pd.impl_info_str();
      if (impl.rfind("ref", 0) == 0 || impl.find("gemm") != std::string::npos) continue;
      if (scaled && !scaled_impl_ok(impl)) break;
      plan.scratch = pd.scratchpad_desc();
      if (t == Try::kBiasInK) {
        plan.w_used = bias_in_k_weights(w, bias);
        if (plan.w_used.empty()) continue;
        plan.w_codes = plan.w_used.data();
        plan.bias_in_k.assign(bias, bias + gm.oc);
      } else {
        plan.w_codes = dnnl_weight_codes(w, act, plan.w_used);
      }
      plan.mm = dnnl::matmul(pd);
      plan.gemm = plan.ok = true;
      return plan;
    } catch (const dnnl::error& e) {
      if (e.status != dnnl_unimplemented) throw;
    }
  }
  return DnnlPlan{};
}

DnnlPlan make_plan(const Geom& gm, const ConvWeights& w, dt act, dt out, const float* bias,
                   bool scaled, bool first_any = false) {
  const bool has_bias = bias != nullptr;
  if (is_pointwise(gm)) {
    DnnlPlan plan = make_gemm_plan(gm, w, act, out, bias, scaled);
    if (plan.ok) return plan;
  }
  DnnlPlan plan;
  plan.scaled = scaled;
  const Conv2dParams& p = *gm.p;
  const memory::dims xd{gm.n, gm.c, gm.h, gm.w}, yd{gm.n, gm.oc, gm.oh, gm.ow};
  const memory::dims wd = gm.groups == 1 ? memory::dims{gm.oc, gm.icg, gm.kh, gm.kw}
                                         : memory::dims{gm.groups, gm.ocg, gm.icg, gm.kh, gm.kw};
  try {
    // A first layer (few input channels) reads NCHW directly: oneDNN's blocked layout would pad
    // the channels to 16, and its jit kernel takes plain NCHW input (measured 1.0 vs 1.5 ms for
    // 3 -> 16 3x3 s2 at 640x640, one thread).
    const tag src_tag = gm.c <= 4 && act == dt::f32 && !first_any ? tag::nchw : tag::any;
    plan.fused = scaled || fuse_epilogue(w.matrix.format, out, p);
    // A bias argument is added to the sums before any scaling: scaled plans add it after.
    if (plan.fused && has_bias && !scaled) plan.bias = memory::desc({gm.oc}, dt::f32, tag::x);
    const memory::desc sd(xd, act, src_tag), wdd(wd, act, tag::any), ydd(yd, out, tag::any);
    const memory::dims strides{p.stride_h, p.stride_w}, dil{p.dilation_h - 1, p.dilation_w - 1},
        pl{p.pad_top, p.pad_left}, pr{p.pad_bottom, p.pad_right};
    const auto kind = dnnl::prop_kind::forward_inference;
    const auto alg = dnnl::algorithm::convolution_direct;
    const dnnl::convolution_forward::desc d =
        plan.fused && has_bias && !scaled
            ? dnnl::convolution_forward::desc(kind, alg, sd, wdd, plan.bias, ydd, strides, dil, pl,
                                              pr)
            : dnnl::convolution_forward::desc(kind, alg, sd, wdd, ydd, strides, dil, pl, pr);
    dnnl::primitive_attr attr;
    attr.set_scratchpad_mode(dnnl::scratchpad_mode::user);  // our buffer: no global state
    if (plan.fused)
      attr.set_post_ops(fused_post_ops(plan, memory::desc({1, gm.oc, 1, 1}, dt::f32, tag::abcd),
                                       has_bias, scaled, p));
    const dnnl::convolution_forward::primitive_desc pd(d, attr, onednn_engine());
    // A reference implementation is slower than ours.
    if (scaled && !scaled_impl_ok(pd.impl_info_str())) return DnnlPlan{};
    if (std::string(pd.impl_info_str()).rfind("ref", 0) == 0) {
      if (src_tag == tag::nchw) return make_plan(gm, w, act, out, bias, scaled, true);
      return plan;
    }
    plan.src_user = memory::desc(xd, act, tag::nchw);
    plan.dst_user = memory::desc(yd, out, tag::nchw);
    plan.src = pd.src_desc();
    plan.dst = pd.dst_desc();
    plan.scratch = pd.scratchpad_desc();
    if (plan.src != plan.src_user) {
      if (act == dt::bf16) {
        plan.src_user = memory::desc(xd, dt::f32, tag::nchw);
        plan.src_from_f32 = true;
      }
      plan.src_reorder = dnnl::reorder(
          dnnl::reorder::primitive_desc(onednn_engine(), plan.src_user, onednn_engine(), plan.src));
    }
    if (plan.dst != plan.dst_user) {
      plan.dst_reorder = dnnl::reorder(
          dnnl::reorder::primitive_desc(onednn_engine(), plan.dst, onednn_engine(), plan.dst_user));
      plan.dst_nhwc =
          out == dt::f32 && gm.oc % 16 == 0 && plan.dst == memory::desc(yd, dt::f32, tag::nhwc);
    }
    // W: our [OC, K] rows are oneDNN's plain oihw / goihw, decoded to f32 (exact) where
    // oneDNN runs f32 for a narrower format, fp8 widened to bf16 (exact) where it runs bf16.
    std::vector<std::byte> keep;
    const void* codes = dnnl_weight_codes(w, act, keep);
    memory plain({wd, act, gm.groups == 1 ? tag::oihw : tag::goihw}, onednn_engine(),
                 const_cast<void*>(codes));
    plan.wei = memory(pd.weights_desc(), onednn_engine());
    dnnl::reorder(plain, plan.wei).execute(onednn_stream(), plain, plan.wei);
    onednn_stream().wait();
    plan.conv = dnnl::convolution_forward(pd);
    plan.ok = true;
    return plan;
  } catch (const dnnl::error& e) {
    if (e.status != dnnl_unimplemented) throw;
    if (!first_any && gm.c <= 4 && act == dt::f32)
      return make_plan(gm, w, act, out, bias, scaled, true);
  }
  return DnnlPlan{};
}

// X's int8 codes for the int formats (one scale sx over all of X, conv.h), made on first use:
// oneDNN's int8 convolution takes them straight in its NHWC layout instead (quantize_int8_nhwc),
// and then the NCHW codes are never made.
struct XCodes {
  const float* x = nullptr;
  size_t count = 0;
  int threads = 1;
  float sx = 1.0f;
  int8_t* codes = nullptr;
  ScratchBuffer* buf = nullptr;
  bool known = false;  // sx already made from max |X| (ConvHints::x_amax): the codes only
  const int8_t* get() {
    if (!codes) {
      codes = buf->get<int8_t>(count);
      if (known)
        quantize_x_int8_scaled(x, count, codes, threads, sx);
      else
        sx = quantize_x_int8(x, count, codes, threads, "conv2d: inputs");
    }
    return codes;
  }
};

bool conv_dnnl_impl(const Geom& gm, const float* x, XCodes& xc, const ConvWeights& w,
                    const float* bias, float* y, int threads) {
  const float sx = xc.sx;
  const Format f = w.matrix.format;
  auto types = dnnl_types(f);
  if (!types) return false;
  if (!weights_finite(w)) return false;
  // bf16 with at most 4 input channels (a first layer, K = C·KH·KW of a few dozen): the bf16
  // dot products have little to pair up and oneDNN's bf16 kernels ran at half its f32 speed
  // (1x3x640x640 -> 16, 3x3 s2: 1.08 against 0.61 ms). So f32 on the bf16-rounded X and the
  // (exactly) widened bf16 W, as for fp16: the same products, summed in fp32 either way.
  if (f == Format::kBf16 && gm.c <= 4 && types->first == dt::bf16 &&
      onednn_has(dnnl::cpu_isa::avx2))
    types = std::pair{dt::f32, dt::f32};
  const auto [act, s8_out] = *types;
  // s8 · s8 runs as (x + 128) · w - 128 · Σw on VNNI: exact in int32 while K · 255 · 127 is.
  if (act == dt::s8 && gm.k > 65536) return false;
  const OmpThreads omp_scope(threads);
  const Conv2dParams& p = *gm.p;
  const PlanKey key{gm.n,
                    gm.h,
                    gm.w,
                    p.stride_h,
                    p.stride_w,
                    p.pad_top,
                    p.pad_left,
                    p.pad_bottom,
                    p.pad_right,
                    p.dilation_h,
                    p.dilation_w,
                    p.groups,
                    threads,
                    gm.c,
                    bias != nullptr,
                    static_cast<int64_t>(p.activation),
                    float_pair_key(p.clip_min, p.clip_max),
                    p.post_affine ? float_pair_key(p.post_scale, p.post_shift) : -1};
  ConvState& st = state(w);
  std::shared_ptr<const DnnlPlan> plan;
  {
    std::lock_guard lock(st.mu);
    if (auto it = st.plans.find(key); it != st.plans.end()) plan = it->second;
  }
  // A plan with the bias in W serves only that bias (another one with the same weights: anew).
  if (plan && !plan->bias_in_k.empty() &&
      std::memcmp(plan->bias_in_k.data(), bias, plan->bias_in_k.size() * sizeof(float)) != 0)
    plan.reset();
  if (!plan) {
    // int8: float outputs with the epilogue in oneDNN's post-ops where it has them, else the
    // s32 sums and our epilogue.
    DnnlPlan made;
    if (act == dt::s8) made = make_plan(gm, w, act, dt::f32, bias, true);  // slow: unlocked
    if (!made.ok) made = make_plan(gm, w, act, s8_out, bias, false);
    plan = std::make_shared<const DnnlPlan>(std::move(made));
    std::lock_guard lock(st.mu);
    if (st.plans.size() >= 64) st.plans.clear();  // bounded: input sizes can vary
    st.plans.insert_or_assign(key, plan);
  }
  if (!plan->ok) return false;
  const dt out = plan->scaled ? dt::f32 : s8_out;

  // X as the format uses it: int8 codes, bf16 codes, or the rounded values as f32.
  thread_local ScratchBuffer x16, xr, src_buf, dst_buf, acc_buf, scratch_buf;
  const auto count = static_cast<size_t>(gm.n * gm.c * gm.h * gm.w);
  const Format x_format = is_fp8(f) ? Format::kBf16 : f;
  const void* x_used = x;
  // int8 into a blocked NHWC src: quantized straight into it (no NCHW codes, no reorder).
  bool src_ready = false;
  if (act == dt::s8 && plan->src_reorder && !plan->gemm &&
      plan->src == memory::desc({gm.n, gm.c, gm.h, gm.w}, dt::s8, tag::nhwc))
    src_ready = quantize_int8_nhwc(x, gm.n, gm.c, gm.h * gm.w, sx,
                                   src_buf.get<int8_t>(plan->src.get_size()), threads);
  if (act == dt::s8) {
    if (!src_ready) x_used = xc.get();
  } else if (x_format != Format::kFp32 && !plan->src_from_f32) {
    // oneDNN runs f32 (fp16, small bf16 layers): X rounded to the format, as floats, in one
    // pass; bf16: X's codes.
    // Per image: its values, then (bias in K) rows of bf16 ones.
    const auto img = static_cast<size_t>(gm.c * gm.h * gm.w);
    const size_t ones = plan->bias_in_k.empty() ? 0 : kBiasColumns * static_cast<size_t>(gm.pixels);
    const size_t img_codes = img + ones;
    uint16_t* codes =
        act == dt::f32 ? nullptr : x16.get<uint16_t>(static_cast<size_t>(gm.n) * img_codes);
    float* rounded = act == dt::f32 ? xr.get<float>(count) : nullptr;
    // Memory-bound passes: on the OpenMP threads, in chunks of 64 Ki values.
    constexpr int64_t kChunk = int64_t{1} << 16;
    const auto per_img = static_cast<int64_t>((img + kChunk - 1) / kChunk);
    const int64_t chunks = gm.n * per_img;
#pragma omp parallel for num_threads(threads) schedule(static) if (chunks > 1)
    for (int64_t c = 0; c < chunks; ++c) {
      const auto i = static_cast<size_t>(c / per_img);
      const auto b = static_cast<size_t>(c % per_img * kChunk);
      const size_t len = std::min(img - b, static_cast<size_t>(kChunk));
      if (rounded)
        round_float_array(x_format, x + i * img + b, rounded + i * img + b, len);
      else
        encode_float_array(x_format, x + i * img + b, codes + i * img_codes + b, len);
    }
    for (int64_t i = 0; ones && i < gm.n; ++i)
      std::fill_n(codes + static_cast<size_t>(i) * img_codes + img, ones, uint16_t{0x3F80});  // 1
    x_used = rounded ? static_cast<const void*>(rounded) : codes;
  }
  const dnnl::engine& eng = onednn_engine();
  dnnl::stream& s = onednn_stream();
  const QuantParams& qp = w.matrix.data.quant();
  // oneDNN's result is Y itself (fused epilogue, or none needed): no pass of ours after it.
  const float sw = is_fp8(f) ? qp.scales.at(0) : 1.0f;
  const bool identity = (plan->fused && plan->activation_fused) ||
                        (out == dt::f32 && sw == 1.0f && !bias &&
                         p.activation == Activation::kNone && !p.post_affine);
  thread_local std::vector<float> scales;  // scaled plans: sx · sw[oc]
  if (plan->scaled) {
    scales.resize(static_cast<size_t>(gm.oc));
    for (size_t oc = 0; oc < scales.size(); ++oc) scales[oc] = sx * qp.scales[oc];
  }
  // The fused epilogue's operands: post-op 0 the scales, then the bias as a binary add
  // (scaled plans and matmuls) or the convolution's bias argument.
  const auto add_epilogue_args = [&](std::unordered_map<int, memory>& args, bool bias_op) {
    if (!plan->fused) return;
    int post_op = 0;
    if (plan->scaled)
      args.emplace(DNNL_ARG_ATTR_MULTIPLE_POST_OP(post_op++) | DNNL_ARG_SRC_1,
                   memory(plan->scale, eng, scales.data()));
    if (!bias || !plan->bias_in_k.empty()) return;  // none, or in W (bias_in_k)
    memory b(plan->bias, eng, const_cast<float*>(bias));
    if (bias_op || plan->scaled)
      args.emplace(DNNL_ARG_ATTR_MULTIPLE_POST_OP(post_op) | DNNL_ARG_SRC_1, b);
    else
      args.emplace(DNNL_ARG_BIAS, b);
  };
  const auto ycount = static_cast<size_t>(gm.n * gm.oc * gm.pixels);
  void* user_out = out == dt::f32 ? static_cast<void*>(y) : acc_buf.get<int32_t>(ycount);
  if (plan->gemm) {
    memory wm(plan->mm_w, eng, const_cast<void*>(plan->w_codes));
    memory scratch(plan->scratch, eng, scratch_buf.get<std::byte>(plan->scratch.get_size()));
    const size_t x_img = plan->mm_x.get_size(), y_img = plan->mm_y.get_size();
    for (int64_t n = 0; n < gm.n; ++n) {
      memory xm(plan->mm_x, eng, static_cast<std::byte*>(const_cast<void*>(x_used)) + n * x_img);
      memory ym(plan->mm_y, eng, static_cast<std::byte*>(user_out) + n * y_img);
      std::unordered_map<int, memory> args{{DNNL_ARG_SRC, wm},
                                           {DNNL_ARG_WEIGHTS, xm},
                                           {DNNL_ARG_DST, ym},
                                           {DNNL_ARG_SCRATCHPAD, scratch}};
      add_epilogue_args(args, true);
      plan->mm.execute(s, args);
    }
    s.wait();
  } else {
    memory src(plan->src_user, eng, const_cast<void*>(x_used));
    if (src_ready) {
      src = memory(plan->src, eng, src_buf.get<std::byte>(plan->src.get_size()));
    } else if (plan->src_reorder) {
      memory blocked(plan->src, eng, src_buf.get<std::byte>(plan->src.get_size()));
      plan->src_reorder->execute(s, src, blocked);
      src = blocked;
    }
    // The NCHW result: f32 straight into y, s32 into a buffer for the epilogue.
    memory dst_user(plan->dst_user, eng, user_out);
    memory dst = plan->dst_reorder
                     ? memory(plan->dst, eng, dst_buf.get<std::byte>(plan->dst.get_size()))
                     : dst_user;
    memory scratch(plan->scratch, eng, scratch_buf.get<std::byte>(plan->scratch.get_size()));
    std::unordered_map<int, memory> args{{DNNL_ARG_SRC, src},
                                         {DNNL_ARG_WEIGHTS, plan->wei},
                                         {DNNL_ARG_DST, dst},
                                         {DNNL_ARG_SCRATCHPAD, scratch}};
    add_epilogue_args(args, false);
    plan->conv.execute(s, args);
    bool transposed = false;
    if (plan->dst_nhwc) {
      s.wait();
      // With no epilogue after it (identity), max |Y| comes with the transpose.
      transposed = nhwc_to_nchw_f32(static_cast<const float*>(dst.get_data_handle()), gm.n, gm.oc,
                                    gm.pixels, static_cast<float*>(user_out), threads,
                                    identity ? take_amax(gm) : nullptr);
    }
    if (plan->dst_reorder && !transposed) plan->dst_reorder->execute(s, dst, dst_user);
    s.wait();
  }

  // Epilogue, on oneDNN's OpenMP threads (the pool's would compete with them while they spin).
  const auto* acc = static_cast<const int32_t*>(user_out);
  const int64_t planes = identity ? 0 : gm.n * gm.oc;
  // Where the epilogue runs, max |Y| for the next layer's int8 scale comes with it (the plane is
  // still in cache).
  std::atomic<uint32_t>* y_amax = planes > 0 ? take_amax(gm) : nullptr;
  const bool s32_out = out == dt::s32;  // (OpenMP regions may not capture structured bindings)
  const bool only_activation = plan->fused;
#pragma omp parallel for num_threads(threads) schedule(static) if (planes * gm.pixels > 65536)
  for (int64_t pl = 0; pl < planes; ++pl) {
    const int64_t oc = pl % gm.oc;
    const float b = bias ? bias[oc] : 0.0f;
    float* yp = y + pl * gm.pixels;
    if (only_activation) {
      // Scaled and biased by oneDNN.
    } else if (s32_out) {
      const float s8 = sx * qp.scales[static_cast<size_t>(oc)];
      for (int64_t i = 0; i < gm.pixels; ++i)
        yp[i] = static_cast<float>(acc[pl * gm.pixels + i]) * s8 + b;
    } else {
      for (int64_t i = 0; i < gm.pixels; ++i) yp[i] = yp[i] * sw + b;
    }
    apply_activation_n(yp, gm.pixels, p);
    if (y_amax)
      vnni::atomic_max(y_amax, std::bit_cast<uint32_t>(amax(yp, static_cast<size_t>(gm.pixels))));
  }
  return true;
}

// Runs oneDNN's convolution; false if it has no implementation for the problem.
bool conv_dnnl(const Geom& gm, const float* x, XCodes& xc, const ConvWeights& w, const float* bias,
               float* y, int threads) {
  try {
    return conv_dnnl_impl(gm, x, xc, w, bias, y, threads);
  } catch (const dnnl::error& e) {
    throw Error(ErrorKind::kInternal, std::string("conv2d: oneDNN failed: ") + e.what());
  }
}

// --- im2col ----------------------------------------------------------------------------------

// Rows [r0, r1) of the patch matrix of one image (img: [C, H, W]) and group g into out.
template <class T>
void im2col(const Geom& gm, const T* img, int64_t g, int64_t r0, int64_t r1, T* out) {
  const Conv2dParams& p = *gm.p;
  for (int64_t r = r0; r < r1; ++r) {
    const int64_t ih0 = (r / gm.ow) * p.stride_h - p.pad_top;
    const int64_t iw0 = (r % gm.ow) * p.stride_w - p.pad_left;
    T* dst = out + (r - r0) * gm.k;
    for (int64_t icl = 0; icl < gm.icg; ++icl) {
      const T* plane = img + (g * gm.icg + icl) * gm.h * gm.w;
      for (int64_t kh = 0; kh < gm.kh; ++kh, dst += gm.kw) {
        const int64_t ih = ih0 + kh * p.dilation_h;
        if (ih < 0 || ih >= gm.h) {
          std::fill_n(dst, gm.kw, T{0});
          continue;
        }
        const T* row = plane + ih * gm.w;
        if (p.dilation_w == 1 && iw0 >= 0 && iw0 + gm.kw <= gm.w) {
          std::copy_n(row + iw0, gm.kw, dst);  // the common interior case
          continue;
        }
        for (int64_t kw = 0; kw < gm.kw; ++kw) {
          const int64_t iw = iw0 + kw * p.dilation_w;
          dst[kw] = iw >= 0 && iw < gm.w ? row[iw] : T{0};
        }
      }
    }
  }
}

// Float formats: fp32 patches and dynaprec::matmul. Where the matmul layer has only its
// GEMV-per-row kernel (which splits each row's N outputs across threads: one pool round trip
// per pixel), blocks of 64 pixels run on the pool with one thread each instead; that kernel
// keeps no prepared state, so concurrent calls on one MatmulWeights are safe. A real GEMM gets
// large blocks and all threads.
void conv_im2col_float(const Geom& gm, const float* x, const ConvWeights& w, const float* bias,
                       float* y, int threads) {
  const MatmulKernel& kern = matmul_select(w.matrix.format, gm.pixels, gm.ocg, gm.k);
  const bool rows = kern.name == "gemm__gemv_rows";
  const int64_t block = rows ? 64 : std::max<int64_t>(1, (int64_t{1} << 20) / gm.k);
  const int64_t per_plane = (gm.pixels + block - 1) / block;
  const auto tasks = static_cast<size_t>(gm.n * gm.groups * per_plane);
  run_tasks(tasks, rows ? threads : 1, [&](size_t t) {
    const int64_t plane = static_cast<int64_t>(t) / per_plane;
    const int64_t n = plane / gm.groups, g = plane % gm.groups;
    const int64_t r0 = static_cast<int64_t>(t) % per_plane * block;
    const int64_t r1 = std::min(gm.pixels, r0 + block);
    thread_local ScratchBuffer patches, out;
    float* pm = patches.get<float>(static_cast<size_t>((r1 - r0) * gm.k));
    float* om = out.get<float>(static_cast<size_t>((r1 - r0) * gm.ocg));
    im2col(gm, x + n * gm.c * gm.h * gm.w, g, r0, r1, pm);
    matmul(pm, r1 - r0, group_weights(w, gm.groups, g), bias ? bias + g * gm.ocg : nullptr, om,
           rows ? 1 : threads);
    for (int64_t j = 0; j < gm.ocg; ++j) {  // [pixels, OCg] -> NCHW, with the activation
      float* dst = y + (n * gm.oc + g * gm.ocg + j) * gm.pixels;
      for (int64_t r = r0; r < r1; ++r) dst[r] = om[(r - r0) * gm.ocg + j];
      apply_activation_n(dst + r0, r1 - r0, *gm.p);
    }
  });
}

// int8 / int4: int8 patches from the codes of X, the GEMV row kernels per pixel.
void conv_im2col_int(const Geom& gm, const int8_t* xq, float sx, const ConvWeights& w,
                     const float* bias, float* y, int threads) {
  const CpuFeatures& cf = cpu_features();
  const bool vnni = cf.avx512_vnni && cf.avx512bw && cf.f16c;  // as matmul_dispatch.cc
  const bool int8 = w.matrix.format == Format::kInt8;
  const QuantParams& qp = w.matrix.data.quant();
  const auto k = static_cast<size_t>(gm.k), ocg = static_cast<size_t>(gm.ocg);
  const size_t row_bytes = (k + 1) / 2, scale_groups = (k + 31) / 32;
  // Tasks: (image, group, block of at most 64 pixels, so that the patches stay in L2).
  const int64_t block = std::min<int64_t>(64, gm.pixels);
  const int64_t per_plane = (gm.pixels + block - 1) / block;
  run_tasks(static_cast<size_t>(gm.n * gm.groups * per_plane), threads, [&](size_t t) {
    const int64_t plane = static_cast<int64_t>(t) / per_plane;
    const int64_t n = plane / gm.groups, g = plane % gm.groups;
    const int64_t r0 = static_cast<int64_t>(t) % per_plane * block;
    const int64_t r1 = std::min(gm.pixels, r0 + block);
    thread_local ScratchBuffer patches, acc, part;
    int8_t* pm = patches.get<int8_t>(static_cast<size_t>(r1 - r0) * k);
    int32_t* am = acc.get<int32_t>(ocg);
    float* fm = part.get<float>(ocg);
    im2col(gm, xq + n * gm.c * gm.h * gm.w, g, r0, r1, pm);
    const size_t oc0 = static_cast<size_t>(g) * ocg;
    float* yg = y + (n * gm.oc + static_cast<int64_t>(oc0)) * gm.pixels;
    for (int64_t r = r0; r < r1; ++r) {
      const int8_t* row = pm + static_cast<size_t>(r - r0) * k;
      if (int8) {
        const int8_t* wg = w.matrix.data.data_as<int8_t>() + oc0 * k;
        if (vnni)
          gemv_int8_rows_vnni(row, wg, k, 0, ocg, am);
        else
          gemv_int8_rows(row, wg, k, 0, ocg, am);
        for (size_t j = 0; j < ocg; ++j) {
          const float v =
              static_cast<float>(am[j]) * (sx * qp.scales[oc0 + j]) + (bias ? bias[oc0 + j] : 0.0f);
          yg[static_cast<int64_t>(j) * gm.pixels + r] = apply_activation(v, *gm.p);
        }
        continue;
      }
      const uint8_t* wg = w.matrix.data.data_as<uint8_t>() + oc0 * row_bytes;
      const uint16_t* sg = qp.scales_f16.data() + oc0 * scale_groups;
      if (vnni)
        gemv_int4_rows_vnni(gemv_int4_prepare_vnni(row, k), row, wg, sg, k, 0, ocg, fm);
      else
        gemv_int4_rows(row, wg, sg, k, 0, ocg, fm);
      for (size_t j = 0; j < ocg; ++j) {
        const float v = fm[j] * sx + (bias ? bias[oc0 + j] : 0.0f);
        yg[static_cast<int64_t>(j) * gm.pixels + r] = apply_activation(v, *gm.p);
      }
    }
  });
}

// --- direct ----------------------------------------------------------------------------------

// acc[oh - oh0][ow] += X[ic(q), ih, iw] · w[q] for taps q in [q0, q1) and output rows
// [oh0, oh1) of one output channel, skipping taps outside the input.
template <class A, class X, class W>
[[gnu::always_inline]] inline void accumulate_taps(const Geom& gm, const X* img, int64_t g,
                                                   const W* w, int64_t q0, int64_t q1, int64_t oh0,
                                                   int64_t oh1, A* acc) {
  const Conv2dParams& p = *gm.p;
  const int64_t taps = gm.kh * gm.kw, sw = p.stride_w;
  for (int64_t q = q0; q < q1; ++q) {
    const int64_t kh = q % taps / gm.kw, kw = q % gm.kw;
    const A wv = static_cast<A>(w[q]);
    const X* plane = img + (g * gm.icg + q / taps) * gm.h * gm.w;
    // Output columns whose input column iw = ow·sw + off lies in [0, W).
    const int64_t off = kw * p.dilation_w - p.pad_left;
    const int64_t lo = off >= 0 ? 0 : (-off + sw - 1) / sw;
    const int64_t hi = off < gm.w ? std::min(gm.ow, (gm.w - 1 - off) / sw + 1) : 0;
    for (int64_t oh = oh0; oh < oh1 && lo < hi; ++oh) {
      const int64_t ih = oh * p.stride_h - p.pad_top + kh * p.dilation_h;
      if (ih < 0 || ih >= gm.h) continue;
      const X* xr = plane + ih * gm.w;
      A* ar = acc + (oh - oh0) * gm.ow;
      if (sw == 1) {
        for (int64_t ow = lo; ow < hi; ++ow) ar[ow] += static_cast<A>(xr[ow + off]) * wv;
      } else {
        for (int64_t ow = lo; ow < hi; ++ow) ar[ow] += static_cast<A>(xr[ow * sw + off]) * wv;
      }
    }
  }
}

// accumulate_taps also compiled for AVX2, where the compiler vectorizes the pixel loop 8 wide
// instead of SSE2's 4 (~1.5x for float). An AVX-512 build measured no faster (short pixel
// rows leave long remainders) and int8 slower. Chosen by cpu_features(), so DYNAPREC_ISA caps
// it too; -ffp-contract=off keeps the sums unfused on both, so results do not depend on it.
template <class A, class X, class W>
[[gnu::target("avx2")]] void taps_avx2(const Geom& gm, const X* img, int64_t g, const W* w,
                                       int64_t q0, int64_t q1, int64_t oh0, int64_t oh1, A* acc) {
  accumulate_taps(gm, img, g, w, q0, q1, oh0, oh1, acc);
}
template <class A, class X, class W>
void taps(bool avx2, const Geom& gm, const X* img, int64_t g, const W* w, int64_t q0, int64_t q1,
          int64_t oh0, int64_t oh1, A* acc) {
  if (avx2) return taps_avx2(gm, img, g, w, q0, q1, oh0, oh1, acc);
  accumulate_taps(gm, img, g, w, q0, q1, oh0, oh1, acc);
}

// false where the direct path cannot reproduce the reference: a non-finite weight.
bool conv_direct(const Geom& gm, const float* x, const int8_t* xq, float sx, const ConvWeights& w,
                 const float* bias, float* y, int threads) {
  if (!weights_finite(w)) return false;
  const Format f = w.matrix.format;
  const QuantParams& qp = w.matrix.data.quant();
  const auto wn = static_cast<size_t>(gm.oc * gm.k),
             count = static_cast<size_t>(gm.n * gm.c * gm.h * gm.w);
  const int64_t k = gm.k, plane_in = gm.c * gm.h * gm.w, n_groups = (k + 31) / 32;
  // W as used: float formats decoded, int4 unpacked to int8; X rounded for bf16/fp16/fp8.
  const float* wf = nullptr;
  std::vector<float> xr;
  std::vector<int8_t> w4;
  const int8_t* wq = w.matrix.data.data_as<int8_t>();
  if (f == Format::kInt4) {
    w4.resize(wn);
    const auto* wp = w.matrix.data.data_as<uint8_t>();
    const auto row_bytes = static_cast<size_t>((k + 1) / 2), ku = static_cast<size_t>(k);
    for (size_t i = 0; i < wn; ++i) {
      const uint8_t b = wp[i / ku * row_bytes + i % ku / 2];
      w4[i] = static_cast<int8_t>((((i % ku % 2 ? b >> 4 : b) & 0xF) ^ 0x8) - 8);
    }
    wq = w4.data();
  } else if (!is_int(f)) {
    wf = weights_as_floats(w);
    const Format act = is_fp8(f) ? Format::kBf16 : f;
    if (act != Format::kFp32) {
      std::vector<uint16_t> codes(count);
      xr.resize(count);
      encode_float_array(act, x, codes.data(), count);
      decode_float_array(act, codes.data(), xr.data(), count);
      x = xr.data();
    }
  }
  const float sw_tensor = is_fp8(f) ? qp.scales.at(0) : 1.0f;
  const bool avx2 = cpu_features().avx2;
  // Tasks: (image, output channel, block of output rows of about 4096 pixels).
  const int64_t rows_per = std::clamp<int64_t>(4096 / gm.ow, 1, gm.oh);
  const int64_t blocks = (gm.oh + rows_per - 1) / rows_per;
  run_tasks(static_cast<size_t>(gm.n * gm.oc * blocks), threads, [&](size_t t) {
    const int64_t b = static_cast<int64_t>(t) % blocks, noc = static_cast<int64_t>(t) / blocks;
    const int64_t n = noc / gm.oc, oc = noc % gm.oc, g = oc / gm.ocg;
    const int64_t oh0 = b * rows_per, oh1 = std::min(gm.oh, oh0 + rows_per);
    const auto pix = static_cast<size_t>((oh1 - oh0) * gm.ow);
    thread_local ScratchBuffer sum_buf, acc_buf;
    float* sum = sum_buf.get<float>(pix);
    int32_t* acc = acc_buf.get<int32_t>(pix);
    std::fill_n(sum, pix, 0.0f);
    const float bv = bias ? bias[oc] : 0.0f;
    float* dst = y + (n * gm.oc + oc) * gm.pixels + oh0 * gm.ow;
    if (!is_int(f)) {
      taps(avx2, gm, x + n * plane_in, g, wf + oc * k, 0, k, oh0, oh1, sum);
      for (size_t i = 0; i < pix; ++i) dst[i] = sum[i] * sw_tensor + bv;
      apply_activation_n(dst, static_cast<int64_t>(pix), *gm.p);
      return;
    }
    const int8_t* img = xq + n * plane_in;
    if (f == Format::kInt8) {
      std::fill_n(acc, pix, 0);
      taps(avx2, gm, img, g, wq + oc * k, 0, k, oh0, oh1, acc);
      const float s = sx * qp.scales[static_cast<size_t>(oc)];
      for (size_t i = 0; i < pix; ++i) dst[i] = static_cast<float>(acc[i]) * s + bv;
      apply_activation_n(dst, static_cast<int64_t>(pix), *gm.p);
      return;
    }
    for (int64_t gi = 0; gi < n_groups; ++gi) {  // int32 per group of 32, then fp32 in order
      std::fill_n(acc, pix, 0);
      taps(avx2, gm, img, g, wq + oc * k, gi * 32, std::min(k, gi * 32 + 32), oh0, oh1, acc);
      const float s = ref::decode_float(Format::kFp16, qp.scales_f16[oc * n_groups + gi]);
      for (size_t i = 0; i < pix; ++i) sum[i] += static_cast<float>(acc[i]) * s;
    }
    for (size_t i = 0; i < pix; ++i) dst[i] = sum[i] * sx + bv;
    apply_activation_n(dst, static_cast<int64_t>(pix), *gm.p);
  });
  return true;
}

bool is_depthwise(const Geom& gm) {
  return gm.icg == 1 && gm.ocg == 1 && gm.groups == gm.c && gm.groups > 1;
}

// A padded plane xp [rows][cols] set to v outside its interior, rows [r0, r1) by columns [c0,
// c0 + len) (which every plane writes with its own values): the padding only, not the whole
// plane (a memset of each layer's planes per thread had shown in the detector's profile).
template <class T>
void fill_plane_border(T* xp, int64_t rows, int64_t cols, int64_t r0, int64_t r1, int64_t c0,
                       int64_t len, T v) {
  if (len <= 0 || r1 <= r0) {
    std::fill_n(xp, rows * cols, v);
    return;
  }
  std::fill_n(xp, r0 * cols, v);
  for (int64_t r = r0; r < r1; ++r) {
    std::fill_n(xp + r * cols, c0, v);
    std::fill_n(xp + r * cols + c0 + len, cols - c0 - len, v);
  }
  std::fill_n(xp + r1 * cols, (rows - r1) * cols, v);
}

// The narrow depthwise kernels' planes (dwconv_vnni.h): per plane, a padded buffer of T (`pad`
// around the interior, written once per thread and geometry; `slack` values readable past the
// last output column's first tap), its interior rows filled by fill(src, src_stride, dst,
// dst_stride, rows, len), then run(xp, cols, channel, y_plane).
template <class T, class Fill, class Run>
void depthwise_planes(const Geom& gm, T pad, int64_t slack, const float* x, float* y, int threads,
                      const Fill& fill, const Run& run) {
  const Conv2dParams& p = *gm.p;
  const int64_t rows = (gm.oh - 1) * p.stride_h + (gm.kh - 1) * p.dilation_h + 1;
  const int64_t cols = ((gm.ow - 1) * p.stride_w + slack + 63) / 64 * 64;
  const int64_t c0 = std::max<int64_t>(0, p.pad_left),
                c1 = std::min<int64_t>(cols, p.pad_left + gm.w);
  const int64_t i0 = c0 - p.pad_left, len = c1 - c0;
  const int64_t r0 = std::max<int64_t>(0, p.pad_top),
                r1 = std::min<int64_t>(rows, p.pad_top + gm.h);
  // (r1 too: the same rows with another input height leave other rows as padding.)
  const std::array<int64_t, 6> layout{rows, cols, r0, r1, c0, len};
  run_tasks(static_cast<size_t>(gm.n * gm.c), threads, [&](size_t t) {
    const auto plane = static_cast<int64_t>(t);
    thread_local ScratchBuffer pad_buf;
    thread_local std::array<int64_t, 6> filled{};
    T* xp = pad_buf.get<T>(static_cast<size_t>(rows * cols));
    if (filled != layout) {
      fill_plane_border(xp, rows, cols, r0, r1, c0, len, pad);
      filled = layout;
    }
    if (len > 0 && r1 > r0)
      fill(x + (plane * gm.h + r0 - p.pad_top) * gm.w + i0, static_cast<size_t>(gm.w),
           xp + r0 * cols + c0, static_cast<size_t>(cols), static_cast<size_t>(r1 - r0),
           static_cast<size_t>(len));
    run(xp, cols, plane % gm.c, y + plane * gm.pixels);
  });
}

// int8 on VNNI: the planes as bytes, code + 128 (the padding 128, code 0).
bool conv_depthwise_int8(const Geom& gm, const float* x, float sx, const ConvWeights& w,
                         const float* bias, float* y, int threads) {
  const Conv2dParams& p = *gm.p;
  const DwInt8Weights* dw = nullptr;
  {
    ConvState& st = state(w);
    std::lock_guard lock(st.mu);
    if (!st.dw_int8)
      st.dw_int8 =
          dw_int8_prepare(static_cast<const int8_t*>(w.matrix.data.data()), gm.c, gm.kh, gm.kw);
    dw = &*st.dw_int8;
  }
  const std::vector<float>& wscale = w.matrix.data.quant().scales;
  std::atomic<uint32_t>* amax = take_amax(gm);
  depthwise_planes<uint8_t>(
      gm, uint8_t{128}, 4 * dw->quads + 64, x, y, threads,
      [&](const float* src, size_t ss, uint8_t* dst, size_t ds, size_t nrows, size_t len) {
        int8_biased_rows(src, ss, dst, ds, nrows, len, sx);
      },
      [&](const uint8_t* xp, int64_t cols, int64_t c, float* yp) {
        DwPlaneInt8 dp;
        dp.xp = xp;
        dp.xp_stride = cols;
        dp.w = dw->w.data() + c * gm.kh * dw->quads;
        dp.comp = dw->comp[static_cast<size_t>(c)];
        dp.kh = gm.kh;
        dp.quads = dw->quads;
        dp.sh = p.stride_h;
        dp.sw = p.stride_w;
        dp.dh = p.dilation_h;
        dp.oh_n = gm.oh;
        dp.ow_n = gm.ow;
        dp.scale = sx * wscale[static_cast<size_t>(c)];
        dp.bias = bias ? bias[c] : 0.0f;
        dp.act = &p;
        dp.y = yp;
        dp.y_amax = amax;
        dw_plane_int8(dp);
      });
  return true;
}

// bf16 on AVX512_BF16: the planes as bf16 codes (X rounded; the padding +0).
bool conv_depthwise_bf16(const Geom& gm, const float* x, const ConvWeights& w, const float* bias,
                         float* y, int threads) {
  const Conv2dParams& p = *gm.p;
  const DwBf16Weights* dw = nullptr;
  {
    ConvState& st = state(w);
    std::lock_guard lock(st.mu);
    if (!st.dw_bf16)
      st.dw_bf16 = dw_bf16_prepare(w.matrix.data.data_as<uint16_t>(), gm.c, gm.kh, gm.kw);
    dw = &*st.dw_bf16;
  }
  std::atomic<uint32_t>* amax = take_amax(gm);
  depthwise_planes<uint16_t>(
      gm, uint16_t{0}, 2 * dw->pairs + 32, x, y, threads,
      [&](const float* src, size_t ss, uint16_t* dst, size_t ds, size_t nrows, size_t len) {
        bf16_encode_rows(src, ss, dst, ds, nrows, len);
      },
      [&](const uint16_t* xp, int64_t cols, int64_t c, float* yp) {
        DwPlaneBf16 dp;
        dp.xp = xp;
        dp.xp_stride = cols;
        dp.w = dw->w.data() + c * gm.kh * dw->pairs;
        dp.kh = gm.kh;
        dp.pairs = dw->pairs;
        dp.sh = p.stride_h;
        dp.sw = p.stride_w;
        dp.dh = p.dilation_h;
        dp.oh_n = gm.oh;
        dp.ow_n = gm.ow;
        dp.bias = bias ? bias[c] : 0.0f;
        dp.act = &p;
        dp.y = yp;
        dp.y_amax = amax;
        dw_plane_bf16(dp);
      });
  return true;
}

// false where this path does not apply: not depthwise, int4, stride along W above 2, sums
// that int8 could not keep exact in fp32 lanes, or a non-finite weight (the reference's 0 · inf
// in the padding is NaN; the direct path skips it and refuses such weights too).
// X enters as floats: int8 needs only its scale sx, each row's codes are made (as floats) while
// the plane is copied.
bool conv_depthwise(const Geom& gm, const float* x, float sx, const ConvWeights& w,
                    const float* bias, float* y, int threads) {
  const Format f = w.matrix.format;
  const Conv2dParams& p = *gm.p;
  if (!is_depthwise(gm) || f == Format::kInt4 || p.stride_w < 1 || p.stride_w > 2 || gm.k > 1040 ||
      !weights_finite(w))
    return false;
  const QuantParams& qp = w.matrix.data.quant();
  if (f == Format::kInt8 && p.dilation_w == 1 && dw_int8_available())
    return conv_depthwise_int8(gm, x, sx, w, bias, y, threads);
  if (f == Format::kBf16 && p.dilation_w == 1 && dw_bf16_available())
    return conv_depthwise_bf16(gm, x, w, bias, y, threads);
  const float* wf = weights_as_floats(w);
  // X as the format uses it (floats: rounded to the activation format row by row while the
  // plane is padded; int8: its codes).
  const Format act = f == Format::kInt8 ? Format::kInt8 : is_fp8(f) ? Format::kBf16 : f;
  const float tensor_scale = is_fp8(f) ? qp.scales.at(0) : 1.0f;
  // The padded plane: the rows and columns the taps reach, plus slack for the last vector.
  const int64_t sh = p.stride_h, sw = p.stride_w, lanes = dw_lanes();
  const int64_t rows = (gm.oh - 1) * sh + (gm.kh - 1) * p.dilation_h + 1;
  const int64_t cols = ((gm.ow + 2 * lanes) * sw + (gm.kw - 1) * p.dilation_w + 1 + 15) / 16 * 16;
  const int64_t c0 = std::max<int64_t>(0, p.pad_left),
                c1 = std::min<int64_t>(cols, p.pad_left + gm.w);
  const int64_t i0 = c0 - p.pad_left, len = c1 - c0;
  // Every plane writes the same interior, the plane's rows that exist, r in [r0, r1) (input
  // rows r - pad_top): the zeros around it are written once per thread and geometry.
  const int64_t r0 = std::max<int64_t>(0, p.pad_top),
                r1 = std::min<int64_t>(rows, p.pad_top + gm.h);
  const std::array<int64_t, 6> layout{rows, cols, r0, r1, c0, len};
  run_tasks(static_cast<size_t>(gm.n * gm.c), threads, [&](size_t t) {
    const auto plane = static_cast<int64_t>(t);
    const int64_t c = plane % gm.c;
    thread_local ScratchBuffer pad_buf;
    thread_local std::array<int64_t, 6> zeroed{};
    float* xp = pad_buf.get<float>(static_cast<size_t>(rows * cols));
    if (zeroed != layout) {
      fill_plane_border(xp, rows, cols, r0, r1, c0, len, 0.0f);
      zeroed = layout;
    }
    if (len > 0 && r1 > r0) {
      float* dst = xp + r0 * cols + c0;
      const float* src = x + (plane * gm.h + r0 - p.pad_top) * gm.w + i0;
      const auto n = static_cast<size_t>(len), nrows = static_cast<size_t>(r1 - r0);
      const auto ss = static_cast<size_t>(gm.w), ds = static_cast<size_t>(cols);
      if (act == Format::kInt8)
        int8_round_rows(src, ss, dst, ds, nrows, n, sx);
      else  // fp32: copied as it is
        round_float_rows(act, src, ss, dst, ds, nrows, n);
    }
    DwPlane dp;
    dp.xp = xp;
    dp.xp_stride = cols;
    dp.w = wf + c * gm.k;
    dp.kh = gm.kh;
    dp.kw = gm.kw;
    dp.sh = sh;
    dp.sw = sw;
    dp.dh = p.dilation_h;
    dp.dw = p.dilation_w;
    dp.oh_n = gm.oh;
    dp.ow_n = gm.ow;
    dp.scale = f == Format::kInt8 ? sx * qp.scales[static_cast<size_t>(c)] : tensor_scale;
    dp.bias = bias ? bias[c] : 0.0f;
    dp.act = &p;
    dp.y = y + plane * gm.pixels;
    dw_plane(dp);
    if (!dw_plane_activates(p)) apply_activation_n(dp.y, gm.pixels, p);
  });
  return true;
}

// int8 pointwise convolutions on AVX-512 VNNI straight from and to NCHW (pwconv_vnni.h).
bool conv_pointwise(const Geom& gm, const float* x, const int8_t* xq, float sx,
                    const ConvWeights& w, const float* bias, float* y, int threads) {
  if (!is_pointwise(gm)) return false;
  ConvState& st = state(w);
  if (w.matrix.format == Format::kBf16) {
    // Fewer than 32 input channels fill less than one K step of the tiles (tdpbf16ps takes 32):
    // oneDNN's convolution is faster there (measured 1x16x320x320 -> 32: 1.21-1.25 against
    // 0.91-0.94 ms; 12 -> 96 and 24 -> 96 at 160x160: 0.58-0.59 against 0.43-0.53 ms).
    if (!pwconv_bf16_available() || gm.c < 32) return false;
    const PwBf16Weights* pw = nullptr;
    {
      std::lock_guard lock(st.mu);
      if (!st.pointwise_bf16)
        st.pointwise_bf16 = pwconv_bf16_prepare(w.matrix.data.data_as<uint16_t>(), gm.oc, gm.c);
      pw = &*st.pointwise_bf16;
    }
    for (int64_t n = 0; n < gm.n; ++n)
      pwconv_bf16(x + n * gm.c * gm.pixels, gm.pixels, *pw, bias, *gm.p, y + n * gm.oc * gm.pixels,
                  threads);
    return true;
  }
  if (w.matrix.format != Format::kInt8 || gm.c > 65536 || pwconv_int8_isa() == PwIsa::kNone)
    return false;
  const PwInt8Weights* pw = nullptr;
  {
    std::lock_guard lock(st.mu);
    if (!st.pointwise)
      st.pointwise =
          pwconv_int8_prepare(static_cast<const int8_t*>(w.matrix.data.data()), gm.oc, gm.c);
    pw = &*st.pointwise;
  }
  const float* wscale = w.matrix.data.quant().scales.data();
  const PwIsa isa = pwconv_int8_isa();
  std::atomic<uint32_t>* amax = isa == PwIsa::kVnni ? take_amax(gm) : nullptr;
  // (xq null: X's floats, quantized as they are packed; VNNI only, see conv2d_with's
  // pointwise_floats.)
  for (int64_t n = 0; n < gm.n; ++n)
    pwconv_int8(xq ? xq + n * gm.c * gm.pixels : nullptr, gm.pixels, *pw, wscale, sx, bias, *gm.p,
                y + n * gm.oc * gm.pixels, threads, isa, amax,
                xq ? nullptr : x + n * gm.c * gm.pixels);
  return true;
}

// Whether conv_amx takes the problem: int8, one group, stride and dilation 1, AMX, and enough
// input channels for its 64-channel steps (a first layer's 3 would be mostly padding).
bool amx_conv_applies(const Geom& gm, Format f) {
  const Conv2dParams& p = *gm.p;
  return f == Format::kInt8 && gm.groups == 1 && p.stride_h == 1 && p.stride_w == 1 &&
         p.dilation_h == 1 && p.dilation_w == 1 && gm.c >= 16 && gm.kh * gm.kw <= 49 &&
         gm.c <= 65536 / (gm.kh * gm.kw) && pwconv_int8_isa() == PwIsa::kAmx;
}

// The same on AVX-512 VNNI where there is no AMX (pwconv_vnni.h conv_int8_vnni).
bool vnni_conv_applies(const Geom& gm, Format f) {
  const Conv2dParams& p = *gm.p;
  return f == Format::kInt8 && gm.groups == 1 && p.stride_h == 1 && p.stride_w == 1 &&
         p.dilation_h == 1 && p.dilation_w == 1 && gm.c >= 16 && gm.kh * gm.kw <= 49 &&
         gm.c <= 65536 / (gm.kh * gm.kw) && pwconv_int8_isa() == PwIsa::kVnni;
}

// xq: X's codes, or null to quantize xf with sx while packing.
bool conv_kxk_vnni(const Geom& gm, const int8_t* xq, const float* xf, float sx,
                   const ConvWeights& w, const float* bias, float* y, int threads) {
  if (!vnni_conv_applies(gm, w.matrix.format)) return false;
  ConvState& st = state(w);
  const ConvInt8VnniWeights* cw = nullptr;
  {
    std::lock_guard lock(st.mu);
    if (!st.kxk_vnni)
      st.kxk_vnni =
          conv_int8_vnni_prepare(w.matrix.data.data_as<int8_t>(), gm.oc, gm.c, gm.kh, gm.kw);
    cw = &*st.kxk_vnni;
  }
  const Conv2dParams& p = *gm.p;
  const int64_t pads[4] = {p.pad_top, p.pad_left, p.pad_bottom, p.pad_right};
  const float* wscale = w.matrix.data.quant().scales.data();
  std::atomic<uint32_t>* amax = take_amax(gm);
  const int64_t image = gm.c * gm.h * gm.w;
  for (int64_t n = 0; n < gm.n; ++n)
    if (xq)
      conv_int8_vnni(xq + n * image, gm.h, gm.w, pads, *cw, wscale, sx, bias, p,
                     y + n * gm.oc * gm.pixels, threads, amax);
    else
      conv_int8_vnni_floats(xf + n * image, gm.h, gm.w, pads, *cw, wscale, sx, bias, p,
                            y + n * gm.oc * gm.pixels, threads, amax);
  return true;
}

// fp32 and bf16 KxK convolutions on AVX-512 without AMX (pwconv_vnni.h conv_float): oneDNN
// 2.6's convolutions ran 96 -> 24 3x3 at 160x160 at 128 (fp32) and 224 (bf16) GFLOP/s here
// (AMD Zen 4; their 16-channel blocks half empty at 24 outputs). Where AMX is, oneDNN's kernels
// stay.
bool float_conv_applies(const Geom& gm, Format f) {
  const Conv2dParams& p = *gm.p;
  return (f == Format::kFp32 || f == Format::kBf16) && gm.groups == 1 && p.stride_h == 1 &&
         p.stride_w == 1 && p.dilation_h == 1 && p.dilation_w == 1 && gm.c >= 16 &&
         gm.kh * gm.kw > 1 && gm.kh * gm.kw <= 49 && conv_float_available(f) &&
         !onednn_has(dnnl::cpu_isa::avx512_core_amx);
}

bool conv_kxk_float(const Geom& gm, const float* x, const ConvWeights& w, const float* bias,
                    float* y, int threads) {
  const Format f = w.matrix.format;
  if (!float_conv_applies(gm, f) || !weights_finite(w)) return false;
  ConvState& st = state(w);
  const ConvFloatWeights* cw = nullptr;
  {
    std::lock_guard lock(st.mu);
    if (!st.kxk_float)
      st.kxk_float = conv_float_prepare(f, w.matrix.data.data(), gm.oc, gm.c, gm.kh, gm.kw);
    cw = &*st.kxk_float;
  }
  const Conv2dParams& p = *gm.p;
  const int64_t pads[4] = {p.pad_top, p.pad_left, p.pad_bottom, p.pad_right};
  std::atomic<uint32_t>* amax = take_amax(gm);
  for (int64_t n = 0; n < gm.n; ++n)
    conv_float(x + n * gm.c * gm.h * gm.w, gm.h, gm.w, pads, *cw, bias, p,
               y + n * gm.oc * gm.pixels, threads, amax);
  return true;
}

// int8 KxK convolutions on AMX straight from and to NCHW (pwconv_vnni.h conv_int8_amx).
bool conv_amx(const Geom& gm, const int8_t* xq, float sx, const ConvWeights& w, const float* bias,
              float* y, int threads) {
  if (!amx_conv_applies(gm, w.matrix.format)) return false;
  ConvState& st = state(w);
  const ConvInt8AmxWeights* cw = nullptr;
  {
    std::lock_guard lock(st.mu);
    if (!st.amx)
      st.amx = conv_int8_amx_prepare(w.matrix.data.data_as<int8_t>(), gm.oc, gm.c, gm.kh, gm.kw);
    cw = &*st.amx;
  }
  const Conv2dParams& p = *gm.p;
  const int64_t pads[4] = {p.pad_top, p.pad_left, p.pad_bottom, p.pad_right};
  const float* wscale = w.matrix.data.quant().scales.data();
  for (int64_t n = 0; n < gm.n; ++n)
    conv_int8_amx(xq + n * gm.c * gm.h * gm.w, gm.h, gm.w, pads, *cw, wscale, sx, bias, p,
                  y + n * gm.oc * gm.pixels, threads);
  return true;
}

}  // namespace

bool conv2d_with(ConvImpl impl, const Tensor& x, const ConvWeights& w, const float* bias,
                 const Conv2dParams& p, Tensor& y, int threads, const ConvHints* hints) {
  if (hints && hints->y_amax) *hints->y_amax = -1.0f;
  const Shape ys = conv2d_output_shape(x.shape(), w, p);
  if (x.dtype() != DType::kF32)
    throw Error(ErrorKind::kInvalidInput, "conv2d: input must be float32");
  if (y.dtype() != DType::kF32 || y.shape() != ys || !y.is_contiguous())
    throw Error(ErrorKind::kInvalidInput,
                "conv2d: output must be a contiguous float32 tensor of shape " + shape_str(ys) +
                    ", got " + std::string(dtype_name(y.dtype())) + " " + shape_str(y.shape()));
  if (x.numel() == 0 || y.numel() == 0) return true;
  cpu_features();  // applies the DYNAPREC_ISA cap before any dispatched kernel runs
  const Tensor xc = x.is_contiguous() ? x : x.clone();
  const int pool = ThreadPool::default_pool().threads();
  const int t = threads > 0 ? std::min(threads, pool) : pool;
  std::atomic<uint32_t> amax{0};
  bool amax_taken = false;
  const bool want_amax = hints && hints->y_amax;
  const Geom gm{x.dim(0),
                x.dim(1),
                x.dim(2),
                x.dim(3),
                ys[1],
                ys[2],
                ys[3],
                w.kh,
                w.kw,
                w.ic_per_group,
                ys[1] / p.groups,
                p.groups,
                w.matrix.k,
                ys[2] * ys[3],
                &p,
                want_amax ? &amax : nullptr,
                want_amax ? &amax_taken : nullptr};
  // max |Y| to the caller where the kernel that ran took it (whichever return below).
  struct AmaxOut {
    const ConvHints* hints;
    const std::atomic<uint32_t>& acc;
    const bool& taken;
    ~AmaxOut() {
      if (hints && hints->y_amax && taken) *hints->y_amax = std::bit_cast<float>(acc.load());
    }
  } amax_out{hints, amax, amax_taken};
  const Format f = w.matrix.format;
  const float* xs = xc.data_as<float>();
  float* yd = y.data_as<float>();
  if (impl == ConvImpl::kOneDnn && !dnnl_types(f)) return false;
  if (impl == ConvImpl::kPointwise &&
      ((f != Format::kInt8 && f != Format::kBf16) || !is_pointwise(gm)))
    return false;
  // int formats: X quantized once with one scale over all of it (conv.h); the vectorized amax
  // and encoder are bit-identical to the reference's by contract.
  const auto count = static_cast<size_t>(xc.numel());
  thread_local ScratchBuffer xq_buf;
  XCodes q{xs, count, t, 1.0f, nullptr, &xq_buf};
  if (is_int(f) && hints && hints->x_amax >= 0.0f && std::isfinite(hints->x_amax)) {
    q.sx = ref::int8_scale(hints->x_amax);  // the scale int8_activation_scale would make
    q.known = true;
  }
  // The int8 pointwise kernel on VNNI quantizes X's floats as it packs them (pwconv_int8's xf).
  const bool pointwise_floats = f == Format::kInt8 && is_pointwise(gm) && gm.pixels > 1 &&
                                gm.c <= 65536 && pwconv_int8_isa() == PwIsa::kVnni &&
                                (impl == ConvImpl::kAuto || impl == ConvImpl::kPointwise);
  if (is_int(f)) {
    // Where oneDNN's convolution, the VNNI KxK kernel, the depthwise kernel or the VNNI
    // pointwise kernel is the first choice, only the scale now (their codes go straight into
    // oneDNN's layout, the packed quads or the padded planes); else the codes too, in the same
    // pass.
    const bool kxk_auto = impl == ConvImpl::kAuto && !is_depthwise(gm) && !is_pointwise(gm) &&
                          !amx_conv_applies(gm, f);  // oneDNN or the VNNI KxK kernel
    const bool depthwise_first =
        is_depthwise(gm) && (impl == ConvImpl::kDepthwise || impl == ConvImpl::kAuto);
    if (f == Format::kInt8 &&
        (impl == ConvImpl::kOneDnn || kxk_auto || depthwise_first || pointwise_floats)) {
      if (!q.known) q.sx = int8_activation_scale(xs, count, t, "conv2d: inputs");
    } else {
      q.get();
    }
  }
  const float sx = q.sx;
  // A pointwise convolution of 1x1 planes (squeeze-excite blocks) is a matmul with one row per
  // image, with the same semantics (one activation scale over all of X for int8/int4): the
  // matmul layer's GEMV kernels instead of a convolution primitive and its reorders.
  if (impl == ConvImpl::kAuto && is_pointwise(gm) && gm.pixels == 1) {
    matmul(xs, gm.n, w.matrix, bias, yd, t);
    apply_activation_n(yd, gm.n * gm.oc, p);
    return true;
  }
  // (is_int(f) ? q.get() : nullptr): the NCHW codes, made here if not yet.
  const auto codes = [&] { return is_int(f) ? q.get() : nullptr; };
  if (impl == ConvImpl::kOneDnn) return conv_dnnl(gm, xs, q, w, bias, yd, t);
  if (impl == ConvImpl::kDirect) return conv_direct(gm, xs, codes(), sx, w, bias, yd, t);
  if (impl == ConvImpl::kDepthwise) return conv_depthwise(gm, xs, sx, w, bias, yd, t);
  const auto pw_codes = [&] { return pointwise_floats ? nullptr : codes(); };
  if (impl == ConvImpl::kPointwise) return conv_pointwise(gm, xs, pw_codes(), sx, w, bias, yd, t);
  if (impl == ConvImpl::kAuto) {
    if (is_depthwise(gm) && conv_depthwise(gm, xs, sx, w, bias, yd, t)) return true;
    if (is_pointwise(gm) && conv_pointwise(gm, xs, pw_codes(), sx, w, bias, yd, t)) return true;
    if (amx_conv_applies(gm, f) && conv_amx(gm, codes(), sx, w, bias, yd, t)) return true;
    // (X's floats quantized as they are packed where its codes are not made yet.)
    if (vnni_conv_applies(gm, f) &&
        conv_kxk_vnni(gm, q.codes, q.codes ? nullptr : xs, sx, w, bias, yd, t))
      return true;
    if (float_conv_applies(gm, f) && conv_kxk_float(gm, xs, w, bias, yd, t)) return true;
    if (conv_dnnl(gm, xs, q, w, bias, yd, t)) return true;
    // Direct where there is little work per pixel and group (OC/groups · K multiply-adds):
    // below 1024 (int8) or 2048 (floats) the per-pixel GEMV calls of im2col cost more (measured
    // here). int4's row kernel is fast only with VNNI (any K: its partial last block is
    // masked); the portable one is a scalar loop, slower than direct (27 vs 2 GMAC/s for
    // 256 -> 256 1x1; direct 9 vs 3 for a 3 -> 32 7x7, 6 vs 0.6 for 32 -> 32 1x1).
    const CpuFeatures& cf = cpu_features();
    const bool int4_rows = cf.avx512_vnni && cf.avx512bw && cf.f16c;
    const int64_t below = f == Format::kInt4   ? (int4_rows ? 1024 : INT64_MAX)
                          : f == Format::kInt8 ? 1024
                                               : 2048;
    if (gm.ocg * gm.k < below && conv_direct(gm, xs, codes(), sx, w, bias, yd, t)) return true;
  }
  if (is_int(f))
    conv_im2col_int(gm, codes(), sx, w, bias, yd, t);
  else
    conv_im2col_float(gm, xs, w, bias, yd, t);
  return true;
}

}  // namespace cpu

void conv2d(const Tensor& x, const ConvWeights& w, const float* bias, const Conv2dParams& p,
            Tensor& y, int threads, const ConvHints* hints) {
  cpu::conv2d_with(cpu::ConvImpl::kAuto, x, w, bias, p, y, threads, hints);
}

}  // namespace dynaprec
