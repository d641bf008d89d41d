// Non-overlapping ConvTranspose rows (convt_hwy.h). Blocks of up to 4 output channels by 4
// vectors of output columns are held in registers while the input channels run: per input
// channel, 4 loads of the input row (each upsampled to output columns by one lane permute) and,
// with one lane phase per block, one load of each channel's weight pattern feed 16 fused
// multiply-adds.
#undef HWY_TARGET_INCLUDE
#define HWY_TARGET_INCLUDE "kernels/cpu/convt_hwy.cc"
#include <hwy/foreach_target.h>  // IWYU pragma: keep
// clang-format off
#include <hwy/highway.h>
// clang-format on

#include <algorithm>
#include <cstdint>

#include "kernels/cpu/activation_hwy-inl.h"
#include "kernels/cpu/convt_hwy.h"

HWY_BEFORE_NAMESPACE();
namespace dynaprec::cpu::HWY_NAMESPACE {
namespace hn = hwy::HWY_NAMESPACE;

using DF = hn::ScalableTag<float>;
// Per lane phase ph < SW: the permute that upsamples an input vector to output columns (lane j
// reads input column (ph + j) / SW), made once per call.
using Tables = decltype(hn::SetTableIndices(DF(), static_cast<const int32_t*>(nullptr)));

// R output channels (from ocl) by V vectors of columns (from ox0) of output row kh. SW is the
// stride along the row (a constant: the phase and column of each vector are a shift or a
// multiply, not a division).
template <int SW, int R, int V>
HWY_INLINE void Block(const ConvtRows& p, const Tables* tables, int64_t ocl, int64_t kh,
                      int64_t ox0) {
  const DF d;
  const auto n = static_cast<int64_t>(hn::Lanes(d));
  int64_t ph[V];
  bool one_phase = true;
  for (int v = 0; v < V; ++v) {
    ph[v] = (ox0 + v * n + p.pl) % SW;
    one_phase = one_phase && ph[v] == ph[0];
  }
  // Lane j of vector v reads input column base[v] + (ph[v] + j) / SW: the row upsampled in
  // registers.
  int64_t base[V];
  for (int v = 0; v < V; ++v) base[v] = (ox0 + v * n + p.pl) / SW;
  hn::Vec<DF> acc[R][V];
  for (int r = 0; r < R; ++r)
    for (int v = 0; v < V; ++v) acc[r][v] = hn::Zero(d);
  const int64_t wstep = SW * n;  // one input channel of a pattern
  const float* wbase[R];
  for (int r = 0; r < R; ++r) wbase[r] = p.wpat + ((ocl + r) * p.kh_n + kh) * p.cg * wstep;
  for (int64_t ci = 0; ci < p.cg; ++ci) {
    const float* xr = p.x + ci * p.x_stride;
    hn::Vec<DF> xv[V];
    for (int v = 0; v < V; ++v)
      xv[v] = hn::TableLookupLanes(hn::LoadU(d, xr + base[v]), tables[ph[v]]);
    if (one_phase) {
      for (int r = 0; r < R; ++r) {
        const auto wv = hn::LoadU(d, wbase[r] + ci * wstep + ph[0] * n);
        for (int v = 0; v < V; ++v) acc[r][v] = hn::MulAdd(xv[v], wv, acc[r][v]);
      }
    } else {
      for (int r = 0; r < R; ++r)
        for (int v = 0; v < V; ++v)
          acc[r][v] = hn::MulAdd(xv[v], hn::LoadU(d, wbase[r] + ci * wstep + ph[v] * n), acc[r][v]);
    }
  }
  const int64_t oh = p.oh0 + kh;
  for (int r = 0; r < R; ++r) {
    const auto b = hn::Set(d, p.bias ? p.bias[ocl + r] : 0.0f);
    const float* s = p.spat + ((ocl + r) * p.kh_n + kh) * wstep;
    float* yr = p.y + (ocl + r) * p.plane + oh * p.ow + ox0;
    for (int v = 0; v < V; ++v) {
      const auto out =
          hn::Add(hn::Add(hn::Zero(d), hn::Mul(acc[r][v], hn::LoadU(d, s + ph[v] * n))), b);
      const int64_t left = p.ow - ox0 - v * n;
      if (left >= n)
        hn::StoreU(out, d, yr + v * n);
      else if (left > 0)
        hn::BlendedStore(out, hn::FirstN(d, static_cast<size_t>(left)), d, yr + v * n);
    }
  }
}

template <int SW, int R>
HWY_INLINE void Channels(const ConvtRows& p, const Tables* tables, int64_t ocl, int64_t kh) {
  const auto n = static_cast<int64_t>(hn::Lanes(DF()));
  int64_t ox0 = 0;
  for (; ox0 + 3 * n < p.ow; ox0 += 4 * n) Block<SW, R, 4>(p, tables, ocl, kh, ox0);
  if (ox0 + n >= p.ow)
    Block<SW, R, 1>(p, tables, ocl, kh, ox0);
  else if (ox0 + 2 * n >= p.ow)
    Block<SW, R, 2>(p, tables, ocl, kh, ox0);
  else if (ox0 < p.ow)
    Block<SW, R, 3>(p, tables, ocl, kh, ox0);
}

template <int SW>
void RowsT(const ConvtRows& p) {
  const DF d;
  const auto n = static_cast<int64_t>(hn::Lanes(d));
  HWY_ALIGN int32_t idx[hn::MaxLanes(d)];
  Tables tables[SW];
  for (int ph = 0; ph < SW; ++ph) {
    for (int64_t j = 0; j < n; ++j) idx[j] = static_cast<int32_t>((ph + j) / SW);
    tables[ph] = hn::SetTableIndices(d, idx);
  }
  for (int64_t kh = 0; kh < p.kh_n; ++kh) {
    const int64_t oh = p.oh0 + kh;
    if (oh < 0 || oh >= p.oh_n) continue;
    int64_t ocl = 0;
    for (; ocl + 4 <= p.ocg; ocl += 4) Channels<SW, 4>(p, tables, ocl, kh);
    for (; ocl < p.ocg; ++ocl) Channels<SW, 1>(p, tables, ocl, kh);
  }
}

void ConvtRowsImpl(const ConvtRows& p) {
  switch (p.sw) {
    case 1:
      return RowsT<1>(p);
    case 2:
      return RowsT<2>(p);
    case 3:
      return RowsT<3>(p);
    default:
      return RowsT<4>(p);
  }
}

#if HWY_TARGET != HWY_SCALAR
// convt_rows_k2: R output channels by V vectors of input pixels (from iw0), all four taps of
// each at input resolution; x lanes permuted by `perm` so that the in-block interleave of the two
// column taps gives consecutive output columns.
template <int R, int V>
HWY_INLINE void Block2(const ConvtRows2& p, const Tables& perm, const VecActivation<DF>& activate,
                       int64_t ocl, int64_t iw0, hn::Vec<hn::RebindToUnsigned<DF>>& vmax) {
  const DF d;
  const hn::RebindToUnsigned<DF> du;
  const auto n = static_cast<int64_t>(hn::Lanes(d));
  hn::Vec<DF> acc[R][4][V];
  for (int r = 0; r < R; ++r)
    for (int t = 0; t < 4; ++t)
      for (int v = 0; v < V; ++v) acc[r][t][v] = hn::Zero(d);
  const float* w0 = p.w2 + ocl * p.cg * 4;
  const int64_t wstep = p.cg * 4;  // one output channel
  for (int64_t ci = 0; ci < p.cg; ++ci) {
    const float* xr = p.x + ci * p.x_stride + iw0;
    hn::Vec<DF> xv[V];
    for (int v = 0; v < V; ++v) xv[v] = hn::TableLookupLanes(hn::LoadU(d, xr + v * n), perm);
    for (int r = 0; r < R; ++r) {
      const float* wr = w0 + r * wstep + ci * 4;
      for (int t = 0; t < 4; ++t) {
        const auto wv = hn::Set(d, wr[t]);
        for (int v = 0; v < V; ++v) acc[r][t][v] = hn::MulAdd(xv[v], wv, acc[r][t][v]);
      }
    }
  }
  for (int r = 0; r < R; ++r) {
    const auto b = hn::Set(d, p.bias ? p.bias[ocl + r] : 0.0f);
    for (int kh = 0; kh < 2; ++kh) {
      const int64_t oh = p.oh0 + kh;
      if (oh < 0 || oh >= p.oh_n) continue;
      const float* s = p.s2 + (ocl + r) * 4 + kh * 2;
      const auto s0 = hn::Set(d, s[0]), s1 = hn::Set(d, s[1]);
      float* yr = p.y + (ocl + r) * p.plane + oh * p.ow;
      for (int v = 0; v < V; ++v) {
        const auto a = activate(hn::Add(hn::Add(hn::Zero(d), hn::Mul(acc[r][kh * 2][v], s0)), b));
        const auto c =
            activate(hn::Add(hn::Add(hn::Zero(d), hn::Mul(acc[r][kh * 2 + 1][v], s1)), b));
        const int64_t col = 2 * (iw0 + v * n);
        const hn::Vec<DF> halves[2] = {hn::InterleaveLower(d, a, c), hn::InterleaveUpper(d, a, c)};
        int64_t at = col;
        for (const auto& out : halves) {
          const int64_t left = p.ow - at;
          if (left >= n) {
            hn::StoreU(out, d, yr + at);
            vmax = hn::Max(vmax, hn::BitCast(du, hn::Abs(out)));
          } else if (left > 0) {
            const auto m = hn::FirstN(d, static_cast<size_t>(left));
            hn::BlendedStore(out, m, d, yr + at);
            vmax = hn::Max(vmax, hn::BitCast(du, hn::IfThenElseZero(m, hn::Abs(out))));
          }
          at += n;
        }
      }
    }
  }
}

bool ConvtRowsK2Impl(const ConvtRows2& p) {
  const DF d;
  const auto n = static_cast<int64_t>(hn::Lanes(d));
  if (n < 4 || n % 4 != 0) return false;
  // Lane 4k + j of a block holds input pixel 2k + j (j < 2) or n/2 + 2k + j - 2 (j >= 2): the
  // block-wise InterleaveLower then yields output columns [0, n), InterleaveUpper [n, 2n).
  HWY_ALIGN int32_t idx[hn::MaxLanes(d)];
  for (int64_t l = 0; l < n; ++l) {
    const int64_t k = l / 4, j = l % 4;
    idx[l] = static_cast<int32_t>(j < 2 ? 2 * k + j : n / 2 + 2 * k + j - 2);
  }
  const Tables perm = hn::SetTableIndices(d, idx);
  const VecActivation<DF> activate(d, p.act, p.clip_min, p.clip_max, false, 1.0f, 0.0f);
  // max |y| as the integers of the float bits (NaN above +inf, as the scalar amax orders them).
  const hn::RebindToUnsigned<DF> du;
  auto vmax = hn::Zero(du);
  int64_t ocl = 0;
  for (; ocl + 6 <= p.ocg; ocl += 6)
    for (int64_t iw0 = 0; iw0 < p.w; iw0 += n) Block2<6, 1>(p, perm, activate, ocl, iw0, vmax);
  for (; ocl < p.ocg; ++ocl)
    for (int64_t iw0 = 0; iw0 < p.w; iw0 += 4 * n) Block2<1, 4>(p, perm, activate, ocl, iw0, vmax);
  if (p.amax_bits) {
    HWY_ALIGN uint32_t lanes[hn::MaxLanes(du)];
    hn::Store(vmax, du, lanes);
    for (int64_t i = 0; i < n; ++i) *p.amax_bits = std::max(*p.amax_bits, lanes[i]);
  }
  return true;
}
#else
bool ConvtRowsK2Impl(const ConvtRows2&) { return false; }  // one lane: no interleave
#endif

int64_t ConvtLanesImpl() { return static_cast<int64_t>(hn::Lanes(hn::ScalableTag<float>())); }

}  // namespace dynaprec::cpu::HWY_NAMESPACE
HWY_AFTER_NAMESPACE();

#if HWY_ONCE
namespace dynaprec::cpu {
HWY_EXPORT(ConvtRowsImpl);
HWY_EXPORT(ConvtLanesImpl);
HWY_EXPORT(ConvtRowsK2Impl);

void convt_rows(const ConvtRows& p) { HWY_DYNAMIC_DISPATCH(ConvtRowsImpl)(p); }
bool convt_rows_k2(const ConvtRows2& p) { return HWY_DYNAMIC_DISPATCH(ConvtRowsK2Impl)(p); }
int64_t convt_lanes() { return HWY_DYNAMIC_DISPATCH(ConvtLanesImpl)(); }

}  // namespace dynaprec::cpu
#endif
