// A plaintext gRPC server that carries only grpc.health.v1 (`--health-listen`), for probes
// that speak neither TLS nor tokens: `qshard health` run inside the container (Kubernetes exec
// probes, docs/operations.md). Like every plaintext listener it stays on loopback unless
// --insecure (conventions.md, "Servers and security").
#pragma once

#include <functional>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "grpcpp/generic/async_generic_service.h"
#include "grpcpp/server.h"

namespace qshard {

class HealthServer {
 public:
  static absl::StatusOr<std::unique_ptr<HealthServer>> Start(const std::string& listen, bool insecure,
                                                             const std::function<void(const std::string&)>& log);
  ~HealthServer();

  // The overall status ("") is SERVING from the start; a named service is NOT_FOUND (a failed
  // probe) until set.
  void SetServing(const std::string& service, bool serving);
  const std::string& address() const { return address_; }

 private:
  HealthServer() = default;
  // Answers every other method UNIMPLEMENTED; it makes the server a callback server, which
  // gRPC needs to run with no completion queue of ours.
  grpc::CallbackGenericService unimplemented_;
  std::unique_ptr<grpc::Server> server_;
  std::string address_;
};

}  // namespace qshard
