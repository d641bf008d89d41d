// The CPU matmul kernel list and dispatch (see matmul_kernels.h).
#include <omp.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <optional>
#include <vector>

#include "dynaprec/convert.h"
#include "dynaprec/error.h"
#include "dynaprec/thread_pool.h"
#include "kernels/cpu/gemm_amx.h"
#include "kernels/cpu/gemv_hwy.h"
#include "kernels/cpu/matmul_dnnl.h"
#include "kernels/cpu/matmul_kernels.h"

namespace dynaprec {
namespace cpu {
namespace {

bool any_cpu(const CpuFeatures&) { return true; }
bool has_vnni(const CpuFeatures& f) { return f.avx512_vnni && f.avx512bw && f.f16c; }
bool has_fp8_avx512(const CpuFeatures& f) { return has_vnni(f) && gemv_fp8_avx512_supported(); }
bool is_fp8(Format f) { return f == Format::kFp8E4M3 || f == Format::kFp8E5M2; }

// Runs fn(j0, j1) over rows [0, n) on `threads` threads: one contiguous range per thread, which
// it takes from the front in blocks of 32 rows (a multiple of the kernels' 8 rows per pass); a
// thread that runs out takes blocks from the back of another's range. Each thread thus reads W
// sequentially, which the kernels' prefetch (the same place in the next pass's rows) relies on:
// many small tasks handed out in turn start a cold pass each (fp8 GEMV 8192²: 88% of the triad
// instead of 93%), and a thread that starts late is covered. The threads are OpenMP's, as for
// the oneDNN kernels: they spin a while after a region, where the pool's sleep on a condition
// variable and take ~40 µs to wake (GEMV 8192² int4/fp8: 3-5% slower on the pool).
template <class Fn>
void for_row_chunks(int64_t n, int threads, Fn&& fn) {
  const auto t = static_cast<size_t>(
      std::max(1, std::min(threads, dynaprec::ThreadPool::default_pool().threads())));
  const auto rows = static_cast<size_t>(n);
  constexpr size_t kBlock = 32;
  const size_t blocks = (rows + kBlock - 1) / kBlock;
  if (t == 1 || blocks < 2) {
    fn(size_t{0}, rows);
    return;
  }
  // Range i: blocks [front, back), packed in one word so that both ends move atomically.
  std::vector<std::atomic<uint64_t>> ranges(t);
  for (size_t i = 0; i < t; ++i)
    ranges[i] = (blocks * i / t) | (uint64_t{blocks * (i + 1) / t} << 32);
  auto take = [&](size_t i, bool from_front) -> std::optional<size_t> {
    uint64_t r = ranges[i].load();
    for (;;) {
      const uint64_t front = r & 0xFFFFFFFF, back = r >> 32;
      if (front >= back) return std::nullopt;
      const uint64_t next = from_front ? r + 1 : r - (uint64_t{1} << 32);
      if (ranges[i].compare_exchange_weak(r, next)) return from_front ? front : back - 1;
    }
  };
  auto run = [&](size_t b) { fn(b * kBlock, std::min(rows, (b + 1) * kBlock)); };
  // A team smaller than t (nested, or capped) leaves ranges to be taken from the back.
#pragma omp parallel num_threads(static_cast <int>(t))
  {
    const auto i = static_cast<size_t>(omp_get_thread_num());
    while (const auto b = take(i, true)) run(*b);
    for (size_t other = 1; other < t; ++other)
      while (const auto b = take((i + other) % t, false)) run(*b);
  }
}

// X as the float kernels use it (matmul.h): rounded to bf16/fp16, or to bf16 for fp8.
std::vector<float> prepare_float_x(const float* x, size_t count, Format f) {
  std::vector<float> xr(x, x + count);
  const Format act = (f == Format::kFp8E4M3 || f == Format::kFp8E5M2) ? Format::kBf16 : f;
  if (act == Format::kFp32) return xr;
  std::vector<uint16_t> codes(count);
  encode_float_array(act, x, codes.data(), count);
  decode_float_array(act, codes.data(), xr.data(), count);
  return xr;
}

// One matmul row (m = 1) for every format; the AVX-512 GEMV kernels (int8/int4 with `vnni`,
// fp8 with `fp8_avx512`) or portable ones.
// `sx`: int8/int4 activation scale of the whole call's X (matmul.h: one scale per call).
void gemv_row(const MatmulProblem& p, const float* x, float* y, bool vnni, float sx,
              bool fp8_avx512 = false) {
  const MatmulWeights& w = *p.w;
  const auto k = static_cast<size_t>(w.k);
  const Format f = w.format;
  const QuantParams& qp = w.data.quant();
  if (f == Format::kInt8 || f == Format::kInt4) {
    std::vector<int8_t> xq(k);
    int8_encode_array(x, xq.data(), k, sx);
    if (f == Format::kInt8) {
      std::vector<int32_t> acc(static_cast<size_t>(w.n));
      const Int8VnniInput in = vnni ? gemv_int8_prepare_vnni(xq.data(), k) : Int8VnniInput{};
      for_row_chunks(w.n, p.threads, [&](size_t j0, size_t j1) {
        if (vnni)
          gemv_int8_rows_vnni(in, w.data.data_as<int8_t>(), k, j0, j1, acc.data());
        else
          gemv_int8_rows(xq.data(), w.data.data_as<int8_t>(), k, j0, j1, acc.data());
      });
      for (int64_t j = 0; j < w.n; ++j)
        y[j] = static_cast<float>(acc[static_cast<size_t>(j)]) * (sx * qp.scales[j]) +
               (p.bias ? p.bias[j] : 0.0f);
      return;
    }
    const Int4VnniInput in = vnni ? gemv_int4_prepare_vnni(xq.data(), k) : Int4VnniInput{};
    for_row_chunks(w.n, p.threads, [&](size_t j0, size_t j1) {
      if (vnni)
        gemv_int4_rows_vnni(in, xq.data(), w.data.data_as<uint8_t>(), qp.scales_f16.data(), k, j0,
                            j1, y);
      else
        gemv_int4_rows(xq.data(), w.data.data_as<uint8_t>(), qp.scales_f16.data(), k, j0, j1, y);
    });
    for (int64_t j = 0; j < w.n; ++j) y[j] = y[j] * sx + (p.bias ? p.bias[j] : 0.0f);
    return;
  }
  const std::vector<float> xr = prepare_float_x(x, k, f);
  if (fp8_avx512 && is_fp8(f)) {
    const Fp8Avx512Input in = gemv_fp8_prepare_avx512(xr.data(), k);
    for_row_chunks(w.n, p.threads, [&](size_t j0, size_t j1) {
      gemv_fp8_rows_avx512(f, in, w.data.data_as<uint8_t>(), k, j0, j1, y);
    });
  } else {
    for_row_chunks(w.n, p.threads, [&](size_t j0, size_t j1) {
      gemv_float_rows(f, xr.data(), w.data.data(), k, j0, j1, y);
    });
  }
  const float sw = is_fp8(f) ? qp.scales.at(0) : 1.0f;
  for (int64_t j = 0; j < w.n; ++j) y[j] = y[j] * sw + (p.bias ? p.bias[j] : 0.0f);
}

bool is_int(Format f) { return f == Format::kInt8 || f == Format::kInt4; }

float activation_scale(const MatmulProblem& p) {
  return is_int(p.w->format) ? matmul_activation_scale(p.x, static_cast<size_t>(p.m * p.w->k))
                             : 1.0f;
}

void run_gemv_hwy(const MatmulProblem& p) { gemv_row(p, p.x, p.y, false, activation_scale(p)); }
void run_gemv_vnni(const MatmulProblem& p) { gemv_row(p, p.x, p.y, true, activation_scale(p)); }
void run_gemv_fp8_avx512(const MatmulProblem& p) { gemv_row(p, p.x, p.y, false, 1.0f, true); }

// M > 1 without a GEMM kernel for the format: one GEMV per row of X (reads W M times).
void run_gemv_rows(const MatmulProblem& p) {
  const bool vnni = has_vnni(cpu_features()) && is_int(p.w->format);
  const float sx = activation_scale(p);
  for (int64_t i = 0; i < p.m; ++i) gemv_row(p, p.x + i * p.w->k, p.y + i * p.w->n, vnni, sx);
}

// int4 GEMM on VNNI: X quantized once (one scale), prepared per row; X rows in blocks of 64
// (their prepared bytes stay in L2) against all of W, W's rows split over the threads.
void run_gemm_int4_vnni(const MatmulProblem& p) {
  const MatmulWeights& w = *p.w;
  const auto k = static_cast<size_t>(w.k), n = static_cast<size_t>(w.n);
  const auto m = static_cast<size_t>(p.m);
  const float sx = activation_scale(p);
  std::vector<int8_t> xq(m * k);
  int8_encode_array(p.x, xq.data(), m * k, sx);
  std::vector<Int4VnniInput> xs(m);
  for (size_t i = 0; i < m; ++i) xs[i] = gemv_int4_prepare_vnni(xq.data() + i * k, k);
  const QuantParams& qp = w.data.quant();
  constexpr size_t kRowsPerBlock = 64;
  for (size_t i0 = 0; i0 < m; i0 += kRowsPerBlock) {
    const size_t i1 = std::min(m, i0 + kRowsPerBlock);
    for_row_chunks(w.n, p.threads, [&](size_t j0, size_t j1) {
      gemm_int4_vnni(xs, i0, i1, w.data.data_as<uint8_t>(), qp.scales_f16.data(), k, j0, j1, n,
                     p.y);
    });
  }
  for (size_t i = 0; i < m; ++i)
    for (size_t j = 0; j < n; ++j)
      p.y[i * n + j] = p.y[i * n + j] * sx + (p.bias ? p.bias[j] : 0.0f);
}

bool gemm_int4(Format f, int64_t m, int64_t, int64_t) { return m > 1 && f == Format::kInt4; }

void run_ref(const MatmulProblem& p) { ref::matmul(p.x, p.m, *p.w, p.bias, p.y); }

bool gemv_any(Format, int64_t m, int64_t, int64_t) { return m == 1; }
bool gemv_int(Format f, int64_t m, int64_t, int64_t) {
  return m == 1 && (f == Format::kInt8 || f == Format::kInt4);
}
bool gemv_fp8(Format f, int64_t m, int64_t, int64_t) { return m == 1 && is_fp8(f); }
bool rows_any(Format, int64_t m, int64_t, int64_t) { return m > 1; }
bool always(Format, int64_t, int64_t, int64_t) { return true; }

const std::vector<MatmulKernel>& kernel_list() {
  static const std::vector<MatmulKernel> list = [] {
    std::vector<MatmulKernel> v;
    v.push_back({"gemv_int__vnni", has_vnni, gemv_int, run_gemv_vnni});
    v.push_back({"gemv_fp8__avx512", has_fp8_avx512, gemv_fp8, run_gemv_fp8_avx512});
    v.push_back({"gemv__hwy", any_cpu, gemv_any, run_gemv_hwy});
    for (const MatmulKernel& k : amx_matmul_kernels()) v.push_back(k);
    for (const MatmulKernel& k : dnnl_matmul_kernels()) v.push_back(k);
    v.push_back({"gemm_int4__vnni", has_vnni, gemm_int4, run_gemm_int4_vnni});
    v.push_back({"gemm__gemv_rows", any_cpu, rows_any, run_gemv_rows});
    v.push_back({"matmul__ref", any_cpu, always, run_ref});
    return v;
  }();
  return list;
}

}  // namespace

std::span<const MatmulKernel> matmul_kernels() { return kernel_list(); }

const MatmulKernel& matmul_select(Format f, int64_t m, int64_t n, int64_t k) {
  const CpuFeatures& feats = cpu_features();
  for (const MatmulKernel& kern : kernel_list())
    if (kern.available(feats) && kern.applies(f, m, n, k)) return kern;
  return kernel_list().back();
}

}  // namespace cpu

void matmul(const float* x, int64_t m, const MatmulWeights& w, const float* bias, float* y,
            int threads) {
  if (m < 0 || w.k <= 0 || w.n <= 0)
    throw Error(ErrorKind::kInvalidInput, "matmul: bad shape M=" + std::to_string(m) + " N=" +
                                              std::to_string(w.n) + " K=" + std::to_string(w.k));
  if (m == 0) return;
  cpu::MatmulProblem p;
  p.x = x;
  p.m = m;
  p.w = &w;
  p.bias = bias;
  p.y = y;
  p.threads = threads > 0 ? threads : ThreadPool::default_pool().threads();
  cpu::matmul_select(w.format, m, w.n, w.k).run(p);
}

}  // namespace dynaprec
