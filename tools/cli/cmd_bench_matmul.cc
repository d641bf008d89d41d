// dynaprec bench gemv|gemm --precision F --rows R --cols C [--batch B] [--threads T] [--json]
//
// GEMV: y[R] = W[R × C] · x[C]. W is read from memory, not cache: the benchmark keeps copies of
// W totalling >= 1 GiB and uses the next copy on every call. gbps counts the bytes a call reads
// (W's codes and scales, and x); triad_gbps is the STREAM triad (a = b + s·c, 24 bytes per
// element) of this machine with the same threads, one pass right before each timed call (the
// median; triad_best_gbps the best pass), and of_triad the median of the calls' own GEMV/triad
// ratios: a VM's memory speed can move by 2x within seconds, and adjacent passes meet the same.
// GEMM: Y[B × R] = X[B × C] · W[R × C]ᵀ; gflops counts 2·B·R·C per call.
// Times: median of --runs calls after --warmup.
#include <dlfcn.h>
#include <fmt/format.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <iostream>
#include <nlohmann/json.hpp>
#include <optional>
#include <random>
#include <span>
#include <vector>

#include "cli.h"
#include "dynaprec/conv.h"
#include "dynaprec/cpu_features.h"
#include "dynaprec/error.h"
#include "dynaprec/matmul.h"
#include "dynaprec/thread_pool.h"
#include "kernels/cpu/matmul_kernels.h"

namespace dynaprec::cli {

Format parse_format(const std::string& name);  // cmd_quantize.cc

namespace {

using Clock = std::chrono::steady_clock;

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

Tensor random_matrix(int64_t rows, int64_t cols, uint32_t seed) {
  Tensor t = Tensor::zeros({rows, cols}, DType::kF32);
  std::mt19937 rng(seed);
  std::normal_distribution<float> d(0.0f, 1.0f);
  // A tile of Gaussians repeated: generating 64M of them would dominate the run.
  const int64_t n = t.numel(), tile = std::min<int64_t>(n, 1 << 16);
  float* p = t.data_as<float>();
  for (int64_t i = 0; i < tile; ++i) p[i] = d(rng);
  for (int64_t i = tile; i < n; i += tile) std::memcpy(p + i, p, std::min(tile, n - i) * 4);
  return t;
}

}  // namespace

// The STREAM triad a = b + s·c over 3 arrays of 128 MiB (24 bytes moved per element), split
// over `threads` tasks on the pool; one timed pass per call.
class Triad {
 public:
  explicit Triad(int threads) : a_(kN, 0.0f), b_(kN, 1.0f), c_(kN, 2.0f) {
    const int pool = ThreadPool::default_pool().threads();
    tasks_ = static_cast<size_t>(std::max(1, std::min(threads, pool)));
    pass();  // first touch: page faults are not bandwidth
  }
  double pass_gbps() {
    const auto t0 = Clock::now();
    pass();
    return 3.0 * 4.0 * kN / std::chrono::duration<double>(Clock::now() - t0).count() / 1e9;
  }

 private:
  static constexpr size_t kN = size_t{32} << 20;
  void pass() {
    const size_t chunk = (kN + tasks_ - 1) / tasks_;
    ThreadPool::default_pool().parallel_for(tasks_, [&](size_t t) {
      const size_t lo = t * chunk, hi = std::min(kN, lo + chunk);
      float* __restrict__ pa = a_.data();
      const float* __restrict__ pb = b_.data();
      const float* __restrict__ pc = c_.data();
      for (size_t i = lo; i < hi; ++i) pa[i] = pb[i] + 3.0f * pc[i];
    });
  }
  std::vector<float> a_, b_, c_;
  size_t tasks_ = 1;
};

namespace {

// OpenBLAS as a peer for fp32 GEMM: loaded at run time (never linked into dynaprec, never on
// its execution path), with the same thread count. nullopt when it is not installed.
std::optional<double> openblas_sgemm_seconds(const float* x, const float* w, float* y, int64_t m,
                                             int64_t n, int64_t k, int threads, int runs,
                                             int warmup) {
  void* lib = dlopen("libopenblas.so.0", RTLD_NOW | RTLD_LOCAL);
  if (!lib) return std::nullopt;
  using Sgemm = void (*)(int, int, int, int, int, int, float, const float*, int, const float*, int,
                         float, float*, int);
  using SetThreads = void (*)(int);
  auto sgemm = reinterpret_cast<Sgemm>(dlsym(lib, "cblas_sgemm"));
  auto set_threads = reinterpret_cast<SetThreads>(dlsym(lib, "openblas_set_num_threads"));
  if (!sgemm) return std::nullopt;
  if (set_threads) set_threads(threads);
  constexpr int kRowMajor = 101, kNoTrans = 111, kTrans = 112;
  auto call = [&] {
    sgemm(kRowMajor, kNoTrans, kTrans, int(m), int(n), int(k), 1.0f, x, int(k), w, int(k), 0.0f, y,
          int(n));
  };
  for (int i = 0; i < warmup; ++i) call();
  std::vector<double> times;
  for (int i = 0; i < runs; ++i) {
    const auto t0 = Clock::now();
    call();
    times.push_back(std::chrono::duration<double>(Clock::now() - t0).count());
  }
  return median(times);
}

struct MatmulOpts {
  std::string precision = "fp32";
  int64_t rows = 4096, cols = 4096, batch = 1;
  int threads = 0, runs = 20, warmup = 3;
  bool json = false;
};

void bench_matmul(const MatmulOpts& o, bool gemv) {
  const Format f = parse_format(o.precision);
  if (o.rows <= 0 || o.cols <= 0 || o.batch <= 0)
    throw Error(ErrorKind::kUsage, "--rows, --cols and --batch must be positive");
  if (o.threads > 0) ThreadPool::set_default_threads(o.threads);
  const int threads = ThreadPool::default_pool().threads();
  const int64_t batch = gemv ? 1 : o.batch;
  const Tensor w32 = random_matrix(o.rows, o.cols, 1);
  const MatmulWeights w0 = matmul_weights(w32, f);
  // Copies of W totalling >= 1 GiB for GEMV, so that each call reads W from memory.
  const size_t wbytes = w0.bytes();
  const size_t copies = gemv ? std::max<size_t>(2, ((size_t{1} << 30) + wbytes - 1) / wbytes) : 1;
  std::vector<MatmulWeights> ws;
  ws.reserve(copies);
  ws.push_back(w0);
  for (size_t i = 1; i < copies; ++i) {
    MatmulWeights c = w0;
    c.data = w0.data.clone();
    ws.push_back(std::move(c));
  }
  const Tensor x = random_matrix(batch, o.cols, 2);
  // Y as the runtime passes it: a Tensor, 64-byte aligned (a std::vector of 16 MiB starts 16
  // bytes into a page, and every row of oneDNN's output then straddles cache lines: bf16 GEMM
  // 2048³ 9.6 -> 10.5 ms).
  Tensor yt = Tensor::zeros({batch, o.rows}, DType::kF32);
  const std::span<float> y(yt.data_as<float>(), static_cast<size_t>(batch * o.rows));
  size_t next = 0;
  auto call = [&] {
    matmul(x.data_as<float>(), batch, ws[next], nullptr, y.data(), threads);
    next = (next + 1) % ws.size();
  };
  const double bytes = double(wbytes) + double(batch * o.cols) * 4.0;
  for (int i = 0; i < o.warmup; ++i) call();
  // GEMV: each call right after a triad pass, so that both meet the same state of the machine
  // (a VM's memory speed can move by 2x within seconds); the share of the triad is the median of
  // the rounds' own ratios.
  std::optional<Triad> triad;
  if (gemv) triad.emplace(threads);
  std::vector<double> times, triads, shares;
  for (int i = 0; i < o.runs; ++i) {
    if (triad) triads.push_back(triad->pass_gbps());
    const auto t0 = Clock::now();
    call();
    times.push_back(std::chrono::duration<double>(Clock::now() - t0).count());
    if (triad) shares.push_back(bytes / times.back() / 1e9 / triads.back());
  }
  const double t = median(times);
  const double gbps = bytes / t / 1e9;
  const double gflops = 2.0 * double(batch) * double(o.rows) * double(o.cols) / t / 1e9;
  const std::string kernel(cpu::matmul_select(f, batch, o.rows, o.cols).name);
  nlohmann::json j = {{"op", gemv ? "gemv" : "gemm"},
                      {"precision", o.precision},
                      {"rows", o.rows},
                      {"cols", o.cols},
                      {"batch", batch},
                      {"threads", threads},
                      {"kernel", kernel},
                      {"time_us", t * 1e6},
                      {"gbps", gbps},
                      {"gflops", gflops},
                      {"weight_bytes", wbytes},
                      {"runs", o.runs}};
  if (!gemv && f == Format::kFp32) {
    Tensor y2 = Tensor::zeros({batch, o.rows}, DType::kF32);
    if (const auto tb =
            openblas_sgemm_seconds(x.data_as<float>(), w32.data_as<float>(), y2.data_as<float>(),
                                   batch, o.rows, o.cols, threads, o.runs, o.warmup)) {
      j["openblas_gflops"] = 2.0 * double(batch) * double(o.rows) * double(o.cols) / *tb / 1e9;
      j["of_openblas"] = gflops / j["openblas_gflops"].get<double>();
    }
  }
  if (gemv) {
    j["triad_gbps"] = median(triads);
    j["triad_best_gbps"] = *std::max_element(triads.begin(), triads.end());
    j["of_triad"] = median(shares);
    j["weight_copies"] = copies;
  }
  if (o.json) {
    std::cout << j.dump(2) << "\n";
    return;
  }
  fmt::print("{} {} {}x{}{} ({} threads, kernel {}): {:.1f} us, {:.2f} GB/s, {:.1f} GFLOP/s\n",
             gemv ? "gemv" : "gemm", o.precision, o.rows, o.cols,
             gemv ? "" : fmt::format(" batch {}", batch), threads, kernel, t * 1e6, gbps, gflops);
  if (j.contains("openblas_gflops"))
    fmt::print("  OpenBLAS sgemm {:.1f} GFLOP/s in the same run: dynaprec reaches {:.2f}x\n",
               j["openblas_gflops"].get<double>(), j["of_openblas"].get<double>());
  if (gemv)
    fmt::print(
        "  STREAM triad {:.2f} GB/s (median; best {:.2f}), one pass before each call; gemv "
        "reaches {:.0f}% of it (median of the {} calls' own ratios)\n",
        j["triad_gbps"].get<double>(), j["triad_best_gbps"].get<double>(),
        100.0 * j["of_triad"].get<double>(), o.runs);
}

struct ConvOpts {
  std::string precision = "fp32";
  int64_t batch = 1, channels = 64, height = 160, width = 160, out_channels = 64, kernel = 3;
  int64_t stride = 1, pad = -1, groups = 1;
  std::string activation = "none";
  int threads = 0, runs = 10, warmup = 2;
  bool json = false;
};

Activation parse_activation(const std::string& name) {
  if (name == "none") return Activation::kNone;
  if (name == "relu") return Activation::kRelu;
  if (name == "clip") return Activation::kClip;  // to [0, 6]
  if (name == "sigmoid") return Activation::kSigmoid;
  if (name == "hardswish") return Activation::kHardSwish;
  throw Error(ErrorKind::kUsage,
              "--activation must be none, relu, clip, sigmoid or hardswish, got '" + name + "'");
}

void bench_conv(const ConvOpts& o) {
  const Format f = parse_format(o.precision);
  if (o.threads > 0) ThreadPool::set_default_threads(o.threads);
  const int threads = ThreadPool::default_pool().threads();
  if (o.groups <= 0 || o.channels % o.groups != 0)
    throw Error(ErrorKind::kUsage, "--channels must be a multiple of --groups");
  const Tensor x = random_matrix(o.batch * o.channels, o.height * o.width, 3);
  const Tensor x4 = Tensor::borrow(const_cast<void*>(x.data()),
                                   {o.batch, o.channels, o.height, o.width}, DType::kF32);
  const Tensor w32 = random_matrix(o.out_channels, o.channels / o.groups * o.kernel * o.kernel, 4);
  const Tensor w4 =
      Tensor::borrow(const_cast<void*>(w32.data()),
                     {o.out_channels, o.channels / o.groups, o.kernel, o.kernel}, DType::kF32);
  const ConvWeights w = conv_weights(w4, f);
  Conv2dParams p;
  p.stride_h = p.stride_w = o.stride;
  p.pad_top = p.pad_left = p.pad_bottom = p.pad_right = o.pad >= 0 ? o.pad : o.kernel / 2;
  p.groups = o.groups;
  p.activation = parse_activation(o.activation);
  p.clip_min = 0.0f;
  p.clip_max = 6.0f;
  Tensor y = Tensor::zeros(conv2d_output_shape(x4.shape(), w, p), DType::kF32);
  for (int i = 0; i < o.warmup; ++i) conv2d(x4, w, nullptr, p, y, threads);
  std::vector<double> times;
  for (int i = 0; i < o.runs; ++i) {
    const auto t0 = Clock::now();
    conv2d(x4, w, nullptr, p, y, threads);
    times.push_back(std::chrono::duration<double>(Clock::now() - t0).count());
  }
  const double t = median(times);
  const double macs = double(y.numel()) * double(o.channels / o.groups * o.kernel * o.kernel);
  const double bytes = double(x.nbytes()) + double(w.matrix.bytes()) + double(y.nbytes());
  nlohmann::json j = {{"op", "conv"},
                      {"precision", o.precision},
                      {"batch", o.batch},
                      {"channels", o.channels},
                      {"height", o.height},
                      {"width", o.width},
                      {"out_channels", o.out_channels},
                      {"kernel", o.kernel},
                      {"stride", o.stride},
                      {"groups", o.groups},
                      {"activation", o.activation},
                      {"threads", threads},
                      {"time_us", t * 1e6},
                      {"gbps", bytes / t / 1e9},
                      {"gflops", 2.0 * macs / t / 1e9},
                      {"runs", o.runs}};
  if (o.json) {
    std::cout << j.dump(2) << "\n";
    return;
  }
  fmt::print("conv {} {}x{}x{}x{} -> {} {}x{} s{} g{} ({} threads): {:.1f} us, {:.1f} GFLOP/s\n",
             o.precision, o.batch, o.channels, o.height, o.width, o.out_channels, o.kernel,
             o.kernel, o.stride, o.groups, threads, t * 1e6, 2.0 * macs / t / 1e9);
}

}  // namespace

void register_bench_matmul(CLI::App& bench) {
  {
    auto o = std::make_shared<ConvOpts>();
    auto* cmd = bench.add_subcommand(
        "conv", "2-D convolution, NCHW (default: 1x64x160x160, 3x3, 64 out, stride 1, pad 1)");
    cmd->add_option("--precision", o->precision, "weight format (default fp32)");
    cmd->add_option("--batch", o->batch, "N (default 1)");
    cmd->add_option("--channels", o->channels, "C, input channels (default 64)");
    cmd->add_option("--height", o->height, "H (default 160)");
    cmd->add_option("--width", o->width, "W (default 160)");
    cmd->add_option("--out-channels", o->out_channels, "OC (default 64)");
    cmd->add_option("--kernel", o->kernel, "square kernel size (default 3)");
    cmd->add_option("--stride", o->stride, "stride (default 1)");
    cmd->add_option("--pad", o->pad, "padding on every side (default kernel/2)");
    cmd->add_option("--groups", o->groups, "groups (default 1; = channels for depthwise)");
    cmd->add_option("--activation", o->activation,
                    "fused activation: none (default), relu, clip (to [0, 6]), sigmoid, hardswish");
    cmd->add_option("--threads", o->threads, "threads (default: all cores)");
    cmd->add_option("--runs", o->runs, "timed calls, the median is reported (default 10)")
        ->check(CLI::Range(1, 100000));
    cmd->add_option("--warmup", o->warmup, "untimed calls first (default 2)");
    cmd->add_flag("--json", o->json, "JSON with keys time_us, gbps, gflops");
    cmd->callback([o] { bench_conv(*o); });
  }
  for (const bool gemv : {true, false}) {
    auto o = std::make_shared<MatmulOpts>();
    auto* cmd = bench.add_subcommand(gemv ? "gemv" : "gemm",
                                     gemv ? "batch-1 matmul, W read from memory, next to STREAM "
                                            "triad"
                                          : "matmul Y[B×R] = X[B×C]·W[R×C]ᵀ");
    cmd->add_option("--precision", o->precision, "weight format (default fp32)");
    cmd->add_option("--rows", o->rows, "R: output features, rows of W (default 4096)");
    cmd->add_option("--cols", o->cols, "C: input features, the reduction length (default 4096)");
    if (!gemv) cmd->add_option("--batch", o->batch, "B: rows of X (default 1)");
    cmd->add_option("--threads", o->threads, "threads (default: all cores)");
    cmd->add_option("--runs", o->runs, "timed calls, the median is reported (default 20)")
        ->check(CLI::Range(1, 100000));
    cmd->add_option("--warmup", o->warmup, "untimed calls first (default 3)");
    cmd->add_flag("--json", o->json, "JSON with keys time_us, gbps, gflops (gemv: triad_gbps)");
    cmd->callback([o, gemv] { bench_matmul(*o, gemv); });
  }
}

}  // namespace dynaprec::cli
