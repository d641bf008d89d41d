// The device interface with the CPU backend: registry, capabilities, refusals with reasons,
// transfers in the agreed format (bytes counted) and a matmul through a stream.
#include <gtest/gtest.h>

#include <cstring>

#include "dynaprec/device.h"
#include "dynaprec/error.h"
#include "dynaprec/quantize.h"
#include "kernels/matmul_util.h"

namespace dynaprec {
namespace {

TEST(Device, RegistryOpensCpuAndNamesTheKnownOnes) {
  const auto names = Registry::instance().names();
  ASSERT_FALSE(names.empty());
  EXPECT_EQ(names.front(), "cpu");
  auto dev = Registry::instance().open("cpu");
  ASSERT_NE(dev, nullptr);
  EXPECT_EQ(dev->caps().name, "cpu");
  EXPECT_GE(dev->caps().threads, 1);
  try {
    (void)Registry::instance().open("tpu7");
    FAIL() << "unknown device accepted";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::kUnsupported);
    EXPECT_NE(std::string(e.what()).find("tpu7"), std::string::npos);
    EXPECT_NE(std::string(e.what()).find("cpu"), std::string::npos);
  }
}

TEST(Device, SupportsAnswersWithReasons) {
  auto dev = Registry::instance().open("cpu");
  for (const FormatInfo& fi : kFormats) {
    const Format f[] = {fi.format};
    EXPECT_EQ(dev->supports(OpKind::kMatmul, f), std::nullopt) << fi.name;
    EXPECT_TRUE(dev->caps().runs(OpKind::kMatmul, fi.format));
  }
  const Format int8[] = {Format::kInt8};
  EXPECT_EQ(dev->supports(OpKind::kConv2d, int8), std::nullopt);
  const Format bad[] = {static_cast<Format>(42)};
  const auto b = dev->supports(OpKind::kMatmul, bad);
  ASSERT_TRUE(b.has_value());
  EXPECT_EQ(b->code, UnsupportedCode::kBadRequest);
  EXPECT_EQ(dev->supports(static_cast<OpKind>(9), int8)->code, UnsupportedCode::kBadRequest);
}

TEST(Device, UploadMovesTheFormatsBytesAndDownloadIsTheRoundTrip) {
  auto dev = Registry::instance().open("cpu");
  auto stream = dev->open_stream();
  const Tensor x = test::gaussian({8, 100}, 7);
  const size_t expect_bytes[] = {3200, 1600, 1600, 800, 800, 800 + 4, 8 * 50 + 8 * 4 * 2};
  for (const FormatInfo& fi : kFormats) {
    const DeviceTensor t = stream->upload(x, fi.format);
    EXPECT_EQ(t.bytes, expect_bytes[static_cast<size_t>(fi.format)]) << fi.name;
    size_t back = 0;
    const Tensor y = stream->download(t, &back);
    EXPECT_EQ(back, t.bytes);
    const Tensor want = round_trip(x, fi.format);
    EXPECT_EQ(0, std::memcmp(y.data(), want.data(), want.nbytes())) << fi.name;
  }
}

TEST(Device, MatmulThroughAStreamMatchesTheKernels) {
  auto dev = Registry::instance().open("cpu");
  auto stream = dev->open_stream();
  const Tensor x = test::gaussian({3, 64}, 8);
  const Tensor w = test::gaussian({10, 64}, 9);
  const Tensor bias = test::gaussian({10}, 10);
  for (const FormatInfo& fi : kFormats) {
    const DeviceWeights dw = stream->upload_weights(w, fi.format);
    EXPECT_EQ(dw.bytes, dw.weights.bytes());
    const DeviceTensor dx = stream->upload(x, Format::kFp32);
    const DeviceTensor db = stream->upload(bias, Format::kFp32);
    const Tensor y = stream->download(stream->matmul(dx, dw, &db));
    std::vector<float> want(30);
    matmul(x.data_as<float>(), 3, dw.weights, bias.data_as<float>(), want.data());
    EXPECT_EQ(0, std::memcmp(y.data(), want.data(), 30 * 4)) << fi.name;
  }
  const DeviceWeights dw = stream->upload_weights(w, Format::kInt8);
  const DeviceTensor wrong = stream->upload(test::gaussian({3, 65}, 1), Format::kFp32);
  EXPECT_THROW((void)stream->matmul(wrong, dw, nullptr), Error);
}

TEST(Device, Conv2dThroughAStreamMatchesTheKernels) {
  auto dev = Registry::instance().open("cpu");
  auto stream = dev->open_stream();
  const Tensor x = test::gaussian({1, 8, 9, 9}, 11);
  const Tensor w = test::gaussian({4, 8, 3, 3}, 12);
  Conv2dParams p;
  p.pad_top = p.pad_left = p.pad_bottom = p.pad_right = 1;
  for (const FormatInfo& fi : kFormats) {
    const DeviceConvWeights dw = stream->upload_conv_weights(w, fi.format);
    const Tensor y =
        stream->download(stream->conv2d(stream->upload(x, Format::kFp32), dw, nullptr, p));
    Tensor want = Tensor::zeros(conv2d_output_shape(x.shape(), dw.weights, p), DType::kF32);
    conv2d(x, dw.weights, nullptr, p, want);
    ASSERT_EQ(y.shape(), want.shape());
    EXPECT_EQ(0, std::memcmp(y.data(), want.data(), want.nbytes())) << fi.name;
  }
}

}  // namespace
}  // namespace dynaprec
