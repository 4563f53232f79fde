// A plaintext gRPC server that carries only grpc.health.v1 (`--health-listen`), for
// Kubernetes' native gRPC probes, which speak neither TLS nor tokens. It tells whether named
// services are serving and nothing else, so unlike the job and worker ports it may listen
// beyond loopback without --insecure (docs/operations.md, "Security").
#pragma once

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "grpcpp/generic/async_generic_service.h"
#include "grpcpp/server.h"

namespace qshard {

class HealthServer {
 public:
  static absl::StatusOr<std::unique_ptr<HealthServer>> Start(const std::string& listen);
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
