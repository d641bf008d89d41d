// The dynaprec command line: one binary, one file per subcommand family.
#pragma once

#include <CLI/CLI.hpp>

namespace dynaprec::cli {

void register_info(CLI::App& app);
void register_quantize(CLI::App& app);
void register_inspect(CLI::App& app);
void register_bench(CLI::App& app);
void register_bench_matmul(CLI::App& bench);  // gemv, gemm under `bench`
void register_run(CLI::App& app);
void register_demo(CLI::App& app);           // cmd_demo.cc
void register_bench_model(CLI::App& bench);  // `bench model`
void register_serve(CLI::App& app);          // the remote device (gRPC)

}  // namespace dynaprec::cli
