// libFuzzer target for model loading (scripts/fuzz.sh 60 onnx): onnx_import must return a model
// or throw dynaprec::Error; anything else (another exception, a crash, a sanitizer report) is a
// finding.
#include <cstddef>
#include <cstdint>
#include <span>

#include "dynaprec/error.h"
#include "dynaprec/onnx_import.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  try {
    const dynaprec::Model m =
        dynaprec::onnx_import(std::span<const uint8_t>(data, size), "fuzz.onnx");
    (void)dynaprec::onnx_unsupported_nodes(m);
  } catch (const dynaprec::Error&) {
  }
  return 0;
}
