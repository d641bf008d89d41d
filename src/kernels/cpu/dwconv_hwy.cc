// Depthwise convolution, one channel plane at a time (dwconv_hwy.h). Output rows are held in
// registers, two rows by up to four vectors at a time, while the kh·kw taps run over the padded
// input rows: the input plane and the row stay in L1, and nothing but the output is written
// (the activation applied on the way, except sigmoid). Stride 2 along the
// row takes the even lanes of two loads. The taps are summed in the reference's order with
// fused multiply-adds (twice the throughput of separate ones, which this compute-bound kernel
// needs): floats differ from the reference by FMA rounding only; int8's integer-valued sums are
// exact either way.
#undef HWY_TARGET_INCLUDE
#define HWY_TARGET_INCLUDE "kernels/cpu/dwconv_hwy.cc"
#include <hwy/foreach_target.h>  // IWYU pragma: keep
// clang-format off
#include <hwy/highway.h>
// clang-format on

#include <algorithm>
#include <optional>

#include "kernels/cpu/activation_hwy-inl.h"
#include "kernels/cpu/dwconv_hwy.h"

HWY_BEFORE_NAMESPACE();
namespace dynaprec::cpu::HWY_NAMESPACE {
namespace hn = hwy::HWY_NAMESPACE;
// The activation the blocks apply before they store (null: none; made once per plane).
using Act = VecActivation<hn::ScalableTag<float>>;

// N lanes of the row starting at input column c (stride sw along the row).
template <int SW, class D>
HWY_INLINE hn::Vec<D> LoadCols(D d, const float* row, int64_t c) {
#if HWY_TARGET == HWY_SCALAR  // one lane: no stride to undo
  return hn::LoadU(d, row + c);
#else
  if constexpr (SW == 1) {
    return hn::LoadU(d, row + c);
  } else {
    const auto a = hn::LoadU(d, row + c), b = hn::LoadU(d, row + c + hn::Lanes(d));
    return hn::ConcatEven(d, b, a);
  }
#endif
}

// R output rows by V vectors of them, starting at row oh and column ow: R·V independent
// accumulator chains (a chain of kh·kw dependent FMAs alone would wait on FMA latency). The
// row's last vector may be partial: it is computed whole (its loads stay in the slack) and
// stored under a mask.
template <int SW, int R, int V>
HWY_INLINE void Block(const DwPlane& p, const Act* act, int64_t oh, int64_t ow) {
  const hn::ScalableTag<float> d;
  const int64_t n = static_cast<int64_t>(hn::Lanes(d));
  hn::Vec<decltype(d)> acc[R][V];
#pragma GCC unroll 4
  for (int r = 0; r < R; ++r)
#pragma GCC unroll 4
    for (int v = 0; v < V; ++v) acc[r][v] = hn::Zero(d);
  if (p.sh == 1 && p.dh == 1) {
    // Input row oh + q serves output row oh + r through tap row q - r: each input vector is
    // loaded once for the R output rows ((R + kh - 1)·kw·V loads instead of R·kh·kw·V). Each
    // output still takes its taps in the reference's order (rows i ascending, then columns j).
    for (int64_t q = 0; q < R + p.kh - 1; ++q) {
      const float* row = p.xp + (oh + q) * p.xp_stride;
      for (int64_t j = 0; j < p.kw; ++j) {
        const int64_t c = ow * SW + j * p.dw;
        hn::Vec<decltype(d)> x[V];
#pragma GCC unroll 4
        for (int v = 0; v < V; ++v) x[v] = LoadCols<SW>(d, row, c + v * n * SW);
#pragma GCC unroll 4
        for (int r = 0; r < R; ++r) {
          const int64_t i = q - r;
          if (i < 0 || i >= p.kh) continue;
          const auto wv = hn::Set(d, p.w[i * p.kw + j]);
#pragma GCC unroll 4
          for (int v = 0; v < V; ++v) acc[r][v] = hn::MulAdd(x[v], wv, acc[r][v]);
        }
      }
    }
  } else {
    for (int64_t i = 0; i < p.kh; ++i) {
      const float* rows[R];
#pragma GCC unroll 4
      for (int r = 0; r < R; ++r) rows[r] = p.xp + ((oh + r) * p.sh + i * p.dh) * p.xp_stride;
      for (int64_t j = 0; j < p.kw; ++j) {
        const auto wv = hn::Set(d, p.w[i * p.kw + j]);
        const int64_t c = ow * SW + j * p.dw;
#pragma GCC unroll 4
        for (int r = 0; r < R; ++r)
#pragma GCC unroll 4
          for (int v = 0; v < V; ++v)
            acc[r][v] = hn::MulAdd(LoadCols<SW>(d, rows[r], c + v * n * SW), wv, acc[r][v]);
      }
    }
  }
  const auto vscale = hn::Set(d, p.scale), vbias = hn::Set(d, p.bias);
#pragma GCC unroll 4
  for (int r = 0; r < R; ++r) {
    float* yr = p.y + (oh + r) * p.ow_n + ow;
    for (int v = 0; v < V; ++v) {
      auto out = hn::Add(hn::Mul(acc[r][v], vscale), vbias);
      if (act) out = (*act)(out);
      const int64_t left = p.ow_n - ow - v * n;
      if (left >= n)
        hn::StoreU(out, d, yr + v * n);
      else
        hn::BlendedStore(out, hn::FirstN(d, static_cast<size_t>(left)), d, yr + v * n);
    }
  }
}

template <int SW, int R>
HWY_INLINE void Rows(const DwPlane& p, const Act* act, int64_t oh) {
  const int64_t n = static_cast<int64_t>(hn::Lanes(hn::ScalableTag<float>()));
  const int64_t vectors = (p.ow_n + n - 1) / n;
  int64_t v = 0;
  // Blocks of four vectors, but never a last block of one (five vectors: three and two).
  for (; vectors - v > 4; v += vectors - v == 5 ? 3 : 4) {
    if (vectors - v == 5)
      Block<SW, R, 3>(p, act, oh, v * n);
    else
      Block<SW, R, 4>(p, act, oh, v * n);
  }
  switch (vectors - v) {
    case 4:
      Block<SW, R, 4>(p, act, oh, v * n);
      break;
    case 3:
      Block<SW, R, 3>(p, act, oh, v * n);
      break;
    case 2:
      Block<SW, R, 2>(p, act, oh, v * n);
      break;
    case 1:
      Block<SW, R, 1>(p, act, oh, v * n);
      break;
    default:
      break;
  }
}

// Output rows four at a time where the input rows are shared (stride and dilation 1 along H) and
// the target has 32 vector registers (16 accumulators, 4 inputs), else two at a time.
template <int SW>
void DwPlaneT(const DwPlane& p, const Act* act) {
  int64_t oh = 0;
#if HWY_TARGET <= HWY_AVX3
  if (p.sh == 1 && p.dh == 1)
    for (; oh + 4 <= p.oh_n; oh += 4) Rows<SW, 4>(p, act, oh);
#endif
  for (; oh + 2 <= p.oh_n; oh += 2) Rows<SW, 2>(p, act, oh);
  if (oh < p.oh_n) Rows<SW, 1>(p, act, oh);
}

void DwPlaneImpl(const DwPlane& p) {
  std::optional<Act> act;
  if (p.act && dw_plane_activates(*p.act))
    act.emplace(hn::ScalableTag<float>(), p.act->activation, p.act->clip_min, p.act->clip_max,
                p.act->post_affine, p.act->post_scale, p.act->post_shift);
  const Act* a = act ? &*act : nullptr;
  if (p.sw == 1)
    DwPlaneT<1>(p, a);
  else
    DwPlaneT<2>(p, a);
}

int64_t DwLanesImpl() { return static_cast<int64_t>(hn::Lanes(hn::ScalableTag<float>())); }

}  // namespace dynaprec::cpu::HWY_NAMESPACE
HWY_AFTER_NAMESPACE();

#if HWY_ONCE
namespace dynaprec::cpu {
HWY_EXPORT(DwPlaneImpl);
HWY_EXPORT(DwLanesImpl);

void dw_plane(const DwPlane& p) { HWY_DYNAMIC_DISPATCH(DwPlaneImpl)(p); }
int64_t dw_lanes() { return HWY_DYNAMIC_DISPATCH(DwLanesImpl)(); }

}  // namespace dynaprec::cpu
#endif
