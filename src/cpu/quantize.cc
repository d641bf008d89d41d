#include "dynaprec/quantize.h"

#include <algorithm>
#include <atomic>
#include <bit>
#include <cmath>
#include <cstddef>
#include <string>

#include "dynaprec/convert.h"
#include "dynaprec/error.h"
#include "dynaprec/thread_pool.h"

namespace dynaprec {
namespace {

// Finds the first element that is not finite, for the message; only called after amax saw one.
std::string describe_non_finite(const float* p, size_t n) {
  for (size_t i = 0; i < n; ++i)
    if (!std::isfinite(p[i]))
      return "element " + std::to_string(i) + " is " + (std::isnan(p[i]) ? "nan" : "inf");
  return "a value is not finite";
}

void require_finite(float amax_bits_value, const float* p, size_t n, Format f) {
  if (std::isfinite(amax_bits_value)) return;
  throw Error(ErrorKind::kInvalidInput,
              std::string(format_name(f)) +
                  " is defined for finite inputs only: " + describe_non_finite(p, n));
}

// fn(begin, end) over [0, n) in pieces on the default pool's threads (element-wise work: the
// same bits however it is split; the detector's 1.2 M-float input took ~0.4 ms on one thread to
// cross at int8 and back).
template <class Fn>
void in_pieces(size_t n, const Fn& fn) {
  constexpr size_t kPiece = size_t{1} << 16;
  const size_t tasks = (n + kPiece - 1) / kPiece;
  if (tasks <= 1) return fn(size_t{0}, n);
  ThreadPool::default_pool().parallel_for(
      tasks, [&](size_t i) { fn(i * kPiece, std::min(n, (i + 1) * kPiece)); });
}

// Bytes per value of a float format's or int8's codes.
size_t code_bytes(Format f) { return static_cast<size_t>(dtype_bits(dtype_of(f))) / 8; }

}  // namespace

float max_abs(const Tensor& x) {
  DP_CHECK(x.dtype() == DType::kF32 && x.is_contiguous(), "max_abs: contiguous float32");
  const float* p = x.data_as<float>();
  std::atomic<uint32_t> bits{0};  // |x| as float bits: NaN above inf, the order amax keeps
  in_pieces(static_cast<size_t>(x.numel()), [&](size_t b, size_t e) {
    const uint32_t m = std::bit_cast<uint32_t>(amax(p + b, e - b));
    for (uint32_t cur = bits.load(); m > cur && !bits.compare_exchange_weak(cur, m);) {
    }
  });
  return std::bit_cast<float>(bits.load());
}

Tensor quantize_per_tensor(const Tensor& x, Format f, float x_amax) {
  DP_CHECK(
      x.dtype() == DType::kF32 && x.is_contiguous() && f != Format::kInt4 && f < Format::kCount,
      "quantize_per_tensor: contiguous float32, a per-tensor format");
  const float* src = x.data_as<float>();
  const auto n = static_cast<size_t>(x.numel());
  Tensor q = Tensor::empty(x.shape(), dtype_of(f));  // every piece writes its part
  auto* dst = static_cast<std::byte*>(q.data());
  const size_t width = code_bytes(f);
  if (f == Format::kInt8) {
    const float s = ref::int8_scale(x_amax);
    q.quant().scales = {s};
    in_pieces(n, [&](size_t b, size_t e) {
      int8_encode_array(src + b, reinterpret_cast<int8_t*>(dst + b), e - b, s);
    });
  } else {
    in_pieces(n,
              [&](size_t b, size_t e) { encode_float_array(f, src + b, dst + b * width, e - b); });
  }
  return q;
}

Tensor quantize(const Tensor& x_in, Format f, std::optional<int> axis) {
  if (x_in.dtype() != DType::kF32)
    throw Error(ErrorKind::kInvalidInput, std::string("quantize expects float32 input, got ") +
                                              std::string(dtype_name(x_in.dtype())));
  const FormatInfo& fi = format_info(f);
  const int rank = x_in.rank();
  if (axis) {
    const int a = *axis < 0 ? *axis + rank : *axis;
    if (f == Format::kInt4) {
      if (rank == 0 || a != rank - 1)
        throw Error(ErrorKind::kUsage, "int4 groups run along the last axis; --axis " +
                                           std::to_string(*axis) +
                                           " is not the last axis of a "
                                           "rank-" +
                                           std::to_string(rank) + " array");
      axis.reset();
    } else if (f != Format::kInt8) {
      throw Error(
          ErrorKind::kUsage,
          std::string("--axis applies to int8 (per channel) only, not ") + std::string(fi.name));
    } else if (a < 0 || a >= rank) {
      throw Error(ErrorKind::kUsage, "axis " + std::to_string(*axis) +
                                         " is out of range for a "
                                         "rank-" +
                                         std::to_string(rank) + " array");
    } else {
      axis = a;
    }
  }
  const Tensor x = x_in.is_contiguous() ? x_in : x_in.clone();
  const float* src = x.data_as<float>();
  const auto n = static_cast<size_t>(x.numel());
  if (fi.kind == FormatKind::kFloat) return quantize_per_tensor(x, f, 0.0f);  // (no amax needed)
  if (f == Format::kInt8 && !axis) {
    const float m = max_abs(x);
    require_finite(m, src, n, f);
    return quantize_per_tensor(x, f, m);
  }
  Tensor q = Tensor::zeros(x.shape(), dtype_of(f));
  if (f == Format::kInt8) {
    const int a = *axis;
    if (a == 0) {  // one scale per row: the weight layout, one pass over memory
      const auto rows = static_cast<size_t>(x.dim(0));
      const size_t k = rows == 0 ? 0 : n / rows;
      q.quant().scales.assign(rows, 0.0f);
      q.quant().axis = 0;
      int8_encode_rows(src, q.data_as<int8_t>(), rows, k, q.quant().scales.data());
      // A row's scale is amax / 127: not finite exactly when the row holds a NaN or an inf, so
      // the input check needs no pass of its own.
      for (const float s : q.quant().scales) require_finite(s, src, n, f);
      return q;
    }
    size_t outer = 1, inner = 1;
    for (int i = 0; i < a; ++i) outer *= static_cast<size_t>(x.dim(i));
    for (int i = a + 1; i < rank; ++i) inner *= static_cast<size_t>(x.dim(i));
    const auto c_count = static_cast<size_t>(x.dim(a));
    std::vector<float> amaxes(c_count, 0.0f);
    for (size_t o = 0; o < outer; ++o)
      for (size_t c = 0; c < c_count; ++c) {
        const float* p = src + (o * c_count + c) * inner;
        const float m = amax(p, inner);
        require_finite(m, p, inner, f);
        amaxes[c] = std::max(amaxes[c], m);
      }
    std::vector<float> scales(c_count);
    for (size_t c = 0; c < c_count; ++c) scales[c] = ref::int8_scale(amaxes[c]);
    auto* dst = q.data_as<int8_t>();
    for (size_t o = 0; o < outer; ++o) {
      if (inner == 1) {
        int8_encode_array_scales(src + o * c_count, dst + o * c_count, c_count, scales.data());
      } else {
        for (size_t c = 0; c < c_count; ++c) {
          const size_t off = (o * c_count + c) * inner;
          int8_encode_array(src + off, dst + off, inner, scales[c]);
        }
      }
    }
    q.quant().scales = std::move(scales);
    q.quant().axis = a;
    return q;
  }
  // int4: rows along the last axis, groups of 32 within each row.
  const auto k = static_cast<size_t>(rank == 0 ? 1 : x.dim(rank - 1));
  const size_t rows = k == 0 ? 0 : n / k;
  const size_t groups = (k + fi.group_size - 1) / fi.group_size;
  const size_t row_bytes = (k + 1) / 2;
  q.quant().scales_f16.assign(rows * groups, 0);
  q.quant().group_size = fi.group_size;
  (void)row_bytes;
  int4_encode_rows(src, rows, k, q.data_as<uint8_t>(), q.quant().scales_f16.data());
  // The input check without a pass of its own: a group with a NaN has a NaN scale, one with an
  // inf the saturated scale 65504 (0x7BFF), which finite groups beyond 7·65504 share; only
  // those groups are read again.
  for (size_t gi = 0; gi < rows * groups; ++gi) {
    const uint16_t sc = q.quant().scales_f16[gi];
    if ((sc & 0x7C00u) != 0x7C00u && sc != 0x7BFFu) continue;
    const size_t r = gi / groups, g0 = (gi % groups) * fi.group_size;
    const float* p = src + r * k + g0;
    require_finite(amax(p, std::min<size_t>(fi.group_size, k - g0)), src, n, f);
  }
  return q;
}

Tensor dequantize(const Tensor& q) {
  const std::optional<Format> f = format_of(q.dtype());
  if (!f)
    throw Error(ErrorKind::kInvalidInput, std::string("dequantize: ") +
                                              std::string(dtype_name(q.dtype())) +
                                              " is not a precision format");
  DP_CHECK(q.is_contiguous(), "dequantize needs a contiguous tensor");
  Tensor out = Tensor::empty(q.shape(), DType::kF32);  // every path below writes all of it
  const auto n = static_cast<size_t>(q.numel());
  float* dst = out.data_as<float>();
  const QuantParams& qp = q.quant();
  if (is_float_format(*f) || (*f == Format::kInt8 && qp.axis < 0)) {
    DP_CHECK(is_float_format(*f) || qp.scales.size() == 1, "per-tensor int8 needs one scale");
    const auto* codes = static_cast<const std::byte*>(q.data());
    const size_t width = code_bytes(*f);
    in_pieces(n, [&](size_t b, size_t e) {
      if (*f == Format::kInt8)
        int8_decode_array(reinterpret_cast<const int8_t*>(codes + b), dst + b, e - b, qp.scales[0]);
      else
        decode_float_array(*f, codes + b * width, dst + b, e - b);
    });
    return out;
  }
  if (*f == Format::kInt8) {
    const auto* src = q.data_as<int8_t>();
    const int a = qp.axis;
    DP_CHECK(a < q.rank() && qp.scales.size() == static_cast<size_t>(q.dim(a)),
             "per-channel int8 scales do not match the axis");
    size_t outer = 1, inner = 1;
    for (int i = 0; i < a; ++i) outer *= static_cast<size_t>(q.dim(i));
    for (int i = a + 1; i < q.rank(); ++i) inner *= static_cast<size_t>(q.dim(i));
    const size_t c_count = qp.scales.size();
    for (size_t o = 0; o < outer; ++o)
      for (size_t c = 0; c < c_count; ++c) {
        const size_t off = (o * c_count + c) * inner;
        int8_decode_array(src + off, dst + off, inner, qp.scales[c]);
      }
    return out;
  }
  const auto k = static_cast<size_t>(q.rank() == 0 ? 1 : q.dim(q.rank() - 1));
  const size_t rows = k == 0 ? 0 : n / k;
  const size_t groups = (k + 31) / 32;
  DP_CHECK(qp.scales_f16.size() == rows * groups, "int4 scale count does not match the shape");
  for (size_t r = 0; r < rows; ++r)
    int4_decode_row(q.data_as<uint8_t>() + r * ((k + 1) / 2), qp.scales_f16.data() + r * groups, k,
                    dst + r * k);
  return out;
}

Tensor round_trip(const Tensor& x, Format f, std::optional<int> axis) {
  return dequantize(quantize(x, f, axis));
}

}  // namespace dynaprec
