// Text-line images for the PaddleOCR recognizer, rendered in C++ (FreeType, Debian's DejaVu
// fonts) for `dynaprec demo`, and the greedy CTC decoding of its output.
//
// The rendering follows tools/evalset/make_textlines.py (same word list and token rules, fonts,
// size range, colours, ink crop with a random margin, degradations) and its preprocessing exactly
// as PaddleOCR's recognizer (resize_norm_img): resize to height 48 keeping the aspect ratio
// (OpenCV INTER_LINEAR semantics, 11-bit fixed-point weights), width min(ceil(48·w/h), width),
// RGB, (x/255 - 0.5)/0.5, CHW, zero right-padding. The random streams are our own (SplitMix64),
// so the texts differ from the Python tool's for the same seed; line i depends only on
// (seed, i), and the same seed always gives the same lines.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "dynaprec/tensor.h"

namespace dynaprec {

struct TextLineOptions {
  uint64_t seed = 1;
  int count = 120;
  int width = 320;  ///< padded input width
  int min_size = 28, max_size = 44;
  int degrade_start = 0, degrade_end = 0;  ///< lines [start, end) are degraded
  std::string degrade_kind = "noise";      ///< noise, contrast, or mixed (noise then contrast)
  std::string font_dir = "/usr/share/fonts/truetype/dejavu";
};

struct TextLine {
  std::string text;  ///< ground truth (UTF-8)
  std::string font;
  int size = 0;
  std::string degraded;      ///< "" or the degradation kind
  int resized_w = 0;         ///< width of the 48-pixel-high image (before padding)
  std::vector<uint8_t> rgb;  ///< 48 × resized_w × 3, what the model sees before normalising
};

/// Reads ppocr_keys_v1.txt: class k >= 1 is line k-1 (CRLF and a missing final newline are
/// tolerated). Throws Error kInvalidInput when the file cannot be read.
std::vector<std::string> read_keys(const std::string& path);

/// Renders the lines. `keys` restricts the characters (the recognizer's alphabet, plus ' ').
/// Throws Error kInvalidInput when a font cannot be loaded (the message names the Debian package).
std::vector<TextLine> render_textlines(const TextLineOptions& o,
                                       const std::vector<std::string>& keys);

/// The model input: float32 [N, 3, 48, width], normalised and right-padded with zeros.
Tensor textlines_tensor(const std::vector<TextLine>& lines, int width);

/// OpenCV cv2.resize(INTER_LINEAR) for uint8 HWC with 3 channels (exposed for tests).
std::vector<uint8_t> resize_bilinear_u8(const std::vector<uint8_t>& src, int in_w, int in_h,
                                        int out_w, int out_h);

/// Greedy CTC: argmax per time step, repeats merged, blank (class 0) dropped; class k in
/// [1, keys.size()] is keys[k-1], class keys.size()+1 is ' '. probs is [T, C] row-major.
std::string ctc_greedy(const float* probs, int64_t t, int64_t c,
                       const std::vector<std::string>& keys);

/// Levenshtein distance between two UTF-8 strings, in code points.
int64_t edit_distance(const std::string& a, const std::string& b);
/// Number of code points of a UTF-8 string.
int64_t utf8_length(const std::string& s);

}  // namespace dynaprec
