// GEMM on AMX tiles (gemm_amx.h). Y[M, N] = X[M, K] · W[N, K]ᵀ (+ bias), per format:
//
//   bf16  X rounded to bf16 per call (vcvtne2ps2bf16: round to nearest even, as the reference,
//         except that subnormal inputs become zero, as the tiles would treat them anyway);
//         tdpbf16ps with fp32 sums; y = acc + bias.
//   fp8   W widened once to bf16 (exact: every fp8 value is a bf16 value), then as bf16;
//         y = acc · s + bias (two roundings, the reference's).
//   int8  X quantized per call with one scale sx (ref::int8_encode's codes); tdpbssd with exact
//         int32 sums (K <= 65536); y = float(acc) · (sx · sw[n]) + bias[n]: the reference's bits.
//
// Layout: both operands as whole tiles of 1 KiB, so that every tile load reads 16 consecutive
// cache lines (a tile of X read in place, its 16 rows one row of X apart, hits a single L1 set
// when a row is a multiple of 4 KiB). A tile row is one K step of 64 bytes: 32 bf16 or 64 int8
// values. The two tiles of a 32-row (or 32-column) block for one step are adjacent, so that a
// block's K sweep is one sequential stream:
//   A (X, packed per call): [M / 32][steps][2 halves][16 rows][64 bytes].
//   B (W, packed once):     [N / 32][steps][2 halves][16 rows][16 columns][4 bytes]: tile row r
//                           of step s holds, for each column n, the pair k = 32s + 2r, +1 (bf16)
//                           or the quad k = 64s + 4r .. +3 (int8) that the dot products take.
// M and N are padded to 32, K to a whole step, with zeros.
//
// Blocking (measured on the 2-core Sapphire Rapids VM, docs/benchmarks.md): a block is 32 rows
// x 32 columns of Y, four accumulator tiles (amx.h); per K step, two A and two B tile loads and
// four dot products. Tile loads from L1 keep the tiles ~80% busy, from L2 ~50%, from memory
// ~13%, so:
//   * a task packs a group of row blocks into its own A buffer (up to kGroupBytes, kept in L2),
//     right before it uses them;
//   * it walks the columns in panels of kPanel blocks, and K in chunks of kChunk steps: per
//     chunk, each row block's A chunk (16 KiB) meets the panel's blocks from L1, the B chunks
//     come from L2; the accumulators of the group x panel wait in a small buffer between chunks;
//   * the epilogue runs on a block once its last chunk is done.
// Tasks are the row groups (a multiple of the thread count) where there are enough rows, else
// one group split by columns. oneDNN 2.6's brgemm: bf16 ~1,800 GFLOP/s, int8 ~3,600 GOP/s at
// 2048³ on 2 threads; these kernels ~2,500 and ~4,400.
#include "kernels/cpu/gemm_amx.h"

#include <omp.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <new>
#include <vector>

#include "dynaprec/convert.h"
#include "dynaprec/cpu_features.h"
#include "dynaprec/error.h"
#include "kernels/cpu/amx.h"
#include "kernels/cpu/matmul_dnnl.h"
#include "kernels/cpu/scratch_buffer.h"

#define DYNAPREC_AMX_GEMM                                                     \
  __attribute__((                                                             \
      target("amx-tile,amx-int8,amx-bf16,avx512f,avx512bw,avx512vl,avx512dq," \
             "avx512bf16,fma")))

namespace dynaprec::cpu {
namespace {

constexpr int64_t kTile = 1024;             // bytes of one tile
constexpr int64_t kMaxInt8K = 65536;        // |acc| <= K · 127² < 2^31
constexpr int64_t kGroupBytes = 768 << 10;  // A tiles of one task's rows, kept in L2
constexpr int64_t kPanel = 4;               // 32-column blocks per panel
constexpr int64_t kChunk = 8;               // K steps per pass over a panel

enum class Kind : uint8_t { kBf16, kInt8 };

int64_t round_up(int64_t v, int64_t m) { return (v + m - 1) / m * m; }

// W packed as B tiles (see the top), kept in MatmulWeights::prepared.
struct Packed {
  int64_t n16 = 0;    ///< 16-column groups, even
  int64_t steps = 0;  ///< K steps of 64 bytes
  ScratchBuffer storage;
  uint8_t* tiles = nullptr;  ///< in storage
  std::vector<float> scale;  ///< per column (int8: sw[n]; fp8: s; bf16: empty), padded with 0
};

constexpr Kind kind_of(Format f) { return f == Format::kInt8 ? Kind::kInt8 : Kind::kBf16; }
constexpr int64_t values_per_step(Kind k) { return k == Kind::kInt8 ? 64 : 32; }

std::shared_ptr<Packed> pack_weights(const MatmulWeights& w) {
  auto pk = std::make_shared<Packed>();
  const int64_t per_step = values_per_step(kind_of(w.format));
  const int64_t n = w.n, k = w.k;
  pk->n16 = round_up(n, 32) / 16;
  pk->steps = (k + per_step - 1) / per_step;
  pk->tiles = pk->storage.get<uint8_t>(static_cast<size_t>(pk->n16 * pk->steps * kTile));
  // W's rows as 64-byte steps of 16 four-byte lanes (a quad of int8 codes or a pair of bf16
  // codes), zero-padded: row j's lane q of step s at words[(j · steps + s) · 16 + q].
  const int64_t row_words = pk->steps * 16;
  std::vector<uint32_t> words(static_cast<size_t>(pk->n16 * 16 * row_words), 0);
  auto* wb = reinterpret_cast<uint8_t*>(words.data());
  const QuantParams& qp = w.data.quant();
  std::vector<float> values;  // fp8: a row's values, each exactly a bf16 value
  for (int64_t j = 0; j < n; ++j) {
    uint8_t* dst = wb + j * row_words * 4;
    if (w.format == Format::kInt8 || w.format == Format::kBf16) {
      const size_t row_bytes = static_cast<size_t>(k) * (w.format == Format::kInt8 ? 1 : 2);
      std::memcpy(dst, static_cast<const uint8_t*>(w.data.data()) + j * row_bytes, row_bytes);
    } else {  // fp8: the values' bf16 codes (their upper halves)
      values.resize(static_cast<size_t>(k));
      decode_float_array(w.format, w.data.data_as<uint8_t>() + j * k, values.data(),
                         static_cast<size_t>(k));
      for (int64_t p = 0; p < k; ++p) {
        const auto code =
            static_cast<uint16_t>(std::bit_cast<uint32_t>(values[static_cast<size_t>(p)]) >> 16);
        std::memcpy(dst + p * 2, &code, 2);
      }
    }
  }
  // Tile (column block, step): its row r, column c = lane r of step s of W's row 16 · block + c.
  auto* b = reinterpret_cast<uint32_t*>(pk->tiles);
  for (int64_t j16 = 0; j16 < pk->n16; ++j16)
    for (int64_t s = 0; s < pk->steps; ++s) {
      uint32_t* tile = b + ((j16 / 2 * pk->steps + s) * 2 + j16 % 2) * 256;
      const uint32_t* src = words.data() + j16 * 16 * row_words + s * 16;
      for (int64_t r = 0; r < 16; ++r)
        for (int64_t c = 0; c < 16; ++c) tile[r * 16 + c] = src[c * row_words + r];
    }
  if (w.format == Format::kInt8) {
    pk->scale.assign(static_cast<size_t>(pk->n16 * 16), 0.0f);
    std::copy_n(qp.scales.begin(), n, pk->scale.begin());
  } else if (w.format != Format::kBf16) {
    pk->scale.assign(static_cast<size_t>(pk->n16 * 16), qp.scales.at(0));
  }
  return pk;
}

const Packed& packed(const MatmulWeights& w, const char* name) {
  if (w.prepared_by != name || !w.prepared) {  // first use; not thread-safe (MatmulWeights)
    w.prepared = pack_weights(w);
    w.prepared_by = name;
  }
  return *static_cast<const Packed*>(w.prepared.get());
}

// ---- X as A tiles --------------------------------------------------------------------------

// Rows [r0, r1) of X (r0 a multiple of 32; rows past M zero) into the A tiles at a, row r0 first.
DYNAPREC_AMX_GEMM void pack_x_bf16(const float* x, int64_t m, int64_t k, int64_t steps, int64_t r0,
                                   int64_t r1, uint8_t* a) {
  for (int64_t i = r0; i < r1; ++i) {
    uint8_t* dst = a + (((i - r0) / 32 * steps * 2 + i / 16 % 2) * 16 + i % 16) * 64;
    if (i >= m) {
      for (int64_t s = 0; s < steps; ++s)
        _mm512_storeu_si512(dst + s * 2 * kTile, _mm512_setzero_si512());
      continue;
    }
    const float* row = x + i * k;
    for (int64_t s = 0; s < steps; ++s) {
      const int64_t p = s * 32, n = std::min<int64_t>(32, k - p);
      const auto m0 = static_cast<__mmask16>(n >= 16 ? 0xFFFF : (1u << n) - 1);
      const auto m1 = static_cast<__mmask16>(n >= 32 ? 0xFFFF : n > 16 ? (1u << (n - 16)) - 1 : 0);
      const __m512 lo = _mm512_maskz_loadu_ps(m0, row + p);
      const __m512 hi = _mm512_maskz_loadu_ps(m1, row + p + 16);
      _mm512_storeu_si512(dst + s * 2 * kTile,
                          reinterpret_cast<__m512i>(_mm512_cvtne2ps_pbh(hi, lo)));
    }
  }
}

// (row: steps · 64 bytes of the calling thread's.)
void pack_x_int8(const float* x, int64_t m, int64_t k, int64_t steps, float sx, int64_t r0,
                 int64_t r1, uint8_t* a, int8_t* row) {
  std::memset(row, 0, static_cast<size_t>(steps * 64));  // K's padding stays zero
  for (int64_t i = r0; i < r1; ++i) {
    uint8_t* dst = a + (((i - r0) / 32 * steps * 2 + i / 16 % 2) * 16 + i % 16) * 64;
    if (i < m)
      int8_encode_fast(x + i * k, row, static_cast<size_t>(k), sx);
    else if (i == m)
      std::memset(row, 0, static_cast<size_t>(k));
    for (int64_t s = 0; s < steps; ++s) std::memcpy(dst + s * 2 * kTile, row + s * 64, 64);
  }
}

// ---- one 32x32 block --------------------------------------------------------------------------

// Accumulator tiles += A (two row tiles, row_next bytes apart) · B (two column tiles) over
// `steps` K steps.
template <Kind K>
DYNAPREC_AMX_GEMM inline void dot_steps(const uint8_t* a, int64_t a_next, const uint8_t* b,
                                        int64_t b_next, int64_t steps) {
  for (int64_t s = 0; s < steps; ++s, a += 2 * kTile, b += 2 * kTile) {
    _tile_loadd(4, a, 64);
    _tile_loadd(5, a + a_next, 64);
    _tile_loadd(6, b, 64);
    _tile_loadd(7, b + b_next, 64);
    if constexpr (K == Kind::kInt8) {
      _tile_dpbssd(0, 4, 6);
      _tile_dpbssd(1, 4, 7);
      _tile_dpbssd(2, 5, 6);
      _tile_dpbssd(3, 5, 7);
    } else {
      _tile_dpbf16ps(0, 4, 6);
      _tile_dpbf16ps(1, 4, 7);
      _tile_dpbf16ps(2, 5, 6);
      _tile_dpbf16ps(3, 5, 7);
    }
  }
}

// Y's rows [0, rows) x columns [0, cols) of one block from the accumulators acc[32][32]:
// int8 float(acc) · scale + bias, fp8 acc · scale + bias, bf16 acc + bias (scale null).
template <Kind K>
DYNAPREC_AMX_GEMM void epilogue(const void* acc, int rows, int cols, const float* scale,
                                const float* bias, float* y, int64_t y_stride) {
  for (int v = 0; v < 2; ++v) {
    const int n = cols - 16 * v;
    if (n <= 0) break;
    const auto mask = static_cast<__mmask16>(n >= 16 ? 0xFFFF : (1u << n) - 1);
    const __m512 b = _mm512_loadu_ps(bias + 16 * v);
    const __m512 s = scale ? _mm512_loadu_ps(scale + 16 * v) : _mm512_set1_ps(1.0f);
    for (int r = 0; r < rows; ++r) {
      __m512 o;
      if constexpr (K == Kind::kInt8)
        o = _mm512_cvtepi32_ps(
            _mm512_loadu_si512(static_cast<const int32_t*>(acc) + r * 32 + 16 * v));
      else
        o = _mm512_loadu_ps(static_cast<const float*>(acc) + r * 32 + 16 * v);
      if (scale) o = _mm512_mul_ps(o, s);
      _mm512_mask_storeu_ps(y + r * y_stride + 16 * v, mask, _mm512_add_ps(o, b));
    }
  }
}

// A GEMM thread's buffers (kept by the calling thread, one per team member): its A tiles, its
// accumulators between K chunks, and a row of X's codes; and their addresses for one call.
struct ThreadBuffers {
  ScratchBuffer a, acc, row;
};
struct Pointers {
  uint8_t* a;
  uint8_t* acc;
  int8_t* row;
};

struct Call {
  int64_t m, n, steps;
  const uint8_t* b;    ///< W's B tiles
  const float* scale;  ///< per column, or null (bf16)
  const float* bias;   ///< per column, padded with zeros
  float* y;
};

// Row blocks [mb0, mb1) x column blocks [nb0, nb1) (32 each) of Y, the rows' A tiles at a (packed
// by the caller, row block mb0 first).
template <Kind K>
DYNAPREC_AMX_GEMM void run_blocks(const Call& c, const uint8_t* a0, int64_t mb0, int64_t mb1,
                                  int64_t nb0, int64_t nb1, uint8_t* cacc) {
  for (int64_t p0 = nb0; p0 < nb1; p0 += kPanel) {
    const int64_t p1 = std::min(nb1, p0 + kPanel);
    for (int64_t s0 = 0; s0 < c.steps; s0 += kChunk) {
      const int64_t steps = std::min(kChunk, c.steps - s0);
      const bool first = s0 == 0, last = s0 + steps == c.steps;
      for (int64_t mb = mb0; mb < mb1; ++mb) {
        const uint8_t* a = a0 + ((mb - mb0) * c.steps + s0) * 2 * kTile;
        for (int64_t nb = p0; nb < p1; ++nb) {
          const uint8_t* b = c.b + (nb * c.steps + s0) * 2 * kTile;
          uint8_t* cb = cacc + ((mb - mb0) * kPanel + (nb - p0)) * 4096;
          if (first)
            amx_zero_acc();
          else
            amx_load_acc(cb, 128);
          dot_steps<K>(a, kTile, b, kTile, steps);
          amx_store_acc(cb);
          if (!last) continue;
          const int64_t r0 = mb * 32, c0 = nb * 32;
          epilogue<K>(cb, static_cast<int>(std::min<int64_t>(32, c.m - r0)),
                      static_cast<int>(std::min<int64_t>(32, c.n - c0)),
                      c.scale ? c.scale + c0 : nullptr, c.bias + c0, c.y + r0 * c.n + c0, c.n);
        }
      }
    }
  }
}

template <Kind K>
void run_gemm(const MatmulProblem& p, const char* name) {
  const MatmulWeights& w = *p.w;
  const Packed& pk = packed(w, name);
  const int64_t m = p.m, n = w.n, k = w.k;
  const int64_t n32 = pk.n16 * 16;
  float sx = 1.0f;
  if constexpr (K == Kind::kInt8)
    sx = int8_activation_scale(p.x, static_cast<size_t>(m * k), p.threads, "matmul activations");
  thread_local std::vector<float> terms;
  terms.assign(static_cast<size_t>(2 * n32), 0.0f);
  float* bias = terms.data();
  float* scale = pk.scale.empty() ? nullptr : terms.data() + n32;
  for (int64_t j = 0; j < n; ++j) {
    const auto jj = static_cast<size_t>(j);
    if (p.bias) bias[j] = p.bias[j];
    if (scale) scale[j] = K == Kind::kInt8 ? sx * pk.scale[jj] : pk.scale[jj];
  }
  const Call c{m, n, pk.steps, pk.tiles, scale, bias, p.y};

  // Tasks: groups of row blocks (their A tiles, packed by the task, stay in L2: up to
  // kGroupBytes) x parts of the columns. Rows split over the threads where there are enough.
  const int threads = std::max(1, p.threads);
  const int64_t mbs = (m + 31) / 32, nbs = n32 / 32, block_bytes = pk.steps * 2 * kTile;
  const int64_t max_group = std::max<int64_t>(1, kGroupBytes / block_bytes);
  int64_t groups = (mbs + max_group - 1) / max_group, n_parts = 1;
  if (mbs >= 2 * threads)
    groups = (groups + threads - 1) / threads * threads;
  else
    n_parts = std::min<int64_t>(nbs, threads);
  const int64_t group = (mbs + groups - 1) / groups, tasks = groups * n_parts;
  const int team = static_cast<int>(std::min<int64_t>(threads, tasks));
  // Each thread's A tiles, accumulators and row of codes, made here (an allocation failure
  // inside the parallel region could not be thrown).
  thread_local std::vector<ThreadBuffers> caller_bufs;  // the calling thread's
  if (caller_bufs.size() < static_cast<size_t>(team)) caller_bufs.resize(static_cast<size_t>(team));
  std::vector<Pointers> ptrs;
  for (int t = 0; t < team; ++t) {
    ThreadBuffers& tb = caller_bufs[static_cast<size_t>(t)];
    ptrs.push_back({tb.a.get<uint8_t>(static_cast<size_t>(group * block_bytes)),
                    tb.acc.get<uint8_t>(static_cast<size_t>(group * kPanel * 4096)),
                    tb.row.get<int8_t>(static_cast<size_t>(pk.steps * 64))});
  }
#pragma omp parallel num_threads(team) if (team > 1)
  {
    const int t = omp_get_thread_num(), nt = omp_get_num_threads();
    const Pointers& tp = ptrs[static_cast<size_t>(t)];
    uint8_t* a = tp.a;
    uint8_t* cacc = tp.acc;
    int64_t packed_group = -1;
    amx_begin();
    for (int64_t task = tasks * t / nt; task < tasks * (t + 1) / nt; ++task) {
      const int64_t g = task / n_parts, part = task % n_parts;
      const int64_t mb0 = mbs * g / groups, mb1 = mbs * (g + 1) / groups;
      if (mb0 == mb1) continue;
      if (g != packed_group) {
        if constexpr (K == Kind::kInt8)
          pack_x_int8(p.x, m, k, pk.steps, sx, mb0 * 32, mb1 * 32, a, tp.row);
        else
          pack_x_bf16(p.x, m, k, pk.steps, mb0 * 32, mb1 * 32, a);
        packed_group = g;
      }
      run_blocks<K>(c, a, mb0, mb1, nbs * part / n_parts, nbs * (part + 1) / n_parts, cacc);
    }
    amx_end();
  }
}

template <Format F>
constexpr const char* kName = F == Format::kBf16      ? "gemm_bf16__amx"
                              : F == Format::kInt8    ? "gemm_int8__amx"
                              : F == Format::kFp8E4M3 ? "gemm_fp8e4m3__amx"
                                                      : "gemm_fp8e5m2__amx";

template <Format F>
void run(const MatmulProblem& p) {
  run_gemm<kind_of(F)>(p, kName<F>);
}

template <Format F>
bool applies(Format f, int64_t m, int64_t, int64_t k) {
  return f == F && m >= 2 && (F != Format::kInt8 || k <= kMaxInt8K);
}

bool avx512(const CpuFeatures& f) { return f.avx512f && f.avx512bw && f.avx512vl && f.avx512dq; }
bool has_bf16(const CpuFeatures& f) {
  return avx512(f) && f.avx512_bf16 && f.fma && f.amx_tile && f.amx_bf16 && amx_permitted();
}
bool has_int8(const CpuFeatures& f) {
  return avx512(f) && f.fma && f.amx_tile && f.amx_int8 && amx_permitted();
}

constexpr MatmulKernel kKernels[] = {
    {kName<Format::kBf16>, has_bf16, applies<Format::kBf16>, run<Format::kBf16>},
    {kName<Format::kInt8>, has_int8, applies<Format::kInt8>, run<Format::kInt8>},
    {kName<Format::kFp8E4M3>, has_bf16, applies<Format::kFp8E4M3>, run<Format::kFp8E4M3>},
    {kName<Format::kFp8E5M2>, has_bf16, applies<Format::kFp8E5M2>, run<Format::kFp8E5M2>},
};

}  // namespace

std::span<const MatmulKernel> amx_matmul_kernels() { return kKernels; }

}  // namespace dynaprec::cpu
