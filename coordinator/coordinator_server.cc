#include "coordinator/coordinator_server.h"

#include <arpa/inet.h>

#include <chrono>
#include <filesystem>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "coordinator/job_admission.h"
#include "core/status.h"
#include "grpcpp/ext/proto_server_reflection_plugin.h"
#include "grpcpp/health_check_service_interface.h"
#include "grpcpp/security/server_credentials.h"
#include "grpcpp/server_builder.h"

namespace qshard {
namespace {

// "host:port" or "[v6]:port" → host.
std::string HostOf(const std::string& listen) {
  std::string host = listen.substr(0, listen.rfind(':'));
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']') host = host.substr(1, host.size() - 2);
  return host;
}

std::string PortOf(const std::string& listen) { return listen.substr(listen.rfind(':') + 1); }

}  // namespace

bool IsLoopbackAddress(const std::string& listen) {
  if (absl::StartsWith(listen, "unix:")) return true;
  const std::string host = HostOf(listen);
  if (host == "localhost") return true;
  in_addr v4;
  if (inet_pton(AF_INET, host.c_str(), &v4) == 1) return (ntohl(v4.s_addr) >> 24) == 127;
  in6_addr v6;
  if (inet_pton(AF_INET6, host.c_str(), &v6) == 1) return IN6_IS_ADDR_LOOPBACK(&v6);
  return false;
}

absl::StatusOr<std::unique_ptr<Coordinator>> Coordinator::Start(const CoordinatorOptions& options) {
  if (options.listen.empty()) return absl::InvalidArgumentError("--listen: an address is required");
  if (!IsLoopbackAddress(options.listen)) {
    if (!options.insecure)
      return absl::InvalidArgumentError(absl::StrCat(
          "--listen: ", options.listen,
          " is not a loopback address; plaintext gRPC is allowed only on loopback (pass --insecure to accept it)"));
    options.log(absl::StrCat("WARNING: --insecure: serving plaintext gRPC on ", options.listen,
                             ": anyone who can reach it can submit and cancel jobs"));
  }
  if (options.state_dir.empty()) return absl::InvalidArgumentError("--state-dir: a directory is required");
  std::error_code ec;
  std::filesystem::create_directories(options.state_dir, ec);
  if (ec)
    return absl::InvalidArgumentError(absl::StrCat("--state-dir: cannot create ", options.state_dir, ": ", ec.message()));

  std::unique_ptr<Coordinator> c(new Coordinator());
  QSHARD_ASSIGN_OR_RETURN(AllowedRoots roots, AllowedRoots::Create(options.allowed_roots));
  c->roots_ = std::make_unique<AllowedRoots>(std::move(roots));
  QSHARD_ASSIGN_OR_RETURN(c->journal_, Journal::Open(options.state_dir));
  c->pool_ = std::make_unique<WorkerPool>();
  c->metrics_ = std::make_unique<CoordinatorMetrics>(*c->journal_, *c->pool_);
  JobExecutor executor = options.executor;
  if (options.workers > 0)
    executor = [pool = c->pool_.get(), count = options.workers, wait = options.worker_wait](
                   const JobSpec& spec, const JobEvents& events) -> absl::StatusOr<nlohmann::json> {
      QSHARD_ASSIGN_OR_RETURN(std::vector<std::unique_ptr<WorkerClient>> workers, pool->AwaitWorkers(count, wait));
      QSHARD_RETURN_IF_ERROR(AdmitJob(spec, count, pool->Workers()));  // the budgets of the workers it got
      std::vector<WorkerClient*> clients;
      for (auto& worker : workers) clients.push_back(worker.get());
      return RunJob(spec, clients, events);
    };
  c->scheduler_ = std::make_unique<JobScheduler>(*c->journal_, *c->roots_, options.state_dir + "/finished-layers",
                                                 executor, options.log, c->metrics_.get());
  QSHARD_RETURN_IF_ERROR(c->scheduler_->Start());
  c->service_ = std::make_unique<JobServiceImpl>(
      *c->journal_, *c->scheduler_, *c->roots_,
      [pool = c->pool_.get(), workers = options.workers](const JobSpec& spec) {
        return AdmitJob(spec, workers, pool->Workers());
      });

  grpc::EnableDefaultHealthCheckService(true);
  grpc::reflection::InitProtoReflectionServerBuilderPlugin();
  grpc::ServerBuilder builder;
  builder.SetMaxReceiveMessageSize(kMaxMessageBytes);
  builder.SetMaxSendMessageSize(kMaxMessageBytes);
  builder.RegisterService(c->service_.get());
  builder.RegisterService(c->pool_.get());
  std::vector<std::unique_ptr<grpc::experimental::ServerInterceptorFactoryInterface>> interceptors;
  interceptors.push_back(c->metrics_->grpc().InterceptorFactory());
  builder.experimental().SetInterceptorCreators(std::move(interceptors));
  int port = 0;
  builder.AddListeningPort(options.listen, grpc::InsecureServerCredentials(), &port);
  c->server_ = builder.BuildAndStart();
  if (c->server_ == nullptr || (port == 0 && !absl::StartsWith(options.listen, "unix:")))
    return absl::UnavailableError(absl::StrCat("--listen: cannot listen on ", options.listen));
  c->server_->GetHealthCheckService()->SetServingStatus(v1::JobService::service_full_name(), true);
  if (!options.metrics_listen.empty()) {
    QSHARD_ASSIGN_OR_RETURN(c->metrics_server_, MetricsServer::Start(options.metrics_listen, c->metrics_->registry()));
  }
  const std::string& listen = options.listen;
  c->address_ = absl::StartsWith(listen, "unix:")
                    ? listen
                    : absl::StrCat(listen.substr(0, listen.size() - PortOf(listen).size()), port);
  return c;
}

void Coordinator::Shutdown() {
  if (shut_down_) return;
  shut_down_ = true;
  if (server_) server_->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(2));
  if (scheduler_) scheduler_->Stop();
}

}  // namespace qshard
