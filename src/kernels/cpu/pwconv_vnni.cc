// Pointwise int8 convolution on NCHW with AVX-512 VNNI (pwconv_vnni.h).
//
// Per image, Y[OC, P] = W[OC, C] · X[C, P], both in NCHW order:
//   1. X's int8 codes are packed four channels at a time, xu[c / 4][p][c % 4] = xq[c][p] + 128
//      (unsigned; channels past C are code 0), so that one 64-byte load holds 4 channels of 16
//      pixels, the unsigned operand of vpdpbusd.
//   2. Tiles of R <= 4 output channels by V <= 4 vectors of 16 pixels keep R·V int32
//      accumulators: per group of 4 channels, V loads of X, R broadcasts of 4 weight bytes
//      (signed), R·V vpdpbusd. Each sum is Σ (xq + 128) · w, exact in int32 while
//      C · 255 · 127 < 2^31 (callers keep C <= 65536); 128 · Σ w is subtracted at the end.
//   3. The epilogue on the tile: float(acc) · (sx · wscale[oc]), then + bias[oc] (two
//      roundings, the reference's), stored to the NCHW rows, then apply_activation_n on the
//      stored rows while they are in L1. Bit for bit the reference's result.
// Tiles walk the pixel blocks outermost, so that a block of X (C · 64 bytes) serves all rows.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"
#include <immintrin.h>
#pragma GCC diagnostic pop
#include <omp.h>

#include <algorithm>
#include <cstring>

#include "dynaprec/cpu_features.h"
#include "kernels/cpu/pwconv_vnni.h"

#define DYNAPREC_VNNI __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,avx512vnni,fma")))

namespace dynaprec::cpu {

namespace {

constexpr int64_t kTilePixels = 64;  // V = 4 vectors of 16

// Channels [4q, 4q + 4) of X (rows of `pixels` codes, null past C) into xu's quad q.
void pack_quad(const int8_t* const rows[4], int64_t pixels, uint8_t* dst) {
  const __m128i flip = _mm_set1_epi8(static_cast<char>(0x80));
  const __m128i zero = _mm_setzero_si128();
  int64_t p = 0;
  for (; p + 16 <= pixels; p += 16) {
    __m128i a[4];
    for (int j = 0; j < 4; ++j)
      a[j] = _mm_xor_si128(
          rows[j] ? _mm_loadu_si128(reinterpret_cast<const __m128i*>(rows[j] + p)) : zero, flip);
    const __m128i t0 = _mm_unpacklo_epi8(a[0], a[1]), t1 = _mm_unpackhi_epi8(a[0], a[1]);
    const __m128i t2 = _mm_unpacklo_epi8(a[2], a[3]), t3 = _mm_unpackhi_epi8(a[2], a[3]);
    auto* out = reinterpret_cast<__m128i*>(dst + p * 4);
    _mm_storeu_si128(out + 0, _mm_unpacklo_epi16(t0, t2));  // pixels p .. p + 3
    _mm_storeu_si128(out + 1, _mm_unpackhi_epi16(t0, t2));
    _mm_storeu_si128(out + 2, _mm_unpacklo_epi16(t1, t3));
    _mm_storeu_si128(out + 3, _mm_unpackhi_epi16(t1, t3));
  }
  for (; p < pixels; ++p)
    for (int j = 0; j < 4; ++j)
      dst[p * 4 + j] = static_cast<uint8_t>((rows[j] ? rows[j][p] : 0) ^ 0x80);
}

struct TileArgs {
  const uint8_t* xu;  // the tile's first pixel in quad 0
  int64_t quad_stride;
  int64_t quads;
  const int8_t* w;  // the tile's first row
  int64_t c4;
  int valid;            // pixels in the tile
  const int32_t* comp;  // 128 · Σ w per row
  const float* scale;   // sx · wscale per row
  const float* bias;    // per row
  float* y;             // the tile's first row and pixel
  int64_t y_stride;
  const Conv2dParams* p;
};

// acc += Σ4 a (unsigned bytes) · b (signed bytes), in place: GCC 12 copies the accumulators
// around _mm512_dpbusd_epi32 (and spills them) in this loop; the asm keeps each in its register.
DYNAPREC_VNNI inline __m512i dpbusd(__m512i acc, __m512i a, __m512i b) {
  asm("vpdpbusd %2, %1, %0" : "+v"(acc) : "v"(a), "v"(b));
  return acc;
}

template <int R, int V>
DYNAPREC_VNNI void tile(const TileArgs& a) {
  __m512i acc[R][V];
  __mmask16 m[V];
#pragma GCC unroll 4
  for (int v = 0; v < V; ++v) {
    const int n = a.valid - 16 * v;
    m[v] = static_cast<__mmask16>(n >= 16 ? 0xFFFF : n > 0 ? (1u << n) - 1 : 0);
#pragma GCC unroll 4
    for (int r = 0; r < R; ++r) acc[r][v] = _mm512_setzero_si512();
  }
  for (int64_t q = 0; q < a.quads; ++q) {
    const uint8_t* xq = a.xu + q * a.quad_stride;
    __m512i xv[V];
#pragma GCC unroll 4
    for (int v = 0; v < V; ++v) xv[v] = _mm512_maskz_loadu_epi32(m[v], xq + 64 * v);
#pragma GCC unroll 4
    for (int r = 0; r < R; ++r) {
      int32_t quad;
      std::memcpy(&quad, a.w + r * a.c4 + 4 * q, 4);
      const __m512i wb = _mm512_set1_epi32(quad);
#pragma GCC unroll 4
      for (int v = 0; v < V; ++v) acc[r][v] = dpbusd(acc[r][v], xv[v], wb);
    }
  }
#pragma GCC unroll 4
  for (int r = 0; r < R; ++r) {
    const __m512i comp = _mm512_set1_epi32(a.comp[r]);
    const __m512 s = _mm512_set1_ps(a.scale[r]), b = _mm512_set1_ps(a.bias[r]);
    float* yr = a.y + r * a.y_stride;
#pragma GCC unroll 4
    for (int v = 0; v < V; ++v) {
      const __m512 f = _mm512_cvtepi32_ps(_mm512_sub_epi32(acc[r][v], comp));
      _mm512_mask_storeu_ps(yr + 16 * v, m[v], _mm512_add_ps(_mm512_mul_ps(f, s), b));
    }
    apply_activation_n(yr, a.valid, *a.p);
  }
}

using TileFn = void (*)(const TileArgs&);
template <int R>
constexpr TileFn kTilesOfRows[4] = {tile<R, 1>, tile<R, 2>, tile<R, 3>, tile<R, 4>};
constexpr const TileFn* kTiles[4] = {kTilesOfRows<1>, kTilesOfRows<2>, kTilesOfRows<3>,
                                     kTilesOfRows<4>};

}  // namespace

PwInt8Weights pwconv_int8_prepare(const int8_t* w, int64_t oc, int64_t c) {
  PwInt8Weights p;
  p.oc = oc;
  p.c = c;
  p.c4 = (c + 3) / 4 * 4;
  p.w.assign(static_cast<size_t>(oc * p.c4), 0);
  p.wsum.assign(static_cast<size_t>(oc), 0);
  for (int64_t o = 0; o < oc; ++o)
    for (int64_t k = 0; k < c; ++k) {
      p.w[static_cast<size_t>(o * p.c4 + k)] = w[o * c + k];
      p.wsum[static_cast<size_t>(o)] += w[o * c + k];
    }
  return p;
}

bool pwconv_int8_available() {
  const CpuFeatures& f = cpu_features();
  return f.avx512f && f.avx512bw && f.avx512vl && f.avx512dq && f.avx512_vnni && f.fma;
}

void pwconv_int8(const int8_t* xq, int64_t pixels, const PwInt8Weights& w, const float* wscale,
                 float sx, const float* bias, const Conv2dParams& p, float* y, int threads) {
  const int64_t quads = w.c4 / 4, oc = w.oc;
  thread_local std::vector<uint8_t> xu;
  thread_local std::vector<float> scale, shift;
  thread_local std::vector<int32_t> comp;
  xu.resize(static_cast<size_t>(quads * pixels * 4));
  scale.resize(static_cast<size_t>(oc));
  shift.resize(static_cast<size_t>(oc));
  comp.resize(static_cast<size_t>(oc));
  for (int64_t o = 0; o < oc; ++o) {
    scale[static_cast<size_t>(o)] = sx * wscale[o];
    shift[static_cast<size_t>(o)] = bias ? bias[o] : 0.0f;
    comp[static_cast<size_t>(o)] = 128 * w.wsum[static_cast<size_t>(o)];
  }
  uint8_t* xu_data = xu.data();
  const bool parallel = quads * pixels * oc > (int64_t{1} << 16);
#pragma omp parallel for num_threads(threads) schedule(static) if (parallel)
  for (int64_t q = 0; q < quads; ++q) {
    const int8_t* rows[4];
    for (int64_t j = 0; j < 4; ++j) rows[j] = 4 * q + j < w.c ? xq + (4 * q + j) * pixels : nullptr;
    pack_quad(rows, pixels, xu_data + q * pixels * 4);
  }
  const int64_t row_blocks = (oc + 3) / 4, pixel_blocks = (pixels + kTilePixels - 1) / kTilePixels;
  const float* scale_data = scale.data();
  const float* shift_data = shift.data();
  const int32_t* comp_data = comp.data();
#pragma omp parallel for num_threads(threads) schedule(static) if (parallel)
  for (int64_t t = 0; t < row_blocks * pixel_blocks; ++t) {
    const int64_t pb = t / row_blocks, rb = t % row_blocks;
    const int64_t o0 = rb * 4, p0 = pb * kTilePixels;
    const int rows = static_cast<int>(std::min<int64_t>(4, oc - o0));
    const int valid = static_cast<int>(std::min(kTilePixels, pixels - p0));
    const TileArgs a{
        xu_data + p0 * 4, pixels * 4,      quads,           w.w.data() + o0 * w.c4, w.c4,   valid,
        comp_data + o0,   scale_data + o0, shift_data + o0, y + o0 * pixels + p0,   pixels, &p};
    kTiles[rows - 1][(valid + 15) / 16 - 1](a);
  }
}

}  // namespace dynaprec::cpu
