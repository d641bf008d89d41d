// oneDNN GEMM kernels (oneDNN 2.6, OpenMP runtime). The semantics are those of
// include/dynaprec/matmul.h; per format:
//
//   fp32  X f32 · W f32 -> f32, bias added by oneDNN.
//   bf16  X rounded to bf16 per call (encode_float_array: bit-exact RNE) · W bf16 -> f32, bias
//         added by oneDNN.
//   fp8   W widened once to bf16 (exact: every fp8 value is a bf16 value), then as bf16; the
//         tensor scale and the bias are binary post-ops: acc * s, then + bias.
//   int8  X quantized per call with one scale sx; s8 · s8 with an exact int32 accumulator;
//         float(acc) * (sx * sw[n]), then + bias[n], as binary post-ops.
//
// Why binary post-ops and not oneDNN's output scales: in 2.6 the brgemm implementation (the one
// that uses AVX-512 VNNI / AMX) rejects runtime output scales, and oneDNN then silently picks
// gemm:jit (1.8x slower at 2048³ on 2 cores); constant scales would bake each call's sx into
// the primitive.
// Binary post-ops take their operands at execution time and run after the accumulator's
// conversion to f32 as a separate multiply and add (no FMA), which is exactly the reference's
// float(acc) * s + b; the tests check int8 bit for bit. The matmul's own bias argument is not
// used with a scale: it is added to the accumulator, before any post-op. Where an ISA's
// implementation refuses the post-ops (int8 gemm:jit when capped at AVX2), the primitive writes
// the raw accumulator (s32 for int8) into Y and we apply the same epilogue ourselves.
//
// Weights: our W is [N, K] row-major, i.e. oneDNN's K×N "weights" with format tag ba; it is
// reordered once into the layout the primitive asks for (format_tag::any: a blocked, VNNI/AMX-
// packed layout, with s8 compensation for int8) and kept in MatmulWeights::prepared. fp8 keeps
// only the widened bf16 copy (2 bytes per weight next to the 1-byte codes): widening per call
// would cost a decode and a reorder of all N·K weights on every call, which dominates any
// GEMM with small M, and the reorder into the blocked layout is needed anyway.
//
// Primitives are cached per (format, M, N, K, bias, threads): a new M costs 0.2-0.4 ms
// (primitive descriptor, JIT of the M-tail kernels; N = K = 1024), a cached one nothing.
// GCC 12 flags the undefined pass-through operand of AVX-512 intrinsics (_mm512_undefined_*)
// once they are inlined into loops: a false positive, silenced for the header's lines only.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"
#include <immintrin.h>
#pragma GCC diagnostic pop
#include "kernels/cpu/matmul_dnnl.h"
#include "kernels/cpu/vnni_common.h"

#include <omp.h>

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <map>
#include <memory>
#include <mutex>
#include <new>
#include <oneapi/dnnl/dnnl.hpp>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

#include "dynaprec/convert.h"
#include "dynaprec/cpu_features.h"
#include "dynaprec/error.h"
#include "kernels/cpu/dnnl_common.h"
#include "kernels/cpu/scratch_buffer.h"

namespace dynaprec::cpu {
namespace {

using dt = dnnl::memory::data_type;
using tag = dnnl::memory::format_tag;
using dnnl::memory;

enum class Scale : uint8_t { kNone, kTensor, kPerRow };

struct Spec {
  const char* name;
  Format format;
  dt act, wei;  ///< X as used, W as stored (fp8: as widened)
  Scale scale;
};

constexpr Spec kSpecs[] = {
    {"gemm_fp32__dnnl", Format::kFp32, dt::f32, dt::f32, Scale::kNone},
    {"gemm_bf16__dnnl", Format::kBf16, dt::bf16, dt::bf16, Scale::kNone},
    {"gemm_int8__dnnl", Format::kInt8, dt::s8, dt::s8, Scale::kPerRow},
    {"gemm_fp8e4m3__dnnl", Format::kFp8E4M3, dt::bf16, dt::bf16, Scale::kTensor},
    {"gemm_fp8e5m2__dnnl", Format::kFp8E5M2, dt::bf16, dt::bf16, Scale::kTensor},
    {"gemm_fp16__dnnl", Format::kFp16, dt::f32, dt::f32, Scale::kNone},
};

// Without AMX, s8 · s8 runs as (x + 128) · w - 128 Σw (VNNI multiplies u8 by s8); both terms
// stay below 2^31 while K · 255 · 127 does, so the int32 accumulator is exact up to this K.
constexpr int64_t kMaxInt8K = 65536;

// --- oneDNN setup ---------------------------------------------------------------------------

// Runs body(begin, end) over [0, count) in chunks on `threads` OpenMP threads. The per-call
// passes over X (amax, quantize, round) are memory-bound and as long as a small GEMM.
template <class F>
void parallel_chunks(size_t count, int threads, F&& body) {
  constexpr size_t kChunk = size_t{1} << 16;
  const auto chunks = static_cast<int64_t>((count + kChunk - 1) / kChunk);
#pragma omp parallel for num_threads(threads) schedule(static) if (chunks > 1)
  for (int64_t c = 0; c < chunks; ++c) {
    const size_t b = static_cast<size_t>(c) * kChunk;
    body(b, std::min(count, b + kChunk));
  }
}

// matmul_activation_scale(x, count), computed on `threads` threads: the max of |x| by bit
// pattern is associative, so chunk maxima give the same amax, and the same scale.
float activation_scale(const float* x, size_t count, int threads, const char* what) {
  constexpr size_t kChunk = size_t{1} << 16;
  std::vector<uint32_t> part((count + kChunk - 1) / kChunk, 0);
  parallel_chunks(count, threads, [&](size_t b, size_t e) {
    part[b / kChunk] = std::bit_cast<uint32_t>(amax(x + b, e - b));
  });
  const float m =
      std::bit_cast<float>(part.empty() ? 0u : *std::max_element(part.begin(), part.end()));
  if (!std::isfinite(m))
    throw Error(ErrorKind::kInvalidInput, std::string(what) + " contain NaN or inf");
  return ref::int8_scale(m);
}

// --- int8 X, quantized on AVX-512 ----------------------------------------------------------
//
// One OpenMP region per call: each thread takes the max of |x| over its contiguous part, then,
// once all maxima are in, quantizes its part backwards, so that the part's last lines, still in
// L2 from the first pass, are the first to be read again.
//
// The codes are those of ref::int8_encode, clamp(rne(fl(x / s)), ±127), without a division per
// element: t = fl(x · r) with r = fl(1 / s) is within 3 · 2^-24 · |x / s| <= 2^-15 of fl(x / s)
// (|x / s| <= 127), so where t is more than 2^-12 from every half-integer, t and fl(x / s) round
// to the same integer. The rare vector with a lane closer than that (~0.2% of vectors) is
// divided. Scales below 2^-125 (whose reciprocal could overflow) take the portable path.

#define DYNAPREC_AVX512 __attribute__((target("avx512f,avx512bw,avx512dq,avx512vl")))

DYNAPREC_AVX512 uint32_t amax_bits_avx512(const float* x, size_t n) {
  const __m512i abs_mask = _mm512_set1_epi32(0x7FFFFFFF);
  __m512i m0 = _mm512_setzero_si512(), m1 = _mm512_setzero_si512();
  size_t i = 0;
  for (; i + 32 <= n; i += 32) {
    m0 = _mm512_max_epu32(m0, _mm512_and_si512(_mm512_loadu_si512(x + i), abs_mask));
    m1 = _mm512_max_epu32(m1, _mm512_and_si512(_mm512_loadu_si512(x + i + 16), abs_mask));
  }
  for (; i < n; i += 16) {
    const auto m = static_cast<__mmask16>(n - i >= 16 ? 0xFFFF : (1u << (n - i)) - 1);
    m0 = _mm512_max_epu32(m0, _mm512_and_si512(_mm512_maskz_loadu_epi32(m, x + i), abs_mask));
  }
  return _mm512_reduce_max_epu32(_mm512_max_epu32(m0, m1));
}

DYNAPREC_AVX512 void quantize_avx512(const float* x, int8_t* q, size_t n, float s, float r) {
  const __m512 vs = _mm512_set1_ps(s), vr = _mm512_set1_ps(r);
  const __m512 lo = _mm512_set1_ps(-127.0f), hi = _mm512_set1_ps(127.0f);
  const __m512 near_half = _mm512_set1_ps(0.5f - 0x1p-12f);
  constexpr int kRne = _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC;
  for (size_t i = 0; i < n; i += 16) {
    const auto m = static_cast<__mmask16>(n - i >= 16 ? 0xFFFF : (1u << (n - i)) - 1);
    const __m512 v = _mm512_maskz_loadu_ps(m, x + i);
    const __m512 t = _mm512_mul_ps(v, vr);
    __m512 k = _mm512_roundscale_ps(t, kRne);
    if (_mm512_cmp_ps_mask(_mm512_abs_ps(_mm512_sub_ps(t, k)), near_half, _CMP_GT_OQ) != 0)
      k = _mm512_roundscale_ps(_mm512_div_ps(v, vs), kRne);
    k = _mm512_min_ps(_mm512_max_ps(k, lo), hi);
    _mm512_mask_cvtsepi32_storeu_epi8(q + i, m, _mm512_cvtps_epi32(k));
  }
}

// The exact codes of 16 values (quantize_avx512's arithmetic), as bytes.
DYNAPREC_AVX512 inline __m128i quantize16(__m512 v, __m512 vs, __m512 vr) {
  const __m512 lo = _mm512_set1_ps(-127.0f), hi = _mm512_set1_ps(127.0f);
  const __m512 near_half = _mm512_set1_ps(0.5f - 0x1p-12f);
  constexpr int kRne = _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC;
  const __m512 t = _mm512_mul_ps(v, vr);
  __m512 k = _mm512_roundscale_ps(t, kRne);
  if (_mm512_cmp_ps_mask(_mm512_abs_ps(_mm512_sub_ps(t, k)), near_half, _CMP_GT_OQ) != 0)
    k = _mm512_roundscale_ps(_mm512_div_ps(v, vs), kRne);
  k = _mm512_min_ps(_mm512_max_ps(k, lo), hi);
  return _mm512_cvtsepi32_epi8(_mm512_cvtps_epi32(k));
}

// r[i] = byte i of every row: the 16x16 byte transpose (four rounds of unpacks).
DYNAPREC_AVX512 inline void transpose16x16_epi8(__m128i r[16]) {
  __m128i a[16], b[16], c[16];
  for (int i = 0; i < 16; i += 2) {
    a[i] = _mm_unpacklo_epi8(r[i], r[i + 1]);
    a[i + 1] = _mm_unpackhi_epi8(r[i], r[i + 1]);
  }
  for (int g = 0; g < 16; g += 4) {  // a[g..g+3]: rows g..g+3
    b[g] = _mm_unpacklo_epi16(a[g], a[g + 2]);
    b[g + 1] = _mm_unpackhi_epi16(a[g], a[g + 2]);
    b[g + 2] = _mm_unpacklo_epi16(a[g + 1], a[g + 3]);
    b[g + 3] = _mm_unpackhi_epi16(a[g + 1], a[g + 3]);
  }
  for (int h = 0; h < 16; h += 8)  // b[h..h+3] with b[h+4..h+7]
    for (int i = 0; i < 4; ++i) {
      c[h + 2 * i] = _mm_unpacklo_epi32(b[h + i], b[h + 4 + i]);
      c[h + 2 * i + 1] = _mm_unpackhi_epi32(b[h + i], b[h + 4 + i]);
    }
  for (int i = 0; i < 8; ++i) {
    r[2 * i] = _mm_unpacklo_epi64(c[i], c[8 + i]);
    r[2 * i + 1] = _mm_unpackhi_epi64(c[i], c[8 + i]);
  }
}

// Pixels [p0, p1) of one image, X [C, HW] floats -> out [HW, C] codes.
DYNAPREC_AVX512 void quantize_nhwc_avx512(const float* x, int64_t c, int64_t hw, int64_t p0,
                                          int64_t p1, float s, float r, int8_t* out) {
  const __m512 vs = _mm512_set1_ps(s), vr = _mm512_set1_ps(r);
  __m128i rows[16];
  for (int64_t p = p0; p < p1; p += 16) {
    const int64_t n = std::min<int64_t>(16, p1 - p);
    const auto m = static_cast<__mmask16>(n >= 16 ? 0xFFFF : (1u << n) - 1);
    for (int64_t c0 = 0; c0 < c; c0 += 16) {
      const int64_t cn = std::min<int64_t>(16, c - c0);
      for (int64_t j = 0; j < 16; ++j)
        rows[j] = j < cn ? quantize16(_mm512_maskz_loadu_ps(m, x + (c0 + j) * hw + p), vs, vr)
                         : _mm_setzero_si128();
      transpose16x16_epi8(rows);
      const auto cm = static_cast<__mmask16>(cn >= 16 ? 0xFFFF : (1u << cn) - 1);
      for (int64_t i = 0; i < n; ++i) _mm_mask_storeu_epi8(out + (p + i) * c + c0, cm, rows[i]);
    }
  }
}

// The same for c <= 4 channels (a first layer's RGB): each pixel's codes as one 32-bit word
// (channel j in byte j), stored as 4, 3 (a byte permute), 2 or 1 bytes per pixel; no transpose
// of mostly-empty 16 x 16 blocks.
__attribute__((target("avx512f,avx512bw,avx512dq,avx512vl,avx512vbmi"))) void
quantize_nhwc_narrow_avx512(const float* x, int64_t c, int64_t hw, int64_t p0, int64_t p1, float s,
                            float r, int8_t* out) {
  const __m512 vs = _mm512_set1_ps(s), vr = _mm512_set1_ps(r);
  alignas(64) uint8_t idx3[64];
  for (int j = 0; j < 64; ++j) idx3[j] = static_cast<uint8_t>(j < 48 ? 4 * (j / 3) + j % 3 : 0);
  const __m512i perm3 = _mm512_load_si512(idx3);
  for (int64_t p = p0; p < p1; p += 16) {
    const int64_t n = std::min<int64_t>(16, p1 - p);
    const auto m = static_cast<__mmask16>(n >= 16 ? 0xFFFF : (1u << n) - 1);
    __m512i word = _mm512_setzero_si512();
    for (int64_t j = 0; j < c; ++j) {
      const __m128i q = quantize16(_mm512_maskz_loadu_ps(m, x + j * hw + p), vs, vr);
      word = _mm512_or_si512(
          word, _mm512_slli_epi32(_mm512_cvtepu8_epi32(q), static_cast<unsigned>(8 * j)));
    }
    int8_t* o = out + p * c;
    switch (c) {
      case 4:
        _mm512_mask_storeu_epi32(o, m, word);
        break;
      case 3: {
        const __mmask64 bm = n >= 16 ? 0xFFFFFFFFFFFFull : (__mmask64{1} << (3 * n)) - 1;
        _mm512_mask_storeu_epi8(o, bm, _mm512_permutexvar_epi8(perm3, word));
        break;
      }
      case 2:
        _mm256_mask_storeu_epi16(o, m, _mm512_cvtepi32_epi16(word));
        break;
      default:
        _mm_mask_storeu_epi8(o, m, _mm512_cvtepi32_epi8(word));
        break;
    }
  }
}

}  // namespace

void int8_encode_fast(const float* x, int8_t* out, size_t n, float sx) {
  const CpuFeatures& f = cpu_features();
  if (f.avx512f && f.avx512bw && f.avx512dq && f.avx512vl && sx >= 0x1p-125f)
    quantize_avx512(x, out, n, sx, 1.0f / sx);
  else
    int8_encode_array(x, out, n, sx);
}

float int8_activation_scale(const float* x, size_t count, int threads, const char* what) {
  return activation_scale(x, count, threads, what);
}

void quantize_x_int8_scaled(const float* x, size_t count, int8_t* out, int threads, float sx) {
  parallel_chunks(count, threads,
                  [&](size_t b, size_t e) { int8_encode_fast(x + b, out + b, e - b, sx); });
}

namespace {
// r[i] (pixel i's 16 channels) -> r[j] (channel j's 16 pixels): unpacks and shuffles within
// 128-bit lanes leave channel 4L + k of pixels 4i..4i+3 in lane L of t[4i + k]; 128-bit lane
// shuffles gather each channel's four lanes.
DYNAPREC_AVX512 inline void transpose16x16_ps(__m512 r[16]) {
  __m512 t[16];
  for (int i = 0; i < 16; i += 2) {
    t[i] = _mm512_unpacklo_ps(r[i], r[i + 1]);
    t[i + 1] = _mm512_unpackhi_ps(r[i], r[i + 1]);
  }
  __m512 u[16];
  for (int i = 0; i < 16; i += 4) {
    u[i] = _mm512_shuffle_ps(t[i], t[i + 2], 0x44);
    u[i + 1] = _mm512_shuffle_ps(t[i], t[i + 2], 0xEE);
    u[i + 2] = _mm512_shuffle_ps(t[i + 1], t[i + 3], 0x44);
    u[i + 3] = _mm512_shuffle_ps(t[i + 1], t[i + 3], 0xEE);
  }
  for (int k = 0; k < 4; ++k) {
    const __m512 a = _mm512_shuffle_f32x4(u[k], u[4 + k], 0x44);
    const __m512 b = _mm512_shuffle_f32x4(u[k], u[4 + k], 0xEE);
    const __m512 c = _mm512_shuffle_f32x4(u[8 + k], u[12 + k], 0x44);
    const __m512 d = _mm512_shuffle_f32x4(u[8 + k], u[12 + k], 0xEE);
    r[k] = _mm512_shuffle_f32x4(a, c, 0x88);
    r[4 + k] = _mm512_shuffle_f32x4(a, c, 0xDD);
    r[8 + k] = _mm512_shuffle_f32x4(b, d, 0x88);
    r[12 + k] = _mm512_shuffle_f32x4(b, d, 0xDD);
  }
}

// Pixels [p0, p1) of one image, [hw][c] -> [c][hw] (c a multiple of 16), max |value| bits
// returned (0 unless `measure`).
DYNAPREC_AVX512 uint32_t nhwc_to_nchw_avx512(const float* x, int64_t c, int64_t hw, int64_t p0,
                                             int64_t p1, float* y, bool measure) {
  const __m512i abs_mask = _mm512_set1_epi32(0x7FFFFFFF);
  __m512i mx = _mm512_setzero_si512();
  for (int64_t c0 = 0; c0 < c; c0 += 16)
    for (int64_t p = p0; p < p1; p += 16) {
      const int64_t n = std::min<int64_t>(16, p1 - p);
      const auto m = static_cast<__mmask16>(n >= 16 ? 0xFFFF : (1u << n) - 1);
      __m512 r[16];
      for (int64_t i = 0; i < 16; ++i)
        r[i] = i < n ? _mm512_loadu_ps(x + (p + i) * c + c0) : _mm512_setzero_ps();
      transpose16x16_ps(r);
      for (int64_t j = 0; j < 16; ++j) {
        _mm512_mask_storeu_ps(y + (c0 + j) * hw + p, m, r[j]);
        if (measure)
          mx = _mm512_mask_max_epu32(mx, m, mx,
                                     _mm512_and_si512(_mm512_castps_si512(r[j]), abs_mask));
      }
    }
  return _mm512_reduce_max_epu32(mx);
}
}  // namespace

bool nhwc_to_nchw_f32(const float* x, int64_t n, int64_t c, int64_t hw, float* y, int threads,
                      std::atomic<uint32_t>* amax) {
  const CpuFeatures& f = cpu_features();
  if (!(f.avx512f && f.avx512bw && f.avx512dq && f.avx512vl) || c % 16 != 0) return false;
  constexpr int64_t kBlock = 256;  // pixels per task
  const int64_t blocks = (hw + kBlock - 1) / kBlock, tasks = n * blocks;
#pragma omp parallel for num_threads(threads) schedule(static) if (tasks > 1)
  for (int64_t t = 0; t < tasks; ++t) {
    const int64_t img = t / blocks, p0 = t % blocks * kBlock;
    const uint32_t m = nhwc_to_nchw_avx512(x + img * hw * c, c, hw, p0, std::min(hw, p0 + kBlock),
                                           y + img * c * hw, amax);
    if (amax) vnni::atomic_max(amax, m);
  }
  return true;
}

bool quantize_int8_nhwc(const float* x, int64_t n, int64_t c, int64_t hw, float sx, int8_t* out,
                        int threads) {
  const CpuFeatures& f = cpu_features();
  if (!(f.avx512f && f.avx512bw && f.avx512dq && f.avx512vl) || !(sx >= 0x1p-125f)) return false;
  const float r = 1.0f / sx;
  const bool narrow = c <= 4 && f.avx512_vbmi;
  constexpr int64_t kBlock = 256;  // pixels per task
  const int64_t blocks = (hw + kBlock - 1) / kBlock, tasks = n * blocks;
#pragma omp parallel for num_threads(threads) schedule(static) if (tasks > 1)
  for (int64_t t = 0; t < tasks; ++t) {
    const int64_t img = t / blocks, p0 = t % blocks * kBlock;
    if (narrow)
      quantize_nhwc_narrow_avx512(x + img * c * hw, c, hw, p0, std::min(hw, p0 + kBlock), sx, r,
                                  out + img * hw * c);
    else
      quantize_nhwc_avx512(x + img * c * hw, c, hw, p0, std::min(hw, p0 + kBlock), sx, r,
                           out + img * hw * c);
  }
  return true;
}

float quantize_x_int8(const float* x, size_t count, int8_t* out, int threads, const char* what) {
  const CpuFeatures& f = cpu_features();
  if (!(f.avx512f && f.avx512bw && f.avx512dq && f.avx512vl)) {
    const float sx = activation_scale(x, count, threads, what);
    parallel_chunks(count, threads,
                    [&](size_t b, size_t e) { int8_encode_array(x + b, out + b, e - b, sx); });
    return sx;
  }
  constexpr size_t kChunk = 4096;  // floats quantized at a time, walking backwards
  std::vector<uint32_t> part(static_cast<size_t>(std::max(1, threads)), 0);
  float sx = 1.0f;
  bool finite = true, tiny = false;
#pragma omp parallel num_threads(threads)
  {
    const auto t = static_cast<size_t>(omp_get_thread_num());
    const auto nt = static_cast<size_t>(omp_get_num_threads());
    // Parts of whole 16-float vectors, the last one also takes the rest.
    const size_t vecs = count / 16, b = vecs * t / nt * 16;
    const size_t e = t + 1 == nt ? count : vecs * (t + 1) / nt * 16;
    part[t] = amax_bits_avx512(x + b, e - b);
#pragma omp barrier
#pragma omp single
    {
      const float m = std::bit_cast<float>(*std::max_element(part.begin(), part.begin() + nt));
      finite = std::isfinite(m);
      if (finite) sx = ref::int8_scale(m);
      tiny = !(sx >= 0x1p-125f);
    }  // implicit barrier
    if (finite && !tiny) {
      const float r = 1.0f / sx;
      for (size_t end = e; end > b;) {
        const size_t begin = end - std::min(kChunk, end - b);
        quantize_avx512(x + begin, out + begin, end - begin, sx, r);
        end = begin;
      }
    }
  }
  if (!finite) throw Error(ErrorKind::kInvalidInput, std::string(what) + " contain NaN or inf");
  if (tiny)
    parallel_chunks(count, threads,
                    [&](size_t b, size_t e) { int8_encode_array(x + b, out + b, e - b, sx); });
  return sx;
}

namespace {

// --- primitives -----------------------------------------------------------------------------

struct PlanKey {
  Format format;
  int64_t m, n, k;
  bool bias;
  int threads;
  auto operator<=>(const PlanKey&) const = default;
};

struct Plan {
  dnnl::matmul prim;
  memory::desc src, wei, dst, scratch;
  bool epilogue = false;  ///< scale and bias are ours: the primitive writes the accumulator
};

std::string shape_text(const PlanKey& key) {
  return "M=" + std::to_string(key.m) + " N=" + std::to_string(key.n) +
         " K=" + std::to_string(key.k);
}

Plan make_plan(const Spec& s, const PlanKey& key) {
  const memory::desc src({key.m, key.k}, s.act, tag::ab);
  const memory::desc wei({key.k, key.n}, s.wei, tag::any);
  const memory::desc row({1, key.n}, dt::f32, tag::ab);
  dnnl::primitive_attr attr;
  attr.set_scratchpad_mode(dnnl::scratchpad_mode::user);  // our buffer: no global state
  auto finish = [&](const dnnl::matmul::primitive_desc& pd, bool epilogue) {
    return Plan{dnnl::matmul(pd), pd.src_desc(),        pd.weights_desc(),
                pd.dst_desc(),    pd.scratchpad_desc(), epilogue};
  };
  if (s.scale == Scale::kNone) {
    const memory::desc dst({key.m, key.n}, dt::f32, tag::ab);
    const auto d =
        key.bias ? dnnl::matmul::desc(src, wei, row, dst) : dnnl::matmul::desc(src, wei, dst);
    return finish(dnnl::matmul::primitive_desc(d, attr, onednn_engine()), false);
  }
  // The raw accumulator (s32 for int8) with our epilogue: every implementation can do this.
  const memory::desc acc({key.m, key.n}, s.act == dt::s8 ? dt::s32 : dt::f32, tag::ab);
  const dnnl::matmul::primitive_desc raw(dnnl::matmul::desc(src, wei, acc), attr, onednn_engine());
  try {
    dnnl::post_ops po;
    const memory::dim scale_n = s.scale == Scale::kPerRow ? key.n : 1;
    po.append_binary(dnnl::algorithm::binary_mul, memory::desc({1, scale_n}, dt::f32, tag::ab));
    if (key.bias) po.append_binary(dnnl::algorithm::binary_add, row);
    dnnl::primitive_attr fused_attr = attr;
    fused_attr.set_post_ops(po);
    const memory::desc dst({key.m, key.n}, dt::f32, tag::ab);
    const dnnl::matmul::primitive_desc fused(dnnl::matmul::desc(src, wei, dst), fused_attr,
                                             onednn_engine());
    // Fusing must not cost the fast implementation (a reference one handles anything).
    const std::string impl = fused.impl_info_str(), raw_impl = raw.impl_info_str();
    if (impl.rfind("ref", 0) != 0 || raw_impl.rfind("ref", 0) == 0) return finish(fused, false);
  } catch (const dnnl::error& e) {
    if (e.status != dnnl_unimplemented) throw;
  }
  return finish(raw, true);
}

std::shared_ptr<const Plan> plan_for(const Spec& s, const PlanKey& key) {
  static std::mutex mu;
  static std::map<PlanKey, std::shared_ptr<const Plan>> cache;
  {
    std::lock_guard lock(mu);
    if (auto it = cache.find(key); it != cache.end()) return it->second;
  }
  auto plan = std::make_shared<const Plan>(make_plan(s, key));  // outside the lock: slow
  std::lock_guard lock(mu);
  if (cache.size() >= 512) cache.clear();  // bounded: M can take many values
  return cache.try_emplace(key, std::move(plan)).first->second;
}

// --- weights --------------------------------------------------------------------------------

// The prepared form: W in each layout a primitive asked for. The layout oneDNN picks depends
// on M for narrow weights (N or K up to ~100): small M runs brgemm without AMX, whose int8
// layout also carries the s8 compensation, larger M the AMX one with other blocks. Large
// weights had one layout for every M we tried; a second one costs a second copy of W.
struct Prepared {
  std::mutex mu;  ///< guards `layouts` once `prepared` is set (calls may then run in parallel)
  std::vector<std::pair<memory::desc, memory>> layouts;  ///< each memory owns its buffer
};
constexpr size_t kMaxLayouts = 4;  // beyond: reorder per call rather than grow without bound

// fp8 codes -> bf16 codes, exactly, through f32 in small pieces (no N·K f32 temporary, and no
// allocation inside the parallel region, where an exception could not escape).
void widen_fp8(Format f, const uint8_t* codes, uint16_t* out, size_t count, int threads) {
  parallel_chunks(count, threads, [&](size_t b, size_t e) {
    float tmp[1024];
    for (size_t i = b; i < e; i += std::size(tmp)) {
      const size_t len = std::min(std::size(tmp), e - i);
      decode_float_array(f, codes + i, tmp, len);
      encode_float_array(Format::kBf16, tmp, out + i, len);
    }
  });
}

// W in the layout `md`, reordered from our [N, K] rows (oneDNN's K×N with tag ba).
memory make_weights(const Spec& s, const MatmulWeights& w, const memory::desc& md, int threads) {
  const void* src = w.data.data();
  std::vector<uint16_t> widened;
  std::vector<float> widened32;
  if (w.format == Format::kFp8E4M3 || w.format == Format::kFp8E5M2) {
    widened.resize(static_cast<size_t>(w.n * w.k));
    widen_fp8(w.format, static_cast<const uint8_t*>(src), widened.data(), widened.size(), threads);
    src = widened.data();
  } else if (w.format == Format::kFp16) {
    // No fp16 dot product on this CPU (AVX512-FP16 accumulates in fp16): fp16 runs as f32 on
    // the exact widened values; products of two fp16 values (22 bits) are exact in fp32.
    widened32.resize(static_cast<size_t>(w.n * w.k));
    decode_float_array(Format::kFp16, src, widened32.data(), widened32.size());
    src = widened32.data();
  }
  memory plain(memory::desc({w.k, w.n}, s.wei, tag::ba), onednn_engine(), const_cast<void*>(src));
  memory out(md, onednn_engine());
  dnnl::reorder(plain, out).execute(onednn_stream(), plain, out);
  onednn_stream().wait();
  return out;
}

memory weights_for(const Spec& s, const MatmulWeights& w, const memory::desc& md, int threads) {
  if (w.prepared_by != s.name || !w.prepared) {  // first use; not thread-safe (MatmulWeights)
    w.prepared = std::make_shared<Prepared>();
    w.prepared_by = s.name;
  }
  auto& prep = *static_cast<Prepared*>(w.prepared.get());
  std::lock_guard lock(prep.mu);
  for (const auto& [layout, mem] : prep.layouts)
    if (layout == md) return mem;
  memory mem = make_weights(s, w, md, threads);
  if (prep.layouts.size() < kMaxLayouts) prep.layouts.emplace_back(md, mem);
  return mem;
}

// --- the call -------------------------------------------------------------------------------

void run_impl(const Spec& s, const MatmulProblem& p) {
  const MatmulWeights& w = *p.w;
  DP_CHECK(w.format == s.format, std::string(s.name) + " called with another format");
  const int threads = std::max(1, p.threads);
  const OmpThreads omp_scope(threads);
  const PlanKey key{s.format, p.m, w.n, w.k, p.bias != nullptr, threads};
  const std::shared_ptr<const Plan> plan = plan_for(s, key);

  const memory wei = weights_for(s, w, plan->wei, threads);

  const auto count = static_cast<size_t>(p.m * w.k);
  thread_local ScratchBuffer act_buf, scale_buf, scratch_buf;
  void* act = const_cast<float*>(p.x);
  float* scales = scale_buf.get<float>(static_cast<size_t>(w.n));
  if (s.format == Format::kFp16) {  // X rounded to fp16, used as f32 (matmul.h)
    act = act_buf.get<std::byte>(count * sizeof(float));
    auto* out = static_cast<float*>(act);
    parallel_chunks(count, threads, [&](size_t b, size_t e) {
      uint16_t tmp[1024];
      for (size_t i = b; i < e; i += std::size(tmp)) {
        const size_t len = std::min(std::size(tmp), e - i);
        encode_float_array(Format::kFp16, p.x + i, tmp, len);
        decode_float_array(Format::kFp16, tmp, out + i, len);
      }
    });
  } else if (s.act == dt::bf16) {
    act = act_buf.get<std::byte>(count * sizeof(uint16_t));
    auto* out = static_cast<uint16_t*>(act);
    parallel_chunks(count, threads, [&](size_t b, size_t e) {
      encode_float_array(Format::kBf16, p.x + b, out + b, e - b);
    });
  } else if (s.act == dt::s8) {
    act = act_buf.get<std::byte>(count);
    auto* out = static_cast<int8_t*>(act);
    const float sx = quantize_x_int8(p.x, count, out, threads, "matmul activations");
    const std::vector<float>& sw = w.data.quant().scales;
    DP_CHECK(sw.size() == static_cast<size_t>(w.n), "int8 weights need one scale per row");
    for (int64_t j = 0; j < w.n; ++j) scales[j] = sx * sw[static_cast<size_t>(j)];
  }
  if (s.scale == Scale::kTensor) scales[0] = w.data.quant().scales.at(0);

  const dnnl::engine& eng = onednn_engine();
  std::unordered_map<int, memory> args{
      {DNNL_ARG_SRC, memory(plan->src, eng, act)},
      {DNNL_ARG_WEIGHTS, wei},
      {DNNL_ARG_DST, memory(plan->dst, eng, p.y)},
  };
  const memory::desc row({1, w.n}, dt::f32, tag::ab);
  auto* bias = const_cast<float*>(p.bias);
  if (s.scale == Scale::kNone) {
    if (bias) args.emplace(DNNL_ARG_BIAS, memory(row, eng, bias));
  } else if (!plan->epilogue) {
    const memory::dim scale_n = s.scale == Scale::kPerRow ? w.n : 1;
    args.emplace(DNNL_ARG_ATTR_MULTIPLE_POST_OP(0) | DNNL_ARG_SRC_1,
                 memory(memory::desc({1, scale_n}, dt::f32, tag::ab), eng, scales));
    if (bias)
      args.emplace(DNNL_ARG_ATTR_MULTIPLE_POST_OP(1) | DNNL_ARG_SRC_1, memory(row, eng, bias));
  }
  if (const size_t pad = plan->scratch.get_size(); pad > 0)
    args.emplace(DNNL_ARG_SCRATCHPAD, memory(plan->scratch, eng, scratch_buf.get<std::byte>(pad)));
  plan->prim.execute(onednn_stream(), args);
  onednn_stream().wait();

  if (plan->epilogue) {
    // y = float(acc) * s + b, as the reference writes it (acc: int32 bits for int8).
    const bool s32 = s.act == dt::s8, per_row = s.scale == Scale::kPerRow;
#pragma omp parallel for num_threads(threads) schedule(static)
    for (int64_t i = 0; i < p.m; ++i) {
      float* y = p.y + i * w.n;
      for (int64_t j = 0; j < w.n; ++j) {
        float acc = y[j];
        if (s32) {
          int32_t a;  // copied as bytes: int32 bits may spell a NaN, which must not meet an FPU
          std::memcpy(&a, y + j, sizeof a);
          acc = static_cast<float>(a);
        }
        y[j] = acc * scales[per_row ? j : 0] + (bias ? bias[j] : 0.0f);
      }
    }
  }
}

void run_checked(const Spec& s, const MatmulProblem& p) {
  try {
    run_impl(s, p);
  } catch (const dnnl::error& e) {
    const PlanKey key{s.format, p.m, p.w->n, p.w->k, p.bias != nullptr, p.threads};
    throw Error(e.status == dnnl_unimplemented ? ErrorKind::kUnsupported : ErrorKind::kInternal,
                std::string(s.name) + ": oneDNN failed on " + shape_text(key) + ": " + e.what());
  }
}

// --- the list -------------------------------------------------------------------------------

// oneDNN is asked first, so that asking applies the cap to oneDNN even when the answer is no.
bool has_fp32(const CpuFeatures& f) { return onednn_has(dnnl::cpu_isa::avx2) && f.avx2 && f.fma; }
// Without native bf16 dot products oneDNN emulates them slowly: leave bf16 to other kernels.
bool has_bf16(const CpuFeatures& f) {
  return onednn_has(dnnl::cpu_isa::avx512_core_bf16) && (f.avx512_bf16 || f.amx_bf16);
}
bool has_int8(const CpuFeatures& f) {
  const bool vnni =
      onednn_has(dnnl::cpu_isa::avx512_core_vnni) || onednn_has(dnnl::cpu_isa::avx2_vnni);
  return vnni && (f.avx512_vnni || f.amx_int8 || f.avx_vnni);
}

template <size_t I>
bool applies(Format f, int64_t m, int64_t n, int64_t k) {
  const Spec& s = kSpecs[I];
  return f == s.format && m >= 2 && n >= 1 && k >= 1 && (s.act != dt::s8 || k <= kMaxInt8K);
}

template <size_t I>
void run(const MatmulProblem& p) {
  run_checked(kSpecs[I], p);
}

constexpr MatmulKernel kKernels[] = {
    {kSpecs[0].name, has_fp32, applies<0>, run<0>}, {kSpecs[1].name, has_bf16, applies<1>, run<1>},
    {kSpecs[2].name, has_int8, applies<2>, run<2>}, {kSpecs[3].name, has_bf16, applies<3>, run<3>},
    {kSpecs[4].name, has_bf16, applies<4>, run<4>}, {kSpecs[5].name, has_fp32, applies<5>, run<5>},
};

}  // namespace

std::span<const MatmulKernel> dnnl_matmul_kernels() { return kKernels; }

}  // namespace dynaprec::cpu
