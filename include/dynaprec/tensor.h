// Tensor: shape, strides, element type, quantization parameters, owning or borrowed storage.
//
// Shapes use int64 dims; strides are in elements (C order by default). Quantized tensors
// (int8, int4) carry their scales in `quant`. int4 tensors are packed two values per byte
// along the last axis, the first value in the low nibble, each row (last-axis run) padded to
// a whole byte: a row of K values takes ceil(K/2) bytes. Storage is 64-byte aligned when
// owned; a borrowed tensor points into memory someone else keeps alive.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "dynaprec/formats.h"

namespace dynaprec {

/// Element types a Tensor can hold: the precision formats plus the plain types that models
/// and .npy files use. Values are stable (they may travel in files); never renumber.
enum class DType : uint8_t {
  kF32 = 0,
  kBF16 = 1,
  kF16 = 2,
  kF8E4M3 = 3,
  kF8E5M2 = 4,
  kI8 = 5,
  kI4 = 6,  ///< packed nibbles, see the header comment
  kF64 = 7,
  kI16 = 8,
  kI32 = 9,
  kI64 = 10,
  kU8 = 11,
  kBool = 12,
  kCount
};

std::string_view dtype_name(DType t);
/// Bits per element (4 for kI4).
int dtype_bits(DType t);
/// The storage dtype of a precision format (fp32 -> kF32, int4 -> kI4, ...).
DType dtype_of(Format f);
/// The precision format stored by a dtype, if it is one.
std::optional<Format> format_of(DType t);

using Shape = std::vector<int64_t>;

/// Number of elements of `shape`; throws Error(kInvalidInput) on negative dims or overflow.
int64_t shape_numel(std::span<const int64_t> shape);
/// "(2, 3, 4)" for messages.
std::string shape_str(std::span<const int64_t> shape);
/// C-order strides in elements.
Shape contiguous_strides(std::span<const int64_t> shape);

/// Scales of a quantized tensor (CONTRACT §1).
struct QuantParams {
  /// int8: one fp32 scale per tensor (size 1, axis = -1) or per channel along `axis`.
  std::vector<float> scales;
  /// int4: one fp16 scale (bits) per group of `group_size` along the last axis, row-major
  /// over (rows, groups per row).
  std::vector<uint16_t> scales_f16;
  int axis = -1;       ///< int8 per-channel axis (non-negative), or -1 for per tensor
  int group_size = 0;  ///< int4: values per scale group (32); 0 otherwise
};

class Tensor {
 public:
  Tensor() = default;

  /// A new, zero-filled, contiguous tensor that owns its storage.
  static Tensor zeros(Shape shape, DType dtype);
  /// The same without filling: the caller writes every element before reading any.
  static Tensor empty(Shape shape, DType dtype);
  /// A view of memory owned elsewhere; the caller keeps it alive. Strides default to C order.
  static Tensor borrow(void* data, Shape shape, DType dtype, Shape strides = {});

  const Shape& shape() const { return shape_; }
  const Shape& strides() const { return strides_; }
  int rank() const { return static_cast<int>(shape_.size()); }
  int64_t dim(int i) const { return shape_[static_cast<size_t>(i)]; }
  DType dtype() const { return dtype_; }
  int64_t numel() const { return numel_; }
  /// Bytes of element storage (int4 rows padded to whole bytes), excluding scales.
  size_t nbytes() const;
  /// Bytes of scale storage.
  size_t scale_bytes() const;
  bool is_contiguous() const;
  bool owns_storage() const { return owner_ != nullptr; }
  bool empty() const { return numel_ == 0; }

  void* data() { return data_; }
  const void* data() const { return data_; }
  template <typename T>
  T* data_as() {
    return static_cast<T*>(data_);
  }
  template <typename T>
  const T* data_as() const {
    return static_cast<const T*>(data_);
  }

  QuantParams& quant() { return quant_; }
  const QuantParams& quant() const { return quant_; }

  /// A contiguous copy that owns its storage (quantization parameters copied too).
  Tensor clone() const;

 private:
  Shape shape_;
  Shape strides_;
  DType dtype_ = DType::kF32;
  int64_t numel_ = 0;
  std::shared_ptr<void> owner_;
  void* data_ = nullptr;
  QuantParams quant_;
};

/// Storage of tensors of 32 MiB or more is kept for reuse after they die (at most 512 MiB, each
/// block for at most 5 s of inactivity): the next tensor of that size skips the page faults of
/// fresh memory. release_tensor_cache() frees every kept block now, trim_tensor_cache() those
/// idle for 5 s (a long-lived process calls it now and then); tensor_cache_bytes() says how much
/// is kept.
void release_tensor_cache();
void trim_tensor_cache();
size_t tensor_cache_bytes();

}  // namespace dynaprec
