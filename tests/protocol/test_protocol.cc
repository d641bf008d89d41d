// The protocol (include/dynaprec/protocol.h): CRC-32, per-tensor metadata and its verification,
// the device spec that lets the CPU device lack formats, and plan negotiation with
// counter-offers along kQualityOrder.
#include "dynaprec/protocol.h"

#include <gtest/gtest.h>

#include <cstring>
#include <initializer_list>
#include <limits>
#include <string>
#include <vector>

#include "dynaprec/error.h"
#include "dynaprec/quantize.h"
#include "kernels/matmul_util.h"

namespace dynaprec {
namespace {

// Runs `f`, expecting Error(kind) whose message contains every one of `parts`.
template <typename F>
void expect_error(F&& f, ErrorKind kind, std::vector<std::string> parts) {
  try {
    f();
    ADD_FAILURE() << "no error; expected one containing '" << parts.front() << "'";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), kind) << e.what();
    for (const std::string& p : parts)
      EXPECT_NE(std::string(e.what()).find(p), std::string::npos)
          << "'" << p << "' not in: " << e.what();
  }
}

// verify_tensor(m, t) must refuse with the tensor and the field named.
void expect_refused(const TensorMeta& m, const Tensor& t, const std::string& field) {
  SCOPED_TRACE(field);
  expect_error([&] { verify_tensor(m, t); }, ErrorKind::kInvalidInput,
               {"tensor '" + m.name + "': ", field});
}

// ---------------------------------------------------------------------------------------------
// CRC-32

TEST(ProtocolCrc, KnownVectors) {
  EXPECT_EQ(crc32("123456789", 9), 0xCBF43926u);
  EXPECT_EQ(crc32("", 0), 0u);
  EXPECT_EQ(crc32("a", 1), 0xE8B7BE43u);
  const char fox[] = "The quick brown fox jumps over the lazy dog";
  EXPECT_EQ(crc32(fox, sizeof fox - 1), 0x414FA339u);
  // Continuing from an earlier value is the same as one pass.
  EXPECT_EQ(crc32("456789", 6, crc32("123", 3)), 0xCBF43926u);
}

// The CRC as its definition says, one bit at a time (reflected polynomial 0xEDB88320), against
// the fast kernels on every length up to 300 and every misalignment, continuing from random
// values, and on 1 MiB.
uint32_t crc32_bitwise(const unsigned char* p, size_t n, uint32_t crc) {
  crc = ~crc;
  for (size_t i = 0; i < n; ++i) {
    crc ^= p[i];
    for (int b = 0; b < 8; ++b) crc = (crc >> 1) ^ (0xEDB88320u & (0u - (crc & 1u)));
  }
  return ~crc;
}

TEST(ProtocolCrc, EqualsTheBitwiseDefinition) {
  std::vector<unsigned char> buf((1 << 20) + 64);
  uint32_t s = 12345;
  for (auto& c : buf) c = static_cast<unsigned char>((s = s * 1103515245u + 12345u) >> 16);
  for (size_t n = 0; n <= 300; ++n)
    for (size_t off = 0; off < 64; off += 7) {
      const uint32_t init = s = s * 1103515245u + 12345u;
      ASSERT_EQ(crc32(buf.data() + off, n, init), crc32_bitwise(buf.data() + off, n, init))
          << "length " << n << " offset " << off;
    }
  EXPECT_EQ(crc32(buf.data() + 3, 1 << 20), crc32_bitwise(buf.data() + 3, 1 << 20, 0));
}

// ---------------------------------------------------------------------------------------------
// Transfer formats

TEST(ProtocolTransfer, FormatsFollowTheDevicesActivationFormats) {
  EXPECT_EQ(transfer_format(Format::kFp32), Format::kFp32);
  EXPECT_EQ(transfer_format(Format::kBf16), Format::kBf16);
  EXPECT_EQ(transfer_format(Format::kFp16), Format::kFp16);
  EXPECT_EQ(transfer_format(Format::kFp8E4M3), Format::kBf16);
  EXPECT_EQ(transfer_format(Format::kFp8E5M2), Format::kBf16);
  EXPECT_EQ(transfer_format(Format::kInt8), Format::kInt8);
  EXPECT_EQ(transfer_format(Format::kInt4), Format::kInt8);
}

// Small tensors and one of several pieces (encode/decode_transfer split large ones over the
// pool's threads, the largest value in the last piece): quantize's codes and round_trip's values,
// bit for bit.
TEST(ProtocolTransfer, NarrowsFloat32AsTheFormatsDefineAndDecodesBack) {
  Tensor big = test::gaussian({3, 70001}, 13);
  big.data_as<float>()[3 * 70001 - 2] = -9.0f;
  for (const Tensor& x : {test::gaussian({3, 5, 7}, 11), big})
    for (Format f : {Format::kBf16, Format::kFp16, Format::kFp8E4M3, Format::kFp8E5M2,
                     Format::kInt8, Format::kInt4}) {
      SCOPED_TRACE(std::string(format_name(f)) + " " + std::to_string(x.numel()));
      const Tensor e = encode_transfer(x, f);
      const Tensor want = quantize(x, f);
      ASSERT_EQ(e.nbytes(), want.nbytes());
      EXPECT_EQ(std::memcmp(e.data(), want.data(), e.nbytes()), 0);
      EXPECT_EQ(e.quant().scales, want.quant().scales);
      EXPECT_EQ(e.dtype(), dtype_of(f));
      EXPECT_LT(e.nbytes() + e.scale_bytes(), x.nbytes() / 2 + 64 + x.nbytes() / 64);
      if (f == Format::kInt8) {
        ASSERT_EQ(e.quant().scales.size(), 1u);  // one scale for the tensor
        EXPECT_EQ(e.quant().axis, -1);
      }
      // Exactly CONTRACT §1's round trip, and the metadata verifies.
      const Tensor d = decode_transfer(e), r = round_trip(x, f);
      ASSERT_EQ(d.dtype(), DType::kF32);
      ASSERT_EQ(d.shape(), x.shape());
      EXPECT_EQ(std::memcmp(d.data(), r.data(), d.nbytes()), 0);
      EXPECT_NO_THROW(verify_tensor(tensor_meta(e, "x", 1), e));
    }
}

TEST(ProtocolTransfer, KeepsWhatTheFormatCannotHold) {
  Tensor x = test::gaussian({64}, 12);
  EXPECT_EQ(encode_transfer(x, Format::kFp32).data(), x.data());  // fp32: as it is
  x.data_as<float>()[5] = std::numeric_limits<float>::infinity();
  for (Format f : {Format::kInt8, Format::kBf16, Format::kFp16}) {
    const Tensor e = encode_transfer(x, f);  // inf: int8 cannot hold it; kept fp32 everywhere
    EXPECT_EQ(e.dtype(), DType::kF32);
    EXPECT_EQ(std::memcmp(e.data(), x.data(), x.nbytes()), 0);
  }
  Tensor big = test::gaussian({200000}, 14);  // several pieces, the inf in the last one
  big.data_as<float>()[199990] = std::numeric_limits<float>::infinity();
  for (Format f : {Format::kInt8, Format::kBf16})
    EXPECT_EQ(encode_transfer(big, f).dtype(), DType::kF32);
  x.data_as<float>()[5] = 70000.0f;  // beyond fp16's largest finite value
  EXPECT_EQ(encode_transfer(x, Format::kFp16).dtype(), DType::kF32);
  EXPECT_EQ(encode_transfer(x, Format::kBf16).dtype(), DType::kBF16);
  Tensor ids = Tensor::zeros({4}, DType::kI64);  // other dtypes are never narrowed
  EXPECT_EQ(encode_transfer(ids, Format::kInt8).dtype(), DType::kI64);
  EXPECT_EQ(decode_transfer(ids).dtype(), DType::kI64);
  const Tensor empty = Tensor::zeros({0, 3}, DType::kF32);
  EXPECT_EQ(encode_transfer(empty, Format::kInt8).numel(), 0);
}

// ---------------------------------------------------------------------------------------------
// Tensor metadata

struct Case {
  const char* what;
  Tensor t;
};

std::vector<Case> round_trip_cases() {
  const Tensor x = test::gaussian({6, 70}, 1);  // K = 70: three int4 groups, the last partial
  std::vector<Case> c;
  c.push_back({"fp32", x.clone()});
  c.push_back({"bf16", quantize(x, Format::kBf16)});
  c.push_back({"fp16", quantize(x, Format::kFp16)});
  c.push_back({"fp8e4m3", quantize(x, Format::kFp8E4M3)});
  c.push_back({"int8 per tensor", quantize(x, Format::kInt8)});
  c.push_back({"int8 per channel, axis 0", quantize(x, Format::kInt8, 0)});
  c.push_back({"int8 per channel, axis 1", quantize(x, Format::kInt8, 1)});
  c.push_back({"int4 groups", quantize(x, Format::kInt4)});
  c.push_back({"int4 odd K", quantize(test::gaussian({3, 33}, 2), Format::kInt4)});
  Tensor ids = Tensor::zeros({4}, DType::kI64);
  for (int i = 0; i < 4; ++i) ids.data_as<int64_t>()[i] = 1000 + i;
  c.push_back({"int64", ids});
  c.push_back({"empty", Tensor::zeros({0, 5}, DType::kF32)});
  return c;
}

TEST(ProtocolMeta, RoundTripsEveryKindOfTensor) {
  for (const Case& c : round_trip_cases()) {
    SCOPED_TRACE(c.what);
    const TensorMeta m = tensor_meta(c.t, "w", 7);
    EXPECT_EQ(m.name, "w");
    EXPECT_EQ(m.seq, 7u);
    EXPECT_EQ(m.dtype, c.t.dtype());
    EXPECT_EQ(m.shape, c.t.shape());
    EXPECT_EQ(m.bytes, c.t.nbytes() + c.t.scale_bytes());
    EXPECT_EQ(m.scales, c.t.quant().scales);
    EXPECT_EQ(m.scales_f16, c.t.quant().scales_f16);
    EXPECT_EQ(m.axis, c.t.quant().axis);
    EXPECT_NO_THROW(verify_tensor(m, c.t));
    // The receiver's copy verifies too.
    EXPECT_NO_THROW(verify_tensor(m, c.t.clone()));
  }
}

TEST(ProtocolMeta, FillsTheQuantizationSlots) {
  const Tensor x = test::gaussian({6, 70}, 1);
  const TensorMeta f32 = tensor_meta(x, "x", 0);
  EXPECT_EQ(f32.format, Format::kFp32);
  EXPECT_TRUE(f32.scales.empty());
  EXPECT_EQ(f32.axis, -1);
  const TensorMeta pt = tensor_meta(quantize(x, Format::kInt8), "x", 0);
  EXPECT_EQ(pt.format, Format::kInt8);
  EXPECT_EQ(pt.scales.size(), 1u);
  const TensorMeta pc = tensor_meta(quantize(x, Format::kInt8, 1), "x", 0);
  EXPECT_EQ(pc.axis, 1);
  EXPECT_EQ(pc.scales.size(), 70u);
  const TensorMeta g = tensor_meta(quantize(x, Format::kInt4), "x", 0);
  EXPECT_EQ(g.format, Format::kInt4);
  EXPECT_EQ(g.group_size, 32u);
  EXPECT_EQ(g.scales_f16.size(), 6u * 3u);
  EXPECT_EQ(g.bytes, 6u * 35u + 6u * 3u * 2u);
  Tensor ids = Tensor::zeros({4}, DType::kI64);
  const TensorMeta plain = tensor_meta(ids, "ids", 0);
  EXPECT_EQ(plain.format, Format::kFp32);
  EXPECT_EQ(plain.dtype, DType::kI64);
}

TEST(ProtocolMeta, ChecksumIsOverElementsThenLittleEndianScales) {
  const Tensor q = quantize(test::gaussian({4, 8}, 3), Format::kInt8, 0);
  uint32_t crc = crc32(q.data(), q.nbytes());
  for (float s : q.quant().scales) {
    uint32_t u;
    std::memcpy(&u, &s, 4);
    const unsigned char le[4] = {static_cast<unsigned char>(u), static_cast<unsigned char>(u >> 8),
                                 static_cast<unsigned char>(u >> 16),
                                 static_cast<unsigned char>(u >> 24)};
    crc = crc32(le, 4, crc);
  }
  EXPECT_EQ(tensor_meta(q, "q", 0).crc32, crc);

  const Tensor g = quantize(test::gaussian({2, 40}, 4), Format::kInt4);
  uint32_t gcrc = crc32(g.data(), g.nbytes());
  for (uint16_t u : g.quant().scales_f16) {
    const unsigned char le[2] = {static_cast<unsigned char>(u), static_cast<unsigned char>(u >> 8)};
    gcrc = crc32(le, 2, gcrc);
  }
  EXPECT_EQ(tensor_meta(g, "g", 0).crc32, gcrc);
}

TEST(ProtocolMeta, RefusesEveryKindOfMismatchNamingTheField) {
  const Tensor x = test::gaussian({6, 70}, 5);
  const Tensor pc = quantize(x, Format::kInt8, 0);
  const Tensor g = quantize(x, Format::kInt4);
  const TensorMeta mx = tensor_meta(x, "layer1.weight", 3);
  const TensorMeta mpc = tensor_meta(pc, "layer1.weight", 3);
  const TensorMeta mg = tensor_meta(g, "layer1.weight", 3);

  {  // one element byte flipped in transit
    Tensor t = pc.clone();
    t.data_as<uint8_t>()[17] ^= 0x01;
    expect_refused(mpc, t, "checksum");
  }
  {  // one scale changed
    Tensor t = pc.clone();
    t.quant().scales[2] *= 2.0f;
    expect_refused(mpc, t, "checksum");
    Tensor u = g.clone();
    u.quant().scales_f16[1] ^= 0x0100;
    expect_refused(mg, u, "checksum");
  }
  {  // wrong checksum in the metadata
    TensorMeta m = mx;
    m.crc32 ^= 0x80000000u;
    expect_refused(m, x, "checksum");
  }
  {  // shape
    TensorMeta m = mx;
    m.shape = {7, 60};
    expect_refused(m, x, "shape");
    m.shape = {70, 6};
    expect_refused(m, x, "shape");
    m.shape = {6, 70, 1};
    expect_refused(m, x, "rank");
    m.shape = {420};
    expect_refused(m, x, "rank");
  }
  {  // dtype
    TensorMeta m = mx;
    m.dtype = DType::kBF16;
    m.format = Format::kBf16;
    expect_refused(m, x, "dtype");
    m = mpc;
    m.dtype = DType::kF8E4M3;
    m.format = Format::kFp8E4M3;
    expect_refused(m, pc, "dtype");
  }
  {  // a format that does not store the dtype
    TensorMeta m = mx;
    m.format = Format::kInt8;
    expect_refused(m, x, "format");
  }
  {  // scale counts
    TensorMeta m = mpc;
    m.scales.pop_back();
    expect_refused(m, pc, "scale count");
    m = mx;
    m.scales = {1.0f};
    expect_refused(m, x, "scale count");
    m = mg;
    m.scales_f16.push_back(0x3c00);
    expect_refused(m, g, "fp16 scale count");
  }
  {  // axis and group size
    TensorMeta m = mpc;
    m.axis = -1;
    expect_refused(m, pc, "axis");
    m = mg;
    m.group_size = 16;
    expect_refused(m, g, "group size");
  }
  {  // bytes
    TensorMeta m = mg;
    m.bytes += 1;
    expect_refused(m, g, "bytes");
  }
  // A per-tensor int8 tensor checked against per-channel metadata.
  expect_refused(mpc, quantize(x, Format::kInt8), "axis");
}

TEST(ProtocolMeta, MalformedMetadataIsRefusedNotTrusted) {
  const Tensor x = test::gaussian({6, 70}, 6);
  const TensorMeta mx = tensor_meta(x, "in", 0);
  TensorMeta m = mx;
  m.dtype = static_cast<DType>(200);
  expect_refused(m, x, "dtype value 200 is unknown");
  m = mx;
  m.format = static_cast<Format>(99);
  expect_refused(m, x, "format value 99 is unknown");
  // Huge, negative and very long shapes are compared, never used to size anything.
  m = mx;
  m.shape = {std::numeric_limits<int64_t>::max(), std::numeric_limits<int64_t>::max()};
  expect_refused(m, x, "shape");
  m.shape = {-6, 70};
  expect_refused(m, x, "shape");
  m.shape.assign(1'000'000, 1);
  expect_refused(m, x, "rank");
  m = mx;
  m.scales.resize(100'000, 1.0f);
  expect_refused(m, x, "scale count");
  m = mx;
  m.axis = 1 << 30;
  expect_refused(m, x, "axis");
  // An unprintable, overlong name is cleaned up in the message.
  m = mx;
  m.name = std::string("a\nb\x01") + std::string(1000, 'z');
  m.crc32 ^= 1;
  expect_error([&] { verify_tensor(m, x); }, ErrorKind::kInvalidInput,
               {"tensor 'a?b?zzz", "...': checksum"});

  // Both sides agree, but the layout itself is impossible: still an error, not a crash.
  Tensor bad = Tensor::zeros({4, 8}, DType::kI8);
  bad.quant().scales = {1.0f, 2.0f};
  bad.quant().axis = 5;
  expect_refused(tensor_meta(bad, "bad", 0), bad, "axis 5 is out of range");
  bad.quant().axis = 1;
  expect_refused(tensor_meta(bad, "bad", 0), bad, "scale count 2 does not fit");
  Tensor g = Tensor::zeros({2, 40}, DType::kI4);
  g.quant().group_size = 32;
  g.quant().scales_f16 = {1, 2, 3};
  expect_refused(tensor_meta(g, "g", 0), g, "fp16 scale count 3 does not fit");
  g.quant().group_size = 0;
  expect_refused(tensor_meta(g, "g", 0), g, "group size 0");
  Tensor f = Tensor::zeros({2}, DType::kF32);
  f.quant().scales_f16 = {1};
  expect_refused(tensor_meta(f, "f", 0), f, "takes no axis, group size or fp16 scales");
}

TEST(ProtocolMeta, StridedTensorsAreRefused) {
  Tensor x = test::gaussian({4, 6}, 7);
  const Tensor col = Tensor::borrow(x.data(), {4, 3}, DType::kF32, {6, 2});
  expect_error([&] { (void)tensor_meta(col, "col", 0); }, ErrorKind::kInvalidInput,
               {"tensor 'col'", "contiguous"});
  expect_refused(tensor_meta(col.clone(), "col", 0), col, "contiguous");
}

TEST(ProtocolVersion, SameMajorAndNoNewerMinor) {
  EXPECT_NO_THROW(check_peer_version(kProtocolMajor, kProtocolMinor));
  expect_error([] { check_peer_version(kProtocolMajor + 1, 0); }, ErrorKind::kUnsupported,
               {"protocol 2.0"});
  expect_error([] { check_peer_version(kProtocolMajor, kProtocolMinor + 1); },
               ErrorKind::kUnsupported, {"minor"});
}

// ---------------------------------------------------------------------------------------------
// Device specs: a CPU device that lacks formats

TEST(NegotiationDeviceSpec, FormatsOptionRestrictsMatmulAndConv) {
  const auto dev = Registry::instance().open("cpu:formats=int8,fp32,bf16");
  EXPECT_EQ(dev->caps().name, "cpu");
  EXPECT_EQ(dev->caps().spec, "cpu:formats=fp32,bf16,int8");
  for (const FormatInfo& fi : kFormats) {
    SCOPED_TRACE(fi.name);
    const bool on =
        fi.format == Format::kFp32 || fi.format == Format::kBf16 || fi.format == Format::kInt8;
    const Format one[] = {fi.format};
    for (OpKind op : {OpKind::kMatmul, OpKind::kConv2d}) {
      EXPECT_EQ(dev->caps().runs(op, fi.format), on);
      const auto why = dev->supports(op, one);
      EXPECT_EQ(why.has_value(), !on);
      if (why) {
        EXPECT_EQ(why->code, UnsupportedCode::kFormatNotImplemented);
        EXPECT_NE(why->message().find("disabled by the device spec"), std::string::npos)
            << why->message();
      }
    }
    // Conversions keep every format.
    EXPECT_EQ(dev->supports(OpKind::kConvert, one), std::nullopt);
  }
  // The lack is real: weights in a disabled format are refused, enabled ones run.
  auto stream = dev->open_stream();
  const Tensor w = test::gaussian({4, 32}, 8);
  expect_error([&] { (void)stream->upload_weights(w, Format::kFp16); }, ErrorKind::kUnsupported,
               {"fp16", "disabled by the device spec"});
  expect_error(
      [&] {
        (void)stream->upload_conv_weights(test::gaussian({2, 1, 3, 3}, 9), Format::kInt4);
      },
      ErrorKind::kUnsupported, {"conv2d int4"});
  const DeviceWeights dw = stream->upload_weights(w, Format::kInt8);
  const Tensor y = stream->download(
      stream->matmul(stream->upload(test::gaussian({2, 32}, 10), Format::kFp32), dw, nullptr));
  EXPECT_EQ(y.shape(), (Shape{2, 4}));

  // The plain name still opens the full device.
  const auto full = Registry::instance().open("cpu", 1);
  EXPECT_EQ(full->caps().spec, "cpu");
  const Format fp16[] = {Format::kFp16};
  EXPECT_EQ(full->supports(OpKind::kMatmul, fp16), std::nullopt);
  EXPECT_EQ(Registry::instance().open("cpu:formats=fp32")->caps().spec, "cpu:formats=fp32");
}

TEST(NegotiationDeviceSpec, BadSpecsAreRefusedWithUsage) {
  const auto open = [](const char* s) { return [s] { (void)Registry::instance().open(s); }; };
  expect_error(open("cpu:formats=bf16"), ErrorKind::kUsage, {"cpu:formats=bf16", "fp32"});
  expect_error(open("cpu:formats=fp32,fp12"), ErrorKind::kUsage,
               {"unknown format 'fp12'", "fp32, bf16, fp16"});
  expect_error(open("cpu:formats=fp32,,int8"), ErrorKind::kUsage, {"unknown format ''"});
  expect_error(open("cpu:speed=9"), ErrorKind::kUsage, {"unknown option 'speed'", "formats"});
  expect_error(open("cpu:"), ErrorKind::kUsage, {"empty option"});
  expect_error(open("cpu:formats"), ErrorKind::kUsage, {"has no '='"});
  expect_error(open("cpu:formats="), ErrorKind::kUsage, {"key and a value"});
  expect_error(open("cpu:=fp32"), ErrorKind::kUsage, {"key and a value"});
  expect_error(open("cpu:formats=fp32:formats=int8"), ErrorKind::kUsage, {"given twice"});
  // An unknown device stays kUnsupported, options or not.
  expect_error(open("tpu7:formats=fp32"), ErrorKind::kUnsupported, {"tpu7", "cpu"});
}

// ---------------------------------------------------------------------------------------------
// Negotiation

PlanProposal propose_every_format(OpKind op) {
  PlanProposal p;
  p.seq = 42;
  for (const FormatInfo& fi : kFormats)
    p.layers.push_back({std::string("layer.") + std::string(fi.name), op, fi.format});
  return p;
}

TEST(Negotiation, QualityOrderIsBestFirst) {
  EXPECT_EQ(kQualityOrder.front(), Format::kFp32);
  EXPECT_EQ(kQualityOrder[1], Format::kFp16);
  EXPECT_EQ(kQualityOrder[2], Format::kBf16);
  EXPECT_EQ(kQualityOrder[3], Format::kInt8);
  EXPECT_EQ(kQualityOrder.back(), Format::kInt4);
}

TEST(Negotiation, FullCpuAcceptsEveryFormatAsIs) {
  const auto dev = Registry::instance().open("cpu");
  for (OpKind op : {OpKind::kMatmul, OpKind::kConv2d}) {
    const PlanProposal p = propose_every_format(op);
    const PlanReply r = answer_proposal(*dev, p);
    EXPECT_EQ(r.seq, 42u);
    ASSERT_EQ(r.layers.size(), p.layers.size());
    EXPECT_TRUE(r.all_accepted());
    const Plan plan = r.plan();
    for (size_t i = 0; i < p.layers.size(); ++i) {
      EXPECT_EQ(r.layers[i].layer, p.layers[i].layer);
      EXPECT_EQ(r.layers[i].requested, p.layers[i].format);
      EXPECT_EQ(r.layers[i].agreed, p.layers[i].format);
      EXPECT_TRUE(r.layers[i].reason.empty()) << r.layers[i].reason;
      EXPECT_EQ(plan.at(p.layers[i].layer), p.layers[i].format);
    }
    EXPECT_EQ(plan.layers.size(), p.layers.size());
  }
}

TEST(Negotiation, CountersToTheNearestBetterElseWorseFormat) {
  const auto dev = Registry::instance().open("cpu:formats=fp32,bf16,int8");
  for (OpKind op : {OpKind::kMatmul, OpKind::kConv2d}) {
    SCOPED_TRACE(op_name(op));
    const PlanReply r = answer_proposal(*dev, propose_every_format(op));
    EXPECT_FALSE(r.all_accepted());
    const Plan plan = r.plan();
    EXPECT_EQ(plan.at("layer.fp32"), Format::kFp32);
    EXPECT_EQ(plan.at("layer.bf16"), Format::kBf16);
    EXPECT_EQ(plan.at("layer.int8"), Format::kInt8);
    EXPECT_EQ(plan.at("layer.fp16"), Format::kFp32);     // the nearest better one
    EXPECT_EQ(plan.at("layer.fp8e4m3"), Format::kInt8);  // int8 is better than fp8e4m3
    EXPECT_EQ(plan.at("layer.fp8e5m2"), Format::kInt8);  // fp8e4m3 is off: on to int8
    EXPECT_EQ(plan.at("layer.int4"), Format::kInt8);
    for (const LayerAnswer& a : r.layers) {
      EXPECT_EQ(a.reason.empty(), a.agreed == a.requested) << a.layer;
    }
    const LayerAnswer& fp16 = r.layers[static_cast<size_t>(Format::kFp16)];
    EXPECT_EQ(fp16.requested, Format::kFp16);
    EXPECT_EQ(fp16.reason.rfind("fp16 not supported for " + std::string(op_name(op)) +
                                    " on cpu: format not implemented: ",
                                0),
              0u)
        << fp16.reason;
    EXPECT_NE(fp16.reason.find("disabled by the device spec"), std::string::npos);
    EXPECT_EQ(fp16.reason.substr(fp16.reason.size() - 12), "; using fp32") << fp16.reason;
  }
  // Only fp32 left: everything goes up to it.
  const auto only = Registry::instance().open("cpu:formats=fp32");
  const PlanReply r = answer_proposal(*only, propose_every_format(OpKind::kMatmul));
  for (const LayerAnswer& a : r.layers) EXPECT_EQ(a.agreed, Format::kFp32) << a.layer;
}

// Test-only device for the branches a CPU spec cannot reach (fp32 is always on there): formats
// per op given as a bit mask.
class FixedDevice final : public Device {
 public:
  explicit FixedDevice(uint32_t mask) {
    caps_.name = "fixed";
    caps_.formats.fill(mask);
  }
  const DeviceCaps& caps() const override { return caps_; }
  std::optional<Unsupported> supports(OpKind op, std::span<const Format> fs) const override {
    for (Format f : fs)
      if (!caps_.runs(op, f))
        return Unsupported{UnsupportedCode::kIsaMissing, "no " + std::string(format_name(f))};
    return std::nullopt;
  }
  std::unique_ptr<Stream> open_stream() override { return nullptr; }

 private:
  DeviceCaps caps_;
};

constexpr uint32_t bits(std::initializer_list<Format> fs) {
  uint32_t m = 0;
  for (Format f : fs) m |= 1u << static_cast<unsigned>(f);
  return m;
}

TEST(Negotiation, CountersDownWhenNothingBetterRunsAndFailsWhenNothingRuns) {
  const FixedDevice low(bits({Format::kFp8E5M2, Format::kInt4}));
  PlanProposal p;
  p.layers = {{"a", OpKind::kMatmul, Format::kFp16},
              {"b", OpKind::kMatmul, Format::kInt8},
              {"c", OpKind::kMatmul, Format::kInt4}};
  const PlanReply r = answer_proposal(low, p);
  EXPECT_EQ(r.layers[0].agreed, Format::kFp8E5M2);  // nothing better: the nearest worse
  EXPECT_EQ(r.layers[1].agreed, Format::kFp8E5M2);
  EXPECT_EQ(r.layers[2].agreed, Format::kInt4);
  EXPECT_EQ(r.layers[0].reason,
            "fp16 not supported for matmul on fixed: instructions missing: no fp16; using fp8e5m2");

  const FixedDevice none(0);
  expect_error([&] { (void)answer_proposal(none, p); }, ErrorKind::kUnsupported,
               {"layer 'a'", "matmul", "no format"});
}

TEST(Negotiation, MalformedProposalsAreRefused) {
  const auto dev = Registry::instance().open("cpu");
  PlanProposal p;
  p.seq = 5;
  p.layers = {{"ok", OpKind::kMatmul, Format::kInt8}, {"x", static_cast<OpKind>(9), Format::kFp32}};
  expect_error([&] { (void)answer_proposal(*dev, p); }, ErrorKind::kInvalidInput,
               {"layer 1 'x'", "op value 9 is unknown"});
  p.layers[1] = {"x", OpKind::kMatmul, static_cast<Format>(42)};
  expect_error([&] { (void)answer_proposal(*dev, p); }, ErrorKind::kInvalidInput,
               {"format value 42 is unknown"});
  p.layers[1] = {"", OpKind::kMatmul, Format::kFp32};
  expect_error([&] { (void)answer_proposal(*dev, p); }, ErrorKind::kInvalidInput, {"no name"});
  p.layers[1] = {"ok", OpKind::kConv2d, Format::kFp32};
  expect_error([&] { (void)answer_proposal(*dev, p); }, ErrorKind::kInvalidInput, {"named twice"});
  // An empty proposal is an empty, accepted reply.
  const PlanReply empty = answer_proposal(*dev, PlanProposal{});
  EXPECT_TRUE(empty.all_accepted());
  EXPECT_TRUE(empty.plan().layers.empty());
}

// One portion end to end on a device that lacks formats: negotiate, ship the weights in the
// agreed format with their metadata, verify on arrival, run.
TEST(Negotiation, EndToEndOnADeviceThatLacksFormats) {
  const auto dev = Registry::instance().open("cpu:formats=fp32,bf16,int8");
  const Tensor w = test::gaussian({8, 64}, 11);
  const Tensor x = test::gaussian({2, 64}, 12);
  PlanProposal p;
  p.seq = 9;
  p.layers = {{"fc", OpKind::kMatmul, Format::kFp8E4M3}};
  const PlanReply r = answer_proposal(*dev, p);
  const Format agreed = r.plan().at("fc");
  ASSERT_EQ(agreed, Format::kInt8);

  // Host side: quantize and describe; device side: verify the copy, then use it.
  const Tensor wq = quantize(w, agreed, 0);
  const TensorMeta m = tensor_meta(wq, "fc.weight", r.seq);
  const Tensor arrived = wq.clone();
  ASSERT_NO_THROW(verify_tensor(m, arrived));
  EXPECT_EQ(m.seq, 9u);
  auto stream = dev->open_stream();
  const DeviceWeights dw = stream->upload_weights(w, agreed);
  const Tensor y = stream->download(stream->matmul(stream->upload(x, Format::kFp32), dw, nullptr));
  EXPECT_EQ(y.shape(), (Shape{2, 8}));
}

}  // namespace
}  // namespace dynaprec
