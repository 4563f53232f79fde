#include "remote/transport_security.h"

#include <arpa/inet.h>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "core/env.h"
#include "core/status.h"

namespace qshard {
namespace {

absl::StatusOr<std::string> ReadPem(const std::string& path, const std::string& flag) {
  absl::StatusOr<std::string> pem = Env::Default()->ReadFileToString(path);
  if (!pem.ok()) return WithContext(pem.status(), flag);
  if (pem->find("-----BEGIN ") == std::string::npos)
    return absl::InvalidArgumentError(absl::StrCat(flag, ": ", path, " holds no PEM block"));
  return pem;
}

absl::Status NeedsBoth(const TlsFiles& tls) {
  if (tls.cert.empty() != tls.key.empty())
    return absl::InvalidArgumentError(tls.cert.empty() ? "--tls-cert: needed with --tls-key"
                                                       : "--tls-key: needed with --tls-cert");
  return absl::OkStatus();
}

}  // namespace

std::string HostOf(std::string address) {
  for (const char* scheme : {"ipv4:", "ipv6:", "dns:///", "dns:"})
    if (absl::StartsWith(address, scheme)) address = address.substr(std::string(scheme).size());
  std::string host = address.substr(0, address.rfind(':'));
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']') host = host.substr(1, host.size() - 2);
  return host;
}

std::string BoundAddress(const std::string& listen, int port) {
  if (absl::StartsWith(listen, "unix:")) return listen;
  return absl::StrCat(listen.substr(0, listen.rfind(':') + 1), port);
}

bool IsLoopbackAddress(const std::string& address) {
  if (absl::StartsWith(address, "unix:")) return true;
  const std::string host = HostOf(address);
  if (host == "localhost") return true;
  in_addr v4;
  if (inet_pton(AF_INET, host.c_str(), &v4) == 1) return (ntohl(v4.s_addr) >> 24) == 127;
  in6_addr v6;
  if (inet_pton(AF_INET6, host.c_str(), &v6) == 1) return IN6_IS_ADDR_LOOPBACK(&v6);
  return false;
}

absl::Status CheckPlaintextAllowed(const std::string& address, const std::string& flag, bool insecure,
                                   const std::function<void(const std::string&)>& log) {
  if (IsLoopbackAddress(address)) return absl::OkStatus();
  if (!insecure)
    return absl::InvalidArgumentError(
        absl::StrCat(flag, ": ", address,
                     " is not a loopback address; plaintext gRPC is allowed only on loopback (give --tls-cert and "
                     "--tls-key, or pass --insecure to accept it)"));
  log(absl::StrCat("WARNING: --insecure: plaintext gRPC on ", address,
                   ": anyone on the path can read and forge its calls, tokens included"));
  return absl::OkStatus();
}

absl::StatusOr<std::shared_ptr<grpc::ServerCredentials>> MakeServerCredentials(
    const std::string& listen, const TlsFiles& tls, bool insecure, const std::function<void(const std::string&)>& log) {
  QSHARD_RETURN_IF_ERROR(NeedsBoth(tls));
  if (tls.cert.empty()) {
    if (!tls.ca.empty()) return absl::InvalidArgumentError("--tls-ca: needs --tls-cert and --tls-key");
    QSHARD_RETURN_IF_ERROR(CheckPlaintextAllowed(listen, "--listen", insecure, log));
    return grpc::InsecureServerCredentials();
  }
  grpc::SslServerCredentialsOptions options(GRPC_SSL_DONT_REQUEST_CLIENT_CERTIFICATE);
  grpc::SslServerCredentialsOptions::PemKeyCertPair pair;
  QSHARD_ASSIGN_OR_RETURN(pair.cert_chain, ReadPem(tls.cert, "--tls-cert"));
  QSHARD_ASSIGN_OR_RETURN(pair.private_key, ReadPem(tls.key, "--tls-key"));
  options.pem_key_cert_pairs.push_back(std::move(pair));
  if (!tls.ca.empty()) {
    // Requested, not required: job clients authenticate with tokens and bring no certificate;
    // the WorkerService refuses a peer without one (ClientCertificateVerified).
    QSHARD_ASSIGN_OR_RETURN(options.pem_root_certs, ReadPem(tls.ca, "--tls-ca"));
    options.client_certificate_request = GRPC_SSL_REQUEST_CLIENT_CERTIFICATE_AND_VERIFY;
  }
  return grpc::SslServerCredentials(options);
}

absl::StatusOr<std::shared_ptr<grpc::ChannelCredentials>> MakeChannelCredentials(
    const std::string& target, const TlsFiles& tls, bool insecure, const std::function<void(const std::string&)>& log) {
  QSHARD_RETURN_IF_ERROR(NeedsBoth(tls));
  if (tls.cert.empty() && tls.ca.empty()) {
    QSHARD_RETURN_IF_ERROR(CheckPlaintextAllowed(target, "--coordinator", insecure, log));
    return grpc::InsecureChannelCredentials();
  }
  grpc::SslCredentialsOptions options;
  if (!tls.ca.empty()) {
    QSHARD_ASSIGN_OR_RETURN(options.pem_root_certs, ReadPem(tls.ca, "--tls-ca"));
  }
  if (!tls.cert.empty()) {
    QSHARD_ASSIGN_OR_RETURN(options.pem_cert_chain, ReadPem(tls.cert, "--tls-cert"));
    QSHARD_ASSIGN_OR_RETURN(options.pem_private_key, ReadPem(tls.key, "--tls-key"));
  }
  return grpc::SslCredentials(options);
}

bool ClientCertificateVerified(const grpc::CallbackServerContext& context) {
  const std::shared_ptr<const grpc::AuthContext> auth = context.auth_context();
  return auth != nullptr && auth->IsPeerAuthenticated();
}

}  // namespace qshard
