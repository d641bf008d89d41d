// Runs an ONNX model over a stream with the dynamic policy and prints its report (JSON).
//   run_model MODEL.onnx INPUT.npy OUTPUT_DIR [TARGET_SQNR_DB]
// INPUT.npy feeds the model's first streamed input (first axis: the stream, one sample per
// portion); each output NAME goes to OUTPUT_DIR/NAME.npy, as `dynaprec run` writes it.
#include <dynaprec/error.h>
#include <dynaprec/npy.h>
#include <dynaprec/session.h>

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <iostream>
#include <string>

int main(int argc, char** argv) try {
  if (argc < 4) {
    std::cerr << "usage: run_model MODEL.onnx INPUT.npy OUTPUT_DIR [TARGET_SQNR_DB]\n";
    return 2;
  }
  dynaprec::SessionOptions opts;  // cpu, all cores, one sample per portion, monitor on
  opts.policy.kind = dynaprec::PolicyKind::kDynamic;
  opts.policy.target_sqnr_db = argc > 4 ? std::atof(argv[4]) : 30.0;
  dynaprec::Session session(argv[1], opts);
  session.report().policy_json = R"({"name":"dynamic","precision":"fp32","target_sqnr_db":)" +
                                 std::to_string(opts.policy.target_sqnr_db) + "}";
  const dynaprec::TensorMap out =
      session.run_stream({{session.streamed_inputs().at(0), dynaprec::npy_read(argv[2])}});
  std::filesystem::create_directories(argv[3]);
  for (const auto& [name, tensor] : out) {
    std::string file = name;
    std::replace(file.begin(), file.end(), '/', '_');
    dynaprec::npy_write((std::filesystem::path(argv[3]) / (file + ".npy")).string(), tensor);
  }
  std::cout << session.report().to_json() << "\n";  // portions, layers, switches, summary
  return 0;
} catch (const std::exception& e) {  // dynaprec::Error: bad input/usage -> 2, else 1
  const auto* de = dynamic_cast<const dynaprec::Error*>(&e);
  std::cerr << "run_model: " << e.what() << "\n";
  return de ? de->exit_code() : 1;
}
