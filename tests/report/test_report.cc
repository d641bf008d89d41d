// The HTML report, the energy table, the demo's text lines and CTC decoding.
//
// Html.WriteForBrowser writes pages into $DYNAPREC_HTML_OUT for tests/report/test_html_chromium.sh
// (headless Chromium: screenshot not blank, no script errors); without the variable it skips.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <random>
#include <stdexcept>
#include <string>
#include <vector>

#include "dynaprec/error.h"
#include "dynaprec/html_report.h"
#include "dynaprec/session.h"
#include "dynaprec/textlines.h"

namespace dynaprec {
namespace {

namespace fs = std::filesystem;

// A synthetic run: `portions` × `layers`, precisions that drift, canaries every 4th portion,
// switches with reasons.
Report synthetic(int portions, int layers, uint64_t seed = 7) {
  std::mt19937_64 rng(seed);
  Report r;
  r.model = "synthetic <model> & \"quotes\" </script>";
  r.policy_json = R"({"name": "dynamic", "target_sqnr_db": 30})";
  const Format ladder[] = {Format::kFp32, Format::kFp16, Format::kBf16,
                           Format::kInt8, Format::kInt4, Format::kFp8E4M3};
  std::vector<int> cur(static_cast<size_t>(layers), 0);
  for (int p = 0; p < portions; ++p) {
    PortionReport pr;
    pr.index = p;
    pr.time_ms = 2.0 + static_cast<double>(rng() % 1000) / 1000.0;
    pr.bytes_to_device = 1000;
    pr.bytes_from_device = 500;
    if (p % 4 == 0) {
      pr.canary = true;
      pr.canary_ms = 3.0;
      pr.output_sqnr_db =
          p == 8 ? -std::numeric_limits<double>::infinity() : 25.0 + (rng() % 200) / 10.0;
    }
    for (int l = 0; l < layers; ++l) {
      LayerReport lr;
      lr.name = "layer_" + std::to_string(l) + (l == 3 ? "</script><b>" : "");
      lr.op = l % 3 ? "Conv" : "MatMul";
      if (p > 0 && rng() % 50 == 0) {
        const int next = static_cast<int>(rng() % 6);
        if (next != cur[static_cast<size_t>(l)]) {
          pr.switches.push_back({lr.name, ladder[cur[static_cast<size_t>(l)]], ladder[next],
                                 "headroom 6.1 dB over budget for 3 portions"});
          cur[static_cast<size_t>(l)] = next;
        }
      }
      lr.precision = ladder[cur[static_cast<size_t>(l)]];
      lr.metrics["sqnr_db"] = l == 5 ? std::nan("") : 30.0 + (rng() % 100) / 10.0;
      lr.bytes_fp32 = 4000;
      lr.bytes = 4000 / (1 + static_cast<uint64_t>(cur[static_cast<size_t>(l)]));
      lr.macs = 100000 * (l + 1);
      lr.time_ms = 0.01;
      pr.layers.push_back(std::move(lr));
    }
    r.portions.push_back(std::move(pr));
  }
  return r;
}

std::string embedded_json(const std::string& page) {
  const std::string open = "<script type=\"application/json\" id=\"data\">";
  const size_t a = page.find(open);
  EXPECT_NE(a, std::string::npos);
  const size_t b = page.find("</script>", a);
  return page.substr(a + open.size(), b - a - open.size());
}

TEST(Html, SelfContainedWithData) {
  const Report r = synthetic(40, 12);
  const std::string page = render_html(r);
  EXPECT_EQ(page.rfind("<!DOCTYPE html>", 0), 0u);
  // No network at view time: nothing fetched from anywhere.
  for (const char* s : {"http://", "https://", "<link", "src=", "@import", "url("})
    EXPECT_EQ(page.find(s), std::string::npos) << s;
  // The names with markup are escaped; the embedded data parses and holds the map and series.
  EXPECT_EQ(page.find("<b>"), std::string::npos);
  const auto d = nlohmann::json::parse(embedded_json(page));
  EXPECT_EQ(d["map"].get<std::string>().size(), 40u * 12u);
  EXPECT_EQ(d["layers"].size(), 12u);
  EXPECT_EQ(d["p"]["t"].size(), 40u);
  EXPECT_EQ(d["target"].get<double>(), 30.0);
  EXPECT_TRUE(d["p"]["q"][8].is_null());  // -inf is not JSON: null
  EXPECT_EQ(d["p"]["q"][1], nullptr);     // not a canary
  EXPECT_EQ(d["lt"][3]["n"].get<std::string>(), "layer_3</script><b>");
  EXPECT_EQ(d["lt"][5]["sq"], nullptr);  // NaN metrics: no data
  int switches = 0;
  for (const auto& p : r.portions) switches += static_cast<int>(p.switches.size());
  EXPECT_EQ(d["sw"].size(), static_cast<size_t>(switches));
  EXPECT_EQ(d["summary"]["switches"].get<int64_t>(), r.switches());
  for (const char* id :
       {"id=\"map\"", "id=\"sqnr\"", "id=\"bytes\"", "id=\"time\"", "id=\"sw\"", "id=\"lt\""})
    EXPECT_NE(page.find(id), std::string::npos) << id;
}

TEST(Html, TotalsMatchTheJsonSummary) {
  const Report r = synthetic(200, 7);
  const auto j = nlohmann::json::parse(r.to_json());
  const ReportTotals t = report_totals(r, 30);
  EXPECT_EQ(t.bytes, j["summary"]["bytes_moved"].get<uint64_t>());
  EXPECT_EQ(t.bytes_fp32, j["summary"]["bytes_moved_fp32"].get<uint64_t>());
  EXPECT_NEAR(t.energy_uj, j["summary"]["energy_uj_model"].get<double>(), 1e-9 * t.energy_uj);
  EXPECT_GT(t.energy_uj_fp32, t.energy_uj);
  EXPECT_EQ(t.canaries, 50);
  EXPECT_GE(t.canaries_below_target, 1);  // the -inf canary
}

TEST(Html, LargeRunStaysCompact) {
  const Report r = synthetic(1000, 300);
  const auto t0 = std::chrono::steady_clock::now();
  const std::string page = render_html(r);
  const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  EXPECT_LT(page.size(), 8u << 20) << "1000 x 300 should embed a few MB, not the whole report";
  EXPECT_LT(s, 10.0);
  const auto d = nlohmann::json::parse(embedded_json(page));
  EXPECT_EQ(d["map"].get<std::string>().size(), 300000u);
}

TEST(Html, EmptyReport) {
  Report r;
  r.model = "empty";
  const std::string page = render_html(r);
  EXPECT_NE(page.find("</html>"), std::string::npos);
  EXPECT_TRUE(nlohmann::json::parse(embedded_json(page)).is_object());
}

TEST(Html, WriteToBadPathSaysWhatToDo) {
  try {
    write_html(synthetic(2, 2), "/nonexistent-dir/x.html");
    FAIL();
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::kIo);
    EXPECT_NE(std::string(e.what()).find("directory"), std::string::npos);
  }
}

// Pages for the headless-Chromium check (test_html_chromium.sh sets DYNAPREC_HTML_OUT).
TEST(Html, WriteForBrowser) {
  const char* dir = std::getenv("DYNAPREC_HTML_OUT");
  if (!dir) GTEST_SKIP() << "DYNAPREC_HTML_OUT not set";
  write_html(synthetic(60, 24), std::string(dir) + "/small.html");
  write_html(synthetic(1000, 300), std::string(dir) + "/large.html");
  Report empty;
  empty.model = "empty";
  write_html(empty, std::string(dir) + "/empty.html");
}

struct TmpFile {
  fs::path path;
  explicit TmpFile(const std::string& text) {
    path = fs::temp_directory_path() /
           ("dynaprec_energy_" + std::to_string(std::random_device{}()) + ".json");
    std::ofstream(path) << text;
  }
  ~TmpFile() { fs::remove(path); }
};

TEST(MetricMap, KeepsNameOrderAndOneValuePerName) {
  MetricMap m;
  m["sqnr_db"] = 31.5;
  m["amax"] = 2;
  m["pred_sqnr_db_lower"] = 24;
  m["amax"] = 3;  // replaced, not added
  ASSERT_EQ(m.size(), 3u);
  std::vector<std::string> names;
  for (const auto& [k, v] : m) names.push_back(k);
  EXPECT_EQ(names, (std::vector<std::string>{"amax", "pred_sqnr_db_lower", "sqnr_db"}));
  EXPECT_EQ(m.at("amax"), 3);
  EXPECT_TRUE(m.contains("sqnr_db"));
  EXPECT_FALSE(m.contains("sqnr"));
  EXPECT_EQ(m.find("nan"), m.end());
  EXPECT_THROW((void)m.at("nan"), std::out_of_range);
  // The JSON report lists a layer's metrics in that order.
  Report r;
  PortionReport p;
  LayerReport l;
  l.metrics = m;
  p.layers.push_back(l);
  r.portions.push_back(p);
  const auto j = nlohmann::json::parse(r.to_json());
  EXPECT_EQ(j["portions"][0]["layers"][0]["metrics"]["pred_sqnr_db_lower"], 24);
  EXPECT_EQ(j["portions"][0]["layers"][0]["metrics"].size(), 3u);
}

TEST(Energy, DefaultsAreHorowitz) {
  const EnergyModel e = EnergyModel::defaults();
  EXPECT_DOUBLE_EQ(e.pj_per_mac[static_cast<size_t>(Format::kFp32)], 4.6);
  EXPECT_DOUBLE_EQ(e.pj_per_mac[static_cast<size_t>(Format::kInt8)], 0.3);
  EXPECT_DOUBLE_EQ(e.pj_per_byte, 160.0);
  EXPECT_NE(e.source.find("model"), std::string::npos);
}

TEST(Energy, TableFromFileOverridesAndFeedsTheReport) {
  TmpFile f(R"({"pj_per_mac": {"fp32": 10, "int8": 1}, "pj_per_byte": 2})");
  const EnergyModel e = EnergyModel::from_file(f.path.string());
  EXPECT_EQ(e.pj_per_mac[static_cast<size_t>(Format::kFp32)], 10);
  EXPECT_EQ(e.pj_per_mac[static_cast<size_t>(Format::kInt8)], 1);
  EXPECT_DOUBLE_EQ(e.pj_per_mac[static_cast<size_t>(Format::kFp16)], 1.5);  // default kept
  EXPECT_EQ(e.pj_per_byte, 2);
  EXPECT_NE(e.source.find(f.path.string()), std::string::npos);
  Report r;
  r.energy = e;
  PortionReport p;
  LayerReport l;
  l.precision = Format::kInt8;
  l.macs = 1000;
  l.bytes = 100;
  p.layers.push_back(l);
  r.portions.push_back(p);
  const auto j = nlohmann::json::parse(r.to_json());
  EXPECT_NEAR(j["summary"]["energy_uj_model"].get<double>(), (1000 * 1.0 + 100 * 2.0) * 1e-6,
              1e-12);
}

TEST(Energy, BadTablesAreOneLineErrors) {
  const char* bad[] = {"not json",
                       "[1, 2]",
                       R"({"pj_per_mac": {"fp33": 1}})",
                       R"({"pj_per_mac": {"fp32": -1}})",
                       R"({"pj_per_byte": "x"})",
                       R"({"pj_per_mac": 3})",
                       R"({"energy": 1})"};
  for (const char* text : bad) {
    TmpFile f(text);
    try {
      (void)EnergyModel::from_file(f.path.string());
      ADD_FAILURE() << text;
    } catch (const Error& e) {
      EXPECT_EQ(e.exit_code(), 2) << text;
      EXPECT_EQ(std::string(e.what()).find('\n'), std::string::npos) << text;
    }
  }
  EXPECT_THROW((void)EnergyModel::from_file("/nonexistent/table.json"), Error);
}

std::vector<std::string> ascii_keys() {
  std::vector<std::string> k;
  for (char c = '!'; c <= '~'; ++c) k.push_back(std::string(1, c));
  return k;
}

TEST(TextLines, DeterministicAndPreprocessed) {
  if (!fs::exists("/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf"))
    GTEST_SKIP() << "fonts-dejavu-core not installed";
  TextLineOptions o;
  o.count = 12;
  o.seed = 5;
  o.degrade_start = 4;
  o.degrade_end = 8;
  o.degrade_kind = "mixed";
  const auto keys = ascii_keys();
  const auto a = render_textlines(o, keys), b = render_textlines(o, keys);
  ASSERT_EQ(a.size(), 12u);
  for (size_t i = 0; i < a.size(); ++i) {
    EXPECT_EQ(a[i].text, b[i].text);
    EXPECT_EQ(a[i].rgb, b[i].rgb);
    EXPECT_GE(a[i].text.size(), 3u);
    EXPECT_LE(a[i].text.size(), 25u);
    EXPECT_GT(a[i].resized_w, 8);
    EXPECT_LE(a[i].resized_w, 320);
    EXPECT_EQ(a[i].rgb.size(), static_cast<size_t>(48 * a[i].resized_w * 3));
    EXPECT_EQ(!a[i].degraded.empty(), i >= 4 && i < 8) << i;
  }
  EXPECT_EQ(a[4].degraded, "noise");
  EXPECT_EQ(a[7].degraded, "contrast");
  // Line i depends only on (seed, i): a longer stream starts with the same lines.
  o.count = 3;
  const auto c = render_textlines(o, keys);
  EXPECT_EQ(c[2].rgb, a[2].rgb);
  // A clean line has dark ink on light paper.
  int dark = 0, light = 0;
  for (uint8_t v : a[0].rgb) {
    dark += v < 80;
    light += v > 200;
  }
  EXPECT_GT(dark, 50);
  EXPECT_GT(light, dark);

  const Tensor t = textlines_tensor(a, 320);
  ASSERT_EQ(t.shape(), (Shape{12, 3, 48, 320}));
  const float* d = t.data_as<float>();
  const auto& l0 = a[0];
  // (x/255 - 0.5)/0.5 in RGB order, CHW; zero right-padding.
  EXPECT_FLOAT_EQ(d[0], (l0.rgb[0] / 255.0f - 0.5f) / 0.5f);
  EXPECT_FLOAT_EQ(d[2 * 48 * 320], (l0.rgb[2] / 255.0f - 0.5f) / 0.5f);
  EXPECT_FLOAT_EQ(d[320 + 1], (l0.rgb[(l0.resized_w + 1) * 3] / 255.0f - 0.5f) / 0.5f);
  if (l0.resized_w < 320) {
    EXPECT_EQ(d[319], 0.0f);
  }
  for (int64_t i = 0; i < t.numel(); ++i) ASSERT_TRUE(d[i] >= -1.0f && d[i] <= 1.0f);
}

TEST(TextLines, MissingFontsSayWhatToInstall) {
  TextLineOptions o;
  o.font_dir = "/nonexistent";
  try {
    (void)render_textlines(o, ascii_keys());
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("fonts-dejavu-core"), std::string::npos);
  }
}

TEST(TextLines, ResizeMatchesOpenCvSemantics) {
  // 4x1 -> 2x1 is exact 2x in width but not height: bilinear with half-pixel centres.
  std::vector<uint8_t> src = {0, 0, 0, 100, 100, 100, 200, 200, 200, 255, 255, 255};
  auto out = resize_bilinear_u8(src, 4, 1, 2, 1);
  EXPECT_EQ(out[0], 50);   // (0 + 100) / 2
  EXPECT_EQ(out[3], 228);  // (200 + 255) / 2 = 227.5 -> 228
  // Exact 2x in both: INTER_AREA average with rounding.
  std::vector<uint8_t> sq = {1, 1, 1, 2, 2, 2, 3, 3, 3, 4, 4, 4};
  out = resize_bilinear_u8(sq, 2, 2, 1, 1);
  EXPECT_EQ(out[0], 3);  // (1+2+3+4+2) >> 2
  // Upscaling a constant stays constant.
  std::vector<uint8_t> c(5 * 3 * 3, 77);
  out = resize_bilinear_u8(c, 5, 3, 13, 48);
  for (uint8_t v : out) ASSERT_EQ(v, 77);
}

TEST(Ctc, GreedyDecoding) {
  const std::vector<std::string> keys = {"a", "b", "\xe4\xb8\xad"};  // a, b, 中
  const int64_t C = 5;                                               // blank, a, b, 中, ' '
  const int seq[] = {1, 1, 0, 1, 2, 2, 4, 3, 0, 0};
  std::vector<float> p(10 * C, 0.f);
  for (int t = 0; t < 10; ++t) p[static_cast<size_t>(t * C + seq[t])] = 1.f;
  EXPECT_EQ(ctc_greedy(p.data(), 10, C, keys), "aab \xe4\xb8\xad");
  EXPECT_EQ(edit_distance("kitten", "sitting"), 3);
  EXPECT_EQ(edit_distance("\xe4\xb8\xad"
                          "a",
                          "a"),
            1);  // code points, not bytes
  EXPECT_EQ(utf8_length("a\xe4\xb8\xad"), 2);
}

TEST(Ctc, ReadKeysToleratesCrlfAndNoFinalNewline) {
  const auto path = fs::temp_directory_path() / "dynaprec_keys_test.txt";
  std::ofstream(path, std::ios::binary) << "a\r\nb\nc";
  const auto k = read_keys(path.string());
  EXPECT_EQ(k, (std::vector<std::string>{"a", "b", "c"}));
  fs::remove(path);
  EXPECT_THROW((void)read_keys("/nonexistent/keys.txt"), Error);
}

}  // namespace
}  // namespace dynaprec
