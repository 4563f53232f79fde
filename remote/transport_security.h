// How qshard's gRPC ends secure their connections, in one place: TLS server and channel
// credentials from PEM files (mutual TLS when a CA is given), and the rule that plaintext is
// allowed on loopback only unless the operator insists (conventions.md, "Servers and security").
#pragma once

#include <functional>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "grpcpp/security/credentials.h"
#include "grpcpp/security/server_credentials.h"
#include "grpcpp/server_context.h"

namespace qshard {

// PEM file paths, named after the flags that carry them.
struct TlsFiles {
  std::string cert;  // --tls-cert: this end's certificate chain
  std::string key;   // --tls-key: its private key
  std::string ca;    // --tls-ca: the CA that signs the other end's certificate
};

// True for localhost, 127.0.0.0/8, ::1 and unix: sockets.
bool IsLoopbackAddress(const std::string& address);
// The host of "host:port", "[v6]:port" or a gRPC peer ("ipv4:1.2.3.4:5678").
std::string HostOf(std::string address);
// `listen` with the port a server bound (for port 0); unix: addresses unchanged.
std::string BoundAddress(const std::string& listen, int port);

// Plaintext on `address` (listened on or dialed, named by `flag` in errors): allowed on
// loopback; elsewhere only with `insecure`, which logs a warning.
absl::Status CheckPlaintextAllowed(const std::string& address, const std::string& flag, bool insecure,
                                   const std::function<void(const std::string&)>& log);

// TLS when tls.cert/tls.key are given: with tls.ca, clients are asked for a certificate and
// one that is presented must verify against it (ClientCertificateVerified tells whether the
// peer of a call presented one). Without them, plaintext under CheckPlaintextAllowed.
absl::StatusOr<std::shared_ptr<grpc::ServerCredentials>> MakeServerCredentials(
    const std::string& listen, const TlsFiles& tls, bool insecure, const std::function<void(const std::string&)>& log);

// TLS when tls.ca or tls.cert is given: the server is verified against tls.ca (the system's
// roots without it) and tls.cert/tls.key are presented as this end's certificate. Without
// them, plaintext under CheckPlaintextAllowed.
absl::StatusOr<std::shared_ptr<grpc::ChannelCredentials>> MakeChannelCredentials(
    const std::string& target, const TlsFiles& tls, bool insecure, const std::function<void(const std::string&)>& log);

// Whether the peer of this call presented a client certificate that verified.
bool ClientCertificateVerified(const grpc::CallbackServerContext& context);

}  // namespace qshard
