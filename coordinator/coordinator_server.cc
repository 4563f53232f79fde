#include "coordinator/coordinator_server.h"

#include <chrono>
#include <filesystem>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "coordinator/job_admission.h"
#include "core/status.h"
#include "worker/device/cuda_device.h"
#include "grpcpp/ext/proto_server_reflection_plugin.h"
#include "grpcpp/health_check_service_interface.h"
#include "grpcpp/security/server_credentials.h"
#include "grpcpp/server_builder.h"

namespace qshard {

absl::StatusOr<std::unique_ptr<Coordinator>> Coordinator::Start(const CoordinatorOptions& options) {
  if (options.listen.empty()) return absl::InvalidArgumentError("--listen: an address is required");
  QSHARD_ASSIGN_OR_RETURN(std::shared_ptr<grpc::ServerCredentials> credentials,
                          MakeServerCredentials(options.listen, options.tls, options.insecure, options.log));
  if (options.access.token_file.empty() && !IsLoopbackAddress(options.listen))
    options.log(absl::StrCat("WARNING: no --token-file: any client that reaches ", options.listen,
                             " can submit and cancel jobs"));
  if (options.state_dir.empty()) return absl::InvalidArgumentError("--state-dir: a directory is required");
  std::error_code ec;
  std::filesystem::create_directories(options.state_dir, ec);
  if (ec)
    return absl::InvalidArgumentError(absl::StrCat("--state-dir: cannot create ", options.state_dir, ": ", ec.message()));

  if (options.validate_on_worker && options.workers == 0)
    return absl::InvalidArgumentError("--validate-on worker: needs --workers > 0 (with 0, jobs run in this process)");
  // Opened before anything starts, so that a coordinator that cannot validate never takes a job.
  auto validator = OpenDevice(options.validate_on_worker ? Device{} : options.validation_device);
  if (!validator.ok()) return WithContext(validator.status(), "--validate-device");

  std::unique_ptr<Coordinator> c(new Coordinator());
  QSHARD_ASSIGN_OR_RETURN(AllowedRoots roots, AllowedRoots::Create(options.allowed_roots));
  c->roots_ = std::make_unique<AllowedRoots>(std::move(roots));
  QSHARD_ASSIGN_OR_RETURN(c->access_, ClientAccess::Create(options.access));
  QSHARD_ASSIGN_OR_RETURN(c->journal_, Journal::Open(options.state_dir));
  WorkerPoolOptions pool_options;
  pool_options.require_client_certificate = !options.tls.ca.empty();
  c->pool_ = std::make_unique<WorkerPool>(pool_options);
  c->metrics_ = std::make_unique<CoordinatorMetrics>(*c->journal_, *c->pool_);
  JobExecutor executor = options.executor;
  if (options.workers > 0)
    executor = [pool = c->pool_.get(), count = options.workers, wait = options.worker_wait, validator = *validator,
                on_worker = options.validate_on_worker, kind = options.validation_worker_kind](
                   const JobSpec& spec, const JobEvents& events) -> absl::StatusOr<nlohmann::json> {
      QSHARD_ASSIGN_OR_RETURN(std::vector<std::unique_ptr<WorkerClient>> workers, pool->AwaitWorkers(count, wait));
      QSHARD_RETURN_IF_ERROR(AdmitJob(spec, count, pool->Workers()));  // the budgets of the workers it got
      std::vector<WorkerClient*> clients;
      for (auto& worker : workers) clients.push_back(worker.get());
      return RunJob(spec, clients, events, on_worker ? ValidationSite::OnWorker(kind) : ValidationSite(validator.get()));
    };
  else if (*validator != nullptr)
    executor = [device = options.validation_device](const JobSpec& spec, const JobEvents& events) {
      return RunEmbeddedJob(spec, events, Device{}, device);
    };
  c->scheduler_ = std::make_unique<JobScheduler>(*c->journal_, *c->roots_, options.state_dir + "/finished-layers",
                                                 executor, options.log, c->metrics_.get());
  QSHARD_RETURN_IF_ERROR(c->scheduler_->Start());
  c->service_ = std::make_unique<JobServiceImpl>(
      *c->journal_, *c->scheduler_, *c->roots_,
      [pool = c->pool_.get(), workers = options.workers](const JobSpec& spec) {
        return AdmitJob(spec, workers, pool->Workers());
      },
      c->access_.get());

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
  builder.AddListeningPort(options.listen, credentials, &port);
  c->server_ = builder.BuildAndStart();
  if (c->server_ == nullptr || (port == 0 && !absl::StartsWith(options.listen, "unix:")))
    return absl::UnavailableError(absl::StrCat("--listen: cannot listen on ", options.listen));
  c->server_->GetHealthCheckService()->SetServingStatus(v1::JobService::service_full_name(), true);
  if (!options.metrics_listen.empty()) {
    QSHARD_ASSIGN_OR_RETURN(c->metrics_server_, MetricsServer::Start(options.metrics_listen, c->metrics_->registry()));
  }
  c->address_ = BoundAddress(options.listen, port);
  if (!options.health_listen.empty()) {
    QSHARD_ASSIGN_OR_RETURN(c->health_, HealthServer::Start(options.health_listen, options.insecure, options.log));
    c->health_->SetServing(v1::JobService::service_full_name(), true);
  }
  return c;
}

void Coordinator::Shutdown() {
  if (shut_down_) return;
  shut_down_ = true;
  health_.reset();
  if (server_) server_->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(2));
  if (scheduler_) scheduler_->Stop();
}

}  // namespace qshard
