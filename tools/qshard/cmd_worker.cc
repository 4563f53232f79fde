// qshard worker: a worker process. It dials the coordinator, registers its capacity and runs
// the tasks it is sent (remote/worker_session.h) until the coordinator ends the stream;
// a lost coordinator is retried with backoff until --retry-seconds pass without one.
#include <chrono>
#include <iostream>
#include <thread>

#include "absl/strings/str_cat.h"
#include "core/status.h"
#include "grpcpp/grpcpp.h"
#include "metrics/metrics_server.h"
#include "remote/worker_metrics.h"
#include "remote/health_server.h"
#include "remote/transport_security.h"
#include "remote/worker_session.h"
#include "tools/qshard/command.h"
#include "tools/qshard/device_flag.h"
#include "tools/qshard/security_flags.h"

namespace qshard::cli {
namespace {

struct WorkerFlags {
  std::string coordinator;
  std::string name;
  int threads = 0;
  std::string device = "cpu";
  uint64_t device_memory = 0;
  uint64_t memory_budget = 0;
  int retry_seconds = 30;
  std::string metrics_listen;
  TlsFiles tls;
  bool insecure = false;
  std::string health_listen;
  std::string data_listen = "127.0.0.1:0";
  std::string data_peer_name;
  int data_stall_seconds = 120;
};

// The health service a worker's readiness probe asks for: SERVING while it holds a session.
constexpr char kWorkerHealthService[] = "qshard.worker";

absl::Status RunWorker(const WorkerFlags& flags) {
  WorkerSessionOptions options;
  options.hello.set_name(flags.name.empty() ? absl::StrCat("pid-", getpid()) : flags.name);
  // Opened before dialing: a worker whose device cannot run exits at once instead of registering.
  QSHARD_ASSIGN_OR_RETURN(Device device, ParseDevice(flags.device));
  QSHARD_RETURN_IF_ERROR(ApplyDeviceMemory(flags.device_memory, {&device}));
  QSHARD_ASSIGN_OR_RETURN(options.device, OpenDevice(device));
  options.hello.set_device(DeviceName(device));
  if (options.device != nullptr)
    std::cerr << "worker " << options.hello.name() << ": device " << options.device->Describe()
              << " (what a job runs there follows its method: docs/cuda.md, \"What runs where\")" << std::endl;
  options.hello.set_threads(flags.threads);
  options.hello.set_memory_budget_bytes(flags.memory_budget);
  options.data.listen = flags.data_listen;
  options.data.tls = flags.tls;
  options.data.insecure = flags.insecure;
  options.data.peer_name = flags.data_peer_name;
  options.data.stall_timeout = std::chrono::seconds(flags.data_stall_seconds);
  WorkerMetrics metrics;
  options.metrics = &metrics;
  std::unique_ptr<MetricsServer> metrics_server;
  if (!flags.metrics_listen.empty()) {
    QSHARD_ASSIGN_OR_RETURN(metrics_server, MetricsServer::Start(flags.metrics_listen, metrics.registry()));
    std::cerr << "worker " << options.hello.name() << ": metrics on " << metrics_server->address() << std::endl;
  }
  const auto log = [](const std::string& line) { std::cerr << line << std::endl; };
  if (IsLoopbackAddress(flags.data_listen) && !IsLoopbackAddress(flags.coordinator))
    log(absl::StrCat("WARNING: --data-listen ", flags.data_listen, " is a loopback address: workers on other hosts "
                     "cannot pull the statistics this one holds (give an address they reach)"));
  QSHARD_ASSIGN_OR_RETURN(std::shared_ptr<grpc::ChannelCredentials> credentials,
                          MakeChannelCredentials(flags.coordinator, flags.tls, flags.insecure, log));
  std::unique_ptr<HealthServer> health;
  if (!flags.health_listen.empty()) {
    QSHARD_ASSIGN_OR_RETURN(health, HealthServer::Start(flags.health_listen, flags.insecure, log));
  }
  auto channel = grpc::CreateChannel(flags.coordinator, credentials);
  auto last_session = std::chrono::steady_clock::now();
  for (int backoff_ms = 100;; backoff_ms = std::min(backoff_ms * 2, 2000)) {
    if (channel->WaitForConnected(std::chrono::system_clock::now() + std::chrono::milliseconds(backoff_ms))) {
      std::cerr << "worker " << options.hello.name() << ": connected to " << flags.coordinator << std::endl;
      if (health) health->SetServing(kWorkerHealthService, true);
      const absl::Status status = RunWorkerSession(channel, options);
      if (health) health->SetServing(kWorkerHealthService, false);
      if (status.ok() || status.code() == absl::StatusCode::kUnauthenticated) return status;
      std::cerr << "worker " << options.hello.name() << ": " << status.message() << std::endl;
      metrics.Reconnected();
      last_session = std::chrono::steady_clock::now();
    }
    if (std::chrono::steady_clock::now() - last_session > std::chrono::seconds(flags.retry_seconds))
      return absl::UnavailableError(absl::StrCat("--coordinator ", flags.coordinator, ": unreachable for ",
                                                 flags.retry_seconds, " s"));
  }
}

}  // namespace

void RegisterWorker(CLI::App& root, CommandList& commands) {
  auto flags = std::make_shared<WorkerFlags>();
  CLI::App* app = root.add_subcommand("worker", "Run a worker that takes calibration and solves from a coordinator");
  app->add_option("--coordinator", flags->coordinator, "Coordinator address, e.g. 127.0.0.1:7000")->required();
  app->add_option("--name", flags->name, "Worker name in the coordinator's list (default pid-N)");
  app->add_option("--threads", flags->threads, "Threads (0 = all)")->capture_default_str();
  AddDeviceFlag(*app, flags->device);
  AddDeviceMemoryFlag(*app, flags->device_memory);
  app->add_option("--memory-budget", flags->memory_budget, "Bytes of memory the worker may use (0 = undeclared)")
      ->capture_default_str();
  app->add_option("--retry-seconds", flags->retry_seconds, "Give up after this long without a coordinator")
      ->capture_default_str();
  app->add_option("--metrics-listen", flags->metrics_listen, "host:port serving Prometheus /metrics (port 0: any)");
  AddSecurityFlags(*app, TlsRole::kClient, flags->tls, flags->insecure);
  app->add_option("--health-listen", flags->health_listen,
                  "host:port of a plaintext port carrying only grpc.health.v1 (service qshard.worker: SERVING "
                  "while connected), for Kubernetes gRPC probes");
  app->add_option("--data-listen", flags->data_listen,
                  "host:port where peers pull the statistics this worker holds (port 0: any; give an address the "
                  "other workers reach; TLS with --tls-cert/--tls-key, mutual with --tls-ca)")
      ->capture_default_str();
  app->add_option("--data-peer-name", flags->data_peer_name,
                  "Under TLS, the name the other workers' certificates carry, checked instead of their addresses "
                  "(workers sharing one certificate, e.g. qshard-worker)");
  app->add_option("--data-stall-seconds", flags->data_stall_seconds,
                  "Give up on a peer's statistics stream that sends nothing for this long; the peer is then "
                  "reported lost and its shards move")
      ->check(CLI::Range(1, 86400))
      ->capture_default_str();
  commands.push_back({app, [flags] { return RunWorker(*flags); }});
}

}  // namespace qshard::cli
