// Protobuf <-> dynaprec conversions and the chunked tensor transfer (src/remote/wire.h).
#include "remote/wire.h"

#include <cmath>
#include <cstring>
#include <limits>
#include <set>

#include "dynaprec/error.h"

namespace dynaprec::remote {
namespace {

std::string printable(const std::string& s) {
  std::string o;
  for (char c : s.substr(0, 200)) o += (c >= 0x20 && c < 0x7f) ? c : '?';
  if (s.size() > 200) o += "...";
  return o;
}

[[noreturn]] void bad(const std::string& what) { throw Error(ErrorKind::kInvalidInput, what); }

}  // namespace

void to_wire(wire::Version* v) {
  v->set_major(kProtocolMajor);
  v->set_minor(kProtocolMinor);
  v->set_patch(0);
}

Format format_from_wire(uint32_t v, const std::string& where) {
  if (v >= kFormatCount) bad(where + ": format value " + std::to_string(v) + " is unknown");
  return static_cast<Format>(v);
}

uint64_t element_bytes(const std::vector<int64_t>& shape, DType dtype, const std::string& name) {
  if (shape.size() > 32)
    bad("tensor '" + printable(name) + "': rank " + std::to_string(shape.size()) + " is too large");
  uint64_t n = 1;
  for (int64_t d : shape) {
    if (d < 0) bad("tensor '" + printable(name) + "': negative dim in shape");
    if (d != 0 && n > std::numeric_limits<uint64_t>::max() / 16 / static_cast<uint64_t>(d))
      bad("tensor '" + printable(name) + "': shape overflows");
    n *= static_cast<uint64_t>(d);
  }
  if (dtype == DType::kI4) {
    const uint64_t k = shape.empty() ? 1 : static_cast<uint64_t>(shape.back());
    const uint64_t rows = k == 0 ? 0 : n / k;
    return rows * ((k + 1) / 2);
  }
  return n * static_cast<uint64_t>(dtype_bits(dtype) / 8);
}

void to_wire(const TensorMeta& m, wire::TensorMeta* w) {
  w->set_name(m.name);
  w->set_format(static_cast<uint32_t>(m.format));
  w->set_dtype(static_cast<uint32_t>(m.dtype));
  for (int64_t d : m.shape) w->add_shape(d);
  for (float s : m.scales) w->add_scales(s);
  for (uint16_t s : m.scales_f16) w->add_scales_f16(s);
  w->set_axis(m.axis);
  w->set_group_size(m.group_size);
  w->set_crc32(m.crc32);
  w->set_seq(m.seq);
  w->set_bytes(m.bytes);
}

TensorMeta from_wire(const wire::TensorMeta& w, uint64_t max_tensor_bytes) {
  TensorMeta m;
  m.name = w.name();
  const std::string where = "tensor '" + printable(m.name) + "'";
  if (m.name.empty()) bad("tensor with no name");
  m.format = format_from_wire(w.format(), where);
  if (w.dtype() >= static_cast<uint32_t>(DType::kCount))
    bad(where + ": dtype value " + std::to_string(w.dtype()) + " is unknown");
  m.dtype = static_cast<DType>(w.dtype());
  m.shape.assign(w.shape().begin(), w.shape().end());
  const uint64_t eb = element_bytes(m.shape, m.dtype, m.name);
  const uint64_t sb =
      static_cast<uint64_t>(w.scales_size()) * 4 + static_cast<uint64_t>(w.scales_f16_size()) * 2;
  if (eb > max_tensor_bytes || sb > max_tensor_bytes || eb + sb > max_tensor_bytes)
    bad(where + ": " + std::to_string(eb + sb) + " bytes exceed the limit of " +
        std::to_string(max_tensor_bytes));
  m.scales.assign(w.scales().begin(), w.scales().end());
  m.scales_f16.reserve(static_cast<size_t>(w.scales_f16_size()));
  for (uint32_t s : w.scales_f16()) {
    if (s > 0xffff) bad(where + ": fp16 scale value out of range");
    m.scales_f16.push_back(static_cast<uint16_t>(s));
  }
  m.axis = w.axis();
  m.group_size = w.group_size();
  m.crc32 = w.crc32();
  m.seq = w.seq();
  m.bytes = w.bytes();
  if (m.bytes != eb + sb)
    bad(where + ": bytes " + std::to_string(m.bytes) + " do not match its shape and scales (" +
        std::to_string(eb + sb) + ")");
  return m;
}

uint64_t encode_tensor(const Tensor& t0, const std::string& name, uint64_t seq,
                       uint64_t chunk_bytes, wire::TensorChunk* c,
                       const std::function<void(bool last)>& send) {
  const Tensor t = t0.is_contiguous() ? t0 : t0.clone();
  const TensorMeta m = tensor_meta(t, name, seq);
  const uint64_t n = t.nbytes();
  const char* p = static_cast<const char*>(t.data());
  uint64_t off = 0;
  c->Clear();
  to_wire(m, c->mutable_meta());
  do {
    if (off > 0) c->clear_meta();
    const uint64_t len = std::min<uint64_t>(chunk_bytes, n - off);
    c->set_offset(off);
    c->mutable_data()->assign(p + off, len);
    off += len;
    send(off >= n);
  } while (off < n);
  return m.bytes;
}

TensorAssembler::TensorAssembler(uint32_t count, uint64_t seq, uint64_t max_tensor_bytes,
                                 uint64_t max_total_bytes)
    : count_(count), seq_(seq), max_tensor_(max_tensor_bytes), max_total_(max_total_bytes) {}

void TensorAssembler::add(const wire::TensorChunk& c) {
  if (!open_) {
    if (received_ >= count_) bad("more tensors than announced (" + std::to_string(count_) + ")");
    if (!c.has_meta()) bad("tensor chunk without metadata where a new tensor starts");
    if (c.offset() != 0) bad("first chunk of a tensor at offset " + std::to_string(c.offset()));
    meta_ = from_wire(c.meta(), max_tensor_);
    if (meta_.seq != seq_)
      bad("tensor '" + printable(meta_.name) + "': seq " + std::to_string(meta_.seq) +
          " does not match the portion's " + std::to_string(seq_));
    if (out_.count(meta_.name)) bad("tensor '" + printable(meta_.name) + "' sent twice");
    if (meta_.bytes > max_total_ || tensor_bytes_ > max_total_ - meta_.bytes)
      bad("tensors exceed the limit of " + std::to_string(max_total_) + " bytes per call");
    expected_ = element_bytes(meta_.shape, meta_.dtype, meta_.name);
    cur_ = Tensor::empty(meta_.shape, meta_.dtype);
    cur_.quant().scales = meta_.scales;
    cur_.quant().scales_f16 = meta_.scales_f16;
    cur_.quant().axis = meta_.axis;
    cur_.quant().group_size = static_cast<int>(std::min<uint32_t>(meta_.group_size, 1u << 30));
    filled_ = 0;
    crc_ = 0;
    open_ = true;
  } else {
    if (c.has_meta()) bad("tensor '" + printable(meta_.name) + "': metadata again mid-tensor");
    if (c.offset() != filled_)
      bad("tensor '" + printable(meta_.name) + "': chunk at offset " + std::to_string(c.offset()) +
          ", expected " + std::to_string(filled_));
  }
  const std::string& d = c.data();
  if (d.size() > expected_ - filled_)
    bad("tensor '" + printable(meta_.name) + "': more data than its shape holds");
  if (!d.empty()) {
    std::memcpy(static_cast<char*>(cur_.data()) + filled_, d.data(), d.size());
    crc_ = crc32(d.data(), d.size(), crc_);  // while the chunk is in cache: no second pass
  }
  filled_ += d.size();
  if (filled_ == expected_) finish_current();
}

void TensorAssembler::finish_current() {
  verify_tensor(meta_, cur_, &crc_);
  tensor_bytes_ += meta_.bytes;
  out_[meta_.name] = std::move(cur_);
  cur_ = Tensor();
  open_ = false;
  ++received_;
}

TensorMap TensorAssembler::take() {
  if (!done())
    bad("the call ended after " + std::to_string(received_) + " of " + std::to_string(count_) +
        " tensors" + (open_ ? " (one incomplete)" : ""));
  return std::move(out_);
}

void to_wire(const ValueInfo& v, wire::ValueInfo* w) {
  w->set_name(v.name);
  w->set_dtype(static_cast<uint32_t>(v.dtype));
  for (const Dim& d : v.shape) {
    w->add_dims(d.size);
    w->add_symbols(d.symbol);
  }
}

ValueInfo from_wire(const wire::ValueInfo& w) {
  ValueInfo v;
  v.name = w.name();
  if (w.dtype() >= static_cast<uint32_t>(DType::kCount))
    bad("value '" + printable(v.name) + "': dtype value " + std::to_string(w.dtype()) +
        " is unknown");
  v.dtype = static_cast<DType>(w.dtype());
  if (w.symbols_size() != w.dims_size())
    bad("value '" + printable(v.name) + "': dims and symbols differ in length");
  for (int i = 0; i < w.dims_size(); ++i) v.shape.push_back({w.dims(i), w.symbols(i)});
  return v;
}

void to_wire(const LayerInfo& l, const std::vector<Format>& ladder, wire::LayerInfo* w) {
  w->set_name(l.name);
  w->set_op(l.op);
  w->set_formats(l.formats);
  w->set_weight_count(l.weight_count);
  for (Format f : ladder) w->add_ladder(static_cast<uint32_t>(f));
}

LayerInfo from_wire(const wire::LayerInfo& w, std::vector<Format>* ladder) {
  LayerInfo l;
  l.name = w.name();
  l.op = w.op();
  l.formats = w.formats();
  l.weight_count = w.weight_count();
  ladder->clear();
  for (uint32_t f : w.ladder())
    ladder->push_back(format_from_wire(f, "layer '" + printable(l.name) + "' ladder"));
  return l;
}

void to_wire(const PlanProposal& p, wire::PlanProposal* w) {
  w->set_seq(p.seq);
  for (const LayerOffer& o : p.layers) {
    auto* x = w->add_layers();
    x->set_layer(o.layer);
    x->set_op(static_cast<uint32_t>(o.op));
    x->set_format(static_cast<uint32_t>(o.format));
  }
}

PlanProposal from_wire(const wire::PlanProposal& w) {
  PlanProposal p;
  p.seq = w.seq();
  for (const auto& x : w.layers()) {
    // answer_proposal range-checks op and format (protocol.h); clamp so the cast is defined.
    LayerOffer o;
    o.layer = x.layer();
    o.op = static_cast<OpKind>(std::min<uint32_t>(x.op(), 255));
    o.format = static_cast<Format>(std::min<uint32_t>(x.format(), 255));
    p.layers.push_back(std::move(o));
  }
  return p;
}

void to_wire(const PlanReply& r, wire::PlanReply* w) {
  w->set_seq(r.seq);
  for (const LayerAnswer& a : r.layers) {
    auto* x = w->add_layers();
    x->set_layer(a.layer);
    x->set_requested(static_cast<uint32_t>(a.requested));
    x->set_agreed(static_cast<uint32_t>(a.agreed));
    x->set_reason(a.reason);
  }
}

PlanReply from_wire(const wire::PlanReply& w) {
  PlanReply r;
  r.seq = w.seq();
  for (const auto& x : w.layers()) {
    LayerAnswer a;
    a.layer = x.layer();
    a.requested = format_from_wire(x.requested(), "plan reply layer '" + printable(a.layer) + "'");
    a.agreed = format_from_wire(x.agreed(), "plan reply layer '" + printable(a.layer) + "'");
    a.reason = x.reason();
    r.layers.push_back(std::move(a));
  }
  return r;
}

void to_wire(const Plan& p, wire::Plan* w) {
  w->set_default_format(static_cast<uint32_t>(p.default_format));
  for (const auto& [l, f] : p.layers) (*w->mutable_layers())[l] = static_cast<uint32_t>(f);
  for (const auto& [n, f] : p.io) (*w->mutable_io())[n] = static_cast<uint32_t>(f);
}

Plan from_wire(const wire::Plan& w) {
  Plan p;
  p.default_format = format_from_wire(w.default_format(), "plan default");
  for (const auto& [l, f] : w.layers())
    p.layers[l] = format_from_wire(f, "plan layer '" + printable(l) + "'");
  for (const auto& [n, f] : w.io())
    p.io[n] = format_from_wire(f, "plan transfer of '" + printable(n) + "'");
  return p;
}

void to_wire(const QualityReport& q, wire::QualityReport* w) {
  w->set_layer(q.layer);
  w->set_format(static_cast<uint32_t>(q.format));
  w->set_sampled(q.sampled);
  w->set_sqnr_db(q.sqnr_db);
  for (float v : q.pred_sqnr_db) w->add_pred_sqnr_db(v);
  w->set_amax(q.amax);
  w->set_variance(q.variance);
  w->set_entropy(q.entropy);
  w->set_kl(q.kl);
  w->set_top1_agree(q.top1_agree);
  w->set_saturated(q.saturated);
  w->set_underflow(q.underflow);
  w->set_nan_count(q.nan_count);
  w->set_inf_count(q.inf_count);
  for (float v : q.custom) w->add_custom(v);
}

QualityReport from_wire(const wire::QualityReport& w) {
  QualityReport q;
  q.layer = w.layer();
  q.format = format_from_wire(w.format(), "quality report of layer " + std::to_string(w.layer()));
  q.sampled = w.sampled();
  q.sqnr_db = w.sqnr_db();
  for (int i = 0; i < w.pred_sqnr_db_size() && i < static_cast<int>(kFormatCount); ++i)
    q.pred_sqnr_db[static_cast<size_t>(i)] = w.pred_sqnr_db(i);
  q.amax = w.amax();
  q.variance = w.variance();
  q.entropy = w.entropy();
  q.kl = w.kl();
  q.top1_agree = w.top1_agree();
  q.saturated = w.saturated();
  q.underflow = w.underflow();
  q.nan_count = w.nan_count();
  q.inf_count = w.inf_count();
  // Custom metrics are registered on the host; the server cannot compute them (NaN).
  return q;
}

void to_wire(const RunStats& s, wire::RunStats* w) {
  for (const LayerRun& r : s.layers) {
    auto* x = w->add_layers();
    x->set_layer(r.layer);
    x->set_format(static_cast<uint32_t>(r.format));
    x->set_macs(r.macs);
    x->set_bytes(r.bytes);
    x->set_bytes_fp32(r.bytes_fp32);
    x->set_time_ms(r.time_ms);
    x->set_fallback(r.fallback);
  }
  w->set_time_ms(s.time_ms);
  for (const auto& [k, v] : s.op_time_ms) (*w->mutable_op_time_ms())[k] = v;
  for (const QualityReport& q : s.reports) to_wire(q, w->add_reports());
  w->set_monitor_ms(s.monitor_ms);
}

void from_wire(const wire::RunStats& w, RunStats* s) {
  s->layers.clear();
  for (const auto& x : w.layers()) {
    LayerRun r;
    r.layer = x.layer();
    r.format = format_from_wire(x.format(), "layer run " + std::to_string(x.layer()));
    r.macs = x.macs();
    r.bytes = x.bytes();
    r.bytes_fp32 = x.bytes_fp32();
    r.time_ms = x.time_ms();
    r.fallback = x.fallback();
    s->layers.push_back(std::move(r));
  }
  s->time_ms = w.time_ms();
  s->op_time_ms.clear();
  for (const auto& [k, v] : w.op_time_ms()) s->op_time_ms[k] = v;
  s->reports.clear();
  for (const auto& q : w.reports()) s->reports.push_back(from_wire(q));
  s->monitor_ms = w.monitor_ms();
}

}  // namespace dynaprec::remote
