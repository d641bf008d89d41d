// Host/device negotiation and per-tensor metadata (include/dynaprec/protocol.h).
//
// Everything here may see data that came off the wire: enum values are range-checked before
// they index a table, sizes from the peer are only compared with sizes we computed from our
// own tensor, and every refusal is an Error naming the tensor (or layer) and the field.
#include "dynaprec/protocol.h"

#include <isa-l/crc.h>

#include <bit>
#include <cmath>
#include <cstdio>
#include <limits>
#include <optional>
#include <set>
#include <string_view>

#include "dynaprec/convert.h"
#include "dynaprec/error.h"
#include "dynaprec/quantize.h"

namespace dynaprec {
namespace {

// Element bytes are hashed as stored; the wire is little-endian.
static_assert(std::endian::native == std::endian::little,
              "protocol.cc hashes element bytes as stored: a little-endian host is assumed");

// A name from a peer goes into messages; keep it to one readable line.
std::string printable(const std::string& name) {
  constexpr size_t kMax = 200;
  std::string s;
  for (char c : name.substr(0, kMax)) s += (c >= 0x20 && c < 0x7f) ? c : '?';
  if (name.size() > kMax) s += "...";
  return s;
}

[[noreturn]] void refuse(const std::string& name, const std::string& what) {
  throw Error(ErrorKind::kInvalidInput, "tensor '" + printable(name) + "': " + what);
}

std::string dims_str(const std::vector<int64_t>& shape) {
  if (shape.size() > 16) return "(" + std::to_string(shape.size()) + " dims)";
  return shape_str(shape);
}

uint32_t crc_scales(const std::vector<float>& scales, const std::vector<uint16_t>& scales_f16,
                    uint32_t crc) {
  unsigned char buf[256];
  size_t n = 0;
  const auto flush = [&] {
    crc = crc32(buf, n, crc);
    n = 0;
  };
  for (float s : scales) {
    const auto u = std::bit_cast<uint32_t>(s);
    for (int b = 0; b < 4; ++b) buf[n++] = static_cast<unsigned char>(u >> (8 * b));
    if (n + 4 > sizeof buf) flush();
  }
  for (uint16_t u : scales_f16) {
    buf[n++] = static_cast<unsigned char>(u);
    buf[n++] = static_cast<unsigned char>(u >> 8);
    if (n + 2 > sizeof buf) flush();
  }
  flush();
  return crc;
}

uint32_t tensor_crc(const Tensor& t) {
  const uint32_t crc = crc32(t.data(), t.nbytes());
  return crc_scales(t.quant().scales, t.quant().scales_f16, crc);
}

std::string format_value(Format f) {
  return f < Format::kCount ? std::string(format_name(f))
                            : "format value " + std::to_string(static_cast<int>(f));
}

}  // namespace

void check_peer_version(uint32_t major, uint32_t minor) {
  if (major == kProtocolMajor && minor <= kProtocolMinor) return;
  throw Error(ErrorKind::kUnsupported, "peer speaks protocol " + std::to_string(major) + "." +
                                           std::to_string(minor) + ", this build " +
                                           std::to_string(kProtocolMajor) + "." +
                                           std::to_string(kProtocolMinor) +
                                           " (the majors must match and the peer's minor "
                                           "must not be newer)");
}

uint32_t crc32(const void* data, size_t n, uint32_t crc) {
  if (n == 0) return crc;
  return ::crc32_gzip_refl(crc, static_cast<const unsigned char*>(data), n);
}

Format transfer_format(Format f) {
  switch (f) {
    case Format::kFp8E4M3:
    case Format::kFp8E5M2:
      return Format::kBf16;
    case Format::kInt4:
      return Format::kInt8;
    default:
      return f;
  }
}

Tensor encode_transfer(const Tensor& t, Format f) {
  if (t.dtype() != DType::kF32 || f == Format::kFp32 || f >= Format::kCount || t.numel() == 0)
    return t;
  const Tensor c = t.is_contiguous() ? t : t.clone();
  const float a = max_abs(c);
  const FormatInfo& fi = format_info(f);
  if (!std::isfinite(a) || (fi.kind == FormatKind::kFloat && a > fi.max_finite)) return c;
  return f == Format::kInt4 ? quantize(c, f) : quantize_per_tensor(c, f, a);
}

Tensor decode_transfer(const Tensor& t) {
  if (t.dtype() == DType::kF32 || !format_of(t.dtype())) return t;
  return dequantize(t);
}

TensorMeta tensor_meta(const Tensor& t, const std::string& name, uint64_t seq) {
  if (!t.is_contiguous()) refuse(name, "not contiguous (clone() it before sending)");
  TensorMeta m;
  m.name = name;
  m.dtype = t.dtype();
  m.format = format_of(t.dtype()).value_or(Format::kFp32);
  m.shape = t.shape();
  m.scales = t.quant().scales;
  m.scales_f16 = t.quant().scales_f16;
  m.axis = t.quant().axis;
  m.group_size = t.quant().group_size < 0 ? 0 : static_cast<uint32_t>(t.quant().group_size);
  m.crc32 = tensor_crc(t);
  m.seq = seq;
  m.bytes = t.nbytes() + t.scale_bytes();
  return m;
}

void verify_tensor(const TensorMeta& m, const Tensor& t, const uint32_t* element_crc) {
  const std::string& n = m.name;
  // The metadata on its own: enum values in range and consistent with each other.
  if (m.format >= Format::kCount)
    refuse(n, "format value " + std::to_string(static_cast<int>(m.format)) + " is unknown");
  if (m.dtype >= DType::kCount)
    refuse(n, "dtype value " + std::to_string(static_cast<int>(m.dtype)) + " is unknown");
  const std::optional<Format> stored = format_of(m.dtype);
  if (stored ? *stored != m.format : m.format != Format::kFp32)
    refuse(n, "format " + std::string(format_name(m.format)) + " does not store dtype " +
                  std::string(dtype_name(m.dtype)));
  if (!t.is_contiguous()) refuse(n, "the received tensor is not contiguous");

  // Against the tensor.
  if (m.dtype != t.dtype())
    refuse(n, "dtype " + std::string(dtype_name(m.dtype)) + " expected, got " +
                  std::string(dtype_name(t.dtype())));
  if (m.shape.size() != t.shape().size())
    refuse(n, "rank " + std::to_string(m.shape.size()) + " expected, got " +
                  std::to_string(t.shape().size()));
  if (m.shape != t.shape())
    refuse(n, "shape " + dims_str(m.shape) + " expected, got " + shape_str(t.shape()));
  // From here m.shape == t.shape(): sizes computed from it are those of a real tensor.

  const QuantParams& q = t.quant();
  const int rank = t.rank();
  if (m.axis != q.axis)
    refuse(n, "axis " + std::to_string(m.axis) + " expected, got " + std::to_string(q.axis));
  if (static_cast<int64_t>(m.group_size) != static_cast<int64_t>(q.group_size))
    refuse(n, "group size " + std::to_string(m.group_size) + " expected, got " +
                  std::to_string(q.group_size));
  if (m.scales.size() != q.scales.size())
    refuse(n, "scale count " + std::to_string(m.scales.size()) + " expected, got " +
                  std::to_string(q.scales.size()));
  if (m.scales_f16.size() != q.scales_f16.size())
    refuse(n, "fp16 scale count " + std::to_string(m.scales_f16.size()) + " expected, got " +
                  std::to_string(q.scales_f16.size()));

  // The scales must fit the dtype and shape (both sides agree by now; check the layout).
  if (m.dtype == DType::kI8) {
    if (m.axis < -1 || m.axis >= rank)
      refuse(n, "axis " + std::to_string(m.axis) + " is out of range for rank " +
                    std::to_string(rank));
    const int64_t want = m.axis < 0 ? 1 : t.dim(m.axis);
    if (static_cast<int64_t>(m.scales.size()) != want)
      refuse(n, "scale count " + std::to_string(m.scales.size()) + " does not fit " +
                    (m.axis < 0
                         ? std::string("a per-tensor scale (1)")
                         : "axis " + std::to_string(m.axis) + " of shape " + shape_str(t.shape())));
    if (!m.scales_f16.empty() || m.group_size != 0)
      refuse(n, "int8 takes fp32 scales only, not fp16 group scales");
  } else if (m.dtype == DType::kI4) {
    if (m.group_size == 0) refuse(n, "group size 0 for int4");
    if (m.axis != -1) refuse(n, "axis " + std::to_string(m.axis) + " for int4 (groups only)");
    const int64_t k = rank == 0 ? 1 : t.shape().back();
    const int64_t rows = k == 0 ? 0 : t.numel() / k;
    const int64_t groups =
        (k + static_cast<int64_t>(m.group_size) - 1) / static_cast<int64_t>(m.group_size);
    if (rows != 0 && groups > std::numeric_limits<int64_t>::max() / rows)
      refuse(n, "fp16 scale count overflows");
    if (static_cast<int64_t>(m.scales_f16.size()) != rows * groups)
      refuse(n, "fp16 scale count " + std::to_string(m.scales_f16.size()) + " does not fit " +
                    std::to_string(rows) + " rows of " + std::to_string(groups) + " groups of " +
                    std::to_string(m.group_size));
    if (!m.scales.empty()) refuse(n, "int4 takes fp16 group scales only, not fp32 scales");
  } else if (m.axis != -1 || m.group_size != 0 || !m.scales_f16.empty()) {
    refuse(n, std::string(dtype_name(m.dtype)) + " takes no axis, group size or fp16 scales");
  }

  const uint64_t bytes = t.nbytes() + t.scale_bytes();
  if (m.bytes != bytes)
    refuse(n, "bytes " + std::to_string(m.bytes) + " expected, got " + std::to_string(bytes));
  const uint32_t crc = element_crc
                           ? crc_scales(t.quant().scales, t.quant().scales_f16, *element_crc)
                           : tensor_crc(t);
  if (m.crc32 != crc) {
    char buf[64];
    std::snprintf(buf, sizeof buf, "checksum 0x%08x expected, got 0x%08x", m.crc32, crc);
    refuse(n, buf);
  }
}

bool PlanReply::all_accepted() const {
  for (const LayerAnswer& a : layers)
    if (a.agreed != a.requested) return false;
  return true;
}

Plan PlanReply::plan() const {
  Plan p;
  for (const LayerAnswer& a : layers) p.layers[a.layer] = a.agreed;
  return p;
}

PlanReply answer_proposal(const Device& dev, const PlanProposal& p) {
  // Validate the whole proposal before answering any of it.
  std::set<std::string_view> names;
  for (size_t i = 0; i < p.layers.size(); ++i) {
    const LayerOffer& o = p.layers[i];
    const std::string where = "plan " + std::to_string(p.seq) + ", layer " + std::to_string(i) +
                              " '" + printable(o.layer) + "': ";
    if (o.layer.empty())
      throw Error(ErrorKind::kInvalidInput,
                  "plan " + std::to_string(p.seq) + ", layer " + std::to_string(i) + ": no name");
    if (o.op >= OpKind::kCount)
      throw Error(ErrorKind::kInvalidInput,
                  where + "op value " + std::to_string(static_cast<int>(o.op)) + " is unknown");
    if (o.format >= Format::kCount)
      throw Error(
          ErrorKind::kInvalidInput,
          where + "format value " + std::to_string(static_cast<int>(o.format)) + " is unknown");
    if (!names.insert(o.layer).second) throw Error(ErrorKind::kInvalidInput, where + "named twice");
  }

  const std::string& device = dev.caps().name;
  PlanReply r;
  r.seq = p.seq;
  r.layers.reserve(p.layers.size());
  for (const LayerOffer& o : p.layers) {
    LayerAnswer a;
    a.layer = o.layer;
    a.requested = a.agreed = o.format;
    const Format want[] = {o.format};
    if (const std::optional<Unsupported> why = dev.supports(o.op, want)) {
      size_t at = 0;
      while (kQualityOrder[at] != o.format) ++at;
      std::optional<Format> found;
      for (size_t d = 1; !found && d <= at; ++d) {  // better, nearest first
        const Format f[] = {kQualityOrder[at - d]};
        if (!dev.supports(o.op, f)) found = f[0];
      }
      for (size_t i = at + 1; !found && i < kQualityOrder.size(); ++i) {  // then worse
        const Format f[] = {kQualityOrder[i]};
        if (!dev.supports(o.op, f)) found = f[0];
      }
      if (!found)
        throw Error(ErrorKind::kUnsupported,
                    "layer '" + printable(o.layer) + "' (" + std::string(op_name(o.op)) +
                        "): " + device + " supports no format for it (" + format_value(o.format) +
                        ": " + why->message() + ")");
      a.agreed = *found;
      a.reason = format_value(o.format) + " not supported for " + std::string(op_name(o.op)) +
                 " on " + device + ": " + why->message() + "; using " +
                 std::string(format_name(a.agreed));
    }
    r.layers.push_back(std::move(a));
  }
  return r;
}

}  // namespace dynaprec
