#include "dynaprec/tensor.h"

#include <array>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <mutex>
#include <vector>

#include "dynaprec/error.h"

namespace dynaprec {
namespace {

struct DTypeRow {
  DType dtype;
  std::string_view name;
  int bits;
};

constexpr std::array<DTypeRow, static_cast<size_t>(DType::kCount)> kDTypes = {{
    {DType::kF32, "float32", 32},
    {DType::kBF16, "bfloat16", 16},
    {DType::kF16, "float16", 16},
    {DType::kF8E4M3, "float8_e4m3fn", 8},
    {DType::kF8E5M2, "float8_e5m2", 8},
    {DType::kI8, "int8", 8},
    {DType::kI4, "int4", 4},
    {DType::kF64, "float64", 64},
    {DType::kI16, "int16", 16},
    {DType::kI32, "int32", 32},
    {DType::kI64, "int64", 64},
    {DType::kU8, "uint8", 8},
    {DType::kBool, "bool", 8},
}};

constexpr bool dtype_table_dense() {
  for (size_t i = 0; i < kDTypes.size(); ++i)
    if (static_cast<size_t>(kDTypes[i].dtype) != i) return false;
  return true;
}
static_assert(dtype_table_dense());
// The first DType values mirror Format so that dtype_of/format_of are identities there.
static_assert(static_cast<int>(DType::kI4) == static_cast<int>(Format::kInt4));
static_assert(kFormatCount == 7, "a new Format needs a DType row");

constexpr size_t kAlign = 64;

// Storage of tensors of 64 KiB or more is kept after the tensor dies and handed to the next
// tensor of the same (rounded) size. glibc maps such blocks afresh (from 128 KiB, a threshold it
// raises only up to 32 MiB) and unmaps them, or trims its heap, on free, so without this each
// tensor pays its page faults again: on this project's VM first touches cost about as much as
// the copies of a remote transfer (docs/protocol.md), and a quarter of the detector's time
// (390 k faults in 22 runs; 64 -> 48 ms with them gone). Bounded: at most kMaxTotal bytes wait
// here, a block idle for kMaxIdle is freed at the next allocation or release, and
// release_tensor_cache() frees all.
class BigBlocks {
 public:
#ifdef __SANITIZE_ADDRESS__
  // AddressSanitizer must see every free to find uses after it: nothing is kept.
  static constexpr bool kEnabled = false;
#else
  static constexpr bool kEnabled = true;
#endif
  static constexpr size_t kMin = 64u << 10, kMaxTotal = 512u << 20;
  // Sizes are rounded up to a multiple of this (at most 1/8 more), so that the tensors of
  // nearby shapes share blocks.
  static constexpr size_t round(size_t bytes) {
    size_t step = kMin;
    while (step < (bytes >> 3) && step < (2u << 20)) step <<= 1;
    return (bytes + step - 1) / step * step;
  }
  static constexpr std::chrono::seconds kMaxIdle{5};

  static BigBlocks& instance() {
    static BigBlocks* c = new BigBlocks;  // never destroyed: tensors may die after main()
    return *c;
  }
  void* take(size_t size) {
    std::lock_guard<std::mutex> lk(mu_);
    evict_idle(Clock::now());
    for (size_t i = blocks_.size(); i-- > 0;)
      if (blocks_[i].size == size) {
        void* p = blocks_[i].p;
        total_ -= size;
        blocks_.erase(blocks_.begin() + static_cast<std::ptrdiff_t>(i));
        return p;
      }
    return nullptr;
  }
  void give(void* p, size_t size) {
    std::lock_guard<std::mutex> lk(mu_);
    evict_idle(Clock::now());
    if (size > kMaxTotal) {
      std::free(p);
      return;
    }
    while (total_ + size > kMaxTotal) pop_oldest();
    blocks_.push_back({p, size, Clock::now()});
    total_ += size;
  }
  void release(bool all) {
    std::lock_guard<std::mutex> lk(mu_);
    if (all)
      while (!blocks_.empty()) pop_oldest();
    else
      evict_idle(Clock::now());
  }
  size_t bytes() {
    std::lock_guard<std::mutex> lk(mu_);
    return total_;
  }

 private:
  using Clock = std::chrono::steady_clock;
  struct Block {
    void* p;
    size_t size;
    Clock::time_point freed;
  };
  void pop_oldest() {
    std::free(blocks_.front().p);
    total_ -= blocks_.front().size;
    blocks_.erase(blocks_.begin());
  }
  void evict_idle(Clock::time_point now) {
    while (!blocks_.empty() && now - blocks_.front().freed > kMaxIdle) pop_oldest();
  }
  std::mutex mu_;
  std::vector<Block> blocks_;  // oldest first
  size_t total_ = 0;
};

}  // namespace

std::string_view dtype_name(DType t) { return kDTypes.at(static_cast<size_t>(t)).name; }
int dtype_bits(DType t) { return kDTypes.at(static_cast<size_t>(t)).bits; }

DType dtype_of(Format f) {
  DP_CHECK(f < Format::kCount);
  return static_cast<DType>(static_cast<uint8_t>(f));
}

std::optional<Format> format_of(DType t) {
  if (static_cast<size_t>(t) < kFormatCount) return static_cast<Format>(static_cast<uint8_t>(t));
  return std::nullopt;
}

int64_t shape_numel(std::span<const int64_t> shape) {
  // The product of the non-zero dims must fit too: strides are computed from it even when
  // another dim is 0 (numpy refuses such shapes as well).
  int64_t n = 1;
  bool zero = false;
  for (int64_t d : shape) {
    if (d < 0)
      throw Error(ErrorKind::kInvalidInput, "negative dimension in shape " + shape_str(shape));
    if (d == 0) {
      zero = true;
      continue;
    }
    if (n > std::numeric_limits<int64_t>::max() / d)
      throw Error(ErrorKind::kInvalidInput,
                  "shape " + shape_str(shape) + " has more elements than fit in 64 bits");
    n *= d;
  }
  return zero ? 0 : n;
}

std::string shape_str(std::span<const int64_t> shape) {
  std::string s = "(";
  for (size_t i = 0; i < shape.size(); ++i) {
    if (i) s += ", ";
    s += std::to_string(shape[i]);
  }
  if (shape.size() == 1) s += ",";
  return s + ")";
}

Shape contiguous_strides(std::span<const int64_t> shape) {
  Shape strides(shape.size());
  int64_t s = 1;
  for (size_t i = shape.size(); i-- > 0;) {
    strides[i] = s;
    s *= shape[i] > 0 ? shape[i] : 1;
  }
  return strides;
}

size_t Tensor::nbytes() const {
  if (dtype_ == DType::kI4) {
    const int64_t k = shape_.empty() ? 1 : shape_.back();
    const int64_t rows = k == 0 ? 0 : numel_ / k;
    return static_cast<size_t>(rows) * static_cast<size_t>((k + 1) / 2);
  }
  return static_cast<size_t>(numel_) * static_cast<size_t>(dtype_bits(dtype_) / 8);
}

size_t Tensor::scale_bytes() const {
  return quant_.scales.size() * sizeof(float) + quant_.scales_f16.size() * sizeof(uint16_t);
}

bool Tensor::is_contiguous() const {
  if (numel_ <= 1) return true;
  Shape c = contiguous_strides(shape_);
  for (size_t i = 0; i < shape_.size(); ++i)
    if (shape_[i] != 1 && strides_[i] != c[i]) return false;
  return true;
}

Tensor Tensor::zeros(Shape shape, DType dtype) {
  Tensor t = empty(std::move(shape), dtype);
  std::memset(t.data_, 0, t.nbytes());
  return t;
}

Tensor Tensor::empty(Shape shape, DType dtype) {
  Tensor t;
  t.numel_ = shape_numel(shape);
  t.strides_ = contiguous_strides(shape);
  t.shape_ = std::move(shape);
  t.dtype_ = dtype;
  size_t bytes = t.nbytes();
  size_t alloc = (bytes + kAlign - 1) / kAlign * kAlign;
  if (alloc == 0) alloc = kAlign;
  const size_t tail = alloc - bytes;
  const bool big = BigBlocks::kEnabled && alloc >= BigBlocks::kMin;
  if (big) alloc = BigBlocks::round(alloc);
  void* p = big ? BigBlocks::instance().take(alloc) : nullptr;
  if (p == nullptr) p = std::aligned_alloc(kAlign, alloc);
  if (p == nullptr)
    throw Error(ErrorKind::kIo, "out of memory allocating " + std::to_string(alloc) +
                                    " bytes for a tensor of shape " + shape_str(t.shape_));
  if (tail) std::memset(static_cast<char*>(p) + bytes, 0, tail);  // the tail
  if (big)
    t.owner_ = std::shared_ptr<void>(p, [alloc](void* q) { BigBlocks::instance().give(q, alloc); });
  else
    t.owner_ = std::shared_ptr<void>(p, [](void* q) { std::free(q); });
  t.data_ = p;
  return t;
}

Tensor Tensor::borrow(void* data, Shape shape, DType dtype, Shape strides) {
  Tensor t;
  t.numel_ = shape_numel(shape);
  if (strides.empty()) strides = contiguous_strides(shape);
  DP_CHECK(strides.size() == shape.size(), "strides rank differs from shape rank");
  t.strides_ = std::move(strides);
  t.shape_ = std::move(shape);
  t.dtype_ = dtype;
  t.data_ = data;
  return t;
}

Tensor Tensor::clone() const {
  Tensor out = zeros(shape_, dtype_);
  out.quant_ = quant_;
  if (numel_ == 0) return out;
  if (is_contiguous() || dtype_ == DType::kI4) {
    DP_CHECK(dtype_ != DType::kI4 || is_contiguous(), "int4 tensors are always contiguous");
    std::memcpy(out.data_, data_, nbytes());
    return out;
  }
  // Strided copy, element by element in C order.
  const size_t esize = static_cast<size_t>(dtype_bits(dtype_) / 8);
  std::vector<int64_t> idx(shape_.size(), 0);
  auto* dst = static_cast<uint8_t*>(out.data_);
  const auto* src = static_cast<const uint8_t*>(data_);
  for (int64_t n = 0; n < numel_; ++n) {
    int64_t off = 0;
    for (size_t i = 0; i < shape_.size(); ++i) off += idx[i] * strides_[i];
    std::memcpy(dst + static_cast<size_t>(n) * esize, src + off * static_cast<int64_t>(esize),
                esize);
    for (size_t i = shape_.size(); i-- > 0;) {
      if (++idx[i] < shape_[i]) break;
      idx[i] = 0;
    }
  }
  return out;
}

void release_tensor_cache() { BigBlocks::instance().release(true); }
void trim_tensor_cache() { BigBlocks::instance().release(false); }
size_t tensor_cache_bytes() { return BigBlocks::instance().bytes(); }

}  // namespace dynaprec
