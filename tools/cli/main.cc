#include <cstdio>
#include <exception>
#include <string>

#include "cli.h"
#include "dynaprec/error.h"
#include "dynaprec/remote.h"

namespace {
bool is_known(CLI::App& app, const char* name) {
  for (const CLI::App* sub : app.get_subcommands({}))
    if (sub->get_name() == name) return true;
  return false;
}
}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"dynaprec: run neural-network work at the lowest precision that meets a target"};
  app.require_subcommand(1);
  app.set_version_flag("--version", "dynaprec 0.1.0");
  dynaprec::cli::register_info(app);
  dynaprec::cli::register_quantize(app);
  dynaprec::cli::register_inspect(app);
  dynaprec::cli::register_run(app);
  dynaprec::cli::register_demo(app);
  dynaprec::cli::register_bench(app);
  dynaprec::cli::register_serve(app);
  dynaprec::install_remote_backend();  // --device grpc://HOST:PORT
  if (argc > 1 && argv[1][0] != '-' && !is_known(app, argv[1])) {
    std::string names;
    for (const CLI::App* sub : app.get_subcommands({}))
      names += (names.empty() ? "" : ", ") + sub->get_name();
    std::fprintf(stderr, "dynaprec: error: unknown command '%s' (commands: %s)\n", argv[1],
                 names.c_str());
    return 2;
  }
  try {
    app.parse(argc, argv);
  } catch (const CLI::Success& e) {
    return app.exit(e);  // --help, --version
  } catch (const CLI::ParseError& e) {
    // CLI11's own exit codes are not ours: bad usage is always 2 (CONTRACT §2).
    std::fprintf(stderr, "dynaprec: error: %s (see --help)\n", e.what());
    return 2;
  } catch (const dynaprec::Error& e) {
    std::fprintf(stderr, "dynaprec: error: %s\n", e.what());
    return e.exit_code();
  } catch (const std::exception& e) {
    std::fprintf(stderr, "dynaprec: error: %s\n", e.what());
    return 1;
  }
  return 0;
}
