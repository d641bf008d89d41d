// libFuzzer target for model loading (scripts/fuzz.sh 60 onnx): onnx_import and the executor's
// compilation (constant folding runs ops on the model's constants) must succeed or throw
// dynaprec::Error; anything else (another exception, a crash, a sanitizer report) is a finding.
#include <cstddef>
#include <cstdint>
#include <span>

#include "dynaprec/error.h"
#include "dynaprec/executor.h"
#include "dynaprec/onnx_import.h"
#include "exec/op_table.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  try {
    const dynaprec::Model m =
        dynaprec::onnx_import(std::span<const uint8_t>(data, size), "fuzz.onnx");
    if (dynaprec::exec::unsupported_nodes(m.graph).empty()) dynaprec::Executor e(m);
  } catch (const dynaprec::Error&) {
  }
  return 0;
}
