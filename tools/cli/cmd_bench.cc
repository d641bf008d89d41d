// dynaprec bench convert --format F [--mib N] [--json]
//
// Converts an N MiB float32 array (Gaussian values) to format F on one thread and compares it
// with a plain copy (memcpy) of the same array measured in the same process. Both figures count
// bytes read + written by the operation: the copy reads and writes N MiB; a conversion reads N
// MiB (twice for per-tensor int8, which needs the amax first; counted once, as the array's
// size) and writes the encoded bytes plus scales. Best of --reps runs, after one warm-up.
// The array is laid out as rows of 4096 values: int4 groups run along them, and int8 takes one
// scale per row (per channel, as for weights) unless --per-tensor asks for one scale in all.
#include <fmt/format.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstring>
#include <functional>
#include <iostream>
#include <memory>
#include <nlohmann/json.hpp>
#include <random>
#include <vector>

#include "cli.h"
#include "dynaprec/convert.h"
#include "dynaprec/cpu_features.h"
#include "dynaprec/error.h"
#include "dynaprec/formats.h"
#include "dynaprec/tensor.h"

namespace dynaprec::cli {

Format parse_format(const std::string& name);  // cmd_quantize.cc

namespace {

using Clock = std::chrono::steady_clock;

template <class F>
double best_seconds(int reps, F&& fn) {
  fn();  // warm-up
  double best = 1e30;
  for (int r = 0; r < reps; ++r) {
    const auto t0 = Clock::now();
    fn();
    best = std::min(best, std::chrono::duration<double>(Clock::now() - t0).count());
  }
  return best;
}

void fill_gaussian(float* p, size_t n) {
  std::mt19937 rng(42);
  std::normal_distribution<float> dist(0.0f, 1.0f);
  // A few thousand distinct values tiled: generating 64M Gaussians would dominate the run.
  constexpr size_t kTile = 1 << 16;
  for (size_t i = 0; i < std::min(n, kTile); ++i) p[i] = dist(rng);
  for (size_t i = kTile; i < n; i += kTile) std::memcpy(p + i, p, std::min(kTile, n - i) * 4);
}

void bench_convert(const std::string& format_name, double mib, int reps, bool json,
                   bool per_tensor) {
  const Format f = parse_format(format_name);
  if (!(mib > 0) || mib > 65536) throw Error(ErrorKind::kUsage, "--mib must be in (0, 65536]");
  (void)cpu_features();
  constexpr size_t kRow = 4096;  // int4 groups run along rows of this length
  size_t n = static_cast<size_t>(mib * 1024 * 1024 / 4);
  n = std::max(kRow, n / kRow * kRow);
  Tensor src = Tensor::zeros({static_cast<int64_t>(n)}, DType::kF32);
  Tensor copy = Tensor::zeros({static_cast<int64_t>(n)}, DType::kF32);
  fill_gaussian(src.data_as<float>(), n);
  const float* x = src.data_as<float>();

  const double copy_s = best_seconds(reps, [&] { std::memcpy(copy.data(), x, n * 4); });
  const double copy_bytes = 2.0 * n * 4;

  const FormatInfo& fi = format_info(f);
  const size_t rows = n / kRow, groups = kRow / 32;
  Tensor dst = Tensor::zeros({static_cast<int64_t>(rows), static_cast<int64_t>(kRow)}, dtype_of(f));
  std::vector<uint16_t> scales16(rows * groups);
  double out_bytes = static_cast<double>(dst.nbytes());
  std::function<void()> run;
  if (fi.kind == FormatKind::kFloat) {
    run = [&] { encode_float_array(f, x, dst.data(), n); };
  } else if (f == Format::kInt8 && per_tensor) {
    out_bytes += 4;
    run = [&] {
      const float s = ref::int8_scale(amax(x, n));
      int8_encode_array(x, dst.data_as<int8_t>(), n, s);
    };
  } else if (f == Format::kInt8) {
    // Per channel along axis 0 (one scale per row of kRow values, as for weights): each row's
    // amax and codes come from one pass over memory (the row is still in L1 for the codes).
    out_bytes += 4.0 * rows;
    std::vector<float> scales(rows);
    run = [&, scales]() mutable {
      int8_encode_rows(x, dst.data_as<int8_t>(), rows, kRow, scales.data());
    };
  } else {
    out_bytes += 2.0 * scales16.size();
    run = [&] { int4_encode_rows(x, rows, kRow, dst.data_as<uint8_t>(), scales16.data()); };
  }
  const double conv_s = best_seconds(reps, run);
  const double conv_bytes = n * 4.0 + out_bytes;
  const std::string layout = f == Format::kInt8
                                 ? (per_tensor ? " per tensor" : " per row of 4096")
                                 : (f == Format::kInt4 ? " groups of 32, rows of 4096" : "");
  const double gbps = conv_bytes / conv_s / 1e9, copy_gbps = copy_bytes / copy_s / 1e9;
  if (json) {
    nlohmann::json j = {{"format", fi.name},
                        {"mib", n * 4.0 / (1 << 20)},
                        {"threads", 1},
                        {"gbps", gbps},
                        {"copy_gbps", copy_gbps},
                        {"ratio", gbps / copy_gbps},
                        {"time_ms", conv_s * 1e3},
                        {"copy_time_ms", copy_s * 1e3},
                        {"simd_target", simd_target_name()},
                        {"layout", layout}};
    std::cout << j.dump(2) << "\n";
  } else {
    fmt::print("convert fp32 -> {}{} ({:.0f} MiB, 1 thread, {}):\n", fi.name, layout,
               n * 4.0 / (1 << 20), simd_target_name());
    fmt::print("  convert: {:8.2f} ms  {:7.2f} GB/s (read + written)\n", conv_s * 1e3, gbps);
    fmt::print("  copy:    {:8.2f} ms  {:7.2f} GB/s (read + written)\n", copy_s * 1e3, copy_gbps);
    fmt::print("  ratio:   {:.2f} of copy\n", gbps / copy_gbps);
  }
}

}  // namespace

void register_bench(CLI::App& app) {
  auto* bench = app.add_subcommand("bench", "benchmarks");
  bench->require_subcommand(1);
  struct Opts {
    std::string format;
    double mib = 256;
    int reps = 5;
    bool json = false;
    bool per_tensor = false;
  };
  auto o = std::make_shared<Opts>();
  auto* conv = bench->add_subcommand("convert", "fp32 -> format conversion next to a plain copy");
  conv->add_option("--format", o->format, "target format")->required();
  conv->add_option("--mib", o->mib, "array size in MiB (default 256)");
  conv->add_option("--reps", o->reps, "timed repetitions, best is reported (default 5)")
      ->check(CLI::Range(1, 1000));
  conv->add_flag("--json", o->json, "print JSON (keys gbps, copy_gbps)");
  conv->add_flag("--per-tensor", o->per_tensor,
                 "int8: one scale for the whole array (two passes: amax, then codes) instead of "
                 "one per row of 4096");
  conv->callback([o] { bench_convert(o->format, o->mib, o->reps, o->json, o->per_tensor); });
  register_bench_matmul(*bench);
  register_bench_model(*bench);
}

}  // namespace dynaprec::cli
