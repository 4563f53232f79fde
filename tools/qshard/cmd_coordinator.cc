// qshard coordinator: serves the JobService (coordinator/coordinator_server.h) until SIGINT or
// SIGTERM; jobs run one at a time and survive restarts through the journal.
#include <signal.h>

#include <ctime>
#include <iostream>
#include <mutex>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "coordinator/coordinator_server.h"
#include "core/status.h"
#include "tools/qshard/command.h"
#include "tools/qshard/device_flag.h"
#include "tools/qshard/security_flags.h"

namespace qshard::cli {
namespace {

struct CoordinatorFlags {
  CoordinatorOptions options;
  int worker_wait_seconds = 60;
  std::string validate_on = "coordinator";
  std::string validate_device;
  uint64_t device_memory = 0;
  bool json = false;
};

void LogLine(const std::string& line) {
  static std::mutex mu;
  std::lock_guard<std::mutex> lock(mu);
  const std::time_t now = std::time(nullptr);
  char stamp[32];
  std::strftime(stamp, sizeof(stamp), "%Y-%m-%dT%H:%M:%SZ", std::gmtime(&now));
  std::cerr << stamp << " " << line << std::endl;
}

// --validate-device names the coordinator's own device, or with --validate-on worker the kind
// of device a worker must validate on: that worker's --device picks its ordinal. --device-memory
// caps the coordinator's own device; a worker's is its own flag.
absl::Status ApplyValidationFlags(CoordinatorFlags& flags) {
  CoordinatorOptions& o = flags.options;
  o.validate_on_worker = flags.validate_on == "worker";
  if (!o.validate_on_worker) {
    QSHARD_ASSIGN_OR_RETURN(o.validation_device,
                            ParseDevice(flags.validate_device.empty() ? "cpu" : flags.validate_device, "--validate-device"));
    return ApplyDeviceMemory(flags.device_memory, {&o.validation_device});
  }
  QSHARD_RETURN_IF_ERROR(ApplyDeviceMemory(flags.device_memory, {}));
  if (flags.validate_device.empty()) return absl::OkStatus();  // whatever device the job's workers have
  QSHARD_ASSIGN_OR_RETURN(const Device kind, ParseDevice(flags.validate_device, "--validate-device"));
  if (flags.validate_device.find(':') != std::string::npos)
    return absl::InvalidArgumentError(absl::StrCat("--validate-device ", flags.validate_device,
                                                   ": with --validate-on worker it names a device kind (cpu or "
                                                   "cuda); the worker's own --device picks its GPU"));
  o.validation_worker_kind = kind.kind;
  return absl::OkStatus();
}

absl::Status RunCoordinator(CoordinatorFlags& flags) {
  // Signals are taken by sigwait below; the mask is inherited by every thread started after it.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);

  flags.options.log = LogLine;
  flags.options.worker_wait = std::chrono::seconds(flags.worker_wait_seconds);
  QSHARD_RETURN_IF_ERROR(ApplyValidationFlags(flags));
  QSHARD_ASSIGN_OR_RETURN(std::unique_ptr<Coordinator> coordinator, Coordinator::Start(flags.options));
  if (flags.json) {
    nlohmann::json started = {{"listening", coordinator->address()}, {"state_dir", flags.options.state_dir}};
    if (!coordinator->metrics_address().empty()) started["metrics"] = coordinator->metrics_address();
    PrintJson(started);
  } else {
    std::cout << "listening on " << coordinator->address() << std::endl;
    if (!coordinator->metrics_address().empty()) std::cout << "metrics on " << coordinator->metrics_address() << std::endl;
  }
  int signal = 0;
  sigwait(&signals, &signal);
  LogLine(absl::StrFormat("signal %d: shutting down", signal));
  coordinator->Shutdown();
  return absl::OkStatus();
}

}  // namespace

void RegisterCoordinator(CLI::App& root, CommandList& commands) {
  auto flags = std::make_shared<CoordinatorFlags>();
  CoordinatorOptions& o = flags->options;
  CLI::App* app = root.add_subcommand("coordinator", "Serve the job service: take jobs over gRPC and run them");
  app->add_option("--listen", o.listen, "host:port (port 0: any free port, printed); plaintext on loopback only")
      ->required();
  app->add_option("--state-dir", o.state_dir, "Directory of the job journal (created when missing)")->required();
  app->add_option("--allowed-root", o.allowed_roots, "A directory jobs may read models from and write outputs to "
                                                     "(repeatable; at least one)")
      ->required();
  app->add_option("--workers", o.workers,
                  "Run each job on this many registered `qshard worker`s (0: in this process)")
      ->capture_default_str();
  app->add_option("--worker-wait-seconds", flags->worker_wait_seconds,
                  "How long a job waits for its workers to register")
      ->capture_default_str();
  app->add_option("--validate-on", flags->validate_on,
                  "Where the final validation (--validate-text) runs: coordinator (this process, on "
                  "--validate-device) or worker (one of the job's workers, on its own --device; needs --workers > 0; "
                  "the next worker takes over from one lost on the way; docs/distributed.md)")
      ->check(CLI::IsMember({"coordinator", "worker"}))
      ->capture_default_str();
  AddValidateDeviceFlag(*app, flags->validate_device,
                        "cpu (a coordinator seldom has a GPU). With --validate-on worker: the device kind, cpu or "
                        "cuda, a job's workers must have (refused before the job starts otherwise); default there: "
                        "whatever they have");
  AddDeviceMemoryFlag(*app, flags->device_memory);
  app->add_option("--metrics-listen", o.metrics_listen, "host:port serving Prometheus /metrics (port 0: any)");
  AddSecurityFlags(*app, TlsRole::kServer, o.tls, o.insecure);
  app->add_option("--token-file", o.access.token_file,
                  "File of accepted bearer tokens for job clients, one per line (default: no token needed)")
      ->check(CLI::ExistingFile);
  app->add_option("--max-submits-per-minute", o.access.submits_per_minute,
                  "SubmitJob calls one client (token, or address without tokens) may make per minute, in bursts "
                  "of as many; more get RESOURCE_EXHAUSTED (0: unlimited)")
      ->capture_default_str();
  app->add_option("--health-listen", o.health_listen,
                  "host:port of a plaintext port carrying only grpc.health.v1, for Kubernetes gRPC probes");
  app->add_flag("--json", flags->json, "Print the listening address as one JSON object");
  commands.push_back({app, [flags] { return RunCoordinator(*flags); }});
}

}  // namespace qshard::cli
