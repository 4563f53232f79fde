#include "remote/health_server.h"

#include <chrono>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "grpcpp/health_check_service_interface.h"
#include "grpcpp/security/server_credentials.h"
#include "grpcpp/server_builder.h"
#include "core/status.h"
#include "remote/transport_security.h"

namespace qshard {

absl::StatusOr<std::unique_ptr<HealthServer>> HealthServer::Start(const std::string& listen, bool insecure,
                                                                   const std::function<void(const std::string&)>& log) {
  QSHARD_RETURN_IF_ERROR(CheckPlaintextAllowed(listen, "--health-listen", insecure, log));
  grpc::EnableDefaultHealthCheckService(true);
  grpc::ServerBuilder builder;
  builder.SetMaxReceiveMessageSize(4096);  // a health request is a service name
  int port = 0;
  builder.AddListeningPort(listen, grpc::InsecureServerCredentials(), &port);
  std::unique_ptr<HealthServer> health(new HealthServer());
  builder.RegisterCallbackGenericService(&health->unimplemented_);
  health->server_ = builder.BuildAndStart();
  if (health->server_ == nullptr || (port == 0 && !absl::StartsWith(listen, "unix:")))
    return absl::UnavailableError(absl::StrCat("--health-listen: cannot listen on ", listen));
  health->address_ = BoundAddress(listen, port);
  return health;
}

HealthServer::~HealthServer() {
  if (server_) server_->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(1));
}

void HealthServer::SetServing(const std::string& service, bool serving) {
  server_->GetHealthCheckService()->SetServingStatus(service, serving);
}

}  // namespace qshard
