// Text lines for the demo (include/dynaprec/textlines.h): FreeType rendering with the DejaVu
// fonts, the PaddleOCR recognizer's preprocessing, greedy CTC decoding.
#include "dynaprec/textlines.h"

#include <ft2build.h>
#include FT_FREETYPE_H

#include <algorithm>
#include <cmath>
#include <fstream>
#include <memory>
#include <set>
#include <sstream>

#include "dynaprec/error.h"

namespace dynaprec {
namespace {

// The word list of tools/evalset/make_textlines.py (frequent English words).
const char* kWords =
    "the of and to in is it you that he was for on are with as his they be at one have this "
    "from or had by word but what some we can out other were all there when up use your how "
    "said an each she which do their time if will way about many then them write would like so "
    "these her long make thing see him two has look more day could go come did number sound no "
    "most people my over know water than call first who may down side been now find any new "
    "work part take get place made live where after back little only round man year came show "
    "every good me give our under name very through just form sentence great think say help "
    "low line differ turn cause much mean before move right boy old too same tell does set "
    "three want air well also play small end put home read hand port large spell add even land "
    "here must big high such follow act why ask men change went light kind off need house "
    "picture try us again animal point mother world near build self earth father head stand "
    "own page should country found answer school grow study still learn plant cover food sun "
    "four between state keep eye never last let thought city tree cross farm hard start might "
    "story saw far sea draw left late run while press close night real life few north open "
    "seem together next white children begin got walk example ease paper group always music "
    "those both mark often letter until mile river car feet care second book carry took "
    "science eat room friend began idea fish mountain stop once base hear horse cut sure watch "
    "color face wood main enough plain girl usual young ready above ever red list though feel "
    "talk bird soon body dog family direct pose leave song measure door product black short "
    "numeral class wind question happen complete ship area half rock order fire south problem "
    "piece told knew pass since top whole king space heard best hour better true during "
    "hundred five remember step early hold west ground interest reach fast verb sing listen "
    "six table travel less morning ten simple several vowel toward war lay against pattern "
    "slow center love person money serve appear road map rain rule govern pull cold notice "
    "voice unit power town fine certain fly fall lead cry dark machine note wait plan figure "
    "star box noun field rest correct able pound done beauty drive stood contain front teach "
    "week final gave green quick develop ocean warm free minute strong special mind behind "
    "clear tail produce fact street inch multiply nothing course stay wheel full force blue "
    "object decide surface deep moon island foot system busy test record boat common gold "
    "possible plane stead dry wonder laugh thousand ago ran check game shape equate miss "
    "brought heat snow tire bring yes distant fill east paint language among ";

const char* kFonts[] = {"DejaVuSans.ttf",       "DejaVuSans-Bold.ttf", "DejaVuSerif.ttf",
                        "DejaVuSerif-Bold.ttf", "DejaVuSansMono.ttf",  "DejaVuSansMono-Bold.ttf"};
constexpr int kFontCount = 6;
constexpr int kRecH = 48;
const char kPunct[] = ".,:;!?-'\"()/&%#+=@*";

std::vector<std::string> split_words() {
  std::vector<std::string> v;
  std::istringstream in(kWords);
  for (std::string w; in >> w;) v.push_back(w);
  return v;
}

uint64_t mix64(uint64_t z) {
  z += 0x9e3779b97f4a7c15ULL;
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

// SplitMix64: one independent stream per (seed, stream, index), portable and deterministic.
struct Rng {
  uint64_t s;
  bool have_spare = false;
  double spare = 0;
  Rng(uint64_t seed, uint64_t index, uint64_t stream)
      : s(mix64(seed ^ mix64(stream * 0x632be59bd9b4e019ULL ^ mix64(index)))) {}
  uint64_t next() {
    s += 0x9e3779b97f4a7c15ULL;
    uint64_t z = s;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
  }
  double uniform() { return static_cast<double>(next() >> 11) * 0x1p-53; }
  double uniform(double lo, double hi) { return lo + (hi - lo) * uniform(); }
  /// An integer in [lo, hi).
  int64_t integers(int64_t lo, int64_t hi) {
    return lo + static_cast<int64_t>(uniform() * static_cast<double>(hi - lo));
  }
  double normal(double sigma) {
    if (have_spare) {
      have_spare = false;
      return spare * sigma;
    }
    double u1 = uniform(), u2 = uniform();
    if (u1 < 1e-300) u1 = 1e-300;
    const double r = std::sqrt(-2.0 * std::log(u1));
    spare = r * std::sin(2 * M_PI * u2);
    have_spare = true;
    return r * std::cos(2 * M_PI * u2) * sigma;
  }
};

struct Alphabet {
  std::set<std::string> chars;
  bool has(char c) const { return c == ' ' || chars.count(std::string(1, c)) > 0; }
  std::string filter(const std::string& w) const {
    std::string o;
    for (char c : w)
      if (has(c)) o += c;
    return o;
  }
};

std::string capitalize(std::string w) {
  for (size_t i = 0; i < w.size(); ++i)
    w[i] = static_cast<char>(i ? std::tolower(static_cast<unsigned char>(w[i]))
                               : std::toupper(static_cast<unsigned char>(w[i])));
  return w;
}
std::string upper(std::string w) {
  for (auto& c : w) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  return w;
}

std::string token(Rng& rng, const std::vector<std::string>& words, const Alphabet& a) {
  const auto word = [&] {
    return words[static_cast<size_t>(rng.integers(0, static_cast<int64_t>(words.size())))];
  };
  std::string w;
  const double r = rng.uniform();
  if (r < 0.62) {
    w = word();
    const double c = rng.uniform();
    if (c < 0.18)
      w = capitalize(w);
    else if (c < 0.24)
      w = upper(w);
  } else if (r < 0.84) {
    const int64_t n = rng.integers(1, 7);
    for (int64_t i = 0; i < n; ++i) w += static_cast<char>('0' + rng.integers(0, 10));
    const double c = rng.uniform();
    if (c < 0.15 && n >= 2)
      w = w.substr(0, w.size() - 1) + "." + w.back();
    else if (c < 0.25)
      w = "$" + w;
    else if (c < 0.35)
      w += "%";
  } else {
    const char p = kPunct[rng.integers(0, static_cast<int64_t>(sizeof(kPunct) - 1))];
    if (std::string(".,:;!?%").find(p) != std::string::npos)
      w = word() + p;
    else if (p == '(')
      w = "(" + word() + ")";
    else if (p == '"')
      w = "\"" + word() + "\"";
    else
      w = std::string(1, p);
  }
  return a.filter(w);
}

std::string strip(const std::string& s) {
  const auto b = s.find_first_not_of(" \t\n\r");
  if (b == std::string::npos) return {};
  const auto e = s.find_last_not_of(" \t\n\r");
  return s.substr(b, e - b + 1);
}

std::string join(const std::vector<std::string>& parts, size_t n) {
  std::string o;
  for (size_t i = 0; i < n; ++i) o += (i ? " " : "") + parts[i];
  return o;
}

std::string make_text(Rng& rng, const std::vector<std::string>& words, const Alphabet& a,
                      size_t min_len = 3, size_t max_len = 25) {
  const auto target = static_cast<size_t>(
      rng.integers(static_cast<int64_t>(min_len), static_cast<int64_t>(max_len) + 1));
  for (int attempt = 0; attempt < 100; ++attempt) {
    std::vector<std::string> parts;
    while (join(parts, parts.size()).size() < target) {
      std::string t = token(rng, words, a);
      if (!t.empty()) parts.push_back(t);
    }
    std::string text = join(parts, parts.size());
    if (text.size() > max_len)
      text = parts.size() > 1 ? join(parts, parts.size() - 1) : text.substr(0, max_len);
    text = strip(text);
    if (text.size() >= min_len && text.size() <= max_len) return text;
  }
  throw Error(ErrorKind::kInternal, "could not build a text line");
}

struct FreeType {
  FT_Library lib = nullptr;
  std::vector<FT_Face> faces;
  explicit FreeType(const std::string& dir) {
    if (FT_Init_FreeType(&lib)) throw Error(ErrorKind::kInternal, "FreeType did not initialise");
    for (const char* f : kFonts) {
      FT_Face face = nullptr;
      const std::string path = dir + "/" + f;
      if (FT_New_Face(lib, path.c_str(), 0, &face)) {
        FT_Done_FreeType(lib);
        lib = nullptr;
        throw Error(ErrorKind::kInvalidInput,
                    "font " + path +
                        " not found: install the DejaVu fonts (apt-get install "
                        "fonts-dejavu-core)");
      }
      faces.push_back(face);
    }
  }
  ~FreeType() {
    if (!lib) return;
    for (auto* f : faces) FT_Done_Face(f);
    FT_Done_FreeType(lib);
  }
  FreeType(const FreeType&) = delete;
  FreeType& operator=(const FreeType&) = delete;
};

// Draws `text` dark on light (colours from rng), crops to the ink plus a random margin; RGB HWC.
std::vector<uint8_t> render_line(Rng& rng, const std::string& text, FT_Face face, int size,
                                 int& out_w, int& out_h) {
  int bg[3], fg[3];
  for (int& v : bg) v = static_cast<int>(rng.integers(228, 256));
  for (int& v : fg) v = static_cast<int>(rng.integers(0, 50));
  FT_Set_Pixel_Sizes(face, 0, static_cast<FT_UInt>(size));
  struct Glyph {
    int x, y, w, h, pitch;
    std::vector<uint8_t> px;
  };
  std::vector<Glyph> glyphs;
  long pen = 0;  // 26.6
  FT_UInt prev = 0;
  const bool kern = FT_HAS_KERNING(face);
  int x0 = 1 << 30, y0 = 1 << 30, x1 = -(1 << 30), y1 = -(1 << 30);
  for (unsigned char ch : text) {
    const FT_UInt gi = FT_Get_Char_Index(face, ch);
    if (kern && prev && gi) {
      FT_Vector d;
      if (!FT_Get_Kerning(face, prev, gi, FT_KERNING_DEFAULT, &d)) pen += d.x;
    }
    prev = gi;
    if (FT_Load_Glyph(face, gi, FT_LOAD_DEFAULT) ||
        FT_Render_Glyph(face->glyph, FT_RENDER_MODE_NORMAL))
      continue;
    const FT_GlyphSlot g = face->glyph;
    const FT_Bitmap& bm = g->bitmap;
    if (bm.width > 0 && bm.rows > 0) {
      Glyph gl{static_cast<int>(pen >> 6) + g->bitmap_left,
               -g->bitmap_top,
               static_cast<int>(bm.width),
               static_cast<int>(bm.rows),
               static_cast<int>(bm.width),
               {}};
      gl.px.resize(static_cast<size_t>(gl.w) * static_cast<size_t>(gl.h));
      for (int r = 0; r < gl.h; ++r)
        for (int c = 0; c < gl.w; ++c)
          gl.px[static_cast<size_t>(r * gl.w + c)] = bm.buffer[r * bm.pitch + c];
      x0 = std::min(x0, gl.x);
      y0 = std::min(y0, gl.y);
      x1 = std::max(x1, gl.x + gl.w);
      y1 = std::max(y1, gl.y + gl.h);
      glyphs.push_back(std::move(gl));
    }
    pen += g->advance.x;
  }
  if (glyphs.empty()) x0 = y0 = 0, x1 = y1 = size;
  const int pad = size, W = x1 - x0 + 2 * pad, H = y1 - y0 + 2 * pad;
  std::vector<float> alpha(static_cast<size_t>(W) * static_cast<size_t>(H), 0.f);
  for (const auto& g : glyphs)
    for (int r = 0; r < g.h; ++r)
      for (int c = 0; c < g.w; ++c) {
        float& a = alpha[static_cast<size_t>((g.y - y0 + pad + r) * W + (g.x - x0 + pad + c))];
        a = std::min(1.f, a + g.px[static_cast<size_t>(r * g.w + c)] / 255.f);
      }
  std::vector<uint8_t> img(static_cast<size_t>(W) * static_cast<size_t>(H) * 3);
  int iy0 = H, iy1 = 0, ix0 = W, ix1 = 0;
  for (int y = 0; y < H; ++y)
    for (int x = 0; x < W; ++x) {
      const float a = alpha[static_cast<size_t>(y * W + x)];
      int diff = 0;
      for (int k = 0; k < 3; ++k) {
        const int v = static_cast<int>(std::lround(bg[k] + (fg[k] - bg[k]) * a));
        img[(static_cast<size_t>(y) * W + x) * 3 + k] = static_cast<uint8_t>(v);
        diff = std::max(diff, std::abs(v - bg[k]));
      }
      if (diff > 40) {
        iy0 = std::min(iy0, y), iy1 = std::max(iy1, y + 1);
        ix0 = std::min(ix0, x), ix1 = std::max(ix1, x + 1);
      }
    }
  if (iy1 <= iy0) iy0 = 0, iy1 = H, ix0 = 0, ix1 = W;
  int m[4];
  for (int& v : m) v = static_cast<int>(std::nearbyint(size * rng.uniform(0.08, 0.25)));
  iy0 = std::max(0, iy0 - m[0]), iy1 = std::min(H, iy1 + m[1]);
  ix0 = std::max(0, ix0 - m[2]), ix1 = std::min(W, ix1 + m[3]);
  out_w = ix1 - ix0, out_h = iy1 - iy0;
  std::vector<uint8_t> crop(static_cast<size_t>(out_w) * static_cast<size_t>(out_h) * 3);
  for (int y = 0; y < out_h; ++y)
    std::copy_n(&img[(static_cast<size_t>(y + iy0) * W + ix0) * 3], out_w * 3,
                &crop[static_cast<size_t>(y) * out_w * 3]);
  return crop;
}

void add_noise(Rng& rng, std::vector<float>& f, int w, int h, double sigma) {
  std::vector<double> mono(static_cast<size_t>(w) * static_cast<size_t>(h));
  for (auto& v : mono) v = rng.normal(sigma);
  for (size_t i = 0; i < f.size(); ++i) f[i] += static_cast<float>(0.7 * mono[i / 3]);
  for (auto& v : f) v += static_cast<float>(0.3 * rng.normal(sigma));
}

void degrade(Rng& rng, std::vector<uint8_t>& a, int w, int h, const std::string& kind) {
  std::vector<float> f(a.begin(), a.end());
  double g = 0;
  for (float v : f) g += v;
  g /= static_cast<double>(f.size());
  if (kind == "noise") {  // halved contrast, then mostly monochrome Gaussian noise, sigma 100
    const double k = rng.uniform(0.42, 0.5);
    for (auto& v : f) v = static_cast<float>((v - g) * k + g);
    add_noise(rng, f, w, h, 100.0);
  } else {  // contrast: ink-to-paper difference down to ~12-16 levels, light noise
    const double k = rng.uniform(0.055, 0.07), base = rng.uniform(90, 170);
    for (auto& v : f) v = static_cast<float>((v - g) * k + base);
    add_noise(rng, f, w, h, 12.0);
  }
  for (size_t i = 0; i < a.size(); ++i)
    a[i] = static_cast<uint8_t>(std::clamp(std::nearbyint(f[i]), 0.f, 255.f));
}

}  // namespace

std::vector<uint8_t> resize_bilinear_u8(const std::vector<uint8_t>& a, int in_w, int in_h,
                                        int out_w, int out_h) {
  std::vector<uint8_t> out(static_cast<size_t>(out_w) * static_cast<size_t>(out_h) * 3);
  if (in_h == 2 * out_h && in_w == 2 * out_w) {  // OpenCV switches to INTER_AREA for exact 2x
    for (int y = 0; y < out_h; ++y)
      for (int x = 0; x < out_w; ++x)
        for (int k = 0; k < 3; ++k) {
          auto at = [&](int yy, int xx) {
            return static_cast<int>(a[(static_cast<size_t>(yy) * in_w + xx) * 3 + k]);
          };
          const int s = at(2 * y, 2 * x) + at(2 * y + 1, 2 * x) + at(2 * y, 2 * x + 1) +
                        at(2 * y + 1, 2 * x + 1);
          out[(static_cast<size_t>(y) * out_w + x) * 3 + k] = static_cast<uint8_t>((s + 2) >> 2);
        }
    return out;
  }
  struct Axis {
    std::vector<int> i0, i1;
    std::vector<int64_t> w0, w1;
  };
  auto axis = [](int n_out, int n_in) {
    Axis ax;
    const double scale = static_cast<double>(n_in) / n_out;
    for (int i = 0; i < n_out; ++i) {
      const double f = (i + 0.5) * scale - 0.5;
      int64_t i0 = static_cast<int64_t>(std::floor(f));
      double w1 = f - static_cast<double>(i0);
      if (i0 < 0) w1 = 0, i0 = 0;
      if (i0 >= n_in - 1) w1 = 0, i0 = n_in - 1;
      const int64_t i1 = std::min<int64_t>(i0 + 1, n_in - 1);
      const auto w = static_cast<int64_t>(std::nearbyint(w1 * 2048));
      ax.i0.push_back(static_cast<int>(i0));
      ax.i1.push_back(static_cast<int>(i1));
      ax.w0.push_back(2048 - w);
      ax.w1.push_back(w);
    }
    return ax;
  };
  const Axis ya = axis(out_h, in_h), xa = axis(out_w, in_w);
  auto px = [&](int y, int x, int k) {
    return static_cast<int64_t>(a[(static_cast<size_t>(y) * in_w + x) * 3 + k]);
  };
  for (int y = 0; y < out_h; ++y)
    for (int x = 0; x < out_w; ++x)
      for (int k = 0; k < 3; ++k) {
        const size_t yy = static_cast<size_t>(y), xx = static_cast<size_t>(x);
        const int64_t r0 =
            px(ya.i0[yy], xa.i0[xx], k) * ya.w0[yy] + px(ya.i1[yy], xa.i0[xx], k) * ya.w1[yy];
        const int64_t r1 =
            px(ya.i0[yy], xa.i1[xx], k) * ya.w0[yy] + px(ya.i1[yy], xa.i1[xx], k) * ya.w1[yy];
        const int64_t v = (r0 * xa.w0[xx] + r1 * xa.w1[xx] + (int64_t{1} << 21)) >> 22;
        out[(yy * static_cast<size_t>(out_w) + xx) * 3 + static_cast<size_t>(k)] =
            static_cast<uint8_t>(std::clamp<int64_t>(v, 0, 255));
      }
  return out;
}

std::vector<std::string> read_keys(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  if (!f)
    throw Error(ErrorKind::kInvalidInput,
                "keys file " + path + " not found: run `bash scripts/fetch_models.sh`");
  std::stringstream ss;
  ss << f.rdbuf();
  const std::string text = ss.str();
  std::vector<std::string> keys;
  size_t pos = 0;
  while (pos <= text.size()) {
    size_t nl = text.find('\n', pos);
    if (nl == std::string::npos) nl = text.size();
    std::string k = text.substr(pos, nl - pos);
    if (!k.empty() && k.back() == '\r') k.pop_back();
    keys.push_back(k);
    pos = nl + 1;
  }
  if (!keys.empty() && keys.back().empty()) keys.pop_back();
  return keys;
}

std::vector<TextLine> render_textlines(const TextLineOptions& o,
                                       const std::vector<std::string>& keys) {
  if (o.count < 0 || o.width < 8 || o.min_size < 6 || o.max_size < o.min_size)
    throw Error(ErrorKind::kUsage, "text lines: bad count, width or font sizes");
  FreeType ft(o.font_dir);
  Alphabet alpha;
  alpha.chars.insert(keys.begin(), keys.end());
  const auto words = split_words();
  std::vector<TextLine> out;
  out.reserve(static_cast<size_t>(o.count));
  for (int i = 0; i < o.count; ++i) {
    Rng rng(o.seed, static_cast<uint64_t>(i), 0);
    TextLine t;
    t.text = make_text(rng, words, alpha);
    const auto fi = static_cast<size_t>(rng.integers(0, kFontCount));
    t.font = kFonts[fi];
    t.size = static_cast<int>(rng.integers(o.min_size, o.max_size + 1));
    int cw = 0, ch = 0;
    const auto crop = render_line(rng, t.text, ft.faces[fi], t.size, cw, ch);
    t.resized_w =
        std::min(o.width, static_cast<int>(std::ceil(kRecH * static_cast<double>(cw) / ch)));
    t.rgb = resize_bilinear_u8(crop, cw, ch, t.resized_w, kRecH);
    if (i >= o.degrade_start && i < o.degrade_end) {
      std::string kind = o.degrade_kind;
      if (kind == "mixed") kind = i < (o.degrade_start + o.degrade_end) / 2 ? "noise" : "contrast";
      Rng r1(o.seed, static_cast<uint64_t>(i), 1);
      degrade(r1, t.rgb, t.resized_w, kRecH, kind);
      t.degraded = kind;
    }
    out.push_back(std::move(t));
  }
  return out;
}

Tensor textlines_tensor(const std::vector<TextLine>& lines, int width) {
  Tensor t = Tensor::zeros({static_cast<int64_t>(lines.size()), 3, kRecH, width}, DType::kF32);
  float* d = t.data_as<float>();
  const size_t plane = static_cast<size_t>(kRecH) * static_cast<size_t>(width);
  for (size_t n = 0; n < lines.size(); ++n) {
    const auto& l = lines[n];
    for (int y = 0; y < kRecH; ++y)
      for (int x = 0; x < l.resized_w && x < width; ++x)
        for (int k = 0; k < 3; ++k) {
          const float v =
              static_cast<float>(l.rgb[(static_cast<size_t>(y) * l.resized_w + x) * 3 + k]);
          d[(n * 3 + static_cast<size_t>(k)) * plane + static_cast<size_t>(y) * width + x] =
              (v / 255.0f - 0.5f) / 0.5f;
        }
  }
  return t;
}

std::string ctc_greedy(const float* probs, int64_t t, int64_t c,
                       const std::vector<std::string>& keys) {
  std::string out;
  int64_t prev = -1;
  for (int64_t i = 0; i < t; ++i) {
    const float* row = probs + i * c;
    const int64_t k = std::max_element(row, row + c) - row;
    if (k != prev && k != 0) {
      if (k <= static_cast<int64_t>(keys.size()))
        out += keys[static_cast<size_t>(k - 1)];
      else if (k == static_cast<int64_t>(keys.size()) + 1)
        out += ' ';
    }
    prev = k;
  }
  return out;
}

namespace {
std::u32string decode_utf8(const std::string& s) {
  std::u32string o;
  for (size_t i = 0; i < s.size();) {
    const auto c = static_cast<unsigned char>(s[i]);
    int n = c < 0x80 ? 1 : (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3 : (c >> 3) == 30 ? 4 : 1;
    char32_t v = n == 1 ? c : n == 2 ? (c & 0x1f) : n == 3 ? (c & 0x0f) : (c & 0x07);
    for (int k = 1; k < n && i + static_cast<size_t>(k) < s.size(); ++k)
      v = (v << 6) | (static_cast<unsigned char>(s[i + static_cast<size_t>(k)]) & 0x3f);
    o.push_back(v);
    i += static_cast<size_t>(n);
  }
  return o;
}
}  // namespace

int64_t utf8_length(const std::string& s) { return static_cast<int64_t>(decode_utf8(s).size()); }

int64_t edit_distance(const std::string& sa, const std::string& sb) {
  const std::u32string a = decode_utf8(sa), b = decode_utf8(sb);
  std::vector<int64_t> prev(b.size() + 1), cur(b.size() + 1);
  for (size_t j = 0; j <= b.size(); ++j) prev[j] = static_cast<int64_t>(j);
  for (size_t i = 1; i <= a.size(); ++i) {
    cur[0] = static_cast<int64_t>(i);
    for (size_t j = 1; j <= b.size(); ++j)
      cur[j] = std::min({prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (a[i - 1] != b[j - 1])});
    std::swap(prev, cur);
  }
  return prev[b.size()];
}

}  // namespace dynaprec
