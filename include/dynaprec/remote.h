// The remote device over gRPC (docs/protocol.md): `dynaprec serve` wraps the local CPU device;
// `--device grpc://HOST:PORT` runs a Session's model there through a ModelRunner (runner.h).
#pragma once

#include <cstdint>
#include <memory>
#include <string>

namespace dynaprec {

struct ServeOptions {
  std::string listen = "127.0.0.1:0";       ///< HOST:PORT (port 0: any free port)
  std::string token;                        ///< the secret every call must carry
  std::string tls_cert_file, tls_key_file;  ///< both set: TLS with this certificate (PEM)
  std::string model_dir;                    ///< non-empty: clients may name models by path below it
  int threads = 0;                          ///< compute threads (<= 0: all cores)
  uint64_t max_chunk_bytes = 4ull << 20;
  uint64_t max_tensor_bytes = 1ull << 30;
  uint64_t max_model_bytes = 1ull << 30;
  uint32_t max_sessions_per_client = 4;
  uint32_t max_sessions = 64;
  uint32_t idle_timeout_s = 600;  ///< sessions unused this long are closed
};

class RemoteServer {
 public:
  /// Starts serving (background threads); throws Error when the address cannot be bound or the
  /// certificate files cannot be read.
  static std::unique_ptr<RemoteServer> start(const ServeOptions& o);
  virtual ~RemoteServer() = default;
  virtual int port() const = 0;
  /// Blocks until shutdown() (from another thread or a signal handler's thread).
  virtual void wait() = 0;
  virtual void shutdown() = 0;
  virtual size_t session_count() const = 0;
  virtual size_t active_calls() const = 0;  ///< Load/Run calls in progress
};

/// Installs the gRPC backend as the runtime's remote runner factory (runner.h). Device options:
///   token_file  file holding the token (required)
///   tls_ca      CA certificate (PEM) to trust: TLS; without it the channel is plain TCP
///   retries     reconnect attempts after the server is lost mid-run (default 20, back-off to 2 s:
///   ~35 s) timeout_s   deadline of one call (default 300) quiet       "1": no reconnect messages
///   on stderr
void install_remote_backend();

/// Reads a token file: its content without surrounding whitespace. Throws Error(kUsage) when the
/// file cannot be read or holds no token.
std::string read_token_file(const std::string& path);

/// Process-wide counters of the gRPC client (for tests and the soak script).
struct RemoteClientStats {
  uint64_t reconnects = 0;  ///< sessions re-established after a lost server
  uint64_t replays = 0;     ///< runs answered from the server's cache (a retried seq)
};
RemoteClientStats remote_client_stats();

}  // namespace dynaprec
