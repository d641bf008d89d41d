// The conv activations of apply_activation (include/dynaprec/conv.h) on a vector, per Highway
// target, lane by lane bit for bit: std::max(a, b) is a < b ? b : a and std::min(a, b) is
// b < a ? b : a (compare + select, so that NaN and ±0 follow the scalar code). Sigmoid is not
// here: its exp stays the scalar libm call (activation_row_f32). Included by the Highway kernels
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

// An activation other than sigmoid, then the optional scalar affine, as vectors.
template <class D>
struct VecActivation {
  using V = hwy::HWY_NAMESPACE::Vec<D>;
  Activation act = Activation::kNone;
  bool affine = false;
  V zero, three, six, lo, hi, scale, shift;

  VecActivation(D d, Activation a, float clip_min, float clip_max, bool post_affine,
                float post_scale, float post_shift)
      : act(a),
        affine(post_affine),
        zero(hwy::HWY_NAMESPACE::Zero(d)),
        three(hwy::HWY_NAMESPACE::Set(d, 3.0f)),
        six(hwy::HWY_NAMESPACE::Set(d, 6.0f)),
        lo(hwy::HWY_NAMESPACE::Set(d, clip_min)),
        hi(hwy::HWY_NAMESPACE::Set(d, clip_max)),
        scale(hwy::HWY_NAMESPACE::Set(d, post_scale)),
        shift(hwy::HWY_NAMESPACE::Set(d, post_shift)) {}

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
