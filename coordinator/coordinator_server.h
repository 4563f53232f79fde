// `qshard coordinator`'s server: the state directory and its journal, the allowed roots, the
// job scheduler, and a gRPC server carrying the JobService, the WorkerService workers dial,
// grpc.health.v1 and server reflection, with explicit message-size limits; and its metrics,
// served on /metrics when asked. TLS, mutual TLS with the workers and plaintext on loopback
// only: remote/transport_security.h; tokens and submission limits: client_access.h; a
// plaintext health-only port: remote/health_server.h.
#pragma once

#include <chrono>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "coordinator/allowed_roots.h"
#include "coordinator/client_access.h"
#include "coordinator/coordinator_metrics.h"
#include "coordinator/job_scheduler.h"
#include "coordinator/job_service.h"
#include "coordinator/journal.h"
#include "metrics/metrics_server.h"
#include "remote/health_server.h"
#include "remote/transport_security.h"
#include "remote/worker_pool.h"
#include "grpcpp/server.h"

namespace qshard {

// The largest request or response the coordinator accepts or sends; larger ones fail with
// RESOURCE_EXHAUSTED. Job requests are small; the worker streams are chunked below it.
inline constexpr int kMaxMessageBytes = 4 << 20;

struct CoordinatorOptions {
  std::string listen;  // host:port (port 0: any free one) or unix:PATH
  std::string state_dir;
  std::vector<std::string> allowed_roots;
  bool insecure = false;  // plaintext on a non-loopback address
  TlsFiles tls;           // with tls.ca, workers must present a certificate it signed
  ClientAccessOptions access;
  std::string health_listen;  // empty: no health-only port
  // Workers each job runs on: 0 runs jobs in this process (RunCoordinatorJob); N > 0 waits up
  // to `worker_wait` for N `qshard worker`s registered on the WorkerService and runs the job
  // on them (docs/distributed.md).
  int workers = 0;
  std::chrono::seconds worker_wait{60};
  // host:port serving /metrics (coordinator_metrics.h); empty: not served.
  std::string metrics_listen;
  // Where jobs' final validations run, in this process (engine/validation.h). A CUDA device is
  // opened at Start, which fails naming --validate-device when it cannot be; with workers > 0
  // it stays open, with 0 each job opens it again (RunEmbeddedJob) and the executor is that.
  Device validation_device;
  // --validate-on worker (workers > 0): instead on one of each job's workers, on its own device
  // (engine/job_runner.h, ValidationSite), one of `validation_worker_kind` (--validate-device's
  // kind; unset: whatever the workers have); `validation_device` is then unused.
  bool validate_on_worker = false;
  std::optional<Device::Kind> validation_worker_kind;
  JobExecutor executor = RunCoordinatorJob;
  JobScheduler::Log log = [](const std::string&) {};
};

class Coordinator {
 public:
  // Creates the state directory, recovers unfinished jobs and starts serving.
  static absl::StatusOr<std::unique_ptr<Coordinator>> Start(const CoordinatorOptions& options);
  ~Coordinator() { Shutdown(); }

  // The address clients dial, with the port the server picked when asked for port 0.
  const std::string& address() const { return address_; }
  // Where /metrics is served ("" when it is not).
  std::string metrics_address() const { return metrics_server_ ? metrics_server_->address() : ""; }
  // Blocks until Shutdown.
  void Wait() { server_->Wait(); }
  // Stops serving (open watch streams are cut) and stops the running job, which stays
  // RUNNING in the journal and restarts with the next coordinator.
  void Shutdown();

 private:
  Coordinator() = default;

  std::unique_ptr<Journal> journal_;
  std::unique_ptr<ClientAccess> access_;
  std::unique_ptr<AllowedRoots> roots_;
  std::unique_ptr<WorkerPool> pool_;  // outlives the server and the scheduler that use it
  std::unique_ptr<CoordinatorMetrics> metrics_;  // reads the journal and the pool
  std::unique_ptr<JobScheduler> scheduler_;
  std::unique_ptr<JobServiceImpl> service_;
  std::unique_ptr<grpc::Server> server_;
  std::unique_ptr<HealthServer> health_;
  std::unique_ptr<MetricsServer> metrics_server_;  // first to go: its scrapes read everything above
  std::string address_;
  bool shut_down_ = false;
};

}  // namespace qshard
