// dynaprec serve --listen HOST:PORT --token-file F [--tls-cert C --tls-key K] ...  (CONTRACT §2)
// The remote device: a gRPC server wrapping the local CPU device (docs/protocol.md).
#include <csignal>
#include <iostream>
#include <thread>

#include "cli.h"
#include "dynaprec/error.h"
#include "dynaprec/remote.h"

namespace dynaprec::cli {
namespace {

void serve_cmd(ServeOptions o, const std::string& token_file) {
  o.token = read_token_file(token_file);
  // SIGINT/SIGTERM: a clean shutdown (handled on a thread of ours, not in the signal handler).
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &set, nullptr);
  auto server = RemoteServer::start(o);
  std::cerr << "dynaprec: serving on " << o.listen.substr(0, o.listen.rfind(':')) << ":"
            << server->port() << (o.tls_cert_file.empty() ? "" : " (TLS)") << "\n";
  std::cout << "port " << server->port() << std::endl;  // for scripts that ask for port 0
  std::thread sig([&] {
    int s = 0;
    sigwait(&set, &s);
    server->shutdown();
  });
  sig.detach();
  server->wait();
}

}  // namespace

void register_serve(CLI::App& app) {
  auto* c = app.add_subcommand("serve", "serve the local device to remote hosts over gRPC");
  auto o = std::make_shared<ServeOptions>();
  auto token_file = std::make_shared<std::string>();
  auto max_tensor_mb = std::make_shared<uint64_t>(1024);
  auto max_model_mb = std::make_shared<uint64_t>(1024);
  c->add_option("--listen", o->listen, "HOST:PORT to listen on (port 0: any free port)")
      ->required();
  c->add_option("--token-file", *token_file, "file holding the token clients must send")
      ->required();
  c->add_option("--tls-cert", o->tls_cert_file, "certificate (PEM): serve over TLS");
  c->add_option("--tls-key", o->tls_key_file, "private key (PEM) of --tls-cert");
  c->add_option("--model-dir", o->model_dir,
                "let clients name models by path below this directory (default: only models "
                "sent by the client)");
  c->add_option("--threads", o->threads, "compute threads (default: all cores)");
  c->add_option("--max-tensor-mb", *max_tensor_mb, "largest tensor accepted (default 1024)")
      ->check(CLI::PositiveNumber);
  c->add_option("--max-model-mb", *max_model_mb, "largest model accepted (default 1024)")
      ->check(CLI::PositiveNumber);
  c->add_option("--max-sessions-per-client", o->max_sessions_per_client,
                "open sessions per client (default 4)")
      ->check(CLI::PositiveNumber);
  c->add_option("--max-sessions", o->max_sessions, "open sessions in all (default 64)")
      ->check(CLI::PositiveNumber);
  c->add_option("--idle-timeout", o->idle_timeout_s,
                "seconds after which an unused session is closed (default 600)")
      ->check(CLI::PositiveNumber);
  c->callback([=] {
    ServeOptions so = *o;
    so.max_tensor_bytes = *max_tensor_mb << 20;
    so.max_model_bytes = *max_model_mb << 20;
    serve_cmd(so, *token_file);
  });
}

}  // namespace dynaprec::cli
