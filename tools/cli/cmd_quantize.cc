// dynaprec quantize --format F [--axis A] IN.npy OUT.npy: the float32 round trip of IN through
// format F, exactly as CONTRACT §1 defines.
#include <optional>
#include <string>

#include "cli.h"
#include "dynaprec/error.h"
#include "dynaprec/formats.h"
#include "dynaprec/npy.h"
#include "dynaprec/quantize.h"

namespace dynaprec::cli {

Format parse_format(const std::string& name) {
  if (auto f = format_from_name(name)) return *f;
  throw Error(ErrorKind::kUsage,
              "unknown format '" + name + "' (known: " + std::string(format_names_list()) + ")");
}

void register_quantize(CLI::App& app) {
  struct Opts {
    std::string format, in, out;
    std::optional<int> axis;
  };
  auto o = std::make_shared<Opts>();
  auto* cmd = app.add_subcommand(
      "quantize", "write the float32 round trip (quantize, dequantize) of IN through a format");
  cmd->add_option("--format", o->format, "fp32, bf16, fp16, fp8e4m3, fp8e5m2, int8, int4")
      ->required();
  cmd->add_option("--axis", o->axis,
                  "int8: per-channel axis (negative counts from the end); default per tensor");
  cmd->add_option("IN", o->in, "input .npy (float32)")->required();
  cmd->add_option("OUT", o->out, "output .npy (float32)")->required();
  cmd->callback([o] {
    const Format f = parse_format(o->format);
    const Tensor x = npy_read(o->in);
    Tensor y;
    try {
      y = round_trip(x, f, o->axis);
    } catch (const Error& e) {
      throw Error(e.kind(), o->in + ": " + e.what());
    }
    npy_write(o->out, y);
  });
}

}  // namespace dynaprec::cli
