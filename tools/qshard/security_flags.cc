#include "tools/qshard/security_flags.h"

namespace qshard::cli {

void AddSecurityFlags(CLI::App& app, TlsRole role, TlsFiles& tls, bool& insecure) {
  const bool server = role == TlsRole::kServer;
  app.add_option("--tls-cert", tls.cert,
                 server ? "PEM certificate chain to serve TLS with (with --tls-key)"
                        : "PEM client certificate for mutual TLS (with --tls-key; workers need one when the "
                          "coordinator has --tls-ca)")
      ->check(CLI::ExistingFile);
  app.add_option("--tls-key", tls.key, "PEM private key of --tls-cert")->check(CLI::ExistingFile);
  app.add_option("--tls-ca", tls.ca,
                 server ? "PEM CA bundle: workers must present a client certificate it signed (mutual TLS)"
                        : "PEM CA bundle the coordinator's certificate must verify against (enables TLS)")
      ->check(CLI::ExistingFile);
  app.add_flag("--insecure", insecure,
               server ? "Allow plaintext gRPC on a non-loopback address (logs a warning)"
                      : "Allow plaintext gRPC to a non-loopback coordinator (logs a warning)");
}

}  // namespace qshard::cli
