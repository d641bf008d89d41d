// The conv activations of apply_activation (include/dynaprec/conv.h) on a vector, per Highway
// target, lane by lane bit for bit: std::max(a, b) is a < b ? b : a and std::min(a, b) is
// b < a ? b : a (compare + select, so that NaN and ±0 follow the scalar code); sigmoid's
// activation_exp step by step (mul and add, never fused). Included by the Highway kernels
// that apply an activation in registers (ops_hwy.cc, dwconv_hwy.cc) after
// hwy/foreach_target.h, once per target.
#if defined(DYNAPREC_ACTIVATION_HWY_INL_H_) == defined(HWY_TARGET_TOGGLE)
#ifdef DYNAPREC_ACTIVATION_HWY_INL_H_
#undef DYNAPREC_ACTIVATION_HWY_INL_H_
#else
#define DYNAPREC_ACTIVATION_HWY_INL_H_
#endif

#include <hwy/highway.h>

#include "dynaprec/conv.h"

HWY_BEFORE_NAMESPACE();
namespace dynaprec::cpu::HWY_NAMESPACE {

// activation_exp (conv.h) on a vector, operation for operation.
template <class D>
HWY_INLINE hwy::HWY_NAMESPACE::Vec<D> ActivationExp(D d, hwy::HWY_NAMESPACE::Vec<D> x) {
  namespace hn = hwy::HWY_NAMESPACE;
  using V = hn::Vec<D>;
  const hn::RebindToSigned<D> di;
  const V lo = hn::Set(d, -87.0f), hi = hn::Set(d, 88.0f);
  const V xc = hn::IfThenElse(hn::Lt(x, lo), lo, hn::IfThenElse(hn::Lt(hi, x), hi, x));
  const V n = hn::Floor(hn::Add(hn::Mul(xc, hn::Set(d, 1.44269504088896341f)), hn::Set(d, 0.5f)));
  V r = hn::Sub(xc, hn::Mul(n, hn::Set(d, 0.693359375f)));
  r = hn::Sub(r, hn::Mul(n, hn::Set(d, -2.12194440e-4f)));
  V p = hn::Set(d, 1.9875691500e-4f);
  p = hn::Add(hn::Mul(p, r), hn::Set(d, 1.3981999507e-3f));
  p = hn::Add(hn::Mul(p, r), hn::Set(d, 8.3334519073e-3f));
  p = hn::Add(hn::Mul(p, r), hn::Set(d, 4.1665795894e-2f));
  p = hn::Add(hn::Mul(p, r), hn::Set(d, 1.6666665459e-1f));
  p = hn::Add(hn::Mul(p, r), hn::Set(d, 5.0000001201e-1f));
  p = hn::Mul(p, hn::Mul(r, r));
  p = hn::Add(p, r);
  p = hn::Add(p, hn::Set(d, 1.0f));
  const auto e = hn::ShiftLeft<23>(hn::Add(hn::ConvertTo(di, n), hn::Set(di, 127)));
  V y = hn::Mul(p, hn::BitCast(d, e));
  y = hn::IfThenElse(hn::Lt(x, lo), hn::Zero(d), y);
  y = hn::IfThenElse(hn::Lt(hi, x), hn::Set(d, std::numeric_limits<float>::infinity()), y);
  return hn::IfThenElse(hn::IsNaN(x), x, y);
}

// An activation, then the optional scalar affine, as vectors.
template <class D>
struct VecActivation {
  using V = hwy::HWY_NAMESPACE::Vec<D>;
  Activation act = Activation::kNone;
  bool affine = false;
  V zero, one, three, six, lo, hi, scale, shift;
  D d;

  VecActivation(D d, Activation a, float clip_min, float clip_max, bool post_affine,
                float post_scale, float post_shift)
      : act(a),
        affine(post_affine),
        zero(hwy::HWY_NAMESPACE::Zero(d)),
        one(hwy::HWY_NAMESPACE::Set(d, 1.0f)),
        three(hwy::HWY_NAMESPACE::Set(d, 3.0f)),
        six(hwy::HWY_NAMESPACE::Set(d, 6.0f)),
        lo(hwy::HWY_NAMESPACE::Set(d, clip_min)),
        hi(hwy::HWY_NAMESPACE::Set(d, clip_max)),
        scale(hwy::HWY_NAMESPACE::Set(d, post_scale)),
        shift(hwy::HWY_NAMESPACE::Set(d, post_shift)),
        d(d) {}

  HWY_INLINE V operator()(V v) const {
    namespace hn = hwy::HWY_NAMESPACE;
    switch (act) {
      case Activation::kRelu:
        v = hn::IfThenElse(hn::Lt(v, zero), zero, v);
        break;
      case Activation::kClip: {
        const V t = hn::IfThenElse(hn::Lt(v, lo), lo, v);
        v = hn::IfThenElse(hn::Lt(hi, t), hi, t);
        break;
      }
      case Activation::kSigmoid:
        v = hn::Div(one, hn::Add(one, ActivationExp(d, hn::Neg(v))));
        break;
      case Activation::kHardSwish: {
        V t = hn::Add(v, three);
        t = hn::IfThenElse(hn::Lt(t, zero), zero, t);
        t = hn::IfThenElse(hn::Lt(six, t), six, t);
        v = hn::Div(hn::Mul(v, t), six);
        break;
      }
      default:
        break;
    }
    if (affine) v = hn::Add(hn::Mul(v, scale), shift);
    return v;
  }
};

}  // namespace dynaprec::cpu::HWY_NAMESPACE
HWY_AFTER_NAMESPACE();

#endif  // DYNAPREC_ACTIVATION_HWY_INL_H_
