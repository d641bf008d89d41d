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
// With AMX (int8 tiles), the same layout of X (signed codes, no +128, groups padded with zeros to
// a multiple of 16) is the B operand of tdpbssd: a tile row is one group of 4 channels for 16
// pixels. W rows padded to 64 bytes (and to 32 rows) are the A operand. Blocks of 32 rows by 32
// pixels keep four 16x16 int32 accumulator tiles; per 64 channels, two A and two B tile loads
// and four tdpbssd. The sums go through a 32x32 buffer to the same epilogue. A partial last
// pixel block reads past its pixels (into the next group's row, or the buffer's slack) and
// stores only its own columns (columns are independent).
// bf16 (pwconv_bf16) is the same with pairs of channels and tdpbf16ps, but X blocked: the 16
// pairs x 16 pixels of one B tile are 1 KiB in a row (there strided tile loads were slower).
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"
#include <immintrin.h>
#pragma GCC diagnostic pop
#include <omp.h>

#include <algorithm>
#include <cstring>
#include <vector>

#include "dynaprec/cpu_features.h"
#include "dynaprec/error.h"
#include "kernels/cpu/amx.h"
#include "kernels/cpu/matmul_dnnl.h"
#include "kernels/cpu/pwconv_vnni.h"
#include "kernels/cpu/scratch_buffer.h"
#include "kernels/cpu/vnni_common.h"

#define DYNAPREC_AMX \
  __attribute__((target("amx-tile,amx-int8,avx512f,avx512bw,avx512vl,avx512dq,fma")))
#define DYNAPREC_AMX_BF16 \
  __attribute__((target("amx-tile,amx-bf16,avx512f,avx512bw,avx512vl,avx512dq,avx512bf16,fma")))
#define DYNAPREC_BF16 __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,avx512bf16,fma")))
// What both float tiles inline (a subset of both targets: an out-of-line epilogue took the
// accumulators' address, and they went through memory on every step).
#define DYNAPREC_AVX512_INLINE \
  __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,fma"), always_inline)) inline

namespace dynaprec::cpu {

namespace {

constexpr int64_t kTilePixels = 64;  // V = 4 vectors of 16
constexpr int64_t kMaxTaps = 49;     // conv_int8_amx: KH · KW (7x7)
constexpr int64_t kOneTap[1] = {0};  // a pointwise tile's one tap

using vnni::activate;
using vnni::atomic_max;
using vnni::dpbusd;
using vnni::Lanes;
using vnni::max_abs_bits;

// Channels [4q, 4q + 4) of X (rows of `pixels` codes, null past C) into xu's quad q, each code
// XOR `flip_byte` (0x80: + 128, unsigned; 0: signed). Pixels go in chunks of 16 (64 bytes),
// chunk c at dst + c · chunk_stride (64: one row per quad; AMX: the blocked layout).
void pack_quad(const int8_t* const rows[4], int64_t pixels, uint8_t* dst, uint8_t flip_byte,
               int64_t chunk_stride) {
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
    auto* out = reinterpret_cast<__m128i*>(dst + p / 16 * chunk_stride);
    _mm_storeu_si128(out + 0, _mm_unpacklo_epi16(t0, t2));  // pixels p .. p + 3
    _mm_storeu_si128(out + 1, _mm_unpackhi_epi16(t0, t2));
    _mm_storeu_si128(out + 2, _mm_unpacklo_epi16(t1, t3));
    _mm_storeu_si128(out + 3, _mm_unpackhi_epi16(t1, t3));
  }
  for (; p < pixels; ++p)
    for (int j = 0; j < 4; ++j)
      dst[p / 16 * chunk_stride + p % 16 * 4 + j] =
          static_cast<uint8_t>((rows[j] ? rows[j][p] : 0) ^ flip_byte);
}

// pack_quad from four rows of floats (null past C), quantized with sx as they go (int8_encode_fast:
// the reference's codes) a chunk of pixels at a time through a buffer that stays in L1, codes +
// 128 (unsigned) in one row per quad: X's NCHW codes are never written and read back.
void pack_quad_floats(const float* const rows[4], int64_t pixels, float sx, uint8_t* dst) {
  constexpr int64_t kChunk = 2048;  // pixels (a multiple of 16)
  alignas(64) int8_t codes[4][kChunk];
  for (int64_t p0 = 0; p0 < pixels; p0 += kChunk) {
    const int64_t len = std::min(kChunk, pixels - p0);
    const int8_t* c[4];
    for (int j = 0; j < 4; ++j) {
      c[j] = nullptr;
      if (!rows[j]) continue;
      int8_encode_fast(rows[j] + p0, codes[j], static_cast<size_t>(len), sx);
      c[j] = codes[j];
    }
    pack_quad(c, len, dst + p0 * 4, 0x80, 64);
  }
}

// What a tile's epilogue needs.
struct TileOut {
  int valid;            // pixels in the tile
  const int32_t* comp;  // 128 · Σ w per row
  const float* scale;   // sx · wscale per row
  const float* bias;    // per row
  float* y;             // the tile's first row and pixel
  int64_t y_stride;
  const Conv2dParams* p;
  std::atomic<uint32_t>* amax;  // where non-null: raised to max |y| (as bits) of the tile
};

// A tile of the implicit GEMMs over taps (pointwise: one tap): X's channels in groups of one
// 32-bit lane per pixel (4 int8 codes, 2 bf16 codes or 1 float), W's row per tap and group.
struct TapTileArgs : TileOut {
  const uint8_t* x;           // the tile's first pixel at tap 0, group 0 (padded lanes)
  int64_t group_step;         // bytes from one group of channels to the next
  int64_t groups;             // groups of input channels
  const int64_t* tap_offset;  // bytes from tap 0 to each tap
  int64_t taps;
  const int32_t* w;  // the tile's first row: [taps][groups] lanes
  int64_t w_stride;  // taps · groups
};

// The pixel masks of a tile's V vectors.
template <int V>
DYNAPREC_AVX512_INLINE void tile_masks(int valid, __mmask16 (&m)[V]) {
#pragma GCC unroll 4
  for (int v = 0; v < V; ++v) {
    const int n = valid - 16 * v;
    m[v] = static_cast<__mmask16>(n >= 16 ? 0xFFFF : n > 0 ? (1u << n) - 1 : 0);
  }
}

// The epilogues' common end: the finished sums o (bias added), the activation in registers (or
// after the store for sigmoid), stored under the pixel masks; max |y| where asked.
template <int R, int V>
DYNAPREC_AVX512_INLINE void store_tile(const __m512 (&o)[R][V], const __mmask16 (&m)[V],
                                       const TileOut& a) {
  const Lanes e(*a.p);
  __m512i mx = _mm512_setzero_si512();
#pragma GCC unroll 4
  for (int r = 0; r < R; ++r) {
    float* yr = a.y + r * a.y_stride;
#pragma GCC unroll 4
    for (int v = 0; v < V; ++v) {
      const __m512 out = e.lanes ? activate(o[r][v], e) : o[r][v];
      _mm512_mask_storeu_ps(yr + 16 * v, m[v], out);
      if (a.amax && e.lanes) mx = max_abs_bits(mx, m[v], out);
    }
    if (!e.lanes) {
      apply_activation_n(yr, a.valid, *a.p);
#pragma GCC unroll 4
      for (int v = 0; v < V && a.amax; ++v)
        mx = max_abs_bits(mx, m[v], _mm512_maskz_loadu_ps(m[v], yr + 16 * v));
    }
  }
  if (a.amax) atomic_max(a.amax, _mm512_reduce_max_epu32(mx));
}

// int8: float(acc - 128·Σw) · scale + bias, the reference's arithmetic, then store_tile.
template <int R, int V>
DYNAPREC_VNNI inline void tile_epilogue(const __m512i (&acc)[R][V], const __mmask16 (&m)[V],
                                        const TileOut& a) {
  __m512 o[R][V];
#pragma GCC unroll 4
  for (int r = 0; r < R; ++r) {
    const __m512i comp = _mm512_set1_epi32(a.comp[r]);
    const __m512 s = _mm512_set1_ps(a.scale[r]), b = _mm512_set1_ps(a.bias[r]);
#pragma GCC unroll 4
    for (int v = 0; v < V; ++v)
      o[r][v] =
          _mm512_add_ps(_mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_sub_epi32(acc[r][v], comp)), s), b);
  }
  store_tile<R, V>(o, m, a);
}

// R output rows by V vectors of 16 pixels in int32 accumulators, summed over the taps (KxK,
// conv_int8_vnni: each tap's X a shifted view of the padded codes; pointwise: one tap) and the
// groups of 4 input channels: per group, V loads of X, R broadcasts of 4 weight bytes, R·V
// vpdpbusd.
template <int R, int V>
DYNAPREC_VNNI void tap_tile(const TapTileArgs& a) {
  __m512i acc[R][V];
  __mmask16 m[V];
  tile_masks<V>(a.valid, m);
#pragma GCC unroll 4
  for (int r = 0; r < R; ++r)
#pragma GCC unroll 4
    for (int v = 0; v < V; ++v) acc[r][v] = _mm512_setzero_si512();
  for (int64_t t = 0; t < a.taps; ++t) {
    const uint8_t* xt = a.x + a.tap_offset[t];
    const int32_t* wt = a.w + t * a.groups;
    for (int64_t q = 0; q < a.groups; ++q) {
      const uint8_t* xq = xt + q * a.group_step;
      __m512i xv[V];
#pragma GCC unroll 4
      for (int v = 0; v < V; ++v) xv[v] = _mm512_maskz_loadu_epi32(m[v], xq + 64 * v);
#pragma GCC unroll 4
      for (int r = 0; r < R; ++r) {
        int32_t quad;  // 4 weight bytes (pointwise weights are int8 rows: read, not aliased)
        std::memcpy(&quad, wt + r * a.w_stride + q, 4);
        const __m512i wb = _mm512_set1_epi32(quad);
#pragma GCC unroll 4
        for (int v = 0; v < V; ++v) acc[r][v] = dpbusd(acc[r][v], xv[v], wb);
      }
    }
  }
  tile_epilogue<R, V>(acc, m, a);
}

// ---- AMX ------------------------------------------------------------------------------------

// Runs fn(block, acc) for blocks [0, blocks) on `threads` OpenMP threads, each with the tile
// configuration loaded; acc: the thread's 32x32 accumulator buffer (T: int32_t or float).
template <class T, class Fn>
void amx_for_blocks(int64_t blocks, int threads, bool parallel, const Fn& fn) {
#pragma omp parallel num_threads(threads) if (parallel)
  {
    amx_begin();
    alignas(64) T acc[32 * 32];
#pragma omp for schedule(static)
    for (int64_t t = 0; t < blocks; ++t) fn(t, acc);
    amx_end();
  }
}

// An epilogue's per-row terms for rows [0, oc): scale[o] = sx · wscale[o] (where wscale is
// given) and shift[o] = bias[o] (0 without a bias), in this thread's buffers.
struct RowTerms {
  const float* scale;
  const float* shift;
};
RowTerms row_terms(int64_t oc, float sx, const float* wscale, const float* bias) {
  thread_local std::vector<float> scale, shift;
  scale.resize(static_cast<size_t>(oc));
  shift.resize(static_cast<size_t>(oc));
  for (int64_t o = 0; o < oc; ++o) {
    if (wscale) scale[static_cast<size_t>(o)] = sx * wscale[o];
    shift[static_cast<size_t>(o)] = bias ? bias[o] : 0.0f;
  }
  return {scale.data(), shift.data()};
}

// The epilogue of one 32x32 block: rows [0, rows), pixels [0, valid). kInt: int32 sums,
// float(acc) · scale + bias (the reference's two roundings); else fp32 sums, acc + bias.
template <bool kInt>
DYNAPREC_VNNI void amx_epilogue(const void* acc, int rows, int valid, const float* scale,
                                const float* bias, float* y, int64_t y_stride,
                                const Conv2dParams& p) {
  const Lanes e(p);
  for (int r = 0; r < rows; ++r) {
    const __m512 b = _mm512_set1_ps(bias[r]);
    float* yr = y + r * y_stride;
    for (int v = 0; v < 2; ++v) {
      const int n = valid - 16 * v;
      if (n <= 0) break;
      const auto m = static_cast<__mmask16>(n >= 16 ? 0xFFFF : (1u << n) - 1);
      __m512 o;
      if constexpr (kInt) {
        const auto* a = static_cast<const int32_t*>(acc) + r * 32 + 16 * v;
        o = _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_loadu_si512(a)), _mm512_set1_ps(scale[r]));
      } else {
        o = _mm512_loadu_ps(static_cast<const float*>(acc) + r * 32 + 16 * v);
      }
      o = _mm512_add_ps(o, b);
      _mm512_mask_storeu_ps(yr + 16 * v, m, e.lanes ? activate(o, e) : o);
    }
    if (!e.lanes) apply_activation_n(yr, valid, p);
  }
}

// Where element (row o, channel ch) of W goes when W is kept as AMX A tiles, each 16 rows x 64
// bytes (`cols` elements: 64 int8, 32 bf16) in one contiguous 1 KiB, for rows of `padded`
// channels (a multiple of cols): tile (o / 16, ch / cols). A block's rows o0.. (o0 a multiple
// of 16) start at o0 · padded, as in the plain row-major layout.
int64_t amx_a_offset(int64_t o, int64_t ch, int64_t padded, int64_t cols) {
  return ((o / 16 * (padded / cols) + ch / cols) * 16 + o % 16) * cols + ch % cols;
}

// ---- bf16 on AMX: the same blocks with tdpbf16ps, K in steps of 32 (pairs of channels) --------

// Channels 2q, 2q + 1 of X (rows of `pixels` floats, null past C) rounded to bf16 and interleaved,
// bf16(row0[p]) | bf16(row1[p]) << 16, in chunks of 16 pixels, chunk c at dst + c · chunk_stride.
DYNAPREC_AMX_BF16 void pack_pair_bf16(const float* row0, const float* row1, int64_t pixels,
                                      uint32_t* dst, int64_t chunk_stride) {
  for (int64_t p = 0; p < pixels; p += 16) {
    const int64_t n = std::min<int64_t>(16, pixels - p);
    const auto m = static_cast<__mmask16>(n >= 16 ? 0xFFFF : (1u << n) - 1);
    const __m512 a = row0 ? _mm512_maskz_loadu_ps(m, row0 + p) : _mm512_setzero_ps();
    const __m512 b = row1 ? _mm512_maskz_loadu_ps(m, row1 + p) : _mm512_setzero_ps();
    // (A vector cast: std::bit_cast's own, out-of-line copy would be compiled without AVX.)
    const __m512i lo = _mm512_cvtepu16_epi32(reinterpret_cast<__m256i>(_mm512_cvtneps_pbh(a)));
    const __m512i hi = _mm512_cvtepu16_epi32(reinterpret_cast<__m256i>(_mm512_cvtneps_pbh(b)));
    _mm512_mask_storeu_epi32(dst + p / 16 * chunk_stride, m,
                             _mm512_or_si512(lo, _mm512_slli_epi32(hi, 16)));
  }
}

// acc[32][32] = W[32 rows, c32] · X[c32, 32 pixels] in fp32 (w: the block's first row tile of
// PwBf16Weights::w, the second c32 · 16 codes on; X blocked: each B tile's 1 KiB in a row at
// xs, the next 16 pixels' at xs + chunk_bytes).
DYNAPREC_AMX_BF16 void amx_block_bf16(const uint16_t* w, int64_t c32, const uint8_t* xs,
                                      int64_t chunk_bytes, float* acc) {
  amx_zero_acc();
  for (int64_t k = 0; k < c32; k += 32) {
    const uint8_t* xk = xs + k / 2 * 64;
    _tile_loadd(4, w + k * 16, 64);
    _tile_loadd(5, w + 16 * c32 + k * 16, 64);
    _tile_loadd(6, xk, 64);
    _tile_loadd(7, xk + chunk_bytes, 64);
    _tile_dpbf16ps(0, 4, 6);
    _tile_dpbf16ps(1, 4, 7);
    _tile_dpbf16ps(2, 5, 6);
    _tile_dpbf16ps(3, 5, 7);
  }
  amx_store_acc(acc);
}

// ---- int8 on AMX: an implicit GEMM over the taps (pointwise: one tap) -------------------------

// acc[32][32] for 32 output channels x 32 pixels: per tap and 64 channels, A from that tap's W
// (amx_a_offset's tiles, taps tap_stride apart), B straight from X's packed codes
// (xs[t]: the tap's first pixel of group 0, group_step bytes between groups, the next 16 pixels 64
// bytes on).
DYNAPREC_AMX void amx_conv_block(const int8_t* w, int64_t c64, int64_t tap_stride, int64_t taps,
                                 const uint8_t* const* xs, int64_t group_step, int32_t* acc) {
  amx_zero_acc();
  for (int64_t t = 0; t < taps; ++t) {
    const int8_t* wt = w + t * tap_stride;
    for (int64_t k = 0; k < c64; k += 64) {
      const uint8_t* xk = xs[t] + k / 4 * group_step;
      _tile_loadd(4, wt + k * 16, 64);
      _tile_loadd(5, wt + 16 * c64 + k * 16, 64);
      _tile_loadd(6, xk, group_step);
      _tile_loadd(7, xk + 64, group_step);
      _tile_dpbssd(0, 4, 6);
      _tile_dpbssd(1, 4, 7);
      _tile_dpbssd(2, 5, 6);
      _tile_dpbssd(3, 5, 7);
    }
  }
  amx_store_acc(acc);
}

// ---- Float KxK without AMX: tap_tile's walk in fp32 lanes -------------------------------------
// fp32: one channel per 32-bit lane and an FMA per weight; bf16 (AVX512_BF16): a pair of
// channels per lane and vdpbf16ps. The two tiles differ only in that step (and in the target
// they are compiled for: the fp32 one runs on AVX-512 CPUs without BF16).

// acc + bias, then store_tile.
template <int R, int V>
DYNAPREC_AVX512_INLINE void float_tile_epilogue(const __m512 (&acc)[R][V], const __mmask16 (&m)[V],
                                                const TileOut& a) {
  __m512 o[R][V];
#pragma GCC unroll 4
  for (int r = 0; r < R; ++r) {
    const __m512 b = _mm512_set1_ps(a.bias[r]);
#pragma GCC unroll 4
    for (int v = 0; v < V; ++v) o[r][v] = _mm512_add_ps(acc[r][v], b);
  }
  store_tile<R, V>(o, m, a);
}

// R output rows by V vectors of 16 pixels in fp32 accumulators: per tap and channel, V loads of
// X, R broadcasts of a weight, R·V FMAs.
template <int R, int V>
__attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,fma"))) void f32_tap_tile(
    const TapTileArgs& a) {
  __m512 acc[R][V];
  __mmask16 m[V];
  tile_masks<V>(a.valid, m);
#pragma GCC unroll 4
  for (int r = 0; r < R; ++r)
#pragma GCC unroll 4
    for (int v = 0; v < V; ++v) acc[r][v] = _mm512_setzero_ps();
  for (int64_t t = 0; t < a.taps; ++t) {
    const uint8_t* xt = a.x + a.tap_offset[t];
    const int32_t* wt = a.w + t * a.groups;
    for (int64_t q = 0; q < a.groups; ++q) {
      const uint8_t* xq = xt + q * a.group_step;
      __m512 xv[V];
#pragma GCC unroll 4
      for (int v = 0; v < V; ++v) xv[v] = _mm512_maskz_loadu_ps(m[v], xq + 64 * v);
#pragma GCC unroll 4
      for (int r = 0; r < R; ++r) {
        float wv;
        std::memcpy(&wv, wt + r * a.w_stride + q, 4);
        const __m512 wb = _mm512_set1_ps(wv);
#pragma GCC unroll 4
        for (int v = 0; v < V; ++v) acc[r][v] = _mm512_fmadd_ps(xv[v], wb, acc[r][v]);
      }
    }
  }
  float_tile_epilogue<R, V>(acc, m, a);
}

// The same with pairs of channels: R broadcasts of a weight pair, R·V vdpbf16ps.
template <int R, int V>
DYNAPREC_BF16 void bf16_tap_tile(const TapTileArgs& a) {
  __m512 acc[R][V];
  __mmask16 m[V];
  tile_masks<V>(a.valid, m);
#pragma GCC unroll 4
  for (int r = 0; r < R; ++r)
#pragma GCC unroll 4
    for (int v = 0; v < V; ++v) acc[r][v] = _mm512_setzero_ps();
  for (int64_t t = 0; t < a.taps; ++t) {
    const uint8_t* xt = a.x + a.tap_offset[t];
    const int32_t* wt = a.w + t * a.groups;
    for (int64_t q = 0; q < a.groups; ++q) {
      const uint8_t* xq = xt + q * a.group_step;
      __m512i xv[V];
#pragma GCC unroll 4
      for (int v = 0; v < V; ++v) xv[v] = _mm512_maskz_loadu_epi32(m[v], xq + 64 * v);
#pragma GCC unroll 4
      for (int r = 0; r < R; ++r) {
        const __m512i wb = _mm512_set1_epi32(wt[r * a.w_stride + q]);
#pragma GCC unroll 4
        for (int v = 0; v < V; ++v)
          acc[r][v] = _mm512_dpbf16_ps(acc[r][v], (__m512bh)xv[v], (__m512bh)wb);
      }
    }
  }
  float_tile_epilogue<R, V>(acc, m, a);
}

// Channels 2q, 2q + 1 of X (rows of `pixels` floats, null past C) as bf16 pairs,
// bf16(row0[p]) | bf16(row1[p]) << 16 (vcvtneps2bf16: round to nearest even; it flushes
// subnormal inputs, which vdpbf16ps would count as zero anyway).
DYNAPREC_BF16 void pack_pair_rows(const float* row0, const float* row1, int64_t pixels,
                                  uint32_t* dst) {
  for (int64_t p = 0; p < pixels; p += 16) {
    const int64_t n = std::min<int64_t>(16, pixels - p);
    const auto m = static_cast<__mmask16>(n >= 16 ? 0xFFFF : (1u << n) - 1);
    const __m512 a = row0 ? _mm512_maskz_loadu_ps(m, row0 + p) : _mm512_setzero_ps();
    const __m512 b = row1 ? _mm512_maskz_loadu_ps(m, row1 + p) : _mm512_setzero_ps();
    // (A vector cast: std::bit_cast's own, out-of-line copy would be compiled without AVX.)
    const __m512i lo = _mm512_cvtepu16_epi32(reinterpret_cast<__m256i>(_mm512_cvtneps_pbh(a)));
    const __m512i hi = _mm512_cvtepu16_epi32(reinterpret_cast<__m256i>(_mm512_cvtneps_pbh(b)));
    _mm512_mask_storeu_epi32(dst + p, m, _mm512_or_si512(lo, _mm512_slli_epi32(hi, 16)));
  }
}

using FloatTileFn = void (*)(const TapTileArgs&);
template <bool kBf16, int R>
constexpr FloatTileFn kFloatTilesOfRows[4] = {kBf16 ? bf16_tap_tile<R, 1> : f32_tap_tile<R, 1>,
                                              kBf16 ? bf16_tap_tile<R, 2> : f32_tap_tile<R, 2>,
                                              kBf16 ? bf16_tap_tile<R, 3> : f32_tap_tile<R, 3>,
                                              kBf16 ? bf16_tap_tile<R, 4> : f32_tap_tile<R, 4>};
template <bool kBf16>
constexpr const FloatTileFn* kFloatTiles[4] = {
    kFloatTilesOfRows<kBf16, 1>, kFloatTilesOfRows<kBf16, 2>, kFloatTilesOfRows<kBf16, 3>,
    kFloatTilesOfRows<kBf16, 4>};

// The KxK kernels' walk (conv_int8_vnni, conv_float): tiles of 4 output channels by
// kTilePixels pixels of one output row, rows innermost (the rows of one pixel block share its X
// lines); tile(o0, rows, oy, p0, valid) on `threads` OpenMP threads where `parallel`.
template <class Tile>
void for_each_kxk_tile(int64_t oc, int64_t oh, int64_t ow, int threads, bool parallel,
                       const Tile& tile) {
  const int64_t row_blocks = (oc + 3) / 4, pixel_blocks = (ow + kTilePixels - 1) / kTilePixels;
#pragma omp parallel for num_threads(threads) schedule(static) if (parallel)
  for (int64_t t = 0; t < oh * pixel_blocks * row_blocks; ++t) {
    const int64_t rb = t % row_blocks, pb = t / row_blocks % pixel_blocks,
                  oy = t / (row_blocks * pixel_blocks);
    const int64_t o0 = rb * 4, p0 = pb * kTilePixels;
    tile(o0, static_cast<int>(std::min<int64_t>(4, oc - o0)), oy, p0,
         static_cast<int>(std::min(kTilePixels, ow - p0)));
  }
}

// Bytes from tap 0 to each tap of a KH x KW window over padded rows row_step bytes apart, one
// 32-bit lane per pixel.
void kxk_tap_offsets(int64_t kh, int64_t kw, int64_t row_step, int64_t* offset) {
  for (int64_t ky = 0; ky < kh; ++ky)
    for (int64_t kx = 0; kx < kw; ++kx) offset[ky * kw + kx] = ky * row_step + kx * 4;
}

// The padded input of the KxK kernels, [hp rows][groups][wp pixels] of 32-bit lanes (T: uint8_t
// for 4 int8 codes per lane, uint32_t otherwise), in a thread-local grow-only buffer (never
// cleared: a std::vector zeroed what it grew by after each smaller layer). Only the padding is
// filled: the top and bottom rows here, each group row's left and
// right pads by the task that packs that row's interior (sides); a single-threaded fill of the
// whole buffer before the parallel packing had cost ~10 % of a 96 -> 24 3x3 layer at 160x160.
template <class T>
struct PaddedX {
  static constexpr int64_t kLane = 4 / static_cast<int64_t>(sizeof(T));  // T per lane
  T* data = nullptr;
  int64_t group_step, row_step, top, left, right;  // in T
  T fill;
  PaddedX(ScratchBuffer& buf, int64_t h, int64_t w, int64_t wp, int64_t groups,
          const int64_t pads[4], T fill_value)
      : group_step(wp * kLane),
        row_step(groups * wp * kLane),
        top(pads[0]),
        left(pads[1] * kLane),
        right((wp - pads[1] - w) * kLane),
        fill(fill_value) {
    data = buf.get<T>(static_cast<size_t>((h + pads[0] + pads[2]) * row_step));
    std::fill_n(data, pads[0] * row_step, fill);
    std::fill_n(data + (pads[0] + h) * row_step, pads[2] * row_step, fill);
  }
  // Group q of input row iy: its pads filled, the interior (from `left` on) the caller's.
  T* sides(int64_t q, int64_t iy) const {
    T* r = data + (iy + top) * row_step + q * group_step;
    std::fill_n(r, left, fill);
    std::fill_n(r + group_step - right, right, fill);
    return r + left;
  }
};

using TapTileFn = void (*)(const TapTileArgs&);
template <int R>
constexpr TapTileFn kTapTilesOfRows[4] = {tap_tile<R, 1>, tap_tile<R, 2>, tap_tile<R, 3>,
                                          tap_tile<R, 4>};
constexpr const TapTileFn* kTapTiles[4] = {kTapTilesOfRows<1>, kTapTilesOfRows<2>,
                                           kTapTilesOfRows<3>, kTapTilesOfRows<4>};

}  // namespace

PwInt8Weights pwconv_int8_prepare(const int8_t* w, int64_t oc, int64_t c) {
  PwInt8Weights p;
  p.oc = oc;
  p.c = c;
  p.c4 = (c + 3) / 4 * 4;
  p.c64 = (c + 63) / 64 * 64;
  p.oc32 = (oc + 31) / 32 * 32;
  p.w.assign(static_cast<size_t>(oc * p.c4), 0);
  p.comp.assign(static_cast<size_t>(oc), 0);
  p.w64.assign(static_cast<size_t>(p.oc32 * p.c64), 0);
  for (int64_t o = 0; o < oc; ++o)
    for (int64_t k = 0; k < c; ++k) {
      p.w[static_cast<size_t>(o * p.c4 + k)] = w[o * c + k];
      p.w64[static_cast<size_t>(amx_a_offset(o, k, p.c64, 64))] = w[o * c + k];
      p.comp[static_cast<size_t>(o)] += 128 * w[o * c + k];
    }
  return p;
}

PwBf16Weights pwconv_bf16_prepare(const uint16_t* w, int64_t oc, int64_t c) {
  PwBf16Weights p;
  p.oc = oc;
  p.c = c;
  p.c32 = (c + 31) / 32 * 32;
  p.oc32 = (oc + 31) / 32 * 32;
  p.w.assign(static_cast<size_t>(p.oc32 * p.c32), 0);
  for (int64_t o = 0; o < oc; ++o)
    for (int64_t i = 0; i < c; ++i)
      p.w[static_cast<size_t>(amx_a_offset(o, i, p.c32, 32))] = w[o * c + i];
  return p;
}

bool pwconv_bf16_available() {
  const CpuFeatures& f = cpu_features();
  return f.avx512f && f.avx512bw && f.avx512vl && f.avx512dq && f.fma && f.avx512_bf16 &&
         f.amx_tile && f.amx_bf16 && amx_permitted();
}

void pwconv_bf16(const float* x, int64_t pixels, const PwBf16Weights& w, const float* bias,
                 const Conv2dParams& p, float* y, int threads) {
  const int64_t pairs = w.c32 / 2, oc = w.oc;
  thread_local ScratchBuffer xb;
  const int64_t chunks = (pixels + 31) / 32 * 2;  // whole 32-pixel blocks
  const RowTerms rt = row_terms(oc, 1.0f, nullptr, bias);
  uint32_t* xb_data = xb.get<uint32_t>(static_cast<size_t>(chunks * pairs * 16));
  const bool parallel = pairs * pixels * oc > (int64_t{1} << 16);
#pragma omp parallel for num_threads(threads) schedule(static) if (parallel)
  for (int64_t q = 0; q < pairs; ++q)
    pack_pair_bf16(2 * q < w.c ? x + 2 * q * pixels : nullptr,
                   2 * q + 1 < w.c ? x + (2 * q + 1) * pixels : nullptr, pixels, xb_data + q * 16,
                   pairs * 16);
  const int64_t row_blocks = w.oc32 / 32, pixel_blocks = (pixels + 31) / 32;
  amx_for_blocks<float>(row_blocks * pixel_blocks, threads, parallel, [&](int64_t t, float* acc) {
    const int64_t o0 = t % row_blocks * 32, p0 = t / row_blocks * 32;
    amx_block_bf16(w.w.data() + o0 * w.c32, w.c32,
                   reinterpret_cast<const uint8_t*>(xb_data + p0 / 16 * pairs * 16), pairs * 64,
                   acc);
    amx_epilogue<false>(acc, static_cast<int>(std::min<int64_t>(32, oc - o0)),
                        static_cast<int>(std::min<int64_t>(32, pixels - p0)), nullptr,
                        rt.shift + o0, y + o0 * pixels + p0, pixels, p);
  });
}

ConvInt8AmxWeights conv_int8_amx_prepare(const int8_t* w, int64_t oc, int64_t c, int64_t kh,
                                         int64_t kw) {
  ConvInt8AmxWeights p;
  p.oc = oc;
  p.c = c;
  p.kh = kh;
  p.kw = kw;
  p.c64 = (c + 63) / 64 * 64;
  p.oc32 = (oc + 31) / 32 * 32;
  const int64_t taps = kh * kw;
  p.w.assign(static_cast<size_t>(taps * p.oc32 * p.c64), 0);
  for (int64_t o = 0; o < oc; ++o)
    for (int64_t ch = 0; ch < c; ++ch)
      for (int64_t t = 0; t < taps; ++t)
        p.w[static_cast<size_t>(t * p.oc32 * p.c64 + amx_a_offset(o, ch, p.c64, 64))] =
            w[(o * c + ch) * taps + t];
  return p;
}

void conv_int8_amx(const int8_t* xq, int64_t h, int64_t w, const int64_t pads[4],
                   const ConvInt8AmxWeights& cw, const float* wscale, float sx, const float* bias,
                   const Conv2dParams& p, float* y, int threads) {
  const int64_t oh = h + pads[0] + pads[2] - cw.kh + 1, ow = w + pads[1] + pads[3] - cw.kw + 1;
  if (oh <= 0 || ow <= 0) return;
  const int64_t groups = cw.c64 / 4, taps = cw.kh * cw.kw;
  if (taps > kMaxTaps)
    throw Error(ErrorKind::kInternal, "conv_int8_amx: more than 49 taps (conv_cpu.cc checks)");
  // The padded codes, [hp rows][groups of 4 channels][wp pixels][4]: a B tile's rows (16
  // groups of one input row) are wp · 4 bytes apart (a layout with the groups outermost put them
  // a plane apart, and the tile loads were latency-bound). wp covers the last pixel block's
  // overreach (32 pixels from its start).
  const int64_t wp = std::max(w + pads[1] + pads[3], (ow + 31) / 32 * 32 + cw.kw - 1);
  thread_local ScratchBuffer xp;
  const PaddedX<uint8_t> px(xp, h, w, wp, groups, pads, 0);  // code 0 for the padding
  const int64_t group_step = px.group_step, row_step = px.row_step;
  const RowTerms rt = row_terms(cw.oc, sx, wscale, bias);
  uint8_t* xp_data = px.data;
  const bool parallel = cw.oc * oh * ow * cw.c * taps > (int64_t{1} << 16);
#pragma omp parallel for num_threads(threads) schedule(static) if (parallel)
  for (int64_t t = 0; t < groups * h; ++t) {
    const int64_t q = t / h, iy = t % h;
    const int8_t* rows[4];
    for (int64_t j = 0; j < 4; ++j)
      rows[j] = 4 * q + j < cw.c ? xq + ((4 * q + j) * h + iy) * w : nullptr;
    pack_quad(rows, w, px.sides(q, iy), 0, 64);
  }
  const int64_t row_blocks = cw.oc32 / 32, pixel_blocks = (ow + 31) / 32;
  amx_for_blocks<int32_t>(
      oh * pixel_blocks * row_blocks, threads, parallel, [&](int64_t t, int32_t* acc) {
        const int64_t o0 = t % row_blocks * 32, p0 = t / row_blocks % pixel_blocks * 32,
                      oy = t / (row_blocks * pixel_blocks);
        const uint8_t* xs[kMaxTaps];
        for (int64_t ky = 0; ky < cw.kh; ++ky)
          for (int64_t kx = 0; kx < cw.kw; ++kx)
            xs[ky * cw.kw + kx] = xp_data + (oy + ky) * row_step + (p0 + kx) * 4;
        amx_conv_block(cw.w.data() + o0 * cw.c64, cw.c64, cw.oc32 * cw.c64, taps, xs, group_step,
                       acc);
        amx_epilogue<true>(acc, static_cast<int>(std::min<int64_t>(32, cw.oc - o0)),
                           static_cast<int>(std::min<int64_t>(32, ow - p0)), rt.scale + o0,
                           rt.shift + o0, y + (o0 * oh + oy) * ow + p0, oh * ow, p);
      });
}

PwIsa pwconv_int8_isa() {
  const CpuFeatures& f = cpu_features();
  if (!(f.avx512f && f.avx512bw && f.avx512vl && f.avx512dq && f.fma)) return PwIsa::kNone;
  if (f.amx_tile && f.amx_int8 && amx_permitted()) return PwIsa::kAmx;
  return f.avx512_vnni ? PwIsa::kVnni : PwIsa::kNone;
}

void pwconv_int8(const int8_t* xq, int64_t pixels, const PwInt8Weights& w, const float* wscale,
                 float sx, const float* bias, const Conv2dParams& p, float* y, int threads,
                 PwIsa isa, std::atomic<uint32_t>* y_amax, const float* xf) {
  if (isa == PwIsa::kNone) isa = pwconv_int8_isa();
  const bool amx = isa == PwIsa::kAmx;
  if (!xq && (!xf || amx))
    throw Error(ErrorKind::kInternal, "pwconv_int8: X's codes, or its floats on VNNI");
  const int64_t quads = (amx ? w.c64 : w.c4) / 4, oc = w.oc;
  // One row of pixels per group of 4 channels (+ a partial AMX block's overreach). (The blocked
  // layout of pwconv_bf16 measured slower here: 113 against 84 us for 240 -> 240 at 12x80.) A
  // grow-only buffer: a std::vector zeroed what it grew by on every call after a smaller layer.
  thread_local ScratchBuffer xu;
  uint8_t* const xu_data = xu.get<uint8_t>(static_cast<size_t>(quads * pixels * 4 + 128));
  const RowTerms rt = row_terms(oc, sx, wscale, bias);
  const bool parallel = quads * pixels * oc > (int64_t{1} << 16);
#pragma omp parallel for num_threads(threads) schedule(static) if (parallel)
  for (int64_t q = 0; q < quads; ++q) {
    uint8_t* dst = xu_data + q * pixels * 4;
    if (xq) {
      const int8_t* rows[4];
      for (int64_t j = 0; j < 4; ++j)
        rows[j] = 4 * q + j < w.c ? xq + (4 * q + j) * pixels : nullptr;
      pack_quad(rows, pixels, dst, amx ? 0 : 0x80, 64);
    } else {
      const float* rows[4];
      for (int64_t j = 0; j < 4; ++j)
        rows[j] = 4 * q + j < w.c ? xf + (4 * q + j) * pixels : nullptr;
      pack_quad_floats(rows, pixels, sx, dst);
    }
  }
  if (amx) {
    const int64_t row_blocks = w.oc32 / 32, pixel_blocks = (pixels + 31) / 32;
    amx_for_blocks<int32_t>(
        row_blocks * pixel_blocks, threads, parallel, [&](int64_t t, int32_t* acc) {
          const int64_t o0 = t % row_blocks * 32, p0 = t / row_blocks * 32;
          const uint8_t* xs = xu_data + p0 * 4;  // one tap
          amx_conv_block(w.w64.data() + o0 * w.c64, w.c64, 0, 1, &xs, pixels * 4, acc);
          amx_epilogue<true>(acc, static_cast<int>(std::min<int64_t>(32, oc - o0)),
                             static_cast<int>(std::min<int64_t>(32, pixels - p0)), rt.scale + o0,
                             rt.shift + o0, y + o0 * pixels + p0, pixels, p);
        });
    return;
  }
  const int64_t row_blocks = (oc + 3) / 4, pixel_blocks = (pixels + kTilePixels - 1) / kTilePixels;

#pragma omp parallel for num_threads(threads) schedule(static) if (parallel)
  for (int64_t t = 0; t < row_blocks * pixel_blocks; ++t) {
    const int64_t pb = t / row_blocks, rb = t % row_blocks;
    const int64_t o0 = rb * 4, p0 = pb * kTilePixels;
    const int rows = static_cast<int>(std::min<int64_t>(4, oc - o0));
    const int valid = static_cast<int>(std::min(kTilePixels, pixels - p0));
    const TapTileArgs a{{valid, w.comp.data() + o0, rt.scale + o0, rt.shift + o0,
                         y + o0 * pixels + p0, pixels, &p, y_amax},
                        xu_data + p0 * 4,
                        pixels * 4,
                        quads,
                        kOneTap,
                        1,
                        reinterpret_cast<const int32_t*>(w.w.data() + o0 * w.c4),
                        w.c4 / 4};
    kTapTiles[rows - 1][(valid + 15) / 16 - 1](a);
  }
}

ConvInt8VnniWeights conv_int8_vnni_prepare(const int8_t* w, int64_t oc, int64_t c, int64_t kh,
                                           int64_t kw) {
  ConvInt8VnniWeights p;
  p.oc = oc;
  p.c = c;
  p.kh = kh;
  p.kw = kw;
  p.groups = (c + 3) / 4;
  const int64_t taps = kh * kw;
  p.w.assign(static_cast<size_t>(oc * taps * p.groups), 0);
  p.comp.assign(static_cast<size_t>(oc), 0);
  for (int64_t o = 0; o < oc; ++o)
    for (int64_t ch = 0; ch < c; ++ch)
      for (int64_t t = 0; t < taps; ++t) {
        const int8_t v = w[(o * c + ch) * taps + t];
        // Byte ch % 4 of the dword for (o, t, ch / 4), little-endian.
        auto* quad = reinterpret_cast<int8_t*>(
            &p.w[static_cast<size_t>((o * taps + t) * p.groups + ch / 4)]);
        quad[ch % 4] = v;
        p.comp[static_cast<size_t>(o)] += 128 * v;
      }
  return p;
}

namespace {
// conv_int8_vnni on X's codes (xq) or its floats (xf, quantized with sx row by row while they are
// packed: no NCHW codes written and read back).
void conv_int8_vnni_impl(const int8_t* xq, const float* xf, int64_t h, int64_t w,
                         const int64_t pads[4], const ConvInt8VnniWeights& cw, const float* wscale,
                         float sx, const float* bias, const Conv2dParams& p, float* y, int threads,
                         std::atomic<uint32_t>* y_amax) {
  const int64_t oh = h + pads[0] + pads[2] - cw.kh + 1, ow = w + pads[1] + pads[3] - cw.kw + 1;
  if (oh <= 0 || ow <= 0) return;
  const int64_t groups = cw.groups, taps = cw.kh * cw.kw;
  if (taps > kMaxTaps)
    throw Error(ErrorKind::kInternal, "conv_int8_vnni: more than 49 taps (conv_cpu.cc checks)");
  // The padded codes + 128 as conv_int8_amx lays them out, [hp rows][groups][wp pixels][4]
  // (128 = code 0 for the padding); the tiles' loads are masked to their pixels.
  const int64_t wp = w + pads[1] + pads[3];
  thread_local ScratchBuffer xp;
  const PaddedX<uint8_t> px(xp, h, w, wp, groups, pads, 0x80);
  const int64_t group_step = px.group_step, row_step = px.row_step;
  const RowTerms rt = row_terms(cw.oc, sx, wscale, bias);
  uint8_t* xp_data = px.data;
  const bool parallel = cw.oc * oh * ow * cw.c * taps > (int64_t{1} << 16);
#pragma omp parallel for num_threads(threads) schedule(static) if (parallel)
  for (int64_t t = 0; t < groups * h; ++t) {
    const int64_t q = t / h, iy = t % h;
    auto row = [&](int64_t j) { return 4 * q + j < cw.c ? ((4 * q + j) * h + iy) * w : -1; };
    if (xq) {
      const int8_t* rows[4];
      for (int64_t j = 0; j < 4; ++j) rows[j] = row(j) < 0 ? nullptr : xq + row(j);
      pack_quad(rows, w, px.sides(q, iy), 0x80, 64);
    } else {
      const float* rows[4];
      for (int64_t j = 0; j < 4; ++j) rows[j] = row(j) < 0 ? nullptr : xf + row(j);
      pack_quad_floats(rows, w, sx, px.sides(q, iy));
    }
  }
  int64_t tap_offset[kMaxTaps];
  kxk_tap_offsets(cw.kh, cw.kw, row_step, tap_offset);
  for_each_kxk_tile(cw.oc, oh, ow, threads, parallel,
                    [&](int64_t o0, int rows, int64_t oy, int64_t p0, int valid) {
                      const TapTileArgs a{{valid, cw.comp.data() + o0, rt.scale + o0, rt.shift + o0,
                                           y + o0 * oh * ow + oy * ow + p0, oh * ow, &p, y_amax},
                                          xp_data + oy * row_step + p0 * 4,
                                          group_step,
                                          groups,
                                          tap_offset,
                                          taps,
                                          cw.w.data() + o0 * taps * groups,
                                          taps * groups};
                      kTapTiles[rows - 1][(valid + 15) / 16 - 1](a);
                    });
}
}  // namespace

void conv_int8_vnni(const int8_t* xq, int64_t h, int64_t w, const int64_t pads[4],
                    const ConvInt8VnniWeights& cw, const float* wscale, float sx, const float* bias,
                    const Conv2dParams& p, float* y, int threads, std::atomic<uint32_t>* y_amax) {
  conv_int8_vnni_impl(xq, nullptr, h, w, pads, cw, wscale, sx, bias, p, y, threads, y_amax);
}

void conv_int8_vnni_floats(const float* x, int64_t h, int64_t w, const int64_t pads[4],
                           const ConvInt8VnniWeights& cw, const float* wscale, float sx,
                           const float* bias, const Conv2dParams& p, float* y, int threads,
                           std::atomic<uint32_t>* y_amax) {
  conv_int8_vnni_impl(nullptr, x, h, w, pads, cw, wscale, sx, bias, p, y, threads, y_amax);
}

ConvFloatWeights conv_float_prepare(Format f, const void* w, int64_t oc, int64_t c, int64_t kh,
                                    int64_t kw) {
  DP_CHECK(f == Format::kFp32 || f == Format::kBf16, "conv_float: fp32 or bf16 weights");
  ConvFloatWeights p;
  p.format = f;
  p.oc = oc;
  p.c = c;
  p.kh = kh;
  p.kw = kw;
  const bool bf16 = f == Format::kBf16;
  p.groups = bf16 ? (c + 1) / 2 : c;
  const int64_t taps = kh * kw;
  p.w.assign(static_cast<size_t>(oc * taps * p.groups), 0);
  for (int64_t o = 0; o < oc; ++o)
    for (int64_t ch = 0; ch < c; ++ch)
      for (int64_t t = 0; t < taps; ++t) {
        const int64_t from = (o * c + ch) * taps + t;
        uint32_t lane = 0;  // the bits of the lane's float, or of its two codes
        if (bf16)
          lane = static_cast<uint32_t>(static_cast<const uint16_t*>(w)[from]) << (16 * (ch % 2));
        else
          std::memcpy(&lane, static_cast<const float*>(w) + from, 4);
        int32_t& dst = p.w[static_cast<size_t>((o * taps + t) * p.groups + (bf16 ? ch / 2 : ch))];
        dst = static_cast<int32_t>(static_cast<uint32_t>(dst) | lane);
      }
  return p;
}

bool conv_float_available(Format f) {
  const CpuFeatures& cf = cpu_features();
  const bool avx512 = cf.avx512f && cf.avx512bw && cf.avx512vl && cf.avx512dq && cf.fma;
  return f == Format::kFp32 ? avx512 : f == Format::kBf16 && avx512 && cf.avx512_bf16;
}

void conv_float(const float* x, int64_t h, int64_t w, const int64_t pads[4],
                const ConvFloatWeights& cw, const float* bias, const Conv2dParams& p, float* y,
                int threads, std::atomic<uint32_t>* y_amax) {
  const int64_t oh = h + pads[0] + pads[2] - cw.kh + 1, ow = w + pads[1] + pads[3] - cw.kw + 1;
  if (oh <= 0 || ow <= 0) return;
  const bool bf16 = cw.format == Format::kBf16;
  const int64_t groups = cw.groups, taps = cw.kh * cw.kw;
  if (taps > kMaxTaps)
    throw Error(ErrorKind::kInternal, "conv_float: more than 49 taps (conv_cpu.cc checks)");
  // X's channel groups, zero-padded: [hp rows][groups][wp pixels] lanes; the tiles' loads are
  // masked.
  const int64_t wp = w + pads[1] + pads[3];
  thread_local ScratchBuffer xp;
  const PaddedX<uint32_t> px(xp, h, w, wp, groups, pads, 0);
  const int64_t group_step = px.group_step * 4, row_step = px.row_step * 4;  // in bytes
  const RowTerms rt = row_terms(cw.oc, 1.0f, nullptr, bias);
  uint32_t* xp_data = px.data;
  const bool parallel = cw.oc * oh * ow * cw.c * taps > (int64_t{1} << 16);
#pragma omp parallel for num_threads(threads) schedule(static) if (parallel)
  for (int64_t t = 0; t < groups * h; ++t) {
    const int64_t q = t / h, iy = t % h;
    uint32_t* dst = px.sides(q, iy);
    if (bf16) {
      const float* r0 = x + (2 * q * h + iy) * w;
      const float* r1 = 2 * q + 1 < cw.c ? x + ((2 * q + 1) * h + iy) * w : nullptr;
      pack_pair_rows(r0, r1, w, dst);
    } else {
      std::memcpy(dst, x + (q * h + iy) * w, static_cast<size_t>(w) * sizeof(float));
    }
  }
  int64_t tap_offset[kMaxTaps];
  kxk_tap_offsets(cw.kh, cw.kw, row_step, tap_offset);
  const FloatTileFn* const* tiles = bf16 ? kFloatTiles<true> : kFloatTiles<false>;
  const auto* xb = reinterpret_cast<const uint8_t*>(xp_data);
  for_each_kxk_tile(cw.oc, oh, ow, threads, parallel,
                    [&](int64_t o0, int rows, int64_t oy, int64_t p0, int valid) {
                      const TapTileArgs a{{valid, nullptr, nullptr, rt.shift + o0,
                                           y + o0 * oh * ow + oy * ow + p0, oh * ow, &p, y_amax},
                                          xb + oy * row_step + p0 * 4,
                                          group_step,
                                          groups,
                                          tap_offset,
                                          taps,
                                          cw.w.data() + o0 * taps * groups,
                                          taps * groups};
                      tiles[rows - 1][(valid + 15) / 16 - 1](a);
                    });
}

}  // namespace dynaprec::cpu
