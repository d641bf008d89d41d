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
//
// With AMX (int8 tiles), the same layout of X (signed codes, no +128, quads padded with zeros
// to a multiple of 16) is the B operand of tdpbssd: a tile row is one group of 4 channels for
// 16 pixels. W rows padded to 64 bytes (and to 32 rows) are the A operand. Blocks of 32 rows by
// 32 pixels keep four 16x16 int32 accumulator tiles; per 64 channels, two A and two B tile loads
// and four tdpbssd. The sums go through a 32x32 buffer to the same epilogue. A partial last
// pixel block reads past its pixels (into the next group's row, or the buffer's slack) and
// stores only its own columns.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"
#include <immintrin.h>
#pragma GCC diagnostic pop
#include <omp.h>

#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>

#include "dynaprec/cpu_features.h"
#include "kernels/cpu/pwconv_vnni.h"

#define DYNAPREC_VNNI __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,avx512vnni,fma")))
#define DYNAPREC_AMX \
  __attribute__((target("amx-tile,amx-int8,avx512f,avx512bw,avx512vl,avx512dq,fma")))

namespace dynaprec::cpu {

namespace {

constexpr int64_t kTilePixels = 64;  // V = 4 vectors of 16

// Channels [4q, 4q + 4) of X (rows of `pixels` codes, null past C) into xu's quad q, each code
// XOR `flip_byte` (0x80: + 128, unsigned; 0: signed).
void pack_quad(const int8_t* const rows[4], int64_t pixels, uint8_t* dst, uint8_t flip_byte) {
  const __m128i flip = _mm_set1_epi8(static_cast<char>(flip_byte));
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
      dst[p * 4 + j] = static_cast<uint8_t>((rows[j] ? rows[j][p] : 0) ^ flip_byte);
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

// ---- AMX ------------------------------------------------------------------------------------

struct alignas(64) TileConfig {
  uint8_t palette = 1, start_row = 0;
  uint8_t reserved[14] = {};
  uint16_t colsb[16] = {};
  uint8_t rows[16] = {};
};

// Tiles 0-3: the 2x2 accumulators (16 rows x 16 int32); 4-5: W (16 rows x 64 bytes); 6-7: X
// (16 groups of 4 channels x 16 pixels). All 16 rows of 64 bytes.
DYNAPREC_AMX void amx_begin() {
  TileConfig cfg;
  for (int t = 0; t < 8; ++t) {
    cfg.colsb[t] = 64;
    cfg.rows[t] = 16;
  }
  // GCC 12 does not see that ldtilecfg reads the whole struct and drops these stores.
  asm volatile("" : : "m"(cfg) : "memory");
  _tile_loadconfig(&cfg);
}
DYNAPREC_AMX void amx_end() { _tile_release(); }

// acc[32][32] = W[32 rows, c64] · X[c64, 32 pixels] (xs: the block's pixel 0 in group 0).
DYNAPREC_AMX void amx_block(const int8_t* w, int64_t c64, const uint8_t* xs, int64_t group_stride,
                            int32_t* acc) {
  _tile_zero(0);
  _tile_zero(1);
  _tile_zero(2);
  _tile_zero(3);
  for (int64_t k = 0; k < c64; k += 64) {
    const uint8_t* xk = xs + (k / 4) * group_stride;
    _tile_loadd(4, w + k, c64);
    _tile_loadd(5, w + 16 * c64 + k, c64);
    _tile_loadd(6, xk, group_stride);
    _tile_loadd(7, xk + 64, group_stride);
    _tile_dpbssd(0, 4, 6);
    _tile_dpbssd(1, 4, 7);
    _tile_dpbssd(2, 5, 6);
    _tile_dpbssd(3, 5, 7);
  }
  _tile_stored(0, acc, 128);
  _tile_stored(1, acc + 16, 128);
  _tile_stored(2, acc + 16 * 32, 128);
  _tile_stored(3, acc + 16 * 32 + 16, 128);
}

// The epilogue of one 32x32 block: rows [0, rows), pixels [0, valid).
DYNAPREC_AMX void amx_epilogue(const int32_t* acc, int rows, int valid, const float* scale,
                               const float* bias, float* y, int64_t y_stride,
                               const Conv2dParams& p) {
  for (int r = 0; r < rows; ++r) {
    const __m512 s = _mm512_set1_ps(scale[r]), b = _mm512_set1_ps(bias[r]);
    float* yr = y + r * y_stride;
    for (int v = 0; v < 2; ++v) {
      const int n = valid - 16 * v;
      if (n <= 0) break;
      const auto m = static_cast<__mmask16>(n >= 16 ? 0xFFFF : (1u << n) - 1);
      const __m512 f = _mm512_cvtepi32_ps(_mm512_loadu_si512(acc + r * 32 + 16 * v));
      _mm512_mask_storeu_ps(yr + 16 * v, m, _mm512_add_ps(_mm512_mul_ps(f, s), b));
    }
    apply_activation_n(yr, valid, p);
  }
}

// Whether Linux lets this process use the tile data (asked once; oneDNN may have asked first).
bool amx_permitted() {
  static const bool ok = [] {
    constexpr long kReqXcompPerm = 0x1023, kXfeatureXtiledata = 18;
    return syscall(SYS_arch_prctl, kReqXcompPerm, kXfeatureXtiledata) == 0;
  }();
  return ok;
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
  p.c64 = (c + 63) / 64 * 64;
  p.oc32 = (oc + 31) / 32 * 32;
  p.w.assign(static_cast<size_t>(oc * p.c4), 0);
  p.wsum.assign(static_cast<size_t>(oc), 0);
  p.w64.assign(static_cast<size_t>(p.oc32 * p.c64), 0);
  for (int64_t o = 0; o < oc; ++o)
    for (int64_t k = 0; k < c; ++k) {
      p.w[static_cast<size_t>(o * p.c4 + k)] = w[o * c + k];
      p.w64[static_cast<size_t>(o * p.c64 + k)] = w[o * c + k];
      p.wsum[static_cast<size_t>(o)] += w[o * c + k];
    }
  return p;
}

PwIsa pwconv_int8_isa() {
  const CpuFeatures& f = cpu_features();
  if (!(f.avx512f && f.avx512bw && f.avx512vl && f.avx512dq && f.fma)) return PwIsa::kNone;
  if (f.amx_tile && f.amx_int8 && amx_permitted()) return PwIsa::kAmx;
  return f.avx512_vnni ? PwIsa::kVnni : PwIsa::kNone;
}

void pwconv_int8(const int8_t* xq, int64_t pixels, const PwInt8Weights& w, const float* wscale,
                 float sx, const float* bias, const Conv2dParams& p, float* y, int threads,
                 PwIsa isa) {
  if (isa == PwIsa::kNone) isa = pwconv_int8_isa();
  const bool amx = isa == PwIsa::kAmx;
  const int64_t quads = (amx ? w.c64 : w.c4) / 4, oc = w.oc;
  thread_local std::vector<uint8_t> xu;
  thread_local std::vector<float> scale, shift;
  thread_local std::vector<int32_t> comp;
  xu.resize(static_cast<size_t>(quads * pixels * 4 + 128));  // + a partial block's overreach
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
    pack_quad(rows, pixels, xu_data + q * pixels * 4, amx ? 0 : 0x80);
  }
  const float* scale_data = scale.data();
  const float* shift_data = shift.data();
  if (amx) {
    const int64_t row_blocks = w.oc32 / 32, pixel_blocks = (pixels + 31) / 32;
#pragma omp parallel num_threads(threads) if (parallel)
    {
      amx_begin();
      alignas(64) int32_t acc[32 * 32];
#pragma omp for schedule(static)
      for (int64_t t = 0; t < row_blocks * pixel_blocks; ++t) {
        const int64_t pb = t / row_blocks, rb = t % row_blocks;
        const int64_t o0 = rb * 32, p0 = pb * 32;
        amx_block(w.w64.data() + o0 * w.c64, w.c64, xu_data + p0 * 4, pixels * 4, acc);
        amx_epilogue(acc, static_cast<int>(std::min<int64_t>(32, oc - o0)),
                     static_cast<int>(std::min<int64_t>(32, pixels - p0)), scale_data + o0,
                     shift_data + o0, y + o0 * pixels + p0, pixels, p);
      }
      amx_end();
    }
    return;
  }
  const int64_t row_blocks = (oc + 3) / 4, pixel_blocks = (pixels + kTilePixels - 1) / kTilePixels;
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
