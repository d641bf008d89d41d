// libFuzzer target for the .npy reader (scripts/fuzz.sh builds and runs it).
//
// npy_parse must either return a tensor or throw dynaprec::Error. Any other exception escapes
// and aborts (a finding), as does any sanitizer report. A parsed tensor must also survive
// serialize -> parse unchanged, and serializing that again must give the same bytes.
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <span>
#include <vector>

#include "dynaprec/error.h"
#include "dynaprec/npy.h"
#include "dynaprec/tensor.h"

namespace {

bool same(const dynaprec::Tensor& a, const dynaprec::Tensor& b) {
  if (a.shape() != b.shape() || a.dtype() != b.dtype() || a.nbytes() != b.nbytes()) return false;
  return a.nbytes() == 0 || std::memcmp(a.data(), b.data(), a.nbytes()) == 0;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  dynaprec::Tensor t;
  try {
    t = dynaprec::npy_parse(std::span<const uint8_t>(data, size), "fuzz.npy");
  } catch (const dynaprec::Error&) {
    return 0;  // a refusal is the expected outcome for most inputs
  }
  // From here on nothing may throw: whatever npy_parse accepts, npy_serialize must write.
  const std::vector<uint8_t> bytes = dynaprec::npy_serialize(t);
  const dynaprec::Tensor back = dynaprec::npy_parse(bytes, "roundtrip.npy");
  if (!same(t, back)) __builtin_trap();
  if (dynaprec::npy_serialize(back) != bytes) __builtin_trap();
  return 0;
}
