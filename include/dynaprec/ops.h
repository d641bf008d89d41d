// The cheap ops between the matmul/conv layers, in float32 (plus int64/int32/bool where ONNX
// graphs do shape arithmetic), with ONNX operator semantics.
//
// Every function takes Tensors that may be strided or borrowed and returns a new contiguous
// Tensor that owns its storage. Bad arguments throw Error(kInvalidInput) with a message that
// starts with the ONNX operator name and gives the expected and actual values.
//
// Two implementations with one contract:
//   dynaprec::ref::*  plain loops (src/kernels/ref/ops_ref*.cc), obviously correct, slow;
//   dynaprec::*       the same results, through Highway kernels (src/kernels/cpu/ops_hwy.cc,
//                     runtime dispatch) where one applies and the reference otherwise.
// The fast paths: float32 Add/Sub/Mul/Div/Max/Min with any broadcasting; the unary ops Neg,
// Abs, Sqrt, Relu, LeakyRelu, Clip, HardSigmoid, HardSwish (bit-identical to ref) and Exp,
// Sigmoid, Tanh (Highway's contrib/math: within 2, 6 and 6 ulp of ref); softmax/log_softmax
// along the last axis (and softmax_legacy), ReduceSum/Mean/Max/Min over trailing axes, batch
// norm (bit-identical). The tolerances and their derivation: src/kernels/cpu/ops_hwy.cc.
//
// Threads: large fast-path calls split across ThreadPool::default_pool() (results do not depend
// on the split); called from inside a pool task, they run on that thread alone.
//
// Float semantics shared by all ops: NaN propagates through arithmetic, Max/Min and the
// reductions (ONNX follows numpy here; MaxPool and ArgMax say otherwise below); comparisons
// with NaN are false; ±0 are equal.
// Element types: "f32" ops take float32 only; "data movement" ops take any dtype but int4.
#pragma once

#include <cstdint>
#include <limits>
#include <optional>
#include <string_view>
#include <vector>

#include "dynaprec/tensor.h"

namespace dynaprec {

// ---- Elementwise ----------------------------------------------------------------------------

/// Binary elementwise ops (ONNX operator in parentheses).
enum class BinaryOp : uint8_t {
  kAdd,      ///< a + b (Add)
  kSub,      ///< a - b (Sub)
  kMul,      ///< a * b (Mul)
  kDiv,      ///< a / b (Div); integers truncate toward zero, b == 0 is an error
  kPow,      ///< a ^ b (Pow): std::pow, squares and cubes as products; integers through double,
             ///< saturated
  kMax,      ///< max(a, b) (Max, two inputs); NaN if either is NaN
  kMin,      ///< min(a, b) (Min, two inputs); NaN if either is NaN
  kEqual,    ///< a == b -> bool (Equal)
  kLess,     ///< a < b -> bool (Less)
  kGreater,  ///< a > b -> bool (Greater)
  kCount
};
/// "Add", "Sub", ... (the ONNX name, used in messages).
std::string_view binary_op_name(BinaryOp op);

/// The ONNX multidirectional (numpy) broadcast of two shapes: aligned at the last axis, each
/// pair of dims equal or one of them 1. Throws Error(kInvalidInput) naming `op` otherwise.
Shape broadcast_shapes(const Shape& a, const Shape& b, std::string_view op = "broadcast");

/// Elementwise `op` of a and b broadcast against each other. a and b have the same dtype:
/// f32, i32 or i64 (Equal also bool). Integer arithmetic wraps (two's complement).
Tensor binary(BinaryOp op, const Tensor& a, const Tensor& b);

/// a + a · b (f32, broadcast as binary): Add(a, Mul(a, b)) in one pass, the two roundings of the
/// separate ops (the residual of a squeeze-excite block, which the executor fuses).
Tensor add_scaled(const Tensor& a, const Tensor& b);

/// Unary elementwise ops (ONNX operator in parentheses). f32 unless noted.
enum class UnaryOp : uint8_t {
  kNeg,          ///< -x (Neg); also i32/i64 (wrapping)
  kAbs,          ///< |x| (Abs); also i32/i64 (wrapping)
  kSqrt,         ///< sqrt(x) (Sqrt)
  kExp,          ///< e^x (Exp)
  kLog,          ///< ln(x) (Log)
  kRelu,         ///< x < 0 ? 0 : x (Relu); also i32/i64
  kSigmoid,      ///< 1 / (1 + e^-x) (Sigmoid)
  kTanh,         ///< tanh(x) (Tanh)
  kErf,          ///< erf(x) (Erf)
  kHardSigmoid,  ///< max(0, min(1, alpha·x + beta)) (HardSigmoid)
  kHardSwish,    ///< x · max(0, min(1, x/6 + 1/2)) (HardSwish), alpha = 1/6 rounded to float
  kLeakyRelu,    ///< x < 0 ? alpha·x : x (LeakyRelu)
  kClip,         ///< min(max(x, clip_min), clip_max) (Clip); NaN stays NaN
  kNot,          ///< !x, bool only (Not)
  kCount
};
std::string_view unary_op_name(UnaryOp op);

/// Attributes of the unary ops; the defaults are ONNX's.
struct UnaryParams {
  float hard_sigmoid_alpha = 0.2f;                           ///< HardSigmoid alpha
  float hard_sigmoid_beta = 0.5f;                            ///< HardSigmoid beta
  float leaky_relu_alpha = 0.01f;                            ///< LeakyRelu alpha
  float clip_min = -std::numeric_limits<float>::infinity();  ///< Clip min (no bound by default)
  float clip_max = std::numeric_limits<float>::infinity();   ///< Clip max (no bound by default)
};

/// Elementwise `op` of x, same shape; dtype f32 (or as noted per op).
Tensor unary(UnaryOp op, const Tensor& x, const UnaryParams& p = {});

/// Cast (ONNX Cast) between f32, f64, f16, bf16, i8, u8, i16, i32, i64 and bool.
/// To f16/bf16: round to nearest even with the bit-exact conversions of convert.h (from f64
/// through f32). Float to integer: truncation toward zero, saturated at the type's range, NaN to
/// 0 (ONNX leaves out-of-range values undefined). To bool: x != 0 (NaN is true). Integer to
/// integer: two's-complement wrap. From bool: 0 or 1.
Tensor cast(const Tensor& x, DType to);

// ---- Reductions -----------------------------------------------------------------------------

enum class ReduceOp : uint8_t {
  kSum,   ///< ReduceSum; an empty set gives 0
  kMean,  ///< ReduceMean; an empty set gives NaN (integers: 0)
  kMax,   ///< ReduceMax; an empty set gives -inf (integers: the minimum value); NaN propagates
  kMin,   ///< ReduceMin; an empty set gives +inf (integers: the maximum value); NaN propagates
  kCount
};
std::string_view reduce_op_name(ReduceOp op);

/// Reduces x (f32, i32, i64) over `axes` (negative counts from the back, no repeats), keeping
/// them as size-1 dims if keepdims. Empty axes reduce every axis, or with noop_with_empty_axes
/// return x unchanged (ONNX opset 18 semantics). The reference sums float32 in double, the fast
/// path in float32 lanes (bound in ops_hwy.cc).
Tensor reduce(ReduceOp op, const Tensor& x, const std::vector<int64_t>& axes, bool keepdims = true,
              bool noop_with_empty_axes = false);
/// Mean over the spatial dims of [N, C, D1, ...], kept as size 1 (GlobalAveragePool).
Tensor global_average_pool(const Tensor& x);
/// Index of the maximum along `axis` as int64 (ArgMax); the first on ties (the last with
/// select_last_index). A NaN counts as larger than any number. f32, i32, i64.
Tensor argmax(const Tensor& x, int64_t axis = 0, bool keepdims = true,
              bool select_last_index = false);

// ---- Softmax --------------------------------------------------------------------------------

/// exp(x - max) / Σ exp(x - max) along one axis (Softmax, opset >= 13). f32.
Tensor softmax(const Tensor& x, int64_t axis = -1);
/// (x - max) - log Σ exp(x - max) along one axis (LogSoftmax, opset >= 13). f32.
Tensor log_softmax(const Tensor& x, int64_t axis = -1);
/// Softmax, opset < 13: x seen as 2-D [prod(dims < axis), prod(dims >= axis)], softmax over each
/// row (axis in [-rank, rank]); the result has x's shape.
Tensor softmax_legacy(const Tensor& x, int64_t axis = 1);
/// LogSoftmax, opset < 13, flattened like softmax_legacy.
Tensor log_softmax_legacy(const Tensor& x, int64_t axis = 1);

// ---- Normalization --------------------------------------------------------------------------

/// BatchNormalization in inference mode on x [N, C, ...]: scale, bias, mean, var are [C];
/// y = (x - mean) · (scale / sqrt(var + epsilon)) + bias, the factor computed once per channel
/// in float32 (onnxruntime's arithmetic; ONNX's formula up to rounding). f32.
Tensor batch_norm_inference(const Tensor& x, const Tensor& scale, const Tensor& bias,
                            const Tensor& mean, const Tensor& var, float epsilon = 1e-5f);
/// LayerNormalization (opset 17): normalizes over dims [axis, rank) with mean and biased
/// variance, y = (x - mean) / sqrt(var + epsilon) · scale + bias; scale and the optional bias
/// broadcast (unidirectionally) to x.shape[axis:]. Statistics in double. f32.
Tensor layer_norm(const Tensor& x, const Tensor& scale, const Tensor* bias = nullptr,
                  int64_t axis = -1, float epsilon = 1e-5f);
/// InstanceNormalization on x [N, C, ...]: normalizes each (n, c) over the spatial dims,
/// y = (x - mean) / sqrt(var + epsilon) · scale[c] + bias[c]. Statistics in double. f32.
Tensor instance_norm(const Tensor& x, const Tensor& scale, const Tensor& bias,
                     float epsilon = 1e-5f);

// ---- Pooling (x is [N, C, D1, ..., Dk], k >= 1 spatial dims) ----------------------------------

enum class AutoPad : uint8_t {
  kNotSet,     ///< use PoolParams::pads
  kValid,      ///< no padding
  kSameUpper,  ///< output ceil(D / stride); odd padding goes at the end
  kSameLower,  ///< output ceil(D / stride); odd padding goes at the beginning
};

struct PoolParams {
  std::vector<int64_t> kernel;     ///< per spatial dim; required, each >= 1
  std::vector<int64_t> strides;    ///< per spatial dim; empty means all 1
  std::vector<int64_t> pads;       ///< [begin_1..begin_k, end_1..end_k]; empty means all 0
  std::vector<int64_t> dilations;  ///< per spatial dim; empty means all 1
  AutoPad auto_pad = AutoPad::kNotSet;
  bool ceil_mode = false;  ///< ceil instead of floor for the output size (windows that would
                           ///< start in the end padding are dropped, as in ONNX and PyTorch)
  bool count_include_pad = false;  ///< average_pool: divide by the taps inside input + pads
};

/// The output shape of pooling x with p (checks p: kernel/strides/dilations >= 1, pads >= 0
/// and smaller than the kernel, as onnxruntime requires). `op` names the operator in messages.
Shape pool_output_shape(const Shape& x, const PoolParams& p, std::string_view op = "MaxPool");
/// MaxPool: the maximum over each window's taps inside x. NaN inputs are skipped, as in
/// onnxruntime and the ONNX reference; a window without a number gives NaN. f32.
Tensor max_pool(const Tensor& x, const PoolParams& p);
/// AveragePool: the sum over each window's taps inside x, divided by their count, or with
/// count_include_pad by the count of taps inside x plus the explicit pads (the ceil_mode
/// overhang past the end pad never counts, as in onnxruntime and PyTorch). f32.
Tensor average_pool(const Tensor& x, const PoolParams& p);

// ---- Data movement (any dtype but int4; quantization parameters are not carried) -------------

/// Transpose: y.shape[i] = x.shape[perm[i]]; empty perm reverses the axes.
Tensor transpose(const Tensor& x, const std::vector<int64_t>& perm = {});
/// Reshape: one dim may be -1 (inferred); 0 copies x's dim at that index unless allowzero
/// (then 0 is a real 0 and -1 may not appear with it).
Tensor reshape(const Tensor& x, const std::vector<int64_t>& shape, bool allowzero = false);
/// Flatten to 2-D [prod(dims < axis), prod(dims >= axis)], axis in [-rank, rank].
Tensor flatten(const Tensor& x, int64_t axis = 1);
/// Squeeze: removes the listed dims (each must be 1); empty axes remove every dim of size 1.
Tensor squeeze(const Tensor& x, const std::vector<int64_t>& axes = {});
/// Unsqueeze: inserts size-1 dims at `axes`, given in the output's rank (negative allowed).
Tensor unsqueeze(const Tensor& x, const std::vector<int64_t>& axes);
/// Concat along axis: same dtype and rank, equal dims except along axis. At least one input.
Tensor concat(const std::vector<Tensor>& xs, int64_t axis);
/// Slice with ONNX's rules: negative starts/ends count from the back, then starts clamp to
/// [0, dim] and ends to [0, dim] for step > 0, starts to [0, dim - 1] and ends to [-1, dim - 1]
/// for step < 0; axes default to 0..n-1, steps to 1 (never 0).
Tensor slice(const Tensor& x, const std::vector<int64_t>& starts, const std::vector<int64_t>& ends,
             const std::vector<int64_t>& axes = {}, const std::vector<int64_t>& steps = {});
/// Gather: y = x indexed along `axis` by `indices` (int32/int64, negative counts from the back),
/// shape x.shape[:axis] + indices.shape + x.shape[axis+1:].
Tensor gather(const Tensor& x, const Tensor& indices, int64_t axis = 0);

enum class PadMode : uint8_t {
  kConstant,  ///< pad with `value`
  kReflect,   ///< mirror without repeating the edge; longer pads keep mirroring (np.pad)
  kEdge,      ///< repeat the edge value
  kWrap,      ///< wrap around (opset 19)
};
/// Pad with pads [begin_1..begin_r, end_1..end_r]. Negative pads crop first; reflect, edge and
/// wrap then use the cropped extent (as onnxruntime does), which must not be empty where padded.
/// `value` is converted to x's dtype as Cast does.
Tensor pad(const Tensor& x, const std::vector<int64_t>& pads, PadMode mode = PadMode::kConstant,
           double value = 0.0);
/// Expand: broadcasts x against `shape` (multidirectionally, like numpy; a 1 in shape keeps x's
/// dim).
Tensor expand(const Tensor& x, const std::vector<int64_t>& shape);
/// Where: cond (bool) ? a : b, all three broadcast together; a and b share a dtype.
Tensor where(const Tensor& cond, const Tensor& a, const Tensor& b);
/// Tile: y.shape[i] = x.shape[i] · repeats[i] (repeats >= 0, one per dim).
Tensor tile(const Tensor& x, const std::vector<int64_t>& repeats);

/// Shape (opset 15): x's dims [start, end) as a 1-D int64 tensor; start/end clamp like Slice.
Tensor shape_of(const Tensor& x, int64_t start = 0, std::optional<int64_t> end = std::nullopt);
/// The values of an int32/int64 tensor (any shape, C order) as int64: shape-tensor inputs of
/// Reshape, Slice, Expand, ... Throws for other dtypes.
std::vector<int64_t> int_values(const Tensor& t);
/// A 1-D int64 tensor holding `values`.
Tensor int64_tensor(const std::vector<int64_t>& values);

// ---- Resize (ONNX Resize, opset 13-19, without roi/cubic/antialias) ----------------------------

enum class ResizeMode : uint8_t { kNearest, kLinear };
enum class CoordMode : uint8_t {
  kHalfPixel,           ///< (x + 0.5) / scale - 0.5 (the ONNX default)
  kAsymmetric,          ///< x / scale
  kAlignCorners,        ///< x · (in - 1) / (in · scale - 1); 0 when in · scale == 1
  kPytorchHalfPixel,    ///< half_pixel, but 0 when the output length is 1
  kHalfPixelSymmetric,  ///< half_pixel about the centre (opset 19)
};
enum class NearestMode : uint8_t {
  kRoundPreferFloor,  ///< round half down (the ONNX default)
  kRoundPreferCeil,   ///< round half up
  kFloor,
  kCeil,
};

struct ResizeParams {
  ResizeMode mode = ResizeMode::kNearest;
  CoordMode coord = CoordMode::kHalfPixel;
  NearestMode nearest = NearestMode::kRoundPreferFloor;  ///< for kNearest
  /// One per dim of x; exactly one of scales and sizes is given. With scales the output dim is
  /// floor(in · scale) computed in float32 (as ONNX shape inference and onnxruntime do).
  std::vector<float> scales;
  /// One per dim of x; the scale is then size / in.
  std::vector<int64_t> sizes;
};

/// Resize x (f32, any rank; NCHW in practice): nearest or (multi)linear interpolation, source
/// coordinates computed in double as in the ONNX reference and clamped to the input (linear
/// mode: edge values outside). align_corners uses in · scale as the output length, so scales
/// that do not divide evenly follow the ONNX reference (onnx/onnx#2462).
Tensor resize(const Tensor& x, const ResizeParams& p);

/// a + resize(x, p) (resize(x, p) + a with resized_first): Add after Resize in one pass where
/// the mode is nearest and a has the output's shape (the top-down path of a feature pyramid),
/// the separate ops' bits; otherwise the two ops.
/// y_amax, where non-null: set to max |Y| where the fused pass took it (NaN/inf: not finite),
/// else -1 — the next int8 layer's scale (ConvHints::x_amax), as a conv's y_amax.
/// a_scale, where given: the addend is add_scaled(a, *a_scale), in the same pass where a_scale is
/// constant along the last axis and broadcasts to a's shape (a squeeze-excite gate [N, C, 1, 1]
/// on a residual branch): the AddScaled's output is never written.
Tensor add_resized(const Tensor& a, const Tensor& x, const ResizeParams& p,
                   bool resized_first = false, float* y_amax = nullptr,
                   const Tensor* a_scale = nullptr);

/// One input of concat_resized: *x as it is, resize(*x, *resize), or add_scaled(*x, *scale)
/// (one pass where scale is constant along the last axis, as add_resized's a_scale).
struct ConcatPart {
  const Tensor* x = nullptr;
  const ResizeParams* resize = nullptr;
  const Tensor* scale = nullptr;  ///< only where resize is null
};
/// concat of the parts along axis, each resized part written straight into its place in the
/// output (a feature pyramid's upsampled maps never exist on their own): the bits of resize then
/// concat. Float32 parts concatenated along an axis before the last; otherwise the two ops.
/// y_amax as for add_resized.
Tensor concat_resized(const std::vector<ConcatPart>& parts, int64_t axis, float* y_amax = nullptr);

// ---- The references ---------------------------------------------------------------------------

namespace ref {
// Same signatures and contracts as the functions above.
Tensor binary(BinaryOp op, const Tensor& a, const Tensor& b);
Tensor add_scaled(const Tensor& a, const Tensor& b);
Tensor unary(UnaryOp op, const Tensor& x, const UnaryParams& p = {});
Tensor cast(const Tensor& x, DType to);
Tensor reduce(ReduceOp op, const Tensor& x, const std::vector<int64_t>& axes, bool keepdims = true,
              bool noop_with_empty_axes = false);
Tensor global_average_pool(const Tensor& x);
Tensor argmax(const Tensor& x, int64_t axis = 0, bool keepdims = true,
              bool select_last_index = false);
Tensor softmax(const Tensor& x, int64_t axis = -1);
Tensor log_softmax(const Tensor& x, int64_t axis = -1);
Tensor softmax_legacy(const Tensor& x, int64_t axis = 1);
Tensor log_softmax_legacy(const Tensor& x, int64_t axis = 1);
Tensor batch_norm_inference(const Tensor& x, const Tensor& scale, const Tensor& bias,
                            const Tensor& mean, const Tensor& var, float epsilon = 1e-5f);
Tensor layer_norm(const Tensor& x, const Tensor& scale, const Tensor* bias = nullptr,
                  int64_t axis = -1, float epsilon = 1e-5f);
Tensor instance_norm(const Tensor& x, const Tensor& scale, const Tensor& bias,
                     float epsilon = 1e-5f);
Tensor max_pool(const Tensor& x, const PoolParams& p);
Tensor average_pool(const Tensor& x, const PoolParams& p);
Tensor transpose(const Tensor& x, const std::vector<int64_t>& perm = {});
Tensor reshape(const Tensor& x, const std::vector<int64_t>& shape, bool allowzero = false);
Tensor flatten(const Tensor& x, int64_t axis = 1);
Tensor squeeze(const Tensor& x, const std::vector<int64_t>& axes = {});
Tensor unsqueeze(const Tensor& x, const std::vector<int64_t>& axes);
Tensor concat(const std::vector<Tensor>& xs, int64_t axis);
Tensor slice(const Tensor& x, const std::vector<int64_t>& starts, const std::vector<int64_t>& ends,
             const std::vector<int64_t>& axes = {}, const std::vector<int64_t>& steps = {});
Tensor gather(const Tensor& x, const Tensor& indices, int64_t axis = 0);
Tensor pad(const Tensor& x, const std::vector<int64_t>& pads, PadMode mode = PadMode::kConstant,
           double value = 0.0);
Tensor expand(const Tensor& x, const std::vector<int64_t>& shape);
Tensor where(const Tensor& cond, const Tensor& a, const Tensor& b);
Tensor tile(const Tensor& x, const std::vector<int64_t>& repeats);
Tensor resize(const Tensor& x, const ResizeParams& p);
Tensor add_resized(const Tensor& a, const Tensor& x, const ResizeParams& p,
                   bool resized_first = false, const Tensor* a_scale = nullptr);
Tensor concat_resized(const std::vector<ConcatPart>& parts, int64_t axis);
}  // namespace ref

}  // namespace dynaprec
